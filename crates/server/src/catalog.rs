//! Cluster metadata: topics, their ids, partition counts and config
//! overrides. Shard 0 owns changes and persists them; every shard holds a
//! read-only copy (`Arc<Catalog>`) replaced wholesale on each change.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use ringbroker_protocol::limits::TOPIC_NAME_BYTES_MAX;

/// Directory inside the data dir holding broker metadata files.
pub const META_DIR: &str = "ringbroker.meta";
const CATALOG_FILE: &str = "topics.json";

/// One topic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopicMeta {
    /// Topic name.
    pub name: String,
    /// Topic id (Kafka's UUID), as 16 bytes.
    pub id: [u8; 16],
    /// Number of partitions.
    pub partitions: i32,
    /// Per-topic config overrides (Kafka names).
    pub configs: BTreeMap<String, String>,
}

impl TopicMeta {
    /// The topic id as a `uuid::Uuid`.
    pub fn uuid(&self) -> uuid::Uuid {
        uuid::Uuid::from_bytes(self.id)
    }
    /// True for internal topics (`__consumer_offsets`).
    pub fn is_internal(&self) -> bool {
        self.name == "__consumer_offsets"
    }
}

/// The whole metadata state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    /// Cluster id (Kafka's 22-character base64 form).
    pub cluster_id: String,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicMeta>,
    /// Incremented on every change.
    pub version: u64,
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

    /// Finds a topic by id.
    pub fn by_id(&self, id: &[u8; 16]) -> Option<&TopicMeta> {
        self.topics.values().find(|t| &t.id == id)
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
                partitions: 3,
                configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
            },
        );
        catalog.version = 2;
        catalog.save(dir.path()).unwrap();
        let loaded = Catalog::load_or_create(dir.path()).unwrap();
        assert_eq!(loaded, catalog);
        assert_eq!(loaded.by_id(&[7; 16]).unwrap().name, "t");
    }
}
