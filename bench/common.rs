//! Inputs shared by the micro-benchmarks (`benches/kraken.rs`) and the scenario harness
//! (`bench/harness/`): deterministic balances of any size, the BalanceEx answer that carries
//! them, and account statuses ready to render.
//!
//! Must not: depend on timing or randomness, so two runs measure the same work.

// Each bench target uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kraken::Reason;
use kraken::{CallObserver, Endpoint};
use kraken_exporter::audit::{AuditSource, KeyAudit};
use kraken_exporter::metrics::RequestMetrics;
use kraken_exporter::status::{AccountStatus, LabeledBalance, Snapshot};

/// Codes that the simulated Kraken's Assets list knows (they get a short name, `XXBT` → `XBT`);
/// larger accounts continue with synthetic codes, which are exported under their raw code.
const KNOWN_CODES: &[&str] = &[
    "XXBT", "XETH", "XXDG", "XXRP", "ZUSD", "ZEUR", "ZGBP", "DOT", "DOT.S", "DOT28.S", "ETH2.S",
    "USD.M", "XBT.M", "USDC", "USDT",
];

/// `n` distinct asset codes, the real ones first.
pub fn asset_codes(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| match KNOWN_CODES.get(i) {
            Some(code) => (*code).to_owned(),
            None => format!("TKN{i:04}"),
        })
        .collect()
}

/// `n` balances as the simulated Kraken takes them: (code, balance, hold_trade). Amounts use
/// all ten decimals Kraken sends; every fourth asset has a hold.
pub fn balances(n: usize) -> Vec<(String, f64, f64)> {
    asset_codes(n)
        .into_iter()
        .enumerate()
        .map(|(i, code)| {
            let total = (i as f64 + 1.0) * 1.234_567_890_1;
            let hold = if i % 4 == 0 { total / 10.0 } else { 0.0 };
            (code, total, hold)
        })
        .collect()
}

/// The BalanceEx answer for [`balances`]`(n)`, written as Kraken writes it (decimal strings).
pub fn balance_ex_body(n: usize) -> Vec<u8> {
    let entries: Vec<String> = balances(n)
        .into_iter()
        .map(|(code, total, hold)| {
            format!(r#""{code}":{{"balance":"{total:.10}","hold_trade":"{hold:.10}"}}"#)
        })
        .collect();
    format!(r#"{{"error":[],"result":{{{}}}}}"#, entries.join(",")).into_bytes()
}

/// What a scrape knows about account `name` holding [`balances`]`(assets)`: up, audited, with
/// a fresh snapshot.
pub fn account_status(name: &str, assets: usize) -> AccountStatus {
    let balances: Vec<LabeledBalance> = balances(assets)
        .into_iter()
        .map(|(code, total, hold)| LabeledBalance {
            asset: code.trim_start_matches(['X', 'Z']).to_owned(),
            code,
            total,
            hold: Some(hold),
        })
        .collect();
    let available: BTreeMap<String, f64> = balances
        .iter()
        .map(|b| (b.asset.clone(), b.total - b.hold.unwrap_or(0.0)))
        .collect();
    let permissions: BTreeMap<String, bool> = [
        ("funds_query", true),
        ("funds_deposit", false),
        ("funds_withdraw", false),
        ("orders_query", false),
        ("orders_create", false),
        ("orders_cancel", false),
    ]
    .into_iter()
    .map(|(name, granted)| (name.to_owned(), granted))
    .collect();
    AccountStatus {
        name: name.to_owned(),
        up: true,
        last_success: Some(SystemTime::now()),
        last_error: None,
        balances: Some(Arc::new(Snapshot {
            balances,
            fetched_at: SystemTime::now(),
            fetched_instant: tokio::time::Instant::now(),
            endpoint: Endpoint::BalanceEx,
            available: Some(available),
        })),
        retry_at: None,
        features: vec![Arc::new(KeyAudit {
            permissions,
            source: AuditSource::ApiKeyInfo,
            key: None,
            warnings: Vec::new(),
        })],
    }
}

/// The name of the `i`-th benchmark account; sorts in creation order.
pub fn account_name(i: usize) -> String {
    format!("acct{i:04}")
}

/// Request counters as a running exporter has them after one refresh of each account: the
/// public Assets call, and BalanceEx plus the key audit per account.
pub fn request_metrics(accounts: usize) -> RequestMetrics {
    let requests = RequestMetrics::new();
    requests.observe("public", Endpoint::Assets, Duration::from_millis(40), None);
    for i in 0..accounts {
        let name = account_name(i);
        requests.observe(&name, Endpoint::BalanceEx, Duration::from_millis(60), None);
        requests.observe(
            &name,
            Endpoint::GetApiKeyInfo,
            Duration::from_millis(55),
            None,
        );
    }
    // One failure, so the error family is not all zeros.
    requests.observe(
        "public",
        Endpoint::Assets,
        Duration::from_millis(10_000),
        Some(Reason::Timeout),
    );
    requests
}

/// No outflow limits, for the account views the benchmarks render.
pub static NO_LIMITS: BTreeMap<String, f64> = BTreeMap::new();
