'use strict';
// Contract section 2: WebSocket and HTTP long-polling with upgrade, exactly as the
// official socket.io-client 4.x expects.

const { it } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

let server;
h.serverPerFile((started) => {
  server = started;
});

/** POSTs an event for `userId`, waits for it on `c`; returns the received record. */
async function deliver(c, userId) {
  const event = h.bookingEvent(userId, h.uid('v'));
  const res = await h.emitEvent(server, event);
  const got = await c.waitFor('booking:status_changed', (e) => e.booking.id === event.booking.id);
  assert.equal(got.args[0].id, res.id);
  assert.deepEqual(got.args[0].booking, event.booking);
  return got;
}

it('polling only: connects, acks and receives events over HTTP long-polling, never upgrades', async () => {
  const userId = h.uid('u');
  const c = await h.connect(server, { token: h.userToken(userId), transports: ['polling'] });
  assert.equal(c.firstTransport, 'polling');
  assert.equal(c.socket.io.engine.transport.name, 'polling');
  const ack = await c.ack('ping', {});
  assert.equal(ack.ok, true);
  const first = await deliver(c, userId);
  assert.equal(first.transport, 'polling');
  // A second event needs a new long-poll request: it must arrive as well.
  const second = await deliver(c, userId);
  assert.equal(second.transport, 'polling');
  await h.sleep(h.QUIET);
  assert.deepEqual(c.upgrades, []);
  assert.equal(c.socket.io.engine.transport.name, 'polling');
  assert.equal(c.received('booking:status_changed').length, 2);
});

it('websocket only: connects, acks and receives events over WebSocket', async () => {
  const userId = h.uid('u');
  const c = await h.connect(server, { token: h.userToken(userId), transports: ['websocket'] });
  assert.equal(c.firstTransport, 'websocket');
  assert.equal(c.socket.io.engine.transport.name, 'websocket');
  const ack = await c.ack('ping', {});
  assert.equal(ack.ok, true);
  const got = await deliver(c, userId);
  assert.equal(got.transport, 'websocket');
  await h.sleep(h.QUIET);
  assert.equal(c.received('booking:status_changed').length, 1);
});

it('default: starts on polling, upgrades to WebSocket, then receives over WebSocket', async () => {
  const userId = h.uid('u');
  const c = h.client(server, { token: h.userToken(userId) });
  assert.equal(c.firstTransport, 'polling');
  const { connected, error } = await c.ready;
  assert.ok(connected, `connect_error: ${error && error.message}`);
  await h.waitUntil(() => c.upgrades.length > 0, 'the engine "upgrade" event');
  assert.deepEqual(c.upgrades, ['websocket']);
  assert.equal(c.socket.io.engine.transport.name, 'websocket');
  const got = await deliver(c, userId);
  assert.equal(got.transport, 'websocket');
  const ack = await c.ack('ping', {});
  assert.equal(ack.ok, true);
  await h.sleep(h.QUIET);
  assert.equal(c.received('booking:status_changed').length, 1);
  assert.equal(c.socket.connected, true);
});

it('an event emitted during the upgrade is delivered exactly once', async () => {
  const userId = h.uid('u');
  const c = h.client(server, { token: h.userToken(userId) });
  const { connected } = await c.ready;
  assert.ok(connected);
  // Emit right away, while the client is probing the WebSocket.
  const events = [h.bookingEvent(userId, h.uid('v')), h.bookingEvent(userId, h.uid('v'))];
  for (const ev of events) await h.emitEvent(server, ev);
  await h.waitUntil(() => c.upgrades.length > 0, 'the engine "upgrade" event');
  const third = h.bookingEvent(userId, h.uid('v'));
  await h.emitEvent(server, third);
  for (const ev of [...events, third]) await c.waitFor('booking:status_changed', (e) => e.booking.id === ev.booking.id);
  await h.sleep(h.QUIET);
  const ids = c.received('booking:status_changed').map((e) => e.args[0].booking.id);
  assert.deepEqual(ids, [...events, third].map((ev) => ev.booking.id));
});

it('a polling socket and a websocket socket of one user each receive the event once', async () => {
  const userId = h.uid('u');
  const p = await h.connect(server, { token: h.userToken(userId), transports: ['polling'] });
  const w = await h.connect(server, { token: h.userToken(userId), transports: ['websocket'] });
  const event = h.bookingEvent(userId, h.uid('v'));
  await h.emitEvent(server, event);
  const byId = (e) => e.booking.id === event.booking.id;
  assert.equal((await p.waitFor('booking:status_changed', byId)).transport, 'polling');
  assert.equal((await w.waitFor('booking:status_changed', byId)).transport, 'websocket');
  await h.sleep(h.QUIET);
  assert.equal(p.received('booking:status_changed').length, 1);
  assert.equal(w.received('booking:status_changed').length, 1);
});

it('a client that disconnects no longer receives; a new connection of the same user does', async () => {
  const userId = h.uid('u');
  const old = await h.connect(server, { token: h.userToken(userId), transports: ['websocket'] });
  old.close();
  await h.sleep(100);
  const fresh = await h.connect(server, { token: h.userToken(userId), transports: ['polling'] });
  await deliver(fresh, userId);
  await h.expectNothing(old);
});
