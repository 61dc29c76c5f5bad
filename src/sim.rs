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
//!    counter, even when the request was correctly signed.
//! 4. Public methods must be `GET`, private ones `POST` (otherwise HTTP 405).
//! 5. Private calls are checked in order: `API-Key` → `API-Sign` present → nonce parses →
//!    signature matches → nonce increases → `otp`. Every failure answers an error and leaves the
//!    last nonce unchanged. A call that passes is authenticated: its nonce becomes the last nonce.
//! 6. The rate counter is charged 1 per authenticated call, including calls it then refuses with
//!    `EAPI:Rate limit exceeded` (as Kraken does); calls refused earlier cost nothing.
//! 7. `BalanceEx` with `balance_ex_enabled: false` answers `EGeneral:Permission denied`.
//! 8. `GetApiKeyInfo` with `api_key_info_enabled: false` answers `EGeneral:Unknown method` before
//!    any check (a Kraken that predates the method), so it consumes no nonce.
//! 9. `WithdrawMethods` answers `EGeneral:Permission denied` unless one of
//!    [`SimOptions::permissions`] contains "withdraw"; `TradeBalance` answers it unless
//!    `trade_balance_enabled`. The permissions govern nothing else: Balance and BalanceEx work for
//!    any key, so a test of the audit never breaks the balances.
//!
//! Public endpoints: `Assets`, `AssetPairs`, `Ticker` (`?pair=A,B`, by canonical name or
//! altname, answered under the canonical name; one unknown pair fails the whole call with
//! `EQuery:Unknown asset pair`, no `pair` lists every pair) and `Time`.
//!
//! On shutdown every open connection is closed, which is also how a [`Fault::Hang`] or
//! [`Fault::Trickle`] ends.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rand::RngCore;
use serde_json::{Map, Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::kraken::sign::sign;
use crate::secret::{ApiSecret, Credentials, SecretText};

/// Kraken's Starter tier rate counter (max 15, decay 0.33 per second), the tier most exporter
/// keys sit on and the one `--demo` imitates.
pub const STARTER_RATE_LIMIT: (f64, f64) = (15.0, 0.33);

/// Content-Length declared by [`Fault::Trickle`]: large enough that the body never completes.
const TRICKLE_DECLARED_LENGTH: u64 = 1_000_000;

/// Largest private request body read; a balance call is a few dozen bytes.
const MAX_REQUEST_BODY: usize = 64 * 1024;

/// Relative amplitude of the drift applied to balances when `moving` is set.
const DRIFT_AMPLITUDE: f64 = 0.05;

/// Seconds per radian of the drift: one full swing takes about six minutes.
const DRIFT_PERIOD_SECS: f64 = 60.0;

/// What `GET /0/public/Assets` lists: (Kraken code, altname). Covers legacy X/Z prefixes,
/// unprefixed codes and the staking/rewards suffixes seen in real accounts.
const ASSETS: &[(&str, &str)] = &[
    ("XXBT", "XBT"),
    ("XETH", "ETH"),
    ("XXDG", "XDG"),
    ("XXRP", "XRP"),
    ("ZUSD", "USD"),
    ("ZEUR", "EUR"),
    ("ZGBP", "GBP"),
    ("DOT", "DOT"),
    ("DOT.S", "DOT.S"),
    ("DOT28.S", "DOT28.S"),
    ("ETH2.S", "ETH2.S"),
    ("USD.M", "USD.M"),
    ("XBT.M", "XBT.M"),
    ("USDC", "USDC"),
    ("USDT", "USDT"),
];

/// What `GET /0/public/AssetPairs` lists: (canonical name, altname, base code, quote code).
/// Every asset with a price has a USD pair; the others quote in EUR, GBP, XBT or ETH, and
/// `ZEURZUSD` is the only pair between EUR and USD, as on Kraken (no `ZUSDZEUR`).
const PAIRS: &[(&str, &str, &str, &str)] = &[
    ("XXBTZUSD", "XBTUSD", "XXBT", "ZUSD"),
    ("XXBTZEUR", "XBTEUR", "XXBT", "ZEUR"),
    ("XXBTZGBP", "XBTGBP", "XXBT", "ZGBP"),
    ("XETHZUSD", "ETHUSD", "XETH", "ZUSD"),
    ("XETHZEUR", "ETHEUR", "XETH", "ZEUR"),
    ("XETHXXBT", "ETHXBT", "XETH", "XXBT"),
    ("DOTUSD", "DOTUSD", "DOT", "ZUSD"),
    ("DOTEUR", "DOTEUR", "DOT", "ZEUR"),
    ("DOTXBT", "DOTXBT", "DOT", "XXBT"),
    ("DOTETH", "DOTETH", "DOT", "XETH"),
    ("ZEURZUSD", "EURUSD", "ZEUR", "ZUSD"),
    ("ZGBPZUSD", "GBPUSD", "ZGBP", "ZUSD"),
    ("USDCUSD", "USDCUSD", "USDC", "ZUSD"),
    ("USDCEUR", "USDCEUR", "USDC", "ZEUR"),
    ("USDTZUSD", "USDTUSD", "USDT", "ZUSD"),
    ("XXDGZUSD", "XDGUSD", "XXDG", "ZUSD"),
    ("XXDGZEUR", "XDGEUR", "XXDG", "ZEUR"),
    ("XXDGXXBT", "XDGXBT", "XXDG", "XXBT"),
    ("XXRPZUSD", "XRPUSD", "XXRP", "ZUSD"),
    ("XXRPZEUR", "XRPEUR", "XXRP", "ZEUR"),
    ("XXRPXXBT", "XRPXBT", "XXRP", "XXBT"),
];

/// USD value of one unit of each asset; the default price of a pair is `usd(base) / usd(quote)`,
/// so EUR, GBP and cross pairs agree with the USD ones until a test sets a price.
const USD_VALUES: &[(&str, f64)] = &[
    ("ZUSD", 1.0),
    ("XXBT", 65_000.0),
    ("XETH", 3_500.0),
    ("DOT", 7.5),
    ("ZEUR", 1.08),
    ("ZGBP", 1.27),
    ("XXDG", 0.15),
    ("XXRP", 0.6),
    ("USDC", 1.0),
    ("USDT", 1.0),
];

/// Added to a pair's index for its drift phase, so prices do not move in lockstep with balances.
const PRICE_DRIFT_PHASE: usize = 100;

/// Withdrawal methods WithdrawMethods lists for a key that may withdraw.
const WITHDRAW_METHODS: &[(&str, &str, &str, &str)] = &[
    ("XXBT", "Bitcoin", "Bitcoin", "0.0004"),
    ("XETH", "Ether", "Ethereum", "0.004"),
    ("ZEUR", "SEPA", "", "1.00"),
];

/// Balances served until [`SimKraken::set_balances`] is called: (code, balance, hold_trade).
/// Includes a zero balance and staked/rewards codes so the demo shows every case.
const DEFAULT_BALANCES: &[(&str, f64, f64)] = &[
    ("XXBT", 1.2345678901, 0.1),
    ("XETH", 12.5, 0.0),
    ("ZUSD", 25000.1234, 1500.0),
    ("ZEUR", 0.0, 0.0),
    ("DOT.S", 300.75, 0.0),
    ("ETH2.S", 3.2, 0.0),
    ("USD.M", 1000.5, 0.0),
    ("XXDG", 4200.0, 0.0),
];

/// How the simulated exchange behaves; each test picks the variation it exercises.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Credentials the sim accepts; None generates a random key (56-char base64-ish text) and a
    /// random 64-byte secret. With `Some` and an `otp`, the sim requires that otp on every call.
    pub credentials: Option<Credentials>,
    /// Per-key rate limit counter like Kraken's (max, decay per second); None disables it.
    /// [`STARTER_RATE_LIMIT`] is `(15.0, 0.33)`.
    pub rate_limit: Option<(f64, f64)>,
    /// Delay added before every answer (simulated network latency).
    pub latency: Duration,
    /// Balances drift slowly over time (demo); false keeps them exactly as set (tests, golden
    /// files).
    pub moving: bool,
    /// Whether the sim answers BalanceEx (false answers it with `EGeneral:Permission denied`, like
    /// a key/region where it is refused).
    pub balance_ex_enabled: bool,
    /// The key's permissions as GetApiKeyInfo lists them (Kraken's codes, such as `query-funds`).
    /// WithdrawMethods succeeds only when one of them contains "withdraw" but not "address"
    /// (e.g. `withdraw-funds`), like a key with "Funds: Withdraw". Default: `["query-funds"]`,
    /// the one permission an exporter needs.
    pub permissions: Vec<String>,
    /// Whether the sim knows GetApiKeyInfo; false answers it with `EGeneral:Unknown method`, like
    /// a Kraken that predates the method, so the audit has to probe instead.
    pub api_key_info_enabled: bool,
    /// Whether the key may call TradeBalance; false (the default) answers it with
    /// `EGeneral:Permission denied`, since Kraken documents its permission two ways and a
    /// Query-only key may well be refused.
    pub trade_balance_enabled: bool,
}

