//! The accept loop and each connection: plain HTTP or TLS, connection limits and timeouts (TLS
//! handshake, request head, request body), the bounds on a request's size, the web
//! configuration file applied to every request (rate limit, basic auth on every path, extra
//! headers), and graceful shutdown.
//!
//! Must not: route (that is `routes`); let idle or slow clients hold every connection slot
//! while a scrape waits (the longest-idle connection gives its slot to a newcomer).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::header::{CONNECTION, CONTENT_LENGTH, HeaderMap, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio_rustls::TlsAcceptor;

use super::routes::{handle, text};
use super::security::{self, WebSecurity};
use crate::exporter::Exporter;

/// Connections served at once. When all are taken, the longest-idle one is closed for a
/// newcomer; when none is idle, newcomers wait in the accept queue.
const MAX_CONNECTIONS: usize = 512;
/// A client must send its request head within this time, on a new connection and between
/// requests on a kept-alive one, or the connection is closed.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A TLS client must finish its handshake within this time.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A request body must arrive within this time.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request body accepted: no route takes one, so anything bigger is refused with 413.
const MAX_REQUEST_BODY: usize = 4 * 1024;
/// Largest request head (request line and headers); bigger ones are refused with 431.
const MAX_REQUEST_HEAD: usize = 32 * 1024;
/// Largest read buffer of a connection.
const MAX_READ_BUFFER: usize = 64 * 1024;
/// Most header fields in a request.
const MAX_REQUEST_HEADERS: usize = 64;

/// Serves until `shutdown` completes, then lets requests in progress finish. `security` is the
/// loaded `--web.config.file`: TLS, basic auth, headers and rate limit; `None` serves plain
/// HTTP to anyone.
pub(crate) async fn run(
    exporter: Arc<Exporter>,
    listener: TcpListener,
    security: Option<Arc<WebSecurity>>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let tls = security::acceptor(security.as_ref());
    let connections = Arc::new(Connections::new(MAX_CONNECTIONS));
    let front = Arc::new(Front {
        exporter,
        security,
        connections: Arc::clone(&connections),
    });
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and similar: wait instead of spinning.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let admitted = tokio::select! {
            admitted = connections.admit() => admitted,
            () = &mut shutdown => break,
        };
        let front = Arc::clone(&front);
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let Admitted { id, evicted, slot } = admitted;
            tokio::select! {
                () = serve_connection(stream, peer, tls, front, watcher, id) => {}
                _ = evicted => {
                    tracing::debug!(%peer, "closed an idle connection to make room for a new one");
                }
            }
            drop(slot);
        });
    }
    tracing::info!("shutting down: finishing requests in progress");
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(10)) => {
            tracing::warn!("requests still in progress after 10s; closing them");
        }
    }
    Ok(())
}

