#!/bin/sh
# Creates the workspace named by $CARACAL_WORKSPACE on first start, then
# runs the given command (by default the gateway in the foreground).
set -eu
ws="${CARACAL_WORKSPACE:-default}"
if [ ! -f "$CARACAL_HOME/workspaces/$ws/config.toml" ]; then
  caracal workspace create "$ws"
  caracal workspace use "$ws"
fi
exec "$@"
