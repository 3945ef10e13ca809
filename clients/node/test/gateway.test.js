'use strict';
// A gateway in front of the real server answers 502 and 504 (test-support/http-proxy.js):
// an emit is retried with the same idempotency key in every attempt and delivered once;
// a chat message, which has no key, is not retried after a 504 that came after the
// server had relayed it.

const { test, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../../../tests/js/test/helpers.js');
const { startHttpProxy } = require('../test-support/http-proxy.js');
const { requestCount } = require('../test-support/proxy.js');
const rt = require('..');

let server;
h.serverPerFile((s) => {
  server = s;
});

let gateway;
afterEach(async () => {
  if (gateway) await gateway.close();
  gateway = undefined;
});

const viaGateway = (opts = {}) =>
  rt.createClient({ url: gateway.url, token: h.API_TOKEN, minBackoffMs: 50, maxBackoffMs: 200, ...opts });

test('a 502 then a 504 from a gateway are retried with the same Idempotency-Key: the event arrives once', async () => {
  const u = h.uid('u');
  const user = await h.connect(server, { token: h.userToken(u) });
  const before = await requestCount(server, { route: '/api/v1/events', status: '202' });
  // 502: the server never saw the request. 504: the server emitted, the gateway lost the answer.
  gateway = await startHttpProxy(server.port, { script: [{ reply: 502 }, { forwardThenReply: 504 }] });

  const answer = await rt.emitPaymentCompleted(viaGateway(), { payment: { id: h.uid('p'), userId: u, amount: 4200 } });

  assert.equal(gateway.requests.length, 3, 'the 502, the 504, then the attempt that got the answer');
  const keys = gateway.requests.map((r) => r.headers['idempotency-key']);
  assert.deepEqual(keys, [answer.id, answer.id, answer.id], 'every attempt carries the same key');
  assert.deepEqual(
    gateway.requests.map((r) => JSON.parse(r.body).id),
    [answer.id, answer.id, answer.id],
    'the body id is that key',
  );
  assert.equal(new Set(gateway.requests.map((r) => r.body)).size, 1, 'every attempt sends the same bytes');
  assert.deepEqual(gateway.requests.map((r) => r.upstreamStatus), [undefined, 202, 202]);
  assert.equal(await requestCount(server, { route: '/api/v1/events', status: '202' }), before + 2);

  const env = (await user.waitFor('payment:completed', (e) => e.id === answer.id)).args[0];
  assert.equal(env.payment.amount, 4200);
  // The second 202 was the server's replay of the first: no second delivery.
  await h.expectNothing(user, 'payment:completed', (e) => e.id !== answer.id, 500);
  assert.equal(user.received('payment:completed').length, 1);
});

test('a caller-given id is the Idempotency-Key; a batch sends none (each event id is its key)', async () => {
  const u = h.uid('u');
  const v = h.uid('v');
  const vendor = await h.connect(server, { token: h.vendorToken(h.uid('owner'), v) });
  gateway = await startHttpProxy(server.port, { script: [{ reply: 502 }, { reply: 504 }, { forward: true }, { reply: 502 }] });
  const id = h.uid('booking-created');
  const one = await rt.emitBookingCreated(viaGateway(), { id, booking: { id: h.uid('b'), userId: u, vendorId: v } });
  assert.equal(one.id, id);
  assert.deepEqual(gateway.requests.map((r) => r.headers['idempotency-key']), [id, id, id]);

  const batch = await rt.emitBatch(viaGateway(), [{ type: 'service:updated', service: { id: h.uid('s'), vendorId: v } }]);
  const batchRequests = gateway.requests.slice(3);
  assert.equal(batchRequests.length, 2, 'one 502, then forwarded');
  for (const r of batchRequests) assert.equal(r.headers['idempotency-key'], undefined);
  assert.deepEqual(batchRequests.map((r) => JSON.parse(r.body).events[0].id), [batch[0].id, batch[0].id]);
  await vendor.waitFor('service:updated', (e) => e.id === batch[0].id);
  await h.expectNothing(vendor, 'service:updated', (e) => e.id !== batch[0].id);
  assert.equal(vendor.received('booking:created', (e) => e.id === id).length, 1);
});

test('502 on every attempt: rejected with status 502 after retries + 1 attempts, nothing emitted', async () => {
  const u = h.uid('u');
  const user = await h.connect(server, { token: h.userToken(u) });
  gateway = await startHttpProxy(server.port, { script: Array.from({ length: 10 }, () => ({ reply: 502 })) });
  await assert.rejects(rt.emitPaymentFailed(viaGateway({ retries: 2 }), { payment: { id: h.uid('p'), userId: u } }), (err) => {
    assert.ok(err instanceof rt.FixrxError);
    assert.equal(err.status, 502);
    assert.equal(err.code, 'http_502');
    assert.equal(err.attempts, 3);
    return true;
  });
  assert.equal(gateway.requests.length, 3);
  await h.expectNothing(user, 'payment:failed');
});

test('a chat message is not retried after a gateway 504: the server may have relayed it (it did, once)', async () => {
  const u = h.uid('u');
  const v = h.uid('v');
  const user = await h.connect(server, { token: h.userToken(u) });
  gateway = await startHttpProxy(server.port, { script: [{ forwardThenReply: 504 }] });
  await assert.rejects(
    rt.sendChatMessage(viaGateway(), { from: { type: 'vendor', id: v }, to: { type: 'user', id: u }, text: 'hello' }),
    (err) => err instanceof rt.FixrxError && err.status === 504 && err.attempts === 1,
  );
  assert.equal(gateway.requests.length, 1, 'no retry');
  await user.waitFor('chat:message', (m) => m.text === 'hello');
  await h.expectNothing(user, 'chat:message', (m) => m.text !== 'hello', 500);
  assert.equal(user.received('chat:message').length, 1);
});
