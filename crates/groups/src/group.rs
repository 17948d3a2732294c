//! One group and its members as data, with the checks and choices that
//! need no clock and no effects: protocol support and selection, member
//! validation, leader election among rejoined members, state transitions
//! and the stored form of the group. The transitions that do have effects
//! are in [`crate::membership`] and [`crate::offsets`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::{Buf, Bytes};
use indexmap::IndexMap;
use ringbroker_protocol::errors::ErrorCode;

use crate::records::{CommittedOffset, StoredGroup, StoredMember};
use crate::types::{
    DescribedMember, GroupDescription, GroupState, GroupType, JoinedMember, ListedGroup,
    OffsetsPartition, Protocol, RequestId,
};

/// The protocol type of Kafka consumers, whose subscriptions the
/// coordinator can read.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// An offset committed inside a transaction whose marker has not been
/// seen: invisible to OffsetFetch until the transaction commits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingTxnOffset {
    /// The offset.
    pub offset: CommittedOffset,
    /// Where its record stands in the log, relative to other records of
    /// the partition (see [`Group::put_committed`]).
    pub position: u64,
    /// Its append is durable (replayed records are).
    pub durable: bool,
    /// A commit later in the log replaced the group's offset of this
    /// partition: committing the transaction leaves that one in place.
    pub superseded: bool,
}

/// A member of a group.
#[derive(Clone, Debug)]
pub struct Member {
    /// Member id.
    pub id: String,
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
    /// Protocols in preference order.
    pub protocols: Vec<Protocol>,
    /// The leader's assignment for this member.
    pub assignment: Bytes,
    /// The JoinGroup waiting for the rebalance to complete.
    pub awaiting_join: Option<RequestId>,
    /// The SyncGroup waiting for the leader's assignment.
    pub awaiting_sync: Option<RequestId>,
    /// Joined in the current rebalance and never completed one: its
    /// session may expire even while it waits in JoinGroup.
    pub is_new: bool,
}

impl Member {
    /// The metadata the member gave for `protocol` (empty if none).
    pub fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|p| p.name == protocol)
            .map(|p| p.metadata.clone())
            .unwrap_or_default()
    }

    /// True when `protocols` are exactly the member's (names, metadata and
    /// order).
    pub fn matches(&self, protocols: &[Protocol]) -> bool {
        self.protocols == protocols
    }

    /// True when the member needs no heartbeat to stay: it waits in a
    /// JoinGroup (unless new) or a SyncGroup, so it cannot heartbeat.
    pub fn has_satisfied_heartbeat(&self) -> bool {
        !self.is_new && (self.awaiting_join.is_some() || self.awaiting_sync.is_some())
    }

    /// The member's most preferred protocol among `candidates`.
    fn vote<'a>(&'a self, candidates: &[&str]) -> Option<&'a str> {
        self.protocols
            .iter()
            .map(|p| p.name.as_str())
            .find(|name| candidates.contains(name))
    }
}

/// One group.
#[derive(Clone, Debug)]
pub struct Group {
    /// Group id.
    pub id: String,
    /// The `__consumer_offsets` partition holding it.
    pub partition: OffsetsPartition,
    /// State.
    pub state: GroupState,
    /// The state before the last transition.
    pub previous_state: GroupState,
    /// When the state last changed (ms).
    pub state_ms: i64,
    /// Protocol type of the members (`None` for groups that only store
    /// offsets).
    pub protocol_type: Option<String>,
    /// Chosen protocol of the generation.
    pub protocol: Option<String>,
    /// Generation.
    pub generation: i32,
    /// Leader member id; set exactly when the group has members.
    pub leader: Option<String>,
    /// Members by id, in join order (leaders are elected in this order).
    pub members: IndexMap<String, Member>,
    /// Static instance id → member id.
    pub static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not joined yet.
    pub pending_members: BTreeSet<String>,
    /// Members of the generation that have not sent SyncGroup yet.
    pub pending_sync: BTreeSet<String>,
    /// A member joined during the initial rebalance delay (which then
    /// waits longer).
    pub new_member_added: bool,
    /// Committed offsets.
    pub offsets: BTreeMap<(String, i32), CommittedOffset>,
    /// Offsets of open transactions, by producer id.
    pub pending_txn_offsets: BTreeMap<i64, BTreeMap<(String, i32), PendingTxnOffset>>,
}

