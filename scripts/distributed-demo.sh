#!/usr/bin/env bash
# The distributed deployment on this machine: PostgreSQL and Redis from
# scripts/services.sh, a Kafka-protocol broker (tansu), two gateway replicas
# and one ledger writer, all local processes. It creates a `distdemo`
# workspace (database caracal_distdemo, Redis prefix caracal:distdemo:),
# configures it with the CLI exactly as the quick start does, and shows the
# same enforcement through either replica:
#   (a) an allowed call through replica 1, and through replica 2,
#   (b) a call denied by the allowlist,
#   (c) a budget shared by both replicas, exhausted across them (402),
#   (d) a revocation, enforced by both replicas within a second,
# then what each replica runs (`caracal cache status`), the ledger the
# writer stored in PostgreSQL and the writer's consumer lag.
#
# Re-running it recreates the workspace and its database. Stop everything
# with ./scripts/distributed-demo.sh stop
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

export CARACAL_HOME="${CARACAL_HOME:-$HOME/.caracal}"
NAME=distdemo
WS="$CARACAL_HOME/workspaces/$NAME"
BIN="$ROOT/target/release"
KAFKA="127.0.0.1:${CARACAL_DEMO_KAFKA_PORT:-19092}"
MOCK="${CARACAL_DEMO_MOCK:-127.0.0.1:9301}"
R1="${CARACAL_DEMO_REPLICA1:-127.0.0.1:8451}"
R2="${CARACAL_DEMO_REPLICA2:-127.0.0.1:8452}"
DB=caracal_distdemo
caracal() { "$BIN/caracal" --workspace "$NAME" "$@"; }

stop() {
  for p in replica-1 replica-2 writer broker mock; do
    if [ -f "$WS/run/$p.pid" ]; then
      kill "$(cat "$WS/run/$p.pid")" 2>/dev/null || true
      rm -f "$WS/run/$p.pid"
    fi
  done
}

if [ "${1:-}" = "stop" ]; then
  stop
  exit 0
fi

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

wait_for_line() { # file, text
  for _ in $(seq 1 150); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  cat "$1" >&2
  echo "$1: '$2' never appeared" >&2
  return 1
}

wait_healthy() { # addr
  for _ in $(seq 1 150); do
    curl -sf --cacert "$WS/ca/ca.pem" "https://$1/health" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "the replica on $1 did not become healthy" >&2
  curl -s --cacert "$WS/ca/ca.pem" "https://$1/health" >&2 || true
  return 1
}

step "Services: PostgreSQL, Redis and the tansu broker (scripts/services.sh)"
eval "$(./scripts/services.sh)"

step "Building (release)"
cargo build --release --locked -p caracal-cli -p caracal-gateway -p caracal-load-tests

step "Creating the $NAME workspace, its database and its topics"
stop
rm -rf "$WS"
psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" \
  -c "CREATE DATABASE $DB"
mkdir -p "$WS/run" "$WS/logs"
# Redis keeps this workspace's keys under its own prefix: clear old ones.
redis-cli -h 127.0.0.1 --scan --pattern "caracal:$NAME:*" | xargs -r redis-cli -h 127.0.0.1 del >/dev/null
rm -rf "$WS"
"$BIN/caracal" workspace create "$NAME" \
  --postgres-url "postgres://postgres@127.0.0.1:5432/$DB" \
  --redis-url "redis://127.0.0.1:6379/0" \
  --kafka-brokers "$KAFKA"
mkdir -p "$WS/run" "$WS/logs"
"$CARACAL_TANSU" broker --storage-engine memory://tansu/ \
  --listener-url "tcp://$KAFKA" --advertised-listener-url "tcp://$KAFKA" >"$WS/logs/broker.out" 2>&1 &
