//! Why a call to Kraken failed, as a closed set an operator can alert on.
//!
//! Owns the mapping from Kraken's error strings, HTTP statuses and transport failures to a
//! [`Reason`], and what each reason means for retrying.
//! Must not: carry request bodies, headers or credentials in any error value.

use std::time::{Duration, SystemTime};

/// Why a call failed: the `reason` label of `kraken_request_errors_total`.
///
/// The set is closed so dashboards and alert rules can list every value. Kraken's error strings
/// are matched by prefix ([`classify`]); an HTTP status other than 200 is classified by its body
/// when the body is Kraken's error envelope, else by the status ([`reason_for_status`]). The
/// reason table in `docs/metrics.md` lists the same strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// `EAPI:Invalid key`: the key is unknown, revoked, or was pasted with extra characters.
    InvalidKey,
    /// `EAPI:Invalid signature`: the secret does not belong to the key, or the 2FA password sent
    /// is wrong.
    InvalidSignature,
    /// `EAPI:Invalid nonce`: another client uses the same key, or it once used a larger nonce scale.
    InvalidNonce,
    /// `EGeneral:Permission denied` or `EAPI:Permission denied`: the key lacks the permission the
    /// call needs, or its 2FA password was not sent.
    PermissionDenied,
    /// `EAPI:Rate limit exceeded`, `EAuth:Rate limit exceeded` (the key's counter of private
    /// calls), `EGeneral:Too many requests` (the public limit of about one call per second per IP
    /// address), `EService:Throttled:<ts>` (also written `EService: Throttled: <ts>`), HTTP 429.
    RateLimited,
    /// `EGeneral:Temporary lockout`: too many failed calls; Kraken blocks the key for minutes.
    Lockout,
    /// `EService:*` other than Throttled (such as `EService:Unavailable`, `EService:Busy`,
    /// `EService:Deadline elapsed`, or `EService:Market in post_only mode`, a trading mode that
    /// refuses no read), `EGeneral:Internal error` (with or without a `:<code>`), `EDatabase:*`
    /// (such as `EDatabase:Internal error`), HTTP 5xx, Cloudflare 52x: Kraken is down, overloaded
    /// or in a restricted mode for now.
    Unavailable,
    /// No complete answer within the per-request timeout.
    Timeout,
    /// Connection refused, DNS or TLS failure, a redirect (HTTP 3xx, never followed), or an HTTP
    /// status other than 200, 429 and 5xx whose body is not Kraken's error envelope (a proxy's
    /// page, an empty body).
    Http,
    /// The answer was not the JSON Kraken documents (HTML, truncated, too large).
    Decode,
    /// Kraken answered without an error and without the result the method documents: `result`
    /// missing, `null`, or not a JSON object (an array, a string, a number). For balances this is
    /// not an empty account (that is `"result":{}`), so nothing is read from it.
    NoResult,
    /// The nonce state file could not be read or written on this machine: a local fault, not
    /// Kraken's. Nothing was sent.
    NonceFile,
    /// Any other Kraken error, such as `EGeneral:Invalid arguments`, `EAPI:Feature disabled` or
    /// `EGeneral:Unknown method` (which Kraken sends with HTTP 404).
    Other,
}

