//! What Kraken's public endpoints say, shared by every account: asset names, and (with
//! valuation) trading pairs and prices.
//!
//! Owns the schedule of public calls: the Assets list (and AssetPairs) every few hours, prices
//! at most once per refresh interval, each fetched by one caller at a time.
//! Must not: call a private endpoint, or make a scrape wait for a price (scrapes are served the
//! latest price book while a new one is fetched in the background).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::kraken::{AssetTable, KrakenClient};

/// The `account` label of calls to public endpoints, which belong to no account. Account names
/// starting with `_` are refused, so it cannot clash.
pub const PUBLIC_ACCOUNT: &str = "_public";

/// How long to wait before asking for a failed public list again.
const RETRY_AFTER: Duration = Duration::from_secs(5 * 60);

/// Shared public data.
pub struct Market {
    /// A client without credentials, counting its calls under [`PUBLIC_ACCOUNT`].
    client: KrakenClient,
    /// How often the Assets list is fetched again.
    assets_interval: Duration,
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
}

impl Market {
    /// A market that has fetched nothing yet.
    pub fn new(client: KrakenClient, assets_interval: Duration) -> Arc<Self> {
        Arc::new(Self {
            client,
            assets_interval,
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
    pub fn current_assets(&self) -> Arc<AssetTable> {
        Arc::clone(&self.lock().assets)
    }

    /// Whether a price refresh is running (used by tests and the landing page).
    pub fn prices_in_flight(&self) -> bool {
        self.prices_in_flight.load(Ordering::SeqCst)
    }
}
