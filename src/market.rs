//! What Kraken's public endpoints say, shared by every account: asset names, and (with
//! valuation) trading pairs and prices.
//!
//! Owns the schedule of public calls: the Assets list (and AssetPairs) every few hours, prices
//! at most once per refresh interval, each fetched by one caller at a time.
//! Must not: call a private endpoint, or make a scrape wait for a price (scrapes are served the
//! latest price book while a new one is fetched in the background).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use crate::kraken::{AssetTable, KrakenClient, PairTable};
use crate::metrics::RequestMetrics;
use crate::valuation::{self, PriceBook};

/// The `account` label of calls to public endpoints, which belong to no account. Account names
/// starting with `_` are refused, so it cannot clash.
pub(crate) const PUBLIC_ACCOUNT: &str = "_public";

/// How long to wait before asking for a failed public list again.
const RETRY_AFTER: Duration = Duration::from_secs(5 * 60);

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
    /// A price refresh task is running.
    prices_in_flight: AtomicBool,
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
    /// (code, asset label) of every asset some account holds.
    held: BTreeSet<(String, String)>,
    /// Latest price book and when it was fetched.
    book: Option<(Arc<PriceBook>, Instant)>,
    /// When the latest price refresh started (successful or not).
    prices_attempted: Option<Instant>,
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

    /// Records what an account holds, so prices are fetched for it, and starts a price refresh
    /// when one is due.
    pub(crate) fn note_held(&self, held: Vec<(String, String)>) {
        if self.prices.is_none() {
            return;
        }
        self.lock().held.extend(held);
        self.refresh_prices_if_due();
    }

    /// Starts a price refresh in the background when valuation is on, none is running, and the
    /// latest one started at least the minimum interval ago. Never waits.
    pub(crate) fn refresh_prices_if_due(&self) {
        let Some(policy) = &self.prices else {
            return;
        };
        {
            let state = self.lock();
            if state.held.is_empty()
                || state
                    .prices_attempted
                    .is_some_and(|at| at.elapsed() < policy.min_interval)
            {
                return;
            }
        }
        if self.prices_in_flight.swap(true, Ordering::SeqCst) {
            return;
        }
        self.lock().prices_attempted = Some(Instant::now());
        let Some(market) = self.this.upgrade() else {
            self.prices_in_flight.store(false, Ordering::SeqCst);
            return;
        };
        tokio::spawn(async move {
            market.refresh_prices().await;
            market.prices_in_flight.store(false, Ordering::SeqCst);
        });
    }

    /// Fetches the pair list when due, then the prices of every held asset.
    async fn refresh_prices(&self) {
        let Some(policy) = &self.prices else {
            return;
        };
        let assets = self.assets().await;
        let pairs = self.pairs().await;
        let held: Vec<(String, String)> = self.lock().held.iter().cloned().collect();
        if !assets.is_empty() && valuation::quote_code(&policy.quote, &assets).is_none() {
            tracing::warn!(
                quote = %policy.quote,
                "the valuation quote is not an asset Kraken lists: use Kraken's short name, like USD or EUR; no prices are exported"
            );
        }
        match valuation::fetch_prices(&self.client, &held, &assets, &pairs, &policy.quote).await {
            Ok(book) => {
                if !book.unpriced.is_empty() {
                    tracing::debug!(quote = %book.quote, unpriced = ?book.unpriced, "some held assets have no market in the quote currency");
                }
                self.lock().book = Some((Arc::new(book), Instant::now()));
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

    /// The latest price book, unless it is older than the staleness limit.
    pub(crate) fn current_prices(&self) -> Option<Arc<PriceBook>> {
        let policy = self.prices.as_ref()?;
        self.lock()
            .book
            .as_ref()
            .filter(|(_, at)| at.elapsed() <= policy.stale_after)
            .map(|(book, _)| Arc::clone(book))
    }
}
