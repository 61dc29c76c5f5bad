//! `tls_server_config`: the rustls server configuration built from the web configuration file,
//! and the verifiers of client certificates (`client_auth_type`, `client_allowed_sans`).
//!
//! Owns the mapping of Go's names (versions, cipher suites, curves, client auth types) to what
//! rustls implements, refusing with the reason what it does not.
//! Must not: weaken a setting it cannot honour, or put a private key into a message.
//!
//! # Layout
//!
//! This file is the section's schema and [`server_config`], which runs the steps in order:
//! `files` reads the certificate, the key and the client CAs; `protocol` maps versions,
//! suites and curves; `client` picks and builds the client-certificate verifier; `build`
//! assembles the rustls configuration.

mod build;
mod client;
mod files;
mod protocol;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::server::ServerConfig;
use serde::Deserialize;

use crate::problem::Problem;
use build::{ClientPolicy, Identity, build};
pub(crate) use client::ClientAuth;
use client::{allowed_sans, client_auth, client_roots};
use files::{PemSource, certificate_and_key, load_identity};
use protocol::{chosen_cipher_suites, chosen_curves, protocol_versions};

/// `tls_server_config:` as written; each field keeps Go's name (see the module header of
/// `web_file` for what each accepts).
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
