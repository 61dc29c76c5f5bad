//! The messages of Kraken's WebSocket v2 API that the `balances` client reads, parsed purely.
//!
//! Owns [`StreamEvent`] and what it carries ([`StreamBalance`], [`Wallet`], [`LedgerEntry`]),
//! [`parse_message`], and the v2 → REST asset names ([`rest_asset_name`]).
//! Must not: do I/O, or keep a message's text in an error beyond what names the problem.

use std::time::SystemTime;

use serde::Deserialize;
use serde_json::Value;

use super::StreamError;
use crate::parse::{SystemStatus, parse_rfc3339};

/// One meaningful message of a `balances` connection.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// Kraken accepted the subscription to `channel` (the subscribe ack).
    Subscribed {
        /// The channel subscribed (`balances`).
        channel: String,
    },
    /// Every asset's balance at the time of subscribing (`type: snapshot`).
    Snapshot {
        /// The message's place in this subscription (1 for the snapshot).
        sequence: u64,
        /// One entry per asset held.
        balances: Vec<StreamBalance>,
    },
    /// Ledger transactions completed since (`type: update`), one message per transaction.
    Update {
        /// The message's place in this subscription: one more than the previous message's. A
        /// larger jump means messages were lost, and the balances must be read afresh.
        sequence: u64,
        /// The ledger entries of the transaction.
        entries: Vec<LedgerEntry>,
    },
    /// The `heartbeat` channel: the connection is alive (about once a second while subscribed).
    Heartbeat,
    /// The `status` channel: the exchange's trading mode, sent on connecting and on changes.
    Status {
        /// The trading mode (`system`).
        system: SystemStatus,
        /// The WebSocket API version (`v2`).
        api_version: String,
        /// Kraken's id of this connection, for its support.
        connection_id: Option<u64>,
        /// The version of Kraken's WebSocket service.
        version: String,
    },
    /// The answer to [`super::BalanceStream::ping`].
    Pong,
    /// The server closed the connection with a close frame; connect again to go on.
    Closed,
    /// A message of a channel or method this client does not read, named by it; skipped by
    /// [`super::BalanceStream::next_event`].
    Other(String),
}

/// One asset of a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamBalance {
    /// The v2 asset name (`BTC`, `USD`, `DOGE`); see [`rest_asset_name`].
    pub asset: String,
    /// Kraken's asset class (`currency`), when given.
    pub asset_class: Option<String>,
    /// The total held across all wallets.
    pub balance: f64,
    /// Where it is held.
    pub wallets: Vec<Wallet>,
}

/// One wallet of an asset in a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Wallet {
    /// Kraken's wallet `type`: `spot` or `earn`.
    pub kind: String,
    /// Kraken's wallet `id`: `main`, `flex`, `bonded`, `flexible`, `liquid`, `locked`, `closed`.
    pub id: String,
    /// The amount in this wallet.
    pub balance: f64,
}

/// One ledger entry of an update: a completed transaction's effect on one asset.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerEntry {
    /// Kraken's ledger id.
    pub ledger_id: String,
    /// The transaction's reference id, shared by the entries of one transaction (a trade's two
    /// legs).
    pub ref_id: String,
    /// When the transaction completed.
    pub timestamp: SystemTime,
    /// Kraken's `type`: `deposit`, `withdrawal`, `trade`, `transfer`, `earn`, `staking`, ...
    pub kind: String,
    /// Kraken's `subtype`, when given.
    pub subtype: Option<String>,
    /// Kraken's `category`, when given (`deposit`, `trade`, ...).
    pub category: Option<String>,
    /// The v2 asset name (`BTC`).
    pub asset: String,
    /// Kraken's asset class, when given.
    pub asset_class: Option<String>,
    /// The wallet type (`spot`, `earn`), when given.
    pub wallet_type: Option<String>,
    /// The wallet id (`main`, `flex`, ...), when given.
    pub wallet_id: Option<String>,
    /// The change of the balance (negative for money out), before the fee.
    pub amount: f64,
    /// The fee paid; 0 when Kraken leaves it out.
    pub fee: f64,
    /// The asset's total balance after the transaction.
    pub balance: f64,
}

/// Longest text kept from a message (a name, an id, Kraken's error): enough for any real one.
const MAX_TEXT: usize = 200;

/// Text from a message, without control characters and cut to [`MAX_TEXT`].
pub(super) fn printable(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_TEXT)
        .collect()
}

