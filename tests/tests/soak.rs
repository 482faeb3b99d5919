//! Soak test (issue 6, item 1): several threads do random operations on **one shared tree**
//! for a bounded time, and the tree's promises are checked while they run and at the end.
//!
//! Operations (each thread, chosen at random, on random nodes):
//!
//! * create heap children (`CancelSource::child`, `CancelToken::child`, `CancelSource::any_of`)
//!   and heap deadline nodes (`cutoff_timer::with_timeout` / `with_deadline`, short random
//!   timeouts so many fire, long ones so many are dropped pending, zero and past ones);
//! * enter a *pinned frame*: a `ChildNode` or a pinned `cutoff_timer::Deadline` on this
//!   thread's stack, under a shared heap node or under an enclosing pinned frame, with a pinned
//!   `Callback` and a pinned `cancelled()` future on it; inside the frame the thread keeps
//!   doing random operations (including nested frames and scoped `with_callback`);
//! * cancel a node at a random depth (heap or a pinned node of the thread's own frames) with a
//!   unique reason: `Reason::Code(k)` or `Reason::error(SoakError(k))`;
//! * register owned callbacks (`on_cancel`), then disarm or drop them;
//! * create `cancelled_owned()` futures, poll them with counting wakers, drop them;
//! * drop heap nodes (from any thread: a node's handles live in a shared registry).
//!
//! Invariants checked (each time a node, callback or waiter goes away, and for everything
//! still alive at the end, before and after the root is cancelled):
//!
//! 1. **No leak**: the counting global allocator's live bytes are back to the baseline taken
//!    after a warm-up (see [`warm_up`] for what the warm-up allocates once and why).
//! 2. **Callbacks**: every callback ran exactly once or was unregistered before it ran
//!    (`disarm` returns the closure iff it did not run); a registration on a cancelled node
//!    runs (eventually: the walk may still be on its way); it saw the node's reason.
//! 3. **Waiters**: a pending waiter of a cancelled node is woken, exactly once, and then
//!    completes with the node's reason.
//! 4. **Inheritance**: a node under a cancelled ancestor is cancelled.
//! 5. **Causes**: a cancelled node's reason traces back to a cause the test made. Reasons are
//!    unique per cancel operation, so a node with reason `k` must be the node operation `k`
//!    cancelled, or have a parent (an ancestor in the test's model of the tree) that reports
//!    the same reason; `DeadlineExceeded` must come from a deadline node whose deadline has
//!    passed, and a callback that saw it ran no earlier than the node's deadline.
//!
//! Knobs: `CUTOFF_SOAK_SECS` (default 3), `CUTOFF_SOAK_THREADS` (default 3), `CUTOFF_SOAK_SEED`
//! (decimal or `0x` hex; default: from the clock). The seed fixes each thread's sequence of
//! operations, not the interleaving of the threads, so a replay repeats the same mix of
//! operations but not necessarily the same schedule. The seed and the operation counts are
//! printed (visible with `--nocapture`, and in the failure message).

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::task::Poll;
use std::time::{Duration, Instant};

use cutoff::{
    Callback, CancelSource, CancelToken, ChildNode, Node, NodeView, OnCancel, OwnedCancellation,
    Reason,
};
use cutoff_tests::{CountingWaker, poll_once};
use cutoff_timer::{Deadline, DeadlineExt, Parent};

// ---- counting allocator --------------------------------------------------------------------

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);
static ALLOCS: AtomicU64 = AtomicU64::new(0);

/// Live allocations by size (8-byte classes up to 4 KiB, then one class), for the report
/// when the leak check fails.
const CLASSES: usize = 513;
static BY_SIZE: [AtomicIsize; CLASSES] = [const { AtomicIsize::new(0) }; CLASSES];

fn class(size: usize) -> usize {
    size.div_ceil(8).min(CLASSES - 1)
}

fn grew(by: isize) {
    let now = LIVE.fetch_add(by, Relaxed) + by;
    PEAK.fetch_max(now, Relaxed);
}

static BASE: [AtomicIsize; CLASSES] = [const { AtomicIsize::new(0) }; CLASSES];

/// Remember the live counts by size (no allocation).
fn snapshot() {
    for (b, c) in BASE.iter().zip(&BY_SIZE) {
        b.store(c.load(Relaxed), Relaxed);
    }
}

/// Size classes whose live count differs from the snapshot.
fn size_diff() -> String {
    let mut out = String::new();
    for (i, (b, c)) in BASE.iter().zip(&BY_SIZE).enumerate() {
        let (b, now) = (b.load(Relaxed), c.load(Relaxed));
        if now != b {
            let size = if i == CLASSES - 1 {
                format!(">{}", (CLASSES - 2) * 8)
            } else {
                format!("{}..={}", (i * 8).saturating_sub(7), i * 8)
            };
            out.push_str(&format!(" [{size} B: {:+}]", now - b));
        }
    }
    out
}

// SAFETY: forwards every call to `System` unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            ALLOCS.fetch_add(1, Relaxed);
            BY_SIZE[class(layout.size())].fetch_add(1, Relaxed);
            grew(layout.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            ALLOCS.fetch_add(1, Relaxed);
            BY_SIZE[class(layout.size())].fetch_add(1, Relaxed);
            grew(layout.size() as isize);
        }
        p
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            ALLOCS.fetch_add(1, Relaxed);
            BY_SIZE[class(layout.size())].fetch_sub(1, Relaxed);
            BY_SIZE[class(new_size)].fetch_add(1, Relaxed);
            grew(new_size as isize - layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded.
        unsafe { System.dealloc(ptr, layout) };
        BY_SIZE[class(layout.size())].fetch_sub(1, Relaxed);
        LIVE.fetch_sub(layout.size() as isize, Relaxed);
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

// ---- configuration ---------------------------------------------------------------------------

struct Config {
    secs: f64,
    threads: usize,
    seed: u64,
    hang: Duration,
}

fn env_parse<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn config() -> Config {
    let seed = std::env::var("CUTOFF_SOAK_SEED").ok().map(|v| {
        let v = v.trim();
        match v.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => v.parse(),
        }
        .expect("CUTOFF_SOAK_SEED: a decimal or 0x-hex u64")
    });
    let seed = seed.unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        t.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32)
    });
    Config {
        secs: env_parse("CUTOFF_SOAK_SECS").unwrap_or(3.0),
        threads: env_parse("CUTOFF_SOAK_THREADS").unwrap_or(3).max(1),
        seed,
        hang: env_parse("CUTOFF_TEST_HANG_SECS")
            .map_or(Duration::from_secs(30), Duration::from_secs),
    }
}

