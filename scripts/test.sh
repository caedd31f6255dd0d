#!/usr/bin/env bash
# Every test: set-up, one release build of the app, then all the Rust test suites (unit,
# the API over HTTP, the uploader against moto and s3s-fs, end to end in headless
# chromium).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
source scripts/env.sh

# Formatting and lints first: they fail in seconds, before any long build.
echo "[test] cargo fmt --check, cargo clippy -D warnings" >&2
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

# The CloudFormation template (infra/), offline; its architecture rules are a Rust test
# (tests/tests/infra_template.rs).
echo "[test] cfn-lint infra/template.yaml" >&2
.venv/bin/cfn-lint infra/template.yaml

echo "[test] building the app (trunk build --release)" >&2
trunk build --release

# One build of every crate and test with the feature set the test run uses, so the
# end-to-end harness need not rebuild the binaries it starts (TESTKIT_PREBUILT).
echo "[test] building the workspace" >&2
cargo build --workspace --all-targets

echo "[test] running the tests" >&2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
TESTKIT_PREBUILT=1 cargo test --workspace --all-targets 2>&1 | tee "$log" || status=$?
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, i }' "$log"
exit "$status"
