//! Metadata changes applied to a catalog copy on shard 0. Pure: no I/O, so
//! the rules are unit-tested here and the caller persists and broadcasts.
//! This transition is what the controller's replicated state machine
//! applies in a cluster; it decides replica placement (or checks the
//! placement a client gave) against the registered, unfenced brokers.

use crate::catalog::{validate_topic_name, Catalog, PartitionMeta, TopicMeta};
use crate::cluster::metadata;
use crate::messages::{AdminRequest, AdminResult, NewPartitions, NewTopic};
use ringbroker_protocol::errors::ErrorCode;
use ringbroker_protocol::limits::{PARTITIONS_PER_TOPIC_MAX, TOPICS_MAX};

/// Defaults of the broker's config that admin changes fall back to.
#[derive(Clone, Copy, Debug)]
pub struct AdminDefaults {
    /// num.partitions.
    pub partitions: i32,
    /// default.replication.factor.
    pub replication_factor: i16,
}

fn error(code: ErrorCode, message: impl Into<String>) -> AdminResult {
    AdminResult {
        error_code: code.code(),
        message: Some(message.into()),
        topic: None,
    }
}

fn ok(topic: &TopicMeta) -> AdminResult {
    AdminResult {
        error_code: 0,
        message: None,
        topic: Some(topic.clone()),
    }
}

/// Places `count` partitions numbered from `first` with `replication_factor`
/// replicas each over `brokers` (ascending ids), as Kafka does without
/// racks: the first replica of partition p on broker `(start + p) % n`, the
/// others following it with a shift that grows every `n` partitions, so
/// leaders and followers spread evenly.
pub fn place_replicas(
    brokers: &[i32],
    first: i32,
    count: i32,
    replication_factor: usize,
    start: usize,
) -> Vec<Vec<i32>> {
    let n = brokers.len();
    assert!(n > 0 && (1..=n).contains(&replication_factor));
    (first..first + count)
        .map(|p| {
            let p = p as usize;
            let leader = (start + p) % n;
            let shift = (start + p / n) % n.max(1);
            let mut replicas = vec![brokers[leader]];
            for j in 0..replication_factor - 1 {
                // Followers skip the leader: offsets 1..n around the ring.
                let offset = 1 + (shift + j) % (n - 1).max(1);
                replicas.push(brokers[(leader + offset) % n]);
            }
            replicas
        })
        .collect()
}

fn replication_error(replication_factor: i16, brokers: usize) -> AdminResult {
    error(
        ErrorCode::InvalidReplicationFactor,
        format!(
            "Unable to replicate the partition {replication_factor} time(s): The target replication factor of {replication_factor} cannot be reached because only {brokers} broker(s) are registered."
        ),
    )
}

/// Checks client-given assignments (one broker list per partition) against
/// the registered brokers; all partitions must have the same number of
/// replicas (`expected` when the topic has some already).
fn check_assignments(
    assignments: &[Vec<i32>],
    catalog: &Catalog,
    expected: Option<usize>,
) -> Result<(), AdminResult> {
    let invalid = |message: String| error(ErrorCode::InvalidReplicaAssignment, message);
    let size = expected.unwrap_or_else(|| assignments.first().map_or(0, Vec::len));
    for (i, replicas) in assignments.iter().enumerate() {
        if replicas.is_empty() {
            return Err(invalid(format!(
                "The manual partition assignment includes an empty replica list for partition {i}."
            )));
        }
        if replicas.len() != size {
            return Err(invalid(format!(
                "The manual partition assignment includes a partition with {} replica(s), but this is not consistent with previous partitions, which have {size} replica(s).",
                replicas.len()
            )));
        }
        let mut seen = replicas.clone();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() != replicas.len() {
            return Err(invalid(format!("The manual partition assignment includes the broker twice for partition {i}: {replicas:?}.")));
        }
        if let Some(unknown) = replicas.iter().find(|b| !catalog.brokers.contains_key(b)) {
            return Err(invalid(format!("The manual partition assignment includes broker {unknown}, but no such broker is registered.")));
        }
    }
    Ok(())
}

