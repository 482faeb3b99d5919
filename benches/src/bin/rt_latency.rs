//! Real-time latency: two `SCHED_FIFO` threads pinned to **one** CPU share a parent node.
//!
//! The scenario of `tests/tests/rt_priority.rs`, measured:
//!
//! * the **low**-priority thread (FIFO 10) creates and drops children of the parent in a loop
//!   (9 ms of churn, then 1 ms asleep: about 90% of the CPU, under the kernel's 95% real-time
//!   budget, `/proc/sys/kernel/sched_rt_runtime_us`; a 100% busy CPU gets both FIFO threads
//!   suspended for ~50 ms every second, which would land in the figures);
//! * the **high**-priority thread (FIFO 20) sleeps 200 µs, then times **one** create + drop
//!   with two `Instant::now()` reads (vDSO `clock_gettime`, tens of ns; the `floor` row is the
//!   same with an empty op), for `--secs` seconds after 500 unrecorded warm-up ops.
//!
//! Reported per case: the high thread's p50, p99.9 and max in µs, and for the cutoff rows the
//! ratio of their max to tokio-util's max (target: within 2x). Cases:
//! `floor`, `tokio-util` (`CancellationToken::child_token()`), `cutoff-heap`
//! (`parent.child()`), `cutoff-pinned` (`pin!(ChildNode::new(&parent))` + `link()`),
//! `cutoff-heap-deadline` (`cutoff_timer::with_timeout(&parent, 60 s)`) and
//! `cutoff-pinned-deadline` (`pin!(Deadline::after(&parent, 60 s))` + `link()`).
//!
//! **Livelock.** A lock that only spins livelocks here (the preempted low thread holds it and
//! `sched_yield` never runs a lower FIFO priority), starving the CPU for good. So each case
//! runs in a child process (this executable re-run with `--case NAME`) that prints its
//! progress every 100 ms from a non-real-time thread on another CPU; when the high thread's
//! counter stops for `--stall-secs` the parent kills the child with `SIGKILL` and reports
//! "livelock (no progress in N s)", then goes on with the next case. A child also dies with
//! its parent (`PR_SET_PDEATHSIG`), so an interrupted run leaves no spinning process behind.
//!
//! Needs Linux and the right to use `SCHED_FIFO` (root / `CAP_SYS_NICE`); a case that cannot
//! get it is reported as an error and the exit status is 1.
//!
//! Usage: `rt_latency [--secs S] [--stall-secs N] [--only CASE]... [--out FILE]`; `S`
//! defaults to `CUTOFF_RT_SECS` or 3 (1 with `CUTOFF_BENCH_QUICK=1`), `N` to 5; `FILE` gets
//! the markdown report too.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::pin::pin;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cutoff::{CancelSource, ChildNode};
use cutoff_timer::Deadline;
use tokio_util::sync::CancellationToken;

const LOW_PRIO: i32 = 10;
const HIGH_PRIO: i32 = 20;
const HIGH_PERIOD: Duration = Duration::from_micros(200);
const LOW_SLICE: Duration = Duration::from_millis(9);
const LOW_PAUSE: Duration = Duration::from_millis(1);
const WARM_UP: usize = 500;
/// A far-away timeout for the deadline cases: registered and removed, never fired.
const FAR: Duration = Duration::from_secs(60);
/// The cutoff rows' target: max within this factor of tokio-util's max.
const TARGET: f64 = 2.0;

/// (name, what the high thread times).
const CASES: &[(&str, &str)] = &[
    ("floor", "floor: empty op (the two clock reads)"),
    ("tokio-util", "tokio-util `child_token()` + drop"),
    ("cutoff-heap", "cutoff heap child `parent.child()` + drop"),
    (
        "cutoff-pinned",
        "cutoff pinned child `pin!(ChildNode::new(&parent))` + `link()` + drop",
    ),
    (
        "cutoff-heap-deadline",
        "cutoff heap deadline `with_timeout(&parent, 60 s)` + drop",
    ),
    (
        "cutoff-pinned-deadline",
        "cutoff pinned deadline `pin!(Deadline::after(&parent, 60 s))` + `link()` + drop",
    ),
];

// ---------------------------------------------------------------------------------------------
// Linux scheduling helpers (libc).

/// The CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed `cpu_set_t` is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable `cpu_set_t` of the size passed.
    let rc = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) };
    assert_eq!(
        rc,
        0,
        "sched_getaffinity: {}",
        std::io::Error::last_os_error()
    );
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `i` is below CPU_SETSIZE.
        .filter(|&i| unsafe { libc::CPU_ISSET(i, &set) })
        .collect()
}

