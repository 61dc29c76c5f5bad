//! A pass-through proxy between an exporter and its simulated Kraken that counts the
//! `EAPI:Invalid nonce` answers Kraken gives, so the count does not depend on how the exporter
//! classifies them.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, HOST};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::Tally;

/// Serves the proxy to `upstream` on 127.0.0.1; returns its URL. Counts into
/// `invalid_nonces_restarted` when `restarted`, else into `invalid_nonces`.
pub(crate) async fn start(upstream: String, tally: Arc<Tally>, restarted: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    // Longer than any call the exporter waits for: a hang ends when the exporter gives up.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (http, upstream, tally) = (http.clone(), upstream.clone(), Arc::clone(&tally));
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let (http, upstream, tally) =
                        (http.clone(), upstream.clone(), Arc::clone(&tally));
                    async move {
                        let invalid_nonces = match restarted {
                            true => &tally.invalid_nonces_restarted,
                            false => &tally.invalid_nonces,
                        };
                        let answer = forward(&http, &upstream, invalid_nonces, request).await;
                        Ok::<_, Infallible>(answer)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    url
}

/// Sends `request` on to `upstream` and brings its answer back, counting invalid nonces.
async fn forward(
    http: &reqwest::Client,
    upstream: &str,
    invalid_nonces: &AtomicU64,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|body| body.to_bytes())
        .unwrap_or_default();
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut outgoing = http
        .request(parts.method.clone(), format!("{upstream}{target}"))
        .body(body);
    for (name, value) in &parts.headers {
        if name != HOST && name != CONTENT_LENGTH {
            outgoing = outgoing.header(name, value);
        }
    }
    let Ok(answer) = outgoing.send().await else {
        let mut failed = Response::new(Full::new(Bytes::from_static(b"proxy: no answer")));
        *failed.status_mut() = hyper::StatusCode::BAD_GATEWAY;
        return failed;
    };
    let status = answer.status();
    let headers = answer.headers().clone();
    let body = answer.bytes().await.unwrap_or_default();
    if body
        .windows(b"EAPI:Invalid nonce".len())
        .any(|window| window == b"EAPI:Invalid nonce")
    {
        invalid_nonces.fetch_add(1, Ordering::Relaxed);
    }
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    for (name, value) in &headers {
        if name != CONTENT_LENGTH && name != hyper::header::TRANSFER_ENCODING {
            response.headers_mut().insert(name, value.clone());
        }
    }
    response
}
