//! Pure parsers for Kraken's answers: bytes in, typed values or a classified error out.
//!
//! Owns the JSON envelope (`{"error": [...], "result": ...}`), the Balance, BalanceEx and
//! Assets result shapes, and the naming of raw asset codes.
//! Must not: do I/O or look at anything but the status and the body it is given.

use std::collections::HashMap;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::error::{KrakenError, classify};

/// One asset's balance as Kraken reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct AssetBalance {
    /// The raw key Kraken returned (`XXBT`, `DOT28.S`): the `code` label.
    pub code: String,
    /// Total balance (`balance` in BalanceEx, the value in Balance).
    pub total: f64,
    /// Amount held by open orders (`hold_trade`); `None` when the answer came from Balance,
    /// which does not report holds.
    pub hold: Option<f64>,
}

impl AssetBalance {
    /// What can be withdrawn or traded: `total - hold` (credit lines are not used by this
    /// exporter's accounts and are reported by Kraken only for margin clients).
    pub fn available(&self) -> Option<f64> {
        self.hold.map(|hold| self.total - hold)
    }
}

/// What the public Assets list says about one code.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AssetInfo {
    /// Kraken's short name (`XBT` for `XXBT`): the `asset` label.
    pub altname: String,
    /// Decimals Kraken keeps for amounts of this asset.
    #[serde(default)]
    pub decimals: u32,
}

/// The public Assets list: raw code to its description.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssetTable(HashMap<String, AssetInfo>);

impl AssetTable {
    /// Builds a table from entries, for tests and the simulated Kraken.
    pub fn from_entries(entries: impl IntoIterator<Item = (String, AssetInfo)>) -> Self {
        Self(entries.into_iter().collect())
    }

    /// Number of codes known.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no code is known (the list was never fetched).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `asset` label for a raw code: Kraken's `altname` when the code is listed; for a
    /// suffixed code that is not listed (`XXBT.M`), the base's altname with the suffix kept
    /// (`XBT.M`); otherwise the raw code, never a guess from stripping prefixes.
    pub fn display_name(&self, code: &str) -> String {
        if let Some(info) = self.0.get(code) {
            return info.altname.clone();
        }
        if let Some((base, suffix)) = code.split_once('.')
            && let Some(info) = self.0.get(base)
        {
            return format!("{}.{suffix}", info.altname);
        }
        code.to_owned()
    }

    /// Decimals for a raw code, when known.
    pub fn decimals(&self, code: &str) -> Option<u32> {
        self.0.get(code).map(|info| info.decimals)
    }
}

/// Kraken's envelope. `result` is absent for an empty account and on errors.
#[derive(Deserialize)]
struct Envelope<T> {
    #[serde(default)]
    error: Vec<String>,
    result: Option<T>,
}

/// An amount Kraken sent as a decimal string (documented) or a JSON number (seen in its own
/// examples).
#[derive(Deserialize)]
#[serde(untagged)]
enum Amount {
    Text(String),
    Number(f64),
}

