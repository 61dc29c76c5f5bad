//! Earn allocations and key hygiene: what Earn/Allocations and GetApiKeyInfo add to the
//! exposition and to `check`, and that a refused or failing Earn call breaks nothing.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::Parser as _;
use kraken::Endpoint;
use kraken::sim::{Fault, SimKeyInfo, SimKraken, SimOptions};
use kraken_exporter::app::SharedEnv;
use kraken_exporter::cli::Cli;

use crate::{Clock, Harness, sample};

/// How long the tests below wait for the exposition to show something, in tokio time.
const LIMIT: Duration = Duration::from_secs(10);

fn requests(body: &str, endpoint: &str) -> f64 {
    let labels = format!("account=\"default\",endpoint=\"{endpoint}\"");
    sample(body, "kraken_requests_total", &labels).unwrap_or(0.0)
}

#[tokio::test(start_paused = true)]
async fn earn_allocations_are_exported_by_state_on_their_own_slower_interval() {
    let h = Harness::start(
        Clock::Paused,
        &["--refresh.min-interval", "200ms", "--audit.disabled"],
        SimOptions::default(),
    )
    .await;
    h.wait_ready().await;
    // Three balance refreshes, each a task of its own that ends after the Earn step.
    let body = h
        .metrics_when(LIMIT, |body| requests(body, "BalanceEx") >= 3.0)
        .await;
    let earn = |asset: &str, state: &str| {
        let labels = format!("account=\"default\",asset=\"{asset}\",state=\"{state}\"");
        sample(&body, "kraken_earn_allocation", &labels)
    };
    // The simulated answer models tests/fixtures/kraken/earn_allocations_states.json.
    assert_eq!(earn("DOT", "unbonding"), Some(30.0), "{body}");
    assert_eq!(earn("DOT", "earning"), Some(100.0), "{body}");
    assert_eq!(earn("DOT", "bonding"), Some(0.0), "{body}");
    assert_eq!(earn("DOT", "exit_queue"), Some(0.0), "{body}");
    assert_eq!(earn("ETH", "bonding"), Some(0.5), "{body}");
    assert_eq!(earn("ETH", "exit_queue"), Some(0.25), "{body}");
    let eth_earning = earn("ETH", "earning").unwrap();
    assert!((eth_earning - 0.4765).abs() < 1e-9, "{body}");
    let next = |asset: &str| {
        let labels = format!("account=\"default\",asset=\"{asset}\"");
        sample(
            &body,
            "kraken_earn_next_unbonding_timestamp_seconds",
            &labels,
        )
    };
    // DOT's earlier of two unbonding expiries; ETH's exit queue; nothing unbonds in USDC.
    assert_eq!(next("DOT"), Some(1_796_716_800.0), "{body}");
    assert_eq!(next("ETH"), Some(1_798_624_800.0), "{body}");
    assert_eq!(next("USDC"), None, "{body}");
    // Fetched once at the first refresh; the 10m default interval has not passed since.
    assert_eq!(h.sim.calls(Endpoint::EarnAllocations), 1);
    assert_eq!(requests(&body, "Earn/Allocations"), 1.0, "{body}");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_refused_earn_call_is_counted_and_breaks_neither_balances_nor_metrics() {
    let sim = SimKraken::start(SimOptions::default()).await.unwrap();
    sim.inject(
        Endpoint::EarnAllocations,
        Fault::KrakenError("EGeneral:Permission denied".into()),
        None,
    );
    let h = Harness::serve(Clock::Paused, sim, &["--audit.disabled"]).await;
    h.wait_ready().await;
    let body = h
        .metrics_when(LIMIT, |body| requests(body, "Earn/Allocations") >= 1.0)
        .await;
    let labels = "account=\"default\",endpoint=\"Earn/Allocations\",reason=\"permission_denied\"";
    assert_eq!(
        sample(&body, "kraken_request_errors_total", labels),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "kraken_up", "account=\"default\""),
        Some(1.0),
        "{body}"
    );
    assert!(body.contains("kraken_balance{"), "{body}");
    assert!(!body.contains("kraken_earn_allocation{"), "{body}");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn earn_disabled_makes_no_call_and_creates_no_counter() {
    let h = Harness::start(
        Clock::Paused,
        &[
            "--refresh.min-interval",
            "200ms",
            "--audit.disabled",
            "--earn.disabled",
        ],
        SimOptions::default(),
    )
    .await;
    h.wait_ready().await;
    let body = h
        .metrics_when(LIMIT, |body| requests(body, "BalanceEx") >= 2.0)
        .await;
    assert_eq!(h.sim.calls(Endpoint::EarnAllocations), 0);
    assert!(!body.contains("Earn/Allocations"), "{body}");
    assert!(!body.contains("kraken_earn_"), "{body}");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn key_hygiene_is_exported_from_get_api_key_info() {
    let sim = SimKraken::start(SimOptions::default()).await.unwrap();
    sim.set_key_info(SimKeyInfo {
        name: "backup \"monitor\"".into(),
        valid_until: 1_800_000_000,
        created: 1_790_000_000,
        ip_allowlist: vec!["192.0.2.1/32".into(), "198.51.100.0/24".into()],
        last_used: None,
    });
    let h = Harness::serve(Clock::Paused, sim, &["--earn.disabled"]).await;
    h.wait_ready().await;
    let body = h
        .metrics_when(LIMIT, |body| body.contains("kraken_api_key_info{"))
        .await;
    let account = "account=\"default\"";
    assert_eq!(
        sample(&body, "kraken_api_key_expiry_timestamp_seconds", account),
        Some(1_800_000_000.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "kraken_api_key_created_timestamp_seconds", account),
        Some(1_790_000_000.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "kraken_api_key_ip_allowlist_entries", account),
        Some(2.0),
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            "kraken_api_key_info",
            r#"account="default",name="backup \"monitor\"""#
        ),
        Some(1.0),
        "{body}"
    );
    // The key itself never appears, only its name.
    let key = h.sim.credentials().key.expose().to_owned();
    assert!(!body.contains(&key));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_key_without_expiry_has_no_expiry_series() {
    let h = Harness::start(Clock::Paused, &["--earn.disabled"], SimOptions::default()).await;
    h.wait_ready().await;
    let body = h
        .metrics_when(LIMIT, |body| body.contains("kraken_api_key_info{"))
        .await;
    assert!(
        !body.contains("kraken_api_key_expiry_timestamp_seconds{"),
        "validUntil 0 means no expiry: {body}"
    );
    assert_eq!(
        sample(
            &body,
            "kraken_api_key_ip_allowlist_entries",
            "account=\"default\""
        ),
        Some(0.0),
        "{body}"
    );
    h.stop().await;
}

/// Runs `kraken_exporter check` in-process against `sim`; returns (ok, stdout, stderr).
async fn check(sim: &SimKraken) -> (bool, String, String) {
    let creds = sim.credentials();
    let key = creds.key.expose().to_owned();
    let secret = STANDARD.encode(creds.secret.expose());
    let url = sim.url();
    let cli = Cli::try_parse_from(["kraken_exporter", "check", "--kraken.api-url", &url]).unwrap();
    let flags = cli.flags.clone();
    let env: SharedEnv = Arc::new(move |name: &str| match name {
        "KRAKEN_API_KEY" => Some(key.clone()),
        "KRAKEN_API_SECRET" => Some(secret.clone()),
        _ => None,
    });
    let config = kraken_exporter::config::resolve(cli, &*env).unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let ok = kraken_exporter::check::run(config, flags, env, &mut out, &mut err)
        .await
        .unwrap();
    (
        ok,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[tokio::test]
async fn check_prints_key_hygiene() {
    let sim = SimKraken::start(SimOptions::default()).await.unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    sim.set_key_info(SimKeyInfo {
        name: "monitor".into(),
        valid_until: now + 60 * 86_400 + 3600,
        created: now - 100 * 86_400 - 3600,
        ip_allowlist: vec![],
        last_used: None,
    });
    let (ok, out, err) = check(&sim).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("Key name: monitor\n"), "{out}");
    assert!(out.contains("Key expires: in 60 days\n"), "{out}");
    assert!(
        out.contains("Key IP allowlist: none: usable from any IP"),
        "{out}"
    );
    assert!(out.contains("Key age: 100 days\n"), "{out}");
}

/// Another client signed with microsecond nonces: Kraken refuses every millisecond nonce, and
/// `check` says why and what fixes it instead of a bare invalid nonce.
#[tokio::test]
async fn check_explains_a_nonce_on_another_scale() {
    let sim = SimKraken::start(SimOptions::default()).await.unwrap();
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    sim.set_last_nonce(now_ms * 1000);
    let (ok, out, err) = check(&sim).await;
    assert!(!ok, "{out}{err}");
    assert!(err.contains("reason: invalid_nonce"), "{err}");
    assert!(err.contains("microsecond"), "{err}");
    assert!(
        err.contains("create a new API key for the exporter alone"),
        "{err}"
    );
}

/// The demo's simulated Kraken has Earn allocations in every state and a key with an expiry
/// date and a creation date, so every Earn and key hygiene panel has data.
#[tokio::test(start_paused = true)]
async fn the_demo_shows_every_earn_state_and_a_key_that_expires() {
    let no_env: SharedEnv = Arc::new(|_: &str| None);
    let served = crate::Served::start_paused(&["--demo"], no_env).await;
    served.wait_ready().await;
    let body = served
        .metrics_when(LIMIT, |body| {
            body.contains("kraken_earn_allocation{") && body.contains("kraken_api_key_info{")
        })
        .await;
    let state = |asset: &str, state: &str| {
        let labels = format!("account=\"default\",asset=\"{asset}\",state=\"{state}\"");
        sample(&body, "kraken_earn_allocation", &labels).unwrap_or(0.0)
    };
    assert!(state("DOT", "unbonding") > 0.0, "{body}");
    assert!(state("ETH", "bonding") > 0.0, "{body}");
    assert!(state("ETH", "exit_queue") > 0.0, "{body}");
    assert!(state("USDC", "earning") > 0.0, "{body}");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let account = "account=\"default\"";
    let expiry = sample(&body, "kraken_api_key_expiry_timestamp_seconds", account).unwrap();
    let days_left = (expiry - now) / 86_400.0;
    assert!((59.0..=60.0).contains(&days_left), "{days_left} days");
    let created = sample(&body, "kraken_api_key_created_timestamp_seconds", account).unwrap();
    assert!(created < now, "{body}");
    let unbonding = sample(
        &body,
        "kraken_earn_next_unbonding_timestamp_seconds",
        "account=\"default\",asset=\"DOT\"",
    )
    .unwrap();
    assert!(unbonding > now, "the demo's unbonding is ahead: {body}");
    served.stop().await;
}
