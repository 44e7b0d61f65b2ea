//! The driver's configuration: the replica count, when a silent node counts as gone, and every
//! limit on how much it may change at once (PD's schedule limits). Validated when the driver is
//! built, never later.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Everything the placement driver may not decide for itself. A node reads it from its
/// configuration's `[placement]` table, all but `replicas_per_range`, which is
/// `ranges.replicas`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlacementConfig {
    /// How many voters every range should have.
    #[serde(skip)]
    pub replicas_per_range: usize,
    /// How many voters the meta group keeps, on nodes that are up and live (every other node
    /// holds a learner of it): odd, 1 to 7; 3 or 5 in a real cluster (etcd's advice).
    pub meta_voters: usize,
    /// How long a node may be down (or silent) before its replicas are re-placed elsewhere:
    /// PD's `max-store-down-time`, 30 minutes by default. A removed node's replicas go at once.
    pub down_after_ms: u64,
    /// A node whose last heartbeat is older than this is not given new replicas or leaders.
    pub heartbeat_stale_ms: u64,
    /// Replica moves (adds, moves, removals) in flight that involve one node, as target or
    /// live source (PD's store limit).
    pub moves_per_node_max: usize,
    /// Replica moves in flight in the whole cluster (PD's `replica-schedule-limit`).
    pub moves_in_flight_max: usize,
    /// Leader transfers in flight that involve one node, from or to it.
    pub leader_transfers_per_node_max: usize,
    /// Leader transfers in flight in the whole cluster (PD's `leader-schedule-limit`).
    pub leader_transfers_in_flight_max: usize,
    /// How long any step may take before its operator is abandoned, not counting catch-up.
    pub step_timeout_ms: u64,
    /// The slowest catch-up (snapshot, then log) a new replica is allowed: a step that must
    /// copy a range gets `size_bytes / catch_up_bytes_per_second_min` on top of the timeout.
    pub catch_up_bytes_per_second_min: u64,
    /// With load reported, leaders move only while a node's leader load exceeds the other's
    /// by more than the range's load plus this percentage of the mean.
    pub leader_load_tolerance_percent: u64,
    /// How many ranges one tick may examine to find candidates: the bound on its work.
    pub ranges_scanned_per_tick_max: usize,
}

impl Default for PlacementConfig {
    fn default() -> Self {
        Self {
            replicas_per_range: 3,
            meta_voters: 3,
            down_after_ms: 30 * 60 * 1000,
            heartbeat_stale_ms: 10_000,
            moves_per_node_max: 4,
            moves_in_flight_max: 64,
            leader_transfers_per_node_max: 4,
            leader_transfers_in_flight_max: 16,
            step_timeout_ms: 60_000,
            catch_up_bytes_per_second_min: 8 << 20,
            leader_load_tolerance_percent: 10,
            ranges_scanned_per_tick_max: 4096,
        }
    }
}

/// Why a placement configuration was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PlacementConfigError {
    /// `replicas_per_range` is zero.
    #[error("a range needs at least one replica, but replicas_per_range is 0")]
    NoReplicas,
    /// `meta_voters` is even, zero or above 7.
    #[error(
        "meta_voters must be odd and between 1 and 7 (3 or 5 in a real cluster), but it is \
         {0}"
    )]
    MetaVoters(usize),
    /// A duration that must be positive is zero.
    #[error("{0} must be more than 0 ms")]
    ZeroDuration(&'static str),
    /// Nodes would be declared gone before they are merely stale.
    #[error(
        "heartbeat_stale_ms ({stale_ms}) must not exceed down_after_ms ({down_ms}): a node is \
         stale before it is down"
    )]
    StaleAfterDown {
        /// `heartbeat_stale_ms`.
        stale_ms: u64,
        /// `down_after_ms`.
        down_ms: u64,
    },
    /// A limit is zero, so the driver could never act.
    #[error("{0} must be at least 1, or the driver could never act")]
    ZeroLimit(&'static str),
    /// A per-node limit exceeds the cluster-wide one it is part of.
    #[error("{per_node} ({per_node_max}) must not exceed {total} ({total_max})")]
    PerNodeAboveTotal {
        /// The per-node limit's name.
        per_node: &'static str,
        /// Its value.
        per_node_max: usize,
        /// The cluster-wide limit's name.
        total: &'static str,
        /// Its value.
        total_max: usize,
    },
}

impl PlacementConfig {
    /// Checks every field and the relations between them.
    ///
    /// # Errors
    /// The first rule the configuration breaks, as a sentence.
    pub fn validate(&self) -> Result<(), PlacementConfigError> {
        if self.replicas_per_range == 0 {
            return Err(PlacementConfigError::NoReplicas);
        }
        if self.meta_voters.is_multiple_of(2) || self.meta_voters > 7 {
            return Err(PlacementConfigError::MetaVoters(self.meta_voters));
        }
        check_durations(self)?;
        check_limits(self)?;
        Ok(())
    }

    /// How long a step may take on a range of `size_bytes` before it is abandoned; a step that
    /// copies data (adding a learner, promoting it once caught up) gets catch-up time on top.
    #[must_use]
    pub fn step_timeout_for(&self, copies_data: bool, size_bytes: u64) -> u64 {
        if !copies_data {
            return self.step_timeout_ms;
        }
        let catch_up_ms = size_bytes.saturating_mul(1000) / self.catch_up_bytes_per_second_min;
        self.step_timeout_ms.saturating_add(catch_up_ms)
    }
}

