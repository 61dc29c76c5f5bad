//! The YAML config file as written: its schema, and the places of its mistakes.
//!
//! Owns the file's field names (the same words as the flags: `kraken.api_url` is the file's
//! spelling of `--kraken.api-url`) and the translation of parse errors into a place an operator
//! can find: the account's name and the field, with the line.
//! Must not: read credentials or validate meaning; [`crate::config`] does that with every
//! mistake reported at once. The YAML parsing itself is `crate::problem::parse_yaml`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::problem::{Problem, YamlError, parse_yaml};

/// A duration written as `10s`, `5m`, `1h30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileDuration(pub(crate) Duration);

impl<'de> Deserialize<'de> for FileDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        crate::duration::parse(&text)
            .map(FileDuration)
            .map_err(serde::de::Error::custom)
    }
}

/// An amount (a minimum balance or value): a YAML number, or a number in quotes as templated
/// configs write them (`ETH: "0.5"`). Anything else is kept as [`FileAmount::Invalid`] and
/// refused with every other mistake of the file, never alone.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FileAmount {
    /// A number, as written or unquoted.
    Number(f64),
    /// Not a number; the message says why and how to write it (without the value, unless it is
    /// a number written with a decimal comma, whose fix is shown).
    Invalid(String),
}

impl FileAmount {
    /// An amount from the text of a quoted value.
    fn from_text(text: &str) -> Self {
        let trimmed = text.trim();
        if let Ok(number) = trimmed.parse::<f64>() {
            return FileAmount::Number(number);
        }
        let point = trimmed.replacen(',', ".", 1);
        if let Some((whole, decimals)) = trimmed.split_once(',')
            && point.parse::<f64>().is_ok()
        {
            return FileAmount::Invalid(if decimals.len() == 3 {
                let plain = format!("{whole}{decimals}");
                format!(
                    "has a comma: write {plain} (no thousands separator) or {point} (a decimal point), whichever is meant"
                )
            } else {
                format!("is written with a decimal comma: write {point}, with a point")
            });
        }
        FileAmount::Invalid("is not a number: write an amount such as 0.5 or 1000".into())
    }
}

impl<'de> Deserialize<'de> for FileAmount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Amount;
        impl serde::de::Visitor<'_> for Amount {
            type Value = FileAmount;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an amount such as 0.5")
            }
            fn visit_f64<E>(self, v: f64) -> Result<FileAmount, E> {
                Ok(FileAmount::Number(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<FileAmount, E> {
                Ok(FileAmount::Number(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<FileAmount, E> {
                Ok(FileAmount::Number(v as f64))
            }
            fn visit_str<E>(self, v: &str) -> Result<FileAmount, E> {
                Ok(FileAmount::from_text(v))
            }
        }
        deserializer.deserialize_any(Amount)
    }
}

/// The whole file. Every section is optional; unknown fields are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Connection to Kraken.
    #[serde(default)]
    pub(crate) kraken: KrakenSection,
    /// When Kraken is called.
    #[serde(default)]
    pub(crate) refresh: RefreshSection,
    /// The HTTP front (read at start-up only).
    #[serde(default)]
    pub(crate) web: WebSection,
    /// The key-permission audit.
    #[serde(default)]
    pub(crate) audit: AuditSection,
    /// Earn allocations.
    #[serde(default)]
    pub(crate) earn: EarnSection,
    /// Prices in a quote currency.
    #[serde(default)]
    pub(crate) valuation: ValuationSection,
    /// Kraken's WebSocket balances stream.
    #[serde(default)]
    pub(crate) stream: StreamSection,
    /// Deposits and withdrawals in flight.
    #[serde(default)]
    pub(crate) funding: FundingSection,
    /// The accounts to export.
    #[serde(default)]
    pub(crate) accounts: Vec<AccountEntry>,
}

/// `kraken:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KrakenSection {
    /// Like `--kraken.api-url`.
    pub(crate) api_url: Option<String>,
    /// Like `--kraken.timeout`.
    pub(crate) timeout: Option<FileDuration>,
}

/// `refresh:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RefreshSection {
    /// Like `--refresh.min-interval`.
    pub(crate) min_interval: Option<FileDuration>,
    /// Like `--refresh.interval` (background mode).
    pub(crate) interval: Option<FileDuration>,
    /// Like `--refresh.stale-after`.
    pub(crate) stale_after: Option<FileDuration>,
    /// Like `--refresh.assets-interval`.
    pub(crate) assets_interval: Option<FileDuration>,
}

