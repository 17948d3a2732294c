//! The transactions of one partition: which producers have one open and
//! from which offset, which completed ones still hold the last stable
//! offset back, and what an ABORT marker puts in the transaction index.
//!
//! Fed with every transactional batch in offset order, live or replayed
//! ([`TxnTracker::apply`] with a [`TxnBatch`]), as Kafka's
//! `ProducerStateManager` and `ProducerAppendInfo` are:
//!
//! - a transactional data batch opens its producer's transaction at its
//!   base offset unless one is open;
//! - a marker closes it; an ABORT yields the [`AbortedTxn`] for the index
//!   of the segment holding the marker, its last stable offset being the
//!   first offset of the earliest transaction of another producer still
//!   open, or the marker's offset + 1. A marker without an open
//!   transaction (a retry, or an empty transaction) changes no offset.
//!
//! The last stable offset (LSO) is the high watermark held back by the
//! first unstable offset: the earliest first offset of a transaction still
//! open, or completed by a marker not yet below the high watermark
//! (Kafka's `firstUnstableOffset`), and never below the log start.
//!
//! Producer epochs and coordinator epochs seen in markers are kept for the
//! checks Kafka makes on appends from clients and coordinators
//! ([`TxnTracker::check_data`], [`TxnTracker::check_marker`]); replicated
//! appends skip them, as in Kafka. Persisted as its own snapshot beside
//! the producer snapshot ([`TXN_SNAPSHOT_FILE`]), written at the same
//! moments (segment roll, clean stop) and rolled forward over the log tail
//! at recovery.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use ringbroker_protocol::batch::{self, BatchHeader, BATCH_HEADER_LEN};
use ringbroker_protocol::errors::ErrorCode;
use ringbroker_protocol::limits::PRODUCERS_PER_PARTITION_MAX;

use super::index::AbortedTxn;
use super::marker::{
    control_record_of, ControlRecord, ControlRecordError, EndTxnMarker, MarkerKind,
};

/// Name of the transaction-state snapshot in a partition directory
/// (ringbroker's own, JSON like `producer.snapshot`; Kafka keeps this state
/// inside its producer snapshot).
pub const TXN_SNAPSHOT_FILE: &str = "transaction.snapshot";

/// Kafka's "no coordinator epoch yet".
const NO_COORDINATOR_EPOCH: i32 = -1;

/// What transaction state needs of an appended batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnBatch {
    /// The producer.
    pub producer_id: i64,
    /// The producer's epoch in the batch.
    pub producer_epoch: i16,
    /// Offset of the batch's first record.
    pub base_offset: i64,
    /// Offset of its last record.
    pub last_offset: i64,
    /// The marker of a control batch; `None` for transactional data.
    pub marker: Option<EndTxnMarker>,
}

impl TxnBatch {
    /// The transactional data batch with this header; `None` for batches
    /// without a producer id, not transactional, or control (those need
    /// their bytes: [`TxnBatch::from_batch`]). Header only: for the append
    /// path.
    pub fn data(header: &BatchHeader) -> Option<TxnBatch> {
        (header.has_producer_id() && header.is_transactional() && !header.is_control()).then(|| {
            TxnBatch {
                producer_id: header.producer_id,
                producer_epoch: header.producer_epoch,
                base_offset: header.base_offset,
                last_offset: header.last_offset(),
                marker: None,
            }
        })
    }

    /// The batch at the start of `bytes` as transaction state sees it:
    /// transactional data, a transaction marker (its record read, the batch
    /// validated), or `None` for anything else (no producer id, not
    /// transactional, other control records).
    pub fn from_batch(bytes: &[u8]) -> Result<Option<TxnBatch>, ControlRecordError> {
        let header = batch::parse_header(bytes)?;
        if !header.is_control() {
            return Ok(TxnBatch::data(&header));
        }
        if !header.has_producer_id() {
            return Ok(None);
        }
        match super::marker::read_control_record(bytes)? {
            ControlRecord::EndTxn(marker) => Ok(Some(TxnBatch {
                producer_id: header.producer_id,
                producer_epoch: header.producer_epoch,
                base_offset: header.base_offset,
                last_offset: header.last_offset(),
                marker: Some(marker),
            })),
            ControlRecord::Other { .. } => Ok(None),
        }
    }

