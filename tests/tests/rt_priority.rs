//! Real-time priority probe: two `SCHED_FIFO` threads pinned to **one** CPU share a parent.
//!
//! * the **low**-priority thread (FIFO 10) creates and drops children of the parent in a loop;
//! * the **high**-priority thread (FIFO 20) wakes every 200 µs and creates and drops **one**
//!   child, [`HIGH_ITERS`] times.
//!
//! Whenever the high thread wakes while the low one is inside the parent's critical section,
//! the low one is preempted holding the lock. A lock that only spins (and `sched_yield`s,
//! which never hands the CPU to a *lower* FIFO priority) then spins forever: the high thread
//! waits for a thread that can only run once the high thread stops running. A lock that parks
//! after a bounded spin lets the low thread run, finish its critical section and wake it.
//!
//! The cases: cutoff heap children (`parent.child()`), pinned children (`ChildNode` +
//! `link`), heap deadline children on the global timer (`cutoff_timer::with_timeout`),
//! pinned deadline children (`cutoff_timer::Deadline::after` + `link`), and a control with
//! tokio-util's `CancellationToken::child_token()` (a `std` mutex, which parks) that shows the
//! harness itself finishes. One helper, [`run_case`], runs the scenario for a parent and a
//! closure doing one create+drop.
//!
//! The tests assert **progress only**: every case finishes and the high thread does all its
//! iterations. Latency figures belong to the benchmark (`benches/src/bin/rt_latency.rs`).
//!
//! **Watchdog.** A spinning FIFO thread starves its CPU, and the test harness has no timeout,
//! so a livelocked case would hang `cargo test` forever. Each case runs a watchdog thread
//! that is *not* real-time (`SCHED_OTHER`) and is pinned to the other CPUs (when there are
//! any): when the high thread's op counter does not move for [`stall`] (10 s,
//! `CUTOFF_RT_STALL_SECS` to change it) it prints the case and the counters to stderr and
//! calls `std::process::abort()`.
//!
//! **RT throttling.** The kernel keeps `/proc/sys/kernel/sched_rt_runtime_us` out of every
//! `sched_rt_period_us` for real-time threads (default 950000 of 1000000: 95%); the rest goes
//! to normal threads on that CPU (on recent kernels through the fair server). That does not
//! break a livelock (a lower-priority FIFO thread gets nothing from it) but it does suspend
//! *both* FIFO threads for ~50 ms each second when they keep the CPU 100% busy. The low thread
//! therefore churns for 9 ms and sleeps 1 ms (about 90% of the CPU, under the budget), which
//! changes nothing about the race. With a single usable CPU the watchdog (and the harness)
//! only run in that 5% share, so with throttling disabled (`-1`) and one CPU the test refuses
//! to start.
//!
//! **Requirements.** Linux, `CAP_SYS_NICE` (root) and a container policy that lets the process
//! use `SCHED_FIFO`; without them the test **fails** with a message saying so (it never skips).
//! The cases run one at a time (a process-wide lock) whatever `--test-threads` says. On code
//! that livelocks, the first cutoff case to run aborts the whole binary; run one case with
//! `cargo test -p cutoff-tests --test rt_priority --release -- --exact <name>`.
#![cfg(target_os = "linux")]

use std::io::Write as _;
use std::pin::pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use cutoff::{CancelSource, ChildNode};
use cutoff_timer::Deadline;
use tokio_util::sync::CancellationToken;

/// Iterations of the high-priority thread per case (about 0.5 s at [`HIGH_PERIOD`]).
const HIGH_ITERS: u64 = 2_000;
/// How long the high-priority thread sleeps before each op.
const HIGH_PERIOD: Duration = Duration::from_micros(200);
const LOW_PRIO: i32 = 10;
const HIGH_PRIO: i32 = 20;
/// The low thread's duty cycle: churn for `LOW_SLICE`, then sleep `LOW_PAUSE` (stays under
/// the 95% RT budget; see the module docs).
const LOW_SLICE: Duration = Duration::from_millis(9);
const LOW_PAUSE: Duration = Duration::from_millis(1);
/// A far-away timeout for the deadline cases: the entry is registered and removed, never fired.
const FAR: Duration = Duration::from_secs(60);

