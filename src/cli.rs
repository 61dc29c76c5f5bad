//! The command line as typed: flags and the optional `check` and `mixin` subcommands, not yet
//! validated.
//!
//! Owns flag names, defaults and help texts.
//! Must not: read environment variables or files, or accept a credential as a flag value (it
//! would show in `ps`); [`crate::config`] resolves everything into a validated configuration.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{EnumValueParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};

use kraken::BalanceEndpoint;

/// Default listen port: outside the 9100–9999 range that Prometheus exporters share.
pub const DEFAULT_PORT: u16 = 10987;

/// What `--version` prints: the version, then revision, build date, compiler and target, like
/// the version output of Prometheus' own programs.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (revision: ",
    env!("KRAKEN_EXPORTER_REVISION"),
    ")\n  build date: ",
    env!("KRAKEN_EXPORTER_BUILD_DATE"),
    "\n  rustc: ",
    env!("KRAKEN_EXPORTER_RUSTC"),
    "\n  target: ",
    env!("KRAKEN_EXPORTER_TARGET"),
);

/// Prometheus exporter for the balances of a Kraken account.
///
/// Credentials come from KRAKEN_API_KEY, KRAKEN_API_SECRET and KRAKEN_API_OTP, or from files
/// named by KRAKEN_API_KEY_FILE, KRAKEN_API_SECRET_FILE, KRAKEN_API_OTP_FILE or the
/// --kraken.api-*-file flags; never from flag values.
#[derive(Debug, Clone, Parser)]
#[command(name = "kraken_exporter", version, long_version = LONG_VERSION, about, long_about)]
pub struct Cli {
    /// `check` to verify the key once and print the balances.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// All flags, shared by the exporter and `check`.
    #[command(flatten)]
    pub flags: Flags,
}

/// Subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Refresh once, print a table of balances and the key's hygiene, and exit 0 if the key works
    /// and every asset name in min_balance and watch is a Kraken asset, 1 if not, 2 for a
    /// configuration mistake.
    Check {
        /// Also exit 1 when the key has a hygiene finding (a permission allowed_permissions does
        /// not allow, an expiry within 14 days, an age past the rotation age, no IP allowlist, a
        /// nonce window, another client using it), so a deployment script can gate on it.
        #[arg(long)]
        strict: bool,
    },
    /// Write the alerting rules, recording rules, Kubernetes PrometheusRule and Grafana
    /// dashboard with your job selector, runbook address and key rotation age.
    Mixin(MixinArgs),
}

/// The settings of `kraken_exporter mixin`; checked by [`crate::mixin::MixinSettings::validate`].
#[derive(Debug, Clone, Args)]
pub struct MixinArgs {
    /// Directory to write alerts.yml, recording.yml, prometheusrule.yaml and
    /// kraken-exporter.json into (created if missing; existing files are replaced).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// PromQL label matchers, without braces, that select the exporter's scrape jobs.
    #[arg(long = "job-selector", value_name = "MATCHERS", default_value = crate::mixin::DEFAULT_JOB_SELECTOR)]
    pub job_selector: String,

    /// Address where docs/runbook.md is published; each alert links to it followed by
    /// #<alert name in lower case>.
    #[arg(long = "runbook-url", value_name = "URL", default_value = crate::mixin::DEFAULT_RUNBOOK_URL)]
    pub runbook_url: String,

    /// Age in days after which an API key is due for rotation (KrakenKeyRotationDue).
    #[arg(long = "key-rotation-days", value_name = "DAYS", default_value_t = crate::mixin::DEFAULT_KEY_ROTATION_DAYS)]
    pub key_rotation_days: u32,
}

/// Every flag. Global, so `kraken_exporter check --demo` works as well as `kraken_exporter --demo check`.
///
/// Settings that the config file can also hold are `Option`s here without a clap default, so
/// [`crate::config`] can tell a flag that was given (it overrides the file) from one that was
/// not (the file's value, then the documented default, applies).
#[derive(Debug, Clone, Args)]
pub struct Flags {
    /// Run against a built-in simulated Kraken with generated credentials: no account, no network.
    #[arg(long, global = true)]
    pub demo: bool,

