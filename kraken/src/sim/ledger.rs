//! The simulated Kraken's money in motion: ledger entries posted by tests and the demo, the
//! deposits and withdrawals DepositStatus and WithdrawStatus list, WebSocket tokens, and what the
//! WebSocket side shares between connections.
//!
//! Owns [`SimLedgerEntry`], [`SimMovement`], [`LedgerRefused`], the state of the stream
//! (tokens, the signal every connection listens to, counters, faults), the naming of REST codes
//! the way WebSocket v2 names them, and the sim's RFC 3339 times.
//! Must not: talk to a socket or HTTP, or hold a lock; it is a leaf of the simulator.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::data::asset_altname;
use crate::parse::MovementStatus;

/// How long an unused WebSocket token is accepted (GetWebSocketsToken `expires`).
pub(super) const TOKEN_LIFETIME: Duration = Duration::from_secs(900);

/// Signals queued per connection before the slowest one starts losing them.
const SIGNAL_CAPACITY: usize = 1024;

/// One ledger entry a test or the demo posts: a completed transaction's effect on one asset.
#[derive(Clone, Debug, PartialEq)]
pub struct SimLedgerEntry {
    /// Kraken's ledger `type`: `deposit`, `withdrawal`, `trade`, `transfer`, `earn`, ...
    pub kind: String,
    /// Kraken's `subtype`, if any (`spottostaking`, ...).
    pub subtype: Option<String>,
    /// Kraken's `category` (`deposit`, `withdrawal`, `trade`, `transfer`, `earn`).
    pub category: String,
    /// The REST code whose balance changes (`XXBT`, `ZUSD`, `XBT.F`).
    pub asset: String,
    /// The change before the fee: positive in, negative out.
    pub amount: f64,
    /// The fee, taken from the balance on top of `amount`.
    pub fee: f64,
}

impl SimLedgerEntry {
    /// An entry of `kind` whose category is the same word.
    pub fn new(kind: &str, asset: &str, amount: f64, fee: f64) -> Self {
        Self {
            kind: kind.to_owned(),
            subtype: None,
            category: kind.to_owned(),
            asset: asset.to_owned(),
            amount,
            fee,
        }
    }

    /// Money in: `amount` (positive) of `asset` credited.
    pub fn deposit(asset: &str, amount: f64) -> Self {
        Self::new("deposit", asset, amount.abs(), 0.0)
    }

    /// Money out: `amount` (positive) of `asset` and its `fee` debited.
    pub fn withdrawal(asset: &str, amount: f64, fee: f64) -> Self {
        Self::new("withdrawal", asset, -amount.abs(), fee)
    }

    /// One leg of a trade: `amount` bought (positive) or sold (negative); post both legs in one
    /// [`super::SimKraken::post_transaction`].
    pub fn trade(asset: &str, amount: f64, fee: f64) -> Self {
        Self::new("trade", asset, amount, fee)
    }

    /// One side of a transfer between wallets (spot ↔ earn): post both sides together.
    pub fn transfer(asset: &str, amount: f64) -> Self {
        Self::new("transfer", asset, amount, 0.0)
    }

    /// An Earn reward credited to `asset` (such as `DOT.S`).
    pub fn earn(asset: &str, amount: f64) -> Self {
        Self::new("earn", asset, amount.abs(), 0.0)
    }
}

/// A transaction the sim refused because it would leave a balance below zero; nothing of it
/// was applied.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{asset} would fall to {would_be} below zero")]
pub struct LedgerRefused {
    /// The REST code that would go negative.
    pub asset: String,
    /// The balance it would have had.
    pub would_be: f64,
}

/// One deposit or withdrawal as DepositStatus or WithdrawStatus lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct SimMovement {
    /// The funding method (`Bitcoin`, `SEPA`).
    pub method: String,
    /// The REST asset code (`XXBT`, `ZEUR`).
    pub asset: String,
    /// Kraken's reference id.
    pub refid: String,
    /// The amount moved.
    pub amount: f64,
    /// The fee paid.
    pub fee: f64,
    /// When it was requested, unix seconds.
    pub time: u64,
    /// Where it stands.
    pub status: MovementStatus,
    /// `status-prop` (`onhold`, `return`, `canceled`, ...), if any.
    pub status_prop: Option<String>,
}

