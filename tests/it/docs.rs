//! The documentation checked against the code, so it cannot drift: every metric family the
//! exporter serves is in docs/metrics.md with the same HELP text (and nothing else is), every
//! flag of `kraken_exporter --help` is in docs/configuration.md with its default (and nothing
//! else is), the README stays a five-minute read, and every link in the Markdown files leads
//! somewhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::SimOptions;
use kraken::MovementStatus;
use kraken::sim::{SimKeyInfo, SimKraken, SimLedgerEntry, SimMovement};

use crate::rules::{heading_anchors, repo_path};
use crate::{Clock, Harness, poll_until};

/// The most the README may weigh: read in about five minutes.
const README_MAX_BYTES: usize = 12 * 1024;

/// The exporter's configuration for the metrics check: everything that adds a family on (the
/// stream's URL is the simulator's).
const EVERY_FAMILY_CONFIG: &str = "\
refresh: {min_interval: 100ms}
valuation: {quote: USD, trade_balance: true}
stream: {url: WS_URL}
accounts:
  - name: main
    key_env: KRAKEN_API_KEY
    secret_env: KRAKEN_API_SECRET
    min_balance: {XBT: 5}
    min_value: {USD: 1000}
    max_outflow: {XBT: 0.5}
    allowed_permissions: [funds_query, websocket, ledger_query]
    # Not a Kraken asset: kraken_config_unknown_asset.
    watch: [XBT, ETH, ETHH]
";

/// The HELP texts of an exposition, by family name, unescaped.
fn served_help(exposition: &str) -> BTreeMap<String, String> {
    exposition
        .lines()
        .filter_map(|line| line.strip_prefix("# HELP "))
        .map(|rest| {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            let text = text.replace("\\n", "\n").replace("\\\\", "\\");
            (name.to_owned(), text)
        })
        .collect()
}

/// The families of docs/metrics.md: each `### \`name\`` heading, with the first `> ` line
/// after it as its HELP text (`None` when it has none).
fn documented_help(markdown: &str) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        if let Some(heading) = line.strip_prefix("### ") {
            current = heading
                .strip_prefix('`')
                .and_then(|rest| rest.strip_suffix('`'))
                .map(str::to_owned);
            if let Some(name) = &current {
                assert!(
                    out.insert(name.clone(), None).is_none(),
                    "docs/metrics.md documents {name} twice"
                );
            }
        } else if line.starts_with('#') {
            current = None;
        } else if let (Some(name), Some(help)) = (&current, line.strip_prefix("> ")) {
            let entry = out.get_mut(name).unwrap();
            if entry.is_none() {
                *entry = Some(help.to_owned());
            }
        }
    }
    out
}

