//! A partition's transaction state as the log keeps it: the tracker and the
//! segments' transaction indexes, moved together through appends, rolls,
//! truncation, retention and recovery.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::disk::Disk;
use crate::error::{Op, StorageError};

use super::index::{txn_index_path, AbortedTxn, TransactionIndex, TxnIndexes};
use super::tracker::{TxnBatch, TxnTracker, TXN_SNAPSHOT_FILE};

/// The transactions of one partition, owned by its log.
#[derive(Clone, Debug)]
pub struct PartitionTxns {
    dir: PathBuf,
    tracker: TxnTracker,
    indexes: TxnIndexes,
}

/// What [`PartitionTxns::load`] found.
#[derive(Clone, Debug)]
pub struct LoadedTxns {
    /// The state, complete up to `replay_from`.
    pub txns: PartitionTxns,
    /// Every transactional batch at or after this offset must be replayed
    /// through [`PartitionTxns::apply`], in order, across segments: the
    /// snapshot's offset (normally the active segment's base or the clean
    /// stop's end), or the log start when there was no usable snapshot or
    /// an index had to be rebuilt.
    pub replay_from: i64,
}

impl PartitionTxns {
    /// The state of a new, empty log whose segment starts at `base_offset`
    /// in `dir`.
    pub fn new(dir: &Path, base_offset: i64) -> PartitionTxns {
        let mut indexes = TxnIndexes::default();
        indexes.push(TransactionIndex::new(
            base_offset,
            txn_index_path(dir, base_offset),
        ));
        PartitionTxns {
            dir: dir.to_path_buf(),
            tracker: TxnTracker::new(),
            indexes,
        }
    }

    /// Loads the state at startup (blocking), after the log's own recovery:
    /// `segment_bases` ascending, `log_start_offset` and `log_end_offset`
    /// as recovered. Reads every segment's `.txnindex` (cutting torn tails;
    /// an invalid one is deleted and rebuilt by the replay) and the
    /// transaction snapshot, which is used only when it lies within the log
    /// and the index files hold the newest abort it saw (a crash may have
    /// made the snapshot durable before the active index); drops entries at
    /// or past the replay point, and says where the replay starts.
    pub fn load(
        disk: &dyn Disk,
        dir: &Path,
        segment_bases: &[i64],
        log_start_offset: i64,
        log_end_offset: i64,
    ) -> crate::Result<LoadedTxns> {
        assert!(!segment_bases.is_empty(), "a log has a segment");
        assert!(log_start_offset <= log_end_offset);
        let mut indexes = TxnIndexes::default();
        let mut rebuild = false;
        for (i, &base) in segment_bases.iter().enumerate() {
            let path = txn_index_path(dir, base);
            let next_base = segment_bases.get(i + 1).copied().unwrap_or(i64::MAX);
            let loaded = TransactionIndex::load(disk, path.clone(), base)?.filter(|index| {
                // Markers of another segment: not this segment's file.
                index
                    .entries()
                    .last()
                    .is_none_or(|t| t.last_offset < next_base)
            });
            let index = match loaded {
                Some(index) => index,
                None => {
                    log::warn!(
                        "{}: invalid; rebuilding the transaction indexes",
                        path.display()
                    );
                    remove_file(&path)?;
                    rebuild = true;
                    TransactionIndex::new(base, path)
                }
            };
            indexes.push(index);
        }
        let snapshot = read_snapshot(&dir.join(TXN_SNAPSHOT_FILE))?
            .and_then(|bytes| TxnTracker::from_snapshot(&bytes))
            .filter(|s| (log_start_offset..=log_end_offset).contains(&s.next_offset))
            .filter(|s| {
                s.last_abort_marker
                    .is_none_or(|m| holds_marker(&indexes, m))
            });
        let (tracker, replay_from) = match snapshot {
            Some(s) if !rebuild => (s.tracker, s.next_offset),
            _ => (TxnTracker::new(), log_start_offset),
        };
        indexes.truncate_to(disk, replay_from)?;
        Ok(LoadedTxns {
            txns: PartitionTxns {
                dir: dir.to_path_buf(),
                tracker,
                indexes,
            },
            replay_from,
        })
    }

