//! What the simulated Kraken is and what it remembers: its configuration, balances, prices,
//! injected faults, call counts and what Kraken keeps per key.
//!
//! Owns [`Shared`] (shared by the handle and every connection task), the state behind its one
//! mutex, and the balances and prices as served right now (drifted in `--demo`).
//! Must not: hold its mutex across an await.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::auth::{KeyState, RateCounter, grants, required_permissions};
use super::data::{
    DEFAULT_BALANCES, PAIRS, PRICE_DRIFT_PHASE, SimEarn, SimKeyInfo, default_earn,
    default_key_info, default_prices, drifted,
};
use super::faults::{Fault, Faults};
use super::ledger::{SimMovement, StreamState};
use crate::endpoint::Endpoint;
use crate::parse::SystemStatus;
use crate::secret::Credentials;

/// Configuration and mutable state shared by the handle and every connection task.
pub(super) struct Shared {
    /// The only credentials accepted.
    pub(super) credentials: Credentials,
    /// (max, decay per second) of the rate counter, if enabled.
    pub(super) rate_limit: Option<(f64, f64)>,
    /// (max, decay per second) of the public-call counter, if enabled.
    pub(super) public_rate_limit: Option<(f64, f64)>,
    /// Sleep before each answer.
    pub(super) latency: Duration,
    /// Whether balances drift with time.
    pub(super) moving: bool,
    /// Whether BalanceEx is answered or refused.
    pub(super) balance_ex_enabled: bool,
    /// The key's raw permission names.
    pub(super) permissions: Vec<String>,
    /// Whether GetApiKeyInfo is a known method.
    pub(super) api_key_info_enabled: bool,
    /// Whether TradeBalance is answered or refused.
    pub(super) trade_balance_enabled: bool,
    /// Origin of the drift when `moving`.
    pub(super) started: Instant,
    /// Everything that changes; never held across an await.
    pub(super) state: Mutex<SimState>,
    /// Woken whenever a call is counted, so a test can wait for a request to reach the sim
    /// instead of sleeping.
    pub(super) call_recorded: Notify,
    /// Given one permit once the accept loop has ended and closed its listener, so a test can
    /// wait for the port to close instead of sleeping.
    pub(super) listener_closed: Notify,
}

impl Shared {
    /// Locks the state; a panic in another holder cannot corrupt plain counters, so poisoning is
    /// ignored.
    pub(super) fn state(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Shared {
    /// Counts a call, takes the fault that applies to it, if any, and wakes whoever waits for
    /// calls.
    pub(super) fn record_call(&self, endpoint: Endpoint) -> Option<Fault> {
        let fault = self.state().record_call(endpoint);
        self.call_recorded.notify_waiters();
        fault
    }

    /// Balances as served right now: as set, or drifted when `moving`.
    pub(super) fn current_balances(&self) -> Vec<(String, f64, f64)> {
        let balances = self.state().balances.clone();
        if !self.moving {
            return balances;
        }
        let elapsed = self.started.elapsed().as_secs_f64();
        balances
            .into_iter()
            .enumerate()
            .map(|(index, (code, balance, hold))| (code, drifted(balance, index, elapsed), hold))
            .collect()
    }

    /// Prices as served right now: as set, or drifted when `moving`, each pair on its own phase.
    pub(super) fn current_prices(&self) -> HashMap<String, f64> {
        let prices = self.state().prices.clone();
        if !self.moving {
            return prices;
        }
        let elapsed = self.started.elapsed().as_secs_f64();
        prices
            .into_iter()
            .map(|(pair, price)| {
                let index = PAIRS.iter().position(|p| p.0 == pair).unwrap_or(0);
                let price = drifted(price, PRICE_DRIFT_PHASE + index, elapsed);
                (pair, price)
            })
            .collect()
    }
}

impl Shared {
    /// Whether the key may call `endpoint` once authenticated; `Err` is Kraken's answer when not.
    /// A key needs the permissions of [`required_permissions`] (`EGeneral:Permission denied`
    /// without them); TradeBalance also answers a key with "Funds: Query" when
    /// `trade_balance_enabled` plays the API-keys guide's reading. BalanceEx with
    /// `balance_ex_enabled: false` answers `EAPI:Feature disabled` whatever the key, like a Kraken
    /// that does not offer it (Balance, which needs the same permission, still works).
    pub(super) fn permits(&self, endpoint: Endpoint) -> Result<(), &'static str> {
        if endpoint == Endpoint::BalanceEx && !self.balance_ex_enabled {
            return Err("EAPI:Feature disabled");
        }
        let holds = |code: &str| grants(&self.permissions, code);
        let granted = required_permissions(endpoint)
            .iter()
            .all(|code| holds(code))
            || (endpoint == Endpoint::TradeBalance
                && self.trade_balance_enabled
                && holds("query-funds"))
            || (endpoint == Endpoint::WithdrawStatus && holds("query-ledger"));
        if granted {
            Ok(())
        } else {
            Err("EGeneral:Permission denied")
        }
    }
}

/// The mutable part of the simulated exchange.
pub(super) struct SimState {
    /// (code, balance, hold_trade) as set, before any drift.
    pub(super) balances: Vec<(String, f64, f64)>,
    /// Last trade price per canonical pair name, as set, before any drift.
    pub(super) prices: HashMap<String, f64>,
    /// Injected faults.
    pub(super) faults: Faults,
    /// Requests seen per method.
    pub(super) calls: HashMap<Endpoint, u64>,
    /// What Kraken remembers about the key: last nonce, rate counter.
    pub(super) key: KeyState,
    /// The Earn allocations, as Earn/Allocations lists them.
    pub(super) earn: Vec<SimEarn>,
    /// The key's name, expiry, creation time, allowlist and last use (GetApiKeyInfo).
    pub(super) key_info: SimKeyInfo,
    /// The counter of public calls (Kraken's per-IP limit).
    pub(super) public_counter: RateCounter,
    /// What DepositStatus lists, newest first.
    pub(super) deposits: Vec<SimMovement>,
    /// What WithdrawStatus lists, newest first.
    pub(super) withdrawals: Vec<SimMovement>,
    /// What SystemStatus and the WebSocket `status` channel say.
    pub(super) system_status: SystemStatus,
    /// Tokens, counters and faults of the WebSocket side.
    pub(super) stream: StreamState,
}

impl SimState {
    pub(super) fn new() -> Self {
        Self {
            balances: DEFAULT_BALANCES
                .iter()
                .map(|&(code, balance, hold)| (code.to_owned(), balance, hold))
                .collect(),
            prices: default_prices(),
            faults: Faults::default(),
            calls: HashMap::new(),
            key: KeyState::new(Instant::now()),
            earn: default_earn(),
            key_info: default_key_info(),
            public_counter: RateCounter::new(Instant::now()),
            deposits: Vec::new(),
            withdrawals: Vec::new(),
            system_status: SystemStatus::Online,
            stream: StreamState::new(),
        }
    }

    /// Charges one public call to the public counter; false when it is over `limit`'s maximum.
    pub(super) fn charge_public(&mut self, limit: Option<(f64, f64)>) -> bool {
        limit.is_none_or(|(max, decay)| self.public_counter.charge(Instant::now(), max, decay))
    }

    /// Counts a call and takes the fault that applies to it, if any.
    pub(super) fn record_call(&mut self, endpoint: Endpoint) -> Option<Fault> {
        *self.calls.entry(endpoint).or_insert(0) += 1;
        self.faults.take(endpoint)
    }
}
