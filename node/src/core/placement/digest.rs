//! Report digests: instead of naming every range it leads again every few rounds (a full
//! report of 33,000 ranges took a fifth of an idle node's CPU at 100,000 ranges, most of it on
//! the meta leader, which looks up every range named), a node sends a digest of what it
//! believes the meta leader has taken from its reports. The meta leader keeps the same
//! digest of what it did take, and asks for a full report when the two differ twice in a row:
//! a report lost on the way, or taken by a node that was not leading the meta group then.

use flotilla_raft::{GroupId, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How many digests in a row must differ before the meta leader asks for a full report: a
/// leadership that moved between two nodes shows in one node's digest a moment before the
/// other's report reaches the meta leader.
const MISMATCHES_BEFORE_ASKING: u32 = 2;

/// The ranges a node believes the meta leader took from its reports: how many, and an
/// order-free hash of each range's group and membership index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(in crate::core) struct ReportDigest {
    count: u64,
    hash: u64,
}

impl ReportDigest {
    /// The digest of `reported` (group -> membership index).
    pub(super) fn of(reported: &BTreeMap<GroupId, u64>) -> Self {
        reported
            .iter()
            .fold(Self::default(), |digest, (&group, &index)| {
                digest.with(group, index)
            })
    }

    /// This digest with `(group, index)` added.
    fn with(self, group: GroupId, index: u64) -> Self {
        Self {
            count: self.count + 1,
            hash: self.hash ^ term(group, index),
        }
    }

    /// This digest with `(group, index)` taken out (the hash is an exclusive or of
    /// independent terms: taking a term out is adding it again).
    fn without(self, group: GroupId, index: u64) -> Self {
        Self {
            count: self.count.saturating_sub(1),
            hash: self.hash ^ term(group, index),
        }
    }
}

/// One range's term of the hash: its group and index mixed (splitmix64's finalizer), so that
/// different sets rarely share a sum.
fn term(group: GroupId, index: u64) -> u64 {
    let mut value = group.0.rotate_left(32) ^ index;
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

/// On the meta leader: what it took from each node's reports, and how often in a row each
/// node's digest differed from it.
#[derive(Debug, Default)]
pub(super) struct TakenReports {
    /// Per group, the node whose report named it last, and the membership index named.
    taken: BTreeMap<GroupId, (NodeId, u64)>,
    /// Per node, the digest of the groups it named last.
    digests: BTreeMap<NodeId, ReportDigest>,
    mismatches: BTreeMap<NodeId, u32>,
}

impl TakenReports {
    /// A full report from `node` follows: what it named before counts no more.
    pub(super) fn forget(&mut self, node: NodeId) {
        self.taken.retain(|_, &mut (owner, _)| owner != node);
        self.digests.remove(&node);
        self.mismatches.remove(&node);
    }

    /// `node` named `group` at membership `index` (it leads it now, no one else does).
    pub(super) fn take(&mut self, node: NodeId, group: GroupId, index: u64) {
        if let Some((owner, before)) = self.taken.insert(group, (node, index)) {
            let digest = self.digests.entry(owner).or_default();
            *digest = digest.without(group, before);
        }
        let digest = self.digests.entry(node).or_default();
        *digest = digest.with(group, index);
    }

    /// Compares `node`'s digest with what was taken from it: whether to ask it for a full
    /// report now.
    pub(super) fn wants_full_report(&mut self, node: NodeId, digest: ReportDigest) -> bool {
        let taken = self.digests.get(&node).copied().unwrap_or_default();
        if taken == digest {
            self.mismatches.remove(&node);
            return false;
        }
        let mismatches = self.mismatches.entry(node).or_default();
        *mismatches += 1;
        if *mismatches < MISMATCHES_BEFORE_ASKING {
            return false;
        }
        *mismatches = 0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reported(entries: &[(u64, u64)]) -> BTreeMap<GroupId, u64> {
        entries
            .iter()
            .map(|&(group, index)| (GroupId(group), index))
            .collect()
    }

    fn take_all(taken: &mut TakenReports, node: u64, entries: &[(u64, u64)]) {
        for &(group, index) in entries {
            taken.take(NodeId(node), GroupId(group), index);
        }
    }

    #[test]
    fn a_digest_does_not_depend_on_order_and_tells_sets_apart() {
        let digest = ReportDigest::of(&reported(&[(1, 5), (2, 7)]));
        let mut taken = TakenReports::default();
        take_all(&mut taken, 2, &[(2, 7), (1, 5)]);
        assert_eq!(taken.digests[&NodeId(2)], digest);
        assert_ne!(digest, ReportDigest::of(&reported(&[(1, 5), (2, 8)])));
        assert_ne!(digest, ReportDigest::of(&reported(&[(1, 5)])));
        assert_ne!(digest, ReportDigest::of(&reported(&[(1, 7), (2, 5)])));
    }

    /// A report lost on the way: the node's digest names a range the meta leader never took,
    /// and a full report is asked for at the second digest that differs, not the first.
    #[test]
    fn a_lost_report_is_asked_for_again_at_the_second_digest_that_differs() {
        let mut taken = TakenReports::default();
        take_all(&mut taken, 2, &[(1, 5)]);
        let node = reported(&[(1, 5), (3, 9)]);
        assert!(!taken.wants_full_report(NodeId(2), ReportDigest::of(&node)));
        assert!(taken.wants_full_report(NodeId(2), ReportDigest::of(&node)));
        taken.forget(NodeId(2));
        take_all(&mut taken, 2, &[(1, 5), (3, 9)]);
        assert!(!taken.wants_full_report(NodeId(2), ReportDigest::of(&node)));
        assert!(!taken.wants_full_report(NodeId(2), ReportDigest::of(&node)));
    }

    /// A leadership that moved: the new leader's report takes the range from the old one's
    /// digest, so both match again without a full report.
    #[test]
    fn a_range_named_by_its_new_leader_leaves_the_old_leaders_digest() {
        let mut taken = TakenReports::default();
        take_all(&mut taken, 1, &[(1, 5), (2, 5)]);
        // Node 1 lost group 2 to node 3, which reported it.
        take_all(&mut taken, 3, &[(2, 5)]);
        let one = ReportDigest::of(&reported(&[(1, 5)]));
        let three = ReportDigest::of(&reported(&[(2, 5)]));
        for _ in 0..3 {
            assert!(!taken.wants_full_report(NodeId(1), one));
            assert!(!taken.wants_full_report(NodeId(3), three));
        }
        // A digest that matched in between starts the count again.
        let stale = ReportDigest::of(&reported(&[(1, 5), (2, 5)]));
        assert!(!taken.wants_full_report(NodeId(1), stale));
        assert!(!taken.wants_full_report(NodeId(1), one));
        assert!(!taken.wants_full_report(NodeId(1), stale));
    }
}
