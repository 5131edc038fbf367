#!/usr/bin/env bash
# Installs the official provider SDKs (pinned) into one fixed virtualenv,
# once, and prints its python. The tests that drive the gateway with an
# unmodified SDK call this; later runs reuse the environment.
#
#   scripts/sdk-venv.sh            # prints e.g. /work/main/target/sdk-venv/bin/python
#   CARACAL_SDK_VENV=DIR scripts/sdk-venv.sh
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${CARACAL_SDK_VENV:-$PWD/target/sdk-venv}"
requirements="$PWD/load-tests/sdk/requirements.txt"
stamp="$venv/.installed"

if [[ -x "$venv/bin/python" && -f "$stamp" ]] && cmp -s "$requirements" "$stamp"; then
  echo "$venv/bin/python"
  exit 0
fi
if ! command -v python3 >/dev/null; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    apt-get update -qq >&2 && apt-get install -y -qq python3 python3-venv >&2
  else
    echo "python3 is required (apt-get install python3 python3-venv)" >&2
    exit 1
  fi
fi
# Several test processes may ask at once: one installs, the others wait.
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
if [[ -x "$venv/bin/python" && -f "$stamp" ]] && cmp -s "$requirements" "$stamp"; then
  echo "$venv/bin/python"
  exit 0
fi
rm -rf "$venv"
if ! python3 -m venv "$venv" >&2; then
  # Debian ships venv apart from python3.
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    apt-get install -y -qq python3-venv >&2
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
  else
    echo "python3 -m venv failed: install python3-venv" >&2
    exit 1
  fi
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" >&2
cp "$requirements" "$stamp"
echo "$venv/bin/python"
