//! The web configuration file (`--web.config.file`): TLS, client certificates, basic
//! authentication, extra response headers and a request rate limit, in the format of the
//! Prometheus exporter-toolkit (`docs/web-configuration.md`) that Go exporters read.
//!
//! Owns the file's schema, its validation (every mistake is named with its field and the fix),
//! turning certificates and keys into a rustls [`ServerConfig`], and checking basic-auth
//! credentials against bcrypt hashes.
//! Must not: put a password, a bcrypt hash or a private key into an error, a log line or `Debug`
//! output; accept a file whose TLS settings it cannot honour (it refuses them instead); serve
//! connections (that is [`crate::server`]).
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
//! [`MAX_BCRYPT_COST`]; user names containing `:`.
//!
//! The file is read when the configuration is resolved: at start-up, and again on a reload,
//! where it is only validated. Changes take effect after a restart.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, SupportedKxGroup, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
    SupportedCipherSuite, SupportedProtocolVersion,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};
use zeroize::Zeroizing;

/// The `WWW-Authenticate` value of a 401 answer.
pub const BASIC_AUTH_CHALLENGE: &str = "Basic realm=\"kraken_exporter\"";

/// Highest bcrypt cost accepted: each new password check at cost 18 already takes seconds of
/// CPU, and a scrape waits for it.
pub const MAX_BCRYPT_COST: u32 = 18;

/// Verification results kept per outcome before that half of the cache is cleared. Failures
/// and successes are kept apart, so a flood of wrong passwords cannot evict a scraper's
/// successful result and make it pay bcrypt again.
const AUTH_CACHE_LIMIT: usize = 1024;

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

/// The web configuration file, validated and loaded: what [`crate::server`] applies to every
/// connection and request.
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
                &self.basic_auth.as_ref().map_or(0, |a| a.users.len()),
            )
            .field("rate_limit", &self.rate_limit)
            .finish()
    }
}

impl WebSecurity {
    /// Reads and validates the file at `path`, loading every certificate and key it names
    /// (relative paths are relative to the file's directory).
    pub fn load(path: &Path) -> Result<WebSecurity, WebConfigError> {
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
    pub fn from_text(text: &str, base: &Path) -> Result<WebSecurity, Vec<FieldProblem>> {
        let raw = parse(text).map_err(|problem| vec![problem])?;
        let mut problems = Vec::new();
        let (tls, client_auth) = match raw.tls_server_config {
            Some(tls) => match tls_config(tls, base, &mut problems) {
                Some((config, auth)) => (Some(config), auth),
                None => (None, ClientAuth::NoClientCert),
            },
            None => (None, ClientAuth::NoClientCert),
        };
        let headers = raw
            .http_server_config
            .map(|http| response_headers(http.headers.unwrap_or_default(), &mut problems))
            .unwrap_or_default();
        let basic_auth = basic_auth(raw.basic_auth_users.unwrap_or_default(), &mut problems);
        let rate_limit = raw
            .rate_limit
            .and_then(|limit| rate_limiter(limit, &mut problems));
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
    pub fn tls_config(&self) -> Option<Arc<ServerConfig>> {
        self.tls.clone()
    }

    /// The client-certificate policy (`NoClientCert` without TLS).
    pub fn client_auth(&self) -> ClientAuth {
        self.client_auth
    }

    /// Headers to add to every response.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// Basic authentication, when users are configured.
    pub fn basic_auth(&self) -> Option<&BasicAuth> {
        self.basic_auth.as_ref()
    }

    /// The request rate limit, when configured.
    pub fn rate_limit(&self) -> Option<&RateLimiter> {
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
        problems: Vec<FieldProblem>,
    },
}

/// One mistake in the web configuration file: the field at fault, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// `tls_server_config.cert_file`, `basic_auth_users.alice`, or `line 3 column 5`.
    pub field: String,
    /// What is wrong and the fix; never a secret.
    pub message: String,
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn list(problems: &[FieldProblem]) -> String {
    crate::config::list(problems)
}

fn problem(field: &str, message: impl Into<String>) -> FieldProblem {
    FieldProblem {
        field: field.to_owned(),
        message: message.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// The file as written
// ---------------------------------------------------------------------------------------------

/// The whole file; unknown fields are errors, as in exporter-toolkit.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    basic_auth_users: Option<BTreeMap<String, String>>,
    rate_limit: Option<RawRateLimit>,
}

/// `tls_server_config:`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Option<String>,
    key: Option<String>,
    client_ca: Option<String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    cipher_suites: Option<Vec<String>>,
    curve_preferences: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    prefer_server_cipher_suites: Option<bool>,
    client_allowed_sans: Option<Vec<String>>,
}

/// `http_server_config:`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    /// Accepted for compatibility; the exporter speaks HTTP/1.1.
    #[allow(dead_code)]
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// `rate_limit:`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    interval: Option<serde_norway::Value>,
    burst: Option<u32>,
}

/// Fields whose values are secret: their parse errors are reported without the value.
fn is_secret_field(path: &str) -> bool {
    path.starts_with("basic_auth_users") || path == "tls_server_config.key"
}

/// Parses the YAML, or says where it first goes wrong (without quoting a secret value).
fn parse(text: &str) -> Result<RawFile, FieldProblem> {
    crate::config::file::parse_yaml(text).map_err(|error| {
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
        FieldProblem { field, message }
    })
}

// ---------------------------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------------------------

/// `client_auth_type`: whether and how client certificates are asked for, as in Go's
/// `crypto/tls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No certificate is asked for (the default).
    NoClientCert,
    /// A certificate is asked for but not required, and not verified.
    RequestClientCert,
    /// A certificate is required but not verified against a CA: anyone can make one.
    RequireAnyClientCert,
    /// A certificate is optional; one that is sent must chain to `client_ca_file`.
    VerifyClientCertIfGiven,
    /// A certificate that chains to `client_ca_file` is required: real client authentication.
    RequireAndVerifyClientCert,
}

