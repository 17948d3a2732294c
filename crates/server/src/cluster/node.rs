//! A node of a cluster, on shard 0: its controller (with the controller
//! role), its life as a broker (registration and heartbeats with the
//! active controller), and the metadata it follows: every committed change
//! reaches every shard's read-only catalog (as the single node's catalog
//! broadcast), with the active controller's id.
//!
//! Combined nodes read the image their own voter applies; broker-only
//! nodes long-poll a controller for it. Admin changes from clients are
//! forwarded to the active controller; the call returns once this node's
//! shards hold the version with the change.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringbroker_protocol::errors::ErrorCode;
use ringbroker_quorum::{QuorumConfig, QuorumNode};

use super::api::{ControllerRequest, ControllerResponse};
use super::controller::{normalised_voters, Controller, MetadataMachine};
use super::driver::QuorumDriver;
use super::transport::{serve_controller, Client, ControllerHandler};
use crate::catalog::BrokerMeta;
use crate::config::{BrokerConfig, ClusterConfig};
use crate::messages::{AdminRequest, AdminResult};
use crate::shard::Shard;

/// Directory of the metadata log inside the data directory (Kafka's name).
pub const METADATA_LOG_DIR: &str = "__cluster_metadata-0";
/// Kafka's file naming a data directory's node and cluster.
pub const META_PROPERTIES: &str = "meta.properties";
/// How long a forwarded admin change may take, commit and propagation.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(15);
/// How often a registered broker that has not caught up with its
/// registration says so.
const SERVE_CATCH_UP: Duration = Duration::from_secs(30);
/// How long a broker-only node's metadata fetch waits for a change.
const FETCH_WAIT_MS: u64 = 1_000;
/// The longest one attempt at a controller may take (admin changes and
/// metadata long polls excepted).
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1_000);
/// Pause before trying another controller.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// Producer ids a broker takes from the controller at a time.
const PRODUCER_ID_BLOCK: i64 = 1_000;
/// raft ticks (of `driver::TICK`) before a follower starts an election
/// (randomized up to twice as many) and between a leader's heartbeats.
const ELECTION_TICKS: usize = 10;
const HEARTBEAT_TICKS: usize = 2;

/// What `meta.properties` says about a data directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetaProperties {
    /// `node.id`.
    pub node_id: Option<i32>,
    /// `cluster.id`.
    pub cluster_id: Option<String>,
}

impl MetaProperties {
    /// Reads `meta.properties` from `dir` (absent: nothing known).
    pub fn load(dir: &Path) -> Result<MetaProperties, String> {
        let path = dir.join(META_PROPERTIES);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(MetaProperties::default())
            }
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let mut meta = MetaProperties::default();
        for line in text.lines().map(str::trim) {
            if line.starts_with('#') {
                continue;
            }
            match line.split_once('=') {
                Some(("node.id", v)) => {
                    meta.node_id = Some(
                        v.trim()
                            .parse()
                            .map_err(|_| format!("{}: bad node.id {v:?}", path.display()))?,
                    )
                }
                Some(("cluster.id", v)) => meta.cluster_id = Some(v.trim().to_string()),
                _ => {}
            }
        }
        Ok(meta)
    }

    /// Writes `meta.properties` atomically (Kafka's version 1 layout).
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        use std::io::Write;
        let mut text = String::from("#ringbroker data directory\nversion=1\n");
        if let Some(id) = &self.cluster_id {
            text.push_str(&format!("cluster.id={id}\n"));
        }
        if let Some(id) = self.node_id {
            text.push_str(&format!("node.id={id}\n"));
        }
        let tmp = dir.join(format!("{META_PROPERTIES}.tmp"));
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, dir.join(META_PROPERTIES))?;
        std::fs::File::open(dir)?.sync_all()
    }
}