/// One case at a time: two cases would share the busy CPU.
static SERIAL: Mutex<()> = Mutex::new(());

/// How long the watchdog waits for the high thread's counter to move.
fn stall() -> Duration {
    let secs = std::env::var("CUTOFF_RT_STALL_SECS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(10);
    Duration::from_secs(secs.max(1))
}

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
        "sched_getaffinity failed: {}",
        std::io::Error::last_os_error()
    );
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `i` is below CPU_SETSIZE.
        .filter(|&i| unsafe { libc::CPU_ISSET(i, &set) })
        .collect()
}

/// Pin the calling thread to `cpus`.
fn pin_to(cpus: &[usize]) -> Result<(), String> {
    // SAFETY: a zeroed `cpu_set_t` is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        // SAFETY: `c` came from `allowed_cpus`, so it is below CPU_SETSIZE.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: `set` is a valid `cpu_set_t` of the size passed; pid 0 is the calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!(
            "sched_setaffinity(CPUs {cpus:?}) failed: {}",
            std::io::Error::last_os_error()
        ))
    }
}

/// Make the calling thread `SCHED_FIFO` at `prio`. `SCHED_RESET_ON_FORK`: threads it creates
/// (say, a lazily started timer driver) do not inherit the real-time policy.
fn make_fifo(prio: i32) -> Result<(), String> {
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
            "sched_setscheduler(SCHED_FIFO, priority {prio}) failed: {}",
            std::io::Error::last_os_error()
        ))
    }
}

/// Pin the calling thread to `cpu` and make it `SCHED_FIFO` at `prio`, or say why not.
fn become_rt(cpu: usize, prio: i32, who: &str) -> Result<(), String> {
    pin_to(&[cpu]).and_then(|()| make_fifo(prio)).map_err(|e| {
        format!(
            "rt_priority: cannot set up the {who}-priority thread: {e}. This test needs \
                 Linux real-time scheduling: run it as root (CAP_SYS_NICE, or an RLIMIT_RTPRIO \
                 of at least {HIGH_PRIO}) in a container or cgroup that allows SCHED_FIFO (with \
                 RT group scheduling, a non-zero cpu.rt_runtime_us). It fails rather than skips."
        )
    })
}

