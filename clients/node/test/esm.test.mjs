// The ESM entry: `import { ... } from '@fixrx/realtime-client'` (the package's own name,
// through its exports map) gives the same functions as require(), and they work.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import realtime, { createClient, emitServiceCreated, presence, FixrxError } from '@fixrx/realtime-client';
import * as byPath from '../index.mjs';

const require = createRequire(import.meta.url);
const h = require('../../../tests/js/test/helpers.js');
const cjs = require('@fixrx/realtime-client');

let server;
after(async () => {
  h.closeAll();
  if (server) await server.stop();
});

test('the ESM entry exports what the CommonJS entry exports', () => {
  assert.equal(createClient, cjs.createClient);
  assert.equal(FixrxError, cjs.FixrxError);
  assert.equal(realtime, cjs);
  assert.deepEqual(Object.keys(byPath).filter((k) => k !== 'default').sort(), Object.keys(cjs).sort());
  for (const key of Object.keys(cjs)) assert.equal(byPath[key], cjs[key], key);
});

test('an ESM import emits to a real socket', async () => {
  server = await h.startServer();
  const client = createClient({ url: server.url, token: h.API_TOKEN });
  const v = h.uid('v');
  const vendor = await h.connect(server, { token: h.vendorToken(h.uid('owner'), v) });
  const answer = await emitServiceCreated(client, { service: { id: h.uid('s'), vendorId: v } });
  await vendor.waitFor('service:created', (e) => e.id === answer.id);
  assert.deepEqual(await presence(client, 'vendor', v), { online: true, connections: 1 });
  await h.expectNothing(vendor, 'service:created', (e) => e.id !== answer.id);
});