/// Checks, before anything starts, that the data directory belongs to
/// this node and cluster and that the reachable voters agree on the voter
/// list and cluster id. Each refusal is one line.
pub fn preflight(config: &BrokerConfig, cluster: &ClusterConfig) -> Result<MetaProperties, String> {
    let meta = MetaProperties::load(&config.data_dir)?;
    if let Some(id) = meta.node_id {
        if id != config.node_id {
            return Err(format!(
                "data directory {} belongs to node {id}, not node.id {}",
                config.data_dir.display(),
                config.node_id
            ));
        }
    }
    if let (Some(ours), Some(given)) = (&meta.cluster_id, &cluster.cluster_id) {
        if ours != given {
            return Err(format!(
                "data directory {} belongs to cluster {ours}, not cluster.id {given}",
                config.data_dir.display()
            ));
        }
    }
    let known_cluster = meta.cluster_id.clone().or(cluster.cluster_id.clone());
    let voters = normalised_voters(cluster);
    for voter in &cluster.voters {
        if voter.id == config.node_id {
            continue;
        }
        let Some(addr) = cluster.voter_addr(voter.id) else {
            continue;
        };
        let Some((their_voters, their_cluster)) = hello(addr, config.node_id, &voters) else {
            continue;
        };
        if their_voters != voters {
            return Err(format!(
                "controller.quorum.voters ({voters}) disagrees with voter {} ({their_voters})",
                voter.id
            ));
        }
        if let Some(ours) = &known_cluster {
            if !their_cluster.is_empty() && &their_cluster != ours {
                return Err(format!(
                    "this node belongs to cluster {ours} but voter {} is in cluster {their_cluster}",
                    voter.id
                ));
            }
        }
    }
    Ok(meta)
}

/// Asks one voter (blocking, bounded) for its voter list and cluster id;
/// `None` when it does not answer.
fn hello(addr: SocketAddr, node_id: i32, voters: &str) -> Option<(String, String)> {
    use std::io::{Read, Write};
    let timeout = Duration::from_millis(700);
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    let body = ControllerRequest::Hello {
        node_id,
        voters: voters.to_string(),
    }
    .encode();
    let frame = super::transport::frame(
        super::transport::KIND_REQUEST,
        &super::transport::with_correlation(1, &body),
    );
    stream.write_all(&frame).ok()?;
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).ok()?;
    let len = u32::from_be_bytes(prefix) as usize;
    if len == 0 || len > 16 << 20 {
        return None;
    }
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).ok()?;
    let (_, body) = super::transport::split_correlation(payload.get(1..)?)?;
    match ControllerResponse::decode(body).ok()? {
        ControllerResponse::Hello { voters, cluster_id } => Some((voters, cluster_id)),
        _ => None,
    }
}

/// Requests to the controller quorum: to the active controller when it is
/// known, else to each voter in turn; "not the controller" answers point
/// at the leader. A voter on this node is called directly.
pub struct ControllerClient {
    voters: Vec<i32>,
    clients: HashMap<i32, Client>,
    local: Option<Rc<Controller>>,
    hint: Cell<Option<i32>>,
    next: Cell<usize>,
}

impl ControllerClient {
    fn new(cluster: &ClusterConfig, local: Option<Rc<Controller>>) -> ControllerClient {
        let local_id = local.as_ref().map(|c| c.node_id());
        let clients = cluster
            .voters
            .iter()
            .filter(|v| Some(v.id) != local_id)
            .filter_map(|v| Some((v.id, Client::new(cluster.voter_addr(v.id)?))))
            .collect();
        ControllerClient {
            voters: cluster.voters.iter().map(|v| v.id).collect(),
            clients,
            local,
            hint: Cell::new(None),
            next: Cell::new(0),
        }
    }

    /// The active controller as last seen.
    pub fn leader_hint(&self) -> Option<i32> {
        self.hint.get()
    }

    async fn call_one(
        &self,
        target: i32,
        request: &ControllerRequest,
        deadline: Instant,
    ) -> Result<ControllerResponse, String> {
        if let Some(local) = self.local.as_ref().filter(|c| c.node_id() == target) {
            return Ok(local.handle(request.clone()).await);
        }
        let client = self
            .clients
            .get(&target)
            .ok_or_else(|| format!("voter {target} has no address"))?;
        // A voter that does not answer (paused, cut off) must not hold a
        // heartbeat past the session: each attempt is bounded, and the
        // next one goes to another voter.
        let cap = match request {
            ControllerRequest::Admin(_) => ADMIN_TIMEOUT,
            ControllerRequest::FetchMetadata { wait_ms, .. } => {
                ATTEMPT_TIMEOUT + Duration::from_millis(*wait_ms)
            }
            _ => ATTEMPT_TIMEOUT,
        };
        let limit = cap.min(
            deadline
                .saturating_duration_since(Instant::now())
                .max(RETRY_PAUSE),
        );
        let encoded = request.encode();
        let call = client.call(&encoded);
        let timer = glommio::timer::sleep(limit);
        futures::pin_mut!(call);
        futures::pin_mut!(timer);
        let body = match futures::future::select(call, timer).await {
            futures::future::Either::Left((body, _)) => {
                body.map_err(|e| format!("controller {target} ({}): {e}", client.addr()))?
            }
            futures::future::Either::Right(_) => {
                client.reset();
                return Err(format!(
                    "controller {target} ({}): no answer in {limit:?}",
                    client.addr()
                ));
            }
        };
        ControllerResponse::decode(&body).map_err(|e| format!("controller {target}: {e}"))
    }

