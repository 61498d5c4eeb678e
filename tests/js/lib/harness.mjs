// Test harness for the official-client conformance suite (shared/PROTOCOL.md on the wire).
//
// Every test file imports from here. The harness owns: configuration from the environment,
// JWT minting (node:crypto only), connecting real socket.io-client v4 sockets that record
// EVERY event they receive, deadline-bounded waits that report what arrived, barriers that
// prove "nothing was broadcast", HTTP helpers, unique user ids, and closing every socket
// after each test so that node's test runner exits.
//
// Rules for tests (STYLE.md §9): never sleep to wait for something; timeouts are deadlines
// on waits only. Every test owns its users and conversations (`user()` makes unique ids).
//
// Environment:
//   PARLOIR_URL         base URL of the node under test, e.g. http://127.0.0.1:41234
//   PARLOIR_JWT_SECRET  the HS256 secret the node accepts
//   PARLOIR_URL_2       optional: a second node sharing the same state (cluster tests)
import { after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, createSign, generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { io } from 'socket.io-client';

export { randomUUID };

export const NAMESPACE = '/messaging';
/** The deadline of every wait, ack and HTTP call unless a test says otherwise. */
export const DEFAULT_TIMEOUT_MS = 5000;

// ---------------------------------------------------------------------------------------------
// Configuration

function requiredEnv(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(
      `${name} is not set. The conformance suite runs against a live parloir node: ` +
        'run it through `cargo nextest run --test conformance` (scripts/test does), or set ' +
        'PARLOIR_URL and PARLOIR_JWT_SECRET yourself (see tests/conformance.rs).',
    );
  }
  return value;
}

const trimSlash = (url) => url.replace(/\/+$/, '');

export const config = Object.freeze({
  url: trimSlash(requiredEnv('PARLOIR_URL')),
  secret: requiredEnv('PARLOIR_JWT_SECRET'),
  url2: process.env.PARLOIR_URL_2 ? trimSlash(process.env.PARLOIR_URL_2) : null,
});

/**
 * The node the next socket or request goes to. With `PARLOIR_URL_2` (a cluster run) the two
 * nodes alternate, so a user's devices, senders and receivers land on different nodes and every
 * test also checks delivery across them.
 */
let urlTurn = 0;
export function nextUrl() {
  if (!config.url2) return config.url;
  urlTurn += 1;
  return urlTurn % 2 === 1 ? config.url : config.url2;
}

// ---------------------------------------------------------------------------------------------
// Well-known shapes (PROTOCOL.md "Conventions")

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
export const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
/** RFC 3339, UTC, millisecond precision: `2026-11-23T10:15:30.123Z`. */
export const TIME_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

// ---------------------------------------------------------------------------------------------
// Users and tokens

/** A user id unique to this run: `user('alice')` → `alice-3f9a0c1d2b`. */
export function user(label) {
  return `${label}-${randomBytes(5).toString('hex')}`;
}

const b64url = (value) =>
  Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

const HMAC = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' };

let rsaKey = null;
function rsaPrivateKey() {
  rsaKey ??= generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  return rsaKey;
}

/** Signs `claims` as a compact JWS with `header.alg` (HS256/384/512 with `key`, RS256, or none). */
export function signJwt(header, claims, key = config.secret) {
  const input = `${b64url(header)}.${b64url(claims)}`;
  let signature;
  if (header.alg in HMAC) {
    signature = createHmac(HMAC[header.alg], key).update(input).digest();
  } else if (header.alg === 'RS256') {
    signature = createSign('RSA-SHA256').update(input).sign(key);
  } else if (header.alg === 'none') {
    signature = Buffer.alloc(0);
  } else {
    throw new Error(`signJwt: unsupported alg ${header.alg}`);
  }
  return `${input}.${signature.toString('base64url')}`;
}

/**
 * The claims of a normal user token. `role: null` / `email: null` leave the claim out;
 * `omit` removes claims by name (e.g. `['exp']`); `extra` adds or overrides claims.
 */
