//! Thresholds (`min_balance`, `--balance.min`, `KRAKEN_BALANCE_MIN`; `min_value`, `--value.min`,
//! `KRAKEN_VALUE_MIN`), watched assets (`watch`, `--balance.watch`, `KRAKEN_BALANCE_WATCH`) and
//! the key's allowed permissions of one-account mode (`--key.allowed-permissions`,
//! `KRAKEN_KEY_ALLOWED_PERMISSIONS`), names normalised without the network.
//!
//! Owns the `ASSET=AMOUNT` syntax of the flag and the environment variable, the precedence
//! between them (a flag given replaces the variable, it is not merged with it), the demo's
//! thresholds, and the merging of spellings that name one asset (`BTC`, `xbt` and `XXBT` are all
//! XBT): one spelling, or several with the same minimum, make one threshold; two spellings with
//! different minimums are refused, naming both.
//! Must not: decide whether a name is a Kraken asset. That needs Kraken's Assets list, which
//! only the running exporter has ([`crate::asset_names::resolve`]); here names are only
//! normalised ([`normalise_offline`]).

use std::collections::{BTreeMap, BTreeSet};

use super::{ConfigError, Env};
use crate::asset_names::normalise_offline;
use crate::audit::KeyPolicy;
use crate::cli::Flags;

/// The environment form of `--balance.min`: `XBT=0.5,USD=1000`.
const MIN_ENV: &str = "KRAKEN_BALANCE_MIN";

/// The environment form of `--balance.watch`: `XBT,ETH`.
const WATCH_ENV: &str = "KRAKEN_BALANCE_WATCH";

/// The environment form of `--outflow.max`: `XBT=0.5,USD=0`.
const OUTFLOW_ENV: &str = "KRAKEN_OUTFLOW_MAX";

/// The thresholds of `--demo` without a config file: XBT is covered by auto-earn funds, USD is
/// set above the simulated account's available dollars so the low-balance alert has something
/// to fire for, and USDC is watched although the account holds none.
const DEMO_MIN_BALANCE: &[(&str, f64)] = &[("ETH", 5.0), ("USD", 30_000.0), ("XBT", 0.5)];

/// Watched assets of the demo (see [`DEMO_MIN_BALANCE`]).
const DEMO_WATCH: &[&str] = &["USDC"];

/// The demo's minimum total value: below what the simulated account is worth (about 150,000
/// dollars), so the value panel has a line to compare with and no alert fires.
const DEMO_MIN_VALUE: &[(&str, f64)] = &[("USD", 100_000.0)];

/// The environment form of `--value.min`: `USD=10000`.
const VALUE_MIN_ENV: &str = "KRAKEN_VALUE_MIN";

/// The environment form of `--key.allowed-permissions`: `funds_query,websocket`.
const ALLOWED_ENV: &str = "KRAKEN_KEY_ALLOWED_PERMISSIONS";

/// Minimums and watched assets of one account, keyed by normalised name.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Thresholds {
    /// Normalised asset name → lowest acceptable available balance.
    pub(super) min_balance: BTreeMap<String, f64>,
    /// Normalised asset names, sorted, without duplicates.
    pub(super) watch: Vec<String>,
    /// Quote currency → lowest acceptable total value of the account in it.
    pub(super) min_value: BTreeMap<String, f64>,
}

/// The thresholds of one-account mode: `--balance.min` (else `KRAKEN_BALANCE_MIN`),
/// `--balance.watch` (else `KRAKEN_BALANCE_WATCH`) and `--value.min` (else `KRAKEN_VALUE_MIN`);
/// in `--demo` with none of them, the demo's.
pub(super) fn from_flags(flags: &Flags, env: Env<'_>) -> Result<Thresholds, ConfigError> {
    let min_text = given(&flags.balance_min, "--balance.min", env, MIN_ENV);
    let watch_text = given(&flags.balance_watch, "--balance.watch", env, WATCH_ENV);
    let value_text = given(&flags.value_min, "--value.min", env, VALUE_MIN_ENV);
    if flags.demo && min_text.is_none() && watch_text.is_none() && value_text.is_none() {
        return Ok(demo(flags.valuation_quote.as_deref()));
    }
    let mut thresholds = Thresholds::default();
    if let Some((flag, values)) = min_text {
        thresholds.min_balance = minimums(flag, &values)?;
    }
    if let Some((flag, values)) = value_text {
        thresholds.min_value = minimums(flag, &values)?;
    }
    if let Some((flag, values)) = watch_text {
        let mut names = Vec::new();
        for value in &values {
            names.extend(
                parse_watch_list(value).map_err(|problem| ConfigError::Flag {
                    flag,
                    problem: format!("{value:?}: {problem}"),
                })?,
            );
        }
        thresholds.watch = merge_watch(names.iter().map(String::as_str));
    }
    Ok(thresholds)
}

