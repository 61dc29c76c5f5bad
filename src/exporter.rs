//! The running exporter: the current set of accounts, and what one scrape of them shows.
//!
//! Owns the swap of the account set on reload, what configured asset names mean once Kraken's
//! Assets list is known ([`resolve_assets`]: thresholds and watched assets by short name, and the
//! names that are no Kraken asset, logged once each), the watched-asset zeros, and the assembly
//! of one scrape (all accounts for `/metrics`, one for `/probe`).
//! Must not: read configuration or talk HTTP ([`crate::app`] builds account sets and
//! [`crate::web`] serves what this renders), or read `std::time::Instant` (deadlines and the
//! body cache run on tokio's clock, so tests can pause it).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::account::{Account, PendingScrape};
use crate::asset_names::{self, Resolution};
use crate::config::AccountConfig;
use crate::features::{key_info, prices};
use crate::market::Market;
use crate::metrics::{self, AccountView, BuildInfo, ReloadView, RequestMetrics, Scrape};
use crate::process::ProcessStats;
use crate::status::{AccountStatus, LabeledBalance, Snapshot};
use kraken::AssetTable;

/// The tasks of one account (its background loop, its stream): aborted, with any refresh the
/// account has in flight, when the last account set holding them is dropped, so an account
/// replaced by a reload never calls Kraken again.
#[derive(Debug, Default)]
pub struct Tasks {
    /// The account whose in-flight refresh is stopped too.
    pub account: Option<Arc<Account>>,
    /// Its long-running tasks.
    pub handles: Vec<JoinHandle<()>>,
}

