#!/usr/bin/env bash
# embedded-ledger.sh: the embedded ledger writer's throughput.
#
# Runs the embedded_ledger_bench example of caracal-gateway: EVENTS events
# that look like real calls, spread over PRINCIPALS principals, emitted into
# the sink the data path uses and written by the in-process writer into a
# fresh SQLite file (as the gateway opens it); prints events/s and CPU per
# event as JSON.
#
# Settings from the environment: EVENTS (500000), PRINCIPALS (1000),
# PROFILE (release).
set -euo pipefail

EVENTS=${EVENTS:-500000}
PRINCIPALS=${PRINCIPALS:-1000}
PROFILE=${PROFILE:-release}

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$SCRIPT_DIR/../.."
cargo run -q --profile "$PROFILE" -p caracal-gateway --example embedded_ledger_bench -- \
    --events "$EVENTS" --principals "$PRINCIPALS" "$@"