    /// YAML file describing the accounts (and optionally global settings); without it, one
    /// account is read from the KRAKEN_API_* environment variables.
    #[arg(long = "config.file", value_name = "PATH", global = true)]
    pub config_file: Option<PathBuf>,

    /// Validate the configuration (and every credential it names) and exit: 0 when valid, 2 with
    /// every mistake listed otherwise.
    #[arg(long = "config.check", global = true)]
    pub config_check: bool,

    /// Base URL of Kraken's REST API [default: https://api.kraken.com].
    #[arg(long = "kraken.api-url", value_name = "URL", global = true)]
    pub api_url: Option<String>,

    /// File holding the API key (overrides KRAKEN_API_KEY_FILE); single-account mode only.
    #[arg(long = "kraken.api-key-file", value_name = "PATH", global = true)]
    pub api_key_file: Option<PathBuf>,

    /// File holding the API private key (overrides KRAKEN_API_SECRET_FILE); single-account mode only.
    #[arg(long = "kraken.api-secret-file", value_name = "PATH", global = true)]
    pub api_secret_file: Option<PathBuf>,

    /// File holding the key's static API 2FA password (overrides KRAKEN_API_OTP_FILE); single-account mode only.
    #[arg(long = "kraken.api-otp-file", value_name = "PATH", global = true)]
    pub api_otp_file: Option<PathBuf>,

    /// Value of the `account` label in single-account mode [default: default].
    #[arg(long = "kraken.account", value_name = "NAME", global = true)]
    pub account: Option<String>,

