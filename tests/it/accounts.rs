//! Many accounts from one config file: serving, `/probe`, thresholds, watched assets, prices,
//! reload, and `--config.check`.
//!
//! Time is paused and paced (see [`crate::paced_clock`]): intervals and deadlines are tokio time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kraken::Endpoint;
use kraken::sim::{Fault, SimKraken, SimOptions};
use kraken_exporter::app::SharedEnv;
use tokio::time::Instant;

use crate::{Served, client, sample};

/// A temporary directory removed at the end of the test.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh, empty directory.
    pub fn new() -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "kraken-exporter-test-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    /// Writes `contents` to `name` with the given Unix mode; returns the path.
    pub fn write(&self, name: &str, contents: &str, mode: u32) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        set_mode(&path, mode);
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Several accounts, each on its own simulated Kraken, described by one config file.
pub struct Fleet {
    /// The simulated Kraken of each account, in the order given.
    pub sims: Vec<SimKraken>,
    /// Holds the config file and the credential files.
    pub dir: TempDir,
    /// The config file.
    pub config: PathBuf,
    /// The exporter.
    pub served: Served,
}

/// Writes the key and secret files of `sim` for account `name`, and returns its YAML entry.
pub fn account_entry(dir: &TempDir, name: &str, sim: &SimKraken, extra: &str) -> String {
    let creds = sim.credentials();
    let key = dir.write(
        &format!("{name}.key"),
        &format!("{}\n", creds.key.expose()),
        0o600,
    );
    let secret = dir.write(
        &format!("{name}.secret"),
        &format!("{}\n", STANDARD.encode(creds.secret.expose())),
        0o600,
    );
    let mut entry = format!(
        "  - name: {name}\n    key_file: {}\n    secret_file: {}\n    api_url: {}\n",
        key.display(),
        secret.display(),
        sim.url()
    );
    for line in extra.lines().filter(|l| !l.trim().is_empty()) {
        entry.push_str("    ");
        entry.push_str(line.trim_start());
        entry.push('\n');
    }
    entry
}

impl Fleet {
    /// Starts one sim per `(name, extra YAML for the entry, balances)` and the exporter with a
    /// config file holding `global` and those accounts, plus `args`.
    pub async fn start(global: &str, accounts: &[(&str, &str, Balances)], args: &[&str]) -> Fleet {
        Self::start_with(global, accounts, args, |_| SimOptions::default()).await
    }

    /// Like [`Fleet::start`], with each account's sim built from `options(name)`.
    pub async fn start_with(
        global: &str,
        accounts: &[(&str, &str, Balances)],
        args: &[&str],
        options: impl Fn(&str) -> SimOptions,
    ) -> Fleet {
        let dir = TempDir::new();
        let mut sims = Vec::new();
        let mut yaml = format!("{global}\naccounts:\n");
        for (name, extra, balances) in accounts {
            let sim = SimKraken::start(options(name)).await.unwrap();
            if let Some(balances) = balances {
                sim.set_balances(balances.clone());
            }
            yaml.push_str(&account_entry(&dir, name, &sim, extra));
            sims.push(sim);
        }
        let config = dir.write("kraken.yml", &yaml, 0o600);
        let public_url = sims[0].url();
        let mut argv = vec![
            "--config.file",
            config.to_str().unwrap(),
            "--kraken.api-url",
            &public_url,
            "--web.enable-lifecycle",
        ];
        argv.extend_from_slice(args);
        let env: SharedEnv = Arc::new(|_: &str| None);
        let served = Served::start_paused(&argv, env).await;
        Fleet {
            sims,
            dir,
            config,
            served,
        }
    }

