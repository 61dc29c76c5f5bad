//! Scenario `coalesce`: many concurrent scrapers against one account on a Starter-tier rate
//! limit; counts the calls that reach Kraken.

use std::time::{Duration, Instant};

use kraken::Endpoint;
use kraken::sim::{STARTER_RATE_LIMIT, SimOptions};

use crate::Opts;
use crate::env::Bench;
use crate::measure::{sum_samples, wrk};

pub(crate) fn coalesce(bench: &Bench, opts: &Opts) -> Result<(), String> {
    let connections = opts.number("connections", 1000) as usize;
    let seconds = opts.number("duration", 60);
    let options = SimOptions {
        rate_limit: Some(STARTER_RATE_LIMIT),
        ..SimOptions::default()
    };
    let fleet = bench.fleet("coalesce", 1, &options, None, "", "")?;
    let mut exporter = bench.spawn_exporter(&fleet.config, &["--refresh.min-interval", "10s"])?;
    exporter.wait_ready(Duration::from_secs(30))?;
    let ready_at = Instant::now();
    std::thread::sleep(Duration::from_millis(200));
    let methods = [
        Endpoint::BalanceEx,
        Endpoint::GetApiKeyInfo,
        Endpoint::Assets,
    ];
    let before: Vec<u64> = methods.iter().map(|m| fleet.calls(*m)).collect();
    let started = Instant::now();
    let run = wrk(bench, &exporter.url(), connections, seconds, 10)?;
    let load_ended = Instant::now();
    let after: Vec<u64> = methods.iter().map(|m| fleet.calls(*m)).collect();
    let body = exporter.metrics()?;
    let rate_limited = sum_samples(
        &body,
        "kraken_request_errors_total",
        "reason=\"rate_limited\"",
    );
    let all_errors = sum_samples(&body, "kraken_request_errors_total", "");
    // One refresh at start-up, then one per elapsed min-interval while scrapes keep coming.
    let expected = 1 + (load_ended - ready_at).as_secs() / 10;
    println!(
        "\n## coalesce: {connections} concurrent scrapers for {seconds}s, on-scrape mode, --refresh.min-interval 10s, Starter rate limit (15, -0.33/s)\n"
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| BalanceEx calls (start-up + during load) | {} + {} = {} |",
        before[0],
        after[0] - before[0],
        after[0]
    );
    println!("| expected by the policy (1 + elapsed/10s) | {expected} |");
    println!(
        "| GetApiKeyInfo / Assets calls | {} / {} |",
        after[1], after[2]
    );
    println!("| kraken_request_errors_total{{reason=\"rate_limited\"}} | {rate_limited} |");
    println!("| kraken_request_errors_total, all reasons | {all_errors} |");
    println!(
        "| scrapes answered (wrk) | {} in {:.1}s ({:.0}/s), p50 {:.2} ms, p99 {:.2} ms |",
        run.requests,
        started.elapsed().as_secs_f64(),
        run.rps,
        run.p50,
        run.p99
    );
    println!(
        "| wrk socket errors / timeouts / non-2xx | {} / {} / {} |",
        run.errors, run.timeouts, run.non_2xx
    );
    Ok(())
}
