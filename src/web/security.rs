//! The web configuration file applied: the TLS acceptor of every connection, and the rate
//! limit, basic authentication and extra headers of every request.
//!
//! Owns what the server does with a loaded [`WebSecurity`]: the 429 and 401 answers (with the
//! `WWW-Authenticate` challenge), and adding the configured headers to every answer.
//! Must not: read or check the file (that is the configuration's `web_file`, so that a mistake
//! stops start-up with the rest of the configuration), or put a password into a log line.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};
use hyper::http::request::Parts;
use hyper::{Method, Response, StatusCode};
use tokio_rustls::TlsAcceptor;

use super::routes::text;
/// Kept under `web::security` as well, where the property tests name it; it lives in
/// [`crate::config`], which loads it.
pub use crate::config::WebSecurity;

/// The `WWW-Authenticate` value of a 401 answer.
const BASIC_AUTH_CHALLENGE: &str = "Basic realm=\"kraken_exporter\"";

/// The TLS acceptor of `security`, or `None` to serve plain HTTP; logs what is applied.
pub(super) fn acceptor(security: Option<&Arc<WebSecurity>>) -> Option<TlsAcceptor> {
    let security = security?;
    let tls = security.tls_config().map(TlsAcceptor::from);
    tracing::info!(
        tls = tls.is_some(),
        client_auth_type = ?security.client_auth(),
        basic_auth = security.basic_auth().is_some(),
        headers = security.headers().len(),
        rate_limit = security.rate_limit().is_some(),
        "web configuration file applied"
    );
    tls
}

/// The 429 answer when `rate_limit` refuses this request; `None` lets it through.
pub(super) fn rate_limited(security: Option<&WebSecurity>) -> Option<Response<Full<Bytes>>> {
    let limiter = security?.rate_limit()?;
    if limiter.allow() {
        return None;
    }
    Some(text(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many requests: see rate_limit in the web configuration file.\n".into(),
    ))
}

/// The 401 answer, with its challenge, when basic auth is configured and the request does not
/// carry a valid user and password; `None` lets it through.
pub(super) async fn unauthorized(
    security: Option<&WebSecurity>,
    parts: &Parts,
) -> Option<Response<Full<Bytes>>> {
    let auth = security?.basic_auth()?;
    if auth.authorize(parts.headers.get(AUTHORIZATION)).await {
        return None;
    }
    let mut response = text(StatusCode::UNAUTHORIZED, "Unauthorized.\n".into());
    response.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static(BASIC_AUTH_CHALLENGE),
    );
    if parts.method == Method::HEAD {
        *response.body_mut() = Full::new(Bytes::new());
    }
    Some(response)
}

/// Adds the configured `http_server_config.headers` to `response`.
pub(super) fn add_headers(security: Option<&WebSecurity>, response: &mut Response<Full<Bytes>>) {
    if let Some(security) = security {
        for (name, value) in security.headers() {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }
}
