//! One validated configuration, resolved once from flags, environment variables and files.
//!
//! Owns credential loading (environment variable or file, flag overriding variable) and every
//! check of a credential's shape, the listen address, the telemetry path and the API URL.
//! Must not: put any part of a credential into an error, a log line or `Debug` output; errors
//! name the variable or file and the fix instead.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::cli::{Cli, Command, LogFormat, LogLevel};
use crate::kraken::BalanceEndpoint;
use crate::refresh::RefreshPolicy;
use crate::secret::{ApiSecret, Credentials, SecretText};

/// Length of a decoded Kraken private key.
pub const SECRET_LEN: usize = 64;

/// Everything the exporter needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Run `check` once instead of serving.
    pub check: bool,
    /// Use the built-in simulated Kraken; `credentials` is then `None`.
    pub demo: bool,
    /// The account this process exports.
    pub account: AccountConfig,
    /// When Kraken is called.
    pub policy: RefreshPolicy,
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
    /// Base URL of Kraken's REST API, without trailing slash.
    pub api_url: String,
    /// Upper bound on one call.
    pub timeout: Duration,
    /// Which endpoint returns balances.
    pub balance_endpoint: BalanceEndpoint,
    /// Where the nonce high-water mark is kept across restarts.
    pub nonce_file: Option<PathBuf>,
}

/// The HTTP front.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Where to listen.
    pub listen_address: SocketAddr,
    /// Path of the exposition.
    pub telemetry_path: String,
}

/// A configuration that cannot be used. Each message names the variable, file or flag at fault
/// and the fix; none contains a credential. The process exits with status 2.
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
        "no {what} is set: set {env} or {env}_FILE (or --kraken.{flag}-file) to the {what} of a key with only the 'Funds: Query' permission, or run with --demo"
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
    /// `--web.listen-address` cannot be resolved.
    #[error(
        "--web.listen-address {address:?} is not host:port or :port (for example :10987 or 127.0.0.1:10987)"
    )]
    ListenAddress {
        /// The value given.
        address: String,
    },
    /// `--web.telemetry-path` is unusable.
    #[error(
        "--web.telemetry-path {path:?} must start with / and must not be /, /-/healthy or /-/ready"
    )]
    TelemetryPath {
        /// The value given.
        path: String,
    },
    /// `--kraken.api-url` is unusable.
    #[error("--kraken.api-url {url:?} {problem}")]
    ApiUrl {
        /// The value given.
        url: String,
        /// What is wrong and what to do.
        problem: &'static str,
    },
    /// A flag value is out of range.
    #[error("{flag} {problem}")]
    Flag {
        /// The flag.
        flag: &'static str,
        /// What is wrong and what to do.
        problem: &'static str,
    },
}

/// Resolves the command line and the environment (`env` looks a variable up) into a validated
/// configuration.
pub fn resolve(cli: Cli, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let flags = cli.flags;
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
    let api_url = validate_api_url(&flags.api_url)?;
    if flags.telemetry_path.len() < 2
        || !flags.telemetry_path.starts_with('/')
        || flags.telemetry_path.starts_with("/-/")
    {
        return Err(ConfigError::TelemetryPath {
            path: flags.telemetry_path,
        });
    }
    if flags.account.is_empty() || flags.account.chars().any(char::is_control) {
        return Err(ConfigError::Flag {
            flag: "--kraken.account",
            problem: "must be a non-empty name without control characters",
        });
    }
    if flags.timeout.is_zero() {
        return Err(ConfigError::Flag {
            flag: "--kraken.timeout",
            problem: "must be longer than 0s (for example 10s)",
        });
    }
    if flags.background_interval.is_some_and(|i| i.is_zero()) {
        return Err(ConfigError::Flag {
            flag: "--refresh.interval",
            problem: "must be longer than 0s (for example 30s); omit it to refresh on scrape",
        });
    }
    let listen_address = resolve_listen_address(&flags.listen_address)?;
    Ok(Config {
        check: matches!(cli.command, Some(Command::Check)),
        demo: flags.demo,
        account: AccountConfig {
            name: flags.account,
            credentials,
            api_url,
            timeout: flags.timeout,
            balance_endpoint: flags.balance_endpoint,
            nonce_file: flags.nonce_file,
        },
        policy: RefreshPolicy {
            min_interval: flags.min_interval,
            background_interval: flags.background_interval,
            stale_after: flags.stale_after,
            assets_interval: flags.assets_interval,
        },
        web: WebConfig {
            listen_address,
            telemetry_path: flags.telemetry_path,
        },
        log_level: flags.log_level,
        log_format: flags.log_format,
    })
}

