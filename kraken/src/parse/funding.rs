//! Money in motion and the exchange's state: DepositStatus, WithdrawStatus, GetWebSocketsToken
//! and SystemStatus.
//!
//! Owns [`Movement`] (one deposit or withdrawal), [`MovementStatus`], [`WebSocketToken`],
//! [`SystemState`] and [`SystemStatus`], and the strict reading of their answers: a missing or
//! `null` result is a decode error, never an empty list or an "online" exchange.
//! Must not: keep a movement's destination (`info`, an address or an account) or its
//! transaction id, print a WebSocket token, or judge what a movement means for the operator.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::Value;

use super::earn::parse_rfc3339;
use super::envelope::{Amount, envelope, printable};
use crate::error::KrakenError;
use crate::secret::SecretText;

/// Where a deposit or withdrawal stands, as Kraken names it (the IFEX transaction states its
/// docs refer to).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MovementStatus {
    /// `Initial`: requested, nothing done yet.
    Initial,
    /// `Pending`: under way (for a deposit, waiting for confirmations).
    Pending,
    /// `Settled`: done on the other side, not yet credited or debited here.
    Settled,
    /// `Success`: complete.
    Success,
    /// `Failure`: did not happen (`status-prop` may say `canceled`).
    Failure,
    /// A status Kraken has added since; kept so the movement is still counted.
    Other(String),
}

impl MovementStatus {
    /// Kraken's name of the status (`Pending`).
    pub fn as_str(&self) -> &str {
        match self {
            MovementStatus::Initial => "Initial",
            MovementStatus::Pending => "Pending",
            MovementStatus::Settled => "Settled",
            MovementStatus::Success => "Success",
            MovementStatus::Failure => "Failure",
            MovementStatus::Other(name) => name,
        }
    }

    /// Whether the money has not arrived (deposit) or left (withdrawal) yet: Initial, Pending or
    /// Settled. Success and Failure are final; an unknown status is not counted as in flight.
    pub fn in_flight(&self) -> bool {
        matches!(
            self,
            MovementStatus::Initial | MovementStatus::Pending | MovementStatus::Settled
        )
    }

    fn from_kraken(name: &str) -> Self {
        match name {
            "Initial" => MovementStatus::Initial,
            "Pending" => MovementStatus::Pending,
            "Settled" => MovementStatus::Settled,
            "Success" => MovementStatus::Success,
            "Failure" => MovementStatus::Failure,
            other => MovementStatus::Other(printable(other)),
        }
    }
}

/// One recent deposit or withdrawal, as DepositStatus and WithdrawStatus list it
/// (api-specs `schemas/objects/funding/deposits/deposit.yaml`, `.../withdrawals/withdrawal.yaml`).
///
/// The destination (`info`: an address or a bank account), the transaction id (`txid`) and the
/// originators are not kept: nothing the exporter shows needs them, and they identify the
/// account's counterparties.
#[derive(Debug, Clone, PartialEq)]
pub struct Movement {
    /// The funding method (`Bitcoin`, `Ether (Hex)`, `SEPA`).
    pub method: String,
    /// The network, when Kraken names one (withdrawals only).
    pub network: Option<String>,
    /// Kraken's asset class (`currency`, `tokenized_asset`), when given.
    pub asset_class: Option<String>,
    /// Kraken's REST asset code (`XXBT`, `XETH`, `ZEUR`).
    pub asset: String,
    /// Kraken's reference id of the movement.
    pub refid: String,
    /// The amount moved, before the fee.
    pub amount: f64,
    /// The fee paid; 0 when Kraken leaves it out (its own deposit example does).
    pub fee: f64,
    /// When the movement was requested (`time`, unix seconds).
    pub time: SystemTime,
    /// Where it stands.
    pub status: MovementStatus,
    /// Kraken's additional property (`status-prop`), as written: `onhold`, `return`,
    /// `cancel-pending`, `canceled`, `cancel-denied`.
    pub status_prop: Option<String>,
    /// Whether Kraken holds it for review (`status-prop` is `onhold`).
    pub on_hold: bool,
}

/// One movement as Kraken writes it.
#[derive(Deserialize)]
struct RawMovement {
    method: Option<String>,
    network: Option<String>,
    aclass: Option<String>,
    asset: Option<String>,
    refid: Option<String>,
    amount: Option<Amount>,
    fee: Option<Amount>,
    time: Option<Value>,
    status: Option<String>,
    #[serde(rename = "status-prop")]
    status_prop: Option<String>,
}

/// Parses a DepositStatus answer: the account's recent deposits, newest first as Kraken sends
/// them.
pub(crate) fn deposit_status(status: u16, body: &[u8]) -> Result<Vec<Movement>, KrakenError> {
    movements("DepositStatus", status, body)
}

