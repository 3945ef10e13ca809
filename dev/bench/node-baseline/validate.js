"use strict";
// Payload validation shared by the REST API and the socket handlers.
// Every failure is a ValidationError naming the offending field.

const MAX_ID_CHARS = 128;
const MAX_TEXT_CHARS = 1000; // previousStatus, reason, actor.role
const MAX_CHAT_CHARS = 4000;
const MAX_CLIENT_MSG_ID_CHARS = 128;
// Control characters (C0, DEL, C1) are not allowed in ids.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

const EVENT_TYPES = {
  "service:created": { entity: "service" },
  "service:updated": { entity: "service" },
  "service:status_changed": { entity: "service", previousStatus: true },
  "booking:created": { entity: "booking" },
  "booking:status_changed": { entity: "booking", previousStatus: true },
  "booking:cancelled": { entity: "booking", reason: true },
  "payment:completed": { entity: "payment" },
  "payment:failed": { entity: "payment", reason: true },
};

class ValidationError extends Error {
  constructor(field, message) {
    super(field ? `${field}: ${message}` : message);
    this.field = field;
    this.detail = message;
  }
}

/** Counts Unicode code points, not UTF-16 units (as the Rust server counts chars). */
function charCount(s) {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/** An id is a non-empty string (max 128 chars, no control chars) or an integer, sent as a string. */
function toId(value, field) {
  if (value === undefined || value === null) throw new ValidationError(field, "is required");
  let s;
  if (typeof value === "string") s = value;
  else if (typeof value === "number" && Number.isInteger(value)) s = String(value);
  else throw new ValidationError(field, "must be a string or an integer");
  if (s.length === 0) throw new ValidationError(field, "must not be empty");
  if (charCount(s) > MAX_ID_CHARS) throw new ValidationError(field, `must be at most ${MAX_ID_CHARS} characters`);
  if (CONTROL.test(s)) throw new ValidationError(field, "must not contain control characters");
  return s;
}

function optionalText(value, field) {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string") throw new ValidationError(field, "must be a string");
  if (charCount(value) > MAX_TEXT_CHARS) throw new ValidationError(field, `must be at most ${MAX_TEXT_CHARS} characters`);
  return value;
}

function isPlainObject(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/**
 * Parses one event as a controller posts it. Returns { id?, type, envelope-without-id }.
 * Throws ValidationError.
 */
function parseEvent(body) {
  if (!isPlainObject(body)) throw new ValidationError("", "an event must be a JSON object");
  const { type } = body;
  if (type === undefined || type === null) throw new ValidationError("type", "is required");
  if (typeof type !== "string") throw new ValidationError("type", "must be a string");
  const spec = EVENT_TYPES[type];
  if (!spec) {
    throw new ValidationError("type", `unknown event type \`${type.slice(0, 64)}\`; expected one of ${Object.keys(EVENT_TYPES).join(", ")}`);
  }

  const id = body.id === undefined || body.id === null ? undefined : toId(body.id, "id");

  let occurredAt;
  if (body.occurredAt !== undefined && body.occurredAt !== null) {
    const t = typeof body.occurredAt === "string" && RFC3339.test(body.occurredAt) ? new Date(body.occurredAt) : null;
    if (!t || Number.isNaN(t.getTime())) {
      throw new ValidationError("occurredAt", "must be an RFC 3339 date-time such as 2026-11-25T10:00:00Z");
    }
    occurredAt = t.toISOString();
  }

  let actor;
  if (body.actor !== undefined && body.actor !== null) {
    if (!isPlainObject(body.actor)) throw new ValidationError("actor", "must be an object with `id` and `role`");
    actor = { id: toId(body.actor.id, "actor.id") };
    const role = optionalText(body.actor.role, "actor.role");
    if (role !== undefined) actor.role = role;
  }

  const key = spec.entity;
  const raw = body[key];
  if (raw === undefined || raw === null) throw new ValidationError(key, "is required");
  if (!isPlainObject(raw)) throw new ValidationError(key, "must be an object");

  const entity = { ...raw, id: toId(raw.id, `${key}.id`) };
  if (key === "service") {
    entity.vendorId = toId(raw.vendorId, "service.vendorId");
  } else if (key === "booking") {
    entity.userId = toId(raw.userId, "booking.userId");
    entity.vendorId = toId(raw.vendorId, "booking.vendorId");
  } else {
    entity.userId = toId(raw.userId, "payment.userId");
    if (raw.vendorId === undefined || raw.vendorId === null) delete entity.vendorId;
    else entity.vendorId = toId(raw.vendorId, "payment.vendorId");
  }

  const previousStatus = spec.previousStatus ? optionalText(body.previousStatus, "previousStatus") : undefined;
  const reason = spec.reason ? optionalText(body.reason, "reason") : undefined;

  let rooms;
  if (key === "service") rooms = [`vendor:${entity.vendorId}`];
  else if (key === "booking") rooms = [`user:${entity.userId}`, `vendor:${entity.vendorId}`];
  else rooms = entity.vendorId ? [`user:${entity.userId}`, `vendor:${entity.vendorId}`] : [`user:${entity.userId}`];

  return { id, type, occurredAt, actor, key, entity, previousStatus, reason, rooms };
}

/** Builds the envelope in the contract's key order. */
function buildEnvelope(parsed, id) {
  const env = { id, type: parsed.type, occurredAt: parsed.occurredAt || new Date().toISOString() };
  if (parsed.actor) env.actor = parsed.actor;
  env[parsed.key] = parsed.entity;
  if (parsed.previousStatus !== undefined) env.previousStatus = parsed.previousStatus;
  if (parsed.reason !== undefined) env.reason = parsed.reason;
  return env;
}

/** `{ type: "user" | "vendor", id }` */
function parseParty(value, field) {
  if (value === undefined || value === null) throw new ValidationError(field, "is required");
  if (!isPlainObject(value)) throw new ValidationError(field, "must be an object { type, id }");
  if (value.type !== "user" && value.type !== "vendor") {
    throw new ValidationError(field, 'type must be "user" or "vendor"');
  }
  if (value.id === undefined) throw new ValidationError(field, "id is required");
  return { type: value.type, id: toId(value.id, `${field}.id`) };
}

/** `{ to, text, clientMsgId? }` */
function parseChatDraft(body) {
  if (!isPlainObject(body)) throw new ValidationError("payload", "must be an object { to, text }");
  const to = parseParty(body.to, "to");
  const { text } = body;
  if (text === undefined || text === null) throw new ValidationError("text", "is required");
  if (typeof text !== "string") throw new ValidationError("text", "must be a string");
  const n = charCount(text);
  if (n === 0 || n > MAX_CHAT_CHARS) throw new ValidationError("text", `must be 1 to ${MAX_CHAT_CHARS} characters, got ${n}`);
  let clientMsgId = null;
  const c = body.clientMsgId;
  if (c !== undefined && c !== null) {
    if (typeof c === "string" && c.length > 0 && charCount(c) <= MAX_CLIENT_MSG_ID_CHARS) clientMsgId = c;
    else if (typeof c === "number" && Number.isInteger(c)) clientMsgId = String(c);
    else throw new ValidationError("clientMsgId", `must be a string of 1 to ${MAX_CLIENT_MSG_ID_CHARS} characters`);
  }
  return { to, text, clientMsgId };
}

module.exports = {
  EVENT_TYPES,
  ValidationError,
  toId,
  isPlainObject,
  parseEvent,
  buildEnvelope,
  parseParty,
  parseChatDraft,
};
