//! The API's answers: each one the CLI's JSON line (`crate::reply::OpResult`) with the HTTP
//! status that says how the call ended, so a script reads one shape from both.

use crate::api::ApiError;
use crate::client::{CallError, ClientError};
use crate::encoding::Encoding;
use crate::reply::{OpResult, Reply};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::{Value, json};

/// The answer to a call that ran: 200, or 404 for a get of an absent key and 409 for a
/// compare-and-swap that found another value (the CLI's exit codes 3 and 4). Under `utf8`, a
/// read whose keys or values are not UTF-8 is answered 406 instead, naming base64; a write's
/// previous value shows as the CLI shows it, `{"hex": ..}`, since the write was applied.
pub(crate) fn done(
    (op, key): (&str, &[u8]),
    reply: &Reply,
    encoding: Encoding,
    next: Option<&[u8]>,
) -> Response<Full<Bytes>> {
    if let Some(what) = not_utf8(reply, encoding) {
        let error = format!(
            "the {what} is not UTF-8, so encoding=utf8 cannot show it: ask again with \
             encoding=base64 (or hex); nothing was changed"
        );
        let result = OpResult::invalid(op, encoding.json(key), error);
        return json_response(StatusCode::NOT_ACCEPTABLE, &result);
    }
    let status = match reply {
        Reply::Value(None) => StatusCode::NOT_FOUND,
        Reply::Swapped { swapped: false, .. } => StatusCode::CONFLICT,
        _ => StatusCode::OK,
    };
    let mut result = OpResult::done(op, key, reply, encoding);
    if let (Some(next), Some(Value::Object(fields))) = (next, result.result.as_mut()) {
        fields.insert("next".into(), encoding.json(next));
    }
    json_response(status, &result)
}

/// The answer to a call the cluster did not carry out, with its status.
pub(crate) fn failed(
    (op, key): (&str, &[u8]),
    error: &ClientError,
    encoding: Encoding,
) -> Response<Full<Bytes>> {
    json_response(
        client_status(error),
        &OpResult::failed(op, key, error, encoding),
    )
}

/// The answer to a call refused before it reached the cluster (a bad body, no permission).
pub(crate) fn refused(
    status: StatusCode,
    (op, key): (&str, &[u8]),
    encoding: Encoding,
    error: String,
) -> Response<Full<Bytes>> {
    json_response(status, &OpResult::invalid(op, encoding.json(key), error))
}

/// The answer to a request that names no call: `{"ok": false, "error": ..}`.
pub(crate) fn error(status: StatusCode, error: &str) -> Response<Full<Bytes>> {
    json_response(status, &json!({ "ok": false, "error": error }))
}

