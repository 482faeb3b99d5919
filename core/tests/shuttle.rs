//! Randomized schedule exploration of the whole public API with `shuttle` (PCT scheduler).
//!
//! Under `RUSTFLAGS="--cfg shuttle"` every atomic of the crate is one of shuttle's, every spin or
//! park yields to shuttle's scheduler, and thread ids and the walk-nesting counter are shuttle's
//! (src/loom.rs, src/park.rs, src/walk.rs), so shuttle decides every interleaving of the
//! threads below. Shuttle runs every atomic operation as `SeqCst`: it explores *schedules*, not
//! weak memory (loom's models do that, on small cases); in exchange it runs whole random
//! workloads, thousands of times, with a scheduler (PCT, "probabilistic concurrency testing")
//! that gives every bug of depth `d` (needing `d` ordering constraints) a known probability per
//! iteration.
//!
//! Tests:
//!
//! * [`operation_mix`]: the soak's operation mix (tests/tests/soak.rs) on a small shared tree,
//!   main thread plus two workers: heap children (`CancelSource::child`, `CancelToken::child`,
//!   `CancelSource::any_of`), pinned frames (`ChildNode`, `AnyOf` with a pinned `Callback`, a
//!   pinned `cancelled()` future and scoped `with_callback`s, nested up to two deep), owned
//!   callbacks (`on_cancel` on sources and tokens, disarmed or dropped), callbacks
//!   that cancel another node (a nested cancel), `cancelled_owned()` futures polled with a
//!   counting waker and dropped on whichever thread picks them (some hold the last handle of
//!   their node), `join()` futures, top-level cancels of random nodes with unique reasons, and
//!   drops of nodes' last handles from any thread.
//! * [`adv1_owned_waiter_drop_vs_walker`] and [`adv5_nested_cancel_then_top_level_cancel`]: the
//!   two scenarios of the adversarial review (ADV-1, ADV-5), with random schedules, as targeted
//!   regressions (docs/TESTING.md has how fast each test finds the bug when its fix is reverted).
//!
//! Checked in every iteration (panics make shuttle print the failing schedule):
//!
//! 1. **Cancel returns late enough**: when a top-level `cancel()` of node `T` returns, every node
//!    of the model under `T` that the thread can see (the shared heap nodes, its own pinned
//!    frames) reports cancelled; its callbacks ran; its pending waiters were woken.
//! 2. **Reasons**: a cancelled node's reason is `Code(k)` / `Error(TestError(k))` for a cancel
//!    operation `k` whose target is the node or an ancestor in the model, and `k` did not lose
//!    (return `false`): reasons are inherited, never invented.
//! 3. **Callbacks** ran at most once, saw their node's reason, and ran exactly once unless
//!    `disarm` gave the closure back (then never).
//! 4. **Waiters** were woken at most once, and once their node is cancelled (for good, at the
//!    end) exactly once, completing with the node's reason; `join()` completes and was woken.
//! 5. **No leak, no double free**: at the end every heap node of the iteration hangs under one
//!    super-root, which must report no children once every handle is dropped (a leaked node
//!    stays linked); the test's global allocator keeps freed blocks in a quarantine and counts a
//!    second free of a quarantined block (then skips it), so a double free is a clean test
//!    failure with a replayable schedule instead of heap corruption.
//! 6. **No deadlock, no livelock**: shuttle fails an iteration where every thread is blocked,
//!    or which runs more than [`MAX_STEPS`] scheduling steps.
//!
//! Knobs: `CUTOFF_SHUTTLE_ITERS` (iterations of each test; defaults: [`MIX_ITERS`] for the mix,
//! [`SCENARIO_ITERS`] for each scenario, about a minute in all on 2 cores in the `loom`
//! profile), `CUTOFF_SHUTTLE_DEPTH` (PCT bug depth, default 3), `CUTOFF_SHUTTLE_SEED` (decimal or
//! `0x` hex; default from the clock; a seed repeats a whole run: schedules and the test's own
//! random choices, which come from shuttle's RNG), and `CUTOFF_SHUTTLE_REPLAY=<schedule>` to
//! replay the one failing iteration shuttle printed (`shuttle::replay` with the same config;
//! name the test to run only it). A failure prints the schedule, then the iteration and seed.
//!
//! Run (CI, `.ci/run`):
//!   RUSTFLAGS="--cfg shuttle" cargo test -p cutoff --profile loom --test shuttle
//! Replay a failure:
//!   CUTOFF_SHUTTLE_REPLAY='<schedule>' RUSTFLAGS="--cfg shuttle" \
//!     cargo test -p cutoff --profile loom --test shuttle -- --exact <test name>
#![cfg(shuttle)]

use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;
use core::fmt;
use core::future::Future;
use core::hash::{BuildHasherDefault, Hasher};
use core::panic::AssertUnwindSafe;
use core::pin::{Pin, pin};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::SeqCst};
use core::task::{Context, Poll, Waker};
use std::alloc::System;
use std::collections::{HashSet, VecDeque};
use std::panic::{catch_unwind, resume_unwind};
use std::sync::{Arc, PoisonError, Weak};
use std::task::Wake;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use cutoff::{
    AnyOf, Callback, CancelSource, CancelToken, ChildNode, Node, NodeView, OnCancel,
    OwnedCancellation, Reason,
};
use shuttle::rand::{Rng, thread_rng};
use shuttle::scheduler::{PctScheduler, ReplayScheduler};
use shuttle::sync::Mutex;
use shuttle::{Config, MaxSteps, Runner, thread};