export function claims({
  userId,
  role = 'client',
  name,
  email,
  expSeconds = 3600,
  omit = [],
  extra = {},
} = {}) {
  assert.ok(userId, 'claims: userId is required (use user("label"))');
  const now = Math.floor(Date.now() / 1000);
  const c = { userId, iat: now, exp: now + expSeconds };
  if (role !== null) c.role = role;
  if (email !== null) c.email = email ?? `${userId}@example.test`;
  if (name !== undefined && name !== null) c.name = name;
  Object.assign(c, extra);
  for (const key of omit) delete c[key];
  return c;
}

/** A token the node accepts: HS256 with PARLOIR_JWT_SECRET unless `alg`/`secret` say otherwise. */
export function token({ alg = 'HS256', secret = config.secret, ...rest } = {}) {
  const key = alg === 'RS256' ? rsaPrivateKey() : secret;
  return signJwt({ alg, typ: 'JWT' }, claims(rest), key);
}

/** Right claims, signed with another secret. */
export const forgedToken = (opts) => token({ ...opts, secret: randomBytes(32).toString('hex') });
/** A valid token whose payload was swapped for another user's after signing. */
export function tamperedToken(opts, otherUserId) {
  const [header, , signature] = token(opts).split('.');
  return `${header}.${b64url(claims({ ...opts, userId: otherUserId }))}.${signature}`;
}
/** `alg: none`, empty signature. */
export const unsignedToken = (opts) => signJwt({ alg: 'none', typ: 'JWT' }, claims(opts));
/** Expired an hour ago (well past any clock-skew leeway). */
export const expiredToken = (opts) => token({ ...opts, expSeconds: -3600 });
/** RS256 with a freshly generated RSA key: an algorithm the node is not configured for. */
export const rs256Token = (opts) => token({ ...opts, alg: 'RS256' });
/** HS512 with the RIGHT secret: still the wrong algorithm. */
export const hs512Token = (opts) => token({ ...opts, alg: 'HS512' });
/** No `exp` claim at all. */
export const tokenWithoutExp = (opts) => token({ ...opts, omit: ['exp', ...(opts?.omit ?? [])] });

function userIdOf(tok) {
  try {
    const payload = JSON.parse(Buffer.from(String(tok).split('.')[1], 'base64url').toString());
    return payload.userId ?? payload.sub ?? 'anonymous';
  } catch {
    return 'anonymous';
  }
}

// ---------------------------------------------------------------------------------------------
// Sockets

const openSockets = new Set();

/** Closes every socket a test opened. Runs after each test and after each file. */
export function closeAll() {
  for (const socket of openSockets) socket.disconnect();
  openSockets.clear();
}
afterEach(closeAll);
after(closeAll);

function record(socket, event, args) {
  socket.received.push({ event, args, at: Date.now() });
  for (const check of [...socket.waiters]) check();
}

function tracked(socket, label) {
  socket.label = label;
  socket.received = [];
  socket.waiters = new Set();
  socket.onAny((event, ...args) => record(socket, event, args));
  // Reserved events never reach onAny: record the ones a test may want to see.
  socket.on('disconnect', (reason) => record(socket, 'disconnect', [reason]));
  openSockets.add(socket);
  return socket;
}

/** Creates a socket without waiting for the outcome of its handshake. */
export function openSocket(tok, { url = nextUrl(), transports, auth, extraHeaders, query, label } = {}) {
  const socket = io(`${url}${NAMESPACE}`, {
    auth: auth ?? (tok === undefined || tok === null ? {} : { token: tok }),
    transports: transports ?? ['polling', 'websocket'],
    extraHeaders,
    query,
    forceNew: true, // one Engine.IO connection per socket: each socket is a separate device
    reconnection: false, // a refused or dropped socket must stay visible to the test
    timeout: DEFAULT_TIMEOUT_MS,
  });
  return tracked(socket, label ?? userIdOf(tok));
}

/**
 * Connects to `/messaging` with `auth: {token}` (or `auth`/`extraHeaders` as given).
 * Resolves with the connected socket; rejects with the `connect_error` (its `message` is the
 * server's reason, e.g. `unauthorized`).
 */
export async function connect(tok, options = {}) {
  try {
    return await connectOnce(tok, options);
  } catch (err) {
    if (!err.transportFailure) throw err;
    // A transport-level failure (not a refusal: those are never retried). Real clients
    // reconnect by themselves after one; this client has reconnection off so that refused
    // sockets stay visible, so it retries once here, and says so. Seen about once in
    // ~1,000 long-polling handshakes under CI load (an Engine.IO 400 on a poll); see the
    // README's known issues.
    console.error(`# transport failure, retrying once: ${err.message}`);
    return connectOnce(tok, options);
  }
}

