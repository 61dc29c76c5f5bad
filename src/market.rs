//! What Kraken's public endpoints say, shared by every account: asset names, and (with
//! valuation) trading pairs and prices.
//!
//! Owns the schedule of public calls: the Assets list (and AssetPairs) every few hours, each of
//! both asset classes (currencies and tokenized assets, which Kraken lists apart), prices
//! once per minimum interval (sooner, but never within a second of the previous refresh, for an
//! asset an account has just reported), each fetched by one caller at a time; and which assets
//! are priced: those the accounts held at their latest successful refresh.
//! Must not: call a private endpoint, make a scrape wait for a price (scrapes are served the
//! latest price book while a new one is fetched in the background), or read
//! `std::time::Instant` (its clock is tokio's, so tests can pause it).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::time::Instant;

use crate::metrics::RequestMetrics;
use crate::valuation::{self, PriceBook};
use kraken::{AssetTable, KrakenClient, PUBLIC_CALL_SPACING, PairTable, SystemState};

/// The `account` label of calls to public endpoints, which belong to no account. Account names
/// starting with `_` are refused, so it cannot clash.
pub(crate) const PUBLIC_ACCOUNT: &str = "_public";

/// How long to wait before asking for a failed public list again.
const RETRY_AFTER: Duration = Duration::from_secs(5 * 60);

/// How often Kraken's system status (online, maintenance, cancel_only, post_only) is asked.
pub(crate) const SYSTEM_STATUS_INTERVAL: Duration = Duration::from_secs(60);

/// How prices are kept, when valuation is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricePolicy {
    /// Kraken's short name of the quote currency (`USD`).
    pub quote: String,
    /// Prices are fetched again at most this often.
    pub min_interval: Duration,
    /// A price book older than this is not exported.
    pub stale_after: Duration,
}

/// Shared public data.
pub struct Market {
    /// A client without credentials, counting its calls under [`PUBLIC_ACCOUNT`].
    client: KrakenClient,
    /// How often the Assets list (and AssetPairs) is fetched again.
    assets_interval: Duration,
    /// Valuation settings; `None` makes no price calls at all.
    prices: Option<PricePolicy>,
    /// Told after every change to what the exposition shows (new asset names, new prices).
    changes: Arc<RequestMetrics>,
    /// Handle to itself, for the price refresh task.
    this: Weak<Market>,
    /// What is known.
    state: Mutex<MarketState>,
    /// Held while the Assets list is being fetched, so concurrent accounts fetch it once.
    assets_fetch: tokio::sync::Mutex<()>,
    /// A price refresh task is running (or waiting for its start); cleared by
    /// [`PricesInFlight`] however the task ends.
    prices_in_flight: AtomicBool,
    /// A SystemStatus call is running.
    system_in_flight: AtomicBool,
    /// Makes the next price refresh panic, to test that a panic does not stop prices.
    #[cfg(test)]
    panic_in_price_refresh: AtomicBool,
}

impl std::fmt::Debug for Market {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Market").finish_non_exhaustive()
    }
}

/// What is known, behind a mutex never held across an await.
#[derive(Default)]
struct MarketState {
    /// Code → short name.
    assets: Arc<AssetTable>,
    /// When the Assets list may be fetched next; `None` before the first attempt.
    assets_due: Option<Instant>,
    /// Pair name → base and quote codes.
    pairs: Arc<PairTable>,
    /// When AssetPairs may be fetched next; `None` before the first attempt.
    pairs_due: Option<Instant>,
    /// Account name → (code, asset label) of every asset it held at its latest successful
    /// refresh; replaced at each, removed with the account.
    held: BTreeMap<String, Vec<(String, String)>>,
    /// Latest price book and when it was fetched.
    book: Option<(Arc<PriceBook>, Instant)>,
    /// When the latest price refresh started (successful or not).
    prices_attempted: Option<Instant>,
    /// When the latest price refresh ended (successful or not).
    prices_finished: Option<Instant>,
    /// Labels of the assets the latest price refresh asked about.
    prices_asked: BTreeSet<String>,
    /// Kraken's latest system status and when it was fetched.
    system: Option<(SystemState, Instant)>,
    /// When SystemStatus may be asked next; `None` before the first call.
    system_due: Option<Instant>,
}

