//! The async shell around the transaction coordinator state machine
//! ([`ringbroker_txn::Coordinator`]): it feeds events in and performs the
//! effects that come out.
//!
//! - Requests: each gets a [`RequestId`] and a one-shot channel; the
//!   handler awaits the answer (at once, or once an append to
//!   `__transaction_state` is durable on every in-sync replica).
//! - Producer ids: the state machine asks synchronously; InitProducerId
//!   requests bring one drawn beforehand (from the controller's blocks in
//!   a cluster), used only if the machine needs a new id.
//! - Appends: records go to the local `__transaction_state` partition with
//!   acks=all, in the order the machine asked; a task reports each outcome.
//! - Markers: WriteTxnMarkers grouped by each partition's leader broker;
//!   this broker's own partitions are written without the network
//!   ([`Shard::write_markers`]), other brokers get a WriteTxnMarkers
//!   request. Outcomes go back per partition.
//! - Loading: a `__transaction_state` partition this node leads is read
//!   and replayed when the leadership arrives (at start, on failover, on a
//!   new leader epoch: the coordinator epoch markers carry); one it no
//!   longer leads is unloaded (waiting requests are answered
//!   NOT_COORDINATOR).
//!
//! A transactional id lives on the shard that owns its `__transaction_state`
//! partition (`abs(java_hash(id)) % partitions`, as in Kafka); requests
//! reaching another shard cross the mesh ([`Shard::txn_call`]).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    ApiKey, ProducerId, TopicName, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use kafka_protocol::protocol::StrBytes;
use ringbroker_protocol::errors::ErrorCode;
use ringbroker_shards::ShardId;
use ringbroker_txn::{
    AppendId, Coordinator, Effect, Event, MarkerId, MarkerOutcome, Reply, Request, RequestId,
    TopicPartition, TxnConfig, TxnMarker, TxnPartition, TxnResult,
};

use crate::config::BrokerConfig;
use crate::coordinator::{append_internal, replay_log, Timer};
use crate::messages::{MarkerWrite, ProducePart, ShardRequest, ShardResponse};
use crate::shard::{now_ms, Shard};

/// Name of the internal transaction state topic.
pub const TXN_TOPIC: &str = "__transaction_state";
/// How long this broker's own markers may take to be acknowledged.
const MARKER_TIMEOUT: Duration = Duration::from_secs(30);
/// The WriteTxnMarkers version sent to other brokers.
const WRITE_MARKERS_VERSION: i16 = 1;

/// The coordinator settings of a broker.
pub fn txn_config(
    config: &BrokerConfig,
    state_partitions: i32,
    offsets_partitions: i32,
) -> TxnConfig {
    let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    TxnConfig {
        state_partitions: state_partitions.max(1),
        max_timeout_ms: config.txn_max_timeout_ms,
        id_expiration_ms: clamp(config.txn_id_expiration_ms),
        abort_timed_out_interval_ms: clamp(config.txn_abort_check_interval_ms),
        remove_expired_interval_ms: clamp(config.txn_remove_expired_interval_ms),
        offsets_partitions: offsets_partitions.max(1),
        // Markers must reach the partition the group's TxnOffsetCommit
        // records went to: the group coordinator's own placement.
        offsets_partition_for: ringbroker_groups::records::partition_for,
        ..TxnConfig::default()
    }
}

/// The `__transaction_state` partition count: the topic's, or the
/// configured one before it exists.
pub fn state_partitions(shard: &Shard) -> i32 {
    shard
        .catalog()
        .topics
        .get(TXN_TOPIC)
        .map_or(shard.config.txn_state_partitions, |m| m.partition_count())
}

/// The `__transaction_state` partition and coordinator shard of an id.
pub fn placement(shard: &Shard, transactional_id: &str) -> (i32, ShardId) {
    let partition = ringbroker_txn::partition_for(transactional_id, state_partitions(shard));
    (partition, shard.owner(TXN_TOPIC, partition))
}

