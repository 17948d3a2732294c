//! One voter of the controller quorum: a raft-rs `RawNode` over the durable
//! log of [`crate::disk`], driven from outside.
//!
//! The caller owns every effect, in raft's order:
//!
//! 1. feed it: [`QuorumNode::step`] (messages from peers), [`QuorumNode::tick`]
//!    (a fixed interval), [`QuorumNode::propose`] (new metadata records);
//! 2. [`QuorumNode::begin_ready`] returns messages to send now, committed
//!    records to apply, and an [`AppendJob`] to run (possibly on a blocking
//!    thread) before anything else: raft requires entries and the hard state
//!    to be durable before the messages that depend on them go out;
//! 3. after the job ran, [`QuorumNode::end_ready`] returns the messages that
//!    waited for it and more committed records to apply.
//!
//! Snapshots: the caller's state at an applied index is handed to
//! [`QuorumNode::compact`], which writes it with the log cut behind it; a
//! follower too far behind receives it and gets it back as
//! [`Applied::Snapshot`].
//!
//! Node ids are Kafka's `node.id`s (from 0); raft ids are those plus one,
//! because raft reserves 0.

use std::cell::RefCell;
use std::io;
use std::path::Path;
use std::rc::Rc;

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Message, Snapshot};
use raft::storage::MemStorage;
use raft::{RawNode, Ready, StateRole, Storage};

use crate::disk::{AppendJob, DiskLog, RewriteJob};

/// The raft id of a Kafka node id.
pub fn raft_id(node_id: i32) -> u64 {
    assert!(node_id >= 0, "node ids are not negative");
    node_id as u64 + 1
}

/// The Kafka node id of a raft id.
pub fn node_id(raft_id: u64) -> i32 {
    assert!(raft_id > 0, "raft id 0 is no node");
    (raft_id - 1) as i32
}

/// How a voter runs.
#[derive(Clone, Debug)]
pub struct QuorumConfig {
    /// This node's id (`node.id`).
    pub node_id: i32,
    /// Every voter's node id (`controller.quorum.voters`), this one included.
    pub voters: Vec<i32>,
    /// Ticks without a leader's heartbeat before an election (randomized
    /// up to twice as many).
    pub election_ticks: usize,
    /// Ticks between a leader's heartbeats.
    pub heartbeat_ticks: usize,
}

/// Why a call was refused.
#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    /// Only the leader takes proposals.
    #[error("this node is not the quorum leader")]
    NotLeader,
    /// raft refused the call.
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// The durable log could not be read or written.
    #[error("metadata log: {0}")]
    Io(#[from] io::Error),
}

/// Something committed, to apply to the state machine in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Replace the whole state with this snapshot taken at `index`.
    Snapshot {
        /// Index of the last entry the snapshot covers.
        index: u64,
        /// The state, as the leader's state machine encoded it.
        data: Vec<u8>,
    },
    /// Apply one proposed record.
    Entry {
        /// Its log index.
        index: u64,
        /// What was proposed.
        data: Vec<u8>,
    },
}

/// The first half of a ready cycle.
pub struct ReadyStep {
    /// Messages that may go out before the job runs.
    pub send: Vec<Message>,
    /// Committed records to apply now.
    pub apply: Vec<Applied>,
    /// What must be durable before [`QuorumNode::end_ready`].
    pub persist: PersistJob,
}

/// What must be made durable.
pub enum PersistJob {
    /// Append entries and the hard state.
    Append(AppendJob),
    /// A snapshot from the leader replaces the log.
    Install(RewriteJob),
}

/// The outcome of a [`PersistJob`], to hand back.
pub enum Persisted {
    /// An append completed.
    Appended,
    /// A snapshot was installed; the new log file.
    Installed(std::fs::File, u64),
}

impl PersistJob {
    /// Performs the job. Blocking.
    pub fn run(self) -> io::Result<Persisted> {
        match self {
            PersistJob::Append(job) => job.run().map(|()| Persisted::Appended),
            PersistJob::Install(job) => job.run().map(|(f, len)| Persisted::Installed(f, len)),
        }
    }
}

/// The second half of a ready cycle.
pub struct EndStep {
    /// Messages to send.
    pub send: Vec<Message>,
    /// Committed records to apply now (after those of the first half).
    pub apply: Vec<Applied>,
}

/// raft's storage: the in-memory log (raft-rs's `MemStorage`, used from one
/// thread) plus the latest snapshot with the state machine's bytes, which
/// `MemStorage` does not keep.
struct QuorumStorage {
    mem: MemStorage,
    snapshot: Rc<RefCell<Snapshot>>,
}

