// Issue 4. PROTOCOL.md §3 user-typing / user-stopped-typing and §4: relayed to the room
// except the typer's sockets, throttled to once per second, expiring by itself (the test node
// uses a typing TTL of 1500 ms), ended by an explicit stop or by sending, replayed on join.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ack,
  actor,
  conversationOf,
  expectFailure,
  expectNoEvent,
  join,
  mark,
  okData,
  randomUUID,
  received,
  send,
  waitFor,
} from '../lib/harness.mjs';

const TYPING_TTL_MS = 1500;

/** alice (named, two devices) and bob, all sockets joined. */
async function setup() {
  const alice = await actor('alice', { name: 'Alice Martin', devices: 2 });
  const bob = await actor('bob');
  const conversation = await conversationOf(alice, [bob]);
  for (const socket of [...alice.sockets, bob.socket]) await join(socket, conversation.id);
  return { alice, bob, conversation };
}

const typing = async (socket, conversationId) =>
  assert.deepEqual(okData(await ack(socket, 'user-typing', { conversationId })), {});
const stopTyping = async (socket, conversationId) =>
  assert.deepEqual(okData(await ack(socket, 'user-stopped-typing', { conversationId })), {});
const from = (who) => (e) => e.userId === who.id;

describe('typing indicators', () => {
  test('the others get user-typing with the token name; none of the typer\'s own sockets do', async () => {
    const { alice, bob, conversation } = await setup();
    const since = alice.sockets.map(mark);
    await typing(alice.socket, conversation.id);
    const got = await waitFor(bob.socket, 'user-typing', { predicate: from(alice) });
    assert.deepEqual(got, { conversationId: conversation.id, userId: alice.id, userName: 'Alice Martin' });
    await expectNoEvent(alice.sockets, 'user-typing', async () => {
      const m = await send(bob.socket, conversation.id, 'barrier');
      for (const socket of alice.sockets) await waitFor(socket, 'new-message', { predicate: (x) => x.id === m.id });
    }, { since });
  });

  test('userName is the userId when the token has no name', async () => {
    const { alice, bob, conversation } = await setup();
    await typing(bob.socket, conversation.id);
    const got = await waitFor(alice.socket, 'user-typing', { predicate: from(bob) });
    assert.equal(got.userName, bob.id);
  });

  test('two typings within a second are relayed once', async () => {
    const { alice, bob, conversation } = await setup();
    const since = mark(bob.socket);
    await typing(alice.socket, conversation.id);
    await typing(alice.socket, conversation.id);
    await waitFor(bob.socket, 'user-typing', { since, predicate: from(alice) });
    // Barrier: the explicit stop is relayed after any second user-typing would have been.
    await stopTyping(alice.socket, conversation.id);
    await waitFor(bob.socket, 'user-stopped-typing', { since, predicate: from(alice) });
    assert.equal(received(bob.socket, 'user-typing', { since, predicate: from(alice) }).length, 1);
  });

  test('typing expires by itself: the server emits user-stopped-typing once', async () => {
    const { alice, bob, conversation } = await setup();
    const since = mark(bob.socket);
    const started = Date.now();
    await typing(alice.socket, conversation.id);
    await waitFor(bob.socket, 'user-typing', { since, predicate: from(alice) });
    const stopped = await waitFor(bob.socket, 'user-stopped-typing', { since, predicate: from(alice), timeoutMs: 5000 });
    const elapsed = Date.now() - started;
    assert.deepEqual(stopped, { conversationId: conversation.id, userId: alice.id, userName: 'Alice Martin' });
    assert.ok(elapsed >= TYPING_TTL_MS - 500, `typing expired after ${elapsed} ms, before its TTL of ${TYPING_TTL_MS} ms`);
    const m = await send(bob.socket, conversation.id, 'barrier');
    await waitFor(bob.socket, 'new-message', { since, predicate: (x) => x.id === m.id });
    assert.equal(received(bob.socket, 'user-stopped-typing', { since, predicate: from(alice) }).length, 1);
  });

  test('an explicit stop is relayed as user-stopped-typing', async () => {
    const { alice, bob, conversation } = await setup();
    await typing(alice.socket, conversation.id);
    await waitFor(bob.socket, 'user-typing', { predicate: from(alice) });
    const started = Date.now();
    await stopTyping(alice.socket, conversation.id);
    const stopped = await waitFor(bob.socket, 'user-stopped-typing', { predicate: from(alice) });
    assert.deepEqual(stopped, { conversationId: conversation.id, userId: alice.id, userName: 'Alice Martin' });
    assert.ok(Date.now() - started < TYPING_TTL_MS, 'the stop waited for the expiry instead of being relayed');
  });

  test('sending a message ends the sender\'s typing', async () => {
    const { alice, bob, conversation } = await setup();
    await typing(alice.socket, conversation.id);
    await waitFor(bob.socket, 'user-typing', { predicate: from(alice) });
    const started = Date.now();
    await send(alice.socket, conversation.id, 'done typing');
    await waitFor(bob.socket, 'user-stopped-typing', { predicate: from(alice) });
    assert.ok(Date.now() - started < TYPING_TTL_MS, 'the send did not end typing: it expired');
    // A socket joining now is not told that alice is typing.
    const late = await bob.connect();
    const since = mark(late);
    await join(late, conversation.id);
    await expectNoEvent(late, 'user-typing', async () => {
      const m = await send(alice.socket, conversation.id, 'barrier');
      await waitFor(late, 'new-message', { predicate: (x) => x.id === m.id });
    }, { since });
  });

  test('a socket joining gets user-typing for the users typing there now', async () => {
    const { alice, bob, conversation } = await setup();
    await typing(alice.socket, conversation.id);
    await waitFor(bob.socket, 'user-typing', { predicate: from(alice) });
    const late = await bob.connect();
    await join(late, conversation.id);
    const got = await waitFor(late, 'user-typing', { predicate: from(alice) });
    assert.deepEqual(got, { conversationId: conversation.id, userId: alice.id, userName: 'Alice Martin' });
  });

  test('a non-participant typing gets NOT_FOUND and nobody is told', async () => {
    const { alice, bob, conversation } = await setup();
    const mallory = await actor('mallory');
    const since = mark(bob.socket);
    await expectFailure(mallory.socket, 'user-typing', { conversationId: conversation.id }, 'NOT_FOUND');
    await expectFailure(mallory.socket, 'user-typing', { conversationId: randomUUID() }, 'NOT_FOUND');
    await expectNoEvent(bob.socket, 'user-typing', async () => {
      const m = await send(alice.socket, conversation.id, 'barrier');
      await waitFor(bob.socket, 'new-message', { since, predicate: (x) => x.id === m.id });
    }, { since });
  });

  test('typing with a non-UUID conversationId is VALIDATION', async () => {
    const { alice } = await setup();
    await expectFailure(alice.socket, 'user-typing', { conversationId: 'general' }, 'VALIDATION');
    await expectFailure(alice.socket, 'user-stopped-typing', 'general', 'VALIDATION');
  });
});