/// The topic's settings when it is created: compacted, 100 MiB segments,
/// min.insync.replicas from transaction.state.log.min.isr (at most the
/// replication factor).
pub fn topic_configs(config: &BrokerConfig, replication_factor: i16) -> BTreeMap<String, String> {
    let mut configs = BTreeMap::new();
    configs.insert("cleanup.policy".to_string(), "compact".to_string());
    configs.insert("segment.bytes".to_string(), (100 * 1024 * 1024).to_string());
    configs.insert(
        "min.insync.replicas".to_string(),
        config
            .txn_state_min_isr
            .min(i32::from(replication_factor.max(1)))
            .to_string(),
    );
    configs
}

/// One shard's transaction coordinator: the state machine and what waits
/// on it.
pub struct TxnCoordinator {
    machine: RefCell<Coordinator>,
    /// Requests waiting for their answer.
    waiting: RefCell<HashMap<RequestId, oneshot::Sender<Reply>>>,
    next_request: Cell<u64>,
    /// The leader epoch each loaded partition was loaded at.
    loaded: RefCell<HashMap<i32, i32>>,
    /// When to deliver the next Timer event.
    timer: Timer,
    /// Connections to other brokers for markers, by broker id (taken out
    /// while in use).
    peers: RefCell<HashMap<i32, crate::peer::Connection>>,
}

impl TxnCoordinator {
    /// A coordinator with no partition loaded.
    pub fn new(config: TxnConfig) -> Result<TxnCoordinator, String> {
        Ok(TxnCoordinator {
            machine: RefCell::new(Coordinator::new(config)?),
            waiting: RefCell::new(HashMap::new()),
            next_request: Cell::new(0),
            loaded: RefCell::new(HashMap::new()),
            timer: Timer::default(),
            peers: RefCell::new(HashMap::new()),
        })
    }

    /// Runs a request on this shard's coordinator and waits for its answer.
    pub async fn call(&self, shard: &Rc<Shard>, request: Request) -> Reply {
        let fallback = request.error_reply(ErrorCode::CoordinatorNotAvailable);
        // The machine asks for an id synchronously: draw one first (wasted
        // when the id already has one; ids are plentiful).
        let spare = match request {
            Request::InitProducerId(_) => Some(shard.producer_id().await),
            _ => None,
        };
        let id = RequestId(self.next_request.get() + 1);
        self.next_request.set(id.0);
        let (sender, receiver) = oneshot::channel();
        self.waiting.borrow_mut().insert(id, sender);
        self.step_with(shard, Event::Request { id, request }, spare);
        receiver.await.unwrap_or(fallback)
    }

    fn step(&self, shard: &Rc<Shard>, event: Event) {
        self.step_with(shard, event, None);
    }

    /// Feeds one event in and performs the effects.
    fn step_with(&self, shard: &Rc<Shard>, event: Event, spare: Option<Result<i64, ErrorCode>>) {
        let mut spare = spare;
        let mut ids = || -> Result<i64, ErrorCode> {
            spare
                .take()
                .unwrap_or(Err(ErrorCode::CoordinatorNotAvailable))
        };
        let effects = self.machine.borrow_mut().handle(now_ms(), event, &mut ids);
        for effect in effects {
            match effect {
                Effect::Reply { id, reply } => self.answer(id, reply),
                Effect::Append {
                    id,
                    partition,
                    records,
                } => self.append(shard, id, partition, records),
                Effect::SendMarkers {
                    id,
                    transactional_id,
                    marker,
                    not_before_ms,
                } => {
                    let shard = shard.clone();
                    glommio::spawn_local(async move {
                        send_markers(&shard, id, &transactional_id, marker, not_before_ms).await;
                    })
                    .detach();
                }
                Effect::ArmTimer { at_ms } => {
                    self.timer.arm(at_ms);
                }
            }
        }
    }

    fn answer(&self, id: RequestId, reply: Reply) {
        match self.waiting.borrow_mut().remove(&id) {
            Some(sender) => drop(sender.send(reply)),
            None => log::warn!("transaction coordinator answered unknown request {}", id.0),
        }
    }

