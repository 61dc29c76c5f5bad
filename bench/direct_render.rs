//! A prototype of the proposed exposition writer, kept here to measure the gain before the
//! change is made in `src/metrics.rs`: the same bytes as `metrics::render` produces for the
//! account families, build info and reload status, written straight into one pre-sized buffer
//! instead of building `prometheus::proto` families (about eight allocations per sample) and
//! encoding them with `TextEncoder` (one more `String` per sample for the value).
//!
//! `benches/kraken.rs` checks that both produce identical bytes before timing them.
//!
//! Must not: be used by the exporter; it reads HELP texts from a reference rendering rather than
//! owning them.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use kraken_exporter::metrics::{AccountView, BuildInfo, ReloadView};

/// HELP texts by family name, read from an exposition (the real renderer's).
pub fn help_texts(exposition: &str) -> HashMap<String, String> {
    exposition
        .lines()
        .filter_map(|line| line.strip_prefix("# HELP "))
        .filter_map(|rest| rest.split_once(' '))
        .map(|(name, help)| (name.to_owned(), help.to_owned()))
        .collect()
}

/// Writes a label value with the text format's escapes (`\`, newline, `"`).
fn write_escaped(out: &mut Vec<u8>, value: &str) {
    if !value.contains(['\\', '\n', '"']) {
        out.extend_from_slice(value.as_bytes());
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '"' => out.extend_from_slice(b"\\\""),
            c => {
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}

/// One sample line: `name{l1="v1",...} value`.
fn sample(out: &mut Vec<u8>, name: &str, labels: &[(&str, &str)], value: f64) {
    out.extend_from_slice(name.as_bytes());
    let mut separator = b'{';
    for (label, value) in labels {
        out.push(separator);
        out.extend_from_slice(label.as_bytes());
        out.extend_from_slice(b"=\"");
        write_escaped(out, value);
        out.push(b'"');
        separator = b',';
    }
    if !labels.is_empty() {
        out.push(b'}');
    }
    // Display of f64, as the prometheus crate's encoder writes it, without the String.
    let _ = writeln!(out, " {value}");
}

fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// How a family's samples are written: once per account view, or once per exposition.
enum Samples<'a> {
    PerAccount(AccountWriter<'a>),
    Once(OnceWriter<'a>),
}

/// Writes one account's samples of a family.
type AccountWriter<'a> = Box<dyn Fn(&mut Vec<u8>, &AccountView<'_>) + 'a>;

/// Writes the samples of a family that belongs to no account.
type OnceWriter<'a> = Box<dyn Fn(&mut Vec<u8>) + 'a>;

/// The exposition of `accounts` (no request families, no prices), families sorted by name, in
/// one buffer of `capacity` bytes (the size of the previous exposition, so it is allocated once).
pub fn render(
    accounts: &[AccountView<'_>],
    reload: ReloadView,
    build: &BuildInfo,
    help: &HashMap<String, String>,
    capacity: usize,
) -> Vec<u8> {
    let mut families: Vec<(&str, Samples<'_>)> = vec![
        (
            "kraken_api_key_permission",
            Samples::PerAccount(Box::new(|out, view| {
                let s = &view.status;
                for (permission, granted) in s.audit.iter().flat_map(|a| a.permissions.iter()) {
                    let value = if *granted { 1.0 } else { 0.0 };
                    let labels = [("account", s.name.as_str()), ("permission", permission)];
                    sample(out, "kraken_api_key_permission", &labels, value);
                }
            })),
        ),
        (
            "kraken_balance",
            Samples::PerAccount(Box::new(|out, view| {
                let s = &view.status;
                for b in s.balances.iter().flat_map(|s| s.balances.iter()) {
                    let labels = [
                        ("account", s.name.as_str()),
                        ("asset", &b.asset),
                        ("code", &b.code),
                    ];
                    sample(out, "kraken_balance", &labels, b.total);
                }
            })),
        ),
        (
            "kraken_balance_available",
            Samples::PerAccount(Box::new(|out, view| {
                let s = &view.status;
                let available = s.balances.iter().flat_map(|s| s.available.iter().flatten());
                for (asset, amount) in available {
                    let labels = [("account", s.name.as_str()), ("asset", asset.as_str())];
                    sample(out, "kraken_balance_available", &labels, *amount);
                }
            })),
        ),
        (
            "kraken_balance_hold",
            Samples::PerAccount(Box::new(|out, view| {
                let s = &view.status;
                for b in s.balances.iter().flat_map(|s| s.balances.iter()) {
                    if let Some(hold) = b.hold {
                        let labels = [
                            ("account", s.name.as_str()),
                            ("asset", &b.asset),
                            ("code", &b.code),
                        ];
                        sample(out, "kraken_balance_hold", &labels, hold);
                    }
                }
            })),
        ),
        (
            "kraken_balance_min",
            Samples::PerAccount(Box::new(|out, view| {
                let min_balance: &BTreeMap<String, f64> = view.min_balance;
                for (asset, min) in min_balance {
                    let labels = [("account", view.status.name.as_str()), ("asset", asset)];
                    sample(out, "kraken_balance_min", &labels, *min);
                }
            })),
        ),
        (
            "kraken_config_unknown_asset",
            Samples::PerAccount(Box::new(|out, view| {
                for asset in view.unknown_assets {
                    let labels = [
                        ("account", view.status.name.as_str()),
                        ("asset", asset.as_str()),
                    ];
                    sample(out, "kraken_config_unknown_asset", &labels, 1.0);
                }
            })),
        ),
        (
            "kraken_equivalent_balance",
            Samples::PerAccount(Box::new(|out, view| {
                if let Some((quote, value)) = &view.status.equivalent {
                    let labels = [("account", view.status.name.as_str()), ("quote", quote)];
                    sample(out, "kraken_equivalent_balance", &labels, *value);
                }
            })),
        ),
        (
            "kraken_exporter_build_info",
            Samples::Once(Box::new(|out| {
                let labels = [("version", build.version), ("revision", build.revision)];
                sample(out, "kraken_exporter_build_info", &labels, 1.0);
            })),
        ),
        (
            "kraken_exporter_config_last_reload_successful",
            Samples::Once(Box::new(move |out| {
                let value = if reload.ok { 1.0 } else { 0.0 };
                sample(
                    out,
                    "kraken_exporter_config_last_reload_successful",
                    &[],
                    value,
                );
            })),
        ),
        (
            "kraken_exporter_config_last_reload_success_timestamp_seconds",
            Samples::Once(Box::new(move |out| {
                sample(
                    out,
                    "kraken_exporter_config_last_reload_success_timestamp_seconds",
                    &[],
                    unix_seconds(reload.last_success),
                );
            })),
        ),
        (
            "kraken_last_success_timestamp_seconds",
            Samples::PerAccount(Box::new(|out, view| {
                if let Some(at) = view.status.last_success {
                    let labels = [("account", view.status.name.as_str())];
                    let value = unix_seconds(at);
                    sample(out, "kraken_last_success_timestamp_seconds", &labels, value);
                }
            })),
        ),
        (
            "kraken_up",
            Samples::PerAccount(Box::new(|out, view| {
                let value = if view.status.up { 1.0 } else { 0.0 };
                sample(
                    out,
                    "kraken_up",
                    &[("account", view.status.name.as_str())],
                    value,
                );
            })),
        ),
    ];
    families.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = Vec::with_capacity(capacity);
    for (name, samples) in &families {
        let start = out.len();
        out.extend_from_slice(b"# HELP ");
        out.extend_from_slice(name.as_bytes());
        out.push(b' ');
        out.extend_from_slice(help.get(*name).map_or("", String::as_str).as_bytes());
        out.extend_from_slice(b"\n# TYPE ");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b" gauge\n");
        let header = out.len();
        match samples {
            Samples::PerAccount(write) => {
                for view in accounts {
                    write(&mut out, view);
                }
            }
            Samples::Once(write) => write(&mut out),
        }
        // A family without samples is left out, as the text encoder requires.
        if out.len() == header {
            out.truncate(start);
        }
    }
    out
}
