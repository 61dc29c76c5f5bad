//! The simulated Kraken's WebSocket v2 side (`ws://127.0.0.1:PORT/v2`), speaking the
//! `balances` channel like `wss://ws-auth.kraken.com/v2`.
//!
//! Owns the accept loop and one task per connection: the `status` message on connecting,
//! `subscribe` with a token check (a refusal answers `ESession:Invalid session`, the error
//! Kraken sends for a token it does not accept), the ack, one WebSocket ping after it, the
//! snapshot (sequence 1), an `update` per posted transaction with the next sequence,
//! `heartbeat` about once a second while subscribed, `ping` → `pong`, and the faults (dropped
//! connections, a skipped sequence, held heartbeats).
//! Must not: decide balances or tokens (the state does), or hold the state's lock across an
//! await.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;

use super::ledger::{
    LedgerRefused, SimLedgerEntry, StreamSignal, apply, kraken_id, rfc3339_micros, snapshot_data,
    update_item,
};
use super::state::Shared;

/// The path of the WebSocket API, as on Kraken (`/v2`).
pub(super) const WS_PATH: &str = "/v2";

/// Time between heartbeats while subscribed (Kraken: about one second).
const HEARTBEAT_PERIOD: Duration = Duration::from_secs(1);

/// Kraken's answer to a subscription with a token it does not accept.
const INVALID_SESSION: &str = "ESession:Invalid session";

type Sink = SplitSink<WebSocketStream<TcpStream>, Message>;

/// Resolves once the sim is shut down (or its handle is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|&stopped| stopped).await;
}

/// Accepts WebSocket connections until shutdown; one task per connection.
pub(super) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = stopped(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // Updates and heartbeats are small frames: send each at once, as Kraken does.
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve(stream, Arc::clone(&shared), shutdown.clone()));
                }
                Err(error) => {
                    tracing::debug!(%error, "simulated Kraken failed to accept a WebSocket");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
}

/// Refuses the handshake of any path but [`WS_PATH`] with HTTP 404.
#[allow(clippy::result_large_err)]
fn check_path(request: &Request, response: Response) -> Result<Response, ErrorResponse> {
    if request.uri().path() == WS_PATH {
        return Ok(response);
    }
    let mut refusal = ErrorResponse::new(Some("not found".into()));
    *refusal.status_mut() = StatusCode::NOT_FOUND;
    Err(refusal)
}

/// One connection's subscription: the sequence of the last message sent.
struct Subscription {
    /// The last sequence sent (1 after the snapshot).
    sequence: u64,
}

/// Serves one WebSocket connection until the client leaves, a fault drops it, or the sim stops.
async fn serve(stream: TcpStream, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let Ok(socket) = tokio_tungstenite::accept_hdr_async(stream, check_path).await else {
        return;
    };
    let mut signals = {
        let mut state = shared.state();
        state.stream.connections += 1;
        state.stream.signals.subscribe()
    };
    let (mut sink, mut source) = socket.split();
    if send(&mut sink, status_message(&shared)).await.is_err() {
        return;
    }
    let mut subscription: Option<Subscription> = None;
    let mut heartbeat =
        tokio::time::interval_at(Instant::now() + HEARTBEAT_PERIOD, HEARTBEAT_PERIOD);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let keep_going = tokio::select! {
            () = stopped(&mut shutdown) => false,
            frame = source.next() => {
                on_frame(frame, &shared, &mut sink, &mut signals, &mut subscription).await
            }
            signal = signals.recv() => on_signal(signal, &shared, &mut sink, &mut subscription).await,
            _ = heartbeat.tick(), if subscription.is_some() => {
                let paused = shared.state().stream.heartbeats_paused;
                paused || send(&mut sink, json!({ "channel": "heartbeat" })).await.is_ok()
            }
        };
        if !keep_going {
            break;
        }
    }
}

/// Handles one frame from the client; false ends the connection.
async fn on_frame(
    frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    shared: &Shared,
    sink: &mut Sink,
    signals: &mut broadcast::Receiver<StreamSignal>,
    subscription: &mut Option<Subscription>,
) -> bool {
    let text = match frame {
        Some(Ok(Message::Text(text))) => text,
        Some(Ok(Message::Pong(_))) => {
            shared.state().stream.pongs += 1;
            return true;
        }
        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return false,
        Some(Ok(_)) => return true,
    };
    let time_in = rfc3339_micros(std::time::SystemTime::now());
    let Ok(request) = serde_json::from_str::<Value>(text.as_str()) else {
        let refusal = json!({ "error": "EGeneral:Invalid arguments", "success": false });
        return send(sink, refusal).await.is_ok();
    };
    let req_id = request.get("req_id").cloned().unwrap_or(Value::Null);
    match request.get("method").and_then(Value::as_str) {
        Some("ping") => {
            let pong = json!({ "method": "pong", "req_id": req_id, "time_in": time_in,
                "time_out": rfc3339_micros(std::time::SystemTime::now()) });
            send(sink, pong).await.is_ok()
        }
        Some("subscribe") if subscription.is_none() => {
            subscribe(&request, shared, sink, signals, subscription, time_in).await
        }
        _ => {
            let refusal = json!({ "error": "EGeneral:Invalid arguments", "method": request.get("method"),
                "req_id": req_id, "success": false, "time_in": time_in,
                "time_out": rfc3339_micros(std::time::SystemTime::now()) });
            send(sink, refusal).await.is_ok()
        }
    }
}

