//! What the held assets are worth in one quote currency chosen by the operator (`USD`, `EUR`).
//!
//! Owns the resolution of a held code to the asset it is priced as (`DOT28.S` → `DOT`, never
//! `LUNA2` → `LUNA`), the choice of the pair that prices it (direct, inverse or none), and the
//! assembly of last trade prices into a [`PriceBook`]. The pure steps ([`base_code`], [`route`],
//! [`plan`], [`assemble`]) are split from the one I/O step ([`fetch_prices`]).
//! Must not: parse Kraken bodies (that is [`kraken`]), decide how often prices are
//! fetched, or ever report an asset without a market as worth 0: such an asset is listed in
//! [`PriceBook::unpriced`], so a sum over the book is visibly partial rather than silently wrong.
//!
//! Only one pair is used per asset: an asset traded only against XBT is not priced through
//! XBT/USD. Chained prices would add a second market's spread and staleness to the figure;
//! listing the asset as unpriced says plainly that the quote currency has no market for it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kraken::{AssetTable, KrakenClient, KrakenError, PairTable};

/// Suffixes of Kraken's staking and earn variants (`.S` staked, `.M` opt-in rewards, `.P`
/// parachain, `.B` yield-bearing, `.F` auto-earn). Only these may carry a digit that is not part
/// of the asset's name (`DOT28.S`: DOT bonded for 28 days; `ETH2.S`: staked ETH). `.T`
/// (tokenized) and `.HOLD` are not staking variants.
const STAKING_SUFFIXES: [&str; 5] = ["S", "M", "P", "B", "F"];

/// The asset codes a held code may be priced as, most specific first:
/// 1. the code without its suffix (anything from the first `.`: `.S`, `.M`, `.P`, `.B`, `.F`,
///    `.T`, `.HOLD`), when Kraken lists it as a code (`DOT.S` → `DOT`), or as an altname
///    (`XBT.M` → `XXBT`, `USD.M` → `ZUSD`);
/// 2. then, for a staking variant only (a suffix in [`STAKING_SUFFIXES`]), without trailing
///    digits, by code or altname (`DOT28.S` → `DOT`, `ETH2.S` → `XETH`), and only when the stem
///    with its digits is not traded in any pair: Kraken lists some such stems as codes of their
///    own (`ETH2`) without a market, and a stem that has a market (`LUNA2`) is an asset whose
///    digits are part of its name.
///
/// A code without a suffix is never stripped of digits: `LUNA2` (Terra 2.0) is not `LUNA`
/// (Terra Classic), and pricing one as the other would be a silent misprice; an unmatched code
/// is left unpriced instead. Codes are never guessed by stripping `X`/`Z` prefixes either: `XTZ`
/// and `XRP` are real codes.
pub fn base_candidates(code: &str, assets: &AssetTable, pairs: &PairTable) -> Vec<String> {
    let (stem, suffix) = code.split_once('.').unwrap_or((code, ""));
    let lookup = |name: &str| -> Option<String> {
        if name.is_empty() {
            None
        } else if assets.contains(name) {
            Some(name.to_owned())
        } else {
            assets.code_for_altname(name).map(str::to_owned)
        }
    };
    let mut candidates = Vec::with_capacity(2);
    if let Some(found) = lookup(stem) {
        candidates.push(found);
    }
    let staking = STAKING_SUFFIXES
        .iter()
        .any(|s| s.eq_ignore_ascii_case(suffix));
    let stem_is_traded = candidates.first().is_some_and(|stem_code| {
        pairs
            .iter()
            .any(|(_, pair)| pair.base == *stem_code || pair.quote == *stem_code)
    });
    let digitless = stem.trim_end_matches(|c: char| c.is_ascii_digit());
    if staking
        && !stem_is_traded
        && digitless != stem
        && let Some(found) = lookup(digitless)
        && !candidates.contains(&found)
    {
        candidates.push(found);
    }
    candidates
}

/// The asset code a held code is priced as (see [`base_candidates`]): `XXBT` for `XXBT` and
/// `XBT.M`, `DOT` for `DOT28.S`, `ETH2` then `XETH` for `ETH2.S`; `None` for a code Kraken does
/// not list.
#[cfg(test)]
pub fn base_code(code: &str, assets: &AssetTable, pairs: &PairTable) -> Option<String> {
    base_candidates(code, assets, pairs).into_iter().next()
}

