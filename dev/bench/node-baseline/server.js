"use strict";
// Node baseline of the fixrx-realtime contract: socket.io 4 + express + jsonwebtoken.
// Written as a Node team would write it, for side-by-side benchmarks with the Rust server.
// See README.md in this directory.

const http = require("node:http");
const crypto = require("node:crypto");
const express = require("express");
const jwt = require("jsonwebtoken");
const { Server } = require("socket.io");
const {
  ValidationError,
  toId,
  isPlainObject,
  parseEvent,
  buildEnvelope,
  parseParty,
  parseChatDraft,
} = require("./validate");

// ---------------------------------------------------------------- configuration

function fail(message) {
  console.error(`node-baseline: ${message}`);
  process.exit(2);
}

const PORT = process.env.PORT === undefined || process.env.PORT === "" ? 3000 : Number(process.env.PORT);
if (!Number.isInteger(PORT) || PORT < 0 || PORT > 65535) fail(`PORT: not a port number: ${process.env.PORT}`);
const HOST = process.env.HOST || "127.0.0.1";
const JWT_SECRET = process.env.JWT_SECRET;
if (!JWT_SECRET) fail("JWT_SECRET is required");
const API_TOKENS = (process.env.API_TOKEN || "").split(",").map((t) => t.trim()).filter(Boolean);
if (API_TOKENS.length === 0) fail("API_TOKEN is required (comma-separated list)");
const CLIENT_ORIGIN = process.env.CLIENT_ORIGIN || "*";
const WS_PATH = process.env.WS_PATH || "/socket.io";
const IDEMPOTENCY_TTL_MS = 10 * 60 * 1000;
const MAX_BATCH = 500;

const corsOrigin = CLIENT_ORIGIN === "*" ? "*" : CLIENT_ORIGIN.split(",").map((o) => o.trim()).filter(Boolean);

// ---------------------------------------------------------------- app + socket.io

const app = express();
app.disable("x-powered-by");
const server = http.createServer(app);
const io = new Server(server, {
  path: WS_PATH,
  cors: { origin: corsOrigin },
  // pingInterval 25 s, pingTimeout 20 s, maxHttpBufferSize 1 MB: socket.io defaults,
  // the same values as the Rust server's defaults.
});

let shuttingDown = false;

// ---------------------------------------------------------------- client auth

function handshakeToken(handshake) {
  const { auth, headers, query } = handshake;
  if (auth && auth.token !== undefined && auth.token !== null) return auth.token;
  const header = headers.authorization;
  if (header) {
    const m = /^Bearer\s+(.+)$/i.exec(header);
    return m ? m[1].trim() : "";
  }
  if (query && query.token !== undefined) return query.token;
  return undefined;
}

class AuthError extends Error {}

/** Verifies a client JWT and returns the identity { sub, role, vendorId?, exp }. */
function verifyClientToken(token) {
  if (token === undefined || token === null || token === "") throw new AuthError("token missing");
  if (typeof token !== "string") throw new AuthError("token malformed");
  let claims;
  try {
    claims = jwt.verify(token, JWT_SECRET, { algorithms: ["HS256"] });
  } catch (err) {
    if (err.name === "TokenExpiredError") throw new AuthError("token expired");
    if (err.name === "NotBeforeError") throw new AuthError("token not yet valid");
    if (err.message === "invalid signature") throw new AuthError("invalid signature");
    if (err.message === "invalid algorithm") throw new AuthError("algorithm not accepted");
    throw new AuthError("token malformed");
  }
  if (!isPlainObject(claims)) throw new AuthError("token malformed");
  if (claims.sub === undefined) throw new AuthError("missing claim `sub`");
  if (claims.exp === undefined) throw new AuthError("missing claim `exp`");
  if (typeof claims.exp !== "number") throw new AuthError("invalid claim `exp`");
  let sub;
  try {
    sub = toId(claims.sub, "sub");
  } catch {
    throw new AuthError("invalid claim `sub`");
  }
  const role = claims.role === undefined || claims.role === null ? "user" : claims.role;
  if (role !== "user" && role !== "vendor" && role !== "admin") throw new AuthError("invalid role");
  const identity = { sub, role, exp: claims.exp };
  if (role === "vendor") {
    try {
      identity.vendorId = claims.vendorId === undefined || claims.vendorId === null ? sub : toId(claims.vendorId, "vendorId");
    } catch {
      throw new AuthError("invalid claim `vendorId`");
    }
  }
  return identity;
}

