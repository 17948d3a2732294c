//! Config resources as DescribeConfigs, AlterConfigs and
//! IncrementalAlterConfigs see them: TOPIC (overrides over the broker
//! defaults), BROKER (the cluster-wide dynamic defaults under the name "",
//! one broker's dynamic configs under its node id) and GROUP (Kafka 4.x
//! group configs).
//!
//! A change is computed here as the resource's complete new config set and
//! checked with Kafka's rules and error codes (topic and group values:
//! INVALID_CONFIG; broker values and read-only broker keys:
//! INVALID_REQUEST), then stored through one catalog change on shard 0, so
//! it is persisted in `<data>/ringbroker.meta/` and reaches every shard.

use std::collections::BTreeMap;
use std::rc::Rc;

use crate::catalog::validate_topic_name;
use crate::config::{
    broker_key_mode, check_dynamic_broker_configs, topic_config_from_overrides, BrokerConfig,
    BrokerKeyMode, BrokerLayers, ConfigEntry, ConfigSource, TopicConfig, REMOVED_TOPIC_KEYS,
};
use crate::group_config::{check_group_configs, describe_group_configs};
use crate::messages::AdminRequest;
use crate::shard::Shard;
use ringbroker_protocol::errors::ErrorCode;

/// Kafka's resource type code for topics.
pub const RESOURCE_TOPIC: i8 = 2;
/// Kafka's resource type code for brokers.
pub const RESOURCE_BROKER: i8 = 4;
/// Kafka's resource type code for groups (Kafka 4.x group configs).
pub const RESOURCE_GROUP: i8 = 32;

/// IncrementalAlterConfigs operations.
pub const OP_SET: i8 = 0;
/// Remove the key (back to the default).
pub const OP_DELETE: i8 = 1;
/// Add items to a list value.
pub const OP_APPEND: i8 = 2;
/// Remove items from a list value.
pub const OP_SUBTRACT: i8 = 3;

/// A result or a Kafka error code with its message.
pub type Outcome<T> = Result<T, (ErrorCode, String)>;

/// A described config with its synonyms: (name, value, source), highest
/// precedence first.
pub type Described = (ConfigEntry, Vec<(String, Option<String>, ConfigSource)>);

/// A resource name and its complete config set.
type NamedConfigs = (String, BTreeMap<String, String>);

/// How a resource's configs change.
pub enum Change {
    /// AlterConfigs: this set replaces every config of the resource.
    Replace(Vec<(String, Option<String>)>),
    /// IncrementalAlterConfigs: (name, operation, value), in order.
    Ops(Vec<(String, i8, Option<String>)>),
}

fn fail<T>(code: ErrorCode, message: impl Into<String>) -> Outcome<T> {
    Err((code, message.into()))
}

/// Topic and broker configs whose values are comma-separated lists
/// (APPEND/SUBTRACT apply to them only).
const LIST_CONFIGS: &[&str] = &[
    "cleanup.policy",
    "log.cleanup.policy",
    "follower.replication.throttled.replicas",
    "leader.replication.throttled.replicas",
];

/// Checks the request-level rules Kafka applies before anything else:
/// null values and duplicate keys (INVALID_REQUEST).
fn check_shape(change: &Change) -> Outcome<()> {
    let (names, nulls): (Vec<&str>, Vec<&str>) = match change {
        Change::Replace(items) => (
            items.iter().map(|(k, _)| k.as_str()).collect(),
            items
                .iter()
                .filter(|(_, v)| v.is_none())
                .map(|(k, _)| k.as_str())
                .collect(),
        ),
        Change::Ops(ops) => (
            ops.iter().map(|(k, ..)| k.as_str()).collect(),
            ops.iter()
                .filter(|(_, op, v)| *op != OP_DELETE && v.is_none())
                .map(|(k, ..)| k.as_str())
                .collect(),
        ),
    };
    let mut seen = std::collections::HashSet::new();
    if !names.iter().all(|n| seen.insert(*n)) {
        return fail(
            ErrorCode::InvalidRequest,
            "Error due to duplicate config keys",
        );
    }
    if !nulls.is_empty() {
        return fail(
            ErrorCode::InvalidRequest,
            format!("Null value not supported for : {}", nulls.join(", ")),
        );
    }
    if let Change::Ops(ops) = change {
        if let Some((_, op, _)) = ops
            .iter()
            .find(|(_, op, _)| !(OP_SET..=OP_SUBTRACT).contains(op))
        {
            return fail(
                ErrorCode::InvalidRequest,
                format!("Unknown operations type {op}"),
            );
        }
    }
    Ok(())
}

