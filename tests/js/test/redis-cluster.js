'use strict';
// A private Redis Cluster for one test file: six redis-server processes (three primaries,
// three replicas) on free ports of 127.0.0.1, joined with `redis-cli --cluster create`,
// each stopped by its own PID at the end. Missing redis-server or redis-cli fails the
// test loudly: a test that needs a cluster never skips.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const net = require('node:net');
const { execFile } = require('node:child_process');
const { spawnLogged, sleep } = require('./helpers');

/** Runs redis-cli with `args`; resolves its stdout (rejects on a non-zero exit). */
function cli(args, timeout = 20000) {
  return new Promise((resolve, reject) => {
    execFile('redis-cli', args, { timeout }, (err, stdout, stderr) => {
      if (err) reject(new Error(`redis-cli ${args.join(' ')}: ${err.message} ${stderr}`));
      else resolve(stdout);
    });
  });
}

/** One command on the node at `port`; its reply as text ('' if the node is down). */
async function command(port, ...args) {
  try {
    return await cli(['-p', String(port), ...args], 3000);
  } catch {
    return '';
  }
}

/** A free port whose cluster bus port (+10000) is free too. */
async function clusterPort() {
  for (;;) {
    const port = await new Promise((resolve, reject) => {
      const srv = net.createServer();
      srv.unref();
      srv.once('error', reject);
      srv.listen(0, '127.0.0.1', () => {
        const { port: p } = srv.address();
        srv.close(() => resolve(p));
      });
    });
    if (port > 55535) continue;
    const busFree = await new Promise((resolve) => {
      const srv = net.createServer();
      srv.once('error', () => resolve(false));
      srv.listen(port + 10000, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
    if (busFree) return port;
  }
}

async function waitFor(check, what, within) {
  const deadline = Date.now() + within;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`redis cluster: ${what} within ${within} ms`);
    await sleep(100);
  }
}

/** `CLUSTER NODES` of a live node, parsed: [{ port, primary, failed, slots: [[a, b]] }]. */
async function clusterNodes(ports) {
  for (const port of ports) {
    const text = await command(port, 'CLUSTER', 'NODES');
    if (!text) continue;
    return text.trim().split('\n').map((line) => {
      const f = line.split(' ');
      const slots = f.slice(8).filter((r) => !r.startsWith('[')).map((r) => {
        const [a, b] = r.split('-').map(Number);
        return [a, b === undefined ? a : b];
      });
      return { port: Number(f[1].split('@')[0].split(':').pop()), primary: f[2].includes('master'), failed: f[2].includes('fail'), slots };
    });
  }
  return [];
}

/**
 * Starts the cluster; resolves { urls, ports, primaries(), primaryOfSlot(slot), kill(port),
 * waitOk(), command(port, ...args), stop() }.
 */
async function startCluster() {
  const nodes = [];
  for (let i = 0; i < 6; i += 1) {
    const port = await clusterPort();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fixrx-cluster-'));
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      '--cluster-enabled', 'yes', '--cluster-node-timeout', '2000', '--cluster-config-file', `nodes-${port}.conf`,
      // Replicas in sync at once and always eligible to take over: failover is under test.
      '--repl-diskless-sync-delay', '0', '--cluster-replica-validity-factor', '0', '--dir', dir];
    const { child, exited } = spawnLogged('redis-server', args, { cwd: dir });
    nodes.push({ port, child, exited });
  }
  const ports = nodes.map((n) => n.port);
  const live = () => nodes.filter((n) => n.child.exitCode === null && n.child.signalCode === null).map((n) => n.port);
  await waitFor(async () => (await Promise.all(ports.map((p) => command(p, 'PING')))).every((r) => r.includes('PONG')), 'every node answers', 10000);
  await cli(['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '1', '--cluster-yes']);
  const waitOk = (within = 20000) =>
    waitFor(async () => (await Promise.all(live().map((p) => command(p, 'CLUSTER', 'INFO')))).every((r) => r.includes('cluster_state:ok')), 'cluster_state:ok', within);
  await waitOk();
  // Three primaries serving slots, each with its replica online, before the test starts (a
  // replica that never synced cannot take over).
  await waitFor(async () => {
    const primaries = (await clusterNodes(ports)).filter((n) => n.primary && n.slots.length);
    if (primaries.length !== 3) return false;
    const infos = await Promise.all(primaries.map((n) => command(n.port, 'INFO', 'replication')));
    return infos.every((info) => info.includes('role:master') && /slave0:.*state=online/.test(info));
  }, 'three primaries with a replica online each', 20000);
  return {
    ports,
    urls: ports.map((p) => `redis://127.0.0.1:${p}`).join(','),
    command,
    waitOk,
    /** The live primaries, each with its slot ranges. */
    primaries: async () => (await clusterNodes(live())).filter((n) => n.primary && !n.failed),
    /** The port of the primary serving `slot` now. */
    async primaryOfSlot(slot) {
      const found = (await clusterNodes(live())).find((n) => n.primary && !n.failed && n.slots.some(([a, b]) => slot >= a && slot <= b));
      if (!found) throw new Error(`no primary serves slot ${slot}`);
      return found.port;
    },
    /** SIGKILL one node (a crash), and wait for its exit. */
    async kill(port) {
      const node = nodes.find((n) => n.port === port);
      if (!node || node.child.exitCode !== null || node.child.signalCode !== null) return;
      node.child.kill('SIGKILL');
      await node.exited;
    },
    async stop() {
      for (const node of nodes) {
        if (node.child.exitCode === null && node.child.signalCode === null) node.child.kill('SIGKILL');
      }
      await Promise.all(nodes.map((n) => n.exited));
    },
  };
}

module.exports = { startCluster };
