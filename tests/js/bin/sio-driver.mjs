// A Socket.IO client driver for Rust tests: the official socket.io-client v4,
// commanded one JSON line at a time on stdin, answering one JSON line per
// command on stdout (same `id`). Every event a socket receives is recorded;
// `wait` consumes the first unconsumed matching one, or fails after its
// deadline listing what did arrive.
//
// commands:
//   {id, op:"connect", name, url, token, transports?, headers?}
//                                                        -> {id, ok:true, sid} | {id, error}
//   {id, op:"emit", name, event, payload, timeoutMs?}   -> {id, ack}            | {id, error}
//        (or `payloadJson`: the payload as JSON text, for shapes the Rust side would
//        rather not build, such as thousands of nesting levels)
//   {id, op:"connect-many", url, alsoUrl?, token, count, prefix}
//        opens `count` connections at once (every other one to `alsoUrl` when given), named
//        `${prefix}${i}` -> {id, connected: n, refused: {message: n}}
//   {id, op:"connect-reset", url, token, count}
//        `count` times, at once: a raw Engine.IO websocket sends the namespace CONNECT packet and
//        resets its TCP connection right after (no close frame), as a phone losing its network does
//        -> {id, ok:true}
//   {id, op:"burst", name, event, payload, count, timeoutMs?}
//        emits `count` events at once, without waiting between them, then waits for
//        every ack -> {id, outcomes: {ok: n, RATE_LIMITED: m, ..., noAck: k}}
//   {id, op:"wait", name, event, match?, timeoutMs?}     -> {id, args}           | {id, error, seen}
//   {id, op:"drain", name}                               -> {id, events}  (all unconsumed, consumed now)
//   {id, op:"close", name}                               -> {id, ok:true}
//   {id, op:"drop", name}   resets the socket's TCP connection (no close frame), as a phone
//                           losing its network does                -> {id, ok:true}
//   {id, op:"http", method, url, token?, body?}          -> {id, status, body}
//   {id, op:"stream", name, conversationId, count, intervalMs, prefix}
//        starts sending `count` messages, one every `intervalMs`, with clientMessageIds
//        `${prefix}${i}`; a send that fails or times out is retried with the same id once
//        the socket is (re)connected, so every message ends acked exactly once -> {id, ok}
//   {id, op:"stream-result", name}                        -> {id, acked: [{clientMessageId, id}], retries, reconnects}
// `match` is a partial object compared with the event's first argument.
import { createRequire } from 'node:module';
import readline from 'node:readline';
import { setTimeout as pause } from 'node:timers/promises';
const require = createRequire(process.cwd() + '/');
const { io } = require('socket.io-client');
const WebSocket = require('ws');

const sockets = new Map(); // name -> { socket, events: [{event, args, used}], waiters: [] }
const reply = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

const matches = (arg, want) =>
  want == null || (arg != null && typeof arg === 'object' &&
    Object.entries(want).every(([k, v]) => JSON.stringify(arg[k]) === JSON.stringify(v)));

function tryWaiters(entry) {
  entry.waiters = entry.waiters.filter((w) => {
    const hit = entry.events.find((e) => !e.used && e.event === w.event && matches(e.args[0], w.match));
    if (!hit) return true;
    hit.used = true;
    clearTimeout(w.timer);
    reply({ id: w.id, args: hit.args });
    return false;
  });
}

