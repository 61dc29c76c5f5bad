//! Earn allocations: the Earn/Allocations answer.
//!
//! Owns [`EarnAllocation`] (one strategy's total and the parts bonding, unbonding or in the exit
//! queue, with when they end) and the reading of the RFC 3339 times Kraken writes there.
//! Must not: value an allocation (the `converted` amounts are ignored), fabricate a total Kraken
//! did not send, or read an answer's envelope itself.

use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::envelope::{Amount, envelope, printable};
use crate::error::KrakenError;

/// One Earn strategy's allocation (Earn/Allocations `items[]`), in the strategy's native asset.
/// States Kraken leaves out (documented: "only present when there are ... allocations") are 0.
#[derive(Debug, Clone, PartialEq)]
pub struct EarnAllocation {
    /// Kraken's strategy id (`ESDQCOL-WTZEU-NU55QF`).
    pub strategy_id: String,
    /// The asset allocated (`native_asset`, such as `ETH` or `DOT`), as Kraken names it.
    pub native_asset: String,
    /// Everything allocated to the strategy (`amount_allocated.total.native`), whatever its state;
    /// the part neither bonding, unbonding nor in the exit queue is allocated and earning.
    pub total: f64,
    /// Allocated but not yet earning (`bonding.native`).
    pub bonding: f64,
    /// On its way back to the spot balance (`unbonding.native`).
    pub unbonding: f64,
    /// Waiting in ETH's exit queue before unbonding (`exit_queue.native`).
    pub exit_queue: f64,
    /// The earliest `expires` of the unbonding allocations: when the first of them is back.
    pub unbonding_until: Option<SystemTime>,
    /// The earliest `expires` of the exit-queue allocations; for ETH Kraken documents this as the
    /// time the funds will have finished unbonding, not when they leave the queue.
    pub exit_queue_until: Option<SystemTime>,
}

/// Parses an Earn/Allocations answer (api-specs `/private/Earn/Allocations`): one entry per
/// strategy, in Kraken's order, with the amounts in the native asset. The `converted` amounts
/// (in the `converted_asset` of the request) are ignored: prices are the exporter's valuation's.
/// An item without `native_asset` or without `amount_allocated.total.native` is a decode error,
/// never a zero: the total is the balance itself.
pub(crate) fn earn_allocations(
    status: u16,
    body: &[u8],
) -> Result<Vec<EarnAllocation>, KrakenError> {
    let page: Option<EarnPage> = envelope(status, body)?;
    page.map(|page| page.items)
        .unwrap_or_default()
        .into_iter()
        .map(earn_item)
        .collect()
}

/// The `result` of an Earn/Allocations answer, as far as it is read.
#[derive(Deserialize)]
struct EarnPage {
    #[serde(default)]
    items: Vec<EarnItem>,
}

/// One strategy's allocation.
#[derive(Deserialize)]
struct EarnItem {
    #[serde(default)]
    strategy_id: Option<String>,
    #[serde(default)]
    native_asset: Option<String>,
    #[serde(default)]
    amount_allocated: Option<EarnAllocated>,
}

/// `amount_allocated`: the total and the states that are not (yet, or any more) earning.
#[derive(Deserialize)]
struct EarnAllocated {
    #[serde(default)]
    total: Option<EarnNative>,
    #[serde(default)]
    bonding: Option<EarnState>,
    #[serde(default)]
    unbonding: Option<EarnState>,
    #[serde(default)]
    exit_queue: Option<EarnState>,
}

/// An amount in the native asset.
#[derive(Deserialize)]
struct EarnNative {
    native: Amount,
}

/// A state's amount and its allocations, each with the time it ends.
#[derive(Deserialize)]
struct EarnState {
    native: Amount,
    #[serde(default)]
    allocations: Vec<EarnExpiring>,
}

/// When one allocation leaves its state.
#[derive(Deserialize)]
struct EarnExpiring {
    #[serde(default)]
    expires: Option<String>,
}

/// One item as an [`EarnAllocation`]; a missing asset or total is a decode error.
fn earn_item(item: EarnItem) -> Result<EarnAllocation, KrakenError> {
    let native_asset = item
        .native_asset
        .map(|a| printable(&a))
        .ok_or_else(|| KrakenError::Decode("an Earn allocation has no native_asset".to_owned()))?;
    let what = format!("Earn allocation of {native_asset}");
    let allocated = item
        .amount_allocated
        .ok_or_else(|| KrakenError::Decode(format!("{what} has no amount_allocated")))?;
    let total = allocated
        .total
        .ok_or_else(|| KrakenError::Decode(format!("{what} has no total")))?
        .native
        .value(&what)?;
    Ok(EarnAllocation {
        strategy_id: item.strategy_id.map(|s| printable(&s)).unwrap_or_default(),
        total,
        bonding: earn_amount(allocated.bonding.as_ref(), &what)?,
        unbonding: earn_amount(allocated.unbonding.as_ref(), &what)?,
        exit_queue: earn_amount(allocated.exit_queue.as_ref(), &what)?,
        unbonding_until: earliest_expiry(allocated.unbonding.as_ref(), &what)?,
        exit_queue_until: earliest_expiry(allocated.exit_queue.as_ref(), &what)?,
        native_asset,
    })
}