impl Group {
    /// A new empty group.
    pub fn new(id: &str, partition: OffsetsPartition, now_ms: i64) -> Group {
        Group {
            id: id.to_string(),
            partition,
            state: GroupState::Empty,
            previous_state: GroupState::Empty,
            state_ms: now_ms,
            protocol_type: None,
            protocol: None,
            generation: 0,
            leader: None,
            members: IndexMap::new(),
            static_members: HashMap::new(),
            pending_members: BTreeSet::new(),
            pending_sync: BTreeSet::new(),
            new_member_added: false,
            offsets: BTreeMap::new(),
            pending_txn_offsets: BTreeMap::new(),
        }
    }

    /// Makes `value` the committed offset of `key`, its record standing at
    /// `position` in the log. Pending transactional offsets of `key`
    /// earlier in the log are superseded: Kafka keeps the offset whose
    /// record is last in the log when a transaction commits.
    pub fn put_committed(&mut self, key: (String, i32), value: CommittedOffset, position: u64) {
        for pending in self.pending_txn_offsets.values_mut() {
            if let Some(p) = pending.get_mut(&key) {
                if p.position < position {
                    p.superseded = true;
                }
            }
        }
        self.offsets.insert(key, value);
    }

    /// Removes the offset of `key` (a tombstone): the committed one and
    /// those pending in open transactions, as Kafka does.
    pub fn remove_offset(&mut self, key: &(String, i32)) {
        self.offsets.remove(key);
        self.pending_txn_offsets.retain(|_, pending| {
            pending.remove(key);
            !pending.is_empty()
        });
    }

    /// Makes `offset` the pending offset of `key` in the transaction of
    /// `producer_id` (replacing an earlier one of the same transaction).
    pub fn put_pending(
        &mut self,
        producer_id: i64,
        key: (String, i32),
        offset: CommittedOffset,
        position: u64,
        durable: bool,
    ) {
        self.pending_txn_offsets
            .entry(producer_id)
            .or_default()
            .insert(
                key,
                PendingTxnOffset {
                    offset,
                    position,
                    durable,
                    superseded: false,
                },
            );
    }

    /// True when an open transaction holds an offset of `key`.
    pub fn has_pending_offset(&self, key: &(String, i32)) -> bool {
        self.pending_txn_offsets
            .values()
            .any(|pending| pending.contains_key(key))
    }

    /// Ends the transaction of `producer_id`: on commit its offsets become
    /// committed (those not superseded), on abort they go. Returns how
    /// many offsets it held.
    pub fn complete_txn(&mut self, producer_id: i64, commit: bool) -> usize {
        let Some(pending) = self.pending_txn_offsets.remove(&producer_id) else {
            return 0;
        };
        let count = pending.len();
        if !commit {
            return count;
        }
        for (key, p) in pending {
            if p.superseded {
                continue;
            }
            if !p.durable {
                // The marker follows the records in the log, and is
                // durable: so are they, whatever their append reports.
                log::warn!(
                    "group {}: transaction of producer {producer_id} committed before its offsets were reported durable",
                    self.id
                );
            }
            self.put_committed(key, p.offset, p.position);
        }
        count
    }

    /// Moves to `state`. Panics on a transition the state machine never
    /// makes (a programming error).
    pub fn transition(&mut self, state: GroupState, now_ms: i64) {
        use GroupState::*;
        let valid = match state {
            PreparingRebalance => matches!(self.state, Stable | CompletingRebalance | Empty),
            CompletingRebalance => self.state == PreparingRebalance,
            Stable => self.state == CompletingRebalance,
            Empty => matches!(self.state, PreparingRebalance | Dead),
            Dead => true,
        };
        assert!(
            valid,
            "group {}: no transition from {:?} to {state:?}",
            self.id, self.state
        );
        self.previous_state = self.state;
        self.state = state;
        self.state_ms = now_ms;
    }

