//! A partition as its owner shard holds it: the log, the partition state
//! above the log (high watermark, last stable offset, leader epoch), and
//! the event that wakes produce and fetch waiters when offsets advance.
//!
//! The log knows what it holds (start, end written, durable); what
//! consumers may read is the partition's: the high watermark follows the
//! log end while this replica is the only one in sync, and is set by
//! replication once others are.

use std::cell::{Cell, RefCell};
use std::time::Instant;

use bytes::Bytes;

use crate::log::{AppendError, Appended, PartitionLog};

/// How a partition's high watermark moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HighWatermark {
    /// This replica is the only one in sync: the high watermark is the log
    /// end offset (what is written is readable).
    FollowsLogEnd,
    /// Set by replication: the offset every in-sync replica has made
    /// durable.
    Replicated(i64),
}

/// One partition, owned by exactly one shard (never shared across threads).
pub struct Partition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub index: i32,
    /// The log. Borrowed only synchronously, never across an `.await`.
    pub log: RefCell<PartitionLog>,
    /// Notified whenever the high watermark or durable offset advances, or
    /// the partition fails.
    pub progress: event_listener::Event,
    /// True while the partition sits in the flusher's queue.
    pub queued: Cell<bool>,
    /// Set once the topic is deleted: waiters give up.
    pub deleted: Cell<bool>,
    /// True while an fdatasync of this partition is in flight.
    pub syncing: Cell<bool>,
    high_watermark: Cell<HighWatermark>,
    leader_epoch: Cell<i32>,
}

impl Partition {
    /// Wraps an opened log.
    pub fn new(topic: String, index: i32, log: PartitionLog) -> Partition {
        Partition {
            topic,
            index,
            log: RefCell::new(log),
            progress: event_listener::Event::new(),
            queued: Cell::new(false),
            deleted: Cell::new(false),
            syncing: Cell::new(false),
            high_watermark: Cell::new(HighWatermark::FollowsLogEnd),
            leader_epoch: Cell::new(0),
        }
    }

    /// The offset below which consumers may read.
    pub fn high_watermark(&self) -> i64 {
        let log_end = self.log.borrow().log_end_offset();
        match self.high_watermark.get() {
            HighWatermark::FollowsLogEnd => log_end,
            HighWatermark::Replicated(hw) => hw.min(log_end),
        }
    }

    /// The last stable offset (no transactions yet: the high watermark).
    pub fn last_stable_offset(&self) -> i64 {
        self.high_watermark()
    }

    /// Sets the high watermark (replication). It never moves back, except
    /// when a new leader's history cuts this log; reads are bounded by it
    /// from now on, so the log keeps batch ends above it.
    pub fn set_high_watermark(&self, offset: i64) {
        let mut log = self.log.borrow_mut();
        log.track_batch_ends(true);
        let offset = offset.min(log.log_end_offset());
        let current = match self.high_watermark.get() {
            HighWatermark::Replicated(hw) => hw,
            HighWatermark::FollowsLogEnd => i64::MIN,
        };
        let next = offset.max(current);
        log.release_batch_ends_below(next);
        self.high_watermark.set(HighWatermark::Replicated(next));
        drop(log);
        self.notify();
    }

    /// Makes the high watermark follow the log end again (this replica is
    /// alone in sync).
    pub fn follow_log_end(&self) {
        self.high_watermark.set(HighWatermark::FollowsLogEnd);
        self.log.borrow_mut().track_batch_ends(false);
        self.notify();
    }

    /// How the high watermark moves now.
    pub fn high_watermark_mode(&self) -> HighWatermark {
        self.high_watermark.get()
    }

    /// The leader epoch this replica appends with.
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.get()
    }

    /// Adopts a leader epoch from the cluster metadata; it never goes back.
    pub fn set_leader_epoch(&self, epoch: i32) {
        if epoch > self.leader_epoch.get() {
            self.leader_epoch.set(epoch);
        }
    }

    /// Appends `records` as the leader, stamped with the current leader
    /// epoch (see [`PartitionLog::append`]).
    pub fn append(&self, records: &Bytes, now_ms: i64) -> Result<Appended, AppendError> {
        self.log
            .borrow_mut()
            .append(records, now_ms, self.leader_epoch.get())
    }

    /// Waits until `done(self)` holds, the partition fails or is deleted,
    /// or `deadline` passes. Returns whether `done` held.
    pub async fn wait_until(&self, deadline: Instant, done: impl Fn(&Partition) -> bool) -> bool {
        loop {
            let listener = self.progress.listen();
            if done(self) {
                return true;
            }
            if self.log.borrow().failure().is_some() || self.deleted.get() {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let timeout = glommio::timer::sleep(deadline - now);
            futures::pin_mut!(timeout);
            futures::pin_mut!(listener);
            futures::future::select(listener, timeout).await;
        }
    }

    /// True when the log is closed and its files no longer change: all it
    /// holds is written and durable, or it failed; no sync is in flight.
    pub fn is_settled(&self) -> bool {
        let log = self.log.borrow();
        !self.syncing.get() && (log.failure().is_some() || log.is_settled())
    }

    /// Wakes everyone waiting on this partition.
    pub fn notify(&self) {
        self.progress.notify(usize::MAX);
    }
}
