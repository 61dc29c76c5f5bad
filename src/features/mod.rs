//! One unit per Kraken-backed feature, and the seam they share.
//!
//! Each feature is one file that says what it calls ([`Polled::ENDPOINTS`]), on which interval
//! ([`Polled::schedule`]), how the answer becomes state ([`Polled::fetch`]) and which metric
//! families it writes ([`FeatureView::collect`], with its [`Family`] constants beside it):
//!
//! - [`balances`]: Balance or BalanceEx, at every refresh; the account's `up` follows it. The
//!   account's scheduler ([`crate::account`]) calls it itself, since every other call follows a
//!   successful balance call.
//! - [`key_info`]: GetApiKeyInfo (or a WithdrawMethods probe), every `--audit.interval`.
//! - [`earn`]: Earn/Allocations, every `--earn.interval`.
//! - [`trade_balance`]: TradeBalance, at every refresh while Kraken allows it.
//! - [`prices`]: the public Assets, AssetPairs and Ticker data every account shares.
//!
//! The rules every polled feature follows (when it is due, when its state is stale, what a
//! refusal does, how long a failure waits) are written once, in [`schedule`];
//! a feature only states its [`Schedule`]. A pushed source (a stream that changes state between
//! polls) fits the same seam: it keeps its own state and offers it as a [`FeatureView`] through
//! [`Source::view`], with nothing to poll.
//!
//! Must not: decide when Kraken is called (the scheduler does), parse Kraken bodies (the
//! `kraken` crate does), or write the text format (the [`crate::exposition`] writer does).
//!
//! [`Family`]: crate::exposition::Family

pub mod balances;
pub mod earn;
pub mod funding;
pub mod key_info;
pub mod prices;
mod schedule;
pub mod stream;
pub mod system;
pub mod trade_balance;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use kraken::{AssetTable, Endpoint, KrakenClient, KrakenError};
use tokio::time::Instant;

use schedule::Polling;

pub use crate::status::FeatureView;

/// When a polled feature calls Kraken, and how long its answer is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// At most once per this interval, after a successful balance call; `None`: after every
    /// successful balance call.
    pub every: Option<Duration>,
    /// After a failed call, try again after this long; `None`: at the next regular time.
    pub retry_after_failure: Option<Duration>,
    /// A refusal (permission denied, unknown method) stops the calls until a reload, and drops
    /// what was known, instead of counting as a failure at every refresh.
    pub stop_when_refused: bool,
    /// The latest answer is shown for this long after it was fetched; `None`: until replaced.
    pub keep_for: Option<Duration>,
}

/// What a polled feature's call may use besides the account's client.
#[derive(Debug, Clone, Copy)]
pub struct CallContext<'a> {
    /// The account's client (its nonces and rate limit are the account's).
    pub client: &'a KrakenClient,
    /// Kraken's Assets list as currently known (empty before the first answer).
    pub assets: &'a AssetTable,
    /// The account's features' states as they were when the refresh started (a feature may
    /// read the key audit to tell whether the key allows its call).
    pub views: &'a [Arc<dyn FeatureView>],
}

/// A feature that calls one of the account's private endpoints on a [`Schedule`].
pub trait Polled: Send + Sync + 'static {
    /// Its answer as scrapes see it.
    type State: FeatureView;
    /// A name for logs.
    const NAME: &'static str;
    /// Every endpoint it may call, so their request counters exist at 0 from the start.
    const ENDPOINTS: &'static [Endpoint];
    /// What the log says when Kraken refuses the call: the permission it needs and what to do.
    const WHEN_REFUSED: &'static str;

    /// When it is called.
    fn schedule(&self) -> Schedule;

    /// Makes the call and turns the answer into state.
    fn fetch(
        &self,
        call: CallContext<'_>,
    ) -> impl Future<Output = Result<Self::State, KrakenError>> + Send;

    /// Anything to log about a new answer (a risky key, say); nothing by default.
    fn on_answer(&self, _account: &str, _state: &Self::State) {}

    /// Whether the call is worth making now (a feature whose permission the key audit shows
    /// missing is not called, and shows nothing); always by default.
    fn wanted(&self, _call: &CallContext<'_>) -> bool {
        true
    }
}