async function handle(cmd) {
  const { id, op, name } = cmd;
  try {
    if (op === 'connect') {
      const socket = io(cmd.url.replace(/\/$/, '') + '/messaging', {
        auth: { token: cmd.token }, reconnection: cmd.reconnection ?? false, timeout: 5000,
        transports: cmd.transports ?? ['websocket'],
        withCredentials: true, // keep the load balancer's affinity cookie (Node's client has a jar)
        forceNew: true,
        extraHeaders: cmd.headers ?? {},
      });
      const entry = { socket, events: [], waiters: [] };
      sockets.set(name, entry);
      socket.onAny((event, ...args) => { entry.events.push({ event, args, used: false }); tryWaiters(entry); });
      socket.on('disconnect', (reason) => { entry.events.push({ event: 'disconnect', args: [{ reason }], used: false }); tryWaiters(entry); });
      await new Promise((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('connect_error', (e) => reject(new Error(`connect_error: ${e.message}`)));
      });
      return reply({ id, ok: true, sid: socket.id });
    }
    if (op === 'connect-reset') {
      const wsUrl = cmd.url.replace(/^http/, 'ws').replace(/\/$/, '') + '/socket.io/?EIO=4&transport=websocket';
      await Promise.all(Array.from({ length: cmd.count }, () => new Promise((resolve, reject) => {
        const ws = new WebSocket(wsUrl);
        ws.on('error', reject);
        ws.on('message', (data) => {
          if (!String(data).startsWith('0')) return; // the Engine.IO open packet comes first
          ws.send('40/messaging,' + JSON.stringify({ token: cmd.token }), () => {
            ws._socket.resetAndDestroy();
            resolve();
          });
        });
      })));
      return reply({ id, ok: true });
    }
    if (op === 'connect-many') {
      const attempts = Array.from({ length: cmd.count }, (_, i) => new Promise((resolve) => {
        const url = (i % 2 === 1 && cmd.alsoUrl ? cmd.alsoUrl : cmd.url).replace(/\/$/, '') + '/messaging';
        const socket = io(url, { auth: { token: cmd.token }, reconnection: false, timeout: 10000,
          transports: ['websocket'], forceNew: true });
        const entry = { socket, events: [], waiters: [] };
        socket.onAny((event, ...args) => { entry.events.push({ event, args, used: false }); tryWaiters(entry); });
        socket.once('connect', () => { sockets.set(`${cmd.prefix}${i}`, entry); resolve('connected'); });
        socket.once('connect_error', (e) => { socket.close(); resolve(e.message); });
      }));
      const refused = {};
      let connected = 0;
      for (const outcome of await Promise.all(attempts)) {
        if (outcome === 'connected') connected += 1;
        else refused[outcome] = (refused[outcome] ?? 0) + 1;
      }
      return reply({ id, connected, refused });
    }
    if (op === 'stream') {
      const entry = sockets.get(name);
      if (!entry) return reply({ id, error: `no socket named ${name}` });
      entry.reconnects = 0;
      entry.socket.io.on('reconnect', () => { entry.reconnects += 1; });
      entry.stream = runStream(entry, cmd);
      return reply({ id, ok: true });
    }
    if (op === 'stream-result') {
      const entry = sockets.get(name);
      if (!entry?.stream) return reply({ id, error: `no stream on ${name}` });
      const result = await entry.stream;
      return reply({ id, ...result, reconnects: entry.reconnects });
    }
    if (op === 'http') {
      const headers = { 'content-type': 'application/json' };
      if (cmd.token) headers.authorization = `Bearer ${cmd.token}`;
      const res = await fetch(cmd.url, { method: cmd.method, headers, body: cmd.body == null ? undefined : JSON.stringify(cmd.body) });
      const text = await res.text();
      let body = text;
      try { body = JSON.parse(text); } catch { /* not JSON: keep the text */ }
      return reply({ id, status: res.status, body });
    }
    const entry = sockets.get(name);
    if (!entry) return reply({ id, error: `no socket named ${name}` });
    if (op === 'emit') {
      const payload = cmd.payloadJson === undefined ? cmd.payload : JSON.parse(cmd.payloadJson);
      const ack = await entry.socket.timeout(cmd.timeoutMs ?? 5000).emitWithAck(cmd.event, payload);
      return reply({ id, ack });
    }
    if (op === 'burst') {
      const emits = Array.from({ length: cmd.count }, () =>
        entry.socket.timeout(cmd.timeoutMs ?? 3000).emitWithAck(cmd.event, cmd.payload)
          .then((ack) => (ack?.ok ? 'ok' : ack?.error?.code ?? 'malformed'), () => 'noAck'));
      const outcomes = {};
      for (const outcome of await Promise.all(emits)) outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
      return reply({ id, outcomes });
    }
    if (op === 'wait') {
      const w = { id, event: cmd.event, match: cmd.match };
      w.timer = setTimeout(() => {
        entry.waiters = entry.waiters.filter((x) => x !== w);
        reply({ id, error: 'timeout', seen: entry.events.map((e) => ({ event: e.event, arg: e.args[0], used: e.used })) });
      }, cmd.timeoutMs ?? 5000);
      entry.waiters.push(w);
      return tryWaiters(entry);
    }
    if (op === 'drain') {
      const events = entry.events.filter((e) => !e.used).map((e) => { e.used = true; return { event: e.event, args: e.args }; });
      return reply({ id, events });
    }
    if (op === 'drop') {
      const ws = entry.socket.io.engine?.transport?.ws;
      if (ws?._socket) ws._socket.resetAndDestroy();
      else entry.socket.io.engine?.close();
      sockets.delete(name);
      return reply({ id, ok: true });
    }
    if (op === 'close') {
      entry.socket.close();
      sockets.delete(name);
      return reply({ id, ok: true });
    }
    reply({ id, error: `unknown op ${op}` });
  } catch (e) {
    reply({ id, error: String(e?.message ?? e) });
  }
}

const connected = (socket) =>
  socket.connected ? Promise.resolve() : new Promise((resolve) => socket.once('connect', resolve));

async function runStream(entry, { conversationId, count, intervalMs, prefix }) {
  const acked = [];
  let retries = 0;
  const started = Date.now();
  for (let i = 0; i < count; i++) {
    // Pace the stream on a timetable (this is load generation, not a wait for an event).
    const due = started + i * intervalMs;
    if (Date.now() < due) await pause(due - Date.now());
    const clientMessageId = `${prefix}${i}`;
    for (;;) {
      await connected(entry.socket);
      try {
        const ack = await entry.socket.timeout(3000).emitWithAck('send-message', { conversationId, content: clientMessageId, clientMessageId });
        if (ack?.ok) { acked.push({ clientMessageId, id: ack.data.id }); break; }
        retries += 1; // e.g. UNAVAILABLE: try again
      } catch {
        retries += 1; // no ack (the node went away mid-send): resend the same id after reconnecting
      }
    }
  }
  return { acked, retries };
}

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim()) handle(JSON.parse(line));
}).on('close', () => {
  for (const { socket } of sockets.values()) socket.close();
  process.exit(0);
});
