//! Unit tests of the wheel: explicit edge cases, then a proptest against a `BTreeSet` model.

use core::pin::Pin;
use std::collections::{BTreeSet, HashMap};

use super::*;

const MS: u64 = TICK_NANOS;
const SEC: u64 = 1_000 * MS;
const YEAR: u64 = 365 * 24 * 3600 * SEC;

/// Test harness: a wheel plus the entries it may point to. Field order matters: the wheel
/// is dropped (unlinking what is left) before the entries are freed.
struct Harness {
    wheel: Wheel,
    entries: Vec<Pin<Box<Entry>>>,
    ids: HashMap<*const Entry, usize>,
}

impl Harness {
    fn new() -> Self {
        Self::with_now(0)
    }

    fn with_now(now: u64) -> Self {
        Self {
            wheel: Wheel::with_now(now),
            entries: Vec::new(),
            ids: HashMap::new(),
        }
    }

    /// A new, not yet inserted entry.
    fn entry(&mut self, deadline: u64) -> usize {
        let entry = Box::pin(Entry::new(deadline));
        let id = self.entries.len();
        self.ids.insert(&*entry as *const Entry, id);
        self.entries.push(entry);
        id
    }

    fn ptr(&self, id: usize) -> NonNull<Entry> {
        NonNull::from(&*self.entries[id])
    }

    fn get(&self, id: usize) -> &Entry {
        &self.entries[id]
    }

    /// Inserts entry `id`; `false` if it was already due.
    fn insert(&mut self, id: usize) -> bool {
        let ptr = self.ptr(id);
        // SAFETY: the entry is boxed and pinned, and lives as long as the harness, which
        // drops the wheel first.
        match unsafe { self.wheel.insert(ptr) } {
            Ok(()) => true,
            Err(back) => {
                assert_eq!(back, ptr);
                assert!(!self.get(id).is_linked());
                false
            }
        }
    }

    /// A new entry, inserted; panics if it was already due.
    fn add(&mut self, deadline: u64) -> usize {
        let id = self.entry(deadline);
        assert!(
            self.insert(id),
            "deadline {deadline} is not after {}",
            self.wheel.now()
        );
        id
    }

    fn remove(&mut self, id: usize) -> bool {
        let ptr = self.ptr(id);
        // SAFETY: the entry is live and, if linked, linked into this wheel.
        unsafe { self.wheel.remove(ptr) }
    }

    /// One `advance` call; the ids it fired, in firing order.
    fn step(&mut self, now: u64, budget: usize) -> (Advance, Vec<usize>) {
        let mut fired = Vec::new();
        let ids = &self.ids;
        let result = self.wheel.advance(now, budget, |entry| {
            // SAFETY: fired entries are unlinked and still owned by the harness.
            assert!(!unsafe { entry.as_ref() }.is_linked());
            fired.push(ids[&entry.as_ptr().cast_const()]);
        });
        (result, fired)
    }

    /// `advance` to `now` until done; the ids fired.
    fn run(&mut self, now: u64) -> Vec<usize> {
        let (result, fired) = self.step(now, usize::MAX);
        assert_eq!(result, Advance::Done);
        fired
    }

    /// Where an entry is filed: `Some((level, slot))`, `LEVELS` meaning overflow.
    fn location(&self, id: usize) -> Option<(u8, u8)> {
        let e = self.get(id);
        e.is_linked().then(|| (e.level.get(), e.slot.get()))
    }

    /// Drives the wheel like a precise driver (advance to `next_deadline`, repeat) until it
    /// is empty, checking that every entry fires exactly at its deadline. Returns the ids in
    /// firing order.
    fn drive_to_empty(&mut self) -> Vec<usize> {
        let mut order = Vec::new();
        let mut steps = 0;
        let limit = (self.wheel.len() + 1) * (LEVELS + 3) + 16;
        while let Some(next) = self.wheel.next_deadline() {
            assert!(
                next > self.wheel.now(),
                "next {next} <= now {}",
                self.wheel.now()
            );
            for id in self.run(next) {
                assert_eq!(
                    self.get(id).deadline(),
                    next,
                    "entry {id} fired off its deadline"
                );
                order.push(id);
            }
            steps += 1;
            assert!(steps <= limit, "no progress after {steps} steps");
        }
        assert!(self.wheel.is_empty());
        order
    }
}

