//! Cluster metadata: brokers, topics with their ids, config overrides and,
//! per partition, the replica list, leader, leader epoch and ISR (Kafka's
//! `PartitionRecord`). Shard 0 owns changes and persists them; every shard
//! holds a read-only copy (`Arc<Catalog>`) replaced wholesale on each
//! change. On a single node every partition has one replica, this node,
//! which leads it; the shapes are the cluster's so replication can fill
//! them in. Dynamic configs of the BROKER and GROUP resources live here too
//! (Kafka's `ConfigRecord`s), so they are persisted and broadcast with the
//! rest.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use ringbroker_protocol::limits::TOPIC_NAME_BYTES_MAX;

/// Directory inside the data dir holding broker metadata files.
pub const META_DIR: &str = "ringbroker.meta";
const CATALOG_FILE: &str = "topics.json";

/// A broker of the cluster, as clients see it in Metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerMeta {
    /// Broker id (`node.id`).
    pub id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: u16,
    /// Rack, when configured (`broker.rack`).
    #[serde(default)]
    pub rack: Option<String>,
    /// A fenced broker leads nothing and is not listed to clients.
    #[serde(default)]
    pub fenced: bool,
    /// Bumped at every registration (Kafka's broker epoch): heartbeats
    /// from an older incarnation are refused.
    #[serde(default)]
    pub epoch: i64,
}

/// Replication metadata of one partition (Kafka's `PartitionRecord`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMeta {
    /// Brokers holding a replica, the preferred leader first.
    pub replicas: Vec<i32>,
    /// In-sync replicas (a subset of `replicas`).
    pub isr: Vec<i32>,
    /// The leader's broker id, -1 when there is none.
    pub leader: i32,
    /// Bumped on every leader change; stamped into appended batches.
    pub leader_epoch: i32,
    /// Bumped on every change of this record (leader, ISR, replicas).
    pub partition_epoch: i32,
    /// Replicas a reassignment is adding (in `replicas`, catching up).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding_replicas: Vec<i32>,
    /// Replicas a reassignment removes once the added ones are in sync.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing_replicas: Vec<i32>,
}

impl PartitionMeta {
    /// A new partition on `replicas`, led by the first, all in sync.
    pub fn new(replicas: Vec<i32>) -> PartitionMeta {
        assert!(!replicas.is_empty(), "a partition needs a replica");
        PartitionMeta {
            leader: replicas[0],
            isr: replicas.clone(),
            replicas,
            leader_epoch: 0,
            partition_epoch: 0,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        }
    }

    /// True while a reassignment of this partition runs.
    pub fn reassigning(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }

    /// The replicas the partition ends with once its reassignment
    /// completes (its replicas when none runs).
    pub fn target_replicas(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.removing_replicas.contains(r))
            .collect()
    }
}

/// One topic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopicMeta {
    /// Topic name.
    pub name: String,
    /// Topic id (Kafka's UUID), as 16 bytes.
    pub id: [u8; 16],
    /// One entry per partition, indexed by partition number. (Catalogs
    /// written before replication metadata existed hold a count here; they
    /// load as partitions with no replicas, which `Catalog::adopt_orphans`
    /// gives to this node.)
    #[serde(deserialize_with = "partitions_or_count")]
    pub partitions: Vec<PartitionMeta>,
    /// Per-topic config overrides (Kafka names).
    pub configs: BTreeMap<String, String>,
}

fn partitions_or_count<'de, D>(deserializer: D) -> Result<Vec<PartitionMeta>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Count(i32),
        List(Vec<PartitionMeta>),
    }
    Ok(match Stored::deserialize(deserializer)? {
        Stored::List(list) => list,
        Stored::Count(n) => (0..n.max(0))
            .map(|_| PartitionMeta {
                replicas: Vec::new(),
                isr: Vec::new(),
                leader: -1,
                leader_epoch: 0,
                partition_epoch: 0,
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
            })
            .collect(),
    })
}

