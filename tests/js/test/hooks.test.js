'use strict';
// Backend hooks on one instance: presence webhooks (online, offline after the grace,
// nothing for a quick return, retries with the same id, in order) and the chat hook
// (accepted, rejected, failing) on both chat paths, against a real receiver that checks
// every signature.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');
const { startReceiver, WEBHOOK_SECRET } = require('./receiver');

const GRACE_MS = 1000;

/** Every request the receiver got carries a valid signature. */
function assertAllSigned(receiver) {
  assert.ok(receiver.requests.length > 0, 'the receiver got nothing');
  for (const r of receiver.requests) {
    assert.equal(r.valid, true, `a request with a bad signature: ${JSON.stringify(r.headers)}`);
    assert.equal(r.method, 'POST');
    assert.match(r.headers['content-type'], /^application\/json/);
    const age = Math.abs(Date.now() / 1000 - Number(r.headers['x-webhook-timestamp']));
    assert.ok(age < 60, `timestamp ${r.headers['x-webhook-timestamp']} is not now`);
  }
}

/** Waits for the `n`-th (1-based) webhook for `who`; returns the list so far. */
async function nthWebhook(receiver, who, n, timeout = h.TIMEOUT) {
  await h.waitUntil(() => receiver.presence(who).length >= n, `webhook #${n} for ${who}`, timeout);
  return receiver.presence(who);
}

async function assertNoMoreWebhooks(receiver, who, count, ms) {
  await h.sleep(ms);
  const got = receiver.presence(who);
  assert.equal(got.length, count, `unexpected webhooks for ${who}: ${JSON.stringify(got.map((r) => r.body))}`);
}

async function metric(server, line) {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const found = text.split('\n').find((l) => l.startsWith(line));
  return found ? Number(found.slice(found.lastIndexOf(' ') + 1)) : 0;
}

