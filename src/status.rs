//! What the exporter knows about an account, as the renderer, the landing page and `check` see
//! it: balances with both their names, the latest snapshot, the state of each feature, and the
//! status of one account.
//!
//! Owns these plain types, the [`FeatureView`] trait every feature's state implements, and how
//! an amount is printed for people.
//! Must not: import anything of the exporter but the [`crate::exposition`] writer (metrics,
//! features, account state, exporter, web front, configuration); it is the leaf every one of
//! them reads, so none of them has to import another to share it.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use kraken::{Endpoint, Reason};
use tokio::time::Instant;

use crate::exposition::Exposition;

/// What a feature's state adds to a scrape, and what the status page and `check` read from it
/// (by type, with [`AccountStatus::feature`]).
pub trait FeatureView: Any + Send + Sync + std::fmt::Debug {
    /// Writes this account's samples of the feature's families.
    fn collect(&self, account: &str, out: &mut Exposition);
}

/// One asset's balance with both its names.
#[derive(Debug, Clone, PartialEq)]
pub struct LabeledBalance {
    /// Kraken's short name (`XBT`), or the raw code when Kraken does not list it.
    pub asset: String,
    /// The raw code Kraken returned (`XXBT`).
    pub code: String,
    /// Total balance.
    pub total: f64,
    /// Held by open orders; `None` when the Balance endpoint answered.
    pub hold: Option<f64>,
}

impl LabeledBalance {
    /// What can be withdrawn or traded: total minus hold, when the hold is known.
    pub fn available(&self) -> Option<f64> {
        self.hold.map(|hold| self.total - hold)
    }
}

/// An amount for people: at most 10 decimals (Kraken's precision), trailing zeros dropped, so
/// `1.2345678901 - 0.1` reads `1.1345678901`, not `1.1345678900999998`.
pub(crate) fn format_amount(value: f64) -> String {
    let text = format!("{value:.10}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

/// The balances of one successful refresh.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// One entry per asset, sorted by code.
    pub balances: Vec<LabeledBalance>,
    /// Wall-clock time of the refresh, for `kraken_last_success_timestamp_seconds`.
    pub fetched_at: SystemTime,
    /// Monotonic time of the refresh, for the staleness limit (tokio's clock, so tests can
    /// pause and advance it).
    pub fetched_instant: Instant,
    /// Which endpoint answered ([`Endpoint::BalanceEx`] or [`Endpoint::Balance`]); see
    /// [`Endpoint::reports_holds`].
    pub endpoint: Endpoint,
    /// What each base asset can spend now, by short name ([`crate::spendable`]): `None` when
    /// the endpoint reports no holds, or Kraken's Assets list was not known (so a base code and
    /// its `.F` code could not be told to be one asset): nothing about availability is known.
    pub available: Option<BTreeMap<String, f64>>,
}

/// What a scrape or the landing page shows about one account.
#[derive(Debug, Clone)]
pub struct AccountStatus {
    /// The `account` label.
    pub name: String,
    /// The latest refresh succeeded and this scrape did not give up waiting for one.
    pub up: bool,
    /// When the latest successful refresh happened.
    pub last_success: Option<SystemTime>,
    /// Reason and message of the latest failed refresh, if the latest refresh failed.
    pub last_error: Option<(Reason, String)>,
    /// The balances to export; `None` before the first success and once they are stale.
    pub balances: Option<Arc<Snapshot>>,
    /// While backing off after a failure: the earliest time Kraken is called again.
    pub retry_at: Option<SystemTime>,
    /// The state of every other feature (key audit, Earn, ...) that has one and is not stale.
    pub features: Vec<Arc<dyn FeatureView>>,
}

impl AccountStatus {
    /// The state of the feature whose state type is `T`, if it has one and it is not stale.
    pub fn feature<T: FeatureView>(&self) -> Option<&T> {
        find(&self.features)
    }
}

/// The state whose type is `T` among feature states.
pub fn find<T: FeatureView>(views: &[Arc<dyn FeatureView>]) -> Option<&T> {
    views.iter().find_map(|view| {
        let any: &dyn Any = view.as_ref();
        any.downcast_ref::<T>()
    })
}

/// One account as a scrape shows it.
#[derive(Debug)]
pub struct AccountView<'a> {
    /// Status and balances (watched assets already filled in).
    pub status: AccountStatus,
    /// Asset → lowest acceptable available balance, by Kraken's short name.
    pub min_balance: &'a BTreeMap<String, f64>,
    /// Configured asset names that are not Kraken assets (`kraken_config_unknown_asset`).
    pub unknown_assets: &'a [String],
    /// Asset → largest expected withdrawal amount per hour, by Kraken's short name.
    pub max_outflow: &'a BTreeMap<String, f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_print_with_krakens_precision_and_no_float_noise() {
        assert_eq!(format_amount(1.2345678901 - 0.1), "1.1345678901");
        assert_eq!(format_amount(25000.1234), "25000.1234");
        assert_eq!(format_amount(0.0), "0");
        assert_eq!(format_amount(-0.0), "0");
        assert_eq!(format_amount(1500.0), "1500");
        assert_eq!(format_amount(0.00000001), "0.00000001");
    }
}
