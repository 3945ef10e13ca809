#!/usr/bin/env node
'use strict';
// Interactive smoke client for fixrx-realtime, with the official socket.io-client.
//
//   node dev/smoke-socket-client.js
//   TEST_USER=user123 TEST_VENDOR=vendor456 node dev/smoke-socket-client.js
//   WS_URL=http://your-server:3000 node dev/smoke-socket-client.js
//   TOKEN=<jwt> node dev/smoke-socket-client.js        (or --token <jwt>: any server)
//
// Without a token it asks the server's development endpoint GET /dev/token (development
// mode only) for one: as vendor TEST_VENDOR (sub TEST_USER) when TEST_VENDOR is set,
// else as user TEST_USER. Type `help` for the commands. Every line on stdout starts with
// an ISO timestamp and a word: a received event's name (then its JSON), or one of
// connecting, connected, upgraded, disconnected, reconnecting, reconnected,
// connect_error, sent, ack, error, note, and after the server's `recovery` event the
// summary `recovered <n> missed events` or `could not recover: <room> <status>, ...`.
// Fatal errors go to stderr, one line, exit code 1.
//
// It keeps the latest position of each room from the `offsets` of the events it
// receives and sends them in `auth.offsets` on every (re)connect, as the recipe in
// docs/frontend.md does, so after a network drop the server replays what it missed.
//
// Its one dependency (socket.io-client, pinned in dev/package.json) installs itself on
// the first run.

const readline = require('node:readline');

// Zero setup: on the first run, install the pinned socket.io-client beside this file.
function loadClient() {
  try {
    return require('socket.io-client');
  } catch {
    process.stderr.write('smoke-socket-client: first run: installing socket.io-client (npm ci in dev/)...\n');
    const { spawnSync } = require('node:child_process');
    const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
    const r = spawnSync(npm, ['ci', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: __dirname, stdio: ['ignore', 'ignore', 'inherit'] });
    if (r.status !== 0) {
      process.stderr.write('smoke-socket-client: could not install socket.io-client: run `npm ci --prefix dev` and retry\n');
      process.exit(1);
    }
    return require('socket.io-client');
  }
}
const { io } = loadClient();

const NAME = 'smoke-socket-client';
const ACK_TIMEOUT_MS = 5000;
const CONNECT_TIMEOUT_MS = 5000;
const FETCH_TIMEOUT_MS = 5000;

const USAGE = `usage: node dev/smoke-socket-client.js [--token <jwt>]

environment:
  WS_URL       server base URL (default http://localhost:3000)
  WS_PATH      Socket.IO path (default /socket.io)
  TOKEN        client JWT to connect with (same as --token); without one, a token is
               requested from the server's GET /dev/token (development mode only)
  TEST_USER    user id for the development token (default smoke-user)
  TEST_VENDOR  vendor id: connect as a vendor (sub TEST_USER, vendorId TEST_VENDOR)
  TOKEN_TTL    lifetime in seconds of the development token (default: the server's, a day)`;

const HELP = `commands:
  ping                          test the connection (prints the pong ack)
  join <user|vendor> <id>       join a room, e.g. join user 123
  leave <user|vendor> <id>      leave a room
  chat <user|vendor> <id> <text...>   send a chat message (users write to vendors, vendors to users)
  typing <user|vendor> <id>     send a typing notice
  token <jwt>                   refresh this socket's token (auth:refresh)
  emit <event> [json]           send any event with a JSON payload, print the ack
  connect                       reconnect after the server closed the connection
  help                          show this help
  exit                          disconnect and exit (also Ctrl-D / end of input)`;

// ---------------------------------------------------------------------------
// Output: one line per thing, so that scripts (and tests) can read it line by line.

const interactive = Boolean(process.stdin.isTTY && process.stdout.isTTY);
let rl = null;
let rlOpen = false;

function out(line) {
  if (rl && rlOpen && interactive) {
    readline.clearLine(process.stdout, 0);
    readline.cursorTo(process.stdout, 0);
    process.stdout.write(`${line}\n`);
    rl.prompt(true);
  } else {
    process.stdout.write(`${line}\n`);
  }
}

const log = (word, rest = '') => out(`${new Date().toISOString()} ${word}${rest === '' ? '' : ` ${rest}`}`);

