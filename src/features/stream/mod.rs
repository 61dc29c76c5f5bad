//! Money in motion: Kraken's WebSocket v2 `balances` channel, one connection per account.
//!
//! A pushed source. Its task asks GetWebSocketsToken for a token (with the account's key, so
//! the call never overlaps a refresh), connects to `--kraken.ws-url`, subscribes to `balances`
//! and counts every ledger entry Kraken pushes "on each completed transaction". Each event, a
//! reconnect, a sequence gap or an asset it cannot name asks the account for a REST balance
//! refresh that starts after it (coalesced, and bounded by [`EventBudget`]), so `/metrics`
//! shows the new balances within seconds with the meaning REST gives them (codes, holds,
//! spendable amounts), never a balance guessed from an event. While subscribed, the account's
//! periodic poll slows down to `--kraken.stream.poll-interval`.
//!
//! Writes `kraken_ledger_entries_total`, `kraken_ledger_amount_total` (counted since start),
//! `kraken_stream_up`, `kraken_stream_reconnects_total` and
//! `kraken_stream_last_message_timestamp_seconds`; with [`collect_limits`], `kraken_outflow_max`
//! and a zero withdrawal series for every asset with a limit, so the first withdrawal after a
//! start shows as an increase.
//! Must not: block a scrape (the task and the scrapes share only [`Ledger`], behind a mutex
//! never held across an await), retry in a tight loop (reconnects back off with jitter), or
//! show the token anywhere.

mod task;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use kraken::Endpoint;
use kraken::stream::LedgerEntry;
use tokio::task::JoinHandle;

use crate::exposition::{Exposition, Family, Kind, Value, unix_seconds};
use crate::features::{BoxFuture, CallContext, FeatureView, Source, SourceHost};
use crate::status::AccountView;

/// `kraken_ledger_entries_total`.
pub const ENTRIES: Family = Family {
    name: "kraken_ledger_entries_total",
    help: "Ledger entries Kraken pushed on the account's WebSocket balances stream since the exporter started, by asset and Kraken's ledger type (deposit, withdrawal, trade, transfer, earn, ...). Entries made while the stream was down are not counted; the balances are refreshed from REST instead.",
    kind: Kind::Counter,
};

/// `kraken_ledger_amount_total`.
pub const AMOUNT: Family = Family {
    name: "kraken_ledger_amount_total",
    help: "Sum of the absolute amounts of the ledger entries counted in kraken_ledger_entries_total, in units of the asset, by direction: in (credited) or out (debited); fees are not included. For every asset with an outflow limit the withdrawal series exists at 0 from the start.",
    kind: Kind::Counter,
};

/// `kraken_outflow_max`.
pub const OUTFLOW_MAX: Family = Family {
    name: "kraken_outflow_max",
    help: "Largest expected withdrawal amount per hour of the asset, from max_outflow in the config file or --outflow.max (0: no withdrawal expected); alert with increase(kraken_ledger_amount_total{type=\"withdrawal\",direction=\"out\"}[1h]) > kraken_outflow_max. Needs the balances stream.",
    kind: Kind::Gauge,
};

/// `kraken_stream_up`.
pub const UP: Family = Family {
    name: "kraken_stream_up",
    help: "1 while the account's WebSocket balances stream is subscribed and messages arrive; 0 while it is reconnecting. Absent for an account in polling mode.",
    kind: Kind::Gauge,
};

/// `kraken_stream_reconnects_total`.
pub const RECONNECTS: Family = Family {
    name: "kraken_stream_reconnects_total",
    help: "Times the account's WebSocket balances stream was lost and connected again (each reconnect refreshes the balances from REST).",
    kind: Kind::Counter,
};

/// `kraken_stream_last_message_timestamp_seconds`.
pub const LAST_MESSAGE: Family = Family {
    name: "kraken_stream_last_message_timestamp_seconds",
    help: "Unix time of the latest message on the account's WebSocket balances stream (heartbeats arrive about once a second while subscribed).",
    kind: Kind::Gauge,
};

/// The default WebSocket v2 endpoint for private channels.
pub const DEFAULT_WS_URL: &str = "wss://ws-auth.kraken.com/v2";

/// Whether the stream runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StreamMode {
    /// On when the key may use the WebSocket API (key audit, or a token call when the audit
    /// cannot tell), else polling as without a stream.
    #[default]
    Auto,
    /// Always; a refused token is an error, tried again with a backoff.
    On,
    /// Never.
    Off,
}

/// The stream's settings for one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSettings {
    /// Whether it runs.
    pub mode: StreamMode,
    /// The WebSocket v2 URL (`wss://`, or `ws://` to a loopback address).
    pub url: String,
    /// Connect and subscribe within this long.
    pub timeout: Duration,
}

