//! Prices: what one unit of each held asset is worth in the operator's quote currency.
//!
//! Public data that belongs to no account: Kraken's Assets, AssetPairs and Ticker, fetched by
//! [`crate::market::Market`] in the background (never awaited by a scrape) at most once per
//! `--refresh.min-interval`, and within seconds for a newly held asset; [`crate::valuation`]
//! turns the answers into a [`PriceBook`]. Writes `kraken_asset_price` and
//! `kraken_asset_price_missing`, on `/metrics` only (several `/probe` targets must not repeat
//! them); each account's configured [`ValueMinimum`] writes `kraken_account_value_min`.
//! Must not: value an asset without a market at 0 (it is listed as missing instead).

use std::collections::BTreeMap;

use crate::exposition::{Exposition, Family, Kind};
use crate::status::FeatureView;
use crate::valuation::PriceBook;

/// `kraken_asset_price`.
pub const PRICE: Family = Family {
    name: "kraken_asset_price",
    help: "Last trade price of one unit of the asset in the quote currency (Kraken's public Ticker), for assets some account holds; staked and reward variants (DOT.S, USD.M) carry their base asset's price. Refreshed at most once per --refresh.min-interval, and within seconds for a newly held asset; value = kraken_balance * on(asset) group_left kraken_asset_price.",
    kind: Kind::Gauge,
};

/// `kraken_asset_price_missing`.
pub const PRICE_MISSING: Family = Family {
    name: "kraken_asset_price_missing",
    help: "1 for a held asset that has no market in the quote currency (or no recent trade), so it is left out of valuations rather than counted as worth 0.",
    kind: Kind::Gauge,
};

/// `kraken_account_value_min`.
pub const VALUE_MIN: Family = Family {
    name: "kraken_account_value_min",
    help: "Lowest acceptable total value of the account in the quote currency, from min_value in the config file, --value.min or KRAKEN_VALUE_MIN; compare with the account's value, sum by (account) (kraken_balance * on(asset) group_left kraken_asset_price). Assets without a price (kraken_asset_price_missing) count for nothing in that sum.",
    kind: Kind::Gauge,
};

/// The account's configured minimum total value per quote currency, shown from start-up on
/// (the exporter adds it to the account's status).
#[derive(Debug, Clone, PartialEq)]
pub struct ValueMinimum(pub BTreeMap<String, f64>);

impl FeatureView for ValueMinimum {
    fn collect(&self, account: &str, out: &mut Exposition) {
        let mut f = out.family(&VALUE_MIN);
        for (quote, min) in &self.0 {
            f.sample(&[("account", account), ("quote", quote)], *min);
        }
    }
}

/// Writes the price families.
pub fn collect(book: &PriceBook, out: &mut Exposition) {
    let mut f = out.family(&PRICE);
    for (asset, price) in &book.prices {
        f.sample(&[("asset", asset), ("quote", &book.quote)], *price);
    }
    let mut f = out.family(&PRICE_MISSING);
    for asset in &book.unpriced {
        f.sample(&[("asset", asset), ("quote", &book.quote)], 1.0);
    }
}
