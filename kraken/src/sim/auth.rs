//! How the simulated Kraken authenticates a private call, like Kraken does.
//!
//! Owns the checks in order (`API-Key`, `API-Sign` present, nonce parses, signature matches,
//! nonce increases, `otp`), what Kraken keeps per key (last nonce, rate counter), the permission
//! each private method needs ([`required_permissions`]), the parsing of form and JSON bodies, and
//! the generated credentials of `--demo`.
//! Must not: answer anything but the Kraken error message of a failed check, or leave the last
//! nonce changed after a refused call. It is a leaf of the simulator: it takes what it checks
//! as arguments.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hyper::header::{self, HeaderMap};
use rand::RngCore;
use serde_json::Value;
use tokio::time::Instant;

use crate::endpoint::Endpoint;
use crate::secret::{ApiSecret, Credentials, SecretText};
use crate::sign::sign;

/// Kraken's leaky-bucket call counter: +1 per call, continuous decay.
pub(super) struct RateCounter {
    /// Current level; a call is refused once it exceeds the maximum.
    level: f64,
    /// When `level` was last brought up to date.
    updated: Instant,
}

impl RateCounter {
    /// An empty counter.
    pub(super) fn new(now: Instant) -> Self {
        Self {
            level: 0.0,
            updated: now,
        }
    }

    /// Charges one call; false when the counter now exceeds `max` (the call is still counted).
    pub(super) fn charge(&mut self, now: Instant, max: f64, decay_per_sec: f64) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.level = (self.level - elapsed * decay_per_sec).max(0.0) + 1.0;
        self.updated = now;
        self.level <= max
    }
}

/// What Kraken remembers about the key between calls.
pub(super) struct KeyState {
    /// Highest nonce accepted so far.
    pub(super) last_nonce: Option<u64>,
    /// Kraken's per-key call counter.
    pub(super) rate_counter: RateCounter,
    /// Every nonce of a correctly signed call, accepted or not, in arrival order, so a test can
    /// check that no two calls were signed with the same nonce.
    #[cfg(test)]
    pub(super) signed_nonces: Vec<u64>,
}

impl KeyState {
    /// A key that has made no call yet.
    pub(super) fn new(now: Instant) -> Self {
        Self {
            last_nonce: None,
            rate_counter: RateCounter::new(now),
            #[cfg(test)]
            signed_nonces: Vec::new(),
        }
    }
}

/// Runs Kraken's checks on a private call to `path`, returning the call's parameters; `Err`
/// carries the Kraken error message to answer. Only a call that passes moves the last nonce.
/// Every call made with the key is charged to its rate counter (`rate_limit`: max, decay per
/// second), failed ones too, as Kraken counts them ("even though these calls return an error,
/// that error still counts against your API limits", Kraken's error guide); a call with an
/// unknown key belongs to no key and is charged to none. A call refused by an earlier check
/// answers that check's error even when the counter is over its maximum; one that passes them
/// all answers `EAPI:Rate limit exceeded` then, its nonce used.
///
/// API 2FA as Kraken's support articles and client reports describe it: no `otp` for a key that
/// has one answers `EGeneral:Permission denied`, a wrong one `EAPI:Invalid signature`, and one
/// sent for a key without 2FA `EAPI:Invalid key`.
pub(super) fn authenticate(
    credentials: &Credentials,
    rate_limit: Option<(f64, f64)>,
    key_state: &mut KeyState,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<PrivateParams, &'static str> {
    let key = headers.get("API-Key").and_then(|v| v.to_str().ok());
    if key != Some(credentials.key.expose()) {
        return Err("EAPI:Invalid key");
    }
    let within_limit = rate_limit
        .is_none_or(|(max, decay)| key_state.rate_counter.charge(Instant::now(), max, decay));
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
    #[cfg(test)]
    key_state.signed_nonces.push(nonce);
    if key_state.last_nonce.is_some_and(|last| nonce <= last) {
        return Err("EAPI:Invalid nonce");
    }
    match (&credentials.otp, &params.otp) {
        (Some(required), Some(sent)) if required.expose() == sent => {}
        (Some(_), Some(_)) => return Err("EAPI:Invalid signature"),
        (Some(_), None) => return Err("EGeneral:Permission denied"),
        (None, Some(_)) => return Err("EAPI:Invalid key"),
        (None, None) => {}
    }
    key_state.last_nonce = Some(nonce);
    if !within_limit {
        return Err("EAPI:Rate limit exceeded");
    }
    Ok(params)
}

