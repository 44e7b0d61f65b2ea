//! The spare segment: while the writer fills the active segment, a background thread writes
//! zeros over the next segment's file and syncs it, so that after the roll-over every append
//! overwrites blocks that are already allocated (`set_len` alone leaves a sparse file whose
//! first write to each block allocates it, and `fdatasync` then has metadata to journal).

use crate::file::{FileSystem, SegmentFile};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

/// The spare's file name; recovery ignores it (it is not a segment until renamed).
pub(crate) const SPARE_FILE_NAME: &str = "spare.wal.tmp";

/// The bytes of zeros written per call.
const CHUNK_BYTES: usize = 1 << 20;

/// A spare being prepared, or ready.
pub(crate) struct Spare {
    handle: JoinHandle<io::Result<()>>,
}

impl Spare {
    /// Starts zero-filling `directory/spare.wal.tmp` to `segment_bytes` on a new thread.
    pub(crate) fn start(
        fs: Arc<dyn FileSystem>,
        directory: &Path,
        segment_bytes: u64,
    ) -> io::Result<Spare> {
        let path = directory.join(SPARE_FILE_NAME);
        let handle = std::thread::Builder::new()
            .name("wal-spare".to_owned())
            .spawn(move || zero_fill(fs.as_ref(), &path, segment_bytes))?;
        Ok(Spare { handle })
    }

    /// Waits for the spare; returns its path once it is zero-filled and synced.
    pub(crate) fn finish(self, directory: &Path) -> io::Result<PathBuf> {
        self.handle
            .join()
            .map_err(|_| io::Error::other("the spare segment thread panicked"))??;
        Ok(directory.join(SPARE_FILE_NAME))
    }
}

/// Zero-fills the spare, syncing after every chunk: on ext4 a foreground `fdatasync` commits
/// the journal and with it waits for other files' newly allocated dirty blocks, so a spare with
/// 64 MiB of dirty zeros would stall the writer's next sync. One chunk at a time keeps that
/// stall to one chunk.
fn zero_fill(fs: &dyn FileSystem, path: &Path, segment_bytes: u64) -> io::Result<()> {
    let file = fs.open(path, true)?;
    file.set_len(0)?;
    let mut offset = 0;
    while offset < segment_bytes {
        let end = (offset + CHUNK_BYTES as u64).min(segment_bytes);
        write_zeros(file.as_ref(), offset, end)?;
        file.sync_data()?;
        offset = end;
    }
    Ok(())
}

/// Writes zeros over `[start, end)` of `file`, a megabyte at a time (not synced).
pub(crate) fn write_zeros(file: &dyn SegmentFile, start: u64, end: u64) -> io::Result<()> {
    let zeros = vec![0; CHUNK_BYTES];
    let mut offset = start;
    while offset < end {
        let chunk_bytes = (end - offset).min(CHUNK_BYTES as u64);
        let chunk = zeros.get(..chunk_bytes as usize).unwrap_or_default();
        file.write_at(offset, chunk)?;
        offset += chunk_bytes;
    }
    Ok(())
}
