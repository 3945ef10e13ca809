'use strict';
// Redis stalls under the real server (`CLIENT PAUSE 3000`, ALL and WRITE, sent from a
// connection of the test's own): an emit made during the stall, with the package's
// default retry settings, resolves once Redis answers again, and the socket receives the
// event exactly once.
//
// Why the moment in the pause matters: the server waits 2 s for Redis before answering
// 503; under `ALL` its health check (a PING) times out too, and from then until a PING
// succeeds after the pause, it answers 503 at once. An emit that starts about 500 ms into
// the pause meets that window after its first attempt.

const { test, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../../../tests/js/test/helpers.js');
const { startRedis } = require('../../../tests/js/test/redis.js');
const { requestCount } = require('../test-support/proxy.js');
const { redisCommand } = require('../test-support/redis-command.js');
const rt = require('..');

const PAUSE_MS = 3000;

let redis;
let server;
before(async () => {
  redis = await startRedis();
  server = await h.startServer({ REDIS_URL: redis.url });
  // Redis has the append script, as on a server that ran for a while.
  const warm = rt.createClient({ url: server.url, token: h.API_TOKEN });
  await rt.emitPaymentCompleted(warm, { payment: { id: h.uid('p'), userId: h.uid('u') } });
});
afterEach(async () => {
  h.closeAll();
  // The next case starts on a Redis that answers, and a server that knows it.
  while ((await fetch(`${server.url}/ready`)).status !== 200) await h.sleep(50);
});
after(async () => {
  if (server) await server.stop();
  if (redis) await redis.stop();
});

/** Pauses Redis, waits `atMs`, then runs `emit`; resolves what it settled to, and when. */
async function emitDuringPause(mode, atMs, emit) {
  const refusedBefore = await requestCount(server, { route: '/api/v1/events', status: '503' });
  assert.equal(await redisCommand(redis.port, `CLIENT PAUSE ${PAUSE_MS} ${mode}`), '+OK');
  const paused = Date.now();
  await h.sleep(atMs);
  const settled = await emit().then(
    (answer) => ({ answer }),
    (error) => ({ error }),
  );
  const after = Date.now() - paused;
  const refused = (await requestCount(server, { route: '/api/v1/events', status: '503' })) - refusedBefore;
  const outcome = settled.error ? `rejected (${settled.error.code}, ${settled.error.attempts} attempts)` : 'resolved';
  console.log(`stall ${mode}: emit ${atMs} ms into a ${PAUSE_MS} ms pause ${outcome} at ${after} ms, ${refused} answer(s) 503`);
  return { ...settled, after };
}

/** The socket receives the event once, and no second copy within 1.5 s. */
async function deliveredOnce(user, id) {
  await user.waitFor('booking:created', (e) => e.id === id, 8000);
  await h.expectNothing(user, 'booking:created', (e) => e.id !== id, 1500);
  assert.equal(user.received('booking:created').length, 1);
}

for (const [mode, atMs] of [['ALL', 0], ['ALL', 500], ['ALL', 2600], ['WRITE', 0], ['WRITE', 500]]) {
  test(`CLIENT PAUSE ${PAUSE_MS} ${mode}, emit ${atMs} ms in: resolves with the default retries, delivered once`, { timeout: 30000 }, async () => {
    const [u, v] = [h.uid('u'), h.uid('v')];
    const user = await h.connect(server, { token: h.userToken(u) });
    const realtime = rt.createClient({ url: server.url, token: h.API_TOKEN });
    const booking = { id: h.uid('b'), userId: u, vendorId: v, status: 'pending' };
    const { answer, error, after } = await emitDuringPause(mode, atMs, () => rt.emitBookingCreated(realtime, { booking }));
    assert.equal(error, undefined, `the emit gave up ${after} ms into the pause: ${error && error.message}`);
    assert.deepEqual(answer.rooms, [`user:${u}`, `vendor:${v}`]);
    assert.ok(after >= PAUSE_MS - 100, `resolved before Redis answered again (${after} ms)`);
    const got = await user.waitFor('booking:created', (e) => e.id === answer.id);
    assert.deepEqual(got.args[0].booking, booking);
    await deliveredOnce(user, answer.id);
  });
}

test('an emit that gives up during the stall (retries: 0) may still be delivered, once', { timeout: 30000 }, async () => {
  const [u, v] = [h.uid('u'), h.uid('v')];
  const user = await h.connect(server, { token: h.userToken(u) });
  const realtime = rt.createClient({ url: server.url, token: h.API_TOKEN, retries: 0 });
  const id = h.uid('booking-created');
  const booking = { id: h.uid('b'), userId: u, vendorId: v, status: 'pending' };
  const { error } = await emitDuringPause('ALL', 0, () => rt.emitBookingCreated(realtime, { booking, id }));
  assert.ok(error instanceof rt.FixrxError, 'rejected');
  assert.equal(error.status, 503);
  // The append waited in the paused Redis and ran when it resumed: 503 meant "not
  // confirmed", not "not emitted". The same id again is answered from the first.
  await deliveredOnce(user, id);
  const again = await rt.emitBookingCreated(rt.createClient({ url: server.url, token: h.API_TOKEN }), { booking, id });
  assert.equal(again.id, id);
  await h.expectNothing(user, 'booking:created', (e) => e.id !== id, 500);
  assert.equal(user.received('booking:created').length, 1);
});
