//! One shard: the partitions it owns, its copy of the catalog, its flusher,
//! and the routing of partition work to owner shards.
//!
//! Requests whose partitions are all local run as direct calls; the others
//! are split per owner, sent over the mesh, and merged back in request order.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringbroker_shards::{envelope, placement, stable_hash, MeshEndpoint, ShardId};

use crate::catalog::{Catalog, TopicMeta};
use crate::config::{
    topic_config_from_overrides, BrokerConfig, DynamicBrokerConfigs, TimestampType, TopicConfig,
};
use crate::messages::*;
use crate::storage_error::{append_error_code, read_error_code, storage_error_code};
use ringbroker_groups::{ListResponse, Reply, Request};
use ringbroker_protocol::errors::ErrorCode;
use ringbroker_protocol::limits::SHARD_PENDING_WRITE_BYTES_MAX;
use ringbroker_storage::flusher::Flusher;
use ringbroker_storage::log::{AppendError, Appended, LogConfig, PartitionLog};
use ringbroker_storage::partition::Partition;
use ringbroker_storage::writer::WriteMode;

/// Counters a shard keeps about itself.
#[derive(Default)]
pub struct ShardStats {
    /// Record bytes sent to sockets with sendfile.
    pub zero_copy_bytes: Cell<u64>,
    /// Requests handled.
    pub requests: Cell<u64>,
    /// Connections accepted.
    pub connections: Cell<u64>,
    /// Connections open now.
    pub open_connections: Cell<u64>,
    /// Requests being handled now.
    pub inflight: Cell<u64>,
    /// Partitions of followers' fetches that arrived on their owner shard.
    pub replica_parts_local: Cell<u64>,
    /// Partitions of followers' fetches that crossed the mesh to their
    /// owner (the cross-core replication path).
    pub replica_parts_remote: Cell<u64>,
}

/// Records appended to a local partition, not yet acknowledged.
pub struct LocalAppend {
    /// The partition.
    pub partition: Rc<Partition>,
    /// Offset of the last record appended.
    pub last_offset: i64,
    /// The answer once acknowledged.
    pub result: ProduceResult,
    /// Appended as the leader of a replicated partition: acks=all waits
    /// for the in-sync replicas.
    pub replicated: bool,
    /// The topic's min.insync.replicas.
    pub min_insync: i32,
}

impl LocalAppend {
    /// Waits until the records reach the acks level (-1: durable here and,
    /// for a replicated partition, on every in-sync replica: below the
    /// high watermark; 1: written) or `deadline`; the error to answer
    /// otherwise.
    pub async fn wait(&self, acks: i16, deadline: Instant) -> Result<(), ProduceResult> {
        let last_offset = self.last_offset;
        let replicated = acks == -1 && self.replicated;
        let min_insync = self.min_insync.max(1) as usize;
        let reached = self
            .partition
            .wait_until(deadline, |p| {
                if replicated {
                    // Also done (and failed below) when leadership is lost
                    // or the ISR falls under min.insync.replicas.
                    return match p.isr_len() {
                        Some(isr) => p.high_watermark() > last_offset || isr < min_insync,
                        None => true,
                    };
                }
                let log = p.log.borrow();
                if acks == -1 {
                    log.durable_offset() > last_offset
                } else {
                    log.log_end_offset() > last_offset
                }
            })
            .await;
        if replicated {
            let p = &self.partition;
            match p.isr_len() {
                Some(_) if p.high_watermark() > last_offset => return Ok(()),
                None if !p.deleted.get() => {
                    return Err(produce_error(
                        ErrorCode::NotLeaderOrFollower,
                        "leadership moved before the write was replicated",
                    ))
                }
                Some(isr) if isr < min_insync => {
                    return Err(produce_error(
                        ErrorCode::NotEnoughReplicasAfterAppend,
                        "the ISR fell under min.insync.replicas",
                    ))
                }
                _ => {}
            }
        } else if reached {
            return Ok(());
        }
        let log = self.partition.log.borrow();
        Err(match log.failure() {
            Some(error) => produce_error(storage_error_code(error), &error.to_string()),
            None if self.partition.deleted.get() => {
                produce_error(ErrorCode::UnknownTopicOrPartition, "topic deleted")
            }
            None => produce_error(ErrorCode::RequestTimedOut, "timed out waiting for acks"),
        })
    }
}

