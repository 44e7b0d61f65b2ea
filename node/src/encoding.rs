//! How keys and values are written on the command line and in the shell, and printed back:
//! as UTF-8 text (the default), hex or base64 (`--encoding`).
//!
//! Keys are bytes, and the default ranges split the key space at byte values, so some ranges
//! hold only keys that are not UTF-8 (no UTF-8 text starts with a byte 0x80-0xbf): `hex` and
//! `base64` reach every key. Under `utf8`, a key or value read back that is not UTF-8 is never
//! printed lossily: JSON shows it as `{"hex": "…"}` (an object where text would be a string)
//! and text as `(not UTF-8, hex: …)`.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Value, json};

/// Base64 as RFC 4648 §4 writes it (standard alphabet, padded); input with or without the
/// padding is accepted.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The most characters of a bad argument an error repeats.
const QUOTED_CHARS_MAX: usize = 64;

/// How keys and values are given and printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Encoding {
    /// As text; bytes that are not UTF-8 print under a marker, never lossily.
    #[default]
    Utf8,
    /// Two hex digits a byte (printed lowercase, read in either case).
    Hex,
    /// Base64, standard alphabet (printed padded, read with or without padding).
    Base64,
}

/// Why an argument is not a key or value in the chosen encoding.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// Under `--encoding hex`, the text is not hex.
    #[error("`{text}` is not hex: {reason}")]
    Hex {
        /// The argument (its first 64 characters).
        text: String,
        /// What is wrong with it.
        #[source]
        reason: hex::FromHexError,
    },
    /// Under `--encoding base64`, the text is not base64.
    #[error("`{text}` is not base64: {reason}")]
    Base64 {
        /// The argument (its first 64 characters).
        text: String,
        /// What is wrong with it.
        #[source]
        reason: base64::DecodeError,
    },
}

impl Encoding {
    /// The bytes `text` stands for.
    ///
    /// # Errors
    /// `text` is not hex or base64 when that is the encoding (every text is UTF-8).
    pub fn decode(self, text: &str) -> Result<Vec<u8>, DecodeError> {
        match self {
            Self::Utf8 => Ok(text.as_bytes().to_vec()),
            Self::Hex => hex::decode(text).map_err(|reason| DecodeError::Hex {
                text: quoted(text),
                reason,
            }),
            Self::Base64 => BASE64.decode(text).map_err(|reason| DecodeError::Base64 {
                text: quoted(text),
                reason,
            }),
        }
    }

    /// `bytes` for JSON output: a string, or `{"hex": "…"}` for bytes that are not UTF-8
    /// under `utf8`.
    #[must_use]
    pub fn json(self, bytes: &[u8]) -> Value {
        match self.encode(bytes) {
            Ok(text) => Value::String(text),
            Err(NotUtf8) => json!({ "hex": hex::encode(bytes) }),
        }
    }

    /// `bytes` for text output: as they are, or `(not UTF-8, hex: …)` for bytes that are not
    /// UTF-8 under `utf8`.
    #[must_use]
    pub fn text(self, bytes: &[u8]) -> String {
        match self.encode(bytes) {
            Ok(text) => text,
            Err(NotUtf8) => format!("(not UTF-8, hex: {})", hex::encode(bytes)),
        }
    }

    /// The encoding's name, as `--encoding` takes it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Utf8 => "utf8",
            Self::Hex => "hex",
            Self::Base64 => "base64",
        }
    }

    /// `bytes`, to print in this encoding (`Encoded`).
    #[must_use]
    pub fn of(self, bytes: &[u8]) -> Encoded {
        Encoded {
            bytes: bytes.to_vec(),
            encoding: self,
        }
    }

    /// `bytes` in this encoding, unless they are not UTF-8 under `utf8`.
    fn encode(self, bytes: &[u8]) -> Result<String, NotUtf8> {
        match self {
            Self::Utf8 => std::str::from_utf8(bytes)
                .map(str::to_owned)
                .map_err(|_| NotUtf8),
            Self::Hex => Ok(hex::encode(bytes)),
            Self::Base64 => Ok(BASE64.encode(bytes)),
        }
    }
}

/// Bytes that `utf8` cannot print as they are.
struct NotUtf8;

/// Bytes with the encoding they print in: displayed as [`Encoding::text`] and serialized as
/// [`Encoding::json`], so a table or a JSON document of keys (such as range bounds) follows
/// `--encoding` as the data commands do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// How they print.
    pub encoding: Encoding,
}

impl std::fmt::Display for Encoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.encoding.text(&self.bytes))
    }
}

impl serde::Serialize for Encoded {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.encoding.json(&self.bytes).serialize(serializer)
    }
}

