#!/usr/bin/env bash
# Starts (or stops) the local clusters the cluster conformance targets share:
#   a 3-node NATS cluster  on 127.0.0.1:4301-4303 (routes 6301-6303),
#   a Redis Cluster        on 127.0.0.1:7101-7106 (3 masters, 3 replicas).
# Idempotent: a cluster that already answers is left alone. Fails loudly (exit 1) when one
# cannot be started. Files and logs live in $PUBSUB_CLUSTER_DIR (default /tmp/pubsub-clusters).
#   usage: scripts/clusters.sh start|stop [nats] [redis]   (no backend: both)
set -euo pipefail

action=${1:-start}
shift || true
wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=(nats redis)
dir=${PUBSUB_CLUSTER_DIR:-/tmp/pubsub-clusters}
mkdir -p "$dir"

log() { printf '[clusters] %s\n' "$*" >&2; }
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
wait_port() {
  local port=$1 i
  for ((i = 0; i < 80; i++)); do port_open "$port" && return 0; sleep 0.25; done
  log "FATAL: nothing listens on 127.0.0.1:$port"
  return 1
}

nats_ports=(4301 4302 4303)
redis_ports=(7101 7102 7103 7104 7105 7106)

nats_start() {
  local bin=/usr/sbin/nats-server
  [ -x "$bin" ] || bin=$(command -v nats-server) || { log "FATAL: nats-server is not installed"; return 1; }
  local i p routes
  for i in 0 1 2; do
    p=${nats_ports[$i]}
    if port_open "$p"; then continue; fi
    routes=$(for j in 0 1 2; do [ "$j" = "$i" ] || printf 'nats://127.0.0.1:%s,' $((6301 + j)); done)
    # JetStream on every node (streams and groups), each with a store of its own, emptied
    # first: the cluster starts clean every time.
    rm -rf "$dir/js-$p"
    "$bin" -a 127.0.0.1 -p "$p" -n "node$i" --cluster_name pubsub-ci \
      --cluster "nats://127.0.0.1:$((6301 + i))" --routes "${routes%,}" \
      -js -sd "$dir/js-$p" \
      -l "$dir/nats-$p.log" -P "$dir/nats-$p.pid" &
    disown
  done
  for p in "${nats_ports[@]}"; do wait_port "$p"; done
  # Routes form within a second or two: each node logs one per peer.
  for p in "${nats_ports[@]}"; do
    for ((i = 0; i < 80; i++)); do
      [ "$(grep -cs 'Route connection created' "$dir/nats-$p.log")" -ge 2 ] && break
      sleep 0.25
    done
    [ "$i" -lt 80 ] || { log "FATAL: the NATS cluster's routes did not form (node $p)"; return 1; }
  done
  # JetStream needs a metadata leader before it takes a stream: one node logs that it is it.
  for ((i = 0; i < 120; i++)); do
    cat "$dir"/nats-*.log 2>/dev/null | grep -qi 'new JetStream cluster metadata leader\|is new JetStream cluster metadata leader' && break
    sleep 0.25
  done
  [ "$i" -lt 120 ] || { log "FATAL: the NATS cluster elected no JetStream metadata leader"; return 1; }
  log "NATS cluster is up on ${nats_ports[*]} (JetStream)"
}

nats_stop() {
  local p
  for p in "${nats_ports[@]}"; do
    [ -f "$dir/nats-$p.pid" ] && kill "$(cat "$dir/nats-$p.pid")" 2>/dev/null || true
    rm -f "$dir/nats-$p.pid"
  done
  log "NATS cluster stopped"
}

redis_cluster_ok() {
  redis-cli -p "${redis_ports[0]}" cluster info 2>/dev/null | grep -q '^cluster_state:ok'
}

redis_start() {
  command -v redis-server >/dev/null || { log "FATAL: redis-server is not installed"; return 1; }
  if redis_cluster_ok; then log "Redis Cluster already up on ${redis_ports[*]}"; return 0; fi
  local p fresh=0
  for p in "${redis_ports[@]}"; do
    if port_open "$p"; then continue; fi
    fresh=1
    mkdir -p "$dir/redis-$p"
    rm -f "$dir/redis-$p/nodes.conf"
    redis-server --port "$p" --bind 127.0.0.1 --daemonize yes \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
      --save "" --appendonly no --dir "$dir/redis-$p" --logfile "$dir/redis-$p/redis.log"
  done
  for p in "${redis_ports[@]}"; do wait_port "$p"; done
  if [ "$fresh" = 1 ] || ! redis_cluster_ok; then
    local addrs=()
    for p in "${redis_ports[@]}"; do addrs+=("127.0.0.1:$p"); done
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$dir/redis-create.log" 2>&1 ||
      { log "FATAL: redis-cli --cluster create failed:"; cat "$dir/redis-create.log" >&2; return 1; }
  fi
  local i
  for ((i = 0; i < 80; i++)); do
    if redis_cluster_ok; then log "Redis Cluster is up on ${redis_ports[*]}"; return 0; fi
    sleep 0.25
  done
  log "FATAL: the Redis Cluster did not reach cluster_state:ok"
  return 1
}

redis_stop() {
  local p
  for p in "${redis_ports[@]}"; do redis-cli -p "$p" shutdown nosave >/dev/null 2>&1 || true; done
  log "Redis Cluster stopped"
}

for b in "${wanted[@]}"; do
  case "$action:$b" in
    start:nats) nats_start ;;
    start:redis) redis_start ;;
    stop:nats) nats_stop ;;
    stop:redis) redis_stop ;;
    *) log "usage: scripts/clusters.sh start|stop [nats] [redis]"; exit 2 ;;
  esac
done