impl Amount {
    fn value(&self, code: &str) -> Result<f64, KrakenError> {
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

/// One BalanceEx entry.
#[derive(Deserialize)]
struct ExtendedBalance {
    balance: Amount,
    #[serde(default)]
    hold_trade: Option<Amount>,
}

/// Checks the HTTP status and the envelope, returning the `result` (None for an absent result).
pub fn envelope<T: DeserializeOwned>(status: u16, body: &[u8]) -> Result<Option<T>, KrakenError> {
    if status != 200 {
        return Err(KrakenError::Status { status });
    }
    let envelope: Envelope<T> = serde_json::from_slice(body).map_err(|e| {
        KrakenError::Decode(if looks_like_html(body) {
            "an HTML page instead of JSON".to_owned()
        } else {
            e.to_string()
        })
    })?;
    // Warnings (`W...`) come with a usable result; only errors (`E...`) fail the call.
    if let Some(message) = envelope.error.iter().find(|m| !m.starts_with('W')) {
        let (reason, retry_at) = classify(message);
        return Err(KrakenError::Api {
            reason,
            message: printable(message),
            retry_at,
        });
    }
    Ok(envelope.result)
}

/// Parses a BalanceEx answer. An answer without `result` is an empty account.
pub fn balance_ex(status: u16, body: &[u8]) -> Result<Vec<AssetBalance>, KrakenError> {
    let result: Option<HashMap<String, ExtendedBalance>> = envelope(status, body)?;
    let mut balances = result
        .unwrap_or_default()
        .into_iter()
        .map(|(code, entry)| {
            let total = entry.balance.value(&code)?;
            let hold = match &entry.hold_trade {
                Some(amount) => amount.value(&code)?,
                None => 0.0,
            };
            Ok(AssetBalance {
                code,
                total,
                hold: Some(hold),
            })
        })
        .collect::<Result<Vec<_>, KrakenError>>()?;
    balances.sort_by(|a, b| a.code.cmp(&b.code));
    Ok(balances)
}

/// Parses a Balance answer. An answer without `result` is an empty account.
pub fn balance(status: u16, body: &[u8]) -> Result<Vec<AssetBalance>, KrakenError> {
    let result: Option<HashMap<String, Amount>> = envelope(status, body)?;
    let mut balances = result
        .unwrap_or_default()
        .into_iter()
        .map(|(code, amount)| {
            let total = amount.value(&code)?;
            Ok(AssetBalance {
                code,
                total,
                hold: None,
            })
        })
        .collect::<Result<Vec<_>, KrakenError>>()?;
    balances.sort_by(|a, b| a.code.cmp(&b.code));
    Ok(balances)
}

/// Parses the public Assets list.
pub fn assets(status: u16, body: &[u8]) -> Result<AssetTable, KrakenError> {
    let result: Option<HashMap<String, AssetInfo>> = envelope(status, body)?;
    Ok(AssetTable(result.unwrap_or_default()))
}

fn looks_like_html(body: &[u8]) -> bool {
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(body.len());
    body[start..].starts_with(b"<")
}

/// Kraken's error strings are short ASCII; anything else is cut so a hostile or broken upstream
/// cannot flood logs and labels.
fn printable(message: &str) -> String {
    message
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kraken::Reason;

    const STRINGS: &[u8] = include_bytes!("../../tests/fixtures/kraken/balance_ex_strings.json");
    const NUMBERS: &[u8] = include_bytes!("../../tests/fixtures/kraken/balance_ex_numbers.json");
    const BALANCE: &[u8] = include_bytes!("../../tests/fixtures/kraken/balance.json");
    const EMPTY: &[u8] = include_bytes!("../../tests/fixtures/kraken/empty_account.json");
    const ASSETS: &[u8] = include_bytes!("../../tests/fixtures/kraken/assets.json");
    const CLOUDFLARE: &[u8] = include_bytes!("../../tests/fixtures/kraken/cloudflare_520.html");
    const INVALID_KEY: &[u8] = include_bytes!("../../tests/fixtures/kraken/error_invalid_key.json");
    const WARNING: &[u8] = include_bytes!("../../tests/fixtures/kraken/error_with_warning.json");
    const TRUNCATED: &[u8] = include_bytes!("../../tests/fixtures/kraken/truncated.json");

    fn find<'a>(balances: &'a [AssetBalance], code: &str) -> &'a AssetBalance {
        balances.iter().find(|b| b.code == code).unwrap()
    }

    #[test]
    fn balance_ex_with_string_amounts_keeps_every_decimal_and_the_hold() {
        let balances = balance_ex(200, STRINGS).unwrap();
        assert_eq!(balances.len(), 5);
        let xbt = find(&balances, "XXBT");
        assert_eq!(xbt.total, 1.2345678901);
        assert_eq!(xbt.hold, Some(0.1));
        assert_eq!(find(&balances, "ETH2.S").total, 37.9);
        assert_eq!(find(&balances, "DOT28.S").total, 1011.19088779);
        assert_eq!(find(&balances, "USD.M").total, 0.0);
        assert_eq!(find(&balances, "ZUSD").available(), Some(23500.1234));
    }

