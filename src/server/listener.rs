//! The accept loop: every inbound connection bounded in number, in header time and in
//! idleness, so no outsider can hold the file descriptors live callers need.
//!
//! After mini-redis's `server.rs`: a semaphore caps open connections (HTTP and the media
//! WebSockets they upgrade into: the permit travels with the socket). Unlike mini-redis, a
//! full house does not simply turn newcomers away, because then a slowloris flood would lock
//! out the provider's next webhook: the oldest connection with no request in flight is
//! closed to make room. Attackers' sockets are old and idle; a provider's request is new and
//! busy for milliseconds.

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};
use tower::ServiceExt;

use super::log_limit::LogLimit;
use crate::metrics::Metrics;

/// Kernel send buffer per connection. A media stream sends ~10 kB/s; this holds seconds of
/// it, so a peer that stops reading is noticed in seconds rather than after minutes of
/// autotuned buffering.
const SEND_BUFFER: usize = 64 * 1024;
/// How long a newcomer waits for an evicted connection's slot before it is refused.
const EVICT_WAIT: Duration = Duration::from_millis(250);

#[derive(Debug, Clone)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub header_read: Duration,
    pub idle: Duration,
}

/// Raises the soft open-files limit to the hard limit and returns the connection cap that
/// leaves room for what live calls open themselves (REST clients, the store, the model).
pub fn fit_to_fd_limit(wanted: usize) -> usize {
    let nofile = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise RLIMIT_NOFILE; keeping the connection cap as set");
            return wanted;
        }
    };
    let room = (nofile.saturating_sub(64) * 3 / 4) as usize;
    let cap = wanted.min(room).max(8);
    tracing::info!(nofile, max_connections = cap, "open-files limit");
    cap
}

/// Connections that could make room for a newcomer, oldest first.
#[derive(Default)]
struct Registry {
    next: u64,
    conns: BTreeMap<u64, (Arc<AtomicUsize>, oneshot::Sender<()>)>,
}

impl Registry {
    /// Closes the oldest connection with no request in flight; false if there is none.
    fn evict_one(&mut self) -> bool {
        let victim = self
            .conns
            .iter()
            .find(|(_, (busy, _))| busy.load(Ordering::Acquire) == 0)
            .map(|(id, _)| *id);
        match victim.and_then(|id| self.conns.remove(&id)) {
            Some((_, tx)) => tx.send(()).is_ok(),
            None => false,
        }
    }
}

static CAP_LOG: LogLimit = LogLimit::new();
static ACCEPT_LOG: LogLimit = LogLimit::new();

/// Serves `app` on `listener` until `shutdown` turns true; then stops accepting and asks
/// open HTTP connections to finish. Upgraded media sockets live on; their call tasks see
/// the same signal and hand their callers over.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let registry = Arc::new(Mutex::new(Registry::default()));
    let base = Instant::now();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning on an error that repeats.
                metrics.inc_connections("accept_error");
                if let Some(suppressed) = ACCEPT_LOG.permit() {
                    tracing::error!(error = %e, suppressed, "accept failed");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                let evicted = registry
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .evict_one();
                if evicted {
                    metrics.inc_connections("evicted");
                }
                tokio::time::timeout(EVICT_WAIT, slots.clone().acquire_owned())
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
        };
        let Some(permit) = permit else {
            metrics.inc_connections("refused");
            if let Some(suppressed) = CAP_LOG.permit() {
                tracing::warn!(
                    %peer,
                    max_connections = limits.max_connections,
                    suppressed,
                    "connection cap reached and every connection is busy: refusing"
                );
            }
            drop(stream);
            continue;
        };
        metrics.inc_connections("accepted");
        let _ = stream.set_nodelay(true);
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER);
        let (evict_tx, evict_rx) = oneshot::channel();
        let busy = Arc::new(AtomicUsize::new(0));
        let id = {
            let mut r = registry.lock().unwrap_or_else(|p| p.into_inner());
            r.next += 1;
            let id = r.next;
            r.conns.insert(id, (busy.clone(), evict_tx));
            id
        };
        let conn = Conn {
            app: app.clone(),
            limits: limits.clone(),
            metrics: metrics.clone(),
            busy,
            registry: registry.clone(),
            id,
            peer,
        };
        let io = Tracked::new(stream, base, permit, metrics.clone());
        tokio::spawn(conn.run(io, evict_rx, shutdown.clone()));
    }
    tracing::info!("stopped accepting connections");
}

struct Conn {
    app: Router,
    limits: ConnLimits,
    metrics: Arc<Metrics>,
    /// Requests in flight on this connection; only an idle connection may be evicted.
    busy: Arc<AtomicUsize>,
    registry: Arc<Mutex<Registry>>,
    id: u64,
    peer: std::net::SocketAddr,
}

impl Conn {
    async fn run(
        self,
        io: Tracked,
        mut evict: oneshot::Receiver<()>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let last = io.last.clone();
        let base = io.base;
        let app = self.app.clone();
        let busy = self.busy.clone();
        let peer = self.peer;
        let service =
            hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let app = app.clone();
                let guard = Busy::new(busy.clone());
                async move {
                    let mut req = req.map(axum::body::Body::new);
                    // The console limits failed logins per client address.
                    req.extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    let response = app.oneshot(req).await;
                    drop(guard);
                    response
                }
            });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read)
            .keep_alive(true);
        let conn = builder
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        tokio::pin!(conn);
        let mut watchdog = tokio::time::interval(Duration::from_millis(500));
        watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let idle_ms = self.limits.idle.as_millis() as u64;
        let mut shutting_down = false;
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    break;
                }
                _ = &mut evict => {
                    tracing::debug!("connection evicted to make room");
                    break;
                }
                _ = watchdog.tick() => {
                    let quiet = (base.elapsed().as_millis() as u64)
                        .saturating_sub(last.load(Ordering::Relaxed));
                    if quiet >= idle_ms && self.busy.load(Ordering::Acquire) == 0 {
                        self.metrics.inc_connections("idle_closed");
                        break;
                    }
                }
                _ = shutdown.wait_for(|s| *s), if !shutting_down => {
                    shutting_down = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
        self.registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .conns
            .remove(&self.id);
    }
}

/// Marks a request in flight for as long as it is handled.
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn new(n: Arc<AtomicUsize>) -> Busy {
        n.fetch_add(1, Ordering::AcqRel);
        Busy(n)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A TCP stream that notes when bytes last moved, and holds its connection slot for as long
/// as it lives (through a WebSocket upgrade too).
struct Tracked {
    inner: TcpStream,
    base: Instant,
    last: Arc<AtomicU64>,
    _slot: OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
}

impl Tracked {
    fn new(
        inner: TcpStream,
        base: Instant,
        slot: OwnedSemaphorePermit,
        metrics: Arc<Metrics>,
    ) -> Self {
        metrics.add_open_connections(1);
        let last = Arc::new(AtomicU64::new(base.elapsed().as_millis() as u64));
        Tracked {
            inner,
            base,
            last,
            _slot: slot,
            metrics,
        }
    }

    fn touch(&self) {
        self.last
            .store(self.base.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.metrics.add_open_connections(-1);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
