'use strict';
// Contract section 7 under churn, shared by the chaos suites: instances sharing one Redis
// or a Redis Cluster, a dozen clients using the contract's recipe. A driver posts events
// one after the other (each 202 before the next, so acceptance order is post order)
// round-robin to the instances, while clients drop their transport or move to another
// instance. At the end every client has received exactly the events of its rooms: none
// lost, none twice, each room in post order, and every recovery report said recovered.
// Seeded: CHAOS_SEED=<n> replays the same random draws (events, targets, disturbances);
// the timing of deliveries still varies per run.

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { io } = require('socket.io-client');
const h = require('./helpers');

/** The run's seed: CHAOS_SEED, or a fresh one (printed, to replay a failure). */
function chaosSeed() {
  const seed = process.env.CHAOS_SEED ? Number(process.env.CHAOS_SEED) : crypto.randomInt(1, 2 ** 31);
  assert.ok(Number.isInteger(seed), `CHAOS_SEED must be an integer, got ${process.env.CHAOS_SEED}`);
  console.log(`chaos seed ${seed} (rerun with CHAOS_SEED=${seed})`);
  return seed;
}

/** mulberry32: a small seeded PRNG, so that a seed names one run's choices. */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const USERS = 6;
const VENDORS = 6;
const POSTS = 300;
/** Per post, the chance that the driver disturbs a client first. */
const CHAOS_RATE = 0.25;
const SETTLE = 15000;
const CATALOG = /^(service|booking|payment):/;

/** Starts a server, once more if the first start fails (the binary may be rebuilt under us). */
async function startInstance(env) {
  try {
    return await h.startServer(env);
  } catch (err) {
    console.log(`instance start failed once, retrying: ${err.message.split('\n')[0]}`);
    await h.sleep(2000);
    return h.startServer(env);
  }
}

/**
 * One app user: its token, its rooms, the recipe's offsets, and everything received
 * over all its connections, in arrival order.
 */
class Participant {
  constructor(run, name, tok, rooms) {
    this.run = run;
    this.name = name;
    this.token = tok;
    this.rooms = rooms;
    this.offsets = {};
    this.ids = [];
    this.recoveries = [];
    this.connects = 0;
    this.awaitingRecovery = false;
    this.drops = 0;
    this.moves = 0;
    this.disconnectReasons = {};
    this.connectErrors = [];
    this.socket = null;
    this.instance = null;
  }

  open(instance) {
    this.instance = instance;
    const transports = this.run.rand() < 0.5 ? ['websocket'] : ['polling', 'websocket'];
    const socket = io(this.run.servers[instance].url, {
      forceNew: true,
      transports,
      timeout: h.TIMEOUT,
      reconnectionDelay: 50,
      reconnectionDelayMax: 300,
      auth: (cb) => cb({ token: this.token, offsets: this.offsets }),
    });
    socket.on('connect', () => {
      this.connects += 1;
      this.awaitingRecovery = true;
    });
    socket.on('connect_error', (err) => this.connectErrors.push(err.message));
    socket.on('disconnect', (reason) => {
      this.disconnectReasons[reason] = (this.disconnectReasons[reason] || 0) + 1;
    });
    socket.onAny((event, payload) => {
      if (payload && payload.offsets) Object.assign(this.offsets, payload.offsets);
      if (event === 'recovery') {
        this.recoveries.push(payload);
        this.awaitingRecovery = false;
      } else if (CATALOG.test(event)) {
        this.ids.push(payload.id);
      }
    });
    this.socket = socket;
  }

  /** The transport drops; the client reconnects by itself, re-reading `auth`. */
  drop() {
    if (!this.socket.connected) return false;
    this.drops += 1;
    this.socket.io.engine.close();
    return true;
  }

  /** The app closes this connection and opens one to another instance, same offsets. */
  move() {
    this.moves += 1;
    this.socket.disconnect();
    const others = [...this.run.servers.keys()].filter((i) => i !== this.instance);
    this.open(this.run.pick(others));
  }

  close() {
    if (this.socket) this.socket.disconnect();
  }

  get settled() {
    return this.socket.connected && !this.awaitingRecovery;
  }
}