    /// Appends now (so the log keeps the order the machine chose) and
    /// reports the outcome from a task once durable on the ISR or failed.
    fn append(
        &self,
        shard: &Rc<Shard>,
        id: AppendId,
        partition: TxnPartition,
        records: Vec<(bytes::Bytes, Option<bytes::Bytes>)>,
    ) {
        let now = now_ms();
        let part = ProducePart {
            topic: TXN_TOPIC.to_string(),
            partition: partition.0,
            records: ringbroker_txn::records::batch(&records, now),
        };
        append_internal(shard, part, now, move |shard, result| {
            shard
                .txns
                .step(shard, Event::AppendCompleted { id, result })
        });
    }

    /// Serves exactly the local `__transaction_state` partitions this node
    /// leads, each at its current leader epoch: loads those it gained or
    /// whose epoch moved, unloads those it lost.
    pub fn sync_leadership(&self, shard: &Rc<Shard>) {
        let catalog = shard.catalog();
        let me = shard.config.node_id;
        let epoch_if_leading = |index: i32| {
            catalog
                .topics
                .get(TXN_TOPIC)
                .and_then(|m| m.partition(index))
                .filter(|p| p.leader == me)
                .map(|p| p.leader_epoch)
        };
        let loaded: Vec<(i32, i32)> = self.loaded.borrow().iter().map(|(p, e)| (*p, *e)).collect();
        for (index, epoch) in loaded {
            if epoch_if_leading(index) != Some(epoch) {
                self.loaded.borrow_mut().remove(&index);
                self.step(
                    shard,
                    Event::Unload {
                        partition: TxnPartition(index),
                    },
                );
            }
        }
        let mut partitions: Vec<_> = shard
            .partitions
            .borrow()
            .values()
            .filter(|p| p.topic == TXN_TOPIC && !p.is_follower())
            .filter(|p| !self.loaded.borrow().contains_key(&p.index))
            .filter_map(|p| epoch_if_leading(p.index).map(|e| (p.clone(), e)))
            .collect();
        partitions.sort_by_key(|(p, _)| p.index);
        for (p, coordinator_epoch) in partitions {
            let partition = TxnPartition(p.index);
            self.loaded.borrow_mut().insert(p.index, coordinator_epoch);
            self.step(
                shard,
                Event::LoadStarted {
                    partition,
                    coordinator_epoch,
                },
            );
            match self.replay(shard, &p, partition) {
                Ok(()) => self.step(shard, Event::LoadCompleted { partition }),
                Err(reason) => {
                    log::error!("{TXN_TOPIC}-{}: cannot load: {reason}", p.index);
                    self.step(shard, Event::LoadFailed { partition, reason });
                }
            }
        }
    }