io.use((socket, next) => {
  try {
    socket.data.identity = verifyClientToken(handshakeToken(socket.handshake));
    next();
  } catch (err) {
    if (err instanceof AuthError) return next(new Error(`unauthorized: ${err.message}`));
    next(new Error("unauthorized: token malformed"));
  }
});

// ---------------------------------------------------------------- socket handlers

function mayJoin(identity, party) {
  if (identity.role === "admin") return true;
  if (party.type === "user") return party.id === identity.sub;
  return identity.role === "vendor" && party.id === identity.vendorId;
}

/** The chat identity of a socket: users speak as user:<sub>, vendors as vendor:<vendorId>. */
function chatParty(identity) {
  if (identity.role === "user") return { type: "user", id: identity.sub };
  if (identity.role === "vendor") return { type: "vendor", id: identity.vendorId };
  return null;
}

const roomOf = (party) => `${party.type}:${party.id}`;

function invalid(err) {
  if (err instanceof ValidationError) return { ok: false, error: "invalid_payload", message: err.message };
  throw err;
}

function composeChat(from, draft) {
  if (from.type === draft.to.type) {
    const err = new Error(`${from.type} to ${draft.to.type} chat is not allowed`);
    err.forbidden = true;
    throw err;
  }
  return {
    id: crypto.randomUUID(),
    from,
    to: draft.to,
    text: draft.text,
    sentAt: new Date().toISOString(),
    clientMsgId: draft.clientMsgId,
  };
}

function scheduleExpiry(socket) {
  clearTimeout(socket.data.expiryTimer);
  const ms = socket.data.identity.exp * 1000 - Date.now();
  // setTimeout cannot wait longer than ~24.8 days; such tokens are simply not timed.
  if (ms > 2 ** 31 - 1) return;
  socket.data.expiryTimer = setTimeout(() => {
    socket.emit("auth:expired", { exp: socket.data.identity.exp });
    socket.disconnect(true);
  }, Math.max(0, ms));
}

io.on("connection", (socket) => {
  const identity = socket.data.identity;
  socket.join(`user:${identity.sub}`);
  if (identity.role === "vendor") socket.join(`vendor:${identity.vendorId}`);
  scheduleExpiry(socket);
  socket.on("disconnect", () => clearTimeout(socket.data.expiryTimer));

  socket.on("ping", (_payload, ack) => {
    if (typeof ack === "function") ack({ ok: true, pong: true, serverTime: new Date().toISOString() });
  });

  socket.on("join", (payload, ack) => {
    let answer;
    try {
      const party = parseParty(payload, "room");
      const room = roomOf(party);
      if (mayJoin(socket.data.identity, party)) {
        socket.join(room);
        answer = { ok: true, room };
      } else {
        answer = { ok: false, error: "forbidden", message: `you may not join ${room}` };
      }
    } catch (err) {
      answer = invalid(err);
    }
    if (typeof ack === "function") ack(answer);
  });

  socket.on("leave", (payload, ack) => {
    let answer;
    try {
      const room = roomOf(parseParty(payload, "room"));
      socket.leave(room);
      answer = { ok: true, room };
    } catch (err) {
      answer = invalid(err);
    }
    if (typeof ack === "function") ack(answer);
  });

  socket.on("chat:send", (payload, ack) => {
    let answer;
    try {
      const from = chatParty(socket.data.identity);
      if (!from) {
        answer = { ok: false, error: "forbidden", message: "admins cannot chat" };
      } else {
        const message = composeChat(from, parseChatDraft(payload));
        // Recipient and the sender's other devices; the sending socket gets the ack.
        socket.to([roomOf(message.to), roomOf(message.from)]).emit("chat:message", message);
        answer = { ok: true, message };
      }
    } catch (err) {
      answer = err.forbidden ? { ok: false, error: "forbidden", message: err.message } : invalid(err);
    }
    if (typeof ack === "function") ack(answer);
  });

  socket.on("chat:typing", (payload, ack) => {
    let answer;
    try {
      const from = chatParty(socket.data.identity);
      const to = parseParty(isPlainObject(payload) ? payload.to : undefined, "to");
      if (!from || from.type === to.type) {
        answer = { ok: false, error: "forbidden", message: "typing is only relayed between users and vendors" };
      } else {
        socket.volatile.to(roomOf(to)).emit("chat:typing", { from, to });
        answer = { ok: true };
      }
    } catch (err) {
      answer = invalid(err);
    }
    if (typeof ack === "function") ack(answer);
  });

  socket.on("auth:refresh", (payload, ack) => {
    let answer;
    if (!isPlainObject(payload) || typeof payload.token !== "string") {
      if (typeof ack === "function") ack({ ok: false, error: "invalid_payload", message: "payload must be { token: string }" });
      return;
    }
    try {
      const next = verifyClientToken(payload.token);
      const cur = socket.data.identity;
      if (next.sub !== cur.sub || next.role !== cur.role || next.vendorId !== cur.vendorId) {
        answer = { ok: false, error: "invalid_token", message: "the token is for another identity" };
      } else {
        socket.data.identity = next;
        scheduleExpiry(socket);
        answer = { ok: true, exp: next.exp };
      }
    } catch (err) {
      if (!(err instanceof AuthError)) throw err;
      answer = { ok: false, error: "invalid_token", message: err.message };
    }
    if (typeof ack === "function") ack(answer);
  });
});

