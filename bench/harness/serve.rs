//! Scenario `serve`: `/metrics` throughput and latency with `wrk`, against the limit (a minimal
//! hyper server returning the same bytes) and a Python `prometheus_client` exporter.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use kraken::sim::SimOptions;

use crate::Opts;
use crate::common;
use crate::env::{Bench, Process, free_port, tail};
use crate::http::get_once;
use crate::measure::{WrkRun, median_run, wrk};

/// A server answering `/metrics` in the comparison.
pub(crate) struct Contender {
    pub(crate) name: &'static str,
    pub(crate) url: String,
    /// Kept alive for the scenario.
    pub(crate) _process: Option<Process>,
}

/// Starts the limit server with the exporter's exposition bytes.
pub(crate) fn spawn_static_server(
    bench: &Bench,
    body_file: &Path,
) -> Result<(Process, SocketAddr), String> {
    let addr = free_port()?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut command = bench.server_command(&exe);
    command
        .arg("static-server")
        .arg("--addr")
        .arg(addr.to_string())
        .arg("--file")
        .arg(body_file);
    let log = bench.work.0.join(format!("static-{}.log", addr.port()));
    let process = Process::spawn(command, &log, "static server")?;
    wait_answers(addr, Duration::from_secs(10))?;
    Ok((process, addr))
}

/// Starts the Python exporter with the exporter's balances.
pub(crate) fn spawn_python_exporter(
    bench: &Bench,
    data_file: &Path,
) -> Result<(Process, SocketAddr), String> {
    let addr = free_port()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/python_exporter.py");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let mut command = bench.server_command(Path::new(&python));
    command
        .arg(script)
        .arg("--port")
        .arg(addr.port().to_string())
        .arg("--data")
        .arg(data_file);
    let log = bench.work.0.join(format!("python-{}.log", addr.port()));
    let process = Process::spawn(command, &log, "Python exporter")?;
    wait_answers(addr, Duration::from_secs(20))
        .map_err(|e| format!("{e}: {} (pip install prometheus_client)", tail(&log)))?;
    Ok((process, addr))
}

