#!/usr/bin/env bash
# gateway-path.sh: what the gateway's data path costs, as ratios.
#
# Runs caracal-load with the same settings (closed loop, HTTP/1.1, a small
# non-streaming chat completion) against six ways to the same mock
# provider, one after the other:
#   direct               the mock, plain HTTP
#   nginx                nginx as a TLS reverse proxy (keep-alive upstream)
#   gw-base-url          the gateway, base_url mode over TLS (the agent's
#                        recorded mandate is selected)
#   gw-base-url-mandate  the same, presenting the mandate in
#                        x-caracal-mandate (its signature verified per call)
#   gw-base-url-budget   the same as gw-base-url for an agent under a daily
#                        budget: request read and priced, reserved and
#                        settled on every call (budgets on vs off)
#   gw-proxy             the gateway as an HTTPS proxy: CONNECT, TLS inside
# and, with DISTRIBUTED=1, a replica of the distributed deployment
# (PostgreSQL, Redis and tansu from scripts/services.sh; a ledger writer
# storing every event in PostgreSQL while the load runs):
#   gw-dist              base_url through the replica, unbudgeted agent
#   gw-dist-budget       the same for the budgeted agent (Redis counters)
#   gw-dist-deferred     gw-dist with the writer paused while the load runs
#                        (as if on other machines), then timed catching up
# and writes load-tests/results/YYYY-MM-DD-gateway-path.{md,json}.
#
# Each row also records the CPU time the server under test spent per
# request in the measured window (the mock for `direct`, nginx's processes
# for `nginx`, the gateway or replica otherwise; the ledger writer of the
# distributed rows separately) and its resident memory at the end.
# Then an open loop at a fixed RATE (default 1000 requests/s) through
# direct, nginx and the embedded gateway, latency counted from when each
# request was due (no coordinated omission): the added latency at a load
# all of them sustain.
#
# Then memory: the embedded gateway's resident memory idle and with STREAMS
# open streamed (SSE) chat completions at once (default "1000 5000"; each
# stream lasts STREAM_SECS, default 10 s, its chunks paced by the mock;
# upstream the mock over plain HTTP/1.1, a connection per stream), then
# STREAMS_H2 (default "1000") to the same mock behind nginx's TLS + HTTP/2
# listener (one upstream connection for all, as with OpenAI or Anthropic),
# the errors among them, and with SOAK (e.g. 30m; default 0, skipped) an open
# loop at half the rate gw-base-url served, RSS sampled every 30 s: whether
# memory stays flat.
#
# Settings from the environment: CONCURRENCY (16), DURATION (15s),
# WARMUP (3s), DISTRIBUTED (0), RATE (1000; 0 skips the open loop),
# PROFILE_TARGET (a row whose server is profiled with `perf record -e
# cpu-clock -g` over its measured window; the report goes to
# load-tests/results/YYYY-MM-DD-profile-ROW.txt);
# ROWS (a space-separated subset of the rows above, for a quick comparison
# while working: the results then go to the temp dir and stdout, not to
# load-tests/results); KEEP_WORK=1 keeps the temp dir (logs, configs);
# CARACAL_BIN (the `caracal` binary that runs the embedded gateway; default
# the one this script builds), to measure another build of the same code
# (other profile settings, say) against it.
# Exits non-zero if any run saw errors or non-2xx responses, after writing
# the results.
set -euo pipefail

CONCURRENCY=${CONCURRENCY:-16}
DURATION=${DURATION:-15s}
WARMUP=${WARMUP:-3s}
KEEP_WORK=${KEEP_WORK:-0}
DISTRIBUTED=${DISTRIBUTED:-0}
RATE=${RATE:-1000}
PROFILE_TARGET=${PROFILE_TARGET:-}
ROWS=${ROWS:-}
STREAMS=${STREAMS-1000 5000}
STREAMS_H2=${STREAMS_H2-1000}
STREAM_SECS=${STREAM_SECS:-10}
SOAK=${SOAK:-0}

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
cd "$REPO"

log() { printf '[gateway-path] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Runs a command as root: directly, through sudo, or not at all.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

# A TCP port on 127.0.0.1 that nothing listens on right now, below the
# kernel's ephemeral range (so not one that the thousands of client
# connections of a run may hold in TIME_WAIT).
free_port() {
    local port low
    low=$(cut -f 1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    for _ in $(seq 1 100); do
        port=$((10000 + RANDOM % (low - 10000)))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    die "no free port found"
}

# Waits until something accepts connections on 127.0.0.1:$1.
wait_for_port() {
    local port=$1 what=$2
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return
        fi
        sleep 0.1
    done
    die "$what is not listening on 127.0.0.1:$port"
}

# A caracal-load duration (500ms, 15s, 1m) in seconds.
secs() {
    case $1 in
    *ms) awk -v v="${1%ms}" 'BEGIN { print v / 1000 }' ;;
    *s) echo "${1%s}" ;;
    *m) awk -v v="${1%m}" 'BEGIN { print v * 60 }' ;;
    *) echo "$1" ;;
    esac
}

# A process and its descendants (nginx's worker is its master's child).
tree_pids() {
    local pid=$1 child
    echo "$pid"
    for child in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do tree_pids "$child"; done
}

# CPU seconds (user + system) used so far by the processes $@ and their
# descendants, each counted once (PostgreSQL's backends are both listed by
# name and children of the postmaster).
cpu_seconds() {
    local total=0 pid ticks
    for pid in $(for p in "$@"; do tree_pids "$p"; done | sort -u); do
        # Fields 14 and 15 of /proc/PID/stat, after the command in parentheses.
        ticks=$(sed 's/^.*) //' /proc/"$pid"/stat 2>/dev/null | awk '{print $12 + $13}')
        total=$((total + ${ticks:-0}))
    done
    awk -v t="$total" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.3f", t / hz }'
}

# CPU seconds so far of the row's server, and for a distributed row (one
# with a WRITER) of its writer, the services together and each service (0
# otherwise): "server writer services broker redis postgres".
sample_cpu() {
    local w=0 v=0 b=0 r=0 p=0
    if [ "${#WRITER[@]}" != 0 ]; then
        w=$(cpu_seconds "${WRITER[@]}")
        b=$(cpu_seconds "$BROKER_PID")
        r=$(cpu_seconds $(pgrep -x redis-server))
        p=$(cpu_seconds $(pgrep -x postgres))
        v=$(awk -v b="$b" -v r="$r" -v p="$p" 'BEGIN { print b + r + p }')
    fi
    echo "$(cpu_seconds "${SERVER[@]}") $w $v $b $r $p"
}

# $2 - $1, for samples of a counter.
delta() {
    awk -v a="$1" -v b="$2" 'BEGIN { print b - a }'
}