/** What a participant's received ids lack, repeat or misorder against `expected`. */
function audit(p, expectedIds, byRoom, perRoom = false) {
  const want = new Set(expectedIds);
  const got = new Set(p.ids);
  const lost = expectedIds.filter((id) => !got.has(id));
  const duplicated = p.ids.length - got.size;
  const unexpected = [...got].filter((id) => !want.has(id));
  let outOfOrder = 0;
  // With `perRoom` (the order a socket whose rooms live in two history partitions is
  // promised), an event sent to several of the socket's rooms is ranked among the
  // others of that kind only, and each room's own events among themselves.
  const groups = perRoom ? [...p.rooms.map((r) => [r]), p.rooms] : p.rooms.map((r) => [r]);
  for (const group of groups) {
    const ids = perRoom
      ? [...new Set(group.flatMap((r) => byRoom.get(r) || []))].filter((id) => sharedBy(id, p.rooms, byRoom) === group.length)
      : byRoom.get(group[0]) || [];
    const order = perRoom ? expectedIds.filter((id) => ids.includes(id)) : ids;
    const rank = new Map(order.map((id, i) => [id, i]));
    const seen = new Set();
    let last = -1;
    for (const id of p.ids) {
      if (!rank.has(id) || seen.has(id)) continue;
      seen.add(id);
      if (rank.get(id) < last) outOfOrder += 1;
      last = Math.max(last, rank.get(id));
    }
  }
  return { lost, duplicated, unexpected, outOfOrder };
}

/** How many of `rooms` the event `id` was sent to. */
function sharedBy(id, rooms, byRoom) {
  return rooms.filter((r) => (byRoom.get(r) || []).includes(id)).length;
}

/**
 * One chaos run against `servers` (started), seeded with `seed`. `midway`, if given, runs
 * half-way through the posts (a fault) and returns a line for the report; with
 * `tolerate503` a post answered 503 is retried with the same id until accepted; with
 * `vendorIsSub` each vendor account's `vendorId` is its `sub`; with `perRoom` the order is
 * audited per room (see `audit`); with `batches` about one post in eight is a batch of two
 * to five events (with the history in partitions, most span several of them), retried
 * whole with the same ids when answered 503.
 * Participants are pushed to `participants` so that the caller closes them.
 */
