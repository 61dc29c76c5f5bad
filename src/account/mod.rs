//! When Kraken is called, and what the exporter knows about each account between calls.
//!
//! Owns [`Account`]: one account's client and state, the refresh itself (balances, then every
//! other feature that is due, in one task so calls with one key never overlap), single-flight
//! (concurrent scrapes share one call), the optional background loop, and the staleness limit
//! after which balances are dropped. The settings and the backoff are in [`policy`]; the
//! status it reports is [`crate::status`]; the features it runs are [`crate::features`]
//! [`Source`]s, of which it knows nothing but their list.
//! Must not: parse Kraken bodies or render metrics, know any feature but balances, or read
//! `std::time::Instant` (its clock is tokio's, so tests can pause it). A refresh runs in its
//! own task, so a scrape that gives up waiting never cancels a call in flight.

pub mod policy;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::Instant;

use kraken::client::BalanceAnswer;
use kraken::{AssetTable, Endpoint, KrakenClient, KrakenError, Reason};

use crate::features::{BoxFuture, CallContext, FeatureView, Source, SourceHost, balances};
use crate::market::Market;
use crate::metrics::RequestMetrics;
use crate::status::{AccountStatus, Snapshot};

pub use crate::features::Extras;
pub use policy::{BackoffPolicy, RefreshPolicy, backoff};

/// The result of the latest refresh.
#[derive(Debug, Clone)]
struct Outcome {
    /// When it finished.
    at: Instant,
    /// `None` on success.
    error: Option<(Reason, String)>,
}

/// Mutable state of one account, behind one mutex that is never held across an await.
#[derive(Default)]
struct State {
    /// Latest successful balances.
    snapshot: Option<Arc<Snapshot>>,
    /// Latest finished refresh.
    last_outcome: Option<Outcome>,
    /// A refresh task is running; new requests join it instead of starting another.
    in_flight: bool,
    /// A scrape gave up waiting for the refresh in flight: until it ends, every scrape reports
    /// the account down, not only the one that waited (no `kraken_up` flapping 0, 1, 1 while
    /// Kraken hangs).
    overdue: bool,
    /// Failures since the last success, for the exponential backoff.
    consecutive_failures: u32,
    /// No call to Kraken before this instant.
    backoff_until: Option<Instant>,
    /// How many refreshes have started, so a pushed event can ask for one that started after
    /// it (a count, not a time: two moments can share an instant).
    started: u64,
    /// The refresh task in flight, so [`Account::stop`] can end it.
    refresh_task: Option<tokio::task::AbortHandle>,
    /// The account was replaced or removed: it starts no refresh again.
    stopped: bool,
}

/// A refresh a scrape may wait for; see [`Account::begin_scrape`].
#[derive(Debug)]
pub struct PendingScrape(Option<watch::Receiver<u64>>);

impl PendingScrape {
    /// Whether the scrape has no refresh to wait for, so what it shows is only what is known
    /// already (the exporter may then serve a body rendered earlier from the same state).
    pub fn is_idle(&self) -> bool {
        self.0.is_none()
    }
}

/// One Kraken account: its client, its policy and what is known about it.
pub struct Account {
    /// The client signing this account's calls.
    client: KrakenClient,
    /// Shared public data: asset names.
    market: Arc<Market>,
    /// Told after every change to what the exposition shows (see [`RequestMetrics::touch`]),
    /// so a cached body is not served as current.
    changes: Arc<RequestMetrics>,
    /// When to call.
    policy: RefreshPolicy,
    /// Every feature besides balances, in the order their calls follow a balance call.
    sources: Vec<Arc<dyn Source>>,
    /// What is known; see [`State`].
    state: Mutex<State>,
    /// Bumped after every finished refresh; waiters subscribe before the refresh can finish.
    finished: watch::Sender<u64>,
    /// Held by whoever calls Kraken with this account's key (a refresh, a stream's token
    /// request), so calls with one key never overlap and their nonces reach Kraken in order.
    key: Arc<tokio::sync::Mutex<()>>,
    /// A pushed source (the balances stream) is delivering this account's changes, so the
    /// periodic poll may slow down to [`RefreshPolicy::stream_interval`].
    pushed: AtomicBool,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("name", &self.client.account())
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Resets `in_flight` and wakes waiters when a refresh task ends, even by panic.
struct InFlightGuard<'a>(&'a Account);

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.in_flight = false;
        state.overdue = false;
        state.refresh_task = None;
        drop(state);
        self.0.finished.send_modify(|generation| *generation += 1);
    }
}

