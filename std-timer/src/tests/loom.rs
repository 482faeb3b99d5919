//! Loom models: one per race in the timer's protocols (issue 4, "Proof": insert vs fire;
//! cancel vs fire; remove of an entry being fired; driver wake-up vs a new earlier insert;
//! plus timer drop vs pending deadlines; and, for the review's findings, a same-batch drop
//! from inside a fired callback (ADV-3), an insert racing the shard's recycle (ADV-2), which
//! timer fires an inherited deadline (ADV-6), and three-thread and timer-drop shapes of the
//! one-entry-at-a-time firing protocol).
//!
//! Each model is tiny (two or three racing threads, one or two deadline nodes) and is named
//! for the race it covers. Every wait in the timer (the shard lock, an owner's wait for a
//! firing) blocks in these models (loom's mutex; loom's park / unpark behind the
//! `parking_lot_core` stand-in of `crate::loom`, reached after one spin), so a lost wake-up
//! is reported as a deadlock. Under `RUSTFLAGS="--cfg loom"` every lock and atomic of `timer.rs` and
//! `deadline.rs` (through `crate::loom`) and of the `cutoff` tree is loom's, so loom explores
//! the interleavings and checks every cell access of the tree for a happens-before edge. In a
//! plain `cargo test` build [`model`] runs each closure once on real threads, as a smoke test.
//!
//! Run them with:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 CARGO_TARGET_DIR=/tmp/loomtarget \
//!     cargo test -p cutoff-timer --lib --profile loom tests::loom
//! ```
//!
//! All models use manual timers (no driver thread: its parking with a timeout cannot be
//! modelled); a loom thread calling [`Timer::turn`] plays the driver. Every model makes a new
//! `Timer` and clock, so nothing is shared between loom iterations: loom runs each thread's
//! `thread_local!` destructors (the shard cache) when the thread ends, the main thread's
//! included. Each loom thread gets its own shard.
//!
//! Heap deadline nodes and shards are plain allocations, not loom objects, so a use after
//! free would go unnoticed by loom itself. Under `cfg(loom)` this module therefore installs a
//! global allocator that overwrites freed memory with a poison byte (and delays its reuse): the loom locks and atomics
//! inside a freed node or shard then name no valid loom object, so touching one afterwards
//! panics inside loom instead of silently reading stale memory.
#![allow(unsafe_code)]
#![allow(clippy::std_instead_of_core)]

use core::pin::{Pin, pin};
use core::time::Duration;
use std::sync::Arc as StdArc;

use cutoff::{Callback, Reason};

use crate::clock::{Clock, ManualClock};
use crate::loom::Ordering::SeqCst;
use crate::loom::{AtomicU64, AtomicUsize};
use crate::{Deadline, Parent, Timer, global_origin};

#[cfg(loom)]
use loom::{
    sync::{Arc, Mutex},
    thread,
};
#[cfg(not(loom))]
use std::{
    sync::{Arc, Mutex},
    thread,
};

/// Overwrites freed memory and keeps the last [`QUARANTINE`] freed blocks from being reused
/// (so that the poison is still there when a late access comes; see the module docs).
#[cfg(loom)]
struct PoisonOnFree;

#[cfg(loom)]
const QUARANTINE: usize = 1 << 12;

/// A freed block: address, size, align.
#[cfg(loom)]
type Block = (usize, usize, usize);

/// Freed blocks not yet handed back to `System`: (address, size, align), a ring.
#[cfg(loom)]
static FREED: std::sync::Mutex<(usize, [Block; QUARANTINE])> =
    std::sync::Mutex::new((0, [(0, 0, 0); QUARANTINE]));

