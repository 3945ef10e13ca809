"""Shared helpers for the black-box tests of fixrx-realtime with python-socketio.

The server binary is started once per test session on 127.0.0.1 with a random port
(``PORT=0``); its port is read from the ``fixrx-realtime listening`` JSON log line.
Its stdout and stderr go to a file, so no pipe can ever fill up. It is stopped with
SIGTERM at the end of the session, and must exit 0.

Tests use fresh random ids (``uid``), so they never see each other's events.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Optional

import aiohttp
import jwt
import socketio

REPO_ROOT = Path(__file__).resolve().parents[2]

#: The server binary: $FIXRX_BIN (relative paths resolved from the current
#: directory), else the debug build of the repository. The tests never run cargo.
BIN = (
    Path(os.environ["FIXRX_BIN"]).resolve()
    if os.environ.get("FIXRX_BIN")
    else REPO_ROOT / "target" / "debug" / "fixrx-realtime"
)

JWT_SECRET = "py-suite-jwt-secret-0123456789abcdef"
API_TOKEN = "py-suite-api-token-0123456789abcdef"

#: Positive waits (seconds): generous, the machine is small and shared.
TIMEOUT = 5.0
#: Negative waits (seconds): how long we watch for something that must not arrive.
QUIET = 0.3


def uid(prefix: str) -> str:
    """A fresh id, so that tests never see each other's events."""
    return f"{prefix}-{secrets.token_hex(5)}"


# ---------------------------------------------------------------------------
# The server process

_started: set[subprocess.Popen] = set()


@atexit.register
def _kill_leftovers() -> None:
    # Last resort if the session died before its teardown: kill only our own children.
    for proc in list(_started):
        if proc.poll() is None:
            proc.kill()


@dataclass
class Server:
    proc: subprocess.Popen
    workdir: Path
    log_path: Path
    url: str = ""
    port: int = 0
    _log_file: Any = field(default=None, repr=False)

    def log_lines(self) -> list[str]:
        try:
            return self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.log_lines()[-n:])

    def stop(self, timeout: float = 8.0) -> tuple[Optional[int], bool]:
        """SIGTERM, wait for the exit (SIGKILL after ``timeout``): (exit code, killed)."""
        killed = False
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                killed = True
        _started.discard(self.proc)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return self.proc.returncode, killed

    def cleanup(self) -> None:
        """Removes the private working directory (and the log in it)."""
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_server(env: Optional[dict[str, str]] = None, start_timeout: float = 15.0) -> Server:
    """Starts the server and waits for its ``fixrx-realtime listening`` log line."""
    if not BIN.exists():
        raise RuntimeError(
            f"server binary not found at {BIN}: run `cargo build` in the repository root or set FIXRX_BIN"
        )
    # A private working directory: the server reads a `.env` from its cwd, and the
    # repository's own `.env` (if any) must not leak into the tests.
    workdir = Path(tempfile.mkdtemp(prefix="fixrx-py-"))
    log_path = workdir / "server.log"
    log_file = open(log_path, "wb")
    child_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PORT": "0",
        "HOST": "127.0.0.1",
        "LOG_FORMAT": "json",
        # FIXRX_TEST_RUST_LOG=debug shows the transport's packets in failure reports.
        "RUST_LOG": os.environ.get("FIXRX_TEST_RUST_LOG", "info"),
        "APP_ENV": "development",
        "JWT_SECRET": JWT_SECRET,
        "API_TOKEN": API_TOKEN,
        **(env or {}),
    }
    proc = subprocess.Popen(
        [str(BIN)], cwd=workdir, env=child_env,
        stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
    )
    _started.add(proc)
    server = Server(proc=proc, workdir=workdir, log_path=log_path, _log_file=log_file)

    deadline = time.monotonic() + start_timeout
    addr = None
    while addr is None:
        for line in server.log_lines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("message") == "fixrx-realtime listening" and isinstance(entry.get("addr"), str):
                addr = entry["addr"]
                break
        if addr is not None:
            break
        if proc.poll() is not None:
            server.stop()
            # (the working directory is kept: its server.log says why)
            raise RuntimeError(f"server exited before listening (code {proc.returncode}); log:\n{server.tail()}")
        if time.monotonic() > deadline:
            server.stop(timeout=1)
            raise RuntimeError(f"server did not log 'fixrx-realtime listening' within {start_timeout} s; log:\n{server.tail()}")
        time.sleep(0.02)

    host, _, port = addr.rpartition(":")
    server.port = int(port)
    server.url = f"http://127.0.0.1:{server.port}"
    return server


# ---------------------------------------------------------------------------
# Tokens and the REST API


