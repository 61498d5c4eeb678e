// PROTOCOL.md §3 join-conversation / leave-conversation, §4 conversation-history,
// user-joined, user-left, §6 paging with before/after.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ack,
  actor,
  assertMessage,
  conversationOf,
  expectFailure,
  expectNoEvent,
  join,
  mark,
  okData,
  randomUUID,
  received,
  send,
  sendMany,
  waitFor,
} from '../lib/harness.mjs';

const contents = (history) => history.messages.map((m) => m.content);

/** alice and bob, a conversation between them; nobody joined yet. */
async function pair() {
  const alice = await actor('alice');
  const bob = await actor('bob');
  const conversation = await conversationOf(alice, [bob]);
  return { alice, bob, conversation };
}

describe('join-conversation', () => {
  test('joining acks the conversation id and sends the history oldest first', async () => {
    const { alice, bob, conversation } = await pair();
    const sent = await sendMany(alice.socket, conversation.id, 3);
    const since = mark(bob.socket);
    const res = await ack(bob.socket, 'join-conversation', { conversationId: conversation.id });
    // The ack also says where the conversation's log stands (§8): creation and 3 messages.
    assert.deepEqual(res, { ok: true, data: { conversationId: conversation.id, latestSeq: 4 } });
    const history = await waitFor(bob.socket, 'conversation-history', { since });
    assert.equal(history.conversationId, conversation.id);
    assert.equal(history.hasMore, false);
    assert.deepEqual(history.messages, sent);
    for (const m of history.messages) assertMessage(m, { conversationId: conversation.id, senderId: alice.id });
  });

  test('joining an empty conversation gives an empty history without more', async () => {
    const { alice, conversation } = await pair();
    const history = await join(alice.socket, conversation.id);
    assert.deepEqual(history, { conversationId: conversation.id, messages: [], hasMore: false });
  });

  test('the others in the room get user-joined, the joining socket does not', async () => {
    const { alice, bob, conversation } = await pair();
    await join(alice.socket, conversation.id);
    const sinceBob = mark(bob.socket);
    await join(bob.socket, conversation.id);
    const joined = await waitFor(alice.socket, 'user-joined', { predicate: (e) => e.userId === bob.id });
    assert.deepEqual(joined, { conversationId: conversation.id, userId: bob.id });
    // Barrier: a message sent after the join reaches bob after any user-joined would have.
    await expectNoEvent(bob.socket, 'user-joined', async () => {
      const m = await send(alice.socket, conversation.id, 'barrier');
      await waitFor(bob.socket, 'new-message', { predicate: (x) => x.id === m.id });
    }, { since: sinceBob });
  });

  test('a participant joined on another device still gets user-joined for their own new device', async () => {
    const { alice, bob, conversation } = await pair();
    const second = await alice.connect();
    await join(alice.socket, conversation.id);
    await join(second, conversation.id);
    // "room, except that socket": the first device is another socket in the room.
    assert.deepEqual(await waitFor(alice.socket, 'user-joined', { predicate: (e) => e.userId === alice.id }), {
      conversationId: conversation.id,
      userId: alice.id,
    });
    assert.ok(bob.socket.connected);
  });

  test('a non-participant joining gets NOT_FOUND exactly like an unknown conversation, and nobody is told', async () => {
    const { alice, bob, conversation } = await pair();
    const mallory = await actor('mallory');
    await join(alice.socket, conversation.id);
    await join(bob.socket, conversation.id);
    await waitFor(alice.socket, 'user-joined', { predicate: (e) => e.userId === bob.id });
    const since = [mark(alice.socket), mark(bob.socket)];
    const sinceMallory = mark(mallory.socket);
    const forbidden = await expectFailure(mallory.socket, 'join-conversation', { conversationId: conversation.id }, 'NOT_FOUND');
    const unknownId = randomUUID();
    const unknown = await expectFailure(mallory.socket, 'join-conversation', { conversationId: unknownId }, 'NOT_FOUND');
    assert.equal(forbidden.message.replaceAll(conversation.id, '<id>'), unknown.message.replaceAll(unknownId, '<id>'));
    await expectNoEvent([alice.socket, bob.socket], 'user-joined', async () => {
      const m = await send(alice.socket, conversation.id, 'barrier');
      await waitFor(alice.socket, 'new-message', { predicate: (x) => x.id === m.id });
      await waitFor(bob.socket, 'new-message', { predicate: (x) => x.id === m.id });
    }, { since, predicate: (e) => e.userId === mallory.id });
    // mallory is not in the room: no history, no message.
    assert.deepEqual(received(mallory.socket, 'conversation-history', { since: sinceMallory }), []);
    assert.deepEqual(received(mallory.socket, 'new-message', { since: sinceMallory }), []);
  });

  const invalid = [
    ['a non-UUID conversationId', () => ({ conversationId: 'not-a-uuid' })],
    ['a numeric conversationId', () => ({ conversationId: 12345 })],
    ['no conversationId', () => ({ limit: 10 })],
    ['limit 0', (id) => ({ conversationId: id, limit: 0 })],
    ['limit 101', (id) => ({ conversationId: id, limit: 101 })],
    ['a string limit', (id) => ({ conversationId: id, limit: 'ten' })],
    ['a non-UUID before', (id) => ({ conversationId: id, before: 'yesterday' })],
    ['a non-UUID after', (id) => ({ conversationId: id, after: 'nope' })],
  ];
  for (const [what, payloadFor] of invalid) {
    test(`joining with ${what} is VALIDATION and the socket keeps working`, async () => {
      const { alice, conversation } = await pair();
      await expectFailure(alice.socket, 'join-conversation', payloadFor(conversation.id), 'VALIDATION');
      await join(alice.socket, conversation.id);
    });
  }

  for (const [what, payload] of [
    ['a string', 'hello'],
    ['a number', 42],
    ['null', null],
    ['an array', [1, 2]],
  ]) {
    test(`joining with ${what} as payload is VALIDATION and the socket keeps working`, async () => {
      const { alice, conversation } = await pair();
      await expectFailure(alice.socket, 'join-conversation', payload, 'VALIDATION');
      await join(alice.socket, conversation.id);
    });
  }
});