impl Drop for Tasks {
    fn drop(&mut self) {
        if let Some(account) = &self.account {
            account.stop();
        }
        for task in &self.handles {
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
    /// (account, name) of every configured asset name already logged as unknown, so each is
    /// logged once per loaded configuration, not on every scrape.
    reported_unknown: Mutex<BTreeSet<(String, String)>>,
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
            reported_unknown: Mutex::new(BTreeSet::new()),
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
        // A reloaded configuration logs its unknown asset names again, once each.
        self.reported_unknown
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
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
            set.market.refresh_system_status_if_due();
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
        let resolved: Vec<ResolvedAssets> = chosen
            .iter()
            .map(|exported| self.resolve_and_report(&exported.config, &assets))
            .collect();
        let views: Vec<AccountView<'_>> = resolved
            .iter()
            .zip(statuses)
            .zip(chosen)
            .map(|((resolved, status), exported)| AccountView {
                status: with_configured(with_watched(status, resolved, &assets), &exported.config),
                min_balance: &resolved.min_balance,
                max_outflow: &resolved.max_outflow,
                unknown_assets: &resolved.unknown,
            })
            .collect();
        let whole = only.is_none();
        // Prices belong to no account: only /metrics carries them, so several /probe targets
        // never duplicate them.
        let prices = whole.then(|| set.market.current_prices()).flatten();
        let system = whole.then(|| set.market.current_system_status()).flatten();
        let reload = whole.then(|| self.reload.view());
        // A little room over the previous size: balances and counters grow slowly.
        let last = self.last_size.load(Ordering::Relaxed);
        let capacity = if whole && last > 0 {
            last + last / 16
        } else {
            4096 + views.len() * 2048
        };
        let process = whole.then(ProcessStats::read).flatten();
        let scrape = Scrape {
            accounts: &views,
            prices: prices.as_deref(),
            system: system.as_ref(),
            reload,
            only_account: only,
            process: process.as_ref(),
        };
        let body = metrics::render_sized(&scrape, &self.requests, &self.build, capacity);
        if whole {
            self.last_size.store(body.len(), Ordering::Relaxed);
        }
        body
    }

    /// Statuses as a scrape would show them (watched assets filled in), without refreshing.
    pub fn statuses(&self) -> Vec<AccountStatus> {
        self.statuses_with_assets()
            .into_iter()
            .map(|(status, _)| status)
            .collect()
    }

    /// Statuses for the landing page, without refreshing, each with what its configured asset
    /// names mean.
    pub fn statuses_with_assets(&self) -> Vec<(AccountStatus, ResolvedAssets)> {
        let set = self.accounts();
        let assets = set.market.current_assets();
        set.accounts
            .iter()
            .map(|a| {
                let resolved = self.resolve_and_report(&a.config, &assets);
                let status = with_configured(
                    with_watched(a.account.status(true), &resolved, &assets),
                    &a.config,
                );
                (status, resolved)
            })
            .collect()
    }

    /// [`resolve_assets`], logging each name that is no Kraken asset the first time it is seen.
    fn resolve_and_report(&self, config: &AccountConfig, assets: &AssetTable) -> ResolvedAssets {
        let resolved = resolve_assets(config, assets);
        if resolved.unknown.is_empty() {
            return resolved;
        }
        let mut reported = self
            .reported_unknown
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (name, nearest) in resolved.unknown.iter().zip(&resolved.nearest) {
            if reported.insert((config.name.clone(), name.clone())) {
                tracing::error!(
                    account = %config.name,
                    asset = %name,
                    "{}",
                    unknown_asset_message(name, nearest.as_deref())
                );
            }
        }
        resolved
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

/// What an account's configured asset names mean against Kraken's Assets list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResolvedAssets {
    /// Short name → lowest acceptable available balance. When two configured names turn out to
    /// be one asset (a raw code and its short name that the offline normalisation did not know),
    /// the higher minimum applies.
    pub min_balance: BTreeMap<String, f64>,
    /// Short name → largest expected withdrawal amount per hour; two names of one asset keep
    /// the lower limit.
    pub max_outflow: BTreeMap<String, f64>,
    /// Short names of watched assets (the `watch` list and the assets with a minimum).
    pub watched: BTreeSet<String>,
    /// Configured names that are no Kraken asset, sorted: exported as
    /// `kraken_config_unknown_asset`, never as a balance.
    pub unknown: Vec<String>,
    /// For each of [`ResolvedAssets::unknown`], the nearest listed short name, if any is close.
    pub nearest: Vec<Option<String>>,
}

/// Resolves an account's `min_balance` and `watch` names against the Assets list. Before the
/// list is known every name is taken as normalised, so nothing is called unknown on a guess.
pub fn resolve_assets(config: &AccountConfig, assets: &AssetTable) -> ResolvedAssets {
    let mut resolved = ResolvedAssets::default();
    let mut unknown: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut resolve = |name: &str| match asset_names::resolve(name, assets) {
        Resolution::Known(short) => Some(short),
        Resolution::Unknown { nearest } => {
            unknown.insert(name.to_owned(), nearest);
            None
        }
    };
    for (name, min) in &config.min_balance {
        if let Some(short) = resolve(name) {
            let entry = resolved.min_balance.entry(short.clone()).or_insert(*min);
            *entry = entry.max(*min);
            resolved.watched.insert(short);
        }
    }
    for name in &config.watch {
        if let Some(short) = resolve(name) {
            resolved.watched.insert(short);
        }
    }
    for (name, max) in &config.max_outflow {
        if let Some(short) = resolve(name) {
            let entry = resolved.max_outflow.entry(short).or_insert(*max);
            *entry = entry.min(*max);
        }
    }
    (resolved.unknown, resolved.nearest) = unknown.into_iter().unzip();
    resolved
}

/// What the log and `check` say about a configured name that is no Kraken asset.
pub fn unknown_asset_message(name: &str, nearest: Option<&str>) -> String {
    let hint = match nearest {
        Some(nearest) => format!("did you mean {nearest}?"),
        None => "no listed asset is spelt like it".to_owned(),
    };
    format!(
        "{name:?} in min_balance or watch is not a Kraken asset ({hint}); it is exported as kraken_config_unknown_asset, not as a balance: use Kraken's short name (XBT), its code (XXBT) or its common name (BTC)"
    )
}

/// Adds a zero balance for every watched asset (the `watch` list and the assets with a
/// `min_balance`) that Kraken did not return, so an emptied wallet reads 0 instead of vanishing,
/// and, when holds are known, a zero available amount for every watched asset without a
/// spendable code. Stale or missing balances stay missing, and nothing is added before the
/// Assets list is known: zero would then be a claim the exporter cannot make.
pub(crate) fn with_watched(
    mut status: AccountStatus,
    resolved: &ResolvedAssets,
    assets: &AssetTable,
) -> AccountStatus {
    let Some(snapshot) = &status.balances else {
        return status;
    };
    if assets.is_empty() {
        // Without the Assets list balances carry raw codes (`XXBT`), so a watched `XBT` cannot
        // be told apart from an asset Kraken omitted: a zero would be a guess.
        return status;
    }
    let missing: Vec<&str> = resolved
        .watched
        .iter()
        .map(String::as_str)
        .filter(|asset| !snapshot.balances.iter().any(|b| b.asset == *asset))
        .collect();
    let unspendable: Vec<&str> = match &snapshot.available {
        Some(available) => resolved
            .watched
            .iter()
            .map(String::as_str)
            .filter(|asset| !available.contains_key(*asset))
            .collect(),
        None => Vec::new(),
    };
    if missing.is_empty() && unspendable.is_empty() {
        return status;
    }
    let holds_known = snapshot.endpoint.reports_holds();
    let mut available = snapshot.available.clone();
    if let Some(available) = &mut available {
        for asset in unspendable {
            available.insert(asset.to_owned(), 0.0);
        }
    }
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
        available,
        ..Snapshot::clone(snapshot)
    }));
    status
}

