//! Scenario `footprint` (in-process): live heap of the request counters and account statuses of
//! many accounts, and the transient heap of one render.

use std::time::{Duration, SystemTime};

use kraken::{CallObserver, Endpoint};
use kraken_exporter::metrics::{self, AccountView, BuildInfo, ReloadView, RequestMetrics};

use crate::Opts;
use crate::allocator::{allocation_counters, live_bytes, peak_bytes, reset_peak};
use crate::common;

pub(crate) fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

pub(crate) fn footprint(opts: &Opts) -> Result<(), String> {
    let accounts = opts.number("accounts", 1000) as usize;
    let assets = opts.number("assets", 50) as usize;
    println!(
        "\n## footprint: live heap in-process (counting allocator), {accounts} accounts × {assets} assets\n"
    );
    println!("| what | live heap MiB | per account KiB | allocations |");
    println!("|---|---|---|---|");
    let row = |what: &str, bytes: u64, allocations: u64| {
        println!(
            "| {what} | {:.1} | {:.1} | {allocations} |",
            mib(bytes),
            bytes as f64 / 1024.0 / accounts as f64
        );
    };
    let counters = |endpoints: &[Endpoint], observed: &[Endpoint]| {
        let (a0, _) = allocation_counters();
        let before = live_bytes();
        let requests = RequestMetrics::new();
        for i in 0..accounts {
            let name = common::account_name(i);
            requests.prepare(&name, endpoints);
            for endpoint in observed {
                requests.observe(&name, *endpoint, Duration::from_millis(50), None);
            }
        }
        let (a1, _) = allocation_counters();
        (requests, live_bytes() - before, a1 - a0)
    };
    let (_, bytes, allocations) = counters(
        &[Endpoint::BalanceEx, Endpoint::Balance],
        &[Endpoint::BalanceEx],
    );
    row(
        "request counters, audit off (2 endpoints × 12 counters, 1 histogram)",
        bytes,
        allocations,
    );
    let (requests, bytes, allocations) = counters(
        &[
            Endpoint::BalanceEx,
            Endpoint::Balance,
            Endpoint::GetApiKeyInfo,
            Endpoint::WithdrawMethods,
        ],
        &[Endpoint::BalanceEx, Endpoint::GetApiKeyInfo],
    );
    row(
        "request counters, audit on (4 endpoints × 12 counters, 2 histograms)",
        bytes,
        allocations,
    );
    let (a0, _) = allocation_counters();
    let before = live_bytes();
    let statuses: Vec<_> = (0..accounts)
        .map(|i| common::account_status(&common::account_name(i), assets))
        .collect();
    let (a1, _) = allocation_counters();
    row(
        "account statuses (snapshot of the balances, key audit)",
        live_bytes() - before,
        a1 - a0,
    );

    let build = BuildInfo::current();
    let reload = ReloadView {
        ok: true,
        last_success: SystemTime::now(),
    };
    let no_thresholds = std::collections::BTreeMap::new();
    let views = || -> Vec<AccountView<'_>> {
        statuses
            .iter()
            .map(|status| AccountView {
                status: status.clone(),
                min_balance: &no_thresholds,
                unknown_assets: &[],
                max_outflow: &common::NO_LIMITS,
            })
            .collect()
    };
    let transient = |render: &dyn Fn() -> Vec<u8>| {
        let before = reset_peak();
        let (a0, _) = allocation_counters();
        let body = render();
        let (a1, _) = allocation_counters();
        (peak_bytes() - before, a1 - a0, body)
    };
    let (bytes, allocations, body) =
        transient(&|| metrics::render(&views(), None, Some(reload), None, &requests, &build));
    row(
        &format!(
            "one render today, transient peak (exposition {:.1} MiB)",
            mib(body.len() as u64)
        ),
        bytes,
        allocations,
    );
    let no_requests = RequestMetrics::new();
    let (bytes, allocations, _) =
        transient(&|| metrics::render(&views(), None, Some(reload), None, &no_requests, &build));
    row(
        "account families only, today, transient peak",
        bytes,
        allocations,
    );
    Ok(())
}
