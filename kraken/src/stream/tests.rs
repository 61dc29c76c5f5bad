//! The stream client against the simulated Kraken over real loopback sockets: subscribe, the
//! snapshot, updates after posted transactions, heartbeats, pings, refusals and faults.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::client::{BalanceEndpoint, ClientOptions, KrakenClient, http_client};
use crate::nonce::{NonceSource, SystemClock};
use crate::observer::{CallObserver, CountingObserver};
use crate::parse::SystemStatus;
use crate::sim::{SimKraken, SimLedgerEntry, SimOptions};

const TIMEOUT: Duration = Duration::from_secs(5);

async fn start() -> SimKraken {
    SimKraken::start(SimOptions {
        permissions: vec!["query-funds".into(), "create-ws-token".into()],
        ..SimOptions::default()
    })
    .await
    .expect("sim starts")
}

fn client(sim: &SimKraken) -> KrakenClient {
    KrakenClient::new(
        http_client(TIMEOUT).unwrap(),
        ClientOptions {
            api_url: sim.url(),
            timeout: TIMEOUT,
            balance_endpoint: BalanceEndpoint::BalanceEx,
        },
        sim.credentials(),
        Arc::new(NonceSource::new(Box::new(SystemClock))),
        "main".into(),
        Arc::new(CountingObserver::default()) as Arc<dyn CallObserver>,
    )
}

/// A subscribed stream with a fresh token from the sim.
async fn subscribed(sim: &SimKraken) -> BalanceStream {
    let token = client(sim).websocket_token().await.unwrap();
    BalanceStream::connect(&sim.ws_url(), &token.token, TIMEOUT)
        .await
        .expect("subscribes")
}

/// The next event that is not a heartbeat.
async fn next_non_heartbeat(stream: &mut BalanceStream) -> StreamEvent {
    loop {
        match stream.next_event().await.unwrap() {
            StreamEvent::Heartbeat => continue,
            event => return event,
        }
    }
}

/// Skips the `status` message and returns the snapshot.
async fn snapshot(stream: &mut BalanceStream) -> (u64, Vec<StreamBalance>) {
    assert!(matches!(
        stream.next_event().await.unwrap(),
        StreamEvent::Status {
            system: SystemStatus::Online,
            ..
        }
    ));
    match next_non_heartbeat(stream).await {
        StreamEvent::Snapshot { sequence, balances } => (sequence, balances),
        other => panic!("expected the snapshot, got {other:?}"),
    }
}

/// Waits for `condition` on the sim, polling with a generous limit.
async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    for _ in 0..500 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("gave up waiting until {what}");
}

#[tokio::test]
async fn the_snapshot_names_assets_as_v2_does_with_earn_wallets() {
    let sim = start().await;
    sim.set_balances(vec![
        ("XXBT".into(), 1.5, 0.1),
        ("XBT.F".into(), 0.5, 0.0),
        ("ZUSD".into(), 100.0, 0.0),
        ("XXDG".into(), 42.0, 0.0),
        ("ETH2.S".into(), 3.2, 0.0),
    ]);
    let mut stream = subscribed(&sim).await;
    let (sequence, balances) = snapshot(&mut stream).await;
    assert_eq!(sequence, 1);
    let names: Vec<&str> = balances.iter().map(|b| b.asset.as_str()).collect();
    assert_eq!(names, ["BTC", "USD", "DOGE", "ETH"]);
    assert_eq!(balances[0].balance, 2.0);
    assert_eq!(balances[0].wallets[1].kind, "earn");
    assert_eq!(balances[0].wallets[1].id, "flex");
    assert_eq!(balances[3].wallets[0].id, "bonded");
    assert_eq!(rest_asset_name(&balances[2].asset), "XDG");
    assert_eq!(sim.stream_connections(), 1);
    assert_eq!(sim.stream_subscriptions(), 1);
    // The sim pinged after the ack; the client answered while reading.
    wait_until("the client answered the sim's ping", || {
        sim.stream_pongs() == 1
    })
    .await;
}

