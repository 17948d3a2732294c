//! The storage side of Kafka transactions, in Kafka's formats.
//!
//! - [`marker`]: COMMIT/ABORT control batches, built byte for byte as Kafka
//!   writes them and read back.
//! - [`tracker`]: the open transactions of a partition, the last stable
//!   offset, the aborted transactions markers produce, the append checks
//!   (INVALID_TXN_STATE, INVALID_PRODUCER_EPOCH,
//!   TRANSACTION_COORDINATOR_FENCED), its snapshot.
//! - [`index`]: the `.txnindex` files (34-byte entries, one file per
//!   segment) and the aborted-transaction search of read_committed fetches.
//! - [`state`]: [`PartitionTxns`], the tracker and the indexes moved
//!   together through appends, rolls, truncation, retention and recovery.
//!
//! Standalone: `PartitionLog` calls it (see `PartitionTxns`), nothing here
//! calls the log. Offsets are plain `i64`, as in the rest of the crate.
//!
//! Invariants: batches are applied in offset order; an index holds only
//! markers of its own segment, in increasing order; the last stable offset
//! never passes the high watermark.

pub mod index;
pub mod marker;
pub mod state;
pub mod tracker;

pub use index::{collect_aborted_txns, txn_index_path, AbortedTxn, TransactionIndex, TxnIndexes};
pub use marker::{
    build_marker_batch, read_control_record, ControlRecord, EndTxnMarker, MarkerKind,
};
pub use state::{LoadedTxns, PartitionTxns};
pub use tracker::{TxnBatch, TxnError, TxnSnapshot, TxnTracker, TXN_SNAPSHOT_FILE};

#[cfg(test)]
mod tests {
    //! A model check: random appends, markers, rolls, high watermark moves,
    //! truncations and crashes against a model recomputed from the whole
    //! log each step.

    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;
    use crate::disk::{Disk, OsDisk};