impl Storage for QuorumStorage {
    fn initial_state(&self) -> raft::Result<raft::RaftState> {
        self.mem.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: raft::GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.mem.entries(low, high, max_size, context)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.mem.term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.mem.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.mem.last_index()
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let snapshot = self.snapshot.borrow();
        if snapshot.get_metadata().index < request_index || snapshot.get_metadata().index == 0 {
            return Err(raft::Error::Store(
                raft::StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(snapshot.clone())
    }
}

/// One voter.
pub struct QuorumNode {
    node: RawNode<QuorumStorage>,
    disk: DiskLog,
    snapshot: Rc<RefCell<Snapshot>>,
    in_flight: Option<Ready>,
    /// A compaction job is rewriting the log: no ready cycle until it ends.
    compacting: bool,
    /// The leader's node id as last seen (raft's soft state).
    leader: Option<i32>,
    /// Ticks, peer messages and proposals that arrived while a ready cycle
    /// was in flight: between `ready` and `advance` raft must neither
    /// produce messages (unless it leads) nor grow its unstable log (its
    /// tail must still be the ready's last entry), so they are fed in
    /// after `end_ready`.
    deferred: Vec<Deferred>,
}

/// Input held back during a ready cycle.
enum Deferred {
    Tick,
    Step(Message),
    Propose(Vec<u8>),
}

/// Inputs held back during one ready cycle at most; beyond, peer messages
/// are dropped (raft retries them).
const DEFERRED_MAX: usize = 4096;

/// A slog drain that forwards raft's log lines to the `log` crate.
fn logger() -> slog::Logger {
    slog::Logger::root(slog_stdlog::StdLog.fuse(), slog::o!())
}

use slog::Drain as _;

impl QuorumNode {
    /// Opens the voter's log in `dir` (creating it) and returns the node and
    /// the snapshot its state machine must start from, if any. Committed
    /// entries after the snapshot come again through the ready cycle.
    pub fn open(
        dir: &Path,
        config: &QuorumConfig,
    ) -> Result<(QuorumNode, Option<Applied>), QuorumError> {
        assert!(
            config.voters.contains(&config.node_id),
            "a voter is in its own quorum"
        );
        let (disk, loaded) = DiskLog::open(dir)?;
        let voters: Vec<u64> = config.voters.iter().map(|v| raft_id(*v)).collect();
        let mem = MemStorage::new_with_conf_state(ConfState::from((voters, vec![])));
        let mut restored = None;
        let snapshot = loaded.snapshot.unwrap_or_default();
        let applied = snapshot.get_metadata().index;
        if applied > 0 {
            mem.wl().apply_snapshot(snapshot.clone())?;
            restored = Some(Applied::Snapshot {
                index: applied,
                data: snapshot.data.to_vec(),
            });
        }
        mem.wl().append(&loaded.entries)?;
        if let Some(hs) = loaded.hard_state {
            mem.wl().set_hardstate(hs);
        }
        let raft_config = raft::Config {
            id: raft_id(config.node_id),
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            applied,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            // A leader that loses touch with a majority steps down, so an
            // isolated controller stops taking metadata changes.
            check_quorum: true,
            // A node returning from a partition does not disrupt a
            // healthy leader with a higher term.
            pre_vote: true,
            ..raft::Config::default()
        };
        raft_config.validate()?;
        let snapshot = Rc::new(RefCell::new(snapshot));
        let storage = QuorumStorage {
            mem,
            snapshot: snapshot.clone(),
        };
        let node = RawNode::new(&raft_config, storage, &logger())?;
        Ok((
            QuorumNode {
                node,
                disk,
                snapshot,
                in_flight: None,
                deferred: Vec::new(),
                compacting: false,
                leader: None,
            },
            restored,
        ))
    }

    /// Advances raft's clock by one tick.
    pub fn tick(&mut self) {
        if self.in_flight.is_some() {
            self.deferred.push(Deferred::Tick);
            return;
        }
        self.node.tick();
    }

    /// Takes a message from a peer. Messages from unknown or stale peers are
    /// ignored by raft.
    pub fn step(&mut self, message: Message) -> Result<(), QuorumError> {
        if self.in_flight.is_some() {
            if self.deferred.len() < DEFERRED_MAX {
                self.deferred.push(Deferred::Step(message));
            }
            return Ok(());
        }
        self.step_now(message)
    }

    fn step_now(&mut self, message: Message) -> Result<(), QuorumError> {
        match self.node.step(message) {
            Ok(()) | Err(raft::Error::StepPeerNotFound) | Err(raft::Error::StepLocalMsg) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Proposes a record; it comes back as [`Applied::Entry`] on every voter
    /// once committed. Only the leader takes proposals.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<(), QuorumError> {
        if !self.is_leader() {
            return Err(QuorumError::NotLeader);
        }
        if self.in_flight.is_some() {
            // Proposed after the cycle; if leadership is lost by then the
            // record is dropped and its proposer times out or sees the new
            // term.
            self.deferred.push(Deferred::Propose(data));
            return Ok(());
        }
        self.propose_now(data)
    }

    fn propose_now(&mut self, data: Vec<u8>) -> Result<(), QuorumError> {
        self.node.propose(Vec::new(), data).map_err(|e| match e {
            raft::Error::ProposalDropped => QuorumError::NotLeader,
            e => e.into(),
        })
    }

    /// True when this node leads the quorum.
    pub fn is_leader(&self) -> bool {
        self.node.raft.state == StateRole::Leader
    }

    /// The leader's node id, when one is known.
    pub fn leader(&self) -> Option<i32> {
        let id = self.node.raft.leader_id;
        (id != raft::INVALID_ID).then(|| node_id(id))
    }

    /// The current term (Kafka's controller epoch).
    pub fn term(&self) -> u64 {
        self.node.raft.term
    }

    /// The highest committed index.
    pub fn committed(&self) -> u64 {
        self.node.raft.raft_log.committed
    }

    /// Tells raft a message could not be delivered: it backs off sending to
    /// that peer, and a lost snapshot is sent again later.
    pub fn report_undelivered(&mut self, message: &Message) {
        self.node.report_unreachable(message.to);
        if message.get_msg_type() == raft::eraftpb::MessageType::MsgSnapshot {
            self.node
                .report_snapshot(message.to, raft::SnapshotStatus::Failure);
        }
    }

    /// True when a ready cycle has work and none (nor a compaction) is in
    /// flight.
    pub fn has_ready(&self) -> bool {
        self.in_flight.is_none() && !self.compacting && self.node.has_ready()
    }

    /// Starts a ready cycle (see the module documentation). `None` when
    /// there is nothing to do or a cycle is in flight.
    pub fn begin_ready(&mut self) -> Option<ReadyStep> {
        if !self.has_ready() {
            return None;
        }
        let mut ready = self.node.ready();
        if let Some(soft) = ready.ss() {
            self.leader = (soft.leader_id != raft::INVALID_ID).then(|| node_id(soft.leader_id));
        }
        let send = ready.take_messages();
        let mut apply = Vec::new();
        let mut install = None;
        if !ready.snapshot().is_empty() {
            let snapshot = ready.snapshot().clone();
            let index = snapshot.get_metadata().index;
            if let Err(e) = self
                .node
                .mut_store()
                .mem
                .wl()
                .apply_snapshot(snapshot.clone())
            {
                // raft only hands over snapshots newer than the log.
                log::error!("installing metadata snapshot {index}: {e}");
            } else {
                apply.push(Applied::Snapshot {
                    index,
                    data: snapshot.data.to_vec(),
                });
                *self.snapshot.borrow_mut() = snapshot.clone();
                install = Some(snapshot);
            }
        }
        apply.extend(committed(ready.take_committed_entries()));
        let store = &self.node.mut_store().mem;
        if let Err(e) = store.wl().append(ready.entries()) {
            log::error!("appending to the in-memory metadata log: {e}");
        }
        if let Some(hs) = ready.hs() {
            store.wl().set_hardstate(hs.clone());
        }
        let persist = match install {
            Some(snapshot) => {
                let hs = store.rl().hard_state().clone();
                let after: Vec<Entry> = ready.entries().clone();
                PersistJob::Install(self.disk.rewrite(&snapshot, &hs, &after))
            }
            None => PersistJob::Append(self.disk.append(
                ready.entries(),
                ready.hs(),
                ready.must_sync(),
            )),
        };
        self.in_flight = Some(ready);
        Some(ReadyStep {
            send,
            apply,
            persist,
        })
    }

    /// Finishes the ready cycle once its [`PersistJob`] is durable.
    pub fn end_ready(&mut self, persisted: Persisted) -> EndStep {
        let mut ready = self
            .in_flight
            .take()
            .expect("end_ready follows begin_ready");
        if let Persisted::Installed(file, len) = persisted {
            self.disk.rewritten(file, len);
        }
        let mut send = ready.take_persisted_messages();
        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.node
                .mut_store()
                .mem
                .wl()
                .mut_hard_state()
                .set_commit(commit);
        }
        send.extend(light.take_messages());
        let apply = committed(light.take_committed_entries());
        self.node.advance_apply();
        for input in std::mem::take(&mut self.deferred) {
            match input {
                Deferred::Tick => {
                    self.node.tick();
                }
                Deferred::Step(message) => {
                    if let Err(e) = self.step_now(message) {
                        log::debug!("raft step: {e}");
                    }
                }
                Deferred::Propose(data) => {
                    if let Err(e) = self.propose_now(data) {
                        log::debug!("deferred proposal dropped: {e}");
                    }
                }
            };
        }
        EndStep { send, apply }
    }

    /// Index of the latest snapshot (0 when none).
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot.borrow().get_metadata().index
    }

    /// Entries in the log after the latest snapshot.
    pub fn log_entries(&self) -> u64 {
        let store = self.node.store();
        store
            .last_index()
            .unwrap_or(0)
            .saturating_sub(self.snapshot_index())
    }

    /// Takes a snapshot of the state machine at `applied` (every record up
    /// to it applied, and `state` its encoding): a job writing it and the
    /// log cut behind it. Only between ready cycles; no ready cycle starts
    /// until the job's result is handed to [`QuorumNode::compacted`].
    pub fn compact(&mut self, applied: u64, state: Vec<u8>) -> Result<RewriteJob, QuorumError> {
        assert!(self.in_flight.is_none(), "compaction between ready cycles");
        assert!(!self.compacting, "one compaction at a time");
        assert!(
            applied <= self.committed(),
            "snapshot of uncommitted records"
        );
        let store = &self.node.store().mem;
        let term = store.term(applied)?;
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().index = applied;
        snapshot.mut_metadata().term = term;
        snapshot
            .mut_metadata()
            .set_conf_state(store.initial_state()?.conf_state);
        snapshot.data = state.into();
        let last = store.last_index()?;
        let after = if last > applied {
            store.entries(
                applied + 1,
                last + 1,
                None,
                raft::GetEntriesContext::empty(false),
            )?
        } else {
            Vec::new()
        };
        let hs = store.rl().hard_state().clone();
        let job = self.disk.rewrite(&snapshot, &hs, &after);
        *self.snapshot.borrow_mut() = snapshot;
        self.compacting = true;
        Ok(job)
    }

    /// Adopts the outcome of a [`QuorumNode::compact`] job: on success the
    /// rewritten log, and the in-memory entries the snapshot covers are
    /// dropped; on failure the old files stay in use (the job replaced
    /// nothing, or only the snapshot, which the old log still follows).
    pub fn compacted(&mut self, result: io::Result<(std::fs::File, u64)>) {
        self.compacting = false;
        let (file, len) = match result {
            Ok(done) => done,
            Err(e) => {
                log::error!("compacting the metadata log failed: {e}");
                return;
            }
        };
        self.disk.rewritten(file, len);
        // Keep the snapshot's own entry in memory: `MemStorage` knows its
        // first index from its entries (its snapshot metadata is only set
        // when a snapshot is installed), so it must never run empty.
        let index = self.snapshot_index();
        if let Err(e) = self.node.mut_store().mem.wl().compact(index) {
            log::warn!("compacting the in-memory metadata log to {index}: {e}");
        }
    }

    /// The hard state as last persisted (for tests and diagnostics).
    pub fn hard_state(&self) -> HardState {
        self.node.store().mem.rl().hard_state().clone()
    }
}

/// The proposals among committed entries (raft's own empty entries and
/// configuration changes are not records).
fn committed(entries: Vec<Entry>) -> Vec<Applied> {
    entries
        .into_iter()
        .filter(|e| e.get_entry_type() == EntryType::EntryNormal && !e.data.is_empty())
        .map(|e| Applied::Entry {
            index: e.index,
            data: e.data.to_vec(),
        })
        .collect()
}

/// Encodes a raft message for the wire.
pub fn encode_message(message: &Message) -> Vec<u8> {
    message.write_to_bytes().expect("encoding a raft message")
}

/// Decodes a raft message from the wire; bad bytes are an error.
pub fn decode_message(bytes: &[u8]) -> Result<Message, QuorumError> {
    Message::parse_from_bytes(bytes)
        .map_err(|e| QuorumError::Io(io::Error::new(io::ErrorKind::InvalidData, e.to_string())))
}
