//! Configuration with Kafka's property names, so operators bring their
//! `server.properties`. Precedence: built-in defaults < `--config` file <
//! `--override key=value` < explicit flags (`--listen`, `--data-dir`,
//! `--shards`, `--node-id`).

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use ringbroker_protocol::limits::{
    INFLIGHT_REQUESTS_PER_CONNECTION_MAX_DEFAULT, REQUEST_BYTES_MAX_DEFAULT,
};
use ringbroker_storage::writer::WriteMode;

/// A configuration problem, printed as one line.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ConfigError {
    /// A known key with a value that does not parse or is out of range.
    #[error("invalid value '{value}' for {key}: {reason}")]
    InvalidValue {
        /// The key.
        key: String,
        /// The value given.
        value: String,
        /// What was expected.
        reason: String,
    },
    /// A key this broker does not know (topic configs).
    #[error("unknown config '{0}'")]
    UnknownKey(String),
    /// The config file cannot be read.
    #[error("cannot read config file {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        message: String,
    },
    /// A bad command line.
    #[error("{0} (see --help)")]
    Usage(String),
}

fn invalid(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// How record timestamps are set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampType {
    /// The producer's timestamp is kept.
    CreateTime,
    /// The broker stamps its clock at append.
    LogAppendTime,
}

/// Where a config value comes from (DescribeConfigs v1+ codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    /// Unknown.
    Unknown,
    /// A topic override.
    DynamicTopic,
    /// A dynamic per-broker setting.
    DynamicBroker,
    /// A dynamic cluster-wide default.
    DynamicDefaultBroker,
    /// server.properties or the command line.
    StaticBroker,
    /// The built-in default.
    Default,
    /// A group config (GROUP resource).
    Group,
}

impl ConfigSource {
    /// The wire code.
    pub fn code(self) -> i8 {
        match self {
            ConfigSource::Unknown => 0,
            ConfigSource::DynamicTopic => 1,
            ConfigSource::DynamicBroker => 2,
            ConfigSource::DynamicDefaultBroker => 3,
            ConfigSource::StaticBroker => 4,
            ConfigSource::Default => 5,
            ConfigSource::Group => 8,
        }
    }
}

/// The type of a config value (DescribeConfigs v3+ codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigType {
    /// Unknown.
    Unknown,
    /// true/false.
    Boolean,
    /// Text.
    String,
    /// 32-bit integer.
    Int,
    /// 16-bit integer.
    Short,
    /// 64-bit integer.
    Long,
    /// Floating point.
    Double,
    /// Comma-separated list.
    List,
    /// A class name.
    Class,
    /// A secret.
    Password,
}

impl ConfigType {
    /// The wire code.
    pub fn code(self) -> i8 {
        match self {
            ConfigType::Unknown => 0,
            ConfigType::Boolean => 1,
            ConfigType::String => 2,
            ConfigType::Int => 3,
            ConfigType::Short => 4,
            ConfigType::Long => 5,
            ConfigType::Double => 6,
            ConfigType::List => 7,
            ConfigType::Class => 8,
            ConfigType::Password => 9,
        }
    }
}

/// One described config.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigEntry {
    /// Kafka name.
    pub name: String,
    /// Value as Kafka prints it.
    pub value: Option<String>,
    /// True when it cannot be altered at runtime.
    pub read_only: bool,
    /// True when the built-in default applies.
    pub is_default: bool,
    /// Where the value comes from.
    pub source: ConfigSource,
    /// True for secrets.
    pub sensitive: bool,
    /// Value type.
    pub config_type: ConfigType,
    /// One-line documentation.
    pub documentation: Option<String>,
}

/// Per-topic settings; the broker's `log.*` keys set their defaults.
///
/// `cleanup.policy=compact` is accepted and stored, but compaction is not
/// performed; retention deletes old segments only when the policy
/// includes `delete`. `compression.type` is stored and described; batches
/// are kept as the producer compressed them.
#[derive(Clone, Debug, PartialEq)]
pub struct TopicConfig {
    /// retention.ms (-1 = keep forever).
    pub retention_ms: i64,
    /// retention.bytes (-1 = unlimited).
    pub retention_bytes: i64,
    /// segment.bytes.
    pub segment_bytes: u64,
    /// segment.ms.
    pub segment_ms: u64,
    /// max.message.bytes.
    pub max_message_bytes: usize,
    /// message.timestamp.type.
    pub message_timestamp_type: TimestampType,
    /// index.interval.bytes.
    pub index_interval_bytes: u32,
    /// cleanup.policy (normalized: "delete", "compact" or "compact,delete").
    pub cleanup_policy: String,
    /// compression.type.
    pub compression_type: String,
    /// min.insync.replicas.
    pub min_insync_replicas: i32,
    /// flush.messages (None = never).
    pub flush_messages: Option<u64>,
    /// flush.ms (None = never).
    pub flush_ms: Option<u64>,
    /// segment.index.bytes.
    pub segment_index_bytes: u32,
    /// file.delete.delay.ms.
    pub file_delete_delay_ms: u64,
    /// unclean.leader.election.enable.
    pub unclean_leader_election_enable: bool,
    /// preallocate.
    pub preallocate: bool,
    /// Values of the configs ringbroker accepts, stores and describes but
    /// does not enforce ([`STORED_TOPIC_KEYS`]), normalized as Kafka prints
    /// them; a key absent here has its Kafka default.
    pub stored: BTreeMap<String, String>,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            retention_ms: 604_800_000,
            retention_bytes: -1,
            segment_bytes: 1_073_741_824,
            segment_ms: 604_800_000,
            max_message_bytes: 1_048_588,
            message_timestamp_type: TimestampType::CreateTime,
            index_interval_bytes: 4096,
            cleanup_policy: "delete".into(),
            compression_type: "producer".into(),
            min_insync_replicas: 1,
            flush_messages: None,
            flush_ms: None,
            segment_index_bytes: 10_485_760,
            file_delete_delay_ms: 60_000,
            unclean_leader_election_enable: false,
            // Kafka's default is false; ringbroker reserves 64 MiB extents
            // ahead of appends (scripts/write-modes.sh measures both).
            preallocate: true,
            stored: BTreeMap::new(),
        }
    }
}

/// The topic configs ringbroker enforces (or, for a few, stores in typed
/// fields): (topic key, broker key, type, documentation).
const TOPIC_KEYS: &[(&str, &str, ConfigType, &str)] = &[
    (
        "cleanup.policy",
        "log.cleanup.policy",
        ConfigType::List,
        "delete and/or compact (compaction is not performed yet)",
    ),
    (
        "compression.type",
        "compression.type",
        ConfigType::String,
        "producer, uncompressed, gzip, snappy, lz4 or zstd",
    ),
    (
        "file.delete.delay.ms",
        "log.segment.delete.delay.ms",
        ConfigType::Long,
        "delay before deleting a file from disk",
    ),
    (
        "flush.messages",
        "log.flush.interval.messages",
        ConfigType::Long,
        "messages between forced fsyncs",
    ),
    (
        "flush.ms",
        "log.flush.interval.ms",
        ConfigType::Long,
        "time between forced fsyncs",
    ),
    (
        "index.interval.bytes",
        "log.index.interval.bytes",
        ConfigType::Int,
        "bytes between offset index entries",
    ),
    (
        "max.message.bytes",
        "message.max.bytes",
        ConfigType::Int,
        "largest record batch accepted",
    ),
    (
        "message.timestamp.type",
        "log.message.timestamp.type",
        ConfigType::String,
        "CreateTime or LogAppendTime",
    ),
    (
        "min.insync.replicas",
        "min.insync.replicas",
        ConfigType::Int,
        "replicas that must acknowledge acks=all",
    ),
    (
        "preallocate",
        "log.preallocate",
        ConfigType::Boolean,
        "reserve segment space ahead of appends (fallocate, 64 MiB steps)",
    ),
    (
        "retention.bytes",
        "log.retention.bytes",
        ConfigType::Long,
        "size a partition may reach before old segments are deleted",
    ),
    (
        "retention.ms",
        "log.retention.ms",
        ConfigType::Long,
        "age after which segments are deleted",
    ),
    (
        "segment.bytes",
        "log.segment.bytes",
        ConfigType::Int,
        "segment file size",
    ),
    (
        "segment.index.bytes",
        "log.index.size.max.bytes",
        ConfigType::Int,
        "offset index size",
    ),
    (
        "segment.ms",
        "log.roll.ms",
        ConfigType::Long,
        "time after which a segment rolls",
    ),
    (
        "unclean.leader.election.enable",
        "unclean.leader.election.enable",
        ConfigType::Boolean,
        "allow out-of-sync replicas to lead",
    ),
];

fn parse_i64(key: &str, value: &str) -> Result<i64, ConfigError> {
    value
        .trim()
        .parse()
        .map_err(|_| invalid(key, value, "expected an integer"))
}

fn parse_u64_range(key: &str, value: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
    let v = parse_i64(key, value)?;
    u64::try_from(v)
        .ok()
        .filter(|v| (min..=max).contains(v))
        .ok_or_else(|| invalid(key, value, format!("expected an integer in {min}..={max}")))
}

fn parse_bool(key: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(key, value, "expected true or false")),
    }
}

/// -1 or Long.MAX mean "never".
fn parse_optional(key: &str, value: &str) -> Result<Option<u64>, ConfigError> {
    let v = parse_i64(key, value)?;
    match v {
        i64::MAX => Ok(None),
        v if v >= 1 => Ok(Some(v as u64)),
        _ => Err(invalid(key, value, "expected a positive integer")),
    }
}

fn retention(key: &str, value: &str) -> Result<i64, ConfigError> {
    let v = parse_i64(key, value)?;
    if v < -1 {
        return Err(invalid(
            key,
            value,
            "expected -1 (unlimited) or a non-negative integer",
        ));
    }
    Ok(v)
}

