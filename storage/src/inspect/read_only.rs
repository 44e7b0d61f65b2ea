//! A `FileSystem` that can only read: every call that would create, write, truncate, rename,
//! remove or sync a file fails, so an inspection that reuses recovery's scan cannot change the
//! directory even if a branch meant to skip a repair were missed.

use crate::file::{FileSystem, SegmentFile};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The real file system, opened read-only.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ReadOnlyFs;

/// A file opened for reading only.
#[derive(Debug)]
struct ReadOnlyFile {
    file: File,
}

fn refused() -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        "an inspection never changes the data directory",
    )
}

impl SegmentFile for ReadOnlyFile {
    fn write_at(&self, _offset: u64, _bytes: &[u8]) -> io::Result<()> {
        Err(refused())
    }

    fn sync_data(&self) -> io::Result<()> {
        Err(refused())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn set_len(&self, _file_bytes: u64) -> io::Result<()> {
        Err(refused())
    }

    fn len_bytes(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    // No memory map: the default `None` makes readers copy the bytes, so nothing here relies
    // on the file staying immutable.
}

impl FileSystem for ReadOnlyFs {
    fn open(&self, path: &Path, create: bool) -> io::Result<Box<dyn SegmentFile>> {
        if create {
            return Err(refused());
        }
        Ok(Box::new(ReadOnlyFile {
            file: File::open(path)?,
        }))
    }

    fn list(&self, directory: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for dir_entry in fs::read_dir(directory)? {
            if let Some(name) = dir_entry?.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn remove(&self, _path: &Path) -> io::Result<()> {
        Err(refused())
    }

    fn rename(&self, _source: &Path, _target: &Path) -> io::Result<()> {
        Err(refused())
    }

    fn sync_directory(&self, _directory: &Path) -> io::Result<()> {
        Err(refused())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_change_is_refused() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("a");
        fs::write(&path, b"abc").unwrap();
        let fs = ReadOnlyFs;
        assert!(fs.open(&directory.path().join("b"), true).is_err());
        let file = fs.open(&path, false).unwrap();
        assert!(file.write_at(0, b"x").is_err());
        assert!(file.set_len(0).is_err());
        assert!(file.sync_data().is_err());
        assert!(fs.remove(&path).is_err());
        assert!(fs.rename(&path, &directory.path().join("c")).is_err());
        assert_eq!(fs::read(&path).unwrap(), b"abc");
        assert_eq!(fs.list(directory.path()).unwrap(), vec!["a".to_owned()]);
    }
}