impl Default for SimOptions {
    /// The plainest exchange: generated credentials, no rate limit, no latency, fixed balances and
    /// prices, BalanceEx and GetApiKeyInfo available, a key that may only query funds.
    fn default() -> Self {
        Self {
            credentials: None,
            rate_limit: None,
            latency: Duration::ZERO,
            moving: false,
            balance_ex_enabled: true,
            permissions: vec!["query-funds".into()],
            api_key_info_enabled: true,
            trade_balance_enabled: false,
        }
    }
}

/// A failure the sim produces instead of its normal answer, to test how the exporter copes with
/// what Kraken and the proxies in front of it really send.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Accept the request and never answer (hold the connection open).
    Hang,
    /// Send 200 headers with a large content-length, then trickle one byte every second forever.
    Trickle,
    /// Answer with this HTTP status and body (e.g. 502 with an nginx/Cloudflare HTML page, 520
    /// with a Cloudflare HTML body). A body starting with `<` is sent as `text/html`.
    Status(u16, String),
    /// Answer 200 with this raw body (truncated JSON, not JSON, a huge body...).
    RawBody(Vec<u8>),
    /// Answer 200 with `{"error":["<msg>"]}`, e.g. "EAPI:Rate limit exceeded",
    /// "EService:Throttled:1700000000", "EGeneral:Temporary lockout", "EAPI:Invalid key",
    /// "EAPI:Invalid nonce", "EService:Unavailable".
    KrakenError(String),
    /// Answer 200 with `{"error":[]}` and no result field (what Kraken sends for an empty account).
    NoResult,
}

/// A running simulated Kraken. Not `Clone`: dropping the handle stops the server, so share it
/// behind an `Arc` when several owners need it.
pub struct SimKraken {
    /// State shared with the connection tasks.
    shared: Arc<Shared>,
    /// Where the listener is bound, for [`SimKraken::url`].
    addr: SocketAddr,
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
            .unwrap_or_else(generate_credentials);
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            credentials,
            rate_limit: options.rate_limit,
            latency: options.latency,
            moving: options.moving,
            balance_ex_enabled: options.balance_ex_enabled,
            permissions: options.permissions,
            api_key_info_enabled: options.api_key_info_enabled,
            trade_balance_enabled: options.trade_balance_enabled,
            started: Instant::now(),
            state: Mutex::new(SimState::new()),
        });
        tokio::spawn(accept_loop(listener, Arc::clone(&shared), shutdown_rx));
        Ok(SimKraken {
            shared,
            addr,
            shutdown,
        })
    }

    /// Base URL like "http://127.0.0.1:PORT" (no trailing slash); the client appends
    /// "/0/private/BalanceEx" etc., exactly as it does for `https://api.kraken.com`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
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
        let canonical = canonical_pair(pair)
            .unwrap_or_else(|| panic!("the simulated Kraken lists no pair {pair:?}"));
        self.shared
            .state()
            .prices
            .insert(canonical.to_owned(), price);
    }

    /// Inject a fault for `method` ("BalanceEx", "Balance", "TradeBalance", "GetApiKeyInfo",
    /// "WithdrawMethods", "Assets", "AssetPairs", "Ticker", "Time", or "*" for all) for the next
    /// `times` calls (None = until cleared). A fault injected for a method replaces the
    /// previous one for that method; a method-specific fault wins over "*".
    pub fn inject(&self, method: &str, fault: Fault, times: Option<u32>) {
        let mut state = self.shared.state();
        if times == Some(0) {
            state.faults.remove(method);
        } else {
            state.faults.insert(
                method.to_owned(),
                InjectedFault {
                    fault,
                    remaining: times,
                },
            );
        }
    }

    /// Removes every injected fault, returning the sim to normal service.
    pub fn clear_faults(&self) {
        self.shared.state().faults.clear();
    }

    /// How many requests reached the sim for a method (the names [`SimKraken::inject`] takes:
    /// "BalanceEx", "Balance", "Assets", "AssetPairs", "Ticker", ...), counted whether or not they
    /// succeeded (including faulted ones and ones rejected for bad auth). Lets tests prove caching
    /// and coalescing.
    pub fn calls(&self, method: &str) -> u64 {
        self.shared.state().calls.get(method).copied().unwrap_or(0)
    }

    /// Last nonce accepted for the key (None before the first), to check the client's nonce
    /// source and that rejected calls do not consume a nonce.
    pub fn last_nonce(&self) -> Option<u64> {
        self.shared.state().last_nonce
    }

    /// Stops accepting and closes every open connection (ending hangs and trickles). Idempotent;
    /// Drop also stops it.
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }
}

impl Drop for SimKraken {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Configuration and mutable state shared by the handle and every connection task.
struct Shared {
    /// The only credentials accepted.
    credentials: Credentials,
    /// (max, decay per second) of the rate counter, if enabled.
    rate_limit: Option<(f64, f64)>,
    /// Sleep before each answer.
    latency: Duration,
    /// Whether balances drift with time.
    moving: bool,
    /// Whether BalanceEx is answered or refused.
    balance_ex_enabled: bool,
    /// The key's raw permission names.
    permissions: Vec<String>,
    /// Whether GetApiKeyInfo is a known method.
    api_key_info_enabled: bool,
    /// Whether TradeBalance is answered or refused.
    trade_balance_enabled: bool,
    /// Origin of the drift when `moving`.
    started: Instant,
    /// Everything that changes; never held across an await.
    state: Mutex<SimState>,
}

impl Shared {
    /// Locks the state; a panic in another holder cannot corrupt plain counters, so poisoning is
    /// ignored.
    fn state(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The mutable part of the simulated exchange.
struct SimState {
    /// (code, balance, hold_trade) as set, before any drift.
    balances: Vec<(String, f64, f64)>,
    /// Last trade price per canonical pair name, as set, before any drift.
    prices: HashMap<String, f64>,
    /// Injected faults by method name or "*".
    faults: HashMap<String, InjectedFault>,
    /// Requests seen per method name.
    calls: HashMap<String, u64>,
    /// Highest nonce accepted so far for the key.
    last_nonce: Option<u64>,
    /// Kraken's per-key call counter.
    rate_counter: RateCounter,
}

impl SimState {
    fn new() -> Self {
        Self {
            balances: DEFAULT_BALANCES
                .iter()
                .map(|&(code, balance, hold)| (code.to_owned(), balance, hold))
                .collect(),
            prices: PAIRS
                .iter()
                .map(|&(name, _, base, quote)| {
                    (name.to_owned(), usd_value(base) / usd_value(quote))
                })
                .collect(),
            faults: HashMap::new(),
            calls: HashMap::new(),
            last_nonce: None,
            rate_counter: RateCounter {
                level: 0.0,
                updated: Instant::now(),
            },
        }
    }

    /// Counts a call and takes the fault that applies to it, if any.
    fn record_call(&mut self, method: &str) -> Option<Fault> {
        *self.calls.entry(method.to_owned()).or_insert(0) += 1;
        let key = if self.faults.contains_key(method) {
            method
        } else if self.faults.contains_key("*") {
            "*"
        } else {
            return None;
        };
        let injected = self.faults.get_mut(key)?;
        let fault = injected.fault.clone();
        if let Some(remaining) = injected.remaining.as_mut() {
            *remaining -= 1;
            if *remaining == 0 {
                self.faults.remove(key);
            }
        }
        Some(fault)
    }
}

/// A fault and how many more calls it applies to (None = until cleared).
struct InjectedFault {
    fault: Fault,
    remaining: Option<u32>,
}

/// Kraken's leaky-bucket call counter: +1 per call, continuous decay.
struct RateCounter {
    level: f64,
    updated: Instant,
}

impl RateCounter {
    /// Charges one call; false when the counter now exceeds `max` (the call is still counted).
    fn charge(&mut self, now: Instant, max: f64, decay_per_sec: f64) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.level = (self.level - elapsed * decay_per_sec).max(0.0) + 1.0;
        self.updated = now;
        self.level <= max
    }
}

/// The methods the sim serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Assets,
    AssetPairs,
    Ticker,
    Time,
    Balance,
    BalanceEx,
    TradeBalance,
    GetApiKeyInfo,
    WithdrawMethods,
}

impl Endpoint {
    fn from_path(path: &str) -> Option<Self> {
        match path {
            "/0/public/Assets" => Some(Self::Assets),
            "/0/public/AssetPairs" => Some(Self::AssetPairs),
            "/0/public/Ticker" => Some(Self::Ticker),
            "/0/public/Time" => Some(Self::Time),
            "/0/private/Balance" => Some(Self::Balance),
            "/0/private/BalanceEx" => Some(Self::BalanceEx),
            "/0/private/TradeBalance" => Some(Self::TradeBalance),
            "/0/private/GetApiKeyInfo" => Some(Self::GetApiKeyInfo),
            "/0/private/WithdrawMethods" => Some(Self::WithdrawMethods),
            _ => None,
        }
    }

