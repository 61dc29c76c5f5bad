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
            if !self.feature.wanted(&call) {
                self.lock().latest = None;
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

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Arc;
    use std::time::Duration;

    use kraken::{AssetTable, BalanceEndpoint, ClientOptions, Endpoint, KrakenClient, Reason};

    use super::*;
    use crate::exposition::Exposition;
    use crate::metrics::RequestMetrics;

    /// A state that writes nothing: the schedule is what is tested.
    #[derive(Debug, PartialEq)]
    struct Answer(u32);

    impl FeatureView for Answer {
        fn collect(&self, _account: &str, _out: &mut Exposition) {}
    }

    /// A feature that answers from a script and counts its calls.
    #[derive(Debug)]
    struct Scripted {
        schedule: Schedule,
        answers: Mutex<VecDeque<Result<Answer, KrakenError>>>,
        calls: Mutex<u32>,
    }

    impl Polled for Scripted {
        type State = Answer;
        const NAME: &'static str = "scripted";
        const ENDPOINTS: &'static [kraken::Endpoint] = &[Endpoint::TradeBalance];
        const WHEN_REFUSED: &'static str = "refused";

        fn schedule(&self) -> Schedule {
            self.schedule
        }

        async fn fetch(&self, _call: CallContext<'_>) -> Result<Answer, KrakenError> {
            *self.calls.lock().unwrap() += 1;
            self.answers
                .lock()
                .unwrap()
                .pop_front()
                .expect("a scripted answer")
        }
    }

    fn api_error(reason: Reason, message: &str) -> KrakenError {
        KrakenError::Api {
            reason,
            message: message.into(),
            retry_at: None,
        }
    }

    fn refusal() -> KrakenError {
        api_error(Reason::PermissionDenied, "EGeneral:Permission denied")
    }

    fn outage() -> KrakenError {
        api_error(Reason::Unavailable, "EService:Unavailable")
    }

    struct Harness {
        polling: Polling<Scripted>,
        client: KrakenClient,
        assets: AssetTable,
    }

    impl Harness {
        fn new(schedule: Schedule, answers: Vec<Result<Answer, KrakenError>>) -> Self {
            let options = ClientOptions {
                api_url: "http://127.0.0.1:9".into(),
                timeout: Duration::from_secs(1),
                balance_endpoint: BalanceEndpoint::Auto,
            };
            let client = KrakenClient::public(
                reqwest::Client::new(),
                options,
                "a".into(),
                Arc::new(RequestMetrics::new()),
            );
            Self {
                polling: Polling::new(Scripted {
                    schedule,
                    answers: Mutex::new(answers.into()),
                    calls: Mutex::new(0),
                }),
                client,
                assets: AssetTable::default(),
            }
        }

        async fn poll(&self) {
            let call = CallContext {
                client: &self.client,
                assets: &self.assets,
                views: &[],
            };
            self.polling.poll_if_due("a", call).await;
        }

        fn calls(&self) -> u32 {
            *self.polling.feature.calls.lock().unwrap()
        }

        fn shown(&self) -> Option<u32> {
            let view = self.polling.view(Instant::now())?;
            let any: &dyn std::any::Any = view.as_ref();
            any.downcast_ref::<Answer>().map(|a| a.0)
        }
    }

    const MINUTE: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn an_interval_feature_is_called_once_per_interval_retried_early_and_dropped_when_stale()
    {
        let harness = Harness::new(
            Schedule {
                every: Some(10 * MINUTE),
                retry_after_failure: Some(MINUTE),
                stop_when_refused: false,
                keep_for: Some(15 * MINUTE),
            },
            vec![Ok(Answer(1)), Err(outage()), Err(refusal()), Ok(Answer(2))],
        );
        harness.poll().await;
        assert_eq!((harness.calls(), harness.shown()), (1, Some(1)));
        tokio::time::advance(10 * MINUTE - Duration::from_secs(1)).await;
        harness.poll().await;
        assert_eq!(harness.calls(), 1, "called before its interval");
        tokio::time::advance(Duration::from_secs(1)).await;
        harness.poll().await;
        assert_eq!(harness.calls(), 2);
        assert_eq!(harness.shown(), Some(1), "a failure keeps what was known");
        tokio::time::advance(MINUTE).await;
        harness.poll().await;
        assert_eq!(
            harness.calls(),
            3,
            "a failure is retried after its own wait"
        );
        assert_eq!(
            harness.shown(),
            Some(1),
            "a refusal that does not stop keeps it too"
        );
        tokio::time::advance(4 * MINUTE).await;
        assert_eq!(harness.shown(), Some(1), "shown for its full 15 minutes");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(harness.shown(), None, "stale after 15 minutes");
        harness.poll().await;
        assert_eq!((harness.calls(), harness.shown()), (4, Some(2)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_feature_that_stops_when_refused_drops_its_state_and_is_not_called_again() {
        let harness = Harness::new(
            Schedule {
                every: None,
                retry_after_failure: None,
                stop_when_refused: true,
                keep_for: None,
            },
            vec![Ok(Answer(7)), Err(outage()), Err(refusal())],
        );
        harness.poll().await;
        harness.poll().await;
        assert_eq!(harness.calls(), 2, "called at every refresh");
        assert_eq!(harness.shown(), Some(7), "an outage keeps what was known");
        harness.poll().await;
        assert_eq!(harness.calls(), 3);
        assert_eq!(harness.shown(), None, "a refusal drops it");
        tokio::time::advance(24 * 60 * MINUTE).await;
        harness.poll().await;
        assert_eq!(harness.calls(), 3, "not asked again until a reload");
        assert_eq!(refusal().reason(), Reason::PermissionDenied);
    }
}
