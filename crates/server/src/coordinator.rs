//! The async shell around the group coordinator state machine
//! ([`ringbroker_groups::Coordinator`]): it feeds events in and performs
//! the effects that come out.
//!
//! - Requests: each gets a [`RequestId`] and a one-shot channel; the
//!   handler awaits the answer, which comes when the state machine emits
//!   it (at once, after a rebalance, or after an append is durable).
//! - Appends: records go to the local `__consumer_offsets` partition with
//!   acks=all, in the order the state machine asked for them; a task waits
//!   for each to be durable and reports the outcome.
//! - Timers: one task sleeps until the deadline the state machine last
//!   asked for and delivers [`Event::Timer`].
//! - Transactions: TxnOffsetCommit appends a transactional batch of the
//!   producer; the transaction side calls [`GroupCoordinator::complete_txn`]
//!   once its marker is durable in the offsets partition.
//! - Loading: at start every local offsets partition is read and replayed;
//!   a read error fails that partition (its groups are answered
//!   COORDINATOR_NOT_AVAILABLE) and is logged. At shutdown every partition
//!   is unloaded, so waiting requests are answered NOT_COORDINATOR.
//!
//! A group lives on the shard that owns its `__consumer_offsets` partition
//! (`java_hash(group) % partitions`, as in Kafka); requests reaching
//! another shard cross the mesh ([`crate::shard::Shard::group_call`]).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use ringbroker_groups::records;
use ringbroker_groups::{
    AppendId, Coordinator, CoordinatorConfig, Effect, Event, OffsetsPartition, Reply, Request,
    RequestId, TxnProducer,
};
use ringbroker_protocol::errors::ErrorCode;
use ringbroker_shards::ShardId;

use crate::config::BrokerConfig;
use crate::messages::ProducePart;
use crate::shard::{now_ms, Shard};

