//! When an account may call Kraken: the refresh policy and the backoff after failures.
//!
//! Owns [`RefreshPolicy`] (minimum interval, background interval, staleness, Assets schedule),
//! [`BackoffPolicy`] and [`backoff`], the wait after a failure.
//! Must not: keep state or do I/O; these are plain settings and one pure function.

use std::time::{Duration, SystemTime};

use kraken::{KrakenError, Reason};

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
    /// While the balances stream delivers every change, balances are polled at most this often
    /// (holds and anything the stream does not carry still change between events).
    pub stream_interval: Duration,
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
            stream_interval: Duration::from_secs(60),
            assets_interval: Duration::from_secs(6 * 3600),
            backoff: BackoffPolicy::default(),
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
        let (reason, retry_at) = kraken::error::classify(message);
        KrakenError::Api {
            reason,
            message: message.into(),
            retry_at,
        }
    }

    #[test]
    fn backoff_doubles_per_failure_and_is_capped() {
        let min = Duration::from_secs(10);
        let err = KrakenError::Status {
            status: 502,
            path: None,
        };
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
