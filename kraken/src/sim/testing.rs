//! Helpers shared by the simulator's tests: credentials, a client, signed calls that can be
//! broken on purpose, and a paced clock for tests on paused time (the client's tests use it too).
//!
//! Owns only test helpers. Must not: be compiled outside tests, or reach anything but a
//! simulated Kraken on `127.0.0.1`.

use serde_json::Value;

use super::{SimKraken, SimOptions};
use crate::endpoint::Endpoint;
use crate::secret::{ApiSecret, Credentials, SecretText};
use crate::sign::sign;

pub(super) fn test_credentials(otp: Option<&str>) -> Credentials {
    Credentials {
        key: SecretText::new("SIMTESTKEY".into()),
        secret: ApiSecret::from_bytes(vec![7u8; 64]),
        otp: otp.map(|o| SecretText::new(o.into())),
    }
}

pub(super) async fn start(options: SimOptions) -> SimKraken {
    SimKraken::start(options).await.expect("sim starts")
}

pub(super) async fn start_with_key(otp: Option<&str>) -> SimKraken {
    start(SimOptions {
        credentials: Some(test_credentials(otp)),
        ..SimOptions::default()
    })
    .await
}

pub(super) fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client builds")
}

/// What a private call sends; each field can be broken on purpose.
pub(super) struct Call<'a> {
    /// The private method called.
    pub(super) method: Endpoint,
    /// The nonce sent.
    pub(super) nonce: u64,
    /// The 2FA password sent, if any.
    pub(super) otp: Option<&'a str>,
    /// The `API-Key` header.
    pub(super) key: String,
    /// The secret the call is signed with.
    pub(super) secret: ApiSecret,
    /// Sign for another nonce than the one sent.
    pub(super) tamper_signature: bool,
    /// Form fields sent after the nonce, such as `asset=ZEUR`.
    pub(super) params: &'a str,
}

impl<'a> Call<'a> {
    pub(super) fn new(sim: &SimKraken, method: Endpoint, nonce: u64) -> Self {
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

    pub(super) async fn send(self, sim: &SimKraken) -> Value {
        let path = self.method.path();
        let mut body = format!("nonce={}", self.nonce);
        if !self.params.is_empty() {
            body.push('&');
            body.push_str(self.params);
        }
        if let Some(otp) = self.otp {
            body.push_str("&otp=");
            body.push_str(otp);
        }
        let mut signature = sign(path, self.nonce, body.as_bytes(), &self.secret);
        if self.tamper_signature {
            signature = sign(path, self.nonce + 1, body.as_bytes(), &self.secret);
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

pub(super) async fn call(sim: &SimKraken, method: Endpoint, nonce: u64) -> Value {
    Call::new(sim, method, nonce).send(sim).await
}

pub(super) fn errors(answer: &Value) -> Vec<&str> {
    answer["error"]
        .as_array()
        .expect("error array")
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect()
}

pub(super) async fn get_json(sim: &SimKraken, path_and_query: &str) -> Value {
    let response = http()
        .get(format!("{}{path_and_query}", sim.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

pub(super) fn last_price(answer: &Value, pair: &str) -> f64 {
    answer["result"][pair]["c"][0]
        .as_str()
        .unwrap_or_else(|| panic!("no price for {pair}: {answer}"))
        .parse()
        .unwrap()
}

/// Under paused time (`#[tokio::test(start_paused = true)]`), a timer that fires every
/// millisecond, so the clock never leaps further while the runtime waits for loopback I/O.
///
/// Tokio advances a paused clock straight to the next timer whenever no task is runnable; an
/// answer the kernel has not delivered yet would then let it leap to a client's timeout and fail
/// a test for no reason. Paced, such a leap costs a millisecond, while sleeps and timeouts of
/// seconds still pass in a few milliseconds of real time.
pub(crate) fn pace_the_clock() -> tokio::task::JoinHandle<()> {
    tokio::spawn(async {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    })
}