    /// Reads a partition from its start to its log end and replays it.
    fn replay(
        &self,
        shard: &Rc<Shard>,
        p: &ringbroker_storage::partition::Partition,
        partition: TxnPartition,
    ) -> Result<(), String> {
        replay_log(p, |bytes, offset| {
            let chunk = ringbroker_txn::loading::decode_chunk(bytes)
                .map_err(|e| format!("at offset {offset}: {e}"))?;
            if chunk.skipped > 0 {
                log::warn!(
                    "{TXN_TOPIC}-{}: skipped {} records that do not decode near offset {offset}",
                    partition.0,
                    chunk.skipped
                );
            }
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
        let loaded: Vec<i32> = self.loaded.borrow_mut().drain().map(|(p, _)| p).collect();
        for index in loaded {
            self.step(
                shard,
                Event::Unload {
                    partition: TxnPartition(index),
                },
            );
        }
    }

    fn take_peer(&self, broker: i32) -> Option<crate::peer::Connection> {
        self.peers.borrow_mut().remove(&broker)
    }

    fn return_peer(&self, broker: i32, connection: crate::peer::Connection) {
        self.peers.borrow_mut().insert(broker, connection);
    }
}

/// Writes one round of markers and reports every partition's outcome.
async fn send_markers(
    shard: &Rc<Shard>,
    id: MarkerId,
    transactional_id: &str,
    marker: TxnMarker,
    not_before_ms: i64,
) {
    let wait = not_before_ms - now_ms();
    if wait > 0 {
        let sleep = glommio::timer::sleep(Duration::from_millis(wait.unsigned_abs()));
        let stopped = shard.stopped();
        futures::pin_mut!(sleep);
        futures::pin_mut!(stopped);
        futures::future::select(sleep, stopped).await;
    }
    // Group the partitions by leader broker.
    let catalog = shard.catalog();
    let mut by_leader: BTreeMap<i32, Vec<TopicPartition>> = BTreeMap::new();
    let mut results = Vec::new();
    for tp in &marker.partitions {
        match catalog.topics.get(&tp.topic) {
            None => results.push((tp.clone(), MarkerOutcome::PartitionDeleted)),
            Some(meta) => match meta.partition(tp.partition) {
                None => results.push((tp.clone(), MarkerOutcome::PartitionDeleted)),
                Some(p) if p.leader < 0 => results.push((
                    tp.clone(),
                    MarkerOutcome::Failed(ErrorCode::LeaderNotAvailable),
                )),
                Some(p) => by_leader.entry(p.leader).or_default().push(tp.clone()),
            },
        }
    }
    drop(catalog);
    if !results.is_empty() {
        shard.txns.step(
            shard,
            Event::MarkersWritten {
                id,
                results: std::mem::take(&mut results),
            },
        );
    }
    let me = shard.config.node_id;
    let rounds = by_leader.into_iter().map(|(leader, partitions)| {
        let marker = &marker;
        async move {
            let outcomes = if leader == me {
                write_local(shard, marker, &partitions).await
            } else {
                write_remote(shard, leader, marker, &partitions).await
            };
            (partitions, outcomes)
        }
    });
    for (partitions, outcomes) in futures::future::join_all(rounds).await {
        let results: Vec<(TopicPartition, MarkerOutcome)> =
            partitions.into_iter().zip(outcomes).collect();
        for (tp, outcome) in &results {
            if let MarkerOutcome::Failed(code) = outcome {
                log::debug!(
                    "transaction {transactional_id}: marker for {}-{} failed: {code:?}",
                    tp.topic,
                    tp.partition
                );
            }
        }
        shard
            .txns
            .step(shard, Event::MarkersWritten { id, results });
    }
}

fn marker_writes(marker: &TxnMarker, partitions: &[TopicPartition]) -> Vec<MarkerWrite> {
    partitions
        .iter()
        .map(|tp| MarkerWrite {
            topic: tp.topic.clone(),
            partition: tp.partition,
            producer_id: marker.producer_id,
            producer_epoch: marker.producer_epoch,
            coordinator_epoch: marker.coordinator_epoch,
            commit: marker.result == TxnResult::Commit,
        })
        .collect()
}

fn outcome_of(code: i16) -> MarkerOutcome {
    match ErrorCode::from_code(code) {
        Some(ErrorCode::None) => MarkerOutcome::Written,
        Some(error) => MarkerOutcome::Failed(error),
        None => MarkerOutcome::Failed(ErrorCode::UnknownServerError),
    }
}

/// This broker's own partitions: written on their shards.
async fn write_local(
    shard: &Rc<Shard>,
    marker: &TxnMarker,
    partitions: &[TopicPartition],
) -> Vec<MarkerOutcome> {
    shard
        .write_markers(marker_writes(marker, partitions))
        .await
        .into_iter()
        .map(outcome_of)
        .collect()
}

/// Another broker's partitions: one WriteTxnMarkers request.
async fn write_remote(
    shard: &Rc<Shard>,
    leader: i32,
    marker: &TxnMarker,
    partitions: &[TopicPartition],
) -> Vec<MarkerOutcome> {
    let unreachable = || vec![MarkerOutcome::Failed(ErrorCode::NetworkException); partitions.len()];
    let endpoint = shard
        .catalog()
        .brokers
        .get(&leader)
        .filter(|b| !b.fenced)
        .map(|b| (b.host.clone(), b.port));
    let Some((host, port)) = endpoint else {
        return vec![MarkerOutcome::Failed(ErrorCode::NotLeaderOrFollower); partitions.len()];
    };
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in partitions {
        topics
            .entry(tp.topic.as_str())
            .or_default()
            .push(tp.partition);
    }
    let request =
        WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
            .with_producer_id(ProducerId(marker.producer_id))
            .with_producer_epoch(marker.producer_epoch)
            .with_transaction_result(marker.result == TxnResult::Commit)
            .with_coordinator_epoch(marker.coordinator_epoch)
            .with_topics(
                topics
                    .iter()
                    .map(|(name, indexes)| {
                        WritableTxnMarkerTopic::default()
                            .with_name(TopicName(StrBytes::from_string(name.to_string())))
                            .with_partition_indexes(indexes.clone())
                    })
                    .collect(),
            )]);
    let mut connection = match shard.txns.take_peer(leader) {
        Some(c) => c,
        None => match crate::peer::connect(&host, port, "ringbroker-txn-markers").await {
            Ok(c) => c,
            Err(e) => {
                log::debug!("markers to broker {leader} at {host}:{port}: {e}");
                return unreachable();
            }
        },
    };
    let response: Result<WriteTxnMarkersResponse, String> = connection
        .call(
            ApiKey::WriteTxnMarkers,
            WRITE_MARKERS_VERSION,
            &request,
            MARKER_TIMEOUT,
        )
        .await;
    let response = match response {
        Ok(r) => {
            shard.txns.return_peer(leader, connection);
            r
        }
        Err(e) => {
            log::debug!("markers to broker {leader}: {e}");
            return unreachable();
        }
    };
    let mut codes: HashMap<(String, i32), i16> = HashMap::new();
    for m in &response.markers {
        for t in &m.topics {
            for p in &t.partitions {
                codes.insert((t.name.0.to_string(), p.partition_index), p.error_code);
            }
        }
    }
    partitions
        .iter()
        .map(|tp| match codes.get(&(tp.topic.clone(), tp.partition)) {
            Some(code) => outcome_of(*code),
            None => MarkerOutcome::Failed(ErrorCode::NetworkException),
        })
        .collect()
}

