#!/usr/bin/env bash
# Issue 20's benchmark: a hot key range (zipfian over keys in order, `--key-order ordered`: the
# hottest keys are neighbours, so they fall in one range) on a local 3-node cluster, puts of
# 256 B, measured two ways with `flotilla bench --report-every`:
#
#  (a) one run from 1 range with load splits on (`--split-load-rps`), in intervals of 0.5 s:
#      the throughput before the first split, of the intervals with no split in or beside them
#      against the others, and of the last third of the run, with the ranges and the ranges
#      each node leads;
#  (b) alternated runs, several rounds: from 1 range with load splits on ("auto"), pre-split
#      into 64 ranges with no automatic split ("pre64"), and 1 range with no split ("one", the
#      control), then the medians and the ratio of each round, over the whole run and over its
#      last third (after the auto run's splits have mostly happened). One pair of runs proves
#      nothing on a shared machine: the same binary swings up to 2x between runs.
#
#   bench/split-gain.sh BINARY [ROUNDS] [CLIENTS] [SECONDS] [SPLIT_LOAD_RPS] [OUT]
#   (defaults: 4 rounds, 128 clients, 30 s for run (a) and 20 s for each run of (b), 2000)
#   e.g. bench/split-gain.sh target/release/flotilla 4 128 30 2000
#
# KEY_ORDER=hashed runs the same with hashed keys (the hot keys scattered over every range);
# SECONDS_PER_RUN sets the length of each run of (b).
# Each run's JSON and output go to OUT, a new or empty folder (default: a new temporary one),
# which is kept and named at the end; nothing else is written.
set -euo pipefail

HERE=$(dirname "$(realpath "$0")")
BIN=$(realpath "$1")
ROUNDS=${2:-4}
CLIENTS=${3:-128}
SECONDS_SPLIT_RUN=${4:-30}
SPLIT_LOAD_RPS=${5:-2000}
OUT=${6:-$(mktemp -d -t split-gain-XXXXXX)}
KEY_ORDER=${KEY_ORDER:-ordered}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-$(( SECONDS_SPLIT_RUN * 2 / 3 ))}
if [ -e "$OUT" ] && [ -n "$(ls -A "$OUT")" ]; then
    echo "split-gain: $OUT is not empty; give a new or empty folder" >&2
    exit 2
fi
mkdir -p "$OUT"

workload=(--distribution zipfian --key-order "$KEY_ORDER" --value-size 256 --read-percent 0
    --cas-percent 0 --clients "$CLIENTS")

echo "(a) one run from 1 range, split_load_rps $SPLIT_LOAD_RPS, $CLIENTS clients," \
    "$SECONDS_SPLIT_RUN s, $KEY_ORDER keys, intervals of 0.5 s:"
"$BIN" bench "${workload[@]}" --groups 1 --split-load-rps "$SPLIT_LOAD_RPS" \
    --seconds "$SECONDS_SPLIT_RUN" --report-every 0.5 --json "$OUT/split-run.json" \
    >"$OUT/split-run.txt" 2>&1
python3 "$HERE/split-gain.py" split-run "$OUT/split-run.json"

echo "(b) $ROUNDS alternated rounds, $SECONDS_PER_RUN s each, intervals of 2 s:"
for round in $(seq "$ROUNDS"); do
    for arm in auto pre64 one; do
        case $arm in
            auto) cluster=(--groups 1 --split-load-rps "$SPLIT_LOAD_RPS") ;;
            pre64) cluster=(--groups 64) ;;
            one) cluster=(--groups 1) ;;
        esac
        json="$OUT/round-$round-$arm.json"
        "$BIN" bench "${workload[@]}" "${cluster[@]}" --seconds "$SECONDS_PER_RUN" \
            --report-every 2 --json "$json" >"$OUT/round-$round-$arm.txt" 2>&1
        python3 "$HERE/split-gain.py" run "$json" "$round" "$arm"
    done
done

python3 "$HERE/split-gain.py" summary "$OUT" "$ROUNDS" "$CLIENTS"
echo "runs and their output: $OUT"
