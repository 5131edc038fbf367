#!/usr/bin/env bash
# ledger-writer.sh: ledger writer throughput, broker → PostgreSQL.
#
# Starts tansu (memory engine) on a free port, then runs the
# ledger_writer_bench example of caracal-gateway, which produces EVENTS
# spend events to a fresh topic and times, over the same messages:
#   count   a consumer that only counts them (the broker's and librdkafka's
#           delivery rate: the ceiling of anything reading the topic)
#   decode  the same, decoding each message
#   writer  WRITERS ledger writers, from their start until every row is in
#           PostgreSQL (a fresh database, dropped afterwards)
#
# Settings from the environment: EVENTS (500000), PARTITIONS (1),
# WRITERS (1), BATCH (5000), PROFILE (dev; the machine is shared, so no
# release build by default), CARACAL_TANSU (/opt/caracal-tools/bin/tansu),
# CARACAL_TEST_POSTGRES_URL (postgres://postgres@127.0.0.1:5432/postgres).
set -euo pipefail

EVENTS=${EVENTS:-500000}
PARTITIONS=${PARTITIONS:-1}
WRITERS=${WRITERS:-1}
BATCH=${BATCH:-5000}
PROFILE=${PROFILE:-dev}
TANSU=${CARACAL_TANSU:-/opt/caracal-tools/bin/tansu}
PG=${CARACAL_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
cd "$REPO"

log() { printf '[ledger-writer] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ -x "$TANSU" ] || die "no tansu at $TANSU (set CARACAL_TANSU)"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL="tcp://127.0.0.1:$PORT"
"$TANSU" broker --storage-engine memory://tansu/ --listener-url "$URL" \
    --advertised-listener-url "$URL" >/dev/null 2>&1 &
TANSU_PID=$!
trap 'kill $TANSU_PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
done
log "tansu on $URL; $EVENTS events, $PARTITIONS partition(s), $WRITERS writer(s), batches of $BATCH, profile $PROFILE"
cargo run -q --profile "$PROFILE" -p caracal-gateway --example ledger_writer_bench -- \
    --brokers "127.0.0.1:$PORT" --postgres-url "$PG" --events "$EVENTS" \
    --partitions "$PARTITIONS" --writers "$WRITERS" --batch "$BATCH" "$@"
