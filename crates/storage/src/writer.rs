//! The write handle of an active segment, in one of two modes.
//!
//! - **Buffered** (default): io_uring writes into the page cache; an
//!   fdatasync makes them durable. Tailing consumers read fresh data from
//!   the page cache with sendfile.
//! - **Direct** (`ringbroker.log.write.mode=direct`): io_uring writes with
//!   O_DIRECT from aligned buffers, bypassing the page cache (no kernel
//!   copy, no dirty-page writeback). Writes are block-aligned: the last
//!   partial block of the segment is kept in memory and written again, with
//!   the new bytes after it, by the next write; the file may end in zero
//!   padding until the segment is sealed (truncated to its data) or the
//!   broker recovers it (recovery stops at zeroed bytes). Rewriting a block
//!   only ever rewrites the same bytes before the old end, so a torn
//!   rewrite cannot damage data already written. An fdatasync is still
//!   needed for acks=all: it flushes the device's volatile cache and the
//!   file's size.
//!
//! Both modes preallocate the file ahead of the write position
//! (`fallocate` with KEEP_SIZE, when `preallocate` is set) so appends
//! extend into reserved, contiguous extents. Reserved space is released
//! when the segment is sealed or its idle write handle closes.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use futures::future::LocalBoxFuture;

use crate::disk::SegmentFile;
use crate::error::from_glommio;

/// How segments are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WriteMode {
    /// Through the page cache.
    #[default]
    Buffered,
    /// O_DIRECT, block-aligned, bypassing the page cache.
    Direct,
}

impl WriteMode {
    /// Parses `buffered` or `direct`.
    pub fn parse(value: &str) -> Option<WriteMode> {
        match value.trim() {
            "buffered" => Some(WriteMode::Buffered),
            "direct" => Some(WriteMode::Direct),
            _ => None,
        }
    }

    /// The config value naming this mode.
    pub fn name(self) -> &'static str {
        match self {
            WriteMode::Buffered => "buffered",
            WriteMode::Direct => "direct",
        }
    }
}

/// Alignment of direct writes: a multiple of every logical block size in
/// use (512 and 4096).
pub const DIRECT_ALIGN: u64 = 4096;

/// Smallest reservation ahead of the write position.
const PREALLOCATE_MIN_BYTES: u64 = 1 << 20;

/// The active segment's write handle: the production [`SegmentFile`].
pub struct SegmentWriter {
    path: PathBuf,
    kind: Kind,
    /// Bytes reserved with fallocate (0 = none; preallocation off when
    /// `preallocate_step` is 0).
    preallocated: Cell<u64>,
    preallocate_step: u64,
}

enum Kind {
    Buffered(glommio::io::BufferedFile),
    Direct(DirectFile),
}

struct DirectFile {
    /// Opened on first write (opening a DMA file is asynchronous).
    file: RefCell<Option<Rc<glommio::io::DmaFile>>>,
    /// End of the data written so far.
    end: Cell<u64>,
    /// The bytes of the last partial block, `[align_down(end), end)`.
    tail: RefCell<Vec<u8>>,
}

fn align_down(v: u64) -> u64 {
    v - v % DIRECT_ALIGN
}

fn align_up(v: u64) -> u64 {
    v.div_ceil(DIRECT_ALIGN) * DIRECT_ALIGN
}

impl SegmentWriter {
    /// A writer for the segment file `read_file` (at `path`) holding `size`
    /// bytes of data. Buffered mode duplicates the descriptor; direct mode
    /// keeps the partial last block and opens the file on first write.
    pub fn open(
        mode: WriteMode,
        path: PathBuf,
        read_file: &File,
        size: u64,
        preallocate_step: u64,
    ) -> io::Result<SegmentWriter> {
        let kind = match mode {
            WriteMode::Buffered => {
                use std::os::unix::io::{FromRawFd, IntoRawFd};
                let fd = read_file.try_clone()?.into_raw_fd();
                // SAFETY: the fd was just duplicated and is owned by nobody else.
                Kind::Buffered(unsafe { glommio::io::BufferedFile::from_raw_fd(fd) })
            }
            WriteMode::Direct => {
                let start = align_down(size);
                let mut tail = vec![0u8; (size - start) as usize];
                read_file.read_exact_at(&mut tail, start)?;
                Kind::Direct(DirectFile {
                    file: RefCell::new(None),
                    end: Cell::new(size),
                    tail: RefCell::new(tail),
                })
            }
        };
        Ok(SegmentWriter {
            path,
            kind,
            preallocated: Cell::new(0),
            preallocate_step,
        })
    }

    /// Writes `data` at `position` (the end of what was written before, for
    /// direct mode). A short write only happens when the disk is full or
    /// failing; it is an error, not retried (recovery cuts the tail), and it
    /// carries the cause when the kernel tells it (ENOSPC, EDQUOT).
    pub async fn write_at(&self, data: Vec<u8>, position: u64) -> io::Result<()> {
        let len = data.len();
        self.preallocate(position + len as u64).await;
        let written = match &self.kind {
            Kind::Buffered(file) => file.write_at(data, position).await.map_err(from_glommio)?,
            Kind::Direct(direct) => direct.write_at(&self.path, &data, position).await?,
        };
        if written < len {
            return Err(self
                .short_write_cause(position + len as u64, written, len)
                .await);
        }
        Ok(())
    }

