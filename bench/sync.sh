#!/usr/bin/env bash
# bench/sync.sh — the uploader against `aws s3 sync`, `rclone sync` and `s3cmd sync`,
# all on ONE local s3s-fs server (127.0.0.1 only), in one run.
#
#   bench/sync.sh              # ~30-60 min on a 2-core machine; prints the table and
#                              # writes it to bench/results.md
#
# Knobs (environment; the defaults are the benchmark):
#   BENCH_SIZES="2000 10000"   data sets (number of files)
#   BENCH_TOOLS="uploader aws rclone rclone_checksum s3cmd"
#   BENCH_CELL_TIMEOUT=600     seconds before one tool run is cut (reported as >600s)
#   BENCH_RSS=1                0 skips the 1 GiB peak-RSS run
#   BENCH_NO_BUILD=1           use the existing target/release/uploader as it is
#   BENCH_RESULTS=FILE         where the markdown goes (default bench/results.md)
#
# Scenarios, per data set, every tool in its own bucket:
#   first   first deploy into an empty bucket
#   noop    the same files again (nothing changed, mtimes untouched)
#   change  1% of the files rewritten in place (new content, new size, newer mtime);
#           the other 99% keep their pinned mtime
#   fresh   another 1% rewritten AND every file's mtime set to now, as a fresh CI
#           checkout does: tools that compare size+mtime see every file as changed
#
# Requests are counted by the server: s3s-fs runs with RUST_LOG=s3s::service=debug,
# which logs one `req:` event per HTTP request it receives; the log is emptied before
# each tool run and its `req:` lines counted (and grouped by method) after it.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=../scripts/env.sh
source scripts/env.sh

SIZES=${BENCH_SIZES:-"2000 10000"}
TOOLS=${BENCH_TOOLS:-"uploader aws rclone rclone_checksum s3cmd"}
CELL_TIMEOUT=${BENCH_CELL_TIMEOUT:-600}
DO_RSS=${BENCH_RSS:-1}
RESULTS=${BENCH_RESULTS:-$root/bench/results.md}
SCENARIOS="first noop change fresh"

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- tools
if ! command -v s3s-fs >/dev/null 2>&1; then
  log "s3s-fs missing: running scripts/setup.sh"
  scripts/setup.sh
fi
command -v aws >/dev/null 2>&1 || die "aws (aws-cli) is not on PATH"

missing=()
command -v rclone >/dev/null 2>&1 || missing+=(rclone)
command -v s3cmd >/dev/null 2>&1 || missing+=(s3cmd)
[ -x /usr/bin/time ] || missing+=(time)
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  apt-cache policy "${missing[@]}" >&2 || true
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  if ! DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null; then
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

if [ "${BENCH_NO_BUILD:-0}" = 1 ] && [ -x target/release/uploader ]; then
  log "using the existing target/release/uploader (BENCH_NO_BUILD=1)"
else
  log "cargo build --release -p uploader (a no-op when it is up to date)"
  cargo build --release -p uploader
fi
UPLOADER=$root/target/release/uploader
[ -x "$UPLOADER" ] || die "no $UPLOADER after the build"

