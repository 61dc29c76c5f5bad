//! The HTTP front: the exposition, `/probe`, the landing page, health, readiness and reload,
//! over plain HTTP or TLS, with the web configuration file applied.
//!
//! # Layout
//!
//! - `server`: `run` and [`serve`], the accept loop, each connection and its timeouts, request
//!   bounds, and graceful shutdown;
//! - `slots`: the connection cap, what each connection is doing, and which one gives its slot
//!   to a newcomer;
//! - `routes`: what each path answers, and [`scrape_wait`];
//! - `landing`: the HTML page at `/`;
//! - [`security`]: `--web.config.file` applied (TLS acceptor, rate limit, basic auth, headers);
//!   the file itself is read and checked by the configuration ([`crate::config::WebSecurity`]).
//!
//! Must not: call Kraken directly (it asks [`crate::exporter::Exporter`], which asks each
//! [`crate::account::Account`] for a status), or answer anything but 200 on the metrics path
//! because Kraken failed.

mod landing;
mod routes;
pub mod security;
mod server;
mod slots;

pub use routes::scrape_wait;
pub(crate) use server::run;
pub use server::{MAX_CONNECTIONS, serve};