/// The outflow limits of one-account mode: `--outflow.max` (else `KRAKEN_OUTFLOW_MAX`), in
/// the `ASSET=AMOUNT` syntax of `--balance.min`, spellings merged the same way.
pub(super) fn outflow_from_flags(
    flags: &Flags,
    env: Env<'_>,
) -> Result<BTreeMap<String, f64>, ConfigError> {
    match given(&flags.outflow_max, "--outflow.max", env, OUTFLOW_ENV) {
        Some((flag, values)) => minimums(flag, &values),
        None => Ok(BTreeMap::new()),
    }
}

/// The demo's thresholds (see [`DEMO_MIN_BALANCE`]); its minimum value only while prices are
/// in dollars, as they are unless `--valuation.quote` says otherwise.
fn demo(quote: Option<&str>) -> Thresholds {
    let pairs = |list: &[(&str, f64)]| {
        list.iter()
            .map(|(name, min)| ((*name).to_owned(), *min))
            .collect()
    };
    Thresholds {
        min_balance: pairs(DEMO_MIN_BALANCE),
        min_value: if quote.is_none_or(|quote| normalise_offline(quote) == "USD") {
            pairs(DEMO_MIN_VALUE)
        } else {
            BTreeMap::new()
        },
        watch: DEMO_WATCH.iter().map(|asset| (*asset).to_owned()).collect(),
    }
}

/// The flag's values when it was given, else the variable's when it is set, with the name of
/// the one that applies.
fn given(
    values: &[String],
    flag: &'static str,
    env: Env<'_>,
    variable: &'static str,
) -> Option<(&'static str, Vec<String>)> {
    if values.is_empty() {
        set(env, variable).map(|text| (variable, vec![text]))
    } else {
        Some((flag, values.to_vec()))
    }
}

/// `NAME=AMOUNT` lists of one flag or variable, merged by normalised name.
fn minimums(flag: &'static str, values: &[String]) -> Result<BTreeMap<String, f64>, ConfigError> {
    let mut entries = Vec::new();
    for value in values {
        entries.extend(parse_min_list(value).map_err(|problem| ConfigError::Flag {
            flag,
            problem: format!("{value:?}: {problem}"),
        })?);
    }
    merge_minimums(entries.iter().map(|(name, min)| (name.as_str(), *min))).map_err(|problems| {
        ConfigError::Flag {
            flag,
            problem: problems.join("; "),
        }
    })
}

/// The permissions a key may hold when none are configured: `funds_query` and `websocket`, and
/// in `--demo` also `ledger_query`, which the demo's simulated key holds so WithdrawStatus
/// answers.
pub(super) fn default_allowed(demo: bool) -> BTreeSet<String> {
    let mut allowed = KeyPolicy::default().allowed;
    if demo {
        allowed.insert(crate::audit::LEDGER_QUERY.to_owned());
    }
    allowed
}

/// `--key.allowed-permissions` (else `KRAKEN_KEY_ALLOWED_PERMISSIONS`): comma-separated
/// permission names; neither given, `funds_query` and `websocket`, and in `--demo` also
/// `ledger_query`, which the demo's key holds so WithdrawStatus answers.
pub(super) fn allowed_from_flags(
    flags: &Flags,
    env: Env<'_>,
) -> Result<BTreeSet<String>, ConfigError> {
    let (flag, text) = match (&flags.allowed_permissions, set(env, ALLOWED_ENV)) {
        (Some(text), _) => ("--key.allowed-permissions", text.clone()),
        (None, Some(text)) => (ALLOWED_ENV, text),
        (None, None) => return Ok(default_allowed(flags.demo)),
    };
    super::validate::allowed_permissions(text.split(',')).map_err(|problems| ConfigError::Flag {
        flag,
        problem: problems.join("; "),
    })
}

/// The variables of one-account mode that a config file makes ambiguous (which account would
/// they apply to?): refused next to `--config.file`, like the flags.
pub(super) fn refuse_env_with_file(env: Env<'_>) -> Result<(), ConfigError> {
    for (name, field) in [
        (MIN_ENV, "min_balance"),
        (WATCH_ENV, "watch"),
        (VALUE_MIN_ENV, "min_value"),
        (ALLOWED_ENV, "allowed_permissions"),
        (OUTFLOW_ENV, "max_outflow"),
    ] {
        if set(env, name).is_some() {
            return Err(ConfigError::Flag {
                flag: name,
                problem: format!(
                    "applies only without --config.file: set {field} per account in the file instead, or unset it"
                ),
            });
        }
    }
    Ok(())
}

/// The value of a variable; an empty one counts as unset, as for the credential variables.
fn set(env: Env<'_>, name: &str) -> Option<String> {
    env(name).filter(|text| !text.trim().is_empty())
}

