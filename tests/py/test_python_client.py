"""fixrx-realtime with a second real client family: python-socketio's AsyncClient.

Contract sections 2 to 4: handshake authentication (auth payload, Bearer header,
``?token=`` query, refusals), delivery of REST-triggered events to exactly their rooms
with the envelope, acknowledgements of client events, and chat.

Every positive wait is ``TIMEOUT`` (5 s); every "must not arrive" check watches for
``QUIET`` (0.3 s) after the positive check that proves the event was emitted.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import socketio

from helpers import (
    booking_event,
    emit_event,
    expect_nothing,
    make_token,
    parse_rfc3339,
    uid,
    user_token,
    vendor_token,
)

# (transports passed to python-socketio, transport of the Engine.IO handshake, final transport)
TRANSPORTS = {
    "websocket": (["websocket"], "websocket", "websocket"),
    "polling": (["polling"], "polling", "polling"),
    "polling-upgrade": (["polling", "websocket"], "polling", "websocket"),
}


def _within(ts: datetime, seconds: float = 60) -> bool:
    return abs(datetime.now(timezone.utc) - ts) < timedelta(seconds=seconds)


async def assert_receives_user_events(server, client, sub: str) -> None:
    """Proves ``client`` is in ``user:<sub>``: an event for that user reaches it."""
    event = booking_event(sub, uid("v"))
    await emit_event(server, event)
    (got,) = await client.wait_for("booking:status_changed", lambda e: e["booking"]["id"] == event["booking"]["id"])
    assert got["booking"]["userId"] == sub


# ---------------------------------------------------------------------------
# 1. auth payload, every transport; REST event with the envelope; bystander gets nothing


@pytest.mark.parametrize("mode", list(TRANSPORTS))
async def test_auth_token_receives_rest_event_with_envelope(server, clients, mode):
    transports, first, final = TRANSPORTS[mode]
    user, vendor, other_user, other_vendor = uid("u"), uid("v"), uid("u"), uid("v")

    c_user = await clients().connect(token=user_token(user), transports=transports)
    c_vendor = await clients().connect(token=vendor_token(uid("owner"), vendor), transports=transports)
    bystander = await clients().connect(token=user_token(other_user), transports=transports)
    other_vendor_c = await clients().connect(token=vendor_token(uid("owner"), other_vendor), transports=transports)
    for c in (c_user, c_vendor, bystander, other_vendor_c):
        assert c.sio.connected
        assert c.first_transport == first, f"Engine.IO session opened over {c.first_transport}, expected {first}"
        assert c.transport == final, f"transport is {c.transport}, expected {final}"

    event = {
        "type": "booking:status_changed",
        "occurredAt": "2026-11-25T10:00:00Z",
        "actor": {"id": vendor, "role": "vendor"},
        "booking": {"id": uid("b"), "userId": user, "vendorId": vendor, "status": "confirmed",
                    "notes": {"nested": [1, "two"]}},
        "previousStatus": "pending",
    }
    answer = await emit_event(server, event)
    assert answer["type"] == "booking:status_changed"
    assert sorted(answer["rooms"]) == sorted([f"user:{user}", f"vendor:{vendor}"])

    expected = {
        "id": answer["id"],
        "type": "booking:status_changed",
        "occurredAt": "2026-11-25T10:00:00Z",
        "actor": {"id": vendor, "role": "vendor"},
        "booking": event["booking"],
        "previousStatus": "pending",
    }
    for c in (c_user, c_vendor):
        args = await c.wait_for("booking:status_changed")
        assert len(args) == 1, f"expected one argument (the envelope), got {args!r}"
        envelope = args[0]
        assert isinstance(envelope["id"], str) and envelope["id"]
        parse_rfc3339(envelope["occurredAt"], "occurredAt")
        assert _positions(envelope) == {f"user:{user}", f"vendor:{vendor}"}
        assert envelope == expected

    # Without occurredAt the server stamps it with its own clock.
    event2 = booking_event(user, vendor)
    answer2 = await emit_event(server, event2)
    (env2,) = await c_user.wait_for("booking:status_changed", lambda e: e["id"] == answer2["id"])
    assert env2["type"] == "booking:status_changed"
    assert env2["booking"] == event2["booking"]
    assert env2["previousStatus"] == "pending"
    assert _within(parse_rfc3339(env2["occurredAt"], "occurredAt")), env2["occurredAt"]
    assert env2["id"] != answer["id"]

    await c_vendor.wait_for("booking:status_changed", lambda e: e["id"] == answer2["id"])
    await expect_nothing([bystander, other_vendor_c])
    # Each target got each event exactly once, and nothing else.
    for c in (c_user, c_vendor):
        assert [name for name, _ in c.events] == ["booking:status_changed"] * 2
        assert [args[0]["id"] for _, args in c.events] == [answer["id"], answer2["id"]]


# ---------------------------------------------------------------------------
# 2. Bearer header and ?token= query


@pytest.mark.parametrize("mode", ["websocket", "polling-upgrade"])
async def test_bearer_header_connects(server, clients, mode):
    transports, first, final = TRANSPORTS[mode]
    sub = uid("u")
    c = await clients().connect(headers={"Authorization": f"Bearer {user_token(sub)}"}, transports=transports)
    assert (c.first_transport, c.transport) == (first, final)
    await assert_receives_user_events(server, c, sub)


@pytest.mark.parametrize("mode", ["websocket", "polling-upgrade"])
async def test_query_token_connects(server, clients, mode):
    transports, first, final = TRANSPORTS[mode]
    sub = uid("u")
    c = await clients().connect(query=f"token={user_token(sub)}", transports=transports)
    assert (c.first_transport, c.transport) == (first, final)
    await assert_receives_user_events(server, c, sub)


# ---------------------------------------------------------------------------
# 3. refused tokens


def _refusal_cases():
    yield "expired", lambda sub: user_token(sub, exp_in=-30), "unauthorized: token expired"
    yield "wrong-secret", lambda sub: user_token(sub, secret="not-the-server-secret-0123456789"), \
        "unauthorized: invalid signature"
    yield "malformed", lambda sub: "garbage", "unauthorized: token malformed"
    yield "no-exp", lambda sub: make_token({"sub": sub}, exp_in=None), "unauthorized: missing claim `exp`"
    yield "bad-role", lambda sub: make_token({"sub": sub, "role": "root"}), "unauthorized: invalid role"


@pytest.mark.parametrize("case,make,message", list(_refusal_cases()), ids=[c[0] for c in _refusal_cases()])
async def test_bad_token_in_auth_is_refused(server, clients, case, make, message):
    sub = uid("u")
    c = clients()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await c.connect(token=make(sub))
    # python-socketio reports the server's CONNECT_ERROR data through `connect_error`;
    # the exception itself only says "One or more namespaces failed to connect: /".
    assert c.connect_errors == [{"message": message}]
    assert not c.sio.connected
    # No room was joined: an event for that user reaches a control client only.
    control = await clients().connect(token=user_token(sub))
    await assert_receives_user_events(server, control, sub)
    await expect_nothing([c])


async def test_missing_token_is_refused(server, clients):
    c = clients()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await c.connect()
    assert c.connect_errors == [{"message": "unauthorized: token missing"}]
    assert not c.sio.connected


@pytest.mark.parametrize("where", ["header", "query"])
@pytest.mark.parametrize("mode", ["websocket", "polling"])
async def test_expired_token_in_header_or_query_is_refused(server, clients, where, mode):
    transports = TRANSPORTS[mode][0]
    tok = user_token(uid("u"), exp_in=-30)
    c = clients()
    with pytest.raises(socketio.exceptions.ConnectionError):
        if where == "header":
            await c.connect(headers={"Authorization": f"Bearer {tok}"}, transports=transports)
        else:
            await c.connect(query=f"token={tok}", transports=transports)
    assert c.connect_errors == [{"message": "unauthorized: token expired"}]
    assert not c.sio.connected


async def test_invalid_auth_token_wins_over_valid_header(server, clients):
    sub = uid("u")
    c = clients()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await c.connect(token="garbage", headers={"Authorization": f"Bearer {user_token(sub)}"})
    assert c.connect_errors == [{"message": "unauthorized: token malformed"}]


# ---------------------------------------------------------------------------
# 4. acknowledgements


@pytest.mark.parametrize("mode", ["websocket", "polling"])
async def test_ping_ack(server, clients, mode):
    c = await clients().connect(token=user_token(uid("u")), transports=TRANSPORTS[mode][0])
    for payload in ({}, "anything", None):
        ack = await c.call("ping", payload)
        assert set(ack) == {"ok", "pong", "serverTime"}, ack
        assert ack["ok"] is True and ack["pong"] is True
        assert _within(parse_rfc3339(ack["serverTime"], "serverTime")), ack["serverTime"]


async def test_join_own_room_ok_other_room_forbidden(server, clients):
    me, other = uid("u"), uid("u")
    c = await clients().connect(token=user_token(me))
    other_c = await clients().connect(token=user_token(other))

    assert await c.call("join", {"type": "user", "id": me}) == {"ok": True, "room": f"user:{me}"}

    for target in ({"type": "user", "id": other}, {"type": "vendor", "id": uid("v")}):
        ack = await c.call("join", target)
        assert ack["ok"] is False and ack["error"] == "forbidden", ack

    # The refused join really joined nothing: the other user's event reaches only them.
    await assert_receives_user_events(server, other_c, other)
    await expect_nothing([c])


async def test_vendor_join_own_vendor_room_ok_other_forbidden(server, clients):
    owner, vendor, other_vendor = uid("owner"), uid("v"), uid("v")
    c = await clients().connect(token=vendor_token(owner, vendor))
    assert await c.call("join", {"type": "vendor", "id": vendor}) == {"ok": True, "room": f"vendor:{vendor}"}
    ack = await c.call("join", {"type": "vendor", "id": other_vendor})
    assert ack["ok"] is False and ack["error"] == "forbidden", ack


async def test_admin_may_join_any_room_and_then_receives_its_events(server, clients):
    user = uid("u")
    admin = await clients().connect(token=make_token({"sub": uid("admin"), "role": "admin"}))
    assert await admin.call("join", {"type": "user", "id": user}) == {"ok": True, "room": f"user:{user}"}
    await assert_receives_user_events(server, admin, user)
    assert await admin.call("leave", {"type": "user", "id": user}) == {"ok": True, "room": f"user:{user}"}
    # After leaving, the admin is no longer in user:<id>; the user's own socket proves delivery.
    user_c = await clients().connect(token=user_token(user))
    event = booking_event(user, uid("v"))
    await emit_event(server, event)
    await user_c.wait_for("booking:status_changed", lambda e: e["booking"]["id"] == event["booking"]["id"])
    await expect_nothing([admin], "booking:status_changed", lambda e: e["booking"]["id"] == event["booking"]["id"])
    assert len(admin.received("booking:status_changed")) == 1


async def test_bad_payload_ack_keeps_socket_working(server, clients):
    c = await clients().connect(token=user_token(uid("u")))
    ack = await c.call("join", "not-an-object")
    assert ack["ok"] is False and ack["error"] == "invalid_payload", ack
    ack = await c.call("no:such:event", {})
    assert ack["ok"] is False and ack["error"] == "unknown_event", ack
    assert (await c.call("ping", {}))["ok"] is True


# ---------------------------------------------------------------------------
# 5. chat


async def test_chat_user_to_vendor_and_back(server, clients):
    user, owner, vendor = uid("u"), uid("owner"), uid("v")
    sender = await clients().connect(token=user_token(user))
    sender_other_device = await clients().connect(token=user_token(user), transports=["polling"])
    vendor_c = await clients().connect(token=vendor_token(owner, vendor))
    bystander_vendor = await clients().connect(token=vendor_token(uid("owner"), uid("v")))
    bystander_user = await clients().connect(token=user_token(uid("u")))

    ack = await sender.call("chat:send", {"to": {"type": "vendor", "id": vendor}, "text": "Is 3pm fine? ✓",
                                     "clientMsgId": "m-1"})
    assert ack["ok"] is True, ack
    msg = ack["message"]
    assert msg["from"] == {"type": "user", "id": user}
    assert msg["to"] == {"type": "vendor", "id": vendor}
    assert msg["text"] == "Is 3pm fine? ✓"
    assert msg["clientMsgId"] == "m-1"
    assert isinstance(msg["id"], str) and msg["id"]
    assert _within(parse_rfc3339(msg["sentAt"], "sentAt"))

    rooms = {f"user:{user}", f"vendor:{vendor}"}
    (received,) = await vendor_c.wait_for("chat:message", lambda m: m["id"] == msg["id"])
    assert _positions(received) == rooms
    assert received == msg
    (echo,) = await sender_other_device.wait_for("chat:message", lambda m: m["id"] == msg["id"])
    assert _positions(echo) == rooms
    assert echo == msg

    # The vendor answers; a `from` in the payload is ignored (the token says who speaks).
    ack2 = await vendor_c.call("chat:send", {"to": {"type": "user", "id": user}, "text": "Yes.",
                                        "from": {"type": "vendor", "id": "someone-else"}})
    assert ack2["ok"] is True, ack2
    assert ack2["message"]["from"] == {"type": "vendor", "id": vendor}
    for c in (sender, sender_other_device):
        (reply,) = await c.wait_for("chat:message", lambda m: m["id"] == ack2["message"]["id"])
        assert _positions(reply) == rooms
        assert reply == ack2["message"]

    await expect_nothing([bystander_vendor, bystander_user])
    # The sending socket has the ack, not an echo.
    assert [m["id"] for (m,) in sender.received("chat:message")] == [ack2["message"]["id"]]
    assert [m["id"] for (m,) in vendor_c.received("chat:message")] == [msg["id"]]


def _positions(payload):
    """Removes the event's `offsets` (one opaque position per room it was sent to) and
    returns the rooms it names."""
    offsets = payload.pop("offsets", None)
    assert isinstance(offsets, dict), f"no offsets in {payload!r}"
    assert all(isinstance(p, str) and p for p in offsets.values()), offsets
    return set(offsets)


async def test_chat_user_to_user_is_forbidden(server, clients):
    a, b = uid("u"), uid("u")
    ca = await clients().connect(token=user_token(a))
    cb = await clients().connect(token=user_token(b))
    ack = await ca.call("chat:send", {"to": {"type": "user", "id": b}, "text": "hi"})
    assert ack["ok"] is False and ack["error"] == "forbidden", ack
    await expect_nothing([cb])


# ---------------------------------------------------------------------------
# 6. service events reach the vendor by vendorId


@pytest.mark.parametrize("explicit_vendor_id", [True, False], ids=["vendorId-claim", "vendorId-defaults-to-sub"])
async def test_vendor_receives_service_created(server, clients, explicit_vendor_id):
    owner, vendor = uid("owner"), uid("v")
    if explicit_vendor_id:
        vendor_c = await clients().connect(token=vendor_token(owner, vendor))
    else:
        owner = vendor
        vendor_c = await clients().connect(token=vendor_token(owner))
    other_vendor = await clients().connect(token=vendor_token(uid("owner"), uid("v")))
    # A *user* whose id equals the vendorId is in user:<id>, not vendor:<id>.
    same_id_user = await clients().connect(token=user_token(vendor))

    service = {"id": uid("s"), "vendorId": vendor, "title": "Leak repair", "price": 4200}
    answer = await emit_event(server, {"type": "service:created", "service": service})
    assert answer["rooms"] == [f"vendor:{vendor}"]

    args = await vendor_c.wait_for("service:created")
    assert len(args) == 1
    envelope = args[0]
    assert envelope["id"] == answer["id"]
    assert envelope["type"] == "service:created"
    assert envelope["service"] == service
    parse_rfc3339(envelope["occurredAt"], "occurredAt")
    assert "booking" not in envelope and "payment" not in envelope

    await expect_nothing([other_vendor, same_id_user])
    assert len(vendor_c.received("service:created")) == 1


# ---------------------------------------------------------------------------
# Regression: events sent right after the CONNECT acknowledgement were once dropped
# (handlers were registered in a task started after the ack; now in a connect middleware).


async def test_event_right_after_connect_is_answered(server, clients):
    """A client may emit as soon as connect() returns (socket.io-client does: `connect` fires,
    then the app emits). Every such event must be handled. Sequential connections, each
    sending `ping` at once: the race loses a few percent of them on this machine."""
    tries = 40
    for attempt in range(1, tries + 1):
        c = await clients().connect(token=user_token(uid("u")), ready=False)
        try:
            ack = await c.call("ping", {}, timeout=1.0)
        except socketio.exceptions.TimeoutError:
            pytest.fail(f"connection {attempt} of {tries}: a ping sent right after connect() got no ack")
        assert ack["ok"] is True, ack
        await c.close()


@pytest.mark.parametrize("transports", [("websocket",), ("polling",)], ids=["websocket", "polling"])
async def test_a_client_back_with_its_offsets_gets_what_it_missed_once_in_order_then_recovery(
        server, clients, transports):
    """Contract section 7 with a second client family: the recipe's positions (from events
    and from the first `recovery` report) replay what was missed, then `recovery`."""
    owner, vendor = uid("owner"), uid("v")
    token = vendor_token(owner, vendor)
    offsets: dict = {}

    def keep(c):
        for _name, args in c.events:
            if args and isinstance(args[0], dict) and isinstance(args[0].get("offsets"), dict):
                offsets.update(args[0]["offsets"])

    first = await clients().connect(token=token, transports=transports, offsets={})
    (report,) = await first.wait_for("recovery")
    assert report["recovered"] is True and report["replayed"] == 0, report
    assert set(report["offsets"]) == {f"user:{owner}", f"vendor:{vendor}"}, report
    seen = await emit_event(server, booking_event(owner, vendor))
    await first.wait_for("booking:status_changed", lambda e: e["id"] == seen["id"])
    keep(first)
    await first.sio.disconnect()

    missed = [
        (await emit_event(server, booking_event(owner, vendor)))["id"],
        (await emit_event(server, {"type": "service:updated", "service": {"id": uid("s"), "vendorId": vendor}}))["id"],
        (await emit_event(server, {"type": "payment:completed", "payment": {"id": uid("p"), "userId": owner}}))["id"],
    ]
    back = await clients().connect(token=token, transports=transports, offsets=dict(offsets), ready=False)
    (report,) = await back.wait_for("recovery")
    got = [args[0]["id"] for name, args in back.events if name != "recovery"]
    assert got == missed, f"replayed {got}, missed {missed}"
    assert [name for name, _ in back.events][-1] == "recovery", "recovery comes after the replay"
    assert report["recovered"] is True and report["replayed"] == 3, report
    assert report["rooms"] == {f"user:{owner}": "recovered", f"vendor:{vendor}": "recovered"}, report

    live = await emit_event(server, booking_event(owner, vendor))
    await back.wait_for("booking:status_changed", lambda e: e["id"] == live["id"])
    expected = set(missed + [live["id"]])
    await expect_nothing([back], pred=lambda e: isinstance(e, dict) and "id" in e and e["id"] not in expected)
    ids = [args[0]["id"] for name, args in back.events if name != "recovery"]
    assert ids == missed + [live["id"]], "nothing twice, nothing out of order"
