//! Injected faults: what a test asked the simulated Kraken to do instead of answering, and the
//! answers they produce.
//!
//! Owns [`Fault`], the table of injected faults (per method, or for every method) with their
//! remaining counts, and the response each fault sends.
//! Must not: check credentials or touch the nonce and the rate counter; a faulted call skips
//! every check.

use std::collections::HashMap;
use std::time::Duration;

use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use tokio::time::MissedTickBehavior;

use super::response::{SimBody, envelope_error, json_content_type, json_response};
use crate::endpoint::Endpoint;

/// Content-Length declared by [`Fault::Trickle`]: large enough that the body never completes.
const TRICKLE_DECLARED_LENGTH: u64 = 1_000_000;

/// Kraken's documented error strings, each as the sim sends it with [`Fault::KrakenError`], so a
/// test can run every one through the exporter. Sources: Kraken's API errors guide
/// (docs.kraken.com/api/docs/guides/spot-errors) for the `EAPI:*`, `EGeneral:*` and `EService:*`
/// strings (`EGeneral:Internal error` also with its `:<code>`, whose value here is made up);
/// its rate-limit guide for the spaced `EService: Throttled: <ts>`; Kraken's SDK for
/// `EService:Throttled:<ts>` and `EAPI:Permission denied`; ccxt for `EDatabase:Internal error`.
/// The throttle time is a fixed moment in the past, so waiting for it costs nothing.
pub const DOCUMENTED_ERRORS: [&str; 19] = [
    "EService: Throttled: 1700000000",
    "EService:Throttled:1700000000",
    "EDatabase:Internal error",
    "EAPI:Permission denied",
    "EGeneral:Permission denied",
    "EAPI:Invalid key",
    "EAPI:Invalid signature",
    "EAPI:Invalid nonce",
    "EGeneral:Temporary lockout",
    "EAPI:Rate limit exceeded",
    "EGeneral:Too many requests",
    "EService:Unavailable",
    "EService:Busy",
    "EAPI:Feature disabled",
    "EGeneral:Invalid arguments",
    "EGeneral:Internal error",
    "EGeneral:Internal error:1a2b3c",
    "EService:Deadline elapsed",
    "EService:Market in post_only mode",
];

/// The `result` members of [`Fault::ResultJson`] that no documented answer has: `null`, an
/// array, a string, a number. With [`Fault::NoResult`] (no `result` at all) they are every shape
/// that must never read as an empty account.
pub const MALFORMED_RESULTS: [&str; 4] = ["null", "[]", "\"\"", "0"];

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
    /// Answer 200 with `{"error":[]}` and no result field. An empty account has been seen to
    /// answer this (rotki #946), but it says nothing of what the account holds: a balance
    /// reading is `"result":{...}`, an empty account `"result":{}` ([`Fault::ResultJson`]).
    NoResult,
    /// Answer 200 with `{"error":[],"result":<this JSON text>}`: `{}` for an empty account, or one
    /// of [`MALFORMED_RESULTS`] (`null`, an array, a string, a number).
    ResultJson(String),
    /// Answer `302 Found` with this `Location` (a misconfigured proxy, or a hijacked address):
    /// a client that followed it would send the key's headers there.
    Redirect(String),
}

/// Faults injected per method, and the one for every other method.
#[derive(Default)]
pub(super) struct Faults {
    /// Faults for one method; they win over `every`.
    by_endpoint: HashMap<Endpoint, InjectedFault>,
    /// The fault for every method without one of its own.
    every: Option<InjectedFault>,
}

impl Faults {
    /// Injects `fault` for `endpoint` (`None`: every method) for `times` calls; `Some(0)` removes
    /// the fault instead.
    pub(super) fn set(&mut self, endpoint: Option<Endpoint>, fault: Fault, times: Option<u32>) {
        let injected = (times != Some(0)).then_some(InjectedFault {
            fault,
            remaining: times,
        });
        match (endpoint, injected) {
            (Some(endpoint), Some(injected)) => {
                self.by_endpoint.insert(endpoint, injected);
            }
            (Some(endpoint), None) => {
                self.by_endpoint.remove(&endpoint);
            }
            (None, injected) => self.every = injected,
        }
    }

