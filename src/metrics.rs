//! The Prometheus exposition: request counters kept across scrapes, and every other family
//! written fresh from each scrape's account views, straight into one buffer.
//!
//! Owns every metric name, label and HELP text (the contract dashboards and alerts rely on), and
//! the text format (escaping, number formatting, family order).
//! Must not: do I/O, call Kraken, or keep balance series between scrapes (a series that vanished
//! upstream must vanish here).
//!
//! The text is written directly rather than through the `prometheus` crate: building its
//! protobuf-shaped families cost 20–30 allocations per sample and kept a full descriptor per
//! request series (see ARCHITECTURE.md, "Crate choices").

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kraken::{
    CallObserver, EarnAllocation, Endpoint, KeyExpiry, Reason, at_kraken_precision,
};
use crate::process::ProcessStats;
use crate::status::{AccountStatus, LabeledBalance};
use crate::valuation::PriceBook;

/// The exposition `Content-Type` (text format 0.0.4), set explicitly on every answer.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds of the latency histogram: Kraken answers in tens to hundreds of milliseconds,
/// and the per-request timeout caps the tail.
const DURATION_BUCKETS: [f64; 9] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The `le` label of each bucket, as the text format writes it.
const BUCKET_LABELS: [&str; 9] = ["0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30"];

/// HELP of `kraken_requests_total`.
const HELP_KRAKEN_REQUESTS_TOTAL: &str = "Calls this exporter made to Kraken's REST API, including retries. Scrapes served from the cached snapshot make no call.";

/// HELP of `kraken_request_errors_total`.
const HELP_KRAKEN_REQUEST_ERRORS_TOTAL: &str = "Calls to Kraken that failed, by reason: invalid_key, invalid_signature, invalid_nonce, permission_denied, rate_limited, lockout, unavailable, timeout, http, decode, other.";

/// HELP of `kraken_request_duration_seconds`.
const HELP_KRAKEN_REQUEST_DURATION_SECONDS: &str =
    "Time from sending a call to Kraken to reading its whole answer, successful or not.";

/// HELP of `kraken_exporter_build_info`.
const HELP_KRAKEN_EXPORTER_BUILD_INFO: &str =
    "Always 1; the labels name the exporter version and the git revision it was built from.";

/// HELP of `kraken_exporter_config_last_reload_successful`.
const HELP_KRAKEN_EXPORTER_CONFIG_LAST_RELOAD_SUCCESSFUL: &str = "1 if the latest configuration reload (SIGHUP or POST /-/reload) succeeded; 0 if the new configuration was refused and the previous one is still running.";

/// HELP of `kraken_exporter_config_last_reload_success_timestamp_seconds`.
const HELP_KRAKEN_EXPORTER_CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS: &str = "Unix time the running configuration was loaded (at start-up or by the latest successful reload).";

/// HELP of `kraken_asset_price`.
const HELP_KRAKEN_ASSET_PRICE: &str = "Last trade price of one unit of the asset in the quote currency (Kraken's public Ticker), for assets some account holds; staked and reward variants (DOT.S, USD.M) carry their base asset's price. Refreshed at most once per --refresh.min-interval, and within seconds for a newly held asset; value = kraken_balance * on(asset) group_left kraken_asset_price.";

/// HELP of `kraken_asset_price_missing`.
const HELP_KRAKEN_ASSET_PRICE_MISSING: &str = "1 for a held asset that has no market in the quote currency (or no recent trade), so it is left out of valuations rather than counted as worth 0.";

/// HELP of `kraken_balance`.
const HELP_KRAKEN_BALANCE: &str = "Total balance of the asset on the Kraken account, in units of the asset. Served from the latest successful refresh (Kraken is called at most once per --refresh.min-interval, or every --refresh.interval in background mode); kept while refreshes fail, and dropped once it is older than --refresh.stale-after. Watched assets that Kraken omits read 0.";

/// HELP of `kraken_balance_hold`.
const HELP_KRAKEN_BALANCE_HOLD: &str = "Part of the balance held by open orders (BalanceEx hold_trade), in units of the asset; absent when balances come from the Balance endpoint. Cached like kraken_balance.";

/// HELP of `kraken_balance_min`.
const HELP_KRAKEN_BALANCE_MIN: &str = "Lowest acceptable available balance of the asset, from min_balance in the config file, --balance.min or KRAKEN_BALANCE_MIN; alert with kraken_balance_available < on(account, asset) kraken_balance_min.";

/// HELP of `kraken_balance_available`.
const HELP_KRAKEN_BALANCE_AVAILABLE: &str = "What the account can trade or withdraw now, per base asset: balance + credit - credit_used - hold_trade, summed over the base code and its auto-earn variant (.F); staked, bonded and other variants are not counted. Absent when balances come from the Balance endpoint (holds unknown) or before Kraken's Assets list is known. Assets with a minimum or watched but without a spendable balance read 0. Cached like kraken_balance.";