impl TopicConfig {
    /// Sets one topic-level key.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        match key {
            "retention.ms" => self.retention_ms = retention(key, value)?,
            "retention.bytes" => self.retention_bytes = retention(key, value)?,
            "segment.bytes" => {
                self.segment_bytes = parse_u64_range(key, value, 1024, i32::MAX as u64)?
            }
            "segment.ms" => self.segment_ms = parse_u64_range(key, value, 1, i64::MAX as u64)?,
            "max.message.bytes" => {
                self.max_message_bytes = parse_u64_range(key, value, 0, i32::MAX as u64)? as usize
            }
            "message.timestamp.type" => {
                self.message_timestamp_type = match value.trim() {
                    "CreateTime" => TimestampType::CreateTime,
                    "LogAppendTime" => TimestampType::LogAppendTime,
                    _ => return Err(invalid(key, value, "expected CreateTime or LogAppendTime")),
                }
            }
            "index.interval.bytes" => {
                self.index_interval_bytes = parse_u64_range(key, value, 0, i32::MAX as u64)? as u32
            }
            "cleanup.policy" => {
                let mut parts: Vec<String> = value
                    .split(',')
                    .map(|p| p.trim().to_ascii_lowercase())
                    .filter(|p| !p.is_empty())
                    .collect();
                parts.sort();
                parts.dedup();
                if parts.is_empty() || parts.iter().any(|p| p != "delete" && p != "compact") {
                    return Err(invalid(
                        key,
                        value,
                        "expected delete, compact or compact,delete",
                    ));
                }
                self.cleanup_policy = parts.join(",");
            }
            "compression.type" => {
                let v = value.trim().to_ascii_lowercase();
                if !["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"]
                    .contains(&v.as_str())
                {
                    return Err(invalid(
                        key,
                        value,
                        "expected producer, uncompressed, gzip, snappy, lz4 or zstd",
                    ));
                }
                self.compression_type = v;
            }
            "min.insync.replicas" => {
                self.min_insync_replicas = parse_u64_range(key, value, 1, i32::MAX as u64)? as i32
            }
            "flush.messages" => self.flush_messages = parse_optional(key, value)?,
            "flush.ms" => self.flush_ms = parse_optional(key, value)?,
            "segment.index.bytes" => {
                self.segment_index_bytes = parse_u64_range(key, value, 8, i32::MAX as u64)? as u32
            }
            "file.delete.delay.ms" => {
                self.file_delete_delay_ms = parse_u64_range(key, value, 0, i64::MAX as u64)?
            }
            "unclean.leader.election.enable" => {
                self.unclean_leader_election_enable = parse_bool(key, value)?
            }
            "preallocate" => self.preallocate = parse_bool(key, value)?,
            _ => {
                let spec = stored_key(key).ok_or_else(|| ConfigError::UnknownKey(key.into()))?;
                let normalized = spec
                    .check
                    .normalize(value)
                    .map_err(|reason| invalid(key, value, reason))?;
                if key == "remote.storage.enable" && normalized == "true" {
                    return Err(invalid(key, value, NO_TIERED_STORAGE));
                }
                self.stored.insert(key.to_string(), normalized);
            }
        }
        Ok(())
    }

    /// True when cleanup.policy includes compact: every record needs a key.
    pub fn is_compacted(&self) -> bool {
        self.cleanup_policy
            .split(',')
            .any(|p| p.trim() == "compact")
    }

    /// Resets one topic-level key to its value in `defaults`.
    pub fn reset(&mut self, key: &str, defaults: &TopicConfig) -> Result<(), ConfigError> {
        let value = defaults
            .get(key)
            .ok_or_else(|| ConfigError::UnknownKey(key.to_string()))?;
        self.set(key, &value)
    }

    /// The value of a topic-level key as Kafka prints it.
    pub fn get(&self, key: &str) -> Option<String> {
        let never = |v: Option<u64>| v.map_or(i64::MAX.to_string(), |v| v.to_string());
        Some(match key {
            "retention.ms" => self.retention_ms.to_string(),
            "retention.bytes" => self.retention_bytes.to_string(),
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.ms" => self.segment_ms.to_string(),
            "max.message.bytes" => self.max_message_bytes.to_string(),
            "message.timestamp.type" => match self.message_timestamp_type {
                TimestampType::CreateTime => "CreateTime".into(),
                TimestampType::LogAppendTime => "LogAppendTime".into(),
            },
            "index.interval.bytes" => self.index_interval_bytes.to_string(),
            "cleanup.policy" => self.cleanup_policy.clone(),
            "compression.type" => self.compression_type.clone(),
            "min.insync.replicas" => self.min_insync_replicas.to_string(),
            "flush.messages" => never(self.flush_messages),
            "flush.ms" => never(self.flush_ms),
            "segment.index.bytes" => self.segment_index_bytes.to_string(),
            "file.delete.delay.ms" => self.file_delete_delay_ms.to_string(),
            "unclean.leader.election.enable" => self.unclean_leader_election_enable.to_string(),
            "preallocate" => self.preallocate.to_string(),
            _ => {
                let spec = stored_key(key)?;
                self.stored
                    .get(key)
                    .cloned()
                    .unwrap_or_else(|| spec.default.to_string())
            }
        })
    }

    /// True for a topic-level key Kafka 4.x knows (enforced or only
    /// stored by ringbroker).
    pub fn is_known_key(key: &str) -> bool {
        TOPIC_KEYS.iter().any(|(k, ..)| *k == key) || stored_key(key).is_some()
    }

    /// True for a topic-level key ringbroker accepts, stores and describes
    /// without enforcing it.
    pub fn is_stored_only(key: &str) -> bool {
        stored_key(key).is_some()
    }

    /// The broker-level key that sets the default of a topic key.
    pub fn broker_synonym(topic_key: &str) -> Option<&'static str> {
        TOPIC_KEYS
            .iter()
            .find(|(k, ..)| *k == topic_key)
            .map(|(_, b, ..)| *b)
            .or_else(|| stored_key(topic_key).and_then(|s| s.broker_key))
    }

    /// The topic-level key whose default a broker-level key sets.
    pub fn topic_key_of(broker_key: &str) -> Option<&'static str> {
        TOPIC_KEYS
            .iter()
            .find(|(_, b, ..)| *b == broker_key)
            .map(|(t, ..)| *t)
            .or_else(|| {
                STORED_TOPIC_KEYS
                    .iter()
                    .find(|s| s.broker_key == Some(broker_key))
                    .map(|s| s.name)
            })
    }

    /// Every topic-level key Kafka 4.x defines, sorted by name, with its
    /// broker synonym, type and documentation.
    pub fn all_keys() -> Vec<(&'static str, Option<&'static str>, ConfigType, &'static str)> {
        let mut keys: Vec<_> = TOPIC_KEYS
            .iter()
            .map(|(k, b, t, d)| (*k, Some(*b), *t, *d))
            .chain(
                STORED_TOPIC_KEYS
                    .iter()
                    .map(|s| (s.name, s.broker_key, s.config_type, s.doc)),
            )
            .collect();
        keys.sort_by_key(|k| k.0);
        keys
    }

    /// Checks what Kafka checks across keys once all are set:
    /// min.compaction.lag.ms must not exceed max.compaction.lag.ms.
    pub fn check_consistency(&self) -> Result<(), String> {
        let lag = |key: &str| {
            self.get(key)
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0)
        };
        let (min, max) = (lag("min.compaction.lag.ms"), lag("max.compaction.lag.ms"));
        if min > max {
            return Err(format!(
                "conflict topic config setting min.compaction.lag.ms ({min}) > max.compaction.lag.ms ({max})"
            ));
        }
        Ok(())
    }

    /// Every topic-level key for DescribeConfigs, sorted by name: the value
    /// (`defaults` with `overrides` applied) and where it comes from, the
    /// topic's override first, then the broker layers in `broker`.
    pub fn describe(
        defaults: &TopicConfig,
        overrides: &BTreeMap<String, String>,
        broker: &BrokerLayers,
    ) -> Vec<ConfigEntry> {
        let effective =
            topic_config_from_overrides(defaults, overrides).unwrap_or_else(|_| defaults.clone());
        TopicConfig::all_keys()
            .into_iter()
            .map(|(key, broker_key, config_type, doc)| {
                let source = if overrides.contains_key(key) {
                    ConfigSource::DynamicTopic
                } else {
                    broker_key.map_or(ConfigSource::Default, |b| broker.source(b))
                };
                ConfigEntry {
                    name: key.to_string(),
                    value: effective.get(key),
                    read_only: false,
                    is_default: source == ConfigSource::Default,
                    source,
                    sensitive: false,
                    config_type,
                    documentation: Some(doc.to_string()),
                }
            })
            .collect()
    }
}

/// Topic configs Kafka 4.x removed: refused when set, ignored (and dropped
/// at start) when an older catalog holds them, as Kafka ignores them when it
/// replays its metadata log.
pub const REMOVED_TOPIC_KEYS: &[&str] = &[
    "message.format.version",
    "message.timestamp.difference.max.ms",
];

/// Why `remote.storage.enable=true` is refused: ringbroker has no tiered
/// storage (Kafka's answer when `remote.log.storage.system.enable` is off).
const NO_TIERED_STORAGE: &str =
    "Tiered Storage functionality is disabled in the broker. Topic cannot be configured with remote log storage.";

/// How Kafka checks a config value (the type and validator of its ConfigDef).
#[derive(Clone, Copy, Debug)]
pub enum Check {
    /// A long in `min..=max`.
    Long(i64, i64),
    /// An int in `min..=max`.
    Int(i64, i64),
    /// An int in `min..=max`, or -1 (the codec's default level).
    IntOrMinusOne(i64, i64),
    /// A double in `min..=max`.
    Double(f64, f64),
    /// true or false.
    Bool,
    /// One of these words (lowercase).
    OneOf(&'static [&'static str]),
    /// Kafka's throttled-replica list: `*`, or `partition:broker` pairs.
    ThrottledReplicas,
}

impl Check {
    /// The value normalized as Kafka prints it, or what was expected.
    pub fn normalize(self, value: &str) -> Result<String, String> {
        let v = value.trim();
        let integer = |min: i64, max: i64, kind: &str| -> Result<i64, String> {
            let n: i64 = v
                .parse()
                .map_err(|_| format!("Not a number of type {kind}"))?;
            if n < min || n > max {
                return Err(range_text(min, max));
            }
            Ok(n)
        };
        match self {
            Check::Long(min, max) => integer(min, max, "LONG").map(|n| n.to_string()),
            Check::Int(min, max) => integer(min, max, "INT").map(|n| n.to_string()),
            Check::IntOrMinusOne(min, max) => {
                let n = integer(i64::from(i32::MIN), i64::from(i32::MAX), "INT")?;
                if n != -1 && (n < min || n > max) {
                    return Err(format!("Value must be between {min} and {max}, or -1"));
                }
                Ok(n.to_string())
            }
            Check::Double(min, max) => {
                let n: f64 = v
                    .parse()
                    .map_err(|_| "Not a number of type DOUBLE".to_string())?;
                if !(min..=max).contains(&n) {
                    return Err(format!("Value must be in [{min}, {max}]"));
                }
                Ok(java_double(n))
            }
            Check::Bool => match v.to_ascii_lowercase().as_str() {
                "true" => Ok("true".into()),
                "false" => Ok("false".into()),
                _ => Err("Expected value to be either true or false".into()),
            },
            Check::OneOf(words) => {
                let lower = v.to_ascii_lowercase();
                words
                    .iter()
                    .find(|w| **w == lower)
                    .map(|w| w.to_string())
                    .ok_or_else(|| format!("String must be one of: {}", words.join(", ")))
            }
            Check::ThrottledReplicas => {
                let items: Vec<&str> = v
                    .split(',')
                    .map(str::trim)
                    .filter(|i| !i.is_empty())
                    .collect();
                let pair = |i: &str| {
                    i.split_once(':').is_some_and(|(p, b)| {
                        !p.is_empty()
                            && !b.is_empty()
                            && p.bytes().all(|c| c.is_ascii_digit())
                            && b.bytes().all(|c| c.is_ascii_digit())
                    })
                };
                if items == ["*"] || items.iter().all(|i| pair(i)) {
                    Ok(items.join(","))
                } else {
                    Err("must be the literal '*' or a list of replicas in the following format: [partitionId]:[brokerId],[partitionId]:[brokerId],...".into())
                }
            }
        }
    }
}

/// Kafka's range message for integer configs.
fn range_text(min: i64, max: i64) -> String {
    match (min, max) {
        (min, i64::MAX) => format!("Value must be at least {min}"),
        (min, max) if max == i64::from(i32::MAX) => format!("Value must be at least {min}"),
        (min, max) => format!("Value must be no more than {max} and at least {min}"),
    }
}

/// A double printed as Java prints it (`0.5`, `1.0`).
fn java_double(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e16 {
        format!("{n:.1}")
    } else {
        n.to_string()
    }
}

/// A topic config ringbroker accepts, stores and describes but does not
/// enforce: Kafka's name, its broker synonym, type, default and check.
#[derive(Clone, Copy, Debug)]
pub struct StoredKey {
    /// Topic-level name.
    pub name: &'static str,
    /// The broker-level key that sets its default, if Kafka has one.
    pub broker_key: Option<&'static str>,
    /// Value type.
    pub config_type: ConfigType,
    /// Kafka 4.x's default, as Kafka prints it.
    pub default: &'static str,
    /// What a value must be.
    pub check: Check,
    /// One-line documentation (says that ringbroker does not enforce it).
    pub doc: &'static str,
}

const LONG_MAX: i64 = i64::MAX;

