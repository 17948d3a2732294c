//! Idempotent-producer state of one partition.
//!
//! For each producer id: its epoch and the last few batches it appended
//! (first/last sequence and offsets), so that a retried batch is answered
//! with its original offset instead of being appended twice, and a gap in
//! sequence numbers is rejected. Persisted as a snapshot on segment roll and
//! clean shutdown; rebuilt from the log tail on recovery.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use ringbroker_protocol::limits::{PRODUCERS_PER_PARTITION_MAX, PRODUCER_BATCHES_REMEMBERED};

/// One appended batch of an idempotent producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerBatch {
    /// Sequence of the first record.
    pub first_sequence: i32,
    /// Sequence of the last record.
    pub last_sequence: i32,
    /// Offset assigned to the first record.
    pub base_offset: i64,
    /// Offset assigned to the last record.
    pub last_offset: i64,
}

/// What one producer has appended to this partition lately.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerEntry {
    /// Current epoch of the producer.
    pub epoch: i16,
    /// The last batches, oldest first, at most `PRODUCER_BATCHES_REMEMBERED`.
    pub batches: VecDeque<ProducerBatch>,
    /// Last offset this producer wrote, for eviction order.
    pub last_offset: i64,
}

/// The verdict on an incoming idempotent batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    /// New data in order: append it.
    Append,
    /// A retry of a batch already in the log at this base offset.
    Duplicate(ProducerBatch),
    /// A gap or reordering: OUT_OF_ORDER_SEQUENCE_NUMBER.
    OutOfOrder { expected: i32, got: i32 },
    /// An epoch older than the producer's current one: INVALID_PRODUCER_EPOCH.
    StaleEpoch { current: i16, got: i16 },
}

/// Producer states of a partition.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ProducerStates {
    entries: HashMap<i64, ProducerEntry>,
}

/// Sequence numbers wrap at i32::MAX back to 0, as in Kafka.
fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX {
        0
    } else {
        sequence + 1
    }
}

