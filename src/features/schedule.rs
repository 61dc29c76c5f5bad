//! The rules every polled feature follows, written once: when its call is due, what a failure
//! or a refusal does to the next call and to what is shown, and when its answer is stale.
//!
//! Owns [`Polling`], which wraps one [`Polled`] feature as a [`Source`] the account can hold
//! beside any other, so the account itself knows no feature but balances.
//! Must not: know any one feature, or read `std::time::Instant` (tokio's clock, so tests can
//! pause it).

use std::sync::{Arc, Mutex, MutexGuard};

use kraken::{KrakenError, Reason};
use tokio::time::Instant;

use super::{BoxFuture, CallContext, FeatureView, Polled, Schedule, Source};

/// What is known of one polled feature.
#[derive(Debug)]
struct Known<S> {
    /// The latest answer and when it was fetched.
    latest: Option<(Arc<S>, Instant)>,
    /// The next call is not made before this; `None` before the first.
    due: Option<Instant>,
    /// Kraken refused the call and the schedule says to stop asking until a reload.
    stopped: bool,
}

/// One polled feature with its schedule applied.
#[derive(Debug)]
pub(crate) struct Polling<P: Polled> {
    feature: P,
    schedule: Schedule,
    known: Mutex<Known<P::State>>,
}

impl<P: Polled + std::fmt::Debug> Polling<P> {
    /// The feature, not yet called.
    pub(crate) fn new(feature: P) -> Self {
        let schedule = feature.schedule();
        Self {
            feature,
            schedule,
            known: Mutex::new(Known {
                latest: None,
                due: None,
                stopped: false,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Known<P::State>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a call is due at `now`.
    fn is_due(&self, now: Instant) -> bool {
        let known = self.lock();
        !known.stopped && known.due.is_none_or(|due| now >= due)
    }

    /// Stores the outcome of one call and sets the next due time.
    fn record(&self, account: &str, result: Result<P::State, KrakenError>) {
        let now = Instant::now();
        let regular = self.schedule.every.map(|every| now + every);
        let mut known = self.lock();
        match result {
            Ok(state) => {
                self.feature.on_answer(account, &state);
                known.latest = Some((Arc::new(state), now));
                known.due = regular;
            }
            Err(error) => {
                known.due = self
                    .schedule
                    .retry_after_failure
                    .map(|wait| now + wait)
                    .or(regular);
                if !is_refusal(&error) {
                    tracing::warn!(account = %account, feature = P::NAME, %error, "the call failed; what it said before is shown until it is stale, and it is tried again later");
                    return;
                }
                if self.schedule.stop_when_refused {
                    known.stopped = true;
                    known.latest = None;
                }
                tracing::warn!(account = %account, feature = P::NAME, %error, "{}", P::WHEN_REFUSED);
            }
        }
    }
}

/// A refusal of the call itself (the key lacks a permission), as opposed to an outage.
fn is_refusal(error: &KrakenError) -> bool {
    error.reason() == Reason::PermissionDenied
}

impl<P: Polled + std::fmt::Debug> Source for Polling<P> {
    fn name(&self) -> &'static str {
        P::NAME
    }

    fn endpoints(&self) -> &'static [kraken::Endpoint] {
        P::ENDPOINTS
    }

    fn poll_if_due<'a>(&'a self, account: &'a str, call: CallContext<'a>) -> BoxFuture<'a> {
        Box::pin(async move {
            if !self.is_due(Instant::now()) {
                return;
            }
            let result = self.feature.fetch(call).await;
            self.record(account, result);
        })
    }

    fn view(&self, now: Instant) -> Option<Arc<dyn FeatureView>> {
        let known = self.lock();
        let (state, at) = known.latest.as_ref()?;
        let fresh = self
            .schedule
            .keep_for
            .is_none_or(|keep| now.duration_since(*at) <= keep);
        fresh.then(|| Arc::clone(state) as Arc<dyn FeatureView>)
    }
}