/// A `/proc/sys/kernel` integer, if readable.
fn kernel_knob(name: &str) -> Option<i64> {
    std::fs::read_to_string(format!("/proc/sys/kernel/{name}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Which CPU the FIFO threads share, and where everything else (the harness thread, the
/// watchdog) runs.
struct CpuPlan {
    busy: usize,
    others: Vec<usize>,
}

fn cpu_plan() -> CpuPlan {
    let allowed = allowed_cpus();
    let (&busy, rest) = allowed
        .split_first()
        .expect("rt_priority: the process may run on no CPU at all?");
    if rest.is_empty() {
        // Only the RT budget's leftover (5% by default) would let the watchdog run.
        let runtime = kernel_knob("sched_rt_runtime_us");
        assert!(
            runtime.is_some_and(|r| r >= 0),
            "rt_priority: only one usable CPU ({busy}) and RT throttling is off \
             (sched_rt_runtime_us = {runtime:?}): a livelocked case would starve the watchdog \
             too, so the probe cannot run safely here"
        );
        CpuPlan {
            busy,
            others: vec![busy],
        }
    } else {
        CpuPlan {
            busy,
            others: rest.to_vec(),
        }
    }
}

/// Restores the calling thread's affinity on drop.
struct RestoreAffinity(Vec<usize>);

impl Drop for RestoreAffinity {
    fn drop(&mut self) {
        let _ = pin_to(&self.0);
    }
}

/// The calling thread's kernel id.
fn gettid() -> i32 {
    // SAFETY: `gettid` has no preconditions.
    unsafe { libc::gettid() }
}

/// A thread's scheduler state and CPU time from `/proc/self/task/<tid>/stat`, for the
/// watchdog's report ("R" and a CPU time close to the stall: it is spinning).
fn thread_info(tid: i32) -> String {
    if tid == 0 {
        return "not started".into();
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")) else {
        return format!("tid {tid}: gone");
    };
    // Fields after the command name: state is the 3rd field, utime the 14th, stime the 15th.
    let f: Vec<&str> = stat
        .rsplit_once(") ")
        .map_or(vec![], |(_, r)| r.split(' ').collect());
    // SAFETY: `sysconf` has no preconditions.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / tck;
    format!(
        "tid {tid}, state {}, CPU time user {:.2} s + system {:.2} s",
        f.first().unwrap_or(&"?"),
        t(11),
        t(12)
    )
}

/// Write to the process's stderr directly (not through the harness's output capture, which
/// an abort would throw away).
fn say(msg: &str) {
    let mut e = std::io::stderr().lock();
    let _ = e.write_all(msg.as_bytes());
    let _ = e.flush();
}

// ---------------------------------------------------------------------------------------------
// The scenario.

/// The counters the watchdog reads.
struct Progress {
    high_ops: AtomicU64,
    low_ops: AtomicU64,
    /// Kernel thread ids of the two FIFO threads (0: not started).
    high_tid: AtomicI32,
    low_tid: AtomicI32,
    /// The case is over (the watchdog exits).
    done: AtomicBool,
}

/// Abort the process if the high thread's counter stops moving for `stall` (see module docs).
fn watchdog(case: &str, plan: &CpuPlan, p: &Progress, stall: Duration) {
    // Not real-time, and off the busy CPU when there is another. (Threads inherit the
    // harness's policy, normally SCHED_OTHER already; say so explicitly in case `cargo test`
    // itself was started under `chrt`.)
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid `sched_param`; pid 0 is the calling thread.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &param) };
    let pinned = pin_to(&plan.others);
    let mut last = p.high_ops.load(Relaxed);
    let mut last_low = p.low_ops.load(Relaxed);
    let mut since = Instant::now();
    while !p.done.load(Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        let now = p.high_ops.load(Relaxed);
        if now != last {
            last = now;
            last_low = p.low_ops.load(Relaxed);
            since = Instant::now();
            continue;
        }
        if since.elapsed() >= stall && !p.done.load(Relaxed) {
            let low = p.low_ops.load(Relaxed);
            say(&format!(
                "\nrt_priority WATCHDOG: case `{case}`: NO PROGRESS for {:.1} s.\n\
                 \x20 high-priority thread (SCHED_FIFO {HIGH_PRIO}): {now} of {HIGH_ITERS} ops done; \
                 {}\n\
                 \x20 low-priority thread (SCHED_FIFO {LOW_PRIO}): {low} ops done ({} since the \
                 high thread's last op); {}\n\
                 \x20 both pinned to CPU {}; watchdog (SCHED_OTHER) on CPUs {:?}{}\n\
                 \x20 diagnosis: {}\n\
                 \x20 aborting the process: the test harness cannot time out a test whose CPU is \
                 starved by a spinning real-time thread.\n",
                since.elapsed().as_secs_f64(),
                thread_info(p.high_tid.load(Relaxed)),
                low - last_low,
                thread_info(p.low_tid.load(Relaxed)),
                plan.busy,
                plan.others,
                pinned
                    .err()
                    .map(|e| format!(" (pinning failed: {e})"))
                    .unwrap_or_default(),
                if now < HIGH_ITERS && low == last_low {
                    "neither thread moves: the high-priority thread is spinning on a lock held \
                     by the preempted low-priority thread (priority-inversion livelock)"
                } else if now < HIGH_ITERS {
                    "the low thread runs but the high one is stuck (blocked, not spinning)"
                } else {
                    "the high thread finished but the case did not end (low thread stuck?)"
                },
            ));
            std::process::abort();
        }
    }
}

/// Run the two-FIFO-thread scenario for `case` on `parent`, where `op` creates and drops one
/// child; assert that it finishes and the high thread did all [`HIGH_ITERS`] ops.
fn run_case<P: Sync>(case: &str, parent: &P, op: impl Fn(&P) + Sync) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let plan = cpu_plan();
    let stall = stall();
    // The harness thread stays off the busy CPU; its affinity is restored afterwards.
    let _restore = RestoreAffinity(allowed_cpus());
    pin_to(&plan.others).expect("rt_priority: pinning the harness thread");
    // One op here first: starts the global timer's driver (deadline cases) on this thread, so
    // it is neither real-time nor on the busy CPU, and takes first-use costs out of the race.
    op(parent);

    let p = Progress {
        high_ops: AtomicU64::new(0),
        low_ops: AtomicU64::new(0),
        high_tid: AtomicI32::new(0),
        low_tid: AtomicI32::new(0),
        done: AtomicBool::new(false),
    };
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let (low_res, high_res) = std::thread::scope(|s| {
        s.spawn(|| watchdog(case, &plan, &p, stall));
        let low = s.spawn(|| -> Result<(), String> {
            p.low_tid.store(gettid(), Relaxed);
            become_rt(plan.busy, LOW_PRIO, "low")?;
            let mut slice = Instant::now();
            while !stop.load(Relaxed) {
                op(parent);
                p.low_ops.fetch_add(1, Relaxed);
                if slice.elapsed() >= LOW_SLICE {
                    std::thread::sleep(LOW_PAUSE);
                    slice = Instant::now();
                }
            }
            Ok(())
        });
        // Start the high thread once the low one churns (this thread is not on the busy CPU).
        while p.low_ops.load(Relaxed) == 0 && !low.is_finished() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let high_res = if low.is_finished() {
            Ok(())
        } else {
            s.spawn(|| -> Result<(), String> {
                p.high_tid.store(gettid(), Relaxed);
                become_rt(plan.busy, HIGH_PRIO, "high")?;
                for _ in 0..HIGH_ITERS {
                    std::thread::sleep(HIGH_PERIOD);
                    op(parent);
                    p.high_ops.fetch_add(1, Relaxed);
                }
                Ok(())
            })
            .join()
            .unwrap_or_else(|_| Err("the high-priority thread panicked".into()))
        };
        stop.store(true, Relaxed);
        let low_res = low
            .join()
            .unwrap_or_else(|_| Err("the low-priority thread panicked".into()));
        p.done.store(true, Relaxed);
        (low_res, high_res)
    });
    let (high, low) = (p.high_ops.load(Relaxed), p.low_ops.load(Relaxed));
    if let Err(e) = low_res.and(high_res) {
        panic!("{e}");
    }
    println!(
        "{case}: {high} high-priority ops, {low} low-priority ops, {:.2} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(high, HIGH_ITERS, "{case}: the high thread did not finish");
    assert!(low > 0, "{case}: the low thread never churned");
}

// ---------------------------------------------------------------------------------------------
// The cases.

/// Control: tokio-util's child tokens (a `std::sync::Mutex` in the parent, which parks).
#[test]
fn tokio_util_child_token_control() {
    let parent = CancellationToken::new();
    run_case("tokio-util child_token", &parent, |p| drop(p.child_token()));
}

#[test]
fn cutoff_heap_child() {
    let parent = CancelSource::new();
    run_case("cutoff heap child", &parent, |p| drop(p.child()));
}

#[test]
fn cutoff_pinned_child() {
    let parent = CancelSource::new();
    run_case("cutoff pinned child", &parent, |p| {
        let mut c = pin!(ChildNode::new(p));
        c.as_mut().link();
    });
}

#[test]
fn cutoff_heap_deadline() {
    let parent = CancelSource::new();
    run_case("cutoff heap deadline (with_timeout)", &parent, |p| {
        drop(cutoff_timer::with_timeout(p, FAR));
    });
}

#[test]
fn cutoff_pinned_deadline() {
    let parent = CancelSource::new();
    run_case("cutoff pinned deadline (Deadline::after)", &parent, |p| {
        let mut d = pin!(Deadline::after(p, FAR));
        d.as_mut().link();
    });
}
