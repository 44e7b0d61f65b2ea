//! What an API request asks for, read from its method, path and query alone (no body, no
//! cluster): the operation, its key or span, and the encoding of keys and values.

use crate::encoding::{DecodeError, Encoding};
use hyper::{Method, StatusCode};

/// Where the API lives; every path under it is the API's.
pub(crate) const PREFIX: &str = "/v1/";

/// The collection of keys: `GET` on it scans.
const KV: &str = "/v1/kv";

/// The suffix of a compare-and-swap's path (`POST /v1/kv/{key}/cas`).
const CAS: &str = "/cas";

/// The pairs a scan returns when the query names no limit.
const SCAN_LIMIT_DEFAULT: u32 = 100;

/// One API call, as the request's head names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Call {
    /// What to do.
    pub(crate) operation: Operation,
    /// How keys and values are written in the path, query, body and answer.
    pub(crate) encoding: Encoding,
}

/// An operation with its keys, decoded to bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Operation {
    /// `GET /v1/kv/{key}`.
    Get(Vec<u8>),
    /// `PUT /v1/kv/{key}`: the body is the value.
    Put(Vec<u8>),
    /// `DELETE /v1/kv/{key}`.
    Delete(Vec<u8>),
    /// `POST /v1/kv/{key}/cas`: the body is `{"expected": .., "new": ..}`.
    CompareAndSwap(Vec<u8>),
    /// `GET /v1/kv?start=..&end=..&limit=..`.
    Scan {
        /// The first key (empty: the start of the key space).
        start: Vec<u8>,
        /// The end, exclusive (`None`: the end of the key space).
        end: Option<Vec<u8>>,
        /// The most pairs wanted (the listener may return fewer, with a continuation key).
        limit: u32,
    },
}

impl Operation {
    /// The operation's name as the CLI's JSON output writes it (`op`).
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Get(_) => "get",
            Self::Put(_) => "put",
            Self::Delete(_) => "delete",
            Self::CompareAndSwap(_) => "cas",
            Self::Scan { .. } => "scan",
        }
    }

    /// The key the answer names (a scan's start key).
    pub(crate) fn key(&self) -> &[u8] {
        match self {
            Self::Get(key) | Self::Put(key) | Self::Delete(key) | Self::CompareAndSwap(key) => key,
            Self::Scan { start, .. } => start,
        }
    }
}

/// Why a request's head names no API call.
#[derive(Debug, PartialEq, thiserror::Error)]
pub(crate) enum RouteError {
    /// The path is no API path.
    #[error(
        "{0} is no API path: the API serves /v1/kv/{{key}} (GET, PUT, DELETE), \
         /v1/kv/{{key}}/cas (POST) and /v1/kv (GET, a scan)"
    )]
    NoSuchPath(String),
    /// The path is, but not with this method.
    #[error("{method} is not served on {path}: {allowed}")]
    Method {
        /// The method used.
        method: Method,
        /// The path.
        path: String,
        /// What is served there.
        allowed: &'static str,
    },
    /// `/v1/kv/` with no key after it.
    #[error("the key is empty: write it after /v1/kv/ (percent-encoded)")]
    EmptyKey,
    /// A `%` not followed by two hex digits, or percent-decoded bytes that are not UTF-8.
    #[error("{0} is not percent-encoded UTF-8 (write each other byte as %XX)")]
    Percent(String),
    /// A query parameter this path does not take.
    #[error("unknown query parameter {name:?}: {path} takes {takes}")]
    UnknownParameter {
        /// The parameter.
        name: String,
        /// The path.
        path: &'static str,
        /// The parameters it takes.
        takes: &'static str,
    },
    /// `encoding=` names no encoding.
    #[error("encoding must be utf8, base64 or hex, not {0:?}")]
    BadEncoding(String),
    /// `limit=` is not a number from 1 up.
    #[error("limit must be a whole number from 1 up, not {0:?}")]
    BadLimit(String),
    /// A key is not written in the encoding.
    #[error("the {what} is not in the request's encoding: {source}")]
    Decode {
        /// "key", "start" or "end".
        what: &'static str,
        /// Why.
        source: DecodeError,
    },
}

