//! The account's balances: Balance, BalanceEx and TradeBalance answers.
//!
//! Owns [`AssetBalance`] (total, hold and credit of one asset code, and what is available by
//! Kraken's formula) and the parsers of the three answers that report balances.
//! Must not: name assets (codes stay raw; the Assets list names them), value anything in another
//! currency, or read an answer's envelope itself (that is `envelope.rs`).

use std::collections::HashMap;

use serde::Deserialize;

use super::envelope::{Amount, envelope, envelope_object};
use crate::error::KrakenError;

/// One asset's balance as Kraken reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct AssetBalance {
    /// The raw key Kraken returned (`XXBT`, `DOT28.S`): the `code` label.
    pub code: String,
    /// Total balance (`balance` in BalanceEx, the value in Balance).
    pub total: f64,
    /// Amount held by open orders (`hold_trade`); `None` when the answer came from Balance,
    /// which does not report holds.
    pub hold: Option<f64>,
    /// Credit line extended for the asset (BalanceEx `credit`); 0 when Kraken leaves it out, as
    /// it does for accounts without credit, and in Balance answers.
    pub credit: f64,
    /// Part of the credit line in use (BalanceEx `credit_used`); 0 when left out.
    pub credit_used: f64,
}

impl AssetBalance {
    /// What can be traded or withdrawn now, by Kraken's documented formula for BalanceEx:
    /// `balance + credit - credit_used - hold_trade`. `None` when the hold is unknown (a Balance
    /// answer): an unknown hold is never taken as 0.
    pub fn available(&self) -> Option<f64> {
        self.hold
            .map(|hold| self.total + self.credit - self.credit_used - hold)
    }
}

/// One BalanceEx entry.
#[derive(Deserialize)]
struct ExtendedBalance {
    balance: Amount,
    #[serde(default)]
    hold_trade: Option<Amount>,
    #[serde(default)]
    credit: Option<Amount>,
    #[serde(default)]
    credit_used: Option<Amount>,
}

/// The TradeBalance result; only the equivalent balance `eb` is read.
#[derive(Deserialize)]
struct TradeBalanceResult {
    #[serde(default)]
    eb: Option<Amount>,
}

/// Parses a BalanceEx answer. `"result":{}` is an empty account; an answer without an error and
/// without a result object (missing, `null`, another JSON type) is [`KrakenError::NoResult`],
/// never an empty account, so no asset reads 0 by accident.
pub fn balance_ex(status: u16, body: &[u8]) -> Result<Vec<AssetBalance>, KrakenError> {
    let result: HashMap<String, ExtendedBalance> = envelope_object(status, body)?;
    let mut balances = result
        .into_iter()
        .map(|(code, entry)| {
            let total = entry.balance.value(&code)?;
            let optional = |amount: &Option<Amount>| match amount {
                Some(amount) => amount.value(&code),
                None => Ok(0.0),
            };
            let hold = optional(&entry.hold_trade)?;
            let credit = optional(&entry.credit)?;
            let credit_used = optional(&entry.credit_used)?;
            Ok(AssetBalance {
                code,
                total,
                hold: Some(hold),
                credit,
                credit_used,
            })
        })
        .collect::<Result<Vec<_>, KrakenError>>()?;
    balances.sort_by(|a, b| a.code.cmp(&b.code));
    Ok(balances)
}

/// Parses a Balance answer; an empty or missing result reads as for BalanceEx ([`balance_ex`]).
pub fn balance(status: u16, body: &[u8]) -> Result<Vec<AssetBalance>, KrakenError> {
    let result: HashMap<String, Amount> = envelope_object(status, body)?;
    let mut balances = result
        .into_iter()
        .map(|(code, amount)| {
            let total = amount.value(&code)?;
            Ok(AssetBalance {
                code,
                total,
                hold: None,
                credit: 0.0,
                credit_used: 0.0,
            })
        })
        .collect::<Result<Vec<_>, KrakenError>>()?;
    balances.sort_by(|a, b| a.code.cmp(&b.code));
    Ok(balances)
}