impl Account {
    /// An account that has not been refreshed yet. `changes` is touched after every refresh.
    pub fn new(
        client: KrakenClient,
        policy: RefreshPolicy,
        extras: Extras,
        market: Arc<Market>,
        changes: Arc<RequestMetrics>,
    ) -> Arc<Self> {
        Self::sharing_key(client, policy, extras, market, changes, Arc::default())
    }

    /// Like [`Account::new`], with the call lock of its API key shared with any other account
    /// object using the same key (the one a reload is replacing), so their calls never overlap.
    pub(crate) fn sharing_key(
        client: KrakenClient,
        policy: RefreshPolicy,
        extras: Extras,
        market: Arc<Market>,
        changes: Arc<RequestMetrics>,
        key: Arc<tokio::sync::Mutex<()>>,
    ) -> Arc<Self> {
        let sources = extras.sources(policy.stale_after);
        Arc::new(Self {
            client,
            market,
            changes,
            policy,
            sources,
            state: Mutex::new(State::default()),
            finished: watch::Sender::new(0),
            key,
            pushed: AtomicBool::new(false),
        })
    }

    /// The `account` label.
    pub fn name(&self) -> &str {
        self.client.account()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The private endpoints this account's features besides balances may call, so their
    /// counters exist at 0 from the start.
    pub(crate) fn feature_endpoints(&self) -> Vec<Endpoint> {
        self.sources
            .iter()
            .flat_map(|source| source.endpoints().iter().copied())
            .collect()
    }

    /// Stops the account for good: no refresh starts again, and the one in flight (started by
    /// a scrape, so owned by no one else) is aborted, so an account a reload replaced never
    /// calls Kraken with the key again.
    pub(crate) fn stop(&self) {
        let mut state = self.lock();
        state.stopped = true;
        if let Some(task) = state.refresh_task.take() {
            task.abort();
        }
    }

    /// Whether a refresh has finished, successfully or not.
    pub(crate) fn has_outcome(&self) -> bool {
        self.lock().last_outcome.is_some()
    }

    /// Whether at least one refresh has succeeded (readiness).
    pub fn has_succeeded(&self) -> bool {
        self.lock().snapshot.is_some()
    }

    /// Starts a refresh unless one is running, the minimum interval has not passed, or a backoff
    /// is in force. Returns a receiver that changes when the running or started refresh ends,
    /// or `None` when the current snapshot is to be used as it is.
    fn start_refresh_if_due(
        self: &Arc<Self>,
        min_interval: Duration,
    ) -> Option<watch::Receiver<u64>> {
        let now = Instant::now();
        let mut state = self.lock();
        if state.stopped {
            return None;
        }
        if state.in_flight {
            return Some(self.finished.subscribe());
        }
        if state.backoff_until.is_some_and(|until| now < until) {
            return None;
        }
        if state
            .last_outcome
            .as_ref()
            .is_some_and(|o| now.duration_since(o.at) < min_interval)
        {
            return None;
        }
        state.in_flight = true;
        state.started += 1;
        let receiver = self.finished.subscribe();
        let account = Arc::clone(self);
        // Spawned under the lock, so the handle is stored before the task can end and clear it.
        let task = tokio::spawn(async move { account.run_refresh().await });
        state.refresh_task = Some(task.abort_handle());
        drop(state);
        Some(receiver)
    }

    /// The task body of one refresh: the asset names (fetched if due), then balances, then the
    /// new state.
    async fn run_refresh(&self) {
        let _guard = InFlightGuard(self);
        let _key = self.key.lock().await;
        let assets = self.market.assets().await;
        let result = balances::fetch(&self.client).await;
        let now = Instant::now();
        let held = self.record(result, now, &assets);
        self.changes.touch();
        if let Some(held) = held {
            self.market.note_held(self.name(), held);
            self.market.refresh_system_status_if_due();
            // The other features' calls run in this same task, after the balance call, so
            // calls with this key never overlap and their nonces reach Kraken in order.
            let views = SourceHost::views(self);
            let call = CallContext {
                client: &self.client,
                assets: &assets,
                views: &views,
            };
            for source in &self.sources {
                source.poll_if_due(self.name(), call).await;
            }
            self.changes.touch();
        }
    }

    /// Stores the outcome of a balance call; on success returns the held (code, asset) pairs.
    fn record(
        &self,
        result: Result<BalanceAnswer, KrakenError>,
        now: Instant,
        assets: &AssetTable,
    ) -> Option<Vec<(String, String)>> {
        match result {
            Ok(answer) => Some(self.record_success(answer, now, assets)),
            Err(error) => {
                self.record_failure(&error, now);
                None
            }
        }
    }

    /// Stores a successful balance answer as the new snapshot; returns the held (code, asset)
    /// pairs.
    fn record_success(
        &self,
        answer: BalanceAnswer,
        now: Instant,
        assets: &AssetTable,
    ) -> Vec<(String, String)> {
        let snapshot = balances::snapshot(answer, assets, now);
        let held = snapshot
            .balances
            .iter()
            .map(|b| (b.code.clone(), b.asset.clone()))
            .collect();
        tracing::debug!(
            account = %self.name(),
            endpoint = snapshot.endpoint.as_str(),
            assets = snapshot.balances.len(),
            "balances refreshed"
        );
        let mut state = self.lock();
        state.snapshot = Some(Arc::new(snapshot));
        if state.consecutive_failures > 0 {
            tracing::info!(account = %self.name(), "refresh succeeded again");
        }
        state.consecutive_failures = 0;
        state.backoff_until = None;
        state.last_outcome = Some(Outcome {
            at: now,
            error: None,
        });
        held
    }

    /// Stores a failed balance call and starts the backoff it calls for.
    fn record_failure(&self, error: &KrakenError, now: Instant) {
        let mut state = self.lock();
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        let wait = backoff(
            error,
            state.consecutive_failures,
            self.policy.min_interval,
            self.policy.backoff,
        );
        state.backoff_until = Some(now + wait);
        let reason = error.reason();
        tracing::warn!(
            account = %self.name(),
            reason = %reason,
            error = %error,
            retry_in = ?wait,
            advice = reason.advice(),
            "refreshing balances failed"
        );
        state.last_outcome = Some(Outcome {
            at: now,
            error: Some((reason, error.to_string())),
        });
    }

    /// Waits for the refresh a scrape asked for, at most until `deadline`; returns whether it
    /// finished in time.
    async fn wait(receiver: Option<watch::Receiver<u64>>, deadline: Instant) -> bool {
        let Some(mut receiver) = receiver else {
            return true;
        };
        matches!(
            tokio::time::timeout_at(deadline, receiver.changed()).await,
            Ok(Ok(()))
        )
    }

    /// First half of a scrape: in on-scrape mode, starts a refresh when the minimum interval has
    /// passed, or joins the one running unless the cached balances are fresh enough (at most
    /// twice the minimum interval old, and the latest refresh succeeded); in background mode,
    /// does nothing (scrapes never wait for Kraken there). Starting every account's refresh
    /// before waiting on any lets them run concurrently.
    pub fn begin_scrape(self: &Arc<Self>) -> PendingScrape {
        if self.policy.background_interval.is_some() {
            return PendingScrape(None);
        }
        {
            // A refresh started by another scrape is joined only when the cached balances are
            // not fresh enough to serve: a scrape never waits on Kraken for data it already has.
            let state = self.lock();
            let fresh = state
                .snapshot
                .as_ref()
                .is_some_and(|s| s.fetched_instant.elapsed() <= self.poll_interval() * 2);
            let healthy = state
                .last_outcome
                .as_ref()
                .is_some_and(|o| o.error.is_none());
            if state.in_flight && fresh && healthy {
                return PendingScrape(None);
            }
        }
        PendingScrape(self.start_refresh_if_due(self.poll_interval()))
    }

    /// Second half of a scrape: waits for the refresh at most until `deadline`, then reports.
    pub async fn finish_scrape(&self, pending: PendingScrape, deadline: Instant) -> AccountStatus {
        let in_time = Self::wait(pending.0, deadline).await;
        if !in_time {
            let mut state = self.lock();
            state.overdue = state.in_flight;
        }
        self.status(in_time)
    }

    /// Refreshes now (joining one in flight), unless a backoff is in force, and waits for it.
    /// Used at start-up, by the background loop and by `check`.
    pub(crate) async fn refresh_now(self: &Arc<Self>) {
        let receiver = self.start_refresh_if_due(Duration::ZERO);
        Self::wait(receiver, Instant::now() + Duration::from_secs(24 * 3600)).await;
    }

    /// Runs the background refresh loop until the task is dropped. While a pushed source
    /// delivers the account's changes, ticks closer than the stream interval to the latest
    /// refresh are skipped.
    pub(crate) async fn run_background(self: Arc<Self>, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let pushed = self.pushed.load(Ordering::Relaxed);
            let wait = self.poll_interval().saturating_sub(interval);
            let recent = pushed
                && self
                    .lock()
                    .last_outcome
                    .as_ref()
                    .is_some_and(|o| o.at.elapsed() < wait);
            if !recent {
                self.refresh_now().await;
            }
        }
    }

