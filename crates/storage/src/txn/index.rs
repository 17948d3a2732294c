//! The transaction index: Kafka's `<20-digit base offset>.txnindex`, one
//! per segment, listing the aborted transactions whose ABORT marker lies in
//! that segment, so a read_committed fetch can tell the consumer which
//! records to drop.
//!
//! On disk each entry is 34 bytes, big endian: `version i16 (0)`,
//! `producer_id i64`, `first_offset i64` (the transaction's first record),
//! `last_offset i64` (the ABORT marker), `last_stable_offset i64` (the LSO
//! when the marker was appended). Entries are in marker order, so
//! `last_offset` strictly increases. Kafka creates the file on the first
//! entry; a segment without aborts has none.
//!
//! Here the entries live in memory ([`TransactionIndex`]; aborts are rare,
//! 32 bytes each) so the fetch path never reads a file on the shard. The
//! active segment's file is written whole with its other index files when
//! the segment is sealed and at a clean stop ([`TransactionIndex::file_to_write`]
//! through the `Disk` seam); it is read at startup
//! ([`TransactionIndex::load`], which cuts a torn or zero-filled tail) and
//! cut on disk when the log is truncated ([`TxnIndexes::truncate_to`]).
//! A partition's indexes, oldest segment first, are a [`TxnIndexes`].

use std::collections::VecDeque;
use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use crate::disk::Disk;
use crate::error::{Op, StorageError};
use crate::segment::file_name;

/// File extension of a transaction index.
pub const TXN_INDEX_EXTENSION: &str = "txnindex";
/// Size of one entry on disk.
pub const ABORTED_TXN_LEN: usize = 34;
/// The entry version Kafka writes (and the newest it reads).
pub const ABORTED_TXN_VERSION: i16 = 0;

/// The path of the transaction index of the segment at `base_offset` in
/// the partition directory `dir`.
pub fn txn_index_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(file_name(base_offset, TXN_INDEX_EXTENSION))
}

/// One aborted transaction (Kafka's `AbortedTxn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AbortedTxn {
    /// The producer that aborted.
    pub producer_id: i64,
    /// Offset of the transaction's first record.
    pub first_offset: i64,
    /// Offset of the ABORT marker.
    pub last_offset: i64,
    /// The last stable offset when the marker was appended: the first
    /// offset of the earliest transaction of another producer still open,
    /// or the marker's offset + 1.
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    /// The entry's 34 bytes.
    pub fn encode(&self) -> [u8; ABORTED_TXN_LEN] {
        let mut out = [0u8; ABORTED_TXN_LEN];
        out[0..2].copy_from_slice(&ABORTED_TXN_VERSION.to_be_bytes());
        out[2..10].copy_from_slice(&self.producer_id.to_be_bytes());
        out[10..18].copy_from_slice(&self.first_offset.to_be_bytes());
        out[18..26].copy_from_slice(&self.last_offset.to_be_bytes());
        out[26..34].copy_from_slice(&self.last_stable_offset.to_be_bytes());
        out
    }

    /// Reads one entry (`bytes` is exactly 34 bytes) and checks what any
    /// entry Kafka writes satisfies.
    pub fn decode(bytes: &[u8; ABORTED_TXN_LEN]) -> Result<AbortedTxn, EntryError> {
        let version = i16::from_be_bytes([bytes[0], bytes[1]]);
        if version != ABORTED_TXN_VERSION {
            return Err(EntryError::Version(version));
        }
        let field = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            i64::from_be_bytes(b)
        };
        let txn = AbortedTxn {
            producer_id: field(2),
            first_offset: field(10),
            last_offset: field(18),
            last_stable_offset: field(26),
        };
        if txn.producer_id < 0 {
            return Err(EntryError::Invalid("negative producer id"));
        }
        // A transaction holds data before its marker, so first < last; the
        // LSO never passes the marker.
        if txn.first_offset < 0 || txn.first_offset >= txn.last_offset {
            return Err(EntryError::Invalid("first offset not below the marker"));
        }
        if txn.last_stable_offset < 0 || txn.last_stable_offset > txn.last_offset + 1 {
            return Err(EntryError::Invalid("last stable offset out of range"));
        }
        Ok(txn)
    }

    fn check(&self) {
        assert!(
            self.producer_id >= 0
                && 0 <= self.first_offset
                && self.first_offset < self.last_offset
                && (0..=self.last_offset + 1).contains(&self.last_stable_offset),
            "invalid aborted transaction {self:?}"
        );
    }
}