/// A boxed future, as the object-safe [`Source`] returns it.
pub type BoxFuture<'a, T = ()> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a pushed source may ask of the account it belongs to (the account implements it), so
/// a stream can trigger refreshes and call with the account's key without this module naming
/// the account.
pub trait SourceHost: Send + Sync {
    /// The `account` label.
    fn name(&self) -> &str;
    /// The account's client, for a call outside a refresh; hold [`SourceHost::lock_key`]
    /// around it so calls with one key never overlap.
    fn client(&self) -> &KrakenClient;
    /// Waits until no other call with the account's key is in flight, and keeps others out
    /// while the guard lives.
    fn lock_key(&self) -> BoxFuture<'_, tokio::sync::MutexGuard<'_, ()>>;
    /// A mark of this moment for [`SourceHost::refresh_after`].
    fn refresh_mark(&self) -> u64;
    /// Makes sure a balance refresh that started after `mark` was taken has finished (unless
    /// the account is backing off after a failure).
    fn refresh_after(self: Arc<Self>, mark: u64) -> BoxFuture<'static>;
    /// Says whether the source delivers every change now, so the periodic poll may slow down.
    fn set_pushed(&self, pushed: bool);
    /// The account's other features' current states (the key audit, say).
    fn views(&self) -> Vec<Arc<dyn FeatureView>>;
    /// Whether a balance refresh has succeeded yet.
    fn has_succeeded(&self) -> bool;
    /// Kraken's Assets list as currently known (empty before the first answer).
    fn assets(&self) -> Arc<AssetTable>;
}

/// A feature as the account holds it: polled on a schedule, or pushed by a stream. The
/// account keeps a list of these and knows nothing of any one feature.
pub trait Source: Send + Sync + std::fmt::Debug {
    /// A name for logs.
    fn name(&self) -> &'static str;
    /// The endpoints it may call.
    fn endpoints(&self) -> &'static [Endpoint];
    /// Calls Kraken if due. Runs inside the account's refresh task, after a successful balance
    /// call, so calls with one key never overlap and their nonces reach Kraken in order. A
    /// pushed source has nothing to poll.
    fn poll_if_due<'a>(&'a self, account: &'a str, call: CallContext<'a>) -> BoxFuture<'a>;
    /// The state to show now, unless there is none or it is stale.
    fn view(&self, now: Instant) -> Option<Arc<dyn FeatureView>>;
    /// Starts the task of a pushed source; a polled one has none. The account's owner keeps
    /// the handle and aborts it when the account is replaced or removed.
    fn start(&self, _host: Arc<dyn SourceHost>) -> Option<tokio::task::JoinHandle<()>> {
        None
    }
}

/// Which features besides balances an account runs, from the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extras {
    /// Audit the key's permissions at this interval; `None` turns the audit off.
    pub audit_interval: Option<Duration>,
    /// Collect TradeBalance's equivalent balance in this quote (an altname such as `USD`).
    pub trade_balance_quote: Option<String>,
    /// Fetch Earn allocations at this interval; `None` turns them off.
    pub earn_interval: Option<Duration>,
    /// Fetch deposits and withdrawals in flight at this interval; `None` turns them off.
    pub funding_interval: Option<Duration>,
    /// The balances stream; `None` turns it off.
    pub stream: Option<stream::StreamSettings>,
}

impl Extras {
    /// The enabled features, in the order their calls are made after a balance call. Adding a
    /// polled feature means one line here and its own file.
    pub fn sources(&self, stale_after: Duration) -> Vec<Arc<dyn Source>> {
        let mut sources: Vec<Arc<dyn Source>> = Vec::new();
        if let Some(interval) = self.audit_interval {
            sources.push(Arc::new(Polling::new(key_info::KeyInfo { interval })));
        }
        if let Some(interval) = self.earn_interval {
            sources.push(Arc::new(Polling::new(earn::Earn {
                interval,
                stale_after,
            })));
        }
        if let Some(interval) = self.funding_interval {
            for direction in [
                funding::Direction::Deposits,
                funding::Direction::Withdrawals,
            ] {
                sources.push(Arc::new(Polling::new(funding::Funding {
                    direction,
                    interval,
                    stale_after,
                })));
            }
        }
        if let Some(settings) = &self.stream {
            sources.push(Arc::new(stream::BalanceStreamSource::new(settings.clone())));
        }
        if let Some(quote) = &self.trade_balance_quote {
            sources.push(Arc::new(Polling::new(trade_balance::TradeBalance {
                quote: quote.clone(),
                stale_after,
            })));
        }
        sources
    }
}
