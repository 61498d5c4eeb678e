// PROTOCOL.md §1 (connecting) and §2 (acks): handshakes, refusals, transports, resilience.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ack,
  api,
  httpOk,
  ackRaw,
  actor,
  connect,
  connectError,
  conversationOf,
  expiredToken,
  forgedToken,
  hs512Token,
  join,
  mark,
  okData,
  openSocket,
  received,
  rs256Token,
  send,
  tamperedToken,
  token,
  tokenWithoutExp,
  unsignedToken,
  user,
  waitFor,
} from '../lib/harness.mjs';

const bearer = (tok) => ({ Authorization: `Bearer ${tok}` });

/** Resolves once the socket's Engine.IO connection runs over a websocket. */
function upgraded(socket) {
  const engine = socket.io.engine;
  if (engine.transport.name === 'websocket') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${socket.label} never upgraded to websocket`)), 5000);
    engine.once('upgrade', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

describe('accepted handshakes', () => {
  test('a token in auth.token connects to /messaging', async () => {
    const socket = await connect(token({ userId: user('alice') }));
    assert.ok(socket.connected);
    assert.equal(typeof socket.id, 'string');
  });

  test('an Authorization Bearer header connects over long-polling', async () => {
    const socket = await connect(null, {
      auth: {},
      transports: ['polling'],
      extraHeaders: bearer(token({ userId: user('alice') })),
    });
    assert.ok(socket.connected);
  });

  test('an Authorization Bearer header connects over a websocket-only transport', async () => {
    const socket = await connect(null, {
      auth: {},
      transports: ['websocket'],
      extraHeaders: bearer(token({ userId: user('alice') })),
    });
    assert.ok(socket.connected);
  });

  test('a token whose only user claim is sub connects as that user', async () => {
    const id = user('subby');
    const subToken = token({ userId: id, omit: ['userId'], extra: { sub: id } });
    const bob = await actor('bob');
    const conversation = await conversationOf({ token: subToken }, [bob]);
    assert.ok(conversation.participantIds.includes(id), JSON.stringify(conversation));
    const socket = await connect(subToken);
    const message = await send(socket, conversation.id, 'hello from sub');
    assert.equal(message.senderId, id);
  });

  test('a token without the optional role, email and name claims connects', async () => {
    const socket = await connect(token({ userId: user('minimal'), role: null, email: null }));
    assert.ok(socket.connected);
  });

  test('both roles, client and salon, connect', async () => {
    for (const role of ['client', 'salon']) {
      const socket = await connect(token({ userId: user(role), role }));
      assert.ok(socket.connected, role);
    }
  });
});

describe('refused handshakes', () => {
  const refusals = [
    ['no auth at all', () => ({ tok: null, options: { auth: {} } })],
    ['an empty token', () => ({ tok: '' })],
    ['a token that is not a JWT', () => ({ tok: 'not-a-jwt' })],
    ['a token signed with another secret', () => ({ tok: forgedToken({ userId: user('eve') }) })],
    ['a token whose payload was swapped after signing', () => ({ tok: tamperedToken({ userId: user('eve') }, user('alice')) })],
    ['an unsigned token with alg none', () => ({ tok: unsignedToken({ userId: user('eve') }) })],
    ['an RS256 token when HS256 is configured', () => ({ tok: rs256Token({ userId: user('eve') }) })],
    ['an HS512 token signed with the right secret', () => ({ tok: hs512Token({ userId: user('eve') }) })],
    ['a token without exp', () => ({ tok: tokenWithoutExp({ userId: user('eve') }) })],
    ['a token without userId or sub', () => ({ tok: token({ userId: user('eve'), omit: ['userId'] }) })],
    ['a token whose role is neither client nor salon', () => ({ tok: token({ userId: user('eve'), role: 'admin' }) })],
    [
      'a valid token in the query string only',
      () => ({ tok: null, options: { auth: {}, query: { token: token({ userId: user('alice') }) } } }),
    ],
    [
      'a forged token in the Authorization header',
      () => ({ tok: null, options: { auth: {}, transports: ['polling'], extraHeaders: bearer(forgedToken({ userId: user('eve') })) } }),
    ],
    [
      'a non-Bearer Authorization header',
      () => ({ tok: null, options: { auth: {}, transports: ['polling'], extraHeaders: { Authorization: `Basic ${Buffer.from('a:b').toString('base64')}` } } }),
    ],
  ];
  for (const [what, make] of refusals) {
    test(`${what} is refused with connect_error unauthorized`, async () => {
      const { tok, options } = make();
      assert.equal(await connectError(tok, options), 'unauthorized');
    });
  }

  test('an expired token is refused with connect_error token_expired', async () => {
    assert.equal(await connectError(expiredToken({ userId: user('late') })), 'token_expired');
  });

  test('an expired token in the Authorization header is refused with token_expired', async () => {
    const tok = expiredToken({ userId: user('late') });
    assert.equal(await connectError(null, { auth: {}, transports: ['polling'], extraHeaders: bearer(tok) }), 'token_expired');
  });
});

describe('transports', () => {
  const variants = [
    ['long-polling upgraded to websocket', ['polling', 'websocket'], true],
    ['websocket only', ['websocket'], true],
    ['long-polling only', ['polling'], false],
  ];
  for (const [what, transports, expectWebsocket] of variants) {
    test(`clients on ${what} connect, send and receive`, async () => {
      const alice = await actor('alice', { transports });
      const bob = await actor('bob', { transports });
      if (expectWebsocket) await Promise.all([upgraded(alice.socket), upgraded(bob.socket)]);
      const conversation = await conversationOf(alice, [bob]);
      await join(alice.socket, conversation.id);
      await join(bob.socket, conversation.id);
      const sent = await send(alice.socket, conversation.id, `over ${transports.join('+')}`);
      const got = await waitFor(bob.socket, 'new-message', { predicate: (m) => m.id === sent.id });
      assert.deepEqual(got, sent);
      if (expectWebsocket) assert.equal(bob.socket.io.engine.transport.name, 'websocket');
    });
  }
});

describe('acks and resilience', () => {
  test('an ack carries exactly one argument', async () => {
    const alice = await actor('alice');
    const bob = await actor('bob');
    const conversation = await conversationOf(alice, [bob]);
    const args = await ackRaw(alice.socket, 'join-conversation', { conversationId: conversation.id });
    assert.equal(args.length, 1, `ack arguments: ${JSON.stringify(args)}`);
    assert.deepEqual(okData(args[0]), { conversationId: conversation.id, latestSeq: 1 });
  });

  test('unknown event names neither disconnect the socket nor stop it from working', async () => {
    const alice = await actor('alice');
    const bob = await actor('bob');
    const conversation = await conversationOf(alice, [bob]);
    const since = mark(alice.socket);
    alice.socket.emit('definitely-not-a-parloir-event', { conversationId: conversation.id });
    alice.socket.emit('definitely-not-a-parloir-event');
    alice.socket.emit('another-unknown-event', 'text', 42, null, [1, 2]);
    // The next acked event is processed after the unknown ones on this connection.
    await join(alice.socket, conversation.id);
    const message = await send(alice.socket, conversation.id, 'still here');
    assert.equal(message.content, 'still here');
    assert.ok(alice.socket.connected);
    assert.deepEqual(received(alice.socket, 'disconnect', { since }), []);
  });

  test('a client event without any payload is answered with VALIDATION and the socket stays', async () => {
    const alice = await actor('alice');
    const [res] = await ackRaw(alice.socket, 'send-message');
    assert.equal(res?.ok, false, JSON.stringify(res));
    assert.equal(res.error.code, 'VALIDATION');
    const [res2] = await ackRaw(alice.socket, 'join-conversation');
    assert.equal(res2?.error?.code, 'VALIDATION', JSON.stringify(res2));
    assert.ok(alice.socket.connected);
    const bob = await actor('bob');
    const conversation = await conversationOf(alice, [bob]);
    await join(alice.socket, conversation.id);
  });

  test('an event emitted the moment the socket connects is handled, on many sockets at once', async () => {
    // Clients commonly emit from their `connect` listener: the server must be listening by
    // the time it tells the client it is connected (no window where events are dropped).
    const alice = await actor('alice');
    const bob = await actor('bob');
    const conversation = await conversationOf(alice, [bob]);
    const acks = await Promise.all(
      Array.from({ length: 30 }, (_, i) => {
        const socket = openSocket(alice.token, { label: `${alice.id}#burst${i}` });
        return new Promise((resolve, reject) => {
          socket.once('connect_error', reject);
          socket.once('connect', () => {
            socket.timeout(5000).emit('join-conversation', { conversationId: conversation.id }, (err, res) => {
              if (err) reject(new Error(`${socket.label}: the join emitted on connect was never acked`));
              else resolve(res);
            });
          });
        });
      }),
    );
    for (const res of acks) assert.deepEqual(okData(res), { conversationId: conversation.id, latestSeq: 1 });
  });

  test('the same user may connect several devices at once', async () => {
    const alice = await actor('alice', { devices: 3 });
    const bob = await actor('bob');
    const conversation = await conversationOf(alice, [bob]);
    for (const socket of alice.sockets) await join(socket, conversation.id);
    const sent = await send(bob.socket, conversation.id, 'to all of your devices');
    for (const socket of alice.sockets) {
      assert.deepEqual(await waitFor(socket, 'new-message', { predicate: (m) => m.id === sent.id }), sent);
    }
  });

  test('a failed event emits error {code, message, event} to that socket only', async () => {
    const alice = await actor('alice', { devices: 2 });
    const bob = await actor('bob');
    const conversation = await conversationOf(alice, [bob]);
    const [first, second] = alice.sockets;
    const since = [mark(first), mark(second)];
    const res = await ack(first, 'send-message', { conversationId: conversation.id, content: '' });
    assert.equal(res?.error?.code, 'VALIDATION', JSON.stringify(res));
    const pushed = await waitFor(first, 'error', { since: since[0] });
    assert.equal(pushed.code, 'VALIDATION');
    assert.equal(pushed.event, 'send-message');
    assert.equal(typeof pushed.message, 'string');
    // Barrier: alice's second device joins and gets its history after any stray `error`.
    await join(second, conversation.id);
    assert.deepEqual(received(second, 'error', { since: since[1] }), []);
  });
});

