//! Public market data: the Assets, AssetPairs and Ticker answers.
//!
//! Owns [`AssetTable`] (raw code to Kraken's short name and decimals, and the `asset` label of a
//! code), [`PairTable`] (which pair trades which asset against which) and the parsing of Ticker's
//! last trade prices.
//! Must not: choose which pairs value an account or in what currency (the exporter's valuation
//! does), guess a name by stripping prefixes, or read an answer's envelope itself.

use std::collections::HashMap;

use serde::Deserialize;

use super::envelope::{Amount, envelope};
use crate::error::KrakenError;

/// What the public Assets list says about one code.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AssetInfo {
    /// Kraken's short name (`XBT` for `XXBT`): the `asset` label.
    pub altname: String,
    /// Decimals Kraken keeps for amounts of this asset.
    #[serde(default)]
    pub decimals: u32,
}

/// The public Assets list: raw code to its description.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssetTable(HashMap<String, AssetInfo>);

impl AssetTable {
    /// Builds a table from entries, for tests and the simulated Kraken.
    pub fn from_entries(entries: impl IntoIterator<Item = (String, AssetInfo)>) -> Self {
        Self(entries.into_iter().collect())
    }

    /// Number of codes known.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no code is known (the list was never fetched).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `asset` label for a raw code: Kraken's `altname` when the code is listed; for a
    /// suffixed code that is not listed (`XXBT.M`), the base's altname with the suffix kept
    /// (`XBT.M`); otherwise the raw code, never a guess from stripping prefixes.
    pub fn display_name(&self, code: &str) -> String {
        if let Some(info) = self.0.get(code) {
            return info.altname.clone();
        }
        if let Some((base, suffix)) = code.split_once('.')
            && let Some(info) = self.0.get(base)
        {
            return format!("{}.{suffix}", info.altname);
        }
        code.to_owned()
    }

    /// Adds the codes of another list (Kraken lists each asset class separately); a code both
    /// list keeps this list's entry.
    pub(crate) fn merge(&mut self, other: AssetTable) {
        for (code, info) in other.0 {
            self.0.entry(code).or_insert(info);
        }
    }

    /// Decimals for a raw code, when known (the tests read what the Assets list says).
    #[cfg(test)]
    pub(crate) fn decimals(&self, code: &str) -> Option<u32> {
        self.0.get(code).map(|info| info.decimals)
    }

    /// Whether Kraken lists this exact code, so valuation prices only codes Kraken knows rather
    /// than codes guessed by stripping prefixes.
    pub fn contains(&self, code: &str) -> bool {
        self.0.contains_key(code)
    }

    /// Every listed raw code, in no particular order.
    pub fn codes(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Every listed short name, in no particular order.
    pub fn altnames(&self) -> impl Iterator<Item = &str> {
        self.0.values().map(|info| info.altname.as_str())
    }

    /// What Kraken says about one code.
    pub fn get(&self, code: &str) -> Option<&AssetInfo> {
        self.0.get(code)
    }

    /// The code whose short name is `altname` (`USD` → `ZUSD`): operators name assets by their
    /// short names, Kraken's pairs by codes. When several codes share an altname, the smallest
    /// code wins, so the answer never depends on hash order.
    pub fn code_for_altname(&self, altname: &str) -> Option<&str> {
        self.0
            .iter()
            .filter(|(_, info)| info.altname == altname)
            .map(|(code, _)| code.as_str())
            .min()
    }
}

/// What the public AssetPairs list says about one trading pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairInfo {
    /// Kraken's short pair name (`XBTUSD` for `XXBTZUSD`); Ticker accepts it, but answers under
    /// the canonical name, so requests use the canonical one.
    pub altname: String,
    /// Asset code bought and sold (`XXBT`): the price is in units of `quote` per unit of it.
    pub base: String,
    /// Asset code the price is expressed in (`ZUSD`).
    pub quote: String,
}