/// Kafka 4.x topic configs that ringbroker stores and describes without
/// enforcing them (README: "Accepted, stored and described but not
/// enforced").
pub const STORED_TOPIC_KEYS: &[StoredKey] = &[
    StoredKey {
        name: "compression.gzip.level",
        broker_key: Some("compression.gzip.level"),
        config_type: ConfigType::Int,
        default: "-1",
        check: Check::IntOrMinusOne(1, 9),
        doc: "gzip level for broker recompression (not enforced: batches are stored as produced)",
    },
    StoredKey {
        name: "compression.lz4.level",
        broker_key: Some("compression.lz4.level"),
        config_type: ConfigType::Int,
        default: "9",
        check: Check::Int(1, 17),
        doc: "lz4 level for broker recompression (not enforced: batches are stored as produced)",
    },
    StoredKey {
        name: "compression.zstd.level",
        broker_key: Some("compression.zstd.level"),
        config_type: ConfigType::Int,
        default: "3",
        check: Check::Int(-131_072, 22),
        doc: "zstd level for broker recompression (not enforced: batches are stored as produced)",
    },
    StoredKey {
        name: "delete.retention.ms",
        broker_key: Some("log.cleaner.delete.retention.ms"),
        config_type: ConfigType::Long,
        default: "86400000",
        check: Check::Long(0, LONG_MAX),
        doc: "how long compaction keeps tombstones (not enforced: no compaction yet)",
    },
    StoredKey {
        name: "follower.replication.throttled.replicas",
        broker_key: None,
        config_type: ConfigType::List,
        default: "",
        check: Check::ThrottledReplicas,
        doc: "replicas throttled on the follower side (not enforced: no replication quotas)",
    },
    StoredKey {
        name: "leader.replication.throttled.replicas",
        broker_key: None,
        config_type: ConfigType::List,
        default: "",
        check: Check::ThrottledReplicas,
        doc: "replicas throttled on the leader side (not enforced: no replication quotas)",
    },
    StoredKey {
        name: "local.retention.bytes",
        broker_key: Some("log.local.retention.bytes"),
        config_type: ConfigType::Long,
        default: "-2",
        check: Check::Long(-2, LONG_MAX),
        doc: "local size kept with tiered storage (not enforced: no tiered storage)",
    },
    StoredKey {
        name: "local.retention.ms",
        broker_key: Some("log.local.retention.ms"),
        config_type: ConfigType::Long,
        default: "-2",
        check: Check::Long(-2, LONG_MAX),
        doc: "local time kept with tiered storage (not enforced: no tiered storage)",
    },
    StoredKey {
        name: "max.compaction.lag.ms",
        broker_key: Some("log.cleaner.max.compaction.lag.ms"),
        config_type: ConfigType::Long,
        default: "9223372036854775807",
        check: Check::Long(1, LONG_MAX),
        doc: "longest time a record stays uncompacted (not enforced: no compaction yet)",
    },
    StoredKey {
        name: "message.downconversion.enable",
        broker_key: Some("log.message.downconversion.enable"),
        config_type: ConfigType::Boolean,
        default: "true",
        check: Check::Bool,
        doc: "deprecated in Kafka 4.x, no effect (ringbroker never down-converts)",
    },
    StoredKey {
        name: "message.timestamp.after.max.ms",
        broker_key: Some("log.message.timestamp.after.max.ms"),
        config_type: ConfigType::Long,
        default: "3600000",
        check: Check::Long(0, LONG_MAX),
        doc: "how far in the future a record timestamp may be (not enforced yet)",
    },
    StoredKey {
        name: "message.timestamp.before.max.ms",
        broker_key: Some("log.message.timestamp.before.max.ms"),
        config_type: ConfigType::Long,
        default: "9223372036854775807",
        check: Check::Long(0, LONG_MAX),
        doc: "how far in the past a record timestamp may be (not enforced yet)",
    },
    StoredKey {
        name: "min.cleanable.dirty.ratio",
        broker_key: Some("log.cleaner.min.cleanable.ratio"),
        config_type: ConfigType::Double,
        default: "0.5",
        check: Check::Double(0.0, 1.0),
        doc: "dirty ratio that triggers compaction (not enforced: no compaction yet)",
    },
    StoredKey {
        name: "min.compaction.lag.ms",
        broker_key: Some("log.cleaner.min.compaction.lag.ms"),
        config_type: ConfigType::Long,
        default: "0",
        check: Check::Long(0, LONG_MAX),
        doc: "shortest time a record stays uncompacted (not enforced: no compaction yet)",
    },
    StoredKey {
        name: "remote.log.copy.disable",
        broker_key: None,
        config_type: ConfigType::Boolean,
        default: "false",
        check: Check::Bool,
        doc: "stop copying to tiered storage (not enforced: no tiered storage)",
    },
    StoredKey {
        name: "remote.log.delete.on.disable",
        broker_key: None,
        config_type: ConfigType::Boolean,
        default: "false",
        check: Check::Bool,
        doc: "delete tiered data when tiering is disabled (not enforced: no tiered storage)",
    },
    StoredKey {
        name: "remote.storage.enable",
        broker_key: None,
        config_type: ConfigType::Boolean,
        default: "false",
        check: Check::Bool,
        doc: "tiered storage for the topic (only false: ringbroker has no tiered storage)",
    },
    StoredKey {
        name: "segment.jitter.ms",
        broker_key: Some("log.roll.jitter.ms"),
        config_type: ConfigType::Long,
        default: "0",
        check: Check::Long(0, LONG_MAX),
        doc: "random jitter subtracted from segment.ms (not enforced yet)",
    },
];

fn stored_key(name: &str) -> Option<&'static StoredKey> {
    STORED_TOPIC_KEYS.iter().find(|s| s.name == name)
}

/// The broker keys that set the same setting, the preferred first
/// (log.retention.ms, log.retention.minutes, log.retention.hours).
fn broker_alternatives(broker_key: &str) -> &'static [&'static str] {
    match broker_key {
        "log.retention.ms" => &[
            "log.retention.ms",
            "log.retention.minutes",
            "log.retention.hours",
        ],
        "log.roll.ms" => &["log.roll.ms", "log.roll.hours"],
        "log.roll.jitter.ms" => &["log.roll.jitter.ms", "log.roll.jitter.hours"],
        _ => &[],
    }
}

/// True when `broker_key` or an alternative name for the same setting was
/// set explicitly (server.properties or the command line).
fn explicitly_set(broker_key: &str, explicit: &BTreeMap<String, String>) -> bool {
    explicit.contains_key(broker_key)
        || broker_alternatives(broker_key)
            .iter()
            .any(|k| explicit.contains_key(*k))
}

/// Applies topic overrides on top of the broker defaults. Keys Kafka 4.x
/// removed ([`REMOVED_TOPIC_KEYS`]) are ignored.
pub fn topic_config_from_overrides(
    defaults: &TopicConfig,
    overrides: &BTreeMap<String, String>,
) -> Result<TopicConfig, ConfigError> {
    let mut config = defaults.clone();
    for (key, value) in overrides {
        if REMOVED_TOPIC_KEYS.contains(&key.as_str()) {
            continue;
        }
        config.set(key, value)?;
    }
    Ok(config)
}

/// Broker configs changed at run time (Kafka's dynamic broker configs,
/// IncrementalAlterConfigs and AlterConfigs on the BROKER resource), kept
/// in the catalog: the cluster-wide defaults (resource name "") and this
/// broker's own (resource name = node.id).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DynamicBrokerConfigs {
    /// Cluster-wide defaults (DYNAMIC_DEFAULT_BROKER_CONFIG).
    pub cluster: BTreeMap<String, String>,
    /// This broker's own (DYNAMIC_BROKER_CONFIG), over the cluster's.
    pub broker: BTreeMap<String, String>,
}

impl DynamicBrokerConfigs {
    /// The dynamic value of `key` and its source, per-broker first.
    pub fn get(&self, key: &str) -> Option<(&str, ConfigSource)> {
        self.broker
            .get(key)
            .map(|v| (v.as_str(), ConfigSource::DynamicBroker))
            .or_else(|| {
                self.cluster
                    .get(key)
                    .map(|v| (v.as_str(), ConfigSource::DynamicDefaultBroker))
            })
    }
}

/// What a broker key allows at run time (Kafka's DynamicBrokerConfig).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerKeyMode {
    /// Dynamic in Kafka and applied by ringbroker at once on every shard:
    /// the broker synonyms of topic configs (log.retention.ms,
    /// log.segment.bytes, message.max.bytes, ...).
    Applied,
    /// Dynamic in Kafka (or a custom key, which Kafka accepts) but without
    /// an effect in ringbroker: stored and described only.
    NoEffect,
    /// Read-only (static): Kafka answers INVALID_REQUEST "Cannot update
    /// these configs dynamically".
    ReadOnly,
}

/// Broker keys that cannot change at run time. Kafka's static keys among
/// those ringbroker knows, plus `listeners` and `advertised.listeners`,
/// which Kafka can change per broker but ringbroker cannot (it would have
/// to rebind every shard's listener).
const READ_ONLY_BROKER_KEYS: &[&str] = &[
    "listeners",
    "advertised.listeners",
    "node.id",
    "broker.id",
    "log.dirs",
    "log.dir",
    "num.partitions",
    "default.replication.factor",
    "auto.create.topics.enable",
    "delete.topic.enable",
    "socket.request.max.bytes",
    "connections.max.idle.ms",
    "log.retention.check.interval.ms",
    "log.retention.minutes",
    "log.retention.hours",
    "log.roll.hours",
    "log.roll.jitter.hours",
    "log.flush.scheduler.interval.ms",
    "group.initial.rebalance.delay.ms",
    "group.min.session.timeout.ms",
    "group.max.session.timeout.ms",
    "offsets.topic.num.partitions",
    "offsets.topic.replication.factor",
    "offsets.retention.minutes",
    "transaction.state.log.replication.factor",
    "transaction.state.log.min.isr",
    "transaction.state.log.num.partitions",
    "transaction.max.timeout.ms",
    "transactional.id.expiration.ms",
    "transaction.abort.timed.out.transaction.cleanup.interval.ms",
    "transaction.remove.expired.transaction.cleanup.interval.ms",
    "queued.max.requests",
    "replica.lag.time.max.ms",
    "auto.leader.rebalance.enable",
    "leader.imbalance.check.interval.seconds",
    "log.cleaner.enable",
    "metadata.log.dir",
    "process.roles",
    "controller.quorum.voters",
    "controller.quorum.bootstrap.servers",
    "controller.listener.names",
    "inter.broker.listener.name",
    "zookeeper.connect",
    "zookeeper.connection.timeout.ms",
];

/// What `key` allows at run time.
pub fn broker_key_mode(key: &str) -> BrokerKeyMode {
    if TopicConfig::topic_key_of(key).is_some() {
        BrokerKeyMode::Applied
    } else if READ_ONLY_BROKER_KEYS.contains(&key) || key.starts_with("ringbroker.") {
        BrokerKeyMode::ReadOnly
    } else {
        BrokerKeyMode::NoEffect
    }
}

/// Checks a dynamic broker config change as Kafka does before storing it:
/// read-only keys are refused, values of applied keys must parse. The
/// message is Kafka's; the error code is INVALID_REQUEST.
pub fn check_dynamic_broker_configs(configs: &BTreeMap<String, String>) -> Result<(), String> {
    let read_only: Vec<&str> = configs
        .keys()
        .map(String::as_str)
        .filter(|k| broker_key_mode(k) == BrokerKeyMode::ReadOnly)
        .collect();
    if !read_only.is_empty() {
        return Err(format!(
            "Cannot update these configs dynamically: Set({})",
            read_only.join(", ")
        ));
    }
    let mut scratch = TopicConfig::default();
    for (key, value) in configs {
        let Some(topic_key) = TopicConfig::topic_key_of(key) else {
            continue;
        };
        if let Err(e) = scratch.set(topic_key, value) {
            let reason = match e {
                ConfigError::InvalidValue { reason, .. } => reason,
                other => other.to_string(),
            };
            return Err(format!(
                "Invalid value {value} for configuration {key}: {reason}"
            ));
        }
    }
    Ok(())
}

/// The layers a broker-level key's value comes from, highest first: this
/// broker's dynamic configs, the cluster's dynamic defaults, the static
/// configuration (server.properties, --override, flags), the built-in
/// default.
pub struct BrokerLayers<'a> {
    /// Dynamic configs (catalog).
    pub dynamic: &'a DynamicBrokerConfigs,
    /// Keys set in the static configuration.
    pub explicit: &'a BTreeMap<String, String>,
}

impl BrokerLayers<'_> {
    /// Where the value of `broker_key` comes from.
    pub fn source(&self, broker_key: &str) -> ConfigSource {
        if let Some((_, source)) = self.dynamic.get(broker_key) {
            source
        } else if explicitly_set(broker_key, self.explicit) {
            ConfigSource::StaticBroker
        } else {
            ConfigSource::Default
        }
    }

    /// Kafka's synonyms of `broker_key`, highest precedence first: (name,
    /// value, source) for every layer that sets it, ending with the
    /// built-in `default` when there is one.
    pub fn synonyms(
        &self,
        broker_key: &str,
        default: Option<String>,
    ) -> Vec<(String, Option<String>, ConfigSource)> {
        let mut chain = Vec::new();
        if let Some(v) = self.dynamic.broker.get(broker_key) {
            chain.push((
                broker_key.to_string(),
                Some(v.clone()),
                ConfigSource::DynamicBroker,
            ));
        }
        if let Some(v) = self.dynamic.cluster.get(broker_key) {
            chain.push((
                broker_key.to_string(),
                Some(v.clone()),
                ConfigSource::DynamicDefaultBroker,
            ));
        }
        let names: Vec<&str> = match broker_alternatives(broker_key) {
            [] => vec![broker_key],
            all => all.to_vec(),
        };
        for name in names {
            if let Some(v) = self.explicit.get(name) {
                chain.push((
                    name.to_string(),
                    Some(v.clone()),
                    ConfigSource::StaticBroker,
                ));
            }
        }
        if let Some(v) = default {
            chain.push((broker_key.to_string(), Some(v), ConfigSource::Default));
        }
        chain
    }
}

