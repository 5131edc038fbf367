#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, and every unit and
# integration test of the workspace (the integration tests boot the real
# gateway and the mock provider on ephemeral ports).
#
# The embedded deployment needs no external service. The client tests drive
# the gateway with the official provider SDKs, installed (pinned) once into
# target/sdk-venv by scripts/sdk-venv.sh. The distributed deployment's
# tests need PostgreSQL, Redis and a Kafka-protocol broker: scripts/services.sh
# finds them running or installs and starts them (the broker, tansu, is built
# once into /opt/caracal-tools and reused), and points the tests at them.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
  echo "cargo is required: install Rust with rustup (https://rustup.rs)" >&2
  exit 1
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "==> official SDKs for the client tests (scripts/sdk-venv.sh, once)"
./scripts/sdk-venv.sh >/dev/null

echo "==> services for the distributed deployment's tests (scripts/services.sh)"
eval "$(./scripts/services.sh)"

echo "==> tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-targets --locked --no-fail-fast
  # nextest does not run doctests
  cargo test --workspace --doc --locked
else
  cargo test --workspace --all-targets --locked --no-fail-fast
fi
echo "==> all tests passed"