/** Compact JSON of one event argument (never throws). */
function compact(value) {
  if (value === undefined) return 'undefined';
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}

let socket = null;

/** Prints one line on stderr and exits non-zero. */
function die(message, code = 1) {
  if (rl && rlOpen && interactive) {
    readline.clearLine(process.stdout, 0);
    readline.cursorTo(process.stdout, 0);
  }
  process.stderr.write(`${NAME}: ${message}\n`);
  if (socket) socket.disconnect();
  process.exit(code);
}

// ---------------------------------------------------------------------------
// Configuration

function parseArgs(argv) {
  let token;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h') {
      process.stdout.write(`${USAGE}\n\n${HELP}\n`);
      process.exit(0);
    } else if (arg === '--token') {
      if (i + 1 >= argv.length || !argv[i + 1]) die('--token needs a value: --token <jwt>', 2);
      token = argv[++i];
    } else if (arg.startsWith('--token=')) {
      token = arg.slice('--token='.length);
      if (!token) die('--token needs a value: --token <jwt>', 2);
    } else {
      die(`unknown argument ${JSON.stringify(arg)}\n${USAGE}`, 2);
    }
  }
  return { token };
}

/** The server's base URL, from WS_URL; socket.io-client takes http(s) and ws(s) alike. */
function serverUrl(raw) {
  const text = /^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `http://${raw}`;
  let url;
  try {
    url = new URL(text);
  } catch {
    die(`WS_URL is not a URL: ${JSON.stringify(raw)} (e.g. http://localhost:3000)`, 2);
  }
  if (!['http:', 'https:', 'ws:', 'wss:'].includes(url.protocol)) {
    die(`WS_URL must be http(s):// or ws(s)://, not ${url.protocol}// (e.g. http://localhost:3000)`, 2);
  }
  if (url.pathname !== '/' && url.pathname !== '') {
    die(`WS_URL must be the server's base URL without a path (got ${url.pathname}); set WS_PATH for the Socket.IO path`, 2);
  }
  // The HTTP origin of the server, for /dev/token and for the socket.
  const httpProtocol = url.protocol === 'wss:' ? 'https:' : url.protocol === 'ws:' ? 'http:' : url.protocol;
  return `${httpProtocol}//${url.host}`;
}

/** What a fetch or transport error says, in one short phrase. */
function describeError(err) {
  if (!err) return 'unknown error';
  const cause = err.cause;
  if (cause) {
    if (cause.code && cause.message) return cause.message;
    if (Array.isArray(cause.errors) && cause.errors.length) return cause.errors.map((e) => e.message).join('; ');
    if (cause.message) return cause.message;
  }
  if (err.name === 'TimeoutError' || err.name === 'AbortError') return `no answer within ${FETCH_TIMEOUT_MS} ms`;
  return err.message || String(err);
}

/** Details of a socket.io-client connect_error that comes from the transport. */
function describeTransportError(err) {
  const parts = [err.message];
  const d = err.description;
  if (d instanceof Error) {
    parts.push(d.message);
  } else if (typeof d === 'number' && d > 0) {
    parts.push(`HTTP ${d}${d === 404 || d === 400 ? ': is WS_PATH right?' : ''}`);
  } else if (err.context && err.context.statusText instanceof Error) {
    parts.push(err.context.statusText.message);
  } else if (d && typeof d === 'object' && d.message) {
    parts.push(d.message);
  }
  return parts.length > 1 ? `${parts[0]} (${parts.slice(1).join('; ')})` : parts[0];
}

/** Reads the claims of a JWT without checking it (only to show the expected rooms). */
function decodeClaims(token) {
  const part = String(token).split('.')[1];
  if (!part) return null;
  try {
    const claims = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    return claims && typeof claims === 'object' ? claims : null;
  } catch {
    return null;
  }
}

function identityOf(claims) {
  if (!claims || claims.sub === undefined) return null;
  const role = claims.role || 'user';
  const sub = String(claims.sub);
  const vendorId = role === 'vendor' ? String(claims.vendorId != null ? claims.vendorId : sub) : undefined;
  return { sub, role, vendorId, exp: typeof claims.exp === 'number' ? claims.exp : undefined };
}