/// Parses a WithdrawStatus answer: the account's recent withdrawals.
pub(crate) fn withdraw_status(status: u16, body: &[u8]) -> Result<Vec<Movement>, KrakenError> {
    movements("WithdrawStatus", status, body)
}

/// A list of movements. An absent or `null` result, or one that is not a list, is a decode
/// error naming `method`: reading it as "nothing in flight" would hide money in motion.
fn movements(method: &str, status: u16, body: &[u8]) -> Result<Vec<Movement>, KrakenError> {
    let result: Option<Value> = envelope(status, body)?;
    let items = match result {
        Some(Value::Array(items)) => items,
        None | Some(Value::Null) => {
            return Err(KrakenError::Decode(format!(
                "{method} answered without a result"
            )));
        }
        Some(_) => {
            return Err(KrakenError::Decode(format!(
                "{method} answered something other than a list"
            )));
        }
    };
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let raw: RawMovement = serde_json::from_value(item).map_err(|e| {
                KrakenError::Decode(format!("{method} item {index} is malformed: {e}"))
            })?;
            movement(raw)
                .map_err(|what| KrakenError::Decode(format!("{method} item {index} has {what}")))
        })
        .collect()
}

/// One movement, or what is wrong with it.
fn movement(raw: RawMovement) -> Result<Movement, String> {
    let asset = raw.asset.ok_or("no asset")?;
    let amount = raw
        .amount
        .ok_or("no amount")?
        .value(&asset)
        .map_err(|e| e.to_string())?;
    let fee = match raw.fee {
        Some(fee) => fee.value(&asset).map_err(|e| e.to_string())?,
        None => 0.0,
    };
    let time = raw.time.as_ref().and_then(unix_seconds).ok_or("no time")?;
    let status = MovementStatus::from_kraken(raw.status.as_deref().ok_or("no status")?);
    let status_prop = raw.status_prop.map(|prop| printable(&prop));
    Ok(Movement {
        method: printable(&raw.method.unwrap_or_default()),
        network: raw.network.map(|n| printable(&n)),
        asset_class: raw.aclass.map(|c| printable(&c)),
        asset: printable(&asset),
        refid: printable(&raw.refid.ok_or("no refid")?),
        amount,
        fee,
        time,
        on_hold: status_prop.as_deref() == Some("onhold"),
        status,
        status_prop,
    })
}

/// Unix seconds written as an integer, a float or a decimal string.
fn unix_seconds(value: &Value) -> Option<SystemTime> {
    let secs = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    (secs.is_finite() && secs >= 0.0)
        .then(|| SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs))
}

/// A token for Kraken's authenticated WebSocket API (GetWebSocketsToken). The token is a
/// credential: `Debug` prints a placeholder.
#[derive(Clone)]
pub struct WebSocketToken {
    /// The token, sent only in the `subscribe` message of a private channel.
    pub token: SecretText,
    /// How long it may be used for a first subscription (Kraken: 900 s); it stays valid while a
    /// subscription made with it is held.
    pub expires: Duration,
}

impl fmt::Debug for WebSocketToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocketToken")
            .field("token", &self.token)
            .field("expires", &self.expires)
            .finish()
    }
}

/// Parses a GetWebSocketsToken answer (`{"token": "...", "expires": 900}`). The decode errors
/// never quote the token.
pub(crate) fn websocket_token(status: u16, body: &[u8]) -> Result<WebSocketToken, KrakenError> {
    let result: Option<Value> = envelope(status, body)?;
    let Some(Value::Object(mut result)) = result else {
        return Err(KrakenError::Decode(
            "GetWebSocketsToken answered without a result object".to_owned(),
        ));
    };
    let token = match result.remove("token") {
        Some(Value::String(token)) if !token.trim().is_empty() => token,
        _ => {
            return Err(KrakenError::Decode(
                "GetWebSocketsToken answered without a token".to_owned(),
            ));
        }
    };
    let expires = result
        .get("expires")
        .and_then(|e| e.as_u64().or_else(|| e.as_str()?.trim().parse().ok()))
        .ok_or_else(|| {
            KrakenError::Decode("GetWebSocketsToken answered without `expires`".to_owned())
        })?;
    Ok(WebSocketToken {
        token: SecretText::new(token),
        expires: Duration::from_secs(expires),
    })
}