/// Applies `change` to `current`; `list_default` gives the value a list
/// config starts from when the resource does not set it.
fn apply_change(
    current: &BTreeMap<String, String>,
    change: &Change,
    list_default: impl Fn(&str) -> Option<String>,
) -> Outcome<BTreeMap<String, String>> {
    let ops = match change {
        Change::Replace(items) => {
            return Ok(items
                .iter()
                .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
                .collect())
        }
        Change::Ops(ops) => ops,
    };
    let mut configs = current.clone();
    for (name, op, value) in ops {
        match *op {
            OP_SET => {
                configs.insert(name.clone(), value.clone().unwrap_or_default());
            }
            OP_DELETE => {
                configs.remove(name);
            }
            _ if !LIST_CONFIGS.contains(&name.as_str()) => {
                let verb = if *op == OP_APPEND {
                    "APPEND"
                } else {
                    "SUBTRACT"
                };
                return fail(
                    ErrorCode::InvalidConfig,
                    format!("Can't {verb} to key {name} because its type is not LIST."),
                );
            }
            _ => {
                let base = configs
                    .get(name)
                    .cloned()
                    .or_else(|| list_default(name))
                    .unwrap_or_default();
                let mut items: Vec<String> = split_list(&base);
                for item in split_list(value.as_deref().unwrap_or("")) {
                    if *op == OP_APPEND {
                        if !items.contains(&item) {
                            items.push(item);
                        }
                    } else {
                        items.retain(|i| *i != item);
                    }
                }
                configs.insert(name.clone(), items.join(","));
            }
        }
    }
    Ok(configs)
}

fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Checks a topic's complete override set: every name a Kafka 4.x topic
/// config, every value valid, min.compaction.lag.ms <= max (INVALID_CONFIG).
pub fn check_topic_configs(
    defaults: &TopicConfig,
    overrides: &BTreeMap<String, String>,
) -> Result<(), String> {
    if let Some(unknown) = overrides.keys().find(|k| !TopicConfig::is_known_key(k)) {
        return Err(format!("Unknown topic config name: {unknown}"));
    }
    let config = topic_config_from_overrides(defaults, overrides).map_err(|e| e.to_string())?;
    config.check_consistency()
}

/// Checks that a broker resource name is "" or this broker's id.
fn check_broker_name(name: &str, node_id: i32) -> Outcome<()> {
    if name.is_empty() {
        return Ok(());
    }
    let Ok(id) = name.parse::<i32>() else {
        return fail(
            ErrorCode::InvalidRequest,
            format!("Node id must be an integer, but it is: {name}"),
        );
    };
    if id != node_id {
        return fail(
            ErrorCode::InvalidRequest,
            format!("Unexpected broker id, expected {node_id}, but received {name}"),
        );
    }
    Ok(())
}

