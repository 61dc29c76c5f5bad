//! One validated configuration, resolved once from flags, the config file, environment
//! variables and credential files.
//!
//! Owns precedence (a flag given on the command line overrides the file, the file overrides the
//! default), credential loading (environment variable or file) and every check of a
//! credential's shape, of the accounts, the listen address, the telemetry path and the API URL.
//! Must not: put any part of a credential into an error, a log line or `Debug` output; errors
//! name the variable, file or field and the fix instead.

pub mod file;

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::account::RefreshPolicy;
use crate::cli::{Cli, Command, DEFAULT_PORT, Flags, LogFormat, LogLevel};
use crate::kraken::BalanceEndpoint;
use crate::secret::{ApiSecret, Credentials, SecretText};
use file::{AccountEntry, FileConfig, Problem};

/// Length of a decoded Kraken private key.
pub const SECRET_LEN: usize = 64;

/// Default base URL of Kraken's REST API.
pub const DEFAULT_API_URL: &str = "https://api.kraken.com";

/// Default per-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Default interval of the key-permission audit.
pub const DEFAULT_AUDIT_INTERVAL: Duration = Duration::from_secs(6 * 3600);

/// Everything the exporter needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Run `check` once instead of serving.
    pub check: bool,
    /// Validate the configuration and exit (`--config.check`).
    pub check_config: bool,
    /// Use the built-in simulated Kraken; credentials are then `None`.
    pub demo: bool,
    /// The config file, when accounts come from one; re-read on reload.
    pub config_file: Option<PathBuf>,
    /// The accounts to export, in the order written.
    pub accounts: Vec<AccountConfig>,
    /// Base URL of Kraken's REST API, without trailing slash.
    pub api_url: String,
    /// Upper bound on one call.
    pub timeout: Duration,
    /// When Kraken is called.
    pub policy: RefreshPolicy,
    /// The key-permission audit.
    pub audit: AuditConfig,
    /// Prices in a quote currency.
    pub valuation: ValuationConfig,
    /// The HTTP front.
    pub web: WebConfig,
    /// Logging.
    pub log_level: LogLevel,
    /// Logging.
    pub log_format: LogFormat,
}

/// One Kraken account.
#[derive(Debug, Clone)]
pub struct AccountConfig {
    /// The `account` label.
    pub name: String,
    /// Key, secret and optional 2FA password; `None` in demo mode, where the simulated Kraken
    /// generates them.
    pub credentials: Option<Credentials>,
    /// Which endpoint returns balances.
    pub balance_endpoint: BalanceEndpoint,
    /// Base URL for this account's private calls; `None` uses [`Config::api_url`].
    pub api_url: Option<String>,
    /// Where the nonce high-water mark is kept across restarts.
    pub nonce_file: Option<PathBuf>,
    /// Asset label → lowest acceptable balance (`kraken_balance_min`).
    pub min_balance: BTreeMap<String, f64>,
    /// Asset labels exported as 0 when Kraken omits them.
    pub watch: Vec<String>,
}

impl AccountConfig {
    /// Whether `other` talks to Kraken exactly as this one does (same key, secret, 2FA password,
    /// endpoint and nonce file), so a reload can keep the running account, its nonces and its
    /// cached balances.
    pub fn same_connection(&self, other: &AccountConfig) -> bool {
        let creds = |c: &Option<Credentials>| {
            c.as_ref().map(|c| {
                (
                    c.key.expose().to_owned(),
                    c.secret.expose().to_vec(),
                    c.otp.as_ref().map(|o| o.expose().to_owned()),
                )
            })
        };
        self.name == other.name
            && self.balance_endpoint == other.balance_endpoint
            && self.api_url == other.api_url
            && self.nonce_file == other.nonce_file
            && creds(&self.credentials) == creds(&other.credentials)
    }
}

/// The key-permission audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// Whether keys are audited at all.
    pub enabled: bool,
    /// How often each key is audited again.
    pub interval: Duration,
}

/// Prices in a quote currency.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ValuationConfig {
    /// Kraken's short name of the quote currency (`USD`); `None` turns prices off.
    pub quote: Option<String>,
    /// Collect TradeBalance's equivalent balance per account.
    pub trade_balance: bool,
}

/// The HTTP front.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Where to listen.
    pub listen_address: SocketAddr,
    /// Path of the exposition.
    pub telemetry_path: String,
    /// `--web.config.file`, when given.
    pub config_file: Option<PathBuf>,
    /// What that file configures (TLS, client certificates, basic auth, headers), loaded and
    /// validated; applied at start-up only.
    pub security: Option<Arc<crate::web_config::WebSecurity>>,
}

