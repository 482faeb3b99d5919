//! Print the cutoff vs tokio-util ratio table from a criterion run (and the memory figures).
//!
//! Usage: `report [--criterion DIR] [--mem FILE] [--paired FILE] [--lateness FILE] [--rt FILE] [--env FILE]
//! [--markdown OUT --command CMD [--notes FILE]]`
//!
//! * `DIR` defaults to `$CARGO_TARGET_DIR/criterion` or `<workspace>/target/criterion`;
//! * `FILE` is what `mem --out FILE` (or `paired --out`, `lateness --out`) wrote;
//! * the deadline rows (cutoff-timer vs tokio, `benches/timer.rs`) form their own table, and
//!   the "Deadlines (cutoff-timer)" section of the markdown report;
//! * with `--markdown`, also writes a full report (machine, versions, tables, raw medians and
//!   the notes file) to `OUT`. Every number in it comes from the run; nothing is hand-edited.
//!
//! Only criterion's **median** point estimate per iteration is used. Per-element figures divide
//! it by the element count; for the threaded groups the per-iteration time is the time in
//! which every thread did one operation, so total throughput is `threads / time`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use cutoff_benches::{CHAIN, FANOUT, WAITERS};

mod chart;
mod go;

#[derive(Clone, Copy)]
struct Est {
    median: f64,
    lo: f64,
    hi: f64,
}

fn field(s: &str, key: &str) -> Option<f64> {
    let i = s.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = s[i..].trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E')))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn parse_estimates(text: &str) -> Option<Est> {
    let start = text.find("\"median\":")?;
    let rest = &text[start..];
    let end = rest.find("\"standard_error\"").unwrap_or(rest.len());
    let m = &rest[..end];
    Some(Est {
        median: field(m, "point_estimate")?,
        lo: field(m, "lower_bound")?,
        hi: field(m, "upper_bound")?,
    })
}

/// Every `<group>/<id...>/new/estimates.json` under `dir`, keyed by `group/id...`.
fn load_all(dir: &Path) -> BTreeMap<String, Est> {
    fn walk(dir: &Path, base: &Path, out: &mut BTreeMap<String, Est>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == "new") {
                    let f = p.join("estimates.json");
                    if let Some(est) = std::fs::read_to_string(&f)
                        .ok()
                        .and_then(|t| parse_estimates(&t))
                    {
                        let key = dir
                            .strip_prefix(base)
                            .unwrap_or(dir)
                            .to_string_lossy()
                            .replace('\\', "/");
                        out.insert(key, est);
                    }
                } else if p.file_name().is_some_and(|n| n != "base" && n != "report") {
                    walk(&p, base, out);
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn load_paired(path: Option<&Path>) -> BTreeMap<String, (f64, f64, f64)> {
    let mut m = BTreeMap::new();
    if let Some(text) = path.and_then(|p| std::fs::read_to_string(p).ok()) {
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if let [k, a, b, c] = f[..]
                && let (Ok(a), Ok(b), Ok(c)) = (a.parse(), b.parse(), c.parse())
            {
                m.insert(k.to_string(), (a, b, c));
            }
        }
    }
    m
}

fn load_mem(path: Option<&Path>) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    if let Some(text) = path.and_then(|p| std::fs::read_to_string(p).ok()) {
        for line in text.lines() {
            if let Some((k, v)) = line.split_once(' ') {
                m.insert(k.to_string(), v.to_string());
            }
        }
    }
    m
}

/// Lower is better (a time or bytes ratio) or higher is better (a throughput multiple).
#[derive(Clone, Copy)]
enum Goal {
    AtMost(f64),
    AtLeast(f64),
    Info,
}

impl Goal {
    fn text(self, unit: &str) -> String {
        match self {
            Goal::AtMost(x) => format!("<= {x}{unit}"),
            Goal::AtLeast(x) => format!(">= {x}{unit}"),
            Goal::Info => "-".into(),
        }
    }
    fn verdict(self, v: Option<f64>) -> &'static str {
        match (self, v) {
            (Goal::Info, _) => "-",
            (_, None) => "NO DATA",
            (Goal::AtMost(t), Some(v)) if v <= t => "PASS",
            (Goal::AtLeast(t), Some(v)) if v >= t => "PASS",
            _ => "MISS",
        }
    }
}

struct Row {
    what: String,
    cutoff: String,
    other: String,
    metric: String,
    /// cutoff / tokio-util (shown).
    value: Option<f64>,
    /// What the target is checked against: `value`, unless the target is absolute.
    check: Option<f64>,
    goal: Goal,
    unit: &'static str,
    /// Key of the paired cross-check of this row (`paired` bin), if any.
    paired: Option<String>,
}

fn ns(v: Option<f64>) -> String {
    match v {
        None => "n/a".into(),
        Some(v) if v < 10.0 => format!("{v:.2} ns"),
        Some(v) if v < 10_000.0 => format!("{v:.1} ns"),
        Some(v) => format!("{:.1} us", v / 1000.0),
    }
}

fn mops(v: Option<f64>) -> String {
    match v {
        None => "n/a".into(),
        Some(v) if v >= 1000.0 => format!("{:.2} G/s", v / 1000.0),
        Some(v) => format!("{v:.1} M/s"),
    }
}

fn paired_text(p: Option<(f64, f64, f64)>) -> String {
    match p {
        None => "-".into(),
        Some((m, lo, hi)) => format!("{m:.2}x [{lo:.2}-{hi:.2}]"),
    }
}

fn ratio(v: Option<f64>, unit: &str) -> String {
    match v {
        None => "n/a".into(),
        Some(v) => format!("{v:.2}{unit}"),
    }
}

struct Data {
    est: BTreeMap<String, Est>,
    mem: BTreeMap<String, String>,
    /// key -> (median, lower quartile, upper quartile) of the paired ratios.
    paired: BTreeMap<String, (f64, f64, f64)>,
    /// `lateness.<impl>.<pending>.<run>` -> "early p50 p90 p99 max load1".
    lateness: BTreeMap<String, String>,
    /// What `benches/go.sh` measured, if it ran.
    go: Option<go::GoData>,
    /// The markdown `rt_latency --out` wrote (root only), if it ran.
    rt: Option<String>,
}

