//! The crate's one `unsafe` call: mapping an immutable file read-only with memmap2.

use memmap2::Mmap;
use std::fs::File;
use std::io;

/// Maps `file` read-only.
///
/// The caller promises the file is never written or truncated while mapped: sealed segments and
/// snapshot files are immutable once synced, and are only deleted (which keeps the mapping valid
/// on Unix), never rewritten in place.
pub(crate) fn map_immutable(file: &File) -> io::Result<Mmap> {
    // SAFETY: the file is immutable for the lifetime of the map (see the doc above), so no other
    // writer can change the bytes behind the returned slice.
    #[allow(unsafe_code)]
    let map = unsafe { Mmap::map(file)? };
    Ok(map)
}
