//! The command line as typed: flags and the optional `check` subcommand, not yet validated.
//!
//! Owns flag names, defaults and help texts.
//! Must not: read environment variables or files, or accept a credential as a flag value (it
//! would show in `ps`); [`crate::config`] resolves everything into a validated configuration.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::kraken::BalanceEndpoint;

/// Default listen port: outside the 9100–9999 range that Prometheus exporters share.
pub const DEFAULT_PORT: u16 = 10987;

/// Prometheus exporter for the balances of a Kraken account.
///
/// Credentials come from KRAKEN_API_KEY, KRAKEN_API_SECRET and KRAKEN_API_OTP, or from files
/// named by KRAKEN_API_KEY_FILE, KRAKEN_API_SECRET_FILE, KRAKEN_API_OTP_FILE or the
/// --kraken.api-*-file flags; never from flag values.
#[derive(Debug, Parser)]
#[command(name = "kraken_exporter", version, about, long_about)]
pub struct Cli {
    /// `check` to verify the key once and print the balances.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// All flags, shared by the exporter and `check`.
    #[command(flatten)]
    pub flags: Flags,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Refresh once, print a table of balances and exit 0 if the key works.
    Check,
}

/// Every flag. Global, so `kraken_exporter check --demo` works as well as `kraken_exporter --demo check`.
#[derive(Debug, Args)]
pub struct Flags {
    /// Run against a built-in simulated Kraken with generated credentials: no account, no network.
    #[arg(long, global = true)]
    pub demo: bool,

    /// Base URL of Kraken's REST API.
    #[arg(
        long = "kraken.api-url",
        default_value = "https://api.kraken.com",
        global = true
    )]
    pub api_url: String,

    /// File holding the API key (overrides KRAKEN_API_KEY_FILE).
    #[arg(long = "kraken.api-key-file", value_name = "PATH", global = true)]
    pub api_key_file: Option<PathBuf>,

    /// File holding the API private key (overrides KRAKEN_API_SECRET_FILE).
    #[arg(long = "kraken.api-secret-file", value_name = "PATH", global = true)]
    pub api_secret_file: Option<PathBuf>,

    /// File holding the key's static API 2FA password (overrides KRAKEN_API_OTP_FILE).
    #[arg(long = "kraken.api-otp-file", value_name = "PATH", global = true)]
    pub api_otp_file: Option<PathBuf>,

    /// Value of the `account` label.
    #[arg(long = "kraken.account", default_value = "default", global = true)]
    pub account: String,

    /// Which private endpoint returns balances: balance-ex gives holds; auto falls back to
    /// balance when BalanceEx is refused.
    #[arg(
        long = "kraken.balance-endpoint",
        value_enum,
        default_value = "auto",
        global = true
    )]
    pub balance_endpoint: BalanceEndpoint,

    /// Upper bound on one call to Kraken, from connecting to the last byte.
    #[arg(long = "kraken.timeout", value_parser = parse_duration, default_value = "10s", global = true)]
    pub timeout: Duration,

    /// File that keeps the last nonce across restarts, so nonces keep increasing even if the
    /// clock is set back while the exporter is down.
    #[arg(long = "kraken.nonce-file", value_name = "PATH", global = true)]
    pub nonce_file: Option<PathBuf>,

    /// Scrapes closer together than this reuse the cached balances instead of calling Kraken.
    #[arg(long = "refresh.min-interval", value_parser = parse_duration, default_value = "10s", global = true)]
    pub min_interval: Duration,

    /// Refresh in the background at this interval, independent of scrapes (scrapes never call Kraken).
    #[arg(long = "refresh.interval", value_parser = parse_duration, global = true)]
    pub background_interval: Option<Duration>,

    /// Drop balances from /metrics once the last successful refresh is older than this.
    #[arg(long = "refresh.stale-after", value_parser = parse_duration, default_value = "5m", global = true)]
    pub stale_after: Duration,

    /// How often the public asset list (code → short name) is fetched again.
    #[arg(long = "refresh.assets-interval", value_parser = parse_duration, default_value = "6h", global = true)]
    pub assets_interval: Duration,

    /// Address to listen on: host:port, or :port for every interface.
    #[arg(long = "web.listen-address", default_value_t = format!(":{DEFAULT_PORT}"), global = true)]
    pub listen_address: String,

    /// Path of the metrics exposition.
    #[arg(long = "web.telemetry-path", default_value = "/metrics", global = true)]
    pub telemetry_path: String,

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
    /// Failures only.
    Error,
    /// Failures and refused fallbacks.
    Warn,
    /// Start-up, shutdown and recoveries.
    Info,
    /// Every refresh.
    Debug,
    /// Everything, including each call.
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

fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::duration::parse(text)
}