    /// How often balances are polled now: the minimum interval, or the slower stream interval
    /// while a pushed source delivers every change (events then trigger refreshes of their own).
    fn poll_interval(&self) -> Duration {
        if self.pushed.load(Ordering::Relaxed) {
            // Never so slow that balances would go stale between two polls.
            self.policy
                .stream_interval
                .min(self.policy.stale_after / 2)
                .max(self.policy.min_interval)
        } else {
            self.policy.min_interval
        }
    }

    /// Makes sure a refresh that started after the moment `mark` was taken (see
    /// [`SourceHost::refresh_mark`]) has finished, starting one if none has (joining one in
    /// flight first), unless a backoff is in force: a pushed event (a deposit, a withdrawal) is
    /// on `/metrics` with the meaning REST gives it (codes, holds, spendable amounts), never
    /// guessed from the event.
    async fn refresh_after(self: &Arc<Self>, mark: u64) {
        loop {
            let running = {
                let state = self.lock();
                if !state.in_flight && state.started > mark {
                    return;
                }
                state.in_flight.then(|| self.finished.subscribe())
            };
            let far = Instant::now() + Duration::from_secs(24 * 3600);
            match running {
                Some(receiver) => {
                    Self::wait(Some(receiver), far).await;
                }
                None => {
                    let Some(receiver) = self.start_refresh_if_due(Duration::ZERO) else {
                        return; // backing off: the regular schedule resumes after it
                    };
                    Self::wait(Some(receiver), far).await;
                    return;
                }
            }
        }
    }

