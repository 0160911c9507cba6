//! The HTTP listener of `ledger serve`: accepts TCP connections and serves each one
//! with hyper's HTTP/1.1 server, within limits that keep the process answering when
//! clients misbehave.
//!
//! It replaces `axum::serve`, which has no such limits: about 1,000 idle connections
//! used up the 1,024 open files a systemd service gets by default, accepts then
//! failed with `EMFILE` (retried silently, once a second), and `/healthz` failed 10
//! probes of 10 (issue 9).
//!
//! # The limits
//!
//! - **Maximum open connections** (`--max-connections`, default 768). Every
//!   connection is an open file; the cap keeps the listener below the process's
//!   open-files limit (`ulimit -n`, `LimitNOFILE=`), leaving room for the stores.
//! - **Header-read timeout** (`--header-read-timeout-secs`, default 10 s). A
//!   connection must deliver a complete request head within this time of being
//!   accepted, or, on a kept-alive connection, of the first byte of its next request.
//!   This closes slowloris connections (a head trickled a byte at a time) and
//!   connections that never send anything.
//! - **Idle timeout** (`--idle-timeout-secs`, default 75 s). A kept-alive connection
//!   with no new request for this long is closed; so is one whose response has not
//!   moved a byte for this long (a client that stopped reading it). It is
//!   longer than the 60 s for which reverse proxies and load balancers usually keep
//!   an idle upstream connection (nginx, AWS ALB), so that they close first: a proxy
//!   reusing a connection the server is closing fails that request (a 502).
//!
//! From a request's head to its response no connection clock runs: the request
//! timeout (`--request-timeout-secs`, in `ledger_api`) bounds that part. A request
//! is in progress until its response body has been written (an audit export streams
//! for a while), and such a connection is never reclaimed (below).
//!
//! # When every connection slot is taken
//!
//! The loop has accepted one more connection and finds no free slot. It closes the
//! connection that has been waiting longest without a request in progress (a
//! silent, slowloris or idle kept-alive one), and the newcomer takes its slot. If all
//! connections are handling a request, the loop waits for one to finish and stops
//! accepting meanwhile, so later connections wait in the kernel's accept queue
//! ([`bind`] asks for [`BACKLOG`], 4,096; the kernel caps it at `net.core.somaxconn`)
//! instead of costing open files. nginx does the same when it runs out of
//! connections (it reuses idle keep-alive ones).
//!
//! The two plain choices fail the case that matters, a flood of connections that send
//! nothing useful. Stopping accepting alone lets the flood fill every slot and then
//! the accept queue, and a health probe or a real client waits behind it, a
//! header-read timeout per round of slots (tens of seconds with the defaults), or has
//! its SYN dropped once the queue is full: with it, 3 of 13 `/healthz` probes got no
//! answer within 3 s in `tests/connection_limits.rs` (2 s header timeout). Accepting
//! and closing at once fails every newcomer, the probe included, until the flood
//! times out by itself. Reclaiming the longest-waiting connection serves a client
//! that sends its request promptly (the same test: every probe answered, the worst
//! in under 1 s, with 3,000 hostile connections reopened as fast as they were
//! closed); what gets closed is what has waited longest doing nothing, and a
//! connection handling a request is never closed to make room.
//!
//! # Why its own clock rather than hyper's `header_read_timeout`
//!
//! hyper (1.x) starts its header timer whenever it begins waiting for a request head:
//! at accept, and again right after each response. On a kept-alive connection it is
//! therefore also the idle timeout, so a 10 s header timeout closes every connection
//! idle for 10 s, and a reverse proxy keeping upstream connections open longer races
//! the close. hyper-util's automatic HTTP/1-or-2 builder (the one `axum::serve`
//! uses) also reads the protocol preface before hyper's timer starts, so a connection
//! that sends nothing was never timed out at all. Here, a wrapper around the socket
//! notes when bytes move, a wrapper around the service notes when a request starts,
//! when its response is ready and when its body is done, and a watchdog in each
//! connection's task closes it when the clock of its phase runs out ([`deadline`]).
//!
//! HTTP/1.1 only: `axum::serve` also spoke cleartext HTTP/2 with prior knowledge,
//! which no client of the ledger uses (browsers only speak HTTP/2 over TLS, and a TLS
//! proxy in front speaks HTTP/1.1 to it) and which would need limits of its own
//! (streams, pings, frames). A request head is limited to 64 KiB (431 beyond) and
//! the read buffer to 64 KiB (hyper's default is about 400 KiB), so a full house of
//! slow heads holds about 100 MB at worst.
//!
//! # Accept errors
//!
//! `EMFILE`, `ENFILE`, `ENOBUFS`, `ECONNABORTED`...: logged at most once a second
//! with the number of errors not logged since, and the loop sleeps before the next
//! accept, from 10 ms doubling up to 1 s while errors go on (an `EMFILE` leaves the
//! connection in the queue, so retrying at once would spin).
//!
//! # Open files
//!
//! The process needs `max_connections + 1` files for connections (the one accepted
//! while waiting for a slot), the listener, and the files the stores keep open
//! (about 25 with the embedded store; a few more with PostgreSQL's pools). At start
//! the listener counts its open files and warns if the open-files limit leaves less
//! than [`HEADROOM`] spare. `deploy/ledger.service` sets `LimitNOFILE=65536`, so
//! there `--max-connections` is what binds.
//!
//! # Shutdown
//!
//! When `shutdown` completes the loop stops accepting and closes the listening
//! socket, idle and silent connections are closed, requests in flight finish (hyper's
//! graceful shutdown), and [`serve`] returns when the last connection is closed. The
//! clocks keep running meanwhile, so a half-sent head or a client that stopped
//! reading cannot hold the shutdown longer than its timeout.
//!
//! Peer addresses are never read: IP addresses are personal data. Logs hold counts,
//! phases and error kinds only.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{bail, Result};
use axum::Router;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::Service as _;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Open files to keep spare beyond connections and what is open at start.
pub const HEADROOM: u64 = 64;
/// Largest request head (answered 431 beyond), and the largest read buffer.
const MAX_HEAD: usize = 64 * 1024;
/// Connections the kernel may queue for `accept` (capped by `net.core.somaxconn`).
pub const BACKLOG: u32 = 4096;
/// While all slots are taken, how often the loop looks again for one to reclaim.
const RECLAIM_RETRY: Duration = Duration::from_millis(50);
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The connection limits of the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Limits {
    pub const DEFAULT_MAX_CONNECTIONS: usize = 768;
    pub const DEFAULT_HEADER_READ_TIMEOUT_SECS: u64 = 10;
    pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 75;

    /// The limits from the configured values (flag, environment or config file),
    /// defaults for those not set. Zero is refused: it would serve nothing.
    pub fn new(
        max_connections: Option<usize>,
        header_read_timeout_secs: Option<u64>,
        idle_timeout_secs: Option<u64>,
    ) -> Result<Self> {
        let max_connections = max_connections.unwrap_or(Self::DEFAULT_MAX_CONNECTIONS);
        let header = header_read_timeout_secs.unwrap_or(Self::DEFAULT_HEADER_READ_TIMEOUT_SECS);
        let idle = idle_timeout_secs.unwrap_or(Self::DEFAULT_IDLE_TIMEOUT_SECS);
        if max_connections == 0 {
            bail!("max_connections must be at least 1");
        }
        if header == 0 {
            bail!("header_read_timeout_secs must be at least 1");
        }
        if idle == 0 {
            bail!("idle_timeout_secs must be at least 1");
        }
        Ok(Self {
            max_connections,
            header_read_timeout: Duration::from_secs(header),
            idle_timeout: Duration::from_secs(idle),
        })
    }
}