/// `web:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebSection {
    /// Like `--web.listen-address`.
    pub(crate) listen_address: Option<String>,
    /// Like `--web.telemetry-path`.
    pub(crate) telemetry_path: Option<String>,
}

/// `audit:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditSection {
    /// `false` is like `--audit.disabled`.
    pub(crate) enabled: Option<bool>,
    /// Like `--audit.interval`.
    pub(crate) interval: Option<FileDuration>,
    /// Like `--audit.rotation-days`.
    pub(crate) rotation_days: Option<u64>,
}

/// `earn:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EarnSection {
    /// `false` is like `--earn.disabled`.
    pub(crate) enabled: Option<bool>,
    /// Like `--earn.interval`.
    pub(crate) interval: Option<FileDuration>,
}

/// `stream:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StreamSection {
    /// Like `--kraken.stream`: `auto`, `on` or `off`.
    pub(crate) mode: Option<String>,
    /// Like `--kraken.ws-url`.
    pub(crate) url: Option<String>,
    /// Like `--kraken.stream-poll-interval`.
    pub(crate) poll_interval: Option<FileDuration>,
}

/// `funding:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FundingSection {
    /// `false` is like `--funding.disabled`.
    pub(crate) enabled: Option<bool>,
    /// Like `--funding.interval`.
    pub(crate) interval: Option<FileDuration>,
}

/// `valuation:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ValuationSection {
    /// Like `--valuation.quote`.
    pub(crate) quote: Option<String>,
    /// Collect Kraken's TradeBalance `eb` per account (off by default).
    pub(crate) trade_balance: Option<bool>,
}

/// One entry of `accounts:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AccountEntry {
    /// The `account` label.
    pub(crate) name: Option<String>,
    /// File holding the API key.
    pub(crate) key_file: Option<PathBuf>,
    /// Environment variable holding the API key.
    pub(crate) key_env: Option<String>,
    /// The API key itself (only in a file readable by its owner alone).
    pub(crate) key: Option<String>,
    /// File holding the private key.
    pub(crate) secret_file: Option<PathBuf>,
    /// Environment variable holding the private key.
    pub(crate) secret_env: Option<String>,
    /// The private key itself (only in a file readable by its owner alone).
    pub(crate) secret: Option<String>,
    /// File holding the static API 2FA password.
    pub(crate) otp_file: Option<PathBuf>,
    /// Environment variable holding the static API 2FA password.
    pub(crate) otp_env: Option<String>,
    /// The 2FA password itself (only in a file readable by its owner alone).
    pub(crate) otp: Option<String>,
    /// `auto`, `balance-ex` or `balance`.
    pub(crate) balance_endpoint: Option<String>,
    /// Base URL for this account's private calls, when it differs from `kraken.api_url` (a
    /// per-account proxy).
    pub(crate) api_url: Option<String>,
    /// Where this key's nonce high-water mark is kept across restarts.
    pub(crate) nonce_file: Option<PathBuf>,
    /// Asset (Kraken's short name, as in the `asset` label) → lowest acceptable balance.
    #[serde(default)]
    pub(crate) min_balance: BTreeMap<String, FileAmount>,
    /// Quote currency → lowest acceptable total value of the account in it.
    #[serde(default)]
    pub(crate) min_value: BTreeMap<String, FileAmount>,
    /// Permission names the key may hold without a finding; `None`: `funds_query` and
    /// `websocket`.
    pub(crate) allowed_permissions: Option<Vec<String>>,
    /// Asset → largest expected withdrawal amount per hour (`kraken_outflow_max`; 0: none).
    #[serde(default)]
    pub(crate) max_outflow: BTreeMap<String, FileAmount>,
    /// Assets exported even when Kraken omits them (as 0), so an emptied wallet still alerts.
    #[serde(default)]
    pub(crate) watch: Vec<String>,
    /// The entry could not be read (its mistakes are listed already): it is not checked further.
    #[serde(skip)]
    pub(crate) unreadable: bool,
}

