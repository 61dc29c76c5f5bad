//! `tls_server_config`: the rustls server configuration built from the web configuration file,
//! and the verifiers of client certificates (`client_auth_type`, `client_allowed_sans`).
//!
//! Owns the mapping of Go's names (versions, cipher suites, curves, client auth types) to what
//! rustls implements, refusing with the reason what it does not.
//! Must not: weaken a setting it cannot honour, or put a private key into a message.

use std::path::{Path, PathBuf};
use std::sync::Arc;

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
use zeroize::Zeroizing;

use super::problem;
use crate::problem::Problem;

/// `tls_server_config:`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
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

/// `client_auth_type`: whether and how client certificates are asked for, as in Go's
/// `crypto/tls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientAuth {
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
        problems: &mut Vec<Problem>,
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

fn tls_version(text: &str, field: &str) -> Result<&'static SupportedProtocolVersion, Problem> {
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
pub(super) fn server_config(
    raw: RawTls,
    base: &Path,
    problems: &mut Vec<Problem>,
) -> Option<(Arc<ServerConfig>, ClientAuth)> {
    let before = problems.len();
    let RawTls {
        cert,
        key,
        client_ca,
        cert_file,
        key_file,
        client_auth_type,
        client_ca_file,
        cipher_suites,
        curve_preferences,
        min_version,
        max_version,
        prefer_server_cipher_suites,
        client_allowed_sans,
    } = raw;
    let cert = PemSource::pick(cert, cert_file, "cert", "cert_file", base, problems);
    let key = PemSource::pick(key, key_file, "key", "key_file", base, problems);
    let client_ca = PemSource::pick(
        client_ca,
        client_ca_file,
        "client_ca",
        "client_ca_file",
        base,
        problems,
    );
    if problems.len() > before {
        return None;
    }
    let (cert, key) = certificate_and_key(cert, key, problems)?;
    let (chain, key_der) = load_identity(&cert, &key, problems);
    let versions = protocol_versions(min_version.as_deref(), max_version.as_deref(), problems);
    let tls12_allowed = versions
        .iter()
        .any(|v| v.version == rustls::ProtocolVersion::TLSv1_2);
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(names) = cipher_suites.filter(|names| !names.is_empty()) {
        provider.cipher_suites = chosen_cipher_suites(&names, tls12_allowed, problems);
    }
    if let Some(names) = curve_preferences.filter(|names| !names.is_empty()) {
        provider.kx_groups = chosen_curves(&names, problems);
    }
    let client_auth = client_auth(client_auth_type.as_deref(), problems);
    let roots = client_roots(client_ca.as_ref(), client_auth, problems);
    let allowed_sans = allowed_sans(client_allowed_sans, client_auth, problems);
    if problems.len() > before {
        return None;
    }
    let (chain, key_der, client_auth) = (chain?, key_der?, client_auth?);
    let provider = Arc::new(provider);
    let identity = Identity {
        cert: &cert,
        key: &key,
        chain,
        key_der,
    };
    let mut config = build(
        identity,
        &provider,
        &versions,
        tls12_allowed,
        ClientPolicy {
            client_auth,
            roots,
            allowed_sans,
        },
        problems,
    )?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ignore_client_order = prefer_server_cipher_suites.unwrap_or(true);
    Some((Arc::new(config), client_auth))
}

/// Both the certificate and its key, or a problem naming the one missing.
fn certificate_and_key(
    cert: Option<PemSource>,
    key: Option<PemSource>,
    problems: &mut Vec<Problem>,
) -> Option<(PemSource, PemSource)> {
    match (cert, key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (cert, _) => {
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
            None
        }
    }
}

/// The certificate chain and the private key, read and parsed; warns when the certificate is
/// expired or the key file readable by others.
fn load_identity(
    cert: &PemSource,
    key: &PemSource,
    problems: &mut Vec<Problem>,
) -> (
    Option<Vec<CertificateDer<'static>>>,
    Option<PrivateKeyDer<'static>>,
) {
    let chain = certificates(cert)
        .map_err(|m| problems.push(problem("tls_server_config.cert_file", m)))
        .ok();
    let key_der = private_key(key)
        .map_err(|m| problems.push(problem("tls_server_config.key_file", m)))
        .ok();
    if let (Some(chain), PemSource::File(path)) = (&chain, cert) {
        warn_if_expired(&chain[0], path);
    }
    if let PemSource::File(path) = key {
        crate::problem::warn_if_readable_by_others(
            path,
            &format!("TLS key file {}", path.display()),
        );
    }
    (chain, key_der)
}

