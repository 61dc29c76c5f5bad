//! When Kraken is called, and what the exporter knows about each account between calls.
//!
//! Owns the refresh policy: a minimum interval between calls, single-flight (concurrent scrapes
//! share one call), backoff after failures, the optional background loop, and the staleness
//! limit after which balances are dropped.
//! Must not: parse Kraken bodies or render metrics. A refresh runs in its own task, so a scrape
//! that gives up waiting never cancels a call in flight.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use crate::audit::{self, KeyAudit};
use crate::kraken::{KrakenClient, KrakenError, Reason};
use crate::market::Market;

/// Longest backoff after repeated failures of any kind but a lockout.
const MAX_BACKOFF: Duration = Duration::from_secs(10 * 60);

/// How often and how long balances are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// Scrapes closer together than this reuse the last snapshot instead of calling Kraken.
    pub min_interval: Duration,
    /// When set, a background task refreshes at this interval and scrapes never call Kraken.
    pub background_interval: Option<Duration>,
    /// Balances older than this are dropped from the exposition rather than shown as current.
    pub stale_after: Duration,
    /// How often the public Assets list (code → short name) is fetched again; used by
    /// [`crate::market::Market`].
    pub assets_interval: Duration,
    /// How long to leave Kraken alone after failures. Not an operator setting: the defaults
    /// follow Kraken's documented limits; tests shorten them to watch recovery happen.
    pub backoff: BackoffPolicy,
}

/// How long to leave Kraken alone after a failure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPolicy {
    /// Multiplies every wait below (1.0 in production).
    pub scale: f64,
    /// Longest wait after repeated failures of any kind but a lockout.
    pub max: Duration,
}

impl Eq for BackoffPolicy {}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            scale: 1.0,
            max: MAX_BACKOFF,
        }
    }
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            min_interval: Duration::from_secs(10),
            background_interval: None,
            stale_after: Duration::from_secs(5 * 60),
            assets_interval: Duration::from_secs(6 * 3600),
            backoff: BackoffPolicy::default(),
        }
    }
}

/// One asset's balance with both its names.
#[derive(Debug, Clone, PartialEq)]
pub struct LabeledBalance {
    /// Kraken's short name (`XBT`), or the raw code when Kraken does not list it.
    pub asset: String,
    /// The raw code Kraken returned (`XXBT`).
    pub code: String,
    /// Total balance.
    pub total: f64,
    /// Held by open orders; `None` when the Balance endpoint answered.
    pub hold: Option<f64>,
}

impl LabeledBalance {
    /// What can be withdrawn or traded: total minus hold, when the hold is known.
    pub fn available(&self) -> Option<f64> {
        self.hold.map(|hold| self.total - hold)
    }
}

/// An amount for people: at most 10 decimals (Kraken's precision), trailing zeros dropped, so
/// `1.2345678901 - 0.1` reads `1.1345678901`, not `1.1345678900999998`.
pub fn format_amount(value: f64) -> String {
    let text = format!("{value:.10}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

/// The balances of one successful refresh.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// One entry per asset, sorted by code.
    pub balances: Vec<LabeledBalance>,
    /// Wall-clock time of the refresh, for `kraken_last_success_timestamp_seconds`.
    pub fetched_at: SystemTime,
    /// Monotonic time of the refresh, for the staleness limit.
    pub fetched_instant: Instant,
    /// Which endpoint answered (`BalanceEx` or `Balance`).
    pub endpoint: &'static str,
}

/// What a scrape or the landing page shows about one account.
#[derive(Debug, Clone)]
pub struct AccountStatus {
    /// The `account` label.
    pub name: String,
    /// The latest refresh succeeded and this scrape did not give up waiting for one.
    pub up: bool,
    /// When the latest successful refresh happened.
    pub last_success: Option<SystemTime>,
    /// Reason and message of the latest failed refresh, if the latest refresh failed.
    pub last_error: Option<(Reason, String)>,
    /// The balances to export; `None` before the first success and once they are stale.
    pub balances: Option<Arc<Snapshot>>,
    /// What the key may do, from the latest successful audit.
    pub audit: Option<KeyAudit>,
    /// Kraken's equivalent balance (TradeBalance `eb`) as (quote altname, value), when collected
    /// and not stale.
    pub equivalent: Option<(String, f64)>,
    /// Kraken refused TradeBalance for this key, so it is no longer asked.
    pub trade_balance_refused: bool,
}

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
    /// Failures since the last success, for the exponential backoff.
    consecutive_failures: u32,
    /// No call to Kraken before this instant.
    backoff_until: Option<Instant>,
    /// Latest successful key audit.
    audit: Option<KeyAudit>,
    /// When the key is audited next; `None` before the first audit.
    audit_due: Option<Instant>,
    /// Latest equivalent balance: (quote altname, value, when fetched).
    equivalent: Option<(String, f64, Instant)>,
    /// Kraken refused TradeBalance; it is not asked again until a reload.
    trade_balance_refused: bool,
}

