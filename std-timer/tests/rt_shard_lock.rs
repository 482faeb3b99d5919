//! Real-time priority probe for the timer's **shard lock**: two `SCHED_FIFO` threads pinned to
//! **one** CPU contend on one shard.
//!
//! * the **low**-priority thread (FIFO 10) creates and drops deadlines in a loop (each one
//!   takes its own shard's lock twice) and keeps a fresh deadline in a slot;
//! * the **high**-priority thread (FIFO 20) wakes every 200 µs, takes the deadline from the
//!   slot and drops it: removing its entry locks the **low thread's shard**.
//!
//! Whenever the high thread wakes while the low one is inside its shard's lock, the low one is
//! preempted holding it. A lock that only spins (and `sched_yield`s, which never hands the CPU
//! to a *lower* FIFO priority) then spins forever; the shard lock parks after a bounded spin,
//! so the low thread runs, unlocks and wakes it. (Before the shard lock could park, this
//! probe livelocked within milliseconds.) The deadlines are 60 s away: registered and
//! removed, never fired. The tree's own locks are not contended here (root nodes).
//!
//! The test asserts **progress only**: the high thread does all its iterations.
//!
//! **Watchdog.** A spinning FIFO thread starves its CPU and the harness has no timeout, so a
//! non-real-time watchdog thread on another CPU aborts the process when the high thread makes
//! no progress for 10 s (`CUTOFF_RT_STALL_SECS`).
//!
//! **RT throttling.** The low thread churns for 9 ms and sleeps 1 ms, under the kernel's
//! default 95% real-time budget (`sched_rt_runtime_us`), which would otherwise suspend both
//! FIFO threads for ~50 ms a second.
//!
//! **Requirements.** Linux, `CAP_SYS_NICE` (root) and a container policy that allows
//! `SCHED_FIFO`, and a second CPU for the watchdog; without them the test fails with a message
//! saying so (it does not skip).
#![cfg(target_os = "linux")]
#![allow(unsafe_code)]

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use core::time::Duration;
use std::sync::Mutex;
use std::time::Instant;

use cutoff::{CancelSource, Parent};

const HIGH_ITERS: u64 = 2_000;
const HIGH_PERIOD: Duration = Duration::from_micros(200);
const LOW_PRIO: i32 = 10;
const HIGH_PRIO: i32 = 20;
const LOW_SLICE: Duration = Duration::from_millis(9);
const LOW_PAUSE: Duration = Duration::from_millis(1);
const FAR: Duration = Duration::from_secs(60);

fn stall() -> Duration {
    let secs = std::env::var("CUTOFF_RT_STALL_SECS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(10);
    Duration::from_secs(secs.max(1))
}

/// The CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed `cpu_set_t` is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { core::mem::zeroed() };
    // SAFETY: `set` is a valid, writable `cpu_set_t` of the size passed; pid 0 is this thread.
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

/// Pin the calling thread to `cpus`.
fn pin_to(cpus: &[usize]) -> Result<(), String> {
    // SAFETY: a zeroed `cpu_set_t` is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { core::mem::zeroed() };
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
            "sched_setaffinity({cpus:?}): {}",
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
            "rt_shard_lock: sched_setscheduler(SCHED_FIFO, {prio}): {}. This test needs Linux \
             real-time scheduling (root / CAP_SYS_NICE, in a container that allows SCHED_FIFO).",
            std::io::Error::last_os_error()
        ))
    }
}

#[test]
fn a_high_priority_drop_does_not_spin_on_a_preempted_low_priority_shard_lock() {
    let cpus = allowed_cpus();
    let (&busy, others) = cpus.split_first().expect("no CPU");
    assert!(
        !others.is_empty(),
        "rt_shard_lock: needs a second CPU for the watchdog"
    );
    pin_to(others).expect("pinning the harness thread");
    // Start the global timer's driver here: not real-time, not on the busy CPU.
    drop(cutoff_timer::with_timeout(Parent::Root, FAR));

    let slot: Mutex<Option<CancelSource>> = Mutex::new(None);
    let (high_ops, low_ops) = (AtomicU64::new(0), AtomicU64::new(0));
    let (stop, done) = (AtomicBool::new(false), AtomicBool::new(false));
    let stall = stall();
    let started = Instant::now();
    let (low_res, high_res) = std::thread::scope(|s| {
        // Watchdog: SCHED_OTHER (inherited from the harness), on the other CPUs.
        s.spawn(|| {
            let mut last = high_ops.load(Relaxed);
            let mut since = Instant::now();
            while !done.load(Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                let now = high_ops.load(Relaxed);
                if now != last {
                    (last, since) = (now, Instant::now());
                } else if since.elapsed() >= stall && !done.load(Relaxed) {
                    eprintln!(
                        "\nrt_shard_lock WATCHDOG: the high-priority thread made no progress for \
                         {stall:?} ({now} of {HIGH_ITERS} drops; low thread: {} ops): it spins \
                         on the shard lock held by the preempted low-priority thread. Aborting.",
                        low_ops.load(Relaxed)
                    );
                    std::process::abort();
                }
            }
        });
        let low = s.spawn(|| -> Result<(), String> {
            become_rt(busy, LOW_PRIO)?;
            let mut slice = Instant::now();
            while !stop.load(Relaxed) {
                drop(cutoff_timer::with_timeout(Parent::Root, FAR));
                let mut slot = slot.lock().unwrap();
                if slot.is_none() {
                    *slot = Some(cutoff_timer::with_timeout(Parent::Root, FAR));
                }
                drop(slot);
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
        let high_res = if low.is_finished() {
            Ok(())
        } else {
            s.spawn(|| -> Result<(), String> {
                become_rt(busy, HIGH_PRIO)?;
                for _ in 0..HIGH_ITERS {
                    std::thread::sleep(HIGH_PERIOD);
                    let d = slot.lock().unwrap().take();
                    // The low thread's deadline: its entry is in the low thread's shard.
                    drop(d);
                    high_ops.fetch_add(1, Relaxed);
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
        done.store(true, Relaxed);
        (low_res, high_res)
    });
    if let Err(e) = low_res.and(high_res) {
        panic!("{e}");
    }
    println!(
        "{} high-priority drops, {} low-priority ops, {:.2} s",
        high_ops.load(Relaxed),
        low_ops.load(Relaxed),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(high_ops.load(Relaxed), HIGH_ITERS);
}
