//! Integration tests: the exporter on `127.0.0.1:0` against the simulated Kraken.
//!
//! One test binary; each module covers one capability and shares the helpers below.

mod accounts;
mod binary;
mod browser;
mod docs;
mod e2e;
mod earn;
mod faults;
mod layers;
mod mixin;
mod props;
mod rules;
mod scrape;
mod stream;
mod thresholds;
mod web;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::Parser;
use kraken::sim::{SimKraken, SimOptions};
use kraken_exporter::app::SharedEnv;
use kraken_exporter::cli::Cli;
use tokio::sync::oneshot;

/// An exporter served in-process, with the simulated Kraken it talks to.
pub struct Harness {
    /// The simulated Kraken, for fault injection and call counts.
    pub sim: SimKraken,
    /// The exporter.
    pub served: Served,
}

impl std::ops::Deref for Harness {
    type Target = Served;
    fn deref(&self) -> &Served {
        &self.served
    }
}

/// An exporter serving on 127.0.0.1 from a task of the test's runtime.
pub struct Served {
    /// Where the exporter listens.
    pub addr: SocketAddr,
    /// Completing this stops the exporter.
    shutdown: Option<oneshot::Sender<()>>,
    /// The serving task.
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// Under paused time, the task that keeps the clock moving (see [`paced_clock`]).
    clock: Option<tokio::task::JoinHandle<()>>,
}

/// How far a paused clock moves at most while the runtime waits for anything.
const CLOCK_STEP: Duration = Duration::from_millis(1);

/// The clock a test runs on; the test says which (helpers never guess).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// The real clock (`#[tokio::test]`).
    Real,
    /// Paused tokio time (`#[tokio::test(start_paused = true)]`), kept moving by [`paced_clock`].
    Paused,
}

/// Under paused time, a timer that fires every [`CLOCK_STEP`], so the clock never moves by more
/// than that at once while the runtime waits.
///
/// Tokio advances a paused clock whenever no task is runnable and polling the sockets woke
/// nothing, straight to the next timer. In-process loopback I/O normally wakes a task first, but
/// an answer the kernel has not delivered yet would let the clock leap to a scrape's deadline or
/// a client's timeout, and fail a test for no reason. Paced, such a leap costs a millisecond,
/// while sleeps, backoffs, deadlines and timeouts of seconds still pass in a few milliseconds of
/// real time. Tests jump further at will with `tokio::time::advance`.
pub fn paced_clock(clock: Clock) -> Option<tokio::task::JoinHandle<()>> {
    (clock == Clock::Paused).then(|| {
        tokio::spawn(async {
            loop {
                tokio::time::sleep(CLOCK_STEP).await;
            }
        })
    })
}

