//! A deterministic driver for the coordinator in unit tests: a fake clock,
//! a log that holds what appends made durable, and bookkeeping that fails
//! the test when a request is answered twice.

use std::collections::{BTreeMap, HashSet, VecDeque};

use bytes::{BufMut, Bytes, BytesMut};
use ringbroker_protocol::errors::ErrorCode;

use crate::config::CoordinatorConfig;
use crate::coordinator::Coordinator;
use crate::effects::{Effect, Event};
use crate::loading::{self, LoadedRecord};
use crate::records::{self, Entry};
use crate::types::*;

/// A consumer-protocol subscription to `topics`.
pub fn subscription(topics: &[&str]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(topics.len() as i32);
    for t in topics {
        b.put_i16(t.len() as i16);
        b.put_slice(t.as_bytes());
    }
    b.put_i32(-1);
    b.freeze()
}

/// Protocols named `names`, each with a subscription to topic "t".
pub fn protocols(names: &[&str]) -> Vec<Protocol> {
    names
        .iter()
        .map(|n| Protocol {
            name: n.to_string(),
            metadata: subscription(&["t"]),
        })
        .collect()
}

/// Test settings: 4 offsets partitions, no initial delay.
pub fn config() -> CoordinatorConfig {
    CoordinatorConfig {
        offsets_partitions: 4,
        initial_rebalance_delay_ms: 0,
        ..CoordinatorConfig::default()
    }
}

pub const SESSION_MS: i32 = 10_000;
pub const REBALANCE_MS: i32 = 60_000;

/// An appended batch: (append, partition, records, producer).
pub type Appended = (
    AppendId,
    OffsetsPartition,
    Vec<(Bytes, Option<Bytes>)>,
    Option<TxnProducer>,
);

/// What a durable append or a transaction marker left in a partition.
#[derive(Clone, Debug)]
pub enum Logged {
    /// A batch the coordinator appended.
    Batch {
        /// Its transactional producer.
        producer: Option<TxnProducer>,
        /// Its records.
        records: Vec<(Bytes, Option<Bytes>)>,
    },
    /// A transaction marker written by the transaction coordinator.
    Marker { producer_id: i64, commit: bool },
}

