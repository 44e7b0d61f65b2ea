//! Membership changes: Raft §6 (joint consensus) and thesis §4.2.1 (learners, "non-voting
//! members"), §4.2.2 (removing the current leader), §4.3 (arbitrary changes with joint consensus).

use crate::util::*;
use flotilla_raft::{
    ChangeStep, Config, EntryPayload, LogReader, Membership, Mutation, NodeId, ProposeError, Role,
};

fn joint(incoming: &[u64], outgoing: &[u64]) -> Membership {
    Membership {
        outgoing: voters(outgoing).voters,
        ..voters(incoming)
    }
}

fn with_learners(voter_ids: &[u64], learner_ids: &[u64]) -> Membership {
    Membership {
        learners: voters(learner_ids).voters,
        ..voters(voter_ids)
    }
}

/// The memberships in a replica's persisted log, in order.
fn membership_entries(node: &mut Node) -> Vec<Membership> {
    let entries = node.stored_entries();
    let memberships = entries.into_iter().filter_map(|entry| match entry.payload {
        EntryPayload::Membership(membership) => Some(membership),
        _ => None,
    });
    memberships.collect()
}

/// A group of `ids` led by 1, every replica up to date.
fn led_by_1(ids: &[u64]) -> Net {
    let mut net = Net::new(ids);
    net.campaign(1);
    net
}

/// Proposes `steps` at the leader, then lets everything commit and reach every replica.
fn change(net: &mut Net, leader: u64, steps: Vec<ChangeStep>) {
    net.node_mut(leader).propose_conf_change(steps).unwrap();
    net.stabilize();
    net.tick(leader);
    net.tick(leader);
}

fn add_voter(id: u64) -> ChangeStep {
    ChangeStep::AddVoter(NodeId(id))
}

/// Raft §6: "the cluster first switches to a transitional configuration we call joint
/// consensus; once the joint consensus has been committed, the system then transitions to the
/// new configuration." The leader leaves the joint configuration on its own.
#[test]
fn adding_a_voter_goes_through_joint_consensus_and_leaves_it_on_its_own() {
    let mut net = led_by_1(&[1, 2, 3]);
    net.add_empty(4);
    change(&mut net, 1, vec![add_voter(4)]);
    let expected = vec![joint(&[1, 2, 3, 4], &[1, 2, 3]), voters(&[1, 2, 3, 4])];
    for id in 1..=4 {
        assert_eq!(
            membership_entries(net.node_mut(id)),
            expected,
            "replica {id}"
        );
        assert_eq!(
            net.node(id).membership(),
            &voters(&[1, 2, 3, 4]),
            "replica {id}"
        );
    }
}

/// Raft §6: removing a voter; once C_new is in force the removed replica gets no more entries
/// and the remaining two decide alone.
#[test]
fn a_removed_voter_gets_no_more_entries() {
    let mut net = led_by_1(&[1, 2, 3]);
    change(&mut net, 1, vec![ChangeStep::Remove(NodeId(3))]);
    assert_eq!(net.node(1).membership(), &voters(&[1, 2]));
    let last_of_3 = net.node(3).log().last_index();
    let index = net.propose(1, b"after removal");
    assert_eq!(
        net.node(1).log().committed(),
        index,
        "1 and 2 are the whole group"
    );
    assert_eq!(net.node(3).log().last_index(), last_of_3);
}

/// Thesis §4.3: several voters added and removed in one change go through one joint
/// configuration of the old and new voter sets.
#[test]
fn several_voters_change_at_once_through_one_joint_configuration() {
    let mut net = led_by_1(&[1, 2, 3]);
    net.add_empty(4);
    net.add_empty(5);
    let steps = vec![add_voter(4), add_voter(5), ChangeStep::Remove(NodeId(3))];
    change(&mut net, 1, steps);
    let expected = vec![joint(&[1, 2, 4, 5], &[1, 2, 3]), voters(&[1, 2, 4, 5])];
    assert_eq!(membership_entries(net.node_mut(1)), expected);
    for id in [1, 2, 4, 5] {
        assert_eq!(
            net.node(id).membership(),
            &voters(&[1, 2, 4, 5]),
            "replica {id}"
        );
    }
}

