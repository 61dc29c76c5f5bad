//! Scenario `stream`: the balances stream measured.
//!
//! 1. Latency, against the release binary (one child process per simulated Kraken, default
//!    settings, so the stream is on): from `SimKraken::post_ledger` returning to the first
//!    `/metrics` answer whose `kraken_balance` shows the new total, the exporter scraped every
//!    `--scrape-ms` while an event is pending. Single events are spaced `--spacing-ms` apart on
//!    each exporter, so the event budget (a burst of 5, then one refresh per 5 s) never delays
//!    them; then a back-to-back burst and a sustained run at `--sustained-ms` show what the
//!    budget does.
//! 2. REST calls per hour in stream and polling mode, with a scrape every 15 s and default
//!    settings. A simulated hour runs the exporter in-process on paused tokio time (the release
//!    binary's clock cannot be paused), `--sim-minutes` long with ledger events at each of
//!    `--rates` per hour; the release binaries run `--real-minutes` of real time beside it as a
//!    cross-check, extrapolated to an hour.
//!
//! Must not: count a scrape that does not show the new balance, or leave a pending event
//! unreported (a phase that loses one fails with the event named).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::Parser;
use kraken::Endpoint::{self, *};
use kraken::sim::{STARTER_RATE_LIMIT, SimKraken, SimLedgerEntry, SimOptions};
use kraken_exporter::app::SharedEnv;
use kraken_exporter::cli::Cli;
use rand::Rng;

use crate::Opts;
use crate::common;
use crate::env::{Bench, Exporter, Fleet};
use crate::http::Http;
use crate::measure::{ms, sum_samples};

/// The XBT total on `kraken_balance` of the first account of a config file.
const XBT: &str = r#"account="acct0000",asset="XBT",code="XXBT""#;

/// Every deposit of the latency phases.
const DEPOSIT: f64 = 0.01;

/// Private methods, each costing the key's rate counter [`Endpoint::rate_cost`] (1).
const PRIVATE: [Endpoint; 9] = [
    BalanceEx,
    GetWebSocketsToken,
    DepositStatus,
    WithdrawStatus,
    GetApiKeyInfo,
    EarnAllocations,
    Balance,
    TradeBalance,
    WithdrawMethods,
];

/// Public methods (Kraken's per-IP limit, not the key's).
const PUBLIC: [Endpoint; 5] = [Assets, AssetPairs, Ticker, Time, SystemStatus];

/// A simulated Kraken whose key may stream, on the Starter rate limit.
fn streaming_options() -> SimOptions {
    SimOptions {
        rate_limit: Some(STARTER_RATE_LIMIT),
        permissions: vec!["query-funds".into(), "create-ws-token".into()],
        ..SimOptions::default()
    }
}

pub(crate) fn stream(bench: &Bench, opts: &Opts) -> Result<(), String> {
    let exporters = opts.number("exporters", 8).max(1) as usize;
    println!(
        "\n## stream: ledger event → /metrics, release binary, {exporters} exporters of one account each, default settings (stream on, poll 1m)\n"
    );
    let mut running = Vec::with_capacity(exporters);
    for i in 0..exporters {
        running.push(start_streaming(bench, &format!("stream-{i}"), true)?);
    }
    latency(&running, opts)?;
    let bodies: Vec<String> = running
        .iter()
        .map(|r| r.exporter.metrics())
        .collect::<Result<_, _>>()?;
    let total = |name, filter| -> f64 {
        bodies
            .iter()
            .map(|b| sum_samples(b, name, filter))
            .sum::<f64>()
            + 0.0
    };
    println!(
        "\nafter all phases, summed over the {exporters} exporters: kraken_request_errors_total {} ({} of them rate_limited), kraken_stream_reconnects_total {}",
        total("kraken_request_errors_total", ""),
        total("kraken_request_errors_total", "reason=\"rate_limited\""),
        total("kraken_stream_reconnects_total", "")
    );
    drop(running);
    calls_per_hour(bench, opts)
}

