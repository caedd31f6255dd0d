#!/usr/bin/env bash
# bench/app.sh — the app at 1,000 todos in headless chromium, next to tastejs's
# vanilla-JS TodoMVC and Leptos's own examples/todomvc holding the same 1,000, in one
# run: load (navigation → rows, data → rows, requests in sequence) and the scripting
# time of toggle one, edit one, switch filter, toggle all, clear completed.
#
#   bench/app.sh               # ~5 minutes warm (plus the builds when stale);
#                              # prints the table and appends it to bench/results.md
#   bench/app.sh --no-build    # measure dist/ as it is (no trunk build of ours)
#
# Knobs (environment): BENCH_APP_RUNS=5 (medians), BENCH_APP_TODOS=1000,
#   BENCH_APP_ONLY=ours,vanilla,leptos, BENCH_APP_CACHE (default
#   ~/.cache/todo-stack-bench: where the Leptos peer is built),
#   BENCH_RESULTS=FILE (default bench/results.md; /dev/null to only print).
#
# The peers are vendored under bench/peers/ (each with its license and origin), so
# no network is needed: the Leptos one is built here with this project's Cargo.lock,
# hence the same leptos and wasm-bindgen as ours. How each number is measured: the
# doc comment of tests/tests/app_bench.rs.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=../scripts/env.sh
source scripts/env.sh
RESULTS=${BENCH_RESULTS:-$root/bench/results.md}
cache=${BENCH_APP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/todo-stack-bench}

if [ "${1:-}" != "--no-build" ]; then
  echo "[bench] trunk build --release (ours)" >&2
  trunk build --release >/dev/null
fi
[ -f dist/index.html ] || { echo "dist/ has no build; run without --no-build" >&2; exit 2; }

# Leptos's examples/todomvc: copied out of the repository (it is not a workspace
# member) and built with our lock file; rebuilt only when its sources change.
peer="$cache/leptos-todomvc"
stamp=$( (cat bench/peers/leptos-todomvc/Cargo.toml bench/peers/leptos-todomvc/index.html \
  bench/peers/leptos-todomvc/src/*.rs Cargo.lock) | sha256sum | cut -c1-16)
if [ ! -f "$peer/dist/index.html" ] || [ "$(cat "$peer/.stamp" 2>/dev/null)" != "$stamp" ]; then
  echo "[bench] building Leptos examples/todomvc in $peer (first time: a few minutes)" >&2
  rm -rf "$peer"
  mkdir -p "$cache"
  cp -r bench/peers/leptos-todomvc "$peer"
  cp Cargo.lock "$peer/Cargo.lock"
  (cd "$peer" && trunk build --release >/dev/null)
  echo "$stamp" >"$peer/.stamp"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The harness and the todo-api it starts, built the way scripts/test.sh builds them:
# one package selection, hence one feature set. A `cargo test -p e2e` next to the
# harness's own `cargo build -p uploader -p api` would select two feature sets of the
# same dependencies (rustls among them) and rebuild the AWS crates on every run.
echo "[bench] building the workspace (debug; a no-op after scripts/test.sh)" >&2
cargo build -q --workspace --all-targets
echo "[bench] running (debug-built harness; the apps are release builds)" >&2
TESTKIT_PREBUILT=1 BENCH_APP_LEPTOS_DIST="$peer/dist" cargo test -q --workspace --test app_bench -- \
  --ignored --exact bench_app_at_1000_todos --nocapture --test-threads 1 >"$work/table.md"

{
  echo
  echo "## App at 1,000 todos ($(date -u '+%Y-%m-%d %H:%M') UTC)"
  echo
  echo "\`bench/app.sh\`, headless chromium $(chromium --version 2>/dev/null | awk '{print $2}'), $(nproc) cores."
  echo "Scripting = Chrome's ScriptDuration from the event to the next frame (harness"
  echo "subtracted); to frame = the event to the frame after it (scripting + style + layout)."
  echo
  # Only the table: cargo test's own lines ("running 1 test", …) stay out.
  grep -E '^(\||Medians)' "$work/table.md" | sed 's/^Medians.*/&\n/'
} | tee -a "$RESULTS"
