//! What one attempt's outcome means for its request, sans IO: answered, stopped for good, or
//! tried again where the router says (and whether after a pause). Both the async
//! [`Client`](super::Client) and the whole-cluster simulator's clients run this one mapping, so
//! the simulator proves the retry and ambiguity rules production uses.
//!
//! The rule that matters: once an attempt of a write may have applied (it got no answer, or a
//! node said a snapshot superseded it), nothing later may call the write "not applied": a
//! later refusal or running out of time is an unknown outcome, never a definite failure.

use crate::connection::CallError;
use flotilla_api::{ApiError, Reply, Response};
use flotilla_shard_manager::{KeyRange, Reply as RouteReply};

/// How a request may be retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A read, or the opening of a session: applying it twice changes nothing a client sees,
    /// so it is retried after any failure.
    Idempotent,
    /// A write in a session: every attempt carries the same tag and the range applies it at
    /// most once, so it is retried after any failure.
    Tagged,
    /// A write without a session (clients before sessions; the `nemesis` feature's switch):
    /// after an attempt that may have applied, retried only if `retry_maybe_applied` (a put
    /// or a delete, not a compare-and-swap).
    Bare {
        /// Whether to send it again after an attempt that got no answer.
        retry_maybe_applied: bool,
    },
}

/// What became of one attempt.
#[derive(Debug)]
pub enum Outcome {
    /// A node answered.
    Answered(Result<Reply, ApiError>),
    /// The attempt never left: no connection to the node could be made.
    NotSent,
    /// Sent, and no answer came (timed out, or lost with its connection): it may have applied.
    NoAnswer {
        /// Why.
        reason: String,
    },
    /// The attempt was not sent and no attempt of it can be: the request does not fit in a
    /// frame, or the node refused this client's certificate. A final error, not a retry.
    Unsendable(CallError),
}

/// What to do after one attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Answered: this is the request's response.
    Done(Response),
    /// Try again where the router sends `route`, after a pause first if `pause` (the node was
    /// busy or knew no leader: an immediate retry would find the same).
    Retry {
        /// What to tell the router.
        route: RouteReply,
        /// Whether to wait before the next attempt.
        pause: bool,
    },
    /// Stop trying.
    Stop(Stop),
}

/// Why a request ended without an answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    /// A node refused the request for good, and no earlier attempt may have applied it.
    Refused(ApiError),
    /// Out of time, the range's replicas knowing no leader, and nothing applied.
    NoLeader {
        /// The range's keys.
        range: KeyRange,
        /// Attempts made.
        attempts: u32,
    },
    /// The request cannot be sent (see [`Outcome::Unsendable`]), and no earlier attempt may
    /// have applied it.
    NotSent(CallError),
    /// Out of time or replicas, or refused after an attempt that may have applied.
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// Why.
        reason: String,
        /// Whether an attempt may have applied the request (then its outcome is unknown).
        maybe_applied: bool,
    },
}

/// The attempts of one request so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tries {
    count: u32,
    maybe_applied: bool,
    /// Whether the last replica that answered said it knew no leader.
    no_leader: bool,
}

impl Tries {
    /// Counts one more attempt, about to be sent.
    pub fn attempt(&mut self) {
        self.count += 1;
    }

    /// Attempts counted so far.
    #[must_use]
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Whether an attempt may have applied the request.
    #[must_use]
    pub fn maybe_applied(&self) -> bool {
        self.maybe_applied
    }

    /// Judges the outcome of the last attempt of a request of `kind`.
    pub fn judge(&mut self, kind: Kind, outcome: Outcome) -> Verdict {
        let retry = |route, pause| Verdict::Retry { route, pause };
        let reply = match outcome {
            Outcome::Answered(reply) => reply,
            Outcome::NotSent => {
                return retry(RouteReply::NotLeader { leader_hint: None }, true);
            }
            Outcome::NoAnswer { reason } => return self.no_answer(kind, reason),
            Outcome::Unsendable(error) => return self.unsendable(error),
        };
        match reply {
            Ok(Reply::Kv(response)) => Verdict::Done(response),
            Ok(_) => self.refused(ApiError::Unavailable("an unexpected reply".into())),
            Err(ApiError::NotLeader { leader, .. }) => {
                self.no_leader = leader.is_none();
                retry(
                    RouteReply::NotLeader {
                        leader_hint: leader,
                    },
                    leader.is_none(),
                )
            }
            Err(ApiError::StaleEpoch { ranges }) => {
                self.no_leader = false;
                retry(RouteReply::RangeChanged(ranges), false)
            }
            // The replica moved, or the range is frozen for a merge, or split and the meta
            // group has not recorded it yet: the router refreshes the map once, and has the
            // attempts after it wait the retry pause.
            Err(ApiError::NotServed { .. }) => {
                self.no_leader = false;
                retry(RouteReply::StaleRoute, false)
            }
            Err(ApiError::Busy | ApiError::Dropped | ApiError::Unavailable(_)) => {
                self.no_leader = false;
                retry(RouteReply::NotLeader { leader_hint: None }, true)
            }
            Err(ApiError::OutcomeUnknown) => {
                self.no_answer(kind, "a snapshot superseded it".to_string())
            }
            Err(error) => self.refused(error),
        }
    }