/// The exchange's trading mode (SystemStatus `status`, and `system` on the WebSocket `status`
/// channel).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SystemStatus {
    /// `online`: operating normally.
    Online,
    /// `maintenance`: offline; no orders or cancellations.
    Maintenance,
    /// `cancel_only`: open orders can be cancelled, nothing else; no trades.
    CancelOnly,
    /// `post_only`: only post-only limit orders; no trades.
    PostOnly,
    /// A mode Kraken has added since, as written.
    Other(String),
}

impl SystemStatus {
    /// Kraken's name of the mode (`cancel_only`).
    pub fn as_str(&self) -> &str {
        match self {
            SystemStatus::Online => "online",
            SystemStatus::Maintenance => "maintenance",
            SystemStatus::CancelOnly => "cancel_only",
            SystemStatus::PostOnly => "post_only",
            SystemStatus::Other(name) => name,
        }
    }

    /// The mode Kraken names `name`; an unknown name is [`SystemStatus::Other`].
    pub fn from_kraken(name: &str) -> Self {
        match name {
            "online" => SystemStatus::Online,
            "maintenance" => SystemStatus::Maintenance,
            "cancel_only" => SystemStatus::CancelOnly,
            "post_only" => SystemStatus::PostOnly,
            other => SystemStatus::Other(printable(other)),
        }
    }
}

/// What SystemStatus says: the mode, and Kraken's time of the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemState {
    /// The trading mode.
    pub status: SystemStatus,
    /// Kraken's `timestamp` (RFC 3339); `None` when absent or unreadable.
    pub timestamp: Option<SystemTime>,
}

