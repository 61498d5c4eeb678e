// PROTOCOL.md §3 send-message: the stored Message, the room broadcast, validation,
// participants only, clientMessageId idempotency, the send rate limit.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ack,
  ackError,
  actor,
  assertMessage,
  conversationOf,
  expectFailure,
  expectNoEvent,
  join,
  mark,
  randomUUID,
  received,
  send,
  waitFor,
} from '../lib/harness.mjs';
import { attachment, invalidMessageBodies, validMessageBodies } from '../lib/cases.mjs';

/** alice and bob with a conversation, both sockets joined. */
async function joinedPair() {
  const alice = await actor('alice');
  const bob = await actor('bob');
  const conversation = await conversationOf(alice, [bob]);
  await join(alice.socket, conversation.id);
  await join(bob.socket, conversation.id);
  return { alice, bob, conversation };
}

/** Sends a message from alice and waits until bob's socket has it: a barrier for bob's socket. */
async function barrier({ alice, bob, conversation }, content = 'barrier') {
  const m = await send(alice.socket, conversation.id, content);
  await waitFor(bob.socket, 'new-message', { predicate: (x) => x.id === m.id });
  return m;
}

describe('send-message', () => {
  test('the ack is the stored Message and the room, sender included, gets new-message', async () => {
    const { alice, bob, conversation } = await joinedPair();
    const attachments = [
      { url: 'https://cdn.example.test/photo.jpg', type: 'image/jpeg', name: 'photo.jpg', size: 123456 },
      { url: 'https://cdn.example.test/menu.pdf', type: 'application/pdf' },
    ];
    const before = Date.now();
    const message = await send(alice.socket, conversation.id, 'Bonjour !', { attachments });
    assertMessage(message, {
      conversationId: conversation.id,
      senderId: alice.id,
      content: 'Bonjour !',
      attachments,
    });
    const createdAt = Date.parse(message.createdAt);
    assert.ok(createdAt >= before - 2000 && createdAt <= Date.now() + 2000, `createdAt ${message.createdAt} is not now`);
    assert.deepEqual(await waitFor(bob.socket, 'new-message', { predicate: (m) => m.id === message.id }), message);
    assert.deepEqual(await waitFor(alice.socket, 'new-message', { predicate: (m) => m.id === message.id }), message);
  });

  test('a message without attachments has an empty attachments list', async () => {
    const { alice, conversation } = await joinedPair();
    const message = await send(alice.socket, conversation.id, 'plain');
    assert.deepEqual(message.attachments, []);
  });

  test('a participant who has not joined can send, and the message is in the history', async () => {
    const alice = await actor('alice');
    const bob = await actor('bob');
    const conversation = await conversationOf(alice, [bob]);
    const message = await send(bob.socket, conversation.id, 'sent without joining');
    const history = await join(alice.socket, conversation.id);
    assert.deepEqual(history.messages, [message]);
  });

  test('message ids sort by time', async () => {
    const { alice, bob, conversation } = await joinedPair();
    const ids = [];
    for (const who of [alice, bob, alice, bob]) ids.push((await send(who.socket, conversation.id, 'tick')).id);
    assert.deepEqual([...ids].sort(), ids);
  });

  for (const [what, body, content] of validMessageBodies) {
    test(`a message with ${what} is accepted`, async () => {
      const { alice, bob, conversation } = await joinedPair();
      const message = await send(alice.socket, conversation.id, body.content, body);
      assertMessage(message, { content, attachments: body.attachments ?? [] });
      assert.deepEqual(await waitFor(bob.socket, 'new-message', { predicate: (m) => m.id === message.id }), message);
    });
  }
});

describe('send-message validation', () => {
  /** Asserts VALIDATION (ack + `error` event), nothing broadcast, and the socket still works. */
  async function refused(payload) {
    const ctx = await joinedPair();
    const since = [mark(ctx.alice.socket), mark(ctx.bob.socket)];
    await expectFailure(ctx.alice.socket, 'send-message', payload(ctx.conversation.id), 'VALIDATION');
    let after;
    await expectNoEvent(
      [ctx.alice.socket, ctx.bob.socket],
      'new-message',
      async () => {
        after = await barrier(ctx, 'still working');
        await waitFor(ctx.alice.socket, 'new-message', { predicate: (m) => m.id === after.id });
      },
      { since, predicate: (m) => m.id !== after.id },
    );
    const history = await join(ctx.bob.socket, ctx.conversation.id);
    assert.deepEqual(history.messages, [after], 'a refused message was stored');
  }

  for (const [what, body] of invalidMessageBodies) {
    test(`a message with ${what} is VALIDATION, nothing is stored or broadcast`, () =>
      refused((conversationId) => ({ conversationId, ...body })));
  }

  const malformed = [
    ['a string payload', () => 'hello'],
    ['a numeric payload', () => 42],
    ['a null payload', () => null],
    ['an array payload', (id) => [{ conversationId: id, content: 'x' }]],
    ['a payload without conversationId', () => ({ content: 'x' })],
    ['a non-UUID conversationId', () => ({ conversationId: 'general', content: 'x' })],
    ['a numeric conversationId', () => ({ conversationId: 1, content: 'x' })],
  ];
  for (const [what, payload] of malformed) {
    test(`sending ${what} is VALIDATION and the socket stays connected`, () => refused(payload));
  }
});

