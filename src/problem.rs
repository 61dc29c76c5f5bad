//! Mistakes in the operator's files, told so they can be found and fixed: YAML parsing with
//! the place of the first error, the [`Problem`] type and the list that reports many at once,
//! and the warning about a secret file other users can read.
//!
//! Owns the wording shared by the config file ([`crate::config`]) and the web configuration
//! file (`config::web_file`).
//! Must not: echo a value the parser quoted back (it may be a credential written in the wrong
//! place), or import anything from `config` or `web` (both build on it).

use std::path::Path;

/// A mistake in a file: where, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `accounts[1] (hot).secret_file`, `tls_server_config.cert_file`, or
    /// `the file (line 3, column 5)`.
    pub place: String,
    /// What is wrong and the fix.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.place, self.message)
    }
}

/// One problem on its line, or a count and one line per problem.
pub(crate) fn list<P: std::fmt::Display>(problems: &[P]) -> String {
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

/// Where a YAML document first goes wrong, as the parser reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct YamlError {
    /// The field's path (`accounts[1].secret_fil`); empty for the document itself.
    pub path: String,
    /// ` (line L, column C)`, or empty when the parser gave no location.
    pub line: String,
    /// What is wrong, without any value the parser quoted back, with the fix where known.
    pub message: String,
}

/// Parses a YAML document into `T` (an empty document is `T::default()`), or says where it
/// first goes wrong. Shared by the config file and the web config file.
pub(crate) fn parse_yaml<T: serde::de::DeserializeOwned + Default>(
    text: &str,
) -> Result<T, YamlError> {
    if text.trim().is_empty() {
        return Ok(T::default());
    }
    let deserializer = serde_norway::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let inner = error.into_inner();
        let line = inner
            .location()
            .map(|l| format!(" (line {}, column {})", l.line(), l.column()))
            .unwrap_or_default();
        let message = yaml_message(&inner.to_string(), &path);
        YamlError {
            path,
            line,
            message,
        }
    })
}

/// The parser's message for the field at `path`: values, the parser's own location and a
/// repeated path removed, the fix added where it is known.
fn yaml_message(raw: &str, path: &str) -> String {
    let mut message = without_values(raw);
    // serde_norway appends its own location; the place already says it.
    if let Some(cut) = message.find(" at line ") {
        message.truncate(cut);
    }
    // It may also start with the path, or an enclosing section's, which the place names.
    if let Some((head, rest)) = message.split_once(": ")
        && !head.is_empty()
        && path.starts_with(head)
    {
        message = rest.to_owned();
    }
    if message.contains("unknown field") {
        message.push_str(": fix the spelling or remove the field");
    } else if message.contains("duplicate field") {
        message.push_str(": keep only one of them");
    }
    message
}

/// Removes the values a parser quotes back (`invalid type: string "…", expected a map`): a
/// credential written in the wrong place must not come back in the error.
pub(crate) fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("string \"") {
        out.push_str(&rest[..at + "string".len()]);
        let quoted = &rest[at + "string \"".len()..];
        let mut end = None;
        let mut escaped = false;
        for (i, c) in quoted.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = Some(i + 1);
                    break;
                }
                _ => escaped = false,
            }
        }
        rest = end.map_or("", |end| &quoted[end..]);
    }
    out.push_str(rest);
    out
}

/// Warns when a file holding a secret can be read by other users: `what` names it
/// (`file /run/key (from key_file)`, `TLS key file /etc/key.pem`), never its contents.
#[cfg(unix)]
pub(crate) fn warn_if_readable_by_others(path: &Path, what: &str) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            "{what} is accessible to other users (group or other permission bits are set): run chmod 600 {}",
            path.display()
        );
    }
}

/// Warns when a file holding a secret can be read by other users (not on this platform).
#[cfg(not(unix))]
pub(crate) fn warn_if_readable_by_others(_: &Path, _: &str) {}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn values_quoted_back_are_removed() {
        assert_eq!(
            without_values(r#"a string "x\"y" then string "z" end"#),
            "a string then string end"
        );
        assert_eq!(without_values(r#"string "unterminated"#), "string");
    }

    #[test]
    fn one_problem_is_one_line_and_many_are_counted() {
        let problem = |place: &str| Problem {
            place: place.into(),
            message: "is wrong".into(),
        };
        assert_eq!(list(&[problem("a")]), "a: is wrong");
        assert_eq!(
            list(&[problem("a"), problem("b")]),
            "2 problems:\n  - a: is wrong\n  - b: is wrong"
        );
    }

    #[test]
    fn an_empty_document_is_the_default() {
        let parsed: std::collections::BTreeMap<String, u32> = parse_yaml(" \n").unwrap();
        assert!(parsed.is_empty());
        let error = parse_yaml::<std::collections::BTreeMap<String, u32>>("a: x\n").unwrap_err();
        assert_eq!(error.path, "a");
        assert!(error.line.contains("line 1"), "{error:?}");
    }

    /// The code of a source file: its test module and comments left out.
    pub(crate) fn code_of(source: &str) -> String {
        let before_tests = source.split("#[cfg(test)]").next().unwrap_or_default();
        before_tests
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn this_leaf_imports_neither_config_nor_web() {
        let code = code_of(include_str!("problem.rs"));
        for module in ["config", "web"] {
            let path = format!("crate::{module}");
            assert!(!code.contains(&path), "problem.rs uses {path}");
        }
    }
}
