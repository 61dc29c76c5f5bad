//! The monitoring files: `kraken_exporter mixin` renders the alerting rules, the recording
//! rules, the Kubernetes PrometheusRule and the Grafana dashboard from the templates in `mixin/`
//! with a job selector, a runbook address and a key rotation age. The copies in `examples/` and
//! `grafana/` are its output with the defaults, and the Debian package and the release archive
//! ship the documents those files and the README link to.
//!
//! `UPDATE_MIXIN=1 cargo test --test it mixin` (or `scripts/generate-mixin.sh`, which runs the binary) rewrites
//! the checked-in copies; without the variable the test fails while any of them differs.

use std::collections::BTreeSet;
use std::process::Command;

use kraken_exporter::mixin::{MixinSettings, render};
use serde_json::Value as Json;

use crate::rules::repo_path;

/// The binary under test.
const BIN: &str = env!("CARGO_BIN_EXE_kraken_exporter");

/// Where each file of `kraken_exporter mixin --out DIR` is checked in.
const CHECKED_IN: [(&str, &str); 4] = [
    ("alerts.yml", "examples/prometheus/alerts.yml"),
    ("recording.yml", "examples/prometheus/recording.yml"),
    (
        "prometheusrule.yaml",
        "examples/kubernetes/prometheusrule.yaml",
    ),
    ("kraken-exporter.json", "grafana/kraken-exporter.json"),
];

/// The settings the checked-in files are rendered with.
pub fn defaults() -> MixinSettings {
    MixinSettings::default()
}

/// Every rendered file as (repository path, contents).
fn generated(settings: &MixinSettings) -> Vec<(&'static str, String)> {
    render(settings)
        .into_iter()
        .map(|file| {
            let path = CHECKED_IN
                .iter()
                .find(|(name, _)| *name == file.name)
                .unwrap_or_else(|| panic!("{} has no checked-in copy", file.name))
                .1;
            (path, file.contents)
        })
        .collect()
}

#[test]
fn the_checked_in_monitoring_files_are_the_mixin_output_with_the_defaults() {
    let update = std::env::var_os("UPDATE_MIXIN").is_some();
    let files = generated(&defaults());
    assert_eq!(files.len(), CHECKED_IN.len());
    let mut stale = Vec::new();
    for (path, contents) in files {
        if path.ends_with(".json") {
            serde_json::from_str::<Json>(&contents)
                .unwrap_or_else(|e| panic!("{path} as generated is not JSON: {e}"));
        } else {
            serde_norway::from_str::<serde_norway::Value>(&contents)
                .unwrap_or_else(|e| panic!("{path} as generated is not YAML: {e}"));
        }
        let file = repo_path(path);
        if update {
            std::fs::write(&file, &contents).unwrap();
        } else if std::fs::read_to_string(&file).ok().as_deref() != Some(&contents) {
            stale.push(path);
        }
    }
    assert!(
        stale.is_empty(),
        "out of date with mixin/: {}; run scripts/generate-mixin.sh (edit the templates in \
         mixin/, not the generated files)",
        stale.join(", ")
    );
}

/// A fresh directory under the system's temporary directory, removed on drop.
struct OutDir(std::path::PathBuf);