    /// Waits until `account` reports `kraken_up` 1.
    pub async fn wait_up(&self, account: &str) -> String {
        let labels = format!(r#"account="{account}""#);
        for _ in 0..300 {
            let body = self.served.metrics().await;
            if sample(&body, "kraken_up", &labels) == Some(1.0) {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("account {account} never came up");
    }
}

/// Balances a sim starts with: (code, total, hold).
type Balances = Option<Vec<(String, f64, f64)>>;

fn balances(list: &[(&str, f64)]) -> Balances {
    Some(list.iter().map(|(c, v)| (c.to_string(), *v, 0.0)).collect())
}

#[tokio::test(start_paused = true)]
async fn three_accounts_with_one_hanging_are_served_without_delay() {
    let fleet = Fleet::start(
        "refresh: {min_interval: 100ms}",
        &[
            ("cold", "", balances(&[("XXBT", 10.0)])),
            ("hot", "", balances(&[("XXBT", 0.5), ("ZUSD", 1200.0)])),
            ("desk", "", balances(&[("XETH", 3.0)])),
        ],
        &[],
    )
    .await;
    fleet.wait_up("cold").await;
    fleet.wait_up("hot").await;
    fleet.wait_up("desk").await;
    fleet.sims[2].inject(Endpoint::BalanceEx, Fault::Hang, None);
    tokio::time::sleep(Duration::from_millis(150)).await;

    let started = Instant::now();
    let (status, _, body) = fleet
        .served
        .get("/metrics", &[("X-Prometheus-Scrape-Timeout-Seconds", "2")])
        .await;
    assert_eq!(status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        sample(&body, "kraken_up", r#"account="cold""#),
        Some(1.0),
        "{body}"
    );
    assert_eq!(sample(&body, "kraken_up", r#"account="hot""#), Some(1.0));
    assert_eq!(sample(&body, "kraken_up", r#"account="desk""#), Some(0.0));
    let balance = |account: &str, asset: &str, code: &str| {
        sample(
            &body,
            "kraken_balance",
            &format!(r#"account="{account}",asset="{asset}",code="{code}""#),
        )
    };
    assert_eq!(balance("cold", "XBT", "XXBT"), Some(10.0));
    assert_eq!(balance("hot", "USD", "ZUSD"), Some(1200.0));
    assert_eq!(
        balance("desk", "ETH", "XETH"),
        Some(3.0),
        "last good snapshot of the hanging account"
    );
    assert_eq!(balance("cold", "USD", "ZUSD"), None, "accounts do not mix");
    fleet.served.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_account_with_a_bad_key_fails_alone() {
    let fleet = Fleet::start(
        "",
        &[("cold", "", None), ("hot", "", None), ("desk", "", None)],
        &[],
    )
    .await;
    fleet.sims[1].inject(
        Endpoint::BalanceEx,
        Fault::KrakenError("EAPI:Invalid key".into()),
        None,
    );
    let body = fleet.wait_up("cold").await;
    let body = if sample(&body, "kraken_up", r#"account="desk""#) == Some(1.0) {
        body
    } else {
        fleet.wait_up("desk").await
    };
    assert_eq!(
        sample(&body, "kraken_up", r#"account="hot""#),
        Some(0.0),
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            "kraken_request_errors_total",
            r#"account="hot",endpoint="BalanceEx",reason="invalid_key""#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &body,
            "kraken_request_errors_total",
            r#"account="cold",endpoint="BalanceEx",reason="invalid_key""#
        ),
        Some(0.0)
    );
    let (status, _, ready) = fleet.served.get("/-/ready", &[]).await;
    assert_eq!(
        status, 503,
        "not ready while an account never succeeded: {ready}"
    );
    assert!(ready.contains("hot"), "{ready}");
    fleet.served.stop().await;
}

#[tokio::test(start_paused = true)]
async fn probe_serves_one_configured_account_and_refuses_everything_else() {
    let fleet = Fleet::start("", &[("cold", "", None), ("hot", "", None)], &[]).await;
    fleet.wait_up("cold").await;
    fleet.wait_up("hot").await;
    let (status, content_type, body) = fleet.served.get("/probe?account=cold", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert_eq!(sample(&body, "kraken_up", r#"account="cold""#), Some(1.0));
    assert!(!body.contains(r#"account="hot""#), "{body}");
    assert!(!body.contains(r#"account="_public""#), "{body}");
    assert!(body.contains(r#"kraken_requests_total{account="cold",endpoint="BalanceEx"}"#));
    for bad in [
        "/probe?account=nope",
        "/probe?account=http%3A%2F%2Fevil.example%2F",
        "/probe?target=https://evil.example/",
        "/probe",
        "/probe?account=",
    ] {
        let (status, _, body) = fleet.served.get(bad, &[]).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(!body.contains("kraken_balance"), "{bad}");
    }
    fleet.served.stop().await;
}

#[tokio::test(start_paused = true)]
async fn thresholds_and_watched_zeros_are_exported() {
    let fleet = Fleet::start(
        "",
        &[(
            "escrow",
            "min_balance: {XBT: 2.5, USD: 100, EUR: 10}\nwatch: [ETH, XBT]",
            balances(&[("XXBT", 1.5), ("ZUSD", 500.0)]),
        )],
        &[],
    )
    .await;
    let body = fleet.wait_up("escrow").await;
    let min = |asset: &str| {
        sample(
            &body,
            "kraken_balance_min",
            &format!(r#"account="escrow",asset="{asset}""#),
        )
    };
    assert_eq!(min("XBT"), Some(2.5));
    assert_eq!(min("USD"), Some(100.0));
    assert_eq!(min("EUR"), Some(10.0));
    let balance = |asset: &str, code: &str| {
        sample(
            &body,
            "kraken_balance",
            &format!(r#"account="escrow",asset="{asset}",code="{code}""#),
        )
    };
    assert_eq!(balance("XBT", "XXBT"), Some(1.5));
    assert_eq!(
        balance("ETH", "XETH"),
        Some(0.0),
        "watched and absent upstream: 0\n{body}"
    );
    assert_eq!(
        balance("EUR", "ZEUR"),
        Some(0.0),
        "an asset with a minimum is watched too"
    );
    assert_eq!(
        sample(
            &body,
            "kraken_balance_hold",
            r#"account="escrow",asset="ETH",code="XETH""#
        ),
        Some(0.0)
    );
    fleet.served.stop().await;
}

#[tokio::test(start_paused = true)]
async fn reload_keeps_the_running_config_when_the_new_file_is_broken() {
    let fleet = Fleet::start("", &[("cold", "", None)], &[]).await;
    fleet.wait_up("cold").await;
    let good = std::fs::read_to_string(&fleet.config).unwrap();

    std::fs::write(
        &fleet.config,
        "accounts:\n  - name: cold\n    secret_fil: /nope\n",
    )
    .unwrap();
    let response = client()
        .post(fleet.served.url("/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    let text = response.text().await.unwrap();
    assert!(text.contains("secret_fil"), "{text}");
    let body = fleet.served.metrics().await;
    assert_eq!(
        sample(&body, "kraken_exporter_config_last_reload_successful", ""),
        Some(0.0)
    );
    assert_eq!(
        sample(&body, "kraken_up", r#"account="cold""#),
        Some(1.0),
        "old config still runs"
    );

    // A valid file adding an account is taken, and the unchanged account keeps its state.
    let hot = SimKraken::start(SimOptions::default()).await.unwrap();
    let calls_before = fleet.sims[0].calls(Endpoint::BalanceEx);
    let updated = format!(
        "{good}{}",
        account_entry(&fleet.dir, "hot", &hot, "min_balance: {XBT: 1}")
    );
    std::fs::write(&fleet.config, updated).unwrap();
    let response = client()
        .post(fleet.served.url("/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let body = fleet.wait_up("hot").await;
    assert_eq!(
        sample(&body, "kraken_exporter_config_last_reload_successful", ""),
        Some(1.0)
    );
    assert_eq!(
        sample(&body, "kraken_balance_min", r#"account="hot",asset="XBT""#),
        Some(1.0)
    );
    assert_eq!(
        fleet.sims[0].calls(Endpoint::BalanceEx),
        calls_before,
        "the unchanged account was kept, not rebuilt"
    );

    // Removing an account removes its series.
    std::fs::write(&fleet.config, &good).unwrap();
    let response = client()
        .post(fleet.served.url("/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = fleet.served.metrics().await;
    assert!(!body.contains(r#"account="hot""#), "{body}");
    assert_eq!(
        client()
            .get(fleet.served.url("/-/reload"))
            .send()
            .await
            .unwrap()
            .status(),
        405
    );
    fleet.served.stop().await;
}

/// Waits until `name{labels}` appears in the exposition.
async fn wait_for(fleet: &Fleet, name: &str, labels: &str) -> String {
    for _ in 0..300 {
        let body = fleet.served.metrics().await;
        if sample(&body, name, labels).is_some() {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{name}{{{labels}}} never appeared");
}

#[tokio::test(start_paused = true)]
async fn the_audit_flags_a_key_that_can_withdraw_and_not_a_query_only_one() {
    let fleet = Fleet::start_with(
        "",
        &[
            ("reader", "", None),
            ("withdrawer", "", None),
            ("old", "", None),
        ],
        &[],
        |name| match name {
            "withdrawer" => SimOptions {
                permissions: vec!["query_funds".into(), "withdraw_funds".into()],
                ..SimOptions::default()
            },
            // A Kraken that does not answer GetApiKeyInfo: the audit probes WithdrawMethods.
            "old" => SimOptions {
                permissions: vec!["query_funds".into(), "withdraw_funds".into()],
                api_key_info_enabled: false,
                ..SimOptions::default()
            },
            _ => SimOptions::default(),
        },
    )
    .await;
    let permission = |body: &str, account: &str, permission: &str| {
        sample(
            body,
            "kraken_api_key_permission",
            &format!(r#"account="{account}",permission="{permission}""#),
        )
    };
    let body = wait_for(
        &fleet,
        "kraken_api_key_permission",
        r#"account="reader",permission="funds_query""#,
    )
    .await;
    assert_eq!(permission(&body, "reader", "funds_query"), Some(1.0));
    assert_ne!(
        permission(&body, "reader", "funds_withdraw"),
        Some(1.0),
        "{body}"
    );
    let body = wait_for(
        &fleet,
        "kraken_api_key_permission",
        r#"account="withdrawer",permission="funds_withdraw""#,
    )
    .await;
    assert_eq!(permission(&body, "withdrawer", "funds_withdraw"), Some(1.0));
    let body = wait_for(
        &fleet,
        "kraken_api_key_permission",
        r#"account="old",permission="funds_withdraw""#,
    )
    .await;
    assert_eq!(
        permission(&body, "old", "funds_withdraw"),
        Some(1.0),
        "the probe establishes withdraw"
    );
    assert_eq!(fleet.sims[2].calls(Endpoint::WithdrawMethods), 1);
    assert_eq!(
        fleet.sims[0].calls(Endpoint::WithdrawMethods),
        0,
        "no probe where GetApiKeyInfo answers"
    );
    assert!(
        body.contains(r#"kraken_requests_total{account="reader",endpoint="GetApiKeyInfo"} 1"#),
        "audit calls are counted"
    );
    fleet.served.stop().await;
}

#[tokio::test(start_paused = true)]
async fn staked_assets_are_priced_as_their_base_and_unpriced_ones_are_reported() {
    let fleet = Fleet::start(
        "valuation: {quote: USD}\naudit: {enabled: false}",
        &[(
            "cold",
            "",
            balances(&[
                ("DOT28.S", 100.0),
                ("DOT", 2.0),
                ("XXBT", 0.5),
                ("ZUSD", 10.0),
                ("ZEUR", 5.0),
                ("NEWCOIN", 1.0),
            ]),
        )],
        &[],
    )
    .await;
    fleet.sims[0].set_price("DOTUSD", 8.0);
    let body = wait_for(
        &fleet,
        "kraken_asset_price",
        r#"asset="DOT28.S",quote="USD""#,
    )
    .await;
    let price = |asset: &str| {
        sample(
            &body,
            "kraken_asset_price",
            &format!(r#"asset="{asset}",quote="USD""#),
        )
    };
    assert_eq!(
        price("DOT28.S"),
        Some(8.0),
        "staked DOT is priced as DOT\n{body}"
    );
    assert_eq!(price("DOT"), Some(8.0));
    assert_eq!(price("XBT"), Some(65000.0));
    assert_eq!(price("USD"), Some(1.0), "the quote itself is worth 1");
    assert!(price("EUR").is_some_and(|p| p > 1.0), "EUR via ZEURZUSD");
    assert_eq!(price("NEWCOIN"), None, "no market is no price, never 0");
    assert_eq!(
        sample(
            &body,
            "kraken_asset_price_missing",
            r#"asset="NEWCOIN",quote="USD""#
        ),
        Some(1.0)
    );
    assert!(
        !fleet
            .served
            .get("/probe?account=cold", &[])
            .await
            .2
            .contains("kraken_asset_price")
    );
    fleet.served.stop().await;
}

/// The price series of `asset` in USD: `Some(Some(price))`, `Some(None)` when reported missing,
/// `None` when the exposition says nothing about it.
fn price_series(body: &str, asset: &str) -> Option<Option<f64>> {
    let labels = format!(r#"asset="{asset}",quote="USD""#);
    match sample(body, "kraken_asset_price", &labels) {
        Some(price) => Some(Some(price)),
        None => (sample(body, "kraken_asset_price_missing", &labels) == Some(1.0)).then_some(None),
    }
}

/// The second account's balances arrive after the first price refresh: its assets are priced (or
/// reported missing) a second or so later, not a minimum interval later, and the public
/// endpoints are not hammered meanwhile.
#[tokio::test(start_paused = true)]
async fn every_account_is_priced_within_seconds_of_readiness() {
    let fleet = Fleet::start_with(
        "valuation: {quote: USD}\naudit: {enabled: false}\nrefresh: {min_interval: 5m}",
        &[
            ("hot", "", balances(&[("XXBT", 0.5)])),
            ("cold", "", balances(&[("XETH", 3.0), ("NEWCOIN", 1.0)])),
        ],
        &[],
        |name| SimOptions {
            // Slow enough that the first price refresh has run before its balances arrive.
            latency: Duration::from_millis(if name == "cold" { 500 } else { 0 }),
            ..SimOptions::default()
        },
    )
    .await;
    fleet.served.wait_ready().await;
    let ready = Instant::now();
    let mut body = fleet.served.metrics().await;
    while price_series(&body, "ETH").is_none() || price_series(&body, "NEWCOIN").is_none() {
        // Public calls start a second apart (Assets and AssetPairs for both asset classes,
        // SystemStatus, Ticker): seconds, not the 5m minimum interval.
        assert!(
            ready.elapsed() < Duration::from_secs(5),
            "the second account's assets are still unpriced:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        body = fleet.served.metrics().await;
    }
    assert_eq!(price_series(&body, "XBT"), Some(Some(65000.0)), "{body}");
    assert!(price_series(&body, "ETH").unwrap().is_some(), "{body}");
    assert_eq!(
        price_series(&body, "NEWCOIN"),
        Some(None),
        "no market: missing"
    );
    let tickers = sample(
        &body,
        "kraken_requests_total",
        r#"account="_public",endpoint="Ticker""#,
    )
    .unwrap();
    assert!(
        tickers <= 2.0,
        "{tickers} Ticker calls: one refresh per newcomer at most"
    );
    fleet.served.stop().await;
}

/// An asset no account holds any more loses its price series at the next refresh of the account
/// that sold it, and an asset of a removed account at the reload that removes it.
#[tokio::test(start_paused = true)]
async fn a_sold_asset_and_a_removed_accounts_assets_lose_their_price() {
    // Earn off: the simulated Earn allocations name ETH too.
    let fleet = Fleet::start(
        "valuation: {quote: USD}\naudit: {enabled: false}\nearn: {enabled: false}\nrefresh: {min_interval: 1s}",
        &[
            ("hot", "", balances(&[("XXBT", 0.5), ("XETH", 3.0)])),
            ("cold", "", balances(&[("DOT", 100.0)])),
        ],
        &[],
    )
    .await;
    fleet.served.wait_ready().await;
    let body = wait_for(&fleet, "kraken_asset_price", r#"asset="DOT",quote="USD""#).await;
    assert!(price_series(&body, "ETH").is_some(), "{body}");
    // "hot" sells its ether.
    fleet.sims[0].set_balances(vec![("XXBT".into(), 0.5, 0.0)]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let body = fleet.served.metrics().await;
    assert!(!body.contains(r#"asset="ETH""#), "{body}");
    assert!(price_series(&body, "XBT").is_some(), "{body}");
    // "cold" is removed.
    let yaml = std::fs::read_to_string(&fleet.config).unwrap();
    let kept: String = yaml.split("  - name: cold").next().unwrap().to_owned();
    std::fs::write(&fleet.config, kept).unwrap();
    let response = client()
        .post(fleet.served.url("/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = fleet.served.metrics().await;
    assert!(!body.contains(r#"asset="DOT""#), "{body}");
    assert!(price_series(&body, "XBT").is_some(), "{body}");
    fleet.served.stop().await;
}

#[tokio::test(start_paused = true)]
async fn trade_balance_is_collected_when_allowed_and_a_refusal_is_not_an_outage() {
    let fleet = Fleet::start_with(
        "valuation: {quote: USD, trade_balance: true}\naudit: {enabled: false}\nrefresh: {min_interval: 100ms}",
        &[("allowed", "", None), ("refused", "", None)],
        &[],
        |name| SimOptions {
            trade_balance_enabled: name == "allowed",
            ..SimOptions::default()
        },
    )
    .await;
    let body = wait_for(
        &fleet,
        "kraken_equivalent_balance",
        r#"account="allowed",quote="USD""#,
    )
    .await;
    assert!(
        sample(
            &body,
            "kraken_equivalent_balance",
            r#"account="allowed",quote="USD""#
        )
        .unwrap()
            > 0.0
    );
    // Several refreshes later the refused account is up, asked TradeBalance once, and exports none.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(120)).await;
        fleet.served.metrics().await;
    }
    let body = fleet.wait_up("refused").await;
    assert_eq!(
        sample(
            &body,
            "kraken_equivalent_balance",
            r#"account="refused",quote="USD""#
        ),
        None
    );
    assert_eq!(
        fleet.sims[1].calls(Endpoint::TradeBalance),
        1,
        "a refusal stops the calls"
    );
    assert!(fleet.sims[0].calls(Endpoint::TradeBalance) > 1);
    fleet.served.stop().await;
}

/// The binary, for `--config.check`.
const BIN: &str = env!("CARGO_BIN_EXE_kraken_exporter");

/// Runs `kraken_exporter --config.file <yaml> --config.check` with `env`; returns exit code and
/// combined output.
fn config_check(dir: &TempDir, yaml: &str, mode: u32, env: &[(&str, &str)]) -> (i32, String) {
    let path = dir.write(&format!("check-{}.yml", rand::random::<u32>()), yaml, mode);
    let output = std::process::Command::new(BIN)
        .args(["--config.file", path.to_str().unwrap(), "--config.check"])
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.code().unwrap_or(-1), text)
}

#[test]
fn config_check_names_the_place_and_the_fix_of_every_mistake() {
    let dir = TempDir::new();
    let secret = STANDARD.encode([0x2a_u8; 64]);
    let key = dir.write("k", "KEY1\n", 0o600);
    let key2 = dir.write("k2", "KEY1\n", 0o600);
    let good_secret = dir.write("s", &format!("{secret}\n"), 0o600);
    let bad_secret = dir.write("bad", "not-base64-at-all!\n", 0o600);
    let garbage = dir.write("garbage.nonce", "not a number\n", 0o600);
    let k = key.display();
    let k2 = key2.display();
    let s = good_secret.display();
    let b = bad_secret.display();
    let account =
        |name: &str| format!("  - name: {name}\n    key_file: {k}\n    secret_file: {s}\n");

    let valid = format!("accounts:\n{}", account("cold"));
    let (code, out) = config_check(&dir, &valid, 0o600, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("configuration OK: 1 account(s): cold"),
        "{out}"
    );

    let cases: Vec<(String, u32, Vec<&str>)> = vec![
        (
            format!("accounts:\n  - name: cold\n    key_file: {k}\n    secret_fil: {s}\n"),
            0o600,
            vec![
                "accounts[0] (cold)",
                "unknown field `secret_fil`",
                "secret_file",
                "fix the spelling",
            ],
        ),
        (
            format!("accounts:\n  - key_file: {k}\n    secret_file: {s}\n"),
            0o600,
            vec![
                "accounts[0].name",
                "is missing",
                "give every account a name",
            ],
        ),
        (
            format!(
                "accounts:\n{}{}",
                account("cold"),
                account("cold").replace(&k.to_string(), &k2.to_string())
            ),
            0o600,
            vec!["accounts[1] (cold).name", "must be unique"],
        ),
        (
            format!("accounts:\n  - name: cold\n    key_file: {k}\n"),
            0o600,
            vec!["accounts[0] (cold).secret", "is missing", "secret_file"],
        ),
        (
            format!(
                "accounts:\n  - name: cold\n    key_file: {k}\n    secret_file: /nonexistent/secret\n"
            ),
            0o600,
            vec![
                "accounts[0] (cold).secret_file",
                "/nonexistent/secret",
                "cannot be read",
                "check the path",
            ],
        ),
        (
            format!("accounts:\n  - name: cold\n    key_file: {k}\n    secret_file: {b}\n"),
            0o600,
            vec![
                "accounts[0] (cold).secret_file",
                "not valid base64",
                "copy the 'Private key'",
            ],
        ),
        (
            format!("accounts:\n  - name: cold\n    key_env: COLD_KEY\n    secret_file: {s}\n"),
            0o600,
            vec![
                "accounts[0] (cold).key_env",
                "COLD_KEY is not set",
                "set it",
            ],
        ),
        (
            format!("accounts:\n  - name: cold\n    key_file: {k}\n    secret: {secret}\n"),
            0o644,
            vec![
                "accounts[0] (cold).secret",
                "readable by its owner alone",
                "chmod 600",
            ],
        ),
        (
            format!(
                "accounts:\n{}  - name: hot\n    key_file: {k2}\n    secret_file: {s}\n",
                account("cold")
            ),
            0o600,
            vec![
                "accounts[1] (hot).key",
                "same API key as account \"cold\"",
                "its own key",
            ],
        ),
        (
            format!(
                "refresh:\n  min_interval: 10\naccounts:\n{}",
                account("cold")
            ),
            0o600,
            vec!["refresh.min_interval", "without a unit", "like 500ms"],
        ),
        (
            format!(
                "accounts:\n{}    min_balance: {{XBT: -1}}\n",
                account("cold")
            ),
            0o600,
            vec!["accounts[0] (cold).min_balance.XBT", "at least 0"],
        ),
        (
            format!(
                "accounts:\n{}    balance_endpoint: balances\n",
                account("cold")
            ),
            0o600,
            vec![
                "accounts[0] (cold).balance_endpoint",
                "auto, balance-ex, balance",
            ],
        ),
        (
            "accounts: []\n".to_owned(),
            0o600,
            vec!["accounts", "add at least one entry"],
        ),
        (
            format!(
                "kraken:\n  api_url: http://kraken.example\naccounts:\n{}",
                account("cold")
            ),
            0o600,
            vec!["kraken.api_url", "use https"],
        ),
        (
            format!("accounts:\n{}    name: again\n", account("cold")),
            0o600,
            vec![
                "accounts[0] (line 2",
                "duplicate field `name`",
                "keep only one",
            ],
        ),
        (
            format!("alerting: {{}}\naccounts:\n{}", account("cold")),
            0o600,
            vec!["unknown field `alerting`", "fix the spelling"],
        ),
        (
            format!(
                "accounts:\n{}    nonce_file: {}\n",
                account("cold"),
                garbage.display()
            ),
            0o600,
            vec![
                "accounts[0] (cold).nonce_file",
                "does not hold a decimal number",
                "fix or delete",
            ],
        ),
        (
            format!(
                "accounts:\n{}    nonce_file: /nonexistent/dir/cold.nonce\n",
                account("cold")
            ),
            0o600,
            vec![
                "accounts[0] (cold).nonce_file",
                "/nonexistent/dir",
                "does not exist",
            ],
        ),
        (
            // /proc takes no new file, even from root: the directory exists but is not writable.
            format!(
                "accounts:\n{}    nonce_file: /proc/cold.nonce\n",
                account("cold")
            ),
            0o600,
            vec![
                "accounts[0] (cold).nonce_file",
                "/proc/cold.nonce",
                "no file can be written in its directory /proc",
                "writable by the user the exporter runs as",
            ],
        ),
        (
            format!("accounts:\n  - name: _public\n    key_file: {k}\n    secret_file: {s}\n"),
            0o600,
            vec!["accounts[0] (_public).name", "reserved"],
        ),
    ];
    for (yaml, mode, expected) in cases {
        let (code, out) = config_check(&dir, &yaml, mode, &[]);
        assert_eq!(code, 2, "{yaml}\n{out}");
        for needle in expected {
            assert!(
                out.contains(needle),
                "{needle:?} missing for\n{yaml}\n--- output:\n{out}"
            );
        }
        assert!(!out.contains(&secret[..16]), "the secret leaked:\n{out}");
    }

    // Every mistake is reported at once.
    let several = format!(
        "accounts:\n  - name: cold\n    key_file: {k}\n    secret_file: {b}\n    min_balance: {{XBT: -2}}\n  - name: hot\n    key_env: NOPE\n    secret_file: {s}\n"
    );
    let (code, out) = config_check(&dir, &several, 0o600, &[]);
    assert_eq!(code, 2);
    assert!(out.contains("3 problems"), "{out}");
    assert!(
        out.contains("(cold).secret_file")
            && out.contains("(cold).min_balance.XBT")
            && out.contains("(hot).key_env"),
        "{out}"
    );
}

/// In demo mode the shared market has a simulated Kraken of its own: a reload that removes the
/// first account does not take the server of the public data (assets, pairs, prices) with it.
#[tokio::test(start_paused = true)]
async fn demo_prices_survive_a_reload_that_removes_the_first_account() {
    let dir = TempDir::new();
    let config = dir.write(
        "kraken.yml",
        "accounts:\n  - name: first\n  - name: second\n",
        0o600,
    );
    let no_env: SharedEnv = Arc::new(|_: &str| None);
    let served = Served::start_paused(
        &[
            "--demo",
            "--config.file",
            config.to_str().unwrap(),
            "--valuation.quote",
            "USD",
            "--refresh.min-interval",
            "1s",
            "--web.enable-lifecycle",
        ],
        no_env,
    )
    .await;
    let public_tickers = |body: &str| {
        sample(
            body,
            "kraken_requests_total",
            r#"account="_public",endpoint="Ticker""#,
        )
        .unwrap_or(0.0)
    };
    let public_errors = |body: &str| {
        body.lines()
            .filter(|line| {
                line.starts_with("kraken_request_errors_total{account=\"_public\"")
                    && !line.ends_with(" 0")
            })
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let until = Instant::now() + Duration::from_secs(20);
    let mut body = served.metrics().await;
    while public_tickers(&body) < 1.0 {
        assert!(Instant::now() < until, "no price was fetched:\n{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        body = served.metrics().await;
    }

    std::fs::write(&config, "accounts:\n  - name: second\n").unwrap();
    let response = client().post(served.url("/-/reload")).send().await.unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let before = public_tickers(&served.metrics().await);
    let mut body = served.metrics().await;
    while public_tickers(&body) < before + 2.0 {
        assert!(
            Instant::now() < until,
            "prices stopped after the reload:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        body = served.metrics().await;
    }
    assert_eq!(public_errors(&body), Vec::<String>::new(), "{body}");
    assert!(
        sample(&body, "kraken_up", r#"account="second""#) == Some(1.0),
        "{body}"
    );
    served.stop().await;
}

/// Without `--web.enable-lifecycle`, `POST /-/reload` is refused with 403 and changes nothing,
/// as Prometheus' own lifecycle API does.
#[tokio::test(start_paused = true)]
async fn reload_over_http_needs_the_lifecycle_flag() {
    let dir = TempDir::new();
    let config = dir.write("kraken.yml", "accounts:\n  - name: first\n", 0o600);
    let no_env: SharedEnv = Arc::new(|_: &str| None);
    let served = Served::start_paused(
        &["--demo", "--config.file", config.to_str().unwrap()],
        no_env,
    )
    .await;
    served.wait_ready().await;
    std::fs::write(&config, "accounts:\n  - name: second\n").unwrap();
    let response = client().post(served.url("/-/reload")).send().await.unwrap();
    assert_eq!(response.status(), 403);
    let text = response.text().await.unwrap();
    assert!(text.contains("--web.enable-lifecycle"), "{text}");
    let body = served.metrics().await;
    assert_eq!(
        sample(&body, "kraken_up", r#"account="first""#),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "kraken_up", r#"account="second""#),
        None,
        "{body}"
    );
    served.stop().await;
}

/// The nonce file ahead of the clock is the case nonce files exist for: a counter read from it
/// hands out `last + 1`. A reload that rebuilds an account while its refresh is in flight must
/// not leave two counters for the key (the old refresh calling on with its own), which would
/// both hand out the same next nonce.
#[tokio::test(start_paused = true)]
async fn a_reload_mid_refresh_keeps_one_nonce_counter_for_the_key() {
    let ahead = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 50_000_000;
    let dir = TempDir::new();
    let nonce_file = dir.write("hot.nonce", &format!("{ahead}\n"), 0o600);
    let extra = format!("nonce_file: {}", nonce_file.display());
    let fleet = Fleet::start_with(
        "refresh: {min_interval: 1s}",
        &[("hot", extra.as_str(), None)],
        &[],
        |_| SimOptions {
            latency: Duration::from_millis(300),
            ..SimOptions::default()
        },
    )
    .await;
    fleet.wait_up("hot").await;
    let good = std::fs::read_to_string(&fleet.config).unwrap();
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        // A scrape starts a refresh (balances, then the audit and Earn: about a second of calls).
        let scrape = tokio::spawn({
            let url = fleet.served.url("/metrics");
            async move { client().get(url).send().await.unwrap().status() }
        });
        tokio::time::sleep(Duration::from_millis(400)).await;
        // A global change rebuilds the account while that refresh is in flight.
        let min_interval = if round % 2 == 0 { "1100ms" } else { "1s" };
        std::fs::write(
            &fleet.config,
            good.replace("min_interval: 1s", &format!("min_interval: {min_interval}")),
        )
        .unwrap();
        let response = client()
            .post(fleet.served.url("/-/reload"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
        assert_eq!(scrape.await.unwrap(), 200);
    }
    let body = fleet.wait_up("hot").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let body = format!("{body}{}", fleet.served.metrics().await);
    let invalid: f64 = body
        .lines()
        .filter(|line| {
            line.starts_with("kraken_request_errors_total{")
                && line.contains(r#"account="hot""#)
                && line.contains(r#"reason="invalid_nonce""#)
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(
        invalid, 0.0,
        "Kraken refused nonces after the reloads:\n{body}"
    );
    assert!(
        fleet.sims[0].calls(Endpoint::BalanceEx) >= 4,
        "the rebuilt accounts called Kraken"
    );
    fleet.served.stop().await;
}