/// The permissions (GetApiKeyInfo's codes) a key needs for each private method the sim serves,
/// as Kraken's API reference lists them: Balance, BalanceEx and Earn/Allocations need
/// `query-funds` ("Funds: Query"); WithdrawMethods needs `query-funds` and `withdraw-funds`;
/// GetApiKeyInfo needs none. TradeBalance is documented two ways; the sim takes the API
/// reference's "Orders and trades: Query open orders & trades" (`query-open-trades`), so a
/// key with only "Funds: Query" is refused it, the answer an exporter must cope with (the
/// API-keys guide's reading, "Funds: Query", is `SimOptions::trade_balance_enabled`).
/// A method not listed here needs no permission in the sim.
pub(super) fn required_permissions(endpoint: Endpoint) -> &'static [&'static str] {
    match endpoint {
        Endpoint::Balance | Endpoint::BalanceEx | Endpoint::EarnAllocations => &["query-funds"],
        Endpoint::TradeBalance => &["query-open-trades"],
        Endpoint::WithdrawMethods => &["query-funds", "withdraw-funds"],
        Endpoint::GetApiKeyInfo => &[],
        Endpoint::GetWebSocketsToken => &["create-ws-token"],
        Endpoint::DepositStatus => &["query-funds"],
        // Or `query-ledger` (see `Shared::permits`).
        Endpoint::WithdrawStatus => &["withdraw-funds"],
        _ => &[],
    }
}

/// Whether a key with these raw permission names holds the permission `code` (a GetApiKeyInfo
/// code such as `query-funds`). Names are matched by their words, whatever the case, the
/// separators or the order, so `query-funds`, `query_funds` and the key UI's "Funds: Query"
/// all hold `query-funds`; a name with words `code` lacks does not match an address-book code
/// (`add-withdraw-address` holds no `withdraw-funds`: it moves no funds).
pub(super) fn grants(permissions: &[String], code: &str) -> bool {
    let words = |name: &str| -> Vec<String> {
        name.split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|word| !word.is_empty())
            .map(str::to_ascii_lowercase)
            .collect()
    };
    let wanted = words(code);
    permissions.iter().any(|permission| {
        let held = words(permission);
        wanted.iter().all(|word| held.contains(word)) && !held.iter().any(|w| w == "address")
    })
}