describe('send-message participants only', () => {
  test('a non-participant sending gets NOT_FOUND like an unknown conversation; nothing is stored or broadcast', async () => {
    const ctx = await joinedPair();
    const mallory = await actor('mallory');
    const since = mark(ctx.bob.socket);
    const forbidden = await expectFailure(mallory.socket, 'send-message', { conversationId: ctx.conversation.id, content: 'spam' }, 'NOT_FOUND');
    const unknownId = randomUUID();
    const unknown = await expectFailure(mallory.socket, 'send-message', { conversationId: unknownId, content: 'spam' }, 'NOT_FOUND');
    assert.equal(forbidden.message.replaceAll(ctx.conversation.id, '<id>'), unknown.message.replaceAll(unknownId, '<id>'));
    let after;
    await expectNoEvent(ctx.bob.socket, 'new-message', async () => (after = await barrier(ctx)), {
      since,
      predicate: (m) => m.id !== after.id,
    });
    const history = await join(ctx.alice.socket, ctx.conversation.id);
    assert.deepEqual(history.messages, [after]);
  });
});

describe('clientMessageId idempotency', () => {
  test('sending the same clientMessageId twice stores one message and broadcasts it once', async () => {
    const ctx = await joinedPair();
    const { alice, bob, conversation } = ctx;
    const since = mark(bob.socket);
    const payload = { conversationId: conversation.id, content: 'only once', clientMessageId: `cm-${randomUUID()}` };
    const first = await send(alice.socket, conversation.id, payload.content, payload);
    assert.equal(first.clientMessageId, payload.clientMessageId);
    const second = await send(alice.socket, conversation.id, payload.content, payload);
    assert.deepEqual(second, first);
    const after = await barrier(ctx);
    assert.deepEqual(received(bob.socket, 'new-message', { since }), [first, after]);
    const history = await join(bob.socket, conversation.id);
    assert.deepEqual(history.messages, [first, after]);
  });

  test('the same clientMessageId from another sender is another message', async () => {
    const { alice, bob, conversation } = await joinedPair();
    const clientMessageId = `cm-${randomUUID()}`;
    const fromAlice = await send(alice.socket, conversation.id, 'from alice', { clientMessageId });
    const fromBob = await send(bob.socket, conversation.id, 'from bob', { clientMessageId });
    assert.notEqual(fromBob.id, fromAlice.id);
    assert.equal(fromBob.senderId, bob.id);
    assert.equal(fromBob.content, 'from bob');
  });

  test('reusing a clientMessageId in another conversation is VALIDATION and nothing is broadcast there', async () => {
    const alice = await actor('alice');
    const bob = await actor('bob');
    const carol = await actor('carol');
    const withBob = await conversationOf(alice, [bob]);
    const withCarol = await conversationOf(alice, [carol]);
    await join(carol.socket, withCarol.id);
    const since = mark(carol.socket);
    const clientMessageId = `cm-${randomUUID()}`;
    await send(alice.socket, withBob.id, 'first use', { clientMessageId });
    await expectFailure(alice.socket, 'send-message', { conversationId: withCarol.id, content: 'reuse', clientMessageId }, 'VALIDATION');
    const after = await send(alice.socket, withCarol.id, 'barrier');
    await expectNoEvent(carol.socket, 'new-message', () =>
      waitFor(carol.socket, 'new-message', { since, predicate: (m) => m.id === after.id }), {
      since,
      predicate: (m) => m.id !== after.id,
    });
  });
});

describe('send rate limit', () => {
  test('sending faster than 10/s with a burst of 20 gets RATE_LIMITED for the excess, which is not stored', async () => {
    const { alice, bob, conversation } = await joinedPair();
    const since = mark(alice.socket);
    const results = await Promise.all(
      // 60 at once: even a slow node (4 s for all of them) cannot refill enough to accept them all.
      Array.from({ length: 60 }, (_, i) => ack(alice.socket, 'send-message', { conversationId: conversation.id, content: `flood ${i}` })),
    );
    const ok = results.filter((r) => r?.ok === true).map((r) => r.data);
    const limited = results.filter((r) => r?.ok === false);
    for (const r of limited) ackError(r, 'RATE_LIMITED');
    assert.equal(ok.length + limited.length, 60);
    assert.ok(ok.length >= 20, `the burst of 20 was not honoured: only ${ok.length} sent`);
    assert.ok(limited.length >= 1, 'no send was rate limited');
    // Each refused send also pushed `error` to alice's socket.
    await waitFor(alice.socket, 'error', {
      since,
      predicate: () => received(alice.socket, 'error', { since, predicate: (e) => e.code === 'RATE_LIMITED' }).length >= limited.length,
    });
    const history = await join(bob.socket, conversation.id, { limit: 100 });
    assert.deepEqual(
      history.messages.map((m) => m.id).sort(),
      ok.map((m) => m.id).sort(),
      'exactly the accepted sends are stored',
    );
  });

  test('the rate limit is per user: another user can still send', async () => {
    const { alice, bob, conversation } = await joinedPair();
    const floods = await Promise.all(
      Array.from({ length: 50 }, (_, i) => ack(alice.socket, 'send-message', { conversationId: conversation.id, content: `flood ${i}` })),
    );
    assert.ok(floods.some((r) => r?.error?.code === 'RATE_LIMITED'), 'alice was not rate limited');
    const message = await send(bob.socket, conversation.id, 'bob is not limited', { attachments: [attachment(1)] });
    assert.equal(message.senderId, bob.id);
  });
});
