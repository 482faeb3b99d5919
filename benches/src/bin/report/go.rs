//! The Go side: parse what `benches/go.sh` wrote (its header documents the format).
//!
//! Only the lines this module knows are read: `GOVERSION`, `MODE`, `GOMAXPROCS`, raw
//! `Benchmark<Name>-<procs> <iters> <value> <unit>...` lines and `MEM <Name> key=value...`.
//! A benchmark that appears several times (`-count 5`) is summarized by the **median** of each
//! unit, like the criterion side.

use std::collections::BTreeMap;

/// One Go benchmark: the median of each reported unit (`ns/op`, `B/op`, `allocs/op`,
/// `ns/child`, ...) over its runs.
#[derive(Debug, Default)]
pub(crate) struct GoBench {
    pub(crate) units: BTreeMap<String, f64>,
}

/// Heap use per live context (`runtime.MemStats` after GC).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct GoMem {
    pub(crate) bytes_per: f64,
    pub(crate) allocs_per: f64,
}

#[derive(Debug, Default)]
pub(crate) struct GoData {
    pub(crate) version: String,
    pub(crate) mode: String,
    pub(crate) bench: BTreeMap<String, GoBench>,
    pub(crate) mem: BTreeMap<String, GoMem>,
}

impl GoData {
    /// Median `unit` of benchmark `name` (without the `Benchmark` prefix and `-N` suffix).
    pub(crate) fn get(&self, name: &str, unit: &str) -> Option<f64> {
        self.bench.get(name)?.units.get(unit).copied()
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Parse go.sh's output. Unknown lines are skipped.
pub(crate) fn parse(text: &str) -> GoData {
    let mut d = GoData::default();
    let mut samples: BTreeMap<String, BTreeMap<String, Vec<f64>>> = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.first().copied() {
            Some("GOVERSION") => d.version = f[1..].join(" "),
            Some("MODE") => d.mode = f.get(1).copied().unwrap_or_default().to_string(),
            Some("MEM") if f.len() >= 2 => {
                let kv = |k: &str| {
                    f.iter()
                        .find_map(|x| x.strip_prefix(k)?.strip_prefix('='))
                        .and_then(|v| v.parse::<f64>().ok())
                };
                if let (Some(b), Some(a)) = (kv("bytes_per"), kv("allocs_per")) {
                    d.mem.insert(
                        f[1].to_string(),
                        GoMem {
                            bytes_per: b,
                            allocs_per: a,
                        },
                    );
                }
            }
            Some(name) if name.starts_with("Benchmark") && f.len() >= 4 => {
                let name = name.trim_start_matches("Benchmark");
                // Strip the GOMAXPROCS suffix ("-2").
                let name = match name.rsplit_once('-') {
                    Some((n, p)) if p.chars().all(|c| c.is_ascii_digit()) => n,
                    _ => name,
                };
                if f[1].parse::<u64>().is_err() {
                    continue;
                }
                let units = samples.entry(name.to_string()).or_default();
                for pair in f[2..].chunks(2) {
                    if let [v, unit] = pair
                        && let Ok(v) = v.parse::<f64>()
                    {
                        units.entry((*unit).to_string()).or_default().push(v);
                    }
                }
            }
            _ => {}
        }
    }
    for (name, units) in samples {
        d.bench.insert(
            name,
            GoBench {
                units: units.into_iter().map(|(u, v)| (u, median(v))).collect(),
            },
        );
    }
    d
}

use crate::{Data, Goal, Row, div, mops, ns, ratio, time_row};
use cutoff_benches::{CHAIN, FANOUT};

/// A whole count (Go's B/op and allocs/op are integers), or "n/a".
fn count(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.0}"))
}

fn go_ns(d: &Data, name: &str, unit: &str) -> Option<f64> {
    d.go.as_ref()?.get(name, unit)
}

fn go_mem(d: &Data, name: &str) -> Option<GoMem> {
    d.go.as_ref()?.mem.get(name).copied()
}

