//! The 6.5840 tester's helpers (`config.go`) in simulated time, with its numeric bounds:
//! `checkOneLeader`, `checkTerms`, `checkNoLeader`, `one`, `wait`.

use super::Cluster;
use flotilla_raft::{LogIndex, NodeId, Term};

/// 6.5840's RaftElectionTimeout: 1000 ms.
pub const ELECTION_TIMEOUT_MS: u64 = 1000;

impl Cluster {
    /// `checkOneLeader`: up to 10 rounds of 450-550 ms; fails if a term has two leaders or no
    /// leader appears.
    pub fn check_one_leader(&mut self) -> NodeId {
        use rand::Rng;
        for _ in 0..10 {
            let sleep = self.rng.random_range(450..550);
            self.run_for(sleep);
            let leaders = self.leaders();
            for (term, ids) in &leaders {
                assert!(ids.len() <= 1, "term {term} has {} (>1) leaders", ids.len());
            }
            if let Some(leader) = self.leader() {
                return leader;
            }
        }
        panic!("expected one leader, got none");
    }

    /// `checkTerms`: every live replica is in the same term.
    pub fn check_terms(&self) -> Term {
        let terms: Vec<Term> = self
            .live()
            .iter()
            .map(|&id| self.raft(id).expect("up").term())
            .collect();
        let first = terms[0];
        assert!(
            terms.iter().all(|&term| term == first),
            "servers disagree on term: {terms:?}"
        );
        first
    }

    /// `checkNoLeader`: no live replica thinks it is the leader.
    pub fn check_no_leader(&self) {
        let leaders = self.leaders();
        assert!(
            leaders.is_empty(),
            "expected no leader among connected servers, got {leaders:?}"
        );
    }

    /// `one`: submit `command` to some replica that accepts it, and wait until at least
    /// `expected_servers` applied it at the same index. Retries for 10 s, waiting 2 s each time.
    pub fn one(&mut self, command: &[u8], expected_servers: usize, retry: bool) -> LogIndex {
        let started = self.now_ms;
        let ids = self.ids();
        let mut next = 0;
        while self.now_ms - started < 10_000 {
            let mut index = None;
            for _ in 0..ids.len() {
                next = (next + 1) % ids.len();
                let id = ids[next];
                if self.is_up(id)
                    && self.network.is_connected(id)
                    && let Ok(found) = self.propose(id, command.to_vec())
                {
                    index = Some(found);
                    break;
                }
            }
            let Some(index) = index else {
                self.run_for(50);
                continue;
            };
            let waited = self.now_ms;
            while self.now_ms - waited < 2_000 {
                let (count, value) = self.n_committed(index);
                if count > 0 && count >= expected_servers && value.as_deref() == Some(command) {
                    return index;
                }
                self.run_for(20);
            }
            assert!(retry, "one({command:?}) failed to reach agreement");
        }
        panic!("one({command:?}) failed to reach agreement in 10 s");
    }

    /// `wait`: until `n` replicas applied `index` (30 polls backing off from 10 ms to 1 s);
    /// gives up early (returning what it saw) if a live replica moved past `start_term`.
    pub fn wait(&mut self, index: LogIndex, n: usize, start_term: Option<Term>) -> Option<Vec<u8>> {
        let mut sleep = 10;
        for _ in 0..30 {
            let (count, _) = self.n_committed(index);
            if count >= n {
                break;
            }
            self.run_for(sleep);
            sleep = (sleep * 2).min(1000);
            if let Some(term) = start_term {
                let moved = self
                    .live()
                    .iter()
                    .any(|&id| self.raft(id).expect("up").term() > term);
                if moved {
                    return None;
                }
            }
        }
        let (count, value) = self.n_committed(index);
        assert!(
            count >= n,
            "only {count} decided for index {index}; wanted {n}"
        );
        value
    }
}