#[tokio::test]
async fn a_posted_transaction_updates_the_stream_and_balance_ex() {
    let sim = start().await;
    sim.set_balances(vec![("XXBT".into(), 1.0, 0.0), ("ZUSD".into(), 100.0, 0.0)]);
    let rest = client(&sim);
    let mut stream = subscribed(&sim).await;
    snapshot(&mut stream).await;

    sim.post_ledger(SimLedgerEntry::deposit("XXBT", 0.25))
        .unwrap();
    let StreamEvent::Update { sequence, entries } = next_non_heartbeat(&mut stream).await else {
        panic!("expected an update");
    };
    assert_eq!(sequence, 2);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].kind, "deposit");
    assert_eq!(entries[0].asset, "BTC");
    assert_eq!(entries[0].amount, 0.25);
    assert_eq!(entries[0].balance, 1.25);
    let balances = rest.balances().await.unwrap().balances;
    let xbt = balances.iter().find(|b| b.code == "XXBT").unwrap();
    assert_eq!(xbt.total, 1.25);

    sim.post_transaction(vec![
        SimLedgerEntry::trade("XXBT", -0.25, 0.0),
        SimLedgerEntry::trade("ZUSD", 16_000.0, 40.0),
    ])
    .unwrap();
    let StreamEvent::Update { sequence, entries } = next_non_heartbeat(&mut stream).await else {
        panic!("expected an update");
    };
    assert_eq!(sequence, 3);
    assert_eq!(entries[0].ref_id, entries[1].ref_id, "one transaction");
    assert_eq!(entries[1].asset, "USD");
    assert_eq!(entries[1].fee, 40.0);
    assert_eq!(entries[1].balance, 16_060.0);

    let refused = sim.post_ledger(SimLedgerEntry::withdrawal("ZUSD", 20_000.0, 5.0));
    assert_eq!(refused.unwrap_err().asset, "ZUSD");
    let balances = rest.balances().await.unwrap().balances;
    let usd = balances.iter().find(|b| b.code == "ZUSD").unwrap();
    assert_eq!(usd.total, 16_060.0, "a refused transaction changes nothing");
}

#[tokio::test]
async fn heartbeats_come_while_subscribed_and_can_be_held_back() {
    // Real time: heartbeats come every second, well within the 3 s this stream waits.
    const WAIT: Duration = Duration::from_secs(3);
    let sim = start().await;
    let token = client(&sim).websocket_token().await.unwrap();
    let mut stream = BalanceStream::connect(&sim.ws_url(), &token.token, WAIT)
        .await
        .unwrap();
    snapshot(&mut stream).await;
    assert_eq!(stream.next_event().await.unwrap(), StreamEvent::Heartbeat);
    assert_eq!(stream.next_event().await.unwrap(), StreamEvent::Heartbeat);

    sim.pause_heartbeats(true);
    // A heartbeat sent just before the pause may still be on its way; none comes after it.
    let mut late = 0;
    let err = loop {
        match stream.next_event().await {
            Ok(StreamEvent::Heartbeat) if late < 2 => late += 1,
            Ok(other) => panic!("nothing more should come, got {other:?}"),
            Err(err) => break err,
        }
    };
    assert_eq!(
        err,
        StreamError::Timeout(WAIT),
        "a silent connection times out"
    );
    sim.pause_heartbeats(false);
}

#[tokio::test]
async fn a_ping_is_answered_with_a_pong() {
    let sim = start().await;
    let mut stream = subscribed(&sim).await;
    snapshot(&mut stream).await;
    stream.ping().await.unwrap();
    assert_eq!(next_non_heartbeat(&mut stream).await, StreamEvent::Pong);
}