/// What a connection is doing, for its clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    /// Waiting for a request head, or reading one: the header-read clock runs.
    Head = 0,
    /// A request is being handled: no clock (the request timeout applies).
    Busy = 1,
    /// Its response is being sent: the idle clock runs from the last byte written
    /// (a client that stops reading is cut).
    Sending = 2,
    /// Waiting for the next request: the idle clock runs.
    Idle = 3,
}

impl Phase {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Head,
            1 => Self::Busy,
            2 => Self::Sending,
            _ => Self::Idle,
        }
    }

    /// A request is in progress: the connection is not reclaimed.
    fn in_request(self) -> bool {
        matches!(self, Self::Busy | Self::Sending)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// When a connection is to be closed, in milliseconds on the listener's clock:
/// `since` is when its phase began, `last_io` when a byte last moved.
fn deadline(phase: Phase, since: u64, last_io: u64, limits: &Limits) -> Option<u64> {
    match phase {
        Phase::Head => Some(since.saturating_add(millis(limits.header_read_timeout))),
        Phase::Busy => None,
        Phase::Sending | Phase::Idle => Some(
            since
                .max(last_io)
                .saturating_add(millis(limits.idle_timeout)),
        ),
    }
}

/// One connection's clock, shared by its socket wrapper, its service wrapper, its
/// watchdog, and the registry (which reads it to pick a connection to reclaim).
#[derive(Debug)]
struct Conn {
    epoch: Instant,
    phase: AtomicU8,
    /// Milliseconds since `epoch` when the current phase began.
    since: AtomicU64,
    /// Milliseconds since `epoch` when a byte was last read or written.
    last_io: AtomicU64,
    /// Set by the accept loop to take this connection's slot.
    reclaim: AtomicBool,
    /// Wakes the watchdog: phase changed or reclaimed.
    wake: Notify,
}

impl Conn {
    fn new(epoch: Instant) -> Self {
        let now = millis(epoch.elapsed());
        Self {
            epoch,
            phase: AtomicU8::new(Phase::Head as u8),
            since: AtomicU64::new(now),
            last_io: AtomicU64::new(now),
            reclaim: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        millis(self.epoch.elapsed())
    }

    fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Relaxed))
    }

    fn enter(&self, phase: Phase) {
        self.since.store(self.now(), Ordering::Relaxed);
        self.phase.store(phase as u8, Ordering::Relaxed);
        self.wake.notify_one();
    }

    fn on_read(&self) {
        let now = self.now();
        self.last_io.store(now, Ordering::Relaxed);
        // The first byte after a response starts the next request's head.
        if self
            .phase
            .compare_exchange(
                Phase::Idle as u8,
                Phase::Head as u8,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            self.since.store(now, Ordering::Relaxed);
            self.wake.notify_one();
        }
    }

    fn on_write(&self) {
        self.last_io.store(self.now(), Ordering::Relaxed);
    }

    fn deadline(&self, limits: &Limits) -> Option<u64> {
        deadline(
            self.phase(),
            self.since.load(Ordering::Relaxed),
            self.last_io.load(Ordering::Relaxed),
            limits,
        )
    }

    /// Since when it has been waiting for a request; `None` while one is in
    /// progress.
    fn waiting_since(&self) -> Option<u64> {
        if self.phase().in_request() {
            return None;
        }
        Some(
            self.since
                .load(Ordering::Relaxed)
                .max(self.last_io.load(Ordering::Relaxed)),
        )
    }
}

