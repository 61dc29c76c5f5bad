//! Kraken's public market data: Assets, AssetPairs and Ticker, paced and batched.
//!
//! Owns the `GET` of public methods (URL and query string), the pacing of one client's public
//! requests (Kraken allows about one per second per IP), the asset classes asked of Assets and
//! AssetPairs, and how Ticker is asked (one call for every pair, or batches of named pairs), with
//! what a failed batch means for the others.
//! Must not: sign anything or touch a key's nonces, decide which pairs to ask (the exporter's
//! valuation does), or retry a failed request.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::KrakenClient;
use crate::endpoint::Endpoint;
use crate::error::{KrakenError, Reason};
use crate::parse::{self, AssetTable, PairTable};

/// Most pairs asked of Ticker by name in one request: very long `pair` lists in one URL have been
/// answered with Cloudflare 520. More pairs than this are asked in one call without `pair`,
/// which answers every pair Kraken trades (about 0.5 MB, well within the client's body limit).
pub const TICKER_BATCH: usize = 20;

/// The asset class Kraken lists tokenized assets (xStocks) under: Assets and AssetPairs list only
/// `currency` unless asked for this class (`aclass` / `aclass_base`).
const TOKENIZED_CLASS: &str = "tokenized_asset";

/// Least time between the starts of two public requests of one client. Kraken allows about one
/// public request per second per IP (more answer `EGeneral:Too many requests`), and the batches
/// of one Ticker refresh would otherwise go out back to back.
pub const PUBLIC_CALL_SPACING: Duration = Duration::from_secs(1);

/// Spaces the public requests of one client (all its tasks share it): each waits until
/// [`PUBLIC_CALL_SPACING`] after the start of the previous one. Uses `tokio::time`, so tests can
/// run it on paused time.
#[derive(Debug)]
pub(super) struct PublicPacer {
    /// Least time between two starts.
    spacing: Duration,
    /// When the next public request may start; `None` before the first. Held across the wait, so
    /// waiting requests start one after the other in the order they asked.
    next_start: tokio::sync::Mutex<Option<tokio::time::Instant>>,
}

impl PublicPacer {
    /// A pacer whose first request goes at once.
    pub(super) fn new(spacing: Duration) -> Self {
        Self {
            spacing,
            next_start: tokio::sync::Mutex::new(None),
        }
    }

    /// Waits until a public request may start, and books the slot after it.
    async fn wait_turn(&self) {
        let mut next_start = self.next_start.lock().await;
        if let Some(at) = *next_start {
            tokio::time::sleep_until(at).await;
        }
        *next_start = Some(tokio::time::Instant::now() + self.spacing);
    }
}

/// Last trade prices from Ticker, possibly from only some of its batches.
#[derive(Debug)]
pub struct TickerPrices {
    /// Pair name (as Kraken answers it) → last trade price, from every batch that succeeded.
    pub prices: HashMap<String, f64>,
    /// Why some batches gave no prices (the first failure), when some failed; their pairs are
    /// absent from `prices`.
    pub failure: Option<KrakenError>,
}

impl KrakenClient {
    /// The same client with another least time between its public requests than
    /// [`PUBLIC_CALL_SPACING`], so tests against a simulated Kraken need not wait a second per
    /// request. Only for tests: this crate's, and with the `test-support` feature those of the
    /// crates that use it; a release build cannot unpace a client.
    #[cfg(any(test, feature = "test-support"))]
    pub fn with_public_spacing(mut self, spacing: Duration) -> Self {
        self.public_pacer = PublicPacer::new(spacing);
        self
    }

    /// Fetches the public list of asset codes and their short names, of both classes Kraken
    /// lists separately: `currency` (Kraken's default) and `tokenized_asset` (xStocks, listed
    /// only when asked for by class). Two requests; see [`KrakenClient::both_classes`] for what a
    /// failure of the second means.
    pub async fn assets(&self) -> Result<AssetTable, KrakenError> {
        let query = format!("aclass={TOKENIZED_CLASS}");
        let (mut table, tokenized) = self
            .both_classes(Endpoint::Assets, &query, parse::assets)
            .await?;
        if let Some(tokenized) = tokenized {
            table.merge(tokenized);
        }
        Ok(table)
    }

