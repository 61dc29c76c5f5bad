//! Prices: what one unit of each held asset is worth in the operator's quote currency.
//!
//! Public data that belongs to no account: Kraken's Assets, AssetPairs and Ticker, fetched by
//! [`crate::market::Market`] in the background (never awaited by a scrape) at most once per
//! `--refresh.min-interval`, and within seconds for a newly held asset; [`crate::valuation`]
//! turns the answers into a [`PriceBook`]. Writes `kraken_asset_price` and
//! `kraken_asset_price_missing`, on `/metrics` only (several `/probe` targets must not repeat
//! them).
//! Must not: value an asset without a market at 0 (it is listed as missing instead).

use crate::exposition::{Exposition, Family, Kind};
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