function connectOnce(tok, options) {
  const socket = openSocket(tok, options);
  return new Promise((resolve, reject) => {
    const onConnect = () => {
      socket.off('connect_error', onError);
      resolve(socket);
    };
    const onError = (err) => {
      socket.off('connect', onConnect);
      socket.disconnect();
      openSockets.delete(socket);
      if (err.type === 'TransportError') {
        // Not a refusal by the server's middleware: say which request failed and how.
        const status = err.context?.status ?? err.description?.message ?? err.description ?? '?';
        const transport = socket.io.engine?.transport?.name ?? 'none';
        err.message = `${err.message} (status ${status}, transport ${transport}) connecting ${socket.label}`;
        err.transportFailure = true;
      }
      reject(err);
    };
    socket.once('connect', onConnect);
    socket.once('connect_error', onError);
  });
}

/** Expects the handshake to be refused; resolves with the `connect_error` message. */
export async function connectError(tok, options = {}) {
  let socket;
  try {
    socket = await connect(tok, options);
  } catch (err) {
    return err.message;
  }
  socket.disconnect();
  assert.fail(`expected the handshake of ${socket.label} to be refused, but it connected`);
}

/** The position after everything recorded so far: pass it as `since` to only look later. */
export const mark = (socket) => socket.received.length;

const describeArgs = (args) => {
  const text = JSON.stringify(args.length === 1 ? args[0] : args) ?? 'undefined';
  return text.length > 300 ? `${text.slice(0, 300)}…` : text;
};

function describeReceived(socket, since) {
  const list = socket.received.slice(since);
  if (list.length === 0) return '  (nothing)';
  const shown = list.slice(-40).map((r) => `  ${r.event} ${describeArgs(r.args)}`);
  if (list.length > 40) shown.unshift(`  … ${list.length - 40} earlier events`);
  return shown.join('\n');
}

/** Recorded events named `event` since `since` whose payload matches `predicate`. */
export function received(socket, event, { since = 0, predicate = () => true } = {}) {
  return socket.received
    .slice(since)
    .filter((r) => r.event === event && predicate(r.args[0], r.args))
    .map((r) => r.args[0]);
}

/**
 * Resolves with the payload (first argument: parloir events carry exactly one) of the first
 * `event` recorded at or after `since` that matches `predicate`, including ones that arrived
 * before the call. Rejects after `timeoutMs` (or when the socket disconnects) with an error
 * listing everything the socket received since `since`.
 */
export function waitFor(socket, event, { predicate = () => true, timeoutMs = DEFAULT_TIMEOUT_MS, since = 0 } = {}) {
  return new Promise((resolve, reject) => {
    let timer;
    const finish = (fn, value) => {
      clearTimeout(timer);
      socket.waiters.delete(check);
      fn(value);
    };
    const fail = (why) =>
      finish(
        reject,
        new Error(
          `${why} waiting for "${event}"${predicate.length ? ` matching ${predicate}` : ''} on ` +
            `${socket.label}; it received since mark ${since}:\n${describeReceived(socket, since)}`,
        ),
      );
    let scanned = since;
    function check() {
      for (; scanned < socket.received.length; scanned++) {
        const r = socket.received[scanned];
        if (r.event === event && predicate(r.args[0], r.args)) return finish(resolve, r.args[0]);
        if (r.event === 'disconnect' && event !== 'disconnect') return fail(`socket disconnected (${r.args[0]})`);
      }
      return undefined;
    }
    socket.waiters.add(check);
    check();
    if (socket.waiters.has(check)) timer = setTimeout(() => fail(`timed out after ${timeoutMs} ms`), timeoutMs);
  });
}

/** `waitFor` on several sockets at once; resolves with their payloads in order. */
export const waitForEach = (sockets, event, options) =>
  Promise.all(sockets.map((socket) => waitFor(socket, event, options)));

