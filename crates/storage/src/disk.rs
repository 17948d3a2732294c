//! The storage seam: every write, sync, cut and small-file write the
//! storage crate makes goes through a [`Disk`], and every append to an
//! active segment through the [`SegmentFile`] it hands out.
//!
//! Production uses [`OsDisk`]: segment files are [`SegmentWriter`]s
//! (io_uring, buffered or O_DIRECT), the rest are the plain system calls.
//! Tests wrap it (`crate::fault::FaultyDisk`, behind the `faults` feature)
//! to tear writes, fail them with EIO or ENOSPC, fail syncs, and simulate a
//! power loss that keeps only what was synced.
//!
//! Cost on the production path: one virtual call and one boxed future per
//! segment write, fdatasync or seal — per coalesced write of a partition
//! in a flusher round, never per record. Reads are not behind the seam
//! (recovery and fetch read the files directly).
//!
//! Threads: [`SegmentFile`] is used on the owner shard only; the blocking
//! methods of [`Disk`] run on a shard's blocking pool or at startup, so a
//! `Disk` is `Send + Sync`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use futures::future::LocalBoxFuture;

use crate::error::{Op, StorageError};
use crate::writer::{SegmentWriter, WriteMode};

/// The write handle of an active segment.
pub trait SegmentFile {
    /// The segment file's path.
    fn path(&self) -> &Path;
    /// Writes `data` at `position`, which is where the previous write
    /// ended. All of it or an error: a short write is an error.
    fn write_at(&self, data: Vec<u8>, position: u64) -> LocalBoxFuture<'_, io::Result<()>>;
    /// Makes everything written so far durable.
    fn fdatasync(&self) -> LocalBoxFuture<'_, io::Result<()>>;
    /// Cuts the file to `size` bytes of data (reserved space, direct-mode
    /// padding), then makes it durable.
    fn seal(&self, size: u64) -> LocalBoxFuture<'_, io::Result<()>>;
    /// True when the file may extend past its data and should be cut when
    /// the handle closes.
    fn may_extend_past_data(&self) -> bool;
}

/// The filesystem as the storage crate uses it.
pub trait Disk: Send + Sync + 'static {
    /// Creates an empty segment file (truncating an old one), open for
    /// reading and writing.
    fn create_segment(&self, path: &Path) -> io::Result<File>;
    /// Opens an existing segment file for reading and writing (startup).
    fn open_segment(&self, path: &Path) -> io::Result<File>;
    /// The write handle of the segment `file` at `path`, which holds `size`
    /// bytes of data. `preallocate_step` 0 turns preallocation off.
    fn segment_writer(
        &self,
        path: &Path,
        file: &File,
        size: u64,
        mode: WriteMode,
        preallocate_step: u64,
    ) -> io::Result<Rc<dyn SegmentFile>>;
    /// Cuts `file` (at `path`) to `len` bytes; durable after a sync.
    fn set_len(&self, path: &Path, file: &File, len: u64) -> io::Result<()>;
    /// fsync of `file` (at `path`). Blocking.
    fn sync_file(&self, path: &Path, file: &File) -> io::Result<()>;
    /// Writes each small file whole (indexes, producer snapshots),
    /// replacing what it held; with `sync_each` each is fdatasync'ed before
    /// the next is written, so they become durable in order. Blocking.
    fn write_files(&self, files: &[(PathBuf, Vec<u8>)], sync_each: bool) -> io::Result<()>;
    /// fsync of a directory, so entries created in it are durable. Blocking.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// syncfs(2) of the filesystem holding `fs`. Blocking.
    fn syncfs(&self, fs: &File) -> io::Result<()>;
    /// The last step of sealing a rolled segment: writes its small `files`
    /// (transaction index and snapshot, time index, index, producer
    /// snapshot), each durable before the next (one that already holds its
    /// bytes is synced, not rewritten), then fsyncs `dir` so the new
    /// segment's entry is durable. On the shard's blocking pool.
    fn seal_files(
        self: Arc<Self>,
        files: Vec<(PathBuf, Vec<u8>)>,
        dir: PathBuf,
    ) -> LocalBoxFuture<'static, crate::Result<()>> {
        Box::pin(async move {
            glommio::executor()
                .spawn_blocking(move || write_then_sync_dir(&*self, &files, &dir))
                .await
        })
    }
    /// [`Disk::syncfs`] on the shard's blocking pool. What it covers is
    /// what was written before this call.
    fn syncfs_async(self: Arc<Self>, fs: Arc<File>) -> LocalBoxFuture<'static, io::Result<()>> {
        Box::pin(async move {
            glommio::executor()
                .spawn_blocking(move || self.syncfs(&fs))
                .await
        })
    }
}

/// The real filesystem.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsDisk;

impl OsDisk {
    /// The shared production disk.
    pub fn shared() -> Arc<dyn Disk> {
        Arc::new(OsDisk)
    }
}

impl Disk for OsDisk {
    fn create_segment(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
    }

    fn open_segment(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new().read(true).write(true).open(path)
    }

    fn segment_writer(
        &self,
        path: &Path,
        file: &File,
        size: u64,
        mode: WriteMode,
        preallocate_step: u64,
    ) -> io::Result<Rc<dyn SegmentFile>> {
        let writer = SegmentWriter::open(mode, path.to_path_buf(), file, size, preallocate_step)?;
        Ok(Rc::new(writer))
    }

    fn set_len(&self, _path: &Path, file: &File, len: u64) -> io::Result<()> {
        file.set_len(len)
    }

    fn sync_file(&self, _path: &Path, file: &File) -> io::Result<()> {
        file.sync_all()
    }

    fn write_files(&self, files: &[(PathBuf, Vec<u8>)], sync_each: bool) -> io::Result<()> {
        for (path, bytes) in files {
            let file = File::create(path)?;
            file.write_all_at(bytes, 0)?;
            if sync_each {
                file.sync_data()?;
            }
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn syncfs(&self, fs: &File) -> io::Result<()> {
        nix::unistd::syncfs(std::os::fd::AsRawFd::as_raw_fd(fs)).map_err(io::Error::from)
    }
}

/// [`Disk::seal_files`]'s work, blocking. A file that already holds
/// exactly its bytes (the segment's index files from a clean stop, when
/// nothing was appended since) is synced rather than rewritten: a rewrite
/// truncates it first, and a crash during it could tear a file the
/// segment's other files already vouch for.
pub(crate) fn write_then_sync_dir<D: Disk + ?Sized>(
    disk: &D,
    files: &[(PathBuf, Vec<u8>)],
    dir: &Path,
) -> crate::Result<()> {
    for (path, bytes) in files {
        match holding(path, bytes) {
            Some(file) => disk
                .sync_file(path, &file)
                .map_err(|e| StorageError::at(Op::SyncFile, path, e))?,
            None => disk
                .write_files(&[(path.clone(), bytes.clone())], true)
                .map_err(|e| StorageError::at(Op::WriteFiles, dir, e))?,
        }
    }
    disk.sync_dir(dir)
        .map_err(|e| StorageError::at(Op::SyncDir, dir, e))
}

/// The file at `path`, open, when it holds exactly `bytes`.
fn holding(path: &Path, bytes: &[u8]) -> Option<File> {
    let file = File::open(path).ok()?;
    if file.metadata().ok()?.len() != bytes.len() as u64 {
        return None;
    }
    let mut held = vec![0u8; bytes.len()];
    file.read_exact_at(&mut held, 0).ok()?;
    (held == bytes).then_some(file)
}
