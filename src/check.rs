//! `kraken_exporter check`: refresh every account once and print what its key sees.
//!
//! Owns the tables printed to the terminal and the exit status of the check: 0 when every key
//! works and every configured asset name is a Kraken asset; 1 when one does not (and, with
//! `check --strict`, when a key has a hygiene finding); configuration mistakes exit 2 before the
//! check starts.
//! Must not: start the HTTP server or retry (the operator runs it again after fixing the key).

use std::io::Write;
use std::time::SystemTime;

use crate::app::{App, SharedEnv};
use crate::audit::{self, AuditSource, KeyAudit, KeyPolicy};
use crate::cli::Flags;
use crate::config::Config;
use crate::exporter::{AccountSet, ExportedAccount, resolve_assets, unknown_asset_message};
use crate::features::stream::StreamMode;
use crate::status::{Snapshot, format_amount};
use kraken::{AssetTable, KeyExpiry, Reason};

/// Refreshes every account once and writes a table of balances and the key's hygiene per account
/// to `out`, or the reason and the fix to `err`. Returns whether every key works and every asset
/// name in `min_balance` and `watch` is a Kraken asset (each one that is not is listed on `err`),
/// and, with `check --strict`, no key has a hygiene finding.
pub async fn run(
    config: Config,
    flags: Flags,
    env: SharedEnv,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<bool> {
    let demo = config.demo;
    let strict = config.check_strict;
    // `check` refreshes once and exits: it says what the stream would do, without opening it.
    let stream = config.stream.mode;
    let mut config = config;
    config.stream.mode = StreamMode::Off;
    let (app, _reloads) = App::start(config, flags, env).await?;
    let set = app.exporter.accounts();
    refresh_once(&set).await?;
    if demo {
        writeln!(
            out,
            "DEMO MODE: these balances come from a simulated Kraken; they are not real."
        )?;
    }
    let assets = set.market.current_assets();
    let mut all_ok = true;
    let mut findings = 0;
    for exported in &set.accounts {
        let (ok, found) = report(exported, &assets, stream, out, err)?;
        all_ok &= ok;
        findings += found;
    }
    if strict && findings > 0 {
        writeln!(
            err,
            "check --strict failed: {findings} key hygiene finding(s), each printed as a WARNING with what to do"
        )?;
        all_ok = false;
    }
    Ok(all_ok)
}

/// Refreshes every account once, concurrently, joining the refresh start-up already began
/// rather than calling twice.
async fn refresh_once(set: &AccountSet) -> anyhow::Result<()> {
    let refreshes: Vec<_> = set
        .accounts
        .iter()
        .map(|a| {
            let account = std::sync::Arc::clone(&a.account);
            tokio::spawn(async move {
                if !account.has_outcome() {
                    account.refresh_now().await;
                }
            })
        })
        .collect();
    for refresh in refreshes {
        refresh.await?;
    }
    Ok(())
}

/// Writes one account's result: its balances, thresholds, audit and key hygiene to `out`, or
/// what failed and the fix to `err`. Returns whether the account passed, and how many hygiene
/// findings its key has.
fn report(
    exported: &ExportedAccount,
    assets: &AssetTable,
    stream: StreamMode,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<(bool, usize)> {
    let mut ok = true;
    let resolved = resolve_assets(&exported.config, assets);
    for (name, nearest) in resolved.unknown.iter().zip(&resolved.nearest) {
        ok = false;
        writeln!(
            err,
            "check failed for account {:?}: {}",
            exported.config.name,
            unknown_asset_message(name, nearest.as_deref())
        )?;
    }
    let status = exported.account.status(true);
    if let Some((reason, message)) = &status.last_error {
        writeln!(err, "check failed for account {:?}: {message}", status.name)?;
        writeln!(err, "reason: {reason}")?;
        writeln!(err, "what to do: {}", reason.advice())?;
        if *reason == Reason::InvalidNonce {
            writeln!(err, "{}", nonce_scale_hint(SystemTime::now()))?;
        }
        return Ok((false, 0));
    }
    let Some(snapshot) = &status.balances else {
        writeln!(
            err,
            "check failed for account {:?}: no answer from Kraken",
            status.name
        )?;
        return Ok((false, 0));
    };
    writeln!(
        out,
        "The key works: account {:?}, {} assets from {}.",
        status.name,
        snapshot.balances.len(),
        snapshot.endpoint
    )?;
    write_balances(out, snapshot)?;
    write_thresholds(out, &resolved.min_balance, snapshot.available.as_ref())?;
    let policy = &exported.config.key_policy;
    let audit = status.feature::<KeyAudit>();
    write_audit(out, audit, policy)?;
    writeln!(out, "Balances stream: {}", stream_line(stream, audit))?;
    write_key_hygiene(out, audit, SystemTime::now())?;
    let findings = write_findings(out, audit, policy, SystemTime::now())?;
    writeln!(out)?;
    Ok((ok, findings))
}

/// The balance table: each code's total and hold, and per asset what it has available for
/// trading, on the asset's own row (the base code's, else its auto-earn code's), exactly the
/// `kraken_balance_available` the minimums are compared with.
fn write_balances(out: &mut dyn Write, snapshot: &Snapshot) -> std::io::Result<()> {
    let available = snapshot.available.as_ref();
    let has_row = |asset: &str| snapshot.balances.iter().any(|b| b.asset == asset);
    let rows: Vec<[String; 5]> = snapshot
        .balances
        .iter()
        .map(|b| {
            let of = |asset: &str| available.and_then(|a| a.get(asset)).copied();
            let per_asset = match (of(&b.asset), b.asset.strip_suffix(".F")) {
                (Some(amount), _) => format_amount(amount),
                (None, Some(base)) if of(base).is_some() && has_row(base) => {
                    format!("(in {base})")
                }
                (None, Some(base)) => of(base).map_or_else(|| "-".to_owned(), format_amount),
                (None, None) => "-".to_owned(),
            };
            [
                b.asset.clone(),
                b.code.clone(),
                format_amount(b.total),
                b.hold.map_or_else(|| "-".to_owned(), format_amount),
                per_asset,
            ]
        })
        .collect();
    write_table(
        out,
        [
            "ASSET",
            "CODE",
            "TOTAL",
            "HOLD",
            "AVAILABLE FOR TRADING (ASSET)",
        ],
        &rows,
    )?;
    if available.is_some() {
        writeln!(
            out,
            "Available for trading is per asset (kraken_balance_available): balance + credit - credit_used - hold_trade of the base code and its auto-earn (.F) code; staked and other codes count for nothing."
        )?;
    }
    writeln!(out)
}

/// Writes every hygiene finding about the key as a WARNING line with what to do; returns how
/// many there are.
fn write_findings(
    out: &mut dyn Write,
    audit: Option<&KeyAudit>,
    policy: &KeyPolicy,
    now: SystemTime,
) -> std::io::Result<usize> {
    let findings = audit.map(|a| a.findings(policy, now)).unwrap_or_default();
    for finding in &findings {
        writeln!(
            out,
            "WARNING: {}. What to do: {}.",
            finding.message(),
            finding.advice()
        )?;
    }
    Ok(findings.len())
}

/// Writes each minimum against what its asset can spend now (0 without a spendable balance), or
/// that availability is unknown because the Balance endpoint reports no holds.
fn write_thresholds(
    out: &mut dyn Write,
    min_balance: &std::collections::BTreeMap<String, f64>,
    available: Option<&std::collections::BTreeMap<String, f64>>,
) -> std::io::Result<()> {
    if min_balance.is_empty() {
        return writeln!(
            out,
            "Minimums: none set (min_balance, --balance.min or KRAKEN_BALANCE_MIN); no low-balance alert can fire.\n"
        );
    }
    for (asset, min) in min_balance {
        let line = match available {
            None => format!(
                "{asset}: minimum {}, available unknown (the Balance endpoint reports no holds)",
                format_amount(*min)
            ),
            Some(available) => {
                let now = available.get(asset).copied().unwrap_or(0.0);
                let verdict = if now < *min { "BELOW MINIMUM" } else { "ok" };
                format!(
                    "{asset}: available {} against a minimum of {}: {verdict}",
                    format_amount(now),
                    format_amount(*min)
                )
            }
        };
        writeln!(out, "{line}")?;
    }
    writeln!(out)
}

/// Writes what the key audit found: the permissions, each one the policy does not allow marked,
/// and what the key may hold.
fn write_audit(
    out: &mut dyn Write,
    audit: Option<&KeyAudit>,
    policy: &KeyPolicy,
) -> std::io::Result<()> {
    let Some(audit) = audit else {
        return writeln!(
            out,
            "Key permissions: not audited (the audit is off or Kraken did not answer)."
        );
    };
    let granted: Vec<String> = audit
        .permissions
        .iter()
        .filter(|(_, granted)| **granted)
        .map(|(name, _)| match policy.allowed.contains(name) {
            true => name.clone(),
            false => format!("{name} (NOT ALLOWED)"),
        })
        .collect();
    match audit.source {
        AuditSource::ApiKeyInfo => writeln!(
            out,
            "Key permissions (GetApiKeyInfo): {}",
            if granted.is_empty() {
                "none listed".to_owned()
            } else {
                granted.join(", ")
            }
        )?,
        AuditSource::WithdrawProbe => writeln!(
            out,
            "Key permissions (WithdrawMethods probe; only withdrawal can be established): funds_withdraw {}",
            if audit.granted(audit::FUNDS_WITHDRAW) == Some(true) {
                "granted"
            } else {
                "not granted"
            }
        )?,
    }
    let allowed: Vec<&str> = policy.allowed.iter().map(String::as_str).collect();
    writeln!(
        out,
        "Key may hold (allowed_permissions): {}",
        allowed.join(", ")
    )
}

/// What the running exporter does about the WebSocket balances stream for this key.
fn stream_line(mode: StreamMode, audit: Option<&KeyAudit>) -> &'static str {
    match (mode, audit.and_then(|a| a.granted(audit::WEBSOCKET))) {
        (StreamMode::Off, _) => "off (--kraken.stream=off): balances are polled",
        (StreamMode::On, _) => {
            "on (--kraken.stream=on): deposits and withdrawals reach /metrics within seconds"
        }
        (StreamMode::Auto, Some(true)) => {
            "on: the key may use the WebSocket API, so deposits and withdrawals reach /metrics within seconds"
        }
        (StreamMode::Auto, Some(false)) => {
            "off: the key lacks Kraken's 'WebSocket interface' permission, so balances are polled; allow it (it reads nothing more) to see money move within seconds"
        }
        (StreamMode::Auto, None) => {
            "decided at start: the audit cannot tell whether the key may use the WebSocket API, so the exporter asks for a token once"
        }
    }
}

/// What an invalid nonce that survived the retry most often means, with this exporter's nonce
/// now, so the operator can compare it with the key's (Kraken shows it in GetApiKeyInfo and in
/// other clients' logs).
fn nonce_scale_hint(now: SystemTime) -> String {
    let ours = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!(
        "This exporter signs with millisecond nonces (now {ours}). Kraken refuses every one of them when another client used this key with microsecond ({}...) or nanosecond nonces: the key's nonce never goes back down. Fix: create a new API key for the exporter alone, or make the other client use millisecond nonces.",
        ours * 1000
    )
}

/// Writes what GetApiKeyInfo tells about the key: its name, expiry, IP allowlist, age and nonce
/// window (the findings about them follow, from [`write_findings`]).
fn write_key_hygiene(
    out: &mut dyn Write,
    audit: Option<&KeyAudit>,
    now: SystemTime,
) -> std::io::Result<()> {
    let Some(key) = audit.and_then(|a| a.key.as_ref()) else {
        return Ok(());
    };
    let days = audit::days_between;
    writeln!(
        out,
        "Key name: {}",
        key.name.as_deref().unwrap_or("(not given)")
    )?;
    let expiry = match key.valid_until {
        Some(KeyExpiry::Never) => "never (Kraken lets a key expire on a date: set one)".to_owned(),
        Some(KeyExpiry::At(at)) if at <= now => "EXPIRED: create a new key".to_owned(),
        Some(KeyExpiry::At(at)) => format!("in {} days", days(now, at)),
        None => "not reported".to_owned(),
    };
    writeln!(out, "Key expires: {expiry}")?;
    let allowlist = match &key.ip_allowlist {
        Some(list) if list.is_empty() => {
            "none: usable from any IP address (restrict it to the exporter's address)".to_owned()
        }
        Some(list) => format!("{} entries ({})", list.len(), list.join(", ")),
        None => "not reported".to_owned(),
    };
    writeln!(out, "Key IP allowlist: {allowlist}")?;
    if let Some(created) = key.created_time {
        writeln!(out, "Key age: {} days", days(created, now))?;
    }
    if let Some(window) = key.nonce_window {
        writeln!(out, "Key nonce window: {window}")?;
    }
    Ok(())
}

/// Writes aligned columns: text left, numbers right.
fn write_table(
    out: &mut dyn Write,
    header: [&str; 5],
    rows: &[[String; 5]],
) -> std::io::Result<()> {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 5]| {
        cells
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if i < 2 {
                    format!("{cell:<w$}", w = widths[i])
                } else {
                    format!("{cell:>w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    writeln!(out, "{}", line(header))?;
    for row in rows {
        writeln!(out, "{}", line(row.each_ref().map(String::as_str)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;

    fn printed(audit: Option<&KeyAudit>) -> String {
        let mut out = Vec::new();
        write_audit(&mut out, audit, &KeyPolicy::default()).unwrap();
        write_findings(&mut out, audit, &KeyPolicy::default(), SystemTime::now()).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn key_hygiene_prints_name_expiry_allowlist_age_and_a_warning_per_finding() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let day = Duration::from_secs(86_400);
        let key = kraken::ApiKeyInfo {
            name: Some("monitor".into()),
            valid_until: Some(KeyExpiry::At(now + day * 60)),
            created_time: Some(now - day * 100),
            ip_allowlist: Some(vec![]),
            ..Default::default()
        };
        let mut audit = KeyAudit::from_api_key_info(&key);
        audit
            .warnings
            .push(audit::KeyWarning::NonceScale { factor: 1000 });
        let mut out = Vec::new();
        write_key_hygiene(&mut out, Some(&audit), now).unwrap();
        let found = write_findings(&mut out, Some(&audit), &KeyPolicy::default(), now).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Key name: monitor\n"), "{text}");
        assert!(text.contains("Key expires: in 60 days\n"), "{text}");
        assert!(text.contains("usable from any IP address"), "{text}");
        assert!(text.contains("Key age: 100 days\n"), "{text}");
        // Age past 90 days, no IP allowlist, and the nonce of another client: one line each.
        assert_eq!(found, 3, "{text}");
        assert_eq!(text.matches("WARNING: ").count(), 3, "{text}");
        assert!(
            text.contains("WARNING: the key is 100 days old, older than the rotation age of 90 days. What to do: create a new key"),
            "{text}"
        );
        assert!(
            text.contains("WARNING: the key has no IP allowlist: it works from any IP address. What to do: restrict"),
            "{text}"
        );
        assert!(
            text.contains("WARNING: Kraken's last accepted nonce"),
            "{text}"
        );

        let never = kraken::ApiKeyInfo {
            valid_until: Some(KeyExpiry::Never),
            ip_allowlist: Some(vec!["192.0.2.7".into()]),
            ..Default::default()
        };
        let mut out = Vec::new();
        write_key_hygiene(&mut out, Some(&KeyAudit::from_api_key_info(&never)), now).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Key expires: never"), "{text}");
        assert!(text.contains("1 entries (192.0.2.7)"), "{text}");
        // The probe tells nothing about the key itself: nothing is printed.
        let probe = KeyAudit::from_withdraw_probe(Ok(())).unwrap();
        let mut out = Vec::new();
        write_key_hygiene(&mut out, Some(&probe), now).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn the_available_column_is_per_asset_and_agrees_with_the_minimum_line() {
        let balance =
            |asset: &str, code: &str, total: f64, hold: f64| crate::status::LabeledBalance {
                asset: asset.into(),
                code: code.into(),
                total,
                hold: Some(hold),
            };
        // Auto-earn: the base code is below its hold while the coins sit in XBT.F.
        let snapshot = Snapshot {
            balances: vec![
                balance("XBT.F", "XBT.F", 1.0, 0.0),
                balance("XBT", "XXBT", 0.0, 0.2),
                balance("DOT.S", "DOT.S", 5.0, 0.0),
                balance("ETH.F", "ETH.F", 2.0, 0.0),
            ],
            fetched_at: SystemTime::now(),
            fetched_instant: tokio::time::Instant::now(),
            endpoint: kraken::Endpoint::BalanceEx,
            available: Some(BTreeMap::from([("XBT".into(), 0.8), ("ETH".into(), 2.0)])),
        };
        let mut out = Vec::new();
        write_balances(&mut out, &snapshot).unwrap();
        write_thresholds(
            &mut out,
            &BTreeMap::from([("XBT".into(), 0.5)]),
            snapshot.available.as_ref(),
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            !text.contains("-0.2"),
            "no per-code difference is printed:\n{text}"
        );
        let row = |code: &str| {
            text.lines()
                .find(|line| line.split_whitespace().nth(1) == Some(code))
                .unwrap_or_else(|| panic!("no row for {code}:\n{text}"))
                .to_owned()
        };
        assert!(row("XXBT").ends_with(" 0.8"), "{text}");
        assert!(row("XBT.F").ends_with("(in XBT)"), "{text}");
        assert!(row("DOT.S").ends_with(" -"), "{text}");
        // Without a base row, the auto-earn row carries the asset's amount.
        assert!(row("ETH.F").ends_with(" 2"), "{text}");
        assert!(
            text.contains("XBT: available 0.8 against a minimum of 0.5: ok"),
            "{text}"
        );
    }

    #[test]
    fn an_invalid_nonce_explains_the_scale_of_another_client() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(1_772_627_060_997);
        let hint = nonce_scale_hint(now);
        assert!(hint.contains("now 1772627060997"), "{hint}");
        assert!(hint.contains("microsecond (1772627060997000...)"), "{hint}");
        assert!(hint.contains("create a new API key"), "{hint}");
    }

    #[test]
    fn the_audit_is_printed_and_a_risky_key_warned_about() {
        let query_only = KeyAudit {
            permissions: BTreeMap::from([
                ("funds_query".into(), true),
                ("funds_withdraw".into(), false),
            ]),
            source: AuditSource::ApiKeyInfo,
            key: None,
            warnings: Vec::new(),
        };
        let text = printed(Some(&query_only));
        assert!(
            text.contains("Key permissions (GetApiKeyInfo): funds_query\n"),
            "{text}"
        );
        assert!(
            text.contains("Key may hold (allowed_permissions): funds_query, websocket\n"),
            "{text}"
        );
        assert!(!text.contains("WARNING"), "{text}");

        let withdrawer = KeyAudit::from_withdraw_probe(Ok(())).unwrap();
        let text = printed(Some(&withdrawer));
        assert!(text.contains("funds_withdraw granted"), "{text}");
        assert!(
            text.contains("WARNING: the key has funds_withdraw, which allowed_permissions does not allow (it can move funds or trade). What to do: create a key without funds_withdraw"),
            "{text}"
        );

        let trader = KeyAudit::from_api_key_info(&kraken::ApiKeyInfo {
            permissions: ["query-funds", "modify-trades"].map(str::to_owned).into(),
            ..Default::default()
        });
        let text = printed(Some(&trader));
        assert!(
            text.contains("funds_query, orders_create (NOT ALLOWED)"),
            "{text}"
        );

        assert!(printed(None).contains("not audited"));
    }
}
