//! `flotilla shell` (one command per line in, one JSON object per line out, for scripts and
//! test harnesses) and the one-off client commands' output.
//!
//! Shell input, one per line: `get KEY`, `put KEY VALUE`, `delete KEY`,
//! `cas KEY EXPECTED NEW` ("-" = absent), `scan START END LIMIT` ("-" = unbounded).
//! Output: `{"op":..,"key":..,"ok":true,"result":..}` or `{"op":..,"key":..,"ok":false,"error":..}`.

use crate::client::{Client, ClientError};
use flotilla_storage::{Command, Response};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

/// The outcome of one command, as the shell prints it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OpResult {
    /// get, put, delete, cas or scan.
    pub op: String,
    /// The key (the start key of a scan).
    pub key: String,
    /// Whether it succeeded.
    pub ok: bool,
    /// What it returned.
    #[serde(skip_serializing_if = "Value::is_null")]
    pub result: Value,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A write that failed after an attempt that may have applied it: it was applied once or
    /// not at all.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub outcome_unknown: bool,
}

impl OpResult {
    /// A line for a person.
    #[must_use]
    pub fn human(&self) -> String {
        match &self.error {
            Some(error) => format!("error: {error}"),
            None => human_result(&self.result),
        }
    }
}

/// A command's result as a line for a person.
#[must_use]
pub fn human_result(result: &Value) -> String {
    match result {
        Value::String(text) => text.clone(),
        Value::Null => "(absent)".into(),
        other => other.to_string(),
    }
}

/// Runs one command: its result as JSON, or why it failed.
///
/// # Errors
/// The client's error, or `Refused` when the node could not apply the command.
pub async fn try_execute(client: &Client, command: Command) -> Result<Value, ClientError> {
    let outcome = match command {
        Command::Scan { start, end, limit } => client
            .scan(&start, end.as_deref(), limit)
            .await
            .map(|scan| scan_json(&scan.pairs, scan.more)),
        command => client
            .command(command)
            .await
            .map(|outcome| response_json(&outcome.response)),
    };
    outcome.and_then(|result| match result.get("invalid") {
        Some(reason) => Err(ClientError::Refused(crate::api::ApiError::Unavailable(
            format!("the node could not apply the command: {reason}"),
        ))),
        None => Ok(result),
    })
}

/// Runs one command, as the shell prints it.
pub async fn execute(client: &Client, command: Command) -> OpResult {
    let (op, key) = describe(&command);
    let outcome = try_execute(client, command).await;
    match outcome {
        Ok(result) => OpResult {
            op,
            key,
            ok: true,
            result,
            error: None,
            outcome_unknown: false,
        },
        Err(error) => OpResult {
            op,
            key,
            ok: false,
            result: Value::Null,
            outcome_unknown: matches!(error, ClientError::OutcomeUnknown { .. }),
            error: Some(error.to_string()),
        },
    }
}

/// Why the shell or `flotilla status` stopped.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    /// Reading a command failed.
    #[error("reading stdin failed: {0}")]
    Stdin(#[source] std::io::Error),
    /// A result could not be written as JSON.
    #[error("a result could not be encoded as JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Every node failed to give its status.
    #[error("no node answered")]
    NoNodeAnswered,
    /// The cluster did not carry out a command.
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
    /// The cluster answered, but not all of it is well (`flotilla status` exits with 2).
    #[error("{0}")]
    Unhealthy(crate::status::Unhealthy),
}

/// Reads commands from stdin until it ends. A line that is not a command (not UTF-8, unknown,
/// the wrong words) gets one JSON error line, and the shell goes on.
///
/// # Errors
/// stdin or stdout failed.
pub async fn run(client: &Client) -> Result<(), ShellError> {
    let mut input = BufReader::new(tokio::io::stdin());
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = input.read_until(b'\n', &mut line).await;
        if read.map_err(ShellError::Stdin)? == 0 {
            return Ok(());
        }
        let result = match read_command(&line) {
            Input::Skip => continue,
            Input::Command(command) => execute(client, command).await,
            Input::Invalid(result) => result,
        };
        println!("{}", serde_json::to_string(&result)?);
    }
}

/// What one line of shell input asks for.
#[derive(Debug, PartialEq)]
pub enum Input {
    /// A blank line or a comment.
    Skip,
    /// A command to run.
    Command(Command),
    /// Not a command: the error line to print.
    Invalid(OpResult),
}

