//! A deterministic driver for the coordinator in unit tests: a fake clock,
//! a producer id counter, a log that holds what appends made durable, the
//! markers partitions received, and bookkeeping that fails the test when a
//! request is answered twice or never asked.

use std::collections::{BTreeMap, HashSet, VecDeque};

use bytes::Bytes;
use ringbroker_protocol::errors::ErrorCode;

use crate::config::TxnConfig;
use crate::coordinator::Coordinator;
use crate::effects::{Effect, Event, MarkerOutcome, TxnMarker};
use crate::metadata::TxnMetadata;
use crate::records::{self, Entry};
use crate::state::TxnState;
use crate::types::*;

/// Test settings: 4 state partitions, 4 offsets partitions.
pub fn config() -> TxnConfig {
    TxnConfig {
        state_partitions: 4,
        offsets_partitions: 4,
        ..TxnConfig::default()
    }
}

pub const TIMEOUT_MS: i32 = 60_000;
/// The coordinator epoch partitions are loaded with.
pub const COORDINATOR_EPOCH: i32 = 5;

/// An append not completed yet: (id, partition, records).
pub type InFlight = (AppendId, TxnPartition, Vec<(Bytes, Option<Bytes>)>);

/// A marker round asked for: (id, transactional id, marker, not before).
pub type SentMarkers = (MarkerId, String, TxnMarker, i64);

pub fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

pub struct Harness {
    pub c: Coordinator,
    pub now: i64,
    /// The next producer id handed out.
    pub next_pid: i64,
    /// Producer ids handed out so far.
    pub pids_allocated: usize,
    /// When set, the producer id source fails with it.
    pub pid_error: Option<ErrorCode>,
    next_request: u64,
    asked: HashSet<RequestId>,
    answered: HashSet<RequestId>,
    pub replies: BTreeMap<RequestId, Reply>,
    /// Appends not completed yet, in order.
    pub appends: VecDeque<InFlight>,
    /// Durable records, in log order per partition.
    pub log: BTreeMap<TxnPartition, Vec<(Bytes, Option<Bytes>)>>,
    /// Marker rounds not reported yet.
    pub markers: VecDeque<SentMarkers>,
    /// Every marker a partition received: (partition, marker without its
    /// partition list).
    pub written: Vec<(TopicPartition, TxnMarker)>,
    pub armed: Option<i64>,
    /// Complete every append successfully as soon as it is asked for.
    pub auto_ack: bool,
    /// Write every marker as soon as it is asked for.
    pub auto_markers: bool,
}

impl Harness {
    /// A coordinator with every partition loaded (empty), at time 1000.
    pub fn new(config: TxnConfig) -> Harness {
        let partitions = config.state_partitions;
        let mut h = Harness::bare(config);
        for p in 0..partitions {
            h.load(TxnPartition(p), Vec::new());
        }
        h
    }

    /// A coordinator leading nothing.
    pub fn bare(config: TxnConfig) -> Harness {
        Harness {
            c: Coordinator::new(config).expect("valid config"),
            now: 1_000,
            next_pid: 1_000,
            pids_allocated: 0,
            pid_error: None,
            next_request: 0,
            asked: HashSet::new(),
            answered: HashSet::new(),
            replies: BTreeMap::new(),
            appends: VecDeque::new(),
            log: BTreeMap::new(),
            markers: VecDeque::new(),
            written: Vec::new(),
            armed: None,
            auto_ack: true,
            auto_markers: true,
        }
    }

    /// Loads `partition` with `entries`.
    pub fn load(&mut self, partition: TxnPartition, entries: Vec<Entry>) {
        self.step(Event::LoadStarted {
            partition,
            coordinator_epoch: COORDINATOR_EPOCH,
        });
        self.step(Event::Replay { partition, entries });
        self.step(Event::LoadCompleted { partition });
    }

    /// Handles `event` and everything it leads to (acknowledged appends,
    /// written markers) while the auto switches are on.
    pub fn step(&mut self, event: Event) {
        let mut queue = VecDeque::from([event]);
        while let Some(event) = queue.pop_front() {
            let (next_pid, allocated, error) =
                (&mut self.next_pid, &mut self.pids_allocated, self.pid_error);
            let mut source = || match error {
                Some(e) => Err(e),
                None => {
                    *next_pid += 1;
                    *allocated += 1;
                    Ok(*next_pid - 1)
                }
            };
            let effects = self.c.handle(self.now, event, &mut source);
            for effect in effects {
                self.effect(effect, &mut queue);
            }
        }
    }