impl Shard {
    /// Runs a transaction request on its coordinator shard (here, or across
    /// the mesh). `transactional_id` picks the shard; ListTransactions goes
    /// to every shard ([`Shard::list_all_transactions`]).
    pub async fn txn_call(self: &Rc<Self>, transactional_id: &str, request: Request) -> Reply {
        let (_, owner) = placement(self, transactional_id);
        if owner == self.id {
            return self.txns.call(self, request).await;
        }
        let fallback = request.error_reply(ErrorCode::CoordinatorNotAvailable);
        match self.call(owner, ShardRequest::Txn(request)).await {
            Some(ShardResponse::Txn(reply)) => reply,
            _ => fallback,
        }
    }

    /// ListTransactions on every shard's coordinator, merged.
    pub async fn list_all_transactions(
        self: &Rc<Self>,
        request: ringbroker_txn::ListRequest,
    ) -> ringbroker_txn::ListResponse {
        let others = (0..self.count)
            .map(ShardId)
            .filter(|s| *s != self.id)
            .map(|s| self.call(s, ShardRequest::Txn(Request::List(request.clone()))));
        let (local, remote) = futures::join!(
            self.txns.call(self, Request::List(request.clone())),
            futures::future::join_all(others)
        );
        let mut merged = ringbroker_txn::ListResponse {
            error: ErrorCode::None,
            unknown_state_filters: Vec::new(),
            transactions: Vec::new(),
        };
        let mut merge = |reply: Option<Reply>| match reply {
            Some(Reply::List(list)) => {
                if merged.error == ErrorCode::None {
                    merged.error = list.error;
                }
                merged.unknown_state_filters = list.unknown_state_filters;
                merged.transactions.extend(list.transactions);
            }
            _ => merged.error = ErrorCode::CoordinatorNotAvailable,
        };
        merge(Some(local));
        for reply in remote {
            merge(match reply {
                Some(ShardResponse::Txn(reply)) => Some(reply),
                _ => None,
            });
        }
        merged.transactions.sort();
        merged
    }

