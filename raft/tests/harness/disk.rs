//! Faults that make a crashed replica's disk lose what it had synced, which no correct node may
//! ignore: amnesia (the data directory comes back empty) and a flipped bit in synced log data.
//!
//! Production refuses to start on either (issue 16: the data directory's identity and the
//! peers' pins for amnesia, the log's evidence rule for a flip), so under `DiskRule::Refuse` the
//! replica stays down for good. `DiskRule::StartAnyway` is the mutation: the replica starts on
//! what is left, as production did before, rejoining as a fresh initial member (amnesia) or on
//! its log cut at the damage (a flip taken for a torn tail). The checkers must catch what that
//! loses.

use flotilla_raft::{LogIndex, LogReader, MemLog, Membership, Persist};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// How a replica whose disk lost synced data restarts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DiskRule {
    /// It refuses to start and stays down (production).
    #[default]
    Refuse,
    /// Mutation: it starts on what is left.
    StartAnyway,
}

/// What a crashed replica's disk lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskFault {
    /// Everything: the node comes back on an empty data directory under its old id.
    Amnesia,
    /// A bit flipped in a synced entry: the log from that entry on no longer checks out.
    SyncedFlip,
}

/// What `disk` looks like to a replica that starts on it anyway after `fault`.
pub fn damaged(
    disk: &MemLog,
    fault: DiskFault,
    initial: &Membership,
    rng: &mut ChaCha8Rng,
) -> MemLog {
    match fault {
        DiskFault::Amnesia => {
            let mut fresh = MemLog::new();
            fresh.persist(&Persist::bootstrap(initial.clone()));
            fresh
        }
        DiskFault::SyncedFlip => {
            let (first, last) = (disk.first_index().0, disk.last_index().0);
            if first > last {
                return disk.clone();
            }
            let flipped = LogIndex(rng.random_range(first..=last));
            cut_before(disk, flipped)
        }
    }
}

/// `disk` with every entry from `index` on gone, and its commit index lowered to what is left
/// (what replaying a log cut at that entry's record yields).
fn cut_before(disk: &MemLog, index: LogIndex) -> MemLog {
    let mut cut = MemLog::new();
    let snapshot = disk.snapshot().expect("mem snapshot");
    if snapshot != Default::default() {
        cut.install_snapshot(snapshot);
    }
    let first = disk.first_index();
    let kept = disk.entries(first, index, u64::MAX).expect("mem entries");
    cut.append(&kept);
    let mut hard_state = disk.hard_state();
    hard_state.commit = hard_state.commit.min(cut.last_index());
    cut.persist(&Persist {
        hard_state: Some(hard_state),
        ..Persist::default()
    });
    cut
}
