//! `flotilla backup` and `flotilla restore`: a backup is a directory with one snapshot file per
//! range (the snapshot format of `flotilla_storage::snapshot`, checksummed) and a manifest
//! (`manifest.json`) naming each range's keys, group, the entry it was read at, and its file's
//! length and crc32c. Written last, the manifest is what makes a directory a finished backup.
//!
//! **Consistent** means, per range: the range's whole state at one applied entry, read by its
//! leader after a ReadIndex, so it holds every write acknowledged before the backup asked that
//! range. Ranges are read one after another, each at its own moment: a write that lands while
//! the backup runs may be in one range's file and a later write to another range not in its
//! own. There is no cross-range point in time (a cluster-wide one needs cluster-wide
//! timestamps, which Flotilla does not have). Client sessions are not kept: a restored cluster
//! is a new cluster, and its clients open new sessions.
//!
//! A restore writes one node's data directory of a new cluster from the backup: the backup's
//! ranges, with their groups and keys, placed on the new cluster's initial nodes by the rule
//! of a first start; each range it hosts starts from the backup's snapshot. Run it on every
//! initial node with the flags its `flotilla server` will get, then start them.

use crate::api::{ApiError, BackupView, Reply, Request};
use crate::client::{CallError, Client, ClientError};
use crate::config::{ConfigError, NodeConfig};
use crate::server::ServerError;
use crate::server::data::{new_identity, open_log};
use flotilla_raft::{GroupId, LogId, LogIndex, NodeId, Term};
use flotilla_shard_manager::{KeyRange, RangeDescriptor, RangeId};
use flotilla_storage::kv::{RangeBounds, SessionTable};
use flotilla_storage::{
    DataDir, DataDirError, DirState, SnapshotError, SnapshotFile, SnapshotWriter,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The manifest's file name in a backup directory.
pub const MANIFEST: &str = "manifest.json";
/// The manifest format this build writes and reads.
pub const FORMAT: u32 = 1;
/// Attempts at one range (to open its view and drain it) before the backup gives up.
const RANGE_ATTEMPTS_MAX: u32 = 40;
/// Rounds over the ranges whose keys changed (split) while the backup read them.
const LAYOUT_ROUNDS_MAX: u32 = 8;
/// Unanswered requests for one chunk before the range starts over.
const CHUNK_SILENCES_MAX: u32 = 3;
/// The pause before another attempt at a range whose leader is unknown or busy.
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// A finished backup's contents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The manifest format (`FORMAT`).
    pub format: u32,
    /// The cluster backed up.
    pub cluster_id: String,
    /// When the backup started and finished, in milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    /// When the manifest was written.
    pub finished_unix_ms: u64,
    /// Every range, in key order.
    pub ranges: Vec<RangeEntry>,
}

/// One range of a backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeEntry {
    /// The range's id.
    pub range: u64,
    /// The group that served it.
    pub group: u64,
    /// The first key (hex).
    pub start_hex: String,
    /// The end key, exclusive (hex; `None`: the end of the key space).
    pub end_hex: Option<String>,
    /// The entry the range was read at.
    pub applied_index: u64,
    /// That entry's term.
    pub applied_term: u64,
    /// Pairs in the range.
    pub pair_count: u64,
    /// Their key and value bytes.
    pub stored_bytes: u64,
    /// The node that served the view.
    pub read_from: u64,
    /// The snapshot file, in the backup directory.
    pub file: String,
    /// Its length.
    pub file_bytes: u64,
    /// The crc32c of the whole file.
    pub file_crc32c: u32,
}

impl RangeEntry {
    /// The range's keys.
    ///
    /// # Errors
    /// A bound is not hex.
    pub fn keys(&self) -> Result<KeyRange, String> {
        let decode = |text: &str| hex::decode(text).map_err(|error| format!("{text:?}: {error}"));
        Ok(KeyRange {
            start: decode(&self.start_hex)?,
            end: self.end_hex.as_deref().map(decode).transpose()?,
        })
    }

    /// The entry the range was read at.
    #[must_use]
    pub fn applied(&self) -> LogId {
        LogId::new(Term(self.applied_term), LogIndex(self.applied_index))
    }
}

