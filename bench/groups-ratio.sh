#!/usr/bin/env bash
# Issue 7's target "64 groups deliver at least the throughput of 1 group", measured the only
# way this shared machine allows: alternated runs of `flotilla bench` (a local 3-node cluster,
# puts of 256 B) on 64 ranges and on 1 range, several rounds, then the medians and the ratio of
# each round. One pair of runs proves nothing here: the same binary swings up to 2x between runs.
#
#   bench/groups-ratio.sh BINARY [ROUNDS] [CLIENTS] [SECONDS]     (defaults: 4, 64, 5)
#   e.g. bench/groups-ratio.sh target/release/flotilla 4 256
#
# Each run's JSON (`flotilla bench --json`) is kept in a temporary directory that is removed at
# the end; the script prints one line per run and a summary.
set -euo pipefail

BIN=$(realpath "$1")
ROUNDS=${2:-4}
CLIENTS=${3:-64}
SECONDS_PER_RUN=${4:-5}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

for round in $(seq "$ROUNDS"); do
    for groups in 64 1; do
        json="$OUT/round-$round-groups-$groups.json"
        "$BIN" bench --clients "$CLIENTS" --groups "$groups" --seconds "$SECONDS_PER_RUN" \
            --value-size 256 --read-percent 0 --cas-percent 0 --json "$json" >/dev/null 2>&1
        python3 - "$json" "$round" "$groups" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))["runs"][0]
ranges = "64 ranges" if sys.argv[3] == "64" else " 1 range "
print(f"round {sys.argv[2]}, {ranges}: {run['ops_per_second']:8.0f} puts/s, "
      f"p99 {run['latency_us']['p99'] / 1000:.1f} ms, "
      f"{run['entries_per_fsync']:.1f} entries per fsync, errors {run['errors'] or 'none'}")
PY
    done
done

python3 - "$OUT" "$ROUNDS" "$CLIENTS" <<'PY'
import json, statistics, sys
out, rounds, clients = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def rate(round_, groups):
    return json.load(open(f"{out}/round-{round_}-groups-{groups}.json"))["runs"][0]["ops_per_second"]
many = [rate(r, 64) for r in range(1, rounds + 1)]
one = [rate(r, 1) for r in range(1, rounds + 1)]
print(f"{clients} clients, {rounds} alternated rounds: 64 ranges median {statistics.median(many):.0f} "
      f"puts/s, 1 range median {statistics.median(one):.0f} puts/s, "
      f"ratio of medians {statistics.median(many) / statistics.median(one):.2f}x; per round "
      + ", ".join(f"{m / o:.2f}" for m, o in zip(many, one)))
PY