// ---- double-free detector --------------------------------------------------------------------

/// Every heap block goes through a quarantine: when freed it is held back (not returned to the
/// system) until [`QUARANTINE`] later frees have pushed it out, so its address is not reused
/// meanwhile, a write through a dangling pointer lands in dead memory instead of in the
/// allocator's free lists, and a second free of it is counted (and skipped) instead of
/// corrupting the heap. So a double free or use-after-free of a node is a clean test failure
/// with a replayable schedule, not a crash that loses the schedule.
struct Tracking;

/// Freed blocks held back (they are small: at most a few MiB).
const QUARANTINE: usize = 16_384;

/// A multiplicative hash for addresses (the tracker's sets are hot).
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29);
    }
}

type AddrSet = HashSet<usize, BuildHasherDefault<AddrHasher>>;

struct Track {
    live: AddrSet,
    quarantined: AddrSet,
    queue: VecDeque<(usize, Layout)>,
}

static TRACK: std::sync::Mutex<Track> = std::sync::Mutex::new(Track {
    live: HashSet::with_hasher(BuildHasherDefault::new()),
    quarantined: HashSet::with_hasher(BuildHasherDefault::new()),
    queue: VecDeque::new(),
});

thread_local! {
    /// This thread is inside the tracker (its own collections allocate: not tracked).
    static BUSY: Cell<bool> = const { Cell::new(false) };
    /// Double frees seen on this OS thread. Shuttle runs all threads of one test on the OS
    /// thread that called it, so this is the test's count even when tests run in parallel.
    static DOUBLE_FREES: Cell<usize> = const { Cell::new(0) };
}

/// Blocks held back: not the big ones (a quarantine of those would hold too much memory).
fn tracked(layout: &Layout) -> bool {
    layout.size() <= 4096
}

/// Run `f` on the tracker, unless this thread is already inside it.
fn with_track<R>(f: impl FnOnce(&mut Track) -> R) -> Option<R> {
    if BUSY.with(|b| b.replace(true)) {
        return None;
    }
    let r = f(&mut TRACK.lock().unwrap_or_else(PoisonError::into_inner));
    BUSY.with(|b| b.set(false));
    Some(r)
}

fn double_frees() -> usize {
    DOUBLE_FREES.with(Cell::get)
}

// SAFETY: every block comes from `System` and goes back to it exactly once, with its layout
// (a quarantined block when it leaves the quarantine; a counted double free is not passed on).
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() && tracked(&layout) {
            with_track(|t| t.live.insert(p as usize));
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() && tracked(&layout) {
            with_track(|t| t.live.insert(p as usize));
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if tracked(&layout) {
            let kept = with_track(|t| {
                let a = ptr as usize;
                if t.live.remove(&a) {
                    t.quarantined.insert(a);
                    t.queue.push_back((a, layout));
                    if t.queue.len() > QUARANTINE
                        && let Some((old, old_layout)) = t.queue.pop_front()
                    {
                        t.quarantined.remove(&old);
                        // SAFETY: a block from `System` with this layout, freed once (above)
                        // by its user and held back since.
                        unsafe { System.dealloc(old as *mut u8, old_layout) };
                    }
                    true
                } else if t.quarantined.contains(&a) {
                    DOUBLE_FREES.with(|d| d.set(d.get() + 1));
                    true
                } else {
                    // Allocated while untracked (inside the tracker): not ours to judge.
                    false
                }
            });
            if kept == Some(true) {
                return;
            }
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Tracking = Tracking;

// ---- running shuttle -------------------------------------------------------------------------

/// Scheduling steps after which an iteration counts as a livelock.
const MAX_STEPS: usize = 200_000;

/// Default iterations of the operation mix (about 0.2 ms each).
const MIX_ITERS: usize = 200_000;

/// Default iterations of each targeted scenario (about 0.04 ms each).
const SCENARIO_ITERS: usize = 20_000;

fn env_parse<T: core::str::FromStr>(name: &str) -> Option<T> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name}: cannot parse {v:?}")),
    )
}

fn env_seed() -> Option<u64> {
    let v = std::env::var("CUTOFF_SHUTTLE_SEED").ok()?;
    let v = v.trim();
    Some(
        match v.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => v.parse(),
        }
        .expect("CUTOFF_SHUTTLE_SEED: a decimal or 0x-hex u64"),
    )
}

