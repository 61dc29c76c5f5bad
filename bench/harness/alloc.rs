//! Scenario `alloc` (in-process): allocations and time per scrape, split between the exposition
//! encoding and the rest of the scrape.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use kraken::sim::SimOptions;
use kraken_exporter::app::{App, SharedEnv};
use kraken_exporter::audit::KeyAudit;
use kraken_exporter::cli::Cli;
use kraken_exporter::metrics::{self, AccountView, ReloadView};

use crate::Opts;
use crate::allocator::allocation_counters;
use crate::common;
use crate::env::Bench;

/// Allocations, bytes and wall time per call of `f`, over `n` calls.
pub(crate) fn per_call(n: u64, mut f: impl FnMut() -> usize) -> (f64, f64, f64, usize) {
    let mut size = f();
    let (a0, b0) = allocation_counters();
    let started = Instant::now();
    for _ in 0..n {
        size = f();
    }
    let elapsed = started.elapsed();
    let (a1, b1) = allocation_counters();
    (
        (a1 - a0) as f64 / n as f64,
        (b1 - b0) as f64 / n as f64,
        elapsed.as_secs_f64() * 1e6 / n as f64,
        size,
    )
}

pub(crate) fn alloc(bench: &Bench, opts: &Opts) -> Result<(), String> {
    let cases: Vec<(usize, usize, bool)> = match opts.0.get("cases") {
        Some(text) => text
            .split(',')
            .filter_map(|c| {
                let (a, b) = c.split_once('x')?;
                let watched = b.ends_with('w');
                Some((
                    a.parse().ok()?,
                    b.trim_end_matches('w').parse().ok()?,
                    watched,
                ))
            })
            .collect(),
        None => vec![
            (1, 10, false),
            (1, 100, false),
            (1, 100, true),
            (1, 1000, false),
            (100, 50, false),
            (1000, 50, false),
        ],
    };
    println!(
        "\n## alloc: one scrape in-process (Exporter::render, background mode, no HTTP), per scrape\n"
    );
    println!(
        "| accounts × assets | samples | body bytes | allocations | allocated bytes | µs | allocations per sample | metrics::render share of allocations / time | request families only: allocations / µs |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (accounts, assets, watched) in cases {
        let balances = common::balances(assets);
        // `w`: each account watches an asset it does not hold and has a threshold, so every
        // scrape adds a zero balance for it.
        let account_extra = if watched {
            "watch: [NOTHELD]\nmin_balance: {XBT: 0.5}\n"
        } else {
            ""
        };
        let fleet = bench.fleet(
            &format!(
                "alloc-{accounts}x{assets}{}",
                if watched { "w" } else { "" }
            ),
            accounts,
            &SimOptions::default(),
            Some(&balances),
            "refresh: {interval: 1h}\n",
            account_extra,
        )?;
        let env: SharedEnv = Arc::new(|_: &str| None);
        let config_path = fleet.config.to_string_lossy().into_owned();
        let cli = Cli::try_parse_from([
            "kraken_exporter",
            "--config.file",
            &config_path,
            "--web.listen-address",
            "127.0.0.1:0",
        ])
        .map_err(|e| e.to_string())?;
        let flags = cli.flags.clone();
        let config = kraken_exporter::config::resolve(cli, &*env).map_err(|e| e.to_string())?;
        let (app, _reloads) = bench
            .runtime
            .block_on(App::start(config, flags, env))
            .map_err(|e| format!("{e:#}"))?;
        let exporter = Arc::clone(&app.exporter);
        let deadline = Instant::now() + Duration::from_secs(60);
        while exporter.first_unready().is_some()
            || exporter
                .statuses()
                .iter()
                .any(|s| s.feature::<KeyAudit>().is_none())
        {
            if Instant::now() > deadline {
                return Err("the in-process exporter was not ready after 60s".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let n = (200_000 / (accounts * assets) as u64).clamp(5, 2_000);
        let far = tokio::time::Instant::now() + Duration::from_secs(3600);
        let (allocs, bytes, micros, size) = per_call(n, || {
            bench.runtime.block_on(exporter.render(far, None)).len()
        });
        let statuses = exporter.statuses();
        let no_thresholds = std::collections::BTreeMap::new();
        let reload = ReloadView {
            ok: true,
            last_success: SystemTime::now(),
        };
        let (render_allocs, _, render_micros, _) = per_call(n, || {
            let views: Vec<AccountView<'_>> = statuses
                .iter()
                .map(|s| AccountView {
                    status: s.clone(),
                    min_balance: &no_thresholds,
                    unknown_assets: &[],
                    max_outflow: &common::NO_LIMITS,
                })
                .collect();
            metrics::render(
                &views,
                None,
                Some(reload),
                None,
                &exporter.requests,
                &exporter.build,
            )
            .len()
        });
        let (request_allocs, _, request_micros, _) = per_call(n, || {
            metrics::render(
                &[],
                None,
                Some(reload),
                None,
                &exporter.requests,
                &exporter.build,
            )
            .len()
        });
        let samples = accounts * assets;
        println!(
            "| {accounts} × {assets}{} | {samples} | {size} | {allocs:.0} | {bytes:.0} | {micros:.1} | {:.1} | {:.0}% / {:.0}% | {request_allocs:.0} / {request_micros:.1} |",
            if watched {
                ", watching a missing asset"
            } else {
                ""
            },
            allocs / samples as f64,
            100.0 * render_allocs / allocs,
            100.0 * render_micros / micros,
        );
        drop(exporter);
        drop(app);
        drop(fleet);
    }
    Ok(())
}
