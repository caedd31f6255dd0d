#!/usr/bin/env bash
# bench/sync.sh — the uploader against `aws s3 sync`, `rclone sync` and `s3cmd sync`,
# all on ONE local s3s-fs server (127.0.0.1 only), in one run.
#
#   bench/sync.sh              # ~15-25 min on a 2-core machine; prints the table and
#                              # writes it to bench/results.md
#
# Knobs (environment; the defaults are the benchmark):
#   BENCH_SIZES="2000 10000"   data sets (number of files)
#   BENCH_TOOLS="uploader aws rclone rclone_checksum s3cmd"
#   BENCH_REPS=3               runs of the uploader and the floors per cell (first,
#                              noop, change); the report shows medians
#   BENCH_PEER_REPS=3          runs of each peer's noop and change
#   BENCH_PEER_FIRST_REPS=3    runs of each peer's first deploy (the slow ones)
#   BENCH_FLOORS=1             0 skips the floors
#   BENCH_FRESH=1              0 skips the fresh-checkout scenario (one run per tool)
#   BENCH_CELL_TIMEOUT=600     seconds before one tool run is cut (reported as >600s)
#   BENCH_RSS=1                0 skips the 1 GiB peak-RSS run
#   BENCH_NO_BUILD=1           use the existing release binaries as they are (looked
#                              for under $CARGO_TARGET_DIR, else ./target: without the
#                              variable a checkout that builds elsewhere builds again)
#   BENCH_RESULTS=FILE         where the markdown goes (default bench/results.md)
#   BENCH_SERVER_DIR=DIR       where s3s-fs keeps its files (default: a folder in
#                              /dev/shm when it has 4 GiB free, else the run's temp dir)
#
# Scenarios, per data set, every tool in its own bucket:
#   first   first deploy into an empty bucket (emptied again before each repeat)
#   noop    the same files again (nothing changed, mtimes untouched)
#   change  1% of the files rewritten in place (new content, new size, newer mtime);
#           the other 99% keep their pinned mtime; each repeat rewrites another 1%
#   fresh   another 1% rewritten AND every file's mtime set to now, as a fresh CI
#           checkout does: tools that compare size+mtime see every file as changed
#
# The uploader keeps a copy of each manifest it reads or writes (--cache-dir; here a
# folder of this run's, not ~/.cache) and asks the server only whether it changed.
# noop and change run as the same machine as the run before them, so they use it;
# first and fresh start without copies, as a new CI runner does.
#
# Floors, in the same run on the same server and data (uploader/examples/floors.rs,
# same SDK and crates, built in this workspace):
#   floor_put   PUTs every file of the data set once into an empty bucket, 32 in
#               flight, no hashing, no manifest, no ordering: the first deploy's floor
#   floor_hash  walks the data set and SHA-256-hashes every file on every core: the
#               no-op's floor (run in the noop and change scenarios)
#   floor_get   one GET of the uploader's manifest, SDK set-up included: "one request"
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
REPS=${BENCH_REPS:-3}
PEER_REPS=${BENCH_PEER_REPS:-3}
PEER_FIRST_REPS=${BENCH_PEER_FIRST_REPS:-3}
DO_FLOORS=${BENCH_FLOORS:-1}
DO_FRESH=${BENCH_FRESH:-1}
CELL_TIMEOUT=${BENCH_CELL_TIMEOUT:-600}
DO_RSS=${BENCH_RSS:-1}
RESULTS=${BENCH_RESULTS:-$root/bench/results.md}

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

tdir=${CARGO_TARGET_DIR:-$root/target}
UPLOADER=$tdir/release/uploader
FLOORS=$tdir/release/examples/floors
if [ "${BENCH_NO_BUILD:-0}" = 1 ] && [ -x "$UPLOADER" ] && [ -x "$FLOORS" ]; then
  log "using the existing $UPLOADER and $FLOORS (BENCH_NO_BUILD=1)"
else
  log "cargo build --release -p uploader --bin uploader --example floors (a no-op when up to date)"
  cargo build --release -p uploader --bin uploader --example floors
fi
[ -x "$UPLOADER" ] || die "no $UPLOADER after the build"
[ -x "$FLOORS" ] || die "no $FLOORS after the build"
FLOOR_TOOLS=""
[ "$DO_FLOORS" = 1 ] && FLOOR_TOOLS="floor_put floor_hash floor_get"

