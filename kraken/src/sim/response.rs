//! The simulator's HTTP answers: bodies (complete, or the endless trickle of
//! [`super::Fault::Trickle`]), JSON responses and Kraken's `{"error":[...]}` envelope.
//!
//! Owns how an answer is framed on the wire.
//! Must not: decide what is answered; it is a leaf of the simulator.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::Response;
use hyper::StatusCode;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{self, HeaderValue};
use serde_json::{Value, json};
use tokio::time::Interval;

/// Response body: a complete buffer, or the endless trickle of [`Fault::Trickle`].
pub(super) enum SimBody {
    /// The whole body, taken when sent.
    Full(Option<Bytes>),
    /// One space per tick, forever.
    Trickle(Interval),
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            SimBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            SimBody::Trickle(interval) => interval
                .poll_tick(cx)
                .map(|_| Some(Ok(Frame::data(Bytes::from_static(b" "))))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, SimBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            SimBody::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            SimBody::Full(None) => SizeHint::with_exact(0),
            // Unknown, so hyper frames the body by the declared Content-Length header.
            SimBody::Trickle(_) => SizeHint::default(),
        }
    }
}

/// The `Content-Type` of every answer but an HTML error page.
pub(super) fn json_content_type() -> HeaderValue {
    HeaderValue::from_static("application/json")
}

/// A JSON answer with this status.
pub(super) fn json_response(status: StatusCode, body: Vec<u8>) -> Response<SimBody> {
    let mut response = Response::new(SimBody::Full(Some(Bytes::from(body))));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, json_content_type());
    response
}

/// `{"error":[],"result":<result>}`
pub(super) fn envelope_ok(result: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({ "error": [], "result": result }))
        .expect("a JSON value always serializes")
}

/// `{"error":["<message>"]}`, Kraken's shape for every API error.
pub(super) fn envelope_error(message: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "error": [message] })).expect("a JSON value always serializes")
}
