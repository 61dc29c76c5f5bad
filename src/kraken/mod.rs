//! Everything that knows Kraken's wire format, and the simulated Kraken that speaks it back.
//!
//! Owns the closed set of methods ([`Endpoint`]), request signing, nonces, the HTTP client, the
//! pure parsers of Kraken's answers, and [`sim`], the in-process Kraken of `--demo` and the tests.
//! Must not: import anything from the exporter above it (metrics, refresh policy, account state,
//! exporter, command line, configuration): calls are reported through [`CallObserver`], and
//! when to call is decided by the caller. No other module builds a Kraken URL, reads a Kraken
//! body or matches a Kraken error string.

pub mod client;
pub mod endpoint;
pub mod error;
pub mod nonce;
pub mod observer;
pub mod parse;
pub mod sign;
pub mod sim;

pub use client::{BalanceEndpoint, ClientOptions, KrakenClient, TICKER_BATCH};
pub use endpoint::Endpoint;
pub use error::{KrakenError, Reason};
pub use observer::CallObserver;
pub use parse::{ApiKeyInfo, AssetBalance, AssetInfo, AssetTable, PairInfo, PairTable};
