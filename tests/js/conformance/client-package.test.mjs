// @parloir/client (clients/js) against real nodes: whatever the network does
// (a disconnect, a lost broadcast, a duplicate, a reordering between two
// nodes, a gap longer than one replay), the app gets every numbered event of
// its conversations once, in order, and then the live ones (PROTOCOL.md §8).
// The faults are made at the client's socket by test-only filters; the
// server is the real one.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ack,
  actor,
  api,
  conversationOf,
  DEFAULT_TIMEOUT_MS,
  httpOk,
  join,
  mark,
  okData,
  randomUUID,
  received,
  send,
  sendMany,
  token,
  user,
} from '../lib/harness.mjs';
import { loadClientPackage } from '../lib/client-package.mjs';

const { createClient, ParloirError } = await loadClientPackage();

// ---------------------------------------------------------------------------------------------
// The app: what it received from the client, in order

/** A device of `who` running the package over its socket, and the app's record of events. */
function device(who, options = {}) {
  const socket = who.socket;
  const client = createClient(socket, options);
  const events = [];
  const waiters = new Set();
  client.onAny((name, payload, meta) => {
    events.push({ name, payload, meta });
    for (const check of [...waiters]) check();
  });
  const app = {
    events,
    /** The numbered events of a conversation the app got, as `[name, seq]`. */
    numbered(conversationId) {
      return events
        .filter((e) => e.meta?.seq !== undefined && conversationOf_(e) === conversationId)
        .map((e) => [e.name, e.meta.seq]);
    },
    /** Resolves once `predicate(events)` holds, checked on each event; fails after a deadline. */
    until(predicate, what, timeoutMs = DEFAULT_TIMEOUT_MS) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (!predicate(events)) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve();
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          const seen = events.slice(-30).map((e) => `  ${e.name} ${JSON.stringify(e.payload)?.slice(0, 160)}`);
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; the app got:\n${seen.join('\n')}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    /** The first event named `name` matching `predicate`, once it has arrived. */
    async event(name, predicate = () => true, what = name) {
      await app.until((list) => list.some((e) => e.name === name && predicate(e.payload, e.meta)), what);
      return events.find((e) => e.name === name && predicate(e.payload, e.meta));
    },
    /** Resolves at the next `resumed` (a connection's catch-up done). */
    resumed() {
      const count = events.filter((e) => e.name === 'resumed').length;
      return app.until((list) => list.filter((e) => e.name === 'resumed').length > count, 'resumed');
    },
  };
  return { socket, client, app };
}

const conversationOf_ = (e) => e.payload?.conversationId ?? (e.name === 'conversation-created' ? e.payload.id : undefined);

/** The app holds each number of the conversation once, in order, from `from` to `to`. */
function assertInOrderOnce(app, conversationId, from, to) {
  const seqs = app.numbered(conversationId).map(([, seq]) => seq);
  assert.deepEqual(seqs, Array.from({ length: to - from + 1 }, (_, i) => from + i),
    `the app got numbers ${JSON.stringify(seqs)}`);
}

const messagesOf = (app, conversationId) =>
  app.events.filter((e) => e.name === 'new-message' && e.payload.conversationId === conversationId);

// ---------------------------------------------------------------------------------------------
// Test-only faults at the socket (socket.io-client's packet entry points)

/** Passes each incoming event through `decide(data)`, which returns the events to deliver instead. */
function filterEvents(socket, decide) {
  const deliver = socket.onevent.bind(socket);
  socket.onevent = (packet) => {
    for (const data of decide(packet.data)) deliver({ ...packet, data });
  };
}

/** Delivers a made-up server event, as if it came on the wire. */
function inject(socket, event, payload) {
  socket.onevent({ type: 2, nsp: socket.nsp, data: [event, payload] });
}

/** Records what the client emits (`[event, payload]`). */
function spyEmits(socket) {
  const sent = [];
  const emit = socket.emit.bind(socket);
  socket.emit = (event, ...args) => {
    sent.push([event, args[0]]);
    return emit(event, ...args);
  };
  return sent;
}

const isMessage = (data, content) => data[0] === 'new-message' && data[1].content === content;

/** Two users and their conversation; bob runs the package and has joined it. */
async function pairWithClient(options) {
  const alice = await actor('alice');
  const bob = await actor('bob');
  const b = device(bob, options);
  await b.app.resumed();
  const conversation = await conversationOf(alice, [bob]);
  await join(alice.socket, conversation.id);
  await b.client.join(conversation.id);
  // Created while bob's client was connected: it follows the conversation from its first number.
  await b.app.event('conversation-created', (c) => c.id === conversation.id);
  return { alice, bob, conversation, ...b };
}

