//! Kraken's private methods: signed `POST`s for one API key.
//!
//! Owns the signed form body and headers of a private call, the one retry of an invalid nonce,
//! the choice of balance endpoint with the BalanceEx → Balance fallback (only when Kraken does
//! not offer BalanceEx: Balance needs the same permission, so a permission refusal is final), and
//! one method per private call the exporter makes (balances, GetApiKeyInfo, WithdrawMethods,
//! TradeBalance, Earn/Allocations).
//! Must not: send anything without credentials, retry anything but an invalid nonce, or let the
//! key, the secret or the 2FA password reach an error, a log line or an observer.

use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_TYPE, HeaderValue};

use super::{KrakenClient, Signer};
use crate::endpoint::Endpoint;
use crate::error::{KrakenError, Reason};
use crate::parse::{self, ApiKeyInfo, AssetBalance, EarnAllocation};
use crate::secret::Credentials;
use crate::sign::sign;

/// How long a BalanceEx Kraken does not offer is not asked again, when the endpoint is chosen
/// automatically.
const BALANCE_EX_RETRY_AFTER: Duration = Duration::from_secs(6 * 3600);

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

/// The balances of one account, with the endpoint that produced them.
#[derive(Debug, Clone)]
pub struct BalanceAnswer {
    /// One entry per asset code Kraken returned, sorted by code.
    pub balances: Vec<AssetBalance>,
    /// [`Endpoint::BalanceEx`] or [`Endpoint::Balance`].
    pub endpoint: Endpoint,
}

impl KrakenClient {
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
                    Err(e) if e.is_method_unavailable() => {
                        let answer = self.balance().await?;
                        tracing::warn!(
                            account = %self.account,
                            error = %e,
                            "Kraken does not offer BalanceEx, using Balance instead (no hold amounts); set --kraken.balance-endpoint=balance to skip the attempt"
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

    /// One BalanceEx call: totals and holds.
    async fn balance_ex(&self) -> Result<BalanceAnswer, KrakenError> {
        let endpoint = Endpoint::BalanceEx;
        let balances = self.private(endpoint, &[], parse::balance_ex).await?;
        Ok(BalanceAnswer { balances, endpoint })
    }

    /// One Balance call: totals only.
    async fn balance(&self) -> Result<BalanceAnswer, KrakenError> {
        let endpoint = Endpoint::Balance;
        let balances = self.private(endpoint, &[], parse::balance).await?;
        Ok(BalanceAnswer { balances, endpoint })
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

    /// Calls a private endpoint with `params` in the signed body, retrying once with a fresh nonce
    /// if Kraken says the nonce was not above the last one it saw (another call may have
    /// overtaken this one on the wire). Without credentials nothing is sent or counted.
    pub(super) async fn private<T>(
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

    /// One signed call with the next nonce, reported to the observer whatever its outcome.
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
            parse(status, &bytes).map_err(|e| e.at_path(path))
        }
        .await;
        self.record(method, started, &outcome);
        outcome
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::testing::*;
    use super::*;

    use crate::observer::CountingObserver;
    use crate::sim::{Fault, SimOptions};

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
    async fn balance_ex_falls_back_to_balance_only_when_kraken_does_not_offer_it() {
        let transient = [
            Fault::KrakenError("EAPI:Permission denied".into()),
            Fault::KrakenError("EGeneral:Permission denied".into()),
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
            Fault::KrakenError("EAPI:Feature disabled".into()),
            Fault::KrakenError("EGeneral:Unknown method".into()),
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
    async fn a_key_without_funds_query_costs_one_refused_call_per_refresh_not_two() {
        let sim = start(SimOptions {
            permissions: vec!["query-open-trades".into()],
            ..SimOptions::default()
        })
        .await;
        let metrics = Arc::new(CountingObserver::default());
        let client = signed(&sim, &metrics);
        for refresh in 1..=2 {
            let err = client.balances().await.unwrap_err();
            assert_eq!(err.reason(), Reason::PermissionDenied, "{err}");
            assert_eq!(sim.calls(Endpoint::BalanceEx), refresh);
        }
        assert_eq!(
            sim.calls(Endpoint::Balance),
            0,
            "Balance needs the same permission"
        );
        assert_eq!(metrics.requests("main", Endpoint::Balance), 0);
    }

    #[tokio::test]
    async fn an_http_status_names_the_method_path_and_nothing_of_the_body() {
        let sim = start(SimOptions::default()).await;
        sim.inject(
            Endpoint::Balance,
            Fault::Status(404, "<html>Not Found</html>".into()),
            Some(1),
        );
        let metrics = Arc::new(CountingObserver::default());
        let err = signed_with(&sim, &metrics, BalanceEndpoint::Balance)
            .balances()
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "HTTP status 404 for /0/private/Balance");
        assert_eq!(err.reason(), Reason::Http);
    }

    #[tokio::test]
    async fn a_nonce_file_that_cannot_be_written_is_a_local_fault_and_nothing_is_sent() {
        use crate::nonce::{NonceSource, SystemClock};

        let sim = start(SimOptions::default()).await;
        let metrics = Arc::new(CountingObserver::default());
        let dir =
            std::env::temp_dir().join(format!("kraken-client-nonce-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let nonces =
            NonceSource::with_state_file(Box::new(SystemClock), &dir.join("main.nonce")).unwrap();
        let client = KrakenClient::new(
            super::super::http_client(TIMEOUT).unwrap(),
            options(&sim),
            sim.credentials(),
            Arc::new(nonces),
            "main".into(),
            Arc::clone(&metrics) as Arc<dyn crate::observer::CallObserver>,
        );
        client.balances().await.unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let err = client.balances().await.unwrap_err();
        assert_eq!(err.reason(), Reason::NonceFile, "{err}");
        assert!(err.to_string().contains("main.nonce"), "{err}");
        assert_eq!(sim.calls(Endpoint::BalanceEx), 1, "nothing was sent");
        assert_eq!(
            metrics.errors("main", Endpoint::BalanceEx, Reason::NonceFile),
            1
        );
        assert_eq!(
            metrics.errors("main", Endpoint::BalanceEx, Reason::Other),
            0
        );
    }

    #[tokio::test]
    async fn trade_balance_signs_the_asset_and_reads_eb() {
        let sim = start(SimOptions {
            permissions: vec!["query-funds".into(), "query-open-trades".into()],
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
            permissions: vec!["query_funds".into(), "withdraw_funds".into()],
            ..SimOptions::default()
        })
        .await;
        signed(&withdrawer, &metrics)
            .withdraw_methods()
            .await
            .unwrap();
    }
}
