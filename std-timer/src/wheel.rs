//! A hierarchical timer wheel: a pure `&mut self` data structure of intrusive entries.
//!
//! The wheel knows nothing about clocks, threads or locks. Times are `u64` nanoseconds
//! passed in by the caller ([`Wheel::advance`]); entries are [`Entry`] values the caller
//! embeds in its own objects and hands over as raw pointers. Inserting allocates nothing and
//! removal is O(1), so a driver can keep the wheel behind an uncontended lock and do O(1)
//! work per deadline.
//!
//! # Geometry
//!
//! Time is cut into *ticks* of 1 ms ([`TICK_NANOS`]). The wheel has [`LEVELS`] = 6 levels of
//! [`SLOTS`] = 64 slots each; a slot of level `k` is `64^k` ticks wide, so level `k` spans
//! `64^(k+1)` ticks:
//!
//! | level | slot width | level span |
//! |---|---|---|
//! | 0 | 1 ms | 64 ms |
//! | 1 | 64 ms | ~4.1 s |
//! | 2 | ~4.1 s | ~4.4 min |
//! | 3 | ~4.4 min | ~4.7 h |
//! | 4 | ~4.7 h | ~12.4 days |
//! | 5 | ~12.4 days | ~2.18 years ([`RANGE_TICKS`] = 2^36 ticks) |
//!
//! Each level keeps a `u64` occupancy bitmap (bit `s` set iff slot `s` is non-empty), so
//! the next occupied slot of a level is one `trailing_zeros`.
//!
//! The wheel's position is `elapsed`, a tick. An entry with deadline `d` has the *key*
//! `floor(d / 1 ms)`, the tick whose millisecond contains `d`. Its level is the 6-bit digit
//! in which the key first differs from `elapsed` (reading from the top): keys in the same
//! 64 ms block as `elapsed` go to level 0, keys in the same ~4 s block but a later 64 ms
//! block to level 1, and so on. Its slot is the key's digit at that level. Keys outside
//! `elapsed`'s 2^36-tick block (the *top block*) go to the **overflow list**. Every
//! `u64` deadline, including `u64::MAX` (what `Duration::MAX` saturates to), therefore has a
//! place, and no arithmetic can overflow: the largest key is `u64::MAX / 10^6 < 2^45`.
//!
//! # Rounding: never early
//!
//! Slots are whole milliseconds, but an entry fires only in an [`advance`](Wheel::advance)
//! whose `now >= deadline`, compared exactly in nanoseconds. At tick granularity this is
//! rounding *up*: a driver that advances only to whole milliseconds fires a deadline at
//! `ceil(d / 1 ms)` ms, the first tick at or after it, and never before it. A driver that
//! parks until [`next_deadline`](Wheel::next_deadline) fires it at `d` itself (see below),
//! which is what lets the lateness target beat the 0.5 ms average cost of rounding to ticks.
//! The level-0 slot that contains `now` is *partially elapsed*: advancing fires the entries
//! in it whose deadline has passed and keeps the rest.
//!
//! # Cascading
//!
//! When `elapsed` reaches the start of an occupied slot on level `k >= 1`, the slot is due:
//! its entries are taken one by one and either fire (deadline `<= now`) or are placed again
//! relative to the new `elapsed`, which puts them on a *lower* level (their key now agrees
//! with `elapsed` down to digit `k`). An entry therefore moves at most [`LEVELS`] times and
//! ends on level 0 before its millisecond comes, so a deadline a year away still fires
//! within its millisecond (and exactly on time under a `next_deadline` driver). Most
//! deadlines are cancelled long before their coarse slot comes due and never cascade.
//!
//! # The overflow list and the top block
//!
//! The levels only hold keys of `elapsed`'s top block. When the levels are empty and
//! `elapsed` reaches the top block of the smallest overflow key, the overflow list is due:
//! it is cascaded like a slot, each entry firing, moving into the levels, or (still out of
//! range) back into the overflow list. There are two overflow lists that swap roles at each
//! such pass, so the pass never meets the entries it put back, and swapping is O(1). The
//! smallest overflow key is tracked as a lower bound (`overflow_min`, lowered on insert,
//! reset when the list empties); a stale bound after a removal only makes the pass come
//! early, which is harmless. Crossing a top-block boundary is this wheel's form of wrapping
//! the top level: the levels are empty at that moment, so nothing has to be rotated.
//!
//! # `next_deadline` is never late
//!
//! Keys on level 0 are all smaller than keys on level 1, which are smaller than keys on
//! level 2, and so on, with the overflow list last (invariants 3 and 4). So the next slot
//! due is the lowest occupied slot of the lowest non-empty level. If it is on level 0,
//! [`next_deadline`](Wheel::next_deadline) scans it and returns its smallest deadline:
//! exact, and never later than any other entry's deadline. Otherwise it returns the start
//! of that slot (`start_tick * 1 ms`), which is `<=` every deadline in the slot and in the
//! slots after it: the time at which the driver must come back to cascade. While a cascade
//! or a budget-limited sweep is unfinished it returns a time `<= now`: "work now".
//!
//! # Bounded work
//!
//! [`advance`](Wheel::advance) takes a `budget`: it fires or moves at most that many entries
//! per call and returns [`Advance::MoreWork`] when work remains, so a caller that holds a
//! lock can drop it, run the fired entries' wakers and come back. Besides the budget, a call
//! costs a few bit operations per level and at most one read-only walk of the partially
//! elapsed level-0 slot (the same walk `next_deadline` does). State is consistent between
//! calls: inserting or removing while work remains is allowed.
//!
//! # Invariants
//!
//! Let `block(k, t) = t >> (6 * (k + 1))` (the level-`k` span containing tick `t`) and
//! `digit(k, t) = (t >> (6 * k)) & 63`.
//!
//! 1. Every pointer stored in the wheel (list heads and the `prev`/`next` links of linked
//!    entries) points to a valid, linked `Entry` of this wheel (the contract of
//!    [`Wheel::insert`]).
//! 2. An entry's recorded location (`level`, `slot`) names the list it is in, and is
//!    `UNLINKED` exactly when it is in no list. `len` counts the linked entries. A level's
//!    occupancy bit `s` is set iff slot `s` is non-empty. `elapsed <= now / TICK_NANOS`.
//!    Once an `advance` has returned [`Advance::Done`], every linked entry's deadline is
//!    `> now` (only an unfinished, budget-limited `advance` leaves due entries behind).
//! 3. An entry on level `k` has `block(k, key) == block(k, elapsed)` and
//!    `digit(k, key) >= digit(k, elapsed)`, strictly `>` for `k >= 1` unless the slot is the
//!    one being cascaded (whose start is `elapsed`). Hence keys on level `k` are smaller
//!    than keys on level `k + 1`, and each level's occupied slots are at or after
//!    `elapsed`'s digit, so the lowest set bit is the next slot due.
//! 4. An entry in the current overflow list has `key >> 36 > elapsed >> 36`, and
//!    `overflow_min` is `<=` every such key (`u64::MAX` when the list is empty); hence
//!    `elapsed < (overflow_min >> 36) << 36` while the list is non-empty.
//! 5. `cascading`, when set, names a list whose entries are all due to be fired or placed
//!    again; no placement ever puts an entry into that list (a lower level, or the other
//!    overflow list).
//!
//! # Safety contract, in short
//!
//! An [`Entry`] handed to [`insert`](Wheel::insert) must stay at the same address and alive
//! until it is unlinked again: by [`remove`](Wheel::remove), by being passed to the `fire`
//! callback of [`advance`](Wheel::advance) or to [`drain`](Wheel::drain), or by the wheel
//! being dropped. While it is linked, the wheel owns its links; the owner may only read it
//! through `&Entry` methods at times when no `&mut Wheel` method runs (for a wheel behind a
//! lock: while holding the lock).
#![allow(unsafe_code)]