/// Run `f` under shuttle's PCT scheduler (what `shuttle::check_pct(f, iterations, depth)` does,
/// with a seed we print), or replay one schedule (`CUTOFF_SHUTTLE_REPLAY`, `shuttle::replay`).
fn explore(name: &str, default_iters: usize, f: impl Fn() + Send + Sync + 'static) -> usize {
    let mut config = Config::new();
    // Shuttle warns once that it runs every ordering as SeqCst: known and documented above.
    config.silence_warnings = true;
    config.max_steps = MaxSteps::FailAfter(MAX_STEPS);
    if let Ok(schedule) = std::env::var("CUTOFF_SHUTTLE_REPLAY") {
        // `shuttle::replay(f, schedule)`, with the same config as the run that failed. The
        // schedule may be pasted as printed (over several lines, in quotes).
        let schedule: String = schedule
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '"')
            .collect();
        eprintln!("{name}: replaying schedule {schedule}");
        Runner::new(ReplayScheduler::new_from_encoded(&schedule), config).run(f);
        return 1;
    }
    let iters = env_parse("CUTOFF_SHUTTLE_ITERS").unwrap_or(default_iters);
    let depth = env_parse("CUTOFF_SHUTTLE_DEPTH").unwrap_or(3);
    let seed = env_seed().unwrap_or_else(|| {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        t.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32)
    });
    eprintln!(
        "{name}: PCT depth {depth}, {iters} iterations, seed {seed:#x} \
         (CUTOFF_SHUTTLE_SEED={seed:#x} repeats this run)"
    );
    let runner = Runner::new(PctScheduler::new_from_seed(seed, depth, iters), config);
    install_hook();
    let started = Instant::now();
    RUN.with(|r| r.set(Some((seed, 0, false))));
    let ran = catch_unwind(AssertUnwindSafe(|| {
        runner.run(move || {
            RUN.with(|r| r.set(r.get().map(|(s, i, p)| (s, i + 1, p))));
            f();
        })
    }));
    RUN.with(|r| r.set(None));
    match ran {
        Ok(n) => {
            eprintln!(
                "{name}: {n} iterations passed in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            n
        }
        Err(payload) => {
            eprintln!(
                "{name}: failed after {:.1} s",
                started.elapsed().as_secs_f64()
            );
            resume_unwind(payload);
        }
    }
}

thread_local! {
    /// The run on this OS thread (shuttle runs a test's threads on the thread that called it):
    /// its seed, the iteration, and whether a failure was reported already.
    static RUN: Cell<Option<(u64, usize, bool)>> = const { Cell::new(None) };
}

/// Report the iteration and seed of the first failure of a run, right after shuttle printed
/// the failing schedule (installed before shuttle's hook, which calls it), before anything
/// else can go wrong: unwinding out of a corrupted tree (a double free) may abort the process.
fn install_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let next = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Some((seed, i, false)) = RUN.with(Cell::get) {
                RUN.with(|r| r.set(Some((seed, i, true))));
                eprintln!(
                    "shuttle: FAILED in iteration {i} of seed {seed:#x} ({} double frees \
                     seen); CUTOFF_SHUTTLE_SEED={seed:#x} repeats the run, \
                     CUTOFF_SHUTTLE_REPLAY='<the schedule above>' replays the iteration",
                    double_frees()
                );
            }
            next(info);
        }));
    });
}

// ---- helpers ---------------------------------------------------------------------------------

/// A waker that counts its wake-ups.
#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl CountingWaker {
    fn count(&self) -> usize {
        self.0.load(SeqCst)
    }
}

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

fn poll_with<F: Future + ?Sized>(f: Pin<&mut F>, w: &Arc<CountingWaker>) -> Poll<F::Output> {
    let waker = Waker::from(w.clone());
    f.poll(&mut Context::from_waker(&waker))
}

/// The error inside `Reason::Error` reasons (with the cancel operation's number).
#[derive(Debug)]
struct TestError(u32);

impl fmt::Display for TestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "test error {}", self.0)
    }
}

impl core::error::Error for TestError {}

fn cause_of(r: &Reason) -> Option<u32> {
    match r {
        Reason::Code(k) => Some(*k),
        Reason::Error(_) => r
            .as_error()
            .and_then(|e| e.downcast_ref::<TestError>())
            .map(|e| e.0),
        _ => None,
    }
}

fn rng_below(n: usize) -> usize {
    thread_rng().gen_range(0..n)
}

fn coin() -> bool {
    thread_rng().gen_bool(0.5)
}

// ---- statistics ------------------------------------------------------------------------------

/// What the mix did, over a whole run (std atomics: no scheduling points).
struct Stats {
    ops: AtomicUsize,
    children: AtomicUsize,
    born_cancelled: AtomicUsize,
    frames: AtomicUsize,
    cancels: AtomicUsize,
    cancels_won: AtomicUsize,
    callbacks_ran: AtomicUsize,
    nested_cancels: AtomicUsize,
    disarmed_unrun: AtomicUsize,
    waiters: AtomicUsize,
    last_handle_waiters: AtomicUsize,
    wakes: AtomicUsize,
    joins: AtomicUsize,
    node_drops: AtomicUsize,
    scoped_callbacks: AtomicUsize,
}

static STATS: Stats = Stats {
    ops: AtomicUsize::new(0),
    children: AtomicUsize::new(0),
    born_cancelled: AtomicUsize::new(0),
    frames: AtomicUsize::new(0),
    cancels: AtomicUsize::new(0),
    cancels_won: AtomicUsize::new(0),
    callbacks_ran: AtomicUsize::new(0),
    nested_cancels: AtomicUsize::new(0),
    disarmed_unrun: AtomicUsize::new(0),
    waiters: AtomicUsize::new(0),
    last_handle_waiters: AtomicUsize::new(0),
    wakes: AtomicUsize::new(0),
    joins: AtomicUsize::new(0),
    node_drops: AtomicUsize::new(0),
    scoped_callbacks: AtomicUsize::new(0),
};

fn bump(a: &AtomicUsize) {
    a.fetch_add(1, SeqCst);
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = |a: &AtomicUsize| a.load(SeqCst);
        write!(
            f,
            "{} ops: {} nodes made ({} born cancelled), {} pinned frames, {} top-level cancels \
             ({} won), {} callbacks ran ({} nested cancels), {} disarmed unrun, {} owned waiters \
             ({} holding their node's last handle, {} wakes), {} joins, {} node handles dropped, \
             {} scoped callbacks",
            g(&self.ops),
            g(&self.children),
            g(&self.born_cancelled),
            g(&self.frames),
            g(&self.cancels),
            g(&self.cancels_won),
            g(&self.callbacks_ran),
            g(&self.nested_cancels),
            g(&self.disarmed_unrun),
            g(&self.waiters),
            g(&self.last_handle_waiters),
            g(&self.wakes),
            g(&self.joins),
            g(&self.node_drops),
            g(&self.scoped_callbacks),
        )
    }
}

