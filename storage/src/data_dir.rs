//! A node's data directory: bootstrapped exactly once, bound to one cluster and one node id, and
//! owned by one process at a time.
//!
//! Layout: `LOCK` (an exclusive lock held for the process's life, holding its pid), `identity`
//! (written at bootstrap: cluster id, node id, a random directory id, the incarnation counted up
//! at every start; checksummed), and the log in `log/`. The directory is 0700 and its files 0600.
//!
//! Calling order: `DataDir::lock`, then `state`; a `Fresh` directory (or one whose bootstrap was
//! interrupted) goes through `begin_bootstrap`, the caller's first write to the log, and
//! `finish_bootstrap`; a `Ready` one through `start`. A directory whose identity is missing while
//! it holds a log, whose identity is damaged, or that belongs to another cluster or node is an
//! error: a node never starts on a directory that is not its own, and never starts empty under an
//! id that was bootstrapped. Offline tools (`flotilla inspect`) read a directory through
//! `DirPeek`, which changes nothing and refuses a directory a process holds.

use crate::error::DataDirError;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

const LOCK_FILE: &str = "LOCK";
const IDENTITY_FILE: &str = "identity";
/// The log's folder inside the data directory.
pub const LOG_DIRECTORY: &str = "log";
/// The state machine engine's folder inside the data directory.
pub const ENGINE_DIRECTORY: &str = "engine";
const FORMAT: u32 = 1;

/// Who a data directory belongs to, written once at bootstrap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirIdentity {
    /// The cluster.
    pub cluster_id: String,
    /// The node.
    pub node_id: u64,
    /// Random, chosen at bootstrap: a node id's data directory, told apart from any other
    /// (an empty directory started under the same id, a copy of the certificate elsewhere).
    pub directory_id: u128,
    /// Counted up at every start: which process of this directory is the newest.
    pub incarnation: u64,
}

impl DirIdentity {
    /// The id the log's segments carry: 64 bits of the directory id.
    #[must_use]
    pub fn log_id(&self) -> u64 {
        (self.directory_id >> 64) as u64 ^ self.directory_id as u64
    }
}

/// What a locked directory holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirState {
    /// Nothing of a node: it may be bootstrapped.
    Fresh,
    /// A bootstrap began and did not finish; nothing was served from it, so it starts over.
    Bootstrapping(DirIdentity),
    /// A bootstrapped directory.
    Ready(DirIdentity),
}

/// A data directory, locked by this process until dropped.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    /// Held for the lock; closing it releases the lock.
    _lock: File,
}

