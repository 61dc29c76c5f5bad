//! `rate_limit`: a token bucket over every request.
//!
//! Must not: block; a request over the limit is refused at once (the server answers 429).

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::problem;
use crate::problem::Problem;

/// `rate_limit:`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRateLimit {
    interval: Option<serde_norway::Value>,
    burst: Option<u32>,
}

/// `rate_limit`: a token bucket over every request, as exporter-toolkit's: `burst` requests at
/// once, then one per `interval`. Requests over the limit are answered 429.
pub(crate) struct RateLimiter {
    /// Time to earn one token.
    interval: Duration,
    /// Bucket size.
    burst: u32,
    /// Tokens available and when they were counted.
    bucket: Mutex<(f64, Instant)>,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("interval", &self.interval)
            .field("burst", &self.burst)
            .finish()
    }
}

impl RateLimiter {
    /// A full bucket of `burst` tokens, refilled by one every `interval`.
    pub(crate) fn new(interval: Duration, burst: u32) -> RateLimiter {
        RateLimiter {
            interval,
            burst,
            bucket: Mutex::new((f64::from(burst), Instant::now())),
        }
    }

    /// Takes one token if there is one.
    pub(crate) fn allow(&self) -> bool {
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let earned = now.duration_since(bucket.1).as_secs_f64() / self.interval.as_secs_f64();
        bucket.0 = (bucket.0 + earned).min(f64::from(self.burst));
        bucket.1 = now;
        if bucket.0 >= 1.0 {
            bucket.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The limiter of `rate_limit`; `None` when it is off or has a problem.
pub(super) fn from_raw(raw: RawRateLimit, problems: &mut Vec<Problem>) -> Option<RateLimiter> {
    let interval = match raw.interval {
        None | Some(serde_norway::Value::Null) => Duration::ZERO,
        Some(serde_norway::Value::Number(n)) if n.as_f64() == Some(0.0) => Duration::ZERO,
        Some(serde_norway::Value::String(text)) if text.trim() == "0" => Duration::ZERO,
        Some(serde_norway::Value::String(text)) => match crate::duration::parse(&text) {
            Ok(interval) => interval,
            Err(message) => {
                problems.push(problem("rate_limit.interval", message));
                return None;
            }
        },
        Some(_) => {
            problems.push(problem(
                "rate_limit.interval",
                "must be a duration like 100ms or 1s (0 turns the limit off)",
            ));
            return None;
        }
    };
    if interval.is_zero() {
        return None;
    }
    match raw.burst {
        Some(burst) if burst > 0 => Some(RateLimiter::new(interval, burst)),
        _ => {
            problems.push(problem(
                "rate_limit.burst",
                "must be at least 1 when interval is set, or every request would be refused",
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::WebSecurity;
    use super::*;
    use crate::problem::Problem;
    use std::path::Path;
    fn refused(text: &str) -> Vec<Problem> {
        WebSecurity::from_text(text, Path::new(".")).unwrap_err()
    }

    #[test]
    fn rate_limit_needs_a_burst_and_zero_turns_it_off() {
        let problems = refused("rate_limit:\n  interval: 1s\n");
        assert_eq!(problems[0].place, "rate_limit.burst");
        let off = WebSecurity::from_text("rate_limit:\n  interval: 0\n", Path::new(".")).unwrap();
        assert!(off.rate_limit().is_none());
        let limiter = RateLimiter::new(Duration::from_secs(3600), 2);
        assert!(limiter.allow() && limiter.allow());
        assert!(!limiter.allow());
    }
}