// ---- the model -------------------------------------------------------------------------------

/// The test's record of one node.
struct Info {
    id: usize,
    kind: &'static str,
    parents: Vec<Arc<Info>>,
    /// A top-level `cancel()` of this node has returned: everything under it must report
    /// cancelled from now on.
    done: AtomicBool,
}

impl fmt::Debug for Info {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.kind, self.id)
    }
}

/// `node` and all its ancestors in the model (each once).
fn lineage(node: &Arc<Info>) -> Vec<Arc<Info>> {
    let mut seen: Vec<Arc<Info>> = Vec::new();
    let mut stack = vec![node.clone()];
    while let Some(n) = stack.pop() {
        if seen.iter().any(|s| Arc::ptr_eq(s, &n)) {
            continue;
        }
        stack.extend(n.parents.iter().cloned());
        seen.push(n);
    }
    seen
}

/// A cancel operation: its target and, once its call returned, whether it won.
struct Op {
    target: Arc<Info>,
    won: Option<bool>,
}

/// A shared heap node.
struct Rec {
    info: Arc<Info>,
    src: CancelSource,
}

/// What a callback saw.
#[derive(Default)]
struct Probe {
    ran: AtomicUsize,
    reason: std::sync::Mutex<Option<Reason>>,
}

type Cb = Box<dyn FnOnce(&Reason) + Send>;

/// A nested canceller: the world (weak: registrations live in it), the target, the operation.
type Nested = (Weak<World>, Arc<Rec>, u32);

/// A callback that records what it saw and, with `nested`, cancels that node with that
/// operation (a nested cancel when a walker runs it; a top-level one when it runs inline).
fn probe_cb(p: Arc<Probe>, nested: Option<Nested>) -> Cb {
    Box::new(move |r: &Reason| {
        *p.reason.lock().unwrap_or_else(PoisonError::into_inner) = Some(r.clone());
        p.ran.fetch_add(1, SeqCst);
        bump(&STATS.callbacks_ran);
        if let Some((w, target, k)) = nested {
            bump(&STATS.nested_cancels);
            let won = target.src.cancel_with(Reason::Code(k));
            if let Some(w) = w.upgrade() {
                w.settle(&target, k, won);
            }
        }
    })
}

/// An owned callback registration.
struct Reg {
    info: Arc<Info>,
    tok: CancelToken,
    probe: Arc<Probe>,
    reg: OnCancel<Cb>,
}

/// An owned waiter. `tok` is `None` when the future holds its node's last handle.
struct HeapWaiter {
    info: Arc<Info>,
    tok: Option<CancelToken>,
    fut: Pin<Box<OwnedCancellation>>,
    waker: Arc<CountingWaker>,
    /// Its last poll returned `Pending`.
    pending: bool,
}

/// A pinned node of this thread's frames.
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

const MAX_NODES: usize = 12;
const MAX_FRAME_DEPTH: usize = 2;

/// One iteration's shared state. Test-side locks are shuttle's (a thread blocked on one lets the
/// others run) and are never held across a cutoff call that can wait for another thread.
struct World {
    root: Arc<Rec>,
    next_id: AtomicUsize,
    nodes: Mutex<Vec<Arc<Rec>>>,
    regs: Mutex<Vec<Reg>>,
    waiters: Mutex<Vec<HeapWaiter>>,
    /// Cancel operations by number (a std lock: held only for a push or a look-up, never
    /// across a scheduling point).
    ops: std::sync::Mutex<Vec<Op>>,
    next_op: AtomicU32,
}

fn ops_of(w: &World) -> std::sync::MutexGuard<'_, Vec<Op>> {
    w.ops.lock().unwrap_or_else(PoisonError::into_inner)
}

impl World {
    fn new(sup: &CancelSource) -> Arc<World> {
        let info = Arc::new(Info {
            id: 0,
            kind: "root",
            parents: Vec::new(),
            done: AtomicBool::new(false),
        });
        let root = Arc::new(Rec {
            info,
            src: sup.child(),
        });
        Arc::new(World {
            root: root.clone(),
            next_id: AtomicUsize::new(1),
            nodes: Mutex::new(vec![root]),
            regs: Mutex::new(Vec::new()),
            waiters: Mutex::new(Vec::new()),
            ops: std::sync::Mutex::new(Vec::new()),
            next_op: AtomicU32::new(0),
        })
    }

    fn info(&self, kind: &'static str, parents: Vec<Arc<Info>>) -> Arc<Info> {
        bump(&STATS.children);
        Arc::new(Info {
            id: self.next_id.fetch_add(1, SeqCst),
            kind,
            parents,
            done: AtomicBool::new(false),
        })
    }

    /// A new cancel operation on `target`: its number and unique reason.
    fn new_op(&self, target: &Arc<Info>) -> (u32, Reason) {
        let mut ops = ops_of(self);
        let k = u32::try_from(ops.len()).expect("few ops");
        ops.push(Op {
            target: target.clone(),
            won: None,
        });
        drop(ops);
        self.next_op.fetch_add(1, SeqCst);
        let reason = if coin() {
            Reason::Code(k)
        } else {
            Reason::error(TestError(k))
        };
        (k, reason)
    }