use core::cell::Cell;
use core::fmt;
use core::marker::PhantomPinned;
use core::ptr::NonNull;

use crate::loom::AtomicU32;

#[cfg(test)]
mod tests;

/// Nanoseconds per tick: level-0 slots are 1 ms wide.
pub const TICK_NANOS: u64 = 1_000_000;
/// Bits of a tick consumed per level.
const SLOT_BITS: u32 = 6;
/// Slots per level.
pub const SLOTS: usize = 1 << SLOT_BITS;
/// Number of levels.
pub const LEVELS: usize = 6;
/// Ticks covered by the levels (the *top block*, 2^36 ms, about 2.18 years); later keys
/// wait in the overflow list.
pub const RANGE_TICKS: u64 = 1 << (SLOT_BITS * LEVELS as u32);

/// `Entry::level` of an entry in no list.
const UNLINKED: u8 = u8::MAX;
/// `Entry::level` of an entry in an overflow list (`Entry::slot` says which of the two).
const OVERFLOW: u8 = LEVELS as u8;

/// The slot key of a deadline: the tick whose millisecond contains it.
#[inline]
const fn key_of(deadline: u64) -> u64 {
    deadline / TICK_NANOS
}

/// log2 of the width, in ticks, of a slot of `level`.
#[inline]
const fn shift(level: usize) -> u32 {
    SLOT_BITS * level as u32
}