/// The broker's configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct BrokerConfig {
    /// listeners / --listen.
    pub listen: SocketAddr,
    /// Host in advertised.listeners.
    pub advertised_host: String,
    /// Port in advertised.listeners.
    pub advertised_port: u16,
    /// node.id / broker.id / --node-id.
    pub node_id: i32,
    /// log.dirs (first) / log.dir / --data-dir.
    pub data_dir: PathBuf,
    /// ringbroker.shards / --shards.
    pub shards: usize,
    /// num.partitions.
    pub num_partitions: i32,
    /// default.replication.factor.
    pub default_replication_factor: i16,
    /// auto.create.topics.enable.
    pub auto_create_topics: bool,
    /// delete.topic.enable.
    pub delete_topic_enable: bool,
    /// socket.request.max.bytes.
    pub socket_request_max_bytes: usize,
    /// ringbroker.connection.max.inflight.requests.
    pub max_inflight_requests_per_connection: usize,
    /// connections.max.idle.ms.
    pub connections_max_idle_ms: u64,
    /// log.retention.check.interval.ms.
    pub log_retention_check_interval_ms: u64,
    /// log.flush.interval.ms (None = only acks=all syncs).
    pub log_flush_interval_ms: Option<u64>,
    /// log.flush.interval.messages.
    pub log_flush_interval_messages: Option<u64>,
    /// group.initial.rebalance.delay.ms.
    pub group_initial_rebalance_delay_ms: u64,
    /// offsets.topic.num.partitions.
    pub offsets_topic_num_partitions: i32,
    /// transaction.state.log.num.partitions.
    pub txn_state_partitions: i32,
    /// transaction.state.log.replication.factor (at most the live brokers
    /// when the topic is created).
    pub txn_state_replication_factor: i16,
    /// transaction.state.log.min.isr (at most the replication factor).
    pub txn_state_min_isr: i32,
    /// transaction.max.timeout.ms.
    pub txn_max_timeout_ms: i32,
    /// transactional.id.expiration.ms.
    pub txn_id_expiration_ms: u64,
    /// transaction.abort.timed.out.transaction.cleanup.interval.ms.
    pub txn_abort_check_interval_ms: u64,
    /// transaction.remove.expired.transaction.cleanup.interval.ms.
    pub txn_remove_expired_interval_ms: u64,
    /// offsets.retention.minutes.
    pub offsets_retention_minutes: u64,
    /// offsets.retention.check.interval.ms.
    pub offsets_retention_check_interval_ms: u64,
    /// group.min.session.timeout.ms.
    pub group_min_session_timeout_ms: i32,
    /// group.max.session.timeout.ms.
    pub group_max_session_timeout_ms: i32,
    /// ringbroker.spin.before.park.us: an idle shard spins this long before
    /// parking its thread (lower cross-shard latency for some CPU).
    pub spin_before_park_us: u64,
    /// ringbroker.startup.port.wait.ms: how long a start waits for a busy
    /// listen port to be released (a crashed predecessor's sockets).
    pub port_wait_ms: u64,
    /// ringbroker.log.write.mode: buffered (page cache) or direct (O_DIRECT).
    pub log_write_mode: WriteMode,
    /// ringbroker.log.sync.scope=filesystem: one syncfs per shard round
    /// instead of one fdatasync per partition.
    pub log_sync_filesystem: bool,
    /// Defaults of every topic config (the broker's log.* keys).
    pub topic_defaults: TopicConfig,
    /// Every key explicitly set, by Kafka name.
    pub explicit: BTreeMap<String, String>,
    /// KRaft cluster settings (`process.roles` and friends); `None` runs
    /// the single combined node of the README's first command.
    pub cluster: Option<ClusterConfig>,
}

/// A voter of the controller quorum (`controller.quorum.voters`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Voter {
    /// Its node id.
    pub id: i32,
    /// Host of its CONTROLLER listener.
    pub host: String,
    /// Port of its CONTROLLER listener.
    pub port: u16,
}

/// How this node takes part in a cluster (Kafka's KRaft properties).
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterConfig {
    /// `process.roles` contains `broker`.
    pub broker: bool,
    /// `process.roles` contains `controller`: a voter of the quorum.
    pub controller: bool,
    /// `controller.quorum.voters`.
    pub voters: Vec<Voter>,
    /// This node's CONTROLLER listener (with the controller role).
    pub controller_listen: Option<SocketAddr>,
    /// `cluster.id`, when given; otherwise agreed through the quorum.
    pub cluster_id: Option<String>,
    /// `broker.heartbeat.interval.ms`.
    pub heartbeat_interval_ms: u64,
    /// `broker.session.timeout.ms`: a broker silent this long is fenced.
    pub session_timeout_ms: u64,
    /// `offsets.topic.replication.factor` (capped by the brokers there
    /// are when the topic is created).
    pub offsets_topic_replication_factor: i16,
    /// `replica.lag.time.max.ms`: a follower not caught up for this long
    /// leaves the ISR.
    pub replica_lag_time_max_ms: u64,
    /// `auto.leader.rebalance.enable`: the active controller moves
    /// leadership back to each partition's first replica once it is in
    /// sync.
    pub auto_leader_rebalance: bool,
    /// `leader.imbalance.check.interval.seconds`, in ms: how often it
    /// looks.
    pub leader_imbalance_check_interval_ms: u64,
}

impl ClusterConfig {
    /// The CONTROLLER address of voter `id`.
    pub fn voter_addr(&self, id: i32) -> Option<SocketAddr> {
        let voter = self.voters.iter().find(|v| v.id == id)?;
        (voter.host.as_str(), voter.port)
            .to_socket_addrs()
            .ok()?
            .find(SocketAddr::is_ipv4)
    }
}

fn default_shards() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            advertised_host: "127.0.0.1".into(),
            advertised_port: 9092,
            node_id: 0,
            data_dir: PathBuf::from("./data"),
            shards: default_shards(),
            num_partitions: 1,
            default_replication_factor: 1,
            auto_create_topics: true,
            delete_topic_enable: true,
            socket_request_max_bytes: REQUEST_BYTES_MAX_DEFAULT,
            max_inflight_requests_per_connection: INFLIGHT_REQUESTS_PER_CONNECTION_MAX_DEFAULT,
            connections_max_idle_ms: 600_000,
            log_retention_check_interval_ms: 300_000,
            log_flush_interval_ms: None,
            log_flush_interval_messages: None,
            group_initial_rebalance_delay_ms: 3_000,
            offsets_topic_num_partitions: 50,
            txn_state_partitions: 50,
            txn_state_replication_factor: 3,
            txn_state_min_isr: 2,
            txn_max_timeout_ms: 900_000,
            txn_id_expiration_ms: 604_800_000,
            txn_abort_check_interval_ms: 10_000,
            txn_remove_expired_interval_ms: 3_600_000,
            offsets_retention_minutes: 10_080,
            offsets_retention_check_interval_ms: 600_000,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            spin_before_park_us: 0,
            port_wait_ms: 10_000,
            log_write_mode: WriteMode::Buffered,
            log_sync_filesystem: false,
            topic_defaults: TopicConfig::default(),
            explicit: BTreeMap::new(),
            cluster: None,
        }
    }
}

/// Kafka keys accepted without effect (they configure parts ringbroker does
/// not have or does differently).
const NO_EFFECT_KEYS: &[&str] = &[
    "leader.imbalance.per.broker.percentage",
    "zookeeper.connect",
    "zookeeper.connection.timeout.ms",
    "controller.quorum.bootstrap.servers",
    "inter.broker.listener.name",
    "listener.security.protocol.map",
    "num.network.threads",
    "num.io.threads",
    "socket.send.buffer.bytes",
    "socket.receive.buffer.bytes",
    "num.recovery.threads.per.data.dir",
    "queued.max.requests",
    "num.replica.fetchers",
    "log.cleaner.enable",
    "log.cleaner.threads",
    "metadata.log.dir",
];

/// Parses a `host:port` or `PROTOCOL://host:port` listener (first of a
/// comma list). Returns (host, port).
fn parse_listener(
    key: &str,
    value: &str,
    warnings: &mut Vec<String>,
) -> Result<(String, u16), ConfigError> {
    let mut items = value.split(',').map(str::trim).filter(|s| !s.is_empty());
    let first = items
        .next()
        .ok_or_else(|| invalid(key, value, "expected PLAINTEXT://host:port"))?;
    if items.next().is_some() {
        warnings.push(format!("{key}: only the first listener ({first}) is used"));
    }
    let rest = match first.split_once("://") {
        Some((protocol, rest)) => {
            if !protocol.eq_ignore_ascii_case("PLAINTEXT") {
                return Err(invalid(
                    key,
                    value,
                    "only PLAINTEXT listeners are supported",
                ));
            }
            rest
        }
        None => first,
    };
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| invalid(key, value, "expected host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| invalid(key, value, "expected a port number"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Ok((host, port))
}

fn resolve(key: &str, value: &str, host: &str, port: u16) -> Result<SocketAddr, ConfigError> {
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| invalid(key, value, format!("cannot resolve {host}: {e}")))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| invalid(key, value, format!("{host} has no address")))
}

fn machine_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Collects settings in precedence order, then resolves them.
#[derive(Default)]
struct Builder {
    config: BrokerConfig,
    warnings: Vec<String>,
    listeners: Option<(String, String)>,
    advertised: Option<(String, String)>,
    listen_flag: Option<String>,
    roles: Option<(String, String)>,
    voters: Option<(String, String)>,
    controller_listener_names: Option<(String, String)>,
    protocol_map: Option<(String, String)>,
    cluster_id: Option<String>,
    heartbeat_interval_ms: Option<u64>,
    session_timeout_ms: Option<u64>,
    offsets_replication_factor: Option<i16>,
    replica_lag_time_max_ms: Option<u64>,
    auto_leader_rebalance: Option<bool>,
    leader_imbalance_check_interval_ms: Option<u64>,
    retention_ms: Option<(u8, String, String)>,
    roll_ms: Option<(u8, String, String)>,
}

