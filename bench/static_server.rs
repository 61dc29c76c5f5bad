//! The ceiling for serving `/metrics`: a minimal hyper server that answers every request with
//! the same bytes from memory, on the same stack as the exporter (tokio's default multi-thread
//! runtime, hyper HTTP/1.1 with keep-alive, a `Full<Bytes>` body and the exposition content
//! type). Whatever the exporter spends beyond this is its own work per scrape.
//!
//! Must not: compute anything per request besides cloning a `Bytes` handle.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Serves the contents of `file` on `addr` until the process is killed.
pub fn run(addr: SocketAddr, file: &Path) -> std::io::Result<()> {
    let body = Bytes::from(std::fs::read(file)?);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(addr).await?;
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(_) => continue,
            };
            let body = body.clone();
            let service = service_fn(move |_request| {
                let mut response = Response::new(Full::new(body.clone()));
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static(kraken_exporter::metrics::CONTENT_TYPE),
                );
                async move { Ok::<_, Infallible>(response) }
            });
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