    /// Ends recovery (blocking): after the replay, writes the indexes of
    /// sealed segments the replay rebuilt (the active one's is written at
    /// its seal or at the clean stop, like its other index files).
    pub fn finish_recovery(&mut self, disk: &dyn Disk) -> crate::Result<()> {
        let sealed = self.indexes.len().saturating_sub(1);
        for index in self.indexes.iter_mut().take(sealed) {
            index.persist(disk)?;
        }
        Ok(())
    }

    /// The tracker (checks before appends, LSO, open transactions).
    pub fn tracker(&self) -> &TxnTracker {
        &self.tracker
    }

    /// The segments' transaction indexes.
    pub fn indexes(&self) -> &TxnIndexes {
        &self.indexes
    }

    /// Applies an appended or replayed transactional batch (in offset
    /// order); an abort goes into the index of the segment holding its
    /// marker and is returned.
    pub fn apply(&mut self, batch: &TxnBatch) -> Option<AbortedTxn> {
        let aborted = self.tracker.apply(batch)?;
        self.indexes.append(aborted);
        Some(aborted)
    }

    /// A roll to a new active segment at `new_base`: the files the seal of
    /// the old segment must write, in order, before its offset index: its
    /// transaction index (when it has one) and the transaction snapshot at
    /// `new_base`.
    pub fn roll(&mut self, new_base: i64) -> Vec<(PathBuf, Vec<u8>)> {
        let mut files = Vec::with_capacity(2);
        let path = txn_index_path(&self.dir, new_base);
        files.extend(self.indexes.roll(TransactionIndex::new(new_base, path)));
        files.push(self.snapshot_file(new_base));
        files
    }

    /// What a clean stop writes with the active segment's other files: its
    /// transaction index (when changed) and the snapshot at `next_offset`.
    pub fn shutdown_files(&mut self, next_offset: i64) -> Vec<(PathBuf, Vec<u8>)> {
        let mut files = Vec::with_capacity(2);
        files.extend(
            self.indexes
                .active_mut()
                .and_then(TransactionIndex::take_file_to_write),
        );
        files.push(self.snapshot_file(next_offset));
        files
    }

    /// The transaction snapshot file covering the log up to `next_offset`.
    pub fn snapshot_file(&self, next_offset: i64) -> (PathBuf, Vec<u8>) {
        let last_abort_marker = self
            .indexes
            .iter()
            .rev()
            .find_map(|i| i.entries().last())
            .map(|t| t.last_offset);
        (
            self.dir.join(TXN_SNAPSHOT_FILE),
            self.tracker.to_snapshot(next_offset, last_abort_marker),
        )
    }

    /// The log was cut at `offset`, its new end (blocking): entries of
    /// aborts at or past it leave the indexes and their files, transactions
    /// follow (see [`TxnTracker::truncate_to`]) and the snapshot is
    /// rewritten at `offset` (an older one may describe a history the cut
    /// removed). Segments the cut deleted go through
    /// [`PartitionTxns::remove_segment`] first. Returns false when the
    /// tracker cannot be exact (a cut below a high watermark it was given):
    /// the snapshot is then deleted; reload with [`PartitionTxns::load`]
    /// and replay from the log start.
    pub fn truncate_to(&mut self, disk: &dyn Disk, offset: i64) -> crate::Result<bool> {
        self.indexes.truncate_to(disk, offset)?;
        let exact = self.tracker.truncate_to(offset);
        if exact {
            // Every index entry durable before the snapshot that counts on it.
            let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
            files.extend(
                self.indexes
                    .iter_mut()
                    .filter_map(TransactionIndex::take_file_to_write),
            );
            files.push(self.snapshot_file(offset));
            disk.write_files(&files, true)
                .map_err(|e| StorageError::at(Op::WriteFiles, &self.dir, e))?;
        } else {
            remove_file(&self.dir.join(TXN_SNAPSHOT_FILE))?;
        }
        Ok(exact)
    }

