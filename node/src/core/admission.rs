//! Client requests in: checked against the size limits and the range's keys (`routing`; typed
//! refusals), then proposed to their group's log or started as a ReadIndex read. Writes in a
//! session carry this node's clock as their log time.

use super::routing::Span;
use super::waiting::ReadOp;
use super::{BatchSink, NodeCore, Respond};
use crate::api::ApiError;
use flotilla_raft::{GroupId, MultiError, ProposeError};
use flotilla_shard_manager::{META_GROUP, RangeEpoch};
use flotilla_storage::kv::SessionTag;
use flotilla_storage::{Codec, Command, Proposal};

impl<R: Respond, S: BatchSink> NodeCore<R, S> {
    /// A KV request without a session (a client from before sessions): a copy of a write sent
    /// this way applies again.
    pub(super) fn kv(&mut self, group: GroupId, epoch: RangeEpoch, command: Command, responder: R) {
        if let Err(error) = self.check(group, epoch, &command) {
            return responder.answer(Err(error));
        }
        if self.waiting.len() >= self.config.limits.pending_requests_max {
            return responder.answer(Err(ApiError::Busy));
        }
        if !is_read(&command) {
            return self.propose(group, command.encode(), responder);
        }
        #[cfg(feature = "mutations")]
        if self.config.mutation == super::CoreMutation::ReadWithoutReadIndex {
            return self.read_locally(group, &command, responder);
        }
        let context = self.waiting.add_read(group, ReadOp::Kv(command), responder);
        if let Err(error) = self.multi.read_index(group, context) {
            let (_, _, responder) = self.waiting.take_read(context).expect("just added");
            responder.answer(Err(self.refusal(group, error)));
        }
    }

    /// Opens a backup view of `group` once a ReadIndex confirms this replica leads and the
    /// range applied what was committed (`serve_reads` opens it).
    pub(super) fn backup_open(&mut self, group: GroupId, epoch: RangeEpoch, responder: R) {
        if let Err(error) = self.mapped_as(group, epoch) {
            return responder.answer(Err(error));
        }
        if let Err(error) = self.backups.has_room(self.clock.monotonic_ms) {
            return responder.answer(Err(error));
        }
        if self.waiting.len() >= self.config.limits.pending_requests_max {
            return responder.answer(Err(ApiError::Busy));
        }
        let context = self
            .waiting
            .add_read(group, ReadOp::OpenBackup(epoch), responder);
        if let Err(error) = self.multi.read_index(group, context) {
            let (_, _, responder) = self.waiting.take_read(context).expect("just added");
            responder.answer(Err(self.refusal(group, error)));
        }
    }

    /// The range map read linearizably: on the meta leader, once a ReadIndex confirms it leads
    /// and its replica applied what was committed (`serve_reads` answers it).
    pub(super) fn range_map_read(&mut self, responder: R) {
        if self.waiting.len() >= self.config.limits.pending_requests_max {
            return responder.answer(Err(ApiError::Busy));
        }
        let context = self
            .waiting
            .add_read(META_GROUP, ReadOp::RangeMap, responder);
        if let Err(error) = self.multi.read_index(META_GROUP, context) {
            let (_, _, responder) = self.waiting.take_read(context).expect("just added");
            responder.answer(Err(self.refusal(META_GROUP, error)));
        }
    }

    /// Chunk `chunk` of backup view `view` of `group`.
    pub(super) fn backup_chunk(&mut self, (group, view, chunk): (GroupId, u64, u64), responder: R) {
        let chunk_bytes_max = self.config.tuning.scan_bytes_max;
        let now_ms = self.clock.monotonic_ms;
        responder.answer(
            self.backups
                .chunk((group, view, chunk), chunk_bytes_max, now_ms),
        );
    }

