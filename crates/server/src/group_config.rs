//! Kafka's group configs: the GROUP config resource (resource type 32) that
//! Kafka 4.x describes and alters per group id (`consumer.session.timeout.ms`,
//! `consumer.heartbeat.interval.ms`, share and streams group settings),
//! with Kafka's defaults and the broker bounds Kafka checks them against.
//!
//! ringbroker stores them in the catalog and describes them. They configure
//! Kafka's newer group protocols (KIP-848 consumer groups, share groups,
//! streams groups); ringbroker's coordinator speaks the classic protocol,
//! whose session and rebalance timeouts come from each JoinGroup, so these
//! values change nothing in how its groups behave.

use std::collections::BTreeMap;

use crate::config::{Check, ConfigEntry, ConfigSource, ConfigType};

/// One group config: Kafka's name, type, default, value check and, for
/// timeouts, the broker bounds (Kafka's `group.*.min/max.*` defaults).
#[derive(Clone, Copy, Debug)]
pub struct GroupKey {
    /// Kafka's name.
    pub name: &'static str,
    /// Value type.
    pub config_type: ConfigType,
    /// Kafka's default.
    pub default: &'static str,
    /// What a value must look like.
    pub check: Check,
    /// (min, max, broker key of min, broker key of max), when bounded by
    /// broker configs.
    pub bounds: Option<(i64, &'static str, i64, &'static str)>,
    /// One-line documentation.
    pub doc: &'static str,
}

const INT_MAX: i64 = i32::MAX as i64;

/// The group configs of Kafka 4.1 (GroupConfig), sorted by name.
pub const GROUP_KEYS: &[GroupKey] = &[
    GroupKey {
        name: "consumer.heartbeat.interval.ms",
        config_type: ConfigType::Int,
        default: "5000",
        check: Check::Int(1, INT_MAX),
        bounds: Some((
            5_000,
            "group.consumer.min.heartbeat.interval.ms",
            15_000,
            "group.consumer.max.heartbeat.interval.ms",
        )),
        doc: "heartbeat interval of KIP-848 consumer group members (not used by the classic protocol)",
    },
    GroupKey {
        name: "consumer.session.timeout.ms",
        config_type: ConfigType::Int,
        default: "45000",
        check: Check::Int(1, INT_MAX),
        bounds: Some((
            45_000,
            "group.consumer.min.session.timeout.ms",
            60_000,
            "group.consumer.max.session.timeout.ms",
        )),
        doc: "session timeout of KIP-848 consumer group members (not used by the classic protocol)",
    },
    GroupKey {
        name: "share.auto.offset.reset",
        config_type: ConfigType::String,
        default: "latest",
        check: Check::OneOf(&["latest", "earliest"]),
        bounds: None,
        doc: "where a share group starts reading (no share groups in ringbroker)",
    },
    GroupKey {
        name: "share.heartbeat.interval.ms",
        config_type: ConfigType::Int,
        default: "5000",
        check: Check::Int(1, INT_MAX),
        bounds: Some((
            5_000,
            "group.share.min.heartbeat.interval.ms",
            15_000,
            "group.share.max.heartbeat.interval.ms",
        )),
        doc: "heartbeat interval of share group members (no share groups in ringbroker)",
    },
    GroupKey {
        name: "share.isolation.level",
        config_type: ConfigType::String,
        default: "read_uncommitted",
        check: Check::OneOf(&["read_committed", "read_uncommitted"]),
        bounds: None,
        doc: "isolation level of share groups (no share groups in ringbroker)",
    },
    GroupKey {
        name: "share.record.lock.duration.ms",
        config_type: ConfigType::Int,
        default: "30000",
        check: Check::Int(1_000, INT_MAX),
        bounds: Some((
            15_000,
            "group.share.min.record.lock.duration.ms",
            60_000,
            "group.share.max.record.lock.duration.ms",
        )),
        doc: "record acquisition lock of share groups (no share groups in ringbroker)",
    },
    GroupKey {
        name: "share.session.timeout.ms",
        config_type: ConfigType::Int,
        default: "45000",
        check: Check::Int(1, INT_MAX),
        bounds: Some((
            45_000,
            "group.share.min.session.timeout.ms",
            60_000,
            "group.share.max.session.timeout.ms",
        )),
        doc: "session timeout of share group members (no share groups in ringbroker)",
    },
    GroupKey {
        name: "streams.heartbeat.interval.ms",
        config_type: ConfigType::Int,
        default: "5000",
        check: Check::Int(1, INT_MAX),
        bounds: Some((
            5_000,
            "group.streams.min.heartbeat.interval.ms",
            15_000,
            "group.streams.max.heartbeat.interval.ms",
        )),
        doc: "heartbeat interval of streams group members (no streams groups in ringbroker)",
    },
    GroupKey {
        name: "streams.num.standby.replicas",
        config_type: ConfigType::Int,
        default: "0",
        check: Check::Int(0, INT_MAX),
        bounds: Some((
            0,
            "group.streams.num.standby.replicas",
            2,
            "group.streams.max.standby.replicas",
        )),
        doc: "standby replicas of streams groups (no streams groups in ringbroker)",
    },
    GroupKey {
        name: "streams.session.timeout.ms",
        config_type: ConfigType::Int,
        default: "45000",
        check: Check::Int(1, INT_MAX),
        bounds: Some((
            45_000,
            "group.streams.min.session.timeout.ms",
            60_000,
            "group.streams.max.session.timeout.ms",
        )),
        doc: "session timeout of streams group members (no streams groups in ringbroker)",
    },
];