impl ClientAuth {
    fn parse(text: &str) -> Option<ClientAuth> {
        Some(match text {
            "" | "NoClientCert" => ClientAuth::NoClientCert,
            "RequestClientCert" => ClientAuth::RequestClientCert,
            "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::RequireAnyClientCert,
            "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
            _ => return None,
        })
    }

    fn verifies(self) -> bool {
        matches!(
            self,
            ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
        )
    }
}

/// Where a PEM document comes from: inline text, or a file.
enum PemSource {
    Inline(Zeroizing<String>),
    File(PathBuf),
}

impl PemSource {
    /// One of the inline field and the file field, or a problem when both are set.
    fn pick(
        inline: Option<String>,
        file: Option<PathBuf>,
        inline_name: &str,
        file_name: &str,
        base: &Path,
        problems: &mut Vec<FieldProblem>,
    ) -> Option<PemSource> {
        let inline = inline.filter(|text| !text.trim().is_empty());
        let file = file.filter(|path| !path.as_os_str().is_empty());
        match (inline, file) {
            (Some(_), Some(_)) => {
                problems.push(problem(
                    &format!("tls_server_config.{file_name}"),
                    format!("is set together with {inline_name}: keep only one of them"),
                ));
                None
            }
            (Some(text), None) => Some(PemSource::Inline(Zeroizing::new(text))),
            (None, Some(path)) => Some(PemSource::File(if path.is_absolute() {
                path
            } else {
                base.join(path)
            })),
            (None, None) => None,
        }
    }

    /// The bytes, or a message naming the file and the fix.
    fn read(&self) -> Result<Zeroizing<Vec<u8>>, String> {
        match self {
            PemSource::Inline(text) => Ok(Zeroizing::new(text.as_bytes().to_vec())),
            PemSource::File(path) => std::fs::read(path).map(Zeroizing::new).map_err(|e| {
                format!(
                    "cannot read {}: {}; check the path (relative paths start at the directory of the web config file)",
                    path.display(),
                    e.kind()
                )
            }),
        }
    }

    /// `file /path` or `the inline value`, for messages.
    fn describe(&self) -> String {
        match self {
            PemSource::Inline(_) => "the inline value".into(),
            PemSource::File(path) => path.display().to_string(),
        }
    }
}

/// Every certificate in a PEM document, or a message saying what is wrong.
fn certificates(source: &PemSource) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = source.read()?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not valid PEM ({e})", source.describe()))?;
    if certs.is_empty() {
        return Err(format!(
            "{} holds no PEM certificate (a -----BEGIN CERTIFICATE----- block)",
            source.describe()
        ));
    }
    Ok(certs)
}

/// The private key of a PEM document, or a message saying what is wrong (never the key).
fn private_key(source: &PemSource) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = source.read()?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => format!(
            "{} holds no unencrypted PEM private key (BEGIN PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY); an encrypted key must be decrypted first (openssl pkey -in KEY -out KEY.plain)",
            source.describe()
        ),
        _ => format!(
            "{} is not a valid PEM private key: export the key again in PEM format",
            source.describe()
        ),
    })
}

fn tls_version(text: &str, field: &str) -> Result<&'static SupportedProtocolVersion, FieldProblem> {
    match text {
        "TLS12" => Ok(&rustls::version::TLS12),
        "TLS13" => Ok(&rustls::version::TLS13),
        "TLS10" | "TLS11" => Err(problem(
            field,
            format!(
                "{text} is not supported: the exporter's TLS library (rustls) implements only TLS 1.2 and 1.3; use TLS12 or TLS13"
            ),
        )),
        other => Err(problem(
            field,
            format!("{other:?} is not a TLS version: use TLS12 or TLS13"),
        )),
    }
}

/// Go's name of a TLS 1.2 suite that rustls (ring) implements.
fn tls12_suite(name: &str) -> Option<SupportedCipherSuite> {
    use rustls::crypto::ring::cipher_suite as suite;
    Some(match name {
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
        | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" => {
            suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" => {
            suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        _ => return None,
    })
}

/// The TLS 1.2 suite names accepted, for messages.
const TLS12_SUITE_NAMES: &str = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256";

