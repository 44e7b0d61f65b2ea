//! A few replicas in lockstep (etcd-io/raft's `network`): nothing happens until a test ticks a
//! replica or calls `stabilize`, which delivers every message until the replicas fall quiet.
//! Links can be cut, replicas isolated, and messages of one kind dropped.

use super::{Drive, Node, bootstrapped, config, node_over, voters};
use flotilla_raft::{Config, LogIndex, MemLog, Message, RaftNode, Role, Term};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Replicas wired together in lockstep.
pub struct Net {
    config_of: Box<dyn Fn(u64) -> Config>,
    pub nodes: BTreeMap<u64, Node>,
    cut: BTreeSet<(u64, u64)>,
    drop_if: Option<fn(&Message) -> bool>,
    queue: VecDeque<Message>,
    /// Every message delivered so far, in order.
    pub delivered: Vec<Message>,
}

impl Net {
    /// A new group of `ids`, each replica with the default configuration.
    pub fn new(ids: &[u64]) -> Self {
        Self::with_config(ids, config)
    }

    /// The same with a configuration per replica.
    pub fn with_config(ids: &[u64], config_of: impl Fn(u64) -> Config + 'static) -> Self {
        let mut net = Self {
            config_of: Box::new(config_of),
            nodes: BTreeMap::new(),
            cut: BTreeSet::new(),
            drop_if: None,
            queue: VecDeque::new(),
            delivered: Vec::new(),
        };
        for &id in ids {
            let node = node_over((net.config_of)(id), bootstrapped(voters(ids)));
            net.nodes.insert(id, node);
        }
        net
    }

    /// Group 1-2-3 where 3 was cut off from the start and 1 compacted its log at 6, into
    /// `snapshot`, after writing entries 2-6; 3 is reconnected but has heard nothing yet.
    /// Every replica runs the default configuration with chunks of 4 bytes, then `configure`.
    pub fn with_3_behind_the_snapshot(
        snapshot: &[u8],
        configure: impl Fn(Config) -> Config + 'static,
    ) -> Self {
        let mut net = Self::with_config(&[1, 2, 3], move |id| {
            configure(Config {
                snapshot_chunk_bytes: 4,
                ..config(id)
            })
        });
        net.isolate(3);
        net.campaign(1);
        for index in 2..=6 {
            net.propose(1, format!("1/{index}").as_bytes());
        }
        net.node_mut(1)
            .compact(LogIndex(6), snapshot.to_vec())
            .unwrap();
        net.stabilize();
        net.recover();
        net
    }

    /// Adds a replica with an empty store, waiting for a leader to contact it.
    pub fn add_empty(&mut self, id: u64) {
        let node = RaftNode::new((self.config_of)(id), MemLog::new()).unwrap();
        self.nodes.insert(id, node);
    }

    pub fn node(&self, id: u64) -> &Node {
        &self.nodes[&id]
    }

    pub fn node_mut(&mut self, id: u64) -> &mut Node {
        self.nodes.get_mut(&id).unwrap()
    }

    /// Drops every message between `a` and `b`.
    pub fn cut(&mut self, a: u64, b: u64) {
        self.cut.insert((a, b));
        self.cut.insert((b, a));
    }

    /// Cuts `id` off from every other replica.
    pub fn isolate(&mut self, id: u64) {
        let others: Vec<u64> = self
            .nodes
            .keys()
            .copied()
            .filter(|&other| other != id)
            .collect();
        for other in others {
            self.cut(id, other);
        }
    }

    /// Drops every message for which `filter` holds, until `recover`.
    pub fn drop_messages(&mut self, filter: fn(&Message) -> bool) {
        self.drop_if = Some(filter);
    }

    /// Heals every cut and stops dropping messages.
    pub fn recover(&mut self) {
        self.cut.clear();
        self.drop_if = None;
    }

    /// Ticks `id` once and delivers what follows.
    pub fn tick(&mut self, id: u64) {
        self.node_mut(id).tick();
        self.stabilize();
    }

    /// Ticks every replica once, `rounds` times, delivering everything after each round.
    pub fn tick_all(&mut self, rounds: u64) {
        for _ in 0..rounds {
            let ids: Vec<u64> = self.nodes.keys().copied().collect();
            for id in ids {
                self.node_mut(id).tick();
            }
            self.stabilize();
        }
    }

    /// Ticks `id` alone until its election timer fires, then delivers everything.
    pub fn campaign(&mut self, id: u64) {
        let _ = self.node_mut(id).tick_until_campaign();
        self.stabilize();
    }

    /// Proposes `data` at `id`, which must be the leader, and delivers everything.
    pub fn propose(&mut self, id: u64, data: &[u8]) -> LogIndex {
        let index = self.node_mut(id).propose(data.to_vec()).unwrap();
        self.stabilize();
        index
    }

    /// Processes every ready and delivers every message until nothing moves.
    pub fn stabilize(&mut self) {
        for _ in 0..100_000 {
            self.collect_ready();
            let Some(message) = self.queue.pop_front() else {
                return;
            };
            self.deliver(message);
        }
        panic!("the replicas never fell quiet");
    }

    fn collect_ready(&mut self) {
        for (&id, node) in &mut self.nodes {
            if !node.has_ready() {
                continue;
            }
            let ready = node.take();
            let sent = ready.messages.into_iter().chain(ready.persisted_messages);
            for message in sent {
                let cut = self.cut.contains(&(id, message.to.0));
                let dropped = self.drop_if.is_some_and(|filter| filter(&message));
                if !cut && !dropped {
                    self.queue.push_back(message);
                }
            }
        }
    }

    fn deliver(&mut self, message: Message) {
        let Some(node) = self.nodes.get_mut(&message.to.0) else {
            return;
        };
        // Errors are messages the replica chose to ignore (e.g. from a removed replica).
        let _ = node.step(message.clone());
        self.delivered.push(message);
    }

    /// The replica that leads the highest term, if any.
    pub fn leader(&self) -> Option<u64> {
        self.nodes
            .iter()
            .filter(|(_, node)| node.role() == Role::Leader)
            .max_by_key(|(_, node)| node.term())
            .map(|(&id, _)| id)
    }

    /// Every replica's term.
    pub fn terms(&self) -> BTreeMap<u64, Term> {
        self.nodes
            .iter()
            .map(|(&id, node)| (id, node.term()))
            .collect()
    }

    /// Every replica's commit index.
    pub fn committed(&self) -> BTreeMap<u64, u64> {
        self.nodes
            .iter()
            .map(|(&id, node)| (id, node.log().committed().0))
            .collect()
    }
}
