//! A simulated Kraken REST API, served in-process on `127.0.0.1`.
//!
//! Owns the fake exchange behind `--demo` and behind every integration test: balances, asset
//! metadata, per-key authentication (API key, signature, nonce, static 2FA password), Kraken's
//! per-key rate counter, and fault injection (hangs, trickled bodies, HTML error pages, truncated
//! JSON, Kraken error envelopes). The exporter reaches it through its real HTTP client, so on the
//! wire it answers like Kraken: API errors arrive with HTTP 200 in the `{"error":[...]}` envelope,
//! amounts are decimal strings with 10 decimals, and every answer is `application/json` (except
//! injected HTML error pages, which carry `text/html` like the proxies that send them).
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
}

impl Default for SimOptions {
    /// The plainest exchange: generated credentials, no rate limit, no latency, fixed balances,
    /// BalanceEx available.
    fn default() -> Self {
        Self {
            credentials: None,
            rate_limit: None,
            latency: Duration::ZERO,
            moving: false,
            balance_ex_enabled: true,
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

    /// Inject a fault for `method` ("BalanceEx", "Balance", "Assets", "Time", or "*" for all) for
    /// the next `times` calls (None = until cleared). A fault injected for a method replaces the
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

    /// How many requests reached the sim for a method ("BalanceEx", "Balance", "Assets",
    /// "Time"), counted whether or not they succeeded (including faulted ones and ones rejected
    /// for bad auth). Lets tests prove caching and coalescing.
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
    Time,
    Balance,
    BalanceEx,
}

impl Endpoint {
    fn from_path(path: &str) -> Option<Self> {
        match path {
            "/0/public/Assets" => Some(Self::Assets),
            "/0/public/Time" => Some(Self::Time),
            "/0/private/Balance" => Some(Self::Balance),
            "/0/private/BalanceEx" => Some(Self::BalanceEx),
            _ => None,
        }
    }

    /// Name used by [`SimKraken::calls`] and [`SimKraken::inject`].
    fn name(self) -> &'static str {
        match self {
            Self::Assets => "Assets",
            Self::Time => "Time",
            Self::Balance => "Balance",
            Self::BalanceEx => "BalanceEx",
        }
    }

    fn is_private(self) -> bool {
        matches!(self, Self::Balance | Self::BalanceEx)
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

    let body = match endpoint {
        Endpoint::Assets => envelope_ok(assets_result()),
        Endpoint::Time => envelope_ok(time_result()),
        Endpoint::Balance | Endpoint::BalanceEx => {
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
                Ok(()) => {
                    let balances = shared.current_balances();
                    if endpoint == Endpoint::BalanceEx {
                        envelope_ok(balance_ex_result(&balances))
                    } else {
                        envelope_ok(balance_result(&balances))
                    }
                }
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
}

/// `balance` moved by at most ±5 % along a slow sine, phase-shifted per asset so they do not move
/// in lockstep. A positive balance stays positive; zero stays zero.
fn drifted(balance: f64, index: usize, elapsed_secs: f64) -> f64 {
    balance * (1.0 + DRIFT_AMPLITUDE * (elapsed_secs / DRIFT_PERIOD_SECS + index as f64).sin())
}

/// Runs Kraken's checks on a private call; `Err` carries the Kraken error message to answer.
fn authorize(
    shared: &Shared,
    endpoint: Endpoint,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), &'static str> {
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

    if endpoint == Endpoint::BalanceEx && !shared.balance_ex_enabled {
        return Err("EGeneral:Permission denied");
    }
    Ok(())
}

/// The fields of a private call body the sim cares about.
#[derive(Debug, Default, PartialEq, Eq)]
struct PrivateParams {
    nonce: Option<u64>,
    otp: Option<String>,
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
        Self { nonce, otp }
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
            }
        }

        async fn send(self, sim: &SimKraken) -> Value {
            let path = format!("/0/private/{}", self.method);
            let mut body = format!("nonce={}", self.nonce);
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
            .post(format!("{}/0/private/TradeBalance", sim.url()))
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
                otp: Some("a b c%2".into())
            }
        );
        assert_eq!(PrivateParams::from_form(b"otp=x").nonce, None);
        assert_eq!(PrivateParams::from_form(b"nonce=-1").nonce, None);
    }

    #[test]
    fn sim_kraken_can_be_shared_across_tasks() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SimKraken>();
    }
}
