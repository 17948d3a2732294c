//! CreateTopics: shape checks here (replication factor, assignments,
//! configs), the catalog change on shard 0.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::{str_bytes, topic_name};
use crate::config::{BrokerLayers, TopicConfig};
use crate::config_resources::check_topic_configs;
use crate::dispatch::{Context, DispatchError, Response};
use crate::messages::{AdminRequest, AdminResult, NewTopic};
use crate::shard::Shard;
use ringbroker_protocol::errors::ErrorCode;

/// Checks topic config overrides against the broker defaults: every key must
/// be a Kafka 4.x topic config and every value valid.
pub fn validate_topic_configs(
    shard: &Shard,
    overrides: &BTreeMap<String, String>,
) -> Result<(), String> {
    check_topic_configs(&shard.topic_defaults(), overrides)
}

fn failure(code: ErrorCode, message: String) -> AdminResult {
    AdminResult {
        error_code: code.code(),
        message: Some(message),
        topic: None,
    }
}

/// Handles CreateTopics.
pub async fn handle(
    shard: &Rc<Shard>,
    ctx: &Context,
    request: CreateTopicsRequest,
) -> Result<Response, DispatchError> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for topic in &request.topics {
        *counts.entry(topic.name.0.as_str()).or_default() += 1;
    }

    let mut results: Vec<Option<AdminResult>> = Vec::with_capacity(request.topics.len());
    let mut to_create = Vec::new();
    for topic in &request.topics {
        let name = topic.name.0.as_str();
        let mut configs = BTreeMap::new();
        let mut null_value = None;
        for c in &topic.configs {
            match &c.value {
                Some(v) => {
                    configs.insert(c.name.to_string(), v.to_string());
                }
                None => null_value = Some(c.name.to_string()),
            }
        }
        let error = if counts.get(name).copied().unwrap_or(0) > 1 {
            Some(failure(
                ErrorCode::InvalidRequest,
                format!(
                    "Create topics request from client contains multiple entries for topic {name}."
                ),
            ))
        } else if !topic.assignments.is_empty() {
            if topic.num_partitions != -1 || topic.replication_factor != -1 {
                Some(failure(
                    ErrorCode::InvalidRequest,
                    "Both numPartitions or replicationFactor and replicasAssignments were set."
                        .into(),
                ))
            } else if topic
                .assignments
                .iter()
                .enumerate()
                .any(|(i, a)| a.partition_index != i as i32)
            {
                Some(failure(
                    ErrorCode::InvalidReplicaAssignment,
                    "Replica assignments must cover partitions 0..n in order.".into(),
                ))
            } else {
                None
            }
        } else if topic.replication_factor == 0 || topic.replication_factor < -1 {
            Some(failure(
                ErrorCode::InvalidReplicationFactor,
                "Replication factor must be larger than 0, or -1 to use the default value.".into(),
            ))
        } else if topic.num_partitions == 0 || topic.num_partitions < -1 {
            Some(failure(
                ErrorCode::InvalidPartitions,
                format!(
                    "Number of partitions was set to an invalid non-positive value: {}.",
                    topic.num_partitions
                ),
            ))
        } else if let Some(key) = null_value {
            Some(failure(
                ErrorCode::InvalidConfig,
                format!("Null value not supported for topic configs: {key}"),
            ))
        } else if let Err(message) = validate_topic_configs(shard, &configs) {
            Some(failure(ErrorCode::InvalidConfig, message))
        } else {
            None
        };
        match error {
            Some(e) => results.push(Some(e)),
            None => {
                results.push(None);
                to_create.push(NewTopic {
                    name: name.to_string(),
                    partitions: topic.num_partitions,
                    replication_factor: topic.replication_factor,
                    assignments: topic
                        .assignments
                        .iter()
                        .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                        .collect(),
                    configs,
                });
            }
        }
    }
    let mut created = if to_create.is_empty() {
        Vec::new()
    } else {
        shard
            .admin(AdminRequest::CreateTopics {
                topics: to_create,
                validate_only: request.validate_only,
            })
            .await
    }
    .into_iter();
    let defaults = shard.topic_defaults();
    let dynamic = shard.dynamic_configs();
    let layers = BrokerLayers {
        dynamic: &dynamic,
        explicit: &shard.config.explicit,
    };
    let topics = request
        .topics
        .iter()
        .zip(results)
        .map(|(topic, result)| {
            let r = result.or_else(|| created.next()).unwrap_or(AdminResult {
                error_code: ErrorCode::UnknownServerError.code(),
                message: Some("metadata shard unavailable".into()),
                topic: None,
            });
            let mut entry = CreatableTopicResult::default()
                .with_name(topic_name(topic.name.0.as_str()))
                .with_error_code(r.error_code)
                .with_error_message(r.message.as_deref().map(str_bytes))
                .with_num_partitions(-1)
                .with_replication_factor(-1);
            if let Some(meta) = &r.topic {
                entry = entry
                    .with_topic_id(meta.uuid())
                    .with_num_partitions(meta.partition_count())
                    .with_replication_factor(
                        meta.partition(0).map_or(-1, |p| p.replicas.len() as i16),
                    );
                if ctx.version >= 5 {
                    let configs = TopicConfig::describe(&defaults, &meta.configs, &layers)
                        .into_iter()
                        .map(|c| {
                            CreatableTopicConfigs::default()
                                .with_name(str_bytes(&c.name))
                                .with_value(c.value.as_deref().map(str_bytes))
                                .with_read_only(c.read_only)
                                .with_config_source(c.source.code())
                                .with_is_sensitive(c.sensitive)
                        })
                        .collect();
                    entry = entry.with_configs(Some(configs));
                }
            }
            entry
        })
        .collect();
    ctx.respond(&CreateTopicsResponse::default().with_topics(topics))
}