/// A configuration that cannot be used. Each message names the variable, file, field or flag at
/// fault and the fix; none contains a credential. The process exits with status 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A credential is missing or malformed.
    #[error("{source_name}: {problem}")]
    Credential {
        /// Where the value came from (`environment variable KRAKEN_API_SECRET`, `file …`).
        source_name: String,
        /// What is wrong and what to do.
        problem: String,
    },
    /// The key or secret is not set anywhere.
    #[error(
        "no {what} is set: set {env} or {env}_FILE (or --kraken.{flag}-file) to the {what} of a key with only the 'Funds: Query' permission, use --config.file, or run with --demo"
    )]
    Missing {
        /// `API key` or `API private key`.
        what: &'static str,
        /// The environment variable.
        env: &'static str,
        /// The flag stem.
        flag: &'static str,
    },
    /// A value and a file were both given for one credential.
    #[error("both {env} and {env}_FILE are set: keep only one of them")]
    Ambiguous {
        /// The environment variable.
        env: &'static str,
    },
    /// A flag value is unusable.
    #[error("{flag} {problem}")]
    Flag {
        /// The flag.
        flag: &'static str,
        /// What is wrong and what to do.
        problem: String,
    },
    /// The config file cannot be read.
    #[error("cannot read config file {path}: {kind}; check the path given to --config.file")]
    FileRead {
        /// The file.
        path: PathBuf,
        /// The I/O error kind.
        kind: std::io::ErrorKind,
    },
    /// The config file has mistakes; all of them are listed.
    #[error("config file {path}: {}", list(problems))]
    File {
        /// The file.
        path: PathBuf,
        /// Every mistake found.
        problems: Vec<Problem>,
    },
    /// The web configuration file (`--web.config.file`) cannot be read or has mistakes.
    #[error(transparent)]
    WebConfig(#[from] crate::web_config::WebConfigError),
}

/// One problem on its line, or a count and one line per problem.
pub fn list<P: std::fmt::Display>(problems: &[P]) -> String {
    match problems {
        [one] => one.to_string(),
        many => {
            let mut text = format!("{} problems:", many.len());
            for problem in many {
                text.push_str("\n  - ");
                text.push_str(&problem.to_string());
            }
            text
        }
    }
}

/// The environment, looked up by name; injected so tests control it.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Resolves the command line, the config file it names and the environment into a validated
/// configuration.
pub fn resolve(cli: Cli, env: Env<'_>) -> Result<Config, ConfigError> {
    let check = matches!(cli.command, Some(Command::Check));
    resolve_flags(&cli.flags, check, env)
}

/// Like [`resolve`], from flags alone (what a reload re-runs).
pub fn resolve_flags(flags: &Flags, check: bool, env: Env<'_>) -> Result<Config, ConfigError> {
    let file = match &flags.config_file {
        Some(path) => Some((path.clone(), read_file(path)?)),
        None => None,
    };
    let mut problems = Vec::new();
    let mut config = match &file {
        Some((path, file)) => {
            for (flag, given) in [
                ("--kraken.api-key-file", flags.api_key_file.is_some()),
                ("--kraken.api-secret-file", flags.api_secret_file.is_some()),
                ("--kraken.api-otp-file", flags.api_otp_file.is_some()),
                ("--kraken.account", flags.account.is_some()),
                ("--kraken.nonce-file", flags.nonce_file.is_some()),
                (
                    "--kraken.balance-endpoint",
                    flags.balance_endpoint.is_some(),
                ),
            ] {
                if given {
                    return Err(ConfigError::Flag {
                        flag,
                        problem: "applies only without --config.file: set it per account in the file instead".into(),
                    });
                }
            }
            let accounts = file_accounts(file, path, flags.demo, env, &mut problems);
            base_config(flags, Some(file), accounts, &mut problems)?
        }
        None => {
            let credentials = if flags.demo {
                None
            } else {
                Some(load_credentials(
                    env,
                    flags.api_key_file.as_deref(),
                    flags.api_secret_file.as_deref(),
                    flags.api_otp_file.as_deref(),
                )?)
            };
            let name = flags
                .account
                .clone()
                .unwrap_or_else(|| "default".to_owned());
            if let Some(problem) = check_account_name(&name) {
                return Err(ConfigError::Flag {
                    flag: "--kraken.account",
                    problem,
                });
            }
            if !flags.demo
                && let Some(path) = &flags.nonce_file
                && let Err(error) = crate::kraken::nonce::check_state_file(path)
            {
                return Err(ConfigError::Flag {
                    flag: "--kraken.nonce-file",
                    problem: error.to_string(),
                });
            }
            let account = AccountConfig {
                name,
                credentials,
                balance_endpoint: flags.balance_endpoint.unwrap_or(BalanceEndpoint::Auto),
                api_url: None,
                nonce_file: flags.nonce_file.clone(),
                min_balance: BTreeMap::new(),
                watch: Vec::new(),
            };
            base_config(flags, None, vec![account], &mut problems)?
        }
    };
    if let Some((path, _)) = file {
        if !problems.is_empty() {
            return Err(ConfigError::File { path, problems });
        }
        config.config_file = Some(path);
    }
    config.check = check;
    Ok(config)
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::FileRead {
        path: path.to_owned(),
        kind: e.kind(),
    })?;
    file::parse(&text).map_err(|problem| ConfigError::File {
        path: path.to_owned(),
        problems: vec![problem],
    })
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

