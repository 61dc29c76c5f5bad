//! The page at `/`: version, a banner in demo mode, each account's status and balances.
//!
//! Must not: start a refresh (it shows what is known), or put anything unescaped into the page.

use std::fmt::Write as _;
use std::time::SystemTime;

use crate::exporter::Exporter;
use crate::status::{AccountStatus, format_amount};

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

/// The page at `/`: version, a banner in demo mode, each account's status and balances.
pub(super) fn landing_page(exporter: &Exporter, statuses: &[AccountStatus]) -> String {
    let path = escape(&exporter.telemetry_path);
    let mut page = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Kraken exporter</title>\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:1.5em}}\
         td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}td.n{{text-align:right;font-family:monospace}}\
         .down{{color:#b00}}.up{{color:#070}}.demo{{background:#ffd;border:1px solid #cc0;padding:.6em}}</style></head>\n\
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
    for status in statuses {
        let state = if status.up {
            "<span class=\"up\">up</span>".to_owned()
        } else {
            "<span class=\"down\">down</span>".to_owned()
        };
        let last_success = status.last_success.map_or_else(
            || "never".to_owned(),
            |at| {
                let age = SystemTime::now().duration_since(at).unwrap_or_default();
                format!("{}s ago", age.as_secs())
            },
        );
        let last_error = status.last_error.as_ref().map_or_else(
            || "none".to_owned(),
            |(reason, message)| format!("{} ({})", reason.as_str(), escape(message)),
        );
        let _ = writeln!(
            page,
            "<h2>Account {}</h2><p>Status: {state} · last success: {last_success} · last error: {last_error}</p>",
            escape(&status.name)
        );
        match &status.balances {
            None => page.push_str("<p>No current balances.</p>\n"),
            Some(snapshot) => {
                page.push_str("<table><tr><th>Asset</th><th>Code</th><th>Total</th><th>Hold</th><th>Available</th></tr>\n");
                for b in &snapshot.balances {
                    let hold = b.hold.map_or_else(|| "–".to_owned(), format_amount);
                    let available = b.available().map_or_else(|| "–".to_owned(), format_amount);
                    let _ = writeln!(
                        page,
                        "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{hold}</td><td class=\"n\">{available}</td></tr>",
                        escape(&b.asset),
                        escape(&b.code),
                        format_amount(b.total)
                    );
                }
                page.push_str("</table>\n");
            }
        }
    }
    page.push_str("</body></html>\n");
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_markup() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