#[cfg(loom)]
// SAFETY: forwards to `System`; only writes to blocks that callers handed back, and hands
// each one to `System` exactly once, later.
unsafe impl std::alloc::GlobalAlloc for PoisonOnFree {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: `ptr` is a live block of `layout.size()` bytes that nobody may use any more.
        unsafe { ptr.write_bytes(0xA5, layout.size()) };
        let old = {
            let mut freed = FREED.lock().unwrap_or_else(|e| e.into_inner());
            let i = freed.0;
            freed.0 = (i + 1) % QUARANTINE;
            core::mem::replace(
                &mut freed.1[i],
                (ptr as usize, layout.size(), layout.align()),
            )
        };
        if old.0 != 0 {
            // SAFETY: a block freed earlier with this layout, in quarantine until now.
            unsafe {
                let layout = std::alloc::Layout::from_size_align_unchecked(old.1, old.2);
                std::alloc::System.dealloc(old.0 as *mut u8, layout);
            }
        }
    }
}

#[cfg(loom)]
#[global_allocator]
static POISON_ON_FREE: PoisonOnFree = PoisonOnFree;

/// Run a loom model (preemption bound from `LOOM_MAX_PREEMPTIONS`, else 3).
#[cfg(loom)]
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

/// Outside loom: run `f` once, on real threads.
#[cfg(not(loom))]
fn model(f: impl Fn() + Sync + Send + 'static) {
    f();
}

/// The models' deadline: 1 ms after the clock's origin.
const DUE: Duration = Duration::from_millis(1);
const DUE_NANOS: u64 = 1_000_000;

/// A fresh manual clock at 0 and a manual timer on it.
fn manual() -> (StdArc<ManualClock>, Timer) {
    // Make sure the global origin exists before the clock: a clock whose origin precedes it
    // gets offset 0 and a shifted time line (reported separately).
    global_origin();
    let clock = StdArc::new(ManualClock::new());
    let timer = Timer::manual(clock.clone());
    (clock, timer)
}

/// What a callback saw: how often it ran, with which reason, at which clock reading.
struct Seen {
    runs: AtomicUsize,
    /// [`code`] of the reason.
    reason: AtomicUsize,
    at: AtomicU64,
}

impl Seen {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            runs: AtomicUsize::new(0),
            reason: AtomicUsize::new(0),
            at: AtomicU64::new(0),
        })
    }

    fn runs(&self) -> usize {
        self.runs.load(SeqCst)
    }

    fn reason(&self) -> Option<Reason> {
        match self.reason.load(SeqCst) {
            0 => None,
            1 => Some(Reason::DeadlineExceeded),
            2 => Some(Reason::ParentGone),
            3 => Some(Reason::Code(1)),
            _ => unreachable!(),
        }
    }

    fn at(&self) -> u64 {
        self.at.load(SeqCst)
    }
}

/// The reasons the models use, as numbers (a loom atomic is cheaper to model than a lock).
fn code(r: &Reason) -> usize {
    match r {
        Reason::DeadlineExceeded => 1,
        Reason::ParentGone => 2,
        Reason::Code(1) => 3,
        other => panic!("unexpected reason {other:?}"),
    }
}

/// A callback that records into `seen`, reading `clock` when it runs.
fn recorder(
    seen: &Arc<Seen>,
    clock: &StdArc<ManualClock>,
) -> impl FnOnce(&Reason) + Send + 'static + use<> {
    let (seen, clock) = (Arc::clone(seen), StdArc::clone(clock));
    move |r: &Reason| {
        seen.at.store(clock.now(), SeqCst);
        seen.reason.store(code(r), SeqCst);
        seen.runs.fetch_add(1, SeqCst);
    }
}

// ---- insert vs fire ------------------------------------------------------------------------

