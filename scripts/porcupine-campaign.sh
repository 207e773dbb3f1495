#!/usr/bin/env bash
# Differential campaign: our linearizability checker (jepsen-like-tests) against Porcupine
# (https://github.com/anishathalye/porcupine, Go) on generated histories whose verdict is known by
# construction.
#
# Usage: scripts/porcupine-campaign.sh [--count N] [--seed S] [--timeout-ms T] [--work DIR]
#                                      [--histories DIR] [--keep]
#   --count N        histories to generate (env COUNT, default 2000), across register, kv, scheduler
#   --seed S         generator seed (env SEED, default: derived from the clock; printed)
#   --timeout-ms T   per-history budget, the same for both checkers (env TIMEOUT_MS, default 10000)
#   --work DIR       work directory (env WORK, default /tmp/raftsched-porcupine): Porcupine's
#                    checkout, the Go driver (source and build), the Go caches and the runs
#   --histories DIR  check an existing directory with a manifest.tsv instead of generating one
#                    (env HISTORIES); it is never deleted
#   --keep           keep the run directory (histories, raw results, report) even when the
#                    campaign passes (env KEEP=1); a failing run is always kept
# Environment: SKIP_BUILD=1 (do not run cargo; use the existing target/release/jepsen-like-tests),
#   PORCUPINE_SRC (a Porcupine checkout to use as is), PORCUPINE_GIT (a git URL or path to clone;
#   default the local mirror /work/.mirror/anishathalye+porcupine/repo if present, else GitHub),
#   PORCUPINE_REV (a commit to check out after cloning), BATCH (files per checker process, 50),
#   CHECKER (our checker binary to run instead of target/release/jepsen-like-tests; no cargo build).
#
# What it does: installs Go when `go` is missing (apt-get install golang-go, as root), gets
# Porcupine's source into the work directory, writes and builds a small Go driver there (its source
# is the heredoc below; its go.mod `replace`s Porcupine with that checkout), builds our checker
# (`cargo build --release -j2 -p jepsen-like-tests`, skipped with SKIP_BUILD=1), generates the
# campaign (`jepsen-like-tests generate --campaign N --dir DIR --seed S`), then runs
#   ours:      jepsen-like-tests check --model M --json --timeout-ms T FILES...
#   Porcupine: porcupine-driver   --model M --timeout-ms T FILES...
# on every register and kv history (one checker at a time, never both at once), and ours alone on
# the scheduler histories (Porcupine has no scheduler model), and prints a report: histories per
# model, agreement with Porcupine and with the known verdicts, unknowns, the Porcupine/ours time
# ratio distribution, the slowest and the largest histories. Nothing here is written into the
# repository.
#
# The driver's models are exactly ours (jepsen-like-tests/src/models/{register,kv}.rs): ops our
# `prepare` drops (fail read/write/put/append, info read/get, fail get) are dropped; an `info`
# completion or an invoke still open at the end is indeterminate (Return after every event, always
# legal, same effect on the state as an ok). Times are event positions (index among the file's
# non-empty lines), as in ours. Porcupine runs CheckOperationsTimeout with a per-key Partition
# (its usual per-partition goroutines, GOMAXPROCS default); the driver times only that call.
#
# Exit: 0 when the campaign passed; 1 when both checkers decided a history differently, when ours
# was unknown where Porcupine decided within 1 s, when ours decided against the known verdict, or
# when ours failed on a history (error or no output); 2 when the set-up failed.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)

COUNT=${COUNT:-2000}
SEED=${SEED:-}
TIMEOUT_MS=${TIMEOUT_MS:-10000}
WORK=${WORK:-/tmp/raftsched-porcupine}
HISTORIES=${HISTORIES:-}
KEEP=${KEEP:-0}
BATCH=${BATCH:-50}
SKIP_BUILD=${SKIP_BUILD:-0}
MIRROR=/work/.mirror/anishathalye+porcupine/repo

die() { echo "porcupine-campaign: $*" >&2; exit 2; }
say() { echo "porcupine-campaign: $*" >&2; }
need_arg() { [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value"; }

while [[ $# -gt 0 ]]; do
    case $1 in
        --count) need_arg "$@"; COUNT=$2; shift 2 ;;
        --seed) need_arg "$@"; SEED=$2; shift 2 ;;
        --timeout-ms) need_arg "$@"; TIMEOUT_MS=$2; shift 2 ;;
        --work) need_arg "$@"; WORK=$2; shift 2 ;;
        --histories) need_arg "$@"; HISTORIES=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
