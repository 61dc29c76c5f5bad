//! The simulated exchange's data: assets (with their class and decimals), pairs, prices,
//! withdrawal methods, the default balances and those of `--demo`, and the slow drift of
//! `--demo`.
//!
//! Owns the tables every answer is built from and the lookups on them, and both balance sets
//! (see [`DEFAULT_BALANCES`] for why there are two).
//! Must not: know about requests, answers or state; it is the leaf of the simulator.

use std::collections::HashMap;

/// Relative amplitude of the drift applied to balances when `moving` is set.
pub(super) const DRIFT_AMPLITUDE: f64 = 0.05;

/// Seconds per radian of the drift: one full swing takes about six minutes.
pub(super) const DRIFT_PERIOD_SECS: f64 = 60.0;

/// What `GET /0/public/Assets` lists: (Kraken code, altname). Covers legacy X/Z prefixes,
/// unprefixed codes, the staking/rewards suffixes seen in real accounts, and one tokenized
/// stock (`AAPLx`, see [`TOKENIZED_ASSETS`]).
pub(super) const ASSETS: &[(&str, &str)] = &[
    ("XXBT", "XBT"),
    ("XETH", "ETH"),
    ("XXDG", "XDG"),
    ("XXRP", "XRP"),
    ("ZUSD", "USD"),
    ("ZEUR", "EUR"),
    ("ZGBP", "GBP"),
    ("DOT", "DOT"),
    ("DOT.S", "DOT.S"),
    ("DOT28.S", "DOT28.S"),
    ("ETH2.S", "ETH2.S"),
    ("USD.M", "USD.M"),
    ("XBT.M", "XBT.M"),
    ("USDC", "USDC"),
    ("USDT", "USDT"),
    ("AAPLx", "AAPLx"),
];

/// Codes of class `tokenized_asset` (xStocks): Kraken lists them in Assets only with
/// `aclass=tokenized_asset`, and their pairs in AssetPairs only with
/// `aclass_base=tokenized_asset`; the default class of both is `currency`.
pub(super) const TOKENIZED_ASSETS: &[&str] = &["AAPLx"];

/// Assets' `decimals` where Kraken's Assets list does not keep 10: fiat and `USD.M` keep 4
/// (Kraken's Assets docs: ZUSD and ZEUR have 4; support article "API symbols and tickers" shows
/// `USD.M` with 4), the stablecoins 8 (the same article: `USDC`, `USDT`). Every other asset
/// keeps 10 in the sim.
const DECIMALS: &[(&str, u32)] = &[
    ("ZUSD", 4),
    ("ZEUR", 4),
    ("ZGBP", 4),
    ("USD.M", 4),
    ("USDC", 8),
    ("USDT", 8),
];

/// What `GET /0/public/AssetPairs` lists: (canonical name, altname, base code, quote code).
/// Every asset with a price has a USD pair; the others quote in EUR, GBP, XBT or ETH, and
/// `ZEURZUSD` is the only pair between EUR and USD, as on Kraken (no `ZUSDZEUR`).
pub(super) const PAIRS: &[(&str, &str, &str, &str)] = &[
    ("XXBTZUSD", "XBTUSD", "XXBT", "ZUSD"),
    ("XXBTZEUR", "XBTEUR", "XXBT", "ZEUR"),
    ("XXBTZGBP", "XBTGBP", "XXBT", "ZGBP"),
    ("XETHZUSD", "ETHUSD", "XETH", "ZUSD"),
    ("XETHZEUR", "ETHEUR", "XETH", "ZEUR"),
    ("XETHXXBT", "ETHXBT", "XETH", "XXBT"),
    ("DOTUSD", "DOTUSD", "DOT", "ZUSD"),
    ("DOTEUR", "DOTEUR", "DOT", "ZEUR"),
    ("DOTXBT", "DOTXBT", "DOT", "XXBT"),
    ("DOTETH", "DOTETH", "DOT", "XETH"),
    ("ZEURZUSD", "EURUSD", "ZEUR", "ZUSD"),
    ("ZGBPZUSD", "GBPUSD", "ZGBP", "ZUSD"),
    ("USDCUSD", "USDCUSD", "USDC", "ZUSD"),
    ("USDCEUR", "USDCEUR", "USDC", "ZEUR"),
    ("USDTZUSD", "USDTUSD", "USDT", "ZUSD"),
    ("XXDGZUSD", "XDGUSD", "XXDG", "ZUSD"),
    ("XXDGZEUR", "XDGEUR", "XXDG", "ZEUR"),
    ("XXDGXXBT", "XDGXBT", "XXDG", "XXBT"),
    ("XXRPZUSD", "XRPUSD", "XXRP", "ZUSD"),
    ("XXRPZEUR", "XRPEUR", "XXRP", "ZEUR"),
    ("XXRPXXBT", "XRPXBT", "XXRP", "XXBT"),
    ("AAPLxUSD", "AAPLxUSD", "AAPLx", "ZUSD"),
];