/// Thread A creates a deadline node due at 1 ms (inserting it into A's shard, or finding it
/// already due) while thread B plays the driver: it turns just before the deadline, then moves
/// the clock to it and turns again. After a final turn the node is cancelled with
/// `DeadlineExceeded` exactly once, never while the clock was before its deadline, and no
/// turn fired it twice.
#[test]
fn insert_vs_fire() {
    model(|| {
        let (clock, timer) = manual();
        let timer = Arc::new(timer);
        let due = clock.origin() + DUE;
        let seen = Seen::new();
        let a = {
            let (timer, seen, clock) = (timer.clone(), seen.clone(), clock.clone());
            thread::spawn(move || {
                let src = timer.deadline_source(Parent::Root, due);
                let reg = src.on_cancel(recorder(&seen, &clock));
                (src, reg)
            })
        };
        let b = {
            let (timer, clock) = (timer.clone(), clock.clone());
            thread::spawn(move || {
                clock.set(DUE_NANOS - 1);
                let early = timer.turn();
                assert_eq!(early, 0, "fired before the deadline");
                clock.set(DUE_NANOS);
                timer.turn()
            })
        };
        let (src, reg) = a.join().unwrap();
        let fired_b = b.join().unwrap();
        let fired_main = timer.turn();
        assert!(fired_b + fired_main <= 1, "one entry fired twice");
        assert_eq!(
            seen.runs(),
            1,
            "the deadline node was not cancelled exactly once"
        );
        assert_eq!(seen.reason(), Some(Reason::DeadlineExceeded));
        assert_eq!(src.reason(), Some(Reason::DeadlineExceeded));
        assert!(seen.at() >= DUE_NANOS, "cancelled early, at {}", seen.at());
        drop(reg);
        drop(src);
    });
}

// ---- drop (remove) vs fire -----------------------------------------------------------------

/// Thread A drops the last handle of a pending heap deadline node (first disarming a callback
/// on its child and dropping the child) while thread B fires it: the node's drop must either
/// remove the entry or wait for the firing to finish before its memory goes (poisoned on
/// free, see the module docs). The child's callback ran exactly when `disarm` found it spent,
/// with `DeadlineExceeded`, and only if B's turn fired the entry.
#[test]
fn drop_vs_fire() {
    model(|| {
        let (clock, timer) = manual();
        let timer = Arc::new(timer);
        let src = timer.deadline_source(Parent::Root, clock.origin() + DUE);
        let child = src.child();
        let seen = Seen::new();
        let reg = child.on_cancel(recorder(&seen, &clock));
        let a = thread::spawn(move || {
            let ran = reg.disarm().is_none();
            drop(child);
            drop(src); // the last handle: frees the node
            ran
        });
        let b = {
            let (timer, clock) = (timer.clone(), clock.clone());
            thread::spawn(move || {
                clock.set(DUE_NANOS);
                timer.turn()
            })
        };
        let ran = a.join().unwrap();
        let fired = b.join().unwrap();
        assert_eq!(
            seen.runs(),
            usize::from(ran),
            "callback ran {} times",
            seen.runs()
        );
        if ran {
            assert_eq!(fired, 1);
            assert_eq!(seen.reason(), Some(Reason::DeadlineExceeded));
            assert!(seen.at() >= DUE_NANOS);
        }
        // Whatever happened, nothing is left to fire.
        assert_eq!(timer.turn(), 0);
    });
}

/// The pinned form: thread A links a `Deadline` (into A's shard) with a pinned callback on
/// it, disarms the callback and drops both, while thread B fires the deadline. The drop must
/// wait for a firing in progress (the node lives in A's stack frame); the callback ran
/// exactly when `disarm` found it spent.
#[test]
fn pinned_drop_vs_fire() {
    model(|| {
        let (clock, timer) = manual();
        let timer = Arc::new(timer);
        let due = clock.origin() + DUE;
        let seen = Seen::new();
        let a = {
            let (timer, seen, clock) = (timer.clone(), seen.clone(), clock.clone());
            thread::spawn(move || {
                let mut d = pin!(Deadline::with_timer(&timer, None, due));
                let node = d.as_mut().link();
                let mut cb = pin!(Callback::new(node, recorder(&seen, &clock)));
                cb.as_mut().register();
                cb.as_mut().disarm().is_none()
                // `cb`, then `d`, drop here, racing with the fire.
            })
        };
        let b = {
            let (timer, clock) = (timer.clone(), clock.clone());
            thread::spawn(move || {
                clock.set(DUE_NANOS);
                timer.turn()
            })
        };
        let ran = a.join().unwrap();
        let fired = b.join().unwrap();
        assert!(fired <= 1);
        assert_eq!(
            seen.runs(),
            usize::from(ran),
            "callback ran {} times",
            seen.runs()
        );
        if ran {
            // Fired by B, or born cancelled (B moved the clock before A linked).
            assert_eq!(seen.reason(), Some(Reason::DeadlineExceeded));
            assert!(seen.at() >= DUE_NANOS);
        }
        assert_eq!(timer.turn(), 0);
    });
}

