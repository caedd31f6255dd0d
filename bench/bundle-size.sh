#!/usr/bin/env bash
# The release bundle's size: wasm, js and css, raw and gzipped (-9), against the goal
# of wasm+js+css <= 100 KiB gzipped (issue #12). Builds with `trunk build --release` unless
# --no-build is given (then it measures dist/ as it is).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
if [ "${1:-}" != "--no-build" ]; then
  scripts/setup.sh >/dev/null
  trunk build --release >/dev/null
fi
[ -f dist/index.html ] || { echo "dist/ has no build; run without --no-build" >&2; exit 2; }

total_raw=0; total_gz=0
printf '| %-5s | %-42s | %10s | %10s |\n' kind file raw gzipped
printf '|-------|--------------------------------------------|------------|------------|\n'
for kind in wasm js css; do
  for f in dist/*."$kind"; do
    [ -e "$f" ] || continue
    raw=$(wc -c <"$f"); gz=$(gzip -9c "$f" | wc -c)
    total_raw=$((total_raw + raw)); total_gz=$((total_gz + gz))
    printf '| %-5s | %-42s | %10d | %10d |\n' "$kind" "$(basename "$f")" "$raw" "$gz"
  done
done
goal=$((100 * 1024))
printf '| %-5s | %-42s | %10d | %10d |\n' total "wasm+js+css" "$total_raw" "$total_gz"
if [ "$total_gz" -le "$goal" ]; then verdict="meets"; else verdict="MISSES"; fi
awk -v v="$verdict" -v g="$total_gz" 'BEGIN { printf "\n%s the goal: %.1f KiB gzipped (goal <= 100 KiB)\n", v, g / 1024 }'