/// Raft §6 (joint consensus): "Agreement (for elections and entry commitment) requires separate
/// majorities from both the old and new configurations." Acks from the old majority alone
/// commit nothing.
#[test]
fn in_a_joint_configuration_a_commit_needs_a_majority_of_both_halves() {
    let store = bootstrapped(joint(&[1, 4, 5], &[1, 2, 3]));
    let mut leader = node_over(config(1), store);
    let _ = elect(&mut leader);
    leader.deliver(accepted(2, 1, 1, 1));
    leader.deliver(accepted(3, 1, 1, 1));
    assert_eq!(
        leader.take().committed,
        vec![],
        "only the old half acknowledged"
    );
    leader.deliver(accepted(4, 1, 1, 1));
    assert_eq!(leader.take().committed, vec![blank(1, 1)]);
}

/// Raft §6: the same for elections: votes of the old majority alone do not elect.
#[test]
fn in_a_joint_configuration_an_election_needs_a_majority_of_both_halves() {
    let config = Config {
        pre_vote: false,
        ..config(1)
    };
    let mut candidate = node_over(config, bootstrapped(joint(&[1, 4, 5], &[1, 2, 3])));
    candidate.tick_until_campaign();
    let asked: Vec<u64> = candidate
        .take()
        .persisted_messages
        .iter()
        .map(|m| m.to.0)
        .collect();
    assert_eq!(asked, vec![2, 3, 4, 5]);
    candidate.deliver(vote(2, 1, 1, true));
    candidate.deliver(vote(3, 1, 1, true));
    assert_eq!(candidate.role(), Role::Candidate);
    candidate.deliver(vote(5, 1, 1, true));
    assert_eq!(candidate.role(), Role::Leader);
}

/// Thesis §4.2.1: learners ("non-voting members") receive the log, but are never asked to vote,
/// their votes do not count, and they never campaign.
#[test]
fn a_learner_receives_the_log_but_never_votes_or_campaigns() {
    let mut net = led_by_1(&[1, 2, 3]);
    net.add_empty(4);
    change(&mut net, 1, vec![ChangeStep::AddLearner(NodeId(4))]);
    assert_eq!(
        membership_entries(net.node_mut(1)),
        vec![with_learners(&[1, 2, 3], &[4])]
    );
    let index = net.propose(1, b"for the learner too");
    net.tick(1);
    net.tick(1);
    assert_eq!(net.node(4).log().committed(), index);
    for _ in 0..100 {
        net.tick(4);
    }
    assert_eq!(net.node(4).role(), Role::Follower);
    let from_4 = net.delivered.iter().filter(|m| m.from == NodeId(4));
    assert!(
        from_4.clone().all(|m| !is_vote_request(m)),
        "a learner never campaigns"
    );
    assert!(
        net.delivered
            .iter()
            .all(|m| !(m.to == NodeId(4) && is_vote_request(m)))
    );
}

/// Thesis §4.2.1: a candidate does not ask a learner for its vote nor count it.
#[test]
fn a_candidate_neither_asks_nor_counts_a_learner() {
    let config = Config {
        pre_vote: false,
        ..config(1)
    };
    let mut candidate = node_over(config, bootstrapped(with_learners(&[1, 2, 3], &[4])));
    candidate.tick_until_campaign();
    let asked: Vec<u64> = candidate
        .take()
        .persisted_messages
        .iter()
        .map(|m| m.to.0)
        .collect();
    assert_eq!(asked, vec![2, 3]);
    candidate.deliver(vote(4, 1, 1, true));
    assert_eq!(candidate.role(), Role::Candidate);
}

