//! Soak: the release exporter under everything that goes wrong at once, for a bounded run, with
//! figures per minute and a PASS/FAIL line against the goals.
//!
//! Two exporters, each with a nonce file seeded an hour ahead of the clock (the case nonce files
//! exist for), each talking to its own simulated Kraken through a proxy that counts the
//! `EAPI:Invalid nonce` answers Kraken gives:
//! - the long-lived one is scraped by `--clients` kept-alive clients; every cycle (one minute by
//!   default) its Kraken goes through ok, HTTP 500, hang, garbage body and rate limit; it gets a
//!   broken reload (which must be refused, the old configuration kept), two reloads in a row
//!   that rebuild its account (the second while the first one's refresh is in flight), a SIGHUP
//!   reload that rebuilds it while a call hangs, and, during the hang, a burst of `--burst`
//!   concurrent scrapes on new connections, past the 512-connection cap. Its RSS and open fds
//!   are read at the end of every cycle.
//! - the other one goes through the same faults and is killed with SIGKILL and restarted every
//!   `--restart-every` seconds, scraped by a few clients (answers lost while it is down by design
//!   are not counted).
//!
//! Goals: every request answered (200, or 503 with `Retry-After` beyond the cap), no invalid
//! nonce, every reload doing what it should, and RSS and fds of the long-lived exporter flat
//! after the first cycle (within [`RSS_TOLERANCE_KIB`] or 10 %, and [`FD_TOLERANCE`]).
//!
//! Run: `cargo bench --bench soak -- --minutes 4 [--clients 50] [--burst 600]
//! [--restart-every 15] [--cycle 60]`. Loopback only; every loop is bounded in time.

mod exporter;
mod proxy;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kraken::Endpoint;
use kraken::sim::{Fault, STARTER_RATE_LIMIT, SimKraken, SimOptions};

use exporter::{Exporter, Generation};

/// How much the long-lived exporter's RSS may grow after the first cycle (or 10 % if more).
const RSS_TOLERANCE_KIB: u64 = 4096;
/// How many more fds it may hold after the first cycle.
const FD_TOLERANCE: u64 = 10;
/// The scrape timeout every client announces, and how long it waits for an answer.
const SCRAPE_TIMEOUT: &str = "10";
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// The fault rotation of one cycle, each phase an equal part of it.
fn faults() -> [(&'static str, Option<Fault>); 5] {
    [
        ("ok", None),
        (
            "http 500",
            Some(Fault::Status(500, "Internal Server Error".into())),
        ),
        ("hang", Some(Fault::Hang)),
        (
            "garbage",
            Some(Fault::RawBody(b"<html>maintenance</html>".to_vec())),
        ),
        (
            "rate limit",
            Some(Fault::KrakenError("EAPI:Rate limit exceeded".into())),
        ),
    ]
}

/// Command-line options.
struct Options {
    minutes: u64,
    clients: u64,
    burst: u64,
    restart_every: u64,
    cycle: u64,
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Counters, per minute (taken and reset by the report) or over the run.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) ok: AtomicU64,
    pub(crate) refused_503: AtomicU64,
    pub(crate) other_status: AtomicU64,
    pub(crate) unanswered: AtomicU64,
    /// `EAPI:Invalid nonce` answers to the long-lived (reloaded) exporter.
    pub(crate) invalid_nonces: AtomicU64,
    /// `EAPI:Invalid nonce` answers to the restarted exporter.
    pub(crate) invalid_nonces_restarted: AtomicU64,
    pub(crate) reloads_ok: AtomicU64,
    pub(crate) reloads_refused: AtomicU64,
    pub(crate) reload_failures: AtomicU64,
    pub(crate) restarts: AtomicU64,
}

/// The counters' values, in [`Tally`]'s order.
type Counts = [u64; 10];

impl Tally {
    fn fields(&self) -> [&AtomicU64; 10] {
        [
            &self.ok,
            &self.refused_503,
            &self.other_status,
            &self.unanswered,
            &self.invalid_nonces,
            &self.invalid_nonces_restarted,
            &self.reloads_ok,
            &self.reloads_refused,
            &self.reload_failures,
            &self.restarts,
        ]
    }

    /// The counts since the last call, resetting them.
    fn take(&self) -> Counts {
        self.fields().map(|field| field.swap(0, Ordering::Relaxed))
    }

