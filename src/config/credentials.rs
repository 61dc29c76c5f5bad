//! The one pipeline every credential goes through: find it (a flag's file, an environment
//! variable, a file named by the variable, or a field of the config file), read it, refuse the
//! shapes that are certainly a copy-and-paste mistake, decode the private key, and assemble
//! [`Credentials`].
//!
//! One-account mode ([`from_flags`]) and file mode ([`from_entry`]) differ only in where they
//! look and in how they report: the first mistake ends one-account mode, file mode collects
//! every mistake with its field. Reading, the shape checks and decoding are shared.
//! Must not: put any part of a credential into an error, a log line or `Debug` output; a message
//! names the variable, file or field, and the fix.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};

use super::file::AccountEntry;
use super::{ConfigError, Env, SECRET_LEN};
use kraken::secret::{ApiSecret, Credentials, SecretText};

/// Where a credential came from, for messages.
enum Origin {
    /// An environment variable holding the value.
    Env(String),
    /// Written in the config file itself.
    Inline(&'static str),
    /// A file, named by a flag, a variable or a field.
    File { path: PathBuf, named_by: String },
}

impl Origin {
    /// `environment variable X`, `the inline key`, `file /p (from key_file)`.
    fn describe(&self) -> String {
        match self {
            Origin::Env(name) => format!("environment variable {name}"),
            Origin::Inline(what) => format!("the inline {what}"),
            Origin::File { path, named_by } => {
                format!("file {} (from {named_by})", path.display())
            }
        }
    }

    /// The config file's field this came from, for a credential `what` of an account entry.
    fn field(&self, what: &str) -> String {
        match self {
            Origin::File { .. } => format!("{what}_file"),
            Origin::Env(_) => format!("{what}_env"),
            Origin::Inline(_) => what.to_owned(),
        }
    }
}

/// One credential's text, found but not yet checked.
struct Found {
    /// The value, as read.
    text: SecretText,
    /// Where it came from.
    origin: Origin,
}

/// A credential that cannot be used: where it came from and what is wrong (never the value).
struct Refused {
    /// [`Origin::describe`].
    source_name: String,
    /// What is wrong and what to do.
    problem: String,
}

impl Refused {
    fn new(origin: &Origin, problem: impl Into<String>) -> Refused {
        Refused {
            source_name: origin.describe(),
            problem: problem.into(),
        }
    }

