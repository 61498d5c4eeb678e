// Issue 4. PROTOCOL.md §3 get-presence and §4 user-online / user-offline: told only to
// contacts, once per user (first device in, last device out). Contacts are users who both took
// part in a conversation they share (sent, read, joined or created it; issue #25): being added
// to one reveals nothing.
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
  received,
  send,
  TIME_MS,
  user,
  waitFor,
} from '../lib/harness.mjs';

const presence = async (socket, userIds) => okData(await ack(socket, 'get-presence', { userIds }));
const about = (who) => (e) => e.userId === who.id;

describe('presence', () => {
  test('the first device online is announced to users sharing a conversation, never to strangers', async () => {
    const alice = await actor('alice', { devices: 0 });
    const bob = await actor('bob');
    const stranger = await actor('stranger');
    const conversation = await conversationOf(alice, [bob]);
    await join(bob.socket, conversation.id); // bob takes part; alice created it
    const since = mark(stranger.socket);
    await alice.connect();
    const online = await waitFor(bob.socket, 'user-online', { predicate: about(alice) });
    assert.equal(online.userId, alice.id);
    assert.match(online.at, TIME_MS);
    await expectNoEvent(stranger.socket, 'user-online', async () => {
      // Barrier: bob has been told, and the stranger's round trip comes after any copy for them.
      const seen = await presence(stranger.socket, [alice.id]);
      assert.deepEqual(seen, { online: { [alice.id]: false }, lastSeen: { [alice.id]: null } });
    }, { since, predicate: about(alice) });
  });

  test('a second device of an online user is not announced again', async () => {
    const alice = await actor('alice', { devices: 0 });
    const bob = await actor('bob');
    const conversation = await conversationOf(alice, [bob]);
    await join(bob.socket, conversation.id);
    await alice.connect();
    await waitFor(bob.socket, 'user-online', { predicate: about(alice) });
    const since = mark(bob.socket);
    const second = await alice.connect();
    await waitFor(second, 'unread-count-updated'); // the second device's connect has been handled
    await expectNoEvent(bob.socket, 'user-online', async () => {
      const m = await send(second, conversation.id, 'barrier');
      await waitFor(bob.socket, 'new-message', { since, predicate: (x) => x.id === m.id });
    }, { since, predicate: about(alice) });
  });

  test('user-offline comes when the last of three devices disconnects, and not before', async () => {
    const alice = await actor('alice', { devices: 3 });
    const bob = await actor('bob');
    const conversation = await conversationOf(alice, [bob]);
    await join(bob.socket, conversation.id);
    const since = mark(bob.socket);
    alice.sockets[0].disconnect();
    alice.sockets[1].disconnect();
    await expectNoEvent(bob.socket, 'user-offline', async () => {
      const m = await send(alice.sockets[2], conversation.id, 'still here on my third device');
      await waitFor(bob.socket, 'new-message', { since, predicate: (x) => x.id === m.id });
      const seen = await presence(bob.socket, [alice.id]);
      assert.deepEqual(seen, { online: { [alice.id]: true }, lastSeen: { [alice.id]: null } });
    }, { since, predicate: about(alice) });

    alice.sockets[2].disconnect();
    const offline = await waitFor(bob.socket, 'user-offline', { since, predicate: about(alice) });
    assert.deepEqual(Object.keys(offline).sort(), ['lastSeenAt', 'userId']);
    assert.match(offline.lastSeenAt, TIME_MS);
    const seen = await presence(bob.socket, [alice.id]);
    assert.equal(seen.online[alice.id], false);
    assert.match(seen.lastSeen[alice.id], TIME_MS);
    assert.equal(received(bob.socket, 'user-offline', { since, predicate: about(alice) }).length, 1);
  });

  test('get-presence answers online users with lastSeen null and strangers as offline', async () => {
    const alice = await actor('alice');
    const bob = await actor('bob');
    const stranger = await actor('stranger'); // online, but shares no conversation with bob
    const carol = user('carol'); // shares a conversation, never connected
    const shared = await conversationOf(bob, [alice]);
    await join(alice.socket, shared.id);
    await conversationOf(bob, [{ id: carol }]);
    const seen = await presence(bob.socket, [alice.id, stranger.id, carol]);
    assert.deepEqual(seen, {
      online: { [alice.id]: true, [stranger.id]: false, [carol]: false },
      lastSeen: { [alice.id]: null, [stranger.id]: null, [carol]: null },
    });
  });

  test('a user added to a conversation is neither seen nor told of until they take part', async () => {
    const alice = await actor('alice');
    const bob = await actor('bob');
    const conversation = await conversationOf(alice, [bob]); // alice took part by creating it
    const since = mark(alice.socket);
    const hidden = await presence(alice.socket, [bob.id]);
    assert.deepEqual(hidden, { online: { [bob.id]: false }, lastSeen: { [bob.id]: null } });
    const second = await bob.connect();
    await waitFor(second, 'unread-count-updated');
    second.disconnect();
    await expectNoEvent(alice.socket, 'user-online', async () => {
      const blind = await presence(bob.socket, [alice.id]);
      assert.deepEqual(blind, { online: { [alice.id]: false }, lastSeen: { [alice.id]: null } });
    }, { since, predicate: about(bob) });
    await join(bob.socket, conversation.id);
    // A node reads a user's contacts again within a second of a new one.
    let seen;
    for (let i = 0; i < 40; i += 1) {
      seen = await presence(alice.socket, [bob.id]);
      if (seen.online[bob.id]) break;
      await new Promise((resolve) => setTimeout(resolve, 100)); // asking again, as a client polls
    }
    assert.deepEqual(seen, { online: { [bob.id]: true }, lastSeen: { [bob.id]: null } });
  });

  test('get-presence accepts 100 ids and refuses 101 with VALIDATION', async () => {
    const bob = await actor('bob');
    const ids = Array.from({ length: 101 }, (_, i) => user(`u${i}`));
    const hundred = await presence(bob.socket, ids.slice(0, 100));
    assert.equal(Object.keys(hundred.online).length, 100);
    await expectFailure(bob.socket, 'get-presence', { userIds: ids }, 'VALIDATION');
  });

  for (const [what, payload] of [
    ['userIds that are not a list', { userIds: 'alice' }],
    ['non-string user ids', { userIds: [1, 2] }],
    ['no userIds', {}],
  ]) {
    test(`get-presence with ${what} is VALIDATION`, async () => {
      const bob = await actor('bob');
      await expectFailure(bob.socket, 'get-presence', payload, 'VALIDATION');
    });
  }
});