/// The level an entry with `key` belongs on when the wheel is at `elapsed`, or
/// `LEVELS` for the overflow list. `key >= elapsed`.
#[inline]
const fn level_for(elapsed: u64, key: u64) -> usize {
    let differing = (elapsed ^ key) | (SLOTS as u64 - 1);
    if differing >= RANGE_TICKS {
        return LEVELS;
    }
    let top_bit = 63 - differing.leading_zeros();
    (top_bit / SLOT_BITS) as usize
}

/// An intrusive wheel entry: embed it in the object that waits for a deadline.
///
/// An entry holds its deadline, the links of the slot list it is in, and the `(level,
/// slot)` of that list, which is what makes [`Wheel::remove`] O(1) however far the wheel has
/// turned since the insert. It is 32 bytes on 64-bit targets.
///
/// An entry is `!Unpin`: once inserted it must not move (see [`Wheel::insert`]).
///
/// ```compile_fail
/// fn unpin<T: Unpin>() {}
/// unpin::<cutoff_timer::wheel::Entry>();
/// ```
///
/// It is `Send` but not `Sync`: the wheel updates its links through a shared pointer, so
/// whoever shares it between threads must guard it with the wheel's own lock.
///
/// ```compile_fail
/// fn sync<T: Sync>() {}
/// sync::<cutoff_timer::wheel::Entry>();
/// ```
pub struct Entry {
    prev: Cell<Option<NonNull<Entry>>>,
    next: Cell<Option<NonNull<Entry>>>,
    deadline: Cell<u64>,
    /// `0..LEVELS`: a wheel level; `OVERFLOW`: an overflow list; `UNLINKED`: no list.
    level: Cell<u8>,
    /// The slot within the level, or which overflow list (0 or 1).
    slot: Cell<u8>,
    /// A word for the entry's owner; the wheel never reads or writes it. It sits in what
    /// would otherwise be padding, so an owner that needs a little shared state of its own
    /// (cutoff-timer keeps a deadline's shard and state here) pays no extra bytes.
    tag: AtomicU32,
    _pin: PhantomPinned,
}

// SAFETY: the raw links point only to entries of the same wheel, and they are only followed
// by that wheel's `&mut self` methods or by the owner while no such method runs (the
// contract of `Wheel::insert`); moving an unlinked entry (or, under that contract, exclusive
// access to a linked one) to another thread shares nothing.
unsafe impl Send for Entry {}

impl Entry {
    /// An unlinked entry with the given deadline (nanoseconds on the wheel's time line).
    #[cfg(not(loom))]
    pub const fn new(deadline: u64) -> Self {
        Self {
            prev: Cell::new(None),
            next: Cell::new(None),
            deadline: Cell::new(deadline),
            level: Cell::new(UNLINKED),
            slot: Cell::new(0),
            tag: AtomicU32::new(0),
            _pin: PhantomPinned,
        }
    }

    /// An unlinked entry with the given deadline (under loom atomics are not `const`).
    #[cfg(loom)]
    pub fn new(deadline: u64) -> Self {
        Self {
            prev: Cell::new(None),
            next: Cell::new(None),
            deadline: Cell::new(deadline),
            level: Cell::new(UNLINKED),
            slot: Cell::new(0),
            tag: AtomicU32::new(0),
            _pin: PhantomPinned,
        }
    }

