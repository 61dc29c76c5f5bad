//! Where the certificate, its key and the client CAs come from (inline PEM text or a file,
//! relative to the web configuration file), reading and parsing them, and the warnings about
//! them (an expired certificate, a key file readable by others).
//!
//! Must not: put a private key's bytes into a message, or keep them longer than needed (they
//! are zeroed when dropped).

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use zeroize::Zeroizing;

use super::super::problem;
use crate::problem::Problem;

/// Where a PEM document comes from: inline text, or a file.
pub(super) enum PemSource {
    /// PEM text written in the file (`cert`, `key`, `client_ca`); zeroed when dropped.
    Inline(Zeroizing<String>),
    /// A file (`cert_file`, `key_file`, `client_ca_file`), already joined to the base directory.
    File(PathBuf),
}

impl PemSource {
    /// One of the inline field and the file field, or a problem when both are set.
    pub(super) fn pick(
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
    pub(super) fn describe(&self) -> String {
        match self {
            PemSource::Inline(_) => "the inline value".into(),
            PemSource::File(path) => path.display().to_string(),
        }
    }
}

/// Every certificate in a PEM document, or a message saying what is wrong.
pub(super) fn certificates(source: &PemSource) -> Result<Vec<CertificateDer<'static>>, String> {
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
pub(super) fn private_key(source: &PemSource) -> Result<PrivateKeyDer<'static>, String> {
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

/// Both the certificate and its key, or a problem naming the one missing.
pub(super) fn certificate_and_key(
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
pub(super) fn load_identity(
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