// ---- explicit cancel vs fire ---------------------------------------------------------------

/// Thread A cancels a pending deadline node with `Code(1)` while thread B fires it: exactly
/// one reason wins (A's call returns `true` iff it is `Code(1)`), the node and its child agree
/// on it, and each one's callback ran exactly once with it.
#[test]
fn explicit_cancel_vs_fire() {
    model(|| {
        let (clock, timer) = manual();
        let timer = Arc::new(timer);
        let src = Arc::new(timer.deadline_source(Parent::Root, clock.origin() + DUE));
        let child = src.child();
        let (seen, seen_child) = (Seen::new(), Seen::new());
        let reg = src.on_cancel(recorder(&seen, &clock));
        let reg_child = child.on_cancel(recorder(&seen_child, &clock));
        let a = {
            let src = src.clone();
            thread::spawn(move || src.cancel_with(Reason::Code(1)))
        };
        let b = {
            let (timer, clock) = (timer.clone(), clock.clone());
            thread::spawn(move || {
                clock.set(DUE_NANOS);
                timer.turn()
            })
        };
        let user_won = a.join().unwrap();
        let fired = b.join().unwrap();
        assert_eq!(timer.turn(), 0);
        let winner = if user_won {
            Reason::Code(1)
        } else {
            Reason::DeadlineExceeded
        };
        assert_eq!(src.reason(), Some(winner.clone()));
        assert_eq!(child.reason(), Some(winner.clone()));
        assert_eq!(seen.runs(), 1);
        assert_eq!(seen_child.runs(), 1);
        assert_eq!(seen.reason(), Some(winner.clone()));
        assert_eq!(seen_child.reason(), Some(winner));
        if !user_won {
            // Only the timer can have cancelled it, and not before its deadline.
            assert_eq!(fired, 1);
            assert!(seen.at() >= DUE_NANOS && seen_child.at() >= DUE_NANOS);
        }
        drop((reg, reg_child, child));
    });
}

// ---- driver wake-up vs an earlier insert ---------------------------------------------------

/// The driver plans its sleep (publishes `wake_at`, then re-reads every shard's `next`) while
/// another thread, on its own new shard, inserts a deadline earlier than the one pending
/// (lowers its shard's `next`, then reads `wake_at`). Dekker: the driver never plans to sleep
/// past the new deadline unless the inserter decided to unpark it.
///
/// Uses the test hooks `Inner::test_plan_sleep` (one iteration of `drive` up to the park,
/// retried at most once more, as `drive` would) and `Inner::test_inserted` (the decision of
/// `inserted`).
#[test]
fn driver_wakeup_vs_earlier_insert() {
    model(|| {
        let (clock, timer) = manual();
        let inner = StdArc::clone(timer.inner());
        // Pending at 10 ms, in the main thread's shard.
        let far = timer.deadline_source(Parent::Root, clock.origin() + 10 * DUE);
        let early = inner.now() + 5 * DUE_NANOS;
        let driver = {
            let inner = inner.clone();
            thread::spawn(move || (0..2).find_map(|_| inner.test_plan_sleep()))
        };
        // The insert runs on this thread: its shard (which also holds `far`) stays alive and
        // registered. (A spawned inserter's thread would exit at once, and the hook lowers
        // `next` without a real entry, so the driver could rightly recycle that empty,
        // orphaned shard; a real insert keeps its shard non-empty.)
        let unparks = inner.test_inserted(early);
        let plan = driver.join().unwrap();
        if let Some(wake) = plan {
            assert!(wake <= far.deadline_raw().unwrap());
            assert!(
                wake <= early || unparks,
                "the driver sleeps until {wake}, past the new deadline {early}, and nobody wakes it"
            );
        }
        drop(far);
    });
}

