//! The accounts to export: the one account of one-account mode (flags and environment), or
//! every entry of the config file.
//!
//! Owns the checks that concern an account as a whole: a valid, unique name, its own API key,
//! its balance endpoint, URL, thresholds, watched assets and nonce file.
//! Must not: read credentials itself (that is `credentials`); stop at the first mistake in the
//! file (every mistake is collected with its place, `accounts[1] (hot).secret_file`).

use std::collections::BTreeMap;
use std::path::Path;

use super::file::{AccountEntry, FileAmount, FileConfig};
use super::{AccountConfig, ConfigError, Env, credentials, thresholds, validate};
use crate::audit::KeyPolicy;
use crate::cli::Flags;
use crate::problem::Problem;
use kraken::BalanceEndpoint;
use kraken::secret::Credentials;

/// The one account of one-account mode; the first mistake is the error.
pub(super) fn from_flags(flags: &Flags, env: Env<'_>) -> Result<AccountConfig, ConfigError> {
    let credentials = if flags.demo {
        None
    } else {
        Some(credentials::from_flags(
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
    if let Some(problem) = validate::account_name(&name) {
        return Err(ConfigError::Flag {
            flag: "--kraken.account",
            problem,
        });
    }
    if !flags.demo
        && let Some(path) = &flags.nonce_file
        && let Err(problem) = validate::nonce_file(path)
    {
        return Err(ConfigError::Flag {
            flag: "--kraken.nonce-file",
            problem,
        });
    }
    let thresholds = thresholds::from_flags(flags, env)?;
    Ok(AccountConfig {
        name,
        credentials,
        balance_endpoint: flags.balance_endpoint.unwrap_or(BalanceEndpoint::Auto),
        api_url: None,
        nonce_file: flags.nonce_file.clone(),
        min_balance: thresholds.min_balance,
        min_value: thresholds.min_value,
        watch: thresholds.watch,
        max_outflow: thresholds::outflow_from_flags(flags, env)?,
        key_policy: KeyPolicy {
            allowed: thresholds::allowed_from_flags(flags, env)?,
            ..KeyPolicy::default()
        },
        audited: true,
    })
}

/// Validates every account of the file at `path`, collecting every mistake.
pub(super) fn from_file(
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
    let context = EntryContext {
        demo,
        env,
        owner_only: credentials::owner_only(path),
        path,
    };
    let mut accounts: Vec<AccountConfig> = Vec::new();
    for (index, entry) in file.accounts.iter().enumerate() {
        if entry.unreadable {
            continue;
        }
        let label = match &entry.name {
            Some(name) => format!("accounts[{index}] ({name})"),
            None => format!("accounts[{index}]"),
        };
        let mut report = EntryProblems {
            label,
            problems: &mut *problems,
        };
        let account = context.account(entry, &accounts, &mut report);
        accounts.push(account);
    }
    accounts
}

/// The mistakes of one entry, placed under its label.
struct EntryProblems<'a> {
    /// `accounts[1] (hot)`.
    label: String,
    problems: &'a mut Vec<Problem>,
}

impl EntryProblems<'_> {
    /// A mistake in `field` of the entry (the entry itself when `field` is empty).
    fn add(&mut self, field: &str, message: String) {
        self.problems.push(Problem {
            place: if field.is_empty() {
                self.label.clone()
            } else {
                format!("{}.{field}", self.label)
            },
            message,
        });
    }
}

/// What every entry of one file is resolved with.
struct EntryContext<'a> {
    /// Demo mode needs no credentials and no nonce file.
    demo: bool,
    env: Env<'a>,
    /// Whether the file is readable by its owner alone (inline credentials are then allowed).
    owner_only: bool,
    /// The config file.
    path: &'a Path,
}

