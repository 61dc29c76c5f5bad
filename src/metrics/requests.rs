//! Calls to Kraken, counted for the whole life of the process: requests, errors by reason and
//! a latency histogram per (account, endpoint), and the change counter that tells the exporter
//! when a rendered body is no longer current.
//!
//! Owns [`RequestMetrics`], the client's [`CallObserver`], and the three request families.
//! Must not: be rebuilt per scrape (counters must never go back) or block a call being counted.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use kraken::{CallObserver, Endpoint, Reason};

use crate::exposition::{Exposition, Family, Kind, Value};

/// Upper bounds of the latency histogram: Kraken answers in tens to hundreds of milliseconds,
/// and the per-request timeout caps the tail.
const DURATION_BUCKETS: [f64; 9] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The `le` label of each bucket, as the text format writes it.
const BUCKET_LABELS: [&str; 9] = ["0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30"];

/// `kraken_requests_total`.
pub const REQUESTS: Family = Family {
    name: "kraken_requests_total",
    help: "Calls this exporter made to Kraken's REST API, including retries. Scrapes served from the cached snapshot make no call.",
    kind: Kind::Counter,
};

/// `kraken_request_errors_total`.
pub const ERRORS: Family = Family {
    name: "kraken_request_errors_total",
    help: "Calls to Kraken that failed, by reason: invalid_key, invalid_signature, invalid_nonce, permission_denied, rate_limited, lockout, unavailable, timeout, http, decode, no_result, nonce_file, other.",
    kind: Kind::Counter,
};

/// `kraken_request_duration_seconds`.
pub const DURATION: Family = Family {
    name: "kraken_request_duration_seconds",
    help: "Time from sending a call to Kraken to reading its whole answer, successful or not.",
    kind: Kind::Histogram,
};

/// Counters of one (account, endpoint): plain atomics, so counting a call never blocks a scrape.
#[derive(Debug, Default)]
struct EndpointCounters {
    /// Calls made.
    requests: AtomicU64,
    /// Failed calls, indexed like [`Reason::ALL`].
    errors: [AtomicU64; Reason::ALL.len()],
    /// Calls per latency bucket (not cumulative; summed when written).
    buckets: [AtomicU64; DURATION_BUCKETS.len()],
    /// Calls slower than the largest bucket.
    over: AtomicU64,
    /// Total latency, as `f64` bits.
    sum: AtomicU64,
}

