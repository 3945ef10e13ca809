'use strict';
// createClientToken: the JWT a browser or app presents to fixrx-realtime's Socket.IO
// handshake, signed with node:crypto alone. The server reads `sub` (the user id,
// required), `exp` (required), `role` (`user`, `vendor`, `admin`; default `user`),
// `vendorId` (vendors; defaults to `sub`), and checks `nbf`, and `iss` / `aud` when it
// is configured with JWT_ISSUER / JWT_AUDIENCE (src/auth/jwt.rs). HS256 with JWT_SECRET,
// RS256 or ES256 with the private half of JWT_PUBLIC_KEY.

const crypto = require('node:crypto');

const DEFAULT_EXPIRES_IN_SECS = 3600;
const ROLES = ['user', 'vendor', 'admin'];
const ALGORITHMS = ['HS256', 'RS256', 'ES256'];

const b64url = (buf) => Buffer.from(buf).toString('base64url');

function isId(v) {
  return (typeof v === 'number' && Number.isSafeInteger(v)) || (typeof v === 'string' && v.length >= 1 && v.length <= 128);
}

/** The signing key and the algorithm it implies. */
function keyFor(key) {
  let keyObject;
  if (key instanceof crypto.KeyObject) {
    keyObject = key;
  } else if (typeof key === 'string' && key.trimStart().startsWith('-----BEGIN')) {
    try {
      keyObject = crypto.createPrivateKey(key);
    } catch (err) {
      throw new TypeError(`createClientToken: the PEM is not a private key node can read (${err.message})`);
    }
  } else if ((typeof key === 'string' || Buffer.isBuffer(key)) && key.length > 0) {
    return { alg: 'HS256', key };
  } else {
    throw new TypeError('createClientToken: key must be the JWT_SECRET (string), or a PEM / KeyObject private key');
  }
  if (keyObject.type === 'secret') return { alg: 'HS256', key: keyObject };
  if (keyObject.type !== 'private') {
    throw new TypeError('createClientToken: a public key cannot sign: give the private key (the server holds the public one)');
  }
  if (keyObject.asymmetricKeyType === 'rsa') return { alg: 'RS256', key: keyObject };
  const curve = keyObject.asymmetricKeyDetails && keyObject.asymmetricKeyDetails.namedCurve;
  if (keyObject.asymmetricKeyType === 'ec' && curve === 'prime256v1') return { alg: 'ES256', key: keyObject };
  throw new TypeError(
    `createClientToken: unsupported key (${keyObject.asymmetricKeyType}${curve ? ` ${curve}` : ''}): RSA for RS256, EC P-256 for ES256`,
  );
}

function sign(alg, key, data) {
  if (alg === 'HS256') return crypto.createHmac('sha256', key).update(data).digest();
  if (alg === 'RS256') return crypto.sign('sha256', Buffer.from(data), key);
  return crypto.sign('sha256', Buffer.from(data), { key, dsaEncoding: 'ieee-p1363' });
}

/** The payload: the caller's claims, checked against what the server accepts, `exp` and `iat` filled in. */
function payload(claims, options, nowSecs) {
  if (claims === null || typeof claims !== 'object' || Array.isArray(claims)) {
    throw new TypeError('createClientToken(claims, key): claims must be an object { sub, role?, vendorId?, exp? }');
  }
  if (!isId(claims.sub)) throw new TypeError('createClientToken: `sub` (the user id) must be a string of 1 to 128 characters or an integer');
  if (claims.role !== undefined && !ROLES.includes(claims.role)) {
    throw new TypeError(`createClientToken: \`role\` must be one of ${ROLES.join(', ')}, got ${JSON.stringify(claims.role)}`);
  }
  if (claims.vendorId !== undefined && !isId(claims.vendorId)) {
    throw new TypeError('createClientToken: `vendorId` must be a string of 1 to 128 characters or an integer');
  }
  const { expiresInSecs, issuer, audience } = options;
  if (claims.exp !== undefined && expiresInSecs !== undefined) {
    throw new TypeError('createClientToken: give `exp` in the claims or `expiresInSecs` in the options, not both');
  }
  if (claims.exp !== undefined && !(typeof claims.exp === 'number' && Number.isFinite(claims.exp))) {
    throw new TypeError('createClientToken: `exp` must be a number of unix seconds');
  }
  const ttl = expiresInSecs === undefined ? DEFAULT_EXPIRES_IN_SECS : expiresInSecs;
  if (!(typeof ttl === 'number' && Number.isFinite(ttl) && ttl > 0)) {
    throw new TypeError('createClientToken: `expiresInSecs` must be a positive number of seconds');
  }
  const out = { iat: nowSecs, ...claims };
  if (out.exp === undefined) out.exp = nowSecs + Math.floor(ttl);
  if (issuer !== undefined) out.iss = issuer;
  if (audience !== undefined) out.aud = audience;
  for (const k of Object.keys(out)) if (out[k] === undefined) delete out[k];
  return out;
}

/**
 * Signs a client token the server accepts. `key`: the JWT_SECRET (HS256), or the private
 * key (PEM or KeyObject) of JWT_PUBLIC_KEY: RSA for RS256, EC P-256 for ES256.
 * `exp` defaults to `expiresInSecs` (3600) from now.
 * @param {{ sub: string | number, role?: 'user' | 'vendor' | 'admin', vendorId?: string | number,
 *           exp?: number, nbf?: number, [claim: string]: unknown }} claims
 * @param {string | Buffer | import('node:crypto').KeyObject} key
 * @param {{ algorithm?: 'HS256' | 'RS256' | 'ES256', expiresInSecs?: number, issuer?: string,
 *           audience?: string, keyId?: string }} [options]
 * @returns {string} the compact JWT
 */
function createClientToken(claims, key, options = {}) {
  if (options === null || typeof options !== 'object') throw new TypeError('createClientToken: options must be an object');
  const signer = keyFor(key);
  if (options.algorithm !== undefined && options.algorithm !== signer.alg) {
    const known = ALGORITHMS.includes(options.algorithm) ? '' : ` (one of ${ALGORITHMS.join(', ')})`;
    throw new TypeError(`createClientToken: algorithm ${options.algorithm}${known} does not match the key, which signs ${signer.alg}`);
  }
  const header = { alg: signer.alg, typ: 'JWT' };
  if (options.keyId !== undefined) header.kid = String(options.keyId);
  const body = payload(claims, options, Math.floor(Date.now() / 1000));
  const data = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(body))}`;
  return `${data}.${b64url(sign(signer.alg, signer.key, data))}`;
}

module.exports = { createClientToken };
