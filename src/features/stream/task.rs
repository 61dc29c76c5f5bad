//! The task of one account's balances stream: token, connection, messages, reconnects, and
//! the REST refreshes its events ask for.
//!
//! Owns the connection's life (ping when quiet, reconnect with a jittered backoff, `auto` mode's
//! decision), the mapping of Kraken's v2 asset names to the exporter's short names, and
//! [`EventBudget`], which bounds the refreshes events ask for.
//! Must not: hold the ledger's lock across an await, or call with the key without the
//! account's key lock.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use kraken::stream::{BalanceStream, LedgerEntry, StreamError, StreamEvent, rest_asset_name};
use kraken::{AssetTable, KrakenError, Reason};
use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Ledger, StreamMode, StreamSettings, lock};
use crate::audit::{KeyAudit, WEBSOCKET};
use crate::features::SourceHost;

/// A quiet stream is pinged after this long without a message (Kraken sends heartbeats about
/// once a second while subscribed).
const QUIET: Duration = Duration::from_secs(10);

/// A stream still quiet this long after its ping is taken as lost.
const DEAD: Duration = Duration::from_secs(30);

/// Reconnects wait from this long, doubling, up to [`MAX_BACKOFF`] (with jitter).
const MIN_BACKOFF: Duration = Duration::from_secs(1);

/// Longest wait between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5 * 60);

/// How many recent ledger ids are remembered, so an entry Kraken sends twice is counted once.
const REMEMBERED_IDS: usize = 4096;

/// Ledger ids seen lately, oldest first.
#[derive(Debug, Default)]
struct RecentIds {
    order: VecDeque<String>,
    set: BTreeSet<String>,
}