    /// Name used by [`SimKraken::calls`] and [`SimKraken::inject`].
    fn name(self) -> &'static str {
        match self {
            Self::Assets => "Assets",
            Self::AssetPairs => "AssetPairs",
            Self::Ticker => "Ticker",
            Self::Time => "Time",
            Self::Balance => "Balance",
            Self::BalanceEx => "BalanceEx",
            Self::TradeBalance => "TradeBalance",
            Self::GetApiKeyInfo => "GetApiKeyInfo",
            Self::WithdrawMethods => "WithdrawMethods",
        }
    }

    fn is_private(self) -> bool {
        !matches!(
            self,
            Self::Assets | Self::AssetPairs | Self::Ticker | Self::Time
        )
    }
}

/// Response body: a complete buffer, or the endless trickle of [`Fault::Trickle`].
enum SimBody {
    Full(Option<Bytes>),
    Trickle(Interval),
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            SimBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            SimBody::Trickle(interval) => interval
                .poll_tick(cx)
                .map(|_| Some(Ok(Frame::data(Bytes::from_static(b" "))))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, SimBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            SimBody::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            SimBody::Full(None) => SizeHint::with_exact(0),
            // Unknown, so hyper frames the body by the declared Content-Length header.
            SimBody::Trickle(_) => SizeHint::default(),
        }
    }
}

/// Resolves once the sim is shut down (or its handle is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // An error means the handle was dropped, which also means stop.
    let _ = shutdown.wait_for(|&stopped| stopped).await;
}

/// Accepts connections until shutdown; one task per connection.
async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let connection_shutdown = shutdown.clone();
    loop {
        tokio::select! {
            () = stopped(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(serve_connection(
                        stream,
                        Arc::clone(&shared),
                        connection_shutdown.clone(),
                    ));
                }
                Err(error) => {
                    tracing::debug!(%error, "simulated Kraken failed to accept a connection");
                    // Avoid spinning when the process is out of file descriptors.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
}

/// Serves one HTTP/1 connection until the client closes it or the sim shuts down.
async fn serve_connection(
    stream: TcpStream,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let service = service_fn(move |request| handle(Arc::clone(&shared), request));
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        result = connection => {
            if let Err(error) = result {
                tracing::debug!(%error, "simulated Kraken connection ended with an error");
            }
        }
        // Dropping the connection closes the socket and ends any hang or trickle on it.
        () = stopped(&mut shutdown) => {}
    }
}

/// Answers one request, in the order documented at the top of this module.
async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<SimBody>, Infallible> {
    let endpoint = Endpoint::from_path(request.uri().path());
    let fault = endpoint.and_then(|e| shared.state().record_call(e.name()));
    if !shared.latency.is_zero() {
        tokio::time::sleep(shared.latency).await;
    }
    let Some(endpoint) = endpoint else {
        return Ok(json_response(
            StatusCode::NOT_FOUND,
            envelope_error("EGeneral:Unknown method"),
        ));
    };
    if let Some(fault) = fault {
        return Ok(fault_response(fault).await);
    }

    let (expected_method, allow) = if endpoint.is_private() {
        (Method::POST, "POST")
    } else {
        (Method::GET, "GET")
    };
    if request.method() != expected_method {
        let mut response = json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            envelope_error("EGeneral:Invalid arguments"),
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        return Ok(response);
    }

    if endpoint == Endpoint::GetApiKeyInfo && !shared.api_key_info_enabled {
        return Ok(json_response(
            StatusCode::OK,
            envelope_error("EGeneral:Unknown method"),
        ));
    }

    let body = match endpoint {
        Endpoint::Assets => envelope_ok(assets_result()),
        Endpoint::AssetPairs => envelope_ok(asset_pairs_result()),
        Endpoint::Ticker => {
            let prices = shared.current_prices();
            match ticker_result(request.uri().query(), &prices) {
                Ok(result) => envelope_ok(result),
                Err(message) => envelope_error(message),
            }
        }
        Endpoint::Time => envelope_ok(time_result()),
        Endpoint::Balance
        | Endpoint::BalanceEx
        | Endpoint::TradeBalance
        | Endpoint::GetApiKeyInfo
        | Endpoint::WithdrawMethods => {
            let path = request.uri().path().to_owned();
            let (parts, incoming) = request.into_parts();
            let bytes = match Limited::new(incoming, MAX_REQUEST_BODY).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => {
                    return Ok(json_response(
                        StatusCode::OK,
                        envelope_error("EGeneral:Invalid arguments"),
                    ));
                }
            };
            match authorize(&shared, endpoint, &path, &parts.headers, &bytes) {
                Err(message) => envelope_error(message),
                Ok(params) => match endpoint {
                    Endpoint::BalanceEx => {
                        envelope_ok(balance_ex_result(&shared.current_balances()))
                    }
                    Endpoint::TradeBalance => {
                        let asset = params.asset.as_deref().unwrap_or("ZUSD");
                        let balances = shared.current_balances();
                        let prices = shared.current_prices();
                        match trade_balance_result(&balances, &prices, asset) {
                            Ok(result) => envelope_ok(result),
                            Err(message) => envelope_error(message),
                        }
                    }
                    Endpoint::GetApiKeyInfo => envelope_ok(api_key_info_result(
                        &shared.permissions,
                        shared.credentials.key.expose(),
                        shared.state().last_nonce,
                    )),
                    Endpoint::WithdrawMethods => envelope_ok(withdraw_methods_result()),
                    // Balance; public endpoints never reach this match.
                    _ => envelope_ok(balance_result(&shared.current_balances())),
                },
            }
        }
    };
    Ok(json_response(StatusCode::OK, body))
}

impl Shared {
    /// Balances as served right now: as set, or drifted when `moving`.
    fn current_balances(&self) -> Vec<(String, f64, f64)> {
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
    fn current_prices(&self) -> HashMap<String, f64> {
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

/// `balance` moved by at most ±5 % along a slow sine, phase-shifted per asset so they do not move
/// in lockstep. A positive balance stays positive; zero stays zero.
fn drifted(balance: f64, index: usize, elapsed_secs: f64) -> f64 {
    balance * (1.0 + DRIFT_AMPLITUDE * (elapsed_secs / DRIFT_PERIOD_SECS + index as f64).sin())
}

/// Runs Kraken's checks on a private call, returning the call's parameters; `Err` carries the
/// Kraken error message to answer.
fn authorize(
    shared: &Shared,
    endpoint: Endpoint,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<PrivateParams, &'static str> {
    let credentials = &shared.credentials;
    let key = headers.get("API-Key").and_then(|v| v.to_str().ok());
    if key != Some(credentials.key.expose()) {
        return Err("EAPI:Invalid key");
    }
    let Some(signature) = headers.get("API-Sign").and_then(|v| v.to_str().ok()) else {
        return Err("EAPI:Invalid signature");
    };
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let params = if is_json {
        PrivateParams::from_json(body)
    } else {
        PrivateParams::from_form(body)
    };
    // Without a nonce the signature cannot be recomputed, so the nonce is what is wrong.
    let Some(nonce) = params.nonce else {
        return Err("EAPI:Invalid nonce");
    };
    if sign(path, nonce, body, &credentials.secret) != signature {
        return Err("EAPI:Invalid signature");
    }

    let mut state = shared.state();
    if state.last_nonce.is_some_and(|last| nonce <= last) {
        return Err("EAPI:Invalid nonce");
    }
    match (&credentials.otp, &params.otp) {
        (Some(required), Some(sent)) if required.expose() == sent => {}
        (Some(_), _) => return Err("EGeneral:Permission denied"),
        (None, Some(_)) => return Err("EAPI:Invalid key"),
        (None, None) => {}
    }
    state.last_nonce = Some(nonce);
    if let Some((max, decay)) = shared.rate_limit
        && !state.rate_counter.charge(Instant::now(), max, decay)
    {
        return Err("EAPI:Rate limit exceeded");
    }
    drop(state);

    let refused = match endpoint {
        Endpoint::BalanceEx => !shared.balance_ex_enabled,
        Endpoint::TradeBalance => !shared.trade_balance_enabled,
        Endpoint::WithdrawMethods => !may_withdraw(&shared.permissions),
        _ => false,
    };
    if refused {
        return Err("EGeneral:Permission denied");
    }
    Ok(params)
}

/// Whether a key with these raw permission names may withdraw: any name mentioning "withdraw",
/// except the address-book codes (`add-withdraw-address`), which move no funds.
fn may_withdraw(permissions: &[String]) -> bool {
    permissions.iter().any(|p| {
        let p = p.to_ascii_lowercase();
        p.contains("withdraw") && !p.contains("address")
    })
}

/// The fields of a private call body the sim cares about.
#[derive(Debug, Default, PartialEq, Eq)]
struct PrivateParams {
    nonce: Option<u64>,
    otp: Option<String>,
    /// TradeBalance's `asset`.
    asset: Option<String>,
}

impl PrivateParams {
    /// Parses `nonce=...&otp=...` (form encoding); the first occurrence of a field wins.
    fn from_form(body: &[u8]) -> Self {
        let mut params = Self::default();
        let mut seen_nonce = false;
        for pair in body.split(|&b| b == b'&') {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(at) => (&pair[..at], &pair[at + 1..]),
                None => (pair, &pair[pair.len()..]),
            };
            let value = percent_decode(value);
            match name {
                b"nonce" if !seen_nonce => {
                    seen_nonce = true;
                    params.nonce = value.parse().ok();
                }
                b"otp" if params.otp.is_none() => params.otp = Some(value),
                b"asset" if params.asset.is_none() => params.asset = Some(value),
                _ => {}
            }
        }
        params
    }

    /// Parses `{"nonce": 123 | "123", "otp": "..."}` (JSON encoding).
    fn from_json(body: &[u8]) -> Self {
        let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) else {
            return Self::default();
        };
        let nonce = match object.get("nonce") {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        };
        let otp = match object.get("otp") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let asset = object
            .get("asset")
            .and_then(Value::as_str)
            .map(str::to_owned);
        Self { nonce, otp, asset }
    }
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space, `%XX` a byte); malformed
/// escapes are kept as written.
fn percent_decode(input: &[u8]) -> String {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < input.len() => {
                let hex = std::str::from_utf8(&input[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Builds the answer an injected fault calls for.
async fn fault_response(fault: Fault) -> Response<SimBody> {
    match fault {
        // Never completes; the connection task drops it when the sim shuts down.
        Fault::Hang => std::future::pending().await,
        Fault::Trickle => {
            let mut interval = tokio::time::interval(Duration::from_secs(1));
            interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut response = Response::new(SimBody::Trickle(interval));
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, json_content_type());
            headers.insert(
                header::CONTENT_LENGTH,
                HeaderValue::from(TRICKLE_DECLARED_LENGTH),
            );
            response
        }
        Fault::Status(code, body) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let is_html = body.trim_start().starts_with('<');
            let mut response = json_response(status, body.into_bytes());
            if is_html {
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=UTF-8"),
                );
            }
            response
        }
        Fault::RawBody(body) => json_response(StatusCode::OK, body),
        Fault::KrakenError(message) => json_response(StatusCode::OK, envelope_error(&message)),
        Fault::NoResult => json_response(StatusCode::OK, br#"{"error":[]}"#.to_vec()),
    }
}

fn json_content_type() -> HeaderValue {
    HeaderValue::from_static("application/json")
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response<SimBody> {
    let mut response = Response::new(SimBody::Full(Some(Bytes::from(body))));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, json_content_type());
    response
}

/// `{"error":[],"result":<result>}`
fn envelope_ok(result: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({ "error": [], "result": result }))
        .expect("a JSON value always serializes")
}

/// `{"error":["<message>"]}`, Kraken's shape for every API error.
fn envelope_error(message: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "error": [message] })).expect("a JSON value always serializes")
}

