'use strict';
// 503 from the real server, retried:
// - the event bus is down: a server on a private redis-server, reached through a TCP
//   proxy that cuts the link (Redis really unreachable for the server) and restores it;
// - the chat hook is down: a real backend hook (tests/js's receiver) answers 500 once,
//   the server answers 503 `unavailable` (the message was not relayed), the retry is relayed.

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../../../tests/js/test/helpers.js');
const { startRedis } = require('../../../tests/js/test/redis.js');
const { startReceiver, WEBHOOK_SECRET } = require('../../../tests/js/test/receiver.js');
const { startProxy, requestCount } = require('../test-support/proxy.js');
const rt = require('..');

const cleanups = [];
after(async () => {
  h.closeAll();
  for (const fn of cleanups.reverse()) await fn();
});

test('Redis unreachable: the emit gets 503, is retried, and is delivered once when Redis is back', { timeout: 20000 }, async () => {
  const redis = await startRedis();
  cleanups.push(() => redis.stop());
  const link = await startProxy(redis.port);
  cleanups.push(() => link.close());
  const server = await h.startServer({ REDIS_URL: `redis://127.0.0.1:${link.port}/0` });
  cleanups.push(() => server.stop());

  const u = h.uid('u');
  const user = await h.connect(server, { token: h.userToken(u) });
  const client = rt.createClient({ url: server.url, token: h.API_TOKEN, retries: 30, minBackoffMs: 200, maxBackoffMs: 400 });
  const before = await rt.emitPaymentCompleted(client, { payment: { id: h.uid('p'), userId: u } });
  await user.waitFor('payment:completed', (e) => e.id === before.id);

  link.setMode('down');
  const deadline = Date.now() + 8000;
  while ((await fetch(`${server.url}/ready`)).status !== 503) {
    assert.ok(Date.now() < deadline, 'the server noticed that Redis is gone');
    await h.sleep(50);
  }
  const refused = await requestCount(server, { route: '/api/v1/events', status: '503' });
  const pending = rt.emitPaymentFailed(client, { payment: { id: h.uid('p'), userId: u }, reason: 'bus down' });
  let settled = false;
  pending.then(() => (settled = true), () => (settled = true));
  // Wait for real 503 answers before Redis comes back.
  while ((await requestCount(server, { route: '/api/v1/events', status: '503' })) < refused + 2) {
    assert.ok(Date.now() < deadline + 4000, 'the emit was answered 503');
    await h.sleep(50);
  }
  assert.equal(settled, false, 'still retrying while Redis is down');
  assert.equal(user.received('payment:failed').length, 0, 'nothing delivered while refused');

  link.setMode('forward');
  const answer = await pending;
  assert.deepEqual(answer.rooms, [`user:${u}`]);
  await user.waitFor('payment:failed', (e) => e.id === answer.id, 8000);
  await h.expectNothing(user, 'payment:failed', (e) => e.id !== answer.id, 500);
  assert.equal(user.received('payment:failed').length, 1);
});

test('chat hook unavailable: 503 is retried (it proves the message was not relayed), relayed once', async () => {
  let calls = 0;
  const hook = await startReceiver(() => {
    calls += 1;
    return { status: calls === 1 ? 500 : 204 };
  });
  cleanups.push(() => hook.close());
  const server = await h.startServer({ CHAT_HOOK_URL: hook.url, WEBHOOK_SECRET });
  cleanups.push(() => server.stop());
  const client = rt.createClient({ url: server.url, token: h.API_TOKEN, minBackoffMs: 50 });

  const u = h.uid('u');
  const v = h.uid('v');
  const user = await h.connect(server, { token: h.userToken(u) });
  const sent = await rt.sendChatMessage(client, { from: { type: 'vendor', id: v }, to: { type: 'user', id: u }, text: 'Booked', clientMsgId: 'm-1' });
  assert.equal(calls, 2, 'the hook was asked twice: 500, then accepted');
  assert.ok(hook.requests.every((r) => r.valid), 'signed hook requests');
  assert.equal(await requestCount(server, { route: '/api/v1/chat/messages', status: '503' }), 1);
  await user.waitFor('chat:message', (m) => m.id === sent.message.id);
  await h.expectNothing(user, 'chat:message', (m) => m.id !== sent.message.id, 500);
  assert.equal(user.received('chat:message').length, 1);
});

test('chat hook rejects (4xx): 422 rejected, not retried, nothing relayed', async () => {
  let calls = 0;
  const hook = await startReceiver(() => {
    calls += 1;
    return { status: 403, body: { error: { message: 'blocked words' } } };
  });
  cleanups.push(() => hook.close());
  const server = await h.startServer({ CHAT_HOOK_URL: hook.url, WEBHOOK_SECRET });
  cleanups.push(() => server.stop());
  const client = rt.createClient({ url: server.url, token: h.API_TOKEN, minBackoffMs: 50 });
  const u = h.uid('u');
  const user = await h.connect(server, { token: h.userToken(u) });
  await assert.rejects(
    rt.sendChatMessage(client, { from: { type: 'vendor', id: 'v1' }, to: { type: 'user', id: u }, text: 'bad' }),
    (err) => {
      assert.ok(err instanceof rt.FixrxError);
      assert.equal(err.status, 422);
      assert.equal(err.code, 'rejected');
      assert.equal(err.message, 'blocked words');
      assert.equal(err.attempts, 1);
      return true;
    },
  );
  assert.equal(calls, 1);
  await h.expectNothing(user);
});