impl RecentIds {
    /// Whether `id` is new (and remembers it).
    fn is_new(&mut self, id: &str) -> bool {
        if id.is_empty() {
            return true;
        }
        if !self.set.insert(id.to_owned()) {
            return false;
        }
        self.order.push_back(id.to_owned());
        if self.order.len() > REMEMBERED_IDS
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
}

/// Why a connection ended.
#[derive(Debug)]
enum Ended {
    /// Kraken refused the key (no WebSocket permission): nothing to retry soon.
    Refused(String),
    /// The connection failed or was lost: reconnect after a backoff.
    Lost(String),
}

impl From<StreamError> for Ended {
    fn from(error: StreamError) -> Self {
        match error {
            StreamError::Refused(message) => Ended::Refused(message),
            other => Ended::Lost(other.to_string()),
        }
    }
}

impl From<KrakenError> for Ended {
    fn from(error: KrakenError) -> Self {
        if error.reason() == Reason::PermissionDenied {
            Ended::Refused(error.to_string())
        } else {
            Ended::Lost(error.to_string())
        }
    }
}

/// Starts the task of one account's stream.
pub(super) fn start(
    host: Arc<dyn SourceHost>,
    settings: StreamSettings,
    ledger: Arc<Mutex<Ledger>>,
) -> JoinHandle<()> {
    let task = StreamTask {
        host,
        settings,
        ledger,
        seen: RecentIds::default(),
        unknown_logged: BTreeSet::new(),
    };
    tokio::spawn(task.run())
}

/// The task of one account's stream.
struct StreamTask {
    host: Arc<dyn SourceHost>,
    settings: StreamSettings,
    ledger: Arc<Mutex<Ledger>>,
    seen: RecentIds,
    unknown_logged: BTreeSet<String>,
}

impl StreamTask {
    /// Connects, counts and reconnects until the task is aborted, or until `auto` finds the
    /// key without the WebSocket permission.
    async fn run(mut self) {
        if self.settings.mode == StreamMode::Auto && !self.key_may_stream().await {
            tracing::info!(account = %self.host.name(), "the key lacks Kraken's 'WebSocket interface' permission, so balances are polled (every --refresh.min-interval); allow it on the key (it reads nothing more) to see deposits and withdrawals within seconds");
            return;
        }
        lock(&self.ledger).running = true;
        let (events, wanted) = watch::channel(None::<u64>);
        let refresher = tokio::spawn(refresh_on_events(Arc::clone(&self.host), wanted));
        let _refresher = AbortOnDrop(refresher);
        let mut failures: u32 = 0;
        loop {
            let ended = self.session(&events).await;
            self.host.set_pushed(false);
            let had_connected = {
                let mut ledger = lock(&self.ledger);
                let was_up = ledger.up;
                ledger.up = false;
                was_up
            };
            let wait = match ended {
                Ended::Refused(message) if self.settings.mode == StreamMode::Auto => {
                    tracing::info!(account = %self.host.name(), %message, "Kraken refused the WebSocket token, so balances are polled; allow 'WebSocket interface' on the key to stream them");
                    lock(&self.ledger).running = false;
                    return;
                }
                Ended::Refused(message) => {
                    tracing::error!(account = %self.host.name(), %message, "Kraken refused the balances stream: the key needs the 'WebSocket interface' permission (--kraken.stream=on); trying again in 5 minutes");
                    MAX_BACKOFF
                }
                Ended::Lost(message) => {
                    failures = if had_connected { 1 } else { failures + 1 };
                    let wait = backoff(failures);
                    tracing::warn!(account = %self.host.name(), %message, retry_in = ?wait, "the balances stream was lost; balances are refreshed from REST and the stream reconnects");
                    wait
                }
            };
            if had_connected {
                lock(&self.ledger).reconnects += 1;
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Whether the key may use the WebSocket API, from the key audit; when the audit cannot
    /// tell (off, or only the withdraw probe), a token call decides.
    async fn key_may_stream(&self) -> bool {
        // The audit runs right after the first successful balance refresh.
        let limit = Instant::now() + Duration::from_secs(60);
        while Instant::now() < limit {
            if self.host.has_succeeded() {
                let views = self.host.views();
                if let Some(audit) = crate::status::find::<KeyAudit>(&views) {
                    return audit.granted(WEBSOCKET) != Some(false);
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        true
    }

    /// One connection: token, subscribe, then messages until it ends.
    async fn session(&mut self, events: &watch::Sender<Option<u64>>) -> Ended {
        let token = {
            let _key = self.host.lock_key().await;
            self.host.client().websocket_token().await
        };
        let token = match token {
            Ok(token) => token,
            Err(error) => return error.into(),
        };
        let mut stream =
            match BalanceStream::connect(&self.settings.url, &token.token, self.settings.timeout)
                .await
            {
                Ok(stream) => stream,
                Err(error) => return error.into(),
            };
        drop(token);
        {
            let mut ledger = lock(&self.ledger);
            ledger.up = true;
            ledger.last_message = Some(SystemTime::now());
        }
        self.host.set_pushed(true);
        // Whatever happened while the stream was down is read from REST, not guessed.
        let _ = events.send(Some(self.host.refresh_mark()));
        let mut sequence: Option<u64> = None;
        let mut last = Instant::now();
        let mut pinged = false;
        loop {
            let wait = if pinged { DEAD } else { QUIET };
            let event = match tokio::time::timeout_at(last + wait, stream.next_event()).await {
                Ok(Ok(event)) => event,
                Ok(Err(error)) => return error.into(),
                Err(_) if pinged => {
                    return Ended::Lost(format!("no message for {}s", (QUIET + DEAD).as_secs()));
                }
                Err(_) => {
                    if let Err(error) = stream.ping().await {
                        return error.into();
                    }
                    pinged = true;
                    continue;
                }
            };
            last = Instant::now();
            pinged = false;
            lock(&self.ledger).last_message = Some(SystemTime::now());
            match event {
                StreamEvent::Snapshot { sequence: s, .. } => {
                    sequence = Some(s);
                    let _ = events.send(Some(self.host.refresh_mark()));
                }
                StreamEvent::Update {
                    sequence: s,
                    entries,
                } => {
                    if let Some(previous) = sequence
                        && s != previous + 1
                    {
                        tracing::warn!(account = %self.host.name(), expected = previous + 1, got = s, "the balances stream skipped a sequence number; entries may be missing from the ledger counters, and the balances are refreshed from REST");
                    }
                    sequence = Some(s);
                    self.count(&entries);
                    let _ = events.send(Some(self.host.refresh_mark()));
                }
                StreamEvent::Closed => return Ended::Lost("closed by Kraken".into()),
                _ => {}
            }
        }
    }

    /// Counts entries not seen before, each under the exporter's short name of its asset.
    fn count(&mut self, entries: &[LedgerEntry]) {
        let assets = self.host.assets();
        let mut ledger = lock(&self.ledger);
        for entry in entries {
            if !self.seen.is_new(&entry.ledger_id) {
                continue;
            }
            let asset = short_name(&entry.asset, &assets);
            if !asset.known && self.unknown_logged.insert(entry.asset.clone()) {
                tracing::warn!(account = %self.host.name(), asset = %entry.asset, "the balances stream names an asset Kraken's Assets list does not: its entries are counted under Kraken's own name, and the balances are refreshed from REST");
            }
            let direction = ledger.count(&asset.name, entry);
            tracing::info!(
                account = %self.host.name(),
                asset = %asset.name,
                kind = %entry.kind,
                direction,
                amount = entry.amount.abs(),
                "ledger entry"
            );
        }
    }
}

/// An asset's label on the ledger families.
struct AssetLabel {
    /// The short name, as `kraken_balance_available` has it (`XBT`), or Kraken's own v2 name
    /// when the Assets list does not know it.
    name: String,
    /// The Assets list knows it.
    known: bool,
}

/// The short name of a v2 asset name (`BTC` → `XBT`), when Kraken's Assets list knows it.
fn short_name(v2: &str, assets: &AssetTable) -> AssetLabel {
    let rest = rest_asset_name(v2);
    if assets.code_for_altname(&rest).is_some() {
        AssetLabel {
            name: rest,
            known: true,
        }
    } else {
        AssetLabel {
            name: v2.to_owned(),
            known: false,
        }
    }
}

/// The wait before reconnect attempt `failures` (1-based): doubling from a second up to five
/// minutes, with up to a quarter of jitter so many exporters do not reconnect in step.
fn backoff(failures: u32) -> Duration {
    let base = MIN_BACKOFF
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    let jitter = rand::thread_rng().gen_range(0.0..0.25);
    base.mul_f64(1.0 + jitter).min(MAX_BACKOFF)
}

/// Aborts a task when dropped, so the refresher ends with the stream's task.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How many event-driven refreshes may follow each other: a burst of [`EventBudget::BURST`],
/// then one per [`EventBudget::REFILL`], so a busy trading account stays well inside Kraken's
/// per-key rate limit (Starter: 15, −0.33/s) beside the periodic poll.
#[derive(Debug)]
struct EventBudget {
    tokens: f64,
    at: Instant,
}

impl EventBudget {
    const BURST: f64 = 5.0;
    const REFILL: Duration = Duration::from_secs(5);

    fn new() -> Self {
        Self {
            tokens: Self::BURST,
            at: Instant::now(),
        }
    }

    /// Waits for a token and takes it.
    async fn take(&mut self) {
        let now = Instant::now();
        let refilled = now.duration_since(self.at).as_secs_f64() / Self::REFILL.as_secs_f64();
        self.tokens = (self.tokens + refilled).min(Self::BURST);
        self.at = now;
        if self.tokens < 1.0 {
            let wait = Self::REFILL.mul_f64(1.0 - self.tokens);
            tokio::time::sleep(wait).await;
            self.tokens = 1.0;
            self.at = Instant::now();
        }
        self.tokens -= 1.0;
    }
}

/// Refreshes the balances after each event, coalescing events that arrive while a refresh is
/// waiting or running.
async fn refresh_on_events(host: Arc<dyn SourceHost>, mut wanted: watch::Receiver<Option<u64>>) {
    let mut budget = EventBudget::new();
    while wanted.changed().await.is_ok() {
        let Some(mark) = *wanted.borrow_and_update() else {
            continue;
        };
        // A refresh that started after the event covers it: no token is spent on it.
        if host.refresh_mark() > mark {
            continue;
        }
        budget.take().await;
        // Events that came while waiting for the token are covered by the same refresh.
        let mark = wanted.borrow_and_update().unwrap_or(mark);
        Arc::clone(&host).refresh_after(mark).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnects_back_off_from_a_second_to_five_minutes_with_jitter() {
        for (failures, base) in [(1, 1), (2, 2), (3, 4), (9, 256), (10, 300), (40, 300)] {
            let wait = backoff(failures);
            let base = Duration::from_secs(base);
            assert!(
                wait >= base && wait <= (base.mul_f64(1.25)).min(MAX_BACKOFF),
                "{failures}: {wait:?}"
            );
        }
    }

    #[test]
    fn an_entry_is_counted_once_under_its_direction_and_a_repeated_id_is_not_counted_again() {
        let mut ids = RecentIds::default();
        assert!(ids.is_new("L1"));
        assert!(!ids.is_new("L1"));
        for i in 0..REMEMBERED_IDS {
            ids.is_new(&format!("X{i}"));
        }
        assert!(
            ids.is_new("L1"),
            "old ids are forgotten, so memory stays bounded"
        );
        assert!(ids.order.len() <= REMEMBERED_IDS + 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_event_budget_allows_a_burst_then_one_refresh_per_refill() {
        let mut budget = EventBudget::new();
        let start = Instant::now();
        for _ in 0..5 {
            budget.take().await;
        }
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "a burst of five is immediate"
        );
        budget.take().await;
        assert_eq!(start.elapsed(), EventBudget::REFILL);
        tokio::time::advance(EventBudget::REFILL * 10).await;
        let again = Instant::now();
        for _ in 0..5 {
            budget.take().await;
        }
        assert_eq!(
            again.elapsed(),
            Duration::ZERO,
            "refilled while idle, never above the burst"
        );
        budget.take().await;
        assert_eq!(again.elapsed(), EventBudget::REFILL);
    }
}
