#!/usr/bin/env bash
# Builds the todo API's Lambda function (api's `bootstrap` binary) for the
# provided.al2023 runtime and packs it as a zip, statically linked against musl.
#
#   scripts/build-lambda.sh                 # x86_64 → target/lambda/todo-api-x86_64.zip
#   scripts/build-lambda.sh --arch arm64    # needs `cargo zigbuild` (cargo-zigbuild + ziglang)
#
# Prints the zip's path on stdout; everything else goes to stderr.
# Needs musl-tools (musl-gcc) for x86_64: aws-lc-sys compiles C. scripts/setup.sh
# installs it and the Rust target.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"

arch=x86_64
out_dir="$root/target/lambda"
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch=${2:?--arch needs x86_64 or arm64}; shift 2 ;;
    --out) out_dir=${2:?--out needs a directory}; shift 2 ;;
    *) echo "build-lambda: unknown argument $1 (use --arch x86_64|arm64, --out DIR)" >&2; exit 2 ;;
  esac
done

case "$arch" in
  x86_64) target=x86_64-unknown-linux-musl ;;
  arm64|aarch64) arch=arm64; target=aarch64-unknown-linux-musl ;;
  *) echo "build-lambda: --arch must be x86_64 or arm64, not $arch" >&2; exit 2 ;;
esac

if ! rustup target list --installed | grep -qx "$target"; then
  echo "[build-lambda] adding rust target $target" >&2
  rustup target add "$target" >&2
fi

build=(build --profile lambda --target "$target" -p api --bin bootstrap --locked)
if [ "$arch" = x86_64 ]; then
  if ! command -v musl-gcc >/dev/null 2>&1; then
    echo "build-lambda: musl-gcc is missing; install musl-tools (scripts/setup.sh does)" >&2
    exit 1
  fi
  export CC_x86_64_unknown_linux_musl=musl-gcc
  cargo "${build[@]}" >&2
else
  if ! cargo zigbuild --help >/dev/null 2>&1; then
    echo "build-lambda: arm64 needs cargo-zigbuild and zig (e.g. pip install cargo-zigbuild ziglang, or cargo-lambda)" >&2
    exit 1
  fi
  build[0]=zigbuild
  cargo "${build[@]}" >&2
fi

target_dir=${CARGO_TARGET_DIR:-$root/target}
bin="$target_dir/$target/lambda/bootstrap"
if readelf -l "$bin" 2>/dev/null | grep -q 'Requesting program interpreter'; then
  echo "build-lambda: $bin is dynamically linked; provided.al2023 needs a static binary" >&2
  exit 1
fi

mkdir -p "$out_dir"
zip="$out_dir/todo-api-$arch.zip"
# The runtime executes the file named `bootstrap` at the zip's root. Fixed time
# stamp and mode, so the same binary gives the same zip (and the same CodeSha256).
python3 - "$bin" "$zip" <<'PY'
import sys, zipfile
src, dst = sys.argv[1], sys.argv[2]
info = zipfile.ZipInfo("bootstrap", date_time=(1980, 1, 1, 0, 0, 0))
info.external_attr = (0o100755 << 16)
info.compress_type = zipfile.ZIP_DEFLATED
with open(src, "rb") as f, zipfile.ZipFile(dst, "w") as z:
    z.writestr(info, f.read(), compresslevel=9)
PY
echo "[build-lambda] $(stat -c %s "$bin") bytes binary, $(stat -c %s "$zip") bytes zipped" >&2
echo "$zip"