impl EndpointCounters {
    fn observe(&self, elapsed: Duration, error: Option<Reason>) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let seconds = elapsed.as_secs_f64();
        match DURATION_BUCKETS.iter().position(|bound| seconds <= *bound) {
            Some(i) => self.buckets[i].fetch_add(1, Ordering::Relaxed),
            None => self.over.fetch_add(1, Ordering::Relaxed),
        };
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + seconds).to_bits())
            });
        if let Some(reason) = error {
            let index = Reason::ALL.iter().position(|r| *r == reason).unwrap_or(0);
            self.errors[index].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Counters and the latency histogram of calls to Kraken, per (account, endpoint). These live
/// for the whole process (counters must never go back), unlike the families built per scrape.
#[derive(Debug, Default)]
pub struct RequestMetrics {
    /// (account, endpoint) → counters, in the order they are written (endpoints sort by name).
    table: RwLock<BTreeMap<(String, Endpoint), Arc<EndpointCounters>>>,
    /// Bumped by every change to anything the exposition shows (a call counted here, a refresh,
    /// a reload, new prices), so a rendered body can be reused until the next change.
    generation: AtomicU64,
}

impl RequestMetrics {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    fn counters(&self, account: &str, endpoint: Endpoint) -> Arc<EndpointCounters> {
        let key = (account.to_owned(), endpoint);
        if let Some(found) = self
            .table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Arc::clone(found);
        }
        let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
        Arc::clone(table.entry(key).or_default())
    }

    /// Creates the request and error counters of an account's endpoints at zero, before any
    /// call: a counter that first appears at 1 hides its first error from `increase()`.
    pub fn prepare(&self, account: &str, endpoints: &[Endpoint]) {
        for endpoint in endpoints {
            self.counters(account, *endpoint);
        }
        self.touch();
    }

    /// Records that something the exposition shows has changed. Callers touch *after* their
    /// change is visible, so a body rendered from the old state is never taken as current.
    pub(crate) fn touch(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// The number of changes so far.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Drops every series of an account that is no longer configured, so a removed account
    /// does not linger in the exposition.
    pub(crate) fn forget(&self, account: &str) {
        self.table
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(name, _), _| name != account);
        self.touch();
    }

    /// Calls counted so far for an account and endpoint.
    #[cfg(test)]
    pub(crate) fn requests(&self, account: &str, endpoint: Endpoint) -> u64 {
        self.counters(account, endpoint)
            .requests
            .load(Ordering::Relaxed)
    }

    /// Errors counted so far for an account, endpoint and reason.
    #[cfg(test)]
    pub(crate) fn errors(&self, account: &str, endpoint: Endpoint, reason: Reason) -> u64 {
        let index = Reason::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        self.counters(account, endpoint).errors[index].load(Ordering::Relaxed)
    }

    /// The series to write, optionally of one account only.
    fn snapshot(
        &self,
        only_account: Option<&str>,
    ) -> Vec<((String, Endpoint), Arc<EndpointCounters>)> {
        self.table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|((account, _), _)| only_account.is_none_or(|name| name == account))
            .map(|(key, counters)| (key.clone(), Arc::clone(counters)))
            .collect()
    }
}

impl CallObserver for RequestMetrics {
    /// Counts one call.
    fn observe(&self, account: &str, endpoint: Endpoint, elapsed: Duration, error: Option<Reason>) {
        self.counters(account, endpoint).observe(elapsed, error);
        self.touch();
    }
}

