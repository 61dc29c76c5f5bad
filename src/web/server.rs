//! The accept loop and each connection: plain HTTP or TLS, the connection cap and timeouts (TLS
//! handshake, request head, request body), the bounds on a request's size, the web
//! configuration file applied to every request (rate limit, basic auth on every path, extra
//! headers), and graceful shutdown.
//!
//! Every request that reaches the exporter is answered. At the connection cap, a newcomer is
//! not read until a slot is free (the rest wait in the kernel's accept queue); a slot is freed
//! for it by closing an idle kept-alive connection once its answer is written, or one that has
//! sent no complete request for [`SLOW_CLIENT_GRACE`], which is answered `503 Service
//! Unavailable` with `Retry-After: 1` before it is closed (see `slots`). Near the cap, answers
//! carry `Connection: close`, so clients reconnect (and wait for a slot) instead of reusing a
//! connection that may be closed to make room.
//!
//! Must not: route (that is `routes`); let idle or slow clients hold every connection slot
//! while a scrape waits; close a connection with a request in progress, or one whose request
//! may be on its way, without an answer.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::header::{CONNECTION, CONTENT_LENGTH, HeaderMap, HeaderValue, RETRY_AFTER};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::routes::{handle, text};
use super::security::{self, WebSecurity};
use super::slots::{Eviction, Phase, RequestGuard, SlotGuard, Slots};
use crate::exporter::Exporter;

/// Connections served at once (see the module documentation for what happens beyond).
pub const MAX_CONNECTIONS: usize = 512;
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
/// How long writing the 503 to a connection that gives its slot up may take.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// After that 503, how long what the client still sends is read and discarded, so that closing
/// does not reset the connection before the client has read the answer.
const REFUSAL_LINGER: Duration = Duration::from_secs(2);
/// On shutdown, how long requests in progress may take to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves until `shutdown` completes, then lets requests in progress finish. `security` is the
/// loaded `--web.config.file`: TLS, basic auth, headers and rate limit; `None` serves plain
/// HTTP to anyone.
pub(crate) async fn run(
    exporter: Arc<Exporter>,
    listener: TcpListener,
    security: Option<Arc<WebSecurity>>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve(exporter, listener, security, MAX_CONNECTIONS, shutdown).await
}

/// [`run`] with another cap than [`MAX_CONNECTIONS`] on the connections served at once (tests
/// use a small one).
pub async fn serve(
    exporter: Arc<Exporter>,
    listener: TcpListener,
    security: Option<Arc<WebSecurity>>,
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let tls = security::acceptor(security.as_ref());
    let slots = Slots::new(max_connections.max(1));
    let front = Arc::new(Front {
        exporter,
        security,
        slots: Arc::clone(&slots),
    });
    let (stop, stopping) = watch::channel(false);
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
        // At the cap, this connection waits unread (and the next ones in the accept queue).
        let permit = match slots.try_free() {
            Some(permit) => permit,
            None => tokio::select! {
                permit = slots.make_room() => permit,
                () = &mut shutdown => break,
            },
        };
        let phase = match tls {
            Some(_) => Phase::Handshake,
            None => Phase::AwaitingHead,
        };
        let (slot, evicted) = slots.open(permit, phase);
        let connection = Connection {
            peer,
            front: Arc::clone(&front),
            slot,
            evicted,
            stopping: stopping.clone(),
        };
        tokio::spawn(connection.run(stream, tls.clone()));
    }
    tracing::info!("shutting down: finishing requests in progress");
    stop.send_replace(true);
    tokio::select! {
        () = slots.all_closed() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!("requests still in progress after {SHUTDOWN_GRACE:?}; closing them");
        }
    }
    Ok(())
}