static HANG: OnceLock<Duration> = OnceLock::new();

/// Spin (yielding, then sleeping briefly) until `cond` holds; panic after the hang limit.
/// Used where the tree promises something *eventually* (a walk on another thread may still be
/// on its way to the entry in question).
fn eventually(what: impl Fn() -> String, cond: impl Fn() -> bool) {
    let limit = *HANG.get().expect("config read");
    let start = Instant::now();
    let mut spins = 0u32;
    while !cond() {
        assert!(start.elapsed() < limit, "{} (not within {limit:?})", what());
        spins += 1;
        if spins < 64 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

// ---- reasons ---------------------------------------------------------------------------------

/// The error carried by `Reason::Error` reasons of the soak (with the operation's number).
#[derive(Debug)]
struct SoakError(u32);

impl fmt::Display for SoakError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "soak error {}", self.0)
    }
}

impl std::error::Error for SoakError {}

/// What caused a reason: a cancel operation (by number) or a deadline.
#[derive(Debug, PartialEq)]
enum Cause {
    Op(u32),
    Deadline,
}

fn cause(r: &Reason) -> Option<Cause> {
    match r {
        Reason::Code(k) => Some(Cause::Op(*k)),
        Reason::DeadlineExceeded => Some(Cause::Deadline),
        Reason::Error(_) => r
            .as_error()
            .and_then(|e| e.downcast_ref::<SoakError>())
            .map(|e| Cause::Op(e.0)),
        _ => None,
    }
}

// ---- the model -------------------------------------------------------------------------------

/// The test's record of one node: who its parents are (the model of the tree), whether it is
/// a deadline node, and (for heap nodes) a handle to observe it while its owner keeps it.
struct Info {
    id: usize,
    kind: &'static str,
    parents: Vec<Arc<Info>>,
    /// The node's (effective) deadline, for deadline nodes.
    deadline: Option<Instant>,
    /// Cancelled when it was made (never linked: its `deadline()` knows nothing of the
    /// parent's path).
    born_cancelled: bool,
    /// Distance from the root (the longest way, through multi-parent nodes).
    depth: u32,
    /// The cancel operations that targeted this node (their reasons' numbers).
    cancels: Mutex<Vec<u32>>,
    /// Heap nodes: a token while the node's record is alive (cleared when it is dropped, so the
    /// node can live on only through its children's references). Pinned nodes: `None`; they
    /// are observed through the owning thread's frames.
    obs: Mutex<Option<CancelToken>>,
}

impl fmt::Debug for Info {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.kind, self.id)
    }
}

/// Whether `anc` is `node` or one of its ancestors in the model.
fn is_ancestor_or_self(anc: &Arc<Info>, node: &Arc<Info>) -> bool {
    let mut stack = vec![node.clone()];
    while let Some(n) = stack.pop() {
        if Arc::ptr_eq(&n, anc) {
            return true;
        }
        stack.extend(n.parents.iter().cloned());
    }
    false
}

/// Every ancestor of `node` in the model (each once).
fn ancestors(node: &Arc<Info>) -> Vec<Arc<Info>> {
    let mut seen: Vec<Arc<Info>> = Vec::new();
    let mut stack: Vec<Arc<Info>> = node.parents.clone();
    while let Some(n) = stack.pop() {
        if seen.iter().any(|s| Arc::ptr_eq(s, &n)) {
            continue;
        }
        stack.extend(n.parents.iter().cloned());
        seen.push(n);
    }
    seen
}

/// A heap node in the shared registry: its source (so any thread can cancel it) and its info.
struct Rec {
    info: Arc<Info>,
    src: CancelSource,
}

impl Drop for Rec {
    fn drop(&mut self) {
        *self.info.obs.lock().unwrap() = None;
    }
}

/// A pinned node of this thread's stack of frames.
struct Frame<'a> {
    node: &'a Node,
    info: Arc<Info>,
    up: Option<&'a Frame<'a>>,
}

fn frames<'a>(mut chain: Option<&'a Frame<'a>>) -> Vec<&'a Frame<'a>> {
    let mut v = Vec::new();
    while let Some(f) = chain {
        v.push(f);
        chain = f.up;
    }
    v
}

/// A way to look at a node of the model from the current thread.
enum Obs<'a> {
    Pinned(&'a Node),
    Heap(CancelToken),
    /// Its record was dropped: the node may live on behind its children, unobservable.
    Gone,
}

impl Obs<'_> {
    fn view(&self) -> Option<&NodeView> {
        match self {
            Obs::Pinned(n) => Some(n),
            Obs::Heap(t) => Some(t),
            Obs::Gone => None,
        }
    }
}

fn observe<'a>(info: &Arc<Info>, chain: Option<&'a Frame<'a>>) -> Obs<'a> {
    if let Some(f) = frames(chain)
        .into_iter()
        .find(|f| Arc::ptr_eq(&f.info, info))
    {
        return Obs::Pinned(f.node);
    }
    match info.obs.lock().unwrap().clone() {
        Some(t) => Obs::Heap(t),
        None => Obs::Gone,
    }
}

/// What a callback saw.
#[derive(Default)]
struct Probe {
    ran: AtomicUsize,
    reason: Mutex<Option<Reason>>,
    at: Mutex<Option<Instant>>,
}

fn probe_cb(p: Arc<Probe>) -> impl FnOnce(&Reason) + Send + 'static {
    move |r: &Reason| {
        *p.at.lock().unwrap() = Some(Instant::now());
        *p.reason.lock().unwrap() = Some(r.clone());
        p.ran.fetch_add(1, SeqCst);
    }
}

