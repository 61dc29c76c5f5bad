//! End to end against the real programs: the exporter binary in demo mode, scraped by
//! Prometheus through the example scrape configuration (both `/metrics` and `/probe`) and
//! evaluating the example rules, alerting through Alertmanager to a webhook served here. It
//! checks that every dashboard query returns data, that a balance below its minimum reaches the
//! webhook, and that the alerts of a healthy exporter stay quiet.
//!
//! Needs `prometheus`, `promtool` and `alertmanager` (Debian: `prometheus-alertmanager`);
//! without them it is ignored, except with `CI=true`, where it fails naming the package.

use std::collections::BTreeSet;
use std::fs::File;
use std::net::TcpListener as StdTcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use serde_norway::Value as Yaml;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use crate::rules::{dashboard, dashboard_panels, repo_path, require_tool, run_ok};

/// The exporter binary.
const BIN: &str = env!("CARGO_BIN_EXE_kraken_exporter");

/// The accounts of the exporter's configuration, also the `/probe` targets.
const ACCOUNTS: [&str; 2] = ["main", "savings"];

/// The exporter's configuration. XBT of `main` has a minimum of 5, above the demo's ≈1.23, so
/// KrakenBalanceBelowMinimum fires for it. The simulated Kraken enforces the Starter tier's rate
/// limit (15 calls, decaying 0.33/s), so refreshes are spaced 5 s apart although Prometheus
/// scrapes every second: closer, the key would be rate-limited within half a minute.
const EXPORTER_CONFIG: &str = "\
refresh: {min_interval: 5s}
valuation: {quote: USD}
accounts:
  - name: main
    min_balance: {XBT: 5, USD: 1000}
    min_value: {USD: 1000}
    # The demo withdraws 495 USD a minute.
    max_outflow: {USD: 100000, XBT: 0.5}
    # The demo key may read the ledger, so WithdrawStatus answers.
    allowed_permissions: [funds_query, websocket, ledger_query]
    watch: [XBT, ETH, USD, EUR]
  - name: savings
    min_balance: {ETH: 1}
    allowed_permissions: [funds_query, websocket, ledger_query]
";

/// The alert that must fire, and the ones a healthy exporter must not even have pending, each
/// with the family it reads when that is one of the exporter's optional families: such an alert
/// is checked once docs/metrics.md lists the family (tests/it/docs.rs holds the served families
/// to that list).
const FIRING: &str = "KrakenBalanceBelowMinimum";
const QUIET: [(&str, Option<&str>); 10] = [
    ("KrakenExporterDown", None),
    ("KrakenAccountDown", None),
    ("KrakenBalancesStale", None),
    ("KrakenAuthenticationFailing", None),
    ("KrakenRateLimited", None),
    ("KrakenConfigReloadFailed", None),
    ("KrakenConfigUnknownAsset", None),
    (
        "KrakenKeyHasUnexpectedPermission",
        Some("kraken_api_key_permission_allowed"),
    ),
    ("KrakenStreamDown", Some("kraken_stream_up")),
    ("KrakenOutflowAboveMax", Some("kraken_outflow_max")),
    // Not KrakenDepositOnHold: the demo holds a EUR deposit on purpose, so that panel has data.
];

/// The metric families docs/metrics.md documents: what this build serves.
fn documented_families() -> BTreeSet<String> {
    let markdown = std::fs::read_to_string(repo_path("docs/metrics.md")).unwrap();
    markdown
        .lines()
        .filter_map(|line| line.strip_prefix("### `")?.strip_suffix('`'))
        .map(str::to_owned)
        .collect()
}