impl TopicMeta {
    /// The topic id as a `uuid::Uuid`.
    pub fn uuid(&self) -> uuid::Uuid {
        uuid::Uuid::from_bytes(self.id)
    }
    /// True for internal topics (`__consumer_offsets`).
    pub fn is_internal(&self) -> bool {
        self.name == "__consumer_offsets" || self.name == "__transaction_state"
    }
    /// Number of partitions.
    pub fn partition_count(&self) -> i32 {
        self.partitions.len() as i32
    }
    /// The metadata of partition `index`, if it exists.
    pub fn partition(&self, index: i32) -> Option<&PartitionMeta> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }

    /// Partition `index` to change, when it exists.
    pub fn partition_mut(&mut self, index: i32) -> Option<&mut PartitionMeta> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get_mut(i))
    }
}

/// The whole metadata state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    /// Cluster id (Kafka's 22-character base64 form).
    pub cluster_id: String,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicMeta>,
    /// Registered brokers by id.
    #[serde(default)]
    pub brokers: BTreeMap<i32, BrokerMeta>,
    /// The active controller's id (-1 when unknown).
    #[serde(default = "no_controller")]
    pub controller_id: i32,
    /// Dynamic broker configs by resource name: "" holds the cluster-wide
    /// defaults, "<node.id>" one broker's own.
    #[serde(default)]
    pub broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Group configs (consumer.session.timeout.ms, ...) by group id.
    #[serde(default)]
    pub group_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// The first producer id not handed out yet (cluster mode: brokers
    /// take blocks of ids from here, so ids are unique in the cluster).
    #[serde(default)]
    pub next_producer_id: i64,
    /// Incremented on every change.
    pub version: u64,
}

fn no_controller() -> i32 {
    -1
}

