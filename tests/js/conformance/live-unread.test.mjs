// Issue 4. PROTOCOL.md §1 (unread totals on connect), §3 send-message / reads,
// §4 unread-count-updated, §5 GET /api/v1/unread and unreadCount in the conversation list.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ack,
  actor,
  api,
  conversationOf,
  httpOk,
  okData,
  sendMany,
  waitFor,
  waitForEach,
} from '../lib/harness.mjs';

const unread = async (who) => httpOk(await api(who.token, 'GET', '/api/v1/unread'), [200]);

describe('unread counts', () => {
  test('each new socket gets unread-count-updated with the user\'s totals on connect', async () => {
    const fresh = await actor('fresh');
    const first = await waitFor(fresh.socket, 'unread-count-updated');
    assert.equal(first.totalUnread, 0);

    const alice = await actor('alice');
    const conversation = await conversationOf(alice, [fresh]);
    await sendMany(alice.socket, conversation.id, 2);
    const device = await fresh.connect();
    const onConnect = await waitFor(device, 'unread-count-updated');
    assert.equal(onConnect.totalUnread, 2, JSON.stringify(onConnect));
  });

  test('three sends reach all three devices of the other participant, joined or not, as totalUnread 3', async () => {
    const alice = await actor('alice');
    const bob = await actor('bob', { devices: 3 });
    const conversation = await conversationOf(alice, [bob]);
    await sendMany(alice.socket, conversation.id, 3);
    const counts = await waitForEach(bob.sockets, 'unread-count-updated', { predicate: (e) => e.totalUnread === 3 });
    for (const c of counts) {
      assert.deepEqual(c, { totalUnread: 3, conversationId: conversation.id, conversationUnread: 3 });
    }
    assert.deepEqual(await unread(bob), { totalUnread: 3, conversations: { [conversation.id]: 3 } });
  });

  test('the sender\'s own messages are never unread for the sender', async () => {
    const alice = await actor('alice');
    const bob = await actor('bob');
    const conversation = await conversationOf(alice, [bob]);
    await sendMany(alice.socket, conversation.id, 3);
    await waitFor(bob.socket, 'unread-count-updated', { predicate: (e) => e.totalUnread === 3 });
    assert.deepEqual(await unread(alice), { totalUnread: 0, conversations: {} });
  });

  test('reading brings the count to 0 on every device', async () => {
    const alice = await actor('alice');
    const bob = await actor('bob', { devices: 3 });
    const conversation = await conversationOf(alice, [bob]);
    await sendMany(alice.socket, conversation.id, 3);
    await waitForEach(bob.sockets, 'unread-count-updated', { predicate: (e) => e.totalUnread === 3 });
    okData(await ack(bob.sockets[2], 'mark-conversation-as-read', { conversationId: conversation.id }));
    const counts = await waitForEach(bob.sockets, 'unread-count-updated', { predicate: (e) => e.totalUnread === 0 });
    for (const c of counts) assert.equal(c.totalUnread, 0);
    assert.deepEqual(await unread(bob), { totalUnread: 0, conversations: {} });
  });

  test('reading up to one message leaves the later ones unread', async () => {
    const alice = await actor('alice');
    const bob = await actor('bob');
    const conversation = await conversationOf(alice, [bob]);
    const sent = await sendMany(alice.socket, conversation.id, 3);
    okData(await ack(bob.socket, 'mark-as-read', { messageId: sent[0].id }));
    await waitFor(bob.socket, 'unread-count-updated', { predicate: (e) => e.totalUnread === 2 });
    assert.deepEqual(await unread(bob), { totalUnread: 2, conversations: { [conversation.id]: 2 } });
  });

  test('deleting an unread message lowers the count', async () => {
    const alice = await actor('alice');
    const bob = await actor('bob');
    const conversation = await conversationOf(alice, [bob]);
    const [doomed] = await sendMany(alice.socket, conversation.id, 2);
    await waitFor(bob.socket, 'unread-count-updated', { predicate: (e) => e.totalUnread === 2 });
    const res = await api(alice.token, 'DELETE', `/api/v1/messages/${doomed.id}`);
    assert.ok([200, 204].includes(res.status), `delete: ${res.status} ${JSON.stringify(res.body)}`);
    assert.deepEqual(await unread(bob), { totalUnread: 1, conversations: { [conversation.id]: 1 } });
    const device = await bob.connect();
    assert.equal((await waitFor(device, 'unread-count-updated')).totalUnread, 1);
  });

  test('GET /api/v1/unread sums every conversation and lists only non-zero ones, as the sockets count', async () => {
    const bob = await actor('bob');
    const [alice, carol, dave] = [await actor('alice'), await actor('carol'), await actor('dave')];
    const withAlice = await conversationOf(alice, [bob]);
    const withCarol = await conversationOf(carol, [bob]);
    await conversationOf(dave, [bob]); // nothing sent: never listed
    await sendMany(alice.socket, withAlice.id, 2);
    await sendMany(carol.socket, withCarol.id, 1);
    const last = await waitFor(bob.socket, 'unread-count-updated', { predicate: (e) => e.totalUnread === 3 });
    const body = await unread(bob);
    assert.deepEqual(body, { totalUnread: 3, conversations: { [withAlice.id]: 2, [withCarol.id]: 1 } });
    assert.equal(body.totalUnread, last.totalUnread);
  });

  test('the conversation list carries each conversation\'s unreadCount', async () => {
    const alice = await actor('alice');
    const bob = await actor('bob');
    const conversation = await conversationOf(alice, [bob]);
    await sendMany(alice.socket, conversation.id, 2);
    const list = httpOk(await api(bob.token, 'GET', '/api/v1/conversations'), [200]);
    assert.equal(list.conversations.find((c) => c.id === conversation.id)?.unreadCount, 2);
    const own = httpOk(await api(alice.token, 'GET', '/api/v1/conversations'), [200]);
    assert.equal(own.conversations.find((c) => c.id === conversation.id)?.unreadCount, 0);
  });
});
