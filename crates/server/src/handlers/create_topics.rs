//! CreateTopics: shape checks here (replication factor, assignments,
//! configs), the catalog change on shard 0.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::{str_bytes, topic_name};
use crate::config::{topic_config_from_overrides, TopicConfig};
use crate::dispatch::{Context, DispatchError, Response};
use crate::messages::{AdminRequest, AdminResult, NewTopic};
use crate::shard::Shard;
use ringbroker_protocol::errors::ErrorCode;

/// Checks topic config overrides against the broker defaults: every key must
/// be a known topic config and every value valid.
pub fn validate_topic_configs(
    shard: &Shard,
    overrides: &BTreeMap<String, String>,
) -> Result<(), String> {
    if let Some(unknown) = overrides.keys().find(|k| !TopicConfig::is_known_key(k)) {
        return Err(format!("Unknown topic config name: {unknown}"));
    }
    topic_config_from_overrides(&shard.config.topic_defaults, overrides)
        .map(|_| ())
        .map_err(|e| e.to_string())
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
    let node_id = shard.config.node_id;
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
            } else if topic.assignments.iter().enumerate().any(|(i, a)| {
                a.partition_index != i as i32
                    || a.broker_ids.len() != 1
                    || a.broker_ids[0].0 != node_id
            }) {
                Some(failure(
                    ErrorCode::InvalidReplicaAssignment,
                    format!("Replica assignments must name broker {node_id} once per partition, partitions numbered from 0."),
                ))
            } else {
                None
            }
        } else if topic.replication_factor != -1 && topic.replication_factor != 1 {
            Some(failure(
                ErrorCode::InvalidReplicationFactor,
                format!(
                    "Unable to replicate the partition {} time(s): The target replication factor of {} cannot be reached because only 1 broker(s) are registered.",
                    topic.replication_factor, topic.replication_factor
                ),
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
                let partitions = if topic.assignments.is_empty() {
                    topic.num_partitions
                } else {
                    topic.assignments.len() as i32
                };
                to_create.push(NewTopic {
                    name: name.to_string(),
                    partitions,
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
    let defaults = &shard.config.topic_defaults;
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
                    .with_num_partitions(meta.partitions)
                    .with_replication_factor(1);
                if ctx.version >= 5 {
                    let configs =
                        TopicConfig::describe(defaults, &meta.configs, &shard.config.explicit)
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
