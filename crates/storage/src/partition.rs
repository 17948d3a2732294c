//! A partition as its owner shard holds it: the log, the partition state
//! above the log (high watermark, last stable offset, leader epoch), and
//! the event that wakes produce and fetch waiters when offsets advance.
//!
//! The log knows what it holds (start, end written, durable); what
//! consumers may read is the partition's: the high watermark follows the
//! log end while this replica is the only one in sync, and is set by
//! replication once others are.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;

use crate::log::{AppendError, Appended, PartitionLog};
use crate::txn::AbortedTxn;

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

/// What the leader of a replicated partition knows of one follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FollowerState {
    /// The offset of its last fetch: everything below is durable there.
    pub offset: i64,
    /// When it was last caught up (ms): it fetched from at or past this
    /// log's end, or from at or past where this log ended at its
    /// previous fetch (then it was caught up as of that fetch; Kafka's
    /// rule, so a follower under steady load counts as caught up).
    pub caught_up_ms: i64,
    /// This log's end and the time at its previous fetch.
    pub previous_fetch: (i64, i64),
}

/// The leader's view of its replicas (leader of a replicated partition).
#[derive(Clone, Debug, Default)]
pub struct LeaderState {
    /// This broker.
    pub me: i32,
    /// The in-sync replicas, from the cluster metadata.
    pub isr: Vec<i32>,
    /// Every follower that has fetched, by broker id.
    pub followers: HashMap<i32, FollowerState>,
    /// When this replica became leader (ms): followers that have not
    /// fetched since count as caught up then.
    pub since_ms: i64,
}

impl LeaderState {
    /// The offset every in-sync replica has made durable, given the
    /// leader's own durable offset; `None` while an in-sync follower has
    /// not fetched yet.
    fn in_sync_offset(&self, durable: i64) -> Option<i64> {
        let mut offset = durable;
        for replica in self.isr.iter().filter(|r| **r != self.me) {
            offset = offset.min(self.followers.get(replica)?.offset);
        }
        Some(offset)
    }
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
    /// Set while this replica leads a replicated partition.
    leader_state: RefCell<Option<LeaderState>>,
}