    /// [`TxnBatch::from_batch`] for a batch already validated (recovery's
    /// scan): `header` and the whole batch.
    pub fn from_validated(
        header: &BatchHeader,
        whole: &[u8],
    ) -> Result<Option<TxnBatch>, ControlRecordError> {
        if !header.is_control() {
            return Ok(TxnBatch::data(header));
        }
        if !header.has_producer_id() {
            return Ok(None);
        }
        let records = whole.get(BATCH_HEADER_LEN..).unwrap_or_default();
        Ok(match control_record_of(header, records)? {
            ControlRecord::EndTxn(marker) => Some(TxnBatch {
                producer_id: header.producer_id,
                producer_epoch: header.producer_epoch,
                base_offset: header.base_offset,
                last_offset: header.last_offset(),
                marker: Some(marker),
            }),
            ControlRecord::Other { .. } => None,
        })
    }
}

/// What one producer's transactions look like in this partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnProducer {
    /// The newest producer epoch seen in its transactional batches and
    /// markers.
    pub epoch: i16,
    /// Epoch of the coordinator that wrote its last marker (-1: none).
    pub coordinator_epoch: i32,
    /// First offset of its open transaction.
    pub open_since: Option<i64>,
    /// Offset of its last transactional batch or marker (eviction order).
    pub last_offset: i64,
}

/// A transaction ended by a marker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompletedTxn {
    /// The producer.
    pub producer_id: i64,
    /// Its first record.
    pub first_offset: i64,
    /// The marker's offset.
    pub last_offset: i64,
    /// Ended by ABORT.
    pub aborted: bool,
}

/// Why an append from a client or a coordinator is refused; each maps to
/// the Kafka error of [`TxnError::error_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    /// A non-transactional batch from a producer with an open transaction.
    #[error(
        "producer {producer_id} wrote outside the transaction it opened at offset {open_since}"
    )]
    InvalidTxnState {
        /// The producer.
        producer_id: i64,
        /// First offset of its open transaction.
        open_since: i64,
    },
    /// A batch or marker with an epoch older than the producer's.
    #[error("producer {producer_id}: epoch {got} is older than {current}")]
    StaleEpoch {
        /// The producer.
        producer_id: i64,
        /// Its current epoch.
        current: i16,
        /// The epoch in the batch.
        got: i16,
    },
    /// A marker from a coordinator older than the last one seen.
    #[error("producer {producer_id}: coordinator epoch {got} is older than {current}")]
    CoordinatorFenced {
        /// The producer.
        producer_id: i64,
        /// The last coordinator epoch seen.
        current: i32,
        /// The marker's coordinator epoch.
        got: i32,
    },
}

impl TxnError {
    /// The Kafka error code: INVALID_TXN_STATE, INVALID_PRODUCER_EPOCH,
    /// TRANSACTION_COORDINATOR_FENCED.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            TxnError::InvalidTxnState { .. } => ErrorCode::InvalidTxnState,
            TxnError::StaleEpoch { .. } => ErrorCode::InvalidProducerEpoch,
            TxnError::CoordinatorFenced { .. } => ErrorCode::TransactionCoordinatorFenced,
        }
    }
}

/// The transactions of a partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnTracker {
    producers: HashMap<i64, TxnProducer>,
    /// Open transactions: first offset → producer.
    open: BTreeMap<i64, i64>,
    /// Completed transactions whose marker may not be below the high
    /// watermark yet: first offset → transaction.
    completed: BTreeMap<i64, CompletedTxn>,
    /// Largest marker offset of a completed transaction forgotten since
    /// (-1: none); a truncation at or below it cannot reopen that one.
    forgotten_marker_max: i64,
    /// Offset after the last batch applied (they come in offset order).
    end_offset: i64,
}