    /// What is known now, without calling Kraken. `in_time` is false when the caller gave up
    /// waiting for a refresh, which reports the account as down for that scrape.
    pub fn status(&self, in_time: bool) -> AccountStatus {
        let state = self.lock();
        let error = state.last_outcome.as_ref().and_then(|o| o.error.clone());
        let up = in_time
            && !state.overdue
            && state
                .last_outcome
                .as_ref()
                .is_some_and(|o| o.error.is_none());
        let balances = state
            .snapshot
            .as_ref()
            .filter(|s| s.fetched_instant.elapsed() <= self.policy.stale_after)
            .cloned();
        let retry_at = state.backoff_until.and_then(|until| {
            let wait = until.checked_duration_since(Instant::now())?;
            Some(SystemTime::now() + wait)
        });
        AccountStatus {
            name: self.name().to_owned(),
            up,
            last_success: state.snapshot.as_ref().map(|s| s.fetched_at),
            last_error: error,
            balances,
            retry_at,
            features: self
                .sources
                .iter()
                .filter_map(|source| source.view(Instant::now()))
                .collect(),
        }
    }
}

impl Account {
    /// Starts the tasks of the account's pushed sources (the balances stream); the caller owns
    /// the handles and aborts them when the account is replaced or removed.
    pub(crate) fn start_sources(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let host: Arc<dyn SourceHost> = Arc::clone(self) as Arc<dyn SourceHost>;
        self.sources
            .iter()
            .filter_map(|source| source.start(Arc::clone(&host)))
            .collect()
    }
}