    /// Why a write came back short. glommio took the buffer, so the rest
    /// cannot be written again to learn the errno; reserving the space the
    /// rest needed asks the filesystem the same question without data.
    async fn short_write_cause(&self, end: u64, written: usize, len: usize) -> io::Error {
        let probe = match &self.kind {
            Kind::Buffered(file) => file.pre_allocate(end, true).await.map_err(from_glommio),
            Kind::Direct(direct) => match direct.opened(&self.path).await {
                Ok(file) => file.pre_allocate(end, true).await.map_err(from_glommio),
                Err(e) => Err(e),
            },
        };
        match probe {
            Err(e) if e.raw_os_error() != Some(libc::EOPNOTSUPP) => e,
            _ => short_write(written, len),
        }
    }

    /// True when the file may extend past its data (reserved space or
    /// direct-mode padding) and should be cut when the handle closes.
    pub fn may_extend_past_data(&self) -> bool {
        matches!(self.kind, Kind::Direct(_))
            || (self.preallocated.get() > 0 && self.preallocated.get() != u64::MAX)
    }

    /// Makes everything written durable.
    pub async fn fdatasync(&self) -> io::Result<()> {
        match &self.kind {
            Kind::Buffered(file) => file.fdatasync().await.map_err(from_glommio),
            Kind::Direct(direct) => direct
                .opened(&self.path)
                .await?
                .fdatasync()
                .await
                .map_err(from_glommio),
        }
    }

    /// Seals the segment: cuts preallocated space and direct-mode padding
    /// past `size` bytes of data, then makes the file durable.
    pub async fn seal(&self, size: u64) -> io::Result<()> {
        match &self.kind {
            Kind::Buffered(file) => {
                if self.preallocated.get() > 0 {
                    file.truncate(size).await.map_err(from_glommio)?;
                }
                file.fdatasync().await.map_err(from_glommio)
            }
            Kind::Direct(direct) => {
                let file = direct.opened(&self.path).await?;
                file.truncate(size).await.map_err(from_glommio)?;
                file.fdatasync().await.map_err(from_glommio)
            }
        }
    }

    /// Reserves space ahead of `end` in steps (best effort: filesystems
    /// without fallocate just skip it; a full disk shows up on the write).
    async fn preallocate(&self, end: u64) {
        if self.preallocate_step == 0 || end <= self.preallocated.get() {
            return;
        }
        // Reserve ahead as much as the segment already holds, between 1 MiB
        // and the step: a partition written once reserves little, so ten
        // thousand partitions do not reserve a disk's worth of extents.
        let ahead = end.clamp(
            PREALLOCATE_MIN_BYTES.min(self.preallocate_step),
            self.preallocate_step,
        );
        let target = (end + ahead).div_ceil(PREALLOCATE_MIN_BYTES) * PREALLOCATE_MIN_BYTES;
        let result = match &self.kind {
            Kind::Buffered(file) => file.pre_allocate(target, true).await.map_err(from_glommio),
            Kind::Direct(direct) => match direct.opened(&self.path).await {
                Ok(file) => file.pre_allocate(target, true).await.map_err(from_glommio),
                // The write that follows opens the file again and reports.
                Err(_) => return,
            },
        };
        match result {
            Ok(()) => self.preallocated.set(target),
            Err(e) => {
                log::debug!("preallocation failed ({e}); continuing without");
                self.preallocated.set(u64::MAX);
            }
        }
    }
}

impl SegmentFile for SegmentWriter {
    fn path(&self) -> &Path {
        &self.path
    }

    fn write_at(&self, data: Vec<u8>, position: u64) -> LocalBoxFuture<'_, io::Result<()>> {
        Box::pin(SegmentWriter::write_at(self, data, position))
    }

    fn fdatasync(&self) -> LocalBoxFuture<'_, io::Result<()>> {
        Box::pin(SegmentWriter::fdatasync(self))
    }

    fn seal(&self, size: u64) -> LocalBoxFuture<'_, io::Result<()>> {
        Box::pin(SegmentWriter::seal(self, size))
    }

    fn may_extend_past_data(&self) -> bool {
        SegmentWriter::may_extend_past_data(self)
    }
}

fn short_write(written: usize, len: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::WriteZero,
        format!("short write: {written} of {len} bytes (disk full?)"),
    )
}