/// What is wrong with one entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// An entry version this broker does not read.
    #[error("unknown entry version {0}")]
    Version(i16),
    /// Fields no valid entry has.
    #[error("{0}")]
    Invalid(&'static str),
}

/// Why a transaction index file cannot be used (the caller rebuilds it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxnIndexError {
    /// An entry is malformed.
    #[error("entry {entry}: {source}")]
    Entry {
        /// Position of the entry.
        entry: usize,
        /// What is wrong.
        #[source]
        source: EntryError,
    },
    /// The marker offset lies before the segment (Kafka's sanity check).
    #[error("entry {entry}: marker offset {last_offset} before the segment base {base_offset}")]
    BeforeSegment {
        /// Position of the entry.
        entry: usize,
        /// The entry's marker offset.
        last_offset: i64,
        /// The segment's base offset.
        base_offset: i64,
    },
    /// Marker offsets do not strictly increase.
    #[error("entry {0}: marker offsets out of order")]
    OutOfOrder(usize),
}

/// The aborted transactions of one segment, in marker order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionIndex {
    base_offset: i64,
    path: PathBuf,
    entries: Vec<AbortedTxn>,
    /// Entries in the file as far as this index knows (`None`: no file).
    file_entries: Option<usize>,
    /// Changed since the file was written or read.
    dirty: bool,
}

impl TransactionIndex {
    /// An empty index for the segment at `base_offset`, stored at `path`
    /// (see [`txn_index_path`]); no file exists yet.
    pub fn new(base_offset: i64, path: PathBuf) -> TransactionIndex {
        assert!(base_offset >= 0, "segment base {base_offset}");
        TransactionIndex {
            base_offset,
            path,
            entries: Vec::new(),
            file_entries: None,
            dirty: false,
        }
    }

    /// Base offset of the segment.
    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// Path of the `.txnindex` file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The entries, in marker order.
    pub fn entries(&self) -> &[AbortedTxn] {
        &self.entries
    }

    /// True when the segment holds no aborted transaction.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Records an aborted transaction whose marker is in this segment.
    /// Markers come in offset order (asserted: the log assigns offsets).
    pub fn append(&mut self, txn: AbortedTxn) {
        txn.check();
        assert!(
            txn.last_offset >= self.base_offset,
            "marker {} before segment {}",
            txn.last_offset,
            self.base_offset
        );
        if let Some(last) = self.entries.last() {
            assert!(
                txn.last_offset > last.last_offset,
                "marker offsets must increase: {} after {}",
                txn.last_offset,
                last.last_offset
            );
        }
        self.entries.push(txn);
        self.dirty = true;
    }

    /// Drops the entries whose marker is at or after `offset` (the log was
    /// cut there), in memory. Returns whether any went.
    pub fn truncate_to(&mut self, offset: i64) -> bool {
        let keep = self.entries.partition_point(|t| t.last_offset < offset);
        if keep == self.entries.len() {
            return false;
        }
        self.entries.truncate(keep);
        self.dirty = true;
        true
    }

    /// The entries overlapping the fetch range `[fetch_offset,
    /// upper_bound_offset)` (marker at or after the start, first record
    /// before the end), appended to `out`. Returns true when the search is
    /// complete: an entry's last stable offset reached the upper bound, so
    /// no later segment can hold an overlapping transaction (Kafka's
    /// `TransactionIndex.collectAbortedTxns`).
    pub fn collect_aborted(
        &self,
        fetch_offset: i64,
        upper_bound_offset: i64,
        out: &mut Vec<AbortedTxn>,
    ) -> bool {
        for txn in &self.entries {
            if txn.last_offset >= fetch_offset && txn.first_offset < upper_bound_offset {
                out.push(*txn);
            }
            if txn.last_stable_offset >= upper_bound_offset {
                return true;
            }
        }
        false
    }

