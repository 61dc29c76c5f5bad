//! The settings shared by one-account mode and file mode, resolved by precedence: a flag given
//! on the command line wins over the config file, the file wins over the default.
//!
//! Owns that precedence and where a bad value is reported: a bad flag ends resolution at once,
//! a bad field of the file joins the list of problems.
//! Must not: read credentials (that is `credentials`) or decide what a valid value is (that is
//! `validate`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::file::{FileConfig, FileDuration};
use super::{
    AccountConfig, AuditConfig, Config, ConfigError, DEFAULT_API_URL, DEFAULT_AUDIT_INTERVAL,
    DEFAULT_EARN_INTERVAL, DEFAULT_FUNDING_INTERVAL, DEFAULT_TIMEOUT, EarnConfig, FundingConfig,
    StreamConfig, ValuationConfig, WebConfig, WebSecurity, validate,
};
use crate::account::RefreshPolicy;
use crate::audit::DEFAULT_ROTATION_DAYS;
use crate::cli::StreamModeArg;
use crate::cli::{DEFAULT_PORT, Flags};
use crate::features::stream::{DEFAULT_WS_URL, StreamMode};
use crate::problem::Problem;

/// The quote currency of `--demo` when none is given.
const DEMO_QUOTE: &str = "USD";

/// Resolves the global settings shared by both modes around `accounts`.
pub(super) fn base_config(
    flags: &Flags,
    file: Option<&FileConfig>,
    accounts: Vec<AccountConfig>,
    problems: &mut Vec<Problem>,
) -> Result<Config, ConfigError> {
    let empty = FileConfig::default();
    let file = file.unwrap_or(&empty);
    let (api_url, timeout) = kraken_settings(flags, file, problems)?;
    let policy = refresh_policy(flags, file, problems)?;
    let audit = audit_config(flags, file, problems)?;
    let earn = earn_config(flags, file, problems)?;
    let valuation = valuation_config(flags, file, problems)?;
    let stream = stream_config(flags, file, problems)?;
    let funding = funding_config(flags, file, problems)?;
    let web = web_config(flags, file, problems)?;
    Ok(Config {
        check: false,
        check_strict: false,
        check_config: flags.config_check,
        demo: flags.demo,
        config_file: None,
        accounts,
        api_url,
        timeout,
        policy,
        audit,
        earn,
        valuation,
        stream,
        funding,
        web,
    })
}

