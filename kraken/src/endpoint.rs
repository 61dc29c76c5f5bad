//! The Kraken REST methods this exporter knows, as one closed type.
//!
//! Owns each method's name (the `endpoint` label value), its URL path and whether it is
//! private (signed `POST`) or public (`GET`).
//! Must not: know how a method is called or answered; the client, the simulator, the request
//! counters and the snapshot all name methods through this type, so a misspelt method does not
//! compile.

use std::cmp::Ordering;
use std::fmt;

/// One Kraken REST method.
///
/// Ordered by name (as the `endpoint` label sorts), not by declaration, so the request families
/// keep their order in the exposition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// Private: balances with the amount held by open orders.
    BalanceEx,
    /// Private: balances (totals only).
    Balance,
    /// Private: the account valued in one asset (`eb`).
    TradeBalance,
    /// Private: the key's name and permissions.
    GetApiKeyInfo,
    /// Private: funds allocated to Earn strategies, by state (needs only "Funds: Query").
    EarnAllocations,
    /// Private: withdrawal methods, answered only for keys that may withdraw.
    WithdrawMethods,
    /// Public: asset codes and their short names.
    Assets,
    /// Public: trading pairs with their base and quote.
    AssetPairs,
    /// Public: last trade prices.
    Ticker,
    /// Public: the server time.
    Time,
}

impl Endpoint {
    /// Every method, in declaration order.
    pub(crate) const ALL: [Endpoint; 10] = [
        Endpoint::BalanceEx,
        Endpoint::Balance,
        Endpoint::TradeBalance,
        Endpoint::GetApiKeyInfo,
        Endpoint::EarnAllocations,
        Endpoint::WithdrawMethods,
        Endpoint::Assets,
        Endpoint::AssetPairs,
        Endpoint::Ticker,
        Endpoint::Time,
    ];

    /// Kraken's method name, which is also the `endpoint` label value (`BalanceEx`); methods in a
    /// group keep Kraken's group prefix (`Earn/Allocations`).
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::BalanceEx => "BalanceEx",
            Endpoint::Balance => "Balance",
            Endpoint::TradeBalance => "TradeBalance",
            Endpoint::GetApiKeyInfo => "GetApiKeyInfo",
            Endpoint::EarnAllocations => "Earn/Allocations",
            Endpoint::WithdrawMethods => "WithdrawMethods",
            Endpoint::Assets => "Assets",
            Endpoint::AssetPairs => "AssetPairs",
            Endpoint::Ticker => "Ticker",
            Endpoint::Time => "Time",
        }
    }

    /// The URL path after the base URL (`/0/private/BalanceEx`); the signature covers it.
    pub(crate) fn path(self) -> &'static str {
        match self {
            Endpoint::BalanceEx => "/0/private/BalanceEx",
            Endpoint::Balance => "/0/private/Balance",
            Endpoint::TradeBalance => "/0/private/TradeBalance",
            Endpoint::GetApiKeyInfo => "/0/private/GetApiKeyInfo",
            Endpoint::EarnAllocations => "/0/private/Earn/Allocations",
            Endpoint::WithdrawMethods => "/0/private/WithdrawMethods",
            Endpoint::Assets => "/0/public/Assets",
            Endpoint::AssetPairs => "/0/public/AssetPairs",
            Endpoint::Ticker => "/0/public/Ticker",
            Endpoint::Time => "/0/public/Time",
        }
    }

    /// The method a URL path names, if it is one this exporter knows.
    pub(crate) fn from_path(path: &str) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| e.path() == path)
    }

    /// Whether the method is private: signed with a key and sent with `POST`.
    pub(crate) fn is_private(self) -> bool {
        matches!(
            self,
            Endpoint::BalanceEx
                | Endpoint::Balance
                | Endpoint::TradeBalance
                | Endpoint::GetApiKeyInfo
                | Endpoint::EarnAllocations
                | Endpoint::WithdrawMethods
        )
    }

    /// Whether a balance answer of this method says how much is held by open orders: BalanceEx
    /// does, Balance does not, so after Balance a hold is unknown rather than zero.
    pub fn reports_holds(self) -> bool {
        self == Endpoint::BalanceEx
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialOrd for Endpoint {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Endpoint {
    /// By name, so a table keyed by endpoint lists them as a sorted exposition does.
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_method_under_public_or_private() {
        for endpoint in Endpoint::ALL {
            let folder = if endpoint.is_private() {
                "private"
            } else {
                "public"
            };
            assert_eq!(
                endpoint.path(),
                format!("/0/{folder}/{}", endpoint.as_str())
            );
            assert_eq!(Endpoint::from_path(endpoint.path()), Some(endpoint));
        }
        assert_eq!(Endpoint::from_path("/0/private/AddOrder"), None);
        assert_eq!(Endpoint::from_path("/0/public/balance"), None);
    }

    #[test]
    fn endpoints_sort_by_name_as_the_exposition_lists_them() {
        let mut sorted = Endpoint::ALL;
        sorted.sort();
        let names: Vec<&str> = sorted.iter().map(|e| e.as_str()).collect();
        let mut expected: Vec<&str> = Endpoint::ALL.iter().map(|e| e.as_str()).collect();
        expected.sort_unstable();
        assert_eq!(names, expected);
        assert!(Endpoint::AssetPairs < Endpoint::Assets);
        assert!(Endpoint::Balance < Endpoint::BalanceEx);
    }

    #[test]
    fn only_balance_ex_reports_holds() {
        let reporting: Vec<Endpoint> = Endpoint::ALL
            .into_iter()
            .filter(|e| e.reports_holds())
            .collect();
        assert_eq!(reporting, [Endpoint::BalanceEx]);
    }
}
