//! The web configuration file (`--web.config.file`): TLS, client certificates, basic
//! authentication, extra response headers and a request rate limit, in the format of the
//! Prometheus exporter-toolkit (`docs/web-configuration.md`) that Go exporters read.
//!
//! Owns the file's schema, its validation (every mistake is named with its field and the fix),
//! turning certificates and keys into a rustls [`ServerConfig`], and checking basic-auth
//! credentials against bcrypt hashes.
//! Must not: put a password, a bcrypt hash or a private key into an error, a log line or `Debug`
//! output; accept a file whose TLS settings it cannot honour (it refuses them instead); serve
//! connections (that is the web server's job, `web`, which applies the [`WebSecurity`] loaded
//! here); import anything from `web`, which depends on the configuration, not the other way.
//!
//! It is part of the configuration so that the file is read and checked with the rest of it:
//! a mistake stops start-up (and `--config.check`) with exit status 2, and a reload that
//! finds one keeps the running configuration.
//!
//! # Layout
//!
//! This file is the schema and [`WebSecurity::load`]; `tls` builds the rustls configuration
//! and its client-certificate verifiers, `basic_auth` checks passwords, `rate_limit` is the
//! token bucket, `headers` checks the extra response headers.
//!
//! # What is supported
//!
//! - `tls_server_config`: `cert_file`/`cert`, `key_file`/`key`, `client_ca_file`/`client_ca`
//!   (the inline forms hold PEM text), `client_auth_type` (all five Go values and the legacy
//!   `RequireClientCert`), `client_allowed_sans` (exact match against the DNS, e-mail, IP and
//!   URI names of the client certificate; needs `RequireAnyClientCert` or
//!   `RequireAndVerifyClientCert`), `min_version`/`max_version` (`TLS12`, `TLS13`),
//!   `cipher_suites` (the TLS 1.2 ECDHE AEAD suites, in the order given; TLS 1.3 suite names are
//!   accepted and all TLS 1.3 suites stay on, as in Go), `curve_preferences` (`X25519`,
//!   `CurveP256`, `CurveP384`, in the order given) and `prefer_server_cipher_suites`.
//!   Relative paths are relative to the directory of the web configuration file.
//! - `http_server_config`: `headers` (added to every response, including 401 and 429);
//!   `http2` is accepted, but the exporter speaks HTTP/1.1 only (ALPN offers `http/1.1`).
//! - `basic_auth_users`: user name → bcrypt hash (`$2a$`, `$2b$`, `$2x$`, `$2y$`).
//! - `rate_limit`: `interval` between two requests (`0` turns it off) and `burst`.
//!
//! # What is refused, with the reason and the fix
//!
//! TLS 1.0 and 1.1, CBC/RC4/3DES/RSA-key-exchange cipher suites and the P-521 curve (rustls
//! does not implement them); TLS settings without a certificate and key (Go would silently serve
//! plain HTTP); `client_ca_file` with `NoClientCert`; a verifying `client_auth_type` without a
//! CA; headers that would break HTTP framing or authentication (`Content-Type`,
//! `Content-Length`, `Transfer-Encoding`, `Connection`, …); bcrypt costs above
//! `MAX_BCRYPT_COST` (18); user names containing `:`.
//!
//! The file is read when the configuration is resolved: at start-up, and again on a reload,
//! where it is only validated. Changes take effect after a restart.

mod basic_auth;
mod headers;
mod rate_limit;
mod tls;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper::header::{HeaderMap, HeaderName};
use rustls::server::ServerConfig;
use serde::Deserialize;

use crate::problem::{Problem, list};
use basic_auth::BasicAuth;
use rate_limit::RateLimiter;
use tls::ClientAuth;

/// The web configuration file, validated and loaded: what the web server applies to every
/// connection and request. Loaded with the configuration so that its mistakes stop start-up.
pub struct WebSecurity {
    /// The TLS server configuration; `None` serves plain HTTP.
    tls: Option<Arc<ServerConfig>>,
    /// `client_auth_type` as written (for the start-up log line).
    client_auth: ClientAuth,
    /// Added to every response.
    headers: HeaderMap,
    /// Basic authentication; `None` when no user is configured.
    basic_auth: Option<BasicAuth>,
    /// A token bucket over all requests; `None` when off.
    rate_limit: Option<RateLimiter>,
}

impl fmt::Debug for WebSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSecurity")
            .field("tls", &self.tls.is_some())
            .field("client_auth", &self.client_auth)
            .field(
                "headers",
                &self
                    .headers
                    .keys()
                    .map(HeaderName::as_str)
                    .collect::<Vec<_>>(),
            )
            .field(
                "basic_auth_users",
                &self.basic_auth.as_ref().map_or(0, BasicAuth::user_count),
            )
            .field("rate_limit", &self.rate_limit)
            .finish()
    }
}

