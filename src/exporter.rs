//! The running exporter: the current set of accounts, and what one scrape of them shows.
//!
//! Owns the swap of the account set on reload, the watched-asset zeros, and the assembly of one
//! scrape (all accounts for `/metrics`, one for `/probe`).
//! Must not: read configuration or talk HTTP ([`crate::app`] builds account sets and
//! [`crate::web`] serves what this renders), or read `std::time::Instant` (deadlines and the
//! body cache run on tokio's clock, so tests can pause it).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::account::{Account, PendingScrape};
use crate::config::AccountConfig;
use crate::kraken::AssetTable;
use crate::market::Market;
use crate::metrics::{self, AccountView, BuildInfo, ReloadView, RequestMetrics};
use crate::status::{AccountStatus, LabeledBalance, Snapshot};

/// Background tasks of one account; aborted when the last account set holding them is dropped.
#[derive(Debug, Default)]
pub struct Tasks(pub Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// One configured account and its running state.
#[derive(Debug, Clone)]
pub struct ExportedAccount {
    /// Refresh state and cached balances; kept across reloads while the connection is unchanged.
    pub account: Arc<Account>,
    /// Its configuration (thresholds and watched assets may change on reload).
    pub config: AccountConfig,
    /// Its background refresh tasks.
    pub tasks: Arc<Tasks>,
}

/// Everything one configuration exports.
#[derive(Debug)]
pub struct AccountSet {
    /// Accounts in the order configured.
    pub accounts: Vec<ExportedAccount>,
    /// Shared public data.
    pub market: Arc<Market>,
}

impl AccountSet {
    /// The account with this name.
    pub fn find(&self, name: &str) -> Option<&ExportedAccount> {
        self.accounts.iter().find(|a| a.config.name == name)
    }
}

/// Outcome of the latest configuration reload.
#[derive(Debug)]
pub struct ReloadStatus {
    /// Whether the latest reload succeeded (true at start-up).
    ok: AtomicBool,
    /// When the configuration was last loaded successfully.
    last_success: Mutex<SystemTime>,
}

impl Default for ReloadStatus {
    fn default() -> Self {
        Self {
            ok: AtomicBool::new(true),
            last_success: Mutex::new(SystemTime::now()),
        }
    }
}

impl ReloadStatus {
    /// Records a reload.
    pub fn record(&self, ok: bool) {
        self.ok.store(ok, Ordering::SeqCst);
        if ok {
            *self.last_success.lock().unwrap_or_else(|e| e.into_inner()) = SystemTime::now();
        }
    }

    fn view(&self) -> ReloadView {
        ReloadView {
            ok: self.ok.load(Ordering::SeqCst),
            last_success: *self.last_success.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }
}

/// A request to reload the configuration, answered with the outcome.
pub type ReloadRequest = oneshot::Sender<Result<(), String>>;

/// What the HTTP front serves.
pub struct Exporter {
    /// The current account set; replaced whole on reload.
    set: RwLock<Arc<AccountSet>>,
    /// Counters of calls to Kraken.
    pub requests: Arc<RequestMetrics>,
    /// `kraken_exporter_build_info` labels.
    pub build: BuildInfo,
    /// Path of the exposition (`/metrics`).
    pub telemetry_path: String,
    /// Balances come from the simulated Kraken; the landing page says so.
    pub demo: bool,
    /// Refreshes run in the background; scrapes never start a call.
    pub background: bool,
    /// Outcome of the latest reload.
    pub reload: ReloadStatus,
    /// Where `POST /-/reload` sends its request; `None` when nothing can reload.
    reloads: Option<mpsc::Sender<ReloadRequest>>,
    /// `--web.enable-lifecycle`: `POST /-/reload` may reload (SIGHUP always may).
    lifecycle: bool,
    /// Background mode: the latest `/metrics` body, reused while nothing changed.
    cached: Mutex<Option<CachedBody>>,
    /// Size of the latest full exposition, so the next is written into a buffer that fits.
    last_size: AtomicUsize,
}

/// A rendered `/metrics` body and how long it stays current.
struct CachedBody {
    /// [`RequestMetrics::generation`] when it was rendered.
    generation: u64,
    /// Time-driven changes (balances going stale) show within this bound.
    until: Instant,
    /// The exposition.
    body: Bytes,
}

/// How long a cached body may be reused when nothing changed: the bound on how late a snapshot
/// crossing `--refresh.stale-after` disappears.
const CACHE_FOR: Duration = Duration::from_secs(1);

impl Exporter {
    /// An exporter serving `set`.
    pub fn new(
        set: AccountSet,
        requests: Arc<RequestMetrics>,
        telemetry_path: String,
        demo: bool,
        background: bool,
        reloads: Option<mpsc::Sender<ReloadRequest>>,
        lifecycle: bool,
    ) -> Self {
        Self {
            set: RwLock::new(Arc::new(set)),
            requests,
            build: BuildInfo::current(),
            telemetry_path,
            demo,
            background,
            reload: ReloadStatus::default(),
            reloads,
            lifecycle,
            cached: Mutex::new(None),
            last_size: AtomicUsize::new(0),
        }
    }

    /// The current account set.
    pub fn accounts(&self) -> Arc<AccountSet> {
        Arc::clone(&self.set.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Replaces the account set; scrapes in progress finish with the old one. Assets held only
    /// by removed accounts are no longer priced.
    pub fn replace(&self, set: AccountSet) {
        set.market
            .retain_holders(|name| set.accounts.iter().any(|a| a.config.name == name));
        *self.set.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
        self.requests.touch();
    }

    /// Whether `POST /-/reload` may reload (`--web.enable-lifecycle`).
    pub fn lifecycle_enabled(&self) -> bool {
        self.lifecycle
    }

    /// Asks the application to reload its configuration and waits for the outcome.
    pub async fn request_reload(&self) -> Result<(), String> {
        let Some(reloads) = &self.reloads else {
            return Err("this exporter cannot reload its configuration".into());
        };
        let (tx, rx) = oneshot::channel();
        reloads
            .send(tx)
            .await
            .map_err(|_| "the exporter is shutting down".to_owned())?;
        rx.await
            .map_err(|_| "the reload was interrupted".to_owned())?
    }

    /// The exposition for one scrape: every account, or only `only` (`/probe`). Refreshes what
    /// is due, waiting at most until `deadline`; accounts refresh concurrently. A `/metrics`
    /// scrape that starts or joins no refresh (every scrape in background mode, and in on-scrape
    /// mode every scrape within the minimum interval) reuses the previous body while nothing it
    /// shows has changed (for at most a second, so time-driven changes show too).
    pub async fn render(&self, deadline: Instant, only: Option<&str>) -> Bytes {
        let set = self.accounts();
        let chosen: Vec<&ExportedAccount> = set
            .accounts
            .iter()
            .filter(|a| only.is_none_or(|name| a.config.name == name))
            .collect();
        let pending: Vec<PendingScrape> = chosen.iter().map(|a| a.account.begin_scrape()).collect();
        let whole = only.is_none();
        if whole && !self.background {
            set.market.refresh_prices_if_due();
        }
        // A scrape that waits for no refresh shows only what is already known: while nothing
        // changed (same generation), the body rendered last time is that same exposition.
        let reusable = whole && pending.iter().all(PendingScrape::is_idle);
        let generation = self.requests.generation();
        if reusable && let Some(body) = self.cached_body(generation) {
            return body;
        }
        let body = Bytes::from(
            self.render_now(&set, &chosen, pending, deadline, only)
                .await,
        );
        if reusable {
            *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = Some(CachedBody {
                generation,
                until: Instant::now() + CACHE_FOR,
                body: body.clone(),
            });
        }
        body
    }

    /// The cached `/metrics` body, if it was rendered at `generation` and is still current.
    fn cached_body(&self, generation: u64) -> Option<Bytes> {
        self.cached
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .filter(|cached| cached.generation == generation && Instant::now() < cached.until)
            .map(|cached| cached.body.clone())
    }

    /// Renders the exposition of `chosen` from the current state, waiting for their pending
    /// refreshes at most until `deadline`.
    async fn render_now(
        &self,
        set: &AccountSet,
        chosen: &[&ExportedAccount],
        pending: Vec<PendingScrape>,
        deadline: Instant,
        only: Option<&str>,
    ) -> Vec<u8> {
        let mut statuses = Vec::with_capacity(chosen.len());
        for (exported, pending) in chosen.iter().zip(pending) {
            statuses.push(exported.account.finish_scrape(pending, deadline).await);
        }
        let assets = set.market.current_assets();
        let views: Vec<AccountView<'_>> = chosen
            .iter()
            .zip(statuses)
            .map(|(exported, status)| AccountView {
                status: with_watched(status, &exported.config, &assets),
                min_balance: &exported.config.min_balance,
            })
            .collect();
        let whole = only.is_none();
        // Prices belong to no account: only /metrics carries them, so several /probe targets
        // never duplicate them.
        let prices = whole.then(|| set.market.current_prices()).flatten();
        let reload = whole.then(|| self.reload.view());
        // A little room over the previous size: balances and counters grow slowly.
        let last = self.last_size.load(Ordering::Relaxed);
        let capacity = if whole && last > 0 {
            last + last / 16
        } else {
            4096 + views.len() * 2048
        };
        let body = metrics::render_sized(
            &views,
            prices.as_deref(),
            reload,
            only,
            &self.requests,
            &self.build,
            capacity,
        );
        if whole {
            self.last_size.store(body.len(), Ordering::Relaxed);
        }
        body
    }

    /// Statuses for the landing page, without refreshing.
    pub fn statuses(&self) -> Vec<AccountStatus> {
        let set = self.accounts();
        let assets = set.market.current_assets();
        set.accounts
            .iter()
            .map(|a| with_watched(a.account.status(true), &a.config, &assets))
            .collect()
    }

    /// Whether every account has had a successful refresh.
    pub fn first_unready(&self) -> Option<String> {
        self.accounts()
            .accounts
            .iter()
            .find(|a| !a.account.has_succeeded())
            .map(|a| a.config.name.clone())
    }
}

/// Adds a zero balance for every watched asset (the `watch` list and the assets with a
/// `min_balance`) that Kraken did not return, so an emptied wallet reads 0 instead of vanishing.
/// Stale or missing balances stay missing: zero would then be a claim the exporter cannot make.
pub(crate) fn with_watched(
    mut status: AccountStatus,
    config: &AccountConfig,
    assets: &AssetTable,
) -> AccountStatus {
    let Some(snapshot) = &status.balances else {
        return status;
    };
    let watched: BTreeMap<&str, ()> = config
        .watch
        .iter()
        .map(String::as_str)
        .chain(config.min_balance.keys().map(String::as_str))
        .map(|asset| (asset, ()))
        .collect();
    let missing: Vec<&str> = watched
        .keys()
        .copied()
        .filter(|asset| !snapshot.balances.iter().any(|b| b.asset == *asset))
        .collect();
    if missing.is_empty() {
        return status;
    }
    let holds_known = snapshot.endpoint.reports_holds();
    let mut balances = snapshot.balances.clone();
    for asset in missing {
        balances.push(LabeledBalance {
            asset: asset.to_owned(),
            code: assets
                .code_for_altname(asset)
                .map_or_else(|| asset.to_owned(), str::to_owned),
            total: 0.0,
            hold: holds_known.then_some(0.0),
        });
    }
    status.balances = Some(Arc::new(Snapshot {
        balances,
        ..Snapshot::clone(snapshot)
    }));
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::{Extras, RefreshPolicy};
    use crate::kraken::client::http_client;
    use crate::kraken::nonce::{NonceSource, SystemClock};
    use crate::kraken::sim::{SimKraken, SimOptions};
    use crate::kraken::{BalanceEndpoint, ClientOptions, KrakenClient};

    const STALE_AFTER: Duration = Duration::from_secs(10);

    /// A background-mode exporter of one account on the simulated Kraken, refreshed once.
    async fn background_exporter(sim: &SimKraken) -> Exporter {
        let metrics = Arc::new(RequestMetrics::new());
        let options = ClientOptions {
            api_url: sim.url(),
            timeout: Duration::from_secs(5),
            balance_endpoint: BalanceEndpoint::Auto,
        };
        let http = http_client(options.timeout).unwrap();
        let public = KrakenClient::public(
            http.clone(),
            options.clone(),
            "_public".into(),
            metrics.clone(),
        );
        let market = Market::new(public, Duration::from_secs(3600), None, metrics.clone());
        let client = KrakenClient::new(
            http,
            options,
            sim.credentials(),
            NonceSource::new(Box::new(SystemClock)),
            "default".into(),
            metrics.clone(),
        );
        let policy = RefreshPolicy {
            background_interval: Some(Duration::from_secs(3600)),
            stale_after: STALE_AFTER,
            ..RefreshPolicy::default()
        };
        let account = Account::new(
            client,
            policy,
            Extras::default(),
            Arc::clone(&market),
            metrics.clone(),
        );
        account.refresh_now().await;
        let config = AccountConfig {
            name: "default".into(),
            credentials: None,
            balance_endpoint: BalanceEndpoint::Auto,
            api_url: None,
            nonce_file: None,
            min_balance: BTreeMap::new(),
            watch: Vec::new(),
        };
        let set = AccountSet {
            accounts: vec![ExportedAccount {
                account,
                config,
                tasks: Arc::new(Tasks::default()),
            }],
            market,
        };
        Exporter::new(set, metrics, "/metrics".into(), false, true, None, false)
    }

    fn shows_balances(body: &Bytes) -> bool {
        String::from_utf8_lossy(body).contains("kraken_balance{")
    }

    /// Time is paused: the cached body's lifetime and the staleness limit are crossed exactly.
    #[tokio::test(start_paused = true)]
    async fn a_cached_body_is_reused_for_at_most_its_lifetime() {
        let sim = SimKraken::start(SimOptions::default()).await.unwrap();
        let _clock = crate::account::tests::pace_the_clock();
        let exporter = background_exporter(&sim).await;
        let fetched = Instant::now();
        let deadline = || Instant::now() + Duration::from_secs(5);
        // Rendered half a second before the balances go stale.
        tokio::time::advance(STALE_AFTER - Duration::from_millis(500)).await;
        let first = exporter.render(deadline(), None).await;
        assert!(shows_balances(&first));
        // Stale now, but nothing changed and the cached body is younger than CACHE_FOR.
        tokio::time::advance(Duration::from_millis(600)).await;
        assert!(fetched.elapsed() > STALE_AFTER);
        let cached = exporter.render(deadline(), None).await;
        assert_eq!(cached, first, "served from the cache");
        // Past CACHE_FOR the body is rendered again, and the stale balances are gone.
        tokio::time::advance(CACHE_FOR).await;
        let fresh = exporter.render(deadline(), None).await;
        assert!(
            !shows_balances(&fresh),
            "{}",
            String::from_utf8_lossy(&fresh)
        );
    }
}