/**
 * Proves that `event` (matching `predicate`) did NOT reach `sockets` since `since`: first awaits
 * `barrier` (a later action whose own event must arrive on those sockets after the unwanted one
 * would have), then asserts the unwanted event is not in the record. Never a time window.
 */
export async function expectNoEvent(sockets, event, barrier, { since = 0, predicate = () => true } = {}) {
  const list = Array.isArray(sockets) ? sockets : [sockets];
  const marks = list.map((s) => (Array.isArray(since) ? since[list.indexOf(s)] : since));
  await (typeof barrier === 'function' ? barrier() : barrier);
  list.forEach((socket, i) => {
    const hits = received(socket, event, { since: marks[i], predicate });
    assert.equal(
      hits.length,
      0,
      `expected no "${event}" on ${socket.label} before the barrier, but it received:\n` +
        describeReceived(socket, marks[i]),
    );
  });
}

// ---------------------------------------------------------------------------------------------
// Client events and acks (PROTOCOL.md §2)

/** Emits `event` with one payload and resolves with the ack's single argument. */
export async function ack(socket, event, payload, { timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
  try {
    return await socket.timeout(timeoutMs).emitWithAck(event, payload);
  } catch (err) {
    throw new Error(
      `no ack for "${event}" within ${timeoutMs} ms on ${socket.label} (${err.message}); it received:\n` +
        describeReceived(socket, 0),
    );
  }
}

/** Emits `event` with exactly the given arguments (none, or several) and an ack callback. */
export function ackRaw(socket, event, ...args) {
  return new Promise((resolve, reject) => {
    socket.timeout(DEFAULT_TIMEOUT_MS).emit(event, ...args, (err, ...ackArgs) => {
      if (err) reject(new Error(`no ack for "${event}" within ${DEFAULT_TIMEOUT_MS} ms on ${socket.label}`));
      else resolve(ackArgs);
    });
  });
}

/** Asserts `{ok: true, data}` and returns `data`. */
export function okData(res, what = 'ack') {
  assert.equal(res?.ok, true, `expected ${what} {ok:true,…}, got ${JSON.stringify(res)}`);
  assert.ok(res.data !== undefined, `${what} has no data: ${JSON.stringify(res)}`);
  return res.data;
}

/** Asserts `{ok: false, error: {code, message}}` with that code and returns the error. */
export function ackError(res, code, what = 'ack') {
  assert.equal(res?.ok, false, `expected ${what} {ok:false,…} with ${code}, got ${JSON.stringify(res)}`);
  assert.equal(res.error?.code, code, `expected ${what} error ${code}, got ${JSON.stringify(res)}`);
  assert.equal(typeof res.error.message, 'string', `error without a message: ${JSON.stringify(res)}`);
  return res.error;
}

/**
 * Emits a client event that must fail with `code`: asserts the error ack AND the `error`
 * event `{code, message, event}` on that same socket. Returns the ack's error.
 */
export async function expectFailure(socket, event, payload, code) {
  const since = mark(socket);
  const error = ackError(await ack(socket, event, payload), code, `${event} ack`);
  const pushed = await waitFor(socket, 'error', { since, predicate: (e) => e?.code === code && e?.event === event });
  assert.equal(typeof pushed.message, 'string');
  assert.ok(socket.connected, `${socket.label} was disconnected by a failed ${event}`);
  return error;
}

/** Joins; asserts the ack and returns the `conversation-history` this socket got. */
export async function join(socket, conversationId, paging = {}) {
  const since = mark(socket);
  const data = okData(await ack(socket, 'join-conversation', { conversationId, ...paging }), 'join ack');
  assert.equal(data.conversationId, conversationId);
  return waitFor(socket, 'conversation-history', { since, predicate: (h) => h?.conversationId === conversationId });
}

/** Sends over the socket; asserts the ack and returns the stored Message. */
export async function send(socket, conversationId, content, extra = {}) {
  return okData(await ack(socket, 'send-message', { conversationId, content, ...extra }), 'send ack');
}

/** Sends `n` messages one after the other ("m1" … "mn" unless `prefix`); returns them in order. */
export async function sendMany(socket, conversationId, n, prefix = 'm') {
  const messages = [];
  for (let i = 1; i <= n; i++) messages.push(await send(socket, conversationId, `${prefix}${i}`));
  return messages;
}

// ---------------------------------------------------------------------------------------------
// HTTP (PROTOCOL.md §5)

/**
 * Calls the HTTP API. `body` is JSON-encoded (any JSON value); `rawBody` is sent as is.
 * Resolves with `{status, body, headers}`, `body` parsed as JSON when it is JSON.
 */
export async function api(tok, method, path, body, { url = nextUrl(), headers = {}, rawBody } = {}) {
  const h = { ...headers };
  if (tok) h.authorization = `Bearer ${tok}`;
  let payload;
  if (rawBody !== undefined) {
    payload = rawBody;
    h['content-type'] ??= 'application/json';
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    h['content-type'] = 'application/json';
  }
  let res;
  let text;
  try {
    res = await fetch(url + path, { method, headers: h, body: payload, signal: AbortSignal.timeout(DEFAULT_TIMEOUT_MS) });
    text = await res.text();
  } catch (err) {
    throw new Error(`${method} ${path} failed: ${err.name}: ${err.message}${err.cause ? ` (${err.cause.message})` : ''}`);
  }
  let parsed = text;
  try {
    parsed = text === '' ? null : JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: res.status, body: parsed, headers: res.headers };
}

/** Asserts an HTTP error: `status` and `{error: {code, message}}`. Returns the error object. */
export function httpError(res, status, code) {
  const shown = JSON.stringify(res.body);
  assert.equal(res.status, status, `expected HTTP ${status} ${code}, got ${res.status} ${shown}`);
  assert.equal(res.body?.error?.code, code, `expected error code ${code}, got ${res.status} ${shown}`);
  assert.equal(typeof res.body.error.message, 'string', `error without a message: ${shown}`);
  return res.body.error;
}

/** Asserts an HTTP success (any of `statuses`) and returns the body. */
export function httpOk(res, statuses = [200, 201]) {
  assert.ok(statuses.includes(res.status), `expected HTTP ${statuses.join('/')}, got ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

/** POST /api/v1/conversations as the token's user; asserts 200/201 and returns the Conversation. */
export async function createConversation(tok, participantIds, title) {
  const body = { participantIds };
  if (title !== undefined) body.title = title;
  return httpOk(await api(tok, 'POST', '/api/v1/conversations', body));
}

// ---------------------------------------------------------------------------------------------
// Actors: a user with a token and any number of connected devices

/**
 * A unique user with a token and `devices` connected sockets (each a separate device).
 * `a.socket` is the first device; `a.connect(opts)` adds one.
 */
export async function actor(label, { name, role, devices = 1, transports, url } = {}) {
  const id = user(label);
  const tok = token({ userId: id, name, role });
  const sockets = [];
  const a = {
    id,
    name: name ?? null,
    token: tok,
    sockets,
    get socket() {
      return sockets[0];
    },
    async connect(options = {}) {
      const socket = await connect(tok, { transports, url, label: `${id}#${sockets.length + 1}`, ...options });
      sockets.push(socket);
      return socket;
    },
  };
  for (let i = 0; i < devices; i++) await a.connect();
  return a;
}

/** A conversation created over HTTP by `creator` with `others`; returns the Conversation. */
export const conversationOf = (creator, others, title) =>
  createConversation(
    creator.token,
    others.map((o) => o.id),
    title,
  );

/** Asserts the shape of a Message (PROTOCOL.md §4) and the fields given in `expected`. */
export function assertMessage(message, expected = {}) {
  assert.equal(typeof message, 'object', `not a Message: ${JSON.stringify(message)}`);
  assert.match(message.id, UUID_V7, `message id is not a UUIDv7: ${message.id}`);
  assert.match(message.conversationId, UUID);
  assert.equal(typeof message.senderId, 'string');
  assert.equal(typeof message.content, 'string');
  assert.ok(Array.isArray(message.attachments), `attachments is not an array: ${JSON.stringify(message)}`);
  assert.match(message.createdAt, TIME_MS, `createdAt is not RFC 3339 UTC with ms: ${message.createdAt}`);
  assert.ok(Number.isInteger(message.seq) && message.seq > 1, `seq is not a log number: ${message.seq}`);
  for (const [key, value] of Object.entries(expected)) {
    assert.deepEqual(message[key], value, `message.${key}`);
  }
  return message;
}
