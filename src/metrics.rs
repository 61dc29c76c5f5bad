//! The Prometheus exposition: request counters kept across scrapes, and balance families built
//! fresh from each account's latest snapshot.
//!
//! Owns every metric name, label and HELP text (the contract dashboards and alerts rely on).
//! Must not: do I/O, call Kraken, or keep balance series between scrapes (a series that vanished
//! upstream must vanish here).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::proto::{Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

use crate::kraken::Reason;
use crate::refresh::AccountStatus;
use crate::valuation::PriceBook;

/// The exposition `Content-Type` (text format 0.0.4), set explicitly on every answer.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds of the latency histogram: Kraken answers in tens to hundreds of milliseconds,
/// and the per-request timeout caps the tail.
const DURATION_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Counters and the latency histogram of calls to Kraken. These live for the whole process
/// (counters must never go back), unlike the balance families.
pub struct RequestMetrics {
    /// Registry holding the three families below.
    registry: Registry,
    /// `kraken_requests_total{account, endpoint}`.
    requests: IntCounterVec,
    /// `kraken_request_errors_total{account, endpoint, reason}`.
    errors: IntCounterVec,
    /// `kraken_request_duration_seconds{account, endpoint}`.
    duration: HistogramVec,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestMetrics {
    /// Creates and registers the request families.
    pub fn new() -> Self {
        let requests = IntCounterVec::new(
            Opts::new(
                "kraken_requests_total",
                "Calls this exporter made to Kraken's REST API, including retries. Scrapes served from the cached snapshot make no call.",
            ),
            &["account", "endpoint"],
        )
        .expect("valid metric");
        let errors = IntCounterVec::new(
            Opts::new(
                "kraken_request_errors_total",
                "Calls to Kraken that failed, by reason: invalid_key, invalid_signature, invalid_nonce, permission_denied, rate_limited, lockout, unavailable, timeout, http, decode, other.",
            ),
            &["account", "endpoint", "reason"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "kraken_request_duration_seconds",
                "Time from sending a call to Kraken to reading its whole answer, successful or not.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["account", "endpoint"],
        )
        .expect("valid metric");
        let registry = Registry::new();
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(errors.clone()),
            Box::new(duration.clone()),
        ] {
            registry.register(collector).expect("unique metric names");
        }
        Self {
            registry,
            requests,
            errors,
            duration,
        }
    }

    /// Creates the request and error counters of an account's endpoints at zero, before any
    /// call: a counter that first appears at 1 hides its first error from `increase()`.
    pub fn prepare(&self, account: &str, endpoints: &[&str]) {
        for endpoint in endpoints {
            self.requests.with_label_values(&[account, endpoint]);
            for reason in Reason::ALL {
                self.errors
                    .with_label_values(&[account, endpoint, reason.as_str()]);
            }
        }
    }

    /// Counts one call. Endpoints not prepared are initialised here, every reason at zero.
    pub fn observe(&self, account: &str, endpoint: &str, elapsed: Duration, error: Option<Reason>) {
        self.prepare(account, &[endpoint]);
        self.requests.with_label_values(&[account, endpoint]).inc();
        self.duration
            .with_label_values(&[account, endpoint])
            .observe(elapsed.as_secs_f64());
        if let Some(reason) = error {
            self.errors
                .with_label_values(&[account, endpoint, reason.as_str()])
                .inc();
        }
    }

    /// Drops every series of an account that is no longer configured, so a removed account
    /// does not linger in the exposition.
    pub fn forget(&self, account: &str) {
        for family in self.registry.gather() {
            for metric in family.get_metric() {
                let labels: Vec<&str> = metric.get_label().iter().map(|l| l.value()).collect();
                let ours = metric
                    .get_label()
                    .iter()
                    .any(|l| l.name() == "account" && l.value() == account);
                if !ours {
                    continue;
                }
                let _ = match family.name() {
                    "kraken_requests_total" => self.requests.remove_label_values(&labels),
                    "kraken_request_errors_total" => self.errors.remove_label_values(&labels),
                    _ => self.duration.remove_label_values(&labels),
                };
            }
        }
    }

    /// Calls counted so far for an account and endpoint.
    pub fn requests(&self, account: &str, endpoint: &str) -> u64 {
        self.requests.with_label_values(&[account, endpoint]).get()
    }

    /// Errors counted so far for an account, endpoint and reason.
    pub fn errors(&self, account: &str, endpoint: &str, reason: Reason) -> u64 {
        self.errors
            .with_label_values(&[account, endpoint, reason.as_str()])
            .get()
    }
}

/// Version and revision, for `kraken_exporter_build_info`.
#[derive(Debug, Clone)]
pub struct BuildInfo {
    /// The crate version.
    pub version: &'static str,
    /// The git revision the binary was built from, or `unknown`.
    pub revision: &'static str,
}

impl BuildInfo {
    /// The build this binary was compiled from.
    pub fn current() -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION"),
            revision: env!("KRAKEN_EXPORTER_REVISION"),
        }
    }
}