    /// Sends `request` until a controller takes it or `deadline` passes.
    pub async fn call(
        &self,
        request: &ControllerRequest,
        deadline: Instant,
    ) -> Result<ControllerResponse, String> {
        loop {
            let last_error;
            let target = self.hint.get().unwrap_or_else(|| {
                let i = self.next.get();
                self.next.set(i + 1);
                self.voters[i % self.voters.len()]
            });
            match self.call_one(target, request, deadline).await {
                Ok(ControllerResponse::NotController { leader }) => {
                    last_error = format!("controller {target} does not lead the quorum");
                    let leader = leader.filter(|l| *l != target);
                    self.hint.set(leader);
                    if leader.is_none() {
                        glommio::timer::sleep(RETRY_PAUSE).await;
                    }
                }
                Ok(answer) => {
                    if matches!(
                        request,
                        ControllerRequest::Register { .. }
                            | ControllerRequest::Heartbeat { .. }
                            | ControllerRequest::Admin(_)
                    ) {
                        self.hint.set(Some(target));
                    }
                    return Ok(answer);
                }
                Err(e) => {
                    last_error = e;
                    self.hint.set(None);
                    glommio::timer::sleep(RETRY_PAUSE).await;
                }
            }
            if Instant::now() >= deadline {
                return Err(last_error);
            }
        }
    }
}

/// This node's part in the cluster (shard 0 only).
pub struct ClusterNode {
    config: Arc<BrokerConfig>,
    cluster: ClusterConfig,
    controller: Option<Rc<Controller>>,
    client: ControllerClient,
    /// The metadata version every shard holds, and the controller id it
    /// was published with.
    published: Cell<(u64, i32)>,
    published_event: event_listener::Event,
    /// The cluster id in `meta.properties` (None until formatted).
    meta: RefCell<MetaProperties>,
    /// The unused part of this broker's producer id block: [next, end).
    producer_ids: Cell<(i64, i64)>,
    producer_ids_lock: glommio::sync::Semaphore,
    /// Set at shutdown: no more heartbeats (they would unfence it).
    stopping: Cell<bool>,
}

struct Handler(Rc<Controller>);

impl ControllerHandler for Handler {
    fn raft(&self, message: &[u8]) {
        self.0.driver().step(message);
    }

    fn request(
        &self,
        body: Vec<u8>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<u8>>>> {
        let controller = self.0.clone();
        Box::pin(async move {
            let answer = match ControllerRequest::decode(&body) {
                Ok(request) => controller.handle(request).await,
                Err(e) => ControllerResponse::Failed {
                    code: ErrorCode::InvalidRequest.code(),
                    message: format!("bad controller request: {e}"),
                },
            };
            answer.encode()
        })
    }
}

impl ClusterNode {
    /// Starts the node's cluster side on shard 0: the voter (with the
    /// controller role) and its CONTROLLER listener, broker registration
    /// and heartbeats (with the broker role), and metadata following.
    pub fn start(
        shard: &Rc<Shard>,
        cluster: ClusterConfig,
        meta: MetaProperties,
    ) -> Result<Rc<ClusterNode>, String> {
        let config = shard.config.clone();
        let controller = if cluster.controller {
            Some(start_controller(&config, &cluster)?)
        } else {
            None
        };
        let node = Rc::new(ClusterNode {
            client: ControllerClient::new(&cluster, controller.clone()),
            config,
            cluster,
            controller,
            published: Cell::new((0, -1)),
            published_event: event_listener::Event::new(),
            meta: RefCell::new(meta),
            producer_ids: Cell::new((0, 0)),
            producer_ids_lock: glommio::sync::Semaphore::new(1),
            stopping: Cell::new(false),
        });
        glommio::spawn_local(node.clone().follow_metadata(shard.clone())).detach();
        if node.cluster.broker {
            glommio::spawn_local(node.clone().broker_lifecycle(shard.clone())).detach();
        }
        Ok(node)
    }

    /// The metadata version every shard of this node holds.
    pub fn published_version(&self) -> u64 {
        self.published.get().0
    }

