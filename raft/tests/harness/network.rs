//! The simulated network: who can reach whom, and what the wire does to messages (loss,
//! duplication, delay, reordering). Every random choice comes from the cluster's seed.

use flotilla_raft::{Message, MessageBody, NodeId};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;

/// What the wire does to every message.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Percent of messages lost.
    pub drop_percent: u32,
    /// Percent of messages delivered twice.
    pub duplicate_percent: u32,
    /// Delay range in milliseconds, uniform.
    pub delay_ms_min: u64,
    /// Upper bound (inclusive) of the delay.
    pub delay_ms_max: u64,
    /// 6.5840's "long reordering": two of three replies wait 200-2200 ms.
    pub long_reordering: bool,
}

impl Faults {
    /// A reliable network with a 1-5 ms delay.
    pub fn reliable() -> Self {
        Self {
            delay_ms_min: 1,
            delay_ms_max: 5,
            ..Self::default()
        }
    }

    /// 6.5840's unreliable network: 10% loss, 0-27 ms delay.
    pub fn unreliable() -> Self {
        Self {
            drop_percent: 10,
            delay_ms_min: 0,
            delay_ms_max: 27,
            ..Self::default()
        }
    }
}

/// Counters of what was sent, for the message-economy tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Messages handed to the network (before loss).
    pub messages: u64,
    /// Payload bytes of entries carried in AppendEntries.
    pub entry_bytes: u64,
}

/// The network between the replicas of one cluster.
#[derive(Debug)]
pub struct Network {
    disconnected: BTreeSet<NodeId>,
    cut: BTreeSet<(NodeId, NodeId)>,
    /// The current fault profile.
    pub faults: Faults,
    /// What has been sent so far.
    pub counters: Counters,
}

impl Network {
    pub fn new(faults: Faults) -> Self {
        Self {
            disconnected: BTreeSet::new(),
            cut: BTreeSet::new(),
            faults,
            counters: Counters::default(),
        }
    }

    /// Takes `node` off the network (6.5840 `disconnect`).
    pub fn disconnect(&mut self, node: NodeId) {
        self.disconnected.insert(node);
    }

    /// Puts `node` back (6.5840 `connect`).
    pub fn connect(&mut self, node: NodeId) {
        self.disconnected.remove(&node);
    }

    /// Whether `node` is on the network.
    pub fn is_connected(&self, node: NodeId) -> bool {
        !self.disconnected.contains(&node)
    }

    /// Drops everything from `source` to `target` (one way).
    pub fn cut_one_way(&mut self, source: NodeId, target: NodeId) {
        self.cut.insert((source, target));
    }

    /// Drops everything between `a` and `b`.
    pub fn cut(&mut self, a: NodeId, b: NodeId) {
        self.cut_one_way(a, b);
        self.cut_one_way(b, a);
    }

    /// Splits the nodes into groups that only reach their own group.
    pub fn partition(&mut self, groups: &[Vec<NodeId>]) {
        for (i, group_a) in groups.iter().enumerate() {
            for group_b in groups.iter().skip(i + 1) {
                for &a in group_a {
                    for &b in group_b {
                        self.cut(a, b);
                    }
                }
            }
        }
    }

    /// Removes every cut and reconnects every node.
    pub fn heal(&mut self) {
        self.cut.clear();
        self.disconnected.clear();
    }

    /// Whether a message from `source` can reach `target` now.
    pub fn can_deliver(&self, source: NodeId, target: NodeId) -> bool {
        self.is_connected(source)
            && self.is_connected(target)
            && !self.cut.contains(&(source, target))
    }

    /// The delivery delays (ms) for one message: empty if it is lost, two if duplicated.
    pub fn transmit(&mut self, message: &Message, rng: &mut ChaCha8Rng) -> Vec<u64> {
        self.count(message);
        if !self.can_deliver(message.from, message.to) {
            return Vec::new();
        }
        if rng.random_range(0..100) < self.faults.drop_percent {
            return Vec::new();
        }
        let copies = if rng.random_range(0..100) < self.faults.duplicate_percent {
            2
        } else {
            1
        };
        let reply = is_reply(&message.body);
        (0..copies).map(|_| self.delay(rng, reply)).collect()
    }

    fn delay(&self, rng: &mut ChaCha8Rng, reply: bool) -> u64 {
        let faults = &self.faults;
        // labrpc's long reordering holds back replies only: 200 + rand(1 + rand(2000)) ms.
        if reply && faults.long_reordering && rng.random_range(0..900) < 600 {
            let spread = rng.random_range(0..2000);
            return 200 + rng.random_range(0..=spread);
        }
        rng.random_range(faults.delay_ms_min..=faults.delay_ms_max.max(faults.delay_ms_min))
    }

    fn count(&mut self, message: &Message) {
        self.counters.messages += 1;
        if let MessageBody::AppendEntries { entries, .. } = &message.body {
            self.counters.entry_bytes += entries
                .iter()
                .map(|entry| entry.payload_bytes())
                .sum::<u64>();
        }
    }
}

/// Whether a message answers another (6.5840 delays only these under long reordering).
fn is_reply(body: &MessageBody) -> bool {
    matches!(
        body,
        MessageBody::VoteResponse { .. }
            | MessageBody::AppendResponse(_)
            | MessageBody::HeartbeatResponse { .. }
            | MessageBody::SnapshotResponse { .. }
    )
}
