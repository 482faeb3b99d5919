//! Heap bytes and allocations per live child, measured with a counting global allocator.
//!
//! Rows:
//! * `cutoff_heap`: 1M live `CancelSource` children of one parent;
//! * `cutoff_pinned`: 1M live `ChildNode`s of one parent, stored in a slice allocated *before*
//!   the measurement (that storage is the user's, like a stack frame or a struct field; its size
//!   is reported separately as `size_of::<ChildNode>()`); the counter only sees what creating
//!   and linking them allocates;
//! * `cutoff_pinned_stack`: 1M pinned children created, linked and dropped one at a time on the
//!   stack (allocations counted over the whole loop);
//! * `tokio_util`: 1M live `child_token()`s of one parent;
//! * `timer_heap`: 1M pending `cutoff_timer::with_timeout(&parent, 1h)` deadline nodes;
//! * `timer_pinned`: 1M pending pinned `Deadline`s in storage allocated before counting;
//! * `timer_pinned_stack`: 1M pinned deadlines (200 ms) created, linked and dropped one at a
//!   time on the stack;
//! * `tokio_sleep`: 1M tokio `sleep(1h)`s, boxed and polled once (registered in the wheel).
//!
//! The vector of handles for the heap rows is allocated before the measurement too (8 B per
//! handle for both libraries). Usage: `mem [--out FILE] [N]`; `FILE` gets `key value` lines
//! that `report` reads.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use std::future::Future;
use std::task::{Context, Waker};
use std::time::Duration;

use cutoff::{CancelSource, ChildNode};
use cutoff_timer::Deadline;
use tokio_util::sync::CancellationToken;

struct Counting;

