'use strict';
// createClientToken against the real server's handshake: HS256 with JWT_SECRET, RS256
// and ES256 with JWT_PUBLIC_KEY. A minted token connects and its socket lands in its
// rooms (it receives what is posted to its user or vendor id); an expired one, one
// signed with another key, or with another algorithm, is refused.

const { test, after, describe } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const h = require('../../../tests/js/test/helpers.js');
const rt = require('..');

const servers = [];
after(async () => {
  h.closeAll();
  for (const s of servers) await s.stop();
});

async function start(env = {}) {
  const s = await h.startServer(env);
  servers.push(s);
  return s;
}

/** Posts an event to `u`'s user room and checks that `socket` (and only it) gets it. */
async function receivesItsEvents(server, socket, u, others = []) {
  const client = rt.createClient({ url: server.url, token: h.API_TOKEN });
  const answer = await rt.emitPaymentCompleted(client, { payment: { id: h.uid('p'), userId: u } });
  await socket.waitFor('payment:completed', (e) => e.id === answer.id);
  await h.expectNothing(others, 'payment:completed');
}

describe('HS256 with the JWT_SECRET', () => {
  let server;
  test('a minted user token connects and its socket receives events posted to its user id', async () => {
    server = await start();
    const u = h.uid('u');
    const other = h.uid('u');
    const token = rt.createClientToken({ sub: u, role: 'user' }, h.JWT_SECRET);
    const [header, payload] = token.split('.').slice(0, 2).map((p) => JSON.parse(Buffer.from(p, 'base64url')));
    assert.deepEqual(header, { alg: 'HS256', typ: 'JWT' });
    assert.ok(payload.exp > h.nowSecs() + 3500 && payload.exp <= h.nowSecs() + 3600, 'exp: an hour by default');
    const socket = await h.connect(server, { token });
    const bystander = await h.connect(server, { token: rt.createClientToken({ sub: other }, h.JWT_SECRET) });
    await receivesItsEvents(server, socket, u, [bystander]);
  });

  test('a vendor token lands in its vendor room', async () => {
    const v = h.uid('v');
    const vendor = await h.connect(server, {
      token: rt.createClientToken({ sub: h.uid('owner'), role: 'vendor', vendorId: v }, h.JWT_SECRET, { expiresInSecs: 60 }),
    });
    const client = rt.createClient({ url: server.url, token: h.API_TOKEN });
    const answer = await rt.emitServiceCreated(client, { service: { id: h.uid('s'), vendorId: v } });
    await vendor.waitFor('service:created', (e) => e.id === answer.id);
  });

  test('an expired token, or one signed with another secret, is refused', async () => {
    const u = h.uid('u');
    const expired = rt.createClientToken({ sub: u, exp: h.nowSecs() - 5 }, h.JWT_SECRET);
    const { error } = await h.connectRefused(server, { token: expired });
    assert.equal(error.message, 'unauthorized: token expired');
    const forged = rt.createClientToken({ sub: u }, 'some-other-secret-0123456789abcdef');
    assert.equal((await h.connectRefused(server, { token: forged })).error.message, 'unauthorized: invalid signature');
  });
});

describe('RS256 and ES256 with JWT_PUBLIC_KEY', () => {
  test('RS256: a token signed with the private key (PEM) connects; an HS256 one is refused', async () => {
    const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    const server = await start({ JWT_SECRET: '', JWT_PUBLIC_KEY: publicKey.export({ type: 'spki', format: 'pem' }) });
    const u = h.uid('u');
    const pem = privateKey.export({ type: 'pkcs8', format: 'pem' });
    const token = rt.createClientToken({ sub: u }, pem, { algorithm: 'RS256' });
    assert.equal(JSON.parse(Buffer.from(token.split('.')[0], 'base64url')).alg, 'RS256');
    const socket = await h.connect(server, { token });
    await receivesItsEvents(server, socket, u);
    const hs = rt.createClientToken({ sub: u }, h.JWT_SECRET);
    assert.equal((await h.connectRefused(server, { token: hs })).error.message, 'unauthorized: algorithm not accepted');
    const expired = rt.createClientToken({ sub: u, exp: h.nowSecs() - 1 }, privateKey);
    assert.equal((await h.connectRefused(server, { token: expired })).error.message, 'unauthorized: token expired');
  });

  test('ES256: a token signed with a P-256 KeyObject connects, issuer and audience included', async () => {
    const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const server = await start({
      JWT_SECRET: '',
      JWT_PUBLIC_KEY: publicKey.export({ type: 'spki', format: 'pem' }),
      JWT_ISSUER: 'https://api.fixrx.example',
      JWT_AUDIENCE: 'fixrx-realtime',
    });
    const u = h.uid('u');
    const opts = { issuer: 'https://api.fixrx.example', audience: 'fixrx-realtime' };
    const socket = await h.connect(server, { token: rt.createClientToken({ sub: u }, privateKey, opts) });
    await receivesItsEvents(server, socket, u);
    const noAudience = rt.createClientToken({ sub: u }, privateKey, { issuer: opts.issuer });
    assert.equal((await h.connectRefused(server, { token: noAudience })).error.message, 'unauthorized: invalid audience');
  });
});

test('wrong claims, keys or options are TypeErrors, before anything is signed', () => {
  const { publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const ed = crypto.generateKeyPairSync('ed25519').privateKey;
  assert.throws(() => rt.createClientToken({}, 'secret'), /`sub`/);
  assert.throws(() => rt.createClientToken({ sub: '' }, 'secret'), /`sub`/);
  assert.throws(() => rt.createClientToken({ sub: 'u', role: 'root' }, 'secret'), /`role`/);
  assert.throws(() => rt.createClientToken({ sub: 'u', exp: 'soon' }, 'secret'), /`exp`/);
  assert.throws(() => rt.createClientToken({ sub: 'u', exp: 1 }, 'secret', { expiresInSecs: 5 }), /not both/);
  assert.throws(() => rt.createClientToken({ sub: 'u' }, ''), /key must be/);
  assert.throws(() => rt.createClientToken({ sub: 'u' }, publicKey), /public key cannot sign/);
  assert.throws(() => rt.createClientToken({ sub: 'u' }, publicKey.export({ type: 'spki', format: 'pem' })), /not a private key/);
  assert.throws(() => rt.createClientToken({ sub: 'u' }, ed), /unsupported key/);
  assert.throws(() => rt.createClientToken({ sub: 'u' }, 'secret', { algorithm: 'RS256' }), /does not match the key/);
});
