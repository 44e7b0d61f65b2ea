//! A crash-simulating file system for tests: each file keeps the bytes written (live) apart from
//! the bytes synced (durable), and `crash()` keeps a random, torn subset of the unsynced writes,
//! whole 512-byte sectors of the file, the way a power loss does (after redb's `CrashBackend`
//! with live and durable images). `flip_byte` damages synced data at rest.
//!
//! Directory operations (create, rename, remove) are durable at once; the real file system
//! syncs the directory after each of them.

use crate::file::{FileSystem, SegmentFile};
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The unit in which an unsynced write survives a crash or not.
const SECTOR_BYTES: usize = 512;

/// A write or resize not yet synced.
#[derive(Clone, Debug)]
enum Pending {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

/// The two images of one simulated file.
#[derive(Debug, Default)]
struct Images {
    live: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<Pending>,
}

#[derive(Debug)]
struct Shared {
    files: BTreeMap<PathBuf, Arc<Mutex<Images>>>,
    generation: u64,
    io_budget: Option<u64>,
    rng: ChaCha8Rng,
}

/// A simulated file system whose files lose unsynced writes on `crash()`.
#[derive(Clone, Debug)]
pub struct CrashFs {
    shared: Arc<Mutex<Shared>>,
}

/// A file of a `CrashFs`. After a crash, handles from before it fail every call.
#[derive(Debug)]
pub struct CrashFile {
    images: Arc<Mutex<Images>>,
    shared: Arc<Mutex<Shared>>,
    generation: u64,
}

impl CrashFs {
    /// An empty file system; `seed` decides which unsynced sectors survive each crash.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        let shared = Shared {
            files: BTreeMap::new(),
            generation: 0,
            io_budget: None,
            rng: ChaCha8Rng::seed_from_u64(seed),
        };
        Self {
            shared: Arc::new(Mutex::new(shared)),
        }
    }

    /// Simulates a power loss: every file keeps its durable image plus a random subset of the
    /// sectors written since its last sync; handles opened before fail from now on.
    pub fn crash(&self) {
        let mut shared = self.shared.lock();
        shared.generation += 1;
        shared.io_budget = None;
        let files: Vec<_> = shared.files.values().cloned().collect();
        for images in files {
            let mut images = images.lock();
            let pending = std::mem::take(&mut images.pending);
            for op in pending {
                keep_some(&mut images.durable, op, &mut shared.rng);
            }
            images.live = images.durable.clone();
        }
    }

    /// Lets `operation_count` more writes, syncs or resizes succeed, then fails every one until
    /// the next `crash()`: the power goes out in the middle of a write.
    pub fn fail_after(&self, operation_count: u64) {
        self.shared.lock().io_budget = Some(operation_count);
    }

    /// Cancels `fail_after`: every operation succeeds again.
    pub fn restore_power(&self) {
        self.shared.lock().io_budget = None;
    }

    /// Flips one byte of a file in both images: a disk that corrupts data at rest.
    ///
    /// # Panics
    /// If the file does not exist or is shorter than `offset`: a bug in the test.
    pub fn flip_byte(&self, path: &Path, offset: u64) {
        self.flip_byte_with(path, offset, 0xff);
    }

    /// Flips the bits of `mask` in one byte of a file, in both images.
    ///
    /// # Panics
    /// As `flip_byte`.
    pub fn flip_byte_with(&self, path: &Path, offset: u64, mask: u8) {
        let shared = self.shared.lock();
        let mut images = shared.files.get(path).expect("no such file").lock();
        let at = usize::try_from(offset).expect("offset fits usize");
        images.live[at] ^= mask;
        images.durable[at] ^= mask;
    }

    /// An independent copy of every file's durable image, as after a crash: what a second
    /// machine restoring this disk would see. The copy shares nothing with `self`.
    #[must_use]
    pub fn fork(&self, seed: u64) -> CrashFs {
        let shared = self.shared.lock();
        let files = shared
            .files
            .iter()
            .map(|(path, images)| {
                let durable = images.lock().durable.clone();
                let copy = Images {
                    live: durable.clone(),
                    durable,
                    pending: Vec::new(),
                };
                (path.clone(), Arc::new(Mutex::new(copy)))
            })
            .collect();
        let copy = Shared {
            files,
            generation: 0,
            io_budget: None,
            rng: ChaCha8Rng::seed_from_u64(seed),
        };
        CrashFs {
            shared: Arc::new(Mutex::new(copy)),
        }
    }

    /// The durable length of a file, if it exists.
    #[must_use]
    pub fn durable_bytes(&self, path: &Path) -> Option<u64> {
        let shared = self.shared.lock();
        let images = shared.files.get(path)?.lock();
        Some(images.durable.len() as u64)
    }
}

/// Applies the surviving part of one unsynced operation to a durable image.
fn keep_some(durable: &mut Vec<u8>, op: Pending, rng: &mut ChaCha8Rng) {
    match op {
        Pending::SetLen(file_bytes) => {
            if rng.random_bool(0.5) {
                durable.resize(to_usize(file_bytes), 0);
            }
        }
        Pending::Write { offset, bytes } => {
            // Sectors are the file's: a write that starts mid-sector shares its first sector
            // with earlier bytes, which survive either way (they are the sector's old content).
            let start = to_usize(offset);
            let mut at = 0;
            while at < bytes.len() {
                let sector_end = (start + at) / SECTOR_BYTES * SECTOR_BYTES + SECTOR_BYTES;
                let end = bytes.len().min(sector_end - start);
                if rng.random_bool(0.5) {
                    write_into(durable, start + at, &bytes[at..end]);
                }
                at = end;
            }
        }
    }
}

