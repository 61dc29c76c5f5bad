//! Kraken's methods for money in motion and the exchange's state: GetWebSocketsToken,
//! DepositStatus, WithdrawStatus (private, signed) and SystemStatus (public, paced).
//!
//! Owns one client method per call, each going through the client's private or public call
//! helper like every other method.
//! Must not: let the WebSocket token reach an error, a log line or an observer, or decide when
//! to call.

use super::KrakenClient;
use crate::endpoint::Endpoint;
use crate::error::KrakenError;
use crate::parse::{self, Movement, SystemState, WebSocketToken};

impl KrakenClient {
    /// A fresh token for Kraken's authenticated WebSocket API (the `balances` channel). Needs the
    /// key permission "WebSocket interface" (GetApiKeyInfo code `create-ws-token`); a key without
    /// it is refused with [`crate::Reason::PermissionDenied`]. Use the token within
    /// [`WebSocketToken::expires`]; it stays valid while a subscription made with it is held.
    pub async fn websocket_token(&self) -> Result<WebSocketToken, KrakenError> {
        self.private(Endpoint::GetWebSocketsToken, &[], parse::websocket_token)
            .await
    }

    /// The account's recent deposits (Kraken's default page), newest first. Needs "Funds: Query".
    pub async fn deposit_status(&self) -> Result<Vec<Movement>, KrakenError> {
        self.private(Endpoint::DepositStatus, &[], parse::deposit_status)
            .await
    }

    /// The account's recent withdrawals, newest first. Needs "Funds: Withdraw" or "Data: Query
    /// ledger entries", so a query-only key is refused with
    /// [`crate::Reason::PermissionDenied`].
    pub async fn withdraw_status(&self) -> Result<Vec<Movement>, KrakenError> {
        self.private(Endpoint::WithdrawStatus, &[], parse::withdraw_status)
            .await
    }

    /// Whether the exchange is online, in maintenance, cancel-only or post-only. Public: any
    /// client can ask, paced like every public call.
    pub async fn system_status(&self) -> Result<SystemState, KrakenError> {
        self.public_get(Endpoint::SystemStatus, None, parse::system_status)
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::testing::*;
    use crate::error::Reason;
    use crate::observer::CountingObserver;
    use crate::parse::{MovementStatus, SystemStatus};
    use crate::sim::{SimMovement, SimOptions};
    use crate::{Endpoint, sim::Fault};

    #[tokio::test]
    async fn a_websocket_token_needs_the_create_ws_token_permission() {
        let metrics = Arc::new(CountingObserver::default());
        let query_only = start(SimOptions::default()).await;
        let err = signed(&query_only, &metrics)
            .websocket_token()
            .await
            .unwrap_err();
        assert_eq!(err.reason(), Reason::PermissionDenied);
        assert_eq!(
            err.to_string(),
            "Kraken answered EGeneral:Permission denied"
        );

        let sim = start(SimOptions {
            permissions: vec!["query-funds".into(), "create-ws-token".into()],
            ..SimOptions::default()
        })
        .await;
        let client = signed(&sim, &metrics);
        let first = client.websocket_token().await.unwrap();
        let second = client.websocket_token().await.unwrap();
        assert_eq!(first.expires, std::time::Duration::from_secs(900));
        assert_eq!(first.token.expose().len(), 43);
        assert_ne!(first.token, second.token, "each call issues a new token");
        assert_eq!(metrics.requests("main", Endpoint::GetWebSocketsToken), 3);
        assert_eq!(
            metrics.errors(
                "main",
                Endpoint::GetWebSocketsToken,
                Reason::PermissionDenied
            ),
            1
        );
        assert!(!format!("{first:?}").contains(first.token.expose()));
    }

    #[tokio::test]
    async fn deposits_and_withdrawals_come_from_the_sim_with_its_permissions() {
        let metrics = Arc::new(CountingObserver::default());
        let sim = start(SimOptions::default()).await;
        let mut on_hold = SimMovement::new("SEPA", "ZEUR", 2500.0, MovementStatus::Settled);
        on_hold.status_prop = Some("onhold".into());
        let pending = SimMovement::new("Bitcoin", "XXBT", 0.05, MovementStatus::Pending);
        sim.set_deposits(vec![pending.clone(), on_hold]);
        let client = signed(&sim, &metrics);
        let deposits = client.deposit_status().await.unwrap();
        assert_eq!(deposits.len(), 2);
        assert_eq!(deposits[0].asset, "XXBT");
        assert_eq!(deposits[0].refid, pending.refid);
        assert_eq!(deposits[0].status, MovementStatus::Pending);
        assert_eq!(deposits[0].amount, 0.05);
        assert!(deposits[1].on_hold);
        assert_eq!(deposits[1].amount, 2500.0);

        let err = client.withdraw_status().await.unwrap_err();
        assert_eq!(err.reason(), Reason::PermissionDenied, "a query-only key");
        sim.inject(Endpoint::DepositStatus, Fault::NoResult, Some(1));
        let err = client.deposit_status().await.unwrap_err();
        assert_eq!(err.reason(), Reason::Decode, "never an empty list: {err}");

        for permission in ["withdraw-funds", "query-ledger"] {
            let sim = start(SimOptions {
                permissions: vec![permission.into()],
                ..SimOptions::default()
            })
            .await;
            let mut done = SimMovement::new("Bitcoin", "XXBT", 0.1, MovementStatus::Success);
            done.fee = 0.0002;
            sim.set_withdrawals(vec![done]);
            let client = signed(&sim, &metrics);
            let withdrawals = client.withdraw_status().await.unwrap();
            assert_eq!(withdrawals[0].fee, 0.0002, "{permission}");
            assert!(client.withdraw_status().await.is_ok());
            let err = client.deposit_status().await.unwrap_err();
            assert_eq!(err.reason(), Reason::PermissionDenied, "{permission}");
        }
    }

    #[tokio::test]
    async fn system_status_is_public_and_follows_the_sim() {
        let metrics = Arc::new(CountingObserver::default());
        let sim = start(SimOptions::default()).await;
        let client = public(&sim, &metrics);
        let state = client.system_status().await.unwrap();
        assert_eq!(state.status, SystemStatus::Online);
        let now = std::time::SystemTime::now();
        let timestamp = state.timestamp.expect("a timestamp");
        assert!(now.duration_since(timestamp).unwrap_or_default().as_secs() < 60);
        sim.set_system_status(SystemStatus::CancelOnly);
        assert_eq!(
            client.system_status().await.unwrap().status,
            SystemStatus::CancelOnly
        );
        assert_eq!(metrics.requests("_public", Endpoint::SystemStatus), 2);
        assert_eq!(sim.calls(Endpoint::SystemStatus), 2);
    }
}
