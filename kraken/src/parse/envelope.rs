//! Kraken's answer envelope and the classification of its errors.
//!
//! Owns the JSON envelope (`{"error": [...], "result": ...}`, also on answers whose HTTP status
//! is not 200), the classification of a non-200 answer, amounts as Kraken writes them (decimal
//! strings or JSON numbers, at most 10 decimals), and the cleaning of Kraken's error strings
//! before they reach an error value.
//! Must not: know any method's result shape (the sibling modules own those), do I/O, or look at
//! anything but the status and the body it is given.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::error::{KrakenError, Reason, classify, reason_for_status};

/// Kraken's envelope. `result` "may not be present if errors occur" (Kraken's error guide).
#[derive(Deserialize)]
struct Envelope<T> {
    #[serde(default)]
    error: Vec<String>,
    result: Option<T>,
}

/// Kraken's envelope around a result that must be a JSON object, kept as written: a `null`
/// result is told apart from a missing one, and any JSON type from an object.
#[derive(Deserialize)]
struct ObjectEnvelope {
    #[serde(default)]
    error: Vec<String>,
    #[serde(default, deserialize_with = "present")]
    result: Option<Value>,
}

/// A member that is present, whatever its value (`null` included): `Some`.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// An amount Kraken sent as a decimal string (documented) or a JSON number (seen in its own
/// examples).
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Amount {
    Text(String),
    Number(f64),
}

impl Amount {
    /// The amount as a finite number; `code` names it in the error.
    pub(super) fn value(&self, code: &str) -> Result<f64, KrakenError> {
        let value = match self {
            Amount::Text(text) => text.trim().parse::<f64>().map_err(|_| {
                KrakenError::Decode(format!("amount of {code} is not a number: {text:?}"))
            })?,
            Amount::Number(n) => *n,
        };
        if value.is_finite() {
            Ok(value)
        } else {
            Err(KrakenError::Decode(format!(
                "amount of {code} is not finite"
            )))
        }
    }
}

/// Checks the HTTP status and the envelope, returning the `result` (None for an absent result).
pub(super) fn envelope<T: DeserializeOwned>(
    status: u16,
    body: &[u8],
) -> Result<Option<T>, KrakenError> {
    let envelope: Envelope<T> = checked_json(status, body)?;
    first_error(&envelope.error)?;
    Ok(envelope.result)
}

/// Checks the HTTP status and the envelope of an answer whose `result` must be a JSON object
/// (the balances), and reads that object. An answer without an error but with no `result`, a
/// `null` one or one of another JSON type is [`KrakenError::NoResult`], never an empty object:
/// nothing in it says what the account holds. `"result":{}` is an empty object.
pub(super) fn envelope_object<T: DeserializeOwned>(
    status: u16,
    body: &[u8],
) -> Result<T, KrakenError> {
    let envelope: ObjectEnvelope = checked_json(status, body)?;
    first_error(&envelope.error)?;
    let shape = match envelope.result {
        Some(object @ Value::Object(_)) => {
            return serde_json::from_value(object).map_err(|e| KrakenError::Decode(e.to_string()));
        }
        None => "the result is missing",
        Some(Value::Null) => "the result is null",
        Some(Value::Array(_)) => "the result is an array, not an object",
        Some(Value::String(_)) => "the result is a string, not an object",
        Some(Value::Number(_)) => "the result is a number, not an object",
        Some(Value::Bool(_)) => "the result is a boolean, not an object",
    };
    Err(KrakenError::NoResult(shape))
}

/// The body as JSON of type `E` when the status is 200; the classified failure otherwise.
fn checked_json<E: DeserializeOwned>(status: u16, body: &[u8]) -> Result<E, KrakenError> {
    if status != 200 {
        return Err(status_error(status, body));
    }
    serde_json::from_slice(body).map_err(|e| {
        KrakenError::Decode(if looks_like_html(body) {
            "an HTML page instead of JSON".to_owned()
        } else {
            e.to_string()
        })
    })
}