/// Go's names of the TLS 1.3 suites: accepted, without effect (all stay enabled, as in Go).
fn is_tls13_suite(name: &str) -> bool {
    matches!(
        name,
        "TLS_AES_128_GCM_SHA256" | "TLS_AES_256_GCM_SHA384" | "TLS_CHACHA20_POLY1305_SHA256"
    )
}

fn curve(name: &str) -> Result<&'static dyn SupportedKxGroup, String> {
    use rustls::crypto::ring::kx_group;
    match name {
        "X25519" => Ok(kx_group::X25519),
        "CurveP256" => Ok(kx_group::SECP256R1),
        "CurveP384" => Ok(kx_group::SECP384R1),
        "CurveP521" => Err(
            "CurveP521 is not implemented by the exporter's TLS library (rustls with ring): use X25519, CurveP256 or CurveP384".into(),
        ),
        other => Err(format!(
            "{other:?} is not a curve: use X25519, CurveP256 or CurveP384"
        )),
    }
}

/// Builds the TLS server configuration, collecting every problem. Returns `None` when there
/// are problems.
fn tls_config(
    raw: RawTls,
    base: &Path,
    problems: &mut Vec<FieldProblem>,
) -> Option<(Arc<ServerConfig>, ClientAuth)> {
    let before = problems.len();
    let cert = PemSource::pick(raw.cert, raw.cert_file, "cert", "cert_file", base, problems);
    let key = PemSource::pick(raw.key, raw.key_file, "key", "key_file", base, problems);
    let client_ca = PemSource::pick(
        raw.client_ca,
        raw.client_ca_file,
        "client_ca",
        "client_ca_file",
        base,
        problems,
    );
    if problems.len() > before {
        return None;
    }
    if cert.is_none() || key.is_none() {
        // Go serves plain HTTP when no certificate, key, CA or client_auth_type is set; a
        // section that sets anything else would then be silently ignored.
        let field = if cert.is_none() {
            "cert_file"
        } else {
            "key_file"
        };
        problems.push(problem(
            &format!("tls_server_config.{field}"),
            "is missing: TLS needs both cert_file (the PEM certificate chain) and key_file (its PEM private key); remove tls_server_config to serve plain HTTP",
        ));
        return None;
    }
    let (cert, key) = (cert?, key?);

    let chain = certificates(&cert)
        .map_err(|m| problems.push(problem("tls_server_config.cert_file", m)))
        .ok();
    let key_der = private_key(&key)
        .map_err(|m| problems.push(problem("tls_server_config.key_file", m)))
        .ok();
    if let (Some(chain), PemSource::File(path)) = (&chain, &cert) {
        warn_if_expired(&chain[0], path);
    }
    if let PemSource::File(path) = &key {
        warn_if_readable_by_others(path);
    }

    let min = match raw.min_version.as_deref() {
        None | Some("") => Some(&rustls::version::TLS12),
        Some(text) => tls_version(text, "tls_server_config.min_version")
            .map_err(|p| problems.push(p))
            .ok(),
    };
    let max = match raw.max_version.as_deref() {
        None | Some("") => Some(&rustls::version::TLS13),
        Some(text) => tls_version(text, "tls_server_config.max_version")
            .map_err(|p| problems.push(p))
            .ok(),
    };
    let versions: Vec<&'static SupportedProtocolVersion> = match (min, max) {
        (Some(min), Some(max)) => {
            let rank = |v: &SupportedProtocolVersion| u16::from(v.version);
            if rank(min) > rank(max) {
                problems.push(problem(
                    "tls_server_config.max_version",
                    "is lower than min_version: raise max_version or lower min_version",
                ));
                Vec::new()
            } else {
                [&rustls::version::TLS12, &rustls::version::TLS13]
                    .into_iter()
                    .filter(|v| rank(v) >= rank(min) && rank(v) <= rank(max))
                    .collect()
            }
        }
        _ => Vec::new(),
    };
    let tls12_allowed = versions
        .iter()
        .any(|v| v.version == rustls::ProtocolVersion::TLSv1_2);

    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(names) = raw.cipher_suites.filter(|names| !names.is_empty()) {
        let mut tls12 = Vec::new();
        for name in &names {
            if let Some(suite) = tls12_suite(name) {
                tls12.push(suite);
            } else if !is_tls13_suite(name) {
                let reason = if name.contains("_CBC_")
                    || name.contains("_RC4_")
                    || name.starts_with("TLS_RSA_")
                {
                    "is not implemented by the exporter's TLS library (rustls has no CBC, RC4, 3DES or RSA key exchange suites)"
                } else {
                    "is not a cipher suite name"
                };
                problems.push(problem(
                    "tls_server_config.cipher_suites",
                    format!("{name:?} {reason}: choose among {TLS12_SUITE_NAMES}"),
                ));
            }
        }
        if tls12.is_empty() && tls12_allowed {
            problems.push(problem(
                "tls_server_config.cipher_suites",
                format!(
                    "names no TLS 1.2 suite while TLS 1.2 is allowed: add one of {TLS12_SUITE_NAMES}, or set min_version: TLS13"
                ),
            ));
        }
        let mut suites: Vec<SupportedCipherSuite> = provider
            .cipher_suites
            .iter()
            .copied()
            .filter(|s| matches!(s, SupportedCipherSuite::Tls13(_)))
            .collect();
        suites.extend(tls12);
        provider.cipher_suites = suites;
    }
    if let Some(names) = raw.curve_preferences.filter(|names| !names.is_empty()) {
        let mut groups = Vec::new();
        for name in &names {
            match curve(name) {
                Ok(group) => {
                    if !groups
                        .iter()
                        .any(|g: &&dyn SupportedKxGroup| g.name() == group.name())
                    {
                        groups.push(group);
                    }
                }
                Err(message) => {
                    problems.push(problem("tls_server_config.curve_preferences", message))
                }
            }
        }
        provider.kx_groups = groups;
    }

    let client_auth = match raw.client_auth_type.as_deref() {
        None => Some(ClientAuth::NoClientCert),
        Some(text) => {
            let parsed = ClientAuth::parse(text);
            if parsed.is_none() {
                problems.push(problem(
                    "tls_server_config.client_auth_type",
                    format!(
                        "{text:?} is not a client auth type: use NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert (the one that authenticates clients)"
                    ),
                ));
            }
            parsed
        }
    };
    let roots = match (&client_ca, client_auth) {
        (Some(_), Some(ClientAuth::NoClientCert)) => {
            problems.push(problem(
                "tls_server_config.client_ca_file",
                "is set but client_auth_type is NoClientCert, so no client certificate would be checked: set client_auth_type: RequireAndVerifyClientCert, or remove client_ca_file",
            ));
            None
        }
        (None, Some(auth)) if auth.verifies() => {
            problems.push(problem(
                "tls_server_config.client_ca_file",
                format!(
                    "is required when client_auth_type is {auth:?}: set it to the PEM certificate of the CA that signs the client certificates"
                ),
            ));
            None
        }
        (Some(source), Some(_)) => match certificates(source) {
            Ok(certs) => {
                let mut roots = RootCertStore::empty();
                let (added, _ignored) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    problems.push(problem(
                        "tls_server_config.client_ca_file",
                        format!(
                            "{} holds no usable CA certificate: give the PEM certificate of the CA that signs the client certificates",
                            source.describe()
                        ),
                    ));
                    None
                } else {
                    Some(Arc::new(roots))
                }
            }
            Err(message) => {
                problems.push(problem("tls_server_config.client_ca_file", message));
                None
            }
        },
        _ => None,
    };
    let allowed_sans = match raw.client_allowed_sans {
        None => None,
        Some(sans) if sans.is_empty() => {
            problems.push(problem(
                "tls_server_config.client_allowed_sans",
                "is empty, which would refuse every client: list the allowed names, or remove the field",
            ));
            None
        }
        Some(sans) => {
            if !matches!(
                client_auth,
                Some(ClientAuth::RequireAnyClientCert | ClientAuth::RequireAndVerifyClientCert)
            ) {
                problems.push(problem(
                    "tls_server_config.client_allowed_sans",
                    "needs client_auth_type RequireAndVerifyClientCert (or RequireAnyClientCert): with the other types a client may send no certificate, leaving no name to check",
                ));
            }
            Some(sans)
        }
    };
    if problems.len() > before {
        return None;
    }
    let (chain, key_der, client_auth) = (chain?, key_der?, client_auth?);

    let provider = Arc::new(provider);
    let verifier = match client_verifier(client_auth, roots, &provider, allowed_sans) {
        Ok(verifier) => verifier,
        Err(message) => {
            problems.push(problem("tls_server_config.client_ca_file", message));
            return None;
        }
    };
    if matches!(
        client_auth,
        ClientAuth::RequestClientCert | ClientAuth::RequireAnyClientCert
    ) {
        tracing::warn!(
            client_auth_type = ?client_auth,
            "client certificates are not verified with this client_auth_type: anyone can make one; use RequireAndVerifyClientCert with client_ca_file to authenticate clients"
        );
    }
    let builder = match ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
    {
        Ok(builder) => builder,
        Err(error) => {
            problems.push(problem(
                "tls_server_config.cipher_suites",
                format!("cannot be used with the TLS versions allowed ({error})"),
            ));
            return None;
        }
    };
    let signing_algorithm = provider
        .key_provider
        .load_private_key(key_der.clone_key())
        .map(|key| key.algorithm());
    match signing_algorithm {
        Err(_) => {
            problems.push(problem(
                "tls_server_config.key_file",
                format!(
                    "{} holds a private key of a type the exporter cannot use: use an RSA (2048 bits or more), ECDSA P-256/P-384 or Ed25519 key",
                    key.describe()
                ),
            ));
            return None;
        }
        Ok(algorithm) if tls12_allowed => {
            let usable = provider.cipher_suites.iter().any(|suite| {
                matches!(suite, SupportedCipherSuite::Tls12(_))
                    && suite.usable_for_signature_algorithm(algorithm)
            });
            if !usable {
                problems.push(problem(
                    "tls_server_config.cipher_suites",
                    format!(
                        "has no TLS 1.2 suite for the certificate's {algorithm:?} key: add a TLS_ECDHE_{}_WITH_* suite, or set min_version: TLS13",
                        if algorithm == rustls::SignatureAlgorithm::RSA { "RSA" } else { "ECDSA" }
                    ),
                ));
                return None;
            }
        }
        Ok(_) => {}
    }
    let mut config = match builder
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key_der)
    {
        Ok(config) => config,
        Err(rustls::Error::InconsistentKeys(_)) => {
            problems.push(problem(
                "tls_server_config.key_file",
                format!(
                    "{} does not match the certificate in {}: give the private key that belongs to that certificate",
                    key.describe(),
                    cert.describe()
                ),
            ));
            return None;
        }
        Err(error) => {
            problems.push(problem(
                "tls_server_config.cert_file",
                format!(
                    "{} cannot be used with its key ({error}): check that cert_file starts with the server certificate and key_file holds its key",
                    cert.describe()
                ),
            ));
            return None;
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ignore_client_order = raw.prefer_server_cipher_suites.unwrap_or(true);
    Some((Arc::new(config), client_auth))
}

/// The verifier of client certificates for `client_auth`, wrapped in the SAN check when
/// `client_allowed_sans` is set.
fn client_verifier(
    client_auth: ClientAuth,
    roots: Option<Arc<RootCertStore>>,
    provider: &Arc<CryptoProvider>,
    allowed_sans: Option<Vec<String>>,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let hints = roots
        .as_ref()
        .map(|roots| roots.subjects())
        .unwrap_or_default();
    let algorithms = provider.signature_verification_algorithms;
    let verifier: Arc<dyn ClientCertVerifier> = match (client_auth, roots) {
        (ClientAuth::NoClientCert, _) => return Ok(WebPkiClientVerifier::no_client_auth()),
        (ClientAuth::RequestClientCert, _) => Arc::new(UnverifiedClientCert {
            mandatory: false,
            hints,
            algorithms,
        }),
        (ClientAuth::RequireAnyClientCert, _) => Arc::new(UnverifiedClientCert {
            mandatory: true,
            hints,
            algorithms,
        }),
        (ClientAuth::VerifyClientCertIfGiven, Some(roots)) => {
            WebPkiClientVerifier::builder_with_provider(roots, Arc::clone(provider))
                .allow_unauthenticated()
                .build()
                .map_err(|e| format!("cannot be used to verify client certificates ({e})"))?
        }
        (ClientAuth::RequireAndVerifyClientCert, Some(roots)) => {
            WebPkiClientVerifier::builder_with_provider(roots, Arc::clone(provider))
                .build()
                .map_err(|e| format!("cannot be used to verify client certificates ({e})"))?
        }
        (_, None) => return Err("is required to verify client certificates".into()),
    };
    Ok(match allowed_sans {
        Some(allowed) => Arc::new(AllowedSans {
            inner: verifier,
            allowed,
        }),
        None => verifier,
    })
}

/// `RequestClientCert` and `RequireAnyClientCert`: the client proves it holds the key of the
/// certificate it sends, but the certificate itself is not checked, as in Go.
#[derive(Debug)]
struct UnverifiedClientCert {
    /// `RequireAnyClientCert`.
    mandatory: bool,
    /// Subjects of `client_ca_file`, sent as hints (Go does the same).
    hints: Vec<DistinguishedName>,
    /// To check the handshake signature.
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for UnverifiedClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `client_allowed_sans`: after the inner verifier accepts the certificate, one of its subject
/// alternative names must equal an allowed entry exactly.
#[derive(Debug)]
struct AllowedSans {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<String>,
}

impl ClientCertVerifier for AllowedSans {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let names = subject_alt_names(end_entity).ok_or(rustls::Error::InvalidCertificate(
            CertificateError::BadEncoding,
        ))?;
        if names.iter().any(|name| self.allowed.contains(name)) {
            Ok(verified)
        } else {
            tracing::debug!(
                sans = ?names,
                "client certificate refused: none of its names is in client_allowed_sans"
            );
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The DNS, e-mail, IP and URI subject alternative names of a certificate, written as Go
/// writes them; `None` when the certificate cannot be parsed.
fn subject_alt_names(cert: &CertificateDer<'_>) -> Option<Vec<String>> {
    use x509_parser::extensions::GeneralName;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let Some(san) = parsed.subject_alternative_name().ok()? else {
        return Some(Vec::new());
    };
    let mut names = Vec::new();
    for name in &san.value.general_names {
        match name {
            GeneralName::DNSName(text) | GeneralName::RFC822Name(text) | GeneralName::URI(text) => {
                names.push((*text).to_owned())
            }
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => names
                    .push(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*bytes).ok()?).to_string()),
                16 => names
                    .push(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*bytes).ok()?).to_string()),
                _ => {}
            },
            _ => {}
        }
    }
    Some(names)
}

