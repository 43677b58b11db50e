#!/usr/bin/env bash
# Instructions per delivered message on the hot paths, ours against a baseline doing the same
# work, counted by `valgrind --tool=callgrind` (repeatable where wall-clock figures are not).
# Each scenario side runs twice, with N and 2N messages: (I(2N) - I(N)) / N cancels the fixed
# cost of starting up. Scenarios: conformance-tests/examples/instructions.rs.
#   usage: scripts/instructions.sh [SCENARIO...]   (default: fanout routing envelope nats redis)
# nats and redis need the local brokers (PUBSUB_NATS_URL, PUBSUB_REDIS_URL; skipped when down).
# INSTR_SCALE=2 doubles every N (steadier, slower); INSTR_BIN=path measures another build of the
# scenario binary (e.g. one saved before a change). Takes about three minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(fanout routing envelope nats redis)
scale=${INSTR_SCALE:-1}
bin=${INSTR_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release -q -p conformance-tests --example instructions
  bin=${CARGO_TARGET_DIR:-target}/release/examples/instructions
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

reachable() { # host:port of a URL
  local hostport=${1#*://}; hostport=${hostport##*@}; hostport=${hostport%%/*}; hostport=${hostport%%,*}
  timeout 2 bash -c "exec 3<>/dev/tcp/${hostport%:*}/${hostport##*:}" 2>/dev/null
}

# Instructions of one run: scenario side n.
count() {
  local out="$work/$1.$2.$3.out"
  valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" "$1" "$2" "$3" \
    >"$work/log" 2>&1 || { cat "$work/log" >&2; return 1; }
  grep -q "handled $3 of $3" "$work/log" || { echo "$1 $2 $3: messages lost" >&2; tail -3 "$work/log" >&2; return 1; }
  awk '/^(summary|totals):/ { print $2; exit }' "$out"
}

# Instructions per delivered message: scenario side n deliveries-per-message.
per_message() {
  local one two
  one=$(count "$1" "$2" "$3") && two=$(count "$1" "$2" $(($3 * 2))) || { echo "-"; return; }
  awk -v a="$one" -v b="$two" -v n="$3" -v d="$4" 'BEGIN { printf "%.0f", (b - a) / (n * d) }'
}

# The ratio reads like the wall-clock ones: above 1, ours costs fewer instructions.
printf '| %-9s | %-52s | %10s | %10s | %11s |\n' scenario "instructions per delivered message" ours baseline "base / ours"
printf '|%s|%s|%s|%s|%s|\n' ----------- ------------------------------------------------------ ----------: ----------: ------------:
for s in "${scenarios[@]}"; do
  # n (ours), n (baseline), deliveries per message, description
  case $s in
    fanout) args=(1000 1000 100 "memory 1 -> 100 subs, 64 B vs tokio broadcast") ;;
    routing) args=(20000 200 1 "trie vs regex scan, 1000 patterns") ;;
    envelope) args=(20000 20000 1 "encode+decode 64 B + 2 headers vs plain copy") ;;
    nats) reachable "${PUBSUB_NATS_URL:-nats://127.0.0.1:4222}" || { echo "| nats | skipped: no broker |" ; continue; }
      args=(4000 4000 1 "inbound 64 B: adapter vs raw async-nats") ;;
    redis) reachable "${PUBSUB_REDIS_URL:-redis://127.0.0.1:6379}" || { echo "| redis | skipped: no broker |"; continue; }
      args=(4000 4000 1 "inbound 64 B: adapter vs raw fred") ;;
    *) echo "unknown scenario $s" >&2; exit 2 ;;
  esac
  ours=$(per_message "$s" ours $((args[0] * scale)) "${args[2]}")
  base=$(per_message "$s" base $((args[1] * scale)) "${args[2]}")
  ratio=$(awk -v o="$ours" -v b="$base" 'BEGIN { if (o > 0 && b > 0) printf "%.2f", b / o; else print "-" }')
  printf '| %-9s | %-52s | %10s | %10s | %11s |\n' "$s" "${args[3]}" "$ours" "$base" "$ratio"
done