/// The CPU the FIFO threads share, and the CPUs for everything else (the same one when there
/// is no other: then only the 5% the RT budget leaves lets the reporter run).
fn cpu_plan() -> (usize, Vec<usize>) {
    let allowed = allowed_cpus();
    let (&busy, rest) = allowed.split_first().expect("no CPU allowed?");
    (
        busy,
        if rest.is_empty() {
            vec![busy]
        } else {
            rest.to_vec()
        },
    )
}

fn pin_to(cpus: &[usize]) -> Result<(), String> {
    // SAFETY: a zeroed `cpu_set_t` is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        // SAFETY: `c` came from `allowed_cpus`, so it is below CPU_SETSIZE.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: `set` is a valid `cpu_set_t` of the size passed; pid 0 is the calling thread.
    if unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) } == 0 {
        Ok(())
    } else {
        Err(format!(
            "sched_setaffinity(CPUs {cpus:?}): {}",
            std::io::Error::last_os_error()
        ))
    }
}

/// Pin the calling thread to `cpu` and make it `SCHED_FIFO` at `prio` (threads it creates do
/// not inherit the policy: `SCHED_RESET_ON_FORK`).
fn become_rt(cpu: usize, prio: i32) -> Result<(), String> {
    pin_to(&[cpu])?;
    let param = libc::sched_param {
        sched_priority: prio,
    };
    // SAFETY: `param` is a valid `sched_param`; pid 0 is the calling thread.
    let rc = unsafe {
        libc::sched_setscheduler(0, libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK, &param)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!(
            "sched_setscheduler(SCHED_FIFO, {prio}): {} (needs root / CAP_SYS_NICE and a \
             container policy that allows real-time scheduling)",
            std::io::Error::last_os_error()
        ))
    }
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "?".into())
}

// ---------------------------------------------------------------------------------------------
// Child side: one case.

/// Run one case and print `progress HIGH LOW` lines (every 100 ms) and a final
/// `result N P50 P999 MAX LOW` line (ns) on stdout, or `error MSG`.
fn child(case: &str, secs: f64) -> i32 {
    // SAFETY: `prctl(PR_SET_PDEATHSIG)` takes a signal number; no memory is passed.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let r = match case {
        "floor" => measure(secs, &(), |_| {}),
        "tokio-util" => measure(secs, &CancellationToken::new(), |p| drop(p.child_token())),
        "cutoff-heap" => measure(secs, &CancelSource::new(), |p| drop(p.child())),
        "cutoff-pinned" => measure(secs, &CancelSource::new(), |p| {
            let mut c = pin!(ChildNode::new(p));
            c.as_mut().link();
        }),
        "cutoff-heap-deadline" => measure(secs, &CancelSource::new(), |p| {
            drop(cutoff_timer::with_timeout(p, FAR));
        }),
        "cutoff-pinned-deadline" => measure(secs, &CancelSource::new(), |p| {
            let mut d = pin!(Deadline::after(p, FAR));
            d.as_mut().link();
        }),
        other => Err(format!("unknown case {other}")),
    };
    let mut out = std::io::stdout().lock();
    match r {
        Ok(line) => {
            let _ = writeln!(out, "{line}");
            0
        }
        Err(e) => {
            let _ = writeln!(out, "error {e}");
            2
        }
    }
}

