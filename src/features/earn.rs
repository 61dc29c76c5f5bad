//! Kraken Earn: how much of each asset is allocated to Earn strategies, and in which state.
//!
//! Calls Earn/Allocations every `--earn.interval` (much slower than balances: allocations
//! change by the day), after a successful balance call. A failed or refused call is counted
//! like any other, keeps the previous allocations until they are stale (two missed fetches plus
//! `--refresh.stale-after`) and is tried again at the next interval; it never makes the account
//! down. Writes `kraken_earn_allocation` and `kraken_earn_next_unbonding_timestamp_seconds`.
//! Must not: count Earn funds as spendable (that is [`crate::spendable`]'s call).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use kraken::{EarnAllocation, Endpoint, KrakenError, at_kraken_precision};

use crate::exposition::{Exposition, Family, Kind, unix_seconds};
use crate::features::{CallContext, FeatureView, Polled, Schedule};

/// `kraken_earn_allocation`.
pub const ALLOCATION: Family = Family {
    name: "kraken_earn_allocation",
    help: "Amount of the asset allocated to Kraken Earn strategies, by state: bonding (not yet earning), earning, exit_queue (ETH, waiting to unbond) and unbonding (on its way back); the states sum to the allocated total. Bonding, exit_queue and unbonding amounts cannot be traded; earning amounts of an auto-earn strategy are the balance's .F code and count in kraken_balance_available, other earning amounts (.S, .B, .M) do not. From Earn/Allocations, fetched every --earn.interval.",
    kind: Kind::Gauge,
};

/// `kraken_earn_next_unbonding_timestamp_seconds`.
pub const NEXT_UNBONDING: Family = Family {
    name: "kraken_earn_next_unbonding_timestamp_seconds",
    help: "Unix time the next unbonding (or exit-queue) allocation of the asset is due back in the spot balance, from Earn/Allocations; absent when nothing of the asset unbonds.",
    kind: Kind::Gauge,
};

/// The Earn allocations of one account.
#[derive(Debug)]
pub struct Earn {
    /// Fetch at most this often.
    pub interval: Duration,
    /// `--refresh.stale-after`, added to two intervals to tell when allocations are stale.
    pub stale_after: Duration,
}

/// The latest Earn allocations, one entry per strategy.
#[derive(Debug, Clone, PartialEq)]
pub struct EarnAllocations(pub Vec<EarnAllocation>);

impl Polled for Earn {
    type State = EarnAllocations;
    const NAME: &'static str = "Earn allocations";
    const ENDPOINTS: &'static [Endpoint] = &[Endpoint::EarnAllocations];
    const WHEN_REFUSED: &'static str = "Earn/Allocations was refused: it needs 'Funds: Query' like the balances; kraken_earn_allocation is not exported for this account; set --earn.disabled (earn.enabled: false) to stop asking";

    fn schedule(&self) -> Schedule {
        Schedule {
            every: Some(self.interval),
            retry_after_failure: None,
            stop_when_refused: false,
            keep_for: Some(self.interval * 2 + self.stale_after),
        }
    }

    async fn fetch(&self, call: CallContext<'_>) -> Result<EarnAllocations, KrakenError> {
        call.client.earn_allocations().await.map(EarnAllocations)
    }
}

/// One asset's Earn allocations summed over its strategies.
#[derive(Default)]
struct EarnByAsset {
    /// Amounts in label order: bonding, earning, exit_queue, unbonding.
    states: [f64; 4],
    /// The earliest time an unbonding or exit-queue allocation is due back.
    next_unbonding: Option<SystemTime>,
}

/// The `state` label values of `kraken_earn_allocation`, in label order.
const STATES: [&str; 4] = ["bonding", "earning", "exit_queue", "unbonding"];

/// Sums an account's strategies per asset. Earning is what is allocated and in no other state,
/// never below 0 (Kraken's amounts are rounded separately).
fn by_asset(allocations: &[EarnAllocation]) -> BTreeMap<&str, EarnByAsset> {
    let mut by_asset: BTreeMap<&str, EarnByAsset> = BTreeMap::new();
    for a in allocations {
        let entry = by_asset.entry(a.native_asset.as_str()).or_default();
        let earning =
            at_kraken_precision(a.total - a.bonding - a.unbonding - a.exit_queue).max(0.0);
        for (sum, amount) in
            entry
                .states
                .iter_mut()
                .zip([a.bonding, earning, a.exit_queue, a.unbonding])
        {
            *sum = at_kraken_precision(*sum + amount);
        }
        for due in [a.unbonding_until, a.exit_queue_until]
            .into_iter()
            .flatten()
        {
            entry.next_unbonding = Some(entry.next_unbonding.map_or(due, |d| d.min(due)));
        }
    }
    by_asset
}

impl FeatureView for EarnAllocations {
    fn collect(&self, account: &str, out: &mut Exposition) {
        let summed = by_asset(&self.0);
        let mut f = out.family(&ALLOCATION);
        for (asset, earn) in &summed {
            for (state, amount) in STATES.iter().zip(earn.states) {
                f.sample(
                    &[("account", account), ("asset", asset), ("state", state)],
                    amount,
                );
            }
        }
        let mut f = out.family(&NEXT_UNBONDING);
        for (asset, earn) in &summed {
            if let Some(due) = earn.next_unbonding {
                f.sample(&[("account", account), ("asset", asset)], unix_seconds(due));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    #[test]
    fn earn_states_sum_to_the_total_per_asset_and_earning_is_never_negative() {
        let at = |secs| UNIX_EPOCH + Duration::from_secs(secs);
        let allocation = |asset: &str, total, bonding, unbonding, exit_queue| EarnAllocation {
            strategy_id: String::new(),
            native_asset: asset.to_owned(),
            total,
            bonding,
            unbonding,
            exit_queue,
            unbonding_until: None,
            exit_queue_until: None,
        };
        let allocations = vec![
            EarnAllocation {
                unbonding_until: Some(at(2_000)),
                ..allocation("DOT", 130.0, 0.0, 30.0, 0.0)
            },
            // A second DOT strategy is summed into the same series.
            allocation("DOT", 20.0, 5.0, 0.0, 0.0),
            EarnAllocation {
                exit_queue_until: Some(at(1_500)),
                unbonding_until: Some(at(3_000)),
                ..allocation("ETH", 1.0, 0.5, 0.25, 0.25)
            },
            // Rounded amounts above the total: earning reads 0, not below.
            allocation("USDC", 1.0, 0.6, 0.5, 0.0),
        ];
        let summed = by_asset(&allocations);
        // Amounts at Kraken's ten decimals, without float noise.
        let noisy = [allocation("ETH", 0.3, 0.1, 0.0, 0.0)];
        assert_eq!(by_asset(&noisy)["ETH"].states[1].to_string(), "0.2");
        assert_eq!(summed["DOT"].states, [5.0, 115.0, 0.0, 30.0]);
        assert_eq!(summed["DOT"].states.iter().sum::<f64>(), 150.0);
        assert_eq!(summed["DOT"].next_unbonding, Some(at(2_000)));
        assert_eq!(summed["ETH"].states, [0.5, 0.0, 0.25, 0.25]);
        assert_eq!(summed["ETH"].next_unbonding, Some(at(1_500)));
        assert_eq!(summed["USDC"].states[1], 0.0);
        assert_eq!(summed["USDC"].next_unbonding, None);
    }
}