    fn effect(&mut self, effect: Effect, queue: &mut VecDeque<Event>) {
        match effect {
            Effect::Reply { id, reply } => {
                assert!(
                    self.asked.contains(&id),
                    "reply to a request never made: {id:?}"
                );
                assert!(self.answered.insert(id), "{id:?} answered twice: {reply:?}");
                self.replies.insert(id, reply);
            }
            Effect::Append {
                id,
                partition,
                records,
            } => {
                if self.auto_ack {
                    self.log.entry(partition).or_default().extend(records);
                    queue.push_back(Event::AppendCompleted { id, result: Ok(()) });
                } else {
                    self.appends.push_back((id, partition, records));
                }
            }
            Effect::SendMarkers {
                id,
                transactional_id,
                marker,
                not_before_ms,
            } => {
                assert!(
                    not_before_ms >= self.now,
                    "markers are never due in the past"
                );
                let sent = (id, transactional_id, marker, not_before_ms);
                if self.auto_markers {
                    queue.push_back(self.write_markers(sent, |_| MarkerOutcome::Written));
                } else {
                    self.markers.push_back(sent);
                }
            }
            Effect::ArmTimer { at_ms } => {
                assert!(
                    self.armed.is_none_or(|a| at_ms < a || a <= self.now),
                    "timers only move earlier"
                );
                self.armed = Some(at_ms);
            }
        }
    }

    /// Takes the oldest append: its records become durable if `result` is
    /// Ok; returns the completion event.
    fn complete_front(&mut self, result: Result<(), ErrorCode>) -> Event {
        let (id, partition, records) = self.appends.pop_front().expect("an append");
        if result.is_ok() {
            self.log.entry(partition).or_default().extend(records);
        }
        Event::AppendCompleted { id, result }
    }

    /// Completes the oldest append with `result`.
    pub fn complete_append(&mut self, result: Result<(), ErrorCode>) {
        let event = self.complete_front(result);
        self.step(event);
    }

    /// Completes every append successfully.
    pub fn complete_all(&mut self) {
        while !self.appends.is_empty() {
            self.complete_append(Ok(()));
        }
    }

    /// A marker round's report, with `outcome` per partition.
    fn write_markers(
        &mut self,
        sent: SentMarkers,
        outcome: impl Fn(&TopicPartition) -> MarkerOutcome,
    ) -> Event {
        let (id, _, marker, _) = sent;
        let mut results = Vec::new();
        for p in &marker.partitions {
            let o = outcome(p);
            if o == MarkerOutcome::Written {
                let bare = TxnMarker {
                    partitions: Vec::new(),
                    ..marker.clone()
                };
                self.written.push((p.clone(), bare));
            }
            results.push((p.clone(), o));
        }
        Event::MarkersWritten { id, results }
    }

    /// Reports the oldest marker round with `outcome` per partition.
    pub fn report_markers(&mut self, outcome: impl Fn(&TopicPartition) -> MarkerOutcome) {
        let sent = self.markers.pop_front().expect("markers");
        let event = self.write_markers(sent, outcome);
        self.step(event);
    }

    /// Sends a request; returns its id.
    pub fn send(&mut self, request: Request) -> RequestId {
        self.next_request += 1;
        let id = RequestId(self.next_request);
        self.asked.insert(id);
        self.step(Event::Request { id, request });
        id
    }

    /// The answer to `id`, if given.
    pub fn take(&mut self, id: RequestId) -> Option<Reply> {
        self.replies.remove(&id)
    }

    /// Requests asked and never answered.
    pub fn unanswered(&self) -> usize {
        self.asked.difference(&self.answered).count()
    }

    pub fn init_request(&mut self, id: &str, expected: Option<(i64, i16)>) -> RequestId {
        self.send(Request::InitProducerId(InitProducerIdRequest {
            transactional_id: id.into(),
            transaction_timeout_ms: TIMEOUT_MS,
            expected: expected
                .map(|(producer_id, epoch)| ProducerIdAndEpoch { producer_id, epoch }),
        }))
    }

    pub fn init_reply(&mut self, r: RequestId) -> ProducerIdReply {
        match self.take(r) {
            Some(Reply::InitProducerId(p)) => p,
            other => panic!("InitProducerId answered {other:?}"),
        }
    }

    /// InitProducerId, answered at once.
    pub fn init(&mut self, id: &str) -> ProducerIdReply {
        let r = self.init_request(id, None);
        self.init_reply(r)
    }

    /// KIP-360 InitProducerId with the producer's id and epoch.
    pub fn init_expected(&mut self, id: &str, pid: i64, epoch: i16) -> ProducerIdReply {
        let r = self.init_request(id, Some((pid, epoch)));
        self.init_reply(r)
    }

    pub fn add_request(
        &mut self,
        id: &str,
        pid: i64,
        epoch: i16,
        parts: &[TopicPartition],
    ) -> RequestId {
        self.send(Request::AddPartitions(AddPartitionsRequest {
            transactional_id: id.into(),
            producer_id: pid,
            producer_epoch: epoch,
            partitions: parts.to_vec(),
        }))
    }

