'use strict';
// One logical request: attempts, retries with backoff, the call's deadline and the
// caller's AbortSignal. Every attempt of a call sends the same bytes (so the same
// idempotency key): what is retried is decided here and only here.

const { FixrxError } = require('./errors.js');
const { internals, isPositiveNumber } = require('./client.js');

/** Answers a gateway or the server gives when it did not (or may not have) done the work. */
const RETRIED_STATUSES = new Set([502, 503, 504, 429]);
/** Of those, the ones that prove the server did not act: a gateway's 502/504 do not. */
const UNSENT_STATUSES = new Set([503, 429]);
const UNSENT_CODES = ['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH'];

/**
 * Reads a call's options `{ deadlineMs?, signal? }` (undefined: the client's defaults).
 * Throws a TypeError naming `fn` on a wrong value.
 */
function callOptions(fn, options) {
  if (options === undefined || options === null) return {};
  if (typeof options !== 'object') throw new TypeError(`${fn}: options must be an object { deadlineMs?, signal? }`);
  const { deadlineMs, signal } = options;
  if (options.onError !== undefined) {
    // A promise form given onError would still reject, unhandled: point to the right form.
    throw new TypeError(`${fn}: \`onError\` belongs to the fire-and-forget form: ${fn}.fire(client, data, { onError })`);
  }
  if (deadlineMs !== undefined && !isPositiveNumber(deadlineMs)) {
    throw new TypeError(`${fn}: \`deadlineMs\` must be a positive number of milliseconds, got ${deadlineMs}`);
  }
  if (
    signal !== undefined &&
    !(signal && typeof signal.aborted === 'boolean' && typeof signal.addEventListener === 'function')
  ) {
    throw new TypeError(`${fn}: \`signal\` must be an AbortSignal`);
  }
  return { deadlineMs, signal };
}

/** Rejects with the signal's reason, as fetch does (an AbortError for `abort()`). */
function abortReason(signal) {
  if (signal.reason !== undefined) return signal.reason;
  return new DOMException('This operation was aborted', 'AbortError');
}

/** Waits `ms`, or rejects at once when `signal` aborts. */
function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal && signal.aborted) {
      reject(abortReason(signal));
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortReason(signal));
    };
    const timer = setTimeout(() => {
      if (signal) signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    if (signal) signal.addEventListener('abort', onAbort, { once: true });
  });
}

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
    if (UNSENT_CODES.includes(e.code)) return true;
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

function deadlineError(init, path, deadlineMs, attempts, last) {
  const why = last ? `; last: ${last.message}` : '';
  return new FixrxError(
    `fixrx-realtime: ${init.method} ${path} did not succeed within its ${deadlineMs} ms deadline (${attempts} attempt${attempts === 1 ? '' : 's'}${why})`,
    { code: 'deadline_exceeded', attempts, cause: last },
  );
}

/**
 * One logical request, with retries, within `deadlineMs` of its start.
 * `retry`: 'always' — network errors, timeouts, 502, 503, 504 and 429 are retried (the
 * request is idempotent, or carries an idempotency key); 'unsent' — only failures that
 * prove the server did not act on the request (429, 503, connection refused).
 * Rejects with a FixrxError, or with `signal.reason` once the caller aborts.
 */
async function request(client, fn, { method, path, body, headers: extra, retry }, options = {}) {
  const { authorization } = internals(client, fn);
  const { signal } = options;
  const deadlineMs = options.deadlineMs === undefined ? client.deadlineMs : options.deadlineMs;
  const deadline = Date.now() + deadlineMs;
  if (signal && signal.aborted) throw abortReason(signal);
  const headers = { authorization, accept: 'application/json', ...extra };
  const init = { method, headers };
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const target = `${client.url}${path}`;
  let error;
  for (let attempt = 0; ; attempt += 1) {
    const attemptMs = Math.min(client.timeoutMs, deadline - Date.now());
    if (attemptMs <= 0) throw deadlineError(init, path, deadlineMs, attempt, error);
    try {
      return await attemptOnce(target, init, attemptMs, attempt + 1, signal);
    } catch (err) {
      if (!(err instanceof FixrxError)) throw err;
      error = err;
    }
    const cutShort = error.code === 'timeout' && attemptMs < client.timeoutMs;
    if (cutShort) throw deadlineError(init, path, deadlineMs, attempt + 1, error);
    const transport = error.status === undefined;
    const retriable =
      retry === 'always'
        ? transport || RETRIED_STATUSES.has(error.status)
        : UNSENT_STATUSES.has(error.status) || (transport && error.neverSent);
    delete error.neverSent;
    if (!retriable || attempt >= client.retries) throw error;
    let wait = backoff(client, attempt);
    if (error.status === 429 && error.retryAfterMs !== undefined) {
      // The server says when; a little jitter keeps many callers out of lockstep.
      wait = Math.min(client.maxRetryAfterMs, Math.max(wait, error.retryAfterMs + Math.random() * 100));
    }
    // A retry that could only start after the deadline is not made: give up now.
    if (Date.now() + wait >= deadline) throw deadlineError(init, path, deadlineMs, attempt + 1, error);
    await sleep(wait, signal);
  }
}

/** Reads the answer; resolves its JSON on 2xx, throws a FixrxError otherwise. */
async function readAnswer(res, attempts) {
  const text = await res.text();
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
    typeof err.message === 'string' ? err.message : `fixrx-realtime answered ${res.status} ${res.statusText || ''}`.trim();
  throw new FixrxError(message, {
    status: res.status,
    code,
    field: typeof err.field === 'string' ? err.field : undefined,
    retryAfterMs: res.status === 429 ? parseRetryAfter(res.headers.get('retry-after')) : undefined,
    attempts,
  });
}

/** One attempt within `timeoutMs`; the caller's `signal` aborts it at once. */
async function attemptOnce(target, init, timeoutMs, attempts, signal) {
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, timeoutMs);
  const onAbort = () => controller.abort();
  if (signal) signal.addEventListener('abort', onAbort, { once: true });
  const path = new URL(target).pathname;
  try {
    let res;
    try {
      res = await fetch(target, { ...init, signal: controller.signal });
      return await readAnswer(res, attempts);
    } catch (err) {
      if (err instanceof FixrxError) throw err;
      if (signal && signal.aborted) throw abortReason(signal);
      if (timedOut) {
        throw new FixrxError(`fixrx-realtime did not answer ${init.method} ${path} within ${Math.round(timeoutMs)} ms`, {
          code: 'timeout',
          attempts,
          cause: err,
        });
      }
      const e = new FixrxError(`cannot reach fixrx-realtime (${init.method} ${path}): ${describeCause(err)}`, {
        code: 'network',
        attempts,
        cause: err,
      });
      // Only internal: whether a request that must not be repeated may be retried.
      Object.defineProperty(e, 'neverSent', { value: neverSent(err), configurable: true });
      throw e;
    }
  } finally {
    clearTimeout(timer);
    if (signal) signal.removeEventListener('abort', onAbort);
  }
}

module.exports = { request, callOptions };