/// The versions from `min_version` to `max_version` (TLS 1.2 and 1.3 by default).
fn protocol_versions(
    min_version: Option<&str>,
    max_version: Option<&str>,
    problems: &mut Vec<Problem>,
) -> Vec<&'static SupportedProtocolVersion> {
    let min = match min_version {
        None | Some("") => Some(&rustls::version::TLS12),
        Some(text) => tls_version(text, "tls_server_config.min_version")
            .map_err(|p| problems.push(p))
            .ok(),
    };
    let max = match max_version {
        None | Some("") => Some(&rustls::version::TLS13),
        Some(text) => tls_version(text, "tls_server_config.max_version")
            .map_err(|p| problems.push(p))
            .ok(),
    };
    let (Some(min), Some(max)) = (min, max) else {
        return Vec::new();
    };
    let rank = |v: &SupportedProtocolVersion| u16::from(v.version);
    if rank(min) > rank(max) {
        problems.push(problem(
            "tls_server_config.max_version",
            "is lower than min_version: raise max_version or lower min_version",
        ));
        return Vec::new();
    }
    [&rustls::version::TLS12, &rustls::version::TLS13]
        .into_iter()
        .filter(|v| rank(v) >= rank(min) && rank(v) <= rank(max))
        .collect()
}

/// `cipher_suites`: every TLS 1.3 suite, then the TLS 1.2 suites named, in their order.
fn chosen_cipher_suites(
    names: &[String],
    tls12_allowed: bool,
    problems: &mut Vec<Problem>,
) -> Vec<SupportedCipherSuite> {
    let mut tls12 = Vec::new();
    for name in names {
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
    let mut suites: Vec<SupportedCipherSuite> = rustls::crypto::ring::default_provider()
        .cipher_suites
        .into_iter()
        .filter(|s| matches!(s, SupportedCipherSuite::Tls13(_)))
        .collect();
    suites.extend(tls12);
    suites
}

/// `curve_preferences`: the named groups, in their order, each once.
fn chosen_curves(
    names: &[String],
    problems: &mut Vec<Problem>,
) -> Vec<&'static dyn SupportedKxGroup> {
    let mut groups: Vec<&'static dyn SupportedKxGroup> = Vec::new();
    for name in names {
        match curve(name) {
            Ok(group) => {
                if !groups.iter().any(|g| g.name() == group.name()) {
                    groups.push(group);
                }
            }
            Err(message) => problems.push(problem("tls_server_config.curve_preferences", message)),
        }
    }
    groups
}

/// `client_auth_type` (`NoClientCert` when absent).
fn client_auth(text: Option<&str>, problems: &mut Vec<Problem>) -> Option<ClientAuth> {
    let Some(text) = text else {
        return Some(ClientAuth::NoClientCert);
    };
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

/// The CAs of `client_ca_file`, when the client auth type uses them; a CA without a type that
/// checks it, or a verifying type without a CA, is a problem.
fn client_roots(
    client_ca: Option<&PemSource>,
    client_auth: Option<ClientAuth>,
    problems: &mut Vec<Problem>,
) -> Option<Arc<RootCertStore>> {
    let field = "tls_server_config.client_ca_file";
    match (client_ca, client_auth) {
        (Some(_), Some(ClientAuth::NoClientCert)) => {
            problems.push(problem(
                field,
                "is set but client_auth_type is NoClientCert, so no client certificate would be checked: set client_auth_type: RequireAndVerifyClientCert, or remove client_ca_file",
            ));
            None
        }
        (None, Some(auth)) if auth.verifies() => {
            problems.push(problem(
                field,
                format!(
                    "is required when client_auth_type is {auth:?}: set it to the PEM certificate of the CA that signs the client certificates"
                ),
            ));
            None
        }
        (Some(source), Some(_)) => {
            let certs = certificates(source)
                .map_err(|message| problems.push(problem(field, message)))
                .ok()?;
            let mut roots = RootCertStore::empty();
            let (added, _ignored) = roots.add_parsable_certificates(certs);
            if added == 0 {
                problems.push(problem(
                    field,
                    format!(
                        "{} holds no usable CA certificate: give the PEM certificate of the CA that signs the client certificates",
                        source.describe()
                    ),
                ));
                return None;
            }
            Some(Arc::new(roots))
        }
        _ => None,
    }
}

/// `client_allowed_sans`: only with a client auth type that requires a certificate.
fn allowed_sans(
    sans: Option<Vec<String>>,
    client_auth: Option<ClientAuth>,
    problems: &mut Vec<Problem>,
) -> Option<Vec<String>> {
    let field = "tls_server_config.client_allowed_sans";
    let sans = sans?;
    if sans.is_empty() {
        problems.push(problem(
            field,
            "is empty, which would refuse every client: list the allowed names, or remove the field",
        ));
        return None;
    }
    if !matches!(
        client_auth,
        Some(ClientAuth::RequireAnyClientCert | ClientAuth::RequireAndVerifyClientCert)
    ) {
        problems.push(problem(
            field,
            "needs client_auth_type RequireAndVerifyClientCert (or RequireAnyClientCert): with the other types a client may send no certificate, leaving no name to check",
        ));
    }
    Some(sans)
}

/// The server's certificate chain and key, with where they came from (for messages).
struct Identity<'a> {
    cert: &'a PemSource,
    key: &'a PemSource,
    chain: Vec<CertificateDer<'static>>,
    key_der: PrivateKeyDer<'static>,
}

