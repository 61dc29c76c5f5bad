//! One validated configuration, resolved once from flags, the config file, environment
//! variables and credential files.
//!
//! Owns precedence (a flag given on the command line overrides the file, the file overrides the
//! default), credential loading (environment variable or file) and every check of a
//! credential's shape, of the accounts, the listen address, the telemetry path and the API URL.
//! Must not: put any part of a credential into an error, a log line or `Debug` output; errors
//! name the variable, file or field and the fix instead.

//!
//! # Layout
//!
//! - this file: the validated types ([`Config`] and its parts), [`ConfigError`], and
//!   [`resolve`], which picks the mode (one account from flags, or accounts from the file);
//! - [`file`](mod@file): the YAML schema as written;
//! - `flags`: the settings shared by both modes, resolved flag over file over default;
//! - `accounts`: the account of one-account mode, and every account of the file;
//! - `credentials`: the one pipeline every credential goes through (find, read, check, decode);
//! - `thresholds`: minimums and watched assets from the file, the flags or the environment,
//!   their names normalised and their spellings merged;
//! - `validate`: the checks of names, URLs, durations, the listen address and the telemetry path;
//! - `web_file`: the web configuration file (`--web.config.file`: TLS, client certificates,
//!   basic auth, rate limit, headers), read and checked with the rest of the configuration so
//!   that `config` never depends on `web`; the web server applies what it loads.

pub mod file;

mod accounts;
mod credentials;
mod flags;
mod thresholds;
mod validate;
mod web_file;

pub use web_file::{WebConfigError, WebSecurity};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::account::RefreshPolicy;
use crate::audit::KeyPolicy;
use crate::cli::{Cli, Command, Flags};
use crate::features::stream::StreamMode;
use crate::problem::{Problem, list};
use file::FileConfig;
use kraken::BalanceEndpoint;
use kraken::secret::Credentials;

/// Length of a decoded Kraken private key.
pub(crate) const SECRET_LEN: usize = 64;

/// Default base URL of Kraken's REST API.
pub(crate) const DEFAULT_API_URL: &str = "https://api.kraken.com";

/// Default per-request timeout.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Default interval of the key-permission audit.
pub(crate) const DEFAULT_AUDIT_INTERVAL: Duration = Duration::from_secs(6 * 3600);

/// Default interval of deposits and withdrawals in flight: each fetch costs two calls of the
/// key's rate budget, and a deposit takes minutes to hours.
pub(crate) const DEFAULT_FUNDING_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// Default interval of the Earn allocations: they change by the day, and each fetch costs one
/// call of the key's rate budget.
pub(crate) const DEFAULT_EARN_INTERVAL: Duration = Duration::from_secs(10 * 60);

/// Everything the exporter needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Run `check` once instead of serving.
    pub check: bool,
    /// `check --strict`: a key hygiene finding fails the check too.
    pub check_strict: bool,
    /// Validate the configuration and exit (`--config.check`).
    pub check_config: bool,
    /// Use the built-in simulated Kraken; credentials are then `None`.
    pub(crate) demo: bool,
    /// The config file, when accounts come from one; re-read on reload.
    pub(crate) config_file: Option<PathBuf>,
    /// The accounts to export, in the order written.
    pub accounts: Vec<AccountConfig>,
    /// Base URL of Kraken's REST API, without trailing slash.
    pub(crate) api_url: String,
    /// Upper bound on one call.
    pub(crate) timeout: Duration,
    /// When Kraken is called.
    pub policy: RefreshPolicy,
    /// The key-permission audit.
    pub(crate) audit: AuditConfig,
    /// Earn allocations.
    pub(crate) earn: EarnConfig,
    /// Prices in a quote currency.
    pub(crate) valuation: ValuationConfig,
    /// Kraken's WebSocket balances stream.
    pub(crate) stream: StreamConfig,
    /// Deposits and withdrawals in flight.
    pub(crate) funding: FundingConfig,
    /// The HTTP front.
    pub web: WebConfig,
}