/// How a client error is answered: 504 for a write whose outcome is unknown, 503 for what
/// may succeed later (no leader, busy, out of time), 413 for a request over a size limit,
/// 403 for a permission, 507 for a full node.
fn client_status(error: &ClientError) -> StatusCode {
    match error {
        ClientError::OutcomeUnknown { .. } => StatusCode::GATEWAY_TIMEOUT,
        ClientError::Refused(refusal) => refusal_status(refusal),
        ClientError::NotSent(CallError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
        ClientError::NotSent(_) => StatusCode::BAD_GATEWAY,
        ClientError::Config(_)
        | ClientError::Tls(_)
        | ClientError::NoEndpoint(_)
        | ClientError::Unavailable { .. }
        | ClientError::NoLeader { .. } => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn refusal_status(refusal: &ApiError) -> StatusCode {
    match refusal {
        ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        ApiError::PermissionDenied { .. } => StatusCode::FORBIDDEN,
        ApiError::QuotaExceeded { .. } | ApiError::DiskReserve { .. } => {
            StatusCode::INSUFFICIENT_STORAGE
        }
        ApiError::OutcomeUnknown => StatusCode::GATEWAY_TIMEOUT,
        ApiError::NotLeader { .. }
        | ApiError::StaleEpoch { .. }
        | ApiError::NotServed { .. }
        | ApiError::Busy
        | ApiError::Dropped
        | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        ApiError::ResponseTooLarge(_) => StatusCode::BAD_GATEWAY,
        #[allow(unreachable_patterns)] // the enum may gain variants where it moves
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// What a read's reply holds that `utf8` cannot show ("value", "key or value of a pair").
fn not_utf8(reply: &Reply, encoding: Encoding) -> Option<&'static str> {
    if encoding != Encoding::Utf8 {
        return None;
    }
    let bad = |bytes: &[u8]| std::str::from_utf8(bytes).is_err();
    match reply {
        Reply::Value(Some(value)) if bad(value) => Some("value"),
        Reply::Scan { pairs, .. } if pairs.iter().any(|(key, value)| bad(key) || bad(value)) => {
            Some("key or value of a pair")
        }
        _ => None,
    }
}

fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response<Full<Bytes>> {
    // Every field is plain JSON: serializing cannot fail, but an answer is owed anyway.
    let mut text = serde_json::to_string(body).unwrap_or_else(|error| {
        json!({ "ok": false, "error": format!("the answer could not be encoded: {error}") })
            .to_string()
    });
    text.push('\n');
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn body(response: Response<Full<Bytes>>) -> (StatusCode, Value) {
        let status = response.status();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bytes = runtime
            .block_on(response.into_body().collect())
            .unwrap()
            .to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[test]
    fn absent_and_not_swapped_have_their_own_statuses_and_the_cli_shape() {
        let (status, json) = body(done(
            ("get", b"k"),
            &Reply::Value(None),
            Encoding::Utf8,
            None,
        ));
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            json,
            json!({"op": "get", "key": "k", "ok": true, "result": null})
        );
        let not_swapped = Reply::Swapped {
            swapped: false,
            current: Some(b"x".to_vec()),
        };
        let (status, json) = body(done(("cas", b"k"), &not_swapped, Encoding::Utf8, None));
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(json["result"], json!({"swapped": false, "current": "x"}));
    }

    #[test]
    fn a_read_that_utf8_cannot_show_names_base64_but_a_write_is_shown() {
        let read = Reply::Value(Some(vec![0xff]));
        let (status, json) = body(done(("get", b"k"), &read, Encoding::Utf8, None));
        assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
        assert!(
            json["error"].as_str().unwrap().contains("encoding=base64"),
            "{json}"
        );
        let (status, json) = body(done(("get", b"k"), &read, Encoding::Base64, None));
        assert_eq!((status, &json["result"]), (StatusCode::OK, &json!("/w==")));
        let write = Reply::Written {
            previous: Some(vec![0xff]),
        };
        let (status, json) = body(done(("put", b"k"), &write, Encoding::Utf8, None));
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json["result"], json!({"previous": {"hex": "ff"}}));
    }

    #[test]
    fn a_scan_cut_short_gives_its_continuation_key() {
        let scan = Reply::Scan {
            pairs: vec![(b"a".to_vec(), b"1".to_vec())],
            more: true,
        };
        let (_, json) = body(done(("scan", b""), &scan, Encoding::Utf8, Some(b"a\0")));
        assert_eq!(
            json["result"],
            json!({"pairs": [["a", "1"]], "more": true, "next": "a\u{0}"})
        );
    }

    #[test]
    fn an_unknown_outcome_says_so_with_504() {
        let error = ClientError::OutcomeUnknown {
            attempts: 3,
            reason: "deadline".into(),
        };
        let (status, json) = body(failed(("put", b"k"), &error, Encoding::Utf8));
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(json["outcome_unknown"], json!(true));
        assert!(
            json["error"]
                .as_str()
                .unwrap()
                .contains("applied once or not at all")
        );
        let busy = ClientError::Refused(ApiError::Busy);
        assert_eq!(client_status(&busy), StatusCode::SERVICE_UNAVAILABLE);
        let large = ClientError::Refused(ApiError::TooLarge {
            what: "key".into(),
            bytes: 5000,
            limit: 4096,
        });
        assert_eq!(client_status(&large), StatusCode::PAYLOAD_TOO_LARGE);
    }
}
