#!/usr/bin/env bash
# What one durable submit costs at low concurrency, counted per write on each replica: CPU time,
# context switches (voluntary ones are hand-offs: a thread parks until another wakes it), system
# calls by name (strace -c over a window of the run), Raft RPCs received and disk syncs. Issue 18's
# "count per write" list; docs/benchmarks.md records its output.
#
# Usage: scripts/write-path-counts.sh [CONCURRENCY (1)] [DURATION_S (10)]
#   Runs a release trio of this checkout on loopback (data in a temp dir under /var/tmp), submits
#   to the leader (the client follows the leader hint) at CONCURRENCY for DURATION_S, and samples
#   /proc and /metrics before and after. strace (installed from Debian when missing, as root)
#   attaches to the leader for 3 s in the middle: its counts are per submit acknowledged in that
#   window (strace slows the process, so the rate in it is lower; the counts per write hold).
set -euo pipefail
cd "$(dirname "$0")/.."
concurrency=${1:-1}
duration_s=${2:-10}
. scripts/peer-args.sh

if ! command -v strace >/dev/null; then
    [ "$(id -u)" = 0 ] || { echo "strace is missing; install it (apt-get install strace)" >&2; exit 2; }
    apt-get install -y -qq strace >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq strace >/dev/null; }
fi
cargo build --release -j2 -q -p raftsched
bin=target/release/raftsched
dir=$(mktemp -d /var/tmp/raftsched-counts-XXXXXX)
base=$((20000 + RANDOM % 12000))
initial="1=127.0.0.1:$base,2=127.0.0.1:$((base + 1)),3=127.0.0.1:$((base + 2))"
cluster="127.0.0.1:$base,127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2))"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
flags=$(peer_args "$bin" "$dir")
for id in 1 2 3; do
    # shellcheck disable=SC2086 # word splitting of the flags is meant
    RAFTSCHED_LOG=warn "$bin" server --id "$id" --listen "127.0.0.1:$((base + id - 1))" \
        --http "127.0.0.1:$((base + 9 + id))" --data-dir "$dir/r$id" --initial-cluster "$initial" \
        --tasks-pending-max 1000000 $flags 2>"$dir/r$id.log" &
    pids+=($!)
done
leader=""
for _ in $(seq 1 300); do
    leader=$("$bin" cluster status --json --cluster "$cluster" --timeout 1s 2>/dev/null | grep -o '"leader":[0-9]*' | cut -d: -f2 || true)
    [ -n "$leader" ] && break
    sleep 0.1
done
[ -n "$leader" ] || { echo "no leader" >&2; exit 2; }
sleep 6 # the cluster version is raised a few seconds after start: measure in the format it runs

# Per replica: CPU ticks, voluntary and involuntary context switches summed over its threads.
sample() { # pid -> "ticks voluntary involuntary"
    local pid=$1 ticks v=0 n=0 t
    ticks=$(sed 's/^.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')
    for t in /proc/"$pid"/task/*/status; do
        v=$((v + $(awk '/^voluntary_ctxt_switches/ {print $2}' "$t" 2>/dev/null || echo 0)))
        n=$((n + $(awk '/^nonvoluntary_ctxt_switches/ {print $2}' "$t" 2>/dev/null || echo 0)))
    done
    echo "$ticks $v $n"
}
metric() { # id, series -> value (0 when absent)
    curl -s "127.0.0.1:$((base + 9 + $1))/metrics" | awk -v s="$2" '$1 == s {print $2; found=1} END {if (!found) print 0}'
}
declare -A before
for id in 1 2 3; do
    before[$id]="$(sample "${pids[$((id - 1))]}") $(metric "$id" raftsched_disk_sync_seconds_count)"
done
entries0=$(metric "$leader" raftsched_raft_log_entries)
"$bin" bench submit --cluster "127.0.0.1:$((base + leader - 1))" --concurrency "$concurrency" \
    --duration-s "$duration_s" --payload-bytes 256 --json >"$dir/bench.json"
entries1=$(metric "$leader" raftsched_raft_log_entries)
declare -A after
for id in 1 2 3; do
    after[$id]="$(sample "${pids[$((id - 1))]}") $(metric "$id" raftsched_disk_sync_seconds_count)"
    curl -s "127.0.0.1:$((base + 9 + id))/metrics" | grep '^raftsched_request_duration_seconds_count{rpc="Raft/' \
        | sed "s/^/$id /" >>"$dir/rpcs" || true
done
# A second, shorter run with strace on the leader (it slows the process: kept out of the figures above).
"$bin" bench submit --cluster "127.0.0.1:$((base + leader - 1))" --concurrency "$concurrency" \
    --duration-s 5 --payload-bytes 256 --json >/dev/null &
bench=$!
sleep 1
acks0=$(metric "$leader" raftsched_proposals_total)
timeout -s INT 3 strace -c -f -p "${pids[$((leader - 1))]}" -o "$dir/strace" 2>/dev/null || true
acks1=$(metric "$leader" raftsched_proposals_total)
wait "$bench"
writes=$(grep -o '"ops":[0-9]*' "$dir/bench.json" | cut -d: -f2)
hz=$(getconf CLK_TCK)

echo "write-path counts: concurrency $concurrency, $duration_s s, $(date -u +%Y-%m-%d), $(nproc) cores"
echo "bench: $(cat "$dir/bench.json")"
echo "$writes submits in $((entries1 - entries0)) log entries ($(awk -v w="$writes" -v e="$((entries1 - entries0))" 'BEGIN{printf "%.2f", w / (e > 0 ? e : 1)}') per entry)"
echo
printf "| %-9s | %12s | %16s | %18s | %14s |\n" replica "CPU us/write" "hand-offs/write" "involuntary/write" "syncs/write"
printf "|%s|\n" "-----------|--------------|------------------|--------------------|---------------"
for id in 1 2 3; do
    read -r t0 v0 n0 s0 <<<"${before[$id]}"
    read -r t1 v1 n1 s1 <<<"${after[$id]}"
    role=follower
    [ "$id" = "$leader" ] && role=leader
    awk -v r="$id ($role)" -v w="$writes" -v hz="$hz" -v t="$((t1 - t0))" -v v="$((v1 - v0))" -v n="$((n1 - n0))" -v s="$((s1 - s0))" \
        'BEGIN { printf "| %-9s | %12.0f | %16.1f | %18.2f | %14.2f |\n", r, t * 1e6 / hz / w, v / w, n / w, s / w }'
done
echo
echo "Raft RPCs received per write (from /metrics; the leader receives none at this load):"
awk -v w="$writes" '{ split($2, a, "\""); printf "  replica %s: %-22s %.2f\n", $1, a[2], $3 / w }' "$dir/rpcs"
acked=$((acks1 - acks0))
echo
echo "system calls of the leader per write (strace -c -f over 3 s, $acked submits acknowledged in it):"
awk -v w="$acked" 'NR > 2 && $1 ~ /^[0-9.]+$/ && $NF != "total" {
        printf "  %-20s %8.2f\n", $NF, $4 / (w > 0 ? w : 1) }' "$dir/strace" \
    | sort -k2 -n -r | head -15
