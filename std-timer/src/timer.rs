//! The timer: per-thread shards of the wheel and the driver that turns them.
//!
//! # Design
//!
//! Creating a deadline and dropping it before it fires is the hot path, so it must not touch
//! anything shared. Each thread that creates deadlines gets its own **shard**: a [`Wheel`]
//! behind a mutex that, in the common case, only that thread and (rarely) the driver ever
//! take, so locking it is an uncontended atomic pair. A deadline's entry records its shard,
//! so dropping it from another thread locks the right one.
//!
//! One **driver** (a thread, or the caller of [`Timer::turn`] for a manual timer) visits the
//! shards whose earliest deadline has come, fires what is due in batches (the shard is
//! unlocked while the fired nodes are cancelled, since cancelling runs user callbacks), and
//! then parks until the earliest deadline of all shards. The wheel returns exact deadlines
//! for the next level-0 slot, so the driver parks until the deadline itself, not a whole
//! millisecond tick.
//!
//! **Waking the driver only when needed.** The driver publishes the time it will wake at
//! (`wake_at`, `0` while it is awake and will look again). An insert lowers its shard's
//! `next` hint and, if its deadline is before `wake_at`, unparks the driver. Both sides use
//! `SeqCst` in Dekker fashion: the driver stores `wake_at` and then re-reads every shard's
//! `next`; the inserter lowers `next` and then reads `wake_at`. At least one of them sees
//! the other, so an earlier deadline is never slept through.
//!
//! # Time line
//!
//! Every timer measures time as nanoseconds since one process-wide origin
//! ([`global_origin`]), whatever its clock: a clock's own origin is converted once, when the
//! timer is made. Deadlines of different timers are therefore comparable, and a node's
//! [`deadline_raw`](cutoff::NodeView::deadline_raw) is meaningful without knowing which
//! timer owns it.
//!
//! # Shard lifetime (who may insert where)
//!
//! A shard belongs to at most one timer at a time: its `owner` is that timer's id, or `0`
//! while the shard is in the process-wide pool. `owner` changes only under the shard's lock:
//! to a timer's id when the timer takes the shard from the pool, to `0` when the timer gives
//! it back, which it does only when the shard is empty (no entry in its wheel and none in its
//! due list, see below) and it has removed the shard from its own list. Three rules follow:
//!
//! 1. **Inserts check the owner under the lock.** An insert for timer `T` locks the shard it
//!    found through the calling thread's cache and inserts only if `owner == T`; otherwise it
//!    forgets the stale cache entry and takes another shard. So an entry is `PENDING` only in
//!    a shard that its timer owns, and a shard given back receives nothing (however stale a
//!    cache that still names it): it cannot silently lose a deadline or fire it on behalf of
//!    the next timer that takes it from the pool.
//! 2. **Turns and drains check the owner under the lock** too, so a turn that read the shard
//!    list before the shard was given back does not fire another timer's entries.
//! 3. **A shard is given back only when empty**, so every `PENDING` or `DUE` entry's shard is
//!    owned by its timer for as long as the entry stays so. (Shards are never freed at all,
//!    so an owner that read "in shard S" before its entry left S still locks live memory.)
//!
//! A thread's shards are found through two thread-locals: `ALL` (one shard per timer, with a
//! destructor) and `LAST` (a one-entry cache, no destructor). When the thread exits, `ALL`'s
//! destructor clears `LAST` and marks its shards *orphans*; a driver gives an orphan back
//! once it is empty. Code that still runs on the thread after that (a later thread-local
//! destructor that makes a deadline) finds no cache and uses the timer's **fallback shard**,
//! one per timer, shared by all such threads, never orphaned, given back only when the timer
//! is dropped.
//!
//! # Firing: one entry at a time
//!
//! A turn takes at most [`BATCH`] due entries out of a shard's wheel under the shard lock and
//! moves them to the shard's *due list* (state `DUE`, see deadline.rs). It then fires them
//! **one at a time**: under the shard lock it takes one entry off the due list and marks it
//! `FIRING` (taking a handle on a heap node), unlocks, cancels the node, and marks the entry
//! `IDLE` again. Invariant: an entry is `FIRING` only while a driver is inside that entry's own
//! cancellation. Everything else the driver has claimed is on the due list, where the entry's
//! owner removes it under the shard lock exactly like a `PENDING` entry. So dropping a
//! deadline waits at most for the cancellation of its own node, never for other entries of
//! the batch: a callback that drops another deadline of the same batch (even a pinned one,
//! which the driver holds no handle on) completes at once, and the driver never touches that
//! entry again.
//!
//! # Blocking
//!
//! Waits never spin unboundedly (see `crate::loom`): the shard lock is a spin-then-park
//! mutex, and an owner waiting for a `FIRING` entry spins a few times, then parks on the
//! entry's tag until the driver's `end_fire` wakes it.
//!
//! # Shutdown
//!
//! Dropping a [`Timer`] stops its driver and cancels every deadline still pending on it with
//! [`Reason::ParentGone`] (the timer that would have fired them is gone); deadlines created
//! afterwards through a dangling path are impossible, since creating one borrows the timer.
#![allow(unsafe_code)]

