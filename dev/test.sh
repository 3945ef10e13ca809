#!/usr/bin/env bash
# The whole test suite: Rust unit and integration tests (with a real redis-server),
# then the official JavaScript socket.io-client suite and the python-socketio suite
# against the built binary.
set -euo pipefail
cd "$(dirname "$0")/.."

# Node.js, redis-server, openssl, Python's venv, Chromium: installed when missing, or a
# stop at once with the command to run.
bash dev/setup.sh

cargo build --workspace --bins
cargo test --workspace

npm ci --prefix dev --no-audit --no-fund --loglevel=error
npm ci --prefix tests/js --no-audit --no-fund --loglevel=error
FIXRX_BIN="$PWD/target/debug/fixrx-realtime" npm test --prefix tests/js
# The controllers' npm package, against the same binary (its tests reuse tests/js's helpers).
npm ci --prefix clients/node --no-audit --no-fund --loglevel=error
FIXRX_BIN="$PWD/target/debug/fixrx-realtime" npm test --prefix clients/node

# A second client family: python-socketio's AsyncClient, in a venv of its own.
python=${PYTHON:-python3}
[ -x tests/py/.venv/bin/python ] || "$python" -m venv tests/py/.venv
tests/py/.venv/bin/python -m pip install -q --disable-pip-version-check -r tests/py/requirements.txt
FIXRX_BIN="$PWD/target/debug/fixrx-realtime" tests/py/.venv/bin/python -m pytest tests/py -q
