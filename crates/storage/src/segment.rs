//! One `.log` segment file and its in-memory sparse indexes.
//!
//! A segment's bytes are record batches exactly as they go on the wire.
//! `size` counts bytes assigned (appended in memory, maybe not yet written);
//! `written` counts bytes already in the file: readers never look past it,
//! and nothing below it ever changes while the file is open (appends only;
//! cuts happen at or past `size`), which is what lets reads locate batches
//! off the shard thread (`crate::read`).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use crate::disk::{Disk, SegmentFile};
use crate::index::{OffsetIndex, TimeIndex};
use crate::read::SegmentView;
use crate::writer::WriteMode;

/// The file name of a segment, index or time index for a base offset.
pub fn file_name(base_offset: i64, extension: &str) -> String {
    format!("{base_offset:020}.{extension}")
}

/// One segment of a partition log.
pub struct Segment {
    /// Offset of the first batch this segment may hold.
    pub base_offset: i64,
    /// Path of the `.log` file.
    pub path: PathBuf,
    /// Read-only handle shared with senders (sendfile) on any shard.
    pub read_file: Arc<File>,
    /// Write handle; `None` once the segment is sealed or idle.
    pub write_file: Option<Rc<dyn SegmentFile>>,
    /// Bytes assigned, including those still pending write.
    pub size: u64,
    /// Bytes already written to the file.
    pub written: u64,
    /// Offset after the last batch assigned to this segment.
    pub next_offset: i64,
    /// Sparse offset → position index.
    pub index: OffsetIndex,
    /// Sparse timestamp → offset index.
    pub time_index: TimeIndex,
    /// Largest batch max-timestamp seen (-1 when empty).
    pub max_timestamp: i64,
    /// Wall-clock time the segment was created or opened (for segment.ms).
    pub created_ms: i64,
    /// Bytes appended since the last index entry.
    pub bytes_since_index: u64,
}

impl Segment {
    /// Creates an empty segment file for `base_offset` in `dir` (the write
    /// handle opens on first use).
    pub fn create(
        disk: &dyn Disk,
        dir: &Path,
        base_offset: i64,
        now_ms: i64,
    ) -> io::Result<Segment> {
        let path = dir.join(file_name(base_offset, "log"));
        let file = disk.create_segment(&path)?;
        Ok(Self::from_file(
            path,
            file,
            base_offset,
            0,
            base_offset,
            now_ms,
        ))
    }

    /// The write handle, opened when the segment has none: partitions that
    /// are not being written hold one file descriptor, not two.
    /// `preallocate_step` is 0 for no preallocation.
    pub fn writer(
        &mut self,
        disk: &dyn Disk,
        mode: WriteMode,
        preallocate_step: u64,
    ) -> io::Result<Rc<dyn SegmentFile>> {
        if let Some(file) = &self.write_file {
            return Ok(file.clone());
        }
        let file = disk.segment_writer(
            &self.path,
            &self.read_file,
            self.size,
            mode,
            preallocate_step,
        )?;
        self.write_file = Some(file.clone());
        Ok(file)
    }

    /// Wraps an existing, recovered file of `size` valid bytes (no write
    /// handle yet; see [`Segment::writer`]).
    pub fn from_file(
        path: PathBuf,
        file: File,
        base_offset: i64,
        size: u64,
        next_offset: i64,
        now_ms: i64,
    ) -> Segment {
        Segment {
            base_offset,
            path,
            read_file: Arc::new(file),
            write_file: None,
            size,
            written: size,
            next_offset,
            index: OffsetIndex::new(base_offset),
            time_index: TimeIndex::new(base_offset),
            max_timestamp: -1,
            created_ms: now_ms,
            bytes_since_index: 0,
        }
    }

    /// True when no batch has been assigned to this segment.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// What a read needs of this segment, to locate `offset` without the
    /// segment (off the shard thread): the file, the written end and where
    /// the sparse index says to start scanning.
    pub fn view(&self, offset: i64) -> SegmentView {
        assert!(self.written <= self.size, "written past the assigned end");
        let (_, start) = self.index.lookup(offset);
        SegmentView {
            file: self.read_file.clone(),
            base_offset: self.base_offset,
            start: u64::from(start),
            written: self.written,
        }
    }

    /// Paths of the index files beside this segment.
    pub fn index_paths(&self) -> (PathBuf, PathBuf) {
        (
            self.path.with_extension("index"),
            self.path.with_extension("timeindex"),
        )
    }
}
