//! The shard's write-behind and group commit.
//!
//! Appends only queue bytes in memory. The flusher takes every queued
//! partition's operations in one round, writes them with io_uring, makes
//! them readable, then issues one fdatasync per partition that has a
//! durability waiter (acks=all) — however many batches arrived meanwhile.
//! Everything appended while a round runs goes in the next one.
//!
//! Every write and sync goes through the storage seam ([`crate::disk`]).
//! A failed write, seal or sync fails the partition with the typed error
//! ([`StorageError`]): its waiters are woken and get a storage error, and
//! the durable offset never passes what a successful sync covered.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use crate::disk::{Disk, OsDisk};
use crate::error::{Op, StorageError};
use crate::log::{FlushWork, PendingOp};
use crate::partition::Partition;

/// What one durability sync covers (`ringbroker.log.sync.scope`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncScope {
    /// One fdatasync per partition with a waiter.
    Partition,
    /// One syncfs at a time of the filesystem holding this directory,
    /// covering every partition of the shard that waits.
    Filesystem(PathBuf),
}

/// The flusher of one shard.
pub struct Flusher {
    /// Rounds run one at a time, so a partition's writes complete in order
    /// and the high watermark never passes an unwritten byte.
    round_lock: glommio::sync::Semaphore,
    queue: RefCell<Vec<Rc<Partition>>>,
    wake: event_listener::Event,
    space: event_listener::Event,
    pending_bytes: Cell<usize>,
    rounds: Cell<u64>,
    syncs: Cell<u64>,
    /// Performs the syncfs of the filesystem scope.
    disk: Arc<dyn Disk>,
    /// With `ringbroker.log.sync.scope=filesystem`: the data directory, open
    /// on its filesystem; partitions wanting durability then share one
    /// syncfs at a time instead of one fdatasync each.
    fs_sync: Option<(PathBuf, Arc<File>)>,
    fs_syncing: Cell<bool>,
    fs_batch: RefCell<Vec<(Rc<Partition>, i64)>>,
}

impl Default for Flusher {
    fn default() -> Self {
        Self::new()
    }
}

impl Flusher {
    /// A flusher with nothing queued, syncing partition by partition on the
    /// real filesystem.
    pub fn new() -> Flusher {
        Flusher {
            disk: OsDisk::shared(),
            round_lock: glommio::sync::Semaphore::new(1),
            queue: RefCell::default(),
            wake: event_listener::Event::new(),
            space: event_listener::Event::new(),
            pending_bytes: Cell::new(0),
            rounds: Cell::new(0),
            syncs: Cell::new(0),
            fs_sync: None,
            fs_syncing: Cell::new(false),
            fs_batch: RefCell::default(),
        }
    }

    /// A flusher whose durability syncs are one `syncfs` per round of
    /// waiting partitions, on the filesystem holding `data_dir`
    /// (`ringbroker.log.sync.scope=filesystem`).
    pub fn with_filesystem_sync(data_dir: &Path) -> std::io::Result<Flusher> {
        Self::on(
            OsDisk::shared(),
            SyncScope::Filesystem(data_dir.to_path_buf()),
        )
    }

    /// A flusher whose syncfs goes through `disk` (the partitions' own
    /// writes and fdatasyncs go through their logs' disks).
    pub fn on(disk: Arc<dyn Disk>, scope: SyncScope) -> std::io::Result<Flusher> {
        let fs_sync = match scope {
            SyncScope::Partition => None,
            SyncScope::Filesystem(dir) => {
                let file = Arc::new(File::open(&dir)?);
                Some((dir, file))
            }
        };
        Ok(Flusher {
            disk,
            fs_sync,
            ..Flusher::new()
        })
    }

    /// Queues `partition` for the next round.
    pub fn schedule(&self, partition: &Rc<Partition>, appended_bytes: usize) {
        self.pending_bytes
            .set(self.pending_bytes.get() + appended_bytes);
        if !partition.queued.replace(true) {
            self.queue.borrow_mut().push(partition.clone());
        }
        self.wake.notify(1);
    }

