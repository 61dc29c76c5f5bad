//! Wiring: turns a validated [`Config`] into running accounts, serves them, and reloads.
//!
//! Owns start-up order (simulated Kraken in demo mode, clients, accounts, the first refresh,
//! background tasks), the reload (SIGHUP and `POST /-/reload`), and the shared entry point of
//! `main` and the integration tests.
//! Must not: parse flags or read credentials itself (that is [`crate::config`]); a reload that
//! fails keeps the running configuration untouched.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::account::{Account, Extras};
use crate::cli::Flags;
use crate::config::{self, AccountConfig, Config};
use crate::exporter::{AccountSet, ExportedAccount, Exporter, ReloadRequest, Tasks};
use crate::features::stream::{StreamMode, StreamSettings};
use crate::keys::KeyRegistry;
use crate::market::{Market, PUBLIC_ACCOUNT, PricePolicy};
use crate::metrics::RequestMetrics;
use crate::web;
use kraken::client::{ClientOptions, http_client};
use kraken::sim::{
    DEMO_BALANCES, DemoActivity, PUBLIC_RATE_LIMIT, STARTER_RATE_LIMIT, SimEarn, SimKeyInfo,
    SimKraken, SimOptions,
};
use kraken::{BalanceEndpoint, CallObserver, Endpoint, KrakenClient};

/// The environment, shared with reloads (which read credential variables again).
pub type SharedEnv = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The running application: what it was started with, and what it serves.
pub struct App {
    /// The command line, re-resolved on every reload.
    flags: Flags,
    /// The environment, read again on every reload.
    env: SharedEnv,
    /// The configuration currently running.
    running: Mutex<Config>,
    /// What the HTTP front serves.
    pub exporter: Arc<Exporter>,
    /// Counters of calls to Kraken, kept across reloads.
    requests: Arc<RequestMetrics>,
    /// Demo mode: one simulated Kraken per account name, and one for the shared market under
    /// [`PUBLIC_ACCOUNT`], kept across reloads.
    sims: Mutex<HashMap<String, Arc<DemoSim>>>,
    /// One nonce source and call lock per API key, shared by an account and the one a reload
    /// builds to replace it.
    keys: KeyRegistry,
    /// Serialises reloads.
    reloading: tokio::sync::Mutex<()>,
}

impl App {
    /// Builds every account and starts their first refresh; returns the application and the
    /// receiver of reload requests sent by `POST /-/reload`.
    pub async fn start(
        config: Config,
        flags: Flags,
        env: SharedEnv,
    ) -> anyhow::Result<(Arc<App>, mpsc::Receiver<ReloadRequest>)> {
        let requests = Arc::new(RequestMetrics::new());
        let (reload_tx, reload_rx) = mpsc::channel(4);
        let sims = Mutex::new(HashMap::new());
        let keys = KeyRegistry::default();
        let set = build_set(&config, None, &requests, &sims, &keys).await?;
        if config.demo {
            tracing::warn!(
                "DEMO MODE: balances come from a simulated Kraken inside this process; they are not real"
            );
        }
        let exporter = Arc::new(Exporter::new(
            set,
            Arc::clone(&requests),
            config.web.telemetry_path.clone(),
            config.demo,
            config.policy.background_interval.is_some(),
            Some(reload_tx),
            config.web.enable_lifecycle,
        ));
        let app = Arc::new(App {
            flags,
            env,
            running: Mutex::new(config),
            exporter,
            requests,
            sims,
            keys,
            reloading: tokio::sync::Mutex::new(()),
        });
        Ok((app, reload_rx))
    }

    /// Re-reads the configuration (file, flags, environment, credential files) and swaps the
    /// account set. Accounts whose connection is unchanged keep their state, nonces and cached
    /// balances. A configuration that fails to load or build is refused and logged; the
    /// running one stays.
    pub async fn reload(&self) -> Result<(), String> {
        let _one_at_a_time = self.reloading.lock().await;
        let env = Arc::clone(&self.env);
        let outcome = async {
            let new =
                config::resolve_flags(&self.flags, false, &*env).map_err(|e| format!("{e}"))?;
            let old = self
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if new.web.listen_address != old.web.listen_address
                || new.web.telemetry_path != old.web.telemetry_path
            {
                tracing::warn!(
                    "web settings changed in the configuration; they take effect after a restart"
                );
            }
            let current = self.exporter.accounts();
            let set = build_set(
                &new,
                Some((&old, &current)),
                &self.requests,
                &self.sims,
                &self.keys,
            )
            .await
            .map_err(|e| format!("{e:#}"))?;
            let gone: Vec<String> = current
                .accounts
                .iter()
                .map(|a| a.config.name.clone())
                .filter(|name| set.find(name).is_none())
                .collect();
            for name in &gone {
                self.requests.forget(name);
                self.sims
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(name);
            }
            let names: Vec<&str> = set
                .accounts
                .iter()
                .map(|a| a.config.name.as_str())
                .collect();
            tracing::info!(accounts = ?names, removed = ?gone, "configuration reloaded");
            self.exporter.replace(set);
            *self.running.lock().unwrap_or_else(|e| e.into_inner()) = new;
            Ok(())
        }
        .await;
        if let Err(error) = &outcome {
            tracing::error!(%error, "configuration reload refused; the previous configuration keeps running");
            // Simulated Krakens started for accounts of the refused configuration go away.
            let running = self.exporter.accounts();
            self.sims
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|name, _| name == PUBLIC_ACCOUNT || running.find(name).is_some());
        }
        self.exporter.reload.record(outcome.is_ok());
        self.exporter.requests.touch();
        outcome
    }
}

