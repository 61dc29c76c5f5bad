//! `min_version`, `max_version`, `cipher_suites` and `curve_preferences`: Go's names mapped
//! to what rustls (with ring) implements.
//!
//! Must not: weaken a setting it cannot honour; a name it does not implement is refused with
//! the reason and the names it accepts.

use rustls::crypto::SupportedKxGroup;
use rustls::{SupportedCipherSuite, SupportedProtocolVersion};

use super::super::problem;
use crate::problem::Problem;

/// `min_version` or `max_version` (`field`): `TLS12` or `TLS13`; older versions are refused
/// with the reason.
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

/// Go's name of a curve that rustls (ring) implements, or why not.
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

/// The versions from `min_version` to `max_version` (TLS 1.2 and 1.3 by default).
pub(super) fn protocol_versions(
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
pub(super) fn chosen_cipher_suites(
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
pub(super) fn chosen_curves(
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
