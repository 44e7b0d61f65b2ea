//! Applying the driver's decisions to the view: the meta group's state machine for operators.
//! Each replica of the meta group applies the same decisions in the same order, refuses the
//! same ones, and so keeps the same operators and the same indexes.

use super::error::ApplyError;
use super::operator::{Decision, Operator, OperatorId, Step};
use super::view::{
    ClusterView, Effect, OperatorEntry, RangeView, Replica, add_signed, same_replicas,
};
use crate::range::RangeId;

impl ClusterView {
    /// Applies one decision. Returns the id of an operator it started.
    ///
    /// # Errors
    /// If the decision does not fit the view: its range is unknown or busy, its range's
    /// replicas are no longer those it was decided on, its operator is not in flight, or it
    /// does not move an operator forward. Nothing changes then.
    pub fn apply(&mut self, decision: &Decision) -> Result<Option<OperatorId>, ApplyError> {
        match decision {
            Decision::Start {
                range,
                kind,
                steps,
                now_ms,
                ..
            } => {
                let operator = Operator {
                    id: OperatorId(self.next_operator),
                    range: *range,
                    kind: *kind,
                    steps: steps.clone(),
                    step_index: 0,
                    step_started_ms: *now_ms,
                    decided_on: self.record_decided_on(*range, decision.decided_on())?,
                };
                self.start(operator).map(Some)
            }
            Decision::Advance {
                operator,
                step_index,
                now_ms,
                ..
            } => self
                .advance(*operator, *step_index, *now_ms, decision.decided_on())
                .map(|()| None),
            Decision::Finish { operator } | Decision::Abandon { operator, .. } => {
                self.end(*operator).map(|()| None)
            }
        }
    }

    pub(crate) fn start(&mut self, operator: Operator) -> Result<OperatorId, ApplyError> {
        if !self.ranges.contains_key(&operator.range) {
            return Err(ApplyError::UnknownRange(operator.range));
        }
        if let Some(&busy) = self.operator_by_range.get(&operator.range) {
            return Err(ApplyError::RangeBusy {
                range: operator.range,
                operator: busy,
            });
        }
        if operator.steps.is_empty() {
            return Err(ApplyError::NoSteps);
        }
        let id = operator.id;
        self.next_operator += 1;
        self.count_limits(&operator, true);
        self.operator_by_range.insert(operator.range, id);
        let effect = Effect::default();
        let range = operator.range;
        self.operators
            .insert(id, OperatorEntry { operator, effect });
        self.index_operator_effect(range);
        Ok(id)
    }

    /// The replicas a decision on `range` is taken as decided on: those it names, if the
    /// record still shows them, or the record's (a decision that names none).
    fn record_decided_on(
        &self,
        range: RangeId,
        decided_on: Option<&[Replica]>,
    ) -> Result<Vec<Replica>, ApplyError> {
        let recorded = self
            .ranges
            .get(&range)
            .map(|view| view.replicas.as_slice())
            .ok_or(ApplyError::UnknownRange(range))?;
        match decided_on {
            Some(replicas) if !same_replicas(recorded, replicas) => {
                Err(ApplyError::RangeChanged(range))
            }
            _ => Ok(recorded.to_vec()),
        }
    }

    fn advance(
        &mut self,
        id: OperatorId,
        step_index: usize,
        now_ms: u64,
        decided_on: Option<&[Replica]>,
    ) -> Result<(), ApplyError> {
        let entry = self
            .operators
            .get(&id)
            .ok_or(ApplyError::UnknownOperator(id))?;
        let (current, count) = (entry.operator.step_index, entry.operator.steps.len());
        if step_index <= current || step_index >= count {
            return Err(ApplyError::StepOutOfOrder {
                operator: id,
                current,
                count,
                requested: step_index,
            });
        }
        let range = entry.operator.range;
        let decided_on = self.record_decided_on(range, decided_on)?;
        self.unindex_operator_effect(range);
        if let Some(entry) = self.operators.get_mut(&id) {
            entry.operator.step_index = step_index;
            entry.operator.step_started_ms = now_ms;
            entry.operator.decided_on = decided_on;
        }
        self.index_operator_effect(range);
        Ok(())
    }