/// The open connections, to pick one to reclaim when all slots are taken.
#[derive(Debug)]
struct Registry {
    epoch: Instant,
    open: Mutex<(u64, HashMap<u64, Arc<Conn>>)>,
}

impl Registry {
    fn register(self: &Arc<Self>) -> (Arc<Conn>, Registered) {
        let conn = Arc::new(Conn::new(self.epoch));
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let id = open.0;
        open.0 += 1;
        open.1.insert(id, conn.clone());
        let registered = Registered {
            registry: self.clone(),
            id,
        };
        (conn, registered)
    }

    /// Asks the connection waiting longest for a request to close, and returns it;
    /// `None` if every connection is handling one.
    fn reclaim_longest_waiting(&self) -> Option<Arc<Conn>> {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let victim = open
            .1
            .values()
            .filter(|c| !c.reclaim.load(Ordering::Relaxed))
            .filter_map(|c| c.waiting_since().map(|t| (t, c)))
            .min_by_key(|(t, _)| *t);
        let (_, c) = victim?;
        c.reclaim.store(true, Ordering::Relaxed);
        c.wake.notify_one();
        Some(c.clone())
    }
}

/// Removes its connection from the registry when the connection's task ends.
#[derive(Debug)]
struct Registered {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut open = self
            .registry
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.1.remove(&self.id);
    }
}