impl Reason {
    /// Every reason, in label order; used to initialise the error counters at zero.
    pub const ALL: [Reason; 13] = [
        Reason::InvalidKey,
        Reason::InvalidSignature,
        Reason::InvalidNonce,
        Reason::PermissionDenied,
        Reason::RateLimited,
        Reason::Lockout,
        Reason::Unavailable,
        Reason::Timeout,
        Reason::Http,
        Reason::Decode,
        Reason::NoResult,
        Reason::NonceFile,
        Reason::Other,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidKey => "invalid_key",
            Reason::InvalidSignature => "invalid_signature",
            Reason::InvalidNonce => "invalid_nonce",
            Reason::PermissionDenied => "permission_denied",
            Reason::RateLimited => "rate_limited",
            Reason::Lockout => "lockout",
            Reason::Unavailable => "unavailable",
            Reason::Timeout => "timeout",
            Reason::Http => "http",
            Reason::Decode => "decode",
            Reason::NoResult => "no_result",
            Reason::NonceFile => "nonce_file",
            Reason::Other => "other",
        }
    }

    /// What an operator should do about it, for `check` and the logs.
    pub fn advice(self) -> &'static str {
        match self {
            Reason::InvalidKey => {
                "Kraken does not know this API key: copy the key again from Settings > API (no spaces or newlines), and check that it was not deleted; if the key has no 2FA password, do not set KRAKEN_API_OTP"
            }
            Reason::InvalidSignature => {
                "the private key does not match the API key, or the 2FA password is wrong: copy the private key of this same key again, and check KRAKEN_API_OTP if the key has an API 2FA password"
            }
            Reason::InvalidNonce => {
                "Kraken saw a larger nonce for this key: give this exporter its own API key (never share it with a bot or script), or raise the key's nonce window; if another client once signed with microsecond or nanosecond nonces (1000 times this exporter's milliseconds or more), Kraken refuses every nonce of this exporter for good and only a new key helps"
            }
            Reason::PermissionDenied => {
                "the key lacks a permission or its 2FA password is missing: enable 'Funds: Query' on the key and, if the key has an API 2FA password, set KRAKEN_API_OTP"
            }
            Reason::RateLimited => {
                "Kraken's rate limit is exhausted: for private calls it is the key's call counter (raise --refresh.min-interval and make sure no other client uses the key); EGeneral:Too many requests is the public limit of about one call per second per IP address (make sure no other program on this address calls Kraken's public API often)"
            }
            Reason::Lockout => {
                "Kraken locked the key out after too many failed calls: wait about 15 minutes before trying again, then fix the key or secret"
            }
            Reason::Unavailable => {
                "Kraken is unavailable or in maintenance: see status.kraken.com and try again later"
            }
            Reason::Timeout => {
                "Kraken did not answer in time: check the network path to --kraken.api-url or raise --kraken.timeout"
            }
            Reason::Http => {
                "the request did not reach Kraken: check --kraken.api-url, DNS, proxies and firewalls"
            }
            Reason::Decode => {
                "the answer was not Kraken's JSON: check that --kraken.api-url points at Kraken and not at a proxy's error page"
            }
            Reason::NoResult => {
                "Kraken answered without an error and without the result (no balances were in it): the last good balances are kept and the account reads down for this refresh; if it persists, see status.kraken.com"
            }
            Reason::NonceFile => {
                "the nonce state file could not be written (nothing was sent to Kraken): make the file's directory writable by the user the exporter runs as and check that its disk is not full, or choose another --kraken.nonce-file (nonce_file in the config file)"
            }
            Reason::Other => "Kraken refused the call: see the error message",
        }
    }

    /// Whether calling again soon is pointless or harmful, so the next call must wait out a
    /// backoff. Authentication failures count towards Kraken's lockout, so they back off too.
    pub fn backoff_base(self) -> Duration {
        match self {
            Reason::Lockout => Duration::from_secs(15 * 60),
            Reason::InvalidKey | Reason::InvalidSignature | Reason::PermissionDenied => {
                Duration::from_secs(60)
            }
            Reason::RateLimited => Duration::from_secs(30),
            Reason::InvalidNonce => Duration::from_secs(30),
            Reason::Unavailable
            | Reason::Timeout
            | Reason::Http
            | Reason::Decode
            | Reason::NoResult => Duration::from_secs(5),
            Reason::NonceFile | Reason::Other => Duration::from_secs(30),
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed call to Kraken. No variant holds a credential, a header or a request body.
#[derive(Debug, thiserror::Error)]
pub enum KrakenError {
    /// Kraken answered with an error in its JSON envelope.
    #[error("Kraken answered {message}")]
    Api {
        /// The classification of `message`.
        reason: Reason,
        /// Kraken's first error string, such as `EAPI:Invalid key`.
        message: String,
        /// For `EService:Throttled:<ts>`, when Kraken will accept calls again.
        retry_at: Option<SystemTime>,
    },
    /// The HTTP status was not 200.
    #[error("HTTP status {status}{}", path.map(|path| format!(" for {path}")).unwrap_or_default())]
    Status {
        /// The status code.
        status: u16,
        /// The method's URL path (`/0/private/BalanceEx`), never a query string or a body; `None`
        /// until the client that made the call adds it.
        path: Option<&'static str>,
    },
    /// The answer was a redirect (HTTP 3xx). Redirects are never followed: following one would
    /// send the `API-Key` and `API-Sign` headers to another address.
    #[error(
        "HTTP status {status}: a redirect, which is not followed so the API key is never sent elsewhere; give Kraken's own base URL, like https://api.kraken.com"
    )]
    Redirected {
        /// The status code (301, 302, 307, 308, ...).
        status: u16,
    },
    /// No complete answer within the per-request timeout.
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
    /// The request could not be sent: connection, DNS or TLS failure.
    #[error("request failed: {0}")]
    Transport(String),
    /// The body was not the JSON Kraken documents.
    #[error("the answer is not Kraken's JSON: {0}")]
    Decode(String),
    /// Kraken answered without an error and without the result the method documents (for
    /// balances: not an empty account, which is `"result":{}`).
    #[error("Kraken answered without an error and without a result: {0}")]
    NoResult(&'static str),
    /// The body was larger than any real answer of this kind.
    #[error("the answer is larger than {limit} bytes")]
    TooLarge {
        /// The cap on the body size.
        limit: usize,
    },
    /// A nonce could not be issued (the nonce state file could not be written).
    #[error(transparent)]
    Nonce(#[from] super::nonce::NonceError),
    /// A private method was asked of a client built for public data only; nothing was sent, so
    /// no request was counted. Kraken cannot sign what has no key.
    #[error(
        "{method} needs an API key, and this client has none (it reads public market data only)"
    )]
    NoCredentials {
        /// The private method that was asked for, such as `TradeBalance`.
        method: &'static str,
    },
}