/// One exporter child process and its simulated Kraken.
struct Running {
    fleet: Fleet,
    exporter: Exporter,
}

/// The release binary on a simulated Kraken of its own holding 10 assets; with `stream`, waits
/// until `kraken_stream_up` is 1, else it polls (`--kraken.stream=off`).
fn start_streaming(bench: &Bench, name: &str, stream: bool) -> Result<Running, String> {
    let balances = common::balances(10);
    let fleet = bench.fleet(name, 1, &streaming_options(), Some(&balances), "", "")?;
    let ws = fleet.sims[0].ws_url();
    let mode = if stream { "auto" } else { "off" };
    let mut exporter = bench.spawn_exporter(
        &fleet.config,
        &["--kraken.ws-url", &ws, "--kraken.stream", mode],
    )?;
    exporter.wait_ready(Duration::from_secs(30))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while stream && sum_samples(&exporter.metrics()?, "kraken_stream_up", "") < 1.0 {
        if Instant::now() > deadline {
            return Err(format!("{name}: kraken_stream_up is not 1 after 60 s"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Running { fleet, exporter })
}

// ---------------------------------------------------------------------------------------------
// Latency.

/// One ledger event to post: when, after the phase starts, and to which target exporter.
struct Planned(Duration, usize);

/// A posted event not yet seen on `/metrics`.
struct Pending {
    index: usize,
    expected: f64,
    posted: Instant,
}

fn latency(running: &[Running], opts: &Opts) -> Result<(), String> {
    let events = opts.number("events", 120) as usize;
    let spacing = Duration::from_millis(opts.number("spacing-ms", 6000));
    let scrape = Duration::from_millis(opts.number("scrape-ms", 25));
    let burst = opts.number("burst", 10) as usize;
    let sustained = opts.number("sustained", 30) as u32;
    let every = Duration::from_millis(opts.number("sustained-ms", 500));
    let n = running.len();
    println!(
        "latency from post_ledger returning to the first /metrics answer showing the new kraken_balance; scraped every {} ms while an event is pending, so each figure includes 0–{0} ms of scrape grid\n",
        scrape.as_millis()
    );
    println!("| phase | events | p50 ms | p99 ms | max ms | min ms | BalanceEx calls |");
    println!("|---|---|---|---|---|---|---|");
    // Round robin, each exporter one event per `spacing`; the jitter puts each post at a random
    // phase of the scrape grid.
    let mut rng = rand::thread_rng();
    let single: Vec<Planned> = (0..events)
        .map(|i| {
            let jitter = scrape.mul_f64(rng.r#gen::<f64>());
            Planned(spacing * i as u32 / n as u32 + jitter, i % n)
        })
        .collect();
    let name = format!(
        "single events, each exporter one per {:.1} s",
        spacing.as_secs_f64()
    );
    phase(&name, running, &single, scrape)?;
    // Every budget back at its burst of 5 (one token per 5 s).
    std::thread::sleep(spacing);
    let back_to_back: Vec<Planned> = (0..burst).map(|_| Planned(Duration::ZERO, 0)).collect();
    let name = format!("burst: {burst} deposits back to back on one exporter");
    phase(&name, &running[..1], &back_to_back, scrape)?;
    let steady: Vec<Planned> = (0..sustained).map(|i| Planned(every * i, 0)).collect();
    let name = format!(
        "sustained: one deposit every {} ms on another exporter for {:.1} s",
        every.as_millis(),
        (every * sustained).as_secs_f64()
    );
    let target = 1 % n;
    let latencies = phase(&name, &running[target..=target], &steady, scrape)?;
    let list: Vec<String> = latencies.iter().map(|d| format!("{:.0}", ms(*d))).collect();
    println!(
        "\nsustained run, ms per event in posting order: {}",
        list.join(" ")
    );
    Ok(())
}

/// Runs one phase of `plan` on `targets` and prints its row; returns the latencies.
fn phase(
    name: &str,
    targets: &[Running],
    plan: &[Planned],
    scrape: Duration,
) -> Result<Vec<Duration>, String> {
    let calls = || -> u64 { targets.iter().map(|r| r.fleet.calls(BalanceEx)).sum() };
    let before = calls();
    let latencies = track(targets, plan, scrape)?;
    print_latency_row(name, &latencies, calls() - before);
    Ok(latencies)
}

fn print_latency_row(name: &str, latencies: &[Duration], balance_calls: u64) {
    let mut sorted: Vec<f64> = latencies.iter().map(|d| ms(*d)).collect();
    sorted.sort_by(f64::total_cmp);
    println!(
        "| {name} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {balance_calls} |",
        sorted.len(),
        percentile(&sorted, 0.50),
        percentile(&sorted, 0.99),
        sorted.last().copied().unwrap_or(f64::NAN),
        sorted.first().copied().unwrap_or(f64::NAN),
    );
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Posts `plan` (a deposit of [`DEPOSIT`] XBT each) and scrapes each target exporter on a grid
/// of `every` while one of its events is pending; returns each event's latency, in plan order.
fn track(targets: &[Running], plan: &[Planned], every: Duration) -> Result<Vec<Duration>, String> {
    let pending: Vec<Mutex<Vec<Pending>>> = targets.iter().map(|_| Mutex::default()).collect();
    let results = Mutex::new(vec![None; plan.len()]);
    let posted_all = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let scrapers: Vec<_> = targets
            .iter()
            .zip(&pending)
            .map(|(target, pending)| {
                let (results, posted_all) = (&results, &posted_all);
                scope.spawn(move || {
                    scrape_until_seen(target.exporter.addr, pending, results, posted_all, every)
                })
            })
            .collect();
        let posted = post_plan(targets, plan, &pending);
        posted_all.store(true, Ordering::Release);
        let scraped: Result<(), String> = scrapers
            .into_iter()
            .try_for_each(|s| s.join().expect("scraper thread"));
        posted.and(scraped)
    })?;
    let results = results.into_inner().expect("results");
    results
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.ok_or_else(|| format!("event {i} was never seen on /metrics")))
        .collect()
}

/// Posts each planned deposit at its time and hands it to its target's scraper.
fn post_plan(
    targets: &[Running],
    plan: &[Planned],
    pending: &[Mutex<Vec<Pending>>],
) -> Result<(), String> {
    let start = Instant::now();
    for (index, Planned(at, target)) in plan.iter().enumerate() {
        sleep_until(start + *at);
        let sim = &targets[*target].fleet.sims[0];
        sim.post_ledger(SimLedgerEntry::deposit("XXBT", DEPOSIT))
            .map_err(|e| format!("posting event {index}: {e:?}"))?;
        let posted = Instant::now();
        let expected = sim.balance("XXBT");
        pending[*target].lock().expect("pending").push(Pending {
            index,
            expected,
            posted,
        });
    }
    Ok(())
}

/// One target's scraper: on a grid of `every`, scrapes while an event is pending and resolves
/// every pending event whose total the answer shows; ends once everything posted was seen.
fn scrape_until_seen(
    addr: SocketAddr,
    pending: &Mutex<Vec<Pending>>,
    results: &Mutex<Vec<Option<Duration>>>,
    posted_all: &AtomicBool,
    every: Duration,
) -> Result<(), String> {
    let mut http = Http::connect(addr).map_err(|e| e.to_string())?;
    let start = Instant::now();
    for tick in 1u32.. {
        sleep_until(start + every * tick);
        let done = posted_all.load(Ordering::Acquire);
        let oldest = pending.lock().expect("pending").first().map(|p| p.posted);
        let Some(oldest) = oldest else {
            if done {
                return Ok(());
            }
            continue;
        };
        if oldest.elapsed() > Duration::from_secs(60) {
            return Err("an event was not on /metrics after 60 s".into());
        }
        let body = match http.get("/metrics") {
            Ok((200, body)) => String::from_utf8_lossy(&body).into_owned(),
            Ok((status, _)) => return Err(format!("/metrics answered {status}")),
            Err(error) => return Err(format!("/metrics: {error}")),
        };
        let answered = Instant::now();
        let shown = sum_samples(&body, "kraken_balance", XBT);
        let mut results = results.lock().expect("results");
        pending.lock().expect("pending").retain(|p| {
            let seen = shown >= p.expected - 1e-9;
            if seen {
                results[p.index] = Some(answered - p.posted);
            }
            !seen
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// REST calls per hour.

fn calls_per_hour(bench: &Bench, opts: &Opts) -> Result<(), String> {
    let rates = opts.list("rates", &[0, 10, 120]);
    let sim_minutes = opts.number("sim-minutes", 65).max(6);
    let real_minutes = opts.number("real-minutes", 2);
    let streaming = start_streaming(bench, "real-stream", true)?;
    let polling = start_streaming(bench, "real-poll", false)?;
    let speed = opts.number("sim-speed", 60).max(1) as f64;
    // Side by side: the simulated runs mostly wait for their pace, the real ones for scrapes.
    let (simulated, real) = std::thread::scope(|scope| {
        let real = scope.spawn(|| real_time(&[&streaming, &polling], real_minutes));
        let runs: Vec<_> = rates
            .iter()
            .flat_map(|&rate| [(false, rate), (true, rate)])
            .map(|(stream, rate)| {
                scope.spawn(move || simulated_run(stream, rate, sim_minutes, speed))
            })
            .collect();
        let simulated: Vec<_> = runs
            .into_iter()
            .map(|run| run.join().expect("simulated run"))
            .collect();
        (simulated, real.join().expect("real-time thread"))
    });
    println!(
        "\n## stream: REST calls per hour, one account, a scrape every 15 s, default settings (min interval 10s, stream poll 1m, funding 5m, Earn 10m, audit 6h), Starter rate limit (15, -0.33/s)\n"
    );
    println!(
        "In-process exporter on paused tokio time (at most {speed}× real time), {sim_minutes} simulated minutes; ledger events evenly spaced, deposits and withdrawals alternating. Steady window: minutes 5–{sim_minutes}; first hour: minutes 0–60, start-up included.\n"
    );
    println!(
        "| mode | events/h | BalanceEx | GetWebSocketsToken | DepositStatus | WithdrawStatus | GetApiKeyInfo | Earn/Allocations | other private | private, steady window | private, first hour | share of the key's budget (0.33/s) | peak counter (of 15) | rate_limited | entries counted / posted while up | public calls, steady window |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for run in simulated {
        print_hour_row(&run?, sim_minutes - 5);
    }
    let real = real?;
    println!(
        "\nRelease binaries, {real_minutes} real minutes after the stream was up, no ledger events, extrapolated ×{:.0} (the 5-, 10-minute and 6-hour schedules need the simulated hour above):\n",
        60.0 / real_minutes as f64
    );
    println!("| mode | BalanceEx in window | GetWebSocketsToken in window | BalanceEx per hour |");
    println!("|---|---|---|---|");
    for (mode, [balance, token]) in ["stream", "polling"].into_iter().zip(real) {
        println!(
            "| {mode} | {balance} | {token} | {:.0} |",
            balance as f64 * 60.0 / real_minutes as f64
        );
    }
    Ok(())
}

/// Scrapes each exporter every 15 s for `minutes` of real time; returns the BalanceEx and
/// GetWebSocketsToken calls each one made meanwhile.
fn real_time(runs: &[&Running], minutes: u64) -> Result<Vec<[u64; 2]>, String> {
    let count = |r: &Running| [BalanceEx, GetWebSocketsToken].map(|e| r.fleet.calls(e));
    let before: Vec<[u64; 2]> = runs.iter().map(|r| count(r)).collect();
    let start = Instant::now();
    for tick in 1..=minutes * 4 {
        sleep_until(start + Duration::from_secs(15 * tick));
        for run in runs {
            run.exporter.metrics()?;
        }
    }
    let after = runs.iter().map(|r| count(r));
    Ok(after
        .zip(before)
        .map(|(a, b)| [a[0] - b[0], a[1] - b[1]])
        .collect())
}

/// Sleeps until `at` (at once when it has passed).
fn sleep_until(at: Instant) {
    std::thread::sleep(at.saturating_duration_since(Instant::now()));
}

/// What a simulated run counted.
struct HourRun {
    stream: bool,
    rate: usize,
    /// Private calls per method (in [`PRIVATE`] order) from minute 5 to the end; then private
    /// calls in minutes 0–60 (0 in a shorter run) and public calls from minute 5 to the end.
    steady: Vec<u64>,
    first_hour: u64,
    public: u64,
    peak_counter: f64,
    rate_limited: f64,
    counted: f64,
    posted_while_up: u64,
}

fn print_hour_row(run: &HourRun, window_minutes: u64) {
    let private: u64 = run.steady.iter().sum();
    let other: u64 = run.steady[6..].iter().sum();
    let cells: Vec<String> = run.steady[..6].iter().map(u64::to_string).collect();
    let counted = if run.stream {
        format!("{} / {}", run.counted + 0.0, run.posted_while_up)
    } else {
        "–".to_owned()
    };
    println!(
        "| {} | {} | {} | {other} | {private} | {} | {:.1}% | {:.1} | {} | {counted} | {} |",
        if run.stream { "stream" } else { "polling" },
        run.rate,
        cells.join(" | "),
        run.first_hour,
        private as f64 * 100.0 / (STARTER_RATE_LIMIT.1 * 60.0 * window_minutes as f64),
        run.peak_counter,
        run.rate_limited,
        run.public
    );
}

/// One exporter in-process on a paused clock for `minutes`, scraped every 15 s, with `rate`
/// ledger events per hour.
fn simulated_run(stream: bool, rate: usize, minutes: u64, speed: f64) -> Result<HourRun, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let sim = SimKraken::start(streaming_options())
            .await
            .map_err(|e| e.to_string())?;
        sim.set_balances(common::balances(10));
        let pacer = tokio::spawn(pace(speed));
        let (addr, stop, served) = serve_in_process(&sim, stream).await?;
        let run = drive(&sim, addr, stream, rate, minutes).await;
        let _ = stop.send(());
        let _ = served.await;
        pacer.abort();
        run
    })
}

/// Keeps a paused clock moving at most `speed` times as fast as the real one, in steps of 5 ms.
///
/// Tokio jumps a paused clock to the next timer whenever every task waits, even while loopback
/// I/O is in flight; an answer the kernel has not delivered yet would let it leap past a
/// timeout. This timer bounds each jump to one step, and blocking the runtime's thread while
/// the clock is ahead bounds how much simulated time a real delay can cost.
async fn pace(speed: f64) {
    let (real, paused) = (Instant::now(), tokio::time::Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let due = paused.elapsed().div_f64(speed);
        if let Some(ahead) = due.checked_sub(real.elapsed()) {
            std::thread::sleep(ahead);
        }
    }
}

type Served = tokio::task::JoinHandle<anyhow::Result<()>>;

/// Starts the exporter in-process against `sim`, credentials in its environment as an operator
/// would pass them, in stream (`auto`) or polling (`off`) mode.
async fn serve_in_process(
    sim: &SimKraken,
    stream: bool,
) -> Result<(SocketAddr, tokio::sync::oneshot::Sender<()>, Served), String> {
    let creds = sim.credentials();
    let key = creds.key.expose().to_owned();
    let secret = STANDARD.encode(creds.secret.expose());
    let env: SharedEnv = Arc::new(move |name: &str| match name {
        "KRAKEN_API_KEY" => Some(key.clone()),
        "KRAKEN_API_SECRET" => Some(secret.clone()),
        _ => None,
    });
    let argv = format!(
        "kraken_exporter --web.listen-address 127.0.0.1:0 --kraken.api-url {} --kraken.ws-url {} --kraken.stream {}",
        sim.url(),
        sim.ws_url(),
        if stream { "auto" } else { "off" }
    );
    let cli = Cli::try_parse_from(argv.split(' ')).map_err(|e| e.to_string())?;
    let flags = cli.flags.clone();
    let config = kraken_exporter::config::resolve(cli, &*env).map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(kraken_exporter::app::run(
        config,
        flags,
        env,
        listener,
        async move {
            let _ = stopped.await;
        },
    ));
    Ok((addr, stop, served))
}

/// The simulated run's clock: a scrape every 15 s, the events, the key's rate counter modelled
/// second by second from the calls the sim counted, and the counts at minutes 5, 60 and the end.
async fn drive(
    sim: &SimKraken,
    addr: SocketAddr,
    stream: bool,
    rate: usize,
    minutes: u64,
) -> Result<HourRun, String> {
    let start = tokio::time::Instant::now();
    let client = reqwest::Client::new();
    let private = |sim: &SimKraken| PRIVATE.map(|e| sim.calls(e));
    let public = |sim: &SimKraken| PUBLIC.iter().map(|e| sim.calls(*e)).sum::<u64>();
    let every = 3600.0 / rate as f64; // infinite at rate 0: no event
    let (mut counter, mut peak, mut last_total) = (0.0f64, 0.0f64, 0u64);
    let (mut at_5, mut public_5, mut first_hour) = ([0; 9], 0, 0);
    let (mut events, mut posted_while_up, mut up) = (0usize, 0u64, false);
    for second in 1..=minutes * 60 {
        tokio::time::sleep_until(start + Duration::from_secs(second)).await;
        let total: u64 = private(sim).iter().sum();
        counter = (counter - STARTER_RATE_LIMIT.1).max(0.0) + (total - last_total) as f64;
        peak = peak.max(counter);
        last_total = total;
        if second == 3600 {
            first_hour = total;
        }
        if second % 15 == 0 {
            let body = metrics(&client, addr).await?;
            up = sum_samples(&body, "kraken_stream_up", "") >= 1.0;
        }
        // Off the scrape grid: half an interval in, plus 7 s.
        if (events as f64 + 0.5) * every + 7.0 <= second as f64 {
            let entry = if events % 2 == 0 {
                SimLedgerEntry::deposit("XXBT", DEPOSIT)
            } else {
                SimLedgerEntry::withdrawal("XXBT", DEPOSIT, 0.0)
            };
            sim.post_ledger(entry)
                .map_err(|e| format!("posting: {e:?}"))?;
            events += 1;
            posted_while_up += u64::from(up);
        }
        if second == 300 {
            (at_5, public_5) = (private(sim), public(sim));
        }
    }
    let (end, public_end) = (private(sim), public(sim));
    let body = metrics(&client, addr).await?;
    Ok(HourRun {
        stream,
        rate,
        steady: end.iter().zip(at_5).map(|(e, s)| e - s).collect(),
        first_hour,
        public: public_end - public_5,
        peak_counter: peak,
        rate_limited: sum_samples(
            &body,
            "kraken_request_errors_total",
            "reason=\"rate_limited\"",
        ),
        counted: sum_samples(&body, "kraken_ledger_entries_total", ""),
        posted_while_up,
    })
}

/// The body of `/metrics`, which must answer 200 within 30 s.
async fn metrics(client: &reqwest::Client, addr: SocketAddr) -> Result<String, String> {
    let answer = client.get(format!("http://{addr}/metrics")).send();
    let answer = tokio::time::timeout(Duration::from_secs(30), answer)
        .await
        .map_err(|_| "/metrics: no answer in 30 s".to_owned())?
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("/metrics: {e}"))?;
    answer.text().await.map_err(|e| format!("/metrics: {e}"))
}
