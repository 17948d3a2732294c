//! One transactional id's metadata and its transitions, in Kafka's
//! two steps: `prepare_*` computes the target (`Transit`) and marks the
//! metadata with a pending state, which makes every concurrent request get
//! CONCURRENT_TRANSACTIONS; once the target's record is durable,
//! `complete_transition` applies it (or
//! `abort_transition` drops it when the append failed).
//!
//! Transaction version 1 semantics (no epoch bump per transaction, KIP-890
//! part 2 is not implemented); the fields KIP-890 needs (next producer id,
//! client transaction version) are kept and stored.

use std::collections::BTreeSet;

use ringbroker_protocol::errors::ErrorCode;

use crate::records::TxnLogValue;
use crate::state::TxnState;
use crate::types::{TopicPartition, TxnResult, NO_PRODUCER_EPOCH, NO_PRODUCER_ID};

/// Whether an epoch leaves no room for another bump: Kafka keeps
/// `i16::MAX` free so the coordinator can always fence a producer.
pub fn epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

/// A transactional id's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnMetadata {
    /// The transactional id.
    pub transactional_id: String,
    /// The producer id in use.
    pub producer_id: i64,
    /// The producer id before the last transition (KIP-360: a producer
    /// retrying after a producer id rotation it never heard about).
    pub previous_producer_id: i64,
    /// KIP-890: producer id to move to after an epoch overflow (always -1
    /// with transaction version 1).
    pub next_producer_id: i64,
    /// The current epoch (-1 until the first InitProducerId is durable).
    pub producer_epoch: i16,
    /// The epoch before the last KIP-360 bump, so a retried InitProducerId
    /// gets the same answer (not stored; -1 after a load).
    pub last_producer_epoch: i16,
    /// transaction.timeout.ms.
    pub timeout_ms: i32,
    /// State.
    pub state: TxnState,
    /// Partitions of the open transaction (shrinks while markers are
    /// written).
    pub partitions: BTreeSet<TopicPartition>,
    /// When the open transaction started (ms; -1 when none has).
    pub start_ms: i64,
    /// When the metadata last changed (ms): expiry counts from here.
    pub last_update_ms: i64,
    /// The client's transaction version (0 for version 1 clients).
    pub client_transaction_version: i16,
    /// The state a record being written will move to; while set, requests
    /// get CONCURRENT_TRANSACTIONS.
    pub pending: Option<TxnState>,
    /// A fencing bump was not written (its append failed): the next fence
    /// reuses the bumped epoch instead of bumping again.
    pub has_failed_epoch_fence: bool,
}

/// The target of a transition: the metadata as its record stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Transit {
    pub producer_id: i64,
    pub previous_producer_id: i64,
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<TopicPartition>,
    pub start_ms: i64,
    pub last_update_ms: i64,
    pub client_transaction_version: i16,
}

impl Transit {
    /// The record value that stores this target.
    pub fn to_value(&self) -> TxnLogValue {
        TxnLogValue {
            producer_id: self.producer_id,
            previous_producer_id: self.previous_producer_id,
            next_producer_id: self.next_producer_id,
            producer_epoch: self.producer_epoch,
            next_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms: self.timeout_ms,
            state: self.state,
            partitions: self.partitions.clone(),
            last_update_ms: self.last_update_ms,
            start_ms: self.start_ms,
            client_transaction_version: self.client_transaction_version,
        }
    }
}

impl TxnMetadata {
    /// A transactional id seen for the first time, holding a fresh producer
    /// id and no epoch yet.
    pub fn new(transactional_id: &str, producer_id: i64, timeout_ms: i32, now_ms: i64) -> Self {
        TxnMetadata {
            transactional_id: transactional_id.to_string(),
            producer_id,
            previous_producer_id: NO_PRODUCER_ID,
            next_producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: now_ms,
            client_transaction_version: 0,
            pending: None,
            has_failed_epoch_fence: false,
        }
    }

    /// The metadata a stored record describes, or why it cannot be served:
    /// Kafka never writes a record with a negative producer id or epoch, or
    /// in the transient states Dead and PrepareEpochFence.
    pub fn from_value(transactional_id: &str, v: TxnLogValue) -> Result<Self, String> {
        if v.producer_id < 0 || v.producer_epoch < 0 {
            return Err(format!(
                "producer id {} epoch {} in a stored record",
                v.producer_id, v.producer_epoch
            ));
        }
        if matches!(v.state, TxnState::Dead | TxnState::PrepareEpochFence) {
            return Err(format!("state {} in a stored record", v.state));
        }
        Ok(TxnMetadata {
            transactional_id: transactional_id.to_string(),
            producer_id: v.producer_id,
            previous_producer_id: v.previous_producer_id,
            next_producer_id: v.next_producer_id,
            producer_epoch: v.producer_epoch,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms: v.timeout_ms,
            state: v.state,
            partitions: v.partitions,
            start_ms: v.start_ms,
            last_update_ms: v.last_update_ms,
            client_transaction_version: v.client_transaction_version,
            pending: None,
            has_failed_epoch_fence: false,
        })
    }

