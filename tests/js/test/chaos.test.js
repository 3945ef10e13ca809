'use strict';
// The chaos suite on one Redis: three instances sharing it (see chaos-kit.js for what a
// run does and checks).

const { describe, it, before, after } = require('node:test');
const { startRedis } = require('./redis');
const { runChaos, chaosSeed, startInstance } = require('./chaos-kit');

const SEED = chaosSeed();
let redis;
const servers = [];
const participants = [];

before(async () => {
  redis = await startRedis();
  for (let i = 0; i < 3; i += 1) servers.push(await startInstance({ REDIS_URL: redis.url }));
});

after(async () => {
  for (const p of participants) p.close();
  while (servers.length) await servers.pop().stop();
  if (redis) await redis.stop();
});

describe('chaos: 3 instances sharing one Redis', () => {
  it('every client receives exactly the events of its rooms, once, in order per room, through drops and moves', async (t) => {
    await runChaos(t, { servers, seed: SEED, label: 'one Redis', participants, batches: true });
  });
});