    /// This node as clients reach it.
    fn me(&self) -> BrokerMeta {
        BrokerMeta {
            id: self.config.node_id,
            host: self.config.advertised_host.clone(),
            port: self.config.advertised_port,
            rack: None,
            fenced: false,
            epoch: 0,
        }
    }

    /// Registers, then heartbeats every `broker.heartbeat.interval.ms`;
    /// registers again when the controller does not know it.
    async fn broker_lifecycle(self: Rc<Self>, shard: Rc<Shard>) {
        let interval = Duration::from_millis(self.cluster.heartbeat_interval_ms.max(10));
        let mut registered = false;
        let mut epoch = 0;
        loop {
            let deadline = Instant::now() + interval.max(Duration::from_secs(1));
            if !registered {
                let request = ControllerRequest::Register {
                    broker: self.me(),
                    cluster_id: self.meta.borrow().cluster_id.clone(),
                };
                match self.client.call(&request, deadline).await {
                    Ok(ControllerResponse::Registered {
                        epoch: given,
                        version,
                    }) => {
                        log::info!(
                            "broker {} registered with controller {:?} (epoch {given})",
                            self.config.node_id,
                            self.client.leader_hint()
                        );
                        registered = true;
                        epoch = given;
                        // Clients are served once every shard holds the
                        // image with this registration (Kafka's brokers
                        // catch up with the metadata log before they
                        // serve): never from an older one.
                        let (node, shard) = (self.clone(), shard.clone());
                        glommio::spawn_local(async move {
                            while !shard.is_stopping() {
                                let deadline = Instant::now() + SERVE_CATCH_UP;
                                if node.wait_published(version, deadline).await {
                                    shard.serve_clients_everywhere().await;
                                    return;
                                }
                                log::warn!("still catching up with metadata version {version}; not serving clients yet");
                            }
                        })
                        .detach();
                    }
                    Ok(ControllerResponse::Failed { code, message })
                        if code == ErrorCode::InconsistentClusterId.code() =>
                    {
                        refuse(&message);
                    }
                    Ok(other) => log::debug!("registration: {other:?}"),
                    Err(e) => log::debug!("registration: {e}"),
                }
                if !registered {
                    glommio::timer::sleep(RETRY_PAUSE * 2).await;
                    continue;
                }
            }
            glommio::timer::sleep(interval).await;
            if self.stopping.get() {
                return;
            }
            let request = ControllerRequest::Heartbeat {
                broker_id: self.config.node_id,
                epoch,
            };
            match self.client.call(&request, deadline + interval).await {
                Ok(ControllerResponse::Heartbeat { registered: false }) => registered = false,
                Ok(_) => {}
                Err(e) => log::debug!("heartbeat: {e}"),
            }
        }
    }

    /// Brings every committed metadata change to every shard.
    async fn follow_metadata(self: Rc<Self>, shard: Rc<Shard>) {
        loop {
            let (image, leader) = match &self.controller {
                Some(controller) => {
                    let listener = controller.changed().listen();
                    let current = controller.driver().machine().image().version;
                    let leader = controller.driver().leader().unwrap_or(-1);
                    if (current, leader) == self.published.get() {
                        let timer = glommio::timer::sleep(Duration::from_millis(200));
                        futures::pin_mut!(timer);
                        futures::future::select(listener, timer).await;
                        continue;
                    }
                    (controller.image(), leader)
                }
                None => {
                    let request = ControllerRequest::FetchMetadata {
                        known_version: self.published.get().0,
                        wait_ms: FETCH_WAIT_MS,
                    };
                    let deadline = Instant::now() + Duration::from_secs(3);
                    match self.client.call(&request, deadline).await {
                        Ok(ControllerResponse::Metadata { image, leader }) => {
                            let leader = leader.unwrap_or(-1);
                            match image {
                                Some(image) => (*image, leader),
                                None if leader != self.published.get().1 => {
                                    ((*shard.catalog()).clone(), leader)
                                }
                                None => continue,
                            }
                        }
                        Ok(other) => {
                            log::debug!("metadata fetch: {other:?}");
                            glommio::timer::sleep(RETRY_PAUSE).await;
                            continue;
                        }
                        Err(e) => {
                            log::debug!("metadata fetch: {e}");
                            glommio::timer::sleep(RETRY_PAUSE).await;
                            continue;
                        }
                    }
                }
            };
            if image.version < self.published.get().0 {
                continue;
            }
            self.check_cluster_id(&image.cluster_id).await;
            let version = image.version;
            let mut image = image;
            image.controller_id = leader;
            if let Some(failure) = shard.publish_catalog(Arc::new(image)).await {
                log::error!("applying metadata version {version}: {failure}");
            }
            self.published.set((version, leader));
            self.published_event.notify(usize::MAX);
        }
    }

