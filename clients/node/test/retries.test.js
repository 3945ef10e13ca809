'use strict';
// Retries against the real server through a TCP proxy that loses or holds answers:
// an emit retried after a lost answer is delivered once; what must not be retried
// (422, 401, a chat message that may have been relayed) is tried once.

const { test, beforeEach, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../../../tests/js/test/helpers.js');
const { startProxy, requestCount } = require('../test-support/proxy.js');
const rt = require('..');

let server;
h.serverPerFile((s) => {
  server = s;
});

let proxy;
beforeEach(async () => {
  proxy = await startProxy(server.port);
});
afterEach(async () => {
  await proxy.close();
});

/** A client through the proxy, with quick backoffs. */
const viaProxy = (opts = {}) =>
  rt.createClient({ url: proxy.url, token: h.API_TOKEN, minBackoffMs: 50, maxBackoffMs: 200, ...opts });

async function userAndVendor() {
  const u = h.uid('u');
  const v = h.uid('v');
  const user = await h.connect(server, { token: h.userToken(u) });
  const vendor = await h.connect(server, { token: h.vendorToken(h.uid('owner'), v) });
  return { u, v, user, vendor };
}

test('an answer lost on the way back: the retry reuses the key and the event arrives once', async () => {
  const { u, v, user, vendor } = await userAndVendor();
  const booking = { id: h.uid('b'), userId: u, vendorId: v, status: 'confirmed' };
  const before = await requestCount(server, { route: '/api/v1/events', status: '202' });

  proxy.setMode('drop-response');
  const answer = await rt.emitBookingStatusChanged(viaProxy(), { booking, previousStatus: 'pending' });

  assert.equal(proxy.requests, 2, 'the first request reached the server, its answer was lost, then one retry');
  assert.equal(await requestCount(server, { route: '/api/v1/events', status: '202' }), before + 2);
  assert.deepEqual([...answer.rooms].sort(), [`user:${u}`, `vendor:${v}`].sort());
  for (const c of [user, vendor]) {
    const env = (await c.waitFor('booking:status_changed', (e) => e.booking.id === booking.id)).args[0];
    assert.equal(env.id, answer.id);
  }
  // The server emitted on the first request: the retry must not emit again.
  await h.expectNothing([user, vendor], 'booking:status_changed', (e) => e.id !== answer.id, 500);
  assert.equal(user.received('booking:status_changed').length, 1);
  assert.equal(vendor.received('booking:status_changed').length, 1);
});

test('a batch whose answer is lost is retried with the same ids: each event once', async () => {
  const { u, v, user, vendor } = await userAndVendor();
  proxy.setMode('drop-response');
  const answers = await rt.emitBatch(viaProxy(), [
    { type: 'service:updated', service: { id: h.uid('s'), vendorId: v } },
    { type: 'booking:created', booking: { id: h.uid('b'), userId: u, vendorId: v } },
  ]);
  assert.equal(proxy.requests, 2);
  await vendor.waitFor('booking:created', (e) => e.id === answers[1].id);
  await h.sleep(500); // the negative wait: no duplicate may follow
  assert.deepEqual(vendor.events.map((e) => e.args[0].id), answers.map((a) => a.id));
  assert.deepEqual(user.events.map((e) => e.args[0].id), [answers[1].id]);
});

test('an attempt past timeoutMs is abandoned and retried with the same key: once', async () => {
  const { u, user } = await userAndVendor();
  proxy.setMode('hold-response');
  const started = Date.now();
  const answer = await rt.emitPaymentCompleted(viaProxy({ timeoutMs: 400 }), { payment: { id: h.uid('p'), userId: u } });
  assert.ok(Date.now() - started >= 400, 'the first attempt waited for its timeout');
  assert.equal(proxy.requests, 2);
  await user.waitFor('payment:completed', (e) => e.id === answer.id);
  await h.expectNothing(user, 'payment:completed', (e) => e.id !== answer.id, 500);
  assert.equal(user.received('payment:completed').length, 1);
});

test('a timeout on every attempt throws FixrxError code "timeout" after retries + 1 attempts', async () => {
  const { u, user } = await userAndVendor();
  const client = viaProxy({ timeoutMs: 300, retries: 2 });
  proxy.setMode('hold-responses');
  await assert.rejects(rt.emitPaymentCompleted(client, { payment: { id: h.uid('p'), userId: u } }), (err) => {
    assert.ok(err instanceof rt.FixrxError);
    assert.equal(err.code, 'timeout');
    assert.equal(err.status, undefined);
    assert.equal(err.attempts, 3);
    assert.match(err.message, /within 300 ms/);
    return true;
  });
  assert.equal(proxy.requests, 3);
  // Three attempts with one key: the server emitted once.
  await user.waitFor('payment:completed');
  await h.sleep(h.QUIET);
  assert.equal(user.received('payment:completed').length, 1);
});

test('a refused connection is a network error, retried, then thrown with code "network"', async () => {
  const port = proxy.port;
  await proxy.close();
  const client = rt.createClient({ url: `http://127.0.0.1:${port}`, token: h.API_TOKEN, retries: 2, minBackoffMs: 10 });
  await assert.rejects(rt.presence(client, 'user', 'u1'), (err) => {
    assert.ok(err instanceof rt.FixrxError);
    assert.equal(err.code, 'network');
    assert.equal(err.status, undefined);
    assert.equal(err.attempts, 3);
    assert.match(err.message, /ECONNREFUSED/);
    return true;
  });
  proxy = await startProxy(server.port); // for afterEach
});

test('422 is not retried: FixrxError with status, code and field, one request', async () => {
  const { u, v, user, vendor } = await userAndVendor();
  const before = await requestCount(server, { route: '/api/v1/events', status: '422' });
  await assert.rejects(
    rt.emitBookingCreated(viaProxy(), { booking: { id: h.uid('b'), vendorId: v } }),
    (err) => {
      assert.ok(err instanceof rt.FixrxError);
      assert.ok(err instanceof Error);
      assert.equal(err.name, 'FixrxError');
      assert.equal(err.status, 422);
      assert.equal(err.code, 'validation_failed');
      assert.equal(err.field, 'booking.userId');
      assert.match(err.message, /required/);
      assert.equal(err.attempts, 1);
      return true;
    },
  );
  assert.equal(proxy.requests, 1);
  assert.equal(await requestCount(server, { route: '/api/v1/events', status: '422' }), before + 1);
  // A field the event type does not take is refused by the server, not dropped.
  await assert.rejects(
    rt.emitBookingCreated(viaProxy(), { booking: { id: 'b', userId: u, vendorId: v }, previousStatus: 'x' }),
    (err) => err.status === 422 && err.field === 'previousStatus',
  );
  assert.equal(proxy.requests, 2);
  await h.expectNothing([user, vendor]);
});

test('401 with a wrong token: code "unauthorized", not retried', async () => {
  const before = await requestCount(server, { route: '/api/v1/events', status: '401' });
  const wrong = rt.createClient({ url: proxy.url, token: 'not-the-api-token' });
  await assert.rejects(rt.emitServiceCreated(wrong, { service: { id: 's', vendorId: 'v' } }), (err) => {
    assert.ok(err instanceof rt.FixrxError);
    assert.equal(err.status, 401);
    assert.equal(err.code, 'unauthorized');
    assert.equal(err.field, undefined);
    return true;
  });
  assert.equal(proxy.requests, 1);
  assert.equal(await requestCount(server, { route: '/api/v1/events', status: '401' }), before + 1);
  await assert.rejects(rt.presence(wrong, 'user', 'u1'), { code: 'unauthorized', status: 401 });
  await assert.rejects(rt.disconnectUser(wrong, 'u1'), { code: 'unauthorized', status: 401 });
});

test('a chat message whose answer is lost is not retried: it was relayed once, and the error says so', async () => {
  const { u, v, user } = await userAndVendor();
  proxy.setMode('drop-response');
  await assert.rejects(
    rt.sendChatMessage(viaProxy(), { from: { type: 'vendor', id: v }, to: { type: 'user', id: u }, text: 'hello', clientMsgId: 'c1' }),
    (err) => err instanceof rt.FixrxError && err.code === 'network' && err.attempts === 1,
  );
  assert.equal(proxy.requests, 1);
  await user.waitFor('chat:message', (m) => m.clientMsgId === 'c1');
  await h.expectNothing(user, 'chat:message', (m) => m.clientMsgId !== 'c1', 500);
  assert.equal(user.received('chat:message').length, 1);
});

test('a chat message times out without a retry', async () => {
  const { u, v, user } = await userAndVendor();
  proxy.setMode('hold-response');
  await assert.rejects(
    rt.sendChatMessage(viaProxy({ timeoutMs: 300 }), { from: { type: 'vendor', id: v }, to: { type: 'user', id: u }, text: 'x' }),
    (err) => err instanceof rt.FixrxError && err.code === 'timeout' && err.attempts === 1,
  );
  assert.equal(proxy.requests, 1);
  await user.waitFor('chat:message');
  await h.sleep(h.QUIET);
  assert.equal(user.received('chat:message').length, 1);
});

test('a chat message to a refused connection is retried (it never left)', async () => {
  const { u, v, user } = await userAndVendor();
  // Nothing listens on the proxy's port for a moment, then the proxy is back there.
  const port = proxy.port;
  await proxy.close();
  const client = rt.createClient({ url: `http://127.0.0.1:${port}`, token: h.API_TOKEN, retries: 5, minBackoffMs: 100, maxBackoffMs: 100 });
  const pending = rt.sendChatMessage(client, { from: { type: 'vendor', id: v }, to: { type: 'user', id: u }, text: 'back' });
  await h.sleep(120);
  proxy = await startProxyOn(port);
  const sent = await pending;
  await user.waitFor('chat:message', (m) => m.id === sent.message.id);
  await h.sleep(h.QUIET);
  assert.equal(user.received('chat:message').length, 1);
});

/** A proxy on a given port (the one a closed proxy had). */
async function startProxyOn(port) {
  for (let i = 0; i < 50; i += 1) {
    const p = await startProxy(server.port, { port }).catch(() => null);
    if (p && p.port === port) return p;
    if (p) await p.close();
    await h.sleep(20);
  }
  throw new Error(`could not listen on ${port} again`);
}
