//! The HTTP client for Kraken's REST API.
//!
//! Owns one client per API key (or for public data only), the transport every call goes through
//! (the per-request timeout, the cap on body size, the refusal of redirects, the mapping of
//! transport failures to errors) and reporting every call it makes to its [`CallObserver`].
//! `private.rs` owns the signed private methods, `public.rs` the paced public ones and the
//! Ticker batches, `funding.rs` the methods for deposits, withdrawals, the WebSocket token and
//! the exchange's status.
//! Must not: decide when to call, retry anything but an invalid nonce, follow a redirect,
//! interpret what an answer means for the operator, know how calls are counted or exported, or
//! let a credential reach an error, a log line or an observer.

mod funding;
mod private;
mod public;
#[cfg(test)]
mod testing;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::endpoint::Endpoint;
use crate::error::{KrakenError, Reason};
use crate::nonce::NonceSource;
use crate::observer::CallObserver;
use crate::secret::Credentials;

pub use private::{BalanceAnswer, BalanceEndpoint, UnknownBalanceEndpoint};
use public::PublicPacer;
pub use public::{PUBLIC_CALL_SPACING, TICKER_BATCH, TickerPrices};

/// Largest body read from Kraken. A balance answer of a few hundred assets is tens of KiB, and
/// the largest answer asked for, Ticker for every pair, about 0.5 MB: 4 MiB leaves room for
/// Kraken to list many more pairs, while a larger body is an error page or an attack whose
/// reading would only cost memory.
pub(crate) const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

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

/// What signs private calls: the key's credentials and its nonces, which only make sense together.
struct Signer {
    /// Key, secret and optional 2FA password.
    credentials: Credentials,
    /// Strictly increasing nonces for this key, shared by every client of the same key so two
    /// clients never sign with the same nonce.
    nonces: Arc<NonceSource>,
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
    /// Until when BalanceEx is skipped because Kraken does not offer it (automatic mode only).
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
    /// A client for one account's API key: it can make private and public calls. `nonces` must
    /// be the one source of that key: Kraken refuses a nonce not above the last it accepted for
    /// the key, so every client signing for it must draw from the same counter.
    pub fn new(
        http: reqwest::Client,
        options: ClientOptions,
        credentials: Credentials,
        nonces: Arc<NonceSource>,
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

    /// Either client: the URL without its trailing slash, public requests paced by
    /// [`PUBLIC_CALL_SPACING`].
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

    /// The account name this client reports its calls under.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// Whether this client can make private calls; tests check that a public client cannot.
    #[cfg(test)]
    pub(crate) fn has_credentials(&self) -> bool {
        self.signer.is_some()
    }

    /// Reads the status and at most [`MAX_BODY_BYTES`] of the body, whatever the status: a
    /// non-200 answer may carry Kraken's error envelope, which the parsers classify
    /// (`parse/envelope.rs`). A redirect is an error, its body unread.
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
    use std::sync::Arc;

    use super::testing::*;
    use super::*;
    use crate::observer::CountingObserver;
    use crate::sim::{Fault, SimOptions};

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
}