/// Substitutes for the dashboard's variables: multi-value variables become `.*` (they sit in
/// `=~` matchers), Grafana's intervals become durations that suit a one-second scrape interval.
const SUBSTITUTIONS: [(&str, &str); 9] = [
    ("$__rate_interval", "1m"),
    ("$__interval", "15s"),
    ("$__range", "5m"),
    ("$instance", ".*"),
    ("$account", ".*"),
    ("$asset", ".*"),
    ("$job", ".*"),
    ("$quote", ".*"),
    ("$datasource", ""),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    any(missing_prometheus, missing_promtool, missing_alertmanager),
    ignore = "needs prometheus, promtool and alertmanager (apt-get install prometheus prometheus-alertmanager)"
)]
async fn the_example_stack_fills_every_panel_and_alerts_on_a_low_balance() {
    let prometheus = require_tool(&["prometheus"], "prometheus");
    let promtool = require_tool(&["promtool"], "prometheus");
    let alertmanager = require_tool(
        &["alertmanager", "prometheus-alertmanager"],
        "prometheus-alertmanager",
    );
    let started = Instant::now();
    let dir = TempDir::new();
    let client = crate::client();
    let mut failures: Vec<String> = Vec::new();

    // The exporter.
    let exporter_addr = format!("127.0.0.1:{}", free_port());
    let config = dir.write("kraken_exporter.yml", EXPORTER_CONFIG);
    let mut exporter = Spawned::start(
        "kraken_exporter",
        Path::new(BIN),
        &[
            "--demo",
            "--config.file",
            config.to_str().unwrap(),
            "--web.listen-address",
            &exporter_addr,
        ],
        &dir,
    );
    let exporter_url = format!("http://{exporter_addr}");
    wait_ok(&client, &format!("{exporter_url}/-/ready"), &mut exporter).await;

    // The webhook Alertmanager notifies, and Alertmanager.
    let webhook = Webhook::start().await;
    let am_addr = format!("127.0.0.1:{}", free_port());
    let am_config = dir.write(
        "alertmanager.yml",
        &format!(
            "route:\n  receiver: webhook\n  group_by: [alertname, account, asset]\n  \
             group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n  - name: webhook\n    webhook_configs:\n      \
             - url: http://{}/alerts\n        send_resolved: false\n",
            webhook.addr
        ),
    );
    let am_data = dir.mkdir("alertmanager-data");
    let mut am = Spawned::start(
        "alertmanager",
        &alertmanager,
        &[
            &format!("--config.file={}", am_config.display()),
            &format!("--storage.path={}", am_data.display()),
            &format!("--web.listen-address={am_addr}"),
            "--cluster.listen-address=",
        ],
        &dir,
    );
    wait_ok(&client, &format!("http://{am_addr}/-/ready"), &mut am).await;

    // Prometheus, with the example scrape jobs and rules pointed at this exporter.
    let prom_addr = format!("127.0.0.1:{}", free_port());
    let prom_config = write_prometheus_config(&dir, &exporter_addr, &am_addr);
    let prom_data = dir.mkdir("prometheus-data");
    let mut prom = Spawned::start(
        "prometheus",
        &prometheus,
        &[
            &format!("--config.file={}", prom_config.display()),
            &format!("--storage.tsdb.path={}", prom_data.display()),
            &format!("--web.listen-address={prom_addr}"),
        ],
        &dir,
    );
    let prom_url = format!("http://{prom_addr}");
    wait_ok(&client, &format!("{prom_url}/-/ready"), &mut prom).await;

    // The files as Prometheus and promtool see them, and the exposition as promtool lints it.
    run_ok(
        &promtool,
        &["check", "config", prom_config.to_str().unwrap()],
    );
    run_ok(
        &promtool,
        &[
            "check",
            "rules",
            dir.path("alerts.yml").to_str().unwrap(),
            dir.path("recording.yml").to_str().unwrap(),
        ],
    );
    run_ok(
        &promtool,
        &[
            "test",
            "rules",
            repo_path("examples/prometheus/tests/alerts_test.yml")
                .to_str()
                .unwrap(),
            repo_path("examples/prometheus/tests/recording_test.yml")
                .to_str()
                .unwrap(),
        ],
    );
    let exposition = client
        .get(format!("{exporter_url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    check_metrics(&promtool, &exposition);

    // Every target up: /metrics once, /probe once per account.
    let targets = poll(Duration::from_secs(30), || async {
        let data = api(&client, &prom_url, "/api/v1/targets", &[]).await?;
        let active = data["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let healthy =
            active.len() == 1 + ACCOUNTS.len() && active.iter().all(|t| t["health"] == "up");
        healthy.then_some(active.clone()).ok_or_else(|| {
            format!(
                "targets not all up: {}",
                serde_json::to_string_pretty(&active).unwrap()
            )
        })
    })
    .await;
    match targets {
        Ok(active) => {
            let instances: Vec<&str> = active
                .iter()
                .filter_map(|t| t["labels"]["instance"].as_str())
                .collect();
            for account in ACCOUNTS {
                if !instances.contains(&account) {
                    failures.push(format!(
                        "no /probe target with instance=\"{account}\": {instances:?}"
                    ));
                }
            }
        }
        Err(error) => failures.push(error),
    }

    // Every rule evaluated without error.
    if let Err(error) = poll(Duration::from_secs(30), || async {
        let data = api(&client, &prom_url, "/api/v1/rules", &[]).await?;
        let mut count = 0;
        let mut bad = Vec::new();
        for group in data["groups"].as_array().into_iter().flatten() {
            for rule in group["rules"].as_array().into_iter().flatten() {
                count += 1;
                if rule["health"] != "ok" {
                    bad.push(format!(
                        "{}/{}: health {} {}",
                        group["name"], rule["name"], rule["health"], rule["lastError"]
                    ));
                }
            }
        }
        if count == 0 {
            bad.push("no rules loaded".into());
        }
        bad.is_empty().then_some(()).ok_or(bad.join("\n"))
    })
    .await
    {
        failures.push(format!("rules not healthy:\n{error}"));
    }

    // The low balance fires and its notification reaches the webhook through Alertmanager.
    let fired = poll(Duration::from_secs(60), || async {
        let alerts = active_alerts(&client, &prom_url).await?;
        alerts
            .iter()
            .any(|a| {
                a["labels"]["alertname"] == FIRING
                    && a["labels"]["account"] == "main"
                    && a["labels"]["asset"] == "XBT"
                    && a["state"] == "firing"
            })
            .then_some(())
            .ok_or_else(|| format!("{FIRING} for main/XBT is not firing: {alerts:?}"))
    })
    .await;
    match fired {
        Err(error) => failures.push(error),
        Ok(()) => {
            let delivered = poll(Duration::from_secs(30), || async {
                let bodies = webhook.bodies();
                bodies
                    .iter()
                    .filter_map(|body| serde_json::from_str::<Json>(body).ok())
                    .any(|n| {
                        n["alerts"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|a| a["labels"]["alertname"] == FIRING && a["status"] == "firing")
                    })
                    .then_some(())
                    .ok_or_else(|| format!("no {FIRING} notification at the webhook: {bodies:?}"))
            })
            .await;
            if let Err(error) = delivered {
                failures.push(error);
            }
        }
    }

    // Every query of every dashboard panel and variable returns data.
    failures.extend(check_dashboard(&client, &prom_url).await);

    // A healthy exporter raises none of the other alerts, not even as pending.
    match active_alerts(&client, &prom_url).await {
        Ok(alerts) => {
            let documented = documented_families();
            let quiet: Vec<&str> = QUIET
                .iter()
                .filter(|(_, family)| family.is_none_or(|f| documented.contains(f)))
                .map(|(name, _)| *name)
                .collect();
            for alert in alerts {
                let name = alert["labels"]["alertname"].as_str().unwrap_or_default();
                if quiet.contains(&name) {
                    failures.push(format!("{name} is {}: {alert}", alert["state"]));
                }
            }
        }
        Err(error) => failures.push(error),
    }

    let logs = if failures.is_empty() {
        String::new()
    } else {
        [&exporter, &am, &prom]
            .iter()
            .map(|s| s.log_tail())
            .collect::<Vec<_>>()
            .join("\n")
    };
    for spawned in [&mut exporter, &mut am, &mut prom] {
        spawned.stop().await;
    }
    webhook.stop();
    eprintln!("end-to-end run took {:?}", started.elapsed());
    assert!(
        failures.is_empty(),
        "{} problem(s):\n\n{}\n\n{logs}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// Writes Prometheus's configuration: the scrape jobs of examples/prometheus.yml with their
/// relabelling kept and their targets pointed at this exporter, one-second intervals, the
/// example rule files (copied; KrakenBalanceBelowMinimum's `for` shortened to 1s, its expression
/// untouched) and this Alertmanager.
fn write_prometheus_config(dir: &TempDir, exporter: &str, alertmanager: &str) -> PathBuf {
    let mut alerts = crate::rules::yaml_file("examples/prometheus/alerts.yml");
    let mut shortened = false;
    for group in alerts["groups"].as_sequence_mut().unwrap() {
        for rule in group["rules"].as_sequence_mut().unwrap() {
            if rule["alert"].as_str() == Some(FIRING) {
                rule["for"] = Yaml::from("1s");
                shortened = true;
            }
        }
    }
    assert!(shortened, "{FIRING} is not in alerts.yml");
    dir.write("alerts.yml", &serde_norway::to_string(&alerts).unwrap());
    std::fs::copy(
        repo_path("examples/prometheus/recording.yml"),
        dir.path("recording.yml"),
    )
    .unwrap();

    let mut config = crate::rules::yaml_file("examples/prometheus.yml");
    config["global"] = serde_norway::from_str(
        "{scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}",
    )
    .unwrap();
    config["rule_files"] = serde_norway::from_str("[recording.yml, alerts.yml]").unwrap();
    config["alerting"] = serde_norway::from_str(&format!(
        "{{alertmanagers: [{{static_configs: [{{targets: ['{alertmanager}']}}]}}]}}"
    ))
    .unwrap();
    let mut probe_jobs = 0;
    for job in config["scrape_configs"].as_sequence_mut().unwrap() {
        let mapping = job.as_mapping_mut().unwrap();
        mapping.remove("scrape_interval");
        mapping.remove("scrape_timeout");
        let is_probe = job["metrics_path"].as_str() == Some("/probe");
        let targets: Vec<&str> = if is_probe {
            ACCOUNTS.to_vec()
        } else {
            vec![exporter]
        };
        job["static_configs"] =
            serde_norway::from_str(&format!("[{{targets: {targets:?}}}]")).unwrap();
        if is_probe {
            probe_jobs += 1;
            let mut pointed = false;
            for relabel in job["relabel_configs"].as_sequence_mut().unwrap() {
                if relabel["target_label"].as_str() == Some("__address__") {
                    relabel["replacement"] = Yaml::from(exporter);
                    pointed = true;
                }
            }
            assert!(pointed, "the /probe job sets no __address__");
        }
    }
    assert_eq!(probe_jobs, 1, "examples/prometheus.yml has one /probe job");
    dir.write("prometheus.yml", &serde_norway::to_string(&config).unwrap())
}

/// Lints an exposition with `promtool check metrics`.
fn check_metrics(promtool: &Path, exposition: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// One query of the dashboard: a panel target, or a variable's `label_values`.
struct DashboardQuery {
    /// Where it comes from, for the report.
    place: String,
    /// The PromQL expression (for a variable: the series selector), variables substituted.
    expr: String,
    /// For a variable: the label whose values it lists.
    label: Option<String>,
}

/// Runs every query of the dashboard until each has returned data, for at most 90 s while data
/// accumulates; returns a report of each that never did, naming metrics that have no series.
async fn check_dashboard(client: &reqwest::Client, prom: &str) -> Vec<String> {
    let dashboard = dashboard();
    let mut queries = Vec::new();
    for panel in dashboard_panels(&dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let Some(expr) = target["expr"].as_str() else {
                continue;
            };
            queries.push(DashboardQuery {
                place: format!(
                    "panel {:?} query {}",
                    panel["title"].as_str().unwrap_or_default(),
                    target["refId"].as_str().unwrap_or_default()
                ),
                expr: substitute(expr),
                label: None,
            });
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if variable["type"] != "query" {
            continue;
        }
        let definition = variable["query"].as_str().unwrap();
        let inner = definition
            .strip_prefix("label_values(")
            .and_then(|rest| rest.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {}: {definition}", variable["name"]));
        let (selector, label) = inner.rsplit_once(',').unwrap();
        queries.push(DashboardQuery {
            place: format!("variable ${}", variable["name"].as_str().unwrap()),
            expr: substitute(selector.trim()),
            label: Some(label.trim().to_owned()),
        });
    }
    // A panel on a family this build does not document (so does not serve) cannot show data;
    // it is named here, and checked as soon as docs/metrics.md lists the family.
    let documented = documented_families();
    queries.retain(|query| {
        let missing: Vec<String> = metric_names(&query.expr)
            .into_iter()
            .filter(|name| !name.contains(':') && !crate::rules::is_documented(&documented, name))
            .collect();
        if !missing.is_empty() {
            eprintln!(
                "dashboard: {} not checked: {} not in docs/metrics.md",
                query.place,
                missing.join(", ")
            );
        }
        missing.is_empty()
    });
    let mut failures = Vec::new();
    for query in &queries {
        // `$1` in label_replace is a regex capture reference, which Grafana leaves alone (no
        // variable is named by a number); any other `$` is a variable this test cannot fill.
        let variable_left = query
            .expr
            .match_indices('$')
            .any(|(at, _)| !query.expr[at + 1..].starts_with(|c: char| c.is_ascii_digit()));
        if variable_left {
            failures.push(format!(
                "{}: unknown variable left in {}",
                query.place, query.expr
            ));
        }
    }

    let deadline = Instant::now() + Duration::from_secs(90);
    let mut pending: Vec<(&DashboardQuery, String)> =
        queries.iter().map(|q| (q, String::new())).collect();
    loop {
        let mut still = Vec::new();
        for (query, _) in pending {
            let outcome = match &query.label {
                None => instant_query(client, prom, &query.expr).await,
                Some(label) => label_values(client, prom, &query.expr, label).await,
            };
            match outcome {
                Ok(count) if count > 0 => {}
                Ok(_) => still.push((query, "empty result".to_owned())),
                Err(error) => still.push((query, error)),
            }
        }
        pending = still;
        if pending.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    eprintln!(
        "dashboard: {} of {} queries returned data",
        queries.len() - pending.len(),
        queries.len()
    );
    for (query, why) in pending {
        let mut absent = Vec::new();
        for metric in metric_names(&query.expr) {
            let selector = format!("count({{__name__=\"{metric}\"}})");
            if instant_query(client, prom, &selector).await.unwrap_or(0) == 0 {
                absent.push(metric);
            }
        }
        let cause = if absent.is_empty() {
            "every metric it uses has series".to_owned()
        } else {
            format!("no series at all for {}", absent.join(", "))
        };
        failures.push(format!(
            "{} returned no data ({why}; {cause}):\n    {}",
            query.place, query.expr
        ));
    }
    failures
}

/// Replaces the dashboard's variables by values Prometheus accepts.
fn substitute(expr: &str) -> String {
    let mut out = expr.to_owned();
    for (name, value) in SUBSTITUTIONS {
        let braced = format!("${{{}}}", &name[1..]);
        out = out.replace(&braced, value).replace(name, value);
    }
    out
}

/// The metric names (exporter metrics and recorded series) an expression mentions.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut word = String::new();
    for c in expr.chars().chain([' ']) {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
            continue;
        }
        let is_metric = word.starts_with("kraken_")
            || (word.contains(':') && word.contains("kraken_") && !word.starts_with(':'));
        // A label matcher (`asset=~`) is followed by `=` or `!`; a metric is not.
        if is_metric && c != '=' && c != '!' && !names.contains(&word) {
            names.push(word.clone());
        }
        word.clear();
    }
    names
}

/// The number of series an instant query returns.
async fn instant_query(client: &reqwest::Client, prom: &str, expr: &str) -> Result<usize, String> {
    let data = api(client, prom, "/api/v1/query", &[("query", expr)]).await?;
    Ok(data["result"].as_array().map_or(0, Vec::len))
}

/// The number of series matching `selector` that carry `label`.
async fn label_values(
    client: &reqwest::Client,
    prom: &str,
    selector: &str,
    label: &str,
) -> Result<usize, String> {
    let start = (std::time::SystemTime::now() - Duration::from_secs(600))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let data = api(
        client,
        prom,
        "/api/v1/series",
        &[("match[]", selector), ("start", &start)],
    )
    .await?;
    Ok(data
        .as_array()
        .into_iter()
        .flatten()
        .filter(|series| series.get(label).is_some())
        .count())
}

/// Alerts Prometheus holds, pending or firing.
async fn active_alerts(client: &reqwest::Client, prom: &str) -> Result<Vec<Json>, String> {
    let data = api(client, prom, "/api/v1/alerts", &[]).await?;
    Ok(data["alerts"].as_array().cloned().unwrap_or_default())
}

/// GETs a Prometheus API path; returns `data` of a successful answer.
async fn api(
    client: &reqwest::Client,
    prom: &str,
    path: &str,
    query: &[(&str, &str)],
) -> Result<Json, String> {
    let response = client
        .get(format!("{prom}{path}"))
        .query(query)
        .send()
        .await
        .map_err(|e| format!("{path}: {e}"))?;
    let text = response.text().await.map_err(|e| format!("{path}: {e}"))?;
    let body: Json =
        serde_json::from_str(&text).map_err(|e| format!("{path}: not JSON: {e}: {text}"))?;
    if body["status"] != "success" {
        return Err(format!("{path} {query:?}: {}", body));
    }
    Ok(body["data"].clone())
}

/// Calls `attempt` every 500 ms until it succeeds or `limit` has passed; returns its last error.
async fn poll<T, F, Fut>(limit: Duration, mut attempt: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) if Instant::now() >= deadline => {
                return Err(format!("after {limit:?}: {error}"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Waits until `url` answers 200, failing with the program's log when it exits or takes longer
/// than 30 s.
async fn wait_ok(client: &reqwest::Client, url: &str, spawned: &mut Spawned) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = client.get(url).send().await
            && response.status().is_success()
        {
            return;
        }
        if let Ok(Some(status)) = spawned.child.try_wait() {
            panic!(
                "{} exited ({status}):\n{}",
                spawned.name,
                spawned.log_tail()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{url} not ready after 30 s:\n{}",
            spawned.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A port free on 127.0.0.1 a moment ago.
fn free_port() -> u16 {
    StdTcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process whose output goes to `<name>.log` in the test's directory; killed on drop.
struct Spawned {
    /// Program name, for messages.
    name: String,
    /// The running process.
    child: Child,
    /// Its standard output and error.
    log: PathBuf,
}

impl Spawned {
    fn start(name: &str, program: &Path, args: &[&str], dir: &TempDir) -> Spawned {
        let log = dir.path(&format!("{name}.log"));
        let out = File::create(&log).unwrap();
        let child = Command::new(program)
            .args(args)
            .current_dir(&dir.0)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Spawned {
            name: name.to_owned(),
            child,
            log,
        }
    }

    /// The last lines of its output.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        format!(
            "--- {} (last lines of {}):\n{tail}",
            self.name,
            self.log.display()
        )
    }

    /// Kills it and reaps it.
    async fn stop(&mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// An HTTP server on 127.0.0.1 that answers 200 to everything and keeps each request body.
struct Webhook {
    /// Where it listens.
    addr: std::net::SocketAddr,
    /// Bodies received so far.
    received: Arc<Mutex<Vec<String>>>,
    /// The accept loop.
    task: JoinHandle<()>,
}

impl Webhook {
    async fn start() -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let store = Arc::clone(&received);
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    if let Some(body) = read_request_body(&mut stream).await {
                        store.lock().unwrap().push(body);
                    }
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        )
                        .await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Webhook {
            addr,
            received,
            task,
        }
    }

    fn bodies(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }

    fn stop(self) {
        self.task.abort();
    }
}

/// Reads one HTTP/1.1 request and returns its body (by `Content-Length`).
async fn read_request_body(stream: &mut tokio::net::TcpStream) -> Option<String> {
    let mut buffer = Vec::new();
    let mut chunk = [0_u8; 4096];
    let header_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0);
    while buffer.len() < header_end + length {
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            break;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    Some(String::from_utf8_lossy(&buffer[header_end..]).into_owned())
}

/// A temporary directory removed at the end of the test.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "kraken-exporter-e2e-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn mkdir(&self, name: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::create_dir_all(&path).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn dashboard_variables_are_substituted_into_valid_matchers() {
    assert_eq!(
        substitute(
            r#"rate(x{job=~"$job",account=~"${account}|_public",asset=~"$asset"}[$__rate_interval])"#
        ),
        r#"rate(x{job=~".*",account=~".*|_public",asset=~".*"}[1m])"#
    );
    assert_eq!(
        substitute("y[$__interval] offset $__range"),
        "y[15s] offset 5m"
    );
}

#[test]
fn metric_names_are_found_in_expressions() {
    assert_eq!(
        metric_names(
            r#"max by (asset) (kraken_balance{kraken_x="1"}) * on(asset) account_asset:kraken_balance_value:quote"#
        ),
        ["kraken_balance", "account_asset:kraken_balance_value:quote"]
    );
}