/// Kraken's amount format: a decimal string with 10 decimals.
fn amount(value: f64) -> Value {
    Value::String(format!("{value:.10}"))
}

fn balance_result(balances: &[(String, f64, f64)]) -> Value {
    let map: Map<String, Value> = balances
        .iter()
        .map(|(code, balance, _)| (code.clone(), amount(*balance)))
        .collect();
    Value::Object(map)
}

fn balance_ex_result(balances: &[(String, f64, f64)]) -> Value {
    let map: Map<String, Value> = balances
        .iter()
        .map(|(code, balance, hold)| {
            (
                code.clone(),
                json!({ "balance": amount(*balance), "hold_trade": amount(*hold) }),
            )
        })
        .collect();
    Value::Object(map)
}

fn assets_result() -> Value {
    let map: Map<String, Value> = ASSETS
        .iter()
        .map(|&(code, altname)| {
            (
                code.to_owned(),
                json!({
                    "aclass": "currency",
                    "altname": altname,
                    "decimals": 10,
                    "display_decimals": 5,
                    "status": "enabled",
                }),
            )
        })
        .collect();
    Value::Object(map)
}

/// The canonical name of a pair given by canonical name or altname.
fn canonical_pair(name: &str) -> Option<&'static str> {
    PAIRS
        .iter()
        .find(|p| p.0 == name || p.1 == name)
        .map(|p| p.0)
}

/// USD value of one unit of a code in [`USD_VALUES`]; 0 for codes with no value.
fn usd_value(code: &str) -> f64 {
    USD_VALUES.iter().find(|v| v.0 == code).map_or(0.0, |v| v.1)
}

/// Decimals Kraken would show for a price of this size: about six significant digits.
fn price_decimals(price: f64) -> usize {
    if price > 0.0 && price.is_finite() {
        (5 - price.log10().floor() as i64).clamp(2, 10) as usize
    } else {
        2
    }
}

fn asset_altname(code: &str) -> &str {
    ASSETS.iter().find(|a| a.0 == code).map_or(code, |a| a.1)
}

fn asset_pairs_result() -> Value {
    let map: Map<String, Value> = PAIRS
        .iter()
        .map(|&(name, altname, base, quote)| {
            let decimals = price_decimals(usd_value(base) / usd_value(quote));
            (
                name.to_owned(),
                json!({
                    "altname": altname,
                    "wsname": format!("{}/{}", asset_altname(base), asset_altname(quote)),
                    "aclass_base": "currency",
                    "base": base,
                    "aclass_quote": "currency",
                    "quote": quote,
                    "lot": "unit",
                    "cost_decimals": 5,
                    "pair_decimals": decimals,
                    "lot_decimals": 8,
                    "lot_multiplier": 1,
                    "leverage_buy": [],
                    "leverage_sell": [],
                    "fees": [[0, 0.4], [10000, 0.35]],
                    "fees_maker": [[0, 0.25], [10000, 0.2]],
                    "fee_volume_currency": "ZUSD",
                    "ordermin": "0.0001",
                    "costmin": "0.5",
                    "tick_size": format!("{:.*}", decimals, 10f64.powi(-(decimals as i32))),
                    "status": "online",
                }),
            )
        })
        .collect();
    Value::Object(map)
}

/// The Ticker answer for `?pair=A,B` (every pair without it); `Err` for an unknown pair.
fn ticker_result(
    query: Option<&str>,
    prices: &HashMap<String, f64>,
) -> Result<Value, &'static str> {
    let requested = query.and_then(|q| {
        q.split('&').find_map(|field| {
            field
                .strip_prefix("pair=")
                .map(|list| percent_decode(list.as_bytes()))
        })
    });
    let names: Vec<&'static str> = match requested {
        None => PAIRS.iter().map(|p| p.0).collect(),
        Some(list) => list
            .split(',')
            .map(|name| canonical_pair(name.trim()).ok_or("EQuery:Unknown asset pair"))
            .collect::<Result<_, _>>()?,
    };
    let map: Map<String, Value> = names
        .into_iter()
        .map(|name| {
            let price = prices.get(name).copied().unwrap_or(0.0);
            let decimals = price_decimals(price);
            let text = |value: f64| Value::String(format!("{value:.decimals$}"));
            (
                name.to_owned(),
                json!({
                    "a": [text(price * 1.0005), "1", "1.000"],
                    "b": [text(price * 0.9995), "2", "2.000"],
                    "c": [text(price), "0.10000000"],
                    "v": ["1200.00000000", "3400.00000000"],
                    "p": [text(price), text(price)],
                    "t": [12000, 34000],
                    "l": [text(price * 0.98), text(price * 0.97)],
                    "h": [text(price * 1.02), text(price * 1.03)],
                    "o": text(price),
                }),
            )
        })
        .collect();
    Ok(Value::Object(map))
}

/// The code an asset is valued as in TradeBalance: the part before a `.` suffix, by code or
/// altname, then without trailing digits (`DOT28.S` → `DOT`, `ETH2.S` → `XETH`).
fn sim_value_code(code: &str) -> Option<&'static str> {
    let stem = code.split('.').next().unwrap_or(code);
    let lookup = |name: &str| {
        ASSETS
            .iter()
            .find(|a| !a.0.contains('.') && (a.0 == name || a.1 == name))
            .map(|a| a.0)
    };
    lookup(stem).or_else(|| lookup(stem.trim_end_matches(|c: char| c.is_ascii_digit())))
}

/// USD value of one unit of `code` at the current prices: its USD pair, or the inverse of a USD
/// pair quoted in it; `None` without either.
fn usd_price(code: &str, prices: &HashMap<String, f64>) -> Option<f64> {
    if code == "ZUSD" {
        return Some(1.0);
    }
    PAIRS.iter().find_map(|&(name, _, base, quote)| {
        let price = *prices.get(name)?;
        if base == code && quote == "ZUSD" {
            Some(price)
        } else if base == "ZUSD" && quote == code && price > 0.0 {
            Some(1.0 / price)
        } else {
            None
        }
    })
}

/// TradeBalance: every balance valued in `asset` at the current prices (assets without a USD
/// market count as nothing), with no margin positions open.
fn trade_balance_result(
    balances: &[(String, f64, f64)],
    prices: &HashMap<String, f64>,
    asset: &str,
) -> Result<Value, &'static str> {
    let quote = sim_value_code(asset)
        .filter(|code| *code == asset || asset_altname(code) == asset)
        .ok_or("EQuery:Unknown asset")?;
    let quote_usd = usd_price(quote, prices)
        .filter(|p| *p > 0.0)
        .ok_or("EQuery:Unknown asset")?;
    let equivalent: f64 = balances
        .iter()
        .filter_map(|(code, balance, _)| {
            let usd = usd_price(sim_value_code(code)?, prices)?;
            Some(balance * usd / quote_usd)
        })
        .sum();
    let text = |value: f64| Value::String(format!("{value:.4}"));
    Ok(json!({
        "eb": text(equivalent),
        "tb": text(equivalent),
        "m": text(0.0),
        "n": text(0.0),
        "c": text(0.0),
        "v": text(0.0),
        "e": text(equivalent),
        "mf": text(equivalent),
        "uv": text(0.0),
    }))
}