/** The rooms the server puts a socket in on connect. */
function ownRooms(identity) {
  if (!identity) return [];
  const rooms = [`user:${identity.sub}`];
  if (identity.role === 'vendor') rooms.push(`vendor:${identity.vendorId}`);
  return rooms;
}

function describeIdentity(identity) {
  if (!identity) return 'an unknown identity (the token could not be read)';
  return identity.role === 'vendor'
    ? `vendor ${identity.vendorId} (sub ${identity.sub})`
    : `${identity.role} ${identity.sub}`;
}

/** Asks the server's development endpoint for a token; throws a one-line Error on failure. */
async function devToken(base, { user, vendor, ttl }) {
  const url = new URL('/dev/token', base);
  url.searchParams.set('sub', user);
  if (vendor) {
    url.searchParams.set('role', 'vendor');
    url.searchParams.set('vendorId', vendor);
  } else {
    url.searchParams.set('role', 'user');
  }
  if (ttl) url.searchParams.set('ttl', ttl);
  let res;
  let text;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
    text = await res.text();
  } catch (err) {
    throw new Error(`cannot reach ${base}: ${describeError(err)}`);
  }
  if (res.status === 404) {
    throw new Error(
      `${base} is not in development mode (GET /dev/token answered 404): pass a token with TOKEN=<jwt> or --token <jwt>`,
    );
  }
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = null;
  }
  if (!res.ok || !body || typeof body.token !== 'string') {
    const detail = body && body.error && body.error.message ? body.error.message : text.slice(0, 200);
    throw new Error(`GET ${url.pathname} answered ${res.status}: ${detail}`);
  }
  return body;
}

