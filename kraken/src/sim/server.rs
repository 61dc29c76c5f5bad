//! The simulated Kraken's HTTP side: accepting connections and routing each request.
//!
//! Owns the accept loop, one task per connection, and the order in which a request is handled
//! (see the module docs of [`super`]).
//! Must not: decide what a method answers (that is `answers.rs`), how a call is authenticated
//! (that is `auth.rs`) or how an answer is framed (that is `response.rs`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::answers;
use super::auth::authenticate;
use super::faults::fault_response;
use super::response::{SimBody, envelope_error, json_response};
use super::state::Shared;
use crate::endpoint::Endpoint;

/// Largest private request body read; a balance call is a few dozen bytes.
const MAX_REQUEST_BODY: usize = 64 * 1024;

/// Resolves once the sim is shut down (or its handle is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // An error means the handle was dropped, which also means stop.
    let _ = shutdown.wait_for(|&stopped| stopped).await;
}

/// Accepts connections until shutdown; one task per connection.
pub(super) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let connection_shutdown = shutdown.clone();
    loop {
        tokio::select! {
            () = stopped(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(serve_connection(
                        stream,
                        Arc::clone(&shared),
                        connection_shutdown.clone(),
                    ));
                }
                Err(error) => {
                    tracing::debug!(%error, "simulated Kraken failed to accept a connection");
                    // Avoid spinning when the process is out of file descriptors.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
    // Closed before telling anyone, so a waiter finds the port closed.
    drop(listener);
    shared.listener_closed.notify_one();
}

/// Serves one HTTP/1 connection until the client closes it or the sim shuts down.
async fn serve_connection(
    stream: TcpStream,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let service = service_fn(move |request| handle(Arc::clone(&shared), request));
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        result = connection => {
            if let Err(error) = result {
                tracing::debug!(%error, "simulated Kraken connection ended with an error");
            }
        }
        // Dropping the connection closes the socket and ends any hang or trickle on it.
        () = stopped(&mut shutdown) => {}
    }
}

/// Answers one request, in the order documented in [`super`].
async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<SimBody>, Infallible> {
    let endpoint = Endpoint::from_path(request.uri().path());
    let fault = endpoint.and_then(|e| shared.record_call(e));
    if !shared.latency.is_zero() {
        tokio::time::sleep(shared.latency).await;
    }
    let Some(endpoint) = endpoint else {
        return Ok(json_response(
            StatusCode::NOT_FOUND,
            envelope_error("EGeneral:Unknown method"),
        ));
    };
    if let Some(fault) = fault {
        return Ok(fault_response(fault).await);
    }

    let (expected_method, allow) = if endpoint.is_private() {
        (Method::POST, "POST")
    } else {
        (Method::GET, "GET")
    };
    if request.method() != expected_method {
        let mut response = json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            envelope_error("EGeneral:Invalid arguments"),
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        return Ok(response);
    }

    if endpoint == Endpoint::GetApiKeyInfo && !shared.api_key_info_enabled {
        return Ok(json_response(
            StatusCode::NOT_FOUND,
            envelope_error("EGeneral:Unknown method"),
        ));
    }

    let body = if endpoint.is_private() {
        answer_private(&shared, endpoint, request).await
    } else if !shared.state().charge_public(shared.public_rate_limit) {
        envelope_error("EGeneral:Too many requests")
    } else {
        answers::public(&shared, endpoint, request.uri().query())
    };
    Ok(json_response(StatusCode::OK, body))
}

/// Reads a private call's body, authenticates it, and answers it.
async fn answer_private(
    shared: &Shared,
    endpoint: Endpoint,
    request: Request<Incoming>,
) -> Vec<u8> {
    let (parts, incoming) = request.into_parts();
    let bytes = match Limited::new(incoming, MAX_REQUEST_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return envelope_error("EGeneral:Invalid arguments"),
    };
    let authenticated = authenticate(
        &shared.credentials,
        shared.rate_limit,
        &mut shared.state().key,
        endpoint.path(),
        &parts.headers,
        &bytes,
    );
    match authenticated.and_then(|params| shared.permits(endpoint).map(|()| params)) {
        Err(message) => envelope_error(message),
        Ok(params) => answers::private(shared, endpoint, &params),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::*;
    use crate::endpoint::Endpoint;
    use crate::sim::SimOptions;

    #[tokio::test]
    async fn unknown_paths_and_wrong_methods_are_http_errors() {
        let sim = start(SimOptions::default()).await;
        let response = http()
            .post(format!("{}/0/private/AddOrder", sim.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(
            response.text().await.unwrap(),
            r#"{"error":["EGeneral:Unknown method"]}"#
        );
        let response = http()
            .get(format!("{}/0/public/Nonsense", sim.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
        assert_eq!(
            response.text().await.unwrap(),
            r#"{"error":["EGeneral:Unknown method"]}"#
        );

        let response = http()
            .get(format!("{}/0/private/Balance", sim.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()["allow"], "POST");
    }

    #[tokio::test]
    async fn public_calls_over_the_public_limit_are_too_many_requests() {
        let sim = start(SimOptions {
            public_rate_limit: Some(crate::sim::PUBLIC_RATE_LIMIT),
            ..SimOptions::default()
        })
        .await;
        let ticker = "/0/public/Ticker?pair=XXBTZUSD";
        assert!(errors(&get_json(&sim, ticker).await).is_empty());
        assert!(errors(&get_json(&sim, "/0/public/Assets").await).is_empty());
        assert_eq!(
            errors(&get_json(&sim, ticker).await),
            ["EGeneral:Too many requests"],
            "a third public call at once is over Kraken's per-IP limit"
        );
        // Private calls have their own per-key counter.
        assert!(errors(&call(&sim, Endpoint::Balance, 1).await).is_empty());
        let unlimited = start(SimOptions::default()).await;
        for _ in 0..5 {
            assert!(errors(&get_json(&unlimited, ticker).await).is_empty());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn latency_delays_every_answer() {
        let sim = start(SimOptions {
            latency: Duration::from_millis(250),
            ..SimOptions::default()
        })
        .await;
        let _clock = pace_the_clock();
        let started = tokio::time::Instant::now();
        let response = http()
            .get(format!("{}/0/public/Assets", sim.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(started.elapsed() >= Duration::from_millis(250));
    }

    #[tokio::test]
    async fn a_kraken_without_get_api_key_info_calls_it_an_unknown_method() {
        let sim = start(SimOptions {
            credentials: Some(test_credentials(None)),
            api_key_info_enabled: false,
            ..SimOptions::default()
        })
        .await;
        let response = http()
            .post(format!("{}/0/private/GetApiKeyInfo", sim.url()))
            .body("nonce=1")
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            404,
            "as Kraken answers an unknown method"
        );
        assert_eq!(
            response.text().await.unwrap(),
            r#"{"error":["EGeneral:Unknown method"]}"#
        );
        assert_eq!(sim.last_nonce(), None);
        assert_eq!(sim.calls(Endpoint::GetApiKeyInfo), 1);
    }
}
