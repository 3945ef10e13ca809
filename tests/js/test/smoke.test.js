'use strict';
// The developer smoke client, dev/smoke-socket-client.js, driven as a person would drive
// it: spawned with environment variables, fed commands on stdin, judged by what it prints
// (one line per thing) and by its exit code. The server runs in development mode, the
// zero-configuration mode in which the smoke client must work with no setup.
//
// Needs dev/node_modules (`npm ci --prefix dev`).

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const readline = require('node:readline');
const h = require('./helpers');

const REPO = path.resolve(__dirname, '..', '..', '..');
const SMOKE = path.join(REPO, 'dev', 'smoke-socket-client.js');
const DEV_API_TOKEN = 'dev-api-token';

/** Waits for the smoke client: its start-up (node, socket.io-client, /dev/token, connect) is slow on a busy machine. */
const LINE_TIMEOUT = 10000;

/** Development mode: the helpers' default secrets unset (an empty value counts as unset). */
const DEV_ENV = { JWT_SECRET: '', API_TOKEN: '', APP_ENV: 'development' };

/** `<ISO timestamp> <word> <rest>`: every line the smoke client prints on stdout but help. */
const LINE = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z) (\S+)(?: (.*))?$/;

function parse(line) {
  const m = LINE.exec(line);
  assert.ok(m, `not a "<ISO timestamp> <word> <rest>" line: ${JSON.stringify(line)}`);
  assert.ok(!Number.isNaN(Date.parse(m[1])), `bad timestamp in ${line}`);
  return { ts: m[1], word: m[2], rest: m[3] === undefined ? '' : m[3] };
}

const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

// ---------------------------------------------------------------------------
// One smoke client process

const running = new Set();