impl Data {
    /// Median ns per iteration divided by `per`.
    fn t(&self, key: &str, per: usize) -> Option<f64> {
        self.est.get(key).map(|e| e.median / per as f64)
    }
    /// Total throughput in M ops/s of a threaded benchmark.
    fn tput(&self, group: &str, id: &str, threads: usize) -> Option<f64> {
        self.t(&format!("{group}/{id}/{threads}"), 1)
            .map(|t| threads as f64 / t * 1000.0)
    }
    fn paired(&self, key: Option<&str>) -> Option<(f64, f64, f64)> {
        key.and_then(|k| self.paired.get(k).copied())
    }
    fn mem(&self, key: &str) -> Option<f64> {
        self.mem.get(key).and_then(|v| v.parse().ok())
    }
}

fn div(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    }
}

fn time_row(d: &Data, what: &str, c: &str, o: &str, per: usize, goal: Goal) -> Row {
    let (a, b) = (d.t(c, per), d.t(o, per));
    Row {
        what: what.into(),
        cutoff: ns(a),
        other: ns(b),
        metric: "time ratio".into(),
        value: div(a, b),
        check: div(a, b),
        goal,
        unit: "x",
        paired: Some(c.to_string()),
    }
}

fn vs_tokio(d: &Data) -> Vec<Row> {
    let mut rows = vec![
        time_row(
            d,
            "is_cancelled(), CancelToken of a live child",
            "is_cancelled/cutoff_token",
            "is_cancelled/tokio_util",
            1,
            Goal::AtMost(0.25),
        ),
        time_row(
            d,
            "is_cancelled(), pinned Node (ChildNode)",
            "is_cancelled/cutoff_pinned",
            "is_cancelled/tokio_util",
            1,
            Goal::AtMost(0.25),
        ),
    ];
    let g = "is_cancelled_threads";
    let (c1, c2) = (d.tput(g, "cutoff_token", 1), d.tput(g, "cutoff_token", 2));
    let (t1, t2) = (d.tput(g, "tokio_util", 1), d.tput(g, "tokio_util", 2));
    rows.push(Row {
        what: "is_cancelled(), 2 threads on one token: total throughput".into(),
        cutoff: mops(c2),
        other: mops(t2),
        metric: "throughput multiple".into(),
        value: div(c2, t2),
        check: div(c2, t2),
        goal: Goal::Info,
        unit: "x",
        paired: None,
    });
    rows.push(Row {
        what: "is_cancelled() scaling: 2-thread total / 1-thread total".into(),
        cutoff: ratio(div(c2, c1), "x"),
        other: ratio(div(t2, t1), "x"),
        metric: "cutoff 2t/1t".into(),
        value: div(c2, c1),
        check: div(c2, c1),
        goal: Goal::AtLeast(1.8),
        unit: "x",
        paired: Some("is_cancelled_threads/cutoff_token/scaling".into()),
    });
    let (f1, f2) = (
        d.tput(g, "floor_atomic_load", 1),
        d.tput(g, "floor_atomic_load", 2),
    );
    rows.push(Row {
        what: "  same scaling for the floor (bare atomic load), for reference".into(),
        cutoff: ratio(div(f2, f1), "x"),
        other: "-".into(),
        metric: "floor 2t/1t".into(),
        value: None,
        check: None,
        goal: Goal::Info,
        unit: "x",
        paired: Some("is_cancelled_threads/floor_atomic_load/scaling".into()),
    });
    rows.push(time_row(
        d,
        "child create+drop, heap (`source.child()`)",
        "child_create_drop/cutoff_heap",
        "child_create_drop/tokio_util",
        1,
        Goal::AtMost(0.5),
    ));
    rows.push(time_row(
        d,
        "child create+drop, pinned (`pin!(ChildNode::new(..)).link()`)",
        "child_create_drop/cutoff_pinned",
        "child_create_drop/tokio_util",
        1,
        Goal::AtMost(0.3),
    ));
    let g = "child_create_drop_threads";
    for (id, label, goal) in [
        ("cutoff_heap", "heap", Goal::AtLeast(3.0)),
        ("cutoff_pinned", "pinned", Goal::Info),
    ] {
        let (c, t) = (d.tput(g, id, 2), d.tput(g, "tokio_util", 2));
        rows.push(Row {
            what: format!("child create+drop, 2 threads, one parent, {label}: total throughput"),
            cutoff: mops(c),
            other: mops(t),
            metric: "throughput multiple".into(),
            value: div(c, t),
            check: div(c, t),
            goal,
            unit: "x",
            paired: Some(format!("{g}/{id}/2")),
        });
    }
    let (c1, c2) = (d.tput(g, "cutoff_heap", 1), d.tput(g, "cutoff_heap", 2));
    let (t1, t2) = (d.tput(g, "tokio_util", 1), d.tput(g, "tokio_util", 2));
    rows.push(Row {
        what: "child create+drop scaling, heap: 2-thread total / 1-thread total".into(),
        cutoff: ratio(div(c2, c1), "x"),
        other: ratio(div(t2, t1), "x"),
        metric: "cutoff 2t/1t".into(),
        value: div(c2, c1),
        check: div(c2, c1),
        goal: Goal::Info,
        unit: "x",
        paired: None,
    });
    let f = FANOUT;
    rows.push(time_row(
        d,
        &format!("cancel a parent with {f} live heap children, per child"),
        &format!("fanout_cancel/cutoff_heap/{f}"),
        &format!("fanout_cancel/tokio_util/{f}"),
        f,
        Goal::AtMost(0.5),
    ));
    rows.push(time_row(
        d,
        &format!("cancel a parent with {f} live pinned children, per child"),
        &format!("fanout_cancel/cutoff_pinned/{f}"),
        &format!("fanout_cancel/tokio_util/{f}"),
        f,
        Goal::AtMost(0.5),
    ));
    rows.push(time_row(
        d,
        &format!("cancel the root of a {CHAIN}-deep chain, per node"),
        &format!("chain_cancel/cutoff_heap/{CHAIN}"),
        &format!("chain_cancel/tokio_util/{CHAIN}"),
        CHAIN,
        Goal::AtMost(0.5),
    ));
    rows.push(time_row(
        d,
        &format!("cancel waking {WAITERS} waiters on one node, per waiter"),
        &format!("wake/cutoff_token/{WAITERS}"),
        &format!("wake/tokio_util/{WAITERS}"),
        WAITERS,
        Goal::AtMost(1.0),
    ));
    let (hb, tb) = (d.mem("cutoff_heap.bytes"), d.mem("tokio_util.bytes"));
    rows.push(Row {
        what: "heap bytes per live child (1M children of one parent), heap".into(),
        cutoff: ratio(hb, " B"),
        other: ratio(tb, " B"),
        metric: "bytes ratio".into(),
        value: div(hb, tb),
        check: hb,
        goal: Goal::AtMost(64.0),
        unit: " B",
        paired: None,
    });
    let pb = d.mem("cutoff_pinned.bytes");
    rows.push(Row {
        what: "heap bytes per live child, pinned".into(),
        cutoff: ratio(pb, " B"),
        other: ratio(tb, " B"),
        metric: "bytes ratio".into(),
        value: div(pb, tb),
        check: pb,
        goal: Goal::AtMost(0.0),
        unit: " B",
        paired: None,
    });
    rows
}