/// Where a setting came from.
#[derive(Clone, Copy)]
enum Place {
    /// A flag (or its default).
    Flag(&'static str),
    /// A field of the config file.
    File(&'static str),
}

/// A setting's value: the flag if given, else the file's, else the default; and where a bad
/// value came from, for the message.
fn pick<T>(
    flag: Option<T>,
    flag_name: &'static str,
    file: Option<T>,
    file_place: &'static str,
    default: T,
) -> (T, Place) {
    match (flag, file) {
        (Some(value), _) => (value, Place::Flag(flag_name)),
        (None, Some(value)) => (value, Place::File(file_place)),
        (None, None) => (default, Place::Flag(flag_name)),
    }
}

/// Like [`pick`] for a setting without default.
fn pick_optional<T>(
    flag: Option<T>,
    flag_name: &'static str,
    file: Option<T>,
    file_place: &'static str,
) -> (Option<T>, Place) {
    match (flag, file) {
        (Some(value), _) => (Some(value), Place::Flag(flag_name)),
        (None, Some(value)) => (Some(value), Place::File(file_place)),
        (None, None) => (None, Place::Flag(flag_name)),
    }
}

/// Reports a bad setting at its place: a flag fails at once, a file field joins the list.
fn report(place: Place, message: String, problems: &mut Vec<Problem>) -> Result<(), ConfigError> {
    match place {
        Place::Flag(flag) => Err(ConfigError::Flag {
            flag,
            problem: message,
        }),
        Place::File(field) => {
            problems.push(Problem {
                place: field.to_owned(),
                message,
            });
            Ok(())
        }
    }
}

/// Reports the outcome of a check, if it failed.
fn check<E: Into<String>>(
    outcome: Result<(), E>,
    place: Place,
    problems: &mut Vec<Problem>,
) -> Result<(), ConfigError> {
    match outcome {
        Ok(()) => Ok(()),
        Err(message) => report(place, message.into(), problems),
    }
}

fn dur(duration: &Option<FileDuration>) -> Option<Duration> {
    duration.map(|d| d.0)
}

/// `--kraken.api-url` and `--kraken.timeout`.
fn kraken_settings(
    flags: &Flags,
    file: &FileConfig,
    problems: &mut Vec<Problem>,
) -> Result<(String, Duration), ConfigError> {
    let (api_url, place) = pick(
        flags.api_url.clone(),
        "--kraken.api-url",
        file.kraken.api_url.clone(),
        "kraken.api_url",
        DEFAULT_API_URL.to_owned(),
    );
    let api_url = match validate::api_url(&api_url) {
        Ok(url) => url,
        Err(message) => {
            report(place, format!("{api_url:?} {message}"), problems)?;
            DEFAULT_API_URL.to_owned()
        }
    };
    let (timeout, place) = pick(
        flags.timeout,
        "--kraken.timeout",
        dur(&file.kraken.timeout),
        "kraken.timeout",
        DEFAULT_TIMEOUT,
    );
    check(validate::timeout(timeout), place, problems)?;
    Ok((api_url, timeout))
}

/// `--refresh.*`: when Kraken is called.
fn refresh_policy(
    flags: &Flags,
    file: &FileConfig,
    problems: &mut Vec<Problem>,
) -> Result<RefreshPolicy, ConfigError> {
    let defaults = RefreshPolicy::default();
    let (min_interval, _) = pick(
        flags.min_interval,
        "--refresh.min-interval",
        dur(&file.refresh.min_interval),
        "refresh.min_interval",
        defaults.min_interval,
    );
    let (background_interval, place) = pick_optional(
        flags.background_interval,
        "--refresh.interval",
        dur(&file.refresh.interval),
        "refresh.interval",
    );
    if let Some(interval) = background_interval {
        check(validate::background_interval(interval), place, problems)?;
    }
    let (stale_after, _) = pick(
        flags.stale_after,
        "--refresh.stale-after",
        dur(&file.refresh.stale_after),
        "refresh.stale_after",
        defaults.stale_after,
    );
    let (assets_interval, place) = pick(
        flags.assets_interval,
        "--refresh.assets-interval",
        dur(&file.refresh.assets_interval),
        "refresh.assets_interval",
        defaults.assets_interval,
    );
    check(validate::assets_interval(assets_interval), place, problems)?;
    let (stream_interval, place) = pick(
        flags.stream_poll_interval,
        "--kraken.stream-poll-interval",
        dur(&file.stream.poll_interval),
        "stream.poll_interval",
        defaults.stream_interval,
    );
    check(
        validate::stream_poll_interval(stream_interval),
        place,
        problems,
    )?;
    Ok(RefreshPolicy {
        min_interval,
        background_interval,
        stale_after,
        assets_interval,
        stream_interval,
        ..defaults
    })
}

/// `--audit.*`: the key-permission audit.
fn audit_config(
    flags: &Flags,
    file: &FileConfig,
    problems: &mut Vec<Problem>,
) -> Result<AuditConfig, ConfigError> {
    let enabled = !flags.audit_disabled && file.audit.enabled.unwrap_or(true);
    let (interval, place) = pick(
        flags.audit_interval,
        "--audit.interval",
        dur(&file.audit.interval),
        "audit.interval",
        DEFAULT_AUDIT_INTERVAL,
    );
    check(validate::audit_interval(interval), place, problems)?;
    let (rotation_days, place) = pick(
        flags.rotation_days,
        "--audit.rotation-days",
        file.audit.rotation_days,
        "audit.rotation_days",
        DEFAULT_ROTATION_DAYS,
    );
    if rotation_days == 0 {
        report(
            place,
            "must be at least 1 day (the rotation age of the KrakenKeyRotationDue alert, 90 by default)".into(),
            problems,
        )?;
    }
    Ok(AuditConfig {
        enabled,
        interval,
        rotation_days,
    })
}

/// `--earn.*`: the Earn allocations.
fn earn_config(
    flags: &Flags,
    file: &FileConfig,
    problems: &mut Vec<Problem>,
) -> Result<EarnConfig, ConfigError> {
    let enabled = !flags.earn_disabled && file.earn.enabled.unwrap_or(true);
    let (interval, place) = pick(
        flags.earn_interval,
        "--earn.interval",
        dur(&file.earn.interval),
        "earn.interval",
        DEFAULT_EARN_INTERVAL,
    );
    check(validate::earn_interval(interval), place, problems)?;
    Ok(EarnConfig { enabled, interval })
}

/// `--kraken.stream`, `--kraken.ws-url`: the balances stream. Its poll interval is part of
/// the refresh policy.
fn stream_config(
    flags: &Flags,
    file: &FileConfig,
    problems: &mut Vec<Problem>,
) -> Result<StreamConfig, ConfigError> {
    let file_mode = match file.stream.mode.as_deref() {
        None => None,
        Some("auto") => Some(StreamMode::Auto),
        Some("on") => Some(StreamMode::On),
        Some("off") => Some(StreamMode::Off),
        Some(_) => {
            check(
                Err("must be auto, on or off"),
                Place::File("stream.mode"),
                problems,
            )?;
            None
        }
    };
    let flag_mode = flags.stream.map(|mode| match mode {
        StreamModeArg::Auto => StreamMode::Auto,
        StreamModeArg::On => StreamMode::On,
        StreamModeArg::Off => StreamMode::Off,
    });
    let (mode, _) = pick(
        flag_mode,
        "--kraken.stream",
        file_mode,
        "stream.mode",
        StreamMode::Auto,
    );
    let (url, place) = pick(
        flags.ws_url.clone(),
        "--kraken.ws-url",
        file.stream.url.clone(),
        "stream.url",
        DEFAULT_WS_URL.to_owned(),
    );
    let url = match validate::ws_url(&url) {
        Ok(url) => url,
        Err(message) => {
            report(place, message.to_owned(), problems)?;
            url
        }
    };
    Ok(StreamConfig { mode, url })
}

/// `--funding.*`: deposits and withdrawals in flight.
fn funding_config(
    flags: &Flags,
    file: &FileConfig,
    problems: &mut Vec<Problem>,
) -> Result<FundingConfig, ConfigError> {
    let enabled = !flags.funding_disabled && file.funding.enabled.unwrap_or(true);
    let (interval, place) = pick(
        flags.funding_interval,
        "--funding.interval",
        dur(&file.funding.interval),
        "funding.interval",
        DEFAULT_FUNDING_INTERVAL,
    );
    check(validate::funding_interval(interval), place, problems)?;
    Ok(FundingConfig { enabled, interval })
}

/// `--valuation.quote` and the file's `valuation.trade_balance`.
fn valuation_config(
    flags: &Flags,
    file: &FileConfig,
    problems: &mut Vec<Problem>,
) -> Result<ValuationConfig, ConfigError> {
    let (mut quote, place) = pick_optional(
        flags.valuation_quote.clone(),
        "--valuation.quote",
        file.valuation.quote.clone(),
        "valuation.quote",
    );
    // The demo prices its assets, so every value panel and the value minimum have data.
    if flags.demo && quote.is_none() {
        quote = Some(DEMO_QUOTE.to_owned());
    }
    if let Some(quote) = &quote {
        check(validate::quote(quote), place, problems)?;
    }
    Ok(ValuationConfig {
        quote,
        trade_balance: file.valuation.trade_balance.unwrap_or(false),
    })
}

/// `--web.*`: the HTTP front, with the web configuration file loaded.
fn web_config(
    flags: &Flags,
    file: &FileConfig,
    problems: &mut Vec<Problem>,
) -> Result<WebConfig, ConfigError> {
    let (listen, place) = pick(
        flags.listen_address.clone(),
        "--web.listen-address",
        file.web.listen_address.clone(),
        "web.listen_address",
        format!(":{DEFAULT_PORT}"),
    );
    let listen_address = match validate::listen_address(&listen) {
        Ok(address) => address,
        Err(message) => {
            report(place, message, problems)?;
            SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT))
        }
    };
    let (telemetry_path, place) = pick(
        flags.telemetry_path.clone(),
        "--web.telemetry-path",
        file.web.telemetry_path.clone(),
        "web.telemetry_path",
        "/metrics".to_owned(),
    );
    check(validate::telemetry_path(&telemetry_path), place, problems)?;
    let security = match &flags.web_config_file {
        Some(path) => Some(Arc::new(WebSecurity::load(path)?)),
        None => None,
    };
    Ok(WebConfig {
        listen_address,
        telemetry_path,
        security,
        enable_lifecycle: flags.enable_lifecycle,
    })
}