// ---- timer drop vs pending deadlines -------------------------------------------------------

/// The timer is dropped (every pending deadline cancelled with `ParentGone`) while thread A
/// drops a pending heap deadline node (after disarming a callback on it, whose token was the
/// other handle): no use after free, and whoever observed the node cancelled (the callback,
/// or A just before the drop) saw `ParentGone`.
#[test]
fn timer_drop_vs_pending() {
    model(|| {
        let (clock, timer) = manual();
        let src = timer.deadline_source(Parent::Root, clock.origin() + DUE);
        let seen = Seen::new();
        let reg = src.on_cancel(recorder(&seen, &clock));
        let a = thread::spawn(move || {
            let ran = reg.disarm().is_none();
            if let Some(r) = src.reason() {
                assert_eq!(r, Reason::ParentGone);
            }
            drop(src);
            ran
        });
        drop(timer);
        let ran = a.join().unwrap();
        assert_eq!(seen.runs(), usize::from(ran));
        if ran {
            assert_eq!(seen.reason(), Some(Reason::ParentGone));
        }
    });
}

/// The shard's lifetime vs an owner that has read `PENDING`: a heap deadline node made on a
/// thread that has since exited (so only the timer keeps that thread's shard alive) is
/// dropped on thread A while the timer is dropped. A's `unregister` can read `PENDING` (with
/// the shard's address), the timer can then drain the entry, drop its `Inner` and free the
/// shard, and A then locks the freed shard. Caught by the poison-on-free allocator.
#[test]
fn timer_drop_vs_unregister_on_exited_threads_shard() {
    model(|| {
        let (clock, timer) = manual();
        let timer = Arc::new(timer);
        let due = clock.origin() + DUE;
        let src = {
            let timer = timer.clone();
            thread::spawn(move || timer.deadline_source(Parent::Root, due))
                .join()
                .unwrap()
        };
        let a = thread::spawn(move || {
            if let Some(r) = src.reason() {
                assert_eq!(r, Reason::ParentGone);
            }
            drop(src);
        });
        drop(timer); // the last handle: drains every shard, then frees them
        a.join().unwrap();
    });
}

// ---- same-batch drop from inside a fired callback (ADV-3) ----------------------------------

/// A `'static` pinned deadline kept in a slot, for callbacks and threads to drop.
type Slot = Arc<Mutex<Option<Pin<Box<Deadline<'static>>>>>>;

/// A heap deadline `H` and a pinned `'static` deadline `P`, both due at 1 ms, in the same
/// shard; `H`'s callback drops `P` (takes it out of the slot). Thread A turns the timer (one
/// batch holds both); thread B drops `P` too (whoever takes it first). The ADV-3 shape: `P`'s
/// drop from inside `H`'s cancellation must not wait for the driver (this very thread), and
/// the driver must never touch `P` after it was dropped (poisoned on free), nor fire it
/// twice. `H` is cancelled with `DeadlineExceeded` by A's turn.
#[test]
fn callback_drops_pinned_deadline_of_same_batch() {
    model(|| {
        let (clock, timer) = manual();
        let timer_ptr = Box::into_raw(Box::new(timer));
        // SAFETY: freed at the end of the model, after every deadline that borrows it.
        let timer: &'static Timer = unsafe { &*timer_ptr };
        let due = clock.origin() + DUE;
        let slot: Slot = Arc::new(Mutex::new(None));
        let mut p = Box::pin(Deadline::with_timer(timer, None, due));
        p.as_mut().link();
        *slot.lock().unwrap() = Some(p);
        let src = timer.deadline_source(Parent::Root, due);
        let reg = {
            let slot = slot.clone();
            src.on_cancel(move |_| {
                let p = slot.lock().unwrap().take();
                drop(p);
            })
        };
        clock.set(DUE_NANOS);
        let a = thread::spawn(move || timer.turn());
        let b = {
            let slot = slot.clone();
            thread::spawn(move || {
                let p = slot.lock().unwrap().take();
                drop(p);
            })
        };
        let fired = a.join().unwrap();
        b.join().unwrap();
        assert!((1..=2).contains(&fired), "fired {fired}");
        assert_eq!(src.reason(), Some(Reason::DeadlineExceeded));
        assert!(slot.lock().unwrap().is_none());
        assert_eq!(timer.turn(), 0);
        drop(reg);
        drop(src);
        // SAFETY: made by `Box::into_raw` above; nothing borrows it any more.
        drop(unsafe { Box::from_raw(timer_ptr) });
    });
}