/// One Kraken account.
#[derive(Debug, Clone)]
pub struct AccountConfig {
    /// The `account` label.
    pub name: String,
    /// Key, secret and optional 2FA password; `None` in demo mode, where the simulated Kraken
    /// generates them.
    pub(crate) credentials: Option<Credentials>,
    /// Which endpoint returns balances.
    pub(crate) balance_endpoint: BalanceEndpoint,
    /// Base URL for this account's private calls; `None` uses [`Config::api_url`].
    pub(crate) api_url: Option<String>,
    /// Where the nonce high-water mark is kept across restarts.
    pub(crate) nonce_file: Option<PathBuf>,
    /// Asset name → lowest acceptable available balance (`kraken_balance_min`). Names are
    /// normalised without the network (`btc` and `XXBT` are `XBT`); the running exporter
    /// resolves them against Kraken's Assets list.
    pub min_balance: BTreeMap<String, f64>,
    /// Asset names exported as 0 when Kraken omits them, normalised like `min_balance`.
    pub(crate) watch: Vec<String>,
    /// Asset name → largest expected withdrawal amount per hour (`kraken_outflow_max`; 0: no
    /// withdrawal expected), normalised like `min_balance`.
    pub(crate) max_outflow: BTreeMap<String, f64>,
    /// Quote currency (`USD`) → lowest acceptable total value of the account in it
    /// (`kraken_account_value_min`); only the quote of `valuation.quote` is accepted.
    pub(crate) min_value: BTreeMap<String, f64>,
    /// What the key may hold and when it is due for rotation: what the key is for decides what is
    /// risky (`allowed_permissions`, `--audit.rotation-days`).
    pub(crate) key_policy: KeyPolicy,
    /// Whether the key is audited (`audit.enabled`): `kraken_api_key_permission_allowed` is
    /// exported only beside the audit it qualifies.
    pub(crate) audited: bool,
}

impl AccountConfig {
    /// The thresholds and watched assets as `--config.check` prints them: `min_balance XBT=0.5,
    /// USD=1000; watch ETH`, or `no min_balance` (low-balance alerts need one).
    pub fn thresholds_summary(&self) -> String {
        let mins: Vec<String> = self
            .min_balance
            .iter()
            .map(|(asset, min)| format!("{asset}={min}"))
            .collect();
        let mut text = if mins.is_empty() {
            "no min_balance (no low-balance alert can fire for it)".to_owned()
        } else {
            format!("min_balance {}", mins.join(", "))
        };
        if !self.watch.is_empty() {
            text.push_str(&format!("; watch {}", self.watch.join(", ")));
        }
        for (quote, min) in &self.min_value {
            text.push_str(&format!("; min_value {quote}={min}"));
        }
        if self.key_policy.allowed != KeyPolicy::default().allowed {
            let allowed: Vec<&str> = self.key_policy.allowed.iter().map(String::as_str).collect();
            text.push_str(&format!("; key may hold {}", allowed.join(", ")));
        }
        text
    }
}

impl AccountConfig {
    /// Whether `other` talks to Kraken exactly as this one does (same key, secret, 2FA password,
    /// endpoint and nonce file), so a reload can keep the running account, its nonces and its
    /// cached balances.
    pub(crate) fn same_connection(&self, other: &AccountConfig) -> bool {
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
pub(crate) struct AuditConfig {
    /// Whether keys are audited at all.
    pub(crate) enabled: bool,
    /// How often each key is audited again.
    pub(crate) interval: Duration,
    /// A key older than this many days is due for rotation (`--audit.rotation-days`).
    pub(crate) rotation_days: u64,
}

/// Kraken's WebSocket balances stream (`kraken_ledger_*`, `kraken_stream_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamConfig {
    /// Whether it runs.
    pub(crate) mode: StreamMode,
    /// Its WebSocket v2 URL.
    pub(crate) url: String,
}

/// Deposits and withdrawals in flight (`kraken_deposit_in_flight`,
/// `kraken_withdrawal_in_flight`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FundingConfig {
    /// Whether they are fetched.
    pub(crate) enabled: bool,
    /// How often.
    pub(crate) interval: Duration,
}

/// Earn allocations (`kraken_earn_allocation`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EarnConfig {
    /// Whether Earn/Allocations is called at all.
    pub(crate) enabled: bool,
    /// How often each account's allocations are fetched again.
    pub(crate) interval: Duration,
}