/// USD value of one unit of each asset; the default price of a pair is `usd(base) / usd(quote)`,
/// so EUR, GBP and cross pairs agree with the USD ones until a test sets a price.
pub(super) const USD_VALUES: &[(&str, f64)] = &[
    ("ZUSD", 1.0),
    ("XXBT", 65_000.0),
    ("XETH", 3_500.0),
    ("DOT", 7.5),
    ("ZEUR", 1.08),
    ("ZGBP", 1.27),
    ("XXDG", 0.15),
    ("XXRP", 0.6),
    ("USDC", 1.0),
    ("USDT", 1.0),
    ("AAPLx", 230.0),
];

/// Added to a pair's index for its drift phase, so prices do not move in lockstep with balances.
pub(super) const PRICE_DRIFT_PHASE: usize = 100;

/// Withdrawal methods WithdrawMethods lists for a key that may withdraw.
pub(super) const WITHDRAW_METHODS: &[(&str, &str, &str, &str)] = &[
    ("XXBT", "Bitcoin", "Bitcoin", "0.0004"),
    ("XETH", "Ether", "Ethereum", "0.004"),
    ("ZEUR", "SEPA", "", "1.00"),
];

/// Balances served until [`super::SimKraken::set_balances`] is called: (code, balance, hold_trade).
/// Includes a zero balance and staked/rewards codes so every case is served.
///
/// Two sets, on purpose: this one is what every test starts from, and the golden exposition
/// (`tests/golden/exposition.prom`) is rendered from it, so it never changes for the demo's sake;
/// [`DEMO_BALANCES`] adds auto-earn funds for `--demo`. Change this one and the golden file with
/// it, or the demo's alone.
pub(super) const DEFAULT_BALANCES: &[(&str, f64, f64)] = &[
    ("XXBT", 1.2345678901, 0.1),
    ("XETH", 12.5, 0.0),
    ("ZUSD", 25000.1234, 1500.0),
    ("ZEUR", 0.0, 0.0),
    ("DOT.S", 300.75, 0.0),
    ("ETH2.S", 3.2, 0.0),
    ("USD.M", 1000.5, 0.0),
    ("XXDG", 4200.0, 0.0),
];

/// The balances of every `--demo` account, as (code, balance, hold_trade): [`DEFAULT_BALANCES`]
/// with auto-earn on for XBT (the base code below its hold, the coins in `XBT.F`, so the balance
/// of XBT is tiny while what is available is not), dollars held by open orders, a zero, and
/// staked and rewards codes that are not spendable. Kept apart from the default so the demo can
/// show auto-earn without changing what the tests and the golden exposition are built on.
pub const DEMO_BALANCES: &[(&str, f64, f64)] = &[
    ("XXBT", 0.05, 0.1),
    ("XBT.F", 1.2, 0.0),
    ("XETH", 12.5, 0.0),
    ("ZUSD", 25000.1234, 1500.0),
    ("ZEUR", 0.0, 0.0),
    ("DOT.S", 300.75, 0.0),
    ("ETH2.S", 3.2, 0.0),
    ("USD.M", 1000.5, 0.0),
    ("XXDG", 4200.0, 0.0),
];

/// Each pair's default price: `usd(base) / usd(quote)`.
pub(super) fn default_prices() -> HashMap<String, f64> {
    PAIRS
        .iter()
        .map(|&(name, _, base, quote)| (name.to_owned(), usd_value(base) / usd_value(quote)))
        .collect()
}

/// `balance` moved by at most ±5 % along a slow sine, phase-shifted per asset so they do not move
/// in lockstep. A positive balance stays positive; zero stays zero.
pub(super) fn drifted(balance: f64, index: usize, elapsed_secs: f64) -> f64 {
    balance * (1.0 + DRIFT_AMPLITUDE * (elapsed_secs / DRIFT_PERIOD_SECS + index as f64).sin())
}

