//! A Prometheus exporter for the balances of Kraken exchange accounts.
//!
//! # Layout
//!
//! Layers point one way, from the wire format at the bottom to the wiring at the top; the
//! modules are listed bottom-up, and ARCHITECTURE.md states which imports never happen.
//!
//! - [`problem`] parses YAML with the place of each mistake and lists problems, for both the
//!   config file and the web configuration file; it imports neither.
//! - [`secret`] holds the credential types that never print their contents; [`duration`]
//!   parses Prometheus-style durations.
//! - [`kraken`] is the only module that knows Kraken's wire format: the closed set of methods
//!   ([`kraken::Endpoint`]), signing ([`kraken::sign`]), nonces ([`kraken::nonce`]), pure
//!   response parsing ([`kraken::parse`]), the HTTP client ([`kraken::client`]), which reports
//!   each call to a [`kraken::CallObserver`], and the simulated Kraken of `--demo` and the tests
//!   ([`kraken::sim`]). It imports nothing but [`secret`].
//! - [`audit`] tells whether the API key can do more than read balances (withdraw, trade).
//! - [`asset_names`] resolves the asset names an operator writes (`BTC`, `xxbt`) to Kraken's
//!   short names; [`spendable`] sums what each base asset can spend now.
//! - [`valuation`] prices held assets in the operator's quote currency.
//! - [`status`] is what is known about an account ([`status::Snapshot`],
//!   [`status::AccountStatus`]): plain types shared by everything above.
//! - [`process`] reads the exporter's own CPU, memory, file descriptors and start time for the
//!   `process_*` metrics.
//! - [`metrics`] renders statuses and request counters as the Prometheus exposition; it does
//!   no I/O. Its [`metrics::RequestMetrics`] is the client's call observer.
//! - [`market`] keeps the public data every account shares: asset names, pairs, prices.
//! - [`account`] decides when Kraken is called (minimum interval, single-flight, backoff in
//!   [`account::policy`], staleness) and keeps each account's latest snapshot.
//! - [`cli`] parses flags into a raw [`cli::Cli`]; [`config`] resolves flags, environment
//!   variables and credential files once into a validated [`config::Config`].
//! - [`exporter`] holds the running account set and assembles one scrape.
//! - [`web`] is the HTTP front: `/metrics`, `/probe`, the landing page, health, readiness and
//!   reload; [`web::security`] loads `--web.config.file` (TLS, client certificates, basic auth,
//!   rate limit, headers).
//! - [`check`] is the one-shot `kraken_exporter check` command; [`mixin`] writes the
//!   monitoring files (`kraken_exporter mixin`) and imports nothing of the exporter.
//! - [`app`] wires the pieces together for `main` and the tests; [`logging`] sets up the logs.

pub mod account;
pub mod app;
pub(crate) mod asset_names;
pub mod audit;
pub mod check;
pub mod cli;
pub mod config;
pub mod duration;
pub(crate) mod exporter;
pub(crate) mod exposition;
pub(crate) mod features;
pub(crate) mod keys;
pub mod logging;
pub(crate) mod market;
pub mod metrics;
pub mod mixin;
pub(crate) mod problem;
pub(crate) mod process;
pub(crate) mod spendable;
pub mod status;
pub(crate) mod valuation;
pub mod web;
