//! The monitoring files shipped with the exporter, checked without running it: the alerting and
//! recording rules and their unit tests (`promtool`), the example Prometheus and Alertmanager
//! configurations, the generated PrometheusRule, the Grafana dashboard, the runbook anchors of
//! the alerts, and the files the Docker examples mount.
//!
//! Tests that need `promtool` or `amtool` are ignored (and counted as such in the test summary)
//! when the tool was not on `PATH` at build time, except with `CI=true`, where they run and fail
//! naming the Debian package to install.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value as Json;
use serde_norway::Value as Yaml;

/// Permissions that let a key move or risk funds; the dashboard must show them in red.
const RISKY_PERMISSIONS: &str = "funds_withdraw|orders_create|orders_cancel";

/// A path inside the repository.
pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Finds the first of `names` on `PATH`, or fails the test naming the Debian package that ships
/// it. Tests that call this carry `#[cfg_attr(missing_<tool>, ignore = ...)]` (set by
/// `build.rs`), so without the tool they are reported as ignored rather than run; this failure
/// is what CI (`CI=true`, where nothing is ignored) or `--include-ignored` shows instead.
pub fn require_tool(names: &[&str], package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| is_executable(candidate))
        .unwrap_or_else(|| {
            panic!(
                "{} is not installed: apt-get install -y {package}",
                names.join(" or ")
            )
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs `program args`, failing the test with its output unless it exits 0; returns stdout.
pub fn run_ok(program: &Path, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{} {} failed ({}):\n{stdout}\n{stderr}",
        program.display(),
        args.join(" "),
        output.status
    );
    stdout
}

/// Parses a YAML file of the repository.
pub fn yaml_file(relative: &str) -> Yaml {
    let text = std::fs::read_to_string(repo_path(relative))
        .unwrap_or_else(|e| panic!("cannot read {relative}: {e}"));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{relative} is not YAML: {e}"))
}

/// Parses the Grafana dashboard.
pub fn dashboard() -> Json {
    let text = std::fs::read_to_string(repo_path("grafana/kraken-exporter.json")).unwrap();
    serde_json::from_str(&text).expect("grafana/kraken-exporter.json is valid JSON")
}

/// Every panel of the dashboard, rows' nested panels included (rows themselves left out).
pub fn dashboard_panels(dashboard: &Json) -> Vec<&Json> {
    fn walk<'a>(panels: &'a Json, out: &mut Vec<&'a Json>) {
        for panel in panels.as_array().into_iter().flatten() {
            if panel["type"] != "row" {
                out.push(panel);
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// The `groups` of a rule file (or of a PrometheusRule's `spec`).
fn groups(value: &Yaml) -> Vec<Yaml> {
    value["groups"]
        .as_sequence()
        .cloned()
        .unwrap_or_else(|| panic!("no groups in {value:?}"))
}

/// Every alerting rule of examples/prometheus/alerts.yml.
pub fn alert_rules() -> Vec<Yaml> {
    groups(&yaml_file("examples/prometheus/alerts.yml"))
        .iter()
        .flat_map(|group| group["rules"].as_sequence().cloned().unwrap_or_default())
        .filter(|rule| rule.get("alert").is_some())
        .collect()
}

#[test]
#[cfg_attr(
    missing_promtool,
    ignore = "needs promtool (apt-get install prometheus)"
)]
fn promtool_accepts_the_rule_files() {
    let promtool = require_tool(&["promtool"], "prometheus");
    let alerts = repo_path("examples/prometheus/alerts.yml");
    let recording = repo_path("examples/prometheus/recording.yml");
    run_ok(
        &promtool,
        &[
            "check",
            "rules",
            alerts.to_str().unwrap(),
            recording.to_str().unwrap(),
        ],
    );
}

#[test]
#[cfg_attr(
    missing_promtool,
    ignore = "needs promtool (apt-get install prometheus)"
)]
fn promtool_unit_tests_of_the_rules_pass() {
    let promtool = require_tool(&["promtool"], "prometheus");
    let alerts = repo_path("examples/prometheus/tests/alerts_test.yml");
    let recording = repo_path("examples/prometheus/tests/recording_test.yml");
    run_ok(
        &promtool,
        &[
            "test",
            "rules",
            alerts.to_str().unwrap(),
            recording.to_str().unwrap(),
        ],
    );
}