/// Whether the settings every account is built with are the same in both configurations, so
/// an unchanged account can be kept with its state.
fn same_globals(old: &Config, new: &Config) -> bool {
    old.api_url == new.api_url
        && old.timeout == new.timeout
        && old.policy == new.policy
        && old.demo == new.demo
        && old.audit == new.audit
        && old.earn == new.earn
        && old.valuation == new.valuation
        && old.stream == new.stream
        && old.funding == new.funding
}

/// The public data's market for `config`. In demo mode it has a simulated Kraken of its own,
/// so removing an account on reload never takes the public data's server away with it.
async fn new_market(
    config: &Config,
    http: &reqwest::Client,
    requests: &Arc<RequestMetrics>,
    sims: &Mutex<HashMap<String, Arc<DemoSim>>>,
) -> anyhow::Result<Arc<Market>> {
    let api_url = match demo_endpoint(config, PUBLIC_ACCOUNT, sims).await? {
        Some(demo) => demo.url,
        None => config.api_url.clone(),
    };
    Ok(Market::new(
        KrakenClient::public(
            http.clone(),
            ClientOptions {
                api_url,
                timeout: config.timeout,
                balance_endpoint: BalanceEndpoint::Auto,
            },
            PUBLIC_ACCOUNT.to_owned(),
            Arc::clone(requests) as Arc<dyn CallObserver>,
        ),
        config.policy.assets_interval,
        config.valuation.quote.clone().map(|quote| PricePolicy {
            quote,
            min_interval: config.policy.min_interval,
            stale_after: config.policy.stale_after,
        }),
        Arc::clone(requests),
    ))
}

/// Builds the account set of `config`. With `previous` (the running configuration and its
/// set), accounts whose connection is unchanged are carried over with their state.
async fn build_set(
    config: &Config,
    previous: Option<(&Config, &AccountSet)>,
    requests: &Arc<RequestMetrics>,
    sims: &Mutex<HashMap<String, Arc<DemoSim>>>,
    keys: &KeyRegistry,
) -> anyhow::Result<AccountSet> {
    let http = http_client(config.timeout).context("building the HTTP client")?;
    let mut endpoints = Vec::new();
    for account in &config.accounts {
        endpoints.push(demo_endpoint(config, &account.name, sims).await?);
    }
    let same_globals = |old: &Config| same_globals(old, config);
    let market = match previous {
        Some((old, set)) if same_globals(old) => Arc::clone(&set.market),
        _ => new_market(config, &http, requests, sims).await?,
    };
    let mut accounts = Vec::with_capacity(config.accounts.len());
    for (account_config, endpoint) in config.accounts.iter().zip(endpoints) {
        let reusable = previous.and_then(|(old, set)| {
            let existing = set.find(&account_config.name)?;
            (same_globals(old) && existing.config.same_connection(account_config))
                .then_some(existing)
        });
        let exported = match reusable {
            Some(existing) => ExportedAccount {
                config: account_config.clone(),
                ..existing.clone()
            },
            None => {
                let connection = Connection {
                    http: &http,
                    market: &market,
                    requests,
                    keys,
                };
                start_account(config, account_config, endpoint, &connection)?
            }
        };
        accounts.push(exported);
    }
    // Counters are created only once the whole set is built, so a refused reload leaves none.
    let mut public = vec![Endpoint::Assets, Endpoint::SystemStatus];
    if config.valuation.quote.is_some() {
        public.extend([Endpoint::AssetPairs, Endpoint::Ticker]);
    }
    requests.prepare(PUBLIC_ACCOUNT, &public);
    for exported in &accounts {
        requests.prepare(&exported.config.name, &endpoints_of(exported));
    }
    Ok(AccountSet { accounts, market })
}