#[tokio::test]
async fn an_unknown_token_is_refused_with_kraken_s_error_and_never_echoed() {
    let sim = start().await;
    let token = SecretText::new("NOTATOKENOFTHESIM".into());
    let err = BalanceStream::connect(&sim.ws_url(), &token, TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(err, StreamError::Refused("ESession:Invalid session".into()));
    assert!(!format!("{err} {err:?}").contains("NOTATOKEN"));
    assert_eq!(sim.stream_connections(), 1);
    assert_eq!(sim.stream_subscriptions(), 0);
}

#[tokio::test]
async fn a_token_expires_after_900_seconds_unless_a_subscription_used_it() {
    let sim = start().await;
    let rest = client(&sim);
    let unused = rest.websocket_token().await.unwrap();
    let used = rest.websocket_token().await.unwrap();
    let first = BalanceStream::connect(&sim.ws_url(), &used.token, TIMEOUT)
        .await
        .unwrap();
    first.close().await.unwrap();
    sim.age_websocket_tokens(Duration::from_secs(899));
    let fresh_enough = rest.websocket_token().await.unwrap();
    sim.age_websocket_tokens(Duration::from_secs(899));
    BalanceStream::connect(&sim.ws_url(), &fresh_enough.token, TIMEOUT)
        .await
        .expect("899 s after issue, a token is still accepted");
    sim.age_websocket_tokens(Duration::from_secs(2));
    let err = BalanceStream::connect(&sim.ws_url(), &unused.token, TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(err, StreamError::Refused("ESession:Invalid session".into()));
    BalanceStream::connect(&sim.ws_url(), &used.token, TIMEOUT)
        .await
        .expect("a used token stays valid");
}

#[tokio::test]
async fn a_dropped_connection_is_a_closed_error_and_a_new_one_gets_a_new_snapshot() {
    let sim = start().await;
    let mut stream = subscribed(&sim).await;
    snapshot(&mut stream).await;
    sim.drop_stream_connections();
    let err = loop {
        match stream.next_event().await {
            Ok(StreamEvent::Heartbeat) => continue,
            Ok(other) => panic!("expected the end, got {other:?}"),
            Err(err) => break err,
        }
    };
    assert!(matches!(err, StreamError::Closed(_)), "{err:?}");
    assert!(matches!(
        stream.next_event().await,
        Err(StreamError::Closed(_))
    ));
    assert!(stream.ping().await.is_err());

    sim.post_ledger(SimLedgerEntry::deposit("ZUSD", 10.0))
        .unwrap();
    let mut again = subscribed(&sim).await;
    let (sequence, balances) = snapshot(&mut again).await;
    assert_eq!(sequence, 1);
    let usd = balances.iter().find(|b| b.asset == "USD").unwrap();
    assert_eq!(usd.wallets[0].id, "main");
    assert_eq!(
        usd.wallets[0].balance, 25_010.123_4,
        "the deposit made while away"
    );
    assert_eq!(usd.wallets[1].id, "flexible", "USD.M");
    assert_eq!(sim.stream_connections(), 2);
}

#[tokio::test]
async fn a_skipped_sequence_shows_as_a_jump() {
    let sim = start().await;
    let mut stream = subscribed(&sim).await;
    snapshot(&mut stream).await;
    sim.skip_stream_sequence();
    sim.post_ledger(SimLedgerEntry::deposit("ZUSD", 1.0))
        .unwrap();
    sim.post_ledger(SimLedgerEntry::deposit("ZUSD", 2.0))
        .unwrap();
    let mut sequences = Vec::new();
    while sequences.len() < 2 {
        if let StreamEvent::Update { sequence, .. } = next_non_heartbeat(&mut stream).await {
            sequences.push(sequence);
        }
    }
    assert_eq!(
        sequences,
        [3, 4],
        "the first update after the snapshot skips 2"
    );
}

#[tokio::test]
async fn a_status_change_reaches_the_stream() {
    let sim = start().await;
    let mut stream = subscribed(&sim).await;
    snapshot(&mut stream).await;
    sim.set_system_status(SystemStatus::Maintenance);
    assert!(matches!(
        next_non_heartbeat(&mut stream).await,
        StreamEvent::Status {
            system: SystemStatus::Maintenance,
            ..
        }
    ));
}

#[tokio::test]
async fn connecting_where_nothing_listens_or_to_a_wrong_path_is_a_connect_error() {
    let sim = start().await;
    let token = SecretText::new("T".into());
    let wrong_path = sim.ws_url().replace("/v2", "/v1");
    let err = BalanceStream::connect(&wrong_path, &token, TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StreamError::Connect("the server answered HTTP 404 instead of a WebSocket".into())
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/v2", closed.local_addr().unwrap());
    drop(closed);
    let err = BalanceStream::connect(&url, &token, TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(err, StreamError::Connect(_)), "{err:?}");
    let err = BalanceStream::connect("not a url", &token, TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(err, StreamError::Connect(_)), "{err:?}");
}

#[tokio::test]
async fn a_wss_url_speaks_tls_and_a_server_without_it_is_a_tls_error() {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "wss://localhost:{}/v2",
        listener.local_addr().unwrap().port()
    );
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let _ = socket.write_all(b"HTTP/1.1 200 OK\r\n\r\nnot TLS").await;
    });
    let token = SecretText::new("TOKENNEVERSENT".into());
    let err = BalanceStream::connect(&url, &token, TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(err, StreamError::Tls(_)), "{err:?}");
    assert!(!err.to_string().contains("TOKENNEVERSENT"));
    server.await.unwrap();
}