/// Parses one text message of a v2 connection. Valid JSON of a channel or method this client
/// does not read is [`StreamEvent::Other`]; a refused subscription is
/// [`StreamError::Refused`] with Kraken's error text; anything else malformed is
/// [`StreamError::Decode`] naming the problem.
pub fn parse_message(text: &str) -> Result<StreamEvent, StreamError> {
    let message: Value = serde_json::from_str(text)
        .map_err(|e| StreamError::Decode(format!("a message that is not JSON ({e})")))?;
    let Value::Object(object) = &message else {
        return Err(StreamError::Decode(
            "a message that is not an object".into(),
        ));
    };
    if let Some(Value::String(method)) = object.get("method") {
        return method_answer(method, object);
    }
    match object.get("channel").and_then(Value::as_str) {
        Some("heartbeat") => Ok(StreamEvent::Heartbeat),
        Some("status") => status(object),
        Some("balances") => balances(message),
        Some(other) => Ok(StreamEvent::Other(printable(other))),
        None => Err(StreamError::Decode(
            "a message with neither a channel nor a method".into(),
        )),
    }
}

/// The answer to a request (`subscribe` ack, `pong`).
fn method_answer(
    method: &str,
    object: &serde_json::Map<String, Value>,
) -> Result<StreamEvent, StreamError> {
    let refused = object.get("success") == Some(&Value::Bool(false));
    match method {
        "subscribe" if refused => Err(StreamError::Refused(
            object
                .get("error")
                .and_then(Value::as_str)
                .map_or_else(|| "no reason given".to_owned(), printable),
        )),
        "subscribe" => {
            let channel = object
                .get("result")
                .and_then(|r| r.get("channel"))
                .and_then(Value::as_str)
                .ok_or_else(|| StreamError::Decode("a subscribe ack without a channel".into()))?;
            Ok(StreamEvent::Subscribed {
                channel: printable(channel),
            })
        }
        "pong" => Ok(StreamEvent::Pong),
        other => Ok(StreamEvent::Other(printable(other))),
    }
}

/// A `status` channel update: its first and only data item.
fn status(object: &serde_json::Map<String, Value>) -> Result<StreamEvent, StreamError> {
    let item = object
        .get("data")
        .and_then(Value::as_array)
        .and_then(|data| data.first())
        .ok_or_else(|| StreamError::Decode("a status message without data".into()))?;
    let text = |name: &str| item.get(name).and_then(Value::as_str).map(printable);
    let system = text("system")
        .ok_or_else(|| StreamError::Decode("a status message without `system`".into()))?;
    Ok(StreamEvent::Status {
        system: SystemStatus::from_kraken(&system),
        api_version: text("api_version").unwrap_or_default(),
        connection_id: item.get("connection_id").and_then(Value::as_u64),
        version: text("version").unwrap_or_default(),
    })
}

/// A `balances` message as Kraken writes it.
#[derive(Deserialize)]
struct BalancesMessage {
    #[serde(rename = "type")]
    kind: String,
    sequence: u64,
    data: Vec<Value>,
}

#[derive(Deserialize)]
struct RawBalance {
    asset: String,
    asset_class: Option<String>,
    balance: f64,
    #[serde(default)]
    wallets: Vec<RawWallet>,
}

#[derive(Deserialize)]
struct RawWallet {
    #[serde(rename = "type")]
    kind: String,
    id: String,
    balance: f64,
}

#[derive(Deserialize)]
struct RawEntry {
    ledger_id: String,
    ref_id: String,
    timestamp: String,
    #[serde(rename = "type")]
    kind: String,
    subtype: Option<String>,
    category: Option<String>,
    asset: String,
    asset_class: Option<String>,
    wallet_type: Option<String>,
    wallet_id: Option<String>,
    amount: f64,
    fee: Option<f64>,
    balance: f64,
}

/// A `balances` snapshot or update.
fn balances(message: Value) -> Result<StreamEvent, StreamError> {
    let message: BalancesMessage = serde_json::from_value(message)
        .map_err(|e| StreamError::Decode(format!("a balances message that is malformed: {e}")))?;
    let items = message.data.into_iter().enumerate();
    match message.kind.as_str() {
        "snapshot" => Ok(StreamEvent::Snapshot {
            sequence: message.sequence,
            balances: items
                .map(|(index, item)| snapshot_item(index, item))
                .collect::<Result<_, _>>()?,
        }),
        "update" => Ok(StreamEvent::Update {
            sequence: message.sequence,
            entries: items
                .map(|(index, item)| ledger_entry(index, item))
                .collect::<Result<_, _>>()?,
        }),
        other => Err(StreamError::Decode(format!(
            "a balances message of unknown type {:?}",
            printable(other)
        ))),
    }
}

fn snapshot_item(index: usize, item: Value) -> Result<StreamBalance, StreamError> {
    let raw: RawBalance = serde_json::from_value(item)
        .map_err(|e| StreamError::Decode(format!("snapshot item {index} is malformed: {e}")))?;
    finite(raw.balance, "snapshot", index)?;
    let wallets = raw
        .wallets
        .into_iter()
        .map(|w| {
            finite(w.balance, "snapshot", index)?;
            Ok(Wallet {
                kind: printable(&w.kind),
                id: printable(&w.id),
                balance: w.balance,
            })
        })
        .collect::<Result<_, StreamError>>()?;
    Ok(StreamBalance {
        asset: printable(&raw.asset),
        asset_class: raw.asset_class.as_deref().map(printable),
        balance: raw.balance,
        wallets,
    })
}

