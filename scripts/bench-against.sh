#!/usr/bin/env bash
# Compares this checkout's warden-bench figures with another revision's in
# one sitting: builds both (release, each in its own target directory),
# runs them alternately and prints each scenario's runs, means and the
# ratio. Usage:
#
#   scripts/bench-against.sh REV [RUNS] [-- WARDEN-BENCH ARGS...]
#
# e.g. `scripts/bench-against.sh 3853077 7 -- --backend sqlite --seconds 5`.
# Default: 5 runs of `--backend sqlite --seconds 5`. Odd runs start with
# REV, even runs with this checkout, so neither always runs on a warmer
# machine.
#
# The two builds must not share a target directory: cargo decides whether
# a workspace crate is stale from file times relative to the workspace, so
# a second worktree's older files can reuse the first one's artifacts.
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:?usage: scripts/bench-against.sh REV [RUNS] [-- ARGS...]}
shift
runs=5
if [[ $# -gt 0 && $1 != -- ]]; then
    runs=$1
    shift
fi
[[ ${1:-} == -- ]] && shift
args=("$@")
[[ ${#args[@]} -eq 0 ]] && args=(--backend sqlite --seconds 5)

cache=${XDG_CACHE_HOME:-$HOME/.cache}
base_src=$cache/warden-bench-base
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

commit=$(git rev-parse --verify "$rev^{commit}")
if [[ ! -d $base_src ]]; then
    git worktree add --detach -f "$base_src" "$commit" >/dev/null
fi
git -C "$base_src" checkout -q --detach "$commit"

echo "building $rev (in $base_src) and this checkout, release" >&2
(cd "$base_src" && CARGO_TARGET_DIR=$cache/warden-release-base \
    cargo build --release --locked -q -p warden-bench)
cp "$cache/warden-release-base/release/warden-bench" "$out/base"
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/warden-release-target}
CARGO_TARGET_DIR=$CARGO_TARGET_DIR cargo build --release --locked -q -p warden-bench
cp "$CARGO_TARGET_DIR/release/warden-bench" "$out/head"

if [[ " ${args[*]} " != *" --backend sqlite "* ]]; then
    WARDEN_TEST_DATABASE_URL=${WARDEN_TEST_DATABASE_URL:-$(./scripts/ensure-postgres.sh)}
    export WARDEN_TEST_DATABASE_URL
fi

for i in $(seq 1 "$runs"); do
    order=(base head)
    ((i % 2 == 0)) && order=(head base)
    for w in "${order[@]}"; do
        echo "run $i/$runs: $w" >&2
        "$out/$w" "${args[@]}" --json "$out/$w-$i.json" >/dev/null
    done
done

python3 - "$out" "$runs" "$rev" <<'EOF'
import json, statistics, sys
out, runs, rev = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rps = {}
for who in ("base", "head"):
    for i in range(1, runs + 1):
        for r in json.load(open(f"{out}/{who}-{i}.json"))["results"]:
            rps.setdefault((r["scenario"], r["backend"]), {}).setdefault(who, []).append(r["rps"])
print(f"req/s, {runs} alternating runs each; base = {rev}, head = this checkout")
print(f"{'scenario':<24} {'base mean':>10} {'head mean':>10} {'head/base':>9}   runs (base | head)")
for (scenario, backend), by in rps.items():
    b, h = statistics.mean(by["base"]), statistics.mean(by["head"])
    runs_text = " ".join(f"{x:.0f}" for x in by["base"]) + " | " + " ".join(f"{x:.0f}" for x in by["head"])
    print(f"{scenario + ' ' + backend:<24} {b:>10.0f} {h:>10.0f} {h / b:>9.2f}   {runs_text}")
pg, lite = rps.get(("secret read", "postgres")), rps.get(("secret read", "sqlite"))
if pg and lite:
    for who in ("base", "head"):
        ratios = [p / s for p, s in zip(pg[who], lite[who])]
        print(f"PostgreSQL/SQLite reads, {who}, per run: " + " ".join(f"{x:.2f}" for x in ratios))
EOF