/// The socket, noting on the connection's clock when bytes move.
#[derive(Debug)]
struct Watched {
    io: TcpStream,
    conn: Arc<Conn>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.on_read();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.on_write();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.on_write();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A request in progress: `Busy` from its head to its response, then `Sending`
/// while the response body is written; `Idle` once dropped (with the body, after
/// its last frame, or with the request if the connection went away).
#[derive(Debug)]
struct InRequest(Arc<Conn>);

impl InRequest {
    fn enter(conn: &Arc<Conn>) -> Self {
        conn.enter(Phase::Busy);
        Self(conn.clone())
    }
}

impl Drop for InRequest {
    fn drop(&mut self) {
        self.0.enter(Phase::Idle);
    }
}

/// A response body that keeps its request in progress until hyper drops it.
#[derive(Debug)]
struct Sending<B> {
    body: B,
    _request: InRequest,
}

impl<B: Body + Unpin> Body for Sending<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// How a connection ended.
#[derive(Debug)]
enum End {
    /// hyper finished with it: the client closed, `Connection: close`, shutdown, or
    /// an HTTP error (bad request, head too large).
    Served(Result<(), hyper::Error>),
    /// Its clock ran out in this phase.
    TimedOut(Phase),
    Reclaimed,
}

/// Drives a connection until it ends or its clock runs out (then drops it, which
/// closes the socket).
async fn watchdog<F>(served: F, conn: &Conn, limits: &Limits) -> End
where
    F: Future<Output = Result<(), hyper::Error>>,
{
    tokio::pin!(served);
    loop {
        if conn.reclaim.load(Ordering::Relaxed) {
            if !conn.phase().in_request() {
                return End::Reclaimed;
            }
            // A request began since it was picked: decline (the loop picks another).
            conn.reclaim.store(false, Ordering::Relaxed);
        }
        let deadline = conn.deadline(limits);
        if deadline.is_some_and(|d| d <= conn.now()) {
            return End::TimedOut(conn.phase());
        }
        let expiry = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(conn.epoch + Duration::from_millis(d)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = &mut served => return End::Served(r),
            () = expiry => {}
            () = conn.wake.notified() => {}
        }
    }
}

/// Logs at most once a second; counts what it did not log.
#[derive(Debug, Default)]
struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// `Some(n)` if this event is to be logged, `n` events having been suppressed
    /// since the last one logged.
    fn admit(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// Open files now and the soft open-files limit (Linux; `None` elsewhere).
fn open_files() -> Option<(u64, u64)> {
    let open = std::fs::read_dir("/proc/self/fd").ok()?.count();
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    // "unlimited" does not parse: no limit to warn about.
    Some((u64::try_from(open).ok()?, soft.parse().ok()?))
}

/// A free connection slot, waiting for one if all are taken: the connection
/// waiting longest for a request is asked to close (see the module doc); if every
/// connection is handling a request, it waits for one to end.
async fn take_slot(
    slots: &Arc<Semaphore>,
    registry: &Registry,
    at_limit: &mut Throttle,
    limits: &Limits,
) -> OwnedSemaphorePermit {
    if let Ok(p) = slots.clone().try_acquire_owned() {
        return p;
    }
    let mut victim = registry.reclaim_longest_waiting();
    if let Some(not_logged) = at_limit.admit(Instant::now()) {
        if victim.is_some() {
            warn!(
                max_connections = limits.max_connections,
                not_logged,
                "connection limit reached: closing the connection waiting longest for a \
                 request to admit a new one"
            );
        } else {
            warn!(
                max_connections = limits.max_connections,
                not_logged,
                "connection limit reached with every connection handling a request: new \
                 connections wait in the accept queue"
            );
        }
    }
    loop {
        tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => return p,
                // Never closed, so never here.
                Err(_) => std::future::pending::<()>().await,
            },
            () = tokio::time::sleep(RECLAIM_RETRY) => {
                // The victim declined (a request began meanwhile), or every
                // connection was busy: look again.
                let pending = victim.as_ref().is_some_and(|v| v.reclaim.load(Ordering::Relaxed));
                if !pending {
                    victim = registry.reclaim_longest_waiting();
                }
            }
        }
    }
}