    /// A write in a session, proposed with this node's clock as its log time.
    pub(super) fn write(
        &mut self,
        group: GroupId,
        epoch: RangeEpoch,
        tag: SessionTag,
        command: Command,
        responder: R,
    ) {
        if is_read(&command) {
            return self.kv(group, epoch, command, responder);
        }
        if tag.sequence == 0 || tag.awaited_from > tag.sequence {
            return responder.answer(Err(ApiError::BadSessionTag {
                sequence: tag.sequence,
                awaited_from: tag.awaited_from,
            }));
        }
        if let Err(error) = self.check(group, epoch, &command) {
            return responder.answer(Err(error));
        }
        if self.waiting.len() >= self.config.limits.pending_requests_max {
            return responder.answer(Err(ApiError::Busy));
        }
        #[cfg(feature = "mutations")]
        let Some(responder) = self.answer_early(group, &command, responder) else {
            let proposal = Proposal::Write {
                time_ms: self.clock.now_ms,
                tag,
                command,
            };
            let _ = self.multi.propose(group, proposal.to_payload());
            return;
        };
        let proposal = Proposal::Write {
            time_ms: self.clock.now_ms,
            tag,
            command,
        };
        self.propose(group, proposal.to_payload(), responder);
    }

    /// Proposes the opening of a session in `group` (its id will be the entry's index).
    pub(super) fn open_session(&mut self, group: GroupId, responder: R) {
        let map = &self.machines.meta().map;
        // A split's right half serves before the map shows it: its own bounds say so.
        let split_born = self
            .machines
            .kv(group)
            .is_some_and(|machine| machine.bounds().version > 0 && !machine.is_frozen());
        let served = group != META_GROUP && (map.range_of_group(group).is_some() || split_born);
        if !served || !self.is_member(group) {
            return responder.answer(Err(ApiError::NotServed { group }));
        }
        if self.waiting.len() >= self.config.limits.pending_requests_max {
            return responder.answer(Err(ApiError::Busy));
        }
        let proposal = Proposal::Open {
            time_ms: self.clock.now_ms,
            limits: self.config.session_limits,
        };
        self.propose(group, proposal.to_payload(), responder);
    }

    /// Proposes `payload` to `group`; the client is answered once its entry is applied.
    pub(super) fn propose(&mut self, group: GroupId, payload: Vec<u8>, responder: R) {
        match self.multi.propose(group, payload) {
            Ok(index) => {
                self.counters.proposals += 1;
                let term = self
                    .multi
                    .group(group)
                    .map(|raft| raft.term())
                    .unwrap_or_default();
                self.waiting.add_proposal(group, index, term, responder);
            }
            Err(error) => responder.answer(Err(self.refusal(group, error))),
        }
    }

    /// Keys and values are within the limits, the key (and scan span) lie in `group`'s range
    /// (`check_route`), and this node hosts `group`.
    pub(super) fn check(
        &self,
        group: GroupId,
        epoch: RangeEpoch,
        command: &Command,
    ) -> Result<(), ApiError> {
        let (key, values, end) = match command {
            Command::Get { key } | Command::Delete { key } => (key, [None, None], None),
            Command::Put { key, value } => (key, [Some(value), None], None),
            Command::CompareAndSwap { key, expected, new } => {
                (key, [expected.as_ref(), new.as_ref()], None)
            }
            Command::Scan { start, end, .. } => (start, [None, None], end.as_ref()),
        };
        let limits = &self.config.limits;
        too_large("key", key.len(), limits.key_bytes_max)?;
        if let Some(end) = end {
            too_large("scan end key", end.len(), limits.key_bytes_max)?;
        }
        // Every value is checked (a compare-and-swap carries two): the configuration keeps a
        // key and two values of the limits inside one log record.
        for value in values.into_iter().flatten() {
            too_large("value", value.len(), limits.value_bytes_max)?;
        }
        let span = match command {
            Command::Scan { .. } => Span::Scan(key, end.map(Vec::as_slice)),
            _ => Span::Key(key),
        };
        self.check_route(group, epoch, span)?;
        if !self.is_member(group) {
            return Err(ApiError::NotServed { group });
        }
        self.check_space(command)
    }

    /// A backup view holds the range's keys as the client's map has them, so it opens only
    /// while the client's descriptor of `group` is the map's (`epoch`'s version) and this
    /// node hosts `group`.
    pub(super) fn mapped_as(&self, group: GroupId, epoch: RangeEpoch) -> Result<(), ApiError> {
        let mapped = self.machines.meta().map.range_of_group(group);
        match mapped {
            _ if group == META_GROUP => Err(ApiError::NotServed { group }),
            Some(range) if range.epoch.version > epoch.version => Err(ApiError::StaleEpoch {
                ranges: vec![range.clone()],
            }),
            Some(range) if range.epoch.version == epoch.version && self.is_member(group) => Ok(()),
            _ => Err(ApiError::NotServed { group }),
        }
    }

