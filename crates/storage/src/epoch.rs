//! The leader epoch cache of one partition: where each leader epoch starts
//! in the log, persisted as Kafka's `leader-epoch-checkpoint` file.
//!
//! Every batch appended by a leader carries that leader's epoch in its
//! `partition_leader_epoch` field. The cache records the first offset of
//! each epoch, so that a follower (or a consumer checking for truncation,
//! KIP-320) can ask "where does epoch E end?" (OffsetForLeaderEpoch,
//! KIP-101/KIP-279) and cut a divergent tail. Entries are strictly
//! increasing in both epoch and start offset.

use std::io;
use std::path::{Path, PathBuf};

use crate::checkpoint;

/// Name of the checkpoint file in a partition directory (Kafka's).
pub const LEADER_EPOCH_CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";

/// Kafka's UNDEFINED_EPOCH / UNDEFINED_EPOCH_OFFSET.
pub const UNDEFINED: i64 = -1;

/// One epoch and the offset of its first batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochEntry {
    /// The leader epoch.
    pub epoch: i32,
    /// The first offset written in that epoch.
    pub start_offset: i64,
}

/// The epochs of a partition, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
    /// Changed since the file was last written.
    dirty: bool,
}

impl LeaderEpochCache {
    /// Loads the cache from the partition directory (empty when the file
    /// does not exist; an error when it is malformed).
    pub fn load(dir: &Path) -> io::Result<LeaderEpochCache> {
        let entries = checkpoint::read(&Self::path(dir), |fields| match fields {
            [epoch, offset] => Some(EpochEntry {
                epoch: epoch.parse().ok()?,
                start_offset: offset.parse().ok()?,
            }),
            _ => None,
        })?
        .unwrap_or_default();
        let ordered = entries
            .windows(2)
            .all(|w| w[0].epoch < w[1].epoch && w[0].start_offset < w[1].start_offset);
        if !ordered || entries.iter().any(|e| e.epoch < 0 || e.start_offset < 0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: epochs out of order", Self::path(dir).display()),
            ));
        }
        Ok(LeaderEpochCache {
            entries,
            dirty: false,
        })
    }

    /// The checkpoint file of the partition directory `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(LEADER_EPOCH_CHECKPOINT_FILE)
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The newest epoch, if any batch with an epoch was appended.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// True when the cache changed since it was last persisted.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Records that `epoch` starts at `start_offset`. An epoch already
    /// recorded as the latest is ignored. Entries that conflict (an epoch
    /// at or above `epoch`, or a start at or past `start_offset`) are
    /// removed first, as Kafka does when a follower takes the new leader's
    /// history.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) {
        assert!(
            epoch >= 0 && start_offset >= 0,
            "epoch {epoch} at {start_offset}"
        );
        if self
            .entries
            .last()
            .is_some_and(|e| e.epoch == epoch && e.start_offset <= start_offset)
        {
            return;
        }
        self.entries
            .retain(|e| e.epoch < epoch && e.start_offset < start_offset);
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        self.dirty = true;
        self.check();
    }

    /// Where `requested` epoch ends, for OffsetForLeaderEpoch: `(epoch,
    /// end offset)` where the end is the start of the next higher epoch, or
    /// `log_end_offset` for the latest epoch. An epoch older than every
    /// cached one answers with the first start offset above it; an epoch
    /// newer than every cached one, or none cached, answers `(-1, -1)`.
    pub fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> (i32, i64) {
        let undefined = (UNDEFINED as i32, UNDEFINED);
        if requested < 0 {
            return undefined;
        }
        if self.latest_epoch() == Some(requested) {
            return (requested, log_end_offset);
        }
        let Some(higher) = self.entries.iter().find(|e| e.epoch > requested) else {
            return undefined;
        };
        match self.entries.iter().rev().find(|e| e.epoch <= requested) {
            Some(floor) => (floor.epoch, higher.start_offset),
            None => (requested, higher.start_offset),
        }
    }

    /// Drops epochs that start at or after `end_offset` (the log was cut
    /// there).
    pub fn truncate_from_end(&mut self, end_offset: i64) {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end_offset);
        self.dirty |= self.entries.len() != before;
    }

    /// Drops epochs that end before `start_offset` (the log start moved
    /// there); the epoch holding `start_offset` now starts at it.
    pub fn truncate_from_start(&mut self, start_offset: i64) {
        let holding = self
            .entries
            .iter()
            .rposition(|e| e.start_offset <= start_offset);
        if let Some(i) = holding {
            if i > 0 || self.entries[0].start_offset < start_offset {
                self.entries.drain(..i);
                self.entries[0].start_offset = start_offset;
                self.dirty = true;
            }
        }
        self.check();
    }

    /// The checkpoint's entry lines when the cache changed since it was last
    /// persisted (write them with `checkpoint::write` off the shard thread,
    /// then call `mark_persisted`).
    pub fn entries_to_write(&self) -> Option<Vec<String>> {
        self.dirty.then(|| {
            self.entries
                .iter()
                .map(|e| format!("{} {}", e.epoch, e.start_offset))
                .collect()
        })
    }

    /// Marks the cache persisted (after `entries_to_write` was written).
    pub fn mark_persisted(&mut self) {
        self.dirty = false;
    }

    /// Writes the file now when it changed (blocking; for startup and
    /// tests).
    pub fn persist(&mut self, dir: &Path) -> io::Result<()> {
        if let Some(lines) = self.entries_to_write() {
            checkpoint::write(&Self::path(dir), &lines)?;
            self.mark_persisted();
        }
        Ok(())
    }

    fn check(&self) {
        assert!(
            self.entries
                .windows(2)
                .all(|w| w[0].epoch < w[1].epoch && w[0].start_offset < w[1].start_offset),
            "leader epochs out of order: {:?}",
            self.entries
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(pairs: &[(i32, i64)]) -> LeaderEpochCache {
        let mut c = LeaderEpochCache::default();
        for &(e, o) in pairs {
            c.assign(e, o);
        }
        c
    }

    fn pairs(c: &LeaderEpochCache) -> Vec<(i32, i64)> {
        c.entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    }

    #[test]
    fn assign_keeps_epochs_and_offsets_increasing() {
        let mut c = cache(&[(0, 0), (0, 5), (2, 10)]);
        assert_eq!(pairs(&c), vec![(0, 0), (2, 10)]);
        // A new leader's history replaces conflicting entries.
        c.assign(1, 7);
        assert_eq!(pairs(&c), vec![(0, 0), (1, 7)]);
        c.assign(3, 7);
        assert_eq!(pairs(&c), vec![(0, 0), (3, 7)]);
        assert_eq!(c.latest_epoch(), Some(3));
    }

    #[test]
    fn end_offsets_as_kafka_answers_them() {
        let c = cache(&[(1, 0), (3, 100), (6, 250)]);
        assert_eq!(
            c.end_offset_for(6, 300),
            (6, 300),
            "latest epoch: the log end"
        );
        assert_eq!(c.end_offset_for(3, 300), (3, 250));
        assert_eq!(c.end_offset_for(4, 300), (3, 250), "a gap: the floor epoch");
        assert_eq!(c.end_offset_for(0, 300), (0, 0), "older than all");
        assert_eq!(c.end_offset_for(7, 300), (-1, -1), "newer than all");
        assert_eq!(c.end_offset_for(-1, 300), (-1, -1));
        assert_eq!(LeaderEpochCache::default().end_offset_for(0, 5), (-1, -1));
    }

    #[test]
    fn truncation_from_both_ends() {
        let mut c = cache(&[(1, 0), (3, 100), (6, 250)]);
        c.truncate_from_end(250);
        assert_eq!(pairs(&c), vec![(1, 0), (3, 100)]);
        c.truncate_from_end(101);
        assert_eq!(pairs(&c), vec![(1, 0), (3, 100)]);
        c.truncate_from_start(120);
        assert_eq!(pairs(&c), vec![(3, 120)]);
        let mut d = cache(&[(1, 0), (3, 100)]);
        d.truncate_from_start(50);
        assert_eq!(pairs(&d), vec![(1, 50), (3, 100)]);
        d.truncate_from_start(10);
        assert_eq!(pairs(&d), vec![(1, 50), (3, 100)], "never moves back");
    }

    #[test]
    fn persists_in_kafka_format_and_reloads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = cache(&[(0, 0), (4, 42)]);
        assert!(c.is_dirty());
        c.persist(dir.path()).expect("persist");
        assert!(!c.is_dirty());
        assert_eq!(
            std::fs::read_to_string(LeaderEpochCache::path(dir.path())).expect("file"),
            "0\n2\n0 0\n4 42\n"
        );
        let loaded = LeaderEpochCache::load(dir.path()).expect("load");
        assert_eq!(pairs(&loaded), vec![(0, 0), (4, 42)]);
        std::fs::write(LeaderEpochCache::path(dir.path()), "0\n2\n4 42\n0 0\n").expect("write");
        assert!(LeaderEpochCache::load(dir.path()).is_err(), "out of order");
    }
}