type Cb = Box<dyn FnOnce(&Reason) + Send>;

/// An owned callback registration in the shared registry.
struct HeapReg {
    info: Arc<Info>,
    tok: CancelToken,
    probe: Arc<Probe>,
    reg: OnCancel<Cb>,
}

/// An owned waiter in the shared registry.
struct HeapWaiter {
    info: Arc<Info>,
    tok: CancelToken,
    fut: Pin<Box<OwnedCancellation>>,
    waker: Arc<CountingWaker>,
}

/// Operation counts (a static, so printing them allocates nothing the leak check sees).
struct Counts {
    ops: AtomicU64,
    heap_children: AtomicU64,
    any_of: AtomicU64,
    heap_deadlines: AtomicU64,
    pinned_children: AtomicU64,
    pinned_deadlines: AtomicU64,
    born_cancelled: AtomicU64,
    heap_drops: AtomicU64,
    cancels: AtomicU64,
    cancels_won: AtomicU64,
    deadlines_fired_seen: AtomicU64,
    callbacks: AtomicU64,
    callbacks_ran: AtomicU64,
    callbacks_unregistered_unrun: AtomicU64,
    scoped_callbacks: AtomicU64,
    waiters: AtomicU64,
    polls: AtomicU64,
    wakes: AtomicU64,
    node_checks: AtomicU64,
    max_depth: AtomicU64,
}

static COUNTS: Counts = Counts {
    ops: AtomicU64::new(0),
    heap_children: AtomicU64::new(0),
    any_of: AtomicU64::new(0),
    heap_deadlines: AtomicU64::new(0),
    pinned_children: AtomicU64::new(0),
    pinned_deadlines: AtomicU64::new(0),
    born_cancelled: AtomicU64::new(0),
    heap_drops: AtomicU64::new(0),
    cancels: AtomicU64::new(0),
    cancels_won: AtomicU64::new(0),
    deadlines_fired_seen: AtomicU64::new(0),
    callbacks: AtomicU64::new(0),
    callbacks_ran: AtomicU64::new(0),
    callbacks_unregistered_unrun: AtomicU64::new(0),
    scoped_callbacks: AtomicU64::new(0),
    waiters: AtomicU64::new(0),
    polls: AtomicU64::new(0),
    wakes: AtomicU64::new(0),
    node_checks: AtomicU64::new(0),
    max_depth: AtomicU64::new(0),
};

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = |a: &AtomicU64| a.load(Relaxed);
        write!(
            f,
            "{} ops: children heap {} / pinned {} / any_of {}; deadlines heap {} / pinned {} \
             (fired: {}); born cancelled {}; heap node drops {}; cancels {} \
             (won {}); callbacks {} (ran {}, unregistered before running {}), scoped {}; \
             waiters {} (polls {}, wakes {}); node checks {}; deepest node {}",
            g(&self.ops),
            g(&self.heap_children),
            g(&self.pinned_children),
            g(&self.any_of),
            g(&self.heap_deadlines),
            g(&self.pinned_deadlines),
            g(&self.deadlines_fired_seen),
            g(&self.born_cancelled),
            g(&self.heap_drops),
            g(&self.cancels),
            g(&self.cancels_won),
            g(&self.callbacks),
            g(&self.callbacks_ran),
            g(&self.callbacks_unregistered_unrun),
            g(&self.scoped_callbacks),
            g(&self.waiters),
            g(&self.polls),
            g(&self.wakes),
            g(&self.node_checks),
            g(&self.max_depth),
        )
    }
}

const MAX_NODES: usize = 96;
const MAX_REGS: usize = 64;
const MAX_WAITERS: usize = 48;
const MAX_DEPTH: usize = 4;
const MAX_HEAP_DEPTH: u32 = 24;

struct Shared {
    next_id: AtomicUsize,
    nodes: Mutex<Vec<Arc<Rec>>>,
    regs: Mutex<Vec<HeapReg>>,
    waiters: Mutex<Vec<HeapWaiter>>,
    /// The next cancel operation's number (its reason's payload).
    next_cause: AtomicU32,
}

impl Shared {
    fn info(
        &self,
        kind: &'static str,
        parents: Vec<Arc<Info>>,
        node: &NodeView,
        obs: Option<CancelToken>,
    ) -> Arc<Info> {
        let born_cancelled = node.is_cancelled();
        if born_cancelled {
            COUNTS.born_cancelled.fetch_add(1, Relaxed);
        }
        let depth = parents.iter().map(|p| p.depth + 1).max().unwrap_or(0);
        COUNTS.max_depth.fetch_max(u64::from(depth), Relaxed);
        Arc::new(Info {
            id: self.next_id.fetch_add(1, Relaxed),
            kind,
            parents,
            deadline: node.deadline(),
            born_cancelled,
            depth,
            cancels: Mutex::new(Vec::new()),
            obs: Mutex::new(obs),
        })
    }

    /// A random index of `nodes` from `from` on, preferring one whose node's cancelled state
    /// is `cancelled` (if there is any), so the tree keeps a live part to grow under and the
    /// cancelled part gets dropped.
    fn pick_index(
        nodes: &[Arc<Rec>],
        from: usize,
        rng: &mut fastrand::Rng,
        cancelled: bool,
    ) -> usize {
        // Reservoir sampling over the matching nodes (their state may change meanwhile).
        let mut seen = 0;
        let mut pick = None;
        for (i, rec) in nodes.iter().enumerate().skip(from) {
            if rec.src.is_cancelled() == cancelled {
                seen += 1;
                if rng.usize(..seen) == 0 {
                    pick = Some(i);
                }
            }
        }
        pick.unwrap_or_else(|| rng.usize(from..nodes.len()))
    }

    /// A random node, preferably not cancelled (to create something under it); the root
    /// instead of a node [`MAX_HEAP_DEPTH`] deep, so the tree's depth stays bounded in long
    /// runs.
    fn pick_node(&self, rng: &mut fastrand::Rng) -> Arc<Rec> {
        let nodes = self.nodes.lock().unwrap();
        let cancelled = rng.u32(0..4) == 0;
        let rec = &nodes[Self::pick_index(&nodes, 0, rng, cancelled)];
        if rec.info.depth >= MAX_HEAP_DEPTH {
            return nodes[0].clone();
        }
        rec.clone()
    }

