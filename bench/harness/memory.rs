//! Scenario `memory`: resident memory idle, across many scrapes, and with many accounts.

use std::time::{Duration, Instant};

use kraken::sim::SimOptions;

use crate::Opts;
use crate::common;
use crate::env::Bench;
use crate::http::scrape_many;
use crate::measure::{kib_to_mib, ms};

pub(crate) fn memory(bench: &Bench, opts: &Opts) -> Result<(), String> {
    let scrapes = opts.number("scrapes", 100_000);
    let accounts = opts.number("accounts", 1000) as usize;
    let assets = opts.number("assets", 50) as usize;
    println!(
        "\n## memory: resident set (VmRSS) of the exporter, on-scrape mode (min-interval 10s)\n"
    );
    println!("| case | VmRSS MiB | peak (VmHWM) MiB | note |");
    println!("|---|---|---|---|");

    let fleet = bench.fleet("memory-one", 1, &SimOptions::default(), None, "", "")?;
    let mut exporter = bench.spawn_exporter(&fleet.config, &[])?;
    exporter.wait_ready(Duration::from_secs(30))?;
    std::thread::sleep(Duration::from_secs(1));
    let (idle, idle_peak) = exporter.memory();
    println!(
        "| 1 account, idle after start-up | {:.2} | {:.2} | default sim balances (8 assets) |",
        kib_to_mib(idle),
        kib_to_mib(idle_peak)
    );
    scrape_many(exporter.addr, 1_000, 4)?;
    let (warm, warm_peak) = exporter.memory();
    println!(
        "| 1 account, after 1,000 scrapes | {:.2} | {:.2} | warm-up |",
        kib_to_mib(warm),
        kib_to_mib(warm_peak)
    );
    let mut previous = warm;
    for round in 1..=2 {
        let elapsed = scrape_many(exporter.addr, scrapes, 4)?;
        let (rss, peak) = exporter.memory();
        println!(
            "| 1 account, after {} more scrapes ({round}) | {:.2} | {:.2} | {:+.2} MiB since previous row, {:+.2} MiB since idle; {:.0} scrapes/s over 4 connections |",
            scrapes,
            kib_to_mib(rss),
            kib_to_mib(peak),
            kib_to_mib(rss) - kib_to_mib(previous),
            kib_to_mib(rss) - kib_to_mib(idle),
            scrapes as f64 / elapsed.as_secs_f64()
        );
        previous = rss;
    }
    drop(exporter);
    drop(fleet);

    let balances = common::balances(assets);
    let fleet = bench.fleet(
        "memory-many",
        accounts,
        &SimOptions::default(),
        Some(&balances),
        "",
        "",
    )?;
    let mut exporter = bench.spawn_exporter(&fleet.config, &[])?;
    let ready = exporter.wait_ready(Duration::from_secs(120))?;
    std::thread::sleep(Duration::from_secs(1));
    let (rss, peak) = exporter.memory();
    println!(
        "| {accounts} accounts × {assets} assets, after start-up | {:.2} | {:.2} | ready after {:.0} ms |",
        kib_to_mib(rss),
        kib_to_mib(peak),
        ms(ready)
    );
    let body = exporter.metrics()?;
    let started = Instant::now();
    scrape_many(exporter.addr, 20, 1)?;
    let per_scrape = started.elapsed() / 20;
    let (rss, peak) = exporter.memory();
    println!(
        "| {accounts} accounts × {assets} assets, after 21 scrapes | {:.2} | {:.2} | exposition {:.1} MiB, {:.0} ms per scrape |",
        kib_to_mib(rss),
        kib_to_mib(peak),
        body.len() as f64 / 1048576.0,
        ms(per_scrape)
    );
    Ok(())
}