/// One account as a scrape shows it.
#[derive(Debug)]
pub struct AccountView<'a> {
    /// Status and balances (watched assets already filled in).
    pub status: AccountStatus,
    /// Asset → lowest acceptable balance.
    pub min_balance: &'a BTreeMap<String, f64>,
}

/// Outcome of the latest configuration reload.
#[derive(Debug, Clone, Copy)]
pub struct ReloadView {
    /// Whether it succeeded.
    pub ok: bool,
    /// When the configuration was last loaded successfully.
    pub last_success: SystemTime,
}

/// Renders the exposition: families built fresh from the account views, the request families
/// (only `only_account`'s series when set, for `/probe`), build info, and the reload status
/// (`None` leaves it out, as `/probe` does), sorted by name.
pub fn render(
    accounts: &[AccountView<'_>],
    prices: Option<&PriceBook>,
    reload: Option<ReloadView>,
    only_account: Option<&str>,
    requests: &RequestMetrics,
    build: &BuildInfo,
) -> Vec<u8> {
    let mut families = requests.registry.gather();
    if let Some(name) = only_account {
        for family in &mut families {
            let kept = family
                .take_metric()
                .into_iter()
                .filter(|m| {
                    m.get_label()
                        .iter()
                        .any(|l| l.name() == "account" && l.value() == name)
                })
                .collect();
            family.set_metric(kept);
        }
    }
    families.extend(account_families(accounts));
    if let Some(book) = prices {
        families.extend(price_families(book));
    }
    families.push(family(
        "kraken_exporter_build_info",
        "Always 1; the labels name the exporter version and the git revision it was built from.",
        vec![(
            vec![
                ("version", build.version.to_owned()),
                ("revision", build.revision.to_owned()),
            ],
            1.0,
        )],
    ));
    if let Some(reload) = reload {
        families.push(family(
            "kraken_exporter_config_last_reload_successful",
            "1 if the latest configuration reload (SIGHUP or POST /-/reload) succeeded; 0 if the new configuration was refused and the previous one is still running.",
            vec![(vec![], if reload.ok { 1.0 } else { 0.0 })],
        ));
        families.push(family(
            "kraken_exporter_config_last_reload_success_timestamp_seconds",
            "Unix time the running configuration was loaded (at start-up or by the latest successful reload).",
            vec![(vec![], unix_seconds(reload.last_success))],
        ));
    }
    // The encoder refuses a family without samples (an empty account, balances gone stale).
    families.retain(|family| !family.get_metric().is_empty());
    families.sort_by(|a, b| a.name().cmp(b.name()));
    let mut out = Vec::with_capacity(4096);
    TextEncoder::new()
        .encode(&families, &mut out)
        .expect("families are non-empty with valid names, and writing to a Vec cannot fail");
    out
}

/// The families built fresh from each scrape: balances, holds, thresholds, up and last success.
fn account_families(accounts: &[AccountView<'_>]) -> Vec<MetricFamily> {
    let mut balance = Vec::new();
    let mut hold = Vec::new();
    let mut minimum = Vec::new();
    let mut up = Vec::new();
    let mut last_success = Vec::new();
    let mut permissions = Vec::new();
    let mut equivalent = Vec::new();
    for view in accounts {
        let account = &view.status;
        let name = || ("account", account.name.clone());
        for (permission, granted) in account.audit.iter().flat_map(|a| a.permissions.iter()) {
            permissions.push((
                vec![name(), ("permission", permission.clone())],
                if *granted { 1.0 } else { 0.0 },
            ));
        }
        if let Some((quote, value)) = &account.equivalent {
            equivalent.push((vec![name(), ("quote", quote.clone())], *value));
        }
        up.push((vec![name()], if account.up { 1.0 } else { 0.0 }));
        if let Some(at) = account.last_success {
            last_success.push((vec![name()], unix_seconds(at)));
        }
        for (asset, min) in view.min_balance {
            minimum.push((vec![name(), ("asset", asset.clone())], *min));
        }
        for entry in account.balances.iter().flat_map(|s| s.balances.iter()) {
            let labels = vec![
                name(),
                ("asset", entry.asset.clone()),
                ("code", entry.code.clone()),
            ];
            if let Some(amount) = entry.hold {
                hold.push((labels.clone(), amount));
            }
            balance.push((labels, entry.total));
        }
    }
    vec![
        family(
            "kraken_balance",
            "Total balance of the asset on the Kraken account, in units of the asset. Served from the latest successful refresh (Kraken is called at most once per --refresh.min-interval, or every --refresh.interval in background mode); kept while refreshes fail, and dropped once it is older than --refresh.stale-after. Watched assets that Kraken omits read 0.",
            balance,
        ),
        family(
            "kraken_balance_hold",
            "Part of the balance held by open orders (BalanceEx hold_trade), in units of the asset; absent when balances come from the Balance endpoint. Cached like kraken_balance.",
            hold,
        ),
        family(
            "kraken_balance_min",
            "Lowest acceptable balance of the asset, from min_balance in the config file; alert with kraken_balance < on(account, asset) kraken_balance_min.",
            minimum,
        ),
        family(
            "kraken_api_key_permission",
            "1 if the account's API key has the permission, 0 if not, from the latest key audit (GetApiKeyInfo, or only funds_withdraw from a WithdrawMethods probe where Kraken does not answer it). An exporter needs only funds_query; funds_withdraw, orders_create and orders_cancel can move money.",
            permissions,
        ),
        family(
            "kraken_equivalent_balance",
            "Kraken's own valuation of the account in the quote currency (TradeBalance eb), when valuation.trade_balance is on and Kraken allows it for the key. Cached like kraken_balance.",
            equivalent,
        ),
        family(
            "kraken_up",
            "1 if the latest refresh of the account's balances from Kraken succeeded; 0 if it failed, is backing off after a failure, or did not finish within the scrape timeout.",
            up,
        ),
        family(
            "kraken_last_success_timestamp_seconds",
            "Unix time of the latest successful refresh of the account's balances; absent until the first success. The age of the cached balances is time() minus this.",
            last_success,
        ),
    ]
}

/// Prices of held assets in the quote currency, and the held assets that have none.
fn price_families(book: &PriceBook) -> Vec<MetricFamily> {
    let quote = || ("quote", book.quote.clone());
    vec![
        family(
            "kraken_asset_price",
            "Last trade price of one unit of the asset in the quote currency (Kraken's public Ticker), for assets some account holds; staked and reward variants (DOT.S, USD.M) carry their base asset's price. Refreshed at most once per --refresh.min-interval; value = kraken_balance * on(asset) group_left kraken_asset_price.",
            book.prices
                .iter()
                .map(|(asset, price)| (vec![("asset", asset.clone()), quote()], *price))
                .collect(),
        ),
        family(
            "kraken_asset_price_missing",
            "1 for a held asset that has no market in the quote currency (or no recent trade), so it is left out of valuations rather than counted as worth 0.",
            book.unpriced
                .iter()
                .map(|asset| (vec![("asset", asset.clone()), quote()], 1.0))
                .collect(),
        ),
    ]
}

/// A gauge family from (labels, value) pairs.
fn family(name: &str, help: &str, samples: Vec<(Vec<(&str, String)>, f64)>) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(name.to_owned());
    family.set_help(help.to_owned());
    family.set_field_type(MetricType::GAUGE);
    let metrics = samples
        .into_iter()
        .map(|(labels, value)| {
            let mut metric = Metric::from_label(
                labels
                    .into_iter()
                    .map(|(name, value)| {
                        let mut pair = LabelPair::default();
                        pair.set_name(name.to_owned());
                        pair.set_value(value);
                        pair
                    })
                    .collect(),
            );
            let mut gauge = Gauge::default();
            gauge.set_value(value);
            metric.set_gauge(gauge);
            metric
        })
        .collect();
    family.set_metric(metrics);
    family
}

fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
