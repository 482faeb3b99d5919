#!/usr/bin/env bash
# cutoff vs tokio-util, side by side: run the criterion benchmarks, the memory counter and
# print the ratio table.
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

if [[ $report_only == 0 ]]; then
echo "== building (compile time is not part of the measurement)" >&2
cargo bench -p cutoff-benches --bench compare --no-run -q 2>&1 | grep -v '^ *Executable' >&2 || true
cargo build -q --release -p cutoff-benches --bins

# Start from a clean slate so a stale result can never be reported as this run's.
rm -rf "$crit"/{is_cancelled,is_cancelled_threads,child_create_drop,child_create_drop_threads,fanout_cancel,chain_cancel,wake} "$mem"

start=$(date +%s)
if [[ $full == 1 ]]; then
    echo "== criterion, full settings (about 3-4 minutes)" >&2
    cargo bench -q -p cutoff-benches --bench compare -- "$@" >&2
else
    echo "== criterion, quick settings (CUTOFF_BENCH_QUICK=1)" >&2
    CUTOFF_BENCH_QUICK=1 cargo bench -q -p cutoff-benches --bench compare -- "$@" >&2
fi
echo "== memory (counting allocator)" >&2
"$target/release/mem" --out "$mem" >&2
echo "== measured in $(($(date +%s) - start)) s" >&2
echo
fi

if [[ $full == 1 ]]; then
    "$target/release/report" --criterion "$crit" --mem "$mem" \
        --markdown "$root/docs/BENCHMARKS.md" --notes "$root/benches/NOTES.md" \
        --command "bash benches/compare.sh --full"
else
    "$target/release/report" --criterion "$crit" --mem "$mem"
fi
