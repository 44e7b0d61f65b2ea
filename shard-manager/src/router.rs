//! The client-side router, sans-IO: where to send a request for a key, and what to do with the
//! answer. The caller owns the sockets and the clock.
//!
//! A request goes to the cached leader of its range's group (or a replica when none is known),
//! with the range's epoch. `NotLeader { leader_hint }` follows the hint, or refreshes the map
//! once when the hint is a node the cached map does not list for the range (its replicas
//! moved). A range that changed comes back with the node's descriptors of the ranges holding
//! the key: the cached map takes them in and the request goes where they say, with no map
//! fetched; when they are no newer than the cache (the node is behind), or the node does not
//! serve the range, the map is refreshed (once per request; after that the request is routed
//! again from the cache). Having tried every cached replica refreshes it too, once per request.
//! A timeout tries another replica chosen at random.
//! Attempts are bounded. A write whose attempt timed out may have been applied: the retry
//! that follows is marked `ambiguous`. A client that tags its writes with a session (the node's
//! client does; `docs/protocol/sessions.md`) retries safely, since the range applies a tag once;
//! one that does not must report such a write as possibly applied twice.

use crate::error::RouteError;
use crate::range::{KeyRange, RangeDescriptor, RangeEpoch, RangeId};
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
    /// The epoch of the range as the cached map has it (the server compares it with its own).
    pub epoch: RangeEpoch,
    /// The range's keys as the cached map has them when routed: a scan is clamped to them and
    /// goes on from their end, whatever the map learns meanwhile.
    pub keys: KeyRange,
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
    /// The range changed: the key lies in these ranges now, as the node knows them.
    RangeChanged(Vec<RangeDescriptor>),
    /// The node does not serve this range (its replica moved or is behind).
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
        /// Wait the retry pause first: nothing the router learned changes the route, so an
        /// attempt at once would meet the same answer.
        pause: bool,
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
            epoch: range.epoch,
            keys: range.keys.clone(),
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
            Reply::RangeChanged(ranges) => {
                let mut changed = false;
                for range in &ranges {
                    changed |= self.map.patch(range);
                }
                if changed {
                    return self.reroute(key, attempts, false);
                }
                return self.refresh_once(key, attempts);
            }
            Reply::StaleRoute => return self.refresh_once(key, attempts),
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
                    pause: false,
                }
            }
            None => Next::Fail(RouteError::ReplicasExhausted),
        }
    }

    /// Refreshes the map if this request did not yet; routes again from the cache if it did.
    fn refresh_once(&mut self, key: &[u8], attempts: &mut Attempts) -> Next {
        if attempts.refreshed {
            return self.reroute(key, attempts, true);
        }
        attempts.refreshed = true;
        Next::RefreshMap
    }

    /// Routes again from the cached map (it changed, or the node should catch up), within the
    /// attempts allowed.
    fn reroute(&mut self, key: &[u8], attempts: &mut Attempts, pause: bool) -> Next {
        if attempts.count >= self.attempts_max {
            return Next::Fail(RouteError::DeadlineExceeded {
                attempts: attempts.count,
            });
        }
        let target = self.route(key, attempts);
        Next::Retry {
            target,
            ambiguous: attempts.timed_out,
            pause,
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