/// A state's native amount; 0 when Kraken leaves the state out.
fn earn_amount(state: Option<&EarnState>, what: &str) -> Result<f64, KrakenError> {
    state.map_or(Ok(0.0), |state| state.native.value(what))
}

/// The earliest `expires` among a state's allocations; an unreadable time is a decode error.
fn earliest_expiry(
    state: Option<&EarnState>,
    what: &str,
) -> Result<Option<SystemTime>, KrakenError> {
    let mut earliest: Option<SystemTime> = None;
    for expires in state
        .iter()
        .flat_map(|state| &state.allocations)
        .filter_map(|allocation| allocation.expires.as_deref())
    {
        let at = parse_rfc3339(expires)
            .ok_or_else(|| KrakenError::Decode(format!("{what} expires at an unreadable time")))?;
        earliest = Some(earliest.map_or(at, |e| e.min(at)));
    }
    Ok(earliest)
}

/// An RFC 3339 time as Kraken writes it (`2023-08-19T02:34:05.807Z`, or with a `+01:00`
/// offset); `None` for anything else or a time before 1970.
pub(crate) fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = text.get(range)?;
        digits
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| digits.parse().ok())?
    };
    let bytes = text.as_bytes();
    if bytes.len() < 20
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || !matches!(bytes[10], b'T' | b't' | b' ')
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let mut rest = &text[19..];
    let mut nanos = 0u32;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let padded = format!("{:0<9}", &fraction[..digits.min(9)]);
        nanos = padded.parse().ok()?;
        rest = &fraction[digits..];
    }
    let offset_secs = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let offset = rest.get(1..)?;
            let (h, m) = offset.split_once(':')?;
            if h.len() != 2 || m.len() != 2 {
                return None;
            }
            sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60)
        }
    };
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    let secs = u64::try_from(secs).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use crate::error::Reason;

    #[test]
    fn documented_earn_allocations_parse() {
        let items = earn_allocations(200, DOC_EARN).unwrap();
        assert_eq!(
            items,
            [EarnAllocation {
                strategy_id: "ESDQCOL-WTZEU-NU55QF".into(),
                native_asset: "ETH".into(),
                total: 0.021,
                bonding: 0.021,
                unbonding: 0.0,
                exit_queue: 0.0,
                unbonding_until: None,
                exit_queue_until: None,
            }]
        );
    }

    #[test]
    fn earn_allocations_read_every_state_and_the_earliest_unbonding_expiry() {
        let items = earn_allocations(200, EARN_STATES).unwrap();
        assert_eq!(items.len(), 3);
        let dot = &items[0];
        assert_eq!(dot.native_asset, "DOT");
        assert_eq!((dot.total, dot.bonding, dot.unbonding), (130.0, 0.0, 30.0));
        // 2026-12-08T08:00:00.250Z, the earlier of the two.
        assert_eq!(
            dot.unbonding_until,
            Some(at(1_796_716_800) + Duration::from_millis(250))
        );
        let eth = &items[1];
        assert_eq!((eth.bonding, eth.exit_queue), (0.5, 0.25));
        assert_eq!(eth.unbonding_until, None);
        // 2026-12-30T10:00:00Z.
        assert_eq!(eth.exit_queue_until, Some(at(1_798_624_800)));
        assert_eq!(items[2].native_asset, "USDC");
        assert_eq!(items[2].total, 0.0);
    }

    #[test]
    fn earn_allocations_never_fabricate_a_total() {
        assert_eq!(earn_allocations(200, NO_RESULT).unwrap(), vec![]);
        for body in [
            &br#"{"error":[],"result":{"items":[{"native_asset":"DOT","amount_allocated":{}}]}}"#[..],
            br#"{"error":[],"result":{"items":[{"amount_allocated":{"total":{"native":"1"}}}]}}"#,
            br#"{"error":[],"result":{"items":[{"native_asset":"DOT","amount_allocated":{"total":{"native":"lots"}}}]}}"#,
            br#"{"error":[],"result":{"items":[{"native_asset":"DOT","amount_allocated":{"total":{"native":"1"},"unbonding":{"native":"1","allocations":[{"expires":"next week"}]}}}]}}"#,
        ] {
            assert_eq!(
                earn_allocations(200, body).unwrap_err().reason(),
                Reason::Decode,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(
            earn_allocations(200, PERMISSION_DENIED)
                .unwrap_err()
                .reason(),
            Reason::PermissionDenied
        );
    }

    #[test]
    fn rfc3339_times_read_as_kraken_writes_them() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(at(0)));
        assert_eq!(
            parse_rfc3339("2023-08-19T02:34:05.807Z"),
            Some(at(1_692_412_445) + Duration::from_millis(807))
        );
        assert_eq!(
            parse_rfc3339("2023-08-19T04:34:05+02:00"),
            Some(at(1_692_412_445))
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T00:00:00Z"),
            Some(at(1_709_164_800))
        );
        for bad in [
            "",
            "2023-08-19",
            "2023-13-01T00:00:00Z",
            "2023-08-19T24:00:00Z",
            "2023-08-19T02:34:05",
            "2023-08-19T02:34:05.Z",
            "1969-12-31T23:59:59Z",
            "2023-08-19T02:34:05+0200",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }
}