    /// Kafka's `.txnindex` bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * ABORTED_TXN_LEN);
        for txn in &self.entries {
            out.extend_from_slice(&txn.encode());
        }
        out
    }

    /// Reads `.txnindex` bytes of the segment at `base_offset`. A torn last
    /// entry (fewer than 34 bytes) and a tail of all-zero entries (a file
    /// extended by a crash before its data) are not entries; the second
    /// value is where the valid entries end, to cut the file there.
    pub fn decode(
        base_offset: i64,
        bytes: &[u8],
    ) -> Result<(Vec<AbortedTxn>, usize), TxnIndexError> {
        let mut entries: Vec<AbortedTxn> = Vec::with_capacity(bytes.len() / ABORTED_TXN_LEN);
        for (i, chunk) in bytes.chunks_exact(ABORTED_TXN_LEN).enumerate() {
            if bytes[i * ABORTED_TXN_LEN..].iter().all(|b| *b == 0) {
                break;
            }
            let mut raw = [0u8; ABORTED_TXN_LEN];
            raw.copy_from_slice(chunk);
            let txn = AbortedTxn::decode(&raw)
                .map_err(|source| TxnIndexError::Entry { entry: i, source })?;
            if txn.last_offset < base_offset {
                return Err(TxnIndexError::BeforeSegment {
                    entry: i,
                    last_offset: txn.last_offset,
                    base_offset,
                });
            }
            if entries
                .last()
                .is_some_and(|last| txn.last_offset <= last.last_offset)
            {
                return Err(TxnIndexError::OutOfOrder(i));
            }
            entries.push(txn);
        }
        let valid_len = entries.len() * ABORTED_TXN_LEN;
        Ok((entries, valid_len))
    }

    /// Reads the index file at `path` of the segment at `base_offset`
    /// (startup; blocking). No file: an empty index. A torn or zero-filled
    /// tail is cut from the file through `disk` (and synced). `Ok(None)`
    /// when an entry is invalid: the caller rebuilds the index by replaying
    /// the log (the reason is logged).
    pub fn load(
        disk: &dyn Disk,
        path: PathBuf,
        base_offset: i64,
    ) -> crate::Result<Option<TransactionIndex>> {
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Some(TransactionIndex::new(base_offset, path)));
            }
            Err(e) => return Err(StorageError::Io(e)),
        };
        let (entries, valid_len) = match TransactionIndex::decode(base_offset, &bytes) {
            Ok(decoded) => decoded,
            Err(e) => {
                log::warn!("{}: {e}; rebuilding it", path.display());
                return Ok(None);
            }
        };
        if valid_len < bytes.len() {
            log::warn!(
                "{}: cutting {} bytes of torn or zeroed entries",
                path.display(),
                bytes.len() - valid_len
            );
            cut_file(disk, &path, valid_len as u64)?;
        }
        let file_entries = Some(entries.len());
        let mut index = TransactionIndex::new(base_offset, path);
        index.entries = entries;
        index.file_entries = file_entries;
        Ok(Some(index))
    }

    /// The file to write, when the entries changed since the file was last
    /// written or read: (path, whole content). An index that never had
    /// entries has no file, as in Kafka. Hand it to the segment's seal (the
    /// transaction index before the offset index, so a current offset
    /// index vouches for it) or to the shutdown files, then call
    /// [`TransactionIndex::mark_written`].
    pub fn file_to_write(&self) -> Option<(PathBuf, Vec<u8>)> {
        let wanted = self.dirty && (self.file_entries.is_some() || !self.entries.is_empty());
        wanted.then(|| (self.path.clone(), self.encode()))
    }

    /// Records that the content from [`TransactionIndex::file_to_write`]
    /// went to the file (or is queued to).
    pub fn mark_written(&mut self) {
        self.file_entries = Some(self.entries.len());
        self.dirty = false;
    }

    /// [`TransactionIndex::file_to_write`], marked written when there is
    /// one.
    pub fn take_file_to_write(&mut self) -> Option<(PathBuf, Vec<u8>)> {
        let file = self.file_to_write()?;
        self.mark_written();
        Some(file)
    }

    /// Writes the file now when it changed (blocking; startup and tests).
    pub fn persist(&mut self, disk: &dyn Disk) -> crate::Result<()> {
        if let Some(file) = self.file_to_write() {
            disk.write_files(&[file], true)
                .map_err(|e| StorageError::at(Op::WriteFiles, &self.path, e))?;
            self.mark_written();
        }
        Ok(())
    }

    /// [`TransactionIndex::truncate_to`], and the file cut to the entries
    /// kept when it holds more (blocking; truncation is rare). The file
    /// stays (Kafka cuts, it does not delete).
    pub fn truncate_file(&mut self, disk: &dyn Disk, offset: i64) -> crate::Result<()> {
        self.truncate_to(offset);
        let kept = self.entries.len();
        // The file holds a prefix of the entries (appends go at the end,
        // cuts at the end); when it holds all that is kept, cut it to them.
        if let Some(in_file) = self.file_entries.filter(|n| *n >= kept) {
            if in_file > kept {
                cut_file(disk, &self.path, (kept * ABORTED_TXN_LEN) as u64)?;
            }
            self.file_entries = Some(kept);
            self.dirty = false;
        }
        Ok(())
    }

    /// Removes the file (with its segment: retention, truncation). A file
    /// that does not exist is not an error. Blocking.
    pub fn delete(self) -> crate::Result<()> {
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(StorageError::at(Op::Truncate, &self.path, e))
            }
            _ => Ok(()),
        }
    }
}