    #[derive(Clone, Debug)]
    enum Step {
        Data { producer: i64, len: i64 },
        Marker { producer: i64, abort: bool },
        Roll,
        HighWatermark(u8),
        Truncate(u8),
        Crash,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => (0..4i64, 1..4i64).prop_map(|(producer, len)| Step::Data { producer, len }),
            4 => (0..4i64, any::<bool>()).prop_map(|(producer, abort)| Step::Marker { producer, abort }),
            1 => Just(Step::Roll),
            2 => any::<u8>().prop_map(Step::HighWatermark),
            1 => any::<u8>().prop_map(Step::Truncate),
            1 => Just(Step::Crash),
        ]
    }

    /// What the log implies, recomputed from scratch: open transactions
    /// (first offset, producer), completed ones (first, marker) and the
    /// aborted entries.
    struct Model {
        open: Vec<(i64, i64)>,
        completed: Vec<(i64, i64)>,
        aborted: Vec<AbortedTxn>,
    }

    fn model(batches: &[TxnBatch]) -> Model {
        let mut open: HashMap<i64, i64> = HashMap::new();
        let mut completed = Vec::new();
        let mut aborted = Vec::new();
        for b in batches {
            match b.marker {
                None => {
                    open.entry(b.producer_id).or_insert(b.base_offset);
                }
                Some(marker) => {
                    let Some(first) = open.remove(&b.producer_id) else {
                        continue;
                    };
                    completed.push((first, b.base_offset));
                    if marker.kind == MarkerKind::Abort {
                        let lso = open.values().min().copied().unwrap_or(b.base_offset + 1);
                        aborted.push(AbortedTxn {
                            producer_id: b.producer_id,
                            first_offset: first,
                            last_offset: b.base_offset,
                            last_stable_offset: lso,
                        });
                    }
                }
            }
        }
        let mut open: Vec<(i64, i64)> = open.into_iter().map(|(p, f)| (f, p)).collect();
        open.sort_unstable();
        Model {
            open,
            completed,
            aborted,
        }
    }

    struct World {
        dir: tempfile::TempDir,
        bases: Vec<i64>,
        batches: Vec<TxnBatch>,
        txns: PartitionTxns,
        next: i64,
        high_watermark: i64,
    }

    impl World {
        fn apply(&mut self, step: &Step) {
            match *step {
                Step::Data { producer, len } => self.push(producer, len, None),
                Step::Marker { producer, abort } => {
                    let kind = if abort {
                        MarkerKind::Abort
                    } else {
                        MarkerKind::Commit
                    };
                    self.push(producer, 1, Some(kind));
                }
                Step::Roll => {
                    if self.bases.last() != Some(&self.next) {
                        let files = self.txns.roll(self.next);
                        OsDisk.write_files(&files, true).expect("seal files");
                        self.bases.push(self.next);
                    }
                }
                Step::HighWatermark(f) => {
                    let span = self.next - self.high_watermark;
                    self.high_watermark += span * i64::from(f) / 255;
                    self.txns.on_high_watermark(self.high_watermark);
                }
                Step::Truncate(f) => self.truncate(f),
                Step::Crash => {
                    let loaded =
                        PartitionTxns::load(&OsDisk, self.dir.path(), &self.bases, 0, self.next)
                            .expect("load");
                    self.txns = loaded.txns;
                    for b in self
                        .batches
                        .iter()
                        .filter(|b| b.base_offset >= loaded.replay_from)
                    {
                        self.txns.apply(b);
                    }
                    self.txns.finish_recovery(&OsDisk).expect("finish");
                    // A restarted single replica: the high watermark is the
                    // log end (completed transactions are not in snapshots).
                    self.high_watermark = self.next;
                    self.txns.on_high_watermark(self.high_watermark);
                }
            }
        }

        fn push(&mut self, producer_id: i64, len: i64, kind: Option<MarkerKind>) {
            let batch = TxnBatch {
                producer_id,
                producer_epoch: 0,
                base_offset: self.next,
                last_offset: self.next + len - 1,
                marker: kind.map(|kind| EndTxnMarker {
                    kind,
                    coordinator_epoch: 0,
                }),
            };
            self.next += len;
            self.txns.apply(&batch);
            self.batches.push(batch);
        }

        /// Cuts at the start of a batch at or above the high watermark,
        /// deleting segments as `PartitionLog::truncate_to` does.
        fn truncate(&mut self, f: u8) {
            let candidates: Vec<usize> = (0..self.batches.len())
                .filter(|i| self.batches[*i].base_offset >= self.high_watermark)
                .collect();
            let Some(&i) = candidates.get(usize::from(f) % candidates.len().max(1)) else {
                return;
            };
            let new_end = self.batches[i].base_offset;
            self.batches.truncate(i);
            while self.bases.len() > 1 && self.bases.last().is_some_and(|b| *b >= new_end) {
                let base = self.bases.pop().expect("a base");
                let index = self.txns.remove_segment(base).expect("its index");
                index.delete().expect("delete");
            }
            let exact = self.txns.truncate_to(&OsDisk, new_end).expect("truncate");
            assert!(exact, "cuts at or above the high watermark are exact");
            self.next = new_end;
        }

        fn check(&self) {
            let m = model(&self.batches);
            let tracker = self.txns.tracker();
            assert_eq!(tracker.open_transactions().collect::<Vec<_>>(), m.open);
            assert_eq!(self.txns.collect_aborted(0, i64::MAX), m.aborted);
            let hw = self.high_watermark;
            let unstable = m
                .open
                .iter()
                .map(|(first, _)| *first)
                .chain(
                    m.completed
                        .iter()
                        .filter(|(_, last)| *last >= hw)
                        .map(|(f, _)| *f),
                )
                .min();
            assert_eq!(
                self.txns.last_stable_offset(hw, 0),
                unstable.map_or(hw, |u| u.min(hw))
            );
            // Each index holds the markers of its own segment.
            let indexes: Vec<&TransactionIndex> = self.txns.indexes().iter().collect();
            assert_eq!(
                indexes.iter().map(|i| i.base_offset()).collect::<Vec<_>>(),
                self.bases
            );
            for (i, index) in indexes.iter().enumerate() {
                let end = self.bases.get(i + 1).copied().unwrap_or(i64::MAX);
                assert!(index
                    .entries()
                    .iter()
                    .all(|t| (index.base_offset()..end).contains(&t.last_offset)));
            }
            // The fetch search equals a plain filter over every entry.
            for fetch in (0..=self.next).step_by(3) {
                for upper in [fetch + 1, fetch + 4, self.next.max(fetch + 1)] {
                    let expected: Vec<AbortedTxn> = m
                        .aborted
                        .iter()
                        .filter(|t| t.last_offset >= fetch && t.first_offset < upper)
                        .copied()
                        .collect();
                    assert_eq!(self.txns.collect_aborted(fetch, upper), expected);
                }
            }
            let back =
                TxnTracker::from_snapshot(&tracker.to_snapshot(self.next, None)).expect("snapshot");
            assert_eq!(back.tracker.open_transactions().collect::<Vec<_>>(), m.open);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn txn_state_matches_a_model(steps in proptest::collection::vec(step(), 1..60)) {
            let dir = tempfile::tempdir().expect("tempdir");
            let txns = PartitionTxns::new(dir.path(), 0);
            let mut world = World {
                dir,
                bases: vec![0],
                batches: Vec::new(),
                txns,
                next: 0,
                high_watermark: 0,
            };
            for step in &steps {
                world.apply(step);
                world.check();
            }
        }
    }
}
