// PROTOCOL.md §5 messages over HTTP: GET history (same paging as join), POST (same validation,
// idempotency and broadcasts as send-message), DELETE (sender only, message-deleted).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import {
  ack,
  actor,
  api,
  config,
  DEFAULT_TIMEOUT_MS,
  assertMessage,
  conversationOf,
  expectNoEvent,
  httpError,
  httpOk,
  join,
  mark,
  randomUUID,
  received,
  send,
  sendMany,
  waitFor,
} from '../lib/harness.mjs';
import { invalidMessageBodies } from '../lib/cases.mjs';

const messagesPath = (conversationId, query = '') => `/api/v1/conversations/${conversationId}/messages${query}`;
const getHistory = (tok, conversationId, query) => api(tok, 'GET', messagesPath(conversationId, query));
const postMessage = (tok, conversationId, body) => api(tok, 'POST', messagesPath(conversationId), body);
const deleteMessage = (tok, id) => api(tok, 'DELETE', `/api/v1/messages/${id}`);

/**
 * One POST of a JSON body of `bytes` bytes on a connection of its own, with
 * `Expect: 100-continue` (a server that refuses on Content-Length never gets the body), written
 * in chunks that stop as soon as the answer arrives. Resolves with `{status, body}`, or with
 * `{reset}` when the connection broke before any answer could be read.
 */
