'use strict';
// createClient's validation, and the guard against the old `io` argument. No server.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const util = require('node:util');
const rt = require('..');

test('createClient requires url and token, with clear messages', () => {
  assert.throws(() => rt.createClient(), { name: 'TypeError', message: /options must be an object/ });
  assert.throws(() => rt.createClient({ token: 't' }), { name: 'TypeError', message: /`url` is required/ });
  assert.throws(() => rt.createClient({ url: '', token: 't' }), /`url` is required/);
  assert.throws(() => rt.createClient({ url: 'http://x' }), { name: 'TypeError', message: /`token` is required/ });
  assert.throws(() => rt.createClient({ url: 'not a url', token: 't' }), /not a valid URL/);
  assert.throws(() => rt.createClient({ url: 'ws://x', token: 't' }), /http:\/\/ or https:\/\//);
  assert.throws(() => rt.createClient({ url: 'http://x?a=1', token: 't' }), /query string/);
  assert.throws(() => rt.createClient({ url: 'http://x', token: 5 }), /`token` must be a string/);
  assert.throws(() => rt.createClient({ url: 'http://x', token: 'two words' }), /`token` must be a string/);
  assert.throws(() => rt.createClient({ url: 'http://x', token: 'tökén' }), /printable ASCII/);
  assert.throws(() => rt.createClient({ url: 'http://x', token: 't', timeoutMs: 0 }), /`timeoutMs`/);
  assert.throws(() => rt.createClient({ url: 'http://x', token: 't', timeoutMs: '5' }), /`timeoutMs`/);
  assert.throws(() => rt.createClient({ url: 'http://x', token: 't', retries: -1 }), /`retries`/);
  assert.throws(() => rt.createClient({ url: 'http://x', token: 't', retries: 1.5 }), /`retries`/);
  assert.throws(() => rt.createClient({ url: 'http://x', token: 't', deadlineMs: 0 }), /`deadlineMs`/);
  assert.throws(() => rt.createClient({ url: 'http://x', token: 't', onError: 'log' }), /`onError` must be a function/);
});

test('defaults: 5000 ms per attempt, 30 s per call, 6 retries; a trailing slash is dropped; the token is not shown', () => {
  const c = rt.createClient({ url: 'http://realtime.internal:3000/', token: 'secret-token' });
  assert.equal(c.url, 'http://realtime.internal:3000');
  assert.equal(c.timeoutMs, 5000);
  assert.equal(c.deadlineMs, 30000);
  assert.equal(c.retries, 6);
  assert.ok(Object.isFrozen(c));
  assert.doesNotMatch(util.inspect(c, { showHidden: true }), /secret-token/);
  assert.doesNotMatch(JSON.stringify(c), /secret-token/);
  const prefixed = rt.createClient({ url: 'https://gw.example/realtime/', token: 't', retries: 0 });
  assert.equal(prefixed.url, 'https://gw.example/realtime');
  assert.equal(prefixed.retries, 0);
});

test('passing a Socket.IO server (the old `io` argument) is refused with a hint', async () => {
  const io = { to() { return this; }, emit() {} };
  await assert.rejects(rt.emitServiceCreated(io, { service: { id: 's', vendorId: 'v' } }), {
    name: 'TypeError',
    message: /looks like a Socket.IO server: pass the client from createClient/,
  });
  const c = rt.createClient({ url: 'http://127.0.0.1:9', token: 't' });
  await assert.rejects(rt.emitBookingCreated(c), /data must be an object/);
  await assert.rejects(rt.emitBatch(c, {}), /events must be an array/);
  await assert.rejects(rt.presence(c, 'admin', 'a'), /kind must be "user" or "vendor"/);
  await assert.rejects(rt.disconnectUser(c, ''), /userId must be a non-empty string/);
});

test('FixrxError is an Error with status, code, field', () => {
  const e = new rt.FixrxError('x', { status: 422, code: 'validation_failed', field: 'booking.userId' });
  assert.ok(e instanceof Error);
  assert.equal(e.name, 'FixrxError');
  assert.deepEqual([e.status, e.code, e.field, e.message], [422, 'validation_failed', 'booking.userId', 'x']);
  assert.deepEqual(Object.keys(rt.EVENT_TYPES).length, 8);
});