/// Why a backup or a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The backup directory holds files already.
    #[error("{} is not empty: a backup goes into a new or empty directory", .0.display())]
    NotEmpty(PathBuf),
    /// A file of the backup could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The cluster could not be reached.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A node refused the backup for good (a permission, say).
    #[error("range {group}: the node refused the backup: {error}")]
    Refused {
        /// The range's group.
        group: GroupId,
        /// The node's answer.
        error: ApiError,
    },
    /// No replica of a range served its view in `RANGE_ATTEMPTS_MAX` attempts.
    #[error("range {group}: gave up after {attempts} attempts; the last: {last}")]
    GaveUp {
        /// The range's group.
        group: GroupId,
        /// Attempts made.
        attempts: u32,
        /// What the last one met.
        last: String,
    },
    /// Ranges kept splitting while they were read: after every round some range had other
    /// keys than when it was read.
    #[error("the ranges kept splitting during the backup ({rounds} rounds); run it again")]
    LayoutUnsettled {
        /// The rounds made.
        rounds: u32,
    },
    /// A snapshot file could not be written, or read back.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The manifest is missing, malformed, or does not match the files.
    #[error("the backup in {} is not usable: {reason}", directory.display())]
    Damaged {
        /// The backup directory.
        directory: PathBuf,
        /// What is wrong, as a sentence.
        reason: String,
    },
    /// The node's configuration does not allow a restore.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data directory is not empty or cannot be locked.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// The data directory already holds a node's state.
    #[error(
        "{} holds a node's state already: a restore writes only a new, empty data directory",
        .0.display()
    )]
    NotFresh(PathBuf),
    /// Writing the data directory failed.
    #[error(transparent)]
    Server(#[from] ServerError),
}

impl From<flotilla_storage::WriteError> for BackupError {
    fn from(error: flotilla_storage::WriteError) -> Self {
        Self::Server(ServerError::from(error))
    }
}

/// Backs up every range of the cluster `client` reaches into `to` (created, or empty), one
/// range after another; `progress` sees each range once it is written. Returns the manifest.
///
/// # Errors
/// The directory is not empty or not writable, a range could not be read, or the cluster
/// could not be reached.
pub async fn backup(
    client: &Client,
    cluster_id: &str,
    to: &Path,
    mut progress: impl FnMut(&RangeEntry),
) -> Result<Manifest, BackupError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BackupError::Io { path, source }
    };
    std::fs::create_dir_all(to).map_err(io(to))?;
    if std::fs::read_dir(to).map_err(io(to))?.next().is_some() {
        return Err(BackupError::NotEmpty(to.to_path_buf()));
    }
    let started_unix_ms = unix_ms();
    // A range that splits during the backup was read with its old keys, and its right half
    // not at all: rounds go on over the ranges whose entry does not have the keys of the map
    // then, until every entry does, so the manifest tiles the key space.
    let mut entries: BTreeMap<GroupId, RangeEntry> = BTreeMap::new();
    let mut layout_settled = false;
    for _ in 0..LAYOUT_ROUNDS_MAX {
        client.refresh_map().await?;
        let map = client.map();
        entries.retain(|group, _| map.ranges().any(|range| range.group == *group));
        let stale: Vec<GroupId> = map
            .ranges()
            .filter(|range| {
                entries
                    .get(&range.group)
                    .is_none_or(|entry| entry.keys().ok().as_ref() != Some(&range.keys))
            })
            .map(|range| range.group)
            .collect();
        if stale.is_empty() {
            layout_settled = true;
            break;
        }
        for group in stale {
            let entry = backup_range(client, group, to).await?;
            progress(&entry);
            entries.insert(group, entry);
        }
    }
    if !layout_settled {
        return Err(BackupError::LayoutUnsettled {
            rounds: LAYOUT_ROUNDS_MAX,
        });
    }
    let mut ranges: Vec<RangeEntry> = entries.into_values().collect();
    // Hex keeps the keys' order.
    ranges.sort_by(|a, b| a.start_hex.cmp(&b.start_hex));
    let manifest = Manifest {
        format: FORMAT,
        cluster_id: cluster_id.to_string(),
        started_unix_ms,
        finished_unix_ms: unix_ms(),
        ranges,
    };
    write_manifest(to, &manifest)?;
    Ok(manifest)
}

