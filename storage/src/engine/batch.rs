//! A batch of entries applying to one range of the engine: its rows, its sessions and its
//! shape (bounds, merge state, refused merge attempts) as the batch goes, and what a split or
//! a merge adds to the batch. Everything lands in the one engine batch the range commits, so a
//! split or a merge is atomic with its entry and costs O(bytes of the half that moves).
//!
//! A split moves the parent's pairs from the split key on to the right group's prefix: puts
//! under the new prefix and deletes under the old one, with the right range's metadata (at
//! applied entry 0, as the in-memory carve) and a copy of the session table. A merge writes
//! the frozen neighbour's pairs, decoded from the merge entry, under this range's prefix and
//! folds the two session tables.

use super::backend::WriteOp;
use super::keys;
use super::meta::RangeMeta;
use super::rows::EngineRows;
use super::{Engine, backend_error};
use crate::error::EngineError;
use crate::kv::execute::{self, Applied, MergePlan, RangeState, SplitPlan};
use crate::kv::{KvStateMachine, MergeState, RangeBounds, Response, SessionTable};
use crate::machine::Pair;
use flotilla_raft::{Entry, GroupId, LogId, LogIndex, Membership};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The right half of a split the batch applied.
pub(super) enum Carve {
    /// Its records are in the batch: once it commits, a machine of `group` over them.
    Disk {
        /// The right half's group.
        group: GroupId,
        /// Its metadata as the batch writes it (boxed: the enum's other variant is far
        /// smaller).
        meta: Box<RangeMeta>,
        /// Its copy of the session table.
        sessions: SessionTable,
    },
    /// A replica of the right group holds state in the engine already (it took its own
    /// group's snapshot before its parent here applied the split): that state comes from the
    /// right group's own log, the same as the carve or newer, and the batch leaves it alone.
    /// The carve is handed out in memory, as the in-memory machine carves; the node keeps the
    /// replica it has and drops it (`host_splits`).
    Memory(KvStateMachine),
}

/// The state of one range while a batch of its entries applies.
pub(super) struct BatchApply<'a> {
    engine: &'a Engine,
    group: GroupId,
    rows: EngineRows<'a>,
    sessions: &'a mut Arc<SessionTable>,
    bounds: RangeBounds,
    merge: MergeState,
    declined: BTreeMap<GroupId, u64>,
    /// The group's membership as of the batch's last entry.
    membership: Option<Membership>,
    /// Records of other ranges the batch writes: a split's right half.
    other_ops: Vec<WriteOp>,
    /// The right half of the last split applied.
    carve: Option<Carve>,
}

impl<'a> BatchApply<'a> {
    /// A batch over `group`, whose metadata is `meta` and sessions `sessions`.
    pub(super) fn new(
        engine: &'a Engine,
        group: GroupId,
        meta: &RangeMeta,
        sessions: &'a mut Arc<SessionTable>,
    ) -> Self {
        Self {
            engine,
            group,
            rows: EngineRows::new(engine, group, meta),
            sessions,
            bounds: meta.bounds.clone(),
            merge: meta.merge.clone(),
            declined: meta.declined.clone(),
            membership: meta.membership.clone(),
            other_ops: Vec::new(),
            carve: None,
        }
    }

    /// A membership entry applied: the group's members from here on.
    pub(super) fn membership_applied(&mut self, membership: &Membership) {
        self.membership = Some(membership.clone());
    }

    /// Applies the payload `data` of entry `index`, as `execute::apply_payload` decides it.
    pub(super) fn apply(&mut self, index: LogIndex, data: &[u8]) -> Result<Response, EngineError> {
        let range = RangeState {
            group: self.group,
            bounds: &self.bounds,
            merge: &self.merge,
            declined: &self.declined,
            stored_bytes: self.rows.stored_bytes,
        };
        match execute::apply_payload(&mut self.rows, self.sessions, range, index, data)? {
            Applied::Response(response) => Ok(response),
            Applied::Split(plan) => self.split(plan),
            Applied::Merge(plan) => Ok(self.merge(plan)),
        }
    }

    /// The batch's operations and the range's metadata as of `last`, its last entry, and the
    /// right half of the last split it applied.
    pub(super) fn finish(
        self,
        last: &Entry,
        meta: &RangeMeta,
    ) -> (Vec<WriteOp>, RangeMeta, Option<Carve>) {
        let meta = RangeMeta {
            applied_index: last.index.0,
            applied_term: last.term.0,
            pair_count: self.rows.pair_count,
            stored_bytes: self.rows.stored_bytes,
            bounds: self.bounds,
            merge: self.merge,
            declined: self.declined,
            membership: self.membership,
            ..meta.clone()
        };
        let mut ops = self.rows.into_ops();
        ops.extend(self.other_ops);
        (ops, meta, self.carve)
    }