fn to_usize(value: u64) -> usize {
    usize::try_from(value).expect("simulated files fit in memory")
}

fn write_into(image: &mut Vec<u8>, offset: usize, bytes: &[u8]) {
    let end = offset + bytes.len();
    if image.len() < end {
        image.resize(end, 0);
    }
    image[offset..end].copy_from_slice(bytes);
}

impl CrashFile {
    /// Fails when a crash happened since this handle was opened or the IO budget ran out.
    fn check_power(&self, spends_budget: bool) -> io::Result<()> {
        let mut shared = self.shared.lock();
        if shared.generation != self.generation {
            return Err(io::Error::other("simulated crash: stale file handle"));
        }
        match shared.io_budget.as_mut() {
            Some(0) => Err(io::Error::other("simulated power loss")),
            Some(budget) if spends_budget => {
                *budget -= 1;
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

impl SegmentFile for CrashFile {
    fn write_at(&self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.check_power(true)?;
        let mut images = self.images.lock();
        write_into(&mut images.live, to_usize(offset), bytes);
        let bytes = bytes.to_vec();
        images.pending.push(Pending::Write { offset, bytes });
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.check_power(true)?;
        let mut images = self.images.lock();
        // Replays the pending operations onto the durable image (cheaper than copying the whole
        // live image at every sync, which a simulator of many nodes does thousands of times).
        let pending = std::mem::take(&mut images.pending);
        for op in pending {
            match op {
                Pending::Write { offset, bytes } => {
                    write_into(&mut images.durable, to_usize(offset), &bytes);
                }
                Pending::SetLen(file_bytes) => images.durable.resize(to_usize(file_bytes), 0),
            }
        }
        Ok(())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.check_power(false)?;
        let images = self.images.lock();
        let start = to_usize(offset);
        let source = images
            .live
            .get(start..start + buf.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(source);
        Ok(())
    }

    fn set_len(&self, file_bytes: u64) -> io::Result<()> {
        self.check_power(true)?;
        let mut images = self.images.lock();
        images.live.resize(to_usize(file_bytes), 0);
        images.pending.push(Pending::SetLen(file_bytes));
        Ok(())
    }

    fn len_bytes(&self) -> io::Result<u64> {
        self.check_power(false)?;
        Ok(self.images.lock().live.len() as u64)
    }
}

impl FileSystem for CrashFs {
    fn open(&self, path: &Path, create: bool) -> io::Result<Box<dyn SegmentFile>> {
        let mut shared = self.shared.lock();
        let images = match shared.files.get(path) {
            Some(images) => images.clone(),
            None if create => {
                let images = Arc::new(Mutex::new(Images::default()));
                shared.files.insert(path.to_path_buf(), images.clone());
                images
            }
            None => return Err(io::Error::from(io::ErrorKind::NotFound)),
        };
        let generation = shared.generation;
        let shared = self.shared.clone();
        Ok(Box::new(CrashFile {
            images,
            shared,
            generation,
        }))
    }

    fn list(&self, directory: &Path) -> io::Result<Vec<String>> {
        let shared = self.shared.lock();
        let names = shared
            .files
            .keys()
            .filter(|path| path.parent() == Some(directory))
            .filter_map(|path| path.file_name()?.to_str().map(str::to_owned))
            .collect();
        Ok(names)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let removed = self.shared.lock().files.remove(path);
        removed
            .map(|_| ())
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn rename(&self, source: &Path, target: &Path) -> io::Result<()> {
        let mut shared = self.shared.lock();
        let images = shared
            .files
            .remove(source)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        shared.files.insert(target.to_path_buf(), images);
        Ok(())
    }

    fn sync_directory(&self, _directory: &Path) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(fs: &CrashFs) -> Box<dyn SegmentFile> {
        fs.open(Path::new("/d/f"), true).unwrap()
    }

    #[test]
    fn synced_bytes_survive_a_crash() {
        let fs = CrashFs::new(1);
        let file = open(&fs);
        file.write_at(0, b"hello").unwrap();
        file.sync_data().unwrap();
        fs.crash();
        let mut buf = [0; 5];
        open(&fs).read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"hello");
    }

    #[test]
    fn unsynced_sectors_survive_only_sometimes() {
        let mut kept = 0;
        let mut lost = 0;
        for seed in 0..32 {
            let fs = CrashFs::new(seed);
            open(&fs).write_at(0, &[7; 4 * SECTOR_BYTES]).unwrap();
            fs.crash();
            let durable = fs.durable_bytes(Path::new("/d/f")).unwrap();
            if durable == 0 { lost += 1 } else { kept += 1 }
        }
        assert!(kept > 0 && lost > 0, "kept {kept} lost {lost}");
    }

    #[test]
    fn stale_handles_fail_after_a_crash() {
        let fs = CrashFs::new(1);
        let file = open(&fs);
        fs.crash();
        assert!(file.write_at(0, b"x").is_err());
    }

    #[test]
    fn the_io_budget_runs_out() {
        let fs = CrashFs::new(1);
        let file = open(&fs);
        fs.fail_after(1);
        file.write_at(0, b"x").unwrap();
        assert!(file.sync_data().is_err());
    }
}
