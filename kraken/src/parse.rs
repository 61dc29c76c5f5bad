//! Pure parsers for Kraken's answers: bytes in, typed values or a classified error out.
//!
//! Owns the JSON envelope (`{"error": [...], "result": ...}`, also on answers whose HTTP status
//! is not 200), the result shapes of Balance, BalanceEx, TradeBalance, GetApiKeyInfo,
//! Earn/Allocations, WithdrawMethods, Assets, AssetPairs and Ticker, and the naming of raw asset
//! codes. Every shape is tested on Kraken's documented example answers
//! (`tests/fixtures/kraken/doc_*.json`, sources in `tests/fixtures/kraken/SOURCES.md`).
//! Must not: do I/O, look at anything but the status and the body it is given, or interpret what
//! an answer means for the operator (permission names are kept raw; the exporter's key audit reads them).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::error::{KrakenError, Reason, classify, reason_for_status};

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
    /// Credit line extended for the asset (BalanceEx `credit`); 0 when Kraken leaves it out, as
    /// it does for accounts without credit, and in Balance answers.
    pub credit: f64,
    /// Part of the credit line in use (BalanceEx `credit_used`); 0 when left out.
    pub credit_used: f64,
}

impl AssetBalance {
    /// What can be traded or withdrawn now, by Kraken's documented formula for BalanceEx:
    /// `balance + credit - credit_used - hold_trade`. `None` when the hold is unknown (a Balance
    /// answer): an unknown hold is never taken as 0.
    pub fn available(&self) -> Option<f64> {
        self.hold
            .map(|hold| self.total + self.credit - self.credit_used - hold)
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
pub const MAX_PERMISSIONS: usize = 64;

/// One Earn strategy's allocation (Earn/Allocations `items[]`), in the strategy's native asset.
/// States Kraken leaves out (documented: "only present when there are ... allocations") are 0.
#[derive(Debug, Clone, PartialEq)]
pub struct EarnAllocation {
    /// Kraken's strategy id (`ESDQCOL-WTZEU-NU55QF`).
    pub strategy_id: String,
    /// The asset allocated (`native_asset`, such as `ETH` or `DOT`), as Kraken names it.
    pub native_asset: String,
    /// Everything allocated to the strategy (`amount_allocated.total.native`), whatever its state;
    /// the part neither bonding, unbonding nor in the exit queue is allocated and earning.
    pub total: f64,
    /// Allocated but not yet earning (`bonding.native`).
    pub bonding: f64,
    /// On its way back to the spot balance (`unbonding.native`).
    pub unbonding: f64,
    /// Waiting in ETH's exit queue before unbonding (`exit_queue.native`).
    pub exit_queue: f64,
    /// The earliest `expires` of the unbonding allocations: when the first of them is back.
    pub unbonding_until: Option<SystemTime>,
    /// The earliest `expires` of the exit-queue allocations; for ETH Kraken documents this as the
    /// time the funds will have finished unbonding, not when they leave the queue.
    pub exit_queue_until: Option<SystemTime>,
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
    #[serde(default)]
    credit: Option<Amount>,
    #[serde(default)]
    credit_used: Option<Amount>,
}

/// Checks the HTTP status and the envelope, returning the `result` (None for an absent result).
pub fn envelope<T: DeserializeOwned>(status: u16, body: &[u8]) -> Result<Option<T>, KrakenError> {
    if status != 200 {
        return Err(status_error(status, body));
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

/// Classifies an answer whose HTTP status is not 200. When the body is Kraken's error envelope
/// (an unknown private method answers HTTP 404 with `{"error":["EGeneral:Unknown method"]}`),
/// Kraken's own error string decides, as with HTTP 200: the caller sees what Kraken said rather
/// than a bare status. One exception keeps transient failures transient: a string that classifies
/// as `other` on a 429 or 5xx status takes the status's reason (`rate_limited`, `unavailable`).
/// Any other body (an HTML page, an empty body, an envelope without an error) gives
/// [`KrakenError::Status`], classified by the status alone.
pub fn status_error(status: u16, body: &[u8]) -> KrakenError {
    #[derive(Deserialize)]
    struct ErrorsOnly {
        #[serde(default)]
        error: Vec<String>,
    }
    let message = serde_json::from_slice::<ErrorsOnly>(body)
        .ok()
        .and_then(|errors| errors.error.into_iter().find(|m| !m.starts_with('W')));
    let Some(message) = message else {
        return KrakenError::Status { status };
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

/// Parses a BalanceEx answer. An answer without `result` is an empty account.
pub fn balance_ex(status: u16, body: &[u8]) -> Result<Vec<AssetBalance>, KrakenError> {
    let result: Option<HashMap<String, ExtendedBalance>> = envelope(status, body)?;
    let mut balances = result
        .unwrap_or_default()
        .into_iter()
        .map(|(code, entry)| {
            let total = entry.balance.value(&code)?;
            let optional = |amount: &Option<Amount>| match amount {
                Some(amount) => amount.value(&code),
                None => Ok(0.0),
            };
            let hold = optional(&entry.hold_trade)?;
            let credit = optional(&entry.credit)?;
            let credit_used = optional(&entry.credit_used)?;
            Ok(AssetBalance {
                code,
                total,
                hold: Some(hold),
                credit,
                credit_used,
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
                credit: 0.0,
                credit_used: 0.0,
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

/// Kraken keeps amounts to at most 10 decimals; a sum or difference of such amounts is rounded
/// back to them, so `1.2345678901 - 0.1` reads `1.1345678901`, not `1.1345678900999998`.
pub fn at_kraken_precision(amount: f64) -> f64 {
    const SCALE: f64 = 1e10;
    let rounded = (amount * SCALE).round() / SCALE;
    if rounded.is_finite() { rounded } else { amount }
}

/// A non-negative integer Kraken sent as a decimal string (`"1772627060997"`) or a number.
fn unsigned(value: Option<&serde_json::Value>) -> Option<u64> {
    match value? {
        serde_json::Value::String(text) => text.trim().parse().ok(),
        serde_json::Value::Number(number) => number.as_u64(),
        _ => None,
    }
}

fn unix_time(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

/// Parses an Earn/Allocations answer (api-specs `/private/Earn/Allocations`): one entry per
/// strategy, in Kraken's order, with the amounts in the native asset. The `converted` amounts
/// (in the `converted_asset` of the request) are ignored: prices are the exporter's valuation's.
/// An item without `native_asset` or without `amount_allocated.total.native` is a decode error,
/// never a zero: the total is the balance itself.
pub fn earn_allocations(status: u16, body: &[u8]) -> Result<Vec<EarnAllocation>, KrakenError> {
    let page: Option<EarnPage> = envelope(status, body)?;
    page.map(|page| page.items)
        .unwrap_or_default()
        .into_iter()
        .map(earn_item)
        .collect()
}

/// The `result` of an Earn/Allocations answer, as far as it is read.
#[derive(Deserialize)]
struct EarnPage {
    #[serde(default)]
    items: Vec<EarnItem>,
}

/// One strategy's allocation.
#[derive(Deserialize)]
struct EarnItem {
    #[serde(default)]
    strategy_id: Option<String>,
    #[serde(default)]
    native_asset: Option<String>,
    #[serde(default)]
    amount_allocated: Option<EarnAllocated>,
}

/// `amount_allocated`: the total and the states that are not (yet, or any more) earning.
#[derive(Deserialize)]
struct EarnAllocated {
    #[serde(default)]
    total: Option<EarnNative>,
    #[serde(default)]
    bonding: Option<EarnState>,
    #[serde(default)]
    unbonding: Option<EarnState>,
    #[serde(default)]
    exit_queue: Option<EarnState>,
}

/// An amount in the native asset.
#[derive(Deserialize)]
struct EarnNative {
    native: Amount,
}

/// A state's amount and its allocations, each with the time it ends.
#[derive(Deserialize)]
struct EarnState {
    native: Amount,
    #[serde(default)]
    allocations: Vec<EarnExpiring>,
}

/// When one allocation leaves its state.
#[derive(Deserialize)]
struct EarnExpiring {
    #[serde(default)]
    expires: Option<String>,
}

/// One item as an [`EarnAllocation`]; a missing asset or total is a decode error.
fn earn_item(item: EarnItem) -> Result<EarnAllocation, KrakenError> {
    let native_asset = item
        .native_asset
        .map(|a| printable(&a))
        .ok_or_else(|| KrakenError::Decode("an Earn allocation has no native_asset".to_owned()))?;
    let what = format!("Earn allocation of {native_asset}");
    let allocated = item
        .amount_allocated
        .ok_or_else(|| KrakenError::Decode(format!("{what} has no amount_allocated")))?;
    let total = allocated
        .total
        .ok_or_else(|| KrakenError::Decode(format!("{what} has no total")))?
        .native
        .value(&what)?;
    Ok(EarnAllocation {
        strategy_id: item.strategy_id.map(|s| printable(&s)).unwrap_or_default(),
        total,
        bonding: earn_amount(allocated.bonding.as_ref(), &what)?,
        unbonding: earn_amount(allocated.unbonding.as_ref(), &what)?,
        exit_queue: earn_amount(allocated.exit_queue.as_ref(), &what)?,
        unbonding_until: earliest_expiry(allocated.unbonding.as_ref(), &what)?,
        exit_queue_until: earliest_expiry(allocated.exit_queue.as_ref(), &what)?,
        native_asset,
    })
}

/// A state's native amount; 0 when Kraken leaves the state out.
fn earn_amount(state: Option<&EarnState>, what: &str) -> Result<f64, KrakenError> {
    state.map_or(Ok(0.0), |state| state.native.value(what))
}

/// The earliest `expires` among a state's allocations; an unreadable time is a decode error.
fn earliest_expiry(
    state: Option<&EarnState>,
    what: &str,
) -> Result<Option<SystemTime>, KrakenError> {
    let mut earliest: Option<SystemTime> = None;
    for expires in state
        .iter()
        .flat_map(|state| &state.allocations)
        .filter_map(|allocation| allocation.expires.as_deref())
    {
        let at = parse_rfc3339(expires)
            .ok_or_else(|| KrakenError::Decode(format!("{what} expires at an unreadable time")))?;
        earliest = Some(earliest.map_or(at, |e| e.min(at)));
    }
    Ok(earliest)
}

/// An RFC 3339 time as Kraken writes it (`2023-08-19T02:34:05.807Z`, or with a `+01:00`
/// offset); `None` for anything else or a time before 1970.
fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = text.get(range)?;
        digits
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| digits.parse().ok())?
    };
    let bytes = text.as_bytes();
    if bytes.len() < 20
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || !matches!(bytes[10], b'T' | b't' | b' ')
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let mut rest = &text[19..];
    let mut nanos = 0u32;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let padded = format!("{:0<9}", &fraction[..digits.min(9)]);
        nanos = padded.parse().ok()?;
        rest = &fraction[digits..];
    }
    let offset_secs = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let offset = rest.get(1..)?;
            let (h, m) = offset.split_once(':')?;
            if h.len() != 2 || m.len() != 2 {
                return None;
            }
            sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60)
        }
    };
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    let secs = u64::try_from(secs).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::new(secs, nanos))
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

    const STRINGS: &[u8] = include_bytes!("../../tests/fixtures/kraken/balance_ex_strings.json");
    const NUMBERS: &[u8] = include_bytes!("../../tests/fixtures/kraken/balance_ex_numbers.json");
    const BALANCE: &[u8] = include_bytes!("../../tests/fixtures/kraken/balance.json");
    /// BalanceEx with auto-earn on (the base code at 0 under a hold, the coins in `XBT.F`) and a
    /// credit line, shaped as Kraken's BalanceEx schema documents `credit` and `credit_used`.
    const CREDIT_AUTO_EARN: &[u8] =
        include_bytes!("../../tests/fixtures/kraken/balance_ex_credit_auto_earn.json");
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
    const KEY_INFO: &[u8] = include_bytes!("../../tests/fixtures/kraken/doc_api_key_info.json");
    const KEY_EVERY_CODE: &[u8] =
        include_bytes!("../../tests/fixtures/kraken/api_key_info_every_code.json");
    const KEY_NO_PERMISSIONS: &[u8] =
        include_bytes!("../../tests/fixtures/kraken/api_key_info_no_permissions.json");
    const DOC_BALANCE_EX: &[u8] = include_bytes!("../../tests/fixtures/kraken/doc_balance_ex.json");
    const DOC_BALANCE: &[u8] = include_bytes!("../../tests/fixtures/kraken/doc_balance.json");
    const DOC_TRADE_BALANCE: &[u8] =
        include_bytes!("../../tests/fixtures/kraken/doc_trade_balance.json");
    const DOC_ASSETS: &[u8] = include_bytes!("../../tests/fixtures/kraken/doc_assets.json");
    const DOC_PAIRS: &[u8] = include_bytes!("../../tests/fixtures/kraken/doc_asset_pairs.json");
    const DOC_TICKER: &[u8] = include_bytes!("../../tests/fixtures/kraken/doc_ticker.json");
    const DOC_EARN: &[u8] = include_bytes!("../../tests/fixtures/kraken/doc_earn_allocations.json");
    const EARN_STATES: &[u8] =
        include_bytes!("../../tests/fixtures/kraken/earn_allocations_states.json");
    const DOC_ERROR: &[u8] = include_bytes!("../../tests/fixtures/kraken/doc_error.json");
    const THROTTLED_SPACED: &[u8] =
        include_bytes!("../../tests/fixtures/kraken/error_throttled_spaced.json");
    const DATABASE: &[u8] = include_bytes!("../../tests/fixtures/kraken/error_database.json");
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
    fn balance_ex_reads_credit_and_available_follows_krakens_formula() {
        let balances = balance_ex(200, CREDIT_AUTO_EARN).unwrap();
        let usd = find(&balances, "ZUSD");
        assert_eq!((usd.credit, usd.credit_used), (100.0, 40.0));
        // balance + credit - credit_used - hold_trade
        assert_eq!(usd.available(), Some(1050.0));
        let xbt = find(&balances, "XXBT");
        assert_eq!((xbt.credit, xbt.credit_used), (0.0, 0.0), "absent reads 0");
        assert_eq!(
            xbt.available(),
            Some(-0.2),
            "a hold over the base is kept, not clipped"
        );
        assert_eq!(find(&balances, "XBT.F").available(), Some(1.5));
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

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

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
        for body in [KEY_NO_PERMISSIONS, EMPTY].into_iter().chain(invented) {
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
    fn documented_balance_answers_parse() {
        let balances = balance_ex(200, DOC_BALANCE_EX).unwrap();
        assert_eq!(balances.len(), 2);
        assert_eq!(find(&balances, "XXBT").total, 1.2435);
        assert_eq!(find(&balances, "XXBT").hold, Some(0.8423));
        assert_eq!(find(&balances, "ZUSD").total, 25435.21);
        assert_eq!(find(&balances, "ZUSD").hold, Some(8249.76));

        let balances = balance(200, DOC_BALANCE).unwrap();
        assert_eq!(balances.len(), 10);
        assert_eq!(find(&balances, "XXBT").total, 1011.19088779);
        assert_eq!(find(&balances, "ETH2.S").total, 198.39708);
        assert_eq!(find(&balances, "ETH2").total, 2.588557433);
        assert_eq!(find(&balances, "USD.M").total, 1213029.278);
        assert_eq!(find(&balances, "DAI").total, 9999.9999999999);
        assert!(balances.iter().all(|b| b.hold.is_none()));
    }

    #[test]
    fn documented_trade_balance_parses() {
        assert_eq!(trade_balance(200, DOC_TRADE_BALANCE).unwrap(), 1101.3425);
    }

    #[test]
    fn documented_public_answers_parse() {
        let table = assets(200, DOC_ASSETS).unwrap();
        assert_eq!(table.len(), 3);
        assert_eq!(table.display_name("XXBT"), "XBT");
        assert_eq!(table.code_for_altname("EUR"), Some("ZEUR"));
        assert_eq!(table.decimals("ZUSD"), Some(4));

        let pairs = asset_pairs(200, DOC_PAIRS).unwrap();
        assert_eq!(pairs.len(), 2);
        assert_eq!(pairs.find("XXBT", "ZUSD"), Some("XXBTZUSD"));
        assert_eq!(
            pairs.get("XETHXXBT"),
            Some(&PairInfo {
                altname: "ETHXBT".into(),
                base: "XETH".into(),
                quote: "XXBT".into(),
            })
        );

        let prices = ticker(200, DOC_TICKER).unwrap();
        assert_eq!(prices, HashMap::from([("XXBTZUSD".to_owned(), 3537.5)]));
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

    #[test]
    fn documented_earn_allocations_parse() {
        let items = earn_allocations(200, DOC_EARN).unwrap();
        assert_eq!(
            items,
            [EarnAllocation {
                strategy_id: "ESDQCOL-WTZEU-NU55QF".into(),
                native_asset: "ETH".into(),
                total: 0.021,
                bonding: 0.021,
                unbonding: 0.0,
                exit_queue: 0.0,
                unbonding_until: None,
                exit_queue_until: None,
            }]
        );
    }

    #[test]
    fn earn_allocations_read_every_state_and_the_earliest_unbonding_expiry() {
        let items = earn_allocations(200, EARN_STATES).unwrap();
        assert_eq!(items.len(), 3);
        let dot = &items[0];
        assert_eq!(dot.native_asset, "DOT");
        assert_eq!((dot.total, dot.bonding, dot.unbonding), (130.0, 0.0, 30.0));
        // 2026-12-08T08:00:00.250Z, the earlier of the two.
        assert_eq!(
            dot.unbonding_until,
            Some(at(1_796_716_800) + Duration::from_millis(250))
        );
        let eth = &items[1];
        assert_eq!((eth.bonding, eth.exit_queue), (0.5, 0.25));
        assert_eq!(eth.unbonding_until, None);
        // 2026-12-30T10:00:00Z.
        assert_eq!(eth.exit_queue_until, Some(at(1_798_624_800)));
        assert_eq!(items[2].native_asset, "USDC");
        assert_eq!(items[2].total, 0.0);
    }

    #[test]
    fn earn_allocations_never_fabricate_a_total() {
        assert_eq!(earn_allocations(200, EMPTY).unwrap(), vec![]);
        for body in [
            &br#"{"error":[],"result":{"items":[{"native_asset":"DOT","amount_allocated":{}}]}}"#[..],
            br#"{"error":[],"result":{"items":[{"amount_allocated":{"total":{"native":"1"}}}]}}"#,
            br#"{"error":[],"result":{"items":[{"native_asset":"DOT","amount_allocated":{"total":{"native":"lots"}}}]}}"#,
            br#"{"error":[],"result":{"items":[{"native_asset":"DOT","amount_allocated":{"total":{"native":"1"},"unbonding":{"native":"1","allocations":[{"expires":"next week"}]}}}]}}"#,
        ] {
            assert_eq!(
                earn_allocations(200, body).unwrap_err().reason(),
                Reason::Decode,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(
            earn_allocations(200, PERMISSION_DENIED)
                .unwrap_err()
                .reason(),
            Reason::PermissionDenied
        );
    }

    #[test]
    fn rfc3339_times_read_as_kraken_writes_them() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(at(0)));
        assert_eq!(
            parse_rfc3339("2023-08-19T02:34:05.807Z"),
            Some(at(1_692_412_445) + Duration::from_millis(807))
        );
        assert_eq!(
            parse_rfc3339("2023-08-19T04:34:05+02:00"),
            Some(at(1_692_412_445))
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T00:00:00Z"),
            Some(at(1_709_164_800))
        );
        for bad in [
            "",
            "2023-08-19",
            "2023-13-01T00:00:00Z",
            "2023-08-19T24:00:00Z",
            "2023-08-19T02:34:05",
            "2023-08-19T02:34:05.Z",
            "1969-12-31T23:59:59Z",
            "2023-08-19T02:34:05+0200",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
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