/// One line of shell input, as raw bytes (its newline included or not).
#[must_use]
pub fn read_command(bytes: &[u8]) -> Input {
    let line = match std::str::from_utf8(bytes) {
        Ok(line) => line.trim(),
        Err(error) => {
            let reason = format!(
                "the line is not UTF-8 (byte {} of {} is not): the shell takes keys and values as text",
                error.valid_up_to() + 1,
                bytes.len()
            );
            return Input::Invalid(invalid_line(String::new(), reason));
        }
    };
    if line.is_empty() || line.starts_with('#') {
        return Input::Skip;
    }
    match parse_line(line) {
        Ok(command) => Input::Command(command),
        Err(error) => {
            let op = line.split_whitespace().next().unwrap_or_default();
            Input::Invalid(invalid_line(op.to_string(), error))
        }
    }
}

fn invalid_line(op: String, error: String) -> OpResult {
    OpResult {
        op,
        key: String::new(),
        ok: false,
        result: Value::Null,
        error: Some(error),
        outcome_unknown: false,
    }
}

/// One shell line as a command.
///
/// # Errors
/// An unknown command or the wrong number of words.
pub fn parse_line(line: &str) -> Result<Command, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let bytes = |text: &str| text.as_bytes().to_vec();
    let optional = |text: &str| (text != "-").then(|| bytes(text));
    match words.as_slice() {
        ["get", key] => Ok(Command::Get { key: bytes(key) }),
        ["put", key, value] => Ok(Command::Put {
            key: bytes(key),
            value: bytes(value),
        }),
        ["delete", key] => Ok(Command::Delete { key: bytes(key) }),
        ["cas", key, expected, new] => Ok(Command::CompareAndSwap {
            key: bytes(key),
            expected: optional(expected),
            new: optional(new),
        }),
        ["scan", start, end, limit] => Ok(Command::Scan {
            start: if *start == "-" {
                Vec::new()
            } else {
                bytes(start)
            },
            end: optional(end),
            limit: limit
                .parse()
                .map_err(|_| format!("`{limit}` is not a scan limit"))?,
        }),
        _ => Err(format!(
            "cannot parse `{line}`: expected get KEY | put KEY VALUE | delete KEY | cas KEY EXPECTED NEW | scan START END LIMIT"
        )),
    }
}

fn describe(command: &Command) -> (String, String) {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    match command {
        Command::Get { key } => ("get".into(), text(key)),
        Command::Put { key, .. } => ("put".into(), text(key)),
        Command::Delete { key } => ("delete".into(), text(key)),
        Command::CompareAndSwap { key, .. } => ("cas".into(), text(key)),
        Command::Scan { start, .. } => ("scan".into(), text(start)),
    }
}

fn text_or_null(value: Option<&Vec<u8>>) -> Value {
    value.map_or(Value::Null, |value| {
        Value::String(String::from_utf8_lossy(value).into_owned())
    })
}

fn response_json(response: &Response) -> Value {
    match response {
        Response::Value(value) => text_or_null(value.as_ref()),
        Response::Written { previous } => json!({ "previous": text_or_null(previous.as_ref()) }),
        Response::CompareAndSwap { swapped, current } => {
            json!({ "swapped": swapped, "current": text_or_null(current.as_ref()) })
        }
        Response::Scan { pairs, more } => scan_json(pairs, *more),
        Response::Invalid(reason) => json!({ "invalid": reason }),
        // The client answers session replies itself; one here would be a bug.
        other @ (Response::SessionOpened { .. }
        | Response::SessionExpired { .. }
        | Response::Retired { .. }) => json!({ "invalid": format!("{other:?}") }),
    }
}

fn scan_json(pairs: &[(Vec<u8>, Vec<u8>)], more: bool) -> Value {
    let pairs: Vec<Value> = pairs
        .iter()
        .map(|(key, value)| json!([String::from_utf8_lossy(key), String::from_utf8_lossy(value)]))
        .collect();
    json!({ "pairs": pairs, "more": more })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_that_is_not_utf8_is_an_error_line_not_the_end() {
        let Input::Invalid(result) = read_command(b"put k \xff\xfe\n") else {
            panic!("a non-UTF-8 line must be refused");
        };
        assert!(!result.ok);
        let error = result.error.clone().unwrap_or_default();
        assert!(error.contains("not UTF-8 (byte 7 of 9"), "{error}");
        assert!(serde_json::to_string(&result).is_ok());
        assert_eq!(
            read_command(b"get k\n"),
            Input::Command(Command::Get { key: b"k".to_vec() })
        );
        assert_eq!(read_command(b"  # a comment\n"), Input::Skip);
        let Input::Invalid(result) = read_command(b"frobnicate a") else {
            panic!("an unknown command must be refused");
        };
        assert_eq!(result.op, "frobnicate");
    }
}
