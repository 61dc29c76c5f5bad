//! The asset names an operator writes in `min_balance`, `watch`, `--balance.min` and
//! `--balance.watch`, resolved to the short names the exporter labels balances with.
//!
//! Owns the accepted spellings of an asset: Kraken's short name (`XBT`), its raw code (`XXBT`),
//! either case-insensitively, and the common names that Kraken's web interface and other tools
//! use where the API's short name differs ([`COMMON_NAMES`]: `BTC` is `XBT`, `DOGE` is `XDG`).
//! Once the Assets list is known, a name that is none of these is [`Resolution::Unknown`], with
//! the nearest listed name as a hint, so it is reported instead of exported as a made-up 0.
//! Must not: guess by stripping prefixes or digits (`XRP`, `XTZ` and `LUNA2` are real names), do
//! I/O, or decide what happens to an unknown name (the caller logs, exports and fails `check`).

use kraken::AssetTable;

/// Common names that are not Kraken's short names, and the short name each means. Kraken's web
/// interface and most other tools say BTC and DOGE where the API says XBT and XDG (the
/// `commonCurrencies` table of widely used clients lists the same two).
pub const COMMON_NAMES: &[(&str, &str)] = &[("BTC", "XBT"), ("DOGE", "XDG")];

/// Kraken's legacy four-letter codes and their short names, so `--config.check` can normalise
/// `XXBT` or `zusd` without the network. These codes predate Kraken's unprefixed naming and do
/// not change; every newer asset's code is its short name.
pub const LEGACY_CODES: &[(&str, &str)] = &[
    ("XETC", "ETC"),
    ("XETH", "ETH"),
    ("XLTC", "LTC"),
    ("XMLN", "MLN"),
    ("XREP", "REP"),
    ("XXBT", "XBT"),
    ("XXDG", "XDG"),
    ("XXLM", "XLM"),
    ("XXMR", "XMR"),
    ("XXRP", "XRP"),
    ("XZEC", "ZEC"),
    ("ZAUD", "AUD"),
    ("ZCAD", "CAD"),
    ("ZEUR", "EUR"),
    ("ZGBP", "GBP"),
    ("ZJPY", "JPY"),
    ("ZUSD", "USD"),
];

/// What a configured name means once the Assets list is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// A Kraken asset, by its short name (the `asset` label of its balances).
    Known(String),
    /// Not a Kraken asset: `nearest` is the listed short name closest in spelling, if any is
    /// close enough to be a plausible typo.
    Unknown {
        /// The closest listed short name.
        nearest: Option<String>,
    },
}

/// Normalises a name without the Assets list: trimmed, upper-cased, a common name or legacy
/// code replaced by the short name. Used by `--config.check` and at start-up, before Kraken
/// has been asked, so `btc`, `XXBT` and `xbt` become one threshold.
pub fn normalise_offline(name: &str) -> String {
    let upper = name.trim().to_ascii_uppercase();
    COMMON_NAMES
        .iter()
        .chain(LEGACY_CODES)
        .find(|(alias, _)| *alias == upper)
        .map(|(_, short)| (*short).to_owned())
        .unwrap_or(upper)
}

/// Resolves a configured name against Kraken's Assets list. Matching is case-insensitive on
/// short names and raw codes, then on [`COMMON_NAMES`]. With an empty list (never fetched)
/// every name is taken as written after [`normalise_offline`]: nothing is called unknown
/// before Kraken has said what exists.
pub fn resolve(name: &str, assets: &AssetTable) -> Resolution {
    let offline = normalise_offline(name);
    if assets.is_empty() {
        return Resolution::Known(offline);
    }
    let raw = name.trim();
    let by_short_name = |wanted: &str| {
        assets
            .altnames()
            .find(|altname| altname.eq_ignore_ascii_case(wanted))
            .map(str::to_owned)
    };
    let by_code = |wanted: &str| {
        assets
            .codes()
            .find(|code| code.eq_ignore_ascii_case(wanted))
            .map(|code| assets.display_name(code))
    };
    by_short_name(raw)
        .or_else(|| by_code(raw))
        .or_else(|| by_short_name(&offline))
        .or_else(|| by_code(&offline))
        .map(Resolution::Known)
        .unwrap_or_else(|| Resolution::Unknown {
            nearest: nearest(&offline, assets),
        })
}

/// The listed short name nearest to `name` in edit distance, when it is within a third of the
/// name's length (at least 1): a plausible typo, not any name at all.
fn nearest(name: &str, assets: &AssetTable) -> Option<String> {
    let limit = (name.chars().count() / 3).max(1);
    assets
        .altnames()
        .map(|altname| (edit_distance(name, &altname.to_ascii_uppercase()), altname))
        .filter(|(distance, _)| *distance <= limit)
        .min_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)))
        .map(|(_, altname)| altname.to_owned())
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = Vec::with_capacity(b.len() + 1);
        current.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use kraken::AssetInfo;

    fn table() -> AssetTable {
        AssetTable::from_entries(
            [
                ("XXBT", "XBT"),
                ("XXDG", "XDG"),
                ("ZUSD", "USD"),
                ("XETH", "ETH"),
                ("USDT", "USDT"),
                ("LUNA", "LUNA"),
                ("LUNA2", "LUNA2"),
            ]
            .map(|(code, altname)| {
                (
                    code.to_owned(),
                    AssetInfo {
                        altname: altname.to_owned(),
                        decimals: 8,
                    },
                )
            }),
        )
    }

    #[test]
    fn short_names_raw_codes_and_common_names_resolve_case_insensitively() {
        let assets = table();
        for name in ["XBT", "xbt", "XXBT", "xxbt", "BTC", "btc", " Btc "] {
            assert_eq!(
                resolve(name, &assets),
                Resolution::Known("XBT".into()),
                "{name}"
            );
        }
        assert_eq!(resolve("doge", &assets), Resolution::Known("XDG".into()));
        assert_eq!(resolve("zusd", &assets), Resolution::Known("USD".into()));
        assert_eq!(resolve("usdt", &assets), Resolution::Known("USDT".into()));
    }

    #[test]
    fn digits_are_part_of_a_name() {
        let assets = table();
        assert_eq!(resolve("LUNA2", &assets), Resolution::Known("LUNA2".into()));
        assert_eq!(resolve("luna", &assets), Resolution::Known("LUNA".into()));
    }

    #[test]
    fn an_unlisted_name_is_unknown_with_the_nearest_listed_name() {
        let assets = table();
        assert_eq!(
            resolve("ETHH", &assets),
            Resolution::Unknown {
                nearest: Some("ETH".into())
            }
        );
        assert_eq!(
            resolve("NOTACOIN", &assets),
            Resolution::Unknown { nearest: None }
        );
    }

    #[test]
    fn without_the_assets_list_names_are_only_normalised() {
        let empty = AssetTable::default();
        assert_eq!(resolve("btc", &empty), Resolution::Known("XBT".into()));
        assert_eq!(
            resolve("NOTACOIN", &empty),
            Resolution::Known("NOTACOIN".into())
        );
        assert_eq!(normalise_offline(" xxbt"), "XBT");
        assert_eq!(normalise_offline("Doge"), "XDG");
        assert_eq!(normalise_offline("dot"), "DOT");
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("ETH", "ETH"), 0);
        assert_eq!(edit_distance("ETHH", "ETH"), 1);
        assert_eq!(edit_distance("XBT", "XDG"), 2);
        assert_eq!(edit_distance("", "USD"), 3);
    }
}
