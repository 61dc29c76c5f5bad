//! Thresholds and what they compare with: asset names in any spelling, names that are no Kraken
//! asset, `kraken_balance_available` with auto-earn funds, and the landing page's view of them.

use std::time::Duration;

use clap::Parser;
use kraken::Endpoint;
use kraken::sim::{Fault, SimOptions};
use kraken_exporter::cli::Cli;

use crate::rules::{repo_path, yaml_file};
use crate::{Clock, Harness, poll_until, sample};

/// Auto-earn on for XBT: the base code at 0 under a hold of 0.2, the coins in `XBT.F`; dollars
/// partly held by open orders; staked DOT, which is not spendable.
fn auto_earn_balances() -> Vec<(String, f64, f64)> {
    [
        ("XXBT", 0.0, 0.2),
        ("XBT.F", 1.5, 0.0),
        ("ZUSD", 25000.0, 1500.0),
        ("DOT28.S", 100.0, 0.0),
    ]
    .into_iter()
    .map(|(code, total, hold)| (code.to_owned(), total, hold))
    .collect()
}

/// The exporter with `args` on a simulated Kraken holding [`auto_earn_balances`], ready.
async fn auto_earn_harness(args: &[&str]) -> Harness {
    let h = Harness::start_with_balances(
        Clock::Paused,
        args,
        SimOptions::default(),
        Some(auto_earn_balances()),
    )
    .await;
    h.wait_ready().await;
    h
}

/// The thresholds of the tests below, each asset in another spelling, and one name that is no
/// Kraken asset.
const THRESHOLDS: [&str; 10] = [
    "--balance.min",
    "btc=0.5",
    "--balance.min",
    "ZUSD=30000",
    "--balance.min",
    "ETHH=1",
    "--balance.min",
    "xeth=2",
    "--balance.watch",
    "DOT",
];