impl RouteError {
    /// The status the error is answered with.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::NoSuchPath(_) => StatusCode::NOT_FOUND,
            Self::Method { .. } => StatusCode::METHOD_NOT_ALLOWED,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// The call `method` on `path` with `query` (the part after `?`, if any) makes.
///
/// # Errors
/// The path, method or query names no call; see [`RouteError`].
pub(crate) fn route(method: &Method, path: &str, query: Option<&str>) -> Result<Call, RouteError> {
    if path == KV {
        return scan(method, path, query);
    }
    let Some(rest) = path.strip_prefix("/v1/kv/") else {
        return Err(RouteError::NoSuchPath(path.to_owned()));
    };
    let parameters = parameters(query, &KEY_PARAMETERS)?;
    let encoding = encoding(&parameters)?;
    let (rest, cas) = match (method, rest.strip_suffix(CAS)) {
        (&Method::POST, Some(key)) => (key, true),
        _ => (rest, false),
    };
    let text = percent_decode(rest)?;
    if text.is_empty() {
        return Err(RouteError::EmptyKey);
    }
    let key = encoding
        .decode(&text)
        .map_err(|source| RouteError::Decode {
            what: "key",
            source,
        })?;
    let operation = match (method, cas) {
        (&Method::POST, true) => Operation::CompareAndSwap(key),
        (&Method::GET, _) => Operation::Get(key),
        (&Method::PUT, _) => Operation::Put(key),
        (&Method::DELETE, _) => Operation::Delete(key),
        _ => {
            return Err(RouteError::Method {
                method: method.clone(),
                path: path.to_owned(),
                allowed: "a key takes GET, PUT and DELETE, and its /cas path POST",
            });
        }
    };
    Ok(Call {
        operation,
        encoding,
    })
}

/// `GET /v1/kv?start=..&end=..&limit=..&encoding=..`.
fn scan(method: &Method, path: &str, query: Option<&str>) -> Result<Call, RouteError> {
    if method != Method::GET {
        return Err(RouteError::Method {
            method: method.clone(),
            path: path.to_owned(),
            allowed: "/v1/kv takes GET (a scan)",
        });
    }
    let parameters = parameters(query, &SCAN_PARAMETERS)?;
    let encoding = encoding(&parameters)?;
    let key = |what: &'static str| -> Result<Option<Vec<u8>>, RouteError> {
        let Some((_, text)) = parameters.iter().find(|(name, _)| name == what) else {
            return Ok(None);
        };
        let bytes = encoding
            .decode(text)
            .map_err(|source| RouteError::Decode { what, source })?;
        Ok(Some(bytes))
    };
    let start = key("start")?.unwrap_or_default();
    let end = key("end")?;
    let limit = match parameters.iter().find(|(name, _)| name == "limit") {
        None => SCAN_LIMIT_DEFAULT,
        Some((_, text)) => text
            .parse()
            .ok()
            .filter(|&limit| limit > 0)
            .ok_or_else(|| RouteError::BadLimit(text.clone()))?,
    };
    Ok(Call {
        operation: Operation::Scan { start, end, limit },
        encoding,
    })
}

/// The query parameters a path takes, and how its refusal names them.
struct Takes {
    path: &'static str,
    names: &'static [&'static str],
    text: &'static str,
}

/// What `/v1/kv/{key}` takes.
const KEY_PARAMETERS: Takes = Takes {
    path: "/v1/kv/{key}",
    names: &["encoding"],
    text: "encoding",
};

/// What `/v1/kv` (a scan) takes.
const SCAN_PARAMETERS: Takes = Takes {
    path: KV,
    names: &["start", "end", "limit", "encoding"],
    text: "start, end, limit and encoding",
};

/// The query's `name=value` pairs, percent-decoded; a name `takes` does not list is refused.
fn parameters(query: Option<&str>, takes: &Takes) -> Result<Vec<(String, String)>, RouteError> {
    let mut pairs = Vec::new();
    for pair in query
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(name)?;
        if !takes.names.contains(&name.as_str()) {
            return Err(RouteError::UnknownParameter {
                name,
                path: takes.path,
                takes: takes.text,
            });
        }
        pairs.push((name, percent_decode(value)?));
    }
    Ok(pairs)
}

/// The `encoding=` parameter (default `utf8`).
fn encoding(parameters: &[(String, String)]) -> Result<Encoding, RouteError> {
    match parameters.iter().find(|(name, _)| name == "encoding") {
        None => Ok(Encoding::Utf8),
        Some((_, text)) => match text.as_str() {
            "utf8" => Ok(Encoding::Utf8),
            "base64" => Ok(Encoding::Base64),
            "hex" => Ok(Encoding::Hex),
            other => Err(RouteError::BadEncoding(other.to_owned())),
        },
    }
}