# ---------------------------------------------------------------- temp dir, clean-up
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-sync.XXXXXX")
server_pid=""
s3root=""
cleanup() {
  local rc=$?
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp" "$s3root"
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
# The server's files live in memory when there is room. On disk, ext4's journal
# commits now and then hold every request in flight for 50-350 ms at once (seen in
# s3s-fs's own request log: twenty requests, started milliseconds apart, all answered
# at the same instant); that stall lands on whichever tool happens to be writing, and
# it is the disk's, not the client's. Real S3 has no such pause.
shm_free_kb=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }')
if [ -n "${BENCH_SERVER_DIR:-}" ]; then
  s3root=$(mktemp -d "$BENCH_SERVER_DIR/bench-s3root.XXXXXX")
elif [ "${shm_free_kb:-0}" -ge $((4 * 1024 * 1024)) ]; then
  s3root=$(mktemp -d /dev/shm/bench-s3root.XXXXXX)
else
  s3root=$tmp/s3root
fi
server_fs=$(df -PT "$s3root" | awk 'NR == 2 { print $2 }')
srvlog=$tmp/s3s-fs.log
mkdir -p "$s3root"
bucket() { printf 'bench-%s-%s' "${1//_/-}" "$2"; } # bucket TOOL SIZE
for n in $SIZES; do
  for t in $TOOLS $FLOOR_TOOLS; do mkdir -p "$s3root/$(bucket "$t" "$n")"; done
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

# uploader: one stage per data set, each in its own bucket, under `site/` (a stage
# needs a folder of its own: the bucket root holds the uploader's records).
upcfg=$tmp/uploader.toml
{
  for n in $SIZES; do
    printf '[stages.bench%s]\nbucket = "%s"\nprefix = "site/"\napi_base = "http://127.0.0.1:1/bench"\n\n' "$n" "$(bucket uploader "$n")"
  done
  printf '[stages.rss]\nbucket = "bench-uploader-rss"\nprefix = "site/"\napi_base = "http://127.0.0.1:1/bench"\n'
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

# The uploader's manifest copies; removed before the scenarios of a new machine.
copies=$tmp/uploader-copies

# The command line of TOOL syncing DIR to BUCKET (SIZE picks the uploader's stage).
tool_cmd() { # tool_cmd TOOL DIR BUCKET SIZE -> sets CMD
  case $1 in
    uploader) CMD=(env "AWS_ENDPOINT_URL=$ENDPOINT" "UPLOADER_CACHE_DIR=$copies" "$UPLOADER" --config "$upcfg" --stage "bench$4" --dist "$2" --output json) ;;
    aws) CMD=(aws --endpoint-url "$ENDPOINT" s3 sync "$2" "s3://$3" --delete --only-show-errors) ;;
    rclone) CMD=(rclone --config "$tmp/rclone.conf" sync "$2" "bench:$3") ;;
    rclone_checksum) CMD=(rclone --config "$tmp/rclone.conf" sync --checksum "$2" "bench:$3") ;;
    s3cmd) CMD=(s3cmd -c "$s3cfg" sync --delete-removed --no-progress "$2/" "s3://$3/") ;;
    floor_put) CMD=(env "AWS_ENDPOINT_URL=$ENDPOINT" "$FLOORS" put "$2" "$3") ;;
    floor_hash) CMD=("$FLOORS" hash "$2") ;;
    floor_get) CMD=(env "AWS_ENDPOINT_URL=$ENDPOINT" "$FLOORS" get "$(bucket uploader "$4")" "_uploader/stages/bench$4/state.json") ;;
    *) die "unknown tool $1" ;;
  esac
}

results=$tmp/results.tsv
printf 'size\tscenario\ttool\trep\tseconds\trc\tstatus\trequests\tmethods\terrors\tnote\n' >"$results"
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
run_cell() { # run_cell TOOL SIZE SCENARIO DIR REP
  local tool=$1 n=$2 scen=$3 dir=$4 r=${5:-1} b rc=0 t0 t1 secs status reqs methods errors note=""
  b=$(bucket "$tool" "$n")
  tool_cmd "$tool" "$dir" "$b" "$n"
  local out=$tmp/out/$n-$scen-$tool-$r
  : >"$srvlog"
  t0=$(date +%s.%N)
  timeout -k 10 "$CELL_TIMEOUT" "${CMD[@]}" >"$out.stdout" 2>"$out.stderr" || rc=$?
  t1=$(date +%s.%N)
  sleep 0.5 # let the server log the last responses
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
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
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$scen" "$tool" "$r" "$secs" "$rc" "$status" "$reqs" "$methods" "$errors" "$note" >>"$results"
  log "$(printf '%-6s %-7s %-16s #%s %8ss %7s req  %s  %s' "$n" "$scen" "$tool" "$r" "$secs" "$reqs" "$status" "$methods")"
}