/// HELP of `kraken_config_unknown_asset`.
const HELP_KRAKEN_CONFIG_UNKNOWN_ASSET: &str = "1 for each asset name in min_balance or watch (or --balance.min, --balance.watch) that is not in Kraken's Assets list; it is exported as this instead of as a balance of 0. Fix the name: Kraken's short name (XBT), its code (XXBT) or its common name (BTC).";

/// HELP of `kraken_api_key_permission`.
const HELP_KRAKEN_API_KEY_PERMISSION: &str = "1 if the account's API key has the permission, 0 if not, from the latest key audit (GetApiKeyInfo, or only funds_withdraw from a WithdrawMethods probe where Kraken does not answer it). An exporter needs only funds_query; funds_withdraw, orders_create and orders_cancel can move money.";

/// HELP of `kraken_api_key_created_timestamp_seconds`.
const HELP_KRAKEN_API_KEY_CREATED_TIMESTAMP_SECONDS: &str = "Unix time the account's API key was created (GetApiKeyInfo createdTime), from the latest key audit; the key's age is time() minus this. Rotate keys every few months.";

/// HELP of `kraken_api_key_expiry_timestamp_seconds`.
const HELP_KRAKEN_API_KEY_EXPIRY_TIMESTAMP_SECONDS: &str = "Unix time the account's API key stops working (GetApiKeyInfo validUntil), from the latest key audit; absent for a key without an expiry date.";

/// HELP of `kraken_api_key_info`.
const HELP_KRAKEN_API_KEY_INFO: &str = "Always 1; the name label is the name given to the account's API key on Kraken (never the key itself), from the latest key audit.";

/// HELP of `kraken_api_key_ip_allowlist_entries`.
const HELP_KRAKEN_API_KEY_IP_ALLOWLIST_ENTRIES: &str = "Number of addresses or ranges the account's API key may be used from (GetApiKeyInfo ipAllowlist), from the latest key audit; 0 means from any IP address.";

/// HELP of `kraken_earn_allocation`.
const HELP_KRAKEN_EARN_ALLOCATION: &str = "Amount of the asset allocated to Kraken Earn strategies, by state: bonding (not yet earning), earning, exit_queue (ETH, waiting to unbond) and unbonding (on its way back); the states sum to the allocated total. None of it is spendable until it is back in the spot balance. From Earn/Allocations, fetched every --earn.interval.";

/// HELP of `kraken_earn_next_unbonding_timestamp_seconds`.
const HELP_KRAKEN_EARN_NEXT_UNBONDING_TIMESTAMP_SECONDS: &str = "Unix time the next unbonding (or exit-queue) allocation of the asset is due back in the spot balance, from Earn/Allocations; absent when nothing of the asset unbonds.";

/// HELP of `kraken_equivalent_balance`.
const HELP_KRAKEN_EQUIVALENT_BALANCE: &str = "Kraken's own valuation of the account in the quote currency (TradeBalance eb), when valuation.trade_balance is on and Kraken allows it for the key. Cached like kraken_balance.";

/// HELP of `process_cpu_seconds_total` (as the Go and Rust client libraries write it).
const HELP_PROCESS_CPU_SECONDS_TOTAL: &str = "Total user and system CPU time spent in seconds.";

/// HELP of `process_max_fds`.
const HELP_PROCESS_MAX_FDS: &str = "Maximum number of open file descriptors.";

/// HELP of `process_open_fds`.
const HELP_PROCESS_OPEN_FDS: &str = "Number of open file descriptors.";

/// HELP of `process_resident_memory_bytes`.
const HELP_PROCESS_RESIDENT_MEMORY_BYTES: &str = "Resident memory size in bytes.";

/// HELP of `process_start_time_seconds`.
const HELP_PROCESS_START_TIME_SECONDS: &str =
    "Start time of the process since unix epoch in seconds.";

/// HELP of `process_threads`.
const HELP_PROCESS_THREADS: &str = "Number of OS threads in the process.";

/// HELP of `process_virtual_memory_bytes`.
const HELP_PROCESS_VIRTUAL_MEMORY_BYTES: &str = "Virtual memory size in bytes.";

/// HELP of `kraken_up`.
const HELP_KRAKEN_UP: &str = "1 if the latest refresh of the account's balances from Kraken succeeded; 0 if it failed, is backing off after a failure, or did not finish within the scrape timeout.";

/// HELP of `kraken_last_success_timestamp_seconds`.
const HELP_KRAKEN_LAST_SUCCESS_TIMESTAMP_SECONDS: &str = "Unix time of the latest successful refresh of the account's balances; absent until the first success. The age of the cached balances is time() minus this.";

/// Counters of one (account, endpoint): plain atomics, so counting a call never blocks a scrape.
#[derive(Debug, Default)]
struct EndpointCounters {
    /// Calls made.
    requests: AtomicU64,
    /// Failed calls, indexed like [`Reason::ALL`].
    errors: [AtomicU64; Reason::ALL.len()],
    /// Calls per latency bucket (not cumulative; summed when written).
    buckets: [AtomicU64; DURATION_BUCKETS.len()],
    /// Calls slower than the largest bucket.
    over: AtomicU64,
    /// Total latency, as `f64` bits.
    sum: AtomicU64,
}