/// The complete new config set of resource (`resource_type`, `name`) after
/// `change`, checked as Kafka checks it.
pub fn new_configs(
    shard: &Shard,
    resource_type: i8,
    name: &str,
    change: &Change,
) -> Outcome<BTreeMap<String, String>> {
    check_shape(change)?;
    let catalog = shard.catalog();
    match resource_type {
        RESOURCE_TOPIC => {
            if name.is_empty() {
                return fail(
                    ErrorCode::InvalidRequest,
                    "Default topic resources are not allowed.",
                );
            }
            let Some(meta) = catalog.topics.get(name) else {
                return fail(
                    ErrorCode::UnknownTopicOrPartition,
                    format!("The topic '{name}' does not exist."),
                );
            };
            let mut current = meta.configs.clone();
            current.retain(|k, _| !REMOVED_TOPIC_KEYS.contains(&k.as_str()));
            let defaults = shard.topic_defaults();
            let configs = apply_change(&current, change, |k| defaults.get(k))?;
            check_topic_configs(&defaults, &configs).map_err(|m| (ErrorCode::InvalidConfig, m))?;
            Ok(configs)
        }
        RESOURCE_BROKER => {
            check_broker_name(name, shard.config.node_id)?;
            let current = catalog
                .broker_configs
                .get(name)
                .cloned()
                .unwrap_or_default();
            let defaults = shard.topic_defaults();
            let configs = apply_change(&current, change, |k| {
                TopicConfig::topic_key_of(k).and_then(|t| defaults.get(t))
            })?;
            check_dynamic_broker_configs(&configs).map_err(|m| (ErrorCode::InvalidRequest, m))?;
            for key in configs.keys() {
                if broker_key_mode(key) == BrokerKeyMode::NoEffect {
                    log::warn!(
                        "dynamic broker config '{key}' is stored but has no effect in ringbroker"
                    );
                }
            }
            Ok(configs)
        }
        RESOURCE_GROUP => {
            if name.is_empty() {
                return fail(
                    ErrorCode::InvalidRequest,
                    "Default group resources are not allowed.",
                );
            }
            let current = catalog.group_configs.get(name).cloned().unwrap_or_default();
            let configs = apply_change(&current, change, |_| None)?;
            check_group_configs(&configs).map_err(|m| (ErrorCode::InvalidConfig, m))?;
            Ok(configs)
        }
        other => fail(
            ErrorCode::InvalidRequest,
            format!("Unknown resource type {other}"),
        ),
    }
}

/// Stores checked config sets, one catalog change per resource type, and
/// returns each item's outcome in order.
async fn store(
    shard: &Rc<Shard>,
    changes: Vec<(i8, String, BTreeMap<String, String>)>,
) -> Vec<Outcome<()>> {
    let mut outcomes: Vec<Outcome<()>> = vec![Ok(()); changes.len()];
    for resource_type in [RESOURCE_TOPIC, RESOURCE_BROKER, RESOURCE_GROUP] {
        let (slots, items): (Vec<usize>, Vec<NamedConfigs>) = changes
            .iter()
            .enumerate()
            .filter(|(_, (t, ..))| *t == resource_type)
            .map(|(i, (_, name, configs))| (i, (name.clone(), configs.clone())))
            .unzip();
        if items.is_empty() {
            continue;
        }
        let request = match resource_type {
            RESOURCE_TOPIC => AdminRequest::SetTopicConfigs(items),
            RESOURCE_BROKER => AdminRequest::SetBrokerConfigs(items),
            _ => AdminRequest::SetGroupConfigs(items),
        };
        let results = shard.admin(request).await;
        for (n, slot) in slots.into_iter().enumerate() {
            let Some(result) = results.get(n).or(results.first()) else {
                outcomes[slot] = fail(
                    ErrorCode::UnknownServerError,
                    "no answer from the metadata shard",
                );
                continue;
            };
            if result.error_code != 0 {
                let code = ErrorCode::from_code(result.error_code)
                    .unwrap_or(ErrorCode::UnknownServerError);
                outcomes[slot] = Err((code, result.message.clone().unwrap_or_default()));
            }
        }
    }
    outcomes
}