/// The deadline (cutoff-timer) rows. Rows of the full-only groups are left out when their
/// data is absent (quick mode).
fn timer_rows(d: &Data) -> Vec<Row> {
    let g = "deadline_create_cancel";
    let p = cutoff_benches::PENDING;
    let mut rows = Vec::new();
    for (id, label) in [
        ("cutoff_heap", "heap (`with_timeout(&parent, 200ms)`)"),
        (
            "cutoff_pinned",
            "pinned (`pin!(Deadline::after(..)).link()`)",
        ),
    ] {
        let mut r = time_row(
            d,
            &format!("deadline create+cancel early, {label}"),
            &format!("{g}/{id}/0"),
            &format!("{g}/tokio/0"),
            1,
            Goal::AtMost(0.3),
        );
        r.paired = Some(format!("{g}/{id}/0"));
        rows.push(r);
    }
    let t0 = d.t(&format!("{g}/tokio/0"), 1);
    let tp = d.t(&format!("{g}/tokio/{p}"), 1);
    for (id, label) in [("cutoff_heap", "heap"), ("cutoff_pinned", "pinned")] {
        let c0 = d.t(&format!("{g}/{id}/0"), 1);
        let cp = d.t(&format!("{g}/{id}/{p}"), 1);
        if cp.is_none() && tp.is_none() {
            continue;
        }
        rows.push(Row {
            what: format!("  same with {p} other deadlines pending, {label}: vs tokio with {p}"),
            cutoff: ns(cp),
            other: ns(tp),
            metric: "time ratio".into(),
            value: div(cp, tp),
            check: div(cp, tp),
            goal: Goal::Info,
            unit: "x",
            paired: None,
        });
        rows.push(Row {
            what: format!("  {label}: time with {p} pending / time with 0 pending"),
            cutoff: ratio(div(cp, c0), "x"),
            other: ratio(div(tp, t0), "x"),
            metric: "cutoff 1M/0".into(),
            value: div(cp, c0),
            check: div(cp, c0),
            goal: Goal::AtMost(1.2),
            unit: "x",
            paired: None,
        });
    }
    let g = "deadline_threads";
    let (tk1, tk2) = (d.tput(g, "tokio", 1), d.tput(g, "tokio", 2));
    for (id, label, goal) in [
        (
            "cutoff_heap",
            "heap, one parent per thread",
            Goal::AtLeast(1.6),
        ),
        (
            "cutoff_heap_shared",
            "heap, one shared parent",
            Goal::AtLeast(1.6),
        ),
        (
            "cutoff_pinned",
            "pinned, one parent per thread",
            Goal::AtLeast(1.6),
        ),
    ] {
        let (c1, c2) = (d.tput(g, id, 1), d.tput(g, id, 2));
        if c1.is_none() && c2.is_none() {
            continue;
        }
        rows.push(Row {
            what: format!("deadline create+cancel, 2 threads, {label}: total throughput"),
            cutoff: mops(c2),
            other: mops(tk2),
            metric: "throughput multiple".into(),
            value: div(c2, tk2),
            check: div(c2, tk2),
            goal: Goal::Info,
            unit: "x",
            paired: None,
        });
        rows.push(Row {
            what: format!("  scaling, {label}: 2-thread total / 1-thread total"),
            cutoff: ratio(div(c2, c1), "x"),
            other: ratio(div(tk2, tk1), "x"),
            metric: "cutoff 2t/1t".into(),
            value: div(c2, c1),
            check: div(c2, c1),
            goal,
            unit: "x",
            paired: (id == "cutoff_heap").then(|| format!("{g}/cutoff_heap/scaling")),
        });
    }
    let (hb, tb) = (d.mem("timer_heap.bytes"), d.mem("tokio_sleep.bytes"));
    rows.push(Row {
        what: "heap bytes per pending deadline, heap (1M `with_timeout(.., 1h)`)".into(),
        cutoff: ratio(hb, " B"),
        other: ratio(tb, " B"),
        metric: "bytes ratio".into(),
        value: div(hb, tb),
        check: hb,
        goal: Goal::AtMost(96.0),
        unit: " B",
        paired: None,
    });
    let pb = d.mem("timer_pinned.bytes");
    rows.push(Row {
        what: "heap bytes per pending deadline, pinned `Deadline`".into(),
        cutoff: ratio(pb, " B"),
        other: ratio(tb, " B"),
        metric: "bytes ratio".into(),
        value: div(pb, tb),
        check: pb,
        goal: Goal::AtMost(0.0),
        unit: " B",
        paired: None,
    });
    let pa = d.mem("timer_pinned_stack.allocs");
    rows.push(Row {
        what: "allocations while a pinned deadline is linked (create+cancel loop)".into(),
        cutoff: ratio(pa, ""),
        other: ratio(d.mem("tokio_sleep.allocs"), ""),
        metric: "count".into(),
        value: None,
        check: pa,
        goal: Goal::AtMost(0.0),
        unit: "",
        paired: None,
    });
    rows
}