// ---- insert vs shard recycle (ADV-2) -------------------------------------------------------

/// Thread A makes its shard (one deadline, dropped: the shard is empty), marks it an orphan
/// while its caches still name it (what a thread-local destructor running after the shard
/// cache's saw before the fix), and creates a deadline through that cache, while thread B
/// plays the driver (a turn, then giving empty orphans back). Whatever the order, the
/// deadline ends up in a shard its timer owns: a final turn at its time fires it. (Without
/// the owner check under the shard lock it could land in a shard already given back, which
/// no turn visits.)
#[test]
fn insert_vs_shard_recycle() {
    model(|| {
        let (clock, timer) = manual();
        let timer = Arc::new(timer);
        let due = clock.origin() + DUE;
        let a = {
            let timer = timer.clone();
            thread::spawn(move || {
                drop(timer.deadline_source(Parent::Root, due));
                timer.inner().test_orphan_local_shard();
                timer.deadline_source(Parent::Root, due)
            })
        };
        let b = {
            let inner = StdArc::clone(timer.inner());
            thread::spawn(move || {
                inner.test_plan_sleep();
            })
        };
        let src = a.join().unwrap();
        b.join().unwrap();
        assert!(!src.is_cancelled());
        clock.set(DUE_NANOS);
        assert_eq!(timer.turn(), 1, "the deadline is in no shard of its timer");
        assert_eq!(src.reason(), Some(Reason::DeadlineExceeded));
    });
}

// ---- timer drop vs the drop of a deadline on the due list ----------------------------------

/// Two heap deadlines pending in the main thread's shard; thread A drops the second one's
/// last handle while the timer is dropped (its drain moves both to the due list and cancels
/// them one at a time with `ParentGone`). A's drop removes its entry from the wheel or from
/// the due list, or waits for its cancellation: no use after free, and the first deadline
/// is cancelled with `ParentGone`.
#[test]
fn timer_drop_vs_drop_of_due_deadline() {
    model(|| {
        let (clock, timer) = manual();
        let first = timer.deadline_source(Parent::Root, clock.origin() + DUE);
        let second = timer.deadline_source(Parent::Root, clock.origin() + DUE);
        let a = thread::spawn(move || {
            if let Some(r) = second.reason() {
                assert_eq!(r, Reason::ParentGone);
            }
            drop(second);
        });
        drop(timer);
        a.join().unwrap();
        assert_eq!(first.reason(), Some(Reason::ParentGone));
    });
}

// ---- three threads: the last handle drops while the driver fires ---------------------------

/// A pending heap deadline with two handles: thread A fires it, thread B drops one handle,
/// and the main thread drops the other. Whichever drop is the last frees the node (through
/// the extension's `free`, which removes the entry or waits for the firing) while the driver
/// may hold its own handle: no use after free, fired at most once, nothing left to fire.
#[test]
fn three_threads_last_handle_drop_vs_fire() {
    model(|| {
        let (clock, timer) = manual();
        let timer = Arc::new(timer);
        let src = timer.deadline_source(Parent::Root, clock.origin() + DUE);
        let token = src.token();
        let a = {
            let (timer, clock) = (timer.clone(), clock.clone());
            thread::spawn(move || {
                clock.set(DUE_NANOS);
                timer.turn()
            })
        };
        let b = thread::spawn(move || drop(token));
        drop(src);
        let fired = a.join().unwrap();
        b.join().unwrap();
        assert!(fired <= 1);
        assert_eq!(timer.turn(), 0);
    });
}