/// A control batch as Kafka writes a transaction marker (version 0 key
/// with the type, version 0 value with a coordinator epoch).
pub fn marker_batch(producer_id: i64, commit: bool) -> Bytes {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let record = Record {
        transactional: true,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id,
        producer_epoch: 0,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 0,
        key: Some(Bytes::from(vec![0, 0, 0, u8::from(commit)])),
        value: Some(Bytes::from_static(&[0, 0, 0, 0, 0, 5])),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &[record],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encodes");
    buf.freeze()
}

pub struct Harness {
    pub c: Coordinator,
    pub now: i64,
    next_request: u64,
    asked: HashSet<RequestId>,
    answered: HashSet<RequestId>,
    pub replies: BTreeMap<RequestId, Reply>,
    /// Appends not completed yet, in order.
    pub appends: VecDeque<Appended>,
    /// Durable batches and markers, in log order per partition.
    pub log: BTreeMap<OffsetsPartition, Vec<Logged>>,
    pub armed: Option<i64>,
    /// Complete every append successfully as soon as it is asked for.
    pub auto_ack: bool,
}

impl Harness {
    /// A coordinator with every partition loaded (empty), at time 1000.
    pub fn new(config: CoordinatorConfig) -> Harness {
        let partitions = config.offsets_partitions;
        let mut h = Harness {
            c: Coordinator::new(config, 7).expect("valid config"),
            now: 1_000,
            next_request: 0,
            asked: HashSet::new(),
            answered: HashSet::new(),
            replies: BTreeMap::new(),
            appends: VecDeque::new(),
            log: BTreeMap::new(),
            armed: None,
            auto_ack: true,
        };
        for p in 0..partitions {
            let partition = OffsetsPartition(p);
            h.step(Event::LoadStarted { partition });
            h.step(Event::LoadCompleted { partition });
        }
        h
    }

    pub fn step(&mut self, event: Event) {
        let effects = self.c.handle(self.now, event);
        let mut acks = Vec::new();
        for effect in effects {
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
                    producer,
                } => {
                    if self.auto_ack {
                        acks.push(id);
                    }
                    self.appends.push_back((id, partition, records, producer));
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
        for id in acks {
            self.complete(id, Ok(()));
        }
    }

    /// Completes one append (it must be in flight).
    pub fn complete(&mut self, id: AppendId, result: Result<(), ErrorCode>) {
        let index = self
            .appends
            .iter()
            .position(|(a, _, _, _)| *a == id)
            .expect("append in flight");
        let (_, partition, records, producer) = self.appends.remove(index).expect("present");
        if result.is_ok() {
            self.log
                .entry(partition)
                .or_default()
                .push(Logged::Batch { producer, records });
        }
        self.step(Event::AppendCompleted { id, result });
    }

    /// Completes every append in flight, oldest first.
    pub fn complete_all(&mut self, result: Result<(), ErrorCode>) -> usize {
        let ids: Vec<AppendId> = self.appends.iter().map(|(a, _, _, _)| *a).collect();
        for id in &ids {
            self.complete(*id, result);
        }
        ids.len()
    }

    pub fn send(&mut self, request: Request) -> RequestId {
        self.next_request += 1;
        let id = RequestId(self.next_request);
        self.asked.insert(id);
        self.step(Event::Request { id, request });
        id
    }

    pub fn take(&mut self, id: RequestId) -> Option<Reply> {
        self.replies.remove(&id)
    }

    pub fn answered(&self, id: RequestId) -> bool {
        self.answered.contains(&id)
    }

    /// Requests asked and not answered.
    pub fn unanswered(&self) -> usize {
        self.asked.len() - self.answered.len()
    }

    /// Moves the clock to `now + ms`, delivering each timer at its deadline.
    pub fn advance(&mut self, ms: i64) {
        let target = self.now + ms;
        let mut rounds = 0;
        while let Some(at) = self.armed.filter(|a| *a <= target) {
            rounds += 1;
            assert!(rounds < 100_000, "timers keep firing");
            self.now = self.now.max(at);
            self.armed = None;
            self.step(Event::Timer);
        }
        self.now = target;
    }

    /// Every durable record of a partition, decoded (markers left out).
    pub fn entries(&self, partition: OffsetsPartition) -> Vec<Entry> {
        self.log
            .get(&partition)
            .into_iter()
            .flatten()
            .flat_map(|logged| match logged {
                Logged::Batch { records, .. } => records.clone(),
                Logged::Marker { .. } => Vec::new(),
            })
            .filter_map(|(k, v)| records::decode(&k, v.as_ref()))
            .collect()
    }

    /// The partition's log as stored: batches with their offsets.
    pub fn log_bytes(&self, partition: OffsetsPartition) -> Vec<u8> {
        let mut out = Vec::new();
        let mut offset = 0i64;
        for logged in self.log.get(&partition).into_iter().flatten() {
            let mut batch = match logged {
                Logged::Batch { producer, records } => {
                    records::batch_of(records, self.now, *producer).to_vec()
                }
                Logged::Marker {
                    producer_id,
                    commit,
                } => marker_batch(*producer_id, *commit).to_vec(),
            };
            ringbroker_protocol::batch::stamp_base_offset(&mut batch, offset);
            let header = ringbroker_protocol::batch::parse_header(&batch).expect("a batch");
            offset = header.last_offset() + 1;
            out.extend_from_slice(&batch);
        }
        out
    }

    /// The partition's records as a load decodes them from its log.
    pub fn loaded_records(&self, partition: OffsetsPartition) -> Vec<LoadedRecord> {
        let bytes = self.log_bytes(partition);
        if bytes.is_empty() {
            return Vec::new();
        }
        loading::decode_chunk(&bytes).expect("decodes").entries
    }

    /// The transaction coordinator wrote a marker for `producer_id` into
    /// the group's partition and reports it.
    pub fn marker(&mut self, group: &str, producer_id: i64, commit: bool) {
        let partition = self.c.partition_of(group);
        self.log.entry(partition).or_default().push(Logged::Marker {
            producer_id,
            commit,
        });
        self.step(Event::TxnCompleted {
            partition,
            producer_id,
            commit,
        });
    }

    /// A second coordinator that loads every partition from this one's
    /// log, at the same time.
    pub fn reloaded(&self) -> Harness {
        let mut fresh = Harness::new(self.c.config().clone());
        fresh.now = self.now;
        for p in 0..self.c.config().offsets_partitions {
            let partition = OffsetsPartition(p);
            fresh.step(Event::Unload { partition });
            fresh.step(Event::LoadStarted { partition });
            fresh.step(Event::Replay {
                partition,
                entries: self.loaded_records(partition),
            });
            fresh.step(Event::LoadCompleted { partition });
        }
        fresh.log = self.log.clone();
        fresh
    }

    // Requests.

    pub fn join_request(
        &self,
        group: &str,
        member_id: &str,
        instance: Option<&str>,
    ) -> JoinRequest {
        JoinRequest {
            group: group.into(),
            member_id: member_id.into(),
            instance_id: instance.map(str::to_string),
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: SESSION_MS,
            rebalance_timeout_ms: REBALANCE_MS,
            protocol_type: "consumer".into(),
            protocols: protocols(&["range"]),
            require_known_member_id: true,
            supports_skip_assignment: false,
        }
    }

    pub fn join(&mut self, group: &str, member_id: &str, instance: Option<&str>) -> RequestId {
        let request = self.join_request(group, member_id, instance);
        self.send(Request::Join(request))
    }

    /// Joins a new dynamic member through MEMBER_ID_REQUIRED; returns the
    /// second JoinGroup (still waiting or answered) and the member id.
    pub fn join_new(&mut self, group: &str) -> (RequestId, String) {
        let first = self.join(group, "", None);
        let reply = self.join_reply(first);
        assert_eq!(reply.error, ErrorCode::MemberIdRequired);
        let id = reply.member_id;
        (self.join(group, &id, None), id)
    }

    pub fn join_reply(&mut self, id: RequestId) -> JoinResponse {
        match self.take(id) {
            Some(Reply::Join(r)) => r,
            other => panic!("expected a JoinGroup answer to {id:?}, got {other:?}"),
        }
    }

    pub fn sync(
        &mut self,
        group: &str,
        generation: i32,
        member_id: &str,
        assignments: &[(&str, &str)],
    ) -> RequestId {
        self.send(Request::Sync(SyncRequest {
            group: group.into(),
            generation,
            member_id: member_id.into(),
            instance_id: None,
            protocol_type: Some("consumer".into()),
            protocol: None,
            assignments: assignments
                .iter()
                .map(|(m, a)| (m.to_string(), Bytes::from(a.to_string())))
                .collect(),
        }))
    }

    pub fn sync_reply(&mut self, id: RequestId) -> SyncResponse {
        match self.take(id) {
            Some(Reply::Sync(r)) => r,
            other => panic!("expected a SyncGroup answer to {id:?}, got {other:?}"),
        }
    }

    pub fn heartbeat_as(
        &mut self,
        group: &str,
        generation: i32,
        member_id: &str,
        instance: Option<&str>,
    ) -> ErrorCode {
        let id = self.send(Request::Heartbeat(HeartbeatRequest {
            group: group.into(),
            generation,
            member_id: member_id.into(),
            instance_id: instance.map(str::to_string),
        }));
        match self.take(id) {
            Some(Reply::Heartbeat(code)) => code,
            other => panic!("expected a Heartbeat answer, got {other:?}"),
        }
    }

    pub fn heartbeat(&mut self, group: &str, generation: i32, member_id: &str) -> ErrorCode {
        self.heartbeat_as(group, generation, member_id, None)
    }

    pub fn leave(&mut self, group: &str, members: &[(&str, Option<&str>)]) -> RequestId {
        self.send(Request::Leave(LeaveRequest {
            group: group.into(),
            members: members
                .iter()
                .map(|(m, i)| LeavingMember {
                    member_id: m.to_string(),
                    instance_id: i.map(str::to_string),
                })
                .collect(),
        }))
    }

    pub fn commit(
        &mut self,
        group: &str,
        generation: i32,
        member_id: &str,
        offsets: &[(&str, i32, i64)],
    ) -> RequestId {
        self.send(Request::Commit(CommitRequest {
            group: group.into(),
            generation,
            member_id: member_id.into(),
            instance_id: None,
            offsets: offsets
                .iter()
                .map(|(t, p, o)| OffsetCommit {
                    topic: t.to_string(),
                    partition: *p,
                    offset: *o,
                    leader_epoch: -1,
                    metadata: Some(String::new()),
                    rejected: None,
                })
                .collect(),
        }))
    }

    pub fn commit_reply(&mut self, id: RequestId) -> Vec<ErrorCode> {
        match self.take(id) {
            Some(Reply::Commit(codes)) => codes,
            other => panic!("expected an OffsetCommit answer, got {other:?}"),
        }
    }

    /// Committed offsets of a group: (topic, partition, offset).
    pub fn fetch(&mut self, group: &str) -> Vec<(String, i32, i64)> {
        let id = self.send(Request::FetchOffsets(FetchOffsetsRequest {
            group: group.into(),
            topics: None,
            require_stable: false,
        }));
        match self.take(id) {
            Some(Reply::FetchOffsets(r)) => {
                assert_eq!(r.error, ErrorCode::None);
                r.offsets
                    .into_iter()
                    .map(|o| (o.topic, o.partition, o.offset))
                    .collect()
            }
            other => panic!("expected an OffsetFetch answer, got {other:?}"),
        }
    }

    pub fn describe(&mut self, group: &str) -> GroupDescription {
        let id = self.send(Request::Describe(group.into()));
        match self.take(id) {
            Some(Reply::Describe(d)) => d,
            other => panic!("expected a DescribeGroups answer, got {other:?}"),
        }
    }

    pub fn state(&self, group: &str) -> Option<GroupState> {
        self.c.group(group).map(|g| g.state)
    }

    pub fn delete(&mut self, group: &str) -> RequestId {
        self.send(Request::Delete(group.into()))
    }

    /// A stable group with the given dynamic members (joined together,
    /// the first leading, each assigned its own id as assignment); returns
    /// (generation, member ids).
    pub fn stable_group(&mut self, group: &str, count: usize) -> (i32, Vec<String>) {
        let mut ids = Vec::new();
        let mut joins = Vec::new();
        // Everyone gets an id first, then they join in one rebalance.
        for _ in 0..count {
            let first = self.join(group, "", None);
            let r = self.join_reply(first);
            assert_eq!(r.error, ErrorCode::MemberIdRequired);
            ids.push(r.member_id);
        }
        let existing = self.c.group(group).map_or(0, |g| g.members.len());
        assert_eq!(existing, 0, "stable_group builds a new group");
        for id in &ids {
            joins.push(self.join(group, id, None));
        }
        self.advance(0);
        let replies: Vec<JoinResponse> = joins.iter().map(|j| self.join_reply(*j)).collect();
        let generation = replies[0].generation;
        let leader = replies[0].leader.clone();
        assert!(replies
            .iter()
            .all(|r| r.error == ErrorCode::None && r.generation == generation));
        let assignments: Vec<(String, String)> =
            ids.iter().map(|m| (m.clone(), format!("a-{m}"))).collect();
        let pairs: Vec<(&str, &str)> = assignments
            .iter()
            .map(|(m, a)| (m.as_str(), a.as_str()))
            .collect();
        let mut syncs = Vec::new();
        for id in &ids {
            let a: &[(&str, &str)] = if *id == leader { &pairs } else { &[] };
            syncs.push(self.sync(group, generation, id, a));
        }
        for (s, id) in syncs.iter().zip(&ids) {
            let r = self.sync_reply(*s);
            assert_eq!(r.error, ErrorCode::None);
            assert_eq!(r.assignment, Bytes::from(format!("a-{id}")));
        }
        assert_eq!(self.state(group), Some(GroupState::Stable));
        // The leader is first in the answer order only if it joined first.
        let mut ordered = vec![leader.clone()];
        ordered.extend(ids.into_iter().filter(|m| *m != leader));
        (generation, ordered)
    }
}

impl Harness {
    /// A TxnOffsetCommit of `producer_id` (epoch 0).
    pub fn txn_commit(
        &mut self,
        group: &str,
        producer_id: i64,
        generation: i32,
        member_id: &str,
        offsets: &[(&str, i32, i64)],
    ) -> RequestId {
        self.send(Request::TxnCommit(TxnCommitRequest {
            group: group.into(),
            transactional_id: format!("txn-{producer_id}"),
            producer: TxnProducer {
                producer_id,
                producer_epoch: 0,
            },
            generation,
            member_id: member_id.into(),
            instance_id: None,
            offsets: offsets
                .iter()
                .map(|(t, p, o)| OffsetCommit {
                    topic: t.to_string(),
                    partition: *p,
                    offset: *o,
                    leader_epoch: -1,
                    metadata: Some(String::new()),
                    rejected: None,
                })
                .collect(),
        }))
    }

    pub fn txn_commit_reply(&mut self, id: RequestId) -> Vec<ErrorCode> {
        match self.take(id) {
            Some(Reply::TxnCommit(codes)) => codes,
            other => panic!("expected a TxnOffsetCommit answer, got {other:?}"),
        }
    }

    /// OffsetFetch of named partitions of topic "t":
    /// (partition, offset, error).
    pub fn fetch_stable(
        &mut self,
        group: &str,
        partitions: &[i32],
        require_stable: bool,
    ) -> Vec<(i32, i64, ErrorCode)> {
        let id = self.send(Request::FetchOffsets(FetchOffsetsRequest {
            group: group.into(),
            topics: Some(vec![TopicPartitions {
                topic: "t".into(),
                partitions: partitions.to_vec(),
            }]),
            require_stable,
        }));
        match self.take(id) {
            Some(Reply::FetchOffsets(r)) => r
                .offsets
                .into_iter()
                .map(|o| (o.partition, o.offset, o.error))
                .collect(),
            other => panic!("expected an OffsetFetch answer, got {other:?}"),
        }
    }

    /// A stable group of static members with the given instance ids (the
    /// first leading); returns (generation, member ids in that order).
    pub fn stable_static_group(&mut self, group: &str, instances: &[&str]) -> (i32, Vec<String>) {
        let joins: Vec<RequestId> = instances
            .iter()
            .map(|i| self.join(group, "", Some(i)))
            .collect();
        self.advance(0);
        let replies: Vec<JoinResponse> = joins.iter().map(|j| self.join_reply(*j)).collect();
        assert!(replies.iter().all(|r| r.error == ErrorCode::None));
        let generation = replies[0].generation;
        let ids: Vec<String> = replies.iter().map(|r| r.member_id.clone()).collect();
        assert_eq!(replies[0].leader, ids[0]);
        let assignments: Vec<(String, String)> =
            ids.iter().map(|m| (m.clone(), format!("a-{m}"))).collect();
        let pairs: Vec<(&str, &str)> = assignments
            .iter()
            .map(|(m, a)| (m.as_str(), a.as_str()))
            .collect();
        let syncs: Vec<RequestId> = ids
            .iter()
            .enumerate()
            .map(|(n, id)| {
                let a: &[(&str, &str)] = if n == 0 { &pairs } else { &[] };
                self.sync(group, generation, id, a)
            })
            .collect();
        for s in syncs {
            assert_eq!(self.sync_reply(s).error, ErrorCode::None);
        }
        assert_eq!(self.state(group), Some(GroupState::Stable));
        (generation, ids)
    }
}
