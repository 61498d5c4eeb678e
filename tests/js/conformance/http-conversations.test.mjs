// PROTOCOL.md §5 POST/GET /api/v1/conversations and §4 conversation-created.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  actor,
  api,
  conversationOf,
  expectNoEvent,
  httpError,
  httpOk,
  mark,
  send,
  TIME_MS,
  token,
  user,
  UUID,
  waitFor,
} from '../lib/harness.mjs';

const post = (tok, body) => api(tok, 'POST', '/api/v1/conversations', body);
const list = (tok, query = '') => api(tok, 'GET', `/api/v1/conversations${query}`);
const sorted = (ids) => [...ids].sort();

/**
 * Activity order compares millisecond timestamps: make sure the clock has moved on before
 * the next step, so that two steps never share a millisecond. Waits for the clock, not for an event.
 */
async function nextMillisecond() {
  const start = Date.now();
  while (Date.now() <= start + 1) await new Promise((resolve) => setImmediate(resolve));
}

function assertConversation(c, participantIds) {
  assert.match(c.id, UUID);
  assert.deepEqual(sorted(c.participantIds), sorted(participantIds));
  assert.match(c.createdAt, TIME_MS);
  assert.ok(c.lastMessageAt === undefined || c.lastMessageAt === null, `new conversation has lastMessageAt: ${JSON.stringify(c)}`);
}

describe('POST /api/v1/conversations', () => {
  test('a new conversation is 201 and the caller is added as a participant', async () => {
    const alice = user('alice');
    const bob = user('bob');
    const res = await post(token({ userId: alice }), { participantIds: [bob] });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    assertConversation(res.body, [alice, bob]);
  });

  test('the same two participants always map to one conversation, answered with 200', async () => {
    const alice = user('alice');
    const bob = user('bob');
    const created = await post(token({ userId: alice }), { participantIds: [bob] });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const fromBob = await post(token({ userId: bob }), { participantIds: [alice] });
    assert.equal(fromBob.status, 200, JSON.stringify(fromBob.body));
    assert.equal(fromBob.body.id, created.body.id);
    const withSelf = await post(token({ userId: alice }), { participantIds: [bob, alice] });
    assert.equal(withSelf.status, 200, JSON.stringify(withSelf.body));
    assert.equal(withSelf.body.id, created.body.id);
  });

  test('concurrent creates of the same pair give one conversation', async () => {
    const alice = user('alice');
    const bob = user('bob');
    const results = await Promise.all([
      post(token({ userId: alice }), { participantIds: [bob] }),
      post(token({ userId: bob }), { participantIds: [alice] }),
      post(token({ userId: alice }), { participantIds: [bob] }),
      post(token({ userId: bob }), { participantIds: [alice] }),
    ]);
    const ids = new Set(results.map((r) => httpOk(r).id));
    assert.equal(ids.size, 1, `several conversations for one pair: ${[...ids]}`);
    assert.deepEqual(results.map((r) => r.status).filter((s) => s === 201), [201], 'exactly one create is 201');
  });

  test('a title is kept', async () => {
    const res = await post(token({ userId: user('alice') }), { participantIds: [user('salon')], title: 'Coupe et couleur' });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    assert.equal(res.body.title, 'Coupe et couleur');
  });

  test('a group of three is created', async () => {
    const [alice, bob, carol] = [user('alice'), user('bob'), user('carol')];
    const res = await post(token({ userId: alice }), { participantIds: [bob, carol] });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    assertConversation(res.body, [alice, bob, carol]);
  });

  const invalid = [
    ['only the caller', (me) => ({ participantIds: [me] })],
    ['no participant', () => ({ participantIds: [] })],
    ['no participantIds field', () => ({ title: 'nobody' })],
    ['participantIds that are not a list', () => ({ participantIds: user('bob') })],
    ['a non-string participant id', () => ({ participantIds: [42] })],
    ['a body that is not an object', () => 'bob'],
    ['a participant id with a NUL character', () => ({ participantIds: [`${user('bob')}\u0000`] })],
    ['a title with a NUL character', () => ({ participantIds: [user('bob')], title: 'Coupe\u0000' })],
  ];
  for (const [what, body] of invalid) {
    test(`a conversation with ${what} is 400 VALIDATION`, async () => {
      const me = user('alice');
      httpError(await post(token({ userId: me }), body(me)), 400, 'VALIDATION');
    });
  }

  test('a body that is not JSON is 400 VALIDATION', async () => {
    const res = await api(token({ userId: user('alice') }), 'POST', '/api/v1/conversations', undefined, { rawBody: '{"participantIds": [' });
    httpError(res, 400, 'VALIDATION');
  });

  test('without a token it is 401 UNAUTHORIZED', async () => {
    const res = await post(null, { participantIds: [user('bob')] });
    httpError(res, 401, 'UNAUTHORIZED');
  });
});

