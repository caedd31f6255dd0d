#!/usr/bin/env bash
# The app's development loop: the local staged API on 127.0.0.1:3030 and `trunk serve`
# on 127.0.0.1:8080, rebuilding on every change. The app reaches the API through
# trunk's proxy (/api/ → 127.0.0.1:3030), as stage `local`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
source scripts/env.sh
mkdir -p .demo
cargo build -p api
target/debug/todo-api --port 3030 --db .demo/dev.sqlite3 >.demo/dev-api.log 2>&1 &
api=$!
trap 'kill $api 2>/dev/null || true' EXIT INT TERM
TODO_DEV_API_BASE=/api/dev trunk serve
