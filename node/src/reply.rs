//! A data command's result (get, put, delete, cas, scan): running it, and printing it as one
//! JSON object or as text, the same way for the one-off commands and the shell.
//!
//! JSON: `{"op":..,"key":..,"ok":true,"result":..}`, where `result` is present on success and
//! `null` for an absent value, or `{"op":..,"key":..,"ok":false,"error":..}`. The result of a
//! get is the value; of a put or delete `{"previous":..}`; of a cas
//! `{"swapped":..,"current":..}`; of a scan `{"pairs":[[key,value],..],"more":..}`.
//! Text: a get prints the value or `(absent)`, a put or delete `previous: VALUE`, a cas
//! `swapped: BOOL` and `current: VALUE`, a scan one `KEY<tab>VALUE` line per pair, then `(more)`
//! when the limit stopped it with keys left (`(no pairs)` when the range holds none).

use crate::client::{Client, ClientError};
use crate::encoding::Encoding;
use flotilla_storage::{Command, Response};
use serde::Serialize;
use serde_json::{Value, json};

/// How a command prints its result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Lines for a person.
    #[default]
    Text,
    /// One JSON object (one per line in the shell).
    Json,
}

/// What a data command returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// A get: the value (`None`: the key is absent).
    Value(Option<Vec<u8>>),
    /// A put or delete: the value before it (`None`: there was none).
    Written {
        /// The value the write replaced.
        previous: Option<Vec<u8>>,
    },
    /// A cas: whether it swapped, and the value before it.
    Swapped {
        /// Whether the key held the expected value, so the new one was set.
        swapped: bool,
        /// The value before the command (`None`: absent).
        current: Option<Vec<u8>>,
    },
    /// A scan: pairs in key order, and whether the limit stopped it with keys left.
    Scan {
        /// The pairs.
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
        /// Whether more pairs lay in the range past the limit.
        more: bool,
    },
}

/// How a command that did not fail ends, for a script: its exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finished {
    /// Done (exit code 0).
    Done,
    /// A get found no value for its key (exit code 3).
    KeyAbsent,
    /// A cas found another value than the expected one and set nothing (exit code 4).
    NotSwapped,
}

impl Finished {
    /// The process's exit code.
    #[must_use]
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Done => 0,
            Self::KeyAbsent => 3,
            Self::NotSwapped => 4,
        }
    }
}

/// Runs one data command.
///
/// # Errors
/// The client's error, or `Refused` when the node could not apply the command.
pub async fn try_execute(client: &Client, command: Command) -> Result<Reply, ClientError> {
    match command {
        Command::Scan { start, end, limit } => {
            let scan = client.scan_limited(&start, end.as_deref(), limit).await?;
            Ok(Reply::Scan {
                pairs: scan.pairs,
                more: scan.more,
            })
        }
        command => Reply::from_response(client.command(command).await?.response),
    }
}

impl Reply {
    /// The reply a node's response carries.
    fn from_response(response: Response) -> Result<Self, ClientError> {
        match response {
            Response::Value(value) => Ok(Self::Value(value)),
            Response::Written { previous } => Ok(Self::Written { previous }),
            Response::CompareAndSwap { swapped, current } => Ok(Self::Swapped { swapped, current }),
            Response::Scan { pairs, more } => Ok(Self::Scan { pairs, more }),
            Response::Invalid(reason) => Err(refused(&reason)),
            // The client answers session replies itself; one here would be a bug.
            other @ (Response::SessionOpened { .. }
            | Response::SessionExpired { .. }
            | Response::Retired { .. }
            // The node answers these as `NotServed`, which the client retries; and only a split
            // or merge command is answered `Split` or `Merge`.
            | Response::OutsideRange { .. }
            | Response::Merging { .. }
            | Response::Split { .. }
            | Response::Merge { .. }
            | Response::Reserved { .. }) => Err(refused(&format!("{other:?}"))),
        }
    }

    /// How the command ends for a script.
    #[must_use]
    pub fn finished(&self) -> Finished {
        match self {
            Self::Value(None) => Finished::KeyAbsent,
            Self::Swapped { swapped: false, .. } => Finished::NotSwapped,
            _ => Finished::Done,
        }
    }

