#!/usr/bin/env bash
# A/B of the write path between two raftsched builds: durable submits (256-byte payloads) against a
# fresh trio of build A, then of build B, alternating which goes first each round, at each
# concurrency; prints every pair's ratio and the median of each side. Same client (this checkout's
# release build) for both, data on the same disk, the same settling time after start (SETTLE_S, 6 s:
# a build with record formats raises its cluster version within it), nothing else changed.
#
# Usage: scripts/bench-ab.sh BIN_A BIN_B [ROUNDS (3)] [DURATION_S (10)] [CONCURRENCY... (1 16 64 256)]
#   e.g. scripts/bench-ab.sh "$(scripts/old-build.sh --release)" target/release/raftsched
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$#" -ge 2 ] || { echo "usage: $0 BIN_A BIN_B [ROUNDS] [DURATION_S] [CONCURRENCY...]" >&2; exit 2; }
bin_a=$1 bin_b=$2
rounds=${3:-3}
duration_s=${4:-10}
if [ "$#" -gt 4 ]; then shift 4; concurrencies=("$@"); else concurrencies=(1 16 64 256); fi
cargo build --release -j2 -q -p raftsched >&2
client=target/release/raftsched
. scripts/peer-args.sh
dir=$(mktemp -d /var/tmp/raftsched-ab-XXXXXX)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT

run_one() { # bin, concurrency -> "ops_per_s p99_ms"
    # Below Linux's ephemeral range (32768-60999), so no outgoing connection holds one of them.
    local bin=$1 c=$2 base=$((20000 + RANDOM % 12000))
    local initial="1=127.0.0.1:$base,2=127.0.0.1:$((base + 1)),3=127.0.0.1:$((base + 2))"
    local cluster="127.0.0.1:$base,127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2))"
    pids=()
    local flags
    flags=$(peer_args "$bin" "$dir") # once: three replicas making the secret at once would race
    for id in 1 2 3; do
        # shellcheck disable=SC2086 # word splitting of the flags is meant
        RAFTSCHED_LOG=warn "$bin" server --id "$id" --listen "127.0.0.1:$((base + id - 1))" \
            --data-dir "$dir/r$id" --initial-cluster "$initial" $flags 2>>"$dir/r$id.log" &
        pids+=($!)
    done
    local want='"leader":[0-9]'
    # A build with record formats: measure once the cluster version is raised (a few seconds).
    if "$bin" --version | grep -q "reads formats"; then want='"cluster_version":[1-9]'; fi
    local started=$SECONDS
    for _ in $(seq 1 300); do
        "$client" cluster status --json --cluster "$cluster" --timeout 1s 2>/dev/null | grep -q "$want" && break
        sleep 0.1
    done
    # The same settling time for both sides, whatever each waited for above.
    while [ $((SECONDS - started)) -lt "${SETTLE_S:-6}" ]; do sleep 0.2; done
    local out
    out=$("$client" bench submit --cluster "$cluster" --concurrency "$c" --duration-s "$duration_s" \
        --payload-bytes 256 --json 2>>"$dir/bench.err") || echo "run failed: $(tail -1 "$dir/bench.err")" >&2
    kill "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
    rm -rf "$dir"/r1 "$dir"/r2 "$dir"/r3
    local ops p99
    ops=$(echo "$out" | grep -o '"ops_per_s":[0-9.e+-]*' | cut -d: -f2)
    p99=$(echo "$out" | grep -o '"p99_ms":[0-9.e+-]*' | cut -d: -f2)
    # A run with any failed submit counts as failed: its throughput is not the write path's.
    if ! echo "$out" | grep -q '"errors":0[,}]'; then
        echo "run with errors: $(echo "$out" | grep -o '"errors":[0-9]*')" >&2
        ops=0
    fi
    echo "${ops:-0} ${p99:-0}"
}

echo "A: $("$bin_a" --version)"
echo "B: $("$bin_b" --version)"
echo "fdatasync: $("$client" bench fsync --dir "$dir" --json)"
echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), $rounds rounds x ${duration_s} s, $(nproc) cores"
printf "| %5s | %5s | %10s | %10s | %9s | %9s | %7s |\n" C round "A ops/s" "B ops/s" "A p99" "B p99" "B/A"
for c in "${concurrencies[@]}"; do
    as=() bs=()
    for r in $(seq 1 "$rounds"); do
        if [ $((r % 2)) = 1 ]; then
            a=$(run_one "$bin_a" "$c"); b=$(run_one "$bin_b" "$c")
        else
            b=$(run_one "$bin_b" "$c"); a=$(run_one "$bin_a" "$c")
        fi
        read -r ao ap <<<"$a"; read -r bo bp <<<"$b"
        # A failed run (0) is shown but left out of the medians.
        if [ "${ao%.*}" != 0 ] && [ "${bo%.*}" != 0 ]; then as+=("$ao"); bs+=("$bo"); fi
        printf "| %5s | %5s | %10.0f | %10.0f | %6.1f ms | %6.1f ms | %7.3f |\n" "$c" "$r" "$ao" "$bo" "$ap" "$bp" \
            "$(awk -v a="$ao" -v b="$bo" 'BEGIN { print (a > 0 ? b / a : 0) }')"
    done
    ma=$(printf "%s\n" "${as[@]}" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
    mb=$(printf "%s\n" "${bs[@]}" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
    printf "| %5s | %5s | %10.0f | %10.0f | %9s | %9s | %7.3f |\n" "$c" median "$ma" "$mb" "" "" \
        "$(awk -v a="$ma" -v b="$mb" 'BEGIN { print (a > 0 ? b / a : 0) }')"
done
