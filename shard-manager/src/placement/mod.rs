//! The placement driver: from the cluster as the meta group sees it, the operators that keep
//! every range fully replicated and the replicas and leaders spread. Sans-IO and deterministic:
//! no clock (time is `now_ms`, passed in), no randomness, ties broken by id.
//!
//! Calling order, on the meta group's leader, every tick:
//!
//! 1. Keep a [`ClusterView`] current: apply every meta-group command to it in log order
//!    (`upsert_node`, `heartbeat`, `set_node_state`, `upsert_range`, `remove_range`, and
//!    [`ClusterView::apply`] for the driver's own [`Decision`]s). Every meta replica does the
//!    same, so a new leader has the operators in flight at hand.
//! 2. `let ready = driver.tick(&view, now_ms);` and propose each decision of `ready` to the
//!    meta group. Tick again once they are applied (or refused): a decision the view refuses
//!    (`ApplyError`) changed nothing, so proposing one twice is harmless.
//! 3. On every node, the leader of a range with an operator in flight carries out its current
//!    [`Step`]: [`Step::change_steps`] gives the Raft membership change still needed (proposed
//!    with `propose_conf_change`), and `TransferLeader` is a Raft leadership transfer. The next
//!    tick sees the range change and advances the operator.
//!
//! The rules, in priority order, share the limits of [`PlacementConfig`]: repair, drain,
//! spread, leader balance (`docs/protocol/placement.md`). A person's request for one move or
//! one leadership transfer ([`ManualRequest`]) becomes a decision through
//! [`PlacementDriver::manual`], proposed like the driver's own.

mod apply;
mod balance;
mod config;
mod drain;
mod error;
mod leaders;
mod liveness;
mod manual;
pub mod model;
mod operator;
mod planner;
mod progress;
pub(crate) mod record;
mod repair;
mod view;

pub use config::{PlacementConfig, PlacementConfigError};
pub use error::{ApplyError, ManualError, ViewError};
pub use liveness::{Liveness, liveness};
pub use manual::ManualRequest;
pub use operator::{AbandonReason, Decision, Operator, OperatorId, OperatorKind, Step};
pub use record::RecordError;
pub use view::{ClusterView, NodeState, NodeView, RangeView, Replica, ReplicaRole, same_replicas};

use balance::Cursors;
use planner::Planner;

/// What one tick decided: the meta-group writes to propose, in order.
#[must_use = "a tick's decisions do nothing until they are proposed to the meta group"]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlacementReady {
    /// Advances, finishes and abandons of operators in flight first, then new operators by
    /// rule priority.
    pub decisions: Vec<Decision>,
    /// The tick stopped examining ranges at `ranges_scanned_per_tick_max`: the next one
    /// resumes where it stopped and may find more to do even if nothing changes meanwhile.
    pub scan_limit_reached: bool,
}

/// The placement driver. Holds only its configuration and where each node's scan resumes;
/// everything else is in the view, so any meta replica can take over.
#[derive(Clone, Debug)]
pub struct PlacementDriver {
    config: PlacementConfig,
    replica_cursors: Cursors,
    leader_cursors: Cursors,
}

impl PlacementDriver {
    /// A driver with a validated configuration.
    ///
    /// # Errors
    /// The configuration's first broken rule.
    pub fn new(config: PlacementConfig) -> Result<Self, PlacementConfigError> {
        config.validate()?;
        Ok(Self {
            config,
            replica_cursors: Cursors::new(),
            leader_cursors: Cursors::new(),
        })
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &PlacementConfig {
        &self.config
    }

    /// Decides what to do at `now_ms`: moves operators in flight along, then starts new ones,
    /// rule by rule, within the limits. Costs O(operators in flight + nodes x operators
    /// started + ranges scanned), the last bounded by `ranges_scanned_per_tick_max`.
    pub fn tick(&mut self, view: &ClusterView, now_ms: u64) -> PlacementReady {
        let mut planner = Planner::new(view, &self.config, now_ms);
        progress::progress(&mut planner);
        repair::repair(&mut planner);
        drain::drain(&mut planner);
        balance::rebalance(&mut planner, &mut self.replica_cursors);
        leaders::balance_leaders(&mut planner, &mut self.leader_cursors);
        PlacementReady {
            scan_limit_reached: planner.scan_limit_reached(),
            decisions: planner.decisions,
        }
    }
}

#[cfg(test)]
mod manual_tests;
#[cfg(test)]
mod tests;
