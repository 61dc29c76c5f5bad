//! A Prometheus exporter for Kraken exchange accounts: balances, money in motion, key hygiene.
//!
//! # Layout
//!
//! Kraken's wire format and the simulated Kraken are the `kraken` crate, which knows nothing
//! of this one. Here, modules are listed from the leaves up; ARCHITECTURE.md states which
//! imports never happen.
//!
//! - [`exposition`] writes the text format: families declared once ([`exposition::Family`]),
//!   put in name order, with their HELP and TYPE.
//! - [`problem`] parses YAML with the place of each mistake, for both config files;
//!   [`duration`] parses Prometheus-style durations.
//! - [`status`] is what is known about an account ([`status::AccountStatus`], each feature's
//!   state as a [`status::FeatureView`]): plain types shared by everything above.
//! - [`audit`] interprets a key's permissions and hygiene; [`asset_names`] resolves the names an
//!   operator writes; [`spendable`] sums what each base asset can spend; [`valuation`] prices
//!   held assets; [`market`] keeps the public data every account shares.
//! - [`features`] has one unit per Kraken-backed feature (balances, key info, Earn,
//!   TradeBalance, money in flight, the balances stream, prices, system status) and the seam
//!   they share: what each calls, on which schedule, how the answer becomes state, which
//!   families it writes.
//! - [`metrics`] assembles a scrape and keeps the request counters; it does no I/O.
//! - [`account`] decides when Kraken is called (minimum interval, single-flight, backoff, the
//!   key lock, staleness) and runs an account's features; [`keys`] gives every account of one
//!   key the same nonce counter and call lock across reloads.
//! - [`cli`] parses flags; [`config`] resolves flags, environment and files once into a
//!   validated [`config::Config`] (and reads the web configuration file).
//! - [`exporter`] holds the running account set and assembles one scrape.
//! - [`web`] is the HTTP front: `/metrics`, `/probe`, the status page, health, readiness and
//!   reload, the connection cap and TLS.
//! - [`check`] is `kraken_exporter check`; [`mixin`] is `kraken_exporter mixin`.
//! - [`app`] wires the pieces together for `main` and the tests; [`logging`] sets up the logs;
//!   [`process`] reads the `process_*` figures.

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
