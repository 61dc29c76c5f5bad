//! Helpers shared by the client's tests: clients of every kind pointed at a simulated Kraken.
//!
//! Owns only test helpers. Must not: be compiled outside tests.

use std::sync::Arc;
use std::time::Duration;

use super::{BalanceEndpoint, ClientOptions, KrakenClient, http_client};
use crate::nonce::{NonceSource, SystemClock};
use crate::observer::{CallObserver, CountingObserver};
use crate::sim::{SimKraken, SimOptions};

pub(super) const TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn options(sim: &SimKraken) -> ClientOptions {
    ClientOptions {
        api_url: format!("{}/", sim.url()),
        timeout: TIMEOUT,
        balance_endpoint: BalanceEndpoint::Auto,
    }
}

pub(super) fn signed(sim: &SimKraken, metrics: &Arc<CountingObserver>) -> KrakenClient {
    KrakenClient::new(
        http_client(TIMEOUT).unwrap(),
        options(sim),
        sim.credentials(),
        Arc::new(NonceSource::new(Box::new(SystemClock))),
        "main".into(),
        Arc::clone(metrics) as Arc<dyn CallObserver>,
    )
}

pub(super) fn public(sim: &SimKraken, metrics: &Arc<CountingObserver>) -> KrakenClient {
    KrakenClient::public(
        http_client(TIMEOUT).unwrap(),
        options(sim),
        "_public".into(),
        Arc::clone(metrics) as Arc<dyn CallObserver>,
    )
    .with_public_spacing(Duration::ZERO)
}

pub(super) fn signed_with(
    sim: &SimKraken,
    metrics: &Arc<CountingObserver>,
    endpoint: BalanceEndpoint,
) -> KrakenClient {
    KrakenClient::new(
        http_client(TIMEOUT).unwrap(),
        ClientOptions {
            balance_endpoint: endpoint,
            ..options(sim)
        },
        sim.credentials(),
        Arc::new(NonceSource::new(Box::new(SystemClock))),
        "main".into(),
        Arc::clone(metrics) as Arc<dyn CallObserver>,
    )
}

pub(super) async fn start(options: SimOptions) -> SimKraken {
    SimKraken::start(options).await.unwrap()
}
