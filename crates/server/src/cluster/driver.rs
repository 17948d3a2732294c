//! The async shell around a quorum voter ([`ringbroker_quorum::QuorumNode`]):
//! it ticks raft's clock, steps messages from peers, sends raft's messages
//! over [`Link`]s, runs the durable-write jobs of each ready cycle on the
//! shard's blocking pool (so the executor never waits on fdatasync),
//! applies committed records to the state machine in order, compacts the
//! log behind snapshots, and resolves the futures of proposals once their
//! record is applied.
//!
//! A proposal is tagged with a token (this node's id and a counter, in the
//! record's first 12 bytes) so the voter that proposed it recognises it
//! when it comes back committed; a proposal that does not commit within its
//! timeout or whose proposer loses leadership fails, and the caller retries
//! against the new leader.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use ringbroker_quorum::{
    decode_message, encode_message, Applied, Message, PersistJob, Persisted, QuorumNode,
};

use super::transport::{frame, Link, KIND_RAFT};

/// What the quorum replicates.
pub trait StateMachine {
    /// Applies a committed record at `index`; the answer goes to the
    /// proposer.
    fn apply(&mut self, index: u64, record: &[u8]) -> Vec<u8>;
    /// Replaces the whole state with a snapshot taken at `index`.
    fn restore(&mut self, index: u64, snapshot: &[u8]);
    /// Encodes the whole state (for a snapshot).
    fn snapshot(&self) -> Vec<u8>;
}

/// Why a proposal did not take effect.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// This voter does not lead the quorum; the leader, when known.
    #[error("not the controller (leader: {0:?})")]
    NotLeader(Option<i32>),
    /// The record did not commit in time (no majority reachable).
    #[error("the metadata change did not commit in time")]
    Timeout,
}

/// Where a proposal's outcome goes.
type ProposalReply = flume::Sender<Result<Vec<u8>, ProposeError>>;

/// How often raft's clock ticks.
pub const TICK: Duration = Duration::from_millis(100);
/// Entries kept in the log past the latest snapshot before compacting.
const COMPACT_AFTER_ENTRIES: u64 = 10_000;
/// Bytes of the proposal token at the start of every record.
const TOKEN_BYTES: usize = 12;

/// A voter with its peers and state machine.
pub struct QuorumDriver<S: StateMachine> {
    node_id: i32,
    node: RefCell<QuorumNode>,
    machine: RefCell<S>,
    peers: HashMap<i32, Link>,
    /// Raft messages the links could not deliver, reported to raft on the
    /// next turn.
    undelivered: Rc<RefCell<Vec<Vec<u8>>>>,
    pending: RefCell<HashMap<u64, ProposalReply>>,
    next_token: Cell<u64>,
    wake: event_listener::Event,
    applied: Cell<u64>,
    term: Cell<u64>,
}

fn token_of(record: &[u8]) -> Option<(i32, u64)> {
    if record.len() < TOKEN_BYTES {
        return None;
    }
    let node = i32::from_be_bytes(record[..4].try_into().ok()?);
    let counter = u64::from_be_bytes(record[4..12].try_into().ok()?);
    Some((node, counter))
}

