//! How the simulated Kraken authenticates a private call, like Kraken does.
//!
//! Owns the checks in order (`API-Key`, `API-Sign` present, nonce parses, signature matches,
//! nonce increases, `otp`), what Kraken keeps per key (last nonce, rate counter), the parsing of
//! form and JSON bodies, and the generated credentials of `--demo`.
//! Must not: answer anything but the Kraken error message of a failed check, or leave the last
//! nonce changed after a refused call. It is a leaf of the simulator: it takes what it checks
//! as arguments.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hyper::header::{self, HeaderMap};
use rand::RngCore;
use serde_json::Value;
use tokio::time::Instant;

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
}

impl KeyState {
    /// A key that has made no call yet.
    pub(super) fn new(now: Instant) -> Self {
        Self {
            last_nonce: None,
            rate_counter: RateCounter::new(now),
        }
    }
}

/// Runs Kraken's checks on a private call to `path`, returning the call's parameters; `Err`
/// carries the Kraken error message to answer. Only a call that passes moves the last nonce;
/// every authenticated call is charged to the rate counter (`rate_limit`: max, decay per
/// second), even one it then refuses.
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
    if key_state.last_nonce.is_some_and(|last| nonce <= last) {
        return Err("EAPI:Invalid nonce");
    }
    match (&credentials.otp, &params.otp) {
        (Some(required), Some(sent)) if required.expose() == sent => {}
        (Some(_), _) => return Err("EGeneral:Permission denied"),
        (None, Some(_)) => return Err("EAPI:Invalid key"),
        (None, None) => {}
    }
    key_state.last_nonce = Some(nonce);
    if let Some((max, decay)) = rate_limit
        && !key_state.rate_counter.charge(Instant::now(), max, decay)
    {
        return Err("EAPI:Rate limit exceeded");
    }
    Ok(params)
}

/// Whether a key with these raw permission names may withdraw: any name mentioning "withdraw",
/// except the address-book codes (`add-withdraw-address`), which move no funds.
pub(super) fn may_withdraw(permissions: &[String]) -> bool {
    permissions.iter().any(|p| {
        let p = p.to_ascii_lowercase();
        p.contains("withdraw") && !p.contains("address")
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
        assert_eq!(
            errors(&call(&sim, Endpoint::BalanceEx, 1).await),
            ["EGeneral:Permission denied"]
        );
        let mut request = Call::new(&sim, Endpoint::BalanceEx, 2);
        request.otp = Some("wrong");
        assert_eq!(
            errors(&request.send(&sim).await),
            ["EGeneral:Permission denied"]
        );
        assert_eq!(sim.last_nonce(), None);
        let mut request = Call::new(&sim, Endpoint::BalanceEx, 3);
        request.otp = Some("s3cret+pass");
        assert!(errors(&request.send(&sim).await).is_empty());
        assert_eq!(sim.last_nonce(), Some(3));

        let plain = start_with_key(None).await;
        let mut request = Call::new(&plain, Endpoint::Balance, 1);
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
            let answer = call(&sim, Endpoint::BalanceEx, nonce).await;
            assert!(errors(&answer).is_empty(), "call {nonce}: {answer}");
        }
        assert_eq!(
            errors(&call(&sim, Endpoint::BalanceEx, 16).await),
            ["EAPI:Rate limit exceeded"]
        );
        assert_eq!(
            errors(&call(&sim, Endpoint::Balance, 17).await),
            ["EAPI:Rate limit exceeded"]
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
    async fn balance_ex_can_be_refused_while_balance_still_works() {
        let sim = start(SimOptions {
            credentials: Some(test_credentials(None)),
            balance_ex_enabled: false,
            ..SimOptions::default()
        })
        .await;
        assert_eq!(
            errors(&call(&sim, Endpoint::BalanceEx, 1).await),
            ["EGeneral:Permission denied"]
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
            permissions: vec!["Funds: Withdraw".into()],
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