/// A cutoff criterion row against a Go benchmark (ns per op or per unit).
fn vs_go_time(
    d: &Data,
    what: &str,
    crit: &str,
    per: usize,
    go: &str,
    unit: &str,
    goal: Goal,
) -> Row {
    let (a, b) = (d.t(crit, per), go_ns(d, go, unit));
    Row {
        what: what.into(),
        cutoff: ns(a),
        other: ns(b),
        metric: "time ratio".into(),
        value: div(a, b),
        check: div(a, b),
        goal,
        unit: "x",
        paired: None,
    }
}

/// cutoff vs Go `context`, with the targets.
pub(crate) fn go_rows(d: &Data) -> Vec<Row> {
    let mut rows = vec![
        vs_go_time(
            d,
            "deadline create+cancel early, heap `with_timeout(&parent, 200ms)` vs `WithTimeout(parent, 200ms)` + `cancel()`",
            "deadline_create_cancel/cutoff_heap/0",
            1,
            "WithTimeoutFromCancelable",
            "ns/op",
            Goal::AtMost(0.1),
        ),
        vs_go_time(
            d,
            "  same, pinned `Deadline` (0 allocations)",
            "deadline_create_cancel/cutoff_pinned/0",
            1,
            "WithTimeoutFromCancelable",
            "ns/op",
            Goal::AtMost(0.1),
        ),
        vs_go_time(
            d,
            "child create+drop, heap `parent.child()` vs `WithCancel(parent)` + `cancel()`",
            "child_create_drop/cutoff_heap",
            1,
            "WithCancelFromCancelable",
            "ns/op",
            Goal::AtMost(0.2),
        ),
        vs_go_time(
            d,
            "  same, pinned `ChildNode`",
            "child_create_drop/cutoff_pinned",
            1,
            "WithCancelFromCancelable",
            "ns/op",
            Goal::AtMost(0.2),
        ),
        vs_go_time(
            d,
            &format!("cancel a parent with {FANOUT} live children, per child (heap)"),
            &format!("fanout_cancel/cutoff_heap/{FANOUT}"),
            FANOUT,
            "FanOutCancel100000",
            "ns/child",
            Goal::AtMost(0.1),
        ),
        vs_go_time(
            d,
            &format!("cancel the root of a {CHAIN}-deep chain, per node"),
            &format!("chain_cancel/cutoff_heap/{CHAIN}"),
            CHAIN,
            "DeepChainCancel10000",
            "ns/node",
            Goal::AtMost(0.1),
        ),
        vs_go_time(
            d,
            "`is_cancelled()` on a live child vs `ctx.Err()`",
            "is_cancelled/cutoff_token",
            1,
            "ErrLive",
            "ns/op",
            Goal::Info,
        ),
    ];
    // 2 threads, one shared parent: total throughput. cutoff's threaded groups report the
    // wall time in which each thread did one op (total = threads / t); Go's RunParallel
    // reports wall time / all ops (total = 1 / t).
    let c2 = d.tput("deadline_threads", "cutoff_heap_shared", 2);
    let g2 = go_ns(d, "ParallelWithTimeoutShared", "ns/op").map(|t| 1000.0 / t);
    if c2.is_some() {
        rows.push(Row {
            what: "deadline create+cancel, 2 threads, one shared parent: total throughput".into(),
            cutoff: mops(c2),
            other: mops(g2),
            metric: "throughput multiple".into(),
            value: div(c2, g2),
            check: div(c2, g2),
            goal: Goal::Info,
            unit: "x",
            paired: None,
        });
    }
    for (what, ck, gk, goal) in [
        (
            "heap bytes per pending deadline (1M under one parent, 1 h)",
            "timer_heap.bytes",
            "WithTimeoutFromCancelable1h",
            Goal::AtMost(0.33),
        ),
        (
            "heap bytes per live child (1M under one parent)",
            "cutoff_heap.bytes",
            "WithCancelFromCancelable",
            Goal::Info,
        ),
    ] {
        let (c, g) = (d.mem(ck), go_mem(d, gk).map(|m| m.bytes_per));
        rows.push(Row {
            what: what.into(),
            cutoff: ratio(c, " B"),
            other: ratio(g, " B"),
            metric: "bytes ratio".into(),
            value: div(c, g),
            check: div(c, g),
            goal,
            unit: "x",
            paired: None,
        });
    }
    rows
}