// ---------------------------------------------------------------- REST helpers

function sendError(res, status, code, message, field) {
  const error = { code, message };
  if (field !== undefined) error.field = field;
  res.status(status).json({ error });
}

function validationError(res, err, prefix) {
  let field = err.field;
  if (prefix) field = field ? `${prefix}.${field}` : prefix;
  sendError(res, 422, "validation_failed", prefix ? `${prefix}.${err.message}` : err.message, field || undefined);
}

function requireApiToken(req, res, next) {
  const m = /^Bearer\s+(.+)$/i.exec(req.get("authorization") || "");
  if (!m || !API_TOKENS.includes(m[1].trim())) {
    return sendError(res, 401, "unauthorized", "missing or invalid bearer token");
  }
  next();
}

function requireJson(req, res, next) {
  if (!req.is(["application/json", "application/*+json"])) {
    return sendError(res, 415, "unsupported_media_type", "Content-Type must be application/json");
  }
  next();
}

const jsonBody = [requireJson, express.json({ limit: "256kb", type: ["application/json", "application/*+json"] })];

// Idempotency keys: key -> { result, expires }. In memory, swept once a minute.
const idempotency = new Map();
setInterval(() => {
  const now = Date.now();
  for (const [key, entry] of idempotency) if (entry.expires <= now) idempotency.delete(key);
}, 60 * 1000).unref();

function recall(key) {
  const entry = idempotency.get(key);
  if (entry && entry.expires > Date.now()) return entry.result;
  return undefined;
}

function emitParsed(parsed, id) {
  const envelope = buildEnvelope(parsed, id);
  // A socket in several of these rooms gets the event once.
  io.to(parsed.rooms).emit(parsed.type, envelope);
  const result = { id, type: parsed.type, rooms: parsed.rooms };
  idempotency.set(id, { result, expires: Date.now() + IDEMPOTENCY_TTL_MS });
  return result;
}

// Presence and disconnect count the sockets authenticated as that user or vendor, not
// whoever is in the room (an admin who joined user:u1 is not u1), as the Rust server does.
function isOwner(identity, type, id) {
  return type === "user" ? identity.sub === id : identity.role === "vendor" && identity.vendorId === id;
}

const notAllowed = (_req, res) => sendError(res, 405, "method_not_allowed", "method not allowed");

// ---------------------------------------------------------------- REST routes

// Route first (404), then token (401), then body (415, 413, 400, 422), as the Rust server.
const api = express.Router();

api
  .route("/events")
  .all(requireApiToken)
  .post(jsonBody, (req, res) => {
    let parsed;
    try {
      parsed = parseEvent(req.body);
    } catch (err) {
      if (err instanceof ValidationError) return validationError(res, err);
      throw err;
    }
    const header = req.get("idempotency-key");
    if (header !== undefined) {
      let key;
      try {
        key = toId(header, "Idempotency-Key");
      } catch (err) {
        return validationError(res, err);
      }
      if (parsed.id !== undefined && parsed.id !== key) {
        return sendError(res, 422, "validation_failed", "id and Idempotency-Key must be equal", "id");
      }
      parsed.id = key;
    }
    if (parsed.id !== undefined) {
      const previous = recall(parsed.id);
      if (previous) {
        res.set("Idempotent-Replayed", "true");
        return res.status(202).json(previous);
      }
    }
    res.status(202).json(emitParsed(parsed, parsed.id || crypto.randomUUID()));
  })
  .all(notAllowed);

