'use strict';
// A real HTTP receiver for the server's backend hooks: it checks the signature of
// every request the way a backend should (HMAC-SHA256 over "<timestamp>.<raw body>",
// compared with crypto.timingSafeEqual), records what came, and answers as the test
// says (a status and body, a delay, or no answer at all).

const crypto = require('node:crypto');
const http = require('node:http');

const WEBHOOK_SECRET = 'js-suite-webhook-secret-0123456789';

/** The check a backend makes; true when the signature is the server's. */
function verify(secret, headers, raw) {
  const timestamp = headers['x-webhook-timestamp'];
  const signature = headers['x-webhook-signature'];
  if (typeof timestamp !== 'string' || typeof signature !== 'string') return false;
  const expected = `sha256=${crypto.createHmac('sha256', secret).update(`${timestamp}.`).update(raw).digest('hex')}`;
  const a = Buffer.from(signature);
  const b = Buffer.from(expected);
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}

/**
 * Starts a receiver on 127.0.0.1:0. `answer(request)` returns what to answer:
 * `{ status, body, delayMs }` (body: an object sent as JSON), or `'hang'` for no answer.
 * Resolves { url, requests, close }; each request is
 * { at, path, headers, raw, body, valid, status }.
 */
async function startReceiver(answer = () => ({ status: 200 }), { secret = WEBHOOK_SECRET } = {}) {
  const requests = [];
  const hanging = new Set();
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      let body = null;
      try {
        body = JSON.parse(raw.toString('utf8'));
      } catch {
        // recorded as null: the test sees it
      }
      const entry = { at: Date.now(), method: req.method, path: req.url, headers: req.headers, raw, body, valid: verify(secret, req.headers, raw), status: null };
      requests.push(entry);
      const reply = answer(entry);
      if (reply === 'hang') {
        hanging.add(res);
        res.on('close', () => hanging.delete(res));
        return;
      }
      const { status = 200, body: out, delayMs = 0 } = reply || {};
      entry.status = status;
      setTimeout(() => {
        if (res.destroyed) return;
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(out === undefined ? '' : JSON.stringify(out));
      }, delayMs);
    });
  });
  server.keepAliveTimeout = 30000;
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}/hooks`,
    requests,
    /** The presence webhooks received for `who` ("user:<id>" / "vendor:<id>"). */
    presence(who) {
      return requests.filter((r) => r.body && r.body.data && `${r.body.data.type}:${r.body.data.id}` === who);
    },
    async close() {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

module.exports = { startReceiver, verify, WEBHOOK_SECRET };
