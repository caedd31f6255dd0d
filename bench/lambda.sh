#!/usr/bin/env bash
# bench/lambda.sh — the todo API's Lambda function: artifact size, cold start and
# per-request cost of the REAL `bootstrap` from scripts/build-lambda.sh's zip, run
# against a local Lambda Runtime API (testkit::lambda) with DynamoDB on moto.
#
#   bench/lambda.sh            # a few minutes (plus the musl release build if stale);
#                              # prints the table and appends it to bench/results.md
#
# Knobs (environment): BENCH_COLD_STARTS=20, BENCH_REQUESTS=200,
#   BENCH_RESULTS=FILE (default bench/results.md; /dev/null to only print).
#
# init = process spawn → its first GET /2018-06-01/runtime/invocation/next (what
#        Lambda reports as Init Duration: runtime start, AWS config, client, router);
# per request = the emulator hands an event over → it receives the response POST:
#        the OPTIONS preflight touches no storage, so it bounds the adapter's (and the
#        Runtime API round trip's) own cost; list/create add one DynamoDB call to moto.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=../scripts/env.sh
source scripts/env.sh
RESULTS=${BENCH_RESULTS:-$root/bench/results.md}

zip=$(scripts/build-lambda.sh)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$zip" "$work" <<'PY'
import os, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
info = z.getinfo("bootstrap")
path = z.extract(info, sys.argv[2])
os.chmod(path, (info.external_attr >> 16) & 0o777)
PY
zip_bytes=$(stat -c %s "$zip")
bin_bytes=$(stat -c %s "$work/bootstrap")

echo "[bench] running the benchmark (debug-built harness and emulator)" >&2
out="$work/bench.txt"
BENCH_BOOTSTRAP="$work/bootstrap" cargo test -q -p e2e --test lambda_artifact -- \
  --ignored --exact bench_cold_start_and_requests --nocapture --test-threads 1 >"$out"

table=$(grep '^|' "$out")
{
  echo
  echo "## Lambda: artifact size, cold start, per-request cost ($(date -u +'%Y-%m-%d %H:%M UTC'))"
  echo
  echo "\`bench/lambda.sh\`: the real \`bootstrap\` from \`scripts/build-lambda.sh\` (x86_64 musl, static,"
  echo "profile \`lambda\`), on a local Lambda Runtime API (testkit::lambda) with DynamoDB on moto, on"
  echo "this project's shared 2-core machine."
  echo
  echo "- zip: $zip_bytes bytes ($(awk -v b="$zip_bytes" 'BEGIN { printf "%.2f", b / 1048576 }') MiB; goal ≤ 5 MiB); bootstrap unpacked: $bin_bytes bytes"
  echo
  echo "$table"
  echo
  echo "init = spawn → first \`GET /runtime/invocation/next\`; requests = event handed over → response"
  echo "received by the emulator (its own HTTP round trips included, emulator built in debug)."
} | tee -a "$RESULTS"