/// Polls `condition` every 10 ms of the test's clock until it holds (true) or `limit` has passed
/// without it (false). On paused time the limit is tokio time too: a generous one costs nothing
/// when the condition comes true.
pub async fn poll_until(limit: Duration, mut condition: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Like [`poll_until`], failing the test with `what` it waited for at the limit.
pub async fn wait_until(what: &str, limit: Duration, condition: impl AsyncFnMut() -> bool) {
    assert!(
        poll_until(limit, condition).await,
        "waited {limit:?} for {what}, in vain"
    );
}

impl Served {
    /// Resolves `args` (listen address added) with `env` the way `main` does, and serves, on the
    /// real clock.
    pub async fn start(args: &[&str], env: SharedEnv) -> Served {
        Self::launch(Clock::Real, args, env, |_| {}).await
    }

    /// Like [`Served::start`], for a test on paused time.
    pub async fn start_paused(args: &[&str], env: SharedEnv) -> Served {
        Self::launch(Clock::Paused, args, env, |_| {}).await
    }

    /// Like [`Served::start`], on `clock`, with `tweak` applied to the resolved configuration
    /// (for settings that are not operator settings, such as shorter backoffs).
    pub async fn launch(
        clock: Clock,
        args: &[&str],
        env: SharedEnv,
        tweak: impl FnOnce(&mut kraken_exporter::config::Config),
    ) -> Served {
        let mut argv = vec!["kraken_exporter", "--web.listen-address", "127.0.0.1:0"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).expect("flags parse");
        let flags = cli.flags.clone();
        let mut config = kraken_exporter::config::resolve(cli, &*env).expect("config resolves");
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind(config.web.listen_address)
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(kraken_exporter::app::run(
            config,
            flags,
            env,
            listener,
            async move {
                let _ = rx.await;
            },
        ));
        Served {
            addr,
            shutdown: Some(tx),
            task,
            clock: paced_clock(clock),
        }
    }
}

impl Harness {
    /// Starts the simulated Kraken, then the exporter with `args` (plus the sim's URL, unless
    /// `args` name another, and its credentials passed the way an operator would: environment
    /// variables), on `clock`.
    pub async fn start(clock: Clock, args: &[&str], options: SimOptions) -> Harness {
        Self::start_with_balances(clock, args, options, None).await
    }

    /// Like [`Harness::start`], with the sim holding `balances` before the exporter's first call.
    pub async fn start_with_balances(
        clock: Clock,
        args: &[&str],
        options: SimOptions,
        balances: Option<Vec<(String, f64, f64)>>,
    ) -> Harness {
        let sim = SimKraken::start(options).await.expect("sim starts");
        if let Some(balances) = balances {
            sim.set_balances(balances);
        }
        Self::serve(clock, sim, args).await
    }

    /// Starts the exporter with `args` against `sim`, which the test has set up already (key
    /// info, Earn allocations, faults), so the first refresh and key audit see what it set.
    pub async fn serve(clock: Clock, sim: SimKraken, args: &[&str]) -> Harness {
        let creds = sim.credentials();
        let key = creds.key.expose().to_owned();
        let secret = STANDARD.encode(creds.secret.expose());
        let url = sim.url();
        let mut argv = Vec::new();
        if !args.contains(&"--kraken.api-url") {
            argv.extend(["--kraken.api-url", &url]);
        }
        argv.extend_from_slice(args);
        let env: SharedEnv = Arc::new(move |name: &str| match name {
            "KRAKEN_API_KEY" => Some(key.clone()),
            "KRAKEN_API_SECRET" => Some(secret.clone()),
            _ => None,
        });
        let served = Served::launch(clock, &argv, env, |_| {}).await;
        Harness { sim, served }
    }

    /// Stops the exporter and waits for it to finish.
    pub async fn stop(self) {
        self.served.stop().await;
    }
}

impl Served {
    /// The exporter's URL for `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// GETs `path` with optional headers; returns status, content type and body.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
        let mut request = client().get(self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("exporter answers");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        (status, content_type, response.text().await.unwrap())
    }

    /// The body of `/metrics`, asserting it answered 200.
    pub async fn metrics(&self) -> String {
        let (status, _, body) = self.get("/metrics", &[]).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Waits until `/-/ready` answers 200 (the first refresh succeeded).
    pub async fn wait_ready(&self) {
        wait_until(
            "/-/ready to answer 200",
            Duration::from_secs(20),
            async || self.get("/-/ready", &[]).await.0 == 200,
        )
        .await;
    }

    /// Scrapes until `done` holds for the exposition, for at most `limit`, and returns it.
    pub async fn metrics_when(&self, limit: Duration, done: impl Fn(&str) -> bool) -> String {
        let mut body = String::new();
        let shown = poll_until(limit, async || {
            body = self.metrics().await;
            done(&body)
        })
        .await;
        assert!(
            shown,
            "after {limit:?}, the exposition still lacks what the test waits for:\n{body}"
        );
        body
    }

    /// Whether the exporter is still serving.
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }

    /// Stops the exporter and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        (&mut self.task).await.unwrap().unwrap();
        if let Some(clock) = self.clock.take() {
            clock.abort();
        }
    }
}

/// A plain HTTP client with a generous timeout (tests assert their own bounds).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The value of the sample `name{labels}` in an exposition, with labels written exactly as the
/// exporter writes them (`account="default",endpoint="BalanceEx"`).
pub fn sample(exposition: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(|value| value.trim().parse().unwrap())
}