    /// Record a cancel operation on `target` and return its unique reason.
    fn new_cause(&self, target: &Arc<Info>, rng: &mut fastrand::Rng) -> Reason {
        let k = self.next_cause.fetch_add(1, Relaxed);
        assert_ne!(k, u32::MAX, "out of cancel numbers");
        target.cancels.lock().unwrap().push(k);
        COUNTS.cancels.fetch_add(1, Relaxed);
        if rng.bool() {
            Reason::Code(k)
        } else {
            Reason::error(SoakError(k))
        }
    }

    /// Invariant 5 for a cancelled node.
    fn check_cause(&self, info: &Arc<Info>, reason: &Reason, chain: Option<&Frame<'_>>) {
        let parent_agrees = |origin: Option<&Arc<Info>>| {
            info.parents.iter().any(|p| {
                if let Some(o) = origin
                    && !is_ancestor_or_self(o, p)
                {
                    return false;
                }
                match observe(p, chain).view() {
                    None => true, // unobservable: the model's ancestry is all we can check
                    Some(v) => v.reason().as_ref() == Some(reason),
                }
            })
        };
        match cause(reason) {
            Some(Cause::Op(k)) => {
                // The node that operation `k` cancelled: this one or an ancestor.
                let targeted = |n: &Arc<Info>| n.cancels.lock().unwrap().contains(&k);
                if targeted(info) {
                    return;
                }
                let origin = ancestors(info).into_iter().find(|a| targeted(a));
                let origin = origin.unwrap_or_else(|| {
                    panic!(
                        "{info:?} has reason {reason:?}, but operation {k} cancelled neither it \
                         nor an ancestor"
                    )
                });
                assert!(
                    parent_agrees(Some(&origin)),
                    "{info:?} has reason {reason:?} (from {origin:?}) but no parent on the way \
                     reports it"
                );
            }
            Some(Cause::Deadline) => {
                // Its own deadline fired (never before the deadline) ...
                if info.kind.contains("deadline")
                    && info.deadline.is_some_and(|d| d <= Instant::now())
                {
                    return;
                }
                // ... or it inherited the reason from a parent.
                assert!(
                    parent_agrees(None),
                    "{info:?}: DeadlineExceeded, not its own (deadline {:?}, now {:?}) and no \
                     parent reports it",
                    info.deadline,
                    Instant::now()
                );
            }
            None => panic!("{info:?} cancelled with a reason the soak never used: {reason:?}"),
        }
    }

    /// Invariants 4 and 5 for a node that is about to go (counts deadlines that fired).
    fn check_last(&self, info: &Arc<Info>, node: &NodeView, chain: Option<&Frame<'_>>) {
        self.check_node(info, node, chain);
        if info.kind.contains("deadline") && node.reason() == Some(Reason::DeadlineExceeded) {
            COUNTS.deadlines_fired_seen.fetch_add(1, Relaxed);
        }
    }

    /// Invariants 4 and 5 for one node.
    fn check_node(&self, info: &Arc<Info>, node: &NodeView, chain: Option<&Frame<'_>>) {
        COUNTS.node_checks.fetch_add(1, Relaxed);
        if let Some(r) = node.reason() {
            self.check_cause(info, &r, chain);
        }
        for a in ancestors(info) {
            let obs = observe(&a, chain);
            let Some(v) = obs.view() else { continue };
            if v.is_cancelled() {
                eventually(
                    || format!("{info:?} not cancelled although its ancestor {a:?} is"),
                    || node.is_cancelled(),
                );
            }
        }
        if let Some(r) = node.reason() {
            self.check_cause(info, &r, chain);
        }
    }

    /// Invariant 2 for a registration that is still registered (or just ran).
    fn check_registered(&self, what: &str, probe: &Probe, node: &NodeView, info: &Info) {
        let ran = probe.ran.load(SeqCst);
        assert!(ran <= 1, "{what}: callback ran {ran} times");
        if ran == 0 {
            if !node.is_cancelled() {
                return;
            }
            eventually(
                || format!("{what}: node cancelled, callback never ran"),
                || probe.ran.load(SeqCst) == 1,
            );
        }
        assert!(
            node.is_cancelled(),
            "{what}: callback ran, node not cancelled"
        );
        let seen = probe.reason.lock().unwrap().clone();
        assert_eq!(seen, node.reason(), "{what}: callback saw another reason");
        // Never early: a node that was linked has its whole path, so `deadline()` is the
        // earliest deadline that can have reached it. (A node born cancelled knows nothing of
        // its parent's path, so its `deadline()` may be its own, later one.)
        if seen == Some(Reason::DeadlineExceeded) && !info.born_cancelled {
            let at = probe.at.lock().unwrap().expect("time recorded");
            let d = node
                .deadline()
                .expect("DeadlineExceeded on a node without deadline");
            assert!(
                at >= d,
                "{what}: deadline callback ran early ({at:?} < {d:?})"
            );
        }
    }

    /// Invariant 2 after `disarm`: exactly one of "ran" and "closure returned".
    fn check_disarmed(&self, what: &str, probe: &Probe, returned: bool) {
        let ran = probe.ran.load(SeqCst);
        assert!(ran <= 1, "{what}: callback ran {ran} times");
        assert_eq!(
            ran == 1,
            !returned,
            "{what}: ran {ran} times but disarm returned the closure: {returned}"
        );
        if returned {
            COUNTS.callbacks_unregistered_unrun.fetch_add(1, Relaxed);
        } else {
            COUNTS.callbacks_ran.fetch_add(1, Relaxed);
        }
    }

    /// Invariant 3 for a waiter whose last poll was `Pending` and which is still linked.
    fn check_waiter(&self, what: &str, waker: &CountingWaker, node: &NodeView) {
        let c = waker.count();
        assert!(c <= 1, "{what}: woken {c} times");
        if c == 1 {
            assert!(node.is_cancelled(), "{what}: woken, node not cancelled");
        } else if node.is_cancelled() {
            eventually(
                || format!("{what}: node cancelled, waiter never woken"),
                || waker.count() == 1,
            );
        }
    }
}