describe('history paging', () => {
  test('limit returns the newest page; before and after walk older and newer pages, oldest first', async () => {
    const { alice, bob, conversation } = await pair();
    const m = [null, ...(await sendMany(alice.socket, conversation.id, 7))]; // m[1] … m[7]
    const page = async (paging) => {
      const h = await join(bob.socket, conversation.id, paging);
      return { contents: contents(h), hasMore: h.hasMore };
    };
    assert.deepEqual(await page({ limit: 3 }), { contents: ['m5', 'm6', 'm7'], hasMore: true });
    assert.deepEqual(await page({ limit: 3, before: m[5].id }), { contents: ['m2', 'm3', 'm4'], hasMore: true });
    assert.deepEqual(await page({ limit: 3, before: m[2].id }), { contents: ['m1'], hasMore: false });
    // With `after` alone, hasMore means newer messages exist.
    assert.deepEqual(await page({ limit: 2, after: m[3].id }), { contents: ['m4', 'm5'], hasMore: true });
    assert.deepEqual(await page({ limit: 10, after: m[5].id }), { contents: ['m6', 'm7'], hasMore: false });
    assert.deepEqual(await page({ after: m[7].id }), { contents: [], hasMore: false });
    // before and after together: the range strictly between them.
    assert.deepEqual((await page({ after: m[2].id, before: m[6].id })).contents, ['m3', 'm4', 'm5']);
  });

  test('reconnecting with after = the last message seen returns exactly what was missed', async () => {
    const { alice, bob, conversation } = await pair();
    const seen = await sendMany(alice.socket, conversation.id, 2, 'seen');
    bob.socket.disconnect();
    const missed = await sendMany(alice.socket, conversation.id, 3, 'missed');
    const again = await bob.connect();
    const history = await join(again, conversation.id, { after: seen.at(-1).id });
    assert.deepEqual(history.messages, missed);
    assert.equal(history.hasMore, false);
  });

  test('without a limit the newest 50 messages are returned', async () => {
    const alice = await actor('alice');
    const bob = await actor('bob');
    const carol = await actor('carol');
    const conversation = await conversationOf(alice, [bob, carol]);
    // 54 messages from three senders, each under its own send burst (20).
    const all = [];
    for (const who of [alice, bob, carol]) all.push(...(await sendMany(who.socket, conversation.id, 18, `${who.id}-`)));
    const history = await join(carol.socket, conversation.id);
    assert.equal(history.messages.length, 50);
    assert.equal(history.hasMore, true);
    assert.deepEqual(history.messages, all.slice(4));
  });
});

describe('leave-conversation', () => {
  test('leaving acks, tells the others user-left, and stops room delivery to that socket', async () => {
    const { alice, bob, conversation } = await pair();
    await join(alice.socket, conversation.id);
    await join(bob.socket, conversation.id);
    const res = await ack(bob.socket, 'leave-conversation', { conversationId: conversation.id });
    assert.deepEqual(okData(res), { conversationId: conversation.id });
    const left = await waitFor(alice.socket, 'user-left', { predicate: (e) => e.userId === bob.id });
    assert.deepEqual(left, { conversationId: conversation.id, userId: bob.id });

    const since = mark(bob.socket);
    const after = await send(alice.socket, conversation.id, 'after bob left');
    // The room emit reached alice's own socket, so it was made; bob's next ack round trip
    // on his connection comes after anything that emit would have queued for him.
    await waitFor(alice.socket, 'new-message', { predicate: (x) => x.id === after.id });
    await expectNoEvent(bob.socket, 'new-message', () => join(bob.socket, conversation.id), { since });
  });

  test('leaving with a non-UUID conversationId is VALIDATION', async () => {
    const { alice } = await pair();
    await expectFailure(alice.socket, 'leave-conversation', { conversationId: 'nope' }, 'VALIDATION');
  });

  test('a non-participant leaving gets NOT_FOUND like an unknown conversation', async () => {
    const { conversation } = await pair();
    const mallory = await actor('mallory');
    await expectFailure(mallory.socket, 'leave-conversation', { conversationId: conversation.id }, 'NOT_FOUND');
    await expectFailure(mallory.socket, 'leave-conversation', { conversationId: randomUUID() }, 'NOT_FOUND');
  });

  test('a disconnect sends no user-left', async () => {
    const { alice, bob, conversation } = await pair();
    await join(alice.socket, conversation.id);
    await join(bob.socket, conversation.id);
    await waitFor(alice.socket, 'user-joined', { predicate: (e) => e.userId === bob.id });
    const since = mark(alice.socket);
    bob.socket.disconnect();
    // Barrier: bob reconnects and joins; alice sees user-joined after any user-left would have.
    const again = await bob.connect();
    await join(again, conversation.id);
    await expectNoEvent(alice.socket, 'user-left', () =>
      waitFor(alice.socket, 'user-joined', { since, predicate: (e) => e.userId === bob.id }), { since });
  });
});