/// The lateness table (from `lateness --out`): one row per implementation, pending count and
/// run; cutoff-timer rows are judged against the targets.
fn lateness_table(d: &Data, md: bool) -> (String, usize, usize) {
    let mut s = String::new();
    let (mut pass, mut miss) = (0, 0);
    if d.lateness.is_empty() {
        return (s, 0, 0);
    }
    let mut keys: Vec<(&str, usize, usize, &String)> = d
        .lateness
        .iter()
        .filter_map(|(k, v)| {
            let mut it = k.split('.').skip(1);
            let imp = it.next()?;
            let pending = it.next()?.parse().ok()?;
            let run = it.next()?.parse().ok()?;
            Some((imp, pending, run, v))
        })
        .collect();
    keys.sort_by_key(|&(imp, pending, run, _)| (imp, pending, run));
    if md {
        s.push_str("| timer | other pending | run | early | p50 ms | p90 ms | p99 ms | max ms | load1 before | result (0 early, p50 <= 0.25, p99 <= 1.0) |\n");
        s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    } else {
        let _ = writeln!(
            s,
            "{:<13} {:>8} {:>4} {:>6} {:>8} {:>8} {:>8} {:>8} {:>6}  result (0 early, p50 <= 0.25 ms, p99 <= 1.0 ms)",
            "lateness", "pending", "run", "early", "p50 ms", "p90 ms", "p99 ms", "max ms", "load1"
        );
    }
    for (imp, pending, run, v) in keys {
        let f: Vec<&str> = v.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok());
        let verdict = if imp == "cutoff" {
            match (num(0), num(1), num(3)) {
                (Some(e), Some(p50), Some(p99)) if e == 0.0 && p50 <= 0.25 && p99 <= 1.0 => {
                    pass += 1;
                    "PASS"
                }
                _ => {
                    miss += 1;
                    "MISS"
                }
            }
        } else {
            "-"
        };
        let name = if imp == "cutoff" {
            "cutoff-timer"
        } else {
            "tokio (current_thread)"
        };
        let c = |i: usize| f.get(i).copied().unwrap_or("?");
        let ms = |i: usize| num(i).map_or("?".into(), |x| format!("{x:.3}"));
        if md {
            let _ = writeln!(
                s,
                "| {name} | {pending} | {run} | {} | {} | {} | {} | {} | {} | **{verdict}** |",
                c(0),
                ms(1),
                ms(2),
                ms(3),
                ms(4),
                c(5)
            );
        } else {
            let _ = writeln!(
                s,
                "{:<13} {pending:>8} {run:>4} {:>6} {:>8} {:>8} {:>8} {:>8} {:>6}  {verdict}",
                if imp == "cutoff" {
                    "cutoff-timer"
                } else {
                    "tokio"
                },
                c(0),
                ms(1),
                ms(2),
                ms(3),
                ms(4),
                c(5)
            );
        }
    }
    (s, pass, miss)
}

/// The ratio table of `rows` (text or markdown); returns it with the pass/miss counts.
fn rows_table(d: &Data, rows: &[Row], md: bool, head: &str) -> (String, usize, usize) {
    let mut s = String::new();
    let (mut pass, mut miss) = (0, 0);
    if md {
        let _ = writeln!(
            s,
            "| row | cutoff | {head} | metric | cutoff/{head} | target | result | paired [IQR] | paired result |"
        );
        s.push_str("|---|---:|---:|---|---:|---|---|---:|---|\n");
    } else {
        let _ = writeln!(
            s,
            "{:<72} {:>11} {:>11} {:>10} {:>9}  result   paired [IQR]",
            format!("row (cutoff vs {head})"),
            "cutoff",
            head,
            "ratio",
            "target"
        );
    }
    for r in rows {
        let v = r.goal.verdict(r.check);
        match v {
            "PASS" => pass += 1,
            "MISS" | "NO DATA" => miss += 1,
            _ => {}
        }
        let p = d.paired(r.paired.as_deref());
        let pv = if p.is_some() {
            r.goal.verdict(p.map(|x| x.0))
        } else if md {
            "-"
        } else {
            ""
        };
        if md {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | **{}** | {} | {} |",
                r.what.trim_start(),
                r.cutoff,
                r.other,
                r.metric,
                ratio(r.value, "x"),
                r.goal.text(r.unit),
                v,
                paired_text(p),
                pv
            );
        } else {
            let _ = writeln!(
                s,
                "{:<72} {:>11} {:>11} {:>10} {:>9}  {:<7}  {} {}",
                r.what,
                r.cutoff,
                r.other,
                ratio(r.value, "x"),
                r.goal.text(r.unit),
                v,
                paired_text(p),
                pv
            );
        }
    }
    (s, pass, miss)
}

struct FloorRow {
    what: String,
    cutoff: Option<f64>,
    tokio: Option<f64>,
    floor: Option<f64>,
    floor_name: String,
    goal: Goal,
    paired: Option<String>,
}

