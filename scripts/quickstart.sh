#!/usr/bin/env bash
# Quick start: builds Caracal, creates a `demo` workspace on the embedded
# runtime (no Redis, Kafka or PostgreSQL), registers the local mock provider
# under the host api.openai.com, registers a demo agent with an allowlist,
# has an operator issue it a signed mandate for chat completions under a
# policy, starts the gateway, and shows it enforcing:
#   (a) an allowed call, (b) a call denied by the allowlist,
#   (c) a call the allowlist permits but the mandate does not cover,
#   (d) the allowed call again under a budget too small for it,
#   (e) the allowed call again after the mandate is revoked,
#   (f) a call refused without credentials, and the ledger rows they left.
#
# Re-running it recreates the demo workspace. Stop everything with
#   ./scripts/quickstart.sh stop
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

export CARACAL_HOME="${CARACAL_HOME:-$HOME/.caracal}"
WS="$CARACAL_HOME/workspaces/demo"
LISTEN="${CARACAL_DEMO_LISTEN:-127.0.0.1:8443}"
METRICS="${CARACAL_DEMO_METRICS:-127.0.0.1:9090}"
MOCK="${CARACAL_DEMO_MOCK:-127.0.0.1:9300}"
BIN="$ROOT/target/release"
caracal() { "$BIN/caracal" --workspace demo "$@"; }

stop() {
  if [ -x "$BIN/caracal" ] && [ -d "$WS" ]; then caracal down || true; fi
  if [ -f "$WS/run/mock.pid" ]; then
    kill "$(cat "$WS/run/mock.pid")" 2>/dev/null || true
    rm -f "$WS/run/mock.pid"
  fi
}

if [ "${1:-}" = "stop" ]; then
  stop
  exit 0
fi

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "Building (release)"
cargo build --release --locked -p caracal-cli -p caracal-gateway -p caracal-load-tests

step "Creating the demo workspace in $CARACAL_HOME"
stop
rm -rf "$WS"
"$BIN/caracal" workspace create demo
"$BIN/caracal" workspace use demo

step "Starting the mock provider on $MOCK"
mkdir -p "$WS/run" "$WS/logs"
"$BIN/caracal-mock-provider" --listen "$MOCK" >"$WS/logs/mock.out" 2>&1 &
echo $! >"$WS/run/mock.pid"
for _ in $(seq 1 100); do
  grep -q "listening on" "$WS/logs/mock.out" 2>/dev/null && break
  sleep 0.1
done
grep -q "listening on" "$WS/logs/mock.out" || { cat "$WS/logs/mock.out"; echo "mock provider did not start" >&2; exit 1; }

step "Registering the provider, the agent and its allowlist"
caracal provider add openai --template openai --base-url "http://$MOCK" \
  --host api.openai.com --credential sk-demo-upstream-key --allow-private-network
agent_json=$(caracal principal register --type agent --name demo-agent --email demo@example.com --json)
AGENT_ID=$(printf '%s' "$agent_json" | sed -n 's/.*"id": *"\([^"]*\)".*/\1/p')
TOKEN=$(printf '%s' "$agent_json" | sed -n 's/.*"token": *"\([^"]*\)".*/\1/p')
[ -n "$AGENT_ID" ] && [ -n "$TOKEN" ] || { echo "could not read the agent's id and token: $agent_json" >&2; exit 1; }
caracal allowlist create --agent-id "$AGENT_ID" --pattern '^https://api\.openai\.com/v1/(chat/completions|models)$' --pattern-type regex

step "An operator's policy, and a mandate for the agent under it"
caracal principal register --type user --name ops --email ops@example.com >/dev/null
caracal policy create --principal-id ops --resource 'chat.*' --resource models.list \
  --action create --action read --max-validity 1h --change-reason "demo: ops runs the demo agent"
mandate_json=$(caracal authority mandate --issuer ops --subject demo-agent \
  --resource chat.completions --action create --valid-for 30m --json 2>/dev/null)