function postOversizedOnce(tok, path, bytes) {
  return new Promise((resolve, reject) => {
    const req = http.request(`${config.url}${path}`, {
      method: 'POST',
      agent: false,
      timeout: DEFAULT_TIMEOUT_MS,
      headers: {
        authorization: `Bearer ${tok}`,
        'content-type': 'application/json',
        'content-length': bytes,
        expect: '100-continue',
      },
    });
    let answered = false;
    req.on('continue', async () => {
      const chunk = 64 * 1024;
      const prefix = Buffer.from('{"content":"');
      for (let sent = 0; sent < bytes && !answered && !req.destroyed; sent += chunk) {
        const piece = Buffer.alloc(Math.min(chunk, bytes - sent), 'x');
        if (sent === 0) prefix.copy(piece);
        if (sent + piece.length === bytes) piece.write('"}', piece.length - 2);
        if (!req.write(piece)) await new Promise((r) => req.once('drain', r));
        await new Promise((r) => setImmediate(r)); // let an early answer be read before writing on
      }
      if (!answered && !req.destroyed) req.end();
    });
    req.on('response', (res) => {
      answered = true;
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (data) => (text += data));
      res.on('end', () => {
        req.destroy();
        let parsed = text;
        try {
          parsed = JSON.parse(text);
        } catch {
          // not JSON: keep the text
        }
        resolve({ status: res.statusCode, body: parsed });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer to an oversized POST ${path} within ${DEFAULT_TIMEOUT_MS} ms`)));
    req.on('error', (err) => {
      if (answered) return; // the server closing on the rest of the body after answering
      if (err.code === 'EPIPE' || err.code === 'ECONNRESET') resolve({ reset: err.code });
      else reject(err);
    });
    req.flushHeaders();
  });
}

/**
 * A server that answers before reading the whole body closes with unread data, which resets
 * the connection, and the reset can beat the answer to the client: try a few times, and only
 * ever accept an answer that was actually read.
 */
async function postOversized(tok, path, bytes) {
  const resets = [];
  for (let attempt = 0; attempt < 5; attempt++) {
    const res = await postOversizedOnce(tok, path, bytes);
    if (!res.reset) return res;
    resets.push(res.reset);
  }
  assert.fail(`the connection was reset before any answer, 5 times (${resets.join(', ')})`);
}

async function joinedPair() {
  const alice = await actor('alice');
  const bob = await actor('bob');
  const conversation = await conversationOf(alice, [bob]);
  await join(alice.socket, conversation.id);
  await join(bob.socket, conversation.id);
  return { alice, bob, conversation };
}

describe('GET /api/v1/conversations/{id}/messages', () => {
  test('pages exactly like join-conversation', async () => {
    const { alice, bob, conversation } = await joinedPair();
    const m = [null, ...(await sendMany(alice.socket, conversation.id, 7))];
    const page = async (query) => {
      const body = httpOk(await getHistory(bob.token, conversation.id, query), [200]);
      assert.equal(body.conversationId, conversation.id);
      return { contents: body.messages.map((x) => x.content), hasMore: body.hasMore };
    };
    assert.deepEqual(await page(''), { contents: ['m1', 'm2', 'm3', 'm4', 'm5', 'm6', 'm7'], hasMore: false });
    assert.deepEqual(await page('?limit=3'), { contents: ['m5', 'm6', 'm7'], hasMore: true });
    assert.deepEqual(await page(`?limit=3&before=${m[5].id}`), { contents: ['m2', 'm3', 'm4'], hasMore: true });
    assert.deepEqual(await page(`?limit=3&before=${m[2].id}`), { contents: ['m1'], hasMore: false });
    assert.deepEqual(await page(`?limit=2&after=${m[3].id}`), { contents: ['m4', 'm5'], hasMore: true });
    assert.deepEqual(await page(`?after=${m[5].id}`), { contents: ['m6', 'm7'], hasMore: false });
    assert.deepEqual((await page(`?after=${m[2].id}&before=${m[6].id}`)).contents, ['m3', 'm4', 'm5']);
    // The same page over the socket is the same data.
    const viaSocket = await join(bob.socket, conversation.id, { limit: 3, before: m[5].id });
    const viaHttp = httpOk(await getHistory(bob.token, conversation.id, `?limit=3&before=${m[5].id}`), [200]);
    assert.deepEqual(viaHttp, viaSocket);
  });

  test('a non-participant gets 404 NOT_FOUND exactly like an unknown conversation', async () => {
    const { conversation } = await joinedPair();
    const mallory = await actor('mallory');
    const unknownId = randomUUID();
    const forbidden = httpError(await getHistory(mallory.token, conversation.id), 404, 'NOT_FOUND');
    const unknown = httpError(await getHistory(mallory.token, unknownId), 404, 'NOT_FOUND');
    assert.equal(forbidden.message.replaceAll(conversation.id, '<id>'), unknown.message.replaceAll(unknownId, '<id>'));
  });

  for (const [what, query] of [
    ['limit=0', '?limit=0'],
    ['limit=101', '?limit=101'],
    ['limit=ten', '?limit=ten'],
    ['a non-UUID before', '?before=yesterday'],
  ]) {
    test(`a history request with ${what} is 400 VALIDATION`, async () => {
      const { alice, conversation } = await joinedPair();
      httpError(await getHistory(alice.token, conversation.id, query), 400, 'VALIDATION');
    });
  }

  test('a non-UUID conversation id in the path is 400 VALIDATION, as over the socket', async () => {
    const alice = await actor('alice');
    httpError(await getHistory(alice.token, 'not-a-uuid'), 400, 'VALIDATION');
  });

  test('without a token it is 401 UNAUTHORIZED', async () => {
    const { conversation } = await joinedPair();
    httpError(await getHistory(null, conversation.id), 401, 'UNAUTHORIZED');
  });
});

describe('POST /api/v1/conversations/{id}/messages', () => {
  test('stores the message, answers the Message, and the room gets new-message', async () => {
    const { alice, bob, conversation } = await joinedPair();
    const attachments = [{ url: 'https://cdn.example.test/a.png', type: 'image/png', name: 'a.png', size: 42 }];
    const res = await postMessage(alice.token, conversation.id, { content: ' over http ', attachments });
    const message = httpOk(res, [200, 201]);
    assertMessage(message, { conversationId: conversation.id, senderId: alice.id, content: 'over http', attachments });
    for (const socket of [alice.socket, bob.socket]) {
      assert.deepEqual(await waitFor(socket, 'new-message', { predicate: (m) => m.id === message.id }), message);
    }
    const history = httpOk(await getHistory(bob.token, conversation.id), [200]);
    assert.deepEqual(history.messages, [message]);
  });

  test('the same clientMessageId twice stores one message and broadcasts it once', async () => {
    const { alice, bob, conversation } = await joinedPair();
    const since = mark(bob.socket);
    const body = { content: 'once over http', clientMessageId: `cm-${randomUUID()}` };
    const first = httpOk(await postMessage(alice.token, conversation.id, body));
    const second = httpOk(await postMessage(alice.token, conversation.id, body));
    assert.deepEqual(second, first);
    assert.equal(first.clientMessageId, body.clientMessageId);
    const after = await send(alice.socket, conversation.id, 'barrier');
    await waitFor(bob.socket, 'new-message', { predicate: (m) => m.id === after.id });
    assert.deepEqual(received(bob.socket, 'new-message', { since }), [first, after]);
  });

  test('a clientMessageId first used over the socket returns the same message over HTTP', async () => {
    const { alice, bob, conversation } = await joinedPair();
    const clientMessageId = `cm-${randomUUID()}`;
    const viaSocket = await send(alice.socket, conversation.id, 'either door', { clientMessageId });
    const viaHttp = httpOk(await postMessage(alice.token, conversation.id, { content: 'either door', clientMessageId }));
    assert.deepEqual(viaHttp, viaSocket);
    const history = httpOk(await getHistory(bob.token, conversation.id), [200]);
    assert.deepEqual(history.messages, [viaSocket]);
  });

  test('a non-participant posting gets 404 NOT_FOUND like an unknown conversation; nothing is stored or broadcast', async () => {
    const { alice, bob, conversation } = await joinedPair();
    const mallory = await actor('mallory');
    const since = mark(bob.socket);
    const unknownId = randomUUID();
    const forbidden = httpError(await postMessage(mallory.token, conversation.id, { content: 'spam' }), 404, 'NOT_FOUND');
    const unknown = httpError(await postMessage(mallory.token, unknownId, { content: 'spam' }), 404, 'NOT_FOUND');
    assert.equal(forbidden.message.replaceAll(conversation.id, '<id>'), unknown.message.replaceAll(unknownId, '<id>'));
    let after;
    await expectNoEvent(bob.socket, 'new-message', async () => {
      after = await send(alice.socket, conversation.id, 'barrier');
      await waitFor(bob.socket, 'new-message', { since, predicate: (m) => m.id === after.id });
    }, { since, predicate: (m) => m.id !== after.id });
    assert.deepEqual(httpOk(await getHistory(alice.token, conversation.id), [200]).messages, [after]);
  });

  test('an oversized body is 413 VALIDATION', async () => {
    const { alice, conversation } = await joinedPair();
    const res = await postOversized(alice.token, messagesPath(conversation.id), 4 * 1024 * 1024);
    httpError(res, 413, 'VALIDATION');
  });

  test('without a token it is 401 UNAUTHORIZED', async () => {
    const { conversation } = await joinedPair();
    httpError(await postMessage(null, conversation.id, { content: 'anonymous' }), 401, 'UNAUTHORIZED');
  });
});

describe('HTTP and socket doors agree', () => {
  for (const [what, body] of invalidMessageBodies) {
    test(`a message with ${what} is VALIDATION on both doors, and nothing is broadcast`, async () => {
      const { alice, bob, conversation } = await joinedPair();
      const since = mark(bob.socket);
      const viaSocket = await ack(alice.socket, 'send-message', { conversationId: conversation.id, ...body });
      assert.equal(viaSocket?.error?.code, 'VALIDATION', `socket: ${JSON.stringify(viaSocket)}`);
      httpError(await postMessage(alice.token, conversation.id, body), 400, 'VALIDATION');
      let after;
      await expectNoEvent(bob.socket, 'new-message', async () => {
        after = await send(alice.socket, conversation.id, 'barrier');
        await waitFor(bob.socket, 'new-message', { since, predicate: (m) => m.id === after.id });
      }, { since, predicate: (m) => m.id !== after.id });
    });
  }

  test('a non-object HTTP body is 400 VALIDATION, as a non-object socket payload is VALIDATION', async () => {
    const { alice, conversation } = await joinedPair();
    for (const body of ['hello', 42, null, [{ content: 'x' }]]) {
      const viaSocket = await ack(alice.socket, 'send-message', body);
      assert.equal(viaSocket?.error?.code, 'VALIDATION', `socket ${JSON.stringify(body)}: ${JSON.stringify(viaSocket)}`);
      httpError(await postMessage(alice.token, conversation.id, body), 400, 'VALIDATION');
    }
  });

  test('a non-UUID conversation id is VALIDATION on both doors', async () => {
    const alice = await actor('alice');
    const viaSocket = await ack(alice.socket, 'send-message', { conversationId: 'not-a-uuid', content: 'x' });
    assert.equal(viaSocket?.error?.code, 'VALIDATION', JSON.stringify(viaSocket));
    httpError(await postMessage(alice.token, 'not-a-uuid', { content: 'x' }), 400, 'VALIDATION');
  });
});

describe('DELETE /api/v1/messages/{id}', () => {
  test('the sender deletes their message: the room gets message-deleted and the history drops it', async () => {
    const { alice, bob, conversation } = await joinedPair();
    const [doomed, kept] = await sendMany(alice.socket, conversation.id, 2);
    const res = await deleteMessage(alice.token, doomed.id);
    assert.ok([200, 204].includes(res.status), `delete: ${res.status} ${JSON.stringify(res.body)}`);
    for (const socket of [alice.socket, bob.socket]) {
      const deleted = await waitFor(socket, 'message-deleted', { predicate: (e) => e.messageId === doomed.id });
      // The deletion is numbered after both messages (§8).
      assert.deepEqual(deleted, { conversationId: conversation.id, messageId: doomed.id, seq: kept.seq + 1 });
    }
    assert.deepEqual(httpOk(await getHistory(bob.token, conversation.id), [200]).messages, [kept]);
    assert.deepEqual((await join(bob.socket, conversation.id)).messages, [kept]);
  });

  test('another participant gets 403 FORBIDDEN, a non-participant 404 NOT_FOUND, and nothing is deleted or broadcast', async () => {
    const { alice, bob, conversation } = await joinedPair();
    const mallory = await actor('mallory');
    const message = await send(alice.socket, conversation.id, 'mine');
    const since = [mark(alice.socket), mark(bob.socket)];
    httpError(await deleteMessage(bob.token, message.id), 403, 'FORBIDDEN');
    const hidden = httpError(await deleteMessage(mallory.token, message.id), 404, 'NOT_FOUND');
    const unknownId = randomUUID();
    const unknown = httpError(await deleteMessage(mallory.token, unknownId), 404, 'NOT_FOUND');
    assert.equal(hidden.message.replaceAll(message.id, '<id>'), unknown.message.replaceAll(unknownId, '<id>'));
    assert.deepEqual(httpOk(await getHistory(bob.token, conversation.id), [200]).messages, [message]);
    let after;
    await expectNoEvent([alice.socket, bob.socket], 'message-deleted', async () => {
      after = await send(alice.socket, conversation.id, 'barrier');
      await waitFor(alice.socket, 'new-message', { predicate: (m) => m.id === after.id });
      await waitFor(bob.socket, 'new-message', { predicate: (m) => m.id === after.id });
    }, { since });
  });

  test('a non-UUID message id is 400 VALIDATION', async () => {
    const alice = await actor('alice');
    httpError(await deleteMessage(alice.token, 'not-a-uuid'), 400, 'VALIDATION');
  });

  test('without a token it is 401 UNAUTHORIZED', async () => {
    httpError(await deleteMessage(null, randomUUID()), 401, 'UNAUTHORIZED');
  });
});
