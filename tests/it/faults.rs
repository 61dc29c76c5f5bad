//! Kraken and the network failing in every way we know of. For each fault: the scrape answers
//! within its timeout, `/metrics` stays 200, `kraken_up` is 0, the right `reason` counter
//! moves, the exporter keeps serving, the number of calls to Kraken during the fault stays
//! bounded (no retry storm), and the exporter recovers by itself when the fault ends.
//!
//! Backoffs are scaled down (the production table waits up to 15 minutes), which is a setting
//! of the library, not of operators: the code path is the production one.
//!
//! Time is paused and paced (see [`crate::paced_clock`]): the fault windows, backoffs, timeouts
//! and scrape deadlines below are tokio time, so they pass in milliseconds and every bound on
//! elapsed time is exact rather than a guess about the machine's speed.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kraken::Endpoint;
use kraken::sim::{Fault, SimKraken, SimOptions};
use kraken_exporter::account::BackoffPolicy;
use kraken_exporter::app::SharedEnv;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::{Clock, Served, sample};

/// Production backoffs × 0.05: 5 s → 250 ms, 30 s → 1.5 s, a 15-minute lockout → 45 s… capped.
const FAST: BackoffPolicy = BackoffPolicy {
    scale: 0.05,
    max: Duration::from_secs(2),
};

/// How long each fault is kept up while scraping.
const FAULT_WINDOW: Duration = Duration::from_secs(3);

/// Starts the exporter against `url` with the sim's credentials and fast backoffs.
async fn exporter(sim: &SimKraken, url: &str, args: &[&str], backoff: BackoffPolicy) -> Served {
    let creds = sim.credentials();
    let key = creds.key.expose().to_owned();
    let secret = STANDARD.encode(creds.secret.expose());
    let env: SharedEnv = Arc::new(move |name: &str| match name {
        "KRAKEN_API_KEY" => Some(key.clone()),
        "KRAKEN_API_SECRET" => Some(secret.clone()),
        _ => None,
    });
    let mut argv = vec![
        "--kraken.api-url",
        url,
        "--refresh.min-interval",
        "100ms",
        "--kraken.timeout",
        "1s",
        "--audit.disabled",
    ];
    argv.extend_from_slice(args);
    Served::launch(Clock::Paused, &argv, env, |config| {
        config.policy.backoff = backoff
    })
    .await
}

/// A scrape with a 2 s Prometheus timeout: it must answer 200 within it.
async fn scrape(served: &Served) -> String {
    let started = Instant::now();
    let (status, _, body) = served
        .get("/metrics", &[("X-Prometheus-Scrape-Timeout-Seconds", "2")])
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "scrape took {:?}",
        started.elapsed()
    );
    body
}

fn up(body: &str) -> Option<f64> {
    sample(body, "kraken_up", r#"account="default""#)
}

fn errors(body: &str, reason: &str) -> f64 {
    sample(
        body,
        "kraken_request_errors_total",
        &format!(r#"account="default",endpoint="BalanceEx",reason="{reason}""#),
    )
    .unwrap_or(0.0)
}

/// Scrapes every 50 ms for the fault window; returns the last exposition.
async fn scrape_through_fault(served: &Served) -> String {
    let until = Instant::now() + FAULT_WINDOW;
    let mut body = scrape(served).await;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
        body = scrape(served).await;
    }
    body
}

/// Scrapes until an error with `reason` has been counted, for at most 5 s; returns the last
/// exposition (the caller asserts on it).
async fn scrape_until_counted(served: &Served, reason: &str) -> String {
    let until = Instant::now() + Duration::from_secs(5);
    let mut body = scrape(served).await;
    while errors(&body, reason) < 1.0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
        body = scrape(served).await;
    }
    body
}