# Resident memory of the processes $@ and their descendants, MiB.
rss_mib() {
    local total=0 pid kb
    for pid in $(for p in "$@"; do tree_pids "$p"; done | sort -u); do
        kb=$(awk '/^VmRSS:/ {print $2}' /proc/"$pid"/status 2>/dev/null)
        total=$((total + ${kb:-0}))
    done
    awk -v k="$total" 'BEGIN { printf "%.1f", k / 1024 }'
}

# ---------------------------------------------------------------- build
log "building release binaries"
cargo build --release -p caracal-load-tests -p caracal-cli -p caracal-gateway
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
BIN="$TARGET_DIR/release"
for b in caracal caracal-gateway caracal-mock-provider caracal-load; do
    [ -x "$BIN/$b" ] || die "$BIN/$b was not built"
done
CARACAL_BIN=${CARACAL_BIN:-$BIN/caracal}
[ -x "$CARACAL_BIN" ] || die "CARACAL_BIN=$CARACAL_BIN is not an executable"
# `caracal up` starts the gateway binary found next to itself or on PATH.
export PATH="$BIN:$PATH"

# ---------------------------------------------------------------- tools
NGINX=$(command -v nginx || true)
[ -n "$NGINX" ] || [ ! -x /usr/sbin/nginx ] || NGINX=/usr/sbin/nginx
MISSING=()
[ -n "$NGINX" ] || MISSING+=(nginx-light)
command -v jq >/dev/null 2>&1 || MISSING+=(jq)
command -v openssl >/dev/null 2>&1 || MISSING+=(openssl)
if [ "${#MISSING[@]}" -gt 0 ]; then
    log "installing ${MISSING[*]}"
    apt_install() { as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-upgrade "$@"; }
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    # nginx-light is gone from newer Debian releases; nginx is the fallback.
    apt_install "${MISSING[@]}" || apt_install "${MISSING[@]/nginx-light/nginx}"
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
fi
[ -x "$NGINX" ] || die "nginx not found after installing it"

