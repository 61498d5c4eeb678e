// A web app on another origin calls the API from a real browser (headless
// Chromium): every method the API has must pass the CORS preflight.
// Serves an empty page on a port of its own (the app's origin), opens it,
// and fetches each route with the bearer token, which makes every request
// "non-simple", so the browser asks the node first (OPTIONS).
//   PARLOIR_API=http://127.0.0.1:PORT PARLOIR_TOKEN=... node browser/cors.mjs
// Prints one JSON line: {origin, results: {"PUT /api/v1/me/notifications": 200, ...}};
// a request the browser refuses is reported as "blocked: <message>".
import { createServer } from 'node:http';
import { chromium } from 'playwright-core';

const API = process.env.PARLOIR_API;
const TOKEN = process.env.PARLOIR_TOKEN;
const OTHER = process.env.PARLOIR_OTHER_USER;
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const watchdog = setTimeout(() => { console.error('cors run timed out'); process.exit(1); }, 60_000);

const server = createServer((_, res) => { res.writeHead(200, { 'content-type': 'text/html' }); res.end('<!doctype html><title>app</title>'); });
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const origin = `http://127.0.0.1:${server.address().port}`;
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage();
  await page.goto(origin);
  const calls = [
    ['GET', '/api/v1/unread', null],
    ['POST', `/api/v1/conversations`, { participantIds: [OTHER] }],
    ['PUT', '/api/v1/me/notifications', { email: false }],
    ['POST', `/api/v1/me/blocks/${OTHER}`, null],
    ['DELETE', `/api/v1/me/blocks/${OTHER}`, null],
  ];
  const results = await page.evaluate(async ({ api, token, calls }) => {
    const out = {};
    for (const [method, route, body] of calls) {
      try {
        const res = await fetch(api + route, {
          method,
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: body == null ? undefined : JSON.stringify(body),
        });
        out[`${method} ${route}`] = res.status;
      } catch (e) {
        out[`${method} ${route}`] = `blocked: ${e.message}`;
      }
    }
    return out;
  }, { api: API, token: TOKEN, calls });
  console.log(JSON.stringify({ origin, results }));
} finally {
  await browser.close();
  server.close();
  clearTimeout(watchdog);
}