    /// Record the outcome of operation `k` on `target`.
    fn settle(&self, target: &Rec, k: u32, won: bool) {
        ops_of(self)[k as usize].won = Some(won);
        if won {
            assert_eq!(
                cause_of(&target.src.reason().expect("cancelled")),
                Some(k),
                "{:?}: cancel_with won but reports another reason",
                target.info
            );
        }
    }

    fn pick_node(&self) -> Arc<Rec> {
        let nodes = self.nodes.lock().unwrap();
        nodes[rng_below(nodes.len())].clone()
    }

    fn push_node(&self, rec: Rec) {
        let mut nodes = self.nodes.lock().unwrap();
        if nodes.len() < MAX_NODES {
            nodes.push(Arc::new(rec));
            return;
        }
        drop(nodes);
        self.check_node(&rec.info, &rec.src);
        drop(rec); // the last handle, here and now
    }

    /// Invariants 1 and 2 for one node.
    fn check_node(&self, info: &Arc<Info>, view: &NodeView) {
        let line = lineage(info);
        // Read the flags before the node: a flag set means its cancel() returned before.
        let must = line.iter().find(|a| a.done.load(SeqCst)).cloned();
        let reason = view.reason();
        if let Some(a) = must {
            assert!(
                reason.is_some(),
                "{info:?} not cancelled, although a top-level cancel() of its ancestor {a:?} \
                 returned"
            );
        }
        let Some(r) = reason else { return };
        let k = cause_of(&r).unwrap_or_else(|| panic!("{info:?}: unexpected reason {r:?}"));
        let ops = ops_of(self);
        let op = &ops[k as usize];
        assert!(
            line.iter().any(|a| Arc::ptr_eq(a, &op.target)),
            "{info:?} has reason {r:?}, but operation {k} cancelled {:?}, not an ancestor",
            op.target
        );
        assert_ne!(
            op.won,
            Some(false),
            "{info:?} has reason {r:?} of operation {k}, which lost"
        );
    }

    /// Invariant 3 for a registration still in the registry.
    fn check_reg(&self, what: &str, probe: &Probe, info: &Arc<Info>, view: &NodeView) {
        let ran = probe.ran.load(SeqCst);
        assert!(ran <= 1, "{what} on {info:?}: ran {ran} times");
        if ran == 1 {
            let seen = probe
                .reason
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            assert_eq!(seen, view.reason(), "{what} on {info:?} saw another reason");
        } else if let Some(a) = lineage(info).iter().find(|a| a.done.load(SeqCst)) {
            panic!("{what} on {info:?} never ran, although cancel() of {a:?} returned");
        }
    }

    /// Invariant 4 for a waiter whose last poll was `Pending`.
    fn check_waiter(&self, what: &str, waker: &CountingWaker, info: &Arc<Info>) {
        let must = lineage(info).into_iter().find(|a| a.done.load(SeqCst));
        let c = waker.count();
        assert!(c <= 1, "{what} on {info:?}: woken {c} times");
        if let Some(a) = must {
            assert_eq!(
                c, 1,
                "{what} on {info:?} not woken, although cancel() of {a:?} returned"
            );
        }
    }

    /// After a top-level cancel returned: check what this thread can see.
    fn check_visible(&self, chain: Option<&Frame<'_>>) {
        let nodes: Vec<_> = self.nodes.lock().unwrap().clone();
        for rec in &nodes {
            self.check_node(&rec.info, &rec.src);
        }
        for f in frames(chain) {
            self.check_node(&f.info, f.node);
        }
        for r in self.regs.lock().unwrap().iter() {
            self.check_reg("callback", &r.probe, &r.info, &r.tok);
        }
        for wt in self.waiters.lock().unwrap().iter() {
            if wt.pending {
                self.check_waiter("owned waiter", &wt.waker, &wt.info);
            }
        }
    }

    /// A top-level cancel (never from inside a callback) of `rec`, then the checks.
    fn cancel_top(&self, info: &Arc<Info>, view: &Node, chain: Option<&Frame<'_>>) {
        let (k, reason) = self.new_op(info);
        let won = view.cancel_with(reason);
        bump(&STATS.cancels);
        if won {
            bump(&STATS.cancels_won);
        }
        ops_of(self)[k as usize].won = Some(won);
        info.done.store(true, SeqCst);
        if won {
            assert_eq!(cause_of(&view.reason().expect("cancelled")), Some(k));
        }
        self.check_visible(chain);
    }
}

// ---- the operations --------------------------------------------------------------------------

fn op(w: &Arc<World>, chain: Option<&Frame<'_>>, depth: usize) {
    bump(&STATS.ops);
    match rng_below(100) {
        0..14 => heap_child(w),
        14..18 => heap_any_of(w),
        18..30 => {
            let rec = w.pick_node();
            // The root rarely: cancelling it early leaves little to race with.
            if Arc::ptr_eq(&rec, &w.root) && rng_below(4) != 0 {
                return;
            }
            w.cancel_top(&rec.info, &rec.src, chain);
        }
        30..40 => register(w, false),
        40..46 => register(w, true),
        46..54 => unregister(w),
        54..62 => new_waiter(w),
        62..68 => poll_waiter(w),
        68..74 => drop_waiter(w),
        74..84 => drop_node(w),
        84..92 if depth < MAX_FRAME_DEPTH => frame(w, chain, depth + 1),
        92..96 => join_op(w, chain, depth),
        96..100 if chain.is_some() => {
            let fs = frames(chain);
            let f = fs[rng_below(fs.len())];
            w.cancel_top(&f.info, f.node, chain);
        }
        _ => {
            let rec = w.pick_node();
            w.check_node(&rec.info, &rec.src);
        }
    }
}

