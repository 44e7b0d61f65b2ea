#!/usr/bin/env bash
# Where the machine's time goes per put: runs `flotilla bench` (a local 3-node cluster) for 12 s
# and, over 4 s in the middle, measures
#   - CPU microseconds per put by kind of thread (load generator, nodes' network threads, Raft
#     loops), from /proc/<pid>/task/*/stat;
#   - with `perf` installed: system calls and context switches per put, load generator and
#     nodes apart (`perf stat`);
#   - per node, from its status: the share of time its Raft loop is busy and blocked in log
#     writes, fsyncs per second, the time per write and the entries each fsync carries.
#
#   bench/cost-per-put.sh BINARY CLIENTS [flotilla bench flags...]
#   e.g. bench/cost-per-put.sh target/release/flotilla 64 --groups 64
#
# Set TMPDIR=/dev/shm to put the nodes' data on tmpfs (fdatasync then costs nothing). Compare
# binaries or flags by alternating runs: the machine's state moves these figures by ±20 %.
set -euo pipefail

BIN=$(realpath "$1")
CLIENTS=$2
shift 2
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

timeout 90 "$BIN" bench --clients "$CLIENTS" --seconds 12 "$@" >"$OUT/bench.txt" 2>&1 &
TIMEOUT=$!
sleep 5
BENCH=$(pgrep -f "^$BIN bench" | head -1)
NODES=$(pgrep -f "^$BIN server" | tr '\n' ' ')
if [ -z "$NODES" ]; then
    echo "no flotilla server processes found; is BINARY the one bench runs?" >&2
    exit 1
fi

# pid, thread name, utime + stime in clock ticks, for every thread of the generator and nodes.
threads() {
    for pid in $BENCH $NODES; do
        for task in /proc/"$pid"/task/*; do
            name=$(tr ' ' _ <"$task/comm" 2>/dev/null) || continue
            ticks=$(awk '{print $14 + $15}' "$task/stat" 2>/dev/null) || continue
            echo "$pid $name $ticks"
        done
    done
}

# Each node's status (JSON), for its Raft loop's time in log writes; the local cluster's
# certificates and cluster id are on the servers' command lines.
ARGS=$(ps -o args= -p "${NODES%% *}")
ENDPOINTS=$(grep -oP -- '--initial-cluster \K\S+' <<<"$ARGS")
TLS_DIR=$(grep -oP -- '--tls-dir \K\S+' <<<"$ARGS")
CLUSTER=$(grep -oP -- '--cluster-id \K\S+' <<<"$ARGS")
status() {
    "$BIN" status --json --endpoints "$ENDPOINTS" --tls-dir "$TLS_DIR" --cluster-id "$CLUSTER" \
        --name demo >"$1" 2>/dev/null || rm -f "$1"
}

EVENTS=syscalls:sys_enter_sendmsg,syscalls:sys_enter_recvmmsg,syscalls:sys_enter_futex,syscalls:sys_enter_epoll_wait,context-switches
status "$OUT/status-before.json"
threads >"$OUT/before.txt"
if command -v perf >/dev/null; then
    perf stat -x, -e "$EVENTS" -p "$BENCH" -- sleep 4 2>"$OUT/perf-generator.txt" &
    PERF=$!
    perf stat -x, -e "$EVENTS" -p "$(echo $NODES | tr ' ' ,)" -- sleep 4 2>"$OUT/perf-nodes.txt"
    wait "$PERF" || true
else
    sleep 4
fi
threads >"$OUT/after.txt"
status "$OUT/status-after.json"
wait "$TIMEOUT" || true

RATE=$(grep -oP '= \K[0-9]+(?= ops/s)' "$OUT/bench.txt" | tail -1)
echo "clients $CLIENTS $*: $RATE puts/s"
python3 - "$RATE" "$BENCH" "$(getconf CLK_TCK)" "$OUT" <<'PY'
import collections, json, os, sys
rate, generator, hz, out = float(sys.argv[1]), sys.argv[2], float(sys.argv[3]), sys.argv[4]
puts = rate * 4

def kinds(path):
    total = collections.Counter()
    for line in open(path):
        pid, name, ticks = line.split()
        if pid == generator:
            kind = "load generator"
        elif name.startswith("flotilla-raft"):
            kind = "Raft loops"
        elif name.startswith("flotilla-net"):
            kind = "network threads"
        else:
            kind = "other node threads"
        total[kind] += int(ticks)
    return total

before, after = kinds(f"{out}/before.txt"), kinds(f"{out}/after.txt")
costs = {kind: (after[kind] - before[kind]) / hz * 1e6 / puts for kind in after}
print("  CPU µs per put: " + ", ".join(f"{kind} {cost:.1f}" for kind, cost in sorted(costs.items()))
      + f"; total {sum(costs.values()):.1f}")
for side in ("generator", "nodes"):
    path = f"{out}/perf-{side}.txt"
    if not os.path.exists(path):
        continue
    counts = []
    for line in open(path):
        fields = line.split(",")
        if len(fields) > 2 and fields[0].replace(".", "").isdigit():
            counts.append(f"{fields[2].split(':')[-1].replace('sys_enter_', '')} {float(fields[0]) / puts:.2f}")
    print(f"  per put, {side}: " + ", ".join(counts))

# The Raft loops' wall time between the two status reads: busy (a turn in progress) and, of
# that, blocked in the log write (encode, write, fdatasync).
if os.path.exists(f"{out}/status-before.json") and os.path.exists(f"{out}/status-after.json"):
    before = {n["node"]: n for n in json.load(open(f"{out}/status-before.json"))["nodes"]}
    after = {n["node"]: n for n in json.load(open(f"{out}/status-after.json"))["nodes"]}
    for node in sorted(after):
        if node not in before:
            continue
        d = {k: after[node][k] - before[node][k]
             for k in ("uptime_micros", "busy_micros", "write_micros", "fsyncs", "entries_persisted")}
        wall, fsyncs = max(d["uptime_micros"], 1), max(d["fsyncs"], 1)
        print(f"  node {node} Raft loop: busy {100 * d['busy_micros'] / wall:.0f} % of the time,"
              f" in log writes {100 * d['write_micros'] / wall:.0f} %;"
              f" {1e6 * d['fsyncs'] / wall:.0f} fsyncs/s, {d['write_micros'] / fsyncs:.0f} µs per write,"
              f" {d['entries_persisted'] / fsyncs:.1f} entries per fsync")
PY