    /// A write that adds data needs the node under its storage quota and its disk above the
    /// reserve; deletes (and a compare-and-swap that deletes) free space and always pass.
    fn check_space(&self, command: &Command) -> Result<(), ApiError> {
        let adds = matches!(
            command,
            Command::Put { .. } | Command::CompareAndSwap { new: Some(_), .. }
        );
        if !adds {
            return Ok(());
        }
        let limits = &self.config.limits;
        let stored_bytes = self.machines.stored_bytes();
        if limits.storage_quota_bytes > 0 && stored_bytes >= limits.storage_quota_bytes {
            return Err(ApiError::QuotaExceeded {
                stored_bytes,
                quota_bytes: limits.storage_quota_bytes,
            });
        }
        match self.disk_free_bytes {
            Some(free_bytes) if free_bytes < limits.disk_reserve_bytes => {
                Err(ApiError::DiskReserve {
                    free_bytes,
                    reserve_bytes: limits.disk_reserve_bytes,
                })
            }
            _ => Ok(()),
        }
    }

    /// The client's view of a group's refusal: who leads instead, busy, or unavailable.
    pub(super) fn refusal(&self, group: GroupId, error: MultiError) -> ApiError {
        match error {
            MultiError::Propose(ProposeError::NotLeader { leader_hint }) => ApiError::NotLeader {
                group,
                leader: leader_hint,
                address: leader_hint.and_then(|leader| {
                    self.machines
                        .meta()
                        .directory
                        .address(leader)
                        .map(str::to_owned)
                }),
            },
            MultiError::UnknownGroup(group) => ApiError::NotServed { group },
            MultiError::Propose(
                ProposeError::TooManyPendingReads | ProposeError::TransferInProgress,
            ) => ApiError::Busy,
            other => ApiError::Unavailable(other.to_string()),
        }
    }
}

/// Deliberately broken rules (feature `mutations`): the simulator's checkers must catch them.
#[cfg(feature = "mutations")]
impl<R: Respond, S: BatchSink> NodeCore<R, S> {
    /// `ReadWithoutReadIndex`: answers a read from this node's state at once.
    fn read_locally(&mut self, group: GroupId, command: &Command, responder: R) {
        let response = self
            .machines
            .kv(group)
            .and_then(|machine| machine.read_bounded(command, usize::MAX).ok().flatten());
        let result = response.map_or(Err(ApiError::NotServed { group }), |response| {
            crate::api::kv_result(group, response)
        });
        responder.answer(result);
    }

    /// `AnswerBeforeCommit`: a put or delete on the leader is answered now, from its state,
    /// before a majority holds it (the caller proposes it with nobody waiting). Gives the
    /// responder back when the rule does not apply.
    fn answer_early(&mut self, group: GroupId, command: &Command, responder: R) -> Option<R> {
        let key = match command {
            Command::Put { key, .. } | Command::Delete { key } => key.clone(),
            _ => return Some(responder),
        };
        let leads = self
            .multi
            .group(group)
            .is_some_and(|raft| raft.role() == flotilla_raft::Role::Leader);
        if self.config.mutation != super::CoreMutation::AnswerBeforeCommit || !leads {
            return Some(responder);
        }
        let previous = self
            .machines
            .kv(group)
            .and_then(|machine| {
                machine
                    .read_bounded(&Command::Get { key }, usize::MAX)
                    .ok()
                    .flatten()
            })
            .and_then(|response| match response {
                flotilla_storage::Response::Value(value) => value,
                _ => None,
            });
        let written = flotilla_storage::Response::Written { previous };
        responder.answer(Ok(crate::api::Reply::Kv(written)));
        None
    }
}

fn is_read(command: &Command) -> bool {
    matches!(command, Command::Get { .. } | Command::Scan { .. })
}

fn too_large(what: &str, bytes: usize, limit: usize) -> Result<(), ApiError> {
    if bytes > limit {
        return Err(ApiError::TooLarge {
            what: what.into(),
            bytes,
            limit,
        });
    }
    Ok(())
}