/// `XBT=0.5,USD=1000` (or one `XBT=0.5`) into (name as written, amount) pairs.
fn parse_min_list(text: &str) -> Result<Vec<(String, f64)>, String> {
    let mut entries = Vec::new();
    for item in text.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(
                "has an empty entry: write ASSET=AMOUNT, comma-separated, like XBT=0.5,USD=1000"
                    .into(),
            );
        }
        let Some((asset, amount)) = item.split_once('=') else {
            let comma = if item.parse::<f64>().is_ok() {
                " (a decimal comma splits an entry: write amounts with a point)"
            } else {
                ""
            };
            return Err(format!(
                "{item:?} has no '='{comma}: write ASSET=AMOUNT, like XBT=0.5"
            ));
        };
        let asset = asset.trim();
        if asset.is_empty() {
            return Err(format!(
                "{item:?} names no asset: write ASSET=AMOUNT, like XBT=0.5"
            ));
        }
        let amount = amount.trim();
        match amount.parse::<f64>() {
            Ok(min) if min.is_finite() && min >= 0.0 => entries.push((asset.to_owned(), min)),
            _ => {
                return Err(format!(
                    "the minimum of {asset} is {amount:?}, not a balance: use a number of at least 0, like {asset}=0.5"
                ));
            }
        }
    }
    Ok(entries)
}

/// `XBT,ETH` (or one `XBT`) into names as written.
fn parse_watch_list(text: &str) -> Result<Vec<String>, String> {
    text.split(',')
        .map(str::trim)
        .map(|name| {
            if name.is_empty() {
                Err(
                    "has an empty asset name: write asset names, comma-separated, like XBT,ETH"
                        .to_owned(),
                )
            } else {
                Ok(name.to_owned())
            }
        })
        .collect()
}

/// Minimums keyed by normalised name. Spellings of one asset with the same minimum merge; with
/// different minimums, each pair of disagreeing spellings is one problem naming both.
pub(super) fn merge_minimums<'a>(
    entries: impl IntoIterator<Item = (&'a str, f64)>,
) -> Result<BTreeMap<String, f64>, Vec<String>> {
    let mut merged: BTreeMap<String, (&str, f64)> = BTreeMap::new();
    let mut problems = Vec::new();
    for (written, min) in entries {
        let asset = normalise_offline(written);
        match merged.get(&asset) {
            None => {
                merged.insert(asset, (written, min));
            }
            Some((first, first_min)) if *first_min != min => problems.push(format!(
                "{first:?} and {written:?} both name {asset}, with different minimums ({first_min} and {min}): keep one of them"
            )),
            Some(_) => {}
        }
    }
    if problems.is_empty() {
        Ok(merged
            .into_iter()
            .map(|(asset, (_, min))| (asset, min))
            .collect())
    } else {
        Err(problems)
    }
}

/// Watched names, normalised, sorted, without duplicates.
pub(super) fn merge_watch<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut watch: Vec<String> = names.into_iter().map(normalise_offline).collect();
    watch.sort();
    watch.dedup();
    watch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_asset_merge_and_disagreeing_ones_are_refused_naming_both() {
        let merged = merge_minimums([("BTC", 0.5), ("xxbt", 0.5), ("usd", 10.0)]).unwrap();
        assert_eq!(
            merged,
            BTreeMap::from([("XBT".to_owned(), 0.5), ("USD".to_owned(), 10.0)])
        );
        let problems = merge_minimums([("BTC", 0.5), ("xbt", 0.1), ("XXBT", 0.2)]).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].contains("\"BTC\" and \"xbt\" both name XBT")
                && problems[0].contains("(0.5 and 0.1)"),
            "{problems:?}"
        );
        assert!(problems[1].contains("\"BTC\" and \"XXBT\""), "{problems:?}");
        assert_eq!(
            merge_watch(["eth", "XETH", "doge", " xbt"]),
            ["ETH", "XBT", "XDG"]
        );
    }

    #[test]
    fn the_list_syntax_takes_commas_and_refuses_what_is_not_a_minimum() {
        assert_eq!(
            parse_min_list(" XBT=0.5, usd = 1000 ").unwrap(),
            [("XBT".to_owned(), 0.5), ("usd".to_owned(), 1000.0)]
        );
        for (bad, expected) in [
            ("XBT", "has no '='"),
            ("=1", "names no asset"),
            ("XBT=", "not a balance"),
            ("XBT=-1", "not a balance"),
            ("XBT=NaN", "not a balance"),
            ("XBT=inf", "not a balance"),
            ("XBT=1,,USD=2", "empty entry"),
        ] {
            let problem = parse_min_list(bad).unwrap_err();
            assert!(problem.contains(expected), "{bad:?}: {problem}");
        }
        assert_eq!(parse_watch_list("XBT, eth").unwrap(), ["XBT", "eth"]);
        assert!(
            parse_watch_list("XBT,")
                .unwrap_err()
                .contains("empty asset name")
        );
    }
}
