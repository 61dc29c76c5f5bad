//! Scenario `startup`: time from exec to `/-/ready` answering 200.

use std::time::Duration;

use kraken::sim::SimOptions;

use crate::Opts;
use crate::env::Bench;
use crate::measure::{median, ms};

pub(crate) fn startup(bench: &Bench, opts: &Opts) -> Result<(), String> {
    let runs = opts.number("runs", 20) as usize;
    let fleet = bench.fleet("startup", 1, &SimOptions::default(), None, "", "")?;
    let mut times = Vec::new();
    for _ in 0..runs {
        let mut exporter = bench.spawn_exporter(&fleet.config, &[])?;
        times.push(ms(exporter.wait_ready(Duration::from_secs(30))?));
    }
    let mut sorted = times.clone();
    let med = median(&mut sorted);
    println!(
        "\n## startup: exec → /-/ready 200, one account, local simulated Kraken, {runs} runs\n"
    );
    println!("| median ms | min ms | max ms | binary bytes |");
    println!("|---|---|---|---|");
    println!(
        "| {med:.1} | {:.1} | {:.1} | {} |",
        sorted[0],
        sorted[sorted.len() - 1],
        std::fs::metadata(&bench.exporter_bin).map_or(0, |m| m.len())
    );
    Ok(())
}
