//! A partition as its owner shard holds it: the log plus the event that
//! wakes produce and fetch waiters when its offsets advance.

use std::cell::{Cell, RefCell};
use std::time::Instant;

use crate::log::PartitionLog;

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
        }
    }

    /// Waits until `done(log)` holds, the partition fails or is deleted, or
    /// `deadline` passes. Returns whether `done` held.
    pub async fn wait_until(
        &self,
        deadline: Instant,
        done: impl Fn(&PartitionLog) -> bool,
    ) -> bool {
        loop {
            let listener = self.progress.listen();
            {
                let log = self.log.borrow();
                if done(&log) {
                    return true;
                }
                if log.failure().is_some() || self.deleted.get() {
                    return false;
                }
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