    /// Whether the epoch leaves no room for another bump.
    pub fn epoch_exhausted(&self) -> bool {
        epoch_exhausted(self.producer_epoch)
    }

    /// The next epoch; the caller rotates the producer id instead when the
    /// epoch is exhausted.
    fn bumped_epoch(&self) -> i16 {
        assert!(
            !self.epoch_exhausted(),
            "{}: epoch {} bumped past the last",
            self.transactional_id,
            self.producer_epoch
        );
        self.producer_epoch + 1
    }

    /// The transit to `state` with the fields given by `f` changed from
    /// the current ones; marks the metadata pending.
    fn prepare(&mut self, state: TxnState, now_ms: i64, f: impl FnOnce(&mut Transit)) -> Transit {
        assert!(
            self.pending.is_none(),
            "{}: transition to {state} while {:?} is pending",
            self.transactional_id,
            self.pending
        );
        assert!(
            self.state.can_move_to(state),
            "{}: illegal transition {} -> {state}",
            self.transactional_id,
            self.state
        );
        let mut transit = Transit {
            producer_id: self.producer_id,
            previous_producer_id: self.producer_id,
            next_producer_id: NO_PRODUCER_ID,
            producer_epoch: self.producer_epoch,
            last_producer_epoch: self.last_producer_epoch,
            timeout_ms: self.timeout_ms,
            state,
            partitions: self.partitions.clone(),
            start_ms: self.start_ms,
            last_update_ms: now_ms,
            client_transaction_version: self.client_transaction_version,
        };
        f(&mut transit);
        assert!(transit.producer_id >= 0, "illegal producer id");
        assert!(
            state == TxnState::Dead || transit.producer_epoch >= 0,
            "illegal producer epoch {}",
            transit.producer_epoch
        );
        self.pending = Some(state);
        transit
    }

    /// InitProducerId without a new producer id: bump the epoch, or (a
    /// KIP-360 retry of a bump already made) keep it. PRODUCER_FENCED when
    /// the expected epoch is neither the current nor the last one. The
    /// caller rotates the producer id instead when the epoch is exhausted
    /// and the expected epoch (if any) is the current one.
    pub(crate) fn prepare_epoch_bump(
        &mut self,
        timeout_ms: i32,
        expected_epoch: Option<i16>,
        now_ms: i64,
    ) -> Result<Transit, ErrorCode> {
        let current = self.producer_epoch;
        let (epoch, last_epoch) = match expected_epoch {
            // A new producer instance: the last epoch is forgotten.
            None => (self.bumped_epoch(), NO_PRODUCER_EPOCH),
            // The producer continues after an error, and nobody else
            // initialised meanwhile (or the metadata was just created).
            Some(e) if current == NO_PRODUCER_EPOCH || e == current => {
                (self.bumped_epoch(), current)
            }
            // A retry of a bump already made: the same answer again.
            Some(e) if e == self.last_producer_epoch => (current, self.last_producer_epoch),
            Some(e) => {
                log::info!(
                    "{}: expected epoch {e} is neither the current {current} nor the last {}",
                    self.transactional_id,
                    self.last_producer_epoch
                );
                return Err(ErrorCode::ProducerFenced);
            }
        };
        Ok(self.prepare(TxnState::Empty, now_ms, |t| {
            t.producer_epoch = epoch;
            t.last_producer_epoch = last_epoch;
            t.timeout_ms = timeout_ms;
            t.partitions.clear();
            t.start_ms = -1;
        }))
    }

    /// InitProducerId with a new producer id (the epoch is exhausted): epoch
    /// 0, and with KIP-360 the old epoch remembered as the last one.
    pub(crate) fn prepare_rotation(
        &mut self,
        producer_id: i64,
        timeout_ms: i32,
        now_ms: i64,
        record_last_epoch: bool,
    ) -> Transit {
        assert!(
            !self.state.has_pending_transaction(),
            "rotating a producer id with an open transaction"
        );
        let last_epoch = if record_last_epoch {
            self.producer_epoch
        } else {
            NO_PRODUCER_EPOCH
        };
        self.prepare(TxnState::Empty, now_ms, |t| {
            t.producer_id = producer_id;
            t.producer_epoch = 0;
            t.last_producer_epoch = last_epoch;
            t.timeout_ms = timeout_ms;
            t.partitions.clear();
            t.start_ms = -1;
        })
    }

    /// AddPartitionsToTxn / AddOffsetsToTxn: Ongoing with the partitions
    /// added; a new transaction starts now.
    pub(crate) fn prepare_add_partitions(
        &mut self,
        added: &[TopicPartition],
        now_ms: i64,
    ) -> Transit {
        let starts = matches!(
            self.state,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        );
        self.prepare(TxnState::Ongoing, now_ms, |t| {
            t.partitions.extend(added.iter().cloned());
            if starts {
                t.start_ms = now_ms;
            }
        })
    }