class Smoke {
  /** `env`: the variables a user would set (WS_URL, TEST_USER, ...); nothing else leaks in. */
  constructor(env, args = []) {
    this.out = [];
    this.err = [];
    this.child = spawn(process.execPath, [SMOKE, ...args], {
      cwd: REPO,
      env: { PATH: process.env.PATH || '/usr/bin:/bin', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    running.add(this);
    this.child.stdin.on('error', () => {}); // EPIPE once it has exited: the exit code says why
    readline.createInterface({ input: this.child.stdout }).on('line', (l) => this.out.push(l));
    readline.createInterface({ input: this.child.stderr }).on('line', (l) => this.err.push(l));
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        running.delete(this);
        resolve({ code, signal });
      });
    });
  }

  transcript() {
    return `stdout:\n${this.out.join('\n') || '(nothing)'}\nstderr:\n${this.err.join('\n') || '(nothing)'}`;
  }

  /** Resolves { line, index } of the first stdout line at or after `from` matching `re`. */
  async line(re, what, { from = 0, timeout = LINE_TIMEOUT } = {}) {
    const deadline = Date.now() + timeout;
    for (;;) {
      for (let i = from; i < this.out.length; i++) {
        if (re.test(this.out[i])) return { line: this.out[i], index: i };
      }
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        // The streams may still hold the last lines: look once more after they drain.
        await h.sleep(50);
        const i = this.out.findIndex((l, k) => k >= from && re.test(l));
        if (i >= 0) return { line: this.out[i], index: i };
        throw new Error(`the smoke client exited (${this.child.exitCode ?? this.child.signalCode}) before printing ${what}\n${this.transcript()}`);
      }
      if (Date.now() > deadline) throw new Error(`no ${what} within ${timeout} ms\n${this.transcript()}`);
      await h.sleep(20);
    }
  }

  /** Types `command` and resolves the first line after it matching `re`. */
  async command(command, re, what) {
    const from = this.out.length;
    this.child.stdin.write(`${command}\n`);
    return this.line(re, `${what} after "${command}"`, { from });
  }

  /** Waits for the `connected` line; returns its parsed fields (socket, transport, sub, role, rooms). */
  async connected() {
    const { line } = await this.line(/^\S+ connected /, 'the "connected" line');
    const fields = Object.fromEntries(
      parse(line)
        .rest.split(' ')
        .map((kv) => kv.split('=')),
    );
    return { ...fields, rooms: (fields.rooms || '').split(',') };
  }

  /** The ack printed for `event` after `command`, parsed from its JSON. */
  async ack(command, event) {
    const { line } = await this.command(command, new RegExp(`^\\S+ ack ${escape(event)} `), `the ${event} ack`);
    const { rest } = parse(line);
    const json = rest.slice(event.length + 1);
    try {
      return JSON.parse(json);
    } catch {
      throw new Error(`the ${event} ack is not JSON: ${line}\n${this.transcript()}`);
    }
  }

  /** Resolves { code, signal }; kills it and fails after `timeout`. */
  async exit(timeout = LINE_TIMEOUT) {
    let timer;
    const late = new Promise((resolve) => {
      timer = setTimeout(() => resolve(null), timeout);
    });
    const result = await Promise.race([this.exited, late]);
    clearTimeout(timer);
    if (!result) {
      this.kill();
      throw new Error(`the smoke client did not exit within ${timeout} ms\n${this.transcript()}`);
    }
    return result;
  }

  kill() {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

/** Kills every smoke client still running and waits for them. */
async function killAll() {
  const list = [...running];
  for (const s of list) s.kill();
  await Promise.all(list.map((s) => s.exited));
}

/** A port on 127.0.0.1 where nothing listens (it was free a moment ago). */
async function closedPort() {
  const srv = net.createServer();
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address();
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

/**
 * A TCP proxy on 127.0.0.1 in front of a server: the smoke client connects through it,
 * and `drop()` cuts every connection and refuses new ones, as a network outage would,
 * until `restore()` (optionally towards another port).
 */
async function startProxy(targetPort) {
  let target = targetPort;
  let refusing = false;
  const conns = new Set();
  const srv = net.createServer((client) => {
    if (refusing) {
      client.destroy();
      return;
    }
    const upstream = net.connect(target, '127.0.0.1');
    conns.add(client);
    conns.add(upstream);
    const forget = () => {
      conns.delete(client);
      conns.delete(upstream);
      client.destroy();
      upstream.destroy();
    };
    for (const s of [client, upstream]) {
      s.on('error', forget);
      s.on('close', forget);
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${srv.address().port}`,
    drop() {
      refusing = true;
      for (const c of [...conns]) c.destroy();
    },
    restore(port = target) {
      target = port;
      refusing = false;
    },
    close() {
      refusing = true;
      for (const c of [...conns]) c.destroy();
      return new Promise((resolve) => srv.close(resolve));
    },
  };
}

/** Asserts the event line `line` carries `event` (by name and envelope). */
function assertEventLine(line, name, check) {
  const { word, rest } = parse(line);
  assert.equal(word, name);
  let envelope;
  try {
    envelope = JSON.parse(rest);
  } catch {
    assert.fail(`the ${name} line does not end in compact JSON: ${line}`);
  }
  assert.ok(!rest.includes('\n') && rest === JSON.stringify(envelope), `not compact JSON: ${rest}`);
  check(envelope);
  return envelope;
}

// ---------------------------------------------------------------------------

before(() => {
  assert.ok(fs.existsSync(SMOKE), `${SMOKE} is missing`);
  assert.ok(
    fs.existsSync(path.join(REPO, 'dev', 'node_modules', 'socket.io-client')),
    'dev/node_modules is missing: run `npm ci --prefix dev` first',
  );
});

afterEach(killAll);

describe('smoke client against a development-mode server', () => {
  let server;
  let env;

  before(async () => {
    server = await h.startServer(DEV_ENV);
    env = { WS_URL: server.url };
    const res = await fetch(`${server.url}/dev/token?sub=probe`);
    assert.equal(res.status, 200, 'the server is not in development mode: GET /dev/token must answer 200');
    await res.text();
  });

  after(async () => {
    await killAll();
    if (server) await server.stop();
  });

  it('with zero setup: connects as smoke-user, prints its rooms, and exits 0 on end of input', async () => {
    const smoke = new Smoke(env);
    const c = await smoke.connected();
    assert.equal(c.sub, 'smoke-user');
    assert.equal(c.role, 'user');
    assert.deepEqual(c.rooms, ['user:smoke-user']);
    assert.match(c.socket, /^\S+$/);
    for (const line of smoke.out) parse(line);
    smoke.child.stdin.end();
    const { code } = await smoke.exit();
    assert.equal(code, 0, smoke.transcript());
    assert.deepEqual(smoke.err, []);
  });

  it('a user: ping prints the pong ack, join of its own room is ok, of another user forbidden', async () => {
    const user = h.uid('u');
    const smoke = new Smoke({ ...env, TEST_USER: user });
    const c = await smoke.connected();
    assert.equal(c.sub, user);
    assert.deepEqual(c.rooms, [`user:${user}`]);

    const pong = await smoke.ack('ping', 'ping');
    assert.equal(pong.ok, true);
    assert.equal(pong.pong, true);
    h.assertRfc3339(pong.serverTime, 'serverTime');

    assert.deepEqual(await smoke.ack(`join user ${user}`, 'join'), { ok: true, room: `user:${user}` });

    const refused = await smoke.ack('join user someone-else', 'join');
    assert.equal(refused.ok, false);
    assert.equal(refused.error, 'forbidden');

    assert.deepEqual(await smoke.ack(`leave user ${user}`, 'leave'), { ok: true, room: `user:${user}` });

    const help = await smoke.command('help', /^\s+ping\b/, 'the help text');
    assert.ok(help.line);
    const unknown = await smoke.command('frobnicate', /^\S+ error .*frobnicate/, 'an unknown-command error');
    assert.match(unknown.line, /help/);

    await smoke.command('exit', /^\S+ disconnected io client disconnect/, 'the disconnect line');
    const { code } = await smoke.exit();
    assert.equal(code, 0, smoke.transcript());
  });

  it('prints an event POSTed over REST to its user as "<timestamp> <event> <json>"', async () => {
    const user = h.uid('u');
    const smoke = new Smoke({ ...env, TEST_USER: user });
    await smoke.connected();

    const booking = { id: h.uid('b'), userId: user, vendorId: h.uid('v') };
    const res = await h.postEvent(server, { type: 'booking:created', booking }, { apiToken: DEV_API_TOKEN });
    assert.equal(res.status, 202, JSON.stringify(res.body));

    const { line } = await smoke.line(/^\S+ booking:created /, 'the booking:created line');
    assertEventLine(line, 'booking:created', (e) => {
      assert.equal(e.id, res.body.id);
      assert.equal(e.type, 'booking:created');
      assert.deepEqual(e.booking, booking);
    });
    // The line shows the event id, so a person can match it with the REST answer.
    assert.ok(line.includes(res.body.id));

    smoke.child.stdin.write('exit\n');
    assert.equal((await smoke.exit()).code, 0, smoke.transcript());
  });

  it('chat between a user and a vendor smoke client; the vendor also gets its REST events', async () => {
    const user = h.uid('u');
    const owner = h.uid('vu');
    const vendor = h.uid('v');
    const u = new Smoke({ ...env, TEST_USER: user });
    const v = new Smoke({ ...env, TEST_USER: owner, TEST_VENDOR: vendor });
    const cu = await u.connected();
    const cv = await v.connected();
    assert.deepEqual(cu.rooms, [`user:${user}`]);
    assert.equal(cv.role, 'vendor');
    assert.equal(cv.sub, owner);
    assert.deepEqual(cv.rooms, [`user:${owner}`, `vendor:${vendor}`]);

    const sent = await u.ack(`chat vendor ${vendor} hello from the smoke test`, 'chat:send');
    assert.equal(sent.ok, true, JSON.stringify(sent));
    assert.equal(sent.message.text, 'hello from the smoke test');

    const { line } = await v.line(/^\S+ chat:message /, 'the chat:message line on the vendor client');
    assertEventLine(line, 'chat:message', (m) => {
      assert.equal(m.text, 'hello from the smoke test');
      assert.deepEqual(m.from, { type: 'user', id: user });
      assert.deepEqual(m.to, { type: 'vendor', id: vendor });
      assert.equal(m.id, sent.message.id);
    });

    const reply = await v.ack(`chat user ${user} hi back`, 'chat:send');
    assert.equal(reply.ok, true, JSON.stringify(reply));
    const back = await u.line(/^\S+ chat:message /, 'the chat:message line on the user client');
    assertEventLine(back.line, 'chat:message', (m) => {
      assert.equal(m.text, 'hi back');
      assert.deepEqual(m.from, { type: 'vendor', id: vendor });
    });

    // Typing is relayed as chat:typing { from, to }.
    assert.equal((await u.ack(`typing vendor ${vendor}`, 'chat:typing')).ok, true);
    const typing = await v.line(/^\S+ chat:typing /, 'the chat:typing line on the vendor client');
    assertEventLine(typing.line, 'chat:typing', (t) => assert.deepEqual(t.from, { type: 'user', id: user }));

    // A user may not write to a user.
    const forbidden = await u.ack(`chat user ${owner} psst`, 'chat:send');
    assert.equal(forbidden.ok, false);
    assert.equal(forbidden.error, 'forbidden');

    // A REST event for the vendor reaches the vendor client, not the user client.
    const service = { id: h.uid('s'), vendorId: vendor };
    const res = await h.postEvent(server, { type: 'service:created', service }, { apiToken: DEV_API_TOKEN });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    const svc = await v.line(/^\S+ service:created /, 'the service:created line on the vendor client');
    assertEventLine(svc.line, 'service:created', (e) => assert.deepEqual(e.service, service));
    await h.sleep(h.QUIET);
    assert.deepEqual(u.out.filter((l) => / service:created /.test(l)), [], 'the user client got the vendor event');

    u.child.stdin.write('exit\n');
    v.child.stdin.write('exit\n');
    assert.equal((await u.exit()).code, 0, u.transcript());
    assert.equal((await v.exit()).code, 0, v.transcript());
  });

  it('--token <jwt> and TOKEN=<jwt> connect with the given token instead of asking /dev/token', async () => {
    const user = h.uid('u');
    const res = await fetch(`${server.url}/dev/token?sub=${user}&role=vendor&vendorId=${user}-shop`);
    const { token } = await res.json();
    for (const [extraEnv, args] of [
      [{}, ['--token', token]],
      [{ TOKEN: token }, []],
    ]) {
      const smoke = new Smoke({ ...env, ...extraEnv }, args);
      const c = await smoke.connected();
      assert.equal(c.sub, user);
      assert.equal(c.role, 'vendor');
      assert.deepEqual(c.rooms, [`user:${user}`, `vendor:${user}-shop`]);
      assert.equal((await smoke.ack('ping', 'ping')).ok, true);
      smoke.child.stdin.end();
      assert.equal((await smoke.exit()).code, 0, smoke.transcript());
    }
  });

  it('a token the server refuses: exits non-zero with the unauthorized message', async () => {
    const cases = [
      ['not-a-jwt', /unauthorized: token malformed/],
      [h.token({ sub: 'x' }), /unauthorized: invalid signature/], // signed with another secret
    ];
    for (const [token, expected] of cases) {
      const started = Date.now();
      const smoke = new Smoke({ ...env, TOKEN: token });
      const { code } = await smoke.exit();
      assert.notEqual(code, 0, smoke.transcript());
      assert.equal(smoke.err.length, 1, `expected one line on stderr\n${smoke.transcript()}`);
      assert.match(smoke.err[0], expected);
      assert.ok(!smoke.out.some((l) => / connected /.test(l)), `it printed connected\n${smoke.transcript()}`);
      assert.ok(Date.now() - started < LINE_TIMEOUT);
    }
  });

  it('the server going away: prints the disconnect and the reconnect attempts, then reconnects', async () => {
    const own = await h.startServer(DEV_ENV);
    let second;
    try {
      const user = h.uid('u');
      const smoke = new Smoke({ WS_URL: own.url, TEST_USER: user });
      await smoke.connected();
      const mark = smoke.out.length;

      await own.stop();
      await smoke.line(/^\S+ disconnected /, 'the disconnected line', { from: mark });
      await smoke.line(/^\S+ reconnecting \(attempt 1\)\.\.\.$/, 'the first reconnect attempt', { from: mark });

      second = await h.startServer({ ...DEV_ENV, PORT: String(own.port) });
      await smoke.line(/^\S+ reconnected /, 'the reconnected line', { from: mark, timeout: 15000 });
      const again = await smoke.line(/^\S+ connected /, 'a second connected line', { from: mark });
      assert.match(again.line, new RegExp(`rooms=user:${escape(user)}$`));
      assert.equal((await smoke.ack('ping', 'ping')).ok, true);

      smoke.child.stdin.end();
      assert.equal((await smoke.exit()).code, 0, smoke.transcript());
    } finally {
      await killAll();
      if (second) await second.stop();
      await own.stop();
    }
  });
});

describe('smoke client through a network drop: it recovers what it missed', () => {
  let server;
  let proxy;

  before(async () => {
    server = await h.startServer(DEV_ENV);
  });

  after(async () => {
    await killAll();
    if (proxy) await proxy.close();
    if (server) await server.stop();
  });

  /** Posts a chat message over REST from `vendor` to `user`; resolves the 202 body. */
  async function postChat(from, to, text) {
    const res = await fetch(`${server.url}/api/v1/chat/messages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${DEV_API_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ from, to, text }),
      signal: AbortSignal.timeout(h.TIMEOUT),
    });
    const body = await res.json();
    assert.equal(res.status, 202, JSON.stringify(body));
    return body;
  }

  it('replays the events posted while it was away, in order and once, then prints "recovered N missed events"', async () => {
    proxy = await startProxy(server.port);
    const user = h.uid('u');
    const vendor = h.uid('v');
    const room = `user:${user}`;
    const smoke = new Smoke({ WS_URL: proxy.url, TEST_USER: user });
    await smoke.connected();
    // Its first connect sends empty offsets: nothing to replay.
    await smoke.line(/^\S+ recovered 0 missed events$/, 'the first recovery summary');

    const first = await h.postEvent(server, { type: 'booking:created', booking: { id: h.uid('b'), userId: user, vendorId: vendor } }, { apiToken: DEV_API_TOKEN });
    assert.equal(first.status, 202, JSON.stringify(first.body));
    const seen = await smoke.line(/^\S+ booking:created /, 'the booking:created line');
    assertEventLine(seen.line, 'booking:created', (e) => {
      assert.equal(e.id, first.body.id);
      assert.equal(typeof e.offsets[room], 'string', `the event carries a position for ${room}`);
    });

    // The network drops; the server keeps what is posted meanwhile.
    const mark = smoke.out.length;
    proxy.drop();
    await smoke.line(/^\S+ disconnected transport (close|error)\b.*reconnecting automatically/, 'the disconnected line', { from: mark });
    const missed = [];
    for (const status of ['confirmed', 'in_progress']) {
      const res = await h.postEvent(
        server,
        { type: 'booking:status_changed', booking: { id: first.body.id, userId: user, vendorId: vendor, status }, previousStatus: 'pending' },
        { apiToken: DEV_API_TOKEN },
      );
      assert.equal(res.status, 202, JSON.stringify(res.body));
      missed.push({ event: 'booking:status_changed', id: res.body.id });
    }
    const chat = await postChat({ type: 'vendor', id: vendor }, { type: 'user', id: user }, 'sent while you were away');
    missed.push({ event: 'chat:message', id: chat.message.id });
    const pay = await h.postEvent(server, { type: 'payment:completed', payment: { id: h.uid('p'), userId: user, amount: 4200 } }, { apiToken: DEV_API_TOKEN });
    assert.equal(pay.status, 202, JSON.stringify(pay.body));
    missed.push({ event: 'payment:completed', id: pay.body.id });
    // It tries, and is refused, at least once while away.
    await smoke.line(/^\S+ connect_error /, 'a refused reconnect attempt', { from: mark, timeout: 15000 });

    proxy.restore();
    await smoke.line(/^\S+ reconnected /, 'the reconnected line', { from: mark, timeout: 15000 });
    const summary = await smoke.line(/^\S+ (recovered \d+ missed events?|could not recover: .*)$/, 'the recovery summary', { from: mark });
    assert.match(summary.line, new RegExp(`recovered ${missed.length} missed events$`), smoke.transcript());

    // Between the drop and the summary: exactly the missed events, in the order posted, then `recovery`.
    const between = smoke.out.slice(mark, summary.index).map(parse);
    const replayed = between
      .filter((l) => missed.some((m) => m.event === l.word))
      .map((l) => ({ event: l.word, id: JSON.parse(l.rest).id }));
    assert.deepEqual(replayed, missed, smoke.transcript());
    const recovery = between.filter((l) => l.word === 'recovery').map((l) => JSON.parse(l.rest));
    assert.deepEqual(Object.keys(recovery[0].offsets), [room], 'the report gives a position in the socket\'s own room');
    delete recovery[0].offsets;
    assert.deepEqual(recovery, [{ recovered: true, replayed: missed.length, rooms: { [room]: 'recovered' } }]);
    assert.ok(!between.some((l) => l.word === 'booking:created'), `the event it had was replayed again\n${smoke.transcript()}`);

    // Live again: the next event arrives once, and nothing is repeated.
    const after = smoke.out.length;
    const next = await h.postEvent(server, { type: 'booking:cancelled', booking: { id: first.body.id, userId: user, vendorId: vendor }, reason: 'done' }, { apiToken: DEV_API_TOKEN });
    assert.equal(next.status, 202, JSON.stringify(next.body));
    await smoke.line(/^\S+ booking:cancelled /, 'the live event after the recovery', { from: after });
    await h.sleep(h.QUIET);
    const ids = smoke.out.map(parse).filter((l) => l.rest.startsWith('{"id"')).map((l) => JSON.parse(l.rest).id);
    assert.equal(new Set(ids).size, ids.length, `an event was printed twice\n${smoke.transcript()}`);

    smoke.child.stdin.end();
    assert.equal((await smoke.exit()).code, 0, smoke.transcript());
  });

  it('a server that lost its history (restarted without Redis): prints "could not recover: <room> unknown"', async () => {
    const own = await h.startServer(DEV_ENV);
    let fresh;
    const relay = await startProxy(own.port);
    try {
      const user = h.uid('u');
      const smoke = new Smoke({ WS_URL: relay.url, TEST_USER: user });
      await smoke.connected();
      const res = await h.postEvent(own, { type: 'payment:completed', payment: { id: h.uid('p'), userId: user } }, { apiToken: DEV_API_TOKEN });
      assert.equal(res.status, 202, JSON.stringify(res.body));
      await smoke.line(/^\S+ payment:completed /, 'the payment:completed line');

      const mark = smoke.out.length;
      relay.drop();
      await smoke.line(/^\S+ disconnected /, 'the disconnected line', { from: mark });
      await own.stop();
      fresh = await h.startServer(DEV_ENV);
      relay.restore(fresh.port);

      await smoke.line(/^\S+ reconnected /, 'the reconnected line', { from: mark, timeout: 15000 });
      const { line } = await smoke.line(/^\S+ could not recover: /, 'the could-not-recover line', { from: mark });
      assert.match(line, new RegExp(`could not recover: user:${escape(user)} unknown\\b`));
      assert.ok(!smoke.out.slice(mark).some((l) => / recovered \d+ missed/.test(l)), smoke.transcript());

      smoke.child.stdin.end();
      assert.equal((await smoke.exit()).code, 0, smoke.transcript());
    } finally {
      await killAll();
      await relay.close();
      if (fresh) await fresh.stop();
      await own.stop();
    }
  });
});