/// The manifest, durably: a temporary file, synced, renamed, the directory synced.
fn write_manifest(to: &Path, manifest: &Manifest) -> Result<(), BackupError> {
    let path = to.join(MANIFEST);
    let io = |source| BackupError::Io {
        path: path.clone(),
        source,
    };
    let temporary = to.join(format!("{MANIFEST}.tmp"));
    let text = serde_json::to_vec_pretty(manifest).map_err(|error| io(error.into()))?;
    let mut file = std::fs::File::create(&temporary).map_err(io)?;
    file.write_all(&text)
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .map_err(io)?;
    std::fs::rename(&temporary, &path).map_err(io)?;
    std::fs::File::open(to)
        .and_then(|directory| directory.sync_all())
        .map_err(io)
}

/// What one attempt at a range met, when it did not finish it.
enum Attempt {
    /// Try again (another replica, the hinted leader, or after a pause).
    Again {
        reason: String,
        next: Option<NodeId>,
    },
    /// Stop the backup.
    Fail(BackupError),
}

/// Reads range `group` from its leader into its snapshot file: opens a view, drains it, and
/// starts over (at the leader a refusal names, or another replica) whenever either fails.
async fn backup_range(
    client: &Client,
    group: GroupId,
    to: &Path,
) -> Result<RangeEntry, BackupError> {
    let mut next = None;
    let mut last = String::new();
    for attempt in 0..RANGE_ATTEMPTS_MAX {
        let map = client.map();
        let Some(range) = map.range_of_group(group).cloned() else {
            return Err(BackupError::GaveUp {
                group,
                attempts: attempt,
                last: "the range left the range map".into(),
            });
        };
        let node = next
            .take()
            .or_else(|| {
                let replicas = &range.replicas;
                replicas
                    .get(attempt as usize % replicas.len().max(1))
                    .copied()
            })
            .ok_or_else(|| BackupError::GaveUp {
                group,
                attempts: attempt,
                last: "the range has no replica".into(),
            })?;
        let request = Request::BackupOpen {
            group,
            epoch: range.epoch,
        };
        let outcome = match client.request(node, request).await {
            Ok(Ok(Reply::BackupOpened(view))) => {
                match drain(client, node, &range, &view, to).await {
                    Ok(entry) => return Ok(entry),
                    Err(outcome) => outcome,
                }
            }
            Ok(Ok(other)) => Attempt::Fail(BackupError::GaveUp {
                group,
                attempts: attempt + 1,
                last: format!("an answer that is not a view: {other:?}"),
            }),
            Ok(Err(error)) => refused(client, group, error).await,
            Err(error) => called(group, &error),
        };
        match outcome {
            Attempt::Again { reason, next: hint } => {
                tracing::debug!(%group, node = node.0, %reason, "backup attempt failed");
                last = format!("node {}: {reason}", node.0);
                if hint.is_none() {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                next = hint;
            }
            Attempt::Fail(error) => return Err(error),
        }
    }
    Err(BackupError::GaveUp {
        group,
        attempts: RANGE_ATTEMPTS_MAX,
        last,
    })
}

/// How a refusal of a view is followed: the hinted leader, a fresh map, a pause, or the end.
async fn refused(client: &Client, group: GroupId, error: ApiError) -> Attempt {
    let reason = error.to_string();
    match error {
        ApiError::NotLeader { leader, .. } => Attempt::Again {
            reason,
            next: leader,
        },
        ApiError::StaleEpoch { .. } | ApiError::NotServed { .. } => {
            if let Err(error) = client.refresh_map().await {
                tracing::debug!(%error, "the range map could not be refreshed");
            }
            Attempt::Again { reason, next: None }
        }
        ApiError::Busy
        | ApiError::Unavailable(_)
        | ApiError::Dropped
        | ApiError::BackupViewsFull { .. }
        | ApiError::NoBackupView { .. }
        | ApiError::BackupChunkOutOfOrder { .. } => Attempt::Again { reason, next: None },
        error => Attempt::Fail(BackupError::Refused { group, error }),
    }
}

/// How a call that got no answer is followed: another attempt, unless it can never be sent.
fn called(group: GroupId, error: &CallError) -> Attempt {
    if error.is_final_and_not_sent() {
        return Attempt::Fail(BackupError::GaveUp {
            group,
            attempts: 1,
            last: error.to_string(),
        });
    }
    Attempt::Again {
        reason: error.to_string(),
        next: None,
    }
}

/// Drains `view` from `node` into the range's snapshot file; the entry for the manifest.
async fn drain(
    client: &Client,
    node: NodeId,
    range: &RangeDescriptor,
    view: &BackupView,
    to: &Path,
) -> Result<RangeEntry, Attempt> {
    let group = range.group;
    let file = format!("range-{:020}.snap", group.0);
    let path = to.join(&file);
    let fail = |error: BackupError| Attempt::Fail(error);
    let mut writer = SnapshotWriter::create(
        &path,
        (group, view.applied),
        (view.pair_count, view.stored_bytes),
        (&SessionTable::default(), &RangeBounds::default()),
    )
    .map_err(|error| fail(error.into()))?;
    let mut chunk = 0;
    let mut silent = 0;
    loop {
        let request = Request::BackupChunk {
            group,
            view: view.view,
            chunk,
        };
        let outcome = match client.request(node, request).await {
            Ok(Ok(Reply::BackupChunk { pairs, done })) => {
                for (key, value) in &pairs {
                    if let Err(error) = writer.push(key, value) {
                        close(client, node, view.view).await;
                        return Err(fail(error.into()));
                    }
                }
                (chunk, silent) = (chunk + 1, 0);
                if !done {
                    continue;
                }
                close(client, node, view.view).await;
                let written = writer.finish().map_err(|error| fail(error.into()))?;
                return Ok(RangeEntry {
                    range: range.id.0,
                    group: group.0,
                    start_hex: hex::encode(&range.keys.start),
                    end_hex: range.keys.end.as_ref().map(hex::encode),
                    applied_index: view.applied.index.0,
                    applied_term: view.applied.term.0,
                    pair_count: view.pair_count,
                    stored_bytes: view.stored_bytes,
                    read_from: node.0,
                    file,
                    file_bytes: written.file_bytes(),
                    file_crc32c: crc32c::crc32c(written.bytes()),
                });
            }
            // The same chunk again: the view serves its last one again, so nothing is skipped.
            Err(CallError::Timeout(_) | CallError::Lost) if silent < CHUNK_SILENCES_MAX => {
                silent += 1;
                continue;
            }
            Ok(Ok(other)) => Attempt::Again {
                reason: format!("an answer that is not a chunk: {other:?}"),
                next: None,
            },
            Ok(Err(error)) => refused(client, group, error).await,
            Err(error) => called(group, &error),
        };
        drop(writer);
        // The partial file is abandoned; the next attempt writes it again from the start.
        std::fs::remove_file(path.with_extension("tmp")).ok();
        return Err(outcome);
    }
}

/// Tells `node` the backup gave up on `view` (best effort: an idle view is dropped anyway).
async fn close(client: &Client, node: NodeId, view: u64) {
    if let Err(error) = client.request(node, Request::BackupClose { view }).await {
        tracing::debug!(%error, "a backup view could not be closed");
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

/// A backup read back and checked: the manifest, each range's keys, and its file.
#[derive(Debug)]
pub struct Verified {
    /// The manifest.
    pub manifest: Manifest,
    /// Each range's id, group and keys, from the manifest.
    pub ranges: Vec<(RangeId, GroupId, KeyRange)>,
    /// Each range's snapshot file, by group.
    pub files: BTreeMap<GroupId, SnapshotFile>,
}

/// A backup read back and checked whole: the manifest, and each range's file opened (its
/// snapshot checksum verified) and matching the manifest's length, crc32c, group, entry and
/// pair count. (Whether the ranges tile the key space is checked by the map a restore makes.)
///
/// # Errors
/// Anything missing, malformed or mismatched.
pub fn verify(from: &Path) -> Result<Verified, BackupError> {
    let damaged = |reason: String| BackupError::Damaged {
        directory: from.to_path_buf(),
        reason,
    };
    let path = from.join(MANIFEST);
    let text = std::fs::read(&path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            damaged(format!(
                "it has no {MANIFEST}: the backup did not finish, or this is not a backup"
            ))
        } else {
            BackupError::Io { path, source }
        }
    })?;
    let manifest: Manifest = serde_json::from_slice(&text)
        .map_err(|error| damaged(format!("{MANIFEST} does not parse: {error}")))?;
    if manifest.format != FORMAT {
        return Err(damaged(format!(
            "its format is {}, this build reads {FORMAT}",
            manifest.format
        )));
    }
    let mut files = BTreeMap::new();
    let mut ranges = Vec::with_capacity(manifest.ranges.len());
    for entry in &manifest.ranges {
        let keys = entry.keys().map_err(|error| {
            damaged(format!(
                "range {}: a bound is not hex: {error}",
                entry.range
            ))
        })?;
        ranges.push((RangeId(entry.range), GroupId(entry.group), keys));
        if entry.file.contains('/') || entry.file.starts_with('.') {
            return Err(damaged(format!(
                "range {} names the file {:?}",
                entry.range, entry.file
            )));
        }
        let file = SnapshotFile::open(&from.join(&entry.file))?;
        let header = file.header();
        let found = (
            file.file_bytes(),
            crc32c::crc32c(file.bytes()),
            header.group,
            header.applied,
            header.pair_count,
        );
        let listed = (
            entry.file_bytes,
            entry.file_crc32c,
            GroupId(entry.group),
            entry.applied(),
            entry.pair_count,
        );
        if found != listed {
            return Err(damaged(format!(
                "{} holds (bytes, crc32c, group, entry, pairs) {found:?}, the manifest lists \
                 {listed:?}",
                entry.file
            )));
        }
        if files.insert(header.group, file).is_some() {
            return Err(damaged(format!("two files hold range {}", header.group)));
        }
    }
    Ok(Verified {
        manifest,
        ranges,
        files,
    })
}

/// What a restore wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    /// The node whose directory it is.
    pub node: NodeId,
    /// The directory.
    pub data_dir: PathBuf,
    /// The groups of the ranges this node hosts, each from its backup file.
    pub groups: Vec<GroupId>,
    /// Ranges in the backup.
    pub range_count: usize,
}

