#!/usr/bin/env bash
# The no-fault soak of issue 17: a release trio of `raftsched server` processes on loopback (data in
# a temp dir, default settings), WORKERS workers running what is submitted, and `bench submit` at
# CONCURRENCY for DURATION_S; then it counts elections: the term after the run minus the term after
# the first leader was elected. A healthy trio under load elects nobody.
#
# Usage: scripts/soak-no-fault.sh      (about DURATION_S + 1 minute, plus a release build)
# Environment: DURATION_S (600), CONCURRENCY (64), WORKERS (2), SLOTS (16), KEEP_DIR (keep the
#   data and logs in this directory instead of a removed temp dir).
# Prints one JSON line {"elections":N,...} last; exit 0 when no election happened, 1 when one did,
# 2 when the set-up failed.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION_S=${DURATION_S:-600}
CONCURRENCY=${CONCURRENCY:-64}
WORKERS=${WORKERS:-2}
SLOTS=${SLOTS:-16}

die() { echo "soak-no-fault: $*" >&2; exit 2; }
cargo build --release -j2 -q -p raftsched || die "cargo build failed"
bin=target/release/raftsched
dir=${KEEP_DIR:-$(mktemp -d /tmp/raftsched-soak-XXXXXX)}
mkdir -p "$dir"
base=$((20000 + RANDOM % 20000))
initial="1=127.0.0.1:$base,2=127.0.0.1:$((base + 1)),3=127.0.0.1:$((base + 2))"
cluster="127.0.0.1:$base,127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2))"
pids=()
cleanup() {
    kill "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
    [ -n "${KEEP_DIR:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT INT TERM
. scripts/peer-args.sh
flags=$(peer_args "$bin" "$dir")
for id in 1 2 3; do
    # shellcheck disable=SC2086 # word splitting of the flags is meant
    "$bin" server --id "$id" --listen "127.0.0.1:$((base + id - 1))" \
        --data-dir "$dir/r$id" --initial-cluster "$initial" $flags >"$dir/r$id.log" 2>&1 &
    pids+=($!)
done
term() { # the highest term any replica reports (empty when none answers)
    "$bin" cluster status --json --cluster "$cluster" --timeout 2s 2>/dev/null \
        | grep -o '"term":[0-9]*' | cut -d: -f2 | sort -n | tail -1
}
for _ in $(seq 1 300); do
    "$bin" cluster status --json --cluster "$cluster" --timeout 1s 2>/dev/null | grep -q '"leader":[0-9]' && break
    sleep 0.1
done
for w in $(seq 1 "$WORKERS"); do
    "$bin" worker --id "soak-w$w" --cluster "$cluster" --slots "$SLOTS" >"$dir/w$w.log" 2>&1 &
    pids+=($!)
done
# The cluster version rises a few seconds after the start; let it, and the workers register.
sleep 5
term_before=$(term)
[ -n "$term_before" ] || die "no replica reports a term (logs in $dir)"
steal_before=$(awk '/^cpu /{print $9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
out=$("$bin" bench submit --cluster "$cluster" --concurrency "$CONCURRENCY" --duration-s "$DURATION_S" \
    --payload-bytes 256 --json)
steal_after=$(awk '/^cpu /{print $9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
term_after=$(term)
[ -n "$term_after" ] || die "no replica reports a term after the run (logs in $dir)"
steal_pct=$(echo "$steal_before $steal_after" | awk '{ d = $4 - $2; printf "%.1f", (d > 0 ? 100 * ($3 - $1) / d : 0) }')
campaigns=$(cat "$dir"/r*.log | grep -c "campaigning" || true)
elections=$((term_after - term_before))
echo "$out" >&2
echo "{\"elections\":$elections,\"term_before\":$term_before,\"term_after\":$term_after,\"campaign_log_lines\":$campaigns,\"steal_pct\":$steal_pct,\"duration_s\":$DURATION_S,\"concurrency\":$CONCURRENCY,\"workers\":$WORKERS,\"bench\":$out}"
[ "$elections" -eq 0 ]
