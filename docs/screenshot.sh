#!/usr/bin/env bash
# Takes docs/img/status-page.png: starts `flotilla demo` (a local cluster with --http-listen on
# every node, under a workload), loads node 1's status page in headless Chromium while the
# workload runs, saves the picture, and lets the demo finish and stop its nodes.
#
#   docs/screenshot.sh                 # builds the binary (dev profile) first
#   FLOTILLA_BIN=path/to/flotilla docs/screenshot.sh
#
# Needs Chromium (Debian: apt-get install chromium). Run from anywhere in the repository.
set -euo pipefail
cd "$(dirname "$0")/.."

out=docs/img/status-page.png
# The workload runs this long; the picture is taken after `settle` seconds of it, so the rate
# line has points and every range has its leader.
seconds=24
settle=12

browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
  echo "no Chromium found: apt-get install chromium" >&2
  exit 1
fi
if [ -z "${FLOTILLA_BIN:-}" ]; then
  cargo build -p flotilla-node --locked --quiet
  FLOTILLA_BIN="${CARGO_TARGET_DIR:-target}/debug/flotilla"
fi

log=$(mktemp)
profile=$(mktemp -d)
"$FLOTILLA_BIN" demo --seconds "$seconds" --clients 16 >"$log" 2>&1 &
demo=$!
cleanup() {
  # The demo stops its own nodes when its workload ends; only an early exit needs this.
  if kill -0 "$demo" 2>/dev/null; then kill "$demo"; fi
  rm -rf "$log" "$profile"
}
trap cleanup EXIT

# `flotilla demo` prints "  node 1: http://127.0.0.1:PORT/metrics ..." once its nodes listen.
url=""
for _ in $(seq 1 300); do
  url=$(sed -n 's|^  node 1: \(http://[0-9.:]*\)/metrics.*|\1/|p' "$log")
  [ -n "$url" ] && break
  kill -0 "$demo" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "the demo printed no HTTP address" >&2; cat "$log" >&2; exit 1; }
# Wait for the workload line, then for the rate line to fill.
for _ in $(seq 1 600); do
  grep -q '^workload:' "$log" && break
  sleep 0.1
done
sleep "$settle"
# A node copies its range map only for a page that was viewed: view it once, then take the
# picture after the next publication.
if command -v curl >/dev/null; then
  curl -s -o /dev/null "$url"
else
  "$browser" --headless --no-sandbox --user-data-dir="$profile" --dump-dom "$url" >/dev/null 2>&1
fi
sleep 1

mkdir -p "$(dirname "$out")"
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars \
  --user-data-dir="$profile" --window-size=1000,1150 \
  --screenshot="$out" "$url" 2>/dev/null
echo "saved $out from $url"
wait "$demo"