impl Partition {
    /// Wraps an opened log (alone in sync: its high watermark follows its
    /// end). Transactions the log's recovery saw decided stay until the
    /// high watermark moves (a replicated partition opened from disk starts
    /// it at the log start: they may still hold the LSO back).
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
            leader_state: RefCell::new(None),
        }
    }

    /// The offset below which consumers may read. On the leader of a
    /// replicated partition: the offset every in-sync replica has made
    /// durable (never moving back).
    pub fn high_watermark(&self) -> i64 {
        let log = self.log.borrow();
        let log_end = log.log_end_offset();
        match self.high_watermark.get() {
            HighWatermark::FollowsLogEnd => log_end,
            HighWatermark::Replicated(hw) => {
                let in_sync = self
                    .leader_state
                    .borrow()
                    .as_ref()
                    .and_then(|s| s.in_sync_offset(log.durable_offset()));
                hw.max(in_sync.unwrap_or(hw)).min(log_end)
            }
        }
    }

    /// Records the high watermark the leader computes now (and lets the
    /// log forget batch ends below it); wakes waiters when it moved.
    pub fn advance_high_watermark(&self) {
        if self.leader_state.borrow().is_none() {
            return;
        }
        if let HighWatermark::Replicated(old) = self.high_watermark.get() {
            let hw = self.high_watermark();
            if hw > old {
                self.high_watermark.set(HighWatermark::Replicated(hw));
                let mut log = self.log.borrow_mut();
                log.release_batch_ends_below(hw);
                log.on_high_watermark(hw);
                drop(log);
                self.notify();
            }
        }
    }

    /// Makes this replica the leader of a replicated partition with
    /// in-sync replicas `isr`. Its high watermark starts where it stood
    /// (a follower's, from its leader) or, for a log that was alone until
    /// now, at its end.
    pub fn lead_replicated(&self, me: i32, isr: Vec<i32>, now_ms: i64) {
        self.log.borrow_mut().begin_epoch(self.leader_epoch.get());
        if self.high_watermark.get() == HighWatermark::FollowsLogEnd {
            let end = {
                let mut log = self.log.borrow_mut();
                log.track_batch_ends(true);
                log.log_end_offset()
            };
            self.high_watermark.set(HighWatermark::Replicated(end));
        }
        let mut state = self.leader_state.borrow_mut();
        match state.as_mut() {
            Some(s) => {
                s.me = me;
                s.isr = isr;
            }
            None => {
                *state = Some(LeaderState {
                    me,
                    isr,
                    followers: HashMap::new(),
                    since_ms: now_ms,
                })
            }
        }
        drop(state);
        self.advance_high_watermark();
        self.notify();
    }

    /// A replicated partition opened from disk: none of what it holds is
    /// known to be committed (the log may end with records the rest of the
    /// ISR never got), so its high watermark starts at the log start and
    /// moves only as replication confirms the log: from the leader's fetch
    /// answers on a follower, from the ISR's fetches on a leader. Consumers
    /// of a leader that restarts read once its ISR has fetched.
    pub fn open_replicated(&self) {
        let start = {
            let mut log = self.log.borrow_mut();
            log.track_batch_ends(true);
            let start = log.log_start_offset();
            log.on_high_watermark(start);
            start
        };
        self.high_watermark.set(HighWatermark::Replicated(start));
    }

    /// Makes this replica a follower (its high watermark comes from the
    /// leader's fetch responses).
    pub fn follow(&self) {
        if self.leader_state.borrow_mut().take().is_some() || self.is_alone() {
            let hw = self.high_watermark();
            self.log.borrow_mut().track_batch_ends(true);
            self.high_watermark.set(HighWatermark::Replicated(hw));
            self.notify();
        }
    }

    fn is_alone(&self) -> bool {
        self.high_watermark.get() == HighWatermark::FollowsLogEnd
    }

    /// True while this replica leads a replicated partition.
    pub fn leads_replicated(&self) -> bool {
        self.leader_state.borrow().is_some()
    }

    /// True when this replica follows another broker's leadership (only
    /// the replica fetcher appends to it).
    pub fn is_follower(&self) -> bool {
        self.leader_state.borrow().is_none() && !self.is_alone()
    }

    /// The size of the ISR, when this replica leads a replicated
    /// partition.
    pub fn isr_len(&self) -> Option<usize> {
        self.leader_state.borrow().as_ref().map(|s| s.isr.len())
    }

    /// The leader's view of its followers, when it leads.
    pub fn leader_state(&self) -> Option<LeaderState> {
        self.leader_state.borrow().clone()
    }

    /// A follower fetched from `offset` (the leader serves it): records
    /// its progress, moves the high watermark and wakes producers waiting
    /// for acks=all.
    pub fn record_follower_fetch(&self, replica: i32, offset: i64, now_ms: i64) {
        let log_end = self.log.borrow().log_end_offset();
        {
            let mut state = self.leader_state.borrow_mut();
            let Some(state) = state.as_mut() else {
                return;
            };
            if offset > log_end {
                // Past this log's end: the follower acts on another
                // leadership's log; nothing it holds is known here.
                return;
            }
            let entry = state.followers.entry(replica).or_insert(FollowerState {
                offset,
                caught_up_ms: -1,
                previous_fetch: (i64::MAX, now_ms),
            });
            entry.offset = offset;
            let (previous_end, previous_ms) = entry.previous_fetch;
            if offset >= log_end {
                entry.caught_up_ms = now_ms;
            } else if offset >= previous_end {
                entry.caught_up_ms = entry.caught_up_ms.max(previous_ms);
            }
            entry.previous_fetch = (log_end, now_ms);
        }
        self.advance_high_watermark();
        self.notify();
    }

    /// The last stable offset: the high watermark held back by the first
    /// transaction not decided below it (never below the log start). What
    /// read_committed consumers read up to; a valid read bound for
    /// [`PartitionLog::plan_read`].
    pub fn last_stable_offset(&self) -> i64 {
        let high_watermark = self.high_watermark();
        self.log.borrow().last_stable_offset(high_watermark)
    }

    /// The aborted transactions a read_committed fetch of
    /// `[fetch_offset, upper)` reports (those whose range overlaps it; see
    /// [`PartitionLog::aborted_transactions`]).
    pub fn aborted_transactions(&self, fetch_offset: i64, upper: i64) -> Vec<AbortedTxn> {
        self.log.borrow().aborted_transactions(fetch_offset, upper)
    }

    /// The flusher wrote appended batches: a high watermark that follows
    /// the log end moved with it.
    pub fn on_log_written(&self) {
        if self.is_alone() {
            let mut log = self.log.borrow_mut();
            let end = log.log_end_offset();
            log.on_high_watermark(end);
        }
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
        log.on_high_watermark(next);
        self.high_watermark.set(HighWatermark::Replicated(next));
        drop(log);
        self.notify();
    }

    /// Makes the high watermark follow the log end again (this replica is
    /// alone in sync).
    pub fn follow_log_end(&self) {
        self.high_watermark.set(HighWatermark::FollowsLogEnd);
        let mut log = self.log.borrow_mut();
        log.track_batch_ends(false);
        let end = log.log_end_offset();
        log.on_high_watermark(end);
        drop(log);
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

    /// Appends a COMMIT (`commit`) or ABORT marker for `producer_id` as
    /// the leader (WriteTxnMarkers), stamped with the current leader epoch
    /// (see [`PartitionLog::append_marker`]). Like [`Partition::append`],
    /// the caller schedules the flusher and waits for the acks it needs.
    pub fn append_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
        now_ms: i64,
    ) -> Result<Appended, AppendError> {
        self.log.borrow_mut().append_marker(
            producer_id,
            producer_epoch,
            coordinator_epoch,
            commit,
            now_ms,
            self.leader_epoch.get(),
        )
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
