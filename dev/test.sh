#!/usr/bin/env bash
# The whole test suite: Rust unit and integration tests (with a real redis-server),
# then the official JavaScript socket.io-client suite and the python-socketio suite
# against the built binary.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
  echo "dev/test.sh: *** redis-server is not installed: the scale-out tests will FAIL." >&2
  echo "dev/test.sh: *** install it with: apt-get install redis-server" >&2
fi

cargo build --workspace --bins
cargo test --workspace

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "dev/test.sh: Node.js 18+ and npm are needed for the socket.io-client suite (apt-get install nodejs npm)" >&2
  exit 1
fi
npm ci --prefix dev --no-audit --no-fund --loglevel=error
npm ci --prefix tests/js --no-audit --no-fund --loglevel=error
FIXRX_BIN="$PWD/target/debug/fixrx-realtime" npm test --prefix tests/js
# The controllers' npm package, against the same binary (its tests reuse tests/js's helpers).
npm ci --prefix clients/node --no-audit --no-fund --loglevel=error
FIXRX_BIN="$PWD/target/debug/fixrx-realtime" npm test --prefix clients/node

# A second client family: python-socketio's AsyncClient, in a venv of its own.
python=${PYTHON:-python3}
if ! command -v "$python" >/dev/null 2>&1; then
  echo "dev/test.sh: Python 3.9+ is needed for the python-socketio suite" >&2
  exit 1
fi
[ -x tests/py/.venv/bin/python ] || "$python" -m venv tests/py/.venv
tests/py/.venv/bin/python -m pip install -q --disable-pip-version-check -r tests/py/requirements.txt
FIXRX_BIN="$PWD/target/debug/fixrx-realtime" tests/py/.venv/bin/python -m pytest tests/py -q
