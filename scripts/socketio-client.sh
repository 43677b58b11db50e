#!/usr/bin/env bash
# Installs the official socket.io client (npm, pinned by package-lock.json) that the
# socketio-chat integration tests drive with the machine's Node. Idempotent and safe to run
# concurrently (the tests call it); fails loudly if Node or npm is missing.
set -euo pipefail
cd "$(dirname "$0")/../examples/socketio-chat/tests/js"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "socketio-client.sh: installing nodejs and npm" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm) >&2
  fi
fi
command -v node >/dev/null || { echo "socketio-client.sh: FATAL: node is not installed (apt-get install nodejs npm)" >&2; exit 1; }
command -v npm >/dev/null || { echo "socketio-client.sh: FATAL: npm is not installed (apt-get install npm)" >&2; exit 1; }
exec 9>.install.lock
flock 9
if [ -f node_modules/socket.io-client/package.json ] && [ node_modules/.package-lock.json -nt package-lock.json ]; then
  exit 0
fi
npm ci --no-audit --no-fund --loglevel=error >&2
