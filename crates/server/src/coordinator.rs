//! The group coordinator (Kafka's classic group protocol).
//!
//! A group lives on the shard that owns its `__consumer_offsets` partition
//! (`java_hash(group) % partitions`, as in Kafka); requests reaching another
//! shard are forwarded there, so group state is touched by one thread only.
//! Membership changes run the rebalance state machine
//! Empty → PreparingRebalance → CompletingRebalance → Stable; offsets and
//! group metadata are appended to `__consumer_offsets` with acks=all before
//! they are acknowledged, and replayed from it at startup.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use indexmap::IndexMap;

use crate::messages::ProducePart;
use crate::shard::{now_ms, Shard};
use ringbroker_groups::records::{
    self as store, CommittedOffset, Entry, StoredGroup, StoredMember,
};
use ringbroker_protocol::errors::ErrorCode;

/// Name of the internal offsets topic.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Smallest session timeout accepted (Kafka's group.min.session.timeout.ms).
pub const SESSION_TIMEOUT_MIN_MS: i32 = 6_000;
/// Largest session timeout accepted (Kafka's group.max.session.timeout.ms).
pub const SESSION_TIMEOUT_MAX_MS: i32 = 1_800_000;
/// Largest offset metadata string (Kafka's offset.metadata.max.bytes).
pub const OFFSET_METADATA_MAX_BYTES: usize = 4096;
/// Largest protocol metadata a member may send in JoinGroup.
pub const PROTOCOL_METADATA_MAX_BYTES: usize = 1024 * 1024;
/// Members one group may have.
pub const GROUP_MEMBERS_MAX: usize = 10_000;
/// How long an acks=all append to `__consumer_offsets` may take.
const PERSIST_TIMEOUT_MS: u64 = 30_000;

/// Kafka error codes of the group APIs.
pub mod codes {
    /// The coordinator is loading.
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    /// The coordinator is not available.
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    /// This broker is not the coordinator.
    pub const NOT_COORDINATOR: i16 = 16;
    /// Offset metadata too large.
    pub const OFFSET_METADATA_TOO_LARGE: i16 = 12;
    /// The group's generation is not the member's.
    pub const ILLEGAL_GENERATION: i16 = 22;
    /// No common protocol, or a different protocol type.
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    /// Empty or malformed group id.
    pub const INVALID_GROUP_ID: i16 = 24;
    /// The member is not in the group.
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    /// Session timeout out of range.
    pub const INVALID_SESSION_TIMEOUT: i16 = 26;
    /// The group is rebalancing.
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    /// The commit is not allowed.
    pub const INVALID_COMMIT_OFFSET_SIZE: i16 = 28;
    /// The group has members.
    pub const NON_EMPTY_GROUP: i16 = 68;
    /// The group does not exist.
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    /// The member must rejoin with the id given (KIP-394).
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    /// Another member holds this static instance id.
    pub const FENCED_INSTANCE_ID: i16 = 82;
    /// The group still consumes this topic.
    pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
    /// The group is at its member limit.
    pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
}
use codes::*;

/// States of a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    /// No members (offsets may remain).
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Waiting for the leader's assignment.
    CompletingRebalance,
    /// Members have their assignments.
    Stable,
}

impl GroupState {
    /// Kafka's name for the state.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// A group member.
#[derive(Clone, Debug)]
pub struct Member {
    /// Static instance id.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Protocols in preference order with their metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// The leader's assignment for this member.
    pub assignment: Bytes,
    /// Rejoined in the current rebalance.
    pub joined: bool,
    /// The JoinGroup answer once the rebalance completes.
    pub join_reply: Option<JoinReply>,
    /// Last heartbeat (or any request).
    pub last_seen: Instant,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

/// What a JoinGroup is answered with.
#[derive(Clone, Debug, Default)]
pub struct JoinReply {
    /// Error code.
    pub error_code: i16,
    /// Generation.
    pub generation: i32,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Chosen protocol.
    pub protocol: Option<String>,
    /// Leader member id.
    pub leader: String,
    /// The member's id.
    pub member_id: String,
    /// For the leader: every member (id, instance id, metadata).
    pub members: Vec<(String, Option<String>, Bytes)>,
}

/// One group.
pub struct Group {
    /// State.
    pub state: GroupState,
    /// Protocol type of the members.
    pub protocol_type: Option<String>,
    /// Chosen protocol.
    pub protocol: Option<String>,
    /// Generation.
    pub generation: i32,
    /// Leader member id.
    pub leader: Option<String>,
    /// Members by id, in join order.
    pub members: IndexMap<String, Member>,
    /// Member ids handed out by MEMBER_ID_REQUIRED, not yet joined, with
    /// when they were handed out and the member's session timeout.
    pub pending: HashMap<String, (Instant, i32)>,
    /// Static instance id → member id.
    pub static_members: HashMap<String, String>,
    /// Committed offsets.
    pub offsets: BTreeMap<(String, i32), CommittedOffset>,
    /// When the current rebalance must end.
    pub rebalance_deadline: Option<Instant>,
    /// A rebalance may not complete before this (initial join delay).
    pub not_before: Option<Instant>,
    /// When the state last changed (ms since the epoch).
    pub state_ms: i64,
    /// Fired on every change waiters care about.
    pub changed: Rc<event_listener::Event>,
}

impl Group {
    fn new() -> Group {
        Group {
            state: GroupState::Empty,
            protocol_type: None,
            protocol: None,
            generation: 0,
            leader: None,
            members: IndexMap::new(),
            pending: HashMap::new(),
            static_members: HashMap::new(),
            offsets: BTreeMap::new(),
            rebalance_deadline: None,
            not_before: None,
            state_ms: now_ms(),
            changed: Rc::new(event_listener::Event::new()),
        }
    }

    fn set_state(&mut self, state: GroupState) {
        self.state = state;
        self.state_ms = now_ms();
        self.changed.notify(usize::MAX);
    }