impl EndpointCounters {
    fn observe(&self, elapsed: Duration, error: Option<Reason>) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let seconds = elapsed.as_secs_f64();
        match DURATION_BUCKETS.iter().position(|bound| seconds <= *bound) {
            Some(i) => self.buckets[i].fetch_add(1, Ordering::Relaxed),
            None => self.over.fetch_add(1, Ordering::Relaxed),
        };
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + seconds).to_bits())
            });
        if let Some(reason) = error {
            let index = Reason::ALL.iter().position(|r| *r == reason).unwrap_or(0);
            self.errors[index].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Counters and the latency histogram of calls to Kraken, per (account, endpoint). These live
/// for the whole process (counters must never go back), unlike the families built per scrape.
#[derive(Debug, Default)]
pub struct RequestMetrics {
    /// (account, endpoint) → counters, in the order they are written (endpoints sort by name).
    table: RwLock<BTreeMap<(String, Endpoint), Arc<EndpointCounters>>>,
    /// Bumped by every change to anything the exposition shows (a call counted here, a refresh,
    /// a reload, new prices), so a rendered body can be reused until the next change.
    generation: AtomicU64,
}

impl RequestMetrics {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    fn counters(&self, account: &str, endpoint: Endpoint) -> Arc<EndpointCounters> {
        let key = (account.to_owned(), endpoint);
        if let Some(found) = self
            .table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Arc::clone(found);
        }
        let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
        Arc::clone(table.entry(key).or_default())
    }

    /// Creates the request and error counters of an account's endpoints at zero, before any
    /// call: a counter that first appears at 1 hides its first error from `increase()`.
    pub fn prepare(&self, account: &str, endpoints: &[Endpoint]) {
        for endpoint in endpoints {
            self.counters(account, *endpoint);
        }
        self.touch();
    }

    /// Records that something the exposition shows has changed. Callers touch *after* their
    /// change is visible, so a body rendered from the old state is never taken as current.
    pub(crate) fn touch(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// The number of changes so far.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Drops every series of an account that is no longer configured, so a removed account
    /// does not linger in the exposition.
    pub(crate) fn forget(&self, account: &str) {
        self.table
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(name, _), _| name != account);
        self.touch();
    }

    /// Calls counted so far for an account and endpoint.
    #[cfg(test)]
    pub(crate) fn requests(&self, account: &str, endpoint: Endpoint) -> u64 {
        self.counters(account, endpoint)
            .requests
            .load(Ordering::Relaxed)
    }

    /// Errors counted so far for an account, endpoint and reason.
    #[cfg(test)]
    pub(crate) fn errors(&self, account: &str, endpoint: Endpoint, reason: Reason) -> u64 {
        let index = Reason::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        self.counters(account, endpoint).errors[index].load(Ordering::Relaxed)
    }

    /// The series to write, optionally of one account only.
    fn snapshot(
        &self,
        only_account: Option<&str>,
    ) -> Vec<((String, Endpoint), Arc<EndpointCounters>)> {
        self.table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|((account, _), _)| only_account.is_none_or(|name| name == account))
            .map(|(key, counters)| (key.clone(), Arc::clone(counters)))
            .collect()
    }
}

impl CallObserver for RequestMetrics {
    /// Counts one call.
    fn observe(&self, account: &str, endpoint: Endpoint, elapsed: Duration, error: Option<Reason>) {
        self.counters(account, endpoint).observe(elapsed, error);
        self.touch();
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
    /// Asset → lowest acceptable available balance, by Kraken's short name.
    pub min_balance: &'a BTreeMap<String, f64>,
    /// Configured asset names that are not Kraken assets (`kraken_config_unknown_asset`).
    pub unknown_assets: &'a [String],
}

/// Outcome of the latest configuration reload.
#[derive(Debug, Clone, Copy)]
pub struct ReloadView {
    /// Whether it succeeded.
    pub ok: bool,
    /// When the configuration was last loaded successfully.
    pub last_success: SystemTime,
}

/// Writes families into one buffer in the text format. Families are written in name order by
/// the caller; a family with no sample writes nothing, not even its HELP.
struct Writer {
    /// The exposition so far.
    out: String,
}

impl Writer {
    /// Starts a family; the header is written with its first sample.
    fn family<'w>(
        &'w mut self,
        name: &'static str,
        help: &'static str,
        kind: &'static str,
    ) -> Family<'w> {
        Family {
            writer: self,
            name,
            help,
            kind,
            started: false,
        }
    }
}

/// One family being written.
struct Family<'w> {
    writer: &'w mut Writer,
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    started: bool,
}