/// The first error (`E...`) of an envelope's list, classified. Warnings (`W...`) come with a
/// usable result; only errors fail the call.
fn first_error(errors: &[String]) -> Result<(), KrakenError> {
    match errors.iter().find(|m| !m.starts_with('W')) {
        Some(message) => {
            let (reason, retry_at) = classify(message);
            Err(KrakenError::Api {
                reason,
                message: printable(message),
                retry_at,
            })
        }
        None => Ok(()),
    }
}

/// Classifies an answer whose HTTP status is not 200. When the body is Kraken's error envelope
/// (an unknown private method answers HTTP 404 with `{"error":["EGeneral:Unknown method"]}`),
/// Kraken's own error string decides, as with HTTP 200: the caller sees what Kraken said rather
/// than a bare status. One exception keeps transient failures transient: a string that classifies
/// as `other` on a 429 or 5xx status takes the status's reason (`rate_limited`, `unavailable`).
/// Any other body (an HTML page, an empty body, an envelope without an error) gives
/// [`KrakenError::Status`], classified by the status alone.
fn status_error(status: u16, body: &[u8]) -> KrakenError {
    #[derive(Deserialize)]
    struct ErrorsOnly {
        #[serde(default)]
        error: Vec<String>,
    }
    let message = serde_json::from_slice::<ErrorsOnly>(body)
        .ok()
        .and_then(|errors| errors.error.into_iter().find(|m| !m.starts_with('W')));
    let Some(message) = message else {
        return KrakenError::Status { status, path: None };
    };
    let (mut reason, retry_at) = classify(&message);
    let by_status = reason_for_status(status);
    if reason == Reason::Other && matches!(by_status, Reason::RateLimited | Reason::Unavailable) {
        reason = by_status;
    }
    KrakenError::Api {
        reason,
        message: printable(&message),
        retry_at,
    }
}

/// Kraken keeps amounts to at most 10 decimals; a sum or difference of such amounts is rounded
/// back to them, so `1.2345678901 - 0.1` reads `1.1345678901`, not `1.1345678900999998`.
pub fn at_kraken_precision(amount: f64) -> f64 {
    const SCALE: f64 = 1e10;
    let rounded = (amount * SCALE).round() / SCALE;
    if rounded.is_finite() { rounded } else { amount }
}

/// Whether a body is an HTML page (a proxy's error page), so a decode error can say so.
fn looks_like_html(body: &[u8]) -> bool {
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(body.len());
    body[start..].starts_with(b"<")
}