/// One connection, from the TLS handshake (when configured) to its end.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    front: Arc<Front>,
    watcher: Watcher,
    id: u64,
) {
    match tls {
        None => serve_http(TokioIo::new(stream), peer, front, watcher, id).await,
        Some(acceptor) => {
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => serve_http(TokioIo::new(stream), peer, front, watcher, id).await,
                Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
    }
}

/// HTTP/1.1 over an established (plain or TLS) stream.
async fn serve_http<I>(
    io: TokioIo<I>,
    peer: SocketAddr,
    front: Arc<Front>,
    watcher: Watcher,
    id: u64,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let front = Arc::clone(&front);
        async move { Ok::<_, Infallible>(front.respond(request, id).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_READ_BUFFER)
        .max_header_size(MAX_REQUEST_HEAD)
        .max_headers(MAX_REQUEST_HEADERS)
        .serve_connection(io, service);
    if let Err(error) = watcher.watch(connection).await {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

/// What every request goes through before routing.
struct Front {
    /// What is served.
    exporter: Arc<Exporter>,
    /// The web configuration file, when given.
    security: Option<Arc<WebSecurity>>,
    /// To mark a connection busy while its request is handled.
    connections: Arc<Connections>,
}

impl Front {
    /// Answers one request on connection `id`, adding the configured headers to any answer.
    async fn respond(&self, request: Request<Incoming>, id: u64) -> Response<Full<Bytes>> {
        let mut response = self.admit_request(request, id).await;
        security::add_headers(self.security.as_deref(), &mut response);
        response
    }

    /// Rate limit, body bounds and basic auth, then routing.
    async fn admit_request(&self, request: Request<Incoming>, id: u64) -> Response<Full<Bytes>> {
        let security = self.security.as_deref();
        if let Some(refusal) = security::rate_limited(security) {
            return refusal;
        }
        let (parts, body) = request.into_parts();
        if let Err(refusal) = read_small_body(&parts.headers, body).await {
            return refusal;
        }
        if let Some(refusal) = security::unauthorized(security, &parts).await {
            return refusal;
        }
        let _busy = self.connections.busy(id);
        handle(&self.exporter, Request::from_parts(parts, ())).await
    }
}

/// Reads and discards a request body of at most [`MAX_REQUEST_BODY`] bytes within
/// [`BODY_READ_TIMEOUT`]; anything else is answered (and the connection closed).
async fn read_small_body(headers: &HeaderMap, body: Incoming) -> Result<(), Response<Full<Bytes>>> {
    let closing = |status: StatusCode, message: &str| {
        let mut response = text(status, message.to_owned());
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        response
    };
    let too_large = || {
        closing(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request body too large: the exporter's paths take no body.\n",
        )
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_REQUEST_BODY as u64) {
        return Err(too_large());
    }
    if body.is_end_stream() {
        return Ok(());
    }
    match tokio::time::timeout(
        BODY_READ_TIMEOUT,
        Limited::new(body, MAX_REQUEST_BODY).collect(),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) if error.is::<LengthLimitError>() => Err(too_large()),
        Ok(Err(_)) => Err(closing(
            StatusCode::BAD_REQUEST,
            "The request body could not be read.\n",
        )),
        Err(_) => Err(closing(
            StatusCode::REQUEST_TIMEOUT,
            "The request body did not arrive in time.\n",
        )),
    }
}

/// Open connections: one permit each, and whether each is idle, so that when all permits are
/// taken a newcomer can take the slot of the connection that has been idle longest. A
/// connection is idle from its accept (through the TLS handshake, the request head and
/// authentication) until a request is routed, and again after its answer.
struct Connections {
    /// [`MAX_CONNECTIONS`] permits.
    permits: Arc<Semaphore>,
    /// Every open connection by id.
    slots: Mutex<Slots>,
}

#[derive(Default)]
struct Slots {
    /// Id of the next connection.
    next_id: u64,
    /// Open connections.
    open: HashMap<u64, Slot>,
}

struct Slot {
    /// Since when the connection has had no request in progress; `None` while one is.
    idle_since: Option<Instant>,
    /// Closes the connection; taken when it is evicted.
    evict: Option<oneshot::Sender<()>>,
}

/// An admitted connection: its id, the signal that evicts it, and its slot (released on drop).
struct Admitted {
    /// Identifies the connection to [`Connections::busy`].
    id: u64,
    /// Completes when the connection must close to make room.
    evicted: oneshot::Receiver<()>,
    /// Keep until the connection ends.
    slot: SlotGuard,
}

/// Holds the permit and removes the slot when the connection ends.
struct SlotGuard {
    id: u64,
    connections: Arc<Connections>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.connections.lock().open.remove(&self.id);
    }
}

/// Marks a connection busy while a request is handled.
struct Busy<'a> {
    id: u64,
    connections: &'a Connections,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.connections.lock().open.get_mut(&self.id) {
            slot.idle_since = Some(Instant::now());
        }
    }
}

impl Connections {
    fn new(limit: usize) -> Connections {
        Connections {
            permits: Arc::new(Semaphore::new(limit)),
            slots: Mutex::new(Slots::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a new connection: a free one, else the longest-idle connection's, else the
    /// next one released.
    async fn admit(self: &Arc<Self>) -> Admitted {
        let permit = match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                self.evict_longest_idle();
                Arc::clone(&self.permits)
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed")
            }
        };
        let (evict, evicted) = oneshot::channel();
        let mut slots = self.lock();
        let id = slots.next_id;
        slots.next_id += 1;
        slots.open.insert(
            id,
            Slot {
                idle_since: Some(Instant::now()),
                evict: Some(evict),
            },
        );
        drop(slots);
        Admitted {
            id,
            evicted,
            slot: SlotGuard {
                id,
                connections: Arc::clone(self),
                _permit: permit,
            },
        }
    }

    /// Closes the connection idle for longest, if any is idle; returns whether one was.
    fn evict_longest_idle(&self) -> bool {
        let mut slots = self.lock();
        let oldest = slots
            .open
            .iter()
            .filter(|(_, slot)| slot.evict.is_some())
            .filter_map(|(id, slot)| slot.idle_since.map(|since| (since, *id)))
            .min();
        let Some((_, id)) = oldest else {
            return false;
        };
        slots
            .open
            .get_mut(&id)
            .and_then(|slot| slot.evict.take())
            .is_some_and(|evict| evict.send(()).is_ok())
    }

    /// Marks connection `id` busy until the guard is dropped.
    fn busy(&self, id: u64) -> Busy<'_> {
        if let Some(slot) = self.lock().open.get_mut(&id) {
            slot.idle_since = None;
        }
        Busy {
            id,
            connections: self,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_newcomer_takes_the_slot_of_the_longest_idle_connection() {
        let connections = Arc::new(Connections::new(2));
        let mut working = connections.admit().await;
        let _request = connections.busy(working.id);
        let idle = connections.admit().await;
        // Like the connection task: close when told to, which releases the slot.
        let idle_task = tokio::spawn(async move {
            let Admitted { evicted, slot, .. } = idle;
            let _ = evicted.await;
            drop(slot);
        });
        let newcomer = tokio::time::timeout(Duration::from_secs(5), connections.admit())
            .await
            .expect("the idle connection's slot is handed over");
        idle_task.await.unwrap();
        assert!(
            working.evicted.try_recv().is_err(),
            "a busy connection stays"
        );
        assert_eq!(connections.lock().open.len(), 2);
        // With every connection busy, nothing is evicted: newcomers wait for a free slot.
        let _second = connections.busy(newcomer.id);
        assert!(!connections.evict_longest_idle());
    }
}