/// Prices in a quote currency.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ValuationConfig {
    /// Kraken's short name of the quote currency (`USD`); `None` turns prices off.
    pub(crate) quote: Option<String>,
    /// Collect TradeBalance's equivalent balance per account.
    pub(crate) trade_balance: bool,
}

/// The HTTP front.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Where to listen.
    pub listen_address: SocketAddr,
    /// Path of the exposition.
    pub(crate) telemetry_path: String,
    /// What that file configures (TLS, client certificates, basic auth, headers), loaded and
    /// validated; applied at start-up only.
    pub(crate) security: Option<Arc<WebSecurity>>,
    /// `--web.enable-lifecycle`: `POST /-/reload` reloads; otherwise it answers 403.
    pub(crate) enable_lifecycle: bool,
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
    WebConfig(#[from] WebConfigError),
}

/// The environment, looked up by name; injected so tests control it.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Resolves the command line, the config file it names and the environment into a validated
/// configuration.
pub fn resolve(cli: Cli, env: Env<'_>) -> Result<Config, ConfigError> {
    let (check, strict) = match cli.command {
        Some(Command::Check { strict }) => (true, strict),
        _ => (false, false),
    };
    let mut config = resolve_flags(&cli.flags, check, env)?;
    config.check_strict = strict;
    Ok(config)
}

/// Like [`resolve`], from flags alone (what a reload re-runs).
pub(crate) fn resolve_flags(
    flags: &Flags,
    check: bool,
    env: Env<'_>,
) -> Result<Config, ConfigError> {
    let mut config = match &flags.config_file {
        Some(path) => resolve_file_mode(flags, path, env)?,
        None => {
            let account = accounts::from_flags(flags, env)?;
            let config = flags::base_config(flags, None, vec![account], &mut Vec::new())?;
            if let Some(problem) = value_quote_problems(&config).into_iter().next() {
                return Err(ConfigError::Flag {
                    flag: "--value.min",
                    problem: problem.message,
                });
            }
            config
        }
    };
    config.check = check;
    for account in &mut config.accounts {
        account.key_policy.rotation_days = config.audit.rotation_days;
        account.audited = config.audit.enabled;
    }
    Ok(config)
}

/// `min_value` is compared with the account's value in the quote of `valuation.quote`: a minimum
/// in another quote, or without prices, could never be compared. One problem per such minimum,
/// placed at its account's field.
fn value_quote_problems(config: &Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (index, account) in config.accounts.iter().enumerate() {
        for quote in account.min_value.keys() {
            let fix = match &config.valuation.quote {
                Some(priced) if crate::asset_names::normalise_offline(priced) == *quote => continue,
                Some(priced) => format!(
                    "prices are in {priced} (valuation.quote), so a minimum in {quote} is never compared: give the minimum in {priced}"
                ),
                None => format!(
                    "prices are off, so the account's value is unknown: set valuation.quote (or --valuation.quote) to {quote}"
                ),
            };
            problems.push(Problem {
                place: format!("accounts[{index}] ({}).min_value.{quote}", account.name),
                message: fix,
            });
        }
    }
    problems
}

/// Accounts from the config file at `path`; every mistake in it is reported at once.
fn resolve_file_mode(flags: &Flags, path: &Path, env: Env<'_>) -> Result<Config, ConfigError> {
    let (file, mut problems) = read_file(path)?;
    refuse_single_account_flags(flags)?;
    thresholds::refuse_env_with_file(env)?;
    let accounts = accounts::from_file(&file, path, flags.demo, env, &mut problems);
    let mut config = flags::base_config(flags, Some(&file), accounts, &mut problems)?;
    problems.extend(value_quote_problems(&config));
    if !problems.is_empty() {
        return Err(ConfigError::File {
            path: path.to_owned(),
            problems,
        });
    }
    config.config_file = Some(path.to_owned());
    Ok(config)
}

/// The flags of one-account mode have no meaning with a config file: each account sets its own.
fn refuse_single_account_flags(flags: &Flags) -> Result<(), ConfigError> {
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
        ("--balance.min", !flags.balance_min.is_empty()),
        ("--outflow.max", !flags.outflow_max.is_empty()),
        ("--balance.watch", !flags.balance_watch.is_empty()),
        ("--value.min", !flags.value_min.is_empty()),
        (
            "--key.allowed-permissions",
            flags.allowed_permissions.is_some(),
        ),
    ] {
        if given {
            return Err(ConfigError::Flag {
                flag,
                problem:
                    "applies only without --config.file: set it per account in the file instead"
                        .into(),
            });
        }
    }
    Ok(())
}