// ---- the workers -----------------------------------------------------------------------------

struct Worker {
    sh: Arc<Shared>,
    rng: fastrand::Rng,
    end: Instant,
}

fn timeout(rng: &mut fastrand::Rng) -> Duration {
    match rng.u32(0..20) {
        0 => Duration::ZERO,
        1..=9 => Duration::from_micros(rng.u64(1..5_000)),
        10..=15 => Duration::from_micros(rng.u64(5_000..50_000)),
        _ => Duration::from_millis(rng.u64(1_000..10_000)),
    }
}

impl Worker {
    fn done(&self) -> bool {
        Instant::now() >= self.end
    }

    fn op(&mut self, chain: Option<&Frame<'_>>, depth: usize) {
        let sh = self.sh.clone();
        COUNTS.ops.fetch_add(1, Relaxed);
        match self.rng.u32(0..100) {
            0..12 => self.heap_child(),
            12..19 => self.heap_deadline(),
            19..21 => self.any_of(),
            21..39 => self.drop_heap_node(),
            39..45 => self.cancel_heap(),
            45..53 => self.register_heap_callback(),
            53..59 => self.unregister_heap_callback(),
            59..65 => self.new_heap_waiter(),
            65..72 => self.poll_heap_waiter(),
            72..77 => self.drop_heap_waiter(),
            77..92 if depth < MAX_DEPTH => self.frame(chain, depth + 1),
            92..100 if chain.is_some() => self.cancel_pinned(chain),
            _ => {
                let rec = sh.pick_node(&mut self.rng);
                sh.check_node(&rec.info, &rec.src, None);
            }
        }
    }

    fn push_node(&mut self, rec: Rec) {
        let mut nodes = self.sh.nodes.lock().unwrap();
        if nodes.len() < MAX_NODES {
            nodes.push(Arc::new(rec));
            return;
        }
        drop(nodes);
        self.sh.check_last(&rec.info, &rec.src, None);
        drop(rec);
    }

    fn heap_child(&mut self) {
        let sh = self.sh.clone();
        let parent = sh.pick_node(&mut self.rng);
        let src = if self.rng.bool() {
            parent.src.child()
        } else {
            parent.src.token().child()
        };
        let info = sh.info("heap", vec![parent.info.clone()], &src, Some(src.token()));
        COUNTS.heap_children.fetch_add(1, Relaxed);
        self.push_node(Rec { info, src });
    }

    fn heap_deadline(&mut self) {
        let sh = self.sh.clone();
        let parent = sh.pick_node(&mut self.rng);
        let t = timeout(&mut self.rng);
        let src = match self.rng.u32(0..4) {
            0 => cutoff_timer::with_deadline(&parent.src, Instant::now() + t),
            // A deadline in the past.
            1 if self.rng.u32(0..4) == 0 => cutoff_timer::with_deadline(
                &parent.src.token(),
                Instant::now()
                    .checked_sub(Duration::from_millis(1))
                    .unwrap_or_else(Instant::now),
            ),
            _ => cutoff_timer::with_timeout(&parent.src, t),
        };
        let info = sh.info(
            "heap-deadline",
            vec![parent.info.clone()],
            &src,
            Some(src.token()),
        );
        COUNTS.heap_deadlines.fetch_add(1, Relaxed);
        self.push_node(Rec { info, src });
    }

    fn any_of(&mut self) {
        let sh = self.sh.clone();
        let a = sh.pick_node(&mut self.rng);
        let b = sh.pick_node(&mut self.rng);
        if Arc::ptr_eq(&a, &b) {
            return;
        }
        let src = CancelSource::any_of([&a.src.token(), &b.src.token()]);
        let info = sh.info(
            "any-of",
            vec![a.info.clone(), b.info.clone()],
            &src,
            Some(src.token()),
        );
        COUNTS.any_of.fetch_add(1, Relaxed);
        self.push_node(Rec { info, src });
    }

    fn drop_heap_node(&mut self) {
        let sh = self.sh.clone();
        let rec = {
            let mut nodes = sh.nodes.lock().unwrap();
            if nodes.len() <= 1 {
                return;
            }
            let i = Shared::pick_index(&nodes, 1, &mut self.rng, true);
            nodes.swap_remove(i)
        };
        sh.check_last(&rec.info, &rec.src, None);
        COUNTS.heap_drops.fetch_add(1, Relaxed);
        drop(rec);
    }

    fn cancel_heap(&mut self) {
        let sh = self.sh.clone();
        let rec = {
            let nodes = sh.nodes.lock().unwrap();
            if nodes.len() <= 1 {
                return;
            }
            // Never the root (index 0) while the soak runs: it is cancelled at the end.
            nodes[Shared::pick_index(&nodes, 1, &mut self.rng, false)].clone()
        };
        let reason = sh.new_cause(&rec.info, &mut self.rng);
        let won = rec.src.cancel_with(reason.clone());
        if won {
            COUNTS.cancels_won.fetch_add(1, Relaxed);
            assert_eq!(rec.src.reason(), Some(reason), "{:?}", rec.info);
        } else {
            assert_ne!(rec.src.reason(), Some(reason), "{:?}", rec.info);
        }
        assert!(rec.src.is_cancelled());
        sh.check_node(&rec.info, &rec.src, None);
    }

    fn register_heap_callback(&mut self) {
        let sh = self.sh.clone();
        if sh.regs.lock().unwrap().len() >= MAX_REGS {
            return self.unregister_heap_callback();
        }
        let rec = sh.pick_node(&mut self.rng);
        let probe = Arc::new(Probe::default());
        let tok = rec.src.token();
        let was = tok.is_cancelled();
        let f: Cb = Box::new(probe_cb(probe.clone()));
        let reg = if self.rng.bool() {
            rec.src.on_cancel(f)
        } else {
            tok.on_cancel(f)
        };
        COUNTS.callbacks.fetch_add(1, Relaxed);
        if was {
            assert_eq!(
                probe.ran.load(SeqCst),
                1,
                "registered on a cancelled node: inline"
            );
        }
        let r = HeapReg {
            info: rec.info.clone(),
            tok,
            probe,
            reg,
        };
        sh.check_registered("heap callback", &r.probe, &r.tok, &r.info);
        sh.regs.lock().unwrap().push(r);
    }