    /// The owner's word (initially 0); see the field's documentation. The wheel never
    /// touches it, so it may be used from any thread whatever the wheel is doing.
    #[inline]
    pub fn tag(&self) -> &AtomicU32 {
        &self.tag
    }

    /// The deadline, in nanoseconds.
    #[inline]
    pub fn deadline(&self) -> u64 {
        self.deadline.get()
    }

    /// Changes the deadline of an entry that is not in a wheel.
    ///
    /// # Panics
    ///
    /// If the entry is in a wheel (remove it first: the wheel files entries by deadline).
    #[track_caller]
    pub fn set_deadline(&self, deadline: u64) {
        assert!(
            !self.is_linked(),
            "Entry::set_deadline on an entry in a wheel"
        );
        self.deadline.set(deadline);
    }

    /// Whether the entry is in a wheel: inserted, and neither removed nor fired since.
    #[inline]
    pub fn is_linked(&self) -> bool {
        self.level.get() != UNLINKED
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            prev: _,
            next: _,
            deadline,
            level,
            slot,
            tag: _,
            _pin,
        } = self;
        let mut d = f.debug_struct("Entry");
        d.field("deadline", &deadline.get());
        match level.get() {
            UNLINKED => d.field("linked", &false),
            OVERFLOW => d.field("overflow", &slot.get()),
            level => d.field("level", &level).field("slot", &slot.get()),
        };
        d.finish()
    }
}

/// Borrows an entry the wheel points to.
///
/// # Safety
///
/// `entry` must point to a live `Entry` (invariant 1 for pointers found in the wheel, the
/// caller's contract for pointers passed in).
#[inline]
unsafe fn get<'a>(entry: NonNull<Entry>) -> &'a Entry {
    // SAFETY: the caller guarantees `entry` is live; all its mutable fields are `Cell`s, so a
    // shared borrow never conflicts with the wheel's or the owner's other shared borrows.
    unsafe { entry.as_ref() }
}

/// The head of an intrusive doubly-linked list of entries.
struct List {
    head: Option<NonNull<Entry>>,
}

impl List {
    const fn new() -> Self {
        Self { head: None }
    }

    #[inline]
    fn is_empty(&self) -> bool {
        self.head.is_none()
    }

    /// Pushes `entry` at the front.
    ///
    /// # Safety
    ///
    /// `entry` is live and in no list; every entry of `self` is live.
    #[inline]
    unsafe fn push_front(&mut self, entry: NonNull<Entry>) {
        // SAFETY: `entry` is live (caller).
        let e = unsafe { get(entry) };
        e.prev.set(None);
        e.next.set(self.head);
        if let Some(head) = self.head {
            // SAFETY: entries of `self` are live (caller).
            unsafe { get(head) }.prev.set(Some(entry));
        }
        self.head = Some(entry);
    }

    /// Unlinks `entry` from this list and clears its links.
    ///
    /// # Safety
    ///
    /// `entry` is live and in `self`; every entry of `self` is live.
    #[inline]
    unsafe fn unlink(&mut self, entry: NonNull<Entry>) {
        // SAFETY: `entry` is live (caller).
        let e = unsafe { get(entry) };
        let (prev, next) = (e.prev.take(), e.next.take());
        match prev {
            // SAFETY: `prev` is a neighbour in `self`, so it is live (caller).
            Some(prev) => unsafe { get(prev) }.next.set(next),
            None => {
                debug_assert_eq!(self.head, Some(entry), "unlinking an entry of another list");
                self.head = next;
            }
        }
        if let Some(next) = next {
            // SAFETY: `next` is a neighbour in `self`, so it is live (caller).
            unsafe { get(next) }.prev.set(prev);
        }
    }
}

/// One level: 64 slot lists and their occupancy bitmap.
struct Level {
    /// Bit `s` is set iff `slots[s]` is non-empty (invariant 2).
    occupied: u64,
    slots: [List; SLOTS],
}

impl Level {
    const fn new() -> Self {
        Self {
            occupied: 0,
            slots: [const { List::new() }; SLOTS],
        }
    }
}

/// The result of [`Wheel::advance`] and [`Wheel::drain`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "`MoreWork` means the call ran out of budget: call it again"]
pub enum Advance {
    /// Everything due has been fired; [`Wheel::next_deadline`] is later than `now`.
    Done,
    /// The budget ran out with work left: call again (the wheel stays consistent in between,
    /// and [`Wheel::next_deadline`] returns a time `<= now` until the work is done).
    MoreWork,
}