/// Name of the internal offsets topic.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// How long an acks=all append to `__consumer_offsets` may take.
const PERSIST_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes read from an offsets partition at a time while loading (a larger
/// batch is read whole).
const LOAD_CHUNK_BYTES: usize = 8 << 20;

/// The coordinator settings of a broker whose `__consumer_offsets` has
/// `offsets_partitions` partitions.
pub fn coordinator_config(config: &BrokerConfig, offsets_partitions: i32) -> CoordinatorConfig {
    let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    CoordinatorConfig {
        offsets_partitions: offsets_partitions.max(1),
        session_timeout_min_ms: config.group_min_session_timeout_ms,
        session_timeout_max_ms: config.group_max_session_timeout_ms,
        initial_rebalance_delay_ms: clamp(config.group_initial_rebalance_delay_ms),
        offsets_retention_ms: clamp(config.offsets_retention_minutes).saturating_mul(60_000),
        offsets_retention_check_interval_ms: clamp(config.offsets_retention_check_interval_ms),
        ..CoordinatorConfig::default()
    }
}

/// The `__consumer_offsets` partition and coordinator shard of a group.
pub fn placement(shard: &Shard, group: &str) -> (i32, ShardId) {
    let partitions = shard
        .catalog()
        .topics
        .get(OFFSETS_TOPIC)
        .map_or(shard.config.offsets_topic_num_partitions, |m| {
            m.partition_count()
        });
    let partition = records::partition_for(group, partitions);
    (partition, shard.owner(OFFSETS_TOPIC, partition))
}

/// One shard's coordinator: the state machine and what waits on it.
pub struct GroupCoordinator {
    machine: RefCell<Coordinator>,
    /// Requests waiting for their answer.
    waiting: RefCell<HashMap<RequestId, oneshot::Sender<Reply>>>,
    next_request: Cell<u64>,
    /// When to deliver the next Timer event.
    timer: Timer,
}

impl GroupCoordinator {
    /// A coordinator with no partition loaded.
    pub fn new(config: CoordinatorConfig) -> Result<GroupCoordinator, String> {
        let seed = u64::from_le_bytes(
            uuid::Uuid::new_v4().as_bytes()[..8]
                .try_into()
                .unwrap_or([7; 8]),
        );
        Ok(GroupCoordinator {
            machine: RefCell::new(Coordinator::new(config, seed)?),
            waiting: RefCell::new(HashMap::new()),
            next_request: Cell::new(0),
            timer: Timer::default(),
        })
    }

    /// Runs a request on this shard's coordinator and waits for its answer.
    pub async fn call(&self, shard: &Rc<Shard>, request: Request) -> Reply {
        let fallback = request.error_reply(ErrorCode::CoordinatorNotAvailable);
        let id = RequestId(self.next_request.get() + 1);
        self.next_request.set(id.0);
        let (sender, receiver) = oneshot::channel();
        self.waiting.borrow_mut().insert(id, sender);
        self.step(shard, Event::Request { id, request });
        receiver.await.unwrap_or(fallback)
    }

    /// Feeds one event in and performs the effects.
    fn step(&self, shard: &Rc<Shard>, event: Event) {
        let effects = self.machine.borrow_mut().handle(now_ms(), event);
        for effect in effects {
            match effect {
                Effect::Reply { id, reply } => self.answer(id, reply),
                Effect::Append {
                    id,
                    partition,
                    records,
                    producer,
                } => self.append(shard, id, partition, records, producer),
                Effect::ArmTimer { at_ms } => {
                    self.timer.arm(at_ms);
                }
            }
        }
    }

    fn answer(&self, id: RequestId, reply: Reply) {
        match self.waiting.borrow_mut().remove(&id) {
            // The handler may be gone (its connection closed): nothing to do.
            Some(sender) => drop(sender.send(reply)),
            None => log::warn!("group coordinator answered unknown request {}", id.0),
        }
    }

    /// Appends now (so the log keeps the order the state machine chose)
    /// and reports the outcome from a task once durable or failed. With a
    /// producer the batch is transactional (TxnOffsetCommit), base
    /// sequence -1 so the log checks no sequence.
    fn append(
        &self,
        shard: &Rc<Shard>,
        id: AppendId,
        partition: OffsetsPartition,
        records: Vec<(bytes::Bytes, Option<bytes::Bytes>)>,
        producer: Option<TxnProducer>,
    ) {
        let now = now_ms();
        let part = ProducePart {
            topic: OFFSETS_TOPIC.to_string(),
            partition: partition.0,
            records: records::batch_of(&records, now, producer),
        };
        append_internal(shard, part, now, move |shard, result| {
            shard
                .groups
                .step(shard, Event::AppendCompleted { id, result })
        });
    }

    /// The transaction of `producer_id` ended and its marker (COMMIT when
    /// `commit`, else ABORT) is durable in `__consumer_offsets` partition
    /// `partition`: the producer's pending transactional offsets of that
    /// partition's groups become committed offsets or are dropped. Call it
    /// on the shard that owns the partition (`shard.owner(OFFSETS_TOPIC,
    /// partition)`), after the marker append is durable; a partition not
    /// loaded here is ignored (a later load replays the marker).
    pub fn complete_txn(&self, shard: &Rc<Shard>, partition: i32, producer_id: i64, commit: bool) {
        if shard.owner(OFFSETS_TOPIC, partition) != shard.id {
            log::warn!(
                "{OFFSETS_TOPIC}-{partition}: transaction marker of producer {producer_id} reported on shard {:?}, which does not own the partition",
                shard.id
            );
        }
        self.step(
            shard,
            Event::TxnCompleted {
                partition: OffsetsPartition(partition),
                producer_id,
                commit,
            },
        );
    }

    /// Loads every local `__consumer_offsets` partition this node leads
    /// (startup).
    pub fn load(&self, shard: &Rc<Shard>) {
        self.sync_leadership(shard);
    }

    /// Serves exactly the local `__consumer_offsets` partitions this node
    /// leads: loads those it gained (replaying their records), unloads
    /// those it lost (waiting requests are answered NOT_COORDINATOR).
    pub fn sync_leadership(&self, shard: &Rc<Shard>) {
        let catalog = shard.catalog();
        let me = shard.config.node_id;
        let leads = |index: i32| {
            catalog
                .topics
                .get(OFFSETS_TOPIC)
                .and_then(|m| m.partition(index))
                .is_some_and(|p| p.leader == me)
        };
        let loaded: std::collections::HashSet<i32> = self
            .machine
            .borrow()
            .partitions()
            .into_iter()
            .map(|(p, _)| p.0)
            .collect();
        for index in loaded.iter().copied().filter(|i| !leads(*i)) {
            self.step(
                shard,
                Event::Unload {
                    partition: OffsetsPartition(index),
                },
            );
        }
        let mut partitions: Vec<_> = shard
            .partitions
            .borrow()
            .values()
            .filter(|p| p.topic == OFFSETS_TOPIC && leads(p.index) && !loaded.contains(&p.index))
            .cloned()
            .collect();
        partitions.sort_by_key(|p| p.index);
        for p in partitions {
            let partition = OffsetsPartition(p.index);
            self.step(shard, Event::LoadStarted { partition });
            match self.replay(shard, &p, partition) {
                Ok(()) => self.step(shard, Event::LoadCompleted { partition }),
                // Logged by the state machine, with the reason.
                Err(reason) => self.step(shard, Event::LoadFailed { partition, reason }),
            }
        }
    }

    /// Reads a partition from its start to its log end and replays it.
    fn replay(
        &self,
        shard: &Rc<Shard>,
        p: &ringbroker_storage::partition::Partition,
        partition: OffsetsPartition,
    ) -> Result<(), String> {
        replay_log(p, |bytes, offset| {
            let chunk = ringbroker_groups::loading::decode_chunk(bytes)
                .map_err(|e| format!("at offset {offset}: {e}"))?;
            self.step(
                shard,
                Event::Replay {
                    partition,
                    entries: chunk.entries,
                },
            );
            Ok(chunk.next_offset)
        })
    }

    /// Unloads every partition (shutdown): waiting requests are answered.
    pub fn unload_all(&self, shard: &Rc<Shard>) {
        let partitions = self.machine.borrow().partitions();
        for (partition, _) in partitions {
            self.step(shard, Event::Unload { partition });
        }
    }
}

/// Delivers the coordinator's timer events until the shard stops.
pub async fn run_timers(shard: Rc<Shard>) {
    shard
        .groups
        .timer
        .run(&shard, || shard.groups.step(&shard, Event::Timer))
        .await;
}

/// The one deadline a coordinator state machine asked for.
#[derive(Default)]
pub struct Timer {
    at: Cell<Option<i64>>,
    /// Fired when `at` changes.
    moved: event_listener::Event,
}

impl Timer {
    /// Replaces the deadline (ms).
    pub fn arm(&self, at_ms: i64) {
        self.at.set(Some(at_ms));
        self.moved.notify(usize::MAX);
    }

    /// Calls `fire` at each deadline until the shard stops.
    pub async fn run(&self, shard: &Shard, fire: impl Fn()) {
        loop {
            let moved = self.moved.listen();
            if shard.is_stopping() {
                return;
            }
            match self.at.get() {
                Some(at) if at <= now_ms() => {
                    self.at.set(None);
                    fire();
                }
                Some(at) => {
                    let wait = Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0));
                    let sleep = glommio::timer::sleep(wait);
                    futures::pin_mut!(sleep);
                    let stop = shard.stopped();
                    futures::pin_mut!(stop);
                    futures::future::select(moved, futures::future::select(sleep, stop)).await;
                }
                None => {
                    let stop = shard.stopped();
                    futures::pin_mut!(stop);
                    futures::future::select(moved, stop).await;
                }
            }
        }
    }
}

