//! Soak test: the release exporter scraped by many concurrent clients for minutes while the
//! simulated Kraken cycles through faults. Prints requests served, non-200 answers, restarts,
//! resident memory (idle, after a warm-up with every client connected, and at the end; growth
//! is counted from the warm-up), and calls to Kraken against the refresh policy's bound.
//!
//! Run: `cargo bench --bench soak -- [--minutes 10] [--clients 50]`
//! Loopback only; every loop is bounded in time.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kraken::Endpoint;
use kraken::sim::{Fault, STARTER_RATE_LIMIT, SimKraken, SimOptions};

/// Faults the sim cycles through, each held for one slot; `None` is normal service. A lockout
/// comes last: the exporter then leaves Kraken alone for 15 minutes, as it must.
fn faults() -> Vec<(&'static str, Option<Fault>)> {
    vec![
        ("healthy", None),
        ("hang", Some(Fault::Hang)),
        ("healthy", None),
        (
            "502",
            Some(Fault::Status(502, "<html>502 Bad Gateway</html>".into())),
        ),
        ("trickle", Some(Fault::Trickle)),
        ("healthy", None),
        (
            "cloudflare 520",
            Some(Fault::Status(520, "<html>520</html>".into())),
        ),
        (
            "truncated",
            Some(Fault::RawBody(b"{\"error\":[],\"result\":{\"XX".to_vec())),
        ),
        ("healthy", None),
        (
            "rate limit",
            Some(Fault::KrakenError("EAPI:Rate limit exceeded".into())),
        ),
        ("healthy", None),
        (
            "invalid nonce",
            Some(Fault::KrakenError("EAPI:Invalid nonce".into())),
        ),
        (
            "not json",
            Some(Fault::RawBody(b"<html>maintenance</html>".to_vec())),
        ),
        ("healthy", None),
        (
            "lockout",
            Some(Fault::KrakenError("EGeneral:Temporary lockout".into())),
        ),
    ]
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[tokio::main]
async fn main() {
    let minutes = arg("--minutes", 10);
    let clients = arg("--clients", 50);
    let duration = Duration::from_secs(minutes * 60);
    let min_interval = Duration::from_secs(10);

    let sim = SimKraken::start(SimOptions {
        latency: Duration::from_millis(20),
        rate_limit: Some(STARTER_RATE_LIMIT),
        moving: true,
        ..SimOptions::default()
    })
    .await
    .expect("the simulated Kraken starts");
    let creds = sim.credentials();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kraken_exporter"))
        .args([
            "--kraken.api-url",
            &sim.url(),
            "--web.listen-address",
            &address,
            "--refresh.min-interval",
            "10s",
            "--kraken.timeout",
            "5s",
            "--log.level",
            "error",
        ])
        .env_clear()
        .env("KRAKEN_API_KEY", creds.key.expose())
        .env("KRAKEN_API_SECRET", STANDARD.encode(creds.secret.expose()))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("the exporter starts");
    let pid = child.id().expect("a pid");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let ready_url = format!("http://{address}/-/ready");
    let started = Instant::now();
    while !http
        .get(&ready_url)
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the exporter never became ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let start-up allocations settle before the first reading.
    let url = format!("http://{address}/metrics");
    for _ in 0..200 {
        let _ = http.get(&url).send().await;
    }
    let rss_idle = rss_kib(pid).unwrap_or(0);
    let calls_start = sim.calls(Endpoint::BalanceEx);

    // All clients run for a warm-up before the reading that growth is measured from: the
    // first minute of concurrent connections sizes buffers and allocator arenas once.
    let warm_up = Duration::from_secs(60).min(duration / 5);
    let served = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + warm_up + duration;
    let mut workers = Vec::new();
    for _ in 0..clients {
        let (http, url, served, failed) = (
            http.clone(),
            url.clone(),
            Arc::clone(&served),
            Arc::clone(&failed),
        );
        workers.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let sent = Instant::now();
                let outcome = http
                    .get(&url)
                    .header("X-Prometheus-Scrape-Timeout-Seconds", "10")
                    .send()
                    .await;
                match outcome {
                    Ok(response) if response.status() == 200 => {
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        // The first failures are described, for the report.
                        if failed.fetch_add(1, Ordering::Relaxed) < 10 {
                            let what = match other {
                                Ok(response) => format!("status {}", response.status()),
                                Err(error) => format!("{error:?}"),
                            };
                            eprintln!("soak: failed after {:?}: {what}", sent.elapsed());
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }
    tokio::time::sleep(warm_up).await;
    let rss_start = rss_kib(pid).unwrap_or(0);
    let schedule = faults();
    let slot = duration / schedule.len() as u32;
    for (name, fault) in schedule {
        sim.clear_faults();
        if let Some(fault) = fault {
            sim.inject(Endpoint::BalanceEx, fault, None);
        }
        eprintln!(
            "soak: {name} for {slot:?} (resident {} KiB, {} scrapes so far)",
            rss_kib(pid).unwrap_or(0),
            served.load(Ordering::Relaxed)
        );
        tokio::time::sleep(slot).await;
    }
    for worker in workers {
        let _ = worker.await;
    }
    let rss_end = rss_kib(pid).unwrap_or(0);
    let restarts = match child.try_wait() {
        Ok(None) => 0,
        _ => 1,
    };
    let calls = sim.calls(Endpoint::BalanceEx) - calls_start;
    // One call per minimum interval at most, plus one nonce retry per refresh.
    let bound = 2 * ((warm_up + duration).as_secs() / min_interval.as_secs() + 1);
    println!("soak: {minutes} min of faults after {warm_up:?} of warm-up, {clients} clients");
    println!("requests served (200): {}", served.load(Ordering::Relaxed));
    println!(
        "non-200 answers or failed requests: {}",
        failed.load(Ordering::Relaxed)
    );
    println!("restarts: {restarts}");
    println!(
        "resident memory: idle {rss_idle} KiB, after warm-up {rss_start} KiB, end {rss_end} KiB, growth {} KiB",
        rss_end as i64 - rss_start as i64
    );
    println!("upstream BalanceEx calls: {calls} (bound from the refresh policy: {bound})");
    let _ = child.kill().await;
    let ok = failed.load(Ordering::Relaxed) == 0
        && restarts == 0
        && rss_end.saturating_sub(rss_start) < 2048
        && calls <= bound;
    println!("result: {}", if ok { "PASS" } else { "FAIL" });
    if !ok {
        std::process::exit(1);
    }
}