use core::cell::{Cell, RefCell};
use core::ptr::NonNull;
use core::time::Duration;
use std::sync::{Arc, OnceLock};

use crate::loom::Ordering::*;
use crate::loom::{
    AtomicBool, AtomicU64, AtomicUsize, Mutex, ShardGuard, ShardLock, fence, lock, lock_shard,
};
use std::thread::{self, JoinHandle, Thread};
use std::time::Instant;

use cutoff::Reason;

use crate::clock::{Clock, SystemClock, to_nanos};
use crate::deadline::DeadlineCore;
use crate::wheel::{Advance, Entry, Wheel};

/// How many due entries a turn moves from a shard's wheel to its due list per lock hold (and
/// so the due list's fixed capacity).
const BATCH: usize = 64;

/// The instant all timers measure time from.
pub fn global_origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// One thread's share of a timer's pending deadlines.
///
/// Shards are never freed: an owner that read "PENDING in shard S" may be preempted before it
/// locks S while the timer is dropped and drains S (deadline.rs invariant 3 is about entries,
/// not about such late lockers). So a shard is leaked once and, when its timer or thread goes
/// away, returned to a process-wide pool for reuse; a late locker then finds a live shard,
/// sees its entry's state has changed, and moves on. The number of shards is bounded by the
/// largest number of (thread, timer) pairs alive at once. Who may use a shard when: see the
/// module docs, "Shard lifetime".
pub(crate) struct Shard {
    locked: ShardLock<Locked>,
    /// A lower bound of the earliest deadline in the wheel (`u64::MAX` when empty), and 0
    /// while the shard's due list holds entries (work for any turn that comes by).
    next: AtomicU64,
    /// The id of the timer this shard belongs to, `0` while it is in the pool. Written only
    /// under the shard lock; read under it by inserts, turns and drains (module docs, "Shard
    /// lifetime"), and without it by deadline.rs's "same timer" probe (a hint there).
    owner: AtomicUsize,
    /// Set to a timer's id when the thread that used this shard for that timer exits; that
    /// timer's driver recycles the shard once it is empty. (An id, not a flag: a stale mark
    /// for a timer the shard no longer belongs to is ignored.)
    orphan: AtomicUsize,
    /// This shard's index in the shard table (`1..`), what a deadline's tag records.
    index: u32,
}

/// What a shard's lock protects.
pub(crate) struct Locked {
    /// The shard's pending (`PENDING`) entries.
    pub(crate) wheel: Wheel,
    /// Entries a turn has taken out of the wheel and not started to fire yet (`DUE`), in
    /// reverse firing order (the next one to fire is last). At most [`BATCH`] long, so its
    /// capacity, reserved when the shard is made, is never exceeded.
    pub(crate) due: Vec<NonNull<Entry>>,
}

// SAFETY: the due list's pointers name entries of deadline nodes that stay alive while the
// entries are `DUE` (deadline.rs invariant 2); they are only followed under the shard lock,
// like the wheel's own links (`Wheel` is `Send` for the same reason).
unsafe impl Send for Locked {}

impl Locked {
    fn is_empty(&self) -> bool {
        self.wheel.is_empty() && self.due.is_empty()
    }
}

/// Shards no timer uses, ready for reuse (never freed; see [`Shard`]).
#[cfg(not(loom))]
static POOL: std::sync::Mutex<Vec<&'static Shard>> = std::sync::Mutex::new(Vec::new());

/// Every shard ever made, by index, so that a deadline can name its shard in the 30 spare
/// bits of its entry's tag instead of a pointer-sized word of its own (8 bytes per
/// deadline). Shards are never freed, so an index stays valid forever.
///
/// Two levels of [`CHUNK`]-sized arrays: the first level is a fixed static array of chunk
/// pointers, a chunk is allocated when the first shard with an index in it is made. Entries
/// are written once (under the pool lock, by `Shard::get`) before the index is ever handed
/// out, and the index reaches other threads only through an entry's tag (Release/Acquire),
/// so a reader always finds the pointer.
#[cfg(not(loom))]
mod table {
    use super::Shard;
    use crate::loom::AtomicPtr;
    use crate::loom::Ordering::*;

