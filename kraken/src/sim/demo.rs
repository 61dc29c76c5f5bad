//! The demo's money in motion: a task that posts a deposit, a trade and a withdrawal about every
//! period, and lists deposits and withdrawals so in-flight panels show data.
//!
//! Owns [`DemoActivity`] and the choice of each transaction: dollars deposited, bitcoin bought
//! and sold in turn at the sim's price, dollars withdrawn with a fee. Every transaction goes
//! through the ledger like a test's, so no balance ever falls below zero (a transaction that
//! would is skipped), and the balances stay near where they started.
//! Must not: outlive its handle or the sim, or touch anything but the sim's state.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::ledger::{SimLedgerEntry, SimMovement, unix_now};
use super::state::Shared;
use super::ws::post_transaction;
use crate::parse::MovementStatus;

/// Dollars deposited, then withdrawn, each period.
const DEPOSIT_USD: f64 = 500.0;
/// The withdrawal's fee, in dollars.
const WITHDRAWAL_FEE_USD: f64 = 5.0;
/// Bitcoin bought or sold each period.
const TRADE_XBT: f64 = 0.005;
/// Most movements each list keeps (Kraken's DepositStatus pages hold 25).
const MAX_LISTED: usize = 25;

/// The running demo activity; dropping it stops the task.
#[derive(Debug)]
pub struct DemoActivity {
    /// The task posting transactions.
    task: JoinHandle<()>,
}

impl Drop for DemoActivity {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// When the first round comes after the start.
const FIRST_ROUND: Duration = Duration::from_secs(5);

/// Lists the movements in flight and starts the task.
pub(super) fn start(
    shared: Arc<Shared>,
    period: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> DemoActivity {
    {
        let mut state = shared.state();
        let mut pending = SimMovement::new("Bitcoin", "XXBT", 0.05, MovementStatus::Pending);
        pending.time = pending.time.saturating_sub(600);
        let mut on_hold = SimMovement::new("SEPA", "ZEUR", 2500.0, MovementStatus::Settled);
        on_hold.status_prop = Some("onhold".into());
        on_hold.time = on_hold.time.saturating_sub(3600);
        state.deposits.splice(0..0, [pending, on_hold]);
        let mut withdrawing = SimMovement::new("Ether", "XETH", 0.4, MovementStatus::Pending);
        withdrawing.fee = 0.0025;
        state.withdrawals.insert(0, withdrawing);
    }
    let task = tokio::spawn(async move {
        // The first round comes a few seconds in, once a stream has had time to subscribe, so
        // a new demo shows money moving at once; then one round per period.
        let first = tokio::time::Instant::now() + FIRST_ROUND.min(period);
        let mut ticks = tokio::time::interval_at(first, period);
        let mut round: u64 = 0;
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|&stopped| stopped) => break,
                _ = ticks.tick() => {
                    run_round(&shared, round);
                    round += 1;
                }
            }
        }
    });
    DemoActivity { task }
}

/// One period: a dollar deposit, a bitcoin trade (bought on even rounds, sold on odd ones), a
/// dollar withdrawal. A transaction the balances cannot afford is skipped.
fn run_round(shared: &Shared, round: u64) {
    let price = shared
        .state()
        .prices
        .get("XXBTZUSD")
        .copied()
        .unwrap_or(65_000.0);
    if post_transaction(shared, vec![SimLedgerEntry::deposit("ZUSD", DEPOSIT_USD)]).is_ok() {
        record(shared, true, "Bank Frick (SWIFT)", "ZUSD", DEPOSIT_USD, 0.0);
    }
    let (xbt, usd) = if round.is_multiple_of(2) {
        (TRADE_XBT, -TRADE_XBT * price)
    } else {
        (-TRADE_XBT, TRADE_XBT * price)
    };
    let _ = post_transaction(
        shared,
        vec![
            SimLedgerEntry::trade("XXBT", xbt, 0.0),
            SimLedgerEntry::trade("ZUSD", usd, (usd.abs() * 0.0026 * 100.0).round() / 100.0),
        ],
    );
    let amount = DEPOSIT_USD - WITHDRAWAL_FEE_USD;
    let withdrawal = SimLedgerEntry::withdrawal("ZUSD", amount, WITHDRAWAL_FEE_USD);
    if post_transaction(shared, vec![withdrawal]).is_ok() {
        record(
            shared,
            false,
            "Bank Frick (SWIFT)",
            "ZUSD",
            amount,
            WITHDRAWAL_FEE_USD,
        );
    }
}