/// (session timeout, heartbeat interval) pairs Kafka compares.
const SESSION_OVER_HEARTBEAT: &[(&str, &str)] = &[
    (
        "consumer.session.timeout.ms",
        "consumer.heartbeat.interval.ms",
    ),
    ("share.session.timeout.ms", "share.heartbeat.interval.ms"),
    (
        "streams.session.timeout.ms",
        "streams.heartbeat.interval.ms",
    ),
];

fn key(name: &str) -> Option<&'static GroupKey> {
    GROUP_KEYS.iter().find(|k| k.name == name)
}

/// The value of `name` for a group with `overrides`, normalized as Kafka
/// prints it (the default when unset or unreadable).
fn value_of(name: &str, overrides: &BTreeMap<String, String>) -> Option<String> {
    let spec = key(name)?;
    Some(
        overrides
            .get(name)
            .and_then(|v| spec.check.normalize(v).ok())
            .unwrap_or_else(|| spec.default.to_string()),
    )
}

/// Checks a group's whole resulting config set as Kafka does (names, types,
/// broker bounds, session above heartbeat). The message is Kafka's; the
/// error code is INVALID_CONFIG.
pub fn check_group_configs(configs: &BTreeMap<String, String>) -> Result<(), String> {
    if let Some(unknown) = configs.keys().find(|k| key(k).is_none()) {
        return Err(format!("Unknown group config name: {unknown}"));
    }
    for (name, value) in configs {
        let spec = key(name).expect("checked above");
        spec.check.normalize(value).map_err(|reason| {
            format!("Invalid value {value} for configuration {name}: {reason}")
        })?;
    }
    let number = |name: &str| -> i64 {
        value_of(name, configs)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    for spec in GROUP_KEYS {
        let Some((min, min_key, max, max_key)) = spec.bounds else {
            continue;
        };
        let v = number(spec.name);
        if v < min {
            return Err(format!(
                "{} must be greater than or equal to {min_key}",
                spec.name
            ));
        }
        if v > max {
            return Err(format!(
                "{} must be less than or equal to {max_key}",
                spec.name
            ));
        }
    }
    for (session, heartbeat) in SESSION_OVER_HEARTBEAT {
        if number(session) <= number(heartbeat) {
            return Err(format!("{session} must be greater than {heartbeat}"));
        }
    }
    Ok(())
}

/// True for a group config Kafka knows.
pub fn is_known_key(name: &str) -> bool {
    key(name).is_some()
}

/// Every group config of a group for DescribeConfigs: its value and
/// GROUP_CONFIG when the group sets it, Kafka's default and DEFAULT_CONFIG
/// otherwise.
pub fn describe_group_configs(overrides: &BTreeMap<String, String>) -> Vec<ConfigEntry> {
    GROUP_KEYS
        .iter()
        .map(|spec| {
            let set = overrides.contains_key(spec.name);
            ConfigEntry {
                name: spec.name.to_string(),
                value: value_of(spec.name, overrides),
                read_only: false,
                is_default: !set,
                source: if set {
                    ConfigSource::Group
                } else {
                    ConfigSource::Default
                },
                sensitive: false,
                config_type: spec.config_type,
                documentation: Some(spec.doc.to_string()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn kafka_defaults_and_sources() {
        let entries = describe_group_configs(&configs(&[("consumer.session.timeout.ms", "50000")]));
        let find = |n: &str| entries.iter().find(|e| e.name == n).unwrap();
        assert_eq!(
            find("consumer.session.timeout.ms").value.as_deref(),
            Some("50000")
        );
        assert_eq!(
            find("consumer.session.timeout.ms").source,
            ConfigSource::Group
        );
        assert_eq!(
            find("consumer.heartbeat.interval.ms").value.as_deref(),
            Some("5000")
        );
        assert_eq!(
            find("consumer.heartbeat.interval.ms").source,
            ConfigSource::Default
        );
        assert_eq!(
            find("share.record.lock.duration.ms").value.as_deref(),
            Some("30000")
        );
        assert_eq!(
            find("share.auto.offset.reset").value.as_deref(),
            Some("latest")
        );
        assert!(GROUP_KEYS.windows(2).all(|w| w[0].name < w[1].name));
    }

    #[test]
    fn checks_names_types_bounds_and_order() {
        assert!(check_group_configs(&configs(&[
            ("consumer.session.timeout.ms", "50000"),
            ("consumer.heartbeat.interval.ms", "6000"),
        ]))
        .is_ok());
        assert_eq!(
            check_group_configs(&configs(&[("session.timeout.ms", "1")])).unwrap_err(),
            "Unknown group config name: session.timeout.ms"
        );
        assert!(
            check_group_configs(&configs(&[("consumer.session.timeout.ms", "soon")]))
                .unwrap_err()
                .contains("Not a number of type INT")
        );
        assert_eq!(
            check_group_configs(&configs(&[("consumer.session.timeout.ms", "30000")]))
                .unwrap_err(),
            "consumer.session.timeout.ms must be greater than or equal to group.consumer.min.session.timeout.ms"
        );
        assert_eq!(
            check_group_configs(&configs(&[("consumer.heartbeat.interval.ms", "20000")]))
                .unwrap_err(),
            "consumer.heartbeat.interval.ms must be less than or equal to group.consumer.max.heartbeat.interval.ms"
        );
        assert!(
            check_group_configs(&configs(&[("share.isolation.level", "READ_COMMITTED")])).is_ok()
        );
        assert!(check_group_configs(&configs(&[("share.auto.offset.reset", "none")])).is_err());
    }
}