# ---------------------------------------------------------------- temp dir, clean-up
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-sync.XXXXXX")
server_pid=""
cleanup() {
  local rc=$?
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Every client talks to 127.0.0.1 only: no proxies, no profiles, no instance metadata.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy AWS_PROFILE \
  AWS_SESSION_TOKEN AWS_DEFAULT_PROFILE
# rclone 1.60 refuses to start when AWS_CA_BUNDLE is set ("LoadCustomCABundleError ...
# HTTPClient's transport unsupported type"); nothing here speaks TLS, so drop it for all.
unset AWS_CA_BUNDLE
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
export AWS_EC2_METADATA_DISABLED=true
: >"$tmp/aws-empty"
export AWS_CONFIG_FILE=$tmp/aws-empty AWS_SHARED_CREDENTIALS_FILE=$tmp/aws-empty

# ---------------------------------------------------------------- server
AK=bench-access-key
SK=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
s3root=$tmp/s3root
srvlog=$tmp/s3s-fs.log
mkdir -p "$s3root"
bucket() { printf 'bench-%s-%s' "${1//_/-}" "$2"; } # bucket TOOL SIZE
for n in $SIZES; do
  for t in $TOOLS; do mkdir -p "$s3root/$(bucket "$t" "$n")"; done
done
mkdir -p "$s3root/bench-uploader-rss"

port=""
for attempt in 1 2 3; do
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
  : >"$srvlog"
  # >> opens the log with O_APPEND, so emptying it between runs is safe.
  RUST_LOG=s3s::service=debug s3s-fs --host 127.0.0.1 --port "$port" \
    --access-key "$AK" --secret-key "$SK" "$s3root" >>"$srvlog" 2>&1 &
  server_pid=$!
  up=0
  for _ in $(seq 1 100); do # at most ~10 s
    kill -0 "$server_pid" 2>/dev/null || break
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then up=1; break; fi
    sleep 0.1
  done
  [ "$up" = 1 ] && break
  log "s3s-fs did not come up on port $port (attempt $attempt): $(tail -n 3 "$srvlog")"
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
done
[ -n "$server_pid" ] || die "could not start s3s-fs"
ENDPOINT=http://127.0.0.1:$port
log "s3s-fs $(s3s-fs --version | awk '{print $2}') on $ENDPOINT, root $s3root"

export AWS_ACCESS_KEY_ID=$AK AWS_SECRET_ACCESS_KEY=$SK AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1

# uploader: one stage per data set, each in its own bucket.
upcfg=$tmp/uploader.toml
{
  for n in $SIZES; do
    printf '[stages.bench%s]\nbucket = "%s"\nprefix = ""\napi_base = "http://127.0.0.1:1/bench"\n\n' "$n" "$(bucket uploader "$n")"
  done
  printf '[stages.rss]\nbucket = "bench-uploader-rss"\nprefix = ""\napi_base = "http://127.0.0.1:1/bench"\n'
} >"$upcfg"

# rclone: an s3 remote named "bench", entirely from the environment.
: >"$tmp/rclone.conf"
export RCLONE_CONFIG_BENCH_TYPE=s3 RCLONE_CONFIG_BENCH_PROVIDER=Other \
  RCLONE_CONFIG_BENCH_ENDPOINT=$ENDPOINT RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE=true \
  RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=$AK RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=$SK \
  RCLONE_CONFIG_BENCH_REGION=us-east-1 RCLONE_CONFIG_BENCH_ENV_AUTH=false

# s3cmd: path style (host_bucket without %(bucket)s), plain http, signature v4.
s3cfg=$tmp/s3cmd.cfg
cat >"$s3cfg" <<EOF
[default]
access_key = $AK
secret_key = $SK
host_base = 127.0.0.1:$port
host_bucket = 127.0.0.1:$port
use_https = False
signature_v2 = False
bucket_location = us-east-1
EOF

# The command line of TOOL syncing DIR to BUCKET (SIZE picks the uploader's stage).
tool_cmd() { # tool_cmd TOOL DIR BUCKET SIZE -> sets CMD
  case $1 in
    uploader) CMD=(env "AWS_ENDPOINT_URL=$ENDPOINT" "$UPLOADER" --config "$upcfg" --stage "bench$4" --dist "$2" --output json) ;;
    aws) CMD=(aws --endpoint-url "$ENDPOINT" s3 sync "$2" "s3://$3" --delete --only-show-errors) ;;
    rclone) CMD=(rclone --config "$tmp/rclone.conf" sync "$2" "bench:$3") ;;
    rclone_checksum) CMD=(rclone --config "$tmp/rclone.conf" sync --checksum "$2" "bench:$3") ;;
    s3cmd) CMD=(s3cmd -c "$s3cfg" sync --delete-removed --no-progress "$2/" "s3://$3/") ;;
    *) die "unknown tool $1" ;;
  esac
}

results=$tmp/results.tsv
printf 'size\tscenario\ttool\tseconds\trc\tstatus\trequests\tmethods\terrors\tnote\n' >"$results"
mkdir -p "$tmp/out"

# "GET 1, PUT 200, PUT-copy 3": the requests in the server log, by method; a PUT with
# x-amz-copy-source (CopyObject: a server-side copy, no bytes uploaded) is PUT-copy.
method_counts() {
  awk '/s3s::service: req:/ {
         if (match($0, /method: [A-Z]+/)) {
           m = substr($0, RSTART + 8, RLENGTH - 8)
           if (m == "PUT" && index($0, "\"x-amz-copy-source\"")) m = "PUT-copy"
           print m
         }
       }' "$srvlog" | sort | uniq -c | awk '{ printf "%s%s %s", sep, $2, $1; sep = ", " }'
}