    fn stored(&self) -> StoredGroup {
        let protocol = self.protocol.clone().unwrap_or_default();
        StoredGroup {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            state_ms: self.state_ms,
            members: self
                .members
                .iter()
                .map(|(id, m)| StoredMember {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata_for(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// Protocols every member supports, by votes of first preference.
    fn select_protocol(&self) -> Option<String> {
        let mut candidates: Vec<&str> = self
            .members
            .values()
            .next()?
            .protocols
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        candidates.retain(|c| {
            self.members
                .values()
                .all(|m| m.protocols.iter().any(|(n, _)| n == c))
        });
        let mut best: Option<(&str, usize)> = None;
        for c in &candidates {
            let votes = self
                .members
                .values()
                .filter(|m| {
                    m.protocols
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .find(|n| candidates.contains(n))
                        == Some(*c)
                })
                .count();
            if best.is_none_or(|(_, v)| votes > v) {
                best = Some((c, votes));
            }
        }
        best.map(|(c, _)| c.to_string())
    }

    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return true;
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(n, _)| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(mn, _)| mn == n))
            })
    }
}

/// Requests to the coordinator shard of a group.
pub enum GroupCall {
    /// JoinGroup.
    Join(JoinArgs),
    /// SyncGroup.
    Sync(SyncArgs),
    /// Heartbeat.
    Heartbeat {
        /// Group id.
        group: String,
        /// Generation.
        generation: i32,
        /// Member id.
        member_id: String,
        /// Static instance id.
        instance_id: Option<String>,
    },
    /// LeaveGroup: (member id, instance id) pairs.
    Leave {
        /// Group id.
        group: String,
        /// Members leaving.
        members: Vec<(String, Option<String>)>,
    },
    /// OffsetCommit.
    Commit {
        /// Group id.
        group: String,
        /// Generation (-1 for simple commits).
        generation: i32,
        /// Member id.
        member_id: String,
        /// Static instance id.
        instance_id: Option<String>,
        /// (topic, partition, offset, leader epoch, metadata); topics
        /// already checked to exist are marked with error 0.
        offsets: Vec<(String, i32, i64, i32, Option<String>, i16)>,
    },
    /// OffsetFetch: `None` for every partition.
    Fetch {
        /// Group id.
        group: String,
        /// Topics and partitions wanted.
        topics: Option<Vec<(String, Vec<i32>)>>,
    },
    /// DescribeGroups for one group.
    Describe(String),
    /// ListGroups on this shard.
    List,
    /// DeleteGroups for one group.
    Delete(String),
    /// OffsetDelete.
    OffsetDelete {
        /// Group id.
        group: String,
        /// (topic, partition).
        partitions: Vec<(String, i32)>,
    },
}

/// A described group.
#[derive(Clone, Debug, Default)]
pub struct GroupDescription {
    /// Error code.
    pub error_code: i16,
    /// State name.
    pub state: String,
    /// Protocol type.
    pub protocol_type: String,
    /// Chosen protocol.
    pub protocol: String,
    /// (member id, instance id, client id, host, metadata, assignment).
    pub members: Vec<(String, Option<String>, String, String, Bytes, Bytes)>,
}

/// Answers from the coordinator shard.
pub enum GroupReply {
    /// JoinGroup.
    Join(JoinReply),
    /// SyncGroup: (error, assignment, protocol type, protocol).
    Sync(i16, Bytes, Option<String>, Option<String>),
    /// A bare error code (Heartbeat, DeleteGroups).
    Code(i16),
    /// LeaveGroup: top-level error and per-member errors.
    Leave(i16, Vec<i16>),
    /// OffsetCommit per-partition errors, in request order.
    Commit(Vec<i16>),
    /// OffsetFetch: error, or (topic, partition, offset, epoch, metadata) rows.
    Fetch(i16, Vec<(String, i32, i64, i32, Option<String>)>),
    /// DescribeGroups.
    Describe(GroupDescription),
    /// ListGroups: (group, protocol type, state).
    List(Vec<(String, String, String)>),
    /// OffsetDelete: top-level error and per-partition errors.
    OffsetDelete(i16, Vec<i16>),
}

/// The groups of one shard.
#[derive(Default)]
pub struct Coordinator {
    groups: RefCell<HashMap<String, Group>>,
}

/// The `__consumer_offsets` partition and coordinator shard of a group.
pub fn placement(shard: &Shard, group: &str) -> (i32, ringbroker_shards::ShardId) {
    let partitions = shard
        .catalog()
        .topics
        .get(OFFSETS_TOPIC)
        .map_or(1, |m| m.partitions);
    let partition = store::partition_for(group, partitions);
    (partition, shard.owner(OFFSETS_TOPIC, partition))
}

impl Coordinator {
    /// Rebuilds groups and offsets from this shard's `__consumer_offsets`
    /// partitions (startup).
    pub fn load(&self, shard: &Shard) {
        let partitions: Vec<_> = shard
            .partitions
            .borrow()
            .values()
            .filter(|p| p.topic == OFFSETS_TOPIC)
            .cloned()
            .collect();
        let mut groups = self.groups.borrow_mut();
        let mut loaded = 0usize;
        for partition in partitions {
            let log = partition.log.borrow();
            let mut offset = log.log_start_offset();
            while offset < log.high_watermark() {
                let slice = match log.read(offset, 8 << 20) {
                    Ok(Some(slice)) => slice,
                    _ => break,
                };
                let Ok(bytes) = slice.read_to_vec() else {
                    break;
                };
                let mut next = offset;
                for item in ringbroker_protocol::batch::batches(&bytes) {
                    match item {
                        Ok((header, _)) => next = header.last_offset().saturating_add(1),
                        Err(_) => break,
                    }
                }
                let whole = bytes.len().min(
                    ringbroker_protocol::batch::batches(&bytes)
                        .map_while(Result::ok)
                        .map(|(_, r)| r.end)
                        .last()
                        .unwrap_or(0),
                );
                for entry in store::entries(&bytes[..whole]) {
                    apply(&mut groups, entry);
                    loaded += 1;
                }
                if next <= offset {
                    break;
                }
                offset = next;
            }
        }
        if loaded > 0 {
            log::info!(
                "{}: loaded {} group records ({} groups)",
                shard.id,
                loaded,
                groups.len()
            );
        }
    }