    pub(super) const CHUNK: usize = 1024;
    type Chunk = [AtomicPtr<Shard>; CHUNK];
    static CHUNKS: [AtomicPtr<Chunk>; 4096] =
        [const { AtomicPtr::new(core::ptr::null_mut()) }; 4096];

    /// The largest index plus one.
    pub(super) const LIMIT: usize = CHUNK * 4096;

    /// Record `shard` at `index` (`index < LIMIT`; each index once; callers serialize).
    pub(super) fn put(index: u32, shard: &'static Shard) {
        let (c, i) = (index as usize / CHUNK, index as usize % CHUNK);
        let mut chunk = CHUNKS[c].load(Acquire);
        if chunk.is_null() {
            chunk = Box::into_raw(Box::new(
                [const { AtomicPtr::new(core::ptr::null_mut()) }; CHUNK],
            ));
            CHUNKS[c].store(chunk, Release);
        }
        // SAFETY: chunks are never freed.
        let chunk: &Chunk = unsafe { &*chunk };
        chunk[i].store(core::ptr::from_ref(shard).cast_mut(), Release);
    }

    /// The shard recorded at `index`.
    pub(super) fn get(index: u32) -> &'static Shard {
        let (c, i) = (index as usize / CHUNK, index as usize % CHUNK);
        let chunk = CHUNKS[c].load(Acquire);
        // SAFETY: `index` came from a shard's `index` field, so `put` recorded it (and its
        // chunk) before anyone could read it (module docs); chunks and shards are never freed.
        unsafe { &*(*chunk)[i].load(Acquire) }
    }
}

/// Under loom each model execution makes its own shards; a std (unmodelled) table is enough
/// for a lookup of data published through the modelled tag.
#[cfg(loom)]
mod table {
    use super::Shard;

    static SHARDS: std::sync::Mutex<Vec<&'static Shard>> = std::sync::Mutex::new(Vec::new());

    pub(super) fn get(index: u32) -> &'static Shard {
        SHARDS.lock().unwrap()[index as usize - 1]
    }

    pub(super) fn push(make: impl FnOnce(u32) -> &'static Shard) -> &'static Shard {
        let mut v = SHARDS.lock().unwrap();
        let s = make(u32::try_from(v.len() + 1).unwrap());
        v.push(s);
        s
    }
}

/// The next shard index to hand out (index 0 means "no shard").
#[cfg(not(loom))]
static NEXT_INDEX: AtomicU32Std = AtomicU32Std::new(1);
#[cfg(not(loom))]
use core::sync::atomic::AtomicU32 as AtomicU32Std;

impl Shard {
    /// A shard for the timer `owner` whose time is `now`: from the pool, or newly leaked.
    fn get(owner: usize, now: u64) -> &'static Shard {
        let make = |index| -> &'static Shard {
            Box::leak(Box::new(Shard {
                locked: ShardLock::new(Locked {
                    wheel: Wheel::with_now(now),
                    due: Vec::with_capacity(BATCH),
                }),
                next: AtomicU64::new(u64::MAX),
                owner: AtomicUsize::new(owner),
                orphan: AtomicUsize::new(0),
                index,
            }))
        };
        #[cfg(not(loom))]
        {
            let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(s) = pool.pop() {
                drop(pool);
                let mut locked = s.lock();
                debug_assert!(locked.is_empty() && s.owner.load(Relaxed) == 0);
                locked.wheel = Wheel::with_now(now);
                s.next.store(u64::MAX, SeqCst);
                s.orphan.store(0, Relaxed);
                s.owner.store(owner, Relaxed);
                return s;
            }
            // Still under the pool lock: indices are handed out and recorded in order.
            let index = NEXT_INDEX.load(Relaxed);
            assert!(
                (index as usize) < table::LIMIT,
                "cutoff-timer: more than {} timer shards alive at once",
                table::LIMIT - 1
            );
            NEXT_INDEX.store(index + 1, Relaxed);
            let s = make(index);
            table::put(index, s);
            s
        }
        // Under loom every model iteration makes its own (leaked) shards: loom objects must
        // not outlive the execution that made them.
        #[cfg(loom)]
        table::push(make)
    }

    /// The shard with this index (see [`table`]).
    pub(crate) fn at(index: u32) -> &'static Shard {
        table::get(index)
    }

    /// This shard's index.
    pub(crate) fn index(&self) -> u32 {
        self.index
    }

    /// Lower the `next` hint to `deadline` if it is earlier; returns whether it was. Called
    /// under the wheel lock, which is also held by every other writer of `next`, so a plain
    /// compare and store suffices (no read-modify-write on the hot path when the hint is
    /// already earlier).
    pub(crate) fn lower_next(&self, deadline: u64) -> bool {
        if deadline < self.next.load(Relaxed) {
            self.next.store(deadline, SeqCst);
            true
        } else {
            false
        }
    }

    /// The id of the timer this shard belongs to (`0`: none); see the field.
    pub(crate) fn owner(&self) -> usize {
        self.owner.load(Relaxed)
    }

    /// Give the shard back to the pool if it belongs to timer `id` and is empty (checked and
    /// recorded under the lock: module docs, rule 3). The caller has taken it out of the
    /// timer's list (or is about to, on `true`).
    fn retire(&'static self, id: usize) -> bool {
        let locked = self.lock();
        if self.owner.load(Relaxed) != id || !locked.is_empty() {
            return false;
        }
        self.owner.store(0, Relaxed);
        drop(locked);
        #[cfg(not(loom))]
        POOL.lock().unwrap_or_else(|e| e.into_inner()).push(self);
        true
    }

    /// Lock the shard. Every hold is short and bounded (one insert or removal, one move of at
    /// most [`BATCH`] entries to the due list, or taking one entry off it); waiters spin
    /// briefly, then park (see `crate::loom`). (A panic while holding it cannot leave the
    /// wheel inconsistent: its methods do not unwind midway.)
    #[inline]
    pub(crate) fn lock(&self) -> ShardGuard<'_, Locked> {
        lock_shard(&self.locked)
    }
}

