//! Flotilla's documentation: one module per chapter, each the Markdown file beside it.
#![forbid(unsafe_code)]

/// The Raft protocol as Flotilla implements it.
pub mod protocol {
    #![doc = include_str!("../protocol/README.md")]
}
