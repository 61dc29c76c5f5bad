//! Everything that knows Kraken's wire format.
//!
//! Owns request signing, nonces, the HTTP client and the pure parsers of Kraken's answers.
//! Must not: decide when Kraken is called (that is [`crate::refresh`]) or render metrics.
//! No other module builds a Kraken URL, reads a Kraken body or matches a Kraken error string.

pub mod client;
pub mod error;
pub mod nonce;
pub mod parse;
pub mod sign;

pub use client::{BalanceEndpoint, ClientOptions, KrakenClient, TICKER_BATCH};
pub use error::{KrakenError, Reason};
pub use parse::{ApiKeyInfo, AssetBalance, AssetInfo, AssetTable, PairInfo, PairTable};