/// Calls an account makes besides balances.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extras {
    /// Audit the key's permissions at this interval; `None` turns the audit off.
    pub audit_interval: Option<Duration>,
    /// Collect TradeBalance's equivalent balance in this quote (an altname such as `USD`).
    pub trade_balance_quote: Option<String>,
}

/// How long to wait before trying a failed audit again.
const AUDIT_RETRY: Duration = Duration::from_secs(5 * 60);

/// A refresh a scrape may wait for; see [`Account::begin_scrape`].
#[derive(Debug)]
pub struct PendingScrape(Option<watch::Receiver<u64>>);

/// One Kraken account: its client, its policy and what is known about it.
pub struct Account {
    /// The client signing this account's calls.
    client: KrakenClient,
    /// Shared public data: asset names.
    market: Arc<Market>,
    /// When to call.
    policy: RefreshPolicy,
    /// Audit and TradeBalance settings.
    extras: Extras,
    /// What is known; see [`State`].
    state: Mutex<State>,
    /// Bumped after every finished refresh; waiters subscribe before the refresh can finish.
    finished: watch::Sender<u64>,
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
        self.0.lock().in_flight = false;
        self.0.finished.send_modify(|generation| *generation += 1);
    }
}

impl Account {
    /// An account that has not been refreshed yet.
    pub fn new(
        client: KrakenClient,
        policy: RefreshPolicy,
        extras: Extras,
        market: Arc<Market>,
    ) -> Arc<Self> {
        Arc::new(Self {
            client,
            market,
            policy,
            extras,
            state: Mutex::new(State::default()),
            finished: watch::Sender::new(0),
        })
    }

    /// The `account` label.
    pub fn name(&self) -> &str {
        self.client.account()
    }

