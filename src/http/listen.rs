//! Serving the application on a socket, with every connection bounded:
//! a client must send a request head within `server.header_timeout`, an
//! idle keep-alive connection is closed after `server.idle_timeout`, a
//! head may be at most `server.max_header_bytes`, at most
//! `server.max_connections` connections are served at once (more are
//! answered 503 with `Retry-After` and closed), and on shutdown in-flight
//! requests get `server.shutdown_timeout` before the rest is cut off.
//!
//! The request deadline and the in-flight request cap live in the router
//! (`http::router`), so they hold for embedded use too.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt as _;

use crate::Live;

/// At most this many over-the-limit connections are being answered 503 at
/// once; beyond that they are closed without an answer.
const MAX_REFUSING: usize = 256;

/// What every connection is held to.
#[derive(Clone, Debug)]
struct Bounds {
    header_timeout: Duration,
    idle_timeout: Duration,
    max_header_bytes: usize,
}

/// A connection asked to close (idle, or shutting down) gets this long to
/// finish the answer it is writing; a client that does not read it is cut
/// off.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// Open connections per client network, for `server.max_connections_per_client`.
#[derive(Default)]
struct PerClient(std::sync::Mutex<std::collections::HashMap<u128, usize>>);

/// One open connection of a client network; dropping it counts it out.
struct ClientConnection {
    table: Arc<PerClient>,
    network: u128,
}

impl PerClient {
    fn open(table: &Arc<PerClient>, network: u128, cap: usize) -> Option<ClientConnection> {
        let mut open = table.0.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(network).or_default();
        if *count >= cap {
            return None;
        }
        *count += 1;
        Some(ClientConnection {
            table: table.clone(),
            network,
        })
    }
}

impl Drop for ClientConnection {
    fn drop(&mut self) {
        let mut open = self.table.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.network) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.network);
            }
        }
    }
}

/// The answer to a connection beyond `server.max_connections`.
const TOO_MANY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\ncache-control: no-store\r\nconnection: close\r\ncontent-length: 91\r\n\r\n{\"errors\":[{\"code\":\"UNAVAILABLE\",\"message\":\"too many connections; try again in a second\"}]}";

/// What a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Serves {
    /// Every route, over HTTPS when `server.tls_*` is set (`server.listen`).
    Everything,
    /// Only the operational endpoints (`/healthz`, `/readyz`, `/metrics`,
    /// `/jwks`), plain HTTP, for probes and Prometheus
    /// (`server.ops_listen`).
    Operations,
}

/// Serves until `shutdown` completes, then drains in-flight requests for
/// at most `server.shutdown_timeout`.
pub async fn serve<F>(live: Arc<Live>, listener: TcpListener, shutdown: F) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    serve_only(live, listener, Serves::Everything, shutdown).await
}

/// [`serve`], for what `serves` says.
pub async fn serve_only<F>(
    live: Arc<Live>,
    listener: TcpListener,
    serves: Serves,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let drain_for = live.load().config.server.timeouts.shutdown;
    let (stop, stopping) = watch::channel(false);
    let door = Door::new(live, serves, stopping);
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => door.open(&mut tasks, stream, peer),
                Err(e) => {
                    // Out of file descriptors, or a connection reset
                    // before it was accepted: pause instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = stop.send(true);
    let drained = tokio::time::timeout(drain_for, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = tasks.len(),
            "shutdown deadline reached: closing the connections still open"
        );
        tasks.abort_all();
    }
    Ok(())
}

/// What a listener lets in: connections within the caps, each served
/// with the application and its bounds; the others answered 503.
struct Door {
    live: Arc<Live>,
    serves: Serves,
    app: axum::Router,
    bounds: Arc<Bounds>,
    connections: Arc<Semaphore>,
    refusing: Arc<Semaphore>,
    per_client: Arc<PerClient>,
    per_client_cap: usize,
    stopping: watch::Receiver<bool>,
}

