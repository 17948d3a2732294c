//! What goes into the coordinator ([`Event`]) and what comes out
//! ([`Effect`]), and the scratch state one transition fills in.
//!
//! The shell performs effects in the order given: appends in that order
//! (so the log holds them in the order the coordinator decided them),
//! replies as they come, and one timer at the latest deadline asked for.

use std::collections::HashMap;

use bytes::Bytes;
use ringbroker_protocol::errors::ErrorCode;

use crate::config::CoordinatorConfig;
use crate::loading::LoadedRecord;
use crate::records::CommittedOffset;
use crate::timers::Timers;
use crate::types::{AppendId, OffsetsPartition, Protocol, Reply, Request, RequestId, TxnProducer};

/// Something that happened, for the coordinator to act on.
#[derive(Clone, Debug)]
pub enum Event {
    /// A group API request. Answered exactly once, with the same id.
    Request {
        /// The shell's number for the request.
        id: RequestId,
        /// The request.
        request: Request,
    },
    /// The deadline of the last [`Effect::ArmTimer`] has passed (it may be
    /// delivered late or spuriously; nothing fires before its time).
    Timer,
    /// This coordinator is becoming the owner of an offsets partition; its
    /// records follow with [`Event::Replay`]. Requests for its groups are
    /// answered COORDINATOR_LOAD_IN_PROGRESS until
    /// [`Event::LoadCompleted`].
    LoadStarted {
        /// The partition.
        partition: OffsetsPartition,
    },
    /// Records of a partition being loaded, in log order (from
    /// [`crate::loading::decode_chunk`]).
    Replay {
        /// The partition.
        partition: OffsetsPartition,
        /// Decoded records, transactional ones and markers included.
        entries: Vec<LoadedRecord>,
    },
    /// Every record of the partition has been replayed: its groups are
    /// served, and the sessions of their members start now.
    LoadCompleted {
        /// The partition.
        partition: OffsetsPartition,
    },
    /// The partition could not be read: its groups are answered
    /// COORDINATOR_NOT_AVAILABLE until it is loaded again.
    LoadFailed {
        /// The partition.
        partition: OffsetsPartition,
        /// Why (logged).
        reason: String,
    },
    /// This coordinator no longer owns the partition (leadership moved, or
    /// the broker is stopping): requests waiting in its groups are answered
    /// NOT_COORDINATOR and its groups are dropped from memory.
    Unload {
        /// The partition.
        partition: OffsetsPartition,
    },
    /// An append asked for with [`Effect::Append`] is durable (acks=all) or
    /// has failed with the error the log gave.
    AppendCompleted {
        /// The append.
        id: AppendId,
        /// Its outcome.
        result: Result<(), ErrorCode>,
    },
    /// The transaction of `producer_id` ended, and its marker (COMMIT or
    /// ABORT control batch) is durable in the offsets partition: the
    /// producer's pending transactional offsets of every group of the
    /// partition become committed offsets (unless a commit later in the
    /// log replaced them) or are dropped. A producer with nothing pending
    /// is no error (the marker reaches every partition of the
    /// transaction).
    TxnCompleted {
        /// The offsets partition the marker was written to.
        partition: OffsetsPartition,
        /// The producer whose transaction ended.
        producer_id: i64,
        /// COMMIT (true) or ABORT (false).
        commit: bool,
    },
}

/// Something the shell must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Append these records to the partition with acks=all, as one batch,
    /// and report the outcome with [`Event::AppendCompleted`].
    Append {
        /// The append.
        id: AppendId,
        /// Where.
        partition: OffsetsPartition,
        /// (key, value) records; a `None` value is a tombstone.
        records: Vec<(Bytes, Option<Bytes>)>,
        /// For transactional offsets: the batch is transactional, of this
        /// producer (id and epoch), base sequence -1
        /// ([`crate::records::batch_of`] encodes it).
        producer: Option<TxnProducer>,
    },
    /// Answer a request.
    Reply {
        /// The request.
        id: RequestId,
        /// The answer.
        reply: Reply,
    },
    /// Deliver [`Event::Timer`] at (or after) this time; replaces any
    /// earlier request of this kind.
    ArmTimer {
        /// When (ms, the clock events are given with).
        at_ms: i64,
    },
}

