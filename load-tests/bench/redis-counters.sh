#!/usr/bin/env bash
# redis-counters.sh: what a budgeted call costs the distributed
# deployment's shared Redis.
#
# Runs the redis_counters_bench example of caracal-gateway against the
# Redis of scripts/services.sh (started if absent): CALLS reservations,
# each settled, through the gateway's own Redis counters and scripts, from
# CONCURRENCY tasks over PRINCIPALS principals with LINES budget lines
# each; prints, as JSON, Redis's CPU per call (its main thread), the
# scripts' time per call and the commands they ran per call, read from
# Redis's own statistics. Redis is one thread for every replica, so its
# time per call bounds budgeted calls per second across all of them.
# Nothing else should use that Redis meanwhile (its statistics are
# server-wide).
#
# Settings from the environment: CALLS (50000), CONCURRENCY (16),
# PRINCIPALS (100), LINES (1), PROFILE (release).
set -euo pipefail

CALLS=${CALLS:-50000}
CONCURRENCY=${CONCURRENCY:-16}
PRINCIPALS=${PRINCIPALS:-100}
LINES=${LINES:-1}
PROFILE=${PROFILE:-release}

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$SCRIPT_DIR/../.."
eval "$(./scripts/services.sh)"
cargo run -q --profile "$PROFILE" -p caracal-gateway --example redis_counters_bench -- \
    --redis-url "$CARACAL_TEST_REDIS_URL" --calls "$CALLS" --concurrency "$CONCURRENCY" \
    --principals "$PRINCIPALS" --lines "$LINES" "$@"