impl SimMovement {
    /// A movement of `amount` `asset` by `method` requested now, with a fresh reference id.
    pub fn new(method: &str, asset: &str, amount: f64, status: MovementStatus) -> Self {
        Self {
            method: method.to_owned(),
            asset: asset.to_owned(),
            refid: kraken_id("FT", 27),
            amount,
            fee: 0.0,
            time: unix_now(),
            status,
            status_prop: None,
        }
    }

    /// The entry of DepositStatus's or WithdrawStatus's list (api-specs deposit and withdrawal
    /// objects; `info` and `txid` are made up, as Kraken would send an address and a hash).
    pub(super) fn to_json(&self) -> Value {
        let mut entry = json!({
            "method": self.method,
            "aclass": "currency",
            "asset": self.asset,
            "refid": self.refid,
            "txid": format!("sim-{}", self.refid.to_lowercase()),
            "info": "sim-address",
            "amount": format!("{:.10}", self.amount),
            "fee": format!("{:.10}", self.fee),
            "time": self.time,
            "status": self.status.as_str(),
        });
        if let Some(prop) = &self.status_prop {
            entry["status-prop"] = Value::String(prop.clone());
        }
        entry
    }
}

/// What the WebSocket side sends to every open connection.
#[derive(Clone, Debug)]
pub(super) enum StreamSignal {
    /// A posted transaction: its ledger entries as v2 writes them; `skip` makes the sequence
    /// jump by one (a lost message).
    Update {
        /// The entries of the `data` list.
        entries: Arc<Vec<Value>>,
        /// Whether the sequence skips a number before this update.
        skip: bool,
    },
    /// The exchange's trading mode changed: send a `status` message.
    Status,
    /// Drop the connection without a close frame.
    Drop,
}

/// What Kraken's WebSocket side remembers.
pub(super) struct StreamState {
    /// Issued tokens: when, and whether a subscription has used them (then they never expire).
    tokens: HashMap<String, (Instant, bool)>,
    /// Every connection listens here.
    pub(super) signals: broadcast::Sender<StreamSignal>,
    /// WebSocket connections accepted.
    pub(super) connections: u64,
    /// Subscriptions accepted.
    pub(super) subscriptions: u64,
    /// Protocol pongs received (answers to the sim's WebSocket pings).
    pub(super) pongs: u64,
    /// Whether the next update's sequence jumps.
    pub(super) skip_next: bool,
    /// Whether heartbeats are held back.
    pub(super) heartbeats_paused: bool,
}

impl StreamState {
    pub(super) fn new() -> Self {
        Self {
            tokens: HashMap::new(),
            signals: broadcast::channel(SIGNAL_CAPACITY).0,
            connections: 0,
            subscriptions: 0,
            pongs: 0,
            skip_next: false,
            heartbeats_paused: false,
        }
    }

    /// A new token, shaped like Kraken's (43 base64 characters).
    pub(super) fn issue_token(&mut self, now: Instant) -> String {
        let token = kraken_token();
        self.tokens.insert(token.clone(), (now, false));
        token
    }

    /// Makes every token `by` older (for tests of expiry).
    #[cfg(any(test, feature = "test-support"))]
    /// Every token issued so far.
    #[cfg(any(test, feature = "test-support"))]
    pub(super) fn issued_tokens(&self) -> Vec<String> {
        self.tokens.keys().cloned().collect()
    }

    #[cfg(any(test, feature = "test-support"))]
    pub(super) fn age_tokens(&mut self, by: Duration) {
        for (issued, _) in self.tokens.values_mut() {
            *issued = issued.checked_sub(by).unwrap_or(*issued);
        }
    }

    /// Whether `token` may subscribe now: issued by this sim, and used before or issued less
    /// than [`TOKEN_LIFETIME`] ago. An accepted token is marked used.
    pub(super) fn accept_token(&mut self, token: &str, now: Instant) -> bool {
        match self.tokens.get_mut(token) {
            Some((issued, used)) if *used || now.duration_since(*issued) < TOKEN_LIFETIME => {
                *used = true;
                true
            }
            _ => false,
        }
    }
}

