//! The shell on a terminal: a prompt, line editing and a history (in memory, for this session)
//! through rustyline.

use super::{Format, ShellError, answer};
use crate::client::Client;
use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;

/// What the shell shows when it waits for a line.
const PROMPT: &str = "flotilla> ";

/// Runs the shell until Ctrl-D, `exit` or `quit`.
pub(super) async fn run(client: &Client, format: Format) -> Result<(), ShellError> {
    let mut editor = DefaultEditor::new().map_err(ShellError::Terminal)?;
    println!("flotilla shell: `help` lists the commands; Ctrl-D or `exit` leaves.");
    loop {
        // Reading waits on a person: let the runtime's other tasks (the client's
        // connections) move off this thread meanwhile.
        let line = match tokio::task::block_in_place(|| editor.readline(PROMPT)) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => return Ok(()),
            Err(error) => return Err(ShellError::Terminal(error)),
        };
        if matches!(line.trim(), "exit" | "quit") {
            return Ok(());
        }
        if !line.trim().is_empty() {
            // Only a line that could not be kept fails here; the shell works without it.
            editor.add_history_entry(line.as_str()).ok();
        }
        if let Some(text) = answer(client, line.as_bytes(), format).await? {
            println!("{text}");
        }
    }
}
