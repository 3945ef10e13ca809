'use strict';
// verifyWebhook: the receiver's check of the server's backend hooks (presence webhooks,
// the chat hook). The server signs each request as
//   X-Webhook-Timestamp: <unix seconds>
//   X-Webhook-Signature: sha256=<hex HMAC-SHA256(WEBHOOK_SECRET, "<timestamp>.<raw body>")>
// (src/hooks/sign.rs). The timestamp is inside the MAC, so refusing old timestamps stops
// a captured request from being replayed later.

const crypto = require('node:crypto');

const TIMESTAMP_HEADER = 'x-webhook-timestamp';
const SIGNATURE_HEADER = 'x-webhook-signature';
const DEFAULT_TOLERANCE_SECS = 300;

/** One header's value from node's `req.headers`, a fetch `Headers`, or a plain object. */
function header(headers, name) {
  let value;
  if (typeof headers.get === 'function') {
    value = headers.get(name);
  } else {
    for (const key of Object.keys(headers)) {
      if (key.toLowerCase() === name) {
        value = headers[key];
        break;
      }
    }
  }
  if (Array.isArray(value)) return value.length === 1 ? value[0] : undefined; // twice: refuse
  return typeof value === 'string' ? value : undefined;
}

function bodyBytes(rawBody) {
  if (typeof rawBody === 'string') return Buffer.from(rawBody, 'utf8');
  if (Buffer.isBuffer(rawBody)) return rawBody;
  if (rawBody instanceof Uint8Array) return Buffer.from(rawBody.buffer, rawBody.byteOffset, rawBody.byteLength);
  if (rawBody instanceof ArrayBuffer) return Buffer.from(rawBody);
  throw new TypeError(
    'verifyWebhook(rawBody, headers, secret): rawBody must be the bytes received (Buffer or string), ' +
      'not parsed JSON: use express.raw({ type: "application/json" }) on the hook route',
  );
}

function secretList(secret) {
  const list = Array.isArray(secret) ? secret : [secret];
  if (list.length === 0) throw new TypeError('verifyWebhook: give at least one secret');
  return list.map((s) => {
    if ((typeof s !== 'string' && !(s instanceof Uint8Array)) || s.length === 0) {
      throw new TypeError('verifyWebhook: each secret must be a non-empty string or Buffer (the server\'s WEBHOOK_SECRET)');
    }
    return s;
  });
}

/**
 * Whether a hook request is the server's: the signature over the raw body is right for
 * one of `secret` (a list accepts the old and the new secret while it is rotated), and
 * its timestamp is within `toleranceSecs` (default 300) of `now` either way.
 * Compares in constant time. Returns false for anything missing or malformed; throws a
 * TypeError only for wrong arguments (e.g. a parsed body).
 * @param {Buffer | Uint8Array | ArrayBuffer | string} rawBody
 * @param {Record<string, string | string[] | undefined> | { get(name: string): string | null }} headers
 * @param {string | Buffer | Array<string | Buffer>} secret
 * @param {{ toleranceSecs?: number, now?: number }} [options] `now`: unix milliseconds
 */
function verifyWebhook(rawBody, headers, secret, options = {}) {
  const body = bodyBytes(rawBody);
  if (headers === null || typeof headers !== 'object') {
    throw new TypeError('verifyWebhook: headers must be req.headers (or a fetch Headers)');
  }
  const secrets = secretList(secret);
  const { toleranceSecs = DEFAULT_TOLERANCE_SECS, now = Date.now() } = options || {};
  if (!(typeof toleranceSecs === 'number' && toleranceSecs >= 0)) {
    throw new TypeError('verifyWebhook: `toleranceSecs` must be a number >= 0');
  }
  const timestamp = header(headers, TIMESTAMP_HEADER);
  const signature = header(headers, SIGNATURE_HEADER);
  if (timestamp === undefined || signature === undefined) return false;
  if (!/^\d{1,15}$/.test(timestamp)) return false;
  if (Math.abs(now / 1000 - Number(timestamp)) > toleranceSecs) return false;
  const given = Buffer.from(signature.trim(), 'utf8');
  let ok = false;
  for (const s of secrets) {
    const mac = crypto.createHmac('sha256', s).update(`${timestamp}.`).update(body).digest('hex');
    const expected = Buffer.from(`sha256=${mac}`, 'utf8');
    // Lengths are public (always 71 for a well-formed signature); the bytes are compared in constant time.
    if (given.length === expected.length && crypto.timingSafeEqual(given, expected)) ok = true;
  }
  return ok;
}

module.exports = { verifyWebhook, TIMESTAMP_HEADER, SIGNATURE_HEADER };
