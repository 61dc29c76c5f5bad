//! The HTTP client for Kraken's REST API.
//!
//! Owns request construction (URL, signed form body, headers), the per-request timeout, the cap
//! on body size, the one retry of an invalid nonce, the BalanceEx → Balance fallback, and the
//! request metrics of every call it makes.
//! Must not: decide when to call (that is [`crate::refresh`]), retry anything else, or let a
//! credential reach an error, a log line or a metric.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_TYPE, HeaderValue};

use super::error::{KrakenError, Reason};
use super::nonce::NonceSource;
use super::parse::{self, AssetBalance, AssetTable};
use super::sign::sign;
use crate::metrics::RequestMetrics;
use crate::secret::Credentials;

/// Largest body read from Kraken. A balance answer of a few hundred assets is tens of KiB; a
/// larger body is an error page or an attack, and reading it would only cost memory.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// How long a refused BalanceEx is not asked again, when the endpoint is chosen automatically.
const BALANCE_EX_RETRY_AFTER: Duration = Duration::from_secs(6 * 3600);

/// Which private endpoint returns balances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BalanceEndpoint {
    /// BalanceEx, falling back to Balance while BalanceEx is refused.
    Auto,
    /// Always BalanceEx (totals and holds).
    #[value(name = "balance-ex")]
    BalanceEx,
    /// Always Balance (totals only, no holds).
    Balance,
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

/// The balances of one account, with the endpoint that produced them.
#[derive(Debug, Clone)]
pub struct BalanceAnswer {
    /// One entry per asset code Kraken returned, sorted by code.
    pub balances: Vec<AssetBalance>,
    /// `BalanceEx` or `Balance`.
    pub endpoint: &'static str,
}

/// A client for one API key. Calls are signed with its credentials and counted under its
/// account name.
pub struct KrakenClient {
    /// Shared connection pool; rustls with built-in roots, so no system CA store is needed.
    http: reqwest::Client,
    /// Base URL and timeout.
    options: ClientOptions,
    /// Key, secret and optional 2FA password.
    credentials: Credentials,
    /// Strictly increasing nonces for this key.
    nonces: NonceSource,
    /// `account` label of the request metrics.
    account: String,
    /// Where every call is counted.
    metrics: Arc<RequestMetrics>,
    /// Until when BalanceEx is skipped because Kraken refused it (automatic mode only).
    balance_ex_refused_until: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for KrakenClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KrakenClient")
            .field("account", &self.account)
            .field("api_url", &self.options.api_url)
            .finish_non_exhaustive()
    }
}

/// The `User-Agent` sent with every call, so Kraken can tell this exporter apart.
pub fn user_agent() -> String {
    format!("kraken_exporter/{}", env!("CARGO_PKG_VERSION"))
}

/// Builds the shared HTTP client with the given per-request timeout.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, KrakenError> {
    reqwest::Client::builder()
        .user_agent(user_agent())
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .https_only(false)
        .build()
        .map_err(|e| KrakenError::Transport(e.to_string()))
}

impl KrakenClient {
    /// A client for one account.
    pub fn new(
        http: reqwest::Client,
        options: ClientOptions,
        credentials: Credentials,
        nonces: NonceSource,
        account: String,
        metrics: Arc<RequestMetrics>,
    ) -> Self {
        Self {
            http,
            options: ClientOptions {
                api_url: options.api_url.trim_end_matches('/').to_owned(),
                ..options
            },
            credentials,
            nonces,
            account,
            metrics,
            balance_ex_refused_until: Mutex::new(None),
        }
    }

    /// The account name this client counts its calls under.
    pub fn account(&self) -> &str {
        &self.account
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
                    Err(e) if is_refusal(&e) => {
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
        const ENDPOINT: &str = "BalanceEx";
        let balances = self.private(ENDPOINT, parse::balance_ex).await?;
        Ok(BalanceAnswer {
            balances,
            endpoint: ENDPOINT,
        })
    }

    async fn balance(&self) -> Result<BalanceAnswer, KrakenError> {
        const ENDPOINT: &str = "Balance";
        let balances = self.private(ENDPOINT, parse::balance).await?;
        Ok(BalanceAnswer {
            balances,
            endpoint: ENDPOINT,
        })
    }

    /// Fetches the public list of asset codes and their short names.
    pub async fn assets(&self) -> Result<AssetTable, KrakenError> {
        const ENDPOINT: &str = "Assets";
        let url = format!("{}/0/public/{ENDPOINT}", self.options.api_url);
        let started = Instant::now();
        let outcome = async {
            let response = self
                .http
                .get(&url)
                .send()
                .await
                .map_err(|e| self.transport(e))?;
            let (status, body) = self.read(response).await?;
            parse::assets(status, &body)
        }
        .await;
        self.record(ENDPOINT, started, &outcome);
        outcome
    }

    /// Calls a private endpoint, retrying once with a fresh nonce if Kraken says the nonce was
    /// not above the last one it saw (another call may have overtaken this one on the wire).
    async fn private<T>(
        &self,
        method: &'static str,
        parse: fn(u16, &[u8]) -> Result<T, KrakenError>,
    ) -> Result<T, KrakenError> {
        match self.private_once(method, parse).await {
            Err(e) if e.reason() == Reason::InvalidNonce => {
                tracing::debug!(account = %self.account, method, "invalid nonce, retrying once with a fresh nonce");
                self.private_once(method, parse).await
            }
            other => other,
        }
    }

    async fn private_once<T>(
        &self,
        method: &'static str,
        parse: fn(u16, &[u8]) -> Result<T, KrakenError>,
    ) -> Result<T, KrakenError> {
        let started = Instant::now();
        let outcome = async {
            let path = format!("/0/private/{method}");
            let nonce = self.nonces.next()?;
            let body = self.form_body(nonce);
            let signature = sign(&path, nonce, body.as_bytes(), &self.credentials.secret);
            let mut key = HeaderValue::from_str(self.credentials.key.expose()).map_err(|_| {
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

    /// The form body: `nonce=<n>` and, for keys with API 2FA, `&otp=<password>`.
    fn form_body(&self, nonce: u64) -> String {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("nonce", &nonce.to_string());
        if let Some(otp) = &self.credentials.otp {
            form.append_pair("otp", otp.expose());
        }
        form.finish()
    }

    /// Reads the status and at most [`MAX_BODY_BYTES`] of the body.
    async fn read(&self, mut response: reqwest::Response) -> Result<(u16, Vec<u8>), KrakenError> {
        let status = response.status().as_u16();
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

    fn record<T>(&self, endpoint: &str, started: Instant, outcome: &Result<T, KrakenError>) {
        let reason = outcome.as_ref().err().map(KrakenError::reason);
        self.metrics
            .observe(&self.account, endpoint, started.elapsed(), reason);
    }
}

/// Whether a BalanceEx failure means "this endpoint is refused" rather than "Kraken is failing".
fn is_refusal(error: &KrakenError) -> bool {
    matches!(error.reason(), Reason::PermissionDenied | Reason::Other)
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
