#!/usr/bin/env bash
# The demo: set-up, build the app, start moto (S3 + CloudFront) and the local todo API,
# deploy stage `dev` with the uploader, and serve it the way CloudFront would.
# Open the printed URL and add a todo; Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
source scripts/env.sh

MOTO_PORT=${MOTO_PORT:-5000}
API_PORT=${API_PORT:-3030}
SITE_PORT=${SITE_PORT:-8000}
mkdir -p .demo

echo "[demo] building the app and the tools" >&2
trunk build --release
cargo build -p uploader -p api

bin="${CARGO_TARGET_DIR:-target}/debug"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM

wait_http() { # wait_http URL NAME
  for _ in $(seq 1 150); do
    curl -s -o /dev/null "$1" && return 0
    sleep 0.2
  done
  echo "[demo] $2 did not start; see .demo/$2.log" >&2
  exit 1
}

echo "[demo] starting moto on 127.0.0.1:$MOTO_PORT and the todo API on 127.0.0.1:$API_PORT" >&2
moto_server -H 127.0.0.1 -p "$MOTO_PORT" >.demo/moto.log 2>&1 &
pids+=($!)
"$bin/todo-api" --port "$API_PORT" --db .demo/todos.sqlite3 >.demo/todo-api.log 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$MOTO_PORT/moto-api/" moto
wait_http "http://127.0.0.1:$API_PORT/healthz" todo-api

# Static test credentials for the local servers, the standard AWS way.
export AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT" AWS_ACCESS_KEY_ID=test \
  AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
export DEV_API_BASE="http://127.0.0.1:$API_PORT/dev" PROD_API_BASE="http://127.0.0.1:$API_PORT/prod"
eval "$(python scripts/demo_infra.py)"

echo "[demo] deploying stage dev" >&2
"$bin/uploader" --stage dev

echo "[demo] serving stage dev; open the URL below (Ctrl-C to stop)" >&2
"$bin/uploader" preview --stage dev --port "$SITE_PORT"