pub(crate) struct Inner {
    id: usize,
    /// A number unique among live timers (recycled when a timer drops), small enough for the
    /// tag of a deadline node that inherits this timer's deadline (deadline.rs, `INHERIT`).
    number: u32,
    clock: Arc<dyn Clock>,
    /// `global_origin()` to the clock's origin, in nanoseconds, and whether the clock's origin
    /// is *before* the global one (then the offset is subtracted).
    offset: u64,
    before: bool,
    shards: Mutex<Vec<&'static Shard>>,
    /// The shard of threads whose shard cache is gone (module docs, "Shard lifetime"); made
    /// on first use, also listed in `shards`.
    fallback: Mutex<Option<&'static Shard>>,
    /// When the driver will next wake (`0`: it is awake and will look again).
    wake_at: AtomicU64,
    driver: OnceLock<Thread>,
    shutdown: AtomicBool,
}

/// This thread's shards, one per timer, with a weak handle to check the timer is alive.
struct Cache(Vec<(usize, std::sync::Weak<Inner>, &'static Shard)>);

impl Drop for Cache {
    /// The thread is exiting: nothing may find these shards through this thread any more
    /// (clear `LAST`; `ALL` is being destroyed), and their timers' drivers may give them back
    /// once empty.
    fn drop(&mut self) {
        let _ = LAST.try_with(|l| l.set((0, None)));
        for (id, _, s) in &self.0 {
            s.orphan.store(*id, Release);
        }
    }
}

#[cfg(not(loom))]
std::thread_local! {
    /// The last (timer id, shard) this thread used: the hot path's only lookup. No
    /// destructor, so it stays readable while other thread-locals are destroyed; `Cache`'s
    /// destructor clears it.
    static LAST: Cell<(usize, Option<&'static Shard>)> = const { Cell::new((0, None)) };
    static ALL: RefCell<Cache> = const { RefCell::new(Cache(Vec::new())) };
}
#[cfg(loom)]
loom::thread_local! {
    static LAST: Cell<(usize, Option<&'static Shard>)> = Cell::new((0, None));
    static ALL: RefCell<Cache> = RefCell::new(Cache(Vec::new()));
}

/// Timer numbers: the next never used one, and the free ones.
static NUMBERS: std::sync::Mutex<(u32, Vec<u32>)> = std::sync::Mutex::new((1, Vec::new()));

/// The largest timer number plus one (it must fit a deadline tag's payload).
pub(crate) const NUMBER_LIMIT: u32 = 1 << 28;

fn take_number() -> u32 {
    let mut n = NUMBERS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(x) = n.1.pop() {
        return x;
    }
    let x = n.0;
    assert!(
        x < NUMBER_LIMIT,
        "cutoff-timer: more than {} timers alive at once",
        NUMBER_LIMIT - 1
    );
    n.0 += 1;
    x
}

fn release_number(x: u32) {
    NUMBERS.lock().unwrap_or_else(|e| e.into_inner()).1.push(x);
}

/// What [`Inner::fire_shard`] takes out of a shard's wheel.
#[derive(Clone, Copy)]
enum Sweep {
    /// The entries due at this time (a turn).
    Due(u64),
    /// Every entry (dropping the timer).
    All,
}

impl Inner {
    /// Now, on the global time line.
    pub(crate) fn now(&self) -> u64 {
        if self.before {
            self.clock.now().saturating_sub(self.offset)
        } else {
            self.offset.saturating_add(self.clock.now())
        }
    }

    /// This timer's id (unique in the process, never reused).
    pub(crate) fn id(&self) -> usize {
        self.id
    }

    /// This timer's number (unique among live timers, below [`NUMBER_LIMIT`]).
    pub(crate) fn number(&self) -> u32 {
        self.number
    }

    /// The calling thread's shard of this timer, locked, and owned by this timer (module
    /// docs, rule 1): what an insert uses.
    #[inline]
    pub(crate) fn lock_local_shard(
        self: &Arc<Self>,
    ) -> (&'static Shard, ShardGuard<'static, Locked>) {
        let mut shard = self.local_shard();
        loop {
            let locked = shard.lock();
            if shard.owner.load(Relaxed) == self.id {
                return (shard, locked);
            }
            drop(locked);
            shard = self.forget_local_shard(shard);
        }
    }

    /// The calling thread's shard of this timer (not locked; its owner may change until it
    /// is: use [`lock_local_shard`](Self::lock_local_shard) to insert).
    #[inline]
    pub(crate) fn local_shard(self: &Arc<Self>) -> &'static Shard {
        if let Ok((id, Some(shard))) = LAST.try_with(Cell::get)
            && id == self.id
        {
            return shard;
        }
        self.local_shard_slow()
    }

    #[cold]
    fn local_shard_slow(self: &Arc<Self>) -> &'static Shard {
        let cached = ALL.try_with(|all| {
            let mut all = all.borrow_mut();
            // Forget shards of timers that are gone (their shards went back to the pool).
            all.0.retain(|(_, t, _)| t.strong_count() > 0);
            if let Some((_, _, s)) = all.0.iter().find(|(i, _, _)| *i == self.id) {
                return *s;
            }
            let s = Shard::get(self.id, self.now());
            lock(&self.shards).push(s);
            all.0.push((self.id, Arc::downgrade(self), s));
            s
        });
        // No cache (the thread is exiting and `ALL` is destroyed): the fallback shard.
        let shard = cached.unwrap_or_else(|_| self.fallback_shard());
        let _ = LAST.try_with(|l| l.set((self.id, Some(shard))));
        shard
    }

    /// `stale` was the calling thread's cached shard of this timer but is owned by another
    /// timer or none (module docs, rule 1): forget it and find the shard to use instead.
    #[cold]
    fn forget_local_shard(self: &Arc<Self>, stale: &'static Shard) -> &'static Shard {
        let _ = LAST.try_with(|l| l.set((0, None)));
        let _ = ALL.try_with(|all| {
            all.borrow_mut()
                .0
                .retain(|(_, _, s)| !core::ptr::eq(*s, stale));
        });
        self.local_shard_slow()
    }

    /// The timer's shard for threads without a shard cache (module docs, "Shard lifetime").
    fn fallback_shard(&self) -> &'static Shard {
        let mut fallback = lock(&self.fallback);
        if let Some(s) = *fallback {
            return s;
        }
        let s = Shard::get(self.id, self.now());
        lock(&self.shards).push(s);
        *fallback = Some(s);
        s
    }

    /// Tell the driver that `deadline` was just inserted and lowered its shard's `next` hint
    /// ([`Shard::lower_next`]); unpark it if it plans to sleep past `deadline`.
    pub(crate) fn inserted(&self, deadline: u64) {
        // Dekker with the driver's `wake_at` store and re-read (module docs). The fence is
        // what loom models (it treats SeqCst accesses as AcqRel).
        fence(SeqCst);
        if deadline < self.wake_at.load(SeqCst)
            && let Some(t) = self.driver.get()
        {
            t.unpark();
        }
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        self.shutdown.load(Acquire)
    }

    /// Fire everything due at `now`; returns the earliest pending deadline afterwards, how
    /// many deadlines fired, and the first panic a cancellation raised (see [`Fired::fire`]).
    /// A panic raised while cancelling a fired node is kept (the first one) and the turn goes
    /// on: every due node is still cancelled.
    fn turn(&self, now: u64) -> (u64, usize, Option<Panic>) {
        let mut panic = None;
        let mut fired = 0;
        let mut earliest = u64::MAX;
        // The registry lock is not held while firing: cancelling runs user callbacks, which
        // may create deadlines (and so register a shard) on this very thread.
        let mut i = 0;
        while let Some(shard) = self.shard_at(i) {
            i += 1;
            let next = shard.next.load(SeqCst);
            if next > now {
                earliest = earliest.min(next);
                continue;
            }
            let (n, next) = self.fire_shard(shard, Sweep::Due(now), &mut panic);
            fired += n;
            earliest = earliest.min(next);
        }
        (earliest, fired, panic)
    }

    /// Fire the entries of `shard` that `sweep` selects, one at a time (module docs,
    /// "Firing"); returns how many fired and the shard's earliest pending deadline afterwards
    /// (`u64::MAX` if the shard no longer belongs to this timer).
    fn fire_shard(
        &self,
        shard: &'static Shard,
        sweep: Sweep,
        panic: &mut Option<Panic>,
    ) -> (usize, u64) {
        let reason = match sweep {
            Sweep::Due(_) => Reason::DeadlineExceeded,
            Sweep::All => Reason::ParentGone,
        };
        let mut fired = 0;
        // Whether the wheel has given everything `sweep` selects.
        let mut swept = false;
        loop {
            let mut locked = shard.lock();
            // Rule 2: the shard may have been given back since we read the shard list.
            if shard.owner.load(Relaxed) != self.id {
                return (fired, u64::MAX);
            }
            let entry = loop {
                if let Some(e) = locked.due.pop() {
                    break e;
                }
                if swept {
                    let next = locked.wheel.next_deadline().unwrap_or(u64::MAX);
                    shard.next.store(next, SeqCst);
                    return (fired, next);
                }
                let Locked { wheel, due } = &mut *locked;
                let due_len = due.len();
                let mark = |e: NonNull<Entry>| {
                    // SAFETY: the wheel just unlinked `e`, which was `PENDING` in this
                    // locked shard.
                    unsafe { DeadlineCore::from_entry(e).as_ref().mark_due(shard.index) };
                    due.push(e);
                };
                let more = match sweep {
                    Sweep::Due(now) => wheel.advance(now, BATCH, mark),
                    Sweep::All => wheel.drain(BATCH, mark),
                };
                debug_assert!(due_len == 0 && due.len() <= BATCH);
                due.reverse();
                swept = more == Advance::Done;
                // While work remains the wheel reports a time <= now ("work now"). While the
                // due list holds entries, `next` says "work now" too (0): another turn that
                // comes by must help fire them rather than skip the shard while one of our
                // callbacks runs (review2 finding 2: `turn` returned 0 with a due deadline
                // still uncancelled).
                let next = if due.is_empty() {
                    wheel.next_deadline().unwrap_or(u64::MAX)
                } else {
                    0
                };
                shard.next.store(next, SeqCst);
            };
            let f = Fired::take(entry);
            drop(locked);
            fired += 1;
            keep_first(panic, f.fire(reason.clone()));
        }
    }

    /// The `i`th registered shard.
    fn shard_at(&self, i: usize) -> Option<&'static Shard> {
        lock(&self.shards).get(i).copied()
    }

    /// Give empty shards of exited threads back to the pool.
    fn recycle_orphans(&self) {
        let mut shards = lock(&self.shards);
        shards.retain(|s| !(s.orphan.load(Acquire) == self.id && s.retire(self.id)));
    }

    /// The smallest `next` hint over all shards.
    fn min_next(&self) -> u64 {
        let shards = lock(&self.shards);
        shards
            .iter()
            .map(|s| s.next.load(SeqCst))
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Cancel every pending deadline with [`Reason::ParentGone`] and leave the shards empty.
    /// Panics raised by the cancellations are discarded (this runs in `Timer`'s drop; the
    /// panic hook has already reported them).
    fn drain_all(&self) {
        let mut i = 0;
        while let Some(shard) = self.shard_at(i) {
            i += 1;
            self.fire_shard(shard, Sweep::All, &mut None);
        }
    }

    /// One driver step up to the park: fire what is due, publish when the driver will wake,
    /// and re-check the shards. `None`: look again at once; `Some(t)`: park until `t`
    /// (`u64::MAX`: until unparked; `t <= now`: not at all).
    fn plan_sleep(&self) -> Option<u64> {
        self.wake_at.store(0, SeqCst);
        // The driver survives panics of the code it runs: they were reported by the panic
        // hook when they happened, and stopping the driver would silently stop every later
        // deadline of this timer (for the global one: of the whole process).
        let (earliest, _, _) = self.turn(self.now());
        self.recycle_orphans();
        self.wake_at.store(earliest.max(1), SeqCst);
        fence(SeqCst);
        // An insert that lowered a shard's `next` before it could see `wake_at` is caught
        // here (see the module docs).
        if self.min_next() < earliest || self.is_shut_down() {
            return None;
        }
        Some(earliest)
    }

    fn drive(self: Arc<Self>) {
        while !self.is_shut_down() {
            let Some(earliest) = self.plan_sleep() else {
                continue;
            };
            let now = self.now();
            if earliest == u64::MAX {
                thread::park();
            } else if earliest > now {
                thread::park_timeout(Duration::from_nanos(earliest - now));
            }
        }
    }
}

/// The payload of a panic caught while cancelling a fired node.
type Panic = Box<dyn core::any::Any + Send + 'static>;

fn keep_first(first: &mut Option<Panic>, p: Option<Panic>) {
    if first.is_none() {
        *first = p;
    }
}

/// An entry taken off a shard's due list to be cancelled outside the shard lock.
struct Fired {
    core: NonNull<DeadlineCore>,
    /// A handle that keeps a heap deadline node alive while we cancel it.
    token: Option<cutoff::CancelToken>,
}

impl Fired {
    /// Called under the shard lock with an entry just taken off its due list.
    fn take(e: NonNull<Entry>) -> Self {
        let core = DeadlineCore::from_entry(e);
        // SAFETY: the entry was `DUE` in the locked shard, so its deadline node is alive and
        // its owner, if it is dropping it, waits for us under the protocol of `DeadlineCore`.
        let token = unsafe { core.as_ref().begin_fire() };
        Self { core, token }
    }

    /// Cancel the node and release the entry. A panic from the cancellation (a callback's,
    /// re-raised by the tree once its walk has finished, or a waker's) is caught and
    /// returned: the entry must leave `FIRING` whatever happens, or its owner's drop would
    /// wait forever, and the rest of the due list must still fire.
    fn fire(self, reason: Reason) -> Option<Panic> {
        // SAFETY: FIRING keeps the node alive until `end_fire` (DeadlineCore protocol).
        let node = unsafe { self.core.as_ref() }.node();
        // Skip nodes someone already cancelled: a losing `cancel` would wait for that
        // cancellation's walk, and the driver must not stall behind user callbacks.
        let panic = if node.is_cancelled() {
            None
        } else {
            std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| {
                node.cancel_with(reason);
            }))
            .err()
        };
        // SAFETY: `begin_fire` was called (in `take`); after this the driver does not touch
        // the node (only the token, which keeps a heap node alive on its own).
        unsafe { DeadlineCore::end_fire(self.core) };
        drop(self.token);
        panic
    }
}

