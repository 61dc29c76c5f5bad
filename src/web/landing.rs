//! The page at `/`, the operator's one screen: version, a banner in demo mode, and per account
//! its status (with the advice and the next attempt after a failure), its API key (name,
//! permissions with the ones not allowed highlighted, expiry, age, IP allowlist) with one line
//! of advice per hygiene finding, its available amounts against their minimums, and its
//! balances; every table under a heading.
//!
//! Must not: start a refresh (it shows what is known), or put anything unescaped into the page.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::SystemTime;

use crate::audit::{self, KeyAudit};
use crate::exporter::{Exporter, ResolvedAssets};
use crate::features::key_info::Allowed;
use crate::features::stream::Ledger;
use crate::status::{AccountStatus, format_amount};
use kraken::KeyExpiry;

/// Escapes text for HTML element content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page at `/`: version, a banner in demo mode, and per account its status (on errors the
/// advice and the next attempt), what each asset can spend against its minimum (rows below the
/// minimum highlighted), configured names that are not Kraken assets, and the raw balances.
pub(super) fn landing_page(
    exporter: &Exporter,
    accounts: &[(AccountStatus, ResolvedAssets)],
) -> String {
    let path = escape(&exporter.telemetry_path);
    let mut page = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Kraken exporter</title>\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:1.5em}}\
         td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}td.n{{text-align:right;font-family:monospace}}\
         .down{{color:#b00}}.up{{color:#070}}.demo{{background:#ffd;border:1px solid #cc0;padding:.6em}}\
         tr.below{{background:#fdd;font-weight:bold}}.problem{{background:#fee;border:1px solid #d99;padding:.6em}}\
         .unexpected{{background:#fdd;color:#900;font-weight:bold;padding:0 .2em}}.warn{{color:#a50;font-weight:bold}}ul.problem{{padding-left:2em}}</style></head>\n\
         <body><h1>Kraken exporter</h1><p>Version {} (revision {}). Metrics: <a href=\"{path}\">{path}</a> · \
         <a href=\"/-/healthy\">/-/healthy</a> · <a href=\"/-/ready\">/-/ready</a></p>\n",
        escape(exporter.build.version),
        escape(exporter.build.revision),
    );
    if exporter.demo {
        page.push_str(
            "<p class=\"demo\"><strong>Demo mode:</strong> these balances come from a simulated Kraken \
             inside this process. They are not real and move over time.</p>\n",
        );
    }
    let now = SystemTime::now();
    for (status, resolved) in accounts {
        write_status(&mut page, status, exporter.background, now);
        write_key(&mut page, status, now);
        write_unknown_assets(&mut page, resolved);
        write_available(&mut page, status, resolved);
        write_balances(&mut page, status);
    }
    page.push_str("</body></html>\n");
    page
}

/// The account's heading and status line; after a failure, what to do and when Kraken is
/// called again.
/// How the account's balances stream is doing, and what it has seen.
fn stream_line(ledger: &Ledger, now: SystemTime) -> String {
    let state = if ledger.up {
        "<span class=\"up\">up</span>"
    } else {
        "<span class=\"down\">reconnecting</span> (balances are refreshed from REST meanwhile)"
    };
    let last = ledger.last_message.map_or_else(
        || "never".to_owned(),
        |at| {
            format!(
                "{}s ago",
                now.duration_since(at).unwrap_or_default().as_secs()
            )
        },
    );
    let entries: u64 = ledger.entries.values().sum();
    format!(
        "Balances stream: {state} · last message: {last} · ledger entries since start: {entries} · reconnects: {}",
        ledger.reconnects
    )
}

fn write_status(page: &mut String, status: &AccountStatus, background: bool, now: SystemTime) {
    let state = if status.up {
        "<span class=\"up\">up</span>"
    } else {
        "<span class=\"down\">down</span>"
    };
    let last_success = status.last_success.map_or_else(
        || "never".to_owned(),
        |at| {
            format!(
                "{}s ago",
                now.duration_since(at).unwrap_or_default().as_secs()
            )
        },
    );
    let last_error = status.last_error.as_ref().map_or_else(
        || "none".to_owned(),
        |(reason, message)| format!("{} ({})", reason.as_str(), escape(message)),
    );
    let findings = match (status.feature::<KeyAudit>(), status.feature::<Allowed>()) {
        (Some(audit), Some(Allowed(policy))) => audit.findings(policy, now).len(),
        _ => 0,
    };
    let key = if findings > 0 {
        format!(" · <span class=\"warn\">key: {findings} finding(s), see below</span>")
    } else {
        String::new()
    };
    let _ = writeln!(
        page,
        "<h2>Account {}</h2><p>Status: {state} · last success: {last_success} · last error: {last_error}{key}</p>",
        escape(&status.name)
    );
    if let Some(ledger) = status.feature::<Ledger>() {
        let _ = writeln!(page, "<p>{}</p>", stream_line(ledger, now));
    }
    if let Some((reason, _)) = &status.last_error {
        let retry = match (status.retry_at, background) {
            (Some(at), true) => format!(
                "Next attempt at {} UTC (in {}s).",
                utc_time_of_day(at),
                at.duration_since(now).unwrap_or_default().as_secs()
            ),
            (Some(at), false) => format!(
                "Next attempt with the first scrape after {} UTC (in {}s).",
                utc_time_of_day(at),
                at.duration_since(now).unwrap_or_default().as_secs()
            ),
            (None, true) => "Next attempt at the next refresh interval.".to_owned(),
            (None, false) => "Next attempt with the next scrape.".to_owned(),
        };
        let _ = writeln!(
            page,
            "<p class=\"problem\">What to do: {} {retry}</p>",
            escape(reason.advice())
        );
    }
}

/// The account's API key as the latest audit saw it, against what it may hold, and one line of
/// advice per finding; that it is not audited yet (or not at all) otherwise.
fn write_key(page: &mut String, status: &AccountStatus, now: SystemTime) {
    page.push_str("<h3>API key</h3>\n");
    let (Some(audit), Some(Allowed(policy))) =
        (status.feature::<KeyAudit>(), status.feature::<Allowed>())
    else {
        page.push_str("<p>Not audited yet (the audit follows the first successful refresh), or the audit is off.</p>\n");
        return;
    };
    let permissions: Vec<String> = audit
        .permissions
        .iter()
        .filter(|(_, granted)| **granted)
        .map(|(name, _)| match policy.allowed.contains(name) {
            true => escape(name),
            false => format!(
                "<mark class=\"unexpected\">{} (not allowed)</mark>",
                escape(name)
            ),
        })
        .collect();
    let allowed: Vec<String> = policy.allowed.iter().map(|name| escape(name)).collect();
    let key = audit.key.as_ref();
    let text = |value: Option<String>| value.unwrap_or_else(|| "not reported".to_owned());
    let rows = [
        (
            "Name",
            text(key.and_then(|k| k.name.as_deref()).map(escape)),
        ),
        ("Permissions", permissions.join(", ")),
        ("May hold (allowed_permissions)", allowed.join(", ")),
        (
            "Expires",
            text(key.and_then(|k| k.valid_until).map(|v| expiry(v, now))),
        ),
        (
            "Age",
            text(
                key.and_then(|k| k.created_time)
                    .map(|at| format!("{} days", audit::days_between(at, now))),
            ),
        ),
        (
            "IP allowlist",
            text(
                key.and_then(|k| k.ip_allowlist.as_ref())
                    .map(|list| match list.is_empty() {
                        true => "none: usable from any IP address".to_owned(),
                        false => escape(&list.join(", ")),
                    }),
            ),
        ),
    ];
    page.push_str("<table><tr><th>Key</th><th>As Kraken reports it</th></tr>\n");
    for (label, value) in rows {
        let _ = writeln!(page, "<tr><td>{label}</td><td>{value}</td></tr>");
    }
    page.push_str("</table>\n");
    let findings = audit.findings(policy, now);
    if findings.is_empty() {
        page.push_str("<p>No finding: the key holds only what it may, and its expiry, age and allowlist are fine.</p>\n");
        return;
    }
    page.push_str("<h3>Key findings and what to do</h3>\n<ul class=\"problem\">\n");
    for finding in findings {
        let _ = writeln!(
            page,
            "<li><strong>{}.</strong> What to do: {}.</li>",
            escape(&capitalised(&finding.message())),
            escape(&finding.advice())
        );
    }
    page.push_str("</ul>\n");
}

/// When a key stops working, for people.
fn expiry(valid_until: KeyExpiry, now: SystemTime) -> String {
    match valid_until {
        KeyExpiry::Never => "never (Kraken lets a key expire on a date: set one)".to_owned(),
        KeyExpiry::At(at) if at <= now => "expired".to_owned(),
        KeyExpiry::At(at) => format!("in {} days", audit::days_between(now, at)),
    }
}

/// The sentence with its first letter in upper case.
fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// Names in `min_balance` or `watch` that are not Kraken assets.
fn write_unknown_assets(page: &mut String, resolved: &ResolvedAssets) {
    for (name, nearest) in resolved.unknown.iter().zip(&resolved.nearest) {
        let hint = nearest
            .as_ref()
            .map_or_else(String::new, |n| format!(" Did you mean {}?", escape(n)));
        let _ = writeln!(
            page,
            "<p class=\"problem\">{} in min_balance or watch is not a Kraken asset, so no balance is shown or compared for it.{hint}</p>",
            escape(name)
        );
    }
}

/// Each asset's available amount against its minimum; rows below the minimum are highlighted.
fn write_available(page: &mut String, status: &AccountStatus, resolved: &ResolvedAssets) {
    let Some(snapshot) = &status.balances else {
        return;
    };
    let Some(available) = &snapshot.available else {
        if !resolved.min_balance.is_empty() {
            page.push_str(
                "<p>Available amounts are unknown (the Balance endpoint reports no holds, or Kraken's asset list has not been fetched yet), so minimums are compared with totals.</p>\n",
            );
        }
        return;
    };
    let assets: BTreeSet<&String> = available
        .keys()
        .chain(resolved.min_balance.keys())
        .collect();
    if assets.is_empty() {
        return;
    }
    page.push_str(
        "<h3>Available for trading against minimums</h3>\n<table><tr><th>Asset</th><th>Available</th><th>Minimum</th><th>Verdict</th></tr>\n",
    );
    for asset in assets {
        let now = available.get(asset).copied().unwrap_or(0.0);
        let min = resolved.min_balance.get(asset);
        let (class, verdict) = match min {
            Some(min) if now < *min => (" class=\"below\"", "below minimum"),
            Some(_) => ("", "ok"),
            None => ("", ""),
        };
        let _ = writeln!(
            page,
            "<tr{class}><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{verdict}</td></tr>",
            escape(asset),
            format_amount(now),
            min.map_or_else(|| "–".to_owned(), |min| format_amount(*min)),
        );
    }
    page.push_str("</table>\n");
}

/// The raw balances, one row per code Kraken returned.
fn write_balances(page: &mut String, status: &AccountStatus) {
    let Some(snapshot) = &status.balances else {
        page.push_str("<p>No current balances.</p>\n");
        return;
    };
    page.push_str(
        "<h3>Balances by Kraken code</h3>\n<table><tr><th>Asset</th><th>Code</th><th>Total</th><th>Hold</th></tr>\n",
    );
    for b in &snapshot.balances {
        let hold = b.hold.map_or_else(|| "–".to_owned(), format_amount);
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{hold}</td></tr>",
            escape(&b.asset),
            escape(&b.code),
            format_amount(b.total)
        );
    }
    page.push_str("</table>\n");
}

/// `HH:MM:SS` of a time, in UTC.
fn utc_time_of_day(at: SystemTime) -> String {
    let seconds = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        % 86_400;
    format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_attempt_is_given_as_a_utc_time_of_day() {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(2 * 86_400 + 3_661);
        assert_eq!(utc_time_of_day(at), "01:01:01");
    }

    #[test]
    fn escape_neutralises_markup() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