impl SourceHost for Account {
    fn name(&self) -> &str {
        self.client.account()
    }

    fn client(&self) -> &KrakenClient {
        &self.client
    }

    fn lock_key(&self) -> BoxFuture<'_, tokio::sync::MutexGuard<'_, ()>> {
        Box::pin(self.key.lock())
    }

    fn refresh_mark(&self) -> u64 {
        self.lock().started
    }

    fn refresh_after(self: Arc<Self>, mark: u64) -> BoxFuture<'static> {
        Box::pin(async move { Account::refresh_after(&self, mark).await })
    }

    fn set_pushed(&self, pushed: bool) {
        self.pushed.store(pushed, Ordering::Relaxed);
    }

    fn views(&self) -> Vec<Arc<dyn FeatureView>> {
        let now = Instant::now();
        self.sources
            .iter()
            .filter_map(|source| source.view(now))
            .collect()
    }

    fn has_succeeded(&self) -> bool {
        Account::has_succeeded(self)
    }

    fn assets(&self) -> Arc<AssetTable> {
        self.market.current_assets()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::features::earn::EarnAllocations;
    use kraken::client::http_client;
    use kraken::nonce::{NonceSource, SystemClock};
    use kraken::sim::{Fault, SimKraken, SimOptions};
    use kraken::{BalanceEndpoint, ClientOptions, Endpoint};

    const MIN_INTERVAL: Duration = Duration::from_secs(10);
    const STALE_AFTER: Duration = Duration::from_secs(300);

    /// An account on the simulated Kraken with the production policy (no scaled backoffs).
    fn account(sim: &SimKraken) -> Arc<Account> {
        account_with(sim, Extras::default())
    }

    /// Like [`account`], with the given extra calls.
    fn account_with(sim: &SimKraken, extras: Extras) -> Arc<Account> {
        let policy = RefreshPolicy {
            min_interval: MIN_INTERVAL,
            stale_after: STALE_AFTER,
            ..RefreshPolicy::default()
        };
        account_on(sim, policy, extras).0
    }

    /// An account named `default` on the simulated Kraken with `policy` and `extras`, its market
    /// (a public client on the same sim, no prices) and the counters both report to.
    pub(crate) fn account_on(
        sim: &SimKraken,
        policy: RefreshPolicy,
        extras: Extras,
    ) -> (Arc<Account>, Arc<Market>, Arc<RequestMetrics>) {
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
            Arc::new(NonceSource::new(Box::new(SystemClock))),
            "default".into(),
            metrics.clone(),
        );
        let account = Account::new(client, policy, extras, Arc::clone(&market), metrics.clone());
        (account, market, metrics)
    }

    /// Time is paused, and tokio moves a paused clock to the next timer whenever nothing is
    /// runnable: this timer keeps each such move to a millisecond, so an answer still in flight
    /// on loopback never lets a scrape's deadline fire early.
    pub(crate) fn pace_the_clock() -> tokio::task::JoinHandle<()> {
        tokio::spawn(async {
            loop {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    }

    async fn scrape(account: &Arc<Account>) -> AccountStatus {
        let pending = account.begin_scrape();
        account
            .finish_scrape(pending, Instant::now() + Duration::from_secs(5))
            .await
    }

    #[tokio::test(start_paused = true)]
    async fn the_minimum_interval_and_the_backoff_hold_kraken_off_for_their_full_length() {
        let sim = SimKraken::start(SimOptions::default()).await.unwrap();
        let _clock = pace_the_clock();
        let account = account(&sim);
        let calls = || sim.calls(Endpoint::BalanceEx);
        account.refresh_now().await;
        assert_eq!(calls(), 1);
        assert!(scrape(&account).await.up);
        assert_eq!(calls(), 1, "inside the minimum interval");
        tokio::time::advance(MIN_INTERVAL).await;
        assert!(scrape(&account).await.up);
        assert_eq!(calls(), 2);

        sim.inject(
            Endpoint::BalanceEx,
            Fault::KrakenError("EAPI:Rate limit exceeded".into()),
            None,
        );
        tokio::time::advance(MIN_INTERVAL).await;
        let status = scrape(&account).await;
        assert!(!status.up);
        assert_eq!(status.last_error.unwrap().0, Reason::RateLimited);
        assert!(status.balances.is_some(), "the last good balances are kept");
        assert_eq!(calls(), 3);
        // A rate limit waits 30 s, whatever the scrapes.
        tokio::time::advance(Duration::from_secs(29)).await;
        scrape(&account).await;
        assert_eq!(calls(), 3, "called again during the backoff");
        tokio::time::advance(Duration::from_secs(1)).await;
        scrape(&account).await;
        assert_eq!(calls(), 4);
        // The second failure in a row doubles it.
        tokio::time::advance(Duration::from_secs(59)).await;
        scrape(&account).await;
        assert_eq!(calls(), 4);
        sim.clear_faults();
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(scrape(&account).await.up, "recovered by itself");
        assert_eq!(calls(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn balances_go_stale_after_their_limit_while_kraken_fails() {
        let sim = SimKraken::start(SimOptions::default()).await.unwrap();
        let _clock = pace_the_clock();
        let account = account(&sim);
        account.refresh_now().await;
        let fetched = Instant::now();
        sim.inject(
            Endpoint::BalanceEx,
            Fault::Status(502, "bad gateway".into()),
            None,
        );
        tokio::time::advance(STALE_AFTER - Duration::from_secs(1)).await;
        let status = scrape(&account).await;
        assert!(!status.up);
        assert!(status.balances.is_some(), "not stale yet");
        tokio::time::advance(fetched + STALE_AFTER + Duration::from_secs(1) - Instant::now()).await;
        let status = account.status(true);
        assert!(status.balances.is_none(), "stale balances are dropped");
        assert!(status.last_success.is_some());
    }

    /// An account refreshed once, whose next BalanceEx hangs, one minimum interval later (so
    /// the next scrape starts that call).
    async fn refreshed_then_hanging() -> (SimKraken, Arc<Account>) {
        let sim = SimKraken::start(SimOptions::default()).await.unwrap();
        let clock = pace_the_clock();
        let account = account(&sim);
        account.refresh_now().await;
        sim.inject(Endpoint::BalanceEx, Fault::Hang, None);
        tokio::time::advance(MIN_INTERVAL).await;
        clock.abort();
        (sim, account)
    }

    #[tokio::test(start_paused = true)]
    async fn a_scrape_gives_up_at_its_deadline_and_the_refresh_carries_on() {
        let (_sim, account) = refreshed_then_hanging().await;
        let _clock = pace_the_clock();
        let started = Instant::now();
        let pending = account.begin_scrape();
        let status = account
            .finish_scrape(pending, started + Duration::from_secs(2))
            .await;
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(2) && waited < Duration::from_millis(2010),
            "waited {waited:?}, not until the deadline"
        );
        assert!(!status.up);
        assert!(status.balances.is_some());
        // The scrapes after it do not wait (the cached balances are fresh) and say the same:
        // the call is overdue, so the account is down for every scrape, not only the first.
        for _ in 0..5 {
            tokio::time::advance(Duration::from_millis(200)).await;
            let status = scrape(&account).await;
            assert!(!status.up, "kraken_up flaps back to 1 while the call hangs");
            assert!(status.balances.is_some());
        }
        // The call goes on until the client's own timeout (5 s), then counts as a failure.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            account.status(true).last_error.map(|e| e.0),
            Some(Reason::Timeout)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopped_account_ends_its_refresh_in_flight_and_never_calls_again() {
        let (sim, account) = refreshed_then_hanging().await;
        let _clock = pace_the_clock();
        let pending = account.begin_scrape();
        assert!(!pending.is_idle(), "a refresh started");
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(account.lock().in_flight);
        account.stop();
        // The aborted task's guard clears the flight at once.
        tokio::time::advance(Duration::from_millis(10)).await;
        assert!(
            !account.lock().in_flight,
            "the refresh in flight was not ended"
        );
        sim.clear_faults();
        let calls = sim.calls(Endpoint::BalanceEx);
        tokio::time::advance(MIN_INTERVAL * 3).await;
        account.refresh_now().await;
        assert!(scrape(&account).await.balances.is_some());
        assert_eq!(
            sim.calls(Endpoint::BalanceEx),
            calls,
            "a stopped account called Kraken"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn earn_is_fetched_once_per_interval_kept_through_a_failure_then_dropped_as_stale() {
        const EARN: Duration = Duration::from_secs(600);
        let sim = SimKraken::start(SimOptions::default()).await.unwrap();
        let _clock = pace_the_clock();
        let account = account_with(
            &sim,
            Extras {
                earn_interval: Some(EARN),
                ..Extras::default()
            },
        );
        let calls = || sim.calls(Endpoint::EarnAllocations);
        account.refresh_now().await;
        let fetched = Instant::now();
        assert_eq!(calls(), 1);
        let earn = account
            .status(true)
            .feature::<EarnAllocations>()
            .expect("allocations after the first refresh")
            .clone();
        assert_eq!(earn.0.len(), 3);
        // Balances refresh every minimum interval; Earn waits for its own interval.
        tokio::time::advance(MIN_INTERVAL).await;
        assert!(scrape(&account).await.up);
        assert_eq!(calls(), 1);
        tokio::time::advance(EARN).await;
        assert!(scrape(&account).await.up);
        assert_eq!(calls(), 2);
        // A refused Earn call neither downs the account nor drops what is known.
        sim.inject(
            Endpoint::EarnAllocations,
            Fault::KrakenError("EGeneral:Permission denied".into()),
            None,
        );
        tokio::time::advance(EARN).await;
        let status = scrape(&account).await;
        assert_eq!(calls(), 3);
        assert!(status.up);
        assert!(
            status.feature::<EarnAllocations>().is_some(),
            "kept while not stale"
        );
        // Stale once older than twice the interval plus the staleness limit (the second fetch
        // was one interval after the first).
        let limit = EARN * 2 + STALE_AFTER;
        tokio::time::advance(
            fetched + EARN + MIN_INTERVAL + limit + Duration::from_secs(1) - Instant::now(),
        )
        .await;
        assert!(
            account.status(true).feature::<EarnAllocations>().is_none(),
            "stale allocations are dropped"
        );
    }
}