/// Parses a TradeBalance answer into the equivalent balance `eb`, sent as a string or a number.
pub fn trade_balance(status: u16, body: &[u8]) -> Result<f64, KrakenError> {
    let result: Option<TradeBalanceResult> = envelope(status, body)?;
    result
        .and_then(|r| r.eb)
        .ok_or_else(|| KrakenError::Decode("TradeBalance answered without eb".to_owned()))?
        .value("eb")
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use crate::error::Reason;

    fn find<'a>(balances: &'a [AssetBalance], code: &str) -> &'a AssetBalance {
        balances.iter().find(|b| b.code == code).unwrap()
    }

    #[test]
    fn balance_ex_with_string_amounts_keeps_every_decimal_and_the_hold() {
        let balances = balance_ex(200, STRINGS).unwrap();
        assert_eq!(balances.len(), 5);
        let xbt = find(&balances, "XXBT");
        assert_eq!(xbt.total, 1.2345678901);
        assert_eq!(xbt.hold, Some(0.1));
        assert_eq!(find(&balances, "ETH2.S").total, 37.9);
        assert_eq!(find(&balances, "DOT28.S").total, 1011.19088779);
        assert_eq!(find(&balances, "USD.M").total, 0.0);
        assert_eq!(find(&balances, "ZUSD").available(), Some(23500.1234));
    }

    #[test]
    fn balance_ex_reads_credit_and_available_follows_krakens_formula() {
        let balances = balance_ex(200, CREDIT_AUTO_EARN).unwrap();
        let usd = find(&balances, "ZUSD");
        assert_eq!((usd.credit, usd.credit_used), (100.0, 40.0));
        // balance + credit - credit_used - hold_trade
        assert_eq!(usd.available(), Some(1050.0));
        let xbt = find(&balances, "XXBT");
        assert_eq!((xbt.credit, xbt.credit_used), (0.0, 0.0), "absent reads 0");
        assert_eq!(
            xbt.available(),
            Some(-0.2),
            "a hold over the base is kept, not clipped"
        );
        assert_eq!(find(&balances, "XBT.F").available(), Some(1.5));
    }

    #[test]
    fn balance_ex_with_number_amounts_parses_the_same() {
        let balances = balance_ex(200, NUMBERS).unwrap();
        assert_eq!(find(&balances, "XXBT").total, 1.2345678901);
        assert_eq!(find(&balances, "XETH").total, 37.9);
        assert_eq!(find(&balances, "XETH").hold, Some(0.0));
    }

    #[test]
    fn balance_has_no_hold() {
        let balances = balance(200, BALANCE).unwrap();
        assert_eq!(balances.len(), 4);
        assert_eq!(find(&balances, "DOT.S").total, 300.75);
        assert_eq!(find(&balances, "ZEUR").total, 0.0);
        assert_eq!(find(&balances, "XXBT").hold, None);
    }

    #[test]
    fn an_explicit_empty_result_is_an_empty_account() {
        assert_eq!(balance_ex(200, EMPTY_ACCOUNT).unwrap(), vec![]);
        assert_eq!(balance(200, EMPTY_ACCOUNT).unwrap(), vec![]);
    }

    /// Both readers fail with `no_result` on `body`, naming the shape.
    fn no_result(body: &[u8], shape: &str) {
        for err in [
            balance_ex(200, body).unwrap_err(),
            balance(200, body).unwrap_err(),
        ] {
            assert_eq!(err.reason(), Reason::NoResult, "{err}");
            assert!(err.to_string().contains(shape), "{err}");
        }
    }

    #[test]
    fn an_answer_without_a_result_is_not_an_empty_account() {
        no_result(NO_RESULT, "missing");
    }

    #[test]
    fn a_null_result_is_not_an_empty_account() {
        no_result(br#"{"error":[],"result":null}"#, "null");
    }

    #[test]
    fn an_array_result_is_not_an_empty_account() {
        no_result(br#"{"error":[],"result":[]}"#, "an array");
        no_result(br#"{"error":[],"result":[{"XXBT":"1"}]}"#, "an array");
    }

    #[test]
    fn a_string_result_is_not_an_empty_account() {
        no_result(br#"{"error":[],"result":""}"#, "a string");
    }

    #[test]
    fn a_number_result_is_not_an_empty_account() {
        no_result(br#"{"error":[],"result":0}"#, "a number");
    }

    #[test]
    fn a_kraken_error_without_a_result_stays_kraken_s_error() {
        let err = balance_ex(200, INVALID_KEY).unwrap_err();
        assert_eq!(err.reason(), Reason::InvalidKey);
        let err = balance(200, br#"{"error":["EAPI:Invalid nonce"],"result":null}"#).unwrap_err();
        assert_eq!(err.reason(), Reason::InvalidNonce);
    }

    #[test]
    fn truncated_and_non_numeric_bodies_are_decode_errors() {
        assert_eq!(
            balance_ex(200, TRUNCATED).unwrap_err().reason(),
            Reason::Decode
        );
        let bad = br#"{"error":[],"result":{"XXBT":{"balance":"lots"}}}"#;
        assert_eq!(balance_ex(200, bad).unwrap_err().reason(), Reason::Decode);
        assert_eq!(balance(200, b"null").unwrap_err().reason(), Reason::Decode);
    }

    #[test]
    fn documented_balance_answers_parse() {
        let balances = balance_ex(200, DOC_BALANCE_EX).unwrap();
        assert_eq!(balances.len(), 2);
        assert_eq!(find(&balances, "XXBT").total, 1.2435);
        assert_eq!(find(&balances, "XXBT").hold, Some(0.8423));
        assert_eq!(find(&balances, "ZUSD").total, 25435.21);
        assert_eq!(find(&balances, "ZUSD").hold, Some(8249.76));

        let balances = balance(200, DOC_BALANCE).unwrap();
        assert_eq!(balances.len(), 10);
        assert_eq!(find(&balances, "XXBT").total, 1011.19088779);
        assert_eq!(find(&balances, "ETH2.S").total, 198.39708);
        assert_eq!(find(&balances, "ETH2").total, 2.588557433);
        assert_eq!(find(&balances, "USD.M").total, 1213029.278);
        assert_eq!(find(&balances, "DAI").total, 9999.9999999999);
        assert!(balances.iter().all(|b| b.hold.is_none()));
    }

    #[test]
    fn documented_trade_balance_parses() {
        assert_eq!(trade_balance(200, DOC_TRADE_BALANCE).unwrap(), 1101.3425);
    }

    #[test]
    fn trade_balance_reads_eb_as_string_or_number() {
        assert_eq!(trade_balance(200, TRADE_BALANCE).unwrap(), 112345.6789);
        assert_eq!(trade_balance(200, TRADE_BALANCE_NUMBERS).unwrap(), 1500.25);
        assert_eq!(
            trade_balance(200, NO_RESULT).unwrap_err().reason(),
            Reason::Decode
        );
        assert_eq!(
            trade_balance(200, PERMISSION_DENIED).unwrap_err().reason(),
            Reason::PermissionDenied
        );
    }
}