    /// Gives up (out of time or replicas).
    #[must_use]
    pub fn give_up(&self, reason: String) -> Stop {
        Stop::GaveUp {
            attempts: self.count,
            reason,
            maybe_applied: self.maybe_applied,
        }
    }

    /// Gives up on `range`: when its replicas last answered that they knew no leader, and no
    /// attempt may have applied, the stop says so.
    #[must_use]
    pub fn give_up_on(&self, reason: String, range: Option<KeyRange>) -> Stop {
        match range.filter(|_| self.no_leader && !self.maybe_applied) {
            Some(range) => Stop::NoLeader {
                range,
                attempts: self.count,
            },
            None => self.give_up(reason),
        }
    }

    /// An attempt got no answer (timed out, lost with its connection, superseded): it may
    /// have applied.
    fn no_answer(&mut self, kind: Kind, reason: String) -> Verdict {
        if kind != Kind::Idempotent {
            self.maybe_applied = true;
        }
        match kind {
            Kind::Bare {
                retry_maybe_applied: false,
            } => Verdict::Stop(self.give_up(reason)),
            _ => Verdict::Retry {
                route: RouteReply::Timeout,
                pause: false,
            },
        }
    }

    /// The request cannot be sent: not applied, unless an earlier attempt may have applied it.
    fn unsendable(&self, error: CallError) -> Verdict {
        if self.maybe_applied {
            Verdict::Stop(self.give_up(format!("then not sent: {error}")))
        } else {
            Verdict::Stop(Stop::NotSent(error))
        }
    }

