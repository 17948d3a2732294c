//! A deterministic simulation of a quorum: voters with real files in
//! temporary directories, a network that delivers, drops or holds messages,
//! crashes and restarts. The state machine is the list of applied records;
//! every run checks that no two voters ever disagree on a prefix.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::node::{Applied, PersistJob, QuorumConfig, QuorumNode};
use raft::eraftpb::Message;

fn encode_state(records: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        out.extend_from_slice(&(r.len() as u32).to_be_bytes());
        out.extend_from_slice(r);
    }
    out
}

fn decode_state(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while bytes.len() >= 4 {
        let len = u32::from_be_bytes(bytes[..4].try_into().expect("4")) as usize;
        out.push(bytes[4..4 + len].to_vec());
        bytes = &bytes[4 + len..];
    }
    out
}

struct Voter {
    node: QuorumNode,
    records: Vec<Vec<u8>>,
    applied: u64,
}

struct Sim {
    dirs: BTreeMap<i32, tempfile::TempDir>,
    voters: BTreeMap<i32, Option<Voter>>,
    ids: Vec<i32>,
    network: VecDeque<Message>,
    /// Voters cut off from everyone (messages to and from them are lost).
    isolated: BTreeSet<i32>,
    /// Drops about one message in `drop_one_in` (0: none).
    drop_one_in: u64,
    /// Deliver messages and ticks to a voter while its ready cycle is in
    /// flight (as the async driver does while the fdatasync runs).
    interleave: bool,
    rng: u64,
}

impl Sim {
    fn new(ids: &[i32]) -> Sim {
        let mut sim = Sim {
            dirs: BTreeMap::new(),
            voters: BTreeMap::new(),
            ids: ids.to_vec(),
            network: VecDeque::new(),
            isolated: BTreeSet::new(),
            drop_one_in: 0,
            interleave: false,
            rng: 1,
        };
        for &id in ids {
            sim.dirs.insert(id, tempfile::tempdir().expect("tempdir"));
            sim.start(id);
        }
        sim
    }

    fn config(&self, id: i32) -> QuorumConfig {
        QuorumConfig {
            node_id: id,
            voters: self.ids.clone(),
            election_ticks: 10,
            heartbeat_ticks: 2,
        }
    }

    fn start(&mut self, id: i32) {
        let (node, restored) =
            QuorumNode::open(self.dirs[&id].path(), &self.config(id)).expect("open");
        let mut voter = Voter {
            node,
            records: Vec::new(),
            applied: 0,
        };
        if let Some(applied) = restored {
            apply(&mut voter, applied);
        }
        self.voters.insert(id, Some(voter));
    }

    fn crash(&mut self, id: i32) {
        self.voters.insert(id, None);
    }

    fn voter(&mut self, id: i32) -> &mut Voter {
        self.voters
            .get_mut(&id)
            .and_then(Option::as_mut)
            .expect("voter is up")
    }

    /// Runs ready cycles and delivers messages until nothing moves.
    fn settle(&mut self) {
        // Proposals made while a leader's ready cycle is in flight.
        let mut propose_budget = 2;
        for _ in 0..10_000 {
            let mut moved = false;
            for id in self.ids.clone() {
                let Some(voter) = self.voters.get_mut(&id).and_then(Option::as_mut) else {
                    continue;
                };
                while let Some(step) = voter.node.begin_ready() {
                    moved = true;
                    for a in step.apply {
                        apply(voter, a);
                    }
                    self.network.extend(step.send);
                    if self.interleave {
                        let mut kept = VecDeque::new();
                        while let Some(message) = self.network.pop_front() {
                            if crate::node_id(message.to) == id && !self.isolated.contains(&id) {
                                voter.node.step(message).expect("step");
                            } else {
                                kept.push_back(message);
                            }
                        }
                        self.network = kept;
                        voter.node.tick();
                        if propose_budget > 0 && voter.node.is_leader() {
                            propose_budget -= 1;
                            voter
                                .node
                                .propose(b"during-ready".to_vec())
                                .expect("leader");
                        }
                    }
                    let persisted = match step.persist {
                        PersistJob::Append(job) => job.run().map(|()| crate::Persisted::Appended),
                        job => job.run(),
                    }
                    .expect("persist");
                    let end = voter.node.end_ready(persisted);
                    for a in end.apply {
                        apply(voter, a);
                    }
                    self.network.extend(end.send);
                }
            }
            while let Some(message) = self.network.pop_front() {
                moved = true;
                let (from, to) = (crate::node_id(message.from), crate::node_id(message.to));
                let dropped = self.drop_one_in > 0 && self.random(self.drop_one_in) == 0;
                let down = self.voters.get(&to).is_none_or(Option::is_none);
                if self.isolated.contains(&from) || self.isolated.contains(&to) || dropped || down {
                    if let Some(sender) = self.voters.get_mut(&from).and_then(Option::as_mut) {
                        sender.node.report_undelivered(&message);
                    }
                    continue;
                }
                if std::env::var("SIM_TRACE").is_ok() {
                    eprintln!(
                        "{from}->{to} {:?} idx={} term={} ents={} snap={}",
                        message.get_msg_type(),
                        message.index,
                        message.term,
                        message.entries.len(),
                        message.get_snapshot().get_metadata().index
                    );
                }
                if let Some(voter) = self.voters.get_mut(&to).and_then(Option::as_mut) {
                    voter.node.step(message).expect("step");
                }
            }
            if !moved {
                self.check_agreement();
                return;
            }
        }
        panic!("the simulation did not settle");
    }