fn measure<P: Sync>(secs: f64, parent: &P, op: impl Fn(&P) + Sync) -> Result<String, String> {
    let (busy, others) = cpu_plan();
    pin_to(&others)?;
    // One op on this (normal, not busy-CPU) thread first: a lazily started timer driver starts
    // here, neither real-time nor on the busy CPU.
    op(parent);
    let high_ops = AtomicU64::new(0);
    let low_ops = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let done = AtomicBool::new(false);
    let want = Duration::from_secs_f64(secs);
    let cap = (want.as_micros() / HIGH_PERIOD.as_micros()) as usize + 1;
    std::thread::scope(|s| {
        // Progress reporter: normal priority, on the other CPU(s).
        s.spawn(|| {
            let mut last = Instant::now();
            while !done.load(Relaxed) {
                std::thread::sleep(Duration::from_millis(10));
                if last.elapsed() >= Duration::from_millis(100) {
                    last = Instant::now();
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(
                        out,
                        "progress {} {}",
                        high_ops.load(Relaxed),
                        low_ops.load(Relaxed)
                    );
                    let _ = out.flush();
                }
            }
        });
        let low = s.spawn(|| -> Result<(), String> {
            become_rt(busy, LOW_PRIO)?;
            let mut slice = Instant::now();
            while !stop.load(Relaxed) {
                op(parent);
                low_ops.fetch_add(1, Relaxed);
                if slice.elapsed() >= LOW_SLICE {
                    std::thread::sleep(LOW_PAUSE);
                    slice = Instant::now();
                }
            }
            Ok(())
        });
        while low_ops.load(Relaxed) == 0 && !low.is_finished() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let high = if low.is_finished() {
            Err(String::new())
        } else {
            s.spawn(|| -> Result<Vec<u64>, String> {
                // Allocated before going real-time: the loop itself does not allocate.
                let mut ns = Vec::with_capacity(cap);
                become_rt(busy, HIGH_PRIO)?;
                for _ in 0..WARM_UP {
                    std::thread::sleep(HIGH_PERIOD);
                    op(parent);
                    high_ops.fetch_add(1, Relaxed);
                }
                let end = Instant::now() + want;
                while ns.len() < ns.capacity() {
                    std::thread::sleep(HIGH_PERIOD);
                    let t0 = Instant::now();
                    op(parent);
                    let t1 = Instant::now();
                    ns.push((t1 - t0).as_nanos() as u64);
                    high_ops.fetch_add(1, Relaxed);
                    if t1 >= end {
                        break;
                    }
                }
                Ok(ns)
            })
            .join()
            .unwrap_or_else(|_| Err("the high-priority thread panicked".into()))
        };
        stop.store(true, Relaxed);
        let low = low
            .join()
            .unwrap_or_else(|_| Err("the low-priority thread panicked".into()));
        done.store(true, Relaxed);
        low?;
        let mut ns = high?;
        ns.sort_unstable();
        let q = |p: f64| ns[((p * ns.len() as f64).ceil() as usize).clamp(1, ns.len()) - 1];
        Ok(format!(
            "result {} {} {} {} {}",
            ns.len(),
            q(0.5),
            q(0.999),
            ns[ns.len() - 1],
            low_ops.load(Relaxed)
        ))
    })
}

// ---------------------------------------------------------------------------------------------
// Parent side: every case in its own process, then the table.

enum Outcome {
    Done {
        n: u64,
        p50: u64,
        p999: u64,
        max: u64,
        low: u64,
    },
    Livelock {
        high: u64,
        low: u64,
    },
    Failed(String),
}

fn run_case(case: &str, secs: f64, stall: Duration) -> Outcome {
    let exe = std::env::current_exe().expect("current_exe");
    let mut ch = match Command::new(exe)
        .args(["--case", case, "--secs", &secs.to_string()])
        .stdout(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(format!("spawn: {e}")),
    };
    let stdout = ch.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let (mut high, mut low) = (0u64, 0u64);
    let mut moved = Instant::now();
    let mut result = None;
    // A backstop on top of the stall detector: the case cannot legitimately take this long.
    let give_up = Instant::now() + Duration::from_secs_f64(secs * 3.0 + 60.0) + stall;
    let outcome = loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                let f: Vec<&str> = line.split_whitespace().collect();
                let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                match f.first() {
                    Some(&"progress") => {
                        if num(1) != high {
                            moved = Instant::now();
                        }
                        (high, low) = (num(1), num(2));
                    }
                    Some(&"result") => {
                        result = Some(Outcome::Done {
                            n: num(1),
                            p50: num(2),
                            p999: num(3),
                            max: num(4),
                            low: num(5),
                        });
                    }
                    Some(&"error") => {
                        result = Some(Outcome::Failed(line["error ".len()..].to_string()));
                    }
                    _ => {}
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = ch.wait();
                break result.unwrap_or_else(|| {
                    Outcome::Failed(format!("child exited without a result: {status:?}"))
                });
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if result.is_none() && (moved.elapsed() >= stall || Instant::now() >= give_up) {
            // A livelocked child keeps a CPU busy at real-time priority: SIGKILL it.
            let _ = ch.kill();
            let _ = ch.wait();
            break Outcome::Livelock { high, low };
        }
    };
    let _ = reader.join();
    outcome
}

