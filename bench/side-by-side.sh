#!/usr/bin/env bash
# Side by side with etcd: the same put workload (256-byte values, the same client counts, the
# same duration) against Flotilla (3 nodes on loopback) and then etcd (3 members on loopback),
# then the plots and the Markdown table for docs/benchmarks.md.
#
#   bench/side-by-side.sh [--update-docs] [SECONDS_PER_RUN] [OUTPUT_DIR]
#                                                   (defaults: 10, target/side-by-side)
#
# Everything a run makes goes to OUTPUT_DIR: machine.txt, the results (*.json), table.md and the
# two plots (*.svg). --update-docs also copies the plots over the tracked ones in docs/img/, for
# a run whose figures docs/benchmarks.md is about to quote; without it the docs are left alone.
#
# Environment: CLIENTS (default 1,16,64,256), ETCD_PORT_BASE (default 23790: clients on
# BASE+1..3, peers on BASE+11..13), GROUPS_CHECK=1 to also compare 1 and 64 groups at 64 clients.
# Installs Debian's etcd-server and protobuf-compiler if missing, and libprotobuf-dev if protoc
# cannot find google/protobuf/descriptor.proto (etcd-client's protos import it, and
# --no-install-recommends leaves it out). Every process it starts is stopped by its PID when it
# exits, and the etcd data directory is removed.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    echo "usage: bench/side-by-side.sh [--update-docs] [SECONDS_PER_RUN] [OUTPUT_DIR]" >&2
    exit 2
}

UPDATE_DOCS=0
positional=()
for arg in "$@"; do
    case "$arg" in
        --update-docs) UPDATE_DOCS=1 ;;
        -*) echo "side-by-side.sh: unknown option $arg" >&2; usage ;;
        *) positional+=("$arg") ;;
    esac