    pub(crate) fn end(&mut self, id: OperatorId) -> Result<(), ApplyError> {
        let range = self
            .operators
            .get(&id)
            .map(|entry| entry.operator.range)
            .ok_or(ApplyError::UnknownOperator(id))?;
        self.unindex_operator_effect(range);
        self.operator_by_range.remove(&range);
        if let Some(entry) = self.operators.remove(&id) {
            self.count_limits(&entry.operator, false);
        }
        Ok(())
    }

    fn count_limits(&mut self, operator: &Operator, adding: bool) {
        let transfer = operator.transfer().is_some();
        let total = if transfer {
            &mut self.transfers_in_flight
        } else {
            &mut self.moves_in_flight
        };
        *total = step_count(*total, adding);
        for node in operator.nodes() {
            if let Some(entry) = self.nodes.get_mut(&node) {
                let counter = if transfer {
                    &mut entry.transfers
                } else {
                    &mut entry.moves
                };
                *counter = step_count(*counter, adding);
            }
        }
    }

    /// Caches and counts what `range`'s operator will still change, if it has one.
    pub(crate) fn index_operator_effect(&mut self, range: RangeId) {
        let Some(&id) = self.operator_by_range.get(&range) else {
            return;
        };
        let Some(entry) = self.operators.get(&id) else {
            return;
        };
        let effect = pending_effect(&entry.operator, self.ranges.get(&range));
        self.count_effect(effect, true);
        if let Some(entry) = self.operators.get_mut(&id) {
            entry.effect = effect;
        }
    }

    /// Takes back the cached effect of `range`'s operator, if it has one.
    pub(crate) fn unindex_operator_effect(&mut self, range: RangeId) {
        let Some(&id) = self.operator_by_range.get(&range) else {
            return;
        };
        let Some(entry) = self.operators.get_mut(&id) else {
            return;
        };
        let effect = std::mem::take(&mut entry.effect);
        self.count_effect(effect, false);
    }

    fn count_effect(&mut self, effect: Effect, adding: bool) {
        if let Some(entry) = effect.replica_in.and_then(|node| self.nodes.get_mut(&node)) {
            entry.replicas_incoming = step_count(entry.replicas_incoming, adding);
        }
        if let Some(entry) = effect
            .replica_out
            .and_then(|node| self.nodes.get_mut(&node))
        {
            entry.replicas_outgoing = step_count(entry.replicas_outgoing, adding);
        }
        let Some((from, to, load)) = effect.leader else {
            return;
        };
        if let Some(entry) = self.nodes.get_mut(&from) {
            let (count, sum) = entry.leaders_outgoing;
            entry.leaders_outgoing = (step_count(count, adding), add_signed(sum, load, adding));
        }
        if let Some(entry) = self.nodes.get_mut(&to) {
            let (count, sum) = entry.leaders_incoming;
            entry.leaders_incoming = (step_count(count, adding), add_signed(sum, load, adding));
        }
    }
}

fn step_count(count: usize, adding: bool) -> usize {
    if adding {
        count.saturating_add(1)
    } else {
        count.saturating_sub(1)
    }
}

/// What `operator` will still change on `range`: a replica to add, one to remove, and a
/// leadership it is handing over now.
fn pending_effect(operator: &Operator, range: Option<&RangeView>) -> Effect {
    let Some(range) = range else {
        return Effect::default();
    };
    let leader = match operator.step() {
        Some(&Step::TransferLeader { from, to }) if range.leader == Some(from) => {
            Some((from, to, range.load_requests_per_second))
        }
        _ => None,
    };
    Effect {
        replica_in: operator
            .target()
            .filter(|&node| range.role_of(node).is_none()),
        replica_out: operator
            .source()
            .filter(|&node| range.role_of(node).is_some()),
        leader,
    }
}