/// The seed's scenarios: one row per scenario and implementation, median time per race.
/// Returns the table and the target row (cutoff deadline no slower than a plain timer in
/// the result-first race).
pub(crate) fn seed_table(d: &Data, md: bool) -> (String, Vec<Row>) {
    use std::fmt::Write as _;
    let mut s = String::new();
    let scen = [
        (
            "seed_result_first",
            "ResultFirst",
            "result first (200 ms deadline)",
        ),
        (
            "seed_timeout_first",
            "TimeoutFirst",
            "timeout first (1 ms deadline, 5 ms work)",
        ),
    ];
    let imps = [
        (
            "cutoff_deadline",
            "Context",
            "cutoff deadline / Go `WithTimeout`",
        ),
        (
            "tokio_timeout",
            "TimeAfter",
            "`tokio::time::timeout` / Go `time.After`",
        ),
        (
            "tokio_sleep",
            "TimerStop",
            "plain timer: tokio `sleep` / Go `NewTimer`+`Stop`",
        ),
        (
            "cutoff_timeout",
            "-",
            "`cutoff_timer::timeout` (no Go twin)",
        ),
        (
            "tokio_util_child_sleep",
            "-",
            "tokio-util child token + `sleep` (no Go twin)",
        ),
    ];
    if md {
        s.push_str(
            "| scenario | what (Rust / Go) | Rust | Go | Rust/Go | Go B/op | Go allocs/op |\n",
        );
        s.push_str("|---|---|---:|---:|---:|---:|---:|\n");
    } else {
        let _ = writeln!(
            s,
            "{:<42} {:<48} {:>11} {:>11} {:>8}",
            "seed scenario", "Rust / Go", "Rust", "Go", "Rust/Go"
        );
    }
    for (g, gn, label) in scen {
        for (id, gid, what) in imps {
            let r = d.t(&format!("{g}/{id}"), 1);
            let go = format!("{gn}{gid}");
            let gt = go_ns(d, &go, "ns/op");
            if r.is_none() && gt.is_none() {
                continue;
            }
            if md {
                let _ = writeln!(
                    s,
                    "| {label} | {what} | {} | {} | {} | {} | {} |",
                    ns(r),
                    ns(gt),
                    ratio(div(r, gt), "x"),
                    count(go_ns(d, &go, "B/op")),
                    count(go_ns(d, &go, "allocs/op")),
                );
            } else {
                let _ = writeln!(
                    s,
                    "{:<42} {:<48} {:>11} {:>11} {:>8}",
                    label,
                    what,
                    ns(r),
                    ns(gt),
                    ratio(div(r, gt), "x")
                );
            }
        }
    }
    let mut row = time_row(
        d,
        "seed result-first race: cutoff deadline / plain timer (tokio `sleep`)",
        "seed_result_first/cutoff_deadline",
        "seed_result_first/tokio_sleep",
        1,
        Goal::AtMost(1.0),
    );
    row.paired = None;
    row.metric = "time ratio".into();
    (s, vec![row])
}