// ---------------------------------------------------------------------------
// Main

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const base = serverUrl(process.env.WS_URL || 'http://localhost:3000');
  const path = process.env.WS_PATH || '/socket.io';
  const user = process.env.TEST_USER || 'smoke-user';
  const vendor = process.env.TEST_VENDOR || '';
  const ttl = process.env.TOKEN_TTL || '';
  if (ttl && !/^[1-9][0-9]*$/.test(ttl)) die(`TOKEN_TTL must be a number of seconds, not ${JSON.stringify(ttl)}`, 2);

  // Where the token comes from decides how a reconnect gets a fresh one.
  const given = args.token || process.env.TOKEN || '';
  let token;
  let identity;
  let source;
  if (given) {
    token = given;
    identity = identityOf(decodeClaims(token));
    source = args.token ? '--token' : 'TOKEN';
    if (process.env.TEST_USER || process.env.TEST_VENDOR) {
      log('note', `TEST_USER/TEST_VENDOR are ignored: the token from ${source} decides who this client is`);
    }
  } else {
    let minted;
    try {
      minted = await devToken(base, { user, vendor, ttl });
    } catch (err) {
      die(err.message);
    }
    token = minted.token;
    identity = { sub: minted.sub, role: minted.role, vendorId: minted.vendorId || undefined, exp: minted.exp };
    source = '/dev/token';
  }

  /** Before each (re)connect: a development token about to expire is replaced. */
  async function currentToken() {
    const soon = Math.floor(Date.now() / 1000) + 30;
    if (source === '/dev/token' && identity && identity.exp && identity.exp <= soon) {
      try {
        const minted = await devToken(base, { user, vendor, ttl });
        token = minted.token;
        identity.exp = minted.exp;
      } catch {
        // keep the old one: the server will say what is wrong
      }
    }
    return token;
  }

  log('connecting', `to ${base} (path ${path}) as ${describeIdentity(identity)}, token from ${source}`);

  // The latest position per room, from the events received; sent on every (re)connect
  // (socket.io-client calls the auth function again each time) so the server replays
  // what was missed meanwhile. Kept across reconnects and the `connect` command.
  const offsets = {};

  socket = io(base, {
    path,
    auth: (cb) => {
      currentToken().then((t) => cb({ token: t, offsets }));
    },
    forceNew: true,
    reconnection: true,
    reconnectionDelay: 1000,
    reconnectionDelayMax: 5000,
    timeout: CONNECT_TIMEOUT_MS,
  });

  let everConnected = false;
  const extraRooms = new Set();
  let resolveReady;
  const ready = new Promise((resolve) => {
    resolveReady = resolve;
  });

  socket.on('connect', () => {
    const transport = socket.io.engine && socket.io.engine.transport ? socket.io.engine.transport.name : '?';
    const rooms = ownRooms(identity);
    log(
      'connected',
      `socket=${socket.id} transport=${transport} sub=${identity ? identity.sub : '?'} role=${identity ? identity.role : '?'} rooms=${rooms.join(',') || '?'}`,
    );
    if (everConnected && extraRooms.size) {
      log('note', `rooms joined before the reconnect are not restored: ${[...extraRooms].join(',')} (join them again)`);
      extraRooms.clear();
    }
    everConnected = true;
    const engine = socket.io.engine;
    if (engine && engine.transport && engine.transport.name !== 'websocket') {
      engine.once('upgrade', (t) => log('upgraded', `transport=${t.name}`));
    }
    resolveReady();
  });

  socket.on('connect_error', (err) => {
    const message = (err && err.message) || String(err);
    if (message.startsWith('unauthorized')) {
      die(`the server refused the token: ${message}`);
    }
    const transportError = err && (err.type === 'TransportError' || message === 'timeout');
    if (!everConnected) {
      if (transportError && typeof err.description === 'number' && err.description > 0) {
        die(`no Socket.IO server at ${base}${path}: ${describeTransportError(err)}`);
      }
      if (transportError) die(`cannot reach ${base}${path}: ${describeTransportError(err)}`);
      die(`the server refused the connection: ${message}`);
    }
    // After a first connection, socket.io-client keeps retrying by itself.
    log('connect_error', transportError ? describeTransportError(err) : message);
  });

  socket.on('disconnect', (reason, details) => {
    let extra = '';
    if (details && details.description instanceof Error) extra = ` (${details.description.message})`;
    else if (typeof (details && details.description) === 'string') extra = ` (${details.description})`;
    else if (details && details.description) extra = ` (${compact(details.description)})`;
    if (reason === 'io server disconnect') {
      extra += ': the server closed this socket; it is not retried automatically (type "connect" to reconnect, or "exit")';
    } else if (reason !== 'io client disconnect') {
      extra += ': reconnecting automatically';
    }
    log('disconnected', `${reason}${extra}`);
  });

  socket.io.on('reconnect_attempt', (attempt) => log('reconnecting', `(attempt ${attempt})...`));
  socket.io.on('reconnect', (attempts) => log('reconnected', `after ${attempts} attempt${attempts === 1 ? '' : 's'}`));

  // Every event the server sends: timestamp, name, compact JSON of each argument.
  socket.onAny((event, ...eventArgs) => {
    log(event, eventArgs.map(compact).join(' '));
    const payload = eventArgs[0];
    if (payload && typeof payload === 'object' && payload.offsets && typeof payload.offsets === 'object') {
      Object.assign(offsets, payload.offsets);
    }
  });

  // After a reconnect with offsets the server replays what was missed, then says how it went.
  socket.on('recovery', (r) => {
    if (!r || typeof r !== 'object') return;
    if (r.recovered) {
      const n = Number(r.replayed) || 0;
      log('recovered', `${n} missed event${n === 1 ? '' : 's'}`);
    } else {
      const rooms = r.rooms && typeof r.rooms === 'object' ? Object.entries(r.rooms) : [];
      const statuses = rooms.map(([room, status]) => `${room} ${status}`).join(', ');
      log('could', `not recover: ${statuses || 'no room'} (events may be missing: an app reloads its state from the backend)`);
    }
  });

  // --- commands -----------------------------------------------------------

  function emitWithAck(event, payload) {
    // A token is a credential: the transcript shows only its start.
    const shown =
      event === 'auth:refresh' && payload && typeof payload.token === 'string'
        ? { ...payload, token: `${payload.token.slice(0, 10)}...` }
        : payload;
    log('sent', `${event} ${compact(shown)}`);
    if (!socket.connected) log('note', 'not connected: the event is sent when the connection is back');
    return new Promise((resolve) => {
      socket.timeout(ACK_TIMEOUT_MS).emit(event, payload, (err, ack) => {
        if (err) {
          log('ack', `${event} timeout (no answer within ${ACK_TIMEOUT_MS} ms)`);
          resolve(null);
        } else {
          log('ack', `${event} ${compact(ack)}`);
          resolve(ack);
        }
      });
    });
  }

  const usageError = (text) => log('error', `usage: ${text}`);

  async function run(line) {
    const trimmed = line.trim();
    if (!trimmed || trimmed.startsWith('#')) return;
    const [cmd, ...words] = trimmed.split(/\s+/);
    switch (cmd.toLowerCase()) {
      case 'ping':
        await emitWithAck('ping', {});
        return;
      case 'join':
      case 'leave': {
        if (words.length !== 2) return usageError(`${cmd} <user|vendor> <id>`);
        const [type, id] = words;
        const ack = await emitWithAck(cmd, { type, id });
        if (ack && ack.ok && cmd === 'join' && !ownRooms(identity).includes(ack.room)) extraRooms.add(ack.room);
        if (ack && ack.ok && cmd === 'leave') extraRooms.delete(ack.room);
        return;
      }
      case 'chat': {
        const m = /^\S+\s+(\S+)\s+(\S+)\s+(.+)$/.exec(trimmed);
        if (!m) return usageError('chat <user|vendor> <id> <text...>');
        const clientMsgId = `smoke-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
        await emitWithAck('chat:send', { to: { type: m[1], id: m[2] }, text: m[3], clientMsgId });
        return;
      }
      case 'typing': {
        if (words.length !== 2) return usageError('typing <user|vendor> <id>');
        await emitWithAck('chat:typing', { to: { type: words[0], id: words[1] } });
        return;
      }
      case 'token': {
        if (words.length !== 1) return usageError('token <jwt>');
        const ack = await emitWithAck('auth:refresh', { token: words[0] });
        if (ack && ack.ok) {
          // Reconnects use the new token from now on.
          token = words[0];
          source = 'the token command';
          if (identity) identity.exp = typeof ack.exp === 'number' ? ack.exp : identity.exp;
        }
        return;
      }
      case 'emit': {
        const m = /^\S+\s+(\S+)(?:\s+(.+))?$/.exec(trimmed);
        if (!m) return usageError('emit <event> [json]');
        let payload = {};
        if (m[2] !== undefined) {
          try {
            payload = JSON.parse(m[2]);
          } catch (err) {
            return log('error', `emit: the payload is not JSON: ${err.message}`);
          }
        }
        await emitWithAck(m[1], payload);
        return;
      }
      case 'connect':
        if (socket.connected) return log('note', 'already connected');
        log('connecting', `to ${base} (path ${path})`);
        socket.connect();
        return;
      case 'help':
      case '?':
        out(HELP);
        return;
      case 'exit':
      case 'quit':
        return quit();
      default:
        log('error', `unknown command ${JSON.stringify(cmd)}: type help`);
    }
  }

  let quitting = false;
  function quit(code = 0) {
    if (quitting) return;
    quitting = true;
    if (rl && rlOpen) rl.close();
    socket.disconnect();
    process.exit(code);
  }

  // Commands run one after the other, each after the previous one's ack, and only once
  // connected: `printf 'ping\njoin user u1\n' | node dev/smoke-socket-client.js` works.
  let queue = ready;
  rl = readline.createInterface({
    input: process.stdin,
    output: interactive ? process.stdout : undefined,
    terminal: interactive,
    prompt: '> ',
  });
  rl.on('line', (line) => {
    queue = queue
      .then(() => (quitting ? undefined : run(line)))
      .catch((err) => log('error', err && err.message ? err.message : String(err)))
      .then(() => {
        if (interactive && rlOpen && !quitting) rl.prompt(true);
      });
  });
  rlOpen = true;
  rl.on('close', () => {
    rlOpen = false;
    // End of input (Ctrl-D, or the end of a piped script): finish the queue, then leave.
    queue.then(() => quit(0));
  });
  rl.on('SIGINT', () => {
    process.stdout.write('\n');
    quit(0);
  });
  process.on('SIGINT', () => quit(130));
  process.on('SIGTERM', () => quit(143));

  await ready;
  if (interactive && rlOpen) {
    out('type "help" for the commands');
    rl.prompt(true);
  }
}

main().catch((err) => die(err && err.stack ? err.stack : String(err)));