static BYTES: AtomicUsize = AtomicUsize::new(0);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only adds relaxed counters.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        BYTES.fetch_add(layout.size(), Relaxed);
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        BYTES.fetch_sub(layout.size(), Relaxed);
        ALLOCS.fetch_sub(1, Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        BYTES.fetch_add(new_size, Relaxed);
        BYTES.fetch_sub(layout.size(), Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// (live bytes, live allocations, total allocations ever made is not tracked).
fn snapshot() -> (isize, isize) {
    (BYTES.load(Relaxed) as isize, ALLOCS.load(Relaxed) as isize)
}

struct Row {
    key: &'static str,
    what: String,
    bytes: f64,
    allocs: f64,
}

fn measure(key: &'static str, what: String, n: usize, f: impl FnOnce() -> (isize, isize)) -> Row {
    let (db, da) = f();
    Row {
        key,
        what,
        bytes: db as f64 / n as f64,
        allocs: da as f64 / n as f64,
    }
}

fn main() {
    let mut out = None;
    let mut n = 1_000_000usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--out" {
            out = args.next();
        } else {
            n = a.parse().expect("usage: mem [--out FILE] [N]");
        }
    }

    let mut rows = Vec::new();

    rows.push(measure(
        "cutoff_heap",
        format!("cutoff heap child (`source.child()`), {n} live under one parent"),
        n,
        || {
            let root = CancelSource::new();
            let mut kids = Vec::with_capacity(n);
            let (b0, a0) = snapshot();
            for _ in 0..n {
                kids.push(root.child());
            }
            let (b1, a1) = snapshot();
            assert!(!kids[n - 1].is_cancelled());
            drop(kids);
            (b1 - b0, a1 - a0)
        },
    ));

    rows.push(measure(
        "cutoff_pinned",
        format!(
            "cutoff pinned child (`ChildNode`, {} B each, in storage allocated before counting), {n} live",
            size_of::<ChildNode<'static>>()
        ),
        n,
        || {
            let root = CancelSource::new();
            let storage: Vec<ChildNode<'_>> = (0..n).map(|_| ChildNode::new(&root)).collect();
            let mut storage: Pin<Box<[ChildNode<'_>]>> = Box::into_pin(storage.into_boxed_slice());
            let (b0, a0) = snapshot();
            for i in 0..n {
                // SAFETY: structural pinning of a boxed slice: the elements never move and are
                // dropped in place when the box drops.
                let child = unsafe { storage.as_mut().map_unchecked_mut(|s| &mut s[i]) };
                child.link();
            }
            let (b1, a1) = snapshot();
            assert!(!root.is_cancelled() && root.has_children());
            drop(storage);
            (b1 - b0, a1 - a0)
        },
    ));

    rows.push(measure(
        "cutoff_pinned_stack",
        format!("cutoff pinned child on the stack: create, link, drop, {n} times"),
        n,
        || {
            let root = CancelSource::new();
            let (b0, a0) = snapshot();
            let mut allocs_seen = 0isize;
            for _ in 0..n {
                let mut c = pin!(ChildNode::new(&root));
                let node = c.as_mut().link();
                std::hint::black_box(node);
                // Count allocations made while the child is live (none should be).
                allocs_seen = allocs_seen.max(snapshot().1 - a0);
            }
            let (b1, _) = snapshot();
            (b1 - b0, allocs_seen)
        },
    ));

    rows.push(measure(
        "tokio_util",
        format!("tokio-util `child_token()`, {n} live under one parent"),
        n,
        || {
            let root = CancellationToken::new();
            let mut kids = Vec::with_capacity(n);
            let (b0, a0) = snapshot();
            for _ in 0..n {
                kids.push(root.child_token());
            }
            let (b1, a1) = snapshot();
            assert!(!kids[n - 1].is_cancelled());
            drop(kids);
            (b1 - b0, a1 - a0)
        },
    ));

    // ---- deadlines (cutoff-timer) and tokio sleeps -----------------------------------------
    // Warm up this thread's shard of the global timer (a one-off per thread and timer, not
    // per deadline), start its driver and let it fire once (its batch buffer is allocated on
    // first use and reused), all before counting: the counter sees every thread.
    drop(cutoff_timer::with_timeout(
        &CancelSource::new(),
        Duration::from_secs(3600),
    ));
    cutoff_timer::with_timeout(&CancelSource::new(), Duration::from_millis(1)).wait();

    rows.push(measure(
        "timer_heap",
        format!("cutoff-timer `with_timeout(&parent, 1h)`, {n} pending under one parent"),
        n,
        || {
            let root = CancelSource::new();
            let mut ds = Vec::with_capacity(n);
            let (b0, a0) = snapshot();
            for _ in 0..n {
                ds.push(cutoff_timer::with_timeout(&root, Duration::from_secs(3600)));
            }
            let (b1, a1) = snapshot();
            assert!(!ds[n - 1].is_cancelled());
            drop(ds);
            (b1 - b0, a1 - a0)
        },
    ));

    rows.push(measure(
        "timer_pinned",
        format!(
            "cutoff-timer pinned `Deadline` ({} B each, in storage allocated before counting), {n} pending",
            size_of::<Deadline<'static>>()
        ),
        n,
        || {
            let root = CancelSource::new();
            let storage: Vec<Deadline<'_>> = (0..n)
                .map(|_| Deadline::after(&root, Duration::from_secs(3600)))
                .collect();
            let mut storage: Pin<Box<[Deadline<'_>]>> = Box::into_pin(storage.into_boxed_slice());
            let (b0, a0) = snapshot();
            for i in 0..n {
                // SAFETY: structural pinning of a boxed slice: the elements never move and are
                // dropped in place when the box drops.
                let d = unsafe { storage.as_mut().map_unchecked_mut(|s| &mut s[i]) };
                d.link();
            }
            let (b1, a1) = snapshot();
            assert!(!root.is_cancelled() && root.has_children());
            drop(storage);
            (b1 - b0, a1 - a0)
        },
    ));

    rows.push(measure(
        "timer_pinned_stack",
        format!(
            "cutoff-timer `pin!(Deadline::after(&parent, 200ms)).link()` + drop on the stack, {n} times"
        ),
        n,
        || {
            let root = CancelSource::new();
            let parent = root.child();
            // Warm-up: the first deadline on a thread sets up that thread's shard of the
            // timer (one allocation per thread, not per deadline) and starts the global timer.
            {
                let mut d = pin!(Deadline::after(&parent, Duration::from_millis(200)));
                std::hint::black_box(d.as_mut().link());
            }
            let (b0, a0) = snapshot();
            let mut allocs_seen = 0isize;
            for _ in 0..n {
                let mut d = pin!(Deadline::after(&parent, Duration::from_millis(200)));
                std::hint::black_box(d.as_mut().link());
                allocs_seen = allocs_seen.max(snapshot().1 - a0);
            }
            let (b1, _) = snapshot();
            (b1 - b0, allocs_seen)
        },
    ));

    rows.push(measure(
        "tokio_sleep",
        format!("tokio `sleep(1h)`, boxed and polled once (registered), {n} pending"),
        n,
        || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("tokio runtime");
            let _g = rt.enter();
            let mut cx = Context::from_waker(Waker::noop());
            let mut v = Vec::with_capacity(n);
            let (b0, a0) = snapshot();
            for _ in 0..n {
                let mut s = Box::pin(tokio::time::sleep(Duration::from_secs(3600)));
                assert!(s.as_mut().poll(&mut cx).is_pending());
                v.push(s);
            }
            let (b1, a1) = snapshot();
            drop(v);
            (b1 - b0, a1 - a0)
        },
    ));

    let mut file = String::new();
    println!(
        "{:<22} {:>10} {:>12}  what",
        "row", "B/child", "allocs/child"
    );
    for r in &rows {
        println!(
            "{:<22} {:>10.1} {:>12.3}  {}",
            r.key, r.bytes, r.allocs, r.what
        );
        let _ = writeln!(file, "{}.bytes {}", r.key, r.bytes);
        let _ = writeln!(file, "{}.allocs {}", r.key, r.allocs);
        let _ = writeln!(file, "{}.what {}", r.key, r.what);
    }
    let _ = writeln!(file, "size_of.Node {}", size_of::<cutoff::Node>());
    let _ = writeln!(
        file,
        "size_of.ChildNode {}",
        size_of::<ChildNode<'static>>()
    );
    let _ = writeln!(file, "size_of.CancelSource {}", size_of::<CancelSource>());
    let _ = writeln!(
        file,
        "size_of.CancellationToken {}",
        size_of::<CancellationToken>()
    );
    let _ = writeln!(file, "size_of.Deadline {}", size_of::<Deadline<'static>>());
    let _ = writeln!(file, "n {n}");
    println!(
        "size_of: Node {} B, ChildNode {} B, CancelSource {} B, tokio CancellationToken {} B",
        size_of::<cutoff::Node>(),
        size_of::<ChildNode<'static>>(),
        size_of::<CancelSource>(),
        size_of::<CancellationToken>()
    );
    if let Some(path) = out {
        std::fs::write(&path, file).expect("write --out file");
    }
}