/// Completes once `flag` is raised; never if its sender is gone without raising it.
async fn raised(flag: &mut watch::Receiver<bool>) {
    if flag.wait_for(|raised| *raised).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// One accepted connection in its slot.
struct Connection {
    peer: SocketAddr,
    front: Arc<Front>,
    /// Released when the connection ends (or once a refusal is written).
    slot: SlotGuard,
    /// Raised when the connection must give its slot up.
    evicted: watch::Receiver<bool>,
    /// Raised when the server shuts down.
    stopping: watch::Receiver<bool>,
}

impl Connection {
    /// From the TLS handshake (when configured) to the end of the connection.
    async fn run(mut self, stream: TcpStream, tls: Option<TlsAcceptor>) {
        let peer = self.peer;
        let Some(acceptor) = tls else {
            return self.serve_http(TokioIo::new(stream)).await;
        };
        let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream));
        let stream = tokio::select! {
            outcome = handshake => match outcome {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => return tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            },
            () = raised(&mut self.evicted) => {
                return tracing::debug!(%peer, "closed a slow TLS handshake to make room");
            }
            () = raised(&mut self.stopping) => return,
        };
        self.front
            .slots
            .set_phase(self.slot.id(), Phase::AwaitingHead);
        self.serve_http(TokioIo::new(stream)).await;
    }

    /// HTTP/1.1 over an established (plain or TLS) stream, until it ends or gives its slot up.
    async fn serve_http<I>(mut self, io: TokioIo<I>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (front, id, peer) = (Arc::clone(&self.front), self.slot.id(), self.peer);
        let service = service_fn(move |request| {
            // Runs as the head is read, so the slot knows a request is in progress at once.
            let slot = front.slots.begin_request(id);
            let front = Arc::clone(&front);
            async move { Ok::<_, Infallible>(front.respond(request, slot).await) }
        });
        let mut connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_buf_size(MAX_READ_BUFFER)
            .max_header_size(MAX_REQUEST_HEAD)
            .max_headers(MAX_REQUEST_HEADERS)
            .serve_connection(io, service);
        let mut closing = false;
        loop {
            tokio::select! {
                outcome = &mut connection => {
                    if let Err(error) = outcome {
                        tracing::debug!(%peer, %error, "connection ended with an error");
                    }
                    return;
                }
                () = raised(&mut self.evicted), if !closing => {
                    closing = true;
                    if self.front.slots.eviction(id) == Eviction::RefuseRaw {
                        break;
                    }
                    tracing::debug!(%peer, "closing an idle connection to make room");
                    std::pin::Pin::new(&mut connection).graceful_shutdown();
                }
                () = raised(&mut self.stopping), if !closing => {
                    closing = true;
                    std::pin::Pin::new(&mut connection).graceful_shutdown();
                }
            }
        }
        // No request arrived: answer whatever may be on its way with a 503, then close.
        tracing::debug!(%peer, "refusing a connection without a request to make room");
        let io = connection.into_parts().io.into_inner();
        let refusal = self.front.raw_refusal();
        refuse(io, &refusal, self.slot).await;
    }
}

/// Writes `refusal` and closes `io`'s sending side, releases `slot`, then reads what the client
/// still sends for a moment so that it can read the answer before the connection goes.
async fn refuse<I: AsyncRead + AsyncWrite + Unpin>(mut io: I, refusal: &[u8], slot: SlotGuard) {
    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
        io.write_all(refusal).await?;
        io.shutdown().await
    })
    .await;
    drop(slot);
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        let mut discard = [0u8; 1024];
        while matches!(io.read(&mut discard).await, Ok(read) if read > 0) {}
    })
    .await;
}

/// The body of [`overloaded`].
const OVERLOADED: &str =
    "Too many connections: the exporter serves a limited number at once. Retry in a moment.\n";

/// The answer to a request on a connection that must give its slot up.
fn overloaded() -> Response<Full<Bytes>> {
    let mut response = text(
        StatusCode::SERVICE_UNAVAILABLE,
        "Too many connections: the exporter serves a limited number at once. Retry in a moment.
"
        .into(),
    );
    let headers = response.headers_mut();
    headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// What every request goes through before routing.
struct Front {
    /// What is served.
    exporter: Arc<Exporter>,
    /// The web configuration file, when given.
    security: Option<Arc<WebSecurity>>,
    /// The connections' slots.
    slots: Arc<Slots>,
}

impl Front {
    /// Answers one request, adding the configured headers to any answer.
    async fn respond(
        &self,
        request: Request<Incoming>,
        slot: RequestGuard,
    ) -> Response<Full<Bytes>> {
        let mut response = if slot.refused {
            overloaded()
        } else {
            self.admit_request(request, &slot).await
        };
        if self.slots.crowded() {
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        security::add_headers(self.security.as_deref(), &mut response);
        response
    }

    /// Rate limit, body bounds and basic auth, then routing.
    async fn admit_request(
        &self,
        request: Request<Incoming>,
        slot: &RequestGuard,
    ) -> Response<Full<Bytes>> {
        let security = self.security.as_deref();
        if let Some(refusal) = security::rate_limited(security) {
            return refusal;
        }
        let (parts, body) = request.into_parts();
        let mut evicted = slot.evicted();
        let read = tokio::select! {
            read = read_small_body(&parts.headers, body) => read,
            () = raised(&mut evicted) => Err(overloaded()),
        };
        if let Err(refusal) = read {
            return refusal;
        }
        if let Some(refusal) = security::unauthorized(security, &parts).await {
            return refusal;
        }
        slot.answering();
        handle(&self.exporter, Request::from_parts(parts, ())).await
    }

    /// [`overloaded`] with the configured headers, as bytes to write on a raw connection.
    fn raw_refusal(&self) -> Vec<u8> {
        let mut response = overloaded();
        security::add_headers(self.security.as_deref(), &mut response);
        let mut raw = String::from("HTTP/1.1 503 Service Unavailable\r\n");
        for (name, value) in response.headers() {
            if let Ok(value) = value.to_str() {
                raw.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        raw.push_str(&format!(
            "content-length: {}\r\n\r\n{OVERLOADED}",
            OVERLOADED.len()
        ));
        raw.into_bytes()
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