/// The three request families, in name order: duration, errors, requests.
pub(crate) fn collect(requests: &RequestMetrics, only_account: Option<&str>, out: &mut Exposition) {
    let series = requests.snapshot(only_account);
    let mut f = out.family(&DURATION);
    for ((account, endpoint), counters) in &series {
        let endpoint = endpoint.as_str();
        if counters.requests.load(Ordering::Relaxed) == 0 {
            continue;
        }
        let mut cumulative = 0;
        for (bucket, le) in counters.buckets.iter().zip(BUCKET_LABELS) {
            cumulative += bucket.load(Ordering::Relaxed);
            let labels = [
                ("account", account.as_str()),
                ("endpoint", endpoint),
                ("le", le),
            ];
            f.suffixed("_bucket", &labels, Value::Count(cumulative));
        }
        let total = cumulative + counters.over.load(Ordering::Relaxed);
        let labels = [
            ("account", account.as_str()),
            ("endpoint", endpoint),
            ("le", "+Inf"),
        ];
        f.suffixed("_bucket", &labels, Value::Count(total));
        let labels = [("account", account.as_str()), ("endpoint", endpoint)];
        let sum = f64::from_bits(counters.sum.load(Ordering::Relaxed));
        f.suffixed("_sum", &labels, Value::Float(sum));
        f.suffixed("_count", &labels, Value::Count(total));
    }
    // Reasons in label order, as a sorted exposition lists them.
    let mut reasons: Vec<(usize, Reason)> = Reason::ALL.into_iter().enumerate().collect();
    reasons.sort_by_key(|(_, reason)| reason.as_str());
    let mut f = out.family(&ERRORS);
    for ((account, endpoint), counters) in &series {
        for (index, reason) in &reasons {
            let labels = [
                ("account", account.as_str()),
                ("endpoint", endpoint.as_str()),
                ("reason", reason.as_str()),
            ];
            f.sample(
                &labels,
                Value::Count(counters.errors[*index].load(Ordering::Relaxed)),
            );
        }
    }
    let mut f = out.family(&REQUESTS);
    for ((account, endpoint), counters) in &series {
        let labels = [
            ("account", account.as_str()),
            ("endpoint", endpoint.as_str()),
        ];
        f.sample(
            &labels,
            Value::Count(counters.requests.load(Ordering::Relaxed)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exposition of request counters alone, optionally of one account.
    fn exposition(metrics: &RequestMetrics, only: Option<&str>) -> String {
        let mut out = Exposition::with_capacity(0);
        collect(metrics, only, &mut out);
        String::from_utf8(out.into_bytes()).unwrap()
    }

    #[test]
    fn request_counters_render_as_a_histogram_and_counters_in_label_order() {
        let metrics = RequestMetrics::new();
        metrics.prepare("a", &[Endpoint::BalanceEx]);
        metrics.observe("a", Endpoint::BalanceEx, Duration::from_millis(70), None);
        metrics.observe(
            "a",
            Endpoint::BalanceEx,
            Duration::from_secs(40),
            Some(Reason::Timeout),
        );
        metrics.observe("b", Endpoint::Assets, Duration::from_millis(10), None);
        let text = exposition(&metrics, None);
        assert!(text.contains("# TYPE kraken_request_duration_seconds histogram\n"));
        assert!(text.contains("kraken_request_duration_seconds_bucket{account=\"a\",endpoint=\"BalanceEx\",le=\"0.05\"} 0\n"));
        assert!(text.contains("kraken_request_duration_seconds_bucket{account=\"a\",endpoint=\"BalanceEx\",le=\"0.1\"} 1\n"));
        assert!(text.contains("kraken_request_duration_seconds_bucket{account=\"a\",endpoint=\"BalanceEx\",le=\"30\"} 1\n"));
        assert!(text.contains("kraken_request_duration_seconds_bucket{account=\"a\",endpoint=\"BalanceEx\",le=\"+Inf\"} 2\n"));
        assert!(text.contains(
            "kraken_request_duration_seconds_count{account=\"a\",endpoint=\"BalanceEx\"} 2\n"
        ));
        assert!(text.contains("kraken_request_errors_total{account=\"a\",endpoint=\"BalanceEx\",reason=\"timeout\"} 1\n"));
        assert!(text.contains("kraken_requests_total{account=\"b\",endpoint=\"Assets\"} 1\n"));
        let decode = text.find("reason=\"decode\"").unwrap();
        let unavailable = text.find("reason=\"unavailable\"").unwrap();
        assert!(decode < unavailable, "reasons in label order");
        assert_eq!(metrics.errors("a", Endpoint::BalanceEx, Reason::Timeout), 1);
        metrics.forget("a");
        let text = exposition(&metrics, None);
        assert!(!text.contains("account=\"a\""));
        let probe = exposition(&metrics, Some("nobody"));
        assert!(!probe.contains("account=\"b\""), "{probe}");
    }

    #[test]
    fn the_error_help_lists_every_reason_in_order() {
        let listed = ERRORS
            .help
            .split_once("by reason: ")
            .map(|(_, list)| list.trim_end_matches('.'))
            .unwrap();
        let labels: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(listed.split(", ").collect::<Vec<_>>(), labels);
    }

    #[test]
    fn request_series_are_written_in_endpoint_name_order() {
        let metrics = RequestMetrics::new();
        metrics.prepare(
            "a",
            &[
                Endpoint::BalanceEx,
                Endpoint::Balance,
                Endpoint::Assets,
                Endpoint::AssetPairs,
            ],
        );
        let text = exposition(&metrics, None);
        let at = |endpoint: &str| {
            text.find(&format!(
                "kraken_requests_total{{account=\"a\",endpoint=\"{endpoint}\"}} 0\n"
            ))
            .unwrap_or_else(|| panic!("no {endpoint} in {text}"))
        };
        assert!(at("AssetPairs") < at("Assets"));
        assert!(at("Assets") < at("Balance"));
        assert!(at("Balance") < at("BalanceEx"));
    }
}
