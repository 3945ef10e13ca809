'use strict';
// @fixrx/realtime-client: the backend controllers' side of fixrx-realtime.
//
// One function per catalog event (the names of the original `src/socket/emitters.js`),
// a batch, chat, presence and disconnect, over the server's REST API. No runtime
// dependencies: Node 18+'s global fetch, AbortController and crypto.randomUUID.
//
// Delivery: every emit carries an idempotency key (the caller's `id`, or a UUID made
// once per call) and every retry reuses it, so a retried emit is emitted at most once.

const crypto = require('node:crypto');

const DEFAULT_TIMEOUT_MS = 5000;
const DEFAULT_RETRIES = 6;
/** First backoff; doubles with each attempt, with jitter. */
const DEFAULT_MIN_BACKOFF_MS = 100;
/** Longest backoff between two attempts. */
const DEFAULT_MAX_BACKOFF_MS = 2000;
/** Longest wait a `Retry-After` may impose before one retry. */
const DEFAULT_MAX_RETRY_AFTER_MS = 10000;

const CLIENT = Symbol('fixrx.realtime.client');

/** Every failure of this package: an HTTP error answer, or a transport failure. */
class FixrxError extends Error {
  /**
   * @param {string} message
   * @param {{ status?: number, code: string, field?: string, retryAfterMs?: number,
   *           attempts?: number, cause?: unknown }} details
   */
  constructor(message, { status, code, field, retryAfterMs, attempts, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'FixrxError';
    /** HTTP status of the server's answer; undefined for transport failures. */
    this.status = status;
    /** The server's `error.code` (e.g. `validation_failed`), or `network` / `timeout`. */
    this.code = code;
    /** The offending field on a `422`, when the server names one. */
    this.field = field;
    /** On `429`: the server's `Retry-After`, in milliseconds. */
    this.retryAfterMs = retryAfterMs;
    /** How many attempts were made before this error was thrown. */
    this.attempts = attempts;
  }
}

// ---------------------------------------------------------------------------
// The client

function isPositiveNumber(v) {
  return typeof v === 'number' && Number.isFinite(v) && v > 0;
}

/**
 * Creates a client of one fixrx-realtime server.
 * @param {{ url: string, token: string, timeoutMs?: number, retries?: number,
 *           minBackoffMs?: number, maxBackoffMs?: number, maxRetryAfterMs?: number }} options
 */
function createClient(options) {
  if (options === null || typeof options !== 'object') {
    throw new TypeError('createClient(options): options must be an object { url, token, timeoutMs?, retries? }');
  }
  const { url, token } = options;
  if (url === undefined || url === null || url === '') {
    throw new TypeError('createClient: `url` is required, e.g. "http://localhost:3000" (the fixrx-realtime server)');
  }
  if (typeof url !== 'string' && !(url instanceof URL)) {
    throw new TypeError('createClient: `url` must be a string such as "http://localhost:3000"');
  }
  let base;
  try {
    base = new URL(String(url));
  } catch {
    throw new TypeError(`createClient: \`url\` is not a valid URL: ${JSON.stringify(String(url))}`);
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') {
    throw new TypeError(`createClient: \`url\` must be http:// or https://, got ${base.protocol}`);
  }
  if (base.search || base.hash) {
    throw new TypeError('createClient: `url` must not carry a query string or a fragment');
  }
  if (token === undefined || token === null || token === '') {
    throw new TypeError('createClient: `token` is required: the server\'s API_TOKEN (REST bearer token)');
  }
  if (typeof token !== 'string' || !/^[\x21-\x7e]+$/.test(token)) {
    throw new TypeError('createClient: `token` must be a string of printable ASCII without spaces');
  }
  const timeoutMs = options.timeoutMs === undefined ? DEFAULT_TIMEOUT_MS : options.timeoutMs;
  if (!isPositiveNumber(timeoutMs)) {
    throw new TypeError(`createClient: \`timeoutMs\` must be a positive number of milliseconds, got ${timeoutMs}`);
  }
  const retries = options.retries === undefined ? DEFAULT_RETRIES : options.retries;
  if (!Number.isInteger(retries) || retries < 0) {
    throw new TypeError(`createClient: \`retries\` must be an integer >= 0, got ${retries}`);
  }
  const tuning = {};
  for (const [name, dflt] of [
    ['minBackoffMs', DEFAULT_MIN_BACKOFF_MS],
    ['maxBackoffMs', DEFAULT_MAX_BACKOFF_MS],
    ['maxRetryAfterMs', DEFAULT_MAX_RETRY_AFTER_MS],
  ]) {
    const v = options[name] === undefined ? dflt : options[name];
    if (!(typeof v === 'number' && Number.isFinite(v) && v >= 0)) {
      throw new TypeError(`createClient: \`${name}\` must be a number >= 0, got ${v}`);
    }
    tuning[name] = v;
  }
  if (typeof fetch !== 'function') {
    throw new Error('@fixrx/realtime-client needs a global fetch (Node.js 18 or later)');
  }
  // Keep any path prefix (a server behind a reverse proxy under /realtime).
  return makeClient(base.href.replace(/\/+$/, ''), token, timeoutMs, retries, tuning);
}

/** A frozen client; the bearer token is kept in a non-enumerable slot (never logged). */
function makeClient(url, token, timeoutMs, retries, tuning) {
  const client = { url, timeoutMs, retries, ...tuning };
  Object.defineProperty(client, CLIENT, { value: { authorization: `Bearer ${token}` } });
  Object.defineProperty(client, Symbol.for('nodejs.util.inspect.custom'), {
    value: () => `FixrxClient { url: '${url}', timeoutMs: ${timeoutMs}, retries: ${retries} }`,
  });
  return Object.freeze(client);
}

function internals(client, fn) {
  const inner = client && typeof client === 'object' ? client[CLIENT] : undefined;
  if (!inner) {
    const hint =
      client && typeof client === 'object' && (typeof client.to === 'function' || typeof client.emit === 'function')
        ? ' (this looks like a Socket.IO server: pass the client from createClient({ url, token }) instead of io)'
        : '';
    throw new TypeError(`${fn}: the first argument must be a client from createClient()${hint}`);
  }
  return inner;
}

// ---------------------------------------------------------------------------
// Requests, retries

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Exponential backoff with "equal jitter": half fixed, half random. */
function backoff(client, attempt) {
  const ceiling = Math.min(client.maxBackoffMs, client.minBackoffMs * 2 ** attempt);
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

/** `Retry-After` in ms: delta-seconds or an HTTP date; undefined when absent or unreadable. */
function parseRetryAfter(value) {
  if (value === null || value === undefined || value === '') return undefined;
  const trimmed = String(value).trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Number(trimmed) * 1000;
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

/** Whether a fetch failure proves that the request never reached the server. */
function neverSent(err) {
  for (let e = err, depth = 0; e && depth < 5; e = e.cause, depth += 1) {
    if (['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH'].includes(e.code)) return true;
  }
  return false;
}

function describeCause(err) {
  const parts = [];
  for (let e = err, depth = 0; e && depth < 5; e = e.cause, depth += 1) {
    const text = e.code ? `${e.message} (${e.code})` : e.message;
    if (text && !parts.includes(text)) parts.push(text);
  }
  return parts.join(': ') || String(err);
}

/**
 * One logical request, with retries.
 * `retry`: 'always' — network errors, timeouts, 503 and 429 are retried (the request
 * is idempotent, or carries an idempotency key); 'unsent' — only failures that prove
 * the server did not act on the request (429, 503, connection refused).
 */
async function request(client, fn, { method, path, body, retry }) {
  const { authorization } = internals(client, fn);
  const headers = { authorization, accept: 'application/json' };
  let payload;
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  const target = `${client.url}${path}`;
  for (let attempt = 0; ; attempt += 1) {
    const last = attempt >= client.retries;
    let error;
    let wait;
    try {
      return await attemptOnce(target, { method, headers, body: payload }, client.timeoutMs, attempt + 1);
    } catch (err) {
      if (!(err instanceof FixrxError)) throw err;
      error = err;
    }
    const transport = error.status === undefined;
    const retriable =
      error.status === 503 ||
      error.status === 429 ||
      (transport && (retry === 'always' || (retry === 'unsent' && error.neverSent)));
    if (!retriable || last) {
      delete error.neverSent;
      throw error;
    }
    wait = backoff(client, attempt);
    if (error.status === 429 && error.retryAfterMs !== undefined) {
      // The server says when; a little jitter keeps many callers out of lockstep.
      wait = Math.min(client.maxRetryAfterMs, Math.max(wait, error.retryAfterMs + Math.random() * 100));
    }
    await sleep(wait);
  }
}

async function attemptOnce(target, init, timeoutMs, attempts) {
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, timeoutMs);
  try {
    let res;
    let text;
    try {
      res = await fetch(target, { ...init, signal: controller.signal });
      text = await res.text();
    } catch (err) {
      if (timedOut) {
        throw new FixrxError(`fixrx-realtime did not answer ${init.method} ${new URL(target).pathname} within ${timeoutMs} ms`, {
          code: 'timeout',
          attempts,
          cause: err,
        });
      }
      const e = new FixrxError(
        `cannot reach fixrx-realtime (${init.method} ${new URL(target).pathname}): ${describeCause(err)}`,
        { code: 'network', attempts, cause: err },
      );
      // Only internal: whether a request that must not be repeated may be retried.
      Object.defineProperty(e, 'neverSent', { value: neverSent(err), configurable: true });
      throw e;
    }
    let json;
    try {
      json = text === '' ? undefined : JSON.parse(text);
    } catch {
      json = undefined;
    }
    if (res.ok) {
      if (json === undefined) {
        throw new FixrxError(`fixrx-realtime answered ${res.status} without a JSON body`, {
          status: res.status,
          code: 'invalid_response',
          attempts,
        });
      }
      return json;
    }
    const err = json && typeof json === 'object' && json.error && typeof json.error === 'object' ? json.error : {};
    const code = typeof err.code === 'string' ? err.code : `http_${res.status}`;
    const message =
      typeof err.message === 'string'
        ? err.message
        : `fixrx-realtime answered ${res.status} ${res.statusText || ''}`.trim();
    throw new FixrxError(message, {
      status: res.status,
      code,
      field: typeof err.field === 'string' ? err.field : undefined,
      retryAfterMs: res.status === 429 ? parseRetryAfter(res.headers.get('retry-after')) : undefined,
      attempts,
    });
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------
// Events

const EVENTS = [
  ['emitServiceCreated', 'service:created', 'service'],
  ['emitServiceUpdated', 'service:updated', 'service'],
  ['emitServiceStatusChanged', 'service:status_changed', 'service'],
  ['emitBookingCreated', 'booking:created', 'booking'],
  ['emitBookingStatusChanged', 'booking:status_changed', 'booking'],
  ['emitBookingCancelled', 'booking:cancelled', 'booking'],
  ['emitPaymentCompleted', 'payment:completed', 'payment'],
  ['emitPaymentFailed', 'payment:failed', 'payment'],
];

/** The catalog: event type to its entity key. */
const EVENT_TYPES = Object.freeze(Object.fromEntries(EVENTS.map(([, type, key]) => [type, key])));

/** A fresh idempotency key. */
function newEventId() {
  return crypto.randomUUID();
}

/** The event as sent: `undefined` members dropped, `id` always set. */
function envelope(type, data) {
  const event = { type };
  for (const [k, v] of Object.entries(data)) {
    if (k !== 'type' && v !== undefined) event[k] = v;
  }
  if (event.id === undefined || event.id === null) event.id = newEventId();
  return event;
}

function makeEmitter(name, type, entityKey) {
  const emit = async function (client, data) {
    internals(client, name);
    if (data === null || typeof data !== 'object' || Array.isArray(data)) {
      throw new TypeError(`${name}(client, data): data must be an object { ${entityKey}, actor?, ... }`);
    }
    // The key is made once per call: every retry sends the same one.
    return request(client, name, { method: 'POST', path: '/api/v1/events', body: envelope(type, data), retry: 'always' });
  };
  Object.defineProperty(emit, 'name', { value: name });
  return emit;
}

const emitters = Object.fromEntries(EVENTS.map(([name, type, key]) => [name, makeEmitter(name, type, key)]));

/**
 * Emits 1 to 500 events in one request, all or nothing, in order. Each event is a full
 * envelope `{ type, service | booking | payment, ... }`; one without an `id` gets one.
 */
async function emitBatch(client, events) {
  internals(client, 'emitBatch');
  if (!Array.isArray(events)) throw new TypeError('emitBatch(client, events): events must be an array');
  const body = {
    events: events.map((e, i) => {
      if (e === null || typeof e !== 'object' || Array.isArray(e)) {
        throw new TypeError(`emitBatch: events[${i}] must be an event object { type, ... }`);
      }
      if (typeof e.type !== 'string') throw new TypeError(`emitBatch: events[${i}].type must be an event type string`);
      return envelope(e.type, e);
    }),
  };
  const answer = await request(client, 'emitBatch', {
    method: 'POST',
    path: '/api/v1/events/batch',
    body,
    retry: 'always',
  });
  return answer.events;
}

// ---------------------------------------------------------------------------
// Chat, presence, disconnect

/**
 * Posts a chat message with an explicit sender. The server has no idempotency key for
 * chat, so this is retried only when the answer proves the message was not relayed:
 * 429, 503, or a connection that could not be opened. A timeout or a connection lost
 * after the request was sent throws (`timeout` / `network`) without a retry: the
 * message may have been relayed.
 */
async function sendChatMessage(client, message) {
  internals(client, 'sendChatMessage');
  if (message === null || typeof message !== 'object' || Array.isArray(message)) {
    throw new TypeError('sendChatMessage(client, message): message must be an object { from, to, text, clientMsgId? }');
  }
  const body = {};
  for (const k of ['from', 'to', 'text', 'clientMsgId']) if (message[k] !== undefined) body[k] = message[k];
  return request(client, 'sendChatMessage', { method: 'POST', path: '/api/v1/chat/messages', body, retry: 'unsent' });
}

function checkId(fn, what, id) {
  if (typeof id === 'number' && Number.isInteger(id)) return String(id);
  if (typeof id !== 'string' || id === '') throw new TypeError(`${fn}: ${what} must be a non-empty string`);
  return id;
}

/** Sockets authenticated as that user or vendor, on every instance. */
async function presence(client, kind, id) {
  internals(client, 'presence');
  if (kind !== 'user' && kind !== 'vendor') {
    throw new TypeError(`presence(client, kind, id): kind must be "user" or "vendor", got ${JSON.stringify(kind)}`);
  }
  const path = `/api/v1/presence/${kind}/${encodeURIComponent(checkId('presence', 'id', id))}`;
  return request(client, 'presence', { method: 'GET', path, retry: 'always' });
}

/**
 * Disconnects every socket of a user (logout, ban). Retried like an emit: disconnecting
 * twice has the effect of once, though a retry may then report `disconnected: 0`.
 */
async function disconnectUser(client, userId) {
  internals(client, 'disconnectUser');
  const path = `/api/v1/users/${encodeURIComponent(checkId('disconnectUser', 'userId', userId))}/disconnect`;
  return request(client, 'disconnectUser', { method: 'POST', path, retry: 'always' });
}

module.exports = {
  createClient,
  FixrxError,
  EVENT_TYPES,
  ...emitters,
  emitBatch,
  sendChatMessage,
  presence,
  disconnectUser,
};
