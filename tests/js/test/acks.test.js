'use strict';
// Contract section 2: client events answered through the Socket.IO acknowledgement:
// `ping`, `join`, `leave`. Nobody receives the events of a room they may not join.

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

let server;
h.serverPerFile((started) => {
  server = started;
});

const FORBIDDEN = (ack) => {
  assert.equal(ack.ok, false, `expected a refusal, got ${JSON.stringify(ack)}`);
  assert.equal(ack.error, 'forbidden');
  assert.equal('room' in ack, false);
};

/** Emits a booking for user `userId` (vendor `vendorId`); resolves the booking id. */
async function booking(userId, vendorId = h.uid('v')) {
  const ev = h.bookingEvent(userId, vendorId);
  await h.emitEvent(server, ev);
  return ev.booking.id;
}

async function service(vendorId) {
  const ev = { type: 'service:updated', service: { id: h.uid('s'), vendorId } };
  await h.emitEvent(server, ev);
  return ev.service.id;
}

describe('ping', () => {
  for (const [what, args] of [
    ['an object', [{}]],
    ['a string', ['hello']],
    ['no payload', []],
    ['several arguments', [1, { a: [2] }, null]],
  ]) {
    it(`ping with ${what} → { ok: true, pong: true, serverTime }`, async () => {
      const c = await h.connect(server, { token: h.userToken(h.uid('u')) });
      const before = Date.now();
      const ack = await c.ack('ping', ...args);
      assert.deepEqual(Object.keys(ack).sort(), ['ok', 'pong', 'serverTime']);
      assert.equal(ack.ok, true);
      assert.equal(ack.pong, true);
      const t = h.assertRfc3339(ack.serverTime, 'serverTime');
      assert.ok(Math.abs(t - before) < 60_000, `serverTime ${ack.serverTime} is not close to now`);
    });
  }

  it('ping works on both transports', async () => {
    for (const transport of ['polling', 'websocket']) {
      const c = await h.connect(server, { token: h.userToken(h.uid('u')), transports: [transport] });
      const ack = await c.ack('ping', {});
      assert.equal(ack.pong, true, transport);
    }
  });
});

describe('join', () => {
  it('joining its own user room → { ok: true, room }, and events still arrive once', async () => {
    const userId = h.uid('u');
    const c = await h.connect(server, { token: h.userToken(userId) });
    assert.deepEqual(await c.ack('join', { type: 'user', id: userId }), { ok: true, room: `user:${userId}` });
    const id = await booking(userId);
    await c.waitFor('booking:status_changed', (e) => e.booking.id === id);
    await h.sleep(h.QUIET);
    assert.equal(c.received('booking:status_changed').length, 1);
  });

  it('a vendor joining its own vendor room → { ok: true, room }', async () => {
    const vendorId = h.uid('v');
    const c = await h.connect(server, { token: h.vendorToken(h.uid('vs'), vendorId) });
    assert.deepEqual(await c.ack('join', { type: 'vendor', id: vendorId }), { ok: true, room: `vendor:${vendorId}` });
  });

  it("joining another user's room is forbidden, and that user's events never arrive", async () => {
    const me = h.uid('u');
    const other = h.uid('u');
    const c = await h.connect(server, { token: h.userToken(me) });
    const victim = await h.connect(server, { token: h.userToken(other) });
    FORBIDDEN(await c.ack('join', { type: 'user', id: other }));
    const id = await booking(other);
    await victim.waitFor('booking:status_changed', (e) => e.booking.id === id);
    await h.expectNothing(c);
  });

  it('a user joining a vendor room is forbidden, and its events never arrive', async () => {
    const userId = h.uid('u');
    const vendorId = h.uid('v');
    const c = await h.connect(server, { token: h.userToken(userId) });
    const vendor = await h.connect(server, { token: h.vendorToken(h.uid('vs'), vendorId) });
    FORBIDDEN(await c.ack('join', { type: 'vendor', id: vendorId }));
    // Even the vendor room named like the user's own id.
    FORBIDDEN(await c.ack('join', { type: 'vendor', id: userId }));
    const sid = await service(vendorId);
    const bid = await booking(h.uid('u'), vendorId);
    await vendor.waitFor('service:updated', (e) => e.service.id === sid);
    await vendor.waitFor('booking:status_changed', (e) => e.booking.id === bid);
    await h.expectNothing(c);
  });

  it("a vendor joining another vendor's room or another user's room is forbidden", async () => {
    const sub = h.uid('vs');
    const vendorId = h.uid('v');
    const otherVendor = h.uid('v');
    const otherUser = h.uid('u');
    const c = await h.connect(server, { token: h.vendorToken(sub, vendorId) });
    FORBIDDEN(await c.ack('join', { type: 'vendor', id: otherVendor }));
    FORBIDDEN(await c.ack('join', { type: 'user', id: otherUser }));
    // Its own sub is a user room it is already in.
    assert.deepEqual(await c.ack('join', { type: 'user', id: sub }), { ok: true, room: `user:${sub}` });
    await service(otherVendor);
    await booking(otherUser, otherVendor);
    await h.expectNothing(c);
  });

  it('an admin may join any room and then receives its events', async () => {
    const adminId = h.uid('a');
    const userId = h.uid('u');
    const vendorId = h.uid('v');
    const admin = await h.connect(server, { token: h.adminToken(adminId) });
    assert.deepEqual(await admin.ack('join', { type: 'user', id: userId }), { ok: true, room: `user:${userId}` });
    assert.deepEqual(await admin.ack('join', { type: 'vendor', id: vendorId }), { ok: true, room: `vendor:${vendorId}` });
    const sid = await service(vendorId);
    const bid = await booking(userId, vendorId);
    await admin.waitFor('service:updated', (e) => e.service.id === sid);
    await admin.waitFor('booking:status_changed', (e) => e.booking.id === bid);
    await h.sleep(h.QUIET);
    // In both rooms of the booking: still once.
    assert.equal(admin.received('booking:status_changed').length, 1);
  });

  it('malformed join payloads → { ok: false, error, message } and the socket keeps working', async () => {
    const userId = h.uid('u');
    const c = await h.connect(server, { token: h.userToken(userId) });
    for (const payload of [
      'user:someone',
      null,
      42,
      [],
      {},
      { type: 'user' },
      { id: userId },
      { type: 'admin', id: userId },
      { type: 'user', id: '' },
      { type: 'user', id: { nested: true } },
      { type: 'user', id: 'x'.repeat(10_000) },
    ]) {
      const ack = await c.ack('join', payload);
      assert.equal(ack.ok, false, `join ${JSON.stringify(payload).slice(0, 60)} → ${JSON.stringify(ack).slice(0, 200)}`);
      assert.equal(typeof ack.error, 'string');
      assert.notEqual(ack.error, '');
      assert.equal(typeof ack.message, 'string');
    }
    assert.equal(c.socket.connected, true);
    assert.equal((await c.ack('ping')).pong, true);
    const id = await booking(userId);
    await c.waitFor('booking:status_changed', (e) => e.booking.id === id);
  });
});