    /// The `result` field of the JSON output.
    #[must_use]
    pub fn json(&self, encoding: Encoding) -> Value {
        let value = |value: &Option<Vec<u8>>| optional_json(value.as_deref(), encoding);
        match self {
            Self::Value(found) => value(found),
            Self::Written { previous } => json!({ "previous": value(previous) }),
            Self::Swapped { swapped, current } => {
                json!({ "swapped": swapped, "current": value(current) })
            }
            Self::Scan { pairs, more } => {
                let pairs: Vec<Value> = pairs
                    .iter()
                    .map(|(key, value)| json!([encoding.json(key), encoding.json(value)]))
                    .collect();
                json!({ "pairs": pairs, "more": more })
            }
        }
    }

    /// The text output (lines without the last newline).
    #[must_use]
    pub fn text(&self, encoding: Encoding) -> String {
        let value = |value: &Option<Vec<u8>>| {
            value
                .as_deref()
                .map_or_else(|| "(absent)".to_owned(), |bytes| encoding.text(bytes))
        };
        match self {
            Self::Value(found) => value(found),
            Self::Written { previous } => format!("previous: {}", value(previous)),
            Self::Swapped { swapped, current } => {
                format!("swapped: {swapped}\ncurrent: {}", value(current))
            }
            Self::Scan { pairs, more } => scan_text(pairs, *more, encoding),
        }
    }
}

/// A scan as text: one `KEY<tab>VALUE` line a pair, and a marker for none or more.
fn scan_text(pairs: &[(Vec<u8>, Vec<u8>)], more: bool, encoding: Encoding) -> String {
    let mut lines: Vec<String> = pairs
        .iter()
        .map(|(key, value)| format!("{}\t{}", encoding.text(key), encoding.text(value)))
        .collect();
    if pairs.is_empty() && !more {
        lines.push("(no pairs)".into());
    }
    if more {
        lines.push("(more)".into());
    }
    lines.join("\n")
}

fn optional_json(value: Option<&[u8]>, encoding: Encoding) -> Value {
    value.map_or(Value::Null, |bytes| encoding.json(bytes))
}

fn refused(reason: &str) -> ClientError {
    ClientError::Refused(crate::api::ApiError::Unavailable(format!(
        "the node could not apply the command: {reason}"
    )))
}

/// The name of a command and its key (a scan's start key), as the output shows them.
#[must_use]
pub fn describe(command: &Command) -> (&'static str, &[u8]) {
    match command {
        Command::Get { key } => ("get", key),
        Command::Put { key, .. } => ("put", key),
        Command::Delete { key } => ("delete", key),
        Command::CompareAndSwap { key, .. } => ("cas", key),
        Command::Scan { start, .. } => ("scan", start),
    }
}

/// The outcome of one command as its JSON object.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OpResult {
    /// get, put, delete, cas, scan (or help, or the first word of a line that is no command).
    pub op: String,
    /// The key (the start key of a scan), in the output's encoding.
    pub key: Value,
    /// Whether it succeeded.
    pub ok: bool,
    /// What it returned, when it succeeded (`null`: an absent value).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A write that failed after an attempt that may have applied it: it was applied once or
    /// not at all.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub outcome_unknown: bool,
}

impl OpResult {
    /// A command that succeeded.
    #[must_use]
    pub fn done(op: &str, key: &[u8], reply: &Reply, encoding: Encoding) -> Self {
        Self::success(op, encoding.json(key), reply.json(encoding))
    }

    /// A line that asked for no key (`help`) and succeeded.
    #[must_use]
    pub fn success(op: &str, key: Value, result: Value) -> Self {
        Self {
            op: op.into(),
            key,
            ok: true,
            result: Some(result),
            error: None,
            outcome_unknown: false,
        }
    }

    /// A command the cluster did not carry out.
    #[must_use]
    pub fn failed(op: &str, key: &[u8], error: &ClientError, encoding: Encoding) -> Self {
        Self {
            outcome_unknown: matches!(error, ClientError::OutcomeUnknown { .. }),
            ..Self::invalid(op, encoding.json(key), error.to_string())
        }
    }

