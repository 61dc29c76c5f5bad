//! Pure parsers for Kraken's answers: bytes in, typed values or a classified error out.
//!
//! Owns the JSON envelope (`{"error": [...], "result": ...}`), the result shapes of Balance,
//! BalanceEx, TradeBalance, GetApiKeyInfo, WithdrawMethods, Assets, AssetPairs and Ticker, and
//! the naming of raw asset codes.
//! Must not: do I/O, look at anything but the status and the body it is given, or interpret what
//! an answer means for the operator (permission names are kept raw; [`crate::audit`] reads them).

use std::collections::{BTreeMap, HashMap};

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

    /// Whether Kraken lists this exact code, so valuation prices only codes Kraken knows rather
    /// than codes guessed by stripping prefixes.
    pub fn contains(&self, code: &str) -> bool {
        self.0.contains_key(code)
    }

    /// Every listed raw code, in no particular order.
    pub fn codes(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Every listed short name, in no particular order.
    pub fn altnames(&self) -> impl Iterator<Item = &str> {
        self.0.values().map(|info| info.altname.as_str())
    }

    /// What Kraken says about one code.
    pub fn get(&self, code: &str) -> Option<&AssetInfo> {
        self.0.get(code)
    }

    /// The code whose short name is `altname` (`USD` → `ZUSD`): operators name assets by their
    /// short names, Kraken's pairs by codes. When several codes share an altname, the smallest
    /// code wins, so the answer never depends on hash order.
    pub fn code_for_altname(&self, altname: &str) -> Option<&str> {
        self.0
            .iter()
            .filter(|(_, info)| info.altname == altname)
            .map(|(code, _)| code.as_str())
            .min()
    }
}

/// What the public AssetPairs list says about one trading pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairInfo {
    /// Kraken's short pair name (`XBTUSD` for `XXBTZUSD`); Ticker accepts it, but answers under
    /// the canonical name, so requests use the canonical one.
    pub altname: String,
    /// Asset code bought and sold (`XXBT`): the price is in units of `quote` per unit of it.
    pub base: String,
    /// Asset code the price is expressed in (`ZUSD`).
    pub quote: String,
}

/// The public AssetPairs list: canonical pair name (`XXBTZUSD`) to its assets. Valuation reads
/// it to find which pair prices an asset in the operator's currency.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PairTable(HashMap<String, PairInfo>);

impl PairTable {
    /// Builds a table from entries, for tests and the simulated Kraken.
    pub fn from_entries(entries: impl IntoIterator<Item = (String, PairInfo)>) -> Self {
        Self(entries.into_iter().collect())
    }

    /// Number of pairs known.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no pair is known (the list was never fetched, or Kraken listed none).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// What Kraken says about one canonical pair name.
    pub fn get(&self, pair: &str) -> Option<&PairInfo> {
        self.0.get(pair)
    }

    /// Every pair, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &PairInfo)> {
        self.0.iter().map(|(name, info)| (name.as_str(), info))
    }

    /// The canonical name of the pair that trades `base` against `quote`, if Kraken lists one.
    /// Kraken also lists dark-pool twins (`XXBTZUSD.d`) with the same assets; names without a
    /// `.` are preferred, then the smallest name, so the choice never depends on hash order.
    pub fn find(&self, base: &str, quote: &str) -> Option<&str> {
        self.0
            .iter()
            .filter(|(_, info)| info.base == base && info.quote == quote)
            .map(|(name, _)| name.as_str())
            .min_by_key(|name| (name.contains('.'), *name))
    }
}

/// What GetApiKeyInfo says about the key that signed the call. Permission names are Kraken's
/// raw names, whatever their spelling; [`crate::audit`] normalises them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiKeyInfo {
    /// The label the operator gave the key on Kraken (not secret), when Kraken sends it.
    pub name: Option<String>,
    /// Raw permission name → granted. A name listed without a flag counts as granted.
    pub permissions: BTreeMap<String, bool>,
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

/// One AssetPairs entry; every other field Kraken sends (fees, lot sizes...) is ignored.
#[derive(Deserialize)]
struct RawPair {
    #[serde(default)]
    altname: Option<String>,
    #[serde(default)]
    base: Option<String>,
    #[serde(default)]
    quote: Option<String>,
}

/// One Ticker entry; only the last trade `c = [price, lot volume]` is read.
#[derive(Deserialize)]
struct TickerEntry {
    #[serde(default)]
    c: Option<Vec<Amount>>,
}