/// The state of one shard. Lives on its own thread only.
pub struct Shard {
    /// This shard's id.
    pub id: ShardId,
    /// Number of shards.
    pub count: usize,
    /// Broker configuration.
    pub config: Arc<BrokerConfig>,
    /// Read-only copy of the catalog.
    pub catalog: RefCell<Arc<Catalog>>,
    /// min.insync.replicas of every topic, derived from the catalog's
    /// config overrides when the catalog changes (not parsed per request).
    min_insync_replicas: RefCell<HashMap<String, i32>>,
    /// Topics whose cleanup.policy includes compact (records need keys),
    /// derived when the catalog changes.
    compacted: RefCell<HashSet<String>>,
    /// The dynamic broker configs of this broker, from the catalog.
    dynamic_configs: RefCell<Arc<DynamicBrokerConfigs>>,
    /// Topic defaults: the static configuration with the dynamic broker
    /// configs applied (what a topic without an override gets).
    topic_defaults: RefCell<Arc<TopicConfig>>,
    /// log.flush.interval.ms with the dynamic broker configs applied.
    flush_interval_ms: Cell<Option<u64>>,
    /// The partitions this shard owns.
    pub partitions: RefCell<HashMap<(String, i32), Rc<Partition>>>,
    /// Write-behind and group commit.
    pub flusher: Rc<Flusher>,
    /// Channels to every shard.
    pub mesh: MeshEndpoint<ShardMessage>,
    /// Serializes metadata changes (used on shard 0).
    pub admin_lock: glommio::sync::Semaphore,
    /// Held while retention deletes files, so a shutdown does not end with
    /// segments gone from memory but still on disk.
    retention_lock: glommio::sync::Semaphore,
    /// Log start offsets moved by DeleteRecords: at start, what the
    /// checkpoint file held (applied to partitions as they open); on shard
    /// 0, the file's current content.
    log_starts: RefCell<crate::log_starts::LogStarts>,
    /// Serializes rewrites of the log start checkpoint (shard 0).
    log_starts_lock: glommio::sync::Semaphore,
    /// Last producer id handed out.
    producer_id_last: Cell<i64>,
    /// Counters.
    pub stats: ShardStats,
    /// The groups this shard coordinates.
    pub groups: crate::coordinator::GroupCoordinator,
    /// The transactional ids this shard coordinates.
    pub txns: crate::txn_coordinator::TxnCoordinator,
    /// Set when the shard is shutting down; long polls end early.
    stopping: Cell<bool>,
    /// Fired when `stopping` is set.
    stop_event: event_listener::Event,
    /// This node's part in a cluster (shard 0 of a cluster node only).
    pub cluster: RefCell<Option<Rc<crate::cluster::node::ClusterNode>>>,
    /// False while a cluster broker starts: it registers and catches up
    /// with the metadata before it takes client connections, so it never
    /// answers from an image older than its own registration.
    serving: Cell<bool>,
    /// Fired when `serving` is set.
    serving_event: event_listener::Event,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The log settings of a topic config.
pub fn log_config(topic: &TopicConfig, write_mode: WriteMode) -> LogConfig {
    // Without "delete" in cleanup.policy nothing is removed by retention.
    let deletes = topic
        .cleanup_policy
        .split(',')
        .any(|p| p.trim() == "delete");
    LogConfig {
        segment_bytes: topic.segment_bytes,
        segment_ms: topic.segment_ms.min(i64::MAX as u64) as i64,
        retention_ms: if deletes { topic.retention_ms } else { -1 },
        retention_bytes: if deletes { topic.retention_bytes } else { -1 },
        index_interval_bytes: topic.index_interval_bytes,
        max_message_bytes: topic.max_message_bytes,
        log_append_time: topic.message_timestamp_type == TimestampType::LogAppendTime,
        preallocate: topic.preallocate,
        write_mode,
    }
}

impl Shard {
    /// Builds the shard and opens the partitions it owns in `catalog`.
    pub fn new(
        id: ShardId,
        config: Arc<BrokerConfig>,
        catalog: Arc<Catalog>,
        mesh: MeshEndpoint<ShardMessage>,
        log_starts: crate::log_starts::LogStarts,
    ) -> std::io::Result<Rc<Shard>> {
        let flusher = if config.log_sync_filesystem {
            Flusher::with_filesystem_sync(&config.data_dir)?
        } else {
            Flusher::new()
        };
        let topic_defaults = Arc::new(config.topic_defaults.clone());
        let serves_at_once = !config.cluster.as_ref().is_some_and(|c| c.broker);
        let flush_interval_ms = config.log_flush_interval_ms;
        let offsets_partitions = catalog
            .topics
            .get(crate::coordinator::OFFSETS_TOPIC)
            .map_or(config.offsets_topic_num_partitions, |m| m.partition_count());
        let groups = crate::coordinator::GroupCoordinator::new(
            crate::coordinator::coordinator_config(&config, offsets_partitions),
        )
        .map_err(std::io::Error::other)?;
        let txn_partitions = catalog
            .topics
            .get(crate::txn_coordinator::TXN_TOPIC)
            .map_or(config.txn_state_partitions, |m| m.partition_count());
        let txns = crate::txn_coordinator::TxnCoordinator::new(crate::txn_coordinator::txn_config(
            &config,
            txn_partitions,
            offsets_partitions,
        ))
        .map_err(std::io::Error::other)?;
        let shard = Rc::new(Shard {
            id,
            count: mesh.shard_count(),
            config,
            catalog: RefCell::new(Arc::new(Catalog::default())),
            min_insync_replicas: RefCell::new(HashMap::new()),
            compacted: RefCell::new(HashSet::new()),
            dynamic_configs: RefCell::new(Arc::new(DynamicBrokerConfigs::default())),
            topic_defaults: RefCell::new(topic_defaults),
            flush_interval_ms: Cell::new(flush_interval_ms),
            partitions: RefCell::new(HashMap::new()),
            flusher: Rc::new(flusher),
            mesh,
            admin_lock: glommio::sync::Semaphore::new(1),
            retention_lock: glommio::sync::Semaphore::new(1),
            log_starts: RefCell::new(log_starts),
            log_starts_lock: glommio::sync::Semaphore::new(1),
            producer_id_last: Cell::new(0),
            stats: ShardStats::default(),
            groups,
            txns,
            stopping: Cell::new(false),
            stop_event: event_listener::Event::new(),
            cluster: RefCell::new(None),
            serving: Cell::new(serves_at_once),
            serving_event: event_listener::Event::new(),
        });
        shard.adopt_catalog(catalog.clone());
        shard.open_owned_partitions(&catalog)?;
        // What DeleteRecords moved before the restart; only shard 0 keeps
        // the map (it owns the file).
        for partition in shard.partitions.borrow().values() {
            let key = (partition.topic.clone(), partition.index);
            if let Some(start) = shard.log_starts.borrow().get(&key) {
                partition.log.borrow_mut().restore_log_start(*start);
            }
        }
        if id != ShardId(0) {
            shard.log_starts.borrow_mut().clear();
        }
        Ok(shard)
    }

    /// Runs a group request on the group's coordinator shard (here, or
    /// across the mesh).
    pub async fn group_call(self: &Rc<Self>, group: &str, request: Request) -> Reply {
        let (_, owner) = crate::coordinator::placement(self, group);
        if owner == self.id {
            return self.groups.call(self, request).await;
        }
        let fallback = request.error_reply(ErrorCode::CoordinatorNotAvailable);
        match self.call(owner, ShardRequest::Group(request)).await {
            Some(ShardResponse::Group(reply)) => reply,
            _ => fallback,
        }
    }

    /// Every group on every shard (ListGroups), sorted; the error of any
    /// coordinator that could not list all of its groups.
    pub async fn list_all_groups(self: &Rc<Self>) -> ListResponse {
        let mut error = ErrorCode::None;
        let mut groups = Vec::new();
        let mut merge = |reply: Option<Reply>| match reply {
            Some(Reply::List(list)) => {
                if error == ErrorCode::None {
                    error = list.error;
                }
                groups.extend(list.groups);
            }
            _ => error = ErrorCode::CoordinatorNotAvailable,
        };
        let others = (0..self.count)
            .map(ShardId)
            .filter(|s| *s != self.id)
            .map(|s| self.call(s, ShardRequest::Group(Request::List)));
        let (local, remote) = futures::join!(
            self.groups.call(self, Request::List),
            futures::future::join_all(others)
        );
        merge(Some(local));
        for reply in remote {
            merge(match reply {
                Some(ShardResponse::Group(reply)) => Some(reply),
                _ => None,
            });
        }
        groups.sort();
        ListResponse { error, groups }
    }

    /// Starts the shutdown: long polls on this shard return at once.
    pub fn begin_stop(&self) {
        self.stopping.set(true);
        self.stop_event.notify(usize::MAX);
    }

    /// Takes client connections from now on (see `serving`).
    pub fn serve_clients(&self) {
        if !self.serving.replace(true) {
            self.serving_event.notify(usize::MAX);
        }
    }

    /// Resolves once the shard takes client connections.
    pub async fn until_serving(&self) {
        loop {
            let listener = self.serving_event.listen();
            if self.serving.get() {
                return;
            }
            listener.await;
        }
    }

    /// Every shard of this node takes client connections from now on.
    pub async fn serve_clients_everywhere(self: &Rc<Self>) {
        self.serve_clients();
        let others = (0..self.count)
            .map(ShardId)
            .filter(|s| *s != self.id)
            .map(|s| self.call(s, ShardRequest::ServeClients));
        futures::future::join_all(others).await;
    }

    /// True once the shutdown has begun.
    pub fn is_stopping(&self) -> bool {
        self.stopping.get()
    }

    /// Resolves when the shutdown begins.
    pub async fn stopped(&self) {
        loop {
            let listener = self.stop_event.listen();
            if self.stopping.get() {
                return;
            }
            listener.await;
        }
    }

    /// The owner shard of a partition.
    pub fn owner(&self, topic: &str, partition: i32) -> ShardId {
        placement(
            stable_hash(topic.as_bytes()),
            partition.max(0) as u32,
            self.count,
        )
    }