/// Appends a coordinator's records to a local internal-topic partition
/// now (so the log keeps the order the state machine chose) with acks=all,
/// and calls `report` from a task (never inside the caller's step) once
/// they are durable on the in-sync replicas, or with the error.
pub fn append_internal(
    shard: &Rc<Shard>,
    part: ProducePart,
    now: i64,
    report: impl FnOnce(&Rc<Shard>, Result<(), ErrorCode>) + 'static,
) {
    let appended = shard.append_local(-1, &part, now);
    let shard = shard.clone();
    glommio::spawn_local(async move {
        futures_lite::future::yield_now().await;
        let result = match appended {
            Ok(appended) => appended.wait(-1, Instant::now() + PERSIST_TIMEOUT).await,
            Err(failed) => Err(failed),
        };
        let result = result.map_err(|failed| {
            log::warn!(
                "{}-{}: append failed: {} ({})",
                part.topic,
                part.partition,
                failed.error_code,
                failed.error_message.as_deref().unwrap_or("")
            );
            ErrorCode::from_code(failed.error_code).unwrap_or(ErrorCode::UnknownServerError)
        });
        report(&shard, result);
    })
    .detach();
}

/// Reads a partition from its start to its log end in chunks (an internal
/// topic being loaded: to the log end, since a new leader's high watermark
/// can trail what the previous leader acknowledged, and a leader never
/// loses what it holds); `replay` decodes a chunk read at an offset and
/// returns where the next one starts. A read error, a gap or a chunk that
/// makes no progress is an error, never skipped.
pub fn replay_log(
    p: &ringbroker_storage::partition::Partition,
    mut replay: impl FnMut(&[u8], i64) -> Result<i64, String>,
) -> Result<(), String> {
    let (mut offset, end) = {
        let log = p.log.borrow();
        (log.log_start_offset(), log.log_end_offset())
    };
    while offset < end {
        let slice = p
            .log
            .borrow()
            .read(offset, LOAD_CHUNK_BYTES)
            .map_err(|e| format!("reading offset {offset}: {e:?}"))?;
        let Some(slice) = slice else {
            return Err(format!(
                "no data at offset {offset} below the log end {end}"
            ));
        };
        let bytes = slice
            .read_to_vec()
            .map_err(|e| format!("reading offset {offset}: {e}"))?;
        let next = replay(&bytes, offset)?;
        if next <= offset {
            return Err(format!("no progress at offset {offset}"));
        }
        offset = next;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_settings_become_coordinator_settings() {
        let broker = BrokerConfig {
            group_min_session_timeout_ms: 1_000,
            group_initial_rebalance_delay_ms: 0,
            offsets_retention_minutes: 2,
            ..BrokerConfig::default()
        };
        let config = coordinator_config(&broker, 7);
        assert_eq!(config.offsets_partitions, 7);
        assert_eq!(config.session_timeout_min_ms, 1_000);
        assert_eq!(config.session_timeout_max_ms, 1_800_000);
        assert_eq!(config.initial_rebalance_delay_ms, 0);
        assert_eq!(config.offsets_retention_ms, 120_000);
        assert_eq!(config.offsets_retention_check_interval_ms, 600_000);
        assert_eq!(config.validate(), Ok(()));
        let huge = BrokerConfig {
            offsets_retention_minutes: u64::MAX,
            ..BrokerConfig::default()
        };
        assert_eq!(coordinator_config(&huge, 0).offsets_retention_ms, i64::MAX);
        assert_eq!(coordinator_config(&huge, 0).offsets_partitions, 1);
    }
}
