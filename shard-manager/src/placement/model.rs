//! An instant model of a cluster carrying out operators: the driver ticks, its decisions are
//! applied to the view as the meta group would, and every operator's current step is done at
//! once, as a node core would do it through Raft. Tests, data-driven cases and the node's
//! simulators drive the driver through it.

use super::error::{ApplyError, ViewError};
use super::liveness::{Liveness, liveness};
use super::operator::Decision;
use super::view::{ClusterView, RangeView};
use super::{PlacementConfig, PlacementConfigError, PlacementDriver, PlacementReady};
use crate::range::RangeId;

/// The view, the driver and the time, with instant execution of operator steps.
#[derive(Clone, Debug)]
pub struct Model {
    /// The cluster as the meta group sees it.
    pub view: ClusterView,
    /// The driver under test.
    pub driver: PlacementDriver,
    /// The current time.
    pub now_ms: u64,
}

/// Why the model could not go on: the driver asked for something the view refused (a bug).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ModelError {
    /// A decision was refused.
    #[error("the view refused the decision {decision}: {error}")]
    Refused {
        /// The decision, printed.
        decision: String,
        /// Why.
        error: ApplyError,
    },
    /// A range update was refused.
    #[error("the view refused a range update: {0}")]
    View(#[from] ViewError),
}

impl Model {
    /// An empty cluster at time 0.
    ///
    /// # Errors
    /// If the configuration is not valid.
    pub fn new(config: PlacementConfig) -> Result<Self, PlacementConfigError> {
        Ok(Self {
            view: ClusterView::new(),
            driver: PlacementDriver::new(config)?,
            now_ms: 0,
        })
    }

    /// One driver tick at the current time, its decisions applied to the view.
    ///
    /// # Errors
    /// If the view refuses a decision.
    pub fn tick(&mut self) -> Result<Vec<Decision>, ModelError> {
        self.tick_ready().map(|ready| ready.decisions)
    }

    /// One driver tick at the current time, its decisions applied to the view; the whole
    /// `PlacementReady`.
    ///
    /// # Errors
    /// If the view refuses a decision.
    pub fn tick_ready(&mut self) -> Result<PlacementReady, ModelError> {
        let ready = self.driver.tick(&self.view, self.now_ms);
        for decision in &ready.decisions {
            self.view
                .apply(decision)
                .map_err(|error| ModelError::Refused {
                    decision: decision.to_string(),
                    error,
                })?;
        }
        Ok(ready)
    }

    /// Carries out the current step of every operator in flight, then elects a leader in every
    /// range that lost its own (the lowest live voter). Returns the ranges changed.
    ///
    /// # Errors
    /// If the view refuses a changed range (a bug in a step).
    pub fn carry_out_steps(&mut self) -> Result<Vec<RangeId>, ModelError> {
        let changed: Vec<RangeView> = self
            .view
            .operators()
            .filter_map(|operator| {
                let range = self.view.range(operator.range)?;
                let step = operator.step()?;
                (!step.is_done(range)).then(|| step.carried_out(range))
            })
            .collect();
        let ids = changed.iter().map(|range| range.id).collect();
        for range in changed {
            let range = self.elected(range);
            self.view.upsert_range(range)?;
        }
        Ok(ids)
    }

    fn elected(&self, mut range: RangeView) -> RangeView {
        if range.leader.is_none() {
            let leader = range.voter_nodes().find(|&node| {
                self.view.node(node).is_some_and(|view| {
                    liveness(view, self.now_ms, self.driver.config()) != Liveness::Dead
                })
            });
            range.leader = leader;
        }
        range
    }

    /// Ticks and carries out steps until a tick decides nothing and nothing is in flight, at
    /// most `rounds_max` times; calls `check` after every change. Returns the rounds taken, or
    /// `None` if it did not settle.
    ///
    /// # Errors
    /// If the view refuses a decision or a range.
    pub fn run_until_idle(
        &mut self,
        rounds_max: usize,
        mut check: impl FnMut(&Model),
    ) -> Result<Option<usize>, ModelError> {
        for round in 0..rounds_max {
            let ready = self.tick_ready()?;
            check(self);
            let idle = ready.decisions.is_empty() && !ready.scan_limit_reached;
            if idle && self.view.operators().next().is_none() {
                return Ok(Some(round));
            }
            self.carry_out_steps()?;
            check(self);
        }
        Ok(None)
    }
}
