#!/usr/bin/env bash
# Instructions per delivered message on the NATS path, adapter and raw async-nats, in one run:
# each row runs pubsub-nats/benches/inbound.rs under callgrind with COUNT and 2*COUNT messages
# and divides the difference (connecting and subscribing cancel out) by COUNT * copies.
# Needs valgrind and a NATS server at PUBSUB_NATS_URL (default nats://127.0.0.1:4222).
#
#   scripts/nats-instructions.sh            # every row
#   COUNT=2000 scripts/nats-instructions.sh # fewer messages (faster, a little less exact)
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-5000}
bin=$(cargo bench -p pubsub-nats --bench inbound --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*inbound[^"]*\)".*/\1/p' | tail -1)
[ -x "$bin" ] || { echo "could not build the inbound bench" >&2; exit 1; }

instructions() { # MODE COUNT SUBS DISTINCT SIZE
    env MODE="$1" COUNT="$2" SUBS="$3" DISTINCT="$4" SIZE="$5" \
        valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" 2>&1 |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}

printf '%-24s %8s %14s %14s %8s\n' row payload "adapter instr" "raw instr" ratio
for row in "1 0 64" "10 0 64" "10 1 64" "1 0 4096" "10 0 4096" "10 1 4096"; do
    read -r subs distinct size <<<"$row"
    count=$COUNT
    [ "$size" -gt 1024 ] && count=$((COUNT / 2))
    copies=$((count * subs))
    declare -A per
    for mode in adapter raw; do
        one=$(instructions $mode $count "$subs" "$distinct" "$size")
        two=$(instructions $mode $((count * 2)) "$subs" "$distinct" "$size")
        per[$mode]=$(((two - one) / copies))
    done
    label="$subs"
    [ "$subs" -gt 1 ] && label="$subs ($([ "$distinct" = 1 ] && echo distinct || echo same))"
    printf '%-24s %8s %14s %14s %8s\n' "$label" "$size" "${per[adapter]}/copy" "${per[raw]}/copy" \
        "$(awk -v a="${per[adapter]}" -v r="${per[raw]}" 'BEGIN { printf "%.2f", a / r }')"
done