    /// Takes out the index of a deleted segment (retention, DeleteRecords,
    /// truncation); its file goes with the segment's files.
    pub fn remove_segment(&mut self, base_offset: i64) -> Option<TransactionIndex> {
        self.indexes.remove_segment(base_offset)
    }

    /// The log start moved (retention, DeleteRecords).
    pub fn on_log_start(&mut self, log_start_offset: i64) {
        self.tracker.on_log_start(log_start_offset);
    }

    /// The high watermark moved.
    pub fn on_high_watermark(&mut self, high_watermark: i64) {
        self.tracker.on_high_watermark(high_watermark);
    }

    /// The last stable offset for this high watermark and log start.
    pub fn last_stable_offset(&self, high_watermark: i64, log_start_offset: i64) -> i64 {
        self.tracker
            .last_stable_offset(high_watermark, log_start_offset)
    }

    /// The aborted transactions a read_committed fetch of
    /// `[fetch_offset, upper_bound_offset)` reports.
    pub fn collect_aborted(&self, fetch_offset: i64, upper_bound_offset: i64) -> Vec<AbortedTxn> {
        self.indexes
            .collect_aborted(fetch_offset, upper_bound_offset)
    }
}

/// True when the index of the segment holding `marker` has an entry for
/// it (or that segment is gone: retention deleted it with its entries).
fn holds_marker(indexes: &TxnIndexes, marker: i64) -> bool {
    let Some(index) = indexes
        .iter()
        .take_while(|i| i.base_offset() <= marker)
        .last()
    else {
        return true;
    };
    index
        .entries()
        .binary_search_by_key(&marker, |t| t.last_offset)
        .is_ok()
}

fn read_snapshot(path: &Path) -> crate::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageError::Io(e)),
    }
}

