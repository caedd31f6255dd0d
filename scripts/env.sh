# Sourced by the scripts: puts the project's tools on PATH (cargo-installed trunk,
# wasm-bindgen and s3s-fs; npm's wasm-opt; the repo's moto venv).
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$HOME/.cargo/bin:$root/node_modules/.bin:$root/.venv/bin:$PATH"
