//! The controller: a voter of the metadata quorum (on shard 0 of a node
//! with the controller role). Every voter applies the committed metadata
//! log to its image ([`MetadataMachine`]); the active controller (the raft
//! leader) is the only one that changes it. Each change is computed by a
//! pure function of the image (`admin::apply`, `metadata::fence`, ...)
//! under one lock, turned into a delta and proposed; the answer goes out
//! once the delta is applied here.
//!
//! After it wins an election, the new leader first commits an empty record
//! (a barrier): once that is applied its image holds everything committed
//! before, so changes are never computed from a stale image.
//!
//! The active controller also keeps each broker's last heartbeat (in
//! memory; a new leader gives every broker a fresh session) and fences
//! brokers that miss their session timeout.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringbroker_protocol::errors::ErrorCode;

use super::api::{ControllerRequest, ControllerResponse};
use super::driver::{ProposeError, QuorumDriver, StateMachine};
use super::metadata::{self, MetadataDelta};
use crate::catalog::{new_cluster_id, BrokerMeta, Catalog, PartitionMeta, TopicMeta};
use crate::config::{topic_config_from_overrides, BrokerConfig, ClusterConfig};
use crate::coordinator::OFFSETS_TOPIC;

/// How long a proposal may take to commit.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the active controller checks broker sessions.
const SESSION_CHECK: Duration = Duration::from_millis(100);
/// The longest a FetchMetadata may wait for a change.
const FETCH_WAIT_MAX_MS: u64 = 5_000;

/// The metadata image as the quorum's state machine.
pub struct MetadataMachine {
    image: Catalog,
    changed: Rc<event_listener::Event>,
}

impl MetadataMachine {
    /// An empty image; `changed` fires after every applied record.
    pub fn new(changed: Rc<event_listener::Event>) -> MetadataMachine {
        MetadataMachine {
            image: Catalog {
                controller_id: -1,
                ..Catalog::default()
            },
            changed,
        }
    }

    /// The image: everything applied so far.
    pub fn image(&self) -> &Catalog {
        &self.image
    }
}

impl StateMachine for MetadataMachine {
    fn apply(&mut self, index: u64, record: &[u8]) -> Vec<u8> {
        if !record.is_empty() {
            match MetadataDelta::decode(record) {
                Ok(delta) => metadata::apply(&mut self.image, &delta, index),
                // Written by a controller of this version: never expected.
                // Skipping keeps every voter's image identical.
                Err(e) => log::error!("metadata record {index} does not decode: {e}; skipped"),
            }
        }
        self.image.version = index;
        self.changed.notify(usize::MAX);
        index.to_be_bytes().to_vec()
    }

    fn restore(&mut self, index: u64, snapshot: &[u8]) {
        match serde_json::from_slice::<Catalog>(snapshot) {
            Ok(image) => self.image = image,
            Err(e) => log::error!("metadata snapshot at {index} does not decode: {e}"),
        }
        self.image.version = index;
        self.changed.notify(usize::MAX);
    }

    fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(&self.image).expect("the metadata image encodes")
    }
}

/// Why a change did not happen.
fn not_controller(leader: Option<i32>) -> ControllerResponse {
    ControllerResponse::NotController { leader }
}

fn propose_failure(e: ProposeError) -> ControllerResponse {
    match e {
        ProposeError::NotLeader(leader) => not_controller(leader),
        ProposeError::Timeout => ControllerResponse::Failed {
            code: ErrorCode::RequestTimedOut.code(),
            message:
                "the metadata change did not commit in time (is a majority of controllers running?)"
                    .into(),
        },
    }
}

/// `controller.quorum.voters` in one canonical form, to compare nodes'.
pub fn normalised_voters(cluster: &ClusterConfig) -> String {
    let mut voters: Vec<String> = cluster
        .voters
        .iter()
        .map(|v| format!("{}@{}:{}", v.id, v.host, v.port))
        .collect();
    voters.sort();
    voters.join(",")
}