    /// Groups on this shard, for ListGroups.
    pub fn list(&self) -> Vec<(String, String, String)> {
        self.groups
            .borrow()
            .iter()
            .map(|(id, g)| {
                (
                    id.clone(),
                    g.protocol_type.clone().unwrap_or_default(),
                    g.state.name().to_string(),
                )
            })
            .collect()
    }
}

fn apply(groups: &mut HashMap<String, Group>, entry: Entry) {
    match entry {
        Entry::Offset {
            group,
            topic,
            partition,
            value,
        } => {
            let g = groups.entry(group).or_insert_with(Group::new);
            match value {
                Some(v) => {
                    g.offsets.insert((topic, partition), v);
                }
                None => {
                    g.offsets.remove(&(topic, partition));
                }
            }
        }
        Entry::Group { group, value: None } => {
            groups.remove(&group);
        }
        Entry::Group {
            group,
            value: Some(stored),
        } => {
            let g = groups.entry(group).or_insert_with(Group::new);
            g.generation = stored.generation;
            g.protocol_type = (!stored.protocol_type.is_empty()).then_some(stored.protocol_type);
            g.protocol = stored.protocol.clone();
            g.leader = stored.leader;
            g.state_ms = stored.state_ms;
            g.members.clear();
            g.static_members.clear();
            let now = Instant::now();
            for m in stored.members {
                if let Some(instance) = &m.instance_id {
                    g.static_members
                        .insert(instance.clone(), m.member_id.clone());
                }
                g.members.insert(
                    m.member_id,
                    Member {
                        instance_id: m.instance_id,
                        client_id: m.client_id,
                        client_host: m.client_host,
                        session_timeout_ms: m.session_timeout_ms,
                        rebalance_timeout_ms: m.rebalance_timeout_ms,
                        protocols: vec![(
                            stored.protocol.clone().unwrap_or_default(),
                            m.subscription,
                        )],
                        assignment: m.assignment,
                        joined: false,
                        join_reply: None,
                        last_seen: now,
                    },
                );
            }
            // Members resume where they were: they keep heartbeating with
            // their generation, or expire after their session timeout.
            g.state = if g.members.is_empty() {
                GroupState::Empty
            } else {
                GroupState::Stable
            };
        }
    }
}

/// Appends records to the group's `__consumer_offsets` partition with
/// acks=all. Returns a Kafka error code (0 on success).
async fn persist(shard: &Rc<Shard>, group: &str, records: Vec<(Bytes, Option<Bytes>)>) -> i16 {
    if records.is_empty() {
        return 0;
    }
    let (partition, _) = placement(shard, group);
    let part = ProducePart {
        topic: OFFSETS_TOPIC.to_string(),
        partition,
        records: store::batch(&records, now_ms()),
    };
    let result = shard
        .produce_local(-1, PERSIST_TIMEOUT_MS, vec![part])
        .await;
    match result.first().map(|r| r.error_code) {
        Some(0) => 0,
        Some(code) => {
            log::warn!(
                "group {group}: writing to {OFFSETS_TOPIC}-{partition} failed with error {code}"
            );
            if code == ErrorCode::RequestTimedOut.code() {
                code
            } else {
                COORDINATOR_NOT_AVAILABLE
            }
        }
        None => COORDINATOR_NOT_AVAILABLE,
    }
}

async fn persist_group(shard: &Rc<Shard>, group: &str) {
    let record = {
        let groups = shard.groups.groups.borrow();
        match groups.get(group) {
            Some(g) => (
                store::group_key(group),
                Some(store::group_value(&g.stored())),
            ),
            None => (store::group_key(group), None),
        }
    };
    persist(shard, group, vec![record]).await;
}

/// Handles a call on the coordinator shard.
pub async fn handle(shard: &Rc<Shard>, call: GroupCall) -> GroupReply {
    match call {
        GroupCall::Join(args) => GroupReply::Join(join(shard, args).await),
        GroupCall::Sync(args) => sync(shard, args).await,
        GroupCall::Heartbeat {
            group,
            generation,
            member_id,
            instance_id,
        } => GroupReply::Code(heartbeat(
            shard,
            &group,
            generation,
            &member_id,
            instance_id.as_deref(),
        )),
        GroupCall::Leave { group, members } => leave(shard, group, members).await,
        GroupCall::Commit {
            group,
            generation,
            member_id,
            instance_id,
            offsets,
        } => commit(shard, group, generation, member_id, instance_id, offsets).await,
        GroupCall::Fetch { group, topics } => fetch(shard, &group, topics),
        GroupCall::Describe(group) => GroupReply::Describe(describe(shard, &group)),
        GroupCall::List => GroupReply::List(shard.groups.list()),
        GroupCall::Delete(group) => GroupReply::Code(delete(shard, group).await),
        GroupCall::OffsetDelete { group, partitions } => {
            offset_delete(shard, group, partitions).await
        }
    }
}

/// A SyncGroup request.
pub struct SyncArgs {
    /// Group id.
    pub group: String,
    /// Generation.
    pub generation: i32,
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub instance_id: Option<String>,
    /// Protocol type (v5).
    pub protocol_type: Option<String>,
    /// Protocol name (v5).
    pub protocol: Option<String>,
    /// The leader's assignments.
    pub assignments: Vec<(String, Bytes)>,
}

/// A JoinGroup request.
pub struct JoinArgs {
    /// Version of the request.
    pub version: i16,
    /// Group id.
    pub group: String,
    /// Member id ("" for a new member).
    pub member_id: String,
    /// Static instance id.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Protocol type.
    pub protocol_type: String,
    /// Protocols in preference order with their metadata.
    pub protocols: Vec<(String, Bytes)>,
}

fn join_error(code: i16, member_id: &str) -> JoinReply {
    JoinReply {
        error_code: code,
        generation: -1,
        member_id: member_id.to_string(),
        ..JoinReply::default()
    }
}

fn new_member_id(prefix: &str) -> String {
    let prefix = if prefix.is_empty() { "member" } else { prefix };
    let prefix: String = prefix.chars().take(100).collect();
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

#[allow(clippy::await_holding_refcell_ref)] // the table is released with drop() before every await
async fn join(shard: &Rc<Shard>, a: JoinArgs) -> JoinReply {
    if a.group.is_empty() {
        return join_error(INVALID_GROUP_ID, &a.member_id);
    }
    if !(SESSION_TIMEOUT_MIN_MS..=SESSION_TIMEOUT_MAX_MS).contains(&a.session_timeout_ms) {
        return join_error(INVALID_SESSION_TIMEOUT, &a.member_id);
    }
    if a.protocol_type.is_empty()
        || a.protocols.is_empty()
        || a.protocols
            .iter()
            .any(|(_, m)| m.len() > PROTOCOL_METADATA_MAX_BYTES)
    {
        return join_error(INCONSISTENT_GROUP_PROTOCOL, &a.member_id);
    }
    let rebalance_timeout_ms = if a.version == 0 || a.rebalance_timeout_ms <= 0 {
        a.session_timeout_ms
    } else {
        a.rebalance_timeout_ms
    };
    let member_id;
    let changed;
    {
        let mut groups = shard.groups.groups.borrow_mut();
        let group = groups.entry(a.group.clone()).or_insert_with(Group::new);
        if !group.supports(&a.protocol_type, &a.protocols) {
            return join_error(INCONSISTENT_GROUP_PROTOCOL, &a.member_id);
        }
        let now = Instant::now();
        let mut id = a.member_id.clone();
        if id.is_empty() {
            if let Some(instance) = &a.instance_id {
                if let Some(old) = group.static_members.get(instance).cloned() {
                    // A static member restarting: new member id, same place.
                    let new_id = new_member_id(instance);
                    if let Some(mut m) = group.members.shift_remove(&old) {
                        m.last_seen = now;
                        let same = m.protocols == a.protocols;
                        m.protocols = a.protocols.clone();
                        group.members.insert(new_id.clone(), m);
                        group
                            .static_members
                            .insert(instance.clone(), new_id.clone());
                        if group.leader.as_deref() == Some(old.as_str()) {
                            group.leader = Some(new_id.clone());
                        }
                        if group.state == GroupState::Stable && same {
                            let reply = JoinReply {
                                error_code: 0,
                                generation: group.generation,
                                protocol_type: group.protocol_type.clone(),
                                protocol: group.protocol.clone(),
                                leader: group.leader.clone().unwrap_or_default(),
                                member_id: new_id.clone(),
                                members: Vec::new(),
                            };
                            drop(groups);
                            persist_group(shard, &a.group).await;
                            return reply;
                        }
                        id = new_id;
                    } else {
                        group.static_members.remove(instance);
                    }
                }
                if id.is_empty() {
                    id = new_member_id(instance);
                }
            } else if a.version >= 4 {
                if group.pending.len() + group.members.len() >= GROUP_MEMBERS_MAX {
                    return join_error(GROUP_MAX_SIZE_REACHED, "");
                }
                let id = new_member_id(&a.client_id);
                group
                    .pending
                    .insert(id.clone(), (now, a.session_timeout_ms));
                return join_error(MEMBER_ID_REQUIRED, &id);
            } else {
                id = new_member_id(&a.client_id);
            }
        } else {
            let known = group.members.contains_key(&id) || group.pending.contains_key(&id);
            if let Some(instance) = &a.instance_id {
                if let Some(owner) = group.static_members.get(instance) {
                    if *owner != id {
                        return join_error(FENCED_INSTANCE_ID, &id);
                    }
                }
            }
            if !known {
                return join_error(UNKNOWN_MEMBER_ID, &id);
            }
        }
        group.pending.remove(&id);
        if !group.members.contains_key(&id) && group.members.len() >= GROUP_MEMBERS_MAX {
            return join_error(GROUP_MAX_SIZE_REACHED, &id);
        }
        let existing = group.members.get(&id).map(|m| m.protocols == a.protocols);
        let is_leader = group.leader.as_deref() == Some(id.as_str());
        let member = group.members.entry(id.clone()).or_insert_with(|| Member {
            instance_id: a.instance_id.clone(),
            client_id: a.client_id.clone(),
            client_host: a.client_host.clone(),
            session_timeout_ms: a.session_timeout_ms,
            rebalance_timeout_ms,
            protocols: a.protocols.clone(),
            assignment: Bytes::new(),
            joined: false,
            join_reply: None,
            last_seen: now,
        });
        member.protocols = a.protocols.clone();
        member.session_timeout_ms = a.session_timeout_ms;
        member.rebalance_timeout_ms = rebalance_timeout_ms;
        member.last_seen = now;
        if let Some(instance) = &a.instance_id {
            group.static_members.insert(instance.clone(), id.clone());
        }
        group.protocol_type = Some(a.protocol_type.clone());
        // A known follower rejoining a stable group with the same
        // subscription gets the current generation without a rebalance.
        if group.state == GroupState::Stable && existing == Some(true) && !is_leader {
            return JoinReply {
                error_code: 0,
                generation: group.generation,
                protocol_type: group.protocol_type.clone(),
                protocol: group.protocol.clone(),
                leader: group.leader.clone().unwrap_or_default(),
                member_id: id,
                members: Vec::new(),
            };
        }
        if group.state != GroupState::PreparingRebalance {
            start_rebalance(shard, &a.group, group);
        }
        if let Some(m) = group.members.get_mut(&id) {
            m.joined = true;
            m.join_reply = None;
        }
        group.changed.notify(usize::MAX);
        member_id = id;
        changed = group.changed.clone();
    }
    // Wait for the rebalance to complete (the driver task fills the reply).
    let deadline =
        Instant::now() + Duration::from_millis(rebalance_timeout_ms.max(0) as u64 + 5_000);
    loop {
        let listener = changed.listen();
        {
            let mut groups = shard.groups.groups.borrow_mut();
            let Some(group) = groups.get_mut(&a.group) else {
                return join_error(UNKNOWN_MEMBER_ID, &member_id);
            };
            match group.members.get_mut(&member_id) {
                None => return join_error(UNKNOWN_MEMBER_ID, &member_id),
                Some(m) => {
                    if let Some(reply) = m.join_reply.take() {
                        m.last_seen = Instant::now();
                        return reply;
                    }
                }
            }
        }
        if shard.is_stopping() || Instant::now() >= deadline {
            return join_error(REBALANCE_IN_PROGRESS, &member_id);
        }
        let timeout = glommio::timer::sleep(deadline.saturating_duration_since(Instant::now()));
        futures::pin_mut!(timeout);
        futures::future::select(listener, timeout).await;
    }
}

/// Moves the group to PreparingRebalance and starts the task that ends it.
fn start_rebalance(shard: &Rc<Shard>, name: &str, group: &mut Group) {
    let was_empty = group.state == GroupState::Empty;
    let now = Instant::now();
    let timeout = group
        .members
        .values()
        .map(|m| m.rebalance_timeout_ms.max(0) as u64)
        .max()
        .unwrap_or(0);
    group.rebalance_deadline = Some(now + Duration::from_millis(timeout));
    group.not_before = was_empty
        .then(|| now + Duration::from_millis(shard.config.group_initial_rebalance_delay_ms));
    for m in group.members.values_mut() {
        m.joined = false;
        m.join_reply = None;
    }
    group.set_state(GroupState::PreparingRebalance);
    let shard = shard.clone();
    let name = name.to_string();
    glommio::spawn_local(async move { drive_rebalance(shard, name).await }).detach();
}

/// Ends a rebalance when every member has rejoined (and any initial delay
/// has passed) or at the rebalance deadline, dropping members that did not.
#[allow(clippy::await_holding_refcell_ref)] // the table is released with drop() before every await
async fn drive_rebalance(shard: Rc<Shard>, name: String) {
    // glommio polls a spawned task at once, and the spawner still holds
    // the group table: let it finish first.
    futures_lite::future::yield_now().await;
    loop {
        let (listener, wake_at) = {
            let mut groups = shard.groups.groups.borrow_mut();
            let Some(group) = groups.get_mut(&name) else {
                return;
            };
            if group.state != GroupState::PreparingRebalance {
                return;
            }
            let now = Instant::now();
            let all_joined = group.members.values().all(|m| m.joined);
            let delay_over = group.not_before.is_none_or(|t| now >= t);
            let deadline = group.rebalance_deadline.unwrap_or(now);
            if (all_joined && delay_over) || now >= deadline {
                complete_rebalance(group);
                drop(groups);
                persist_group(&shard, &name).await;
                return;
            }
            let wake_at = if all_joined {
                group.not_before.unwrap_or(deadline).min(deadline)
            } else {
                deadline
            };
            (group.changed.listen(), wake_at)
        };
        let timer = glommio::timer::sleep(wake_at.saturating_duration_since(Instant::now()));
        futures::pin_mut!(timer);
        futures::future::select(listener, timer).await;
    }
}

fn complete_rebalance(group: &mut Group) {
    let dropped: Vec<String> = group
        .members
        .iter()
        .filter(|(_, m)| !m.joined)
        .map(|(id, _)| id.clone())
        .collect();
    for id in dropped {
        remove_member(group, &id);
    }
    group.generation += 1;
    group.rebalance_deadline = None;
    group.not_before = None;
    if group.members.is_empty() {
        group.protocol = None;
        group.leader = None;
        group.set_state(GroupState::Empty);
        return;
    }
    group.protocol = group.select_protocol();
    if group
        .leader
        .as_ref()
        .is_none_or(|l| !group.members.contains_key(l))
    {
        group.leader = group.members.keys().next().cloned();
    }
    let protocol = group.protocol.clone().unwrap_or_default();
    let leader = group.leader.clone().unwrap_or_default();
    let everyone: Vec<(String, Option<String>, Bytes)> = group
        .members
        .iter()
        .map(|(id, m)| (id.clone(), m.instance_id.clone(), m.metadata_for(&protocol)))
        .collect();
    let now = Instant::now();
    for (id, m) in group.members.iter_mut() {
        m.assignment = Bytes::new();
        m.last_seen = now;
        m.join_reply = Some(JoinReply {
            error_code: 0,
            generation: group.generation,
            protocol_type: group.protocol_type.clone(),
            protocol: group.protocol.clone(),
            leader: leader.clone(),
            member_id: id.clone(),
            members: if *id == leader {
                everyone.clone()
            } else {
                Vec::new()
            },
        });
    }
    group.set_state(GroupState::CompletingRebalance);
}

fn remove_member(group: &mut Group, id: &str) {
    if let Some(m) = group.members.shift_remove(id) {
        if let Some(instance) = m.instance_id {
            if group.static_members.get(&instance).map(String::as_str) == Some(id) {
                group.static_members.remove(&instance);
            }
        }
    }
    if group.leader.as_deref() == Some(id) {
        group.leader = None;
    }
}

/// Checks member id, static instance and generation. Ok(()) or an error code.
fn check_member(
    group: &Group,
    member_id: &str,
    instance_id: Option<&str>,
    generation: Option<i32>,
) -> Result<(), i16> {
    if let Some(instance) = instance_id {
        if let Some(owner) = group.static_members.get(instance) {
            if owner != member_id {
                return Err(FENCED_INSTANCE_ID);
            }
        }
    }
    if !group.members.contains_key(member_id) {
        return Err(UNKNOWN_MEMBER_ID);
    }
    if let Some(g) = generation {
        if g != group.generation {
            return Err(ILLEGAL_GENERATION);
        }
    }
    Ok(())
}

#[allow(clippy::await_holding_refcell_ref)] // the table is released with drop() before every await
async fn sync(shard: &Rc<Shard>, a: SyncArgs) -> GroupReply {
    let SyncArgs {
        group: name,
        generation,
        member_id,
        instance_id,
        protocol_type,
        protocol,
        assignments,
    } = a;
    let error = |code| GroupReply::Sync(code, Bytes::new(), None, None);
    let changed = {
        let mut groups = shard.groups.groups.borrow_mut();
        let Some(group) = groups.get_mut(&name) else {
            return error(UNKNOWN_MEMBER_ID);
        };
        if let Err(code) = check_member(group, &member_id, instance_id.as_deref(), Some(generation))
        {
            return error(code);
        }
        if protocol_type
            .as_ref()
            .is_some_and(|t| Some(t) != group.protocol_type.as_ref())
            || protocol
                .as_ref()
                .is_some_and(|p| Some(p) != group.protocol.as_ref())
        {
            return error(INCONSISTENT_GROUP_PROTOCOL);
        }
        if let Some(m) = group.members.get_mut(&member_id) {
            m.last_seen = Instant::now();
        }
        match group.state {
            GroupState::PreparingRebalance | GroupState::Empty => {
                return error(REBALANCE_IN_PROGRESS)
            }
            GroupState::Stable => {
                let m = &group.members[&member_id];
                return GroupReply::Sync(
                    0,
                    m.assignment.clone(),
                    group.protocol_type.clone(),
                    group.protocol.clone(),
                );
            }
            GroupState::CompletingRebalance => {}
        }
        if group.leader.as_deref() == Some(member_id.as_str()) {
            for (id, assignment) in assignments {
                if let Some(m) = group.members.get_mut(&id) {
                    m.assignment = assignment;
                }
            }
            group.set_state(GroupState::Stable);
            let reply = GroupReply::Sync(
                0,
                group.members[&member_id].assignment.clone(),
                group.protocol_type.clone(),
                group.protocol.clone(),
            );
            drop(groups);
            persist_group(shard, &name).await;
            return reply;
        }
        group.changed.clone()
    };
    // A follower waits for the leader's assignment.
    let session = shard
        .groups
        .groups
        .borrow()
        .get(&name)
        .and_then(|g| g.members.get(&member_id).map(|m| m.session_timeout_ms))
        .unwrap_or(SESSION_TIMEOUT_MIN_MS);
    let deadline = Instant::now() + Duration::from_millis(session.max(0) as u64);
    loop {
        let listener = changed.listen();
        {
            let groups = shard.groups.groups.borrow();
            let Some(group) = groups.get(&name) else {
                return error(UNKNOWN_MEMBER_ID);
            };
            if group.generation != generation {
                return error(REBALANCE_IN_PROGRESS);
            }
            match (group.state, group.members.get(&member_id)) {
                (_, None) => return error(UNKNOWN_MEMBER_ID),
                (GroupState::Stable, Some(m)) => {
                    return GroupReply::Sync(
                        0,
                        m.assignment.clone(),
                        group.protocol_type.clone(),
                        group.protocol.clone(),
                    )
                }
                (GroupState::CompletingRebalance, _) => {}
                _ => return error(REBALANCE_IN_PROGRESS),
            }
        }
        if shard.is_stopping() || Instant::now() >= deadline {
            return error(REBALANCE_IN_PROGRESS);
        }
        let timer = glommio::timer::sleep(deadline.saturating_duration_since(Instant::now()));
        futures::pin_mut!(timer);
        futures::future::select(listener, timer).await;
    }
}

fn heartbeat(
    shard: &Rc<Shard>,
    name: &str,
    generation: i32,
    member_id: &str,
    instance_id: Option<&str>,
) -> i16 {
    let mut groups = shard.groups.groups.borrow_mut();
    let Some(group) = groups.get_mut(name) else {
        return UNKNOWN_MEMBER_ID;
    };
    if let Err(code) = check_member(group, member_id, instance_id, None) {
        return code;
    }
    if let Some(m) = group.members.get_mut(member_id) {
        m.last_seen = Instant::now();
    }
    if group.state == GroupState::PreparingRebalance {
        return REBALANCE_IN_PROGRESS;
    }
    if generation != group.generation {
        return ILLEGAL_GENERATION;
    }
    0
}

async fn leave(
    shard: &Rc<Shard>,
    name: String,
    members: Vec<(String, Option<String>)>,
) -> GroupReply {
    let codes: Vec<i16>;
    {
        let mut groups = shard.groups.groups.borrow_mut();
        let Some(group) = groups.get_mut(&name) else {
            return GroupReply::Leave(UNKNOWN_MEMBER_ID, vec![UNKNOWN_MEMBER_ID; members.len()]);
        };
        codes = members
            .iter()
            .map(|(member_id, instance_id)| {
                let id = match (member_id.is_empty(), instance_id) {
                    (true, Some(instance)) => match group.static_members.get(instance) {
                        Some(id) => id.clone(),
                        None => return UNKNOWN_MEMBER_ID,
                    },
                    _ => member_id.clone(),
                };
                if let Err(code) = check_member(group, &id, instance_id.as_deref(), None) {
                    return code;
                }
                remove_member(group, &id);
                0
            })
            .collect();
        if codes.contains(&0) {
            membership_changed(shard, &name, group);
        }
    }
    persist_group(shard, &name).await;
    let top = if members.len() == 1 { codes[0] } else { 0 };
    GroupReply::Leave(top, codes)
}

/// After members left or expired: rebalance the rest, or become Empty.
fn membership_changed(shard: &Rc<Shard>, name: &str, group: &mut Group) {
    if group.members.is_empty() {
        group.generation += 1;
        group.protocol = None;
        group.leader = None;
        group.rebalance_deadline = None;
        group.set_state(GroupState::Empty);
    } else if group.state != GroupState::PreparingRebalance {
        start_rebalance(shard, name, group);
    } else {
        group.changed.notify(usize::MAX);
    }
}

async fn commit(
    shard: &Rc<Shard>,
    name: String,
    generation: i32,
    member_id: String,
    instance_id: Option<String>,
    offsets: Vec<(String, i32, i64, i32, Option<String>, i16)>,
) -> GroupReply {
    {
        let mut groups = shard.groups.groups.borrow_mut();
        let group = groups.entry(name.clone()).or_insert_with(Group::new);
        let simple = generation < 0 && member_id.is_empty();
        let check = if simple {
            if group.state == GroupState::Empty {
                Ok(())
            } else {
                Err(UNKNOWN_MEMBER_ID)
            }
        } else if group.state == GroupState::Empty {
            Err(UNKNOWN_MEMBER_ID)
        } else {
            check_member(group, &member_id, instance_id.as_deref(), Some(generation)).and_then(
                |()| {
                    if group.state == GroupState::CompletingRebalance {
                        Err(REBALANCE_IN_PROGRESS)
                    } else {
                        Ok(())
                    }
                },
            )
        };
        if let Err(code) = check {
            if group.members.is_empty()
                && group.offsets.is_empty()
                && group.state == GroupState::Empty
            {
                groups.remove(&name);
            }
            return GroupReply::Commit(vec![code; offsets.len()]);
        }
        if let Some(m) = group.members.get_mut(&member_id) {
            m.last_seen = Instant::now();
        }
    }
    let now = now_ms();
    let mut codes: Vec<i16> = offsets
        .iter()
        .map(|(_, _, _, _, metadata, precheck)| {
            if *precheck != 0 {
                *precheck
            } else if metadata
                .as_ref()
                .is_some_and(|m| m.len() > OFFSET_METADATA_MAX_BYTES)
            {
                OFFSET_METADATA_TOO_LARGE
            } else {
                0
            }
        })
        .collect();
    let mut records = Vec::new();
    let mut accepted = Vec::new();
    for ((topic, partition, offset, epoch, metadata, _), code) in offsets.iter().zip(&codes) {
        if *code != 0 {
            continue;
        }
        let value = CommittedOffset {
            offset: *offset,
            leader_epoch: *epoch,
            metadata: metadata.clone().unwrap_or_default(),
            commit_ms: now,
        };
        records.push((
            store::offset_key(&name, topic, *partition),
            Some(store::offset_value(&value)),
        ));
        accepted.push(((topic.clone(), *partition), value));
    }
    let written = persist(shard, &name, records).await;
    if written != 0 {
        for code in codes.iter_mut().filter(|c| **c == 0) {
            *code = written;
        }
    } else {
        let mut groups = shard.groups.groups.borrow_mut();
        let group = groups.entry(name.clone()).or_insert_with(Group::new);
        for (key, value) in accepted {
            group.offsets.insert(key, value);
        }
    }
    GroupReply::Commit(codes)
}

fn fetch(shard: &Rc<Shard>, name: &str, topics: Option<Vec<(String, Vec<i32>)>>) -> GroupReply {
    let groups = shard.groups.groups.borrow();
    let group = groups.get(name);
    let rows = match topics {
        None => group
            .map(|g| {
                g.offsets
                    .iter()
                    .map(|((t, p), o)| {
                        (
                            t.clone(),
                            *p,
                            o.offset,
                            o.leader_epoch,
                            Some(o.metadata.clone()),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
        Some(topics) => topics
            .into_iter()
            .flat_map(|(t, parts)| parts.into_iter().map(move |p| (t.clone(), p)))
            .map(
                |(t, p)| match group.and_then(|g| g.offsets.get(&(t.clone(), p))) {
                    Some(o) => (t, p, o.offset, o.leader_epoch, Some(o.metadata.clone())),
                    None => (t, p, -1, -1, Some(String::new())),
                },
            )
            .collect(),
    };
    GroupReply::Fetch(0, rows)
}

fn describe(shard: &Rc<Shard>, name: &str) -> GroupDescription {
    let groups = shard.groups.groups.borrow();
    let Some(group) = groups.get(name) else {
        return GroupDescription {
            error_code: GROUP_ID_NOT_FOUND,
            state: "Dead".into(),
            ..GroupDescription::default()
        };
    };
    let protocol = group.protocol.clone().unwrap_or_default();
    let stable = group.state == GroupState::Stable;
    GroupDescription {
        error_code: 0,
        state: group.state.name().into(),
        protocol_type: group.protocol_type.clone().unwrap_or_default(),
        protocol: if stable {
            protocol.clone()
        } else {
            String::new()
        },
        members: group
            .members
            .iter()
            .map(|(id, m)| {
                (
                    id.clone(),
                    m.instance_id.clone(),
                    m.client_id.clone(),
                    m.client_host.clone(),
                    if stable {
                        m.metadata_for(&protocol)
                    } else {
                        Bytes::new()
                    },
                    if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                )
            })
            .collect(),
    }
}

async fn delete(shard: &Rc<Shard>, name: String) -> i16 {
    let records = {
        let groups = shard.groups.groups.borrow();
        let Some(group) = groups.get(&name) else {
            return GROUP_ID_NOT_FOUND;
        };
        if group.state != GroupState::Empty {
            return NON_EMPTY_GROUP;
        }
        let mut records: Vec<(Bytes, Option<Bytes>)> = group
            .offsets
            .keys()
            .map(|(t, p)| (store::offset_key(&name, t, *p), None))
            .collect();
        records.push((store::group_key(&name), None));
        records
    };
    let code = persist(shard, &name, records).await;
    if code == 0 {
        shard.groups.groups.borrow_mut().remove(&name);
    }
    code
}

/// Topics a member's consumer-protocol subscription names (version i16,
/// topics array of strings). `None` when the metadata is not in that form.
fn subscribed_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut b = Bytes::copy_from_slice(metadata);
    use bytes::Buf;
    if b.remaining() < 6 {
        return None;
    }
    b.get_i16();
    let count = b.get_i32();
    let mut topics = Vec::new();
    for _ in 0..count.max(0) {
        if b.remaining() < 2 {
            return None;
        }
        let len = b.get_i16();
        if len < 0 || b.remaining() < len as usize {
            return None;
        }
        topics.push(String::from_utf8_lossy(&b.split_to(len as usize)).into_owned());
    }
    Some(topics)
}

async fn offset_delete(
    shard: &Rc<Shard>,
    name: String,
    partitions: Vec<(String, i32)>,
) -> GroupReply {
    let (codes, records) = {
        let groups = shard.groups.groups.borrow();
        let Some(group) = groups.get(&name) else {
            return GroupReply::OffsetDelete(GROUP_ID_NOT_FOUND, Vec::new());
        };
        let protocol = group.protocol.clone().unwrap_or_default();
        let subscribed = |topic: &str| {
            group.state != GroupState::Empty
                && group.members.values().any(|m| {
                    subscribed_topics(&m.metadata_for(&protocol))
                        .is_none_or(|ts| ts.iter().any(|t| t == topic))
                })
        };
        let mut records = Vec::new();
        let codes: Vec<i16> = partitions
            .iter()
            .map(|(t, p)| {
                if subscribed(t) {
                    GROUP_SUBSCRIBED_TO_TOPIC
                } else {
                    if group.offsets.contains_key(&(t.clone(), *p)) {
                        records.push((store::offset_key(&name, t, *p), None));
                    }
                    0
                }
            })
            .collect();
        (codes, records)
    };
    let code = persist(shard, &name, records).await;
    if code != 0 {
        return GroupReply::OffsetDelete(code, Vec::new());
    }
    if let Some(group) = shard.groups.groups.borrow_mut().get_mut(&name) {
        for ((t, p), c) in partitions.iter().zip(&codes) {
            if *c == 0 {
                group.offsets.remove(&(t.clone(), *p));
            }
        }
    }
    GroupReply::OffsetDelete(0, codes)
}

/// Periodic work of a shard's coordinator: expire members whose session
/// ended and pending member ids, and offsets of groups empty for longer
/// than offsets.retention.minutes.
pub async fn run_timers(shard: Rc<Shard>) {
    let mut last_retention = Instant::now();
    loop {
        glommio::timer::sleep(Duration::from_millis(250)).await;
        let now = Instant::now();
        let mut changed_groups = Vec::new();
        {
            let mut groups = shard.groups.groups.borrow_mut();
            for (name, group) in groups.iter_mut() {
                group.pending.retain(|_, (since, session)| {
                    now.duration_since(*since) < Duration::from_millis((*session).max(0) as u64)
                });
                if group.state == GroupState::PreparingRebalance {
                    continue; // the rebalance deadline handles members that do not rejoin
                }
                let expired: Vec<String> = group
                    .members
                    .iter()
                    .filter(|(_, m)| {
                        now.duration_since(m.last_seen)
                            > Duration::from_millis(m.session_timeout_ms.max(0) as u64)
                    })
                    .map(|(id, _)| id.clone())
                    .collect();
                if expired.is_empty() {
                    continue;
                }
                for id in &expired {
                    log::info!("group {name}: member {id} session expired");
                    remove_member(group, id);
                }
                membership_changed(&shard, name, group);
                changed_groups.push(name.clone());
            }
        }
        // Forget groups that hold nothing (failed joins, expired pending ids).
        shard.groups.groups.borrow_mut().retain(|_, g| {
            !(g.state == GroupState::Empty
                && g.members.is_empty()
                && g.offsets.is_empty()
                && g.pending.is_empty())
        });
        for name in changed_groups {
            persist_group(&shard, &name).await;
        }
        if now.duration_since(last_retention) >= Duration::from_secs(60) {
            last_retention = now;
            expire_offsets(&shard).await;
        }
    }
}

async fn expire_offsets(shard: &Rc<Shard>) {
    let retention_ms = shard
        .config
        .offsets_retention_minutes
        .saturating_mul(60_000) as i64;
    let now = now_ms();
    let expired: Vec<String> = shard
        .groups
        .groups
        .borrow()
        .iter()
        .filter(|(_, g)| g.state == GroupState::Empty && now - g.state_ms > retention_ms)
        .map(|(name, _)| name.clone())
        .collect();
    for name in expired {
        log::info!(
            "group {name}: empty for longer than offsets.retention.minutes; removing its offsets"
        );
        delete(shard, name).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(protocols: &[&str]) -> Member {
        Member {
            instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            protocols: protocols
                .iter()
                .map(|p| (p.to_string(), Bytes::from(p.to_string())))
                .collect(),
            assignment: Bytes::new(),
            joined: true,
            join_reply: None,
            last_seen: Instant::now(),
        }
    }

    #[test]
    fn protocol_selection_and_completion() {
        let mut g = Group::new();
        g.protocol_type = Some("consumer".into());
        g.members
            .insert("a".into(), member(&["range", "roundrobin"]));
        g.members
            .insert("b".into(), member(&["roundrobin", "range"]));
        g.members
            .insert("c".into(), member(&["roundrobin", "sticky"]));
        // Only roundrobin is supported by all.
        assert_eq!(g.select_protocol().as_deref(), Some("roundrobin"));
        assert!(g.supports("consumer", &[("roundrobin".into(), Bytes::new())]));
        assert!(!g.supports("consumer", &[("range".into(), Bytes::new())]));
        assert!(!g.supports("connect", &[("roundrobin".into(), Bytes::new())]));

        g.members.get_mut("c").expect("c").joined = false;
        g.state = GroupState::PreparingRebalance;
        complete_rebalance(&mut g);
        assert_eq!(g.state, GroupState::CompletingRebalance);
        assert_eq!(g.generation, 1);
        assert!(
            !g.members.contains_key("c"),
            "a member that did not rejoin is dropped"
        );
        assert_eq!(
            g.protocol.as_deref(),
            Some("range"),
            "with c gone, range wins the first-choice vote tie by order"
        );
        let leader = g.leader.clone().expect("leader");
        let reply = g.members[&leader].join_reply.clone().expect("reply");
        assert_eq!(reply.members.len(), 2);
        let follower = g
            .members
            .keys()
            .find(|k| **k != leader)
            .cloned()
            .expect("follower");
        assert!(g.members[&follower]
            .join_reply
            .as_ref()
            .expect("reply")
            .members
            .is_empty());
        assert_eq!(check_member(&g, &follower, None, Some(1)), Ok(()));
        assert_eq!(
            check_member(&g, &follower, None, Some(0)),
            Err(ILLEGAL_GENERATION)
        );
        assert_eq!(
            check_member(&g, "zz", None, Some(1)),
            Err(UNKNOWN_MEMBER_ID)
        );
        g.static_members.insert("inst".into(), leader.clone());
        assert_eq!(
            check_member(&g, &follower, Some("inst"), None),
            Err(FENCED_INSTANCE_ID)
        );
    }

    #[test]
    fn replay_restores_offsets_and_members() {
        let mut groups = HashMap::new();
        let offset = |o| CommittedOffset {
            offset: o,
            leader_epoch: -1,
            metadata: String::new(),
            commit_ms: 0,
        };
        apply(
            &mut groups,
            Entry::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 0,
                value: Some(offset(5)),
            },
        );
        apply(
            &mut groups,
            Entry::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 0,
                value: Some(offset(9)),
            },
        );
        apply(
            &mut groups,
            Entry::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 1,
                value: Some(offset(1)),
            },
        );
        apply(
            &mut groups,
            Entry::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 1,
                value: None,
            },
        );
        let stored = StoredGroup {
            protocol_type: "consumer".into(),
            generation: 4,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            state_ms: 0,
            members: vec![StoredMember {
                member_id: "m1".into(),
                instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "h".into(),
                rebalance_timeout_ms: 1,
                session_timeout_ms: 6000,
                subscription: Bytes::from_static(b"s"),
                assignment: Bytes::from_static(b"a"),
            }],
        };
        apply(
            &mut groups,
            Entry::Group {
                group: "g".into(),
                value: Some(stored),
            },
        );
        let g = &groups["g"];
        assert_eq!(g.offsets.len(), 1);
        assert_eq!(g.offsets[&("t".to_string(), 0)].offset, 9);
        assert_eq!((g.state, g.generation), (GroupState::Stable, 4));
        assert_eq!(g.static_members["i1"], "m1");
        assert_eq!(g.members["m1"].assignment, Bytes::from_static(b"a"));
        apply(
            &mut groups,
            Entry::Group {
                group: "g".into(),
                value: None,
            },
        );
        assert!(groups.is_empty());
    }

    #[test]
    fn consumer_subscription_topics() {
        let mut b = vec![0u8, 1, 0, 0, 0, 2];
        for t in ["ab", "c"] {
            b.extend_from_slice(&(t.len() as i16).to_be_bytes());
            b.extend_from_slice(t.as_bytes());
        }
        assert_eq!(
            subscribed_topics(&b),
            Some(vec!["ab".to_string(), "c".to_string()])
        );
        assert_eq!(subscribed_topics(&b[..7]), None);
        assert_eq!(subscribed_topics(&[]), None);
    }
}