#[test]
fn empty_wheel() {
    let mut h = Harness::new();
    assert!(h.wheel.is_empty());
    assert_eq!(h.wheel.len(), 0);
    assert_eq!(h.wheel.next_deadline(), None);
    assert!(h.run(5 * MS).is_empty());
    assert_eq!(h.wheel.now(), 5 * MS);
    assert!(h.run(u64::MAX).is_empty());
    assert_eq!(h.wheel.now(), u64::MAX);
    assert_eq!(h.wheel.next_deadline(), None);
    assert_eq!(Wheel::default().now(), 0);
    let debug = format!("{:?}", h.wheel);
    assert!(debug.contains("Wheel"), "{debug}");
}

#[test]
fn zero_past_and_present_deadlines_are_refused() {
    let mut h = Harness::new();
    let zero = h.entry(0);
    assert!(!h.insert(zero), "deadline 0 at time 0 is due");
    let mut h = Harness::with_now(10 * MS);
    for deadline in [0, 1, 5 * MS, 10 * MS - 1, 10 * MS] {
        let id = h.entry(deadline);
        assert!(!h.insert(id), "deadline {deadline} at now {}", 10 * MS);
    }
    assert!(h.wheel.is_empty());
    let later = h.entry(10 * MS + 1);
    assert!(h.insert(later));
    assert_eq!(h.wheel.len(), 1);
    // After an advance, `now` moves and the same rule applies.
    h.run(20 * MS);
    let late = h.entry(15 * MS);
    assert!(!h.insert(late));
}

#[test]
fn rounds_up_never_early() {
    let mut h = Harness::new();
    let one_ns = h.add(1);
    assert_eq!(h.location(one_ns), Some((0, 0)));
    assert_eq!(h.wheel.next_deadline(), Some(1));
    assert!(
        h.run(0).is_empty(),
        "fired at 0, before its deadline of 1 ns"
    );
    assert_eq!(h.run(1), [one_ns]);

    // A deadline inside a millisecond: not at the start of its tick, only at/after it; a
    // driver that advances in whole ticks fires it at the next tick boundary.
    let mut h = Harness::new();
    let mid = h.add(MS + MS / 2);
    assert!(h.run(MS).is_empty());
    assert!(h.run(MS + MS / 2 - 1).is_empty());
    assert_eq!(h.run(2 * MS), [mid]);

    // Exactly on a tick boundary.
    let mut h = Harness::new();
    let edge = h.add(3 * MS);
    assert!(h.run(3 * MS - 1).is_empty());
    assert_eq!(h.run(3 * MS), [edge]);
}

#[test]
fn partially_elapsed_slot_fires_only_what_is_due() {
    let mut h = Harness::new();
    let a = h.add(10 * MS + 200_000);
    let b = h.add(10 * MS + 500_000);
    let c = h.add(10 * MS + 800_000);
    assert_eq!(h.wheel.next_deadline(), Some(10 * MS + 200_000));
    assert!(h.run(10 * MS).is_empty());
    let mut fired = h.run(10 * MS + 500_000);
    fired.sort();
    assert_eq!(fired, [a, b]);
    assert_eq!(
        h.wheel.next_deadline(),
        Some(10 * MS + 800_000),
        "exact, not rounded"
    );
    assert!(h.get(c).is_linked());
    // A new entry in the same, partially elapsed, millisecond.
    let d = h.add(10 * MS + 600_000);
    assert_eq!(h.wheel.next_deadline(), Some(10 * MS + 600_000));
    assert_eq!(h.run(10 * MS + 700_000), [d]);
    assert_eq!(h.run(11 * MS), [c]);
    assert!(h.wheel.is_empty());
}

