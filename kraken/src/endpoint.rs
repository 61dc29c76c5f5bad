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
    /// Private: a token for Kraken's authenticated WebSocket API (needs "WebSocket interface").
    GetWebSocketsToken,
    /// Private: recent deposits and their status (needs "Funds: Query").
    DepositStatus,
    /// Private: recent withdrawals and their status (needs "Funds: Withdraw" or "Data: Query
    /// ledger entries").
    WithdrawStatus,
    /// Public: asset codes and their short names.
    Assets,
    /// Public: trading pairs with their base and quote.
    AssetPairs,
    /// Public: last trade prices.
    Ticker,
    /// Public: the server time.
    Time,
    /// Public: whether the exchange is online, in maintenance, cancel-only or post-only.
    SystemStatus,
}

impl Endpoint {
    /// Every method, in declaration order.
    pub(crate) const ALL: [Endpoint; 14] = [
        Endpoint::BalanceEx,
        Endpoint::Balance,
        Endpoint::TradeBalance,
        Endpoint::GetApiKeyInfo,
        Endpoint::EarnAllocations,
        Endpoint::WithdrawMethods,
        Endpoint::GetWebSocketsToken,
        Endpoint::DepositStatus,
        Endpoint::WithdrawStatus,
        Endpoint::Assets,
        Endpoint::AssetPairs,
        Endpoint::Ticker,
        Endpoint::Time,
        Endpoint::SystemStatus,
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
            Endpoint::GetWebSocketsToken => "GetWebSocketsToken",
            Endpoint::DepositStatus => "DepositStatus",
            Endpoint::WithdrawStatus => "WithdrawStatus",
            Endpoint::Assets => "Assets",
            Endpoint::AssetPairs => "AssetPairs",
            Endpoint::Ticker => "Ticker",
            Endpoint::Time => "Time",
            Endpoint::SystemStatus => "SystemStatus",
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
            Endpoint::GetWebSocketsToken => "/0/private/GetWebSocketsToken",
            Endpoint::DepositStatus => "/0/private/DepositStatus",
            Endpoint::WithdrawStatus => "/0/private/WithdrawStatus",
            Endpoint::Assets => "/0/public/Assets",
            Endpoint::AssetPairs => "/0/public/AssetPairs",
            Endpoint::Ticker => "/0/public/Ticker",
            Endpoint::Time => "/0/public/Time",
            Endpoint::SystemStatus => "/0/public/SystemStatus",
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
                | Endpoint::GetWebSocketsToken
                | Endpoint::DepositStatus
                | Endpoint::WithdrawStatus
        )
    }

    /// What one call adds to the key's private rate counter (Kraken's rate-limit guide: 1 per
    /// call, 2 for ledger and trade history, none of which this crate calls). Public methods are
    /// limited per IP instead, so they cost the key nothing.
    pub fn rate_cost(self) -> u32 {
        u32::from(self.is_private())
    }

    /// The key permission Kraken documents for the method, as its key settings name it; `None`
    /// for public methods and for GetApiKeyInfo, which needs none. From the method pages of
    /// docs.kraken.com and `spot-rest/openapi_v3.yaml` of krakenfx/api-specs; TradeBalance is
    /// documented two ways (see `docs/kraken-api.md`).
    pub fn permission(self) -> Option<&'static str> {
        match self {
            Endpoint::BalanceEx
            | Endpoint::Balance
            | Endpoint::EarnAllocations
            | Endpoint::DepositStatus => Some("Funds: Query"),
            Endpoint::TradeBalance => {
                Some("Orders and trades: Query open orders & trades (or Funds: Query)")
            }
            Endpoint::WithdrawMethods => Some("Funds: Query and Funds: Withdraw"),
            Endpoint::WithdrawStatus => Some("Funds: Withdraw or Data: Query ledger entries"),
            Endpoint::GetWebSocketsToken => Some("WebSocket interface"),
            Endpoint::GetApiKeyInfo
            | Endpoint::Assets
            | Endpoint::AssetPairs
            | Endpoint::Ticker
            | Endpoint::Time
            | Endpoint::SystemStatus => None,
        }
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
    fn private_methods_cost_one_and_name_their_permission() {
        for endpoint in Endpoint::ALL {
            assert_eq!(endpoint.rate_cost(), u32::from(endpoint.is_private()));
            if !endpoint.is_private() {
                assert_eq!(endpoint.permission(), None, "{endpoint}");
            }
        }
        assert_eq!(
            Endpoint::GetWebSocketsToken.permission(),
            Some("WebSocket interface")
        );
        assert_eq!(Endpoint::DepositStatus.permission(), Some("Funds: Query"));
        assert!(
            Endpoint::WithdrawStatus
                .permission()
                .unwrap()
                .contains("Query ledger entries")
        );
        assert_eq!(Endpoint::GetApiKeyInfo.permission(), None);
        assert_eq!(
            Endpoint::from_path("/0/public/SystemStatus"),
            Some(Endpoint::SystemStatus)
        );
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