fn vs_floor(d: &Data) -> Vec<FloorRow> {
    let mut rows = Vec::new();
    let mut push = |what: &str, c: &str, t: &str, f: &str, per: usize, goal: Goal| {
        rows.push(FloorRow {
            what: what.into(),
            cutoff: d.t(c, per),
            tokio: d.t(t, per),
            floor: d.t(f, per),
            floor_name: f.split('/').nth(1).unwrap_or(f).to_string(),
            goal,
            paired: Some(format!("{c}:floor")),
        })
    };
    push(
        "is_cancelled(), CancelToken",
        "is_cancelled/cutoff_token",
        "is_cancelled/tokio_util",
        "is_cancelled/floor_atomic_load",
        1,
        Goal::AtMost(1.5),
    );
    push(
        "is_cancelled(), pinned Node",
        "is_cancelled/cutoff_pinned",
        "is_cancelled/tokio_util",
        "is_cancelled/floor_atomic_load",
        1,
        Goal::AtMost(1.5),
    );
    push(
        "child create+drop, pinned",
        "child_create_drop/cutoff_pinned",
        "child_create_drop/tokio_util",
        "child_create_drop/floor_two_cas",
        1,
        Goal::AtMost(3.0),
    );
    push(
        "child create+drop, heap",
        "child_create_drop/cutoff_heap",
        "child_create_drop/tokio_util",
        "child_create_drop/floor_box_64b",
        1,
        Goal::Info,
    );
    push(
        "child create+drop, heap (vs two CAS)",
        "child_create_drop/cutoff_heap",
        "child_create_drop/tokio_util",
        "child_create_drop/floor_two_cas",
        1,
        Goal::Info,
    );
    push(
        "cancel waking waiters, per waiter",
        &format!("wake/cutoff_token/{WAITERS}"),
        &format!("wake/tokio_util/{WAITERS}"),
        &format!("wake/floor_waker_wake/{WAITERS}"),
        WAITERS,
        Goal::Info,
    );
    let g = "is_cancelled_threads";
    rows.push(FloorRow {
        what: "is_cancelled(), 2 threads: per-op time (each thread)".into(),
        cutoff: d.t(&format!("{g}/cutoff_token/2"), 1),
        tokio: d.t(&format!("{g}/tokio_util/2"), 1),
        floor: d.t(&format!("{g}/floor_atomic_load/2"), 1),
        floor_name: "floor_atomic_load, 2 threads".into(),
        goal: Goal::Info,
        paired: None,
    });
    rows
}

fn render(d: &Data, md: bool) -> (String, usize, usize) {
    let mut s = String::new();
    let (mut pass, mut miss) = (0, 0);
    let rows = vs_tokio(d);
    let frows = vs_floor(d);
    let mut count = |v: &str| match v {
        "PASS" => pass += 1,
        "MISS" | "NO DATA" => miss += 1,
        _ => {}
    };
    if md {
        s.push_str(
            "| row | cutoff | tokio-util | metric | cutoff/tokio-util | target | result | paired [IQR] | paired result |\n",
        );
        s.push_str("|---|---:|---:|---|---:|---|---|---:|---|\n");
        for r in &rows {
            let v = r.goal.verdict(r.check);
            count(v);
            let p = d.paired(r.paired.as_deref());
            let pv = if p.is_some() {
                r.goal.verdict(p.map(|x| x.0))
            } else {
                "-"
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | **{}** | {} | {} |",
                r.what,
                r.cutoff,
                r.other,
                r.metric,
                ratio(r.value, "x"),
                r.goal.text(r.unit),
                v,
                paired_text(p),
                pv
            );
        }
        s.push_str("\n### Physical floors (measured in the same run)\n\n");
        s.push_str("| row | cutoff | tokio-util | floor | floor value | cutoff/floor | tokio-util/floor | target | result | paired cutoff/floor [IQR] | paired result |\n");
        s.push_str("|---|---:|---:|---|---:|---:|---:|---|---|---:|---|\n");
        for r in &frows {
            let v = r.goal.verdict(div(r.cutoff, r.floor));
            count(v);
            let p = d.paired(r.paired.as_deref());
            let pv = if p.is_some() {
                r.goal.verdict(p.map(|x| x.0))
            } else {
                "-"
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | **{}** | {} | {} |",
                r.what,
                ns(r.cutoff),
                ns(r.tokio),
                r.floor_name,
                ns(r.floor),
                ratio(div(r.cutoff, r.floor), "x"),
                ratio(div(r.tokio, r.floor), "x"),
                r.goal.text("x"),
                v,
                paired_text(p),
                pv
            );
        }
    } else {
        let _ = writeln!(
            s,
            "{:<72} {:>11} {:>11} {:>10} {:>9}  result   paired [IQR]",
            "row (cutoff vs tokio-util)", "cutoff", "tokio-util", "ratio", "target"
        );
        for r in &rows {
            let v = r.goal.verdict(r.check);
            count(v);
            let p = d.paired(r.paired.as_deref());
            let pv = if p.is_some() {
                r.goal.verdict(p.map(|x| x.0))
            } else {
                ""
            };
            let _ = writeln!(
                s,
                "{:<72} {:>11} {:>11} {:>10} {:>9}  {:<7}  {} {}",
                r.what,
                r.cutoff,
                r.other,
                ratio(r.value, "x"),
                r.goal.text(r.unit),
                v,
                paired_text(p),
                pv
            );
        }
        let _ = writeln!(
            s,
            "\n{:<52} {:>10} {:>10} {:>10} {:>9} {:>9}  result   paired [IQR]",
            "row (vs physical floor)", "cutoff", "floor", "cut/floor", "tok/floor", "target"
        );
        for r in &frows {
            let v = r.goal.verdict(div(r.cutoff, r.floor));
            count(v);
            let p = d.paired(r.paired.as_deref());
            let pv = if p.is_some() {
                r.goal.verdict(p.map(|x| x.0))
            } else {
                ""
            };
            let _ = writeln!(
                s,
                "{:<52} {:>10} {:>10} {:>10} {:>9} {:>9}  {:<7}  {} {}   ({})",
                r.what,
                ns(r.cutoff),
                ns(r.floor),
                ratio(div(r.cutoff, r.floor), "x"),
                ratio(div(r.tokio, r.floor), "x"),
                r.goal.text("x"),
                v,
                paired_text(p),
                pv,
                r.floor_name
            );
        }
    }
    (s, pass, miss)
}

fn lock_version(lock: &str, name: &str) -> String {
    let pat = format!("name = \"{name}\"\nversion = \"");
    lock.find(&pat)
        .map(|i| {
            let rest = &lock[i + pat.len()..];
            rest[..rest.find('"').unwrap_or(0)].to_string()
        })
        .unwrap_or_else(|| "?".into())
}

fn cmd_out(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".into())
}