/// Gives a demo account's simulated Kraken Earn allocations in every state (DOT partly
/// unbonding, ETH bonding and in the exit queue, USDC only earning) and a key that expires in 60
/// days, was created 30 days ago and is restricted to this machine, so every Earn and key panel
/// of the dashboard has data without an alert firing for the key.
fn demo_earn_and_key(sim: &SimKraken, now: SystemTime) {
    let now = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = |n: u64| now + n * 86_400;
    sim.set_earn(vec![
        SimEarn {
            strategy_id: "ESDEMO1-DOTST-UNBOND".into(),
            native_asset: "DOT".into(),
            total: 300.0,
            bonding: vec![],
            unbonding: vec![(50.0, days(3)), (20.0, days(9))],
            exit_queue: vec![],
        },
        SimEarn {
            strategy_id: "ESDEMO2-ETHST-BONDQ".into(),
            native_asset: "ETH".into(),
            total: 3.2,
            bonding: vec![(0.4, days(5))],
            unbonding: vec![],
            exit_queue: vec![(0.3, days(12))],
        },
        SimEarn {
            strategy_id: "ESDEMO3-USDCF-EARNS".into(),
            native_asset: "USDC".into(),
            total: 500.0,
            bonding: vec![],
            unbonding: vec![],
            exit_queue: vec![],
        },
    ]);
    sim.set_key_info(SimKeyInfo {
        name: "demo-exporter".into(),
        valid_until: days(60),
        created: now.saturating_sub(30 * 86_400),
        ip_allowlist: vec!["127.0.0.1".into()],
        last_used: None,
    });
}

/// A simulated Kraken of the demo, with its money in motion.
struct DemoSim {
    sim: SimKraken,
    /// Posts a deposit, a trade and a withdrawal every [`DEMO_ACTIVITY_PERIOD`]; stops when
    /// dropped with the account's simulator.
    _activity: Option<DemoActivity>,
}

/// How often the demo's accounts see a deposit, a trade and a withdrawal.
const DEMO_ACTIVITY_PERIOD: Duration = Duration::from_secs(60);

/// Where an account's calls go in demo mode.
struct DemoEndpoint {
    /// The REST base URL.
    url: String,
    /// The WebSocket v2 URL.
    ws_url: String,
    /// The simulator's key.
    credentials: kraken::secret::Credentials,
}

/// In demo mode, the simulated Kraken of an account, or of the shared market under
/// [`PUBLIC_ACCOUNT`] (started on first use).
async fn demo_endpoint(
    config: &Config,
    name: &str,
    sims: &Mutex<HashMap<String, Arc<DemoSim>>>,
) -> anyhow::Result<Option<DemoEndpoint>> {
    if !config.demo {
        return Ok(None);
    }
    let existing = sims
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(name)
        .cloned();
    let demo = match existing {
        Some(demo) => demo,
        None => {
            let demo = Arc::new(start_demo_sim(name).await?);
            tracing::info!(account = %name, url = %demo.sim.url(), "simulated Kraken started");
            sims.lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name.to_owned(), Arc::clone(&demo));
            demo
        }
    };
    Ok(Some(DemoEndpoint {
        url: demo.sim.url(),
        ws_url: demo.sim.ws_url(),
        credentials: demo.sim.credentials(),
    }))
}

/// Starts the simulated Kraken of one demo account (or of the public data), with Kraken's
/// Starter rate limit and a key that may stream.
async fn start_demo_sim(name: &str) -> anyhow::Result<DemoSim> {
    let sim = SimKraken::start(SimOptions {
        moving: true,
        rate_limit: Some(STARTER_RATE_LIMIT),
        public_rate_limit: Some(PUBLIC_RATE_LIMIT),
        // The stream needs the WebSocket permission; WithdrawStatus the ledger one.
        permissions: ["query-funds", "create-ws-token", "query-ledger"]
            .map(str::to_owned)
            .to_vec(),
        ..SimOptions::default()
    })
    .await
    .context("starting the simulated Kraken")?;
    if name == PUBLIC_ACCOUNT {
        return Ok(DemoSim {
            sim,
            _activity: None,
        });
    }
    // The simulator's demo set (auto-earn on for XBT, so `kraken_balance{asset="XBT"}` is tiny
    // while `kraken_balance_available` is not); with the demo's minimums (`config`), USD is
    // below its minimum and XBT is not.
    sim.set_balances(
        DEMO_BALANCES
            .iter()
            .map(|&(code, balance, hold)| (code.to_owned(), balance, hold))
            .collect(),
    );
    demo_earn_and_key(&sim, SystemTime::now());
    let activity = sim.start_demo_activity(DEMO_ACTIVITY_PERIOD);
    Ok(DemoSim {
        sim,
        _activity: Some(activity),
    })
}

/// The private endpoints an account may call, so their counters exist at 0 before the first
/// call (a counter born at 1 hides the first error from `increase()`).
fn endpoints_of(exported: &ExportedAccount) -> Vec<Endpoint> {
    let mut endpoints = exported.config.balance_endpoint.endpoints().to_vec();
    endpoints.extend(exported.account.feature_endpoints());
    endpoints
}