/// `text` with each `%XX` replaced by its byte (RFC 3986 §2.1); `+` stays `+` (base64 uses
/// it), so a space must be written `%20`.
fn percent_decode(text: &str) -> Result<String, RouteError> {
    let bad = || RouteError::Percent(text.chars().take(64).collect());
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, after)) = rest.split_first() {
        if byte != b'%' {
            bytes.push(byte);
            rest = after;
            continue;
        }
        let digits = after.get(..2).ok_or_else(bad)?;
        let digits = std::str::from_utf8(digits).map_err(|_| bad())?;
        bytes.push(u8::from_str_radix(digits, 16).map_err(|_| bad())?);
        rest = after.get(2..).unwrap_or_default();
    }
    String::from_utf8(bytes).map_err(|_| bad())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn call(method: Method, target: &str) -> Result<Call, RouteError> {
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target, None),
        };
        route(&method, path, query)
    }

    fn operation(method: Method, target: &str) -> Operation {
        call(method, target).unwrap().operation
    }

    #[test]
    fn each_method_on_a_key_names_its_operation() {
        let key = || b"app/x".to_vec();
        assert_eq!(
            operation(Method::GET, "/v1/kv/app/x"),
            Operation::Get(key())
        );
        assert_eq!(
            operation(Method::PUT, "/v1/kv/app/x"),
            Operation::Put(key())
        );
        assert_eq!(
            operation(Method::DELETE, "/v1/kv/app/x"),
            Operation::Delete(key())
        );
        assert_eq!(
            operation(Method::POST, "/v1/kv/app/x/cas"),
            Operation::CompareAndSwap(key())
        );
        // Only a POST ends in /cas: a get of the key "x/cas" is a get.
        assert_eq!(
            operation(Method::GET, "/v1/kv/x/cas"),
            Operation::Get(b"x/cas".to_vec())
        );
        let refused = call(Method::POST, "/v1/kv/x").unwrap_err();
        assert_eq!(refused.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[test]
    fn keys_are_percent_decoded_then_read_in_the_encoding() {
        assert_eq!(
            operation(Method::GET, "/v1/kv/a%20b%2Fc+d"),
            Operation::Get(b"a b/c+d".to_vec())
        );
        assert_eq!(
            operation(Method::GET, "/v1/kv/gP8%3D?encoding=base64"),
            Operation::Get(vec![0x80, 0xff])
        );
        assert_eq!(
            operation(Method::GET, "/v1/kv/80ff?encoding=hex"),
            Operation::Get(vec![0x80, 0xff])
        );
        for (target, says) in [
            ("/v1/kv/%zz", "not percent-encoded"),
            ("/v1/kv/%ff", "not percent-encoded"),
            ("/v1/kv/", "the key is empty"),
            ("/v1/kv/a?encoding=latin1", "utf8, base64 or hex"),
            ("/v1/kv/a?limit=3", "unknown query parameter \"limit\""),
            ("/v1/kv/!!?encoding=base64", "not base64"),
        ] {
            let error = call(Method::GET, target).unwrap_err();
            assert!(error.to_string().contains(says), "{target}: {error}");
            assert_eq!(error.status(), StatusCode::BAD_REQUEST, "{target}");
        }
    }

    #[test]
    fn a_scan_takes_start_end_limit_and_encoding() {
        assert_eq!(
            operation(Method::GET, "/v1/kv"),
            Operation::Scan {
                start: Vec::new(),
                end: None,
                limit: SCAN_LIMIT_DEFAULT
            }
        );
        assert_eq!(
            operation(
                Method::GET,
                "/v1/kv?start=YQ&end=Yg%3D%3D&limit=5&encoding=base64"
            ),
            Operation::Scan {
                start: b"a".to_vec(),
                end: Some(b"b".to_vec()),
                limit: 5
            }
        );
        for target in [
            "/v1/kv?limit=0",
            "/v1/kv?limit=x",
            "/v1/kv?and=1",
            "/v1/kv?key=a",
        ] {
            let error = call(Method::GET, target).unwrap_err();
            assert_eq!(error.status(), StatusCode::BAD_REQUEST, "{target}: {error}");
        }
        assert_eq!(
            call(Method::PUT, "/v1/kv").unwrap_err().status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            call(Method::GET, "/v1/other").unwrap_err().status(),
            StatusCode::NOT_FOUND
        );
    }
}