impl Builder {
    fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let key = key.trim();
        let value = value.trim();
        let c = &mut self.config;
        match key {
            "listeners" => self.listeners = Some((key.into(), value.into())),
            "advertised.listeners" => self.advertised = Some((key.into(), value.into())),
            "process.roles" => self.roles = Some((key.into(), value.into())),
            "controller.quorum.voters" => self.voters = Some((key.into(), value.into())),
            "controller.listener.names" => {
                self.controller_listener_names = Some((key.into(), value.into()))
            }
            "listener.security.protocol.map" => {
                self.protocol_map = Some((key.into(), value.into()))
            }
            "cluster.id" => {
                if value.is_empty() {
                    return Err(invalid(key, value, "a cluster id cannot be empty"));
                }
                self.cluster_id = Some(value.into());
            }
            "broker.heartbeat.interval.ms" => {
                self.heartbeat_interval_ms = Some(parse_u64_range(key, value, 10, 60_000)?)
            }
            "broker.session.timeout.ms" => {
                self.session_timeout_ms = Some(parse_u64_range(key, value, 100, 600_000)?)
            }
            "replica.lag.time.max.ms" => {
                self.replica_lag_time_max_ms = Some(parse_u64_range(key, value, 1, 3_600_000)?)
            }
            "auto.leader.rebalance.enable" => {
                self.auto_leader_rebalance = Some(parse_bool(key, value)?)
            }
            "leader.imbalance.check.interval.seconds" => {
                self.leader_imbalance_check_interval_ms =
                    Some(parse_u64_range(key, value, 1, 86_400)? * 1000)
            }
            "offsets.topic.replication.factor" => {
                self.offsets_replication_factor =
                    Some(parse_u64_range(key, value, 1, i16::MAX as u64)? as i16)
            }
            "node.id" | "broker.id" => {
                c.node_id = parse_u64_range(key, value, 0, i32::MAX as u64)? as i32;
            }
            "log.dirs" | "log.dir" => {
                let mut dirs = value.split(',').map(str::trim).filter(|s| !s.is_empty());
                let first = dirs
                    .next()
                    .ok_or_else(|| invalid(key, value, "expected a directory"))?;
                if dirs.next().is_some() {
                    self.warnings
                        .push(format!("{key}: only the first directory ({first}) is used"));
                }
                c.data_dir = PathBuf::from(first);
            }
            "ringbroker.shards" => c.shards = parse_u64_range(key, value, 1, 1024)? as usize,
            "num.partitions" => c.num_partitions = parse_u64_range(key, value, 1, 100_000)? as i32,
            "default.replication.factor" => {
                c.default_replication_factor =
                    parse_u64_range(key, value, 1, i16::MAX as u64)? as i16
            }
            "auto.create.topics.enable" => c.auto_create_topics = parse_bool(key, value)?,
            "delete.topic.enable" => c.delete_topic_enable = parse_bool(key, value)?,
            "socket.request.max.bytes" => {
                c.socket_request_max_bytes =
                    parse_u64_range(key, value, 1024, i32::MAX as u64)? as usize
            }
            "ringbroker.connection.max.inflight.requests" => {
                c.max_inflight_requests_per_connection =
                    parse_u64_range(key, value, 1, 1024)? as usize
            }
            "connections.max.idle.ms" => {
                c.connections_max_idle_ms = parse_u64_range(key, value, 1, i64::MAX as u64)?
            }
            "log.retention.check.interval.ms" => {
                c.log_retention_check_interval_ms = parse_u64_range(key, value, 1, i64::MAX as u64)?
            }
            "log.flush.interval.ms" => {
                c.log_flush_interval_ms = parse_optional(key, value)?;
                c.topic_defaults.set("flush.ms", value)?;
            }
            "log.flush.interval.messages" => {
                c.log_flush_interval_messages = parse_optional(key, value)?;
                c.topic_defaults.set("flush.messages", value)?;
            }
            "group.initial.rebalance.delay.ms" => {
                c.group_initial_rebalance_delay_ms =
                    parse_u64_range(key, value, 0, i64::MAX as u64)?
            }
            "offsets.topic.num.partitions" => {
                c.offsets_topic_num_partitions = parse_u64_range(key, value, 1, 100_000)? as i32
            }
            "transaction.state.log.num.partitions" => {
                c.txn_state_partitions = parse_u64_range(key, value, 1, 100_000)? as i32
            }
            "transaction.state.log.replication.factor" => {
                c.txn_state_replication_factor = parse_u64_range(key, value, 1, 32_767)? as i16
            }
            "transaction.state.log.min.isr" => {
                c.txn_state_min_isr = parse_u64_range(key, value, 1, 32_767)? as i32
            }
            "transaction.max.timeout.ms" => {
                c.txn_max_timeout_ms = parse_u64_range(key, value, 1, i32::MAX as u64)? as i32
            }
            "transactional.id.expiration.ms" => {
                c.txn_id_expiration_ms = parse_u64_range(key, value, 1, i32::MAX as u64)?
            }
            "transaction.abort.timed.out.transaction.cleanup.interval.ms" => {
                c.txn_abort_check_interval_ms = parse_u64_range(key, value, 1, i32::MAX as u64)?
            }
            "transaction.remove.expired.transaction.cleanup.interval.ms" => {
                c.txn_remove_expired_interval_ms = parse_u64_range(key, value, 1, i32::MAX as u64)?
            }
            "offsets.retention.minutes" => {
                c.offsets_retention_minutes = parse_u64_range(key, value, 1, i64::MAX as u64)?
            }
            "offsets.retention.check.interval.ms" => {
                c.offsets_retention_check_interval_ms =
                    parse_u64_range(key, value, 1, i64::MAX as u64)?
            }
            "group.min.session.timeout.ms" => {
                c.group_min_session_timeout_ms =
                    parse_u64_range(key, value, 1, i32::MAX as u64)? as i32
            }
            "group.max.session.timeout.ms" => {
                c.group_max_session_timeout_ms =
                    parse_u64_range(key, value, 1, i32::MAX as u64)? as i32
            }
            "ringbroker.spin.before.park.us" => {
                c.spin_before_park_us = parse_u64_range(key, value, 0, 10_000)?
            }
            "ringbroker.startup.port.wait.ms" => {
                c.port_wait_ms = parse_u64_range(key, value, 0, 600_000)?
            }
            "ringbroker.log.sync.scope" => {
                c.log_sync_filesystem = match value.trim() {
                    "partition" => false,
                    "filesystem" => true,
                    _ => {
                        return Err(ConfigError::InvalidValue {
                            key: key.into(),
                            value: value.into(),
                            reason: "expected partition or filesystem".into(),
                        })
                    }
                }
            }
            "ringbroker.log.write.mode" => {
                c.log_write_mode =
                    WriteMode::parse(value).ok_or_else(|| ConfigError::InvalidValue {
                        key: key.into(),
                        value: value.into(),
                        reason: "expected buffered or direct".into(),
                    })?
            }
            "log.retention.ms" => self.retention_ms = Some((0, key.into(), value.into())),
            "log.retention.minutes" => {
                self.retention_ms = precedence(self.retention_ms.take(), 1, key, value)
            }
            "log.retention.hours" => {
                self.retention_ms = precedence(self.retention_ms.take(), 2, key, value)
            }
            "log.roll.ms" => self.roll_ms = Some((0, key.into(), value.into())),
            "log.roll.hours" => self.roll_ms = precedence(self.roll_ms.take(), 1, key, value),
            "message.max.bytes" => c
                .topic_defaults
                .set("max.message.bytes", value)
                .map_err(|e| rename(e, key))?,
            _ => {
                if let Some(topic_key) = TopicConfig::topic_key_of(key) {
                    c.topic_defaults
                        .set(topic_key, value)
                        .map_err(|e| rename(e, key))?;
                } else if NO_EFFECT_KEYS.contains(&key)
                    || key.starts_with("log.cleaner.")
                    || key.starts_with("transaction.")
                {
                    self.warnings
                        .push(format!("'{key}' has no effect in ringbroker"));
                    return Ok(());
                } else {
                    self.warnings
                        .push(format!("unknown config key '{key}' ignored"));
                    return Ok(());
                }
            }
        }
        self.config
            .explicit
            .insert(key.to_string(), value.to_string());
        Ok(())
    }

    fn finish(mut self) -> Result<(BrokerConfig, Vec<String>), ConfigError> {
        if self.config.group_min_session_timeout_ms > self.config.group_max_session_timeout_ms {
            return Err(invalid(
                "group.min.session.timeout.ms",
                &self.config.group_min_session_timeout_ms.to_string(),
                format!(
                    "must not exceed group.max.session.timeout.ms ({})",
                    self.config.group_max_session_timeout_ms
                ),
            ));
        }
        if let Some((unit, key, value)) = self.retention_ms.take() {
            let ms = scaled(unit, &key, &value)?;
            self.config
                .topic_defaults
                .set("retention.ms", &ms)
                .map_err(|e| rename(e, &key))?;
        }
        if let Some((unit, key, value)) = self.roll_ms.take() {
            let ms = scaled(if unit == 1 { 2 } else { 0 }, &key, &value)?;
            self.config
                .topic_defaults
                .set("segment.ms", &ms)
                .map_err(|e| rename(e, &key))?;
        }
        let controller_names: Vec<String> = self
            .controller_listener_names
            .as_ref()
            .map(|(_, v)| {
                v.split(',')
                    .map(|n| n.trim().to_ascii_uppercase())
                    .filter(|n| !n.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let mut controller_listen = None;
        if let Some((key, value)) = self.listeners.take() {
            let named = parse_listeners(&key, &value, self.protocol_map.as_ref())?;
            let (brokers, controllers): (Vec<_>, Vec<_>) = named
                .into_iter()
                .partition(|(name, _, _)| !controller_names.contains(name));
            if let Some((_, host, port)) = controllers.first() {
                controller_listen = Some(resolve(&key, &value, host, *port)?);
            }
            match brokers.first() {
                Some((_, host, port)) => {
                    if brokers.len() > 1 {
                        self.warnings.push(format!(
                            "{key}: only the first client listener ({host}:{port}) is used"
                        ));
                    }
                    self.config.listen = resolve(&key, &value, host, *port)?;
                }
                None if self
                    .roles
                    .as_ref()
                    .is_some_and(|(_, r)| r.trim() == "controller") => {}
                None => return Err(invalid(&key, &value, "no client (non-CONTROLLER) listener")),
            }
        }
        if let Some(value) = self.listen_flag.take() {
            let (host, port) = parse_listener("--listen", &value, &mut self.warnings)?;
            self.config.listen = resolve("--listen", &value, &host, port)?;
        }
        self.config.cluster = self.cluster(controller_listen)?;
        let (host, port) = match self.advertised.take() {
            Some((key, value)) => {
                let (host, port) = parse_listener(&key, &value, &mut self.warnings)?;
                if host.is_empty() {
                    return Err(invalid(&key, &value, "an advertised listener needs a host"));
                }
                (host, port)
            }
            None => {
                let ip = self.config.listen.ip();
                let host = if ip.is_unspecified() {
                    machine_hostname()
                } else {
                    ip.to_string()
                };
                (host, self.config.listen.port())
            }
        };
        self.config.advertised_host = host;
        self.config.advertised_port = port;
        Ok((self.config, self.warnings))
    }
}

impl Builder {
    /// The KRaft settings, checked together: roles, voters, this node's
    /// place among them and its CONTROLLER listener.
    fn cluster(
        &mut self,
        controller_listen: Option<SocketAddr>,
    ) -> Result<Option<ClusterConfig>, ConfigError> {
        let Some((roles_key, roles)) = self.roles.take() else {
            if let Some((key, value)) = &self.voters {
                return Err(invalid(
                    key,
                    value,
                    "needs process.roles (broker, controller or broker,controller)",
                ));
            }
            return Ok(None);
        };
        let mut broker = false;
        let mut controller = false;
        for role in roles.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            match role {
                "broker" => broker = true,
                "controller" => controller = true,
                other => {
                    return Err(invalid(
                        &roles_key,
                        &roles,
                        format!("unknown role {other:?} (broker, controller)"),
                    ))
                }
            }
        }
        if !broker && !controller {
            return Err(invalid(
                &roles_key,
                &roles,
                "expected broker, controller or both",
            ));
        }
        let Some((voters_key, voters_value)) = self.voters.take() else {
            return Err(invalid(
                &roles_key,
                &roles,
                "needs controller.quorum.voters",
            ));
        };
        let voters = parse_voters(&voters_key, &voters_value)?;
        let node_id = self.config.node_id;
        if controller && !voters.iter().any(|v| v.id == node_id) {
            return Err(invalid(
                &voters_key,
                &voters_value,
                format!("this node ({node_id}) has the controller role but is not a voter"),
            ));
        }
        if !controller && voters.iter().any(|v| v.id == node_id) {
            return Err(invalid(
                &voters_key,
                &voters_value,
                format!("node {node_id} is a voter but process.roles has no controller"),
            ));
        }
        if controller && controller_listen.is_none() {
            return Err(invalid(
                "listeners",
                "",
                "a controller needs a listener named in controller.listener.names (CONTROLLER://host:port)",
            ));
        }
        Ok(Some(ClusterConfig {
            broker,
            controller,
            voters,
            controller_listen,
            cluster_id: self.cluster_id.take(),
            heartbeat_interval_ms: self.heartbeat_interval_ms.unwrap_or(2_000),
            session_timeout_ms: self.session_timeout_ms.unwrap_or(9_000),
            offsets_topic_replication_factor: self.offsets_replication_factor.unwrap_or(3),
            replica_lag_time_max_ms: self.replica_lag_time_max_ms.unwrap_or(30_000),
            auto_leader_rebalance: self.auto_leader_rebalance.unwrap_or(true),
            leader_imbalance_check_interval_ms: self
                .leader_imbalance_check_interval_ms
                .unwrap_or(300_000),
        }))
    }
}

/// Parses `controller.quorum.voters`: `id@host:port,...`.
fn parse_voters(key: &str, value: &str) -> Result<Vec<Voter>, ConfigError> {
    let mut voters: Vec<Voter> = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item
            .split_once('@')
            .ok_or_else(|| invalid(key, value, format!("{item:?}: expected id@host:port")))?;
        let id: i32 = id
            .trim()
            .parse()
            .ok()
            .filter(|id| *id >= 0)
            .ok_or_else(|| invalid(key, value, format!("{item:?}: bad node id")))?;
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| invalid(key, value, format!("{item:?}: expected host:port")))?;
        let port: u16 = port
            .parse()
            .map_err(|_| invalid(key, value, format!("{item:?}: bad port")))?;
        if voters.iter().any(|v| v.id == id) {
            return Err(invalid(key, value, format!("node {id} listed twice")));
        }
        voters.push(Voter {
            id,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
        });
    }
    if voters.is_empty() {
        return Err(invalid(key, value, "no voter"));
    }
    voters.sort_by_key(|v| v.id);
    Ok(voters)
}