/// A timer: a set of per-thread wheels and the driver that fires them.
///
/// Most programs use the process-wide default ([`Timer::global`], started on first use by
/// [`with_deadline`](crate::with_deadline) and friends). Make your own to control the
/// driver thread, to use a [`ManualClock`](crate::clock::ManualClock) in tests
/// ([`Timer::manual`]), or to shut deadlines down as a group.
///
/// Dropping a `Timer` stops its driver and cancels every deadline still pending on it with
/// [`Reason::ParentGone`].
pub struct Timer {
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
}

impl core::fmt::Debug for Timer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Timer")
            .field("threaded", &self.thread.is_some())
            .finish_non_exhaustive()
    }
}

// Timer ids only need to be unique, not modelled: a plain std atomic.
static NEXT_ID: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(1);

impl Timer {
    fn with_inner(clock: Arc<dyn Clock>) -> Arc<Inner> {
        crate::loom::init_parking();
        let (origin, theirs) = (global_origin(), clock.origin());
        // A clock whose origin is before the common one (a custom clock) is read as if it
        // started at the common origin: saturating at 0 can only make deadlines late.
        let (offset, before) = if theirs >= origin {
            (to_nanos(origin, theirs), false)
        } else {
            (to_nanos(theirs, origin), true)
        };
        Arc::new(Inner {
            id: NEXT_ID.fetch_add(1, core::sync::atomic::Ordering::Relaxed),
            number: take_number(),
            clock,
            offset,
            before,
            shards: Mutex::new(Vec::new()),
            fallback: Mutex::new(None),
            wake_at: AtomicU64::new(0),
            driver: OnceLock::new(),
            shutdown: AtomicBool::new(false),
        })
    }