/// Cuts the file at `path` to `len` bytes and syncs it, through `disk`.
fn cut_file(disk: &dyn Disk, path: &Path, len: u64) -> crate::Result<()> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| StorageError::at(Op::Truncate, path, e))?;
    disk.set_len(path, &file, len)
        .map_err(|e| StorageError::at(Op::Truncate, path, e))?;
    disk.sync_file(path, &file)
        .map_err(|e| StorageError::at(Op::SyncFile, path, e))
}

/// The transaction indexes of a partition's segments, oldest first; the
/// last is the active segment's. Mirrors the log's segment list: pushed on
/// open and roll, removed with their segments.
#[derive(Clone, Debug, Default)]
pub struct TxnIndexes {
    indexes: VecDeque<TransactionIndex>,
}

impl TxnIndexes {
    /// Adds the index of the next segment (at open, in base offset order,
    /// or for a new active segment).
    pub fn push(&mut self, index: TransactionIndex) {
        if let Some(last) = self.indexes.back() {
            assert!(
                index.base_offset > last.base_offset,
                "segment {} after {}",
                index.base_offset,
                last.base_offset
            );
            assert!(
                last.entries
                    .last()
                    .is_none_or(|t| t.last_offset < index.base_offset),
                "a marker of segment {} lies past the next segment {}",
                last.base_offset,
                index.base_offset
            );
        }
        self.indexes.push_back(index);
    }

    /// A segment roll: the new active segment's index is pushed and the
    /// file of the sealed one returned when it must be written (put it
    /// first in the seal's files); it is marked written.
    pub fn roll(&mut self, new_active: TransactionIndex) -> Option<(PathBuf, Vec<u8>)> {
        let file = self
            .indexes
            .back_mut()
            .and_then(TransactionIndex::take_file_to_write);
        self.push(new_active);
        file
    }

    /// Records an aborted transaction in the index of the segment holding
    /// its marker (the active one, except while replaying older segments at
    /// recovery).
    pub fn append(&mut self, txn: AbortedTxn) {
        let holding = self
            .indexes
            .partition_point(|i| i.base_offset <= txn.last_offset);
        let index = holding
            .checked_sub(1)
            .and_then(|i| self.indexes.get_mut(i))
            .unwrap_or_else(|| panic!("no segment holds the marker at {}", txn.last_offset));
        index.append(txn);
    }

    /// The index of the segment at `base_offset`.
    pub fn get(&self, base_offset: i64) -> Option<&TransactionIndex> {
        self.position(base_offset).map(|i| &self.indexes[i])
    }

    /// The active segment's index.
    pub fn active(&self) -> Option<&TransactionIndex> {
        self.indexes.back()
    }

    /// The active segment's index, mutably (shutdown: its file to write).
    pub fn active_mut(&mut self) -> Option<&mut TransactionIndex> {
        self.indexes.back_mut()
    }

