//! Readiness, as a load balancer or a Kubernetes readiness probe asks it: every range this node
//! hosts has a leader, and this node has applied everything it knows committed.

use super::Snapshot;
use std::time::{Duration, Instant};

/// Whether the node is ready; when not, why, in a sentence (the body of the 503).
pub(crate) fn readiness(
    snapshot: Option<&Snapshot>,
    now: Instant,
    stale_after: Duration,
) -> Result<(), String> {
    let Some(snapshot) = snapshot else {
        return Err("starting: the node has not published its state yet".into());
    };
    let age = now.saturating_duration_since(snapshot.at);
    if age > stale_after {
        return Err(format!(
            "the node's driver has published nothing for {} ms (stuck or overloaded)",
            age.as_millis()
        ));
    }
    let observation = &snapshot.observation;
    if let Some(first) = observation.groups.without_leader.first() {
        return Err(format!(
            "{} of {} ranges hosted here have no leader ({first} first)",
            observation.groups.without_leader.len(),
            observation.groups.hosted
        ));
    }
    if let Some(first) = observation.groups.behind.first() {
        return Err(format!(
            "{} of {} ranges hosted here have not applied all they know committed ({first} first)",
            observation.groups.behind.len(),
            observation.groups.hosted
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{GroupsObservation, Observation};
    use flotilla_raft::GroupId;
    use std::sync::Arc;

    fn snapshot(observation: Observation, at: Instant) -> Snapshot {
        Snapshot {
            observation,
            transport: flotilla_transport_quic::CounterSnapshot::default(),
            queued: (0, 0),
            at,
            meta: Some(std::sync::Arc::new(super::super::one_node_meta())),
            samples: Vec::new(),
        }
    }

    #[test]
    fn ready_only_when_every_range_has_a_leader_and_is_applied() {
        let now = Instant::now();
        let stale = Duration::from_secs(2);
        let healthy = Observation {
            groups: Arc::new(GroupsObservation {
                hosted: 17,
                ..GroupsObservation::default()
            }),
            ..Observation::default()
        };
        assert!(readiness(None, now, stale).is_err());
        assert_eq!(
            readiness(Some(&snapshot(healthy.clone(), now)), now, stale),
            Ok(())
        );
        let leaderless = Observation {
            groups: Arc::new(GroupsObservation {
                hosted: 17,
                without_leader: vec![GroupId(3), GroupId(5)],
                ..GroupsObservation::default()
            }),
            ..healthy.clone()
        };
        let reason =
            readiness(Some(&snapshot(leaderless, now)), now, stale).expect_err("not ready");
        assert!(
            reason.starts_with("2 of 17 ranges hosted here have no leader"),
            "{reason}"
        );
        let behind = Observation {
            groups: Arc::new(GroupsObservation {
                hosted: 17,
                behind: vec![GroupId(4)],
                ..GroupsObservation::default()
            }),
            ..healthy.clone()
        };
        let reason = readiness(Some(&snapshot(behind, now)), now, stale).expect_err("not ready");
        assert!(reason.contains("not applied"), "{reason}");
        let old = snapshot(healthy, now);
        let later = now + Duration::from_secs(3);
        let reason = readiness(Some(&old), later, stale).expect_err("not ready");
        assert!(reason.contains("published nothing for 3000 ms"), "{reason}");
    }
}
