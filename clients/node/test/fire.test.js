'use strict';
// The fire-and-forget form (`fn.fire(client, data, { onError })`): it returns nothing,
// never throws and never rejects; each failure reaches one callback exactly once, and
// no unhandled rejection ever happens, whatever fails.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../../../tests/js/test/helpers.js');
const rt = require('..');
const { deadPort } = require('../test-support/dead-port.js');

let server;
h.serverPerFile((s) => {
  server = s;
});

const unhandled = [];
const onUnhandled = (reason) => unhandled.push(reason);
before(() => process.on('unhandledRejection', onUnhandled));
after(() => {
  process.off('unhandledRejection', onUnhandled);
});

/** A client of a server that is down, failing fast. */
async function downClient(opts = {}) {
  return rt.createClient({ url: `http://127.0.0.1:${await deadPort()}`, token: h.API_TOKEN, retries: 2, minBackoffMs: 10, ...opts });
}

function recorder() {
  const calls = [];
  const onError = (err, info) => calls.push({ err, info });
  return { calls, onError };
}

test('server down: each fire form calls onError once with the error, and nothing is unhandled', async () => {
  const client = await downClient();
  const u = h.uid('u');
  const single = recorder();
  const batch = recorder();
  const chat = recorder();
  const disconnect = recorder();
  const returned = rt.emitBookingCreated.fire(client, { booking: { id: 'b1', userId: u, vendorId: 'v1' } }, single);
  assert.equal(returned, undefined, 'nothing to await, nothing to forget to catch');
  rt.emitBatch.fire(client, [{ type: 'service:created', service: { id: 's1', vendorId: 'v1' } }, { type: 'service:updated', service: { id: 's1', vendorId: 'v1' }, id: 'mine' }], batch);
  rt.sendChatMessage.fire(client, { from: { type: 'vendor', id: 'v1' }, to: { type: 'user', id: u }, text: 'hi' }, chat);
  rt.disconnectUser.fire(client, u, disconnect);

  await h.waitUntil(() => [single, batch, chat, disconnect].every((r) => r.calls.length > 0), 'every onError');
  await h.sleep(500); // a second call, or an unhandled rejection, would come by now
  for (const [r, fn] of [[single, 'emitBookingCreated'], [batch, 'emitBatch'], [chat, 'sendChatMessage'], [disconnect, 'disconnectUser']]) {
    assert.equal(r.calls.length, 1, `${fn}: onError called once`);
    const { err, info } = r.calls[0];
    assert.ok(err instanceof rt.FixrxError, `${fn}: ${err}`);
    assert.equal(err.code, 'network');
    assert.equal(info.fn, fn);
  }
  assert.equal(single.calls[0].err.attempts, 3);
  assert.match(single.calls[0].info.id, /^[0-9a-f-]{36}$/, 'the key made for the event, to log or reuse');
  assert.equal(batch.calls[0].info.ids.length, 2);
  assert.equal(batch.calls[0].info.ids[1], 'mine');
  assert.equal(chat.calls[0].err.attempts, 3, 'a refused connection proves nothing was relayed: retried');
  assert.deepEqual(unhandled, []);
});

test('fire delivers to a real socket, once, and never calls onError', async () => {
  const u = h.uid('u');
  const user = await h.connect(server, { token: h.userToken(u) });
  const client = rt.createClient({ url: server.url, token: h.API_TOKEN });
  const r = recorder();
  rt.emitPaymentCompleted.fire(client, { payment: { id: h.uid('p'), userId: u }, id: 'fire-once-' + u }, r);
  await user.waitFor('payment:completed', (e) => e.id === 'fire-once-' + u);
  await h.expectNothing(user, 'payment:completed', (e) => e.id !== 'fire-once-' + u);
  assert.deepEqual(r.calls, []);
  assert.deepEqual(unhandled, []);
});

test('a wrong argument reaches onError as a TypeError; fire itself never throws', async () => {
  const client = await downClient();
  const io = { to() { return this; }, emit() {} };
  const r = recorder();
  assert.doesNotThrow(() => rt.emitServiceCreated.fire(io, { service: { id: 's', vendorId: 'v' } }, r));
  assert.doesNotThrow(() => rt.emitServiceCreated.fire(client, null, r));
  assert.doesNotThrow(() => rt.emitServiceCreated.fire(client, { service: { id: 's', vendorId: 'v' } }, { onError: r.onError, deadlineMs: -5 }));
  await h.waitUntil(() => r.calls.length === 3, 'three onError calls');
  assert.match(r.calls[0].err.message, /looks like a Socket.IO server/);
  assert.match(r.calls[1].err.message, /data must be an object/);
  assert.match(r.calls[2].err.message, /deadlineMs/);
  for (const { err } of r.calls) assert.equal(err.name, 'TypeError');
  await h.sleep(h.QUIET);
  assert.equal(r.calls.length, 3);
  assert.deepEqual(unhandled, []);
});

test('the client\'s onError serves calls without one; with none at all, a failure is a process warning', async () => {
  const calls = [];
  const client = await downClient({ onError: (err, info) => calls.push(info.fn) });
  rt.emitServiceUpdated.fire(client, { service: { id: 's', vendorId: 'v' } });
  await h.waitUntil(() => calls.length === 1, 'the client\'s onError');

  const warnings = [];
  const onWarning = (w) => warnings.push(w);
  process.on('warning', onWarning);
  try {
    rt.emitServiceUpdated.fire(await downClient(), { service: { id: 's', vendorId: 'v' } });
    rt.emitServiceUpdated.fire(await downClient(), { service: { id: 's', vendorId: 'v' } }, {
      onError: () => {
        throw new Error('a broken logger');
      },
    });
    await h.waitUntil(() => warnings.length === 2, 'two warnings');
    await h.sleep(h.QUIET);
  } finally {
    process.off('warning', onWarning);
  }
  assert.deepEqual(warnings.map((w) => w.code).sort(), ['FIXRX_FIRE_FAILED', 'FIXRX_ON_ERROR_THREW']);
  assert.ok(warnings.every((w) => w.name === 'FixrxWarning'));
  assert.deepEqual(calls, ['emitServiceUpdated']);
  assert.deepEqual(unhandled, []);
});

test('an abort reaches onError as the AbortError, once', async () => {
  const client = await downClient({ retries: 6, minBackoffMs: 2000, maxBackoffMs: 2000 });
  const controller = new AbortController();
  const r = recorder();
  rt.emitServiceCreated.fire(client, { service: { id: 's', vendorId: 'v' } }, { onError: r.onError, signal: controller.signal });
  await h.sleep(100);
  controller.abort();
  await h.waitUntil(() => r.calls.length === 1, 'onError');
  assert.equal(r.calls[0].err.name, 'AbortError');
  await h.sleep(h.QUIET);
  assert.equal(r.calls.length, 1);
  assert.deepEqual(unhandled, []);
});