    /// A number in `0..n` from a deterministic generator.
    fn random(&mut self, n: u64) -> u64 {
        self.rng = self
            .rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.rng >> 33) % n.max(1)
    }

    fn tick(&mut self, times: usize) {
        for _ in 0..times {
            for voter in self.voters.values_mut().flatten() {
                voter.node.tick();
            }
            self.settle();
        }
    }

    /// Ticks until a leader among the running, connected voters is known to
    /// all of them.
    fn leader(&mut self) -> i32 {
        for _ in 0..200 {
            self.tick(1);
            let reachable: Vec<i32> = self
                .voters
                .iter()
                .filter(|(id, v)| v.is_some() && !self.isolated.contains(id))
                .map(|(id, _)| *id)
                .collect();
            let leaders: Vec<i32> = reachable
                .iter()
                .copied()
                .filter(|id| self.voters[id].as_ref().is_some_and(|v| v.node.is_leader()))
                .collect();
            if let [leader] = leaders[..] {
                if reachable.iter().all(|id| {
                    self.voters[id].as_ref().and_then(|v| v.node.leader()) == Some(leader)
                }) {
                    return leader;
                }
            }
        }
        panic!("no leader elected");
    }

    fn propose(&mut self, leader: i32, record: &str) {
        self.voter(leader)
            .node
            .propose(record.as_bytes().to_vec())
            .expect("propose");
        self.settle();
    }

    fn records(&self, id: i32) -> Vec<String> {
        self.voters[&id]
            .as_ref()
            .expect("up")
            .records
            .iter()
            .map(|r| String::from_utf8(r.clone()).expect("utf8"))
            .collect()
    }

    /// No two voters disagree: one's applied records are a prefix of the
    /// other's.
    fn check_agreement(&self) {
        let all: Vec<&Vec<Vec<u8>>> = self.voters.values().flatten().map(|v| &v.records).collect();
        for a in &all {
            for b in &all {
                let n = a.len().min(b.len());
                assert_eq!(a[..n], b[..n], "voters diverged");
            }
        }
    }
}

fn apply(voter: &mut Voter, applied: Applied) {
    match applied {
        Applied::Snapshot { index, data } => {
            voter.records = decode_state(&data);
            voter.applied = index;
        }
        Applied::Entry { index, data } => {
            assert!(index > voter.applied, "applied twice or out of order");
            voter.records.push(data);
            voter.applied = index;
        }
    }
}

fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

#[test]
fn three_voters_elect_a_leader_and_commit_in_order_everywhere() {
    let mut sim = Sim::new(&[1, 2, 3]);
    let leader = sim.leader();
    for r in numbered("r", 20) {
        sim.propose(leader, &r);
    }
    sim.tick(3);
    for id in [1, 2, 3] {
        assert_eq!(sim.records(id), numbered("r", 20), "voter {id}");
    }
    // Followers refuse proposals.
    let follower = [1, 2, 3]
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");
    assert!(sim.voter(follower).node.propose(b"x".to_vec()).is_err());
}

#[test]
fn a_restarted_voter_replays_its_log_and_catches_up() {
    let mut sim = Sim::new(&[0, 1, 2]);
    let leader = sim.leader();
    for r in numbered("a", 10) {
        sim.propose(leader, &r);
    }
    sim.tick(3);
    let follower = [0, 1, 2]
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");
    sim.crash(follower);
    for r in numbered("b", 5) {
        sim.propose(leader, &r);
    }
    sim.start(follower);
    sim.tick(5);
    let mut want = numbered("a", 10);
    want.extend(numbered("b", 5));
    assert_eq!(sim.records(follower), want);
}

#[test]
fn losing_the_leader_elects_another_and_nothing_committed_is_lost() {
    let mut sim = Sim::new(&[1, 2, 3]);
    let first = sim.leader();
    for r in numbered("x", 8) {
        sim.propose(first, &r);
    }
    sim.tick(2);
    sim.crash(first);
    let second = sim.leader();
    assert_ne!(first, second);
    for r in numbered("y", 8) {
        sim.propose(second, &r);
    }
    sim.start(first);
    sim.tick(10);
    let mut want = numbered("x", 8);
    want.extend(numbered("y", 8));
    for id in [1, 2, 3] {
        assert_eq!(sim.records(id), want, "voter {id}");
    }
}