    /// Which private endpoint returns balances: balance-ex gives holds; auto falls back to
    /// balance when BalanceEx is refused [default: auto].
    #[arg(
        long = "kraken.balance-endpoint",
        value_parser = EnumValueParser::<BalanceEndpointFlag>::new().map(BalanceEndpoint::from),
        global = true
    )]
    pub balance_endpoint: Option<BalanceEndpoint>,

    /// Upper bound on one call to Kraken, from connecting to the last byte [default: 10s].
    #[arg(long = "kraken.timeout", value_parser = parse_duration, value_name = "DURATION", global = true)]
    pub timeout: Option<Duration>,

    /// File that keeps the last nonce across restarts, so nonces keep increasing even if the
    /// clock is set back while the exporter is down; single-account mode only.
    #[arg(long = "kraken.nonce-file", value_name = "PATH", global = true)]
    pub nonce_file: Option<PathBuf>,

    /// Lowest acceptable available balance of an asset, as ASSET=AMOUNT (XBT=0.5; BTC, xbt and
    /// XXBT name the same asset); repeatable, exported as kraken_balance_min. Overrides
    /// KRAKEN_BALANCE_MIN; single-account mode only.
    #[arg(long = "balance.min", value_name = "ASSET=AMOUNT", global = true)]
    pub balance_min: Vec<String>,

    /// Asset exported as 0 when Kraken leaves it out of its answer; repeatable. Overrides
    /// KRAKEN_BALANCE_WATCH; single-account mode only.
    #[arg(long = "balance.watch", value_name = "ASSET", global = true)]
    pub balance_watch: Vec<String>,

    /// Lowest acceptable total value of the account, as QUOTE=AMOUNT in the quote of
    /// --valuation.quote (USD=10000); exported as kraken_account_value_min. Overrides
    /// KRAKEN_VALUE_MIN; single-account mode only.
    #[arg(long = "value.min", value_name = "QUOTE=AMOUNT", global = true)]
    pub value_min: Vec<String>,

    /// Permissions the key may hold, comma-separated, by the names the metrics use (funds_query,
    /// websocket, funds_withdraw, ...); any other one it holds is a finding. Overrides
    /// KRAKEN_KEY_ALLOWED_PERMISSIONS; single-account mode only [default: funds_query,websocket].
    #[arg(long = "key.allowed-permissions", value_name = "NAMES", global = true)]
    pub allowed_permissions: Option<String>,

    /// Scrapes closer together than this reuse the cached balances instead of calling Kraken [default: 10s].
    #[arg(long = "refresh.min-interval", value_parser = parse_duration, value_name = "DURATION", global = true)]
    pub min_interval: Option<Duration>,

    /// Refresh in the background at this interval, independent of scrapes (scrapes never call Kraken).
    #[arg(long = "refresh.interval", value_parser = parse_duration, value_name = "DURATION", global = true)]
    pub background_interval: Option<Duration>,

    /// Drop balances from /metrics once the last successful refresh is older than this [default: 5m].
    #[arg(long = "refresh.stale-after", value_parser = parse_duration, value_name = "DURATION", global = true)]
    pub stale_after: Option<Duration>,

    /// How often the public asset list (and, with valuation, the pair list) is fetched again [default: 6h].
    #[arg(long = "refresh.assets-interval", value_parser = parse_duration, value_name = "DURATION", global = true)]
    pub assets_interval: Option<Duration>,

    /// Turn the key-permission audit off (it is on by default).
    #[arg(long = "audit.disabled", global = true)]
    pub audit_disabled: bool,

    /// How often each key's permissions are checked again [default: 6h].
    #[arg(long = "audit.interval", value_parser = parse_duration, value_name = "DURATION", global = true)]
    pub audit_interval: Option<Duration>,

    /// Age in days after which a key is due for rotation, for check and the status page; keep it
    /// equal to key_rotation_days of the alerts [default: 90].
    #[arg(long = "audit.rotation-days", value_name = "DAYS", global = true)]
    pub rotation_days: Option<u64>,

    /// Turn the Earn allocations (kraken_earn_allocation) off (they are on by default).
    #[arg(long = "earn.disabled", global = true)]
    pub earn_disabled: bool,

    /// How often each account's Earn allocations are fetched again [default: 10m].
    #[arg(long = "earn.interval", value_parser = parse_duration, value_name = "DURATION", global = true)]
    pub earn_interval: Option<Duration>,

    /// Largest expected withdrawal amount per hour of an asset, ASSET=AMOUNT (0: no withdrawal
    /// expected; kraken_outflow_max, for KrakenOutflowAboveMax); repeatable or comma-separated;
    /// environment: KRAKEN_OUTFLOW_MAX. Needs the balances stream
    #[arg(long = "outflow.max", value_name = "ASSET=AMOUNT", global = true)]
    pub outflow_max: Vec<String>,

    /// Kraken's WebSocket balances stream, so deposits and withdrawals are on /metrics within
    /// seconds and counted: auto (on when the key may use the WebSocket API), on, off [default:
    /// auto]
    #[arg(long = "kraken.stream", value_enum, value_name = "MODE", global = true)]
    pub stream: Option<StreamModeArg>,

    /// WebSocket v2 URL of the balances stream (ws:// only to this machine) [default:
    /// wss://ws-auth.kraken.com/v2]
    #[arg(long = "kraken.ws-url", value_name = "URL", global = true)]
    pub ws_url: Option<String>,

    /// While the stream is up, poll balances at most this often (events refresh them in
    /// between) [default: 1m]
    #[arg(long = "kraken.stream-poll-interval", value_parser = parse_duration, value_name = "DURATION", global = true)]
    pub stream_poll_interval: Option<Duration>,

    /// Do not fetch deposits and withdrawals in flight (DepositStatus, WithdrawStatus)
    #[arg(long = "funding.disabled", global = true)]
    pub funding_disabled: bool,

    /// How often deposits and withdrawals in flight are fetched [default: 5m]
    #[arg(long = "funding.interval", value_parser = parse_duration, value_name = "DURATION", global = true)]
    pub funding_interval: Option<Duration>,

    /// Quote currency for prices (kraken_asset_price), by Kraken's short name: USD, EUR, …
    #[arg(long = "valuation.quote", value_name = "ASSET", global = true)]
    pub valuation_quote: Option<String>,

    /// Address to listen on: host:port, or :port for every interface [default: :10987].
    #[arg(long = "web.listen-address", value_name = "ADDRESS", global = true)]
    pub listen_address: Option<String>,

    /// Path of the metrics exposition [default: /metrics].
    #[arg(long = "web.telemetry-path", value_name = "PATH", global = true)]
    pub telemetry_path: Option<String>,

    /// Web configuration file (TLS, client certificates, basic auth, response headers) in the
    /// Prometheus exporter-toolkit format; read at start-up.
    #[arg(long = "web.config.file", value_name = "PATH", global = true)]
    pub web_config_file: Option<PathBuf>,

    /// Allow reloading the configuration through POST /-/reload, as Prometheus' flag of the same
    /// name does. SIGHUP always reloads.
    #[arg(long = "web.enable-lifecycle", global = true)]
    pub enable_lifecycle: bool,

    /// Log level of the exporter's own messages (dependencies log at warn at most).
    #[arg(long = "log.level", value_enum, default_value = "info", global = true)]
    pub log_level: LogLevel,

    /// Log line format.
    #[arg(
        long = "log.format",
        value_enum,
        default_value = "logfmt",
        global = true
    )]
    pub log_format: LogFormat,
}

