//! Shared helpers for the black-box API tests of `cutoff` (the tests live in `tests/tests/`).
//!
//! Nothing here knows about cutoff's internals: the helpers are a counting waker, a manual
//! poll, a "this must not hang" guard, a way to run a test body in a child process (so a
//! stack overflow fails one test instead of aborting the whole test binary), and a
//! thread-local allocation counter for test binaries that install it as their allocator.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

/// A waker that counts how many times it was woken.
#[derive(Debug, Default)]
pub struct CountingWaker {
    wakes: AtomicUsize,
}

impl CountingWaker {
    /// A fresh counter, shared.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// How many times `wake`/`wake_by_ref` ran.
    pub fn count(&self) -> usize {
        self.wakes.load(Ordering::SeqCst)
    }

    /// A `Waker` that bumps this counter.
    pub fn waker(self: &Arc<Self>) -> Waker {
        Waker::from(Arc::clone(self))
    }
}

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
    }
}

/// Poll a pinned future once with `waker`.
pub fn poll_once<F: Future + ?Sized>(fut: Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
    let mut cx = Context::from_waker(waker);
    fut.poll(&mut cx)
}

/// How long a "must not deadlock" guard waits before declaring a hang. Generous: this is a
/// hang detector, not a speed check.
pub const HANG: Duration = Duration::from_secs(20);

/// Run `f` on a fresh thread and return its result; panic with `what` if it has not returned
/// within [`HANG`] (the stuck thread is leaked). Panics inside `f` are re-raised here.
pub fn must_finish<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let v = f();
        let _ = tx.send(());
        v
    });
    // Slow runners (valgrind serialises threads) may raise the limit.
    let limit = std::env::var("CUTOFF_TEST_HANG_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(HANG, Duration::from_secs);
    match rx.recv_timeout(limit) {
        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Ok(v) => v,
            Err(payload) => std::panic::resume_unwind(payload),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("hang: {what} did not finish within {limit:?} (deadlock?)")
        }
    }
}

const ISOLATED_ENV: &str = "CUTOFF_TESTS_ISOLATED";

/// Run `body` in a child process running only the test called `test_name` (its path inside the
/// test binary, e.g. `"chain_cancel_root_drop_root_first"`).
///
/// In the child (recognised by an environment variable) `body` just runs. In the parent, the
/// test binary is re-executed for that single test and the test fails if the child does not
/// exit successfully, which turns a stack overflow or an abort into an ordinary failure.
pub fn run_isolated(test_name: &str, body: impl FnOnce()) {
    if std::env::var(ISOLATED_ENV).as_deref() == Ok(test_name) {
        body();
        return;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let out = std::process::Command::new(exe)
        .args([
            test_name,
            "--exact",
            "--nocapture",
            "--include-ignored",
            "--test-threads=1",
        ])
        .env(ISOLATED_ENV, test_name)
        .output()
        .expect("spawn the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "isolated test `{test_name}` failed: {:?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("1 passed"),
        "isolated test `{test_name}` did not run exactly once:\n{stdout}"
    );
}

/// A global allocator that counts the allocations made **on the current thread** while
/// [`allocs_in`] runs (other tests running in parallel in the same binary do not disturb the
/// count). A test binary installs it with
/// `#[global_allocator] static GLOBAL: ThreadAllocCounter = ThreadAllocCounter;`.
#[derive(Debug)]
pub struct ThreadAllocCounter;

std::thread_local! {
    static COUNTING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static COUNT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn note_alloc() {
    if COUNTING.try_with(std::cell::Cell::get).unwrap_or(false) {
        let _ = COUNT.try_with(|c| c.set(c.get() + 1));
    }
}

// SAFETY: forwards every call to `System`, only adding a thread-local counter bump (which
// allocates nothing: const-initialized thread-locals).
unsafe impl std::alloc::GlobalAlloc for ThreadAllocCounter {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        note_alloc();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        note_alloc();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        note_alloc();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

/// Allocations made by `f` on this thread (counted only where [`ThreadAllocCounter`] is the
/// global allocator).
pub fn allocs_in(f: impl FnOnce()) -> usize {
    COUNT.with(|c| c.set(0));
    COUNTING.with(|o| o.set(true));
    f();
    COUNTING.with(|o| o.set(false));
    COUNT.with(std::cell::Cell::get)
}

/// Leak `value` for a `'static` borrow (a timer or node a test's callbacks outlive), keeping it
/// reachable from a static so that valgrind (`.ci/valgrind`) does not count it as a definite
/// leak of the code under test.
pub fn leak<T: Send + Sync + 'static>(value: T) -> &'static T {
    static LEAKED: std::sync::Mutex<Vec<&'static (dyn std::any::Any + Send + Sync)>> =
        std::sync::Mutex::new(Vec::new());
    let r: &'static T = Box::leak(Box::new(value));
    LEAKED.lock().unwrap_or_else(|e| e.into_inner()).push(r);
    r
}
