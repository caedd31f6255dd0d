#!/usr/bin/env bash
# One idempotent set-up for a fresh machine; both README commands run it first.
# Every tool already installed at the right version is reused, never rebuilt.
#
#   wasm32 target · trunk 0.21.14 · wasm-bindgen-cli (= Cargo.lock) · wasm-opt (npm binaryen)
#   s3rver (npm, a third S3 implementation for the tests)
#   moto[server] and cfn-lint in .venv · s3s-fs 0.14.1 · Debian chromium + chromium-driver
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

TRUNK_VERSION=0.21.14
S3S_FS_VERSION=0.14.1
MOTO_VERSION=5.2.5

log() { printf '[setup] %s\n' "$*" >&2; }
have_version() { # have_version CMD EXPECTED -> true when `CMD --version` mentions EXPECTED
  command -v "$1" >/dev/null 2>&1 && "$1" --version 2>/dev/null | grep -qF "$2"
}

export PATH="$HOME/.cargo/bin:$PATH"

# 1. Rust target for the browser bundle.
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "adding rust target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

# 2. trunk 0.21.x (0.22 needs a newer rustc than this toolchain).
if have_version trunk "trunk $TRUNK_VERSION"; then
  log "trunk $TRUNK_VERSION: installed"
else
  log "installing trunk $TRUNK_VERSION (first time only, ~10 min)"
  cargo install trunk --version "$TRUNK_VERSION" --locked
fi

# 3. wasm-bindgen-cli at exactly the version Cargo.lock resolved, so trunk uses it
#    from PATH instead of trying to download one.
bindgen_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [ -z "$bindgen_version" ]; then
  echo "setup: could not read the wasm-bindgen version from Cargo.lock" >&2
  exit 1
fi
if have_version wasm-bindgen "wasm-bindgen $bindgen_version"; then
  log "wasm-bindgen $bindgen_version: installed"
else
  log "installing wasm-bindgen-cli $bindgen_version (first time only, ~4 min)"
  # --locked fails to resolve on this registry; a plain install works.
  cargo install wasm-bindgen-cli --version "$bindgen_version" --force
fi

# 4. s3s-fs: the second, independent S3 implementation (checks request signatures).
if have_version s3s-fs "$S3S_FS_VERSION"; then
  log "s3s-fs $S3S_FS_VERSION: installed"
else
  log "installing s3s-fs $S3S_FS_VERSION (first time only)"
  # Newer releases need a newer rustc; the binary lives behind the `binary` feature.
  cargo install s3s-fs --version "$S3S_FS_VERSION" --features binary --locked \
    || cargo install s3s-fs --version "$S3S_FS_VERSION" --features binary
fi

# 5. npm tools: wasm-opt (binaryen 132, which trunk accepts), the TodoMVC stylesheet and
#    s3rver (package.json pins each).
if [ -x node_modules/.bin/wasm-opt ] && node_modules/.bin/wasm-opt --version | grep -q 'version 132' \
   && [ -f node_modules/todomvc-app-css/index.css ] \
   && grep -q '"version": "3.7.1"' node_modules/s3rver/package.json 2>/dev/null; then
  log "npm tools: installed"
else
  log "installing npm tools (binaryen, todomvc-app-css, s3rver)"
  npm install --no-audit --no-fund --loglevel=error
fi

# 6. moto's server (S3, CloudFront, Lambda, API Gateway, DynamoDB) in a venv inside the repo.
if [ -x .venv/bin/moto_server ] && [ "$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("moto"))' 2>/dev/null)" = "$MOTO_VERSION" ]; then
  log "moto $MOTO_VERSION: installed"
else
  log "installing moto[server]==$MOTO_VERSION into .venv"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
fi

# 6b. cfn-lint for infra/template.yaml (scripts/test.sh runs it offline: its resource
#     specifications ship inside the package). moto[server] pulls some version; pin ours.
CFN_LINT_VERSION=1.58.0
if [ "$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("cfn-lint"))' 2>/dev/null)" = "$CFN_LINT_VERSION" ]; then
  log "cfn-lint $CFN_LINT_VERSION: installed"
else
  log "installing cfn-lint==$CFN_LINT_VERSION into .venv"
  .venv/bin/pip install --quiet --disable-pip-version-check "cfn-lint==$CFN_LINT_VERSION"
fi

# 7. A real browser and its WebDriver, from Debian (never a downloaded browser).
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  log "chromium + chromedriver: installed"
else
  log "installing Debian chromium and chromium-driver"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium chromium-driver >/dev/null
fi

# 8. The todo API's Lambda build (scripts/build-lambda.sh): the musl target and
#    musl-gcc, since aws-lc-sys compiles C for the static bootstrap.
if ! rustup target list --installed | grep -qx x86_64-unknown-linux-musl; then
  log "adding rust target x86_64-unknown-linux-musl"
  rustup target add x86_64-unknown-linux-musl
fi
if command -v musl-gcc >/dev/null 2>&1; then
  log "musl-tools: installed"
else
  log "installing musl-tools (musl-gcc, for the Lambda build)"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq musl-tools >/dev/null
fi

log "ready"
