//! The replicated part of a [`ClusterView`]: what the meta group's log decides (node states,
//! range replicas, operators in flight and the next operator id). It is the view's encoding in
//! the meta group's snapshot and its equality; what only the meta leader hears (heartbeats,
//! loads, sizes, leaders) is left out, so every meta replica encodes the same bytes.

use super::error::{ApplyError, ViewError};
use super::operator::Operator;
use super::view::{ClusterView, NodeState, NodeView, RangeView, Replica};
use crate::range::RangeId;
use flotilla_raft::{GroupId, NodeId};
use serde::ser::{SerializeSeq, SerializeStruct};
use serde::{Deserialize, Serialize, Serializer};

/// One range as the log records it, decoded.
#[derive(Deserialize)]
pub(crate) struct RangeRecord {
    id: RangeId,
    group: GroupId,
    replicas: Vec<Replica>,
    membership_index: u64,
}

/// The replicated part of a view, decoded (`ViewCopy` encodes it).
#[derive(Deserialize)]
pub(crate) struct ViewRecord {
    nodes: Vec<(NodeId, NodeState)>,
    ranges: Vec<RangeRecord>,
    operators: Vec<Operator>,
    next_operator: u64,
}

/// Why encoded view bytes do not make a view.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// A node or range did not fit the view.
    #[error("the recorded view is inconsistent: {0}")]
    View(#[from] ViewError),
    /// An operator did not fit the view.
    #[error("the recorded view is inconsistent: {0}")]
    Operator(#[from] ApplyError),
}

/// The replicated part of a view, copied without walking its ranges (they are shared with the
/// view, a persistent map): it encodes to the bytes of its `ViewRecord`, on any thread.
#[derive(Clone, Debug)]
pub(crate) struct ViewCopy {
    nodes: Vec<(NodeId, NodeState)>,
    ranges: imbl::OrdMap<RangeId, RangeView>,
    operators: Vec<Operator>,
    next_operator: u64,
}

/// One range as `RangeRecord` encodes it, borrowed from its view: what the log records of it.
#[derive(PartialEq, Serialize)]
struct RangeRecordRef<'a> {
    id: RangeId,
    group: GroupId,
    replicas: &'a [Replica],
    membership_index: u64,
}

impl<'a> RangeRecordRef<'a> {
    fn of(range: &'a RangeView) -> Self {
        Self {
            id: range.id,
            group: range.group,
            replicas: &range.replicas,
            membership_index: range.membership_index,
        }
    }
}

/// The ranges of a copy, encoded as `RangeRecord`s.
struct RangeRecords<'a>(&'a imbl::OrdMap<RangeId, RangeView>);

impl Serialize for RangeRecords<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for range in self.0.values() {
            seq.serialize_element(&RangeRecordRef::of(range))?;
        }
        seq.end()
    }
}

impl Serialize for ViewCopy {
    /// As `ViewRecord` (its fields in its order), so a view encodes alike either way.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut record = serializer.serialize_struct("ViewRecord", 4)?;
        record.serialize_field("nodes", &self.nodes)?;
        record.serialize_field("ranges", &RangeRecords(&self.ranges))?;
        record.serialize_field("operators", &self.operators)?;
        record.serialize_field("next_operator", &self.next_operator)?;
        record.end()
    }
}

impl ClusterView {
    /// The replicated part, copied in O(nodes + operators).
    pub(crate) fn copy_replicated(&self) -> ViewCopy {
        ViewCopy {
            nodes: self.nodes().map(|node| (node.id, node.state)).collect(),
            ranges: self.ranges.clone(),
            operators: self.operators().cloned().collect(),
            next_operator: self.next_operator,
        }
    }
}

impl Serialize for ClusterView {
    /// The replicated part only (`ViewRecord`'s encoding).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.copy_replicated().serialize(serializer)
    }
}

impl TryFrom<ViewRecord> for ClusterView {
    type Error = RecordError;

    fn try_from(record: ViewRecord) -> Result<Self, RecordError> {
        let mut view = ClusterView::new();
        for (id, state) in record.nodes {
            view.upsert_node(NodeView {
                state,
                ..NodeView::up(id, 0)
            })?;
        }
        for range in record.ranges {
            view.upsert_range(RangeView {
                id: range.id,
                group: range.group,
                replicas: range.replicas,
                leader: None,
                size_bytes: 0,
                load_requests_per_second: 0,
                membership_index: range.membership_index,
            })?;
        }
        for operator in record.operators {
            view.start(operator)?;
        }
        view.next_operator = record.next_operator;
        Ok(view)
    }
}

impl PartialEq for ClusterView {
    /// Two views are equal when the log recorded the same: what only a leader hears differs.
    fn eq(&self, other: &Self) -> bool {
        let (mine, theirs) = (self.copy_replicated(), other.copy_replicated());
        mine.nodes == theirs.nodes
            && mine.operators == theirs.operators
            && mine.next_operator == theirs.next_operator
            && mine
                .ranges
                .values()
                .map(RangeRecordRef::of)
                .eq(theirs.ranges.values().map(RangeRecordRef::of))
    }
}

impl Eq for ClusterView {}
