//! Pure parsers for Kraken's answers: bytes in, typed values or a classified error out.
//!
//! Owns the shape of every answer the client reads, one file per job: `envelope.rs` the JSON
//! envelope (`{"error": [...], "result": ...}`, also on answers whose HTTP status is not 200),
//! the classification of its errors and amounts as Kraken writes them; `balances.rs` Balance,
//! BalanceEx and TradeBalance; `key_info.rs` GetApiKeyInfo and WithdrawMethods; `earn.rs`
//! Earn/Allocations; `funding.rs` DepositStatus, WithdrawStatus, GetWebSocketsToken and
//! SystemStatus; `market.rs` the public Assets, AssetPairs and Ticker, and the naming of raw
//! asset codes. Every shape is tested on Kraken's documented example answers
//! (`tests/fixtures/kraken/doc_*.json`, sources in `tests/fixtures/kraken/SOURCES.md`).
//! Must not: do I/O, look at anything but the status and the body it is given, or interpret what
//! an answer means for the operator (permission names are kept raw; the exporter's key audit
//! reads them).

mod balances;
mod earn;
mod envelope;
#[cfg(test)]
mod fixtures;
mod funding;
mod key_info;
mod market;

pub use balances::{AssetBalance, balance, balance_ex, trade_balance};
pub use earn::EarnAllocation;
pub(crate) use earn::earn_allocations;
pub(crate) use earn::parse_rfc3339;
pub use envelope::at_kraken_precision;
pub use funding::{Movement, MovementStatus, SystemState, SystemStatus, WebSocketToken};
pub(crate) use funding::{deposit_status, system_status, websocket_token, withdraw_status};
pub use key_info::{ApiKeyInfo, KeyExpiry, api_key_info, withdraw_methods};
pub(crate) use market::ticker_every_pair;
pub use market::{AssetInfo, AssetTable, PairInfo, PairTable, asset_pairs, assets, ticker};