impl DataDir {
    /// Creates the directory (0700) when missing, and locks it.
    ///
    /// # Errors
    /// `Locked` (naming the holder's pid) when another process has it, or an IO error.
    pub fn lock(path: &Path) -> Result<DataDir, DataDirError> {
        let io_error = |source| DataDirError::Io {
            path: path.to_path_buf(),
            source,
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(io_error)?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(io_error)?;
        let lock_path = path.join(LOCK_FILE);
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|source| DataDirError::Io {
                path: lock_path.clone(),
                source,
            })?;
        if lock.try_lock().is_err() {
            let mut holder = String::new();
            let _ = lock.read_to_string(&mut holder);
            return Err(DataDirError::Locked {
                path: path.to_path_buf(),
                holder: holder.trim().to_owned(),
            });
        }
        write_pid(&lock).map_err(|source| DataDirError::Io {
            path: lock_path,
            source,
        })?;
        Ok(DataDir {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    /// The directory.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The log's folder.
    #[must_use]
    pub fn log_path(&self) -> PathBuf {
        self.path.join(LOG_DIRECTORY)
    }

    /// The state machine engine's folder.
    #[must_use]
    pub fn engine_path(&self) -> PathBuf {
        self.path.join(ENGINE_DIRECTORY)
    }

    /// What the directory holds.
    ///
    /// # Errors
    /// `IdentityMissing` when it holds a log but no identity, `IdentityDamaged`, or IO.
    pub fn state(&self) -> Result<DirState, DataDirError> {
        read_state(&self.path)
    }

    /// Records `identity` as a bootstrap in progress, clearing what an interrupted one left in
    /// the log folder. The caller then writes the log's first state and calls `finish_bootstrap`.
    ///
    /// # Errors
    /// IO.
    pub fn begin_bootstrap(&self, identity: &DirIdentity) -> Result<(), DataDirError> {
        for folder in [self.log_path(), self.engine_path()] {
            match fs::remove_dir_all(&folder) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(DataDirError::Io {
                        path: folder,
                        source,
                    });
                }
            }
        }
        self.write_identity(identity, false)
    }

    /// Marks the bootstrap complete: from now on the directory is this node's for good.
    ///
    /// # Errors
    /// IO.
    pub fn finish_bootstrap(&self, identity: &DirIdentity) -> Result<(), DataDirError> {
        self.write_identity(identity, true)
    }

    /// Checks a bootstrapped directory against the cluster and node about to use it, counts the
    /// start (durably) and returns the identity with its new incarnation.
    ///
    /// # Errors
    /// `WrongCluster`, `WrongNode`, `NotBootstrapped`, or IO.
    pub fn start(&self, cluster_id: &str, node_id: u64) -> Result<DirIdentity, DataDirError> {
        let DirState::Ready(mut identity) = self.state()? else {
            return Err(DataDirError::NotBootstrapped {
                path: self.path.clone(),
            });
        };
        if identity.cluster_id != cluster_id {
            return Err(DataDirError::WrongCluster {
                path: self.path.clone(),
                found: identity.cluster_id,
                expected: cluster_id.to_owned(),
            });
        }
        if identity.node_id != node_id {
            return Err(DataDirError::WrongNode {
                path: self.path.clone(),
                found: identity.node_id,
                expected: node_id,
            });
        }
        identity.incarnation += 1;
        self.write_identity(&identity, true)?;
        Ok(identity)
    }

    /// Replaces the identity file atomically: a temporary file, synced, renamed, directory
    /// synced.
    fn write_identity(&self, identity: &DirIdentity, ready: bool) -> Result<(), DataDirError> {
        let target = self.path.join(IDENTITY_FILE);
        let temporary = self.path.join(format!("{IDENTITY_FILE}.tmp"));
        let io_error = |source| DataDirError::Io {
            path: target.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(io_error)?;
        file.write_all(format(identity, ready).as_bytes())
            .map_err(io_error)?;
        file.sync_all().map_err(io_error)?;
        fs::rename(&temporary, &target).map_err(io_error)?;
        File::open(&self.path)
            .and_then(|directory| directory.sync_all())
            .map_err(io_error)
    }
}

/// A look at a data directory that no process holds, for offline tools: while it lives, a
/// node cannot lock the directory (it holds a shared lock on `LOCK`), so what is read does not
/// move underneath.
#[derive(Debug)]
pub struct DirPeek {
    /// What the directory holds.
    pub state: DirState,
    /// The shared lock, when the directory has a lock file (a node ran there).
    _lock: Option<File>,
}

impl DirPeek {
    /// Reads what the data directory at `path` holds without creating, locking for writing or
    /// changing anything.
    ///
    /// # Errors
    /// `Locked` (naming the holder's pid) when a process, a running node, holds the directory;
    /// `IdentityMissing`, `IdentityDamaged`, or IO (a missing directory among them).
    pub fn open(path: &Path) -> Result<DirPeek, DataDirError> {
        let io_error = |source| DataDirError::Io {
            path: path.to_path_buf(),
            source,
        };
        fs::metadata(path).map_err(io_error)?;
        let lock_path = path.join(LOCK_FILE);
        let lock = match File::open(&lock_path) {
            Ok(file) => Some(file),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(DataDirError::Io {
                    path: lock_path,
                    source,
                });
            }
        };
        if let Some(mut file) = lock.as_ref()
            && file.try_lock_shared().is_err()
        {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Err(DataDirError::Locked {
                path: path.to_path_buf(),
                holder: holder.trim().to_owned(),
            });
        }
        Ok(DirPeek {
            state: read_state(path)?,
            _lock: lock,
        })
    }
}

/// What the directory at `path` holds, read from its identity file.
fn read_state(path: &Path) -> Result<DirState, DataDirError> {
    let identity_path = path.join(IDENTITY_FILE);
    let text = match fs::read_to_string(&identity_path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return fresh_or_missing_identity(path);
        }
        Err(source) => {
            return Err(DataDirError::Io {
                path: identity_path,
                source,
            });
        }
    };
    let (identity, ready) = parse(&text).map_err(|reason| DataDirError::IdentityDamaged {
        path: identity_path,
        reason,
    })?;
    Ok(if ready {
        DirState::Ready(identity)
    } else {
        DirState::Bootstrapping(identity)
    })
}