describe('presence webhooks on one instance', () => {
  let server;
  let receiver;
  // Per identity, the statuses to answer before succeeding (to exercise retries).
  const failFirst = new Map();
  before(async () => {
    receiver = await startReceiver((req) => {
      const who = req.body && req.body.data ? `${req.body.data.type}:${req.body.data.id}` : '';
      const left = failFirst.get(who) || [];
      if (left.length > 0) return { status: left.shift() };
      return { status: 204 };
    });
    server = await h.startServer({
      WEBHOOK_URL: receiver.url,
      WEBHOOK_SECRET,
      PRESENCE_OFFLINE_GRACE_MS: String(GRACE_MS),
      WEBHOOK_TIMEOUT_MS: '1000',
    });
  });
  afterEach(() => h.closeAll());
  after(async () => {
    h.closeAll();
    if (server) await server.stop();
    if (receiver) await receiver.close();
  });

  it('sends online for the first socket, nothing for the second, offline only after the grace', async () => {
    const id = h.uid('u');
    const who = `user:${id}`;
    const first = await h.connect(server, { token: h.userToken(id) });
    const [online] = await nthWebhook(receiver, who, 1);
    assert.equal(online.body.type, 'presence.online');
    assert.deepEqual(online.body.data, { type: 'user', id });
    assert.equal(typeof online.body.id, 'string');
    assert.ok(Math.abs(h.assertRfc3339(online.body.occurredAt, 'occurredAt') - online.at) < 2000);

    const second = await h.connect(server, { token: h.userToken(id) });
    first.close();
    // One socket is still there: nothing, even well past the grace.
    await assertNoMoreWebhooks(receiver, who, 1, GRACE_MS + 700);

    const closedAt = Date.now();
    second.close();
    await assertNoMoreWebhooks(receiver, who, 1, GRACE_MS - 300);
    const list = await nthWebhook(receiver, who, 2, GRACE_MS + 3000);
    const offline = list[1];
    assert.equal(offline.body.type, 'presence.offline');
    assert.deepEqual(offline.body.data, { type: 'user', id });
    assert.notEqual(offline.body.id, online.body.id);
    assert.ok(offline.at - closedAt >= GRACE_MS - 50, `offline came ${offline.at - closedAt} ms after the close`);
    // occurredAt is when the last socket left, not when the grace ran out.
    assert.ok(Math.abs(h.assertRfc3339(offline.body.occurredAt) - closedAt) < 500, offline.body.occurredAt);
    await assertNoMoreWebhooks(receiver, who, 2, 300);
    assertAllSigned(receiver);
  });

  it('sends nothing for a reconnect within the grace (a flapping phone)', async () => {
    const id = h.uid('u');
    const who = `user:${id}`;
    const c = await h.connect(server, { token: h.userToken(id) });
    await nthWebhook(receiver, who, 1);
    for (let i = 0; i < 3; i++) {
      c.socket.disconnect();
      await h.sleep(GRACE_MS / 4);
      c.socket.connect();
      await h.waitUntil(() => c.socket.connected, 'the reconnect');
    }
    await assertNoMoreWebhooks(receiver, who, 1, GRACE_MS + 700);
    c.close();
    const list = await nthWebhook(receiver, who, 2, GRACE_MS + 3000);
    assert.deepEqual(list.map((r) => r.body.type), ['presence.online', 'presence.offline']);
  });

  it('announces a vendor socket as its vendor and as its user', async () => {
    const sub = h.uid('vu');
    const vendorId = h.uid('v');
    const c = await h.connect(server, { token: h.vendorToken(sub, vendorId) });
    const [v] = await nthWebhook(receiver, `vendor:${vendorId}`, 1);
    const [u] = await nthWebhook(receiver, `user:${sub}`, 1);
    assert.equal(v.body.type, 'presence.online');
    assert.equal(u.body.type, 'presence.online');
    c.close();
    await nthWebhook(receiver, `vendor:${vendorId}`, 2, GRACE_MS + 3000);
  });

  it('retries a failed delivery with the same id, and keeps an identity in order', async () => {
    const id = h.uid('u');
    const who = `user:${id}`;
    failFirst.set(who, [500, 503]);
    const retriedBefore = await metric(server, 'fixrx_webhooks_total{outcome="retried"}');
    const c = await h.connect(server, { token: h.userToken(id) });
    // Leaves while its online is still being retried: the offline must wait its turn.
    await h.waitUntil(() => receiver.presence(who).length >= 1, 'the first attempt');
    c.close();
    const list = await nthWebhook(receiver, who, 4, 15000);
    assert.deepEqual(list.map((r) => r.status), [500, 503, 204, 204]);
    assert.deepEqual(list.map((r) => r.body.type), ['presence.online', 'presence.online', 'presence.online', 'presence.offline']);
    assert.equal(new Set(list.slice(0, 3).map((r) => r.body.id)).size, 1, 'retries must carry the same id');
    // Backoff: the retries are spaced (about 1 s, then about 2 s, with jitter).
    assert.ok(list[1].at - list[0].at >= 400, `first retry after ${list[1].at - list[0].at} ms`);
    assert.ok(list[2].at - list[1].at >= 900, `second retry after ${list[2].at - list[1].at} ms`);
    await assertNoMoreWebhooks(receiver, who, 4, 300);
    assert.ok((await metric(server, 'fixrx_webhooks_total{outcome="retried"}')) >= retriedBefore + 2);
    assert.ok((await metric(server, 'fixrx_webhooks_total{outcome="sent"}')) >= 2);
    assertAllSigned(receiver);
  });
});

