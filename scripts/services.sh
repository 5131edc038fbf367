#!/usr/bin/env bash
# Finds or starts the services the distributed deployment's tests (and
# scripts/distributed-demo.sh) need, and prints the environment that points
# the tests at them (`eval "$(scripts/services.sh)"`):
#
#   Redis 7       127.0.0.1:6379   CARACAL_TEST_REDIS_URL
#   PostgreSQL    127.0.0.1:5432   CARACAL_TEST_POSTGRES_URL (trust auth)
#   tansu         a Kafka-protocol broker binary; tests start their own
#                 brokers on free ports             CARACAL_TANSU
#
# What is already running is used as it is. What is missing is installed
# from Debian's packages (Redis, PostgreSQL) or crates.io (tansu, built once
# into $CARACAL_TOOLS, default /opt/caracal-tools, and reused: 12-25 minutes
# the first time on a 2-core machine) and started. Progress goes to stderr;
# only the environment goes to stdout.
set -euo pipefail

log() { echo "services: $*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
  log "installing $* from Debian's packages"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2 ||
    { as_root apt-get update -q >&2 && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2; }
}

wait_for() { # what, command...
  local what=$1; shift
  for _ in $(seq 1 50); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  log "$what did not come up"; return 1
}

# ---- Redis ---------------------------------------------------------------
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }
if ! redis_up; then
  command -v redis-server >/dev/null || apt_install redis-server redis-tools
  log "starting Redis on 127.0.0.1:6379 (nothing kept on disk)"
  as_root redis-server --bind 127.0.0.1 --port 6379 --daemonize yes \
    --save '' --appendonly no --maxmemory-policy noeviction >&2
  wait_for Redis redis_up
fi

# ---- PostgreSQL ------------------------------------------------------------
pg_up() { psql -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' 2>/dev/null | grep -q 1; }
if ! pg_up; then
  if ! command -v pg_ctlcluster >/dev/null; then
    apt_install postgresql postgresql-client
  fi
  cluster=$(pg_lsclusters -h 2>/dev/null | awk 'NR==1 {print $1" "$2}')
  if [ -z "$cluster" ]; then
    log "no PostgreSQL cluster exists; creating one"
    as_root pg_createcluster "$(ls /usr/lib/postgresql | sort -V | tail -1)" main >&2
    cluster=$(pg_lsclusters -h | awk 'NR==1 {print $1" "$2}')
  fi
  hba=$(ls /etc/postgresql/${cluster% *}/${cluster#* }/pg_hba.conf)
  if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    log "trusting local TCP connections to the test cluster ($hba)"
    as_root sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
  fi
  log "starting PostgreSQL $cluster on 127.0.0.1:5432"
  # shellcheck disable=SC2086
  as_root pg_ctlcluster $cluster start >&2 || as_root pg_ctlcluster $cluster reload >&2
  wait_for PostgreSQL pg_up
fi

# ---- tansu (Kafka-protocol broker) -----------------------------------------
tools=${CARACAL_TOOLS:-/opt/caracal-tools}
if ! mkdir -p "$tools" 2>/dev/null || [ ! -w "$tools" ]; then
  tools=${XDG_DATA_HOME:-$HOME/.local/share}/caracal-tools
  mkdir -p "$tools"
fi
tansu=${CARACAL_TANSU:-$tools/bin/tansu}
if [ ! -x "$tansu" ]; then
  log "building the tansu broker once into $tools (12-25 minutes on 2 cores)"
  cargo install tansu --version 0.6.0 --locked --features dynostore --root "$tools" >&2
  tansu=$tools/bin/tansu
fi

echo "export CARACAL_TEST_REDIS_URL=redis://127.0.0.1:6379/"
echo "export CARACAL_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres"
echo "export CARACAL_TANSU=$tansu"
