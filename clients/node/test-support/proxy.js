'use strict';
// A small TCP proxy (node:net) on 127.0.0.1 for the tests: put between the client and a
// real fixrx-realtime (or between fixrx-realtime and a real Redis) to lose answers,
// hold them, or cut the link. It answers nothing by itself: every byte that reaches
// either side comes from the real peer. (Not under test/, so that `node --test test/`
// does not run it as a test file.)

const net = require('node:net');

/**
 * Starts a proxy to 127.0.0.1:`targetPort`, listening on 127.0.0.1:`port` (default: any
 * free port). Modes, set with `setMode`:
 * - `forward`: bytes go both ways unchanged;
 * - `drop-response`: the next request is forwarded, but when the server's answer
 *   starts, both connections are destroyed: the client never sees it (then the mode
 *   is back to `forward`);
 * - `hold-response`: the next request is forwarded, its answer held back for good
 *   (the client times out; then back to `forward`);
 * - `hold-responses`: the same for every request, until the mode is changed;
 * - `down`: every open connection is cut, and new ones are closed at once.
 * `requests` counts the HTTP requests that went through (request lines seen),
 * `connections` the connections accepted (refused ones in `down` mode included).
 */
async function startProxy(targetPort, { port: listenPort = 0 } = {}) {
  let mode = 'forward';
  let requests = 0;
  let connections = 0;
  const open = new Set();

  const server = net.createServer((downstream) => {
    connections += 1;
    if (mode === 'down') {
      downstream.destroy();
      return;
    }
    // The mode in force when a request goes through decides what happens to its answer.
    let armed = null;
    const upstream = net.connect(targetPort, '127.0.0.1');
    const pair = { downstream, upstream };
    open.add(pair);
    const close = () => {
      open.delete(pair);
      downstream.destroy();
      upstream.destroy();
    };
    downstream.on('data', (chunk) => {
      if (/^(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) \//.test(chunk.toString('latin1', 0, 8))) {
        requests += 1;
        if (mode === 'drop-response' || mode === 'hold-response') {
          armed = mode;
          mode = 'forward';
        } else if (mode === 'hold-responses') {
          armed = 'hold-response';
        }
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      if (armed === 'drop-response') {
        close();
        return;
      }
      if (armed === 'hold-response') return;
      downstream.write(chunk);
    });
    downstream.on('error', close);
    upstream.on('error', close);
    downstream.on('close', close);
    upstream.on('close', close);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(listenPort, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    get requests() {
      return requests;
    },
    get connections() {
      return connections;
    },
    get mode() {
      return mode;
    },
    setMode(next) {
      mode = next;
      if (next === 'down') {
        for (const { downstream, upstream } of open) {
          downstream.destroy();
          upstream.destroy();
        }
        open.clear();
      }
    },
    close() {
      for (const { downstream, upstream } of open) {
        downstream.destroy();
        upstream.destroy();
      }
      open.clear();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** The value of `fixrx_http_requests_total` for one route and status (0 when absent). */
async function requestCount(server, { method = 'POST', route, status }) {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const want = `fixrx_http_requests_total{method="${method}",route="${route}",status="${status}"} `;
  const line = text.split('\n').find((l) => l.startsWith(want));
  return line ? Number(line.slice(want.length)) : 0;
}

module.exports = { startProxy, requestCount };