fn ledger_entry(index: usize, item: Value) -> Result<LedgerEntry, StreamError> {
    let raw: RawEntry = serde_json::from_value(item)
        .map_err(|e| StreamError::Decode(format!("update item {index} is malformed: {e}")))?;
    let timestamp = parse_rfc3339(&raw.timestamp).ok_or_else(|| {
        StreamError::Decode(format!("update item {index} has an unreadable timestamp"))
    })?;
    let fee = raw.fee.unwrap_or(0.0);
    for amount in [raw.amount, fee, raw.balance] {
        finite(amount, "update", index)?;
    }
    let text = |t: Option<String>| t.as_deref().map(printable);
    Ok(LedgerEntry {
        ledger_id: printable(&raw.ledger_id),
        ref_id: printable(&raw.ref_id),
        timestamp,
        kind: printable(&raw.kind),
        subtype: text(raw.subtype),
        category: text(raw.category),
        asset: printable(&raw.asset),
        asset_class: text(raw.asset_class),
        wallet_type: text(raw.wallet_type),
        wallet_id: text(raw.wallet_id),
        amount: raw.amount,
        fee,
        balance: raw.balance,
    })
}

/// An amount must be a finite number (serde already refuses text).
fn finite(amount: f64, what: &str, index: usize) -> Result<(), StreamError> {
    if amount.is_finite() {
        Ok(())
    } else {
        Err(StreamError::Decode(format!(
            "{what} item {index} has an amount that is not finite"
        )))
    }
}

