//! The client of Kraken's WebSocket v2 `balances` channel: balances pushed as transactions
//! complete, instead of polled.
//!
//! Owns [`BalanceStream`] (connect, subscribe with a token, read events, answer WebSocket pings,
//! send application pings), [`StreamError`], and, in `message.rs`, the pure parsing of every
//! message ([`parse_message`]) and the v2 → REST asset names ([`rest_asset_name`]).
//! Production: `wss://ws-auth.kraken.com/v2` over rustls with webpki roots, the TLS choice of
//! the REST client; the simulated Kraken serves `ws://` ([`crate::sim::SimKraken::ws_url`]).
//! Must not: fetch the token (the REST client does: [`crate::KrakenClient::websocket_token`]),
//! reconnect or decide what a lost sequence means (the caller does), or let the token reach an
//! error, a log line or `Debug` output.

mod message;

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub use message::{
    LedgerEntry, StreamBalance, StreamEvent, Wallet, parse_message, rest_asset_name,
};

use crate::secret::SecretText;

/// Why the stream failed. No variant carries the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The connection could not be opened: bad URL, DNS, refused, or a WebSocket handshake the
    /// server answered with an HTTP error.
    #[error("could not connect to Kraken's WebSocket API: {0}")]
    Connect(String),
    /// TLS failed (certificate, protocol).
    #[error("TLS with Kraken's WebSocket API failed: {0}")]
    Tls(String),
    /// Kraken refused the subscription, with its error text (such as
    /// `ESession:Invalid session` for an expired or unknown token: ask for a fresh token).
    #[error("Kraken refused the subscription: {0}")]
    Refused(String),
    /// The connection ended without a close frame (dropped, reset), or was used after it ended.
    #[error("the WebSocket connection ended: {0}")]
    Closed(String),
    /// A message was not what Kraken documents.
    #[error("a WebSocket message is not Kraken's: {0}")]
    Decode(String),
    /// Nothing arrived within the timeout (heartbeats come about once a second while
    /// subscribed, so a silent connection is a dead one).
    #[error("no message from Kraken's WebSocket API within {0:?}")]
    Timeout(Duration),
}

/// One subscribed `balances` connection.
pub struct BalanceStream {
    /// The WebSocket, over TLS in production.
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Events read while waiting for the subscribe ack (the `status` message comes first).
    pending: VecDeque<StreamEvent>,
    /// How long [`BalanceStream::next_event`] waits for a message.
    timeout: Duration,
    /// The `req_id` of the next request; the subscription was 1.
    next_req_id: u64,
    /// Set once the connection has ended, so later reads fail at once.
    ended: bool,
}