/// The asset code of the quote currency the operator named, by altname (`USD` → `ZUSD`) or by
/// code, ignoring case; `None` when Kraken lists no such asset.
pub fn quote_code(quote: &str, assets: &AssetTable) -> Option<String> {
    let quote = quote.trim();
    [quote.to_owned(), quote.to_ascii_uppercase()]
        .iter()
        .find_map(|name| {
            if assets.contains(name) {
                Some(name.clone())
            } else {
                assets.code_for_altname(name).map(str::to_owned)
            }
        })
}

/// How one asset's price in the quote currency is obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PriceRoute {
    /// The asset is the quote currency: its price is 1, no market needed.
    Unity,
    /// A pair with the asset as base and the quote as quote (`DOTUSD` for DOT in USD): the price
    /// is the pair's last trade.
    Direct(String),
    /// Only the opposite pair exists (`ZEURZUSD` for USD in EUR): the price is 1 / last trade.
    Inverse(String),
    /// Kraken trades no pair between the asset and the quote.
    NoMarket,
}

impl PriceRoute {
    /// The pair this route needs a price for, if any.
    pub fn pair(&self) -> Option<&str> {
        match self {
            PriceRoute::Direct(pair) | PriceRoute::Inverse(pair) => Some(pair),
            PriceRoute::Unity | PriceRoute::NoMarket => None,
        }
    }
}

/// How `base_code` is priced in `quote_code` with Kraken's pairs. A direct pair is preferred
/// over an inverse one, whose price is only as precise as the pair's decimals allow.
pub fn route(base_code: &str, quote_code: &str, pairs: &PairTable) -> PriceRoute {
    if base_code == quote_code {
        PriceRoute::Unity
    } else if let Some(pair) = pairs.find(base_code, quote_code) {
        PriceRoute::Direct(pair.to_owned())
    } else if let Some(pair) = pairs.find(quote_code, base_code) {
        PriceRoute::Inverse(pair.to_owned())
    } else {
        PriceRoute::NoMarket
    }
}

/// The routes of every held asset, decided before any price is asked, so the pairs to ask for
/// are known and asked once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricePlan {
    /// The quote currency's altname (`USD`), or the operator's text when Kraken does not list it.
    pub quote: String,
    /// (asset label, route), one per held code, in the order given.
    pub routes: Vec<(String, PriceRoute)>,
}

impl PricePlan {
    /// The pairs whose last price the plan needs, each once, sorted.
    pub fn pairs(&self) -> Vec<String> {
        self.routes
            .iter()
            .filter_map(|(_, route)| route.pair())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(str::to_owned)
            .collect()
    }
}

/// Decides how each held asset is priced. `held` is (raw code, asset label as exported in
/// `kraken_balance{asset=...}`). A code Kraken does not list, or whose candidates have no
/// market, gets [`PriceRoute::NoMarket`]; so does everything when the quote is unknown.
pub fn plan(
    held: &[(String, String)],
    assets: &AssetTable,
    pairs: &PairTable,
    quote: &str,
) -> PricePlan {
    let quote_code = quote_code(quote, assets);
    let quote_label = quote_code
        .as_deref()
        .and_then(|code| assets.get(code))
        .map_or_else(|| quote.trim().to_owned(), |info| info.altname.clone());
    let routes = held
        .iter()
        .map(|(code, label)| {
            let route = quote_code
                .as_deref()
                .and_then(|quote| {
                    base_candidates(code, assets, pairs)
                        .iter()
                        .map(|base| route(base, quote, pairs))
                        .find(|route| *route != PriceRoute::NoMarket)
                })
                .unwrap_or(PriceRoute::NoMarket);
            (label.clone(), route)
        })
        .collect();
    PricePlan {
        quote: quote_label,
        routes,
    }
}

/// The price of each held asset in one quote currency.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriceBook {
    /// The quote currency's altname (`USD`), the unit of every price.
    pub quote: String,
    /// Asset label (as in `kraken_balance{asset=...}`, e.g. `DOT.S`) → price of one unit in the
    /// quote currency. Staked and rewards variants carry the price of their base asset.
    pub prices: BTreeMap<String, f64>,
    /// Labels of held assets with no price: no market in the quote currency, or no usable last
    /// trade. Never priced at 0, so totals can say they are partial.
    pub unpriced: BTreeSet<String>,
}

