//! The client-side router, sans-IO: where to send a request for a key, and what to do with the
//! answer. The caller owns the sockets and the clock.
//!
//! A request goes to the cached leader of its range's group (or a replica when none is known).
//! `NotLeader { leader_hint }` follows the hint, or refreshes the map once when the hint is a
//! node the cached map does not list for the range (its replicas moved); a stale epoch or a
//! range this node does not serve asks the caller to refresh the map, and so does, once per
//! request, having tried every cached replica; a timeout tries another replica chosen at random.
//! Attempts are bounded. A write whose attempt timed out may have been applied: the retry
//! that follows is marked `ambiguous`. A client that tags its writes with a session (the node's
//! client does; `docs/protocol/sessions.md`) retries safely, since the range applies a tag once;
//! one that does not must report such a write as possibly applied twice.

use crate::error::RouteError;
use crate::range::{Epoch, RangeId};
use crate::range_map::RangeMap;
use flotilla_raft::{GroupId, NodeId};
use std::collections::{BTreeSet, HashMap};

/// Where to send one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The node to send to.
    pub node: NodeId,
    /// The group that serves the key.
    pub group: GroupId,
    /// The range that holds the key.
    pub range: RangeId,
    /// The map epoch the request is routed with (the server checks it).
    pub epoch: Epoch,
}

/// What came back from an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Served.
    Done,
    /// The node is not the leader; it names the leader it last heard of.
    NotLeader {
        /// That leader, if any.
        leader_hint: Option<NodeId>,
    },
    /// The node's map is newer than ours, or it does not serve this range.
    StaleRoute,
    /// No answer within the attempt timeout (or the connection failed).
    Timeout,
}

/// What the caller does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// The request is finished.
    Done,
    /// Send again to `target`. `ambiguous`: an earlier attempt timed out and may have applied.
    Retry {
        /// Where to send.
        target: Target,
        /// Whether a previous attempt may have taken effect.
        ambiguous: bool,
    },
    /// Fetch a newer range map, `update_map` with it, then `route` again.
    RefreshMap,
    /// Give up.
    Fail(RouteError),
}

/// One request in flight: what was tried.
#[derive(Clone, Debug, Default)]
pub struct Attempts {
    tried: BTreeSet<NodeId>,
    count: u32,
    timed_out: bool,
    /// The map was refreshed because it looked stale (a hint it does not list, or every
    /// replica tried): at most once per request, so a lagging map cannot loop.
    refreshed: bool,
}

/// The router: a cached range map and the leaders learned from replies.
#[derive(Clone, Debug)]
pub struct Router {
    map: RangeMap,
    leaders: HashMap<GroupId, NodeId>,
    attempts_max: u32,
    rng_state: u64,
}

impl Router {
    /// A router over `map`, trying at most `attempts_max` times per request; `seed` drives the
    /// random choice of replica after a timeout.
    #[must_use]
    pub fn new(map: RangeMap, attempts_max: u32, seed: u64) -> Self {
        Self {
            map,
            leaders: HashMap::new(),
            attempts_max: attempts_max.max(1),
            rng_state: seed,
        }
    }

    /// The cached map.
    #[must_use]
    pub fn map(&self) -> &RangeMap {
        &self.map
    }

    /// Replaces the cached map if `map` is newer; leaders of groups stay cached.
    pub fn update_map(&mut self, map: RangeMap) {
        if map.epoch() > self.map.epoch() {
            self.map = map;
        }
    }

    /// The first target for a request on `key` (again after a map refresh: the cached leader,
    /// else a replica not tried yet).
    pub fn route(&mut self, key: &[u8], attempts: &mut Attempts) -> Target {
        let range = self.map.lookup(key);
        let untried = range
            .replicas
            .iter()
            .copied()
            .find(|node| !attempts.tried.contains(node));
        let node = self
            .leaders
            .get(&range.group)
            .copied()
            .filter(|leader| range.replicas.contains(leader))
            .or(untried)
            .unwrap_or(range.replicas[0]);
        attempts.count += 1;
        attempts.tried.insert(node);
        Target {
            node,
            group: range.group,
            range: range.id,
            epoch: self.map.epoch(),
        }
    }

    /// What to do after `reply` to an attempt at `target` for `key`.
    pub fn on_reply(
        &mut self,
        key: &[u8],
        target: &Target,
        reply: Reply,
        attempts: &mut Attempts,
    ) -> Next {
        match reply {
            Reply::Done => {
                self.leaders.insert(target.group, target.node);
                return Next::Done;
            }
            Reply::StaleRoute => return Next::RefreshMap,
            Reply::NotLeader { leader_hint } => {
                self.learn_leader(target, leader_hint);
                let listed = |leader| self.map.lookup(key).replicas.contains(&leader);
                if leader_hint.is_some_and(|leader| leader != target.node && !listed(leader))
                    && !attempts.refreshed
                {
                    // The range's replicas changed since the map was cached.
                    attempts.refreshed = true;
                    return Next::RefreshMap;
                }
            }
            Reply::Timeout => {
                attempts.timed_out = true;
                self.forget_leader(target);
            }
        }
        if attempts.count >= self.attempts_max {
            return Next::Fail(RouteError::DeadlineExceeded {
                attempts: attempts.count,
            });
        }
        let replicas = &self.map.lookup(key).replicas;
        if !attempts.refreshed && replicas.iter().all(|node| attempts.tried.contains(node)) {
            // Every cached replica was tried: they may all have moved away.
            attempts.refreshed = true;
            return Next::RefreshMap;
        }
        match self.next_node(key, target, attempts) {
            Some(node) => {
                attempts.count += 1;
                attempts.tried.insert(node);
                let target = Target {
                    node,
                    ..target.clone()
                };
                Next::Retry {
                    target,
                    ambiguous: attempts.timed_out,
                }
            }
            None => Next::Fail(RouteError::ReplicasExhausted),
        }
    }

    fn learn_leader(&mut self, target: &Target, hint: Option<NodeId>) {
        match hint {
            Some(leader) if leader != target.node => {
                self.leaders.insert(target.group, leader);
            }
            _ => self.forget_leader(target),
        }
    }

    fn forget_leader(&mut self, target: &Target) {
        if self.leaders.get(&target.group) == Some(&target.node) {
            self.leaders.remove(&target.group);
        }
    }

    /// The hinted leader if the cached map lists it; otherwise a random replica not tried yet (or, once all were tried,
    /// any replica but the last one).
    fn next_node(&mut self, key: &[u8], target: &Target, attempts: &Attempts) -> Option<NodeId> {
        let replicas = self.map.lookup(key).replicas.clone();
        if let Some(&leader) = self.leaders.get(&target.group)
            && replicas.contains(&leader)
            && leader != target.node
        {
            return Some(leader);
        }
        let untried: Vec<NodeId> = replicas
            .iter()
            .copied()
            .filter(|node| !attempts.tried.contains(node))
            .collect();
        let candidates: Vec<NodeId> = if untried.is_empty() {
            replicas
                .into_iter()
                .filter(|&node| node != target.node)
                .collect()
        } else {
            untried
        };
        if candidates.is_empty() {
            return None;
        }
        let index = (self.next_random() % candidates.len() as u64) as usize;
        candidates.get(index).copied()
    }

    fn next_random(&mut self) -> u64 {
        self.rng_state = self
            .rng_state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.rng_state >> 33
    }
}