/// GetApiKeyInfo's documented answer (docs.kraken.com/api-reference/account-data/
/// get-api-key-info): the key itself is echoed as Kraken does, so tests can check that the
/// exporter never keeps it; times are the documented example's.
fn api_key_info_result(permissions: &[String], key: &str, last_nonce: Option<u64>) -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    json!({
        "apiKeyName": "exporter",
        "apiKey": key,
        "nonce": last_nonce.unwrap_or(0).to_string(),
        "nonceWindow": 0,
        "permissions": permissions,
        "iban": "AA00 SIMU LATE DKRK",
        "validUntil": "0",
        "queryFrom": "0",
        "queryTo": "0",
        "createdTime": "1772542900",
        "modifiedTime": "1772543095",
        "ipAllowlist": [],
        "lastUsed": now.to_string(),
    })
}

fn withdraw_methods_result() -> Value {
    Value::Array(
        WITHDRAW_METHODS
            .iter()
            .map(|&(asset, method, network, minimum)| {
                let network = if network.is_empty() {
                    Value::Null
                } else {
                    Value::String(network.to_owned())
                };
                json!({ "asset": asset, "method": method, "network": network, "minimum": minimum })
            })
            .collect(),
    )
}

fn time_result() -> Value {
    let unixtime = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    json!({ "unixtime": unixtime, "rfc1123": rfc1123(unixtime) })
}