    /// Creates `__transaction_state` when it does not exist (the first
    /// FindCoordinator for a transactional id, as Kafka): replication
    /// factor transaction.state.log.replication.factor, at most the live
    /// brokers.
    pub async fn create_txn_topic(self: &Rc<Self>) {
        if self.catalog().topics.contains_key(TXN_TOPIC) {
            return;
        }
        let live = self.catalog().live_brokers().len().max(1);
        let factor = self
            .config
            .txn_state_replication_factor
            .min(i16::try_from(live).unwrap_or(i16::MAX))
            .max(1);
        let request = crate::messages::AdminRequest::CreateTopics {
            topics: vec![crate::messages::NewTopic {
                name: TXN_TOPIC.to_string(),
                partitions: self.config.txn_state_partitions,
                replication_factor: factor,
                assignments: Vec::new(),
                configs: topic_configs(&self.config, factor),
            }],
            validate_only: false,
        };
        for result in self.admin(request).await {
            if result.error_code != 0 && result.error_code != ErrorCode::TopicAlreadyExists.code() {
                log::warn!(
                    "creating {TXN_TOPIC}: {} ({})",
                    result.error_code,
                    result.message.unwrap_or_default()
                );
            }
        }
    }

    /// Writes markers to partitions on any shard of this broker and waits
    /// for each to be acknowledged by the in-sync replicas; the error code
    /// per marker, in order. A marker in a `__consumer_offsets` partition
    /// completes the group's transactional offsets once written.
    pub async fn write_markers(self: &Rc<Self>, markers: Vec<MarkerWrite>) -> Vec<i16> {
        let this = self.clone();
        self.scatter(
            markers,
            |m| (m.topic.as_str(), m.partition),
            ShardRequest::WriteMarkers,
            |r| match r {
                ShardResponse::Markers(v) => Some(v),
                _ => None,
            },
            async move |markers| this.write_markers_local(markers).await,
            ErrorCode::NotLeaderOrFollower.code(),
        )
        .await
    }

    /// [`Shard::write_markers`] for partitions this shard owns.
    pub async fn write_markers_local(self: &Rc<Self>, markers: Vec<MarkerWrite>) -> Vec<i16> {
        let now = now_ms();
        let appends: Vec<_> = markers
            .iter()
            .map(|m| self.append_marker_local(m, now))
            .collect();
        let deadline = Instant::now() + MARKER_TIMEOUT;
        let waits = appends.into_iter().map(|appended| async move {
            match appended {
                Ok(appended) => appended.wait(-1, deadline).await.map_err(|f| f.error_code),
                Err(failed) => Err(failed.error_code),
            }
        });
        let outcomes = futures::future::join_all(waits).await;
        let mut codes = Vec::with_capacity(markers.len());
        for (m, outcome) in markers.iter().zip(outcomes) {
            match outcome {
                Ok(()) => {
                    if m.topic == crate::coordinator::OFFSETS_TOPIC {
                        self.groups
                            .complete_txn(self, m.partition, m.producer_id, m.commit);
                    }
                    codes.push(0);
                }
                Err(code) => codes.push(code),
            }
        }
        codes
    }
}

/// Delivers the coordinator's timer events until the shard stops.
pub async fn run_timers(shard: Rc<Shard>) {
    shard
        .txns
        .timer
        .run(&shard, || shard.txns.step(&shard, Event::Timer))
        .await;
}
