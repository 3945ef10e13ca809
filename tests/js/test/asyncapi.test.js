'use strict';
// docs/asyncapi.yaml: a valid AsyncAPI 3 document (checked with @asyncapi/parser), and
// true to the running server: the events a client receives carry exactly the names the
// document's `send` operations give, with payloads its schemas accept, and the acks of
// the client events match their documented `reply`.

const { describe, it, before } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { isDeepStrictEqual } = require('node:util');
const { Parser } = require('@asyncapi/parser');
const h = require('./helpers');

const DOC_PATH = path.resolve(__dirname, '..', '..', '..', 'docs', 'asyncapi.yaml');

/** Spectral severities, as @asyncapi/parser reports them. */
const ERROR = 0;
const WARNING = 1;

const ADMIN_TOKEN = 'js-suite-admin-token-0123456789abcdef';

let server;
h.serverPerFile(
  (started) => {
    server = started;
  },
  { ADMIN_TOKEN },
);

/** { document, diagnostics }, parsed once for the whole file. */
let parsed;
before(async () => {
  parsed = await new Parser().parse(fs.readFileSync(DOC_PATH, 'utf8'));
});

const describeDiagnostic = (d) => `${d.code} at ${(d.path || []).join('.') || '(root)'}: ${d.message}`;

function doc() {
  assert.ok(parsed.document, `docs/asyncapi.yaml did not parse: ${parsed.diagnostics.map(describeDiagnostic).join('; ')}`);
  return parsed.document;
}

/** The messages of the document's operations with `action`: [{ name, payload, tags }]. */
function operationMessages(action) {
  const ops = action === 'send' ? doc().operations().filterBySend() : doc().operations().filterByReceive();
  return ops.flatMap((op) =>
    op.messages().all().map((m) => ({
      name: m.name(),
      payload: m.payload() ? m.payload().json() : true,
      tags: m.tags().all().map((t) => t.name()),
      operation: op,
    })),
  );
}

/** The payload schema of the server event `name`. */
function sentSchema(name) {
  const found = operationMessages('send').find((m) => m.name === name);
  assert.ok(found, `the document has no send message named "${name}"`);
  return found.payload;
}

/** The ack schema of the client event `name` (its operation's reply). */
function ackSchema(name) {
  const found = operationMessages('receive').find((m) => m.name === name);
  assert.ok(found, `the document has no receive message named "${name}"`);
  const reply = found.operation.reply();
  assert.ok(reply, `the operation receiving "${name}" has no reply`);
  const [ack] = reply.messages().all();
  assert.ok(ack, `the reply of "${name}" has no message`);
  return ack.payload().json();
}

// ---------------------------------------------------------------------------
// A small JSON Schema validator: just the keywords the document uses (checked by the
// test below, so a new keyword cannot be silently ignored).

const SUPPORTED = new Set([
  'type', 'const', 'enum', 'required', 'properties', 'additionalProperties', 'propertyNames',
  'allOf', 'oneOf', 'anyOf', 'minLength', 'maxLength', 'pattern', 'format', 'minimum',
]);
const ANNOTATIONS = new Set(['description', 'title', 'examples', 'default', '$id']);

function unsupportedKeywords(schema, at = '$', out = []) {
  if (typeof schema !== 'object' || schema === null) return out;
  for (const [key, value] of Object.entries(schema)) {
    if (key.startsWith('x-') || ANNOTATIONS.has(key)) continue;
    if (!SUPPORTED.has(key)) out.push(`${at}.${key}`);
    if (key === 'properties') for (const [k, s] of Object.entries(value)) unsupportedKeywords(s, `${at}.properties.${k}`, out);
    if (key === 'additionalProperties' || key === 'propertyNames') unsupportedKeywords(value, `${at}.${key}`, out);
    if (key === 'allOf' || key === 'oneOf' || key === 'anyOf') value.forEach((s, i) => unsupportedKeywords(s, `${at}.${key}[${i}]`, out));
  }
  return out;
}