    /// The refresh policy.
    pub fn policy(&self) -> &RefreshPolicy {
        &self.policy
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a refresh has finished, successfully or not.
    pub fn has_outcome(&self) -> bool {
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
        let receiver = self.finished.subscribe();
        drop(state);
        let account = Arc::clone(self);
        tokio::spawn(async move { account.run_refresh().await });
        Some(receiver)
    }

    /// The task body of one refresh: the asset names (fetched if due), then balances, then the
    /// new state.
    async fn run_refresh(&self) {
        let _guard = InFlightGuard(self);
        let assets = self.market.assets().await;
        let result = self.client.balances().await;
        let now = Instant::now();
        let held = self.record(result, now, &assets);
        self.client.touch();
        if let Some(held) = held {
            self.market.note_held(held);
            // The extra calls run in this same task, after the balance call, so calls with
            // this key never overlap and their nonces reach Kraken in order.
            self.audit_if_due().await;
            self.trade_balance_if_enabled(&assets).await;
            self.client.touch();
        }
    }

    /// Stores the outcome of a balance call; on success returns the held (code, asset) pairs.
    fn record(
        &self,
        result: Result<crate::kraken::client::BalanceAnswer, KrakenError>,
        now: Instant,
        assets: &crate::kraken::AssetTable,
    ) -> Option<Vec<(String, String)>> {
        let mut state = self.lock();
        match result {
            Ok(answer) => {
                let balances = answer
                    .balances
                    .into_iter()
                    .map(|b| LabeledBalance {
                        asset: assets.display_name(&b.code),
                        code: b.code,
                        total: b.total,
                        hold: b.hold,
                    })
                    .collect();
                state.snapshot = Some(Arc::new(Snapshot {
                    balances,
                    fetched_at: SystemTime::now(),
                    fetched_instant: now,
                    endpoint: answer.endpoint,
                }));
                tracing::debug!(
                    account = %self.name(),
                    endpoint = answer.endpoint,
                    assets = state.snapshot.as_ref().map_or(0, |s| s.balances.len()),
                    "balances refreshed"
                );
                if state.consecutive_failures > 0 {
                    tracing::info!(account = %self.name(), "refresh succeeded again");
                }
                state.consecutive_failures = 0;
                state.backoff_until = None;
                state.last_outcome = Some(Outcome {
                    at: now,
                    error: None,
                });
                Some(
                    state
                        .snapshot
                        .iter()
                        .flat_map(|s| s.balances.iter())
                        .map(|b| (b.code.clone(), b.asset.clone()))
                        .collect(),
                )
            }
            Err(error) => {
                state.consecutive_failures = state.consecutive_failures.saturating_add(1);
                let wait = backoff(
                    &error,
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
                None
            }
        }
    }

    /// Audits the key's permissions when due. A key that can move funds or trade is logged as a
    /// warning at every audit; a failed audit is tried again in a few minutes and never makes
    /// the account down.
    async fn audit_if_due(&self) {
        let Some(interval) = self.extras.audit_interval else {
            return;
        };
        let due = self
            .lock()
            .audit_due
            .is_none_or(|due| Instant::now() >= due);
        if !due {
            return;
        }
        let result = audit::audit_key(&self.client).await;
        let mut state = self.lock();
        match result {
            Ok(audit) => {
                let risky = audit.risky();
                if risky.is_empty() {
                    tracing::debug!(account = %self.name(), source = ?audit.source, "key audit: the key cannot move funds or trade");
                } else {
                    tracing::warn!(
                        account = %self.name(),
                        permissions = ?risky,
                        "key audit: this key can move funds or trade; an exporter needs only 'Funds: Query': create a Query-only key and replace this one"
                    );
                }
                state.audit = Some(audit);
                state.audit_due = Some(Instant::now() + interval);
            }
            Err(error) => {
                tracing::warn!(account = %self.name(), %error, "key audit failed; trying again later");
                state.audit_due = Some(Instant::now() + AUDIT_RETRY);
            }
        }
    }

    /// Collects TradeBalance's equivalent balance when enabled. A refusal is reported once and
    /// stops the calls, instead of counting as an outage at every refresh.
    async fn trade_balance_if_enabled(&self, assets: &crate::kraken::AssetTable) {
        let Some(quote) = &self.extras.trade_balance_quote else {
            return;
        };
        if self.lock().trade_balance_refused {
            return;
        }
        let code = assets
            .code_for_altname(quote)
            .map_or_else(|| quote.clone(), str::to_owned);
        let result = self.client.trade_balance(&code).await;
        let mut state = self.lock();
        match result {
            Ok(value) => state.equivalent = Some((quote.clone(), value, Instant::now())),
            Err(error) if error.reason() == Reason::PermissionDenied => {
                tracing::warn!(
                    account = %self.name(),
                    "TradeBalance was refused: this key lacks the permission Kraken asks for it (documented both as 'Funds: Query' and as 'Orders and trades: Query open orders & trades'); kraken_equivalent_balance is not exported for this account and TradeBalance is not asked again until a reload; set valuation.trade_balance: false to silence this"
                );
                state.trade_balance_refused = true;
                state.equivalent = None;
            }
            Err(error) => {
                tracing::warn!(account = %self.name(), %error, "TradeBalance failed; keeping the previous equivalent balance");
            }
        }
    }

    /// Waits for the refresh a scrape asked for, at most until `deadline`; returns whether it
    /// finished in time.
    async fn wait(receiver: Option<watch::Receiver<u64>>, deadline: Instant) -> bool {
        let Some(mut receiver) = receiver else {
            return true;
        };
        let deadline = tokio::time::Instant::from_std(deadline);
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
                .is_some_and(|s| s.fetched_instant.elapsed() <= self.policy.min_interval * 2);
            let healthy = state
                .last_outcome
                .as_ref()
                .is_some_and(|o| o.error.is_none());
            if state.in_flight && fresh && healthy {
                return PendingScrape(None);
            }
        }
        PendingScrape(self.start_refresh_if_due(self.policy.min_interval))
    }

    /// Second half of a scrape: waits for the refresh at most until `deadline`, then reports.
    pub async fn finish_scrape(&self, pending: PendingScrape, deadline: Instant) -> AccountStatus {
        let in_time = Self::wait(pending.0, deadline).await;
        self.status(in_time)
    }

    /// Refreshes now (joining one in flight), unless a backoff is in force, and waits for it.
    /// Used at start-up, by the background loop and by `check`.
    pub async fn refresh_now(self: &Arc<Self>) {
        let receiver = self.start_refresh_if_due(Duration::ZERO);
        Self::wait(receiver, Instant::now() + Duration::from_secs(24 * 3600)).await;
    }

    /// Runs the background refresh loop until the task is dropped.
    pub async fn run_background(self: Arc<Self>, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            self.refresh_now().await;
        }
    }