/// AlterConfigs and IncrementalAlterConfigs: checks every resource's
/// change (a resource named twice is refused), then, unless
/// `validate_only`, stores the checked ones. Outcomes in request order.
pub async fn alter(
    shard: &Rc<Shard>,
    resources: Vec<(i8, String, Change)>,
    validate_only: bool,
) -> Vec<Outcome<()>> {
    let mut outcomes: Vec<Outcome<()>> = Vec::with_capacity(resources.len());
    let mut changes = Vec::new();
    let mut slots = Vec::new();
    for (resource_type, name, change) in &resources {
        let named = resources
            .iter()
            .filter(|(t, n, _)| t == resource_type && n == name)
            .count();
        if named > 1 {
            outcomes.push(fail(
                ErrorCode::InvalidRequest,
                "Each resource must appear at most once.",
            ));
            continue;
        }
        match new_configs(shard, *resource_type, name, change) {
            Ok(configs) => {
                if !validate_only {
                    slots.push(outcomes.len());
                    changes.push((*resource_type, name.clone(), configs));
                }
                outcomes.push(Ok(()));
            }
            Err(e) => outcomes.push(Err(e)),
        }
    }
    for (slot, stored) in slots.into_iter().zip(store(shard, changes).await) {
        outcomes[slot] = stored;
    }
    outcomes
}