/// `:port` listens on every interface, as Go exporters do.
fn resolve_listen_address(address: &str) -> Result<SocketAddr, ConfigError> {
    let full = if address.starts_with(':') {
        format!("0.0.0.0{address}")
    } else {
        address.to_owned()
    };
    full.to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| ConfigError::ListenAddress {
            address: address.to_owned(),
        })
}

/// Plain HTTP would send the key and signatures in clear text, so it is accepted only for a
/// Kraken on this machine (the simulated one, or a local proxy that adds TLS).
fn validate_api_url(url: &str) -> Result<String, ConfigError> {
    let trimmed = url.trim_end_matches('/');
    let bad = |problem| ConfigError::ApiUrl {
        url: url.to_owned(),
        problem,
    };
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
    Env(&'static str),
    /// A file, named by a flag or a variable.
    File { path: PathBuf, named_by: String },
}

impl Origin {
    fn describe(&self) -> String {
        match self {
            Origin::Env(name) => format!("environment variable {name}"),
            Origin::File { path, named_by } => {
                format!("file {} (from {named_by})", path.display())
            }
        }
    }
}

/// Finds and reads one credential: the flag's file, else `<ENV>_FILE`, else `<ENV>`.
fn read_credential(
    env: &dyn Fn(&str) -> Option<String>,
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
        (None, None, Some(value)) => return Ok(Some((value, Origin::Env(name)))),
        (None, None, None) => return Ok(None),
    };
    let Origin::File { path, .. } = &origin else {
        unreachable!("only files reach here")
    };
    let text = std::fs::read(path).map_err(|e| ConfigError::Credential {
        source_name: origin.describe(),
        problem: format!(
            "cannot be read ({}): check the path and that the exporter's user may read it",
            e.kind()
        ),
    })?;
    let text = String::from_utf8(text).map_err(|_| ConfigError::Credential {
        source_name: origin.describe(),
        problem: "is not UTF-8 text: write the value as plain text on one line".into(),
    })?;
    warn_if_readable_by_others(path, &origin);
    // A trailing newline (as `echo` and editors write) is not part of the value.
    let text = text.trim_end_matches(['\n', '\r']).to_owned();
    Ok(Some((text, origin)))
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path, origin: &Origin) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            "{} can be read by other users: run chmod 600 {}",
            origin.describe(),
            path.display()
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &Path, _: &Origin) {}

/// Refuses shapes that are certainly a copy-and-paste mistake, saying how to fix them.
fn check_shape(value: &str, origin: &Origin) -> Result<(), ConfigError> {
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
    if value.chars().any(char::is_whitespace) {
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
    env: &dyn Fn(&str) -> Option<String>,
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
            check_shape(&otp, &origin)?;
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
        assert_eq!(config.account.name, "default");
        assert_eq!(config.account.api_url, "https://api.kraken.com");
        assert_eq!(config.web.listen_address.port(), crate::cli::DEFAULT_PORT);
        assert_eq!(config.web.telemetry_path, "/metrics");
        assert_eq!(config.policy.min_interval, Duration::from_secs(10));
        assert_eq!(config.policy.stale_after, Duration::from_secs(300));
        assert_eq!(config.policy.background_interval, None);
        let creds = config.account.credentials.unwrap();
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
        let creds = config.account.credentials.unwrap();
        assert_eq!(creds.key.expose(), "filekey");
        assert_eq!(creds.secret.expose().len(), 64);
        assert_eq!(creds.otp.unwrap().expose(), "hunter2");
    }

    #[test]
    fn the_flag_file_overrides_the_variable() {
        let key = temp_file(b"fromflag");
        let config = resolve_with(
            &["--kraken.api-key-file", key.to_str().unwrap()],
            &[("KRAKEN_API_KEY", "fromenv"), ("KRAKEN_API_SECRET", SECRET)],
        )
        .unwrap();
        assert_eq!(config.account.credentials.unwrap().key.expose(), "fromflag");
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
        assert!(config.demo && config.account.credentials.is_none());
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
        assert_eq!(config.account.api_url, "http://127.0.0.1:8080");
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
        assert!(err.contains("no unit"), "{err}");
    }
}