    pub fn add_reply(&mut self, r: RequestId) -> ErrorCode {
        match self.take(r) {
            Some(Reply::AddPartitions(e)) | Some(Reply::AddOffsets(e)) => e,
            other => panic!("AddPartitions answered {other:?}"),
        }
    }

    /// AddPartitionsToTxn, answered at once.
    pub fn add(&mut self, id: &str, pid: i64, epoch: i16, parts: &[TopicPartition]) -> ErrorCode {
        let r = self.add_request(id, pid, epoch, parts);
        self.add_reply(r)
    }

    pub fn add_offsets(&mut self, id: &str, pid: i64, epoch: i16, group: &str) -> ErrorCode {
        let r = self.send(Request::AddOffsets(AddOffsetsRequest {
            transactional_id: id.into(),
            producer_id: pid,
            producer_epoch: epoch,
            group_id: group.into(),
        }));
        match self.take(r) {
            Some(Reply::AddOffsets(e)) => e,
            other => panic!("AddOffsets answered {other:?}"),
        }
    }

    pub fn end_request(&mut self, id: &str, pid: i64, epoch: i16, commit: bool) -> RequestId {
        let result = if commit {
            TxnResult::Commit
        } else {
            TxnResult::Abort
        };
        self.send(Request::EndTxn(EndTxnRequest {
            transactional_id: id.into(),
            producer_id: pid,
            producer_epoch: epoch,
            result,
        }))
    }

    pub fn end_reply(&mut self, r: RequestId) -> ProducerIdReply {
        match self.take(r) {
            Some(Reply::EndTxn(p)) => p,
            other => panic!("EndTxn answered {other:?}"),
        }
    }

    /// EndTxn, answered at once.
    pub fn end(&mut self, id: &str, pid: i64, epoch: i16, commit: bool) -> ProducerIdReply {
        let r = self.end_request(id, pid, epoch, commit);
        self.end_reply(r)
    }

    pub fn describe(&mut self, id: &str) -> TxnDescription {
        let r = self.send(Request::Describe {
            transactional_id: id.into(),
        });
        match self.take(r) {
            Some(Reply::Describe(d)) => d,
            other => panic!("Describe answered {other:?}"),
        }
    }

    pub fn list(&mut self, request: ListRequest) -> ListResponse {
        let r = self.send(Request::List(request));
        match self.take(r) {
            Some(Reply::List(l)) => l,
            other => panic!("List answered {other:?}"),
        }
    }

    pub fn meta(&self, id: &str) -> &TxnMetadata {
        self.c.metadata(id).expect("known transactional id")
    }

    pub fn state(&self, id: &str) -> Option<TxnState> {
        self.c.metadata(id).map(|m| m.state)
    }

    /// Moves the clock and delivers the timer if it is due.
    pub fn advance(&mut self, ms: i64) {
        self.now += ms;
        if self.armed.is_some_and(|a| a <= self.now) {
            self.armed = None;
            self.step(Event::Timer);
        }
    }

    /// A transactional id initialised with an Ongoing transaction on
    /// `parts`: (producer id, epoch).
    pub fn ongoing(&mut self, id: &str, parts: &[TopicPartition]) -> (i64, i16) {
        let p = self.init(id);
        assert_eq!(p.error, ErrorCode::None);
        assert_eq!(
            self.add(id, p.producer_id, p.producer_epoch, parts),
            ErrorCode::None
        );
        (p.producer_id, p.producer_epoch)
    }

    /// The durable records of `partition`, decoded as a load would.
    pub fn entries(&self, partition: TxnPartition) -> Vec<Entry> {
        let Some(records) = self.log.get(&partition) else {
            return Vec::new();
        };
        let batch = records::batch(records, self.now);
        crate::loading::decode_chunk(&batch)
            .expect("the log decodes")
            .entries
    }

    /// The durable records of `id`, in order.
    pub fn records_of(&self, id: &str) -> Vec<Option<records::TxnLogValue>> {
        self.entries(self.c.partition_of(id))
            .into_iter()
            .filter(|e| e.transactional_id == id)
            .map(|e| e.value)
            .collect()
    }

    /// A fresh coordinator loading what this one wrote, `later_ms` later.
    pub fn reloaded(&self, later_ms: i64) -> Harness {
        let mut fresh = Harness::bare(self.c.config().clone());
        fresh.now = self.now + later_ms;
        fresh.next_pid = self.next_pid + 1_000;
        for p in 0..self.c.config().state_partitions {
            let partition = TxnPartition(p);
            let entries = self.entries(partition);
            fresh.log.insert(
                partition,
                self.log.get(&partition).cloned().unwrap_or_default(),
            );
            fresh.load(partition, entries);
        }
        fresh
    }
}