#[test]
#[cfg_attr(
    missing_promtool,
    ignore = "needs promtool (apt-get install prometheus)"
)]
fn promtool_accepts_the_example_prometheus_config_and_its_rule_files() {
    let promtool = require_tool(&["promtool"], "prometheus");
    let config = repo_path("examples/prometheus.yml");
    let out = run_ok(&promtool, &["check", "config", config.to_str().unwrap()]);
    assert!(out.contains("2 rule files found"), "{out}");
}

#[test]
#[cfg_attr(
    missing_amtool,
    ignore = "needs amtool (apt-get install prometheus-alertmanager)"
)]
fn amtool_accepts_the_example_alertmanager_config() {
    let amtool = require_tool(&["amtool"], "prometheus-alertmanager");
    let config = repo_path("examples/alertmanager.yml");
    run_ok(&amtool, &["check-config", config.to_str().unwrap()]);
}

#[test]
fn every_alert_is_unit_tested_firing_and_not_firing() {
    let tests = yaml_file("examples/prometheus/tests/alerts_test.yml");
    let mut fires = BTreeSet::new();
    let mut stays_quiet = BTreeSet::new();
    for case in tests["tests"].as_sequence().unwrap() {
        for check in case["alert_rule_test"].as_sequence().into_iter().flatten() {
            let name = check["alertname"].as_str().unwrap().to_owned();
            let expected = check["exp_alerts"].as_sequence().map_or(0, Vec::len);
            if expected == 0 {
                stays_quiet.insert(name);
            } else {
                fires.insert(name);
            }
        }
    }
    for rule in alert_rules() {
        let name = rule["alert"].as_str().unwrap();
        assert!(
            fires.contains(name),
            "{name} has no case where it fires in alerts_test.yml"
        );
        assert!(
            stays_quiet.contains(name),
            "{name} has no case where it must not fire in alerts_test.yml"
        );
    }
}

#[test]
fn alerts_follow_the_mixin_style_and_link_to_existing_runbook_sections() {
    let runbook = std::fs::read_to_string(repo_path("docs/runbook.md")).unwrap();
    let anchors = heading_anchors(&runbook);
    let runbook_base = format!("{}#", crate::mixin::defaults().runbook_url);
    let rules = alert_rules();
    assert!(rules.len() >= 9, "{} alerts", rules.len());
    for rule in &rules {
        let name = rule["alert"].as_str().unwrap();
        assert!(
            name.starts_with("Kraken")
                && name.chars().all(|c| c.is_ascii_alphanumeric())
                && name.chars().nth(6).is_some_and(|c| c.is_ascii_uppercase()),
            "{name}: alert names are CamelCase with the Kraken prefix"
        );
        let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["critical", "warning", "info"].contains(&severity),
            "{name}: severity {severity:?}"
        );
        for annotation in ["summary", "description", "runbook_url"] {
            assert!(
                rule["annotations"][annotation]
                    .as_str()
                    .is_some_and(|text| !text.trim().is_empty()),
                "{name}: no {annotation}"
            );
        }
        let url = rule["annotations"]["runbook_url"].as_str().unwrap();
        let anchor = url.strip_prefix(&runbook_base).unwrap_or_else(|| {
            panic!("{name}: runbook_url {url} does not start with {runbook_base} (runbook_url of mixin/config.yml)")
        });
        assert!(
            anchors.contains(anchor),
            "{name}: docs/runbook.md has no heading for #{anchor} (headings: {anchors:?})"
        );
    }
}

/// The anchors GitHub gives the headings of a Markdown text (outside code blocks).
pub fn heading_anchors(markdown: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut anchors = BTreeSet::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code || !line.starts_with('#') {
            continue;
        }
        let text = line.trim_start_matches('#').trim();
        let slug: String = text
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        anchors.insert(slug);
    }
    anchors
}

#[test]
fn prometheusrule_holds_exactly_the_groups_of_the_rule_files() {
    let rule = yaml_file("examples/kubernetes/prometheusrule.yaml");
    assert_eq!(rule["kind"].as_str(), Some("PrometheusRule"));
    assert_eq!(
        rule["apiVersion"].as_str(),
        Some("monitoring.coreos.com/v1")
    );
    let by_name = |groups: Vec<Yaml>, source: &str| {
        let mut map = BTreeMap::new();
        for group in groups {
            let name = group["name"].as_str().unwrap().to_owned();
            assert!(
                map.insert(name.clone(), group).is_none(),
                "group {name} twice in {source}"
            );
        }
        map
    };
    let mut files = groups(&yaml_file("examples/prometheus/alerts.yml"));
    files.extend(groups(&yaml_file("examples/prometheus/recording.yml")));
    let expected = by_name(files, "the rule files");
    let actual = by_name(groups(&rule["spec"]), "prometheusrule.yaml");
    assert_eq!(
        actual.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "run scripts/generate-mixin.sh"
    );
    for (name, group) in &expected {
        assert_eq!(
            &actual[name], group,
            "group {name} differs: run scripts/generate-mixin.sh"
        );
    }
}

