//! One line of shell input: split into words by POSIX shell quoting rules, its keys and values
//! decoded in the shell's encoding.

use crate::encoding::{DecodeError, Encoding};
use flotilla_storage::Command;

/// What `help` prints.
pub const HELP: &str = "\
Commands, one a line:
  get KEY                   the value of KEY, or (absent)
  put KEY VALUE             set KEY; prints the value it replaced
  delete KEY                remove KEY; prints the value it had
  cas KEY EXPECTED NEW      set KEY to NEW only if it holds EXPECTED (\"-\": absent; NEW \"-\"
                            removes KEY); prints whether it swapped and the value before
  scan START END LIMIT      at most LIMIT pairs with START <= key < END (\"-\": unbounded)
  help                      this list
Words are split as a POSIX shell does: quote a word that holds spaces, a # or a quote
(put \"my key\" 'a value with spaces'); a word starting with # begins a comment.
Keys and values are text, or hex or base64 as `flotilla shell --encoding` chose.
On a terminal, exit, quit or Ctrl-D leaves; Ctrl-C drops the line being typed.";

/// What one line of shell input asks for.
#[derive(Debug, PartialEq)]
pub enum Input {
    /// A blank line or a comment.
    Skip,
    /// `help`: print the commands.
    Help,
    /// A command to run.
    Command(Command),
    /// Not a command.
    Invalid {
        /// Its first word, if it has one.
        op: String,
        /// Why it is not a command.
        error: LineError,
    },
}

/// Why a line of shell input is not a command.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum LineError {
    /// The line's bytes are not UTF-8.
    #[error(
        "the line is not UTF-8 (byte {byte} of {length} is not): the shell takes text; give other \
         keys and values with --encoding hex or base64"
    )]
    NotUtf8 {
        /// The first byte that is not (counted from 1).
        byte: usize,
        /// The line's length in bytes.
        length: usize,
    },
    /// A quote is opened and not closed (or the line ends in a lone backslash).
    #[error("a quote in `{0}` is not closed")]
    Unclosed(String),
    /// An unknown command, or the wrong number of words.
    #[error(
        "cannot parse `{0}`: expected get KEY | put KEY VALUE | delete KEY | \
         cas KEY EXPECTED NEW | scan START END LIMIT | help"
    )]
    Words(String),
    /// A scan's limit is not a count.
    #[error("`{0}` is not a scan limit (a count of pairs, at most 4294967295)")]
    Limit(String),
    /// A key or value is not in the shell's encoding.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// One line of shell input, as raw bytes (its newline included or not).
#[must_use]
pub fn read_command(bytes: &[u8], encoding: Encoding) -> Input {
    let line = match std::str::from_utf8(bytes) {
        Ok(line) => line.trim(),
        Err(error) => {
            let error = LineError::NotUtf8 {
                byte: error.valid_up_to() + 1,
                length: bytes.len(),
            };
            return Input::Invalid {
                op: String::new(),
                error,
            };
        }
    };
    let Some(words) = shlex::split(line) else {
        let op = line.split_whitespace().next().unwrap_or_default().into();
        let error = LineError::Unclosed(line.into());
        return Input::Invalid { op, error };
    };
    match words.as_slice() {
        [] => Input::Skip,
        [help] if help == "help" => Input::Help,
        _ => match parse_words(&words, encoding) {
            Ok(command) => Input::Command(command),
            Err(error) => Input::Invalid {
                op: words.first().cloned().unwrap_or_default(),
                error,
            },
        },
    }
}

