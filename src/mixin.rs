//! The `kraken_exporter mixin` command: writes the monitoring files (alerting rules, recording
//! rules, the Kubernetes PrometheusRule and the Grafana dashboard) with the operator's job
//! selector, runbook address and key rotation age, so adapting them needs no Rust toolchain.
//!
//! Owns the templates (`mixin/*`, compiled in), the checks of the three settings and the
//! substitution of their placeholders. The files shipped in `examples/` and `grafana/` are this
//! module's output with the defaults.
//! Must not: read the exporter's configuration, touch credentials or call Kraken.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The alerting rules template.
const ALERTS: &str = include_str!("../mixin/alerts.yml");
/// The recording rules template.
const RECORDING: &str = include_str!("../mixin/recording.yml");
/// The Grafana dashboard template.
const DASHBOARD: &str = include_str!("../mixin/dashboard.json");

/// Default job selector: matches the example jobs `kraken` (/metrics) and `kraken-probe`
/// (/probe).
pub const DEFAULT_JOB_SELECTOR: &str = r#"job=~".*kraken.*""#;
/// Default runbook address: where the Debian package installs docs/runbook.md.
pub const DEFAULT_RUNBOOK_URL: &str = "file:///usr/share/doc/kraken-exporter/docs/runbook.md";
/// Default age in days after which a key is due for rotation.
pub const DEFAULT_KEY_ROTATION_DAYS: u32 = 90;

/// The three settings the templates take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MixinSettings {
    /// PromQL label matchers without braces selecting the exporter's scrape jobs, such as
    /// `job=~".*kraken.*"`: every rule and dashboard query selects with it.
    pub job_selector: String,
    /// Where docs/runbook.md is published; each alert links to it followed by `#<alert name>`.
    pub runbook_url: String,
    /// Age in days after which `KrakenKeyRotationDue` fires.
    pub key_rotation_days: u32,
}

impl Default for MixinSettings {
    fn default() -> Self {
        MixinSettings {
            job_selector: DEFAULT_JOB_SELECTOR.to_owned(),
            runbook_url: DEFAULT_RUNBOOK_URL.to_owned(),
            key_rotation_days: DEFAULT_KEY_ROTATION_DAYS,
        }
    }
}

/// Why the monitoring files cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum MixinError {
    /// The job selector is empty.
    #[error(
        "--job-selector is empty: give the label matchers that select the exporter's jobs, like job=~\".*kraken.*\" or job=\"kraken\""
    )]
    EmptySelector,
    /// The job selector is not a list of PromQL label matchers.
    #[error(
        "--job-selector {selector:?}: {problem}; write label matchers without braces, like job=~\".*kraken.*\" or job=\"kraken\",env=\"prod\""
    )]
    BadSelector {
        /// The selector as given.
        selector: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The runbook address is not an absolute URL the rule files can hold.
    #[error(
        "--runbook-url {url:?}: {problem}; give the absolute address where docs/runbook.md is published, like https://wiki.example.org/kraken/runbook (alerts append #<alert name>)"
    )]
    BadRunbookUrl {
        /// The address as given.
        url: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The rotation age is 0 days.
    #[error(
        "--key-rotation-days 0: a key would always be due for rotation; give the age in days after which a key is due, like 90"
    )]
    ZeroRotationDays,
    /// The output directory or a file in it cannot be written.
    #[error("cannot write {path}: {source}; choose a directory you may write to with --out")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl MixinSettings {
    /// Checks that each setting can land in YAML, JSON, PromQL and alert templates unchanged.
    pub fn validate(&self) -> Result<(), MixinError> {
        check_selector(&self.job_selector)?;
        check_runbook_url(&self.runbook_url)?;
        if self.key_rotation_days == 0 {
            return Err(MixinError::ZeroRotationDays);
        }
        Ok(())
    }

    /// The flags that reproduce these settings, for the header of each generated file.
    fn as_flags(&self) -> String {
        format!(
            "--job-selector '{}' --runbook-url '{}' --key-rotation-days {}",
            self.job_selector, self.runbook_url, self.key_rotation_days
        )
    }
}

/// Checks `name op "value"` matchers separated by commas, the values in double quotes.
fn check_selector(selector: &str) -> Result<(), MixinError> {
    let bad = |problem: &str| MixinError::BadSelector {
        selector: selector.to_owned(),
        problem: problem.to_owned(),
    };
    if selector.trim().is_empty() {
        return Err(MixinError::EmptySelector);
    }
    if selector.contains(['{', '}']) {
        return Err(bad("braces are added by the rules"));
    }
    if selector.contains(['\n', '\r', '%', '`']) {
        return Err(bad(
            "newlines, % and backquotes cannot appear in the alert templates",
        ));
    }
    let mut rest = selector.trim();
    loop {
        let name_end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let name = &rest[..name_end];
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(bad("each matcher starts with a label name"));
        }
        rest = rest[name_end..].trim_start();
        let op = ["=~", "!~", "!=", "="]
            .into_iter()
            .find(|op| rest.starts_with(op))
            .ok_or_else(|| bad(&format!("{name} is followed by no =, !=, =~ or !~")))?;
        rest = rest[op.len()..].trim_start();
        rest = skip_quoted(rest)
            .ok_or_else(|| {
                bad(&format!(
                    "the value of {name} is not a \"double-quoted\" string"
                ))
            })?
            .trim_start();
        match rest.strip_prefix(',') {
            Some(next) if !next.trim().is_empty() => rest = next.trim_start(),
            Some(_) => return Err(bad("it ends with a comma")),
            None if rest.is_empty() => return Ok(()),
            None => return Err(bad("matchers are separated by commas")),
        }
    }
}