/// Kraken's `rfc1123` field, which uses a two-digit year: `Tue, 23 Mar 21 09:39:36 +0000`.
fn rfc1123(unixtime: u64) -> String {
    const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unixtime / 86_400;
    let secs = unixtime % 86_400;
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday.
    let weekday = WEEKDAYS[((days + 4) % 7) as usize];
    format!(
        "{weekday}, {day:02} {} {:02} {:02}:{:02}:{:02} +0000",
        MONTHS[(month - 1) as usize],
        year % 100,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Fresh credentials for `--demo`: a 56-character key and a 64-byte secret, the shapes Kraken
/// issues.
fn generate_credentials() -> Credentials {
    let mut rng = rand::thread_rng();
    let mut key = [0u8; 42];
    rng.fill_bytes(&mut key);
    let mut secret = vec![0u8; 64];
    rng.fill_bytes(&mut secret);
    Credentials {
        key: SecretText::new(STANDARD.encode(key)),
        secret: ApiSecret::from_bytes(secret),
        otp: None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn test_credentials(otp: Option<&str>) -> Credentials {
        Credentials {
            key: SecretText::new("SIMTESTKEY".into()),
            secret: ApiSecret::from_bytes(vec![7u8; 64]),
            otp: otp.map(|o| SecretText::new(o.into())),
        }
    }

    async fn start(options: SimOptions) -> SimKraken {
        SimKraken::start(options).await.expect("sim starts")
    }

    async fn start_with_key(otp: Option<&str>) -> SimKraken {
        start(SimOptions {
            credentials: Some(test_credentials(otp)),
            ..SimOptions::default()
        })
        .await
    }

    fn http() -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client builds")
    }

    /// What a private call sends; each field can be broken on purpose.
    struct Call<'a> {
        method: &'a str,
        nonce: u64,
        otp: Option<&'a str>,
        key: String,
        secret: ApiSecret,
        tamper_signature: bool,
        /// Form fields sent after the nonce, such as `asset=ZEUR`.
        params: &'a str,
    }

    impl<'a> Call<'a> {
        fn new(sim: &SimKraken, method: &'a str, nonce: u64) -> Self {
            let credentials = sim.credentials();
            Self {
                method,
                nonce,
                otp: None,
                key: credentials.key.expose().to_owned(),
                secret: credentials.secret,
                tamper_signature: false,
                params: "",
            }
        }

        async fn send(self, sim: &SimKraken) -> Value {
            let path = format!("/0/private/{}", self.method);
            let mut body = format!("nonce={}", self.nonce);
            if !self.params.is_empty() {
                body.push('&');
                body.push_str(self.params);
            }
            if let Some(otp) = self.otp {
                body.push_str("&otp=");
                body.push_str(otp);
            }
            let mut signature = sign(&path, self.nonce, body.as_bytes(), &self.secret);
            if self.tamper_signature {
                signature = sign(&path, self.nonce + 1, body.as_bytes(), &self.secret);
            }
            let response = http()
                .post(format!("{}{path}", sim.url()))
                .header("API-Key", self.key)
                .header("API-Sign", signature)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .expect("sim answers");
            assert_eq!(response.status(), 200);
            assert_eq!(response.headers()["content-type"], "application/json");
            serde_json::from_slice(&response.bytes().await.unwrap()).expect("JSON body")
        }
    }

    async fn call(sim: &SimKraken, method: &str, nonce: u64) -> Value {
        Call::new(sim, method, nonce).send(sim).await
    }

    fn errors(answer: &Value) -> Vec<&str> {
        answer["error"]
            .as_array()
            .expect("error array")
            .iter()
            .map(|e| e.as_str().unwrap())
            .collect()
    }

    #[tokio::test]
    async fn signed_balance_ex_returns_ten_decimal_strings_with_hold_trade() {
        let sim = start_with_key(None).await;
        let answer = call(&sim, "BalanceEx", 1).await;
        assert_eq!(errors(&answer), Vec::<&str>::new());
        let result = &answer["result"];
        assert_eq!(result["XXBT"]["balance"], "1.2345678901");
        assert_eq!(result["XXBT"]["hold_trade"], "0.1000000000");
        assert_eq!(result["ZUSD"]["balance"], "25000.1234000000");
        assert_eq!(result["ZUSD"]["hold_trade"], "1500.0000000000");
        assert_eq!(result["ZEUR"]["balance"], "0.0000000000");
        assert_eq!(result["DOT.S"]["balance"], "300.7500000000");
        assert_eq!(result.as_object().unwrap().len(), DEFAULT_BALANCES.len());
        assert_eq!(sim.last_nonce(), Some(1));
    }

    #[tokio::test]
    async fn balance_returns_plain_strings_and_set_balances_replaces_all() {
        let sim = start_with_key(None).await;
        sim.set_balances(vec![("XXBT".into(), 0.5, 0.25), ("USDC".into(), 10.0, 0.0)]);
        let answer = call(&sim, "Balance", 1).await;
        assert_eq!(
            answer["result"],
            json!({"XXBT": "0.5000000000", "USDC": "10.0000000000"})
        );
        let answer = call(&sim, "BalanceEx", 2).await;
        assert_eq!(
            answer["result"]["XXBT"],
            json!({"balance": "0.5000000000", "hold_trade": "0.2500000000"})
        );
    }

    #[tokio::test]
    async fn wrong_signature_is_refused_and_consumes_no_nonce() {
        let sim = start_with_key(None).await;
        let mut request = Call::new(&sim, "BalanceEx", 5);
        request.tamper_signature = true;
        let answer = request.send(&sim).await;
        assert_eq!(errors(&answer), ["EAPI:Invalid signature"]);
        assert!(answer.get("result").is_none());

        let mut request = Call::new(&sim, "BalanceEx", 5);
        request.secret = ApiSecret::from_bytes(vec![8u8; 64]);
        assert_eq!(
            errors(&request.send(&sim).await),
            ["EAPI:Invalid signature"]
        );
        assert_eq!(sim.last_nonce(), None);
    }

    #[tokio::test]
    async fn replayed_or_smaller_nonce_is_refused_without_moving_last_nonce() {
        let sim = start_with_key(None).await;
        assert!(errors(&call(&sim, "Balance", 100).await).is_empty());
        assert_eq!(
            errors(&call(&sim, "Balance", 100).await),
            ["EAPI:Invalid nonce"]
        );
        assert_eq!(
            errors(&call(&sim, "BalanceEx", 99).await),
            ["EAPI:Invalid nonce"]
        );
        assert_eq!(sim.last_nonce(), Some(100));
        assert!(errors(&call(&sim, "Balance", 101).await).is_empty());
        assert_eq!(sim.last_nonce(), Some(101));
    }

    #[tokio::test]
    async fn unknown_or_missing_key_is_refused_before_anything_else() {
        let sim = start_with_key(None).await;
        let mut request = Call::new(&sim, "BalanceEx", 1);
        request.key = "simtestkey".into();
        request.tamper_signature = true;
        assert_eq!(errors(&request.send(&sim).await), ["EAPI:Invalid key"]);

        let response = http()
            .post(format!("{}/0/private/Balance", sim.url()))
            .body("nonce=1")
            .send()
            .await
            .unwrap();
        let answer: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert_eq!(errors(&answer), ["EAPI:Invalid key"]);
        assert_eq!(sim.last_nonce(), None);
    }

    #[tokio::test]
    async fn missing_signature_or_nonce_is_refused() {
        let sim = start_with_key(None).await;
        let key = sim.credentials().key.expose().to_owned();
        let response = http()
            .post(format!("{}/0/private/Balance", sim.url()))
            .header("API-Key", &key)
            .body("nonce=1")
            .send()
            .await
            .unwrap();
        let answer: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert_eq!(errors(&answer), ["EAPI:Invalid signature"]);

        let response = http()
            .post(format!("{}/0/private/Balance", sim.url()))
            .header("API-Key", &key)
            .header("API-Sign", "AAAA")
            .body("nonce=soon")
            .send()
            .await
            .unwrap();
        let answer: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert_eq!(errors(&answer), ["EAPI:Invalid nonce"]);
    }

    #[tokio::test]
    async fn json_bodies_are_accepted_like_form_bodies() {
        let sim = start_with_key(Some("pw")).await;
        let credentials = sim.credentials();
        let body = br#"{"nonce":"42","otp":"pw"}"#;
        let response = http()
            .post(format!("{}/0/private/Balance", sim.url()))
            .header("API-Key", credentials.key.expose())
            .header(
                "API-Sign",
                sign("/0/private/Balance", 42, body, &credentials.secret),
            )
            .header("Content-Type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        let answer: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert!(errors(&answer).is_empty(), "{answer}");
        assert_eq!(sim.last_nonce(), Some(42));
    }

    #[tokio::test]
    async fn a_key_with_2fa_requires_its_otp_and_one_without_refuses_any() {
        let sim = start_with_key(Some("s3cret pass")).await;
        assert_eq!(
            errors(&call(&sim, "BalanceEx", 1).await),
            ["EGeneral:Permission denied"]
        );
        let mut request = Call::new(&sim, "BalanceEx", 2);
        request.otp = Some("wrong");
        assert_eq!(
            errors(&request.send(&sim).await),
            ["EGeneral:Permission denied"]
        );
        assert_eq!(sim.last_nonce(), None);
        let mut request = Call::new(&sim, "BalanceEx", 3);
        request.otp = Some("s3cret+pass");
        assert!(errors(&request.send(&sim).await).is_empty());
        assert_eq!(sim.last_nonce(), Some(3));

        let plain = start_with_key(None).await;
        let mut request = Call::new(&plain, "Balance", 1);
        request.otp = Some("123456");
        assert_eq!(errors(&request.send(&plain).await), ["EAPI:Invalid key"]);
    }

    #[tokio::test]
    async fn rate_limit_trips_after_fifteen_quick_calls_on_starter_tier() {
        let sim = start(SimOptions {
            credentials: Some(test_credentials(None)),
            rate_limit: Some(STARTER_RATE_LIMIT),
            ..SimOptions::default()
        })
        .await;
        for nonce in 1..=15 {
            let answer = call(&sim, "BalanceEx", nonce).await;
            assert!(errors(&answer).is_empty(), "call {nonce}: {answer}");
        }
        assert_eq!(
            errors(&call(&sim, "BalanceEx", 16).await),
            ["EAPI:Rate limit exceeded"]
        );
        assert_eq!(
            errors(&call(&sim, "Balance", 17).await),
            ["EAPI:Rate limit exceeded"]
        );
    }

    #[test]
    fn rate_counter_decays_continuously_and_counts_refused_calls() {
        let start = Instant::now();
        let mut counter = RateCounter {
            level: 0.0,
            updated: start,
        };
        for _ in 0..15 {
            assert!(counter.charge(start, 15.0, 0.33));
        }
        assert!(!counter.charge(start, 15.0, 0.33)); // level 16
        // 16 - 0.33 * 6 = 14.02, +1 = 15.02: still over.
        assert!(!counter.charge(start + Duration::from_secs(6), 15.0, 0.33));
        // 15.02 - 0.33 * 4 = 13.7, +1 = 14.7: allowed again.
        assert!(counter.charge(start + Duration::from_secs(10), 15.0, 0.33));
        // Decay never goes below zero.
        assert!(counter.charge(start + Duration::from_secs(10_000), 1.0, 0.33));
        assert!(!counter.charge(start + Duration::from_secs(10_000), 1.0, 0.33));
    }

    #[tokio::test]
    async fn injected_kraken_error_applies_for_the_given_calls_then_service_resumes() {
        let sim = start_with_key(None).await;
        sim.inject(
            "BalanceEx",
            Fault::KrakenError("EService:Unavailable".into()),
            Some(1),
        );
        assert_eq!(
            errors(&call(&sim, "BalanceEx", 1).await),
            ["EService:Unavailable"]
        );
        // The faulted call consumed no nonce, so the same nonce now succeeds.
        assert_eq!(sim.last_nonce(), None);
        let answer = call(&sim, "BalanceEx", 1).await;
        assert!(errors(&answer).is_empty(), "{answer}");
        assert_eq!(answer["result"]["XETH"]["balance"], "12.5000000000");
    }

    #[tokio::test]
    async fn faults_hit_even_a_wrong_key_and_method_specific_beats_wildcard() {
        let sim = start_with_key(None).await;
        sim.inject(
            "*",
            Fault::KrakenError("EGeneral:Temporary lockout".into()),
            None,
        );
        sim.inject("Balance", Fault::NoResult, None);
        let mut request = Call::new(&sim, "BalanceEx", 1);
        request.key = "nobody".into();
        assert_eq!(
            errors(&request.send(&sim).await),
            ["EGeneral:Temporary lockout"]
        );
        let answer = call(&sim, "Balance", 2).await;
        assert_eq!(answer, json!({"error": []}));
        let assets = http()
            .get(format!("{}/0/public/Assets", sim.url()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(assets.contains("Temporary lockout"), "{assets}");

        sim.clear_faults();
        assert!(errors(&call(&sim, "Balance", 3).await).is_empty());
    }

    #[tokio::test]
    async fn status_and_raw_body_faults_are_sent_verbatim() {
        let sim = start_with_key(None).await;
        let page = "<html><body>520: Web server is returning an unknown error</body></html>";
        sim.inject("Balance", Fault::Status(520, page.into()), Some(1));
        sim.inject(
            "BalanceEx",
            Fault::RawBody(br#"{"error":[],"result":{"XX"#.to_vec()),
            Some(1),
        );
        let url = format!("{}/0/private/Balance", sim.url());
        let response = http().post(url).body("nonce=1").send().await.unwrap();
        assert_eq!(response.status().as_u16(), 520);
        assert_eq!(
            response.headers()["content-type"],
            "text/html; charset=UTF-8"
        );
        assert_eq!(response.text().await.unwrap(), page);

        let url = format!("{}/0/private/BalanceEx", sim.url());
        let response = http().post(url).body("nonce=1").send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(
            response.bytes().await.unwrap().as_ref(),
            br#"{"error":[],"result":{"XX"#
        );
    }

    #[tokio::test]
    async fn hang_never_answers_until_shutdown() {
        let sim = start_with_key(None).await;
        sim.inject("Assets", Fault::Hang, None);
        let url = format!("{}/0/public/Assets", sim.url());
        let started = std::time::Instant::now();
        let error = http()
            .get(&url)
            .timeout(Duration::from_millis(300))
            .send()
            .await
            .expect_err("a hang never answers");
        assert!(error.is_timeout(), "{error}");
        assert!(started.elapsed() >= Duration::from_millis(300));

        let pending = tokio::spawn(async move { http().get(url).send().await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        sim.shutdown();
        let outcome = tokio::time::timeout(Duration::from_secs(5), pending)
            .await
            .expect("shutdown ends the hang")
            .unwrap();
        assert!(outcome.is_err(), "the connection closes without an answer");
        assert_eq!(sim.calls("Assets"), 2);
    }

    #[tokio::test]
    async fn trickle_declares_a_large_body_and_sends_one_byte_per_second() {
        let sim = start_with_key(None).await;
        sim.inject("Balance", Fault::Trickle, Some(1));
        let mut response = http()
            .post(format!("{}/0/private/Balance", sim.url()))
            .body("nonce=1")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.content_length(), Some(TRICKLE_DECLARED_LENGTH));
        let started = std::time::Instant::now();
        let first = response.chunk().await.unwrap().unwrap();
        let second = response.chunk().await.unwrap().unwrap();
        assert_eq!(first.len() + second.len(), 2);
        assert!(started.elapsed() >= Duration::from_millis(900));
    }

    #[tokio::test]
    async fn calls_counts_every_request_that_reaches_a_method() {
        let sim = start_with_key(None).await;
        call(&sim, "BalanceEx", 1).await;
        call(&sim, "BalanceEx", 1).await; // invalid nonce
        let mut bad_key = Call::new(&sim, "BalanceEx", 2);
        bad_key.key = "nobody".into();
        bad_key.send(&sim).await;
        sim.inject("Balance", Fault::NoResult, Some(1));
        call(&sim, "Balance", 3).await;
        http()
            .get(format!("{}/0/public/Assets", sim.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(sim.calls("BalanceEx"), 3);
        assert_eq!(sim.calls("Balance"), 1);
        assert_eq!(sim.calls("Assets"), 1);
        assert_eq!(sim.calls("TradeBalance"), 0);
    }

    #[tokio::test]
    async fn assets_lists_codes_with_altnames_and_is_get_only() {
        let sim = start(SimOptions::default()).await;
        let url = format!("{}/0/public/Assets", sim.url());
        let response = http().get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");
        let answer: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert!(errors(&answer).is_empty());
        let result = &answer["result"];
        for (code, altname) in [
            ("XXBT", "XBT"),
            ("XETH", "ETH"),
            ("ZUSD", "USD"),
            ("ZEUR", "EUR"),
            ("DOT", "DOT"),
            ("DOT.S", "DOT.S"),
            ("ETH2.S", "ETH2.S"),
            ("USD.M", "USD.M"),
            ("USDC", "USDC"),
            ("XXDG", "XDG"),
            ("DOT28.S", "DOT28.S"),
        ] {
            assert_eq!(result[code]["altname"], altname, "{code}");
            assert_eq!(result[code]["aclass"], "currency", "{code}");
            assert_eq!(result[code]["decimals"], 10, "{code}");
        }

        let response = http().post(&url).send().await.unwrap();
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()["allow"], "GET");
        let answer: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert_eq!(errors(&answer), ["EGeneral:Invalid arguments"]);
    }

    #[tokio::test]
    async fn time_answers_unixtime_and_rfc1123() {
        let sim = start(SimOptions::default()).await;
        let answer: Value = http()
            .get(format!("{}/0/public/Time", sim.url()))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .map(|b| serde_json::from_slice(&b).unwrap())
            .unwrap();
        let unixtime = answer["result"]["unixtime"].as_u64().unwrap();
        assert!(unixtime > 1_700_000_000);
        assert_eq!(answer["result"]["rfc1123"], rfc1123(unixtime));
    }

    #[test]
    fn rfc1123_uses_krakens_two_digit_year() {
        assert_eq!(rfc1123(1_616_492_376), "Tue, 23 Mar 21 09:39:36 +0000");
        assert_eq!(rfc1123(951_782_400), "Tue, 29 Feb 00 00:00:00 +0000");
        assert_eq!(rfc1123(0), "Thu, 01 Jan 70 00:00:00 +0000");
    }

    #[tokio::test]
    async fn balance_ex_can_be_refused_while_balance_still_works() {
        let sim = start(SimOptions {
            credentials: Some(test_credentials(None)),
            balance_ex_enabled: false,
            ..SimOptions::default()
        })
        .await;
        assert_eq!(
            errors(&call(&sim, "BalanceEx", 1).await),
            ["EGeneral:Permission denied"]
        );
        let answer = call(&sim, "Balance", 2).await;
        assert_eq!(answer["result"]["XXBT"], "1.2345678901");
    }

    #[tokio::test]
    async fn unknown_paths_and_wrong_methods_are_http_errors() {
        let sim = start(SimOptions::default()).await;
        let response = http()
            .post(format!("{}/0/private/AddOrder", sim.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
        assert_eq!(response.headers()["content-type"], "application/json");

        let response = http()
            .get(format!("{}/0/private/Balance", sim.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()["allow"], "POST");
    }

    #[tokio::test]
    async fn latency_delays_every_answer() {
        let sim = start(SimOptions {
            latency: Duration::from_millis(250),
            ..SimOptions::default()
        })
        .await;
        let started = std::time::Instant::now();
        let response = http()
            .get(format!("{}/0/public/Assets", sim.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(started.elapsed() >= Duration::from_millis(250));
    }

    #[tokio::test]
    async fn generated_credentials_have_krakens_shapes_and_work() {
        let sim = start(SimOptions::default()).await;
        let credentials = sim.credentials();
        assert_eq!(credentials.key.expose().len(), 56);
        assert_eq!(credentials.secret.expose().len(), 64);
        assert!(credentials.otp.is_none());
        assert!(errors(&call(&sim, "BalanceEx", 1).await).is_empty());
        let other = start(SimOptions::default()).await;
        assert_ne!(other.credentials().key, credentials.key);
    }

    #[tokio::test]
    async fn moving_balances_drift_within_five_percent_and_keep_zero_and_hold() {
        let sim = start(SimOptions {
            moving: true,
            ..SimOptions::default()
        })
        .await;
        let answer = call(&sim, "BalanceEx", 1).await;
        for (index, &(code, balance, hold)) in DEFAULT_BALANCES.iter().enumerate() {
            let served: f64 = answer["result"][code]["balance"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((served - balance).abs() <= balance * 0.05 + 1e-9, "{code}");
            if index > 0 && balance > 0.0 {
                assert_ne!(served, balance, "{code} should drift");
            }
            assert_eq!(
                answer["result"][code]["hold_trade"],
                format!("{hold:.10}"),
                "{code}"
            );
        }
        assert_eq!(answer["result"]["ZEUR"]["balance"], "0.0000000000");
    }

    #[test]
    fn drift_is_smooth_bounded_and_positive() {
        let mut previous = drifted(100.0, 3, 0.0);
        for step in 1..=10_000 {
            let t = f64::from(step);
            let now = drifted(100.0, 3, t);
            assert!((95.0..=105.0).contains(&now));
            assert!((now - previous).abs() < 0.1, "jump at {t}s");
            previous = now;
        }
        assert_ne!(drifted(100.0, 0, 0.0), drifted(100.0, 0, 30.0));
        assert_eq!(drifted(0.0, 2, 123.0), 0.0);
    }

    #[tokio::test]
    async fn shutdown_is_idempotent_and_stops_accepting() {
        let sim = start(SimOptions::default()).await;
        let url = format!("{}/0/public/Time", sim.url());
        assert!(http().get(&url).send().await.is_ok());
        sim.shutdown();
        sim.shutdown();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let fresh = reqwest::Client::builder().no_proxy().build().unwrap();
        assert!(fresh.get(&url).send().await.is_err());
    }

    #[tokio::test]
    async fn dropping_the_handle_stops_the_server() {
        let sim = start(SimOptions::default()).await;
        let url = format!("{}/0/public/Time", sim.url());
        drop(sim);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(http().get(&url).send().await.is_err());
    }

    #[test]
    fn form_bodies_decode_percent_escapes_and_keep_the_first_nonce() {
        assert_eq!(
            PrivateParams::from_form(b"nonce=7&otp=a%20b+c%2&nonce=9"),
            PrivateParams {
                nonce: Some(7),
                otp: Some("a b c%2".into()),
                asset: None,
            }
        );
        assert_eq!(
            PrivateParams::from_form(b"nonce=1&asset=ZEUR")
                .asset
                .as_deref(),
            Some("ZEUR")
        );
        assert_eq!(
            PrivateParams::from_json(br#"{"nonce":1,"asset":"XXBT"}"#)
                .asset
                .as_deref(),
            Some("XXBT")
        );
        assert_eq!(PrivateParams::from_form(b"otp=x").nonce, None);
        assert_eq!(PrivateParams::from_form(b"nonce=-1").nonce, None);
    }

    #[test]
    fn sim_kraken_can_be_shared_across_tasks() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SimKraken>();
    }

    async fn get_json(sim: &SimKraken, path_and_query: &str) -> Value {
        let response = http()
            .get(format!("{}{path_and_query}", sim.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
    }

    fn last_price(answer: &Value, pair: &str) -> f64 {
        answer["result"][pair]["c"][0]
            .as_str()
            .unwrap_or_else(|| panic!("no price for {pair}: {answer}"))
            .parse()
            .unwrap()
    }

    #[tokio::test]
    async fn asset_pairs_list_base_and_quote_codes_and_are_get_only() {
        let sim = start(SimOptions::default()).await;
        let answer = get_json(&sim, "/0/public/AssetPairs").await;
        let result = &answer["result"];
        for (pair, altname, base, quote) in [
            ("XXBTZUSD", "XBTUSD", "XXBT", "ZUSD"),
            ("XETHZUSD", "ETHUSD", "XETH", "ZUSD"),
            ("XXBTZEUR", "XBTEUR", "XXBT", "ZEUR"),
            ("XETHZEUR", "ETHEUR", "XETH", "ZEUR"),
            ("DOTUSD", "DOTUSD", "DOT", "ZUSD"),
            ("DOTEUR", "DOTEUR", "DOT", "ZEUR"),
            ("ZEURZUSD", "EURUSD", "ZEUR", "ZUSD"),
            ("USDCUSD", "USDCUSD", "USDC", "ZUSD"),
            ("XXDGZUSD", "XDGUSD", "XXDG", "ZUSD"),
            ("XETHXXBT", "ETHXBT", "XETH", "XXBT"),
        ] {
            assert_eq!(result[pair]["altname"], altname, "{pair}");
            assert_eq!(result[pair]["base"], base, "{pair}");
            assert_eq!(result[pair]["quote"], quote, "{pair}");
        }
        assert_eq!(result["XXBTZUSD"]["wsname"], "XBT/USD");
        assert_eq!(result.as_object().unwrap().len(), PAIRS.len());
        assert_eq!(sim.calls("AssetPairs"), 1);
        let response = http()
            .post(format!("{}/0/public/AssetPairs", sim.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405);
    }

    #[tokio::test]
    async fn ticker_prices_are_consistent_by_default_and_settable() {
        let sim = start(SimOptions::default()).await;
        let answer = get_json(
            &sim,
            "/0/public/Ticker?pair=XXBTZUSD,XETHZUSD,DOTUSD,ZEURZUSD,XXDGZUSD,USDCUSD,XXBTZEUR,DOTEUR",
        )
        .await;
        assert!(errors(&answer).is_empty(), "{answer}");
        assert_eq!(last_price(&answer, "XXBTZUSD"), 65000.0);
        assert_eq!(last_price(&answer, "XETHZUSD"), 3500.0);
        assert_eq!(last_price(&answer, "DOTUSD"), 7.5);
        assert_eq!(last_price(&answer, "ZEURZUSD"), 1.08);
        assert_eq!(last_price(&answer, "XXDGZUSD"), 0.15);
        assert_eq!(last_price(&answer, "USDCUSD"), 1.0);
        // EUR pairs agree with the USD ones through EURUSD.
        let xbt_eur = last_price(&answer, "XXBTZEUR");
        assert!((xbt_eur * 1.08 - 65000.0).abs() < 0.1, "{xbt_eur}");
        assert!((last_price(&answer, "DOTEUR") * 1.08 - 7.5).abs() < 1e-4);
        assert_eq!(answer["result"]["XXBTZUSD"]["c"][1], "0.10000000");

        sim.set_price("DOTUSD", 9.25);
        sim.set_price("XBTUSD", 70000.0);
        let answer = get_json(&sim, "/0/public/Ticker?pair=DOTUSD,XXBTZUSD").await;
        assert_eq!(last_price(&answer, "DOTUSD"), 9.25);
        assert_eq!(last_price(&answer, "XXBTZUSD"), 70000.0);
        assert_eq!(sim.calls("Ticker"), 2);
    }

    #[tokio::test]
    async fn ticker_answers_altnames_under_the_canonical_name_and_refuses_unknown_pairs() {
        let sim = start(SimOptions::default()).await;
        let answer = get_json(&sim, "/0/public/Ticker?pair=XBTUSD%2CEURUSD").await;
        let result = answer["result"].as_object().unwrap();
        let mut names: Vec<_> = result.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["XXBTZUSD", "ZEURZUSD"]);

        let answer = get_json(&sim, "/0/public/Ticker?pair=XXBTZUSD,NOPEUSD").await;
        assert_eq!(errors(&answer), ["EQuery:Unknown asset pair"]);
        assert!(answer.get("result").is_none());

        let answer = get_json(&sim, "/0/public/Ticker").await;
        assert_eq!(answer["result"].as_object().unwrap().len(), PAIRS.len());
        // Tiny cross prices keep their significant digits.
        assert!(last_price(&answer, "XXDGXXBT") > 0.0);
    }

    #[tokio::test]
    async fn faults_apply_to_the_public_market_endpoints_too() {
        let sim = start(SimOptions::default()).await;
        sim.inject(
            "Ticker",
            Fault::KrakenError("EService:Unavailable".into()),
            Some(1),
        );
        let answer = get_json(&sim, "/0/public/Ticker?pair=XXBTZUSD").await;
        assert_eq!(errors(&answer), ["EService:Unavailable"]);
        let answer = get_json(&sim, "/0/public/Ticker?pair=XXBTZUSD").await;
        assert!(errors(&answer).is_empty());
        assert_eq!(sim.calls("Ticker"), 2);
    }

    #[tokio::test]
    async fn moving_prices_drift_within_five_percent() {
        let sim = start(SimOptions {
            moving: true,
            ..SimOptions::default()
        })
        .await;
        let answer = get_json(&sim, "/0/public/Ticker?pair=XXBTZUSD,DOTUSD").await;
        let xbt = last_price(&answer, "XXBTZUSD");
        assert!((xbt - 65000.0).abs() <= 65000.0 * 0.05 + 1.0, "{xbt}");
        assert_ne!(xbt, 65000.0);
        let dot = last_price(&answer, "DOTUSD");
        assert!((dot - 7.5).abs() <= 7.5 * 0.05 + 1e-4, "{dot}");
    }

    #[tokio::test]
    async fn get_api_key_info_lists_the_configured_permissions() {
        let sim = start(SimOptions {
            credentials: Some(test_credentials(None)),
            permissions: vec!["query-funds".into(), "withdraw-funds".into()],
            ..SimOptions::default()
        })
        .await;
        let answer = call(&sim, "GetApiKeyInfo", 1).await;
        assert_eq!(answer["result"]["apiKeyName"], "exporter");
        assert_eq!(answer["result"]["nonce"], "1");
        assert_eq!(
            answer["result"]["permissions"],
            json!(["query-funds", "withdraw-funds"])
        );
        assert_eq!(sim.calls("GetApiKeyInfo"), 1);
        let mut bad = Call::new(&sim, "GetApiKeyInfo", 2);
        bad.key = "nobody".into();
        assert_eq!(errors(&bad.send(&sim).await), ["EAPI:Invalid key"]);
    }

    #[tokio::test]
    async fn a_kraken_without_get_api_key_info_calls_it_an_unknown_method() {
        let sim = start(SimOptions {
            credentials: Some(test_credentials(None)),
            api_key_info_enabled: false,
            ..SimOptions::default()
        })
        .await;
        assert_eq!(
            errors(&call(&sim, "GetApiKeyInfo", 1).await),
            ["EGeneral:Unknown method"]
        );
        assert_eq!(sim.last_nonce(), None);
        assert_eq!(sim.calls("GetApiKeyInfo"), 1);
    }

    #[tokio::test]
    async fn withdraw_methods_answer_only_keys_that_may_withdraw() {
        let query_only = start_with_key(None).await;
        assert_eq!(
            errors(&call(&query_only, "WithdrawMethods", 1).await),
            ["EGeneral:Permission denied"]
        );
        // The refusal comes after authentication: the nonce is used.
        assert_eq!(query_only.last_nonce(), Some(1));

        let withdrawer = start(SimOptions {
            credentials: Some(test_credentials(None)),
            permissions: vec!["Funds: Withdraw".into()],
            ..SimOptions::default()
        })
        .await;
        let answer = call(&withdrawer, "WithdrawMethods", 1).await;
        assert!(errors(&answer).is_empty(), "{answer}");
        assert_eq!(answer["result"][0]["asset"], "XXBT");
        assert_eq!(withdrawer.calls("WithdrawMethods"), 1);
    }

    #[tokio::test]
    async fn trade_balance_is_refused_by_default() {
        let sim = start_with_key(None).await;
        assert_eq!(
            errors(&call(&sim, "TradeBalance", 1).await),
            ["EGeneral:Permission denied"]
        );
        assert_eq!(sim.calls("TradeBalance"), 1);
    }

    #[tokio::test]
    async fn trade_balance_values_every_balance_in_the_requested_asset() {
        let sim = start(SimOptions {
            credentials: Some(test_credentials(None)),
            trade_balance_enabled: true,
            ..SimOptions::default()
        })
        .await;
        sim.set_balances(vec![
            ("XXBT".into(), 1.0, 0.0),
            ("DOT28.S".into(), 100.0, 0.0),
            ("ETH2.S".into(), 2.0, 0.0),
            ("ZUSD".into(), 500.0, 0.0),
            ("NEWCOIN".into(), 1000.0, 0.0),
        ]);
        let eb =
            |answer: &Value| -> f64 { answer["result"]["eb"].as_str().unwrap().parse().unwrap() };
        let answer = call(&sim, "TradeBalance", 1).await;
        let usd = 65000.0 + 750.0 + 7000.0 + 500.0;
        assert!((eb(&answer) - usd).abs() < 0.01, "{answer}");
        assert_eq!(answer["result"]["m"], "0.0000");

        let mut in_eur = Call::new(&sim, "TradeBalance", 2);
        in_eur.params = "asset=ZEUR";
        let answer = in_eur.send(&sim).await;
        assert!((eb(&answer) - usd / 1.08).abs() < 0.01, "{answer}");

        let mut by_altname = Call::new(&sim, "TradeBalance", 3);
        by_altname.params = "asset=XBT";
        let answer = by_altname.send(&sim).await;
        // Kraken's four decimals.
        assert!((eb(&answer) - usd / 65000.0).abs() < 1e-4, "{answer}");

        let mut unknown = Call::new(&sim, "TradeBalance", 4);
        unknown.params = "asset=NOPE";
        assert_eq!(errors(&unknown.send(&sim).await), ["EQuery:Unknown asset"]);
    }

    #[test]
    fn every_pair_has_a_default_price_and_known_assets() {
        let state = SimState::new();
        for &(name, _, base, quote) in PAIRS {
            assert!(state.prices[name] > 0.0, "{name}");
            for code in [base, quote] {
                assert!(ASSETS.iter().any(|a| a.0 == code), "{name}: {code}");
            }
        }
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