/// The words of one line as a command. The word "-" stands for an absent value in `cas` and
/// for no bound in `scan`, whatever the encoding.
///
/// # Errors
/// An unknown command, the wrong number of words, a bad limit, or a key or value that is not
/// in `encoding`.
pub fn parse_words(words: &[String], encoding: Encoding) -> Result<Command, LineError> {
    let bytes = |text: &str| encoding.decode(text);
    let optional = |text: &str| (text != "-").then(|| bytes(text)).transpose();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["get", key] => Ok(Command::Get { key: bytes(key)? }),
        ["put", key, value] => Ok(Command::Put {
            key: bytes(key)?,
            value: bytes(value)?,
        }),
        ["delete", key] => Ok(Command::Delete { key: bytes(key)? }),
        ["cas", key, expected, new] => Ok(Command::CompareAndSwap {
            key: bytes(key)?,
            expected: optional(expected)?,
            new: optional(new)?,
        }),
        ["scan", start, end, limit] => Ok(Command::Scan {
            start: optional(start)?.unwrap_or_default(),
            end: optional(end)?,
            limit: limit
                .parse()
                .map_err(|_| LineError::Limit((*limit).into()))?,
        }),
        _ => Err(LineError::Words(
            shlex::try_join(words.iter().copied()).unwrap_or_default(),
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn command(line: &str, encoding: Encoding) -> Command {
        match read_command(line.as_bytes(), encoding) {
            Input::Command(command) => command,
            other => panic!("`{line}` should be a command: {other:?}"),
        }
    }

    fn error(line: &[u8]) -> (String, String) {
        match read_command(line, Encoding::Utf8) {
            Input::Invalid { op, error } => (op, error.to_string()),
            other => panic!("{line:?} should be refused: {other:?}"),
        }
    }

    #[test]
    fn a_line_that_is_not_utf8_is_an_error_line_not_the_end() {
        let (op, message) = error(b"put k \xff\xfe\n");
        assert_eq!(op, "");
        assert!(message.contains("not UTF-8 (byte 7 of 9"), "{message}");
        assert!(message.contains("--encoding hex or base64"), "{message}");
        assert_eq!(
            command("get k\n", Encoding::Utf8),
            Command::Get { key: b"k".to_vec() }
        );
        assert_eq!(
            read_command(b"  # a comment\n", Encoding::Utf8),
            Input::Skip
        );
        assert_eq!(read_command(b"   \r\n", Encoding::Utf8), Input::Skip);
        let (op, message) = error(b"frobnicate a");
        assert_eq!(op, "frobnicate");
        assert!(
            message.starts_with("cannot parse `frobnicate a`"),
            "{message}"
        );
    }

    #[test]
    fn quoted_words_hold_spaces_quotes_and_hashes() {
        let cases: &[(&str, &[u8], &[u8])] = &[
            (
                r#"put "my key" "a value with spaces""#,
                b"my key",
                b"a value with spaces",
            ),
            (r"put 'it''s' 'single quotes'", b"its", b"single quotes"),
            (r#"put k "say \"hi\"""#, b"k", br#"say "hi""#),
            (r##"put k "#tag""##, b"k", b"#tag"),
            (r#"put k """#, b"k", b""),
            ("put\tk\t  v  ", b"k", b"v"),
            ("put k v # a comment", b"k", b"v"),
        ];
        for (line, key, value) in cases {
            let expected = Command::Put {
                key: key.to_vec(),
                value: value.to_vec(),
            };
            assert_eq!(command(line, Encoding::Utf8), expected, "{line}");
        }
        let (op, message) = error(br#"put "my key v"#);
        assert_eq!(op, "put");
        assert_eq!(message, r#"a quote in `put "my key v` is not closed"#);
    }

    #[test]
    fn keys_and_values_decode_in_the_shell_encoding_and_dash_stays_absent() {
        assert_eq!(
            command("put 80ff 00", Encoding::Hex),
            Command::Put {
                key: b"\x80\xff".to_vec(),
                value: b"\x00".to_vec(),
            }
        );
        assert_eq!(
            command("cas gA== - /w==", Encoding::Base64),
            Command::CompareAndSwap {
                key: b"\x80".to_vec(),
                expected: None,
                new: Some(b"\xff".to_vec()),
            }
        );
        assert_eq!(
            command("scan - 80 10", Encoding::Hex),
            Command::Scan {
                start: Vec::new(),
                end: Some(b"\x80".to_vec()),
                limit: 10,
            }
        );
        let Input::Invalid { op, error } = read_command(b"get zz", Encoding::Hex) else {
            panic!("`zz` is not hex");
        };
        assert_eq!(op, "get");
        assert!(error.to_string().starts_with("`zz` is not hex"), "{error}");
    }

    #[test]
    fn help_a_bad_limit_and_wrong_words_are_told_apart() {
        assert_eq!(read_command(b"help\n", Encoding::Utf8), Input::Help);
        assert!(HELP.contains("scan START END LIMIT"));
        let (_, message) = error(b"scan - - many");
        assert!(
            message.starts_with("`many` is not a scan limit"),
            "{message}"
        );
        let (_, message) = error(b"scan - - 4294967296");
        assert!(message.contains("is not a scan limit"), "{message}");
        let (op, message) = error(b"get");
        assert_eq!(op, "get");
        assert!(message.contains("expected get KEY"), "{message}");
        let (_, message) = error(b"put 'my key' v extra");
        assert!(
            message.starts_with("cannot parse `put 'my key' v extra`"),
            "{message}"
        );
    }
}