/// A hierarchical timer wheel. See the [module documentation](self) for the design.
///
/// ```
/// use core::pin::pin;
/// use core::ptr::NonNull;
/// use cutoff_timer::wheel::{Advance, Entry, Wheel};
///
/// let mut wheel = Wheel::new();
/// let entry = pin!(Entry::new(2_500_000)); // 2.5 ms
/// // SAFETY: the pinned entry outlives its time in the wheel (it fires below).
/// unsafe { wheel.insert(NonNull::from(&*entry)) }.unwrap();
/// assert_eq!(wheel.next_deadline(), Some(2_500_000)); // exact, not rounded to 3 ms
///
/// let mut fired = 0;
/// assert_eq!(wheel.advance(2_499_999, 64, |_| fired += 1), Advance::Done);
/// assert_eq!(fired, 0); // never early
/// assert_eq!(wheel.advance(2_500_000, 64, |_| fired += 1), Advance::Done);
/// assert_eq!(fired, 1);
/// assert!(!entry.is_linked());
/// ```
pub struct Wheel {
    levels: [Level; LEVELS],
    /// Two overflow lists; `overflow[current_overflow]` takes new entries, the other one is
    /// empty or being cascaded (invariant 5).
    overflow: [List; 2],
    current_overflow: u8,
    /// A lower bound of the keys in the current overflow list (invariant 4).
    overflow_min: u64,
    /// `(level, slot)` of the list being cascaded, if a cascade is under way (invariant 5).
    cascading: Option<(u8, u8)>,
    /// The wheel's position, a tick (invariant 2).
    elapsed: u64,
    /// The latest time passed to `advance` (or `with_now`), in nanoseconds.
    now: u64,
    len: usize,
}

// SAFETY: the wheel has exclusive use of its linked entries (the contract of `insert`), as a
// `Vec<&mut Entry>` would, and `Entry: Send`.
unsafe impl Send for Wheel {}

impl Default for Wheel {
    fn default() -> Self {
        Self::new()
    }
}

impl Wheel {
    /// An empty wheel at time `0`.
    pub const fn new() -> Self {
        Self::with_now(0)
    }

    /// An empty wheel at time `now` (nanoseconds).
    pub const fn with_now(now: u64) -> Self {
        Self {
            levels: [const { Level::new() }; LEVELS],
            overflow: [List::new(), List::new()],
            current_overflow: 0,
            overflow_min: u64::MAX,
            cascading: None,
            elapsed: key_of(now),
            now,
            len: 0,
        }
    }

    /// The wheel's current time: the latest `now` passed to [`advance`](Self::advance) (or
    /// [`with_now`](Self::with_now)).
    #[inline]
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The number of entries in the wheel.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the wheel holds no entries.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Inserts `entry`, filed by its [`deadline`](Entry::deadline). Allocates nothing; costs
    /// a few bit operations.
    ///
    /// # Errors
    ///
    /// Returns `Err(entry)`, leaving the entry unlinked, if its deadline is not after
    /// [`now`](Self::now): it is already due, and the caller should fire it at once.
    ///
    /// # Panics
    ///
    /// If `entry` is already in a wheel.
    ///
    /// # Safety
    ///
    /// * `entry` points to a live `Entry`.
    /// * The entry stays at the same address and alive until it is unlinked again: by
    ///   [`remove`](Self::remove), by being passed to the `fire` callback of
    ///   [`advance`](Self::advance) or the callback of [`drain`](Self::drain), or by this
    ///   wheel being dropped.
    /// * Until then, the entry is read or written only through this wheel's methods, or
    ///   through `&Entry` methods while no method of this wheel runs concurrently (for a
    ///   wheel behind a lock: while holding that lock); no `&mut Entry` to it is created.
    #[track_caller]
    pub unsafe fn insert(&mut self, entry: NonNull<Entry>) -> Result<(), NonNull<Entry>> {
        // SAFETY: the caller guarantees `entry` is live.
        let e = unsafe { get(entry) };
        assert!(
            !e.is_linked(),
            "Wheel::insert of an entry that is already in a wheel"
        );
        if e.deadline() <= self.now {
            return Err(entry);
        }
        // SAFETY: `entry` is live, unlinked and due after `now` (checked above), and the
        // caller keeps it valid while it is linked (invariant 1).
        unsafe { self.place(entry) };
        self.len += 1;
        Ok(())
    }

