'use strict';
// @fixrx/realtime-client: the backend controllers' side of fixrx-realtime.
//
// One function per catalog event (the names of the original `src/socket/emitters.js`),
// a batch, chat, presence and disconnect, over the server's REST API; each call that
// changes something also has a fire-and-forget form (`fn.fire`). Beside them, the two
// halves of trust with the server: verifyWebhook (its signed hooks) and
// createClientToken (the JWTs its sockets present). No runtime dependencies.
//
// Delivery: every emit carries an idempotency key (the caller's `id`, or a UUID made
// once per call) and every retry reuses it, so a retried emit is emitted at most once.
//
// lib/client.js   createClient and its validation
// lib/request.js  attempts, retries, deadline, abort (the only place that decides a retry)
// lib/fire.js     the fire-and-forget form
// lib/webhook.js  verifyWebhook
// lib/token.js    createClientToken

const crypto = require('node:crypto');
const { FixrxError } = require('./lib/errors.js');
const { createClient, internals } = require('./lib/client.js');
const { request, callOptions } = require('./lib/request.js');
const { fireForm } = require('./lib/fire.js');
const { verifyWebhook } = require('./lib/webhook.js');
const { createClientToken } = require('./lib/token.js');

// ---------------------------------------------------------------------------
// Events

const EVENTS = [
  ['emitServiceCreated', 'service:created', 'service'],
  ['emitServiceUpdated', 'service:updated', 'service'],
  ['emitServiceStatusChanged', 'service:status_changed', 'service'],
  ['emitBookingCreated', 'booking:created', 'booking'],
  ['emitBookingStatusChanged', 'booking:status_changed', 'booking'],
  ['emitBookingCancelled', 'booking:cancelled', 'booking'],
  ['emitPaymentCompleted', 'payment:completed', 'payment'],
  ['emitPaymentFailed', 'payment:failed', 'payment'],
];

/** The catalog: event type to its entity key. */
const EVENT_TYPES = Object.freeze(Object.fromEntries(EVENTS.map(([, type, key]) => [type, key])));

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const hasId = (e) => e.id !== undefined && e.id !== null;

/** The event as sent: `undefined` members dropped, `id` always set. */
function envelope(type, data) {
  const event = { type };
  for (const [k, v] of Object.entries(data)) {
    if (k !== 'type' && v !== undefined) event[k] = v;
  }
  if (!hasId(event)) event.id = crypto.randomUUID();
  return event;
}

/**
 * The `Idempotency-Key` header for an event id, when the header can carry it as is
 * (1 to 128 visible ASCII characters); otherwise none: the body's `id` is the key anyway,
 * and the server refuses a header that differs from it.
 */
function idempotencyHeader(id) {
  const key = typeof id === 'number' && Number.isInteger(id) ? String(id) : id;
  return typeof key === 'string' && /^[\x21-\x7e]{1,128}$/.test(key) ? { 'idempotency-key': key } : {};
}

/** For the fire form: the key is made before the call, so that onError can name it. */
function withId(data, info) {
  if (!isObject(data)) return data;
  const out = hasId(data) ? data : { ...data, id: crypto.randomUUID() };
  info.id = out.id;
  return out;
}

function makeEmitter(name, type, entityKey) {
  const emit = async function (client, data, options) {
    internals(client, name);
    if (!isObject(data)) {
      throw new TypeError(`${name}(client, data): data must be an object { ${entityKey}, actor?, ... }`);
    }
    const call = callOptions(name, options);
    // The key is made once per call: every retry sends the same bytes, the same key.
    const event = envelope(type, data);
    return request(
      client,
      name,
      { method: 'POST', path: '/api/v1/events', body: event, headers: idempotencyHeader(event.id), retry: 'always' },
      call,
    );
  };
  Object.defineProperty(emit, 'name', { value: name });
  emit.fire = fireForm(name, emit, withId);
  return emit;
}

const emitters = Object.fromEntries(EVENTS.map(([name, type, key]) => [name, makeEmitter(name, type, key)]));

