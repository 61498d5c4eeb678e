// Compression of HTTP bodies (README "Configuration": PARLOIR_COMPRESSION): the API's and
// Socket.IO long-polling's responses over 1 KB, by the client's Accept-Encoding; small bodies
// and clients that do not ask get them as they are.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import zlib from 'node:zlib';
import { NAMESPACE, api, httpOk, nextUrl, token, user } from '../lib/harness.mjs';

/** A GET or POST with node's http (which, unlike fetch, leaves the body as sent). */
function raw(url, { method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.setTimeout(5000, () => req.destroy(new Error(`${method} ${url}: no answer in 5 s`)));
    req.on('error', reject);
    req.end(body);
  });
}

const decoders = {
  gzip: zlib.gunzipSync,
  br: zlib.brotliDecompressSync,
  // zlib has zstd from Node 22.15 / 23.8; older Nodes check the header only.
  zstd: zlib.zstdDecompressSync,
};

/** A conversation whose first history page is well over 1 KB; returns [token, history path]. */
async function longHistory() {
  const alice = user('zip-a');
  const bob = user('zip-b');
  const tok = token({ userId: alice });
  const url = nextUrl();
  const conversation = httpOk(await api(tok, 'POST', '/api/v1/conversations', { participantIds: [bob] }, { url }));
  // Within the send budget of one user (a burst of 20).
  for (let i = 0; i < 12; i++) {
    httpOk(await api(tok, 'POST', `/api/v1/conversations/${conversation.id}/messages`,
      { content: `message ${i}: a few sentences of ordinary chat. Is Thursday at ten still free? We would like a cut and a colour, and the usual.` }, { url }));
  }
  return { tok, url, path: `/api/v1/conversations/${conversation.id}/messages?limit=50` };
}

describe('HTTP compression', () => {
  test('a large API response comes compressed in the encoding the client accepts, and decodes to the same JSON', async () => {
    const { tok, url, path } = await longHistory();
    const auth = { authorization: `Bearer ${tok}` };
    const plain = await raw(url + path, { headers: { ...auth, 'accept-encoding': 'identity' } });
    assert.equal(plain.status, 200, plain.body.toString());
    assert.equal(plain.headers['content-encoding'], undefined, 'identity was asked for');
    assert.ok(plain.body.length > 1024, `the page is ${plain.body.length} bytes: too small to test`);
    const expected = JSON.parse(plain.body.toString());
    for (const [encoding, decode] of Object.entries(decoders)) {
      const res = await raw(url + path, { headers: { ...auth, 'accept-encoding': encoding } });
      assert.equal(res.status, 200);
      assert.equal(res.headers['content-encoding'], encoding, `asked for ${encoding}`);
      assert.ok(res.body.length < plain.body.length / 2,
        `${encoding}: ${res.body.length} bytes against ${plain.body.length} as they are`);
      if (decode) assert.deepEqual(JSON.parse(decode(res.body).toString()), expected, encoding);
    }
  });

  test('a small response and a client that accepts no encoding get the body as it is', async () => {
    const { tok, url, path } = await longHistory();
    const small = await raw(`${url}/api/v1/unread`, {
      headers: { authorization: `Bearer ${tok}`, 'accept-encoding': 'gzip, br, zstd' },
    });
    assert.equal(small.status, 200, small.body.toString());
    assert.ok(small.body.length <= 1024);
    assert.equal(small.headers['content-encoding'], undefined, 'a body under 1 KB is sent as it is');
    const none = await raw(url + path, { headers: { authorization: `Bearer ${tok}` } });
    assert.equal(none.status, 200);
    assert.equal(none.headers['content-encoding'], undefined, 'no Accept-Encoding, no encoding');
    JSON.parse(none.body.toString());
  });

  test('a long-polling payload over 1 KB comes compressed', async () => {
    const { tok, url, path } = await longHistory();
    const id = path.split('/')[4];
    // Engine.IO over long-polling, as a browser without websockets speaks it, on one node.
    const base = `${url}/socket.io/?EIO=4&transport=polling`;
    const headers = { 'accept-encoding': 'gzip' };
    const open = await raw(base, { headers });
    assert.equal(open.status, 200, open.body.toString());
    const sid = JSON.parse(open.body.toString().slice(1)).sid;
    const at = `${base}&sid=${sid}`;
    const post = (packet) => raw(at, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: packet });
    // Polls until a packet matches, answering the server's pings on the way; returns that
    // poll's encoding and its packets.
    const pollFor = async (wanted) => {
      for (let i = 0; i < 20; i++) {
        const res = await raw(at, { headers });
        assert.equal(res.status, 200, res.body.toString());
        const encoding = res.headers['content-encoding'];
        const text = encoding === 'gzip' ? zlib.gunzipSync(res.body).toString() : res.body.toString();
        const packets = text.split('\x1e');
        for (const p of packets) if (p === '2') await post('3');
        if (packets.some(wanted)) return { encoding, text };
      }
      assert.fail('the packet did not come within 20 polls');
    };
    assert.equal((await post(`40${NAMESPACE},${JSON.stringify({ token: tok })}`)).status, 200);
    const connected = await pollFor((p) => p.startsWith(`40${NAMESPACE},`));
    assert.ok(connected.text.length < 1024, connected.text);
    assert.equal(connected.encoding, undefined, 'the CONNECT answer is under 1 KB');
    const join = ['join-conversation', { conversationId: id, limit: 50 }];
    assert.equal((await post(`42${NAMESPACE},1${JSON.stringify(join)}`)).status, 200);
    const history = await pollFor((p) => p.includes('"conversation-history"'));
    assert.ok(history.text.length > 1024, `${history.text.length} bytes`);
    assert.equal(history.encoding, 'gzip', 'the history payload is over 1 KB');
  });
});