done
((${#positional[@]} <= 2)) || { echo "side-by-side.sh: at most two arguments" >&2; usage; }
SECONDS_PER_RUN=${positional[0]:-10}
OUT=${positional[1]:-target/side-by-side}
[[ "$SECONDS_PER_RUN" =~ ^[1-9][0-9]*$ ]] ||
    { echo "side-by-side.sh: SECONDS_PER_RUN must be a whole number of seconds above 0, not '$SECONDS_PER_RUN'" >&2; usage; }
CLIENTS=${CLIENTS:-1,16,64,256}
VALUE_SIZE=256
PORT_BASE=${ETCD_PORT_BASE:-23790}
TARGET=${CARGO_TARGET_DIR:-target}
mkdir -p "$OUT"

PIDS=()
ETCD_DIR=""
stop_all() {
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
    if [[ -n "$ETCD_DIR" ]]; then
        rm -rf "$ETCD_DIR"
    fi
}
trap stop_all EXIT

# Runs a command in the background, remembers its PID, and waits for it.
run_tracked() {
    "$@" &
    local pid=$!
    PIDS+=("$pid")
    wait "$pid"
    forget "$pid"
}

forget() {
    local kept=() pid
    for pid in "${PIDS[@]}"; do
        [[ "$pid" == "$1" ]] || kept+=("$pid")
    done
    PIDS=("${kept[@]}")
}

# Whether protoc resolves google/protobuf/descriptor.proto, which etcd-client's protos import.
# Debian ships it in libprotobuf-dev, only recommended by protobuf-compiler.
protoc_finds_descriptor() {
    local dir status=0
    dir=$(mktemp -d -t flotilla-protoc-XXXXXX)
    printf 'syntax = "proto3";\nimport "google/protobuf/descriptor.proto";\n' >"$dir/probe.proto"
    protoc --proto_path="$dir" --descriptor_set_out=/dev/null "$dir/probe.proto" >/dev/null 2>&1 || status=$?
    rm -rf "$dir"
    return "$status"
}

install_missing() {
    local packages=()
    command -v etcd >/dev/null || packages+=(etcd-server)
    if ! command -v protoc >/dev/null; then
        packages+=(protobuf-compiler libprotobuf-dev)
    elif ! protoc_finds_descriptor; then
        packages+=(libprotobuf-dev)
    fi
    if ((${#packages[@]})); then
        local sudo=""
        ((EUID == 0)) || sudo=sudo
        $sudo apt-get update
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${packages[@]}"
    fi
}

describe_machine() {
    {
        echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "cpu: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
        echo "memory: $(free -g | awk '/Mem:/ {print $2}') GiB"
        echo "disk: $(df -h "$TARGET" | awk 'NR == 2 {print $1}')"
        echo "kernel: $(uname -r)"
        echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
        echo "etcd: $(etcd --version | head -1)"
        echo "flotilla: $(git rev-parse --short HEAD)"
    } | tee "$OUT/machine.txt"
}

run_flotilla() {
    echo "== Flotilla: 3 nodes on loopback (started by flotilla bench), ${SECONDS_PER_RUN} s per run"
    run_tracked "$TARGET/release/flotilla" bench --clients "$CLIENTS" --seconds "$SECONDS_PER_RUN" \
        --value-size "$VALUE_SIZE" --read-percent 0 --cas-percent 0 --json "$OUT/flotilla.json"
    if [[ "${GROUPS_CHECK:-0}" == 1 ]]; then
        for groups in 1 64; do
            echo "== Flotilla: $groups groups, 64 clients"
            run_tracked "$TARGET/release/flotilla" bench --groups "$groups" --clients 64 \
                --seconds "$SECONDS_PER_RUN" --value-size "$VALUE_SIZE" --read-percent 0 \
                --cas-percent 0 --json "$OUT/flotilla-groups-$groups.json"
        done
    fi
}

start_etcd() {
    ETCD_DIR=$(mktemp -d -t flotilla-etcd-XXXXXX)
    local cluster="" member
    for member in 1 2 3; do
        cluster+="${cluster:+,}m$member=http://127.0.0.1:$((PORT_BASE + 10 + member))"
    done
    for member in 1 2 3; do
        local client_url="http://127.0.0.1:$((PORT_BASE + member))"
        local peer_url="http://127.0.0.1:$((PORT_BASE + 10 + member))"
        etcd --name "m$member" --data-dir "$ETCD_DIR/m$member" \
            --listen-client-urls "$client_url" --advertise-client-urls "$client_url" \
            --listen-peer-urls "$peer_url" --initial-advertise-peer-urls "$peer_url" \
            --initial-cluster "$cluster" --initial-cluster-state new \
            --initial-cluster-token flotilla-side-by-side \
            >"$ETCD_DIR/m$member.log" 2>&1 &
        PIDS+=("$!")
    done
    for member in 1 2 3; do
        local tries=0
        until curl -sf "http://127.0.0.1:$((PORT_BASE + member))/health" | grep -q '"health":"true"'; do
            ((++tries < 100)) || { echo "etcd m$member did not become healthy"; tail "$ETCD_DIR/m$member.log"; exit 1; }
            sleep 0.2
        done
    done
}

run_etcd() {
    echo "== etcd: 3 members on loopback, data in a temporary directory, ${SECONDS_PER_RUN} s per run"
    start_etcd
    local endpoints
    endpoints=$(for member in 1 2 3; do printf 'http://127.0.0.1:%d,' $((PORT_BASE + member)); done)
    run_tracked "$TARGET/release/etcd_load" --endpoints "${endpoints%,}" --clients "$CLIENTS" \
        --seconds "$SECONDS_PER_RUN" --value-size "$VALUE_SIZE" --json "$OUT/etcd.json"
    stop_all
}

install_missing
cargo build --release -p flotilla-node
cargo build --release -p flotilla-bench --features etcd --bins
describe_machine
run_flotilla
run_etcd
"$TARGET/release/plot" --flotilla "$OUT/flotilla.json" --etcd "$OUT/etcd.json" --out-dir "$OUT" |
    tee "$OUT/table.md"
if ((UPDATE_DOCS)); then
    cp "$OUT/throughput-vs-clients.svg" "$OUT/p99-vs-clients.svg" docs/img/
    echo "== plots copied to docs/img/"
else
    echo "== plots in $OUT/ (docs/img/ left alone; --update-docs replaces them)"
fi