fn heap_child(w: &Arc<World>) {
    let parent = w.pick_node();
    let src = if coin() {
        parent.src.child()
    } else {
        parent.src.token().child()
    };
    let info = w.info("heap", vec![parent.info.clone()]);
    if src.is_cancelled() {
        bump(&STATS.born_cancelled);
    }
    w.check_node(&info, &src);
    w.push_node(Rec { info, src });
}

fn heap_any_of(w: &Arc<World>) {
    let (a, b) = (w.pick_node(), w.pick_node());
    if Arc::ptr_eq(&a, &b) {
        return;
    }
    let src = CancelSource::any_of([&a.src.token(), &b.src.token()]);
    let info = w.info("any-of", vec![a.info.clone(), b.info.clone()]);
    w.check_node(&info, &src);
    w.push_node(Rec { info, src });
}

/// An owned callback; with `nested`, one that cancels another node when it runs.
fn register(w: &Arc<World>, nested: bool) {
    let rec = w.pick_node();
    let nested = nested.then(|| {
        let target = w.pick_node();
        let (k, _) = w.new_op(&target.info);
        (Arc::downgrade(w), target, k)
    });
    let probe = Arc::new(Probe::default());
    let tok = rec.src.token();
    let cb = probe_cb(probe.clone(), nested);
    let reg = if coin() {
        rec.src.on_cancel(cb)
    } else {
        tok.on_cancel(cb)
    };
    w.regs.lock().unwrap().push(Reg {
        info: rec.info.clone(),
        tok,
        probe,
        reg,
    });
}

/// Disarm or drop a random owned callback (invariant 3).
fn unregister(w: &Arc<World>) {
    let r = {
        let mut regs = w.regs.lock().unwrap();
        if regs.is_empty() {
            return;
        }
        let i = rng_below(regs.len());
        regs.swap_remove(i)
    };
    finish_reg(w, r, coin());
}

fn finish_reg(w: &Arc<World>, r: Reg, disarm: bool) {
    let Reg {
        info,
        tok,
        probe,
        reg,
    } = r;
    w.check_reg("callback", &probe, &info, &tok);
    if disarm {
        let returned = reg.disarm().is_some();
        let ran = probe.ran.load(SeqCst);
        assert!(
            ran <= 1 && (ran == 1) != returned,
            "callback on {info:?}: ran {ran} times, disarm gave the closure back: {returned}"
        );
        if returned {
            bump(&STATS.disarmed_unrun);
        }
    } else {
        drop(reg);
        let ran = probe.ran.load(SeqCst);
        assert!(ran <= 1, "callback on {info:?}: ran {ran} times");
    }
}

/// A `cancelled_owned()` future, polled once; half of them on a fresh child whose source is
/// dropped at once, so the future holds the child's last handle (ADV-1's shape).
fn new_waiter(w: &Arc<World>) {
    let rec = w.pick_node();
    let waker = Arc::new(CountingWaker::default());
    bump(&STATS.waiters);
    let (info, tok, mut fut) = if coin() {
        bump(&STATS.last_handle_waiters);
        let child = rec.src.child();
        let info = w.info("heap", vec![rec.info.clone()]);
        let fut = Box::pin(child.token().cancelled_owned());
        drop(child);
        (info, None, fut)
    } else {
        let tok = rec.src.token();
        let fut = Box::pin(tok.cancelled_owned());
        (rec.info.clone(), Some(tok), fut)
    };
    match poll_with(fut.as_mut(), &waker) {
        Poll::Ready(r) => {
            if let Some(t) = &tok {
                assert_eq!(Some(r), t.reason());
            }
        }
        Poll::Pending => w.waiters.lock().unwrap().push(HeapWaiter {
            info,
            tok,
            fut,
            waker,
            pending: true,
        }),
    }
}

fn take_waiter(w: &Arc<World>) -> Option<HeapWaiter> {
    let mut ws = w.waiters.lock().unwrap();
    if ws.is_empty() {
        return None;
    }
    let i = rng_below(ws.len());
    Some(ws.swap_remove(i))
}

/// Poll a waiter again; `true` if it completed (and was checked).
fn repoll(w: &Arc<World>, wt: &mut HeapWaiter) -> bool {
    w.check_waiter("owned waiter", &wt.waker, &wt.info);
    match poll_with(wt.fut.as_mut(), &wt.waker) {
        Poll::Ready(r) => {
            STATS.wakes.fetch_add(wt.waker.count(), SeqCst);
            if let Some(t) = &wt.tok {
                assert_eq!(Some(r), t.reason(), "owned waiter on {:?}", wt.info);
            }
            true
        }
        Poll::Pending => false,
    }
}

fn poll_waiter(w: &Arc<World>) {
    let Some(mut wt) = take_waiter(w) else { return };
    if !repoll(w, &mut wt) {
        w.waiters.lock().unwrap().push(wt);
    }
}

fn drop_waiter(w: &Arc<World>) {
    if let Some(wt) = take_waiter(w) {
        w.check_waiter("owned waiter", &wt.waker, &wt.info);
        drop(wt);
    }
}