impl<S: StateMachine + 'static> QuorumDriver<S> {
    /// A driver for `node` with links to the other voters at `peers`
    /// (node id → CONTROLLER address). `restored` is what the node's open
    /// returned (a snapshot to start the machine from).
    pub fn new(
        node_id: i32,
        node: QuorumNode,
        restored: Option<Applied>,
        mut machine: S,
        peers: &[(i32, SocketAddr)],
    ) -> Rc<QuorumDriver<S>> {
        let mut applied = 0;
        if let Some(Applied::Snapshot { index, data }) = restored {
            machine.restore(index, &data);
            applied = index;
        }
        let undelivered = Rc::new(RefCell::new(Vec::new()));
        let links = peers
            .iter()
            .filter(|(id, _)| *id != node_id)
            .map(|(id, addr)| {
                let lost = undelivered.clone();
                let link = Link::start(*addr, Rc::new(move |frame| lost.borrow_mut().push(frame)));
                (*id, link)
            })
            .collect();
        Rc::new(QuorumDriver {
            node_id,
            node: RefCell::new(node),
            machine: RefCell::new(machine),
            peers: links,
            undelivered,
            pending: RefCell::new(HashMap::new()),
            next_token: Cell::new(1),
            wake: event_listener::Event::new(),
            applied: Cell::new(applied),
            term: Cell::new(0),
        })
    }

    /// Runs the voter until the executor stops it: ticks and ready cycles.
    pub async fn run(self: Rc<Self>) {
        let ticker = {
            let this = self.clone();
            glommio::spawn_local(async move {
                loop {
                    glommio::timer::sleep(TICK).await;
                    this.node.borrow_mut().tick();
                    this.wake.notify(1);
                }
            })
            .detach()
        };
        loop {
            let listener = self.wake.listen();
            self.report_undelivered();
            let mut worked = false;
            loop {
                let step = self.node.borrow_mut().begin_ready();
                let Some(step) = step else { break };
                worked = true;
                self.send(step.send);
                self.apply(step.apply);
                let persisted = run_blocking(step.persist).await;
                let persisted = match persisted {
                    Ok(p) => p,
                    Err(e) => {
                        // The metadata log cannot be written: this voter
                        // must not acknowledge anything more. Stop it.
                        log::error!("metadata log write failed: {e}; this controller stops");
                        drop(ticker);
                        return;
                    }
                };
                let end = self.node.borrow_mut().end_ready(persisted);
                self.send(end.send);
                self.apply(end.apply);
            }
            self.after_turn().await;
            if !worked {
                listener.await;
            }
        }
    }

    fn report_undelivered(&self) {
        let frames = std::mem::take(&mut *self.undelivered.borrow_mut());
        let mut node = self.node.borrow_mut();
        for frame in frames {
            // The frame is [length][kind][message].
            if let Ok(message) = decode_message(frame.get(5..).unwrap_or_default()) {
                node.report_undelivered(&message);
            }
        }
    }

    fn send(&self, messages: Vec<Message>) {
        for message in messages {
            let to = ringbroker_quorum::node_id(message.to);
            let Some(link) = self.peers.get(&to) else {
                continue;
            };
            if let Err(frame) = link.send(frame(KIND_RAFT, &encode_message(&message))) {
                self.undelivered.borrow_mut().push(frame);
            }
        }
    }

    fn apply(&self, applied: Vec<Applied>) {
        for a in applied {
            match a {
                Applied::Snapshot { index, data } => {
                    self.machine.borrow_mut().restore(index, &data);
                    self.applied.set(index);
                }
                Applied::Entry { index, data } => {
                    assert!(index > self.applied.get(), "records apply in order, once");
                    let answer = self
                        .machine
                        .borrow_mut()
                        .apply(index, data.get(TOKEN_BYTES..).unwrap_or_default());
                    self.applied.set(index);
                    if let Some((node, counter)) = token_of(&data) {
                        if node == self.node_id {
                            if let Some(reply) = self.pending.borrow_mut().remove(&counter) {
                                let _ignored = reply.try_send(Ok(answer));
                            }
                        }
                    }
                }
            }
        }
    }

    /// Fails proposals after a term change (their fate is unknown to this
    /// voter: the caller retries through the new leader, and records are
    /// applied idempotently where that matters) and compacts a long log.
    async fn after_turn(&self) {
        let term = self.node.borrow().term();
        if term != self.term.replace(term) {
            let leader = self.node.borrow().leader();
            for (_, reply) in self.pending.borrow_mut().drain() {
                let _ignored = reply.try_send(Err(ProposeError::NotLeader(leader)));
            }
        }
        let (entries, applied) = (self.node.borrow().log_entries(), self.applied.get());
        if entries > COMPACT_AFTER_ENTRIES && applied > self.node.borrow().snapshot_index() {
            let state = self.machine.borrow().snapshot();
            let job = self.node.borrow_mut().compact(applied, state);
            match job {
                Ok(job) => {
                    let result = glommio::executor().spawn_blocking(move || job.run()).await;
                    self.node.borrow_mut().compacted(result);
                }
                Err(e) => log::warn!("compacting the metadata log: {e}"),
            }
        }
    }

    /// Steps a raft message from a peer.
    pub fn step(&self, bytes: &[u8]) {
        match decode_message(bytes) {
            Ok(message) => {
                if let Err(e) = self.node.borrow_mut().step(message) {
                    log::debug!("raft step: {e}");
                }
                self.wake.notify(1);
            }
            Err(e) => log::warn!("bad raft message from a peer: {e}"),
        }
    }

    /// This voter leads the quorum (it is the active controller).
    pub fn is_leader(&self) -> bool {
        self.node.borrow().is_leader()
    }

    /// The current raft term.
    pub fn term(&self) -> u64 {
        self.node.borrow().term()
    }

    /// The leader's node id, when known.
    pub fn leader(&self) -> Option<i32> {
        self.node.borrow().leader()
    }

    /// The state machine, read-only.
    pub fn machine(&self) -> std::cell::Ref<'_, S> {
        self.machine.borrow()
    }

    /// Proposes `record` and waits until it is applied here (the answer of
    /// [`StateMachine::apply`]), or fails.
    pub async fn propose(&self, record: &[u8], timeout: Duration) -> Result<Vec<u8>, ProposeError> {
        let counter = self.next_token.get();
        self.next_token.set(counter + 1);
        let mut data = Vec::with_capacity(record.len() + TOKEN_BYTES);
        data.extend_from_slice(&self.node_id.to_be_bytes());
        data.extend_from_slice(&counter.to_be_bytes());
        data.extend_from_slice(record);
        let (reply, answer) = flume::bounded(1);
        self.pending.borrow_mut().insert(counter, reply);
        let proposed = self.node.borrow_mut().propose(data);
        if proposed.is_err() {
            self.pending.borrow_mut().remove(&counter);
            return Err(ProposeError::NotLeader(self.leader()));
        }
        self.wake.notify(1);
        let timer = glommio::timer::sleep(timeout);
        let answer = answer.recv_async();
        futures::pin_mut!(timer);
        futures::pin_mut!(answer);
        match futures::future::select(answer, timer).await {
            futures::future::Either::Left((Ok(result), _)) => result,
            futures::future::Either::Left((Err(_), _)) => {
                Err(ProposeError::NotLeader(self.leader()))
            }
            futures::future::Either::Right(_) => {
                self.pending.borrow_mut().remove(&counter);
                Err(ProposeError::Timeout)
            }
        }
    }
}

async fn run_blocking(job: PersistJob) -> std::io::Result<Persisted> {
    glommio::executor().spawn_blocking(move || job.run()).await
}