describe('the chat hook', () => {
  let server;
  let unreachable;
  let receiver;
  before(async () => {
    receiver = await startReceiver((req) => {
      const text = req.body && req.body.message ? req.body.message.text : '';
      if (text.startsWith('reject')) return { status: 422, body: { error: { code: 'policy', message: 'no phone numbers in chat' } } };
      if (text.startsWith('refuse-bare')) return { status: 403 };
      if (text.startsWith('fail')) return { status: 500, body: { error: { message: 'database down' } } };
      if (text.startsWith('slow')) return { status: 200, delayMs: 1500 };
      return { status: 200 };
    });
    // A port that was free a moment ago and has nobody listening: unreachable.
    const closed = await startReceiver();
    const deadUrl = closed.url;
    await closed.close();
    const env = { WEBHOOK_SECRET, CHAT_HOOK_TIMEOUT_MS: '500', SOCKET_RATE_LIMIT: '5', SOCKET_RATE_BURST: '5' };
    server = await h.startServer({ ...env, CHAT_HOOK_URL: receiver.url });
    unreachable = await h.startServer({ ...env, CHAT_HOOK_URL: deadUrl });
  });
  afterEach(() => h.closeAll());
  after(async () => {
    h.closeAll();
    for (const s of [server, unreachable]) if (s) await s.stop();
    if (receiver) await receiver.close();
  });

  async function pair(srv) {
    const userId = h.uid('u');
    const vendorId = h.uid('v');
    const user = await h.connect(srv, { token: h.userToken(userId) });
    const vendor = await h.connect(srv, { token: h.vendorToken(h.uid('vu'), vendorId) });
    return { userId, vendorId, user, vendor };
  }

  async function postChat(srv, body) {
    const res = await fetch(`${srv.url}/api/v1/chat/messages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${h.API_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: await res.json() };
  }

  it('relays a message the backend accepted, after posting it signed', async () => {
    const { userId, vendorId, user, vendor } = await pair(server);
    const clientMsgId = h.uid('m');
    const ack = await user.ack('chat:send', { to: { type: 'vendor', id: vendorId }, text: 'hello', clientMsgId });
    assert.equal(ack.ok, true, JSON.stringify(ack));
    const got = await vendor.waitFor('chat:message', (m) => m.clientMsgId === clientMsgId);
    assert.equal(got.args[0].text, 'hello');
    const asked = receiver.requests.find((r) => r.body && r.body.message && r.body.message.clientMsgId === clientMsgId);
    assert.ok(asked, 'the backend was not asked');
    const m = asked.body.message;
    assert.deepEqual(Object.keys(m).sort(), ['clientMsgId', 'from', 'id', 'sentAt', 'text', 'to']);
    assert.deepEqual(m.from, { type: 'user', id: userId });
    assert.deepEqual(m.to, { type: 'vendor', id: vendorId });
    assert.equal(m.id, ack.message.id);
    h.assertRfc3339(m.sentAt, 'sentAt');
    assert.ok(asked.at <= Date.now());

    const rest = await postChat(server, { from: { type: 'vendor', id: vendorId }, to: { type: 'user', id: userId }, text: 'system: booked' });
    assert.equal(rest.status, 202, JSON.stringify(rest.body));
    await user.waitFor('chat:message', (x) => x.text === 'system: booked');
    assertAllSigned(receiver);
  });

  it('does not relay a rejected message and passes on the backend reason', async () => {
    const { userId, vendorId, user, vendor } = await pair(server);
    const ack = await user.ack('chat:send', { to: { type: 'vendor', id: vendorId }, text: 'reject: call me at 555' });
    assert.deepEqual(ack, { ok: false, error: 'rejected', message: 'no phone numbers in chat' });
    const bare = await user.ack('chat:send', { to: { type: 'vendor', id: vendorId }, text: 'refuse-bare' });
    assert.equal(bare.ok, false);
    assert.equal(bare.error, 'rejected');
    const rest = await postChat(server, { from: { type: 'vendor', id: vendorId }, to: { type: 'user', id: userId }, text: 'reject via rest' });
    assert.equal(rest.status, 422);
    assert.deepEqual(rest.body, { error: { code: 'rejected', message: 'no phone numbers in chat' } });
    await h.expectNothing([user, vendor], 'chat:message');
  });

  it('does not relay when the backend fails or is too slow: unavailable', async () => {
    const { userId, vendorId, user, vendor } = await pair(server);
    for (const text of ['fail now', 'slow answer']) {
      const started = Date.now();
      const ack = await user.ack('chat:send', { to: { type: 'vendor', id: vendorId }, text });
      assert.equal(ack.ok, false, JSON.stringify(ack));
      assert.equal(ack.error, 'unavailable');
      assert.ok(Date.now() - started < 1400, `the ack took ${Date.now() - started} ms (timeout is 500 ms)`);
      const rest = await postChat(server, { from: { type: 'vendor', id: vendorId }, to: { type: 'user', id: userId }, text });
      assert.equal(rest.status, 503, JSON.stringify(rest.body));
      assert.equal(rest.body.error.code, 'unavailable');
      assert.ok(!JSON.stringify(rest.body).includes('database down'), 'the backend detail must not leak');
    }
    // The slow answers arrive after the timeout: still never relayed.
    await h.expectNothing([user, vendor], 'chat:message', () => true, 1500);
  });

  it('does not relay when the backend is unreachable: unavailable', async () => {
    const { userId, vendorId, user, vendor } = await pair(unreachable);
    const ack = await user.ack('chat:send', { to: { type: 'vendor', id: vendorId }, text: 'anyone?' });
    assert.equal(ack.ok, false);
    assert.equal(ack.error, 'unavailable');
    const rest = await postChat(unreachable, { from: { type: 'vendor', id: vendorId }, to: { type: 'user', id: userId }, text: 'anyone?' });
    assert.equal(rest.status, 503);
    await h.expectNothing([user, vendor], 'chat:message');
  });

  it('applies the chat rate limit before the hook: a flood never reaches the backend', async () => {
    const { vendorId, user } = await pair(server);
    const marker = h.uid('flood');
    const acks = await Promise.all(
      Array.from({ length: 40 }, (_, i) => user.ack('chat:send', { to: { type: 'vendor', id: vendorId }, text: `${marker} ${i}` })),
    );
    const limited = acks.filter((a) => a.error === 'rate_limited').length;
    assert.ok(limited >= 30, `only ${limited} of 40 were rate limited`);
    await h.sleep(200);
    const asked = receiver.requests.filter((r) => r.body && r.body.message && r.body.message.text.startsWith(marker)).length;
    assert.equal(asked, 40 - limited, 'every message past the limit must stay away from the backend');
    assert.ok(asked <= 6, `${asked} messages reached the backend`);
  });
});

describe('a dead webhook receiver', () => {
  let server;
  let baseline;
  let receiver;
  before(async () => {
    receiver = await startReceiver(() => 'hang');
    server = await h.startServer({ WEBHOOK_URL: receiver.url, WEBHOOK_SECRET, WEBHOOK_TIMEOUT_MS: '2000', API_RATE_LIMIT: '0' });
    baseline = await h.startServer({ API_RATE_LIMIT: '0' });
  });
  afterEach(() => h.closeAll());
  after(async () => {
    h.closeAll();
    for (const s of [server, baseline]) if (s) await s.stop();
    if (receiver) await receiver.close();
  });

  async function timings(srv, users) {
    const connects = [];
    const clients = [];
    for (const u of users) {
      const t = Date.now();
      clients.push(await h.connect(srv, { token: h.userToken(u) }));
      connects.push(Date.now() - t);
    }
    const rest = [];
    for (let i = 0; i < 100; i++) {
      const t = Date.now();
      await h.emitEvent(srv, h.bookingEvent(users[i % users.length], h.uid('v')));
      rest.push(Date.now() - t);
    }
    await clients[0].waitFor('booking:status_changed');
    for (const c of clients) c.close();
    return { connects, rest };
  }

  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

  it('does not slow sockets or the REST API while every webhook times out', async () => {
    const users = Array.from({ length: 30 }, () => h.uid('u'));
    const dead = await timings(server, users);
    await h.waitUntil(() => receiver.requests.length >= 20, 'webhooks hanging at the receiver');
    const base = await timings(baseline, Array.from({ length: 30 }, () => h.uid('u')));
    console.log(
      `# dead receiver: connect median ${median(dead.connects)} ms, max ${Math.max(...dead.connects)} ms; ` +
        `REST median ${median(dead.rest)} ms, max ${Math.max(...dead.rest)} ms | ` +
        `no webhooks: connect median ${median(base.connects)} ms, REST median ${median(base.rest)} ms`,
    );
    // A webhook attempt takes 2 s here: anything waiting on one would show it.
    assert.ok(Math.max(...dead.rest) < 1500, `a REST answer took ${Math.max(...dead.rest)} ms`);
    assert.ok(Math.max(...dead.connects) < 1500, `a connect took ${Math.max(...dead.connects)} ms`);
    assert.ok(median(dead.rest) <= median(base.rest) * 3 + 20, `REST median ${median(dead.rest)} vs ${median(base.rest)} ms`);
    // The receiver is hammered only within bounds: a few dozen requests open at most.
    assert.ok(receiver.requests.length <= 64, `${receiver.requests.length} requests open at once`);
  });
});