impl WebSecurity {
    /// Reads and validates the file at `path`, loading every certificate and key it names
    /// (relative paths are relative to the file's directory).
    pub(crate) fn load(path: &Path) -> Result<WebSecurity, WebConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| WebConfigError::Read {
            path: path.to_owned(),
            kind: e.kind(),
        })?;
        let base = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        Self::from_text(&text, &base).map_err(|problems| WebConfigError::Invalid {
            path: path.to_owned(),
            problems,
        })
    }

    /// Validates the text of a web configuration file; files it names are looked up from
    /// `base`. Returns every mistake found.
    pub fn from_text(text: &str, base: &Path) -> Result<WebSecurity, Vec<Problem>> {
        let raw = parse(text).map_err(|problem| vec![problem])?;
        let mut problems = Vec::new();
        let (tls, client_auth) = match raw.tls_server_config {
            Some(tls) => match tls::server_config(tls, base, &mut problems) {
                Some((config, auth)) => (Some(config), auth),
                None => (None, ClientAuth::NoClientCert),
            },
            None => (None, ClientAuth::NoClientCert),
        };
        let headers = raw
            .http_server_config
            .map(|http| headers::response_headers(http.headers.unwrap_or_default(), &mut problems))
            .unwrap_or_default();
        let basic_auth =
            basic_auth::from_users(raw.basic_auth_users.unwrap_or_default(), &mut problems);
        let rate_limit = raw
            .rate_limit
            .and_then(|limit| rate_limit::from_raw(limit, &mut problems));
        if !problems.is_empty() {
            return Err(problems);
        }
        if basic_auth.is_some() && tls.is_none() {
            tracing::warn!(
                "basic_auth_users without tls_server_config: passwords cross the network in clear text; add cert_file and key_file"
            );
        }
        Ok(WebSecurity {
            tls,
            client_auth,
            headers,
            basic_auth,
            rate_limit,
        })
    }

    /// The TLS server configuration, or `None` for plain HTTP.
    pub(crate) fn tls_config(&self) -> Option<Arc<ServerConfig>> {
        self.tls.clone()
    }

    /// The client-certificate policy (`NoClientCert` without TLS).
    pub(crate) fn client_auth(&self) -> ClientAuth {
        self.client_auth
    }

    /// Headers to add to every response.
    pub(crate) fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// Basic authentication, when users are configured.
    pub(crate) fn basic_auth(&self) -> Option<&BasicAuth> {
        self.basic_auth.as_ref()
    }

    /// The request rate limit, when configured.
    pub(crate) fn rate_limit(&self) -> Option<&RateLimiter> {
        self.rate_limit.as_ref()
    }
}

/// A web configuration file that cannot be used. The process exits with status 2.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    /// The file cannot be read.
    #[error(
        "cannot read web config file {}: {kind}; check the path given to --web.config.file",
        path.display()
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error kind.
        kind: std::io::ErrorKind,
    },
    /// The file has mistakes; all of them are listed.
    #[error("web config file {}: {}", path.display(), list(problems))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every mistake found.
        problems: Vec<Problem>,
    },
}

/// A problem with `field`.
fn problem(field: &str, message: impl Into<String>) -> Problem {
    Problem {
        place: field.to_owned(),
        message: message.into(),
    }
}

/// The whole file; unknown fields are errors, as in exporter-toolkit.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    tls_server_config: Option<tls::RawTls>,
    http_server_config: Option<headers::RawHttp>,
    basic_auth_users: Option<BTreeMap<String, String>>,
    rate_limit: Option<rate_limit::RawRateLimit>,
}

/// Fields whose values are secret: their parse errors are reported without the value.
fn is_secret_field(path: &str) -> bool {
    path.starts_with("basic_auth_users") || path == "tls_server_config.key"
}

/// Parses the YAML, or says where it first goes wrong (without quoting a secret value).
fn parse(text: &str) -> Result<RawFile, Problem> {
    crate::problem::parse_yaml(text).map_err(|error| {
        let field = if error.path.is_empty() {
            format!("the file{}", error.line)
        } else {
            format!("{}{}", error.path, error.line)
        };
        let message = if error.message.contains("unknown field") || !is_secret_field(&error.path) {
            error.message
        } else if error.path == "tls_server_config.key" {
            "must be PEM text (the value is not shown): write the private key as a YAML string, or use key_file".into()
        } else {
            "must be a bcrypt hash written as a string (the value is not shown): create one with htpasswd -nBC 10 \"\" | tr -d ':\\n'".into()
        };
        Problem {
            place: field,
            message,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    fn refused(text: &str) -> Vec<Problem> {
        WebSecurity::from_text(text, Path::new(".")).unwrap_err()
    }

    #[test]
    fn an_empty_file_serves_plain_http_without_auth() {
        let security = WebSecurity::from_text("", Path::new(".")).unwrap();
        assert!(security.tls_config().is_none());
        assert!(security.basic_auth().is_none());
        assert!(security.headers().is_empty());
        assert!(security.rate_limit().is_none());
    }

    #[test]
    fn unknown_fields_are_named() {
        let problems = refused("tls_server_config:\n  cert_fil: x\n");
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].place.starts_with("tls_server_config"),
            "{problems:?}"
        );
        assert!(problems[0].message.contains("cert_fil"), "{problems:?}");
        assert!(
            problems[0].message.contains("fix the spelling"),
            "{problems:?}"
        );
    }

    #[test]
    fn the_web_file_imports_nothing_from_the_rest_of_config_or_from_web() {
        let files = [
            ("mod.rs", include_str!("mod.rs")),
            ("tls/mod.rs", include_str!("tls/mod.rs")),
            ("tls/build.rs", include_str!("tls/build.rs")),
            ("tls/client.rs", include_str!("tls/client.rs")),
            ("tls/files.rs", include_str!("tls/files.rs")),
            ("tls/protocol.rs", include_str!("tls/protocol.rs")),
            ("basic_auth.rs", include_str!("basic_auth.rs")),
            ("rate_limit.rs", include_str!("rate_limit.rs")),
            ("headers.rs", include_str!("headers.rs")),
        ];
        for (name, source) in files {
            let code = crate::problem::tests::code_of(source);
            for module in ["config", "web", "exporter", "app"] {
                let path = format!("crate::{module}");
                assert!(!code.contains(&path), "config/web_file/{name} uses {path}");
            }
        }
    }
}