fn check_durations(config: &PlacementConfig) -> Result<(), PlacementConfigError> {
    let durations = [
        ("down_after_ms", config.down_after_ms),
        ("heartbeat_stale_ms", config.heartbeat_stale_ms),
        ("step_timeout_ms", config.step_timeout_ms),
    ];
    if let Some((name, _)) = durations.iter().find(|(_, value)| *value == 0) {
        return Err(PlacementConfigError::ZeroDuration(name));
    }
    if config.heartbeat_stale_ms > config.down_after_ms {
        return Err(PlacementConfigError::StaleAfterDown {
            stale_ms: config.heartbeat_stale_ms,
            down_ms: config.down_after_ms,
        });
    }
    Ok(())
}

fn check_limits(config: &PlacementConfig) -> Result<(), PlacementConfigError> {
    let limits = [
        ("moves_per_node_max", config.moves_per_node_max),
        ("moves_in_flight_max", config.moves_in_flight_max),
        (
            "leader_transfers_per_node_max",
            config.leader_transfers_per_node_max,
        ),
        (
            "leader_transfers_in_flight_max",
            config.leader_transfers_in_flight_max,
        ),
        (
            "ranges_scanned_per_tick_max",
            config.ranges_scanned_per_tick_max,
        ),
    ];
    if let Some((name, _)) = limits.iter().find(|(_, value)| *value == 0) {
        return Err(PlacementConfigError::ZeroLimit(name));
    }
    if config.catch_up_bytes_per_second_min == 0 {
        return Err(PlacementConfigError::ZeroLimit(
            "catch_up_bytes_per_second_min",
        ));
    }
    per_node_within_total(
        ("moves_per_node_max", config.moves_per_node_max),
        ("moves_in_flight_max", config.moves_in_flight_max),
    )?;
    per_node_within_total(
        (
            "leader_transfers_per_node_max",
            config.leader_transfers_per_node_max,
        ),
        (
            "leader_transfers_in_flight_max",
            config.leader_transfers_in_flight_max,
        ),
    )
}

fn per_node_within_total(
    (per_node, per_node_max): (&'static str, usize),
    (total, total_max): (&'static str, usize),
) -> Result<(), PlacementConfigError> {
    if per_node_max > total_max {
        return Err(PlacementConfigError::PerNodeAboveTotal {
            per_node,
            per_node_max,
            total,
            total_max,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_configuration_is_valid() {
        assert_eq!(PlacementConfig::default().validate(), Ok(()));
    }

    #[test]
    fn zero_replicas_is_refused() {
        let config = PlacementConfig {
            replicas_per_range: 0,
            ..PlacementConfig::default()
        };
        assert_eq!(config.validate(), Err(PlacementConfigError::NoReplicas));
    }

    #[test]
    fn the_meta_group_takes_an_odd_number_of_voters_up_to_7() {
        for (meta_voters, valid) in [(0, false), (1, true), (2, false), (5, true), (9, false)] {
            let config = PlacementConfig {
                meta_voters,
                ..PlacementConfig::default()
            };
            let expected = if valid {
                Ok(())
            } else {
                Err(PlacementConfigError::MetaVoters(meta_voters))
            };
            assert_eq!(config.validate(), expected, "meta_voters = {meta_voters}");
        }
    }

    #[test]
    fn zero_limits_and_durations_are_refused_by_name() {
        let config = PlacementConfig {
            moves_in_flight_max: 0,
            ..PlacementConfig::default()
        };
        let error = config.validate().err();
        assert_eq!(
            error,
            Some(PlacementConfigError::ZeroLimit("moves_in_flight_max"))
        );
        let config = PlacementConfig {
            down_after_ms: 0,
            ..PlacementConfig::default()
        };
        let message = config.validate().err().map(|error| error.to_string());
        assert_eq!(
            message.as_deref(),
            Some("down_after_ms must be more than 0 ms")
        );
    }

    #[test]
    fn a_per_node_limit_above_the_total_is_refused() {
        let config = PlacementConfig {
            moves_per_node_max: 100,
            ..PlacementConfig::default()
        };
        let message = config.validate().err().map(|error| error.to_string());
        assert_eq!(
            message.as_deref(),
            Some("moves_per_node_max (100) must not exceed moves_in_flight_max (64)")
        );
    }

    #[test]
    fn stale_must_come_before_down() {
        let config = PlacementConfig {
            heartbeat_stale_ms: 10,
            down_after_ms: 5,
            ..PlacementConfig::default()
        };
        assert!(matches!(
            config.validate(),
            Err(PlacementConfigError::StaleAfterDown { .. })
        ));
    }

    #[test]
    fn catch_up_time_is_added_only_to_steps_that_copy_data() {
        let config = PlacementConfig {
            step_timeout_ms: 1000,
            catch_up_bytes_per_second_min: 1 << 20,
            ..PlacementConfig::default()
        };
        assert_eq!(config.step_timeout_for(false, 10 << 20), 1000);
        assert_eq!(config.step_timeout_for(true, 10 << 20), 11_000);
    }
}