/// Scrapes until `kraken_up` is 1 again, failing after `limit`.
async fn wait_recovered(served: &Served, limit: Duration) -> String {
    let until = Instant::now() + limit;
    loop {
        let body = scrape(served).await;
        if up(&body) == Some(1.0) {
            return body;
        }
        assert!(
            Instant::now() < until,
            "no recovery within {limit:?}:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One injected fault on BalanceEx, checked end to end. `max_calls` bounds the calls Kraken
/// sees during the fault window (60 scrapes would make 30+ calls without backoff).
async fn check_fault(fault: Fault, reason: &str, max_calls: u64, args: &[&str]) {
    let sim = SimKraken::start(SimOptions::default()).await.unwrap();
    let served = exporter(&sim, &sim.url(), args, FAST).await;
    served.wait_ready().await;
    let label = format!("{fault:?}").chars().take(60).collect::<String>();
    let before = sim.calls(Endpoint::BalanceEx);
    sim.inject(Endpoint::BalanceEx, fault, None);
    let body = scrape_through_fault(&served).await;
    let during = sim.calls(Endpoint::BalanceEx) - before;
    assert_eq!(up(&body), Some(0.0), "{label}\n{body}");
    assert!(
        errors(&body, reason) >= 1.0,
        "{label}: {reason} not counted\n{body}"
    );
    assert!(during >= 1, "{label}: Kraken was not called at all");
    assert!(
        during <= max_calls,
        "{label}: {during} calls in {FAULT_WINDOW:?}: a retry storm"
    );
    assert!(
        body.contains("kraken_balance{"),
        "{label}: the last good balances are served"
    );
    assert!(served.is_running(), "{label}: the exporter stopped");
    sim.clear_faults();
    wait_recovered(&served, Duration::from_secs(10)).await;
    served.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_never_answers_times_out() {
    check_fault(Fault::Hang, "timeout", 4, &[]).await;
}

#[tokio::test(start_paused = true)]
async fn a_body_that_trickles_forever_times_out() {
    check_fault(Fault::Trickle, "timeout", 4, &[]).await;
}

#[tokio::test(start_paused = true)]
async fn http_500_and_502_are_unavailable() {
    check_fault(
        Fault::Status(500, "Internal Server Error".into()),
        "unavailable",
        6,
        &[],
    )
    .await;
    check_fault(
        Fault::Status(502, "<html><body>502 Bad Gateway</body></html>".into()),
        "unavailable",
        6,
        &[],
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn cloudflare_520_and_522_pages_are_unavailable() {
    let page = include_str!("../fixtures/kraken/cloudflare_520.html");
    check_fault(Fault::Status(520, page.into()), "unavailable", 6, &[]).await;
    check_fault(
        Fault::Status(
            522,
            page.replace("520", "522")
                .replace("unknown error", "Connection timed out"),
        ),
        "unavailable",
        6,
        &[],
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn truncated_json_is_a_decode_error() {
    let body = include_bytes!("../fixtures/kraken/truncated.json").to_vec();
    check_fault(Fault::RawBody(body), "decode", 6, &[]).await;
}

#[tokio::test(start_paused = true)]
async fn a_body_larger_than_any_balance_answer_is_cut_off() {
    let huge = format!(
        r#"{{"error":[],"result":{{"XXBT":{{"balance":"1","hold_trade":"0","pad":"{}"}}}}}}"#,
        "x".repeat(16 * 1024 * 1024)
    );
    check_fault(Fault::RawBody(huge.into_bytes()), "decode", 6, &[]).await;
}

#[tokio::test(start_paused = true)]
async fn a_body_that_is_not_json_is_a_decode_error() {
    check_fault(
        Fault::RawBody(b"<html>maintenance</html>".to_vec()),
        "decode",
        6,
        &[],
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn rate_limits_back_off() {
    check_fault(
        Fault::KrakenError("EAPI:Rate limit exceeded".into()),
        "rate_limited",
        3,
        &[],
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn throttled_waits_until_the_time_kraken_gave() {
    let sim = SimKraken::start(SimOptions::default()).await.unwrap();
    let served = exporter(&sim, &sim.url(), &[], FAST).await;
    served.wait_ready().await;
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3;
    sim.inject(
        Endpoint::BalanceEx,
        Fault::KrakenError(format!("EService:Throttled:{until}")),
        Some(1),
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    let before = sim.calls(Endpoint::BalanceEx);
    let body = scrape(&served).await;
    assert_eq!(up(&body), Some(0.0), "{body}");
    assert_eq!(errors(&body, "rate_limited"), 1.0);
    // Nothing more until the time Kraken named (2–3 s away), whatever the scrapes.
    let quiet_until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < quiet_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
        scrape(&served).await;
    }
    assert_eq!(
        sim.calls(Endpoint::BalanceEx) - before,
        1,
        "called again before the throttle ended"
    );
    wait_recovered(&served, Duration::from_secs(6)).await;
    served.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_lockout_is_not_retried_until_its_wait_is_over() {
    // Scaled to 0.005: the 15-minute lockout wait becomes 4.5 s, still longer than the window.
    let policy = BackoffPolicy {
        scale: 0.005,
        max: Duration::from_secs(2),
    };
    let sim = SimKraken::start(SimOptions::default()).await.unwrap();
    let served = exporter(&sim, &sim.url(), &[], policy).await;
    served.wait_ready().await;
    sim.inject(
        Endpoint::BalanceEx,
        Fault::KrakenError("EGeneral:Temporary lockout".into()),
        None,
    );
    let before = sim.calls(Endpoint::BalanceEx);
    let body = scrape_through_fault(&served).await;
    assert_eq!(up(&body), Some(0.0));
    assert_eq!(errors(&body, "lockout"), 1.0);
    assert_eq!(
        sim.calls(Endpoint::BalanceEx) - before,
        1,
        "every attempt would restart Kraken's timer"
    );
    sim.clear_faults();
    wait_recovered(&served, Duration::from_secs(8)).await;
    served.stop().await;
}

#[tokio::test(start_paused = true)]
async fn one_invalid_nonce_is_retried_and_a_repeated_one_is_not_looped() {
    let sim = SimKraken::start(SimOptions::default()).await.unwrap();
    let served = exporter(&sim, &sim.url(), &[], FAST).await;
    served.wait_ready().await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    sim.inject(
        Endpoint::BalanceEx,
        Fault::KrakenError("EAPI:Invalid nonce".into()),
        Some(1),
    );
    let before = sim.calls(Endpoint::BalanceEx);
    let body = scrape(&served).await;
    assert_eq!(
        up(&body),
        Some(1.0),
        "one retry with a fresh nonce succeeds\n{body}"
    );
    assert_eq!(sim.calls(Endpoint::BalanceEx) - before, 2);
    served.stop().await;
    check_fault(
        Fault::KrakenError("EAPI:Invalid nonce".into()),
        "invalid_nonce",
        6,
        &[],
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn invalid_key_and_signature_are_not_retried_tightly() {
    // Base 60 s × 0.05 = 3 s: one call (plus at most one more) in the window.
    check_fault(
        Fault::KrakenError("EAPI:Invalid key".into()),
        "invalid_key",
        2,
        &[],
    )
    .await;
    check_fault(
        Fault::KrakenError("EAPI:Invalid signature".into()),
        "invalid_signature",
        2,
        &[],
    )
    .await;
}

/// A TCP front for the sim that can refuse connections (no listener) or forward them.
struct Switch {
    port: u16,
    forwarding: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Switch {
    /// Listens on a free port; forwards to `target` while on; while off, has no listener (so
    /// connections are refused) and has cut every forwarded connection.
    async fn start(target: std::net::SocketAddr) -> Switch {
        let port = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (forwarding, mut on) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                if !*on.borrow_and_update() {
                    if on.changed().await.is_err() {
                        return;
                    }
                    continue;
                }
                let Ok(listener) = TcpListener::bind(("127.0.0.1", port)).await else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                loop {
                    tokio::select! {
                        changed = on.changed() => {
                            if changed.is_err() || !*on.borrow_and_update() {
                                break;
                            }
                        }
                        accepted = listener.accept() => {
                            let Ok((mut inbound, _)) = accepted else { continue };
                            let mut off = on.clone();
                            tokio::spawn(async move {
                                let Ok(mut outbound) = TcpStream::connect(target).await else {
                                    return;
                                };
                                tokio::select! {
                                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                                    _ = off.wait_for(|on| !*on) => {}
                                }
                            });
                        }
                    }
                }
            }
        });
        Switch {
            port,
            forwarding,
            task,
        }
    }

    fn set(&self, on: bool) {
        self.forwarding.send_replace(on);
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(start_paused = true)]
async fn connection_refused_is_http_and_recovers_when_kraken_is_back() {
    let sim = SimKraken::start(SimOptions::default()).await.unwrap();
    let target = sim.url().trim_start_matches("http://").parse().unwrap();
    let switch = Switch::start(target).await;
    switch.set(true);
    let url = format!("http://127.0.0.1:{}", switch.port);
    let served = exporter(&sim, &url, &[], FAST).await;
    served.wait_ready().await;
    switch.set(false);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = sim.calls(Endpoint::BalanceEx);
    let body = scrape_through_fault(&served).await;
    assert_eq!(up(&body), Some(0.0), "{body}");
    assert!(errors(&body, "http") >= 1.0, "{body}");
    let attempts = sample(
        &body,
        "kraken_requests_total",
        r#"account="default",endpoint="BalanceEx""#,
    )
    .unwrap();
    assert!(attempts <= 8.0, "{attempts} attempts: a retry storm");
    assert_eq!(
        sim.calls(Endpoint::BalanceEx),
        before,
        "nothing reached Kraken"
    );
    switch.set(true);
    wait_recovered(&served, Duration::from_secs(10)).await;
    served.stop().await;
}

#[tokio::test(start_paused = true)]
async fn dns_failure_is_http() {
    let sim = SimKraken::start(SimOptions::default()).await.unwrap();
    let served = exporter(&sim, "https://kraken-exporter-test.invalid", &[], FAST).await;
    let body = scrape_until_counted(&served, "http").await;
    assert_eq!(up(&body), Some(0.0));
    assert!(errors(&body, "http") >= 1.0, "{body}");
    let body = scrape_through_fault(&served).await;
    let attempts = sample(
        &body,
        "kraken_requests_total",
        r#"account="default",endpoint="BalanceEx""#,
    )
    .unwrap();
    assert!(attempts <= 8.0, "{attempts} attempts");
    served.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_tls_handshake_failure_is_http() {
    // A listener that answers a TLS ClientHello with plain text: the handshake fails.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let garbage = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream
                .write_all(b"HTTP/1.1 400 Bad Request\r\n\r\nnot tls")
                .await;
        }
    });
    let sim = SimKraken::start(SimOptions::default()).await.unwrap();
    let url = format!("https://127.0.0.1:{port}");
    let served = exporter(&sim, &url, &[], FAST).await;
    let body = scrape_until_counted(&served, "http").await;
    assert_eq!(up(&body), Some(0.0));
    assert!(errors(&body, "http") >= 1.0, "{body}");
    assert!(served.is_running());
    served.stop().await;
    garbage.abort();
}

/// The `reason` the reason table of `docs/metrics.md` gives an error string: the row naming it
/// (exactly, as a prefix ending in `*`, or with a `<time>` placeholder), the most specific
/// match winning. Spaces around `:` are ignored, as Kraken writes the throttle both ways.
fn documented_reason(docs: &str, message: &str) -> Option<String> {
    let normalise = |text: &str| {
        text.split(':')
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(":")
            .to_ascii_lowercase()
    };
    let message = normalise(message);
    let table = docs.split("### Reasons").nth(1)?;
    let mut best: Option<(usize, String)> = None;
    for row in table.lines().filter(|line| line.starts_with("| `")) {
        let mut cells = row.split('|').skip(1);
        let reason = cells.next()?.trim().trim_matches('`').to_owned();
        let cause = cells.next()?;
        for token in cause.split('`').skip(1).step_by(2) {
            let token = normalise(token);
            let matched = if let Some(prefix) = token.strip_suffix('*') {
                message.starts_with(prefix).then_some(prefix.len())
            } else if let Some(at) = token.find('<') {
                message.starts_with(&token[..at]).then_some(at)
            } else {
                (message == token || message.starts_with(&format!("{token}:")))
                    .then_some(token.len())
            };
            if let Some(length) = matched
                && best.as_ref().is_none_or(|(longest, _)| length > *longest)
            {
                best = Some((length, reason.clone()));
            }
        }
    }
    best.map(|(_, reason)| reason)
}

/// Every BalanceEx error counter, by reason.
fn error_counts(body: &str) -> Vec<(String, f64)> {
    kraken::Reason::ALL
        .iter()
        .map(|reason| (reason.as_str().to_owned(), errors(body, reason.as_str())))
        .collect()
}

/// Each of Kraken's documented error strings, sent by the simulated Kraken, is counted by the
/// exporter under the reason the documentation's table gives it, and under no other.
#[tokio::test(start_paused = true)]
async fn every_documented_error_string_is_counted_under_its_documented_reason() {
    use kraken::sim::DOCUMENTED_ERRORS;
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md")).unwrap();
    let quick = BackoffPolicy {
        scale: 0.001,
        max: Duration::from_millis(200),
    };
    let sim = SimKraken::start(SimOptions::default()).await.unwrap();
    let served = exporter(
        &sim,
        &sim.url(),
        &["--kraken.balance-endpoint", "balance-ex"],
        quick,
    )
    .await;
    served.wait_ready().await;
    for message in DOCUMENTED_ERRORS {
        let reason = documented_reason(&docs, message)
            .unwrap_or_else(|| panic!("docs/metrics.md gives no reason for {message:?}"));
        let before = error_counts(&served.metrics().await);
        sim.inject(
            Endpoint::BalanceEx,
            Fault::KrakenError(message.into()),
            Some(1),
        );
        let until = Instant::now() + Duration::from_secs(5);
        let mut body = scrape(&served).await;
        while error_counts(&body) == before && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
            body = scrape(&served).await;
        }
        let moved: Vec<(String, f64)> = error_counts(&body)
            .into_iter()
            .zip(&before)
            .filter(|((_, now), (_, then))| now != then)
            .map(|((reason, now), (_, then))| (reason, now - then))
            .collect();
        assert_eq!(moved, [(reason.clone(), 1.0)], "{message:?}");
        wait_recovered(&served, Duration::from_secs(5)).await;
    }
    served.stop().await;
}

#[test]
fn the_reason_table_is_read_most_specific_first() {
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md")).unwrap();
    for (message, reason) in [
        ("EService:Throttled:1700000000", "rate_limited"),
        ("EService: Throttled: 1700000000", "rate_limited"),
        ("EService:Busy", "unavailable"),
        ("EDatabase:Internal error", "unavailable"),
        ("EGeneral:Invalid arguments:ordertype", "other"),
    ] {
        assert_eq!(
            documented_reason(&docs, message).as_deref(),
            Some(reason),
            "{message}"
        );
    }
    assert_eq!(documented_reason(&docs, "EQuery:Unknown asset pair"), None);
}
