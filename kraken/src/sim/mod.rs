//! A simulated Kraken REST API, served in-process on `127.0.0.1`.
//!
//! Owns the fake exchange behind `--demo` and behind every integration test: balances, asset
//! metadata, trading pairs and their prices, the key's permissions, per-key authentication (API
//! key, signature, nonce, static 2FA password), Kraken's per-key rate counter, and fault
//! injection (hangs, trickled bodies, HTML error pages, truncated JSON, Kraken error envelopes).
//! The exporter reaches it through its real HTTP client, so on the wire it answers like Kraken:
//! API errors arrive with HTTP 200 in the `{"error":[...]}` envelope, amounts are decimal strings
//! with 10 decimals, and every answer is `application/json` (except injected HTML error pages,
//! which carry `text/html` like the proxies that send them).
//!
//! Must not: contact the network beyond its own `127.0.0.1` listener, read real credentials, or
//! outlive its handle (dropping [`SimKraken`] stops it).
//!
//! Order in which a call is handled, chosen to stay simple and predictable in tests:
//! 1. The call is counted in [`SimKraken::calls`] (for known methods only) and an injected fault,
//!    if any, is taken.
//! 2. The configured latency is slept.
//! 3. A taken fault answers now: it skips every check and never touches the nonce or the rate
//!    counters, even when the request was correctly signed. A path that names no known method
//!    answers HTTP 404 with `{"error":["EGeneral:Unknown method"]}`, as Kraken does.
//! 4. Public methods must be `GET`, private ones `POST` (otherwise HTTP 405). With
//!    [`SimOptions::public_rate_limit`], every public call is charged to one counter for the
//!    whole sim (Kraken counts public calls per IP) and answers `EGeneral:Too many requests`
//!    while it is over its maximum.
//! 5. Private calls are checked in order: `API-Key` → `API-Sign` present → nonce parses →
//!    signature matches → nonce increases → `otp`. Every failure answers an error and leaves the
//!    last nonce unchanged. A call that passes is authenticated: its nonce becomes the last nonce.
//! 6. The rate counter is charged 1 per call made with the key (`API-Key` known), failed ones
//!    too, as Kraken counts them; a call that passes every check while the counter is over its
//!    maximum answers `EAPI:Rate limit exceeded`.
//! 7. `BalanceEx` with `balance_ex_enabled: false` answers `EAPI:Feature disabled`.
//! 8. `GetApiKeyInfo` with `api_key_info_enabled: false` answers HTTP 404 with
//!    `EGeneral:Unknown method` before any check (a Kraken that predates the method), so it
//!    consumes no nonce.
//! 9. Every private method needs the permissions `auth.rs` lists for it (`query-funds` for the
//!    balances and Earn, `query-funds` and `withdraw-funds` for `WithdrawMethods`,
//!    `query-open-trades` for `TradeBalance`, or `query-funds` with `trade_balance_enabled`);
//!    without them it answers `EGeneral:Permission denied`, its nonce used.
//!
//! 10. `GetWebSocketsToken` needs `create-ws-token`, `DepositStatus` `query-funds`,
//!     `WithdrawStatus` `withdraw-funds` or `query-ledger`. Tokens are issued by the sim and
//!     accepted by its WebSocket side for 900 s, or for good once used.
//!
//! Public endpoints: `Assets` (`?aclass=`, default `currency`; the tokenized `AAPLx` only with
//! `tokenized_asset`), `AssetPairs` (`?aclass_base=`, likewise), `Ticker` (`?pair=A,B`, by
//! canonical name or altname, answered under the canonical name; one unknown pair fails the
//! whole call with `EQuery:Unknown asset pair`, no `pair` lists every pair), `Time` and
//! `SystemStatus`.
//!
//! WebSocket v2 at [`SimKraken::ws_url`] (`ws://127.0.0.1:PORT/v2`, a listener of its own as
//! Kraken's is a host of its own): the `balances` channel with a snapshot built from the
//! balances (REST codes named as v2 names them: `XXBT` → `BTC`, suffixed codes as Earn wallets),
//! an `update` per [`SimKraken::post_transaction`], heartbeats, `ping` → `pong`, the `status`
//! channel, and faults (see `ws.rs`). [`SimKraken::start_demo_activity`] moves money for the
//! demo.
//!
//! On shutdown every open connection is closed, which is also how a [`Fault::Hang`] or
//! [`Fault::Trickle`] ends.
//!
//! Files, each importing only those listed after it: `server.rs` accepts connections and routes
//! each request in the order above; `answers.rs` writes each method's answer in Kraken's
//! format; `state.rs` is what the sim remembers (balances, prices, faults, call counts, the
//! key's nonce and rate counter); `auth.rs` checks key, signature, nonce and 2FA password and
//! keeps the rate counter; `faults.rs` holds injected faults and the answers they produce;
//! `response.rs` frames answers on the wire; `data.rs` holds the exchange's tables. Money in
//! motion: `demo.rs` posts the demo's transactions; `ws.rs` serves WebSocket v2 and sends each
//! posted transaction; `funding.rs` answers GetWebSocketsToken, DepositStatus, WithdrawStatus
//! and SystemStatus; `ledger.rs` holds entries, movements, tokens and the stream's state.