/// The TradeBalance result; only the equivalent balance `eb` is read.
#[derive(Deserialize)]
struct TradeBalanceResult {
    #[serde(default)]
    eb: Option<Amount>,
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

/// Parses the public AssetPairs list. Entries without a base or a quote cannot price anything and
/// are skipped; unknown fields are ignored.
pub fn asset_pairs(status: u16, body: &[u8]) -> Result<PairTable, KrakenError> {
    let result: Option<HashMap<String, RawPair>> = envelope(status, body)?;
    Ok(PairTable(
        result
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(name, raw)| {
                let (Some(base), Some(quote)) = (raw.base, raw.quote) else {
                    return None;
                };
                let altname = raw.altname.unwrap_or_else(|| name.clone());
                Some((
                    name,
                    PairInfo {
                        altname,
                        base,
                        quote,
                    },
                ))
            })
            .collect(),
    ))
}

/// Parses a Ticker answer into the last trade price (`c[0]`) per pair name, keyed as Kraken keys
/// the result. A pair without a readable last price makes the whole answer a decode error rather
/// than a silent gap.
pub fn ticker(status: u16, body: &[u8]) -> Result<HashMap<String, f64>, KrakenError> {
    let result: Option<HashMap<String, TickerEntry>> = envelope(status, body)?;
    result
        .unwrap_or_default()
        .into_iter()
        .map(|(pair, entry)| {
            let price = entry
                .c
                .as_ref()
                .and_then(|c| c.first())
                .ok_or_else(|| KrakenError::Decode(format!("ticker of {pair} has no last price")))?
                .value(&pair)?;
            Ok((pair, price))
        })
        .collect()
}

/// Parses a TradeBalance answer into the equivalent balance `eb`, sent as a string or a number.
pub fn trade_balance(status: u16, body: &[u8]) -> Result<f64, KrakenError> {
    let result: Option<TradeBalanceResult> = envelope(status, body)?;
    result
        .and_then(|r| r.eb)
        .ok_or_else(|| KrakenError::Decode("TradeBalance answered without eb".to_owned()))?
        .value("eb")
}

/// Checks a WithdrawMethods answer. Only whether Kraken answered matters (the key may withdraw);
/// the list of methods itself is not kept.
pub fn withdraw_methods(status: u16, body: &[u8]) -> Result<(), KrakenError> {
    let _: Option<serde::de::IgnoredAny> = envelope(status, body)?;
    Ok(())
}

/// Parses a GetApiKeyInfo answer. Its shape is not documented in detail, so `permissions` is
/// read from any of the shapes an API might use:
/// - a list of names (`["query_funds", "withdraw_funds"]`), each granted;
/// - a list of objects with a name and an optional flag (`[{"name": "...", "enabled": true}]`);
/// - an object of name → boolean (also `0`/`1` and `"true"`/`"false"`);
/// - an object of name → object with a flag (`{"withdraw": {"allowed": false}}`);
/// - an object of group → object of name → boolean (`{"funds": {"query": true}}` gives
///   `funds_query`);
/// - one comma-separated string.
///
/// An answer without `permissions` is a decode error, never an empty set: reading a renamed
/// field as "no permissions" would report a dangerous key as harmless.
pub fn api_key_info(status: u16, body: &[u8]) -> Result<ApiKeyInfo, KrakenError> {
    let result: Option<serde_json::Value> = envelope(status, body)?;
    let Some(serde_json::Value::Object(result)) = result else {
        return Err(KrakenError::Decode(
            "GetApiKeyInfo answered without a result object".to_owned(),
        ));
    };
    let name = result.get("name").and_then(|n| n.as_str()).map(printable);
    let mut permissions = BTreeMap::new();
    let mut grant = |name: &str, granted: bool| {
        let name = printable(name.trim());
        if !name.is_empty() {
            *permissions.entry(name).or_insert(false) |= granted;
        }
    };
    use serde_json::Value;
    match result.get("permissions") {
        Some(Value::Array(items)) => {
            for item in items {
                match item {
                    Value::String(name) => grant(name, true),
                    Value::Object(object) => {
                        let name = ["name", "permission", "id", "key"]
                            .iter()
                            .find_map(|field| object.get(*field).and_then(Value::as_str));
                        if let Some(name) = name {
                            let only_boolean = {
                                let mut booleans = object.values().filter_map(Value::as_bool);
                                match (booleans.next(), booleans.next()) {
                                    (Some(only), None) => Some(only),
                                    _ => None,
                                }
                            };
                            grant(name, flag_field(object).or(only_boolean).unwrap_or(true));
                        }
                    }
                    _ => {}
                }
            }
        }
        Some(Value::Object(entries)) => {
            for (name, value) in entries {
                if let Some(granted) = as_flag(value) {
                    grant(name, granted);
                } else if let Value::Object(inner) = value {
                    if let Some(granted) = flag_field(inner) {
                        grant(name, granted);
                    } else {
                        for (sub, value) in inner {
                            if let Some(granted) = as_flag(value) {
                                grant(&format!("{name}_{sub}"), granted);
                            }
                        }
                    }
                }
            }
        }
        Some(Value::String(list)) => list.split(',').for_each(|name| grant(name, true)),
        _ => {
            return Err(KrakenError::Decode(
                "GetApiKeyInfo answered without a list of permissions".to_owned(),
            ));
        }
    }
    Ok(ApiKeyInfo { name, permissions })
}

