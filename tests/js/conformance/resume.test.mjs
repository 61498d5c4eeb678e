// Issue #23. PROTOCOL.md §8: every change to a conversation is numbered (`seq`), and a client
// resumes from the last number it saw: `join-conversation` with `afterSeq`, or `sync` for many
// conversations at once after a reconnect. Replayed events are those sent live, in order, with
// numbers without holes.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ack,
  actor,
  api,
  conversationOf,
  expectFailure,
  join,
  mark,
  okData,
  received,
  send,
  sendMany,
  waitFor,
} from '../lib/harness.mjs';

const sync = async (socket, conversations, since) =>
  okData(await ack(socket, 'sync', since ? { conversations, since } : { conversations }), 'sync ack');

/** A pair, both in the room, and the conversation's events so far seen by bob. */
async function pair() {
  const alice = await actor('alice');
  const bob = await actor('bob');
  const conversation = await conversationOf(alice, [bob]);
  await join(alice.socket, conversation.id);
  await join(bob.socket, conversation.id);
  return { alice, bob, conversation };
}

describe('the conversation log', () => {
  test('every change is numbered, one after the other, from the creation on', async () => {
    const { alice, bob, conversation } = await pair();
    const [m1, m2] = await sendMany(alice.socket, conversation.id, 2);
    assert.deepEqual([m1.seq, m2.seq], [2, 3], 'creation is 1, then each message');
    const read = okData(await ack(bob.socket, 'mark-as-read', { messageId: m2.id }));
    assert.equal(read.seq, 4);
    const res = await api(alice.token, 'DELETE', `/api/v1/messages/${m1.id}`);
    assert.equal(res.status, 204);
    const deleted = await waitFor(bob.socket, 'message-deleted', { predicate: (e) => e.messageId === m1.id });
    assert.equal(deleted.seq, 5);
    const m3 = await send(bob.socket, conversation.id, 'after all that');
    assert.equal(m3.seq, 6);
    const since = mark(bob.socket);
    const joined = okData(await ack(bob.socket, 'join-conversation', { conversationId: conversation.id }));
    assert.equal(joined.latestSeq, 6, 'a plain join says where the log stands');
    const history = await waitFor(bob.socket, 'conversation-history', { since });
    assert.deepEqual(history.messages.map((m) => m.seq), [3, 6], 'history carries the numbers');
  });

  test('concurrent sends from two senders get distinct consecutive numbers', async () => {
    const { alice, bob, conversation } = await pair();
    const sends = [];
    for (let i = 0; i < 20; i++) {
      sends.push(send(alice.socket, conversation.id, `a${i}`));
      sends.push(send(bob.socket, conversation.id, `b${i}`));
    }
    const stored = await Promise.all(sends);
    const numbers = stored.map((m) => m.seq).sort((x, y) => x - y);
    assert.deepEqual(numbers, Array.from({ length: 40 }, (_, i) => i + 2));
  });
});

describe('join-conversation with afterSeq', () => {
  test('replays every event after the number, in order, then the ack says where the log stands', async () => {
    const { alice, bob, conversation } = await pair();
    const [m1, m2] = await sendMany(alice.socket, conversation.id, 2);
    okData(await ack(bob.socket, 'mark-as-read', { messageId: m2.id }));
    assert.equal((await api(alice.token, 'DELETE', `/api/v1/messages/${m1.id}`)).status, 204);
    const late = await bob.connect();
    const since = mark(late);
    const data = okData(await ack(late, 'join-conversation', { conversationId: conversation.id, afterSeq: 1 }));
    assert.deepEqual(data, { conversationId: conversation.id, latestSeq: 5, hasMore: false, recovered: true });
    const replayed = late.received.slice(since)
      .filter((e) => e.event !== 'unread-count-updated' && e.args[0]?.conversationId === conversation.id);
    assert.deepEqual(
      replayed.map((e) => [e.event, e.args[0].seq]),
      [['new-message', 2], ['new-message', 3], ['message-read', 4], ['message-deleted', 5]],
    );
    const [first] = replayed;
    assert.equal(first.args[0].deletedAt !== undefined, true, 'a message deleted since is marked so');
    assert.equal(first.args[0].content, '', 'and its content is gone');
    assert.equal(received(late, 'conversation-history', { since }).length, 0, 'no history page');
    // Live events follow.
    const m3 = await send(alice.socket, conversation.id, 'live');
    const live = await waitFor(late, 'new-message', { since, predicate: (m) => m.id === m3.id });
    assert.equal(live.seq, 6);
  });

  test('afterSeq at the latest number replays nothing', async () => {
    const { alice, bob, conversation } = await pair();
    const [m] = await sendMany(alice.socket, conversation.id, 1);
    // Its live broadcast may reach bob after alice's ack: let it land first.
    await waitFor(bob.socket, 'new-message', { predicate: (x) => x.id === m.id });
    const since = mark(bob.socket);
    const data = okData(await ack(bob.socket, 'join-conversation', { conversationId: conversation.id, afterSeq: m.seq }));
    assert.equal(data.latestSeq, m.seq);
    assert.equal(data.hasMore, false);
    assert.equal(received(bob.socket, 'new-message', { since }).length, 0);
  });

  test('afterSeq with paging, or negative, is VALIDATION', async () => {
    const { bob, conversation } = await pair();
    await expectFailure(bob.socket, 'join-conversation', { conversationId: conversation.id, afterSeq: 1, limit: 10 }, 'VALIDATION');
    await expectFailure(bob.socket, 'join-conversation', { conversationId: conversation.id, afterSeq: -1 }, 'VALIDATION');
  });
});

