//! Wiring: turns a validated [`Config`] into running accounts and serves them.
//!
//! Owns start-up order (simulated Kraken in demo mode, clients, accounts, the first refresh,
//! background tasks) and the shared entry point of `main` and the integration tests.
//! Must not: parse flags or read credentials (that is [`crate::config`]).

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::kraken::KrakenClient;
use crate::kraken::client::{ClientOptions, http_client};
use crate::kraken::nonce::{NonceSource, SystemClock};
use crate::metrics::{BuildInfo, RequestMetrics};
use crate::refresh::Account;
use crate::server::{self, Exporter};
use crate::sim::{SimKraken, SimOptions};

/// A built exporter with its background tasks; dropping it stops them and the simulated Kraken.
pub struct Running {
    /// What the HTTP front serves.
    pub exporter: Arc<Exporter>,
    /// The simulated Kraken in demo mode, kept alive as long as the exporter.
    pub sim: Option<SimKraken>,
    /// The first refresh and background refresh loops.
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Builds the accounts and starts their first refresh (and background loops, when configured).
pub async fn start(config: &Config) -> anyhow::Result<Running> {
    let mut account_config = config.account.clone();
    let sim = if config.demo {
        let sim = SimKraken::start(SimOptions {
            moving: true,
            rate_limit: Some((15.0, 0.33)),
            ..SimOptions::default()
        })
        .await?;
        tracing::warn!(
            url = %sim.url(),
            "DEMO MODE: balances come from a simulated Kraken inside this process; they are not real"
        );
        account_config.api_url = sim.url();
        account_config.credentials = Some(sim.credentials());
        Some(sim)
    } else {
        None
    };
    let credentials = account_config
        .credentials
        .ok_or_else(|| anyhow::anyhow!("no credentials were resolved"))?;
    let nonces = match &account_config.nonce_file {
        Some(path) => NonceSource::with_state_file(Box::new(SystemClock), path)?,
        None => NonceSource::new(Box::new(SystemClock)),
    };
    let requests = Arc::new(RequestMetrics::new());
    let client = KrakenClient::new(
        http_client(account_config.timeout)?,
        ClientOptions {
            api_url: account_config.api_url,
            timeout: account_config.timeout,
            balance_endpoint: account_config.balance_endpoint,
        },
        credentials,
        nonces,
        account_config.name,
        Arc::clone(&requests),
    );
    let account = Account::new(client, config.policy.clone());
    let mut tasks = Vec::new();
    match config.policy.background_interval {
        // The loop's first tick is immediate, so it also makes the first refresh.
        Some(interval) => tasks.push(tokio::spawn(Arc::clone(&account).run_background(interval))),
        None => {
            let first = Arc::clone(&account);
            tasks.push(tokio::spawn(async move { first.refresh_now().await }));
        }
    }
    let exporter = Arc::new(Exporter {
        accounts: vec![account],
        requests,
        build: BuildInfo::current(),
        telemetry_path: config.web.telemetry_path.clone(),
        demo: config.demo,
    });
    Ok(Running {
        exporter,
        sim,
        tasks,
    })
}

/// Builds the exporter and serves it on `listener` until `shutdown` completes.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let running = start(&config).await?;
    tracing::info!(
        address = %listener.local_addr()?,
        telemetry_path = %config.web.telemetry_path,
        account = %config.account.name,
        mode = if config.policy.background_interval.is_some() { "background" } else { "on-scrape" },
        "listening"
    );
    server::run(Arc::clone(&running.exporter), listener, shutdown).await?;
    Ok(())
}