api
  .route("/events/batch")
  .all(requireApiToken)
  .post(jsonBody, (req, res) => {
    if (req.get("idempotency-key") !== undefined) {
      return sendError(res, 422, "validation_failed", "Idempotency-Key is not accepted on batches; give each event an id", "Idempotency-Key");
    }
    const body = req.body;
    if (!isPlainObject(body) || !Array.isArray(body.events)) {
      return sendError(res, 422, "validation_failed", "events: must be an array", "events");
    }
    const { events } = body;
    if (events.length < 1 || events.length > MAX_BATCH) {
      return sendError(res, 422, "validation_failed", `events: must hold 1 to ${MAX_BATCH} events, got ${events.length}`, "events");
    }
    // All or nothing: validate every event before emitting any.
    const parsedAll = [];
    for (let i = 0; i < events.length; i++) {
      try {
        parsedAll.push(parseEvent(events[i]));
      } catch (err) {
        if (err instanceof ValidationError) return validationError(res, err, `events[${i}]`);
        throw err;
      }
    }
    const results = parsedAll.map((parsed) => {
      if (parsed.id !== undefined) {
        const previous = recall(parsed.id);
        if (previous) return previous;
      }
      return emitParsed(parsed, parsed.id || crypto.randomUUID());
    });
    res.status(202).json({ events: results });
  })
  .all(notAllowed);

api
  .route("/presence/:type/:id")
  .all(requireApiToken)
  .get(async (req, res) => {
    const { type, id } = req.params;
    if (type !== "user" && type !== "vendor") return sendError(res, 404, "not_found", "no such route");
    const sockets = (await io.in(`${type}:${id}`).fetchSockets()).filter((s) => isOwner(s.data.identity, type, id));
    res.json({ online: sockets.length > 0, connections: sockets.length });
  })
  .all(notAllowed);

api
  .route("/users/:id/disconnect")
  .all(requireApiToken)
  .post(async (req, res) => {
    const { id } = req.params;
    const sockets = (await io.in(`user:${id}`).fetchSockets()).filter((s) => isOwner(s.data.identity, "user", id));
    for (const s of sockets) s.disconnect(true);
    res.json({ disconnected: sockets.length });
  })
  .all(notAllowed);

api
  .route("/chat/messages")
  .all(requireApiToken)
  .post(jsonBody, (req, res) => {
    let message;
    try {
      if (!isPlainObject(req.body)) throw new ValidationError("", "the body must be an object { from, to, text, clientMsgId? }");
      const from = parseParty(req.body.from, "from");
      const draft = parseChatDraft(req.body);
      if (from.type === draft.to.type) {
        return sendError(res, 422, "validation_failed", `to: ${from.type} to ${draft.to.type} chat is not allowed`, "to");
      }
      message = composeChat(from, draft);
    } catch (err) {
      if (err instanceof ValidationError) return validationError(res, err);
      throw err;
    }
    const rooms = [roomOf(message.to), roomOf(message.from)];
    io.to(rooms).emit("chat:message", message);
    res.status(202).json({ message, rooms });
  })
  .all(notAllowed);

app.use("/api/v1", api);

app.get("/health", (_req, res) => res.json({ status: "ok" }));
app.get("/ready", (_req, res) => {
  if (shuttingDown) return res.status(503).json({ status: "shutting_down" });
  res.json({ status: "ready" });
});

app.use((_req, res) => sendError(res, 404, "not_found", "no such route"));

// body-parser errors (malformed JSON, too large) and anything unexpected.
// eslint-disable-next-line no-unused-vars
app.use((err, _req, res, _next) => {
  if (err.type === "entity.parse.failed") return sendError(res, 400, "invalid_json", `malformed JSON: ${err.message}`);
  if (err.type === "entity.too.large") return sendError(res, 413, "payload_too_large", "body over the 256 KiB limit");
  if (err.type === "encoding.unsupported" || err.type === "charset.unsupported") {
    return sendError(res, 415, "unsupported_media_type", err.message);
  }
  if (err.status >= 400 && err.status < 500) return sendError(res, err.status, "bad_request", err.message);
  console.error(err);
  sendError(res, 500, "internal", "internal error");
});

// ---------------------------------------------------------------- start / stop

server.listen(PORT, HOST, () => {
  const { address, port } = server.address();
  console.log(`node-baseline listening on ${address}:${port}`);
});

function shutdown() {
  if (shuttingDown) return;
  shuttingDown = true;
  // io.close() closes every socket and the HTTP server; in-flight requests finish.
  io.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 5000).unref();
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