    /// A timer on the real monotonic clock with its own driver thread.
    pub fn new() -> Self {
        Self::threaded(Arc::new(SystemClock::with_origin(global_origin())))
    }

    /// A timer on `clock` with its own driver thread.
    pub fn threaded(clock: Arc<dyn Clock>) -> Self {
        let inner = Self::with_inner(clock);
        let driver = Arc::clone(&inner);
        let thread = thread::Builder::new()
            .name("cutoff-timer".into())
            .spawn(move || driver.drive())
            .expect("cutoff-timer: failed to spawn the timer thread");
        let _ = inner.driver.set(thread.thread().clone());
        Self {
            inner,
            thread: Some(thread),
        }
    }

    /// A timer with no thread: deadlines fire only when [`turn`](Self::turn) is called.
    /// With a [`ManualClock`](crate::clock::ManualClock) this makes tests of expiry
    /// deterministic and instant.
    pub fn manual(clock: Arc<dyn Clock>) -> Self {
        Self {
            inner: Self::with_inner(clock),
            thread: None,
        }
    }

    /// The process-wide timer, started (with its thread) on first use.
    pub fn global() -> &'static Timer {
        static GLOBAL: OnceLock<Timer> = OnceLock::new();
        GLOBAL.get_or_init(Timer::new)
    }

    /// Fire every deadline due now, on this thread; returns how many fired. Useful with a
    /// manual timer; harmless (but pointless) with a threaded one.
    ///
    /// # Panics
    ///
    /// If a callback or waker run by a cancellation panics, every due deadline is still
    /// cancelled, and then the first such panic is resumed here. (On a timer's own driver
    /// thread such panics are reported by the panic hook and otherwise ignored: the driver
    /// keeps running.)
    pub fn turn(&self) -> usize {
        let now = self.inner.now();
        let (_, n, panic) = self.inner.turn(now);
        // As the threaded driver does each round: give empty shards of exited threads back, so
        // a manual timer's shards stay bounded by the threads alive at once (review2 note).
        self.inner.recycle_orphans();
        if let Some(p) = panic {
            std::panic::resume_unwind(p);
        }
        n
    }

    /// The earliest pending deadline, as an instant (a hint: it may be earlier than the true
    /// one after deadlines were dropped).
    pub fn next_deadline(&self) -> Option<Instant> {
        let n = self.inner.min_next();
        (n != u64::MAX).then(|| crate::clock::to_instant(global_origin(), n))?
    }

    /// Now, on this timer's clock.
    pub fn now(&self) -> Instant {
        crate::clock::to_instant(global_origin(), self.inner.now()).unwrap_or_else(Instant::now)
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }
}