async function runChaos(t, { servers, seed, label, participants, midway = null, tolerate503 = false, vendorIsSub = false, perRoom = false, batches = false }) {
  const SEED = seed;
  const rand = prng(seed);
  const pick = (list) => list[Math.floor(rand() * list.length)];
  const run = { servers, rand, pick };
  let unavailable = 0;
  const t0 = Date.now();
  const users = Array.from({ length: USERS }, () => h.uid('cu'));
  // A vendor's `vendorId` is its own `sub` (the default), or another id (a vendor's staff).
  const vendors = Array.from({ length: VENDORS }, () => {
    const sub = h.uid('cx');
    return { sub, vendorId: vendorIsSub ? sub : h.uid('cv') };
  });
  for (const [i, userId] of users.entries()) {
    participants.push(new Participant(run, `user${i}`, h.userToken(userId), [`user:${userId}`]));
  }
  for (const [i, v] of vendors.entries()) {
    participants.push(new Participant(run, `vendor${i}`, h.vendorToken(v.sub, v.vendorId), [`user:${v.sub}`, `vendor:${v.vendorId}`]));
  }
  participants.forEach((p, i) => p.open(i % servers.length));
  await h.waitUntil(() => participants.every((p) => p.settled), 'every client connected with its first recovery report');

  // Posts, in acceptance order: { id, rooms }.
  const posted = [];
  let instanceTurn = 0;
  async function post(event, rooms) {
    const target = servers[instanceTurn % servers.length];
    instanceTurn += 1;
    const keyed = { ...event, id: h.uid('chaos') };
    let res = await h.postEvent(target, keyed);
    // Through a failover, `503` means "retry with the same id": the contract's recipe.
    const until = Date.now() + 30000;
    while (tolerate503 && res.status === 503 && Date.now() < until) {
      unavailable += 1;
      await h.sleep(100);
      res = await h.postEvent(servers[(instanceTurn += 1) % servers.length], keyed);
    }
    assert.equal(res.status, 202, `post #${posted.length} to ${target.url} answered ${res.status}: ${JSON.stringify(res.body)} (seed ${SEED})`);
    assert.deepEqual([...res.body.rooms].sort(), [...rooms].sort(), `rooms of post #${posted.length} (seed ${SEED})`);
    posted.push({ id: res.body.id, rooms });
  }

  // A batch: `202` with each event's id and rooms, in order, or (through a failover) 503
  // and a retry of the whole batch with the same ids, which completes what is missing.
  async function postBatch(list) {
    const events = list.map(([event]) => ({ ...event, id: h.uid('chaos') }));
    const send = (target) => fetch(`${target.url}/api/v1/events/batch`, {
      method: 'POST',
      headers: { authorization: `Bearer ${h.API_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ events }),
      signal: AbortSignal.timeout(h.TIMEOUT),
    });
    let res = await send(servers[(instanceTurn += 1) % servers.length]);
    const until = Date.now() + 30000;
    while (tolerate503 && res.status === 503 && Date.now() < until) {
      unavailable += 1;
      await h.sleep(100);
      res = await send(servers[(instanceTurn += 1) % servers.length]);
    }
    const body = await res.json();
    assert.equal(res.status, 202, `batch after post #${posted.length} answered ${res.status}: ${JSON.stringify(body)} (seed ${SEED})`);
    body.events.forEach((answered, i) => {
      assert.equal(answered.id, events[i].id, `batch event ${i} (seed ${SEED})`);
      assert.deepEqual([...answered.rooms].sort(), [...list[i][1]].sort(), `rooms of batch event ${i} (seed ${SEED})`);
      posted.push({ id: answered.id, rooms: list[i][1] });
    });
  }

  // Warm-up: one event in each room, so that every client holds a position for each
  // of its rooms before anything is disturbed (a room without a position is not named
  // in auth.offsets, and so rightly not recovered).
  for (const userId of users) {
    await post({ type: 'payment:completed', payment: { id: h.uid('p'), userId, amount: 1 } }, [`user:${userId}`]);
  }
  for (const v of vendors) await post(h.bookingEvent(v.sub, v.vendorId), [`user:${v.sub}`, `vendor:${v.vendorId}`]);
  const warmIds = new Set(posted.map((e) => e.id));
  await h.waitUntil(
    () => participants.every((p) => p.ids.some((id) => warmIds.has(id)) && p.rooms.every((r) => p.offsets[r])),
    'every client to hold a position in each of its rooms',
  );

  const userIds = users.concat(vendors.map((v) => v.sub));
  const randomEvent = () => {
    const r = rand();
    if (r < 0.2) {
      // A booking to both rooms of one vendor socket.
      const v = pick(vendors);
      return [h.bookingEvent(v.sub, v.vendorId), [`user:${v.sub}`, `vendor:${v.vendorId}`]];
    }
    if (r < 0.5) {
      const userId = pick(userIds);
      const vendorId = pick(vendors).vendorId;
      const type = pick(['booking:created', 'booking:status_changed', 'booking:cancelled']);
      const booking = { id: h.uid('b'), userId, vendorId, status: 'x' };
      return [{ type, booking }, [`user:${userId}`, `vendor:${vendorId}`]];
    }
    if (r < 0.75) {
      const vendorId = pick(vendors).vendorId;
      const type = pick(['service:created', 'service:updated', 'service:status_changed']);
      return [{ type, service: { id: h.uid('s'), vendorId } }, [`vendor:${vendorId}`]];
    }
    const userId = pick(userIds);
    const vendorId = rand() < 0.5 ? pick(vendors).vendorId : null;
    const payment = { id: h.uid('p'), userId, amount: 5, ...(vendorId ? { vendorId } : {}) };
    return [{ type: pick(['payment:completed', 'payment:failed']), payment }, vendorId ? [`user:${userId}`, `vendor:${vendorId}`] : [`user:${userId}`]];
  };

  let drops = 0;
  let moves = 0;
  const tDrive = Date.now();
  for (let i = 0; i < POSTS; i += 1) {
    if (midway && i === POSTS / 2) t.diagnostic(await midway());
    if (rand() < CHAOS_RATE) {
      // Now and then, strike a client that is still reconnecting or replaying.
      const busy = participants.filter((x) => !x.settled);
      const strikeBusy = rand() < 0.3;
      const p = busy.length && strikeBusy ? pick(busy) : pick(participants);
      if (rand() < 0.6) {
        if (p.drop()) drops += 1;
      } else {
        p.move();
        moves += 1;
      }
      // Sometimes let the disturbance race with deliveries already under way.
      if (rand() < 0.3) await h.sleep(Math.floor(rand() * 40));
    }
    if (batches && rand() < 0.125) {
      await postBatch(Array.from({ length: 2 + Math.floor(rand() * 4) }, randomEvent));
      continue;
    }
    const [event, rooms] = randomEvent();
    await post(event, rooms);
  }
  const driveMs = Date.now() - tDrive;

  // Expected, per room and per client, in acceptance order.
  const byRoom = new Map();
  for (const e of posted) for (const room of e.rooms) byRoom.set(room, (byRoom.get(room) || []).concat(e.id));
  const expectedOf = (p) => posted.filter((e) => e.rooms.some((r) => p.rooms.includes(r))).map((e) => e.id);

  const tSettle = Date.now();
  try {
    await h.waitUntil(
      () => participants.every((p) => p.settled && expectedOf(p).every((id) => p.ids.includes(id))),
      'every client to receive its events',
      SETTLE,
    );
  } catch {
    // Report what is missing below rather than only a timeout.
  }
  await h.sleep(500);
  const settleMs = Date.now() - tSettle;

  let totals = { expected: 0, received: 0, lost: 0, duplicated: 0, unexpected: 0, outOfOrder: 0 };
  const failures = [];
  const lines = [];
  for (const p of participants) {
    const expected = expectedOf(p);
    const a = audit(p, expected, byRoom, perRoom);
    totals = {
      expected: totals.expected + expected.length,
      received: totals.received + p.ids.length,
      lost: totals.lost + a.lost.length,
      duplicated: totals.duplicated + a.duplicated,
      unexpected: totals.unexpected + a.unexpected.length,
      outOfOrder: totals.outOfOrder + a.outOfOrder,
    };
    const line =
      `${p.name}: expected ${expected.length}, received ${p.ids.length}, lost ${a.lost.length}, ` +
      `duplicated ${a.duplicated}, unexpected ${a.unexpected.length}, out of order ${a.outOfOrder}; ` +
      `connects ${p.connects}, recoveries ${p.recoveries.length}, drops ${p.drops}, moves ${p.moves}, ` +
      `on instance ${p.instance}, disconnects ${JSON.stringify(p.disconnectReasons)}` +
      (p.connectErrors.length ? `, connect errors ${JSON.stringify(p.connectErrors.slice(0, 3))}` : '');
    lines.push(line);
    if (a.lost.length || a.duplicated || a.unexpected.length || a.outOfOrder) {
      failures.push(`${line}; first lost ${JSON.stringify(a.lost.slice(0, 3))}`);
    }
  }
  const allRecoveries = participants.flatMap((p) => p.recoveries.map((r) => ({ who: p.name, r })));
  const notRecovered = allRecoveries.filter(({ r }) => !r || r.recovered !== true);
  const summary =
    `${label}, seed ${SEED}: ${posted.length} events posted in ${driveMs} ms (${drops} drops, ${moves} moves, ${unavailable} answers 503 retried), settled in ${settleMs} ms, ` +
    `total ${Date.now() - t0} ms; expected ${totals.expected} deliveries, received ${totals.received}, lost ${totals.lost}, ` +
    `duplicated ${totals.duplicated}, unexpected ${totals.unexpected}, out of order ${totals.outOfOrder}; ` +
    `${allRecoveries.length} recovery reports, ${notRecovered.length} not recovered`;
  console.log(summary);
  t.diagnostic(summary);
  for (const line of lines) t.diagnostic(line);

  assert.ok(drops + moves > 0, `the run disturbed nobody (seed ${SEED})`);
  assert.deepEqual(failures, [], `deliveries wrong (seed ${SEED})`);
  assert.deepEqual(
    notRecovered.map(({ who, r }) => `${who}: ${JSON.stringify(r)}`),
    [],
    `recovery reports that did not recover (seed ${SEED})`,
  );
  for (const p of participants) {
    assert.ok(p.socket.connected, `${p.name} is not connected at the end (seed ${SEED})`);
    assert.equal(p.awaitingRecovery, false, `${p.name}'s last connection got no recovery report (seed ${SEED})`);
    assert.ok(p.recoveries.length <= p.connects, `${p.name}: ${p.recoveries.length} recovery reports for ${p.connects} connections`);
  }
}

module.exports = { runChaos, chaosSeed, startInstance };
