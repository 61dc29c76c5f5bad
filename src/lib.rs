//! A Prometheus exporter for the balances of Kraken exchange accounts.
//!
//! # Layout
//!
//! - [`cli`] parses flags into a raw [`cli::Cli`]; [`config`] resolves flags, environment
//!   variables and credential files once into a validated [`config::Config`].
//! - [`secret`] holds the credential types that never print their contents.
//! - [`kraken`] is the only module that knows Kraken's wire format: signing ([`kraken::sign`]),
//!   nonces ([`kraken::nonce`]), pure response parsing ([`kraken::parse`]) and the HTTP client
//!   ([`kraken::client`]).
//! - [`audit`] tells whether the API key can do more than read balances (withdraw, trade).
//! - [`asset_names`] resolves the asset names an operator writes (`BTC`, `xxbt`) to Kraken's
//!   short names; [`spendable`] sums what each base asset can spend now.
//! - [`valuation`] prices held assets in the operator's quote currency.
//! - [`refresh`] decides when Kraken is called: minimum interval, single-flight, backoff,
//!   staleness, and keeps each account's latest [`refresh::Snapshot`].
//! - [`metrics`] renders snapshots and request counters as the Prometheus exposition; it does
//!   no I/O.
//! - [`server`] is the HTTP front: `/metrics`, the landing page, health and readiness.
//! - [`web_config`] loads `--web.config.file` (TLS, client certificates, basic auth, headers).
//! - [`sim`] is a simulated Kraken on 127.0.0.1, the backend of `--demo` and of the tests.
//! - [`check`] is the one-shot `kraken_exporter check` command.
//! - [`app`] wires the pieces together for `main` and the tests.

pub mod app;
pub mod asset_names;
pub mod audit;
pub mod check;
pub mod cli;
pub mod config;
pub mod duration;
pub mod exporter;
pub mod kraken;
pub mod logging;
pub mod market;
pub mod metrics;
pub mod refresh;
pub mod secret;
pub mod server;
pub mod sim;
pub mod spendable;
pub mod valuation;
pub mod web_config;
