'use strict';
// A private redis-server for one test file: on a free port of 127.0.0.1, nothing saved
// to disk, stopped (only that process) at the end. A missing redis-server fails the
// test loudly: a test that needs Redis never skips.

const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { spawnLogged } = require('./helpers');

/** $REDIS_SERVER if set, else the first `redis-server` on PATH, else /usr/bin/redis-server. */
function redisBinary() {
  if (process.env.REDIS_SERVER) return path.resolve(process.env.REDIS_SERVER);
  for (const dir of (process.env.PATH || '').split(path.delimiter).concat('/usr/bin', '/usr/local/bin')) {
    const candidate = path.join(dir, 'redis-server');
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

/** A port that was free a moment ago (the kernel's pick for port 0). */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function startOnce(bin, port, startTimeout) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fixrx-redis-'));
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir];
  const { child, logs, exited, tail } = spawnLogged(bin, args, { cwd: dir });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new Error(`redis-server did not become ready within ${startTimeout} ms; log:\n${tail()}`)), startTimeout);
    const poll = setInterval(() => {
      if (logs.some((l) => l.includes('Ready to accept connections'))) done(null);
    }, 20);
    const onError = (err) => done(new Error(`cannot start ${bin}: ${err.message}`));
    const onExit = (code, signal) => done(new Error(`redis-server exited at start (code ${code}, signal ${signal}); log:\n${tail()}`));
    function done(err) {
      clearTimeout(timer);
      clearInterval(poll);
      child.off('error', onError);
      child.off('exit', onExit);
      if (err) {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        reject(err);
      } else resolve();
    }
    child.once('error', onError);
    child.once('exit', onExit);
  });

  return {
    port,
    pid: child.pid,
    url: `redis://127.0.0.1:${port}/0`,
    logs: () => logs.slice(),
    /** SIGTERM this redis-server (SIGKILL after `timeout`) and wait for its exit. */
    async stop(timeout = 5000) {
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      child.kill('SIGTERM');
      let timer;
      const late = new Promise((resolve) => {
        timer = setTimeout(() => resolve(null), timeout);
      });
      const result = await Promise.race([exited, late]);
      clearTimeout(timer);
      if (result) return result;
      child.kill('SIGKILL');
      return exited;
    },
  };
}

/**
 * Starts a private redis-server; resolves { url, port, pid, logs, stop }. Throws when
 * redis-server is missing, so that the test needing it fails instead of skipping.
 */
async function startRedis({ startTimeout = 10000 } = {}) {
  const bin = redisBinary();
  if (!bin || !fs.existsSync(bin)) {
    throw new Error('redis-server not found (set REDIS_SERVER or install it, e.g. `apt-get install redis-server`): this test needs Redis and never skips');
  }
  // The free port can be taken between the probe and redis' bind: try a few.
  let lastError;
  for (let attempt = 0; attempt < 3; attempt += 1) {
    try {
      return await startOnce(bin, await freePort(), startTimeout);
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError;
}

module.exports = { startRedis };