impl Family<'_> {
    /// Writes `name{labels} value` (`suffix` appended to the name, for histograms).
    fn sample(&mut self, suffix: &str, labels: &[(&str, &str)], value: Value) {
        let out = &mut self.writer.out;
        if !self.started {
            self.started = true;
            out.push_str("# HELP ");
            out.push_str(self.name);
            out.push(' ');
            escape_help(out, self.help);
            out.push_str("\n# TYPE ");
            out.push_str(self.name);
            out.push(' ');
            out.push_str(self.kind);
            out.push('\n');
        }
        out.push_str(self.name);
        out.push_str(suffix);
        if !labels.is_empty() {
            out.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(label);
                out.push_str("=\"");
                escape_label(out, value);
                out.push('"');
            }
            out.push('}');
        }
        out.push(' ');
        match value {
            Value::Count(n) => {
                let _ = write!(out, "{n}");
            }
            Value::Float(f) => write_float(out, f),
        }
        out.push('\n');
    }
}

/// A sample's value.
#[derive(Clone, Copy)]
enum Value {
    /// A counter or bucket count.
    Count(u64),
    /// Anything else.
    Float(f64),
}

/// Floats as the text format expects: shortest round-trip digits, `+Inf`, `-Inf`, `NaN`.
fn write_float(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{value}");
    }
}