/// Logs a warning when the server certificate is outside its validity period (Go serves it
/// anyway, and so does the exporter; clients will refuse it).
fn warn_if_expired(cert: &CertificateDer<'_>, path: &Path) {
    if let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref())
        && !parsed.validity().is_valid()
    {
        tracing::warn!(
            file = %path.display(),
            not_before = %parsed.validity().not_before,
            not_after = %parsed.validity().not_after,
            "the TLS certificate is outside its validity period: clients will refuse it; renew it"
        );
    }
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            "TLS key file {} can be read by other users: run chmod 600 {}",
            path.display(),
            path.display()
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &Path) {}

// ---------------------------------------------------------------------------------------------
// Headers
// ---------------------------------------------------------------------------------------------

fn response_headers(raw: BTreeMap<String, String>, problems: &mut Vec<FieldProblem>) -> HeaderMap {
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

// ---------------------------------------------------------------------------------------------
// Rate limit
// ---------------------------------------------------------------------------------------------

/// `rate_limit`: a token bucket over every request, as exporter-toolkit's: `burst` requests at
/// once, then one per `interval`. Requests over the limit are answered 429.
pub struct RateLimiter {
    /// Time to earn one token.
    interval: Duration,
    /// Bucket size.
    burst: u32,
    /// Tokens available and when they were counted.
    bucket: Mutex<(f64, Instant)>,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("interval", &self.interval)
            .field("burst", &self.burst)
            .finish()
    }
}

