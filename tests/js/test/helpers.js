'use strict';
// Shared helpers for the black-box tests of fixrx-realtime with the official
// socket.io-client: start/stop the server binary, sign client tokens, POST events,
// connect clients, and wait for events (or for their absence).

const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const assert = require('node:assert/strict');
const jwt = require('jsonwebtoken');
const { io } = require('socket.io-client');

/** The server binary: $FIXRX_BIN, else the debug build of the repository. */
const BIN = process.env.FIXRX_BIN
  ? path.resolve(process.env.FIXRX_BIN)
  : path.resolve(__dirname, '..', '..', '..', 'target', 'debug', 'fixrx-realtime');

const JWT_SECRET = 'js-suite-jwt-secret-0123456789abcdef';
const API_TOKEN = 'js-suite-api-token-0123456789abcdef';
const ALLOWED_ORIGIN = 'http://allowed.example';
const OTHER_ALLOWED_ORIGIN = 'https://second.allowed.example:8443';
const REFUSED_ORIGIN = 'http://evil.example';

/** Positive waits: generous, the machine is slow and shared. */
const TIMEOUT = 5000;
/** Negative waits: how long we watch for something that must not arrive. */
const QUIET = 300;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `cond` until it is truthy; rejects with `what` after `timeout`. */
async function waitUntil(cond, what, timeout = TIMEOUT) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = cond();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** A fresh id, so that tests never see each other's events. */
function uid(prefix) {
  return `${prefix}-${crypto.randomBytes(5).toString('hex')}`;
}

// ---------------------------------------------------------------------------
// The server process

const started = new Set();
process.on('exit', () => {
  // Last resort if a test file crashed before its `after` hook: kill only our children.
  for (const child of started) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
});

/**
 * Starts a child process of ours in `cwd` (removed when it exits), keeping the last
 * `keep` lines of its output; the process-exit hook above kills it if a test crashes.
 */
function spawnLogged(bin, args, { cwd, env, keep = 200 }) {
  const child = spawn(bin, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  started.add(child);
  const logs = [];
  const add = (line) => {
    logs.push(line);
    if (logs.length > keep) logs.shift();
  };
  readline.createInterface({ input: child.stdout }).on('line', add);
  const stderr = readline.createInterface({ input: child.stderr });
  stderr.on('line', add);
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      started.delete(child);
      fs.rmSync(cwd, { recursive: true, force: true });
      resolve({ code, signal });
    });
  });
  const tail = () => logs.slice(-20).join('\n');
  return { child, logs, stderr, exited, tail };
}

/**
 * Starts the server on 127.0.0.1 with a random port and waits for its
 * `fixrx-realtime listening` log line. `env` adds or overrides variables.
 */
async function startServer(env = {}, { startTimeout = 15000 } = {}) {
  if (!fs.existsSync(BIN)) {
    throw new Error(`server binary not found at ${BIN}: run \`cargo build\` in the repository root or set FIXRX_BIN`);
  }
  // A private working directory: the server reads a `.env` from its cwd, and the
  // repository's own `.env` (if any) must not leak into the tests.
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'fixrx-js-'));
  const childEnv = {
    PATH: process.env.PATH || '/usr/bin:/bin',
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_FORMAT: 'json',
    RUST_LOG: 'info',
    APP_ENV: 'development',
    JWT_SECRET,
    API_TOKEN,
    CLIENT_ORIGIN: `${ALLOWED_ORIGIN},${OTHER_ALLOWED_ORIGIN}`,
    ...env,
  };
  const { child, logs, stderr, exited, tail } = spawnLogged(BIN, [], { cwd, env: childEnv, keep: 500 });

  const addr = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      child.kill('SIGKILL');
      reject(new Error(`server did not log "fixrx-realtime listening" within ${startTimeout} ms; log:\n${tail()}`));
    }, startTimeout);
    const onLine = (line) => {
      let entry;
      try {
        entry = JSON.parse(line);
      } catch {
        return;
      }
      if (entry.message === 'fixrx-realtime listening' && typeof entry.addr === 'string') {
        cleanup();
        resolve(entry.addr);
      }
    };
    const onError = (err) => {
      cleanup();
      reject(new Error(`cannot start ${BIN}: ${err.message}`));
    };
    const onExit = (code, signal) => {
      cleanup();
      reject(new Error(`server exited before listening (code ${code}, signal ${signal}); log:\n${tail()}`));
    };
    function cleanup() {
      clearTimeout(timer);
      stderr.off('line', onLine);
      child.off('error', onError);
      child.off('exit', onExit);
    }
    stderr.on('line', onLine);
    child.once('error', onError);
    child.once('exit', onExit);
  });

  const port = Number(addr.slice(addr.lastIndexOf(':') + 1));
  assert.ok(Number.isInteger(port) && port > 0, `cannot read a port from addr ${addr}`);
  const url = `http://127.0.0.1:${port}`;

  return {
    url,
    port,
    pid: child.pid,
    logs: () => logs.slice(),
    tail,
    /** Whether the process is still running. */
    running: () => child.exitCode === null && child.signalCode === null,
    /** SIGKILL (no goodbye at all); resolves { code, signal } once it is gone. */
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      return exited;
    },
    /** SIGTERM, wait for the exit (SIGKILL after `timeout`); resolves { code, signal, killed }. */
    async stop(timeout = 8000) {
      if (child.exitCode !== null || child.signalCode !== null) return { ...(await exited), killed: false };
      child.kill('SIGTERM');
      let timer;
      const late = new Promise((resolve) => {
        timer = setTimeout(() => resolve(null), timeout);
      });
      const result = await Promise.race([exited, late]);
      clearTimeout(timer);
      if (result) return { ...result, killed: false };
      child.kill('SIGKILL');
      return { ...(await exited), killed: true };
    },
  };
}