/// Writes the data directory of `config`'s node from the backup in `from`: the new cluster is
/// `config`'s initial cluster, the ranges the backup's. The directory must be new or empty.
/// If it stops half way, remove the directory and run it again.
///
/// # Errors
/// The backup does not verify, the configuration names no initial cluster with this node, or
/// the directory is not fresh or cannot be written.
pub fn restore(from: &Path, config: &NodeConfig) -> Result<Restored, BackupError> {
    let Verified {
        manifest,
        ranges,
        files,
    } = verify(from)?;
    let node = config.node();
    let initial = config.initial_endpoints()?;
    if !initial.iter().any(|endpoint| endpoint.node == node) {
        return Err(ConfigError::Invalid(format!(
            "node {} is not in initial_cluster: a restore writes a new cluster's initial nodes",
            node.0
        ))
        .into());
    }
    let meta = crate::core::boot::restored_meta(ranges, &initial, config.ranges.replicas).map_err(
        |error| BackupError::Damaged {
            directory: from.to_path_buf(),
            reason: format!("its ranges do not tile: {error}"),
        },
    )?;
    let data_dir = config.data_directory();
    let directory = DataDir::lock(&data_dir)?;
    if !matches!(directory.state()?, DirState::Fresh) {
        return Err(BackupError::NotFresh(data_dir));
    }
    let identity = new_identity(config)?;
    directory.begin_bootstrap(&identity)?;
    let engine = open_log(config, &directory, &identity, false)?;
    let mut groups = Vec::new();
    crate::core::boot::bootstrap_restored(&engine, node, &meta, |group| {
        let file = files.get(&group).ok_or_else(|| BackupError::Damaged {
            directory: from.to_path_buf(),
            reason: format!("no file holds range {group}"),
        })?;
        groups.push(group);
        Ok::<_, BackupError>((file.header().applied, file.bytes().to_vec()))
    })?;
    drop(engine);
    directory.finish_bootstrap(&identity)?;
    Ok(Restored {
        node,
        data_dir,
        groups,
        range_count: manifest.ranges.len(),
    })
}
