//! The file layer behind the log: a small `SegmentFile` trait (write at an offset, sync, read,
//! set length) and a `FileSystem` that opens them, with the real implementation on `std::fs`.
//! The crash-simulating twin lives in `crash.rs`.

use crate::mmap::map_immutable;
use memmap2::Mmap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// One file of the log: a segment or a snapshot. Bytes are durable only after `sync_data`.
pub trait SegmentFile: Send + Sync {
    /// Writes all of `bytes` at `offset`; they are durable only after the next `sync_data`.
    fn write_at(&self, offset: u64, bytes: &[u8]) -> io::Result<()>;
    /// Makes every earlier `write_at` and `set_len` durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// Fills `buf` from `offset`; fails if the file is shorter.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Sets the length, zero-filling when it grows; durable after the next `sync_data`.
    fn set_len(&self, file_bytes: u64) -> io::Result<()>;
    /// The current length in bytes.
    fn len_bytes(&self) -> io::Result<u64>;
    /// A read-only map of the file, once the caller will never write it again; `None` when the
    /// file is not backed by the OS (the crash simulator), in which case callers use `read_at`.
    fn map_immutable(&self) -> io::Result<Option<Mmap>> {
        Ok(None)
    }
}

/// Opens, lists and removes the files of one data directory.
pub trait FileSystem: Send + Sync {
    /// Opens `path` for reading and writing, creating it (empty) when `create` is set.
    fn open(&self, path: &Path, create: bool) -> io::Result<Box<dyn SegmentFile>>;
    /// The names of the files in `directory`, creating the directory when missing.
    fn list(&self, directory: &Path) -> io::Result<Vec<String>>;
    /// Removes `path`; durable after `sync_directory`.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Renames `source` to `target` atomically; durable after `sync_directory`.
    fn rename(&self, source: &Path, target: &Path) -> io::Result<()>;
    /// Makes creations, renames and removals in `directory` durable.
    fn sync_directory(&self, directory: &Path) -> io::Result<()>;
}

/// Reads a whole file: through a map when the file system offers one, otherwise by `read_at`.
pub(crate) fn read_whole(file: &dyn SegmentFile) -> io::Result<Vec<u8>> {
    if let Some(map) = file.map_immutable()? {
        return Ok(map.to_vec());
    }
    let file_bytes = usize::try_from(file.len_bytes()?).map_err(io::Error::other)?;
    let mut buf = vec![0; file_bytes];
    file.read_at(0, &mut buf)?;
    Ok(buf)
}

/// The operating system's files.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealFs;

/// A file on disk.
#[derive(Debug)]
pub struct RealFile {
    file: File,
}

impl SegmentFile for RealFile {
    fn write_at(&self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all_at(bytes, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn set_len(&self, file_bytes: u64) -> io::Result<()> {
        self.file.set_len(file_bytes)
    }

    fn len_bytes(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn map_immutable(&self) -> io::Result<Option<Mmap>> {
        if self.len_bytes()? == 0 {
            return Ok(None);
        }
        map_immutable(&self.file).map(Some)
    }
}

impl FileSystem for RealFs {
    fn open(&self, path: &Path, create: bool) -> io::Result<Box<dyn SegmentFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
        Ok(Box::new(RealFile { file }))
    }

    fn list(&self, directory: &Path) -> io::Result<Vec<String>> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(directory)?;
        let mut names = Vec::new();
        for dir_entry in fs::read_dir(directory)? {
            if let Some(name) = dir_entry?.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn rename(&self, source: &Path, target: &Path) -> io::Result<()> {
        fs::rename(source, target)
    }

    fn sync_directory(&self, directory: &Path) -> io::Result<()> {
        File::open(directory)?.sync_all()
    }
}
