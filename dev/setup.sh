#!/usr/bin/env bash
# Installs what the test suites need beside Rust, on Debian or Ubuntu: Node.js and npm
# (the socket.io-client suite and the Node package), redis-server and redis-cli (the
# scale-out and fault tests start their own), openssl (the TLS tests make their own
# certificates), Python with venv (the python-socketio suite) and Chromium (the console's
# browser tests). Does nothing when everything is there. Without apt-get, or without the
# rights to use it, it stops at once with the one command to run.
set -euo pipefail

need=()
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if ! command -v "${PYTHON:-python3}" >/dev/null 2>&1; then
  need+=(python3 python3-venv)
elif ! "${PYTHON:-python3}" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  need+=(python3-venv)
fi
# Debian's Chromium, never a downloaded browser.
[ -x /usr/bin/chromium ] || need+=(chromium)

# The suites need Node.js 20 (Debian 12's own package is 18).
node_version_ok() {
  local major
  major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
  if [ "$major" -lt 20 ]; then
    echo "dev/setup.sh: Node.js 20 or later is needed (found ${major}); install it from https://nodejs.org or with nvm, then run the tests again" >&2
    exit 1
  fi
}

if [ ${#need[@]} -eq 0 ]; then
  node_version_ok
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "dev/setup.sh: missing ${need[*]}; install them with your package manager, then run the tests again" >&2
  exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo)
  else
    echo "dev/setup.sh: missing ${need[*]}; run: sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
fi
echo "dev/setup.sh: installing ${need[*]}" >&2
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${need[@]}"
node_version_ok
