//! `kraken_exporter check`: refresh every account once and print what its key sees.
//!
//! Owns the tables printed to the terminal and the exit status of the check.
//! Must not: start the HTTP server or retry (the operator runs it again after fixing the key).

use std::io::Write;
use std::time::{Duration, SystemTime};

use crate::app::{App, SharedEnv};
use crate::audit::{self, AuditSource, KeyAudit};
use crate::cli::Flags;
use crate::config::Config;
use crate::exporter::{AccountSet, ExportedAccount, resolve_assets, unknown_asset_message};
use crate::status::format_amount;
use kraken::{AssetTable, KeyExpiry, Reason};

/// Refreshes every account once and writes a table of balances per account to `out`, or the
/// reason and the fix to `err`. Returns whether every key works and every asset name in
/// `min_balance` and `watch` is a Kraken asset (each one that is not is listed on `err`).
pub async fn run(
    config: Config,
    flags: Flags,
    env: SharedEnv,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<bool> {
    let demo = config.demo;
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
    for exported in &set.accounts {
        all_ok &= report(exported, &assets, out, err)?;
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
/// what failed and the fix to `err`. Returns whether the account passed.
fn report(
    exported: &ExportedAccount,
    assets: &AssetTable,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<bool> {
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
        return Ok(false);
    }
    let Some(snapshot) = &status.balances else {
        writeln!(
            err,
            "check failed for account {:?}: no answer from Kraken",
            status.name
        )?;
        return Ok(false);
    };
    writeln!(
        out,
        "The key works: account {:?}, {} assets from {}.",
        status.name,
        snapshot.balances.len(),
        snapshot.endpoint
    )?;
    let rows: Vec<[String; 5]> = snapshot
        .balances
        .iter()
        .map(|b| {
            [
                b.asset.clone(),
                b.code.clone(),
                format_amount(b.total),
                b.hold.map_or_else(|| "-".to_owned(), format_amount),
                b.available().map_or_else(|| "-".to_owned(), format_amount),
            ]
        })
        .collect();
    write_table(out, ["ASSET", "CODE", "TOTAL", "HOLD", "AVAILABLE"], &rows)?;
    writeln!(out)?;
    write_thresholds(out, &resolved.min_balance, snapshot.available.as_ref())?;
    write_audit(out, status.feature::<KeyAudit>())?;
    write_key_hygiene(out, status.feature::<KeyAudit>(), SystemTime::now())?;
    writeln!(out)?;
    Ok(ok)
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

/// Writes what the key audit found: the permissions, and a warning when the key can move funds
/// or trade.
fn write_audit(out: &mut dyn Write, audit: Option<&KeyAudit>) -> std::io::Result<()> {
    let Some(audit) = audit else {
        return writeln!(
            out,
            "Key permissions: not audited (the audit is off or Kraken did not answer)."
        );
    };
    let granted: Vec<&str> = audit
        .permissions
        .iter()
        .filter(|(_, granted)| **granted)
        .map(|(name, _)| name.as_str())
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
    let risky = audit.risky();
    if !risky.is_empty() {
        writeln!(
            out,
            "WARNING: this key can {}: an exporter needs only 'Funds: Query'. Create a Query-only key and replace this one.",
            risky.join(", ")
        )?;
    }
    let unneeded = audit.unneeded();
    if !unneeded.is_empty() {
        writeln!(
            out,
            "NOTE: this key also has {}, which the exporter does not use: a monitoring key should have only 'Funds: Query'.",
            unneeded.join(", ")
        )?;
    }
    Ok(())
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

/// Writes the key hygiene GetApiKeyInfo tells: the key's name, expiry, IP allowlist and age,
/// each with what to do when it falls short of an operator's checklist, then any sign that
/// another client shares the key.
fn write_key_hygiene(
    out: &mut dyn Write,
    audit: Option<&KeyAudit>,
    now: SystemTime,
) -> std::io::Result<()> {
    let Some(key) = audit.and_then(|a| a.key.as_ref()) else {
        return Ok(());
    };
    let days = |from: SystemTime, to: SystemTime| {
        to.duration_since(from).unwrap_or(Duration::ZERO).as_secs() / 86_400
    };
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
    for warning in audit.iter().flat_map(|a| &a.warnings) {
        writeln!(out, "WARNING: {}", warning.message())?;
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

    use super::*;

    fn printed(audit: Option<&KeyAudit>) -> String {
        let mut out = Vec::new();
        write_audit(&mut out, audit).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn key_hygiene_prints_name_expiry_allowlist_age_and_warnings() {
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
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Key name: monitor\n"), "{text}");
        assert!(text.contains("Key expires: in 60 days\n"), "{text}");
        assert!(text.contains("usable from any IP address"), "{text}");
        assert!(text.contains("Key age: 100 days\n"), "{text}");
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
        assert!(!text.contains("WARNING"), "{text}");

        let withdrawer = KeyAudit::from_withdraw_probe(Ok(())).unwrap();
        let text = printed(Some(&withdrawer));
        assert!(text.contains("funds_withdraw granted"), "{text}");
        assert!(
            text.contains("WARNING: this key can funds_withdraw"),
            "{text}"
        );
        assert!(text.contains("Create a Query-only key"), "{text}");

        assert!(printed(None).contains("not audited"));
    }
}