mod answers;
mod auth;
mod data;
mod demo;
mod faults;
mod funding;
mod ledger;
mod response;
mod server;
mod state;
#[cfg(test)]
pub(crate) mod testing;
mod ws;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use self::ledger::StreamSignal;
use self::state::{Shared, SimState};
use crate::endpoint::Endpoint;
use crate::parse::SystemStatus;
use crate::secret::Credentials;

pub use data::{DEMO_BALANCES, SimEarn, SimKeyInfo};
pub use demo::DemoActivity;
pub use faults::{DOCUMENTED_ERRORS, Fault, MALFORMED_RESULTS};
pub use ledger::{LedgerRefused, SimLedgerEntry, SimMovement};

/// Kraken's Starter tier rate counter (max 15, decay 0.33 per second), the tier most exporter
/// keys sit on and the one `--demo` imitates.
pub const STARTER_RATE_LIMIT: (f64, f64) = (15.0, 0.33);

/// Kraken's public-endpoint limit as the sim plays it (max 2, decay 1 per second): about one
/// request per second per IP, with room for one more that arrives a little early. ccxt models
/// Kraken's public limit as one request per second; Kraken publishes no exact figure.
pub const PUBLIC_RATE_LIMIT: (f64, f64) = (2.0, 1.0);

/// How the simulated exchange behaves; each test picks the variation it exercises.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Credentials the sim accepts; None generates a random key (56-char base64-ish text) and a
    /// random 64-byte secret. With `Some` and an `otp`, the sim requires that otp on every call.
    pub credentials: Option<Credentials>,
    /// Per-key rate limit counter like Kraken's (max, decay per second); None disables it.
    /// [`STARTER_RATE_LIMIT`] is `(15.0, 0.33)`.
    pub rate_limit: Option<(f64, f64)>,
    /// Public-endpoint counter (max, decay per second) shared by every public call, like Kraken's
    /// per-IP limit; over it, public calls answer `EGeneral:Too many requests`. None disables it
    /// (the default); `--demo` uses [`PUBLIC_RATE_LIMIT`].
    pub public_rate_limit: Option<(f64, f64)>,
    /// Delay added before every answer (simulated network latency).
    pub latency: Duration,
    /// Balances drift slowly over time (demo); false keeps them exactly as set (tests, golden
    /// files).
    pub moving: bool,
    /// Whether the sim offers BalanceEx (false answers it with `EAPI:Feature disabled`, like a
    /// Kraken that does not offer it; Balance still works).
    pub balance_ex_enabled: bool,
    /// The key's permissions as GetApiKeyInfo lists them (Kraken's codes, such as `query-funds`;
    /// `query_funds` and "Funds: Query" are read the same). Each private method answers only a
    /// key with the permissions it needs (see the module docs). Default: `["query-funds"]`, the
    /// one permission an exporter needs.
    pub permissions: Vec<String>,
    /// Whether the sim knows GetApiKeyInfo; false answers it with HTTP 404 and
    /// `EGeneral:Unknown method`, like a Kraken that predates the method, so the audit has to
    /// probe instead.
    pub api_key_info_enabled: bool,
    /// Whether TradeBalance answers a key with "Funds: Query" (the API-keys guide's reading);
    /// false (the default) takes the API reference's, under which it needs `query-open-trades`
    /// and a Query-only key is refused with `EGeneral:Permission denied`.
    pub trade_balance_enabled: bool,
}