fn fresh_or_missing_identity(path: &Path) -> Result<DirState, DataDirError> {
    // A log or an engine without the identity that owns them is a damaged directory, never a
    // fresh one: a new node on it would take their state for its own.
    for folder in [LOG_DIRECTORY, ENGINE_DIRECTORY] {
        let folder = path.join(folder);
        let holds_files = match fs::read_dir(&folder) {
            Ok(mut entries) => entries.next().is_some(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => false,
            Err(source) => {
                return Err(DataDirError::Io {
                    path: folder,
                    source,
                });
            }
        };
        if holds_files {
            return Err(DataDirError::IdentityMissing {
                path: path.to_path_buf(),
            });
        }
    }
    Ok(DirState::Fresh)
}

fn write_pid(mut lock: &File) -> std::io::Result<()> {
    lock.set_len(0)?;
    writeln!(lock, "{}", std::process::id())?;
    lock.sync_data()
}

/// The identity file's text: `key = value` lines, then a checksum of those lines.
fn format(identity: &DirIdentity, ready: bool) -> String {
    let state = if ready { "ready" } else { "bootstrapping" };
    let body = format!(
        "# Flotilla data directory identity: written once at bootstrap. Never edit, copy or\n\
         # delete it; a node that lost its data joins under a new id (docs/operations.md).\n\
         format = {FORMAT}\n\
         state = {state}\n\
         cluster_id = {}\n\
         node_id = {}\n\
         directory_id = {:032x}\n\
         incarnation = {}\n",
        identity.cluster_id, identity.node_id, identity.directory_id, identity.incarnation
    );
    let checksum = crc32c::crc32c(body.as_bytes());
    format!("{body}checksum = {checksum:08x}\n")
}

/// Parses the identity file; returns the identity and whether its bootstrap finished.
fn parse(text: &str) -> Result<(DirIdentity, bool), String> {
    let (body, checksum_line) = text
        .trim_end_matches('\n')
        .rsplit_once('\n')
        .ok_or("the file has no checksum line")?;
    let body = format!("{body}\n");
    let stored = value_of(checksum_line, "checksum")?;
    let computed = format!("{:08x}", crc32c::crc32c(body.as_bytes()));
    if stored != computed {
        return Err(format!("the checksum {stored} does not match {computed}"));
    }
    let field = |key: &str| -> Result<String, String> {
        body.lines()
            .find_map(|line| value_of(line, key).ok())
            .ok_or_else(|| format!("`{key}` is missing"))
    };
    if field("format")? != FORMAT.to_string() {
        return Err(format!("format {} is not {FORMAT}", field("format")?));
    }
    let number = |key: &str| -> Result<u64, String> {
        field(key)?
            .parse()
            .map_err(|_| format!("`{key}` is not a number"))
    };
    let directory_id = u128::from_str_radix(&field("directory_id")?, 16)
        .map_err(|_| "`directory_id` is not hexadecimal".to_owned())?;
    let identity = DirIdentity {
        cluster_id: field("cluster_id")?,
        node_id: number("node_id")?,
        directory_id,
        incarnation: number("incarnation")?,
    };
    Ok((identity, field("state")? == "ready"))
}

fn value_of(line: &str, key: &str) -> Result<String, String> {
    line.split_once(" = ")
        .filter(|(name, _)| *name == key)
        .map(|(_, value)| value.to_owned())
        .ok_or_else(|| format!("`{key}` is missing"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> DirIdentity {
        DirIdentity {
            cluster_id: "test.c1".to_owned(),
            node_id: 3,
            directory_id: 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
            incarnation: 0,
        }
    }

    #[test]
    fn a_directory_is_fresh_then_bootstrapping_then_ready_and_counts_starts() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("node-3");
        let dir = DataDir::lock(&path).unwrap();
        assert_eq!(dir.state().unwrap(), DirState::Fresh);
        dir.begin_bootstrap(&identity()).unwrap();
        assert_eq!(dir.state().unwrap(), DirState::Bootstrapping(identity()));
        dir.finish_bootstrap(&identity()).unwrap();
        assert_eq!(dir.start("test.c1", 3).unwrap().incarnation, 1);
        assert_eq!(dir.start("test.c1", 3).unwrap().incarnation, 2);
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o700);
        assert_eq!(mode(&path.join(IDENTITY_FILE)), 0o600);
        assert_eq!(mode(&path.join(LOCK_FILE)), 0o600);
    }

    #[test]
    fn a_second_owner_is_refused_with_the_holders_pid() {
        let root = tempfile::tempdir().unwrap();
        let _first = DataDir::lock(root.path()).unwrap();
        let error = DataDir::lock(root.path()).unwrap_err();
        let pid = std::process::id().to_string();
        assert!(
            matches!(&error, DataDirError::Locked { holder, .. } if *holder == pid),
            "{error}"
        );
        assert!(error.to_string().contains(&pid), "{error}");
    }

    #[test]
    fn a_peek_is_refused_while_a_process_holds_the_directory_and_holds_off_a_start() {
        let root = tempfile::tempdir().unwrap();
        let dir = DataDir::lock(root.path()).unwrap();
        dir.finish_bootstrap(&identity()).unwrap();
        let error = DirPeek::open(root.path()).unwrap_err();
        assert!(matches!(error, DataDirError::Locked { .. }), "{error}");
        drop(dir);
        let lock_file = fs::read(root.path().join(LOCK_FILE)).unwrap();
        let peek = DirPeek::open(root.path()).unwrap();
        assert_eq!(peek.state, DirState::Ready(identity()));
        assert!(matches!(
            DataDir::lock(root.path()),
            Err(DataDirError::Locked { .. })
        ));
        drop(peek);
        assert_eq!(fs::read(root.path().join(LOCK_FILE)).unwrap(), lock_file);
        assert!(DirPeek::open(&root.path().join("missing")).is_err());
        assert!(!root.path().join("missing").exists());
    }

    #[test]
    fn another_cluster_or_node_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = DataDir::lock(root.path()).unwrap();
        dir.finish_bootstrap(&identity()).unwrap();
        let wrong_cluster = dir.start("test.c2", 3).unwrap_err();
        assert!(
            matches!(wrong_cluster, DataDirError::WrongCluster { .. }),
            "{wrong_cluster}"
        );
        let wrong_node = dir.start("test.c1", 4).unwrap_err();
        assert!(matches!(
            wrong_node,
            DataDirError::WrongNode {
                found: 3,
                expected: 4,
                ..
            }
        ));
    }

    /// An engine left without its identity (the identity file and the log removed by hand)
    /// is no fresh directory either; a bootstrap clears both folders.
    #[test]
    fn an_engine_without_an_identity_is_refused_and_a_bootstrap_clears_it() {
        let root = tempfile::tempdir().unwrap();
        let dir = DataDir::lock(root.path()).unwrap();
        fs::create_dir_all(dir.engine_path()).unwrap();
        fs::write(dir.engine_path().join("journal"), b"x").unwrap();
        assert!(matches!(
            dir.state(),
            Err(DataDirError::IdentityMissing { .. })
        ));
        dir.begin_bootstrap(&identity()).unwrap();
        assert!(!dir.engine_path().exists());
    }

    #[test]
    fn a_log_without_an_identity_and_a_damaged_identity_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = DataDir::lock(root.path()).unwrap();
        fs::create_dir_all(dir.log_path()).unwrap();
        fs::write(dir.log_path().join("00000000000000000001.wal"), b"x").unwrap();
        assert!(matches!(
            dir.state(),
            Err(DataDirError::IdentityMissing { .. })
        ));
        dir.finish_bootstrap(&identity()).unwrap();
        let path = root.path().join(IDENTITY_FILE);
        let text = fs::read_to_string(&path)
            .unwrap()
            .replace("node_id = 3", "node_id = 4");
        fs::write(&path, text).unwrap();
        assert!(matches!(
            dir.state(),
            Err(DataDirError::IdentityDamaged { .. })
        ));
    }

    #[test]
    fn an_interrupted_bootstrap_starts_over_from_an_empty_log() {
        let root = tempfile::tempdir().unwrap();
        let dir = DataDir::lock(root.path()).unwrap();
        dir.begin_bootstrap(&identity()).unwrap();
        fs::create_dir_all(dir.log_path()).unwrap();
        fs::write(dir.log_path().join("half-written"), b"x").unwrap();
        dir.begin_bootstrap(&identity()).unwrap();
        assert!(
            !dir.log_path().exists(),
            "the interrupted bootstrap's log is gone"
        );
    }
}