impl KrakenError {
    /// The `reason` label for this failure.
    pub fn reason(&self) -> Reason {
        match self {
            KrakenError::Api { reason, .. } => *reason,
            KrakenError::Status { status, .. } => reason_for_status(*status),
            KrakenError::Redirected { .. } => Reason::Http,
            KrakenError::Timeout(_) => Reason::Timeout,
            KrakenError::Transport(_) => Reason::Http,
            KrakenError::Decode(_) | KrakenError::TooLarge { .. } => Reason::Decode,
            KrakenError::NoResult(_) => Reason::NoResult,
            KrakenError::Nonce(_) => Reason::NonceFile,
            KrakenError::NoCredentials { .. } => Reason::Other,
        }
    }

    /// Whether Kraken refused this endpoint to this key for good, rather than failing for now:
    /// `permission_denied` (either spelling), or the method is not offered
    /// ([`KrakenError::is_method_unavailable`]). The key audit probes around such a refusal of
    /// GetApiKeyInfo; transient failures (`EDatabase:*`, `EService:*`, rate limits, lockouts,
    /// timeouts, HTTP errors) and every other Kraken error are not refusals.
    pub fn is_endpoint_refusal(&self) -> bool {
        matches!(
            self,
            KrakenError::Api {
                reason: Reason::PermissionDenied,
                ..
            }
        ) || self.is_method_unavailable()
    }

    /// Whether Kraken does not offer this method at all, whatever the key may do:
    /// `EGeneral:Unknown method` (with HTTP 200 or 404) or `EAPI:Feature disabled`.
    /// The BalanceEx → Balance fallback switches only on this: Balance needs the same permission
    /// as BalanceEx ("Funds: Query"), so after a permission refusal it would only fail too.
    pub fn is_method_unavailable(&self) -> bool {
        match self {
            KrakenError::Api {
                reason: Reason::Other,
                message,
                ..
            } => {
                let message = normalise(message);
                has_prefix(&message, "EGeneral:Unknown method")
                    || has_prefix(&message, "EAPI:Feature disabled")
            }
            _ => false,
        }
    }