/// The canonical name of a pair given by canonical name or altname.
pub(super) fn canonical_pair(name: &str) -> Option<&'static str> {
    PAIRS
        .iter()
        .find(|p| p.0 == name || p.1 == name)
        .map(|p| p.0)
}

/// USD value of one unit of a code in [`USD_VALUES`]; 0 for codes with no value.
pub(super) fn usd_value(code: &str) -> f64 {
    USD_VALUES.iter().find(|v| v.0 == code).map_or(0.0, |v| v.1)
}

/// The asset class of a code: `tokenized_asset` for [`TOKENIZED_ASSETS`], else `currency`.
pub(super) fn asset_class(code: &str) -> &'static str {
    if TOKENIZED_ASSETS.contains(&code) {
        "tokenized_asset"
    } else {
        "currency"
    }
}

/// The `decimals` Assets lists for a code (see [`DECIMALS`]).
pub(super) fn asset_decimals(code: &str) -> u32 {
    DECIMALS.iter().find(|d| d.0 == code).map_or(10, |d| d.1)
}

/// Kraken's short name of a code in [`ASSETS`], or the code itself.
pub(super) fn asset_altname(code: &str) -> &str {
    ASSETS.iter().find(|a| a.0 == code).map_or(code, |a| a.1)
}

/// One Earn strategy as the simulated Kraken lists it in Earn/Allocations: amounts in the native
/// asset, each allocation in a state as (amount, unix seconds it expires).
#[derive(Clone, Debug, PartialEq)]
pub struct SimEarn {
    /// Kraken's strategy id.
    pub strategy_id: String,
    /// The asset allocated (`DOT`, `ETH`).
    pub native_asset: String,
    /// Everything allocated, in whatever state (`amount_allocated.total.native`).
    pub total: f64,
    /// Allocations still bonding.
    pub bonding: Vec<(f64, u64)>,
    /// Allocations on their way back to the spot balance.
    pub unbonding: Vec<(f64, u64)>,
    /// Allocations waiting in ETH's exit queue.
    pub exit_queue: Vec<(f64, u64)>,
}

/// What GetApiKeyInfo says about the simulated key besides its permissions and nonce.
#[derive(Clone, Debug, PartialEq)]
pub struct SimKeyInfo {
    /// `apiKeyName`.
    pub name: String,
    /// `validUntil`, unix seconds; 0 never expires.
    pub valid_until: u64,
    /// `createdTime`, unix seconds.
    pub created: u64,
    /// `ipAllowlist`; empty means any address.
    pub ip_allowlist: Vec<String>,
    /// `lastUsed`, unix seconds; `None` answers the time of the call itself.
    pub last_used: Option<u64>,
}

/// The Earn allocations served until [`super::SimKraken::set_earn`] is called: the model of
/// `tests/fixtures/kraken/earn_allocations_states.json` (DOT partly unbonding, ETH bonding and
/// in the exit queue, an empty USDC allocation), so tests read the fixture's amounts and times.
pub(super) fn default_earn() -> Vec<SimEarn> {
    vec![
        SimEarn {
            strategy_id: "ESXUM7H-SJHQ6-KOQNNI".into(),
            native_asset: "DOT".into(),
            total: 130.0,
            bonding: vec![],
            // 2026-12-18T08:00:00Z and 2026-12-08T08:00:00Z.
            unbonding: vec![(20.0, 1_797_580_800), (10.0, 1_796_716_800)],
            exit_queue: vec![],
        },
        SimEarn {
            strategy_id: "ESRFUO3-Q62XD-WIOIL7".into(),
            native_asset: "ETH".into(),
            total: 1.2265,
            // 2026-12-05T10:00:00Z.
            bonding: vec![(0.5, 1_796_464_800)],
            unbonding: vec![],
            // 2026-12-30T10:00:00Z.
            exit_queue: vec![(0.25, 1_798_624_800)],
        },
        SimEarn {
            strategy_id: "ESMWVX6-JAPVY-23L3CK".into(),
            native_asset: "USDC".into(),
            total: 0.0,
            bonding: vec![],
            unbonding: vec![],
            exit_queue: vec![],
        },
    ]
}

/// The key GetApiKeyInfo describes until [`super::SimKraken::set_key_info`] is called: the
/// documented example's times, no expiry, usable from any address.
pub(super) fn default_key_info() -> SimKeyInfo {
    SimKeyInfo {
        name: "exporter".into(),
        valid_until: 0,
        created: 1_772_542_900,
        ip_allowlist: vec![],
        last_used: None,
    }
}