    /// Formats the data directory with the cluster id once it is agreed;
    /// stops the process if the directory belongs to another cluster.
    async fn check_cluster_id(&self, cluster_id: &str) {
        if cluster_id.is_empty() {
            return;
        }
        let known = self.meta.borrow().cluster_id.clone();
        match known {
            Some(ours) if ours == cluster_id => {}
            Some(ours) => refuse(&format!(
                "data directory {} belongs to cluster {ours}, but the quorum's cluster is {cluster_id}",
                self.config.data_dir.display()
            )),
            None => {
                let meta = MetaProperties {
                    node_id: Some(self.config.node_id),
                    cluster_id: Some(cluster_id.to_string()),
                };
                let dir: PathBuf = self.config.data_dir.clone();
                let to_save = meta.clone();
                let saved = glommio::executor()
                    .spawn_blocking(move || to_save.save(&dir))
                    .await;
                match saved {
                    Ok(()) => {
                        log::info!("data directory formatted for cluster {cluster_id}");
                        *self.meta.borrow_mut() = meta;
                    }
                    Err(e) => log::error!("writing {META_PROPERTIES}: {e}"),
                }
            }
        }
    }

    /// Waits (bounded) until every shard holds `version`.
    async fn wait_published(&self, version: u64, deadline: Instant) -> bool {
        loop {
            let listener = self.published_event.listen();
            if self.published.get().0 >= version {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let timer = glommio::timer::sleep(left);
            futures::pin_mut!(timer);
            futures::future::select(listener, timer).await;
        }
    }

    /// Forwards an admin change to the active controller; answers once
    /// this node's shards hold it.
    pub async fn admin(&self, request: AdminRequest) -> Vec<AdminResult> {
        let items = request.items();
        let deadline = Instant::now() + ADMIN_TIMEOUT;
        let answer = self
            .client
            .call(&ControllerRequest::Admin(request), deadline)
            .await;
        let (code, message) = match answer {
            Ok(ControllerResponse::Admin { results, version }) => {
                if !self.wait_published(version, deadline).await {
                    log::warn!("metadata version {version} did not arrive in time");
                }
                return results;
            }
            Ok(ControllerResponse::Failed { code, message }) => (code, message),
            Ok(ControllerResponse::NotController { .. }) | Err(_) => (
                ErrorCode::RequestTimedOut.code(),
                format!(
                    "no active controller within {} s (is a majority of the controller quorum running?): {}",
                    ADMIN_TIMEOUT.as_secs(),
                    answer.err().unwrap_or_else(|| "no leader elected".into())
                ),
            ),
            Ok(other) => (
                ErrorCode::UnknownServerError.code(),
                format!("unexpected controller answer {other:?}"),
            ),
        };
        (0..items)
            .map(|_| AdminResult {
                error_code: code,
                message: Some(message.clone()),
                topic: None,
            })
            .collect()
    }

    /// Controlled shutdown: stops heartbeats and has the controller move
    /// this broker's leaderships now (bounded; without a controller the
    /// session timeout does it).
    pub async fn controlled_shutdown(&self) {
        self.stopping.set(true);
        if !self.cluster.broker {
            return;
        }
        let request = ControllerRequest::ControlledShutdown {
            broker_id: self.config.node_id,
        };
        let deadline = Instant::now() + Duration::from_secs(3);
        match self.client.call(&request, deadline).await {
            Ok(ControllerResponse::Done { version }) => {
                self.wait_published(version, deadline).await;
                log::info!("controlled shutdown: leaderships moved to other brokers");
            }
            Ok(other) => log::warn!("controlled shutdown: {other:?}"),
            Err(e) => {
                log::warn!("controlled shutdown: {e}; the session timeout will fence this broker")
            }
        }
    }

    /// Asks the controller to change a partition's ISR (its leader does);
    /// true once this node holds the change.
    pub async fn alter_isr(&self, request: ControllerRequest) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        match self.client.call(&request, deadline).await {
            Ok(ControllerResponse::Done { version }) => {
                self.wait_published(version, deadline).await
            }
            Ok(other) => {
                log::debug!("ISR change: {other:?}");
                false
            }
            Err(e) => {
                log::debug!("ISR change: {e}");
                false
            }
        }
    }