fn remove_file(path: &Path) -> crate::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StorageError::Io(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::OsDisk;
    use crate::txn::index::ABORTED_TXN_LEN;
    use crate::txn::marker::{EndTxnMarker, MarkerKind};

    /// A log of transactional batches and its segment bases, standing in
    /// for `PartitionLog`.
    struct Log {
        dir: tempfile::TempDir,
        bases: Vec<i64>,
        batches: Vec<TxnBatch>,
        txns: PartitionTxns,
        next: i64,
    }

    impl Log {
        fn new() -> Log {
            let dir = tempfile::tempdir().expect("tempdir");
            let txns = PartitionTxns::new(dir.path(), 0);
            Log {
                dir,
                bases: vec![0],
                batches: Vec::new(),
                txns,
                next: 0,
            }
        }

        fn push(&mut self, producer_id: i64, len: i64, marker: Option<MarkerKind>) {
            let batch = TxnBatch {
                producer_id,
                producer_epoch: 0,
                base_offset: self.next,
                last_offset: self.next + len - 1,
                marker: marker.map(|kind| EndTxnMarker {
                    kind,
                    coordinator_epoch: 0,
                }),
            };
            self.next += len;
            self.txns.apply(&batch);
            self.batches.push(batch);
        }

        fn data(&mut self, producer_id: i64, len: i64) {
            self.push(producer_id, len, None);
        }

        fn end(&mut self, producer_id: i64, kind: MarkerKind) {
            self.push(producer_id, 1, Some(kind));
        }

        /// Rolls and writes the seal's files (as the flusher would).
        fn roll(&mut self) {
            let files = self.txns.roll(self.next);
            OsDisk.write_files(&files, true).expect("seal files");
            self.bases.push(self.next);
        }

        /// Reopens from the files and replays the tail, as recovery would.
        fn reopen(&mut self) -> i64 {
            let loaded = PartitionTxns::load(&OsDisk, self.dir.path(), &self.bases, 0, self.next)
                .expect("load");
            self.txns = loaded.txns;
            for batch in self
                .batches
                .iter()
                .filter(|b| b.base_offset >= loaded.replay_from)
            {
                self.txns.apply(batch);
            }
            self.txns.finish_recovery(&OsDisk).expect("finish");
            loaded.replay_from
        }

        fn aborted(&self) -> Vec<(i64, i64, i64)> {
            self.txns
                .collect_aborted(0, i64::MAX)
                .iter()
                .map(|t| (t.producer_id, t.first_offset, t.last_offset))
                .collect()
        }
    }

    fn scenario() -> Log {
        let mut log = Log::new();
        log.data(1, 3); // 0..2   P1 opens at 0
        log.data(2, 2); // 3..4   P2 opens at 3
        log.end(1, MarkerKind::Abort); // 5: P1 aborted (LSO 3)
        log.roll(); // segment 6
        log.data(3, 2); // 6..7   P3 opens at 6
        log.end(2, MarkerKind::Abort); // 8: P2 aborted, spans the roll
        log.end(3, MarkerKind::Commit); // 9
        log.roll(); // segment 10
        log.data(1, 1); // 10     P1 opens at 10
        log.data(4, 1); // 11     P4 opens at 11
        log.end(1, MarkerKind::Abort); // 12: P1 aborted (LSO 11)
        log
    }

    #[test]
    fn txn_state_across_rolls() {
        let log = scenario();
        assert_eq!(log.aborted(), vec![(1, 0, 5), (2, 3, 8), (1, 10, 12)]);
        let idx = log.txns.indexes();
        assert_eq!(idx.get(0).map(|i| i.entries().len()), Some(1));
        assert_eq!(idx.get(6).map(|i| i.entries().len()), Some(1));
        assert_eq!(
            idx.get(10).map(|i| i.entries()[0].last_stable_offset),
            Some(11)
        );
        assert_eq!(log.txns.last_stable_offset(13, 0), 11, "P4 open");
        // Files of sealed segments are on disk in Kafka's format.
        let seg0 = std::fs::read(txn_index_path(log.dir.path(), 0)).expect("file");
        assert_eq!(seg0.len(), ABORTED_TXN_LEN);
        assert_eq!(&seg0[..2], &[0, 0]);
        let p2 = idx.get(6).expect("segment 6").entries()[0];
        assert_eq!(
            (p2.producer_id, p2.last_stable_offset),
            (2, 6),
            "P3 open at 6"
        );
        assert_eq!(log.txns.collect_aborted(6, 9), vec![p2]);
    }

    #[test]
    fn txn_state_recovers_after_a_crash_and_a_clean_stop() {
        let mut log = scenario();
        let before = log.aborted();
        // A crash: the active segment's index was never written; the
        // snapshot of the last roll covers up to 10.
        assert_eq!(log.reopen(), 10);
        assert_eq!(log.aborted(), before);
        assert_eq!(log.txns.last_stable_offset(13, 0), 11);
        assert_eq!(
            log.txns.tracker().open_transactions().collect::<Vec<_>>(),
            vec![(11, 4)]
        );
        // A clean stop writes the active index and a snapshot at the end.
        let files = log.txns.shutdown_files(log.next);
        assert_eq!(files.len(), 2);
        OsDisk.write_files(&files, true).expect("shutdown files");
        assert_eq!(log.reopen(), 13, "nothing to replay");
        assert_eq!(log.aborted(), before);
        // Appends go on after the restart.
        log.end(4, MarkerKind::Abort);
        assert_eq!(log.aborted().last(), Some(&(4, 11, 13)));
    }

    #[test]
    fn txn_state_rebuilds_from_the_log_start_without_a_snapshot_or_with_a_bad_index() {
        let mut log = scenario();
        let before = log.aborted();
        std::fs::remove_file(log.dir.path().join(TXN_SNAPSHOT_FILE)).expect("rm");
        assert_eq!(log.reopen(), 0);
        assert_eq!(log.aborted(), before);
        // A corrupt sealed index: deleted, and everything replayed.
        let files = log.txns.shutdown_files(log.next);
        OsDisk.write_files(&files, true).expect("shutdown files");
        let seg6 = txn_index_path(log.dir.path(), 6);
        std::fs::write(&seg6, [0xffu8; ABORTED_TXN_LEN]).expect("corrupt");
        assert_eq!(log.reopen(), 0);
        assert_eq!(log.aborted(), before);
        assert_eq!(
            std::fs::read(&seg6).expect("rewritten").len(),
            ABORTED_TXN_LEN,
            "the rebuilt sealed index is written"
        );
        // A torn tail is only cut: no replay needed beyond the snapshot.
        let files = log.txns.shutdown_files(log.next);
        OsDisk.write_files(&files, true).expect("shutdown files");
        let seg0 = txn_index_path(log.dir.path(), 0);
        let mut bytes = std::fs::read(&seg0).expect("file");
        bytes.extend_from_slice(&[1, 2, 3]);
        std::fs::write(&seg0, &bytes).expect("torn");
        assert_eq!(log.reopen(), 13);
        assert_eq!(std::fs::read(&seg0).expect("file").len(), ABORTED_TXN_LEN);
    }

    #[test]
    fn txn_state_distrusts_a_snapshot_newer_than_the_index_files() {
        let mut log = scenario();
        let before = log.aborted();
        // A stop whose snapshot reached the disk but whose active index
        // did not (syncfs covers both; a crash before it may keep either).
        let files = log.txns.shutdown_files(log.next);
        assert_eq!(files.len(), 2);
        OsDisk
            .write_files(&files[1..], true)
            .expect("snapshot only");
        assert_eq!(log.reopen(), 0, "the abort at 12 is in no file: replay all");
        assert_eq!(log.aborted(), before);
        // A sealed index holding a marker of the next segment is not its
        // file: rebuilt, never trusted.
        let files = log.txns.shutdown_files(log.next);
        OsDisk.write_files(&files, true).expect("shutdown files");
        let stray = AbortedTxn {
            producer_id: 9,
            first_offset: 1,
            last_offset: 7,
            last_stable_offset: 8,
        };
        std::fs::write(txn_index_path(log.dir.path(), 0), stray.encode()).expect("write");
        assert_eq!(log.reopen(), 0);
        assert_eq!(log.aborted(), before);
    }

    #[test]
    fn txn_state_truncation_and_retention_across_segments() {
        let mut log = scenario();
        // Cut at 8 (P2's abort marker): segment 10 goes, segment 6 is cut.
        let gone = log.txns.remove_segment(10).expect("segment 10");
        gone.delete().expect("delete");
        assert!(log.txns.truncate_to(&OsDisk, 8).expect("truncate"));
        log.bases.pop();
        log.batches.retain(|b| b.base_offset < 8);
        log.next = 8;
        assert_eq!(log.aborted(), vec![(1, 0, 5)]);
        assert_eq!(
            log.txns.tracker().open_transactions().collect::<Vec<_>>(),
            vec![(3, 2), (6, 3)],
            "P2 and P3 open again"
        );
        assert_eq!(log.txns.last_stable_offset(8, 0), 3);
        // The new leader's history: P2 commits this time.
        log.end(2, MarkerKind::Commit);
        log.end(3, MarkerKind::Abort);
        assert_eq!(log.aborted(), vec![(1, 0, 5), (3, 6, 9)]);
        // Retention deletes segment 0; the log starts at 6.
        let seg0 = log.txns.remove_segment(0).expect("segment 0");
        assert_eq!(seg0.path(), txn_index_path(log.dir.path(), 0));
        seg0.delete().expect("delete");
        log.txns.on_log_start(6);
        assert_eq!(log.aborted(), vec![(3, 6, 9)]);
        assert_eq!(log.txns.last_stable_offset(10, 6), 10);
    }
}