/// Kraken's error strings are short ASCII; anything else is cut so a hostile or broken upstream
/// cannot flood logs and labels.
pub(super) fn printable(message: &str) -> String {
    message
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::super::{api_key_info, balance, balance_ex, earn_allocations, ticker};
    use super::*;

    #[test]
    fn cloudflare_html_is_unavailable_by_status_and_decode_with_200() {
        let err = balance_ex(520, CLOUDFLARE).unwrap_err();
        assert_eq!(err.reason(), Reason::Unavailable);
        let err = balance_ex(200, CLOUDFLARE).unwrap_err();
        assert_eq!(err.reason(), Reason::Decode);
        assert!(err.to_string().contains("HTML"), "{err}");
    }

    #[test]
    fn errors_are_classified_and_warnings_skipped() {
        let err = balance_ex(200, INVALID_KEY).unwrap_err();
        assert_eq!(err.reason(), Reason::InvalidKey);
        assert_eq!(err.to_string(), "Kraken answered EAPI:Invalid key");
        let err = balance_ex(200, WARNING).unwrap_err();
        assert_eq!(err.reason(), Reason::RateLimited);
        assert!(err.retry_at().is_some());
        // Kraken's error guide gives warnings the severity `W` but publishes no warning string:
        // this one is hand-built.
        let only_warning = br#"{"error":["WGeneral:Hand-built warning"],"result":{"XXBT":"2"}}"#;
        assert_eq!(balance(200, only_warning).unwrap()[0].total, 2.0);
    }

    #[test]
    fn hostile_error_strings_are_cut_and_cleaned() {
        let long = format!(r#"{{"error":["EGeneral:{}\u0007"]}}"#, "x".repeat(10_000));
        let err = balance(200, long.as_bytes()).unwrap_err();
        let text = err.to_string();
        assert!(text.len() < 260, "{}", text.len());
        assert!(!text.contains('\u{7}'));
    }

    #[test]
    fn the_documented_error_envelope_is_classified() {
        for parse in [
            |body| balance(200, body).map(|_| ()),
            |body| balance_ex(200, body).map(|_| ()),
            |body| api_key_info(200, body).map(|_| ()),
            |body| earn_allocations(200, body).map(|_| ()),
            |body| ticker(200, body).map(|_| ()),
        ] {
            let err = parse(DOC_ERROR).unwrap_err();
            assert_eq!(err.reason(), Reason::Other);
            assert_eq!(
                err.to_string(),
                "Kraken answered EGeneral:Invalid arguments"
            );
        }
        let err = balance_ex(200, THROTTLED_SPACED).unwrap_err();
        assert_eq!(err.reason(), Reason::RateLimited);
        assert_eq!(err.retry_at(), Some(at(1_700_000_123)));
        let err = balance_ex(200, DATABASE).unwrap_err();
        assert_eq!(err.reason(), Reason::Unavailable);
        assert!(!err.is_endpoint_refusal());
    }

    #[test]
    fn documented_internal_deadline_and_post_only_errors_are_transient() {
        for body in TRANSIENT {
            for err in [
                balance_ex(200, body).unwrap_err(),
                balance(200, body).unwrap_err(),
            ] {
                assert_eq!(err.reason(), Reason::Unavailable, "{err}");
                assert!(!err.is_endpoint_refusal(), "{err}");
                assert!(!err.is_method_unavailable(), "{err}");
            }
        }
    }

    #[test]
    fn a_404_with_kraken_s_envelope_is_kraken_s_error_not_a_bare_status() {
        let err = balance_ex(404, UNKNOWN_METHOD).unwrap_err();
        assert_eq!(err.reason(), Reason::Other);
        assert_eq!(err.to_string(), "Kraken answered EGeneral:Unknown method");
        assert!(err.is_endpoint_refusal());
        let err = status_error(404, UNKNOWN_METHOD);
        assert!(matches!(err, KrakenError::Api { .. }), "{err:?}");
        // Other bodies keep the status's classification.
        for (status, body, reason) in [
            (404, &b"Not Found"[..], Reason::Http),
            (404, b"", Reason::Http),
            (404, br#"{"error":[]}"#, Reason::Http),
            (403, b"<html>Forbidden</html>", Reason::Http),
            (520, CLOUDFLARE, Reason::Unavailable),
            (429, b"{}", Reason::RateLimited),
        ] {
            let err = status_error(status, body);
            assert!(matches!(err, KrakenError::Status { .. }), "{err:?}");
            assert_eq!(err.reason(), reason, "{status}");
        }
    }

    #[test]
    fn a_kraken_error_on_a_5xx_or_429_stays_transient() {
        // Kraken's own reason wins when it names one...
        let err = status_error(503, br#"{"error":["EService:Unavailable"]}"#);
        assert_eq!(err.reason(), Reason::Unavailable);
        let err = status_error(500, br#"{"error":["EAPI:Invalid key"]}"#);
        assert_eq!(err.reason(), Reason::InvalidKey);
        // ...but an unrecognised string on a transient status is not a refusal.
        let err = status_error(502, br#"{"error":["EGeneral:Unknown method"]}"#);
        assert_eq!(err.reason(), Reason::Unavailable);
        let err = status_error(429, br#"{"error":["ESomething:New"]}"#);
        assert_eq!(err.reason(), Reason::RateLimited);
        assert_eq!(err.to_string(), "Kraken answered ESomething:New");
    }
}
