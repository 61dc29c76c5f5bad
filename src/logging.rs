//! Log set-up: logfmt or JSON lines on standard error, through `tracing`, keyed like the logs of
//! Prometheus' own Go programs: `ts`, `level`, `msg`, then the event's fields.
//!
//! Owns the line format and the filter: `--log.level` applies to the exporter's own messages;
//! dependencies log at `warn` at most, so a `trace` level never turns on an HTTP library's wire
//! dumps. A JSON line is one flat object (no nested `fields`), so log pipelines that parse Go
//! exporters' lines parse these too.
//! Must not: log a credential (no credential type prints its contents anyway).

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
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
    let result = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .event_format(LineFormat { format })
                .with_writer(std::io::stderr),
        )
        .try_init();
    // A subscriber already installed (tests running several exporters in one process) is fine.
    drop(result);
}

/// Writes one event as one line in the chosen format.
struct LineFormat {
    /// logfmt or JSON.
    format: LogFormat,
}

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut ts = String::new();
        SystemTime.format_time(&mut Writer::new(&mut ts))?;
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = event.metadata().level().as_str().to_ascii_lowercase();
        let mut pairs: Vec<(&str, Value)> = vec![
            ("ts", Value::Text(ts)),
            ("level", Value::Text(level)),
            ("msg", Value::Text(fields.message.unwrap_or_default())),
        ];
        pairs.extend(fields.rest.iter().map(|(k, v)| (*k, v.clone())));
        let line = match self.format {
            LogFormat::Logfmt => logfmt_line(&pairs),
            LogFormat::Json => json_line(&pairs),
        };
        writeln!(writer, "{line}")
    }
}

/// One field's value: numbers and booleans stay unquoted in both formats.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    /// Printed with Display or Debug.
    Text(String),
    /// A number or boolean, written as is.
    Raw(String),
}

/// The fields of one event, the message apart.
#[derive(Default)]
struct Fields {
    /// The event's message (`message` in `tracing`), written as `msg`.
    message: Option<String>,
    /// Every other field, in the order recorded.
    rest: Vec<(&'static str, Value)>,
}

impl Fields {
    fn push(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = Some(match value {
                Value::Text(text) | Value::Raw(text) => text,
            });
        } else {
            self.rest.push((field.name(), value));
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, Value::Text(format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, Value::Text(value.to_owned()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, Value::Raw(value.to_string()));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, Value::Raw(value.to_string()));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, Value::Raw(value.to_string()));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        let text = if value.is_finite() {
            value.to_string()
        } else {
            format!("{value:?}")
        };
        self.push(field, Value::Raw(text));
    }
}

/// `key=value` pairs separated by spaces; a value with a space, `=`, a quote, a control
/// character, or none at all is quoted with `\"`, `\\` and `\n` escaped.
fn logfmt_line(pairs: &[(&str, Value)]) -> String {
    let mut line = String::new();
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            line.push(' ');
        }
        line.push_str(key);
        line.push('=');
        let text = match value {
            Value::Text(text) | Value::Raw(text) => text,
        };
        let plain = !text.is_empty()
            && !text
                .chars()
                .any(|c| c == ' ' || c == '=' || c == '"' || c == '\\' || c.is_control());
        if plain {
            line.push_str(text);
            continue;
        }
        line.push('"');
        for c in text.chars() {
            match c {
                '"' => line.push_str("\\\""),
                '\\' => line.push_str("\\\\"),
                '\n' => line.push_str("\\n"),
                '\r' => line.push_str("\\r"),
                '\t' => line.push_str("\\t"),
                c if c.is_control() => {
                    let _ = write!(line, "\\u{{{:x}}}", c as u32);
                }
                c => line.push(c),
            }
        }
        line.push('"');
    }
    line
}

/// One flat JSON object, keys in the order given (`ts`, `level`, `msg` first).
fn json_line(pairs: &[(&str, Value)]) -> String {
    let mut line = String::from("{");
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        line.push_str(&serde_json::Value::from(*key).to_string());
        line.push(':');
        let value = match value {
            Value::Text(text) => serde_json::Value::String(text.clone()),
            Value::Raw(text) => serde_json::from_str(text)
                .unwrap_or_else(|_| serde_json::Value::String(text.clone())),
        };
        line.push_str(&value.to_string());
    }
    line.push('}');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<(&'static str, Value)> {
        vec![
            ("ts", Value::Text("2026-12-01T10:00:00.000000Z".into())),
            ("level", Value::Text("warn".into())),
            ("msg", Value::Text("refresh failed".into())),
            ("account", Value::Text("cold".into())),
            ("reason", Value::Text("said \"no\"\nthen=left".into())),
            ("attempt", Value::Raw("3".into())),
            ("empty", Value::Text(String::new())),
        ]
    }

    #[test]
    fn logfmt_lines_start_with_ts_level_msg_and_quote_what_needs_it() {
        assert_eq!(
            logfmt_line(&sample()),
            "ts=2026-12-01T10:00:00.000000Z level=warn msg=\"refresh failed\" account=cold \
             reason=\"said \\\"no\\\"\\nthen=left\" attempt=3 empty=\"\""
        );
    }

    #[test]
    fn json_lines_are_flat_objects_with_typed_numbers() {
        let value: serde_json::Value = serde_json::from_str(&json_line(&sample())).unwrap();
        assert_eq!(value["msg"], "refresh failed");
        assert_eq!(value["level"], "warn");
        assert_eq!(value["account"], "cold");
        assert_eq!(value["attempt"], 3);
        assert_eq!(value["reason"], "said \"no\"\nthen=left");
        assert!(value.get("fields").is_none() && value.get("message").is_none());
        assert!(
            json_line(&sample())
                .starts_with(r#"{"ts":"2026-12-01T10:00:00.000000Z","level":"warn","msg":"#)
        );
    }
}
