//! The Prometheus text format, written straight into one buffer: families declared once as
//! [`Family`] constants (name, HELP, [`Kind`]), samples added in any order by whoever knows them,
//! the exposition assembled in family-name order.
//!
//! Owns the text format: family order, the `# HELP` and `# TYPE` lines, label escaping and
//! number formatting. Feature units ([`crate::features`]) and [`crate::metrics`] only say which
//! family a sample belongs to.
//! Must not: know any metric of its own, do I/O, or import anything of the exporter: it is the
//! leaf that every unit writing samples shares.
//!
//! The text is written directly rather than through the `prometheus` crate: building its
//! protobuf-shaped families cost 20–30 allocations per sample and kept a full descriptor per
//! request series (see ARCHITECTURE.md, "Crate choices").

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The exposition `Content-Type` (text format 0.0.4), set explicitly on every answer.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A family's metric type, as its `# TYPE` line says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up, from the start of the process.
    Counter,
    /// Any value, replaced at each scrape.
    Gauge,
    /// Cumulative buckets with `_bucket`, `_sum` and `_count` samples.
    Histogram,
}

impl Kind {
    /// The word of the `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric family: declared once, as a constant beside the code that knows its samples, so
/// its name, HELP and type cannot differ between two places that write it.
#[derive(Debug)]
pub struct Family {
    /// The metric name (the contract dashboards and alerts rely on).
    pub name: &'static str,
    /// The HELP text: what the value means and where it comes from.
    pub help: &'static str,
    /// The metric type.
    pub kind: Kind,
}

/// A sample's value.
#[derive(Debug, Clone, Copy)]
pub enum Value {
    /// A counter or bucket count.
    Count(u64),
    /// Anything else.
    Float(f64),
}

impl From<bool> for Value {
    /// 1 for true, 0 for false, as Prometheus' boolean gauges read.
    fn from(flag: bool) -> Self {
        Value::Float(if flag { 1.0 } else { 0.0 })
    }
}

/// The samples of one family so far; its header is written with its first sample.
#[derive(Debug)]
struct Samples {
    family: &'static Family,
    text: String,
}

/// An exposition being written. Families come out in name order, whatever order their samples
/// were added in; a family with no sample writes nothing, not even its HELP.
#[derive(Debug)]
pub struct Exposition {
    /// Family name → its samples.
    families: BTreeMap<&'static str, Samples>,
    /// Size hint for the assembled body.
    capacity: usize,
}

impl Exposition {
    /// An empty exposition whose body is expected to be about `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            families: BTreeMap::new(),
            capacity,
        }
    }

    /// The samples of `family`, to add to.
    pub fn family(&mut self, family: &'static Family) -> FamilyWriter<'_> {
        let samples = self.families.entry(family.name).or_insert_with(|| Samples {
            family,
            text: String::new(),
        });
        debug_assert!(
            samples.family.help == family.help && samples.family.kind == family.kind,
            "two families are named {}",
            family.name
        );
        FamilyWriter {
            text: &mut samples.text,
            name: family.name,
        }
    }

    /// The text format, families in name order.
    pub fn into_bytes(self) -> Vec<u8> {
        let mut out = String::with_capacity(self.capacity);
        for samples in self.families.values() {
            if samples.text.is_empty() {
                continue;
            }
            let family = samples.family;
            out.push_str("# HELP ");
            out.push_str(family.name);
            out.push(' ');
            escape_help(&mut out, family.help);
            out.push_str("\n# TYPE ");
            out.push_str(family.name);
            out.push(' ');
            out.push_str(family.kind.as_str());
            out.push('\n');
            out.push_str(&samples.text);
        }
        out.into_bytes()
    }
}

/// Adds samples to one family.
#[derive(Debug)]
pub struct FamilyWriter<'e> {
    text: &'e mut String,
    name: &'static str,
}

impl FamilyWriter<'_> {
    /// Writes `name{labels} value`.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: impl Into<Value>) {
        self.suffixed("", labels, value.into());
    }

    /// Writes `name<suffix>{labels} value`: the `_bucket`, `_sum` and `_count` of a histogram.
    pub fn suffixed(&mut self, suffix: &str, labels: &[(&str, &str)], value: Value) {
        let out = &mut *self.text;
        out.push_str(self.name);
        out.push_str(suffix);
        if !labels.is_empty() {
            out.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(label);
                out.push_str("=\"");
                escape_label(out, value);
                out.push('"');
            }
            out.push('}');
        }
        out.push(' ');
        match value {
            Value::Count(n) => {
                let _ = write!(out, "{n}");
            }
            Value::Float(f) => write_float(out, f),
        }
        out.push('\n');
    }
}

impl From<f64> for Value {
    fn from(value: f64) -> Self {
        Value::Float(value)
    }
}

/// Floats as the text format expects: shortest round-trip digits, `+Inf`, `-Inf`, `NaN`.
fn write_float(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{value}");
    }
}

/// Escapes a label value: backslash, double quote and newline.
fn escape_label(out: &mut String, value: &str) {
    if !value.contains(['\\', '"', '\n']) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Escapes a HELP text: backslash and newline.
fn escape_help(out: &mut String, help: &str) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Unix seconds of a wall-clock time, as timestamp gauges carry it (0 before 1970).
pub fn unix_seconds(at: std::time::SystemTime) -> f64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Family = Family {
        name: "b_total",
        help: "B.",
        kind: Kind::Counter,
    };
    const A: Family = Family {
        name: "a",
        help: "A with a \\ and\na newline.",
        kind: Kind::Gauge,
    };
    const EMPTY: Family = Family {
        name: "c",
        help: "Never sampled.",
        kind: Kind::Gauge,
    };

    #[test]
    fn families_come_out_in_name_order_with_one_header_each_and_empty_ones_left_out() {
        let mut out = Exposition::with_capacity(0);
        out.family(&B).sample(&[("x", "1")], Value::Count(3));
        out.family(&EMPTY);
        out.family(&A).sample(&[], 0.5);
        out.family(&B).sample(&[("x", "2")], Value::Count(4));
        let text = String::from_utf8(out.into_bytes()).unwrap();
        assert_eq!(
            text,
            "# HELP a A with a \\\\ and\\na newline.\n# TYPE a gauge\na 0.5\n\
             # HELP b_total B.\n# TYPE b_total counter\nb_total{x=\"1\"} 3\nb_total{x=\"2\"} 4\n"
        );
    }

    #[test]
    fn label_values_and_special_floats_are_written_as_the_format_wants() {
        let mut out = Exposition::with_capacity(0);
        let mut f = out.family(&A);
        f.sample(&[("l", "q\"b\\n\nx")], f64::INFINITY);
        f.sample(&[("l", "y")], f64::NEG_INFINITY);
        f.sample(&[("l", "z")], f64::NAN);
        f.sample(&[("l", "t")], true);
        let text = String::from_utf8(out.into_bytes()).unwrap();
        assert!(text.contains("a{l=\"q\\\"b\\\\n\\nx\"} +Inf\n"), "{text}");
        assert!(text.contains("a{l=\"y\"} -Inf\n"), "{text}");
        assert!(text.contains("a{l=\"z\"} NaN\n"), "{text}");
        assert!(text.contains("a{l=\"t\"} 1\n"), "{text}");
    }
}
