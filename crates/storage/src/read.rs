//! Locating reads in segment files without blocking the shard thread.
//!
//! A fetch needs batch headers from the file: where the batch holding the
//! wanted offset starts (scanning forward from the sparse index entry) and
//! how long the first batch is (KIP-74). Those reads must not stall the
//! shard on a cold page, so a read is split in two:
//!
//! 1. On the shard, under the log's borrow, [`crate::log::PartitionLog`]
//!    builds a [`ReadPlan`]: the offset, and for the segments that may hold
//!    it a [`SegmentView`] (the shared file handle, the written end, the
//!    scan start from the index). No I/O.
//! 2. [`read_all`] first tries every plan on the shard reading only bytes
//!    already in the page cache (`preadv2` with `RWF_NOWAIT`), which is
//!    where a tailing consumer's headers are; the plans that would block
//!    go together as one job to the shard's blocking pool.
//!
//! A plan stays valid while it is away: bytes below a segment's written end
//! never change while the file is open (segments are append-only; cuts are
//! at or past the data), and the plan holds the file open, so a segment
//! that retention deletes meanwhile is still read whole. The answer
//! describes the log as it was when the plan was made, and the fetch
//! reports that moment's offsets. The result is still a [`FileSlice`]: the
//! record bytes go to the socket with sendfile, never through userspace.
//!
//! ListOffsets by timestamp reads headers and one whole batch; it is rare,
//! so it always runs on the blocking pool ([`lookup_all`]).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{Result, StorageError};
use ringbroker_protocol::batch::{parse_header, BatchHeader, BATCH_HEADER_LEN};
use ringbroker_protocol::frame::FileSlice;
use ringbroker_protocol::limits::HEADER_SCAN_WINDOW_BYTES;

/// A segment as a read sees it, detached from the log.
#[derive(Clone, Debug)]
pub struct SegmentView {
    /// The segment file (kept open while the read is away).
    pub file: Arc<File>,
    /// The segment's base offset.
    pub base_offset: i64,
    /// Where the scan starts (a batch boundary from the sparse index).
    pub start: u64,
    /// Bytes written when the view was taken; nothing past it is read.
    pub written: u64,
}

/// A fetch read located in memory, its header reads not done yet.
#[derive(Clone, Debug)]
pub struct ReadPlan {
    offset: i64,
    max_bytes: usize,
    /// The segment that should hold `offset`, then the next one (should
    /// the first have no batch at or after `offset` below its written end).
    segments: Vec<SegmentView>,
}

/// A ListOffsets-by-time lookup located in memory.
#[derive(Clone, Debug)]
pub struct TimestampLookup {
    timestamp_ms: i64,
    /// Segments whose newest timestamp reaches the target, oldest first,
    /// each viewed from the offset its time index points to.
    segments: Vec<(SegmentView, i64)>,
}

/// How header bytes are read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Only bytes in the page cache; anything else would block.
    CachedOnly,
    /// Ordinary positioned reads (blocking pool, startup, tools).
    Blocking,
}

/// The outcome of a step that may refuse to block.
enum Attempt<T> {
    Done(T),
    WouldBlock,
}

impl ReadPlan {
    /// A plan for up to `max_bytes` from `offset`, over `segments`.
    pub(crate) fn new(offset: i64, max_bytes: usize, segments: Vec<SegmentView>) -> ReadPlan {
        assert!(!segments.is_empty(), "a read plan needs a segment");
        assert!(
            segments
                .windows(2)
                .all(|w| w[0].base_offset < w[1].base_offset),
            "segments in offset order"
        );
        ReadPlan {
            offset,
            max_bytes,
            segments,
        }
    }

    /// Performs the read with ordinary (possibly blocking) reads: the batch
    /// holding the offset (or the first after it) and the whole batches
    /// after it up to `max_bytes`, the first batch whole even when larger.
    /// `None` when no written batch is at or after the offset.
    pub fn read_blocking(&self) -> Result<Option<FileSlice>> {
        match self.run(Access::Blocking)? {
            Attempt::Done(slice) => Ok(slice),
            Attempt::WouldBlock => unreachable!("blocking reads do not refuse"),
        }
    }

