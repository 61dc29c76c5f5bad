//! The HTTP client for Kraken's REST API.
//!
//! Owns request construction (URL and query string of public calls, signed form body and headers
//! of private ones), the per-request timeout, the cap on body size, the refusal of redirects, the
//! one retry of an invalid nonce, the BalanceEx → Balance fallback (on a refusal only), the
//! batching and pacing of public requests (Kraken allows about one per second per IP), and
//! reporting every call it makes to its [`CallObserver`].
//! Must not: decide when to call, retry anything else, follow a redirect, interpret what an
//! answer means for the operator, know how calls are counted or exported, or let a credential
//! reach an error, a log line or an observer.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_TYPE, HeaderValue};

use super::endpoint::Endpoint;
use super::error::{KrakenError, Reason};
use super::nonce::NonceSource;
use super::observer::CallObserver;
use super::parse::{self, ApiKeyInfo, AssetBalance, AssetTable, EarnAllocation, PairTable};
use super::sign::sign;
use crate::secret::Credentials;

/// Largest body read from Kraken. A balance answer of a few hundred assets is tens of KiB; a
/// larger body is an error page or an attack, and reading it would only cost memory.
pub(crate) const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Most pairs asked of Ticker in one request: very long `pair` lists in one URL have been answered
/// with Cloudflare 520, so longer lists are split into several requests.
pub const TICKER_BATCH: usize = 20;

/// How long a refused BalanceEx is not asked again, when the endpoint is chosen automatically.
const BALANCE_EX_RETRY_AFTER: Duration = Duration::from_secs(6 * 3600);

/// Least time between the starts of two public requests of one client. Kraken allows about one
/// public request per second per IP (more answer `EGeneral:Too many requests`), and the batches
/// of one Ticker refresh would otherwise go out back to back.
pub const PUBLIC_CALL_SPACING: Duration = Duration::from_secs(1);

/// Spaces the public requests of one client (all its tasks share it): each waits until
/// [`PUBLIC_CALL_SPACING`] after the start of the previous one. Uses `tokio::time`, so tests can
/// run it on paused time.
#[derive(Debug)]
struct PublicPacer {
    /// Least time between two starts.
    spacing: Duration,
    /// When the next public request may start; `None` before the first. Held across the wait, so
    /// waiting requests start one after the other in the order they asked.
    next_start: tokio::sync::Mutex<Option<tokio::time::Instant>>,
}

impl PublicPacer {
    fn new(spacing: Duration) -> Self {
        Self {
            spacing,
            next_start: tokio::sync::Mutex::new(None),
        }
    }

    /// Waits until a public request may start, and books the slot after it.
    async fn wait_turn(&self) {
        let mut next_start = self.next_start.lock().await;
        if let Some(at) = *next_start {
            tokio::time::sleep_until(at).await;
        }
        *next_start = Some(tokio::time::Instant::now() + self.spacing);
    }
}

/// Which private endpoint returns balances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalanceEndpoint {
    /// BalanceEx, falling back to Balance while BalanceEx is refused.
    Auto,
    /// Always BalanceEx (totals and holds).
    BalanceEx,
    /// Always Balance (totals only, no holds).
    Balance,
}

impl BalanceEndpoint {
    /// Every choice, in the order they are offered to operators.
    pub const ALL: [BalanceEndpoint; 3] = [
        BalanceEndpoint::Auto,
        BalanceEndpoint::BalanceEx,
        BalanceEndpoint::Balance,
    ];

    /// The name operators write (`auto`, `balance-ex`, `balance`).
    pub fn as_str(self) -> &'static str {
        match self {
            BalanceEndpoint::Auto => "auto",
            BalanceEndpoint::BalanceEx => "balance-ex",
            BalanceEndpoint::Balance => "balance",
        }
    }

    /// The methods this choice may call, so their counters can exist before the first call.
    pub fn endpoints(self) -> &'static [Endpoint] {
        match self {
            BalanceEndpoint::Auto => &[Endpoint::BalanceEx, Endpoint::Balance],
            BalanceEndpoint::BalanceEx => &[Endpoint::BalanceEx],
            BalanceEndpoint::Balance => &[Endpoint::Balance],
        }
    }
}

/// A name that is not `auto`, `balance-ex` or `balance` (case matters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not one of auto, balance-ex, balance")]
pub struct UnknownBalanceEndpoint;

impl std::str::FromStr for BalanceEndpoint {
    type Err = UnknownBalanceEndpoint;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        BalanceEndpoint::ALL
            .into_iter()
            .find(|choice| choice.as_str() == text)
            .ok_or(UnknownBalanceEndpoint)
    }
}

/// Connection settings for one client.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Base URL without trailing slash, `https://api.kraken.com` in production.
    pub api_url: String,
    /// Upper bound on one request, connection to last body byte.
    pub timeout: Duration,
    /// Which endpoint returns balances.
    pub balance_endpoint: BalanceEndpoint,
}