impl RateLimiter {
    /// A full bucket of `burst` tokens, refilled by one every `interval`.
    pub fn new(interval: Duration, burst: u32) -> RateLimiter {
        RateLimiter {
            interval,
            burst,
            bucket: Mutex::new((f64::from(burst), Instant::now())),
        }
    }

    /// Takes one token if there is one.
    pub fn allow(&self) -> bool {
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let earned = now.duration_since(bucket.1).as_secs_f64() / self.interval.as_secs_f64();
        bucket.0 = (bucket.0 + earned).min(f64::from(self.burst));
        bucket.1 = now;
        if bucket.0 >= 1.0 {
            bucket.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

fn rate_limiter(raw: RawRateLimit, problems: &mut Vec<FieldProblem>) -> Option<RateLimiter> {
    let interval = match raw.interval {
        None | Some(serde_norway::Value::Null) => Duration::ZERO,
        Some(serde_norway::Value::Number(n)) if n.as_f64() == Some(0.0) => Duration::ZERO,
        Some(serde_norway::Value::String(text)) if text.trim() == "0" => Duration::ZERO,
        Some(serde_norway::Value::String(text)) => match crate::duration::parse(&text) {
            Ok(interval) => interval,
            Err(message) => {
                problems.push(problem("rate_limit.interval", message));
                return None;
            }
        },
        Some(_) => {
            problems.push(problem(
                "rate_limit.interval",
                "must be a duration like 100ms or 1s (0 turns the limit off)",
            ));
            return None;
        }
    };
    if interval.is_zero() {
        return None;
    }
    match raw.burst {
        Some(burst) if burst > 0 => Some(RateLimiter::new(interval, burst)),
        _ => {
            problems.push(problem(
                "rate_limit.burst",
                "must be at least 1 when interval is set, or every request would be refused",
            ));
            None
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Basic authentication
// ---------------------------------------------------------------------------------------------

/// One configured user.
struct User {
    /// SHA-256 of the name, compared in constant time.
    name_digest: [u8; 32],
    /// The bcrypt hash.
    hash: Zeroizing<String>,
}

/// `basic_auth_users`: checks `Authorization: Basic` credentials against bcrypt hashes.
///
/// Verifications run one at a time on a blocking thread (bcrypt is CPU-bound). Their results,
/// successes and failures alike, are cached under an HMAC-SHA-256 of (user, password) with a
/// per-process random key, so a scrape does not pay bcrypt each time and the cache in memory is
/// no shortcut around bcrypt. An unknown user is checked against a dummy hash of the same cost,
/// so timing does not tell which users exist.
pub struct BasicAuth {
    users: Vec<User>,
    /// A random hash with the highest cost of the configured ones.
    dummy_hash: Zeroizing<String>,
    /// Key of the cache's HMAC, random per process.
    cache_key: Zeroizing<[u8; 32]>,
    /// Verification results.
    cache: Mutex<AuthCache>,
    /// One bcrypt verification at a time.
    bcrypt_turn: tokio::sync::Semaphore,
}

#[derive(Default)]
struct AuthCache {
    passed: HashSet<[u8; 32]>,
    failed: HashSet<[u8; 32]>,
}

impl BasicAuth {
    /// Whether the `Authorization` header carries a configured user and its password.
    pub async fn authorize(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some((user, password)) = authorization.and_then(basic_credentials) else {
            return false;
        };
        let key = self.cache_key_of(&user, &password);
        if let Some(known) = self.cached(&key) {
            return known;
        }
        let Ok(_turn) = self.bcrypt_turn.acquire().await else {
            return false;
        };
        // Another request may have verified the same credentials while this one waited.
        if let Some(known) = self.cached(&key) {
            return known;
        }
        let index = self.find_user(&user);
        let hash = match index {
            Some(i) => self.users[i].hash.clone(),
            None => self.dummy_hash.clone(),
        };
        let matches = tokio::task::spawn_blocking(move || {
            bcrypt::verify(password.as_slice(), hash.as_str()).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        let authorized = matches && index.is_some();
        self.remember(key, authorized);
        authorized
    }

    /// The index of the user named `name`, comparing every configured name in constant time.
    fn find_user(&self, name: &[u8]) -> Option<usize> {
        let digest: [u8; 32] = Sha256::digest(name).into();
        let mut found = u32::MAX;
        for (index, user) in self.users.iter().enumerate() {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            found.conditional_assign(&index, user.name_digest.ct_eq(&digest));
        }
        (found != u32::MAX).then_some(found as usize)
    }

    fn cache_key_of(&self, user: &[u8], password: &[u8]) -> [u8; 32] {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&*self.cache_key).expect("HMAC takes any key length");
        mac.update(&(user.len() as u64).to_be_bytes());
        mac.update(user);
        mac.update(password);
        mac.finalize().into_bytes().into()
    }

    fn cached(&self, key: &[u8; 32]) -> Option<bool> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.passed.contains(key) {
            Some(true)
        } else if cache.failed.contains(key) {
            Some(false)
        } else {
            None
        }
    }

    fn remember(&self, key: [u8; 32], authorized: bool) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let set = if authorized {
            &mut cache.passed
        } else {
            &mut cache.failed
        };
        if set.len() >= AUTH_CACHE_LIMIT {
            set.clear();
        }
        set.insert(key);
    }
}

/// `(user, password)` of an `Authorization: Basic …` header.
fn basic_credentials(header: &HeaderValue) -> Option<(Vec<u8>, Zeroizing<Vec<u8>>)> {
    let text = header.to_str().ok()?.trim();
    let (scheme, encoded) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?,
    );
    let colon = decoded.iter().position(|&b| b == b':')?;
    Some((
        decoded[..colon].to_vec(),
        Zeroizing::new(decoded[colon + 1..].to_vec()),
    ))
}

fn basic_auth(
    raw: BTreeMap<String, String>,
    problems: &mut Vec<FieldProblem>,
) -> Option<BasicAuth> {
    let mut users = Vec::new();
    let mut highest_cost = 4;
    for (name, hash) in raw {
        let hash = Zeroizing::new(hash);
        let field = format!("basic_auth_users.{name}");
        if name.contains(':') {
            problems.push(problem(
                &field,
                "contains ':', which HTTP basic authentication cannot carry in a user name: rename the user",
            ));
            continue;
        }
        let parts = hash.trim().parse::<bcrypt::HashParts>();
        match parts {
            Err(_) => problems.push(problem(
                &field,
                "is not a bcrypt hash (the value is not shown; a hash looks like $2y$10$ followed by 53 characters): create one with htpasswd -nBC 10 \"\" | tr -d ':\\n'",
            )),
            Ok(parts) if !(4..=MAX_BCRYPT_COST).contains(&parts.get_cost()) => {
                problems.push(problem(
                    &field,
                    format!(
                        "has bcrypt cost {}, outside 4 to {MAX_BCRYPT_COST} (higher costs make every new password check take many seconds): hash the password again with cost 10 to 12",
                        parts.get_cost()
                    ),
                ))
            }
            Ok(parts) => {
                highest_cost = highest_cost.max(parts.get_cost());
                users.push(User {
                    name_digest: Sha256::digest(name.as_bytes()).into(),
                    hash: Zeroizing::new(hash.trim().to_owned()),
                });
            }
        }
    }
    if users.is_empty() {
        return None;
    }
    let mut salt = [0u8; 16];
    let mut digest = [0u8; 23];
    let mut cache_key = Zeroizing::new([0u8; 32]);
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut salt);
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut digest);
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut *cache_key);
    let bcrypt_base64 = base64::engine::GeneralPurpose::new(
        &base64::alphabet::BCRYPT,
        base64::engine::general_purpose::NO_PAD,
    );
    let dummy_hash = Zeroizing::new(format!(
        "$2b${highest_cost:02}${}{}",
        bcrypt_base64.encode(salt),
        bcrypt_base64.encode(digest)
    ));
    Some(BasicAuth {
        users,
        dummy_hash,
        cache_key,
        cache: Mutex::new(AuthCache::default()),
        bcrypt_turn: tokio::sync::Semaphore::new(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// bcrypt of "secret" at cost 4 (fast for tests).
    fn hash(password: &str) -> String {
        bcrypt::hash(password, 4).unwrap()
    }

    fn refused(text: &str) -> Vec<FieldProblem> {
        WebSecurity::from_text(text, Path::new(".")).unwrap_err()
    }

    fn basic(user: &str, password: &str) -> HeaderValue {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        HeaderValue::from_str(&format!("Basic {token}")).unwrap()
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
            problems[0].field.starts_with("tls_server_config"),
            "{problems:?}"
        );
        assert!(problems[0].message.contains("cert_fil"), "{problems:?}");
        assert!(
            problems[0].message.contains("fix the spelling"),
            "{problems:?}"
        );
    }

    #[tokio::test]
    async fn basic_auth_accepts_only_the_right_password_and_caches_both_outcomes() {
        let text = format!(
            "basic_auth_users:\n  alice: '{}'\n  bob: '{}'\n",
            hash("secret"),
            hash("other")
        );
        let security = WebSecurity::from_text(&text, Path::new(".")).unwrap();
        let auth = security.basic_auth().unwrap();
        assert!(auth.authorize(Some(&basic("alice", "secret"))).await);
        assert!(auth.authorize(Some(&basic("alice", "secret"))).await);
        assert!(auth.authorize(Some(&basic("bob", "other"))).await);
        assert!(!auth.authorize(Some(&basic("alice", "other"))).await);
        assert!(!auth.authorize(Some(&basic("alice", "wrong"))).await);
        assert!(!auth.authorize(Some(&basic("carol", "secret"))).await);
        assert!(!auth.authorize(None).await);
        assert!(
            !auth
                .authorize(Some(&HeaderValue::from_static("Bearer x")))
                .await
        );
        let cache = auth.cache.lock().unwrap();
        assert_eq!(cache.passed.len(), 2);
        assert_eq!(cache.failed.len(), 3);
    }

    #[test]
    fn user_lookup_finds_every_user_and_no_other() {
        let text = format!(
            "basic_auth_users:\n  a: '{h}'\n  ab: '{h}'\n  '': '{h}'\n",
            h = hash("x")
        );
        let security = WebSecurity::from_text(&text, Path::new(".")).unwrap();
        let auth = security.basic_auth().unwrap();
        let mut found: Vec<usize> = [&b"a"[..], b"ab", b""]
            .iter()
            .map(|name| auth.find_user(name).unwrap())
            .collect();
        found.sort_unstable();
        assert_eq!(found, [0, 1, 2]);
        assert_eq!(auth.find_user(b"abc"), None);
        assert_eq!(auth.find_user(b"A"), None);
    }

    #[test]
    fn the_dummy_hash_is_a_valid_hash_of_the_highest_cost() {
        let text = format!(
            "basic_auth_users:\n  a: '{}'\n  b: '{}'\n",
            hash("x"),
            bcrypt::hash("y", 5).unwrap()
        );
        let security = WebSecurity::from_text(&text, Path::new(".")).unwrap();
        let dummy = &security.basic_auth().unwrap().dummy_hash;
        let parts: bcrypt::HashParts = dummy.parse().unwrap();
        assert_eq!(parts.get_cost(), 5);
        assert!(!bcrypt::verify("x", dummy).unwrap());
    }

    #[test]
    fn bad_hashes_are_refused_without_showing_them() {
        let problems = refused(
            "basic_auth_users:\n  alice: hunter2-plaintext\n  bob: 12345\n  'c:d': '$2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG'\n",
        );
        let text = format!("{problems:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("12345"), "{text}");
        assert!(!text.contains("X0h1g"), "{text}");
        let problems = refused("basic_auth_users:\n  alice: hunter2-plaintext\n");
        assert_eq!(problems[0].field, "basic_auth_users.alice");
        assert!(problems[0].message.contains("htpasswd"), "{problems:?}");
        let problems = refused("basic_auth_users:\n  bob: 12345\n");
        assert!(
            problems[0].field.starts_with("basic_auth_users"),
            "{problems:?}"
        );
        assert!(!problems[0].message.contains("12345"), "{problems:?}");
        let costly = "$2y$20$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG";
        let problems = refused(&format!("basic_auth_users:\n  alice: '{costly}'\n"));
        assert!(problems[0].message.contains("cost 20"), "{problems:?}");
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
                problems[0].field,
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

    #[test]
    fn tls_without_a_certificate_is_refused() {
        let problems = refused("tls_server_config:\n  min_version: TLS13\n");
        assert_eq!(problems[0].field, "tls_server_config.cert_file");
        let problems = refused("tls_server_config:\n  cert_file: /nonexistent/c.pem\n");
        assert_eq!(problems[0].field, "tls_server_config.key_file");
    }

    #[test]
    fn rate_limit_needs_a_burst_and_zero_turns_it_off() {
        let problems = refused("rate_limit:\n  interval: 1s\n");
        assert_eq!(problems[0].field, "rate_limit.burst");
        let off = WebSecurity::from_text("rate_limit:\n  interval: 0\n", Path::new(".")).unwrap();
        assert!(off.rate_limit().is_none());
        let limiter = RateLimiter::new(Duration::from_secs(3600), 2);
        assert!(limiter.allow() && limiter.allow());
        assert!(!limiter.allow());
    }

    #[test]
    fn basic_credentials_are_parsed() {
        let (user, password) = basic_credentials(&basic("a", "b:c")).unwrap();
        assert_eq!(user, b"a");
        assert_eq!(password.as_slice(), b"b:c");
        assert!(basic_credentials(&HeaderValue::from_static("Basic !!!")).is_none());
        assert!(basic_credentials(&HeaderValue::from_static("basic YTpi")).is_some());
    }
}
