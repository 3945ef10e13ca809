'use strict';
// Contract sections 3 and 4: events POSTed to the REST API reach exactly the sockets
// of their rooms, once, with the envelope as their only argument.

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

let server;
h.serverPerFile((started) => {
  server = started;
});

const ENVELOPE_KEYS = new Set(['id', 'type', 'occurredAt', 'actor', 'service', 'booking', 'payment', 'previousStatus', 'reason', 'offsets']);

/**
 * Waits for every expected event ([client, type, pred] triples), then after one quiet
 * period checks each arrived exactly once with one argument; returns the envelopes.
 */
async function receiveOnceEach(...expected) {
  for (const [c, type, pred] of expected) await c.waitFor(type, pred);
  await h.sleep(h.QUIET);
  return expected.map(([c, type, pred]) => {
    const got = c.received(type, pred);
    assert.equal(got.length, 1, `expected "${type}" once, received it ${got.length} times`);
    assert.equal(got[0].args.length, 1, `expected one argument (the envelope), got ${got[0].args.length}`);
    const env = got[0].args[0];
    for (const key of Object.keys(env)) assert.ok(ENVELOPE_KEYS.has(key), `unexpected envelope field "${key}"`);
    assert.ok(env.offsets && typeof env.offsets === 'object', 'every envelope carries offsets');
    for (const [room, position] of Object.entries(env.offsets)) {
      assert.equal(typeof position, 'string', `offsets["${room}"] is an opaque string`);
    }
    return env;
  });
}

async function receiveOnce(c, type, pred) {
  return (await receiveOnceEach([c, type, pred]))[0];
}

function assertRecent(occurredAt) {
  const ms = h.assertRfc3339(occurredAt, 'occurredAt');
  assert.ok(Math.abs(ms - Date.now()) < 60_000, `occurredAt ${occurredAt} is not close to now`);
}

