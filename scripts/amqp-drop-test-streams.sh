#!/usr/bin/env bash
# Deletes the stream queues and group queues the conformance and adapter tests leave on the
# local RabbitMQ: stream queues `pubsub.stream.<tag>.t_…` (roots from pubsub_test_support's
# unique_prefix) and the quorum queues of their groups `pubsub.group.<tag>.t-…` / `….t_…`
# (group names derived from those prefixes). A stream queue holds two files open at the
# broker for as long as it exists, and every quorum queue is a Raft cluster of its own, so a
# broker that ran the stream and group cases many times runs out of files and memory.
# Only those queues are touched; the registry of epochs (`pubsub.stream-epochs`) is left.
#   usage: scripts/amqp-drop-test-streams.sh [--dry-run]
set -euo pipefail

dry=false
[ "${1:-}" = "--dry-run" ] && dry=true
names=$(rabbitmqctl list_queues name type -q --no-table-headers 2>/dev/null |
  awk '($2 == "stream" && $1 ~ /^pubsub\.stream\.[0-9a-f]{8}\.t_/) ||
       ($2 == "quorum" && $1 ~ /^pubsub\.group\.[0-9a-f]{8}\.t[-_]/) { print $1 }')
count=$(printf '%s' "$names" | grep -c . || true)
echo "[amqp-drop-test-streams] $count test stream and group queue(s)" >&2
$dry && { printf '%s\n' "$names"; exit 0; }
while IFS= read -r name; do
  [ -z "$name" ] || rabbitmqctl delete_queue -q "$name" </dev/null >/dev/null
done <<<"$names"
