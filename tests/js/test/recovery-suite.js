'use strict';
// The recovery suite, run by recovery.test.js (one instance without Redis),
// recovery-redis.test.js (on one Redis) and recovery-cluster.test.js (on a Redis Cluster,
// the history in partitions spread over its primaries).
// Contract section 7: every room event carries `offsets`,
// a client that comes back with `auth.offsets` (the contract's recipe) gets what it missed
// replayed in order and once, then a `recovery` report; expired and unknown positions are
// reported as such; a 500-event batch reaches a socket that reads normally.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');
const { startRedis } = require('./redis');
const { startCluster } = require('./redis-cluster');

/**
 * Registers the suite. `backend` is 'memory', 'redis' or 'cluster': where the servers keep
 * their history (a private redis-server or Redis Cluster, started for the file).
 */
function recoverySuite(backend) {
  const backendEnv = {};
  const stores = [];
  before(async () => {
    if (backend === 'redis') {
      const redis = await startRedis();
      stores.push(redis);
      backendEnv.REDIS_URL = redis.url;
    } else if (backend === 'cluster') {
      const cluster = await startCluster();
      stores.push(cluster);
      Object.assign(backendEnv, { REDIS_CLUSTER_URLS: cluster.urls, REDIS_HISTORY_PARTITIONS: '3' });
    }
  });
  after(async () => {
    while (stores.length) await stores.pop().stop();
  });

  /** A server of another history: without Redis, any other; with it, one on another Redis. */
  async function startOtherHistory() {
    if (backend === 'memory') return startExtra({});
    const redis = await startRedis();
    stores.push(redis);
    const s = await h.startServer({ REDIS_URL: redis.url });
    extra.push(s);
    return s;
  }

  let server;
  h.serverPerFile((started) => {
    server = started;
  }, backendEnv);

  // Servers started by one test (another configuration), stopped after it.
  const extra = [];
  async function startExtra(env) {
    const s = await h.startServer({ ...backendEnv, ...env });
    extra.push(s);
    return s;
  }
  afterEach(async () => {
    h.closeAll();
    while (extra.length) await extra.pop().stop();
  });

  const CATALOG = /^(service|booking|payment):|^chat:message$/;

  /**
   * A client using the contract's recipe: `auth` is a function re-read at every
   * (re)connection, and `offsets` follows the latest position of each room seen.
   */
  function recipe(target, tok, { offsets = {}, ...opts } = {}) {
    const c = h.client(target, { auth: (cb) => cb({ token: tok, offsets }), ...opts });
    c.offsets = offsets;
    c.socket.onAny((event, payload) => {
      if (payload && payload.offsets) Object.assign(offsets, payload.offsets);
    });
    return c;
  }

  /** What the client received, in order: event ids, and "recovery" for each report. */
  function sequence(c) {
    return c.events
      .filter((e) => e.event === 'recovery' || CATALOG.test(e.event))
      .map((e) => (e.event === 'recovery' ? 'recovery' : e.args[0].id));
  }

  /**
   * The client's recovery reports, without their `offsets` (checked here: with history on,
   * one opaque position per own room of the socket, which the recipe keeps).
   */
  const recoveries = (c) =>
    c.received('recovery').map((e) => {
      const { offsets, ...report } = e.args[0];
      if (offsets !== undefined) {
        assert.equal(typeof offsets, 'object', 'recovery offsets is an object');
        for (const [room, position] of Object.entries(offsets)) {
          assert.match(room, /^(user|vendor):/, 'recovery offsets name the socket\'s own rooms');
          assert.equal(typeof position, 'string');
        }
      }
      return report;
    });
  const recoveryOffsets = (c, n) => c.received('recovery')[n - 1].args[0].offsets;

  /** Waits until the client has seen `n` recovery reports; resolves the last one. */
  async function nthRecovery(c, n) {
    await h.waitUntil(() => recoveries(c).length >= n, `recovery report #${n}`);
    return recoveries(c)[n - 1];
  }

  /** Waits until every id in `ids` has been received by `c`. */
  async function receivedAll(c, ids, timeout = h.TIMEOUT) {
    const want = new Set(ids);
    await h.waitUntil(() => {
      const got = new Set(sequence(c));
      return [...want].every((id) => got.has(id));
    }, `${ids.length} events`, timeout);
  }

  async function ready(c) {
    const { connected, error } = await c.ready;
    if (!connected && c.socket.io.opts.reconnection && error && error.message === 'xhr poll error') {
      // A transport error on the first attempt (seen once in CI, on the first connect of
      // this file): the client retries by itself, as it would for a user. Say what it was.
      const why = error.description && (error.description.message || error.description);
      console.log(`first connect failed (${error.message}: ${why}); waiting for the client's own retry`);
      await h.waitUntil(() => c.socket.connected, 'the client to connect on its retry');
      return c;
    }
    assert.ok(connected, `expected the client to connect, got connect_error: ${error && error.message}`);
    return c;
  }

  const service = (vendorId, extraFields = {}) => ({
    type: 'service:updated',
    service: { id: h.uid('s'), vendorId, status: 'active', ...extraFields },
  });
  const payment = (userId, vendorId) => ({
    type: 'payment:completed',
    payment: { id: h.uid('p'), userId, ...(vendorId ? { vendorId } : {}), amount: 100 },
  });

  /** POSTs each event in turn (each 202 before the next); resolves their ids. */
  async function emitAll(target, events) {
    const ids = [];
    for (const event of events) ids.push((await h.emitEvent(target, event)).id);
    return ids;
  }

  function assertNoDuplicates(c) {
    const ids = sequence(c).filter((x) => x !== 'recovery');
    const twice = ids.filter((id, i) => ids.indexOf(id) !== i);
    assert.deepEqual(twice, [], 'events received more than once');
  }

  describe('recovery after being away', () => {
    it('a client whose transport dropped gets the events it missed replayed in order, once, then recovery, then live events', async () => {
      const userId = h.uid('u');
      const vendorId = h.uid('v');
      // Reconnection by the client itself, late enough that the missed events are all
      // accepted while it is away.
      const c = recipe(server, h.userToken(userId), {
        reconnection: true,
        reconnectionDelay: 2000,
        reconnectionDelayMax: 2000,
        randomizationFactor: 0,
      });
      await ready(c);
      await nthRecovery(c, 1);

      const before = await emitAll(server, [h.bookingEvent(userId, vendorId), payment(userId)]);
      await receivedAll(c, before);

      const reasons = [];
      c.socket.on('disconnect', (reason) => reasons.push(reason));
      c.socket.io.engine.close();
      await h.waitUntil(() => reasons.length === 1, 'the disconnect');
      // The client closed its own transport: "forced close"; it reconnects by itself.

      const missed = await emitAll(server, [
        h.bookingEvent(userId, vendorId),
        payment(userId, vendorId),
        h.bookingEvent(userId, h.uid('v')),
        { type: 'booking:created', booking: { id: h.uid('b'), userId, vendorId, status: 'pending' } },
        payment(userId),
      ]);
      assert.equal(c.socket.connected, false, 'the client reconnected before the missed events were all accepted');

      const report = await nthRecovery(c, 2);
      assert.deepEqual(report, { recovered: true, replayed: missed.length, rooms: { [`user:${userId}`]: 'recovered' } });

      const after = await emitAll(server, [h.bookingEvent(userId, vendorId), payment(userId)]);
      await receivedAll(c, after);
      await h.sleep(h.QUIET);
      assert.deepEqual(sequence(c), ['recovery', ...before, ...missed, 'recovery', ...after]);
      assert.equal(reasons.length, 1, `one disconnect only, got ${JSON.stringify(reasons)}`);
      assert.equal(c.socket.connected, true);
      // The recipe's offsets follow the last event received in the user's room.
      const last = c.received('payment:completed').at(-1).args[0];
      assert.equal(last.id, after[1]);
      assert.equal(c.offsets[`user:${userId}`], last.offsets[`user:${userId}`]);
    });

    it('a vendor socket in both rooms of a booking gets a missed booking once in the replay, in order with its other rooms\' events', async () => {
      const sub = h.uid('x');
      const vendorId = h.uid('v');
      const c = recipe(server, h.vendorToken(sub, vendorId));
      await ready(c);
      await nthRecovery(c, 1);
      const [first] = await emitAll(server, [h.bookingEvent(sub, vendorId)]);
      await receivedAll(c, [first]);
      const env = c.received('booking:status_changed')[0].args[0];
      assert.deepEqual(Object.keys(env.offsets).sort(), [`user:${sub}`, `vendor:${vendorId}`]);
      assert.notEqual(env.offsets[`user:${sub}`], env.offsets[`vendor:${vendorId}`], 'a position names its room');

      c.socket.disconnect();
      const missed = await emitAll(server, [
        h.bookingEvent(sub, vendorId), // both rooms
        service(vendorId), // vendor room only
        payment(sub), // user room only
        payment(sub, vendorId), // both rooms
        h.bookingEvent(sub, vendorId), // both rooms
      ]);
      c.socket.connect();
      const report = await nthRecovery(c, 2);
      assert.deepEqual(report, {
        recovered: true,
        replayed: missed.length,
        rooms: { [`user:${sub}`]: 'recovered', [`vendor:${vendorId}`]: 'recovered' },
      });
      const live = await emitAll(server, [h.bookingEvent(sub, vendorId)]);
      await receivedAll(c, live);
      await h.sleep(h.QUIET);
      assert.deepEqual(sequence(c), ['recovery', first, ...missed, 'recovery', ...live]);
    });

    it('a chat:message sent while the recipient was away carries offsets and is replayed once', async () => {
      const userId = h.uid('u');
      const vendorId = h.uid('v');
      const vendor = recipe(server, h.vendorToken(h.uid('vs'), vendorId));
      await ready(vendor);
      await nthRecovery(vendor, 1);
      const user = await h.connect(server, { token: h.userToken(userId) });
      const [first] = await emitAll(server, [service(vendorId)]);
      await receivedAll(vendor, [first]);

      vendor.socket.disconnect();
      const ack = await user.ack('chat:send', { to: { type: 'vendor', id: vendorId }, text: 'are you there?', clientMsgId: h.uid('m') });
      assert.equal(ack.ok, true, JSON.stringify(ack));
      vendor.socket.connect();
      const report = await nthRecovery(vendor, 2);
      // Both own rooms are named: the first report gave the user room a position too.
      assert.deepEqual(report.rooms[`vendor:${vendorId}`], 'recovered');
      assert.deepEqual(report, { recovered: true, replayed: 1, rooms: { ...report.rooms, [`vendor:${vendorId}`]: 'recovered' } });
      await h.sleep(h.QUIET);
      assert.deepEqual(sequence(vendor), ['recovery', first, ack.message.id, 'recovery']);
      const msg = vendor.received('chat:message')[0].args[0];
      assert.equal(msg.text, 'are you there?');
      // Sent to the vendor's room and to the sender's other sockets (its user room).
      assert.deepEqual(Object.keys(msg.offsets).sort(), [`user:${userId}`, `vendor:${vendorId}`]);
      assert.equal(typeof msg.offsets[`vendor:${vendorId}`], 'string');
    });
  });

  describe('what cannot be recovered is reported', () => {
    it('a position older than the history holds (HISTORY_SIZE=3) is expired; the other room still recovers; live events follow once', async () => {
      const small = await startExtra({ HISTORY_SIZE: '3' });
      const sub = h.uid('x');
      const vendorId = h.uid('v');
      const c = recipe(small, h.vendorToken(sub, vendorId));
      await ready(c);
      await nthRecovery(c, 1);
      const [first] = await emitAll(small, [h.bookingEvent(sub, vendorId)]);
      await receivedAll(c, [first]);

      c.socket.disconnect();
      // Redis trims a stream by whole nodes (`MAXLEN ~`, 100 entries a node by default):
      // past a node's worth, the first event is gone there too.
      const pushed = backend === 'memory' ? 5 : 150;
      const serviceIds = await emitAll(small, Array.from({ length: pushed }, () => service(vendorId)));
      const [paid] = await emitAll(small, [payment(sub)]);
      c.socket.connect();
      const report = await nthRecovery(c, 2);
      assert.deepEqual(report.rooms, { [`user:${sub}`]: 'recovered', [`vendor:${vendorId}`]: 'expired' });
      assert.equal(report.recovered, false);

      // What came between the reconnect and the report: the missed payment once, and
      // nothing twice, nothing out of order.
      const seq = sequence(c);
      assert.deepEqual(seq.slice(0, 2), ['recovery', first]);
      const between = seq.slice(2, seq.lastIndexOf('recovery'));
      assert.equal(report.replayed, between.length, `replayed says ${report.replayed}, the socket received ${JSON.stringify(between)}`);
      assert.ok(between.includes(paid), 'the payment missed in the recovered room was replayed');
      const order = [...serviceIds, paid];
      const positions = between.map((id) => order.indexOf(id));
      assert.ok(positions.every((p) => p >= 0), `unexpected replayed events ${JSON.stringify(between)}`);
      assert.deepEqual(positions, [...positions].sort((a, b) => a - b), 'replay out of order');

      const live = await emitAll(small, [service(vendorId), h.bookingEvent(sub, vendorId)]);
      await receivedAll(c, live);
      await h.sleep(h.QUIET);
      assert.deepEqual(sequence(c).slice(-3), ['recovery', ...live]);
      assertNoDuplicates(c);
      assert.equal(c.socket.connected, true);
    });

    it('malformed positions, a position of another room and one of another instance are unknown; foreign rooms are ignored; live events follow once', async () => {
      const sub = h.uid('x');
      const vendorId = h.uid('v');
      // Real positions of both rooms from the file's server.
      const probe = recipe(server, h.vendorToken(sub, vendorId));
      await ready(probe);
      const [first] = await emitAll(server, [h.bookingEvent(sub, vendorId)]);
      await receivedAll(probe, [first]);
      const real = { ...probe.offsets };
      probe.close();
      const userPos = real[`user:${sub}`];
      const vendorPos = real[`vendor:${vendorId}`];
      assert.equal(typeof userPos, 'string');
      assert.equal(typeof vendorPos, 'string');

      const other = await startOtherHistory();
      const cases = [
        // [server, offsets sent, what the report must say for user:<sub>, vendor:<vendorId>]
        [server, { [`user:${sub}`]: 'garbage', [`vendor:${vendorId}`]: '' }, 'garbage and empty'],
        [server, { [`user:${sub}`]: vendorPos, [`vendor:${vendorId}`]: userPos }, 'positions swapped between rooms'],
        [server, { [`user:${sub}`]: userPos.slice(0, -1), [`vendor:${vendorId}`]: `${vendorPos}0` }, 'truncated and extended'],
        [other, { [`user:${sub}`]: userPos, [`vendor:${vendorId}`]: vendorPos, 'user:stranger': userPos }, 'positions of another instance'],
      ];
      for (const [target, offsets, what] of cases) {
        const c = recipe(target, h.vendorToken(sub, vendorId), { offsets: { ...offsets } });
        await ready(c);
        const report = await nthRecovery(c, 1);
        assert.deepEqual(
          report,
          { recovered: false, replayed: 0, rooms: { [`user:${sub}`]: 'unknown', [`vendor:${vendorId}`]: 'unknown' } },
          what,
        );
        const live = await emitAll(target, [h.bookingEvent(sub, vendorId), service(vendorId), payment(sub)]);
        await receivedAll(c, live);
        await h.sleep(h.QUIET);
        assert.deepEqual(sequence(c), ['recovery', ...live], what);
        c.close();
      }
    });
  });

  describe('the recovery report is sent only when asked for', () => {
    it('a client connecting without auth.offsets gets no recovery event', async () => {
      const userId = h.uid('u');
      const c = await h.connect(server, { token: h.userToken(userId) });
      const live = await emitAll(server, [h.bookingEvent(userId, h.uid('v'))]);
      await receivedAll(c, live);
      await h.expectNothing(c, 'recovery');
      assert.deepEqual(sequence(c), live);
    });

    it('offsets: {} (and offsets naming only foreign rooms) get recovery { recovered: true, replayed: 0, rooms: {} } once', async () => {
      const userId = h.uid('u');
      const stranger = h.uid('u');
      const probe = recipe(server, h.userToken(stranger));
      await ready(probe);
      await receivedAll(probe, await emitAll(server, [payment(stranger)]));
      const foreign = { ...probe.offsets };

      for (const offsets of [{}, foreign]) {
        const c = h.client(server, { auth: { token: h.userToken(userId), offsets } });
        await ready(c);
        const report = await nthRecovery(c, 1);
        assert.deepEqual(report, { recovered: true, replayed: 0, rooms: {} }, JSON.stringify(offsets));
        await h.sleep(h.QUIET);
        assert.equal(recoveries(c).length, 1, 'one recovery report per connection');
        c.close();
      }
    });
  });

  describe('rooms that sent nothing yet', () => {
    it('the recovery report gives a position in every own room, so a room with no event yet is recovered too', async () => {
      const sub = h.uid('vs');
      const vendorId = h.uid('v');
      const c = recipe(server, h.vendorToken(sub, vendorId), { reconnectionDelay: 100, reconnectionDelayMax: 100 });
      await ready(c);
      await nthRecovery(c, 1);
      assert.deepEqual(Object.keys(recoveryOffsets(c, 1)).sort(), [`user:${sub}`, `vendor:${vendorId}`].sort());
      // Away before any event reached it: the only positions it has are the report's.
      c.socket.disconnect();
      const missed = await emitAll(server, [service(vendorId), payment(sub), h.bookingEvent(sub, vendorId)]);
      c.socket.connect();
      const report = await nthRecovery(c, 2);
      assert.deepEqual(report, {
        recovered: true,
        replayed: 3,
        rooms: { [`user:${sub}`]: 'recovered', [`vendor:${vendorId}`]: 'recovered' },
      });
      await h.sleep(h.QUIET);
      assert.deepEqual(sequence(c), ['recovery', ...missed, 'recovery']);
    });
  });

  describe('a socket that cannot keep up', () => {
    for (const transports of [['websocket'], ['polling']]) {
      it(`whose queue fills (${transports}) is dropped at the transport, reconnects by itself and recovers every event once, in order`, async () => {
        const small = await startExtra({ SOCKET_BUFFER_PACKETS: '8' });
        const vendorId = h.uid('v');
        const c = recipe(small, h.vendorToken(h.uid('vs'), vendorId), {
          transports,
          reconnection: true,
          reconnectionDelay: 100,
          reconnectionDelayMax: 200,
        });
        const reasons = [];
        c.socket.on('disconnect', (reason) => reasons.push(reason));
        await ready(c);
        await nthRecovery(c, 1);
        const events = Array.from({ length: 300 }, (_, i) => service(vendorId, { n: i }));
        const res = await fetch(`${small.url}/api/v1/events/batch`, {
          method: 'POST',
          headers: { authorization: `Bearer ${h.API_TOKEN}`, 'content-type': 'application/json' },
          body: JSON.stringify({ events }),
        });
        assert.equal(res.status, 202);
        const ids = (await res.json()).events.map((e) => e.id);
        await receivedAll(c, ids, 30000);
        await h.sleep(h.QUIET);
        assert.ok(reasons.length >= 1, 'the socket was never dropped: the queue of 8 cannot hold 300 events');
        assert.ok(!reasons.includes('io server disconnect'), `told not to reconnect: ${reasons}`);
        assert.deepEqual(sequence(c).filter((x) => x !== 'recovery'), ids, 'every event once, in order');
        assert.ok(recoveries(c).slice(1).every((r) => r.recovered), JSON.stringify(recoveries(c)));
        assert.equal(c.socket.connected, true);
        const metrics = await (await fetch(`${small.url}/metrics`)).text();
        assert.match(metrics, /fixrx_delivery_disconnects_total\{reason="queue_full"\} [1-9]/);
      });
    }
  });

  describe('volume', () => {
    it('a 500-event batch to one vendor reaches sockets that read normally (websocket, polling) whole, in order, without a disconnect', async () => {
      const vendorId = h.uid('v');
      const sockets = [
        await h.connect(server, { token: h.vendorToken(h.uid('vs'), vendorId), transports: ['websocket'] }),
        await h.connect(server, { token: h.vendorToken(h.uid('vs'), vendorId), transports: ['polling'] }),
      ];
      const disconnects = sockets.map(() => []);
      sockets.forEach((c, i) => c.socket.on('disconnect', (reason) => disconnects[i].push(reason)));
      const events = Array.from({ length: 500 }, (_, i) => service(vendorId, { n: i }));
      const res = await fetch(`${server.url}/api/v1/events/batch`, {
        method: 'POST',
        headers: { authorization: `Bearer ${h.API_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ events }),
        signal: AbortSignal.timeout(15000),
      });
      const body = await res.json();
      assert.equal(res.status, 202, JSON.stringify(body));
      assert.equal(body.events.length, 500);
      const ids = body.events.map((e) => e.id);
      for (const [i, c] of sockets.entries()) {
        await h.waitUntil(() => c.received('service:updated').length >= 500 || disconnects[i].length > 0, '500 events', 30000);
      }
      await h.sleep(h.QUIET);
      for (const [i, c] of sockets.entries()) {
        const name = c.socket.io.opts.transports.join(',');
        assert.deepEqual(disconnects[i], [], `${name}: disconnected`);
        const got = c.received('service:updated').map((e) => e.args[0]);
        assert.equal(got.length, 500, `${name}: received ${got.length} events`);
        assert.deepEqual(got.map((e) => e.id), ids, `${name}: not the batch in order`);
        assert.deepEqual(got.map((e) => e.service.n), events.map((e) => e.service.n));
        assert.equal(c.socket.connected, true);
      }
    });
  });

  describe('HISTORY_ENABLED=false', () => {
    it('events carry no offsets and every room named in auth.offsets is unknown', async () => {
      const off = await startExtra({ HISTORY_ENABLED: 'false' });
      const sub = h.uid('x');
      const vendorId = h.uid('v');
      // A real position, from the file's server.
      const probe = recipe(server, h.userToken(sub));
      await ready(probe);
      await receivedAll(probe, await emitAll(server, [payment(sub)]));
      const offsets = { [`user:${sub}`]: probe.offsets[`user:${sub}`], [`vendor:${vendorId}`]: 'garbage' };

      const c = recipe(off, h.vendorToken(sub, vendorId), { offsets });
      await ready(c);
      const report = await nthRecovery(c, 1);
      assert.deepEqual(report, {
        recovered: false,
        replayed: 0,
        rooms: { [`user:${sub}`]: 'unknown', [`vendor:${vendorId}`]: 'unknown' },
      });
      assert.equal(recoveryOffsets(c, 1), undefined, 'no positions without a history');
      // Nothing named: still not recovered, since nothing is kept.
      const bare = recipe(off, h.userToken(h.uid('u')));
      await ready(bare);
      assert.equal((await nthRecovery(bare, 1)).recovered, false);
      const live = await emitAll(off, [h.bookingEvent(sub, vendorId), service(vendorId), payment(sub)]);
      await receivedAll(c, live);
      await h.sleep(h.QUIET);
      assert.deepEqual(sequence(c), ['recovery', ...live]);
      for (const e of c.events.filter((x) => CATALOG.test(x.event))) {
        assert.equal('offsets' in e.args[0], false, `${e.event} carries offsets with history off`);
      }
    });
  });
}

module.exports = { recoverySuite };