/// Parses every listener of `listeners`: (NAME, host, port). A name maps to
/// its security protocol through `listener.security.protocol.map`
/// (PLAINTEXT and CONTROLLER map to PLAINTEXT when not listed); only
/// PLAINTEXT is supported.
fn parse_listeners(
    key: &str,
    value: &str,
    protocol_map: Option<&(String, String)>,
) -> Result<Vec<(String, String, u16)>, ConfigError> {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    if let Some((_, v)) = protocol_map {
        for pair in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if let Some((name, protocol)) = pair.split_once(':') {
                map.insert(
                    name.trim().to_ascii_uppercase(),
                    protocol.trim().to_ascii_uppercase(),
                );
            }
        }
    }
    let mut out = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, rest) = match item.split_once("://") {
            Some((name, rest)) => (name.trim().to_ascii_uppercase(), rest),
            None => ("PLAINTEXT".to_string(), item),
        };
        let protocol = map.get(&name).cloned().unwrap_or_else(|| {
            if name == "CONTROLLER" {
                "PLAINTEXT".into()
            } else {
                name.clone()
            }
        });
        if protocol != "PLAINTEXT" {
            return Err(invalid(
                key,
                value,
                format!("{name}: only PLAINTEXT listeners are supported"),
            ));
        }
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| invalid(key, value, "expected host:port"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| invalid(key, value, "expected a port number"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        out.push((name, host, port));
    }
    if out.is_empty() {
        return Err(invalid(key, value, "expected PLAINTEXT://host:port"));
    }
    Ok(out)
}

/// Keeps the most precise of the retention/roll keys (ms < minutes < hours).
fn precedence(
    current: Option<(u8, String, String)>,
    unit: u8,
    key: &str,
    value: &str,
) -> Option<(u8, String, String)> {
    match current {
        Some(c) if c.0 < unit => Some(c),
        _ => Some((unit, key.to_string(), value.to_string())),
    }
}

/// Converts a value in unit 0 (ms), 1 (minutes) or 2 (hours) to ms text.
fn scaled(unit: u8, key: &str, value: &str) -> Result<String, ConfigError> {
    let v = parse_i64(key, value)?;
    if v == -1 {
        return Ok("-1".into());
    }
    let factor: i64 = match unit {
        0 => 1,
        1 => 60_000,
        _ => 3_600_000,
    };
    v.checked_mul(factor)
        .filter(|v| *v >= 0)
        .map(|v| v.to_string())
        .ok_or_else(|| invalid(key, value, "out of range"))
}

/// Reports an error of a topic-level key under the broker-level name.
fn rename(e: ConfigError, key: &str) -> ConfigError {
    match e {
        ConfigError::InvalidValue { value, reason, .. } => ConfigError::InvalidValue {
            key: key.to_string(),
            value,
            reason,
        },
        other => other,
    }
}

impl BrokerConfig {
    /// The topic defaults with the dynamic broker configs applied over the
    /// static ones: what a topic without its own override gets.
    pub fn effective_topic_defaults(&self, dynamic: &DynamicBrokerConfigs) -> TopicConfig {
        let mut defaults = self.topic_defaults.clone();
        for layer in [&dynamic.cluster, &dynamic.broker] {
            for (key, value) in layer {
                let Some(topic_key) = TopicConfig::topic_key_of(key) else {
                    continue;
                };
                if let Err(e) = defaults.set(topic_key, value) {
                    log::warn!("dynamic broker config {key}={value} ignored: {e}");
                }
            }
        }
        defaults
    }

    /// log.flush.interval.ms (the broker-wide periodic sync) with the
    /// dynamic broker configs applied.
    pub fn effective_flush_interval_ms(&self, dynamic: &DynamicBrokerConfigs) -> Option<u64> {
        match dynamic.get("log.flush.interval.ms") {
            Some((value, _)) => {
                parse_optional("log.flush.interval.ms", value).unwrap_or(self.log_flush_interval_ms)
            }
            None => self.log_flush_interval_ms,
        }
    }

    /// The built-in default of a broker key, as DescribeConfigs prints it.
    fn default_value(key: &str) -> Option<String> {
        let defaults = BrokerConfig::default();
        defaults
            .values(&defaults.topic_defaults, defaults.log_flush_interval_ms)
            .into_iter()
            .find(|(k, ..)| *k == key)
            .map(|(_, v, _)| v)
    }

    /// Kafka's synonyms of a broker key (highest precedence first).
    pub fn synonyms(
        &self,
        dynamic: &DynamicBrokerConfigs,
        key: &str,
    ) -> Vec<(String, Option<String>, ConfigSource)> {
        let layers = BrokerLayers {
            dynamic,
            explicit: &self.explicit,
        };
        layers.synonyms(key, BrokerConfig::default_value(key))
    }

    /// DescribeConfigs on this broker (resource name = node.id): every
    /// broker config with its value after the dynamic configs, its source,
    /// and whether it can change at run time.
    pub fn describe(&self, dynamic: &DynamicBrokerConfigs) -> Vec<ConfigEntry> {
        let topic_defaults = self.effective_topic_defaults(dynamic);
        let mut items = self.values(&topic_defaults, self.effective_flush_interval_ms(dynamic));
        // Dynamic keys without an effect are described with their values.
        for (key, value) in dynamic.cluster.iter().chain(&dynamic.broker) {
            if !items.iter().any(|(k, ..)| k == key) {
                let value = dynamic
                    .get(key)
                    .map_or(value.clone(), |(v, _)| v.to_string());
                items.push((key.clone(), value, ConfigType::Unknown));
            }
        }
        items.sort_by(|a, b| a.0.cmp(&b.0));
        let layers = BrokerLayers {
            dynamic,
            explicit: &self.explicit,
        };
        items
            .into_iter()
            .map(|(name, value, config_type)| {
                let source = match name.as_str() {
                    "node.id" | "broker.id"
                        if self.explicit.contains_key("node.id")
                            || self.explicit.contains_key("broker.id") =>
                    {
                        ConfigSource::StaticBroker
                    }
                    "log.dirs" if self.explicit.contains_key("log.dir") => {
                        ConfigSource::StaticBroker
                    }
                    _ => layers.source(&name),
                };
                ConfigEntry {
                    read_only: broker_key_mode(&name) == BrokerKeyMode::ReadOnly,
                    is_default: source == ConfigSource::Default,
                    name,
                    value: Some(value),
                    source,
                    sensitive: false,
                    config_type,
                    documentation: None,
                }
            })
            .collect()
    }

    /// DescribeConfigs on the cluster-default resource (name ""): only the
    /// dynamic cluster-wide defaults, as Kafka answers.
    pub fn describe_cluster_defaults(dynamic: &DynamicBrokerConfigs) -> Vec<ConfigEntry> {
        dynamic
            .cluster
            .iter()
            .map(|(name, value)| ConfigEntry {
                name: name.clone(),
                value: Some(value.clone()),
                read_only: broker_key_mode(name) == BrokerKeyMode::ReadOnly,
                is_default: false,
                source: ConfigSource::DynamicDefaultBroker,
                sensitive: false,
                config_type: TopicConfig::topic_key_of(name)
                    .and_then(|t| TopicConfig::all_keys().into_iter().find(|k| k.0 == t))
                    .map_or(ConfigType::Unknown, |k| k.2),
                documentation: None,
            })
            .collect()
    }