/// Parses a SystemStatus answer. A missing result or status is a decode error, never "online".
pub(crate) fn system_status(status: u16, body: &[u8]) -> Result<SystemState, KrakenError> {
    let result: Option<Value> = envelope(status, body)?;
    let Some(Value::Object(result)) = result else {
        return Err(KrakenError::Decode(
            "SystemStatus answered without a result object".to_owned(),
        ));
    };
    let Some(Value::String(name)) = result.get("status") else {
        return Err(KrakenError::Decode(
            "SystemStatus answered without a status".to_owned(),
        ));
    };
    Ok(SystemState {
        status: SystemStatus::from_kraken(name),
        timestamp: result
            .get("timestamp")
            .and_then(Value::as_str)
            .and_then(parse_rfc3339),
    })
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use crate::error::Reason;

    #[test]
    fn the_documented_deposits_parse_with_an_on_hold_one_and_a_missing_fee() {
        let deposits = deposit_status(200, DOC_DEPOSITS).unwrap();
        assert_eq!(deposits.len(), 2);
        let first = &deposits[0];
        assert_eq!(first.method, "Bitcoin");
        assert_eq!(first.asset, "XXBT");
        assert_eq!(first.asset_class.as_deref(), Some("currency"));
        assert_eq!(first.refid, "FTQcuak-V6Za8qrWnhzTx67yYHz8Tg");
        assert_eq!(first.amount, 0.78125);
        assert_eq!(first.fee, 0.0);
        assert_eq!(first.time, at(1_688_992_722));
        assert_eq!(first.status, MovementStatus::Success);
        assert_eq!(first.status_prop.as_deref(), Some("return"));
        assert!(!first.on_hold);
        let second = &deposits[1];
        assert_eq!(second.asset, "XETH");
        assert_eq!(second.amount, 0.1383862742);
        assert_eq!(second.fee, 0.0, "no fee in Kraken's example");
        assert_eq!(second.status, MovementStatus::Settled);
        assert!(second.on_hold);
        assert!(second.status.in_flight());
        let printed = format!("{deposits:?}");
        assert!(!printed.contains("2Myd4eaAW96"), "the address is not kept");
        assert!(!printed.contains("6544b41b"), "the txid is not kept");
    }

    #[test]
    fn the_documented_withdrawals_parse_pending_and_canceled() {
        let withdrawals = withdraw_status(200, DOC_WITHDRAWALS).unwrap();
        assert_eq!(withdrawals.len(), 2);
        assert_eq!(withdrawals[0].status, MovementStatus::Pending);
        assert_eq!(withdrawals[0].fee, 0.0002);
        assert_eq!(withdrawals[0].amount, 0.72485);
        assert_eq!(withdrawals[0].time, at(1_688_014_586));
        assert!(withdrawals[0].status.in_flight());
        assert_eq!(withdrawals[1].status, MovementStatus::Failure);
        assert_eq!(withdrawals[1].status_prop.as_deref(), Some("canceled"));
        assert!(!withdrawals[1].status.in_flight());
        assert!(!withdrawals[1].on_hold);
    }

    #[test]
    fn a_missing_or_null_movement_list_is_an_error_and_an_empty_one_is_not() {
        for body in [
            &br#"{"error":[]}"#[..],
            br#"{"error":[],"result":null}"#,
            br#"{"error":[],"result":{"deposit":[]}}"#,
            br#"{"error":[],"result":"none"}"#,
        ] {
            let err = deposit_status(200, body).unwrap_err();
            assert_eq!(err.reason(), Reason::Decode, "{err}");
            assert!(err.to_string().contains("DepositStatus"), "{err}");
        }
        assert!(
            withdraw_status(200, br#"{"error":[],"result":[]}"#)
                .unwrap()
                .is_empty()
        );
        let err = withdraw_status(200, NO_RESULT).unwrap_err();
        assert!(err.to_string().contains("WithdrawStatus"), "{err}");
        let err = withdraw_status(200, PERMISSION_DENIED).unwrap_err();
        assert_eq!(err.reason(), Reason::PermissionDenied);
    }

    #[test]
    fn a_malformed_movement_names_its_index_and_what_is_missing() {
        for (body, expected) in [
            (
                r#"[{"asset":"XXBT","amount":"1","time":1,"status":"Success"}]"#,
                "item 0 has no refid",
            ),
            (
                r#"[{"asset":"XXBT","refid":"R","amount":"x","time":1,"status":"Success"}]"#,
                "not a number",
            ),
            (
                r#"[{"asset":"XXBT","refid":"R","amount":"1","status":"Success"}]"#,
                "no time",
            ),
            (
                r#"[{"asset":"XXBT","refid":"R","amount":"1","time":1}]"#,
                "no status",
            ),
            (r#"[{"asset":7}]"#, "item 0 is malformed"),
            (r#"[1]"#, "item 0 is malformed"),
        ] {
            let body = format!(r#"{{"error":[],"result":{body}}}"#);
            let err = deposit_status(200, body.as_bytes()).unwrap_err();
            assert!(err.to_string().contains(expected), "{err}");
        }
        let body = br#"{"error":[],"result":[{"asset":"XXBT","refid":"R","amount":1,"time":"5","status":"Partial"}]}"#;
        let movement = &deposit_status(200, body).unwrap()[0];
        assert_eq!(movement.status, MovementStatus::Other("Partial".into()));
        assert!(!movement.status.in_flight());
        assert_eq!(movement.time, at(5));
    }

    #[test]
    fn the_documented_token_parses_and_never_prints() {
        let token = websocket_token(200, DOC_WS_TOKEN).unwrap();
        assert_eq!(
            token.token.expose(),
            "1Dwc4lzSwNWOAwkMdqhssNNFhs1ed606d1WcF3XfEMw"
        );
        assert_eq!(token.expires, Duration::from_secs(900));
        let printed = format!("{token:?}");
        assert!(!printed.contains("1Dwc4"), "{printed}");
        assert!(printed.contains("900"), "{printed}");
        for body in [
            &br#"{"error":[]}"#[..],
            br#"{"error":[],"result":null}"#,
            br#"{"error":[],"result":{"expires":900}}"#,
            br#"{"error":[],"result":{"token":"","expires":900}}"#,
            br#"{"error":[],"result":{"token":"SECRETTOKEN"}}"#,
        ] {
            let err = websocket_token(200, body).unwrap_err();
            assert_eq!(err.reason(), Reason::Decode);
            assert!(!err.to_string().contains("SECRETTOKEN"), "{err}");
        }
        let err = websocket_token(200, PERMISSION_DENIED).unwrap_err();
        assert_eq!(err.reason(), Reason::PermissionDenied);
    }

    #[test]
    fn the_documented_system_status_parses_and_unknown_modes_are_kept() {
        let state = system_status(200, DOC_SYSTEM_STATUS).unwrap();
        assert_eq!(state.status, SystemStatus::Online);
        assert_eq!(state.timestamp, Some(at(1_688_669_520)));
        for (name, mode) in [
            ("maintenance", SystemStatus::Maintenance),
            ("cancel_only", SystemStatus::CancelOnly),
            ("post_only", SystemStatus::PostOnly),
            ("limit_only", SystemStatus::Other("limit_only".into())),
        ] {
            let body = format!(r#"{{"error":[],"result":{{"status":"{name}"}}}}"#);
            let state = system_status(200, body.as_bytes()).unwrap();
            assert_eq!(state.status, mode);
            assert_eq!(state.status.as_str(), name);
            assert_eq!(state.timestamp, None);
        }
        for body in [
            &br#"{"error":[]}"#[..],
            br#"{"error":[],"result":null}"#,
            br#"{"error":[],"result":{"timestamp":"2023-07-06T18:52:00Z"}}"#,
        ] {
            assert_eq!(
                system_status(200, body).unwrap_err().reason(),
                Reason::Decode
            );
        }
    }
}