fn markdown(
    d: &Data,
    root: &Path,
    command: &str,
    notes: Option<&Path>,
    env: Option<&Path>,
    go_note: &str,
    svg: Option<&Path>,
) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|x| x.1.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap_or_default();
    let mut s = String::new();
    s.push_str(
        "# Benchmarks: cutoff vs Go `context`, tokio-util `CancellationToken` and tokio timers\n\n",
    );
    s.push_str(
        "<!-- Generated by `bash benches/compare.sh --full` (benches/src/bin/report/). \
         Do not edit the numbers by hand: re-run the command. -->\n\n",
    );
    let _ = writeln!(
        s,
        "Both libraries run side by side in **one** criterion run, with the same settings per \
         group, together with physical floors (a bare atomic load, two CASes, a 64 B Box). \
         This is a **{nproc}-core shared, noisy VM**: absolute numbers move by 10-30% between runs \
         (allocation-heavy and 2-thread rows the most), so the **ratios** measured within one \
         run are what is comparable, not the nanoseconds.\n"
    );
    s.push_str("## How it was produced\n\n");
    let _ = writeln!(s, "```sh\n{command}\n```\n");
    s.push_str(
        "It runs `cargo bench -p cutoff-benches --bench compare` (full settings: warm-up 0.5 s, \
         measurement 1.5 s, 30 samples for per-op groups; flat sampling, warm-up 0.2 s, \
         measurement 1 s (of timed work only), 20 samples for the `iter_custom` groups), then \
         `target/release/mem`, `target/release/paired` (41 rounds) and \
         `target/release/report`; the deadline benchmarks (`--bench timer`, same per-op \
         settings) and `target/release/lateness` (3 runs) run in the same invocation. Figures are criterion **medians**; per-child/per-node/per-waiter \
         figures divide the median per iteration by the count. In the 2-thread groups both \
         threads start behind a `Barrier` and the wall time from the first start to the last \
         end is reported per operation; total throughput = threads / that time. \
         `bash benches/compare.sh` (no `--full`) is the same with short settings \
         (`CUTOFF_BENCH_QUICK=1`).\n\n",
    );
    s.push_str("## Machine and versions\n\n| item | value |\n|---|---|\n");
    let _ = writeln!(s, "| CPU | {cpu} |");
    let _ = writeln!(s, "| cores (nproc) | {nproc} |");
    let _ = writeln!(s, "| kernel | Linux {kernel} |");
    let _ = writeln!(s, "| load average at report time | {} |", load.trim());
    let _ = writeln!(s, "| rustc | {} |", cmd_out("rustc", &["-V"]));
    for c in ["cutoff", "tokio-util", "tokio", "criterion"] {
        let _ = writeln!(s, "| {c} | {} |", lock_version(&lock, c));
    }
    match &d.go {
        Some(g) => {
            let _ = writeln!(
                s,
                "| Go | {} ({} run of `benches/go.sh`) |",
                g.version, g.mode
            );
        }
        None => {
            let _ = writeln!(
                s,
                "| Go | not measured in this run: {} |",
                if go_note.is_empty() {
                    "no Go results"
                } else {
                    go_note
                }
            );
        }
    }
    let _ = writeln!(
        s,
        "| git commit | {} |",
        cmd_out(
            "git",
            &[
                "-C",
                &root.to_string_lossy(),
                "rev-parse",
                "--short",
                "HEAD"
            ]
        )
    );
    let _ = writeln!(
        s,
        "| date (UTC) | {} |",
        cmd_out("date", &["-u", "+%Y-%m-%d %H:%M"])
    );
    s.push('\n');
    if let Some(text) = env.and_then(|p| std::fs::read_to_string(p).ok()) {
        s.push_str("Other load on the machine when the measurement started (`/proc/loadavg`, busiest processes, CPU idle share over 3 s):\n\n```text\n");
        s.push_str(text.trim_end());
        s.push_str("\n```\n\n");
    }

    if let Some(svg) = svg {
        let name = svg
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let _ = writeln!(
            s,
            "## Summary\n\nEvery \"lower is better\" ratio of this run (time or bytes, cutoff / peer), \
             coloured by its target's verdict; the tables below have the numbers.\n\n![cutoff / peer ratios]({name})\n"
        );
    }
    let (table, pass, miss) = render(d, true);
    let _ = writeln!(
        s,
        "## Results\n\nTargets met: **{pass}**, missed: **{miss}**.\n\n\
         \"time ratio\" = cutoff time / tokio-util time (lower is better); \"throughput \
         multiple\" = cutoff total ops/s / tokio-util total ops/s (higher is better). \
         \"result\" judges the criterion medians. \"paired\" is the cross-check from \
         `src/bin/paired.rs`: the same bodies run in alternating short batches (cutoff, \
         tokio-util, tokio-util, cutoff, ...), one ratio per round, median and interquartile \
         range over the rounds; load drift on the shared machine cancels out of each round, so \
         where the two disagree, trust the paired ratio.\n"
    );
    s.push_str(&table);

    s.push_str("\n## Memory (`benches/src/bin/mem.rs`, counting global allocator)\n\n");
    s.push_str("Requested bytes (`Layout::size`) and live allocations, measured around creating and linking N children; the `Vec`/slice that holds the handles or the pinned children is allocated before counting starts.\n\n");
    s.push_str("| row | heap B / child | allocations / child | what |\n|---|---:|---:|---|\n");
    for k in [
        "cutoff_heap",
        "cutoff_pinned",
        "cutoff_pinned_stack",
        "tokio_util",
    ] {
        let _ = writeln!(
            s,
            "| {k} | {} | {} | {} |",
            d.mem.get(&format!("{k}.bytes")).map_or("n/a", |v| v),
            d.mem.get(&format!("{k}.allocs")).map_or("n/a", |v| v),
            d.mem.get(&format!("{k}.what")).map_or("n/a", |v| v),
        );
    }
    let _ = writeln!(
        s,
        "\nType sizes: `Node` {} B, `ChildNode` {} B (the pinned child's storage lives wherever the user puts it), `CancelSource` {} B, tokio-util `CancellationToken` {} B.\n",
        d.mem.get("size_of.Node").map_or("?", |v| v),
        d.mem.get("size_of.ChildNode").map_or("?", |v| v),
        d.mem.get("size_of.CancelSource").map_or("?", |v| v),
        d.mem.get("size_of.CancellationToken").map_or("?", |v| v),
    );

    let (ttable, tpass, tmiss) = rows_table(d, &timer_rows(d), true, "tokio");
    let (ltable, lpass, lmiss) = lateness_table(d, true);
    let _ = writeln!(
        s,
        "## Deadlines (cutoff-timer)\n\n\
         Targets met: **{}**, missed: **{}** (lateness runs included).\n\n\
         `benches/benches/timer.rs`, in the same kind of criterion run (fast-group settings). \
         **cutoff**: a deadline node 200 ms out under a live parent node, dropped before it \
         fires: heap = `cutoff_timer::with_timeout(&parent, 200ms)`, pinned = \
         `pin!(Deadline::after(&parent, 200ms)).link()`, both on the global timer. **tokio**: \
         tokio-util `parent.child_token()` + `tokio::time::sleep(200ms)` polled once (so it is \
         registered in the wheel), both dropped; polled by hand with a noop waker under \
         `rt.enter()` of a current_thread runtime with only the time driver, after the driver \
         has parked once with a timer registered (`next_wake` set: steady state). The \
         \"pending\" rows keep {} other deadlines alive meanwhile (uniform in 60 s - 1 h, created \
         beforehand: cutoff heap deadlines on the global timer from the same thread; tokio \
         registered boxed sleeps on the same runtime). In the 2-thread rows each thread creates \
         and drops deadlines in a loop (`run_threads`, as in the core's 2-thread rows); tokio's \
         threads share one runtime's driver. Memory rows come from `mem` (counting allocator, \
         requested bytes); \"paired\" is the alternating-batch cross-check of `paired`.\n",
        tpass + lpass,
        tmiss + lmiss,
        cutoff_benches::PENDING
    );
    s.push_str(&ttable);
    let _ = writeln!(
        s,
        "\nType sizes: pinned `Deadline` {} B (lives wherever the user puts it; it allocates nothing).\n",
        d.mem.get("size_of.Deadline").map_or("?", |v| v)
    );
    if !ltable.is_empty() {
        s.push_str(
            "### Lateness (`target/release/lateness`)\n\n\
             1,000 concurrent timeouts, deadlines uniform in 1-50 ms after creation, with 0 and \
             with 100,000 other deadlines pending (60 s - 1 h out). cutoff-timer: heap \
             `with_deadline(&root, at)` nodes, lateness = the `Instant` recorded by each node's \
             `on_cancel` callback (it runs on the timer thread) - `at`. tokio: 1,000 tasks on a \
             current_thread runtime (time driver only), `sleep_until(at).await` then \
             `Instant::now()` - `at`. \"early\" counts callbacks that ran before their deadline. \
             Targets (cutoff-timer, idle machine): 0 early, p50 <= 0.25 ms, p99 <= 1.0 ms. \
             `load1` is the 1-minute load average just before each run.\n\n",
        );
        s.push_str(&ltable);
        s.push('\n');
    }

    if let Some(rt) = &d.rt {
        s.push_str(
            "## Real-time latency (`target/release/rt_latency`, two SCHED_FIFO threads on one CPU)\n\n\
             A low-priority thread (`SCHED_FIFO` 10) creates and drops children of a shared parent \
             (9 ms on, 1 ms off, under the kernel's 95% real-time budget); a high-priority thread \
             (`SCHED_FIFO` 20) pinned to the same CPU sleeps 200 µs and then times one create + \
             drop. Each case runs in its own process; one whose high thread makes no progress is \
             killed and reported as a livelock (what every cutoff row showed before contended \
             waits parked: issue 11). Target: cutoff's max within 2x of tokio-util's.\n\n",
        );
        s.push_str(rt);
        s.push('\n');
    }

    if d.go.is_some() {
        let (gtable, gpass, gmiss) = rows_table(d, &go::go_rows(d), true, "Go");
        let _ = writeln!(
            s,
            "## cutoff vs Go `context`\n\nTargets met: **{gpass}**, missed: **{gmiss}**.\n\n\
             Go's benchmarks are `benches/go/bench_test.go`, run by `benches/go.sh` in the same \
             invocation as the criterion groups (standard library only, built offline; `-cpu 2`, \
             each loops `b.N` with `-benchmem`; the Go figure is the median over its `-count` \
             runs). Go's memory figures are `runtime.MemStats.HeapAlloc` after `runtime.GC()` \
             with 1,000,000 live contexts (`benches/go/mem_test.go`), cutoff's come from the \
             counting allocator of `mem` (requested bytes). \"paired\" does not apply (Go runs in \
             its own process).\n"
        );
        s.push_str(&gtable);
        s.push_str(
            "\n| Go memory row | bytes / context | allocations / context |\n|---|---:|---:|\n",
        );
        if let Some(g) = &d.go {
            for (k, m) in &g.mem {
                let _ = writeln!(s, "| {k} | {:.1} | {:.2} |", m.bytes_per, m.allocs_per);
            }
        }
        s.push('\n');
    }
    if d.est.keys().any(|k| k.starts_with("seed_")) {
        let (seed, seed_rows) = go::seed_table(d, true);
        let (stable, _, _) = rows_table(d, &seed_rows, true, "plain timer");
        s.push_str(
            "## The seed's scenarios, done right\n\n\
             One op = one whole race: start the work (Rust: a task on a tokio runtime, Go: a \
             goroutine) that computes `a*a` and sends it on a channel, and wait for it or for the \
             timeout, whichever comes first. Rust: `benches/benches/seed.rs` (criterion); Go: \
             `Benchmark{ResultFirst,TimeoutFirst}*` in `benches/go/bench_test.go`. In the \
             timeout-first rows the work would answer only after 5 ms and the deadline is \
             1 ms, so those rows measure when each timer actually fires: a timer that rounds \
             up to a 1 ms tick and fires on the next driver turn shows about 2 ms.\n\n",
        );
        s.push_str(&seed);
        s.push('\n');
        s.push_str(&stable);
        s.push('\n');
        let answers = go::seed_answers(d);
        if !answers.is_empty() {
            s.push_str("### The seed's two questions, answered with this run's numbers\n\n");
            s.push_str(&answers);
            s.push('\n');
        }
    }
    s.push_str(
        "## All medians of this run\n\n| benchmark | median / iter | 95% CI |\n|---|---:|---|\n",
    );
    for (k, e) in &d.est {
        let _ = writeln!(
            s,
            "| {k} | {} | {} - {} |",
            ns(Some(e.median)),
            ns(Some(e.lo)),
            ns(Some(e.hi))
        );
    }
    if let Some(text) = notes.and_then(|p| std::fs::read_to_string(p).ok()) {
        s.push('\n');
        s.push_str(&text);
    }
    s
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ has a parent")
        .to_path_buf();
    let mut crit = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("criterion");
    let (mut mem, mut md, mut command, mut notes) = (None, None, String::new(), None);
    let (mut paired, mut env, mut lateness) = (None, None, None);
    let (mut gofile, mut svg, mut go_note) = (None, None, String::new());
    let mut rt = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || PathBuf::from(args.next().expect("missing value"));
        match a.as_str() {
            "--criterion" => crit = val(),
            "--mem" => mem = Some(val()),
            "--paired" => paired = Some(val()),
            "--env" => env = Some(val()),
            "--lateness" => lateness = Some(val()),
            "--markdown" => md = Some(val()),
            "--notes" => notes = Some(val()),
            "--command" => command = val().to_string_lossy().into_owned(),
            "--go" => gofile = Some(val()),
            "--go-note" => go_note = val().to_string_lossy().into_owned(),
            "--svg" => svg = Some(val()),
            "--rt" => rt = Some(val()),
            _ => panic!(
                "usage: report [--criterion DIR] [--mem FILE] [--paired FILE] [--lateness FILE] [--rt FILE] [--env FILE] [--go FILE | --go-note TEXT] [--svg OUT] [--markdown OUT --command CMD [--notes FILE]]"
            ),
        }
    }
    let d = Data {
        est: load_all(&crit),
        mem: load_mem(mem.as_deref()),
        paired: load_paired(paired.as_deref()),
        lateness: load_mem(lateness.as_deref()),
        go: gofile
            .as_deref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|t| go::parse(&t))
            .filter(|g| !g.bench.is_empty() || !g.mem.is_empty()),
        rt: rt.as_deref().and_then(|p| std::fs::read_to_string(p).ok()),
    };
    if d.est.is_empty() {
        eprintln!("no criterion results under {}", crit.display());
        std::process::exit(1);
    }
    let (table, pass, miss) = render(&d, false);
    println!("{table}");
    println!(
        "targets met: {pass}, missed: {miss}   (ratio = cutoff/tokio-util time unless marked; 'M/s' = total ops/s across threads)"
    );
    let (ttable, tpass, tmiss) = rows_table(&d, &timer_rows(&d), false, "tokio");
    let (ltable, lpass, lmiss) = lateness_table(&d, false);
    println!("\n== deadlines (cutoff-timer vs tokio-util child token + tokio sleep)\n{ttable}");
    if !ltable.is_empty() {
        println!("{ltable}");
    }
    println!(
        "deadline targets met: {}, missed: {}{}",
        tpass + lpass,
        tmiss + lmiss,
        if d.lateness.is_empty() {
            "   (1M-pending, 2-thread and lateness rows: `--full` only)"
        } else {
            ""
        }
    );
    let (seed, seed_rows) = go::seed_table(&d, false);
    let go_rows = go::go_rows(&d);
    if d.go.is_some() {
        let (gtable, gpass, gmiss) = rows_table(&d, &go_rows, false, "Go");
        println!(
            "\n== cutoff vs Go `context` ({})\n{gtable}go targets met: {gpass}, missed: {gmiss}",
            d.go.as_ref().map_or("", |g| g.version.as_str())
        );
    } else {
        println!(
            "\n== cutoff vs Go: skipped ({})",
            if go_note.is_empty() {
                "no Go results given (--go FILE)"
            } else {
                go_note.as_str()
            }
        );
    }
    if d.est.keys().any(|k| k.starts_with("seed_")) || d.go.is_some() {
        let (stable, _, _) = rows_table(&d, &seed_rows, false, "plain timer");
        println!("\n== the seed's scenarios (one race per op)\n{seed}\n{stable}");
    }
    if let Some(out) = &svg {
        let bars = chart_bars(&d, &go_rows);
        match chart::draw(out, "cutoff / peer, measured in one run", &bars) {
            Ok(()) => println!("wrote {} ({} bars)", out.display(), bars.len()),
            Err(e) => eprintln!("could not draw {}: {e}", out.display()),
        }
    }
    if let Some(out) = md {
        std::fs::write(
            &out,
            markdown(
                &d,
                &root,
                &command,
                notes.as_deref(),
                env.as_deref(),
                &go_note,
                svg.as_deref(),
            ),
        )
        .expect("write markdown");
        println!("wrote {}", out.display());
    }
}