impl Market {
    /// A market that has fetched nothing yet. `changes` is touched after every new list or price
    /// book.
    pub fn new(
        client: KrakenClient,
        assets_interval: Duration,
        prices: Option<PricePolicy>,
        changes: Arc<RequestMetrics>,
    ) -> Arc<Self> {
        Arc::new_cyclic(|this| Self {
            client,
            assets_interval,
            prices,
            changes,
            this: this.clone(),
            state: Mutex::new(MarketState::default()),
            assets_fetch: tokio::sync::Mutex::new(()),
            prices_in_flight: AtomicBool::new(false),
            system_in_flight: AtomicBool::new(false),
            #[cfg(test)]
            panic_in_price_refresh: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, MarketState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn assets_due(&self) -> bool {
        self.lock()
            .assets_due
            .is_none_or(|due| Instant::now() >= due)
    }

    /// The Assets list, fetched first when it is due. A failure keeps the previous list (or
    /// none: balances are then labelled with raw codes) and tries again in a few minutes.
    pub async fn assets(&self) -> Arc<AssetTable> {
        if self.assets_due() {
            let _fetching = self.assets_fetch.lock().await;
            // Another caller may have fetched it while this one waited.
            if self.assets_due() {
                let result = self.client.assets().await;
                let mut state = self.lock();
                match result {
                    Ok(table) => {
                        tracing::debug!(assets = table.len(), "asset list refreshed");
                        state.assets = Arc::new(table);
                        state.assets_due = Some(Instant::now() + self.assets_interval);
                        self.changes.touch();
                    }
                    Err(error) => {
                        tracing::warn!(%error, "fetching the asset list failed; balances keep raw codes as asset names until it succeeds");
                        state.assets_due = Some(Instant::now() + RETRY_AFTER);
                    }
                }
            }
        }
        self.current_assets()
    }

    /// The Assets list as known now, without calling Kraken.
    pub(crate) fn current_assets(&self) -> Arc<AssetTable> {
        Arc::clone(&self.lock().assets)
    }

    /// Starts a SystemStatus call in the background when one is due (every
    /// [`SYSTEM_STATUS_INTERVAL`]) and none is running. Never waits itself. A failed call keeps
    /// the previous status until it is stale.
    pub(crate) fn refresh_system_status_if_due(&self) {
        let now = Instant::now();
        if self.lock().system_due.is_some_and(|due| now < due) {
            return;
        }
        if self.system_in_flight.swap(true, Ordering::SeqCst) {
            return;
        }
        let Some(market) = self.this.upgrade() else {
            self.system_in_flight.store(false, Ordering::SeqCst);
            return;
        };
        self.lock().system_due = Some(now + SYSTEM_STATUS_INTERVAL);
        tokio::spawn(async move {
            let result = market.client.system_status().await;
            {
                let mut state = market.lock();
                match result {
                    Ok(status) => state.system = Some((status, Instant::now())),
                    Err(error) => {
                        tracing::warn!(%error, "fetching Kraken's system status failed; keeping the previous one until it is stale")
                    }
                }
            }
            market.system_in_flight.store(false, Ordering::SeqCst);
            market.changes.touch();
        });
    }

    /// Kraken's latest system status, unless none was fetched or it is older than three
    /// intervals.
    pub(crate) fn current_system_status(&self) -> Option<SystemState> {
        let state = self.lock();
        let (status, at) = state.system.as_ref()?;
        (at.elapsed() <= SYSTEM_STATUS_INTERVAL * 3).then(|| status.clone())
    }

    /// Records what `account` holds after a successful refresh, replacing what it held before
    /// (so a sold asset stops being priced), and starts a price refresh when one is due.
    pub(crate) fn note_held(&self, account: &str, held: Vec<(String, String)>) {
        if self.prices.is_none() {
            return;
        }
        self.lock().held.insert(account.to_owned(), held);
        self.refresh_prices_if_due();
    }

    /// Forgets what accounts other than those `keep` accepts hold (accounts removed on reload).
    pub(crate) fn retain_holders(&self, keep: impl Fn(&str) -> bool) {
        self.lock().held.retain(|account, _| keep(account));
    }

    /// Starts a price refresh in the background when valuation is on, none is running, and one
    /// is due (see [`MarketState::next_price_refresh`]); a refresh due within
    /// [`PUBLIC_CALL_SPACING`] is started now and waits for its time. Never waits itself.
    pub(crate) fn refresh_prices_if_due(&self) {
        let Some(policy) = &self.prices else {
            return;
        };
        let now = Instant::now();
        let Some(at) = self.lock().next_price_refresh(policy, now) else {
            return;
        };
        if at > now + PUBLIC_CALL_SPACING {
            return;
        }
        if self.prices_in_flight.swap(true, Ordering::SeqCst) {
            return;
        }
        let Some(market) = self.this.upgrade() else {
            self.prices_in_flight.store(false, Ordering::SeqCst);
            return;
        };
        // Clears the flag however the task ends: finished, panicked or cancelled (even before
        // its first poll).
        let in_flight = PricesInFlight(Arc::clone(&market));
        tokio::spawn(async move {
            let _in_flight = in_flight;
            let mut at = at;
            loop {
                tokio::time::sleep_until(at).await;
                market.refresh_prices().await;
                // Assets an account reported while this refresh ran are priced next, without
                // waiting for the minimum interval (one refresh at a time, a gap between them).
                match market.lock().follow_up() {
                    Some(next) => at = next,
                    None => break,
                }
            }
        });
    }

    /// Fetches the pair list when due, then the prices of every held asset.
    async fn refresh_prices(&self) {
        let Some(policy) = &self.prices else {
            return;
        };
        self.lock().prices_attempted = Some(Instant::now());
        #[cfg(test)]
        if self.panic_in_price_refresh.swap(false, Ordering::SeqCst) {
            panic!("price refresh panicked on purpose (test)");
        }
        let assets = self.assets().await;
        let pairs = self.pairs().await;
        let held: Vec<(String, String)> = {
            let mut state = self.lock();
            let held = state.all_held();
            state.prices_asked = held.iter().map(|(_, label)| label.clone()).collect();
            held.into_iter().collect()
        };
        if !assets.is_empty() && valuation::quote_code(&policy.quote, &assets).is_none() {
            tracing::warn!(
                quote = %policy.quote,
                "the valuation quote is not an asset Kraken lists: use Kraken's short name, like USD or EUR; no prices are exported"
            );
        }
        let result =
            valuation::fetch_prices(&self.client, &held, &assets, &pairs, &policy.quote).await;
        let mut state = self.lock();
        state.prices_finished = Some(Instant::now());
        match result {
            Ok(book) => {
                if !book.unpriced.is_empty() {
                    tracing::debug!(quote = %book.quote, unpriced = ?book.unpriced, "some held assets have no market in the quote currency");
                }
                state.book = Some((Arc::new(book), Instant::now()));
                drop(state);
                self.changes.touch();
            }
            Err(error) => {
                tracing::warn!(%error, "fetching prices failed; keeping the previous prices until they are stale");
            }
        }
    }

    /// The pair list, fetched first when it is due (on the Assets list's schedule).
    async fn pairs(&self) -> Arc<PairTable> {
        let due = self
            .lock()
            .pairs_due
            .is_none_or(|due| Instant::now() >= due);
        if due {
            let result = self.client.asset_pairs().await;
            let mut state = self.lock();
            match result {
                Ok(pairs) => {
                    state.pairs = Arc::new(pairs);
                    state.pairs_due = Some(Instant::now() + self.assets_interval);
                }
                Err(error) => {
                    tracing::warn!(%error, "fetching the pair list failed; trying again later");
                    state.pairs_due = Some(Instant::now() + RETRY_AFTER);
                }
            }
        }
        Arc::clone(&self.lock().pairs)
    }

    /// The latest price book, unless it is older than the staleness limit, limited to the assets
    /// some account holds now: an asset sold since the book was fetched has no price series.
    pub(crate) fn current_prices(&self) -> Option<Arc<PriceBook>> {
        let policy = self.prices.as_ref()?;
        let state = self.lock();
        let (book, at) = state.book.as_ref()?;
        if at.elapsed() > policy.stale_after {
            return None;
        }
        let held: BTreeSet<&str> = state
            .held
            .values()
            .flatten()
            .map(|(_, label)| label.as_str())
            .collect();
        let listed = |label: &String| held.contains(label.as_str());
        if book.prices.keys().all(listed) && book.unpriced.iter().all(listed) {
            return Some(Arc::clone(book));
        }
        Some(Arc::new(PriceBook {
            quote: book.quote.clone(),
            prices: book
                .prices
                .iter()
                .filter(|(label, _)| listed(label))
                .map(|(label, price)| (label.clone(), *price))
                .collect(),
            unpriced: book
                .unpriced
                .iter()
                .filter(|l| listed(l))
                .cloned()
                .collect(),
        }))
    }
}

/// Clears [`Market::prices_in_flight`] when the price task ends, even by panic or cancellation,
/// so one failed task never stops prices for good.
struct PricesInFlight(Arc<Market>);

impl Drop for PricesInFlight {
    fn drop(&mut self) {
        self.0.prices_in_flight.store(false, Ordering::SeqCst);
    }
}

impl MarketState {
    /// Every (code, asset label) some account holds.
    fn all_held(&self) -> BTreeSet<(String, String)> {
        self.held.values().flatten().cloned().collect()
    }

    /// Whether a held asset is neither priced nor listed as unpriced by the latest book, and was
    /// not asked about by the latest price refresh (an asset whose refresh failed waits for the
    /// minimum interval like every other).
    fn has_unpriced_newcomer(&self) -> bool {
        let book = self.book.as_ref().map(|(book, _)| book);
        self.held.values().flatten().any(|(_, label)| {
            !self.prices_asked.contains(label)
                && book.is_none_or(|b| !b.prices.contains_key(label) && !b.unpriced.contains(label))
        })
    }

    /// When the next price refresh may start, `None` when nothing is held. Regularly, the
    /// minimum interval after the latest one started; sooner for an asset no price book knows
    /// (an account that just reported it), but never less than [`PUBLIC_CALL_SPACING`] after the
    /// latest one, so Kraken's public rate limit is respected.
    fn next_price_refresh(&self, policy: &PricePolicy, now: Instant) -> Option<Instant> {
        if self.held.values().all(Vec::is_empty) {
            return None;
        }
        let Some(attempted) = self.prices_attempted else {
            return Some(now);
        };
        let regular = attempted + policy.min_interval;
        match self.follow_up() {
            Some(early) => Some(early.min(regular)),
            None => Some(regular),
        }
    }

    /// When a refresh for newly held assets may start (see [`Self::has_unpriced_newcomer`]).
    fn follow_up(&self) -> Option<Instant> {
        if !self.has_unpriced_newcomer() {
            return None;
        }
        let latest = self.prices_finished.max(self.prices_attempted)?;
        Some(latest + PUBLIC_CALL_SPACING)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kraken::client::http_client;
    use kraken::sim::{SimKraken, SimOptions};
    use kraken::{BalanceEndpoint, ClientOptions, Endpoint};

    const MIN_INTERVAL: Duration = Duration::from_secs(60);

    fn market(sim: &SimKraken) -> Arc<Market> {
        let metrics = Arc::new(RequestMetrics::new());
        let timeout = Duration::from_secs(30);
        let client = KrakenClient::public(
            http_client(timeout).unwrap(),
            ClientOptions {
                api_url: sim.url(),
                timeout,
                balance_endpoint: BalanceEndpoint::Auto,
            },
            PUBLIC_ACCOUNT.into(),
            metrics.clone(),
        );
        let policy = PricePolicy {
            quote: "USD".into(),
            min_interval: MIN_INTERVAL,
            stale_after: Duration::from_secs(600),
        };
        Market::new(client, Duration::from_secs(3600), Some(policy), metrics)
    }

    fn held(codes: &[(&str, &str)]) -> Vec<(String, String)> {
        codes
            .iter()
            .map(|(code, label)| ((*code).to_owned(), (*label).to_owned()))
            .collect()
    }

    fn priced(market: &Market) -> Vec<String> {
        market
            .current_prices()
            .map(|book| book.prices.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Lets spawned tasks and the simulated Kraken run until no price task is in flight. Time is
    /// paused, so the sleeps cost nothing; the bound only stops a task that never ends.
    async fn settle(market: &Market) {
        for _ in 0..1000 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if !market.prices_in_flight.load(Ordering::SeqCst) {
                return;
            }
        }
        panic!("the price task never ended");
    }

    #[tokio::test(start_paused = true)]
    async fn a_sold_asset_loses_its_price_and_a_removed_accounts_assets_too() {
        let sim = SimKraken::start(SimOptions::default()).await.unwrap();
        let market = market(&sim);
        market.note_held("hot", held(&[("XXBT", "XBT"), ("XETH", "ETH")]));
        market.note_held("cold", held(&[("DOT", "DOT")]));
        settle(&market).await;
        assert_eq!(priced(&market), ["DOT", "ETH", "XBT"]);
        // "hot" sold its ether: the next refresh of "hot" no longer lists it.
        market.note_held("hot", held(&[("XXBT", "XBT")]));
        assert_eq!(priced(&market), ["DOT", "XBT"]);
        // "cold" is removed on reload.
        market.retain_holders(|name| name == "hot");
        assert_eq!(priced(&market), ["XBT"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_price_task_does_not_stop_prices() {
        let sim = SimKraken::start(SimOptions::default()).await.unwrap();
        let market = market(&sim);
        market.panic_in_price_refresh.store(true, Ordering::SeqCst);
        market.note_held("hot", held(&[("XXBT", "XBT")]));
        assert!(market.prices_in_flight.load(Ordering::SeqCst));
        settle(&market).await;
        assert!(
            market.current_prices().is_none(),
            "the panicked task fetched nothing"
        );
        tokio::time::advance(MIN_INTERVAL).await;
        market.refresh_prices_if_due();
        settle(&market).await;
        assert_eq!(priced(&market), ["XBT"], "the next refresh ran");
    }

    #[tokio::test(start_paused = true)]
    async fn assets_reported_while_prices_are_fetched_are_priced_a_second_later() {
        let sim = SimKraken::start(SimOptions {
            latency: Duration::from_millis(300),
            ..SimOptions::default()
        })
        .await
        .unwrap();
        let market = market(&sim);
        // The lists are fetched, so the price refresh goes straight to Ticker.
        market.assets().await;
        market.pairs().await;
        let started = Instant::now();
        market.note_held("hot", held(&[("XXBT", "XBT")]));
        // The second account's balances arrive while Ticker is answering the first.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(market.prices_in_flight.load(Ordering::SeqCst));
        market.note_held("cold", held(&[("XETH", "ETH"), ("NEWCOIN", "NEWCOIN")]));
        settle(&market).await;
        let book = market.current_prices().unwrap();
        assert_eq!(book.prices.keys().collect::<Vec<_>>(), ["ETH", "XBT"]);
        assert!(book.unpriced.contains("NEWCOIN"), "{book:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "priced after {:?}, not after the minimum interval",
            started.elapsed()
        );
        assert_eq!(sim.calls(Endpoint::Ticker), 2, "one refresh at a time");
        // Both accounts' assets are known now: the next refresh waits for the minimum interval.
        market.note_held("cold", held(&[("XETH", "ETH"), ("NEWCOIN", "NEWCOIN")]));
        market.refresh_prices_if_due();
        settle(&market).await;
        assert_eq!(sim.calls(Endpoint::Ticker), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_newcomer_waits_a_second_after_the_previous_refresh() {
        let sim = SimKraken::start(SimOptions::default()).await.unwrap();
        let market = market(&sim);
        market.note_held("hot", held(&[("XXBT", "XBT")]));
        settle(&market).await;
        let first_done = Instant::now();
        assert_eq!(sim.calls(Endpoint::Ticker), 1);
        market.note_held("cold", held(&[("XETH", "ETH")]));
        // Started at once, waiting for its time: Kraken allows about one public call a second.
        assert!(market.prices_in_flight.load(Ordering::SeqCst));
        tokio::time::sleep(PUBLIC_CALL_SPACING / 2).await;
        assert_eq!(
            sim.calls(Endpoint::Ticker),
            1,
            "too soon after the previous call"
        );
        settle(&market).await;
        assert_eq!(sim.calls(Endpoint::Ticker), 2);
        assert!(first_done.elapsed() >= PUBLIC_CALL_SPACING);
        assert_eq!(priced(&market), ["ETH", "XBT"]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_asset_whose_price_refresh_failed_waits_for_the_minimum_interval() {
        let sim = SimKraken::start(SimOptions::default()).await.unwrap();
        let market = market(&sim);
        sim.inject(
            Endpoint::Ticker,
            kraken::sim::Fault::Status(502, "bad gateway".into()),
            None,
        );
        market.note_held("hot", held(&[("XXBT", "XBT")]));
        settle(&market).await;
        assert_eq!(sim.calls(Endpoint::Ticker), 1);
        tokio::time::sleep(Duration::from_secs(10)).await;
        market.note_held("hot", held(&[("XXBT", "XBT")]));
        settle(&market).await;
        assert_eq!(
            sim.calls(Endpoint::Ticker),
            1,
            "no retry before the minimum interval"
        );
        tokio::time::advance(MIN_INTERVAL).await;
        market.note_held("hot", held(&[("XXBT", "XBT")]));
        settle(&market).await;
        assert_eq!(sim.calls(Endpoint::Ticker), 2);
    }
}