/// A boolean as APIs spell it: `true`, `1`, `"true"`, `"yes"`.
fn as_flag(value: &serde_json::Value) -> Option<bool> {
    use serde_json::Value;
    match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_f64().map(|n| n != 0.0),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Some(true),
            "false" | "no" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// The flag of a permission described by an object: a field named like a flag (`enabled`,
/// `allowed`...). Any other field names a permission of a group.
fn flag_field(object: &serde_json::Map<String, serde_json::Value>) -> Option<bool> {
    const FLAG_FIELDS: [&str; 7] = [
        "enabled",
        "allowed",
        "granted",
        "permitted",
        "active",
        "value",
        "on",
    ];
    FLAG_FIELDS
        .iter()
        .find_map(|field| object.get(*field).and_then(as_flag))
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
    const PAIRS: &[u8] = include_bytes!("../../tests/fixtures/kraken/asset_pairs.json");
    const TICKER: &[u8] = include_bytes!("../../tests/fixtures/kraken/ticker.json");
    const TICKER_NUMBERS: &[u8] = include_bytes!("../../tests/fixtures/kraken/ticker_numbers.json");
    const TICKER_NO_LAST: &[u8] =
        include_bytes!("../../tests/fixtures/kraken/ticker_no_last_price.json");
    const KEY_LIST: &[u8] = include_bytes!("../../tests/fixtures/kraken/api_key_info_list.json");
    const KEY_FLAGS: &[u8] = include_bytes!("../../tests/fixtures/kraken/api_key_info_flags.json");
    const KEY_GROUPS: &[u8] =
        include_bytes!("../../tests/fixtures/kraken/api_key_info_groups.json");
    const KEY_OBJECTS: &[u8] =
        include_bytes!("../../tests/fixtures/kraken/api_key_info_objects.json");
    const KEY_NO_PERMISSIONS: &[u8] =
        include_bytes!("../../tests/fixtures/kraken/api_key_info_no_permissions.json");
    const WITHDRAW_METHODS: &[u8] =
        include_bytes!("../../tests/fixtures/kraken/withdraw_methods.json");
    const TRADE_BALANCE: &[u8] = include_bytes!("../../tests/fixtures/kraken/trade_balance.json");
    const TRADE_BALANCE_NUMBERS: &[u8] =
        include_bytes!("../../tests/fixtures/kraken/trade_balance_numbers.json");
    const PERMISSION_DENIED: &[u8] =
        include_bytes!("../../tests/fixtures/kraken/error_permission_denied.json");
    const UNKNOWN_METHOD: &[u8] =
        include_bytes!("../../tests/fixtures/kraken/error_unknown_method.json");
    const UNKNOWN_PAIR: &[u8] =
        include_bytes!("../../tests/fixtures/kraken/error_unknown_pair.json");

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

    #[test]
    fn asset_pairs_keep_base_and_quote_and_ignore_extra_fields() {
        let pairs = asset_pairs(200, PAIRS).unwrap();
        assert_eq!(
            pairs.get("XXBTZUSD"),
            Some(&PairInfo {
                altname: "XBTUSD".into(),
                base: "XXBT".into(),
                quote: "ZUSD".into(),
            })
        );
        assert_eq!(pairs.get("DOTUSD").unwrap().base, "DOT");
        // An entry without base and quote cannot price anything.
        assert!(pairs.get("SOMEINDEX").is_none());
        assert_eq!(pairs.len(), 6);
    }

    #[test]
    fn finding_a_pair_prefers_the_plain_pair_over_its_dark_pool_twin() {
        let pairs = asset_pairs(200, PAIRS).unwrap();
        assert_eq!(pairs.find("XXBT", "ZUSD"), Some("XXBTZUSD"));
        assert_eq!(pairs.find("ZEUR", "ZUSD"), Some("ZEURZUSD"));
        assert_eq!(pairs.find("ZUSD", "ZEUR"), None);
        assert_eq!(pairs.find("XETH", "XXBT"), Some("XETHXXBT"));
    }

    #[test]
    fn ticker_reads_the_last_trade_price_as_string_or_number() {
        let prices = ticker(200, TICKER).unwrap();
        assert_eq!(prices.len(), 3);
        assert_eq!(prices["XXBTZUSD"], 65005.1);
        assert_eq!(prices["DOTUSD"], 7.5123);
        assert_eq!(prices["ZEURZUSD"], 1.0825);
        let prices = ticker(200, TICKER_NUMBERS).unwrap();
        assert_eq!(prices["XXBTZUSD"], 65005.1);
        assert_eq!(prices["XETHZUSD"], 3500.0);
    }

    #[test]
    fn ticker_without_a_last_price_or_with_an_unknown_pair_fails() {
        assert_eq!(
            ticker(200, TICKER_NO_LAST).unwrap_err().reason(),
            Reason::Decode
        );
        let err = ticker(200, UNKNOWN_PAIR).unwrap_err();
        assert_eq!(err.reason(), Reason::Other);
        assert_eq!(err.to_string(), "Kraken answered EQuery:Unknown asset pair");
    }

    #[test]
    fn empty_public_answers_are_empty_tables() {
        assert!(asset_pairs(200, EMPTY).unwrap().is_empty());
        assert!(ticker(200, EMPTY).unwrap().is_empty());
        assert_eq!(
            asset_pairs(520, CLOUDFLARE).unwrap_err().reason(),
            Reason::Unavailable
        );
    }

    fn granted(info: &ApiKeyInfo) -> Vec<(&str, bool)> {
        info.permissions
            .iter()
            .map(|(name, granted)| (name.as_str(), *granted))
            .collect()
    }

    #[test]
    fn api_key_info_reads_a_list_of_names_and_the_key_label() {
        let info = api_key_info(200, KEY_LIST).unwrap();
        assert_eq!(info.name.as_deref(), Some("exporter"));
        assert_eq!(
            granted(&info),
            [("Query open orders & trades", true), ("query_funds", true)]
        );
    }

    #[test]
    fn api_key_info_reads_flags_of_every_spelling() {
        let info = api_key_info(200, KEY_FLAGS).unwrap();
        assert_eq!(info.name.as_deref(), Some("bot"));
        assert_eq!(
            granted(&info),
            [
                ("can_query_funds", true),
                ("can_trade", true),
                ("can_withdraw", false),
                ("cancel_orders", true),
                ("export_data", false),
            ]
        );
    }

    #[test]
    fn api_key_info_flattens_groups_and_reads_lists_of_objects() {
        let info = api_key_info(200, KEY_GROUPS).unwrap();
        assert_eq!(info.name, None);
        assert_eq!(
            granted(&info),
            [
                ("funds_deposit", false),
                ("funds_query", true),
                ("funds_withdraw", true),
                ("orders_create", false),
            ]
        );
        let info = api_key_info(200, KEY_OBJECTS).unwrap();
        assert_eq!(
            granted(&info),
            [
                ("ledger_query", true),
                ("query_funds", true),
                ("withdraw_funds", false),
            ]
        );
    }

    #[test]
    fn api_key_info_without_permissions_is_a_decode_error_not_a_harmless_key() {
        for body in [KEY_NO_PERMISSIONS, EMPTY] {
            assert_eq!(
                api_key_info(200, body).unwrap_err().reason(),
                Reason::Decode
            );
        }
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
        withdraw_methods(200, EMPTY).unwrap();
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

    #[test]
    fn trade_balance_reads_eb_as_string_or_number() {
        assert_eq!(trade_balance(200, TRADE_BALANCE).unwrap(), 112345.6789);
        assert_eq!(trade_balance(200, TRADE_BALANCE_NUMBERS).unwrap(), 1500.25);
        assert_eq!(
            trade_balance(200, EMPTY).unwrap_err().reason(),
            Reason::Decode
        );
        assert_eq!(
            trade_balance(200, PERMISSION_DENIED).unwrap_err().reason(),
            Reason::PermissionDenied
        );
    }

    #[test]
    fn assets_can_be_looked_up_by_code_and_by_altname() {
        let table = assets(200, ASSETS).unwrap();
        assert!(table.contains("XXBT"));
        assert!(!table.contains("XBT"));
        assert_eq!(table.code_for_altname("USD"), Some("ZUSD"));
        assert_eq!(table.code_for_altname("ETH"), Some("XETH"));
        assert_eq!(table.code_for_altname("NOPE"), None);
        assert_eq!(table.get("ZUSD").unwrap().altname, "USD");
    }
}