describe('booking events', () => {
  it('booking:status_changed reaches the user and the vendor once, with the envelope; bystanders get nothing', async () => {
    const userId = h.uid('u');
    const vendorSub = h.uid('vs');
    const vendorId = h.uid('v');
    const user = await h.connect(server, { token: h.userToken(userId) });
    const vendor = await h.connect(server, { token: h.vendorToken(vendorSub, vendorId) });
    const bystanders = [
      await h.connect(server, { token: h.userToken(h.uid('u')) }),
      await h.connect(server, { token: h.vendorToken(h.uid('vs'), h.uid('v')) }),
      // A *user* whose id equals the vendor id is in user:<vendorId>, not vendor:<vendorId>.
      await h.connect(server, { token: h.userToken(vendorId) }),
      // A vendor whose sub equals the booking's vendorId but whose vendorId differs.
      await h.connect(server, { token: h.vendorToken(vendorId, h.uid('v')) }),
      // An admin is not in every room.
      await h.connect(server, { token: h.adminToken(h.uid('a')) }),
    ];

    const event = {
      type: 'booking:status_changed',
      actor: { id: vendorSub, role: 'vendor' },
      booking: {
        id: h.uid('b'),
        userId,
        vendorId,
        status: 'confirmed',
        scheduledAt: '2026-12-01T09:30:00Z',
        price: { amount: 12050, currency: 'EUR' },
        tags: ['urgent', 'plumbing'],
        note: 'Ünïcødé ✓',
      },
      previousStatus: 'pending',
    };
    const res = await h.emitEvent(server, event);
    assert.equal(typeof res.id, 'string');
    assert.ok(res.id.length > 0);
    assert.equal(res.type, 'booking:status_changed');
    assert.deepEqual([...res.rooms].sort(), [`user:${userId}`, `vendor:${vendorId}`]);

    const byId = (e) => e.booking && e.booking.id === event.booking.id;
    const envs = await receiveOnceEach([user, 'booking:status_changed', byId], [vendor, 'booking:status_changed', byId]);
    for (const env of envs) {
      assert.equal(env.id, res.id);
      assert.equal(env.type, 'booking:status_changed');
      assertRecent(env.occurredAt);
      assert.deepEqual(env.booking, event.booking);
      assert.equal(env.previousStatus, 'pending');
      assert.deepEqual(env.actor, event.actor);
    }
    await h.expectNothing(bystanders, null, () => true, 0);
    // Nothing else reached the targets either.
    for (const c of [user, vendor]) assert.deepEqual(c.events.map((e) => e.event), ['booking:status_changed']);
  });

  it('a vendor socket in both target rooms (sub = userId, vendorId = vendorId) receives the event once', async () => {
    const sub = h.uid('u');
    const vendorId = h.uid('v');
    const both = await h.connect(server, { token: h.vendorToken(sub, vendorId) });
    const event = h.bookingEvent(sub, vendorId);
    const res = await h.emitEvent(server, event);
    assert.deepEqual([...res.rooms].sort(), [`user:${sub}`, `vendor:${vendorId}`]);
    const env = await receiveOnce(both, 'booking:status_changed', (e) => e.booking.id === event.booking.id);
    assert.equal(env.id, res.id);
  });

  it('a vendor token without vendorId is in vendor:<sub>', async () => {
    const sub = h.uid('v');
    const vendor = await h.connect(server, { token: h.token({ sub, role: 'vendor' }) });
    const event = h.bookingEvent(h.uid('u'), sub);
    await h.emitEvent(server, event);
    await receiveOnce(vendor, 'booking:status_changed', (e) => e.booking.id === event.booking.id);
  });

  it('every socket of a user receives the event once (two tabs)', async () => {
    const userId = h.uid('u');
    const tabs = [
      await h.connect(server, { token: h.userToken(userId), transports: ['websocket'] }),
      await h.connect(server, { token: h.userToken(userId), transports: ['polling'] }),
    ];
    const event = h.bookingEvent(userId, h.uid('v'));
    await h.emitEvent(server, event);
    const byId = (e) => e.booking.id === event.booking.id;
    await receiveOnceEach(...tabs.map((tab) => [tab, 'booking:status_changed', byId]));
  });

  it('booking:created and booking:cancelled (with reason) reach user and vendor', async () => {
    const userId = h.uid('u');
    const vendorId = h.uid('v');
    const user = await h.connect(server, { token: h.userToken(userId) });
    const vendor = await h.connect(server, { token: h.vendorToken(h.uid('vs'), vendorId) });
    const booking = { id: h.uid('b'), userId, vendorId, status: 'pending' };
    await h.emitEvent(server, { type: 'booking:created', booking });
    await h.emitEvent(server, {
      type: 'booking:cancelled',
      booking: { ...booking, status: 'cancelled' },
      reason: 'customer request',
    });
    const byId = (e) => e.booking.id === booking.id;
    const [uc, ux, vc, vx] = await receiveOnceEach(
      [user, 'booking:created', byId],
      [user, 'booking:cancelled', byId],
      [vendor, 'booking:created', byId],
      [vendor, 'booking:cancelled', byId],
    );
    for (const created of [uc, vc]) {
      assert.deepEqual(created.booking, booking);
      assert.equal(created.type, 'booking:created');
      assert.equal('previousStatus' in created, false);
    }
    for (const cancelled of [ux, vx]) {
      assert.equal(cancelled.type, 'booking:cancelled');
      assert.equal(cancelled.reason, 'customer request');
      assert.equal(cancelled.booking.status, 'cancelled');
    }
  });

  it('numeric ids: a token with a numeric sub receives events for that id as a string', async () => {
    const n = 100000 + Math.floor(Math.random() * 800000);
    const user = await h.connect(server, { token: h.token({ sub: n }) });
    const event = h.bookingEvent(String(n), h.uid('v'));
    const res = await h.emitEvent(server, event);
    assert.ok(res.rooms.includes(`user:${n}`));
    const env = await receiveOnce(user, 'booking:status_changed', (e) => e.booking.id === event.booking.id);
    assert.equal(String(env.booking.userId), String(n));
  });

  it('events from one controller arrive in the order they were accepted', async () => {
    const userId = h.uid('u');
    const user = await h.connect(server, { token: h.userToken(userId) });
    const booking = { id: h.uid('b'), userId, vendorId: h.uid('v') };
    const statuses = ['pending', 'confirmed', 'in_progress', 'completed', 'reviewed', 'archived'];
    for (let i = 1; i < statuses.length; i += 1) {
      await h.emitEvent(server, {
        type: 'booking:status_changed',
        booking: { ...booking, status: statuses[i] },
        previousStatus: statuses[i - 1],
      });
    }
    await h.waitUntil(() => user.received('booking:status_changed').length >= statuses.length - 1, 'all events');
    await h.sleep(h.QUIET);
    const got = user.received('booking:status_changed').map((e) => e.args[0].booking.status);
    assert.deepEqual(got, statuses.slice(1));
  });

  it('occurredAt given by the controller is kept', async () => {
    const userId = h.uid('u');
    const user = await h.connect(server, { token: h.userToken(userId) });
    const event = h.bookingEvent(userId, h.uid('v'), { occurredAt: '2026-01-02T03:04:05Z' });
    await h.emitEvent(server, event);
    const env = await receiveOnce(user, 'booking:status_changed', (e) => e.booking.id === event.booking.id);
    assert.equal(Date.parse(env.occurredAt), Date.parse('2026-01-02T03:04:05Z'));
  });
});