/// Serves one connection in its own task, under its clock and the graceful shutdown;
/// the slot is freed when it ends.
fn serve_connection(
    stream: TcpStream,
    permit: OwnedSemaphorePermit,
    registry: &Arc<Registry>,
    app: &Router,
    http: &http1::Builder,
    graceful: &GracefulShutdown,
    limits: Limits,
) {
    let (conn, registered) = registry.register();
    let app = TowerToHyperService::new(app.clone());
    let service = {
        let conn = conn.clone();
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let request = InRequest::enter(&conn);
            let response = app.call(req);
            async move {
                let response = response.await?;
                request.0.enter(Phase::Sending);
                Ok::<_, Infallible>(response.map(|body| Sending {
                    body,
                    _request: request,
                }))
            }
        })
    };
    let io = TokioIo::new(Watched {
        io: stream,
        conn: conn.clone(),
    });
    let served = graceful.watch(http.serve_connection(io, service));
    tokio::spawn(async move {
        match watchdog(served, &conn, &limits).await {
            End::Served(Ok(())) => {}
            End::Served(Err(e)) => debug!(error = %e, "connection ended with an error"),
            End::TimedOut(Phase::Head) => {
                debug!("connection closed: no complete request head in time");
            }
            End::TimedOut(phase) => debug!(?phase, "connection closed: idle"),
            End::Reclaimed => debug!("connection closed: its slot went to a new connection"),
        }
        drop(registered);
        drop(permit);
    });
}