    /// Removes `entry` from the wheel in O(1), wherever cascading has moved it. Returns
    /// `false` (and does nothing) if the entry is not linked, e.g. because it already fired.
    ///
    /// # Safety
    ///
    /// `entry` points to a live `Entry` that is either unlinked or linked into *this* wheel.
    pub unsafe fn remove(&mut self, entry: NonNull<Entry>) -> bool {
        // SAFETY: the caller guarantees `entry` is live.
        if !unsafe { get(entry) }.is_linked() {
            return false;
        }
        // SAFETY: `entry` is live and linked into this wheel (caller).
        unsafe { self.unlink(entry) };
        self.len -= 1;
        true
    }

    /// The time at which the driver must call [`advance`](Self::advance) next, or `None`
    /// if the wheel is empty.
    ///
    /// It is never later than the earliest deadline in the wheel. When the next slot due is
    /// on level 0 it is *exact*: the smallest deadline in that slot, found by scanning it.
    /// Otherwise it is the start of the next higher-level slot (or overflow pass) due, where
    /// entries must cascade. A value `<= now()` means work is pending now (an
    /// [`Advance::MoreWork`] was returned); after [`Advance::Done`] it is `> now()`.
    ///
    /// Cost: O(levels) bit operations plus a walk of one level-0 slot.
    pub fn next_deadline(&self) -> Option<u64> {
        if self.cascading.is_some() {
            return Some(self.now);
        }
        let (level, slot, start) = self.next_slot()?;
        if level == 0 {
            // SAFETY: the list belongs to this wheel (invariant 1).
            unsafe { self.min_deadline(slot) }
        } else {
            // `start <= key <= u64::MAX / TICK_NANOS`, so this does not overflow.
            Some(start * TICK_NANOS)
        }
    }

    /// Moves the wheel forward to `now` (nanoseconds) and fires every entry whose deadline
    /// is `<= now`, calling `fire` once for each (the entry is already unlinked, and the
    /// wheel consistent, when `fire` runs). Entries whose slot has come due but whose
    /// deadline is later cascade to a finer level. A `now` earlier than [`now()`](Self::now)
    /// is treated as `now()`: the wheel never goes back.
    ///
    /// At most `budget` entries are fired or moved per call. If work remains the call
    /// returns [`Advance::MoreWork`]: call again (inserting and removing in between is
    /// fine). A budget of `0` only moves the time.
    ///
    /// If `fire` panics, the entry it was given and all entries before it have been
    /// unlinked, and the wheel stays consistent.
    pub fn advance(
        &mut self,
        now: u64,
        budget: usize,
        mut fire: impl FnMut(NonNull<Entry>),
    ) -> Advance {
        if now > self.now {
            self.now = now;
        }
        let now = self.now;
        let tick = key_of(now);
        let mut budget = budget;
        loop {
            if let Some((level, slot)) = self.cascading {
                while let Some(entry) = self.list(level, slot).head {
                    if budget == 0 {
                        return Advance::MoreWork;
                    }
                    budget -= 1;
                    // SAFETY: `entry` is in one of this wheel's lists, so live and linked
                    // here (invariant 1).
                    unsafe { self.unlink(entry) };
                    // SAFETY: as above, `entry` is live.
                    if unsafe { get(entry) }.deadline() <= now {
                        self.len -= 1;
                        fire(entry);
                    } else {
                        // SAFETY: live, just unlinked, due after `now`; it goes to a lower
                        // level or the other overflow list, never back here (invariant 5).
                        unsafe { self.place(entry) };
                    }
                }
                self.cascading = None;
            }
            let Some((level, slot, start)) = self.next_slot() else {
                self.elapsed = tick;
                return Advance::Done;
            };
            if start > tick {
                // Nothing is due: by invariants 3 and 4 every other slot starts later still.
                self.elapsed = tick;
                return Advance::Done;
            }
            if level == 0 && start == tick {
                // The partially elapsed slot: fire what is due, keep the rest in place.
                self.elapsed = tick;
                // SAFETY: level-0 slot lists belong to this wheel (invariant 1).
                return unsafe { self.sweep(slot, now, &mut budget, &mut fire) };
            }
            // A slot (or the overflow list) that is due: cascade it. `start >= elapsed`
            // by invariants 3 and 4, so the wheel only moves forward.
            debug_assert!(start >= self.elapsed, "{start} < {}", self.elapsed);
            self.elapsed = start;
            if level == OVERFLOW {
                debug_assert!(self.overflow[usize::from(slot ^ 1)].is_empty());
                self.current_overflow ^= 1;
                self.overflow_min = u64::MAX;
            }
            self.cascading = Some((level, slot));
        }
    }