    /// The whole sentence, for a list where the field is already the place.
    fn sentence(self) -> String {
        format!("{} {}", self.source_name, self.problem)
    }
}

impl From<Refused> for ConfigError {
    fn from(refused: Refused) -> ConfigError {
        ConfigError::Credential {
            source_name: refused.source_name,
            problem: refused.problem,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The shared steps: read, check, decode
// ---------------------------------------------------------------------------------------------

/// Reads a credential file: UTF-8, without its trailing newline. Warns when other users may
/// read it.
fn read_file(path: PathBuf, named_by: String) -> Result<Found, Refused> {
    let origin = Origin::File { path, named_by };
    let Origin::File { path, .. } = &origin else {
        unreachable!("built as a file just above")
    };
    let bytes = std::fs::read(path).map_err(|e| {
        Refused::new(
            &origin,
            format!(
                "cannot be read ({}): check the path and that the exporter's user may read it",
                e.kind()
            ),
        )
    })?;
    let text = String::from_utf8(bytes).map_err(|_| {
        Refused::new(
            &origin,
            "is not UTF-8 text: write the value as plain text on one line",
        )
    })?;
    crate::problem::warn_if_readable_by_others(path, &origin.describe());
    // A trailing newline (as `echo` and editors write) is not part of the value.
    let text = SecretText::new(text.trim_end_matches(['\n', '\r']).to_owned());
    Ok(Found { text, origin })
}

/// An API key: one unbroken line, as Kraken shows it.
fn check_key(found: Found) -> Result<SecretText, Refused> {
    check_text(found.text.expose(), false).map_err(|p| Refused::new(&found.origin, p))?;
    Ok(found.text)
}

/// A 2FA password: chosen by the operator, so it may contain spaces inside.
fn check_otp(found: Found) -> Result<SecretText, Refused> {
    check_text(found.text.expose(), true).map_err(|p| Refused::new(&found.origin, p))?;
    Ok(found.text)
}

/// A private key: checked like an API key, then decoded from base64 to [`SECRET_LEN`] bytes.
fn check_secret(found: Found) -> Result<ApiSecret, Refused> {
    let origin = &found.origin;
    let text = found.text.expose();
    check_text(text, false).map_err(|p| Refused::new(origin, p))?;
    let bytes = zeroize::Zeroizing::new(STANDARD.decode(text).map_err(|_| {
        // Valid characters whose only fault is the missing `=` at the end: a double-click
        // selection stops before it.
        let unpadded = !text.ends_with('=') && STANDARD_NO_PAD.decode(text).is_ok();
        Refused::new(
            origin,
            if unpadded {
                "is missing its '=' padding at the end (a double-click selection leaves out the trailing '=='): copy the whole 'Private key', including the '=' signs"
            } else {
                "is not valid base64: copy the 'Private key' exactly as Kraken showed it when the key was created"
            },
        )
    })?);
    if bytes.len() != SECRET_LEN {
        return Err(Refused::new(
            origin,
            format!(
                "decodes to {} bytes, but a Kraken private key decodes to {SECRET_LEN}: check that you copied the 'Private key', not the API key, and all of it",
                bytes.len()
            ),
        ));
    }
    Ok(ApiSecret::from_bytes(bytes.to_vec()))
}

/// Characters that show as nothing: zero-width space, non-joiner and joiner, word joiner, soft
/// hyphen, and a byte-order mark anywhere but the start. Copying from a web page or a chat
/// brings them along.
const INVISIBLE: [char; 6] = [
    '\u{200b}', '\u{200c}', '\u{200d}', '\u{2060}', '\u{00ad}', '\u{feff}',
];

/// Refuses the paste mistakes: a byte-order mark, invisible characters, quotes, a bytes
/// literal, a newline (called a newline, not a space), surrounding whitespace, control
/// characters, and (unless `spaces_inside` allows them) whitespace inside.
fn check_text(value: &str, spaces_inside: bool) -> Result<(), &'static str> {
    if value.starts_with('\u{feff}') {
        return Err(
            "starts with a byte-order mark (the file was saved as 'UTF-8 with BOM', as Notepad does): save it as UTF-8 without BOM",
        );
    }
    if value.contains(INVISIBLE) {
        return Err(
            "contains an invisible zero-width character (copied along from a web page or chat): type the value into a plain-text editor again, or copy it from Kraken's key page directly",
        );
    }
    const QUOTES: [char; 7] = [
        '"', '\'', '`', '\u{201c}', '\u{201d}', '\u{2018}', '\u{2019}',
    ];
    let unprefixed = value
        .strip_prefix('b')
        .or_else(|| value.strip_prefix('B'))
        .filter(|rest| rest.starts_with(QUOTES));
    if unprefixed.is_some() {
        return Err(
            "looks like a Python bytes literal (b\"...\"): remove the b and the quotes, keeping only the characters between them",
        );
    }
    if value.starts_with(QUOTES) || value.ends_with(QUOTES) {
        return Err(
            "is wrapped in quotes (straight or typographic): remove the quotes, keeping only the characters between them",
        );
    }
    const NEWLINES: [char; 2] = ['\n', '\r'];
    if value.contains(NEWLINES) {
        return Err(if value.trim_matches(NEWLINES).contains(NEWLINES) {
            "contains a line break inside (the value was wrapped onto two lines): copy it again as one unbroken line"
        } else {
            "starts or ends with a newline (as echo, a heredoc or an editor adds one): remove it, for example with printf '%s' instead of echo"
        });
    }
    if value.trim() != value {
        return Err("starts or ends with whitespace: remove the spaces around the value");
    }
    if !spaces_inside && value.chars().any(char::is_whitespace) {
        return Err("contains whitespace inside: copy the value again as one unbroken line");
    }
    if value.chars().any(char::is_control) {
        return Err("contains control characters: copy the value again");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// One-account mode: flags and environment
// ---------------------------------------------------------------------------------------------

/// One credential of one-account mode: its variable, the variable naming its file, its flag.
struct Variable {
    /// `KRAKEN_API_KEY`.
    name: &'static str,
    /// `KRAKEN_API_KEY_FILE`.
    file_var: &'static str,
    /// `api-key` (of `--kraken.api-key-file`).
    flag: &'static str,
    /// `API key`, for the message when it is missing.
    what: &'static str,
}

const KEY: Variable = Variable {
    name: "KRAKEN_API_KEY",
    file_var: "KRAKEN_API_KEY_FILE",
    flag: "api-key",
    what: "API key",
};
const SECRET: Variable = Variable {
    name: "KRAKEN_API_SECRET",
    file_var: "KRAKEN_API_SECRET_FILE",
    flag: "api-secret",
    what: "API private key",
};
const OTP: Variable = Variable {
    name: "KRAKEN_API_OTP",
    file_var: "KRAKEN_API_OTP_FILE",
    flag: "api-otp",
    what: "2FA password",
};

/// Reads, checks and decodes the key, the secret and the optional 2FA password of one-account
/// mode; the first mistake is the error.
pub(super) fn from_flags(
    env: Env<'_>,
    key_file: Option<&Path>,
    secret_file: Option<&Path>,
    otp_file: Option<&Path>,
) -> Result<Credentials, ConfigError> {
    let key = check_key(find_flagged(env, &KEY, key_file)?.ok_or_else(|| missing(&KEY))?)?;
    let secret =
        check_secret(find_flagged(env, &SECRET, secret_file)?.ok_or_else(|| missing(&SECRET))?)?;
    let otp = match find_flagged(env, &OTP, otp_file)? {
        Some(found) => Some(check_otp(found)?),
        None => None,
    };
    Ok(Credentials { key, secret, otp })
}

fn missing(variable: &Variable) -> ConfigError {
    ConfigError::Missing {
        what: variable.what,
        env: variable.name,
        flag: variable.flag,
    }
}

/// Finds and reads one credential: the flag's file, else `<ENV>_FILE`, else `<ENV>`.
fn find_flagged(
    env: Env<'_>,
    variable: &Variable,
    flag_file: Option<&Path>,
) -> Result<Option<Found>, ConfigError> {
    let value = env(variable.name).filter(|v| !v.is_empty());
    let env_file = env(variable.file_var).filter(|v| !v.is_empty());
    let found = match (flag_file, env_file, value) {
        (Some(path), _, _) => {
            read_file(path.to_owned(), format!("--kraken.{}-file", variable.flag))?
        }
        (None, Some(_), Some(_)) => return Err(ConfigError::Ambiguous { env: variable.name }),
        (None, Some(path), None) => read_file(PathBuf::from(path), variable.file_var.to_owned())?,
        (None, None, Some(value)) => Found {
            text: SecretText::new(value),
            origin: Origin::Env(variable.name.to_owned()),
        },
        (None, None, None) => return Ok(None),
    };
    Ok(Some(found))
}

// ---------------------------------------------------------------------------------------------
// File mode: one account entry
// ---------------------------------------------------------------------------------------------

/// Loads one account entry's credentials, or every problem with them as (field, message).
pub(super) fn from_entry(
    entry: &AccountEntry,
    env: Env<'_>,
    owner_only: bool,
    config_path: &Path,
) -> Result<Credentials, Vec<(String, String)>> {
    let mut errors = Vec::new();
    let place = EntryPlace {
        env,
        owner_only,
        config_path,
    };
    let mut find = |what, file: &Option<PathBuf>, var: &Option<String>, inline, required| {
        place
            .find(what, file, var, inline, required)
            .unwrap_or_else(|error| {
                errors.push(error);
                None
            })
    };
    let key = find("key", &entry.key_file, &entry.key_env, &entry.key, true);
    let secret = find(
        "secret",
        &entry.secret_file,
        &entry.secret_env,
        &entry.secret,
        true,
    );
    let otp = find("otp", &entry.otp_file, &entry.otp_env, &entry.otp, false);
    let key = key.and_then(|found| checked(found, "key", check_key, &mut errors));
    let secret = secret.and_then(|found| checked(found, "secret", check_secret, &mut errors));
    let otp = match otp {
        Some(found) => checked(found, "otp", check_otp, &mut errors).map(Some),
        None => Some(None),
    };
    match (key, secret, otp, errors.is_empty()) {
        (Some(key), Some(secret), Some(otp), true) => Ok(Credentials { key, secret, otp }),
        _ => Err(errors),
    }
}

/// Runs one shared check, recording a refusal under the field the value came from.
fn checked<T>(
    found: Found,
    what: &str,
    check: fn(Found) -> Result<T, Refused>,
    errors: &mut Vec<(String, String)>,
) -> Option<T> {
    let field = found.origin.field(what);
    check(found)
        .map_err(|refused| errors.push((field, refused.sentence())))
        .ok()
}

/// What finding a credential of an account entry depends on.
struct EntryPlace<'a> {
    env: Env<'a>,
    /// Whether the config file is readable by its owner alone (where inline values are allowed).
    owner_only: bool,
    /// The config file, for the `chmod` advice.
    config_path: &'a Path,
}

impl EntryPlace<'_> {
    /// The credential `what` from exactly one of `<what>_file`, `<what>_env` and `<what>`, or
    /// the problem as (field, message); `None` when it is optional and absent.
    fn find(
        &self,
        what: &'static str,
        file: &Option<PathBuf>,
        var: &Option<String>,
        inline: &Option<String>,
        required: bool,
    ) -> Result<Option<Found>, (String, String)> {
        let given = [file.is_some(), var.is_some(), inline.is_some()]
            .iter()
            .filter(|g| **g)
            .count();
        if given > 1 {
            return Err((
                what.to_owned(),
                format!(
                    "is given more than once: keep only one of {what}_file, {what}_env and {what}"
                ),
            ));
        }
        if let Some(path) = file {
            return read_file(path.clone(), format!("{what}_file"))
                .map(Some)
                .map_err(|refused| (format!("{what}_file"), refused.sentence()));
        }
        if let Some(name) = var {
            return match (self.env)(name).filter(|v| !v.is_empty()) {
                Some(text) => Ok(Some(Found {
                    text: SecretText::new(text),
                    origin: Origin::Env(name.clone()),
                })),
                None => Err((
                    format!("{what}_env"),
                    format!(
                        "environment variable {name} is not set or empty: set it, or use {what}_file"
                    ),
                )),
            };
        }
        if let Some(text) = inline {
            if !self.owner_only {
                return Err((
                    what.to_owned(),
                    format!(
                        "is written inline, which is allowed only when the config file is readable by its owner alone: run chmod 600 {}, or use {what}_file",
                        self.config_path.display()
                    ),
                ));
            }
            return Ok(Some(Found {
                text: SecretText::new(text.clone()),
                origin: Origin::Inline(what),
            }));
        }
        if required {
            return Err((
                what.to_owned(),
                format!(
                    "is missing: set {what}_file (a file holding it) or {what}_env (the name of an environment variable holding it)"
                ),
            ));
        }
        Ok(None)
    }
}

/// Whether the config file can be read by its owner only (where inline credentials are allowed).
pub(super) fn owner_only(path: &Path) -> bool {
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
