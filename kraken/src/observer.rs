//! How the client reports the calls it makes, without knowing who counts them.
//!
//! Owns the [`CallObserver`] trait: one notification per finished call, with the account, the
//! method, how long it took and why it failed.
//! Must not: depend on how calls are counted or exported; the exporter's request metrics
//! implement the trait, tests implement it to count calls.

use std::time::Duration;

use super::endpoint::Endpoint;
use super::error::Reason;

/// Told about every call the client finishes, successful or not (retries included). Called on
/// the calling task, so an implementation must not block.
pub trait CallObserver: Send + Sync {
    /// One call to `endpoint` on behalf of `account` took `elapsed` and failed for `error`
    /// (`None` on success).
    fn observe(&self, account: &str, endpoint: Endpoint, elapsed: Duration, error: Option<Reason>);
}

/// Counts calls per account, method and outcome, for the tests of the wire layer.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct CountingObserver {
    /// Every call seen: (account, method, error).
    calls: std::sync::Mutex<Vec<(String, Endpoint, Option<Reason>)>>,
}

#[cfg(test)]
impl CountingObserver {
    /// Calls seen for an account and method.
    pub(crate) fn requests(&self, account: &str, endpoint: Endpoint) -> u64 {
        self.count(|a, e, _| a == account && e == endpoint)
    }

    /// Failed calls seen for an account, method and reason.
    pub(crate) fn errors(&self, account: &str, endpoint: Endpoint, reason: Reason) -> u64 {
        self.count(|a, e, r| a == account && e == endpoint && r == Some(reason))
    }

    fn count(&self, wanted: impl Fn(&str, Endpoint, Option<Reason>) -> bool) -> u64 {
        let calls = self.calls.lock().unwrap();
        calls.iter().filter(|(a, e, r)| wanted(a, *e, *r)).count() as u64
    }
}

#[cfg(test)]
impl CallObserver for CountingObserver {
    fn observe(&self, account: &str, endpoint: Endpoint, _: Duration, error: Option<Reason>) {
        let mut calls = self.calls.lock().unwrap();
        calls.push((account.to_owned(), endpoint, error));
    }
}