/// How WebSocket v2 shows a REST code: (v2 asset name, wallet type, wallet id). Bitcoin and
/// dogecoin take their v2 names (`XXBT` → `BTC`, `XXDG` → `DOGE`), other codes their altname
/// (`ZUSD` → `USD`). The read-only suffixed codes of BalanceEx are shown as Earn wallets of the
/// base asset, the sim's choice after Kraken's wallet ids: `.F` (auto-earn) `earn/flex`, `.S`
/// (staked) `earn/bonded`, `.M` (opt-in rewards) `earn/flexible`, `.B` `earn/liquid`; a digit
/// before the suffix is the staking product's (`ETH2.S` → `ETH`).
pub(super) fn v2_wallet(code: &str) -> (String, &'static str, &'static str) {
    let (stem, wallet) = match code.split_once('.') {
        Some((stem, "F")) => (stem, "flex"),
        Some((stem, "S")) => (
            stem.trim_end_matches(|c: char| c.is_ascii_digit()),
            "bonded",
        ),
        Some((stem, "M")) => (stem, "flexible"),
        Some((stem, "B")) => (stem, "liquid"),
        _ => (code, "main"),
    };
    let altname = asset_altname(stem);
    let name = match altname {
        "XBT" => "BTC",
        "XDG" => "DOGE",
        other => other,
    };
    let kind = if wallet == "main" { "spot" } else { "earn" };
    (name.to_owned(), kind, wallet)
}

/// The `data` of a `balances` snapshot: one item per v2 asset, its wallets summed.
pub(super) fn snapshot_data(balances: &[(String, f64, f64)]) -> Vec<Value> {
    let mut assets: Vec<(String, Vec<Value>, f64)> = Vec::new();
    for (code, balance, _) in balances {
        let (name, kind, id) = v2_wallet(code);
        let wallet = json!({ "type": kind, "id": id, "balance": balance });
        match assets.iter_mut().find(|(asset, _, _)| *asset == name) {
            Some((_, wallets, total)) => {
                wallets.push(wallet);
                *total += balance;
            }
            None => assets.push((name, vec![wallet], *balance)),
        }
    }
    assets
        .into_iter()
        .map(|(asset, wallets, total)| {
            json!({ "asset": asset, "asset_class": "currency", "balance": total, "wallets": wallets })
        })
        .collect()
}

/// Applies a transaction to `balances` (REST code, balance, hold): all its entries, or none
/// when one would leave a balance below zero. Returns each entry's `balance` after it: the total
/// of its v2 asset, all wallets together, as the `balances` channel documents.
pub(super) fn apply(
    balances: &mut Vec<(String, f64, f64)>,
    entries: &[SimLedgerEntry],
) -> Result<Vec<f64>, LedgerRefused> {
    let mut next = balances.clone();
    let mut totals = Vec::with_capacity(entries.len());
    for entry in entries {
        let index = match next.iter().position(|(code, _, _)| *code == entry.asset) {
            Some(index) => index,
            None => {
                next.push((entry.asset.clone(), 0.0, 0.0));
                next.len() - 1
            }
        };
        let after = crate::parse::at_kraken_precision(next[index].1 + entry.amount - entry.fee);
        if after < 0.0 {
            return Err(LedgerRefused {
                asset: entry.asset.clone(),
                would_be: after,
            });
        }
        next[index].1 = after;
        let name = v2_wallet(&entry.asset).0;
        let total: f64 = next
            .iter()
            .filter(|(code, _, _)| v2_wallet(code).0 == name)
            .map(|(_, balance, _)| balance)
            .sum();
        totals.push(crate::parse::at_kraken_precision(total));
    }
    *balances = next;
    Ok(totals)
}

/// One entry of an update's `data`, as the `balances` channel writes it.
pub(super) fn update_item(
    entry: &SimLedgerEntry,
    ledger_id: &str,
    ref_id: &str,
    balance: f64,
) -> Value {
    let (asset, wallet_type, wallet_id) = v2_wallet(&entry.asset);
    let mut item = json!({
        "ledger_id": ledger_id,
        "ref_id": ref_id,
        "timestamp": rfc3339_micros(SystemTime::now()),
        "type": entry.kind,
        "asset": asset,
        "asset_class": "currency",
        "category": entry.category,
        "wallet_type": wallet_type,
        "wallet_id": wallet_id,
        "amount": entry.amount,
        "fee": entry.fee,
        "balance": balance,
    });
    if let Some(subtype) = &entry.subtype {
        item["subtype"] = Value::String(subtype.clone());
    }
    item
}