impl PriceBook {
    /// What `amount` of the asset labelled `label` is worth in the quote currency; `None` when
    /// the asset is unpriced.
    pub fn value(&self, label: &str, amount: f64) -> Option<f64> {
        self.prices.get(label).map(|price| price * amount)
    }
}

/// Fills a plan with last trade prices (pair name → price, as Ticker answered). A pair missing
/// from `last_prices`, or whose last price is not a positive finite number (a market that never
/// traded shows 0), leaves its asset unpriced.
pub fn assemble(plan: &PricePlan, last_prices: &HashMap<String, f64>) -> PriceBook {
    let usable = |pair: &str| {
        last_prices
            .get(pair)
            .copied()
            .filter(|p| p.is_finite() && *p > 0.0)
    };
    let mut book = PriceBook {
        quote: plan.quote.clone(),
        ..PriceBook::default()
    };
    for (label, route) in &plan.routes {
        let price = match route {
            PriceRoute::Unity => Some(1.0),
            PriceRoute::Direct(pair) => usable(pair),
            PriceRoute::Inverse(pair) => usable(pair).map(|p| 1.0 / p),
            PriceRoute::NoMarket => None,
        };
        match price {
            Some(price) => {
                book.unpriced.remove(label);
                book.prices.insert(label.clone(), price);
            }
            None if !book.prices.contains_key(label) => {
                book.unpriced.insert(label.clone());
            }
            None => {}
        }
    }
    book
}

