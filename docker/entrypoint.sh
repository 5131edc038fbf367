#!/bin/sh
# Creates the workspace named by $CARACAL_WORKSPACE on first start, then
# runs the given command (by default the gateway in the foreground). With
# CARACAL_POSTGRES_URL, CARACAL_REDIS_URL and CARACAL_KAFKA_BROKERS set, the
# workspace is a distributed one (see docker/compose.distributed.yaml).
set -eu
ws="${CARACAL_WORKSPACE:-default}"
if [ ! -f "$CARACAL_HOME/workspaces/$ws/config.toml" ]; then
  if [ -n "${CARACAL_REDIS_URL:-}" ] || [ -n "${CARACAL_KAFKA_BROKERS:-}" ] || [ -n "${CARACAL_POSTGRES_URL:-}" ]; then
    caracal workspace create "$ws" \
      ${CARACAL_POSTGRES_URL:+--postgres-url "$CARACAL_POSTGRES_URL"} \
      ${CARACAL_REDIS_URL:+--redis-url "$CARACAL_REDIS_URL"} \
      ${CARACAL_KAFKA_BROKERS:+--kafka-brokers "$CARACAL_KAFKA_BROKERS"}
  else
    caracal workspace create "$ws"
  fi
  caracal workspace use "$ws"
fi
exec "$@"
