#!/usr/bin/env bash
# Every test: set-up, one release build of the app, then the Rust test suites (unit,
# behaviour against moto and s3s-fs, end to end in headless chromium).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
source scripts/env.sh

echo "[test] building the app (trunk build --release)" >&2
trunk build --release

echo "[test] building the native crates" >&2
cargo build --workspace --tests --bins

echo "[test] app unit tests (native)" >&2
cargo test -p app

echo "[test] workspace tests" >&2
cargo test --workspace