impl Catalog {
    /// Loads the catalog from `data_dir`, or creates an empty one with a
    /// fresh cluster id.
    pub fn load_or_create(data_dir: &Path) -> io::Result<Catalog> {
        let path = catalog_path(data_dir);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is corrupt: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let catalog = Catalog {
                    cluster_id: new_cluster_id(),
                    ..Catalog::default()
                };
                catalog.save(data_dir)?;
                Ok(catalog)
            }
            Err(e) => Err(e),
        }
    }

    /// Persists atomically: write a temporary file, fsync, rename, fsync dir.
    pub fn save(&self, data_dir: &Path) -> io::Result<()> {
        let dir = data_dir.join(META_DIR);
        fs::create_dir_all(&dir)?;
        let tmp = dir.join(format!("{CATALOG_FILE}.tmp"));
        let bytes = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
        }
        fs::rename(&tmp, catalog_path(data_dir))?;
        fs::File::open(&dir)?.sync_all()
    }

    /// The dynamic broker configs that apply to broker `node_id`.
    pub fn dynamic_broker_configs(&self, node_id: i32) -> crate::config::DynamicBrokerConfigs {
        crate::config::DynamicBrokerConfigs {
            cluster: self.broker_configs.get("").cloned().unwrap_or_default(),
            broker: self
                .broker_configs
                .get(&node_id.to_string())
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// Drops topic configs Kafka 4.x removed (`message.format.version`,
    /// ...) from every topic, as Kafka ignores them when it replays older
    /// metadata. Returns whether anything was dropped.
    pub fn drop_removed_topic_configs(&mut self) -> bool {
        let mut changed = false;
        for topic in self.topics.values_mut() {
            let before = topic.configs.len();
            topic
                .configs
                .retain(|k, _| !crate::config::REMOVED_TOPIC_KEYS.contains(&k.as_str()));
            changed |= topic.configs.len() != before;
        }
        changed
    }

    /// Finds a topic by id.
    pub fn by_id(&self, id: &[u8; 16]) -> Option<&TopicMeta> {
        self.topics.values().find(|t| &t.id == id)
    }

    /// Ids of brokers that may hold leaders and replicas (registered, not
    /// fenced), ascending.
    pub fn live_brokers(&self) -> Vec<i32> {
        self.brokers
            .values()
            .filter(|b| !b.fenced)
            .map(|b| b.id)
            .collect()
    }

    /// The single-node cluster: `broker` is the only broker and the
    /// controller and the one replica and leader of every partition.
    /// Partitions without replicas (from a catalog written before
    /// replication metadata existed) start at leader epoch 0; partitions
    /// that named another broker (the node id changed) move here with their
    /// leader epoch bumped. Returns whether anything changed.
    pub fn adopt_single_node(&mut self, broker: BrokerMeta) -> bool {
        let id = broker.id;
        let mut changed = false;
        if self.brokers.len() != 1 || self.brokers.get(&id) != Some(&broker) {
            self.brokers = BTreeMap::from([(id, broker)]);
            changed = true;
        }
        if self.controller_id != id {
            self.controller_id = id;
            changed = true;
        }
        for topic in self.topics.values_mut() {
            for partition in &mut topic.partitions {
                if partition.replicas.is_empty() {
                    *partition = PartitionMeta::new(vec![id]);
                    changed = true;
                } else if partition.replicas != [id] || partition.leader != id {
                    let moved = PartitionMeta::new(vec![id]);
                    *partition = PartitionMeta {
                        leader_epoch: partition.leader_epoch + 1,
                        partition_epoch: partition.partition_epoch + 1,
                        ..moved
                    };
                    changed = true;
                }
            }
        }
        changed
    }
}

fn catalog_path(data_dir: &Path) -> PathBuf {
    data_dir.join(META_DIR).join(CATALOG_FILE)
}

/// A new random cluster id: 16 random bytes in URL-safe base64, no padding.
pub fn new_cluster_id() -> String {
    base64_url(uuid::Uuid::new_v4().as_bytes())
}

fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 2);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Kafka's topic-name rule: 1..=249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name '{name}' is not allowed"));
    }
    if name.len() > TOPIC_NAME_BYTES_MAX {
        return Err(format!(
            "topic name is {} bytes, longer than {TOPIC_NAME_BYTES_MAX}",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name '{name}' contains '{bad}': only ASCII letters, digits, '.', '_' and '-' are legal"
        ));
    }
    if name == META_DIR || name.starts_with(&format!("{META_DIR}-")) {
        return Err(format!("topic name '{name}' is reserved"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("orders.v1_x-2").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a/b").is_err());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
        assert!(validate_topic_name("ringbroker.meta").is_err());
    }

    #[test]
    fn cluster_id_shape() {
        let id = new_cluster_id();
        assert_eq!(id.len(), 22);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_eq!(base64_url(b"\xff\xff\xff"), "____");
    }

    #[test]
    fn save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let mut catalog = Catalog::load_or_create(dir.path()).unwrap();
        catalog.topics.insert(
            "t".into(),
            TopicMeta {
                name: "t".into(),
                id: [7; 16],
                partitions: vec![PartitionMeta::new(vec![1]); 3],
                configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
            },
        );
        catalog.version = 2;
        catalog.save(dir.path()).unwrap();
        let loaded = Catalog::load_or_create(dir.path()).unwrap();
        assert_eq!(loaded, catalog);
        assert_eq!(loaded.by_id(&[7; 16]).unwrap().name, "t");
    }

    /// A catalog written before replication metadata existed (a partition
    /// count per topic, no brokers) loads and is adopted by this node.
    #[test]
    fn loads_a_catalog_with_partition_counts() {
        let old = r#"{"cluster_id":"abc","topics":{"t":{"name":"t","id":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16],"partitions":2,"configs":{}}},"version":4}"#;
        let mut catalog: Catalog = serde_json::from_str(old).unwrap();
        assert_eq!(catalog.topics["t"].partition_count(), 2);
        assert_eq!(catalog.controller_id, -1);
        let me = BrokerMeta {
            id: 3,
            host: "127.0.0.1".into(),
            port: 9092,
            rack: None,
            fenced: false,
            epoch: 0,
        };
        assert!(catalog.adopt_single_node(me.clone()));
        let p = catalog.topics["t"].partition(1).unwrap();
        assert_eq!((p.leader, &p.replicas, &p.isr), (3, &vec![3], &vec![3]));
        assert_eq!(catalog.live_brokers(), vec![3]);
        assert!(!catalog.adopt_single_node(me));
    }
}