/// Waits until `addr` answers `/metrics` with 200.
pub(crate) fn wait_answers(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok((200, _)) = get_once(addr, "/metrics") {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(format!("{addr} did not answer /metrics within {timeout:?}"))
}

/// The balance samples of an exposition, as the Python exporter's input.
pub(crate) fn balances_json(exposition: &str) -> serde_json::Value {
    let mut holds: HashMap<String, f64> = HashMap::new();
    let mut entries = Vec::new();
    let mut account = String::from("bench");
    for line in exposition.lines() {
        let (hold, rest) = if let Some(rest) = line.strip_prefix("kraken_balance_hold{") {
            (true, rest)
        } else if let Some(rest) = line.strip_prefix("kraken_balance{") {
            (false, rest)
        } else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let value: f64 = value.trim().parse().unwrap_or(0.0);
        let label = |name: &str| {
            labels
                .split("\",")
                .find_map(|pair| pair.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_owned())
                .unwrap_or_default()
        };
        account = label("account");
        if hold {
            holds.insert(label("code"), value);
        } else {
            entries.push((label("asset"), label("code"), value));
        }
    }
    let balances: Vec<serde_json::Value> = entries
        .into_iter()
        .map(|(asset, code, total)| {
            serde_json::json!({"asset": asset, "hold": holds.get(&code), "code": code, "total": total})
        })
        .collect();
    serde_json::json!({"account": account, "balances": balances})
}

pub(crate) fn serve(bench: &Bench, opts: &Opts) -> Result<(), String> {
    let asset_counts = opts.list("assets", &[10, 100, 1000]);
    let connection_counts = opts.list("connections", &[1, 16, 64]);
    let seconds = opts.number("duration", 2);
    let reps = opts.number("reps", 3) as usize;
    println!(
        "\n## serve: /metrics from the snapshot (background refresh, interval 1h; on-scrape with the default min-interval 10s); wrk {seconds}s × {reps} runs each, medians\n"
    );
    println!(
        "| assets | conns | body exporter / python | exporter req/s | p50 ms | p99 ms | on-scrape req/s | p50 ms | p99 ms | limit req/s | p50 ms | p99 ms | python req/s | p50 ms | p99 ms | exporter/limit | on-scrape/limit | exporter/python |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for assets in asset_counts {
        let balances = common::balances(assets);
        let fleet = bench.fleet(
            &format!("serve-{assets}"),
            1,
            &SimOptions::default(),
            Some(&balances),
            "refresh: {interval: 1h}\n",
            "",
        )?;
        let mut exporter = bench.spawn_exporter(&fleet.config, &[])?;
        exporter.wait_ready(Duration::from_secs(30))?;
        // The default mode: refreshes start on scrape, at most once per 10 s.
        let on_scrape_fleet = bench.fleet(
            &format!("serve-on-scrape-{assets}"),
            1,
            &SimOptions::default(),
            Some(&balances),
            "",
            "",
        )?;
        let mut on_scrape = bench.spawn_exporter(&on_scrape_fleet.config, &[])?;
        on_scrape.wait_ready(Duration::from_secs(30))?;
        // Let the first refresh's key audit land, so the exposition is the steady one.
        std::thread::sleep(Duration::from_millis(300));
        let body = exporter.metrics()?;
        let dir = bench.work.0.join(format!("serve-{assets}"));
        let body_file = dir.join("metrics.prom");
        std::fs::write(&body_file, &body).map_err(|e| e.to_string())?;
        let data_file = dir.join("balances.json");
        std::fs::write(&data_file, balances_json(&body).to_string()).map_err(|e| e.to_string())?;
        let (static_process, static_addr) = spawn_static_server(bench, &body_file)?;
        let (python_process, python_addr) = spawn_python_exporter(bench, &data_file)?;
        let python_body = get_once(python_addr, "/metrics")
            .map_err(|e| e.to_string())?
            .1;
        let contenders = [
            Contender {
                name: "exporter",
                url: exporter.url(),
                _process: None,
            },
            Contender {
                name: "on-scrape",
                url: on_scrape.url(),
                _process: None,
            },
            Contender {
                name: "limit",
                url: format!("http://{static_addr}/metrics"),
                _process: Some(static_process),
            },
            Contender {
                name: "python",
                url: format!("http://{python_addr}/metrics"),
                _process: Some(python_process),
            },
        ];
        for &connections in &connection_counts {
            let mut runs: Vec<Vec<WrkRun>> = vec![Vec::new(); contenders.len()];
            for rep in 0..reps {
                // Rotate the order so drift of a noisy machine spreads over all three.
                for k in 0..contenders.len() {
                    let i = (k + rep) % contenders.len();
                    let run = wrk(bench, &contenders[i].url, connections, seconds, 10)?;
                    if run.non_2xx > 0 || run.errors > 0 {
                        eprintln!(
                            "# {} at {connections} connections: {} non-2xx, {} socket errors",
                            contenders[i].name, run.non_2xx, run.errors
                        );
                    }
                    runs[i].push(run);
                }
            }
            let [e, o, l, p] = [0, 1, 2, 3].map(|i| median_run(&runs[i]));
            println!(
                "| {assets} | {connections} | {} / {} B | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {:.0}% | {:.0}% | {:.1}× |",
                body.len(),
                python_body.len(),
                e.rps,
                e.p50,
                e.p99,
                o.rps,
                o.p50,
                o.p99,
                l.rps,
                l.p50,
                l.p99,
                p.rps,
                p.p50,
                p.p99,
                100.0 * e.rps / l.rps,
                100.0 * o.rps / l.rps,
                e.rps / p.rps
            );
        }
        drop(contenders);
        drop(exporter);
        drop(on_scrape);
    }
    Ok(())
}