describe('@parloir/client resumes a conversation without gaps', () => {
  test('a client that was offline while the other side sent, read and deleted gets each event once, in order, then live ones', async () => {
    const { alice, conversation, socket, client, app } = await pairWithClient();
    const m1 = await send(alice.socket, conversation.id, 'before');
    const mine = await client.send(conversation.id, 'from bob');
    await app.until(() => messagesOf(app, conversation.id).length === 2, 'both messages live');

    socket.disconnect();
    const [m2, m3] = await sendMany(alice.socket, conversation.id, 2, 'while away ');
    const read = okData(await ack(alice.socket, 'mark-as-read', { messageId: mine.id }));
    assert.equal((await api(alice.token, 'DELETE', `/api/v1/messages/${m1.id}`)).status, 204);
    const resumed = app.resumed();
    socket.connect();
    await resumed;
    const live = await send(alice.socket, conversation.id, 'after');
    await app.event('new-message', (m) => m.id === live.id, 'the live message');

    assert.deepEqual(app.numbered(conversation.id), [
      ['conversation-created', 1],
      ['new-message', m1.seq],
      ['new-message', mine.seq],
      ['new-message', m2.seq],
      ['new-message', m3.seq],
      ['message-read', read.seq],
      ['message-deleted', read.seq + 1],
      ['new-message', live.seq],
    ]);
    const missed = app.events.filter((e) => e.meta?.seq > mine.seq && e.meta.seq < live.seq);
    assert.ok(missed.every((e) => e.meta.replayed),
      `what was missed is marked replayed: ${JSON.stringify(missed.map((e) => [e.name, e.meta]))}`);
    assert.equal(app.events.find((e) => e.meta?.seq === live.seq).meta.replayed, false);
    const replayedM1 = missed.find((e) => e.name === 'new-message' && e.payload.id === m1.id);
    assert.equal(replayedM1, undefined, 'm1 was delivered live before, not again');
  });

  test('a connection dropped under traffic (automatic reconnect) loses and repeats nothing', async () => {
    const { alice, conversation, socket, app } = await pairWithClient();
    socket.io.reconnection(true);
    socket.io.reconnectionDelay(50);
    socket.io.reconnectionDelayMax(200);
    const resumed = app.resumed();
    socket.io.engine.close();
    // Some of these land while bob is away, some after: the app must not tell.
    const sent = await sendMany(alice.socket, conversation.id, 8, 'burst ');
    await resumed;
    await app.until(() => messagesOf(app, conversation.id).length === 8, 'all 8 messages');
    assert.deepEqual(messagesOf(app, conversation.id).map((e) => e.payload.id), sent.map((m) => m.id));
    assertInOrderOnce(app, conversation.id, 1, sent[7].seq);
  });

  test('a lost live event is recovered by gap detection, without a reconnect', async () => {
    const { alice, conversation, socket, app } = await pairWithClient();
    let dropped = 0;
    filterEvents(socket, (data) => (isMessage(data, 'm2') && dropped++ === 0 ? [] : [data]));
    const since = mark(socket);
    const [m1, m2, m3] = await sendMany(alice.socket, conversation.id, 3);
    await app.until(() => messagesOf(app, conversation.id).length === 3, 'm1, m2 and m3');
    assert.equal(dropped, 1, 'm2 was dropped once at the socket');
    assert.deepEqual(messagesOf(app, conversation.id).map((e) => e.payload.id), [m1.id, m2.id, m3.id]);
    assert.equal(messagesOf(app, conversation.id)[1].meta.replayed, true, 'm2 came from the log');
    assertInOrderOnce(app, conversation.id, 1, m3.seq);
    assert.equal(received(socket, 'disconnect', { since }).length, 0, 'no reconnect');
  });

  test('a lost last event is recovered when the server says where the log stands (conversation-latest)', async () => {
    const { alice, conversation, socket, app } = await pairWithClient();
    let droppedIt;
    const dropped = new Promise((resolve) => {
      droppedIt = resolve;
    });
    filterEvents(socket, (data) => {
      if (!isMessage(data, 'last')) return [data];
      droppedIt();
      return [];
    });
    const last = await send(alice.socket, conversation.id, 'last');
    await dropped;
    // Nothing follows it, so no gap shows: only the hint reveals the loss.
    inject(socket, 'conversation-latest', { conversationId: conversation.id, seq: last.seq });
    await app.event('new-message', (m) => m.id === last.id, 'the lost message');
    assert.equal(messagesOf(app, conversation.id)[0].meta.replayed, true);
    assertInOrderOnce(app, conversation.id, 1, last.seq);
  });

  test('duplicated and reordered deliveries reach the app once, in order', async () => {
    const { alice, bob, conversation, socket, app } = await pairWithClient();
    let held = null;
    let m3Seen = false;
    filterEvents(socket, (data) => {
      // m2 is held back until m3 has been delivered (as between two nodes);
      // every numbered event comes twice.
      if (isMessage(data, 'm2') && !held && !m3Seen) {
        held = data;
        return [];
      }
      const out = [data, structuredClone(data)];
      if (isMessage(data, 'm3')) {
        m3Seen = true;
        if (held) out.push(held, structuredClone(held));
      }
      return out;
    });
    const [m1, m2, m3] = await sendMany(alice.socket, conversation.id, 3);
    const read = okData(await ack(bob.socket, 'mark-as-read', { messageId: m3.id }));
    assert.equal((await api(alice.token, 'DELETE', `/api/v1/messages/${m1.id}`)).status, 204);
    await app.event('message-deleted', (e) => e.messageId === m1.id);
    assert.deepEqual(app.numbered(conversation.id), [
      ['conversation-created', 1],
      ['new-message', m1.seq],
      ['new-message', m2.seq],
      ['new-message', m3.seq],
      ['message-read', read.seq],
      ['message-deleted', read.seq + 1],
    ]);
    assert.ok(messagesOf(app, conversation.id).every((e) => !e.meta.replayed), 'all live: no sync was needed');
  });

  test('a gap longer than one replay continues with sync (hasMore)', async () => {
    const senders = [await actor('alice'), await actor('carol'), await actor('dave'), await actor('erin')];
    const bob = await actor('bob');
    const { socket, client, app } = device(bob);
    await app.resumed();
    const conversation = await conversationOf(senders[0], [bob, ...senders.slice(1)], 'many');
    await client.join(conversation.id);
    await app.event('conversation-created', (c) => c.id === conversation.id);
    const before = client.state().conversations[conversation.id];
    const emitted = spyEmits(socket);

    socket.disconnect();
    // 72 messages from four senders (each within its send budget): more than the 64 a join replays.
    const sent = (await Promise.all(senders.map((a) => sendMany(a.socket, conversation.id, 18, `${a.id} `)))).flat();
    const latest = Math.max(...sent.map((m) => m.seq));
    socket.connect();
    await app.until(() => messagesOf(app, conversation.id).length === 72, 'the 72 missed messages', 15_000);
    assertInOrderOnce(app, conversation.id, 1, latest);
    assert.deepEqual(new Set(messagesOf(app, conversation.id).map((e) => e.payload.id)), new Set(sent.map((m) => m.id)));

    const rejoin = emitted.find(([event, p]) => event === 'join-conversation' && p.conversationId === conversation.id);
    assert.equal(rejoin[1].afterSeq, before, 'the rejoin resumed from the last number the app had');
    const continued = emitted.filter(([event, p]) => event === 'sync' && p.conversations[conversation.id] === before + 64);
    assert.ok(continued.length >= 1, `a sync continued after the 64 replayed: ${JSON.stringify(emitted)}`);
  });

  test('a conversation the server cannot replay (not the user\'s, or unknown) makes the app reload it', async () => {
    const alice = await actor('alice');
    const carol = await actor('carol');
    const bob = await actor('bob');
    const theirs = await conversationOf(alice, [carol]);
    const unknown = randomUUID();
    const { client, app } = device(bob, { restore: { conversations: { [theirs.id]: 1, [unknown]: 3 } } });
    await app.until((list) => list.filter((e) => e.name === 'reload').length === 2, 'two reloads');
    const reloads = app.events.filter((e) => e.name === 'reload').map((e) => e.payload.conversationId);
    assert.deepEqual(new Set(reloads), new Set([theirs.id, unknown]));
    assert.deepEqual(client.state().conversations, {}, 'neither is followed any more');
    assert.equal(app.events.filter((e) => e.meta?.seq !== undefined).length, 0, 'and nothing of theirs was delivered');
    await assert.rejects(client.join(theirs.id), (e) => e instanceof ParloirError && e.code === 'NOT_FOUND');
    assert.deepEqual(client.state().conversations, {}, 'a refused join follows nothing');
  });

  test('a first join loads history, then the log from its newest message on', async () => {
    const alice = await actor('alice');
    const bob = await actor('bob', { devices: 2 });
    const conversation = await conversationOf(alice, [bob]);
    const [m1, m2] = await sendMany(alice.socket, conversation.id, 2);
    // Read on bob's other device: after the newest message, so in no history page.
    const read = okData(await ack(bob.sockets[1], 'mark-as-read', { messageId: m2.id }));
    const { client, app } = device(bob);
    await app.resumed();
    const joined = await client.join(conversation.id, { limit: 10 });
    assert.equal(joined.resumed, false);
    const history = await app.event('conversation-history', (h) => h.conversationId === conversation.id);
    assert.deepEqual(history.payload.messages.map((m) => m.id), [m1.id, m2.id]);
    await app.event('message-read', (e) => e.messageId === m2.id, 'the read that followed the page');
    const live = await send(alice.socket, conversation.id, 'live');
    await app.event('new-message', (m) => m.id === live.id);
    assert.deepEqual(app.numbered(conversation.id), [['message-read', read.seq], ['new-message', live.seq]]);
  });

  test('on reconnect, every followed conversation is synced, 100 per call, and conversations added meanwhile too', async () => {
    const bob = await actor('bob');
    const { socket, client, app } = device(bob);
    await app.resumed();
    const partners = Array.from({ length: 101 }, () => user('partner'));
    const conversations = [];
    for (const partner of partners) {
      conversations.push(httpOk(await api(bob.token, 'POST', '/api/v1/conversations', { participantIds: [partner] })));
    }
    await app.until(() => app.events.filter((e) => e.name === 'conversation-created').length === 101, '101 conversations');
    const emitted = spyEmits(socket);

    socket.disconnect();
    const first = conversations[0];
    const lastOne = conversations[100];
    const fromFirst = await postMessage(partners[0], first.id, 'to the first');
    const fromLast = await postMessage(partners[100], lastOne.id, 'to the last');
    const carol = await actor('carol');
    const added = await conversationOf(carol, [bob]);
    const fromCarol = await send(carol.socket, added.id, 'hello bob');
    const resumed = app.resumed();
    socket.connect();
    await resumed;

    for (const m of [fromFirst, fromLast, fromCarol]) {
      assert.ok(messagesOf(app, m.conversationId).some((e) => e.payload.id === m.id && e.meta.replayed), `${m.content} was caught up`);
    }
    assert.deepEqual(app.numbered(added.id), [['conversation-created', 1], ['new-message', fromCarol.seq]]);
    const syncs = emitted.filter(([event]) => event === 'sync').map(([, p]) => p);
    assert.ok(syncs.every((p) => Object.keys(p.conversations).length <= 100 && typeof p.since === 'string'));
    const named = new Set(syncs.flatMap((p) => Object.keys(p.conversations)));
    for (const c of conversations) assert.ok(named.has(c.id), 'every followed conversation was synced');
    assert.ok(client.state().conversations[added.id] >= fromCarol.seq, 'the added conversation is followed');
  });

  test('a send whose ack is lost is retried with the same clientMessageId and stored once', async () => {
    const { alice, conversation, socket, app } = await pairWithClient();
    const onack = socket.onack.bind(socket);
    let answers = 0;
    socket.onack = (packet) => {
      const isOurs = packet.data?.[0]?.data?.content === 'said once';
      if (isOurs && answers++ === 0) return; // the first answer to the send is lost
      onack(packet);
    };
    const emitted = spyEmits(socket);
    const retrying = createClient(socket, { ackTimeoutMs: 400, retryDelayMs: 50 });
    const stored = await retrying.send(conversation.id, 'said once');
    retrying.close();
    assert.ok(answers >= 2, 'the first answer was lost, a retry got the stored message');
    const sends = emitted.filter(([event]) => event === 'send-message').map(([, p]) => p.clientMessageId);
    assert.ok(sends.length >= 2 && sends.every((id) => id === stored.clientMessageId), JSON.stringify(sends));
    await app.event('new-message', (m) => m.id === stored.id);
    const page = (await api(alice.token, 'GET', `/api/v1/conversations/${conversation.id}/messages`)).body;
    assert.deepEqual(page.messages.filter((m) => m.content === 'said once').map((m) => m.id), [stored.id]);
    assert.equal(messagesOf(app, conversation.id).filter((e) => e.payload.id === stored.id).length, 1);
  });

  test('a send that cannot get through rejects with its clientMessageId, to retry later', async () => {
    const { conversation, socket, client } = await pairWithClient();
    socket.disconnect();
    const quick = createClient(socket, { ackTimeoutMs: 100, sendAttempts: 2, retryDelayMs: 10 });
    const error = await quick.send(conversation.id, 'not now', { clientMessageId: 'mine-1' }).catch((e) => e);
    quick.close();
    assert.ok(error instanceof ParloirError, String(error));
    assert.equal(error.code, 'DISCONNECTED');
    assert.equal(error.clientMessageId, 'mine-1');
    assert.deepEqual(client.state().conversations[conversation.id], 1, 'nothing was sent');
  });
});

/** Sends over HTTP as `userId` (a partner with no socket). */
async function postMessage(userId, conversationId, content) {
  const res = await api(token({ userId }), 'POST', `/api/v1/conversations/${conversationId}/messages`, { content, clientMessageId: randomUUID() });
  assert.ok([200, 201].includes(res.status), `${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}