    fn take_reg(&mut self) -> Option<HeapReg> {
        let mut regs = self.sh.regs.lock().unwrap();
        if regs.is_empty() {
            return None;
        }
        let i = self.rng.usize(..regs.len());
        Some(regs.swap_remove(i))
    }

    fn unregister_heap_callback(&mut self) {
        let sh = self.sh.clone();
        let Some(r) = self.take_reg() else { return };
        finish_reg(&sh, r, self.rng.bool());
    }

    fn new_heap_waiter(&mut self) {
        let sh = self.sh.clone();
        if sh.waiters.lock().unwrap().len() >= MAX_WAITERS {
            return self.drop_heap_waiter();
        }
        let rec = sh.pick_node(&mut self.rng);
        let tok = rec.src.token();
        let mut fut = Box::pin(tok.cancelled_owned());
        let waker = CountingWaker::new();
        COUNTS.waiters.fetch_add(1, Relaxed);
        COUNTS.polls.fetch_add(1, Relaxed);
        match poll_once(fut.as_mut(), &waker.waker()) {
            Poll::Ready(r) => assert_eq!(Some(r), tok.reason()),
            Poll::Pending => sh.waiters.lock().unwrap().push(HeapWaiter {
                info: rec.info.clone(),
                tok,
                fut,
                waker,
            }),
        }
    }

    fn take_waiter(&mut self) -> Option<HeapWaiter> {
        let mut ws = self.sh.waiters.lock().unwrap();
        if ws.is_empty() {
            return None;
        }
        let i = self.rng.usize(..ws.len());
        Some(ws.swap_remove(i))
    }

    fn poll_heap_waiter(&mut self) {
        let sh = self.sh.clone();
        let Some(mut w) = self.take_waiter() else {
            return;
        };
        if !poll_heap_waiter(&sh, &mut w) {
            sh.waiters.lock().unwrap().push(w);
        }
    }

    fn drop_heap_waiter(&mut self) {
        let sh = self.sh.clone();
        let Some(w) = self.take_waiter() else { return };
        sh.check_waiter("heap waiter", &w.waker, &w.tok);
        COUNTS.wakes.fetch_add(w.waker.count() as u64, Relaxed);
        drop(w);
    }

    fn cancel_pinned(&mut self, chain: Option<&Frame<'_>>) {
        let fs = frames(chain);
        let f = fs[self.rng.usize(..fs.len())];
        let reason = self.sh.new_cause(&f.info, &mut self.rng);
        if f.node.cancel_with(reason.clone()) {
            COUNTS.cancels_won.fetch_add(1, Relaxed);
            assert_eq!(f.node.reason(), Some(reason));
        }
        self.sh.check_node(&f.info, f.node, chain);
    }

    /// A pinned frame: a pinned child or deadline node on this stack, with a pinned callback
    /// and a pinned waiter on it, and more random operations (maybe nested frames) inside.
    fn frame(&mut self, chain: Option<&Frame<'_>>, depth: usize) {
        let sh = self.sh.clone();
        let keep = sh.pick_node(&mut self.rng);
        let (pview, pinfo): (&NodeView, Arc<Info>) = match chain {
            Some(c) if self.rng.bool() => {
                let fs = frames(Some(c));
                let f = fs[self.rng.usize(..fs.len())];
                (f.node, f.info.clone())
            }
            _ => (&keep.src, keep.info.clone()),
        };
        let is_deadline = self.rng.u32(0..3) == 0;
        let t = timeout(&mut self.rng);
        let by_instant = self.rng.bool();
        let mut child = pin!((!is_deadline).then(|| ChildNode::new(pview)));
        let mut dl = pin!(is_deadline.then(|| {
            if by_instant {
                Deadline::new(pview, Instant::now() + t)
            } else {
                Deadline::after(pview, t)
            }
        }));
        let node: &Node = match child.as_mut().as_pin_mut() {
            Some(c) => {
                COUNTS.pinned_children.fetch_add(1, Relaxed);
                c.link()
            }
            None => {
                COUNTS.pinned_deadlines.fetch_add(1, Relaxed);
                dl.as_mut().as_pin_mut().expect("one of the two").link()
            }
        };
        let kind = if is_deadline {
            "pinned-deadline"
        } else {
            "pinned"
        };
        let info = sh.info(kind, vec![pinfo], node, None);
        let frame = Frame {
            node,
            info,
            up: chain,
        };

        // A pinned callback (maybe) and a pinned waiter (maybe) on the frame's node.
        let probe = Arc::new(Probe::default());
        let mut cb = pin!(Callback::new(node, probe_cb(probe.clone())));
        let mut cb_state = 0u8; // 0: not registered, 1: registered, 2: disarmed
        if self.rng.bool() {
            COUNTS.callbacks.fetch_add(1, Relaxed);
            let was = node.is_cancelled();
            let registered = cb.as_mut().register();
            assert!(
                !(was && registered),
                "registered on a node already cancelled"
            );
            if !registered {
                assert_eq!(probe.ran.load(SeqCst), 1, "inline run on a cancelled node");
            }
            cb_state = 1;
        }
        let mut waiter = pin!(node.cancelled());
        let waker = CountingWaker::new();
        let mut waiting = false; // polled, last poll Pending
        let mut done_waiting = false;

        let n = self.rng.u32(0..12);
        for _ in 0..n {
            if self.done() {
                break;
            }
            match self.rng.u32(0..12) {
                0 | 1 if !done_waiting => {
                    COUNTS.polls.fetch_add(1, Relaxed);
                    if waiting {
                        sh.check_waiter("pinned waiter", &waker, node);
                    } else {
                        COUNTS.waiters.fetch_add(1, Relaxed);
                    }
                    match poll_once(waiter.as_mut(), &waker.waker()) {
                        Poll::Ready(r) => {
                            assert_eq!(Some(r), node.reason());
                            COUNTS.wakes.fetch_add(waker.count() as u64, Relaxed);
                            waiting = false;
                            done_waiting = true;
                        }
                        Poll::Pending => waiting = true,
                    }
                }
                2 if cb_state == 1 => {
                    sh.check_registered("pinned callback", &probe, node, &frame.info);
                    let returned = cb.as_mut().disarm().is_some();
                    sh.check_disarmed("pinned callback", &probe, returned);
                    cb_state = 2;
                }
                3 => {
                    COUNTS.scoped_callbacks.fetch_add(1, Relaxed);
                    let runs = AtomicUsize::new(0);
                    let was = node.is_cancelled();
                    node.with_callback(
                        |r: &Reason| {
                            assert!(cause(r).is_some(), "scoped callback saw {r:?}");
                            runs.fetch_add(1, SeqCst);
                        },
                        || self.op(Some(&frame), depth),
                    );
                    let runs = runs.load(SeqCst);
                    assert!(runs <= 1, "scoped callback ran {runs} times");
                    if was {
                        assert_eq!(runs, 1, "scoped callback on a cancelled node runs inline");
                    }
                }
                _ => self.op(Some(&frame), depth),
            }
        }

        // Leaving the frame: check, then drop the waiter and the callback before the node.
        sh.check_last(&frame.info, node, Some(&frame));
        if waiting {
            sh.check_waiter("pinned waiter", &waker, node);
            COUNTS.wakes.fetch_add(waker.count() as u64, Relaxed);
        }
        if cb_state == 1 {
            sh.check_registered("pinned callback", &probe, node, &frame.info);
            if self.rng.bool() {
                let returned = cb.as_mut().disarm().is_some();
                sh.check_disarmed("pinned callback", &probe, returned);
            } else {
                let ran = probe.ran.load(SeqCst);
                COUNTS.callbacks_ran.fetch_add(ran as u64, Relaxed);
                if ran == 0 {
                    COUNTS.callbacks_unregistered_unrun.fetch_add(1, Relaxed);
                }
            }
        }
    }
}

