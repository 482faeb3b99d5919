#!/usr/bin/env bash
# cutoff vs tokio-util, side by side: run the criterion benchmarks, the memory counter and
# print the ratio table. The deadline rows (cutoff-timer vs tokio-util child token + tokio
# sleep, benches/benches/timer.rs) come in the same run: quick mode has the headline ones
# (create+cancel, heap and pinned, and memory); --full adds 1M pending, 2 threads and the
# lateness report (src/bin/lateness.rs).
#
#   bash benches/compare.sh          # quick: well under a minute of measuring
#   bash benches/compare.sh --full   # longer measurement; also rewrites docs/BENCHMARKS.md
#   bash benches/compare.sh --full --report-only   # re-render docs/BENCHMARKS.md from the
#                                                  # last full run (no measuring)
#
# Extra arguments after the mode go to criterion (e.g. a filter: `bash benches/compare.sh is_cancelled`).
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

if [[ $report_only == 0 ]]; then
echo "== building (compile time is not part of the measurement)" >&2
cargo bench -p cutoff-benches --bench compare --bench timer --no-run -q 2>&1 | grep -v '^ *Executable' >&2 || true
cargo build -q --release -p cutoff-benches --bins

# Start from a clean slate so a stale result can never be reported as this run's.
rm -rf "$crit"/{is_cancelled,is_cancelled_threads,child_create_drop,child_create_drop_threads,fanout_cancel,chain_cancel,wake,deadline_create_cancel,deadline_threads} "$mem" "$paired" "$late"

# What else is running: on a shared 2-core VM this decides how far the numbers can be trusted.
{
    echo "loadavg: $(cat /proc/loadavg)"
    a=($(awk '/^cpu /{print $5, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)); sleep 3
    b=($(awk '/^cpu /{print $5, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat))
    echo "cpu idle over 3 s before the run: $(( 100 * (b[0] - a[0]) / (b[1] - a[1] + 1) ))%"
    ps -eo pcpu,etime,comm --sort=-pcpu | head -6
} > "$envf" 2>/dev/null || true

start=$(date +%s)
if [[ $full == 1 ]]; then
    echo "== criterion, full settings (about 2.5 minutes)" >&2
    cargo bench -q -p cutoff-benches --bench compare --bench timer -- "$@" >&2
else
    echo "== criterion, quick settings (CUTOFF_BENCH_QUICK=1)" >&2
    CUTOFF_BENCH_QUICK=1 cargo bench -q -p cutoff-benches --bench compare --bench timer -- "$@" >&2
fi
echo "== memory (counting allocator)" >&2
"$target/release/mem" --out "$mem" >&2
echo "== paired cross-check (alternating batches)" >&2
"$target/release/paired" --out "$paired" --rounds "$([[ $full == 1 ]] && echo 41 || echo 15)" >&2
if [[ $full == 1 ]]; then
    echo "== lateness of 1,000 concurrent 1-50 ms timeouts (3 runs)" >&2
    "$target/release/lateness" --out "$late" --runs 3 >&2
fi
echo "== measured in $(($(date +%s) - start)) s" >&2
echo
fi

if [[ $full == 1 ]]; then
    "$target/release/report" --criterion "$crit" --mem "$mem" --paired "$paired" --env "$envf" \
        --lateness "$late" \
        --markdown "$root/docs/BENCHMARKS.md" --notes "$root/benches/NOTES.md" \
        --command "bash benches/compare.sh --full"
else
    "$target/release/report" --criterion "$crit" --mem "$mem" --paired "$paired"
fi