/// What the stream has counted and how it is doing; shared by its task and the scrapes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ledger {
    /// (asset, type) → entries.
    pub entries: BTreeMap<(String, String), u64>,
    /// (asset, type, direction) → sum of absolute amounts.
    pub amounts: BTreeMap<(String, String, &'static str), f64>,
    /// Subscribed and alive.
    pub up: bool,
    /// Connections lost and made again.
    pub reconnects: u64,
    /// The latest message.
    pub last_message: Option<SystemTime>,
    /// The stream runs for this account (false in polling mode: nothing is exported).
    pub running: bool,
}

impl Ledger {
    /// Counts one entry under `asset`; returns the direction.
    fn count(&mut self, asset: &str, entry: &LedgerEntry) -> &'static str {
        let direction = if entry.amount < 0.0 { "out" } else { "in" };
        *self
            .entries
            .entry((asset.to_owned(), entry.kind.clone()))
            .or_default() += 1;
        let sum = self
            .amounts
            .entry((asset.to_owned(), entry.kind.clone(), direction))
            .or_default();
        *sum = kraken::at_kraken_precision(*sum + entry.amount.abs());
        direction
    }
}

impl FeatureView for Ledger {
    fn collect(&self, account: &str, out: &mut Exposition) {
        let mut f = out.family(&ENTRIES);
        for ((asset, kind), count) in &self.entries {
            f.sample(
                &[("account", account), ("asset", asset), ("type", kind)],
                Value::Count(*count),
            );
        }
        let mut f = out.family(&AMOUNT);
        for ((asset, kind, direction), amount) in &self.amounts {
            f.sample(
                &[
                    ("account", account),
                    ("asset", asset),
                    ("type", kind),
                    ("direction", direction),
                ],
                *amount,
            );
        }
        out.family(&UP).sample(&[("account", account)], self.up);
        out.family(&RECONNECTS)
            .sample(&[("account", account)], Value::Count(self.reconnects));
        if let Some(at) = self.last_message {
            out.family(&LAST_MESSAGE)
                .sample(&[("account", account)], unix_seconds(at));
        }
    }
}

/// `kraken_outflow_max` for every asset with a limit and, while the stream runs, a zero
/// withdrawal series for each of them that has none yet.
pub fn collect_limits(view: &AccountView<'_>, out: &mut Exposition) {
    let account = view.status.name.as_str();
    let mut f = out.family(&OUTFLOW_MAX);
    for (asset, max) in view.max_outflow {
        f.sample(&[("account", account), ("asset", asset)], *max);
    }
    let Some(ledger) = view.status.feature::<Ledger>() else {
        return;
    };
    let withdrawal = "withdrawal".to_owned();
    for asset in view.max_outflow.keys() {
        if !ledger
            .entries
            .contains_key(&(asset.clone(), withdrawal.clone()))
        {
            out.family(&ENTRIES).sample(
                &[
                    ("account", account),
                    ("asset", asset),
                    ("type", "withdrawal"),
                ],
                Value::Count(0),
            );
        }
        if !ledger
            .amounts
            .contains_key(&(asset.clone(), withdrawal.clone(), "out"))
        {
            out.family(&AMOUNT).sample(
                &[
                    ("account", account),
                    ("asset", asset),
                    ("type", "withdrawal"),
                    ("direction", "out"),
                ],
                0.0,
            );
        }
    }
}

/// The balances stream of one account, as the account holds it.
#[derive(Debug)]
pub struct BalanceStreamSource {
    settings: StreamSettings,
    ledger: Arc<Mutex<Ledger>>,
}

impl BalanceStreamSource {
    /// A stream not started yet.
    pub fn new(settings: StreamSettings) -> Self {
        Self {
            settings,
            ledger: Arc::default(),
        }
    }
}

/// Locks a ledger, whatever a panicking holder left.
fn lock(ledger: &Mutex<Ledger>) -> MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(|e| e.into_inner())
}

impl Source for BalanceStreamSource {
    fn name(&self) -> &'static str {
        "balances stream"
    }

    fn endpoints(&self) -> &'static [Endpoint] {
        &[Endpoint::GetWebSocketsToken]
    }

    fn poll_if_due<'a>(&'a self, _account: &'a str, _call: CallContext<'a>) -> BoxFuture<'a> {
        Box::pin(async {})
    }

    fn view(&self, _now: tokio::time::Instant) -> Option<Arc<dyn FeatureView>> {
        let ledger = lock(&self.ledger);
        ledger
            .running
            .then(|| Arc::new(ledger.clone()) as Arc<dyn FeatureView>)
    }

    fn start(&self, host: Arc<dyn SourceHost>) -> Option<JoinHandle<()>> {
        if self.settings.mode == StreamMode::Off {
            return None;
        }
        Some(task::start(
            host,
            self.settings.clone(),
            Arc::clone(&self.ledger),
        ))
    }
}
