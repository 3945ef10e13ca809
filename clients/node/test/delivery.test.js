'use strict';
// Every function of the package against the real server, observed by the official
// socket.io-client (through tests/js's helpers): what arrives, where, and what must not.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../../../tests/js/test/helpers.js');
const rt = require('..');

let server;
let realtime;
h.serverPerFile((s) => {
  server = s;
  realtime = rt.createClient({ url: s.url, token: h.API_TOKEN });
});

/** A user, a vendor, a bystander user and a bystander vendor, connected. */
async function cast() {
  const ids = { u: h.uid('u'), v: h.uid('v'), ou: h.uid('ou'), ov: h.uid('ov') };
  const [user, vendor, otherUser, otherVendor] = await Promise.all([
    h.connect(server, { token: h.userToken(ids.u) }),
    h.connect(server, { token: h.vendorToken(h.uid('owner'), ids.v) }),
    h.connect(server, { token: h.userToken(ids.ou) }),
    h.connect(server, { token: h.vendorToken(h.uid('owner'), ids.ov) }),
  ]);
  return { ids, user, vendor, otherUser, otherVendor };
}

const byId = (id) => (payload) => payload && payload.id === id;

test('service events reach the vendor only, with the envelope', async () => {
  const { ids, user, vendor, otherUser, otherVendor } = await cast();
  const actor = { id: 'owner-1', role: 'vendor' };
  const cases = [
    [rt.emitServiceCreated, 'service:created', {}],
    [rt.emitServiceUpdated, 'service:updated', {}],
    [rt.emitServiceStatusChanged, 'service:status_changed', { previousStatus: 'draft' }],
  ];
  for (const [fn, type, extra] of cases) {
    const service = { id: h.uid('s'), vendorId: ids.v, name: 'Plumbing', status: 'active' };
    const answer = await fn(realtime, { service, actor, ...extra });
    assert.equal(answer.type, type);
    assert.deepEqual(answer.rooms, [`vendor:${ids.v}`]);
    assert.equal(typeof answer.id, 'string');
    const got = await vendor.waitFor(type, byId(answer.id));
    const env = got.args[0];
    assert.deepEqual(env.service, service);
    assert.deepEqual(env.actor, actor);
    assert.equal(env.previousStatus, extra.previousStatus);
    h.assertRfc3339(env.occurredAt, 'occurredAt');
  }
  await h.expectNothing([user, otherUser, otherVendor]);
  // Once each.
  for (const [, type] of cases) assert.equal(vendor.received(type).length, 1, type);
});

test('booking events reach user:<userId> and vendor:<vendorId>, nobody else', async () => {
  const { ids, user, vendor, otherUser, otherVendor } = await cast();
  const cases = [
    [rt.emitBookingCreated, 'booking:created', {}],
    [rt.emitBookingStatusChanged, 'booking:status_changed', { previousStatus: 'pending' }],
    [rt.emitBookingCancelled, 'booking:cancelled', { reason: 'customer request' }],
  ];
  for (const [fn, type, extra] of cases) {
    const booking = { id: h.uid('b'), userId: ids.u, vendorId: ids.v, status: 'confirmed' };
    const answer = await fn(realtime, { booking, actor: { id: ids.u }, ...extra });
    assert.equal(answer.type, type);
    assert.deepEqual([...answer.rooms].sort(), [`user:${ids.u}`, `vendor:${ids.v}`].sort());
    for (const c of [user, vendor]) {
      const env = (await c.waitFor(type, byId(answer.id))).args[0];
      assert.deepEqual(env.booking, booking);
      assert.equal(env.previousStatus, extra.previousStatus);
      assert.equal(env.reason, extra.reason);
    }
  }
  await h.expectNothing([otherUser, otherVendor]);
  for (const [, type] of cases) {
    assert.equal(user.received(type).length, 1, type);
    assert.equal(vendor.received(type).length, 1, type);
  }
});

test('payment events reach the user, and the vendor only when named', async () => {
  const { ids, user, vendor, otherUser, otherVendor } = await cast();
  const completed = await rt.emitPaymentCompleted(realtime, { payment: { id: h.uid('p'), userId: ids.u, amount: 4200 } });
  assert.deepEqual(completed.rooms, [`user:${ids.u}`]);
  await user.waitFor('payment:completed', byId(completed.id));

  const failed = await rt.emitPaymentFailed(realtime, {
    payment: { id: h.uid('p'), userId: ids.u, vendorId: ids.v },
    reason: 'card declined',
  });
  assert.deepEqual([...failed.rooms].sort(), [`user:${ids.u}`, `vendor:${ids.v}`].sort());
  for (const c of [user, vendor]) {
    assert.equal((await c.waitFor('payment:failed', byId(failed.id))).args[0].reason, 'card declined');
  }
  await h.expectNothing([otherUser, otherVendor]);
  await h.expectNothing(vendor, 'payment:completed', () => true, 0);
  assert.equal(user.received('payment:completed').length, 1);
  assert.equal(user.received('payment:failed').length, 1);
});

test('the caller\'s id is the event id and the idempotency key: a second call emits nothing', async () => {
  const { ids, user } = await cast();
  const id = h.uid('evt');
  const event = { id, payment: { id: h.uid('p'), userId: ids.u } };
  const first = await rt.emitPaymentCompleted(realtime, event);
  const second = await rt.emitPaymentCompleted(realtime, event);
  assert.equal(first.id, id);
  assert.deepEqual(second, first);
  await user.waitFor('payment:completed', byId(id));
  await h.expectNothing(user, 'payment:completed', (p) => p.id !== id);
  assert.equal(user.received('payment:completed').length, 1);
});

