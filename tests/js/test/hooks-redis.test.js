'use strict';
// Presence webhooks across two instances sharing a real redis-server: one webhook per
// transition whichever instance the sockets are on, and offline webhooks for the users
// of an instance killed with SIGKILL (no goodbye), within the time docs/backend.md states.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');
const { startRedis } = require('./redis');
const { startReceiver, WEBHOOK_SECRET } = require('./receiver');

const GRACE_MS = 1000;
/** An instance silent this long is dead (the server's fixed DEAD_AFTER). */
const DEAD_AFTER_MS = 5000;

describe('presence webhooks with Redis and two instances', () => {
  let redis;
  let receiver;
  let a;
  let b;
  before(async () => {
    redis = await startRedis();
    receiver = await startReceiver(() => ({ status: 200 }));
    const env = { REDIS_URL: redis.url, WEBHOOK_URL: receiver.url, WEBHOOK_SECRET, PRESENCE_OFFLINE_GRACE_MS: String(GRACE_MS) };
    // `a` starts first and so takes the sender lease: the kill below also moves it.
    a = await h.startServer(env);
    await h.sleep(300);
    b = await h.startServer(env);
  });
  afterEach(() => h.closeAll());
  after(async () => {
    h.closeAll();
    for (const s of [a, b]) if (s) await s.stop();
    if (receiver) await receiver.close();
    if (redis) await redis.stop();
  });

  const types = (who) => receiver.presence(who).map((r) => r.body.type);

  async function expectTypes(who, expected, ms) {
    await h.sleep(ms);
    assert.deepEqual(types(who), expected, `webhooks for ${who}`);
  }

  it('sends one online and one offline in total for a user with sockets on both', async () => {
    const id = h.uid('u');
    const who = `user:${id}`;
    // Both at once: the two instances race to announce the same identity.
    const [onA, onB] = await Promise.all([
      h.connect(a, { token: h.userToken(id) }),
      h.connect(b, { token: h.userToken(id) }),
    ]);
    await h.waitUntil(() => types(who).length >= 1, 'the online webhook');
    const more = await h.connect(b, { token: h.userToken(id) });
    onA.close();
    await expectTypes(who, ['presence.online'], GRACE_MS + 1000);
    onB.close();
    more.close();
    await h.waitUntil(() => types(who).length >= 2, 'the offline webhook', GRACE_MS + 4000);
    await expectTypes(who, ['presence.online', 'presence.offline'], 500);
    for (const r of receiver.requests) assert.equal(r.valid, true, 'every request is signed');
  });

  it('sends nothing when a user moves to the other instance within the grace (a deploy)', async () => {
    const id = h.uid('u');
    const who = `user:${id}`;
    const first = await h.connect(a, { token: h.userToken(id) });
    await h.waitUntil(() => types(who).length >= 1, 'the online webhook');
    first.close();
    await h.sleep(GRACE_MS / 3);
    const moved = await h.connect(b, { token: h.userToken(id) });
    await expectTypes(who, ['presence.online'], GRACE_MS + 1000);
    moved.close();
    await h.waitUntil(() => types(who).length >= 2, 'the offline webhook', GRACE_MS + 4000);
    assert.deepEqual(types(who), ['presence.online', 'presence.offline']);
  });

  it('sends offline for the users of an instance killed with SIGKILL, and only for them', async () => {
    const gone = h.uid('u');
    const both = h.uid('u');
    const vendorId = h.uid('v');
    await h.connect(a, { token: h.userToken(gone) });
    await h.connect(a, { token: h.vendorToken(h.uid('vu'), vendorId) });
    await h.connect(a, { token: h.userToken(both) });
    const stays = await h.connect(b, { token: h.userToken(both) });
    for (const who of [`user:${gone}`, `vendor:${vendorId}`, `user:${both}`]) {
      await h.waitUntil(() => types(who).length >= 1, `online for ${who}`);
    }
    const killedAt = Date.now();
    await a.kill();
    const budget = DEAD_AFTER_MS + GRACE_MS + 3000;
    for (const who of [`user:${gone}`, `vendor:${vendorId}`]) {
      await h.waitUntil(() => types(who).length >= 2, `offline for ${who} after the kill`, budget);
      const offline = receiver.presence(who)[1];
      assert.equal(offline.body.type, 'presence.offline');
      const after = offline.at - killedAt;
      console.log(`# ${who.split(':')[0]} offline ${after} ms after SIGKILL`);
      assert.ok(after >= GRACE_MS, `offline only ${after} ms after the kill`);
    }
    // Still connected on the other instance: not offline.
    assert.equal(stays.socket.connected, true);
    await expectTypes(`user:${both}`, ['presence.online'], 500);
  });
});