/// A directory that is removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "kraken-docs-test-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(start_paused = true)]
async fn every_served_metric_family_is_documented_with_its_help_text_and_vice_versa() {
    let markdown = std::fs::read_to_string(repo_path("docs/metrics.md")).unwrap();
    let documented = documented_help(&markdown);
    assert!(documented.len() >= 15, "{documented:?}");

    let dir = TempDir::new();
    let config = dir.0.join("kraken_exporter.yml");
    // A key that may stream (the ledger families) and read withdrawals in flight.
    let sim = SimKraken::start(SimOptions {
        trade_balance_enabled: true,
        permissions: ["query-funds", "create-ws-token", "query-ledger"]
            .map(str::to_owned)
            .to_vec(),
        ..SimOptions::default()
    })
    .await
    .unwrap();
    std::fs::write(
        &config,
        EVERY_FAMILY_CONFIG.replace("WS_URL", &sim.ws_url()),
    )
    .unwrap();
    // Money in flight: kraken_deposit_in_flight, kraken_withdrawal_in_flight.
    sim.set_deposits(vec![SimMovement::new(
        "Bitcoin",
        "XXBT",
        0.1,
        MovementStatus::Pending,
    )]);
    sim.set_withdrawals(vec![SimMovement::new(
        "Bitcoin",
        "XXBT",
        0.2,
        MovementStatus::Initial,
    )]);
    sim.set_balances(vec![
        ("XXBT".to_owned(), 1.5, 0.25),
        ("ZUSD".to_owned(), 100.0, 0.0),
        // No market prices it: kraken_asset_price_missing.
        ("NEWCOIN".to_owned(), 3.0, 0.0),
    ]);
    // A key with an expiry date: kraken_api_key_expiry_timestamp_seconds.
    sim.set_key_info(SimKeyInfo {
        name: "exporter".to_owned(),
        valid_until: 1_800_000_000,
        created: 1_772_542_900,
        ip_allowlist: vec![],
        last_used: None,
    });
    let harness = Harness::serve(
        Clock::Paused,
        sim,
        &["--config.file", config.to_str().unwrap()],
    )
    .await;
    harness.wait_ready().await;
    // A deposit on the stream, once it is up: kraken_ledger_entries_total with a count.
    poll_until(Duration::from_secs(30), async || {
        harness
            .metrics()
            .await
            .contains(r#"kraken_stream_up{account="main"} 1"#)
    })
    .await;
    harness
        .sim
        .post_ledger(SimLedgerEntry::deposit("BTC", 0.05))
        .unwrap();

    // Families appear as the refresh, the audit, TradeBalance and the prices complete: scrape
    // until every documented one is served, or give up and report.
    let mut served = BTreeMap::new();
    poll_until(Duration::from_secs(20), async || {
        served = served_help(&harness.metrics().await);
        documented.keys().all(|name| served.contains_key(name))
    })
    .await;
    harness.stop().await;

    let mut problems = Vec::new();
    for (name, help) in &served {
        match documented.get(name) {
            None => problems.push(format!(
                "{name} is served but not documented in docs/metrics.md: add a \"### `{name}`\" \
                 section with its type, labels and the line \"> {help}\""
            )),
            Some(None) => problems.push(format!(
                "docs/metrics.md documents {name} without its HELP text: add the line \"> {help}\""
            )),
            Some(Some(text)) if text != help => problems.push(format!(
                "docs/metrics.md has another HELP text for {name}:\n    docs:   {text}\n    served: {help}"
            )),
            Some(Some(_)) => {}
        }
    }
    for name in documented.keys() {
        if !served.contains_key(name) {
            problems.push(format!(
                "docs/metrics.md documents {name}, which the exporter did not serve (with \
                 valuation, TradeBalance, a threshold, an unknown asset name and an unpriced \
                 asset): remove it, or make \
                 this test's setup serve it"
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

/// Each long flag of `--help` with the default it prints, if any.
fn help_flags(help: &str) -> BTreeMap<String, Option<String>> {
    let mut flags = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in help.lines() {
        let trimmed = line.trim_start();
        if line.starts_with("  ") && trimmed.starts_with('-') {
            current = trimmed
                .split([' ', ','])
                .find(|word| word.starts_with("--"))
                .map(str::to_owned);
            if let Some(flag) = &current {
                flags.insert(flag.clone(), None);
            }
        }
        if let (Some(flag), Some(start)) = (&current, line.find("[default: ")) {
            let rest = &line[start + "[default: ".len()..];
            let value = &rest[..rest.find(']').unwrap()];
            flags.insert(flag.clone(), Some(value.to_owned()));
        }
    }
    flags
}

/// Each long flag in the first cell of a table row of docs/configuration.md's "## Flags"
/// section, with the row's second cell.
fn documented_flags(markdown: &str) -> BTreeMap<String, String> {
    let start = markdown
        .find("\n## Flags\n")
        .expect("docs/configuration.md has a \"## Flags\" section");
    let section = &markdown[start + 1..];
    let section = &section[..section[1..].find("\n## ").map_or(section.len(), |i| i + 1)];
    let mut flags = BTreeMap::new();
    for row in section.lines().filter(|l| l.starts_with("| `-")) {
        let cells: Vec<&str> = row.split(" | ").collect();
        for word in cells[0].split('`').filter(|w| w.starts_with("--")) {
            flags.insert(
                word.to_owned(),
                cells.get(1).copied().unwrap_or("").to_owned(),
            );
        }
    }
    flags
}

#[test]
fn every_flag_of_help_is_documented_with_its_default_and_vice_versa() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kraken_exporter"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    let in_help = help_flags(&help);
    assert!(in_help.len() >= 20, "{in_help:?}");
    let markdown = std::fs::read_to_string(repo_path("docs/configuration.md")).unwrap();
    let documented = documented_flags(&markdown);

    let mut problems = Vec::new();
    for (flag, default) in &in_help {
        match documented.get(flag) {
            None => problems.push(format!(
                "{flag} is in `kraken_exporter --help` but not in docs/configuration.md: add a \
                 row to its flags table"
            )),
            Some(cell) => {
                if let Some(default) = default
                    && !cell.contains(&format!("`{default}`"))
                {
                    problems.push(format!(
                        "docs/configuration.md gives {flag} the default {cell:?}, but --help says \
                         `{default}`"
                    ));
                }
            }
        }
    }
    for flag in documented.keys() {
        if !in_help.contains_key(flag) {
            problems.push(format!(
                "docs/configuration.md documents {flag}, which `kraken_exporter --help` does \
                 not list: remove or rename its row"
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

#[test]
fn the_readme_stays_a_five_minute_read() {
    let size = std::fs::metadata(repo_path("README.md")).unwrap().len() as usize;
    assert!(
        size <= README_MAX_BYTES,
        "README.md is {size} bytes, more than {README_MAX_BYTES}: move details to docs/"
    );
}

/// The Markdown files of the project (not of dependencies or build output).
fn markdown_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in [".", "docs"] {
        for entry in std::fs::read_dir(repo_path(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The targets of the inline links `[text](target)` of a Markdown text, outside code.
fn link_targets(markdown: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut in_code_block = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_code_block = !in_code_block;
            continue;
        }
        if in_code_block {
            continue;
        }
        // Drop inline code spans, which may hold `](` legitimately.
        let prose: String = line
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, s)| s)
            .collect::<Vec<_>>()
            .join(" ");
        let mut rest = prose.as_str();
        while let Some(start) = rest.find("](") {
            let after = &rest[start + 2..];
            let end = after.find(')').unwrap_or(after.len());
            targets.push(after[..end].to_owned());
            rest = &after[end..];
        }
    }
    targets
}

#[test]
fn every_relative_link_in_the_markdown_files_leads_to_a_file_and_heading_that_exist() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.strip_prefix(repo_path("")).unwrap_or(&file).display();
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let linked: PathBuf = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap_or(Path::new(".")).join(path)
            };
            checked += 1;
            if !linked.exists() {
                problems.push(format!("{name}: link to {target}: {path} does not exist"));
                continue;
            }
            if !anchor.is_empty() {
                let linked_text = std::fs::read_to_string(&linked).unwrap_or_default();
                if !heading_anchors(&linked_text).contains(anchor) {
                    problems.push(format!(
                        "{name}: link to {target}: {} has no heading for #{anchor}",
                        if path.is_empty() { "it" } else { path }
                    ));
                }
            }
        }
    }
    assert!(checked >= 50, "only {checked} links checked");
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

/// Every text file the project ships, for checks over all of them.
fn shipped_text_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if !["target", ".git", "node_modules", "dist"].contains(&name.as_str()) {
                    walk(&path, out);
                }
            } else if std::fs::read_to_string(&path).is_ok() {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo_path(""), &mut out);
    out
}

#[test]
fn no_link_points_at_a_repository_of_the_project_that_does_not_exist() {
    // The project has no public home: links go to files it ships, or to settings.
    let made_up = ["github.com/kraken-exporter", "github.com/kraken_exporter"];
    let mut problems = BTreeSet::new();
    let this_file = repo_path("tests/it/docs.rs");
    for file in shipped_text_files() {
        if file == this_file {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for needle in made_up {
            if text.to_lowercase().contains(needle) {
                problems.insert(format!("{} links to {needle}", file.display()));
            }
        }
        for line in text.lines().filter(|l| l.starts_with("Documentation=")) {
            for url in line["Documentation=".len()..].split_whitespace() {
                let shipped = url
                    .strip_prefix("file:///usr/share/doc/kraken-exporter/")
                    .is_some_and(|rest| {
                        repo_path(rest).exists() || repo_path("docs").join(rest).exists()
                    });
                if !shipped {
                    problems.insert(format!(
                        "{}: {line}: not a file the Debian package installs",
                        file.display()
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}