#[test]
fn dashboard_is_importable_and_takes_its_data_source_from_a_variable() {
    let dashboard = dashboard();
    let text = std::fs::read_to_string(repo_path("grafana/kraken-exporter.json")).unwrap();
    // Provisioning does not substitute import-time inputs: a ${DS_...} would stay literal.
    assert!(
        dashboard.get("__inputs").is_none() && !text.contains("${DS_"),
        "the dashboard must not depend on an import-time ${{DS_...}} input"
    );
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    let variable = |name: &str| {
        variables
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no ${name} variable"))
    };
    let datasource = variable("datasource");
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    assert_eq!(datasource["current"]["value"], "default");
    for name in ["job", "instance", "account", "asset", "quote"] {
        let v = variable(name);
        assert_eq!(v["type"], "query", "${name}");
        assert_eq!(v["multi"], true, "${name} is multi-value");
        assert_eq!(v["includeAll"], true, "${name} has All");
        assert_eq!(v["allValue"], ".*", "${name}: All must be a regex");
        assert_eq!(v["datasource"]["uid"], "${datasource}", "${name}");
        assert!(
            v["query"]
                .as_str()
                .is_some_and(|q| q.starts_with("label_values(")),
            "${name}: a label_values() query, which the end-to-end test runs"
        );
    }
    let job_selector = crate::mixin::defaults().job_selector;
    assert_eq!(
        variable("job")["query"],
        format!("label_values(up{{{job_selector}}}, job)"),
        "the job list comes from up, so a dead exporter stays selectable"
    );
    assert_eq!(
        variable("account")["query"],
        r#"label_values(kraken_up{job=~"$job",instance=~"$instance"}, account)"#
    );

    // No data source is named by a fixed uid anywhere: only ${datasource}.
    let mut uids = Vec::new();
    collect_datasource_refs(&dashboard, &mut uids);
    assert!(!uids.is_empty());
    for uid in &uids {
        assert_eq!(uid, "${datasource}", "hard-coded data source");
    }

    let panels = dashboard_panels(&dashboard);
    assert!(panels.len() >= 12, "{} panels", panels.len());
    let mut ids = BTreeSet::new();
    for panel in &panels {
        let title = panel["title"].as_str().unwrap_or_default();
        assert!(
            ids.insert(panel["id"].as_i64()),
            "duplicate panel id in {title}"
        );
        if panel["type"] == "alertlist" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title} has no query");
        for target in targets {
            assert!(
                target["expr"].as_str().is_some_and(|e| !e.is_empty()),
                "{title}: {target}"
            );
            assert!(target["refId"].is_string(), "{title}: {target}");
        }
    }
}

/// The Grafana version the compose file runs, which `__requires` must name: schemaVersion 39 is
/// what it writes.
#[test]
fn dashboard_requires_the_grafana_it_is_written_for() {
    let dashboard = dashboard();
    let compose = yaml_file("examples/docker-compose.yml");
    let image = compose["services"]["grafana"]["image"].as_str().unwrap();
    let tag = image.rsplit_once(':').unwrap().1;
    let requires = dashboard["__requires"].as_array().unwrap();
    let grafana = requires.iter().find(|r| r["id"] == "grafana").unwrap();
    assert_eq!(grafana["version"], tag, "__requires vs {image}");
    assert_eq!(
        dashboard["schemaVersion"], 39,
        "Grafana {tag} writes schemaVersion 39"
    );
    let panel_types: BTreeSet<&str> = dashboard_panels(&dashboard)
        .iter()
        .filter_map(|p| p["type"].as_str())
        .collect();
    let required: BTreeSet<&str> = requires
        .iter()
        .filter(|r| r["type"] == "panel")
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(
        required, panel_types,
        "__requires lists exactly the panel types used"
    );
}