/**
 * Emits 1 to 500 events in one request, all or nothing, in order. Each event is a full
 * envelope `{ type, service | booking | payment, ... }`; one without an `id` gets one.
 * (The server refuses an `Idempotency-Key` header on batches: each `id` is the key.)
 */
async function emitBatch(client, events, options) {
  internals(client, 'emitBatch');
  if (!Array.isArray(events)) throw new TypeError('emitBatch(client, events): events must be an array');
  const call = callOptions('emitBatch', options);
  const body = {
    events: events.map((e, i) => {
      if (!isObject(e)) throw new TypeError(`emitBatch: events[${i}] must be an event object { type, ... }`);
      if (typeof e.type !== 'string') throw new TypeError(`emitBatch: events[${i}].type must be an event type string`);
      return envelope(e.type, e);
    }),
  };
  const answer = await request(
    client,
    'emitBatch',
    { method: 'POST', path: '/api/v1/events/batch', body, retry: 'always' },
    call,
  );
  return answer.events;
}
emitBatch.fire = fireForm('emitBatch', emitBatch, (events, info) => {
  if (!Array.isArray(events)) return events;
  const out = events.map((e) => (isObject(e) && !hasId(e) ? { ...e, id: crypto.randomUUID() } : e));
  info.ids = out.map((e) => (isObject(e) ? e.id : undefined));
  return out;
});

// ---------------------------------------------------------------------------
// Chat, presence, disconnect

/**
 * Posts a chat message with an explicit sender. The server has no idempotency key for
 * chat, so this is retried only when the answer proves the message was not relayed:
 * 429, 503, or a connection that could not be opened. A timeout, a connection lost
 * after the request was sent, or a gateway's 502/504 throws without a retry: the
 * message may have been relayed.
 */
async function sendChatMessage(client, message, options) {
  internals(client, 'sendChatMessage');
  if (!isObject(message)) {
    throw new TypeError('sendChatMessage(client, message): message must be an object { from, to, text, clientMsgId? }');
  }
  const call = callOptions('sendChatMessage', options);
  const body = {};
  for (const k of ['from', 'to', 'text', 'clientMsgId']) if (message[k] !== undefined) body[k] = message[k];
  return request(
    client,
    'sendChatMessage',
    { method: 'POST', path: '/api/v1/chat/messages', body, retry: 'unsent' },
    call,
  );
}
sendChatMessage.fire = fireForm('sendChatMessage', sendChatMessage);

function checkId(fn, what, id) {
  if (typeof id === 'number' && Number.isInteger(id)) return String(id);
  if (typeof id !== 'string' || id === '') throw new TypeError(`${fn}: ${what} must be a non-empty string`);
  return id;
}

/** Sockets authenticated as that user or vendor, on every instance. */
async function presence(client, kind, id, options) {
  internals(client, 'presence');
  if (kind !== 'user' && kind !== 'vendor') {
    throw new TypeError(`presence(client, kind, id): kind must be "user" or "vendor", got ${JSON.stringify(kind)}`);
  }
  const path = `/api/v1/presence/${kind}/${encodeURIComponent(checkId('presence', 'id', id))}`;
  return request(client, 'presence', { method: 'GET', path, retry: 'always' }, callOptions('presence', options));
}

/**
 * Disconnects every socket of a user (logout, ban). Retried like an emit: disconnecting
 * twice has the effect of once, though a retry may then report `disconnected: 0`.
 */
async function disconnectUser(client, userId, options) {
  internals(client, 'disconnectUser');
  const path = `/api/v1/users/${encodeURIComponent(checkId('disconnectUser', 'userId', userId))}/disconnect`;
  return request(
    client,
    'disconnectUser',
    { method: 'POST', path, retry: 'always' },
    callOptions('disconnectUser', options),
  );
}
disconnectUser.fire = fireForm('disconnectUser', disconnectUser);

module.exports = {
  createClient,
  FixrxError,
  EVENT_TYPES,
  ...emitters,
  emitBatch,
  sendChatMessage,
  presence,
  disconnectUser,
  verifyWebhook,
  createClientToken,
};