    /// Unlinks every entry and passes each to `f`, at most `budget` per call, without moving
    /// the time; for shutting a driver down. Returns [`Advance::MoreWork`] while entries
    /// remain.
    pub fn drain(&mut self, budget: usize, mut f: impl FnMut(NonNull<Entry>)) -> Advance {
        let mut budget = budget;
        while let Some(entry) = self.any_entry() {
            if budget == 0 {
                return Advance::MoreWork;
            }
            budget -= 1;
            // SAFETY: `entry` was found in this wheel's lists (invariant 1).
            unsafe { self.unlink(entry) };
            self.len -= 1;
            f(entry);
        }
        self.cascading = None;
        Advance::Done
    }

    /// Some linked entry, if any.
    fn any_entry(&self) -> Option<NonNull<Entry>> {
        for level in &self.levels {
            if level.occupied != 0 {
                return level.slots[level.occupied.trailing_zeros() as usize].head;
            }
        }
        self.overflow[0].head.or(self.overflow[1].head)
    }

    /// The list named by a `(level, slot)` location.
    #[inline]
    fn list(&mut self, level: u8, slot: u8) -> &mut List {
        if level == OVERFLOW {
            &mut self.overflow[usize::from(slot)]
        } else {
            &mut self.levels[usize::from(level)].slots[usize::from(slot)]
        }
    }

    /// The next slot due: `(level, slot, start tick)` of the lowest occupied slot of the
    /// lowest non-empty level, else `(OVERFLOW, current list, start of overflow_min's top
    /// block)`, else `None`. Not meaningful while `cascading` is set.
    fn next_slot(&self) -> Option<(u8, u8, u64)> {
        for (level, lvl) in self.levels.iter().enumerate() {
            if lvl.occupied == 0 {
                continue;
            }
            let slot = lvl.occupied.trailing_zeros();
            let level_shift = shift(level);
            debug_assert!(
                u64::from(slot) >= (self.elapsed >> level_shift) & (SLOTS as u64 - 1),
                "level {level} slot {slot} is behind elapsed {} (occupied {:#x})",
                self.elapsed,
                lvl.occupied,
            );
            let span_shift = level_shift + SLOT_BITS;
            let start =
                ((self.elapsed >> span_shift) << span_shift) | (u64::from(slot) << level_shift);
            return Some((level as u8, slot as u8, start));
        }
        let current = self.current_overflow;
        if self.overflow[usize::from(current)].is_empty() {
            return None;
        }
        let start = self.overflow_min & !(RANGE_TICKS - 1);
        debug_assert!(
            start > self.elapsed,
            "overflow start {start} <= {}",
            self.elapsed
        );
        Some((OVERFLOW, current, start))
    }

    /// The smallest deadline in level-0 slot `slot`.
    ///
    /// # Safety
    ///
    /// Invariant 1 holds.
    unsafe fn min_deadline(&self, slot: u8) -> Option<u64> {
        let mut min = None::<u64>;
        let mut cursor = self.levels[0].slots[usize::from(slot)].head;
        while let Some(entry) = cursor {
            // SAFETY: `entry` is in one of this wheel's lists (invariant 1).
            let e = unsafe { get(entry) };
            min = Some(min.map_or(e.deadline(), |m| m.min(e.deadline())));
            cursor = e.next.get();
        }
        min
    }