/// What to do to the coordinator's state once an append is durable (or
/// how to undo what it stood for when it failed).
#[derive(Clone, Debug)]
pub(crate) enum OnDurable {
    /// Nothing to apply: the state already holds what was written; a
    /// failure is only logged (an empty group's metadata: nobody waits).
    Logged {
        /// Group id.
        group: String,
    },
    /// Offsets committed: they become visible.
    ApplyOffsets {
        /// Group id.
        group: String,
        /// The offsets.
        offsets: Vec<((String, i32), CommittedOffset)>,
        /// Where the records stand in the log (see [`Ctx::next_position`]).
        position: u64,
    },
    /// Transactional offsets (already pending since the request): durable
    /// now, or dropped when the append failed.
    ApplyTxnOffsets {
        /// Group id.
        group: String,
        /// The producer.
        producer_id: i64,
        /// The partitions.
        keys: Vec<(String, i32)>,
        /// The position the pending offsets were given.
        position: u64,
    },
    /// Offsets deleted (OffsetDelete, retention): they disappear, and with
    /// `forget_group` an empty group that has nothing left goes too.
    RemoveOffsets {
        /// Group id.
        group: String,
        /// The offsets.
        keys: Vec<(String, i32)>,
        /// Remove the group if it is empty and holds nothing afterwards.
        forget_group: bool,
    },
    /// A group deleted (DeleteGroups): it was Dead while the tombstones
    /// were written; it goes, or is Empty again if they failed.
    RemoveGroup {
        /// Group id.
        group: String,
        /// The state timestamp to restore on failure.
        state_ms: i64,
    },
    /// The leader's assignment of a generation: on success the members get
    /// it and the group is Stable; on failure every member waiting in
    /// SyncGroup gets the error and the group rebalances.
    SyncAssignment {
        /// Group id.
        group: String,
        /// Generation the assignment is for.
        generation: i32,
        /// Assignment per member.
        assignments: HashMap<String, Bytes>,
    },
    /// A static member rejoined a Stable group under a new member id
    /// without a rebalance: its JoinGroup is answered once this is
    /// durable; on failure the old member id is restored.
    StaticRejoin(Box<StaticRejoin>),
}

/// See [`OnDurable::StaticRejoin`].
#[derive(Clone, Debug)]
pub(crate) struct StaticRejoin {
    /// Group id.
    pub group: String,
    /// The JoinGroup to answer.
    pub request: RequestId,
    /// The generation the rejoin happened in.
    pub generation: i32,
    /// The static instance id.
    pub instance_id: String,
    /// The member id replaced (restored if the record fails).
    pub old_member_id: String,
    /// The member id given.
    pub new_member_id: String,
    /// What the member had before the rejoin, restored if it fails.
    pub old_protocols: Vec<Protocol>,
    /// See `old_protocols`.
    pub old_rebalance_timeout_ms: i32,
    /// See `old_protocols`.
    pub old_session_timeout_ms: i32,
    /// The leader before the rejoin, which the answer names when the
    /// client cannot be told to skip the assignment.
    pub leader_before: String,
    /// JoinGroup v9: the answer may tell a leader to skip assigning.
    pub supports_skip_assignment: bool,
}

/// Records for one partition (and producer, for transactional offsets)
/// collected during one transition; they become one [`Effect::Append`].
#[derive(Debug)]
pub(crate) struct AppendDraft {
    /// Where.
    pub partition: OffsetsPartition,
    /// The transactional producer of the batch, if any.
    pub producer: Option<TxnProducer>,
    /// The records, in order.
    pub records: Vec<(Bytes, Option<Bytes>)>,
    /// What the records stand for, applied in order once durable.
    pub on_durable: Vec<OnDurable>,
    /// Answers to send once the append is durable (or their failed form).
    pub replies: Vec<(RequestId, Reply)>,
}

/// What one transition produced so far.
#[derive(Debug, Default)]
pub(crate) struct Output {
    /// Answers to send now.
    pub replies: Vec<(RequestId, Reply)>,
    /// Appends to ask for, at most one per partition.
    pub drafts: Vec<AppendDraft>,
}

impl Output {
    /// Answers a request now.
    pub fn reply(&mut self, id: RequestId, reply: Reply) {
        self.replies.push((id, reply));
    }

    /// Adds records to this transition's append to `partition`.
    pub fn append(
        &mut self,
        partition: OffsetsPartition,
        records: Vec<(Bytes, Option<Bytes>)>,
        on_durable: OnDurable,
    ) {
        self.append_as(partition, None, records, on_durable);
    }

    /// Adds records to this transition's transactional append of
    /// `producer` to `partition` (a batch of its own).
    pub fn append_txn(
        &mut self,
        partition: OffsetsPartition,
        producer: TxnProducer,
        records: Vec<(Bytes, Option<Bytes>)>,
        on_durable: OnDurable,
    ) {
        self.append_as(partition, Some(producer), records, on_durable);
    }

    fn append_as(
        &mut self,
        partition: OffsetsPartition,
        producer: Option<TxnProducer>,
        records: Vec<(Bytes, Option<Bytes>)>,
        on_durable: OnDurable,
    ) {
        assert!(!records.is_empty(), "an append carries records");
        let draft = self.draft(partition, producer);
        draft.records.extend(records);
        draft.on_durable.push(on_durable);
    }

    /// Answers a request once this transition's append to `partition` is
    /// durable, or now if it made none.
    pub fn reply_after_append(&mut self, partition: OffsetsPartition, id: RequestId, reply: Reply) {
        self.reply_after(partition, None, id, reply);
    }

