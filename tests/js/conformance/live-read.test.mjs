// Issue 4. PROTOCOL.md §3 mark-as-read / mark-conversation-as-read, §4 message-read,
// §6 "never backwards" and "empty conversation".
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ack,
  actor,
  api,
  conversationOf,
  expectFailure,
  expectNoEvent,
  httpOk,
  join,
  mark,
  okData,
  randomUUID,
  send,
  sendMany,
  TIME_MS,
  waitFor,
} from '../lib/harness.mjs';

/** alice and bob (bob on two devices, only the first joined), both joined on alice's side. */
async function setup() {
  const alice = await actor('alice');
  const bob = await actor('bob', { devices: 2 });
  const conversation = await conversationOf(alice, [bob]);
  await join(alice.socket, conversation.id);
  await join(bob.socket, conversation.id);
  return { alice, bob, conversation };
}

describe('mark-as-read', () => {
  test('acks the cursor, tells the room message-read and all the reader\'s devices their unread count', async () => {
    const { alice, bob, conversation } = await setup();
    const [, second] = await sendMany(alice.socket, conversation.id, 2);
    // Both of bob's devices have seen the count of 2 before he reads.
    for (const socket of bob.sockets) await waitFor(socket, 'unread-count-updated', { predicate: (e) => e.totalUnread === 2 });
    const sinceBob = bob.sockets.map(mark);
    const data = okData(await ack(bob.socket, 'mark-as-read', { messageId: second.id }));
    assert.equal(data.conversationId, conversation.id);
    assert.equal(data.messageId, second.id);
    assert.match(data.readAt, TIME_MS);
    assert.equal(data.seq, second.seq + 1, 'the read is numbered after the messages (§8)');
    const read = await waitFor(alice.socket, 'message-read', { predicate: (e) => e.userId === bob.id });
    assert.deepEqual(read, { conversationId: conversation.id, messageId: second.id, userId: bob.id, readAt: data.readAt, seq: data.seq });
    for (const [i, socket] of bob.sockets.entries()) {
      const counts = await waitFor(socket, 'unread-count-updated', {
        since: sinceBob[i],
        predicate: (e) => e.totalUnread === 0,
      });
      assert.equal(counts.totalUnread, 0);
    }
  });

  test('reading an older message acks the current cursor and broadcasts nothing', async () => {
    const { alice, bob, conversation } = await setup();
    const [first, second] = await sendMany(alice.socket, conversation.id, 2);
    const newest = okData(await ack(bob.socket, 'mark-as-read', { messageId: second.id }));
    await waitFor(alice.socket, 'message-read', { predicate: (e) => e.messageId === second.id });
    const since = mark(alice.socket);
    const older = okData(await ack(bob.socket, 'mark-as-read', { messageId: first.id }));
    // The same cursor; no number, since nothing moved (nothing was logged).
    const { seq, ...cursor } = newest;
    assert.equal(typeof seq, 'number');
    assert.deepEqual(older, cursor, 'the cursor moved backwards');
    await expectNoEvent(alice.socket, 'message-read', async () => {
      const m = await send(bob.socket, conversation.id, 'barrier');
      await waitFor(alice.socket, 'new-message', { since, predicate: (x) => x.id === m.id });
    }, { since });
  });

  test('reading the same message twice broadcasts message-read once', async () => {
    const { alice, bob, conversation } = await setup();
    const m = await send(alice.socket, conversation.id, 'read me');
    const since = mark(alice.socket);
    okData(await ack(bob.socket, 'mark-as-read', { messageId: m.id }));
    await waitFor(alice.socket, 'message-read', { since });
    okData(await ack(bob.socket, 'mark-as-read', { messageId: m.id }));
    const barrier = await send(bob.socket, conversation.id, 'barrier');
    await waitFor(alice.socket, 'new-message', { since, predicate: (x) => x.id === barrier.id });
    const reads = alice.socket.received.slice(since).filter((r) => r.event === 'message-read');
    assert.equal(reads.length, 1, `message-read broadcast ${reads.length} times`);
  });

  test('a message of a conversation one is not in is NOT_FOUND, like an unknown message', async () => {
    const { alice, conversation } = await setup();
    const m = await send(alice.socket, conversation.id, 'private');
    const mallory = await actor('mallory');
    const hidden = await expectFailure(mallory.socket, 'mark-as-read', { messageId: m.id }, 'NOT_FOUND');
    const unknownId = randomUUID();
    const unknown = await expectFailure(mallory.socket, 'mark-as-read', { messageId: unknownId }, 'NOT_FOUND');
    assert.equal(hidden.message.replaceAll(m.id, '<id>'), unknown.message.replaceAll(unknownId, '<id>'));
  });

  for (const [what, payload] of [
    ['a non-UUID messageId', { messageId: 'latest' }],
    ['no messageId', {}],
    ['a string payload', 'latest'],
  ]) {
    test(`mark-as-read with ${what} is VALIDATION`, async () => {
      const { bob } = await setup();
      await expectFailure(bob.socket, 'mark-as-read', payload, 'VALIDATION');
    });
  }
});

describe('mark-conversation-as-read', () => {
  test('moves the cursor to the latest message and tells the room', async () => {
    const { alice, bob, conversation } = await setup();
    const sent = await sendMany(alice.socket, conversation.id, 3);
    const data = okData(await ack(bob.socket, 'mark-conversation-as-read', { conversationId: conversation.id }));
    assert.equal(data.conversationId, conversation.id);
    assert.equal(data.messageId, sent[2].id);
    assert.match(data.readAt, TIME_MS);
    const read = await waitFor(alice.socket, 'message-read', { predicate: (e) => e.userId === bob.id });
    assert.deepEqual(read, { conversationId: conversation.id, messageId: sent[2].id, userId: bob.id, readAt: data.readAt, seq: data.seq });
  });

  test('an empty conversation acks messageId null and broadcasts nothing', async () => {
    const { alice, bob, conversation } = await setup();
    const since = mark(alice.socket);
    const data = okData(await ack(bob.socket, 'mark-conversation-as-read', { conversationId: conversation.id }));
    assert.equal(data.conversationId, conversation.id);
    assert.equal(data.messageId, null);
    await expectNoEvent(alice.socket, 'message-read', async () => {
      const m = await send(bob.socket, conversation.id, 'barrier');
      await waitFor(alice.socket, 'new-message', { since, predicate: (x) => x.id === m.id });
    }, { since });
  });

  test('POST /api/v1/conversations/{id}/read does the same over HTTP', async () => {
    const { alice, bob, conversation } = await setup();
    const sent = await sendMany(alice.socket, conversation.id, 2);
    const res = await api(bob.token, 'POST', `/api/v1/conversations/${conversation.id}/read`);
    const body = httpOk(res, [200]);
    assert.equal(body.conversationId, conversation.id);
    assert.equal(body.messageId, sent[1].id);
    await waitFor(alice.socket, 'message-read', { predicate: (e) => e.userId === bob.id && e.messageId === sent[1].id });
  });

  test('a non-participant gets NOT_FOUND like an unknown conversation', async () => {
    const { conversation } = await setup();
    const mallory = await actor('mallory');
    await expectFailure(mallory.socket, 'mark-conversation-as-read', { conversationId: conversation.id }, 'NOT_FOUND');
    await expectFailure(mallory.socket, 'mark-conversation-as-read', { conversationId: randomUUID() }, 'NOT_FOUND');
  });
});