#[test]
fn level_placement_at_boundaries() {
    let mut h = Harness::new();
    let cases = [
        (63 * MS, 0, 63),
        (63 * MS + 999_999, 0, 63),
        (64 * MS, 1, 1),
        (65 * MS, 1, 1),
        (127 * MS, 1, 1),
        (128 * MS, 1, 2),
        (4095 * MS, 1, 63),
        (4096 * MS, 2, 1),
        (4097 * MS, 2, 1),
        (64u64.pow(3) * MS - 1, 2, 63),
        (64u64.pow(3) * MS, 3, 1),
        (64u64.pow(4) * MS, 4, 1),
        (64u64.pow(5) * MS, 5, 1),
        (64u64.pow(6) * MS - 1, 5, 63),
        (64u64.pow(6) * MS, OVERFLOW, 0),
        (u64::MAX, OVERFLOW, 0),
    ];
    for (deadline, level, slot) in cases {
        let id = h.add(deadline);
        assert_eq!(h.location(id), Some((level, slot)), "deadline {deadline}");
    }
    assert_eq!(h.wheel.len(), cases.len());
    // Driven precisely, each fires exactly at its deadline, in deadline order.
    let order = h.drive_to_empty();
    let deadlines: Vec<u64> = order.iter().map(|&id| h.get(id).deadline()).collect();
    assert!(deadlines.is_sorted(), "{deadlines:?}");
    assert_eq!(order.len(), cases.len());
}

#[test]
fn level_range_edges_fire_on_time() {
    // For each level's range edge: one entry just inside, one at, one just after. Advance to
    // 1 ns before each deadline (nothing of it fires), then to the deadline (it fires).
    let mut edges = Vec::new();
    for k in 1..=LEVELS as u32 {
        let edge = 64u64.pow(k) * MS;
        edges.extend([edge - MS, edge - 1, edge, edge + 1, edge + MS]);
    }
    let mut h = Harness::new();
    let ids: Vec<usize> = edges.iter().map(|&d| h.add(d)).collect();
    for (&id, &deadline) in ids.iter().zip(&edges) {
        assert!(h.run(deadline - 1).is_empty(), "early at {deadline}");
        assert_eq!(h.run(deadline), [id], "deadline {deadline}");
    }
    assert!(h.wheel.is_empty());
}

#[test]
fn cascade_keeps_millisecond_accuracy() {
    let mut h = Harness::new();
    let hour = 3600 * SEC + 300_000; // 1 h + 0.3 ms
    let id = h.add(hour);
    assert_eq!(h.location(id).unwrap().0, 3);
    // Coarse steps: the entry moves down the levels, never fires early.
    let mut now = 0;
    while now + 7 * SEC < hour {
        now += 7 * SEC;
        assert!(h.run(now).is_empty());
    }
    assert!(h.location(id).unwrap().0 < 3, "{:?}", h.location(id));
    assert!(h.run(hour - 1).is_empty());
    assert_eq!(h.location(id), Some((0, ((hour / MS) % 64) as u8)));
    assert_eq!(h.wheel.next_deadline(), Some(hour));
    assert_eq!(h.run(hour), [id]);
}

#[test]
fn next_deadline_is_slot_start_for_higher_levels() {
    let mut h = Harness::new();
    h.add(100 * MS + 7); // level 1, slot 1: [64, 128) ms
    assert_eq!(h.wheel.next_deadline(), Some(64 * MS));
    assert!(h.run(64 * MS).is_empty()); // cascades to level 0
    assert_eq!(h.wheel.next_deadline(), Some(100 * MS + 7));
    let mut h = Harness::new();
    h.add(64u64.pow(6) * MS + 5); // overflow: the next top block starts at 2^36 ms
    assert_eq!(h.wheel.next_deadline(), Some(RANGE_TICKS * MS));
}

#[test]
fn top_block_wrap() {
    // Start 10 ms before the end of the first top block (2^36 ms) and insert across it.
    let boundary = RANGE_TICKS * MS;
    let start = boundary - 10 * MS;
    let mut h = Harness::with_now(start);
    let before = h.add(boundary - 5 * MS);
    let at = h.add(boundary);
    let after = h.add(boundary + 20 * MS + 3);
    let far = h.add(boundary + 3 * 64u64.pow(4) * MS);
    let next_block = h.add(2 * boundary + 1);
    assert_eq!(h.location(before).unwrap().0, 0);
    for id in [at, after, far, next_block] {
        assert_eq!(h.location(id).unwrap().0, OVERFLOW, "{id}");
    }
    assert_eq!(h.run(boundary - 1), [before]);
    // At the boundary the overflow list is cascaded into the new block's levels.
    assert_eq!(h.run(boundary), [at]);
    assert_eq!(h.location(after).unwrap().0, 0);
    assert_eq!(h.location(far).unwrap().0, 4);
    assert_eq!(h.location(next_block).unwrap().0, OVERFLOW);
    let order = h.drive_to_empty();
    assert_eq!(order, [after, far, next_block]);

    // Many blocks later, with a tick-granular driver (large steps).
    let mut h = Harness::with_now(start);
    let ids: Vec<usize> = (1..=5u64)
        .map(|k| h.add(k * boundary + k * MS + 1))
        .collect();
    let mut fired = Vec::new();
    for k in 1..=5u64 {
        assert!(h.run(k * boundary + k * MS).is_empty());
        fired.extend(h.run(k * boundary + (k + 1) * MS));
    }
    assert_eq!(fired, ids);
}

