"""Fixtures for the python-socketio suite: ``server`` (one fixrx-realtime process for the
session, stopped with SIGTERM and required to exit 0) and ``clients`` (a factory of
recorded ``AsyncClient`` wrappers, all disconnected after each test).

Helpers (token signing, REST posting, waiting) live in ``helpers.py``.
"""

from __future__ import annotations

import asyncio

import pytest

from helpers import Client, start_server


@pytest.fixture(scope="session")
def server():
    """One server for the whole session; it must exit 0 on SIGTERM."""
    srv = start_server()
    yield srv
    code, killed = srv.stop()
    tail = srv.tail()
    srv.cleanup()
    assert not killed, f"server did not exit within 8 s of SIGTERM; log:\n{tail}"
    assert code == 0, f"server exited {code} on SIGTERM; log:\n{tail}"


@pytest.fixture
async def clients(server):
    """A factory of recorded clients of the session server; all closed after the test."""
    made: list[Client] = []

    def make() -> Client:
        c = Client(server)
        made.append(c)
        return c

    yield make
    await asyncio.gather(*(c.close() for c in made))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attaches the server's last log lines to the report of a failed test."""
    outcome = yield
    report = outcome.get_result()
    srv = item.funcargs.get("server") if hasattr(item, "funcargs") else None
    if report.failed and srv is not None:
        report.sections.append(("fixrx-realtime log (last 60 lines)", srv.tail(60)))
