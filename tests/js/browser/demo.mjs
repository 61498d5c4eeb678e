// The demo page (web/) driven in headless Chromium as two users, the way a
// newcomer uses it: alice and bob sign in in two browser contexts, alice
// starts a conversation, messages go both ways (one with an image
// attachment), typing shows on the other side and clears, the read receipt
// turns to ✓✓, bob's network drops while alice sends and deletes and his page
// catches up when it is back, and closing bob's browser shows him offline on
// alice's page.
// Any console error or uncaught page error fails the run.
//
// Run by tests/browser.rs against an in-process dev-mode node. By hand, against
// a node that may already know alice and bob, give the users a fresh suffix:
//   PARLOIR_URL=http://127.0.0.1:3000 PARLOIR_ARTIFACTS=$PWD/target/browser-artifacts \
//     PARLOIR_USER_SUFFIX=-$RANDOM node tests/js/browser/demo.mjs
// Needs Debian's Chromium (`apt-get install chromium`; CHROMIUM_PATH for another binary).
// Waits are on selectors and text, with deadlines: no fixed sleeps.

import { createServer } from 'node:http';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { chromium } from 'playwright-core';

const BASE = process.env.PARLOIR_URL;
const ARTIFACTS = process.env.PARLOIR_ARTIFACTS;
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const SUFFIX = process.env.PARLOIR_USER_SUFFIX || '';
const ALICE = `alice${SUFFIX}`;
const BOB = `bob${SUFFIX}`;
const STEP_TIMEOUT = 15_000;
const RUN_TIMEOUT = 150_000;

if (!BASE || !ARTIFACTS || !path.isAbsolute(ARTIFACTS)) {
  console.error('usage: PARLOIR_URL=http://host:port PARLOIR_ARTIFACTS=/absolute/dir node browser/demo.mjs');
  process.exit(2);
}

const watchdog = setTimeout(() => {
  console.error(`the browser run did not finish within ${RUN_TIMEOUT} ms`);
  process.exit(1);
}, RUN_TIMEOUT);

// Unique texts, so a run against a long-lived dev node checks its own messages.
const tag = Date.now().toString(36);
const problems = [];

function step(text) {
  console.log(`✔ ${text}`);
}

/** A tiny image host, so the attachment thumbnail loads without the internet. */
function startImageHost() {
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="320" height="200" viewBox="0 0 320 200">
  <defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1">
    <stop offset="0" stop-color="#f59e0b"/><stop offset="1" stop-color="#db2777"/></linearGradient></defs>
  <rect width="320" height="200" fill="url(#g)"/>
  <circle cx="250" cy="55" r="26" fill="#fde68a"/>
  <path d="M0 200 L90 105 L150 160 L205 95 L320 200 Z" fill="#7c2d12" opacity="0.75"/>
</svg>`;
  const server = createServer((req, res) => {
    if (req.url === '/salon.svg') {
      res.writeHead(200, { 'Content-Type': 'image/svg+xml', 'Cache-Control': 'no-cache' });
      res.end(svg);
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

function watch(page, who) {
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`[${who}] console error: ${message.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`[${who}] page error: ${error.message}`));
}

function checkProblems(when) {
  if (problems.length) throw new Error(`${when}:\n${problems.join('\n')}`);
}

async function signIn(page, userId, role, name) {
  await page.goto(`${BASE}/`, { waitUntil: 'load', timeout: STEP_TIMEOUT });
  await page.getByLabel('User id').fill(userId);
  await page.getByLabel(role === 'salon' ? 'Salon' : 'Client').check();
  await page.getByLabel(/Display name/).fill(name);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#conn-status[data-state="online"]').waitFor({ timeout: STEP_TIMEOUT });
}

/** The conversation list entry named `name`. */
function listEntry(page, name) {
  return page.locator('#conversation-list .conversation', {
    has: page.locator('.conversation-name', { hasText: name }),
  });
}

async function expectText(locator, text, what) {
  try {
    await locator.filter({ hasText: text }).first().waitFor({ timeout: STEP_TIMEOUT });
  } catch (e) {
    const seen = await locator.allTextContents().catch(() => []);
    throw new Error(`${what}: expected ${JSON.stringify(text)}, saw ${JSON.stringify(seen)}`);
  }
}