/// Every config of a resource for DescribeConfigs, with synonyms.
pub fn describe(shard: &Shard, resource_type: i8, name: &str) -> Outcome<Vec<Described>> {
    let catalog = shard.catalog();
    let config = &shard.config;
    let dynamic = shard.dynamic_configs();
    match resource_type {
        RESOURCE_TOPIC => {
            let Some(meta) = catalog.topics.get(name) else {
                if validate_topic_name(name).is_err() {
                    return fail(
                        ErrorCode::InvalidTopicException,
                        format!("Invalid topic name '{name}'"),
                    );
                }
                return fail(
                    ErrorCode::UnknownTopicOrPartition,
                    format!("Topic '{name}' does not exist."),
                );
            };
            let layers = BrokerLayers {
                dynamic: &dynamic,
                explicit: &config.explicit,
            };
            let defaults = shard.topic_defaults();
            Ok(TopicConfig::describe(&defaults, &meta.configs, &layers)
                .into_iter()
                .map(|entry| {
                    let mut chain = Vec::new();
                    if let Some(v) = meta.configs.get(&entry.name) {
                        chain.push((
                            entry.name.clone(),
                            Some(v.clone()),
                            ConfigSource::DynamicTopic,
                        ));
                    }
                    if let Some(broker_key) = TopicConfig::broker_synonym(&entry.name) {
                        let builtin = TopicConfig::default().get(&entry.name);
                        chain.extend(layers.synonyms(broker_key, builtin));
                    }
                    (entry, chain)
                })
                .collect())
        }
        RESOURCE_BROKER if name.is_empty() => Ok(BrokerConfig::describe_cluster_defaults(&dynamic)
            .into_iter()
            .map(|entry| {
                let chain = vec![(entry.name.clone(), entry.value.clone(), entry.source)];
                (entry, chain)
            })
            .collect()),
        RESOURCE_BROKER => {
            let Ok(id) = name.parse::<i32>() else {
                return fail(
                    ErrorCode::InvalidRequest,
                    format!("Broker id must be an integer, but it is: {name}"),
                );
            };
            if id != config.node_id {
                return fail(
                    ErrorCode::InvalidRequest,
                    format!(
                        "Unexpected broker id, expected {} or empty string, but received {name}",
                        config.node_id
                    ),
                );
            }
            Ok(config
                .describe(&dynamic)
                .into_iter()
                .map(|entry| {
                    let chain = config.synonyms(&dynamic, &entry.name);
                    (entry, chain)
                })
                .collect())
        }
        RESOURCE_GROUP => {
            if name.is_empty() {
                return fail(ErrorCode::InvalidRequest, "Group name must not be empty");
            }
            let overrides = catalog.group_configs.get(name).cloned().unwrap_or_default();
            Ok(describe_group_configs(&overrides)
                .into_iter()
                .map(|entry| {
                    let chain = vec![(entry.name.clone(), entry.value.clone(), entry.source)];
                    (entry, chain)
                })
                .collect())
        }
        other => fail(
            ErrorCode::InvalidRequest,
            format!("Unsupported resource type: {other}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn replace_drops_what_is_not_given() {
        let current = set(&[("retention.ms", "1"), ("segment.bytes", "4096")]);
        let change = Change::Replace(vec![("retention.ms".into(), Some("2".into()))]);
        let new = apply_change(&current, &change, |_| None).unwrap();
        assert_eq!(new, set(&[("retention.ms", "2")]));
    }

    #[test]
    fn incremental_operations() {
        let current = set(&[("retention.ms", "1")]);
        let change = Change::Ops(vec![
            ("retention.ms".into(), OP_DELETE, None),
            ("cleanup.policy".into(), OP_APPEND, Some("compact".into())),
        ]);
        let new = apply_change(&current, &change, |_| Some("delete".into())).unwrap();
        assert_eq!(new, set(&[("cleanup.policy", "delete,compact")]));
        let change = Change::Ops(vec![(
            "cleanup.policy".into(),
            OP_SUBTRACT,
            Some("delete".into()),
        )]);
        assert_eq!(
            apply_change(&new, &change, |_| None).unwrap(),
            set(&[("cleanup.policy", "compact")])
        );
        let change = Change::Ops(vec![("retention.ms".into(), OP_APPEND, Some("5".into()))]);
        assert_eq!(
            apply_change(&new, &change, |_| None).unwrap_err(),
            (
                ErrorCode::InvalidConfig,
                "Can't APPEND to key retention.ms because its type is not LIST.".to_string()
            )
        );
    }

    #[test]
    fn request_shape_rules() {
        let dup = Change::Replace(vec![
            ("a".into(), Some("1".into())),
            ("a".into(), Some("2".into())),
        ]);
        assert_eq!(check_shape(&dup).unwrap_err().0, ErrorCode::InvalidRequest);
        let null = Change::Ops(vec![
            ("a".into(), OP_SET, None),
            ("b".into(), OP_DELETE, None),
        ]);
        assert_eq!(
            check_shape(&null).unwrap_err().1,
            "Null value not supported for : a"
        );
        let bad_op = Change::Ops(vec![("a".into(), 9, Some("1".into()))]);
        assert!(check_shape(&bad_op).is_err());
    }

    #[test]
    fn topic_config_rules() {
        let defaults = TopicConfig::default();
        assert!(
            check_topic_configs(&defaults, &set(&[("min.cleanable.dirty.ratio", "0.3")])).is_ok()
        );
        assert_eq!(
            check_topic_configs(&defaults, &set(&[("no.such.config", "1")])).unwrap_err(),
            "Unknown topic config name: no.such.config"
        );
        assert!(
            check_topic_configs(&defaults, &set(&[("min.cleanable.dirty.ratio", "2")])).is_err()
        );
        assert!(
            check_topic_configs(&defaults, &set(&[("message.format.version", "3.0")])).is_err()
        );
        assert!(
            check_topic_configs(&defaults, &set(&[("remote.storage.enable", "true")]))
                .unwrap_err()
                .contains("Tiered Storage functionality is disabled")
        );
        assert!(check_topic_configs(
            &defaults,
            &set(&[
                ("min.compaction.lag.ms", "10"),
                ("max.compaction.lag.ms", "5")
            ])
        )
        .unwrap_err()
        .starts_with("conflict topic config setting"));
    }

    #[test]
    fn broker_names() {
        assert!(check_broker_name("", 3).is_ok());
        assert!(check_broker_name("3", 3).is_ok());
        assert_eq!(
            check_broker_name("4", 3).unwrap_err().1,
            "Unexpected broker id, expected 3, but received 4"
        );
        assert!(check_broker_name("x", 3).is_err());
    }
}