describe('conversation-created', () => {
  test('every device of every participant gets conversation-created, strangers do not', async () => {
    const alice = await actor('alice', { devices: 2 });
    const bob = await actor('bob', { devices: 2 });
    const carol = await actor('carol');
    const stranger = await actor('stranger');
    const since = mark(stranger.socket);
    const res = await post(alice.token, { participantIds: [bob.id, carol.id], title: 'group' });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    for (const socket of [...alice.sockets, ...bob.sockets, carol.socket]) {
      const got = await waitFor(socket, 'conversation-created', { predicate: (c) => c.id === res.body.id });
      // The conversation, and its creation's number: the first of its log (§8).
      assert.deepEqual(got, { ...res.body, seq: 1 });
    }
    // Barrier: a later conversation with the stranger reaches the stranger after the first would have.
    await expectNoEvent(stranger.socket, 'conversation-created', async () => {
      const mine = await conversationOf(alice, [stranger]);
      await waitFor(stranger.socket, 'conversation-created', { since, predicate: (c) => c.id === mine.id });
    }, { since, predicate: (c) => c.id === res.body.id });
  });
});

describe('GET /api/v1/conversations', () => {
  test('lists the caller\'s conversations, most recent activity first, with lastMessage', async () => {
    const alice = await actor('alice');
    const others = [await actor('bob'), await actor('carol'), await actor('dave')];
    const created = [];
    for (const other of others) {
      created.push(await conversationOf(alice, [other]));
      await nextMillisecond();
    }
    // A message makes the oldest conversation the most recently active.
    const message = await send(alice.socket, created[0].id, 'bump');
    const res = await list(alice.token);
    const body = httpOk(res, [200]);
    assert.deepEqual(body.conversations.map((c) => c.id), [created[0].id, created[2].id, created[1].id]);
    const bumped = body.conversations[0];
    assert.deepEqual(bumped.lastMessage, message);
    assert.equal(bumped.lastMessageAt, message.createdAt);
    assert.equal(typeof bumped.unreadCount, 'number');
    for (const c of body.conversations) assert.equal(typeof c.unreadCount, 'number', JSON.stringify(c));
    assert.ok(!body.nextCursor, `nextCursor on the last page: ${JSON.stringify(body.nextCursor)}`);
  });

  test('pages with limit and the opaque nextCursor', async () => {
    const alice = await actor('alice');
    const created = [];
    for (const label of ['p1', 'p2', 'p3', 'p4', 'p5']) {
      created.push(await conversationOf(alice, [{ id: user(label) }]));
      await nextMillisecond();
    }
    const newestFirst = created.map((c) => c.id).reverse();
    const seen = [];
    let cursor = null;
    let pages = 0;
    do {
      const query = `?limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
      const body = httpOk(await list(alice.token, query), [200]);
      assert.ok(body.conversations.length <= 2, `page larger than limit: ${body.conversations.length}`);
      seen.push(...body.conversations.map((c) => c.id));
      cursor = body.nextCursor ?? null;
      pages += 1;
      assert.ok(pages <= 5, 'nextCursor never ends');
    } while (cursor);
    assert.deepEqual(seen, newestFirst);
    assert.equal(pages, 3);
  });

  test('another user\'s conversations are not listed', async () => {
    const alice = await actor('alice');
    const bob = await actor('bob');
    const carol = await actor('carol');
    const mine = await conversationOf(alice, [bob]);
    await conversationOf(bob, [carol]);
    const body = httpOk(await list(alice.token), [200]);
    assert.deepEqual(body.conversations.map((c) => c.id), [mine.id]);
  });

  test('a user without conversations gets an empty list', async () => {
    const body = httpOk(await list(token({ userId: user('lonely') })), [200]);
    assert.deepEqual(body.conversations, []);
    assert.ok(!body.nextCursor);
  });

  test('without a token it is 401 UNAUTHORIZED', async () => {
    httpError(await list(null), 401, 'UNAUTHORIZED');
  });
});