/// Parses the text of a config file. A file that does not fit the schema is read again section
/// by section and account by account, so every such mistake is listed, not only the first;
/// the sections and accounts that could be read come back too, so their other mistakes can join
/// the list. The first mistake carries its line.
pub fn parse_all(text: &str) -> (FileConfig, Vec<Problem>) {
    let first = match parse(text) {
        Ok(config) => return (config, Vec::new()),
        Err(problem) => problem,
    };
    let Ok(serde_norway::Value::Mapping(map)) = serde_norway::from_str(text) else {
        // Not YAML at all, or not a mapping: the first mistake is all there is to say.
        return (FileConfig::default(), vec![first]);
    };
    let mut sections = Sections {
        text,
        problems: Vec::new(),
    };
    let mut config = FileConfig::default();
    for (key, value) in map {
        let key = key.as_str().unwrap_or_default().to_owned();
        match key.as_str() {
            "kraken" => config.kraken = sections.read(value, &key).unwrap_or_default(),
            "refresh" => config.refresh = sections.read(value, &key).unwrap_or_default(),
            "web" => config.web = sections.read(value, &key).unwrap_or_default(),
            "audit" => config.audit = sections.read(value, &key).unwrap_or_default(),
            "earn" => config.earn = sections.read(value, &key).unwrap_or_default(),
            "valuation" => config.valuation = sections.read(value, &key).unwrap_or_default(),
            "accounts" => config.accounts = sections.accounts(value),
            _ => sections.problems.push(Problem {
                place: key,
                message: "unknown field: fix the spelling or remove the field; the sections are kraken, refresh, web, audit, earn, valuation and accounts".into(),
            }),
        }
    }
    let mut problems = sections.problems;
    // The strict parse placed the first mistake on its line: that version replaces its twin.
    let twin = |p: &&mut Problem| {
        first
            .place
            .strip_prefix(&p.place)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(" (line"))
    };
    match problems.iter_mut().find(twin) {
        Some(twin) => *twin = first,
        None => problems.insert(0, first),
    }
    (config, problems)
}

/// Reads the parts of a file that does not fit the schema, collecting their mistakes.
struct Sections<'a> {
    /// The file's text, for the names of accounts.
    text: &'a str,
    /// Every mistake found so far.
    problems: Vec<Problem>,
}

impl Sections<'_> {
    /// One part at `place` (`kraken`, `accounts[1]`), or `None` with its mistake recorded.
    fn read<T: serde::de::DeserializeOwned>(
        &mut self,
        value: serde_norway::Value,
        place: &str,
    ) -> Option<T> {
        serde_path_to_error::deserialize(value)
            .map_err(|error| {
                let inner = error.path().to_string();
                let path = match (place, inner.as_str()) {
                    (_, ".") => place.to_owned(),
                    ("", inner) => inner.to_owned(),
                    (place, inner) => format!("{place}.{inner}"),
                };
                let mut message = crate::problem::without_values(&error.into_inner().to_string());
                if message.contains("unknown field") {
                    message.push_str(": fix the spelling or remove the field");
                }
                self.problems.push(Problem {
                    place: name_accounts(&path, self.text),
                    message,
                });
            })
            .ok()
    }

    /// Every entry of `accounts:`; one that cannot be read is kept as unreadable, so the
    /// entries after it keep their index.
    fn accounts(&mut self, value: serde_norway::Value) -> Vec<AccountEntry> {
        let serde_norway::Value::Sequence(entries) = value else {
            self.read::<Vec<AccountEntry>>(value, "accounts");
            return Vec::new();
        };
        let mut accounts = Vec::with_capacity(entries.len());
        for (index, entry) in entries.into_iter().enumerate() {
            let place = format!("accounts[{index}]");
            accounts.push(self.read(entry, &place).unwrap_or(AccountEntry {
                unreadable: true,
                ..AccountEntry::default()
            }));
        }
        accounts
    }
}

