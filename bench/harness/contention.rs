//! Scenario `contention`: the `serve` load while refreshes run (background and on-scrape modes).

use std::time::Duration;

use kraken::Endpoint;
use kraken::sim::SimOptions;

use crate::Opts;
use crate::common;
use crate::env::Bench;
use crate::measure::{WrkRun, median_run, wrk};

pub(crate) fn contention(bench: &Bench, opts: &Opts) -> Result<(), String> {
    let assets = opts.number("assets", 100) as usize;
    let connections = opts.number("connections", 16) as usize;
    let seconds = opts.number("duration", 4);
    let reps = opts.number("reps", 3) as usize;
    let variants = [
        ("background, interval 1h", "refresh: {interval: 1h}\n"),
        ("background, interval 100ms", "refresh: {interval: 100ms}\n"),
        (
            "on-scrape, min-interval 1h",
            "refresh: {min_interval: 1h}\n",
        ),
        (
            "on-scrape, min-interval 100ms",
            "refresh: {min_interval: 100ms}\n",
        ),
    ];
    let balances = common::balances(assets);
    let mut running = Vec::new();
    for (i, (_, global)) in variants.iter().enumerate() {
        let fleet = bench.fleet(
            &format!("contention-{i}"),
            1,
            &SimOptions::default(),
            Some(&balances),
            global,
            "",
        )?;
        let mut exporter = bench.spawn_exporter(&fleet.config, &[])?;
        exporter.wait_ready(Duration::from_secs(30))?;
        running.push((fleet, exporter));
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut runs: Vec<Vec<WrkRun>> = vec![Vec::new(); variants.len()];
    let mut calls = vec![0u64; variants.len()];
    for rep in 0..reps {
        for k in 0..variants.len() {
            let i = (k + rep) % variants.len();
            let (fleet, exporter) = &running[i];
            let before = fleet.calls(Endpoint::BalanceEx);
            runs[i].push(wrk(bench, &exporter.url(), connections, seconds, 10)?);
            calls[i] += fleet.calls(Endpoint::BalanceEx) - before;
        }
    }
    println!(
        "\n## contention: {assets} assets, {connections} connections, wrk {seconds}s × {reps} runs, medians\n"
    );
    println!("| refresh | req/s | p50 ms | p99 ms | BalanceEx calls per second of load |");
    println!("|---|---|---|---|---|");
    for (i, (name, _)) in variants.iter().enumerate() {
        let run = median_run(&runs[i]);
        println!(
            "| {name} | {:.0} | {:.2} | {:.2} | {:.1} |",
            run.rps,
            run.p50,
            run.p99,
            calls[i] as f64 / (seconds * reps as u64) as f64
        );
    }
    Ok(())
}
