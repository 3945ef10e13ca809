"use strict";
// Contract check for any server of the fixrx-realtime contract (this baseline or the Rust one).
//   JWT_SECRET=... API_TOKEN=... node check.js http://127.0.0.1:PORT [--transcript]
// Exits non-zero on a failed assertion. --transcript prints a normalized JSON transcript
// (statuses, error codes, ack shapes) so two servers can be diffed.

const assert = require("node:assert/strict");
const jwt = require("jsonwebtoken");
const { io } = require("socket.io-client");

const BASE = process.argv[2] || "http://127.0.0.1:3000";
const TRANSCRIPT = process.argv.includes("--transcript");
const SECRET = process.env.JWT_SECRET;
const API = (process.env.API_TOKEN || "").split(",")[0];
if (!SECRET || !API) {
  console.error("set JWT_SECRET and API_TOKEN");
  process.exit(2);
}

const transcript = [];
const note = (name, value) => transcript.push([name, value]);
const tag = `c${Date.now().toString(36)}`; // unique ids per run

function token(claims, opts = {}) {
  return jwt.sign(claims, opts.secret || SECRET, { algorithm: "HS256", expiresIn: opts.expiresIn ?? 300 });
}

function connect(auth, extra = {}) {
  return new Promise((resolve, reject) => {
    const s = io(BASE, { auth, transports: ["websocket"], reconnection: false, forceNew: true, ...extra });
    s.once("connect", () => resolve(s));
    s.once("connect_error", (e) => {
      s.close();
      reject(e);
    });
  });
}

const ack = (s, ev, payload) => s.timeout(3000).emitWithAck(ev, payload);