    /// Counts one scrape's outcome; the first problems are described on stderr.
    pub(crate) fn record(&self, outcome: Result<reqwest::Response, reqwest::Error>, what: &str) {
        let problem = match outcome {
            Ok(response) if response.status() == 200 => return self.bump(&self.ok),
            Ok(response)
                if response.status() == 503 && response.headers().contains_key("retry-after") =>
            {
                return self.bump(&self.refused_503);
            }
            Ok(response) => {
                self.bump(&self.other_status);
                format!("status {}", response.status())
            }
            Err(error) => {
                self.bump(&self.unanswered);
                format!("no answer: {error:?}")
            }
        };
        static DESCRIBED: AtomicU64 = AtomicU64::new(0);
        if DESCRIBED.fetch_add(1, Ordering::Relaxed) < 10 {
            eprintln!("soak: {what}: {problem}");
        }
    }

    pub(crate) fn bump(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A simulated Kraken behind a proxy that counts invalid nonces into `tally` (for the restarted
/// exporter when `restarted`).
async fn kraken(tally: &Arc<Tally>, restarted: bool) -> (SimKraken, String) {
    let sim = SimKraken::start(SimOptions {
        latency: Duration::from_millis(50),
        rate_limit: Some(STARTER_RATE_LIMIT),
        moving: true,
        ..SimOptions::default()
    })
    .await
    .expect("the simulated Kraken starts");
    let url = proxy::start(sim.url(), Arc::clone(tally), restarted).await;
    (sim, url)
}

/// Clients scraping `/metrics` of `generation`'s exporter in a loop until `deadline`, on kept-alive
/// connections; scrapes that overlap a restart are not counted.
fn steady_clients(
    count: u64,
    generation: Arc<Generation>,
    tally: &Arc<Tally>,
    deadline: Instant,
) -> Vec<tokio::task::JoinHandle<()>> {
    let http = reqwest::Client::builder()
        .timeout(CLIENT_TIMEOUT)
        .build()
        .unwrap();
    let mut clients = Vec::new();
    for _ in 0..count {
        let (http, generation, tally) = (http.clone(), Arc::clone(&generation), Arc::clone(tally));
        clients.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let before = generation.current();
                let outcome = http
                    .get(generation.url("/metrics"))
                    .header("X-Prometheus-Scrape-Timeout-Seconds", SCRAPE_TIMEOUT)
                    .send()
                    .await;
                if before.is_some() && generation.current() == before {
                    tally.record(outcome, "steady scrape");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }
    clients
}

/// `count` scrapes at once, each on a new connection.
async fn burst(address: &str, count: u64, tally: &Arc<Tally>) {
    let http = reqwest::Client::builder()
        .timeout(CLIENT_TIMEOUT)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let url = format!("http://{address}/metrics");
    let scrapes: Vec<_> = (0..count)
        .map(|_| {
            let (http, url, tally) = (http.clone(), url.clone(), Arc::clone(tally));
            tokio::spawn(async move {
                let outcome = http
                    .get(&url)
                    .header("X-Prometheus-Scrape-Timeout-Seconds", SCRAPE_TIMEOUT)
                    .send()
                    .await;
                tally.record(outcome, "burst scrape");
            })
        })
        .collect();
    for scrape in scrapes {
        let _ = scrape.await;
    }
}

/// Kills the exporter with SIGKILL and restarts it every `every` until `deadline`; returns it,
/// still serving its clients.
async fn restarter(
    mut exporter: Exporter,
    every: Duration,
    tally: Arc<Tally>,
    deadline: Instant,
) -> Exporter {
    while Instant::now() + every < deadline {
        tokio::time::sleep(every).await;
        exporter.kill_and_restart().await;
        tally.bump(&tally.restarts);
    }
    exporter
}

/// What the report keeps across minutes.
struct Report {
    totals: Counts,
    baseline: Option<(u64, u64)>,
    flat: bool,
}

impl Report {
    fn header() {
        println!(
            "{:>6} {:>8} {:>5} {:>6} {:>10} {:>23} {:>9} {:>5} {:>8} {:>22}",
            "minute",
            "200",
            "503",
            "other",
            "unanswered",
            "invalid-nonces rel/kill",
            "rss-KiB",
            "fds",
            "restarts",
            "reloads ok/refused/bad"
        );
    }

    /// Prints one minute's line and checks RSS and fds against the first minute's.
    fn minute(&mut self, minute: u64, counts: Counts, rss: u64, fds: u64) {
        for (total, count) in self.totals.iter_mut().zip(counts) {
            *total += count;
        }
        let [
            ok,
            refused,
            other,
            unanswered,
            nonces,
            nonces_killed,
            reloads,
            refusals,
            bad,
            restarts,
        ] = counts;
        println!(
            "{minute:>6} {ok:>8} {refused:>5} {other:>6} {unanswered:>10} {:>23} {rss:>9} {fds:>5} {restarts:>8} {:>22}",
            format!("{nonces}/{nonces_killed}"),
            format!("{reloads}/{refusals}/{bad}")
        );
        match self.baseline {
            None => self.baseline = Some((rss, fds)),
            Some((rss_0, fds_0)) => {
                let rss_allowed = rss_0 + RSS_TOLERANCE_KIB.max(rss_0 / 10);
                self.flat &= rss <= rss_allowed && fds <= fds_0 + FD_TOLERANCE;
            }
        }
    }

    /// The totals and the verdict; returns whether the goals were met.
    fn verdict(&self, minutes: u64) -> bool {
        let [
            ok,
            refused,
            other,
            unanswered,
            nonces,
            nonces_killed,
            reloads,
            refusals,
            bad,
            restarts,
        ] = self.totals;
        println!(
            "total: {ok} answered 200, {refused} answered 503 with Retry-After, {other} other statuses, {unanswered} unanswered"
        );
        println!(
            "total: EAPI:Invalid nonce answers: {nonces} to the reloaded exporter, {nonces_killed} to the one killed and restarted {restarts} times; reloads: {reloads} applied, {refusals} broken ones refused, {bad} did not do what they should"
        );
        let (rss_0, fds_0) = self.baseline.unwrap_or_default();
        println!(
            "goals: 0 unanswered, 0 other statuses, 0 invalid nonces, 0 bad reloads; RSS within max({RSS_TOLERANCE_KIB} KiB, 10 %) of minute 1's {rss_0} KiB and fds within {FD_TOLERANCE} of its {fds_0} in minutes 2..{minutes}: {}",
            if self.flat { "flat" } else { "NOT flat" }
        );
        unanswered == 0 && other == 0 && nonces + nonces_killed == 0 && bad == 0 && self.flat
    }
}

/// One cycle: the fault rotation on both Krakens, with reloads and a burst on the long-lived
/// exporter.
async fn cycle(
    sims: [&SimKraken; 2],
    steady: &mut Exporter,
    options: &Options,
    tally: &Arc<Tally>,
) {
    let phase = Duration::from_secs(options.cycle) / faults().len() as u32;
    for (name, fault) in faults() {
        let ends = Instant::now() + phase;
        for sim in sims {
            sim.clear_faults();
            if let Some(fault) = &fault {
                sim.inject(Endpoint::BalanceEx, fault.clone(), None);
            }
        }
        match name {
            "ok" => {
                steady.broken_reload(tally).await;
                steady.rebuilding_reloads(tally).await;
            }
            "hang" => {
                let address = steady.address().to_owned();
                let (_, ()) = tokio::join!(
                    burst(&address, options.burst, tally),
                    steady.sighup_reload(tally)
                );
            }
            _ => {}
        }
        tokio::time::sleep_until(ends.into()).await;
    }
}

#[tokio::main]
async fn main() {
    let options = Options {
        minutes: arg("--minutes", 4).max(2),
        clients: arg("--clients", 50),
        burst: arg("--burst", 600),
        restart_every: arg("--restart-every", 15).max(2),
        cycle: arg("--cycle", 60).max(10),
    };
    let tally = Arc::new(Tally::default());
    let (steady_sim, steady_url) = kraken(&tally, false).await;
    let (restarted_sim, restarted_url) = kraken(&tally, true).await;
    let mut steady = Exporter::start("steady", &steady_sim, &steady_url, true).await;
    let restarted = Exporter::start("restarted", &restarted_sim, &restarted_url, false).await;
    let cycles = (options.minutes * 60).div_ceil(options.cycle);
    let deadline = Instant::now() + Duration::from_secs(cycles * options.cycle);
    println!(
        "soak: {} cycles of {} s, {} kept-alive clients, bursts of {}, kill -9 every {} s; logs in {}",
        cycles,
        options.cycle,
        options.clients,
        options.burst,
        options.restart_every,
        steady.log_dir().display()
    );
    let mut clients = steady_clients(options.clients, steady.generation(), &tally, deadline);
    clients.extend(steady_clients(5, restarted.generation(), &tally, deadline));
    let restarts = tokio::spawn(restarter(
        restarted,
        Duration::from_secs(options.restart_every),
        Arc::clone(&tally),
        deadline,
    ));
    Report::header();
    let mut report = Report {
        totals: Counts::default(),
        baseline: None,
        flat: true,
    };
    for minute in 1..=cycles {
        cycle([&steady_sim, &restarted_sim], &mut steady, &options, &tally).await;
        let (rss, fds) = steady.resources();
        report.minute(minute, tally.take(), rss, fds);
    }
    for client in clients {
        let _ = client.await;
    }
    restarts.await.expect("the restarter ends").stop().await;
    steady.stop().await;
    // What was still counted after the last minute (scrapes ending at the deadline).
    for (total, count) in report.totals.iter_mut().zip(tally.take()) {
        *total += count;
    }
    let passed = report.verdict(cycles);
    println!("result: {}", if passed { "PASS" } else { "FAIL" });
    if !passed {
        std::process::exit(1);
    }
}