/// The features an account runs besides balances, from the configuration.
fn extras_of(config: &Config, ws_url: String) -> Extras {
    Extras {
        audit_interval: config.audit.enabled.then_some(config.audit.interval),
        earn_interval: config.earn.enabled.then_some(config.earn.interval),
        trade_balance_quote: config.valuation.trade_balance.then(|| {
            config
                .valuation
                .quote
                .clone()
                .unwrap_or_else(|| "USD".to_owned())
        }),
        funding_interval: config.funding.enabled.then_some(config.funding.interval),
        stream: (config.stream.mode != StreamMode::Off).then_some(StreamSettings {
            mode: config.stream.mode,
            url: ws_url,
            timeout: config.timeout,
        }),
    }
}

/// What every account of one account set is built with.
struct Connection<'a> {
    http: &'a reqwest::Client,
    market: &'a Arc<Market>,
    requests: &'a Arc<RequestMetrics>,
    keys: &'a KeyRegistry,
}

/// Builds one account and starts its first refresh (or its background loop). Its key's nonce
/// source and call lock come from `keys`, shared with the account it replaces, if any.
fn start_account(
    config: &Config,
    account: &AccountConfig,
    demo: Option<DemoEndpoint>,
    connection: &Connection<'_>,
) -> anyhow::Result<ExportedAccount> {
    let Connection {
        http,
        market,
        requests,
        keys,
    } = connection;
    let (api_url, ws_url, credentials) = match demo {
        Some(demo) => (demo.url, demo.ws_url, demo.credentials),
        None => (
            account
                .api_url
                .clone()
                .unwrap_or_else(|| config.api_url.clone()),
            config.stream.url.clone(),
            account
                .credentials
                .clone()
                .with_context(|| format!("account {:?} has no credentials", account.name))?,
        ),
    };
    // A simulated Kraken starts afresh with every run, so demo mode keeps no nonce file.
    let nonce_file = account.nonce_file.as_deref().filter(|_| !config.demo);
    let key = keys.handle(&credentials, nonce_file)?;
    let client = KrakenClient::new(
        (*http).clone(),
        ClientOptions {
            api_url,
            timeout: config.timeout,
            balance_endpoint: account.balance_endpoint,
        },
        credentials,
        key.nonces,
        account.name.clone(),
        Arc::clone(requests) as Arc<dyn CallObserver>,
    );
    let state = Account::sharing_key(
        client,
        config.policy.clone(),
        extras_of(config, ws_url),
        Arc::clone(market),
        Arc::clone(requests),
        key.lock,
    );
    let task = match config.policy.background_interval {
        // The loop's first tick is immediate, so it also makes the first refresh.
        Some(interval) => tokio::spawn(Arc::clone(&state).run_background(interval)),
        None => {
            let first = Arc::clone(&state);
            tokio::spawn(async move { first.refresh_now().await })
        }
    };
    let mut tasks = vec![task];
    tasks.extend(state.start_sources());
    Ok(ExportedAccount {
        account: Arc::clone(&state),
        config: account.clone(),
        tasks: Arc::new(Tasks {
            account: Some(Arc::clone(&state)),
            handles: tasks,
        }),
    })
}

/// Builds the exporter and serves it on `listener` until `shutdown` completes, reloading on
/// SIGHUP and `POST /-/reload`.
pub async fn run(
    config: Config,
    flags: Flags,
    env: SharedEnv,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let names: Vec<String> = config.accounts.iter().map(|a| a.name.clone()).collect();
    let telemetry_path = config.web.telemetry_path.clone();
    let mode = if config.policy.background_interval.is_some() {
        "background"
    } else {
        "on-scrape"
    };
    let security = config.web.security.clone();
    let (app, mut reload_requests) = App::start(config, flags, env).await?;
    tracing::info!(
        address = %listener.local_addr()?,
        %telemetry_path,
        accounts = ?names,
        mode,
        "listening"
    );
    let reloader = Arc::clone(&app);
    let reload_loop = tokio::spawn(async move {
        #[cfg(unix)]
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            #[cfg(unix)]
            let signal = async {
                match hangup.as_mut() {
                    Some(hangup) => hangup.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let signal = std::future::pending::<Option<()>>();
            tokio::select! {
                request = reload_requests.recv() => match request {
                    Some(reply) => { let _ = reply.send(reloader.reload().await); }
                    None => break,
                },
                Some(()) = signal => {
                    tracing::info!("SIGHUP received: reloading the configuration");
                    let _ = reloader.reload().await;
                }
            }
        }
    });
    let served = web::run(Arc::clone(&app.exporter), listener, security, shutdown).await;
    reload_loop.abort();
    served?;
    Ok(())
}