/// `--log.level` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// Refused reloads and problems that stop the exporter.
    Error,
    /// Also failed calls to Kraken, refusals and keys that can move funds.
    Warn,
    /// Also start-up, reloads, shutdown and recoveries.
    Info,
    /// Also every refresh and audit.
    Debug,
    /// Also every call to Kraken with its duration and outcome.
    Trace,
}

/// `--log.format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `key=value` pairs, as Go exporters log.
    Logfmt,
    /// One JSON object per line.
    Json,
}

/// `--kraken.balance-endpoint` values, as offered on the command line; each maps to the
/// [`BalanceEndpoint`] of the same name, so the wire layer needs no knowledge of clap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BalanceEndpointFlag {
    /// BalanceEx, falling back to Balance while BalanceEx is refused.
    Auto,
    /// Always BalanceEx (totals and holds).
    #[value(name = "balance-ex")]
    BalanceEx,
    /// Always Balance (totals only, no holds).
    Balance,
}

impl From<BalanceEndpointFlag> for BalanceEndpoint {
    fn from(flag: BalanceEndpointFlag) -> Self {
        match flag {
            BalanceEndpointFlag::Auto => BalanceEndpoint::Auto,
            BalanceEndpointFlag::BalanceEx => BalanceEndpoint::BalanceEx,
            BalanceEndpointFlag::Balance => BalanceEndpoint::Balance,
        }
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::duration::parse(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn balance_endpoint(args: &[&str]) -> Result<Option<BalanceEndpoint>, clap::Error> {
        let argv = std::iter::once("kraken_exporter").chain(args.iter().copied());
        Cli::try_parse_from(argv).map(|cli| cli.flags.balance_endpoint)
    }

    #[test]
    fn balance_endpoint_flag_accepts_exactly_the_names_the_wire_layer_uses() {
        assert_eq!(balance_endpoint(&[]).unwrap(), None);
        for choice in BalanceEndpoint::ALL {
            let flag = format!("--kraken.balance-endpoint={}", choice.as_str());
            assert_eq!(balance_endpoint(&[&flag]).unwrap(), Some(choice));
            assert_eq!(choice.as_str().parse::<BalanceEndpoint>(), Ok(choice));
        }
        let offered: Vec<String> = BalanceEndpointFlag::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value())
            .map(|v| v.get_name().to_owned())
            .collect();
        let known: Vec<&str> = BalanceEndpoint::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(offered, known);
        for wrong in ["Balance-Ex", "balanceex", ""] {
            let flag = format!("--kraken.balance-endpoint={wrong}");
            assert!(balance_endpoint(&[&flag]).is_err(), "{wrong:?}");
            assert!(wrong.parse::<BalanceEndpoint>().is_err(), "{wrong:?}");
        }
    }
}

/// `--kraken.stream` as typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StreamModeArg {
    /// On when the key may use the WebSocket API, else polling.
    Auto,
    /// Always.
    On,
    /// Never.
    Off,
}