    /// Fires the entries of level-0 slot `slot` (the partially elapsed one) whose deadline is
    /// `<= now`, within `budget`.
    ///
    /// # Safety
    ///
    /// Invariant 1 holds.
    unsafe fn sweep(
        &mut self,
        slot: u8,
        now: u64,
        budget: &mut usize,
        fire: &mut impl FnMut(NonNull<Entry>),
    ) -> Advance {
        let mut cursor = self.levels[0].slots[usize::from(slot)].head;
        while let Some(entry) = cursor {
            // SAFETY: `entry` is in one of this wheel's lists (invariant 1).
            let e = unsafe { get(entry) };
            // Read the successor first: `entry` leaves the list below, `next` stays in it
            // (only `fire` runs in between, and it cannot reach the wheel).
            cursor = e.next.get();
            if e.deadline() <= now {
                if *budget == 0 {
                    return Advance::MoreWork;
                }
                *budget -= 1;
                // SAFETY: `entry` is live and linked in this wheel (invariant 1).
                unsafe { self.unlink(entry) };
                self.len -= 1;
                fire(entry);
            }
        }
        Advance::Done
    }

    /// Files a live, unlinked entry whose deadline is after `now` into the level (or
    /// overflow list) its key belongs to relative to `elapsed`.
    ///
    /// # Safety
    ///
    /// `entry` is live and unlinked, and stays valid while linked (invariant 1).
    unsafe fn place(&mut self, entry: NonNull<Entry>) {
        // SAFETY: `entry` is live (caller).
        let e = unsafe { get(entry) };
        debug_assert!(e.deadline() > self.now);
        let key = key_of(e.deadline());
        debug_assert!(
            key >= self.elapsed,
            "key {key} behind elapsed {}",
            self.elapsed
        );
        let level = level_for(self.elapsed, key);
        let (level, slot, list) = if level == LEVELS {
            let current = self.current_overflow;
            self.overflow_min = self.overflow_min.min(key);
            (OVERFLOW, current, &mut self.overflow[usize::from(current)])
        } else {
            let slot = ((key >> shift(level)) & (SLOTS as u64 - 1)) as u8;
            let lvl = &mut self.levels[level];
            lvl.occupied |= 1 << slot;
            (level as u8, slot, &mut lvl.slots[usize::from(slot)])
        };
        // SAFETY: `entry` is live and unlinked (caller); the list's entries are live
        // (invariant 1).
        unsafe { list.push_front(entry) };
        e.level.set(level);
        e.slot.set(slot);
    }

    /// Unlinks a linked entry from the list its location names, keeping the occupancy bits
    /// and `overflow_min` in step (invariants 2 and 4). Does not touch `len`.
    ///
    /// # Safety
    ///
    /// `entry` is live and linked into this wheel.
    unsafe fn unlink(&mut self, entry: NonNull<Entry>) {
        // SAFETY: `entry` is live (caller).
        let e = unsafe { get(entry) };
        let (level, slot) = (e.level.get(), e.slot.get());
        debug_assert_ne!(level, UNLINKED);
        let list = self.list(level, slot);
        // SAFETY: the location names the list `entry` is in (invariant 2), whose entries are
        // live (invariant 1).
        unsafe { list.unlink(entry) };
        let emptied = list.is_empty();
        e.level.set(UNLINKED);
        if emptied {
            if level == OVERFLOW {
                if slot == self.current_overflow {
                    self.overflow_min = u64::MAX;
                }
            } else {
                self.levels[usize::from(level)].occupied &= !(1 << slot);
            }
        }
    }
}

impl Drop for Wheel {
    /// Unlinks the remaining entries (marking them unlinked) without firing them.
    fn drop(&mut self) {
        let _ = self.drain(usize::MAX, |_| {});
    }
}

impl fmt::Debug for Wheel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            levels,
            overflow,
            current_overflow,
            overflow_min,
            cascading,
            elapsed,
            now,
            len,
        } = self;
        let occupied: [u64; LEVELS] = core::array::from_fn(|level| levels[level].occupied);
        f.debug_struct("Wheel")
            .field("now", now)
            .field("elapsed", elapsed)
            .field("len", len)
            .field("occupied", &format_args!("{occupied:x?}"))
            .field(
                "overflow",
                &!overflow[usize::from(*current_overflow)].is_empty(),
            )
            .field("overflow_min", overflow_min)
            .field("cascading", cascading)
            .finish()
    }
}