    /// Performs the read only if every byte it needs is in the page cache;
    /// `Ok(None)` when it would block.
    pub fn read_cached(&self) -> Result<Option<Option<FileSlice>>> {
        match self.run(Access::CachedOnly)? {
            Attempt::Done(slice) => Ok(Some(slice)),
            Attempt::WouldBlock => Ok(None),
        }
    }

    fn run(&self, access: Access) -> Result<Attempt<Option<FileSlice>>> {
        for view in &self.segments {
            let mut scanner = Scanner::new(view, access);
            let found = match scanner.find(self.offset)? {
                Attempt::Done(found) => found,
                Attempt::WouldBlock => return Ok(Attempt::WouldBlock),
            };
            if let Some((position, header)) = found {
                let available = (view.written - position) as usize;
                let len = available.min(self.max_bytes.max(header.total_len()));
                assert!(len >= header.total_len(), "the first batch goes whole");
                return Ok(Attempt::Done(Some(FileSlice {
                    file: view.file.clone(),
                    position,
                    len,
                })));
            }
        }
        Ok(Attempt::Done(None))
    }
}

impl TimestampLookup {
    /// A lookup of the first record at or after `timestamp_ms`.
    pub(crate) fn new(timestamp_ms: i64, segments: Vec<(SegmentView, i64)>) -> TimestampLookup {
        TimestampLookup {
            timestamp_ms,
            segments,
        }
    }

    /// Performs the lookup with ordinary reads: the offset and timestamp of
    /// the first record whose timestamp is at or after the target, `None`
    /// when every written record is older.
    pub fn run_blocking(&self) -> Result<Option<(i64, i64)>> {
        for (view, start_offset) in &self.segments {
            let mut scanner = Scanner::new(view, Access::Blocking);
            let Attempt::Done(Some((mut position, _))) = scanner.find(*start_offset)? else {
                continue;
            };
            while let Attempt::Done(Some(header)) = scanner.header_at(position)? {
                if header.max_timestamp >= self.timestamp_ms {
                    return exact_record_for_timestamp(view, position, &header, self.timestamp_ms);
                }
                position += header.total_len() as u64;
            }
        }
        Ok(None)
    }
}

/// Performs fetch reads: on the calling (shard) thread when every header
/// they need is in the page cache, the others as one job on the shard's
/// blocking pool. Results come back keyed as given, in no particular order.
pub async fn read_all<K: Send + 'static>(
    plans: Vec<(K, ReadPlan)>,
) -> Vec<(K, Result<Option<FileSlice>>)> {
    let mut done = Vec::with_capacity(plans.len());
    let mut cold = Vec::new();
    for (key, plan) in plans {
        match plan.read_cached() {
            Ok(Some(slice)) => done.push((key, Ok(slice))),
            Ok(None) => cold.push((key, plan)),
            Err(e) => done.push((key, Err(e))),
        }
    }
    if !cold.is_empty() {
        let read = glommio::executor()
            .spawn_blocking(move || {
                cold.into_iter()
                    .map(|(key, plan)| {
                        let result = plan.read_blocking();
                        (key, result)
                    })
                    .collect::<Vec<_>>()
            })
            .await;
        done.extend(read);
    }
    done
}

/// Performs timestamp lookups as one job on the shard's blocking pool.
pub async fn lookup_all<K: Send + 'static>(
    lookups: Vec<(K, TimestampLookup)>,
) -> Vec<(K, Result<Option<(i64, i64)>>)> {
    if lookups.is_empty() {
        return Vec::new();
    }
    glommio::executor()
        .spawn_blocking(move || {
            lookups
                .into_iter()
                .map(|(key, lookup)| {
                    let result = lookup.run_blocking();
                    (key, result)
                })
                .collect()
        })
        .await
}

/// Reads headers of one segment through a window of the file, so that the
/// few headers between an index entry and the wanted batch cost one read.
struct Scanner<'a> {
    view: &'a SegmentView,
    access: Access,
    window: Vec<u8>,
    window_start: u64,
}

