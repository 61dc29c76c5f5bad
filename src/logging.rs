//! Log set-up: logfmt or JSON lines on standard error, through `tracing`.
//!
//! Owns the filter: `--log.level` applies to the exporter's own messages; dependencies log at
//! `warn` at most, so a `trace` level never turns on an HTTP library's wire dumps.
//! Must not: log a credential (no credential type prints its contents anyway).

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::{LogFormat, LogLevel};

/// Installs the global subscriber. Calling it twice keeps the first one.
pub fn init(level: LogLevel, format: LogFormat) {
    let level = match level {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
        LogLevel::Trace => "trace",
    };
    let dependencies = if level == "error" { "error" } else { "warn" };
    let filter = EnvFilter::new(format!("{dependencies},kraken_exporter={level}"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Logfmt => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .event_format(tracing_logfmt::EventsFormatter::default())
                    .fmt_fields(tracing_logfmt::FieldsFormatter::default())
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    // A subscriber already installed (tests running several exporters in one process) is fine.
    drop(result);
}