/// Poll a heap waiter once; `true` if it completed (and was checked).
fn poll_heap_waiter(sh: &Shared, w: &mut HeapWaiter) -> bool {
    COUNTS.polls.fetch_add(1, Relaxed);
    sh.check_waiter("heap waiter", &w.waker, &w.tok);
    match poll_once(w.fut.as_mut(), &w.waker.waker()) {
        Poll::Ready(r) => {
            assert_eq!(Some(r), w.tok.reason(), "{:?}", w.info);
            COUNTS.wakes.fetch_add(w.waker.count() as u64, Relaxed);
            true
        }
        Poll::Pending => false,
    }
}

/// Unregister an owned callback, by `disarm` or by dropping it, and check invariant 2.
fn finish_reg(sh: &Shared, r: HeapReg, disarm: bool) {
    let HeapReg {
        info,
        tok,
        probe,
        reg,
    } = r;
    let what = format!("heap callback on {info:?}");
    sh.check_registered(&what, &probe, &tok, &info);
    if disarm {
        let returned = reg.disarm().is_some();
        sh.check_disarmed(&what, &probe, returned);
    } else {
        drop(reg);
        let ran = probe.ran.load(SeqCst);
        assert!(ran <= 1, "{what}: ran {ran} times");
        COUNTS.callbacks_ran.fetch_add(ran as u64, Relaxed);
        if ran == 0 {
            COUNTS.callbacks_unregistered_unrun.fetch_add(1, Relaxed);
        }
    }
}

// ---- warm-up, final checks -------------------------------------------------------------------

/// Make the global timer fire once and turn its driver loop (which also gives the shards of
/// exited threads back to the pool).
fn poke_timer() {
    let d = cutoff_timer::with_timeout(Parent::Root, Duration::from_millis(1));
    assert_eq!(d.wait(), Reason::DeadlineExceeded);
}

/// Allocations that happen once per process or per thread and stay, and so must be made
/// before the baseline is taken:
///
/// * the global timer (its `Inner`, driver thread and the driver's batch buffer);
/// * one timer *shard* per thread that creates deadlines, and the chunk of the timer's shard
///   table that indexes it: shards are never freed (timer.rs, `Shard`: a late unregister may
///   still lock one, and a deadline names its shard by table index), they go back to a
///   process-wide pool when their thread exits, and the driver recycles them on its next
///   turn. Running `threads` threads that each make deadlines at the same time (plus this
///   thread) leaves `threads` shards in the pool and the timer's shard list and pool at their
///   final capacity, so the soak's threads reuse them and allocate no new shard;
/// * this thread's thread-local state (the timer's shard cache, std's destructor list).
///
/// Everything else (nodes, registrations, wakers, reasons, the test's own bookkeeping, the
/// threads' stacks' heap parts and thread-locals) must be freed by the end.
/// Make `parking_lot_core` set up this thread's parking data now: a contended wait parks
/// (with `std`), and the parking lot allocates its global table the first time, and a bigger
/// one whenever more threads use it at once than it was sized for; those tables are kept for
/// the life of the process, so they must exist before the baseline.
fn touch_parking_lot() {
    // SAFETY: the validate closure returns `false` at once (so nothing sleeps) and calls
    // nothing; the other closures do nothing.
    unsafe {
        parking_lot_core::park(
            0,
            || false,
            || {},
            |_, _| {},
            parking_lot_core::DEFAULT_PARK_TOKEN,
            None,
        );
    }
}