impl std::fmt::Debug for BalanceStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BalanceStream")
            .field("timeout", &self.timeout)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl BalanceStream {
    /// Connects to `url` (`wss://ws-auth.kraken.com/v2`), subscribes to `balances` with a
    /// snapshot, and waits for Kraken's ack, all within `timeout`. The events that arrive before
    /// the ack (the `status` message) are kept for [`BalanceStream::next_event`]; the snapshot
    /// follows the ack. A refusal is [`StreamError::Refused`] with Kraken's error text.
    pub async fn connect(
        url: &str,
        token: &SecretText,
        timeout: Duration,
    ) -> Result<BalanceStream, StreamError> {
        tokio::time::timeout(timeout, Self::connect_and_subscribe(url, token, timeout))
            .await
            .map_err(|_| StreamError::Timeout(timeout))?
    }

    async fn connect_and_subscribe(
        url: &str,
        token: &SecretText,
        timeout: Duration,
    ) -> Result<BalanceStream, StreamError> {
        // Small frames (subscribe, ping) go out at once rather than waiting on Nagle's algorithm.
        let (socket, _) = tokio_tungstenite::connect_async_tls_with_config(url, None, true, None)
            .await
            .map_err(connect_error)?;
        let mut stream = BalanceStream {
            socket,
            pending: VecDeque::new(),
            timeout,
            next_req_id: 1,
            ended: false,
        };
        let subscribe = json!({
            "method": "subscribe",
            "params": { "channel": "balances", "token": token.expose(), "snapshot": true },
            "req_id": stream.take_req_id(),
        });
        stream.send(subscribe.to_string()).await?;
        loop {
            match stream.read_event().await {
                Ok(StreamEvent::Subscribed { channel }) if channel == "balances" => {
                    return Ok(stream);
                }
                Ok(StreamEvent::Closed) => {
                    return Err(StreamError::Closed(
                        "Kraken closed the connection before acknowledging the subscription".into(),
                    ));
                }
                Ok(event) => stream.pending.push_back(event),
                Err(StreamError::Refused(reason)) => {
                    let reason = reason.replace(token.expose(), "<redacted>");
                    return Err(StreamError::Refused(reason));
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// The next meaningful event: events kept from before the ack first, then messages as they
    /// arrive. WebSocket pings are answered here; messages of other channels are skipped. After
    /// [`StreamEvent::Closed`] or an error, the connection is over: connect again.
    pub async fn next_event(&mut self) -> Result<StreamEvent, StreamError> {
        if let Some(event) = self.pending.pop_front() {
            return Ok(event);
        }
        loop {
            match self.read_event().await? {
                StreamEvent::Other(_) => continue,
                event => return Ok(event),
            }
        }
    }

    /// Sends Kraken's application ping (`{"method":"ping"}`); its answer is a
    /// [`StreamEvent::Pong`] from [`BalanceStream::next_event`].
    pub async fn ping(&mut self) -> Result<(), StreamError> {
        let ping = json!({ "method": "ping", "req_id": self.take_req_id() });
        self.send(ping.to_string()).await
    }

    /// Closes the connection politely (a close frame), ending the subscription.
    pub async fn close(mut self) -> Result<(), StreamError> {
        self.ended = true;
        self.socket.close(None).await.map_err(closed_error)
    }

    fn take_req_id(&mut self) -> u64 {
        let id = self.next_req_id;
        self.next_req_id += 1;
        id
    }

    async fn send(&mut self, text: String) -> Result<(), StreamError> {
        if self.ended {
            return Err(StreamError::Closed("the connection has ended".into()));
        }
        let sent = tokio::time::timeout(self.timeout, self.socket.send(Message::text(text)))
            .await
            .map_err(|_| StreamError::Timeout(self.timeout))?;
        sent.map_err(|e| self.end(closed_error(e)))
    }

    /// Reads frames until one is an event (any, [`StreamEvent::Other`] included), answering
    /// pings on the way.
    async fn read_event(&mut self) -> Result<StreamEvent, StreamError> {
        if self.ended {
            return Err(StreamError::Closed("the connection has ended".into()));
        }
        loop {
            let frame = tokio::time::timeout(self.timeout, self.socket.next())
                .await
                .map_err(|_| StreamError::Timeout(self.timeout))?;
            let message = match frame {
                None => {
                    return Err(self.end(StreamError::Closed(
                        "the server ended the connection without a close frame".into(),
                    )));
                }
                Some(Err(error)) => return Err(self.end(closed_error(error))),
                Some(Ok(message)) => message,
            };
            match message {
                Message::Text(text) => return parse_message(text.as_str()),
                // tungstenite queues the pong when it reads a ping; flushing sends it now.
                Message::Ping(_) => self.socket.flush().await.map_err(closed_error)?,
                Message::Close(_) => {
                    self.ended = true;
                    return Ok(StreamEvent::Closed);
                }
                Message::Binary(_) => {
                    return Err(StreamError::Decode("a binary message".into()));
                }
                Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }

    /// Marks the connection over and passes `error` on.
    fn end(&mut self, error: StreamError) -> StreamError {
        self.ended = true;
        error
    }
}

/// A failure to open the connection, as a [`StreamError`].
fn connect_error(error: tungstenite::Error) -> StreamError {
    match error {
        tungstenite::Error::Tls(e) => StreamError::Tls(e.to_string()),
        // tokio-rustls reports a failed handshake (bad certificate, not TLS at all) as invalid
        // data on the socket.
        tungstenite::Error::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            StreamError::Tls(e.to_string())
        }
        tungstenite::Error::Http(response) => StreamError::Connect(format!(
            "the server answered HTTP {} instead of a WebSocket",
            response.status().as_u16()
        )),
        other => StreamError::Connect(other.to_string()),
    }
}

/// A failure on an open connection, as a [`StreamError`].
fn closed_error(error: tungstenite::Error) -> StreamError {
    match error {
        tungstenite::Error::Tls(e) => StreamError::Tls(e.to_string()),
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            StreamError::Closed("the connection is closed".into())
        }
        other => StreamError::Closed(other.to_string()),
    }
}

#[cfg(test)]
mod tests;
