#!/usr/bin/env bash
# Runs every test: unit tests, and the integration suite against SQLite and
# a real PostgreSQL (started, and installed if needed, by ensure-postgres.sh),
# with the real clients ensure-tools.sh installs (OpenSSH, tmux, ssh-audit).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/warden-target}
WARDEN_TEST_DATABASE_URL=$(./scripts/ensure-postgres.sh)
./scripts/ensure-tools.sh
export WARDEN_TEST_DATABASE_URL
# The canary, crash and injector tests run the real `warden` and
# `warden-injector` binaries, which `cargo test` does not build by itself.
cargo build --locked -p warden-cli -p warden-injector
exec cargo test --workspace --locked "$@"
