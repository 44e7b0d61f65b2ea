//! The limits of a MultiRaft host, validated when it is built.

use crate::config::{Config, ConfigError};
use crate::types::{GroupId, Incarnation, NodeId};

/// How one node hosts its groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultiConfig {
    /// This node.
    pub node: NodeId,
    /// The template every group replica is built from (its `id` is replaced by `node`).
    pub raft: Config,
    /// The coalesced heartbeat goes to every peer node every this many ticks.
    pub heartbeat_interval_ticks: u64,
    /// A peer node that this node sends nothing else gets an empty batch, its liveness
    /// signal, every this many heartbeat intervals (a peer that this node leads active groups
    /// with gets their heartbeats every interval). At least two such batches must fit in the
    /// node timeout, so that no single late one makes this node look down.
    pub liveness_every_heartbeats: u64,
    /// A peer node not heard from for this many ticks counts as down: the groups it led
    /// wake up and elect a new leader.
    pub node_timeout_ticks: u64,
    /// The most groups this node may host.
    pub groups_max: usize,
    /// Whether idle groups stop ticking.
    pub quiesce: bool,
    /// This process: its data directory and start, named in every batch it sends.
    pub incarnation: Incarnation,
    /// The most payload bytes of committed entries one `ready()` hands out over all groups
    /// (each group with entries to apply gets at least one): the rest follow in the next
    /// ready, so a restart or a replica far behind never holds its backlog in memory whole.
    pub apply_bytes_per_ready: u64,
}

impl MultiConfig {
    /// Defaults for `node`: the group defaults, heartbeats every 2 ticks, a peer is down
    /// after 10 silent ticks.
    #[must_use]
    pub fn new(node: NodeId) -> Self {
        Self {
            node,
            raft: Config::new(node),
            heartbeat_interval_ticks: 2,
            liveness_every_heartbeats: 1,
            node_timeout_ticks: 10,
            groups_max: 100_000,
            quiesce: true,
            incarnation: Incarnation::default(),
            apply_bytes_per_ready: 16 << 20,
        }
    }

    /// How often an idle peer gets its liveness batch, in ticks.
    #[must_use]
    pub fn liveness_interval_ticks(&self) -> u64 {
        self.heartbeat_interval_ticks
            .saturating_mul(self.liveness_every_heartbeats)
    }

    /// The configuration of this node's replica of `group`.
    #[must_use]
    pub fn group_config(&self, group: GroupId) -> Config {
        Config {
            id: self.node,
            group,
            rng_seed: self.raft.rng_seed ^ group.0.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            coalesced_heartbeats: true,
            ..self.raft.clone()
        }
    }

    /// Checks every relation between the limits.
    ///
    /// # Errors
    /// The first relation that does not hold, as a sentence.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.group_config(GroupId(0)).validate()?;
        let error = |reason: &'static str| Err(ConfigError(reason));
        if self.heartbeat_interval_ticks == 0 {
            return error("the node heartbeat interval must be at least one tick");
        }
        if self.heartbeat_interval_ticks >= self.raft.election_timeout_ticks_min {
            return error("the node heartbeat interval must be shorter than the election timeout");
        }
        if self.node_timeout_ticks <= self.heartbeat_interval_ticks {
            return error("the node timeout must be longer than the heartbeat interval");
        }
        if self.liveness_every_heartbeats == 0 {
            return error("an idle peer must get a liveness batch every one or more heartbeats");
        }
        if self.node_timeout_ticks < 2 * self.liveness_interval_ticks() {
            return error("the node timeout must hold at least two liveness intervals");
        }
        // A follower woken by its leader's silence votes at once; any lease the leader still
        // counts on that follower has run out by then only if the node timeout is at least the
        // minimum election timeout.
        if self.node_timeout_ticks < self.raft.election_timeout_ticks_min {
            return error("the node timeout must be at least the minimum election timeout");
        }
        if self.groups_max == 0 {
            return error("a node must be allowed to host at least one group");
        }
        if self.apply_bytes_per_ready == 0 {
            return error("a ready must be allowed to hand out at least one byte of entries");
        }
        Ok(())
    }
}