impl Default for SimOptions {
    /// The plainest exchange: generated credentials, no rate limit, no latency, fixed balances and
    /// prices, BalanceEx and GetApiKeyInfo available, a key that may only query funds.
    fn default() -> Self {
        Self {
            credentials: None,
            rate_limit: None,
            public_rate_limit: None,
            latency: Duration::ZERO,
            moving: false,
            balance_ex_enabled: true,
            permissions: vec!["query-funds".into()],
            api_key_info_enabled: true,
            trade_balance_enabled: false,
        }
    }
}

/// A running simulated Kraken. Not `Clone`: dropping the handle stops the server, so share it
/// behind an `Arc` when several owners need it.
pub struct SimKraken {
    /// State shared with the connection tasks.
    shared: Arc<Shared>,
    /// Where the listener is bound, for [`SimKraken::url`].
    addr: SocketAddr,
    /// Where the WebSocket listener is bound, for [`SimKraken::ws_url`].
    ws_addr: SocketAddr,
    /// Flipped to `true` once to stop the accept loop and close every connection.
    shutdown: watch::Sender<bool>,
}

impl SimKraken {
    /// Binds 127.0.0.1:0 and serves until dropped or `shutdown`. A random port lets tests run in
    /// parallel without colliding.
    pub async fn start(options: SimOptions) -> std::io::Result<SimKraken> {
        let credentials = options
            .credentials
            .clone()
            .unwrap_or_else(auth::generate_credentials);
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let ws_listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let ws_addr = ws_listener.local_addr()?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            credentials,
            rate_limit: options.rate_limit,
            public_rate_limit: options.public_rate_limit,
            latency: options.latency,
            moving: options.moving,
            balance_ex_enabled: options.balance_ex_enabled,
            permissions: options.permissions,
            api_key_info_enabled: options.api_key_info_enabled,
            trade_balance_enabled: options.trade_balance_enabled,
            started: Instant::now(),
            state: Mutex::new(SimState::new()),
            call_recorded: Notify::new(),
            listener_closed: Notify::new(),
        });
        tokio::spawn(ws::accept_loop(
            ws_listener,
            Arc::clone(&shared),
            shutdown_rx.clone(),
        ));
        tokio::spawn(server::accept_loop(
            listener,
            Arc::clone(&shared),
            shutdown_rx,
        ));
        Ok(SimKraken {
            shared,
            addr,
            ws_addr,
            shutdown,
        })
    }

    /// Base URL like "http://127.0.0.1:PORT" (no trailing slash); the client appends
    /// "/0/private/BalanceEx" etc., exactly as it does for `https://api.kraken.com`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The URL of its WebSocket v2 API, `ws://127.0.0.1:PORT/v2`, where
    /// `wss://ws-auth.kraken.com/v2` would be.
    pub fn ws_url(&self) -> String {
        format!("ws://{}{}", self.ws_addr, ws::WS_PATH)
    }

    /// The credentials it accepts (the generated ones in demo), so the exporter can be configured
    /// to talk to it.
    pub fn credentials(&self) -> Credentials {
        self.shared.credentials.clone()
    }

    /// Replace all balances: (raw Kraken code, balance, hold_trade). Lets a test pin exactly what
    /// the exporter must expose.
    pub fn set_balances(&self, balances: Vec<(String, f64, f64)>) {
        self.shared.state().balances = balances;
    }

    /// Sets the last trade price of one pair, named by its canonical name (`XXBTZUSD`) or altname
    /// (`XBTUSD`), so a test can pin what valuation must compute. Only that pair changes: the EUR
    /// and cross pairs keep their prices.
    ///
    /// # Panics
    /// If the sim does not list the pair (see the module docs): a test asking for one is wrong.
    pub fn set_price(&self, pair: &str, price: f64) {
        let canonical = data::canonical_pair(pair)
            .unwrap_or_else(|| panic!("the simulated Kraken lists no pair {pair:?}"));
        self.shared
            .state()
            .prices
            .insert(canonical.to_owned(), price);
    }

    /// Injects a fault for `endpoint` for the next `times` calls (None = until cleared; `Some(0)`
    /// removes it). A fault injected for a method replaces the previous one for that method, and
    /// wins over one injected for every method.
    pub fn inject(&self, endpoint: Endpoint, fault: Fault, times: Option<u32>) {
        self.shared.state().faults.set(Some(endpoint), fault, times);
    }

    /// Injects a fault for every method without a fault of its own, for the next `times` calls
    /// (None = until cleared; `Some(0)` removes it). Only the sim's own tests inject one.
    #[cfg(test)]
    pub(crate) fn inject_all(&self, fault: Fault, times: Option<u32>) {
        self.shared.state().faults.set(None, fault, times);
    }

    /// Removes every injected fault, returning the sim to normal service.
    pub fn clear_faults(&self) {
        self.shared.state().faults.clear();
    }

    /// How many requests reached the sim for a method, counted whether or not they succeeded
    /// (including faulted ones and ones rejected for bad auth). Lets tests prove caching and
    /// coalescing.
    pub fn calls(&self, endpoint: Endpoint) -> u64 {
        self.shared
            .state()
            .calls
            .get(&endpoint)
            .copied()
            .unwrap_or(0)
    }

    /// Replaces the Earn allocations Earn/Allocations lists (by default those of
    /// `tests/fixtures/kraken/earn_allocations_states.json`).
    pub fn set_earn(&self, earn: Vec<SimEarn>) {
        self.shared.state().earn = earn;
    }

    /// Replaces what GetApiKeyInfo says about the key (name, expiry, creation, allowlist, last
    /// use).
    pub fn set_key_info(&self, info: SimKeyInfo) {
        self.shared.state().key_info = info;
    }

    /// Makes Kraken's last accepted nonce for the key `nonce`, as another client using the same
    /// key would (with microsecond nonces, every millisecond nonce is refused from then on).
    pub fn set_last_nonce(&self, nonce: u64) {
        self.shared.state().key.last_nonce = Some(nonce);
    }

    /// Last nonce accepted for the key (None before the first), to check the client's nonce
    /// source and that rejected calls do not consume a nonce.
    #[cfg(test)]
    pub(crate) fn last_nonce(&self) -> Option<u64> {
        self.shared.state().key.last_nonce
    }

    /// Waits until at least `count` requests for `endpoint` have reached the sim (see
    /// [`SimKraken::calls`]), so a test can act once a request is in, without sleeping.
    #[cfg(test)]
    pub(crate) async fn wait_for_calls(&self, endpoint: Endpoint, count: u64) {
        loop {
            let recorded = self.shared.call_recorded.notified();
            tokio::pin!(recorded);
            // Registered before the count is read, so a call counted in between still wakes us.
            recorded.as_mut().enable();
            if self.calls(endpoint) >= count {
                return;
            }
            recorded.await;
        }
    }

    /// Replaces what DepositStatus lists (newest first).
    pub fn set_deposits(&self, deposits: Vec<SimMovement>) {
        self.shared.state().deposits = deposits;
    }

    /// Replaces what WithdrawStatus lists (newest first).
    pub fn set_withdrawals(&self, withdrawals: Vec<SimMovement>) {
        self.shared.state().withdrawals = withdrawals;
    }

    /// Sets the trading mode SystemStatus answers, and tells every WebSocket connection with a
    /// `status` message, as Kraken does on a change.
    pub fn set_system_status(&self, status: SystemStatus) {
        let mut state = self.shared.state();
        state.system_status = status;
        let _ = state.stream.signals.send(StreamSignal::Status);
    }

    /// Posts one completed transaction of a single entry; see [`SimKraken::post_transaction`].
    pub fn post_ledger(&self, entry: SimLedgerEntry) -> Result<(), LedgerRefused> {
        self.post_transaction(vec![entry])
    }

    /// Posts one completed transaction (a trade's two legs, a transfer's two sides, or one
    /// deposit): applies every entry to the balances that Balance and BalanceEx answer, then sends
    /// one `update` with the next sequence to every subscribed WebSocket connection, the entries
    /// sharing one `ref_id`. Refused, with nothing applied or sent, when a balance would fall
    /// below zero.
    pub fn post_transaction(&self, entries: Vec<SimLedgerEntry>) -> Result<(), LedgerRefused> {
        ws::post_transaction(&self.shared, entries)
    }

    /// Makes every WebSocket token issued so far `by` older, so a test can expire one without
    /// waiting 900 s. Only for tests (this crate's, and with the `test-support` feature those of
    /// the crates that use it).
    #[cfg(any(test, feature = "test-support"))]
    pub fn age_websocket_tokens(&self, by: Duration) {
        self.shared.state().stream.age_tokens(by);
    }

    /// Every WebSocket token issued so far, so a test can look for them where they must not be.
    #[cfg(any(test, feature = "test-support"))]
    pub fn issued_websocket_tokens(&self) -> Vec<String> {
        self.shared.state().stream.issued_tokens()
    }

    /// The current total balance of `code` (0 when the account holds none).
    pub fn balance(&self, code: &str) -> f64 {
        self.shared
            .current_balances()
            .into_iter()
            .find(|(c, _, _)| c == code)
            .map_or(0.0, |(_, balance, _)| balance)
    }

    /// Drops every open WebSocket connection without a close frame, as a network failure would.
    pub fn drop_stream_connections(&self) {
        let _ = self.shared.state().stream.signals.send(StreamSignal::Drop);
    }

    /// Makes the next update's sequence skip one number, as if a message had been lost.
    pub fn skip_stream_sequence(&self) {
        self.shared.state().stream.skip_next = true;
    }

    /// Holds back (`true`) or resumes (`false`) the heartbeats of every connection.
    pub fn pause_heartbeats(&self, paused: bool) {
        self.shared.state().stream.heartbeats_paused = paused;
    }

    /// WebSocket connections accepted so far.
    pub fn stream_connections(&self) -> u64 {
        self.shared.state().stream.connections
    }

    /// `balances` subscriptions accepted so far.
    pub fn stream_subscriptions(&self) -> u64 {
        self.shared.state().stream.subscriptions
    }

    /// WebSocket pongs received: every subscription is pinged once after its ack, so this tells
    /// whether clients answer protocol pings.
    pub fn stream_pongs(&self) -> u64 {
        self.shared.state().stream.pongs
    }

    /// Starts the demo's money in motion (see [`DemoActivity`]): about every `period` a
    /// deposit, a trade and a withdrawal, plus a pending deposit and one on hold listed from the
    /// start. Stops when the returned handle is dropped or the sim stops.
    pub fn start_demo_activity(&self, period: Duration) -> DemoActivity {
        demo::start(Arc::clone(&self.shared), period, self.shutdown.subscribe())
    }

    /// Stops accepting and closes every open connection (ending hangs and trickles). Idempotent;
    /// Drop also stops it.
    pub(crate) fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }
}