/// A voter and, when it leads, the active controller.
pub struct Controller {
    config: Arc<BrokerConfig>,
    cluster: ClusterConfig,
    driver: Rc<QuorumDriver<MetadataMachine>>,
    changed: Rc<event_listener::Event>,
    /// One change at a time.
    lock: glommio::sync::Semaphore,
    /// The term whose barrier has been applied (0: none yet).
    barrier_term: Cell<u64>,
    /// Last heartbeat per broker (the active controller's view).
    heartbeats: RefCell<HashMap<i32, Instant>>,
    /// The term this node last led in (sessions restart with a new one).
    led_term: Cell<u64>,
    /// When the active controller last looked for leaders to move back
    /// to their preferred replicas.
    rebalanced: Cell<Instant>,
}

impl Controller {
    /// A controller over `driver`, whose machine fires `changed`.
    pub fn new(
        config: Arc<BrokerConfig>,
        cluster: ClusterConfig,
        driver: Rc<QuorumDriver<MetadataMachine>>,
        changed: Rc<event_listener::Event>,
    ) -> Rc<Controller> {
        Rc::new(Controller {
            config,
            cluster,
            driver,
            changed,
            lock: glommio::sync::Semaphore::new(1),
            barrier_term: Cell::new(0),
            heartbeats: RefCell::new(HashMap::new()),
            led_term: Cell::new(0),
            rebalanced: Cell::new(Instant::now()),
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    /// The quorum's driver.
    pub fn driver(&self) -> &Rc<QuorumDriver<MetadataMachine>> {
        &self.driver
    }

    /// Fires after every applied record.
    pub fn changed(&self) -> &Rc<event_listener::Event> {
        &self.changed
    }

    /// A copy of the image.
    pub fn image(&self) -> Catalog {
        self.driver.machine().image().clone()
    }

    /// Runs `change` on the image as the active controller and commits the
    /// difference; returns its result and the version that holds it.
    async fn change<R>(
        &self,
        change: impl FnOnce(&mut Catalog) -> R,
    ) -> Result<(R, u64), ControllerResponse> {
        if !self.driver.is_leader() {
            return Err(not_controller(self.driver.leader()));
        }
        let Ok(_permit) = self.lock.acquire_permit(1).await else {
            return Err(not_controller(None));
        };
        let term = self.driver.term();
        if self.barrier_term.get() != term {
            self.driver
                .propose(&[], PROPOSE_TIMEOUT)
                .await
                .map_err(propose_failure)?;
            self.barrier_term.set(term);
        }
        let old = self.image();
        let mut new = old.clone();
        if new.cluster_id.is_empty() {
            // The first change of a new cluster also agrees its id, so no
            // image with brokers or topics lacks one.
            new.cluster_id = self
                .cluster
                .cluster_id
                .clone()
                .unwrap_or_else(new_cluster_id);
        }
        let result = change(&mut new);
        let delta = metadata::diff(&old, &new);
        if delta.is_empty() {
            return Ok((result, old.version));
        }
        match self.driver.propose(&delta.encode(), PROPOSE_TIMEOUT).await {
            Ok(answer) => {
                let version = answer
                    .get(..8)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, u64::from_be_bytes);
                Ok((result, version))
            }
            Err(e) => {
                // A record that timed out may still commit: the next change
                // starts with a barrier, so it sees it.
                self.barrier_term.set(0);
                Err(propose_failure(e))
            }
        }
    }

    /// Answers one request.
    pub async fn handle(&self, request: ControllerRequest) -> ControllerResponse {
        match request {
            ControllerRequest::Hello { .. } => ControllerResponse::Hello {
                voters: normalised_voters(&self.cluster),
                cluster_id: self.driver.machine().image().cluster_id.clone(),
            },
            ControllerRequest::FetchMetadata {
                known_version,
                wait_ms,
            } => self.fetch_metadata(known_version, wait_ms).await,
            ControllerRequest::Register { broker, cluster_id } => {
                let image_cluster = self.driver.machine().image().cluster_id.clone();
                if let Some(theirs) = cluster_id.filter(|c| !c.is_empty()) {
                    if !image_cluster.is_empty() && theirs != image_cluster {
                        return ControllerResponse::Failed {
                            code: ErrorCode::InconsistentClusterId.code(),
                            message: format!(
                                "broker {} belongs to cluster {theirs}, this is cluster {image_cluster}",
                                broker.id
                            ),
                        };
                    }
                }
                if !self.driver.is_leader() {
                    return not_controller(self.driver.leader());
                }
                let id = broker.id;
                self.heartbeats.borrow_mut().insert(id, Instant::now());
                let registered = self
                    .change(|c| {
                        let epoch = c.brokers.get(&id).map_or(0, |b| b.epoch) + 1;
                        metadata::unfence(c, BrokerMeta { epoch, ..broker });
                        epoch
                    })
                    .await;
                match registered {
                    Ok((epoch, version)) => {
                        log::info!("broker {id} registered (epoch {epoch})");
                        ControllerResponse::Registered { epoch, version }
                    }
                    Err(e) => e,
                }
            }
            ControllerRequest::Heartbeat { broker_id, epoch } => {
                if !self.driver.is_leader() {
                    return not_controller(self.driver.leader());
                }
                let known = self
                    .driver
                    .machine()
                    .image()
                    .brokers
                    .get(&broker_id)
                    .cloned();
                let Some(broker) = known.filter(|b| b.epoch == epoch) else {
                    // Unknown, or an older incarnation of a broker that has
                    // registered again since.
                    return ControllerResponse::Heartbeat { registered: false };
                };
                self.heartbeats
                    .borrow_mut()
                    .insert(broker_id, Instant::now());
                if broker.fenced {
                    if let Err(e) = self.change(|c| metadata::unfence(c, broker)).await {
                        return e;
                    }
                    log::info!("broker {broker_id} unfenced");
                }
                ControllerResponse::Heartbeat { registered: true }
            }
            ControllerRequest::ControlledShutdown { broker_id } => {
                if !self.driver.is_leader() {
                    return not_controller(self.driver.leader());
                }
                let defaults = self.config.topic_defaults.clone();
                match self.change(|c| fence_broker(c, broker_id, &defaults)).await {
                    Ok(((), version)) => {
                        log::info!(
                            "broker {broker_id} is shutting down: fenced, its partitions moved"
                        );
                        ControllerResponse::Done { version }
                    }
                    Err(e) => e,
                }
            }
            ControllerRequest::AlterIsr {
                topic,
                partition,
                leader,
                leader_epoch,
                partition_epoch,
                isr,
            } => {
                if !self.driver.is_leader() {
                    return not_controller(self.driver.leader());
                }
                let changed = self
                    .change(|c| {
                        metadata::alter_isr(
                            c,
                            &topic,
                            partition,
                            leader,
                            leader_epoch,
                            partition_epoch,
                            isr,
                        )
                    })
                    .await;
                match changed {
                    Ok((Ok(()), version)) => ControllerResponse::Done { version },
                    Ok((Err(code), _)) => ControllerResponse::Failed {
                        code: code.code(),
                        message: format!("{topic}-{partition}: ISR change refused"),
                    },
                    Err(e) => e,
                }
            }
            ControllerRequest::Admin(request) => {
                let defaults = crate::admin::AdminDefaults {
                    partitions: self.config.num_partitions,
                    replication_factor: self.config.default_replication_factor,
                };
                match self
                    .change(|c| crate::admin::apply(c, request, &defaults).0)
                    .await
                {
                    Ok((results, version)) => ControllerResponse::Admin { results, version },
                    Err(e) => e,
                }
            }
            ControllerRequest::CreateOffsetsTopic {
                partitions,
                configs,
            } => {
                let factor = self.cluster.offsets_topic_replication_factor.max(1) as usize;
                match self
                    .change(|c| create_offsets_topic(c, partitions, factor, configs))
                    .await
                {
                    Ok(((), version)) => ControllerResponse::Done { version },
                    Err(e) => e,
                }
            }
            ControllerRequest::AllocateProducerIds { count } => {
                let count = count.clamp(1, 1_000_000);
                let allocated = self
                    .change(|c| {
                        let first = c.next_producer_id.max(1);
                        c.next_producer_id = first + count;
                        first
                    })
                    .await;
                match allocated {
                    Ok((first, _)) => ControllerResponse::ProducerIds { first, count },
                    Err(e) => e,
                }
            }
        }
    }

    async fn fetch_metadata(&self, known_version: u64, wait_ms: u64) -> ControllerResponse {
        let deadline = Instant::now() + Duration::from_millis(wait_ms.min(FETCH_WAIT_MAX_MS));
        loop {
            let listener = self.changed.listen();
            let version = self.driver.machine().image().version;
            if version > known_version || Instant::now() >= deadline {
                let image = (version > known_version).then(|| Box::new(self.image()));
                return ControllerResponse::Metadata {
                    image,
                    leader: self.driver.leader(),
                };
            }
            let timer = glommio::timer::sleep(deadline.saturating_duration_since(Instant::now()));
            futures::pin_mut!(timer);
            futures::future::select(listener, timer).await;
        }
    }

    /// The active controller's duties, forever: agree the cluster id once,
    /// fence brokers that miss their session.
    pub async fn run_duties(self: Rc<Self>) {
        let session = Duration::from_millis(self.cluster.session_timeout_ms.max(1));
        loop {
            glommio::timer::sleep(SESSION_CHECK).await;
            if !self.driver.is_leader() {
                continue;
            }
            let term = self.driver.term();
            if self.led_term.replace(term) != term {
                // A new reign: every broker gets a whole session from now.
                log::info!(
                    "node {} is the active controller (term {term})",
                    self.node_id()
                );
                self.heartbeats.borrow_mut().clear();
            }
            if self.driver.machine().image().cluster_id.is_empty() {
                let id = self
                    .cluster
                    .cluster_id
                    .clone()
                    .unwrap_or_else(new_cluster_id);
                let agreed = self
                    .change(|c| {
                        // Another change may have agreed it meanwhile.
                        if c.cluster_id.is_empty() {
                            c.cluster_id = id.clone();
                        }
                        c.cluster_id.clone()
                    })
                    .await;
                match agreed {
                    Ok((id, _)) => log::info!("cluster id {id}"),
                    Err(e) => log::debug!("agreeing the cluster id: {e:?}"),
                }
                continue;
            }
            let now = Instant::now();
            let expired: Vec<i32> = {
                let image = self.driver.machine();
                let mut beats = self.heartbeats.borrow_mut();
                image
                    .image()
                    .brokers
                    .values()
                    .filter(|b| !b.fenced)
                    .filter(|b| now.duration_since(*beats.entry(b.id).or_insert(now)) > session)
                    .map(|b| b.id)
                    .collect()
            };
            self.rebalance_leaders().await;
            for id in expired {
                let defaults = self.config.topic_defaults.clone();
                let fenced = self.change(|c| fence_broker(c, id, &defaults)).await;
                match fenced {
                    Ok(_) => log::warn!(
                        "broker {id} missed its session ({} ms): fenced, its partitions moved",
                        session.as_millis()
                    ),
                    Err(e) => log::debug!("fencing broker {id}: {e:?}"),
                }
            }
        }
    }
}

impl Controller {
    /// `auto.leader.rebalance.enable`: every
    /// `leader.imbalance.check.interval.seconds`, each partition whose first
    /// (preferred) replica is live and in sync but does not lead gets it
    /// as leader again, so leadership spreads as placed after brokers
    /// restart.
    async fn rebalance_leaders(&self) {
        let every = Duration::from_millis(self.cluster.leader_imbalance_check_interval_ms);
        if !self.cluster.auto_leader_rebalance || self.rebalanced.get().elapsed() < every {
            return;
        }
        self.rebalanced.set(Instant::now());
        let moved = self
            .change(|c| {
                let live = c.live_brokers();
                let mut moved = Vec::new();
                for topic in c.topics.values_mut() {
                    for (i, partition) in topic.partitions.iter_mut().enumerate() {
                        if metadata::elect_preferred(partition, &live).is_ok() {
                            moved.push(format!("{}-{i}", topic.name));
                        }
                    }
                }
                moved
            })
            .await;
        match moved {
            Ok((moved, _)) if !moved.is_empty() => {
                log::info!("preferred leaders elected again: {}", moved.join(" "))
            }
            Ok(_) => {}
            Err(e) => log::debug!("preferred leader rebalance: {e:?}"),
        }
    }
}

/// Fences broker `id`, electing uncleanly only in topics whose
/// `unclean.leader.election.enable` (over the broker default) allows it.
fn fence_broker(catalog: &mut Catalog, id: i32, defaults: &crate::config::TopicConfig) {
    let unclean: HashMap<String, bool> = catalog
        .topics
        .values()
        .map(|t| {
            let topic = topic_config_from_overrides(defaults, &t.configs)
                .unwrap_or_else(|_| defaults.clone());
            (t.name.clone(), topic.unclean_leader_election_enable)
        })
        .collect();
    metadata::fence(catalog, id, |topic| {
        unclean.get(topic).copied().unwrap_or(false)
    })
}

/// Creates `__consumer_offsets` (compacted) on up to `factor` live brokers
/// when it does not exist.
pub fn create_offsets_topic(
    catalog: &mut Catalog,
    partitions: i32,
    factor: usize,
    mut configs: BTreeMap<String, String>,
) {
    if catalog.topics.contains_key(OFFSETS_TOPIC) {
        return;
    }
    let live = catalog.live_brokers();
    if live.is_empty() {
        return;
    }
    configs
        .entry("cleanup.policy".into())
        .or_insert_with(|| "compact".into());
    let factor = factor.min(live.len());
    let start = (catalog.version as usize) % live.len();
    let placement = crate::admin::place_replicas(&live, 0, partitions.max(1), factor, start);
    catalog.topics.insert(
        OFFSETS_TOPIC.to_string(),
        TopicMeta {
            name: OFFSETS_TOPIC.to_string(),
            id: *uuid::Uuid::new_v4().as_bytes(),
            partitions: placement.into_iter().map(PartitionMeta::new).collect(),
            configs,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offsets_topic_spreads_over_live_brokers_once() {
        let mut c = Catalog::default();
        for id in [1, 2, 3, 4] {
            c.brokers.insert(
                id,
                BrokerMeta {
                    id,
                    host: "127.0.0.1".into(),
                    port: 9000,
                    rack: None,
                    fenced: id == 4,
                    epoch: 0,
                },
            );
        }
        create_offsets_topic(&mut c, 6, 3, BTreeMap::new());
        let t = &c.topics[OFFSETS_TOPIC];
        assert_eq!(t.partitions.len(), 6);
        assert_eq!(t.configs["cleanup.policy"], "compact");
        for p in &t.partitions {
            let mut r = p.replicas.clone();
            r.sort();
            assert_eq!(r, vec![1, 2, 3], "three distinct live brokers");
        }
        let mut leaders: Vec<i32> = t.partitions.iter().map(|p| p.leader).collect();
        leaders.sort();
        assert_eq!(leaders, vec![1, 1, 2, 2, 3, 3]);
        let before = c.clone();
        create_offsets_topic(&mut c, 6, 3, BTreeMap::new());
        assert_eq!(c, before, "created once");
    }

    #[test]
    fn the_machine_applies_deltas_in_order_and_restores_snapshots() {
        let changed = Rc::new(event_listener::Event::new());
        let mut m = MetadataMachine::new(changed);
        let delta = MetadataDelta {
            cluster_id: Some("c1".into()),
            ..MetadataDelta::default()
        };
        assert_eq!(m.apply(3, &delta.encode()), 3u64.to_be_bytes().to_vec());
        assert_eq!(m.apply(4, &[]), 4u64.to_be_bytes().to_vec(), "a barrier");
        assert_eq!(
            (m.image().cluster_id.as_str(), m.image().version),
            ("c1", 4)
        );
        let snap = m.snapshot();
        let mut other = MetadataMachine::new(Rc::new(event_listener::Event::new()));
        other.restore(4, &snap);
        assert_eq!(other.image(), m.image());
        // A record that does not decode changes nothing but the version.
        m.apply(5, b"garbage");
        assert_eq!(
            (m.image().cluster_id.as_str(), m.image().version),
            ("c1", 5)
        );
    }
}
