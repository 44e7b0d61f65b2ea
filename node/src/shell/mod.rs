//! `flotilla shell`: client commands read from stdin, one a line. From a pipe or a file (for
//! scripts and test harnesses) each line gets one JSON object on stdout; on a terminal the
//! shell prompts, edits lines and keeps a history, and prints text.
//!
//! Input, one command a line (words split as a POSIX shell splits them, so quotes hold spaces):
//! `get KEY`, `put KEY VALUE`, `delete KEY`, `cas KEY EXPECTED NEW` ("-" = absent),
//! `scan START END LIMIT` ("-" = unbounded), `help`. Output: as [`crate::reply`] describes,
//! `{"op":..,"key":..,"ok":true,"result":..}` or `{"op":..,"key":..,"ok":false,"error":..}`.

pub mod line;
mod terminal;

pub use line::{HELP, Input, LineError, parse_words, read_command};

use crate::client::Client;
use crate::encoding::Encoding;
use crate::reply::{OpResult, Output, describe, try_execute};
use flotilla_storage::Command;
use serde_json::Value;
use std::io::IsTerminal;
use tokio::io::{AsyncBufReadExt, BufReader};

/// How the shell reads keys and values and prints its answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Format {
    /// The encoding of keys and values, in and out.
    pub encoding: Encoding,
    /// Text or JSON lines.
    pub output: Output,
}

/// Why the shell or `flotilla status` stopped.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    /// Reading a command failed.
    #[error("reading stdin failed: {0}")]
    Stdin(#[source] std::io::Error),
    /// The terminal could not be set up or read.
    #[error("the terminal could not be read: {0}")]
    Terminal(#[source] rustyline::error::ReadlineError),
    /// A result could not be written as JSON.
    #[error("a result could not be encoded as JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Every node failed to give its status.
    #[error("no node answered")]
    NoNodeAnswered,
    /// A key given on the command line is not in its encoding.
    #[error(transparent)]
    Key(#[from] crate::encoding::DecodeError),
    /// The cluster did not carry out a command.
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
    /// The cluster answered, but not all of it is well (`flotilla status` exits with 2).
    #[error("{0}")]
    Unhealthy(crate::status::Unhealthy),
}

/// Reads commands from stdin until it ends: on a terminal with a prompt, line editing and
/// history, printing `output` (text unless given); otherwise line by line, printing `output`
/// (JSON lines unless given). A line that is not a command (not UTF-8, unknown, the wrong
/// words) gets one error line, and the shell goes on.
///
/// # Errors
/// stdin, the terminal or stdout failed.
pub async fn run(
    client: &Client,
    encoding: Encoding,
    output: Option<Output>,
) -> Result<(), ShellError> {
    if std::io::stdin().is_terminal() {
        let output = output.unwrap_or(Output::Text);
        terminal::run(client, Format { encoding, output }).await
    } else {
        let output = output.unwrap_or(Output::Json);
        piped(client, Format { encoding, output }).await
    }
}

/// The shell reading a pipe or a file.
async fn piped(client: &Client, format: Format) -> Result<(), ShellError> {
    let mut input = BufReader::new(tokio::io::stdin());
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = input.read_until(b'\n', &mut line).await;
        if read.map_err(ShellError::Stdin)? == 0 {
            return Ok(());
        }
        if let Some(answer) = answer(client, &line, format).await? {
            println!("{answer}");
        }
    }
}

/// What the shell prints for one line of input (`None`: nothing, for a blank line or a
/// comment).
///
/// # Errors
/// A result could not be encoded as JSON.
pub async fn answer(
    client: &Client,
    line: &[u8],
    format: Format,
) -> Result<Option<String>, ShellError> {
    let no_key = || Value::String(String::new());
    let text = match (read_command(line, format.encoding), format.output) {
        (Input::Skip, _) => return Ok(None),
        (Input::Help, Output::Text) => HELP.to_owned(),
        (Input::Help, Output::Json) => {
            OpResult::success("help", no_key(), Value::String(HELP.into())).line()?
        }
        (Input::Invalid { error, .. }, Output::Text) => format!("error: {error}"),
        (Input::Invalid { op, error }, Output::Json) => {
            OpResult::invalid(&op, no_key(), error.to_string()).line()?
        }
        (Input::Command(command), _) => execute(client, command, format).await?,
    };
    Ok(Some(text))
}

/// Runs one command; its result or its error as the shell prints it.
async fn execute(client: &Client, command: Command, format: Format) -> Result<String, ShellError> {
    let (op, key) = describe(&command);
    let key = key.to_vec();
    let encoding = format.encoding;
    Ok(match (try_execute(client, command).await, format.output) {
        (Ok(reply), Output::Text) => reply.text(encoding),
        (Ok(reply), Output::Json) => OpResult::done(op, &key, &reply, encoding).line()?,
        (Err(error), Output::Text) => format!("error: {error}"),
        (Err(error), Output::Json) => OpResult::failed(op, &key, &error, encoding).line()?,
    })
}