    /// Fetches the public list of trading pairs, to find which pair prices an asset in a given
    /// currency: pairs whose base is a `currency` (Kraken's default) and those whose base is a
    /// `tokenized_asset` (`aclass_base`), in two requests like [`KrakenClient::assets`].
    pub async fn asset_pairs(&self) -> Result<PairTable, KrakenError> {
        let query = format!("aclass_base={TOKENIZED_CLASS}");
        let (mut table, tokenized) = self
            .both_classes(Endpoint::AssetPairs, &query, parse::asset_pairs)
            .await?;
        if let Some(tokenized) = tokenized {
            table.merge(tokenized);
        }
        Ok(table)
    }

    /// Asks `endpoint` for its default class, then with `tokenized_query`. A failed first request
    /// is the error. A second one Kraken refused for itself (`other`, such as
    /// `EGeneral:Invalid arguments` from a Kraken that knows no such class) gives `None`, so the
    /// currencies are still used; any other failure of it (a rate limit, an outage) is the error,
    /// so the caller keeps its previous list and asks again later instead of losing the tokenized
    /// assets for a whole interval.
    async fn both_classes<T>(
        &self,
        endpoint: Endpoint,
        tokenized_query: &str,
        parse: fn(u16, &[u8]) -> Result<T, KrakenError>,
    ) -> Result<(T, Option<T>), KrakenError> {
        let currencies = self.public_get(endpoint, None, parse).await?;
        match self
            .public_get(endpoint, Some(tokenized_query), parse)
            .await
        {
            Ok(tokenized) => Ok((currencies, Some(tokenized))),
            Err(error) if error.reason() == Reason::Other => {
                tracing::debug!(endpoint = endpoint.as_str(), %error, "Kraken refused the tokenized asset class; using currencies only");
                Ok((currencies, None))
            }
            Err(error) => Err(error),
        }
    }

    /// Fetches the last trade price of each pair, keyed by the pair name Kraken answers with.
    /// Ask by canonical name (`XXBTZUSD`): Kraken keys its answer by the canonical name even when
    /// asked by altname. Duplicates are asked once. Up to [`TICKER_BATCH`] pairs are asked by
    /// name in one request; more are asked in one request without `pair`, which answers every
    /// pair, and any asked pair it did not answer with a readable price is then asked by name,
    /// in batches of [`TICKER_BATCH`]. Each request is paced like every public request and
    /// counted as one `Ticker` call. No pair, no request.
    ///
    /// A failed request does not lose the others: the prices of those that succeeded are
    /// returned, with the failure. A request Kraken refused for itself (`other`, such as
    /// `EQuery:Unknown asset pair`, or an all-pairs answer that could not be read) is skipped
    /// and the next is asked; any other failure (a rate limit, an outage, a timeout) ends the
    /// refresh there, since the next request would meet the same. `Err` only when no request
    /// succeeded.
    pub async fn ticker(&self, pairs: &[String]) -> Result<TickerPrices, KrakenError> {
        let mut seen = HashSet::new();
        let mut remaining: Vec<&str> = pairs
            .iter()
            .map(String::as_str)
            .filter(|pair| !pair.is_empty() && seen.insert(*pair))
            .collect();
        let mut prices = HashMap::with_capacity(remaining.len());
        let mut failure = None;
        let mut answered = remaining.is_empty();
        if remaining.len() > TICKER_BATCH {
            match self
                .public_get(Endpoint::Ticker, None, parse::ticker_every_pair)
                .await
            {
                Ok(every_pair) => {
                    answered = true;
                    remaining.retain(|pair| match every_pair.get(*pair) {
                        Some(Some(price)) => {
                            prices.insert((*pair).to_owned(), *price);
                            false
                        }
                        _ => true,
                    });
                }
                Err(error) => {
                    let stop = !matches!(error.reason(), Reason::Other | Reason::Decode);
                    failure = Some(error);
                    if stop {
                        remaining.clear();
                    }
                }
            }
        }
        for batch in remaining.chunks(TICKER_BATCH) {
            match self.ticker_batch(batch).await {
                Ok(batch_prices) => {
                    answered = true;
                    prices.extend(batch_prices);
                }
                Err(error) => {
                    let stop = error.reason() != Reason::Other;
                    failure.get_or_insert(error);
                    if stop {
                        break;
                    }
                }
            }
        }
        match failure {
            Some(error) if !answered => Err(error),
            failure => Ok(TickerPrices { prices, failure }),
        }
    }