/// The replica lists of a new topic: the client's, or placed over the live
/// brokers.
fn new_topic_replicas(
    catalog: &Catalog,
    new: &NewTopic,
    defaults: &AdminDefaults,
) -> Result<Vec<Vec<i32>>, AdminResult> {
    if !new.assignments.is_empty() {
        check_assignments(&new.assignments, catalog, None)?;
        return Ok(new.assignments.clone());
    }
    let partitions = if new.partitions == -1 {
        defaults.partitions
    } else {
        new.partitions
    };
    if partitions <= 0 || partitions > PARTITIONS_PER_TOPIC_MAX {
        return Err(error(
            ErrorCode::InvalidPartitions,
            format!(
                "Number of partitions must be in 1..={PARTITIONS_PER_TOPIC_MAX}, got {partitions}."
            ),
        ));
    }
    let replication_factor = if new.replication_factor == -1 {
        defaults.replication_factor
    } else {
        new.replication_factor
    };
    let live = catalog.live_brokers();
    if replication_factor <= 0 {
        return Err(error(
            ErrorCode::InvalidReplicationFactor,
            "Replication factor must be larger than 0.",
        ));
    }
    if replication_factor as usize > live.len() {
        return Err(replication_error(replication_factor, live.len()));
    }
    // Start where the topic count points, so consecutive topics' leaders
    // do not all begin on the same broker.
    let start = catalog.topics.len();
    Ok(place_replicas(
        &live,
        0,
        partitions,
        replication_factor as usize,
        start,
    ))
}

/// Replaces each resource's config set; an empty set removes the entry.
fn replace_configs(
    store: &mut std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
    items: Vec<(String, std::collections::BTreeMap<String, String>)>,
) -> Vec<AdminResult> {
    items
        .into_iter()
        .map(|(name, configs)| {
            if configs.is_empty() {
                store.remove(&name);
            } else {
                store.insert(name, configs);
            }
            AdminResult::default()
        })
        .collect()
}