/// How client certificates are asked for and checked.
struct ClientPolicy {
    client_auth: ClientAuth,
    roots: Option<Arc<RootCertStore>>,
    allowed_sans: Option<Vec<String>>,
}

/// Assembles the rustls configuration from checked parts; what rustls still refuses becomes a
/// problem.
fn build(
    identity: Identity<'_>,
    provider: &Arc<CryptoProvider>,
    versions: &[&'static SupportedProtocolVersion],
    tls12_allowed: bool,
    clients: ClientPolicy,
    problems: &mut Vec<Problem>,
) -> Option<ServerConfig> {
    let ClientPolicy {
        client_auth,
        roots,
        allowed_sans,
    } = clients;
    let verifier = client_verifier(client_auth, roots, provider, allowed_sans)
        .map_err(|message| problems.push(problem("tls_server_config.client_ca_file", message)))
        .ok()?;
    if matches!(
        client_auth,
        ClientAuth::RequestClientCert | ClientAuth::RequireAnyClientCert
    ) {
        tracing::warn!(
            client_auth_type = ?client_auth,
            "client certificates are not verified with this client_auth_type: anyone can make one; use RequireAndVerifyClientCert with client_ca_file to authenticate clients"
        );
    }
    let builder = ServerConfig::builder_with_provider(Arc::clone(provider))
        .with_protocol_versions(versions)
        .map_err(|error| {
            problems.push(problem(
                "tls_server_config.cipher_suites",
                format!("cannot be used with the TLS versions allowed ({error})"),
            ))
        })
        .ok()?;
    check_key_usable(provider, &identity, tls12_allowed, problems)?;
    let Identity {
        cert,
        key,
        chain,
        key_der,
    } = identity;
    match builder
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key_der)
    {
        Ok(config) => Some(config),
        Err(rustls::Error::InconsistentKeys(_)) => {
            problems.push(problem(
                "tls_server_config.key_file",
                format!(
                    "{} does not match the certificate in {}: give the private key that belongs to that certificate",
                    key.describe(),
                    cert.describe()
                ),
            ));
            None
        }
        Err(error) => {
            problems.push(problem(
                "tls_server_config.cert_file",
                format!(
                    "{} cannot be used with its key ({error}): check that cert_file starts with the server certificate and key_file holds its key",
                    cert.describe()
                ),
            ));
            None
        }
    }
}

/// The key must be of a type the provider can sign with and, while TLS 1.2 is allowed, have
/// a TLS 1.2 suite for its algorithm.
fn check_key_usable(
    provider: &CryptoProvider,
    identity: &Identity<'_>,
    tls12_allowed: bool,
    problems: &mut Vec<Problem>,
) -> Option<()> {
    let Ok(algorithm) = provider
        .key_provider
        .load_private_key(identity.key_der.clone_key())
        .map(|key| key.algorithm())
    else {
        problems.push(problem(
            "tls_server_config.key_file",
            format!(
                "{} holds a private key of a type the exporter cannot use: use an RSA (2048 bits or more), ECDSA P-256/P-384 or Ed25519 key",
                identity.key.describe()
            ),
        ));
        return None;
    };
    let usable = !tls12_allowed
        || provider.cipher_suites.iter().any(|suite| {
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
    Some(())
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

#[cfg(test)]
mod tests {
    use super::super::WebSecurity;
    use crate::problem::Problem;
    use std::path::Path;
    fn refused(text: &str) -> Vec<Problem> {
        WebSecurity::from_text(text, Path::new(".")).unwrap_err()
    }

    #[test]
    fn tls_without_a_certificate_is_refused() {
        let problems = refused("tls_server_config:\n  min_version: TLS13\n");
        assert_eq!(problems[0].place, "tls_server_config.cert_file");
        let problems = refused("tls_server_config:\n  cert_file: /nonexistent/c.pem\n");
        assert_eq!(problems[0].place, "tls_server_config.key_file");
    }
}