impl<'a> Scanner<'a> {
    fn new(view: &'a SegmentView, access: Access) -> Scanner<'a> {
        Scanner {
            view,
            access,
            window: Vec::new(),
            window_start: 0,
        }
    }

    /// The batch holding `offset`, or the first after it, scanning from
    /// the view's start.
    fn find(&mut self, offset: i64) -> Result<Attempt<Option<(u64, BatchHeader)>>> {
        let mut position = self.view.start;
        loop {
            let header = match self.header_at(position)? {
                Attempt::Done(Some(header)) => header,
                Attempt::Done(None) => return Ok(Attempt::Done(None)),
                Attempt::WouldBlock => return Ok(Attempt::WouldBlock),
            };
            if header.last_offset() >= offset {
                return Ok(Attempt::Done(Some((position, header))));
            }
            let next = position + header.total_len() as u64;
            assert!(next > position, "batches have a length");
            position = next;
        }
    }

    /// The header of the batch at `position` when the whole batch is below
    /// the written end.
    fn header_at(&mut self, position: u64) -> Result<Attempt<Option<BatchHeader>>> {
        let header_end = position + BATCH_HEADER_LEN as u64;
        if header_end > self.view.written {
            return Ok(Attempt::Done(None));
        }
        let window_end = self.window_start + self.window.len() as u64;
        if position < self.window_start || header_end > window_end {
            let len = (self.view.written - position).min(HEADER_SCAN_WINDOW_BYTES as u64);
            self.window.resize(len as usize, 0);
            self.window_start = position;
            let complete = match self.access {
                Access::Blocking => {
                    self.view.file.read_exact_at(&mut self.window, position)?;
                    true
                }
                Access::CachedOnly => read_if_cached(&self.view.file, &mut self.window, position)?,
            };
            if !complete {
                self.window.clear();
                return Ok(Attempt::WouldBlock);
            }
        }
        let at = (position - self.window_start) as usize;
        let header =
            parse_header(&self.window[at..]).map_err(|source| StorageError::CorruptHeader {
                segment_base: self.view.base_offset,
                position,
                source,
            })?;
        if header.total_len() as u64 + position > self.view.written {
            return Ok(Attempt::Done(None));
        }
        Ok(Attempt::Done(Some(header)))
    }
}

fn exact_record_for_timestamp(
    view: &SegmentView,
    position: u64,
    header: &BatchHeader,
    timestamp_ms: i64,
) -> Result<Option<(i64, i64)>> {
    if header.is_log_append_time() {
        return Ok(Some((header.base_offset, header.max_timestamp)));
    }
    let mut buf = vec![0u8; header.total_len()];
    view.file.read_exact_at(&mut buf, position)?;
    // Records decode only through the bounded decoder: a batch a client
    // compressed can claim any size.
    let records = match ringbroker_protocol::records::decode_records(&buf) {
        Ok(records) => records,
        // Too large to decompress here: the batch's first offset, which a
        // consumer seeking by time reads from (a few older records).
        Err(ringbroker_protocol::records::RecordsError::TooLarge { .. }) => {
            return Ok(Some((header.base_offset, header.max_timestamp)))
        }
        Err(e) => {
            return Err(StorageError::CorruptBatch {
                segment_base: view.base_offset,
                position,
                reason: e.to_string(),
            })
        }
    };
    let found = records
        .iter()
        .find(|r| r.timestamp >= timestamp_ms)
        .map(|r| (r.offset, r.timestamp));
    Ok(found.or(Some((header.base_offset, header.max_timestamp))))
}

/// Set once the kernel or filesystem refuses `RWF_NOWAIT`: every read then
/// goes to the blocking pool.
static NOWAIT_UNSUPPORTED: AtomicBool = AtomicBool::new(false);

/// Fills `buf` from `position` only from the page cache. `Ok(false)` when
/// any of it would need the disk (or the kernel cannot tell).
fn read_if_cached(file: &File, buf: &mut [u8], position: u64) -> io::Result<bool> {
    if NOWAIT_UNSUPPORTED.load(Ordering::Relaxed) {
        return Ok(false);
    }
    let Ok(offset) = libc::off_t::try_from(position) else {
        return Ok(false);
    };
    let iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: `iov` describes `buf`, which is valid for writes of its
    // length for the whole call; the descriptor is borrowed from `file`,
    // open for the whole call.
    let read = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, offset, libc::RWF_NOWAIT) };
    if read >= 0 {
        return Ok(read as usize == buf.len());
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EAGAIN) => Ok(false),
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => {
            NOWAIT_UNSUPPORTED.store(true, Ordering::Relaxed);
            Ok(false)
        }
        _ => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringbroker_protocol::batch::{build_batch, stamp_base_offset};
    use std::io::Write;

    /// A file of `n` two-record batches from offset `base`, and where each
    /// batch starts.
    fn segment(base: i64, n: usize) -> (Arc<File>, Vec<u64>, u64) {
        let mut file = tempfile::tempfile().expect("tempfile");
        let mut starts = Vec::new();
        let mut len = 0u64;
        for i in 0..n {
            let value = vec![b'x'; 100 + i * 37];
            let mut batch =
                build_batch(1_000 + i as i64, None, &[(None, &value), (None, b"second")]);
            stamp_base_offset(&mut batch, base + 2 * i as i64);
            starts.push(len);
            len += batch.len() as u64;
            file.write_all(&batch).expect("write");
        }
        (Arc::new(file), starts, len)
    }

    fn view(file: &Arc<File>, base: i64, start: u64, written: u64) -> SegmentView {
        SegmentView {
            file: file.clone(),
            base_offset: base,
            start,
            written,
        }
    }

    #[test]
    fn plans_find_the_batch_and_keep_it_whole() {
        let (file, starts, len) = segment(100, 200);
        for (i, &start) in starts.iter().enumerate() {
            for offset in [100 + 2 * i as i64, 101 + 2 * i as i64] {
                let plan = ReadPlan::new(offset, 1, vec![view(&file, 100, 0, len)]);
                let slice = plan.read_blocking().expect("read").expect("found");
                assert_eq!(slice.position, start);
                let whole = starts.get(i + 1).copied().unwrap_or(len) - start;
                assert_eq!(slice.len as u64, whole, "one whole batch at least");
                // The page-cache path gives the same answer, or declines.
                if let Some(cached) = plan.read_cached().expect("cached") {
                    let cached = cached.expect("found");
                    assert_eq!((cached.position, cached.len), (slice.position, slice.len));
                }
            }
        }
        // Past the written end: nothing, and never a partial batch.
        let cut = starts[10] + 30;
        let plan = ReadPlan::new(100 + 2 * 10, 1 << 20, vec![view(&file, 100, 0, cut)]);
        assert!(plan.read_blocking().expect("read").is_none());
        let plan = ReadPlan::new(100, 1 << 20, vec![view(&file, 100, 0, cut)]);
        let slice = plan.read_blocking().expect("read").expect("found");
        assert_eq!(slice.len as u64, cut, "bounded by the written end");
    }

    #[test]
    fn a_garbage_header_is_an_error_not_a_panic() {
        let mut file = tempfile::tempfile().expect("tempfile");
        file.write_all(&[0xAB; 500]).expect("write");
        let file = Arc::new(file);
        let plan = ReadPlan::new(0, 100, vec![view(&file, 0, 0, 500)]);
        let error = plan.read_blocking().expect_err("corrupt");
        assert!(matches!(
            error,
            StorageError::CorruptHeader { position: 0, .. }
        ));
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn read_all_runs_cold_plans_on_the_blocking_pool() {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(|| async {
                let (file, starts, len) = segment(0, 50);
                let plans: Vec<(usize, ReadPlan)> = (0..50)
                    .map(|i| {
                        (
                            i,
                            ReadPlan::new(2 * i as i64, 1, vec![view(&file, 0, 0, len)]),
                        )
                    })
                    .collect();
                // Pretend nothing is cached: every plan takes the pool.
                NOWAIT_UNSUPPORTED.store(true, Ordering::Relaxed);
                let mut results = read_all(plans.clone()).await;
                NOWAIT_UNSUPPORTED.store(false, Ordering::Relaxed);
                results.sort_by_key(|(i, _)| *i);
                for (i, result) in results {
                    let slice = result.expect("read").expect("found");
                    assert_eq!(slice.position, starts[i]);
                }
                let warm = read_all(plans).await;
                assert_eq!(warm.len(), 50);
            })
            .expect("executor")
            .join()
            .expect("join");
    }
}
