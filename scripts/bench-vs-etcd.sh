#!/usr/bin/env bash
# raftsched next to etcd, on this machine, in one run.
#
# Starts a 3-member etcd (Debian's etcd-server, installed if missing) and a raftsched trio on
# loopback, both with their data under one directory on the same disk, and runs the same load shape
# against each: durable writes of 256-byte payloads to distinct keys at concurrency 16, 64 and 256
# (etcd puts / raftsched submits), linearizable reads at concurrency 64, and raftsched's end-to-end
# dispatch through 8 workers. Prints a table with the ratios; docs/benchmarks.md records its output.
#
# Usage: scripts/bench-vs-etcd.sh            (as root to install etcd; about 5 minutes)
# Environment: DURATION_S (15), CONCURRENCIES ("1 16 64 256"), GET_CONCURRENCY (64), WORKERS (8),
#   WORK_DIR (a new directory under /var/tmp), ETCD_BASE_PORT (23790), RAFTSCHED_BASE_PORT (27010),
#   RS_BIN (run this raftsched binary's replicas instead of this checkout's release build, e.g. an
#   older build from `scripts/old-build.sh --release`, for a before/after comparison).
# Exit: 0 when every run completed without errors, 1 when one failed or had errors (its figure is
#   marked and no ratio is printed for it: a refused request is not a measured write), 2 when the
#   set-up failed.
# The replicas run with --tasks-pending-max 1000000 (when the build has it), so a 15 s phase without
# workers stays under the pending-task limit at any concurrency.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/peer-args.sh

DURATION_S=${DURATION_S:-15}
CONCURRENCIES=${CONCURRENCIES:-"1 16 64 256"}
GET_CONCURRENCY=${GET_CONCURRENCY:-64}
WORKERS=${WORKERS:-8}
PAYLOAD_BYTES=256
ETCD_CONNECTIONS=12
ETCD_BASE_PORT=${ETCD_BASE_PORT:-23790}
RAFTSCHED_BASE_PORT=${RAFTSCHED_BASE_PORT:-27010}
WORK_DIR=${WORK_DIR:-$(mktemp -d /var/tmp/bench-vs-etcd.XXXXXX)}
mkdir -p "$WORK_DIR"

die() { echo "bench-vs-etcd: $*" >&2; exit 2; }
say() { echo "bench-vs-etcd: $*" >&2; }

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK_DIR"
}
trap cleanup EXIT INT TERM

# 1. etcd, from Debian, if missing.
if ! command -v etcd >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || die "etcd is not installed; run as root to install Debian's etcd-server, or install it"
    say "installing etcd-server"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null \
        || die "apt-get install etcd-server failed"
fi
ETCD_VERSION=$(etcd --version 2>/dev/null | head -1 | awk '{print $3}')

# 2. Build raftsched and the etcd load generator (kept outside the workspace; protox, no protoc).
say "building (release)"
cargo build --release -j2 -q -p raftsched || die "cargo build -p raftsched failed"
(cd scripts/etcd-load && PROTOC=/nonexistent cargo build --release -j2 -q --target-dir ../../target) \
    || die "building scripts/etcd-load failed"
RS=target/release/raftsched
LOAD=target/release/etcd-load
# The replicas' binary; the load generators and the CLI are always this checkout's.
RS_SERVER=${RS_BIN:-$RS}

for port in $(seq "$ETCD_BASE_PORT" $((ETCD_BASE_PORT + 5))) $(seq "$RAFTSCHED_BASE_PORT" $((RAFTSCHED_BASE_PORT + 2))); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then die "port $port is in use (set ETCD_BASE_PORT / RAFTSCHED_BASE_PORT)"; fi
done

# 3. A 3-member etcd on loopback.
ETCD_PIDS=()
ETCD_CLUSTER=$(for i in 1 2 3; do echo "e$i=http://127.0.0.1:$((ETCD_BASE_PORT + 2 + i))"; done | paste -sd,)
ETCD_ENDPOINTS=$(for i in 1 2 3; do echo "127.0.0.1:$((ETCD_BASE_PORT + i - 1))"; done | paste -sd,)
for i in 1 2 3; do
    client=$((ETCD_BASE_PORT + i - 1)); peer=$((ETCD_BASE_PORT + 2 + i))
    etcd --name "e$i" --data-dir "$WORK_DIR/etcd$i" \
        --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
        --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
        --initial-cluster "$ETCD_CLUSTER" --initial-cluster-state new --initial-cluster-token bench-vs-etcd \
        --logger zap --log-level error >"$WORK_DIR/etcd$i.log" 2>&1 &
    PIDS+=($!)
    ETCD_PIDS+=($!)