    /// (name, value, type) of every broker config ringbroker knows, with
    /// `topic_defaults` and `flush_interval_ms` as the log settings.
    fn values(
        &self,
        topic_defaults: &TopicConfig,
        flush_interval_ms: Option<u64>,
    ) -> Vec<(String, String, ConfigType)> {
        let opt = |v: Option<u64>| v.map_or(i64::MAX.to_string(), |v| v.to_string());
        let listener = format!("PLAINTEXT://{}", self.listen);
        let advertised = format!(
            "PLAINTEXT://{}:{}",
            self.advertised_host, self.advertised_port
        );
        let mut items: Vec<(&str, String, ConfigType)> = vec![
            ("listeners", listener, ConfigType::String),
            ("advertised.listeners", advertised, ConfigType::String),
            ("node.id", self.node_id.to_string(), ConfigType::Int),
            ("broker.id", self.node_id.to_string(), ConfigType::Int),
            (
                "log.dirs",
                self.data_dir.display().to_string(),
                ConfigType::String,
            ),
            (
                "ringbroker.shards",
                self.shards.to_string(),
                ConfigType::Int,
            ),
            (
                "num.partitions",
                self.num_partitions.to_string(),
                ConfigType::Int,
            ),
            (
                "default.replication.factor",
                self.default_replication_factor.to_string(),
                ConfigType::Int,
            ),
            (
                "auto.create.topics.enable",
                self.auto_create_topics.to_string(),
                ConfigType::Boolean,
            ),
            (
                "delete.topic.enable",
                self.delete_topic_enable.to_string(),
                ConfigType::Boolean,
            ),
            (
                "socket.request.max.bytes",
                self.socket_request_max_bytes.to_string(),
                ConfigType::Int,
            ),
            (
                "ringbroker.connection.max.inflight.requests",
                self.max_inflight_requests_per_connection.to_string(),
                ConfigType::Int,
            ),
            (
                "connections.max.idle.ms",
                self.connections_max_idle_ms.to_string(),
                ConfigType::Long,
            ),
            (
                "log.retention.check.interval.ms",
                self.log_retention_check_interval_ms.to_string(),
                ConfigType::Long,
            ),
            (
                "group.initial.rebalance.delay.ms",
                self.group_initial_rebalance_delay_ms.to_string(),
                ConfigType::Int,
            ),
            (
                "offsets.topic.num.partitions",
                self.offsets_topic_num_partitions.to_string(),
                ConfigType::Int,
            ),
            (
                "transaction.state.log.num.partitions",
                self.txn_state_partitions.to_string(),
                ConfigType::Int,
            ),
            (
                "transaction.state.log.replication.factor",
                self.txn_state_replication_factor.to_string(),
                ConfigType::Short,
            ),
            (
                "transaction.state.log.min.isr",
                self.txn_state_min_isr.to_string(),
                ConfigType::Int,
            ),
            (
                "transaction.max.timeout.ms",
                self.txn_max_timeout_ms.to_string(),
                ConfigType::Int,
            ),
            (
                "transactional.id.expiration.ms",
                self.txn_id_expiration_ms.to_string(),
                ConfigType::Int,
            ),
            (
                "transaction.abort.timed.out.transaction.cleanup.interval.ms",
                self.txn_abort_check_interval_ms.to_string(),
                ConfigType::Int,
            ),
            (
                "transaction.remove.expired.transaction.cleanup.interval.ms",
                self.txn_remove_expired_interval_ms.to_string(),
                ConfigType::Int,
            ),
            (
                "offsets.retention.minutes",
                self.offsets_retention_minutes.to_string(),
                ConfigType::Int,
            ),
            (
                "offsets.retention.check.interval.ms",
                self.offsets_retention_check_interval_ms.to_string(),
                ConfigType::Long,
            ),
            (
                "group.min.session.timeout.ms",
                self.group_min_session_timeout_ms.to_string(),
                ConfigType::Int,
            ),
            (
                "group.max.session.timeout.ms",
                self.group_max_session_timeout_ms.to_string(),
                ConfigType::Int,
            ),
            (
                "ringbroker.spin.before.park.us",
                self.spin_before_park_us.to_string(),
                ConfigType::Long,
            ),
            (
                "ringbroker.startup.port.wait.ms",
                self.port_wait_ms.to_string(),
                ConfigType::Long,
            ),
            (
                "ringbroker.log.write.mode",
                self.log_write_mode.name().to_string(),
                ConfigType::String,
            ),
            (
                "ringbroker.log.sync.scope",
                if self.log_sync_filesystem {
                    "filesystem"
                } else {
                    "partition"
                }
                .to_string(),
                ConfigType::String,
            ),
            (
                "log.flush.interval.ms",
                opt(flush_interval_ms),
                ConfigType::Long,
            ),
            (
                "log.flush.interval.messages",
                opt(self.log_flush_interval_messages),
                ConfigType::Long,
            ),
        ];
        for (topic_key, broker_key, config_type, _) in TopicConfig::all_keys() {
            let Some(broker_key) = broker_key else {
                continue;
            };
            if items.iter().any(|(k, ..)| *k == broker_key) {
                continue;
            }
            if let Some(value) = topic_defaults.get(topic_key) {
                items.push((broker_key, value, config_type));
            }
        }
        items
            .into_iter()
            .map(|(k, v, t)| (k.to_string(), v, t))
            .collect()
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum CommandLine {
    /// Run the broker.
    Run {
        /// The configuration.
        config: Box<BrokerConfig>,
        /// Non-fatal remarks (unknown keys, ...), to be logged.
        warnings: Vec<String>,
    },
    /// Print this help text.
    Help(String),
    /// Print the version.
    Version,
}

/// The `--help` text.
pub fn usage() -> String {
    "ringbroker: a Kafka-compatible, thread-per-core streaming broker\n\
     \n\
     usage: ringbroker [--listen HOST:PORT] [--data-dir DIR] [--shards N] [--node-id N]\n\
     \x20                 [--config server.properties] [--override key=value ...]\n\
     \n\
     \x20 --listen HOST:PORT    address to serve Kafka clients on (default 127.0.0.1:9092)\n\
     \x20 --data-dir DIR        where topics are stored (default ./data)\n\
     \x20 --shards N            executors, one per core (default: all available cores)\n\
     \x20 --node-id N           broker id reported to clients (default 0)\n\
     \x20 --config FILE         Kafka server.properties (listeners, log.dirs, num.partitions, ...)\n\
     \x20 --override KEY=VALUE  set a property; repeatable; wins over the file\n\
     \x20 -h, --help            this text\n\
     \x20 -V, --version         the version\n\
     \n\
     Flags win over --override, which wins over --config. Logging: RUST_LOG=debug."
        .to_string()
}

/// Parses Java `.properties` text into (key, value, line) triples.
pub fn parse_properties(text: &str) -> Result<Vec<(String, String, usize)>, ConfigError> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((number, line)) = lines.next() {
        let mut logical = line.trim_start().to_string();
        if logical.is_empty() || logical.starts_with('#') || logical.starts_with('!') {
            continue;
        }
        // A line ending in an odd number of backslashes continues.
        while logical.ends_with('\\')
            && (logical.len() - logical.trim_end_matches('\\').len()) % 2 == 1
        {
            logical.pop();
            match lines.next() {
                Some((_, next)) => logical.push_str(next.trim_start()),
                None => break,
            }
        }
        let split = logical
            .find(['=', ':'])
            .or_else(|| logical.find(char::is_whitespace));
        let (key, value) = match split {
            Some(i) => {
                let (k, v) = logical.split_at(i);
                let v = &v[1..];
                (k.trim(), v.trim())
            }
            None => (logical.trim(), ""),
        };
        let unescape = |s: &str| {
            s.replace("\\t", "\t")
                .replace("\\n", "\n")
                .replace("\\:", ":")
                .replace("\\=", "=")
                .replace("\\\\", "\\")
        };
        out.push((unescape(key), unescape(value), number + 1));
    }
    Ok(out)
}

/// Parses argv without the program name.
pub fn parse_command_line<I: IntoIterator<Item = String>>(
    args: I,
) -> Result<CommandLine, ConfigError> {
    let mut flags: Vec<(String, String)> = Vec::new();
    let mut file = None;
    let mut overrides = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(CommandLine::Help(usage())),
            "-V" | "--version" => return Ok(CommandLine::Version),
            "--listen" | "--data-dir" | "--shards" | "--node-id" | "--config" | "--override" => {
                let value = match inline {
                    Some(v) => v,
                    None => args
                        .next()
                        .ok_or_else(|| ConfigError::Usage(format!("{name} needs a value")))?,
                };
                match name.as_str() {
                    "--config" => file = Some(value),
                    "--override" => {
                        let (k, v) = value.split_once('=').ok_or_else(|| {
                            ConfigError::Usage(format!(
                                "--override expects key=value, got '{value}'"
                            ))
                        })?;
                        overrides.push((k.trim().to_string(), v.trim().to_string()));
                    }
                    _ => flags.push((name, value)),
                }
            }
            other => return Err(ConfigError::Usage(format!("unknown argument '{other}'"))),
        }
    }
    let mut builder = Builder::default();
    if let Some(path) = file {
        let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Io {
            path: path.clone(),
            message: e.to_string(),
        })?;
        for (key, value, line) in parse_properties(&text)? {
            builder.set(&key, &value).map_err(|e| match e {
                ConfigError::InvalidValue { key, value, reason } => ConfigError::InvalidValue {
                    key: format!("{key} ({path}:{line})"),
                    value,
                    reason,
                },
                other => other,
            })?;
        }
    }
    for (key, value) in overrides {
        builder.set(&key, &value)?;
    }
    for (flag, value) in flags {
        match flag.as_str() {
            // The client listener only: CONTROLLER listeners of
            // `listeners` stay.
            "--listen" => builder.listen_flag = Some(value),
            "--data-dir" => builder
                .set("log.dirs", &value)
                .map_err(|e| rename(e, "--data-dir"))?,
            "--shards" => builder
                .set("ringbroker.shards", &value)
                .map_err(|e| rename(e, "--shards"))?,
            "--node-id" => builder
                .set("node.id", &value)
                .map_err(|e| rename(e, "--node-id"))?,
            _ => {}
        }
    }
    let (config, warnings) = builder.finish()?;
    Ok(CommandLine::Run {
        config: Box::new(config),
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<(BrokerConfig, Vec<String>), ConfigError> {
        match parse_command_line(args.iter().map(|s| s.to_string()))? {
            CommandLine::Run { config, warnings } => Ok((*config, warnings)),
            other => panic!("expected Run, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let (c, w) = run(&[]).expect("parses");
        assert_eq!(c.listen, "127.0.0.1:9092".parse().unwrap());
        assert_eq!(
            (c.advertised_host.as_str(), c.advertised_port),
            ("127.0.0.1", 9092)
        );
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!((c.num_partitions, c.auto_create_topics), (1, true));
        assert_eq!(c.topic_defaults, TopicConfig::default());
        assert!(c.shards >= 1 && w.is_empty());
    }

    #[test]
    fn properties_parsing() {
        let text = "# comment\n! also\n\nlisteners = PLAINTEXT://127.0.0.1:9999\nlog.dirs:/tmp/a,\\\n  /tmp/b\nnum.partitions 4\n";
        let props = parse_properties(text).unwrap();
        assert_eq!(
            props[0],
            ("listeners".into(), "PLAINTEXT://127.0.0.1:9999".into(), 4)
        );
        assert_eq!(props[1].1, "/tmp/a,/tmp/b");
        assert_eq!(props[2], ("num.partitions".into(), "4".into(), 7));
    }

    #[test]
    fn precedence_file_then_override_then_flag() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.properties");
        std::fs::write(&path, "num.partitions=3\nlog.dirs=/from/file\nlisteners=PLAINTEXT://127.0.0.1:9100\nlog.segment.bytes=2048\nfoo.bar=1\nzookeeper.connect=x\n").unwrap();
        let p = path.to_str().unwrap();
        let (c, w) = run(&[
            "--config",
            p,
            "--override",
            "num.partitions=5",
            "--override=log.dirs=/from/override",
            "--data-dir=/from/flag",
        ])
        .unwrap();
        assert_eq!(c.num_partitions, 5);
        assert_eq!(c.data_dir, PathBuf::from("/from/flag"));
        assert_eq!(c.listen.port(), 9100);
        assert_eq!(c.topic_defaults.segment_bytes, 2048);
        assert!(w.iter().any(|w| w.contains("foo.bar")));
        assert!(w
            .iter()
            .any(|w| w.contains("zookeeper.connect") && w.contains("no effect")));
    }

    #[test]
    fn group_session_bounds_and_retention_check() {
        let (c, w) = run(&[
            "--override",
            "group.min.session.timeout.ms=1000",
            "--override",
            "group.max.session.timeout.ms=60000",
            "--override",
            "offsets.retention.check.interval.ms=5000",
        ])
        .unwrap();
        assert_eq!(
            (
                c.group_min_session_timeout_ms,
                c.group_max_session_timeout_ms,
                c.offsets_retention_check_interval_ms
            ),
            (1000, 60_000, 5000)
        );
        assert!(w.is_empty(), "{w:?}");
        let e = run(&[
            "--override",
            "group.min.session.timeout.ms=9000",
            "--override",
            "group.max.session.timeout.ms=8000",
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("group.max.session.timeout.ms"), "{e}");
    }

    #[test]
    fn retention_units() {
        let (c, _) = run(&["--override", "log.retention.hours=2"]).unwrap();
        assert_eq!(c.topic_defaults.retention_ms, 7_200_000);
        let (c, _) = run(&[
            "--override",
            "log.retention.minutes=3",
            "--override",
            "log.retention.hours=2",
        ])
        .unwrap();
        assert_eq!(c.topic_defaults.retention_ms, 180_000);
        let (c, _) = run(&[
            "--override",
            "log.retention.ms=5",
            "--override",
            "log.retention.minutes=3",
        ])
        .unwrap();
        assert_eq!(c.topic_defaults.retention_ms, 5);
        let (c, _) = run(&["--override", "log.roll.hours=1"]).unwrap();
        assert_eq!(c.topic_defaults.segment_ms, 3_600_000);
    }

    #[test]
    fn bad_values_are_one_line_errors() {
        let e = run(&["--override", "log.segment.bytes=abc"])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "invalid value 'abc' for log.segment.bytes: expected an integer"
        );
        assert!(run(&["--shards", "0"])
            .unwrap_err()
            .to_string()
            .contains("--shards"));
        assert!(run(&["--listen", "SSL://127.0.0.1:1"])
            .unwrap_err()
            .to_string()
            .contains("PLAINTEXT"));
        assert!(matches!(run(&["--bogus"]), Err(ConfigError::Usage(_))));
        assert!(matches!(run(&["--listen"]), Err(ConfigError::Usage(_))));
        assert!(run(&["--override", "auto.create.topics.enable=maybe"]).is_err());
        let e = run(&["--override", "ringbroker.log.write.mode=dma"])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "invalid value 'dma' for ringbroker.log.write.mode: expected buffered or direct"
        );
    }

    #[test]
    fn write_mode_and_preallocation() {
        let (c, _) = run(&[]).unwrap();
        assert_eq!(c.log_write_mode, WriteMode::Buffered);
        assert!(c.topic_defaults.preallocate);
        let (c, _) = run(&[
            "--override",
            "ringbroker.log.write.mode=direct",
            "--override",
            "log.preallocate=false",
        ])
        .unwrap();
        assert_eq!(c.log_write_mode, WriteMode::Direct);
        assert!(!c.topic_defaults.preallocate);
        assert!(!c.log_sync_filesystem);
        let (c, _) = run(&["--override", "ringbroker.log.sync.scope=filesystem"]).unwrap();
        assert!(c.log_sync_filesystem);
        assert!(run(&["--override", "ringbroker.log.sync.scope=disk"]).is_err());
    }

    /// The cluster command of the README: combined nodes, Kafka's keys.
    #[test]
    fn kraft_cluster_settings() {
        let common = [
            "--override",
            "process.roles=broker,controller",
            "--override",
            "controller.quorum.voters=1@127.0.0.1:9093,2@127.0.0.1:9095,3@127.0.0.1:9097",
            "--override",
            "listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093",
            "--override",
            "controller.listener.names=CONTROLLER",
        ];
        let mut args = vec!["--node-id", "1", "--listen", "127.0.0.1:9092"];
        args.extend(common);
        let (c, _) = run(&args).unwrap();
        let cluster = c.cluster.expect("cluster mode");
        assert!(cluster.broker && cluster.controller);
        assert_eq!(cluster.voters.len(), 3);
        assert_eq!(cluster.voters[1].port, 9095);
        assert_eq!(
            cluster.controller_listen,
            Some("127.0.0.1:9093".parse().unwrap())
        );
        assert_eq!(c.listen, "127.0.0.1:9092".parse().unwrap());
        assert_eq!(
            cluster.voter_addr(3),
            Some("127.0.0.1:9097".parse().unwrap())
        );
        assert_eq!(
            (cluster.heartbeat_interval_ms, cluster.session_timeout_ms),
            (2000, 9000)
        );
        // Not a voter but a controller; a voter without the role; no roles.
        let mut args = vec!["--node-id", "7"];
        args.extend(common);
        assert!(run(&args).unwrap_err().to_string().contains("not a voter"));
        assert!(run(&[
            "--node-id",
            "1",
            "--override",
            "process.roles=broker",
            "--override",
            "controller.quorum.voters=1@127.0.0.1:9093"
        ])
        .unwrap_err()
        .to_string()
        .contains("no controller"));
        assert!(run(&["--override", "controller.quorum.voters=1@h:1"])
            .unwrap_err()
            .to_string()
            .contains("process.roles"));
        assert!(run(&["--override", "process.roles=broker,zookeeper"]).is_err());
        // A broker-only node needs no CONTROLLER listener of its own.
        let (c, _) = run(&[
            "--node-id",
            "4",
            "--override",
            "process.roles=broker",
            "--override",
            "controller.quorum.voters=1@127.0.0.1:9093",
        ])
        .unwrap();
        let cluster = c.cluster.expect("cluster");
        assert!(cluster.broker && !cluster.controller && cluster.controller_listen.is_none());
        // No cluster keys: the single node.
        assert!(run(&[]).unwrap().0.cluster.is_none());
        // Bad voter lists.
        for bad in ["x@h:1", "1@h", "1@h:1,1@h:2", ""] {
            assert!(
                run(&[
                    "--override",
                    "process.roles=broker",
                    "--override",
                    &format!("controller.quorum.voters={bad}")
                ])
                .is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn listeners_variants() {
        let (c, _) = run(&["--listen", "PLAINTEXT://:9300"]).unwrap();
        assert!(c.listen.ip().is_unspecified());
        assert_ne!(c.advertised_host, "0.0.0.0");
        let (c, _) = run(&["--listen", "localhost:9301"]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:9301".parse().unwrap());
        let (c, _) = run(&[
            "--override",
            "advertised.listeners=PLAINTEXT://broker.example:19092",
        ])
        .unwrap();
        assert_eq!(
            (c.advertised_host.as_str(), c.advertised_port),
            ("broker.example", 19092)
        );
    }

    #[test]
    fn help_and_version() {
        assert!(matches!(
            parse_command_line(vec!["--help".to_string()]),
            Ok(CommandLine::Help(_))
        ));
        assert!(matches!(
            parse_command_line(vec!["-V".to_string()]),
            Ok(CommandLine::Version)
        ));
    }

    #[test]
    fn topic_configs() {
        let defaults = TopicConfig::default();
        let mut overrides = BTreeMap::new();
        overrides.insert("retention.ms".to_string(), "1000".to_string());
        overrides.insert("cleanup.policy".to_string(), "Delete, compact".to_string());
        let c = topic_config_from_overrides(&defaults, &overrides).unwrap();
        assert_eq!(
            (c.retention_ms, c.cleanup_policy.as_str()),
            (1000, "compact,delete")
        );
        overrides.insert("segment.bytes".to_string(), "-5".to_string());
        assert!(topic_config_from_overrides(&defaults, &overrides).is_err());
        overrides.remove("segment.bytes");
        overrides.insert("nope".to_string(), "1".to_string());
        assert_eq!(
            topic_config_from_overrides(&defaults, &overrides),
            Err(ConfigError::UnknownKey("nope".into()))
        );

        let mut t = defaults.clone();
        t.set("message.timestamp.type", "LogAppendTime").unwrap();
        t.reset("message.timestamp.type", &defaults).unwrap();
        assert_eq!(t, defaults);

        let mut explicit = BTreeMap::new();
        explicit.insert("log.segment.bytes".to_string(), "4096".to_string());
        let mut o = BTreeMap::new();
        o.insert("retention.ms".to_string(), "1000".to_string());
        let dynamic = DynamicBrokerConfigs::default();
        let layers = BrokerLayers {
            dynamic: &dynamic,
            explicit: &explicit,
        };
        let entries = TopicConfig::describe(&defaults, &o, &layers);
        let find = |n: &str| entries.iter().find(|e| e.name == n).unwrap().clone();
        assert_eq!(
            (
                find("retention.ms").source,
                find("retention.ms").value.as_deref()
            ),
            (ConfigSource::DynamicTopic, Some("1000"))
        );
        assert_eq!(find("segment.bytes").source, ConfigSource::StaticBroker);
        assert_eq!(find("max.message.bytes").source, ConfigSource::Default);
        assert!(find("max.message.bytes").is_default);
        assert_eq!(
            TopicConfig::broker_synonym("max.message.bytes"),
            Some("message.max.bytes")
        );
        assert!(TopicConfig::is_known_key("flush.ms") && !TopicConfig::is_known_key("x"));
    }

    #[test]
    fn broker_describe_marks_explicit_keys() {
        let (c, _) = run(&["--override", "num.partitions=3"]).unwrap();
        let entries = c.describe(&DynamicBrokerConfigs::default());
        let n = entries.iter().find(|e| e.name == "num.partitions").unwrap();
        assert_eq!(
            (n.value.as_deref(), n.source, n.read_only),
            (Some("3"), ConfigSource::StaticBroker, true)
        );
        let m = entries
            .iter()
            .find(|e| e.name == "message.max.bytes")
            .unwrap();
        assert_eq!(m.source, ConfigSource::Default);
        assert!(!m.read_only, "message.max.bytes is dynamic");
    }

    #[test]
    fn every_kafka_topic_config_is_known() {
        // Kafka 4.x TopicConfig names plus the throttled-replica lists.
        let kafka = [
            "cleanup.policy",
            "compression.gzip.level",
            "compression.lz4.level",
            "compression.type",
            "compression.zstd.level",
            "delete.retention.ms",
            "file.delete.delay.ms",
            "flush.messages",
            "flush.ms",
            "follower.replication.throttled.replicas",
            "index.interval.bytes",
            "leader.replication.throttled.replicas",
            "local.retention.bytes",
            "local.retention.ms",
            "max.compaction.lag.ms",
            "max.message.bytes",
            "message.downconversion.enable",
            "message.timestamp.after.max.ms",
            "message.timestamp.before.max.ms",
            "message.timestamp.type",
            "min.cleanable.dirty.ratio",
            "min.compaction.lag.ms",
            "min.insync.replicas",
            "preallocate",
            "remote.log.copy.disable",
            "remote.log.delete.on.disable",
            "remote.storage.enable",
            "retention.bytes",
            "retention.ms",
            "segment.bytes",
            "segment.index.bytes",
            "segment.jitter.ms",
            "segment.ms",
            "unclean.leader.election.enable",
        ];
        let known: Vec<&str> = TopicConfig::all_keys().iter().map(|k| k.0).collect();
        assert_eq!(known, kafka, "sorted, one entry per Kafka 4.x topic config");
        for removed in REMOVED_TOPIC_KEYS {
            assert!(!TopicConfig::is_known_key(removed));
        }
        // Every default parses back through its own check.
        let defaults = TopicConfig::default();
        for key in kafka {
            let value = defaults.get(key).expect("described");
            let mut t = TopicConfig::default();
            t.set(key, &value)
                .unwrap_or_else(|e| panic!("{key}={value}: {e}"));
        }
    }

    #[test]
    fn stored_topic_configs_are_normalized_and_checked() {
        let mut t = TopicConfig::default();
        t.set("min.cleanable.dirty.ratio", "0.25").unwrap();
        t.set("compression.gzip.level", " 9 ").unwrap();
        t.set("message.downconversion.enable", "FALSE").unwrap();
        t.set("leader.replication.throttled.replicas", "0:1, 1:2")
            .unwrap();
        assert_eq!(t.get("min.cleanable.dirty.ratio").as_deref(), Some("0.25"));
        assert_eq!(t.get("compression.gzip.level").as_deref(), Some("9"));
        assert_eq!(
            t.get("message.downconversion.enable").as_deref(),
            Some("false")
        );
        assert_eq!(
            t.get("leader.replication.throttled.replicas").as_deref(),
            Some("0:1,1:2")
        );
        assert_eq!(t.get("delete.retention.ms").as_deref(), Some("86400000"));
        t.set("min.cleanable.dirty.ratio", "1").unwrap();
        assert_eq!(t.get("min.cleanable.dirty.ratio").as_deref(), Some("1.0"));
        for (key, bad) in [
            ("compression.gzip.level", "0"),
            ("compression.lz4.level", "18"),
            ("min.cleanable.dirty.ratio", "1.5"),
            ("delete.retention.ms", "-1"),
            ("leader.replication.throttled.replicas", "x:1"),
            ("remote.storage.enable", "true"),
            ("segment.jitter.ms", "soon"),
        ] {
            assert!(t.clone().set(key, bad).is_err(), "{key}={bad}");
        }
        assert!(t.clone().set("compression.gzip.level", "-1").is_ok());
        // A catalog written before Kafka 4 may hold removed keys: ignored.
        let mut old = BTreeMap::new();
        old.insert("message.format.version".to_string(), "2.8".to_string());
        assert!(topic_config_from_overrides(&TopicConfig::default(), &old).is_ok());
    }

    #[test]
    fn dynamic_broker_configs_apply_over_static_ones() {
        let (c, _) = run(&[
            "--override",
            "log.retention.ms=1000",
            "--override",
            "message.max.bytes=5000",
        ])
        .unwrap();
        let mut dynamic = DynamicBrokerConfigs::default();
        dynamic
            .cluster
            .insert("log.retention.ms".into(), "2000".into());
        dynamic
            .cluster
            .insert("log.segment.bytes".into(), "8192".into());
        dynamic
            .broker
            .insert("log.segment.bytes".into(), "4096".into());
        dynamic
            .cluster
            .insert("log.flush.interval.ms".into(), "250".into());
        dynamic.broker.insert("num.io.threads".into(), "4".into());
        let defaults = c.effective_topic_defaults(&dynamic);
        assert_eq!(defaults.retention_ms, 2000, "cluster default over static");
        assert_eq!(
            defaults.segment_bytes, 4096,
            "per-broker over cluster default"
        );
        assert_eq!(defaults.max_message_bytes, 5000, "static stays");
        assert_eq!(c.effective_flush_interval_ms(&dynamic), Some(250));
        let entries = c.describe(&dynamic);
        let find = |n: &str| entries.iter().find(|e| e.name == n).unwrap().clone();
        assert_eq!(
            (
                find("log.retention.ms").value.as_deref(),
                find("log.retention.ms").source
            ),
            (Some("2000"), ConfigSource::DynamicDefaultBroker)
        );
        assert_eq!(
            (
                find("log.segment.bytes").value.as_deref(),
                find("log.segment.bytes").source
            ),
            (Some("4096"), ConfigSource::DynamicBroker)
        );
        assert_eq!(find("message.max.bytes").source, ConfigSource::StaticBroker);
        assert_eq!(find("num.io.threads").source, ConfigSource::DynamicBroker);
        assert!(find("num.partitions").read_only && !find("log.retention.ms").read_only);
        let synonyms = c.synonyms(&dynamic, "log.retention.ms");
        let sources: Vec<ConfigSource> = synonyms.iter().map(|s| s.2).collect();
        assert_eq!(
            sources,
            vec![
                ConfigSource::DynamicDefaultBroker,
                ConfigSource::StaticBroker,
                ConfigSource::Default
            ]
        );
        let cluster = BrokerConfig::describe_cluster_defaults(&dynamic);
        assert_eq!(cluster.len(), 3);
        assert!(cluster
            .iter()
            .all(|e| e.source == ConfigSource::DynamicDefaultBroker));
    }

    #[test]
    fn dynamic_broker_config_checks() {
        let set = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(check_dynamic_broker_configs(&set(&[
            ("log.retention.ms", "1000"),
            ("log.cleaner.delete.retention.ms", "5"),
            ("num.io.threads", "8"),
        ]))
        .is_ok());
        assert_eq!(
            check_dynamic_broker_configs(&set(&[
                ("num.partitions", "3"),
                ("log.retention.hours", "1")
            ]))
            .unwrap_err(),
            "Cannot update these configs dynamically: Set(log.retention.hours, num.partitions)"
        );
        assert_eq!(
            check_dynamic_broker_configs(&set(&[("log.retention.ms", "soon")])).unwrap_err(),
            "Invalid value soon for configuration log.retention.ms: expected an integer"
        );
        assert_eq!(
            broker_key_mode("ringbroker.shards"),
            BrokerKeyMode::ReadOnly
        );
        assert_eq!(broker_key_mode("message.max.bytes"), BrokerKeyMode::Applied);
        assert_eq!(
            broker_key_mode("log.cleaner.threads"),
            BrokerKeyMode::NoEffect
        );
    }
}
