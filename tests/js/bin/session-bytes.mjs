// Bytes on the wire for one realistic user session, over each transport (docs/compression.md).
//
// usage: PARLOIR_URL=http://127.0.0.1:PORT PARLOIR_JWT_SECRET=... node tests/js/bin/session-bytes.mjs
// (run from tests/js: the `ws` package comes with socket.io-client; the node's send budget must
// allow 50 messages in a few seconds, as scripts/bench sets it)
//
// The session: alice joins a conversation with 50 messages of history, then 100 messages are
// exchanged with bob (50 each, alternating). Alice says she is typing before each of hers and
// marks bob's as read. Bob uses the HTTP API. Only alice's connection is counted: Engine.IO
// packets as Socket.IO clients send them, over long-polling (with and without
// `Accept-Encoding: gzip, br`) and over websocket. For websocket, the script also computes what
// permessage-deflate (RFC 7692, context takeover, as browsers negotiate it) would send: tungstenite
// 0.30 cannot offer it.
import { createRequire } from 'node:module';
import http from 'node:http';
import zlib from 'node:zlib';
import { createHmac, randomUUID } from 'node:crypto';

const require = createRequire(process.cwd() + '/');
const WebSocket = require('ws');
const NS = '/messaging';
const base = process.env.PARLOIR_URL.replace(/\/$/, '');
const secret = process.env.PARLOIR_JWT_SECRET;

const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
function token(sub, role) {
  const now = Math.floor(Date.now() / 1000);
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ userId: sub, role, iat: now, exp: now + 3600 })}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}

