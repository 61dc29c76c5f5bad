//! What the signing key may do: the GetApiKeyInfo answer and the WithdrawMethods probe.
//!
//! Owns [`ApiKeyInfo`] and [`KeyExpiry`], the lenient reading of GetApiKeyInfo's optional fields
//! and the strict reading of its permission list, and whether a WithdrawMethods answer succeeded.
//! Must not: keep the `apiKey` value or the account's `iban`, read a missing or reshaped
//! permission list as "no permissions", or judge what a permission means for the operator (the
//! exporter's key audit does).

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use super::envelope::{envelope, printable};
use crate::error::KrakenError;

/// What GetApiKeyInfo says about the key that signed the call, as Kraken documents the answer
/// (`apiKeyName`, `apiKey`, `nonce`, `nonceWindow`, `permissions`, `iban`, `validUntil`,
/// `queryFrom`, `queryTo`, `createdTime`, `modifiedTime`, `ipAllowlist`, `lastUsed`).
///
/// Only what the key audit and key hygiene need is kept. The `apiKey` value is never read into
/// it (an API key must not reach a log line or a metric), nor the account's `iban`; the query
/// window (`queryFrom`/`queryTo`) is ignored. `Debug` is therefore safe to log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiKeyInfo {
    /// The label the operator gave the key on Kraken (`apiKeyName`, not secret).
    pub name: Option<String>,
    /// Kraken's permission codes as listed (`query-funds`, `withdraw-funds`, ...): a listed code
    /// is granted. The exporter's key audit interprets them.
    pub permissions: BTreeSet<String>,
    /// The largest nonce Kraken has accepted for the key (`nonce`, a decimal string).
    pub nonce: Option<u64>,
    /// How far below that nonce Kraken still accepts one (`nonceWindow`, in nonce units).
    pub nonce_window: Option<u64>,
    /// When the key stops working (`validUntil`; `"0"` is [`KeyExpiry::Never`]).
    pub valid_until: Option<KeyExpiry>,
    /// When the key was created (`createdTime`, unix seconds).
    pub created_time: Option<SystemTime>,
    /// When the key's settings last changed (`modifiedTime`, unix seconds).
    pub modified_time: Option<SystemTime>,
    /// The addresses or CIDR ranges the key may be used from (`ipAllowlist`); an empty list means
    /// any address. `None` when Kraken did not send the list, which is not the same as "any".
    pub ip_allowlist: Option<Vec<String>>,
    /// When the key was last used (`lastUsed`, unix seconds; `"0"`, never, reads as `None`).
    pub last_used: Option<SystemTime>,
}

/// Whether a key expires (GetApiKeyInfo `validUntil`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyExpiry {
    /// `validUntil` is `"0"`: the key works until it is deleted.
    Never,
    /// The key stops working at this time.
    At(SystemTime),
}

/// Most permission codes read from one GetApiKeyInfo answer. Kraken's key settings offer about a
/// dozen; a longer list is not Kraken's answer, and each code becomes a metric series.
const MAX_PERMISSIONS: usize = 64;

/// Parses a GetApiKeyInfo answer (shape documented at
/// docs.kraken.com/api-reference/account-data/get-api-key-info).
///
/// `permissions` must be a list of codes (strings). An answer without it, or with it in any
/// other shape, is a decode error, never an empty set: reading a renamed or reshaped field as
/// "no permissions" would report a dangerous key as harmless. The other fields are optional and
/// read leniently (a decimal string or a number; anything else reads as not sent), so a change
/// in one of them cannot break the permission audit.
pub fn api_key_info(status: u16, body: &[u8]) -> Result<ApiKeyInfo, KrakenError> {
    use serde_json::Value;
    let result: Option<Value> = envelope(status, body)?;
    let Some(Value::Object(result)) = result else {
        return Err(KrakenError::Decode(
            "GetApiKeyInfo answered without a result object".to_owned(),
        ));
    };
    let Some(Value::Array(items)) = result.get("permissions") else {
        return Err(KrakenError::Decode(
            "GetApiKeyInfo answered without a list of permissions".to_owned(),
        ));
    };
    if items.len() > MAX_PERMISSIONS {
        return Err(KrakenError::Decode(format!(
            "GetApiKeyInfo listed {} permissions, more than the {MAX_PERMISSIONS} any key has",
            items.len()
        )));
    }
    let mut permissions = BTreeSet::new();
    for item in items {
        let Value::String(code) = item else {
            return Err(KrakenError::Decode(
                "GetApiKeyInfo listed a permission that is not a string".to_owned(),
            ));
        };
        let code = printable(code.trim());
        if !code.is_empty() {
            permissions.insert(code);
        }
    }
    let unix = |field: &str| unsigned(result.get(field));
    let time = |field: &str| unix(field).filter(|secs| *secs > 0).map(unix_time);
    Ok(ApiKeyInfo {
        name: result
            .get("apiKeyName")
            .and_then(Value::as_str)
            .map(printable),
        permissions,
        nonce: unix("nonce"),
        nonce_window: unix("nonceWindow"),
        valid_until: unix("validUntil").map(|secs| match secs {
            0 => KeyExpiry::Never,
            secs => KeyExpiry::At(unix_time(secs)),
        }),
        created_time: time("createdTime"),
        modified_time: time("modifiedTime"),
        ip_allowlist: match result.get("ipAllowlist") {
            Some(Value::Array(entries)) => Some(
                entries
                    .iter()
                    .filter_map(Value::as_str)
                    .take(MAX_PERMISSIONS)
                    .map(printable)
                    .collect(),
            ),
            _ => None,
        },
        last_used: time("lastUsed"),
    })
}