    /// Every index, oldest segment first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &TransactionIndex> {
        self.indexes.iter()
    }

    /// Every index, oldest segment first, mutably (within the module
    /// tree: appends go through [`TxnIndexes::append`]).
    pub(super) fn iter_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut TransactionIndex> {
        self.indexes.iter_mut()
    }

    /// Number of indexes (segments).
    pub fn len(&self) -> usize {
        self.indexes.len()
    }

    /// True when there is no segment.
    pub fn is_empty(&self) -> bool {
        self.indexes.is_empty()
    }

    /// Takes out the index of the segment at `base_offset` (the segment
    /// was deleted by retention, DeleteRecords or truncation); delete its
    /// file with the segment's files ([`TransactionIndex::path`] or
    /// [`TransactionIndex::delete`]).
    pub fn remove_segment(&mut self, base_offset: i64) -> Option<TransactionIndex> {
        self.position(base_offset)
            .and_then(|i| self.indexes.remove(i))
    }

    /// Drops every entry whose marker is at or after `offset` (the log was
    /// cut there), cutting the files that held them. Blocking. Indexes of
    /// segments the log deleted go through [`TxnIndexes::remove_segment`].
    pub fn truncate_to(&mut self, disk: &dyn Disk, offset: i64) -> crate::Result<()> {
        for index in self.indexes.iter_mut().rev() {
            match index.entries.last() {
                None => continue,
                // Markers increase across segments: nothing earlier to cut.
                Some(last) if last.last_offset < offset => break,
                Some(_) => index.truncate_file(disk, offset)?,
            }
        }
        Ok(())
    }

    /// The aborted transactions overlapping `[fetch_offset,
    /// upper_bound_offset)`, for a read_committed fetch (Kafka's
    /// `collectAbortedTransactions`): from the segment holding
    /// `fetch_offset` on, stopping at the first entry whose last stable
    /// offset reaches the upper bound. In marker order.
    pub fn collect_aborted(&self, fetch_offset: i64, upper_bound_offset: i64) -> Vec<AbortedTxn> {
        let start = self
            .indexes
            .partition_point(|i| i.base_offset <= fetch_offset)
            .saturating_sub(1);
        collect_aborted_txns(
            self.indexes.range(start..),
            fetch_offset,
            upper_bound_offset,
        )
    }

    fn position(&self, base_offset: i64) -> Option<usize> {
        self.indexes
            .binary_search_by_key(&base_offset, |i| i.base_offset)
            .ok()
    }
}