/// The report section that answers the seed's two questions with this run's numbers.
pub(crate) fn seed_answers(d: &Data) -> String {
    use std::fmt::Write as _;
    let Some(g) = d.go.as_ref() else {
        return String::new();
    };
    let f = |v: Option<f64>| ns(v);
    let n = |name: &str, unit: &str| g.get(name, unit);
    let mut s = String::new();
    let ctx = n("ResultFirstContext", "ns/op");
    let after = n("ResultFirstTimeAfter", "ns/op");
    let stop = n("ResultFirstTimerStop", "ns/op");
    let _ = writeln!(
        s,
        "**1. When should one use `WithTimeout`?** In the seed's result-first race (a goroutine \
         computes `a*a` and sends it; the caller selects on it and a 200 ms timeout), Go took \
         {} per race with `context.WithTimeout`, {} with `time.After` and {} with \
         `time.NewTimer`+`Stop` ({} / {} / {} allocations). The goroutine, the channel and the \
         scheduler hand-off dominate all three, so the context costs {} more than the plain \
         timer per race ({}). Use `WithTimeout` when the deadline must reach code you call \
         (every callee sees `ctx.Done()`, `ctx.Err()`, `ctx.Deadline()`, and children inherit \
         it); for a single local select a timer is enough and cheaper. The blog's printed \
         figures (fractions of a nanosecond) measured nothing: its loops never ran `b.N` \
         times.\n",
        f(ctx),
        f(after),
        f(stop),
        count(n("ResultFirstContext", "allocs/op")),
        count(n("ResultFirstTimeAfter", "allocs/op")),
        count(n("ResultFirstTimerStop", "allocs/op")),
        f(ctx.zip(stop).map(|(a, b)| a - b)),
        ratio(div(ctx, stop), "x of the timer race"),
    );
    let wt = n("WithTimeoutFromCancelable", "ns/op");
    let wc = n("WithCancelFromCancelable", "ns/op");
    let af = n("AfterFuncStop", "ns/op");
    let _ = writeln!(
        s,
        "**2. Why is `WithTimeout` slower?** Alone, `WithTimeout(parent, 200ms)` + `cancel()` \
         under a cancellable parent took {} ({} B, {} allocations per op). It is a \
         `WithCancel` ({} here: allocate the `cancelCtx`, lock the parent's mutex, insert into \
         its `children` map, and on cancel lock both again and delete) plus a runtime timer \
         ({} for `time.AfterFunc` + `Stop`: allocate the timer, lock it and the per-P heap, \
         sift it in, and on `Stop` lock again and mark it for removal), plus the `timerCtx` \
         around both. Everything is heap-allocated and garbage-collected, and the parent's \
         mutex is shared by every sibling.\n",
        f(wt),
        count(n("WithTimeoutFromCancelable", "B/op")),
        count(n("WithTimeoutFromCancelable", "allocs/op")),
        f(wc),
        f(af),
    );
    let ch = d.t("deadline_create_cancel/cutoff_heap/0", 1);
    let cp = d.t("deadline_create_cancel/cutoff_pinned/0", 1);
    let _ = writeln!(
        s,
        "**What cutoff does instead.** The same create + cancel-early under a live parent took \
         {} on the heap ({} of Go) and {} pinned ({} of Go, no allocation). A deadline node is \
         the 64-byte tree node plus a 32-byte intrusive wheel entry in **one** allocation (or \
         none, pinned); linking it takes the parent's lock for a pointer splice (no map); its \
         timer entry goes into the creating thread's own wheel shard behind an uncontended \
         spin lock (no shared heap lock), and cancelling early is an O(1) unlink from both. \
         What remains is six uncontended atomic read-modify-writes and one clock read; see \
         DESIGN.md section 11 for the floor analysis.\n",
        f(ch),
        ratio(div(ch, wt), "x"),
        f(cp),
        ratio(div(cp, wt), "x"),
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_benchmarks_medians_and_memory() {
        let text = "GOVERSION go1.27.3 linux/amd64\nMODE full\ngoos: linux\n\
            BenchmarkWithCancelFromCancelable-2 \t 3946063\t 277.2 ns/op\t 96 B/op\t 2 allocs/op\n\
            BenchmarkWithCancelFromCancelable-2 \t 3946063\t 300.0 ns/op\t 96 B/op\t 2 allocs/op\n\
            BenchmarkWithCancelFromCancelable-2 \t 3946063\t 250.0 ns/op\t 96 B/op\t 2 allocs/op\n\
            BenchmarkFanOutCancel100000-2 \t 20\t 12573736 ns/op\t 125.7 ns/child\t 0 B/op\t 0 allocs/op\n\
            MEM WithCancelFromCancelable n=1000000 bytes_per=151.8 allocs_per=2.01 create_ns_per=589.5\n\
            PASS\nok  \tcutoffbench\t12.3s\n";
        let d = parse(text);
        assert_eq!(d.version, "go1.27.3 linux/amd64");
        assert_eq!(d.mode, "full");
        assert_eq!(d.get("WithCancelFromCancelable", "ns/op"), Some(277.2));
        assert_eq!(d.get("FanOutCancel100000", "ns/child"), Some(125.7));
        assert_eq!(d.get("FanOutCancel100000", "allocs/op"), Some(0.0));
        assert_eq!(d.mem["WithCancelFromCancelable"].bytes_per, 151.8);
        assert_eq!(d.get("Missing", "ns/op"), None);
    }
}
