//! Scenario `profile`: `perf` samples of the exporter under `wrk` load.

use std::process::{Command, Stdio};
use std::time::Duration;

use kraken::sim::SimOptions;

use crate::Opts;
use crate::common;
use crate::env::Bench;
use crate::measure::wrk;

/// A group of symbols: its name, and whether a `perf report` symbol belongs to it.
pub(crate) type ProfileGroup = (&'static str, fn(&str) -> bool);

/// How `profile` groups symbols: the first group whose test matches takes the sample; the last
/// takes the rest.
pub(crate) const PROFILE_GROUPS: &[ProfileGroup] = &[
    ("kernel (network, page faults, scheduling)", |s| {
        s.starts_with("[k]")
    }),
    (
        "allocator (malloc, free, realloc and glibc internals)",
        |s| {
            [
                "malloc",
                "free",
                "realloc",
                "unlink_chunk",
                "sysmalloc",
                "alloc_perturb",
                "finish_grow",
                "do_reserve_and_handle",
                "__rust_",
            ]
            .iter()
            .any(|k| s.contains(k))
        },
    ),
    ("float formatting (f64 to text)", |s| {
        s.contains("flt2dec") || s.contains("float_to_decimal") || s.contains("fmt::Formatter")
    }),
    ("memcpy/memmove", |s| {
        s.contains("memmove") || s.contains("memcpy")
    }),
    (
        "prometheus text encoder (write_sample, escape_string, memchr)",
        |s| s.contains("prometheus::encoder") || s.contains("memchr") || s.contains("WriteUtf8"),
    ),
    ("prometheus registry gather (request counters)", |s| {
        s.contains("prometheus::")
    }),
    (
        "exporter: building metric families (metrics::render, family)",
        |s| s.contains("kraken_exporter::metrics"),
    ),
    ("exporter: other (statuses, server)", |s| {
        s.contains("kraken_exporter::")
    }),
    ("hyper and tokio (HTTP, runtime)", |s| {
        s.contains("hyper") || s.contains("tokio")
    }),
    ("other", |_| true),
];

pub(crate) fn profile(bench: &Bench, opts: &Opts) -> Result<(), String> {
    let assets = opts.number("assets", 100) as usize;
    let connections = opts.number("connections", 16) as usize;
    let seconds = opts.number("duration", 6);
    let balances = common::balances(assets);
    let fleet = bench.fleet(
        "profile",
        1,
        &SimOptions::default(),
        Some(&balances),
        "refresh: {interval: 1h}\n",
        "",
    )?;
    let mut exporter = bench.spawn_exporter(&fleet.config, &[])?;
    exporter.wait_ready(Duration::from_secs(30))?;
    std::thread::sleep(Duration::from_millis(300));
    let pid = exporter.process.child.id().to_string();
    let data = bench.work.0.join("perf.data");
    let record = Command::new("perf")
        .args(["record", "-F", "1999", "-o"])
        .arg(&data)
        .args(["-p", &pid, "--", "sleep", &(seconds - 1).to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("perf record: {e}"))?;
    let stat_out = bench.work.0.join("perf-stat.txt");
    let stat = Command::new("perf")
        .args([
            "stat",
            "-e",
            "task-clock,context-switches,cpu-migrations,page-faults",
            "-o",
        ])
        .arg(&stat_out)
        .args(["-p", &pid, "--", "sleep", &(seconds - 1).to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("perf stat: {e}"))?;
    let run = wrk(bench, &exporter.url(), connections, seconds, 10)?;
    for mut child in [record, stat] {
        let _ = child.wait();
    }
    let report = Command::new("perf")
        .args([
            "report",
            "--stdio",
            "--no-children",
            "--sort",
            "symbol",
            "--fields",
            "overhead,sym",
            "-i",
        ])
        .arg(&data)
        .output()
        .map_err(|e| format!("perf report: {e}"))?;
    let text = String::from_utf8_lossy(&report.stdout);
    let mut samples: Vec<(f64, String)> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (percent, symbol) = l.trim().split_once('%')?;
            // perf pads the line with columns of `-` for the fields it was told to leave out.
            let symbol = symbol.trim().trim_end_matches([' ', '-']);
            Some((percent.trim().parse().ok()?, symbol.to_owned()))
        })
        .collect();
    samples.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut groups: Vec<(&str, f64)> = PROFILE_GROUPS
        .iter()
        .map(|(name, _)| (*name, 0.0))
        .collect();
    for (percent, symbol) in &samples {
        let group = PROFILE_GROUPS
            .iter()
            .position(|(_, matches)| matches(symbol))
            .unwrap_or(PROFILE_GROUPS.len() - 1);
        groups[group].1 += percent;
    }
    println!(
        "\n## profile: {assets} assets, {connections} connections, {seconds}s; {:.0} req/s during sampling\n",
        run.rps
    );
    println!("| where | share of samples |");
    println!("|---|---|");
    for (name, percent) in groups {
        println!("| {name} | {percent:.1}% |");
    }
    println!("\nTop symbols and `perf stat`:\n");
    println!("```");
    for (percent, symbol) in samples.iter().take(25) {
        println!("{percent:6.2}%  {symbol}");
    }
    print!("{}", std::fs::read_to_string(&stat_out).unwrap_or_default());
    println!("```");
    Ok(())
}