/// The public AssetPairs list: canonical pair name (`XXBTZUSD`) to its assets. Valuation reads
/// it to find which pair prices an asset in the operator's currency.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PairTable(HashMap<String, PairInfo>);

impl PairTable {
    /// Builds a table from entries, for tests and the simulated Kraken.
    pub fn from_entries(entries: impl IntoIterator<Item = (String, PairInfo)>) -> Self {
        Self(entries.into_iter().collect())
    }

    /// Adds the pairs of another list (Kraken lists pairs by the class of their base
    /// separately); a pair both list keeps this list's entry.
    pub(crate) fn merge(&mut self, other: PairTable) {
        for (name, info) in other.0 {
            self.0.entry(name).or_insert(info);
        }
    }

    /// Number of pairs known.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no pair is known (the list was never fetched, or Kraken listed none).
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// What Kraken says about one canonical pair name.
    #[cfg(test)]
    pub(crate) fn get(&self, pair: &str) -> Option<&PairInfo> {
        self.0.get(pair)
    }

    /// Every pair, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &PairInfo)> {
        self.0.iter().map(|(name, info)| (name.as_str(), info))
    }

    /// The canonical name of the pair that trades `base` against `quote`, if Kraken lists one.
    /// Kraken also lists dark-pool twins (`XXBTZUSD.d`) with the same assets; names without a
    /// `.` are preferred, then the smallest name, so the choice never depends on hash order.
    pub fn find(&self, base: &str, quote: &str) -> Option<&str> {
        self.0
            .iter()
            .filter(|(_, info)| info.base == base && info.quote == quote)
            .map(|(name, _)| name.as_str())
            .min_by_key(|name| (name.contains('.'), *name))
    }
}

/// One AssetPairs entry; every other field Kraken sends (fees, lot sizes...) is ignored.
#[derive(Deserialize)]
struct RawPair {
    #[serde(default)]
    altname: Option<String>,
    #[serde(default)]
    base: Option<String>,
    #[serde(default)]
    quote: Option<String>,
}

/// One Ticker entry; only the last trade `c = [price, lot volume]` is read.
#[derive(Deserialize)]
struct TickerEntry {
    #[serde(default)]
    c: Option<Vec<Amount>>,
}

/// Parses the public Assets list.
pub fn assets(status: u16, body: &[u8]) -> Result<AssetTable, KrakenError> {
    let result: Option<HashMap<String, AssetInfo>> = envelope(status, body)?;
    Ok(AssetTable(result.unwrap_or_default()))
}

/// Parses the public AssetPairs list. Entries without a base or a quote cannot price anything and
/// are skipped; unknown fields are ignored.
pub fn asset_pairs(status: u16, body: &[u8]) -> Result<PairTable, KrakenError> {
    let result: Option<HashMap<String, RawPair>> = envelope(status, body)?;
    Ok(PairTable(
        result
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(name, raw)| {
                let (Some(base), Some(quote)) = (raw.base, raw.quote) else {
                    return None;
                };
                let altname = raw.altname.unwrap_or_else(|| name.clone());
                Some((
                    name,
                    PairInfo {
                        altname,
                        base,
                        quote,
                    },
                ))
            })
            .collect(),
    ))
}

/// Parses a Ticker answer into the last trade price (`c[0]`) per pair name, keyed as Kraken keys
/// the result. A pair without a readable last price makes the whole answer a decode error rather
/// than a silent gap.
pub fn ticker(status: u16, body: &[u8]) -> Result<HashMap<String, f64>, KrakenError> {
    let result: Option<HashMap<String, TickerEntry>> = envelope(status, body)?;
    result
        .unwrap_or_default()
        .into_iter()
        .map(|(pair, entry)| {
            let price = entry
                .c
                .as_ref()
                .and_then(|c| c.first())
                .ok_or_else(|| KrakenError::Decode(format!("ticker of {pair} has no last price")))?
                .value(&pair)?;
            Ok((pair, price))
        })
        .collect()
}