    /// Bytes appended but not yet written, across the shard.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes.get()
    }

    /// (rounds, fdatasyncs) performed so far.
    pub fn stats(&self) -> (u64, u64) {
        (self.rounds.get(), self.syncs.get())
    }

    /// Waits until pending bytes drop below `limit` (produce back-pressure).
    pub async fn wait_for_space(&self, limit: usize) {
        loop {
            let listener = self.space.listen();
            if self.pending_bytes.get() < limit {
                return;
            }
            listener.await;
        }
    }

    /// Runs rounds forever; spawn it in a task queue of its own.
    pub async fn run(self: Rc<Self>) {
        loop {
            let listener = self.wake.listen();
            if self.queue.borrow().is_empty() {
                listener.await;
                continue;
            }
            self.round().await;
        }
    }

    /// Closes `partitions` to appends and writes and syncs everything
    /// appended to them before, waiting for syncs already in flight.
    /// Returns whether every partition settled (or failed) before
    /// `deadline`; after that their files no longer change.
    pub async fn close_and_drain(
        self: &Rc<Self>,
        partitions: &[Rc<Partition>],
        deadline: std::time::Instant,
    ) -> bool {
        for partition in partitions {
            let mut log = partition.log.borrow_mut();
            log.close();
            log.request_sync();
        }
        loop {
            for partition in partitions {
                let log = partition.log.borrow();
                if log.needs_flush() && log.failure().is_none() {
                    drop(log);
                    self.schedule(partition, 0);
                }
            }
            self.round().await;
            if partitions.iter().all(|p| p.is_settled()) {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    /// Performs one round over everything queued now.
    pub async fn round(self: &Rc<Self>) {
        let Ok(_turn) = self.round_lock.acquire_permit(1).await else {
            return;
        };
        let partitions = std::mem::take(&mut *self.queue.borrow_mut());
        if partitions.is_empty() {
            return;
        }
        self.rounds.set(self.rounds.get() + 1);
        let mut jobs = Vec::with_capacity(partitions.len());
        let mut taken = 0usize;
        for partition in partitions {
            partition.queued.set(false);
            let work = {
                let mut log = partition.log.borrow_mut();
                taken += log.pending_bytes();
                log.take_flush_work()
            };
            if work.sync.is_some() {
                self.syncs.set(self.syncs.get() + 1);
            }
            jobs.push(flush_partition(self.clone(), partition, work));
        }
        futures::future::join_all(jobs).await;
        self.pending_bytes
            .set(self.pending_bytes.get().saturating_sub(taken));
        self.space.notify(usize::MAX);
    }
}

async fn flush_partition(flusher: Rc<Flusher>, partition: Rc<Partition>, work: FlushWork) {
    let sync = work.sync.clone().map(|file| (file, work.sync_offset));
    if let Err(error) = perform(&partition, work).await {
        partition.log.borrow_mut().fail(Arc::new(error));
        partition.notify();
        return;
    }
    partition.notify();
    let Some((file, offset)) = sync else { return };
    if partition.syncing.replace(true) {
        // A sync is in flight; when it ends it queues the partition again.
        return;
    }
    if flusher.fs_sync.is_some() {
        drop(file);
        flusher.fs_batch.borrow_mut().push((partition, offset));
        start_filesystem_sync(flusher);
        return;
    }
    // The sync runs on its own so the next round's writes (and acks=1
    // answers) do not wait behind it; one sync per partition at a time,
    // covering every batch written before it started (group commit).
    glommio::spawn_local(async move {
        let result = file
            .fdatasync()
            .await
            .map_err(|e| Arc::new(StorageError::at(Op::Fdatasync, file.path(), e)));
        finish_sync(&flusher, &partition, offset, result);
    })
    .detach();
}

/// Runs syncfs rounds until no partition waits: each covers every
/// partition queued before it started (and everything else written to the
/// filesystem meanwhile).
fn start_filesystem_sync(flusher: Rc<Flusher>) {
    if flusher.fs_syncing.replace(true) {
        return;
    }
    glommio::spawn_local(async move {
        loop {
            let batch = std::mem::take(&mut *flusher.fs_batch.borrow_mut());
            if batch.is_empty() {
                break;
            }
            let Some((dir, fs)) = flusher.fs_sync.clone() else {
                unreachable!("filesystem syncs need the filesystem scope");
            };
            let result = flusher
                .disk
                .clone()
                .syncfs_async(fs)
                .await
                .map_err(|e| Arc::new(StorageError::at(Op::Syncfs, dir, e)));
            for (partition, offset) in batch {
                finish_sync(&flusher, &partition, offset, result.clone());
            }
        }
        flusher.fs_syncing.set(false);
    })
    .detach();
}

/// Records the outcome of a sync covering `partition` up to `offset` and
/// queues the partition again when more waits for durability.
fn finish_sync(
    flusher: &Rc<Flusher>,
    partition: &Rc<Partition>,
    offset: i64,
    result: Result<(), Arc<StorageError>>,
) {
    {
        let mut log = partition.log.borrow_mut();
        match result {
            // Covers data written before it started, even if the partition
            // failed since (a later write): that data is durable.
            Ok(()) => log.mark_durable(offset),
            Err(e) => log.fail(e),
        }
    }
    partition.syncing.set(false);
    partition.notify();
    let again = {
        let log = partition.log.borrow();
        log.sync_pending() && log.failure().is_none()
    };
    if again {
        flusher.schedule(partition, 0);
    }
}

async fn perform(partition: &Partition, work: FlushWork) -> Result<(), StorageError> {
    for op in work.ops {
        match op {
            PendingOp::Write {
                segment_base,
                file,
                position,
                data,
                end_offset,
            } => {
                let end = position + data.len() as u64;
                file.write_at(data, position)
                    .await
                    .map_err(|e| StorageError::at(Op::Write, file.path(), e))?;
                partition
                    .log
                    .borrow_mut()
                    .mark_written(segment_base, end, end_offset);
                partition.on_log_written();
                partition.notify();
            }
            PendingOp::Seal {
                file,
                size,
                files,
                dir,
                disk,
            } => {
                file.seal(size)
                    .await
                    .map_err(|e| StorageError::at(Op::Seal, file.path(), e))?;
                disk.seal_files(files, dir).await?;
            }
            PendingOp::EpochCheckpoint { path, lines } => {
                // Small and rare (a new leader epoch, retention): one
                // atomic replace on the blocking pool.
                let written = glommio::executor()
                    .spawn_blocking({
                        let path = path.clone();
                        move || crate::checkpoint::write(&path, &lines)
                    })
                    .await;
                written.map_err(|e| StorageError::at(Op::WriteFiles, &path, e))?;
            }
            PendingOp::DeleteFiles { paths } => {
                // Rare (retention, DeleteRecords): on the blocking pool. A
                // file left behind belongs to no segment; the partition
                // goes on.
                let removed = glommio::executor()
                    .spawn_blocking(move || {
                        for path in paths {
                            match std::fs::remove_file(&path) {
                                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                                    return Err((path, e));
                                }
                                _ => {}
                            }
                        }
                        Ok(())
                    })
                    .await;
                if let Err((path, e)) = removed {
                    log::error!("deleting {}: {e}", path.display());
                }
            }
        }
    }
    Ok(())
}