fn warm_up(threads: usize) {
    poke_timer();
    // The workers, the main thread, the timer's driver and a margin use the parking lot at
    // once at most; size its table for that many threads (see `touch_parking_lot`).
    let threads = threads + 4;
    let barrier = Arc::new(Barrier::new(threads));
    let hs: Vec<_> = (0..threads)
        .map(|_| {
            let b = barrier.clone();
            std::thread::spawn(move || {
                touch_parking_lot();
                b.wait();
                let root = CancelSource::new();
                let d = cutoff_timer::with_timeout(&root, Duration::from_millis(1));
                let mut p = pin!(Deadline::after(&root, Duration::from_secs(60)));
                let _ = p.as_mut().link();
                assert_eq!(d.wait(), Reason::DeadlineExceeded);
                b.wait();
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    poke_timer();
    poke_timer();
}

#[test]
fn soak() {
    let cfg = config();
    let _ = HANG.set(cfg.hang);
    eprintln!(
        "soak: seed {:#x} (replay: CUTOFF_SOAK_SEED={:#x}), {} threads, {} s",
        cfg.seed, cfg.seed, cfg.threads, cfg.secs
    );
    warm_up(cfg.threads);
    let baseline = LIVE.load(SeqCst);
    snapshot();
    let allocs_before = ALLOCS.load(Relaxed);
    let started = Instant::now();

    let root = CancelSource::new();
    let sh = Arc::new(Shared {
        next_id: AtomicUsize::new(1),
        nodes: Mutex::new(Vec::with_capacity(MAX_NODES)),
        regs: Mutex::new(Vec::new()),
        waiters: Mutex::new(Vec::new()),
        next_cause: AtomicU32::new(0),
    });
    let root_info = Arc::new(Info {
        id: 0,
        kind: "root",
        parents: Vec::new(),
        deadline: None,
        born_cancelled: false,
        depth: 0,
        cancels: Mutex::new(Vec::new()),
        obs: Mutex::new(Some(root.token())),
    });
    sh.nodes.lock().unwrap().push(Arc::new(Rec {
        info: root_info.clone(),
        src: root,
    }));

    let end = started + Duration::from_secs_f64(cfg.secs);
    static FAILED: AtomicBool = AtomicBool::new(false);
    let handles: Vec<_> = (0..cfg.threads)
        .map(|i| {
            let mut w = Worker {
                sh: sh.clone(),
                rng: fastrand::Rng::with_seed(
                    cfg.seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                ),
                end,
            };
            std::thread::Builder::new()
                .name(format!("soak-{i}"))
                .spawn(move || {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        while !w.done() && !FAILED.load(Relaxed) {
                            w.op(None, 0);
                        }
                    }));
                    if let Err(p) = r {
                        FAILED.store(true, Relaxed);
                        std::panic::resume_unwind(p);
                    }
                })
                .expect("spawn")
        })
        .collect();
    let mut panicked = None;
    for h in handles {
        if let Err(p) = h.join() {
            panicked.get_or_insert(p);
        }
    }
    if let Some(p) = panicked {
        eprintln!("soak: FAILED with seed {:#x}", cfg.seed);
        std::panic::resume_unwind(p);
    }
    let ran_for = started.elapsed();

    // Everything still alive, before the final cancel.
    let check_all = |sh: &Shared| {
        let nodes: Vec<_> = sh.nodes.lock().unwrap().clone();
        for rec in &nodes {
            sh.check_node(&rec.info, &rec.src, None);
        }
        for r in sh.regs.lock().unwrap().iter() {
            sh.check_registered(
                &format!("heap callback on {:?}", r.info),
                &r.probe,
                &r.tok,
                &r.info,
            );
        }
        for w in sh.waiters.lock().unwrap().iter() {
            sh.check_waiter(&format!("heap waiter on {:?}", w.info), &w.waker, &w.tok);
        }
    };
    check_all(&sh);

    // Cancel the root: now everything is cancelled, every callback ran, every waiter woke.
    let mut rng = fastrand::Rng::with_seed(cfg.seed);
    let reason = sh.new_cause(&root_info, &mut rng);
    let root = sh.nodes.lock().unwrap()[0].clone();
    assert!(root.src.cancel_with(reason));
    drop(root);
    check_all(&sh);
    for rec in sh.nodes.lock().unwrap().iter() {
        assert!(
            rec.src.is_cancelled(),
            "{:?} survived the root's cancel",
            rec.info
        );
    }
    let regs: Vec<_> = std::mem::take(&mut *sh.regs.lock().unwrap());
    for r in regs {
        assert_eq!(r.probe.ran.load(SeqCst), 1, "{:?}", r.info);
        let disarm = rng.bool();
        finish_reg(&sh, r, disarm);
    }
    let waiters: Vec<_> = std::mem::take(&mut *sh.waiters.lock().unwrap());
    for mut w in waiters {
        assert_eq!(w.waker.count(), 1, "{:?}", w.info);
        assert!(poll_heap_waiter(&sh, &mut w), "{:?}", w.info);
    }
    // Drop the nodes in a random order.
    let mut nodes: Vec<_> = std::mem::take(&mut *sh.nodes.lock().unwrap());
    for rec in &nodes {
        sh.check_last(&rec.info, &rec.src, None);
    }
    rng.shuffle(&mut nodes);
    drop(nodes);
    drop(root_info);
    let sh = Arc::try_unwrap(sh).unwrap_or_else(|_| panic!("a worker kept the shared state"));
    drop(sh);

    // Leak check: the driver may still hold a handle of a node it just fired (it drops it
    // after the node's owner can see it cancelled), so give it a few turns.
    let limit = Instant::now() + cfg.hang.min(Duration::from_secs(10));
    let live = loop {
        poke_timer();
        let live = LIVE.load(SeqCst);
        if live == baseline || Instant::now() > limit {
            break live;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let allocs = ALLOCS.load(Relaxed) - allocs_before;
    let peak = PEAK.load(Relaxed);
    assert_eq!(
        live - baseline,
        0,
        "soak (seed {:#x}): {} bytes still live after everything was dropped; by size:{} \
         ({COUNTS})",
        cfg.seed,
        live - baseline,
        size_diff(),
    );
    println!(
        "soak: seed {:#x}, {} threads, ran {:.2} s: {COUNTS}; {allocs} allocations, peak {} \
         KiB live above baseline, 0 bytes live at the end",
        cfg.seed,
        cfg.threads,
        ran_for.as_secs_f64(),
        (peak - baseline) / 1024,
    );
}