#[test]
fn far_future_and_max_deadlines() {
    let mut h = Harness::new();
    let max = h.add(u64::MAX);
    let max_1 = h.add(u64::MAX - 1);
    let century = h.add(100 * YEAR);
    let years = [1, 2, 3, 10, 300].map(|y| h.add(y * YEAR + 123));
    assert_eq!(h.run(YEAR / 2), Vec::<usize>::new());
    assert_eq!(h.run(YEAR + 123), [years[0]]);
    assert_eq!(h.run(2 * YEAR + 122), Vec::<usize>::new());
    let mut fired = h.run(50 * YEAR);
    fired.sort();
    assert_eq!(fired, [years[1], years[2], years[3]]);
    assert_eq!(h.run(100 * YEAR), [century]);
    assert_eq!(h.run(u64::MAX - 2), [years[4]]);
    assert_eq!(h.run(u64::MAX - 1), [max_1]);
    let next = h.wheel.next_deadline().unwrap();
    assert!(next > u64::MAX - 1, "{next}");
    assert!(h.get(max).is_linked());
    assert_eq!(h.run(u64::MAX), [max]);
    assert!(h.wheel.is_empty());
}

#[test]
fn max_deadline_never_fires_before_max() {
    // One jump straight to `u64::MAX - 1`, then precise driving from there.
    let mut h = Harness::new();
    let max = h.add(u64::MAX);
    let near = h.add(u64::MAX - 5 * MS);
    assert_eq!(h.run(u64::MAX - 1), [near]);
    assert!(h.get(max).is_linked());
    assert_eq!(h.wheel.next_deadline(), Some(u64::MAX));
    assert_eq!(h.drive_to_empty(), [max]);

    // From 0 with a precise driver: exactly on time, bounded number of steps.
    let mut h = Harness::new();
    let max = h.add(u64::MAX);
    assert_eq!(h.drive_to_empty(), [max]);
}

#[test]
fn remove_anywhere_in_o1() {
    let mut h = Harness::new();
    let l0 = h.add(5 * MS);
    let l3 = h.add(400 * SEC);
    let ov = h.add(5 * YEAR);
    let stay = h.add(6 * MS);
    assert_eq!(h.wheel.len(), 4);
    assert!(h.remove(l3));
    assert!(!h.remove(l3), "second remove is a no-op");
    assert!(h.remove(ov));
    assert!(h.remove(l0));
    assert_eq!(h.wheel.len(), 1);
    assert!(
        h.wheel.levels[3].occupied == 0,
        "bit cleared when the slot emptied"
    );
    assert!(h.wheel.overflow.iter().all(List::is_empty));
    assert_eq!(h.wheel.overflow_min, u64::MAX);
    assert_eq!(h.wheel.next_deadline(), Some(6 * MS));
    assert_eq!(h.drive_to_empty(), [stay]);
    for id in [l0, l3, ov] {
        assert!(!h.get(id).is_linked());
    }
}

#[test]
fn remove_after_cascade() {
    let mut h = Harness::new();
    let a = h.add(100 * MS);
    let b = h.add(100 * MS + 1);
    let c = h.add(3 * YEAR);
    assert_eq!(h.location(a), Some((1, 1)));
    h.run(64 * MS);
    assert_eq!(h.location(a), Some((0, 36)), "cascaded to level 0");
    assert!(h.remove(a));
    assert_eq!(h.wheel.next_deadline(), Some(100 * MS + 1));
    // The overflow entry cascades into the levels after the top block boundary.
    h.run(RANGE_TICKS * MS);
    let (level, _) = h.location(c).unwrap();
    assert!(level < OVERFLOW);
    assert!(h.remove(c));
    assert!(h.wheel.is_empty());
    assert!(!h.get(b).is_linked(), "b fired on the way");
}