    /// A node refused for good. After an attempt that may have applied, a refusal of a later
    /// one (another node's limits, say) does not say the request was not applied.
    fn refused(&self, error: ApiError) -> Verdict {
        if self.maybe_applied {
            Verdict::Stop(self.give_up(format!("then refused: {error}")))
        } else {
            Verdict::Stop(Stop::Refused(error))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_raft::{GroupId, NodeId};

    const BARE_NO_RETRY: Kind = Kind::Bare {
        retry_maybe_applied: false,
    };

    fn too_large() -> ApiError {
        ApiError::TooLarge {
            what: "key".into(),
            bytes: 9,
            limit: 8,
        }
    }

    fn too_large_to_send() -> CallError {
        CallError::TooLarge {
            request_bytes: 100 << 20,
            frame_bytes_max: 16 << 20,
        }
    }

    fn answered(error: ApiError) -> Outcome {
        Outcome::Answered(Err(error))
    }

    fn no_answer() -> Outcome {
        Outcome::NoAnswer {
            reason: "timed out".into(),
        }
    }

    fn retry(route: RouteReply, pause: bool) -> Verdict {
        Verdict::Retry { route, pause }
    }

    /// One attempt on fresh tries: kind, outcome -> verdict.
    #[test]
    fn one_attempt() {
        let written = Response::Written { previous: None };
        let not_leader = |leader| ApiError::NotLeader {
            group: GroupId(1),
            leader,
            address: None,
        };
        let table = [
            (
                Kind::Tagged,
                Outcome::Answered(Ok(Reply::Kv(written.clone()))),
                Verdict::Done(written),
            ),
            (
                Kind::Tagged,
                answered(not_leader(Some(NodeId(2)))),
                retry(
                    RouteReply::NotLeader {
                        leader_hint: Some(NodeId(2)),
                    },
                    false,
                ),
            ),
            (
                Kind::Idempotent,
                answered(not_leader(None)),
                retry(RouteReply::NotLeader { leader_hint: None }, true),
            ),
            (
                Kind::Tagged,
                answered(ApiError::StaleEpoch { ranges: Vec::new() }),
                retry(RouteReply::RangeChanged(Vec::new()), false),
            ),
            (
                Kind::Tagged,
                answered(ApiError::NotServed { group: GroupId(4) }),
                retry(RouteReply::StaleRoute, false),
            ),
            (
                Kind::Tagged,
                answered(ApiError::Busy),
                retry(RouteReply::NotLeader { leader_hint: None }, true),
            ),
            (
                Kind::Tagged,
                Outcome::NotSent,
                retry(RouteReply::NotLeader { leader_hint: None }, true),
            ),
            (Kind::Tagged, no_answer(), retry(RouteReply::Timeout, false)),
            (
                Kind::Idempotent,
                answered(ApiError::OutcomeUnknown),
                retry(RouteReply::Timeout, false),
            ),
            (
                Kind::Tagged,
                answered(too_large()),
                Verdict::Stop(Stop::Refused(too_large())),
            ),
            (
                Kind::Tagged,
                Outcome::Unsendable(too_large_to_send()),
                Verdict::Stop(Stop::NotSent(too_large_to_send())),
            ),
            (
                BARE_NO_RETRY,
                no_answer(),
                Verdict::Stop(Stop::GaveUp {
                    attempts: 0,
                    reason: "timed out".into(),
                    maybe_applied: true,
                }),
            ),
        ];
        for (kind, outcome, expected) in table {
            let shown = format!("{kind:?} {outcome:?}");
            assert_eq!(Tries::default().judge(kind, outcome), expected, "{shown}");
        }
    }

    #[test]
    fn a_write_that_may_have_applied_is_never_called_not_applied() {
        let mut tries = Tries::default();
        tries.attempt();
        assert_eq!(
            tries.judge(Kind::Tagged, no_answer()),
            retry(RouteReply::Timeout, false)
        );
        assert!(tries.maybe_applied());
        tries.attempt();
        let refusal = too_large();
        let Verdict::Stop(Stop::GaveUp { maybe_applied, .. }) =
            tries.judge(Kind::Tagged, answered(refusal))
        else {
            panic!("a refusal after a silent attempt must not be definite");
        };
        assert!(maybe_applied);
        let Verdict::Stop(Stop::GaveUp { maybe_applied, .. }) = tries.judge(
            Kind::Tagged,
            Outcome::Answered(Ok(Reply::KnownDirectory { directory: None })),
        ) else {
            panic!("an unexpected reply after a silent attempt must not be definite");
        };
        assert!(maybe_applied);
    }

    #[test]
    fn a_request_that_cannot_be_sent_is_final_and_not_applied_unless_an_earlier_one_may_be() {
        let mut tries = Tries::default();
        tries.attempt();
        assert_eq!(
            tries.judge(Kind::Tagged, Outcome::Unsendable(too_large_to_send())),
            Verdict::Stop(Stop::NotSent(too_large_to_send()))
        );
        let _ = tries.judge(Kind::Tagged, no_answer());
        let Verdict::Stop(Stop::GaveUp { maybe_applied, .. }) =
            tries.judge(Kind::Tagged, Outcome::Unsendable(too_large_to_send()))
        else {
            panic!("after a silent attempt, not sending another must not be definite");
        };
        assert!(maybe_applied);
    }

    #[test]
    fn reads_never_may_have_applied() {
        let mut tries = Tries::default();
        let _ = tries.judge(Kind::Idempotent, no_answer());
        let _ = tries.judge(Kind::Idempotent, answered(ApiError::OutcomeUnknown));
        assert!(!tries.maybe_applied());
    }

    #[test]
    fn no_leader_is_reported_only_when_nothing_may_have_applied() {
        let range = KeyRange::all();
        let mut tries = Tries::default();
        tries.attempt();
        let not_leader = ApiError::NotLeader {
            group: GroupId(1),
            leader: None,
            address: None,
        };
        let _ = tries.judge(Kind::Tagged, answered(not_leader.clone()));
        assert_eq!(
            tries.give_up_on("late".into(), Some(range.clone())),
            Stop::NoLeader {
                range: range.clone(),
                attempts: 1
            }
        );
        let _ = tries.judge(Kind::Tagged, no_answer());
        let _ = tries.judge(Kind::Tagged, answered(not_leader));
        assert!(matches!(
            tries.give_up_on("late".into(), Some(range)),
            Stop::GaveUp {
                maybe_applied: true,
                ..
            }
        ));
    }
}