impl Default for Timer {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.inner.shutdown.store(true, Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            // Dropped by a callback the driver runs (review2 finding 1): joining ourselves
            // would panic (EDEADLK) and skip the drain. The driver sees `shutdown` once the
            // callback returns and exits on its own; drain here all the same.
            if t.thread().id() != thread::current().id() {
                let _ = t.join();
            }
        }
        self.inner.drain_all();
        // Every shard is empty now (nothing can insert: that borrows the timer); hand them
        // back (late lockers still find live memory, owned by no timer or another one).
        for s in core::mem::take(&mut *lock(&self.inner.shards)) {
            let retired = s.retire(self.inner.id);
            debug_assert!(retired, "a shard not empty after the drain");
        }
        // Every deadline that inherited this timer's deadlines (tag `INHERIT` with our
        // number) has been cancelled by the drain, so the number may name another timer now.
        release_number(self.inner.number);
    }
}

// test hooks for loom models
#[cfg(test)]
impl Inner {
    /// One "plan to sleep" step of [`drive`](Self::drive) without parking (the very code the
    /// driver runs).
    pub(crate) fn test_plan_sleep(&self) -> Option<u64> {
        self.plan_sleep()
    }

    /// [`inserted`](Self::inserted) of `deadline` into the calling thread's shard, returning
    /// whether it would unpark the driver instead of unparking it (the same steps as
    /// `DeadlineCore::register` + `inserted`; keep in sync).
    pub(crate) fn test_inserted(self: &Arc<Self>, deadline: u64) -> bool {
        let lowered = {
            let (shard, _locked) = self.lock_local_shard();
            shard.lower_next(deadline)
        };
        fence(SeqCst);
        lowered && deadline < self.wake_at.load(SeqCst)
    }

    /// Mark the calling thread's shard of this timer an orphan while it stays in the thread's
    /// caches: the state that a thread-local destructor running after the cache's saw before
    /// the shard-lifetime rules (an insert through a stale cache racing the recycle).
    pub(crate) fn test_orphan_local_shard(self: &Arc<Self>) {
        self.local_shard().orphan.store(self.id, Release);
    }
}
