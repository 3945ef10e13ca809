'use strict';
// createClient: one server's address, bearer token and retry settings, validated once.
// The token lives in a non-enumerable slot so that logging a client never shows it.

const DEFAULT_TIMEOUT_MS = 5000;
/** The whole call, retries and waits included. */
const DEFAULT_DEADLINE_MS = 30000;
const DEFAULT_RETRIES = 6;
/** First backoff; doubles with each attempt, with jitter. */
const DEFAULT_MIN_BACKOFF_MS = 100;
/** Longest backoff between two attempts. */
const DEFAULT_MAX_BACKOFF_MS = 2000;
/** Longest wait a `Retry-After` may impose before one retry. */
const DEFAULT_MAX_RETRY_AFTER_MS = 10000;

const CLIENT = Symbol('fixrx.realtime.client');

function isPositiveNumber(v) {
  return typeof v === 'number' && Number.isFinite(v) && v > 0;
}

function checkUrl(url) {
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
  // Keep any path prefix (a server behind a reverse proxy under /realtime).
  return base.href.replace(/\/+$/, '');
}

function checkToken(token) {
  if (token === undefined || token === null || token === '') {
    throw new TypeError('createClient: `token` is required: the server\'s API_TOKEN (REST bearer token)');
  }
  if (typeof token !== 'string' || !/^[\x21-\x7e]+$/.test(token)) {
    throw new TypeError('createClient: `token` must be a string of printable ASCII without spaces');
  }
  return token;
}

/** The numeric settings, defaults filled in. */
function settings(options) {
  const out = {};
  for (const [name, dflt] of [
    ['timeoutMs', DEFAULT_TIMEOUT_MS],
    ['deadlineMs', DEFAULT_DEADLINE_MS],
  ]) {
    const v = options[name] === undefined ? dflt : options[name];
    if (!isPositiveNumber(v)) {
      throw new TypeError(`createClient: \`${name}\` must be a positive number of milliseconds, got ${v}`);
    }
    out[name] = v;
  }
  const retries = options.retries === undefined ? DEFAULT_RETRIES : options.retries;
  if (!Number.isInteger(retries) || retries < 0) {
    throw new TypeError(`createClient: \`retries\` must be an integer >= 0, got ${retries}`);
  }
  out.retries = retries;
  for (const [name, dflt] of [
    ['minBackoffMs', DEFAULT_MIN_BACKOFF_MS],
    ['maxBackoffMs', DEFAULT_MAX_BACKOFF_MS],
    ['maxRetryAfterMs', DEFAULT_MAX_RETRY_AFTER_MS],
  ]) {
    const v = options[name] === undefined ? dflt : options[name];
    if (!(typeof v === 'number' && Number.isFinite(v) && v >= 0)) {
      throw new TypeError(`createClient: \`${name}\` must be a number >= 0, got ${v}`);
    }
    out[name] = v;
  }
  return out;
}

/**
 * Creates a client of one fixrx-realtime server.
 * @param {{ url: string | URL, token: string, timeoutMs?: number, deadlineMs?: number,
 *           retries?: number, minBackoffMs?: number, maxBackoffMs?: number,
 *           maxRetryAfterMs?: number, onError?: (err: Error, info: object) => void }} options
 */
function createClient(options) {
  if (options === null || typeof options !== 'object') {
    throw new TypeError('createClient(options): options must be an object { url, token, timeoutMs?, deadlineMs?, retries? }');
  }
  const url = checkUrl(options.url);
  const token = checkToken(options.token);
  const tuning = settings(options);
  if (options.onError !== undefined && typeof options.onError !== 'function') {
    throw new TypeError('createClient: `onError` must be a function (err, info) => void');
  }
  if (typeof fetch !== 'function') {
    throw new Error('@fixrx/realtime-client needs a global fetch (Node.js 20 or later)');
  }
  return makeClient(url, token, tuning, options.onError);
}

/** A frozen client; the bearer token and error callback are kept in a non-enumerable slot. */
function makeClient(url, token, tuning, onError) {
  const client = { url, ...tuning };
  Object.defineProperty(client, CLIENT, { value: { authorization: `Bearer ${token}`, onError } });
  Object.defineProperty(client, Symbol.for('nodejs.util.inspect.custom'), {
    value: () =>
      `FixrxClient { url: '${url}', timeoutMs: ${tuning.timeoutMs}, deadlineMs: ${tuning.deadlineMs}, retries: ${tuning.retries} }`,
  });
  return Object.freeze(client);
}

/** The hidden part of a client; a TypeError naming `fn` when `client` is not one. */
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

/** The client's default `onError` for fire-and-forget calls; undefined when none or not a client. */
function defaultOnError(client) {
  const inner = client && typeof client === 'object' ? client[CLIENT] : undefined;
  return inner ? inner.onError : undefined;
}

module.exports = { createClient, internals, defaultOnError, isPositiveNumber };
