//! Kraken's answers the parsers' tests read: Kraken's documented examples (`doc_*.json`) and
//! answers seen or shaped after Kraken's schemas, all under `tests/fixtures/kraken/`.
//!
//! Owns only test data. Must not: be compiled outside tests.

use std::time::{Duration, SystemTime};

pub(super) const STRINGS: &[u8] =
    include_bytes!("../../../tests/fixtures/kraken/balance_ex_strings.json");
pub(super) const NUMBERS: &[u8] =
    include_bytes!("../../../tests/fixtures/kraken/balance_ex_numbers.json");
pub(super) const BALANCE: &[u8] = include_bytes!("../../../tests/fixtures/kraken/balance.json");
/// BalanceEx with auto-earn on (the base code at 0 under a hold, the coins in `XBT.F`) and a
/// credit line, shaped as Kraken's BalanceEx schema documents `credit` and `credit_used`.
pub(super) const CREDIT_AUTO_EARN: &[u8] =
    include_bytes!("../../../tests/fixtures/kraken/balance_ex_credit_auto_earn.json");
/// An answer without an error and without `result`, as an empty account has been seen to answer
/// (rotki #946): not a reading of the account.
pub(super) const NO_RESULT: &[u8] = include_bytes!("../../../tests/fixtures/kraken/no_result.json");
/// An empty account as a balance answer reads it: `"result":{}`.
pub(super) const EMPTY_ACCOUNT: &[u8] =
    include_bytes!("../../../tests/fixtures/kraken/empty_account.json");
pub(super) const ASSETS: &[u8] = include_bytes!("../../../tests/fixtures/kraken/assets.json");
pub(super) const CLOUDFLARE: &[u8] =
    include_bytes!("../../../tests/fixtures/kraken/cloudflare_520.html");
pub(super) const INVALID_KEY: &[u8] =
    include_bytes!("../../../tests/fixtures/kraken/error_invalid_key.json");
pub(super) const WARNING: &[u8] =
    include_bytes!("../../../tests/fixtures/kraken/error_with_warning.json");
pub(super) const TRUNCATED: &[u8] = include_bytes!("../../../tests/fixtures/kraken/truncated.json");
pub(super) const PAIRS: &[u8] = include_bytes!("../../../tests/fixtures/kraken/asset_pairs.json");
pub(super) const TICKER: &[u8] = include_bytes!("../../../tests/fixtures/kraken/ticker.json");
pub(super) const TICKER_NUMBERS: &[u8] =
    include_bytes!("../../../tests/fixtures/kraken/ticker_numbers.json");
pub(super) const TICKER_NO_LAST: &[u8] =
    include_bytes!("../../../tests/fixtures/kraken/ticker_no_last_price.json");
pub(super) const KEY_INFO: &[u8] =
    include_bytes!("../../../tests/fixtures/kraken/doc_api_key_info.json");
pub(super) const KEY_EVERY_CODE: &[u8] =
    include_bytes!("../../../tests/fixtures/kraken/api_key_info_every_code.json");
pub(super) const KEY_NO_PERMISSIONS: &[u8] =
    include_bytes!("../../../tests/fixtures/kraken/api_key_info_no_permissions.json");
pub(super) const DOC_BALANCE_EX: &[u8] =
    include_bytes!("../../../tests/fixtures/kraken/doc_balance_ex.json");
pub(super) const DOC_BALANCE: &[u8] =
    include_bytes!("../../../tests/fixtures/kraken/doc_balance.json");
pub(super) const DOC_TRADE_BALANCE: &[u8] =
    include_bytes!("../../../tests/fixtures/kraken/doc_trade_balance.json");
pub(super) const DOC_ASSETS: &[u8] =
    include_bytes!("../../../tests/fixtures/kraken/doc_assets.json");
pub(super) const DOC_PAIRS: &[u8] =
    include_bytes!("../../../tests/fixtures/kraken/doc_asset_pairs.json");
pub(super) const DOC_TICKER: &[u8] =
    include_bytes!("../../../tests/fixtures/kraken/doc_ticker.json");
pub(super) const DOC_EARN: &[u8] =
    include_bytes!("../../../tests/fixtures/kraken/doc_earn_allocations.json");
pub(super) const EARN_STATES: &[u8] =
    include_bytes!("../../../tests/fixtures/kraken/earn_allocations_states.json");
pub(super) const DOC_ERROR: &[u8] = include_bytes!("../../../tests/fixtures/kraken/doc_error.json");
pub(super) const THROTTLED_SPACED: &[u8] =
    include_bytes!("../../../tests/fixtures/kraken/error_throttled_spaced.json");
pub(super) const DATABASE: &[u8] =
    include_bytes!("../../../tests/fixtures/kraken/error_database.json");
/// Kraken's documented transient errors (`EGeneral:Internal error[:code]`,
/// `EService:Deadline elapsed`) and trading mode (`EService:Market in post_only mode`).
pub(super) const TRANSIENT: [&[u8]; 4] = [
    include_bytes!("../../../tests/fixtures/kraken/error_internal.json"),
    include_bytes!("../../../tests/fixtures/kraken/error_internal_code.json"),
    include_bytes!("../../../tests/fixtures/kraken/error_deadline_elapsed.json"),
    include_bytes!("../../../tests/fixtures/kraken/error_post_only.json"),
];
pub(super) const WITHDRAW_METHODS: &[u8] =
    include_bytes!("../../../tests/fixtures/kraken/withdraw_methods.json");
pub(super) const TRADE_BALANCE: &[u8] =
    include_bytes!("../../../tests/fixtures/kraken/trade_balance.json");
pub(super) const TRADE_BALANCE_NUMBERS: &[u8] =
    include_bytes!("../../../tests/fixtures/kraken/trade_balance_numbers.json");
pub(super) const PERMISSION_DENIED: &[u8] =
    include_bytes!("../../../tests/fixtures/kraken/error_permission_denied.json");
pub(super) const UNKNOWN_METHOD: &[u8] =
    include_bytes!("../../../tests/fixtures/kraken/error_unknown_method.json");
pub(super) const UNKNOWN_PAIR: &[u8] =
    include_bytes!("../../../tests/fixtures/kraken/error_unknown_pair.json");

/// Unix seconds as a time, for expected values.
pub(super) fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}
pub(super) const DOC_DEPOSITS: &[u8] =
    include_bytes!("../../../tests/fixtures/kraken/doc_deposit_status.json");
pub(super) const DOC_WITHDRAWALS: &[u8] =
    include_bytes!("../../../tests/fixtures/kraken/doc_withdraw_status.json");
pub(super) const DOC_WS_TOKEN: &[u8] =
    include_bytes!("../../../tests/fixtures/kraken/doc_websockets_token.json");
pub(super) const DOC_SYSTEM_STATUS: &[u8] =
    include_bytes!("../../../tests/fixtures/kraken/doc_system_status.json");
