//! A tokio TCP server whose shutdown cancels a tree of per-connection and per-request nodes
//! with deadlines (issue 7, item 6), and both directions of the tokio-util bridge.
//!
//! ```text
//! shutdown: tokio_util CancellationToken (what an application framework hands out)
//!    │ link_from_tokio_with(.., Reason::Shutdown)          (a waker, no task)
//!    ▼
//! server ─┬─ conn 1 ─┬─ request (with_timeout: the client's deadline)
//!         │          └─▶ tokio-util token of a keep-alive task (link_to_tokio: a callback)
//!         ├─ conn 2 ─ ...
//!         └─ conn 3 ─ ...
//! ```
//!
//! The protocol is one line per request: `WORK <ms> <deadline ms>` sleeps `ms` under a
//! deadline node and answers `OK <ms>`, `DEADLINE` or `SHUTDOWN`; `PING` answers `PONG`. A
//! connection cancelled while idle says `BYE <reason>` and closes.
//!
//! Three clients run in the same process: one makes a quick request and one that outlives
//! its deadline, then hangs up; one starts a 20 s request; one sits idle. Shutting down (by
//! cancelling the tokio-util token) stops the accept loop, the running request and the idle
//! connection at once, and the server waits for every connection node to be gone
//! (`server.join()`). The run takes well under a second and asserts every answer.
//!
//! Run: `cargo run -p cutoff-timer --example tokio_server`
#![allow(clippy::std_instead_of_core, missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cutoff::future_ext::FutureCancelExt;
use cutoff::tokio_bridge::{link_from_tokio_with, link_to_tokio};
use cutoff::{CancelSource, CancelToken, Reason};
use cutoff_timer::with_timeout;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What the server reports to the test driver.
#[derive(Debug)]
enum Event {
    /// A request started working for `ms`.
    Started { ms: u64 },
    /// A connection ended: why its node was cancelled (`None`: the client hung up), how many
    /// requests it served, and whether its keep-alive task (tokio-util side) stopped.
    Closed {
        cancelled: Option<Reason>,
        requests: usize,
        keepalive_stopped: bool,
    },
}

/// Accept connections until the server node is cancelled; each gets a child node.
async fn serve(listener: TcpListener, server: CancelToken, events: mpsc::UnboundedSender<Event>) {
    loop {
        let stream = match listener.accept().with_cancel(&server).await {
            Ok(Ok((stream, _))) => stream,
            Ok(Err(e)) => panic!("accept failed: {e}"),
            Err(cancelled) => {
                println!("server: accept loop stopped ({})", cancelled.reason());
                return;
            }
        };
        tokio::spawn(connection(stream, server.child(), events.clone()));
    }
}

/// A library that only understands tokio-util tokens: pings every 10 ms until cancelled.
async fn keepalive(token: CancellationToken, pings: Arc<AtomicUsize>) {
    let mut every = tokio::time::interval(Duration::from_millis(10));
    while token.run_until_cancelled(every.tick()).await.is_some() {
        pings.fetch_add(1, Ordering::Relaxed);
    }
}

/// Serve one connection under its own node `conn`.
async fn connection(stream: TcpStream, conn: CancelSource, events: mpsc::UnboundedSender<Event>) {
    // Closing the connection for any reason cancels its node, so nothing under it lingers.
    let conn = conn.drop_guard();
    let node = conn.source();

    // cutoff -> tokio-util: the keep-alive task stops when this connection's node is cancelled.
    let ka_token = CancellationToken::new();
    let _ka_link = link_to_tokio(&node.token(), ka_token.clone());
    let keepalive = tokio::spawn(keepalive(ka_token, Arc::default()));

    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut requests = 0;
    loop {
        // `next_line` is cancel-safe, so waiting for a line under the node loses nothing.
        let line = match lines.next_line().with_cancel(node).await {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None) | Err(_)) => break, // the client hung up
            Err(cancelled) => {
                let _ = write
                    .write_all(format!("BYE {}\n", cancelled.reason()).as_bytes())
                    .await;
                break;
            }
        };
        requests += 1;
        let reply = match line.split_whitespace().collect::<Vec<_>>()[..] {
            ["PING"] => "PONG".to_owned(),
            ["WORK", ms, deadline] => {
                let (ms, deadline): (u64, u64) = (ms.parse().unwrap(), deadline.parse().unwrap());
                // A per-request node: a child of the connection that also has a deadline.
                let request = with_timeout(node, Duration::from_millis(deadline));
                let _ = events.send(Event::Started { ms });
                let work = tokio::time::sleep(Duration::from_millis(ms));
                match work.with_cancel(&request).await {
                    Ok(()) => format!("OK {ms}"),
                    Err(c) if *c.reason() == Reason::DeadlineExceeded => "DEADLINE".to_owned(),
                    Err(c) if *c.reason() == Reason::Shutdown => "SHUTDOWN".to_owned(),
                    Err(c) => format!("CANCELLED {}", c.reason()),
                }
            }
            _ => "ERR".to_owned(),
        };
        if write
            .write_all(format!("{reply}\n").as_bytes())
            .await
            .is_err()
        {
            break;
        }
    }
    let cancelled = node.reason();
    drop(conn); // cancels the node (if the client hung up) and with it the keep-alive
    let keepalive_stopped = tokio::time::timeout(Duration::from_secs(1), keepalive)
        .await
        .is_ok();
    let _ = events.send(Event::Closed {
        cancelled,
        requests,
        keepalive_stopped,
    });
}

