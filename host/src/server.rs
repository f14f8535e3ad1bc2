//! The HTTP server under the API: a connection limit that protects file descriptors, header
//! and idle timeouts that close abandoned connections, and bodies read before a request
//! takes one of the processing slots, so slow uploads can't starve anyone.
//!
//! Written on hyper's connection API rather than `axum::serve`, which has no connection
//! limit and no idle timeout.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

use crate::telemetry::Metrics;

/// How long a shutdown waits for in-flight requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The server's limits (`ingest.*` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Open connections at most; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Time for a client to send a request's headers.
    pub header_timeout: Duration,
    /// Time a connection may sit between requests before it is closed.
    pub idle_timeout: Duration,
    /// Time for a client to send a request's body, from its headers on.
    pub body_timeout: Duration,
    /// Largest body as sent (before decompression).
    pub max_body_bytes: usize,
    /// Bytes of request bodies held in memory at once, over all requests.
    pub max_buffered_body_bytes: usize,
}

/// Bodies in memory: a budget of bytes shared by every request.
pub struct BodyBudget {
    limits: ServerLimits,
    bytes: Arc<Semaphore>,
}

impl BodyBudget {
    /// A budget of `limits.max_buffered_body_bytes`.
    pub fn new(limits: ServerLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            bytes: Arc::new(Semaphore::new(
                limits.max_buffered_body_bytes.min(Semaphore::MAX_PERMITS),
            )),
        })
    }
}

/// A refusal while reading a body.
fn refuse(status: StatusCode, message: String) -> Response {
    // The codes of `ApiError`'s answers, so clients see one error shape.
    let code = match status {
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "request too large",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        _ => "invalid",
    };
    let body = serde_json::json!({ "code": code, "message": message });
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// Middleware: reads the whole body within `body_timeout` and the byte budget, then hands
/// the request on with the body in memory. It runs outside the processing slots, so a
/// slow upload holds a connection and the bytes it sent, never a slot.
pub async fn buffer_body(
    State(budget): State<Arc<BodyBudget>>,
    request: Request,
    next: Next,
) -> Response {
    let limits = budget.limits;
    let (parts, mut body) = request.into_parts();
    let deadline = tokio::time::Instant::now() + limits.body_timeout;
    let mut buffered = Vec::new();
    let mut held: Option<tokio::sync::OwnedSemaphorePermit> = None;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => {
                return refuse(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "request body not received within {} ms (ingest.body_timeout_ms); {} bytes arrived",
                        limits.body_timeout.as_millis(),
                        buffered.len()
                    ),
                );
            }
            Ok(None) => break,
            Ok(Some(Err(error))) => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    format!("could not read the request body: {error}"),
                );
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if buffered.len() + data.len() > limits.max_body_bytes {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "request body exceeds the limit of {} bytes",
                    limits.max_body_bytes
                ),
            );
        }
        let n = u32::try_from(data.len()).unwrap_or(u32::MAX);
        match budget.bytes.clone().try_acquire_many_owned(n) {
            Ok(permit) => match &mut held {
                Some(h) => h.merge(permit),
                None => held = Some(permit),
            },
            Err(_) => {
                return refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many request bodies in memory (ingest.max_buffered_body_bytes); retry later".into(),
                );
            }
        }
        buffered.extend_from_slice(&data);
    }
    let response = next
        .run(Request::from_parts(parts, Body::from(buffered)))
        .await;
    drop(held);
    response
}

/// What one connection is doing, for its idle timeout.
struct Activity {
    started: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds since `started` of the last request's end.
    last_ms: AtomicU64,
}

impl Activity {
    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Acquire));
        Some(self.started.elapsed().saturating_sub(last))
    }

    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Release);
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets in-flight requests
/// finish.
///
/// # Errors
/// Never for a single connection (accept errors, such as running out of file descriptors,
/// are logged and retried); the result is for the signature's sake.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and friends: back off a moment rather than spin or stop serving.
                    tracing::warn!(%error, "Accepting a connection failed.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            metrics.connections_refused.inc();
            tracing::debug!(%peer, limit = limits.max_connections, "Connection refused: at the connection limit.");
            drop(stream);
            continue;
        };
        metrics.connections_open.inc();
        let (app, metrics, stop) = (app.clone(), metrics.clone(), stop_rx.clone());
        tokio::spawn(async move {
            connection(stream, peer, app, limits, stop).await;
            metrics.connections_open.dec();
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection task holds a permit: all of them back means all have finished.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(SHUTDOWN_GRACE, connections.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("Connections still open after the shutdown grace period; closing them.");
    }
    Ok(())
}

/// Serves one connection until the client closes it, it sits idle too long, or the server
/// stops.
async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: ServerLimits,
    mut stop: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity {
        started: Instant::now(),
        in_flight: AtomicUsize::new(0),
        last_ms: AtomicU64::new(0),
    });
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let (app, activity) = (app.clone(), activity.clone());
            activity.in_flight.fetch_add(1, Ordering::AcqRel);
            async move {
                let response = app.oneshot(request.map(Body::new)).await;
                activity.touch();
                activity.in_flight.fetch_sub(1, Ordering::AcqRel);
                response
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    let mut conn = pin!(conn);
    let tick = (limits.idle_timeout / 4).max(Duration::from_millis(10));
    let mut closing = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "Connection ended with an error.");
                }
                return;
            }
            _ = stop.changed(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep(tick), if !closing => {
                if activity.idle_for().is_some_and(|idle| idle >= limits.idle_timeout) {
                    tracing::debug!(%peer, "Closing an idle connection.");
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
