#!/usr/bin/env bash
# The whole test suite: Rust unit and integration tests, then the official
# JavaScript socket.io-client suite against the built binary.
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