impl Door {
    fn new(live: Arc<Live>, serves: Serves, stopping: watch::Receiver<bool>) -> Self {
        let state = live.load();
        let server = &state.config.server;
        let app = match serves {
            Serves::Everything => crate::http::router(live.clone()),
            Serves::Operations => crate::http::ops_router(live.clone()),
        };
        Self {
            serves,
            app,
            bounds: Arc::new(Bounds {
                header_timeout: server.timeouts.header,
                idle_timeout: server.timeouts.idle,
                max_header_bytes: server.limits.max_header_bytes,
            }),
            connections: Arc::new(Semaphore::new(server.limits.max_connections)),
            refusing: Arc::new(Semaphore::new(MAX_REFUSING)),
            per_client: Arc::new(PerClient::default()),
            per_client_cap: server.limits.max_connections_per_client,
            stopping,
            live: live.clone(),
        }
    }

    /// Serves the connection from `peer` in a task of `tasks`, or refuses
    /// it when the listener or its client network is at its cap.
    fn open(&self, tasks: &mut JoinSet<()>, stream: tokio::net::TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let network = crate::net::network_of(peer.ip());
        let state = self.live.load();
        // A trusted proxy's connections carry many clients (each counted
        // by the throttle under its forwarded address): the per-client cap
        // would make them one.
        let trusted = &state.config.server.trusted_proxies;
        let cap = if crate::net::is_trusted(peer.ip(), trusted) {
            usize::MAX
        } else {
            self.per_client_cap
        };
        let admitted = self
            .connections
            .clone()
            .try_acquire_owned()
            .ok()
            .and_then(|permit| Some((permit, PerClient::open(&self.per_client, network, cap)?)));
        let Some((permit, client)) = admitted else {
            state.metrics.connection_refused();
            self.refuse(stream);
            return;
        };
        let (app, bounds, stopping) =
            (self.app.clone(), self.bounds.clone(), self.stopping.clone());
        // Each connection takes the certificate current when it arrives;
        // open ones keep theirs.
        let tls = state
            .tls
            .clone()
            .filter(|_| self.serves == Serves::Everything);
        tasks.spawn(async move {
            match tls {
                None => serve_connection(stream, peer, app, &bounds, stopping).await,
                Some(tls) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                    let handshake = acceptor.accept(stream);
                    match tokio::time::timeout(bounds.header_timeout, handshake).await {
                        Ok(Ok(stream)) => {
                            serve_connection(stream, peer, app, &bounds, stopping).await
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            drop(client);
            drop(permit);
        });
    }

    /// Answers 503 (at most `MAX_REFUSING` at once, the rest are closed).
    fn refuse(&self, mut stream: tokio::net::TcpStream) {
        if let Ok(permit) = self.refusing.clone().try_acquire_owned() {
            tokio::spawn(async move {
                let answer = stream.write_all(TOO_MANY);
                let _ = tokio::time::timeout(Duration::from_secs(1), answer).await;
                drop(permit);
            });
        }
    }
}

/// One HTTP/1.1 connection, held to its bounds.
async fn serve_connection<I>(
    io: I,
    peer: SocketAddr,
    app: axum::Router,
    bounds: &Bounds,
    mut stopping: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let io = Tracked {
        inner: io,
        activity: activity.clone(),
    };
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mut request = request.map(axum::body::Body::new);
        request.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(request)
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(bounds.header_timeout)
        .max_buf_size(bounds.max_header_bytes)
        .max_header_size(bounds.max_header_bytes)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    // Set once the connection is asked to close: the answer being written
    // gets DRAIN_GRACE, then the connection is dropped.
    let mut cut_off: Option<Instant> = None;
    loop {
        let idle_until = activity.last() + bounds.idle_timeout;
        let deadline = cut_off.unwrap_or(idle_until);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep_until(deadline) => {
                if cut_off.is_some() {
                    tracing::debug!(%peer, "connection did not finish after it was asked to close: cut off");
                    return;
                }
                if activity.last() + bounds.idle_timeout <= Instant::now() {
                    connection.as_mut().graceful_shutdown();
                    cut_off = Some(Instant::now() + DRAIN_GRACE);
                }
            }
            _ = stopping.changed(), if cut_off.is_none() => {
                connection.as_mut().graceful_shutdown();
                cut_off = Some(Instant::now() + DRAIN_GRACE);
            }
        }
    }
}

/// When a connection last read or wrote, in milliseconds since it opened.
struct Activity {
    opened: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.opened.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.opened + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// An IO that notes its activity, for the idle timeout.
struct Tracked<I> {
    inner: I,
    activity: Arc<Activity>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Tracked<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Tracked<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
