'use strict';
// The chaos suite on a Redis Cluster of three primaries (each with a replica), the history
// split into partitions spread over the primaries, so that events go to rooms on
// different primaries. Vendor accounts are their own vendor (`vendorId` = `sub`, the
// default), so each socket's rooms share a partition and the audit is the strict one; a
// run with a vendor's staff (`vendorId` other than `sub`, two rooms that may live on two
// primaries) audits the order per room, as docs/delivery.md promises for them. The second run kills the primary of one partition half-way: the
// driver retries what is answered 503 with the same id, as the contract says, and every
// client still receives exactly the events of its rooms (see chaos-kit.js). The first two
// runs also post batches, most of them spanning partitions; the third posts single events
// only, since a batch answered 202 while a partition is away may be placed after later
// events in that partition's rooms (docs/delivery.md, "The history in partitions").

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startCluster } = require('./redis-cluster');
const { runChaos, chaosSeed, startInstance } = require('./chaos-kit');

const SEED = chaosSeed();
const PARTITIONS = 6;
let cluster;
const participants = [];
let servers = [];

async function startServers() {
  const env = { REDIS_CLUSTER_URLS: cluster.urls, REDIS_HISTORY_PARTITIONS: String(PARTITIONS) };
  const list = [];
  for (let i = 0; i < 3; i += 1) list.push(await startInstance(env));
  return list;
}

async function stopAll() {
  while (participants.length) participants.pop().close();
  while (servers.length) await servers.pop().stop();
}

before(async () => {
  cluster = await startCluster();
});

after(async () => {
  await stopAll();
  if (cluster) await cluster.stop();
});

describe('chaos: 3 instances on a Redis Cluster of three primaries', () => {
  it('every client receives exactly the events of its rooms, with rooms on every primary', async (t) => {
    servers = await startServers();
    try {
      await runChaos(t, { servers, seed: SEED, label: 'cluster', participants, vendorIsSub: true, batches: true });
      // The history's work is spread: each primary holds history keys.
      for (const primary of await cluster.primaries()) {
        const keys = await cluster.command(primary.port, 'DBSIZE');
        assert.ok(Number(keys.trim()) > 0, `primary ${primary.port} holds no keys`);
      }
    } finally {
      await stopAll();
    }
  });

  it("a vendor's staff, whose two rooms live in two partitions, gets each event once, in each room's order", async (t) => {
    servers = await startServers();
    try {
      await runChaos(t, { servers, seed: SEED + 2, label: 'cluster, staff accounts', participants, perRoom: true, batches: true });
    } finally {
      await stopAll();
    }
  });

  it('and through a primary killed half-way (failover to its replica)', async (t) => {
    servers = await startServers();
    const midway = async () => {
      // Partition 0's hash tag lands in the first third of the slots.
      const victim = await cluster.primaryOfSlot(0);
      await cluster.kill(victim);
      return `killed the primary on ${victim} (slots from 0)`;
    };
    try {
      const options = { servers, seed: SEED + 1, label: 'cluster, primary killed', participants, midway };
      await runChaos(t, { ...options, tolerate503: true, vendorIsSub: true });
    } finally {
      await stopAll();
    }
  });
});