# ---------------------------------------------------------------- cleanup
WORK=$(mktemp -d "${TMPDIR:-/tmp}/caracal-bench.XXXXXX")
MOCK_PID=""
NGINX_PID=""
GATEWAY_UP=0
DIST_PIDS=()
cleanup() {
    local status=$?
    set +e
    if [ "$GATEWAY_UP" = 1 ]; then
        "$CARACAL_BIN" --workspace bench down >/dev/null 2>&1 || log "caracal down failed"
    fi
    # (CONT first: the writer may be paused by gw-dist-deferred.)
    for pid in "${DIST_PIDS[@]}"; do { kill -CONT "$pid"; kill "$pid"; wait "$pid"; } 2>/dev/null; done
    [ -z "$NGINX_PID" ] || { kill "$NGINX_PID"; wait "$NGINX_PID"; } 2>/dev/null
    [ -z "$MOCK_PID" ] || { kill "$MOCK_PID"; wait "$MOCK_PID"; } 2>/dev/null
    if [ "$KEEP_WORK" = 1 ]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT

# ---------------------------------------------------------------- mock
log "starting the mock provider"
# Streamed responses (only the memory section asks for them): 20 chunks
# paced over STREAM_SECS.
RUST_LOG=warn "$BIN/caracal-mock-provider" --listen 127.0.0.1:0 --latency-ms 0 \
    --chunks 20 --chunk-delay-ms "$((STREAM_SECS * 50))" \
    >"$WORK/mock.out" 2>"$WORK/mock.log" &
MOCK_PID=$!
MOCK_URL=""
for _ in $(seq 1 100); do
    MOCK_URL=$(sed -n 's/^caracal-mock-provider listening on //p' "$WORK/mock.out")
    [ -z "$MOCK_URL" ] || break
    kill -0 "$MOCK_PID" 2>/dev/null || die "the mock exited: $(cat "$WORK/mock.log")"
    sleep 0.1
done
[ -n "$MOCK_URL" ] || die "the mock did not start"
MOCK_PORT=${MOCK_URL##*:}

# ---------------------------------------------------------------- nginx certificates
# Made before the gateway starts: it trusts this CA for the HTTP/2 upstream
# of the memory section (STREAMS_H2).
NGINX_DIR="$WORK/nginx"
mkdir -p "$NGINX_DIR/tmp"
# A CA and an ECDSA P-256 leaf for 127.0.0.1 (the key type the gateway uses).
(
    cd "$NGINX_DIR"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout ca.key -out ca.pem -days 2 -subj "/CN=caracal bench nginx CA" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout server.key -out server.csr -subj "/CN=127.0.0.1" 2>/dev/null
    printf '%s\n' "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" \
        "subjectAltName=IP:127.0.0.1,DNS:localhost" >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
        -out server.pem -days 2 -extfile server.ext 2>/dev/null
)
# nginx's HTTP/2 listener in front of the mock: the upstream of the memory
# section's STREAMS_H2 runs, as OpenAI and Anthropic are (TLS, h2 by ALPN).
NGINX_H2_PORT=$(free_port)

# ---------------------------------------------------------------- gateway
log "setting up a workspace and starting the gateway"
export CARACAL_HOME="$WORK/home"
caracal() { "$CARACAL_BIN" "$@"; }
caracal workspace create bench >/dev/null
caracal provider add openai --template openai --base-url "$MOCK_URL" \
    --host api.openai.com --credential sk-bench --allow-private-network >/dev/null
AGENT_JSON=$(caracal principal register --type agent --name bench-agent \
    --email bench@example.com --json)
AGENT_ID=$(jq -er .id <<<"$AGENT_JSON")
AGENT_TOKEN=$(jq -er .token <<<"$AGENT_JSON")
caracal allowlist create --agent-id "$AGENT_ID" \
    --pattern 'https://api.openai.com/*' --pattern-type glob >/dev/null
# Every call needs a mandate: ops issues the agent one under its policy.
caracal principal register --type user --name ops --email ops@example.com >/dev/null
caracal policy create --principal-id ops --resource chat.completions --action create \
    --max-validity 24h --change-reason benchmark >/dev/null
MANDATE=$(caracal authority mandate --issuer ops --subject bench-agent \
    --resource chat.completions --action create --valid-for 6h --json 2>/dev/null | jq -er .token)
# A second agent, identical but under a budget (large enough never to be
# reached: the run measures the accounting, not refusals).
BUDGET_JSON=$(caracal principal register --type agent --name bench-budget \
    --email budget@example.com --json)
BUDGET_ID=$(jq -er .id <<<"$BUDGET_JSON")
BUDGET_TOKEN=$(jq -er .token <<<"$BUDGET_JSON")
caracal allowlist create --agent-id "$BUDGET_ID" \
    --pattern 'https://api.openai.com/*' --pattern-type glob >/dev/null
caracal authority mandate --issuer ops --subject bench-budget \
    --resource chat.completions --action create --valid-for 6h >/dev/null 2>&1
caracal policy create --agent-id bench-budget --limit 1000000.00 --currency USD \
    --time-window daily --change-reason benchmark >/dev/null
# Room for the memory section's streams: one agent holds STREAMS of them
# open at once (the defaults: 4096 connections, 512 per principal).
WS_CONFIG="$CARACAL_HOME/workspaces/bench/config.toml"
sed -i -e 's/^max_connections = .*/max_connections = 12000/' \
    -e 's/^max_in_flight = .*/max_in_flight = 12000/' \
    -e 's/^max_in_flight_per_principal = .*/max_in_flight_per_principal = 12000/' "$WS_CONFIG"
grep -q '^max_in_flight_per_principal = 12000' "$WS_CONFIG" || die "cannot raise the limits in $WS_CONFIG"
# The HTTP/2 upstream: a second provider, behind nginx's h2 listener.
sed -i -e "s|^# upstream_ca_file = .*|upstream_ca_file = \"$NGINX_DIR/ca.pem\"|" "$WS_CONFIG"
grep -q '^upstream_ca_file = ' "$WS_CONFIG" || die "cannot set upstream_ca_file in $WS_CONFIG"
caracal provider add openai-h2 --template openai --base-url "https://127.0.0.1:$NGINX_H2_PORT" \
    --host openai-h2.bench.invalid --credential sk-bench --allow-private-network >/dev/null
caracal allowlist create --agent-id "$AGENT_ID" \
    --pattern 'https://openai-h2.bench.invalid/*' --pattern-type glob >/dev/null
GW_PORT=$(free_port)
METRICS_PORT=$(free_port)
while [ "$METRICS_PORT" = "$GW_PORT" ]; do METRICS_PORT=$(free_port); done
GATEWAY_UP=1
# Starts the workspace's gateway (again, for each memory run) and settles.
start_gateway() {
    caracal up --detach --listen "127.0.0.1:$GW_PORT" --metrics-listen "127.0.0.1:$METRICS_PORT" >/dev/null
    GATEWAY_PID=$(caracal status --json | jq -er .pid)
    sleep 1
}
start_gateway
# Its memory before any request, for the memory section.
IDLE_RSS=$(rss_mib "$GATEWAY_PID")
caracal certs export-ca >"$WORK/gateway-ca.pem"
GATEWAY_LOG="$CARACAL_HOME/workspaces/bench/logs/gateway.log"

# ---------------------------------------------------------------- distributed
if [ "$DISTRIBUTED" = 1 ]; then
    log "setting up a distributed workspace: PostgreSQL, Redis, tansu, a replica, a writer"
    eval "$(./scripts/services.sh)"
    DIST_DB="caracal_bench_$$"
    psql -q -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE $DIST_DB"
    KAFKA_PORT=$(free_port)
    "$CARACAL_TANSU" broker --storage-engine memory://tansu/ \
        --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
        --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" >"$WORK/broker.log" 2>&1 &
    BROKER_PID=$!
    DIST_PIDS+=("$BROKER_PID")
    wait_for_port "$KAFKA_PORT" tansu
    dcaracal() { "$CARACAL_BIN" --workspace benchd "$@"; }
    "$CARACAL_BIN" workspace create benchd \
        --postgres-url "postgres://postgres@127.0.0.1:5432/$DIST_DB" \
        --redis-url redis://127.0.0.1:6379/0 --redis-prefix "caracal-bench-$$:" \
        --kafka-brokers "127.0.0.1:$KAFKA_PORT" >/dev/null
    dcaracal db migrate >/dev/null
    dcaracal kafka create-topics >/dev/null
    dcaracal provider add openai --template openai --base-url "$MOCK_URL" \
        --host api.openai.com --credential sk-bench --allow-private-network >/dev/null
    D_JSON=$(dcaracal principal register --type agent --name bench-agent --email b@example.com --json)
    D_TOKEN=$(jq -er .token <<<"$D_JSON")
    dcaracal allowlist create --agent-id bench-agent \
        --pattern 'https://api.openai.com/*' --pattern-type glob >/dev/null
    dcaracal principal register --type user --name ops --email ops@example.com >/dev/null
    dcaracal policy create --principal-id ops --resource chat.completions --action create \
        --max-validity 24h --change-reason benchmark >/dev/null
    dcaracal authority mandate --issuer ops --subject bench-agent \
        --resource chat.completions --action create --valid-for 6h >/dev/null 2>&1
    DB_JSON=$(dcaracal principal register --type agent --name bench-budget --email bb@example.com --json)
    D_BUDGET_TOKEN=$(jq -er .token <<<"$DB_JSON")
    dcaracal allowlist create --agent-id bench-budget \
        --pattern 'https://api.openai.com/*' --pattern-type glob >/dev/null
    dcaracal authority mandate --issuer ops --subject bench-budget \
        --resource chat.completions --action create --valid-for 6h >/dev/null 2>&1
    dcaracal policy create --agent-id bench-budget --limit 1000000.00 --currency USD \
        --time-window daily --change-reason benchmark >/dev/null
    DIST_PORT=$(free_port)
    DIST_WS="$CARACAL_HOME/workspaces/benchd"
    RUST_LOG=warn "$BIN/caracal-gateway" serve --config "$DIST_WS/config.toml" \
        --listen "127.0.0.1:$DIST_PORT" --metrics-listen "127.0.0.1:$(free_port)" \
        >"$WORK/replica.log" 2>&1 &
    REPLICA_PID=$!
    DIST_PIDS+=("$REPLICA_PID")
    RUST_LOG=warn "$BIN/caracal-gateway" ledger-writer --config "$DIST_WS/config.toml" \
        >"$WORK/writer.log" 2>&1 &
    WRITER_PID=$!
    DIST_PIDS+=("$WRITER_PID")
    wait_for_port "$DIST_PORT" "the distributed replica"
fi
# Events in the broker the ledger writers have not committed yet.
writer_lag() {
    dcaracal kafka consumer-lag --json | jq -er .total_lag
}
# Waits until the ledger writer has written every event in the broker.
wait_for_writer() {
    local i
    for i in $(seq 1 1200); do
        [ "$(writer_lag)" = 0 ] && return
        sleep 0.5
    done
    die "the ledger writer did not catch up in 10 minutes"
}

# ---------------------------------------------------------------- nginx
log "starting nginx as a TLS reverse proxy"
NGINX_PORT=$(free_port)
while [ "$NGINX_PORT" = "$GW_PORT" ] || [ "$NGINX_PORT" = "$METRICS_PORT" ]; do
    NGINX_PORT=$(free_port)
done
cat >"$NGINX_DIR/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $NGINX_DIR/nginx.pid;
error_log $NGINX_DIR/error.log warn;
events { worker_connections 16384; }
http {
    access_log off;
    client_body_temp_path $NGINX_DIR/tmp/body;
    proxy_temp_path $NGINX_DIR/tmp/proxy;
    fastcgi_temp_path $NGINX_DIR/tmp/fastcgi;
    uwsgi_temp_path $NGINX_DIR/tmp/uwsgi;
    scgi_temp_path $NGINX_DIR/tmp/scgi;
    upstream mock {
        server 127.0.0.1:$MOCK_PORT;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        # HTTP/1.1 only: no http2 on this listener.
        listen 127.0.0.1:$NGINX_PORT ssl;
        ssl_certificate $NGINX_DIR/server.pem;
        ssl_certificate_key $NGINX_DIR/server.key;
        keepalive_requests 1000000;
        location / {
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
    server {
        # HTTP/2 (for the memory section's STREAMS_H2), streamed through.
        listen 127.0.0.1:$NGINX_H2_PORT ssl http2;
        http2_max_concurrent_streams 16384;
        ssl_certificate $NGINX_DIR/server.pem;
        ssl_certificate_key $NGINX_DIR/server.key;
        location / {
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
}
CONF
"$NGINX" -t -q -p "$NGINX_DIR" -e "$NGINX_DIR/error.log" -c "$NGINX_DIR/nginx.conf"
"$NGINX" -p "$NGINX_DIR" -e "$NGINX_DIR/error.log" -c "$NGINX_DIR/nginx.conf" &
NGINX_PID=$!
wait_for_port "$NGINX_PORT" nginx

# ---------------------------------------------------------------- runs
BODY="$WORK/chat.json"
cat >"$BODY" <<'JSON'
{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello in five words."}],"max_tokens":16,"stream":false}
JSON
COMMON=(--method POST --body-file "$BODY" --http1 --concurrency "$CONCURRENCY"
    --duration "$DURATION" --warmup "$WARMUP" --json)
CHAT=/v1/chat/completions
# The agent token appears only in the arguments; the recorded commands
# show it as TOKEN and the temp dir as $TMP.
TARGETS=(direct nginx gw-base-url gw-base-url-budget gw-base-url-mandate gw-proxy)
[ "$DISTRIBUTED" != 1 ] || TARGETS+=(gw-dist gw-dist-budget gw-dist-deferred)
if [ -n "$ROWS" ]; then
    read -r -a TARGETS <<<"$ROWS"
    for target in "${TARGETS[@]}"; do
        case $target in
        direct | nginx | gw-base-url | gw-base-url-budget | gw-base-url-mandate | gw-proxy) ;;
        gw-dist | gw-dist-budget | gw-dist-deferred) [ "$DISTRIBUTED" = 1 ] || die "$target needs DISTRIBUTED=1" ;;
        *) die "unknown row in ROWS: $target" ;;
        esac
    done
fi
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"
COMMANDS=()
for target in "${TARGETS[@]}"; do
    case $target in
    direct) ARGS=(--url "$MOCK_URL$CHAT" -H "Authorization: Bearer sk-bench") ;;
    nginx) ARGS=(--url "https://127.0.0.1:$NGINX_PORT$CHAT" --ca-file "$NGINX_DIR/ca.pem"
        -H "Authorization: Bearer sk-bench") ;;
    gw-base-url) ARGS=(--url "https://127.0.0.1:$GW_PORT/openai$CHAT"
        --ca-file "$WORK/gateway-ca.pem" -H "Authorization: Bearer $AGENT_TOKEN") ;;
    gw-base-url-budget) ARGS=(--url "https://127.0.0.1:$GW_PORT/openai$CHAT"
        --ca-file "$WORK/gateway-ca.pem" -H "Authorization: Bearer $BUDGET_TOKEN") ;;
    gw-base-url-mandate) ARGS=(--url "https://127.0.0.1:$GW_PORT/openai$CHAT"
        --ca-file "$WORK/gateway-ca.pem" -H "Authorization: Bearer $AGENT_TOKEN"
        -H "x-caracal-mandate: $MANDATE") ;;
    gw-proxy) ARGS=(--url "https://api.openai.com$CHAT"
        --proxy "https://$AGENT_ID:$AGENT_TOKEN@127.0.0.1:$GW_PORT"
        --ca-file "$WORK/gateway-ca.pem") ;;
    gw-dist | gw-dist-deferred) ARGS=(--url "https://127.0.0.1:$DIST_PORT/openai$CHAT"
        --ca-file "$DIST_WS/ca/ca.pem" -H "Authorization: Bearer $D_TOKEN") ;;
    gw-dist-budget) ARGS=(--url "https://127.0.0.1:$DIST_PORT/openai$CHAT"
        --ca-file "$DIST_WS/ca/ca.pem" -H "Authorization: Bearer $D_BUDGET_TOKEN") ;;
    esac
    log "load: $target (concurrency $CONCURRENCY, warm-up $WARMUP, $DURATION)"
    # The 1-minute load average around each run shows whether other work on
    # the machine competed with it.
    load_before=$(cut -d ' ' -f 1 /proc/loadavg)
    # The server under test, and (distributed) the ledger writer beside it.
    case $target in
    direct) SERVER=("$MOCK_PID") ;;
    nginx) SERVER=("$NGINX_PID") ;;
    gw-dist*) SERVER=("$REPLICA_PID") ;;
    *) SERVER=("$GATEWAY_PID") ;;
    esac
    # What else a distributed call costs: the ledger writer, and the
    # services (broker, Redis, PostgreSQL; see sample_cpu).
    WRITER=()
    case $target in gw-dist*) WRITER=("$WRITER_PID") ;; esac
    # gw-dist-deferred: the ledger writer paused (SIGSTOP) while the load
    # runs, as if it ran on other machines; the events wait in the broker
    # and are written when it resumes (timed below).
    if [ "$target" = gw-dist-deferred ]; then
        wait_for_writer
        kill -STOP "$WRITER_PID"
    fi
    "$BIN/caracal-load" --label "$target" "${ARGS[@]}" "${COMMON[@]}" >"$WORK/run.json" &
    LOAD_PID=$!
    # CPU over the measured window: sampled when the warm-up ends and when
    # the window does.
    sleep "$(secs "$WARMUP")"
    read -r cpu0 wcpu0 scpu0 bcpu0 rcpu0 pcpu0 <<<"$(sample_cpu)"
    PERF_PID=""
    if [ "$target" = "$PROFILE_TARGET" ]; then
        perf record -q -e cpu-clock ${PROFILE_CALL_GRAPH:+-F 2000 --call-graph $PROFILE_CALL_GRAPH} -g -o "$WORK/perf.data" -p "${SERVER[0]}" \
            -- sleep "$(secs "$DURATION")" >/dev/null 2>&1 &
        PERF_PID=$!
    fi
    sleep "$(secs "$DURATION")"
    read -r cpu1 wcpu1 scpu1 bcpu1 rcpu1 pcpu1 <<<"$(sample_cpu)"
    wait "$LOAD_PID"
    catchup_events=null catchup_secs=null
    if [ "$target" = gw-dist-deferred ]; then
        catchup_events=$(writer_lag)
        kill -CONT "$WRITER_PID"
        t0=$(date +%s.%N)
        wait_for_writer
        catchup_secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
    fi
    if [ -n "$PERF_PID" ]; then
        wait "$PERF_PID" || true
        PROFILE_OUT="$REPO/load-tests/results/$(date +%Y-%m-%d)-profile-$target.txt"
        {
            echo "# perf record -e cpu-clock -g -p <$target's server> over the measured window"
            echo "# By shared object:"
            perf report -i "$WORK/perf.data" --no-children --sort dso --stdio -g none \
                --percent-limit 0.5 2>/dev/null | grep -v '^#' | grep -v '^$' | sed 's/[ -]*$//'
            echo "# By symbol (flat, self time):"
            perf report -i "$WORK/perf.data" --no-children --sort dso,symbol --stdio -g none \
                --percent-limit 0.4 2>/dev/null | grep -v '^#' | grep -v '^$' | sed 's/[ -]*$//' | head -n 120
        } >"$PROFILE_OUT" || true
        log "profile of $target: $PROFILE_OUT"
    fi
    rss=$(rss_mib "${SERVER[@]}")
    load_after=$(cut -d ' ' -f 1 /proc/loadavg)
    jq -c --arg before "$load_before" --arg after "$load_after" \
        --arg cpu "$(delta "$cpu0" "$cpu1")" \
        --arg wcpu "$(delta "$wcpu0" "$wcpu1")" \
        --arg scpu "$(delta "$scpu0" "$scpu1")" \
        --arg bcpu "$(delta "$bcpu0" "$bcpu1")" \
        --arg rcpu "$(delta "$rcpu0" "$rcpu1")" \
        --arg pcpu "$(delta "$pcpu0" "$pcpu1")" \
        --arg rss "$rss" --argjson catchup_events "$catchup_events" \
        --argjson catchup_secs "$catchup_secs" \
        'def per_req(s): if .ok > 0 then (s | tonumber) * 1e6 / .ok else null end;
         . + {load_avg_before: ($before | tonumber), load_avg_after: ($after | tonumber),
              server_cpu_s: ($cpu | tonumber), writer_cpu_s: ($wcpu | tonumber),
              server_rss_mib: ($rss | tonumber),
              server_cpu_us_per_req: per_req($cpu), writer_cpu_us_per_req: per_req($wcpu),
              services_cpu_us_per_req: per_req($scpu), broker_cpu_us_per_req: per_req($bcpu),
              redis_cpu_us_per_req: per_req($rcpu), postgres_cpu_us_per_req: per_req($pcpu),
              writer_catchup_events: $catchup_events, writer_catchup_secs: $catchup_secs}' \
        "$WORK/run.json" >>"$RESULTS"
    shown="caracal-load --label $target"
    for a in "${ARGS[@]}" "${COMMON[@]}"; do
        a=${a//$AGENT_TOKEN/TOKEN}
        a=${a//$BUDGET_TOKEN/TOKEN}
        a=${a//$MANDATE/MANDATE}
        [ "$DISTRIBUTED" != 1 ] || { a=${a//$D_TOKEN/TOKEN}; a=${a//$D_BUDGET_TOKEN/TOKEN}; }
        a=${a//$WORK/\$TMP}
        case $a in *' '*) a="'$a'" ;; esac
        shown+=" $a"
    done
    COMMANDS+=("$shown")
    tail -n 1 "$RESULTS" | jq -c '{"label": .label, requests, errors, non_2xx, rps, p50_ms, p99_ms}' >&2
done

# ---------------------------------------------------------------- open loop
if [ "$RATE" != 0 ]; then
    for target in direct nginx gw-base-url; do
        case $target in
        direct) ARGS=(--url "$MOCK_URL$CHAT" -H "Authorization: Bearer sk-bench") ;;
        nginx) ARGS=(--url "https://127.0.0.1:$NGINX_PORT$CHAT" --ca-file "$NGINX_DIR/ca.pem"
            -H "Authorization: Bearer sk-bench") ;;
        gw-base-url) ARGS=(--url "https://127.0.0.1:$GW_PORT/openai$CHAT"
            --ca-file "$WORK/gateway-ca.pem" -H "Authorization: Bearer $AGENT_TOKEN") ;;
        esac
        label="$target@${RATE}rps"
        log "open loop: $label ($DURATION)"
        load_before=$(cut -d ' ' -f 1 /proc/loadavg)
        "$BIN/caracal-load" --label "$label" "${ARGS[@]}" --method POST --body-file "$BODY" \
            --http1 --concurrency 256 --rate "$RATE" --duration "$DURATION" --warmup "$WARMUP" \
            --json >"$WORK/run.json"
        load_after=$(cut -d ' ' -f 1 /proc/loadavg)
        jq -c --arg before "$load_before" --arg after "$load_after" --arg rate "$RATE" \
            '. + {load_avg_before: ($before | tonumber), load_avg_after: ($after | tonumber),
                  open_loop_rate: ($rate | tonumber)}' "$WORK/run.json" >>"$RESULTS"
        COMMANDS+=("caracal-load --label $label ... --concurrency 256 --rate $RATE --duration $DURATION --warmup $WARMUP")
        tail -n 1 "$RESULTS" | jq -c '{"label": .label, requests, errors, rps, p50_ms, p99_ms}' >&2
    done
fi

# ---------------------------------------------------------------- memory
# A metric of the gateway's metrics endpoint: the sum of its series whose
# labels include $2 (every series without $2); 0 if unreadable.
metric() {
    curl -s "http://127.0.0.1:$METRICS_PORT/metrics" 2>/dev/null |
        awk -v m="$1" -v l="${2:-}" '($1 == m || index($1, m "{") == 1) && (l == "" || index($1, l) > 0) { n += $NF }
            END { printf "%d", n + 0 }'
}
# What a soak sample holds beside RSS (see the soak below).
soak_sample() {
    local db="$CARACAL_HOME/workspaces/bench/caracal.db"
    printf '%s %s %s %s %s' "$(metric caracal_ledger_backlog)" \
        "$(awk '/^RssAnon:/ {a=$2} /^RssFile:/ {f=$2} END { printf "%.1f %.1f", a / 1024, f / 1024 }' /proc/"$GATEWAY_PID"/status 2>/dev/null)" \
        "$(du -m "$db" 2>/dev/null | cut -f1)" "$(du -m "$db-wal" 2>/dev/null | cut -f1)" \
        "$(metric caracal_gateway_requests_total 'code="not_ready"')"
}
SSE_BODY="$WORK/chat-stream.json"
cat >"$SSE_BODY" <<'JSON'
{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Count slowly."}],"max_tokens":16,"stream":true,"stream_options":{"include_usage":true}}
JSON
MEMORY="$WORK/memory.jsonl"
: >"$MEMORY"
jq -nc --arg rss "$IDLE_RSS" '{kind: "idle", rss_mib: ($rss | tonumber)}' >>"$MEMORY"
# One memory run: N streams held open through the gateway to provider
# PROVIDER (openai: the mock over plain HTTP/1.1, one upstream connection
# per stream; openai-h2: nginx's TLS + HTTP/2 front, one connection for all).
# Each run starts from a freshly started gateway, so that what an earlier
# run left in the allocator neither hides nor inflates what this one takes.
stream_run() {
    local n=$1 provider=$2 label=$3 upstream=$4
    log "memory: $n open streams through the gateway to $upstream ($STREAM_SECS s each)"
    caracal down >/dev/null
    start_gateway
    before=$(rss_mib "$GATEWAY_PID")
    "$BIN/caracal-load" --label "$label" --url "https://127.0.0.1:$GW_PORT/$provider$CHAT" \
        --ca-file "$WORK/gateway-ca.pem" -H "Authorization: Bearer $AGENT_TOKEN" \
        --method POST --body-file "$SSE_BODY" --http1 --concurrency "$n" \
        --duration "$((STREAM_SECS * 2))s" --warmup "$((STREAM_SECS / 2))s" --timeout 120s \
        --json >"$WORK/run.json" &
    LOAD_PID=$!
    peak=0
    open=0
    while kill -0 "$LOAD_PID" 2>/dev/null; do
        r=$(rss_mib "$GATEWAY_PID")
        peak=$(awk -v a="$peak" -v b="$r" 'BEGIN { print (b > a) ? b : a }')
        f=$(metric caracal_gateway_requests_in_flight)
        [ "$f" -le "$open" ] || open=$f
        sleep 0.5
    done
    wait "$LOAD_PID" || true
    sleep 2
    after=$(rss_mib "$GATEWAY_PID")
    jq -c --arg n "$n" --arg before "$before" --arg peak "$peak" --arg after "$after" \
        --arg open "$open" --arg secs "$STREAM_SECS" --arg upstream "$upstream" \
        '{kind: "streams", label: .label, upstream: $upstream, streams: ($n | tonumber), stream_secs: ($secs | tonumber),
          open_peak: ($open | tonumber), rss_before_mib: ($before | tonumber),
          rss_peak_mib: ($peak | tonumber), rss_after_mib: ($after | tonumber),
          kib_per_stream: ((($peak | tonumber) - ($before | tonumber)) * 1024 / ($n | tonumber)),
          requests: .requests, ok: .ok, errors: .errors, non_2xx: .non_2xx,
          statuses: .statuses, error_kinds: .error_kinds}' "$WORK/run.json" >>"$MEMORY"
    COMMANDS+=("caracal-load --label $label ... --body-file \$TMP/chat-stream.json --concurrency $n --duration $((STREAM_SECS * 2))s --warmup $((STREAM_SECS / 2))s")
    tail -n 1 "$MEMORY" | jq -c '{"label": .label, open_peak, rss_peak_mib, kib_per_stream, errors, non_2xx}' >&2
}
for n in $STREAMS; do
    [ "$n" = 0 ] || stream_run "$n" openai "gw-sse-$n" "HTTP/1.1"
done
for n in $STREAMS_H2; do
    [ "$n" = 0 ] || stream_run "$n" openai-h2 "gw-sse-h2-$n" "HTTP/2 (TLS)"
done

if [ "$SOAK" != 0 ]; then
    base_rps=$(jq -s '[.[] | select(.label == "gw-base-url" and .open_loop_rate == null) | .rps][0] // 0' "$RESULTS")
    soak_rate=$(awk -v r="$base_rps" 'BEGIN { printf "%d", r / 2 }')
    [ "$soak_rate" -gt 0 ] || die "SOAK needs the gw-base-url row (its rps sets the soak rate)"
    log "memory: soak at $soak_rate requests/s for $SOAK"
    "$BIN/caracal-load" --label gw-soak --url "https://127.0.0.1:$GW_PORT/openai$CHAT" \
        --ca-file "$WORK/gateway-ca.pem" -H "Authorization: Bearer $AGENT_TOKEN" \
        --method POST --body-file "$BODY" --http1 --concurrency 256 --rate "$soak_rate" \
        --duration "$SOAK" --warmup 0s --json >"$WORK/soak.json" &
    LOAD_PID=$!
    start=$(date +%s)
    : >"$WORK/soak-rss.txt"
    # Each sample: seconds, RSS (MiB), the ledger writer's backlog (events),
    # anonymous and file-backed RSS (MiB), the database and its WAL (MiB),
    # calls refused so far as not_ready (the gateway's request counter).
    while kill -0 "$LOAD_PID" 2>/dev/null; do
        echo "$(($(date +%s) - start)) $(rss_mib "$GATEWAY_PID") $(soak_sample)" >>"$WORK/soak-rss.txt"
        for _ in $(seq 1 30); do kill -0 "$LOAD_PID" 2>/dev/null && sleep 1; done
    done
    wait "$LOAD_PID" || true
    # RSS samples after the first minute (allocator and caches warmed up),
    # and their least-squares slope in MiB per 10 minutes.
    jq -c --rawfile series "$WORK/soak-rss.txt" --arg rate "$soak_rate" --arg soak "$SOAK" '
        ($series | split("\n") | map(select(length > 0) | split(" ") | map(tonumber))) as $all
        | ($all | map(select(.[0] >= 60))) as $s
        | ($s | length) as $n
        | (if $n > 1 then
             ($s | map(.[0]) | add / $n) as $mx | ($s | map(.[1]) | add / $n) as $my
             | (($s | map((.[0] - $mx) * (.[1] - $my)) | add) / ($s | map((.[0] - $mx) * (.[0] - $mx)) | add)) * 600
           else null end) as $slope
        | {kind: "soak", label: "gw-soak", rate: ($rate | tonumber), duration: $soak,
           rss_first_mib: ($s[0][1] // null), rss_last_mib: ($s[-1][1] // null),
           rss_max_mib: ($s | map(.[1]) | max), slope_mib_per_10min: $slope,
           samples: $all, requests: .requests, ok: .ok, errors: .errors, non_2xx: .non_2xx,
           statuses: .statuses, error_kinds: .error_kinds,
           rps: .rps, p50_ms: .p50_ms, p99_ms: .p99_ms}' "$WORK/soak.json" >>"$MEMORY"
    COMMANDS+=("caracal-load --label gw-soak ... --concurrency 256 --rate $soak_rate --duration $SOAK")
    tail -n 1 "$MEMORY" | jq -c '{"label": .label, rss_first_mib, rss_last_mib, rss_max_mib, slope_mib_per_10min, errors}' >&2
fi

# ---------------------------------------------------------------- record
DATE=$(date +%Y-%m-%d)
OUT_DIR="$REPO/load-tests/results"
# A subset of rows is a working comparison, not a record.
[ -z "$ROWS" ] || OUT_DIR="$WORK"
mkdir -p "$OUT_DIR"
OUT_MD="$OUT_DIR/$DATE-gateway-path.md"
OUT_JSON="$OUT_DIR/$DATE-gateway-path.json"
if COMMIT=$(git rev-parse --short HEAD 2>/dev/null); then
    git diff --quiet HEAD 2>/dev/null || COMMIT="$COMMIT (with uncommitted changes)"
else
    COMMIT="none (no commit yet)"
fi
CPU=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n 1)
CPU=${CPU:-unknown}
NPROC=$(nproc)
UNAME=$(uname -srm)
NGINX_VERSION=$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')
COMMAND="CONCURRENCY=$CONCURRENCY DURATION=$DURATION WARMUP=$WARMUP DISTRIBUTED=$DISTRIBUTED RATE=$RATE STREAMS='$STREAMS' STREAMS_H2='$STREAMS_H2' STREAM_SECS=$STREAM_SECS SOAK=$SOAK load-tests/bench/gateway-path.sh"
[ "$CARACAL_BIN" = "$BIN/caracal" ] || COMMAND="CARACAL_BIN=$CARACAL_BIN $COMMAND"

jq -n --slurpfile runs "$RESULTS" --slurpfile memory "$MEMORY" \
    --arg date "$DATE" --arg commit "$COMMIT" --arg cpu "$CPU" --arg nproc "$NPROC" \
    --arg uname "$UNAME" --arg nginx "$NGINX_VERSION" --arg command "$COMMAND" \
    --arg concurrency "$CONCURRENCY" --arg duration "$DURATION" --arg warmup "$WARMUP" \
    --args '{
        date: $date, commit: $commit,
        machine: {nproc: ($nproc | tonumber), uname: $uname, cpu: $cpu},
        command: $command,
        settings: {concurrency: ($concurrency | tonumber), duration: $duration,
                   warmup: $warmup, http: "HTTP/1.1", nginx: $nginx,
                   request: "POST /v1/chat/completions, non-streaming, max_tokens 16"},
        load_commands: $ARGS.positional,
        runs: $runs,
        memory: $memory
    }' "${COMMANDS[@]}" >"$OUT_JSON"