[[ $COUNT =~ ^[0-9]+$ && $COUNT -gt 0 ]] || die "--count must be a positive integer"
[[ $TIMEOUT_MS =~ ^[0-9]+$ && $TIMEOUT_MS -gt 0 ]] || die "--timeout-ms must be a positive integer"
[[ $BATCH =~ ^[0-9]+$ && $BATCH -gt 0 ]] || die "BATCH must be a positive integer"
[[ -z $SEED ]] && SEED=$(date +%s)
[[ $SEED =~ ^[0-9]+$ ]] || die "--seed must be a non-negative integer"
# Relative paths are the caller's; everything below uses absolute ones.
WORK=$(realpath -m -- "$WORK")
case $WORK/ in "$REPO"/*) die "the work directory $WORK is inside the repository; pick one outside it" ;; esac
mkdir -p "$WORK"
[[ -z $HISTORIES ]] || HISTORIES=$(cd "$HISTORIES" && pwd) || die "--histories $HISTORIES is not a directory"
[[ -z ${PORCUPINE_SRC:-} ]] || PORCUPINE_SRC=$(cd "$PORCUPINE_SRC" && pwd) || die "PORCUPINE_SRC is not a directory"
[[ -z ${CHECKER:-} || $CHECKER == /* ]] || CHECKER=$PWD/$CHECKER
command -v python3 >/dev/null || die "python3 is needed for the report"

# --- Go --------------------------------------------------------------------------------------
if ! command -v go >/dev/null; then
    [[ $(id -u) -eq 0 ]] || die "go is missing; install golang-go (apt-get install -y golang-go) or run as root"
    say "installing Go (apt-get install -y golang-go)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y golang-go >"$WORK/apt.log" 2>&1 \
        || { apt-get update >>"$WORK/apt.log" 2>&1 && apt-get install -y golang-go >>"$WORK/apt.log" 2>&1; } \
        || die "apt-get install golang-go failed (see $WORK/apt.log)"
    command -v go >/dev/null || die "go still missing after installing golang-go"
fi
# Everything Go writes stays in the work directory; nothing is downloaded by go itself.
export GOPATH=$WORK/gopath GOCACHE=$WORK/go-cache GOPROXY=off GOFLAGS=-mod=mod GOTOOLCHAIN=local
say "$(go version)"

# --- Porcupine's source ----------------------------------------------------------------------
if [[ -n ${PORCUPINE_SRC:-} ]]; then
    PORC=$PORCUPINE_SRC
else
    if [[ -z ${PORCUPINE_GIT:-} ]]; then
        if [[ -d $MIRROR ]]; then PORCUPINE_GIT=$MIRROR; else PORCUPINE_GIT=https://github.com/anishathalye/porcupine; fi
    fi
    PORC=$WORK/porcupine
    if [[ ! -f $PORC/go.mod ]]; then
        rm -rf "$PORC"
        say "cloning Porcupine from $PORCUPINE_GIT"
        git clone -q "$PORCUPINE_GIT" "$PORC" || die "git clone $PORCUPINE_GIT failed"
    fi
    if [[ -n ${PORCUPINE_REV:-} ]]; then
        git -C "$PORC" checkout -q "$PORCUPINE_REV" || die "cannot check out $PORCUPINE_REV"
    fi
fi
grep -q '^module github.com/anishathalye/porcupine$' "$PORC/go.mod" 2>/dev/null \
    || die "$PORC is not a Porcupine checkout (no go.mod for github.com/anishathalye/porcupine)"
PORC_REV=$(git -C "$PORC" rev-parse --short HEAD 2>/dev/null || echo "unknown commit")
say "Porcupine: $PORC ($PORC_REV)"

# --- the Go driver ---------------------------------------------------------------------------
DRIVER_DIR=$WORK/driver
DRIVER=$WORK/porcupine-driver
mkdir -p "$DRIVER_DIR"
cat >"$DRIVER_DIR/go.mod" <<EOF
module raftsched.local/porcupine-driver

go 1.16

require github.com/anishathalye/porcupine v0.0.0

replace github.com/anishathalye/porcupine => $PORC
EOF
cat >"$DRIVER_DIR/main.go" <<'EOF'
// porcupine-driver --model register|kv --timeout-ms T FILES...
//
// Checks JSON-lines histories (as written by jepsen-like-tests) with Porcupine and prints one
// line per file: {"file":...,"verdict":"linearizable"|"not linearizable"|"unknown","elapsed_ms":...}
// ("verdict":"error" with an "error" field when a file cannot be read). Only
// porcupine.CheckOperationsTimeout is timed, not reading the file.
// Exit: 0 all linearizable, 1 some not linearizable, 2 some unknown, 3 some error.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"os"
	"runtime"
	"strconv"
	"time"

	"github.com/anishathalye/porcupine"
)

// Return of an indeterminate operation: after every real event position.
const open = int64(math.MaxInt64)

type line struct {
	Process *uint64         `json:"process"`
	Type    string          `json:"type"`
	F       string          `json:"f"`
	Key     *string         `json:"key"`
	Value   json.RawMessage `json:"value"`
}

// op is an invoke paired with its completion, as in jepsen-like-tests/src/history.rs.
type op struct {
	process  uint64
	f        string
	key      *string
	input    json.RawMessage
	output   json.RawMessage
	outcome  string // "ok", "fail", "info" (info also for no completion)
	call     int64
	ret      int64
	callLine int
	retLine  int
}

func readOps(path string) ([]*op, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	r := bufio.NewReaderSize(fh, 1<<20)
	var ops []*op
	outstanding := map[uint64]*op{}
	pos := int64(0)
	for n := 1; ; n++ {
		text, rerr := r.ReadBytes('\n')
		if rerr != nil && rerr != io.EOF {
			return nil, rerr
		}
		t := bytes.TrimRight(text, "\r\n")
		if len(bytes.TrimSpace(t)) > 0 {
			var l line
			if err := json.Unmarshal(t, &l); err != nil {
				return nil, fmt.Errorf("line %d: bad JSON event: %v", n, err)
			}
			if l.Process == nil {
				return nil, fmt.Errorf("line %d: missing process", n)
			}
			p := *l.Process
			switch l.Type {
			case "invoke":
				if prev, ok := outstanding[p]; ok {
					return nil, fmt.Errorf("line %d: process %d invokes again while its operation from line %d is outstanding", n, p, prev.callLine)
				}
				o := &op{process: p, f: l.F, key: l.Key, input: l.Value, outcome: "info", call: pos, ret: open, callLine: n}
				outstanding[p] = o
				ops = append(ops, o)
			case "ok", "fail", "info":
				o, ok := outstanding[p]
				if !ok {
					return nil, fmt.Errorf("line %d: %s completion of process %d without an invoke", n, l.Type, p)
				}
				delete(outstanding, p)
				if o.f != l.F {
					return nil, fmt.Errorf("line %d: completion is %q but the invoke on line %d is %q", n, l.F, o.callLine, o.f)
				}
				if l.Key != nil && o.key != nil && *l.Key != *o.key {
					return nil, fmt.Errorf("line %d: completion key differs from the invoke's", n)
				}
				if o.key == nil {
					o.key = l.Key
				}
				o.output = l.Value
				o.outcome = l.Type
				o.retLine = n
				if l.Type != "info" {
					o.ret = pos // an info completion leaves the interval open
				}
			default:
				return nil, fmt.Errorf("line %d: type %q is not one of invoke, ok, fail, info", n, l.Type)
			}
			pos++
		}
		if rerr == io.EOF {
			break
		}
	}
	if pos == 0 {
		return nil, fmt.Errorf("empty history (no events)")
	}
	return ops, nil
}

func isNull(v json.RawMessage) bool {
	t := bytes.TrimSpace(v)
	return len(t) == 0 || string(t) == "null"
}

func parseInt(v json.RawMessage) (int64, bool) {
	t := bytes.TrimSpace(v)
	if len(t) == 0 || t[0] == '"' {
		return 0, false
	}
	n, err := strconv.ParseInt(string(t), 10, 64)
	return n, err == nil
}

func parseString(v json.RawMessage) (string, bool) {
	var s string
	if len(bytes.TrimSpace(v)) == 0 || bytes.TrimSpace(v)[0] != '"' {
		return "", false
	}
	return s, json.Unmarshal(v, &s) == nil
}

// ---- register (Porcupine's etcd model, with ours' outcome rules) ----

type regInput struct {
	part     string // partition: "k:"+key, or "" without a key
	op       uint8  // 0 read, 1 write, 2 cas
	a, b     int64  // write: a; cas: from a to b
	outcome  uint8  // cas: 0 ok, 1 fail, 2 unknown
	readNil  bool   // read: read nil
	readWhat int64  // read: the value read
}

type regState struct {
	set bool
	v   int64
}

func regStep(state, input, _ interface{}) (bool, interface{}) {
	st := state.(regState)
	in := input.(*regInput)
	switch in.op {
	case 0:
		if in.readNil {
			return !st.set, st
		}
		return st.set && st.v == in.readWhat, st
	case 1:
		return true, regState{true, in.a}
	default:
		holds := st.set && st.v == in.a
		switch in.outcome {
		case 0:
			return holds, regState{true, in.b}
		case 1:
			return !holds, st
		default:
			if holds {
				return true, regState{true, in.b}
			}
			return true, st
		}
	}
}

func regOps(ops []*op) ([]porcupine.Operation, error) {
	var out []porcupine.Operation
	for _, o := range ops {
		in := &regInput{}
		if o.key != nil {
			in.part = "k:" + *o.key
		}
		switch o.f {
		case "read":
			if o.outcome != "ok" {
				continue // fail or info read: constrains nothing
			}
			if isNull(o.output) {
				in.readNil = true
			} else if n, ok := parseInt(o.output); ok {
				in.readWhat = n
			} else {
				return nil, fmt.Errorf("line %d: read: result %s is not an integer or nil", o.retLine, o.output)
			}
		case "write":
			if o.outcome == "fail" {
				continue
			}
			n, ok := parseInt(o.input)
			if !ok {
				return nil, fmt.Errorf("line %d: write: value %s is not an integer", o.callLine, o.input)
			}
			in.op, in.a = 1, n
		case "cas":
			var pair []json.RawMessage
			if json.Unmarshal(o.input, &pair) != nil || len(pair) != 2 {
				return nil, fmt.Errorf("line %d: cas: argument %s is not [from to]", o.callLine, o.input)
			}
			a, ok1 := parseInt(pair[0])
			b, ok2 := parseInt(pair[1])
			if !ok1 || !ok2 {
				return nil, fmt.Errorf("line %d: cas: argument %s is not two integers", o.callLine, o.input)
			}
			in.op, in.a, in.b = 2, a, b
			switch o.outcome {
			case "ok":
				in.outcome = 0
			case "fail":
				in.outcome = 1
			default:
				in.outcome = 2
			}
		default:
			return nil, fmt.Errorf("line %d: unknown operation %q (register has read, write, cas)", o.callLine, o.f)
		}
		out = append(out, porcupine.Operation{ClientId: int(o.process), Input: in, Call: o.call, Return: o.ret})
	}
	return out, nil
}

var registerModel = porcupine.Model{
	Partition: partitionBy(func(in interface{}) string { return in.(*regInput).part }),
	Init:      func() interface{} { return regState{} },
	Step:      regStep,
	Hash: func(state interface{}) uint64 {
		st := state.(regState)
		if !st.set {
			return 0x9e3779b97f4a7c15
		}
		x := uint64(st.v) * 0xff51afd7ed558ccd
		return x ^ (x >> 33)
	},
}

// ---- kv (Porcupine's kvModel, per key) ----

type kvInput struct {
	key   string
	op    uint8 // 0 get, 1 put, 2 append
	value string
}

func kvOps(ops []*op) ([]porcupine.Operation, error) {
	var out []porcupine.Operation
	for _, o := range ops {
		in := &kvInput{}
		switch o.f {
		case "get":
			if o.outcome != "ok" {
				continue
			}
			s, ok := parseString(o.output)
			if !ok {
				return nil, fmt.Errorf("line %d: get: result %s is not a string", o.retLine, o.output)
			}
			in.value = s
		case "put", "append":
			if o.outcome == "fail" {
				continue
			}
			s, ok := parseString(o.input)
			if !ok {
				return nil, fmt.Errorf("line %d: %s: argument %s is not a string", o.callLine, o.f, o.input)
			}
			in.value = s
			in.op = 1
			if o.f == "append" {
				in.op = 2
			}
		default:
			return nil, fmt.Errorf("line %d: unknown operation %q (kv has get, put, append)", o.callLine, o.f)
		}
		if o.key == nil {
			return nil, fmt.Errorf("line %d: %s: missing key", o.callLine, o.f)
		}
		in.key = *o.key
		out = append(out, porcupine.Operation{ClientId: int(o.process), Input: in, Call: o.call, Return: o.ret})
	}
	return out, nil
}

var kvModel = porcupine.Model{
	Partition: partitionBy(func(in interface{}) string { return in.(*kvInput).key }),
	Init:      func() interface{} { return "" },
	Step: func(state, input, _ interface{}) (bool, interface{}) {
		st := state.(string)
		in := input.(*kvInput)
		switch in.op {
		case 0:
			return st == in.value, st
		case 1:
			return true, in.value
		default:
			return true, st + in.value
		}
	},
	Hash: func(state interface{}) uint64 {
		h := fnv.New64a()
		h.Write([]byte(state.(string)))
		return h.Sum64()
	},
}

// partitionBy groups operations by key, keys in first-seen order.
func partitionBy(key func(interface{}) string) func([]porcupine.Operation) [][]porcupine.Operation {
	return func(history []porcupine.Operation) [][]porcupine.Operation {
		index := map[string]int{}
		var parts [][]porcupine.Operation
		for _, o := range history {
			k := key(o.Input)
			i, ok := index[k]
			if !ok {
				i = len(parts)
				index[k] = i
				parts = append(parts, nil)
			}
			parts[i] = append(parts[i], o)
		}
		return parts
	}
}

type result struct {
	File      string  `json:"file"`
	Verdict   string  `json:"verdict"`
	ElapsedMs float64 `json:"elapsed_ms"`
	Error     string  `json:"error,omitempty"`
}

func main() {
	modelName := flag.String("model", "", "register or kv")
	timeoutMs := flag.Int64("timeout-ms", 10000, "time budget per file in milliseconds (0: none)")
	flag.Parse()
	var model porcupine.Model
	var build func([]*op) ([]porcupine.Operation, error)
	switch *modelName {
	case "register":
		model, build = registerModel, regOps
	case "kv":
		model, build = kvModel, kvOps
	default:
		fmt.Fprintln(os.Stderr, "usage: porcupine-driver --model register|kv --timeout-ms T FILES...")
		os.Exit(64)
	}
	enc := json.NewEncoder(os.Stdout)
	exit := 0
	worse := func(code int) {
		if code > exit {
			exit = code
		}
	}
	for _, path := range flag.Args() {
		res := result{File: path}
		ops, err := readOps(path)
		var history []porcupine.Operation
		if err == nil {
			history, err = build(ops)
		}
		if err != nil {
			res.Verdict, res.Error = "error", err.Error()
			worse(3)
		} else {
			ops = nil
			runtime.GC() // do not charge the previous file's garbage to this one
			start := time.Now()
			r := porcupine.CheckOperationsTimeout(model, history, time.Duration(*timeoutMs)*time.Millisecond)
			res.ElapsedMs = math.Round(float64(time.Since(start).Nanoseconds())/1e3) / 1e3
			switch r {
			case porcupine.Ok:
				res.Verdict = "linearizable"
			case porcupine.Illegal:
				res.Verdict = "not linearizable"
				worse(1)
			default:
				res.Verdict = "unknown"
				worse(2)
			}
		}
		if err := enc.Encode(res); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
	}
	os.Exit(exit)
}
EOF
say "building the Porcupine driver"
(cd "$DRIVER_DIR" && go build -o "$DRIVER" .) || die "go build of the driver failed"

# --- our checker -----------------------------------------------------------------------------
BIN=${CHECKER:-$REPO/target/release/jepsen-like-tests}
if [[ $SKIP_BUILD != 1 && -z ${CHECKER:-} ]]; then
    say "cargo build --release -j2 -p jepsen-like-tests"
    (cd "$REPO" && cargo build --release -j2 -p jepsen-like-tests) || die "cargo build failed"
fi
[[ -x $BIN ]] || die "$BIN is missing (build it, or unset SKIP_BUILD)"
[[ $("$BIN" check --help 2>&1) == *--json* ]] || die "$BIN check has no --json (rebuild)"

# --- the histories ---------------------------------------------------------------------------
RUN=$WORK/run-$SEED-$COUNT
if [[ -n $HISTORIES ]]; then
    DIR=$HISTORIES
    RUN=$WORK/check-$(basename "$(dirname "$DIR")")-$(basename "$DIR")
    rm -rf "$RUN"
    mkdir -p "$RUN"
    say "checking the existing histories in $DIR"
else
    "$BIN" generate --help >/dev/null 2>&1 || die "$BIN has no generate subcommand (rebuild)"
    rm -rf "$RUN"
    mkdir -p "$RUN"
    DIR=$RUN/histories
    say "generating $COUNT histories (seed $SEED) into $DIR"
    "$BIN" generate --campaign "$COUNT" --dir "$DIR" --seed "$SEED" >"$RUN/generate.log" 2>&1 \
        || { cat "$RUN/generate.log" >&2; die "generate failed"; }
fi
MANIFEST=$DIR/manifest.tsv
[[ -f $MANIFEST ]] || die "no $MANIFEST"
HEADER=$'file\tmodel\tlinearizable\tclients\tops\tinfo_per_mille\tanomaly\tseed'
[[ $(head -n1 "$MANIFEST") == "$HEADER" ]] || die "unexpected manifest header in $MANIFEST"

# --- run both checkers -----------------------------------------------------------------------
# Each tool runs on BATCH files per process, from inside DIR, so that its "file" fields are the
# manifest's names. A process that dies (e.g. out of memory) loses its batch's remaining lines:
# those files are run again one by one, and a file still without a line is reported as missing.
run_tool() { # tool model out
    local tool=$1 model=$2 out=$3 list=$RUN/files-$2
    awk -F'\t' -v m="$model" 'NR > 1 && $2 == m { print $1 }' "$MANIFEST" >"$list"
    : >"$out"
    [[ -s $list ]] || return 0
    local cmd
    if [[ $tool == ours ]]; then cmd=("$BIN" check --model "$model" --json --timeout-ms "$TIMEOUT_MS")
    else cmd=("$DRIVER" --model "$model" --timeout-ms "$TIMEOUT_MS"); fi
    say "$tool: $model ($(wc -l <"$list") histories)"
    (cd "$DIR" && xargs -d '\n' -n "$BATCH" "${cmd[@]}" <"$list" >>"$out" 2>>"$RUN/$tool-$model.stderr") || true
    python3 - "$list" "$out" >"$list.missing" <<'PY'
import json, sys
done = set()
for l in open(sys.argv[2]):
    try:
        done.add(json.loads(l)["file"])
    except Exception:
        pass
for f in open(sys.argv[1]).read().splitlines():
    if f not in done:
        print(f)
PY
    if [[ -s $list.missing ]]; then
        say "$tool: $(wc -l <"$list.missing") $model histories without a result; running them one by one"
        while IFS= read -r f; do
            (cd "$DIR" && "${cmd[@]}" "$f" >>"$out" 2>>"$RUN/$tool-$model.stderr") || true
        done <"$list.missing"
    fi
}
START_S=$SECONDS
BIN_SUM=$(sha256sum <"$BIN")
for model in register kv scheduler; do
    run_tool ours "$model" "$RUN/ours-$model.jsonl"
    [[ $model == scheduler ]] || run_tool porcupine "$model" "$RUN/porcupine-$model.jsonl"
done
say "checked in $((SECONDS - START_S)) s"
[[ $(sha256sum <"$BIN") == "$BIN_SUM" ]] \
    || say "WARNING: $BIN changed during the run (rebuilt?): results may mix two builds"

# --- report ----------------------------------------------------------------------------------
set +e
if [[ -n $HISTORIES ]]; then SOURCE="histories from $DIR"; else SOURCE="generated with seed $SEED"; fi
SOURCE="$SOURCE; Porcupine $PORC_REV with GOMAXPROCS ${GOMAXPROCS:-$(nproc)} (its partitions in parallel), ours single-threaded"
python3 - "$MANIFEST" "$RUN" "$TIMEOUT_MS" "$SOURCE" <<'PY' | tee "$RUN/report.txt"
import json, os, sys

manifest, run, timeout_ms, source = sys.argv[1:5]
FLOOR = 0.001  # ms: times below this are clamped, so that ratios stay finite
DECIDED = ("linearizable", "not linearizable")
FAST_MS = 1000.0

rows = []
with open(manifest) as fh:
    header = fh.readline().rstrip("\n").split("\t")
    for l in fh:
        if l.strip():
            rows.append(dict(zip(header, l.rstrip("\n").split("\t"))))

def load(tool, model):
    res = {}
    path = os.path.join(run, f"{tool}-{model}.jsonl")
    if os.path.exists(path):
        for l in open(path):
            try:
                o = json.loads(l)
            except ValueError:
                continue
            v = o.get("verdict")
            if v not in DECIDED + ("unknown",):
                v = "error"
            res[o.get("file")] = (v, float(o.get("elapsed_ms") or 0.0), o.get("error") or o.get("why") or "")
    return res

ours, porc = {}, {}
for m in ("register", "kv", "scheduler"):
    ours.update(load("ours", m))
    if m != "scheduler":
        porc.update(load("porcupine", m))

def known(r):
    return "linearizable" if r["linearizable"] == "true" else "not linearizable"

H = []
for r in rows:
    f, m = r["file"], r["model"]
    o = ours.get(f, ("missing", 0.0, ""))
    p = porc.get(f, ("missing", 0.0, "")) if m in ("register", "kv") else None
    H.append(dict(file=f, model=m, known=known(r), anomaly=r["anomaly"], ops=int(r["ops"]),
                  clients=int(r["clients"]), info=r["info_per_mille"], ours=o, porc=p))

failures = 0
def section(title):
    print(f"\n== {title}")
def fmt_ms(x):
    return f"{x:.3f} ms" if x < 1000 else f"{x / 1000:.2f} s"
def tag(h):
    return f"{h['file']} [{h['model']}, anomaly {h['anomaly']}, {h['ops']} ops, {h['clients']} clients]"

print(f"Porcupine campaign: {len(H)} histories, timeout {timeout_ms} ms each for both checkers")
print(f"  ({source})")

section("histories per model (clean = anomaly none)")
models = sorted({h["model"] for h in H}, key=lambda m: ("register", "kv", "scheduler").index(m) if m in ("register", "kv", "scheduler") else 9)
for m in models:
    hs = [h for h in H if h["model"] == m]
    clean = sum(h["anomaly"] == "none" for h in hs)
    lin = sum(h["known"] == "linearizable" for h in hs)
    print(f"  {m:10} {len(hs):6}   clean {clean}, with an anomaly {len(hs) - clean}; known linearizable {lin}, not {len(hs) - lin}")

P = [h for h in H if h["porc"] is not None]
section("agreement with Porcupine (register and kv)")
both = [h for h in P if h["ours"][0] in DECIDED and h["porc"][0] in DECIDED]
dis = [h for h in both if h["ours"][0] != h["porc"][0]]
print(f"  both decided: {len(both)} of {len(P)}; agree {len(both) - len(dis)}, disagree {len(dis)}")
only_ours = sum(h["ours"][0] in DECIDED and h["porc"][0] not in DECIDED for h in P)
only_porc = sum(h["porc"][0] in DECIDED and h["ours"][0] not in DECIDED for h in P)
print(f"  decided by ours only: {only_ours}; by Porcupine only: {only_porc}; by neither: {len(P) - len(both) - only_ours - only_porc}")
for h in dis:
    print(f"  DISAGREE {tag(h)}: ours {h['ours'][0]}, Porcupine {h['porc'][0]}, known {h['known']}")
failures += len(dis)

section("agreement with the known verdict (decided histories only)")
for name, key, hs in (("ours", "ours", H), ("Porcupine", "porc", P)):
    dec = [h for h in hs if h[key][0] in DECIDED]
    wrong = [h for h in dec if h[key][0] != h["known"]]
    print(f"  {name:9} decided {len(dec)} of {len(hs)}; match {len(dec) - len(wrong)}, contradict {len(wrong)}")
    for h in wrong:
        print(f"    WRONG ({name}) {tag(h)}: {h[key][0]}, known {h['known']}")
    if key == "ours":
        failures += len(wrong)

section("unknowns and errors")
for name, key, hs in (("ours", "ours", H), ("Porcupine", "porc", P)):
    for v in ("unknown", "error", "missing"):
        bad = [h for h in hs if h[key][0] == v]
        if not bad and v != "unknown":
            continue
        print(f"  {name:9} {v}: {len(bad)}")
        for h in bad[:25]:
            why = f" ({h[key][2]})" if h[key][2] else ""
            after = "" if v == "missing" else f" after {fmt_ms(h[key][1])}"
            print(f"    {tag(h)}{after}{why}")
        if len(bad) > 25:
            print(f"    ... and {len(bad) - 25} more")
        if key == "ours" and v != "unknown":
            failures += len(bad)
slow = [h for h in P if h["ours"][0] == "unknown" and h["porc"][0] in DECIDED and h["porc"][1] <= FAST_MS]
print(f"  ours unknown where Porcupine decided within 1 s: {len(slow)}")
for h in slow:
    print(f"    SLOWER {tag(h)}: Porcupine {h['porc'][0]} in {fmt_ms(h['porc'][1])}, ours unknown after {fmt_ms(h['ours'][1])}")
failures += len(slow)

section(f"speed: ratio Porcupine ms / ours ms (> 1: ours faster; both decided; times floored at {FLOOR} ms)")
def q(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(p / 100 * (len(xs) - 1)))))]
def dist(label, hs):
    rs = [max(h["porc"][1], FLOOR) / max(h["ours"][1], FLOOR) for h in hs]
    if not rs:
        print(f"  {label:26} (none)")
        return
    po = sum(h["porc"][1] for h in hs)
    ou = sum(h["ours"][1] for h in hs)
    print(f"  {label:26} n={len(rs):5}  worst(min) {min(rs):9.3g}  p1 {q(rs, 1):8.3g}  p10 {q(rs, 10):8.3g}  "
          f"median {q(rs, 50):8.3g}  p90 {q(rs, 90):8.3g}  p99 {q(rs, 99):8.3g}  max {max(rs):8.3g}  "
          f"totals {fmt_ms(po)} / {fmt_ms(ou)}")
dist("all", both)
for m in ("register", "kv"):
    dist(m, [h for h in both if h["model"] == m])
dist("clean (anomaly none)", [h for h in both if h["anomaly"] == "none"])
dist("with an anomaly", [h for h in both if h["anomaly"] != "none"])
for m in ("register", "kv"):
    dist(f"{m} clean", [h for h in both if h["model"] == m and h["anomaly"] == "none"])
    dist(f"{m} with an anomaly", [h for h in both if h["model"] == m and h["anomaly"] != "none"])
if both:
    w = min(both, key=lambda h: max(h["porc"][1], FLOOR) / max(h["ours"][1], FLOOR))
    print(f"  worst ratio: {tag(w)}: Porcupine {fmt_ms(w['porc'][1])}, ours {fmt_ms(w['ours'][1])}")

section("slowest histories")
def both_times(h):
    p = f"Porcupine {h['porc'][0]} in {fmt_ms(h['porc'][1])}" if h["porc"] else "Porcupine -"
    return f"ours {h['ours'][0]} in {fmt_ms(h['ours'][1])}, {p}"
for m in models:
    hs = [h for h in H if h["model"] == m and h["ours"][0] != "missing"]
    if hs:
        s = max(hs, key=lambda h: h["ours"][1])
        print(f"  ours, {m:9} {tag(s)}: {both_times(s)}")
for m in ("register", "kv"):
    hs = [h for h in P if h["model"] == m and h["porc"][0] != "missing"]
    if hs:
        s = max(hs, key=lambda h: h["porc"][1])
        print(f"  Porcupine, {m:4} {tag(s)}: {both_times(s)}")

print("  time spent checking (all histories, unknowns included): ours "
      + ", ".join(f"{m} {fmt_ms(sum(h['ours'][1] for h in H if h['model'] == m))}" for m in models)
      + "; Porcupine "
      + ", ".join(f"{m} {fmt_ms(sum(h['porc'][1] for h in P if h['model'] == m))}" for m in ("register", "kv")))

section("largest histories (by operations)")
for h in sorted(H, key=lambda h: -h["ops"])[:8]:
    print(f"  {tag(h)}, info {h['info']}/1000: {both_times(h)}")

section("result")
if failures:
    print(f"  FAILED: {failures} problem(s) above (DISAGREE, WRONG for ours, SLOWER, or ours error/missing)")
else:
    print("  passed: no disagreement where both decided, ours never contradicts the known verdict, "
          "and ours is never unknown where Porcupine decided within 1 s")
sys.exit(1 if failures else 0)
PY
STATUS=${PIPESTATUS[0]}
set -e
[[ $STATUS -le 1 ]] || die "the report failed (python exit $STATUS)"
if [[ $STATUS -ne 0 || $KEEP == 1 || -n $HISTORIES ]]; then
    say "kept $RUN (raw results, report.txt$([[ -z $HISTORIES ]] && echo ", histories"))"
else
    rm -rf "$RUN"
fi
exit "$STATUS"