#[test]
fn budget_limits_work_and_resumes() {
    let mut h = Harness::new();
    let ids: Vec<usize> = (0..10).map(|i| h.add(70 * MS + i)).collect(); // all in one L1 slot
    let mut fired = Vec::new();
    let mut calls = 0;
    loop {
        let (result, now_fired) = h.step(80 * MS, 3);
        assert!(now_fired.len() <= 3);
        fired.extend(now_fired);
        calls += 1;
        if result == Advance::Done {
            break;
        }
        let next = h.wheel.next_deadline().unwrap();
        assert!(
            next <= h.wheel.now(),
            "MoreWork but next_deadline {next} is later"
        );
    }
    // 10 cascades (or fires) from level 1, each counted once: 4 calls of at most 3.
    assert_eq!(calls, 4);
    fired.sort();
    assert_eq!(fired, ids);
    assert_eq!(h.wheel.next_deadline(), None);

    // Budget 0 moves time only.
    let mut h = Harness::new();
    let id = h.add(2 * MS);
    assert_eq!(h.step(MS, 0), (Advance::Done, vec![]));
    assert_eq!(h.step(3 * MS, 0), (Advance::MoreWork, vec![]));
    assert_eq!(h.step(3 * MS, 1), (Advance::Done, vec![id]));

    // Budget in the partially elapsed slot: survivors do not consume it, due ones do.
    let mut h = Harness::new();
    let late: Vec<usize> = (0..5).map(|i| h.add(MS + 900_000 + i)).collect();
    let early: Vec<usize> = (0..5).map(|i| h.add(MS + 100_000 + i)).collect();
    h.run(MS);
    let mut fired = Vec::new();
    loop {
        let (result, now_fired) = h.step(MS + 500_000, 2);
        fired.extend(now_fired);
        if result == Advance::Done {
            break;
        }
    }
    fired.sort();
    assert_eq!(fired, early);
    assert!(late.iter().all(|&id| h.get(id).is_linked()));
}

#[test]
fn insert_and_remove_while_more_work() {
    let mut h = Harness::new();
    let ids: Vec<usize> = (0..6).map(|i| h.add(4096 * MS + i * 100 * MS)).collect(); // L2
    let (result, mut fired) = h.step(5000 * MS, 1);
    assert_eq!(result, Advance::MoreWork);
    assert!(h.wheel.cascading.is_some());
    // Remove one that is still in the cascading slot, insert new ones mid-cascade.
    let victim = ids
        .iter()
        .copied()
        .find(|&id| h.location(id).is_some_and(|(level, _)| level == 2))
        .expect("some entry still waits in the cascading slot");
    assert!(h.remove(victim));
    let soon = h.add(5000 * MS + 1);
    let sooner_than_pending = h.add(5000 * MS + 2);
    let far = h.add(9000 * MS);
    loop {
        let (result, now_fired) = h.step(5000 * MS, 1);
        fired.extend(now_fired);
        if result == Advance::Done {
            break;
        }
    }
    for &id in &fired {
        assert!(h.get(id).deadline() <= 5000 * MS);
    }
    let mut expected: Vec<usize> = ids
        .iter()
        .copied()
        .filter(|&id| id != victim && h.get(id).deadline() <= 5000 * MS)
        .collect();
    expected.sort();
    fired.sort();
    assert_eq!(fired, expected);
    let rest = h.drive_to_empty();
    assert_eq!(rest.len(), 6 - 1 - expected.len() + 3);
    assert!(rest.contains(&soon) && rest.contains(&sooner_than_pending) && rest.contains(&far));
}

#[test]
fn advancing_backwards_is_a_no_op() {
    let mut h = Harness::new();
    let id = h.add(50 * MS);
    h.run(40 * MS);
    assert!(h.run(10 * MS).is_empty());
    assert_eq!(h.wheel.now(), 40 * MS);
    assert_eq!(h.run(50 * MS), [id]);
}

