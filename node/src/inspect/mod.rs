//! `flotilla inspect DATA_DIR`: what a stopped node's data directory holds, read without
//! starting the node and without changing a byte. The identity (cluster, node, directory id),
//! every log segment, every group's indexes, hard state and snapshot, and the findings, as text
//! tables or one JSON object. It runs the log's own recovery checks read-only
//! (`flotilla_storage::inspect`).
//!
//! A directory a running node holds is refused: the newest segment of a live log may end in a
//! write still in flight, which would read as a torn tail, and everything else may move while
//! it is read. While the inspection runs it holds a shared lock on `LOCK`, so a node cannot
//! start on the directory meanwhile.
//!
//! Exit codes: 0 healthy (notices only: a torn tail or an orphaned snapshot file, which the next
//! start repairs), 1 damaged (a finding a node would refuse to start on) or unreadable.

mod text;

use crate::cli::OutputArgs;
use crate::config::SEGMENT_MIB_MAX;
use crate::reply::{Finished, Output};
use clap::Args;
use flotilla_shard_manager::{META_GROUP, MetaState};
use flotilla_storage::inspect::{InspectOptions, LogInspection, Severity, inspect_log};
use flotilla_storage::{DataDirError, DirIdentity, DirPeek, DirState, LogBinding, LogConfig};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What "applied" means offline, printed with the groups.
const APPLIED_MEANS: &str = "applied: what a start reaches (the snapshot plus the committed \
                             entries in the log; state machines live in memory)";

/// Flags of `flotilla inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The node's data directory (the one holding `identity` and `log/`).
    pub data_dir: PathBuf,
    /// Read every snapshot file whole and check its checksum (otherwise only its presence and
    /// length are checked, as a start does).
    #[arg(long)]
    pub verify_snapshots: bool,
    /// Tables or JSON.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Why an inspection failed, or found damage (exit code 1 either way).
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// A running node holds the directory.
    #[error(
        "the data directory {path} is in use by a running process (pid {holder}): stop the node \
         first; inspect reads only a stopped node's directory, since a live log changes while \
         it is read"
    )]
    InUse {
        /// The directory.
        path: PathBuf,
        /// The holder's pid, as the lock file says.
        holder: String,
    },
    /// The directory cannot be read as a data directory.
    #[error(transparent)]
    DataDir(DataDirError),
    /// The directory holds no node's data.
    #[error("{path} holds no bootstrapped data directory (no identity file and no log)")]
    NotADataDirectory {
        /// The directory.
        path: PathBuf,
    },
    /// The log's directory cannot be listed.
    #[error(transparent)]
    Log(#[from] flotilla_storage::RecoveryError),
    /// The inspection found damage (it was printed).
    #[error(
        "the data directory {path} is damaged: {damage_count} finding(s) a node would refuse to \
         start on (printed above)"
    )]
    Damaged {
        /// The directory.
        path: PathBuf,
        /// How many findings are damage.
        damage_count: usize,
    },
    /// The JSON output could not be built.
    #[error("the inspection could not be written as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl From<DataDirError> for InspectError {
    fn from(error: DataDirError) -> Self {
        match error {
            DataDirError::Locked { path, holder } => Self::InUse { path, holder },
            other => Self::DataDir(other),
        }
    }
}

/// The whole report: the JSON of `--output json`.
#[derive(Debug, Serialize)]
struct DirInspection {
    directory: PathBuf,
    identity: IdentityReport,
    /// Whether a node would start on the directory as it is.
    healthy: bool,
    applied_index_means: &'static str,
    /// The key range of each group, from the meta group's snapshot (empty when it does not
    /// decode or names none).
    ranges: Vec<RangeName>,
    log: LogInspection,
}

/// A group's key range as the meta group's snapshot records it: possibly older than the meta
/// log after it (a split or merge since), so it says at which meta index.
#[derive(Debug, Serialize)]
struct RangeName {
    group: u64,
    /// The first key, hex.
    start: String,
    /// The first key after the range, hex; `None` for the end of the key space.
    end: Option<String>,
    /// The meta group's snapshot index this comes from.
    as_of_meta_index: u64,
}

