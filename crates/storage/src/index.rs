//! Sparse segment indexes, kept in memory and stored in Kafka's formats:
//! `.index` entries are (relative offset u32, position u32) and
//! `.timeindex` entries are (timestamp i64, relative offset u32), all big
//! endian.

/// Why an index file cannot be used (it is then rebuilt from the log).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IndexError {
    /// The file length is not a whole number of entries.
    #[error("index length {len} is not a multiple of {entry}")]
    BadLength {
        /// File length.
        len: usize,
        /// Entry size.
        entry: usize,
    },
    /// Entries are not strictly increasing.
    #[error("index entry {0} is out of order")]
    OutOfOrder(usize),
    /// An entry's offset (base offset plus relative offset) is past i64::MAX.
    #[error("index entry {0} is past the largest offset")]
    OffsetOverflow(usize),
}

/// The absolute offset of entry `i`, which must fit an i64 (lookups add
/// the base offset to relative offsets without checking).
fn absolute(base_offset: i64, relative: u32, i: usize) -> Result<i64, IndexError> {
    base_offset
        .checked_add(i64::from(relative))
        .ok_or(IndexError::OffsetOverflow(i))
}

/// Offset → file position, one entry every `index.interval.bytes`.
/// Invariant: `base_offset + relative` fits an i64 for every entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetIndex {
    base_offset: i64,
    entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    /// An empty index for the segment starting at `base_offset`.
    pub fn new(base_offset: i64) -> Self {
        OffsetIndex {
            base_offset,
            entries: Vec::new(),
        }
    }

    /// Adds an entry; ignored unless both offset and position grow and the
    /// offset fits the relative encoding.
    pub fn append(&mut self, offset: i64, position: u32) {
        let Some(relative) = offset
            .checked_sub(self.base_offset)
            .and_then(|r| u32::try_from(r).ok())
        else {
            return;
        };
        if let Some(&(last_rel, last_pos)) = self.entries.last() {
            if relative <= last_rel || position <= last_pos {
                return;
            }
        }
        self.entries.push((relative, position));
    }

    /// The entry with the largest offset `<= offset`, or (base, 0).
    pub fn lookup(&self, offset: i64) -> (i64, u32) {
        let i = self
            .entries
            .partition_point(|&(rel, _)| self.base_offset + i64::from(rel) <= offset);
        match i.checked_sub(1).and_then(|i| self.entries.get(i)) {
            Some(&(rel, pos)) => (self.base_offset + i64::from(rel), pos),
            None => (self.base_offset, 0),
        }
    }

    /// Drops entries at or past `position` (the segment was cut there).
    pub fn truncate_to_position(&mut self, position: u64) {
        self.entries.retain(|&(_, pos)| u64::from(pos) < position);
    }

    /// The last entry (absolute offset, position).
    pub fn last_entry(&self) -> Option<(i64, u32)> {
        self.entries
            .last()
            .map(|&(rel, pos)| (self.base_offset + i64::from(rel), pos))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Kafka's `.index` bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * 8);
        for &(rel, pos) in &self.entries {
            out.extend_from_slice(&rel.to_be_bytes());
            out.extend_from_slice(&pos.to_be_bytes());
        }
        out
    }

    /// Reads `.index` bytes, dropping zero padding (Kafka preallocates).
    pub fn decode(base_offset: i64, bytes: &[u8]) -> Result<OffsetIndex, IndexError> {
        if !bytes.len().is_multiple_of(8) {
            return Err(IndexError::BadLength {
                len: bytes.len(),
                entry: 8,
            });
        }
        let mut entries: Vec<(u32, u32)> = Vec::with_capacity(bytes.len() / 8);
        for (i, chunk) in bytes.chunks_exact(8).enumerate() {
            let rel = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            let pos = u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
            if i > 0 && rel == 0 && pos == 0 {
                if bytes[i * 8..].iter().all(|b| *b == 0) {
                    break;
                }
                return Err(IndexError::OutOfOrder(i));
            }
            if let Some(&(last_rel, last_pos)) = entries.last() {
                if rel <= last_rel || pos <= last_pos {
                    return Err(IndexError::OutOfOrder(i));
                }
            }
            absolute(base_offset, rel, i)?;
            entries.push((rel, pos));
        }
        Ok(OffsetIndex {
            base_offset,
            entries,
        })
    }
}

