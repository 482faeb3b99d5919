//! sound: no deadline fires before its instant: (a) a manual timer turned by two threads
//! while a third creates and drops deadlines (heap and pinned, some under earlier parents)
//! and hands some to the turners to drop; (b) the global timer, `Instant::now()` recorded in
//! the callbacks.
//!
//! Run: cargo test -p cutoff-tests --release --test review2_never_early
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cutoff::{CancelSource, Parent};
use cutoff_timer::clock::{Clock, ManualClock};
use cutoff_timer::{Deadline, Timer};

#[test]
fn manual_timer_two_turners_never_early() {
    let clock = Arc::new(ManualClock::new());
    let timer: &'static Timer = cutoff_tests::leak(Timer::manual(clock.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let early = Arc::new(AtomicUsize::new(0));
    let fired = Arc::new(AtomicUsize::new(0));
    let trash: Arc<Mutex<Vec<cutoff::CancelToken>>> = Arc::new(Mutex::new(Vec::new()));
    let mut turners = Vec::new();
    for k in 0..2u64 {
        let (clock, stop, trash) = (clock.clone(), stop.clone(), trash.clone());
        turners.push(std::thread::spawn(move || {
            let mut rng = fastrand::Rng::with_seed(k);
            while !stop.load(Ordering::Relaxed) {
                clock.advance(Duration::from_micros(rng.u64(0..700)));
                timer.turn();
                if rng.u8(..) < 40 {
                    drop(trash.lock().unwrap().pop());
                }
            }
        }));
    }
    let start = Instant::now();
    let mut rng = fastrand::Rng::with_seed(7);
    let mut keep: Vec<(CancelSource, _)> = Vec::new();
    let mut keep_regs = Vec::new();
    let parent = timer.timeout_source(Parent::Root, Duration::from_secs(1_000_000_000));
    while start.elapsed() < Duration::from_millis(700) {
        assert!(
            !parent.is_cancelled(),
            "the parent (1e9 s away) was cancelled"
        );
        let t = Duration::from_micros(rng.u64(0..5000));
        let at = clock.now() + t.as_nanos() as u64;
        let src = if rng.bool() {
            timer.timeout_source(&parent, t)
        } else {
            timer.timeout_source(Parent::Root, t)
        };
        let (c, e, f) = (clock.clone(), early.clone(), fired.clone());
        let reg = src.on_cancel(move |_| {
            f.fetch_add(1, Ordering::Relaxed);
            if c.now() < at {
                e.fetch_add(1, Ordering::Relaxed);
            }
        });
        // A pinned one, dropped at once or after a turn or two.
        {
            let at2 = timer.now() + Duration::from_micros(rng.u64(0..3000));
            let mut d = std::pin::pin!(Deadline::with_timer(timer, Some(&parent), at2));
            let node = d.as_mut().link();
            if node.is_cancelled() {
                let now = timer.now();
                assert!(
                    now >= at2,
                    "pinned deadline cancelled early: reason {:?}, now {:?} < at {:?} (by {:?}); parent {:?}",
                    node.reason(),
                    now,
                    at2,
                    at2 - now,
                    parent.reason()
                );
            }
        }
        match rng.u8(0..4) {
            0 => drop((src, reg)),
            1 => {
                trash.lock().unwrap().push(src.token());
                drop(src);
                keep_regs.push(reg);
            }
            _ => keep.push((src, reg)),
        }
        if keep.len() > 500 {
            keep.drain(..250);
            keep_regs.clear();
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in turners {
        t.join().unwrap();
    }
    eprintln!(
        "fired {}, manual clock at {:?}, parent {:?}",
        fired.load(Ordering::Relaxed),
        Duration::from_nanos(clock.now()),
        parent.reason()
    );
    assert_eq!(early.load(Ordering::Relaxed), 0, "deadlines fired early");
}

#[test]
fn global_timer_never_early() {
    let early = Arc::new(AtomicUsize::new(0));
    let mut v = Vec::new();
    for i in 0..3000u64 {
        let at = Instant::now() + Duration::from_micros(i % 2000);
        let src = cutoff_timer::with_deadline(Parent::Root, at);
        let e = early.clone();
        let reg = src.on_cancel(move |_| {
            if Instant::now() < at {
                e.fetch_add(1, Ordering::Relaxed);
            }
        });
        v.push((src, reg));
    }
    for (s, _) in &v {
        s.wait();
    }
    assert_eq!(early.load(Ordering::Relaxed), 0);
}