    #[test]
    fn balance_ex_with_number_amounts_parses_the_same() {
        let balances = balance_ex(200, NUMBERS).unwrap();
        assert_eq!(find(&balances, "XXBT").total, 1.2345678901);
        assert_eq!(find(&balances, "XETH").total, 37.9);
        assert_eq!(find(&balances, "XETH").hold, Some(0.0));
    }

    #[test]
    fn balance_has_no_hold() {
        let balances = balance(200, BALANCE).unwrap();
        assert_eq!(balances.len(), 4);
        assert_eq!(find(&balances, "DOT.S").total, 300.75);
        assert_eq!(find(&balances, "ZEUR").total, 0.0);
        assert_eq!(find(&balances, "XXBT").hold, None);
    }

    #[test]
    fn an_answer_without_result_is_an_empty_account() {
        assert_eq!(balance_ex(200, EMPTY).unwrap(), vec![]);
        assert_eq!(balance(200, EMPTY).unwrap(), vec![]);
    }

    #[test]
    fn cloudflare_html_is_unavailable_by_status_and_decode_with_200() {
        let err = balance_ex(520, CLOUDFLARE).unwrap_err();
        assert_eq!(err.reason(), Reason::Unavailable);
        let err = balance_ex(200, CLOUDFLARE).unwrap_err();
        assert_eq!(err.reason(), Reason::Decode);
        assert!(err.to_string().contains("HTML"), "{err}");
    }

    #[test]
    fn truncated_and_non_numeric_bodies_are_decode_errors() {
        assert_eq!(
            balance_ex(200, TRUNCATED).unwrap_err().reason(),
            Reason::Decode
        );
        let bad = br#"{"error":[],"result":{"XXBT":{"balance":"lots"}}}"#;
        assert_eq!(balance_ex(200, bad).unwrap_err().reason(), Reason::Decode);
        assert_eq!(balance(200, b"null").unwrap_err().reason(), Reason::Decode);
    }

    #[test]
    fn errors_are_classified_and_warnings_skipped() {
        let err = balance_ex(200, INVALID_KEY).unwrap_err();
        assert_eq!(err.reason(), Reason::InvalidKey);
        assert_eq!(err.to_string(), "Kraken answered EAPI:Invalid key");
        let err = balance_ex(200, WARNING).unwrap_err();
        assert_eq!(err.reason(), Reason::RateLimited);
        assert!(err.retry_at().is_some());
        let only_warning = br#"{"error":["WGeneral:Deprecated"],"result":{"XXBT":"2"}}"#;
        assert_eq!(balance(200, only_warning).unwrap()[0].total, 2.0);
    }

    #[test]
    fn asset_names_use_altname_and_keep_suffixes() {
        let table = assets(200, ASSETS).unwrap();
        assert_eq!(table.display_name("XXBT"), "XBT");
        assert_eq!(table.display_name("ZUSD"), "USD");
        assert_eq!(table.display_name("ETH2.S"), "ETH2.S");
        assert_eq!(table.display_name("DOT28.S"), "DOT28.S");
        assert_eq!(table.display_name("USD.M"), "USD.M");
        // Not listed, but its base is: the base's altname with the suffix kept.
        assert_eq!(table.display_name("XXBT.M"), "XBT.M");
        // Unknown codes keep their raw name; no prefix is stripped by guesswork.
        assert_eq!(table.display_name("XXRP"), "XXRP");
        assert_eq!(table.display_name("XTZ"), "XTZ");
        assert_eq!(table.decimals("ZUSD"), Some(4));
    }

    #[test]
    fn hostile_error_strings_are_cut_and_cleaned() {
        let long = format!(r#"{{"error":["EGeneral:{}\u0007"]}}"#, "x".repeat(10_000));
        let err = balance(200, long.as_bytes()).unwrap_err();
        let text = err.to_string();
        assert!(text.len() < 260, "{}", text.len());
        assert!(!text.contains('\u{7}'));
    }
}