test('without an id every call is a new event with its own generated key', async () => {
  const { ids, user } = await cast();
  const payment = { id: h.uid('p'), userId: ids.u };
  const a = await rt.emitPaymentCompleted(realtime, { payment });
  const b = await rt.emitPaymentCompleted(realtime, { payment });
  assert.notEqual(a.id, b.id);
  assert.match(a.id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'a crypto.randomUUID()');
  await user.waitFor('payment:completed', byId(b.id));
  assert.deepEqual(user.received('payment:completed').map((e) => e.args[0].id), [a.id, b.id]);
});

test('emitBatch delivers every event in order, each with an id', async () => {
  const { ids, user, vendor, otherUser } = await cast();
  const given = h.uid('given');
  const events = [
    { type: 'service:created', service: { id: h.uid('s'), vendorId: ids.v } },
    { type: 'booking:created', booking: { id: h.uid('b'), userId: ids.u, vendorId: ids.v }, id: given },
    { type: 'booking:status_changed', booking: { id: h.uid('b'), userId: ids.u, vendorId: ids.v }, previousStatus: 'pending' },
    { type: 'payment:completed', payment: { id: h.uid('p'), userId: ids.u } },
  ];
  const answers = await rt.emitBatch(realtime, events);
  assert.deepEqual(answers.map((a) => a.type), events.map((e) => e.type));
  assert.equal(answers[1].id, given);
  for (const a of answers) assert.equal(typeof a.id, 'string');
  assert.equal(new Set(answers.map((a) => a.id)).size, 4);

  const last = answers[3].id;
  await user.waitFor('payment:completed', byId(last));
  await vendor.waitFor('booking:status_changed', byId(answers[2].id));
  assert.deepEqual(user.events.map((e) => e.args[0].id), [answers[1].id, answers[2].id, answers[3].id]);
  assert.deepEqual(vendor.events.map((e) => e.args[0].id), [answers[0].id, answers[1].id, answers[2].id]);

  // Retrying the same batch (same ids) emits nothing again.
  const again = await rt.emitBatch(realtime, events.map((e, i) => ({ ...e, id: answers[i].id })));
  assert.deepEqual(again, answers);
  await h.expectNothing(otherUser);
  assert.equal(user.events.length, 3);
  assert.equal(vendor.events.length, 3);
});

test('emitBatch is all or nothing: one invalid event rejects the batch', async () => {
  const { ids, user, vendor } = await cast();
  await assert.rejects(
    rt.emitBatch(realtime, [
      { type: 'service:created', service: { id: h.uid('s'), vendorId: ids.v } },
      { type: 'booking:created', booking: { id: h.uid('b'), vendorId: ids.v } },
    ]),
    (err) => err instanceof rt.FixrxError && err.status === 422 && err.field === 'events[1].booking.userId',
  );
  await h.expectNothing([user, vendor]);
});

test('sendChatMessage reaches the recipient and the sender\'s sockets', async () => {
  const { ids, user, vendor, otherUser, otherVendor } = await cast();
  const clientMsgId = h.uid('c');
  const sent = await rt.sendChatMessage(realtime, {
    from: { type: 'vendor', id: ids.v },
    to: { type: 'user', id: ids.u },
    text: 'Your booking is confirmed.',
    clientMsgId,
  });
  assert.deepEqual([...sent.rooms].sort(), [`user:${ids.u}`, `vendor:${ids.v}`].sort());
  assert.equal(sent.message.text, 'Your booking is confirmed.');
  assert.equal(sent.message.clientMsgId, clientMsgId);
  for (const c of [user, vendor]) {
    const msg = (await c.waitFor('chat:message', (m) => m.id === sent.message.id)).args[0];
    assert.deepEqual(msg.from, { type: 'vendor', id: ids.v });
    assert.deepEqual(msg.to, { type: 'user', id: ids.u });
  }
  await h.expectNothing([otherUser, otherVendor]);
  assert.equal(user.received('chat:message').length, 1);

  await assert.rejects(
    rt.sendChatMessage(realtime, { from: { type: 'user', id: ids.ou }, to: { type: 'user', id: ids.u }, text: 'hi' }),
    (err) => err instanceof rt.FixrxError && err.status === 422 && err.code === 'validation_failed' && err.field === 'to',
  );
  await h.expectNothing(user, 'chat:message', (m) => m.id !== sent.message.id);
});

test('presence counts the sockets of a user and of a vendor', async () => {
  const u = h.uid('u');
  const v = h.uid('v');
  assert.deepEqual(await rt.presence(realtime, 'user', u), { online: false, connections: 0 });
  await h.connect(server, { token: h.userToken(u) });
  await h.connect(server, { token: h.userToken(u) });
  await h.connect(server, { token: h.vendorToken(h.uid('owner'), v) });
  assert.deepEqual(await rt.presence(realtime, 'user', u), { online: true, connections: 2 });
  assert.deepEqual(await rt.presence(realtime, 'vendor', v), { online: true, connections: 1 });
  assert.deepEqual(await rt.presence(realtime, 'vendor', u), { online: false, connections: 0 });
});

test('disconnectUser disconnects every socket of that user, and no other', async () => {
  const u = h.uid('u');
  const a = await h.connect(server, { token: h.userToken(u) });
  const b = await h.connect(server, { token: h.userToken(u) });
  const other = await h.connect(server, { token: h.userToken(h.uid('u')) });
  const reasons = [a, b].map((c) => new Promise((resolve) => c.socket.once('disconnect', resolve)));
  assert.deepEqual(await rt.disconnectUser(realtime, u), { disconnected: 2 });
  assert.deepEqual(await Promise.all(reasons), ['io server disconnect', 'io server disconnect']);
  await h.sleep(h.QUIET);
  assert.equal(other.socket.connected, true);
  assert.deepEqual(await rt.presence(realtime, 'user', u), { online: false, connections: 0 });
});