/// Where a setting came from.
#[derive(Clone, Copy)]
enum Place {
    /// A flag (or its default).
    Flag(&'static str),
    /// A field of the config file.
    File(&'static str),
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

/// Resolves the global settings shared by both modes.
fn base_config(
    flags: &Flags,
    file: Option<&FileConfig>,
    accounts: Vec<AccountConfig>,
    problems: &mut Vec<Problem>,
) -> Result<Config, ConfigError> {
    let empty = FileConfig::default();
    let file = file.unwrap_or(&empty);
    let dur = |d: &Option<file::FileDuration>| d.map(|d| d.0);

    let (api_url, place) = pick(
        flags.api_url.clone(),
        "--kraken.api-url",
        file.kraken.api_url.clone(),
        "kraken.api_url",
        DEFAULT_API_URL.to_owned(),
    );
    let api_url = match validate_api_url(&api_url) {
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
    if timeout.is_zero() {
        report(
            place,
            "must be longer than 0s (for example 10s)".into(),
            problems,
        )?;
    }
    let defaults = RefreshPolicy::default();
    let (min_interval, _) = pick(
        flags.min_interval,
        "--refresh.min-interval",
        dur(&file.refresh.min_interval),
        "refresh.min_interval",
        defaults.min_interval,
    );
    let (background_interval, place) =
        match (flags.background_interval, dur(&file.refresh.interval)) {
            (Some(i), _) => (Some(i), Place::Flag("--refresh.interval")),
            (None, Some(i)) => (Some(i), Place::File("refresh.interval")),
            (None, None) => (None, Place::Flag("--refresh.interval")),
        };
    if background_interval.is_some_and(|i| i.is_zero()) {
        report(
            place,
            "must be longer than 0s (for example 30s); leave it out to refresh on scrape".into(),
            problems,
        )?;
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
    if assets_interval < Duration::from_secs(60) {
        report(
            place,
            "must be at least 1m: the asset list changes rarely".into(),
            problems,
        )?;
    }
    let enabled = !flags.audit_disabled && file.audit.enabled.unwrap_or(true);
    let (audit_interval, place) = pick(
        flags.audit_interval,
        "--audit.interval",
        dur(&file.audit.interval),
        "audit.interval",
        DEFAULT_AUDIT_INTERVAL,
    );
    if audit_interval < Duration::from_secs(60) {
        report(
            place,
            "must be at least 1m: permissions rarely change, and each audit costs calls".into(),
            problems,
        )?;
    }
    let (quote, place) = match (flags.valuation_quote.clone(), file.valuation.quote.clone()) {
        (Some(q), _) => (Some(q), Place::Flag("--valuation.quote")),
        (None, Some(q)) => (Some(q), Place::File("valuation.quote")),
        (None, None) => (None, Place::Flag("--valuation.quote")),
    };
    if let Some(q) = &quote
        && (q.is_empty() || !q.chars().all(|c| c.is_ascii_alphanumeric() || c == '.'))
    {
        report(
            place,
            format!("{q:?} is not an asset name: use Kraken's short name, like USD or EUR"),
            problems,
        )?;
    }
    let (listen, place) = pick(
        flags.listen_address.clone(),
        "--web.listen-address",
        file.web.listen_address.clone(),
        "web.listen_address",
        format!(":{DEFAULT_PORT}"),
    );
    let listen_address = match resolve_listen_address(&listen) {
        Some(address) => address,
        None => {
            report(
                place,
                format!(
                    "{listen:?} is not host:port or :port (for example :{DEFAULT_PORT} or 127.0.0.1:{DEFAULT_PORT})"
                ),
                problems,
            )?;
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
    if telemetry_path.len() < 2
        || !telemetry_path.starts_with('/')
        || telemetry_path.starts_with("/-/")
        || telemetry_path == "/probe"
    {
        report(
            place,
            format!("{telemetry_path:?} must start with / and must not be /, /probe or a /-/ path"),
            problems,
        )?;
    }
    let security = match &flags.web_config_file {
        Some(path) => Some(Arc::new(crate::web_config::WebSecurity::load(path)?)),
        None => None,
    };
    Ok(Config {
        check: false,
        check_config: flags.config_check,
        demo: flags.demo,
        config_file: None,
        accounts,
        api_url,
        timeout,
        policy: RefreshPolicy {
            min_interval,
            background_interval,
            stale_after,
            assets_interval,
            ..RefreshPolicy::default()
        },
        audit: AuditConfig {
            enabled,
            interval: audit_interval,
        },
        valuation: ValuationConfig {
            quote,
            trade_balance: file.valuation.trade_balance.unwrap_or(false),
        },
        web: WebConfig {
            listen_address,
            telemetry_path,
            config_file: flags.web_config_file.clone(),
            security,
        },
        log_level: flags.log_level,
        log_format: flags.log_format,
    })
}

/// Names become label values and `/probe?account=` arguments: keep them plain. Names starting
/// with `_` are reserved (`_public` counts calls to Kraken's public endpoints).
fn check_account_name(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".into());
    }
    if name.starts_with('_') {
        return Some(format!(
            "{name:?} starts with _, which is reserved: choose another name"
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Some(format!(
            "{name:?} may contain only letters, digits, '-', '_' and '.'"
        ));
    }
    None
}

/// Validates every account of the file, collecting every mistake.
fn file_accounts(
    file: &FileConfig,
    path: &Path,
    demo: bool,
    env: Env<'_>,
    problems: &mut Vec<Problem>,
) -> Vec<AccountConfig> {
    if file.accounts.is_empty() {
        problems.push(Problem {
            place: "accounts".into(),
            message: "no account is configured: add at least one entry with a name, key_file and secret_file".into(),
        });
    }
    let owner_only = owner_only(path);
    let mut accounts: Vec<AccountConfig> = Vec::new();
    for (index, entry) in file.accounts.iter().enumerate() {
        let label = match &entry.name {
            Some(name) => format!("accounts[{index}] ({name})"),
            None => format!("accounts[{index}]"),
        };
        let mut add = |field: &str, message: String| {
            problems.push(Problem {
                place: if field.is_empty() {
                    label.clone()
                } else {
                    format!("{label}.{field}")
                },
                message,
            });
        };
        let name = match &entry.name {
            None => {
                add(
                    "name",
                    "is missing: give every account a name (it becomes the account label)".into(),
                );
                String::new()
            }
            Some(name) => {
                if let Some(problem) = check_account_name(name) {
                    add("name", problem);
                } else if accounts.iter().any(|a| &a.name == name) {
                    add(
                        "name",
                        format!("{name:?} is used by another account: names must be unique"),
                    );
                }
                name.clone()
            }
        };
        let balance_endpoint = match &entry.balance_endpoint {
            None => BalanceEndpoint::Auto,
            Some(text) => text.parse::<BalanceEndpoint>().unwrap_or_else(|_| {
                add(
                    "balance_endpoint",
                    format!("{text:?} is not one of auto, balance-ex, balance"),
                );
                BalanceEndpoint::Auto
            }),
        };
        let api_url = entry
            .api_url
            .as_ref()
            .and_then(|url| match validate_api_url(url) {
                Ok(url) => Some(url),
                Err(message) => {
                    add("api_url", format!("{url:?} {message}"));
                    None
                }
            });
        for (asset, min) in &entry.min_balance {
            if !min.is_finite() || *min < 0.0 {
                add(
                    &format!("min_balance.{asset}"),
                    format!("{min} is not a balance: use a number of at least 0"),
                );
            }
            if asset.is_empty() {
                add(
                    "min_balance",
                    "has an empty asset name: use Kraken's short name, like XBT or USD".into(),
                );
            }
        }
        if entry.watch.iter().any(|a| a.trim().is_empty()) {
            add(
                "watch",
                "has an empty asset name: use Kraken's short names, like [XBT, USD]".into(),
            );
        }
        let credentials = if demo {
            None
        } else {
            match entry_credentials(entry, env, owner_only, path) {
                Ok(credentials) => Some(credentials),
                Err(list) => {
                    for (field, message) in list {
                        add(&field, message);
                    }
                    None
                }
            }
        };
        if let Some(creds) = &credentials
            && let Some(other) = accounts.iter().find(|a| {
                a.credentials
                    .as_ref()
                    .is_some_and(|c| c.key.expose() == creds.key.expose())
            })
        {
            add(
                "key",
                format!(
                    "is the same API key as account {:?}: give every account its own key (two accounts sharing a key break each other's nonces)",
                    other.name
                ),
            );
        }
        if !demo
            && let Some(path) = &entry.nonce_file
            && let Err(error) = crate::kraken::nonce::check_state_file(path)
        {
            add("nonce_file", error.to_string());
        }
        let mut watch: Vec<String> = entry.watch.iter().map(|a| a.trim().to_owned()).collect();
        watch.sort();
        watch.dedup();
        accounts.push(AccountConfig {
            name,
            credentials,
            balance_endpoint,
            api_url,
            nonce_file: entry.nonce_file.clone(),
            min_balance: entry.min_balance.clone(),
            watch,
        });
    }
    accounts
}

/// Whether the config file can be read by its owner only (where inline credentials are allowed).
fn owner_only(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 == 0)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

/// Loads one account's credentials, or every problem with them as (field, message).
fn entry_credentials(
    entry: &AccountEntry,
    env: Env<'_>,
    owner_only: bool,
    config_path: &Path,
) -> Result<Credentials, Vec<(String, String)>> {
    let mut errors = Vec::new();
    let mut one = |what: &'static str,
                   file: &Option<PathBuf>,
                   var: &Option<String>,
                   inline: &Option<String>,
                   required: bool|
     -> Option<(String, Origin)> {
        let given = [file.is_some(), var.is_some(), inline.is_some()]
            .iter()
            .filter(|g| **g)
            .count();
        if given > 1 {
            errors.push((
                what.to_owned(),
                format!(
                    "is given more than once: keep only one of {what}_file, {what}_env and {what}"
                ),
            ));
            return None;
        }
        if let Some(path) = file {
            let origin = Origin::File {
                path: path.clone(),
                named_by: format!("{what}_file"),
            };
            return match read_file_value(path, &origin) {
                Ok(text) => Some((text, origin)),
                Err(message) => {
                    errors.push((format!("{what}_file"), message));
                    None
                }
            };
        }
        if let Some(name) = var {
            return match env(name).filter(|v| !v.is_empty()) {
                Some(text) => Some((text, Origin::Env(name.clone()))),
                None => {
                    errors.push((format!("{what}_env"), format!("environment variable {name} is not set or empty: set it, or use {what}_file")));
                    None
                }
            };
        }
        if let Some(text) = inline {
            if !owner_only {
                errors.push((
                    what.to_owned(),
                    format!(
                        "is written inline, which is allowed only when the config file is readable by its owner alone: run chmod 600 {}, or use {what}_file",
                        config_path.display()
                    ),
                ));
                return None;
            }
            return Some((text.clone(), Origin::Inline(what)));
        }
        if required {
            errors.push((
                what.to_owned(),
                format!("is missing: set {what}_file (a file holding it) or {what}_env (the name of an environment variable holding it)"),
            ));
        }
        None
    };
    let key = one("key", &entry.key_file, &entry.key_env, &entry.key, true);
    let secret = one(
        "secret",
        &entry.secret_file,
        &entry.secret_env,
        &entry.secret,
        true,
    );
    let otp = one("otp", &entry.otp_file, &entry.otp_env, &entry.otp, false);
    let field = |origin: &Origin, what: &str| match origin {
        Origin::File { .. } => format!("{what}_file"),
        Origin::Env(_) => format!("{what}_env"),
        Origin::Inline(_) => what.to_owned(),
    };
    let key = key.and_then(|(text, origin)| match check_shape(&text, &origin) {
        Ok(()) => Some(SecretText::new(text)),
        Err(e) => {
            errors.push((field(&origin, "key"), shape_message(e)));
            None
        }
    });
    let secret = secret.and_then(|(text, origin)| {
        let text = SecretText::new(text);
        match decode_secret(text.expose(), &origin) {
            Ok(secret) => Some(secret),
            Err(e) => {
                errors.push((field(&origin, "secret"), shape_message(e)));
                None
            }
        }
    });
    let otp = match otp {
        Some((text, origin)) => match check_password_shape(&text, &origin) {
            Ok(()) => Some(Some(SecretText::new(text))),
            Err(e) => {
                errors.push((field(&origin, "otp"), shape_message(e)));
                None
            }
        },
        None => Some(None),
    };
    match (key, secret, otp, errors.is_empty()) {
        (Some(key), Some(secret), Some(otp), true) => Ok(Credentials { key, secret, otp }),
        _ => Err(errors),
    }
}

/// The message of a credential error, with its source (already the place) dropped.
fn shape_message(error: ConfigError) -> String {
    match error {
        ConfigError::Credential {
            source_name,
            problem,
        } => format!("{source_name} {problem}"),
        other => other.to_string(),
    }
}

/// Reads a credential file: UTF-8, without its trailing newline.
fn read_file_value(path: &Path, origin: &Origin) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| {
        format!(
            "{} cannot be read ({}): check the path and that the exporter's user may read it",
            origin.describe(),
            e.kind()
        )
    })?;
    let text = String::from_utf8(bytes).map_err(|_| {
        format!(
            "{} is not UTF-8 text: write the value as plain text on one line",
            origin.describe()
        )
    })?;
    warn_if_readable_by_others(path, origin);
    // A trailing newline (as `echo` and editors write) is not part of the value.
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

/// `:port` listens on every interface, IPv6 and IPv4, as Go exporters do: `[::]`, which Linux
/// serves dual-stack; `main` falls back to `0.0.0.0` where IPv6 is unavailable.
fn resolve_listen_address(address: &str) -> Option<SocketAddr> {
    let full = if address.starts_with(':') {
        format!("[::]{address}")
    } else {
        address.to_owned()
    };
    full.to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
}

/// Plain HTTP would send the key and signatures in clear text, so it is accepted only for a
/// Kraken on this machine (the simulated one, or a local proxy that adds TLS).
fn validate_api_url(url: &str) -> Result<String, &'static str> {
    let trimmed = url.trim_end_matches('/');
    let bad = |problem| problem;
    let Some((scheme, rest)) = trimmed.split_once("://") else {
        return Err(bad("is not a URL: write it like https://api.kraken.com"));
    };
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    if host.is_empty() {
        return Err(bad("has no host: write it like https://api.kraken.com"));
    }
    let host_name = host
        .rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(host, |(name, _)| name);
    match scheme {
        "https" => Ok(trimmed.to_owned()),
        "http" if matches!(host_name, "127.0.0.1" | "localhost" | "[::1]") => {
            Ok(trimmed.to_owned())
        }
        "http" => Err(bad(
            "uses plain http to another machine, which would expose the API key: use https",
        )),
        _ => Err(bad("must start with https://")),
    }
}

/// Where a credential came from, for messages.
enum Origin {
    /// An environment variable holding the value.
    Env(String),
    /// Written in the config file itself.
    Inline(&'static str),
    /// A file, named by a flag or a variable.
    File { path: PathBuf, named_by: String },
}

impl Origin {
    fn describe(&self) -> String {
        match self {
            Origin::Env(name) => format!("environment variable {name}"),
            Origin::Inline(what) => format!("the inline {what}"),
            Origin::File { path, named_by } => {
                format!("file {} (from {named_by})", path.display())
            }
        }
    }
}

/// Finds and reads one credential: the flag's file, else `<ENV>_FILE`, else `<ENV>`.
fn read_credential(
    env: Env<'_>,
    name: &'static str,
    flag: &'static str,
    flag_file: Option<&Path>,
) -> Result<Option<(String, Origin)>, ConfigError> {
    let file_var: &'static str = match name {
        "KRAKEN_API_KEY" => "KRAKEN_API_KEY_FILE",
        "KRAKEN_API_SECRET" => "KRAKEN_API_SECRET_FILE",
        _ => "KRAKEN_API_OTP_FILE",
    };
    let value = env(name).filter(|v| !v.is_empty());
    let env_file = env(file_var).filter(|v| !v.is_empty());
    let origin = match (flag_file, env_file, value) {
        (Some(path), _, _) => Origin::File {
            path: path.to_owned(),
            named_by: format!("--kraken.{flag}-file"),
        },
        (None, Some(_), Some(_)) => return Err(ConfigError::Ambiguous { env: name }),
        (None, Some(path), None) => Origin::File {
            path: PathBuf::from(path),
            named_by: file_var.to_owned(),
        },
        (None, None, Some(value)) => return Ok(Some((value, Origin::Env(name.to_owned())))),
        (None, None, None) => return Ok(None),
    };
    let Origin::File { path, .. } = &origin else {
        unreachable!("only files reach here")
    };
    let text = read_file_value(path, &origin).map_err(|message| ConfigError::Credential {
        source_name: origin.describe(),
        problem: message
            .strip_prefix(&origin.describe())
            .unwrap_or(&message)
            .trim_start()
            .to_owned(),
    })?;
    Ok(Some((text, origin)))
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path, origin: &Origin) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            "{} is accessible to other users (group or other permission bits are set): run chmod 600 {}",
            origin.describe(),
            path.display()
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &Path, _: &Origin) {}

/// Refuses shapes that are certainly a copy-and-paste mistake, saying how to fix them.
fn check_shape(value: &str, origin: &Origin) -> Result<(), ConfigError> {
    check_text(value, origin, false)
}

/// Like [`check_shape`] for a 2FA password, which the operator chose and may contain spaces.
fn check_password_shape(value: &str, origin: &Origin) -> Result<(), ConfigError> {
    check_text(value, origin, true)
}

/// Refuses the paste mistakes: quotes, a bytes literal, surrounding whitespace, control
/// characters, and (unless `spaces_inside` allows them) whitespace inside.
fn check_text(value: &str, origin: &Origin, spaces_inside: bool) -> Result<(), ConfigError> {
    let fail = |problem: &str| ConfigError::Credential {
        source_name: origin.describe(),
        problem: problem.to_owned(),
    };
    const QUOTES: [char; 7] = [
        '"', '\'', '`', '\u{201c}', '\u{201d}', '\u{2018}', '\u{2019}',
    ];
    let unprefixed = value
        .strip_prefix('b')
        .or_else(|| value.strip_prefix('B'))
        .filter(|rest| rest.starts_with(QUOTES));
    if unprefixed.is_some() {
        return Err(fail(
            "looks like a Python bytes literal (b\"...\"): remove the b and the quotes, keeping only the characters between them",
        ));
    }
    if value.starts_with(QUOTES) || value.ends_with(QUOTES) {
        return Err(fail(
            "is wrapped in quotes (straight or typographic): remove the quotes, keeping only the characters between them",
        ));
    }
    if value.trim() != value {
        return Err(fail(
            "starts or ends with whitespace: remove the spaces around the value",
        ));
    }
    if !spaces_inside && value.chars().any(char::is_whitespace) {
        return Err(fail(
            "contains whitespace inside: copy the value again as one unbroken line",
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(fail("contains control characters: copy the value again"));
    }
    Ok(())
}

/// Reads, checks and decodes the key, the secret and the optional 2FA password.
pub fn load_credentials(
    env: Env<'_>,
    key_file: Option<&Path>,
    secret_file: Option<&Path>,
    otp_file: Option<&Path>,
) -> Result<Credentials, ConfigError> {
    let (key, key_origin) = read_credential(env, "KRAKEN_API_KEY", "api-key", key_file)?.ok_or(
        ConfigError::Missing {
            what: "API key",
            env: "KRAKEN_API_KEY",
            flag: "api-key",
        },
    )?;
    check_shape(&key, &key_origin)?;
    let (secret, secret_origin) =
        read_credential(env, "KRAKEN_API_SECRET", "api-secret", secret_file)?.ok_or(
            ConfigError::Missing {
                what: "API private key",
                env: "KRAKEN_API_SECRET",
                flag: "api-secret",
            },
        )?;
    let secret = SecretText::new(secret);
    let decoded = decode_secret(secret.expose(), &secret_origin)?;
    let otp = match read_credential(env, "KRAKEN_API_OTP", "api-otp", otp_file)? {
        Some((otp, origin)) => {
            check_password_shape(&otp, &origin)?;
            Some(SecretText::new(otp))
        }
        None => None,
    };
    Ok(Credentials {
        key: SecretText::new(key),
        secret: decoded,
        otp,
    })
}

/// Checks the private key's shape and decodes it from base64.
fn decode_secret(text: &str, origin: &Origin) -> Result<ApiSecret, ConfigError> {
    check_shape(text, origin)?;
    let bytes = zeroize::Zeroizing::new(STANDARD.decode(text).map_err(|_| ConfigError::Credential {
        source_name: origin.describe(),
        problem: "is not valid base64: copy the 'Private key' exactly as Kraken showed it when the key was created".into(),
    })?);
    if bytes.len() != SECRET_LEN {
        return Err(ConfigError::Credential {
            source_name: origin.describe(),
            problem: format!(
                "decodes to {} bytes, but a Kraken private key decodes to {SECRET_LEN}: check that you copied the 'Private key', not the API key, and all of it",
                bytes.len()
            ),
        });
    }
    Ok(ApiSecret::from_bytes(bytes.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::collections::HashMap;

    /// 64 bytes of 0x2a, base64.
    const SECRET: &str =
        "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKg==";

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn resolve_with(args: &[&str], pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut argv = vec!["kraken_exporter"];
        argv.extend_from_slice(args);
        resolve(Cli::try_parse_from(argv).unwrap(), &env(pairs))
    }

    fn temp_file(contents: &[u8]) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "kraken-config-test-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::write(&path, contents).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        path
    }

    #[test]
    fn defaults_resolve_with_credentials_from_the_environment() {
        let config = resolve_with(
            &[],
            &[("KRAKEN_API_KEY", "key"), ("KRAKEN_API_SECRET", SECRET)],
        )
        .unwrap();
        assert_eq!(config.accounts[0].name, "default");
        assert_eq!(config.api_url, "https://api.kraken.com");
        assert_eq!(config.web.listen_address.port(), crate::cli::DEFAULT_PORT);
        assert_eq!(config.web.telemetry_path, "/metrics");
        assert_eq!(config.policy.min_interval, Duration::from_secs(10));
        assert_eq!(config.policy.stale_after, Duration::from_secs(300));
        assert_eq!(config.policy.background_interval, None);
        let creds = config.accounts[0].credentials.clone().unwrap();
        assert_eq!(creds.secret.expose(), &[0x2a; 64][..]);
        assert!(creds.otp.is_none());
        assert!(!config.check);
    }

    #[test]
    fn files_from_flags_and_variables_lose_their_trailing_newline() {
        let key = temp_file(b"filekey\n");
        let secret = temp_file(format!("{SECRET}\r\n").as_bytes());
        let otp = temp_file(b"hunter2\n");
        let config = resolve_with(
            &[
                "--kraken.api-key-file",
                key.to_str().unwrap(),
                "--kraken.api-otp-file",
                otp.to_str().unwrap(),
            ],
            &[("KRAKEN_API_SECRET_FILE", secret.to_str().unwrap())],
        )
        .unwrap();
        let creds = config.accounts[0].credentials.clone().unwrap();
        assert_eq!(creds.key.expose(), "filekey");
        assert_eq!(creds.secret.expose().len(), 64);
        assert_eq!(creds.otp.unwrap().expose(), "hunter2");
    }

    #[test]
    fn a_2fa_password_may_hold_spaces_but_not_surrounding_ones() {
        let creds = [("KRAKEN_API_KEY", "k"), ("KRAKEN_API_SECRET", SECRET)];
        let with = |otp: &'static str| {
            let mut pairs = creds.to_vec();
            pairs.push(("KRAKEN_API_OTP", otp));
            resolve_with(&[], &pairs)
        };
        let config = with("correct horse battery").unwrap();
        let otp = config.accounts[0].credentials.clone().unwrap().otp.unwrap();
        assert_eq!(otp.expose(), "correct horse battery");
        let message = with("hunter2 ").unwrap_err().to_string();
        assert!(
            message.contains("KRAKEN_API_OTP") && message.contains("whitespace"),
            "{message}"
        );
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn the_flag_file_overrides_the_variable() {
        let key = temp_file(b"fromflag");
        let config = resolve_with(
            &["--kraken.api-key-file", key.to_str().unwrap()],
            &[("KRAKEN_API_KEY", "fromenv"), ("KRAKEN_API_SECRET", SECRET)],
        )
        .unwrap();
        assert_eq!(
            config.accounts[0].credentials.clone().unwrap().key.expose(),
            "fromflag"
        );
    }

    fn refused(args: &[&str], pairs: &[(&str, &str)]) -> String {
        resolve_with(args, pairs).unwrap_err().to_string()
    }

    #[test]
    fn missing_and_ambiguous_credentials_name_the_variable_and_the_fix() {
        let msg = refused(&[], &[("KRAKEN_API_SECRET", SECRET)]);
        assert!(
            msg.contains("KRAKEN_API_KEY") && msg.contains("--demo"),
            "{msg}"
        );
        let msg = refused(&[], &[("KRAKEN_API_KEY", "k")]);
        assert!(msg.contains("KRAKEN_API_SECRET_FILE"), "{msg}");
        let msg = refused(
            &[],
            &[
                ("KRAKEN_API_KEY", "k"),
                ("KRAKEN_API_SECRET", SECRET),
                ("KRAKEN_API_SECRET_FILE", "/x"),
            ],
        );
        assert!(msg.contains("keep only one"), "{msg}");
    }

    #[test]
    fn malformed_secrets_are_refused_without_showing_them() {
        let cases: &[(&str, &str)] = &[
            ("bm90IGJhc2U2NA$$$", "not valid base64"),
            (
                "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
                "decodes to 32 bytes",
            ),
            (
                "KioqKioq KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKg==",
                "whitespace inside",
            ),
            (
                "b\"KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKg==\"",
                "bytes literal",
            ),
            (
                "\u{201c}KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKg==\u{201d}",
                "quotes",
            ),
            (
                "'KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKg=='",
                "quotes",
            ),
            (
                " KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKg==",
                "whitespace",
            ),
        ];
        for (secret, expected) in cases {
            let msg = refused(
                &[],
                &[("KRAKEN_API_KEY", "k"), ("KRAKEN_API_SECRET", secret)],
            );
            assert!(msg.contains(expected), "{secret:?}: {msg}");
            assert!(msg.contains("KRAKEN_API_SECRET"), "{msg}");
            assert!(
                !msg.contains("Kioq") && !msg.contains("AQEB") && !msg.contains("bm90"),
                "{msg}"
            );
        }
    }

    #[test]
    fn an_unreadable_secret_file_names_the_file_and_the_flag() {
        let msg = refused(
            &["--kraken.api-secret-file", "/nonexistent/secret"],
            &[("KRAKEN_API_KEY", "k")],
        );
        assert!(
            msg.contains("/nonexistent/secret") && msg.contains("--kraken.api-secret-file"),
            "{msg}"
        );
        assert!(msg.contains("cannot be read"), "{msg}");
    }

    #[test]
    fn demo_needs_no_credentials() {
        let config = resolve_with(&["--demo"], &[]).unwrap();
        assert!(config.demo && config.accounts[0].credentials.is_none());
    }

    #[test]
    fn check_subcommand_takes_global_flags_on_either_side() {
        assert!(resolve_with(&["check", "--demo"], &[]).unwrap().check);
        assert!(resolve_with(&["--demo", "check"], &[]).unwrap().check);
    }

    #[test]
    fn web_and_url_flags_are_validated() {
        let creds = [("KRAKEN_API_KEY", "k"), ("KRAKEN_API_SECRET", SECRET)];
        let config = resolve_with(
            &[
                "--web.listen-address",
                "127.0.0.1:0",
                "--kraken.api-url",
                "http://127.0.0.1:8080/",
            ],
            &creds,
        )
        .unwrap();
        assert_eq!(config.web.listen_address, "127.0.0.1:0".parse().unwrap());
        assert_eq!(config.api_url, "http://127.0.0.1:8080");
        assert!(
            refused(&["--web.listen-address", "nonsense"], &creds).contains("--web.listen-address")
        );
        assert!(
            refused(&["--web.telemetry-path", "metrics"], &creds).contains("--web.telemetry-path")
        );
        assert!(
            refused(&["--web.telemetry-path", "/-/ready"], &creds).contains("--web.telemetry-path")
        );
        assert!(
            refused(&["--kraken.api-url", "http://kraken.example"], &creds).contains("use https")
        );
        assert!(refused(&["--kraken.api-url", "api.kraken.com"], &creds).contains("is not a URL"));
        assert!(refused(&["--kraken.timeout", "0s"], &creds).contains("--kraken.timeout"));
    }

    #[test]
    fn durations_are_parsed_from_flags() {
        let config = resolve_with(
            &[
                "--demo",
                "--refresh.min-interval",
                "30s",
                "--refresh.interval",
                "1m",
                "--refresh.stale-after",
                "1h",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(config.policy.min_interval, Duration::from_secs(30));
        assert_eq!(
            config.policy.background_interval,
            Some(Duration::from_secs(60))
        );
        assert_eq!(config.policy.stale_after, Duration::from_secs(3600));
        let mut argv = vec!["kraken_exporter", "--refresh.min-interval", "10"];
        argv.push("--demo");
        let err = Cli::try_parse_from(argv).unwrap_err().to_string();
        assert!(err.contains("without a unit"), "{err}");
    }
}
