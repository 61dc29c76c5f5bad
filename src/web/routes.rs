//! Routing: the exposition at the telemetry path, `/probe?account=`, the landing page,
//! `/-/healthy`, `/-/ready` and `/-/reload`, and the scrape deadline taken from
//! `X-Prometheus-Scrape-Timeout-Seconds`.
//!
//! Must not: call Kraken directly (it asks the [`Exporter`], which asks each
//! [`crate::account::Account`] for a status and may refresh), or answer anything but 200 on the
//! metrics path because Kraken failed.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{ACCEPT_ENCODING, ALLOW, CONTENT_ENCODING, CONTENT_TYPE, HeaderValue, VARY};
use hyper::{Method, Request, Response, StatusCode};
use tokio::time::Instant;

use super::landing::landing_page;
use crate::exporter::Exporter;
use crate::metrics;

/// Scrape timeout assumed when Prometheus sends no header (its default `scrape_timeout`).
const DEFAULT_SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
/// Subtracted from the scrape timeout so the answer is on the wire before Prometheus gives up.
const SCRAPE_TIMEOUT_OFFSET: Duration = Duration::from_millis(500);
/// Longest a scrape ever waits for Kraken, whatever the header says.
const MAX_SCRAPE_WAIT: Duration = Duration::from_secs(120);
/// The header Prometheus sends with its scrape timeout.
const SCRAPE_TIMEOUT_HEADER: &str = "X-Prometheus-Scrape-Timeout-Seconds";

/// The paths served.
#[derive(Clone, Copy)]
enum Route {
    /// The telemetry path (`/metrics` unless configured otherwise).
    Metrics,
    /// `/probe?account=NAME`.
    Probe,
    /// `/`.
    Landing,
    /// `/-/healthy`.
    Healthy,
    /// `/-/ready`.
    Ready,
    /// `/-/reload`.
    Reload,
}

impl Route {
    /// The route of `path`, or `None` for a path not served.
    fn of(path: &str, telemetry_path: &str) -> Option<Route> {
        Some(match path {
            _ if path == telemetry_path => Route::Metrics,
            "/" => Route::Landing,
            "/-/healthy" => Route::Healthy,
            "/-/ready" => Route::Ready,
            "/probe" => Route::Probe,
            "/-/reload" => Route::Reload,
            _ => return None,
        })
    }

    /// The methods answered, as the `Allow` header writes them.
    fn allowed(self) -> &'static str {
        match self {
            Route::Reload => "POST",
            _ => "GET, HEAD",
        }
    }

    fn permits(self, method: &Method) -> bool {
        match self {
            Route::Reload => method == Method::POST,
            _ => method == Method::HEAD || method == Method::GET,
        }
    }
}

/// Routes one request (its body has already been read and discarded).
pub(super) async fn handle<B>(exporter: &Exporter, request: Request<B>) -> Response<Full<Bytes>> {
    let Some(route) = Route::of(request.uri().path(), &exporter.telemetry_path) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("Not found. Metrics are at {}\n", exporter.telemetry_path),
        );
    };
    if !route.permits(request.method()) {
        let allowed = route.allowed();
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("Only {allowed} is allowed here.\n"),
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static(allowed));
        return response;
    }
    let mut response = match route {
        Route::Metrics => {
            let deadline = scrape_deadline(&request);
            exposition(&request, exporter.render(deadline, None).await)
        }
        Route::Probe => probe(exporter, &request).await,
        Route::Landing => landing(exporter),
        Route::Healthy => text(StatusCode::OK, "Healthy.\n".into()),
        Route::Reload => reload(exporter).await,
        Route::Ready => ready(exporter),
    };
    if request.method() == Method::HEAD {
        *response.body_mut() = Full::new(Bytes::new());
    }
    response
}

/// When a scrape must be answered, from the request's timeout header.
fn scrape_deadline<B>(request: &Request<B>) -> Instant {
    Instant::now() + scrape_wait(request.headers().get(SCRAPE_TIMEOUT_HEADER))
}

/// `/probe?account=NAME`: the exposition of one configured account.
async fn probe<B>(exporter: &Exporter, request: &Request<B>) -> Response<Full<Bytes>> {
    let set = exporter.accounts();
    match probe_account(request.uri().query()) {
        Some(name) if set.find(&name).is_some() => {
            let deadline = scrape_deadline(request);
            exposition(request, exporter.render(deadline, Some(&name)).await)
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
            "Missing parameter: use /probe?account=NAME with a configured account name.\n".into(),
        ),
    }
}

/// `/`: the landing page, from the statuses known (it starts no refresh).
fn landing(exporter: &Exporter) -> Response<Full<Bytes>> {
    let statuses = exporter.statuses_with_assets();
    let mut response = Response::new(Full::new(Bytes::from(landing_page(exporter, &statuses))));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// `POST /-/reload`, when `--web.enable-lifecycle` allows it (403 otherwise, as Prometheus
/// answers).
async fn reload(exporter: &Exporter) -> Response<Full<Bytes>> {
    if !exporter.lifecycle_enabled() {
        return text(
            StatusCode::FORBIDDEN,
            "Lifecycle API is not enabled: start the exporter with --web.enable-lifecycle to reload through POST /-/reload, or send it SIGHUP.\n".into(),
        );
    }
    match exporter.request_reload().await {
        Ok(()) => text(StatusCode::OK, "Configuration reloaded.\n".into()),
        Err(error) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Reload refused; the previous configuration keeps running: {error}\n"),
        ),
    }
}

/// `/-/ready`: 503 until every account has fetched its balances once.
fn ready(exporter: &Exporter) -> Response<Full<Bytes>> {
    match exporter.first_unready() {
        None => text(StatusCode::OK, "Ready.\n".into()),
        Some(name) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "Not ready: balances of account {name:?} have not been fetched successfully yet.\n"
            ),
        ),
    }
}

/// A 200 answer with the exposition and its explicit content type.
fn exposition<B>(request: &Request<B>, body: Bytes) -> Response<Full<Bytes>> {
    let gzipped = accepts_gzip(request).then(|| gzip(&body)).flatten();
    let compressed = gzipped.is_some();
    let mut response = Response::new(Full::new(gzipped.unwrap_or(body)));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(metrics::CONTENT_TYPE),
    );
    headers.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
    if compressed {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

/// Whether the client takes a gzip-compressed answer: `Accept-Encoding` names `gzip` (or `*`)
/// with a q-value above 0. Prometheus asks for gzip on every scrape.
fn accepts_gzip<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or_default().trim();
            let quality = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .map_or(1.0, |q| q.trim().parse::<f32>().unwrap_or(0.0));
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && quality > 0.0
        })
}

/// The body compressed with gzip at the fastest level: an exposition is repetitive text, so
/// even that level shrinks it several times over. `None` if compression fails (it cannot on
/// a memory buffer, but the plain body is then served).
fn gzip(body: &[u8]) -> Option<Bytes> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    encoder.write_all(body).ok()?;
    encoder.finish().ok().map(Bytes::from)
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

/// A plain-text answer.
pub(super) fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_taken_when_accepted_with_a_positive_quality() {
        let accepts = |value: &str| {
            let request = Request::builder()
                .header(ACCEPT_ENCODING, value)
                .body(())
                .unwrap();
            accepts_gzip(&request)
        };
        assert!(accepts("gzip"));
        assert!(accepts("identity, GZIP;q=0.5"));
        assert!(accepts("*"));
        assert!(!accepts("gzip;q=0"));
        assert!(!accepts("deflate, br"));
        assert!(!accepts_gzip(&Request::new(())));
    }

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
}