/// Last trade prices from Ticker, possibly from only some of its batches.
#[derive(Debug)]
pub struct TickerPrices {
    /// Pair name (as Kraken answers it) → last trade price, from every batch that succeeded.
    pub prices: HashMap<String, f64>,
    /// Why some batches gave no prices (the first failure), when some failed; their pairs are
    /// absent from `prices`.
    pub failure: Option<KrakenError>,
}

/// The balances of one account, with the endpoint that produced them.
#[derive(Debug, Clone)]
pub struct BalanceAnswer {
    /// One entry per asset code Kraken returned, sorted by code.
    pub balances: Vec<AssetBalance>,
    /// [`Endpoint::BalanceEx`] or [`Endpoint::Balance`].
    pub endpoint: Endpoint,
}

/// What signs private calls: the key's credentials and its nonces, which only make sense together.
struct Signer {
    /// Key, secret and optional 2FA password.
    credentials: Credentials,
    /// Strictly increasing nonces for this key.
    nonces: NonceSource,
}

/// A client for one API key, or for public market data only. Private calls are signed with its
/// credentials; every call is reported to its observer under its account name.
pub struct KrakenClient {
    /// Shared connection pool; rustls with built-in roots, so no system CA store is needed.
    http: reqwest::Client,
    /// Base URL and timeout.
    options: ClientOptions,
    /// The key's credentials and nonces; `None` for a public-only client, whose private calls
    /// fail with [`KrakenError::NoCredentials`] without sending anything.
    signer: Option<Signer>,
    /// The account name every call is reported under.
    account: String,
    /// Told about every finished call.
    observer: Arc<dyn CallObserver>,
    /// Until when BalanceEx is skipped because Kraken refused it (automatic mode only).
    balance_ex_refused_until: Mutex<Option<Instant>>,
    /// Keeps this client's public requests [`PUBLIC_CALL_SPACING`] apart.
    public_pacer: PublicPacer,
}

impl std::fmt::Debug for KrakenClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KrakenClient")
            .field("account", &self.account)
            .field("api_url", &self.options.api_url)
            .field("has_credentials", &self.signer.is_some())
            .finish_non_exhaustive()
    }
}

/// The `User-Agent` sent with every call, so Kraken can tell this exporter apart.
fn user_agent() -> String {
    format!("kraken_exporter/{}", env!("CARGO_PKG_VERSION"))
}

/// Builds the shared HTTP client with the given per-request timeout. It never follows a redirect:
/// following one would send `API-Key` and `API-Sign` to wherever it points, so a 3xx answer is a
/// [`KrakenError::Redirected`].
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, KrakenError> {
    reqwest::Client::builder()
        .user_agent(user_agent())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .https_only(false)
        .build()
        .map_err(|e| KrakenError::Transport(e.to_string()))
}

impl KrakenClient {
    /// A client for one account's API key: it can make private and public calls.
    pub fn new(
        http: reqwest::Client,
        options: ClientOptions,
        credentials: Credentials,
        nonces: NonceSource,
        account: String,
        observer: Arc<dyn CallObserver>,
    ) -> Self {
        Self::build(
            http,
            options,
            Some(Signer {
                credentials,
                nonces,
            }),
            account,
            observer,
        )
    }

    /// A client without credentials, for the public market data (assets, pairs, prices) that all
    /// accounts share: it belongs to no key, so it uses no key's nonces and keeps no secret. Its
    /// private calls fail with [`KrakenError::NoCredentials`].
    pub fn public(
        http: reqwest::Client,
        options: ClientOptions,
        account: String,
        observer: Arc<dyn CallObserver>,
    ) -> Self {
        Self::build(http, options, None, account, observer)
    }

    fn build(
        http: reqwest::Client,
        options: ClientOptions,
        signer: Option<Signer>,
        account: String,
        observer: Arc<dyn CallObserver>,
    ) -> Self {
        Self {
            http,
            options: ClientOptions {
                api_url: options.api_url.trim_end_matches('/').to_owned(),
                ..options
            },
            signer,
            account,
            observer,
            balance_ex_refused_until: Mutex::new(None),
            public_pacer: PublicPacer::new(PUBLIC_CALL_SPACING),
        }
    }

    /// The same client with another least time between its public requests than
    /// [`PUBLIC_CALL_SPACING`], for tests and benchmarks against a simulated Kraken.
    pub fn with_public_spacing(mut self, spacing: Duration) -> Self {
        self.public_pacer = PublicPacer::new(spacing);
        self
    }

    /// The account name this client reports its calls under.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// Whether this client can make private calls, so callers can skip them instead of failing.
    pub fn has_credentials(&self) -> bool {
        self.signer.is_some()
    }