#[test]
fn every_dashboard_query_follows_the_job_and_instance_variables() {
    let dashboard = dashboard();
    let mut checked = 0;
    for panel in dashboard_panels(&dashboard) {
        let title = panel["title"].as_str().unwrap_or_default();
        if panel["type"] == "alertlist" {
            let filter = panel["options"]["alertInstanceLabelFilter"]
                .as_str()
                .unwrap();
            assert!(
                filter.contains(r#"job=~"$job""#) && filter.contains(r#"instance=~"$instance""#),
                "{title}: {filter}"
            );
            continue;
        }
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            for (name, matchers) in crate::mixin::selectors(expr) {
                assert!(
                    matchers.contains(r#"job=~"$job""#)
                        && matchers.contains(r#"instance=~"$instance""#),
                    "panel {title:?}: {name}{matchers} ignores $job or $instance"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 30, "only {checked} selectors checked");
}

#[test]
fn dashboard_shows_whether_each_exporter_is_up_and_lists_firing_alerts() {
    let dashboard = dashboard();
    let panels = dashboard_panels(&dashboard);
    let job_selector = crate::mixin::defaults().job_selector;
    let up = panels
        .iter()
        .find(|p| {
            p["targets"].as_array().into_iter().flatten().any(|t| {
                t["expr"]
                    .as_str()
                    .is_some_and(|e| e.contains(&format!("up{{{job_selector},")))
            })
        })
        .expect("a panel on up{<job selector>}");
    assert_eq!(up["type"], "stat");
    let defaults = &up["fieldConfig"]["defaults"];
    assert_eq!(
        defaults["thresholds"]["steps"][0]["color"], "red",
        "0 is red"
    );
    assert_eq!(defaults["thresholds"]["steps"][1]["value"], 1);
    assert_eq!(up["options"]["colorMode"], "background");
    let alerts = panels
        .iter()
        .find(|p| p["type"] == "alertlist")
        .expect("an alert list panel");
    assert_eq!(
        alerts["options"]["alertName"], "Kraken",
        "every alert is named Kraken*"
    );
    assert_eq!(alerts["options"]["stateFilter"]["firing"], true);
}

/// Every data source uid (or legacy data source name) the dashboard refers to.
fn collect_datasource_refs(value: &Json, out: &mut Vec<String>) {
    match value {
        Json::Object(map) => {
            for (key, inner) in map {
                if key == "datasource" {
                    match inner {
                        Json::String(name) => out.push(name.clone()),
                        Json::Object(reference) => out.push(
                            reference
                                .get("uid")
                                .and_then(Json::as_str)
                                .unwrap_or("<no uid>")
                                .to_owned(),
                        ),
                        _ => {}
                    }
                }
                collect_datasource_refs(inner, out);
            }
        }
        Json::Array(items) => items.iter().for_each(|i| collect_datasource_refs(i, out)),
        _ => {}
    }
}

#[test]
fn dashboard_shows_amounts_values_and_risky_permissions_as_such() {
    let dashboard = dashboard();
    let panels = dashboard_panels(&dashboard);
    let exprs = |panel: &Json| -> String {
        panel["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["expr"].as_str())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut seen = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap();
        let exprs = exprs(panel);
        let defaults = &panel["fieldConfig"]["defaults"];
        let unit = defaults["unit"].as_str().unwrap_or_default();
        if exprs.contains("kraken_balance_value") {
            // Grafana cannot take a unit from a variable: the quote is named in the title (the
            // $quote variable) and in every series name (the quote label), never hard-coded.
            assert!(
                !unit.starts_with("currency") && title.contains("$quote"),
                "{title}: the quote currency must follow $quote, not a fixed unit {unit:?}"
            );
            assert!(exprs.contains(r#"quote=~"$quote""#), "{title}: {exprs}");
            for target in panel["targets"].as_array().unwrap() {
                let legend = target["legendFormat"].as_str().unwrap_or_default();
                assert!(legend.contains("{{quote}}"), "{title}: legend {legend:?}");
            }
            seen.insert("value");
        } else if (exprs.contains("kraken_balance{") || exprs.contains("kraken_balance_hold{"))
            && unit != "percentunit"
        {
            assert_eq!(
                defaults["decimals"], 8,
                "{title}: crypto amounts need 8 decimals"
            );
            seen.insert("amount");
        }
        if exprs.contains("kraken_api_key_permission") {
            assert!(exprs.contains(RISKY_PERMISSIONS), "{title}: {exprs}");
            assert!(
                panel.to_string().contains(r#""color":"red""#),
                "{title}: risky permissions are not shown in red"
            );
            seen.insert("permissions");
        }
        if exprs.contains("histogram_quantile") {
            assert!(
                exprs.contains("rate(kraken_request_duration_seconds_bucket{")
                    && exprs.contains("[$__rate_interval]"),
                "{title}: {exprs}"
            );
            seen.insert("latency");
        }
    }
    assert_eq!(
        seen,
        BTreeSet::from(["amount", "latency", "permissions", "value"]),
        "panels missing"
    );
}

#[test]
fn docker_examples_mount_and_copy_files_that_exist() {
    let compose = yaml_file("examples/docker-compose.yml");
    let examples = repo_path("examples");
    let mut checked = 0;
    for (name, service) in compose["services"].as_mapping().unwrap() {
        for volume in service["volumes"].as_sequence().into_iter().flatten() {
            let source = volume.as_str().unwrap().split(':').next().unwrap();
            if source.starts_with('.') {
                assert!(
                    examples.join(source).exists(),
                    "service {name:?} mounts {source}, which does not exist"
                );
                checked += 1;
            }
        }
        if let Some(build) = service.get("build") {
            let context = examples.join(build["context"].as_str().unwrap());
            let dockerfile = context.join(build["dockerfile"].as_str().unwrap());
            assert!(dockerfile.exists(), "{}", dockerfile.display());
            let text = std::fs::read_to_string(&dockerfile).unwrap();
            for line in text
                .lines()
                .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
            {
                let words: Vec<&str> = line.split_whitespace().collect();
                for source in &words[1..words.len() - 1] {
                    assert!(context.join(source).exists(), "{line}: {source} is missing");
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 8, "only {checked} paths checked");
}

#[test]
fn the_example_probe_job_scrapes_the_accounts_of_the_example_config() {
    let names = |values: &[Yaml]| -> BTreeSet<String> {
        values
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    let exporter = yaml_file("examples/kraken_exporter.yml");
    let account_names: Vec<Yaml> = exporter["accounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a["name"].clone())
        .collect();
    let prometheus = yaml_file("examples/prometheus.yml");
    let probe = prometheus["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|job| job["metrics_path"].as_str() == Some("/probe"))
        .expect("a /probe job in examples/prometheus.yml");
    let targets: Vec<Yaml> = probe["static_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|c| c["targets"].as_sequence().cloned().unwrap_or_default())
        .collect();
    assert_eq!(
        names(&targets),
        names(&account_names),
        "the /probe targets of examples/prometheus.yml must be the account names of \
         examples/kraken_exporter.yml: /probe refuses any other name"
    );
}

/// The one-line alert of the README, taken from its `promql` block.
fn readme_alert_expression() -> String {
    let readme = std::fs::read_to_string(repo_path("README.md")).unwrap();
    let start = readme
        .find("```promql\n")
        .expect("README.md has a ```promql block with the one-line alert");
    let body = &readme[start + "```promql\n".len()..];
    let expr = body[..body.find("```").unwrap()].trim().to_owned();
    assert!(
        expr.contains("kraken_balance_available")
            && expr.contains("kraken_balance_min")
            && !expr.contains('\n'),
        "README's alert example: {expr}"
    );
    expr
}

/// The README's alert, evaluated by promtool on the series of an exporter scraped twice (by
/// `/metrics` and by `/probe`, as examples/prometheus.yml does): it must fire once per target
/// and never fail with "many-to-many matching not allowed".
#[test]
#[cfg_attr(
    missing_promtool,
    ignore = "needs promtool (apt-get install prometheus)"
)]
fn the_readme_alert_stays_one_to_one_when_both_metrics_and_probe_are_scraped() {
    let promtool = require_tool(&["promtool"], "prometheus");
    let expr = readme_alert_expression();
    let dir = std::env::temp_dir().join(format!(
        "kraken-readme-alert-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let rules = format!(
        "groups:\n  - name: readme\n    rules:\n      - alert: ReadmeBalanceBelowMinimum\n        expr: '{}'\n",
        expr.replace('\'', "''")
    );
    std::fs::write(dir.join("readme.yml"), rules).unwrap();
    let mut series = String::new();
    let mut expected = String::new();
    for (job, instance) in [("kraken", "exporter:10987"), ("kraken-probe", "main")] {
        // What can be spent, per base asset: the README compares it, not the raw codes.
        series.push_str(&format!(
            "      - series: 'kraken_balance_available{{job=\"{job}\",instance=\"{instance}\",account=\"main\",asset=\"XBT\"}}'\n        values: '0.01x5'\n"
        ));
        for (asset, code) in [("XBT", "XXBT"), ("XBT.F", "XBT.F")] {
            series.push_str(&format!(
                "      - series: 'kraken_balance{{job=\"{job}\",instance=\"{instance}\",account=\"main\",asset=\"{asset}\",code=\"{code}\"}}'\n        values: '1x5'\n"
            ));
        }
        series.push_str(&format!(
            "      - series: 'kraken_balance_min{{job=\"{job}\",instance=\"{instance}\",account=\"main\",asset=\"XBT\"}}'\n        values: '0.05x5'\n"
        ));
        expected.push_str(&format!(
            "          - exp_labels: {{job: {job}, instance: \"{instance}\", account: main, asset: XBT}}\n"
        ));
    }
    let test = format!(
        "rule_files: [readme.yml]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n{series}    alert_rule_test:\n      - eval_time: 2m\n        alertname: ReadmeBalanceBelowMinimum\n        exp_alerts:\n{expected}"
    );
    std::fs::write(dir.join("readme_test.yml"), test).unwrap();
    let out = run_ok(
        &promtool,
        &[
            "test",
            "rules",
            dir.join("readme_test.yml").to_str().unwrap(),
        ],
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn dashboard_shows_key_hygiene_and_earn_allocations_per_account() {
    let dashboard = dashboard();
    let panels = dashboard_panels(&dashboard);
    let exprs_of = |title: &str| -> String {
        let panel = panels
            .iter()
            .find(|p| p["title"] == title)
            .unwrap_or_else(|| panic!("no panel {title:?}"));
        panel["targets"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["expr"].as_str())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let hygiene = exprs_of("API key hygiene");
    for family in [
        "kraken_api_key_info{",
        "kraken_api_key_expiry_timestamp_seconds{",
        "kraken_api_key_ip_allowlist_entries{",
        "kraken_api_key_created_timestamp_seconds{",
    ] {
        assert!(
            hygiene.contains(family),
            "key hygiene lacks {family}: {hygiene}"
        );
    }
    assert!(hygiene.contains("by (account"), "{hygiene}");
    let earn = exprs_of("Earn allocations by state");
    assert!(earn.contains("by (account, asset, state)"), "{earn}");
    let next = exprs_of("Next unbonding");
    assert!(
        next.contains("kraken_earn_next_unbonding_timestamp_seconds{"),
        "{next}"
    );
}

/// Whether a series name belongs to a documented family (a histogram's `_bucket`, `_sum` and
/// `_count` series to the histogram).
pub fn is_documented(documented: &BTreeSet<String>, series: &str) -> bool {
    documented.contains(series)
        || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
            series
                .strip_suffix(suffix)
                .is_some_and(|family| documented.contains(family))
        })
}

/// Every metric family named in a PromQL text (`kraken_*`, not recorded series).
fn families_in(text: &str) -> BTreeSet<String> {
    crate::mixin::selectors(text)
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| name.starts_with("kraken_") && !name.contains(':'))
        .collect()
}

/// The dashboard and the rules may read only families the exporter documents
/// (docs/metrics.md), or families the rules' unit tests feed and so pin down by name: a
/// misspelt family in a panel or a rule is caught here rather than showing no data.
#[test]
fn dashboard_and_rules_read_only_known_families() {
    let documented: BTreeSet<String> = std::fs::read_to_string(repo_path("docs/metrics.md"))
        .unwrap()
        .lines()
        .filter_map(|line| line.strip_prefix("### `")?.strip_suffix('`'))
        .map(str::to_owned)
        .collect();
    let tests = yaml_file("examples/prometheus/tests/alerts_test.yml");
    let mut fed = BTreeSet::new();
    for case in tests["tests"].as_sequence().unwrap() {
        for input in case["input_series"].as_sequence().into_iter().flatten() {
            let series = input["series"].as_str().unwrap();
            fed.insert(series[..series.find('{').unwrap_or(series.len())].to_owned());
        }
    }
    let mut read = BTreeSet::new();
    for panel in dashboard_panels(&dashboard()) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            read.extend(families_in(target["expr"].as_str().unwrap_or_default()));
        }
    }
    let mut from_rules = 0;
    for rule in alert_rules() {
        let names = families_in(rule["expr"].as_str().unwrap());
        from_rules += names.len();
        read.extend(names);
    }
    assert!(read.len() >= 25 && from_rules >= 20, "{read:?}");
    let unknown: Vec<&String> = read
        .iter()
        .filter(|name| !is_documented(&documented, name) && !fed.contains(*name))
        .collect();
    assert!(
        unknown.is_empty(),
        "read by the dashboard or the rules, but neither documented in docs/metrics.md nor fed \
         to examples/prometheus/tests/alerts_test.yml: {unknown:?}"
    );
}