/// Adds what the account's configuration shows from start-up on, before any answer from Kraken:
/// the permissions its key may hold (while the key is audited) and its minimum total value.
pub(crate) fn with_configured(mut status: AccountStatus, config: &AccountConfig) -> AccountStatus {
    if config.audited {
        let allowed = key_info::Allowed(config.key_policy.clone());
        status.features.push(Arc::new(allowed));
    }
    if !config.min_value.is_empty() {
        let minimum = prices::ValueMinimum(config.min_value.clone());
        status.features.push(Arc::new(minimum));
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use kraken::{AssetInfo, BalanceEndpoint, Endpoint};

    fn table() -> AssetTable {
        AssetTable::from_entries(
            [
                ("XXBT", "XBT"),
                ("ZUSD", "USD"),
                ("XETH", "ETH"),
                ("USDC", "USDC"),
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

    fn config(min_balance: &[(&str, f64)], watch: &[&str]) -> AccountConfig {
        AccountConfig {
            name: "hot".into(),
            credentials: None,
            balance_endpoint: BalanceEndpoint::Auto,
            api_url: None,
            nonce_file: None,
            min_balance: min_balance
                .iter()
                .map(|(asset, min)| ((*asset).to_owned(), *min))
                .collect(),
            watch: watch.iter().map(|asset| (*asset).to_owned()).collect(),
            max_outflow: BTreeMap::new(),
            min_value: BTreeMap::new(),
            key_policy: crate::audit::KeyPolicy::default(),
            audited: true,
        }
    }

    fn status(endpoint: Endpoint, available: Option<&[(&str, f64)]>) -> AccountStatus {
        AccountStatus {
            name: "hot".into(),
            up: true,
            last_success: Some(SystemTime::now()),
            last_error: None,
            balances: Some(Arc::new(Snapshot {
                balances: vec![
                    LabeledBalance {
                        asset: "XBT".into(),
                        code: "XXBT".into(),
                        total: 0.0,
                        hold: endpoint.reports_holds().then_some(0.2),
                    },
                    LabeledBalance {
                        asset: "XBT.F".into(),
                        code: "XBT.F".into(),
                        total: 1.5,
                        hold: endpoint.reports_holds().then_some(0.0),
                    },
                ],
                fetched_at: SystemTime::now(),
                fetched_instant: Instant::now(),
                endpoint,
                available: available.map(|pairs| {
                    pairs
                        .iter()
                        .map(|(asset, amount)| ((*asset).to_owned(), *amount))
                        .collect()
                }),
            })),
            retry_at: None,
            features: Vec::new(),
        }
    }

    #[test]
    fn configured_names_resolve_to_short_names_and_unknown_ones_are_set_apart() {
        // `XETH` is not a legacy code the offline normalisation knows by another spelling here:
        // it resolves through the Assets list.
        let config = config(
            &[("XBT", 0.5), ("ETHH", 1.0), ("XETH", 2.0)],
            &["usdc", "NOPE"],
        );
        let resolved = resolve_assets(&config, &table());
        assert_eq!(
            resolved.min_balance,
            BTreeMap::from([("ETH".to_owned(), 2.0), ("XBT".to_owned(), 0.5)])
        );
        assert_eq!(
            resolved
                .watched
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            ["ETH", "USDC", "XBT"]
        );
        assert_eq!(resolved.unknown, ["ETHH", "NOPE"]);
        assert_eq!(resolved.nearest, [Some("ETH".to_owned()), None]);
        let message = unknown_asset_message("ETHH", Some("ETH"));
        assert!(message.contains("did you mean ETH?"), "{message}");
    }

    #[test]
    fn before_the_assets_list_is_known_no_name_is_called_unknown() {
        let resolved = resolve_assets(&config(&[("ETHH", 1.0)], &[]), &AssetTable::default());
        assert!(resolved.unknown.is_empty());
        assert_eq!(resolved.min_balance["ETHH"], 1.0);
    }

    #[test]
    fn a_threshold_without_a_spendable_balance_reads_0_available_but_never_when_stale() {
        let resolved = resolve_assets(&config(&[("XBT", 0.5), ("USD", 100.0)], &[]), &table());
        let filled = with_watched(
            status(Endpoint::BalanceEx, Some(&[("XBT", 1.3)])),
            &resolved,
            &table(),
        );
        let snapshot = filled.balances.unwrap();
        let available = snapshot.available.as_ref().unwrap();
        assert_eq!(available["XBT"], 1.3, "auto-earn funds kept");
        assert_eq!(
            available["USD"], 0.0,
            "a threshold asset Kraken omits reads 0"
        );
        let usd = snapshot.balances.iter().find(|b| b.asset == "USD").unwrap();
        assert_eq!((usd.code.as_str(), usd.total), ("ZUSD", 0.0));

        let balance_only = with_watched(status(Endpoint::Balance, None), &resolved, &table());
        assert_eq!(
            balance_only.balances.unwrap().available,
            None,
            "holds unknown: nothing about availability is claimed"
        );

        let unlisted = with_watched(
            status(Endpoint::BalanceEx, Some(&[("XBT", 1.3)])),
            &resolved,
            &AssetTable::default(),
        );
        let unlisted = unlisted.balances.unwrap();
        assert!(
            !unlisted.available.as_ref().unwrap().contains_key("USD")
                && !unlisted.balances.iter().any(|b| b.asset == "USD"),
            "no zero is guessed before the Assets list is known"
        );

        let mut stale = status(Endpoint::BalanceEx, Some(&[("XBT", 1.3)]));
        stale.balances = None;
        assert!(with_watched(stale, &resolved, &table()).balances.is_none());
    }
}

/// The body cache on paused time.
#[cfg(test)]
mod cache_tests {
    use super::*;
    use crate::account::tests::account_on;
    use crate::account::{Extras, RefreshPolicy};
    use kraken::BalanceEndpoint;
    use kraken::sim::{SimKraken, SimOptions};

    const STALE_AFTER: Duration = Duration::from_secs(10);

    /// A background-mode exporter of one account on the simulated Kraken, refreshed once.
    async fn background_exporter(sim: &SimKraken) -> Exporter {
        let policy = RefreshPolicy {
            background_interval: Some(Duration::from_secs(3600)),
            stale_after: STALE_AFTER,
            ..RefreshPolicy::default()
        };
        let (account, market, metrics) = account_on(sim, policy, Extras::default());
        account.refresh_now().await;
        let config = AccountConfig {
            name: "default".into(),
            credentials: None,
            balance_endpoint: BalanceEndpoint::Auto,
            api_url: None,
            nonce_file: None,
            min_balance: BTreeMap::new(),
            watch: Vec::new(),
            max_outflow: BTreeMap::new(),
            min_value: BTreeMap::new(),
            key_policy: crate::audit::KeyPolicy::default(),
            audited: false,
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