// ---- which timer fires an inherited deadline (ADV-6) ---------------------------------------

/// A parent deadline at 1 ms on timer `T1`; thread A creates two children due at 2 ms under
/// it, one on `T1` (which inherits: no entry) and one on `T2` (which must register its own
/// entry, at the parent's 1 ms, on `T2`), while thread B moves the shared clock to 1 ms and
/// turns `T2` only. Then, before `T1` is ever turned, a turn of `T2` has cancelled the `T2`
/// child (the ADV-6 shape: a deadline fires on its own timer, whatever the other timer
/// does), and nothing else; a turn of `T1` then fires exactly one entry (the parent's: the
/// `T1` child has none) and cancels the `T1` child through it. Both children report the
/// parent's deadline.
#[test]
fn inherit_across_timers() {
    model(|| {
        global_origin();
        let clock = StdArc::new(ManualClock::new());
        let t1 = Arc::new(Timer::manual(clock.clone()));
        let t2 = Arc::new(Timer::manual(clock.clone()));
        let parent = t1.deadline_source(Parent::Root, clock.origin() + DUE);
        let pd = parent.deadline_raw().unwrap();
        let a = {
            let (t1, t2, parent, clock) = (t1.clone(), t2.clone(), parent.token(), clock.clone());
            thread::spawn(move || {
                let same = t1.deadline_source(&parent, clock.origin() + 2 * DUE);
                let other = t2.deadline_source(&parent, clock.origin() + 2 * DUE);
                (same, other)
            })
        };
        let b = {
            let (t2, clock) = (t2.clone(), clock.clone());
            thread::spawn(move || {
                clock.set(DUE_NANOS);
                t2.turn()
            })
        };
        let (same, other) = a.join().unwrap();
        let fired_t2 = b.join().unwrap() + t2.turn();
        assert!(fired_t2 <= 1);
        assert_eq!(
            other.reason(),
            Some(Reason::DeadlineExceeded),
            "a deadline on T2 under T1's earlier deadline was not fired by T2"
        );
        assert!(!parent.is_cancelled() && !same.is_cancelled());
        assert_eq!(same.deadline_raw(), Some(pd));
        assert_eq!(other.deadline_raw(), Some(pd));
        assert_eq!(t1.turn(), 1, "the same-timer child registered an entry");
        assert_eq!(same.reason(), Some(Reason::DeadlineExceeded));
    });
}

/// The same-timer case racing the parent's firing: thread A creates a child due at 2 ms on
/// `T` under a parent due at 1 ms on `T` (the probe reads the parent's entry state: pending,
/// due, firing or done) while thread B moves the clock to 1 ms and turns `T`. Afterwards the
/// child is cancelled with `DeadlineExceeded` (through the parent, or born cancelled), and a
/// child that inherited registered nothing: `T` fired exactly one entry in all.
#[test]
fn inherit_vs_parent_fire() {
    model(|| {
        let (clock, timer) = manual();
        let timer = Arc::new(timer);
        let parent = timer.deadline_source(Parent::Root, clock.origin() + DUE);
        let a = {
            let (timer, parent, clock) = (timer.clone(), parent.token(), clock.clone());
            thread::spawn(move || timer.deadline_source(&parent, clock.origin() + 2 * DUE))
        };
        let b = {
            let (timer, clock) = (timer.clone(), clock.clone());
            thread::spawn(move || {
                clock.set(DUE_NANOS);
                timer.turn()
            })
        };
        let child = a.join().unwrap();
        let fired = b.join().unwrap() + timer.turn();
        assert_eq!(child.reason(), Some(Reason::DeadlineExceeded));
        assert_eq!(parent.reason(), Some(Reason::DeadlineExceeded));
        assert_eq!(fired, 1);
    });
}