echo $! >"$WS/run/broker.pid"
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/${KAFKA%:*}/${KAFKA#*:}") 2>/dev/null && break; sleep 0.1; done
caracal db migrate
caracal kafka create-topics

step "Starting the mock provider on $MOCK"
"$BIN/caracal-mock-provider" --listen "$MOCK" >"$WS/logs/mock.out" 2>&1 &
echo $! >"$WS/run/mock.pid"
wait_for_line "$WS/logs/mock.out" "listening on"

step "Provider, agent, allowlist, policy and mandate (committed to PostgreSQL, published to Redis)"
caracal provider add openai --template openai --base-url "http://$MOCK" \
  --host api.openai.com --credential sk-demo-upstream-key --allow-private-network
agent_json=$(caracal principal register --type agent --name demo-agent --email demo@example.com --json)
AGENT_ID=$(printf '%s' "$agent_json" | sed -n 's/.*"id": *"\([^"]*\)".*/\1/p')
TOKEN=$(printf '%s' "$agent_json" | sed -n 's/.*"token": *"\([^"]*\)".*/\1/p')
caracal allowlist create --agent-id "$AGENT_ID" --pattern '^https://api\.openai\.com/v1/(chat/completions|models)$' --pattern-type regex
caracal principal register --type user --name ops --email ops@example.com >/dev/null
caracal policy create --principal-id ops --resource 'chat.*' --resource models.list \
  --action create --action read --max-validity 1h --change-reason "demo: ops runs the demo agent"
mandate_json=$(caracal authority mandate --issuer ops --subject demo-agent \
  --resource chat.completions --action create --valid-for 30m --json 2>/dev/null)
MANDATE_ID=$(printf '%s' "$mandate_json" | sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' | head -n 1)
[ -n "$MANDATE_ID" ] || { echo "could not read the mandate id: $mandate_json" >&2; exit 1; }

step "Two gateway replicas ($R1, $R2) and a ledger writer"
i=0
for addr in "$R1" "$R2"; do
  i=$((i + 1))
  CARACAL_SPOOL_DIR="$WS/spool-$i" "$BIN/caracal-gateway" serve --config "$WS/config.toml" \
    --listen "$addr" --metrics-listen "127.0.0.1:$((9190 + i))" >"$WS/logs/replica-$i.out" 2>&1 &
  echo $! >"$WS/run/replica-$i.pid"
  wait_healthy "$addr"
done
"$BIN/caracal-gateway" ledger-writer --config "$WS/config.toml" \
  --metrics-listen 127.0.0.1:9199 >"$WS/logs/writer.out" 2>&1 &
echo $! >"$WS/run/writer.pid"
CA="$WS/ca/ca.pem"

BODY='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello through the gateway"}],"max_tokens":16}'
call() { # replica address, path, body
  curl -sS --cacert "$CA" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    ${3:+-d "$3"} "https://$1/openai$2"
  echo
}

step "(a) allowed: a chat completion through replica 1, then replica 2 (base_url)"
call "$R1" /v1/chat/completions "$BODY"
call "$R2" /v1/chat/completions "$BODY"

step "(b) denied by the allowlist: embeddings"
call "$R1" /v1/embeddings '{"model":"text-embedding-3-small","input":"x"}'

step "(c) a daily budget of 0.00006 USD (a few calls), shared by both replicas"
budget_json=$(caracal policy create --agent-id demo-agent --limit 0.00006 --currency USD \
  --time-window daily --change-reason "demo: small shared budget" --json)
BUDGET_ID=$(printf '%s' "$budget_json" | sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' | head -n 1)
sleep 0.5
for n in 1 2 3 4; do
  r=$([ $((n % 2)) = 1 ] && echo "$R1" || echo "$R2")
  printf 'replica %s: ' "$r"
  curl -sS -o /dev/null -w '%{http_code}\n' --cacert "$CA" -H "authorization: Bearer $TOKEN" \
    -H 'content-type: application/json' -d "$BODY" "https://$r/openai/v1/chat/completions"
done
call "$R2" /v1/chat/completions "$BODY"
caracal policy disable "$BUDGET_ID" --change-reason "demo: budget drill over"

step "(d) the mandate is revoked: both replicas refuse"
caracal authority revoke --mandate-id "$MANDATE_ID" --reason "demo: incident drill"
sleep 0.5
call "$R1" /v1/chat/completions "$BODY"
call "$R2" /v1/chat/completions "$BODY"

step "What each replica runs"
caracal cache status || true

step "The ledger, as the writer stored it in PostgreSQL"
sleep 2
caracal ledger query
caracal kafka consumer-lag --consumer-group ledger-writer-group || true

cat <<DONE

The distributed demo is running: replicas on https://$R1 and https://$R2,
the writer, the broker on $KAFKA and the mock provider. Logs in $WS/logs.
  export PATH="$BIN:\$PATH"
  caracal --workspace $NAME cache status
  caracal --workspace $NAME db health-check
Stop it with: ./scripts/distributed-demo.sh stop
DONE