/// Lists a completed deposit or withdrawal first, keeping the movements in flight listed.
fn record(shared: &Shared, deposit: bool, method: &str, asset: &str, amount: f64, fee: f64) {
    let mut movement = SimMovement::new(method, asset, amount, MovementStatus::Success);
    movement.fee = fee;
    movement.time = unix_now();
    let mut state = shared.state();
    let list = if deposit {
        &mut state.deposits
    } else {
        &mut state.withdrawals
    };
    list.insert(0, movement);
    while list.len() > MAX_LISTED {
        match list.iter().rposition(|m| !m.status.in_flight()) {
            Some(oldest_done) => {
                list.remove(oldest_done);
            }
            None => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::start;
    use super::*;
    use crate::sim::SimOptions;
    use crate::stream::{BalanceStream, StreamEvent};

    #[tokio::test]
    async fn rounds_keep_every_balance_at_or_above_zero_and_near_where_it_started() {
        let sim = start(SimOptions::default()).await;
        sim.set_balances(vec![
            ("XXBT".into(), 0.004, 0.0),
            ("ZUSD".into(), 300.0, 0.0),
        ]);
        for round in 0..200 {
            run_round(&sim.shared, round);
            for (code, balance, _) in sim.shared.state().balances.iter() {
                assert!(*balance >= 0.0, "round {round}: {code} at {balance}");
            }
        }
        let balances = sim.shared.state().balances.clone();
        let usd = balances.iter().find(|b| b.0 == "ZUSD").unwrap().1;
        let xbt = balances.iter().find(|b| b.0 == "XXBT").unwrap().1;
        assert!(usd < 2_000.0, "{usd}");
        assert!(xbt <= 0.004 + TRADE_XBT + 1e-9, "{xbt}");
        let state = sim.shared.state();
        assert!(state.deposits.len() <= MAX_LISTED);
        assert!(state.deposits.iter().all(|m| m.asset == "ZUSD"));
        assert!(
            state
                .withdrawals
                .iter()
                .all(|m| m.fee == WITHDRAWAL_FEE_USD)
        );
    }

    #[tokio::test]
    async fn the_demo_lists_money_in_flight_and_streams_its_transactions() {
        let sim = start(SimOptions {
            permissions: vec!["create-ws-token".into()],
            ..SimOptions::default()
        })
        .await;
        let token = sim
            .shared
            .state()
            .stream
            .issue_token(tokio::time::Instant::now());
        let token = crate::secret::SecretText::new(token);
        let mut stream = BalanceStream::connect(&sim.ws_url(), &token, Duration::from_secs(5))
            .await
            .unwrap();
        let activity = sim.start_demo_activity(Duration::from_millis(20));
        {
            let state = sim.shared.state();
            assert!(
                state
                    .deposits
                    .iter()
                    .any(|m| m.status_prop.as_deref() == Some("onhold"))
            );
            assert!(
                state
                    .deposits
                    .iter()
                    .any(|m| m.status == MovementStatus::Pending)
            );
            assert!(state.withdrawals.iter().any(|m| m.status.in_flight()));
        }
        let mut kinds = Vec::new();
        while kinds.len() < 3 {
            if let StreamEvent::Update { entries, .. } = stream.next_event().await.unwrap() {
                kinds.push(entries[0].kind.clone());
            }
        }
        assert_eq!(kinds, ["deposit", "trade", "withdrawal"]);
        drop(activity);
        let in_flight = sim
            .shared
            .state()
            .deposits
            .iter()
            .filter(|m| m.status.in_flight())
            .count();
        assert_eq!(in_flight, 2, "the pending and the held deposit stay listed");
    }
}