#[test]
fn an_isolated_leader_steps_down_and_takes_no_proposals() {
    let mut sim = Sim::new(&[1, 2, 3]);
    let old = sim.leader();
    sim.propose(old, "before");
    sim.isolated.insert(old);
    // The others elect a new leader; the isolated one loses its quorum
    // (check_quorum) and stops leading.
    let new = sim.leader();
    assert_ne!(old, new);
    sim.tick(40);
    assert!(!sim.voter(old).node.is_leader());
    assert!(sim.voter(old).node.propose(b"lost".to_vec()).is_err());
    sim.propose(new, "after");
    sim.isolated.clear();
    sim.tick(20);
    for id in [1, 2, 3] {
        assert_eq!(sim.records(id), vec!["before", "after"], "voter {id}");
    }
}

#[test]
fn two_of_three_down_commits_nothing_until_one_returns() {
    let mut sim = Sim::new(&[1, 2, 3]);
    let leader = sim.leader();
    sim.propose(leader, "one");
    let others: Vec<i32> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();
    sim.crash(others[0]);
    sim.crash(others[1]);
    if sim.voter(leader).node.propose(b"two".to_vec()).is_ok() {
        sim.settle();
    }
    sim.tick(40);
    assert_eq!(
        sim.records(leader),
        vec!["one"],
        "nothing commits without a majority"
    );
    assert!(!sim.voter(leader).node.is_leader(), "stepped down");
    sim.start(others[0]);
    let leader = sim.leader();
    sim.propose(leader, "three");
    sim.tick(5);
    let records = sim.records(leader);
    assert_eq!(records.first().map(String::as_str), Some("one"));
    assert_eq!(records.last().map(String::as_str), Some("three"));
}

#[test]
fn a_lagging_voter_gets_a_snapshot_after_compaction() {
    let mut sim = Sim::new(&[1, 2, 3]);
    let leader = sim.leader();
    let lagging = [1, 2, 3]
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");
    sim.crash(lagging);
    for r in numbered("s", 30) {
        sim.propose(leader, &r);
    }
    sim.tick(2);
    // Every running voter compacts its log behind a snapshot of its state.
    for id in [1, 2, 3] {
        let Some(voter) = sim.voters.get_mut(&id).and_then(Option::as_mut) else {
            continue;
        };
        let state = encode_state(&voter.records);
        let job = voter.node.compact(voter.applied, state).expect("compact");
        voter.node.compacted(job.run());
        assert_eq!(voter.node.log_entries(), 0);
    }
    sim.start(lagging);
    sim.tick(10);
    assert_eq!(sim.records(lagging), numbered("s", 30));
    sim.propose(leader, "after");
    sim.tick(2);
    // And everything, snapshot included, survives restarts.
    for id in [1, 2, 3] {
        sim.crash(id);
        sim.start(id);
    }
    let leader = sim.leader();
    sim.propose(leader, "last");
    sim.tick(3);
    let mut want = numbered("s", 30);
    want.push("after".into());
    want.push("last".into());
    for id in [1, 2, 3] {
        assert_eq!(sim.records(id), want, "voter {id}");
    }
}

#[test]
fn random_crashes_partitions_and_drops_never_lose_a_committed_record() {
    for seed in 1..=12u64 {
        let mut sim = Sim::new(&[1, 2, 3]);
        sim.rng = seed;
        sim.drop_one_in = 7;
        sim.interleave = seed % 2 == 0;
        // Every record some voter applied (so: committed), in order.
        let mut committed: Vec<Vec<u8>> = Vec::new();
        let mut next = 0;
        sim.leader();
        for _ in 0..800 {
            match sim.random(100) {
                0..=1 => {
                    let id = 1 + sim.random(3) as i32;
                    sim.crash(id);
                }
                2..=6 => {
                    let id = 1 + sim.random(3) as i32;
                    if sim.voters[&id].is_none() {
                        sim.start(id);
                    }
                }
                7..=8 => {
                    let id = 1 + sim.random(3) as i32;
                    if !sim.isolated.remove(&id) {
                        sim.isolated.insert(id);
                    }
                }
                9..=39 => {
                    let leaders: Vec<i32> = sim
                        .voters
                        .iter()
                        .filter(|(_, v)| v.as_ref().is_some_and(|v| v.node.is_leader()))
                        .map(|(id, _)| *id)
                        .collect();
                    for id in leaders {
                        let record = format!("{seed}-{next}").into_bytes();
                        next += 1;
                        let _ = sim.voter(id).node.propose(record);
                    }
                    sim.settle();
                }
                _ => sim.tick(1),
            }
            for voter in sim.voters.values().flatten() {
                if voter.records.len() > committed.len() {
                    committed = voter.records.clone();
                }
            }
        }
        eprintln!(
            "seed {seed}: {} committed of {next} proposed",
            committed.len()
        );
        // Heal everything; every committed record is on every voter.
        sim.drop_one_in = 0;
        sim.isolated.clear();
        for id in [1, 2, 3] {
            if sim.voters[&id].is_none() {
                sim.start(id);
            }
        }
        let leader = sim.leader();
        sim.propose(leader, "final");
        sim.tick(20);
        for id in [1, 2, 3] {
            let records = &sim.voters[&id].as_ref().expect("up").records;
            assert!(records.len() > committed.len(), "seed {seed} voter {id}");
            assert_eq!(
                records[..committed.len()],
                committed[..],
                "seed {seed} voter {id}"
            );
        }
    }
}