/// Escapes a label value: backslash, double quote and newline.
fn escape_label(out: &mut String, value: &str) {
    if !value.contains(['\\', '"', '\n']) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Escapes a HELP text: backslash and newline.
fn escape_help(out: &mut String, help: &str) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Renders the exposition: families built fresh from the account views, the request families
/// (only `only_account`'s series when set, for `/probe`), build info, prices, and the reload
/// status (`None` leaves it out, as `/probe` does), in name order.
pub fn render(
    accounts: &[AccountView<'_>],
    prices: Option<&PriceBook>,
    reload: Option<ReloadView>,
    only_account: Option<&str>,
    requests: &RequestMetrics,
    build: &BuildInfo,
) -> Vec<u8> {
    let capacity = 4096 + accounts.len() * 2048;
    render_sized(
        accounts,
        prices,
        reload,
        only_account,
        requests,
        build,
        None,
        capacity,
    )
}

/// [`render`] into a buffer of `capacity` bytes, such as the previous exposition's size, so a
/// large exposition is written without growing (and copying) its buffer, with the exporter's
/// own `process_*` families when `process` is given (`/metrics`, not `/probe`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn render_sized(
    accounts: &[AccountView<'_>],
    prices: Option<&PriceBook>,
    reload: Option<ReloadView>,
    only_account: Option<&str>,
    requests: &RequestMetrics,
    build: &BuildInfo,
    process: Option<&ProcessStats>,
    capacity: usize,
) -> Vec<u8> {
    let mut w = Writer {
        out: String::with_capacity(capacity),
    };
    write_key_hygiene(&mut w, accounts);
    write_permissions(&mut w, accounts);
    if let Some(book) = prices {
        write_prices(&mut w, book);
    }
    write_balances(&mut w, accounts);
    write_unknown_assets(&mut w, accounts);
    write_earn(&mut w, accounts);
    write_equivalent(&mut w, accounts);
    write_build_and_reload(&mut w, build, reload);
    write_last_success(&mut w, accounts);
    write_requests(&mut w, requests, only_account);
    write_up(&mut w, accounts);
    if let Some(process) = process {
        write_process(&mut w, process);
    }
    w.out.into_bytes()
}

/// `kraken_api_key_created_timestamp_seconds`, `kraken_api_key_expiry_timestamp_seconds`,
/// `kraken_api_key_info` and `kraken_api_key_ip_allowlist_entries`, from what GetApiKeyInfo said
/// at each account's latest audit.
fn write_key_hygiene(w: &mut Writer, accounts: &[AccountView<'_>]) {
    let keys = || {
        accounts.iter().filter_map(|view| {
            let key = view.status.audit.as_ref()?.key.as_ref()?;
            Some((name_of(view), key))
        })
    };
    let mut f = w.family(
        "kraken_api_key_created_timestamp_seconds",
        HELP_KRAKEN_API_KEY_CREATED_TIMESTAMP_SECONDS,
        "gauge",
    );
    for (account, key) in keys() {
        if let Some(created) = key.created_time {
            f.sample(
                "",
                &[("account", &account)],
                Value::Float(unix_seconds(created)),
            );
        }
    }
    let mut f = w.family(
        "kraken_api_key_expiry_timestamp_seconds",
        HELP_KRAKEN_API_KEY_EXPIRY_TIMESTAMP_SECONDS,
        "gauge",
    );
    for (account, key) in keys() {
        if let Some(KeyExpiry::At(at)) = key.valid_until {
            f.sample("", &[("account", &account)], Value::Float(unix_seconds(at)));
        }
    }
    let mut f = w.family("kraken_api_key_info", HELP_KRAKEN_API_KEY_INFO, "gauge");
    for (account, key) in keys() {
        if let Some(name) = &key.name {
            f.sample(
                "",
                &[("account", &account), ("name", name)],
                Value::Float(1.0),
            );
        }
    }
    let mut f = w.family(
        "kraken_api_key_ip_allowlist_entries",
        HELP_KRAKEN_API_KEY_IP_ALLOWLIST_ENTRIES,
        "gauge",
    );
    for (account, key) in keys() {
        if let Some(allowlist) = &key.ip_allowlist {
            f.sample(
                "",
                &[("account", &account)],
                Value::Float(allowlist.len() as f64),
            );
        }
    }
}

/// The `process_*` families, named and described as Prometheus' Go and Rust client libraries
/// export them, so the usual process dashboards and alerts work unchanged.
fn write_process(w: &mut Writer, process: &ProcessStats) {
    let gauges = [
        (
            "process_max_fds",
            HELP_PROCESS_MAX_FDS,
            process.max_fds.map(|n| n as f64),
        ),
        (
            "process_open_fds",
            HELP_PROCESS_OPEN_FDS,
            Some(process.open_fds as f64),
        ),
        (
            "process_resident_memory_bytes",
            HELP_PROCESS_RESIDENT_MEMORY_BYTES,
            Some(process.resident_memory_bytes as f64),
        ),
        (
            "process_start_time_seconds",
            HELP_PROCESS_START_TIME_SECONDS,
            Some(process.start_time_seconds),
        ),
        (
            "process_threads",
            HELP_PROCESS_THREADS,
            Some(process.threads as f64),
        ),
        (
            "process_virtual_memory_bytes",
            HELP_PROCESS_VIRTUAL_MEMORY_BYTES,
            Some(process.virtual_memory_bytes as f64),
        ),
    ];
    let mut f = w.family(
        "process_cpu_seconds_total",
        HELP_PROCESS_CPU_SECONDS_TOTAL,
        "counter",
    );
    f.sample("", &[], Value::Float(process.cpu_seconds));
    for (name, help, value) in gauges {
        if let Some(value) = value {
            w.family(name, help, "gauge")
                .sample("", &[], Value::Float(value));
        }
    }
}

/// `kraken_api_key_permission`, from each account's latest audit.
fn write_permissions(w: &mut Writer, accounts: &[AccountView<'_>]) {
    let mut f = w.family(
        "kraken_api_key_permission",
        HELP_KRAKEN_API_KEY_PERMISSION,
        "gauge",
    );
    for view in accounts {
        let account = name_of(view);
        for (permission, granted) in view.status.audit.iter().flat_map(|a| a.permissions.iter()) {
            let value = if *granted { 1.0 } else { 0.0 };
            f.sample(
                "",
                &[("account", &account), ("permission", permission)],
                Value::Float(value),
            );
        }
    }
}

/// `kraken_asset_price` and `kraken_asset_price_missing`.
fn write_prices(w: &mut Writer, book: &PriceBook) {
    let mut f = w.family("kraken_asset_price", HELP_KRAKEN_ASSET_PRICE, "gauge");
    for (asset, price) in &book.prices {
        f.sample(
            "",
            &[("asset", asset), ("quote", &book.quote)],
            Value::Float(*price),
        );
    }
    let mut f = w.family(
        "kraken_asset_price_missing",
        HELP_KRAKEN_ASSET_PRICE_MISSING,
        "gauge",
    );
    for asset in &book.unpriced {
        f.sample(
            "",
            &[("asset", asset), ("quote", &book.quote)],
            Value::Float(1.0),
        );
    }
}

/// `kraken_balance`, `kraken_balance_available`, `kraken_balance_hold` and
/// `kraken_balance_min`.
fn write_balances(w: &mut Writer, accounts: &[AccountView<'_>]) {
    let mut f = w.family("kraken_balance", HELP_KRAKEN_BALANCE, "gauge");
    for view in accounts {
        let account = name_of(view);
        for b in balances(view) {
            let labels = [
                ("account", account.as_str()),
                ("asset", &b.asset),
                ("code", &b.code),
            ];
            f.sample("", &labels, Value::Float(b.total));
        }
    }
    let mut f = w.family(
        "kraken_balance_available",
        HELP_KRAKEN_BALANCE_AVAILABLE,
        "gauge",
    );
    for view in accounts {
        let account = name_of(view);
        let available = view
            .status
            .balances
            .iter()
            .flat_map(|s| s.available.iter().flatten());
        for (asset, amount) in available {
            let labels = [("account", account.as_str()), ("asset", asset.as_str())];
            f.sample("", &labels, Value::Float(*amount));
        }
    }
    let mut f = w.family("kraken_balance_hold", HELP_KRAKEN_BALANCE_HOLD, "gauge");
    for view in accounts {
        let account = name_of(view);
        for b in balances(view) {
            if let Some(hold) = b.hold {
                let labels = [
                    ("account", account.as_str()),
                    ("asset", &b.asset),
                    ("code", &b.code),
                ];
                f.sample("", &labels, Value::Float(hold));
            }
        }
    }
    let mut f = w.family("kraken_balance_min", HELP_KRAKEN_BALANCE_MIN, "gauge");
    for view in accounts {
        let account = name_of(view);
        for (asset, min) in view.min_balance {
            f.sample(
                "",
                &[("account", &account), ("asset", asset)],
                Value::Float(*min),
            );
        }
    }
}

/// `kraken_config_unknown_asset`.
fn write_unknown_assets(w: &mut Writer, accounts: &[AccountView<'_>]) {
    let mut f = w.family(
        "kraken_config_unknown_asset",
        HELP_KRAKEN_CONFIG_UNKNOWN_ASSET,
        "gauge",
    );
    for view in accounts {
        let account = name_of(view);
        for asset in view.unknown_assets {
            let labels = [("account", account.as_str()), ("asset", asset.as_str())];
            f.sample("", &labels, Value::Float(1.0));
        }
    }
}

/// One asset's Earn allocations summed over its strategies.
#[derive(Default)]
struct EarnByAsset {
    /// Amounts in label order: bonding, earning, exit_queue, unbonding.
    states: [f64; 4],
    /// The earliest time an unbonding or exit-queue allocation is due back.
    next_unbonding: Option<SystemTime>,
}

/// The `state` label values of `kraken_earn_allocation`, in label order.
const EARN_STATES: [&str; 4] = ["bonding", "earning", "exit_queue", "unbonding"];

/// Sums an account's strategies per asset. Earning is what is allocated and in no other state,
/// never below 0 (Kraken's amounts are rounded separately).
fn earn_by_asset(allocations: &[EarnAllocation]) -> BTreeMap<&str, EarnByAsset> {
    let mut by_asset: BTreeMap<&str, EarnByAsset> = BTreeMap::new();
    for a in allocations {
        let entry = by_asset.entry(a.native_asset.as_str()).or_default();
        let earning =
            at_kraken_precision(a.total - a.bonding - a.unbonding - a.exit_queue).max(0.0);
        for (sum, amount) in
            entry
                .states
                .iter_mut()
                .zip([a.bonding, earning, a.exit_queue, a.unbonding])
        {
            *sum = at_kraken_precision(*sum + amount);
        }
        for due in [a.unbonding_until, a.exit_queue_until]
            .into_iter()
            .flatten()
        {
            entry.next_unbonding = Some(entry.next_unbonding.map_or(due, |d| d.min(due)));
        }
    }
    by_asset
}

/// `kraken_earn_allocation` and `kraken_earn_next_unbonding_timestamp_seconds`.
fn write_earn(w: &mut Writer, accounts: &[AccountView<'_>]) {
    let summed: Vec<(String, BTreeMap<&str, EarnByAsset>)> = accounts
        .iter()
        .filter_map(|view| {
            let earn = view.status.earn.as_ref()?;
            Some((name_of(view), earn_by_asset(earn)))
        })
        .collect();
    let mut f = w.family(
        "kraken_earn_allocation",
        HELP_KRAKEN_EARN_ALLOCATION,
        "gauge",
    );
    for (account, by_asset) in &summed {
        for (asset, earn) in by_asset {
            for (state, amount) in EARN_STATES.iter().zip(earn.states) {
                let labels = [
                    ("account", account.as_str()),
                    ("asset", asset),
                    ("state", state),
                ];
                f.sample("", &labels, Value::Float(amount));
            }
        }
    }
    let mut f = w.family(
        "kraken_earn_next_unbonding_timestamp_seconds",
        HELP_KRAKEN_EARN_NEXT_UNBONDING_TIMESTAMP_SECONDS,
        "gauge",
    );
    for (account, by_asset) in &summed {
        for (asset, earn) in by_asset {
            if let Some(due) = earn.next_unbonding {
                let labels = [("account", account.as_str()), ("asset", asset)];
                f.sample("", &labels, Value::Float(unix_seconds(due)));
            }
        }
    }
}

/// `kraken_equivalent_balance`.
fn write_equivalent(w: &mut Writer, accounts: &[AccountView<'_>]) {
    let mut f = w.family(
        "kraken_equivalent_balance",
        HELP_KRAKEN_EQUIVALENT_BALANCE,
        "gauge",
    );
    for view in accounts {
        if let Some((quote, value)) = &view.status.equivalent {
            f.sample(
                "",
                &[("account", &name_of(view)), ("quote", quote)],
                Value::Float(*value),
            );
        }
    }
}

/// `kraken_exporter_build_info` and, unless `reload` is `None`, the two reload gauges.
fn write_build_and_reload(w: &mut Writer, build: &BuildInfo, reload: Option<ReloadView>) {
    let mut f = w.family(
        "kraken_exporter_build_info",
        HELP_KRAKEN_EXPORTER_BUILD_INFO,
        "gauge",
    );
    f.sample(
        "",
        &[("version", build.version), ("revision", build.revision)],
        Value::Float(1.0),
    );
    if let Some(reload) = reload {
        let mut f = w.family(
            "kraken_exporter_config_last_reload_success_timestamp_seconds",
            HELP_KRAKEN_EXPORTER_CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS,
            "gauge",
        );
        f.sample("", &[], Value::Float(unix_seconds(reload.last_success)));
        let mut f = w.family(
            "kraken_exporter_config_last_reload_successful",
            HELP_KRAKEN_EXPORTER_CONFIG_LAST_RELOAD_SUCCESSFUL,
            "gauge",
        );
        f.sample("", &[], Value::Float(if reload.ok { 1.0 } else { 0.0 }));
    }
}

/// `kraken_last_success_timestamp_seconds`.
fn write_last_success(w: &mut Writer, accounts: &[AccountView<'_>]) {
    let mut f = w.family(
        "kraken_last_success_timestamp_seconds",
        HELP_KRAKEN_LAST_SUCCESS_TIMESTAMP_SECONDS,
        "gauge",
    );
    for view in accounts {
        if let Some(at) = view.status.last_success {
            f.sample(
                "",
                &[("account", &name_of(view))],
                Value::Float(unix_seconds(at)),
            );
        }
    }
}

/// `kraken_up`.
fn write_up(w: &mut Writer, accounts: &[AccountView<'_>]) {
    let mut f = w.family("kraken_up", HELP_KRAKEN_UP, "gauge");
    for view in accounts {
        let up = if view.status.up { 1.0 } else { 0.0 };
        f.sample("", &[("account", &name_of(view))], Value::Float(up));
    }
}

/// The three request families, in name order: duration, errors, requests.
fn write_requests(w: &mut Writer, requests: &RequestMetrics, only_account: Option<&str>) {
    let series = requests.snapshot(only_account);
    let mut f = w.family(
        "kraken_request_duration_seconds",
        HELP_KRAKEN_REQUEST_DURATION_SECONDS,
        "histogram",
    );
    for ((account, endpoint), counters) in &series {
        let endpoint = endpoint.as_str();
        if counters.requests.load(Ordering::Relaxed) == 0 {
            continue;
        }
        let mut cumulative = 0;
        for (bucket, le) in counters.buckets.iter().zip(BUCKET_LABELS) {
            cumulative += bucket.load(Ordering::Relaxed);
            let labels = [
                ("account", account.as_str()),
                ("endpoint", endpoint),
                ("le", le),
            ];
            f.sample("_bucket", &labels, Value::Count(cumulative));
        }
        let total = cumulative + counters.over.load(Ordering::Relaxed);
        let labels = [
            ("account", account.as_str()),
            ("endpoint", endpoint),
            ("le", "+Inf"),
        ];
        f.sample("_bucket", &labels, Value::Count(total));
        let labels = [("account", account.as_str()), ("endpoint", endpoint)];
        let sum = f64::from_bits(counters.sum.load(Ordering::Relaxed));
        f.sample("_sum", &labels, Value::Float(sum));
        f.sample("_count", &labels, Value::Count(total));
    }
    // Reasons in label order, as a sorted exposition lists them.
    let mut reasons: Vec<(usize, Reason)> = Reason::ALL.into_iter().enumerate().collect();
    reasons.sort_by_key(|(_, reason)| reason.as_str());
    let mut f = w.family(
        "kraken_request_errors_total",
        HELP_KRAKEN_REQUEST_ERRORS_TOTAL,
        "counter",
    );
    for ((account, endpoint), counters) in &series {
        for (index, reason) in &reasons {
            let labels = [
                ("account", account.as_str()),
                ("endpoint", endpoint.as_str()),
                ("reason", reason.as_str()),
            ];
            f.sample(
                "",
                &labels,
                Value::Count(counters.errors[*index].load(Ordering::Relaxed)),
            );
        }
    }
    let mut f = w.family(
        "kraken_requests_total",
        HELP_KRAKEN_REQUESTS_TOTAL,
        "counter",
    );
    for ((account, endpoint), counters) in &series {
        let labels = [
            ("account", account.as_str()),
            ("endpoint", endpoint.as_str()),
        ];
        f.sample(
            "",
            &labels,
            Value::Count(counters.requests.load(Ordering::Relaxed)),
        );
    }
}

/// The `account` label of a view.
fn name_of(view: &AccountView<'_>) -> String {
    view.status.name.clone()
}

/// The balances of a view, in snapshot order.
fn balances<'v>(view: &'v AccountView<'_>) -> impl Iterator<Item = &'v LabeledBalance> {
    view.status.balances.iter().flat_map(|s| s.balances.iter())
}

fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_help_are_escaped_and_floats_written_as_the_format_wants() {
        let mut out = String::new();
        escape_label(&mut out, "a\\b\"c\nd");
        assert_eq!(out, "a\\\\b\\\"c\\nd");
        let mut out = String::new();
        escape_help(&mut out, "x\\y\nz \"q\"");
        assert_eq!(out, "x\\\\y\\nz \"q\"");
        for (value, text) in [
            (1.2345678901, "1.2345678901"),
            (1500.0, "1500"),
            (0.0, "0"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ] {
            let mut out = String::new();
            write_float(&mut out, value);
            assert_eq!(out, text);
        }
    }

    /// The exposition of request counters alone, optionally of one account.
    fn exposition(metrics: &RequestMetrics, only: Option<&str>) -> String {
        String::from_utf8(render(
            &[],
            None,
            None,
            only,
            metrics,
            &BuildInfo::current(),
        ))
        .unwrap()
    }

    #[test]
    fn request_counters_render_as_a_histogram_and_counters_in_label_order() {
        let metrics = RequestMetrics::new();
        metrics.prepare("a", &[Endpoint::BalanceEx]);
        metrics.observe("a", Endpoint::BalanceEx, Duration::from_millis(70), None);
        metrics.observe(
            "a",
            Endpoint::BalanceEx,
            Duration::from_secs(40),
            Some(Reason::Timeout),
        );
        metrics.observe("b", Endpoint::Assets, Duration::from_millis(10), None);
        let text = exposition(&metrics, None);
        assert!(text.contains("# TYPE kraken_request_duration_seconds histogram\n"));
        assert!(text.contains("kraken_request_duration_seconds_bucket{account=\"a\",endpoint=\"BalanceEx\",le=\"0.05\"} 0\n"));
        assert!(text.contains("kraken_request_duration_seconds_bucket{account=\"a\",endpoint=\"BalanceEx\",le=\"0.1\"} 1\n"));
        assert!(text.contains("kraken_request_duration_seconds_bucket{account=\"a\",endpoint=\"BalanceEx\",le=\"30\"} 1\n"));
        assert!(text.contains("kraken_request_duration_seconds_bucket{account=\"a\",endpoint=\"BalanceEx\",le=\"+Inf\"} 2\n"));
        assert!(text.contains(
            "kraken_request_duration_seconds_count{account=\"a\",endpoint=\"BalanceEx\"} 2\n"
        ));
        assert!(text.contains("kraken_request_errors_total{account=\"a\",endpoint=\"BalanceEx\",reason=\"timeout\"} 1\n"));
        assert!(text.contains("kraken_requests_total{account=\"b\",endpoint=\"Assets\"} 1\n"));
        let decode = text.find("reason=\"decode\"").unwrap();
        let unavailable = text.find("reason=\"unavailable\"").unwrap();
        assert!(decode < unavailable, "reasons in label order");
        assert_eq!(metrics.errors("a", Endpoint::BalanceEx, Reason::Timeout), 1);
        metrics.forget("a");
        let text = exposition(&metrics, None);
        assert!(!text.contains("account=\"a\""));
        let probe = exposition(&metrics, Some("nobody"));
        assert!(!probe.contains("account=\"b\""), "{probe}");
    }

    #[test]
    fn earn_states_sum_to_the_total_per_asset_and_earning_is_never_negative() {
        let at = |secs| UNIX_EPOCH + Duration::from_secs(secs);
        let allocation = |asset: &str, total, bonding, unbonding, exit_queue| EarnAllocation {
            strategy_id: String::new(),
            native_asset: asset.to_owned(),
            total,
            bonding,
            unbonding,
            exit_queue,
            unbonding_until: None,
            exit_queue_until: None,
        };
        let allocations = vec![
            EarnAllocation {
                unbonding_until: Some(at(2_000)),
                ..allocation("DOT", 130.0, 0.0, 30.0, 0.0)
            },
            // A second DOT strategy is summed into the same series.
            allocation("DOT", 20.0, 5.0, 0.0, 0.0),
            EarnAllocation {
                exit_queue_until: Some(at(1_500)),
                unbonding_until: Some(at(3_000)),
                ..allocation("ETH", 1.0, 0.5, 0.25, 0.25)
            },
            // Rounded amounts above the total: earning reads 0, not below.
            allocation("USDC", 1.0, 0.6, 0.5, 0.0),
        ];
        let by_asset = earn_by_asset(&allocations);
        // Amounts at Kraken's ten decimals, without float noise.
        let noisy = [allocation("ETH", 0.3, 0.1, 0.0, 0.0)];
        assert_eq!(earn_by_asset(&noisy)["ETH"].states[1].to_string(), "0.2");
        assert_eq!(by_asset["DOT"].states, [5.0, 115.0, 0.0, 30.0]);
        assert_eq!(by_asset["DOT"].states.iter().sum::<f64>(), 150.0);
        assert_eq!(by_asset["DOT"].next_unbonding, Some(at(2_000)));
        assert_eq!(by_asset["ETH"].states, [0.5, 0.0, 0.25, 0.25]);
        assert_eq!(by_asset["ETH"].next_unbonding, Some(at(1_500)));
        assert_eq!(by_asset["USDC"].states[1], 0.0);
        assert_eq!(by_asset["USDC"].next_unbonding, None);
    }

    #[test]
    fn request_series_are_written_in_endpoint_name_order() {
        let metrics = RequestMetrics::new();
        metrics.prepare(
            "a",
            &[
                Endpoint::BalanceEx,
                Endpoint::Balance,
                Endpoint::Assets,
                Endpoint::AssetPairs,
            ],
        );
        let text = exposition(&metrics, None);
        let at = |endpoint: &str| {
            text.find(&format!(
                "kraken_requests_total{{account=\"a\",endpoint=\"{endpoint}\"}} 0\n"
            ))
            .unwrap_or_else(|| panic!("no {endpoint} in {text}"))
        };
        assert!(at("AssetPairs") < at("Assets"));
        assert!(at("Assets") < at("Balance"));
        assert!(at("Balance") < at("BalanceEx"));
    }
}
