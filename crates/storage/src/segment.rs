//! One `.log` segment file and its in-memory sparse indexes.
//!
//! A segment's bytes are record batches exactly as they go on the wire.
//! `size` counts bytes assigned (appended in memory, maybe not yet written);
//! `written` counts bytes already in the file: readers never look past it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use crate::index::{OffsetIndex, TimeIndex};
use crate::writer::{SegmentWriter, WriteMode};
use ringbroker_protocol::batch::{parse_header, BatchHeader, BATCH_HEADER_LEN};

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
    /// io_uring write handle; `None` once the segment is sealed or idle.
    pub write_file: Option<Rc<SegmentWriter>>,
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
    pub fn create(dir: &Path, base_offset: i64, now_ms: i64) -> io::Result<Segment> {
        let path = dir.join(file_name(base_offset, "log"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        Self::from_file(path, file, base_offset, 0, base_offset, now_ms)
    }

    /// The io_uring write handle, opened when the segment has none:
    /// partitions that are not being written hold one file descriptor, not
    /// two. `preallocate_step` is 0 for no preallocation.
    pub fn writer(
        &mut self,
        mode: WriteMode,
        preallocate_step: u64,
    ) -> io::Result<Rc<SegmentWriter>> {
        if let Some(file) = &self.write_file {
            return Ok(file.clone());
        }
        let file = Rc::new(SegmentWriter::open(
            mode,
            self.path.clone(),
            &self.read_file,
            self.size,
            preallocate_step,
        )?);
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
    ) -> io::Result<Segment> {
        Ok(Segment {
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
        })
    }

    /// True when no batch has been assigned to this segment.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Reads the batch header at `position` from the written part.
    pub fn header_at(&self, position: u64) -> io::Result<Option<BatchHeader>> {
        if position + BATCH_HEADER_LEN as u64 > self.written {
            return Ok(None);
        }
        let mut buf = [0u8; BATCH_HEADER_LEN];
        self.read_file.read_exact_at(&mut buf, position)?;
        let header = parse_header(&buf)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        if header.total_len() as u64 + position > self.written {
            return Ok(None);
        }
        Ok(Some(header))
    }

    /// Finds the position of the batch holding `offset` (or the first batch
    /// after it), scanning forward from the sparse index entry.
    pub fn find_position(&self, offset: i64) -> io::Result<Option<(u64, BatchHeader)>> {
        let (_, start) = self.index.lookup(offset);
        let mut position = u64::from(start);
        while let Some(header) = self.header_at(position)? {
            if header.last_offset() >= offset {
                return Ok(Some((position, header)));
            }
            position += header.total_len() as u64;
        }
        Ok(None)
    }

    /// Paths of the index files beside this segment.
    pub fn index_paths(&self) -> (PathBuf, PathBuf) {
        (
            self.path.with_extension("index"),
            self.path.with_extension("timeindex"),
        )
    }
}
