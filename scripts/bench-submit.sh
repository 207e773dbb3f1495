#!/usr/bin/env bash
# Starts a release trio of `raftsched server` processes on loopback (data in a temp dir), measures
# the disk's fsync latency and durable submit throughput at each concurrency, then stops the trio.
# Usage: scripts/bench-submit.sh [DURATION_S] [CONCURRENCY...]   (defaults: 10 s; 1 16 64)
set -euo pipefail
cd "$(dirname "$0")/.."
duration_s="${1:-10}"
if [ "$#" -gt 1 ]; then shift; concurrencies=("$@"); else concurrencies=(1 16 64); fi

cargo build --release -j2 -p raftsched >&2
bin=target/release/raftsched
dir=$(mktemp -d /tmp/raftsched-bench-XXXXXX)
base=$((20000 + RANDOM % 20000))
initial="1=127.0.0.1:$base,2=127.0.0.1:$((base + 1)),3=127.0.0.1:$((base + 2))"
cluster="127.0.0.1:$base,127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2))"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
. scripts/peer-args.sh
flags=$(peer_args "$bin" "$dir") # once: three replicas making the secret at once would race
for id in 1 2 3; do
    # shellcheck disable=SC2086 # word splitting of the flags is meant
    RAFTSCHED_LOG=warn "$bin" server --id "$id" --listen "127.0.0.1:$((base + id - 1))" \
        --data-dir "$dir/r$id" --initial-cluster "$initial" $flags 2>"$dir/r$id.log" &
    pids+=($!)
done
# Wait (bounded) until the trio has a leader.
for _ in $(seq 1 300); do
    "$bin" cluster status --json --cluster "$cluster" --timeout 1s 2>/dev/null | grep -q '"leader":[0-9]' && break
    sleep 0.1
done
"$bin" bench fsync --dir "$dir"
for c in "${concurrencies[@]}"; do
    "$bin" bench submit --cluster "$cluster" --concurrency "$c" --duration-s "$duration_s" --payload-bytes 256
done