/// Applies `request` to `catalog`; returns per-item results in request
/// order and whether the catalog changed.
pub fn apply(
    catalog: &mut Catalog,
    request: AdminRequest,
    defaults: &AdminDefaults,
) -> (Vec<AdminResult>, bool) {
    let mut changed = false;
    let results = match request {
        AdminRequest::CreateTopics { topics, validate_only } => topics
            .into_iter()
            .map(|new| {
                if let Err(reason) = validate_topic_name(&new.name) {
                    return error(ErrorCode::InvalidTopicException, reason);
                }
                if catalog.topics.contains_key(&new.name) {
                    return error(ErrorCode::TopicAlreadyExists, format!("Topic '{}' already exists.", new.name));
                }
                if catalog.topics.len() >= TOPICS_MAX {
                    return error(ErrorCode::InvalidRequest, format!("the broker holds the maximum of {TOPICS_MAX} topics"));
                }
                let replicas = match new_topic_replicas(catalog, &new, defaults) {
                    Ok(replicas) => replicas,
                    Err(result) => return result,
                };
                let meta = TopicMeta {
                    name: new.name.clone(),
                    id: *uuid::Uuid::new_v4().as_bytes(),
                    partitions: replicas.into_iter().map(PartitionMeta::new).collect(),
                    configs: new.configs,
                };
                let result = ok(&meta);
                if !validate_only {
                    catalog.topics.insert(new.name, meta);
                    changed = true;
                }
                result
            })
            .collect(),
        AdminRequest::DeleteTopics(names) => names
            .into_iter()
            .map(|name| match catalog.topics.remove(&name) {
                Some(meta) => {
                    changed = true;
                    ok(&meta)
                }
                None => error(ErrorCode::UnknownTopicOrPartition, format!("Topic '{name}' does not exist.")),
            })
            .collect(),
        AdminRequest::CreatePartitions { topics, validate_only } => topics
            .into_iter()
            .map(|grow| {
                let live = catalog.live_brokers();
                let start = catalog.topics.len();
                let snapshot = catalog.clone();
                let Some(meta) = catalog.topics.get_mut(&grow.topic) else {
                    return error(ErrorCode::UnknownTopicOrPartition, format!("Topic '{}' does not exist.", grow.topic));
                };
                let current = meta.partition_count();
                let NewPartitions { count, assignments, .. } = grow;
                if count <= current {
                    return error(
                        ErrorCode::InvalidPartitions,
                        format!("Topic currently has {current} partitions, which is higher than or equal to the requested {count}."),
                    );
                }
                if count > PARTITIONS_PER_TOPIC_MAX {
                    return error(ErrorCode::InvalidPartitions, format!("at most {PARTITIONS_PER_TOPIC_MAX} partitions per topic"));
                }
                let replication_factor = meta.partitions.first().map_or(1, |p| p.replicas.len());
                let added = if assignments.is_empty() {
                    if replication_factor > live.len() {
                        return replication_error(replication_factor as i16, live.len());
                    }
                    place_replicas(&live, current, count - current, replication_factor, start)
                } else {
                    if assignments.len() != (count - current) as usize {
                        return error(
                            ErrorCode::InvalidReplicaAssignment,
                            format!("Increasing the number of partitions by {} but {} assignments provided.", count - current, assignments.len()),
                        );
                    }
                    if let Err(result) = check_assignments(&assignments, &snapshot, Some(replication_factor)) {
                        return result;
                    }
                    assignments
                };
                if !validate_only {
                    meta.partitions.extend(added.into_iter().map(PartitionMeta::new));
                    changed = true;
                }
                ok(meta)
            })
            .collect(),
        AdminRequest::SetBrokerConfigs(items) => {
            changed = !items.is_empty();
            replace_configs(&mut catalog.broker_configs, items)
        }
        AdminRequest::SetGroupConfigs(items) => {
            changed = !items.is_empty();
            replace_configs(&mut catalog.group_configs, items)
        }
        AdminRequest::SetTopicConfigs(items) => items
            .into_iter()
            .map(|(name, configs)| match catalog.topics.get_mut(&name) {
                Some(meta) => {
                    meta.configs = configs;
                    changed = true;
                    ok(meta)
                }
                None => error(ErrorCode::UnknownTopicOrPartition, format!("Topic '{name}' does not exist.")),
            })
            .collect(),
        AdminRequest::ElectLeaders { unclean, partitions } => {
            let live = catalog.live_brokers();
            partitions
                .into_iter()
                .map(|(topic, p)| {
                    let Some(meta) = catalog.topics.get_mut(&topic).and_then(|t| t.partition_mut(p)) else {
                        return error(ErrorCode::UnknownTopicOrPartition, format!("{topic}-{p} does not exist."));
                    };
                    let elected = if unclean {
                        metadata::elect_unclean(meta, &live)
                    } else {
                        metadata::elect_preferred(meta, &live)
                    };
                    match elected {
                        Ok(()) => {
                            changed = true;
                            AdminResult::default()
                        }
                        Err(code) => error(code, format!("{topic}-{p}: {}", election_failure(code))),
                    }
                })
                .collect()
        }
        AdminRequest::Reassign(items) => {
            let live = catalog.live_brokers();
            let brokers: Vec<i32> = catalog.brokers.keys().copied().collect();
            items
                .into_iter()
                .map(|((topic, p), target)| {
                    if topic.starts_with("__cluster_metadata") {
                        return error(ErrorCode::InvalidRequest, "the metadata log is not reassigned");
                    }
                    let Some(meta) = catalog.topics.get_mut(&topic).and_then(|t| t.partition_mut(p)) else {
                        return error(ErrorCode::UnknownTopicOrPartition, format!("{topic}-{p} does not exist."));
                    };
                    let moved = match target {
                        Some(target) => metadata::reassign(meta, &target, &brokers, &live),
                        None => metadata::cancel_reassignment(meta, &live),
                    };
                    match moved {
                        Ok(()) => {
                            changed = true;
                            AdminResult::default()
                        }
                        Err((code, why)) => error(code, format!("{topic}-{p}: {why}")),
                    }
                })
                .collect()
        }
    };
    (results, changed)
}

