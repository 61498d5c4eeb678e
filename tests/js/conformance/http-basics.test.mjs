// PROTOCOL.md §5: health and readiness, the OpenAPI document, HTTP authentication errors.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  api,
  config,
  expiredToken,
  forgedToken,
  httpError,
  rs256Token,
  token,
  tokenWithoutExp,
  unsignedToken,
  user,
} from '../lib/harness.mjs';

describe('operations endpoints', () => {
  test('GET /healthz is 200', async () => {
    const res = await api(null, 'GET', '/healthz');
    assert.equal(res.status, 200, JSON.stringify(res.body));
  });

  test('GET /readyz is 200 with status ready and the store\'s state', async () => {
    const res = await api(null, 'GET', '/readyz');
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body?.status, 'ready', JSON.stringify(res.body));
    assert.ok('store' in res.body, `no store field: ${JSON.stringify(res.body)}`);
  });

  test('GET /api/v1/openapi.json is an OpenAPI 3 document describing the API', async () => {
    const res = await api(null, 'GET', '/api/v1/openapi.json');
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /application\/json/);
    assert.equal(typeof res.body, 'object', 'the document is not JSON');
    assert.match(String(res.body.openapi), /^3\./);
    const paths = Object.keys(res.body.paths ?? {});
    for (const path of [
      '/api/v1/conversations',
      '/api/v1/conversations/{id}/messages',
      '/api/v1/messages/{id}',
      '/api/v1/me/notifications',
    ]) {
      assert.ok(paths.includes(path), `${path} is not documented; paths: ${paths.join(', ')}`);
    }
    // The notification webhook (PROTOCOL.md §7) in OpenAPI 3.1's webhooks section.
    const hook = res.body.webhooks?.['message.unread']?.post;
    assert.ok(hook, `no message.unread webhook: ${JSON.stringify(res.body.webhooks)}`);
    const headers = (hook.parameters ?? []).map((p) => p.name);
    assert.deepEqual(headers, ['webhook-id', 'webhook-timestamp', 'webhook-signature']);
    const schema = hook.requestBody?.content?.['application/json']?.schema?.$ref ?? '';
    const name = schema.split('/').pop();
    const fields = Object.keys(res.body.components?.schemas?.[name]?.properties ?? {});
    for (const field of ['id', 'type', 'recipientId', 'conversationId', 'unreadCount', 'latestMessage']) {
      assert.ok(fields.includes(field), `${field} missing from ${name}: ${fields.join(', ')}`);
    }
  });
});

describe('HTTP authentication', () => {
  const call = (tok, options) => api(tok, 'GET', '/api/v1/conversations', undefined, options);

  const unauthorized = [
    ['no Authorization header', () => call(null)],
    ['a token that is not a JWT', () => call('not-a-jwt')],
    ['a token signed with another secret', () => call(forgedToken({ userId: user('eve') }))],
    ['an unsigned alg none token', () => call(unsignedToken({ userId: user('eve') }))],
    ['an RS256 token when HS256 is configured', () => call(rs256Token({ userId: user('eve') }))],
    ['a token without exp', () => call(tokenWithoutExp({ userId: user('eve') }))],
    ['Basic authentication', () => call(null, { headers: { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` } })],
    [
      'a valid token in the query string only',
      () => api(null, 'GET', `/api/v1/conversations?token=${token({ userId: user('alice') })}`),
    ],
  ];
  for (const [what, request] of unauthorized) {
    test(`${what} is 401 UNAUTHORIZED`, async () => {
      httpError(await request(), 401, 'UNAUTHORIZED');
    });
  }

  test('an expired token is 401 TOKEN_EXPIRED', async () => {
    httpError(await call(expiredToken({ userId: user('late') })), 401, 'TOKEN_EXPIRED');
  });

  test('the 401 body is exactly {error: {code, message}}', async () => {
    const res = await call(null);
    assert.equal(res.status, 401);
    assert.deepEqual(Object.keys(res.body), ['error']);
    assert.deepEqual(Object.keys(res.body.error).sort(), ['code', 'message']);
  });

  test('a valid token is accepted', async () => {
    const res = await call(token({ userId: user('alice') }));
    assert.equal(res.status, 200, JSON.stringify(res.body));
  });
});

describe('CORS (the product page lives on another origin)', () => {
  const origin = 'https://app.example.test';

  test('the HTTP API answers preflights and names the allowed origin', async () => {
    const res = await fetch(`${config.url}/api/v1/unread`, {
      method: 'OPTIONS',
      headers: { origin, 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' },
    });
    assert.ok(res.status === 200 || res.status === 204, `preflight status ${res.status}`);
    assert.equal(res.headers.get('access-control-allow-origin'), origin);
    assert.match(res.headers.get('access-control-allow-headers') ?? '', /authorization/i);
  });

  test('Socket.IO long-polling responses carry the allowed origin', async () => {
    const res = await fetch(`${config.url}/socket.io/?EIO=4&transport=polling`, { headers: { origin } });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('access-control-allow-origin'), origin);
    await res.text();
  });
});
