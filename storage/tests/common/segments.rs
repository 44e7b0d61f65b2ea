//! Walking and damaging segment files the way `docs/data/wal-format.md` draws them: the
//! batches of a segment, and a flipped byte or zeroed bytes at an offset.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The segment header's size.
pub const SEGMENT_HEADER_BYTES: u64 = 32;
/// A batch header's or sync mark's size.
pub const FRAME_BYTES: u64 = 32;

/// The segment files in `directory`, oldest first.
pub fn segment_paths(directory: &Path) -> Vec<PathBuf> {
    paths_ending(directory, "wal")
}

/// The files in `directory` with the extension `extension`, sorted by name.
pub fn paths_ending(directory: &Path, extension: &str) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(directory)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == extension))
        .collect();
    paths.sort();
    paths
}

/// One batch as the format lays it out: header at `offset`, body, padding, maybe a mark.
#[derive(Clone, Copy, Debug)]
pub struct Span {
    pub offset: u64,
    pub body_bytes: u64,
    pub end: u64,
    pub marked: bool,
}

/// A body and its 0xFF filler: a multiple of 32 bytes with at least two bytes of filler.
pub fn padded(body_bytes: u64) -> u64 {
    let filler = (FRAME_BYTES - body_bytes % FRAME_BYTES) % FRAME_BYTES;
    body_bytes
        + if filler < 2 {
            filler + FRAME_BYTES
        } else {
            filler
        }
}

/// Walks the batches of a segment the way `docs/data/wal-format.md` draws them.
pub fn batches(path: &Path) -> Vec<Span> {
    let bytes = fs::read(path).unwrap();
    let mut spans: Vec<Span> = Vec::new();
    let mut offset = SEGMENT_HEADER_BYTES as usize;
    while offset + 32 <= bytes.len() {
        match &bytes[offset..offset + 4] {
            b"FBAT" => {
                let body_bytes =
                    u32::from_le_bytes(bytes[offset + 16..offset + 20].try_into().unwrap());
                let padded = padded(u64::from(body_bytes));
                let end = offset as u64 + FRAME_BYTES + padded;
                spans.push(Span {
                    offset: offset as u64,
                    body_bytes: u64::from(body_bytes),
                    end,
                    marked: false,
                });
                offset = end as usize;
            }
            b"FSYN" => {
                spans.last_mut().unwrap().marked = true;
                offset += 32;
            }
            _ => break,
        }
    }
    spans
}

pub fn last_batch(path: &Path) -> Span {
    *batches(path).last().unwrap()
}

pub fn flip_byte(path: &Path, offset: u64) {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut byte = [0];
    file.read_exact_at(&mut byte, offset).unwrap();
    file.write_all_at(&[byte[0] ^ 0x40], offset).unwrap();
}

pub fn zero(path: &Path, offset: u64, length: u64) {
    let file = OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(&vec![0; length as usize], offset)
        .unwrap();
}