// ---------------------------------------------------------------------------
// Tokens and the REST API

const nowSecs = () => Math.floor(Date.now() / 1000);

/**
 * Signs a client token (HS256 with the server's secret). `claims` is used as is,
 * with `exp` defaulting to ten minutes from now; pass `exp: undefined` to omit it.
 */
function token(claims, { secret = JWT_SECRET, algorithm = 'HS256' } = {}) {
  const body = { exp: nowSecs() + 600, ...claims };
  for (const key of Object.keys(body)) if (body[key] === undefined) delete body[key];
  return jwt.sign(body, secret, { algorithm, noTimestamp: true });
}

const userToken = (sub) => token({ sub, role: 'user' });
const vendorToken = (sub, vendorId) => token({ sub, role: 'vendor', ...(vendorId ? { vendorId } : {}) });
const adminToken = (sub) => token({ sub, role: 'admin' });

/** POSTs one event to /api/v1/events; resolves { status, body, headers }. */
async function postEvent(server, event, { apiToken = API_TOKEN, headers = {} } = {}) {
  const res = await fetch(`${server.url}/api/v1/events`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiToken}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify(event),
    signal: AbortSignal.timeout(TIMEOUT),
  });
  const text = await res.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: res.status, body, headers: res.headers };
}

/** POSTs an event and asserts the 202; resolves the answer body { id, type, rooms }. */
async function emitEvent(server, event) {
  const res = await postEvent(server, event);
  assert.equal(res.status, 202, `POST /api/v1/events answered ${res.status}: ${JSON.stringify(res.body)}`);
  return res.body;
}

/** A booking:status_changed event for `userId` and `vendorId`, with a fresh booking id. */
function bookingEvent(userId, vendorId, extra = {}) {
  return {
    type: 'booking:status_changed',
    booking: { id: uid('b'), userId, vendorId, status: 'confirmed' },
    previousStatus: 'pending',
    ...extra,
  };
}

// ---------------------------------------------------------------------------
// Clients

const clients = new Set();

/**
 * A socket.io-client socket that records every event it receives from the moment it
 * is created, so that a test can assert both what arrived and what did not.
 */
class Client {
  constructor(socket) {
    this.socket = socket;
    /** Every event received: { event, args, transport }. */
    this.events = [];
    /** Engine transport upgrades seen, by name. */
    this.upgrades = [];
    this.firstTransport = socket.io.engine ? socket.io.engine.transport && socket.io.engine.transport.name : undefined;
    this._listeners = new Set();
    socket.onAny((event, ...args) => {
      const engine = socket.io.engine;
      this.events.push({ event, args, transport: engine && engine.transport ? engine.transport.name : undefined });
      for (const listener of this._listeners) listener();
    });
    if (socket.io.engine) socket.io.engine.on('upgrade', (t) => this.upgrades.push(t.name));

    this.ready = new Promise((resolve) => {
      const timer = setTimeout(() => {
        socket.off('connect', onConnect);
        socket.off('connect_error', onError);
        resolve({ connected: false, error: new Error(`neither connect nor connect_error within ${TIMEOUT} ms`) });
      }, TIMEOUT);
      const onConnect = () => {
        clearTimeout(timer);
        socket.off('connect_error', onError);
        resolve({ connected: true, error: null });
      };
      const onError = (error) => {
        clearTimeout(timer);
        socket.off('connect', onConnect);
        resolve({ connected: false, error });
      };
      socket.once('connect', onConnect);
      socket.once('connect_error', onError);
    });
  }

  get transport() {
    const engine = this.socket.io.engine;
    return engine && engine.transport ? engine.transport.name : undefined;
  }