/// Thesis §4.1: one change at a time. A second change is refused while the first is not
/// applied (or, for a joint change, until the joint configuration is left).
#[test]
fn only_one_membership_change_may_be_pending() {
    let mut leader = settled_leader(1, &[1, 2, 3]);
    let index = leader
        .propose_conf_change(vec![ChangeStep::AddLearner(NodeId(4))])
        .unwrap();
    let second = leader.propose_conf_change(vec![add_voter(5)]);
    assert_eq!(second, Err(ProposeError::MembershipChangePending));
    let _ = leader.take();
    leader.deliver(accepted(2, 1, 1, index.0));
    let _ = leader.take();
    assert_eq!(leader.membership(), &with_learners(&[1, 2, 3], &[4]));
    let joint_index = leader.propose_conf_change(vec![add_voter(5)]).unwrap();
    let _ = leader.take();
    leader.deliver(accepted(2, 1, 1, joint_index.0));
    let _ = leader.take();
    assert!(
        leader.membership().is_joint(),
        "the joint configuration is in force"
    );
    let third = leader.propose_conf_change(vec![ChangeStep::Remove(NodeId(4))]);
    assert_eq!(
        third,
        Err(ProposeError::MembershipChangePending),
        "until it is left"
    );
}

/// Thesis §4.2.2: a leader removed from the configuration steps down once C_new is committed,
/// and the remaining voters elect a leader among themselves; the removed replica never
/// campaigns.
#[test]
fn a_removed_leader_steps_down_and_the_rest_elect_a_new_one() {
    let mut net = led_by_1(&[1, 2, 3]);
    change(&mut net, 1, vec![ChangeStep::Remove(NodeId(1))]);
    assert_eq!(net.node(1).role(), Role::Follower);
    assert_eq!(net.node(1).membership(), &voters(&[2, 3]));
    let sent_before = net.delivered.len();
    for _ in 0..60 {
        net.tick_all(1);
    }
    let leader = net.leader().expect("2 or 3 leads");
    assert!([2, 3].contains(&leader));
    let index = net.propose(leader, b"without 1");
    assert_eq!(net.node(leader).log().committed(), index);
    let campaigns_of_1 = net.delivered[sent_before..]
        .iter()
        .filter(|m| m.from == NodeId(1) && is_vote_request(m));
    assert_eq!(campaigns_of_1.count(), 0);
}

/// Thesis §4.2.1: promoting a learner to voter changes the voters, so it goes through a joint
/// configuration like any other voter change.
#[test]
fn promoting_a_learner_goes_through_joint_consensus() {
    let mut net = led_by_1(&[1, 2, 3]);
    net.add_empty(4);
    change(&mut net, 1, vec![ChangeStep::AddLearner(NodeId(4))]);
    change(&mut net, 1, vec![add_voter(4)]);
    let expected = vec![
        with_learners(&[1, 2, 3], &[4]),
        joint(&[1, 2, 3, 4], &[1, 2, 3]),
        voters(&[1, 2, 3, 4]),
    ];
    assert_eq!(membership_entries(net.node_mut(4)), expected);
    assert_eq!(net.node(4).membership(), &voters(&[1, 2, 3, 4]));
}

/// Thesis §4.2.3: a removed server that never learns of its removal times out and campaigns,
/// but the remaining voters, hearing their leader, ignore it: the leader keeps its term.
#[test]
fn a_removed_voter_does_not_disrupt_the_group() {
    let mut net = led_by_1(&[1, 2, 3]);
    change(&mut net, 1, vec![ChangeStep::Remove(NodeId(3))]);
    for _ in 0..100 {
        net.tick_all(1);
    }
    assert_eq!(net.leader(), Some(1));
    assert_eq!(net.node(1).term(), flotilla_raft::Term(1));
}

fn is_leave_joint(message: &flotilla_raft::Message) -> bool {
    let flotilla_raft::MessageBody::AppendEntries { entries, .. } = &message.body else {
        return false;
    };
    let leaves = |entry: &flotilla_raft::Entry| matches!(&entry.payload, EntryPayload::Membership(m) if !m.is_joint());
    entries.iter().any(leaves)
}

/// Raft §6 / thesis §4.3: if the leader fails after C_old,new is committed but before C_new
/// reaches anyone, the next leader (elected by both halves) finishes the change.
#[test]
fn a_new_leader_finishes_leaving_a_joint_configuration() {
    let mut net = Net::with_config(&[1, 2, 3], |id| Config {
        check_quorum: false,
        ..config(id)
    });
    net.campaign(1);
    net.add_empty(4);
    net.drop_messages(is_leave_joint);
    net.node_mut(1)
        .propose_conf_change(vec![add_voter(4)])
        .unwrap();
    net.stabilize();
    net.tick(1);
    net.tick(1);
    assert!(net.node(2).membership().is_joint(), "2 applied C_old,new");
    net.recover();
    net.isolate(1);
    net.campaign(2);
    assert_eq!(net.leader(), Some(2));
    net.tick(2);
    net.tick(2);
    for id in [2, 3, 4] {
        assert_eq!(
            net.node(id).membership(),
            &voters(&[1, 2, 3, 4]),
            "replica {id}"
        );
    }
}

