//! A gRPC-style client, frontend and backend in one process, passing a deadline along in the
//! `grpc-timeout` header (issue 7, item 6). No gRPC dependency: a call is a header map and a
//! body sent over a channel to a server thread, which answers on a reply channel.
//!
//! ```text
//! client ──grpc-timeout──▶ frontend ──grpc-timeout (what is left)──▶ backend (does the work)
//! ```
//!
//! Each server turns the header into its own deadline node (`with_grpc_timeout`), and the
//! frontend re-encodes its remaining time for the backend (`grpc_timeout`). Four calls: one
//! that finishes in time, one whose work outlasts the deadline (every hop stops at it, long
//! before the work would end), one whose deadline passed before it was sent (failed locally,
//! never sent), and one with a malformed header (rejected with the parser's error).
//!
//! Run: `cargo run -p cutoff-timer --example grpc`
#![allow(clippy::std_instead_of_core, missing_docs)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::{Duration, Instant};

use cutoff::{CancelSource, NodeView, Parent, Reason};
use cutoff_timer::grpc::{self, GrpcTimeout};
use cutoff_timer::{DeadlineExt, Elapsed, with_timeout};

type Headers = HashMap<&'static str, String>;

struct Call {
    headers: Headers,
    /// How long the backend's work takes if nothing stops it.
    work: Duration,
    reply: Sender<Reply>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Code {
    Ok,
    Cancelled,
    DeadlineExceeded,
    InvalidArgument,
}

#[derive(Debug)]
struct Reply {
    code: Code,
    detail: String,
}

impl Reply {
    fn new(code: Code, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
        }
    }
}

/// Calls the frontend received (to show that an expired call is never sent).
static RECEIVED: AtomicUsize = AtomicUsize::new(0);

/// Send a call made under `ctx` to `server` and wait for the reply, but not past `ctx`'s
/// deadline. The same code serves the client and the frontend.
fn call(ctx: &NodeView, server: &Sender<Call>, work: Duration, who: &str) -> Reply {
    let mut headers = Headers::new();
    match grpc::grpc_timeout(ctx) {
        Err(Elapsed) => {
            return Reply::new(Code::DeadlineExceeded, format!("{who}: expired, not sent"));
        }
        Ok(Some(timeout)) => {
            println!("  {who} sends  grpc-timeout: {timeout}");
            headers.insert(grpc::HEADER, timeout.to_string());
        }
        Ok(None) => println!("  {who} sends  no grpc-timeout"),
    }
    let (reply, replies) = mpsc::channel();
    server
        .send(Call {
            headers,
            work,
            reply,
        })
        .expect("server is up");
    let wait = ctx.deadline().map_or(Duration::from_secs(60), |d| {
        d.saturating_duration_since(Instant::now())
    });
    replies.recv_timeout(wait).unwrap_or_else(|_| {
        Reply::new(
            Code::DeadlineExceeded,
            format!("{who}: no reply by its deadline"),
        )
    })
}

/// The backend's work: ten steps, each a wait that ends early if the call is cancelled.
fn work(ctx: &NodeView, total: Duration) -> Reply {
    let started = Instant::now();
    for _ in 0..10 {
        if let Some(reason) = ctx.wait_timeout(total / 10) {
            let code = match reason {
                Reason::DeadlineExceeded => Code::DeadlineExceeded,
                _ => Code::Cancelled,
            };
            let detail = format!(
                "backend: stopped after {:?} ({reason:?})",
                started.elapsed()
            );
            println!("  {detail}");
            return Reply::new(code, detail);
        }
    }
    Reply::new(
        Code::Ok,
        format!("backend: done in {:?}", started.elapsed()),
    )
}

