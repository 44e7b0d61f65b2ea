//! Little-endian integers at fixed offsets of on-disk headers, shared by the WAL record and
//! snapshot file formats. Callers check lengths first; a short slice reads as zero bytes, which
//! the checksum that covers every header then rejects.

/// The `u32` at `at`.
pub(crate) fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    if let Some(source) = bytes.get(at..at + 4) {
        word.copy_from_slice(source);
    }
    u32::from_le_bytes(word)
}

/// The `u64` at `at`.
pub(crate) fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    if let Some(source) = bytes.get(at..at + 8) {
        word.copy_from_slice(source);
    }
    u64::from_le_bytes(word)
}

/// The `u16` at `at`.
pub(crate) fn read_u16(bytes: &[u8], at: usize) -> u16 {
    let mut word = [0; 2];
    if let Some(source) = bytes.get(at..at + 2) {
        word.copy_from_slice(source);
    }
    u16::from_le_bytes(word)
}