    /// The current catalog.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.borrow().clone()
    }

    /// A local partition.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<Rc<Partition>> {
        self.partitions
            .borrow()
            .get(&(topic.to_string(), partition))
            .cloned()
    }

    fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.config.data_dir.join(format!("{topic}-{partition}"))
    }

    /// Makes `catalog` this shard's copy, with the settings derived from it:
    /// the dynamic broker configs and the topic defaults they give, each
    /// topic's min.insync.replicas and whether it is compacted.
    fn adopt_catalog(&self, catalog: Arc<Catalog>) {
        let dynamic = catalog.dynamic_broker_configs(self.config.node_id);
        let defaults = self.config.effective_topic_defaults(&dynamic);
        let mut min_insync = HashMap::new();
        let mut compacted = HashSet::new();
        for meta in catalog.topics.values() {
            let topic = topic_config_from_overrides(&defaults, &meta.configs)
                .unwrap_or_else(|_| defaults.clone());
            min_insync.insert(meta.name.clone(), topic.min_insync_replicas);
            if topic.is_compacted() {
                compacted.insert(meta.name.clone());
            }
        }
        self.flush_interval_ms
            .set(self.config.effective_flush_interval_ms(&dynamic));
        *self.min_insync_replicas.borrow_mut() = min_insync;
        *self.compacted.borrow_mut() = compacted;
        *self.topic_defaults.borrow_mut() = Arc::new(defaults);
        *self.dynamic_configs.borrow_mut() = Arc::new(dynamic);
        *self.catalog.borrow_mut() = catalog;
    }

    /// The topic's min.insync.replicas (the broker default for unknown
    /// topics).
    pub fn min_insync_replicas(&self, topic: &str) -> i32 {
        self.min_insync_replicas
            .borrow()
            .get(topic)
            .copied()
            .unwrap_or_else(|| self.topic_defaults.borrow().min_insync_replicas)
    }

    /// True when the topic's cleanup.policy includes compact, so every
    /// record needs a key.
    pub fn is_compacted(&self, topic: &str) -> bool {
        self.compacted.borrow().contains(topic)
    }

    /// Topic defaults: static configuration plus dynamic broker configs.
    pub fn topic_defaults(&self) -> Arc<TopicConfig> {
        self.topic_defaults.borrow().clone()
    }

    /// The dynamic broker configs that apply to this broker.
    pub fn dynamic_configs(&self) -> Arc<DynamicBrokerConfigs> {
        self.dynamic_configs.borrow().clone()
    }

    /// The broker-wide periodic sync interval (log.flush.interval.ms), if
    /// any, after dynamic changes.
    pub fn flush_interval_ms(&self) -> Option<u64> {
        self.flush_interval_ms.get()
    }

    fn topic_log_config(&self, meta: &TopicMeta) -> LogConfig {
        let defaults = self.topic_defaults();
        match topic_config_from_overrides(&defaults, &meta.configs) {
            Ok(topic) => log_config(&topic, self.config.log_write_mode),
            Err(e) => {
                log::warn!(
                    "topic {}: bad stored config ({e}); using defaults",
                    meta.name
                );
                log_config(&defaults, self.config.log_write_mode)
            }
        }
    }

    fn open_owned_partitions(&self, catalog: &Catalog) -> std::io::Result<()> {
        let now = now_ms();
        for meta in catalog.topics.values() {
            let log_config = self.topic_log_config(meta);
            for (p, replicas) in meta.partitions.iter().enumerate() {
                let p = p as i32;
                if !replicas.replicas.contains(&self.config.node_id)
                    || self.owner(&meta.name, p) != self.id
                {
                    continue;
                }
                let key = (meta.name.clone(), p);
                let existing = self.partitions.borrow().get(&key).cloned();
                if let Some(existing) = existing {
                    existing.log.borrow_mut().set_config(log_config.clone());
                    existing.set_leader_epoch(replicas.leader_epoch);
                    self.adopt_role(&existing, replicas);
                    continue;
                }
                let dir = self.partition_dir(&meta.name, p);
                let log = PartitionLog::open(&dir, log_config.clone(), now)?;
                let partition = Rc::new(Partition::new(meta.name.clone(), p, log));
                partition.set_leader_epoch(replicas.leader_epoch);
                if replicas.replicas.len() > 1 {
                    partition.open_replicated();
                }
                self.adopt_role(&partition, replicas);
                self.partitions.borrow_mut().insert(key, partition);
            }
        }
        Ok(())
    }

    /// Leads or follows a replicated partition as the metadata says (a
    /// partition with one replica keeps its high watermark at the log
    /// end).
    fn adopt_role(&self, partition: &Partition, meta: &crate::catalog::PartitionMeta) {
        if meta.replicas.len() < 2 && !partition.leads_replicated() && !partition.is_follower() {
            return;
        }
        if meta.leader == self.config.node_id {
            partition.lead_replicated(self.config.node_id, meta.isr.clone(), now_ms());
        } else {
            partition.follow();
        }
    }

    /// Adopts a new catalog: opens new local partitions, updates configs,
    /// removes deleted ones (and their files).
    /// Returns why partitions could not be opened, if they could not
    /// (they are retried with the next catalog change).
    pub async fn apply_catalog(&self, catalog: Arc<Catalog>) -> Option<String> {
        // Adopted first: partitions opened or reconfigured below use the
        // topic defaults derived from this catalog.
        self.adopt_catalog(catalog.clone());
        let failure = self.open_owned_partitions(&catalog).err().map(|e| {
            log::error!("{}: opening partitions failed: {e}", self.id);
            format!("{}: opening partition files failed: {e}", self.id)
        });
        let removed: Vec<Rc<Partition>> = {
            let mut partitions = self.partitions.borrow_mut();
            let gone: Vec<(String, i32)> = partitions
                .keys()
                .filter(|(topic, p)| {
                    catalog
                        .topics
                        .get(topic)
                        .and_then(|meta| meta.partition(*p))
                        .is_none_or(|meta| !meta.replicas.contains(&self.config.node_id))
                })
                .cloned()
                .collect();
            gone.iter().filter_map(|k| partitions.remove(k)).collect()
        };
        for partition in removed {
            partition.deleted.set(true);
            partition.notify();
            let dir = partition.log.borrow().dir().to_path_buf();
            let result = glommio::executor()
                .spawn_blocking(move || std::fs::remove_dir_all(&dir))
                .await;
            if let Err(e) = result {
                log::error!("deleting {}-{}: {e}", partition.topic, partition.index);
            }
        }
        failure
    }

    /// Sends `request` to `target` and waits for the answer.
    pub async fn call(&self, target: ShardId, request: ShardRequest) -> Option<ShardResponse> {
        let (message, reply) = envelope(request);
        if let Err(e) = self.mesh.send_to(target, message).await {
            log::warn!("{}: {e}", self.id);
            return None;
        }
        reply.recv().await
    }

    /// Handles a request from another shard.
    pub async fn handle_shard_request(self: &Rc<Self>, request: ShardRequest) -> ShardResponse {
        match request {
            ShardRequest::Produce {
                acks,
                timeout_ms,
                parts,
            } => ShardResponse::Produce(self.produce_local(acks, timeout_ms, parts).await),
            ShardRequest::Fetch(parts) => ShardResponse::Fetch(self.fetch_local(&parts).await),
            ShardRequest::WaitForData {
                parts,
                deadline,
                replica,
                read_committed,
            } => {
                self.wait_for_data_local(&parts, deadline, replica, read_committed)
                    .await;
                ShardResponse::Done
            }
            ShardRequest::ListOffsets(parts) => {
                ShardResponse::ListOffsets(self.list_offsets_local(&parts).await)
            }
            ShardRequest::DeleteRecords(parts) => {
                ShardResponse::DeleteRecords(self.delete_records_local(&parts).await)
            }
            ShardRequest::RecordLogStarts(moved) => {
                ShardResponse::Applied(self.record_log_starts(moved).await)
            }
            ShardRequest::PartitionSizes(parts) => {
                ShardResponse::PartitionSizes(self.partition_sizes_local(&parts))
            }
            ShardRequest::Producers(parts) => {
                ShardResponse::Producers(self.producers_local(&parts))
            }
            ShardRequest::Admin(admin) => ShardResponse::Admin(self.admin_local(admin).await),
            ShardRequest::ApplyCatalog(catalog) => {
                ShardResponse::Applied(self.adopt_and_serve(catalog).await)
            }
            ShardRequest::ServeClients => {
                self.serve_clients();
                ShardResponse::Done
            }
            ShardRequest::AlterIsr(request) => {
                self.alter_isr(request).await;
                ShardResponse::Done
            }
            ShardRequest::CreateOffsetsTopic => {
                self.create_offsets_topic().await;
                ShardResponse::Done
            }
            ShardRequest::EpochEnds(parts) => {
                ShardResponse::EpochEnds(self.epoch_ends_local(&parts))
            }
            ShardRequest::ProducerId => {
                ShardResponse::ProducerId(self.producer_id().await.map_err(|code| code.code()))
            }
            ShardRequest::Group(request) => {
                ShardResponse::Group(self.groups.call(self, request).await)
            }
            ShardRequest::Txn(request) => ShardResponse::Txn(self.txns.call(self, request).await),
            ShardRequest::WriteMarkers(markers) => {
                ShardResponse::Markers(self.write_markers_local(markers).await)
            }
        }
    }

    /// Splits `items` by owner shard, keeping each item's request position.
    fn split_by_owner<T>(
        &self,
        items: Vec<T>,
        key: impl Fn(&T) -> (&str, i32),
    ) -> BTreeMap<ShardId, Vec<(usize, T)>> {
        let mut groups: BTreeMap<ShardId, Vec<(usize, T)>> = BTreeMap::new();
        for (i, item) in items.into_iter().enumerate() {
            let (topic, partition) = key(&item);
            groups
                .entry(self.owner(topic, partition))
                .or_default()
                .push((i, item));
        }
        groups
    }

    /// Runs `local` on this shard's group and `remote` requests for the
    /// others concurrently, then merges results in request order.
    pub(crate) async fn scatter<T, R: Default + Clone>(
        self: &Rc<Self>,
        items: Vec<T>,
        key: impl Fn(&T) -> (&str, i32),
        build: impl Fn(Vec<T>) -> ShardRequest,
        unpack: impl Fn(ShardResponse) -> Option<Vec<R>>,
        local: impl AsyncFnOnce(Vec<T>) -> Vec<R>,
        unavailable: R,
    ) -> Vec<R> {
        let total = items.len();
        let groups = self.split_by_owner(items, key);
        let mut out = vec![R::default(); total];
        let mut local_group = None;
        let mut remote = Vec::new();
        for (owner, group) in groups {
            let (positions, parts): (Vec<usize>, Vec<T>) = group.into_iter().unzip();
            if owner == self.id {
                local_group = Some((positions, parts));
            } else {
                let request = build(parts);
                remote.push(async move { (positions, self.call(owner, request).await) });
            }
        }
        let local_future = async {
            match local_group {
                Some((positions, parts)) => Some((positions, local(parts).await)),
                None => None,
            }
        };
        let (local_result, remote_results) =
            futures::join!(local_future, futures::future::join_all(remote));
        if let Some((positions, results)) = local_result {
            for (i, r) in positions.into_iter().zip(results) {
                out[i] = r;
            }
        }
        for (positions, response) in remote_results {
            let results = response.and_then(&unpack);
            match results {
                Some(results) if results.len() == positions.len() => {
                    for (i, r) in positions.into_iter().zip(results) {
                        out[i] = r;
                    }
                }
                _ => {
                    for i in positions {
                        out[i] = unavailable.clone();
                    }
                }
            }
        }
        out
    }

    /// Produces to partitions on any shard.
    pub async fn produce(
        self: &Rc<Self>,
        acks: i16,
        timeout_ms: u64,
        parts: Vec<ProducePart>,
    ) -> Vec<ProduceResult> {
        let this = self.clone();
        self.scatter(
            parts,
            |p| (p.topic.as_str(), p.partition),
            |parts| ShardRequest::Produce {
                acks,
                timeout_ms,
                parts,
            },
            |r| match r {
                ShardResponse::Produce(v) => Some(v),
                _ => None,
            },
            async move |parts| this.produce_local(acks, timeout_ms, parts).await,
            produce_error(ErrorCode::NotLeaderOrFollower, "owner shard unavailable"),
        )
        .await
    }

    /// Appends to local partitions and waits for the acks level.
    pub async fn produce_local(
        &self,
        acks: i16,
        timeout_ms: u64,
        parts: Vec<ProducePart>,
    ) -> Vec<ProduceResult> {
        self.flusher
            .wait_for_space(SHARD_PENDING_WRITE_BYTES_MAX)
            .await;
        let now = now_ms();
        let mut results = Vec::with_capacity(parts.len());
        let mut waits = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            match self.append_local(acks, part, now) {
                Ok(appended) => {
                    results.push(appended.result.clone());
                    waits.push((i, appended));
                }
                Err(failed) => results.push(failed),
            }
        }
        if acks == 0 {
            return results;
        }
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        for (i, appended) in waits {
            if let Err(failed) = appended.wait(acks, deadline).await {
                results[i] = failed;
            }
        }
        results
    }

    /// Appends one part to a local partition now, without waiting for
    /// buffer space or acks (appends made one after another land in the
    /// log in that order). The caller waits with [`LocalAppend::wait`].
    pub fn append_local(
        &self,
        acks: i16,
        part: &ProducePart,
        now: i64,
    ) -> Result<LocalAppend, ProduceResult> {
        self.append_with(acks, &part.topic, part.partition, part.records.len(), |p| {
            p.append(&part.records, now)
        })
    }

    /// Appends a transaction marker to a local partition now (acks=all,
    /// as Kafka writes markers); the caller waits with
    /// [`LocalAppend::wait`].
    pub fn append_marker_local(
        &self,
        marker: &crate::messages::MarkerWrite,
        now: i64,
    ) -> Result<LocalAppend, ProduceResult> {
        self.append_with(
            -1,
            &marker.topic,
            marker.partition,
            ringbroker_storage::txn::marker::MARKER_BATCH_LEN,
            |p| {
                p.append_marker(
                    marker.producer_id,
                    marker.producer_epoch,
                    marker.coordinator_epoch,
                    marker.commit,
                    now,
                )
            },
        )
    }

    fn append_with(
        &self,
        acks: i16,
        topic: &str,
        index: i32,
        size: usize,
        append: impl FnOnce(&Partition) -> Result<Appended, AppendError>,
    ) -> Result<LocalAppend, ProduceResult> {
        let Some(partition) = self.partition(topic, index) else {
            return Err(produce_error(
                ErrorCode::UnknownTopicOrPartition,
                "unknown partition",
            ));
        };
        if partition.is_follower() {
            // Only the replica fetcher writes a follower's log.
            return Err(produce_error(
                ErrorCode::NotLeaderOrFollower,
                "this broker follows the partition",
            ));
        }
        let appended = append(&partition);
        let appended = {
            let mut log = partition.log.borrow_mut();
            if appended.is_ok() && acks == -1 {
                log.request_sync();
            }
            appended.map(|a| (a, log.log_start_offset()))
        };
        match appended {
            Ok((appended, log_start_offset)) => {
                self.flusher.schedule(&partition, size);
                Ok(LocalAppend {
                    replicated: partition.leads_replicated(),
                    min_insync: self.min_insync_replicas(topic),
                    partition,
                    last_offset: appended.last_offset,
                    result: ProduceResult {
                        error_code: 0,
                        error_message: None,
                        base_offset: appended.base_offset,
                        log_append_time_ms: appended.log_append_time_ms,
                        log_start_offset,
                        record_errors: Vec::new(),
                    },
                })
            }
            Err(e) => Err(append_error(&e)),
        }
    }

    /// Reads from partitions on any shard, without waiting.
    pub async fn fetch(self: &Rc<Self>, parts: Vec<FetchPart>) -> Vec<FetchResult> {
        for part in parts.iter().filter(|p| p.replica >= 0) {
            let counter = if self.owner(&part.topic, part.partition) == self.id {
                &self.stats.replica_parts_local
            } else {
                &self.stats.replica_parts_remote
            };
            counter.set(counter.get() + 1);
        }
        let this = self.clone();
        self.scatter(
            parts,
            |p| (p.topic.as_str(), p.partition),
            ShardRequest::Fetch,
            |r| match r {
                ShardResponse::Fetch(v) => Some(v),
                _ => None,
            },
            async move |parts| this.fetch_local(&parts).await,
            FetchResult {
                error_code: ErrorCode::NotLeaderOrFollower.code(),
                high_watermark: -1,
                last_stable_offset: -1,
                log_start_offset: -1,
                records: None,
                aborted_transactions: None,
            },
        )
        .await
    }

    /// Reads local partitions. The batch headers a read needs are read on
    /// this thread only when they are in the page cache; the others are
    /// read on the blocking pool (`ringbroker_storage::read`).
    pub async fn fetch_local(&self, parts: &[FetchPart]) -> Vec<FetchResult> {
        let mut results = Vec::with_capacity(parts.len());
        let mut reads = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let Some(partition) = self.partition(&part.topic, part.partition) else {
                results.push(FetchResult {
                    error_code: ErrorCode::UnknownTopicOrPartition.code(),
                    high_watermark: -1,
                    last_stable_offset: -1,
                    log_start_offset: -1,
                    records: None,
                    aborted_transactions: None,
                });
                continue;
            };
            // A follower's fetch offset is what it holds durably: it
            // moves the high watermark before the read is planned. An
            // offset past this log's end is out of range, never progress.
            let log_end = partition.log.borrow().log_end_offset();
            if part.replica >= 0 && part.offset <= log_end {
                partition.record_follower_fetch(part.replica, part.offset, now_ms());
            }
            // The offsets answered are those the read was planned against;
            // consumers read below the high watermark, followers up to the
            // log end.
            let high_watermark = partition.high_watermark();
            let last_stable_offset = partition.last_stable_offset();
            let log = partition.log.borrow();
            let upper = if part.replica >= 0 {
                log.log_end_offset()
            } else if part.read_committed {
                last_stable_offset
            } else {
                high_watermark
            };
            let mut result = FetchResult {
                error_code: 0,
                high_watermark,
                last_stable_offset,
                log_start_offset: log.log_start_offset(),
                records: None,
                aborted_transactions: None,
            };
            match log.plan_read(part.offset, part.max_bytes, upper) {
                Ok(Some(plan)) => {
                    if part.read_committed {
                        result.aborted_transactions = Some(
                            log.aborted_transactions(part.offset, upper)
                                .into_iter()
                                .map(|t| (t.producer_id, t.first_offset))
                                .collect(),
                        );
                    }
                    reads.push((i, plan))
                }
                Ok(None) => {}
                Err(e) => result.error_code = read_error_code(&e).code(),
            }
            results.push(result);
        }
        for (i, read) in ringbroker_storage::read::read_all(reads).await {
            match read {
                Ok(slice) => results[i].records = slice,
                Err(e) => {
                    log::error!("read {}-{}: {e}", parts[i].topic, parts[i].partition);
                    results[i].error_code = storage_error_code(&e).code();
                }
            }
        }
        results
    }

    /// Waits until any of the local `parts` has data past its offset.
    pub async fn wait_for_data_local(
        &self,
        parts: &[(String, i32, i64)],
        deadline: Instant,
        replica: bool,
        read_committed: bool,
    ) {
        let waits: Vec<_> = parts
            .iter()
            .filter_map(|(topic, p, offset)| {
                let partition = self.partition(topic, *p)?;
                let offset = *offset;
                Some(async move {
                    partition
                        .wait_until(deadline, |p| {
                            if replica {
                                p.log.borrow().log_end_offset() > offset
                            } else if read_committed {
                                p.last_stable_offset() > offset
                            } else {
                                p.high_watermark() > offset
                            }
                        })
                        .await
                })
            })
            .map(Box::pin)
            .collect();
        if waits.is_empty() {
            let now = Instant::now();
            if deadline > now {
                glommio::timer::sleep(deadline - now).await;
            }
            return;
        }
        futures::future::select_all(waits).await;
    }

    /// Waits until any of `parts` (on any shard) has data past its offset.
    pub async fn wait_for_data(
        self: &Rc<Self>,
        parts: Vec<(String, i32, i64)>,
        deadline: Instant,
        replica: bool,
        read_committed: bool,
    ) {
        let groups = self.split_by_owner(parts, |p| (p.0.as_str(), p.1));
        let mut waits: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>> = Vec::new();
        for (owner, group) in groups {
            let parts: Vec<_> = group.into_iter().map(|(_, p)| p).collect();
            if owner == self.id {
                let this = self.clone();
                waits.push(Box::pin(async move {
                    this.wait_for_data_local(&parts, deadline, replica, read_committed)
                        .await
                }));
            } else {
                let this = self.clone();
                waits.push(Box::pin(async move {
                    this.call(
                        owner,
                        ShardRequest::WaitForData {
                            parts,
                            deadline,
                            replica,
                            read_committed,
                        },
                    )
                    .await;
                }));
            }
        }
        if !waits.is_empty() {
            futures::future::select_all(waits).await;
        }
    }

    /// ListOffsets across shards.
    pub async fn list_offsets(
        self: &Rc<Self>,
        parts: Vec<ListOffsetsPart>,
    ) -> Vec<ListOffsetsResult> {
        let this = self.clone();
        self.scatter(
            parts,
            |p| (p.topic.as_str(), p.partition),
            ShardRequest::ListOffsets,
            |r| match r {
                ShardResponse::ListOffsets(v) => Some(v),
                _ => None,
            },
            async move |parts| this.list_offsets_local(&parts).await,
            ListOffsetsResult {
                error_code: ErrorCode::NotLeaderOrFollower.code(),
                timestamp: -1,
                offset: -1,
            },
        )
        .await
    }

    /// Where leader epochs end (OffsetForLeaderEpoch), on any shard.
    pub async fn epoch_ends(
        self: &Rc<Self>,
        parts: Vec<(String, i32, i32)>,
    ) -> Vec<(i16, i32, i64)> {
        let this = self.clone();
        self.scatter(
            parts,
            |p| (p.0.as_str(), p.1),
            ShardRequest::EpochEnds,
            |r| match r {
                ShardResponse::EpochEnds(v) => Some(v),
                _ => None,
            },
            async move |parts| this.epoch_ends_local(&parts),
            (ErrorCode::NotLeaderOrFollower.code(), -1, -1),
        )
        .await
    }

    /// Where leader epochs end in local partitions: the start of the next
    /// higher epoch, or the log end for the latest (Kafka's answer).
    pub fn epoch_ends_local(&self, parts: &[(String, i32, i32)]) -> Vec<(i16, i32, i64)> {
        parts
            .iter()
            .map(|(topic, p, epoch)| match self.partition(topic, *p) {
                Some(partition) => {
                    let log = partition.log.borrow();
                    let (epoch, end) = log.epochs().end_offset_for(*epoch, log.log_end_offset());
                    (0, epoch, end)
                }
                None => (ErrorCode::UnknownTopicOrPartition.code(), -1, -1),
            })
            .collect()
    }

    /// ListOffsets on local partitions. Lookups by timestamp read the
    /// files on the blocking pool.
    pub async fn list_offsets_local(&self, parts: &[ListOffsetsPart]) -> Vec<ListOffsetsResult> {
        let answer = |error_code: ErrorCode, (offset, timestamp): (i64, i64)| ListOffsetsResult {
            error_code: error_code.code(),
            timestamp,
            offset,
        };
        let mut results = Vec::with_capacity(parts.len());
        let mut lookups = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let Some(partition) = self.partition(&part.topic, part.partition) else {
                results.push(answer(ErrorCode::UnknownTopicOrPartition, (-1, -1)));
                continue;
            };
            let log = partition.log.borrow();
            results.push(match part.timestamp {
                -1 if part.read_committed => {
                    answer(ErrorCode::None, (partition.last_stable_offset(), -1))
                }
                -1 => answer(ErrorCode::None, (partition.high_watermark(), -1)),
                -2 | -4 => answer(ErrorCode::None, (log.log_start_offset(), -1)),
                -3 => match log.plan_max_timestamp_lookup() {
                    Some(lookup) => {
                        lookups.push((i, lookup));
                        answer(ErrorCode::None, (-1, -1))
                    }
                    None => answer(ErrorCode::None, (-1, -1)),
                },
                ts if ts >= 0 => {
                    lookups.push((i, log.plan_timestamp_lookup(ts)));
                    answer(ErrorCode::None, (-1, -1))
                }
                _ => answer(ErrorCode::InvalidRequest, (-1, -1)),
            });
        }
        for (i, found) in ringbroker_storage::read::lookup_all(lookups).await {
            results[i] = match found {
                Ok(Some((offset, timestamp))) => answer(ErrorCode::None, (offset, timestamp)),
                Ok(None) => answer(ErrorCode::None, (-1, -1)),
                Err(e) => {
                    let part = &parts[i];
                    log::error!("list offsets {}-{}: {e}", part.topic, part.partition);
                    answer(storage_error_code(&e), (-1, -1))
                }
            };
        }
        results
    }

    /// DeleteRecords on partitions of any shard: moves their log start
    /// offsets, then has shard 0 record them durably.
    pub async fn delete_records(
        self: &Rc<Self>,
        parts: Vec<(String, i32, i64)>,
    ) -> Vec<DeleteRecordsResult> {
        let this = self.clone();
        let mut results = self
            .scatter(
                parts.clone(),
                |p| (p.0.as_str(), p.1),
                ShardRequest::DeleteRecords,
                |r| match r {
                    ShardResponse::DeleteRecords(v) => Some(v),
                    _ => None,
                },
                async move |parts| this.delete_records_local(&parts).await,
                DeleteRecordsResult {
                    error_code: ErrorCode::NotLeaderOrFollower.code(),
                    low_watermark: -1,
                },
            )
            .await;
        let moved: Vec<((String, i32), i64)> = parts
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.error_code == 0)
            .map(|((topic, p, _), r)| ((topic.clone(), *p), r.low_watermark))
            .collect();
        if moved.is_empty() {
            return results;
        }
        let failure = if self.id == ShardId(0) {
            self.record_log_starts(moved).await
        } else {
            match self
                .call(ShardId(0), ShardRequest::RecordLogStarts(moved))
                .await
            {
                Some(ShardResponse::Applied(failure)) => failure,
                _ => Some("shard 0 did not answer".into()),
            }
        };
        if let Some(failure) = failure {
            log::error!("recording log start offsets failed: {failure}");
            for r in results.iter_mut().filter(|r| r.error_code == 0) {
                r.error_code = ErrorCode::KafkaStorageError.code();
                r.low_watermark = -1;
            }
        }
        results
    }

    /// DeleteRecords on local partitions: `offset` -1 means the high
    /// watermark; past it is OFFSET_OUT_OF_RANGE. Whole segments below the
    /// new start are deleted.
    pub async fn delete_records_local(
        &self,
        parts: &[(String, i32, i64)],
    ) -> Vec<DeleteRecordsResult> {
        let mut results = Vec::with_capacity(parts.len());
        let mut doomed = Vec::new();
        for (topic, p, offset) in parts {
            let Some(partition) = self.partition(topic, *p) else {
                results.push(DeleteRecordsResult {
                    error_code: ErrorCode::UnknownTopicOrPartition.code(),
                    low_watermark: -1,
                });
                continue;
            };
            let high_watermark = partition.high_watermark();
            let target = if *offset == -1 {
                high_watermark
            } else {
                *offset
            };
            if target < 0 || target > high_watermark {
                results.push(DeleteRecordsResult {
                    error_code: ErrorCode::OffsetOutOfRange.code(),
                    low_watermark: -1,
                });
                continue;
            }
            let (start, removed) = partition.log.borrow_mut().advance_log_start(target);
            // The leader epoch checkpoint follows the new start.
            self.flusher.schedule(&partition, 0);
            doomed.extend(removed.iter().flat_map(|s| {
                let (index, time) = s.index_paths();
                [s.path.clone(), index, time]
            }));
            results.push(DeleteRecordsResult {
                error_code: 0,
                low_watermark: start,
            });
        }
        if !doomed.is_empty() {
            let removed = glommio::executor()
                .spawn_blocking(move || {
                    for path in doomed {
                        if let Err(e) = std::fs::remove_file(&path) {
                            if e.kind() != std::io::ErrorKind::NotFound {
                                return Err(e);
                            }
                        }
                    }
                    Ok(())
                })
                .await;
            // The segments are out of the log already; a file left behind
            // is cut away again at the next start (the recorded start).
            if let Err(e) = removed {
                log::error!("deleting segments below a new log start: {e}");
            }
        }
        results
    }

    /// Shard 0: merges moved log start offsets into the checkpoint and
    /// rewrites it durably, dropping entries of topics that no longer
    /// exist. The failure, if the file could not be written.
    pub async fn record_log_starts(&self, moved: Vec<((String, i32), i64)>) -> Option<String> {
        assert_eq!(self.id, ShardId(0), "shard 0 owns the log start checkpoint");
        let Ok(_turn) = self.log_starts_lock.acquire_permit(1).await else {
            return Some("shutting down".into());
        };
        let snapshot = {
            let catalog = self.catalog();
            let mut starts = self.log_starts.borrow_mut();
            for (key, offset) in moved {
                let entry = starts.entry(key).or_insert(offset);
                *entry = (*entry).max(offset);
            }
            starts.retain(|(topic, _), _| catalog.topics.contains_key(topic));
            starts.clone()
        };
        let data_dir = self.config.data_dir.clone();
        glommio::executor()
            .spawn_blocking(move || crate::log_starts::save(&data_dir, &snapshot))
            .await
            .err()
            .map(|e| e.to_string())
    }

    /// Bytes on disk of partitions on any shard (None for a partition no
    /// shard holds open).
    pub async fn partition_sizes(self: &Rc<Self>, parts: Vec<PartitionKey>) -> Vec<Option<u64>> {
        let this = self.clone();
        self.scatter(
            parts,
            |p| (p.0.as_str(), p.1),
            ShardRequest::PartitionSizes,
            |r| match r {
                ShardResponse::PartitionSizes(v) => Some(v),
                _ => None,
            },
            async move |parts| this.partition_sizes_local(&parts),
            None,
        )
        .await
    }

    /// Bytes on disk of local partitions.
    pub fn partition_sizes_local(&self, parts: &[PartitionKey]) -> Vec<Option<u64>> {
        parts
            .iter()
            .map(|(topic, p)| {
                self.partition(topic, *p)
                    .map(|partition| partition.log.borrow().size_bytes())
            })
            .collect()
    }

    /// Idempotent-producer state of partitions on any shard.
    pub async fn producers(self: &Rc<Self>, parts: Vec<PartitionKey>) -> Vec<ProducersResult> {
        let this = self.clone();
        self.scatter(
            parts,
            |p| (p.0.as_str(), p.1),
            ShardRequest::Producers,
            |r| match r {
                ShardResponse::Producers(v) => Some(v),
                _ => None,
            },
            async move |parts| this.producers_local(&parts),
            ProducersResult {
                error_code: ErrorCode::NotLeaderOrFollower.code(),
                producers: Vec::new(),
            },
        )
        .await
    }

    /// Idempotent-producer state of local partitions.
    pub fn producers_local(&self, parts: &[PartitionKey]) -> Vec<ProducersResult> {
        parts
            .iter()
            .map(|(topic, p)| match self.partition(topic, *p) {
                Some(partition) => {
                    let log = partition.log.borrow();
                    let tracker = log.txns().tracker();
                    let producers = log
                        .producers()
                        .active()
                        .into_iter()
                        .map(|(id, epoch, sequence, offset)| {
                            let txn = tracker.producer(id);
                            crate::messages::ProducerInfo {
                                producer_id: id,
                                epoch,
                                last_sequence: sequence,
                                last_offset: offset,
                                coordinator_epoch: txn.map_or(-1, |t| t.coordinator_epoch),
                                txn_start_offset: txn.and_then(|t| t.open_since).unwrap_or(-1),
                            }
                        })
                        .collect();
                    ProducersResult {
                        error_code: 0,
                        producers,
                    }
                }
                None => ProducersResult {
                    error_code: ErrorCode::UnknownTopicOrPartition.code(),
                    producers: Vec::new(),
                },
            })
            .collect()
    }

    /// Runs a metadata change on shard 0 (directly if this is shard 0).
    pub async fn admin(self: &Rc<Self>, request: AdminRequest) -> Vec<AdminResult> {
        if self.id == ShardId(0) {
            return self.admin_local(request).await;
        }
        match self.call(ShardId(0), ShardRequest::Admin(request)).await {
            Some(ShardResponse::Admin(results)) => results,
            _ => vec![AdminResult {
                error_code: ErrorCode::UnknownServerError.code(),
                message: Some("metadata shard unavailable".into()),
                topic: None,
            }],
        }
    }

    async fn admin_local(self: &Rc<Self>, request: AdminRequest) -> Vec<AdminResult> {
        assert_eq!(self.id, ShardId(0), "metadata changes run on shard 0");
        let Ok(_permit) = self.admin_lock.acquire_permit(1).await else {
            return vec![AdminResult::default()];
        };
        let cluster = self.cluster.borrow().clone();
        if let Some(cluster) = cluster {
            // The active controller changes the metadata; the answer comes
            // once this node's shards hold the change.
            let deletes_topics = matches!(request, AdminRequest::DeleteTopics(_));
            let results = cluster.admin(request).await;
            if deletes_topics {
                if let Some(e) = self.record_log_starts(Vec::new()).await {
                    log::error!("dropping log start offsets of deleted topics: {e}");
                }
            }
            return results;
        }
        let mut catalog = (*self.catalog()).clone();
        let opens_partitions = matches!(
            request,
            AdminRequest::CreateTopics { .. } | AdminRequest::CreatePartitions { .. }
        );
        let deletes_topics = matches!(request, AdminRequest::DeleteTopics(_));
        let (results, changed) = crate::admin::apply(&mut catalog, request, &self.admin_defaults());
        if changed {
            catalog.version += 1;
            let data_dir = self.config.data_dir.clone();
            let to_save = catalog.clone();
            let saved = glommio::executor()
                .spawn_blocking(move || to_save.save(&data_dir))
                .await;
            if let Err(e) = saved {
                log::error!("persisting topic metadata failed: {e}");
                return results
                    .into_iter()
                    .map(|_| AdminResult {
                        error_code: ErrorCode::KafkaStorageError.code(),
                        message: Some(format!("persisting metadata failed: {e}")),
                        topic: None,
                    })
                    .collect();
            }
            let failure = self.broadcast_catalog(Arc::new(catalog)).await;
            if deletes_topics {
                // A topic created again under the same name starts at 0.
                if let Some(e) = self.record_log_starts(Vec::new()).await {
                    log::error!("dropping log start offsets of deleted topics: {e}");
                }
            }
            if let (Some(failure), true) = (failure, opens_partitions) {
                // The change is recorded, but some partitions cannot serve.
                return results
                    .into_iter()
                    .map(|r| {
                        if r.error_code == 0 && r.topic.is_some() {
                            AdminResult {
                                error_code: ErrorCode::KafkaStorageError.code(),
                                message: Some(failure.clone()),
                                topic: r.topic,
                            }
                        } else {
                            r
                        }
                    })
                    .collect();
            }
        }
        results
    }

    /// The broker defaults admin changes fall back to.
    fn admin_defaults(&self) -> crate::admin::AdminDefaults {
        crate::admin::AdminDefaults {
            partitions: self.config.num_partitions,
            replication_factor: self.config.default_replication_factor,
        }
    }

    /// Sends the catalog to every shard and waits until all have applied
    /// it. Returns the first failure to open partitions, if any.
    async fn broadcast_catalog(self: &Rc<Self>, catalog: Arc<Catalog>) -> Option<String> {
        let others = (0..self.count)
            .map(ShardId)
            .filter(|s| *s != self.id)
            .map(|s| self.call(s, ShardRequest::ApplyCatalog(catalog.clone())));
        let (local, remote) = futures::join!(
            self.adopt_and_serve(catalog.clone()),
            futures::future::join_all(others)
        );
        local.or_else(|| {
            remote.into_iter().find_map(|r| match r {
                Some(ShardResponse::Applied(failure)) => failure,
                Some(_) => None,
                None => Some("a shard did not answer".to_string()),
            })
        })
    }

    /// Adopts a new catalog and serves the group partitions it gives this
    /// node's leadership of.
    async fn adopt_and_serve(self: &Rc<Self>, catalog: Arc<Catalog>) -> Option<String> {
        let failure = self.apply_catalog(catalog).await;
        self.groups.sync_leadership(self);
        self.txns.sync_leadership(self);
        failure
    }

    /// Publishes a metadata image from the cluster to every shard (shard
    /// 0); returns the first failure to open partitions, if any.
    pub async fn publish_catalog(self: &Rc<Self>, catalog: Arc<Catalog>) -> Option<String> {
        self.broadcast_catalog(catalog).await
    }

    /// Asks the controller to change an ISR (via shard 0).
    pub async fn alter_isr(self: &Rc<Self>, request: crate::cluster::api::ControllerRequest) {
        if self.id != ShardId(0) {
            let _ignored = self.call(ShardId(0), ShardRequest::AlterIsr(request)).await;
            return;
        }
        let cluster = self.cluster.borrow().clone();
        if let Some(cluster) = cluster {
            cluster.alter_isr(request).await;
        }
    }

    /// Asks the controller for `__consumer_offsets` (a cluster node; via
    /// shard 0). A single node creates it at start.
    pub async fn create_offsets_topic(self: &Rc<Self>) {
        if self.config.cluster.is_none() {
            return;
        }
        if self.id != ShardId(0) {
            let _ignored = self
                .call(ShardId(0), ShardRequest::CreateOffsetsTopic)
                .await;
            return;
        }
        let cluster = self.cluster.borrow().clone();
        if let Some(cluster) = cluster {
            cluster.create_offsets_topic().await;
        }
    }

    /// A new producer id, unique across shards and restarts; in a cluster,
    /// unique across brokers (blocks from the controller, via shard 0).
    pub async fn producer_id(self: &Rc<Self>) -> Result<i64, ErrorCode> {
        if self.config.cluster.is_none() {
            return Ok(self.next_producer_id());
        }
        if self.id != ShardId(0) {
            return match self.call(ShardId(0), ShardRequest::ProducerId).await {
                Some(ShardResponse::ProducerId(result)) => result.map_err(|code| {
                    ErrorCode::from_code(code).unwrap_or(ErrorCode::UnknownServerError)
                }),
                _ => Err(ErrorCode::CoordinatorNotAvailable),
            };
        }
        let cluster = self.cluster.borrow().clone();
        match cluster {
            Some(cluster) => cluster.producer_id().await,
            None => Err(ErrorCode::CoordinatorNotAvailable),
        }
    }

    /// A new producer id on a single node, unique across shards and
    /// restarts: the clock in milliseconds times 256, strictly increasing
    /// per shard, interleaved by shard id.
    fn next_producer_id(&self) -> i64 {
        let candidate = (now_ms() << 8).max(self.producer_id_last.get() + 1);
        self.producer_id_last.set(candidate);
        candidate * self.count as i64 + self.id.0 as i64
    }

    /// Graceful shutdown, once no request is in flight on any shard: closes
    /// every local partition to appends, writes and syncs everything
    /// appended before, and only then writes index files and producer
    /// snapshots and cuts active segments to their data, so that what is
    /// written describes exactly what is on disk.
    pub async fn close_and_flush(&self, deadline: Instant) {
        // Retention deleting files finishes first (it starts no more).
        let _retention = self.retention_lock.acquire_permit(1).await;
        let partitions: Vec<Rc<Partition>> = self
            .partitions
            .borrow()
            .values()
            .filter(|p| !p.deleted.get())
            .cloned()
            .collect();
        if !self.flusher.close_and_drain(&partitions, deadline).await {
            let unsettled = partitions.iter().filter(|p| !p.is_settled()).count();
            log::error!(
                "{}: {unsettled} partition(s) still writing at the shutdown deadline; recovery will check them at the next start",
                self.id
            );
        }
        let mut files = Vec::new();
        let mut trims = Vec::new();
        for partition in &partitions {
            if !partition.is_settled() {
                continue;
            }
            let shutdown = partition.log.borrow().shutdown_files();
            files.extend(shutdown.files);
            trims.extend(shutdown.trim);
        }
        let data_dir = self.config.data_dir.clone();
        let written = glommio::executor()
            .spawn_blocking(move || {
                ringbroker_storage::log::write_files_then_syncfs(&files, &trims, &data_dir)
            })
            .await;
        if let Err(e) = written {
            log::error!("{}: writing index files at shutdown failed: {e}", self.id);
        }
    }

    /// Deletes segments past retention on local partitions.
    pub async fn enforce_retention(&self) {
        let Ok(_permit) = self.retention_lock.acquire_permit(1).await else {
            return;
        };
        if self.is_stopping() {
            return;
        }
        let now = now_ms();
        let partitions: Vec<Rc<Partition>> = self.partitions.borrow().values().cloned().collect();
        for partition in partitions {
            let high_watermark = partition.high_watermark();
            let expired = partition
                .log
                .borrow_mut()
                .take_expired_segments(now, high_watermark);
            if expired.is_empty() {
                continue;
            }
            let paths: Vec<PathBuf> = expired
                .iter()
                .flat_map(|s| {
                    let (index, time) = s.index_paths();
                    [s.path.clone(), index, time]
                })
                .collect();
            log::info!(
                "{}-{}: retention deleted {} segment(s)",
                partition.topic,
                partition.index,
                expired.len()
            );
            drop(expired);
            let removed = glommio::executor()
                .spawn_blocking(move || {
                    for path in paths {
                        if let Err(e) = std::fs::remove_file(&path) {
                            if e.kind() != std::io::ErrorKind::NotFound {
                                return Err(e);
                            }
                        }
                    }
                    Ok(())
                })
                .await;
            if let Err(e) = removed {
                log::error!("retention on {}-{}: {e}", partition.topic, partition.index);
            }
        }
    }
}

fn produce_error(code: ErrorCode, message: &str) -> ProduceResult {
    ProduceResult {
        error_code: code.code(),
        error_message: Some(message.to_string()),
        base_offset: -1,
        log_append_time_ms: -1,
        log_start_offset: -1,
        record_errors: Vec::new(),
    }
}

fn append_error(e: &AppendError) -> ProduceResult {
    produce_error(append_error_code(e), &e.to_string())
}