    /// Carries out a decided split: the pairs from `plan.at` on leave this range (the
    /// batch's earlier writes included) for the right half, which gets a copy of the session
    /// table as it is at this entry.
    fn split(&mut self, plan: SplitPlan) -> Result<Response, EngineError> {
        let response = plan.response();
        let pairs = self.rows.take_from(&plan.at, self.bounds.end.as_deref())?;
        let mut sessions = (**self.sessions).clone();
        // The copy's sessions are all written below; the parent's changes stay the parent's.
        sessions.take_changed();
        let carve = if self.right_holds_state(plan.right)? {
            sessions.stop_tracking();
            Carve::Memory(
                KvStateMachine::from_parts(
                    plan.right,
                    LogId::default(),
                    pairs.into_iter().collect(),
                )
                .with_sessions(sessions)
                .with_bounds(plan.right_bounds),
            )
        } else {
            self.carve_records(&plan, pairs, sessions)?
        };
        self.bounds = plan.left;
        self.carve = Some(carve);
        Ok(response)
    }

    /// Whether the right group holds state in the engine already: its metadata record, or a
    /// carve earlier in this batch.
    fn right_holds_state(&self, right: GroupId) -> Result<bool, EngineError> {
        if matches!(&self.carve, Some(Carve::Disk { group, .. }) if *group == right) {
            return Ok(true);
        }
        let meta = self
            .engine
            .backend()
            .get(&keys::meta(right))
            .map_err(backend_error("read a range's metadata"))?;
        Ok(meta.is_some())
    }

    /// Writes the right half's records into the batch: its pairs, its sessions and its
    /// metadata at applied entry 0.
    fn carve_records(
        &mut self,
        plan: &SplitPlan,
        pairs: Vec<Pair>,
        sessions: SessionTable,
    ) -> Result<Carve, EngineError> {
        let right = plan.right;
        // A range without metadata holds only what a crash left of an install or a deletion,
        // which opening it would delete: delete it now, so none of it mixes with the carve.
        self.engine.delete_records(right)?;
        // The right group's own space, unless an older replica's is still being deleted.
        let space = self.engine.space_for_new_range(right);
        let mut meta = RangeMeta {
            space: space.is_drawn().then_some(space),
            session_limits: sessions.limits(),
            session_clock_ms: sessions.clock_ms(),
            bounds: plan.right_bounds.clone(),
            // A split's right half starts on its parent's voters (the split waits until they
            // are settled: no joint configuration, no learners).
            membership: self
                .membership
                .as_ref()
                .map(|membership| Membership::with_voters(membership.voters.iter().copied())),
            ..RangeMeta::default()
        };
        self.other_ops.reserve(pairs.len() + sessions.len() + 1);
        for (key, value) in pairs {
            meta.pair_count += 1;
            meta.stored_bytes += (key.len() + value.len()) as u64;
            self.other_ops.push((keys::data(space, &key), Some(value)));
        }
        for id in sessions.ids() {
            let image = sessions.session_image(id);
            self.other_ops.push((keys::session(space, id), image));
        }
        self.other_ops
            .push((keys::meta(right), Some(meta.encode())));
        Ok(Carve::Disk {
            group: right,
            meta: Box::new(meta),
            sessions,
        })
    }

    /// Carries out a decided step of a merge: a new merge state and bounds, or the pairs and
    /// sessions of the frozen right neighbour taken in.
    fn merge(&mut self, plan: MergePlan) -> Response {
        match plan {
            MergePlan::Mark {
                bounds,
                merge,
                declined,
                response,
            } => self.shape().mark((bounds, merge), declined, response),
            MergePlan::Absorb { right, bounds } => {
                // Its keys all lie past this range's end, where this range holds none.
                let pairs = right.map().iter();
                self.rows
                    .put_absent(pairs.map(|(key, value)| (key.clone(), value.clone())));
                Arc::make_mut(self.sessions).merge(right.sessions().clone());
                self.shape().absorbed(bounds, right.group())
            }
        }
    }

    fn shape(&mut self) -> execute::Shape<'_> {
        execute::Shape {
            bounds: &mut self.bounds,
            merge: &mut self.merge,
            declined: &mut self.declined,
        }
    }
}
