//! What an account can spend now, per base asset: the `kraken_balance_available` gauge.
//!
//! Owns the treatment of Kraken's balance codes and their suffixes. Kraken's "Get Extended
//! Balance" documentation: codes with a suffix are read-only, and one transacts through the
//! base asset ("use USDT to transact with your USDT and USDT.F balances"); available for
//! trading is `balance + credit - credit_used - hold_trade` ([`AssetBalance::available`]).
//!
//! | code | counted | why |
//! |---|---|---|
//! | base (`XXBT`, `USDT`) | yes | the asset itself |
//! | `.F` (auto-earn, Kraken Rewards) | yes | earns automatically and is spent through the base code; with auto-earn on, the base can read 0, or less than its hold, while the funds sit here |
//! | `.S` staked, `.B` yield-bearing, `.M` opt-in rewards, `.P` parachain | no | allocated to Earn: bonding, unbonding or in an exit queue for days is not liquidity |
//! | `.T` tokenized, `.HOLD` and any other suffix | no | not spendable through the base code, or not documented as such: never counted on a guess |
//!
//! Must not: count a code it does not understand, turn an unknown hold into 0 (an answer from
//! `Balance`, which reports no holds, gives no available amount at all), or do I/O.

use std::collections::BTreeMap;

use kraken::{AssetBalance, AssetTable, at_kraken_precision};

/// The suffixes whose balance is spendable through the base code.
pub const SPENDABLE_SUFFIXES: &[&str] = &["F"];

/// The available amount of every base asset the balances mention, keyed by the base's short
/// name (`XBT` for `XXBT` and `XBT.F`). A base with a spendable code whose hold is unknown (an
/// answer from `Balance`) is left out; codes that are not spendable make no entry (the caller
/// reads a threshold's asset that has no entry as 0 available).
pub fn available_by_asset(balances: &[AssetBalance], assets: &AssetTable) -> BTreeMap<String, f64> {
    let mut sums: BTreeMap<String, Option<f64>> = BTreeMap::new();
    for balance in balances {
        let (base, suffix) = split_code(&balance.code);
        let spendable = match suffix {
            None => true,
            Some(suffix) => SPENDABLE_SUFFIXES.contains(&suffix),
        };
        if !spendable {
            continue;
        }
        let entry = sums.entry(base_name(base, assets)).or_insert(Some(0.0));
        *entry = match (*entry, balance.available()) {
            (Some(sum), Some(available)) => Some(sum + available),
            _ => None,
        };
    }
    sums.into_iter()
        .filter_map(|(name, sum)| sum.map(|sum| (name, at_kraken_precision(sum))))
        .collect()
}

/// Splits `XBT.F` into (`XBT`, `F`); a code without a dot has no suffix.
fn split_code(code: &str) -> (&str, Option<&str>) {
    match code.split_once('.') {
        Some((base, suffix)) => (base, Some(suffix)),
        None => (code, None),
    }
}

/// The short name of a base written either as a raw code (`XXBT`) or as a short name (`XBT`,
/// as Kraken writes suffixed codes: `XBT.F`); the base as written when Kraken lists neither.
fn base_name(base: &str, assets: &AssetTable) -> String {
    if assets.contains(base) {
        return assets.display_name(base);
    }
    assets
        .altnames()
        .find(|altname| *altname == base)
        .unwrap_or(base)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_are_kept_at_krakens_ten_decimals() {
        let balances = [ex("XXBT", 1.2345678901, 0.1)];
        let available = available_by_asset(&balances, &table());
        assert_eq!(available["XBT"].to_string(), "1.1345678901");
    }
    use kraken::AssetInfo;

    fn table() -> AssetTable {
        AssetTable::from_entries([("XXBT", "XBT"), ("USDT", "USDT"), ("DOT", "DOT")].map(
            |(code, altname)| {
                (
                    code.to_owned(),
                    AssetInfo {
                        altname: altname.to_owned(),
                        decimals: 8,
                    },
                )
            },
        ))
    }

    fn ex(code: &str, total: f64, hold: f64) -> AssetBalance {
        AssetBalance {
            code: code.to_owned(),
            total,
            hold: Some(hold),
            credit: 0.0,
            credit_used: 0.0,
        }
    }

    #[test]
    fn auto_earn_funds_count_towards_the_base_asset() {
        // Auto-earn on: the base code reads 0 with a hold on it, the coins sit in XBT.F.
        let balances = [ex("XXBT", 0.0, 0.2), ex("XBT.F", 1.5, 0.0)];
        let available = available_by_asset(&balances, &table());
        assert_eq!(available.len(), 1);
        assert!((available["XBT"] - 1.3).abs() < 1e-12, "{available:?}");
    }

    #[test]
    fn staked_bonded_and_unknown_variants_are_not_spendable() {
        let balances = [
            ex("DOT", 2.0, 0.5),
            ex("DOT28.S", 100.0, 0.0),
            ex("DOT.B", 50.0, 0.0),
            ex("USDT.M", 10.0, 0.0),
            ex("USDT.T", 10.0, 0.0),
            ex("USDT.HOLD", 10.0, 0.0),
        ];
        let available = available_by_asset(&balances, &table());
        assert_eq!(available.len(), 1, "{available:?}");
        assert_eq!(available["DOT"], 1.5);
    }

    #[test]
    fn a_balance_ex_answer_with_auto_earn_and_credit_gives_krakens_formula() {
        let body = include_bytes!("../tests/fixtures/kraken/balance_ex_credit_auto_earn.json");
        let balances = kraken::parse::balance_ex(200, body).unwrap();
        let assets =
            AssetTable::from_entries([("XXBT", "XBT"), ("ZUSD", "USD")].map(|(code, altname)| {
                (
                    code.to_owned(),
                    AssetInfo {
                        altname: altname.to_owned(),
                        decimals: 8,
                    },
                )
            }));
        let available = available_by_asset(&balances, &assets);
        // XXBT 0 under a hold of 0.2, XBT.F 1.5: 1.3. ZUSD 1000 + 100 credit - 40 used - 10 held.
        assert!((available["XBT"] - 1.3).abs() < 1e-12, "{available:?}");
        assert_eq!(available["USD"], 1050.0);
        assert_eq!(
            available.len(),
            2,
            "staked DOT28.S is left out: {available:?}"
        );
    }

    #[test]
    fn unknown_holds_give_no_available_amount() {
        let balances = [AssetBalance {
            code: "XXBT".into(),
            total: 1.0,
            hold: None,
            credit: 0.0,
            credit_used: 0.0,
        }];
        assert!(available_by_asset(&balances, &table()).is_empty());
    }

    #[test]
    fn an_unlisted_base_keeps_its_code() {
        let balances = [ex("NEWCOIN", 3.0, 1.0), ex("NEWCOIN.F", 1.0, 0.0)];
        let available = available_by_asset(&balances, &AssetTable::default());
        assert_eq!(available["NEWCOIN"], 3.0);
    }
}
