//! The HTTP front: the exposition, the landing page, health and readiness.
//!
//! Owns routing, the scrape deadline taken from `X-Prometheus-Scrape-Timeout-Seconds`,
//! connection limits and graceful shutdown.
//! Must not: call Kraken directly (it asks [`crate::refresh::Account`] for a status, which may
//! refresh), or answer anything but 200 on the metrics path because Kraken failed.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::exporter::Exporter;
use crate::metrics;
use crate::refresh::{AccountStatus, format_amount};

/// Scrape timeout assumed when Prometheus sends no header (its default `scrape_timeout`).
const DEFAULT_SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
/// Subtracted from the scrape timeout so the answer is on the wire before Prometheus gives up.
const SCRAPE_TIMEOUT_OFFSET: Duration = Duration::from_millis(500);
/// Longest a scrape ever waits for Kraken, whatever the header says.
const MAX_SCRAPE_WAIT: Duration = Duration::from_secs(120);
/// Connections served at once; more wait in the accept queue.
const MAX_CONNECTIONS: usize = 512;
/// A client must send its request headers within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves until `shutdown` completes, then lets requests in progress finish.
pub async fn run(
    exporter: Arc<Exporter>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => permit.expect("semaphore never closed"),
            () = &mut shutdown => break,
        };
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
        let exporter = Arc::clone(&exporter);
        let service = service_fn(move |request| {
            let exporter = Arc::clone(&exporter);
            async move { Ok::<_, Infallible>(handle(&exporter, request).await) }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_buf_size(64 * 1024)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
            drop(permit);
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

/// Routes one request.
pub async fn handle(exporter: &Exporter, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    let is_metrics = path == exporter.telemetry_path;
    let allowed: &'static str = match path {
        _ if is_metrics => "GET, HEAD",
        "/" | "/-/healthy" | "/-/ready" | "/probe" => "GET, HEAD",
        "/-/reload" => "POST",
        _ => {
            return text(
                StatusCode::NOT_FOUND,
                format!("Not found. Metrics are at {}\n", exporter.telemetry_path),
            );
        }
    };
    let method = request.method();
    let head = method == Method::HEAD;
    let permitted = match allowed {
        "POST" => method == Method::POST,
        _ => head || method == Method::GET,
    };
    if !permitted {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("Only {allowed} is allowed here.\n"),
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static(allowed));
        return response;
    }
    let mut response = match path {
        _ if is_metrics => {
            let deadline =
                Instant::now() + scrape_wait(request.headers().get(SCRAPE_TIMEOUT_HEADER));
            exposition(exporter.render(deadline, None).await)
        }
        "/probe" => {
            let set = exporter.accounts();
            match probe_account(request.uri().query()) {
                Some(name) if set.find(&name).is_some() => {
                    let deadline =
                        Instant::now() + scrape_wait(request.headers().get(SCRAPE_TIMEOUT_HEADER));
                    exposition(exporter.render(deadline, Some(&name)).await)
                }
                Some(name) => text(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "Unknown account {:?}: /probe?account= accepts only the names in the configuration.\n",
                        name.chars().take(100).collect::<String>()
                    ),
                ),
                None => text(
                    StatusCode::BAD_REQUEST,
                    "Missing parameter: use /probe?account=NAME with a configured account name.\n"
                        .into(),
                ),
            }
        }
        "/" => {
            let statuses = exporter.statuses();
            let mut response =
                Response::new(Full::new(Bytes::from(landing_page(exporter, &statuses))));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            response
        }
        "/-/healthy" => text(StatusCode::OK, "Healthy.\n".into()),
        "/-/reload" => match exporter.request_reload().await {
            Ok(()) => text(StatusCode::OK, "Configuration reloaded.\n".into()),
            Err(error) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("Reload refused; the previous configuration keeps running: {error}\n"),
            ),
        },
        _ => match exporter.first_unready() {
            None => text(StatusCode::OK, "Ready.\n".into()),
            Some(name) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "Not ready: balances of account {name:?} have not been fetched successfully yet.\n"
                ),
            ),
        },
    };
    if head {
        *response.body_mut() = Full::new(Bytes::new());
    }
    response
}

/// The header Prometheus sends with its scrape timeout.
const SCRAPE_TIMEOUT_HEADER: &str = "X-Prometheus-Scrape-Timeout-Seconds";

/// A 200 answer with the exposition and its explicit content type.
fn exposition(body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(metrics::CONTENT_TYPE),
    );
    response
}

