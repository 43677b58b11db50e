#!/usr/bin/env bash
# The project's test command (README; called by .ci/run).
# 1. makes sure every broker the tests need is up (starting it if it is down; fails if it can't),
#    that headless Chromium is installed (for the gateway's browser test), and that the
#    official socket.io client (Node + npm package) the socketio-chat tests drive is installed;
# 2. runs every test of the workspace with every backend feature on, conformance suites included;
# 3. runs the doc tests and the example adapter outside the workspace (whole suite), then the
#    broker-restart tests alone (they are #[ignore]d in the parallel run), then prints each
#    backend's conformance report.
set -euo pipefail
cd "$(dirname "$0")/.."

# chromium: the gateway's browser test drives headless Chromium through chromedriver.
bash scripts/brokers.sh redis nats amqp kafka mqtt postgres chromium
# Stream queues the tests left on RabbitMQ (each holds broker files open for as long as it
# exists).
bash scripts/amqp-drop-test-streams.sh
# The official socket.io client (Node + npm package) the socketio-chat tests drive.
bash scripts/socketio-client.sh
# The security tests (pubsub/tests/security) start their own redis-server, nats-server and
# RabbitMQ node on free ports, with certificates made by scripts/tls.sh: check the tools they
# need up front.
for tool in openssl redis-server nats-server rabbitmq-server rabbitmqctl; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] ||
    { echo "FATAL: $tool is needed by the security tests" >&2; exit 1; }
done
# The shared 3-node NATS cluster and Redis Cluster of the cluster conformance targets; stopped
# again when this script ends, however it ends.
bash scripts/clusters.sh start
trap 'bash scripts/clusters.sh stop' EXIT

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-features --no-fail-fast
else
  cargo test --workspace --all-features --no-fail-fast
fi
cargo test --workspace --all-features --doc

# An adapter outside the workspace, held to the whole conformance suite (its own workspace;
# it shares this target directory so the common dependencies are built once).
CARGO_TARGET_DIR="$PWD/target" cargo test --manifest-path examples/custom-adapter/Cargo.toml

# Tests that restart a shared broker disturb every other user of it, so they are marked
# #[ignore] and run here, alone, after everything else; then the broker is checked again.
# The broker is brought back even when the test fails half-way.
restart_status=0
cargo test -q -p pubsub-redis --all-features --test redis_adapter -- --ignored || restart_status=$?
bash scripts/brokers.sh redis nats amqp kafka mqtt postgres
[ "$restart_status" -eq 0 ] || exit "$restart_status"

# The conformance report of every backend: how many cases ran, which were skipped and why.
cargo test -q -p conformance-tests --all-features --tests -- --exact report --nocapture 2>&1 |
  grep -E '^(conformance|  skipped|  reduced)'