# Runs one cell; appends a row to $results.
run_cell() { # run_cell TOOL SIZE SCENARIO DIR
  local tool=$1 n=$2 scen=$3 dir=$4 b rc=0 t0 t1 secs status reqs methods errors note=""
  b=$(bucket "$tool" "$n")
  tool_cmd "$tool" "$dir" "$b" "$n"
  local out=$tmp/out/$n-$scen-$tool
  : >"$srvlog"
  t0=$(date +%s.%N)
  timeout -k 10 "$CELL_TIMEOUT" "${CMD[@]}" >"$out.stdout" 2>"$out.stderr" || rc=$?
  t1=$(date +%s.%N)
  sleep 0.5 # let the server log the last responses
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
  reqs=$(grep -c 's3s::service: req:' "$srvlog" || true)
  methods=$(method_counts)
  errors=$( (grep -o 'resp: Response { status: [0-9]*' "$srvlog" || true) | awk '$NF >= 400' | wc -l)
  if [ "$rc" -eq 0 ]; then
    status=ok
  elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    status=timeout
  else
    status=fail
  fi
  if [ "$status" = fail ]; then
    # The tool's own last words (one line) for the report.
    note=$(cat "$out.stderr" "$out.stdout" | grep -E '^ *(Problem|ERROR|error|Error|[A-Za-z]+Error)[: ]' | tail -n 1 || true)
    [ -n "$note" ] || note=$(grep -v '^\s*$' "$out.stderr" | tail -n 1 || true)
    note=$(printf '%s' "$note" | tr '\t\n' '  ' | cut -c1-300)
  fi
  if [ "$tool" = uploader ] && [ "$status" = ok ]; then
    note=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("uploaded %d, updated %d, unchanged %d, deleted %d, preserved %d" % (r["uploaded"], r["updated"], r["unchanged"], r["deleted"], r["preserved"]))' "$out.stdout" 2>/dev/null || true)
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$scen" "$tool" "$secs" "$rc" "$status" "$reqs" "$methods" "$errors" "$note" >>"$results"
  log "$(printf '%-6s %-7s %-16s %8ss %7s req  %s  %s' "$n" "$scen" "$tool" "$secs" "$reqs" "$status" "$methods")"
}

# ---------------------------------------------------------------- machine facts
meta=$tmp/meta.env
{
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "nproc=$(nproc)"
  echo "mem=$(free -h | awk '/^Mem:/ { print "total " $2 ", available " $7 }')"
  echo "cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
  echo "kernel=$(uname -r)"
  echo "load_start=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- uploader 2>/dev/null || echo ' (uploader/ has uncommitted changes)')"
  echo "bin_built=$(date -u -r "$UPLOADER" '+%Y-%m-%d %H:%M UTC')"
  echo "v_uploader=$("$UPLOADER" --version)"
  echo "v_aws=$(aws --version 2>&1 | awk '{print $1, $2, $4}')"
  echo "v_rclone=$(rclone version 2>/dev/null | head -n 1)"
  echo "v_s3cmd=$(s3cmd --version)"
  echo "v_s3s=$(s3s-fs --version)"
  echo "timeout=$CELL_TIMEOUT"
} >"$meta"

# ---------------------------------------------------------------- the runs
G="python3 $root/bench/gen_site.py"
for n in $SIZES; do
  data=$tmp/site-$n
  log "data set $n: generating"
  $G gen "$data" "$n"
  echo "stats_$n=$($G stats "$data")" >>"$meta"
  for scen in $SCENARIOS; do
    case $scen in
      change) log "data set $n: rewriting $($G modify "$data" 0) files (1%)" ;;
      fresh)
        log "data set $n: rewriting $($G modify "$data" 50) other files (1%), then touching every mtime"
        sleep 1.1 # "now" is strictly later than every earlier upload
        $G touch "$data"
        ;;
    esac
    for t in $TOOLS; do
      run_cell "$t" "$n" "$scen" "$data"
    done
  done
  rm -rf "$data"
done

# ---------------------------------------------------------------- peak RSS, 1 GiB
if [ "$DO_RSS" = 1 ]; then
  bigdir=$tmp/big
  log "peak RSS: writing 64 x 16 MiB of random data"
  $G big "$bigdir" 64 16
  : >"$srvlog"
  rc=0
  t0=$(date +%s.%N)
  timeout -k 10 "$CELL_TIMEOUT" /usr/bin/time -v -o "$tmp/rss.txt" \
    env "AWS_ENDPOINT_URL=$ENDPOINT" "$UPLOADER" --config "$upcfg" --stage rss --dist "$bigdir" --output json \
    >"$tmp/out/rss.stdout" 2>"$tmp/out/rss.stderr" || rc=$?
  t1=$(date +%s.%N)
  sleep 0.5
  {
    echo "rss_rc=$rc"
    echo "rss_kb=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$tmp/rss.txt" 2>/dev/null)"
    echo "rss_seconds=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')"
    echo "rss_requests=$(grep -c 's3s::service: req:' "$srvlog" || true)"
    echo "rss_methods=$(method_counts)"
    echo "rss_error=$(tail -n 1 "$tmp/out/rss.stderr" | cut -c1-300)"
  } >>"$meta"
  rm -rf "$bigdir" "${s3root:?}/bench-uploader-rss"
  log "peak RSS: $(grep '^rss_kb=' "$meta")"
fi

echo "load_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$meta"

# ---------------------------------------------------------------- report
python3 "$root/bench/report.py" "$results" "$meta" "$RESULTS"
log "wrote $RESULTS"