impl EntryContext<'_> {
    /// One entry, checked against the `earlier` ones; its mistakes go to `report`.
    fn account(
        &self,
        entry: &AccountEntry,
        earlier: &[AccountConfig],
        report: &mut EntryProblems<'_>,
    ) -> AccountConfig {
        let name = entry_name(entry, earlier, report);
        let balance_endpoint = match &entry.balance_endpoint {
            None => BalanceEndpoint::Auto,
            Some(text) => validate::balance_endpoint(text).unwrap_or_else(|| {
                report.add(
                    "balance_endpoint",
                    format!("{text:?} is not one of auto, balance-ex, balance"),
                );
                BalanceEndpoint::Auto
            }),
        };
        let api_url = entry
            .api_url
            .as_ref()
            .and_then(|url| match validate::api_url(url) {
                Ok(url) => Some(url),
                Err(message) => {
                    report.add("api_url", format!("{url:?} {message}"));
                    None
                }
            });
        check_assets(entry, report);
        let min_balance = minimums(&entry.min_balance, "min_balance", report);
        let min_value = minimums(&entry.min_value, "min_value", report);
        let allowed = match &entry.allowed_permissions {
            None => thresholds::default_allowed(self.demo),
            Some(names) => validate::allowed_permissions(names.iter().map(String::as_str))
                .unwrap_or_else(|problems| {
                    for problem in problems {
                        report.add("allowed_permissions", problem);
                    }
                    KeyPolicy::default().allowed
                }),
        };
        let max_outflow = minimums(&entry.max_outflow, "max_outflow", report);
        let credentials = self.credentials(entry, report);
        check_own_key(credentials.as_ref(), earlier, report);
        if !self.demo
            && let Some(path) = &entry.nonce_file
            && let Err(problem) = validate::nonce_file(path)
        {
            report.add("nonce_file", problem);
        }
        let watch = thresholds::merge_watch(entry.watch.iter().map(String::as_str));
        AccountConfig {
            name,
            credentials,
            balance_endpoint,
            api_url,
            nonce_file: entry.nonce_file.clone(),
            min_balance,
            min_value,
            watch,
            max_outflow,
            key_policy: KeyPolicy {
                allowed,
                ..KeyPolicy::default()
            },
            audited: true,
        }
    }

    /// The entry's credentials (`None` in demo mode, or when they have mistakes).
    fn credentials(
        &self,
        entry: &AccountEntry,
        report: &mut EntryProblems<'_>,
    ) -> Option<Credentials> {
        if self.demo {
            return None;
        }
        match credentials::from_entry(entry, self.env, self.owner_only, self.path) {
            Ok(credentials) => Some(credentials),
            Err(list) => {
                for (field, message) in list {
                    report.add(&field, message);
                }
                None
            }
        }
    }
}

/// The entry's name: present, valid, and not used by an earlier entry.
fn entry_name(
    entry: &AccountEntry,
    earlier: &[AccountConfig],
    report: &mut EntryProblems<'_>,
) -> String {
    let Some(name) = &entry.name else {
        report.add(
            "name",
            "is missing: give every account a name (it becomes the account label)".into(),
        );
        return String::new();
    };
    if let Some(problem) = validate::account_name(name) {
        report.add("name", problem);
    } else if earlier.iter().any(|a| &a.name == name) {
        report.add(
            "name",
            format!("{name:?} is used by another account: names must be unique"),
        );
    }
    name.clone()
}

/// The amounts of `field` (`min_balance`, `min_value`) by normalised name: each a number of at
/// least 0 (quoted or not), spellings of one name merged. Each mistake is reported at its key.
fn minimums(
    amounts: &BTreeMap<String, FileAmount>,
    field: &str,
    report: &mut EntryProblems<'_>,
) -> BTreeMap<String, f64> {
    let mut numbers = Vec::with_capacity(amounts.len());
    for (name, amount) in amounts {
        match amount {
            FileAmount::Number(min) if min.is_finite() && *min >= 0.0 => {
                numbers.push((name.as_str(), *min));
            }
            FileAmount::Number(min) => report.add(
                &format!("{field}.{name}"),
                format!("{min} is not an amount: use a number of at least 0"),
            ),
            FileAmount::Invalid(problem) => {
                report.add(&format!("{field}.{name}"), problem.clone());
            }
        }
    }
    thresholds::merge_minimums(numbers).unwrap_or_else(|conflicts| {
        for conflict in conflicts {
            report.add(field, conflict);
        }
        BTreeMap::new()
    })
}

/// Every asset name of `min_balance` and `watch` is written out.
fn check_assets(entry: &AccountEntry, report: &mut EntryProblems<'_>) {
    for asset in entry.min_balance.keys() {
        if asset.is_empty() {
            report.add(
                "min_balance",
                "has an empty asset name: use Kraken's short name (XBT), its code (XXBT) or its common name (BTC)".into(),
            );
        }
    }
    if entry.watch.iter().any(|a| a.trim().is_empty()) {
        report.add(
            "watch",
            "has an empty asset name: use Kraken's short names, like [XBT, USD]".into(),
        );
    }
}

/// Two accounts sharing a key would break each other's nonces.
fn check_own_key(
    credentials: Option<&Credentials>,
    earlier: &[AccountConfig],
    report: &mut EntryProblems<'_>,
) {
    let Some(creds) = credentials else {
        return;
    };
    if let Some(other) = earlier.iter().find(|a| {
        a.credentials
            .as_ref()
            .is_some_and(|c| c.key.expose() == creds.key.expose())
    }) {
        report.add(
            "key",
            format!(
                "is the same API key as account {:?}: give every account its own key (two accounts sharing a key break each other's nonces)",
                other.name
            ),
        );
    }
}