#[test]
fn with_now_places_relative_to_start() {
    let start = 12_345 * SEC + 678;
    let mut h = Harness::with_now(start);
    assert_eq!(h.wheel.now(), start);
    let a = h.add(start + 1);
    let b = h.add(start + 70 * MS);
    assert_eq!(h.location(a).unwrap().0, 0);
    assert_eq!(h.wheel.next_deadline(), Some(start + 1));
    assert_eq!(h.drive_to_empty(), [a, b]);
}

#[test]
fn drain_and_drop_unlink_everything() {
    let mut h = Harness::new();
    let ids: Vec<usize> = [1, 70 * MS, 5 * SEC, 3 * YEAR, u64::MAX]
        .into_iter()
        .map(|d| h.add(d))
        .collect();
    let mut drained = Vec::new();
    let ids_map = &h.ids;
    let mut calls = 0;
    while h
        .wheel
        .drain(2, |e| drained.push(ids_map[&e.as_ptr().cast_const()]))
        == Advance::MoreWork
    {
        calls += 1;
    }
    assert_eq!(calls, 2);
    drained.sort();
    assert_eq!(drained, ids);
    assert!(h.wheel.is_empty());
    assert_eq!(h.wheel.next_deadline(), None);
    assert!(ids.iter().all(|&id| !h.get(id).is_linked()));

    // Dropping a wheel unlinks what is left, so entries can be reused.
    let entry = Box::pin(Entry::new(5 * MS));
    {
        let mut wheel = Wheel::new();
        // SAFETY: the entry outlives the wheel.
        unsafe { wheel.insert(NonNull::from(&*entry)) }.unwrap();
        assert!(entry.is_linked());
    }
    assert!(!entry.is_linked());
    entry.set_deadline(6 * MS);
    assert_eq!(entry.deadline(), 6 * MS);
    let mut wheel = Wheel::new();
    // SAFETY: the entry outlives the wheel.
    unsafe { wheel.insert(NonNull::from(&*entry)) }.unwrap();
    let mut fired = 0;
    assert_eq!(wheel.advance(6 * MS, 8, |_| fired += 1), Advance::Done);
    assert_eq!(fired, 1);
}

#[test]
#[should_panic = "set_deadline on an entry in a wheel"]
fn set_deadline_while_linked_panics() {
    let mut h = Harness::new();
    let id = h.add(5 * MS);
    h.get(id).set_deadline(6 * MS);
}

#[test]
#[should_panic = "already in a wheel"]
fn double_insert_panics() {
    let mut h = Harness::new();
    let id = h.add(5 * MS);
    h.insert(id);
}

#[test]
fn fire_panic_leaves_wheel_consistent() {
    let mut h = Harness::new();
    let a = h.add(MS);
    let b = h.add(MS + 1);
    let wheel = &mut h.wheel;
    let result = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| {
        let _ = wheel.advance(2 * MS, 16, |_| panic!("boom"));
    }));
    assert!(result.is_err());
    assert_eq!(h.wheel.len(), 1);
    let fired = h.run(2 * MS);
    assert_eq!(fired.len(), 1);
    assert!(!h.get(a).is_linked() && !h.get(b).is_linked());
}

#[test]
fn entry_debug_and_size() {
    let mut h = Harness::new();
    let id = h.add(70 * MS);
    assert_eq!(
        format!("{:?}", h.get(id)),
        "Entry { deadline: 70000000, level: 1, slot: 1 }"
    );
    assert_eq!(
        format!("{:?}", Entry::new(3)),
        "Entry { deadline: 3, linked: false }"
    );
    assert!(size_of::<Entry>() <= 32);
}

#[test]
fn many_entries_one_slot_and_spread() {
    let mut h = Harness::new();
    let mut expected = Vec::new();
    let n = if cfg!(miri) { 200 } else { 2_000 };
    for i in 0..n {
        let deadline = 1 + (i * 7_919 * 104_729) % (20 * SEC);
        expected.push((deadline, h.add(deadline)));
    }
    expected.sort();
    let order = h.drive_to_empty();
    let deadlines: Vec<u64> = order.iter().map(|&id| h.get(id).deadline()).collect();
    assert!(deadlines.is_sorted());
    assert_eq!(order.len(), expected.len());
}

// ------------------------------------------------------------------------------------------
// Property test against a trivially correct model.

