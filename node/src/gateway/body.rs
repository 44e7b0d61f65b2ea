//! An API request's body: read up to `http.body_bytes_max` within `http.request_timeout_ms`
//! (a larger one is refused on its `Content-Length` before a byte of it is read), then taken
//! as a put's value or a compare-and-swap's JSON.

use crate::encoding::{DecodeError, Encoding};
use http_body_util::{BodyExt, Limited};
use hyper::StatusCode;
use hyper::body::{Bytes, Incoming};
use hyper::header::CONTENT_LENGTH;
use serde_json::Value;
use std::time::Duration;

/// Why a body is refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// It is larger than `http.body_bytes_max`.
    #[error("the request body is over http.body_bytes_max ({limit} bytes)")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// It did not arrive in time.
    #[error("the request body did not arrive within http.request_timeout_ms ({0:?})")]
    Slow(Duration),
    /// The connection failed while it was read.
    #[error("the request body could not be read: {0}")]
    Read(String),
    /// A value is not written in the request's encoding.
    #[error("the {what} is not in the request's encoding: {source}")]
    Decode {
        /// "value", "expected" or "new".
        what: &'static str,
        /// Why.
        source: DecodeError,
    },
    /// A compare-and-swap's body is not its JSON object.
    #[error(
        "a compare-and-swap's body must be a JSON object {{\"expected\": .., \"new\": ..}} of \
         two strings or nulls (null: absent): {0}"
    )]
    Cas(String),
}

impl BodyError {
    /// The status the error is answered with.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Slow(_) => StatusCode::REQUEST_TIMEOUT,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// The body of `request`, at most `limit` bytes, arrived within `timeout`.
///
/// # Errors
/// Too large, too slow, or the connection failed.
pub(crate) async fn read(
    request: hyper::Request<Incoming>,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, BodyError> {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|length| length.to_str().ok())
        .and_then(|length| length.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let collect = Limited::new(request.into_body(), limit).collect();
    match tokio::time::timeout(timeout, collect).await {
        Err(_) => Err(BodyError::Slow(timeout)),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
            Err(BodyError::TooLarge { limit })
        }
        Ok(Err(error)) => Err(BodyError::Read(error.to_string())),
    }
}

/// A put's value: under `utf8` the body's bytes as they are (any bytes), under `base64` or
/// `hex` the body's text in that encoding (surrounding whitespace ignored).
///
/// # Errors
/// The body is not in the encoding.
pub(crate) fn value(body: &[u8], encoding: Encoding) -> Result<Vec<u8>, BodyError> {
    if encoding == Encoding::Utf8 {
        return Ok(body.to_vec());
    }
    let decode = |source| BodyError::Decode {
        what: "value",
        source,
    };
    let text = String::from_utf8_lossy(body);
    encoding.decode(text.trim()).map_err(decode)
}

/// What a compare-and-swap's body asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Swap {
    /// The value the key must have (`None`: it must be absent).
    pub(crate) expected: Option<Vec<u8>>,
    /// The value to set (`None`: remove the key).
    pub(crate) new: Option<Vec<u8>>,
}

/// A compare-and-swap's body: both fields must be present, each a string in the encoding or
/// `null` (absent); no other field is taken.
///
/// # Errors
/// The body is not that object.
pub(crate) fn cas(body: &[u8], encoding: Encoding) -> Result<Swap, BodyError> {
    let parsed: Value =
        serde_json::from_slice(body).map_err(|error| BodyError::Cas(error.to_string()))?;
    let Value::Object(fields) = parsed else {
        return Err(BodyError::Cas("it is no object".into()));
    };
    if let Some(other) = fields
        .keys()
        .find(|name| *name != "expected" && *name != "new")
    {
        return Err(BodyError::Cas(format!("unknown field {other:?}")));
    }
    let field = |what: &'static str| -> Result<Option<Vec<u8>>, BodyError> {
        match fields.get(what) {
            None => Err(BodyError::Cas(format!("the field {what:?} is missing"))),
            Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => encoding
                .decode(text)
                .map(Some)
                .map_err(|source| BodyError::Decode { what, source }),
            Some(_) => Err(BodyError::Cas(format!(
                "the field {what:?} is neither a string nor null"
            ))),
        }
    };
    Ok(Swap {
        expected: field("expected")?,
        new: field("new")?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_the_body_as_it_is_or_its_decoded_text() {
        assert_eq!(value(b"\x80 raw", Encoding::Utf8).unwrap(), b"\x80 raw");
        assert_eq!(
            value(b"gP8=\n", Encoding::Base64).unwrap(),
            vec![0x80, 0xff]
        );
        let error = value(b"zz", Encoding::Hex).unwrap_err();
        assert!(error.to_string().contains("not hex"), "{error}");
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn a_cas_body_names_both_values_and_nothing_else() {
        assert_eq!(
            cas(br#"{"expected": "a", "new": null}"#, Encoding::Utf8).unwrap(),
            Swap {
                expected: Some(b"a".to_vec()),
                new: None
            }
        );
        assert_eq!(
            cas(br#"{"expected": null, "new": "gA=="}"#, Encoding::Base64).unwrap(),
            Swap {
                expected: None,
                new: Some(vec![0x80])
            }
        );
        for (body, says) in [
            (&br#"{"new": "b"}"#[..], "\"expected\" is missing"),
            (
                br#"{"expected": "a", "new": "b", "neww": 1}"#,
                "unknown field",
            ),
            (
                br#"{"expected": 1, "new": "b"}"#,
                "neither a string nor null",
            ),
            (br#"["a", "b"]"#, "no object"),
            (b"expected=a", "JSON object"),
        ] {
            let error = cas(body, Encoding::Utf8).unwrap_err().to_string();
            assert!(error.contains(says), "{error}");
        }
    }
}
