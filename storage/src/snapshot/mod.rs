//! KV snapshot files: an immutable, sorted, checksummed file per group at an applied entry.
//! `write_snapshot` builds one (on any thread) from a `KvSnapshotSource`; `SnapshotFile` maps
//! it with memmap2, serves it in chunks to stream to a follower, and restores the state
//! machine from it on restart. The file's bytes are what goes into `flotilla_raft::Snapshot::data`.

mod format;
mod reader;
mod writer;

pub(crate) use format::snapshot_parts;
pub use format::{HEADER_BYTES, SnapshotHeader, decode_snapshot, verify_snapshot};
pub use reader::SnapshotFile;
pub use writer::{
    SnapshotWriter, encode_snapshot, encode_view, write_snapshot, write_view, write_view_at,
};