fn us(ns: u64) -> String {
    format!("{:.2}", ns as f64 / 1e3)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut case = None;
    let mut secs: f64 = std::env::var("CUTOFF_RT_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if cutoff_benches::quick() { 1.0 } else { 3.0 });
    let mut stall = 5.0f64;
    let mut only = Vec::new();
    let mut out = None;
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--case" => case = Some(val()),
            "--secs" => secs = val().parse().expect("--secs S"),
            "--stall-secs" => stall = val().parse().expect("--stall-secs N"),
            "--only" => only.push(val()),
            "--out" => out = Some(val()),
            _ => panic!(
                "usage: rt_latency [--secs S] [--stall-secs N] [--only CASE]... [--out FILE]"
            ),
        }
    }
    if let Some(case) = case {
        std::process::exit(child(&case, secs));
    }

    let allowed = allowed_cpus();
    let (busy, others) = cpu_plan();
    // This process (and the children it starts) stays off the busy CPU.
    if let Err(e) = pin_to(&others) {
        eprintln!("warning: {e}");
    }
    let stall_d = Duration::from_secs_f64(stall);
    let mut md = String::new();
    let _ = writeln!(md, "| item | value |\n|---|---|");
    let _ = writeln!(md, "| CPU | {} |", cpu_model());
    let _ = writeln!(
        md,
        "| CPUs | {} allowed; both FIFO threads on CPU {busy}, everything else on {others:?} |",
        allowed.len()
    );
    let _ = writeln!(
        md,
        "| kernel | Linux {} |",
        read_trim("/proc/sys/kernel/osrelease")
    );
    let _ = writeln!(
        md,
        "| RT budget | sched_rt_runtime_us {} of sched_rt_period_us {} |",
        read_trim("/proc/sys/kernel/sched_rt_runtime_us"),
        read_trim("/proc/sys/kernel/sched_rt_period_us")
    );
    let _ = writeln!(
        md,
        "| load average before the run | {} |",
        read_trim("/proc/loadavg")
    );
    let _ = writeln!(
        md,
        "| per case | {secs} s of high-priority ops (one per {} µs sleep, after {WARM_UP} warm-up ops); livelock = no progress in {stall} s |",
        HIGH_PERIOD.as_micros()
    );
    let _ = writeln!(md);
    print!("{md}");
    let _ = std::io::stdout().flush();

    let mut rows = Vec::new();
    for &(name, what) in CASES {
        if !only.is_empty() && !only.iter().any(|o| o == name) {
            continue;
        }
        eprintln!("== {name} ({what})");
        let o = run_case(name, secs, stall_d);
        match &o {
            Outcome::Done {
                n, p50, p999, max, ..
            } => eprintln!(
                "   {n} ops: p50 {} µs, p99.9 {} µs, max {} µs",
                us(*p50),
                us(*p999),
                us(*max)
            ),
            Outcome::Livelock { high, low } => eprintln!(
                "   livelock: no progress in {stall} s (high thread at {high} ops, low at {low}); killed"
            ),
            Outcome::Failed(e) => eprintln!("   error: {e}"),
        }
        rows.push((name, what, o));
    }

    let tokio_max = rows.iter().find_map(|(n, _, o)| match o {
        Outcome::Done { max, .. } if *n == "tokio-util" => Some(*max),
        _ => None,
    });
    let mut table = String::new();
    let _ = writeln!(
        table,
        "| case (high-priority thread's op) | high ops | low ops | p50 µs | p99.9 µs | max µs | max / tokio-util max (target ≤ {TARGET}x) |\n|---|---:|---:|---:|---:|---:|---|"
    );
    let mut failed = false;
    for (name, what, o) in &rows {
        let cutoff = name.starts_with("cutoff");
        match o {
            Outcome::Done {
                n,
                p50,
                p999,
                max,
                low,
            } => {
                let ratio = match (cutoff, tokio_max) {
                    (true, Some(t)) if t > 0 => {
                        let r = *max as f64 / t as f64;
                        format!("{r:.2}x ({})", if r <= TARGET { "met" } else { "missed" })
                    }
                    (true, _) => "n/a (no tokio-util row)".into(),
                    (false, _) => String::new(),
                };
                let _ = writeln!(
                    table,
                    "| {what} | {n} | {low} | {} | {} | {} | {ratio} |",
                    us(*p50),
                    us(*p999),
                    us(*max)
                );
            }
            Outcome::Livelock { high, low } => {
                let _ = writeln!(
                    table,
                    "| {what} | stuck after {high} | {low} | - | - | **livelock (no progress in {stall} s)** | missed (livelock) |"
                );
            }
            Outcome::Failed(e) => {
                failed = true;
                let _ = writeln!(table, "| {what} | - | - | - | - | error: {e} | |");
            }
        }
    }
    print!("{table}");
    if let Some(path) = out {
        std::fs::write(&path, format!("{md}{table}")).expect("write --out file");
    }
    if failed {
        std::process::exit(1);
    }
}
