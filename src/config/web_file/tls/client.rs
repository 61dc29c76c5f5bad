//! `client_auth_type`, `client_ca_file` and `client_allowed_sans`: which client certificates
//! are asked for, and the verifiers that check them during each handshake.
//!
//! Must not: accept a certificate the configured policy refuses, or let `client_allowed_sans`
//! pass a client whose certificate the inner verifier has not accepted first.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};

use super::super::problem;
use super::files::{PemSource, certificates};
use crate::problem::Problem;

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
    /// Go's name (and the legacy `RequireClientCert`); `None` for anything else.
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

    /// Whether certificates are checked against `client_ca_file` (which is then required).
    fn verifies(self) -> bool {
        matches!(
            self,
            ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
        )
    }
}

/// `client_auth_type` (`NoClientCert` when absent).
pub(super) fn client_auth(text: Option<&str>, problems: &mut Vec<Problem>) -> Option<ClientAuth> {
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
pub(super) fn client_roots(
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
pub(super) fn allowed_sans(
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

/// The verifier of client certificates for `client_auth`, wrapped in the SAN check when
/// `client_allowed_sans` is set.
pub(super) fn client_verifier(
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
    /// The verifier of `client_auth_type`, asked first.
    inner: Arc<dyn ClientCertVerifier>,
    /// `client_allowed_sans` as written.
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
