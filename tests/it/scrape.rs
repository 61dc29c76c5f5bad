//! Scraping `/metrics`: the exposition, the refresh policy and error classification.
//!
//! Time is paused and paced (see [`crate::paced_clock`]): intervals, staleness, latencies and
//! deadlines are tokio time, so waiting them out costs milliseconds and bounds are exact.

use std::time::Duration;

use kraken::Endpoint;
use kraken::sim::{Fault, SimOptions};
use tokio::time::Instant;

use crate::{Clock, Harness, client, sample};

/// Balances with fixed values, so the exposition is reproducible.
fn fixed_balances() -> Vec<(String, f64, f64)> {
    [
        ("XXBT", 1.2345678901, 0.1),
        ("XETH", 37.9, 0.0),
        ("ZUSD", 25000.1234, 1500.0),
        ("ZEUR", 0.0, 0.0),
        ("DOT28.S", 1011.19088779, 0.0),
        ("ETH2.S", 3.2, 0.0),
        ("USD.M", 1000.5, 0.0),
        ("NEWCOIN", 5.0, 0.0),
    ]
    .into_iter()
    .map(|(code, total, hold)| (code.to_owned(), total, hold))
    .collect()
}

/// Replaces values that change from run to run (timings, timestamps, the git revision).
fn normalize(exposition: &str) -> String {
    exposition
        .lines()
        .map(|line| {
            let volatile = line.starts_with("process_")
                || line.starts_with("kraken_request_duration_seconds_bucket")
                || line.starts_with("kraken_request_duration_seconds_sum")
                || line.starts_with("kraken_last_success_timestamp_seconds{")
                || line
                    .starts_with("kraken_exporter_config_last_reload_success_timestamp_seconds ");
            if volatile {
                let (series, _) = line.rsplit_once(' ').unwrap();
                format!("{series} <volatile>")
            } else if line.starts_with("kraken_exporter_build_info{") {
                "kraken_exporter_build_info{<version and revision>} 1".to_owned()
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[tokio::test(start_paused = true)]
async fn exposition_matches_the_golden_file() {
    let h = Harness::start_with_balances(
        Clock::Paused,
        // The audit runs after the first refresh; leaving it out keeps the file deterministic.
        &["--audit.disabled"],
        SimOptions::default(),
        Some(fixed_balances()),
    )
    .await;
    h.wait_ready().await;
    // The Earn allocations are fetched right after the first balances, in the same task; the
    // file shows them once that call is counted (well within the 10s minimum interval, so no
    // second refresh starts meanwhile).
    let earn_counted = r#"kraken_requests_total{account="default",endpoint="Earn/Allocations"} 1"#;
    for _ in 0..250 {
        if h.metrics().await.contains(earn_counted) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, content_type, body) = h.get("/metrics", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let actual = normalize(&body);
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/exposition.prom");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(path)
        .expect("golden file exists; create it with UPDATE_GOLDEN=1 cargo test --test it golden");
    assert_eq!(
        actual, expected,
        "exposition differs from tests/golden/exposition.prom; if the change is intended, run UPDATE_GOLDEN=1 cargo test --test it golden"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn balances_carry_altname_and_raw_code_and_zeros_are_exported() {
    let h = Harness::start_with_balances(
        Clock::Paused,
        &[],
        SimOptions::default(),
        Some(fixed_balances()),
    )
    .await;
    h.wait_ready().await;
    let body = h.metrics().await;
    let balance = |asset: &str, code: &str| {
        sample(
            &body,
            "kraken_balance",
            &format!(r#"account="default",asset="{asset}",code="{code}""#),
        )
    };
    assert_eq!(balance("XBT", "XXBT"), Some(1.2345678901));
    assert_eq!(balance("ETH", "XETH"), Some(37.9), "never truncated");
    assert_eq!(
        balance("EUR", "ZEUR"),
        Some(0.0),
        "zero balances are exported as 0"
    );
    assert_eq!(balance("DOT28.S", "DOT28.S"), Some(1011.19088779));
    assert_eq!(
        balance("NEWCOIN", "NEWCOIN"),
        Some(5.0),
        "unknown codes keep their raw name"
    );
    assert_eq!(
        sample(
            &body,
            "kraken_balance_hold",
            r#"account="default",asset="USD",code="ZUSD""#
        ),
        Some(1500.0)
    );
    assert_eq!(
        sample(&body, "kraken_up", r#"account="default""#),
        Some(1.0)
    );
    let last = sample(
        &body,
        "kraken_last_success_timestamp_seconds",
        r#"account="default""#,
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - last).abs() < 60.0, "{last} vs {now}");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_vanished_asset_vanishes_from_the_exposition() {
    let h = Harness::start_with_balances(
        Clock::Paused,
        &["--refresh.min-interval", "100ms"],
        SimOptions::default(),
        Some(fixed_balances()),
    )
    .await;
    h.wait_ready().await;
    assert!(h.metrics().await.contains(r#"code="NEWCOIN""#));
    h.sim.set_balances(vec![("XXBT".into(), 2.0, 0.0)]);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let body = h.metrics().await;
    assert!(!body.contains(r#"code="NEWCOIN""#), "{body}");
    assert_eq!(
        sample(
            &body,
            "kraken_balance",
            r#"account="default",asset="XBT",code="XXBT""#
        ),
        Some(2.0)
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn hundred_concurrent_scrapes_cause_exactly_one_upstream_call() {
    // The minimum interval is long, so every scrape below falls inside it: one that did not join
    // the refresh in flight would start a call of its own, while one after it reuses its result.
    let h = Harness::start(
        Clock::Paused,
        &["--refresh.min-interval", "5s"],
        SimOptions {
            latency: Duration::from_millis(300),
            ..SimOptions::default()
        },
    )
    .await;
    h.wait_ready().await;
    tokio::time::sleep(Duration::from_millis(5100)).await;
    let before = h.sim.calls(Endpoint::BalanceEx);
    let client = client();
    let url = h.url("/metrics");
    let scrapes = (0..100).map(|_| {
        let request = client.get(&url).send();
        async move {
            let response = request.await.unwrap();
            assert_eq!(response.status(), 200);
            response.text().await.unwrap()
        }
    });
    let handles: Vec<_> = scrapes.map(tokio::spawn).collect();
    for handle in handles {
        let body = handle.await.unwrap();
        assert_eq!(
            sample(&body, "kraken_up", r#"account="default""#),
            Some(1.0)
        );
    }
    assert_eq!(
        h.sim.calls(Endpoint::BalanceEx) - before,
        1,
        "concurrent scrapes must share one call"
    );
    // Inside the minimum interval, scrapes reuse the snapshot.
    h.metrics().await;
    assert_eq!(h.sim.calls(Endpoint::BalanceEx) - before, 1);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_scrape_never_waits_on_a_refresh_in_progress_when_its_snapshot_is_fresh() {
    // Audit, Earn and money in flight off: their calls would lengthen the first refresh past
    // the second scrape.
    let h = Harness::start(
        Clock::Paused,
        &[
            "--refresh.min-interval",
            "300ms",
            "--audit.disabled",
            "--earn.disabled",
            "--funding.disabled",
        ],
        SimOptions {
            latency: Duration::from_millis(800),
            ..SimOptions::default()
        },
    )
    .await;
    h.wait_ready().await;
    tokio::time::sleep(Duration::from_millis(350)).await;
    let before = h.sim.calls(Endpoint::BalanceEx);
    // The first scrape starts a refresh and waits for it (Kraken takes 800 ms).
    let first = tokio::spawn({
        let url = h.url("/metrics");
        async move {
            client()
                .get(url)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A second scrape meanwhile is served the cached balances at once.
    let started = Instant::now();
    let body = h.metrics().await;
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(
        sample(&body, "kraken_up", r#"account="default""#),
        Some(1.0)
    );
    assert!(body.contains("kraken_balance{"));
    first.await.unwrap();
    assert_eq!(h.sim.calls(Endpoint::BalanceEx) - before, 1);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_scrape_answers_within_its_timeout_while_kraken_hangs() {
    let h = Harness::start_with_balances(
        Clock::Paused,
        &["--refresh.min-interval", "100ms"],
        SimOptions::default(),
        Some(fixed_balances()),
    )
    .await;
    h.wait_ready().await;
    h.sim.inject(Endpoint::BalanceEx, Fault::Hang, None);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let started = Instant::now();
    let (status, _, body) = h
        .get("/metrics", &[("X-Prometheus-Scrape-Timeout-Seconds", "1")])
        .await;
    let elapsed = started.elapsed();
    assert_eq!(status, 200);
    assert!(
        elapsed < Duration::from_secs(1),
        "answered after {elapsed:?}"
    );
    assert_eq!(
        sample(&body, "kraken_up", r#"account="default""#),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &body,
            "kraken_balance",
            r#"account="default",asset="XBT",code="XXBT""#
        ),
        Some(1.2345678901),
        "the last good snapshot is served"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn balances_are_dropped_once_stale_but_up_and_last_success_stay() {
    let h = Harness::start(
        Clock::Paused,
        &[
            "--refresh.min-interval",
            "100ms",
            "--refresh.stale-after",
            "500ms",
        ],
        SimOptions::default(),
    )
    .await;
    h.wait_ready().await;
    h.sim.inject(
        Endpoint::BalanceEx,
        Fault::Status(502, "<html>Bad gateway</html>".into()),
        None,
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    let body = h.metrics().await;
    assert_eq!(
        sample(&body, "kraken_up", r#"account="default""#),
        Some(0.0)
    );
    assert!(
        body.contains("kraken_balance{"),
        "fresh enough: still served\n{body}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let body = h.metrics().await;
    assert!(
        !body.contains("kraken_balance{"),
        "stale balances must be dropped\n{body}"
    );
    assert!(!body.contains("kraken_balance_hold{"), "{body}");
    assert_eq!(
        sample(&body, "kraken_up", r#"account="default""#),
        Some(0.0)
    );
    assert!(
        sample(
            &body,
            "kraken_last_success_timestamp_seconds",
            r#"account="default""#
        )
        .is_some()
    );
    h.stop().await;
}

/// Starts an exporter whose first BalanceEx call meets `fault`, and returns the exposition once
/// that call (and its possible retry) has been counted.
async fn exposition_after(fault: Fault, times: Option<u32>, args: &[&str]) -> (Harness, String) {
    let h = Harness::start(Clock::Paused, args, SimOptions::default()).await;
    h.sim.inject(Endpoint::BalanceEx, fault, times);
    // The first refresh runs at start-up; wait until it has finished.
    for _ in 0..300 {
        let body = h.metrics().await;
        let page = h.get("/", &[]).await.2;
        if page.contains("last success: never · last error: none") {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        return (h, body);
    }
    panic!("the first refresh never finished");
}

#[tokio::test(start_paused = true)]
async fn every_reason_is_reached_by_an_injected_error() {
    let cases: Vec<(Fault, &str, Vec<&str>)> = vec![
        (
            Fault::KrakenError("EAPI:Invalid key".into()),
            "invalid_key",
            vec![],
        ),
        (
            Fault::KrakenError("EAPI:Invalid signature".into()),
            "invalid_signature",
            vec![],
        ),
        (
            Fault::KrakenError("EAPI:Invalid nonce".into()),
            "invalid_nonce",
            vec![],
        ),
        (
            Fault::KrakenError("EGeneral:Permission denied".into()),
            "permission_denied",
            vec!["--kraken.balance-endpoint", "balance-ex"],
        ),
        (
            Fault::KrakenError("EAPI:Rate limit exceeded".into()),
            "rate_limited",
            vec![],
        ),
        (
            Fault::KrakenError("EService:Throttled:1".into()),
            "rate_limited",
            vec![],
        ),
        (
            Fault::KrakenError("EGeneral:Temporary lockout".into()),
            "lockout",
            vec![],
        ),
        (
            Fault::KrakenError("EService:Unavailable".into()),
            "unavailable",
            vec![],
        ),
        (
            Fault::Status(502, "<html>502 Bad Gateway</html>".into()),
            "unavailable",
            vec![],
        ),
        (
            Fault::Status(
                520,
                include_str!("../fixtures/kraken/cloudflare_520.html").into(),
            ),
            "unavailable",
            vec![],
        ),
        (Fault::Hang, "timeout", vec!["--kraken.timeout", "300ms"]),
        (Fault::Status(403, "Forbidden".into()), "http", vec![]),
        (
            Fault::RawBody(b"not json at all".to_vec()),
            "decode",
            vec![],
        ),
        (
            Fault::RawBody(include_bytes!("../fixtures/kraken/truncated.json").to_vec()),
            "decode",
            vec![],
        ),
        (
            Fault::KrakenError("EGeneral:Invalid arguments".into()),
            "other",
            vec!["--kraken.balance-endpoint", "balance-ex"],
        ),
        (Fault::NoResult, "no_result", vec![]),
        (Fault::ResultJson("null".into()), "no_result", vec![]),
    ];
    for (fault, reason, args) in cases {
        let label = format!("{fault:?}");
        let (h, body) = exposition_after(fault, None, &args).await;
        let errors = sample(
            &body,
            "kraken_request_errors_total",
            &format!(r#"account="default",endpoint="BalanceEx",reason="{reason}""#),
        );
        assert!(
            errors.is_some_and(|n| n >= 1.0),
            "{label}: {reason} not counted\n{body}"
        );
        for other in kraken::Reason::ALL {
            if other.as_str() != reason {
                assert_eq!(
                    sample(
                        &body,
                        "kraken_request_errors_total",
                        &format!(
                            r#"account="default",endpoint="BalanceEx",reason="{}""#,
                            other.as_str()
                        ),
                    ),
                    Some(0.0),
                    "{label}: counted as {} too",
                    other.as_str()
                );
            }
        }
        assert_eq!(
            sample(&body, "kraken_up", r#"account="default""#),
            Some(0.0),
            "{label}"
        );
        h.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_repeated_invalid_nonce_is_not_retried_in_a_loop() {
    let (h, body) =
        exposition_after(Fault::KrakenError("EAPI:Invalid nonce".into()), None, &[]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        sample(&body, "kraken_up", r#"account="default""#),
        Some(0.0)
    );
    assert_eq!(
        h.sim.calls(Endpoint::BalanceEx),
        2,
        "one call and one retry, then backoff"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn refused_balance_ex_falls_back_to_balance_without_holds() {
    let h = Harness::start(
        Clock::Paused,
        &[],
        SimOptions {
            balance_ex_enabled: false,
            ..SimOptions::default()
        },
    )
    .await;
    h.wait_ready().await;
    let body = h.metrics().await;
    assert_eq!(
        sample(&body, "kraken_up", r#"account="default""#),
        Some(1.0)
    );
    assert!(body.contains("kraken_balance{"), "{body}");
    assert!(
        !body.contains("kraken_balance_hold{"),
        "Balance reports no holds\n{body}"
    );
    assert_eq!(
        sample(
            &body,
            "kraken_requests_total",
            r#"account="default",endpoint="Balance""#
        ),
        Some(1.0)
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn forcing_balance_ex_reports_the_refusal() {
    let h = Harness::start(
        Clock::Paused,
        &["--kraken.balance-endpoint", "balance-ex"],
        SimOptions {
            balance_ex_enabled: false,
            ..SimOptions::default()
        },
    )
    .await;
    let mut body = String::new();
    for _ in 0..200 {
        body = h.metrics().await;
        if body.contains(r#"endpoint="BalanceEx",reason="other"} 1"#) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        sample(&body, "kraken_up", r#"account="default""#),
        Some(0.0)
    );
    // A Kraken that does not offer BalanceEx answers EAPI:Feature disabled.
    assert!(
        body.contains(r#"endpoint="BalanceEx",reason="other"} 1"#),
        "{body}"
    );
    assert_eq!(
        h.sim.calls(Endpoint::Balance),
        0,
        "forced BalanceEx never falls back"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn forcing_balance_uses_balance_only() {
    let h = Harness::start(
        Clock::Paused,
        &["--kraken.balance-endpoint", "balance"],
        SimOptions::default(),
    )
    .await;
    h.wait_ready().await;
    assert_eq!(h.sim.calls(Endpoint::BalanceEx), 0);
    assert_eq!(h.sim.calls(Endpoint::Balance), 1);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_empty_account_is_up_with_no_balances() {
    let (h, body) = exposition_after(Fault::ResultJson("{}".into()), None, &[]).await;
    assert_eq!(
        sample(&body, "kraken_up", r#"account="default""#),
        Some(1.0),
        "{body}"
    );
    assert!(!body.contains("kraken_balance{"), "{body}");
    h.stop().await;
}

/// Nothing lost under faults: an answer without an error and without balances (no result,
/// `null`, an array, a string, a number) is never an empty account. The account reads down, the
/// call is counted under `no_result`, and the last good balances stay, so no asset with a
/// minimum reads 0.
#[tokio::test(start_paused = true)]
async fn an_answer_without_balances_keeps_the_last_good_ones_and_reads_down() {
    let shapes = std::iter::once(Fault::NoResult)
        .chain(kraken::sim::MALFORMED_RESULTS.map(|result| Fault::ResultJson(result.into())));
    for fault in shapes {
        let label = format!("{fault:?}");
        let h = Harness::start(
            Clock::Paused,
            &[
                "--refresh.min-interval",
                "100ms",
                "--balance.min",
                "XBT=0.5",
            ],
            SimOptions::default(),
        )
        .await;
        h.wait_ready().await;
        h.sim.inject(Endpoint::BalanceEx, fault, None);
        tokio::time::sleep(Duration::from_millis(150)).await;
        let body = h.metrics().await;
        assert_eq!(
            sample(&body, "kraken_up", r#"account="default""#),
            Some(0.0),
            "{label}\n{body}"
        );
        assert!(
            sample(
                &body,
                "kraken_request_errors_total",
                r#"account="default",endpoint="BalanceEx",reason="no_result""#
            )
            .is_some_and(|n| n >= 1.0),
            "{label}\n{body}"
        );
        assert_eq!(
            sample(
                &body,
                "kraken_balance",
                r#"account="default",asset="XBT",code="XXBT""#
            ),
            Some(1.2345678901),
            "{label}: the last good balance is kept"
        );
        assert_eq!(
            h.sim.calls(Endpoint::Balance),
            0,
            "{label}: not a reason to switch endpoints"
        );
        h.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn background_mode_refreshes_on_its_own_and_scrapes_never_call() {
    let h = Harness::start(
        Clock::Paused,
        &["--refresh.interval", "200ms"],
        SimOptions::default(),
    )
    .await;
    h.wait_ready().await;
    let first = h.sim.calls(Endpoint::BalanceEx);
    for _ in 0..20 {
        h.metrics().await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let later = h.sim.calls(Endpoint::BalanceEx);
    assert!(
        later > first,
        "the background loop refreshed ({first} → {later})"
    );
    assert!(
        later - first <= 5,
        "scrapes must not add calls: {first} → {later}"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn background_mode_reuses_the_body_until_something_changes() {
    let h = Harness::start(
        Clock::Paused,
        &["--refresh.interval", "300ms", "--audit.disabled"],
        SimOptions::default(),
    )
    .await;
    h.wait_ready().await;
    // Two scrapes with no refresh between them: the same bytes.
    let mut same = false;
    for _ in 0..20 {
        let (a, b) = (h.metrics().await, h.metrics().await);
        if a == b {
            same = true;
            break;
        }
    }
    assert!(same, "an unchanged exposition is served as it was");
    // A change upstream shows at the next refresh, not a cache lifetime later.
    h.sim.set_balances(vec![("XXBT".into(), 7.5, 0.0)]);
    let started = Instant::now();
    loop {
        let body = h.metrics().await;
        if sample(
            &body,
            "kraken_balance",
            r#"account="default",asset="XBT",code="XXBT""#,
        ) == Some(7.5)
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the new balance never showed:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn asset_names_are_fetched_once_not_per_scrape() {
    let h = Harness::start(
        Clock::Paused,
        &["--refresh.min-interval", "50ms"],
        SimOptions::default(),
    )
    .await;
    h.wait_ready().await;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(60)).await;
        h.metrics().await;
    }
    assert!(h.sim.calls(Endpoint::BalanceEx) >= 5);
    // Once: one request per asset class (currencies, tokenized assets).
    assert_eq!(h.sim.calls(Endpoint::Assets), 2);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn http_routes_health_readiness_and_errors() {
    let h = Harness::start(Clock::Paused, &[], SimOptions::default()).await;
    h.sim.inject(Endpoint::BalanceEx, Fault::Hang, None);
    let (status, _, body) = h.get("/-/ready", &[]).await;
    assert_eq!(status, 503, "not ready before the first success: {body}");
    assert_eq!(h.get("/-/healthy", &[]).await.0, 200);
    assert_eq!(h.get("/nope", &[]).await.0, 404);
    let response = client().post(h.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET, HEAD");
    let head = client().head(h.url("/-/healthy")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn landing_page_shows_status_and_balances() {
    let h = Harness::start_with_balances(
        Clock::Paused,
        &[],
        SimOptions::default(),
        Some(fixed_balances()),
    )
    .await;
    h.wait_ready().await;
    let (status, content_type, page) = h.get("/", &[]).await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/html"));
    assert!(page.contains(env!("CARGO_PKG_VERSION")));
    assert!(page.contains("href=\"/metrics\""));
    assert!(page.contains("Account default"));
    assert!(page.contains(">up<"));
    assert!(page.contains("<td>XBT</td><td>XXBT</td>"), "{page}");
    assert!(page.contains("1.2345678901"));
    assert!(!page.contains("Demo mode"));
    h.stop().await;
}

/// A scraper that accepts gzip (Prometheus always does) gets the exposition compressed, and it
/// decompresses to the same families; one that does not gets plain text.
#[tokio::test(start_paused = true)]
async fn exposition_is_gzip_compressed_when_the_scraper_accepts_it() {
    use std::io::Read as _;
    let h = Harness::start_with_balances(
        Clock::Paused,
        &[],
        SimOptions::default(),
        Some(fixed_balances()),
    )
    .await;
    h.wait_ready().await;
    let response = client()
        .get(h.url("/metrics"))
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-encoding"], "gzip");
    assert_eq!(headers["vary"], "Accept-Encoding");
    assert_eq!(
        headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let compressed = response.bytes().await.unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_string(&mut text)
        .expect("a valid gzip stream");
    assert!(
        compressed.len() * 2 < text.len(),
        "{} vs {}",
        compressed.len(),
        text.len()
    );
    assert!(text.contains("kraken_balance{"), "{text}");

    let refused = client()
        .get(h.url("/metrics"))
        .header("Accept-Encoding", "gzip;q=0, identity")
        .send()
        .await
        .unwrap();
    assert!(refused.headers().get("content-encoding").is_none());
    let plain = refused.text().await.unwrap();
    let families = |body: &str| {
        body.lines()
            .filter(|l| l.starts_with("# TYPE"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(families(&plain), families(&text));
    h.stop().await;
}

/// `/metrics` carries the exporter's own `process_*` families with live values; `/probe`, whose
/// series belong to one account, does not.
#[tokio::test]
async fn process_metrics_describe_the_running_exporter_on_metrics_only() {
    let h = Harness::start_with_balances(
        Clock::Real,
        &[],
        SimOptions::default(),
        Some(fixed_balances()),
    )
    .await;
    h.wait_ready().await;
    let body = h.metrics().await;
    let resident = sample(&body, "process_resident_memory_bytes", "").expect("resident memory");
    assert!(resident > 1_000_000.0, "{resident}");
    let open_fds = sample(&body, "process_open_fds", "").expect("open fds");
    assert!(open_fds >= 3.0, "{open_fds}");
    let started = sample(&body, "process_start_time_seconds", "").expect("start time");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        started <= now + 1.0 && started > now - 86_400.0,
        "{started} vs {now}"
    );
    assert!(
        body.contains("# TYPE process_cpu_seconds_total counter\n"),
        "{body}"
    );
    let (_, _, probe) = h.get("/probe?account=default", &[]).await;
    assert!(!probe.contains("process_"), "{probe}");
    h.stop().await;
}