    /// True when a rebalance may start from the current state.
    pub fn can_rebalance(&self) -> bool {
        matches!(
            self.state,
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
        )
    }

    /// True when `member_id` leads the group.
    pub fn is_leader(&self, member_id: &str) -> bool {
        self.leader.as_deref() == Some(member_id)
    }

    /// Adds a member of `protocol_type` (its instance id must be free; a
    /// group with members keeps one protocol type).
    pub fn add(&mut self, member: Member, protocol_type: &str) {
        if let Some(instance) = &member.instance_id {
            let previous = self
                .static_members
                .insert(instance.clone(), member.id.clone());
            assert!(previous.is_none(), "static member {instance} added twice");
        }
        if self.members.is_empty() {
            self.protocol_type = Some(protocol_type.to_string());
        }
        assert_eq!(
            self.protocol_type.as_deref(),
            Some(protocol_type),
            "group {}: one protocol type",
            self.id
        );
        if self.leader.is_none() {
            self.leader = Some(member.id.clone());
        }
        self.pending_members.remove(&member.id);
        let previous = self.members.insert(member.id.clone(), member);
        assert!(previous.is_none(), "member added twice");
        self.check_leader();
    }

    /// Removes a member; a removed leader is replaced by the first member
    /// left. Returns the member.
    pub fn remove(&mut self, member_id: &str) -> Option<Member> {
        let removed = self.members.shift_remove(member_id);
        if let Some(m) = &removed {
            if let Some(instance) = &m.instance_id {
                if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                    self.static_members.remove(instance);
                }
            }
        }
        if self.is_leader(member_id) {
            self.leader = self.members.keys().next().cloned();
        }
        self.pending_members.remove(member_id);
        self.pending_sync.remove(member_id);
        self.check_leader();
        removed
    }

    /// Gives a static member a new member id in place of its old one,
    /// keeping everything else. Returns the requests the old id was
    /// waiting in (to be fenced).
    pub fn replace_static_member(
        &mut self,
        instance_id: &str,
        old_id: &str,
        new_id: &str,
    ) -> (Option<RequestId>, Option<RequestId>) {
        let index = self
            .members
            .get_index_of(old_id)
            .expect("replacing a member that exists");
        let mut member = self
            .members
            .shift_remove(old_id)
            .expect("replacing a member that exists");
        let fenced = (member.awaiting_join.take(), member.awaiting_sync.take());
        member.id = new_id.to_string();
        member.is_new = false;
        self.members.insert(new_id.to_string(), member);
        let last = self.members.len() - 1;
        self.members.move_index(last, index);
        if self.is_leader(old_id) {
            self.leader = Some(new_id.to_string());
        }
        if self.pending_sync.remove(old_id) {
            self.pending_sync.insert(new_id.to_string());
        }
        self.static_members
            .insert(instance_id.to_string(), new_id.to_string());
        self.check_leader();
        fenced
    }

    /// Replaces a member's protocols and timeouts and sets the JoinGroup it
    /// waits in; returns the JoinGroup it waited in before, if another.
    pub fn update_member(
        &mut self,
        member_id: &str,
        protocols: Vec<Protocol>,
        rebalance_timeout_ms: i32,
        session_timeout_ms: i32,
        awaiting_join: Option<RequestId>,
    ) -> Option<RequestId> {
        let member = self
            .members
            .get_mut(member_id)
            .expect("updating a member that exists");
        member.protocols = protocols;
        member.rebalance_timeout_ms = rebalance_timeout_ms;
        member.session_timeout_ms = session_timeout_ms;
        let previous = std::mem::replace(&mut member.awaiting_join, awaiting_join);
        previous.filter(|p| Some(*p) != awaiting_join)
    }

    /// Checks a member id and static instance id: FENCED_INSTANCE_ID when
    /// the instance belongs to another member id, UNKNOWN_MEMBER_ID when
    /// either is unknown.
    pub fn validate_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), ErrorCode> {
        if let Some(instance) = instance_id {
            match self.static_members.get(instance) {
                None => return Err(ErrorCode::UnknownMemberId),
                Some(owner) if owner != member_id => return Err(ErrorCode::FencedInstanceId),
                Some(_) => {}
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(ErrorCode::UnknownMemberId);
        }
        Ok(())
    }

    /// True when every member waits in a JoinGroup and no member id handed
    /// out is still to join.
    pub fn all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    /// The group's rebalance timeout: the largest of its members'.
    pub fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms.max(0)))
            .max()
            .unwrap_or(0)
    }

    /// True when a member with this protocol type and protocols may join:
    /// in an empty group any non-empty type and list, otherwise the same
    /// type and a protocol every member supports.
    pub fn supports_protocols(&self, protocol_type: &str, protocols: &[Protocol]) -> bool {
        if self.state == GroupState::Empty || self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|p| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|mp| mp.name == p.name))
            })
    }

    /// The protocol for the next generation: among the protocols every
    /// member supports, the one most members prefer; ties go to the one
    /// the earliest member ranks first. `None` for a group without members.
    pub fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&str> = first
            .protocols
            .iter()
            .map(|p| p.name.as_str())
            .filter(|name| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|mp| mp.name == *name))
            })
            .collect();
        let mut votes: Vec<(&str, usize)> = candidates.iter().map(|c| (*c, 0)).collect();
        for member in self.members.values() {
            if let Some(choice) = member.vote(&candidates) {
                if let Some(entry) = votes.iter_mut().find(|(name, _)| *name == choice) {
                    entry.1 += 1;
                }
            }
        }
        let mut best: Option<(&str, usize)> = None;
        for (name, count) in votes {
            if best.is_none_or(|(_, most)| count > most) {
                best = Some((name, count));
            }
        }
        best.map(|(name, _)| name.to_string())
    }

    /// Keeps the leader if it rejoined, otherwise makes the first rejoined
    /// member the leader. False when no member rejoined (or none exists).
    pub fn maybe_elect_new_joined_leader(&mut self) -> bool {
        let Some(leader) = self.leader.clone() else {
            return false;
        };
        if self
            .members
            .get(&leader)
            .is_some_and(|m| m.awaiting_join.is_some())
        {
            return true;
        }
        match self
            .members
            .values()
            .find(|m| m.awaiting_join.is_some())
            .map(|m| m.id.clone())
        {
            Some(new_leader) => {
                self.leader = Some(new_leader);
                true
            }
            None => false,
        }
    }

    /// Every member with its metadata for the chosen protocol, as the
    /// leader's JoinGroup answer lists them.
    pub fn joined_members(&self) -> Vec<JoinedMember> {
        let protocol = self.protocol.clone().unwrap_or_default();
        self.members
            .values()
            .map(|m| JoinedMember {
                member_id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                metadata: m.metadata_for(&protocol),
            })
            .collect()
    }

    /// The group's record value, with each member's assignment taken from
    /// `assignments` when given (SyncGroup) or from the member.
    pub fn stored(&self, assignments: Option<&HashMap<String, Bytes>>) -> StoredGroup {
        let protocol = self.protocol.clone().unwrap_or_default();
        StoredGroup {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            state_ms: self.state_ms,
            members: self
                .members
                .values()
                .map(|m| StoredMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata_for(&protocol),
                    assignment: match assignments {
                        Some(a) => a.get(&m.id).cloned().unwrap_or_default(),
                        None => m.assignment.clone(),
                    },
                })
                .collect(),
        }
    }

    /// The topics the members subscribe to: `Some(empty)` for a group
    /// without members, `None` when unknown (not the consumer protocol, or
    /// a subscription that does not parse), which callers treat as "every
    /// topic".
    pub fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.members.is_empty() {
            return Some(BTreeSet::new());
        }
        if self.protocol_type.as_deref() != Some(CONSUMER_PROTOCOL_TYPE) {
            return None;
        }
        let protocol = self.protocol.as_deref()?;
        let mut topics = BTreeSet::new();
        for member in self.members.values() {
            topics.extend(subscription_topics(&member.metadata_for(protocol))?);
        }
        Some(topics)
    }

    /// True when the members may consume `topic`.
    pub fn is_subscribed_to(&self, topic: &str) -> bool {
        self.subscribed_topics()
            .is_none_or(|topics| topics.contains(topic))
    }

    /// DescribeGroups' view of the group: metadata, assignments and the
    /// protocol only for a Stable group.
    pub fn describe(&self) -> GroupDescription {
        let stable = self.state == GroupState::Stable;
        let protocol = self.protocol.clone().unwrap_or_default();
        GroupDescription {
            error: ErrorCode::None,
            state: Some(self.state),
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol: if stable {
                protocol.clone()
            } else {
                String::new()
            },
            members: self
                .members
                .values()
                .map(|m| DescribedMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata_for(&protocol)
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        }
    }

    /// ListGroups' view of the group.
    pub fn listed(&self) -> ListedGroup {
        ListedGroup {
            group: self.id.clone(),
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            state: self.state.name(),
            group_type: GroupType::Classic.name(),
        }
    }

    /// True when the group holds nothing worth keeping in memory (offsets
    /// pending in open transactions count, as in Kafka's `hasOffsets`).
    pub fn is_forgettable(&self) -> bool {
        self.state == GroupState::Empty
            && self.members.is_empty()
            && self.pending_members.is_empty()
            && self.offsets.is_empty()
            && self.pending_txn_offsets.is_empty()
    }

    fn check_leader(&self) {
        assert_eq!(
            self.leader.is_some(),
            !self.members.is_empty(),
            "group {}: a leader exactly when there are members",
            self.id
        );
        if let Some(leader) = &self.leader {
            assert!(
                self.members.contains_key(leader),
                "group {}: the leader is a member",
                self.id
            );
        }
    }
}