MANDATE_ID=$(printf '%s' "$mandate_json" | sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' | head -n 1)
[ -n "$MANDATE_ID" ] || { echo "could not read the mandate id: $mandate_json" >&2; exit 1; }
echo "mandate $MANDATE_ID: demo-agent may create chat.completions for 30 minutes"

step "Starting the gateway on $LISTEN"
caracal up --detach --listen "$LISTEN" --metrics-listen "$METRICS"
caracal certs export-ca >"$WS/demo-ca.pem"

cat >"$WS/demo.env" <<ENV
# source this file to use the demo agent's credentials
export CARACAL_DEMO_AGENT=$AGENT_ID
export CARACAL_CA=$WS/demo-ca.pem
export CARACAL_PROXY=https://$AGENT_ID:$TOKEN@$LISTEN
ENV
# shellcheck disable=SC1091
. "$WS/demo.env"

BODY='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello through the gateway"}],"max_tokens":16}'

step "(a) allowed: chat completion through HTTPS_PROXY"
curl -sS --proxy "$CARACAL_PROXY" --proxy-cacert "$CARACAL_CA" --cacert "$CARACAL_CA" \
  -H 'content-type: application/json' -d "$BODY" \
  https://api.openai.com/v1/chat/completions
echo

step "(b) denied by the allowlist: embeddings"
curl -sS --proxy "$CARACAL_PROXY" --proxy-cacert "$CARACAL_CA" --cacert "$CARACAL_CA" \
  -H 'content-type: application/json' -d '{"model":"text-embedding-3-small","input":"x"}' \
  https://api.openai.com/v1/embeddings
echo

step "(c) allowed by the allowlist, not by the mandate: list models"
curl -sS --proxy "$CARACAL_PROXY" --proxy-cacert "$CARACAL_CA" --cacert "$CARACAL_CA" \
  https://api.openai.com/v1/models
echo

step "(d) a daily budget of 0.00001 USD: the call that worked in (a) does not fit"
budget_json=$(caracal policy create --agent-id demo-agent --limit 0.00001 --currency USD \
  --time-window daily --timezone Europe/Berlin --change-reason "demo: tiny budget" --json)
BUDGET_ID=$(printf '%s' "$budget_json" | sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' | head -n 1)
sleep 1 # policy changes reach a running gateway within a second
curl -sS --proxy "$CARACAL_PROXY" --proxy-cacert "$CARACAL_CA" --cacert "$CARACAL_CA" \
  -H 'content-type: application/json' -d "$BODY" \
  https://api.openai.com/v1/chat/completions
echo
caracal policy disable "$BUDGET_ID" --change-reason "demo: budget drill over"

step "(e) the mandate is revoked: the call that worked in (a) is refused"
caracal authority revoke --mandate-id "$MANDATE_ID" --reason "demo: incident drill"
sleep 1 # revocations reach a running gateway within a second
curl -sS --proxy "$CARACAL_PROXY" --proxy-cacert "$CARACAL_CA" --cacert "$CARACAL_CA" \
  -H 'content-type: application/json' -d "$BODY" \
  https://api.openai.com/v1/chat/completions
echo

step "(f) refused without credentials"
curl -sS -o /dev/null --proxy "https://$LISTEN" --proxy-cacert "$CARACAL_CA" --cacert "$CARACAL_CA" \
  -w 'the proxy answered CONNECT with %{http_connect}\n' https://api.openai.com/v1/models || true

step "The ledger"
sleep 0.5
caracal ledger query
step "Authority events: the mandate issued, the denials, the revocation"
caracal ledger query --kind authority
step "The ledger is a signed Merkle log: seal it now, verify it, prove one event offline"
caracal merkle seal
caracal merkle verify-range --start-time 2000-01-01T00:00:00Z --end-time now
event_id=$(caracal ledger query --json | sed -n 's/.*"id": *"\([0-9a-f-]*\)".*/\1/p' | head -n 1)
caracal merkle public-key --out "$WS/ledger.pub" >/dev/null
caracal merkle prove --event-id "$event_id" --out "$WS/proof.json"
caracal merkle verify-proof --proof "$WS/proof.json" --public-key "$WS/ledger.pub"

cat <<DONE

The demo gateway is running (caracal status). Try it yourself:
  export PATH="$BIN:\$PATH"
  source $WS/demo.env
  curl --proxy "\$CARACAL_PROXY" --proxy-cacert "\$CARACAL_CA" --cacert "\$CARACAL_CA" https://api.openai.com/v1/models
  caracal ledger query --agent-id \$CARACAL_DEMO_AGENT
  caracal authority mandate --issuer ops --subject demo-agent --resource chat.completions --action create --valid-for 15m
Stop it with: ./scripts/quickstart.sh stop
DONE