    /// Asks the controller to create `__consumer_offsets` (FindCoordinator
    /// calls this while the topic does not exist; clients retry).
    pub async fn create_offsets_topic(&self) {
        let mut configs = BTreeMap::new();
        configs.insert("cleanup.policy".to_string(), "compact".to_string());
        configs.insert("segment.bytes".to_string(), (100 * 1024 * 1024).to_string());
        let request = ControllerRequest::CreateOffsetsTopic {
            partitions: self.config.offsets_topic_num_partitions,
            configs,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        match self.client.call(&request, deadline).await {
            Ok(ControllerResponse::Done { version }) => {
                self.wait_published(version, deadline).await;
            }
            Ok(other) => log::debug!("creating the offsets topic: {other:?}"),
            Err(e) => log::debug!("creating the offsets topic: {e}"),
        }
    }

    /// A producer id unique in the cluster, from this broker's block.
    pub async fn producer_id(&self) -> Result<i64, ErrorCode> {
        let Ok(_permit) = self.producer_ids_lock.acquire_permit(1).await else {
            return Err(ErrorCode::CoordinatorNotAvailable);
        };
        let (next, end) = self.producer_ids.get();
        if next < end {
            self.producer_ids.set((next + 1, end));
            return Ok(next);
        }
        let request = ControllerRequest::AllocateProducerIds {
            count: PRODUCER_ID_BLOCK,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        match self.client.call(&request, deadline).await {
            Ok(ControllerResponse::ProducerIds { first, count }) => {
                self.producer_ids.set((first + 1, first + count));
                Ok(first)
            }
            _ => Err(ErrorCode::CoordinatorLoadInProgress),
        }
    }
}

/// Ends the process with one line: this node must not run.
fn refuse(message: &str) -> ! {
    log::error!("{message}");
    eprintln!("ringbroker: {message}");
    std::process::exit(1)
}

fn start_controller(
    config: &Arc<BrokerConfig>,
    cluster: &ClusterConfig,
) -> Result<Rc<Controller>, String> {
    let dir = config.data_dir.join(METADATA_LOG_DIR);
    let quorum = QuorumConfig {
        node_id: config.node_id,
        voters: cluster.voters.iter().map(|v| v.id).collect(),
        election_ticks: ELECTION_TICKS,
        heartbeat_ticks: HEARTBEAT_TICKS,
    };
    let (node, restored) = QuorumNode::open(&dir, &quorum)
        .map_err(|e| format!("cannot open the metadata log in {}: {e}", dir.display()))?;
    let peers: Vec<(i32, SocketAddr)> = cluster
        .voters
        .iter()
        .filter(|v| v.id != config.node_id)
        .filter_map(|v| Some((v.id, cluster.voter_addr(v.id)?)))
        .collect();
    let changed = Rc::new(event_listener::Event::new());
    let machine = MetadataMachine::new(changed.clone());
    let driver = QuorumDriver::new(config.node_id, node, restored, machine, &peers);
    let controller = Controller::new(config.clone(), cluster.clone(), driver.clone(), changed);
    let listen = cluster
        .controller_listen
        .ok_or_else(|| "the controller role needs a CONTROLLER listener".to_string())?;
    let listener = match crate::runtime::bind_listener(listen, false) {
        Ok(fd) => {
            use std::os::fd::{FromRawFd, IntoRawFd};
            // SAFETY: a listening TCP socket owned by nobody else.
            unsafe { glommio::net::TcpListener::from_raw_fd(fd.into_raw_fd()) }
        }
        Err(e) => return Err(format!("cannot listen on {listen} (CONTROLLER): {e}")),
    };
    glommio::spawn_local(serve_controller(
        listener,
        Rc::new(Handler(controller.clone())),
    ))
    .detach();
    glommio::spawn_local(driver.run()).detach();
    glommio::spawn_local(controller.clone().run_duties()).detach();
    log::info!(
        "controller {} listening on {listen} (voters {})",
        config.node_id,
        normalised_voters(cluster)
    );
    Ok(controller)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_properties_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            MetaProperties::load(dir.path()).expect("absent is fine"),
            MetaProperties::default()
        );
        let meta = MetaProperties {
            node_id: Some(3),
            cluster_id: Some("abcDEF".into()),
        };
        meta.save(dir.path()).expect("saved");
        assert_eq!(MetaProperties::load(dir.path()).expect("loads"), meta);
        std::fs::write(dir.path().join(META_PROPERTIES), "node.id=x\n").expect("write");
        assert!(MetaProperties::load(dir.path()).is_err());
    }
}