describe('smoke client without a usable server', () => {
  let production;

  after(async () => {
    await killAll();
    if (production) await production.stop();
  });

  it('unreachable server: exits non-zero at once with "cannot reach <url>"', async () => {
    const port = await closedPort();
    const url = `http://127.0.0.1:${port}`;
    // Without a token (it first asks /dev/token) and with one (it goes straight to Socket.IO).
    for (const extra of [{}, { TOKEN: 'a.b.c' }]) {
      const started = Date.now();
      const smoke = new Smoke({ WS_URL: url, ...extra });
      const { code } = await smoke.exit(LINE_TIMEOUT);
      const elapsed = Date.now() - started;
      assert.notEqual(code, 0, smoke.transcript());
      assert.equal(smoke.err.length, 1, `expected one line on stderr\n${smoke.transcript()}`);
      assert.match(smoke.err[0], new RegExp(`cannot reach ${escape(url)}`));
      assert.match(smoke.err[0], /ECONNREFUSED/);
      assert.ok(elapsed < 6000, `took ${elapsed} ms to give up`);
    }
  });

  it('a server not in development mode: /dev/token is 404, so it says to pass TOKEN or --token', async () => {
    production = await h.startServer(); // the helpers' JWT_SECRET and API_TOKEN: /dev/token is off
    const smoke = new Smoke({ WS_URL: production.url, TEST_USER: 'u1' });
    const { code } = await smoke.exit();
    assert.notEqual(code, 0, smoke.transcript());
    assert.equal(smoke.err.length, 1, smoke.transcript());
    assert.match(smoke.err[0], /not in development mode/);
    assert.match(smoke.err[0], /TOKEN=/);
    assert.match(smoke.err[0], /--token/);
  });
});