    /// Answers a request once this transition's transactional append of
    /// `producer` to `partition` is durable, or now if it made none.
    pub fn reply_after_txn_append(
        &mut self,
        partition: OffsetsPartition,
        producer: TxnProducer,
        id: RequestId,
        reply: Reply,
    ) {
        self.reply_after(partition, Some(producer), id, reply);
    }

    fn reply_after(
        &mut self,
        partition: OffsetsPartition,
        producer: Option<TxnProducer>,
        id: RequestId,
        reply: Reply,
    ) {
        match self
            .drafts
            .iter_mut()
            .find(|d| d.partition == partition && d.producer == producer)
        {
            Some(draft) => draft.replies.push((id, reply)),
            None => self.reply(id, reply),
        }
    }

    fn draft(
        &mut self,
        partition: OffsetsPartition,
        producer: Option<TxnProducer>,
    ) -> &mut AppendDraft {
        let index = match self
            .drafts
            .iter()
            .position(|d| d.partition == partition && d.producer == producer)
        {
            Some(index) => index,
            None => {
                self.drafts.push(AppendDraft {
                    partition,
                    producer,
                    records: Vec::new(),
                    on_durable: Vec::new(),
                    replies: Vec::new(),
                });
                self.drafts.len() - 1
            }
        };
        &mut self.drafts[index]
    }
}

/// Generates member ids: `<prefix>-<uuid-shaped 128 bits>`, from a seed
/// the shell gives (so tests are deterministic and a restarted broker does
/// not repeat ids).
#[derive(Debug)]
pub(crate) struct MemberIds {
    state: u64,
}

impl MemberIds {
    pub fn new(seed: u64) -> MemberIds {
        MemberIds { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        // splitmix64
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A new member id for a client (or static instance) named `prefix`.
    pub fn next(&mut self, prefix: &str) -> String {
        let prefix: String = prefix
            .chars()
            .take(crate::config::MEMBER_ID_PREFIX_CHARS_MAX)
            .collect();
        let (a, b) = (self.next_u64(), self.next_u64());
        format!(
            "{prefix}-{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0x0fff,
            0x8000 | ((b >> 48) & 0x3fff),
            b & 0xffff_ffff_ffff
        )
    }
}

/// Everything a transition may touch besides the group itself.
pub(crate) struct Ctx<'a> {
    /// The event's time.
    pub now_ms: i64,
    /// Settings.
    pub config: &'a CoordinatorConfig,
    /// Deadlines.
    pub timers: &'a mut Timers,
    /// Member id generator.
    pub ids: &'a mut MemberIds,
    /// The coordinator's log position counter (see [`Ctx::next_position`]).
    pub positions: &'a mut u64,
    /// What the transition produces.
    pub out: &'a mut Output,
}

impl Ctx<'_> {
    /// A position for records appended in this transition. Positions only
    /// grow, and appends to one partition reach its log in the order they
    /// are asked for, so within a partition positions order records as
    /// the log does (Kafka compares record offsets; this needs no answer
    /// from the log). Replayed records take positions from the same
    /// counter, below every append of the load.
    pub fn next_position(&mut self) -> u64 {
        *self.positions += 1;
        *self.positions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ids_are_unique_deterministic_and_bounded() {
        let mut a = MemberIds::new(1);
        let mut b = MemberIds::new(1);
        let first = a.next("rdkafka");
        assert_eq!(first, b.next("rdkafka"));
        assert_ne!(first, a.next("rdkafka"));
        assert!(first.starts_with("rdkafka-") && first.len() == "rdkafka-".len() + 36);
        let long = a.next(&"x".repeat(500));
        assert_eq!(long.len(), crate::config::MEMBER_ID_PREFIX_CHARS_MAX + 37);
    }

    #[test]
    fn replies_wait_for_the_append_of_their_partition() {
        let mut out = Output::default();
        out.reply_after_append(
            OffsetsPartition(1),
            RequestId(1),
            Reply::Delete(ErrorCode::None),
        );
        assert_eq!(out.replies.len(), 1, "no append: answered now");
        out.append(
            OffsetsPartition(2),
            vec![(Bytes::from_static(b"k"), None)],
            OnDurable::Logged { group: "g".into() },
        );
        out.reply_after_append(
            OffsetsPartition(2),
            RequestId(2),
            Reply::Delete(ErrorCode::None),
        );
        out.append(
            OffsetsPartition(2),
            vec![(Bytes::from_static(b"k2"), None)],
            OnDurable::Logged { group: "g".into() },
        );
        assert_eq!(out.replies.len(), 1);
        assert_eq!(out.drafts.len(), 1, "one append per partition");
        assert_eq!(out.drafts[0].records.len(), 2);
        assert_eq!(out.drafts[0].replies.len(), 1);
    }
}
