//! Scenario `accounts`: refresh and render time for many accounts behind latency, with the key
//! audit off and on.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kraken::Endpoint;
use kraken::sim::SimOptions;

use crate::Opts;
use crate::common;
use crate::env::Bench;
use crate::http::get_once;
use crate::measure::{kib_to_mib, median, ms, sum_samples};

/// Timed GET of `/metrics`; returns the latency and the body.
pub(crate) fn timed_scrape(addr: SocketAddr) -> Result<(Duration, String), String> {
    let started = Instant::now();
    match get_once(addr, "/metrics") {
        Ok((200, body)) => Ok((
            started.elapsed(),
            String::from_utf8(body).map_err(|e| e.to_string())?,
        )),
        Ok((status, _)) => Err(format!("/metrics answered {status}")),
        Err(error) => Err(error.to_string()),
    }
}

pub(crate) fn accounts(bench: &Bench, opts: &Opts) -> Result<(), String> {
    let counts = opts.list("accounts", &[10, 100, 1000]);
    let assets = opts.number("assets", 50) as usize;
    let latency = Duration::from_millis(opts.number("latency-ms", 50));
    let rounds = opts.number("rounds", 3) as usize;
    println!(
        "\n## accounts: simulated Kraken latency {latency:?} per call, {assets} assets per account, on-scrape mode (min-interval 2s); medians of {rounds} refreshes\n"
    );
    println!(
        "| accounts | audit | exec → ready ms | exec → audit done ms | refresh scrape ms | cached scrape ms | refresh alone ms (difference) | exposition bytes | cached scrape per account µs | VmRSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let options = SimOptions {
        latency,
        ..SimOptions::default()
    };
    let balances = common::balances(assets);
    for &count in &counts {
        for audit in [false, true] {
            let fleet = bench.fleet(
                &format!("accounts-{count}-{audit}"),
                count,
                &options,
                Some(&balances),
                &format!("refresh: {{min_interval: 2s}}\naudit: {{enabled: {audit}}}\n"),
                "",
            )?;
            let mut exporter = bench.spawn_exporter(&fleet.config, &[])?;
            let ready = exporter.wait_ready(Duration::from_secs(120))?;
            let audited = if audit {
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    let body = exporter.metrics()?;
                    let done = body
                        .lines()
                        .filter(|l| {
                            l.starts_with("kraken_api_key_permission{")
                                && l.contains("permission=\"funds_query\"")
                        })
                        .count();
                    if done >= count {
                        break Some(exporter.started.elapsed());
                    }
                    if Instant::now() > deadline {
                        return Err(format!("only {done} of {count} keys audited after 60s"));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            } else {
                None
            };
            let mut refreshes = Vec::new();
            for _ in 0..rounds {
                std::thread::sleep(Duration::from_millis(2200));
                let before = fleet.calls(Endpoint::BalanceEx);
                let (took, body) = timed_scrape(exporter.addr)?;
                let refreshed = fleet.calls(Endpoint::BalanceEx) - before;
                let up = sum_samples(&body, "kraken_up", "");
                if refreshed != count as u64 || up != count as f64 {
                    eprintln!(
                        "# {count} accounts: a refresh scrape made {refreshed} BalanceEx calls and saw {up} accounts up"
                    );
                }
                refreshes.push(ms(took));
            }
            let mut cached = Vec::new();
            let mut size = 0;
            for _ in 0..9 {
                let (took, body) = timed_scrape(exporter.addr)?;
                size = body.len();
                cached.push(ms(took));
            }
            let refresh = median(&mut refreshes);
            let cached = median(&mut cached);
            let (rss, _) = exporter.memory();
            println!(
                "| {count} | {} | {:.0} | {} | {:.1} | {:.1} | {:.1} | {size} | {:.1} | {:.1} |",
                if audit { "on" } else { "off" },
                ms(ready),
                audited.map_or("–".to_owned(), |d| format!("{:.0}", ms(d))),
                refresh,
                cached,
                refresh - cached,
                1000.0 * cached / count as f64,
                kib_to_mib(rss)
            );
        }
    }
    Ok(())
}