impl TxnTracker {
    /// A tracker for a log without transactions.
    pub fn new() -> TxnTracker {
        TxnTracker {
            forgotten_marker_max: -1,
            ..TxnTracker::default()
        }
    }

    /// Checks a data batch from a client (before it is appended):
    /// a producer with an open transaction may only write transactional
    /// batches, and not with an epoch older than its markers'. Epochs of
    /// data batches are otherwise `ProducerStates::check`'s business.
    pub fn check_data(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        transactional: bool,
    ) -> Result<(), TxnError> {
        let Some(producer) = self.producers.get(&producer_id) else {
            return Ok(());
        };
        if producer_epoch < producer.epoch {
            return Err(TxnError::StaleEpoch {
                producer_id,
                current: producer.epoch,
                got: producer_epoch,
            });
        }
        match producer.open_since {
            Some(open_since) if !transactional => Err(TxnError::InvalidTxnState {
                producer_id,
                open_since,
            }),
            _ => Ok(()),
        }
    }

    /// Checks a marker from a coordinator (WriteTxnMarkers) before it is
    /// appended: its producer epoch must not be older than the producer's
    /// and its coordinator epoch not older than the last marker's
    /// (Kafka's rules for transaction versions 0 and 1).
    pub fn check_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        marker: &EndTxnMarker,
    ) -> Result<(), TxnError> {
        let Some(producer) = self.producers.get(&producer_id) else {
            return Ok(());
        };
        if producer_epoch < producer.epoch {
            return Err(TxnError::StaleEpoch {
                producer_id,
                current: producer.epoch,
                got: producer_epoch,
            });
        }
        if marker.coordinator_epoch < producer.coordinator_epoch {
            return Err(TxnError::CoordinatorFenced {
                producer_id,
                current: producer.coordinator_epoch,
                got: marker.coordinator_epoch,
            });
        }
        Ok(())
    }

    /// Applies an appended (or replayed) transactional batch, in offset
    /// order. Returns the aborted transaction to record in the index of the
    /// segment holding the marker, for an ABORT that closed one.
    pub fn apply(&mut self, batch: &TxnBatch) -> Option<AbortedTxn> {
        assert!(
            batch.producer_id >= 0 && batch.base_offset <= batch.last_offset,
            "invalid transactional batch {batch:?}"
        );
        assert!(
            batch.base_offset >= self.end_offset,
            "batch at {} applied after offset {}",
            batch.base_offset,
            self.end_offset
        );
        self.end_offset = batch.last_offset + 1;
        self.make_room_for(batch.producer_id);
        let producer = self
            .producers
            .entry(batch.producer_id)
            .or_insert(TxnProducer {
                epoch: batch.producer_epoch,
                coordinator_epoch: NO_COORDINATOR_EPOCH,
                open_since: None,
                last_offset: batch.last_offset,
            });
        // The log is the truth: replicated batches may carry older epochs.
        producer.epoch = batch.producer_epoch;
        producer.last_offset = batch.last_offset;
        let Some(marker) = batch.marker else {
            if producer.open_since.is_none() {
                producer.open_since = Some(batch.base_offset);
                self.open.insert(batch.base_offset, batch.producer_id);
            }
            return None;
        };
        producer.coordinator_epoch = marker.coordinator_epoch;
        let first_offset = producer.open_since.take()?;
        let completed = CompletedTxn {
            producer_id: batch.producer_id,
            first_offset,
            last_offset: batch.base_offset,
            aborted: marker.kind == MarkerKind::Abort,
        };
        let removed = self.open.remove(&first_offset);
        assert_eq!(
            removed,
            Some(batch.producer_id),
            "open transactions disagree"
        );
        // The LSO Kafka records: the earliest transaction of another
        // producer still open (this one is closed now), else past the marker.
        let last_stable_offset = self
            .open
            .keys()
            .next()
            .copied()
            .unwrap_or(completed.last_offset + 1);
        self.completed.insert(first_offset, completed);
        completed.aborted.then_some(AbortedTxn {
            producer_id: completed.producer_id,
            first_offset,
            last_offset: completed.last_offset,
            last_stable_offset,
        })
    }

    /// Evicts the least recently active producer without an open
    /// transaction when a new one would pass the bound. Producers with an
    /// open transaction are never evicted (the coordinator aborts a
    /// transaction that outlives its timeout, which bounds them).
    fn make_room_for(&mut self, producer_id: i64) {
        if self.producers.len() < PRODUCERS_PER_PARTITION_MAX
            || self.producers.contains_key(&producer_id)
        {
            return;
        }
        let oldest = self
            .producers
            .iter()
            .filter(|(_, p)| p.open_since.is_none())
            .min_by_key(|(_, p)| p.last_offset)
            .map(|(id, _)| *id);
        if let Some(id) = oldest {
            self.producers.remove(&id);
        }
    }

    /// The producer's transaction state.
    pub fn producer(&self, producer_id: i64) -> Option<&TxnProducer> {
        self.producers.get(&producer_id)
    }

    /// Number of producers tracked.
    pub fn producer_count(&self) -> usize {
        self.producers.len()
    }

    /// The open transactions, (first offset, producer id), earliest first
    /// (DescribeTransactions / ListTransactions on the partition side).
    pub fn open_transactions(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.open
            .iter()
            .map(|(first, producer)| (*first, *producer))
    }

    /// The first offset of the earliest transaction still open (Kafka's
    /// `firstUndecidedOffset`).
    pub fn first_undecided_offset(&self) -> Option<i64> {
        self.open.keys().next().copied()
    }

    /// The earliest first offset of a transaction open, or completed by a
    /// marker at or above `high_watermark` (Kafka's `firstUnstableOffset`).
    pub fn first_unstable_offset(&self, high_watermark: i64) -> Option<i64> {
        let undecided = self.first_undecided_offset();
        // In first-offset order; those below the high watermark are stable
        // (usually already forgotten by `on_high_watermark`).
        let unreplicated = self
            .completed
            .values()
            .find(|t| t.last_offset >= high_watermark)
            .map(|t| t.first_offset);
        match (undecided, unreplicated) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The last stable offset: what read_committed consumers may read up
    /// to (exclusive). The high watermark, held back by the first unstable
    /// offset, which counts from the log start at the earliest.
    pub fn last_stable_offset(&self, high_watermark: i64, log_start_offset: i64) -> i64 {
        let lso = match self.first_unstable_offset(high_watermark) {
            Some(first) => high_watermark.min(first.max(log_start_offset)),
            None => high_watermark,
        };
        assert!(lso <= high_watermark, "LSO {lso} past the high watermark");
        lso
    }

    /// The high watermark moved: completed transactions whose marker is
    /// below it no longer hold the LSO and are forgotten.
    pub fn on_high_watermark(&mut self, high_watermark: i64) {
        self.forget_completed_below(high_watermark);
    }

    /// The log start moved (retention, DeleteRecords): completed
    /// transactions ended below it are forgotten. Open ones stay (the LSO
    /// counts from the log start at the earliest).
    pub fn on_log_start(&mut self, log_start_offset: i64) {
        self.forget_completed_below(log_start_offset);
    }

    fn forget_completed_below(&mut self, offset: i64) {
        let forgotten = &mut self.forgotten_marker_max;
        self.completed.retain(|_, t| {
            let keep = t.last_offset >= offset;
            if !keep {
                *forgotten = (*forgotten).max(t.last_offset);
            }
            keep
        });
    }

    /// The log was cut at `offset` (everything at or after it is gone):
    /// transactions that started there vanish; one whose marker is gone
    /// but whose first record stays is open again. Epochs stay (they only
    /// fence). Returns false when the result may be wrong: a transaction
    /// completed at or after `offset` was already forgotten (the cut went
    /// below a high watermark or log start given earlier); then rebuild
    /// from the snapshot and the log.
    pub fn truncate_to(&mut self, offset: i64) -> bool {
        let exact = offset > self.forgotten_marker_max;
        let dropped = self.open.split_off(&offset);
        for producer_id in dropped.into_values() {
            if let Some(p) = self.producers.get_mut(&producer_id) {
                p.open_since = None;
            }
        }
        let cut: Vec<CompletedTxn> = self
            .completed
            .values()
            .filter(|t| t.last_offset >= offset)
            .copied()
            .collect();
        for txn in cut {
            self.completed.remove(&txn.first_offset);
            if txn.first_offset >= offset {
                continue;
            }
            let producer = self
                .producers
                .get_mut(&txn.producer_id)
                .expect("a completed transaction's producer is tracked");
            assert!(
                producer.open_since.is_none(),
                "producer {} reopens while open",
                txn.producer_id
            );
            producer.open_since = Some(txn.first_offset);
            self.open.insert(txn.first_offset, txn.producer_id);
        }
        self.end_offset = self.end_offset.min(offset);
        exact
    }

    /// The snapshot bytes: every producer's epochs and open transaction,
    /// covering the log up to `next_offset` (exclusive), and the marker
    /// offset of the newest aborted transaction in the transaction indexes
    /// (`None`: none), which recovery checks the index files against.
    pub fn to_snapshot(&self, next_offset: i64, last_abort_marker: Option<i64>) -> Vec<u8> {
        assert!(
            self.open.keys().all(|first| *first < next_offset),
            "a transaction opens past the snapshot offset {next_offset}"
        );
        assert!(
            last_abort_marker.is_none_or(|m| m < next_offset),
            "an abort past the snapshot offset {next_offset}"
        );
        let mut producers: Vec<(i64, TxnProducer)> =
            self.producers.iter().map(|(id, p)| (*id, *p)).collect();
        producers.sort_unstable_by_key(|(id, _)| *id);
        let snapshot = Snapshot {
            next_offset,
            last_abort_marker,
            producers,
        };
        serde_json::to_vec(&snapshot).unwrap_or_default()
    }

    /// Reads a snapshot. `None` when the bytes are not a consistent
    /// snapshot (rebuild by replaying the log). Completed transactions are
    /// not in it: the snapshot's offset is at or below the high watermark
    /// after a restart, as in Kafka; so a later cut below that offset
    /// reports itself inexact ([`TxnTracker::truncate_to`]).
    pub fn from_snapshot(bytes: &[u8]) -> Option<TxnSnapshot> {
        let snapshot: Snapshot = serde_json::from_slice(bytes).ok()?;
        if snapshot
            .last_abort_marker
            .is_some_and(|m| !(0..snapshot.next_offset).contains(&m))
        {
            return None;
        }
        let mut tracker = TxnTracker::new();
        tracker.end_offset = snapshot.next_offset;
        // Transactions completed before the snapshot are unknown: a cut
        // below its offset cannot reopen them.
        tracker.forgotten_marker_max = snapshot.next_offset - 1;
        for (id, producer) in snapshot.producers {
            if id < 0 || tracker.producers.insert(id, producer).is_some() {
                return None;
            }
            if let Some(first) = producer.open_since {
                let valid = (0..snapshot.next_offset).contains(&first);
                if !valid || tracker.open.insert(first, id).is_some() {
                    return None;
                }
            }
        }
        Some(TxnSnapshot {
            tracker,
            next_offset: snapshot.next_offset,
            last_abort_marker: snapshot.last_abort_marker,
        })
    }
}

