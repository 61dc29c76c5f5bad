//! Kraken's own status: online, maintenance, cancel_only or post_only.
//!
//! Public data that belongs to no account: SystemStatus is asked by
//! [`crate::market::Market`] every minute, in the background (never awaited by a scrape), and
//! shown until it is three minutes old. Writes `kraken_system_status`, on `/metrics` only. The
//! balance alerts read it to say in their annotation when Kraken is in maintenance, which
//! explains failing refreshes and frozen balances.
//! Must not: make an account down (Kraken in maintenance still answers the balance calls it
//! answers, and `kraken_up` says what they did).

use kraken::{SystemState, SystemStatus};

use crate::exposition::{Exposition, Family, Kind};

/// `kraken_system_status`.
pub const STATUS: Family = Family {
    name: "kraken_system_status",
    help: "1 for Kraken's current status, 0 for the others: online, maintenance (no trading, funding may be unavailable), cancel_only, post_only; from Kraken's public SystemStatus, asked every minute. Another status Kraken reports is shown as its own series.",
    kind: Kind::Gauge,
};

/// The statuses Kraken documents, each exported as a series.
const DOCUMENTED: [SystemStatus; 4] = [
    SystemStatus::Online,
    SystemStatus::Maintenance,
    SystemStatus::CancelOnly,
    SystemStatus::PostOnly,
];

/// Writes `kraken_system_status`: every documented status, 1 for the current one (and the
/// current one too when Kraken reports a status it does not document).
pub fn collect(state: &SystemState, out: &mut Exposition) {
    let mut f = out.family(&STATUS);
    let current = state.status.as_str();
    let mut listed = false;
    for status in &DOCUMENTED {
        let name = status.as_str();
        listed |= name == current;
        f.sample(&[("status", name)], name == current);
    }
    if !listed {
        f.sample(&[("status", current)], true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposition(status: SystemStatus) -> String {
        let mut out = Exposition::with_capacity(0);
        collect(
            &SystemState {
                status,
                timestamp: None,
            },
            &mut out,
        );
        String::from_utf8(out.into_bytes()).unwrap()
    }

    #[test]
    fn the_current_status_reads_1_and_every_other_documented_one_0() {
        let text = exposition(SystemStatus::Maintenance);
        assert!(
            text.contains("kraken_system_status{status=\"maintenance\"} 1\n"),
            "{text}"
        );
        for other in ["online", "cancel_only", "post_only"] {
            assert!(
                text.contains(&format!("kraken_system_status{{status=\"{other}\"}} 0\n")),
                "{text}"
            );
        }
        let text = exposition(SystemStatus::Other("limit_only".into()));
        assert!(
            text.contains("kraken_system_status{status=\"limit_only\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("kraken_system_status{status=\"online\"} 0\n"),
            "{text}"
        );
    }
}