describe('a token that expires while connected', () => {
  test('gets error TOKEN_EXPIRED and a server disconnect', async () => {
    const id = user('brief');
    const socket = await connect(token({ userId: id, expSeconds: 2 }), { transports: ['websocket'] });
    const since = mark(socket);
    const disconnected = new Promise((resolve) => socket.once('disconnect', resolve));
    const error = await waitFor(socket, 'error', { since, timeoutMs: 8000 });
    assert.equal(error.code, 'TOKEN_EXPIRED');
    // The server ends the session: socket.io-client reports it as such and does not reconnect.
    assert.equal(await disconnected, 'io server disconnect');
  });
});

describe('frames larger than the transport limit', () => {
  test('close only that connection: nothing is stored and the node keeps serving', async () => {
    const alice = await actor('big', { transports: ['websocket'] });
    const bob = await actor('peer');
    const conversation = await conversationOf(alice, [bob]);
    const disconnected = new Promise((resolve) => alice.socket.once('disconnect', resolve));
    // 200 KB, above PARLOIR_MAX_FRAME_BYTES (64 KiB in tests): Engine.IO closes the transport,
    // as its reference server does past maxHttpBufferSize.
    alice.socket.emit('send-message', { conversationId: conversation.id, content: 'x'.repeat(200_000) });
    assert.equal(await disconnected, 'transport close');
    const again = await alice.connect();
    const history = httpOk(await api(alice.token, 'GET', `/api/v1/conversations/${conversation.id}/messages`));
    assert.equal(history.messages.length, 0, 'nothing was stored');
    const stored = await send(again, conversation.id, 'still here');
    assert.equal(stored.content, 'still here');
  });
});
