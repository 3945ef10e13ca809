'use strict';
// The call's deadline (`deadlineMs`, per client and per call) bounds every attempt,
// retry and wait; the caller's AbortSignal stops a call at once, even mid-backoff, and
// no attempt follows. Against a dead port, and a TCP proxy that holds answers or is down.

const { test, beforeEach, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../../../tests/js/test/helpers.js');
const { startProxy } = require('../test-support/proxy.js');
const rt = require('..');
const { deadPort } = require('../test-support/dead-port.js');

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

const service = () => ({ service: { id: h.uid('s'), vendorId: h.uid('v') } });

test('against a dead port, a 1 s deadline rejects within it with code "deadline_exceeded"', async () => {
  const client = rt.createClient({ url: `http://127.0.0.1:${await deadPort()}`, token: h.API_TOKEN });
  const started = Date.now();
  await assert.rejects(rt.emitServiceCreated(client, service(), { deadlineMs: 1000 }), (err) => {
    const elapsed = Date.now() - started;
    assert.ok(elapsed < 3000, `rejected after ${elapsed} ms`);
    assert.ok(elapsed <= 1500, `rejected after ${elapsed} ms, past the deadline`);
    assert.ok(err instanceof rt.FixrxError);
    assert.equal(err.code, 'deadline_exceeded');
    assert.equal(err.status, undefined);
    assert.match(err.message, /within its 1000 ms deadline/);
    assert.ok(err.attempts >= 2 && err.attempts < 7, `attempts: ${err.attempts}`);
    assert.equal(err.cause.code, 'network', 'the last failure is the cause');
    assert.match(err.cause.message, /ECONNREFUSED/);
    return true;
  });
});

test('the client-wide deadlineMs applies when the call gives none; no attempt follows the rejection', async () => {
  proxy.setMode('down');
  const client = rt.createClient({ url: proxy.url, token: h.API_TOKEN, deadlineMs: 600 });
  const started = Date.now();
  await assert.rejects(rt.presence(client, 'user', 'u1'), { name: 'FixrxError', code: 'deadline_exceeded' });
  assert.ok(Date.now() - started <= 1100, `rejected after ${Date.now() - started} ms`);
  const attempts = proxy.connections;
  assert.ok(attempts >= 2, `attempts: ${attempts}`);
  await h.sleep(1500);
  assert.equal(proxy.connections, attempts, 'nothing is sent after the call gave up');
});

test('a per-call deadline cuts a hanging attempt short (timeoutMs is per attempt)', async () => {
  proxy.setMode('hold-responses');
  const client = rt.createClient({ url: proxy.url, token: h.API_TOKEN, timeoutMs: 5000 });
  const started = Date.now();
  await assert.rejects(rt.emitServiceUpdated(client, service(), { deadlineMs: 700 }), (err) => {
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 650 && elapsed < 2000, `rejected after ${elapsed} ms`);
    assert.equal(err.code, 'deadline_exceeded');
    assert.equal(err.attempts, 1);
    assert.equal(err.cause.code, 'timeout');
    return true;
  });
  assert.equal(proxy.requests, 1);
});

test('abort mid-backoff rejects at once with AbortError, and the retry never happens', async () => {
  proxy.setMode('down');
  // Each wait is 1 to 2 s: the abort lands inside the first one.
  const client = rt.createClient({ url: proxy.url, token: h.API_TOKEN, minBackoffMs: 2000, maxBackoffMs: 2000 });
  const controller = new AbortController();
  const call = rt.emitServiceCreated(client, service(), { signal: controller.signal });
  await h.waitUntil(() => proxy.connections === 1, 'the first attempt');
  await h.sleep(200);
  const abortedAt = Date.now();
  controller.abort();
  await assert.rejects(call, (err) => {
    const elapsed = Date.now() - abortedAt;
    assert.ok(elapsed < 500, `rejected ${elapsed} ms after the abort`);
    assert.equal(err.name, 'AbortError');
    assert.ok(!(err instanceof rt.FixrxError));
    return true;
  });
  await h.sleep(2000);
  assert.equal(proxy.connections, 1, 'no attempt after the abort');
});

test('abort during an attempt rejects with the signal\'s reason; an aborted signal sends nothing', async () => {
  proxy.setMode('hold-responses');
  const client = rt.createClient({ url: proxy.url, token: h.API_TOKEN });
  const controller = new AbortController();
  const call = rt.emitServiceCreated(client, service(), { signal: controller.signal });
  await h.waitUntil(() => proxy.requests === 1, 'the request to reach the proxy');
  const reason = new Error('shutting down');
  controller.abort(reason);
  await assert.rejects(call, (err) => err === reason);

  await assert.rejects(
    rt.emitServiceCreated(client, service(), { signal: AbortSignal.timeout(300) }),
    { name: 'TimeoutError' },
  );
  assert.equal(proxy.requests, 2);

  const done = new AbortController();
  done.abort();
  await assert.rejects(rt.presence(client, 'user', 'u1', { signal: done.signal }), { name: 'AbortError' });
  await h.sleep(h.QUIET);
  assert.equal(proxy.requests, 2, 'an already aborted call sends nothing');
});

test('call options are checked: a bad deadlineMs or signal is a TypeError before any request', async () => {
  const client = rt.createClient({ url: proxy.url, token: h.API_TOKEN });
  await assert.rejects(rt.emitServiceCreated(client, service(), { deadlineMs: 0 }), { name: 'TypeError', message: /deadlineMs/ });
  await assert.rejects(rt.emitServiceCreated(client, service(), { signal: {} }), { name: 'TypeError', message: /AbortSignal/ });
  await assert.rejects(rt.emitServiceCreated(client, service(), 5), { name: 'TypeError', message: /options must be an object/ });
  await assert.rejects(rt.emitServiceCreated(client, service(), { onError: () => {} }), {
    name: 'TypeError',
    message: /emitServiceCreated.fire\(client, data, \{ onError \}\)/,
  });
  assert.throws(() => rt.createClient({ url: proxy.url, token: h.API_TOKEN, deadlineMs: -1 }), /`deadlineMs`/);
  assert.equal(proxy.connections, 0);
});
