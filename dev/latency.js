#!/usr/bin/env node
// REST-to-client latency: POST events to one instance, receive them on a socket.io
// client connected to another (or the same) instance, and print percentiles.
//
//   node dev/latency.js --post http://127.0.0.1:3001 --client http://127.0.0.1:3002 [--samples 500]
//
// Needs servers in development mode (it mints its token with GET /dev/token) or
// TOKEN=<jwt for sub "latency-user"> and API_TOKEN=<bearer>.
'use strict';
const { io } = require('socket.io-client');
const { performance } = require('node:perf_hooks');

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}

const postUrl = arg('post', 'http://127.0.0.1:3000');
const clientUrl = arg('client', postUrl);
const samples = Number(arg('samples', '500'));
const apiToken = process.env.API_TOKEN || 'dev-api-token';
const user = 'latency-user';

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

async function main() {
  let token = process.env.TOKEN;
  if (!token) {
    const res = await fetch(`${clientUrl}/dev/token?sub=${user}`);
    if (!res.ok) throw new Error(`GET /dev/token answered ${res.status}: pass TOKEN and API_TOKEN`);
    token = (await res.json()).token;
  }
  const socket = io(clientUrl, { auth: { token }, transports: ['websocket'] });
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('connect_error', reject);
  });
  const waiting = new Map();
  socket.on('booking:status_changed', (event) => {
    const done = waiting.get(event.booking.status);
    if (done) done(performance.now());
  });

  const latencies = [];
  for (let i = 0; i < samples + 20; i += 1) {
    const key = `s${i}`;
    const arrived = new Promise((resolve) => waiting.set(key, resolve));
    const t0 = performance.now();
    const res = await fetch(`${postUrl}/api/v1/events`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        type: 'booking:status_changed',
        booking: { id: `b${i}`, userId: user, vendorId: 'latency-vendor', status: key },
      }),
    });
    if (res.status !== 202) throw new Error(`POST answered ${res.status}: ${await res.text()}`);
    const t1 = await Promise.race([arrived, new Promise((r) => setTimeout(() => r(null), 5000))]);
    if (t1 === null) throw new Error(`event ${key} not delivered within 5 s`);
    waiting.delete(key);
    if (i >= 20) latencies.push(t1 - t0); // the first 20 warm up connections and caches
  }
  socket.close();
  latencies.sort((a, b) => a - b);
  const ms = (v) => Number(v.toFixed(3));
  const result = {
    post: postUrl,
    client: clientUrl,
    samples: latencies.length,
    median_ms: ms(percentile(latencies, 50)),
    p99_ms: ms(percentile(latencies, 99)),
    min_ms: ms(latencies[0]),
    max_ms: ms(latencies[latencies.length - 1]),
  };
  console.log(JSON.stringify(result));
}

main().catch((e) => {
  console.error(`latency: ${e.message}`);
  process.exit(1);
});