/// Drop a node's registry handle (its last one, unless a callback, a waiter or a child holds
/// another), on whichever thread picked it.
fn drop_node(w: &Arc<World>) {
    let rec = {
        let mut nodes = w.nodes.lock().unwrap();
        if nodes.len() <= 1 {
            return;
        }
        let i = 1 + rng_below(nodes.len() - 1);
        nodes.swap_remove(i)
    };
    w.check_node(&rec.info, &rec.src);
    bump(&STATS.node_drops);
    drop(rec);
}

/// Poll a `join()` future of a node, do some more operations, poll it again, drop it.
fn join_op(w: &Arc<World>, chain: Option<&Frame<'_>>, depth: usize) {
    let rec = w.pick_node();
    let waker = Arc::new(CountingWaker::default());
    bump(&STATS.joins);
    let mut j = pin!(rec.src.join());
    let first = poll_with(j.as_mut(), &waker);
    if first.is_ready() {
        return;
    }
    for _ in 0..rng_below(3) {
        op(w, chain, MAX_FRAME_DEPTH.max(depth));
    }
    let c = waker.count();
    assert!(c <= 1, "join on {:?}: woken {c} times", rec.info);
    let _ = poll_with(j.as_mut(), &waker);
}

/// A pinned frame: a `ChildNode` (under a heap node or an enclosing frame) or an `AnyOf` of two
/// heap nodes, with maybe a pinned callback and a pinned waiter, and more operations inside.
fn frame(w: &Arc<World>, chain: Option<&Frame<'_>>, depth: usize) {
    let keep = w.pick_node();
    let keep2 = w.pick_node();
    let any = rng_below(3) == 0 && !Arc::ptr_eq(&keep, &keep2);
    let (pview, pinfo): (&NodeView, Arc<Info>) = match chain {
        Some(c) if coin() => {
            let fs = frames(Some(c));
            let f = fs[rng_below(fs.len())];
            (f.node, f.info.clone())
        }
        _ => (&keep.src, keep.info.clone()),
    };
    let mut child = pin!((!any).then(|| ChildNode::new(pview)));
    let mut anyof = pin!(any.then(|| AnyOf::new([&**keep.src, &**keep2.src])));
    let (node, info): (&Node, Arc<Info>) = match child.as_mut().as_pin_mut() {
        Some(c) => (c.link(), w.info("pinned", vec![pinfo])),
        None => (
            anyof.as_mut().as_pin_mut().expect("one of the two").link(),
            w.info("pinned-any-of", vec![keep.info.clone(), keep2.info.clone()]),
        ),
    };
    bump(&STATS.frames);
    w.check_node(&info, node);
    let frame = Frame {
        node,
        info,
        up: chain,
    };

    // A pinned callback (maybe a nested canceller) and a pinned waiter.
    let probe = Arc::new(Probe::default());
    let nested = (rng_below(3) == 0).then(|| {
        let target = w.pick_node();
        let (k, _) = w.new_op(&target.info);
        (Arc::downgrade(w), target, k)
    });
    let mut cb = pin!(Callback::new(node, probe_cb(probe.clone(), nested)));
    let registered = coin();
    if registered {
        let was = node.is_cancelled();
        let linked = cb.as_mut().register();
        assert!(!(was && linked), "registered on a cancelled node");
        if !linked {
            assert_eq!(probe.ran.load(SeqCst), 1, "inline run on a cancelled node");
        }
    }
    let mut waiter = pin!(node.cancelled());
    let waker = Arc::new(CountingWaker::default());
    let mut pending = false;
    if coin() {
        pending = poll_with(waiter.as_mut(), &waker).is_pending();
    }

    for _ in 0..rng_below(4) {
        if rng_below(4) != 0 {
            op(w, Some(&frame), depth);
            continue;
        }
        // A scoped callback around one more operation.
        let runs = AtomicUsize::new(0);
        let was = node.is_cancelled();
        node.with_callback(
            |r: &Reason| {
                assert!(cause_of(r).is_some(), "scoped callback saw {r:?}");
                runs.fetch_add(1, SeqCst);
            },
            || op(w, Some(&frame), depth),
        );
        let runs = runs.load(SeqCst);
        assert!(runs <= 1, "scoped callback ran {runs} times");
        assert!(
            !was || runs == 1,
            "scoped callback on a cancelled node runs inline"
        );
        bump(&STATS.scoped_callbacks);
    }

    // Leaving: check, then drop the waiter and the callback before the node.
    w.check_node(&frame.info, node);
    if pending {
        w.check_waiter("pinned waiter", &waker, &frame.info);
        if let Poll::Ready(r) = poll_with(waiter.as_mut(), &waker) {
            assert_eq!(Some(r), node.reason());
        }
    }
    if registered {
        w.check_reg("pinned callback", &probe, &frame.info, node);
        if coin() {
            let returned = cb.as_mut().disarm().is_some();
            let ran = probe.ran.load(SeqCst);
            assert!(
                ran <= 1 && (ran == 1) != returned,
                "pinned callback on {:?}: ran {ran} times, disarm returned {returned}",
                frame.info
            );
        }
    }
}

fn worker(w: Arc<World>, n: usize) {
    for _ in 0..n {
        op(&w, None, 0);
    }
}

/// Operations per thread.
const OPS: usize = 8;

