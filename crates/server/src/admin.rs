//! Metadata changes applied to a catalog copy on shard 0. Pure: no I/O, so
//! the rules are unit-tested here and the caller persists and broadcasts.

use crate::catalog::{validate_topic_name, Catalog, TopicMeta};
use crate::messages::{AdminRequest, AdminResult};
use ringbroker_protocol::errors::ErrorCode;
use ringbroker_protocol::limits::{PARTITIONS_PER_TOPIC_MAX, TOPICS_MAX};

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

/// Applies `request` to `catalog`; returns per-item results in request
/// order and whether the catalog changed.
pub fn apply(
    catalog: &mut Catalog,
    request: AdminRequest,
    default_partitions: i32,
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
                let partitions = if new.partitions == -1 { default_partitions } else { new.partitions };
                if partitions <= 0 || partitions > PARTITIONS_PER_TOPIC_MAX {
                    return error(
                        ErrorCode::InvalidPartitions,
                        format!("Number of partitions must be in 1..={PARTITIONS_PER_TOPIC_MAX}, got {partitions}."),
                    );
                }
                if catalog.topics.len() >= TOPICS_MAX {
                    return error(ErrorCode::InvalidRequest, format!("the broker holds the maximum of {TOPICS_MAX} topics"));
                }
                let meta = TopicMeta {
                    name: new.name.clone(),
                    id: *uuid::Uuid::new_v4().as_bytes(),
                    partitions,
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
            .map(|(name, count)| {
                let Some(meta) = catalog.topics.get_mut(&name) else {
                    return error(ErrorCode::UnknownTopicOrPartition, format!("Topic '{name}' does not exist."));
                };
                if count <= meta.partitions {
                    return error(
                        ErrorCode::InvalidPartitions,
                        format!("Topic currently has {} partitions, which is higher than or equal to the requested {count}.", meta.partitions),
                    );
                }
                if count > PARTITIONS_PER_TOPIC_MAX {
                    return error(ErrorCode::InvalidPartitions, format!("at most {PARTITIONS_PER_TOPIC_MAX} partitions per topic"));
                }
                if !validate_only {
                    meta.partitions = count;
                    changed = true;
                }
                ok(meta)
            })
            .collect(),
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
    };
    (results, changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::NewTopic;
    use std::collections::BTreeMap;

    fn create(
        catalog: &mut Catalog,
        name: &str,
        partitions: i32,
        validate_only: bool,
    ) -> AdminResult {
        let request = AdminRequest::CreateTopics {
            topics: vec![NewTopic {
                name: name.into(),
                partitions,
                configs: BTreeMap::new(),
            }],
            validate_only,
        };
        apply(catalog, request, 3).0.remove(0)
    }

    #[test]
    fn create_rules() {
        let mut c = Catalog::default();
        assert_eq!(create(&mut c, "a", -1, false).error_code, 0);
        assert_eq!(c.topics["a"].partitions, 3);
        assert_eq!(create(&mut c, "a", 1, false).error_code, 36);
        assert_eq!(create(&mut c, "bad/name", 1, false).error_code, 17);
        assert_eq!(create(&mut c, "z", 0, false).error_code, 37);
        assert_eq!(create(&mut c, "v", 2, true).error_code, 0);
        assert!(!c.topics.contains_key("v"));
    }

    #[test]
    fn delete_and_grow() {
        let mut c = Catalog::default();
        create(&mut c, "a", 2, false);
        let grow = |c: &mut Catalog, n| {
            apply(
                c,
                AdminRequest::CreatePartitions {
                    topics: vec![("a".into(), n)],
                    validate_only: false,
                },
                1,
            )
            .0[0]
                .error_code
        };
        assert_eq!(grow(&mut c, 4), 0);
        assert_eq!(c.topics["a"].partitions, 4);
        assert_eq!(grow(&mut c, 3), 37);
        let (r, changed) = apply(
            &mut c,
            AdminRequest::DeleteTopics(vec!["a".into(), "nope".into()]),
            1,
        );
        assert!(changed);
        assert_eq!((r[0].error_code, r[1].error_code), (0, 3));
        assert!(c.topics.is_empty());
    }
}
