//! Durations written the way Prometheus users write them: `500ms`, `10s`, `5m`, `1h30m`, `2d`.
//!
//! Owns the parsing of duration flags and config values.
//! Must not: accept a bare number (its unit would be a guess) or a negative value.

use std::time::Duration;

/// Parses `<number><unit>` terms (`ms`, `s`, `m`, `h`, `d`, `w`), concatenated. Errors never
/// repeat the text (a value in the wrong field could be a credential).
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let hint = "write it as a number with a unit, like 500ms, 10s, 5m or 1h30m";
    if text.is_empty() {
        return Err(format!("empty duration: {hint}"));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("not a duration: {hint}"));
        }
        let number: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("not a duration: {hint}"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            "w" => 604_800.0,
            "" => return Err(format!("a number without a unit: {hint}")),
            _ => return Err(format!("an unknown unit: {hint}")),
        };
        rest = &rest[unit_len..];
        total += Duration::try_from_secs_f64(number * seconds)
            .map_err(|_| format!("out of range: {hint}"))?;
    }
    Ok(total)
}

/// Prints a duration the way [`parse`] reads it (`1h30m`, `10s`, `250ms`).
pub fn format(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis == 0 {
        return "0s".into();
    }
    if !millis.is_multiple_of(1000) {
        return format!("{millis}ms");
    }
    let mut secs = duration.as_secs();
    let mut out = String::new();
    for (unit, size) in [("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_style_durations() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("2d"), Ok(Duration::from_secs(172_800)));
    }

    #[test]
    fn refuses_bare_numbers_and_unknown_units_with_a_hint() {
        for bad in ["10", "", "s", "10x", "-5s", "1e400s"] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains("like 500ms"), "{bad}: {err}");
        }
    }

    #[test]
    fn format_round_trips() {
        for text in ["10s", "5m", "1h30m", "250ms", "6h"] {
            assert_eq!(format(parse(text).unwrap()), text);
        }
    }
}