def make_token(claims: dict, *, secret: str = JWT_SECRET, exp_in: Optional[int] = 600) -> str:
    """An HS256 client token. ``exp`` defaults to ``exp_in`` seconds from now (None: omitted)."""
    body = dict(claims)
    if exp_in is not None and "exp" not in body:
        body["exp"] = int(time.time()) + exp_in
    return jwt.encode(body, secret, algorithm="HS256")


def user_token(sub: str, **kw) -> str:
    return make_token({"sub": sub, "role": "user"}, **kw)


def vendor_token(sub: str, vendor_id: Optional[str] = None, **kw) -> str:
    claims = {"sub": sub, "role": "vendor"}
    if vendor_id is not None:
        claims["vendorId"] = vendor_id
    return make_token(claims, **kw)


async def post_event(server: Server, event: dict, *, api_token: str = API_TOKEN) -> tuple[int, Any]:
    """POSTs one event to /api/v1/events: (status, parsed body)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as http:
        async with http.post(
            f"{server.url}/api/v1/events",
            json=event,
            headers={"Authorization": f"Bearer {api_token}"},
        ) as res:
            text = await res.text()
            try:
                body = json.loads(text)
            except ValueError:
                body = text
            return res.status, body


async def emit_event(server: Server, event: dict) -> dict:
    """POSTs an event and asserts the 202; returns the answer ``{id, type, rooms}``."""
    status, body = await post_event(server, event)
    assert status == 202, f"POST /api/v1/events answered {status}: {body!r}"
    return body


def booking_event(user_id: str, vendor_id: str, **extra) -> dict:
    """A booking:status_changed event for ``user_id`` and ``vendor_id``, with a fresh booking id."""
    return {
        "type": "booking:status_changed",
        "booking": {"id": uid("b"), "userId": user_id, "vendorId": vendor_id, "status": "confirmed"},
        "previousStatus": "pending",
        **extra,
    }


# ---------------------------------------------------------------------------
# Clients


def _auth(token: Optional[str], offsets: Optional[dict]) -> Optional[dict]:
    auth = {}
    if token is not None:
        auth["token"] = token
    if offsets is not None:
        auth["offsets"] = offsets
    return auth or None


class Client:
    """A python-socketio AsyncClient that records every event it receives from the
    moment it is created, so a test can assert both what arrived and what did not."""

    def __init__(self, server: Server):
        self.server = server
        self.sio = socketio.AsyncClient(reconnection=False)
        #: Every event received, in order: (event name, args tuple).
        self.events: list[tuple[str, tuple]] = []
        #: The data of every connect_error.
        self.connect_errors: list[Any] = []
        self._changed = asyncio.Event()

        @self.sio.on("*")
        async def _any(event, *args):
            self.events.append((event, args))
            self._changed.set()

        @self.sio.event
        async def connect_error(data=None):
            self.connect_errors.append(data)
            self._changed.set()

        #: The Engine.IO transport in use when the Engine.IO session opened (before any
        #: upgrade): recorded by wrapping python-socketio's own Engine.IO connect handler.
        self.first_transport: Optional[str] = None
        eio_connect = self.sio.eio.handlers["connect"]

        async def _eio_connect():
            self.first_transport = self.sio.eio.current_transport
            return await eio_connect()

        self.sio.eio.handlers["connect"] = _eio_connect

    async def connect(self, *, token: Optional[str] = None, transports=("websocket",),
                      headers: Optional[dict] = None, query: str = "", ready: bool = True,
                      offsets: Optional[dict] = None) -> "Client":
        """Connects (``token`` goes into ``auth``, and ``offsets`` when given); raises
        socketio's ConnectionError if refused.

        With ``ready`` (the default), also waits until the server answers a ``ping``: see
        ``wait_ready`` for why.
        """
        url = self.server.url + (f"/?{query}" if query else "")
        task = asyncio.ensure_future(self.sio.connect(
            url,
            auth=_auth(token, offsets),
            headers=headers or {},
            transports=list(transports),
            wait_timeout=TIMEOUT,
        ))
        # A refused python-socketio client disconnects inside connect(). Over polling that
        # can hang until the server's next heartbeat (25 s) because of a python-engineio
        # race (see ``close``); once connect_error has arrived the outcome is known, so
        # give connect() half a second to raise, then raise on its behalf.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT + 2
        refused_at = None
        while not task.done():
            if self.connect_errors and refused_at is None:
                refused_at = loop.time()
            if refused_at is not None and loop.time() - refused_at > 0.5:
                task.cancel()
                await self._abort()
                raise socketio.exceptions.ConnectionError(
                    f"One or more namespaces failed to connect (connect_error: {self.connect_errors!r})")
            if loop.time() > deadline:
                task.cancel()
                await self._abort()
                raise AssertionError(f"connect() neither connected nor failed within {TIMEOUT + 2} s")
            await asyncio.wait([task], timeout=0.05)
        task.result()  # raises socketio's ConnectionError when refused
        if ready:
            await self.wait_ready()
        return self

    async def wait_ready(self, timeout: float = TIMEOUT) -> int:
        """Waits until the server answers a ``ping``; returns how many pings went unanswered.

        Works around a server race seen in earlier versions: fixrx-realtime registers its
        event handlers and joins the socket's own rooms in an async connect handler that
        socketioxide spawns *after* sending the CONNECT acknowledgement, so an event the
        client sends right after ``connect()`` returns can be dropped without an ack. A
        ``ping`` ack proves the handlers are registered (they are set after the room joins).
        ``test_event_right_after_connect_is_answered`` exercises the race itself.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        lost = 0
        while True:
            try:
                ack = await self.sio.call("ping", {}, timeout=0.5)
                assert isinstance(ack, dict) and ack.get("ok") is True, f"ping answered {ack!r}"
                return lost
            except socketio.exceptions.TimeoutError:
                lost += 1
                if loop.time() > deadline:
                    raise AssertionError(f"the server answered none of {lost} pings within {timeout} s")

    @property
    def transport(self) -> Optional[str]:
        return self.sio.transport()

    def received(self, event: str, pred: Callable[[Any], bool] = lambda _a: True) -> list[tuple]:
        """The args of the events named ``event`` whose first argument matches ``pred``."""
        return [args for name, args in self.events if name == event and pred(args[0] if args else None)]

    async def wait_for(self, event: str, pred: Callable[[Any], bool] = lambda _a: True,
                       timeout: float = TIMEOUT) -> tuple:
        """The args of the first ``event`` whose first argument matches ``pred``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            hits = self.received(event, pred)
            if hits:
                return hits[0]
            remaining = deadline - loop.time()
            if remaining <= 0:
                seen = ", ".join(name for name, _ in self.events) or "nothing"
                raise AssertionError(f"no matching {event!r} within {timeout} s (received: {seen})")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def call(self, event: str, data: Any = None, timeout: float = TIMEOUT) -> Any:
        """Emits with an acknowledgement and returns the ack's (first) argument."""
        return await self.sio.call(event, data, timeout=timeout)

    async def close(self) -> None:
        """Disconnects, without ever hanging a test.

        python-engineio (4.15) race: if ``disconnect()`` runs while a polling POST is in
        flight (typically the PONG to the ping that the server sends right after the
        handshake), its write loop exits without sending the CLOSE packet, and
        ``disconnect()`` then waits for the pending long-poll GET, which only returns at
        the server's next ping (``PING_INTERVAL_MS``, 25 s). So: let queued packets go out
        first, bound the disconnect, and abort the transport if it still hangs.
        """
        eio = self.sio.eio
        try:
            if eio.state == "connected" and eio.current_transport == "polling":
                await asyncio.wait_for(eio.queue.join(), 2)
        except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - best effort at teardown
            pass
        try:
            await asyncio.wait_for(self.sio.disconnect(), 2)
        except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - best effort at teardown
            await self._abort()

    async def _abort(self) -> None:
        """Drops the Engine.IO transport without a handshake (closes its HTTP session)."""
        eio = self.sio.eio
        for name in ("read_loop_task", "write_loop_task"):
            task = getattr(eio, name, None)
            if task is not None and not task.done():
                task.cancel()
        try:
            if eio.ws is not None and not eio.ws.closed:
                await eio.ws.close()
        except Exception:  # noqa: BLE001
            pass
        try:
            await eio._reset()  # state 'disconnected', closes the aiohttp session
        except Exception:  # noqa: BLE001
            pass


async def expect_nothing(clients: list[Client], event: Optional[str] = None,
                         pred: Callable[[Any], bool] = lambda _a: True, quiet: float = QUIET) -> None:
    """Waits ``quiet`` seconds and asserts no client received ``event`` (any event when None)."""
    await asyncio.sleep(quiet)
    for c in clients:
        got = [(name, args) for name, args in c.events
               if (event is None or name == event) and pred(args[0] if args else None)]
        assert got == [], f"a client received what it must not: {got!r}"


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def parse_rfc3339(value: Any, what: str = "timestamp") -> datetime:
    """Asserts ``value`` is an RFC 3339 timestamp and returns it (timezone-aware)."""
    assert isinstance(value, str), f"{what} must be a string, got {value!r}"
    assert _RFC3339.match(value), f"{what} is not RFC 3339: {value!r}"
    # fromisoformat (3.11) takes at most 6 fractional digits and no 'Z' before 3.11: normalise.
    text = value.replace("Z", "+00:00").replace("z", "+00:00")
    text = re.sub(r"\.(\d{6})\d+", r".\1", text)
    parsed = datetime.fromisoformat(text)
    assert parsed.tzinfo is not None, f"{what} has no offset: {value!r}"
    return parsed
