#!/usr/bin/env bash
# Put throughput of two builds side by side: alternated runs of `flotilla bench` (each binary
# starts its own local 3-node cluster, 16 ranges, puts of 256 B values), A then B, several
# rounds, then each one's median and the ratio A/B of the medians and of each round. One pair
# of runs proves nothing on a shared machine: the same binary swings up to 2x between runs.
#
#   bench/ab-puts.sh BINARY_A BINARY_B [ROUNDS] [CLIENTS] [SECONDS]   (defaults: 4, 64, 5)
#   e.g. bench/ab-puts.sh target/release/flotilla /tmp/base/flotilla 6 256
#
# Each run's JSON (`flotilla bench --json`) is kept in a temporary directory that is removed at
# the end; the script prints one line per run and a summary.
set -euo pipefail

A=$(realpath "$1")
B=$(realpath "$2")
ROUNDS=${3:-4}
CLIENTS=${4:-64}
SECONDS_PER_RUN=${5:-5}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

for round in $(seq "$ROUNDS"); do
    for side in A B; do
        binary=$A
        [ "$side" = B ] && binary=$B
        json="$OUT/round-$round-$side.json"
        "$binary" bench --clients "$CLIENTS" --seconds "$SECONDS_PER_RUN" --value-size 256 \
            --read-percent 0 --cas-percent 0 --json "$json" >/dev/null 2>&1
        python3 - "$json" "$round" "$side" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))["runs"][0]
print(f"round {sys.argv[2]}, {sys.argv[3]}: {run['ops_per_second']:8.0f} puts/s, "
      f"p50 {run['latency_us']['p50'] / 1000:.2f} ms, p99 {run['latency_us']['p99'] / 1000:.1f} ms, "
      f"{run['entries_per_fsync']:.1f} entries per fsync, errors {run['errors'] or 'none'}")
PY
    done
done

python3 - "$OUT" "$ROUNDS" "$CLIENTS" <<'PY'
import json, statistics, sys
out, rounds, clients = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def rate(round_, side):
    return json.load(open(f"{out}/round-{round_}-{side}.json"))["runs"][0]["ops_per_second"]
a = [rate(r, "A") for r in range(1, rounds + 1)]
b = [rate(r, "B") for r in range(1, rounds + 1)]
print(f"{clients} clients, {rounds} alternated rounds: A median {statistics.median(a):.0f} puts/s, "
      f"B median {statistics.median(b):.0f} puts/s, ratio of medians "
      f"{statistics.median(a) / statistics.median(b):.2f}x; per round "
      + ", ".join(f"{x / y:.2f}" for x, y in zip(a, b)))
PY