#[tokio::test(start_paused = true)]
async fn available_counts_auto_earn_funds_and_a_missing_threshold_asset_reads_0() {
    let h = auto_earn_harness(&THRESHOLDS).await;
    let body = h.metrics().await;
    let available = |asset: &str| {
        sample(
            &body,
            "kraken_balance_available",
            &format!(r#"account="default",asset="{asset}""#),
        )
    };
    let xbt = available("XBT").unwrap();
    assert!((xbt - 1.3).abs() < 1e-9, "0 + 1.5 - 0.2: {body}");
    assert_eq!(available("USD"), Some(23500.0), "{body}");
    assert_eq!(
        available("ETH"),
        Some(0.0),
        "a threshold Kraken omits: {body}"
    );
    assert_eq!(available("DOT"), Some(0.0), "watched, only staked: {body}");
    assert_eq!(
        available("DOT28.S"),
        None,
        "staked is not spendable: {body}"
    );
    assert_eq!(available("XBT.F"), None, "counted under its base: {body}");
    let min = |asset: &str| {
        sample(
            &body,
            "kraken_balance_min",
            &format!(r#"account="default",asset="{asset}""#),
        )
    };
    assert_eq!(min("XBT"), Some(0.5), "BTC is XBT: {body}");
    assert_eq!(min("USD"), Some(30000.0), "ZUSD is USD: {body}");
    assert_eq!(min("ETH"), Some(2.0), "xeth is ETH: {body}");
    // The raw families stay as Kraken reported them.
    assert_eq!(
        sample(
            &body,
            "kraken_balance",
            r#"account="default",asset="XBT",code="XXBT""#
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &body,
            "kraken_balance_hold",
            r#"account="default",asset="XBT",code="XXBT""#
        ),
        Some(0.2)
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_unknown_asset_name_is_exported_as_such_never_as_a_balance() {
    let h = auto_earn_harness(&THRESHOLDS).await;
    let body = h.metrics().await;
    assert_eq!(
        sample(
            &body,
            "kraken_config_unknown_asset",
            r#"account="default",asset="ETHH""#
        ),
        Some(1.0),
        "{body}"
    );
    let mentions: Vec<&str> = body
        .lines()
        .filter(|line| line.contains("\"ETHH\"") && !line.starts_with('#'))
        .collect();
    assert_eq!(
        mentions,
        ["kraken_config_unknown_asset{account=\"default\",asset=\"ETHH\"} 1"],
        "no balance, minimum or available amount for it"
    );
    let probe = h.get("/probe?account=default", &[]).await.2;
    assert!(
        probe.contains("kraken_config_unknown_asset{account=\"default\",asset=\"ETHH\"} 1"),
        "{probe}"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn with_the_balance_endpoint_no_available_amount_is_claimed() {
    let mut args = THRESHOLDS.to_vec();
    args.extend(["--kraken.balance-endpoint", "balance"]);
    let h = auto_earn_harness(&args).await;
    let body = h.metrics().await;
    assert!(
        !body.contains("kraken_balance_available{"),
        "holds unknown: {body}"
    );
    assert_eq!(
        sample(
            &body,
            "kraken_balance_min",
            r#"account="default",asset="XBT""#
        ),
        Some(0.5)
    );
    let landing = h.get("/", &[]).await.2;
    assert!(
        landing.contains("Available amounts are unknown"),
        "{landing}"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_landing_page_shows_available_against_minimum_and_highlights_what_is_below() {
    let h = auto_earn_harness(&THRESHOLDS).await;
    let (status, _, page) = h.get("/", &[]).await;
    assert_eq!(status, 200);
    assert!(
        page.contains(
            "<tr class=\"below\"><td>USD</td><td class=\"n\">23500</td><td class=\"n\">30000</td><td>below minimum</td></tr>"
        ),
        "{page}"
    );
    assert!(
        page.contains(
            "<tr><td>XBT</td><td class=\"n\">1.3</td><td class=\"n\">0.5</td><td>ok</td></tr>"
        ),
        "{page}"
    );
    assert!(
        page.contains("<tr class=\"below\"><td>ETH</td><td class=\"n\">0</td>"),
        "{page}"
    );
    assert!(
        page.contains("ETHH in min_balance or watch is not a Kraken asset")
            && page.contains("Did you mean ETH?"),
        "{page}"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn after_a_failure_the_landing_page_gives_the_advice_and_the_next_attempt() {
    let h = auto_earn_harness(&[
        "--balance.min",
        "XBT=0.5",
        "--refresh.min-interval",
        "100ms",
    ])
    .await;
    for endpoint in [Endpoint::BalanceEx, Endpoint::Balance] {
        h.sim.inject(
            endpoint,
            Fault::KrakenError("EAPI:Invalid key".into()),
            None,
        );
    }
    // Scrape until a refresh has met the fault (each scrape past the minimum interval starts one).
    let mut page = String::new();
    poll_until(Duration::from_secs(15), async || {
        h.metrics().await;
        page = h.get("/", &[]).await.2;
        page.contains("invalid_key")
    })
    .await;
    assert!(page.contains("last error: invalid_key"), "{page}");
    assert!(
        page.contains("What to do: Kraken does not know this API key"),
        "{page}"
    );
    assert!(
        page.contains("Next attempt with the first scrape after ") && page.contains(" UTC (in "),
        "{page}"
    );
    h.stop().await;
}

/// The thresholds an example sets, resolved as the exporter resolves them (in demo mode, so no
/// credentials are needed).
fn resolved_minimums(args: &[&str], env: &[(&str, &str)]) -> Vec<(String, f64)> {
    let mut argv = vec!["kraken_exporter", "--demo"];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).expect("the example's flags parse");
    let lookup = |name: &str| {
        env.iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| (*value).to_owned())
    };
    let config = kraken_exporter::config::resolve(cli, &lookup).expect("the example resolves");
    config.accounts[0]
        .min_balance
        .iter()
        .map(|(asset, min)| (asset.clone(), *min))
        .collect()
}

/// Low-balance alerts need thresholds: the one-account deployments (systemd, Kubernetes) set
/// one the exporter accepts, and the example config, which the Docker stack runs in demo mode,
/// has a minimum the demo account is below.
#[test]
fn the_deployment_examples_set_a_threshold_the_exporter_accepts() {
    let unit =
        std::fs::read_to_string(repo_path("examples/systemd/kraken_exporter.service")).unwrap();
    let flags: Vec<&str> = unit
        .lines()
        .filter(|line| !line.starts_with('#'))
        .flat_map(str::split_whitespace)
        .filter(|word| word.starts_with("--balance."))
        .collect();
    assert!(!flags.is_empty(), "the systemd unit sets no threshold");
    assert_eq!(resolved_minimums(&flags, &[]), [("XBT".to_owned(), 0.5)]);

    let deployment = yaml_file("examples/kubernetes/deployment.yaml");
    let env = &deployment["spec"]["template"]["spec"]["containers"][0]["env"];
    let min = env
        .as_sequence()
        .unwrap()
        .iter()
        .find(|var| var["name"].as_str() == Some("KRAKEN_BALANCE_MIN"))
        .and_then(|var| var["value"].as_str())
        .expect("the Kubernetes Deployment sets KRAKEN_BALANCE_MIN");
    assert_eq!(
        resolved_minimums(&[], &[("KRAKEN_BALANCE_MIN", min)]),
        [("XBT".to_owned(), 0.5)]
    );

    let dockerfile = std::fs::read_to_string(repo_path("examples/Dockerfile")).unwrap();
    assert!(
        dockerfile.contains("-e KRAKEN_BALANCE_MIN=XBT=0.5,USD=1000"),
        "the Dockerfile's run example sets a threshold"
    );
    let config = yaml_file("examples/kraken_exporter.yml");
    let hot = config["accounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|account| account["name"].as_str() == Some("hot"))
        .unwrap();
    // The demo account can spend about 23,500 USD (25,000 minus 1,500 held, drifting by 5 %).
    assert!(
        hot["min_balance"]["USD"].as_f64().unwrap() > 25_000.0 * 1.05 - 1_500.0,
        "the example stack's demo account must be below a minimum so the alert fires"
    );
}

/// While Kraken's Assets list cannot be fetched, balances carry raw codes (`XXBT`): a watched
/// `XBT` is then neither filled with a made-up 0 nor called unknown.
#[tokio::test(start_paused = true)]
async fn without_the_assets_list_nothing_is_guessed() {
    let sim = kraken::sim::SimKraken::start(SimOptions::default())
        .await
        .unwrap();
    sim.inject(
        Endpoint::Assets,
        Fault::Status(502, "Bad Gateway".into()),
        None,
    );
    sim.set_balances(auto_earn_balances());
    let creds = sim.credentials();
    let key = creds.key.expose().to_owned();
    let secret = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        creds.secret.expose(),
    );
    let url = sim.url();
    let env: kraken_exporter::app::SharedEnv = std::sync::Arc::new(move |name: &str| match name {
        "KRAKEN_API_KEY" => Some(key.clone()),
        "KRAKEN_API_SECRET" => Some(secret.clone()),
        _ => None,
    });
    let served =
        crate::Served::start_paused(&["--kraken.api-url", &url, "--balance.min", "XBT=0.5"], env)
            .await;
    served.wait_ready().await;
    let body = served.metrics().await;
    assert_eq!(
        sample(
            &body,
            "kraken_balance",
            r#"account="default",asset="XXBT",code="XXBT""#
        ),
        Some(0.0),
        "raw codes while the Assets list is missing: {body}"
    );
    for series in [
        r#"kraken_balance{account="default",asset="XBT","#,
        // `XXBT` and `XBT.F` cannot be known to be one asset: no spendable amount at all.
        "kraken_balance_available{",
        "kraken_config_unknown_asset{",
    ] {
        assert!(!body.contains(series), "{series} guessed: {body}");
    }
    served.stop().await;
}
