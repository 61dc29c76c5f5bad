//! Measurements: `wrk` runs and their medians, units, and sums of samples in an exposition.

use std::process::Command;
use std::time::Duration;

use crate::env::Bench;

/// What one `wrk` run measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct WrkRun {
    /// Requests per second.
    pub(crate) rps: f64,
    /// Median latency, ms.
    pub(crate) p50: f64,
    /// 99th percentile latency, ms.
    pub(crate) p99: f64,
    /// Requests completed.
    pub(crate) requests: u64,
    /// Connect, read and write errors.
    pub(crate) errors: u64,
    /// Requests that timed out.
    pub(crate) timeouts: u64,
    /// Answers other than 2xx/3xx.
    pub(crate) non_2xx: u64,
}

/// Runs `wrk` against `url`.
pub(crate) fn wrk(
    bench: &Bench,
    url: &str,
    connections: usize,
    seconds: u64,
    timeout_secs: u64,
) -> Result<WrkRun, String> {
    let threads = match (bench.server_cpu, connections) {
        (_, 1) => 1,
        (Some(_), _) => 1,
        (None, _) => 2,
    };
    let mut command = match bench.server_cpu {
        Some(_) => {
            let mut command = Command::new("taskset");
            command.args(["-c", "0", "wrk"]);
            command
        }
        None => Command::new("wrk"),
    };
    let output = command
        .args([
            "-t",
            &threads.to_string(),
            "-c",
            &connections.to_string(),
            "-d",
            &format!("{seconds}s"),
            "--timeout",
            &format!("{timeout_secs}s"),
            "--latency",
            url,
        ])
        .output()
        .map_err(|e| format!("running wrk (apt-get install wrk): {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "wrk failed: {text} {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(parse_wrk(&text))
}

/// Reads the numbers out of `wrk --latency` output.
pub(crate) fn parse_wrk(text: &str) -> WrkRun {
    let mut run = WrkRun::default();
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", value] => run.rps = value.parse().unwrap_or(0.0),
            ["50%", value] => run.p50 = millis(value),
            ["99%", value] => run.p99 = millis(value),
            [count, "requests", "in", ..] => run.requests = count.parse().unwrap_or(0),
            ["Non-2xx", "or", "3xx", "responses:", count] => {
                run.non_2xx = count.parse().unwrap_or(0)
            }
            ["Socket", "errors:", ..] => {
                let numbers: Vec<u64> = words
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse().ok())
                    .collect();
                if let [connect, read, write, timeout] = numbers.as_slice() {
                    run.errors = connect + read + write;
                    run.timeouts = *timeout;
                }
            }
            _ => {}
        }
    }
    run
}

/// `1.23ms`, `456.00us`, `1.02s`, `2.00m` → milliseconds.
pub(crate) fn millis(text: &str) -> f64 {
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let value: f64 = text[..split].parse().unwrap_or(f64::NAN);
    value
        * match &text[split..] {
            "us" => 0.001,
            "ms" => 1.0,
            "s" => 1000.0,
            "m" => 60_000.0,
            _ => f64::NAN,
        }
}

pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The median run of several (by requests per second), with median latencies.
pub(crate) fn median_run(runs: &[WrkRun]) -> WrkRun {
    let pick = |f: fn(&WrkRun) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
    WrkRun {
        rps: pick(|r| r.rps),
        p50: pick(|r| r.p50),
        p99: pick(|r| r.p99),
        requests: runs.iter().map(|r| r.requests).sum(),
        errors: runs.iter().map(|r| r.errors).sum(),
        timeouts: runs.iter().map(|r| r.timeouts).sum(),
        non_2xx: runs.iter().map(|r| r.non_2xx).sum(),
    }
}

pub(crate) fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

pub(crate) fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

pub(crate) fn sum_samples(exposition: &str, name: &str, filter: &str) -> f64 {
    exposition
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains(filter))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}
