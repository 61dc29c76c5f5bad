//! How the simulated Kraken answers GetWebSocketsToken, DepositStatus, WithdrawStatus and
//! SystemStatus, in Kraken's documented format.
//!
//! Owns those four answer bodies: tokens issued from the stream state, movements from the lists
//! tests and the demo set, the trading mode.
//! Must not: authenticate or check permissions (the server does before asking), or talk HTTP.

use serde_json::{Value, json};
use tokio::time::Instant;

use super::ledger::{TOKEN_LIFETIME, rfc3339, unix_now};
use super::state::Shared;

/// GetWebSocketsToken's result: a fresh token and its lifetime in seconds.
pub(super) fn websocket_token_result(shared: &Shared) -> Value {
    let token = shared.state().stream.issue_token(Instant::now());
    json!({ "token": token, "expires": TOKEN_LIFETIME.as_secs() })
}

/// DepositStatus's result: the deposits as set, newest first.
pub(super) fn deposit_status_result(shared: &Shared) -> Value {
    Value::Array(
        shared
            .state()
            .deposits
            .iter()
            .map(|m| m.to_json())
            .collect(),
    )
}

/// WithdrawStatus's result: the withdrawals as set, newest first.
pub(super) fn withdraw_status_result(shared: &Shared) -> Value {
    Value::Array(
        shared
            .state()
            .withdrawals
            .iter()
            .map(|m| m.to_json())
            .collect(),
    )
}

/// SystemStatus's result: the mode as set and the time now (RFC 3339).
pub(super) fn system_status_result(shared: &Shared) -> Value {
    let status = shared.state().system_status.as_str().to_owned();
    json!({ "status": status, "timestamp": rfc3339(unix_now()) })
}
