//! Three MultiRaft nodes in one process, with no IO: batches are handed over directly and every
//! store is a `MemLog`, so the Raft layer's costs are measured alone. Used by
//! `benches/multiraft_heartbeat.rs` (idle groups), `benches/multiraft_spread.rs` and
//! `examples/spread_count.rs` (puts spread over 1 or many groups; criterion times them, the
//! example runs a fixed number of rounds for an instruction count under callgrind).

use flotilla_raft::{
    Batch, GroupId, MemLog, Membership, MultiConfig, MultiRaft, NodeId, Persist, Role,
};

const INFALLIBLE: &str = "in-memory groups do not fail";

/// Puts proposed per `round`.
pub const PUTS_PER_ROUND: usize = 64;

/// Three nodes hosting `groups` groups, all led by node 1.
pub struct Nodes {
    /// Node `n` is `multis[n - 1]`.
    pub multis: Vec<MultiRaft<MemLog>>,
    groups: u64,
}

impl Nodes {
    /// Three nodes, each configured by `config`, hosting `groups` groups of three replicas,
    /// every group led by node 1 (only node 1 ticks until it leads them all).
    #[must_use]
    pub fn new(groups: u64, config: impl Fn(NodeId) -> MultiConfig) -> Self {
        let membership = Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]);
        let multis = (1..=3)
            .map(|id| {
                let mut multi = MultiRaft::new(config(NodeId(id)));
                for group in 1..=groups {
                    let mut store = MemLog::new();
                    store.persist(&Persist::bootstrap(membership.clone()));
                    multi.create_group(GroupId(group), store).expect(INFALLIBLE);
                }
                multi
            })
            .collect();
        let mut nodes = Self { multis, groups };
        while !(1..=groups).all(|group| {
            nodes.multis[0]
                .group(GroupId(group))
                .expect(INFALLIBLE)
                .role()
                == Role::Leader
        }) {
            nodes.multis[0].tick();
            nodes.settle();
        }
        nodes
    }

    /// Every node's ready cycles, and the batches they produce, until nothing is left.
    pub fn settle(&mut self) {
        self.settle_observing(|_| {});
    }

    /// `settle`, showing `observe` every batch before it is delivered.
    pub fn settle_observing(&mut self, mut observe: impl FnMut(&Batch)) {
        loop {
            let mut inbox: Vec<Batch> = Vec::new();
            for multi in &mut self.multis {
                while multi.has_ready() {
                    let mut ready = multi.ready();
                    for (group, group_ready) in &ready.groups {
                        multi
                            .store_mut(*group)
                            .expect(INFALLIBLE)
                            .persist(&group_ready.persist);
                    }
                    inbox.append(&mut ready.batches);
                    inbox.append(&mut ready.persisted_batches);
                    multi.advance(ready);
                }
            }
            if inbox.is_empty() {
                return;
            }
            for batch in inbox {
                observe(&batch);
                let target = (batch.to.0 - 1) as usize;
                self.multis[target].step_batch(batch).expect(INFALLIBLE);
            }
        }
    }

    /// Proposes `PUTS_PER_ROUND` entries round-robin over the groups and commits them.
    pub fn round(&mut self, payload: &[u8]) {
        for put in 0..PUTS_PER_ROUND as u64 {
            let group = GroupId(1 + put % self.groups);
            self.multis[0]
                .propose(group, payload.to_vec())
                .expect(INFALLIBLE);
        }
        self.settle();
    }

    /// Keeps the in-memory logs short (a node snapshots too, less often): a long log would
    /// measure cache misses and one large compaction instead of the commit path.
    pub fn compact(&mut self) {
        for multi in &mut self.multis {
            for group in 1..=self.groups {
                let group = GroupId(group);
                let applied = multi.group(group).expect(INFALLIBLE).log().applied();
                if applied.0 > 1_000 {
                    multi.compact(group, applied, Vec::new()).expect(INFALLIBLE);
                }
            }
        }
    }
}