    /// A line that is not a command, or another failure before any request.
    #[must_use]
    pub fn invalid(op: &str, key: Value, error: String) -> Self {
        Self {
            op: op.into(),
            key,
            ok: false,
            result: None,
            error: Some(error),
            outcome_unknown: false,
        }
    }

    /// The object on one line, its fields in the order above.
    ///
    /// # Errors
    /// Never in practice: every field is plain JSON.
    pub fn line(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn bytes(text: &str) -> Option<Vec<u8>> {
        Some(text.as_bytes().to_vec())
    }

    #[test]
    fn an_absent_value_is_null_in_json_and_absent_in_text_for_every_command() {
        let replies = [
            (Reply::Value(None), json!(null), "(absent)"),
            (
                Reply::Written { previous: None },
                json!({ "previous": null }),
                "previous: (absent)",
            ),
            (
                Reply::Swapped {
                    swapped: true,
                    current: None,
                },
                json!({ "swapped": true, "current": null }),
                "swapped: true\ncurrent: (absent)",
            ),
        ];
        for (reply, expected_json, expected_text) in replies {
            assert_eq!(reply.json(Encoding::Utf8), expected_json);
            assert_eq!(reply.text(Encoding::Utf8), expected_text);
            let line = OpResult::done("get", b"k", &reply, Encoding::Utf8)
                .line()
                .unwrap();
            assert!(line.contains("\"result\":"), "{line}");
        }
    }

    #[test]
    fn a_get_and_a_put_line_have_the_same_fields() {
        let get = OpResult::done("get", b"k", &Reply::Value(bytes("v")), Encoding::Utf8);
        let put = OpResult::done(
            "put",
            b"k",
            &Reply::Written { previous: None },
            Encoding::Utf8,
        );
        let line = |result: OpResult| result.line().unwrap();
        assert_eq!(
            line(get),
            r#"{"op":"get","key":"k","ok":true,"result":"v"}"#
        );
        assert_eq!(
            line(put),
            r#"{"op":"put","key":"k","ok":true,"result":{"previous":null}}"#
        );
        let absent = OpResult::done("get", b"k", &Reply::Value(None), Encoding::Utf8);
        assert_eq!(
            line(absent),
            r#"{"op":"get","key":"k","ok":true,"result":null}"#
        );
        let refused = line(OpResult::failed(
            "put",
            b"k",
            &refused("no"),
            Encoding::Utf8,
        ));
        assert!(!refused.contains("result"), "{refused}");
        assert!(
            refused.contains("could not apply the command: no"),
            "{refused}"
        );
    }

    #[test]
    fn a_scan_prints_its_pairs_in_the_encoding_and_says_when_more_are_left() {
        let reply = Reply::Scan {
            pairs: vec![
                (b"\x80".to_vec(), b"a".to_vec()),
                (b"b".to_vec(), b"\xff".to_vec()),
            ],
            more: true,
        };
        assert_eq!(reply.text(Encoding::Hex), "80\t61\n62\tff\n(more)");
        assert_eq!(
            reply.text(Encoding::Utf8),
            "(not UTF-8, hex: 80)\ta\nb\t(not UTF-8, hex: ff)\n(more)"
        );
        assert_eq!(
            reply.json(Encoding::Base64),
            json!({ "pairs": [["gA==", "YQ=="], ["Yg==", "/w=="]], "more": true })
        );
        let empty = Reply::Scan {
            pairs: Vec::new(),
            more: false,
        };
        assert_eq!(empty.text(Encoding::Utf8), "(no pairs)");
    }

    #[test]
    fn a_missing_key_and_a_failed_swap_end_with_their_own_exit_codes() {
        let not_swapped = Reply::Swapped {
            swapped: false,
            current: bytes("x"),
        };
        let cases = [
            (Reply::Value(None), 3),
            (Reply::Value(bytes("")), 0),
            (not_swapped, 4),
            (Reply::Written { previous: None }, 0),
        ];
        for (reply, code) in cases {
            assert_eq!(reply.finished().exit_code(), code, "{reply:?}");
        }
    }
}