    /// Removes every fault.
    pub(super) fn clear(&mut self) {
        self.by_endpoint.clear();
        self.every = None;
    }

    /// The fault that applies to one call of `endpoint`, counting it against its remaining calls.
    pub(super) fn take(&mut self, endpoint: Endpoint) -> Option<Fault> {
        if let Some(injected) = self.by_endpoint.get_mut(&endpoint) {
            let (fault, used_up) = injected.take();
            if used_up {
                self.by_endpoint.remove(&endpoint);
            }
            return Some(fault);
        }
        let (fault, used_up) = self.every.as_mut()?.take();
        if used_up {
            self.every = None;
        }
        Some(fault)
    }
}

/// A fault and how many more calls it applies to (None = until cleared).
struct InjectedFault {
    fault: Fault,
    remaining: Option<u32>,
}

impl InjectedFault {
    /// The fault for one call, and whether that was its last.
    fn take(&mut self) -> (Fault, bool) {
        let used_up = match self.remaining.as_mut() {
            Some(remaining) => {
                *remaining -= 1;
                *remaining == 0
            }
            None => false,
        };
        (self.fault.clone(), used_up)
    }
}

/// Builds the answer an injected fault calls for.
pub(super) async fn fault_response(fault: Fault) -> Response<SimBody> {
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
        Fault::ResultJson(result) => json_response(
            StatusCode::OK,
            format!(r#"{{"error":[],"result":{result}}}"#).into_bytes(),
        ),
        Fault::Redirect(location) => {
            let mut response = json_response(StatusCode::FOUND, Vec::new());
            if let Ok(location) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::super::testing::*;
    use super::*;
    use crate::endpoint::Endpoint;
    use crate::sim::SimOptions;

    #[tokio::test]
    async fn injected_kraken_error_applies_for_the_given_calls_then_service_resumes() {
        let sim = start_with_key(None).await;
        sim.inject(
            Endpoint::BalanceEx,
            Fault::KrakenError("EService:Unavailable".into()),
            Some(1),
        );
        assert_eq!(
            errors(&call(&sim, Endpoint::BalanceEx, 1).await),
            ["EService:Unavailable"]
        );
        // The faulted call consumed no nonce, so the same nonce now succeeds.
        assert_eq!(sim.last_nonce(), None);
        let answer = call(&sim, Endpoint::BalanceEx, 1).await;
        assert!(errors(&answer).is_empty(), "{answer}");
        assert_eq!(answer["result"]["XETH"]["balance"], "12.5000000000");
    }

    #[tokio::test]
    async fn faults_hit_even_a_wrong_key_and_method_specific_beats_wildcard() {
        let sim = start_with_key(None).await;
        sim.inject_all(
            Fault::KrakenError("EGeneral:Temporary lockout".into()),
            None,
        );
        sim.inject(Endpoint::Balance, Fault::NoResult, None);
        let mut request = Call::new(&sim, Endpoint::BalanceEx, 1);
        request.key = "nobody".into();
        assert_eq!(
            errors(&request.send(&sim).await),
            ["EGeneral:Temporary lockout"]
        );
        let answer = call(&sim, Endpoint::Balance, 2).await;
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
        assert!(errors(&call(&sim, Endpoint::Balance, 3).await).is_empty());
    }

    #[tokio::test]
    async fn status_and_raw_body_faults_are_sent_verbatim() {
        let sim = start_with_key(None).await;
        let page = "<html><body>520: Web server is returning an unknown error</body></html>";
        sim.inject(Endpoint::Balance, Fault::Status(520, page.into()), Some(1));
        sim.inject(
            Endpoint::BalanceEx,
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
    async fn every_documented_error_string_is_sent_verbatim_on_demand() {
        let sim = start_with_key(None).await;
        for message in DOCUMENTED_ERRORS {
            sim.inject(
                Endpoint::Balance,
                Fault::KrakenError(message.into()),
                Some(1),
            );
            assert_eq!(errors(&call(&sim, Endpoint::Balance, 1).await), [message]);
        }
        assert!(errors(&call(&sim, Endpoint::Balance, 1).await).is_empty());
    }

    #[tokio::test]
    async fn every_result_shape_is_sent_as_asked() {
        let sim = start_with_key(None).await;
        for result in MALFORMED_RESULTS.into_iter().chain(["{}"]) {
            sim.inject(
                Endpoint::BalanceEx,
                Fault::ResultJson(result.into()),
                Some(1),
            );
            let answer = call(&sim, Endpoint::BalanceEx, 1).await;
            let expected: serde_json::Value = serde_json::from_str(result).unwrap();
            assert_eq!(answer, json!({"error": [], "result": expected}), "{result}");
        }
    }

    #[tokio::test]
    async fn a_redirect_fault_answers_302_with_its_location() {
        let sim = start_with_key(None).await;
        sim.inject(
            Endpoint::Balance,
            Fault::Redirect("http://127.0.0.1:9/elsewhere".into()),
            Some(1),
        );
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let response = client
            .post(format!("{}/0/private/Balance", sim.url()))
            .body("nonce=1")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 302);
        assert_eq!(
            response.headers()["location"],
            "http://127.0.0.1:9/elsewhere"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn hang_never_answers_until_shutdown() {
        let sim = start_with_key(None).await;
        let _clock = pace_the_clock();
        sim.inject(Endpoint::Assets, Fault::Hang, None);
        let url = format!("{}/0/public/Assets", sim.url());
        let started = tokio::time::Instant::now();
        let error = http()
            .get(&url)
            .timeout(Duration::from_millis(300))
            .send()
            .await
            .expect_err("a hang never answers");
        assert!(error.is_timeout(), "{error}");
        assert!(started.elapsed() >= Duration::from_millis(300));

        let pending = tokio::spawn(async move { http().get(url).send().await });
        // The second request is in and hanging: only shutdown can end it now.
        tokio::time::timeout(
            Duration::from_secs(5),
            sim.wait_for_calls(Endpoint::Assets, 2),
        )
        .await
        .expect("the second request reaches the sim");
        sim.shutdown();
        let outcome = tokio::time::timeout(Duration::from_secs(5), pending)
            .await
            .expect("shutdown ends the hang")
            .unwrap();
        assert!(outcome.is_err(), "the connection closes without an answer");
        assert_eq!(sim.calls(Endpoint::Assets), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn trickle_declares_a_large_body_and_sends_one_byte_per_second() {
        let sim = start_with_key(None).await;
        let _clock = pace_the_clock();
        sim.inject(Endpoint::Balance, Fault::Trickle, Some(1));
        let mut response = http()
            .post(format!("{}/0/private/Balance", sim.url()))
            .body("nonce=1")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.content_length(), Some(TRICKLE_DECLARED_LENGTH));
        let started = tokio::time::Instant::now();
        let first = response.chunk().await.unwrap().unwrap();
        let second = response.chunk().await.unwrap().unwrap();
        assert_eq!(first.len() + second.len(), 2);
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
        assert!(
            elapsed < Duration::from_secs(2),
            "one byte per second: {elapsed:?}"
        );
    }

    #[tokio::test]
    async fn faults_apply_to_the_public_market_endpoints_too() {
        let sim = start(SimOptions::default()).await;
        sim.inject(
            Endpoint::Ticker,
            Fault::KrakenError("EService:Unavailable".into()),
            Some(1),
        );
        let answer = get_json(&sim, "/0/public/Ticker?pair=XXBTZUSD").await;
        assert_eq!(errors(&answer), ["EService:Unavailable"]);
        let answer = get_json(&sim, "/0/public/Ticker?pair=XXBTZUSD").await;
        assert!(errors(&answer).is_empty());
        assert_eq!(sim.calls(Endpoint::Ticker), 2);
    }
}