async function main() {
  await mkdir(ARTIFACTS, { recursive: true });
  const images = await startImageHost();
  const imageUrl = `http://127.0.0.1:${images.address().port}/salon.svg`;
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const viewport = { width: 1100, height: 680 };
  const aliceContext = await browser.newContext({ viewport, colorScheme: 'light' });
  const bobContext = await browser.newContext({ viewport, colorScheme: 'light' });
  const alice = await aliceContext.newPage();
  const bob = await bobContext.newPage();
  watch(alice, 'alice');
  watch(bob, 'bob');
  let bobOpen = true;

  try {
    await signIn(alice, ALICE, 'client', 'Alice');
    await signIn(bob, BOB, 'salon', 'Bob');
    step('alice and bob signed in through the dev sign-in, sockets connected');

    await alice.getByLabel('Start a conversation with').fill(BOB);
    await alice.getByLabel('Start a conversation with').press('Enter');
    await expectText(alice.locator('#peer-name'), BOB, 'alice opens the new conversation');
    await listEntry(alice, BOB).waitFor({ timeout: STEP_TIMEOUT });
    await listEntry(bob, ALICE).waitFor({ timeout: STEP_TIMEOUT });
    step('alice started a conversation with bob; both lists show it');

    // alice writes first, with an image, while bob has not opened the conversation.
    const hello = `Hello Bob! Is Saturday 10:00 free? [${tag}]`;
    await alice.getByLabel(/Attachment URLs/).fill(imageUrl);
    await alice.getByLabel('Message', { exact: true }).fill(hello);
    await alice.getByLabel('Message', { exact: true }).press('Enter');
    const aliceHello = alice.locator('.message.mine', { hasText: hello });
    await aliceHello.locator('.receipt[data-state="sent"]').waitFor({ timeout: STEP_TIMEOUT });
    step('alice sent a message with an attachment (✓ sent)');

    const bobEntry = listEntry(bob, ALICE);
    await expectText(bobEntry.locator('.conversation-preview'), hello, "bob's list shows the last message");
    await expectText(bobEntry.locator('.badge'), '1', "bob's list shows 1 unread");
    step("bob's conversation list shows the last message and an unread badge, live");

    await bobEntry.click();
    await expectText(bob.locator('#peer-name'), ALICE, 'bob opens the conversation');
    const bobSeesHello = bob.locator('.message.theirs', { hasText: hello });
    await bobSeesHello.waitFor({ timeout: STEP_TIMEOUT });
    await bob.waitForFunction(
      () => [...document.querySelectorAll('.message.theirs .attachment img')]
        .some((img) => img.complete && img.naturalWidth > 0),
      null,
      { timeout: STEP_TIMEOUT },
    );
    step('bob opened it: history shows the message and its image thumbnail');

    await aliceHello.locator('.receipt[data-state="read"]').waitFor({ timeout: STEP_TIMEOUT });
    await expectText(aliceHello.locator('.receipt'), '✓✓', "alice's receipt");
    await bobEntry.locator('.badge').waitFor({ state: 'detached', timeout: STEP_TIMEOUT });
    step("bob read it: alice's receipt turned to ✓✓ and bob's badge is gone");

    // Presence flows between users who both took part: bob has, by opening it.
    await expectText(alice.locator('#peer-status-text'), 'online', 'bob is online for alice');
    step('alice sees bob online now that he took part');

    await expectText(bob.locator('#peer-status-text'), 'online', 'alice is online for bob');

    // bob types: alice sees it, then it clears after bob's idle pause.
    const reply = `Hi Alice, Saturday 10:00 works. See you! [${tag}]`;
    const bobComposer = bob.getByLabel('Message', { exact: true });
    await bobComposer.click();
    await bobComposer.pressSequentially(reply, { delay: 15 });
    await expectText(alice.locator('#typing'), 'Bob is typing…', 'alice sees bob typing');
    step('alice sees "Bob is typing…"');
    await alice.waitForFunction(() => document.getElementById('typing').textContent === '', null,
      { timeout: STEP_TIMEOUT });
    step('the typing indicator cleared after bob paused');

    await bobComposer.press('Enter');
    const aliceSeesReply = alice.locator('.message.theirs', { hasText: reply });
    await aliceSeesReply.waitFor({ timeout: STEP_TIMEOUT });
    await bob.locator('.message.mine', { hasText: reply })
      .locator('.receipt[data-state="read"]').waitFor({ timeout: STEP_TIMEOUT });
    step("bob's reply reached alice live, and alice's open conversation marked it read (✓✓)");

    // Typing shown while alice writes, then cleared by her send.
    const last = `Perfect, thank you! [${tag}]`;
    const aliceComposer = alice.getByLabel('Message', { exact: true });
    await aliceComposer.pressSequentially(last, { delay: 10 });
    await expectText(bob.locator('#typing'), 'Alice is typing…', 'bob sees alice typing');
    await aliceComposer.press('Enter');
    await bob.locator('.message.theirs', { hasText: last }).waitFor({ timeout: STEP_TIMEOUT });
    await bob.waitForFunction(() => document.getElementById('typing').textContent === '', null,
      { timeout: STEP_TIMEOUT });
    await alice.locator('.message.mine', { hasText: last })
      .locator('.receipt[data-state="read"]').waitFor({ timeout: STEP_TIMEOUT });
    step('messages go both ways; typing shows and clears on send');

    // bob's network drops. While he is away alice sends a message and deletes
    // an earlier one; back online, bob's page catches up without a reload.
    await bob.evaluate(() => {
      window.parloirDemoNotReloaded = true;
    });
    await bobContext.setOffline(true);
    await bob.locator('#conn-status[data-state="offline"]').waitFor({ timeout: STEP_TIMEOUT });
    await expectText(alice.locator('#peer-status-text'), 'last seen', 'bob is away for alice');
    const missed = `Are you still there? [${tag}]`;
    await aliceComposer.fill(missed);
    await aliceComposer.press('Enter');
    const aliceMissed = alice.locator('.message.mine', { hasText: missed });
    await aliceMissed.locator('.receipt[data-state="sent"]').waitFor({ timeout: STEP_TIMEOUT });
    const aliceLast = alice.locator('.message.mine', { hasText: last });
    await aliceLast.hover();
    await aliceLast.getByRole('button', { name: 'Delete message' }).click();
    await aliceLast.waitFor({ state: 'detached', timeout: STEP_TIMEOUT });
    await expectText(alice.locator('.message.mine.deleted'), 'This message was deleted.', "alice's deleted message");
    // bob's socket is closed: his page cannot have heard of either.
    if (await bob.locator('.message', { hasText: missed }).count() !== 0) throw new Error('bob saw the message while offline');
    await bob.locator('.message.theirs', { hasText: last }).waitFor({ timeout: STEP_TIMEOUT });
    step('bob went offline; meanwhile alice sent a message and deleted an earlier one');

    await bobContext.setOffline(false);
    await bob.locator('#conn-status[data-state="online"]').waitFor({ timeout: STEP_TIMEOUT });
    await bob.locator('.message.theirs', { hasText: missed }).waitFor({ timeout: STEP_TIMEOUT });
    await bob.locator('.message.theirs', { hasText: last }).waitFor({ state: 'detached', timeout: STEP_TIMEOUT });
    await expectText(bob.locator('.message.theirs.deleted'), 'This message was deleted.', "bob's view of the deletion");
    if (!(await bob.evaluate(() => window.parloirDemoNotReloaded === true))) throw new Error("bob's page was reloaded");
    await aliceMissed.locator('.receipt[data-state="read"]').waitFor({ timeout: STEP_TIMEOUT });
    step('bob came back online: his page shows the new message, not the deleted one, and read it (✓✓), no reload');

    checkProblems('console or page errors while talking');
    await alice.screenshot({ path: path.join(ARTIFACTS, 'alice.png') });
    await bob.screenshot({ path: path.join(ARTIFACTS, 'bob.png') });
    step(`screenshots saved in ${ARTIFACTS}`);

    await bobContext.close();
    bobOpen = false;
    await expectText(alice.locator('#peer-status-text'), 'last seen', 'bob goes offline for alice');
    await alice.locator('#peer-dot[data-state="offline"]').waitFor({ timeout: STEP_TIMEOUT });
    await alice.screenshot({ path: path.join(ARTIFACTS, 'alice-bob-offline.png') });
    step('bob closed his browser: alice sees him offline with "last seen"');

    checkProblems('console or page errors');
  } catch (error) {
    await alice.screenshot({ path: path.join(ARTIFACTS, 'failure-alice.png') }).catch(() => {});
    if (bobOpen) await bob.screenshot({ path: path.join(ARTIFACTS, 'failure-bob.png') }).catch(() => {});
    if (problems.length) console.error(problems.join('\n'));
    throw error;
  } finally {
    await browser.close();
    images.close();
  }
}

main()
  .then(() => {
    clearTimeout(watchdog);
    console.log('browser demo: all steps passed');
  })
  .catch((error) => {
    console.error(`browser demo FAILED: ${error.stack || error}`);
    process.exit(1);
  });