impl Drop for SimKraken {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[tokio::test]
    async fn shutdown_is_idempotent_and_stops_accepting() {
        let sim = start(SimOptions::default()).await;
        let url = format!("{}/0/public/Time", sim.url());
        assert!(http().get(&url).send().await.is_ok());
        sim.shutdown();
        sim.shutdown();
        tokio::time::timeout(
            Duration::from_secs(5),
            sim.shared.listener_closed.notified(),
        )
        .await
        .expect("shutdown closes the listener");
        let fresh = reqwest::Client::builder().no_proxy().build().unwrap();
        assert!(fresh.get(&url).send().await.is_err());
    }

    #[tokio::test]
    async fn dropping_the_handle_stops_the_server() {
        let sim = start(SimOptions::default()).await;
        let url = format!("{}/0/public/Time", sim.url());
        let shared = Arc::clone(&sim.shared);
        drop(sim);
        tokio::time::timeout(Duration::from_secs(5), shared.listener_closed.notified())
            .await
            .expect("dropping the handle closes the listener");
        assert!(http().get(&url).send().await.is_err());
    }

    #[test]
    fn sim_kraken_can_be_shared_across_tasks() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SimKraken>();
    }

    #[tokio::test]
    async fn calls_counts_every_request_that_reaches_a_method() {
        let sim = start_with_key(None).await;
        call(&sim, Endpoint::BalanceEx, 1).await;
        call(&sim, Endpoint::BalanceEx, 1).await; // invalid nonce
        let mut bad_key = Call::new(&sim, Endpoint::BalanceEx, 2);
        bad_key.key = "nobody".into();
        bad_key.send(&sim).await;
        sim.inject(Endpoint::Balance, Fault::NoResult, Some(1));
        call(&sim, Endpoint::Balance, 3).await;
        http()
            .get(format!("{}/0/public/Assets", sim.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(sim.calls(Endpoint::BalanceEx), 3);
        assert_eq!(sim.calls(Endpoint::Balance), 1);
        assert_eq!(sim.calls(Endpoint::Assets), 1);
        assert_eq!(sim.calls(Endpoint::TradeBalance), 0);
    }

    #[test]
    #[should_panic(expected = "lists no pair")]
    fn setting_the_price_of_an_unknown_pair_is_a_test_bug() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let sim = runtime.block_on(start(SimOptions::default()));
        sim.set_price("NOPEUSD", 1.0);
    }
}