describe('leave', () => {
  it('leaving its own user room → { ok: true, room }, then its events no longer arrive on that socket', async () => {
    const userId = h.uid('u');
    const c = await h.connect(server, { token: h.userToken(userId) });
    const otherTab = await h.connect(server, { token: h.userToken(userId) });
    assert.deepEqual(await c.ack('leave', { type: 'user', id: userId }), { ok: true, room: `user:${userId}` });
    const id = await booking(userId);
    // The other socket of the same user is unaffected.
    await otherTab.waitFor('booking:status_changed', (e) => e.booking.id === id);
    await h.expectNothing(c);
    // Joining again restores delivery.
    assert.deepEqual(await c.ack('join', { type: 'user', id: userId }), { ok: true, room: `user:${userId}` });
    const again = await booking(userId);
    await c.waitFor('booking:status_changed', (e) => e.booking.id === again);
  });

  it('a vendor leaving its vendor room stops vendor events but keeps its user room', async () => {
    const sub = h.uid('vs');
    const vendorId = h.uid('v');
    const c = await h.connect(server, { token: h.vendorToken(sub, vendorId) });
    assert.deepEqual(await c.ack('leave', { type: 'vendor', id: vendorId }), { ok: true, room: `vendor:${vendorId}` });
    await service(vendorId);
    const id = await booking(sub, h.uid('v'));
    await c.waitFor('booking:status_changed', (e) => e.booking.id === id);
    await h.sleep(h.QUIET);
    assert.deepEqual(c.received('service:updated'), []);
  });

  it('leaving a room one is not in is a no-op answered { ok: true, room }', async () => {
    const userId = h.uid('u');
    const other = h.uid('u');
    const c = await h.connect(server, { token: h.userToken(userId) });
    assert.deepEqual(await c.ack('leave', { type: 'user', id: other }), { ok: true, room: `user:${other}` });
    assert.equal((await c.ack('leave', { type: 'vendor', id: h.uid('v') })).ok, true);
    const id = await booking(userId);
    await c.waitFor('booking:status_changed', (e) => e.booking.id === id);
    await booking(other);
    await h.expectNothing(c, 'booking:status_changed', (e) => e.booking.userId === other);
  });

  it('malformed leave payload → { ok: false, error, message }', async () => {
    const c = await h.connect(server, { token: h.userToken(h.uid('u')) });
    const ack = await c.ack('leave', { type: 'room', id: 'x' });
    assert.equal(ack.ok, false);
    assert.equal(typeof ack.error, 'string');
    assert.equal(typeof ack.message, 'string');
  });
});