/// Topics a consumer-protocol subscription names (version i16, then an
/// array of topic strings, in every version). `None` when the metadata is
/// not in that form.
pub fn subscription_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut b = Bytes::copy_from_slice(metadata);
    if b.remaining() < 6 {
        return None;
    }
    b.get_i16();
    let count = b.get_i32();
    if count < 0 || count as usize > b.remaining() / 2 {
        return None;
    }
    let mut topics = Vec::with_capacity(count as usize);
    for _ in 0..count {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn protocols(names: &[&str]) -> Vec<Protocol> {
        names
            .iter()
            .map(|n| Protocol {
                name: n.to_string(),
                metadata: Bytes::from(n.to_string()),
            })
            .collect()
    }

    fn member(id: &str, names: &[&str]) -> Member {
        Member {
            id: id.into(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            protocols: protocols(names),
            assignment: Bytes::new(),
            awaiting_join: Some(RequestId(1)),
            awaiting_sync: None,
            is_new: false,
        }
    }

    #[test]
    fn protocol_selection_votes_among_common_protocols() {
        let mut g = Group::new("g", OffsetsPartition(0), 0);
        g.protocol_type = Some("consumer".into());
        g.add(member("a", &["range", "roundrobin"]), "consumer");
        g.add(member("b", &["roundrobin", "range"]), "consumer");
        g.add(member("c", &["roundrobin", "sticky"]), "consumer");
        g.state = GroupState::Stable;
        // Only roundrobin is supported by all.
        assert_eq!(g.select_protocol().as_deref(), Some("roundrobin"));
        assert!(g.supports_protocols("consumer", &protocols(&["roundrobin"])));
        assert!(!g.supports_protocols("consumer", &protocols(&["range"])));
        assert!(!g.supports_protocols("connect", &protocols(&["roundrobin"])));
        g.remove("c");
        // With c gone, range and roundrobin tie; range is a's first choice.
        assert_eq!(g.select_protocol().as_deref(), Some("range"));
        g.add(member("d", &["roundrobin"]), "consumer");
        assert_eq!(g.select_protocol().as_deref(), Some("roundrobin"));
    }

    #[test]
    fn empty_groups_accept_any_non_empty_protocol_list() {
        let g = Group::new("g", OffsetsPartition(0), 0);
        assert!(g.supports_protocols("consumer", &protocols(&["x"])));
        assert!(!g.supports_protocols("", &protocols(&["x"])));
        assert!(!g.supports_protocols("consumer", &[]));
    }

    #[test]
    fn leader_follows_membership() {
        let mut g = Group::new("g", OffsetsPartition(0), 0);
        g.add(member("a", &["range"]), "consumer");
        g.add(member("b", &["range"]), "consumer");
        assert_eq!(g.leader.as_deref(), Some("a"));
        g.members.get_mut("a").expect("a").awaiting_join = None;
        assert!(g.maybe_elect_new_joined_leader());
        assert_eq!(g.leader.as_deref(), Some("b"), "a rejoined member leads");
        g.members.get_mut("b").expect("b").awaiting_join = None;
        assert!(!g.maybe_elect_new_joined_leader(), "nobody rejoined");
        g.remove("b");
        assert_eq!(g.leader.as_deref(), Some("a"));
        g.remove("a");
        assert_eq!(g.leader, None);
    }

    #[test]
    fn member_validation_and_static_replacement() {
        let mut g = Group::new("g", OffsetsPartition(0), 0);
        let mut a = member("a", &["range"]);
        a.instance_id = Some("i".into());
        a.awaiting_sync = Some(RequestId(7));
        g.add(a, "consumer");
        g.add(member("b", &["range"]), "consumer");
        assert_eq!(g.validate_member("a", Some("i")), Ok(()));
        assert_eq!(
            g.validate_member("b", Some("i")),
            Err(ErrorCode::FencedInstanceId)
        );
        assert_eq!(
            g.validate_member("b", Some("j")),
            Err(ErrorCode::UnknownMemberId)
        );
        assert_eq!(
            g.validate_member("z", None),
            Err(ErrorCode::UnknownMemberId)
        );
        let fenced = g.replace_static_member("i", "a", "a2");
        assert_eq!(fenced, (Some(RequestId(1)), Some(RequestId(7))));
        assert_eq!(
            g.members.keys().collect::<Vec<_>>(),
            ["a2", "b"],
            "same place"
        );
        assert_eq!(g.leader.as_deref(), Some("a2"));
        assert_eq!(g.static_members["i"], "a2");
        assert_eq!(
            g.validate_member("a", Some("i")),
            Err(ErrorCode::FencedInstanceId)
        );
    }

    #[test]
    fn transitions_follow_the_state_machine() {
        let mut g = Group::new("g", OffsetsPartition(0), 0);
        g.transition(GroupState::PreparingRebalance, 5);
        assert_eq!((g.previous_state, g.state_ms), (GroupState::Empty, 5));
        g.transition(GroupState::CompletingRebalance, 6);
        g.transition(GroupState::Stable, 7);
        g.transition(GroupState::PreparingRebalance, 8);
        g.transition(GroupState::Empty, 9);
        let bad = std::panic::catch_unwind(move || {
            let mut g = g;
            g.transition(GroupState::Stable, 10)
        });
        assert!(bad.is_err(), "Empty -> Stable is not a transition");
    }

    #[test]
    fn consumer_subscription_topics() {
        let mut b = vec![0u8, 1, 0, 0, 0, 2];
        for t in ["ab", "c"] {
            b.extend_from_slice(&(t.len() as i16).to_be_bytes());
            b.extend_from_slice(t.as_bytes());
        }
        assert_eq!(
            subscription_topics(&b),
            Some(vec!["ab".to_string(), "c".to_string()])
        );
        assert_eq!(subscription_topics(&b[..7]), None);
        assert_eq!(subscription_topics(&[]), None);
        assert_eq!(subscription_topics(&[0, 0, 0x7f, 0xff, 0xff, 0xff]), None);
        let mut g = Group::new("g", OffsetsPartition(0), 0);
        assert!(!g.is_subscribed_to("ab"), "no members, no subscription");
        g.protocol_type = Some(CONSUMER_PROTOCOL_TYPE.into());
        g.protocol = Some("range".into());
        let mut m = member("a", &[]);
        m.protocols = vec![Protocol {
            name: "range".into(),
            metadata: Bytes::from(b),
        }];
        g.add(m, CONSUMER_PROTOCOL_TYPE);
        assert!(g.is_subscribed_to("ab") && !g.is_subscribed_to("zz"));
        g.members.get_mut("a").expect("a").protocols[0].metadata = Bytes::from_static(b"?");
        assert!(g.is_subscribed_to("zz"), "unreadable: every topic");
    }
}