    /// What is known now, without calling Kraken. `in_time` is false when the caller gave up
    /// waiting for a refresh, which reports the account as down for that scrape.
    pub fn status(&self, in_time: bool) -> AccountStatus {
        let state = self.lock();
        let error = state.last_outcome.as_ref().and_then(|o| o.error.clone());
        let up = in_time
            && state
                .last_outcome
                .as_ref()
                .is_some_and(|o| o.error.is_none());
        let balances = state
            .snapshot
            .as_ref()
            .filter(|s| s.fetched_instant.elapsed() <= self.policy.stale_after)
            .cloned();
        let equivalent = state
            .equivalent
            .as_ref()
            .filter(|(_, _, at)| at.elapsed() <= self.policy.stale_after)
            .map(|(quote, value, _)| (quote.clone(), *value));
        AccountStatus {
            name: self.name().to_owned(),
            up,
            last_success: state.snapshot.as_ref().map(|s| s.fetched_at),
            last_error: error,
            balances,
            audit: state.audit.clone(),
            equivalent,
            trade_balance_refused: state.trade_balance_refused,
        }
    }
}

/// How long to leave Kraken alone after the `failures`-th consecutive failure: Kraken's own
/// "throttled until" when it gave one; otherwise the reason's base doubled per repeated
/// failure, never shorter than the minimum interval, capped at `policy.max` (a lockout always
/// waits its full base, since every attempt during one restarts Kraken's timer). Every wait but
/// Kraken's own is multiplied by `policy.scale`.
pub fn backoff(
    error: &KrakenError,
    failures: u32,
    min_interval: Duration,
    policy: BackoffPolicy,
) -> Duration {
    if let Some(retry_at) = error.retry_at() {
        let wait = retry_at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        return wait.clamp(min_interval, Duration::from_secs(3600));
    }
    let reason = error.reason();
    let base = reason.backoff_base().mul_f64(policy.scale);
    if reason == Reason::Lockout {
        return base.max(min_interval);
    }
    let doubled = base.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    doubled.min(policy.max).max(min_interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(message: &str) -> KrakenError {
        let (reason, retry_at) = crate::kraken::error::classify(message);
        KrakenError::Api {
            reason,
            message: message.into(),
            retry_at,
        }
    }

    #[test]
    fn amounts_print_with_krakens_precision_and_no_float_noise() {
        assert_eq!(format_amount(1.2345678901 - 0.1), "1.1345678901");
        assert_eq!(format_amount(25000.1234), "25000.1234");
        assert_eq!(format_amount(0.0), "0");
        assert_eq!(format_amount(-0.0), "0");
        assert_eq!(format_amount(1500.0), "1500");
        assert_eq!(format_amount(0.00000001), "0.00000001");
    }

    #[test]
    fn backoff_doubles_per_failure_and_is_capped() {
        let min = Duration::from_secs(10);
        let err = KrakenError::Status { status: 502 };
        let p = BackoffPolicy::default();
        assert_eq!(backoff(&err, 1, min, p), Duration::from_secs(10));
        assert_eq!(backoff(&err, 2, min, p), Duration::from_secs(10));
        assert_eq!(backoff(&err, 3, min, p), Duration::from_secs(20));
        assert_eq!(backoff(&err, 30, min, p), MAX_BACKOFF);
        let rate = api("EAPI:Rate limit exceeded");
        assert_eq!(backoff(&rate, 1, min, p), Duration::from_secs(30));
        assert_eq!(backoff(&rate, 2, min, p), Duration::from_secs(60));
        let fast = BackoffPolicy {
            scale: 0.01,
            max: Duration::from_secs(1),
        };
        assert_eq!(
            backoff(&rate, 1, Duration::ZERO, fast),
            Duration::from_millis(300)
        );
        assert_eq!(
            backoff(&rate, 9, Duration::ZERO, fast),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn lockout_waits_minutes_and_auth_failures_never_retry_tightly() {
        let min = Duration::from_secs(10);
        let p = BackoffPolicy::default();
        assert_eq!(
            backoff(&api("EGeneral:Temporary lockout"), 1, min, p),
            Duration::from_secs(900)
        );
        assert!(backoff(&api("EAPI:Invalid key"), 1, min, p) >= Duration::from_secs(60));
        assert!(backoff(&api("EAPI:Invalid signature"), 1, min, p) >= Duration::from_secs(60));
    }

    #[test]
    fn throttled_waits_until_the_time_kraken_gave() {
        let until = SystemTime::now() + Duration::from_secs(120);
        let secs = until
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let wait = backoff(
            &api(&format!("EService:Throttled:{secs}")),
            1,
            Duration::from_secs(10),
            BackoffPolicy::default(),
        );
        assert!(
            wait > Duration::from_secs(110) && wait <= Duration::from_secs(120),
            "{wait:?}"
        );
    }
}
