//! The transport's reconnect policy, as the simulator models it: one link per node pair (the
//! QUIC transport's one connection, dialed by the lower id). A cut or a crash *interrupts* the
//! link; once the pair could talk again, the link comes back only at the next *attempt*: a
//! loss-recovery probe of the stalled connection, or the first packet of a dial once the
//! connection was given up. Between attempts a healed pair cannot talk. That gap is what
//! issue 25 was: after a cut shorter than QUIC's 10 s idle timeout the connection survived,
//! its probes backed off exponentially, and a healed pair stayed deaf to each other for seconds.

use flotilla_raft::NodeId;
use std::collections::BTreeMap;

/// When a stalled or lost link tries again, in milliseconds (the transport's timers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkPolicy {
    /// The stalled connection probes after this long, then after twice that, and so on
    /// (QUIC's probe timeout: unacknowledged data fills the congestion window, so only
    /// probes leave until one is answered).
    pub probe_ms_base: u64,
    /// A connection silent this long is given up: QUIC's idle timeout before issue 25, the
    /// transport's `peer_silence_ms_max` since.
    pub silence_ms_max: u64,
    /// The first dial waits this long after the connection was given up (the backoff's base).
    pub redial_ms_base: u64,
    /// Later dials wait twice as long each time, up to this (`reconnect_delay_ms_max`).
    pub redial_ms_max: u64,
    /// A dial whose peer has not answered in this long is abandoned (the handshake timeout
    /// before issue 25, `dial_answer_timeout_ms` since).
    pub dial_timeout_ms: u64,
    /// Within one dial, the handshake's first packet is resent after this long, then after
    /// twice that (quinn's initial probe timeout: 3 x its 333 ms initial RTT).
    pub dial_probe_ms: u64,
}

impl LinkPolicy {
    /// The QUIC transport before issue 25: a cut connection lived until the 10 s idle timeout,
    /// probing at doubling intervals (about 40 ms at first on loopback: a 6 s cut then stalled
    /// until the idle timeout in 5 of 6 trials of 5 real processes), and a lost peer was
    /// redialed with a backoff of up to 5 s and 5 s handshakes.
    pub const BEFORE_ISSUE_25: Self = Self {
        probe_ms_base: 40,
        silence_ms_max: 10_000,
        redial_ms_base: 50,
        redial_ms_max: 5_000,
        dial_timeout_ms: 5_000,
        dial_probe_ms: 1_000,
    };

    /// The QUIC transport's defaults now: either side gives up a connection silent for
    /// 500 ms, and the dialer retries 50 ms later, then at most every 250 + 250 ms.
    pub const NOW: Self = Self {
        probe_ms_base: 40,
        silence_ms_max: 500,
        redial_ms_base: 50,
        redial_ms_max: 250,
        dial_timeout_ms: 250,
        dial_probe_ms: 1_000,
    };

    /// The first attempt at or after `from_ms` of a link interrupted at `since_ms`.
    pub fn next_attempt(&self, since_ms: u64, from_ms: u64) -> u64 {
        let given_up_ms = since_ms + self.silence_ms_max;
        let mut gap = self.probe_ms_base;
        let mut at = since_ms + gap;
        while at < given_up_ms {
            if at >= from_ms {
                return at;
            }
            gap *= 2;
            at += gap;
        }
        let mut dial_ms = given_up_ms + self.redial_ms_base;
        let mut redial = self.redial_ms_base;
        loop {
            if let Some(at) = self.dial_attempt_at_or_after(dial_ms, from_ms) {
                return at;
            }
            redial = (redial * 2).min(self.redial_ms_max);
            dial_ms += self.dial_timeout_ms + redial;
        }
    }

    /// The first packet of the dial started at `dial_ms` sent at or after `from_ms`, if any.
    fn dial_attempt_at_or_after(&self, dial_ms: u64, from_ms: u64) -> Option<u64> {
        let mut gap = self.dial_probe_ms;
        let mut at = dial_ms;
        while at < dial_ms + self.dial_timeout_ms {
            if at >= from_ms {
                return Some(at);
            }
            at += gap;
            gap *= 2;
        }
        None
    }
}

