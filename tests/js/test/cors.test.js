'use strict';
// Contract sections 1 and 2: CLIENT_ORIGIN. Allowed browser origins get CORS headers
// on the handshake and the REST API; a handshake from any other Origin is refused with
// 403 on every transport; clients that send no Origin (apps, servers) are accepted.

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const http = require('node:http');
const h = require('./helpers');

let server;
h.serverPerFile((started) => {
  server = started;
});

const HANDSHAKE = '/socket.io/?EIO=4&transport=polling';

function get(path, headers = {}) {
  return fetch(`${server.url}${path}`, { headers, signal: AbortSignal.timeout(h.TIMEOUT) });
}

function preflight(path, origin, requestHeaders = 'authorization,content-type') {
  return fetch(`${server.url}${path}`, {
    method: 'OPTIONS',
    headers: {
      origin,
      'access-control-request-method': 'POST',
      'access-control-request-headers': requestHeaders,
    },
    signal: AbortSignal.timeout(h.TIMEOUT),
  });
}

/** A raw WebSocket upgrade request; resolves { status, headers } (101 when upgraded). */
function rawUpgrade(origin) {
  return new Promise((resolve, reject) => {
    const headers = {
      connection: 'Upgrade',
      upgrade: 'websocket',
      'sec-websocket-key': crypto.randomBytes(16).toString('base64'),
      'sec-websocket-version': '13',
    };
    if (origin) headers.origin = origin;
    const req = http.request({
      host: '127.0.0.1',
      port: server.port,
      path: '/socket.io/?EIO=4&transport=websocket',
      headers,
      timeout: h.TIMEOUT,
    });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode, headers: res.headers });
    });
    req.on('response', (res) => {
      res.resume();
      resolve({ status: res.statusCode, headers: res.headers });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer to the upgrade within ${h.TIMEOUT} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** Asserts an Engine.IO v4 open packet: `0{"sid":...}`; returns the sid. */
function assertOpenPacket(body) {
  assert.match(body, /^0\{/, `not an Engine.IO open packet: ${body.slice(0, 100)}`);
  const open = JSON.parse(body.slice(1));
  assert.equal(typeof open.sid, 'string');
  assert.ok(open.upgrades.includes('websocket'));
  return open.sid;
}

describe('allowed origins', () => {
  for (const origin of [h.ALLOWED_ORIGIN, h.OTHER_ALLOWED_ORIGIN]) {
    it(`polling handshake from ${origin} → 200 with Access-Control-Allow-Origin: ${origin}`, async () => {
      const res = await get(HANDSHAKE, { origin });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('access-control-allow-origin'), origin);
      const sid = assertOpenPacket(await res.text());
      // The follow-up POST of the polling transport carries the header as well.
      const post = await fetch(`${server.url}${HANDSHAKE}&sid=${encodeURIComponent(sid)}`, {
        method: 'POST',
        headers: { origin, 'content-type': 'text/plain;charset=UTF-8' },
        body: `40${JSON.stringify({ token: h.userToken(h.uid('u')) })}`,
        signal: AbortSignal.timeout(h.TIMEOUT),
      });
      assert.equal(post.status, 200);
      assert.equal(post.headers.get('access-control-allow-origin'), origin);
      await post.text();
    });
  }

  it('OPTIONS preflight to /api/v1/events from an allowed origin allows it', async () => {
    const res = await preflight('/api/v1/events', h.ALLOWED_ORIGIN);
    assert.ok(res.status === 200 || res.status === 204, `preflight answered ${res.status}`);
    assert.equal(res.headers.get('access-control-allow-origin'), h.ALLOWED_ORIGIN);
    const methods = (res.headers.get('access-control-allow-methods') || '').toUpperCase();
    assert.match(methods, /\bPOST\b/);
    const allowed = (res.headers.get('access-control-allow-headers') || '').toLowerCase();
    assert.match(allowed, /\bauthorization\b/);
    assert.match(allowed, /\bcontent-type\b/);
  });

  it('OPTIONS preflight to the Socket.IO path (Authorization header) from an allowed origin allows it', async () => {
    const res = await preflight(HANDSHAKE, h.ALLOWED_ORIGIN, 'authorization');
    assert.ok(res.status === 200 || res.status === 204, `preflight answered ${res.status}`);
    assert.equal(res.headers.get('access-control-allow-origin'), h.ALLOWED_ORIGIN);
    assert.match((res.headers.get('access-control-allow-headers') || '').toLowerCase(), /\bauthorization\b/);
  });

  it('a REST POST from an allowed origin carries Access-Control-Allow-Origin', async () => {
    const res = await h.postEvent(server, h.bookingEvent(h.uid('u'), h.uid('v')), {
      headers: { origin: h.ALLOWED_ORIGIN },
    });
    assert.equal(res.status, 202);
    assert.equal(res.headers.get('access-control-allow-origin'), h.ALLOWED_ORIGIN);
  });

  it('a raw WebSocket upgrade from an allowed origin → 101', async () => {
    const res = await rawUpgrade(h.ALLOWED_ORIGIN);
    assert.equal(res.status, 101);
  });

  for (const transports of [['polling'], ['websocket'], ['polling', 'websocket']]) {
    it(`socket.io-client with an allowed Origin connects and receives (${transports.join('+')})`, async () => {
      const userId = h.uid('u');
      const c = await h.connect(server, {
        token: h.userToken(userId),
        transports,
        extraHeaders: { origin: h.ALLOWED_ORIGIN },
      });
      if (transports.length === 2) {
        await h.waitUntil(() => c.upgrades.length > 0, 'the upgrade to websocket (it carries the Origin too)');
      }
      const event = h.bookingEvent(userId, h.uid('v'));
      await h.emitEvent(server, event);
      await c.waitFor('booking:status_changed', (e) => e.booking.id === event.booking.id);
    });
  }
});

describe('refused origins', () => {
  it('polling handshake from a foreign origin → 403, no CORS grant, no session', async () => {
    const res = await get(HANDSHAKE, { origin: h.REFUSED_ORIGIN });
    assert.equal(res.status, 403);
    assert.notEqual(res.headers.get('access-control-allow-origin'), h.REFUSED_ORIGIN);
    assert.notEqual(res.headers.get('access-control-allow-origin'), '*');
    const body = await res.text();
    assert.doesNotMatch(body, /"sid"/);
  });

  it('an origin that only resembles an allowed one is refused (prefix, suffix, other scheme, other port)', async () => {
    for (const origin of [
      'http://allowed.example.evil.example',
      'http://evil-allowed.example',
      'https://allowed.example',
      'http://allowed.example:8080',
      'null',
    ]) {
      const res = await get(HANDSHAKE, { origin });
      assert.equal(res.status, 403, `origin ${origin} was answered ${res.status}`);
      await res.arrayBuffer();
    }
  });

  it('a raw WebSocket upgrade from a foreign origin → 403, not 101', async () => {
    const res = await rawUpgrade(h.REFUSED_ORIGIN);
    assert.equal(res.status, 403);
  });

  it('OPTIONS preflight from a foreign origin grants nothing', async () => {
    for (const path of ['/api/v1/events', HANDSHAKE]) {
      const res = await preflight(path, h.REFUSED_ORIGIN);
      await res.arrayBuffer();
      const acao = res.headers.get('access-control-allow-origin');
      assert.ok(acao === null || (acao !== h.REFUSED_ORIGIN && acao !== '*'), `${path}: ACAO ${acao}`);
    }
  });

  for (const transport of ['polling', 'websocket']) {
    it(`socket.io-client with a foreign Origin fails to connect and receives nothing (${transport})`, async () => {
      const userId = h.uid('u');
      const { client, error } = await h.connectRefused(server, {
        token: h.userToken(userId),
        transports: [transport],
        extraHeaders: { origin: h.REFUSED_ORIGIN },
      });
      // A transport-level refusal, not an authentication one.
      assert.equal(error.type, 'TransportError');
      const detail = transport === 'polling' ? String(error.description) : String(error.description && error.description.message);
      assert.match(detail, /403/, `expected a 403 in the error detail, got ${detail}`);
      // The same token without an Origin connects; only it gets the user's events.
      const control = await h.connect(server, { token: h.userToken(userId), transports: [transport] });
      const event = h.bookingEvent(userId, h.uid('v'));
      await h.emitEvent(server, event);
      await control.waitFor('booking:status_changed', (e) => e.booking.id === event.booking.id);
      await h.expectNothing(client);
    });
  }
});

describe('no Origin (apps, servers)', () => {
  it('a polling handshake without Origin is accepted', async () => {
    const res = await get(HANDSHAKE);
    assert.equal(res.status, 200);
    assertOpenPacket(await res.text());
  });

  it('a raw WebSocket upgrade without Origin → 101', async () => {
    const res = await rawUpgrade(null);
    assert.equal(res.status, 101);
  });

  it('socket.io-client without Origin connects (default transports, with upgrade)', async () => {
    const userId = h.uid('u');
    const c = await h.connect(server, { token: h.userToken(userId) });
    await h.waitUntil(() => c.upgrades.length > 0, 'the upgrade to websocket');
    const event = h.bookingEvent(userId, h.uid('v'));
    await h.emitEvent(server, event);
    await c.waitFor('booking:status_changed', (e) => e.booking.id === event.booking.id);
  });
});

describe('CLIENT_ORIGIN written with capitals', () => {
  // Browsers always send the origin in lowercase and without a default port; the server
  // stores CLIENT_ORIGIN the same way, so its 403 guard and its CORS layer agree.
  it(
    'an allowed origin configured as https://App.Example.com:443 gets Access-Control-Allow-Origin for https://app.example.com',
    async () => {
      const mixed = await h.startServer({ CLIENT_ORIGIN: 'https://App.Example.com:443' });
      try {
        const origin = 'https://app.example.com';
        const res = await fetch(`${mixed.url}${HANDSHAKE}`, { headers: { origin } });
        await res.text();
        assert.equal(res.status, 200);
        assert.equal(res.headers.get('access-control-allow-origin'), origin);
        const pre = await fetch(`${mixed.url}/api/v1/events`, {
          method: 'OPTIONS',
          headers: { origin, 'access-control-request-method': 'POST' },
        });
        await pre.arrayBuffer();
        assert.equal(pre.headers.get('access-control-allow-origin'), origin);
      } finally {
        await mixed.stop();
      }
    },
  );
});

describe('development mode and front-end dev servers', () => {
  // Contract section 14: without APP_ENV=production any http://localhost:<port> and
  // http://127.0.0.1:<port> origin is accepted (Vite on 5173, Expo web on 8081), on both
  // transports; production never accepts one it was not given.
  const VITE = 'http://localhost:5173';

  for (const transports of [['polling'], ['websocket'], ['polling', 'websocket']]) {
    it(`socket.io-client from ${VITE} connects and receives (${transports.join('+')})`, async () => {
      const userId = h.uid('u');
      const c = await h.connect(server, {
        token: h.userToken(userId),
        transports,
        extraHeaders: { origin: VITE },
      });
      const event = h.bookingEvent(userId, h.uid('v'));
      await h.emitEvent(server, event);
      await c.waitFor('booking:status_changed', (e) => e.booking.id === event.booking.id);
    });
  }

  it('a polling handshake from http://127.0.0.1:8081 gets its origin granted, with credentials', async () => {
    const origin = 'http://127.0.0.1:8081';
    const res = await get(HANDSHAKE, { origin });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('access-control-allow-origin'), origin);
    assert.equal(res.headers.get('access-control-allow-credentials'), 'true');
    assertOpenPacket(await res.text());
    const pre = await preflight('/api/v1/events', origin);
    await pre.arrayBuffer();
    assert.equal(pre.headers.get('access-control-allow-origin'), origin);
  });

  it('look-alikes of a loopback origin are refused in development too', async () => {
    for (const origin of [
      'http://localhost.evil.example',
      'http://localhost:5173.evil.example',
      'https://localhost:5173',
      'http://127.0.0.1.evil.example:80',
    ]) {
      const res = await get(HANDSHAKE, { origin });
      assert.equal(res.status, 403, `origin ${origin} was answered ${res.status}`);
      await res.arrayBuffer();
      assert.equal((await rawUpgrade(origin)).status, 403, `upgrade from ${origin}`);
    }
  });

  it('production refuses http://localhost:5173 on both transports', async () => {
    const prod = await h.startServer({
      APP_ENV: 'production',
      JWT_SECRET: h.JWT_SECRET,
      API_TOKEN: h.API_TOKEN,
      HOST: '127.0.0.1',
    });
    try {
      const res = await fetch(`${prod.url}${HANDSHAKE}`, { headers: { origin: VITE } });
      await res.arrayBuffer();
      assert.equal(res.status, 403);
      const { error } = await h.connectRefused(prod, {
        token: h.userToken(h.uid('u')),
        transports: ['websocket'],
        extraHeaders: { origin: VITE },
      });
      assert.equal(error.type, 'TransportError');
    } finally {
      await prod.stop();
    }
  });
});