/// Prices every held asset in `quote` (an altname such as `USD`, or a code): plans the routes,
/// asks Ticker once for all the pairs needed (batched by the client), and assembles the book.
/// Makes no call when no held asset needs a market. Fails only when no Ticker batch succeeded;
/// assets without a market, and those of a batch that failed, are listed in
/// [`PriceBook::unpriced`].
pub async fn fetch_prices(
    client: &KrakenClient,
    held: &[(String, String)],
    assets: &AssetTable,
    pairs: &PairTable,
    quote: &str,
) -> Result<PriceBook, KrakenError> {
    let plan = plan(held, assets, pairs, quote);
    let needed = plan.pairs();
    let last_prices = if needed.is_empty() {
        HashMap::new()
    } else {
        let ticker = client.ticker(&needed).await?;
        if let Some(error) = &ticker.failure {
            tracing::warn!(%error, "some prices could not be fetched; their assets are reported as missing until the next price refresh");
        }
        ticker.prices
    };
    Ok(assemble(&plan, &last_prices))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::metrics::RequestMetrics;
    use kraken::client::http_client;
    use kraken::sim::{SimKraken, SimOptions};
    use kraken::{AssetInfo, BalanceEndpoint, ClientOptions, Endpoint, PairInfo};

    fn assets() -> AssetTable {
        AssetTable::from_entries(
            [
                ("XXBT", "XBT"),
                ("XETH", "ETH"),
                ("ZUSD", "USD"),
                ("ZEUR", "EUR"),
                ("DOT", "DOT"),
                ("DOT.S", "DOT.S"),
                ("DOT28.S", "DOT28.S"),
                ("ETH2", "ETH2"),
                ("ETH2.S", "ETH2.S"),
                ("USD.M", "USD.M"),
                ("XTZ", "XTZ"),
            ]
            .map(|(code, altname)| {
                (
                    code.to_owned(),
                    AssetInfo {
                        altname: altname.to_owned(),
                        decimals: 10,
                    },
                )
            }),
        )
    }

    fn pairs() -> PairTable {
        PairTable::from_entries(
            [
                ("XXBTZUSD", "XBTUSD", "XXBT", "ZUSD"),
                ("XXBTZUSD.d", "XBTUSD.d", "XXBT", "ZUSD"),
                ("XETHZUSD", "ETHUSD", "XETH", "ZUSD"),
                ("XETHXXBT", "ETHXBT", "XETH", "XXBT"),
                ("DOTUSD", "DOTUSD", "DOT", "ZUSD"),
                ("ZEURZUSD", "EURUSD", "ZEUR", "ZUSD"),
                ("XTZXBT", "XTZXBT", "XTZ", "XXBT"),
            ]
            .map(|(name, altname, base, quote)| {
                (
                    name.to_owned(),
                    PairInfo {
                        altname: altname.to_owned(),
                        base: base.to_owned(),
                        quote: quote.to_owned(),
                    },
                )
            }),
        )
    }

    #[test]
    fn held_codes_resolve_to_the_asset_they_are_priced_as() {
        let assets = assets();
        let pairs = pairs();
        let cases = [
            ("XXBT", Some("XXBT")),
            ("XETH", Some("XETH")),
            ("DOT.S", Some("DOT")),
            ("DOT28.S", Some("DOT")),
            ("ETH2.S", Some("ETH2")),
            ("USD.M", Some("ZUSD")),
            ("XBT.M", Some("XXBT")),
            ("XBT.F", Some("XXBT")),
            ("DOT.HOLD", Some("DOT")),
            ("ZUSD", Some("ZUSD")),
            ("XTZ", Some("XTZ")),
            ("NEWCOIN", None),
            ("NEWCOIN.S", None),
            (".S", None),
        ];
        for (code, expected) in cases {
            assert_eq!(
                base_code(code, &assets, &pairs).as_deref(),
                expected,
                "{code}"
            );
        }
        // Kraken lists ETH2 as a code of its own; the digit-stripped ETH is the next candidate.
        assert_eq!(base_candidates("ETH2.S", &assets, &pairs), ["ETH2", "XETH"]);
        let without_eth2 = AssetTable::from_entries([("XETH", "ETH"), ("ETH2.S", "ETH2.S")].map(
            |(code, altname)| {
                (
                    code.to_owned(),
                    AssetInfo {
                        altname: altname.to_owned(),
                        decimals: 10,
                    },
                )
            },
        ));
        assert_eq!(
            base_code("ETH2.S", &without_eth2, &pairs).as_deref(),
            Some("XETH")
        );
    }

    fn table(codes: &[(&str, &str)]) -> AssetTable {
        AssetTable::from_entries(codes.iter().map(|&(code, altname)| {
            (
                code.to_owned(),
                AssetInfo {
                    altname: altname.to_owned(),
                    decimals: 8,
                },
            )
        }))
    }

    fn pair_table(entries: &[(&str, &str, &str)]) -> PairTable {
        PairTable::from_entries(entries.iter().map(|&(name, base, quote)| {
            (
                name.to_owned(),
                PairInfo {
                    altname: name.to_owned(),
                    base: base.to_owned(),
                    quote: quote.to_owned(),
                },
            )
        }))
    }

    #[test]
    fn luna2_is_never_priced_as_luna() {
        let assets = table(&[
            ("LUNA", "LUNA"),
            ("LUNA2", "LUNA2"),
            ("LUNA2.S", "LUNA2.S"),
            ("ZUSD", "USD"),
            ("ZEUR", "EUR"),
        ]);
        // Terra Classic trades in USD; Terra 2.0 only in EUR.
        let pairs = pair_table(&[("LUNAUSD", "LUNA", "ZUSD"), ("LUNA2EUR", "LUNA2", "ZEUR")]);
        assert_eq!(base_candidates("LUNA2", &assets, &pairs), ["LUNA2"]);
        // Staked Terra 2.0: its stem has a market of its own, so its digit is part of its name.
        assert_eq!(base_candidates("LUNA2.S", &assets, &pairs), ["LUNA2"]);
        let held = held(&[("LUNA2", "LUNA2"), ("LUNA2.S", "LUNA2.S"), ("LUNA", "LUNA")]);
        let usd = plan(&held, &assets, &pairs, "USD");
        let routes: BTreeMap<_, _> = usd.routes.iter().cloned().collect();
        assert_eq!(routes["LUNA2"], PriceRoute::NoMarket);
        assert_eq!(routes["LUNA2.S"], PriceRoute::NoMarket);
        assert_eq!(routes["LUNA"], PriceRoute::Direct("LUNAUSD".into()));
        let book = assemble(&usd, &HashMap::from([("LUNAUSD".to_owned(), 0.00009)]));
        assert_eq!(
            book.unpriced,
            BTreeSet::from(["LUNA2".to_owned(), "LUNA2.S".to_owned()])
        );
        let eur = plan(&held, &assets, &pairs, "EUR");
        let routes: BTreeMap<_, _> = eur.routes.iter().cloned().collect();
        assert_eq!(routes["LUNA2"], PriceRoute::Direct("LUNA2EUR".into()));
        // Not listed at all: unpriced, not LUNA.
        let unlisted = table(&[("LUNA", "LUNA"), ("ZUSD", "USD")]);
        assert_eq!(base_code("LUNA2", &unlisted, &pairs), None);
    }

    #[test]
    fn only_staking_variants_fall_back_to_their_digitless_base() {
        let assets = assets();
        let pairs = pairs();
        let usd = plan(
            &held(&[
                ("DOT28.S", "DOT28.S"),
                ("ETH2.S", "ETH2.S"),
                ("ETH2.M", "ETH2.M"),
                ("ETH2", "ETH2"),
                ("ETH2.T", "ETH2.T"),
                ("ETH2.HOLD", "ETH2.HOLD"),
            ]),
            &assets,
            &pairs,
            "USD",
        );
        let routes: BTreeMap<_, _> = usd.routes.iter().cloned().collect();
        assert_eq!(routes["DOT28.S"], PriceRoute::Direct("DOTUSD".into()));
        assert_eq!(routes["ETH2.S"], PriceRoute::Direct("XETHZUSD".into()));
        assert_eq!(routes["ETH2.M"], PriceRoute::Direct("XETHZUSD".into()));
        // No staking suffix: the digit stays part of the name.
        assert_eq!(routes["ETH2"], PriceRoute::NoMarket);
        assert_eq!(routes["ETH2.T"], PriceRoute::NoMarket);
        assert_eq!(routes["ETH2.HOLD"], PriceRoute::NoMarket);
    }

    #[test]
    fn the_quote_is_named_by_altname_or_code_in_any_case() {
        let assets = assets();
        assert_eq!(quote_code("USD", &assets).as_deref(), Some("ZUSD"));
        assert_eq!(quote_code("eur", &assets).as_deref(), Some("ZEUR"));
        assert_eq!(quote_code("ZUSD", &assets).as_deref(), Some("ZUSD"));
        assert_eq!(quote_code("JPY", &assets), None);
    }

    #[test]
    fn routes_are_unity_direct_inverse_or_none() {
        let pairs = pairs();
        assert_eq!(route("ZUSD", "ZUSD", &pairs), PriceRoute::Unity);
        assert_eq!(
            route("XXBT", "ZUSD", &pairs),
            PriceRoute::Direct("XXBTZUSD".into())
        );
        assert_eq!(
            route("ZUSD", "ZEUR", &pairs),
            PriceRoute::Inverse("ZEURZUSD".into())
        );
        assert_eq!(
            route("XXBT", "XETH", &pairs),
            PriceRoute::Inverse("XETHXXBT".into())
        );
        // Only through XBT: no chained price.
        assert_eq!(route("XTZ", "ZUSD", &pairs), PriceRoute::NoMarket);
        assert_eq!(route("DOT", "ZEUR", &pairs), PriceRoute::NoMarket);
    }

    fn held(entries: &[(&str, &str)]) -> Vec<(String, String)> {
        entries
            .iter()
            .map(|&(code, label)| (code.to_owned(), label.to_owned()))
            .collect()
    }

    #[test]
    fn a_plan_asks_each_pair_once_and_tries_every_candidate() {
        let plan = plan(
            &held(&[
                ("XXBT", "XBT"),
                ("XBT.M", "XBT.M"),
                ("DOT.S", "DOT.S"),
                ("DOT28.S", "DOT28.S"),
                ("ETH2.S", "ETH2.S"),
                ("ZUSD", "USD"),
                ("NEWCOIN", "NEWCOIN"),
            ]),
            &assets(),
            &pairs(),
            "usd",
        );
        assert_eq!(plan.quote, "USD");
        assert_eq!(plan.pairs(), ["DOTUSD", "XETHZUSD", "XXBTZUSD"]);
        let routes: BTreeMap<_, _> = plan.routes.iter().cloned().collect();
        assert_eq!(routes["ETH2.S"], PriceRoute::Direct("XETHZUSD".into()));
        assert_eq!(routes["USD"], PriceRoute::Unity);
        assert_eq!(routes["NEWCOIN"], PriceRoute::NoMarket);
    }

    #[test]
    fn an_unknown_quote_prices_nothing_and_asks_nothing() {
        let plan = plan(&held(&[("XXBT", "XBT")]), &assets(), &pairs(), "JPY");
        assert_eq!(plan.quote, "JPY");
        assert!(plan.pairs().is_empty());
        let book = assemble(&plan, &HashMap::new());
        assert!(book.prices.is_empty());
        assert_eq!(book.unpriced, BTreeSet::from(["XBT".to_owned()]));
    }

    #[test]
    fn assembly_fills_prices_inverts_and_never_prices_at_zero() {
        let plan = PricePlan {
            quote: "EUR".into(),
            routes: vec![
                ("EUR".into(), PriceRoute::Unity),
                ("XBT".into(), PriceRoute::Direct("XXBTZEUR".into())),
                ("USD".into(), PriceRoute::Inverse("ZEURZUSD".into())),
                ("USD.M".into(), PriceRoute::Inverse("ZEURZUSD".into())),
                ("DOT".into(), PriceRoute::Direct("DOTEUR".into())),
                ("NEW".into(), PriceRoute::Direct("NEWEUR".into())),
                ("XTZ".into(), PriceRoute::NoMarket),
            ],
        };
        let last = HashMap::from([
            ("XXBTZEUR".to_owned(), 60000.0),
            ("ZEURZUSD".to_owned(), 1.25),
            ("DOTEUR".to_owned(), 0.0),
        ]);
        let book = assemble(&plan, &last);
        assert_eq!(book.quote, "EUR");
        assert_eq!(
            book.prices,
            BTreeMap::from([
                ("EUR".to_owned(), 1.0),
                ("XBT".to_owned(), 60000.0),
                ("USD".to_owned(), 0.8),
                ("USD.M".to_owned(), 0.8),
            ])
        );
        assert_eq!(
            book.unpriced,
            BTreeSet::from(["DOT".to_owned(), "NEW".to_owned(), "XTZ".to_owned()])
        );
        assert_eq!(book.value("XBT", 0.5), Some(30000.0));
        assert_eq!(book.value("XTZ", 10.0), None);
    }

    fn public_client(sim: &SimKraken, metrics: &Arc<RequestMetrics>) -> KrakenClient {
        let timeout = Duration::from_secs(5);
        KrakenClient::public(
            http_client(timeout).unwrap(),
            ClientOptions {
                api_url: sim.url(),
                timeout,
                balance_endpoint: BalanceEndpoint::Auto,
            },
            "_public".into(),
            metrics.clone(),
        )
        .with_public_spacing(Duration::ZERO)
    }

    #[tokio::test]
    async fn a_failed_ticker_batch_leaves_its_assets_unpriced_and_keeps_the_others() {
        let sim = SimKraken::start(SimOptions::default()).await.unwrap();
        let metrics = Arc::new(RequestMetrics::new());
        let client = public_client(&sim, &metrics);
        // Twenty coins whose pairs Kraken does not know fill the first batch, which fails.
        let coins: Vec<String> = (0..kraken::TICKER_BATCH)
            .map(|i| format!("AAA{i:02}"))
            .collect();
        let mut assets: Vec<(String, AssetInfo)> = coins
            .iter()
            .map(|code| {
                let info = AssetInfo {
                    altname: code.clone(),
                    decimals: 10,
                };
                (code.clone(), info)
            })
            .collect();
        assets.extend(client.assets().await.unwrap().codes().map(|code| {
            let info = AssetInfo {
                altname: code.to_owned(),
                decimals: 10,
            };
            (code.to_owned(), info)
        }));
        let mut pairs: Vec<(String, PairInfo)> = coins
            .iter()
            .map(|code| {
                let pair = PairInfo {
                    altname: format!("{code}USD"),
                    base: code.clone(),
                    quote: "ZUSD".into(),
                };
                (format!("{code}USD"), pair)
            })
            .collect();
        pairs.push((
            "XXBTZUSD".into(),
            PairInfo {
                altname: "XBTUSD".into(),
                base: "XXBT".into(),
                quote: "ZUSD".into(),
            },
        ));
        let mut held: Vec<(String, String)> =
            coins.iter().map(|c| (c.clone(), c.clone())).collect();
        held.push(("XXBT".into(), "XBT".into()));

        let book = fetch_prices(
            &client,
            &held,
            &AssetTable::from_entries(assets),
            &PairTable::from_entries(pairs),
            "ZUSD",
        )
        .await
        .expect("one batch answered, so prices are kept");
        assert_eq!(book.prices.get("XBT"), Some(&65000.0));
        assert_eq!(book.unpriced.len(), coins.len());
        assert!(coins.iter().all(|c| book.unpriced.contains(c)), "{book:?}");
        assert_eq!(sim.calls(Endpoint::Ticker), 2);
    }

    #[tokio::test]
    async fn staked_dot_and_euros_are_priced_in_usd_and_dollars_in_eur() {
        let sim = SimKraken::start(SimOptions::default()).await.unwrap();
        sim.set_price("DOTUSD", 8.0);
        sim.set_price("EURUSD", 1.25);
        let metrics = Arc::new(RequestMetrics::new());
        let client = public_client(&sim, &metrics);
        let assets = client.assets().await.unwrap();
        let pairs = client.asset_pairs().await.unwrap();
        let held = held(&[
            ("DOT28.S", "DOT28.S"),
            ("ZEUR", "EUR"),
            ("ZUSD", "USD"),
            ("XXBT", "XBT"),
            ("NEWCOIN", "NEWCOIN"),
        ]);

        let book = fetch_prices(&client, &held, &assets, &pairs, "USD")
            .await
            .unwrap();
        assert_eq!(book.quote, "USD");
        assert_eq!(book.prices["DOT28.S"], 8.0);
        assert_eq!(book.prices["EUR"], 1.25);
        assert_eq!(book.prices["USD"], 1.0);
        assert_eq!(book.prices["XBT"], 65000.0);
        assert_eq!(book.unpriced, BTreeSet::from(["NEWCOIN".to_owned()]));
        assert_eq!(sim.calls(Endpoint::Ticker), 1);

        let book = fetch_prices(&client, &held, &assets, &pairs, "EUR")
            .await
            .unwrap();
        assert_eq!(book.quote, "EUR");
        assert_eq!(book.prices["USD"], 0.8);
        assert_eq!(book.prices["EUR"], 1.0);
        // DOTEUR keeps its default price: only DOTUSD was set.
        assert!((book.prices["DOT28.S"] - 7.5 / 1.08).abs() < 1e-4);
        assert_eq!(sim.calls(Endpoint::Ticker), 2);
        assert_eq!(metrics.requests("_public", Endpoint::Ticker), 2);
        // Both asset classes: currencies, then tokenized assets.
        assert_eq!(metrics.requests("_public", Endpoint::AssetPairs), 2);
    }

    #[tokio::test]
    async fn a_tokenized_asset_is_named_and_priced_like_any_other() {
        let sim = SimKraken::start(SimOptions::default()).await.unwrap();
        let metrics = Arc::new(RequestMetrics::new());
        let client = public_client(&sim, &metrics);
        let assets = client.assets().await.unwrap();
        let pairs = client.asset_pairs().await.unwrap();
        assert!(assets.contains("AAPLx"), "listed only under its class");
        let book = fetch_prices(
            &client,
            &held(&[("AAPLx", "AAPLx")]),
            &assets,
            &pairs,
            "USD",
        )
        .await
        .unwrap();
        assert_eq!(book.prices.get("AAPLx"), Some(&230.0));
        assert!(book.unpriced.is_empty(), "{book:?}");
    }

    #[tokio::test]
    async fn holding_only_the_quote_currency_asks_no_price() {
        let sim = SimKraken::start(SimOptions::default()).await.unwrap();
        let metrics = Arc::new(RequestMetrics::new());
        let client = public_client(&sim, &metrics);
        let assets = client.assets().await.unwrap();
        let pairs = client.asset_pairs().await.unwrap();
        let book = fetch_prices(
            &client,
            &held(&[("ZUSD", "USD"), ("USD.M", "USD.M")]),
            &assets,
            &pairs,
            "USD",
        )
        .await
        .unwrap();
        assert_eq!(book.prices.len(), 2);
        assert_eq!(sim.calls(Endpoint::Ticker), 0);
    }
}
