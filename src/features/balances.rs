//! Balances: every asset's total, hold and spendable amount, the thresholds set on them, and
//! whether the latest refresh worked.
//!
//! Calls BalanceEx (or Balance, per `balance_endpoint`) at every refresh: at most once per
//! `--refresh.min-interval`, on scrape or from the background loop. The account's scheduler
//! ([`crate::account`]) makes this call itself, because the account's `up`, its backoff and
//! every other feature's call follow it. The answer becomes a [`Snapshot`] ([`snapshot`]),
//! shown until it is older than `--refresh.stale-after`, and writes `kraken_balance`,
//! `kraken_balance_available`, `kraken_balance_hold`, `kraken_balance_min`,
//! `kraken_config_unknown_asset`, `kraken_last_success_timestamp_seconds` and `kraken_up`.
//! Must not: invent a balance: a watched asset Kraken omits reads 0 only once the Assets list
//! says what the codes mean ([`crate::exporter`] adds those zeros).

use std::time::SystemTime;

use kraken::client::BalanceAnswer;
use kraken::{AssetTable, KrakenClient, KrakenError};
use tokio::time::Instant;

use crate::exposition::{Exposition, Family, Kind, unix_seconds};
use crate::spendable;
use crate::status::{AccountView, LabeledBalance, Snapshot};

/// `kraken_balance`.
pub const BALANCE: Family = Family {
    name: "kraken_balance",
    help: "Total balance of the asset on the Kraken account, in units of the asset. Served from the latest successful refresh (Kraken is called at most once per --refresh.min-interval, or every --refresh.interval in background mode); kept while refreshes fail, and dropped once it is older than --refresh.stale-after. Watched assets that Kraken omits read 0.",
    kind: Kind::Gauge,
};

/// `kraken_balance_available`.
pub const AVAILABLE: Family = Family {
    name: "kraken_balance_available",
    help: "What the account has available for trading, per base asset, by Kraken's BalanceEx formula: balance + credit - credit_used - hold_trade (unused credit counts in it), summed over the base code and its auto-earn variant (.F); staked, bonded and other variants are not counted. Not a withdrawable amount: withdrawals have limits and holds of their own. Absent when balances come from the Balance endpoint (holds unknown) or before Kraken's Assets list is known. Assets with a minimum or watched but without a spendable balance read 0. Cached like kraken_balance.",
    kind: Kind::Gauge,
};

/// `kraken_balance_hold`.
pub const HOLD: Family = Family {
    name: "kraken_balance_hold",
    help: "Part of the balance held by open orders (BalanceEx hold_trade), in units of the asset; absent when balances come from the Balance endpoint. Cached like kraken_balance.",
    kind: Kind::Gauge,
};

/// `kraken_balance_min`.
pub const MIN: Family = Family {
    name: "kraken_balance_min",
    help: "Lowest acceptable available balance of the asset, from min_balance in the config file, --balance.min or KRAKEN_BALANCE_MIN; alert with kraken_balance_available < on(account, asset) kraken_balance_min.",
    kind: Kind::Gauge,
};

/// `kraken_config_unknown_asset`.
pub const UNKNOWN_ASSET: Family = Family {
    name: "kraken_config_unknown_asset",
    help: "1 for each asset name in min_balance or watch (or --balance.min, --balance.watch) that is not in Kraken's Assets list; it is exported as this instead of as a balance of 0. Fix the name: Kraken's short name (XBT), its code (XXBT) or its common name (BTC).",
    kind: Kind::Gauge,
};

/// `kraken_last_success_timestamp_seconds`.
pub const LAST_SUCCESS: Family = Family {
    name: "kraken_last_success_timestamp_seconds",
    help: "Unix time of the latest successful refresh of the account's balances; absent until the first success. The age of the cached balances is time() minus this.",
    kind: Kind::Gauge,
};

/// `kraken_up`.
pub const UP: Family = Family {
    name: "kraken_up",
    help: "1 if the latest refresh of the account's balances from Kraken succeeded; 0 if it failed, is backing off after a failure, or did not finish within the scrape timeout.",
    kind: Kind::Gauge,
};

/// The balance call, as the account's refresh makes it.
pub async fn fetch(client: &KrakenClient) -> Result<BalanceAnswer, KrakenError> {
    client.balances().await
}

/// Turns a balance answer into the snapshot scrapes show: each code with its short name, and
/// what each base asset can spend, when that can be known.
pub fn snapshot(answer: BalanceAnswer, assets: &AssetTable, now: Instant) -> Snapshot {
    // Without the Assets list `XXBT` and `XBT.F` cannot be known to be one asset.
    let available = (answer.endpoint.reports_holds() && !assets.is_empty())
        .then(|| spendable::available_by_asset(&answer.balances, assets));
    let balances: Vec<LabeledBalance> = answer
        .balances
        .into_iter()
        .map(|b| LabeledBalance {
            asset: assets.display_name(&b.code),
            code: b.code,
            total: b.total,
            hold: b.hold,
        })
        .collect();
    Snapshot {
        balances,
        fetched_at: SystemTime::now(),
        fetched_instant: now,
        endpoint: answer.endpoint,
        available,
    }
}

/// Writes one account's balance families.
pub fn collect(view: &AccountView<'_>, out: &mut Exposition) {
    let status = &view.status;
    let account = status.name.as_str();
    let balances = status.balances.iter().flat_map(|s| s.balances.iter());
    let mut f = out.family(&BALANCE);
    for b in balances.clone() {
        f.sample(
            &[("account", account), ("asset", &b.asset), ("code", &b.code)],
            b.total,
        );
    }
    let mut f = out.family(&HOLD);
    for b in balances {
        if let Some(hold) = b.hold {
            f.sample(
                &[("account", account), ("asset", &b.asset), ("code", &b.code)],
                hold,
            );
        }
    }
    let available = status
        .balances
        .iter()
        .flat_map(|s| s.available.iter().flatten());
    let mut f = out.family(&AVAILABLE);
    for (asset, amount) in available {
        f.sample(&[("account", account), ("asset", asset)], *amount);
    }
    let mut f = out.family(&MIN);
    for (asset, min) in view.min_balance {
        f.sample(&[("account", account), ("asset", asset)], *min);
    }
    let mut f = out.family(&UNKNOWN_ASSET);
    for asset in view.unknown_assets {
        f.sample(&[("account", account), ("asset", asset)], 1.0);
    }
    if let Some(at) = status.last_success {
        out.family(&LAST_SUCCESS)
            .sample(&[("account", account)], unix_seconds(at));
    }
    out.family(&UP).sample(&[("account", account)], status.up);
}
