//! A node far behind its commit index (a restart with a long log) is handed its backlog in
//! readies of at most `apply_bytes_per_ready` bytes over all groups, never whole.

use flotilla_raft::{
    Entry, EntryPayload, GroupId, HardState, LogIndex, MemLog, MultiConfig, MultiRaft, NodeId,
    Persist, Term,
};

const ENTRY_BYTES: usize = 1024;

/// A log of `count` committed entries of `ENTRY_BYTES` each, none applied.
fn committed_log(count: u64) -> MemLog {
    let entries: Vec<Entry> = (1..=count)
        .map(|index| Entry {
            term: Term(1),
            index: LogIndex(index),
            payload: EntryPayload::Normal(vec![index as u8; ENTRY_BYTES].into()),
        })
        .collect();
    let mut log = MemLog::new();
    log.persist(&Persist {
        entries,
        hard_state: Some(HardState {
            term: Term(1),
            vote: None,
            commit: LogIndex(count),
        }),
        ..Persist::default()
    });
    log
}

#[test]
fn a_backlog_is_handed_out_a_budget_at_a_time() {
    const GROUPS: u64 = 3;
    const ENTRIES: u64 = 100;
    let budget = 10 * ENTRY_BYTES as u64;
    let mut multi = MultiRaft::new(MultiConfig {
        apply_bytes_per_ready: budget,
        ..MultiConfig::new(NodeId(1))
    });
    for group in 1..=GROUPS {
        multi
            .create_group(GroupId(group), committed_log(ENTRIES))
            .unwrap();
    }
    let mut next = vec![1_u64; GROUPS as usize + 1];
    let mut readies = 0;
    while multi.has_ready() {
        let ready = multi.ready();
        readies += 1;
        let behind: Vec<u64> = (1..=GROUPS)
            .filter(|&group| next[group as usize] <= ENTRIES)
            .collect();
        let mut handed = 0;
        for (group, group_ready) in &ready.groups {
            for entry in &group_ready.committed {
                assert_eq!(
                    entry.index.0, next[group.0 as usize],
                    "{group}: out of order"
                );
                next[group.0 as usize] += 1;
                handed += entry.payload_bytes();
            }
        }
        for group in behind {
            let given = ready
                .groups
                .iter()
                .find(|(id, _)| *id == GroupId(group))
                .map_or(0, |(_, group_ready)| group_ready.committed.len());
            assert!(
                given >= 1,
                "ready {readies} gave group {group} nothing to apply"
            );
        }
        // Each group with entries to apply gets at least one, even past the budget.
        let floor = ready.groups.len() as u64 * ENTRY_BYTES as u64;
        assert!(
            handed <= budget + floor,
            "ready {readies} handed out {handed} bytes, over the budget of {budget}"
        );
        multi.advance(ready);
        assert!(readies < 1_000, "the backlog never drained");
    }
    for group in 1..=GROUPS {
        assert_eq!(
            next[group as usize],
            ENTRIES + 1,
            "group {group} left entries"
        );
        let raft = multi.group(GroupId(group)).unwrap();
        assert_eq!(raft.log().applied(), LogIndex(ENTRIES));
    }
    let total = GROUPS * ENTRIES * ENTRY_BYTES as u64;
    assert!(
        readies >= total / (budget + GROUPS * ENTRY_BYTES as u64),
        "{readies} readies for {total} bytes: the budget did not bind"
    );
}