describe('service and payment events', () => {
  it('service events go to vendor:<service.vendorId> only', async () => {
    const vendorId = h.uid('v');
    const vendor = await h.connect(server, { token: h.vendorToken(h.uid('vs'), vendorId) });
    const others = [
      await h.connect(server, { token: h.userToken(vendorId) }),
      await h.connect(server, { token: h.vendorToken(h.uid('vs'), h.uid('v')) }),
    ];
    const service = { id: h.uid('s'), vendorId, name: 'Drain cleaning', status: 'active' };
    for (const type of ['service:created', 'service:updated']) {
      const res = await h.emitEvent(server, { type, service });
      assert.deepEqual(res.rooms, [`vendor:${vendorId}`]);
    }
    const res = await h.emitEvent(server, {
      type: 'service:status_changed',
      service: { ...service, status: 'paused' },
      previousStatus: 'active',
    });
    assert.deepEqual(res.rooms, [`vendor:${vendorId}`]);
    const byId = (e) => e.service.id === service.id;
    const [created, updated, changed] = await receiveOnceEach(
      [vendor, 'service:created', byId],
      [vendor, 'service:updated', byId],
      [vendor, 'service:status_changed', byId],
    );
    assert.deepEqual(created.service, service);
    assert.deepEqual(updated.service, service);
    assert.notEqual(created.id, updated.id);
    assert.equal(changed.previousStatus, 'active');
    assert.equal(changed.id, res.id);
    assert.equal(changed.service.status, 'paused');
    await h.expectNothing(others, null, () => true, 0);
  });

  it('payment events go to user:<payment.userId>, and to the vendor only when payment.vendorId is present', async () => {
    const userId = h.uid('u');
    const vendorId = h.uid('v');
    const user = await h.connect(server, { token: h.userToken(userId) });
    const vendor = await h.connect(server, { token: h.vendorToken(h.uid('vs'), vendorId) });
    const bystander = await h.connect(server, { token: h.userToken(h.uid('u')) });

    const completed = { id: h.uid('p'), userId, amount: 4200, currency: 'USD' };
    const r1 = await h.emitEvent(server, { type: 'payment:completed', payment: completed });
    assert.deepEqual(r1.rooms, [`user:${userId}`]);
    const failed = { id: h.uid('p'), userId, vendorId, amount: 99 };
    const r2 = await h.emitEvent(server, { type: 'payment:failed', payment: failed, reason: 'card declined' });
    assert.deepEqual([...r2.rooms].sort(), [`user:${userId}`, `vendor:${vendorId}`]);

    const [env1, uf, vf] = await receiveOnceEach(
      [user, 'payment:completed', (e) => e.payment.id === completed.id],
      [user, 'payment:failed', (e) => e.payment.id === failed.id],
      [vendor, 'payment:failed', (e) => e.payment.id === failed.id],
    );
    assert.deepEqual(env1.payment, completed);
    assert.equal(env1.id, r1.id);
    for (const env2 of [uf, vf]) {
      assert.deepEqual(env2.payment, failed);
      assert.equal(env2.reason, 'card declined');
      assert.equal(env2.id, r2.id);
    }
    assert.equal(vendor.received('payment:completed').length, 0, 'the vendor got a payment without vendorId');
    await h.expectNothing(bystander, null, () => true, 0);
  });
});

describe('REST refusals emit nothing', () => {
  it('a POST without the right API token is 401 and nothing is delivered', async () => {
    const userId = h.uid('u');
    const user = await h.connect(server, { token: h.userToken(userId) });
    const res = await h.postEvent(server, h.bookingEvent(userId, h.uid('v')), { apiToken: 'wrong-token' });
    assert.equal(res.status, 401);
    assert.equal(res.body.error.code, 'unauthorized');
    const noAuth = await fetch(`${server.url}/api/v1/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(h.bookingEvent(userId, h.uid('v'))),
    });
    assert.equal(noAuth.status, 401);
    await h.expectNothing(user);
  });

  it('an invalid event (unknown type, missing booking.userId) is 422 and nothing is delivered', async () => {
    const userId = h.uid('u');
    const vendorId = h.uid('v');
    const user = await h.connect(server, { token: h.userToken(userId) });
    const vendor = await h.connect(server, { token: h.vendorToken(h.uid('vs'), vendorId) });
    const unknown = await h.postEvent(server, { type: 'booking:exploded', booking: { id: 'b', userId, vendorId } });
    assert.equal(unknown.status, 422);
    const missing = await h.postEvent(server, { type: 'booking:created', booking: { id: 'b', vendorId } });
    assert.equal(missing.status, 422);
    assert.equal(missing.body.error.code, 'validation_failed');
    await h.expectNothing([user, vendor]);
  });

  it('the same idempotency key twice is emitted once and answers the first result', async () => {
    const userId = h.uid('u');
    const user = await h.connect(server, { token: h.userToken(userId) });
    const event = { ...h.bookingEvent(userId, h.uid('v')), id: h.uid('evt') };
    const first = await h.emitEvent(server, event);
    const second = await h.emitEvent(server, event);
    assert.equal(first.id, event.id);
    assert.deepEqual(second, first);

    const key = h.uid('idem');
    const viaHeader = h.bookingEvent(userId, h.uid('v'));
    const a = await h.postEvent(server, viaHeader, { headers: { 'idempotency-key': key } });
    const b = await h.postEvent(server, viaHeader, { headers: { 'idempotency-key': key } });
    assert.equal(a.status, 202);
    assert.equal(b.status, 202);
    assert.equal(a.body.id, key);
    assert.deepEqual(b.body, a.body);
    const [env] = await receiveOnceEach(
      [user, 'booking:status_changed', (e) => e.booking.id === event.booking.id],
      [user, 'booking:status_changed', (e) => e.booking.id === viaHeader.booking.id],
    );
    assert.equal(env.id, event.id);
  });
});