/// The text after a leading double-quoted string (with `\` escapes), if it starts with one.
fn skip_quoted(text: &str) -> Option<&str> {
    let body = text.strip_prefix('"')?;
    let mut escaped = false;
    for (at, c) in body.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(&body[at + 1..]),
            _ => {}
        }
    }
    None
}

/// An absolute URL with a scheme, without a fragment and without characters that YAML, JSON or
/// the alert templates would read as their own.
fn check_runbook_url(url: &str) -> Result<(), MixinError> {
    let bad = |problem| MixinError::BadRunbookUrl {
        url: url.to_owned(),
        problem,
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(bad("it is not an absolute URL (no scheme://)"));
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !scheme_ok {
        return Err(bad("it does not start with a scheme such as https://"));
    }
    if rest.is_empty() || rest == "/" {
        return Err(bad("it names no host or path"));
    }
    if url.contains('#') {
        return Err(bad("it has a #fragment, but alerts append their own"));
    }
    if url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "\"'\\`{}<>".contains(c))
    {
        return Err(bad("it has spaces, quotes, braces or backslashes"));
    }
    Ok(())
}

/// One generated file: its name in the output directory and its contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MixinFile {
    /// File name inside the `--out` directory.
    pub name: &'static str,
    /// What to write.
    pub contents: String,
}

/// Every monitoring file, rendered with `settings` (which must have passed
/// [`MixinSettings::validate`]).
pub fn render(settings: &MixinSettings) -> Vec<MixinFile> {
    let alerts = rule_file("alerts.yml", ALERTS, settings);
    let recording = rule_file("recording.yml", RECORDING, settings);
    let rule = prometheus_rule(&recording, &alerts, settings);
    let dashboard = substitute(DASHBOARD, settings, true);
    vec![
        MixinFile {
            name: "alerts.yml",
            contents: alerts,
        },
        MixinFile {
            name: "recording.yml",
            contents: recording,
        },
        MixinFile {
            name: "prometheusrule.yaml",
            contents: rule,
        },
        MixinFile {
            name: "kraken-exporter.json",
            contents: dashboard,
        },
    ]
}