function next(s, ev, ms = 2000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timeout waiting for ${ev}`)), ms);
    s.once(ev, (data) => {
      clearTimeout(t);
      resolve(data);
    });
  });
}

function collect(s, ev) {
  const got = [];
  s.on(ev, (d) => got.push(d));
  return got;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function rest(method, path, body, headers = {}) {
  const h = { authorization: `Bearer ${API}`, ...headers };
  let payload;
  if (body !== undefined) {
    payload = typeof body === "string" ? body : JSON.stringify(body);
    if (!("content-type" in h)) h["content-type"] = "application/json";
  }
  const res = await fetch(BASE + path, { method, headers: h, body: payload });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.status, body: json, headers: res.headers };
}

async function main() {
  const u = `u-${tag}`;
  const v = `v-${tag}`;
  const userTok = token({ sub: u, role: "user" });
  const vendorTok = token({ sub: `${v}-owner`, role: "vendor", vendorId: v });

  // --- handshake refusals
  for (const [name, auth] of [
    ["missing", {}],
    ["malformed", { token: "abc" }],
    ["expired", { token: token({ sub: u }, { expiresIn: -10 }) }],
    ["bad signature", { token: token({ sub: u }, { secret: "other" }) }],
    ["bad role", { token: token({ sub: u, role: "root" }) }],
    ["no exp", { token: jwt.sign({ sub: u }, SECRET) }],
  ]) {
    const err = await connect(auth).then(
      (s) => (s.close(), null),
      (e) => e.message,
    );
    assert.ok(err && err.startsWith("unauthorized:"), `${name}: ${err}`);
    note(`handshake ${name}`, err);
  }
  // auth.token first: an invalid auth.token is refused even with a valid header
  const hdrOnly = await connect({}, { extraHeaders: { authorization: `Bearer ${userTok}` } });
  hdrOnly.close();
  const qOnly = await connect({}, { query: { token: userTok } });
  qOnly.close();
  note("handshake header/query", "ok");

  // --- connect user (two devices) and vendor
  const user1 = await connect({ token: userTok });
  const user2 = await connect({ token: userTok });
  const vendor = await connect({ token: vendorTok });

  const pong = await ack(user1, "ping", {});
  assert.equal(pong.ok, true);
  assert.equal(pong.pong, true);
  assert.ok(!Number.isNaN(Date.parse(pong.serverTime)));
  note("ping", Object.keys(pong).sort());

  // --- join / leave
  const joins = [
    ["own user room", user1, { type: "user", id: u }],
    ["other user room", user1, { type: "user", id: "someone" }],
    ["vendor room as user", user1, { type: "vendor", id: v }],
    ["own vendor room", vendor, { type: "vendor", id: v }],
    ["bad payload", user1, { type: "admin", id: "x" }],
    ["not an object", user1, "x"],
  ];
  for (const [name, s, p] of joins) {
    const a = await ack(s, "join", p);
    note(`join ${name}`, { ok: a.ok, error: a.error, room: a.room });
  }
  const lv = await ack(user1, "leave", { type: "vendor", id: "nowhere" });
  assert.equal(lv.ok, true);
  note("leave", lv);

  // --- presence
  const pu = await rest("GET", `/api/v1/presence/user/${u}`);
  assert.deepEqual(pu.body, { online: true, connections: 2 });
  const pv = await rest("GET", `/api/v1/presence/vendor/${v}`);
  assert.deepEqual(pv.body, { online: true, connections: 1 });
  const px = await rest("GET", `/api/v1/presence/vendor/nobody-${tag}`);
  assert.deepEqual(px.body, { online: false, connections: 0 });
  const pbad = await rest("GET", `/api/v1/presence/admin/x`);
  note("presence", [pu.status, pu.body, pv.body, px.body, pbad.status]);

  // --- events reach the right sockets, once
  const userGot = collect(user1, "booking:status_changed");
  const vendorGot = collect(vendor, "booking:status_changed");
  const ev = await rest("POST", "/api/v1/events", {
    type: "booking:status_changed",
    actor: { id: "v1-owner", role: "vendor" },
    booking: { id: "b1", userId: u, vendorId: v, status: "confirmed", price: 42 },
    previousStatus: "pending",
  });
  assert.equal(ev.status, 202);
  assert.deepEqual(ev.body.rooms, [`user:${u}`, `vendor:${v}`]);
  note("POST event", { status: ev.status, keys: Object.keys(ev.body), rooms: ev.body.rooms.length });
  await sleep(300);
  assert.equal(userGot.length, 1);
  assert.equal(vendorGot.length, 1);
  const env = userGot[0];
  assert.equal(env.id, ev.body.id);
  assert.deepEqual(Object.keys(env), ["id", "type", "occurredAt", "actor", "booking", "previousStatus"]);
  assert.deepEqual(env.booking, { id: "b1", userId: u, vendorId: v, status: "confirmed", price: 42 });
  note("envelope keys", Object.keys(env));

  // admin joined into both rooms gets it once
  const admin = await connect({ token: token({ sub: `admin-${tag}`, role: "admin" }) });
  await ack(admin, "join", { type: "user", id: u });
  await ack(admin, "join", { type: "vendor", id: v });
  const adminGot = collect(admin, "payment:completed");
  const pay = await rest("POST", "/api/v1/events", {
    type: "payment:completed",
    payment: { id: 7, userId: u, vendorId: v, amount: 4200 },
    occurredAt: "2026-11-25T10:00:00+01:00",
  });
  assert.equal(pay.status, 202);
  await sleep(300);
  assert.equal(adminGot.length, 1, "one delivery for a socket in two rooms");
  assert.equal(adminGot[0].payment.id, "7", "integer ids sent as strings");
  assert.equal(Date.parse(adminGot[0].occurredAt), Date.parse("2026-11-25T09:00:00Z"));
  note("payment occurredAt", adminGot[0].occurredAt);

  // idempotency
  const key = `evt-${tag}`;
  const svcGot = collect(vendor, "service:created");
  const body = { id: key, type: "service:created", service: { id: "s1", vendorId: v } };
  const i1 = await rest("POST", "/api/v1/events", body);
  const i2 = await rest("POST", "/api/v1/events", body);
  const i3 = await rest("POST", "/api/v1/events", { ...body, id: undefined }, { "idempotency-key": key });
  const i4 = await rest("POST", "/api/v1/events", body, { "idempotency-key": "other" });
  await sleep(300);
  assert.deepEqual(i2.body, i1.body);
  assert.deepEqual(i3.body, i1.body);
  assert.equal(i2.headers.get("idempotent-replayed"), "true");
  assert.equal(svcGot.length, 1);
  note("idempotency", [i1.status, i2.status, i3.status, i4.status, i4.body.error && i4.body.error.code]);

  // errors
  const errs = {
    "no token": await rest("POST", "/api/v1/events", body, { authorization: "" }),
    "wrong token": await rest("POST", "/api/v1/events", body, { authorization: "Bearer nope" }),
    "malformed json": await rest("POST", "/api/v1/events", "{not json"),
    "not json": await rest("POST", "/api/v1/events", "x=1", { "content-type": "text/plain" }),
    "unknown type": await rest("POST", "/api/v1/events", { type: "booking:deleted", booking: {} }),
    "missing userId": await rest("POST", "/api/v1/events", { type: "booking:created", booking: { id: "b", vendorId: "v" } }),
    "bad vendorId": await rest("POST", "/api/v1/events", { type: "service:created", service: { id: "s", vendorId: true } }),
    "bad occurredAt": await rest("POST", "/api/v1/events", { type: "payment:completed", payment: { id: "p", userId: "u" }, occurredAt: "yesterday" }),
    "too large": await rest("POST", "/api/v1/events", { type: "service:created", service: { id: "s", vendorId: "v", blob: "x".repeat(300 * 1024) } }),
    "unknown route": await rest("GET", "/api/v1/nope"),
    "wrong method": await rest("GET", "/api/v1/events"),
    "unknown field": await rest("POST", "/api/v1/events", { type: "payment:completed", payment: { id: "p", userId: "u" }, extra: 1 }),
    "empty body": await rest("POST", "/api/v1/events", ""),
  };
  for (const [name, r] of Object.entries(errs)) {
    note(`error ${name}`, { status: r.status, code: r.body.error && r.body.error.code, field: r.body.error && r.body.error.field });
  }
  assert.equal(errs["no token"].status, 401);
  assert.equal(errs["malformed json"].status, 400);
  assert.equal(errs["not json"].status, 415);
  assert.equal(errs["unknown type"].status, 422);
  assert.equal(errs["missing userId"].body.error.field, "booking.userId");
  assert.equal(errs["too large"].status, 413);
  assert.equal(errs["unknown route"].status, 404);

  // batch
  const b1 = await rest("POST", "/api/v1/events/batch", {
    events: [
      { type: "service:created", service: { id: "s2", vendorId: v } },
      { type: "booking:created", booking: { id: "b2", userId: u, vendorId: v } },
    ],
  });
  assert.equal(b1.status, 202);
  assert.equal(b1.body.events.length, 2);
  const b2 = await rest("POST", "/api/v1/events/batch", {
    events: [{ type: "service:created", service: { id: "s3", vendorId: v } }, { type: "booking:created", booking: { id: "b3", vendorId: v } }],
  });
  const b3 = await rest("POST", "/api/v1/events/batch", { events: [] });
  const b4 = await rest("POST", "/api/v1/events/batch", { events: Array(501).fill({ type: "service:created", service: { id: "s", vendorId: "v" } }) });
  note("batch", [b1.status, [b2.status, b2.body.error.field], [b3.status, b3.body.error.field], [b4.status, b4.body.error.field]]);
  assert.equal(b2.body.error.field, "events[1].booking.userId");

  // --- chat: user -> vendor; the user's other device gets it, the sender does not
  const vendorChat = collect(vendor, "chat:message");
  const u1Chat = collect(user1, "chat:message");
  const u2Chat = collect(user2, "chat:message");
  const sent = await ack(user1, "chat:send", { to: { type: "vendor", id: v }, text: "Is 3pm fine? 👍", clientMsgId: "m1", from: { type: "vendor", id: "spoof" } });
  assert.equal(sent.ok, true);
  assert.deepEqual(sent.message.from, { type: "user", id: u });
  await sleep(300);
  assert.equal(vendorChat.length, 1);
  assert.equal(u2Chat.length, 1);
  assert.equal(u1Chat.length, 0);
  assert.deepEqual(vendorChat[0], sent.message);
  note("chat message keys", Object.keys(sent.message));
  const reply = await ack(vendor, "chat:send", { to: { type: "user", id: u }, text: "yes" });
  assert.equal(reply.ok, true);
  assert.equal(reply.message.clientMsgId, null);
  await sleep(200);
  assert.equal(u1Chat.length, 1);
  const chatErrs = {
    "user to user": await ack(user1, "chat:send", { to: { type: "user", id: "x" }, text: "hi" }),
    "empty text": await ack(user1, "chat:send", { to: { type: "vendor", id: v }, text: "" }),
    "4001 chars": await ack(user1, "chat:send", { to: { type: "vendor", id: v }, text: "é".repeat(4001) }),
    "4000 emoji": await ack(user1, "chat:send", { to: { type: "vendor", id: v }, text: "👍".repeat(4000) }),
    "no to": await ack(user1, "chat:send", { text: "hi" }),
    "admin": await ack(admin, "chat:send", { to: { type: "vendor", id: v }, text: "hi" }),
  };
  for (const [name, a] of Object.entries(chatErrs)) note(`chat ${name}`, { ok: a.ok, error: a.error });
  assert.equal(chatErrs["user to user"].error, "forbidden");
  assert.equal(chatErrs["4000 emoji"].ok, true);

  // typing
  const typing = next(vendor, "chat:typing");
  user1.emit("chat:typing", { to: { type: "vendor", id: v } });
  const t = await typing;
  assert.deepEqual(t, { from: { type: "user", id: u }, to: { type: "vendor", id: v } });
  note("typing", t && Object.keys(t));

  // REST chat
  const rc = await rest("POST", "/api/v1/chat/messages", { from: { type: "vendor", id: v }, to: { type: "user", id: u }, text: "Your booking is confirmed." });
  const rcBad = await rest("POST", "/api/v1/chat/messages", { from: { type: "user", id: "a" }, to: { type: "user", id: u }, text: "x" });
  note("rest chat", [rc.status, rc.body.rooms, rcBad.status, rcBad.body.error.field]);
  assert.equal(rc.status, 202);

  // auth:refresh
  const rf = await ack(user1, "auth:refresh", { token: token({ sub: u }, { expiresIn: 600 }) });
  const rfBad = await ack(user1, "auth:refresh", { token: token({ sub: "someone-else" }) });
  note("auth:refresh", [rf.ok, typeof rf.exp, rfBad.ok, rfBad.error]);

  // disconnect endpoint
  const gone = next(user2, "disconnect");
  const dc = await rest("POST", `/api/v1/users/${u}/disconnect`);
  assert.deepEqual(dc.body, { disconnected: 2 });
  await gone;
  const after = await rest("GET", `/api/v1/presence/user/${u}`);
  assert.deepEqual(after.body, { online: false, connections: 0 });
  note("disconnect", [dc.status, dc.body, after.body]);

  // ops
  const h = await fetch(`${BASE}/health`);
  const r = await fetch(`${BASE}/ready`);
  note("ops", [h.status, await h.json(), r.status, await r.json()]);

  for (const s of [user1, user2, vendor, admin]) s.close();
  if (TRANSCRIPT) for (const [k, v2] of transcript) console.log(`${k}: ${JSON.stringify(v2)}`);
  console.log("check: all assertions passed");
}

main().catch((e) => {
  if (TRANSCRIPT) for (const [k, v2] of transcript) console.log(`${k}: ${JSON.stringify(v2)}`);
  console.error("check FAILED:", e);
  process.exit(1);
});
