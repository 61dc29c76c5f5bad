//! Kraken's own valuation of the account (TradeBalance `eb`) in the operator's quote currency.
//!
//! Calls TradeBalance after every successful balance call when `valuation.trade_balance` is on.
//! Kraken documents its permission two ways ("Funds: Query" and "Orders and trades: Query open
//! orders & trades"), so a refusal is reported once and stops the calls until a reload instead
//! of counting as an outage at every refresh. Shown while not older than
//! `--refresh.stale-after`; writes `kraken_equivalent_balance`.
//! Must not: stand in for the exporter's own valuation (prices times balances).

use std::time::Duration;

use kraken::{Endpoint, KrakenError};

use crate::exposition::{Exposition, Family, Kind};
use crate::features::{CallContext, FeatureView, Polled, Schedule};

/// `kraken_equivalent_balance`.
pub const EQUIVALENT_BALANCE: Family = Family {
    name: "kraken_equivalent_balance",
    help: "Kraken's own valuation of the account in the quote currency (TradeBalance eb), when valuation.trade_balance is on and Kraken allows it for the key. Cached like kraken_balance.",
    kind: Kind::Gauge,
};

/// TradeBalance for one account.
#[derive(Debug)]
pub struct TradeBalance {
    /// The quote, by Kraken's short name (`USD`).
    pub quote: String,
    /// `--refresh.stale-after`.
    pub stale_after: Duration,
}

/// Kraken's equivalent balance in one quote.
#[derive(Debug, Clone, PartialEq)]
pub struct EquivalentBalance {
    /// The quote's short name (`USD`).
    pub quote: String,
    /// The value.
    pub value: f64,
}

impl Polled for TradeBalance {
    type State = EquivalentBalance;
    const NAME: &'static str = "TradeBalance";
    const ENDPOINTS: &'static [Endpoint] = &[Endpoint::TradeBalance];
    const WHEN_REFUSED: &'static str = "TradeBalance was refused: this key lacks the permission Kraken asks for it (documented both as 'Funds: Query' and as 'Orders and trades: Query open orders & trades'); kraken_equivalent_balance is not exported for this account and TradeBalance is not asked again until a reload; set valuation.trade_balance: false to silence this";

    fn schedule(&self) -> Schedule {
        Schedule {
            every: None,
            retry_after_failure: None,
            stop_when_refused: true,
            keep_for: Some(self.stale_after),
        }
    }

    async fn fetch(&self, call: CallContext<'_>) -> Result<EquivalentBalance, KrakenError> {
        // TradeBalance takes Kraken's code (`ZUSD`); the Assets list maps the short name to it.
        let code = call
            .assets
            .code_for_altname(&self.quote)
            .map_or_else(|| self.quote.clone(), str::to_owned);
        let value = call.client.trade_balance(&code).await?;
        Ok(EquivalentBalance {
            quote: self.quote.clone(),
            value,
        })
    }
}

impl FeatureView for EquivalentBalance {
    fn collect(&self, account: &str, out: &mut Exposition) {
        out.family(&EQUIVALENT_BALANCE)
            .sample(&[("account", account), ("quote", &self.quote)], self.value);
    }
}