/// The bars of the chart: every "lower is better" ratio row (time and bytes) against
/// tokio-util, tokio and Go that has a value.
fn chart_bars(d: &Data, go_rows: &[Row]) -> Vec<chart::Bar> {
    let mut bars = Vec::new();
    let mut add = |peer: &str, rows: &[Row]| {
        for r in rows {
            let lower_better = matches!(r.metric.as_str(), "time ratio" | "bytes ratio");
            let (Some(v), true) = (r.value, lower_better) else {
                continue;
            };
            // Rows judged on an absolute value (bytes, counts) show no ratio target.
            let target = match r.goal {
                Goal::AtMost(t) if r.unit == "x" => Some(t),
                _ => None,
            };
            bars.push(chart::Bar {
                label: format!("vs {peer}: {}", short(&r.what)),
                value: v,
                target,
                verdict: r.goal.verdict(r.check),
            });
        }
    };
    add("tokio-util", &vs_tokio(d));
    add("tokio", &timer_rows(d));
    if d.go.is_some() {
        add("Go", go_rows);
    }
    bars
}

/// A row label shortened for the chart: no markdown, no parenthesized detail.
fn short(what: &str) -> String {
    let mut s = what.trim().replace('`', "");
    if let Some(i) = s.find(" (") {
        s.truncate(i);
    }
    if s.chars().count() > 70 {
        s = s.chars().take(67).collect::<String>() + "...";
    }
    s
}
