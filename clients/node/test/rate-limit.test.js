'use strict';
// 429 from the server's real per-token rate limit (API_RATE_LIMIT=1, API_RATE_BURST=1):
// the client waits for Retry-After and retries with the same key.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../../../tests/js/test/helpers.js');
const { requestCount } = require('../test-support/proxy.js');
const rt = require('..');

let server;
h.serverPerFile(
  (s) => {
    server = s;
  },
  { API_RATE_LIMIT: '1', API_RATE_BURST: '1' },
);

const count = (status) => requestCount(server, { route: '/api/v1/events', status });

test('with retries: 0 a 429 throws FixrxError rate_limited with retryAfterMs', async () => {
  const client = rt.createClient({ url: server.url, token: h.API_TOKEN, retries: 0 });
  const u = h.uid('u');
  const user = await h.connect(server, { token: h.userToken(u) });
  const first = await rt.emitPaymentCompleted(client, { payment: { id: h.uid('p'), userId: u } });
  await assert.rejects(rt.emitPaymentCompleted(client, { payment: { id: h.uid('p'), userId: u } }), (err) => {
    assert.ok(err instanceof rt.FixrxError);
    assert.equal(err.status, 429);
    assert.equal(err.code, 'rate_limited');
    assert.equal(err.retryAfterMs, 1000);
    assert.equal(err.attempts, 1);
    return true;
  });
  await user.waitFor('payment:completed', (e) => e.id === first.id);
  await h.expectNothing(user, 'payment:completed', (e) => e.id !== first.id);
  await h.sleep(1100); // the bucket refills for the next test
});

test('two quick emits: the second gets 429, waits Retry-After, and is delivered once', async () => {
  const client = rt.createClient({ url: server.url, token: h.API_TOKEN });
  const u = h.uid('u');
  const v = h.uid('v');
  const user = await h.connect(server, { token: h.userToken(u) });
  const [ok429, ok202] = [await count('429'), await count('202')];

  const a = await rt.emitBookingCreated(client, { booking: { id: h.uid('b'), userId: u, vendorId: v } });
  const started = Date.now();
  const b = await rt.emitBookingCancelled(client, { booking: { id: h.uid('b'), userId: u, vendorId: v }, reason: 'rain' });
  const waited = Date.now() - started;

  assert.ok(waited >= 900, `the retry waited for Retry-After (1 s), waited ${waited} ms`);
  assert.ok(waited < 5000, `and not much longer: ${waited} ms`);
  assert.ok((await count('429')) >= ok429 + 1, 'the server answered 429 at least once');
  assert.equal(await count('202'), ok202 + 2);
  await user.waitFor('booking:cancelled', (e) => e.id === b.id);
  await h.expectNothing(user, null, (e) => e.id !== a.id && e.id !== b.id);
  assert.deepEqual(user.events.map((e) => [e.event, e.args[0].id]), [
    ['booking:created', a.id],
    ['booking:cancelled', b.id],
  ]);
});

test('a Retry-After longer than what the deadline leaves: rejected at once, not retried past it', async () => {
  await h.sleep(1100); // a full bucket
  const client = rt.createClient({ url: server.url, token: h.API_TOKEN });
  const u = h.uid('u');
  const user = await h.connect(server, { token: h.userToken(u) });
  const first = await rt.emitPaymentCompleted(client, { payment: { id: h.uid('p'), userId: u } });
  const before = await count('429');
  const started = Date.now();
  await assert.rejects(
    rt.emitPaymentCompleted(client, { payment: { id: h.uid('p'), userId: u } }, { deadlineMs: 500 }),
    (err) => {
      assert.ok(Date.now() - started < 400, `rejected after ${Date.now() - started} ms: no waiting for nothing`);
      assert.equal(err.code, 'deadline_exceeded');
      assert.equal(err.attempts, 1);
      assert.equal(err.cause.status, 429);
      assert.equal(err.cause.retryAfterMs, 1000);
      return true;
    },
  );
  assert.equal(await count('429'), before + 1, 'one attempt');
  await h.expectNothing(user, 'payment:completed', (e) => e.id !== first.id, 1100);
});