/// Raft §7: a replica added after the log was compacted catches up from the snapshot (which
/// carries the membership as of its last entry) and then from the entries after it.
#[test]
fn a_replica_added_after_compaction_catches_up_from_the_snapshot() {
    let mut net = led_by_1(&[1, 2, 3]);
    for index in 2..=4 {
        net.propose(1, format!("1/{index}").as_bytes());
    }
    net.node_mut(1)
        .compact(flotilla_raft::LogIndex(4), b"state@4".to_vec())
        .unwrap();
    net.stabilize();
    net.add_empty(4);
    change(&mut net, 1, vec![ChangeStep::AddLearner(NodeId(4))]);
    let installed = net.delivered.iter().any(|m| {
        m.to == NodeId(4) && matches!(m.body, flotilla_raft::MessageBody::InstallSnapshot { .. })
    });
    assert!(installed, "entries 1-4 exist only in the snapshot");
    assert_eq!(net.node(4).log().store().first_index().0, 5);
    assert_eq!(net.node(4).log().committed(), net.node(1).log().committed());
    assert_eq!(net.node(4).membership(), &with_learners(&[1, 2, 3], &[4]));
}

/// Raft §6: a restarted replica recovers the membership in force from its committed log.
#[test]
fn a_restarted_replica_recovers_the_membership_from_its_log() {
    let mut net = led_by_1(&[1, 2, 3]);
    net.add_empty(4);
    change(&mut net, 1, vec![add_voter(4)]);
    let store = net.nodes.remove(&2).unwrap().into_store();
    let restarted = node_over(config(2), store);
    assert_eq!(restarted.membership(), &voters(&[1, 2, 3, 4]));
}

/// Thesis §4.2.1: demoting a voter to learner changes the voters, so it goes through a joint
/// configuration; afterwards the learner still receives the log but no longer campaigns.
#[test]
fn demoting_a_voter_to_learner_goes_through_joint_consensus() {
    let mut net = led_by_1(&[1, 2, 3]);
    change(&mut net, 1, vec![ChangeStep::AddLearner(NodeId(3))]);
    let demoted = Membership {
        learners: voters(&[3]).voters,
        ..joint(&[1, 2], &[1, 2, 3])
    };
    let expected = vec![demoted, with_learners(&[1, 2], &[3])];
    assert_eq!(membership_entries(net.node_mut(3)), expected);
    let index = net.propose(1, b"for the learner");
    net.tick(1);
    net.tick(1);
    assert_eq!(net.node(3).log().committed(), index);
    let sent_before = net.delivered.len();
    for _ in 0..50 {
        net.tick(3);
    }
    let campaigns = net.delivered[sent_before..]
        .iter()
        .filter(|m| is_vote_request(m));
    assert_eq!(campaigns.count(), 0);
}

/// Thesis §3.10: a membership change waits for a leadership transfer like any proposal.
#[test]
fn a_membership_change_is_refused_during_a_transfer() {
    let mut leader = settled_leader(1, &[1, 2, 3]);
    leader.propose(b"1/2".to_vec()).unwrap();
    leader.transfer_leader(NodeId(2)).unwrap();
    let refused = leader.propose_conf_change(vec![add_voter(4)]);
    assert_eq!(refused, Err(ProposeError::TransferInProgress));
}