    /// EndTxn: PrepareCommit or PrepareAbort, same epoch (version 1).
    pub(crate) fn prepare_end(&mut self, result: TxnResult, now_ms: i64) -> Transit {
        let state = match result {
            TxnResult::Commit => TxnState::PrepareCommit,
            TxnResult::Abort => TxnState::PrepareAbort,
        };
        self.prepare(state, now_ms, |_| {})
    }

    /// The coordinator aborts an Ongoing transaction it fences (for an
    /// InitProducerId, or a timeout): the epoch is bumped in memory at once
    /// (PrepareEpochFence), so the old producer is refused from now on,
    /// and PrepareAbort is written with it. A bump whose record failed
    /// before is not repeated, and `i16::MAX` is never passed.
    pub(crate) fn prepare_fence_and_abort(&mut self, now_ms: i64) -> Transit {
        assert!(self.pending.is_none(), "fencing with a pending transition");
        assert!(self.state.can_move_to(TxnState::PrepareEpochFence));
        assert!(TxnState::PrepareEpochFence.can_move_to(TxnState::PrepareAbort));
        if !self.has_failed_epoch_fence && self.producer_epoch < i16::MAX {
            self.producer_epoch += 1;
        }
        self.last_producer_epoch = NO_PRODUCER_EPOCH;
        self.prepare(TxnState::PrepareAbort, now_ms, |_| {})
    }

    /// Every marker is written: CompleteCommit or CompleteAbort, no
    /// partitions.
    pub(crate) fn prepare_complete(&mut self, now_ms: i64) -> Transit {
        let state = match self.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            other => panic!("{}: completing from {other}", self.transactional_id),
        };
        // The prepare record is durable, so any fencing bump is too.
        self.has_failed_epoch_fence = false;
        self.prepare(state, now_ms, |t| t.partitions.clear())
    }

    /// Expiry: Dead while the tombstone is written.
    pub(crate) fn prepare_dead(&mut self) -> Transit {
        let last_update_ms = self.last_update_ms;
        self.prepare(TxnState::Dead, last_update_ms, |t| t.partitions.clear())
    }

    /// The transit's record is durable: the metadata becomes the target.
    pub(crate) fn complete_transition(&mut self, t: Transit) {
        assert_eq!(
            self.pending,
            Some(t.state),
            "{}: completing a transition that is not pending",
            self.transactional_id
        );
        assert!(
            t.state != TxnState::Dead,
            "a Dead id is removed, not completed"
        );
        let same_producer =
            t.producer_id == self.producer_id && t.producer_epoch == self.producer_epoch;
        match t.state {
            TxnState::Empty => {
                let bump = t.producer_epoch == self.producer_epoch.saturating_add(1)
                    || (t.producer_epoch == 0 && t.producer_id != self.producer_id);
                assert!(
                    (t.producer_epoch == self.producer_epoch || bump)
                        && t.partitions.is_empty()
                        && t.start_ms == -1,
                    "{}: bad InitProducerId transition {t:?}",
                    self.transactional_id
                );
            }
            TxnState::Ongoing => assert!(
                same_producer
                    && self.partitions.is_subset(&t.partitions)
                    && t.timeout_ms == self.timeout_ms,
                "{}: bad add-partitions transition {t:?}",
                self.transactional_id
            ),
            TxnState::PrepareCommit | TxnState::PrepareAbort => assert!(
                same_producer
                    && t.partitions == self.partitions
                    && t.timeout_ms == self.timeout_ms
                    && t.start_ms == self.start_ms,
                "{}: bad end transition {t:?}",
                self.transactional_id
            ),
            TxnState::CompleteCommit | TxnState::CompleteAbort => assert!(
                same_producer && t.timeout_ms == self.timeout_ms,
                "{}: bad completion {t:?}",
                self.transactional_id
            ),
            TxnState::PrepareEpochFence | TxnState::Dead => unreachable!("never completed"),
        }
        self.producer_id = t.producer_id;
        self.previous_producer_id = t.previous_producer_id;
        self.next_producer_id = t.next_producer_id;
        self.producer_epoch = t.producer_epoch;
        self.last_producer_epoch = t.last_producer_epoch;
        self.timeout_ms = t.timeout_ms;
        self.partitions = t.partitions;
        self.start_ms = t.start_ms;
        self.last_update_ms = t.last_update_ms;
        self.client_transaction_version = t.client_transaction_version;
        self.state = t.state;
        self.pending = None;
    }

    /// The transit's record was not written: nothing changes but the
    /// pending state, which goes.
    pub(crate) fn abort_transition(&mut self) {
        self.pending = None;
    }
}

#[cfg(test)]
#[path = "metadata_tests.rs"]
mod tests;