/// Kafka's search over segment indexes for a fetch: `indexes` start at the
/// segment holding `fetch_offset` and follow in order; every entry with its
/// marker at or after `fetch_offset` and its first record before
/// `upper_bound_offset` is collected, and the search stops in the first
/// index where an entry's last stable offset is at or past the upper bound.
pub fn collect_aborted_txns<'a>(
    indexes: impl IntoIterator<Item = &'a TransactionIndex>,
    fetch_offset: i64,
    upper_bound_offset: i64,
) -> Vec<AbortedTxn> {
    let mut out = Vec::new();
    for index in indexes {
        if index.collect_aborted(fetch_offset, upper_bound_offset, &mut out) {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::OsDisk;

    fn txn(producer_id: i64, first: i64, last: i64, lso: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id,
            first_offset: first,
            last_offset: last,
            last_stable_offset: lso,
        }
    }

    #[test]
    fn txn_index_entry_is_kafkas_34_bytes() {
        let entry = txn(0x0102_0304_0506_0708, 0x10, 0x20, 0x21);
        let bytes = entry.encode();
        let expected: [u8; 34] = [
            0, 0, // version 0
            1, 2, 3, 4, 5, 6, 7, 8, // producer id
            0, 0, 0, 0, 0, 0, 0, 0x10, // first offset
            0, 0, 0, 0, 0, 0, 0, 0x20, // last offset
            0, 0, 0, 0, 0, 0, 0, 0x21, // last stable offset
        ];
        assert_eq!(bytes, expected);
        assert_eq!(AbortedTxn::decode(&bytes), Ok(entry));
        let mut newer = bytes;
        newer[1] = 1;
        assert_eq!(AbortedTxn::decode(&newer), Err(EntryError::Version(1)));
        assert!(AbortedTxn::decode(&[0; 34]).is_err(), "zeros are no entry");
        assert!(AbortedTxn::decode(&txn(1, 5, 5, 6).encode()).is_err());
        assert!(AbortedTxn::decode(&txn(1, 5, 6, 8).encode()).is_err());
        assert!(AbortedTxn::decode(&txn(-1, 5, 6, 7).encode()).is_err());
    }

    #[test]
    fn txn_index_decode_checks_order_base_and_tails() {
        let a = txn(1, 100, 105, 106);
        let b = txn(2, 101, 110, 111);
        let bytes = [a.encode(), b.encode()].concat();
        assert_eq!(TransactionIndex::decode(100, &bytes), Ok((vec![a, b], 68)));
        // Torn last entry and zero-filled tail: not entries.
        assert_eq!(
            TransactionIndex::decode(100, &bytes[..60]),
            Ok((vec![a], 34))
        );
        let mut padded = bytes.clone();
        padded.extend_from_slice(&[0; 34 * 3 + 5]);
        assert_eq!(TransactionIndex::decode(100, &padded), Ok((vec![a, b], 68)));
        // Out of order, before the segment, zeros in the middle.
        let reversed = [b.encode(), a.encode()].concat();
        assert_eq!(
            TransactionIndex::decode(100, &reversed),
            Err(TxnIndexError::OutOfOrder(1))
        );
        assert!(matches!(
            TransactionIndex::decode(106, &bytes),
            Err(TxnIndexError::BeforeSegment { entry: 0, .. })
        ));
        let holed = [a.encode(), [0; 34], b.encode()].concat();
        assert!(matches!(
            TransactionIndex::decode(100, &holed),
            Err(TxnIndexError::Entry { entry: 1, .. })
        ));
        assert_eq!(TransactionIndex::decode(0, &[]), Ok((vec![], 0)));
    }

    #[test]
    fn txn_index_file_round_trip_torn_tail_and_truncation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = OsDisk;
        let path = txn_index_path(dir.path(), 50);
        assert!(path.ends_with("00000000000000000050.txnindex"));
        let loaded = TransactionIndex::load(&disk, path.clone(), 50).expect("load");
        let mut index = loaded.expect("no file: empty");
        assert!(index.is_empty() && index.file_to_write().is_none());
        for (i, last) in [55i64, 60, 70].into_iter().enumerate() {
            index.append(txn(i as i64, last - 3, last, last - 3));
        }
        index.persist(&disk).expect("persist");
        assert!(index.file_to_write().is_none(), "written");
        let on_disk = std::fs::read(&path).expect("file");
        assert_eq!(on_disk, index.encode());
        assert_eq!(on_disk.len(), 3 * ABORTED_TXN_LEN);

        // A torn append: 20 bytes of a fourth entry.
        let mut torn = on_disk.clone();
        torn.extend_from_slice(&txn(9, 71, 80, 72).encode()[..20]);
        std::fs::write(&path, &torn).expect("write");
        let reloaded = TransactionIndex::load(&disk, path.clone(), 50)
            .expect("load")
            .expect("usable");
        assert_eq!(reloaded.entries(), index.entries());
        assert_eq!(std::fs::read(&path).expect("file"), on_disk, "tail cut");

        // Truncation cuts the file to the entries kept.
        let mut reloaded = reloaded;
        reloaded.truncate_file(&disk, 60).expect("truncate");
        assert_eq!(reloaded.entries().len(), 1);
        assert_eq!(std::fs::read(&path).expect("file").len(), ABORTED_TXN_LEN);
        reloaded.truncate_file(&disk, 0).expect("truncate");
        assert_eq!(std::fs::read(&path).expect("file").len(), 0);
        // Emptied but the file exists: an empty rewrite is still wanted
        // after further changes, never a stale file.
        reloaded.append(txn(1, 60, 61, 62));
        reloaded.truncate_to(0);
        assert_eq!(reloaded.file_to_write(), Some((path.clone(), vec![])));

        // A corrupt entry: the caller rebuilds.
        std::fs::write(&path, [on_disk.clone(), vec![0xff; 34]].concat()).expect("write");
        assert_eq!(
            TransactionIndex::load(&disk, path.clone(), 50).expect("load"),
            None
        );
        reloaded.delete().expect("delete");
        assert!(!path.exists());
        TransactionIndex::new(50, path)
            .delete()
            .expect("missing is fine");
    }

    /// Kafka's `collectAbortedTxns` over several segments: entries overlap
    /// the range when their marker is at or after the start and their
    /// first record before the end; the search stops at an LSO past the end.
    #[test]
    fn txn_index_collect_across_rolled_segments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut indexes = TxnIndexes::default();
        indexes.push(TransactionIndex::new(0, txn_index_path(dir.path(), 0)));
        indexes.append(txn(1, 0, 10, 5));
        indexes.append(txn(2, 5, 20, 21));
        let sealed = indexes.roll(TransactionIndex::new(30, txn_index_path(dir.path(), 30)));
        let (path, bytes) = sealed.expect("the sealed index has entries");
        assert_eq!(path, txn_index_path(dir.path(), 0));
        assert_eq!(bytes.len(), 2 * ABORTED_TXN_LEN);
        // A transaction spanning the roll: first record in segment 0,
        // marker (and entry) in segment 30.
        indexes.append(txn(3, 25, 35, 36));
        indexes.append(txn(4, 40, 45, 46));
        assert!(indexes
            .roll(TransactionIndex::new(50, txn_index_path(dir.path(), 50)))
            .is_some());
        assert!(
            indexes
                .roll(TransactionIndex::new(60, txn_index_path(dir.path(), 60)))
                .is_none(),
            "a segment without aborts has no file"
        );
        indexes.append(txn(5, 61, 62, 63));

        let producers =
            |v: Vec<AbortedTxn>| -> Vec<i64> { v.iter().map(|t| t.producer_id).collect() };
        assert_eq!(
            producers(indexes.collect_aborted(0, 100)),
            vec![1, 2, 3, 4, 5]
        );
        // Entry 2 (LSO 21) ends the search for an upper bound of 21.
        assert_eq!(producers(indexes.collect_aborted(0, 21)), vec![1, 2]);
        // Fetch from 26 in segment 0: entry 3 (25..35) overlaps.
        assert_eq!(producers(indexes.collect_aborted(26, 40)), vec![3]);
        // From 36 (segment 30): entry 3 ended at 35; 4 overlaps.
        assert_eq!(producers(indexes.collect_aborted(36, 47)), vec![4]);
        assert_eq!(
            producers(indexes.collect_aborted(46, 61)),
            Vec::<i64>::new()
        );
        assert_eq!(producers(indexes.collect_aborted(46, 62)), vec![5]);
        // An upper bound at the first offset excludes the transaction.
        assert_eq!(producers(indexes.collect_aborted(0, 5)), vec![1]);

        // Retention drops the oldest segment's index.
        let removed = indexes.remove_segment(0).expect("segment 0");
        assert_eq!(removed.entries().len(), 2);
        assert_eq!(producers(indexes.collect_aborted(0, 100)), vec![3, 4, 5]);
        assert!(indexes.remove_segment(0).is_none());
    }

    #[test]
    fn txn_index_truncation_across_segments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = OsDisk;
        let mut indexes = TxnIndexes::default();
        indexes.push(TransactionIndex::new(0, txn_index_path(dir.path(), 0)));
        indexes.append(txn(1, 0, 10, 11));
        indexes.append(txn(1, 12, 15, 16));
        let (path, bytes) = indexes
            .roll(TransactionIndex::new(20, txn_index_path(dir.path(), 20)))
            .expect("file");
        disk.write_files(&[(path.clone(), bytes)], true)
            .expect("write");
        indexes.append(txn(2, 18, 22, 19));
        indexes.append(txn(3, 23, 30, 31));
        let active = indexes.active_mut().expect("active");
        active.persist(&disk).expect("persist");

        // The log is cut at 14: segment 20 goes, segment 0 keeps 0..14.
        let gone = indexes.remove_segment(20).expect("segment 20");
        gone.delete().expect("delete");
        indexes.truncate_to(&disk, 14).expect("truncate");
        assert_eq!(indexes.len(), 1);
        assert_eq!(indexes.collect_aborted(0, 100), vec![txn(1, 0, 10, 11)]);
        assert_eq!(std::fs::read(&path).expect("file").len(), ABORTED_TXN_LEN);
        assert!(!txn_index_path(dir.path(), 20).exists());
        // Appends continue in segment 0 after the cut.
        indexes.append(txn(4, 14, 16, 17));
        assert_eq!(indexes.active().map(|i| i.entries().len()), Some(2));
    }

    #[test]
    #[should_panic(expected = "marker offsets must increase")]
    fn txn_index_refuses_markers_out_of_order() {
        let mut index = TransactionIndex::new(0, PathBuf::from("x"));
        index.append(txn(1, 0, 10, 11));
        index.append(txn(2, 1, 9, 10));
    }
}