    /// The same error naming the method's URL path, for an HTTP status that says nothing of
    /// which call failed. Only the path (`/0/private/BalanceEx`): never a query string or a body.
    pub(crate) fn at_path(self, at: &'static str) -> Self {
        match self {
            KrakenError::Status { status, .. } => KrakenError::Status {
                status,
                path: Some(at),
            },
            other => other,
        }
    }

    /// When Kraken asked to be left alone until, if it said so.
    pub fn retry_at(&self) -> Option<SystemTime> {
        match self {
            KrakenError::Api { retry_at, .. } => *retry_at,
            _ => None,
        }
    }
}

/// Classifies an HTTP status other than 200.
pub(crate) fn reason_for_status(status: u16) -> Reason {
    match status {
        429 => Reason::RateLimited,
        500..=599 => Reason::Unavailable,
        _ => Reason::Http,
    }
}

/// Classifies one of Kraken's error strings (`<E|W><Category>:<text>[:extra]`) by its prefix,
/// and reads the time in `EService:Throttled:<unix ts>`. Case and spaces around the `:`
/// separators are ignored: Kraken's rate-limit guide writes `EService: Throttled: [unix ts]`,
/// its SDK `EService:Throttled:<ts>`.
pub fn classify(message: &str) -> (Reason, Option<SystemTime>) {
    let message = normalise(message);
    let starts = |prefix: &str| has_prefix(&message, prefix);
    if starts("EService:Throttled") {
        let retry_at = message
            .rsplit(':')
            .next()
            .map(|ts| ts.trim_matches(|c| c == '[' || c == ']'))
            .and_then(|ts| ts.parse::<u64>().ok())
            .map(|secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
        return (Reason::RateLimited, retry_at);
    }
    let reason = if starts("EAPI:Invalid key") {
        Reason::InvalidKey
    } else if starts("EAPI:Invalid signature") {
        Reason::InvalidSignature
    } else if starts("EAPI:Invalid nonce") {
        Reason::InvalidNonce
    } else if starts("EGeneral:Permission denied") || starts("EAPI:Permission denied") {
        Reason::PermissionDenied
    } else if starts("EAPI:Rate limit exceeded")
        || starts("EAuth:Rate limit exceeded")
        || starts("EGeneral:Too many requests")
    {
        Reason::RateLimited
    } else if starts("EGeneral:Temporary lockout") {
        Reason::Lockout
    } else if starts("EService:") || starts("EGeneral:Internal error") || starts("EDatabase:") {
        Reason::Unavailable
    } else {
        Reason::Other
    };
    (reason, None)
}

/// An error string with the spaces around its `:` separators removed
/// (`EService: Throttled: 1700000123` → `EService:Throttled:1700000123`).
fn normalise(message: &str) -> String {
    message
        .trim()
        .split(':')
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(":")
}

/// Whether `message` starts with `prefix`, ignoring ASCII case.
fn has_prefix(message: &str, prefix: &str) -> bool {
    message
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kraken_error_strings_map_to_their_reason() {
        let cases = [
            ("EAPI:Invalid key", Reason::InvalidKey),
            ("EAPI:Invalid signature", Reason::InvalidSignature),
            ("EAPI:Invalid nonce", Reason::InvalidNonce),
            ("EGeneral:Permission denied", Reason::PermissionDenied),
            ("EAPI:Rate limit exceeded", Reason::RateLimited),
            ("EAuth:Rate limit exceeded", Reason::RateLimited),
            ("EGeneral:Too many requests", Reason::RateLimited),
            ("EGeneral:Temporary lockout", Reason::Lockout),
            ("EService:Unavailable", Reason::Unavailable),
            ("EService:Busy", Reason::Unavailable),
            ("EService:Market in cancel_only mode", Reason::Unavailable),
            ("EGeneral:Invalid arguments:ordertype", Reason::Other),
            ("EAPI:Feature disabled", Reason::Other),
            ("EGeneral:Unknown method", Reason::Other),
        ];
        for (message, expected) in cases {
            assert_eq!(classify(message).0, expected, "{message}");
        }
    }

    #[test]
    fn throttled_carries_the_time_to_wait_until() {
        let (reason, retry_at) = classify("EService:Throttled:1700000123");
        assert_eq!(reason, Reason::RateLimited);
        assert_eq!(
            retry_at,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_123))
        );
        assert_eq!(classify("EService:Throttled:soon").1, None);
    }

    #[test]
    fn a_database_error_is_transient_not_other() {
        assert_eq!(classify("EDatabase:Internal error").0, Reason::Unavailable);
        assert_eq!(classify("EDatabase: Internal error").0, Reason::Unavailable);
    }

    #[test]
    fn both_spellings_of_permission_denied_are_permission_denied() {
        assert_eq!(
            classify("EGeneral:Permission denied").0,
            Reason::PermissionDenied
        );
        assert_eq!(
            classify("EAPI:Permission denied").0,
            Reason::PermissionDenied
        );
        assert_eq!(
            classify("eapi:permission denied").0,
            Reason::PermissionDenied
        );
    }

    #[test]
    fn throttled_with_spaces_keeps_its_retry_time() {
        let expected = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_123));
        for message in [
            "EService: Throttled: 1700000123",
            "EService:Throttled: 1700000123",
            "EService : Throttled : 1700000123 ",
            "EService: Throttled: [1700000123]",
        ] {
            assert_eq!(
                classify(message),
                (Reason::RateLimited, expected),
                "{message:?}"
            );
        }
    }

    fn api(message: &str) -> KrakenError {
        let (reason, retry_at) = classify(message);
        KrakenError::Api {
            reason,
            message: message.to_owned(),
            retry_at,
        }
    }

    #[test]
    fn only_permission_refusals_and_unknown_methods_refuse_an_endpoint() {
        for refusal in [
            "EGeneral:Permission denied",
            "EAPI:Permission denied",
            "EGeneral:Unknown method",
            "EGeneral: Unknown method",
            "EAPI:Feature disabled",
        ] {
            assert!(api(refusal).is_endpoint_refusal(), "{refusal}");
        }
        for transient in [
            "EDatabase:Internal error",
            "EService:Unavailable",
            "EService:Busy",
            "EService:Throttled:1700000123",
            "EService: Throttled: 1700000123",
            "EAPI:Rate limit exceeded",
            "EGeneral:Too many requests",
            "EGeneral:Temporary lockout",
            "EGeneral:Internal error",
            "EAPI:Invalid key",
            "EAPI:Invalid nonce",
            "EGeneral:Invalid arguments",
        ] {
            assert!(!api(transient).is_endpoint_refusal(), "{transient}");
        }
        for failure in [
            KrakenError::Status {
                status: 404,
                path: None,
            },
            KrakenError::Status {
                status: 503,
                path: None,
            },
            KrakenError::Timeout(Duration::from_secs(1)),
            KrakenError::Transport("connection refused".into()),
            KrakenError::Decode("an HTML page instead of JSON".into()),
            KrakenError::Redirected { status: 302 },
        ] {
            assert!(!failure.is_endpoint_refusal(), "{failure}");
        }
    }

    #[test]
    fn only_an_unknown_or_disabled_method_is_unavailable_whatever_the_key() {
        for unavailable in [
            "EGeneral:Unknown method",
            "EGeneral: Unknown method",
            "EAPI:Feature disabled",
        ] {
            assert!(api(unavailable).is_method_unavailable(), "{unavailable}");
        }
        // A permission refusal refuses the endpoint to this key, but the method exists.
        for refusal in ["EGeneral:Permission denied", "EAPI:Permission denied"] {
            assert!(api(refusal).is_endpoint_refusal(), "{refusal}");
            assert!(!api(refusal).is_method_unavailable(), "{refusal}");
        }
        assert!(!api("EService:Unavailable").is_method_unavailable());
    }

    #[test]
    fn documented_transient_errors_are_unavailable_and_refuse_nothing() {
        for message in [
            "EGeneral:Internal error",
            "EGeneral:Internal error:8f3b",
            "EGeneral: Internal error: 12",
            "EService:Deadline elapsed",
            "EService:Market in post_only mode",
            "EService:Market in cancel_only mode",
        ] {
            let error = api(message);
            assert_eq!(error.reason(), Reason::Unavailable, "{message}");
            assert!(!error.is_endpoint_refusal(), "{message}");
            assert!(!error.is_method_unavailable(), "{message}");
            assert!(error.retry_at().is_none(), "{message}");
        }
    }

    #[test]
    fn the_public_rate_limit_is_not_advised_as_the_keys() {
        assert_eq!(
            classify("EGeneral:Too many requests").0,
            Reason::RateLimited
        );
        let advice = Reason::RateLimited.advice();
        assert!(advice.contains("EGeneral:Too many requests"), "{advice}");
        assert!(advice.contains("per IP address"), "{advice}");
        assert!(advice.contains("the key's call counter"), "{advice}");
    }

    #[test]
    fn an_http_status_names_the_method_path_once_the_client_adds_it() {
        let bare = KrakenError::Status {
            status: 404,
            path: None,
        };
        assert_eq!(bare.to_string(), "HTTP status 404");
        let named = bare.at_path("/0/private/BalanceEx");
        assert_eq!(
            named.to_string(),
            "HTTP status 404 for /0/private/BalanceEx"
        );
        assert_eq!(named.reason(), Reason::Http);
        // Other errors are left as they are.
        let api_error = api("EAPI:Invalid key").at_path("/0/private/Balance");
        assert_eq!(api_error.to_string(), "Kraken answered EAPI:Invalid key");
    }

    #[test]
    fn a_missing_result_and_a_nonce_file_fault_have_reasons_of_their_own() {
        let err = KrakenError::NoResult("it is missing");
        assert_eq!(err.reason(), Reason::NoResult);
        assert_eq!(Reason::NoResult.as_str(), "no_result");
        assert!(
            Reason::NoResult
                .advice()
                .contains("last good balances are kept")
        );
        let err = KrakenError::Nonce(crate::nonce::NonceError::Write {
            path: "/var/lib/kraken/main.nonce".into(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        });
        assert_eq!(err.reason(), Reason::NonceFile);
        assert_eq!(Reason::NonceFile.as_str(), "nonce_file");
        let advice = Reason::NonceFile.advice();
        assert!(advice.contains("writable by the user"), "{advice}");
        assert!(!advice.contains("Kraken refused"), "{advice}");
    }

    #[test]
    fn statuses_map_to_unavailable_rate_limited_or_http() {
        assert_eq!(reason_for_status(500), Reason::Unavailable);
        assert_eq!(reason_for_status(502), Reason::Unavailable);
        assert_eq!(reason_for_status(520), Reason::Unavailable);
        assert_eq!(reason_for_status(522), Reason::Unavailable);
        assert_eq!(reason_for_status(429), Reason::RateLimited);
        assert_eq!(reason_for_status(403), Reason::Http);
        assert_eq!(reason_for_status(404), Reason::Http);
    }

    #[test]
    fn a_private_call_without_a_key_names_the_method_and_is_other() {
        let err = KrakenError::NoCredentials {
            method: "TradeBalance",
        };
        assert_eq!(err.reason(), Reason::Other);
        assert!(err.to_string().starts_with("TradeBalance needs an API key"));
    }

    #[test]
    fn every_reason_has_a_distinct_label() {
        let mut labels: Vec<_> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Reason::ALL.len());
    }
}