    /// Fetches the account's balances from the configured endpoint.
    pub async fn balances(&self) -> Result<BalanceAnswer, KrakenError> {
        match self.options.balance_endpoint {
            BalanceEndpoint::BalanceEx => self.balance_ex().await,
            BalanceEndpoint::Balance => self.balance().await,
            BalanceEndpoint::Auto => {
                let skip = self
                    .balance_ex_refused_until
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_some_and(|until| Instant::now() < until);
                if skip {
                    return self.balance().await;
                }
                match self.balance_ex().await {
                    Err(e) if e.is_endpoint_refusal() => {
                        let answer = self.balance().await?;
                        tracing::warn!(
                            account = %self.account,
                            error = %e,
                            "BalanceEx was refused, using Balance instead (no hold amounts); set --kraken.balance-endpoint=balance to skip the attempt"
                        );
                        *self
                            .balance_ex_refused_until
                            .lock()
                            .unwrap_or_else(|e| e.into_inner()) =
                            Some(Instant::now() + BALANCE_EX_RETRY_AFTER);
                        Ok(answer)
                    }
                    other => other,
                }
            }
        }
    }

    async fn balance_ex(&self) -> Result<BalanceAnswer, KrakenError> {
        let endpoint = Endpoint::BalanceEx;
        let balances = self.private(endpoint, &[], parse::balance_ex).await?;
        Ok(BalanceAnswer { balances, endpoint })
    }

    async fn balance(&self) -> Result<BalanceAnswer, KrakenError> {
        let endpoint = Endpoint::Balance;
        let balances = self.private(endpoint, &[], parse::balance).await?;
        Ok(BalanceAnswer { balances, endpoint })
    }

    /// Fetches the public list of asset codes and their short names.
    pub async fn assets(&self) -> Result<AssetTable, KrakenError> {
        self.public_get(Endpoint::Assets, None, parse::assets).await
    }

    /// Fetches the public list of trading pairs, to find which pair prices an asset in a given
    /// currency.
    pub async fn asset_pairs(&self) -> Result<PairTable, KrakenError> {
        self.public_get(Endpoint::AssetPairs, None, parse::asset_pairs)
            .await
    }

    /// Fetches the last trade price of each pair, keyed by the pair name Kraken answers with.
    /// Ask by canonical name (`XXBTZUSD`): Kraken keys its answer by the canonical name even when
    /// asked by altname. Duplicates are asked once; more than [`TICKER_BATCH`] pairs are asked in
    /// several requests, paced like every public request and each counted as one `Ticker` call.
    /// No pair, no request.
    ///
    /// A failed batch does not lose the others: the prices of the batches that succeeded are
    /// returned, with the failure. A batch Kraken refused for itself (`other`, such as
    /// `EQuery:Unknown asset pair`) is skipped and the next is asked; any other failure (a rate
    /// limit, an outage, a timeout) ends the refresh there, since the next batch would meet the
    /// same. `Err` only when no batch succeeded.
    pub async fn ticker(&self, pairs: &[String]) -> Result<TickerPrices, KrakenError> {
        let mut seen = HashSet::new();
        let unique: Vec<&str> = pairs
            .iter()
            .map(String::as_str)
            .filter(|pair| !pair.is_empty() && seen.insert(*pair))
            .collect();
        let mut prices = HashMap::with_capacity(unique.len());
        let mut failure = None;
        let mut answered = unique.is_empty();
        for batch in unique.chunks(TICKER_BATCH) {
            let list: Vec<String> = batch
                .iter()
                .map(|pair| form_urlencoded::byte_serialize(pair.as_bytes()).collect())
                .collect();
            let query = format!("pair={}", list.join(","));
            match self
                .public_get(Endpoint::Ticker, Some(&query), parse::ticker)
                .await
            {
                Ok(batch_prices) => {
                    answered = true;
                    prices.extend(batch_prices);
                }
                Err(error) => {
                    let stop = error.reason() != Reason::Other;
                    failure.get_or_insert(error);
                    if stop {
                        break;
                    }
                }
            }
        }
        match failure {
            Some(error) if !answered => Err(error),
            failure => Ok(TickerPrices { prices, failure }),
        }
    }

    /// Asks Kraken what the signing key may do (its name and permissions), so the exporter can
    /// warn about a key that could move funds. Kraken documents no permission for it.
    pub async fn api_key_info(&self) -> Result<ApiKeyInfo, KrakenError> {
        self.private(Endpoint::GetApiKeyInfo, &[], parse::api_key_info)
            .await
    }

    /// The account's Earn allocations, one entry per strategy, amounts in the native asset.
    /// Needs only "Funds: Query"; costs one private call like any other.
    pub async fn earn_allocations(&self) -> Result<Vec<EarnAllocation>, KrakenError> {
        self.private(Endpoint::EarnAllocations, &[], parse::earn_allocations)
            .await
    }

