//! A few replicas in simulated time: every replica ticks once per round, and each message
//! takes the number of rounds a test's `delay` gives it (a slow snapshot stream, say) or is
//! dropped when the test's `drop` says so. Lockstep `Net` delivers everything at once, so it
//! never has messages in flight while a heartbeat goes round; this does.

use super::{Drive, Node};
use flotilla_raft::Message;
use std::collections::BTreeMap;

/// Replicas whose messages take time to arrive.
pub struct TimedNet {
    pub nodes: BTreeMap<u64, Node>,
    /// The current round.
    pub now: u64,
    /// Messages on the wire: (round due, order sent, message).
    wire: Vec<(u64, u64, Message)>,
    sent_count: u64,
    delay: Box<dyn Fn(&Message) -> u64>,
    drop: Box<dyn FnMut(&Message) -> bool>,
    /// Every message sent so far (dropped ones included), in order.
    pub sent: Vec<Message>,
}

impl TimedNet {
    /// Takes over `nodes` (set up in lockstep, say) with nothing on the wire.
    pub fn new(
        nodes: BTreeMap<u64, Node>,
        delay: impl Fn(&Message) -> u64 + 'static,
        drop: impl FnMut(&Message) -> bool + 'static,
    ) -> Self {
        Self {
            nodes,
            now: 0,
            wire: Vec::new(),
            sent_count: 0,
            delay: Box::new(delay),
            drop: Box::new(drop),
            sent: Vec::new(),
        }
    }

    /// One round: every replica ticks, then every message due is delivered (and what those
    /// deliveries send with no delay, too).
    pub fn round(&mut self) {
        self.now += 1;
        for node in self.nodes.values_mut() {
            node.tick();
        }
        self.collect();
        loop {
            let due: Vec<Message> = self.take_due();
            if due.is_empty() {
                return;
            }
            for message in due {
                if let Some(node) = self.nodes.get_mut(&message.to.0) {
                    // Errors are messages the replica chose to ignore.
                    let _ = node.step(message);
                }
            }
            self.collect();
        }
    }

    /// Runs `count` rounds, whatever happens.
    pub fn run(&mut self, count: u64) {
        for _ in 0..count {
            self.round();
        }
    }

    /// Runs rounds until `done` holds, at most `rounds_max`; returns how many it took.
    pub fn run_until(&mut self, rounds_max: u64, done: impl Fn(&Self) -> bool) -> u64 {
        for rounds in 1..=rounds_max {
            self.round();
            if done(self) {
                return rounds;
            }
        }
        panic!("not done after {rounds_max} rounds");
    }

    pub fn node(&self, id: u64) -> &Node {
        &self.nodes[&id]
    }

    fn take_due(&mut self) -> Vec<Message> {
        let now = self.now;
        let mut due: Vec<(u64, u64, Message)> = Vec::new();
        let mut index = 0;
        while index < self.wire.len() {
            if self.wire[index].0 <= now {
                due.push(self.wire.remove(index));
            } else {
                index += 1;
            }
        }
        due.sort_by_key(|(at, order, _)| (*at, *order));
        due.into_iter().map(|(_, _, message)| message).collect()
    }

    fn collect(&mut self) {
        for node in self.nodes.values_mut() {
            if !node.has_ready() {
                continue;
            }
            let ready = node.take();
            for message in ready.messages.into_iter().chain(ready.persisted_messages) {
                self.sent.push(message.clone());
                if (self.drop)(&message) {
                    continue;
                }
                let at = self.now + (self.delay)(&message);
                self.sent_count += 1;
                self.wire.push((at, self.sent_count, message));
            }
        }
    }
}