mod model {
    use super::*;
    use proptest::prelude::*;

    /// How far from `now` a new deadline lies (the raw `u64` is reduced into the range).
    #[derive(Clone, Copy, Debug)]
    enum When {
        /// Before or at `now` (refused).
        Past,
        /// Within the level-0 span (64 ms).
        Level0,
        /// Within the span of the given level.
        Level(u32),
        /// On a boundary of a level-`k` slot, up to 64 such slots ahead.
        Aligned(u32),
        /// Years ahead (overflow list).
        Years,
        /// `u64::MAX`.
        Max,
        /// Anywhere in `u64`.
        Any,
    }

    /// How far to move the time.
    #[derive(Clone, Copy, Debug)]
    enum Step {
        /// Up to 2 ms.
        Small,
        /// Up to the span of the given level.
        Level(u32),
        /// To a boundary of a level-`k` slot, up to 64 such slots ahead.
        Aligned(u32),
        /// Up to 580 years.
        Years,
        /// To `u64::MAX - 1`.
        NearMax,
        /// To `u64::MAX`.
        Max,
        /// Exactly to `next_deadline()`, as a precise driver would.
        Next,
        /// To the model's earliest deadline, minus the raw value's low 2 bits.
        ModelMin,
        /// Backwards (a no-op).
        Back,
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(When, u64),
        Remove(u64),
        Advance(Step, u64, usize),
    }