    /// The nonce of the latest private call this client signed (`None` before the first), so
    /// the key audit can compare it with the largest nonce Kraken accepted for the key.
    pub fn last_nonce(&self) -> Option<u64> {
        self.signer.as_ref().and_then(|signer| signer.nonces.last())
    }

    /// Lists withdrawal methods and discards them: the call reads nothing sensitive and changes
    /// nothing, but Kraken answers it only for keys that may withdraw, so `Ok` means the key can
    /// withdraw and [`Reason::PermissionDenied`] that it (probably) cannot.
    pub async fn withdraw_methods(&self) -> Result<(), KrakenError> {
        self.private(Endpoint::WithdrawMethods, &[], parse::withdraw_methods)
            .await
    }

    /// The account's equivalent balance (`eb`) valued by Kraken in `asset` (a code such as
    /// `ZUSD`), to cross-check the exporter's own valuation. Kraken documents its permission two
    /// ways ("Query Funds" or "Query open orders & trades"), so a refusal is to be expected.
    pub async fn trade_balance(&self, asset: &str) -> Result<f64, KrakenError> {
        self.private(
            Endpoint::TradeBalance,
            &[("asset", asset)],
            parse::trade_balance,
        )
        .await
    }

    /// Calls a public endpoint with `GET` (Kraken refuses other methods on public endpoints) and
    /// the given query string.
    async fn public_get<T>(
        &self,
        endpoint: Endpoint,
        query: Option<&str>,
        parse: fn(u16, &[u8]) -> Result<T, KrakenError>,
    ) -> Result<T, KrakenError> {
        let mut url = format!("{}{}", self.options.api_url, endpoint.path());
        if let Some(query) = query {
            url.push('?');
            url.push_str(query);
        }
        self.public_pacer.wait_turn().await;
        let started = Instant::now();
        let outcome = async {
            let response = self
                .http
                .get(&url)
                .send()
                .await
                .map_err(|e| self.transport(e))?;
            let (status, body) = self.read(response).await?;
            parse(status, &body)
        }
        .await;
        self.record(endpoint, started, &outcome);
        outcome
    }

    /// Calls a private endpoint with `params` in the signed body, retrying once with a fresh nonce
    /// if Kraken says the nonce was not above the last one it saw (another call may have
    /// overtaken this one on the wire). Without credentials nothing is sent or counted.
    async fn private<T>(
        &self,
        method: Endpoint,
        params: &[(&str, &str)],
        parse: fn(u16, &[u8]) -> Result<T, KrakenError>,
    ) -> Result<T, KrakenError> {
        let Some(signer) = &self.signer else {
            return Err(KrakenError::NoCredentials {
                method: method.as_str(),
            });
        };
        match self.private_once(signer, method, params, parse).await {
            Err(e) if e.reason() == Reason::InvalidNonce => {
                tracing::debug!(account = %self.account, method = method.as_str(), "invalid nonce, retrying once with a fresh nonce");
                self.private_once(signer, method, params, parse).await
            }
            other => other,
        }
    }

    async fn private_once<T>(
        &self,
        signer: &Signer,
        method: Endpoint,
        params: &[(&str, &str)],
        parse: fn(u16, &[u8]) -> Result<T, KrakenError>,
    ) -> Result<T, KrakenError> {
        let started = Instant::now();
        let outcome = async {
            let path = method.path();
            let nonce = signer.nonces.next()?;
            let body = form_body(&signer.credentials, nonce, params);
            let signature = sign(path, nonce, body.as_bytes(), &signer.credentials.secret);
            let mut key = HeaderValue::from_str(signer.credentials.key.expose()).map_err(|_| {
                KrakenError::Transport("the API key is not a valid header value".into())
            })?;
            key.set_sensitive(true);
            let mut signature =
                HeaderValue::from_str(&signature).expect("base64 is a valid header value");
            signature.set_sensitive(true);
            let response = self
                .http
                .post(format!("{}{path}", self.options.api_url))
                .header("API-Key", key)
                .header("API-Sign", signature)
                .header(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/x-www-form-urlencoded"),
                )
                .body(body)
                .send()
                .await
                .map_err(|e| self.transport(e))?;
            let (status, bytes) = self.read(response).await?;
            parse(status, &bytes)
        }
        .await;
        self.record(method, started, &outcome);
        outcome
    }