/// One iteration: main thread and two workers on one shared tree, then the final checks.
fn mix_iteration() {
    let start_frees = double_frees();
    let sup = CancelSource::new();
    let w = World::new(&sup);
    // A few nodes to start with, so the threads meet early.
    heap_child(&w);
    heap_child(&w);
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let w = w.clone();
            thread::spawn(move || worker(w, OPS))
        })
        .collect();
    worker(w.clone(), OPS);
    for h in handles {
        h.join().unwrap();
    }

    // Quiescent: every cancel call has returned, so under every cancelled node everything is
    // cancelled (abandoned walks included: their deferred parts were finished by their walkers).
    {
        let nodes: Vec<_> = w.nodes.lock().unwrap().clone();
        for rec in &nodes {
            w.check_node(&rec.info, &rec.src);
            for a in lineage(&rec.info) {
                if let Some(anc) = nodes.iter().find(|n| Arc::ptr_eq(&n.info, &a))
                    && anc.src.is_cancelled()
                {
                    assert!(
                        rec.src.is_cancelled(),
                        "{:?} not cancelled at the end, although its ancestor {a:?} is",
                        rec.info
                    );
                }
            }
        }
    }

    // Cancel the root: now everything is cancelled, every callback ran, every waiter woke.
    let root = w.root.clone();
    w.cancel_top(&root.info, &root.src, None);
    {
        let jw = Arc::new(CountingWaker::default());
        let mut join = pin!(root.src.join());
        let join_pending = poll_with(join.as_mut(), &jw).is_pending();
        assert_eq!(join_pending, root.src.has_children());
        let regs = core::mem::take(&mut *w.regs.lock().unwrap());
        for r in regs {
            assert_eq!(r.probe.ran.load(SeqCst), 1, "callback on {:?}", r.info);
            finish_reg(&w, r, coin());
        }
        let waiters = core::mem::take(&mut *w.waiters.lock().unwrap());
        for mut wt in waiters {
            assert_eq!(wt.waker.count(), 1, "owned waiter on {:?}", wt.info);
            assert!(repoll(&w, &mut wt), "owned waiter on {:?}", wt.info);
        }
        // Drop the nodes in a random order (the root's registry handle with them; `root`
        // keeps it).
        let mut nodes = core::mem::take(&mut *w.nodes.lock().unwrap());
        while !nodes.is_empty() {
            let i = rng_below(nodes.len());
            drop(nodes.swap_remove(i));
        }
        assert_eq!(double_frees(), start_frees, "double free of a heap node");
        if join_pending {
            assert_eq!(jw.count(), 1, "join on the root not woken");
        }
        assert!(poll_with(join.as_mut(), &jw).is_ready(), "join on the root");
    }
    drop(root);
    let w = Arc::try_unwrap(w).unwrap_or_else(|_| panic!("a thread kept the world"));
    drop(w);
    assert!(
        !sup.has_children(),
        "leak: a node of the iteration is still linked after every handle was dropped"
    );
    assert_eq!(double_frees(), start_frees, "double free of a heap node");
}

#[test]
fn operation_mix() {
    let n = explore("operation_mix", MIX_ITERS, mix_iteration);
    eprintln!("operation_mix: {n} iterations, {STATS}");
}

// ---- targeted scenarios ----------------------------------------------------------------------

/// ADV-1: the last handle of a heap child is the token inside an `OwnedCancellation`; the future
/// is polled until ready and dropped on another thread while the parent's walker is inside the
/// child (before the fix: the walker's reference resurrected the node its owner was freeing,
/// and both freed it).
#[test]
fn adv1_owned_waiter_drop_vs_walker() {
    explore("adv1_owned_waiter_drop_vs_walker", SCENARIO_ITERS, || {
        let start_frees = double_frees();
        let parent = CancelSource::new();
        let child = parent.child();
        let mut fut = Box::pin(child.token().cancelled_owned());
        drop(child);
        let waker = Arc::new(CountingWaker::default());
        assert!(poll_with(fut.as_mut(), &waker).is_pending());
        let t = thread::spawn(move || {
            if coin() {
                let waker = Arc::new(CountingWaker::default());
                while poll_with(fut.as_mut(), &waker).is_pending() {
                    thread::yield_now();
                }
            }
            drop(fut);
        });
        assert!(parent.cancel());
        t.join().unwrap();
        assert!(waker.count() <= 1);
        let freed_twice = double_frees() != start_frees;
        let linked = parent.has_children();
        if freed_twice || linked {
            // Broken: do not drop it while unwinding (a second panic would abort the run).
            core::mem::forget(parent);
        }
        assert!(!freed_twice, "double free of a heap node");
        assert!(!linked, "the child is still linked");
    });
}

/// ADV-5: r -> c -> y -> z. A thread cancels y (its walk reaches z after y's callback); the main
/// thread cancels c from inside a callback of an unrelated node (a nested cancel, which may not
/// wait), then cancels r at top level, which must not return before z is cancelled.
#[test]
fn adv5_nested_cancel_then_top_level_cancel() {
    explore(
        "adv5_nested_cancel_then_top_level_cancel",
        SCENARIO_ITERS,
        || {
            let r = CancelSource::new();
            let c = Arc::new(r.child());
            let y = c.child();
            let z = y.child(); // older than y's callback, so y's walk reaches it afterwards
            let zt = z.token();
            let _slow = y.on_cancel(|_: &Reason| thread::yield_now());
            let t = thread::spawn(move || {
                y.cancel();
                (y, z)
            });
            let n = CancelSource::new();
            let c2 = c.clone();
            let _cb = n.on_cancel(move |_: &Reason| {
                c2.cancel();
            });
            assert!(n.cancel());
            r.cancel();
            let z_cancelled = zt.is_cancelled();
            let _yz = t.join().unwrap();
            assert!(
                z_cancelled,
                "r.cancel() returned (top level) while its descendant z was not cancelled"
            );
        },
    );
}