/// The `account` parameter of `/probe`, decoded. Only names are accepted, never URLs: the
/// caller checks it against the configured accounts.
fn probe_account(query: Option<&str>) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(key, _)| key == "account")
        .map(|(_, value)| value.into_owned())
        .filter(|name| !name.is_empty())
}

/// How long a scrape may wait for Kraken: Prometheus's timeout header minus a margin, capped.
pub fn scrape_wait(header: Option<&HeaderValue>) -> Duration {
    let timeout = header
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|secs| secs.is_finite() && *secs > 0.0)
        .map(|secs| Duration::from_secs_f64(secs.min(MAX_SCRAPE_WAIT.as_secs_f64())))
        .unwrap_or(DEFAULT_SCRAPE_TIMEOUT);
    // Very short timeouts keep half of themselves rather than going to zero.
    timeout
        .saturating_sub(SCRAPE_TIMEOUT_OFFSET)
        .max(timeout / 2)
        .min(MAX_SCRAPE_WAIT)
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Escapes text for HTML element content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page at `/`: version, a banner in demo mode, each account's status and balances.
fn landing_page(exporter: &Exporter, statuses: &[AccountStatus]) -> String {
    let path = escape(&exporter.telemetry_path);
    let mut page = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Kraken exporter</title>\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:1.5em}}\
         td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}td.n{{text-align:right;font-family:monospace}}\
         .down{{color:#b00}}.up{{color:#070}}.demo{{background:#ffd;border:1px solid #cc0;padding:.6em}}</style></head>\n\
         <body><h1>Kraken exporter</h1><p>Version {} (revision {}). Metrics: <a href=\"{path}\">{path}</a> · \
         <a href=\"/-/healthy\">/-/healthy</a> · <a href=\"/-/ready\">/-/ready</a></p>\n",
        escape(exporter.build.version),
        escape(exporter.build.revision),
    );
    if exporter.demo {
        page.push_str(
            "<p class=\"demo\"><strong>Demo mode:</strong> these balances come from a simulated Kraken \
             inside this process. They are not real and move over time.</p>\n",
        );
    }
    for status in statuses {
        let state = if status.up {
            "<span class=\"up\">up</span>".to_owned()
        } else {
            "<span class=\"down\">down</span>".to_owned()
        };
        let last_success = status.last_success.map_or_else(
            || "never".to_owned(),
            |at| {
                let age = SystemTime::now().duration_since(at).unwrap_or_default();
                format!("{}s ago", age.as_secs())
            },
        );
        let last_error = status.last_error.as_ref().map_or_else(
            || "none".to_owned(),
            |(reason, message)| format!("{} ({})", reason.as_str(), escape(message)),
        );
        let _ = writeln!(
            page,
            "<h2>Account {}</h2><p>Status: {state} · last success: {last_success} · last error: {last_error}</p>",
            escape(&status.name)
        );
        match &status.balances {
            None => page.push_str("<p>No current balances.</p>\n"),
            Some(snapshot) => {
                page.push_str("<table><tr><th>Asset</th><th>Code</th><th>Total</th><th>Hold</th><th>Available</th></tr>\n");
                for b in &snapshot.balances {
                    let hold = b.hold.map_or_else(|| "–".to_owned(), format_amount);
                    let available = b.available().map_or_else(|| "–".to_owned(), format_amount);
                    let _ = writeln!(
                        page,
                        "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{hold}</td><td class=\"n\">{available}</td></tr>",
                        escape(&b.asset),
                        escape(&b.code),
                        format_amount(b.total)
                    );
                }
                page.push_str("</table>\n");
            }
        }
    }
    page.push_str("</body></html>\n");
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrape_wait_honours_the_header_minus_a_margin() {
        let header = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(
            scrape_wait(Some(&header("10"))),
            Duration::from_millis(9500)
        );
        assert_eq!(scrape_wait(Some(&header("1"))), Duration::from_millis(500));
        assert_eq!(
            scrape_wait(Some(&header("0.2"))),
            Duration::from_millis(100)
        );
        assert_eq!(
            scrape_wait(Some(&header("3600"))),
            MAX_SCRAPE_WAIT - SCRAPE_TIMEOUT_OFFSET
        );
        assert_eq!(scrape_wait(None), Duration::from_millis(9500));
        for bad in ["", "abc", "-1", "0", "NaN", "inf"] {
            assert_eq!(
                scrape_wait(Some(&header(bad))),
                Duration::from_millis(9500),
                "{bad}"
            );
        }
    }

    #[test]
    fn escape_neutralises_markup() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
