//! The rustls [`ServerConfig`] assembled from checked parts: the identity, the protocol
//! versions and suites, and the client-certificate verifier. What rustls still refuses (a key
//! that does not match its certificate, a key type without a usable suite) becomes a problem.
//!
//! Must not: name a private key's contents in a problem (only where it came from).

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ServerConfig;
use rustls::{RootCertStore, SupportedCipherSuite, SupportedProtocolVersion};

use super::super::problem;
use super::client::{ClientAuth, client_verifier};
use super::files::PemSource;
use crate::problem::Problem;

/// The server's certificate chain and key, with where they came from (for messages).
pub(super) struct Identity<'a> {
    /// Where the certificate chain came from.
    pub(super) cert: &'a PemSource,
    /// Where the private key came from.
    pub(super) key: &'a PemSource,
    /// The certificate chain, server certificate first.
    pub(super) chain: Vec<CertificateDer<'static>>,
    /// The private key.
    pub(super) key_der: PrivateKeyDer<'static>,
}

/// How client certificates are asked for and checked.
pub(super) struct ClientPolicy {
    /// `client_auth_type`.
    pub(super) client_auth: ClientAuth,
    /// The CAs of `client_ca_file`, when the type verifies certificates.
    pub(super) roots: Option<Arc<RootCertStore>>,
    /// `client_allowed_sans`, when set.
    pub(super) allowed_sans: Option<Vec<String>>,
}

/// Assembles the rustls configuration from checked parts; what rustls still refuses becomes a
/// problem.
pub(super) fn build(
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