    /// Reads the status and at most [`MAX_BODY_BYTES`] of the body, whatever the status: a
    /// non-200 answer may carry Kraken's error envelope, which the parsers classify
    /// ([`parse::status_error`]). A redirect is an error, its body unread.
    async fn read(&self, mut response: reqwest::Response) -> Result<(u16, Vec<u8>), KrakenError> {
        let status = response.status().as_u16();
        if response.status().is_redirection() {
            return Err(KrakenError::Redirected { status });
        }
        if response
            .content_length()
            .is_some_and(|len| len > MAX_BODY_BYTES as u64)
        {
            return Err(KrakenError::TooLarge {
                limit: MAX_BODY_BYTES,
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport(e))? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(KrakenError::TooLarge {
                    limit: MAX_BODY_BYTES,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
    }

    /// Maps a reqwest failure to a timeout or a transport error. reqwest's messages name the
    /// URL, never headers or bodies.
    fn transport(&self, error: reqwest::Error) -> KrakenError {
        if error.is_timeout() {
            KrakenError::Timeout(self.options.timeout)
        } else {
            KrakenError::Transport(error_chain(&error))
        }
    }

    /// Logs the call at trace level and reports it to the observer.
    fn record<T>(&self, endpoint: Endpoint, started: Instant, outcome: &Result<T, KrakenError>) {
        let reason = outcome.as_ref().err().map(KrakenError::reason);
        let elapsed = started.elapsed();
        tracing::trace!(
            account = %self.account,
            endpoint = endpoint.as_str(),
            elapsed_ms = elapsed.as_millis() as u64,
            outcome = reason.map_or("ok", Reason::as_str),
            "call to Kraken"
        );
        self.observer
            .observe(&self.account, endpoint, elapsed, reason);
    }
}

/// The form body: `nonce=<n>`, the call's parameters, and, for keys with API 2FA,
/// `otp=<password>`. The signature covers these exact bytes.
fn form_body(credentials: &Credentials, nonce: u64, params: &[(&str, &str)]) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("nonce", &nonce.to_string());
    for (name, value) in params {
        form.append_pair(name, value);
    }
    if let Some(otp) = &credentials.otp {
        form.append_pair("otp", otp.expose());
    }
    form.finish()
}

/// The error and its sources on one line (`error sending request: connection refused`).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nonce::SystemClock;
    use crate::observer::CountingObserver;
    use crate::sim::{Fault, SimKraken, SimOptions};

    const TIMEOUT: Duration = Duration::from_secs(5);

    fn options(sim: &SimKraken) -> ClientOptions {
        ClientOptions {
            api_url: format!("{}/", sim.url()),
            timeout: TIMEOUT,
            balance_endpoint: BalanceEndpoint::Auto,
        }
    }

    fn signed(sim: &SimKraken, metrics: &Arc<CountingObserver>) -> KrakenClient {
        KrakenClient::new(
            http_client(TIMEOUT).unwrap(),
            options(sim),
            sim.credentials(),
            NonceSource::new(Box::new(SystemClock)),
            "main".into(),
            Arc::clone(metrics) as Arc<dyn CallObserver>,
        )
    }

    fn public(sim: &SimKraken, metrics: &Arc<CountingObserver>) -> KrakenClient {
        KrakenClient::public(
            http_client(TIMEOUT).unwrap(),
            options(sim),
            "_public".into(),
            Arc::clone(metrics) as Arc<dyn CallObserver>,
        )
        .with_public_spacing(Duration::ZERO)
    }

    fn signed_with(
        sim: &SimKraken,
        metrics: &Arc<CountingObserver>,
        endpoint: BalanceEndpoint,
    ) -> KrakenClient {
        KrakenClient::new(
            http_client(TIMEOUT).unwrap(),
            ClientOptions {
                balance_endpoint: endpoint,
                ..options(sim)
            },
            sim.credentials(),
            NonceSource::new(Box::new(SystemClock)),
            "main".into(),
            Arc::clone(metrics) as Arc<dyn CallObserver>,
        )
    }

    /// Every pair the sim lists, sorted, and how many Ticker requests asking all of them takes.
    async fn every_pair(client: &KrakenClient) -> Vec<String> {
        let pairs = client.asset_pairs().await.unwrap();
        let mut names: Vec<String> = pairs.iter().map(|(name, _)| name.to_owned()).collect();
        names.sort();
        assert!(names.len() > TICKER_BATCH, "{}", names.len());
        names
    }

    #[tokio::test]
    async fn an_unknown_method_answered_with_404_carries_krakens_own_error() {
        let sim = start(SimOptions {
            api_key_info_enabled: false,
            ..SimOptions::default()
        })
        .await;
        let metrics = Arc::new(CountingObserver::default());
        let err = signed(&sim, &metrics).api_key_info().await.unwrap_err();
        assert_eq!(err.to_string(), "Kraken answered EGeneral:Unknown method");
        assert_eq!(err.reason(), Reason::Other);
        assert!(err.is_endpoint_refusal(), "{err:?}");
        assert_eq!(
            metrics.errors("main", Endpoint::GetApiKeyInfo, Reason::Other),
            1
        );
        assert_eq!(
            metrics.errors("main", Endpoint::GetApiKeyInfo, Reason::Http),
            0
        );

        sim.inject(
            Endpoint::Balance,
            Fault::Status(404, r#"{"error":["EAPI:Permission denied"]}"#.into()),
            Some(1),
        );
        let err = signed_with(&sim, &metrics, BalanceEndpoint::Balance)
            .balances()
            .await
            .unwrap_err();
        assert_eq!(err.reason(), Reason::PermissionDenied, "{err}");
    }

    #[tokio::test]
    async fn a_redirect_is_an_error_and_nothing_is_sent_where_it_points() {
        let elsewhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        elsewhere.set_nonblocking(true).unwrap();
        let location = format!(
            "http://{}/0/private/BalanceEx",
            elsewhere.local_addr().unwrap()
        );
        let sim = start(SimOptions::default()).await;
        let metrics = Arc::new(CountingObserver::default());
        for endpoint in [Endpoint::BalanceEx, Endpoint::Assets] {
            sim.inject(endpoint, Fault::Redirect(location.clone()), Some(1));
        }
        let err = signed_with(&sim, &metrics, BalanceEndpoint::BalanceEx)
            .balances()
            .await
            .unwrap_err();
        assert!(
            matches!(err, KrakenError::Redirected { status: 302 }),
            "{err:?}"
        );
        assert_eq!(err.reason(), Reason::Http);
        assert!(err.to_string().contains("not followed"), "{err}");
        let err = public(&sim, &metrics).assets().await.unwrap_err();
        assert!(
            matches!(err, KrakenError::Redirected { status: 302 }),
            "{err:?}"
        );
        match elsewhere.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("the redirect was followed: {other:?}"),
        }
        assert_eq!(metrics.errors("main", Endpoint::BalanceEx, Reason::Http), 1);
    }

    #[tokio::test]
    async fn balance_ex_falls_back_to_balance_only_when_kraken_refuses_it() {
        let transient = [
            Fault::KrakenError("EDatabase:Internal error".into()),
            Fault::KrakenError("EService:Unavailable".into()),
            Fault::KrakenError("EService:Busy".into()),
            Fault::KrakenError("EService: Throttled: 1700000000".into()),
            Fault::KrakenError("EAPI:Rate limit exceeded".into()),
            Fault::KrakenError("EGeneral:Too many requests".into()),
            Fault::KrakenError("EGeneral:Invalid arguments".into()),
            Fault::KrakenError("EGeneral:Temporary lockout".into()),
            Fault::Status(503, "<html>503 Service Unavailable</html>".into()),
            Fault::Status(404, "<html>Not Found</html>".into()),
            Fault::Status(500, r#"{"error":["EGeneral:Unknown method"]}"#.into()),
            Fault::RawBody(b"<html>maintenance</html>".to_vec()),
        ];
        let sim = start(SimOptions::default()).await;
        let metrics = Arc::new(CountingObserver::default());
        let client = signed(&sim, &metrics);
        for fault in transient {
            let label = format!("{fault:?}");
            sim.inject(Endpoint::BalanceEx, fault, Some(1));
            assert!(client.balances().await.is_err(), "{label}");
            assert_eq!(
                sim.calls(Endpoint::Balance),
                0,
                "{label} switched to Balance"
            );
            let answer = client.balances().await.unwrap();
            assert_eq!(answer.endpoint, Endpoint::BalanceEx, "{label}");
        }

        for refusal in [
            Fault::KrakenError("EAPI:Permission denied".into()),
            Fault::KrakenError("EGeneral:Permission denied".into()),
            Fault::KrakenError("EAPI:Feature disabled".into()),
            Fault::Status(404, r#"{"error":["EGeneral:Unknown method"]}"#.into()),
        ] {
            let label = format!("{fault:?}", fault = refusal);
            let sim = start(SimOptions::default()).await;
            let client = signed(&sim, &metrics);
            sim.inject(Endpoint::BalanceEx, refusal, Some(1));
            let answer = client.balances().await.unwrap();
            assert_eq!(answer.endpoint, Endpoint::Balance, "{label}");
            assert!(answer.balances.iter().all(|b| b.hold.is_none()), "{label}");
            // Refused: BalanceEx is not asked again for hours.
            assert_eq!(client.balances().await.unwrap().endpoint, Endpoint::Balance);
            assert_eq!(sim.calls(Endpoint::BalanceEx), 1, "{label}");
        }
    }

    #[tokio::test]
    async fn a_rate_limited_ticker_batch_keeps_the_prices_of_the_batches_before_it() {
        let sim = start(SimOptions::default()).await;
        let metrics = Arc::new(CountingObserver::default());
        let client = public(&sim, &metrics);
        let names = every_pair(&client).await;
        let sim = start(SimOptions {
            public_rate_limit: Some((1.0, 0.001)),
            ..SimOptions::default()
        })
        .await;
        let client = public(&sim, &metrics);
        let answer = client.ticker(&names).await.unwrap();
        assert_eq!(answer.prices.len(), TICKER_BATCH, "the first batch is kept");
        assert!(answer.prices.contains_key(&names[0]));
        assert!(!answer.prices.contains_key(&names[TICKER_BATCH]));
        let failure = answer.failure.expect("the second batch failed");
        assert_eq!(failure.reason(), Reason::RateLimited);
        assert_eq!(
            sim.calls(Endpoint::Ticker),
            2,
            "no batch after a rate limit"
        );

        // Nothing answered: an error, not an empty success.
        let err = client.ticker(&names).await.unwrap_err();
        assert_eq!(err.reason(), Reason::RateLimited);
    }

    #[tokio::test]
    async fn a_ticker_batch_kraken_refuses_for_itself_does_not_stop_the_next() {
        let sim = start(SimOptions::default()).await;
        let metrics = Arc::new(CountingObserver::default());
        let client = public(&sim, &metrics);
        let mut asked: Vec<String> = (0..TICKER_BATCH).map(|i| format!("AAA{i:02}USD")).collect();
        asked.push("XXBTZUSD".into());
        let answer = client.ticker(&asked).await.unwrap();
        assert_eq!(answer.prices["XXBTZUSD"], 65000.0);
        assert_eq!(answer.prices.len(), 1);
        assert_eq!(answer.failure.unwrap().reason(), Reason::Other);
        assert_eq!(sim.calls(Endpoint::Ticker), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn public_requests_start_at_least_the_spacing_apart() {
        let pacer = Arc::new(PublicPacer::new(PUBLIC_CALL_SPACING));
        let started = tokio::time::Instant::now();
        pacer.wait_turn().await;
        assert_eq!(started.elapsed(), Duration::ZERO, "the first goes at once");
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let pacer = Arc::clone(&pacer);
                tokio::spawn(async move {
                    pacer.wait_turn().await;
                    tokio::time::Instant::now()
                })
            })
            .collect();
        let mut starts = Vec::new();
        for waiter in waiters {
            starts.push(waiter.await.unwrap() - started);
        }
        starts.sort();
        assert_eq!(
            starts,
            [1, 2, 3].map(|s| PUBLIC_CALL_SPACING * s),
            "one start per spacing"
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        let idle = tokio::time::Instant::now();
        pacer.wait_turn().await;
        assert_eq!(
            idle.elapsed(),
            Duration::ZERO,
            "no wait after a quiet spell"
        );
    }

    #[tokio::test]
    async fn a_client_paced_like_kraken_asks_allows_is_never_refused() {
        let sim = start(SimOptions {
            public_rate_limit: Some(crate::sim::PUBLIC_RATE_LIMIT),
            ..SimOptions::default()
        })
        .await;
        let metrics = Arc::new(CountingObserver::default());
        let client = KrakenClient::public(
            http_client(TIMEOUT).unwrap(),
            options(&sim),
            "_public".into(),
            Arc::clone(&metrics) as Arc<dyn CallObserver>,
        );
        let names = every_pair(&client).await;
        let answer = client.ticker(&names).await.unwrap();
        assert!(answer.failure.is_none(), "{:?}", answer.failure);
        assert_eq!(answer.prices.len(), names.len());
        assert_eq!(
            metrics.errors("_public", Endpoint::Ticker, Reason::RateLimited)
                + metrics.errors("_public", Endpoint::AssetPairs, Reason::RateLimited),
            0
        );
    }

    async fn start(options: SimOptions) -> SimKraken {
        SimKraken::start(options).await.unwrap()
    }

    #[tokio::test]
    async fn ticker_asks_at_most_twenty_pairs_per_request_and_each_pair_once() {
        let sim = start(SimOptions::default()).await;
        let metrics = Arc::new(CountingObserver::default());
        let client = public(&sim, &metrics);
        let pairs = client.asset_pairs().await.unwrap();
        let mut names: Vec<String> = pairs.iter().map(|(name, _)| name.to_owned()).collect();
        names.sort();
        assert!(names.len() > TICKER_BATCH, "{}", names.len());
        let mut asked = names.clone();
        asked.extend(names.iter().take(5).cloned());
        asked.push(String::new());

        let prices = client.ticker(&asked).await.unwrap().prices;
        assert_eq!(prices.len(), names.len());
        assert_eq!(prices["XXBTZUSD"], 65000.0);
        let requests = names.len().div_ceil(TICKER_BATCH) as u64;
        assert_eq!(sim.calls(Endpoint::Ticker), requests);
        assert_eq!(metrics.requests("_public", Endpoint::Ticker), requests);
        assert_eq!(metrics.requests("_public", Endpoint::AssetPairs), 1);

        assert!(client.ticker(&[]).await.unwrap().prices.is_empty());
        assert_eq!(sim.calls(Endpoint::Ticker), requests);
    }

    #[tokio::test]
    async fn ticker_failures_are_classified_and_counted() {
        let sim = start(SimOptions::default()).await;
        let metrics = Arc::new(CountingObserver::default());
        let client = public(&sim, &metrics);
        let err = client
            .ticker(&["XXBTZUSD".into(), "NOPEUSD".into()])
            .await
            .unwrap_err();
        // One batch, and it failed: nothing answered, so an error.
        assert_eq!(err.to_string(), "Kraken answered EQuery:Unknown asset pair");
        assert_eq!(
            metrics.errors("_public", Endpoint::Ticker, Reason::Other),
            1
        );
    }

    #[tokio::test]
    async fn a_public_client_reads_market_data_and_refuses_private_calls_without_sending() {
        let sim = start(SimOptions::default()).await;
        let metrics = Arc::new(CountingObserver::default());
        let client = public(&sim, &metrics);
        assert!(!client.has_credentials());
        assert_eq!(client.account(), "_public");
        assert!(!client.assets().await.unwrap().is_empty());

        let err = client.balances().await.unwrap_err();
        assert!(matches!(err, KrakenError::NoCredentials { .. }), "{err}");
        assert!(matches!(
            client.trade_balance("ZUSD").await,
            Err(KrakenError::NoCredentials {
                method: "TradeBalance"
            })
        ));
        assert!(matches!(
            client.api_key_info().await,
            Err(KrakenError::NoCredentials {
                method: "GetApiKeyInfo"
            })
        ));
        assert!(client.withdraw_methods().await.is_err());
        for method in [
            Endpoint::BalanceEx,
            Endpoint::Balance,
            Endpoint::TradeBalance,
            Endpoint::GetApiKeyInfo,
        ] {
            assert_eq!(sim.calls(method), 0, "{method}");
            assert_eq!(metrics.requests("_public", method), 0, "{method}");
        }
        assert!(format!("{client:?}").contains("has_credentials: false"));
    }

    #[tokio::test]
    async fn trade_balance_signs_the_asset_and_reads_eb() {
        let sim = start(SimOptions {
            trade_balance_enabled: true,
            ..SimOptions::default()
        })
        .await;
        sim.set_balances(vec![("XXBT".into(), 2.0, 0.0), ("ZUSD".into(), 100.0, 0.0)]);
        let metrics = Arc::new(CountingObserver::default());
        let client = signed(&sim, &metrics);
        assert!(client.has_credentials());
        assert_eq!(client.trade_balance("ZUSD").await.unwrap(), 130100.0);
        let in_xbt = client.trade_balance("XXBT").await.unwrap();
        assert!((in_xbt - 130100.0 / 65000.0).abs() < 1e-4, "{in_xbt}");
        assert_eq!(metrics.requests("main", Endpoint::TradeBalance), 2);
    }

    #[tokio::test]
    async fn new_private_calls_keep_the_single_invalid_nonce_retry() {
        let sim = start(SimOptions {
            trade_balance_enabled: true,
            ..SimOptions::default()
        })
        .await;
        sim.inject(
            Endpoint::TradeBalance,
            Fault::KrakenError("EAPI:Invalid nonce".into()),
            Some(1),
        );
        let metrics = Arc::new(CountingObserver::default());
        let client = signed(&sim, &metrics);
        client.trade_balance("ZUSD").await.unwrap();
        assert_eq!(metrics.requests("main", Endpoint::TradeBalance), 2);
        assert_eq!(
            metrics.errors("main", Endpoint::TradeBalance, Reason::InvalidNonce),
            1
        );

        sim.inject(
            Endpoint::GetApiKeyInfo,
            Fault::KrakenError("EAPI:Invalid nonce".into()),
            Some(2),
        );
        let err = client.api_key_info().await.unwrap_err();
        assert_eq!(err.reason(), Reason::InvalidNonce);
        assert_eq!(sim.calls(Endpoint::GetApiKeyInfo), 2);
    }

    #[tokio::test]
    async fn key_info_and_the_withdraw_probe_reflect_the_keys_permissions() {
        let sim = start(SimOptions::default()).await;
        let metrics = Arc::new(CountingObserver::default());
        let client = signed(&sim, &metrics);
        let info = client.api_key_info().await.unwrap();
        assert_eq!(info.name.as_deref(), Some("exporter"));
        assert!(info.permissions.contains("query-funds"), "{info:?}");
        let err = client.withdraw_methods().await.unwrap_err();
        assert_eq!(err.reason(), Reason::PermissionDenied);
        assert_eq!(
            metrics.errors("main", Endpoint::WithdrawMethods, Reason::PermissionDenied),
            1
        );
        assert_eq!(metrics.requests("main", Endpoint::GetApiKeyInfo), 1);

        let withdrawer = start(SimOptions {
            permissions: vec!["withdraw_funds".into()],
            ..SimOptions::default()
        })
        .await;
        signed(&withdrawer, &metrics)
            .withdraw_methods()
            .await
            .unwrap();
    }
}
