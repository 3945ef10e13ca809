'use strict';
// An HTTP-level proxy (node:http) on 127.0.0.1 for the tests: a gateway in front of a
// real fixrx-realtime that answers the first requests itself, as a load balancer does
// when the upstream is away (502) or slow (504), then forwards. Every answer that is not
// scripted is the real server's. (Not under test/: `node --test test/` does not run it.)

const http = require('node:http');

/**
 * Starts the proxy to 127.0.0.1:`targetPort`. `script` is consumed one entry per request:
 * - `{ reply: 502 }`: answered by the proxy; the server never sees the request;
 * - `{ forwardThenReply: 504 }`: forwarded, the server's answer read and thrown away,
 *   then this status answered (a gateway that gave up although the upstream acted);
 * then every request is forwarded. `requests` records each one:
 * `{ method, path, headers, body, action, upstreamStatus }`.
 */
async function startHttpProxy(targetPort, { script = [] } = {}) {
  const queue = [...script];
  const requests = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const body = Buffer.concat(chunks);
      const step = queue.shift() || { forward: true };
      const entry = { method: req.method, path: req.url, headers: req.headers, body: body.toString('utf8'), action: step, upstreamStatus: undefined };
      requests.push(entry);
      const gateway = (status) => {
        res.writeHead(status, { 'content-type': 'text/html', connection: 'close' });
        res.end(`<html><body>${status} from the test gateway</body></html>`);
      };
      if (step.reply) {
        gateway(step.reply);
        return;
      }
      try {
        const answer = await forward(targetPort, req, body);
        entry.upstreamStatus = answer.status;
        if (step.forwardThenReply) {
          gateway(step.forwardThenReply);
          return;
        }
        res.writeHead(answer.status, answer.headers);
        res.end(answer.body);
      } catch {
        gateway(502);
      }
    });
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    requests,
    close() {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** Sends the request on to the server; resolves its whole answer. */
function forward(port, req, body) {
  return new Promise((resolve, reject) => {
    const headers = { ...req.headers };
    delete headers.connection;
    const up = http.request({ host: '127.0.0.1', port, method: req.method, path: req.url, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const out = { ...res.headers };
        delete out.connection;
        delete out['transfer-encoding'];
        resolve({ status: res.statusCode, headers: out, body: Buffer.concat(chunks) });
      });
      res.on('error', reject);
    });
    up.on('error', reject);
    up.end(body);
  });
}

module.exports = { startHttpProxy };