/// Checks a WithdrawMethods answer. Only whether Kraken answered matters (the key may withdraw);
/// the list of methods itself is not kept.
pub fn withdraw_methods(status: u16, body: &[u8]) -> Result<(), KrakenError> {
    let _: Option<serde::de::IgnoredAny> = envelope(status, body)?;
    Ok(())
}

/// A non-negative integer Kraken sent as a decimal string (`"1772627060997"`) or a number.
fn unsigned(value: Option<&serde_json::Value>) -> Option<u64> {
    match value? {
        serde_json::Value::String(text) => text.trim().parse().ok(),
        serde_json::Value::Number(number) => number.as_u64(),
        _ => None,
    }
}

/// Unix seconds as a time.
fn unix_time(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use crate::error::Reason;

    #[test]
    fn api_key_info_reads_the_documented_answer() {
        let info = api_key_info(200, KEY_INFO).unwrap();
        assert_eq!(
            info,
            ApiKeyInfo {
                name: Some("my-api-key".into()),
                permissions: BTreeSet::from(
                    [
                        "modify-trades",
                        "query-funds",
                        "query-open-trades",
                        "withdraw-funds"
                    ]
                    .map(String::from)
                ),
                nonce: Some(1_772_627_060_997),
                nonce_window: Some(0),
                valid_until: Some(KeyExpiry::Never),
                created_time: Some(at(1_772_542_900)),
                modified_time: Some(at(1_772_543_095)),
                ip_allowlist: Some(vec![]),
                last_used: Some(at(1_772_627_061)),
            }
        );
    }

    #[test]
    fn api_key_info_never_keeps_the_api_key_or_the_iban() {
        for body in [KEY_INFO, KEY_EVERY_CODE] {
            let shown = format!("{:?}", api_key_info(200, body).unwrap());
            assert!(!shown.contains("EXAMPLE-API-KEY"), "{shown}");
            assert!(!shown.contains("N84G"), "{shown}");
        }
    }

    #[test]
    fn api_key_info_reads_every_code_an_expiry_and_an_allowlist() {
        let info = api_key_info(200, KEY_EVERY_CODE).unwrap();
        assert_eq!(info.permissions.len(), 13);
        assert!(info.permissions.contains("add-withdraw-address"));
        assert!(info.permissions.contains("earn-funds"));
        assert_eq!(info.nonce_window, Some(5000));
        assert_eq!(info.valid_until, Some(KeyExpiry::At(at(1_798_761_600))));
        assert_eq!(
            info.ip_allowlist,
            Some(vec!["192.0.2.10".to_owned(), "2001:db8::/32".to_owned()])
        );
        // "0": never used.
        assert_eq!(info.last_used, None);
    }

    #[test]
    fn api_key_info_optional_fields_may_be_numbers_or_absent() {
        let body = br#"{"error":[],"result":{"permissions":["query-funds"],"nonce":17,"nonceWindow":"9","createdTime":1772542900}}"#;
        let info = api_key_info(200, body).unwrap();
        assert_eq!(info.name, None);
        assert_eq!(info.nonce, Some(17));
        assert_eq!(info.nonce_window, Some(9));
        assert_eq!(info.created_time, Some(at(1_772_542_900)));
        // Not sent is not "no expiry", and no list is not "any address".
        assert_eq!(info.valid_until, None);
        assert_eq!(info.ip_allowlist, None);
    }

    #[test]
    fn api_key_info_without_a_list_of_permission_codes_is_a_decode_error_not_a_harmless_key() {
        let invented = [
            // The shapes guessed before the answer was documented.
            &br#"{"error":[],"result":{"name":"bot","permissions":{"can_withdraw":true}}}"#[..],
            br#"{"error":[],"result":{"permissions":[{"name":"withdraw_funds","enabled":true}]}}"#,
            br#"{"error":[],"result":{"permissions":"query-funds,withdraw-funds"}}"#,
        ];
        for body in [KEY_NO_PERMISSIONS, NO_RESULT].into_iter().chain(invented) {
            assert_eq!(
                api_key_info(200, body).unwrap_err().reason(),
                Reason::Decode,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let many = format!(
            r#"{{"error":[],"result":{{"permissions":[{}]}}}}"#,
            vec![r#""query-funds""#; MAX_PERMISSIONS + 1].join(",")
        );
        assert_eq!(
            api_key_info(200, many.as_bytes()).unwrap_err().reason(),
            Reason::Decode
        );
        let err = api_key_info(200, UNKNOWN_METHOD).unwrap_err();
        assert_eq!(err.reason(), Reason::Other);
        assert_eq!(
            api_key_info(200, PERMISSION_DENIED).unwrap_err().reason(),
            Reason::PermissionDenied
        );
    }

    #[test]
    fn withdraw_methods_only_tells_whether_kraken_answered() {
        withdraw_methods(200, WITHDRAW_METHODS).unwrap();
        withdraw_methods(200, NO_RESULT).unwrap();
        assert_eq!(
            withdraw_methods(200, PERMISSION_DENIED)
                .unwrap_err()
                .reason(),
            Reason::PermissionDenied
        );
        assert_eq!(
            withdraw_methods(200, CLOUDFLARE).unwrap_err().reason(),
            Reason::Decode
        );
    }
}
