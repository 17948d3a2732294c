//! The shard's write-behind and group commit.
//!
//! Appends only queue bytes in memory. The flusher takes every queued
//! partition's operations in one round, writes them with io_uring, makes
//! them readable, then issues one fdatasync per partition that has a
//! durability waiter (acks=all) — however many batches arrived meanwhile.
//! Everything appended while a round runs goes in the next one.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::log::{sync_dir, write_files_synced, FlushWork, PendingOp};
use crate::partition::Partition;

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
    /// With `ringbroker.log.sync.scope=filesystem`: a descriptor on the data
    /// directory's filesystem; partitions wanting durability then share one
    /// syncfs at a time instead of one fdatasync each.
    fs_sync: Option<std::fs::File>,
    fs_syncing: Cell<bool>,
    fs_batch: RefCell<Vec<(Rc<Partition>, i64)>>,
}

impl Default for Flusher {
    fn default() -> Self {
        Self::new()
    }
}

impl Flusher {
    /// A flusher with nothing queued.
    pub fn new() -> Flusher {
        Flusher {
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
    pub fn with_filesystem_sync(data_dir: &std::path::Path) -> std::io::Result<Flusher> {
        Ok(Flusher {
            fs_sync: Some(std::fs::File::open(data_dir)?),
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
    if let Err(reason) = perform(&partition, work).await {
        partition.log.borrow_mut().fail(reason);
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
            .map_err(|e| format!("fdatasync failed: {e}"));
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
            let fd = flusher
                .fs_sync
                .as_ref()
                .map_or(-1, std::os::fd::AsRawFd::as_raw_fd);
            // The flusher (and with it the descriptor) lives as long as the
            // shard, which outlives this task.
            let result = glommio::executor()
                .spawn_blocking(move || nix::unistd::syncfs(fd))
                .await;
            for (partition, offset) in batch {
                finish_sync(
                    &flusher,
                    &partition,
                    offset,
                    result.map_err(|e| format!("syncfs failed: {e}")),
                );
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
    result: Result<(), String>,
) {
    {
        let mut log = partition.log.borrow_mut();
        match result {
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

async fn perform(partition: &Partition, work: FlushWork) -> Result<(), String> {
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
                    .map_err(|e| format!("write failed: {e}"))?;
                partition
                    .log
                    .borrow_mut()
                    .mark_written(segment_base, end, end_offset);
                partition.notify();
            }
            PendingOp::Seal {
                file,
                size,
                files,
                dir,
            } => {
                file.seal(size)
                    .await
                    .map_err(|e| format!("fdatasync of sealed segment failed: {e}"))?;
                glommio::executor()
                    .spawn_blocking(move || {
                        write_files_synced(&files).and_then(|()| sync_dir(&dir))
                    })
                    .await
                    .map_err(|e| format!("writing segment indexes failed: {e}"))?;
            }
        }
    }
    Ok(())
}
