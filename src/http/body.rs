//! The request body of `POST /execute` (JSON or `multipart/form-data`):
//! read up to the limit, never further, and what happens to the rest when
//! a request is refused early.
//!
//! A refusal (401, 413, 415) is decided before the body has been read. If
//! the connection were then closed at once, the bytes the client already
//! sent would still sit unread in the kernel's receive buffer, the kernel
//! would answer the close with a TCP reset, and the client would usually
//! see "connection reset" instead of the 413 it was sent. So, like Go's
//! net/http and nginx's lingering close, the rest of a refused body is
//! read and thrown away, bounded in bytes and time, and the response says
//! `Connection: close`.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};
use hyper::header::{HeaderMap, CONTENT_LENGTH, CONTENT_TYPE};

use super::error::ApiError;

/// At most this much of a refused body is read (and discarded) so that
/// the client can read its answer; anything longer gets the connection
/// closed mid-body.
const DISCARD_MAX_BYTES: usize = 256 * 1024;
/// ... and for at most this long.
const DISCARD_MAX_TIME: Duration = Duration::from_secs(2);

/// A request body and whether it has been read to its end.
pub struct RequestBody {
    incoming: Incoming,
    finished: bool,
}

impl RequestBody {
    pub fn new(incoming: Incoming) -> Self {
        let finished = incoming.is_end_stream();
        Self { incoming, finished }
    }

    /// Reads a JSON body as [`Self::read_json_or_form`] reads either.
    pub async fn read_json(
        &mut self,
        headers: &HeaderMap,
        max: u64,
        time_limit: Duration,
    ) -> Result<Bytes, ApiError> {
        match media(headers) {
            Some(Media::Json) => self.read_limited(headers, max, time_limit).await,
            _ => Err(ApiError::UnsupportedMediaType),
        }
    }

    /// Reads a JSON or `multipart/form-data` body of at most `max` bytes
    /// within `time_limit`. Refuses another media type or a declared
    /// length over `max` without reading anything, a chunked body as soon
    /// as it passes `max`, and a body still incomplete after `time_limit`
    /// (`request_timeout`).
    pub async fn read_json_or_form(
        &mut self,
        headers: &HeaderMap,
        max: u64,
        time_limit: Duration,
    ) -> Result<(Media, Bytes), ApiError> {
        let media = media(headers).ok_or(ApiError::UnsupportedMediaType)?;
        Ok((media, self.read_limited(headers, max, time_limit).await?))
    }

    async fn read_limited(
        &mut self,
        headers: &HeaderMap,
        max: u64,
        time_limit: Duration,
    ) -> Result<Bytes, ApiError> {
        let declared = declared_length(headers);
        if declared.is_some_and(|len| len > max) {
            return Err(ApiError::PayloadTooLarge { max });
        }
        // SECURITY: a client trickling its body (a slowloris on the body,
        // which hyper's header timeout does not cover) holds a connection
        // and its buffer; it gets 408 and the connection is closed.
        tokio::time::timeout(time_limit, self.read_up_to(declared, max))
            .await
            .unwrap_or(Err(ApiError::RequestTimeout { limit: time_limit }))
    }

    async fn read_up_to(&mut self, declared: Option<u64>, max: u64) -> Result<Bytes, ApiError> {
        let limit = usize::try_from(max).unwrap_or(usize::MAX);
        let capacity = declared.and_then(|len| usize::try_from(len).ok()).unwrap_or(0);
        let mut body = BytesMut::with_capacity(capacity.min(limit));
        while let Some(frame) = self.incoming.frame().await {
            let frame = frame.map_err(|error| {
                ApiError::InvalidJson(format!("could not read the request body: {error}"))
            })?;
            if let Ok(data) = frame.into_data() {
                if body.len() + data.len() > limit {
                    return Err(ApiError::PayloadTooLarge { max });
                }
                body.extend_from_slice(&data);
            }
        }
        self.finished = true;
        Ok(body.freeze())
    }

    /// Ends the body once the answer is decided. Returns whether the
    /// connection must close after the answer (the body was not read to
    /// its end); the unread rest is then drained in the background.
    pub fn finish(self) -> bool {
        if self.finished {
            return false;
        }
        let mut incoming = self.incoming;
        tokio::spawn(async move {
            let drain = async {
                let mut seen = 0;
                while let Some(Ok(frame)) = incoming.frame().await {
                    seen += frame.data_ref().map_or(0, Bytes::len);
                    if seen > DISCARD_MAX_BYTES {
                        break;
                    }
                }
            };
            // Dropping `incoming` (at the limit, on timeout or at the end)
            // lets hyper close the connection.
            let _ = tokio::time::timeout(DISCARD_MAX_TIME, drain).await;
        });
        true
    }
}

/// The media types a body may have.
#[derive(Debug, PartialEq, Eq)]
pub enum Media {
    Json,
    /// `multipart/form-data`, with its boundary.
    FormData {
        boundary: String,
    },
}

/// What `Content-Type` says the body is (parameters such as `charset`
/// ignored); `None` for anything else, or a form without a boundary.
fn media(headers: &HeaderMap) -> Option<Media> {
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next()?.trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Some(Media::Json)
    } else if essence.eq_ignore_ascii_case("multipart/form-data") {
        multer::parse_boundary(value).ok().map(|boundary| Media::FormData { boundary })
    } else {
        None
    }
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH).and_then(|value| value.to_str().ok()).and_then(|value| value.parse().ok())
}