/// The REST altname of a v2 asset name. Kraken's WebSocket v2 (like its web UI) names bitcoin
/// `BTC` and dogecoin `DOGE` where the REST API's altnames are `XBT` and `XDG` (docs.kraken.com
/// Spot WebSocket overview, "v2 vs v1": symbols `BTC/USD` where v1 wrote `XBT/USD`; the
/// balances examples name `BTC`; `docs/kraken-api.md`, "Checked 2026-12, second pass"). Every
/// other name is the same in both (`USD`, `ETH`, `DOT`) and passes through unchanged, as does
/// an unknown one. A suffix is kept: `BTC.M` → `XBT.M`.
pub fn rest_asset_name(v2: &str) -> String {
    /// (v2 name, REST altname) where they differ.
    const RENAMED: [(&str, &str); 2] = [("BTC", "XBT"), ("DOGE", "XDG")];
    let (stem, suffix) = match v2.split_once('.') {
        Some((stem, suffix)) => (stem, Some(suffix)),
        None => (v2, None),
    };
    let stem = RENAMED
        .iter()
        .find(|(name, _)| *name == stem)
        .map_or(stem, |(_, rest)| rest);
    match suffix {
        Some(suffix) => format!("{stem}.{suffix}"),
        None => stem.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const ACK: &str = include_str!("../../../tests/fixtures/kraken/doc_ws_subscribe_ack.json");
    const SNAPSHOT: &str =
        include_str!("../../../tests/fixtures/kraken/doc_ws_balances_snapshot.json");
    const UPDATE: &str = include_str!("../../../tests/fixtures/kraken/doc_ws_balances_update.json");
    const STATUS: &str = include_str!("../../../tests/fixtures/kraken/doc_ws_status.json");
    const HEARTBEAT: &str = include_str!("../../../tests/fixtures/kraken/doc_ws_heartbeat.json");
    const PONG: &str = include_str!("../../../tests/fixtures/kraken/doc_ws_pong.json");
    const REFUSED: &str = include_str!("../../../tests/fixtures/kraken/ws_subscribe_refused.json");

    #[test]
    fn the_documented_ack_heartbeat_pong_and_status_parse() {
        assert_eq!(
            parse_message(ACK).unwrap(),
            StreamEvent::Subscribed {
                channel: "balances".into()
            }
        );
        assert_eq!(parse_message(HEARTBEAT).unwrap(), StreamEvent::Heartbeat);
        assert_eq!(parse_message(PONG).unwrap(), StreamEvent::Pong);
        assert_eq!(
            parse_message(STATUS).unwrap(),
            StreamEvent::Status {
                system: SystemStatus::Online,
                api_version: "v2".into(),
                connection_id: Some(13_834_774_380_200_032_777),
                version: "2.0.0".into(),
            }
        );
    }

    #[test]
    fn the_documented_snapshot_parses_every_asset_and_wallet() {
        let StreamEvent::Snapshot { sequence, balances } = parse_message(SNAPSHOT).unwrap() else {
            panic!("not a snapshot");
        };
        assert_eq!(sequence, 1);
        let assets: Vec<&str> = balances.iter().map(|b| b.asset.as_str()).collect();
        assert_eq!(assets, ["BTC", "MATIC", "USD"]);
        assert_eq!(balances[0].balance, 1.2);
        assert_eq!(balances[0].asset_class.as_deref(), Some("currency"));
        assert_eq!(
            balances[1].wallets,
            [
                Wallet {
                    kind: "spot".into(),
                    id: "main".into(),
                    balance: 300.0
                },
                Wallet {
                    kind: "earn".into(),
                    id: "flex".into(),
                    balance: 200.0
                },
            ]
        );
        assert_eq!(balances[2].balance, 80595.4943);
    }

    #[test]
    fn the_documented_deposit_update_parses_every_field() {
        let StreamEvent::Update { sequence, entries } = parse_message(UPDATE).unwrap() else {
            panic!("not an update");
        };
        assert_eq!(sequence, 2);
        assert_eq!(
            entries,
            [LedgerEntry {
                ledger_id: "ADKKFF-WEA5A-CNUBHG".into(),
                ref_id: "AGBWUJRU-LAREZ-W3UFAN".into(),
                timestamp: SystemTime::UNIX_EPOCH + Duration::from_micros(1_695_378_222_925_034),
                kind: "deposit".into(),
                subtype: None,
                category: Some("deposit".into()),
                asset: "BTC".into(),
                asset_class: Some("currency".into()),
                wallet_type: Some("spot".into()),
                wallet_id: Some("main".into()),
                amount: 0.01,
                fee: 0.0,
                balance: 0.02,
            }]
        );
    }

    #[test]
    fn a_refused_subscription_carries_kraken_s_error_text() {
        assert_eq!(
            parse_message(REFUSED).unwrap_err(),
            StreamError::Refused("ESession:Invalid session".into())
        );
        let silent = r#"{"method":"subscribe","success":false}"#;
        assert_eq!(
            parse_message(silent).unwrap_err(),
            StreamError::Refused("no reason given".into())
        );
    }

    #[test]
    fn other_channels_and_methods_are_named_not_failed() {
        for (text, name) in [
            (
                r#"{"channel":"executions","type":"update","data":[]}"#,
                "executions",
            ),
            (r#"{"method":"unsubscribe","success":true}"#, "unsubscribe"),
        ] {
            assert_eq!(
                parse_message(text).unwrap(),
                StreamEvent::Other(name.into())
            );
        }
    }

    #[test]
    fn malformed_messages_are_decode_errors_that_name_the_problem() {
        let no_sequence = SNAPSHOT.replace("\"sequence\": 1", "\"sequence\": -1");
        let text_amount = UPDATE.replace("\"amount\": 0.01", "\"amount\": \"0.01\"");
        let bad_time = UPDATE.replace("2023-09-22T10:23:42.925034Z", "yesterday");
        let no_ledger_id = UPDATE.replace("\"ledger_id\"", "\"ledger\"");
        for (text, expected) in [
            ("not json", "not JSON"),
            ("[1,2]", "not an object"),
            ("{}", "neither a channel nor a method"),
            (
                r#"{"method":"subscribe","success":true}"#,
                "without a channel",
            ),
            (r#"{"channel":"status","data":[]}"#, "without data"),
            (r#"{"channel":"status","data":[{}]}"#, "without `system`"),
            (
                r#"{"channel":"balances","type":"delta","sequence":3,"data":[]}"#,
                "unknown type",
            ),
            (
                r#"{"channel":"balances","type":"update","data":[]}"#,
                "malformed",
            ),
            (no_sequence.as_str(), "malformed"),
            (text_amount.as_str(), "update item 0 is malformed"),
            (bad_time.as_str(), "unreadable timestamp"),
            (no_ledger_id.as_str(), "update item 0 is malformed"),
            (
                r#"{"channel":"balances","type":"snapshot","sequence":1,"data":[{"asset":"BTC"}]}"#,
                "snapshot item 0 is malformed",
            ),
        ] {
            match parse_message(text) {
                Err(StreamError::Decode(why)) => assert!(why.contains(expected), "{text}: {why}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn v2_names_map_to_rest_altnames_and_others_pass_through() {
        for (v2, rest) in [
            ("BTC", "XBT"),
            ("DOGE", "XDG"),
            ("USD", "USD"),
            ("ETH", "ETH"),
            ("BTC.M", "XBT.M"),
            ("DOGE.S", "XDG.S"),
            ("NEWCOIN", "NEWCOIN"),
            ("BTCX", "BTCX"),
            ("", ""),
        ] {
            assert_eq!(rest_asset_name(v2), rest, "{v2}");
        }
    }
}
