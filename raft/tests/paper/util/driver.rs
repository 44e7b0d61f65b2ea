//! Drives one replica by hand: build it over a `MemLog`, tick it, step a message, and take the
//! `Ready` it produces (persisting it into the store and advancing, as a caller would).

use flotilla_raft::{
    Config, Entry, EntryPayload, HardState, LogId, LogIndex, MemLog, Membership, Message,
    MessageBody, NodeId, Persist, RaftNode, Ready, Role, Term,
};

/// A replica of the tests.
pub type Node = RaftNode<MemLog>;

/// The default configuration of replica `id`: elections after 10-20 ticks, heartbeats every 2,
/// pre-vote and check-quorum on.
pub fn config(id: u64) -> Config {
    Config::new(NodeId(id))
}

/// A simple membership of voters.
pub fn voters(ids: &[u64]) -> Membership {
    Membership::with_voters(ids.iter().copied().map(NodeId))
}

/// A store bootstrapped with `membership`, as a new group's first replicas start.
pub fn bootstrapped(membership: Membership) -> MemLog {
    let mut store = MemLog::new();
    store.persist(&Persist::bootstrap(membership));
    store
}

/// A bootstrapped store that already holds entries of the given terms (indexes 1, 2, ...),
/// the hard state `(term, commit)` and no vote.
pub fn store_with_log(membership: Membership, terms: &[u64], term: u64, commit: u64) -> MemLog {
    let mut store = bootstrapped(membership);
    let entries = terms
        .iter()
        .zip(1..)
        .map(|(&entry_term, index)| entry(entry_term, index))
        .collect();
    store.persist(&Persist {
        entries,
        hard_state: Some(hard_state(term, None, commit)),
        ..Persist::default()
    });
    store
}

/// Replica `id` of a new group of `voter_ids`.
pub fn node(id: u64, voter_ids: &[u64]) -> Node {
    node_over(config(id), bootstrapped(voters(voter_ids)))
}

/// A replica with `config` over `store`.
pub fn node_over(config: Config, store: MemLog) -> Node {
    RaftNode::new(config, store).unwrap()
}

/// A normal entry; its payload names its position so mix-ups show in failures.
pub fn entry(term: u64, index: u64) -> Entry {
    Entry {
        term: Term(term),
        index: LogIndex(index),
        payload: EntryPayload::Normal(format!("{term}/{index}").into_bytes().into()),
    }
}

/// The blank entry a new leader appends.
pub fn blank(term: u64, index: u64) -> Entry {
    Entry {
        term: Term(term),
        index: LogIndex(index),
        payload: EntryPayload::Blank,
    }
}

/// A log id.
pub fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(Term(term), LogIndex(index))
}

/// A hard state.
pub fn hard_state(term: u64, vote: Option<u64>, commit: u64) -> HardState {
    HardState {
        term: Term(term),
        vote: vote.map(NodeId),
        commit: LogIndex(commit),
    }
}

/// What the tests do to a replica, in the order `Ready` documents.
pub trait Drive {
    /// Ticks `count` times, taking (and discarding) the ready after each tick.
    fn ticks(&mut self, count: u64);
    /// Steps a message that must be accepted.
    fn deliver(&mut self, message: Message);
    /// Takes the ready, persists it into the store, and advances; returns what it held.
    fn take(&mut self) -> Ready;
    /// Ticks until the replica leaves the follower role; returns how many ticks that took.
    fn tick_until_campaign(&mut self) -> u64;
    /// The term as a number.
    fn term_number(&self) -> u64;
    /// The entries the store holds.
    fn stored_entries(&mut self) -> Vec<Entry>;
}

impl Drive for Node {
    fn ticks(&mut self, count: u64) {
        for _ in 0..count {
            self.tick();
            let _ = self.take();
        }
    }

    fn deliver(&mut self, message: Message) {
        self.step(message).unwrap();
    }

    fn take(&mut self) -> Ready {
        let ready = self.ready();
        self.store_mut().persist(&ready.persist);
        let copy = ready.clone();
        self.advance(ready);
        copy
    }

    fn tick_until_campaign(&mut self) -> u64 {
        for ticks in 1..=1000 {
            self.tick();
            if self.role() != Role::Follower {
                return ticks;
            }
        }
        panic!("{} never campaigned", self.id());
    }

    fn term_number(&self) -> u64 {
        self.term().0
    }

    fn stored_entries(&mut self) -> Vec<Entry> {
        self.store_mut().all_entries().to_vec()
    }
}

/// Makes `node` leader: it times out, and every vote it asks for (pre-vote and real) is
/// granted. Returns the ready that follows the win (the blank entry and its AppendEntries).
pub fn elect(node: &mut Node) -> Ready {
    node.tick_until_campaign();
    for _ in 0..4 {
        let ready = node.take();
        if node.role() == Role::Leader {
            return ready;
        }
        for request in &ready.persisted_messages {
            if let MessageBody::RequestVote { pre_vote, .. } = request.body {
                let body = MessageBody::VoteResponse {
                    pre_vote,
                    granted: true,
                    commit: LogId::default(),
                };
                node.deliver(super::message(
                    request.to.0,
                    request.from.0,
                    request.term.0,
                    body,
                ));
            }
        }
    }
    panic!("{} did not win with every vote granted", node.id());
}

/// Replica `id` of `voter_ids`, elected leader in term 1, its blank entry (index 1) persisted
/// but acknowledged by nobody.
pub fn new_leader(id: u64, voter_ids: &[u64]) -> Node {
    let mut leader = node(id, voter_ids);
    let _ = elect(&mut leader);
    leader
}

/// The same, with every follower having acknowledged the blank entry: the leader committed in
/// its term and every follower replicates.
pub fn settled_leader(id: u64, voter_ids: &[u64]) -> Node {
    let mut leader = new_leader(id, voter_ids);
    let last = leader.log().last_index().0;
    let term = leader.term_number();
    for &follower in voter_ids.iter().filter(|&&other| other != id) {
        leader.deliver(super::accepted(follower, id, term, last));
    }
    let _ = leader.take();
    leader
}

/// A follower of `voter_ids` that heard leader `leader_id` in `term` (ready taken).
pub fn follower_of(id: u64, voter_ids: &[u64], leader_id: u64, term: u64) -> Node {
    let mut follower = node(id, voter_ids);
    follower.deliver(super::heartbeat(leader_id, id, term, 0, 0));
    let _ = follower.take();
    follower
}

/// The messages of a ready addressed to `to`: those that may leave before its write, then
/// those that leave after.
pub fn to(ready: &Ready, to: u64) -> Vec<Message> {
    ready
        .messages
        .iter()
        .chain(&ready.persisted_messages)
        .filter(|message| message.to == NodeId(to))
        .cloned()
        .collect()
}