/// The identity file's fields.
#[derive(Debug, Serialize)]
struct IdentityReport {
    cluster_id: String,
    node_id: u64,
    /// 32 hex digits.
    directory_id: String,
    incarnation: u64,
    /// Whether the bootstrap finished.
    bootstrapped: bool,
}

/// Inspects the directory, prints the report, and ends: `Done` when healthy.
///
/// # Errors
/// `Damaged` after printing when a finding is damage; otherwise why it could not be read.
pub fn run(args: &InspectArgs) -> Result<Finished, InspectError> {
    let inspection = inspect(&args.data_dir, args.verify_snapshots)?;
    match args.output.output() {
        Output::Json => println!("{}", serde_json::to_string_pretty(&inspection)?),
        Output::Text => print!("{}", text::text(&inspection)),
    }
    let damage_count = inspection
        .log
        .findings
        .iter()
        .filter(|finding| finding.severity == Severity::Damage)
        .count();
    if damage_count > 0 {
        return Err(InspectError::Damaged {
            path: args.data_dir.clone(),
            damage_count,
        });
    }
    Ok(Finished::Done)
}

fn inspect(path: &Path, verify_snapshots: bool) -> Result<DirInspection, InspectError> {
    let peek = DirPeek::open(path)?;
    let (identity, bootstrapped) = match &peek.state {
        DirState::Fresh => {
            let path = path.to_path_buf();
            return Err(InspectError::NotADataDirectory { path });
        }
        DirState::Bootstrapping(identity) => (identity, false),
        DirState::Ready(identity) => (identity, true),
    };
    let options = InspectOptions {
        verify_snapshots,
        binding: LogBinding {
            log_id: Some(identity.log_id()),
            must_exist: bootstrapped,
        },
    };
    let log_directory = path.join(flotilla_storage::data_dir::LOG_DIRECTORY);
    let log = inspect_log(&log_directory, &log_config(), options)?;
    let ranges = range_names(&log_directory, &log);
    // The shared lock on `LOCK` (in `peek`) is held until here: no node started meanwhile.
    Ok(DirInspection {
        directory: path.to_path_buf(),
        identity: identity_report(identity, bootstrapped),
        healthy: log.is_healthy(),
        applied_index_means: APPLIED_MEANS,
        ranges,
        log,
    })
}

/// Each group's key range from the meta group's snapshot file, when it is there and decodes
/// (a best effort: an inspection of a damaged directory must not fail on it).
fn range_names(log_directory: &Path, log: &LogInspection) -> Vec<RangeName> {
    let meta = log.groups.iter().find(|group| group.group == META_GROUP);
    let Some(snapshot) = meta.and_then(|meta| meta.snapshot.as_ref()) else {
        return Vec::new();
    };
    let Ok(bytes) = std::fs::read(log_directory.join(&snapshot.file)) else {
        return Vec::new();
    };
    let Ok(state) = MetaState::decode(&bytes) else {
        return Vec::new();
    };
    let hex = |key: &[u8]| {
        key.iter()
            .map(|byte| format!("{byte:02x}"))
            .collect::<String>()
    };
    state
        .map
        .ranges()
        .map(|range| RangeName {
            group: range.group.0,
            start: hex(&range.keys.start),
            end: range.keys.end.as_deref().map(hex),
            as_of_meta_index: snapshot.index.0,
        })
        .collect()
}

/// The most permissive limits any node configuration sets (the largest segments, so the largest
/// records): inspect reads every log a node could have written.
fn log_config() -> LogConfig {
    LogConfig {
        segment_bytes_max: SEGMENT_MIB_MAX << 20,
        ..LogConfig::default()
    }
}

fn identity_report(identity: &DirIdentity, bootstrapped: bool) -> IdentityReport {
    IdentityReport {
        cluster_id: identity.cluster_id.clone(),
        node_id: identity.node_id,
        directory_id: format!("{:032x}", identity.directory_id),
        incarnation: identity.incarnation,
        bootstrapped,
    }
}