/// A server thread: each call gets a deadline node from its header under the server's root,
/// then is forwarded to `next` (the frontend) or worked on (the backend).
fn serve(name: &'static str, calls: Receiver<Call>, next: Option<Sender<Call>>) {
    let root = CancelSource::new(); // cancelling it would cancel every call in flight
    for request in calls {
        if next.is_some() {
            RECEIVED.fetch_add(1, Ordering::SeqCst);
        }
        let ctx = match request.headers.get(grpc::HEADER) {
            None => root.child(), // no header: no deadline
            Some(text) => match grpc::with_grpc_timeout(&root, text) {
                Ok(ctx) => ctx,
                Err(e) => {
                    let _ = request
                        .reply
                        .send(Reply::new(Code::InvalidArgument, format!("{name}: {e}")));
                    continue;
                }
            },
        };
        let reply = match &next {
            Some(backend) => call(&ctx, backend, request.work, name),
            None => work(&ctx, request.work),
        };
        // The caller may have given up already (its deadline came first): ignore that.
        let _ = request.reply.send(reply);
    }
}

fn main() {
    let started = Instant::now();
    let (to_backend, backend_calls) = mpsc::channel();
    let (to_frontend, frontend_calls) = mpsc::channel();
    let backend = thread::spawn(move || serve("backend", backend_calls, None));
    let frontend = thread::spawn(move || serve("frontend", frontend_calls, Some(to_backend)));

    // 1. In time: 1 s to live, 50 ms of work.
    println!("call 1: 1 s deadline, 50 ms of work");
    let request = with_timeout(Parent::Root, Duration::from_secs(1));
    let t0 = Instant::now();
    let reply = call(&request, &to_frontend, Duration::from_millis(50), "client");
    println!("  -> {:?}: {}", reply.code, reply.detail);
    assert_eq!(reply.code, Code::Ok, "{reply:?}");
    assert!(t0.elapsed() < Duration::from_secs(1));
    assert!(!request.is_cancelled());

    // 2. Too slow: 150 ms to live, 5 s of work. Every hop stops at the deadline.
    println!("call 2: 150 ms deadline, 5 s of work");
    let request = with_timeout(Parent::Root, Duration::from_millis(150));
    let t0 = Instant::now();
    let reply = call(&request, &to_frontend, Duration::from_secs(5), "client");
    let took = t0.elapsed();
    println!("  -> {:?} after {took:?}: {}", reply.code, reply.detail);
    assert_eq!(reply.code, Code::DeadlineExceeded, "{reply:?}");
    assert!(
        took >= Duration::from_millis(140),
        "stopped early: {took:?}"
    );
    assert!(
        took < Duration::from_secs(1),
        "did not stop at the deadline: {took:?}"
    );
    assert_eq!(request.wait(), Reason::DeadlineExceeded);

    // 3. Expired before it was sent: failed locally, the frontend never sees it.
    println!("call 3: deadline already passed");
    let request = with_timeout(Parent::Root, Duration::ZERO);
    let before = RECEIVED.load(Ordering::SeqCst);
    let reply = call(&request, &to_frontend, Duration::from_millis(50), "client");
    println!("  -> {:?}: {}", reply.code, reply.detail);
    assert_eq!(reply.code, Code::DeadlineExceeded);
    assert_eq!(
        RECEIVED.load(Ordering::SeqCst),
        before,
        "an expired call was sent"
    );

    // 4. A malformed header from a careless client: the parser names the problem.
    println!("call 4: grpc-timeout: -1S");
    let (reply, replies) = mpsc::channel();
    let headers = Headers::from([(grpc::HEADER, "-1S".to_owned())]);
    let work = Duration::from_millis(50);
    to_frontend
        .send(Call {
            headers,
            work,
            reply,
        })
        .unwrap();
    let reply = replies.recv().unwrap();
    println!("  -> {:?}: {}", reply.code, reply.detail);
    assert_eq!(reply.code, Code::InvalidArgument);
    assert!(reply.detail.contains("'-' at byte 0"), "{reply:?}");

    // The rounding rule once more: never longer than the time left.
    let left = Duration::from_nanos(1_234_567_891);
    let sent = GrpcTimeout::from_duration(left).unwrap();
    assert!(sent.to_duration() <= left);
    println!("{left:?} left goes out as grpc-timeout: {sent}");

    drop(to_frontend); // the frontend ends, dropping its sender to the backend
    frontend.join().unwrap();
    backend.join().unwrap();
    // The backend handles calls one at a time, so joining it waited for call 2's work: it
    // stopped at the deadline, not after 5 s.
    let total = started.elapsed();
    assert!(total < Duration::from_secs(2), "took {total:?}");
    println!("all calls behaved; {total:?} in all");
}