impl DirectFile {
    /// The DMA handle, opening it on first use (opening a DMA file is
    /// asynchronous).
    async fn opened(&self, path: &Path) -> io::Result<Rc<glommio::io::DmaFile>> {
        if let Some(file) = self.file.borrow().as_ref() {
            return Ok(file.clone());
        }
        let file = glommio::io::OpenOptions::new()
            .read(true)
            .write(true)
            .dma_open(path)
            .await
            .map_err(from_glommio)?;
        if !DIRECT_ALIGN.is_multiple_of(file.alignment()) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "{}: direct I/O needs {}-byte alignment; use ringbroker.log.write.mode=buffered",
                    path.display(),
                    file.alignment()
                ),
            ));
        }
        let file = Rc::new(file);
        *self.file.borrow_mut() = Some(file.clone());
        Ok(file)
    }

    /// Writes `data` at `position` with the kept tail block in front,
    /// padded to the next block. Returns how many of `data`'s bytes reached
    /// the file.
    async fn write_at(&self, path: &Path, data: &[u8], position: u64) -> io::Result<usize> {
        if position != self.end.get() {
            return Err(io::Error::other(format!(
                "direct write at {position} but the segment ends at {}",
                self.end.get()
            )));
        }
        let file = self.opened(path).await?;
        let start = align_down(position);
        let new_end = position + data.len() as u64;
        let padded = (align_up(new_end) - start) as usize;
        let mut buf = file.alloc_dma_buffer(padded);
        let tail_len = (position - start) as usize;
        let new_tail = {
            let bytes = buf.as_bytes_mut();
            let tail = self.tail.borrow();
            assert_eq!(tail.len(), tail_len, "direct tail out of step with the end");
            bytes[..tail_len].copy_from_slice(&tail);
            let data_end = tail_len + data.len();
            bytes[tail_len..data_end].copy_from_slice(data);
            bytes[data_end..].fill(0);
            let tail_start = (align_down(new_end) - start) as usize;
            bytes[tail_start..data_end].to_vec()
        };
        let written = file.write_at(buf, start).await.map_err(from_glommio)?;
        let data_written = written.saturating_sub(tail_len);
        if data_written < data.len() {
            // Short: the caller fails the partition; the kept tail no
            // longer matters.
            return Ok(data_written);
        }
        self.end.set(new_end);
        *self.tail.borrow_mut() = new_tail;
        Ok(data.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_executor<F, Fut>(body: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(body)
            .expect("executor")
            .join()
            .expect("join");
    }

    /// An empty segment file in a new temporary directory (kept alive by
    /// the returned guard).
    fn segment_file() -> (tempfile::TempDir, std::path::PathBuf, File) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("00000000000000000000.log");
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .expect("create");
        (dir, path, file)
    }

    /// Appends of odd sizes in direct mode leave exactly the appended bytes
    /// before the padding, across reopenings; sealing cuts the padding.
    #[test]
    fn direct_writes_rewrite_the_tail_block_and_seal_cuts_padding() {
        on_executor(|| async {
            let (_dir, path, read) = segment_file();
            let mut expected = Vec::new();
            let mut size = 0u64;
            for round in 0..3u8 {
                // A new writer each round: the tail comes from the file.
                let writer =
                    SegmentWriter::open(WriteMode::Direct, path.clone(), &read, size, 1 << 20)
                        .expect("open");
                for i in 0..20u32 {
                    let len = 1 + (i as usize * 977 + round as usize * 131) % 9000;
                    let data: Vec<u8> = (0..len).map(|j| (j as u8) ^ (i as u8) ^ round).collect();
                    if let Err(e) = writer.write_at(data.clone(), size).await {
                        // Filesystems without O_DIRECT (tmpfs before 6.6).
                        eprintln!("direct I/O unavailable here: {e}");
                        return;
                    }
                    expected.extend_from_slice(&data);
                    size += len as u64;
                    let on_disk = std::fs::read(&path).expect("read");
                    assert!(
                        on_disk.len() as u64 >= size
                            && (on_disk.len() as u64).is_multiple_of(DIRECT_ALIGN)
                    );
                    assert_eq!(&on_disk[..size as usize], &expected[..]);
                    assert!(on_disk[size as usize..].iter().all(|b| *b == 0));
                }
                writer.fdatasync().await.expect("sync");
            }
            let writer =
                SegmentWriter::open(WriteMode::Direct, path.clone(), &read, size, 0).expect("open");
            writer.seal(size).await.expect("seal");
            assert_eq!(std::fs::read(&path).expect("read"), expected);
        });
    }

    #[test]
    fn buffered_preallocation_keeps_the_size_and_seal_trims() {
        on_executor(|| async {
            let (_dir, path, read) = segment_file();
            let writer = SegmentWriter::open(WriteMode::Buffered, path.clone(), &read, 0, 1 << 20)
                .expect("open");
            writer.write_at(vec![7u8; 1000], 0).await.expect("write");
            writer.write_at(vec![8u8; 10], 1000).await.expect("write");
            assert_eq!(read.metadata().expect("meta").len(), 1010);
            writer.seal(1010).await.expect("seal");
            let bytes = std::fs::read(&path).expect("read");
            assert_eq!(bytes.len(), 1010);
            assert!(bytes[..1000].iter().all(|b| *b == 7) && bytes[1000..].iter().all(|b| *b == 8));
        });
    }

    #[test]
    fn modes_parse() {
        assert_eq!(WriteMode::parse("direct"), Some(WriteMode::Direct));
        assert_eq!(WriteMode::parse("buffered"), Some(WriteMode::Buffered));
        assert_eq!(WriteMode::parse("dma"), None);
        assert_eq!(WriteMode::Direct.name(), "direct");
    }
}
