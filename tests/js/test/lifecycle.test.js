'use strict';
// Contract sections 1 and 6: a custom WS_PATH, and SIGTERM closing sockets cleanly
// and exiting 0. Each test starts its own server.

const { it, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const servers = [];
async function start(env) {
  const s = await h.startServer(env);
  servers.push(s);
  return s;
}
afterEach(async () => {
  h.closeAll();
  while (servers.length) await servers.pop().stop();
});

it('WS_PATH=/rt: clients connect on /rt, not on /socket.io, and the origin check applies there', async () => {
  const server = await start({ WS_PATH: '/rt' });
  const userId = h.uid('u');
  for (const transports of [['polling'], ['websocket'], ['polling', 'websocket']]) {
    const c = await h.connect(server, { path: '/rt', token: h.userToken(userId), transports });
    const event = h.bookingEvent(userId, h.uid('v'));
    await h.emitEvent(server, event);
    await c.waitFor('booking:status_changed', (e) => e.booking.id === event.booking.id);
    c.close();
  }
  const { error } = await h.connectRefused(server, { token: h.userToken(userId), transports: ['polling'] });
  assert.equal(error.type, 'TransportError');
  const open = await fetch(`${server.url}/rt/?EIO=4&transport=polling`, { headers: { origin: h.ALLOWED_ORIGIN } });
  assert.equal(open.status, 200);
  assert.equal(open.headers.get('access-control-allow-origin'), h.ALLOWED_ORIGIN);
  await open.text();
  const refused = await fetch(`${server.url}/rt/?EIO=4&transport=polling`, { headers: { origin: h.REFUSED_ORIGIN } });
  assert.equal(refused.status, 403);
  await refused.text();
});

it('SIGTERM closes every socket and the server exits 0 within a few seconds', async () => {
  const server = await start({});
  const userId = h.uid('u');
  const ws = await h.connect(server, { token: h.userToken(userId), transports: ['websocket'] });
  const poll = await h.connect(server, { token: h.userToken(userId), transports: ['polling'] });
  // Let the polling client settle on its next long-poll request.
  assert.equal((await poll.ack('ping')).pong, true);
  await h.sleep(h.QUIET);
  const reasons = new Map();
  for (const [name, c] of [['websocket', ws], ['polling', poll]]) {
    c.socket.once('disconnect', (reason) => reasons.set(name, reason));
  }
  const t0 = Date.now();
  const exit = await server.stop(8000);
  const took = Date.now() - t0;
  assert.equal(exit.killed, false, 'the server did not exit on SIGTERM and had to be killed');
  assert.equal(exit.code, 0, `exit code ${exit.code} (signal ${exit.signal})`);
  assert.ok(took < 5000, `exit took ${took} ms`);
  await h.waitUntil(() => reasons.size === 2, 'both clients to see the disconnect');
  // A clean close, not a timeout: the client learns at once.
  assert.equal(reasons.get('websocket'), 'transport close');
  assert.ok(
    ['transport close', 'io server disconnect'].includes(reasons.get('polling')),
    `polling client disconnected with "${reasons.get('polling')}"`,
  );
});