/// Leader 1 of {1, 2, 3, 4} removes itself while 2 is down, and appends one more entry that
/// never leaves it. 3 and 4 acknowledge C_new = {2, 3, 4}; 1 commits it, applies it and steps
/// down before anyone hears of the commit (seed 3894 of the 5-node simulator). Returns the
/// group after `ticks` rounds with 2 still cut off.
fn removed_leader_holds_the_longest_log(mutation: Mutation, ticks: u64) -> Net {
    let mut net = Net::with_config(&[1, 2, 3, 4], move |id| Config {
        mutation,
        ..config(id)
    });
    net.campaign(1);
    net.isolate(2);
    net.drop_messages(is_leave_joint);
    net.node_mut(1)
        .propose_conf_change(vec![ChangeStep::Remove(NodeId(1))])
        .unwrap();
    net.stabilize();
    net.tick(1);
    net.tick(1);
    assert!(net.node(3).membership().is_joint(), "3 applied C_old,new");
    let leader = net.node_mut(1);
    let c_new = leader.stored_entries().pop().expect("C_new");
    assert!(matches!(&c_new.payload, EntryPayload::Membership(m) if !m.is_joint()));
    let (term, index) = (c_new.term.0, c_new.index.0);
    leader.propose(b"only on 1".to_vec()).unwrap();
    let _lost = leader.take();
    for id in [3, 4] {
        let node = net.node_mut(id);
        node.deliver(append(
            1,
            id,
            term,
            (term, index - 1),
            vec![c_new.clone()],
            0,
        ));
        let _ = node.take();
        net.node_mut(1).deliver(accepted(id, 1, term, index));
    }
    let leader = net.node_mut(1);
    let _lost = leader.take();
    assert_eq!(
        leader.role(),
        Role::Follower,
        "1 applied C_new and stepped down"
    );
    assert_eq!(leader.log().committed().0, index);
    assert_eq!(
        leader.log().last_index().0,
        index + 1,
        "1 holds the longest log"
    );
    for id in [3, 4] {
        assert!(net.node(id).log().committed().0 < index, "{id} never heard");
    }
    net.recover();
    net.isolate(2);
    net.tick_all(ticks);
    net
}

/// Configurations take effect when applied, so 3 and 4 count votes by C_old,new, which needs
/// 1 or 2; 1 refuses both for its longer log and, no voter of C_new, never campaigns. Its
/// refusal tells its commit: each of 3 and 4 holds that entry, learns that C_new is
/// committed, applies it, and the two elect under C_new.
#[test]
fn a_refusal_from_a_removed_leader_teaches_the_commit_of_its_removal() {
    let net = removed_leader_holds_the_longest_log(Mutation::None, 200);
    let leader = net.leader().expect("3 or 4 leads");
    assert!([3, 4].contains(&leader));
    assert_eq!(net.node(leader).membership(), &voters(&[2, 3, 4]));
}

/// The same with the commit in vote answers ignored: 3 and 4 stay leaderless.
#[test]
fn without_the_commit_in_refusals_the_removed_leader_blocks_the_group() {
    let net = removed_leader_holds_the_longest_log(Mutation::IgnoreCommitInVoteAnswers, 200);
    assert_eq!(net.leader(), None);
    assert!(net.node(3).membership().is_joint());
}

/// Thesis §4.2.2 with configurations taking effect on apply: a pre-candidate that learns from
/// a vote answer that the configuration removing it is committed applies it and stops
/// campaigning; it never leads a group it is no voter of.
#[test]
fn a_campaign_ends_when_the_configuration_applied_mid_campaign_removes_the_candidate() {
    let mut store = bootstrapped(voters(&[1, 2, 3]));
    let removal = flotilla_raft::Entry {
        payload: EntryPayload::Membership(voters(&[2, 3])),
        ..entry(1, 1)
    };
    store.persist(&flotilla_raft::Persist {
        entries: vec![removal],
        hard_state: Some(hard_state(1, None, 0)),
        ..flotilla_raft::Persist::default()
    });
    let mut node = node_over(config(1), store);
    node.tick_until_campaign();
    let _ = node.take();
    let body = flotilla_raft::MessageBody::VoteResponse {
        pre_vote: true,
        granted: true,
        commit: log_id(1, 1),
    };
    node.deliver(message(2, 1, 2, body));
    let _ = node.take();
    assert_eq!(node.membership(), &voters(&[2, 3]));
    assert_eq!(node.role(), Role::Follower);
    for _ in 0..100 {
        node.tick();
        assert_eq!(node.role(), Role::Follower, "no voter, no campaign");
        let _ = node.take();
    }
}