/// Timestamp → offset: an entry whenever a segment's max timestamp grows.
/// Invariant: `base_offset + relative` fits an i64 for every entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeIndex {
    base_offset: i64,
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    /// An empty index for the segment starting at `base_offset`.
    pub fn new(base_offset: i64) -> Self {
        TimeIndex {
            base_offset,
            entries: Vec::new(),
        }
    }

    /// Adds (timestamp, offset of the batch's last record) when the
    /// timestamp grows and the offset does not go back. Returns whether
    /// the entry was added.
    pub fn append(&mut self, timestamp: i64, offset: i64) -> bool {
        let Some(relative) = offset
            .checked_sub(self.base_offset)
            .and_then(|r| u32::try_from(r).ok())
        else {
            return false;
        };
        if let Some(&(last_ts, last_rel)) = self.entries.last() {
            if timestamp <= last_ts || relative < last_rel {
                return false;
            }
        }
        self.entries.push((timestamp, relative));
        true
    }

    /// The offset of the last entry whose timestamp is strictly less than
    /// `timestamp`: every record before that offset is older than the
    /// target, so a forward scan from it finds the first record at or
    /// after the target. `None` when no entry qualifies.
    pub fn lookup(&self, timestamp: i64) -> Option<i64> {
        let i = self.entries.partition_point(|&(ts, _)| ts < timestamp);
        i.checked_sub(1)
            .and_then(|i| self.entries.get(i))
            .map(|&(_, rel)| self.base_offset + i64::from(rel))
    }

    /// Drops entries for offsets at or past `end_offset` (the segment was
    /// cut there). The last entry left still holds the largest timestamp of
    /// what remains: entries are added only when the maximum grows.
    pub fn truncate_to_offset(&mut self, end_offset: i64) {
        let base = self.base_offset;
        self.entries
            .retain(|&(_, rel)| base + i64::from(rel) < end_offset);
    }

    /// The newest entry: (max timestamp, offset).
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        self.entries
            .last()
            .map(|&(ts, rel)| (ts, self.base_offset + i64::from(rel)))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Kafka's `.timeindex` bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * 12);
        for &(ts, rel) in &self.entries {
            out.extend_from_slice(&ts.to_be_bytes());
            out.extend_from_slice(&rel.to_be_bytes());
        }
        out
    }

    /// Reads `.timeindex` bytes, dropping zero padding.
    pub fn decode(base_offset: i64, bytes: &[u8]) -> Result<TimeIndex, IndexError> {
        if !bytes.len().is_multiple_of(12) {
            return Err(IndexError::BadLength {
                len: bytes.len(),
                entry: 12,
            });
        }
        let mut entries: Vec<(i64, u32)> = Vec::with_capacity(bytes.len() / 12);
        for (i, chunk) in bytes.chunks_exact(12).enumerate() {
            if chunk.iter().all(|b| *b == 0) && bytes[i * 12..].iter().all(|b| *b == 0) {
                break;
            }
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&chunk[..8]);
            let ts = i64::from_be_bytes(ts);
            let rel = u32::from_be_bytes([chunk[8], chunk[9], chunk[10], chunk[11]]);
            if let Some(&(last_ts, last_rel)) = entries.last() {
                if ts <= last_ts || rel < last_rel {
                    return Err(IndexError::OutOfOrder(i));
                }
            }
            absolute(base_offset, rel, i)?;
            entries.push((ts, rel));
        }
        Ok(TimeIndex {
            base_offset,
            entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_lookup() {
        let mut index = OffsetIndex::new(100);
        assert_eq!(index.lookup(150), (100, 0));
        index.append(110, 4096);
        index.append(120, 8192);
        index.append(115, 9000); // offset went back: ignored
        index.append(130, 8000); // position went back: ignored
        assert_eq!(index.len(), 2);
        assert_eq!(index.lookup(99), (100, 0));
        assert_eq!(index.lookup(105), (100, 0));
        assert_eq!(index.lookup(110), (110, 4096));
        assert_eq!(index.lookup(119), (110, 4096));
        assert_eq!(index.lookup(1_000), (120, 8192));
        assert_eq!(index.last_entry(), Some((120, 8192)));
    }

    #[test]
    fn offset_encoding_round_trips_and_rejects_bad_files() {
        let mut index = OffsetIndex::new(1 << 33);
        index.append((1 << 33) + 5, 10);
        index.append((1 << 33) + 9, 20);
        let bytes = index.encode();
        assert_eq!(bytes.len(), 16);
        assert_eq!(OffsetIndex::decode(1 << 33, &bytes), Ok(index.clone()));
        let mut padded = bytes.clone();
        padded.extend_from_slice(&[0; 64]);
        assert_eq!(OffsetIndex::decode(1 << 33, &padded), Ok(index));
        assert!(OffsetIndex::decode(0, &bytes[..15]).is_err());
        let mut reversed = bytes[8..].to_vec();
        reversed.extend_from_slice(&bytes[..8]);
        assert_eq!(
            OffsetIndex::decode(0, &reversed),
            Err(IndexError::OutOfOrder(1))
        );
        assert_eq!(OffsetIndex::decode(0, &[0; 8]).map(|i| i.len()), Ok(1));
    }

    #[test]
    fn time_lookup_is_strictly_before_the_target() {
        let mut index = TimeIndex::new(0);
        assert!(index.append(1_000, 4));
        assert!(index.append(2_000, 9));
        assert!(!index.append(1_500, 12));
        assert!(index.append(3_000, 12));
        assert_eq!(index.lookup(500), None);
        assert_eq!(index.lookup(1_000), None);
        assert_eq!(index.lookup(1_001), Some(4));
        assert_eq!(index.lookup(2_000), Some(4));
        assert_eq!(index.lookup(10_000), Some(12));
        assert_eq!(index.max_timestamp(), Some((3_000, 12)));
        let decoded = TimeIndex::decode(0, &index.encode()).expect("decodes");
        assert_eq!(decoded, index);
        assert!(TimeIndex::decode(0, &[1; 13]).is_err());
    }

    /// Regression (found by fuzz target segment_recovery): a segment named
    /// near i64::MAX with an index entry past it made lookups overflow.
    #[test]
    fn entries_past_the_largest_offset_are_refused() {
        let base = i64::MAX - 1;
        let entry = |rel: u32, pos: u32| [rel.to_be_bytes(), pos.to_be_bytes()].concat();
        assert_eq!(
            OffsetIndex::decode(base, &entry(2, 1)),
            Err(IndexError::OffsetOverflow(0))
        );
        let index = OffsetIndex::decode(base, &entry(1, 1)).expect("fits");
        assert_eq!(index.lookup(i64::MAX), (i64::MAX, 1));
        assert_eq!(index.lookup(0), (base, 0));

        let entry = |ts: i64, rel: u32| [&ts.to_be_bytes()[..], &rel.to_be_bytes()].concat();
        assert_eq!(
            TimeIndex::decode(base, &entry(5, 2)),
            Err(IndexError::OffsetOverflow(0))
        );
        let index = TimeIndex::decode(base, &entry(5, 1)).expect("fits");
        assert_eq!(index.lookup(6), Some(i64::MAX));
        assert_eq!(index.max_timestamp(), Some((5, i64::MAX)));
    }
}