# Markdown from the JSON, so the two always agree.
jq -r '
    # Fixed decimals without float noise; "-" for null.
    def f(d): if . == null then "-" else
          (. * pow(10; d) | round) as $n
          | (if $n <= -1 then -$n else $n end) as $a
          | pow(10; d) as $p
          | (($a / $p) | floor | tostring) as $i
          | (($a % $p) | tostring) as $fr
          | (if $n <= -1 then "-" else "" end) + $i
            + (if d > 0 then "." + (("0" * (d - ($fr | length))) // "") + $fr else "" end)
        end;
    def run(l): .runs[] | select(.label == l);
    def diff(a; b): {
        name: "\(a) vs \(b)",
        p50: ((run(a).p50_ms) - (run(b).p50_ms)),
        p99: ((run(a).p99_ms) - (run(b).p99_ms)),
        ratio: ((run(a).rps) / (run(b).rps)),
        cpu: (if (run(b).server_cpu_us_per_req // 0) > 0 then (run(a).server_cpu_us_per_req // 0) / run(b).server_cpu_us_per_req else null end)
    };
    "# Gateway data path: \(.date)",
    "",
    "What a request costs through the gateway, compared with the same request",
    "sent straight to the mock provider and through nginx as a plain TLS reverse",
    "proxy, measured in the same run with the same load settings.",
    "",
    "> The load generator runs on the same \(.machine.nproc)-core machine as the mock,",
    "> nginx and the gateway, and competes with them for CPU. Absolute numbers are",
    "> therefore pessimistic; the ratios between rows are what matter.",
    "",
    "- Date: \(.date)",
    "- Commit: \(.commit)",
    "- Machine: \(.machine.nproc) cores, \(.machine.uname), \(.machine.cpu)",
    "- Command: `\(.command)`",
    "- Load: closed loop, \(.settings.concurrency) concurrent workers, \(.settings.warmup) warm-up, \(.settings.duration) measured, \(.settings.http), keep-alive, one shared client per run",
    "- Request: \(.settings.request); mock provider with no added latency",
    "- nginx: \(.settings.nginx), 1 worker, TLS (ECDSA P-256), keep-alive upstream (64)",
    "",
    "| target | rps | p50 ms | p90 ms | p99 ms | max ms | server CPU µs/req | server RSS MiB | requests | errors | non-2xx | load avg |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    (.runs[] | select(.open_loop_rate == null) | "| \(.label) | \(.rps | f(1)) | \(.p50_ms | f(3)) | \(.p90_ms | f(3)) | \(.p99_ms | f(3)) | \(.max_ms | f(3)) | \(.server_cpu_us_per_req | f(1))\(if (.services_cpu_us_per_req // 0) > 0 then " (+ writer \(.writer_cpu_us_per_req | f(1)), services \(.services_cpu_us_per_req | f(1)))" else "" end) | \(.server_rss_mib | f(1)) | \(.requests) | \(.errors) | \(.non_2xx) | \(.load_avg_before) → \(.load_avg_after) |"),
    "",
    "*server CPU µs/req* is the CPU time (user + system) the server of the row",
    "spent in the measured window over the requests it completed: the mock for",
    "`direct`, nginx'"'"'s processes for `nginx`, the gateway or the replica",
    "otherwise; beside the distributed rows, the ledger writer'"'"'s and the",
    "services'"'"' (tansu, Redis, PostgreSQL: the whole machine'"'"'s instances;",
    "per service: \([.runs[] | select((.services_cpu_us_per_req // 0) > 0 and .open_loop_rate == null) | "\(.label) broker \(.broker_cpu_us_per_req | f(1)), Redis \(.redis_cpu_us_per_req | f(1)), PostgreSQL \(.postgres_cpu_us_per_req | f(1))"] | if length > 0 then join("; ") else "none measured" end)).",
    "*server RSS* is its resident memory after the run.",
    "",
    "*load avg* is the machine'"'"'s 1-minute load average before and after the row'"'"'s",
    "run. The run itself accounts for about 2-3 on these \(.machine.nproc) cores (load generator",
    "plus one server); much more means other work competed and the row is noisier.",
    "",
    "Targets: `direct` = the mock over plain HTTP; `nginx` = nginx TLS reverse",
    "proxy in front of the mock; `gw-base-url` = the gateway over TLS,",
    "`https://127.0.0.1:PORT/openai/v1/...` with a bearer token, acting under the",
    "agent'"'"'s recorded mandate; `gw-base-url-mandate` = the same presenting the",
    "mandate in `x-caracal-mandate` (an Ed25519 verification per call);",
    "`gw-base-url-budget` = `gw-base-url` for an agent under a daily budget (the",
    "request is read and priced, a reservation taken and settled on every call:",
    "budgets on, against `gw-base-url` with budgets off); `gw-proxy` = the",
    "gateway as HTTPS proxy (`CONNECT api.openai.com:443`, TLS inside the tunnel",
    "with a leaf minted by the workspace CA). `gw-dist` and `gw-dist-budget` (run",
    "with DISTRIBUTED=1) = the same requests as `gw-base-url` and",
    "`gw-base-url-budget` through one replica of the distributed deployment: state",
    "from Redis, budget counters and rate limits in Redis, spend events produced to",
    "a local tansu broker, and a ledger writer storing them in PostgreSQL while the",
    "load runs (all on this machine, competing for its cores). `gw-dist-deferred` =",
    "`gw-dist` with the ledger writer paused (SIGSTOP) while the load runs, as if",
    "it ran on other machines: the events wait in the broker and are written when",
    "it resumes\([.runs[] | select(.writer_catchup_secs != null) | ": \(.writer_catchup_events) events in \(.writer_catchup_secs) s, \(if .writer_catchup_secs > 0 then (.writer_catchup_events / .writer_catchup_secs | f(0)) else "-" end) events/s from broker to PostgreSQL"] | join(""))",
    "(every event the replica produced was written before the next row).",
    "",
    "## Gateway overhead",
    "",
    "| comparison | added p50 ms | added p99 ms | throughput ratio | CPU per request ratio |",
    "|---|---:|---:|---:|---:|",
    ([diff("gw-base-url"; "direct"), diff("gw-proxy"; "direct"),
      diff("gw-base-url"; "nginx"), diff("gw-base-url-mandate"; "nginx"),
      diff("gw-proxy"; "nginx"), diff("gw-base-url-mandate"; "gw-base-url"),
      diff("gw-base-url-budget"; "gw-base-url"),
      (if any(.runs[]; .label == "gw-dist") then
         diff("gw-dist"; "nginx"), diff("gw-dist-budget"; "nginx"),
         diff("gw-dist"; "gw-base-url"), diff("gw-dist-budget"; "gw-dist")
       else empty end),
      (if any(.runs[]; .label == "gw-dist-deferred") then
         diff("gw-dist-deferred"; "nginx"), diff("gw-dist-deferred"; "gw-dist")
       else empty end),
      diff("nginx"; "direct")][]
     | "| \(.name) | \(.p50 | f(3)) | \(.p99 | f(3)) | \(.ratio | f(3)) | \(.cpu | f(2)) |"),
    "",
    "Added latency is the difference of the percentiles; the throughput ratio is",
    "rps of the first target over rps of the second (1.0 = as fast); the CPU",
    "ratio is the first server'"'"'s CPU per request over the second'"'"'s. `nginx vs",
    "direct` is the cost of a minimal TLS reverse proxy on this machine, the",
    "yardstick for the gateway rows.",
    "",
    (if any(.runs[]; .open_loop_rate != null) then
      "## Open loop at a fixed rate",
      "",
      "Requests sent at a constant rate whatever the responses do (at most 256 in",
      "flight), each one'"'"'s latency counted from when it was due, so a stall shows",
      "in the percentiles instead of slowing the load down.",
      "",
      "| target | rate | served rps | p50 ms | p90 ms | p99 ms | max ms | errors |",
      "|---|---:|---:|---:|---:|---:|---:|---:|",
      (.runs[] | select(.open_loop_rate != null) | "| \(.label) | \(.open_loop_rate) | \(.rps | f(1)) | \(.p50_ms | f(3)) | \(.p90_ms | f(3)) | \(.p99_ms | f(3)) | \(.max_ms | f(3)) | \(.errors) |"),
      "",
      "| comparison | added p50 ms | added p99 ms |",
      "|---|---:|---:|",
      (.runs | map(select(.open_loop_rate != null)) | (map({key: (.label | split("@")[0]), value: .}) | from_entries) as $o
        | (["gw-base-url", "direct"], ["gw-base-url", "nginx"], ["nginx", "direct"])
        | select($o[.[0]] != null and $o[.[1]] != null)
        | "| \(.[0]) vs \(.[1]) | \(($o[.[0]].p50_ms - $o[.[1]].p50_ms) | f(3)) | \(($o[.[0]].p99_ms - $o[.[1]].p99_ms) | f(3)) |"),
      ""
    else empty end),
    (if (.memory | length) > 0 then
      "## Memory (embedded gateway)",
      "",
      "Resident memory of the gateway process: idle (after start, before any",
      "request), and while N streamed chat completions (SSE, `stream: true`,",
      "20 chunks paced by the mock over each stream) are open through it at once",
      "(closed loop: each client opens the next stream when one ends). *open* is",
      "the highest `caracal_gateway_requests_in_flight` seen; *KiB per stream* is",
      "(peak − before) / N.",
      "",
      "| run | upstream | streams | open | RSS before MiB | RSS peak MiB | RSS after MiB | KiB per stream | completed | errors | non-2xx |",
      "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
      (.memory[] | select(.kind == "idle") | "| idle | - | 0 | 0 | - | \(.rss_mib | f(1)) | - | - | - | - | - |"),
      (.memory[] | select(.kind == "streams") | "| \(.label) | \(.upstream // "HTTP/1.1") | \(.streams) | \(.open_peak) | \(.rss_before_mib | f(1)) | \(.rss_peak_mib | f(1)) | \(.rss_after_mib | f(1)) | \(.kib_per_stream | f(1)) | \(.ok) | \(.errors) | \(.non_2xx) |"),
      "",
      (.memory[] | select(.kind == "soak") |
        "Soak: \(.duration) open loop at \(.rate) requests/s (half of what gw-base-url served), RSS sampled every 30 s: \(.rss_first_mib | f(1)) MiB after the first minute, \(.rss_last_mib | f(1)) MiB at the end, \(.rss_max_mib | f(1)) MiB at most; least-squares slope \(.slope_mib_per_10min | f(2)) MiB per 10 minutes; \(.ok) requests, \(.errors) errors, p50 \(.p50_ms | f(3)) ms, p99 \(.p99_ms | f(3)) ms.",
        ""),
      ""
    else empty end),
    "## Load commands",
    "",
    "```",
    (.load_commands[]),
    "```",
    "",
    "Raw summaries: the `.json` file next to this one."
' "$OUT_JSON" >"$OUT_MD"

# ---------------------------------------------------------------- verdict
cat "$OUT_MD"
log "wrote $OUT_MD and $OUT_JSON"
FAILED=$(jq -r '[(.runs[], (.memory[] | select(.kind != "idle"))) | select(.errors > 0 or .non_2xx > 0 or .ok == 0) | .label] | join(" ")' "$OUT_JSON")
if [ -n "$FAILED" ]; then
    jq -r '.runs[] | select(.errors > 0 or .non_2xx > 0) | "\(.label): statuses \(.statuses), errors \(.error_kinds)"' "$OUT_JSON" >&2
    [ ! -f "$GATEWAY_LOG" ] || { log "last lines of $GATEWAY_LOG:"; tail -n 20 "$GATEWAY_LOG" >&2; }
    die "runs with errors or non-2xx responses: $FAILED"
fi