impl OutDir {
    fn new() -> OutDir {
        let dir = std::env::temp_dir().join(format!(
            "kraken-mixin-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        OutDir(dir)
    }
}

impl Drop for OutDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_mixin_command_writes_the_files_with_the_settings_given() {
    let out = OutDir::new();
    let output = Command::new(BIN)
        .args(["mixin", "--out"])
        .arg(&out.0)
        .args([
            "--job-selector",
            r#"job="my-balances""#,
            "--runbook-url",
            "https://wiki.example.org/kraken/runbook",
            "--key-rotation-days",
            "30",
        ])
        .env_clear()
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let settings = MixinSettings {
        job_selector: r#"job="my-balances""#.to_owned(),
        runbook_url: "https://wiki.example.org/kraken/runbook".to_owned(),
        key_rotation_days: 30,
    };
    for file in render(&settings) {
        let written = std::fs::read_to_string(out.0.join(file.name))
            .unwrap_or_else(|e| panic!("{} was not written: {e}", file.name));
        assert_eq!(written, file.contents, "{}", file.name);
        assert!(stdout.contains(file.name), "{stdout}");
    }
    assert_ne!(
        render(&settings)[0].contents,
        render(&defaults())[0].contents
    );
}

#[test]
fn the_mixin_command_refuses_bad_settings_naming_the_flag_and_the_fix() {
    for (flag, value, expected) in [
        ("--job-selector", "", "--job-selector is empty"),
        ("--job-selector", "job=kraken", "double-quoted"),
        ("--runbook-url", "wiki/runbook", "not an absolute URL"),
        ("--key-rotation-days", "0", "--key-rotation-days 0"),
    ] {
        let out = OutDir::new();
        let output = Command::new(BIN)
            .args(["mixin", "--out"])
            .arg(&out.0)
            .args([flag, value])
            .env_clear()
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flag} {value:?}: {stderr}");
        assert!(stderr.contains(expected), "{flag} {value:?}: {stderr}");
        assert!(!out.0.exists(), "{flag} {value:?}: files written anyway");
    }
}

/// The names and matchers of every metric selector in a PromQL expression: `(name, "{...}")`,
/// matchers empty when the selector has none. Recorded series (with a `:`) are included.
pub fn selectors(expr: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    let mut in_braces = false;
    let mut in_quotes = false;
    while i < chars.len() {
        let c = chars[i];
        if in_quotes {
            if c == '\\' {
                i += 1;
            } else if c == '"' {
                in_quotes = false;
            }
            i += 1;
            continue;
        }
        match c {
            '"' => in_quotes = true,
            '{' => in_braces = true,
            '}' => in_braces = false,
            _ => {}
        }
        if !in_braces && (c.is_ascii_alphabetic() || c == '_') {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let is_metric = word.starts_with("kraken_")
                || word == "up"
                || (word.contains(':') && word.contains("kraken_"));
            let rest: String = chars[i..].iter().collect();
            // A function call or a `by (...)` list is followed by `(`; a label name in `on(...)`
            // sits inside parentheses after a keyword and never starts with kraken_.
            if is_metric && !rest.trim_start().starts_with('(') {
                let matchers = if chars.get(i) == Some(&'{') {
                    let mut quoted = false;
                    let mut escaped = false;
                    let end = rest
                        .char_indices()
                        .find(|&(_, c)| {
                            let closes = !quoted && c == '}';
                            if escaped {
                                escaped = false;
                            } else if c == '\\' {
                                escaped = true;
                            } else if c == '"' {
                                quoted = !quoted;
                            }
                            closes
                        })
                        .expect("closing brace")
                        .0;
                    rest[..=end].to_owned()
                } else {
                    String::new()
                };
                out.push((word, matchers));
            }
            continue;
        }
        i += 1;
    }
    out
}

#[test]
fn selectors_are_found_with_their_matchers() {
    assert_eq!(
        selectors(
            r#"sum by (account) (kraken_balance{job=~"a{b}"} < on(asset) up) or x:kraken_y:z"#
        ),
        vec![
            ("kraken_balance".to_owned(), r#"{job=~"a{b}"}"#.to_owned()),
            ("up".to_owned(), String::new()),
            ("x:kraken_y:z".to_owned(), String::new()),
        ]
    );
}

#[test]
fn the_job_selector_reaches_every_rule_and_the_dashboard_job_list() {
    let custom = MixinSettings {
        job_selector: r#"job="my-balances""#.to_owned(),
        runbook_url: "https://wiki.example.org/kraken/runbook".to_owned(),
        key_rotation_days: 30,
    };
    custom.validate().unwrap();
    let files = generated(&custom);
    for (path, contents) in &files {
        for leftover in [
            ".*kraken.*",
            "@JOB_SELECTOR@",
            "@RUNBOOK_URL@",
            "@KEY_ROTATION_DAYS@",
            "file:///",
        ] {
            assert!(
                !contents.contains(leftover),
                "{path}: {leftover} is left over"
            );
        }
    }
    assert!(
        files[0]
            .1
            .contains("kraken_api_key_created_timestamp_seconds{job=\"my-balances\"} > 30 * 86400"),
        "key_rotation_days reaches KrakenKeyRotationDue"
    );
    let alerts: serde_norway::Value = serde_norway::from_str(&files[0].1).unwrap();
    let recording: serde_norway::Value = serde_norway::from_str(&files[1].1).unwrap();
    let mut checked = 0;
    for file in [&alerts, &recording] {
        for group in file["groups"].as_sequence().unwrap() {
            for rule in group["rules"].as_sequence().unwrap() {
                let expr = rule["expr"].as_str().unwrap();
                let mut texts = vec![expr.to_owned()];
                // Queries inside the annotations select with it too.
                for annotation in ["description", "summary"] {
                    if let Some(text) = rule["annotations"][annotation].as_str() {
                        texts.extend(text.split('`').skip(1).step_by(2).map(str::to_owned));
                    }
                }
                for text in &texts {
                    for (name, matchers) in selectors(text) {
                        if name.contains(':') {
                            continue;
                        }
                        assert!(
                            matchers.contains(r#"job="my-balances""#),
                            "{name}{matchers} in {text} does not use the job selector"
                        );
                        checked += 1;
                    }
                }
                if let Some(url) = rule["annotations"]["runbook_url"].as_str() {
                    assert!(
                        url.starts_with("https://wiki.example.org/kraken/runbook#"),
                        "{url}"
                    );
                }
            }
        }
    }
    assert!(checked >= 40, "only {checked} selectors checked");

    let dashboard: Json = serde_json::from_str(&files[3].1).unwrap();
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    for name in ["job", "instance"] {
        let variable = variables.iter().find(|v| v["name"] == name).unwrap();
        assert!(
            variable["query"]
                .as_str()
                .unwrap()
                .starts_with(r#"label_values(up{job="my-balances""#),
            "${name}: {}",
            variable["query"]
        );
    }
    assert_eq!(
        dashboard["links"][0]["url"],
        "https://wiki.example.org/kraken/runbook"
    );
}

/// The files the Debian package installs under /usr/share/doc/kraken-exporter, as paths relative
/// to it, expanded from the `assets` of `[package.metadata.deb]` (a `*` matches within one
/// directory, as cargo-deb's globs do here).
fn packaged_docs() -> BTreeSet<String> {
    let manifest: deb_manifest::Manifest =
        deb_manifest::parse(&std::fs::read_to_string(repo_path("Cargo.toml")).unwrap());
    let mut installed = BTreeSet::new();
    for (source, target) in manifest.deb_assets {
        let Some(dir) = target.strip_prefix("usr/share/doc/kraken-exporter/") else {
            continue;
        };
        let (parent, pattern) = source.rsplit_once('/').unwrap_or(("", source.as_str()));
        let names: Vec<String> = if let Some((prefix, suffix)) = pattern.split_once('*') {
            std::fs::read_dir(repo_path(parent))
                .unwrap_or_else(|e| panic!("asset {source}: {e}"))
                .map(|entry| entry.unwrap())
                .filter(|entry| entry.file_type().unwrap().is_file())
                .map(|entry| entry.file_name().into_string().unwrap())
                .filter(|name| name.starts_with(prefix) && name.ends_with(suffix))
                .collect()
        } else {
            assert!(
                repo_path(&source).is_file(),
                "asset {source} does not exist"
            );
            vec![pattern.to_owned()]
        };
        assert!(!names.is_empty(), "asset {source} matches nothing");
        for name in names {
            installed.insert(format!("{dir}{name}"));
        }
    }
    installed
}

/// A minimal reader of the `assets` of `[package.metadata.deb]`: pairs of source and target.
mod deb_manifest {
    pub struct Manifest {
        pub deb_assets: Vec<(String, String)>,
    }

    pub fn parse(text: &str) -> Manifest {
        let start = text
            .find("[package.metadata.deb]")
            .expect("Cargo.toml has [package.metadata.deb]");
        let assets = &text[start..];
        let assets = &assets[assets.find("assets = [").expect("deb assets")..];
        let assets = &assets[..assets.find("\n]").unwrap()];
        let deb_assets = assets
            .lines()
            .filter(|line| line.trim_start().starts_with("[\""))
            .map(|line| {
                let fields: Vec<&str> = line.split('"').collect();
                (fields[1].to_owned(), fields[3].to_owned())
            })
            .collect();
        Manifest { deb_assets }
    }
}

/// The relative link targets of a Markdown text, without anchors.
fn relative_links(markdown: &str) -> Vec<String> {
    markdown
        .match_indices("](")
        .filter_map(|(at, _)| {
            let rest = &markdown[at + 2..];
            let target = &rest[..rest.find(')')?];
            let path = target.split('#').next().unwrap_or_default();
            let external = path.is_empty() || path.contains("://") || path.starts_with("mailto:");
            (!external).then(|| path.to_owned())
        })
        .collect()
}

/// Resolves `link` relative to the directory of `from` (both relative to the doc directory).
fn resolve_link(from: &str, link: &str) -> String {
    let mut parts: Vec<&str> = from.split('/').collect();
    parts.pop();
    for part in link.split('/') {
        match part {
            ".." => {
                parts.pop();
            }
            "." | "" => {}
            other => parts.push(other),
        }
    }
    parts.join("/")
}

#[test]
fn the_package_keeps_the_links_of_the_installed_readme_and_docs_working() {
    let installed = packaged_docs();
    for must in [
        "README.md",
        "docs/runbook.md",
        "examples/prometheus/alerts.yml",
    ] {
        assert!(
            installed.contains(must),
            "the package does not install {must}"
        );
    }
    // The runbook address the alerts link to by default is the installed runbook.
    assert_eq!(
        kraken_exporter::mixin::DEFAULT_RUNBOOK_URL,
        "file:///usr/share/doc/kraken-exporter/docs/runbook.md"
    );
    let mut checked = 0;
    let mut dead = Vec::new();
    // The README and docs/ are the operator's pages (CONTRIBUTING.md, also shipped, links to
    // development files on purpose).
    let pages = installed
        .iter()
        .filter(|p| *p == "README.md" || (p.starts_with("docs/") && p.ends_with(".md")));
    for page in pages {
        let text = std::fs::read_to_string(repo_path(page)).unwrap();
        for link in relative_links(&text) {
            let target = resolve_link(page, &link);
            let prefix = format!("{}/", target.trim_end_matches('/'));
            if !installed.contains(&target) && !installed.iter().any(|p| p.starts_with(&prefix)) {
                dead.push(format!("{page} -> {link}"));
            }
            checked += 1;
        }
    }
    assert!(checked >= 40, "only {checked} links checked");
    assert!(
        dead.is_empty(),
        "links that lead nowhere in /usr/share/doc/kraken-exporter: add the files to the assets \
         of [package.metadata.deb]:\n{}",
        dead.join("\n")
    );
}

#[test]
fn installing_the_package_prints_the_next_steps() {
    let postinst = std::fs::read_to_string(repo_path("packaging/debian/postinst")).unwrap();
    for step in [
        "/etc/kraken_exporter/kraken_exporter.yml",
        "/etc/kraken_exporter/credentials/api_key",
        "/etc/kraken_exporter/credentials/api_secret",
        "kraken_exporter --config.file /etc/kraken_exporter/kraken_exporter.yml check",
        "systemctl enable --now kraken_exporter",
        "kraken_exporter mixin --out",
        "kraken_exporter --demo",
    ] {
        assert!(postinst.contains(step), "postinst does not print {step:?}");
    }
    let config =
        std::fs::read_to_string(repo_path("packaging/debian/kraken_exporter.yml")).unwrap();
    for file in ["credentials/api_key", "credentials/api_secret"] {
        assert!(
            config.contains(&format!("/etc/kraken_exporter/{file}")),
            "the packaged configuration does not read the {file} the next steps name"
        );
    }
}