function request(url, { method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const raw = Buffer.concat(chunks);
        const enc = res.headers['content-encoding'];
        const text = (enc === 'gzip' ? zlib.gunzipSync(raw) : enc === 'br' ? zlib.brotliDecompressSync(raw) : raw).toString();
        // Status line and headers as sent, roughly: what the wire carried besides the body.
        const head = 17 + Object.entries(res.headers).reduce((n, [k, v]) => n + k.length + String(v).length + 4, 0);
        resolve({ status: res.statusCode, text, wire: raw.length + head, encoding: enc });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

const api = (tok, method, path, body) =>
  request(base + path, {
    method,
    headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json' },
    body: body && JSON.stringify(body),
  }).then((r) => JSON.parse(r.text));

/** One Engine.IO connection, counted: `sent` and `received` bytes, packets in `inbox`. */
class Conn {
  constructor() {
    this.sent = 0;
    this.received = 0;
    this.inbox = [];
    this.waiters = [];
    this.frames = { up: [], down: [] };
  }
  deliver(packet) {
    if (packet === '2') return this.send('3');
    this.inbox.push(packet);
    for (const w of [...this.waiters]) w();
  }
  next(match, ms = 5000) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timeout waiting; inbox ${this.inbox.slice(-3)}`)), ms);
      const check = () => {
        const i = this.inbox.findIndex(match);
        if (i < 0) return;
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== check);
        resolve(this.inbox.splice(i, 1)[0]);
      };
      this.waiters.push(check);
      check();
    });
  }
}

class Polling extends Conn {
  constructor(headers) {
    super();
    this.headers = headers;
  }
  async open() {
    const r = await request(`${base}/socket.io/?EIO=4&transport=polling`, { headers: this.headers });
    this.received += r.wire;
    this.sid = JSON.parse(r.text.slice(1)).sid;
    this.at = `${base}/socket.io/?EIO=4&transport=polling&sid=${this.sid}`;
    this.polling = this.loop();
  }
  async loop() {
    while (!this.closed) {
      const r = await request(this.at, { headers: this.headers });
      this.received += r.wire;
      if (r.status !== 200) return;
      for (const p of r.text.split('\x1e')) if (p) this.deliver(p);
    }
  }
  async send(packet) {
    // Browsers send the request line, host, cookies... counted as ~200 bytes of head.
    this.sent += Buffer.byteLength(packet) + 200;
    const r = await request(this.at, { method: 'POST', headers: { 'content-type': 'text/plain;charset=UTF-8' }, body: packet });
    this.received += r.wire;
  }
  close() {
    this.closed = true;
    return this.send('1').catch(() => {});
  }
}

class Websocket extends Conn {
  async open() {
    this.ws = new WebSocket(`${base.replace('http', 'ws')}/socket.io/?EIO=4&transport=websocket`);
    this.ws.on('message', (data) => {
      const text = data.toString();
      this.received += frameSize(text);
      this.frames.down.push(text);
      this.deliver(text);
    });
    await new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('error', reject);
    });
    await this.next((p) => p.startsWith('0'));
  }
  send(packet) {
    this.sent += frameSize(packet) + 4; // client frames carry a 4-byte mask
    this.frames.up.push(packet);
    this.ws.send(packet);
  }
  close() {
    this.ws.close();
  }
}

/** A websocket frame's bytes: payload and header. */
const frameSize = (text) => {
  const n = Buffer.byteLength(text);
  return n + (n < 126 ? 2 : n < 65536 ? 4 : 10);
};

/**
 * What permessage-deflate would put on the wire for these messages: each message deflated with
 * the previous 32 KB as its dictionary (context takeover, as browsers negotiate it by default),
 * or alone (`no_context_takeover`), minus the 4 trailing bytes RFC 7692 drops, plus frame headers.
 */
function deflated(messages, { takeover = true } = {}) {
  let window = Buffer.alloc(0);
  let total = 0;
  for (const m of messages) {
    const data = Buffer.from(m);
    const options = { finishFlush: zlib.constants.Z_SYNC_FLUSH };
    if (takeover && window.length > 0) options.dictionary = window;
    const payload = zlib.deflateRawSync(data, options).length - 4;
    total += payload + (payload < 126 ? 2 : payload < 65536 ? 4 : 10);
    if (takeover) window = Buffer.concat([window, data]).subarray(-32768);
  }
  return total;
}

async function session(conn, { alice, bob, conversationId }) {
  const aliceTok = token(alice, 'client');
  const bobTok = token(bob, 'salon');
  await conn.open();
  conn.send(`40${NS},${JSON.stringify({ token: aliceTok })}`);
  await conn.next((p) => p.startsWith(`40${NS},`));
  let ack = 0;
  const emit = async (event, payload) => {
    const id = ++ack;
    await conn.send(`42${NS},${id}${JSON.stringify([event, payload])}`);
    return conn.next((p) => p.startsWith(`43${NS},${id}[`));
  };
  await emit('join-conversation', { conversationId, limit: 50 });
  await conn.next((p) => p.includes('"conversation-history"'));
  for (let i = 0; i < 50; i++) {
    await emit('user-typing', { conversationId });
    await emit('send-message', { conversationId, content: `Alice ${i}: would Thursday at ten work for a cut and colour?`, clientMessageId: randomUUID() });
    const sent = await api(bobTok, 'POST', `/api/v1/conversations/${conversationId}/messages`, { content: `Bob ${i}: Thursday at ten is free, see you then. Anything else?` });
    await conn.next((p) => p.includes('"new-message"') && p.includes(sent.id));
    await emit('mark-as-read', { conversationId, messageId: sent.id });
  }
  await conn.close();
  return { sent: conn.sent, received: conn.received, frames: conn.frames };
}

async function setup() {
  const alice = `user-alice-${randomUUID().slice(0, 8)}`;
  const bob = `user-bob-${randomUUID().slice(0, 8)}`;
  const bobTok = token(bob, 'salon');
  const conversation = await api(bobTok, 'POST', '/api/v1/conversations', { participantIds: [alice] });
  for (let i = 0; i < 50; i++) {
    await api(bobTok, 'POST', `/api/v1/conversations/${conversation.id}/messages`, { content: `History ${i}: thank you for your booking, here are the details you asked for.` });
  }
  return { alice, bob, conversationId: conversation.id };
}

// SESSION_ONLY=polling|polling-compressed|websocket SESSION_REPEAT=N: run one kind N times and
// print nothing but its totals (to read the node's CPU around it).
const kinds = {
  polling: () => new Polling({}),
  'polling-compressed': () => new Polling({ 'accept-encoding': 'gzip, deflate, br' }),
  websocket: () => new Websocket(),
};
if (process.env.SESSION_ONLY) {
  const make = kinds[process.env.SESSION_ONLY];
  const repeat = Number(process.env.SESSION_REPEAT ?? 1);
  let up = 0;
  let down = 0;
  for (let i = 0; i < repeat; i++) {
    const r = await session(make(), await setup());
    up += r.sent;
    down += r.received;
  }
  console.log(JSON.stringify({ kind: process.env.SESSION_ONLY, repeat, up, down }));
  process.exit(0);
}

const rows = [];
const plainPolling = await session(new Polling({}), await setup());
rows.push(['long-polling, no Accept-Encoding', plainPolling.sent, plainPolling.received]);
const zipped = await session(new Polling({ 'accept-encoding': 'gzip, deflate, br' }), await setup());
rows.push(['long-polling, Accept-Encoding: gzip, deflate, br', zipped.sent, zipped.received]);
const ws = await session(new Websocket(), await setup());
rows.push(['websocket', ws.sent, ws.received]);
rows.push(['websocket with permessage-deflate, context takeover (computed)', deflated(ws.frames.up) + 4 * ws.frames.up.length, deflated(ws.frames.down)]);
rows.push(['websocket with permessage-deflate, no context takeover (computed)',
  deflated(ws.frames.up, { takeover: false }) + 4 * ws.frames.up.length, deflated(ws.frames.down, { takeover: false })]);
console.log('| transport | client → node bytes | node → client bytes |');
console.log('|---|---:|---:|');
for (const [name, up, down] of rows) console.log(`| ${name} | ${up.toLocaleString('en')} | ${down.toLocaleString('en')} |`);
process.exit(0);