/// A client connection: send a line, read a line.
struct Client {
    lines: tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    write: tokio::net::tcp::OwnedWriteHalf,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let (read, write) = TcpStream::connect(addr).await.unwrap().into_split();
        Client {
            lines: BufReader::new(read).lines(),
            write,
        }
    }

    async fn send(&mut self, line: &str) {
        self.write
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
    }

    async fn recv(&mut self) -> String {
        self.lines.next_line().await.unwrap().expect("a reply")
    }

    async fn call(&mut self, line: &str) -> String {
        self.send(line).await;
        self.recv().await
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let t0 = Instant::now();

    // tokio-util -> cutoff: the application's shutdown token drives the server's tree.
    let shutdown = CancellationToken::new();
    let server = CancelSource::new();
    let _shutdown_link = link_from_tokio_with(&shutdown, &server, Reason::Shutdown);

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let accept_loop = tokio::spawn(serve(listener, server.token(), events_tx));
    println!("listening on {addr}");

    // Client 1: one request in time, one that outlives its deadline, then hang up.
    let mut quick = Client::connect(addr).await;
    assert_eq!(quick.call("WORK 5 1000").await, "OK 5");
    let t = Instant::now();
    assert_eq!(quick.call("WORK 30000 50").await, "DEADLINE");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "the deadline cut the work short"
    );
    drop(quick);
    println!("client 1: OK, then DEADLINE after {:?}", t.elapsed());

    // Client 2 sits idle; client 3 starts a long request.
    let mut idle = Client::connect(addr).await;
    assert_eq!(idle.call("PING").await, "PONG");
    let mut slow = Client::connect(addr).await;
    slow.send("WORK 20000 60000").await;

    // Events so far: client 1's two requests and its close, then client 3's start (the
    // only 20 s request): wait for that before shutting down.
    let mut closed = Vec::new();
    loop {
        match events.recv().await.unwrap() {
            Event::Started { ms: 20000 } => break,
            Event::Started { .. } => {}
            c @ Event::Closed { .. } => closed.push(c),
        }
    }

    // Shut down: one tokio-util cancel reaches every node in the tree.
    let t = Instant::now();
    shutdown.cancel();
    assert_eq!(server.reason(), Some(Reason::Shutdown));
    assert_eq!(slow.recv().await, "SHUTDOWN");
    assert_eq!(idle.recv().await, "BYE shutting down");
    accept_loop.await.unwrap();
    // Every connection node is gone once its task has finished.
    tokio::time::timeout(Duration::from_secs(5), server.join())
        .await
        .expect("all connections closed");
    println!("shutdown: every connection closed in {:?}", t.elapsed());

    while let Some(e) = events.recv().await {
        closed.push(e);
    }
    let mut summary: Vec<(Option<Reason>, usize, bool)> = closed
        .into_iter()
        .map(|e| match e {
            Event::Closed {
                cancelled,
                requests,
                keepalive_stopped,
            } => (cancelled, requests, keepalive_stopped),
            Event::Started { ms } => panic!("unexpected start of {ms} ms"),
        })
        .collect();
    summary.sort_by_key(|(_, requests, _)| *requests);
    println!("connections (reason, requests, keep-alive stopped): {summary:?}");
    assert_eq!(
        summary,
        [
            (Some(Reason::Shutdown), 1, true), // idle: PING
            (Some(Reason::Shutdown), 1, true), // slow: the 20 s request
            (None, 2, true),                   // quick: hung up by the client
        ]
    );

    let elapsed = t0.elapsed();
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    println!("ok in {elapsed:?}");
}