    fn when() -> impl Strategy<Value = When> {
        prop_oneof![
            1 => Just(When::Past),
            3 => Just(When::Level0),
            4 => (1..LEVELS as u32).prop_map(When::Level),
            2 => (0..=LEVELS as u32).prop_map(When::Aligned),
            1 => Just(When::Years),
            1 => Just(When::Max),
            1 => Just(When::Any),
        ]
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => Just(Step::Small),
            4 => (1..=LEVELS as u32).prop_map(Step::Level),
            2 => (0..=LEVELS as u32).prop_map(Step::Aligned),
            1 => Just(Step::Years),
            1 => Just(Step::NearMax),
            1 => Just(Step::Max),
            4 => Just(Step::Next),
            2 => Just(Step::ModelMin),
            1 => Just(Step::Back),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => (when(), any::<u64>()).prop_map(|(w, r)| Op::Insert(w, r)),
            2 => any::<u64>().prop_map(Op::Remove),
            4 => (step(), any::<u64>(), prop_oneof![1 => 1..4usize, 3 => Just(usize::MAX)])
                .prop_map(|(s, r, b)| Op::Advance(s, r, b)),
        ]
    }

    fn span(level: u32) -> u64 {
        64u64.pow(level + 1) * MS
    }

    /// A multiple of a level-`k` slot width after `now`, at most 64 slots ahead.
    fn aligned(now: u64, k: u32, raw: u64) -> u64 {
        let unit = 64u64.pow(k) * MS;
        (now / unit + 1 + raw % 64).saturating_mul(unit)
    }

    fn deadline(now: u64, when: When, raw: u64) -> u64 {
        match when {
            When::Past => now - raw % (now.saturating_add(1)).min(10 * SEC + 1),
            When::Level0 => now.saturating_add(raw % span(0)),
            When::Level(k) => now.saturating_add(raw % span(k)),
            When::Aligned(k) => aligned(now, k, raw),
            When::Years => now.saturating_add(raw % (50 * YEAR)),
            When::Max => u64::MAX,
            When::Any => raw,
        }
    }

    fn target(h: &Harness, model: &BTreeSet<(u64, usize)>, step: Step, raw: u64) -> u64 {
        let now = h.wheel.now();
        match step {
            Step::Small => now.saturating_add(raw % (2 * MS)),
            Step::Level(k) => now.saturating_add(raw % span(k - 1)),
            Step::Aligned(k) => aligned(now, k, raw),
            Step::Years => now.saturating_add(raw % (580 * YEAR)),
            Step::NearMax => u64::MAX - 1,
            Step::Max => u64::MAX,
            Step::Next => h.wheel.next_deadline().unwrap_or(now),
            Step::ModelMin => model
                .first()
                .map_or(now, |&(d, _)| d.saturating_sub(raw & 3)),
            Step::Back => now.saturating_sub(raw % SEC),
        }
    }

    fn check(h: &Harness, model: &BTreeSet<(u64, usize)>) -> Result<(), TestCaseError> {
        let now = h.wheel.now();
        prop_assert_eq!(h.wheel.len(), model.len());
        prop_assert_eq!(h.wheel.is_empty(), model.is_empty());
        match (h.wheel.next_deadline(), model.first()) {
            (None, None) => {}
            (Some(next), Some(&(min, _))) => {
                prop_assert!(
                    next > now,
                    "next_deadline {} <= now {} after Done",
                    next,
                    now
                );
                prop_assert!(next <= min, "next_deadline {} later than min {}", next, min);
                if key_of(min) >> SLOT_BITS == key_of(now) >> SLOT_BITS {
                    prop_assert_eq!(next, min, "not exact within the level-0 span");
                }
            }
            (next, min) => prop_assert!(false, "next_deadline {:?}, model {:?}", next, min),
        }
        Ok(())
    }

    fn run(ops: Vec<Op>, start: u64) -> Result<(), TestCaseError> {
        let mut h = Harness::with_now(start);
        let mut model = BTreeSet::<(u64, usize)>::new();
        for op in ops {
            match op {
                Op::Insert(when, raw) => {
                    let d = deadline(h.wheel.now(), when, raw);
                    let id = h.entry(d);
                    let inserted = h.insert(id);
                    prop_assert_eq!(inserted, d > h.wheel.now(), "deadline {}", d);
                    if inserted {
                        model.insert((d, id));
                    }
                }
                Op::Remove(raw) => {
                    if model.is_empty() {
                        continue;
                    }
                    let &(d, id) = model
                        .iter()
                        .nth((raw % model.len() as u64) as usize)
                        .unwrap();
                    model.remove(&(d, id));
                    prop_assert!(h.remove(id));
                    prop_assert!(!h.get(id).is_linked());
                }
                Op::Advance(step, raw, budget) => {
                    let to = target(&h, &model, step, raw);
                    let next = h.wheel.next_deadline();
                    let now = to.max(h.wheel.now());
                    let mut fired = Vec::new();
                    loop {
                        let (result, now_fired) = h.step(to, budget);
                        prop_assert!(now_fired.len() <= budget);
                        fired.extend(now_fired);
                        if result == Advance::Done {
                            break;
                        }
                        let pending = h.wheel.next_deadline();
                        prop_assert!(pending.is_some_and(|p| p <= now), "MoreWork, {:?}", pending);
                    }
                    prop_assert_eq!(h.wheel.now(), now);
                    let mut expected: Vec<(u64, usize)> = model
                        .iter()
                        .copied()
                        .take_while(|&(d, _)| d <= now)
                        .collect();
                    for &(d, id) in &expected {
                        model.remove(&(d, id));
                        prop_assert!(!h.get(id).is_linked());
                    }
                    let mut fired: Vec<(u64, usize)> = fired
                        .into_iter()
                        .map(|id| (h.get(id).deadline(), id))
                        .collect();
                    fired.sort();
                    expected.sort();
                    prop_assert_eq!(&fired, &expected, "at now {}", now);
                    if matches!(step, Step::Next) && next.is_some() {
                        for &(d, id) in &fired {
                            prop_assert_eq!(d, now, "driven: entry {} fired late", id);
                        }
                    }
                }
            }
            check(&h, &model)?;
            for &(_, id) in &model {
                prop_assert!(h.get(id).is_linked());
            }
        }
        // Finally, a precise driver empties the wheel with every entry on time.
        let order = h.drive_to_empty();
        prop_assert_eq!(order.len(), model.len());
        Ok(())
    }

    proptest! {
        // Miri runs a handful of cases; natively 1024 take ~3 s in debug.
        #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 8 } else { 1024 }))]

        #[test]
        fn wheel_matches_model(ops in proptest::collection::vec(op(), 1..120)) {
            run(ops, 0)?;
        }

        #[test]
        fn wheel_matches_model_from_any_start(
            start in prop_oneof![
                Just(RANGE_TICKS * MS - 3 * MS),
                Just(u64::MAX - 64 * SEC),
                0..u64::MAX / 2,
            ],
            ops in proptest::collection::vec(op(), 1..60),
        ) {
            run(ops, start)?;
        }
    }
}