/// `text` cut to its first `QUOTED_CHARS_MAX` characters, for an error message.
fn quoted(text: &str) -> String {
    match text.char_indices().nth(QUOTED_CHARS_MAX) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The bytes an argument stands for, or the start of the error saying why it is not one.
    type Decoded = Result<&'static [u8], &'static str>;

    /// Input line: encoding, text. Expected: what it decodes to.
    const DECODE_TABLE: &[(Encoding, &str, Decoded)] = &[
        (Encoding::Utf8, "", Ok(b"")),
        (Encoding::Utf8, "héllo", Ok("héllo".as_bytes())),
        (Encoding::Hex, "", Ok(b"")),
        (Encoding::Hex, "80ff00", Ok(b"\x80\xff\x00")),
        (Encoding::Hex, "80FF00", Ok(b"\x80\xff\x00")),
        (
            Encoding::Hex,
            "8",
            Err("`8` is not hex: Odd number of digits"),
        ),
        (
            Encoding::Hex,
            "zz",
            Err("`zz` is not hex: Invalid character 'z'"),
        ),
        (Encoding::Base64, "", Ok(b"")),
        (Encoding::Base64, "gP8A", Ok(b"\x80\xff\x00")),
        (Encoding::Base64, "aGk=", Ok(b"hi")),
        (Encoding::Base64, "aGk", Ok(b"hi")),
        (
            Encoding::Base64,
            "a*k=",
            Err("`a*k=` is not base64: Invalid symbol"),
        ),
    ];

    #[test]
    fn arguments_decode_in_each_encoding_and_bad_ones_say_why() {
        for (encoding, text, expected) in DECODE_TABLE {
            let decoded = encoding.decode(text);
            match (expected, &decoded) {
                (Ok(bytes), Ok(got)) => assert_eq!(got, bytes, "{encoding:?} {text}"),
                (Err(start), Err(error)) => {
                    assert!(error.to_string().starts_with(start), "{error}");
                }
                _ => panic!("{encoding:?} `{text}`: expected {expected:?}, got {decoded:?}"),
            }
        }
    }

    #[test]
    fn every_byte_string_round_trips_through_hex_and_base64() {
        let every_byte: Vec<u8> = (0..=255).collect();
        for encoding in [Encoding::Hex, Encoding::Base64] {
            for length in [0, 1, 2, 3, 4, 255, 256] {
                let bytes = &every_byte[..length.min(every_byte.len())];
                let text = encoding.text(bytes);
                assert_eq!(encoding.decode(&text).unwrap(), bytes, "{encoding:?}");
                assert_eq!(encoding.json(bytes), Value::String(text));
            }
        }
        assert_eq!(Encoding::Hex.text(b"\x80\xbf"), "80bf");
        assert_eq!(Encoding::Base64.text(b"\x80\xff\x00"), "gP8A");
    }

    #[test]
    fn bytes_that_are_not_utf8_print_under_a_marker_never_lossily() {
        let bytes = b"a\xff\xfe";
        assert_eq!(Encoding::Utf8.text(bytes), "(not UTF-8, hex: 61fffe)");
        assert_eq!(Encoding::Utf8.json(bytes), json!({ "hex": "61fffe" }));
        assert_eq!(Encoding::Utf8.text("héllo".as_bytes()), "héllo");
        assert_eq!(Encoding::Utf8.json(b"hi"), json!("hi"));
    }

    /// `Encoded` prints and serializes as `text` and `json` of its encoding do.
    #[test]
    fn encoded_bytes_print_and_serialize_in_their_encoding() {
        let bytes = b"\x80\x00";
        let cases = [
            (Encoding::Hex, "8000", json!("8000")),
            (Encoding::Base64, "gAA=", json!("gAA=")),
            (
                Encoding::Utf8,
                "(not UTF-8, hex: 8000)",
                json!({ "hex": "8000" }),
            ),
        ];
        for (encoding, text, value) in cases {
            let encoded = encoding.of(bytes);
            assert_eq!(encoded.to_string(), text, "{encoding:?}");
            assert_eq!(
                serde_json::to_value(&encoded).unwrap(),
                value,
                "{encoding:?}"
            );
        }
        assert_eq!(Encoding::Utf8.of(b"app/").to_string(), "app/");
    }

    #[test]
    fn an_error_quotes_at_most_64_characters_of_the_argument() {
        let long = "z".repeat(1000);
        let message = Encoding::Hex.decode(&long).unwrap_err().to_string();
        assert!(message.starts_with(&format!("`{}…` is not hex", "z".repeat(64))));
        assert!(message.len() < 200, "{message}");
    }
}
