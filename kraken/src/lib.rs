//! Kraken's wire format, and the simulated Kraken that speaks it back.
//!
//! Owns the closed set of methods ([`Endpoint`]), the credential types ([`secret`]), request
//! signing, nonces, the HTTP client, the pure parsers of Kraken's answers, [`stream`], the
//! client of the WebSocket v2 `balances` channel, and [`sim`], the in-process Kraken (REST and
//! WebSocket) of `--demo` and the tests.
//!
//! Must not: know anything of the exporter that uses it (Prometheus, refresh policy, account
//! state, command line, configuration, the HTTP server). This is a crate of its own so the
//! compiler keeps that promise: its manifest names no metrics, CLI or web-server crate, and it
//! cannot name the exporter's modules. Calls are reported through [`CallObserver`], and when to
//! call is decided by the caller. Nothing outside this crate builds a Kraken URL, reads a
//! Kraken body or matches a Kraken error string.

pub mod client;
pub mod endpoint;
pub mod error;
pub mod nonce;
pub mod observer;
pub mod parse;
pub mod secret;
pub mod sign;
pub mod sim;
pub mod stream;

pub use client::{
    BalanceEndpoint, ClientOptions, KrakenClient, PUBLIC_CALL_SPACING, TICKER_BATCH, TickerPrices,
};
pub use endpoint::Endpoint;
pub use error::{KrakenError, Reason};
pub use observer::CallObserver;
pub use parse::{
    ApiKeyInfo, AssetBalance, AssetInfo, AssetTable, EarnAllocation, KeyExpiry, Movement,
    MovementStatus, PairInfo, PairTable, SystemState, SystemStatus, WebSocketToken,
    at_kraken_precision,
};
pub use stream::{BalanceStream, StreamError, StreamEvent};
