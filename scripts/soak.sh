#!/usr/bin/env bash
# Soak test (not part of the test command): MINUTES of mixed publish/subscribe/cut traffic on
# each BACKEND, one process each, in parallel; each prints a line per minute (memory, tasks,
# descriptors, sockets, losses with and without a gap) and exits 1 on a silent loss.
#   usage: scripts/soak.sh [MINUTES] [BACKEND...]    (default: 10 minutes; memory redis nats amqp;
#   also mqtt, postgres)
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-10}
shift || true
backends=("$@")
[ ${#backends[@]} -gt 0 ] || backends=(memory redis nats amqp)
bash scripts/brokers.sh redis nats amqp mqtt postgres
cargo build --release -q -p conformance-tests --example soak
bin=${CARGO_TARGET_DIR:-target}/release/examples/soak
status=0
pids=()
for b in "${backends[@]}"; do
  "$bin" "$b" "$minutes" > "soak-$b.log" 2>&1 &
  pids+=($!)
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || status=1
  cat "soak-${backends[$i]}.log"
done
exit $status