# How many runs TOOL gets in SCENARIO.
reps_for() { # reps_for TOOL SCENARIO
  case $1:$2 in
    uploader:* | floor_*:*) echo "$REPS" ;;
    *:first) echo "$PEER_FIRST_REPS" ;;
    *) echo "$PEER_REPS" ;;
  esac
}

# The floor tools named, when floors are on.
floors() { if [ "$DO_FLOORS" = 1 ]; then echo "$@"; fi; }

# Empties a tool's bucket. s3s-fs keeps a bucket as a folder of files, and each
# object's metadata beside the buckets as `.bucket-<name>.object-<key>.*.json` (names
# in unpadded URL-safe base64): both go, or the root folder grows with every repeat
# and slows every later run.
empty_bucket() { # empty_bucket TOOL SIZE
  local b enc
  b=$(bucket "$1" "$2")
  rm -rf "${s3root:?}/$b"
  mkdir -p "$s3root/$b"
  enc=$(printf '%s' "$b" | base64 -w0 | tr '+/' '-_' | tr -d '=')
  find "$s3root" -maxdepth 1 -name ".bucket-$enc.object-*" -delete
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
  echo "reps=$REPS"
  echo "peer_reps=$PEER_REPS"
  echo "peer_first_reps=$PEER_FIRST_REPS"
  echo "v_aws=$(aws --version 2>&1 | awk '{print $1, $2, $4}')"
  echo "v_rclone=$(rclone version 2>/dev/null | head -n 1)"
  echo "v_s3cmd=$(s3cmd --version)"
  echo "v_s3s=$(s3s-fs --version)"
  echo "server_fs=$server_fs"
  echo "timeout=$CELL_TIMEOUT"
} >"$meta"

# ---------------------------------------------------------------- the runs
G="python3 $root/bench/gen_site.py"
for n in $SIZES; do
  data=$tmp/site-$n
  log "data set $n: generating"
  $G gen "$data" "$n"
  echo "stats_$n=$($G stats "$data")" >>"$meta"
  # Every repeat runs every tool once, in turn, so noise from the shared machine falls
  # on all of them alike.
  max=$REPS
  [ "$PEER_FIRST_REPS" -gt "$max" ] && max=$PEER_FIRST_REPS
  for r in $(seq 1 "$max"); do
    for t in $TOOLS $(floors floor_put); do
      [ "$r" -le "$(reps_for "$t" first)" ] || continue
      empty_bucket "$t" "$n"
      [ "$t" != uploader ] || rm -rf "$copies"
      run_cell "$t" "$n" first "$data" "$r"
    done
  done
  max=$REPS
  [ "$PEER_REPS" -gt "$max" ] && max=$PEER_REPS
  for r in $(seq 1 "$max"); do
    for t in $TOOLS $(floors floor_hash floor_get); do
      [ "$r" -le "$(reps_for "$t" noop)" ] || continue
      run_cell "$t" "$n" noop "$data" "$r"
    done
  done
  for r in $(seq 1 "$max"); do
    # Offsets 0, 1, 2 …: each repeat rewrites another 1% (50 is the fresh scenario's).
    log "data set $n: rewriting $($G modify "$data" "$((r - 1))") files (1%), repeat $r"
    for t in $TOOLS $(floors floor_hash); do
      [ "$r" -le "$(reps_for "$t" change)" ] || continue
      run_cell "$t" "$n" change "$data" "$r"
    done
  done
  if [ "$DO_FRESH" = 1 ]; then
    log "data set $n: rewriting $($G modify "$data" 50) other files (1%), then touching every mtime"
    sleep 1.1 # "now" is strictly later than every earlier upload
    $G touch "$data"
    rm -rf "$copies"
    for t in $TOOLS; do
      run_cell "$t" "$n" fresh "$data" 1
    done
  fi
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
    env "AWS_ENDPOINT_URL=$ENDPOINT" "UPLOADER_CACHE_DIR=$copies" "$UPLOADER" --config "$upcfg" --stage rss --dist "$bigdir" --output json \
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