describe('sync', () => {
  test('answers what each conversation missed, what the user was added to, and the unread totals', async () => {
    const alice = await actor('alice');
    const bob = await actor('bob');
    const carol = await actor('carol');
    const known = await conversationOf(alice, [bob]);
    await join(bob.socket, known.id);
    const first = await send(alice.socket, known.id, 'seen');
    const seen = await waitFor(bob.socket, 'new-message', { predicate: (m) => m.id === first.id });
    const before = (await sync(bob.socket, { [known.id]: seen.seq })).syncedAt;
    // Away: a message, a read by alice of her own..., a new conversation bob is added to.
    const missed = await send(alice.socket, known.id, 'missed');
    const added = await conversationOf(carol, [bob]);
    const data = await sync(bob.socket, { [known.id]: seen.seq }, before);
    const replay = data.conversations[known.id];
    assert.deepEqual(replay.events.map((e) => [e.seq, e.type, e.data.id]), [[missed.seq, 'new-message', missed.id]]);
    assert.equal(replay.hasMore, false);
    assert.equal(replay.latestSeq, missed.seq);
    assert.deepEqual(data.conversationsAdded.map((c) => c.id), [added.id]);
    assert.equal(data.unread.totalUnread, 2);
    assert.deepEqual(data.unread.conversations, { [known.id]: 2 });
    assert.equal(typeof data.syncedAt, 'string');
  });

  test('a gap from zero replays the whole log, creation first', async () => {
    const { alice, bob, conversation } = await pair();
    await sendMany(alice.socket, conversation.id, 3);
    const replay = (await sync(bob.socket, { [conversation.id]: 0 })).conversations[conversation.id];
    assert.deepEqual(replay.events.map((e) => e.type), ['conversation-created', 'new-message', 'new-message', 'new-message']);
    assert.deepEqual(replay.events.map((e) => e.seq), [1, 2, 3, 4]);
    assert.equal(replay.events[0].data.id, conversation.id);
  });

  test('a stranger\'s or an unknown conversation reads exactly as not recovered', async () => {
    const { conversation } = await pair();
    const stranger = await actor('stranger');
    const unknown = '00000000-0000-4000-8000-000000000000';
    const data = await sync(stranger.socket, { [conversation.id]: 0, [unknown]: 0 });
    assert.deepEqual(data.conversations[conversation.id], { recovered: false });
    assert.deepEqual(data.conversations[unknown], { recovered: false });
    assert.deepEqual(data.conversationsAdded, []);
  });

  test('more than 100 conversations, or a malformed one, is VALIDATION', async () => {
    const bob = await actor('bob');
    const many = Object.fromEntries(Array.from({ length: 101 }, (_, i) =>
      [`00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, 0]));
    await expectFailure(bob.socket, 'sync', { conversations: many }, 'VALIDATION');
    await expectFailure(bob.socket, 'sync', { conversations: { nope: 0 } }, 'VALIDATION');
    await expectFailure(bob.socket, 'sync', { conversations: [] }, 'VALIDATION');
  });
});