fn election_failure(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::ElectionNotNeeded => "the leader is already the one this election would choose",
        ErrorCode::PreferredLeaderNotAvailable => "the preferred replica is not live and in sync",
        _ => "no live replica can lead",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::BrokerMeta;
    use std::collections::BTreeMap;

    const DEFAULTS: AdminDefaults = AdminDefaults {
        partitions: 3,
        replication_factor: 1,
    };

    fn catalog_with_brokers(ids: &[i32]) -> Catalog {
        let mut c = Catalog::default();
        for &id in ids {
            c.brokers.insert(
                id,
                BrokerMeta {
                    id,
                    host: "127.0.0.1".into(),
                    port: 9000 + id as u16,
                    rack: None,
                    fenced: false,
                    epoch: 0,
                },
            );
        }
        c
    }

    fn new_topic(name: &str, partitions: i32, replication_factor: i16) -> NewTopic {
        NewTopic {
            name: name.into(),
            partitions,
            replication_factor,
            assignments: Vec::new(),
            configs: BTreeMap::new(),
        }
    }

    fn create_topic(c: &mut Catalog, topic: NewTopic, validate_only: bool) -> AdminResult {
        let request = AdminRequest::CreateTopics {
            topics: vec![topic],
            validate_only,
        };
        apply(c, request, &DEFAULTS).0.remove(0)
    }

    fn create(c: &mut Catalog, name: &str, partitions: i32, validate_only: bool) -> AdminResult {
        create_topic(c, new_topic(name, partitions, -1), validate_only)
    }

    fn grow(c: &mut Catalog, name: &str, count: i32, assignments: Vec<Vec<i32>>) -> i16 {
        let request = AdminRequest::CreatePartitions {
            topics: vec![NewPartitions {
                topic: name.into(),
                count,
                assignments,
            }],
            validate_only: false,
        };
        apply(c, request, &DEFAULTS).0[0].error_code
    }

    #[test]
    fn create_rules() {
        let mut c = catalog_with_brokers(&[0]);
        assert_eq!(create(&mut c, "a", -1, false).error_code, 0);
        assert_eq!(c.topics["a"].partition_count(), 3);
        let p = c.topics["a"].partition(2).unwrap();
        assert_eq!(
            (p.leader, &p.replicas, &p.isr, p.leader_epoch),
            (0, &vec![0], &vec![0], 0)
        );
        assert_eq!(create(&mut c, "a", 1, false).error_code, 36);
        assert_eq!(create(&mut c, "bad/name", 1, false).error_code, 17);
        assert_eq!(create(&mut c, "z", 0, false).error_code, 37);
        assert_eq!(create(&mut c, "v", 2, true).error_code, 0);
        assert!(!c.topics.contains_key("v"));
        // More replicas than brokers, and no broker at all.
        let r = create_topic(&mut c, new_topic("rf", 1, 3), false);
        assert_eq!(r.error_code, 38);
        assert!(r
            .message
            .unwrap()
            .contains("only 1 broker(s) are registered"));
        assert_eq!(
            create(&mut Catalog::default(), "x", 1, false).error_code,
            38
        );
    }

    #[test]
    fn client_assignments_are_checked() {
        let mut c = catalog_with_brokers(&[1, 2, 3]);
        let mut topic = new_topic("m", -1, -1);
        topic.assignments = vec![vec![2, 3], vec![3, 1]];
        assert_eq!(create_topic(&mut c, topic.clone(), false).error_code, 0);
        assert_eq!(c.topics["m"].partition(1).unwrap().leader, 3);
        for bad in [
            vec![vec![2, 2]],
            vec![vec![9]],
            vec![vec![1], vec![1, 2]],
            vec![vec![]],
        ] {
            topic.name = "bad".into();
            topic.assignments = bad;
            assert_eq!(create_topic(&mut c, topic.clone(), false).error_code, 39);
        }
        // Growing keeps the replication factor.
        assert_eq!(grow(&mut c, "m", 3, vec![vec![1]]), 39);
        assert_eq!(grow(&mut c, "m", 3, vec![vec![1, 2]]), 0);
        assert_eq!(grow(&mut c, "m", 5, vec![]), 0);
        assert!(c.topics["m"]
            .partitions
            .iter()
            .all(|p| p.replicas.len() == 2));
    }

    #[test]
    fn placement_spreads_leaders_and_replicas() {
        let brokers = [1, 2, 3];
        let placed = place_replicas(&brokers, 0, 6, 3, 0);
        for replicas in &placed {
            let mut sorted = replicas.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, vec![1, 2, 3], "three distinct replicas");
        }
        let leaders: Vec<i32> = placed.iter().map(|r| r[0]).collect();
        assert_eq!(leaders, vec![1, 2, 3, 1, 2, 3]);
        // Followers of the same leader differ across rounds.
        assert_ne!(placed[0][1], placed[3][1]);
        // Replication factor one and more brokers: one replica each, spread.
        let single = place_replicas(&[5, 6], 0, 4, 1, 1);
        assert_eq!(single, vec![vec![6], vec![5], vec![6], vec![5]]);
    }

    #[test]
    fn delete_and_grow() {
        let mut c = catalog_with_brokers(&[0]);
        create(&mut c, "a", 2, false);
        assert_eq!(grow(&mut c, "a", 4, vec![]), 0);
        assert_eq!(c.topics["a"].partition_count(), 4);
        assert_eq!(grow(&mut c, "a", 3, vec![]), 37);
        let (r, changed) = apply(
            &mut c,
            AdminRequest::DeleteTopics(vec!["a".into(), "nope".into()]),
            &DEFAULTS,
        );
        assert!(changed);
        assert_eq!((r[0].error_code, r[1].error_code), (0, 3));
        assert!(c.topics.is_empty());
    }
}