done

# 4. A raftsched trio on loopback.
RS_INITIAL=$(for i in 1 2 3; do echo "$i=127.0.0.1:$((RAFTSCHED_BASE_PORT + i - 1))"; done | paste -sd,)
RS_CLUSTER=$(for i in 1 2 3; do echo "127.0.0.1:$((RAFTSCHED_BASE_PORT + i - 1))"; done | paste -sd,)
# A fresh trio for each phase: submitted tasks stay pending (no workers), and a later phase must not
# pay for (or be refused because of) an earlier phase's tasks.
RS_LIMIT_FLAGS=""
if "$RS_SERVER" server --help 2>/dev/null | grep -q -- "--tasks-pending-max"; then
    RS_LIMIT_FLAGS="--tasks-pending-max 1000000"
fi
# The newest format the replicas' build reads: the cluster version it runs at once raised.
RS_FORMAT_MAX=$("$RS_SERVER" --version | grep -o "reads formats [0-9]*..=[0-9]*" | grep -o "[0-9]*$" || true)
RS_PIDS=()
RS_GENERATION=0
start_raftsched() {
    RS_GENERATION=$((RS_GENERATION + 1))
    RS_PEER_FLAGS=$(peer_args "$RS_SERVER" "$WORK_DIR") # once, before the replicas start
    for i in 1 2 3; do
        # shellcheck disable=SC2086 # word splitting of the flags is meant
        "$RS_SERVER" server --id "$i" --listen "127.0.0.1:$((RAFTSCHED_BASE_PORT + i - 1))" \
            --data-dir "$WORK_DIR/raftsched-$RS_GENERATION-$i" --initial-cluster "$RS_INITIAL" \
            $RS_PEER_FLAGS $RS_LIMIT_FLAGS \
            >>"$WORK_DIR/raftsched$i.log" 2>&1 &
        RS_PIDS+=($!)
        PIDS+=($!)
    done
    wait_for "raftsched" sh -c "$RS cluster status --json --cluster $RS_CLUSTER | grep -q '\"leader\":[0-9]'"
    # A build with record formats raises the cluster version a few seconds after start; measure
    # in the format it will run in, not the one it starts in.
    if [ -n "$RS_FORMAT_MAX" ]; then
        wait_for "cluster version $RS_FORMAT_MAX" sh -c "$RS cluster status --json --cluster $RS_CLUSTER | grep -q '\"cluster_version\":$RS_FORMAT_MAX[,}]'"
    fi
}
stop_raftsched() {
    for pid in "${RS_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${RS_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    RS_PIDS=()
    rm -rf "$WORK_DIR"/raftsched-"$RS_GENERATION"-*
}

wait_for() { # what, command...
    local what=$1; shift
    for _ in $(seq 1 120); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    die "$what did not come up (logs in $WORK_DIR)"
}
wait_for "etcd" "$LOAD" put --endpoints "$ETCD_ENDPOINTS" --concurrency 1 --connections 3 --duration-s 1

field() { # json, name -> value
    { echo "$1" | grep -o "\"$2\":[0-9.e+-]*" || true; } | head -1 | cut -d: -f2
}
# A figure's errors, 0 when it reports none; and its first error, noted for after the table.
errors_of() { # label, json -> count
    local n
    n=$(field "$2" errors)
    n=${n:-0}
    if [ "$n" != 0 ]; then
        local first
        first=$({ echo "$2" | grep -o '"first_error":"[^"]*"' || true; } | head -1 | cut -d'"' -f4)
        echo "$1: $n errors; first: ${first:-not reported}" >>"$WORK_DIR/errors"
        touch "$WORK_DIR/failed"
    fi
    echo "$n"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
fmt() { awk -v x="$1" 'BEGIN { printf "%.0f", x }'; }
fmt2() { awk -v x="$1" 'BEGIN { printf "%.1f", x }'; }

# CPU time (user + system, clock ticks of 10 ms) the processes PIDS... have used so far.
cpu_ticks() {
    local total=0 pid f
    for pid in "$@"; do
        # Fields 14 and 15 of /proc/PID/stat (after the command name, which may hold spaces).
        f=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13}') || f=0
        total=$((total + ${f:-0}))
    done
    echo "$total"
}
TICKS_PER_S=$(getconf CLK_TCK)
# Runs the load generator and notes, for the CPU table, the percent of one core it used and the
# percent the servers (SERVER_PIDS) used meanwhile: both sides' load generators share the 2 cores
# with the servers, so each side's figure pays for its own client.
SERVER_PIDS=()
run() { # label, command... -> JSON line on stdout, or a failure noted
    local out t0 s0 times
    t0=$(date +%s.%N)
    s0=$(cpu_ticks "${SERVER_PIDS[@]}")
    TIMEFORMAT='%U %S'
    if { time out=$("${@:2}" 2>>"$WORK_DIR/bench.err"); } 2>"$WORK_DIR/time"; then
        echo "$out"
    else
        say "$1 failed: $(tail -1 "$WORK_DIR/bench.err")"
        touch "$WORK_DIR/failed"
        echo "{}"
    fi
    times=$(tail -1 "$WORK_DIR/time")
    echo "$1|$(echo "$t0 $(date +%s.%N) $s0 $(cpu_ticks "${SERVER_PIDS[@]}") $TICKS_PER_S $times" \
        | awk '{ wall = $2 - $1; if (wall <= 0) wall = 1; printf "%.0f|%.0f", 100 * ($4 - $3) / $5 / wall, 100 * ($6 + $7) / wall }')" \
        >>"$WORK_DIR/cpu"
}

