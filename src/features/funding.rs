//! Money in flight: deposits and withdrawals Kraken has not finished, by asset and state.
//!
//! Calls DepositStatus (Funds: Query) and, when the key may, WithdrawStatus (Funds: Withdraw or
//! Data: Query ledger entries; not called when the key audit shows neither, and not asked
//! again after a refusal) every `--funding.interval`, after a successful balance call. Entries
//! whose status is Initial, Pending or Settled count as `pending`, entries Kraken marks
//! `status-prop: onhold` as `onhold`; finished ones (Success, Failure) are not in flight. A
//! failed call keeps the previous amounts until they are stale (two missed intervals plus
//! `--refresh.stale-after`). Writes `kraken_deposit_in_flight` and
//! `kraken_withdrawal_in_flight`.
//! Must not: count a finished movement, or add a deposit to a balance (Kraken credits it and
//! the balance call shows it).

use std::collections::BTreeMap;
use std::time::Duration;

use kraken::parse::{Movement, MovementStatus};
use kraken::{AssetTable, Endpoint, KrakenError};

use crate::audit::{FUNDS_WITHDRAW, KeyAudit, LEDGER_QUERY};
use crate::exposition::{Exposition, Family, Kind};
use crate::features::{CallContext, FeatureView, Polled, Schedule};

/// `kraken_deposit_in_flight`.
pub const DEPOSITS: Family = Family {
    name: "kraken_deposit_in_flight",
    help: "Amount of the asset in deposits Kraken has not finished, by state: pending (Initial, Pending or Settled) or onhold (held by Kraken for review). From DepositStatus, fetched every --funding.interval.",
    kind: Kind::Gauge,
};

/// `kraken_withdrawal_in_flight`.
pub const WITHDRAWALS: Family = Family {
    name: "kraken_withdrawal_in_flight",
    help: "Amount of the asset in withdrawals Kraken has not finished, by state: pending (Initial, Pending or Settled) or onhold (held by Kraken for review). From WithdrawStatus, which needs Funds: Withdraw or Data: Query ledger entries on the key; absent without them.",
    kind: Kind::Gauge,
};

/// Which way the money moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// DepositStatus.
    Deposits,
    /// WithdrawStatus.
    Withdrawals,
}

/// DepositStatus or WithdrawStatus for one account.
#[derive(Debug)]
pub struct Funding {
    /// Deposits or withdrawals.
    pub direction: Direction,
    /// Fetch at most this often.
    pub interval: Duration,
    /// `--refresh.stale-after`.
    pub stale_after: Duration,
}

/// Amounts in flight by (short asset name, state).
#[derive(Debug, Clone, PartialEq)]
pub struct InFlight {
    /// Deposits or withdrawals.
    pub direction: Direction,
    /// (asset, `pending` | `onhold`) → amount.
    pub amounts: BTreeMap<(String, &'static str), f64>,
}

/// The state label of a movement still in flight, or `None` for a finished one.
pub fn state_of(movement: &Movement) -> Option<&'static str> {
    if movement.on_hold {
        return Some("onhold");
    }
    match movement.status {
        MovementStatus::Initial | MovementStatus::Pending | MovementStatus::Settled => {
            Some("pending")
        }
        _ => None,
    }
}

/// Sums movements in flight by short asset name and state.
pub fn in_flight(direction: Direction, movements: &[Movement], assets: &AssetTable) -> InFlight {
    let mut amounts: BTreeMap<(String, &'static str), f64> = BTreeMap::new();
    for movement in movements {
        if let Some(state) = state_of(movement) {
            let sum = amounts
                .entry((assets.display_name(&movement.asset), state))
                .or_default();
            *sum = kraken::at_kraken_precision(*sum + movement.amount.abs());
        }
    }
    InFlight { direction, amounts }
}

impl Polled for Funding {
    type State = InFlight;
    const NAME: &'static str = "deposits and withdrawals in flight";
    const ENDPOINTS: &'static [Endpoint] = &[Endpoint::DepositStatus, Endpoint::WithdrawStatus];
    const WHEN_REFUSED: &'static str = "DepositStatus or WithdrawStatus was refused: DepositStatus needs 'Funds: Query', WithdrawStatus 'Funds: Withdraw' or 'Data: Query ledger entries'; money in flight is not exported for this account (WithdrawStatus is not asked again until a reload)";

    fn schedule(&self) -> Schedule {
        Schedule {
            every: Some(self.interval),
            retry_after_failure: None,
            // Only WithdrawStatus is optional: a refused DepositStatus is reported each time.
            stop_when_refused: self.direction == Direction::Withdrawals,
            keep_for: Some(self.interval * 2 + self.stale_after),
        }
    }

    /// WithdrawStatus is not called when the key audit shows the key may neither withdraw
    /// nor query the ledger: the answer would be a refusal, counted as an error.
    fn wanted(&self, call: &CallContext<'_>) -> bool {
        if self.direction == Direction::Deposits {
            return true;
        }
        match crate::status::find::<KeyAudit>(call.views) {
            Some(audit) => {
                audit.granted(FUNDS_WITHDRAW) != Some(false)
                    || audit.granted(LEDGER_QUERY) != Some(false)
            }
            None => true,
        }
    }

    async fn fetch(&self, call: CallContext<'_>) -> Result<InFlight, KrakenError> {
        let movements = match self.direction {
            Direction::Deposits => call.client.deposit_status().await?,
            Direction::Withdrawals => call.client.withdraw_status().await?,
        };
        Ok(in_flight(self.direction, &movements, call.assets))
    }
}

impl FeatureView for InFlight {
    fn collect(&self, account: &str, out: &mut Exposition) {
        let family = match self.direction {
            Direction::Deposits => &DEPOSITS,
            Direction::Withdrawals => &WITHDRAWALS,
        };
        let mut f = out.family(family);
        for ((asset, state), amount) in &self.amounts {
            f.sample(
                &[("account", account), ("asset", asset), ("state", state)],
                *amount,
            );
        }
    }
}