/// Validates the settings and writes every file into `dir` (created if missing); returns the
/// paths written.
pub fn write(dir: &Path, settings: &MixinSettings) -> Result<Vec<PathBuf>, MixinError> {
    settings.validate()?;
    std::fs::create_dir_all(dir).map_err(|source| MixinError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let mut written = Vec::new();
    for file in render(settings) {
        let path = dir.join(file.name);
        std::fs::write(&path, file.contents).map_err(|source| MixinError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

/// Replaces the placeholders; `json` escapes the values for a JSON string.
fn substitute(template: &str, settings: &MixinSettings, json: bool) -> String {
    let escape = |value: &str| {
        if json {
            value.replace('\\', "\\\\").replace('"', "\\\"")
        } else {
            value.to_owned()
        }
    };
    template
        .replace("@JOB_SELECTOR@", &escape(&settings.job_selector))
        .replace("@RUNBOOK_URL@", &escape(&settings.runbook_url))
        .replace(
            "@KEY_ROTATION_DAYS@",
            &settings.key_rotation_days.to_string(),
        )
}

/// A rule template without its first comment paragraph (which documents the template itself,
/// up to its first lone `#` line).
fn without_template_header(template: &str) -> &str {
    template
        .find("\n#\n")
        .map_or(template, |end| &template[end + 3..])
}

/// The header every generated file opens with.
fn generated_header(sources: &str, settings: &MixinSettings) -> String {
    format!(
        "# Generated by `kraken_exporter mixin` from {sources} with\n\
         #   {}\n\
         # Run it again with your settings rather than editing this file.\n",
        settings.as_flags()
    )
}

/// A rule file: the header, then the template without its own header, substituted.
fn rule_file(name: &str, template: &str, settings: &MixinSettings) -> String {
    format!(
        "{}#\n{}",
        generated_header(&format!("mixin/{name}"), settings),
        substitute(without_template_header(template), settings, false)
    )
}

/// The PrometheusRule: the groups of the recording rules, then of the alerting rules.
fn prometheus_rule(recording: &str, alerts: &str, settings: &MixinSettings) -> String {
    let mut out = generated_header("mixin/recording.yml and mixin/alerts.yml", settings);
    out.push_str(
        "apiVersion: monitoring.coreos.com/v1\n\
         kind: PrometheusRule\n\
         metadata:\n  name: kraken-exporter\n  labels:\n    app.kubernetes.io/name: kraken-exporter\n\
         \x20   # Many Prometheus installs select rules by a release label, e.g.:\n\
         \x20   # release: kube-prometheus-stack\n\
         spec:\n  groups:\n",
    );
    for file in [recording, alerts] {
        let start = file
            .find("\ngroups:\n")
            .map_or(0, |at| at + "\ngroups:\n".len());
        for line in file[start..].lines() {
            if line.is_empty() {
                out.push('\n');
            } else {
                let _ = writeln!(out, "  {line}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_selector(selector: &str) -> Result<(), MixinError> {
        MixinSettings {
            job_selector: selector.to_owned(),
            ..MixinSettings::default()
        }
        .validate()
    }

    fn with_url(url: &str) -> Result<(), MixinError> {
        MixinSettings {
            runbook_url: url.to_owned(),
            ..MixinSettings::default()
        }
        .validate()
    }

    #[test]
    fn the_defaults_are_valid() {
        MixinSettings::default().validate().unwrap();
    }

    #[test]
    fn selectors_are_label_matchers_with_double_quoted_values() {
        for good in [
            r#"job="kraken""#,
            r#"job=~".*kraken.*""#,
            r#"job="kraken", env!="dev""#,
            r#"namespace=~"mon|ops",job!~"x\"y""#,
        ] {
            with_selector(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        assert!(matches!(with_selector(" "), Err(MixinError::EmptySelector)));
        for (bad, problem) in [
            (r#"{job="kraken"}"#, "braces"),
            ("job=kraken", "double-quoted"),
            (r#"job="kraken"#, "double-quoted"),
            ("job", "followed by no"),
            (r#"job="a" env="b""#, "separated by commas"),
            (r#"job="a","#, "ends with a comma"),
            (r#"="a""#, "label name"),
            (r#"job=~"100%""#, "% and backquotes"),
        ] {
            let error = with_selector(bad).unwrap_err().to_string();
            assert!(error.contains(problem), "{bad}: {error}");
            assert!(
                error.contains("like job="),
                "{bad}: the fix is named: {error}"
            );
        }
    }

    #[test]
    fn runbook_urls_are_absolute_without_fragment_or_quotes() {
        for good in [
            "https://wiki.example.org/kraken/runbook",
            "file:///usr/share/doc/kraken-exporter/docs/runbook.md",
            "http://10.0.0.1:8080/runbook.html?x=%20",
        ] {
            with_url(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for (bad, problem) in [
            ("wiki.example.org/runbook", "not an absolute URL"),
            ("", "not an absolute URL"),
            ("1http://x", "scheme"),
            ("https://", "no host"),
            ("https://wiki/runbook#top", "#fragment"),
            ("https://wiki/run book", "spaces"),
            ("https://wiki/\"x\"", "quotes"),
        ] {
            let error = with_url(bad).unwrap_err().to_string();
            assert!(error.contains(problem), "{bad:?}: {error}");
            assert!(error.contains("https://wiki.example.org"), "{error}");
        }
    }

    #[test]
    fn zero_rotation_days_are_refused() {
        let settings = MixinSettings {
            key_rotation_days: 0,
            ..MixinSettings::default()
        };
        let error = settings.validate().unwrap_err().to_string();
        assert!(error.contains("--key-rotation-days 0") && error.contains("like 90"));
    }

    #[test]
    fn every_placeholder_is_replaced_and_json_values_are_escaped() {
        let settings = MixinSettings {
            job_selector: r#"job="a\"b""#.to_owned(),
            runbook_url: "https://wiki.example.org/rb".to_owned(),
            key_rotation_days: 7,
        };
        settings.validate().unwrap();
        for file in render(&settings) {
            assert!(!file.contents.contains('@') || !file.contents.contains("_SELECTOR@"));
            for placeholder in ["@JOB_SELECTOR@", "@RUNBOOK_URL@", "@KEY_ROTATION_DAYS@"] {
                assert!(!file.contents.contains(placeholder), "{}", file.name);
            }
            if file.name.ends_with(".json") {
                let json: serde_json::Value = serde_json::from_str(&file.contents).unwrap();
                assert_eq!(json["links"][0]["url"], "https://wiki.example.org/rb");
                assert!(file.contents.contains(r#"job=\"a\\\"b\""#));
            } else {
                serde_norway::from_str::<serde_norway::Value>(&file.contents)
                    .unwrap_or_else(|e| panic!("{}: {e}", file.name));
                assert!(
                    file.contents.contains("--key-rotation-days 7"),
                    "{}",
                    file.name
                );
            }
        }
    }

    #[test]
    fn write_refuses_bad_settings_before_touching_the_directory() {
        let dir = std::env::temp_dir().join(format!("kraken-mixin-unit-{}", std::process::id()));
        let settings = MixinSettings {
            key_rotation_days: 0,
            ..MixinSettings::default()
        };
        assert!(matches!(
            write(&dir, &settings),
            Err(MixinError::ZeroRotationDays)
        ));
        assert!(!dir.exists());
    }
}