/// Binds the listening socket with a [`BACKLOG`]-deep accept queue.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restart can bind while old connections linger.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Serves `app` on `listener` within `limits` until `shutdown` completes, then
/// finishes the requests in flight and returns.
pub async fn serve<F>(listener: TcpListener, app: Router, limits: Limits, shutdown: F)
where
    F: Future<Output = ()>,
{
    info!(
        max_connections = limits.max_connections,
        header_read_timeout_secs = limits.header_read_timeout.as_secs(),
        idle_timeout_secs = limits.idle_timeout.as_secs(),
        "connection limits"
    );
    if let Some((open, limit)) = open_files() {
        let needed = open + limits.max_connections as u64 + 1 + HEADROOM;
        if needed > limit {
            warn!(
                max_connections = limits.max_connections,
                open_files = open,
                open_files_limit = limit,
                "the open-files limit leaves too little room for max_connections: raise it \
                 (LimitNOFILE=, ulimit -n) or lower --max-connections"
            );
        }
    }

    let epoch = Instant::now();
    let registry = Arc::new(Registry {
        epoch,
        open: Mutex::new((0, HashMap::new())),
    });
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    // No hyper header timer: the connection clock does it (see the module doc).
    http.header_read_timeout(None)
        .max_header_size(MAX_HEAD)
        .max_buf_size(MAX_HEAD);

    let mut accept_errors = Throttle::default();
    let mut at_limit = Throttle::default();
    let mut backoff = BACKOFF_MIN;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            r = listener.accept() => r,
        };
        // The peer address is personal data: not kept, not logged.
        let stream = match accepted {
            Ok((stream, _)) => {
                backoff = BACKOFF_MIN;
                stream
            }
            Err(e) => {
                if let Some(not_logged) = accept_errors.admit(Instant::now()) {
                    warn!(
                        error = %e,
                        kind = ?e.kind(),
                        not_logged,
                        retry_in_ms = millis(backoff),
                        "accepting a connection failed"
                    );
                }
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        let permit = tokio::select! {
            () = &mut shutdown => break,
            p = take_slot(&slots, &registry, &mut at_limit, &limits) => p,
        };
        serve_connection(stream, permit, &registry, &app, &http, &graceful, limits);
    }

    drop(listener);
    if accept_errors.suppressed > 0 || at_limit.suppressed > 0 {
        warn!(
            accept_errors = accept_errors.suppressed,
            limit_reached = at_limit.suppressed,
            "events not logged since the last line of their kind"
        );
    }
    info!(
        open_connections = graceful.count(),
        "stopped accepting connections; finishing in-flight requests"
    );
    graceful.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::new(Some(10), Some(10), Some(60)).unwrap()
    }

    #[test]
    fn each_phase_has_its_clock() {
        let l = limits();
        // A head must be complete 10 s after it began, however bytes trickle in.
        assert_eq!(deadline(Phase::Head, 1_000, 9_000, &l), Some(11_000));
        // Handling a request: no connection clock.
        assert_eq!(deadline(Phase::Busy, 1_000, 9_000, &l), None);
        // Sending a response, or idle after it: 60 s after the last byte moved.
        assert_eq!(deadline(Phase::Sending, 1_000, 5_000, &l), Some(65_000));
        assert_eq!(deadline(Phase::Idle, 1_000, 500, &l), Some(61_000));
        assert_eq!(deadline(Phase::Idle, 1_000, 5_000, &l), Some(65_000));
    }

    #[test]
    fn the_first_byte_after_a_response_starts_the_head_clock() {
        let c = Conn::new(Instant::now());
        c.enter(Phase::Busy);
        c.enter(Phase::Idle);
        c.since.store(0, Ordering::Relaxed);
        c.on_read();
        assert_eq!(c.phase(), Phase::Head);
        assert!(c.since.load(Ordering::Relaxed) == c.last_io.load(Ordering::Relaxed));
        // More bytes of the same head do not restart it.
        c.since.store(0, Ordering::Relaxed);
        c.on_read();
        assert_eq!(c.since.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn reclaims_the_longest_waiting_connection_never_a_busy_one() {
        let r = Arc::new(Registry {
            epoch: Instant::now(),
            open: Mutex::new((0, HashMap::new())),
        });
        let (busy, _b) = r.register();
        let (sending, _s) = r.register();
        sending.enter(Phase::Sending);
        sending.since.store(0, Ordering::Relaxed);
        sending.last_io.store(0, Ordering::Relaxed);
        let (old, old_entry) = r.register();
        let (new, _n) = r.register();
        busy.enter(Phase::Busy);
        busy.since.store(0, Ordering::Relaxed);
        busy.last_io.store(0, Ordering::Relaxed);
        old.since.store(5, Ordering::Relaxed);
        old.last_io.store(5, Ordering::Relaxed);
        new.since.store(9, Ordering::Relaxed);
        new.last_io.store(9, Ordering::Relaxed);
        assert!(r
            .reclaim_longest_waiting()
            .is_some_and(|c| Arc::ptr_eq(&c, &old)));
        assert!(old.reclaim.load(Ordering::Relaxed));
        assert!(r
            .reclaim_longest_waiting()
            .is_some_and(|c| Arc::ptr_eq(&c, &new)));
        assert!(
            r.reclaim_longest_waiting().is_none(),
            "only requests in progress are left"
        );
        assert!(!busy.reclaim.load(Ordering::Relaxed));
        assert!(!sending.reclaim.load(Ordering::Relaxed));
        drop(old_entry);
        assert_eq!(r.open.lock().unwrap().1.len(), 3);
    }

    #[tokio::test]
    async fn a_reclaimed_connection_closes_unless_a_request_began() {
        let l = limits();
        let never = std::future::pending::<Result<(), hyper::Error>>;
        let c = Conn::new(Instant::now());
        c.reclaim.store(true, Ordering::Relaxed);
        let end = tokio::time::timeout(Duration::from_secs(1), watchdog(never(), &c, &l)).await;
        assert!(matches!(end, Ok(End::Reclaimed)));

        let c = Conn::new(Instant::now());
        c.enter(Phase::Busy);
        c.reclaim.store(true, Ordering::Relaxed);
        let end = tokio::time::timeout(Duration::from_millis(100), watchdog(never(), &c, &l)).await;
        assert!(end.is_err(), "a busy connection is not closed");
        assert!(!c.reclaim.load(Ordering::Relaxed), "it declined");
    }

    #[test]
    fn throttle_logs_once_a_second_and_counts_the_rest() {
        let t0 = Instant::now();
        let mut t = Throttle::default();
        assert_eq!(t.admit(t0), Some(0));
        assert_eq!(t.admit(t0 + Duration::from_millis(10)), None);
        assert_eq!(t.admit(t0 + Duration::from_millis(900)), None);
        assert_eq!(t.admit(t0 + Duration::from_millis(1_000)), Some(2));
        assert_eq!(t.admit(t0 + Duration::from_millis(1_100)), None);
    }

    #[test]
    fn zero_limits_are_refused_and_defaults_fill_in() {
        assert!(Limits::new(Some(0), None, None).is_err());
        assert!(Limits::new(None, Some(0), None).is_err());
        assert!(Limits::new(None, None, Some(0)).is_err());
        let d = Limits::new(None, None, None).unwrap();
        assert_eq!(d.max_connections, 768);
        assert_eq!(d.header_read_timeout, Duration::from_secs(10));
        assert_eq!(d.idle_timeout, Duration::from_secs(75));
    }
}
