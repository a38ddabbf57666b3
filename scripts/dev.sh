#!/usr/bin/env bash
# Runs Warden on its embedded defaults (SQLite, generated TLS, the local
# runtime): builds the server and `warden-injector` (every pod runs under
# it), then `warden dev`; arguments pass through (see `warden dev --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q -p warden-cli -p warden-injector
target=${CARGO_TARGET_DIR:-target}
case $target in /*) ;; *) target=$PWD/$target ;; esac
exec "$target/release/warden" dev "$@"