/// One pair's link: up, or interrupted since a time and (once the pair can talk) healthy
/// since another.
#[derive(Clone, Copy, Debug, Default)]
struct Link {
    interrupted_ms: Option<u64>,
    healthy_ms: Option<u64>,
}

/// Every pair's link.
#[derive(Clone, Debug)]
pub struct Links {
    pub policy: LinkPolicy,
    links: BTreeMap<(NodeId, NodeId), Link>,
}

impl Links {
    pub fn new(policy: LinkPolicy) -> Self {
        Self {
            policy,
            links: BTreeMap::new(),
        }
    }

    /// Records whether the pair could talk at `now_ms` (both up, no cut either way).
    pub fn set_healthy(&mut self, a: NodeId, b: NodeId, healthy: bool, now_ms: u64) {
        let link = self.links.entry(pair(a, b)).or_default();
        match (healthy, link.interrupted_ms) {
            (false, None) => link.interrupted_ms = Some(now_ms),
            (false, Some(_)) => link.healthy_ms = None,
            (true, Some(_)) if link.healthy_ms.is_none() => link.healthy_ms = Some(now_ms),
            (true, _) => {}
        }
    }

    /// A node that just started dials its higher-id peers at once: those links are up if the
    /// pair can talk.
    pub fn dialed_at_start(&mut self, dialer: NodeId, peer: NodeId) {
        let link = self.links.entry(pair(dialer, peer)).or_default();
        if dialer < peer && link.healthy_ms.is_some() {
            *link = Link::default();
        }
    }

    /// Whether a batch between `a` and `b` gets through at `now_ms` (cuts aside).
    pub fn usable(&mut self, a: NodeId, b: NodeId, now_ms: u64) -> bool {
        let policy = self.policy;
        let link = self.links.entry(pair(a, b)).or_default();
        let Some(since_ms) = link.interrupted_ms else {
            return true;
        };
        let Some(healthy_ms) = link.healthy_ms else {
            return false;
        };
        let back = now_ms >= policy.next_attempt(since_ms, healthy_ms);
        if back {
            *link = Link::default();
        }
        back
    }

    /// When the link between `a` and `b` is (or will be) back, if the pair can talk.
    pub fn back_at(&self, a: NodeId, b: NodeId) -> Option<u64> {
        let link = self.links.get(&pair(a, b)).copied().unwrap_or_default();
        match (link.interrupted_ms, link.healthy_ms) {
            (None, _) => Some(0),
            (Some(since_ms), Some(healthy_ms)) => {
                Some(self.policy.next_attempt(since_ms, healthy_ms))
            }
            (Some(_), None) => None,
        }
    }
}

fn pair(a: NodeId, b: NodeId) -> (NodeId, NodeId) {
    (a.min(b), a.max(b))
}

#[test]
fn before_issue_25_a_six_second_cut_stalls_until_the_idle_timeout() {
    let policy = LinkPolicy::BEFORE_ISSUE_25;
    // Probes at 40, 120, 280, ... 5,080 ms; the next would be 10,200 ms, after the 10 s idle
    // timeout: the connection is given up then, and the redial 50 ms later gets through.
    assert_eq!(policy.next_attempt(0, 6_000), 10_050);
    assert_eq!(policy.next_attempt(0, 5_000), 5_080);
}

#[test]
fn now_a_healed_link_waits_at_most_the_silence_or_one_dial_and_backoff() {
    let policy = LinkPolicy::NOW;
    // Probes at 40, 120 and 280 ms; given up at 500 ms and redialed 50 ms later.
    assert_eq!(policy.next_attempt(0, 300), 550);
    for heal_ms in (0..60_000).step_by(7) {
        let gap = policy.next_attempt(0, heal_ms) - heal_ms;
        assert!(gap <= 500, "healed at {heal_ms} ms, back {gap} ms later");
    }
}