function typeOf(v) {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

const DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

/** The errors of `value` against `schema` (empty when it is valid). */
function validate(schema, value, at = '$') {
  if (schema === true || schema === undefined) return [];
  if (schema === false) return [`${at}: no value allowed`];
  const errors = [];
  const t = typeOf(value);
  if (schema.type !== undefined) {
    const types = [].concat(schema.type);
    if (!types.some((x) => x === t || (x === 'number' && t === 'integer'))) {
      return [`${at}: expected ${types.join('|')}, got ${t} ${JSON.stringify(value)}`];
    }
  }
  if ('const' in schema && !isDeepStrictEqual(schema.const, value)) {
    errors.push(`${at}: expected ${JSON.stringify(schema.const)}, got ${JSON.stringify(value)}`);
  }
  if (schema.enum && !schema.enum.some((e) => isDeepStrictEqual(e, value))) {
    errors.push(`${at}: ${JSON.stringify(value)} not one of ${JSON.stringify(schema.enum)}`);
  }
  if (t === 'string') {
    const chars = [...value].length;
    if (schema.minLength !== undefined && chars < schema.minLength) errors.push(`${at}: shorter than ${schema.minLength}`);
    if (schema.maxLength !== undefined && chars > schema.maxLength) errors.push(`${at}: longer than ${schema.maxLength}`);
    if (schema.pattern !== undefined && !new RegExp(schema.pattern, 'u').test(value)) {
      errors.push(`${at}: ${JSON.stringify(value)} does not match ${schema.pattern}`);
    }
    if (schema.format === 'date-time' && !(DATE_TIME.test(value) && !Number.isNaN(Date.parse(value)))) {
      errors.push(`${at}: ${JSON.stringify(value)} is not an RFC 3339 date-time`);
    }
  }
  if ((t === 'integer' || t === 'number') && schema.minimum !== undefined && value < schema.minimum) {
    errors.push(`${at}: below ${schema.minimum}`);
  }
  if (t === 'object') {
    for (const key of schema.required || []) if (!(key in value)) errors.push(`${at}: missing "${key}"`);
    const props = schema.properties || {};
    for (const [key, v] of Object.entries(value)) {
      const where = `${at}.${key}`;
      if (schema.propertyNames !== undefined) errors.push(...validate(schema.propertyNames, key, `${where} (name)`));
      if (key in props) errors.push(...validate(props[key], v, where));
      else if (schema.additionalProperties === false) errors.push(`${where}: not allowed`);
      else if (typeof schema.additionalProperties === 'object') errors.push(...validate(schema.additionalProperties, v, where));
    }
  }
  for (const s of schema.allOf || []) errors.push(...validate(s, value, at));
  if (schema.anyOf && !schema.anyOf.some((s) => validate(s, value, at).length === 0)) {
    errors.push(`${at}: matches none of anyOf`);
  }
  if (schema.oneOf) {
    const results = schema.oneOf.map((s) => validate(s, value, at));
    const passing = results.filter((r) => r.length === 0).length;
    if (passing !== 1) {
      errors.push(`${at}: matches ${passing} of oneOf (exactly one expected): ${results.map((r) => r.join(', ') || 'ok').join(' | ')}`);
    }
  }
  return errors;
}

function assertValid(schema, value, what) {
  const errors = validate(schema, value);
  assert.deepEqual(errors, [], `${what} does not match the document: ${JSON.stringify(value)}`);
}

// ---------------------------------------------------------------------------

describe('docs/asyncapi.yaml', () => {
  it('is a valid AsyncAPI 3 document: no diagnostic of severity error', (t) => {
    const errors = parsed.diagnostics.filter((d) => d.severity === ERROR);
    const warnings = parsed.diagnostics.filter((d) => d.severity === WARNING);
    const others = parsed.diagnostics.filter((d) => d.severity > WARNING);
    const summary = `@asyncapi/parser: ${errors.length} errors, ${warnings.length} warnings, ${others.length} info/hints`;
    t.diagnostic(summary);
    console.log(summary);
    for (const d of [...warnings, ...others]) console.log(`  severity ${d.severity}: ${describeDiagnostic(d)}`);
    assert.deepEqual(errors.map(describeDiagnostic), []);
    assert.ok(parsed.document, 'the parser returned a document');
    assert.equal(parsed.document.version(), '3.0.0');
  });

  it('uses only schema keywords this test can check, and its examples match their payloads', () => {
    for (const m of doc().messages().all()) {
      const schema = m.payload() ? m.payload().json() : true;
      assert.deepEqual(unsupportedKeywords(schema), [], `message ${m.id()}: keywords the validator here does not know`);
      for (const example of m.examples().all()) {
        if (example.hasPayload()) assertValid(schema, example.payload(), `example "${example.name()}" of ${m.id()}`);
      }
    }
  });

  it('names 8 catalog events, chat:message, chat:typing, recovery, auth:expired and admin:test as server events', () => {
    const catalog = new Set(operationMessages('send').filter((m) => m.tags.includes('catalog')).map((m) => m.name));
    assert.equal(catalog.size, 8, `catalog messages: ${[...catalog].join(', ')}`);
    const others = new Set(operationMessages('send').filter((m) => !m.tags.includes('catalog')).map((m) => m.name));
    assert.deepEqual([...others].sort(), ['admin:test', 'auth:expired', 'chat:message', 'chat:typing', 'recovery']);
    const clientEvents = new Set(operationMessages('receive').map((m) => m.name));
    assert.deepEqual([...clientEvents].sort(), ['auth:refresh', 'chat:send', 'chat:typing', 'join', 'leave', 'ping']);
  });
});

describe('the running server, against docs/asyncapi.yaml', () => {
  it('delivers each catalog event under exactly the names of the document, with a payload it describes', async () => {
    const catalog = new Set(operationMessages('send').filter((m) => m.tags.includes('catalog')).map((m) => m.name));
    const userId = h.uid('u');
    const vendorId = h.uid('v');
    const user = await h.connect(server, { token: h.userToken(userId) });
    const vendor = await h.connect(server, { token: h.vendorToken(h.uid('vs'), vendorId) });
    const actor = { id: h.uid('a'), role: 'vendor' };
    const service = () => ({ id: h.uid('s'), vendorId, name: 'Plumbing' });
    const booking = () => ({ id: h.uid('b'), userId, vendorId, status: 'confirmed' });
    // One event of each type, as docs/frontend.md's event catalog describes them.
    const posted = [
      { type: 'service:created', service: service(), actor },
      { type: 'service:updated', service: service() },
      { type: 'service:status_changed', service: service(), previousStatus: 'draft' },
      { type: 'booking:created', booking: booking(), actor, occurredAt: '2026-11-25T10:00:00Z' },
      { type: 'booking:status_changed', booking: booking(), previousStatus: 'pending' },
      { type: 'booking:cancelled', booking: booking(), reason: 'customer request' },
      { type: 'payment:completed', payment: { id: h.uid('p'), userId, vendorId, amount: 4200 } },
      { type: 'payment:failed', payment: { id: h.uid('p'), userId, amount: 4200 }, reason: 'card declined' },
    ];
    const ids = [];
    for (const event of posted) ids.push((await h.emitEvent(server, event)).id);
    // Every event reaches the user (booking, payment) or the vendor (service, booking,
    // and the payment that names it).
    for (const [i, event] of posted.entries()) {
      const c = event.type.startsWith('service:') ? vendor : user;
      await c.waitFor(event.type, (env) => env && env.id === ids[i]);
    }
    await vendor.waitFor('payment:completed', (env) => env && env.id === ids[6]);
    await h.sleep(h.QUIET);

    const received = [...user.events, ...vendor.events];
    const names = new Set(received.map((e) => e.event));
    assert.deepEqual([...names].sort(), [...catalog].sort(), 'the events received are exactly the document\'s catalog events');
    for (const e of received) {
      assert.equal(e.args.length, 1, `${e.event}: one argument, the envelope`);
      assertValid(sentSchema(e.event), e.args[0], `${e.event} as delivered`);
    }
  });

  it('answers the client events and relays chat as the document describes', async () => {
    const userId = h.uid('u');
    const vendorSub = h.uid('vs');
    const vendorId = h.uid('v');
    const user = await h.connect(server, { token: h.userToken(userId) });
    const vendor = await h.connect(server, { token: h.vendorToken(vendorSub, vendorId) });

    assertValid(ackSchema('ping'), await user.ack('ping', {}), 'the ack of ping');
    const joined = await vendor.ack('join', { type: 'vendor', id: vendorId });
    assert.equal(joined.ok, true);
    assertValid(ackSchema('join'), joined, 'the ack of join');
    const refused = await user.ack('join', { type: 'vendor', id: vendorId });
    assert.equal(refused.error, 'forbidden');
    assertValid(ackSchema('join'), refused, 'the refused ack of join');
    assertValid(ackSchema('join'), await user.ack('join', 'nonsense'), 'the invalid_payload ack of join');
    assertValid(ackSchema('leave'), await user.ack('leave', { type: 'user', id: h.uid('u') }), 'the ack of leave');

    const sent = await user.ack('chat:send', { to: { type: 'vendor', id: vendorId }, text: 'Is 3pm fine?', clientMsgId: 'c-1' });
    assert.equal(sent.ok, true, JSON.stringify(sent));
    assertValid(ackSchema('chat:send'), sent, 'the ack of chat:send');
    const noId = await user.ack('chat:send', { to: { type: 'vendor', id: vendorId }, text: 'And 4pm?' });
    assertValid(ackSchema('chat:send'), noId, 'the ack of chat:send without clientMsgId');
    const toUser = await user.ack('chat:send', { to: { type: 'user', id: h.uid('u') }, text: 'hi' });
    assert.equal(toUser.error, 'forbidden');
    assertValid(ackSchema('chat:send'), toUser, 'the forbidden ack of chat:send');
    const message = await vendor.waitFor('chat:message', (m) => m && m.id === sent.message.id);
    assertValid(sentSchema('chat:message'), message.args[0], 'chat:message as delivered');
    const second = await vendor.waitFor('chat:message', (m) => m && m.id === noId.message.id);
    assertValid(sentSchema('chat:message'), second.args[0], 'chat:message without clientMsgId as delivered');

    assertValid(ackSchema('chat:typing'), await vendor.ack('chat:typing', { to: { type: 'user', id: userId } }), 'the ack of chat:typing');
    const typing = await user.waitFor('chat:typing');
    assertValid(sentSchema('chat:typing'), typing.args[0], 'chat:typing as relayed');

    const refreshed = await user.ack('auth:refresh', { token: h.userToken(userId) });
    assert.equal(refreshed.ok, true, JSON.stringify(refreshed));
    assertValid(ackSchema('auth:refresh'), refreshed, 'the ack of auth:refresh');
    const other = await user.ack('auth:refresh', { token: h.userToken(h.uid('u')) });
    assert.equal(other.error, 'invalid_token');
    assertValid(ackSchema('auth:refresh'), other, 'the refused ack of auth:refresh');
  });

  it('sends recovery and auth:expired as the document describes', async () => {
    const userId = h.uid('u');
    const first = await h.connect(server, { token: h.userToken(userId) });
    const env = (await h.emitEvent(server, h.bookingEvent(userId, h.uid('v')))).id;
    const event = await first.waitFor('booking:status_changed', (e) => e && e.id === env);
    const position = event.args[0].offsets[`user:${userId}`];
    first.close();

    const back = await h.connect(server, {
      auth: { token: h.userToken(userId), offsets: { [`user:${userId}`]: position, 'user:someone-else': position } },
    });
    const recovery = await back.waitFor('recovery');
    assert.equal(recovery.args[0].recovered, true, JSON.stringify(recovery.args[0]));
    assertValid(sentSchema('recovery'), recovery.args[0], 'recovery as sent');
    const lost = await h.connect(server, { auth: { token: h.userToken(h.uid('u')), offsets: 'garbage' } });
    const unknown = await lost.waitFor('recovery');
    assert.equal(unknown.args[0].recovered, false, JSON.stringify(unknown.args[0]));
    assertValid(sentSchema('recovery'), unknown.args[0], 'an unsuccessful recovery as sent');

    const exp = h.nowSecs() + 2;
    const expiring = await h.connect(server, { token: h.token({ sub: h.uid('u'), role: 'user', exp }) });
    const expired = await expiring.waitFor('auth:expired', () => true, 6000);
    assertValid(sentSchema('auth:expired'), expired.args[0], 'auth:expired as sent');
    assert.equal(expired.args[0].exp, exp);
  });

  it('sends the admin console\'s test event as the document describes', async () => {
    const userId = h.uid('u');
    const user = await h.connect(server, { token: h.userToken(userId) });
    const res = await fetch(`${server.url}/admin/api/test-event`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ room: `user:${userId}` }),
    });
    assert.equal(res.status, 202);
    const { id } = await res.json();
    const got = await user.waitFor('admin:test', (e) => e && e.id === id);
    assertValid(sentSchema('admin:test'), got.args[0], 'admin:test as sent');
  });
});