/// A transaction snapshot read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnSnapshot {
    /// The state at `next_offset`.
    pub tracker: TxnTracker,
    /// The snapshot covers the log below this offset.
    pub next_offset: i64,
    /// Marker offset of the newest aborted transaction the indexes held
    /// when the snapshot was taken: the index files must hold it too, or
    /// the snapshot is not to be trusted.
    pub last_abort_marker: Option<i64>,
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    next_offset: i64,
    last_abort_marker: Option<i64>,
    producers: Vec<(i64, TxnProducer)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::marker::build_marker_batch;

    fn data(producer_id: i64, base: i64, last: i64) -> TxnBatch {
        TxnBatch {
            producer_id,
            producer_epoch: 0,
            base_offset: base,
            last_offset: last,
            marker: None,
        }
    }

    fn marker(producer_id: i64, offset: i64, kind: MarkerKind) -> TxnBatch {
        TxnBatch {
            producer_id,
            producer_epoch: 0,
            base_offset: offset,
            last_offset: offset,
            marker: Some(EndTxnMarker {
                kind,
                coordinator_epoch: 0,
            }),
        }
    }

    #[test]
    fn txn_batches_from_headers_and_bytes() {
        let plain = batch::build_batch(0, None, &[(None, b"v")]);
        assert_eq!(TxnBatch::from_batch(&plain), Ok(None));
        let mut txn = batch::build_batch(
            0,
            Some(batch::ProducerFields {
                producer_id: 9,
                producer_epoch: 2,
                base_sequence: 0,
            }),
            &[(None, b"a"), (None, b"b")],
        );
        let idempotent = txn.clone();
        assert_eq!(
            TxnBatch::from_batch(&idempotent),
            Ok(None),
            "not transactional"
        );
        txn[22] |= 0x10;
        batch::write_crc(&mut txn);
        batch::stamp_base_offset(&mut txn, 40);
        let header = batch::validate_batch(&txn).expect("valid");
        let expected = TxnBatch {
            producer_id: 9,
            producer_epoch: 2,
            base_offset: 40,
            last_offset: 41,
            marker: None,
        };
        assert_eq!(TxnBatch::data(&header), Some(expected));
        assert_eq!(TxnBatch::from_batch(&txn), Ok(Some(expected)));
        assert_eq!(TxnBatch::from_validated(&header, &txn), Ok(Some(expected)));

        let commit = EndTxnMarker {
            kind: MarkerKind::Commit,
            coordinator_epoch: 3,
        };
        let mut bytes = build_marker_batch(commit, 9, 2, 5);
        batch::stamp_base_offset(&mut bytes, 42);
        let header = batch::validate_batch(&bytes).expect("valid");
        assert_eq!(TxnBatch::data(&header), None, "a marker needs its record");
        let expected = TxnBatch {
            base_offset: 42,
            last_offset: 42,
            marker: Some(commit),
            ..expected
        };
        assert_eq!(TxnBatch::from_batch(&bytes), Ok(Some(expected)));
        assert_eq!(
            TxnBatch::from_validated(&header, &bytes),
            Ok(Some(expected))
        );
    }

    #[test]
    fn txn_commit_and_abort_close_the_open_transaction() {
        let mut t = TxnTracker::new();
        assert_eq!(t.apply(&data(1, 0, 4)), None);
        assert_eq!(t.apply(&data(1, 5, 9)), None, "same transaction");
        assert_eq!(t.open_transactions().collect::<Vec<_>>(), vec![(0, 1)]);
        assert_eq!(t.apply(&marker(1, 10, MarkerKind::Commit)), None);
        assert_eq!(t.first_undecided_offset(), None);
        t.apply(&data(1, 11, 11));
        let aborted = t.apply(&marker(1, 12, MarkerKind::Abort));
        assert_eq!(
            aborted,
            Some(AbortedTxn {
                producer_id: 1,
                first_offset: 11,
                last_offset: 12,
                last_stable_offset: 13
            })
        );
        // A marker without an open transaction (a retried one) changes
        // nothing but the epochs.
        assert_eq!(t.apply(&marker(1, 13, MarkerKind::Abort)), None);
        assert_eq!(t.producer(1).and_then(|p| p.open_since), None);
    }

    /// Kafka's LSO with interleaved transactions of several producers: held
    /// at the earliest open transaction, then at a completed one until the
    /// high watermark passes its marker.
    #[test]
    fn txn_last_stable_offset_with_interleaved_producers() {
        let mut t = TxnTracker::new();
        t.apply(&data(1, 0, 1)); // A opens at 0
        t.apply(&data(2, 2, 3)); // B opens at 2
        t.apply(&data(1, 4, 4));
        t.apply(&data(3, 5, 5)); // C opens at 5
        assert_eq!(t.last_stable_offset(6, 0), 0);
        assert_eq!(t.last_stable_offset(0, 0), 0);
        // B aborts at 6: its entry's LSO is A's first offset.
        let b = t.apply(&marker(2, 6, MarkerKind::Abort)).expect("aborted");
        assert_eq!(
            (b.first_offset, b.last_offset, b.last_stable_offset),
            (2, 6, 0)
        );
        assert_eq!(t.last_stable_offset(7, 0), 0, "A still open");
        // A commits at 7; B completed but its marker must be below the HW.
        assert_eq!(t.apply(&marker(1, 7, MarkerKind::Commit)), None);
        assert_eq!(t.first_undecided_offset(), Some(5));
        assert_eq!(t.last_stable_offset(6, 0), 0, "A's marker not replicated");
        assert_eq!(
            t.last_stable_offset(7, 0),
            0,
            "A's marker at 7 is not below 7"
        );
        assert_eq!(t.last_stable_offset(8, 0), 5, "then C holds it");
        // C aborts at 8 with nobody else open: its LSO is past its marker.
        let c = t.apply(&marker(3, 8, MarkerKind::Abort)).expect("aborted");
        assert_eq!(c.last_stable_offset, 9);
        assert_eq!(t.last_stable_offset(8, 0), 5);
        assert_eq!(t.last_stable_offset(9, 0), 9);
        t.on_high_watermark(9);
        assert!(t.completed.is_empty());
        assert_eq!(t.last_stable_offset(9, 0), 9);
        // The log start bounds the LSO from below.
        t.apply(&data(4, 9, 9));
        assert_eq!(t.last_stable_offset(10, 3), 9);
        assert_eq!(t.last_stable_offset(20, 15), 15);
        assert_eq!(t.last_stable_offset(12, 15), 12, "never past the HW");
    }

    #[test]
    fn txn_checks_follow_kafka() {
        let mut t = TxnTracker::new();
        assert_eq!(t.check_data(1, 0, false), Ok(()));
        t.apply(&TxnBatch {
            producer_epoch: 3,
            ..data(1, 0, 0)
        });
        let err = t
            .check_data(1, 3, false)
            .expect_err("outside the transaction");
        assert_eq!(err.error_code(), ErrorCode::InvalidTxnState);
        assert_eq!(t.check_data(1, 3, true), Ok(()));
        assert_eq!(
            t.check_data(1, 2, true),
            Err(TxnError::StaleEpoch {
                producer_id: 1,
                current: 3,
                got: 2
            })
        );
        let abort = |coordinator_epoch| EndTxnMarker {
            kind: MarkerKind::Abort,
            coordinator_epoch,
        };
        assert_eq!(t.check_marker(1, 3, &abort(0)), Ok(()));
        assert!(t.check_marker(1, 2, &abort(0)).is_err());
        t.apply(&TxnBatch {
            producer_epoch: 4,
            marker: Some(abort(5)),
            ..data(1, 1, 1)
        });
        assert_eq!(
            t.producer(1).map(|p| (p.epoch, p.coordinator_epoch)),
            Some((4, 5))
        );
        let fenced = t
            .check_marker(1, 4, &abort(4))
            .expect_err("older coordinator");
        assert_eq!(fenced.error_code(), ErrorCode::TransactionCoordinatorFenced);
        assert_eq!(t.check_marker(1, 4, &abort(5)), Ok(()));
        assert_eq!(t.check_data(1, 4, false), Ok(()), "transaction closed");
        assert_eq!(
            t.check_data(1, 3, true).map_err(|e| e.error_code()),
            Err(ErrorCode::InvalidProducerEpoch),
            "the marker bumped the epoch"
        );
    }

    #[test]
    fn txn_truncation_drops_and_reopens() {
        let mut t = TxnTracker::new();
        t.apply(&data(1, 0, 1)); // A: 0..
        t.apply(&data(2, 2, 2)); // B: 2..
        t.apply(&marker(1, 3, MarkerKind::Abort)); // A ends at 3
        t.apply(&data(1, 4, 4)); // A again: 4..
        t.apply(&data(3, 5, 5)); // C: 5..
                                 // Cut at 4: A's second transaction and C vanish, A's first stays
                                 // completed (its marker at 3 stays).
        assert!(t.truncate_to(4));
        assert_eq!(t.open_transactions().collect::<Vec<_>>(), vec![(2, 2)]);
        assert_eq!(t.producer(1).and_then(|p| p.open_since), None);
        assert_eq!(t.producer(3).and_then(|p| p.open_since), None);
        // Cut at 3: A's marker goes, so A's first transaction is open again.
        assert!(t.truncate_to(3));
        assert_eq!(
            t.open_transactions().collect::<Vec<_>>(),
            vec![(0, 1), (2, 2)]
        );
        assert_eq!(t.last_stable_offset(3, 0), 0);
        // Appends continue after the cut.
        assert!(t.apply(&marker(1, 3, MarkerKind::Commit)).is_none());
        t.on_high_watermark(4);
        assert!(!t.truncate_to(3), "the commit at 3 was forgotten");
        assert!(t.truncate_to(4));
    }

    #[test]
    fn txn_snapshot_round_trip() {
        let mut t = TxnTracker::new();
        t.apply(&data(1, 0, 1));
        t.apply(&data(2, 2, 2));
        t.apply(&marker(2, 3, MarkerKind::Commit));
        t.apply(&data(3, 4, 4));
        let bytes = t.to_snapshot(5, Some(3));
        let back = TxnTracker::from_snapshot(&bytes).expect("snapshot");
        assert_eq!((back.next_offset, back.last_abort_marker), (5, Some(3)));
        let back = back.tracker;
        assert_eq!(
            back.open_transactions().collect::<Vec<_>>(),
            vec![(0, 1), (4, 3)]
        );
        assert_eq!(back.producer(2), t.producer(2));
        assert_eq!(back.last_stable_offset(5, 0), 0);
        assert_eq!(back.to_snapshot(5, Some(3)), bytes, "deterministic");
        assert!(TxnTracker::from_snapshot(b"garbage").is_none());
        // An open transaction or an abort at or past the covered offset is
        // inconsistent.
        let past = br#"{"next_offset":3,"last_abort_marker":null,"producers":[[1,{"epoch":0,"coordinator_epoch":-1,"open_since":3,"last_offset":3}]]}"#;
        assert!(TxnTracker::from_snapshot(past).is_none());
        let abort_past = br#"{"next_offset":3,"last_abort_marker":3,"producers":[]}"#;
        assert!(TxnTracker::from_snapshot(abort_past).is_none());
        let twice = br#"{"next_offset":9,"last_abort_marker":null,"producers":[[1,{"epoch":0,"coordinator_epoch":-1,"open_since":3,"last_offset":3}],[2,{"epoch":0,"coordinator_epoch":-1,"open_since":3,"last_offset":3}]]}"#;
        assert!(TxnTracker::from_snapshot(twice).is_none());
    }

    #[test]
    fn txn_producers_are_bounded_but_open_ones_stay() {
        let mut t = TxnTracker::new();
        t.apply(&data(0, 0, 0)); // stays open
        for id in 1..PRODUCERS_PER_PARTITION_MAX as i64 {
            t.apply(&marker(id, id, MarkerKind::Commit));
        }
        assert_eq!(t.producer_count(), PRODUCERS_PER_PARTITION_MAX);
        let next = PRODUCERS_PER_PARTITION_MAX as i64;
        t.apply(&data(next, next, next));
        assert_eq!(t.producer_count(), PRODUCERS_PER_PARTITION_MAX);
        assert!(t.producer(0).is_some(), "open transaction kept");
        assert!(t.producer(1).is_none(), "oldest idle one evicted");
    }
}