  /** The events named `event` (optionally matching `pred` on the first argument). */
  received(event, pred = () => true) {
    return this.events.filter((e) => e.event === event && pred(e.args[0]));
  }

  /** Resolves the first event named `event` whose first argument matches `pred`. */
  waitFor(event, pred = () => true, timeout = TIMEOUT) {
    const found = () => this.received(event, pred)[0];
    const hit = found();
    if (hit) return Promise.resolve(hit);
    return new Promise((resolve, reject) => {
      const listener = () => {
        const e = found();
        if (e) {
          clearTimeout(timer);
          this._listeners.delete(listener);
          resolve(e);
        }
      };
      const timer = setTimeout(() => {
        this._listeners.delete(listener);
        const seen = this.events.map((e) => e.event).join(', ') || 'nothing';
        reject(new Error(`no "${event}" event matching within ${timeout} ms (received: ${seen})`));
      }, timeout);
      this._listeners.add(listener);
    });
  }

  /** Emits with an acknowledgement; rejects after `timeout` without one. */
  ack(event, ...args) {
    return this.socket.timeout(TIMEOUT).emitWithAck(event, ...args);
  }

  close() {
    this.socket.disconnect();
    clients.delete(this);
  }
}

/**
 * Creates a client of `server`. `opts` are socket.io-client options; `opts.token`
 * is shorthand for `auth: { token }`. Await `client.ready` for the handshake outcome.
 */
function client(server, opts = {}) {
  const { token: tok, ...rest } = opts;
  const socket = io(server.url, {
    reconnection: false,
    forceNew: true,
    timeout: TIMEOUT,
    ...(tok !== undefined ? { auth: { token: tok } } : {}),
    ...rest,
  });
  const c = new Client(socket);
  clients.add(c);
  return c;
}

/** Connects and asserts the handshake was accepted. */
async function connect(server, opts = {}) {
  const c = client(server, opts);
  const { connected, error } = await c.ready;
  assert.ok(connected, `expected the client to connect, got connect_error: ${error && error.message}`);
  assert.equal(c.socket.connected, true);
  return c;
}

/** Connects and asserts the handshake was refused; resolves { client, error }. */
async function connectRefused(server, opts = {}) {
  const c = client(server, opts);
  const { connected, error } = await c.ready;
  assert.equal(connected, false, 'expected connect_error, but the client connected');
  assert.ok(error instanceof Error, `expected a connect_error, got ${error}`);
  assert.equal(c.socket.connected, false);
  return { client: c, error };
}

/** Closes every client created so far (use in afterEach). */
function closeAll() {
  for (const c of clients) c.close();
}

/**
 * Waits `ms` and asserts that no client in `list` received `event` (any event when
 * `event` is null) matching `pred`.
 */
async function expectNothing(list, event = null, pred = () => true, ms = QUIET) {
  await sleep(ms);
  for (const c of [].concat(list)) {
    const got = c.events.filter((e) => (event === null || e.event === event) && pred(e.args[0]));
    assert.deepEqual(
      got.map((e) => [e.event, ...e.args]),
      [],
      `a client received what it must not: ${JSON.stringify(got.map((e) => [e.event, ...e.args]))}`,
    );
  }
}

/** Asserts `s` is an RFC 3339 timestamp; returns it as milliseconds. */
function assertRfc3339(s, what = 'timestamp') {
  assert.equal(typeof s, 'string', `${what} must be a string`);
  assert.match(s, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/, `${what} is not RFC 3339: ${s}`);
  const ms = Date.parse(s);
  assert.ok(!Number.isNaN(ms), `${what} does not parse: ${s}`);
  return ms;
}

/**
 * One server for a whole test file: started before its tests (handed to `onStart`),
 * every client closed after each test, the server stopped at the end.
 */
function serverPerFile(onStart, env = {}) {
  const { before, after, afterEach } = require('node:test');
  let started;
  before(async () => {
    started = await startServer(env);
    onStart(started);
  });
  afterEach(() => closeAll());
  after(async () => {
    closeAll();
    if (started) await started.stop();
  });
}

module.exports = {
  serverPerFile,
  BIN,
  JWT_SECRET,
  API_TOKEN,
  ALLOWED_ORIGIN,
  OTHER_ALLOWED_ORIGIN,
  REFUSED_ORIGIN,
  TIMEOUT,
  QUIET,
  sleep,
  waitUntil,
  uid,
  nowSecs,
  startServer,
  spawnLogged,
  token,
  userToken,
  vendorToken,
  adminToken,
  postEvent,
  emitEvent,
  bookingEvent,
  client,
  connect,
  connectRefused,
  closeAll,
  expectNothing,
  assertRfc3339,
};