/// Answers `subscribe`: checks the channel and token, then sends the ack, a WebSocket ping and
/// the snapshot. The snapshot is read and the signal receiver renewed under one lock, so every
/// posted transaction is either in the snapshot or in a later update, never both or neither.
async fn subscribe(
    request: &Value,
    shared: &Shared,
    sink: &mut Sink,
    signals: &mut broadcast::Receiver<StreamSignal>,
    subscription: &mut Option<Subscription>,
    time_in: String,
) -> bool {
    let params = request.get("params");
    let channel = params
        .and_then(|p| p.get("channel"))
        .and_then(Value::as_str);
    let token = params.and_then(|p| p.get("token")).and_then(Value::as_str);
    let req_id = request.get("req_id").cloned().unwrap_or(Value::Null);
    let refusal = if channel != Some("balances") {
        Some("EGeneral:Invalid arguments")
    } else if !token.is_some_and(|t| shared.state().stream.accept_token(t, Instant::now())) {
        Some(INVALID_SESSION)
    } else {
        None
    };
    let time_out = || rfc3339_micros(std::time::SystemTime::now());
    if let Some(error) = refusal {
        let answer = json!({ "error": error, "method": "subscribe", "req_id": req_id,
            "success": false, "time_in": time_in, "time_out": time_out() });
        return send(sink, answer).await.is_ok();
    }
    let data = {
        let mut state = shared.state();
        state.stream.subscriptions += 1;
        *signals = state.stream.signals.subscribe();
        let balances = state.balances.clone();
        drop(state);
        snapshot_data(&balances)
    };
    let ack = json!({ "method": "subscribe", "req_id": req_id,
        "result": { "channel": "balances", "snapshot": true },
        "success": true, "time_in": time_in, "time_out": time_out() });
    let snapshot =
        json!({ "channel": "balances", "type": "snapshot", "sequence": 1, "data": data });
    *subscription = Some(Subscription { sequence: 1 });
    send(sink, ack).await.is_ok()
        && sink
            .send(Message::Ping(b"sim".to_vec().into()))
            .await
            .is_ok()
        && send(sink, snapshot).await.is_ok()
}

/// Acts on a signal from the handle; false ends the connection (a dropped connection closes its
/// socket without a close frame).
async fn on_signal(
    signal: Result<StreamSignal, broadcast::error::RecvError>,
    shared: &Shared,
    sink: &mut Sink,
    subscription: &mut Option<Subscription>,
) -> bool {
    match signal {
        Ok(StreamSignal::Drop) => false,
        Ok(StreamSignal::Status) => send(sink, status_message(shared)).await.is_ok(),
        Ok(StreamSignal::Update { entries, skip }) => {
            let Some(subscription) = subscription else {
                return true;
            };
            subscription.sequence += if skip { 2 } else { 1 };
            let update = json!({ "channel": "balances", "type": "update",
                "sequence": subscription.sequence, "data": *entries });
            send(sink, update).await.is_ok()
        }
        Err(broadcast::error::RecvError::Lagged(_)) => true,
        Err(broadcast::error::RecvError::Closed) => false,
    }
}

/// Applies a transaction to the balances and sends its `update` to every connection, under one
/// lock so updates go out in the order the transactions were applied. See
/// [`super::SimKraken::post_transaction`].
pub(super) fn post_transaction(
    shared: &Shared,
    entries: Vec<SimLedgerEntry>,
) -> Result<(), LedgerRefused> {
    let mut state = shared.state();
    let totals = apply(&mut state.balances, &entries)?;
    let ref_id = kraken_id("T", 19);
    let items: Vec<Value> = entries
        .iter()
        .zip(totals)
        .map(|(entry, total)| update_item(entry, &kraken_id("L", 19), &ref_id, total))
        .collect();
    let skip = std::mem::take(&mut state.stream.skip_next);
    let _ = state.stream.signals.send(StreamSignal::Update {
        entries: Arc::new(items),
        skip,
    });
    Ok(())
}

/// The `status` message: the exchange's mode, as sent on connecting and on a change.
fn status_message(shared: &Shared) -> Value {
    let (system, connection_id) = {
        let state = shared.state();
        (
            state.system_status.as_str().to_owned(),
            state.stream.connections,
        )
    };
    json!({ "channel": "status", "type": "update", "data": [{
        "api_version": "v2", "connection_id": connection_id, "system": system, "version": "2.0.0",
    }] })
}

async fn send(sink: &mut Sink, message: Value) -> Result<(), ()> {
    sink.send(Message::text(message.to_string()))
        .await
        .map_err(|_| ())
}