/// Parses the text of a config file, or says where it first goes wrong.
pub fn parse(text: &str) -> Result<FileConfig, Problem> {
    parse_yaml(text).map_err(|error: YamlError| Problem {
        place: if error.path.is_empty() {
            format!("the file{}", error.line)
        } else {
            format!("{}{}", name_accounts(&error.path, text), error.line)
        },
        message: error.message,
    })
}

/// Rewrites `accounts[1].x` as `accounts[1] (hot).x`, using the names written in the file.
fn name_accounts(path: &str, text: &str) -> String {
    let Some(rest) = path.strip_prefix("accounts[") else {
        return path.to_owned();
    };
    let Some((index, tail)) = rest.split_once(']') else {
        return path.to_owned();
    };
    let name = index.parse::<usize>().ok().and_then(|i| {
        let value: serde_norway::Value = serde_norway::from_str(text).ok()?;
        value
            .get("accounts")?
            .get(i)?
            .get("name")?
            .as_str()
            .map(str::to_owned)
    });
    match name {
        Some(name) => format!("accounts[{index}] ({name}){tail}"),
        None => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_complete_file_parses() {
        let config = parse(
            r#"
kraken: {api_url: "https://api.kraken.com", timeout: 5s}
refresh: {min_interval: 30s, interval: 1m, stale_after: 10m, assets_interval: 12h}
web: {listen_address: ":10987", telemetry_path: /metrics}
audit: {enabled: true, interval: 6h}
earn: {enabled: true, interval: 10m}
valuation: {quote: USD, trade_balance: false}
accounts:
  - name: cold
    key_file: /run/secrets/cold_key
    secret_file: /run/secrets/cold_secret
    min_balance: {XBT: 0.5, USD: 1000}
    watch: [XBT, USD]
"#,
        )
        .unwrap();
        assert_eq!(config.accounts.len(), 1);
        assert_eq!(
            config.accounts[0].min_balance["XBT"],
            FileAmount::Number(0.5)
        );
        assert_eq!(
            config.refresh.min_interval,
            Some(FileDuration(Duration::from_secs(30)))
        );
        assert_eq!(config.valuation.quote.as_deref(), Some("USD"));
    }

    #[test]
    fn unknown_fields_name_the_account_and_the_field() {
        let problem = parse("accounts:\n  - name: hot\n    secret_fil: /x\n").unwrap_err();
        assert!(problem.place.starts_with("accounts[0] (hot)"), "{problem}");
        assert!(
            problem.message.contains("unknown field `secret_fil`"),
            "{problem}"
        );
        assert!(
            problem.message.contains("secret_file"),
            "lists the valid names: {problem}"
        );
        assert!(problem.place.contains("line 3"), "{problem}");
    }

    #[test]
    fn bad_durations_say_how_to_write_one() {
        let problem = parse("refresh:\n  min_interval: 10\n").unwrap_err();
        assert!(
            problem.place.starts_with("refresh.min_interval"),
            "{problem}"
        );
        assert!(problem.message.contains("like 500ms"), "{problem}");
    }

    #[test]
    fn values_quoted_back_by_the_parser_are_removed() {
        let problem =
            parse("accounts:\n  - name: cold\n    min_balance: \"S3CRET/base64==\"\n").unwrap_err();
        assert!(!problem.message.contains("S3CRET"), "{problem}");
        assert!(
            problem
                .message
                .contains("invalid type: string, expected a map"),
            "{problem}"
        );
    }

    #[test]
    fn an_empty_file_is_an_empty_config() {
        assert!(parse("  \n").unwrap().accounts.is_empty());
    }
}
