//! Money in motion: the WebSocket balances stream against the simulated Kraken. A transaction
//! is on `/metrics` within seconds and counted; a lost connection, a skipped sequence number
//! and an asset the Assets list does not know lose nothing and invent nothing; the stream
//! slows the periodic poll down; a key without the WebSocket permission polls as before.

use std::time::Duration;

use kraken::Endpoint;
use kraken::sim::{SimKraken, SimLedgerEntry, SimOptions};
use tokio::time::Instant;

use crate::{Clock, Harness, sample, wait_until};

/// A simulated Kraken whose key may stream.
async fn streaming_sim() -> SimKraken {
    SimKraken::start(SimOptions {
        permissions: ["query-funds", "create-ws-token"]
            .map(str::to_owned)
            .to_vec(),
        ..SimOptions::default()
    })
    .await
    .unwrap()
}

/// The exporter on `sim`, streaming from its WebSocket side, with `args` added.
async fn streaming_exporter(sim: SimKraken, args: &[&str]) -> Harness {
    let ws_url = sim.ws_url();
    let mut argv = vec!["--kraken.ws-url", ws_url.as_str(), "--funding.disabled"];
    argv.extend_from_slice(args);
    let h = Harness::serve(Clock::Paused, sim, &argv).await;
    h.wait_ready().await;
    h.metrics_when(Duration::from_secs(30), |body| {
        sample(body, "kraken_stream_up", r#"account="default""#) == Some(1.0)
    })
    .await;
    h
}

/// `kraken_balance` of XBT.
fn xbt(body: &str) -> Option<f64> {
    sample(
        body,
        "kraken_balance",
        r#"account="default",asset="XBT",code="XXBT""#,
    )
}

#[tokio::test(start_paused = true)]
async fn a_deposit_is_on_metrics_within_two_seconds_and_counted_once() {
    let h = streaming_exporter(streaming_sim().await, &[]).await;
    let before = xbt(&h.metrics().await).unwrap();
    let balance_calls = h.sim.calls(Endpoint::BalanceEx);
    h.sim
        .post_ledger(SimLedgerEntry::deposit("XXBT", 0.25))
        .unwrap();
    let posted = Instant::now();
    let body = h
        .metrics_when(Duration::from_secs(10), |body| {
            xbt(body).is_some_and(|now| (now - before - 0.25).abs() < 1e-9)
        })
        .await;
    assert!(
        posted.elapsed() <= Duration::from_secs(2),
        "the deposit took {:?} to reach /metrics",
        posted.elapsed()
    );
    assert!(
        h.sim.calls(Endpoint::BalanceEx) > balance_calls,
        "the new balance came from a REST refresh"
    );
    let deposit = r#"account="default",asset="XBT",type="deposit""#;
    assert_eq!(
        sample(&body, "kraken_ledger_entries_total", deposit),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &body,
            "kraken_ledger_amount_total",
            r#"account="default",asset="XBT",type="deposit",direction="in""#
        ),
        Some(0.25)
    );
    // Scrapes after it count nothing again.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let later = h.metrics().await;
    assert_eq!(
        sample(&later, "kraken_ledger_entries_total", deposit),
        Some(1.0)
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_lost_connection_a_skipped_sequence_and_an_unknown_asset_lose_and_invent_nothing() {
    let h = streaming_exporter(streaming_sim().await, &[]).await;
    let entries = |body: &str, asset: &str, kind: &str| {
        sample(
            body,
            "kraken_ledger_entries_total",
            &format!(r#"account="default",asset="{asset}",type="{kind}""#),
        )
    };

    // The connection is lost; a withdrawal happens while it is down.
    h.sim.drop_stream_connections();
    h.sim
        .post_ledger(SimLedgerEntry::withdrawal("XXBT", 0.1, 0.0001))
        .unwrap();
    let expected = h.sim.balance("XXBT");
    let body = h
        .metrics_when(Duration::from_secs(60), |body| {
            sample(
                body,
                "kraken_stream_reconnects_total",
                r#"account="default""#,
            ) == Some(1.0)
                && sample(body, "kraken_stream_up", r#"account="default""#) == Some(1.0)
                && xbt(body).is_some_and(|b| (b - expected).abs() < 1e-9)
        })
        .await;
    assert_eq!(
        entries(&body, "XBT", "withdrawal"),
        None,
        "an entry made while the stream was down was invented"
    );

    // A skipped sequence number: the entry that arrives is counted, and REST has the balance.
    h.sim.skip_stream_sequence();
    h.sim
        .post_ledger(SimLedgerEntry::deposit("XXBT", 0.5))
        .unwrap();
    let expected = h.sim.balance("XXBT");
    let body = h
        .metrics_when(Duration::from_secs(10), |body| {
            entries(body, "XBT", "deposit") == Some(1.0)
                && xbt(body).is_some_and(|b| (b - expected).abs() < 1e-9)
        })
        .await;

    // An asset Kraken's Assets list does not know keeps Kraken's own name: counted, not guessed.
    h.sim
        .post_ledger(SimLedgerEntry::deposit("NEWCOIN", 7.0))
        .unwrap();
    let body2 = h
        .metrics_when(Duration::from_secs(10), |body| {
            entries(body, "NEWCOIN", "deposit") == Some(1.0)
        })
        .await;
    assert_eq!(entries(&body2, "XBT", "deposit"), Some(1.0), "{body}");
    assert_eq!(
        sample(
            &body2,
            "kraken_ledger_amount_total",
            r#"account="default",asset="NEWCOIN",type="deposit",direction="in""#
        ),
        Some(7.0)
    );
    let counted: f64 = body2
        .lines()
        .filter(|line| line.starts_with("kraken_ledger_entries_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(counted, 2.0, "only the two entries sent while up:\n{body2}");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_outflow_limit_exists_with_a_zero_withdrawal_series_before_any_withdrawal() {
    let h = streaming_exporter(streaming_sim().await, &["--outflow.max", "XBT=0"]).await;
    let body = h.metrics().await;
    assert_eq!(
        sample(
            &body,
            "kraken_outflow_max",
            r#"account="default",asset="XBT""#
        ),
        Some(0.0)
    );
    let out = r#"account="default",asset="XBT",type="withdrawal",direction="out""#;
    assert_eq!(sample(&body, "kraken_ledger_amount_total", out), Some(0.0));
    h.sim
        .post_ledger(SimLedgerEntry::withdrawal("XXBT", 0.2, 0.0))
        .unwrap();
    let body = h
        .metrics_when(Duration::from_secs(10), |body| {
            sample(body, "kraken_ledger_amount_total", out) == Some(0.2)
        })
        .await;
    assert_eq!(
        body.matches(&format!("kraken_ledger_amount_total{{{out}}}"))
            .count(),
        1,
        "the counted series and the zero one must not both be written"
    );
    h.stop().await;
}

/// REST balance calls while Prometheus scrapes every 15 s for `minutes`.
async fn balance_calls_over(h: &Harness, minutes: u64) -> u64 {
    let start = h.sim.calls(Endpoint::BalanceEx);
    for _ in 0..minutes * 4 {
        tokio::time::sleep(Duration::from_secs(15)).await;
        h.metrics().await;
    }
    h.sim.calls(Endpoint::BalanceEx) - start
}

#[tokio::test(start_paused = true)]
async fn the_stream_slows_the_poll_down_and_a_key_without_the_permission_polls() {
    let streaming = streaming_exporter(streaming_sim().await, &[]).await;
    let streamed = balance_calls_over(&streaming, 5).await;
    streaming.stop().await;

    // A key without the WebSocket permission: the audit says so, no token is asked for.
    let polling = Harness::start(
        Clock::Paused,
        &["--funding.disabled"],
        SimOptions::default(),
    )
    .await;
    polling.wait_ready().await;
    let polled = balance_calls_over(&polling, 5).await;
    let body = polling.metrics().await;
    assert_eq!(
        sample(&body, "kraken_stream_up", r#"account="default""#),
        None
    );
    assert_eq!(polling.sim.calls(Endpoint::GetWebSocketsToken), 0);
    polling.stop().await;

    // Every scrape refreshes when polling (15 s apart, min interval 10 s); once a minute with
    // the stream up.
    assert_eq!(polled, 20, "polling mode");
    assert!(
        streamed <= 6,
        "{streamed} balance calls in 5 minutes with the stream up, {polled} polling"
    );
}

#[tokio::test(start_paused = true)]
async fn the_token_is_asked_with_the_key_never_shown_and_the_status_page_shows_the_stream() {
    let h = streaming_exporter(streaming_sim().await, &[]).await;
    assert!(h.sim.calls(Endpoint::GetWebSocketsToken) >= 1);
    let body = h.metrics().await;
    let token_requests = sample(
        &body,
        "kraken_requests_total",
        r#"account="default",endpoint="GetWebSocketsToken""#,
    );
    assert!(token_requests.is_some_and(|n| n >= 1.0), "{body}");
    for token in h.sim.issued_websocket_tokens() {
        assert!(!body.contains(&token), "a WebSocket token is in /metrics");
    }
    wait_until(
        "the status page to show the stream",
        Duration::from_secs(5),
        async || {
            let (status, _, page) = h.get("/", &[]).await;
            status == 200 && page.contains("Balances stream: <span class=\"up\">up</span>")
        },
    )
    .await;
    let (_, _, page) = h.get("/", &[]).await;
    for token in h.sim.issued_websocket_tokens() {
        assert!(
            !page.contains(&token),
            "a WebSocket token is on the status page"
        );
    }
    h.stop().await;
}