impl ProducerStates {
    /// Number of producers tracked.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no producer is tracked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Decides what to do with a batch from `producer_id`/`epoch` whose
    /// sequences run `first_sequence..=last_sequence`.
    pub fn check(
        &self,
        producer_id: i64,
        epoch: i16,
        first_sequence: i32,
        last_sequence: i32,
    ) -> SequenceCheck {
        let Some(entry) = self.entries.get(&producer_id) else {
            // An unknown producer (new, or forgotten after its state expired)
            // starts wherever it says; Kafka accepts this too.
            return SequenceCheck::Append;
        };
        if epoch < entry.epoch {
            return SequenceCheck::StaleEpoch {
                current: entry.epoch,
                got: epoch,
            };
        }
        if epoch > entry.epoch {
            return if first_sequence == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::OutOfOrder {
                    expected: 0,
                    got: first_sequence,
                }
            };
        }
        if let Some(batch) = entry
            .batches
            .iter()
            .find(|b| b.first_sequence == first_sequence && b.last_sequence == last_sequence)
        {
            return SequenceCheck::Duplicate(*batch);
        }
        let expected = entry
            .batches
            .back()
            .map_or(0, |b| next_sequence(b.last_sequence));
        if first_sequence == expected {
            SequenceCheck::Append
        } else {
            SequenceCheck::OutOfOrder {
                expected,
                got: first_sequence,
            }
        }
    }

    /// Records an appended batch. Called for every appended idempotent batch,
    /// live or replayed during recovery.
    pub fn record(&mut self, producer_id: i64, epoch: i16, batch: ProducerBatch) {
        assert!(batch.last_offset >= batch.base_offset);
        if !self.entries.contains_key(&producer_id)
            && self.entries.len() >= PRODUCERS_PER_PARTITION_MAX
        {
            self.evict_oldest();
        }
        let entry = self.entries.entry(producer_id).or_default();
        if epoch != entry.epoch {
            entry.batches.clear();
            entry.epoch = epoch;
        }
        if let Some(last) = entry.batches.back() {
            assert!(
                batch.base_offset > last.last_offset,
                "offsets must increase"
            );
        }
        entry.batches.push_back(batch);
        while entry.batches.len() > PRODUCER_BATCHES_REMEMBERED {
            entry.batches.pop_front();
        }
        entry.last_offset = batch.last_offset;
    }

    /// Records a transaction marker of `producer_id` at `offset` (appended
    /// or replicated), as Kafka's `appendEndTxnMarker` does: a marker has
    /// no sequence, so the batches stay, unless its epoch is newer (a
    /// coordinator bumped the epoch to abort): the producer then starts
    /// again at sequence 0. A producer not tracked stays untracked (its
    /// next batch may continue any sequence, as for a forgotten producer).
    pub fn record_marker(&mut self, producer_id: i64, epoch: i16, offset: i64) {
        let Some(entry) = self.entries.get_mut(&producer_id) else {
            return;
        };
        if epoch > entry.epoch {
            entry.batches.clear();
            entry.epoch = epoch;
        }
        entry.last_offset = entry.last_offset.max(offset);
    }

    fn evict_oldest(&mut self) {
        if let Some((&id, _)) = self.entries.iter().min_by_key(|(_, e)| e.last_offset) {
            self.entries.remove(&id);
        }
    }

    /// Every tracked producer, read-only, ordered by producer id:
    /// (producer id, epoch, last sequence or -1, offset of its last record).
    /// DescribeProducers reports these.
    pub fn active(&self) -> Vec<(i64, i16, i32, i64)> {
        let mut all: Vec<_> = self
            .entries
            .iter()
            .map(|(id, e)| {
                let last_sequence = e.batches.back().map_or(-1, |b| b.last_sequence);
                (*id, e.epoch, last_sequence, e.last_offset)
            })
            .collect();
        all.sort_unstable();
        all
    }

    /// Forgets batches at or beyond `offset` (the log was truncated there).
    pub fn truncate_to(&mut self, offset: i64) {
        for entry in self.entries.values_mut() {
            entry.batches.retain(|b| b.last_offset < offset);
        }
        self.entries.retain(|_, e| !e.batches.is_empty());
    }

    /// Serializes the state for a snapshot file.
    pub fn to_snapshot(&self, next_offset: i64) -> Vec<u8> {
        let snapshot = Snapshot {
            next_offset,
            states: self.clone(),
        };
        serde_json::to_vec(&snapshot).unwrap_or_default()
    }

    /// Parses a snapshot; returns the state and the offset it covers up to.
    pub fn from_snapshot(bytes: &[u8]) -> Option<(ProducerStates, i64)> {
        let snapshot: Snapshot = serde_json::from_slice(bytes).ok()?;
        Some((snapshot.states, snapshot.next_offset))
    }
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    next_offset: i64,
    states: ProducerStates,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(first: i32, last: i32, base: i64) -> ProducerBatch {
        ProducerBatch {
            first_sequence: first,
            last_sequence: last,
            base_offset: base,
            last_offset: base + i64::from(last - first),
        }
    }

    #[test]
    fn in_order_duplicate_and_gap() {
        let mut s = ProducerStates::default();
        assert_eq!(s.check(7, 0, 0, 4), SequenceCheck::Append);
        s.record(7, 0, batch(0, 4, 100));
        assert_eq!(s.check(7, 0, 5, 9), SequenceCheck::Append);
        assert_eq!(
            s.check(7, 0, 0, 4),
            SequenceCheck::Duplicate(batch(0, 4, 100))
        );
        assert_eq!(
            s.check(7, 0, 7, 9),
            SequenceCheck::OutOfOrder {
                expected: 5,
                got: 7
            }
        );
    }

    #[test]
    fn epochs_fence_and_reset() {
        let mut s = ProducerStates::default();
        s.record(1, 3, batch(0, 0, 0));
        assert_eq!(
            s.check(1, 2, 1, 1),
            SequenceCheck::StaleEpoch { current: 3, got: 2 }
        );
        assert_eq!(s.check(1, 4, 0, 0), SequenceCheck::Append);
        assert!(matches!(
            s.check(1, 4, 5, 5),
            SequenceCheck::OutOfOrder { .. }
        ));
    }

    #[test]
    fn markers_keep_sequences_and_bumped_epochs_reset_them() {
        let mut s = ProducerStates::default();
        s.record(1, 0, batch(0, 1, 0));
        s.record_marker(1, 0, 2);
        assert_eq!(
            s.check(1, 0, 2, 2),
            SequenceCheck::Append,
            "same epoch: continues"
        );
        s.record_marker(1, 1, 3);
        assert_eq!(
            s.check(1, 0, 2, 2),
            SequenceCheck::StaleEpoch { current: 1, got: 0 }
        );
        assert_eq!(s.check(1, 1, 0, 0), SequenceCheck::Append);
        s.record_marker(7, 3, 4);
        assert_eq!(s.len(), 1, "an unknown producer stays untracked");
    }

    #[test]
    fn remembers_only_last_batches_and_wraps() {
        let mut s = ProducerStates::default();
        for i in 0..10 {
            s.record(1, 0, batch(i, i, i64::from(i)));
        }
        assert_eq!(
            s.check(1, 0, 0, 0),
            SequenceCheck::OutOfOrder {
                expected: 10,
                got: 0
            }
        );
        assert!(matches!(s.check(1, 0, 9, 9), SequenceCheck::Duplicate(_)));
        assert_eq!(next_sequence(i32::MAX), 0);
        s.record(0, 2, batch(0, 0, 20));
        assert_eq!(s.active(), vec![(0, 2, 0, 20), (1, 0, 9, 9)]);
    }

    #[test]
    fn snapshot_round_trip_and_truncate() {
        let mut s = ProducerStates::default();
        s.record(1, 0, batch(0, 1, 0));
        s.record(1, 0, batch(2, 3, 2));
        let bytes = s.to_snapshot(4);
        let (mut back, next) = ProducerStates::from_snapshot(&bytes).unwrap();
        assert_eq!(next, 4);
        assert!(matches!(
            back.check(1, 0, 2, 3),
            SequenceCheck::Duplicate(_)
        ));
        back.truncate_to(2);
        assert_eq!(back.check(1, 0, 2, 3), SequenceCheck::Append);
        assert!(ProducerStates::from_snapshot(b"garbage").is_none());
    }
}