    /// One Ticker request for the named pairs (`?pair=A,B`).
    async fn ticker_batch(&self, batch: &[&str]) -> Result<HashMap<String, f64>, KrakenError> {
        let list: Vec<String> = batch
            .iter()
            .map(|pair| form_urlencoded::byte_serialize(pair.as_bytes()).collect())
            .collect();
        let query = format!("pair={}", list.join(","));
        self.public_get(Endpoint::Ticker, Some(&query), parse::ticker)
            .await
    }

    /// Calls a public endpoint with `GET` (Kraken refuses other methods on public endpoints) and
    /// the given query string.
    pub(super) async fn public_get<T>(
        &self,
        endpoint: Endpoint,
        query: Option<&str>,
        parse: fn(u16, &[u8]) -> Result<T, KrakenError>,
    ) -> Result<T, KrakenError> {
        let mut url = format!("{}{}", self.options.api_url, endpoint.path());
        if let Some(query) = query {
            url.push('?');
            url.push_str(query);
        }
        self.public_pacer.wait_turn().await;
        let started = Instant::now();
        let outcome = async {
            let response = self
                .http
                .get(&url)
                .send()
                .await
                .map_err(|e| self.transport(e))?;
            let (status, body) = self.read(response).await?;
            parse(status, &body).map_err(|e| e.at_path(endpoint.path()))
        }
        .await;
        self.record(endpoint, started, &outcome);
        outcome
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::http_client;
    use super::super::testing::*;
    use super::*;
    use crate::sim::testing::pace_the_clock;

    use crate::observer::{CallObserver, CountingObserver};
    use crate::sim::{Fault, SimOptions};

    /// Every pair the sim lists, sorted, and how many Ticker requests asking all of them takes.
    async fn every_pair(client: &KrakenClient) -> Vec<String> {
        let pairs = client.asset_pairs().await.unwrap();
        let mut names: Vec<String> = pairs.iter().map(|(name, _)| name.to_owned()).collect();
        names.sort();
        assert!(names.len() > TICKER_BATCH, "{}", names.len());
        names
    }

    #[tokio::test]
    async fn a_rate_limited_ticker_batch_keeps_the_prices_of_the_batches_before_it() {
        let sim = start(SimOptions::default()).await;
        let metrics = Arc::new(CountingObserver::default());
        let names = every_pair(&public(&sim, &metrics)).await;
        // One public call at once: the all-pairs answer (a fault, which costs nothing) answers
        // none of the pairs, so they are asked by name; the first batch passes, the second is
        // over the limit.
        let sim = start(SimOptions {
            public_rate_limit: Some((1.0, 0.001)),
            ..SimOptions::default()
        })
        .await;
        sim.inject(
            Endpoint::Ticker,
            Fault::RawBody(br#"{"error":[],"result":{}}"#.to_vec()),
            Some(1),
        );
        let client = public(&sim, &metrics);
        let answer = client.ticker(&names).await.unwrap();
        assert_eq!(answer.prices.len(), TICKER_BATCH, "the first batch is kept");
        assert!(answer.prices.contains_key(&names[0]));
        assert!(!answer.prices.contains_key(&names[TICKER_BATCH]));
        let failure = answer.failure.expect("the second batch failed");
        assert_eq!(failure.reason(), Reason::RateLimited);
        assert_eq!(
            sim.calls(Endpoint::Ticker),
            3,
            "no batch after a rate limit"
        );

        // Nothing answered: an error, not an empty success.
        let err = client.ticker(&names).await.unwrap_err();
        assert_eq!(err.reason(), Reason::RateLimited);
    }

    #[tokio::test]
    async fn a_ticker_batch_kraken_refuses_for_itself_does_not_stop_the_next() {
        let sim = start(SimOptions::default()).await;
        let metrics = Arc::new(CountingObserver::default());
        let client = public(&sim, &metrics);
        let mut asked: Vec<String> = (0..TICKER_BATCH).map(|i| format!("AAA{i:02}USD")).collect();
        asked.push("XXBTZUSD".into());
        // Not readable as a whole: every pair is asked by name, the unknown ones refused.
        sim.inject(
            Endpoint::Ticker,
            Fault::RawBody(br#"{"error":[],"result":[]}"#.to_vec()),
            Some(1),
        );
        let answer = client.ticker(&asked).await.unwrap();
        assert_eq!(answer.prices["XXBTZUSD"], 65000.0);
        assert_eq!(answer.prices.len(), 1);
        assert_eq!(answer.failure.unwrap().reason(), Reason::Decode);
        assert_eq!(
            sim.calls(Endpoint::Ticker),
            3,
            "all pairs, then two batches"
        );
    }

    #[tokio::test]
    async fn many_pairs_are_asked_in_one_call_and_what_it_misses_by_name() {
        let sim = start(SimOptions::default()).await;
        let metrics = Arc::new(CountingObserver::default());
        let client = public(&sim, &metrics);
        let names = every_pair(&client).await;
        let answer = client.ticker(&names).await.unwrap();
        assert!(answer.failure.is_none(), "{:?}", answer.failure);
        assert_eq!(answer.prices.len(), names.len());
        assert_eq!(answer.prices["AAPLxUSD"], 230.0, "the tokenized pair too");
        assert_eq!(sim.calls(Endpoint::Ticker), 1, "one call for every pair");

        // The all-pairs answer lacks some pairs, or has no readable price for one: those are
        // asked by name.
        let partial =
            br#"{"error":[],"result":{"XXBTZUSD":{"c":["1.5","1"]},"XETHZUSD":{"c":"x"}}}"#;
        sim.inject(Endpoint::Ticker, Fault::RawBody(partial.to_vec()), Some(1));
        let answer = client.ticker(&names).await.unwrap();
        assert!(answer.failure.is_none(), "{:?}", answer.failure);
        assert_eq!(answer.prices.len(), names.len());
        assert_eq!(answer.prices["XXBTZUSD"], 1.5, "from the all-pairs answer");
        assert_eq!(answer.prices["XETHZUSD"], 3500.0, "asked again by name");
        let missing = names.len() - 1;
        assert_eq!(
            sim.calls(Endpoint::Ticker),
            2 + missing.div_ceil(TICKER_BATCH) as u64
        );
    }

    #[tokio::test]
    async fn assets_and_pairs_of_both_classes_are_asked_and_merged() {
        let sim = start(SimOptions::default()).await;
        let metrics = Arc::new(CountingObserver::default());
        let client = public(&sim, &metrics);
        let assets = client.assets().await.unwrap();
        assert!(assets.contains("AAPLx"), "the tokenized asset");
        assert!(assets.contains("XXBT"));
        let pairs = client.asset_pairs().await.unwrap();
        assert_eq!(pairs.find("AAPLx", "ZUSD"), Some("AAPLxUSD"));
        assert_eq!(pairs.find("XXBT", "ZUSD"), Some("XXBTZUSD"));
        assert_eq!(sim.calls(Endpoint::Assets), 2);
        assert_eq!(sim.calls(Endpoint::AssetPairs), 2);
    }

    #[tokio::test]
    async fn a_second_class_kraken_refuses_is_skipped_and_one_that_fails_is_the_error() {
        // Ticker stands in for a method asked twice: without a query, then with one.
        let sim = start(SimOptions::default()).await;
        let metrics = Arc::new(CountingObserver::default());
        let client = public(&sim, &metrics);
        let (first, second) = client
            .both_classes(Endpoint::Ticker, "pair=NOPEUSD", parse::ticker)
            .await
            .unwrap();
        assert!(first.contains_key("XXBTZUSD"));
        assert!(
            second.is_none(),
            "EQuery:Unknown asset pair is Kraken's own refusal"
        );

        let limited = start(SimOptions {
            public_rate_limit: Some((1.0, 0.001)),
            ..SimOptions::default()
        })
        .await;
        let client = public(&limited, &metrics);
        let err = client
            .both_classes(Endpoint::Ticker, "pair=XXBTZUSD", parse::ticker)
            .await
            .unwrap_err();
        assert_eq!(
            err.reason(),
            Reason::RateLimited,
            "not a list without the class"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn public_requests_start_at_least_the_spacing_apart() {
        let pacer = Arc::new(PublicPacer::new(PUBLIC_CALL_SPACING));
        let started = tokio::time::Instant::now();
        pacer.wait_turn().await;
        assert_eq!(started.elapsed(), Duration::ZERO, "the first goes at once");
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let pacer = Arc::clone(&pacer);
                tokio::spawn(async move {
                    pacer.wait_turn().await;
                    tokio::time::Instant::now()
                })
            })
            .collect();
        let mut starts = Vec::new();
        for waiter in waiters {
            starts.push(waiter.await.unwrap() - started);
        }
        starts.sort();
        assert_eq!(
            starts,
            [1, 2, 3].map(|s| PUBLIC_CALL_SPACING * s),
            "one start per spacing"
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        let idle = tokio::time::Instant::now();
        pacer.wait_turn().await;
        assert_eq!(
            idle.elapsed(),
            Duration::ZERO,
            "no wait after a quiet spell"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_paced_like_kraken_asks_allows_is_never_refused() {
        let sim = start(SimOptions {
            public_rate_limit: Some(crate::sim::PUBLIC_RATE_LIMIT),
            ..SimOptions::default()
        })
        .await;
        let _clock = pace_the_clock();
        let metrics = Arc::new(CountingObserver::default());
        let client = KrakenClient::public(
            http_client(TIMEOUT).unwrap(),
            options(&sim),
            "_public".into(),
            Arc::clone(&metrics) as Arc<dyn CallObserver>,
        );
        let started = tokio::time::Instant::now();
        let names = every_pair(&client).await;
        let answer = client.ticker(&names).await.unwrap();
        assert!(answer.failure.is_none(), "{:?}", answer.failure);
        assert_eq!(answer.prices.len(), names.len());
        // AssetPairs of both classes, then Ticker, each a spacing after the one before.
        assert_eq!(
            sim.calls(Endpoint::AssetPairs) + sim.calls(Endpoint::Ticker),
            3
        );
        assert!(
            started.elapsed() >= PUBLIC_CALL_SPACING * 2,
            "{:?} for three calls",
            started.elapsed()
        );
        assert_eq!(
            metrics.errors("_public", Endpoint::Ticker, Reason::RateLimited)
                + metrics.errors("_public", Endpoint::AssetPairs, Reason::RateLimited),
            0
        );
    }

    #[tokio::test]
    async fn few_pairs_are_asked_by_name_each_once() {
        let sim = start(SimOptions::default()).await;
        let metrics = Arc::new(CountingObserver::default());
        let client = public(&sim, &metrics);
        let mut names: Vec<String> = every_pair(&client).await;
        names.truncate(TICKER_BATCH);
        let mut asked = names.clone();
        asked.extend(names.iter().take(5).cloned());
        asked.push(String::new());
        // Asked by name, an unknown pair fails the call: proof that `pair` was sent.
        let mut with_unknown = names[1..].to_vec();
        with_unknown.push("NOPEUSD".into());
        let err = client.ticker(&with_unknown).await.unwrap_err();
        assert_eq!(err.reason(), Reason::Other);

        let prices = client.ticker(&asked).await.unwrap().prices;
        assert_eq!(prices.len(), names.len());
        assert_eq!(sim.calls(Endpoint::Ticker), 2);
        assert_eq!(metrics.requests("_public", Endpoint::Ticker), 2);
        assert_eq!(metrics.requests("_public", Endpoint::AssetPairs), 2);

        assert!(client.ticker(&[]).await.unwrap().prices.is_empty());
        assert_eq!(sim.calls(Endpoint::Ticker), 2);
    }

    #[tokio::test]
    async fn ticker_failures_are_classified_and_counted() {
        let sim = start(SimOptions::default()).await;
        let metrics = Arc::new(CountingObserver::default());
        let client = public(&sim, &metrics);
        let err = client
            .ticker(&["XXBTZUSD".into(), "NOPEUSD".into()])
            .await
            .unwrap_err();
        // One batch, and it failed: nothing answered, so an error.
        assert_eq!(err.to_string(), "Kraken answered EQuery:Unknown asset pair");
        assert_eq!(
            metrics.errors("_public", Endpoint::Ticker, Reason::Other),
            1
        );
    }
}
