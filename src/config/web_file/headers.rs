//! `http_server_config`: extra response headers, checked so they cannot break HTTP framing,
//! content decoding or authentication.
//!
//! Must not: let a configured header replace one the exporter sets itself.

use std::collections::BTreeMap;

use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use super::problem;
use crate::problem::Problem;

/// Response headers that would break HTTP framing, content decoding or authentication.
const FORBIDDEN_HEADERS: &[&str] = &[
    "connection",
    "content-encoding",
    "content-length",
    "content-type",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "www-authenticate",
];

/// `http_server_config:`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    /// Accepted for compatibility; the exporter speaks HTTP/1.1.
    #[allow(dead_code)]
    http2: Option<bool>,
    pub(super) headers: Option<BTreeMap<String, String>>,
}

/// The headers of `http_server_config.headers`, or a problem per bad one.
pub(super) fn response_headers(
    raw: BTreeMap<String, String>,
    problems: &mut Vec<Problem>,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in raw {
        let field = format!("http_server_config.headers.{name}");
        let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
            problems.push(problem(
                &field,
                "is not a valid header name: use letters, digits and '-'",
            ));
            continue;
        };
        if FORBIDDEN_HEADERS.contains(&header.as_str()) {
            problems.push(problem(
                &field,
                "cannot be configured: the exporter sets it itself, and another value would break HTTP for clients; remove it",
            ));
            continue;
        }
        let trimmed = value.trim();
        if trimmed.is_empty() {
            // exporter-toolkit: "Unset if blank".
            continue;
        }
        let allowed: &[&str] = match header.as_str() {
            "x-frame-options" => &["deny", "sameorigin"],
            "x-content-type-options" => &["nosniff"],
            _ => &[],
        };
        if !allowed.is_empty() && !allowed.iter().any(|a| a.eq_ignore_ascii_case(trimmed)) {
            problems.push(problem(
                &field,
                format!(
                    "{trimmed:?} is not a valid value: use {}",
                    allowed.join(" or ")
                ),
            ));
            continue;
        }
        match HeaderValue::from_str(trimmed) {
            Ok(value) => {
                headers.insert(header, value);
            }
            Err(_) => problems.push(problem(
                &field,
                "has a value with control characters or line breaks: write it on one line",
            )),
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::super::WebSecurity;
    use crate::problem::Problem;
    use std::path::Path;
    fn refused(text: &str) -> Vec<Problem> {
        WebSecurity::from_text(text, Path::new(".")).unwrap_err()
    }

    #[test]
    fn headers_that_break_http_are_refused_and_enumerations_checked() {
        for name in [
            "Content-Type",
            "content-length",
            "Transfer-Encoding",
            "Connection",
        ] {
            let problems = refused(&format!("http_server_config:\n  headers:\n    {name}: x\n"));
            assert_eq!(
                problems[0].place,
                format!("http_server_config.headers.{name}")
            );
        }
        let problems = refused("http_server_config:\n  headers:\n    X-Frame-Options: allow\n");
        assert!(problems[0].message.contains("deny"), "{problems:?}");
        let security = WebSecurity::from_text(
            "http_server_config:\n  http2: true\n  headers:\n    X-Frame-Options: DENY\n    Strict-Transport-Security: max-age=31536000\n    X-XSS-Protection: ''\n",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(security.headers().len(), 2);
        assert_eq!(security.headers()["x-frame-options"], "DENY");
    }
}