/// The fields of a private call body the sim cares about.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct PrivateParams {
    /// The call's nonce, if it parses.
    nonce: Option<u64>,
    /// The 2FA password sent.
    otp: Option<String>,
    /// TradeBalance's `asset`.
    pub(super) asset: Option<String>,
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
pub(super) fn percent_decode(input: &[u8]) -> String {
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

/// Fresh credentials for `--demo`: a 56-character key and a 64-byte secret, the shapes Kraken
/// issues.
pub(super) fn generate_credentials() -> Credentials {
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

    use serde_json::Value;

    use super::super::testing::*;
    use super::*;
    use crate::endpoint::Endpoint;
    use crate::sim::{STARTER_RATE_LIMIT, SimOptions};

    #[tokio::test]
    async fn wrong_signature_is_refused_and_consumes_no_nonce() {
        let sim = start_with_key(None).await;
        let mut request = Call::new(&sim, Endpoint::BalanceEx, 5);
        request.tamper_signature = true;
        let answer = request.send(&sim).await;
        assert_eq!(errors(&answer), ["EAPI:Invalid signature"]);
        assert!(answer.get("result").is_none());

        let mut request = Call::new(&sim, Endpoint::BalanceEx, 5);
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
        assert!(errors(&call(&sim, Endpoint::Balance, 100).await).is_empty());
        assert_eq!(
            errors(&call(&sim, Endpoint::Balance, 100).await),
            ["EAPI:Invalid nonce"]
        );
        assert_eq!(
            errors(&call(&sim, Endpoint::BalanceEx, 99).await),
            ["EAPI:Invalid nonce"]
        );
        assert_eq!(sim.last_nonce(), Some(100));
        assert!(errors(&call(&sim, Endpoint::Balance, 101).await).is_empty());
        assert_eq!(sim.last_nonce(), Some(101));
    }

    #[tokio::test]
    async fn unknown_or_missing_key_is_refused_before_anything_else() {
        let sim = start_with_key(None).await;
        let mut request = Call::new(&sim, Endpoint::BalanceEx, 1);
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
        // Missing: Permission denied; wrong: Invalid signature (Kraken's support articles).
        assert_eq!(
            errors(&call(&sim, Endpoint::BalanceEx, 1).await),
            ["EGeneral:Permission denied"]
        );
        let mut request = Call::new(&sim, Endpoint::BalanceEx, 2);
        request.otp = Some("wrong");
        assert_eq!(
            errors(&request.send(&sim).await),
            ["EAPI:Invalid signature"]
        );
        assert_eq!(sim.last_nonce(), None);
        let mut request = Call::new(&sim, Endpoint::BalanceEx, 3);
        request.otp = Some("s3cret+pass");
        assert!(errors(&request.send(&sim).await).is_empty());
        assert_eq!(sim.last_nonce(), Some(3));

        // Sent for a key without 2FA: Invalid key.
        let plain = start_with_key(None).await;
        let mut request = Call::new(&plain, Endpoint::Balance, 1);
        request.otp = Some("123456");
        assert_eq!(errors(&request.send(&plain).await), ["EAPI:Invalid key"]);
    }

    #[tokio::test]
    async fn failed_calls_count_against_the_rate_limit_too() {
        let sim = start(SimOptions {
            credentials: Some(test_credentials(None)),
            rate_limit: Some(STARTER_RATE_LIMIT),
            ..SimOptions::default()
        })
        .await;
        // Fifteen calls that fail (a bad signature, a replayed nonce) fill the counter...
        for nonce in 1..=15 {
            let mut request = Call::new(&sim, Endpoint::BalanceEx, nonce);
            request.tamper_signature = true;
            assert_eq!(
                errors(&request.send(&sim).await),
                ["EAPI:Invalid signature"]
            );
        }
        // ...so the next good call is over the limit.
        assert_eq!(
            errors(&call(&sim, Endpoint::BalanceEx, 16).await),
            ["EAPI:Rate limit exceeded"]
        );
        // A call with an unknown key belongs to no key's counter.
        let fresh = start(SimOptions {
            credentials: Some(test_credentials(None)),
            rate_limit: Some(STARTER_RATE_LIMIT),
            ..SimOptions::default()
        })
        .await;
        for nonce in 1..=20 {
            let mut request = Call::new(&fresh, Endpoint::BalanceEx, nonce);
            request.key = "someone-else".into();
            assert_eq!(errors(&request.send(&fresh).await), ["EAPI:Invalid key"]);
        }
        assert!(errors(&call(&fresh, Endpoint::BalanceEx, 21).await).is_empty());
    }

    #[tokio::test]
    async fn every_private_method_needs_its_documented_permissions() {
        let cases: [(&[&str], &[Endpoint], &[Endpoint]); 4] = [
            (
                &["query-funds"],
                &[
                    Endpoint::Balance,
                    Endpoint::BalanceEx,
                    Endpoint::EarnAllocations,
                    Endpoint::GetApiKeyInfo,
                ],
                &[Endpoint::TradeBalance, Endpoint::WithdrawMethods],
            ),
            (
                &["query-open-trades"],
                &[Endpoint::TradeBalance, Endpoint::GetApiKeyInfo],
                &[
                    Endpoint::Balance,
                    Endpoint::BalanceEx,
                    Endpoint::EarnAllocations,
                    Endpoint::WithdrawMethods,
                ],
            ),
            (
                &["withdraw-funds"],
                &[Endpoint::GetApiKeyInfo],
                &[Endpoint::Balance, Endpoint::WithdrawMethods],
            ),
            (
                &["Funds: Query", "query_funds", "add-withdraw-address"],
                &[Endpoint::Balance, Endpoint::BalanceEx],
                &[Endpoint::WithdrawMethods],
            ),
        ];
        for (permissions, allowed, refused) in cases {
            let sim = start(SimOptions {
                credentials: Some(test_credentials(None)),
                permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
                ..SimOptions::default()
            })
            .await;
            let mut nonce = 0;
            for &method in allowed {
                nonce += 1;
                let answer = call(&sim, method, nonce).await;
                assert!(
                    errors(&answer).is_empty(),
                    "{permissions:?} {method}: {answer}"
                );
            }
            for &method in refused {
                nonce += 1;
                assert_eq!(
                    errors(&call(&sim, method, nonce).await),
                    ["EGeneral:Permission denied"],
                    "{permissions:?} {method}"
                );
            }
        }
    }

    #[test]
    fn permission_names_match_by_their_words() {
        let held = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        assert!(grants(&held(&["query-funds"]), "query-funds"));
        assert!(grants(&held(&["Funds: Query"]), "query-funds"));
        assert!(grants(&held(&["QUERY_FUNDS"]), "query-funds"));
        assert!(!grants(
            &held(&["query-closed-trades"]),
            "query-open-trades"
        ));
        assert!(!grants(&held(&["add-withdraw-address"]), "withdraw-funds"));
        assert!(!grants(
            &held(&["update-withdraw-address"]),
            "withdraw-funds"
        ));
        assert!(grants(&held(&["Funds: Withdraw"]), "withdraw-funds"));
        assert!(!grants(&[], "query-funds"));
        assert!(required_permissions(Endpoint::GetApiKeyInfo).is_empty());
    }

    #[tokio::test]
    async fn two_clients_sharing_one_nonce_source_never_sign_the_same_nonce() {
        use std::sync::Arc;

        use crate::client::{BalanceEndpoint, ClientOptions, KrakenClient, http_client};
        use crate::nonce::{Clock, NonceSource};
        use crate::observer::{CallObserver, CountingObserver};

        /// A clock that never moves, so only the counter keeps nonces apart.
        struct Frozen;
        impl Clock for Frozen {
            fn now_millis(&self) -> u64 {
                1_700_000_000_000
            }
        }

        async fn run(sources: [Arc<NonceSource>; 2]) -> (Vec<u64>, u64) {
            let sim = start(SimOptions::default()).await;
            let observer: Arc<dyn CallObserver> = Arc::new(CountingObserver::default());
            let clients: Vec<Arc<KrakenClient>> = sources
                .into_iter()
                .enumerate()
                .map(|(index, nonces)| {
                    Arc::new(KrakenClient::new(
                        http_client(Duration::from_secs(5)).unwrap(),
                        ClientOptions {
                            api_url: sim.url(),
                            timeout: Duration::from_secs(5),
                            balance_endpoint: BalanceEndpoint::Balance,
                        },
                        sim.credentials(),
                        nonces,
                        format!("client{index}"),
                        Arc::clone(&observer),
                    ))
                })
                .collect();
            let calls: Vec<_> = (0..20)
                .map(|i| {
                    let client = Arc::clone(&clients[i % 2]);
                    tokio::spawn(async move { client.balances().await.is_ok() })
                })
                .collect();
            for call in calls {
                call.await.unwrap();
            }
            let signed = sim.shared.state().key.signed_nonces.clone();
            (signed, sim.calls(Endpoint::Balance))
        }

        let shared = Arc::new(NonceSource::new(Box::new(Frozen)));
        let (signed, requests) = run([Arc::clone(&shared), shared]).await;
        assert_eq!(
            signed.len() as u64,
            requests,
            "every request reached the checks"
        );
        let mut unique = signed.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(
            unique.len(),
            signed.len(),
            "a nonce was signed twice: {signed:?}"
        );

        // Two sources of their own, for contrast: they hand out the same nonces.
        let own = || Arc::new(NonceSource::new(Box::new(Frozen)));
        let (signed, _) = run([own(), own()]).await;
        let mut unique = signed.clone();
        unique.sort_unstable();
        unique.dedup();
        assert!(
            unique.len() < signed.len(),
            "separate sources collide: {signed:?}"
        );
    }

    #[test]
    fn rate_counter_decays_continuously_and_counts_refused_calls() {
        let start = Instant::now();
        let mut counter = RateCounter::new(start);
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

    #[tokio::test]
    async fn generated_credentials_have_krakens_shapes_and_work() {
        let sim = start(SimOptions::default()).await;
        let credentials = sim.credentials();
        assert_eq!(credentials.key.expose().len(), 56);
        assert_eq!(credentials.secret.expose().len(), 64);
        assert!(credentials.otp.is_none());
        assert!(errors(&call(&sim, Endpoint::BalanceEx, 1).await).is_empty());
        let other = start(SimOptions::default()).await;
        assert_ne!(other.credentials().key, credentials.key);
    }

    #[tokio::test]
    async fn balance_ex_can_be_switched_off_while_balance_still_works() {
        let sim = start(SimOptions {
            credentials: Some(test_credentials(None)),
            balance_ex_enabled: false,
            ..SimOptions::default()
        })
        .await;
        assert_eq!(
            errors(&call(&sim, Endpoint::BalanceEx, 1).await),
            ["EAPI:Feature disabled"]
        );
        let answer = call(&sim, Endpoint::Balance, 2).await;
        assert_eq!(answer["result"]["XXBT"], "1.2345678901");
    }

    #[tokio::test]
    async fn withdraw_methods_answer_only_keys_that_may_withdraw() {
        let query_only = start_with_key(None).await;
        assert_eq!(
            errors(&call(&query_only, Endpoint::WithdrawMethods, 1).await),
            ["EGeneral:Permission denied"]
        );
        // The refusal comes after authentication: the nonce is used.
        assert_eq!(query_only.last_nonce(), Some(1));

        let withdrawer = start(SimOptions {
            credentials: Some(test_credentials(None)),
            permissions: vec!["Funds: Query".into(), "Funds: Withdraw".into()],
            ..SimOptions::default()
        })
        .await;
        let answer = call(&withdrawer, Endpoint::WithdrawMethods, 1).await;
        assert!(errors(&answer).is_empty(), "{answer}");
        assert_eq!(answer["result"][0]["asset"], "XXBT");
        assert_eq!(withdrawer.calls(Endpoint::WithdrawMethods), 1);
    }

    #[tokio::test]
    async fn trade_balance_is_refused_by_default() {
        let sim = start_with_key(None).await;
        assert_eq!(
            errors(&call(&sim, Endpoint::TradeBalance, 1).await),
            ["EGeneral:Permission denied"]
        );
        assert_eq!(sim.calls(Endpoint::TradeBalance), 1);
    }
}