/// An id shaped like Kraken's (`prefix` then random capitals and digits, `len` in all).
pub(super) fn kraken_id(prefix: &str, len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut rng = rand::thread_rng();
    let mut id = prefix.to_owned();
    while id.len() < len {
        id.push(ALPHABET[rng.gen_range(0..ALPHABET.len())] as char);
    }
    id
}

/// A token shaped like Kraken's: 43 characters of base64.
fn kraken_token() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut rng = rand::thread_rng();
    (0..43)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Now as unix seconds.
pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An RFC 3339 time in UTC to the second (`2026-12-18T08:00:00Z`), as Kraken writes Earn
/// expiries and SystemStatus.
pub(super) fn rfc3339(unixtime: u64) -> String {
    let (year, month, day) = civil_from_days(unixtime / 86_400);
    let secs = unixtime % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// An RFC 3339 time with microseconds, as WebSocket v2 writes times
/// (`2023-09-22T10:23:42.925034Z`).
pub(super) fn rfc3339_micros(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = rfc3339(since.as_secs());
    format!(
        "{}.{:06}Z",
        seconds.trim_end_matches('Z'),
        since.subsec_micros()
    )
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
pub(super) fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_codes_are_shown_as_v2_assets_and_wallets() {
        for (code, expected) in [
            ("XXBT", ("BTC", "spot", "main")),
            ("XBT.F", ("BTC", "earn", "flex")),
            ("XXDG", ("DOGE", "spot", "main")),
            ("ZUSD", ("USD", "spot", "main")),
            ("USD.M", ("USD", "earn", "flexible")),
            ("ETH2.S", ("ETH", "earn", "bonded")),
            ("DOT.S", ("DOT", "earn", "bonded")),
            ("NEWCOIN", ("NEWCOIN", "spot", "main")),
        ] {
            let (name, kind, id) = v2_wallet(code);
            assert_eq!((name.as_str(), kind, id), expected, "{code}");
        }
    }

    #[test]
    fn a_transaction_applies_whole_or_not_at_all() {
        let mut balances = vec![
            ("XXBT".to_owned(), 1.0, 0.5),
            ("XBT.F".to_owned(), 0.5, 0.0),
        ];
        let totals = apply(
            &mut balances,
            &[
                SimLedgerEntry::transfer("XXBT", -0.25),
                SimLedgerEntry::transfer("XBT.F", 0.25),
            ],
        )
        .unwrap();
        assert_eq!(totals, [1.25, 1.5]);
        assert_eq!(
            balances[0],
            ("XXBT".to_owned(), 0.75, 0.5),
            "the hold is kept"
        );
        let before = balances.clone();
        let refused = apply(
            &mut balances,
            &[
                SimLedgerEntry::deposit("ZUSD", 10.0),
                SimLedgerEntry::withdrawal("XXBT", 0.75, 0.0001),
            ],
        )
        .unwrap_err();
        assert_eq!(refused.asset, "XXBT");
        assert_eq!(balances, before, "nothing applied");
        apply(&mut balances, &[SimLedgerEntry::deposit("ZUSD", 10.0)]).unwrap();
        assert_eq!(
            balances[2],
            ("ZUSD".to_owned(), 10.0, 0.0),
            "a new code is added"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_is_accepted_for_900_seconds_or_for_good_once_used() {
        let mut stream = StreamState::new();
        let now = Instant::now();
        let unused = stream.issue_token(now);
        let used = stream.issue_token(now);
        assert_eq!(unused.len(), 43);
        assert!(stream.accept_token(&used, now + Duration::from_secs(899)));
        assert!(!stream.accept_token(&unused, now + TOKEN_LIFETIME));
        assert!(stream.accept_token(&used, now + Duration::from_secs(100_000)));
        assert!(!stream.accept_token("made-up", now));
    }

    #[test]
    fn times_are_written_as_kraken_writes_them() {
        assert_eq!(rfc3339(1_688_669_520), "2023-07-06T18:52:00Z");
        let time = UNIX_EPOCH + Duration::from_micros(1_695_378_222_925_034);
        assert_eq!(rfc3339_micros(time), "2023-09-22T10:23:42.925034Z");
        assert_eq!(
            crate::parse::parse_rfc3339(&rfc3339_micros(time)),
            Some(time)
        );
    }
}