/// The file's settings as far as they can be read, with the mistakes that kept the rest from
/// being read (listed with every other mistake).
fn read_file(path: &Path) -> Result<(FileConfig, Vec<Problem>), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::FileRead {
        path: path.to_owned(),
        kind: e.kind(),
    })?;
    Ok(file::parse_all(&text))
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

    #[test]
    fn earn_is_on_every_10m_by_default_and_follows_its_flags_and_the_file() {
        let creds = [("KRAKEN_API_KEY", "k"), ("KRAKEN_API_SECRET", SECRET)];
        let config = resolve_with(&[], &creds).unwrap();
        assert_eq!(
            config.earn,
            EarnConfig {
                enabled: true,
                interval: Duration::from_secs(600)
            }
        );
        let config = resolve_with(&["--earn.disabled", "--earn.interval", "1h"], &creds).unwrap();
        assert!(!config.earn.enabled);
        assert_eq!(config.earn.interval, Duration::from_secs(3600));
        let message = resolve_with(&["--earn.interval", "30s"], &creds)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("--earn.interval") && message.contains("at least 1m"),
            "{message}"
        );
        let file = temp_file(
            b"earn: {enabled: false, interval: 30m}\naccounts:\n  - name: a\n    key_env: K\n    secret_env: S\n",
        );
        let config = resolve_with(
            &["--config.file", file.to_str().unwrap()],
            &[("K", "k"), ("S", SECRET)],
        )
        .unwrap();
        assert_eq!(
            config.earn,
            EarnConfig {
                enabled: false,
                interval: Duration::from_secs(1800)
            }
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
                "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKg",
                "missing its '=' padding",
            ),
            (
                "\u{feff}KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKg==",
                "byte-order mark",
            ),
            (
                "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioq\u{200b}KioqKioqKioqKioqKioqKioqKioqKioqKioqKg==",
                "zero-width",
            ),
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
    fn the_file_spells_balance_endpoints_as_the_flag_does() {
        for name in ["auto", "balance-ex", "balance"] {
            let flag = resolve_with(&["--demo", "--kraken.balance-endpoint", name], &[]).unwrap();
            let file = temp_file(
                format!("accounts:\n  - name: a\n    balance_endpoint: {name}\n").as_bytes(),
            );
            let from_file =
                resolve_with(&["--demo", "--config.file", file.to_str().unwrap()], &[]).unwrap();
            assert_eq!(
                flag.accounts[0].balance_endpoint, from_file.accounts[0].balance_endpoint,
                "{name}"
            );
        }
        let file = temp_file(b"accounts:\n  - name: a\n    balance_endpoint: Balance\n");
        let refused = refused(&["--demo", "--config.file", file.to_str().unwrap()], &[]);
        assert!(
            refused.contains("is not one of auto, balance-ex, balance"),
            "{refused}"
        );
    }

    #[test]
    fn an_api_url_with_a_path_is_refused_from_the_flag_and_the_file() {
        let creds = [("KRAKEN_API_KEY", "k"), ("KRAKEN_API_SECRET", SECRET)];
        let from_flag = refused(
            &["--kraken.api-url", "http://127.0.0.1:8080/0/private"],
            &creds,
        );
        assert!(from_flag.contains("--kraken.api-url"), "{from_flag}");
        assert!(
            from_flag.contains("give the base URL only, like https://api.kraken.com"),
            "{from_flag}"
        );
        let file = temp_file(
            b"kraken: {api_url: \"https://api.kraken.com/?pair=x\"}\naccounts:\n  - name: a\n    api_url: http://127.0.0.1:8080/0/private\n",
        );
        let from_file = refused(&["--demo", "--config.file", file.to_str().unwrap()], &[]);
        assert!(
            from_file.contains("accounts[0] (a).api_url") && from_file.contains("kraken.api_url"),
            "{from_file}"
        );
        assert!(from_file.contains("give the base URL only"), "{from_file}");
    }

    #[test]
    fn both_modes_check_a_credential_with_the_same_words() {
        let short = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
        let pairs = [("KRAKEN_API_KEY", "k"), ("KRAKEN_API_SECRET", short)];
        let one_account = refused(&[], &pairs);
        let file = temp_file(
            b"accounts:\n  - name: a\n    key_env: KRAKEN_API_KEY\n    secret_env: KRAKEN_API_SECRET\n",
        );
        let from_file = refused(&["--config.file", file.to_str().unwrap()], &pairs);
        assert!(one_account.contains("decodes to 32 bytes"), "{one_account}");
        // One-account mode writes `source: problem`; the file's list puts the field first.
        let sentence = one_account.replacen(": ", " ", 1);
        assert!(
            from_file.contains(&format!("accounts[0] (a).secret_env: {sentence}")),
            "{from_file}"
        );
        assert!(!from_file.contains("AQEB"), "{from_file}");
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

    #[test]
    fn thresholds_come_from_flags_else_the_environment_in_any_spelling() {
        let creds = [("KRAKEN_API_KEY", "k"), ("KRAKEN_API_SECRET", SECRET)];
        let mut with_env = creds.to_vec();
        with_env.extend([
            ("KRAKEN_BALANCE_MIN", "btc=0.5, USD=1000"),
            ("KRAKEN_BALANCE_WATCH", "XETH,doge"),
        ]);
        let from_env = resolve_with(&[], &with_env).unwrap();
        let account = &from_env.accounts[0];
        assert_eq!(
            account.min_balance,
            BTreeMap::from([("USD".to_owned(), 1000.0), ("XBT".to_owned(), 0.5)])
        );
        assert_eq!(account.watch, ["ETH", "XDG"]);
        assert_eq!(
            account.thresholds_summary(),
            "min_balance USD=1000, XBT=0.5; watch ETH, XDG"
        );

        // A flag replaces the variable of the same kind, it is not merged with it.
        let flags = resolve_with(
            &["--balance.min", "XXBT=2", "--balance.min", "eth=1"],
            &with_env,
        )
        .unwrap();
        let account = &flags.accounts[0];
        assert_eq!(
            account.min_balance,
            BTreeMap::from([("ETH".to_owned(), 1.0), ("XBT".to_owned(), 2.0)])
        );
        assert_eq!(
            account.watch,
            ["ETH", "XDG"],
            "the watch variable still applies"
        );

        let mut empty = creds.to_vec();
        empty.extend([("KRAKEN_BALANCE_MIN", " "), ("KRAKEN_BALANCE_WATCH", "")]);
        let blank = resolve_with(&[], &empty).unwrap();
        assert!(
            blank.accounts[0].min_balance.is_empty() && blank.accounts[0].watch.is_empty(),
            "an empty variable counts as unset"
        );
        let none = resolve_with(&[], &creds).unwrap();
        assert!(none.accounts[0].min_balance.is_empty());
        assert!(
            none.accounts[0]
                .thresholds_summary()
                .contains("no min_balance")
        );
    }

    #[test]
    fn bad_thresholds_name_the_flag_or_variable_and_the_fix() {
        let creds = [("KRAKEN_API_KEY", "k"), ("KRAKEN_API_SECRET", SECRET)];
        let message = refused(&["--balance.min", "XBT"], &creds);
        assert!(
            message.starts_with("--balance.min") && message.contains("ASSET=AMOUNT"),
            "{message}"
        );
        let message = refused(&["--balance.min", "XBT=-1"], &creds);
        assert!(message.contains("at least 0"), "{message}");
        let message = refused(
            &["--balance.min", "BTC=0.5", "--balance.min", "xbt=0.1"],
            &creds,
        );
        assert!(
            message.contains("\"BTC\" and \"xbt\" both name XBT"),
            "{message}"
        );
        let mut env = creds.to_vec();
        env.push(("KRAKEN_BALANCE_MIN", "XBT=lots"));
        let message = refused(&[], &env);
        assert!(
            message.starts_with("KRAKEN_BALANCE_MIN") && message.contains("not a balance"),
            "{message}"
        );
        let message = refused(&["--balance.watch", " "], &creds);
        assert!(message.contains("empty asset name"), "{message}");
    }

    #[test]
    fn thresholds_outside_the_file_are_refused_next_to_a_config_file() {
        let file = temp_file(b"accounts:\n  - name: hot\n    min_balance: {XBT: 1}\n");
        let path = file.to_str().unwrap();
        let message = refused(
            &["--demo", "--config.file", path, "--balance.min", "XBT=1"],
            &[],
        );
        assert!(
            message.contains("--balance.min") && message.contains("only without --config.file"),
            "{message}"
        );
        let message = refused(
            &["--demo", "--config.file", path],
            &[("KRAKEN_BALANCE_WATCH", "XBT")],
        );
        assert!(
            message.contains("KRAKEN_BALANCE_WATCH") && message.contains("per account in the file"),
            "{message}"
        );
    }

    #[test]
    fn the_file_merges_spellings_of_one_asset_and_refuses_disagreeing_minimums() {
        let file = temp_file(
            b"accounts:\n  - name: hot\n    min_balance: {BTC: 0.5, xbt: 0.5, usd: 10}\n    watch: [eth, XETH]\n",
        );
        let config =
            resolve_with(&["--demo", "--config.file", file.to_str().unwrap()], &[]).unwrap();
        let account = &config.accounts[0];
        assert_eq!(
            account.min_balance,
            BTreeMap::from([("USD".to_owned(), 10.0), ("XBT".to_owned(), 0.5)])
        );
        assert_eq!(account.watch, ["ETH"]);
        let file = temp_file(
            b"accounts:\n  - name: hot\n    min_balance: {BTC: 0.5, xbt: 0.1, XXBT: 0.2}\n",
        );
        let message = refused(&["--demo", "--config.file", file.to_str().unwrap()], &[]);
        assert!(
            message.contains("accounts[0] (hot).min_balance")
                && message.contains("both name XBT, with different minimums"),
            "{message}"
        );
    }

    #[test]
    fn the_demo_has_thresholds_unless_others_are_given() {
        let demo = resolve_with(&["--demo"], &[]).unwrap();
        let account = &demo.accounts[0];
        assert_eq!(account.min_balance.len(), 3);
        assert_eq!(account.min_balance["USD"], 30_000.0);
        assert_eq!(account.watch, ["USDC"]);
        let own = resolve_with(&["--demo", "--balance.watch", "ETH"], &[]).unwrap();
        assert!(own.accounts[0].min_balance.is_empty());
        assert_eq!(own.accounts[0].watch, ["ETH"]);
    }

    #[test]
    fn allowed_permissions_come_from_the_file_or_the_flag_and_unknown_names_are_refused() {
        let file = temp_file(
            b"accounts:\n  - name: hot\n    allowed_permissions: [funds_query, funds_withdraw]\n  - name: cold\n",
        );
        let config =
            resolve_with(&["--demo", "--config.file", file.to_str().unwrap()], &[]).unwrap();
        let allowed = |i: usize| -> Vec<String> {
            config.accounts[i]
                .key_policy
                .allowed
                .iter()
                .cloned()
                .collect()
        };
        assert_eq!(allowed(0), ["funds_query", "funds_withdraw"]);
        assert_eq!(
            allowed(1),
            ["funds_query", "ledger_query", "websocket"],
            "the default, with the ledger the demo's simulated key reads"
        );
        assert!(config.accounts.iter().all(|a| a.audited));
        assert_eq!(config.accounts[0].key_policy.rotation_days, 90);

        let flag = resolve_with(
            &[
                "--demo",
                "--key.allowed-permissions",
                "funds_query, orders_create",
            ],
            &[("KRAKEN_KEY_ALLOWED_PERMISSIONS", "funds_query")],
        )
        .unwrap();
        assert_eq!(
            flag.accounts[0].key_policy.allowed,
            ["funds_query", "orders_create"].map(str::to_owned).into()
        );
        let env = resolve_with(
            &["--demo"],
            &[("KRAKEN_KEY_ALLOWED_PERMISSIONS", "funds_query,funds_earn")],
        )
        .unwrap();
        assert!(env.accounts[0].key_policy.allowed.contains("funds_earn"));

        let message = refused(
            &[
                "--demo",
                "--key.allowed-permissions",
                "funds_query,withdraw-funds,fly",
            ],
            &[],
        );
        assert!(
            message.starts_with("--key.allowed-permissions"),
            "{message}"
        );
        assert!(
            message.contains("\"withdraw-funds\" is not a permission name (write funds_withdraw"),
            "{message}"
        );
        assert!(
            message.contains(
                "\"fly\" is not a permission name: use funds_query, funds_deposit, funds_withdraw"
            ),
            "{message}"
        );
        let message = refused(&["--demo", "--key.allowed-permissions", "websocket"], &[]);
        assert!(message.contains("leaves out funds_query"), "{message}");

        let file = temp_file(b"accounts:\n  - name: hot\n    allowed_permissions: [query-funds]\n");
        let message = refused(&["--demo", "--config.file", file.to_str().unwrap()], &[]);
        assert!(
            message.contains("accounts[0] (hot).allowed_permissions: \"query-funds\" is not a permission name (write funds_query"),
            "{message}"
        );
        let path = file.to_str().unwrap();
        let message = refused(
            &[
                "--demo",
                "--config.file",
                path,
                "--key.allowed-permissions",
                "funds_query",
            ],
            &[],
        );
        assert!(message.contains("only without --config.file"), "{message}");
        let message = refused(
            &["--demo", "--config.file", path],
            &[("KRAKEN_KEY_ALLOWED_PERMISSIONS", "funds_query")],
        );
        assert!(
            message.contains("set allowed_permissions per account"),
            "{message}"
        );
    }

    #[test]
    fn the_rotation_age_comes_from_the_flag_or_the_file() {
        let config = resolve_with(&["--demo", "--audit.rotation-days", "30"], &[]).unwrap();
        assert_eq!(config.accounts[0].key_policy.rotation_days, 30);
        let file =
            temp_file(b"audit: {rotation_days: 45, enabled: false}\naccounts:\n  - name: a\n");
        let config =
            resolve_with(&["--demo", "--config.file", file.to_str().unwrap()], &[]).unwrap();
        assert_eq!(config.accounts[0].key_policy.rotation_days, 45);
        assert!(!config.accounts[0].audited);
        let message = refused(&["--demo", "--audit.rotation-days", "0"], &[]);
        assert!(message.contains("at least 1 day"), "{message}");
    }

    #[test]
    fn quoted_amounts_are_accepted_and_a_decimal_comma_is_refused_with_the_fix() {
        let file = temp_file(
            b"valuation: {quote: USD}\naccounts:\n  - name: hot\n    min_balance: {ETH: \"0.5\", XBT: ' 2 ', USD: 100}\n    min_value: {usd: \"10000\"}\n",
        );
        let config =
            resolve_with(&["--demo", "--config.file", file.to_str().unwrap()], &[]).unwrap();
        let account = &config.accounts[0];
        assert_eq!(
            account.min_balance,
            BTreeMap::from([
                ("ETH".to_owned(), 0.5),
                ("USD".to_owned(), 100.0),
                ("XBT".to_owned(), 2.0)
            ])
        );
        assert_eq!(
            account.min_value,
            BTreeMap::from([("USD".to_owned(), 10_000.0)])
        );

        let file = temp_file(
            b"accounts:\n  - name: hot\n    min_balance: {ETH: \"0,5\", XBT: \"1,000\", DOT: \"lots\", USD: -1}\n",
        );
        let message = refused(&["--demo", "--config.file", file.to_str().unwrap()], &[]);
        assert!(
            message.starts_with("config file") && message.contains("4 problems"),
            "{message}"
        );
        assert!(
            message.contains("accounts[0] (hot).min_balance.ETH: is written with a decimal comma: write 0.5, with a point"),
            "{message}"
        );
        assert!(
            message.contains("write 1000 (no thousands separator) or 1.000"),
            "{message}"
        );
        assert!(
            message.contains("min_balance.DOT: is not a number"),
            "{message}"
        );
        assert!(
            message.contains("min_balance.USD: -1 is not an amount"),
            "{message}"
        );
        let message = refused(&["--demo", "--balance.min", "ETH=0,5"], &[]);
        assert!(message.contains("decimal comma"), "{message}");
    }

    #[test]
    fn every_mistake_of_the_file_is_listed_at_once() {
        let file = temp_file(
            b"refresh: {min_interval: 10}\nvaluation: {quote: USD}\naccounts:\n  - name: hot\n    min_balance: [XBT]\n  - name: cold\n    secret_fil: /x\n  - name: warm\n    min_balance: {XBT: \"0,5\"}\n    allowed_permissions: [everything]\n  - name: warm\n",
        );
        let message = refused(&["--demo", "--config.file", file.to_str().unwrap()], &[]);
        for expected in [
            "refresh.min_interval (line 1",
            "accounts[0] (hot).min_balance: invalid type: sequence, expected a map",
            "accounts[1] (cold).secret_fil: unknown field `secret_fil`",
            "accounts[2] (warm).min_balance.XBT: is written with a decimal comma",
            "accounts[2] (warm).allowed_permissions: \"everything\" is not a permission name",
            "accounts[3] (warm).name: \"warm\" is used by another account",
        ] {
            assert!(
                message.contains(expected),
                "{expected:?} missing from:\n{message}"
            );
        }
        assert!(message.contains("6 problems"), "{message}");
    }

    #[test]
    fn a_minimum_value_needs_prices_in_its_quote() {
        let config = resolve_with(
            &[
                "--demo",
                "--value.min",
                "USD=10000",
                "--valuation.quote",
                "usd",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(
            config.accounts[0].min_value,
            BTreeMap::from([("USD".to_owned(), 10_000.0)])
        );
        let creds = [("KRAKEN_API_KEY", "k"), ("KRAKEN_API_SECRET", SECRET)];
        let message = refused(&["--value.min", "USD=10000"], &creds);
        assert!(
            message.starts_with("--value.min")
                && message.contains("set valuation.quote (or --valuation.quote) to USD"),
            "{message}"
        );
        let mut env = creds.to_vec();
        env.push(("KRAKEN_VALUE_MIN", "EUR=5000"));
        let message = refused(&["--valuation.quote", "USD"], &env);
        assert!(message.contains("give the minimum in USD"), "{message}");
        let file = temp_file(b"accounts:\n  - name: hot\n    min_value: {EUR: 1}\n");
        let message = refused(&["--demo", "--config.file", file.to_str().unwrap()], &[]);
        assert!(
            message.contains("accounts[0] (hot).min_value.EUR: prices are in USD"),
            "the demo prices in USD: {message}"
        );
        let message = refused(
            &[
                "--demo",
                "--config.file",
                file.to_str().unwrap(),
                "--value.min",
                "EUR=1",
            ],
            &[],
        );
        assert!(message.contains("--value.min"), "{message}");
    }

    #[test]
    fn the_demo_prices_in_dollars_and_has_a_minimum_value() {
        let demo = resolve_with(&["--demo"], &[]).unwrap();
        assert_eq!(demo.valuation.quote.as_deref(), Some("USD"));
        assert_eq!(demo.accounts[0].min_value["USD"], 100_000.0);
        let euro = resolve_with(&["--demo", "--valuation.quote", "EUR"], &[]).unwrap();
        assert!(euro.accounts[0].min_value.is_empty());
        let creds = [("KRAKEN_API_KEY", "k"), ("KRAKEN_API_SECRET", SECRET)];
        let real = resolve_with(&[], &creds).unwrap();
        assert_eq!(
            real.valuation.quote, None,
            "prices stay off outside the demo"
        );
        assert!(real.accounts[0].min_value.is_empty());
    }

    #[test]
    fn a_newline_in_a_secret_is_called_a_newline() {
        let creds = |secret: &str| {
            refused(
                &[],
                &[("KRAKEN_API_KEY", "k"), ("KRAKEN_API_SECRET", secret)],
            )
        };
        let trailing = creds(&format!("{SECRET}\n"));
        assert!(trailing.contains("ends with a newline"), "{trailing}");
        assert!(!trailing.contains("spaces"), "{trailing}");
        let inside = creds(&format!("{}\r\n{}", &SECRET[..40], &SECRET[40..]));
        assert!(inside.contains("contains a line break inside"), "{inside}");
        let file = temp_file(format!("\n{SECRET}\n").as_bytes());
        let from_file = refused(
            &["--kraken.api-secret-file", file.to_str().unwrap()],
            &[("KRAKEN_API_KEY", "k")],
        );
        assert!(from_file.contains("newline"), "{from_file}");
        assert!(!from_file.contains("Kioq"), "{from_file}");
    }
}