/// Parses a Ticker answer for every pair (asked without `pair`): the last trade price per pair
/// name, `None` for a pair whose entry has no readable last price. Unlike [`ticker`], one odd
/// entry among Kraken's hundreds of pairs does not fail the answer: the caller asks the pairs it
/// needs and finds no price by name again.
pub(crate) fn ticker_every_pair(
    status: u16,
    body: &[u8],
) -> Result<HashMap<String, Option<f64>>, KrakenError> {
    let result: Option<HashMap<String, serde_json::Value>> = envelope(status, body)?;
    Ok(result
        .unwrap_or_default()
        .into_iter()
        .map(|(pair, entry)| {
            let price = serde_json::from_value::<TickerEntry>(entry)
                .ok()
                .and_then(|entry| entry.c?.first()?.value(&pair).ok());
            (pair, price)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use crate::error::Reason;

    #[test]
    fn asset_names_use_altname_and_keep_suffixes() {
        let table = assets(200, ASSETS).unwrap();
        assert_eq!(table.display_name("XXBT"), "XBT");
        assert_eq!(table.display_name("ZUSD"), "USD");
        assert_eq!(table.display_name("ETH2.S"), "ETH2.S");
        assert_eq!(table.display_name("DOT28.S"), "DOT28.S");
        assert_eq!(table.display_name("USD.M"), "USD.M");
        // Not listed, but its base is: the base's altname with the suffix kept.
        assert_eq!(table.display_name("XXBT.M"), "XBT.M");
        // Unknown codes keep their raw name; no prefix is stripped by guesswork.
        assert_eq!(table.display_name("XXRP"), "XXRP");
        assert_eq!(table.display_name("XTZ"), "XTZ");
        assert_eq!(table.decimals("ZUSD"), Some(4));
    }

    #[test]
    fn asset_pairs_keep_base_and_quote_and_ignore_extra_fields() {
        let pairs = asset_pairs(200, PAIRS).unwrap();
        assert_eq!(
            pairs.get("XXBTZUSD"),
            Some(&PairInfo {
                altname: "XBTUSD".into(),
                base: "XXBT".into(),
                quote: "ZUSD".into(),
            })
        );
        assert_eq!(pairs.get("DOTUSD").unwrap().base, "DOT");
        // An entry without base and quote cannot price anything.
        assert!(pairs.get("SOMEINDEX").is_none());
        assert_eq!(pairs.len(), 6);
    }

    #[test]
    fn finding_a_pair_prefers_the_plain_pair_over_its_dark_pool_twin() {
        let pairs = asset_pairs(200, PAIRS).unwrap();
        assert_eq!(pairs.find("XXBT", "ZUSD"), Some("XXBTZUSD"));
        assert_eq!(pairs.find("ZEUR", "ZUSD"), Some("ZEURZUSD"));
        assert_eq!(pairs.find("ZUSD", "ZEUR"), None);
        assert_eq!(pairs.find("XETH", "XXBT"), Some("XETHXXBT"));
    }

    #[test]
    fn ticker_reads_the_last_trade_price_as_string_or_number() {
        let prices = ticker(200, TICKER).unwrap();
        assert_eq!(prices.len(), 3);
        assert_eq!(prices["XXBTZUSD"], 65005.1);
        assert_eq!(prices["DOTUSD"], 7.5123);
        assert_eq!(prices["ZEURZUSD"], 1.0825);
        let prices = ticker(200, TICKER_NUMBERS).unwrap();
        assert_eq!(prices["XXBTZUSD"], 65005.1);
        assert_eq!(prices["XETHZUSD"], 3500.0);
    }

    #[test]
    fn ticker_without_a_last_price_or_with_an_unknown_pair_fails() {
        assert_eq!(
            ticker(200, TICKER_NO_LAST).unwrap_err().reason(),
            Reason::Decode
        );
        let err = ticker(200, UNKNOWN_PAIR).unwrap_err();
        assert_eq!(err.reason(), Reason::Other);
        assert_eq!(err.to_string(), "Kraken answered EQuery:Unknown asset pair");
    }

    #[test]
    fn an_every_pair_ticker_answer_keeps_the_readable_prices() {
        let prices = ticker_every_pair(200, TICKER_NO_LAST).unwrap();
        assert!(prices.values().any(Option::is_none), "{prices:?}");
        let prices = ticker_every_pair(200, TICKER).unwrap();
        assert_eq!(prices["XXBTZUSD"], Some(65005.1));
        let odd =
            br#"{"error":[],"result":{"XXBTZUSD":{"c":["65000.1","1"]},"ODD":{"c":"x"},"NOC":{}}}"#;
        let prices = ticker_every_pair(200, odd).unwrap();
        assert_eq!(prices["XXBTZUSD"], Some(65000.1));
        assert_eq!((prices["ODD"], prices["NOC"]), (None, None));
        assert_eq!(
            ticker_every_pair(200, UNKNOWN_PAIR).unwrap_err().reason(),
            Reason::Other
        );
    }

    #[test]
    fn lists_of_two_classes_merge() {
        let mut table = assets(200, DOC_ASSETS).unwrap();
        let tokenized = assets(
            200,
            br#"{"error":[],"result":{"AAPLx":{"aclass":"tokenized_asset","altname":"AAPLx","decimals":8,"display_decimals":4}}}"#,
        )
        .unwrap();
        let before = table.len();
        table.merge(tokenized);
        assert_eq!(table.len(), before + 1);
        assert_eq!(table.display_name("AAPLx"), "AAPLx");
        assert_eq!(table.display_name("XXBT"), "XBT");

        let mut pairs = asset_pairs(200, DOC_PAIRS).unwrap();
        let tokenized = asset_pairs(
            200,
            br#"{"error":[],"result":{"AAPLxUSD":{"altname":"AAPLxUSD","base":"AAPLx","quote":"ZUSD"}}}"#,
        )
        .unwrap();
        pairs.merge(tokenized);
        assert_eq!(pairs.find("AAPLx", "ZUSD"), Some("AAPLxUSD"));
        assert_eq!(pairs.find("XXBT", "ZUSD"), Some("XXBTZUSD"));
    }

    #[test]
    fn empty_public_answers_are_empty_tables() {
        assert!(asset_pairs(200, NO_RESULT).unwrap().is_empty());
        assert!(ticker(200, NO_RESULT).unwrap().is_empty());
        assert_eq!(
            asset_pairs(520, CLOUDFLARE).unwrap_err().reason(),
            Reason::Unavailable
        );
    }

    #[test]
    fn documented_public_answers_parse() {
        let table = assets(200, DOC_ASSETS).unwrap();
        assert_eq!(table.len(), 3);
        assert_eq!(table.display_name("XXBT"), "XBT");
        assert_eq!(table.code_for_altname("EUR"), Some("ZEUR"));
        assert_eq!(table.decimals("ZUSD"), Some(4));

        let pairs = asset_pairs(200, DOC_PAIRS).unwrap();
        assert_eq!(pairs.len(), 2);
        assert_eq!(pairs.find("XXBT", "ZUSD"), Some("XXBTZUSD"));
        assert_eq!(
            pairs.get("XETHXXBT"),
            Some(&PairInfo {
                altname: "ETHXBT".into(),
                base: "XETH".into(),
                quote: "XXBT".into(),
            })
        );

        let prices = ticker(200, DOC_TICKER).unwrap();
        assert_eq!(prices, HashMap::from([("XXBTZUSD".to_owned(), 3537.5)]));
    }

    #[test]
    fn assets_can_be_looked_up_by_code_and_by_altname() {
        let table = assets(200, ASSETS).unwrap();
        assert!(table.contains("XXBT"));
        assert!(!table.contains("XBT"));
        assert_eq!(table.code_for_altname("USD"), Some("ZUSD"));
        assert_eq!(table.code_for_altname("ETH"), Some("XETH"));
        assert_eq!(table.code_for_altname("NOPE"), None);
        assert_eq!(table.get("ZUSD").unwrap().altname, "USD");
    }
}