FSYNC=$("$RS" bench fsync --dir "$WORK_DIR" --json)
cpu_steal() { awk '/^cpu /{print $9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
STEAL_BEFORE=$(cpu_steal)
ROWS=()
for c in $CONCURRENCIES; do
    say "writes at concurrency $c (${DURATION_S} s each)"
    SERVER_PIDS=("${ETCD_PIDS[@]}")
    e=$(run "etcd put x$c" "$LOAD" put --endpoints "$ETCD_ENDPOINTS" --concurrency "$c" --connections "$ETCD_CONNECTIONS" \
        --duration-s "$DURATION_S" --payload-bytes "$PAYLOAD_BYTES" --json)
    start_raftsched
    SERVER_PIDS=("${RS_PIDS[@]}")
    r=$(run "raftsched submit x$c" "$RS" bench submit --cluster "$RS_CLUSTER" --concurrency "$c" --duration-s "$DURATION_S" \
        --payload-bytes "$PAYLOAD_BYTES" --json)
    stop_raftsched
    ROWS+=("writes|$c|$(field "$e" ops_per_s)|$(field "$e" p99_ms)|$(field "$r" ops_per_s)|$(field "$r" p99_ms)|$(errors_of "etcd put x$c" "$e")|$(errors_of "raftsched submit x$c" "$r")")
done
say "linearizable reads at concurrency $GET_CONCURRENCY"
SERVER_PIDS=("${ETCD_PIDS[@]}")
e=$(run "etcd get" "$LOAD" get --endpoints "$ETCD_ENDPOINTS" --concurrency "$GET_CONCURRENCY" --connections "$ETCD_CONNECTIONS" \
    --duration-s "$DURATION_S" --json)
start_raftsched
SERVER_PIDS=("${RS_PIDS[@]}")
r=$(run "raftsched get" "$RS" bench get --cluster "$RS_CLUSTER" --concurrency "$GET_CONCURRENCY" --duration-s "$DURATION_S" --json)
ROWS+=("reads|$GET_CONCURRENCY|$(field "$e" ops_per_s)|$(field "$e" p99_ms)|$(field "$r" ops_per_s)|$(field "$r" p99_ms)|$(errors_of "etcd get" "$e")|$(errors_of "raftsched get" "$r")")

stop_raftsched

# Dispatch: like the writes, a fresh trio (and fresh workers) for each concurrency, so every
# phase starts from an empty state and no phase pays for the one before (its finished tasks, a
# snapshot of them).
DISPATCH=()
for c in $CONCURRENCIES; do
    say "end-to-end dispatch at concurrency $c through $WORKERS workers"
    start_raftsched
    WORKER_PIDS=()
    for w in $(seq 1 "$WORKERS"); do
        # Kept output under the run's directory: nothing left in the temp dir, nothing from an
        # earlier run to index or trim.
        "$RS" worker --id "bench-w$w" --cluster "$RS_CLUSTER" --slots 16 \
            --output-dir "$WORK_DIR/worker$w-output-$c" >>"$WORK_DIR/worker$w.log" 2>&1 &
        WORKER_PIDS+=($!)
        PIDS+=($!)
    done
    wait_for "$WORKERS workers" sh -c "[ \$($RS workers --json --cluster $RS_CLUSTER | grep -o '\"state\":\"ready\"' | wc -l) -ge $WORKERS ]"
    SERVER_PIDS=("${RS_PIDS[@]}" "${WORKER_PIDS[@]}")
    r=$(run "raftsched dispatch x$c" "$RS" bench dispatch --cluster "$RS_CLUSTER" --concurrency "$c" --duration-s "$DURATION_S" --json)
    for pid in "${WORKER_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${WORKER_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    stop_raftsched
    DISPATCH+=("$c|$(field "$r" ops_per_s)|$(field "$r" p50_ms)|$(field "$r" p99_ms)|$(errors_of "raftsched dispatch x$c" "$r")")
done

# 5. The table.
echo
echo "raftsched ($("$RS_SERVER" --version)) vs etcd $ETCD_VERSION, $(date -u +%Y-%m-%d), $(nproc) cores, $(uname -r), data in $(df -P "$WORK_DIR" | awk 'NR==2 {print $1}')"
STEAL=$(echo "$STEAL_BEFORE $(cpu_steal)" | awk '{ d = $4 - $2; printf "%.1f", (d > 0 ? 100 * ($3 - $1) / d : 0) }')
echo "fdatasync of this disk: p50 $(field "$FSYNC" p50_ms) ms, p99 $(field "$FSYNC" p99_ms) ms; CPU steal over the runs: $STEAL %"
echo "durable writes: etcd puts (256 B values, distinct keys, $ETCD_CONNECTIONS connections over 3 members) vs raftsched submits (256 B payloads, spread over 3 replicas); reads linearizable; ${DURATION_S} s each"
echo
printf "| %-7s | %5s | %12s | %9s | %12s | %9s | %11s | %15s | %14s |\n" load C "etcd ops/s" "etcd p99" "raftsched/s" "rs p99" "ratio (x)" "p99 no worse?" "errors etcd/rs"
printf "|%s|\n" "---------|-------|--------------|-----------|--------------|-----------|-------------|-----------------|----------------"
for row in "${ROWS[@]}"; do
    IFS='|' read -r load c eo ep ro rp ee re <<<"$row"
    better=$(awk -v a="$rp" -v b="$ep" 'BEGIN { if (a == "" || b == "") print "-"; else if (a <= b) print "yes"; else print "no" }')
    x=$(ratio "${ro:-0}" "${eo:-0}")
    if [ "${ee:-0}" != 0 ] || [ "${re:-0}" != 0 ]; then x="(errors)"; better="-"; fi
    printf "| %-7s | %5s | %12s | %7s ms | %12s | %7s ms | %11s | %15s | %14s |\n" "$load" "$c" "$(fmt "${eo:-0}")" "$(fmt2 "${ep:-0}")" \
        "$(fmt "${ro:-0}")" "$(fmt2 "${rp:-0}")" "$x" "$better" "${ee:-0}/${re:-0}"
done
echo
echo "end-to-end dispatch (submit, assign, run a no-op, record the result) with $WORKERS workers:"
printf "| %5s | %12s | %9s | %9s | %22s |\n" C "tasks/s" "p50" "p99" "vs submits at same C"
printf "|%s|\n" "-------|--------------|-----------|-----------|------------------------"
for row in "${DISPATCH[@]}"; do
    IFS='|' read -r c dops dp50 dp99 de <<<"$row"
    sub="" sub_errors=0
    for w in "${ROWS[@]}"; do
        IFS='|' read -r load wc _ _ ro _ _ re <<<"$w"
        if [ "$load" = writes ] && [ "$wc" = "$c" ]; then sub=$ro; sub_errors=${re:-0}; fi
    done
    x=$(ratio "${dops:-0}" "${sub:-0}")
    if [ "${de:-0}" != 0 ] || [ "$sub_errors" != 0 ]; then x="(errors: ${de:-0})"; fi
    printf "| %5s | %12s | %6s ms | %6s ms | %22s |\n" "$c" "$(fmt "${dops:-0}")" "$(fmt2 "${dp50:-0}")" "$(fmt2 "${dp99:-0}")" "$x"
done
echo
echo "CPU while each load ran, percent of one core ($(nproc) cores in all): the servers (for dispatch: replicas and workers) and the load generator on the same machine:"
printf "| %-24s | %8s | %8s |\n" run servers client
printf "|%s|\n" "--------------------------|----------|---------"
while IFS='|' read -r label srv cli; do
    printf "| %-24s | %6s %% | %6s %% |\n" "$label" "$srv" "$cli"
done <"$WORK_DIR/cpu"
if [ -e "$WORK_DIR/errors" ]; then
    echo
    echo "runs with errors (no ratio is printed for them):"
    sed 's/^/- /' "$WORK_DIR/errors"
fi
if [ -e "$WORK_DIR/failed" ]; then exit 1; fi
