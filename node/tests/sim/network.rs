//! The simulated network between nodes and between clients and nodes: each message is delayed
//! (with rare spikes), lost, duplicated or reordered as the seed's swarm says, and links between
//! nodes can be cut (both ways or one way). Clients are never partitioned from nodes, only
//! subject to loss and delay.

use flotilla_raft::NodeId;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;

/// What the wire does to messages.
#[derive(Clone, Debug)]
pub struct WireFaults {
    /// Percent of messages lost.
    pub drop_percent: u32,
    /// Percent of messages delivered twice.
    pub duplicate_percent: u32,
    /// Delays lie in [1, delay_ms_max] ms.
    pub delay_ms_max: u64,
    /// Percent of messages delayed by a spike of up to `spike_ms_max` (reordering them).
    pub spike_percent: u32,
    /// The longest spike.
    pub spike_ms_max: u64,
}

impl WireFaults {
    /// A reliable network: one millisecond, nothing lost.
    pub fn reliable() -> Self {
        Self {
            drop_percent: 0,
            duplicate_percent: 0,
            delay_ms_max: 1,
            spike_percent: 0,
            spike_ms_max: 0,
        }
    }
}

/// The links between nodes and their faults.
#[derive(Debug)]
pub struct Network {
    pub faults: WireFaults,
    /// (from, to) pairs that drop everything.
    cut: BTreeSet<(NodeId, NodeId)>,
}

impl Network {
    pub fn new(faults: WireFaults) -> Self {
        Self {
            faults,
            cut: BTreeSet::new(),
        }
    }

    /// The delays (one per copy; none when lost) of a message between `from` and `to` (nodes;
    /// `None` for a client's end).
    pub fn delays(
        &self,
        from: Option<NodeId>,
        to: Option<NodeId>,
        rng: &mut ChaCha8Rng,
    ) -> Vec<u64> {
        if let (Some(from), Some(to)) = (from, to)
            && self.cut.contains(&(from, to))
        {
            return Vec::new();
        }
        let faults = &self.faults;
        if rng.random_range(0..100) < faults.drop_percent {
            return Vec::new();
        }
        let copies = if rng.random_range(0..100) < faults.duplicate_percent {
            2
        } else {
            1
        };
        (0..copies)
            .map(|_| {
                let mut delay = rng.random_range(1..=faults.delay_ms_max.max(1));
                if rng.random_range(0..100) < faults.spike_percent {
                    delay += rng.random_range(0..=faults.spike_ms_max);
                }
                delay
            })
            .collect()
    }

    /// Cuts every link between the groups of `sides` (both ways).
    pub fn partition(&mut self, sides: &[Vec<NodeId>]) {
        for (i, left) in sides.iter().enumerate() {
            for right in sides.iter().skip(i + 1) {
                for &a in left {
                    for &b in right {
                        self.cut.insert((a, b));
                        self.cut.insert((b, a));
                    }
                }
            }
        }
    }

    /// Cuts the link from `from` to `to` only.
    pub fn cut_one_way(&mut self, from: NodeId, to: NodeId) {
        self.cut.insert((from, to));
    }

    /// Heals every cut.
    pub fn heal(&mut self) {
        self.cut.clear();
    }
}
