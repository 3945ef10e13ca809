'use strict';
// verifyWebhook against real webhooks: the server, started with WEBHOOK_URL pointing at
// an HTTP receiver of this test, signs a presence.online webhook when a socket connects.
// The real request verifies; any change to its body, timestamp or secret, or its age,
// does not.

const { test, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../../../tests/js/test/helpers.js');
const { startReceiver } = require('../../../tests/js/test/receiver.js');
const { verifyWebhook } = require('..');

const SECRET = 'node-client-webhook-secret-0123456789';
let server;
let receiver;
before(async () => {
  receiver = await startReceiver(() => ({ status: 204 }), { secret: SECRET });
  server = await h.startServer({ WEBHOOK_URL: receiver.url, WEBHOOK_SECRET: SECRET, WEBHOOK_TIMEOUT_MS: '2000' });
});
afterEach(() => h.closeAll());
after(async () => {
  h.closeAll();
  if (server) await server.stop();
  if (receiver) await receiver.close();
});

/** Connects a user and resolves the presence.online webhook the server sent for it. */
async function realWebhook() {
  const u = h.uid('u');
  await h.connect(server, { token: h.userToken(u) });
  const [hook] = await h.waitUntil(() => {
    const got = receiver.presence(`user:${u}`);
    return got.length > 0 ? got : null;
  }, `the presence.online webhook of ${u}`);
  assert.equal(hook.body.type, 'presence.online');
  return hook;
}

test('a real webhook verifies, with node\'s req.headers, a fetch Headers, or a string body', async () => {
  const hook = await realWebhook();
  assert.equal(hook.valid, true, 'the reference check of tests/js agrees');
  assert.equal(verifyWebhook(hook.raw, hook.headers, SECRET), true);
  assert.equal(verifyWebhook(hook.raw.toString('utf8'), hook.headers, SECRET), true);
  assert.equal(verifyWebhook(new Uint8Array(hook.raw), new Headers(hook.headers), SECRET), true);
  assert.equal(verifyWebhook(hook.raw, hook.headers, Buffer.from(SECRET)), true);
});

test('a secret list accepts the old and the new secret while it is rotated', async () => {
  const hook = await realWebhook();
  assert.equal(verifyWebhook(hook.raw, hook.headers, ['the-next-secret-0123456789', SECRET]), true);
  assert.equal(verifyWebhook(hook.raw, hook.headers, [SECRET, 'the-next-secret-0123456789']), true);
  assert.equal(verifyWebhook(hook.raw, hook.headers, ['the-next-secret-0123456789', 'an-older-one-0123456789']), false);
});

test('a tampered body, a wrong secret, a changed timestamp or a missing header: false', async () => {
  const hook = await realWebhook();
  const tampered = Buffer.from(hook.raw.toString('utf8').replace('presence.online', 'presence.offline'));
  assert.notDeepEqual(tampered, hook.raw);
  assert.equal(verifyWebhook(tampered, hook.headers, SECRET), false);
  assert.equal(verifyWebhook(Buffer.concat([hook.raw, Buffer.from(' ')]), hook.headers, SECRET), false);
  assert.equal(verifyWebhook(hook.raw, hook.headers, 'not-the-secret-0123456789'), false);
  const ts = Number(hook.headers['x-webhook-timestamp']);
  assert.equal(verifyWebhook(hook.raw, { ...hook.headers, 'x-webhook-timestamp': String(ts + 1) }, SECRET), false);
  const { 'x-webhook-signature': _sig, ...noSignature } = hook.headers;
  assert.equal(verifyWebhook(hook.raw, noSignature, SECRET), false);
  const { 'x-webhook-timestamp': _ts, ...noTimestamp } = hook.headers;
  assert.equal(verifyWebhook(hook.raw, noTimestamp, SECRET), false);
  const upper = hook.headers['x-webhook-signature'].toUpperCase();
  assert.equal(verifyWebhook(hook.raw, { ...hook.headers, 'x-webhook-signature': upper }, SECRET), false);
});

test('the timestamp must be within toleranceSecs (300 by default), either way', async () => {
  const hook = await realWebhook();
  const signedAt = Number(hook.headers['x-webhook-timestamp']) * 1000;
  assert.ok(Math.abs(Date.now() - signedAt) < 60000, 'the server signs with its own clock, now');
  assert.equal(verifyWebhook(hook.raw, hook.headers, SECRET, { now: signedAt + 299000 }), true);
  assert.equal(verifyWebhook(hook.raw, hook.headers, SECRET, { now: signedAt + 301000 }), false, 'stale: a replay');
  assert.equal(verifyWebhook(hook.raw, hook.headers, SECRET, { now: signedAt - 301000 }), false, 'from the future');
  assert.equal(verifyWebhook(hook.raw, hook.headers, SECRET, { now: signedAt + 20000, toleranceSecs: 10 }), false);
  assert.equal(verifyWebhook(hook.raw, hook.headers, SECRET, { now: signedAt + 5000, toleranceSecs: 10 }), true);
});

test('a parsed body or a missing secret is a TypeError, not a quiet false', () => {
  const headers = { 'x-webhook-timestamp': '1', 'x-webhook-signature': 'sha256=00' };
  assert.throws(() => verifyWebhook({ type: 'presence.online' }, headers, SECRET), { name: 'TypeError', message: /express\.raw/ });
  assert.throws(() => verifyWebhook('{}', headers, ''), { name: 'TypeError' });
  assert.throws(() => verifyWebhook('{}', headers, []), { name: 'TypeError' });
  assert.throws(() => verifyWebhook('{}', undefined, SECRET), { name: 'TypeError' });
});
