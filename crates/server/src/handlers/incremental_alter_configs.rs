//! IncrementalAlterConfigs: SET, DELETE, APPEND and SUBTRACT on topic
//! configs. Broker configs are static (server.properties) and refused.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};

use super::create_topics::validate_topic_configs;
use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::str_bytes;
use crate::config::TopicConfig;
use crate::dispatch::{Context, DispatchError, Response};
use crate::messages::AdminRequest;
use crate::shard::Shard;
use ringbroker_protocol::errors::ErrorCode;

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// Topic configs whose values are comma-separated lists (APPEND/SUBTRACT).
const LIST_CONFIGS: &[&str] = &["cleanup.policy"];

/// Applies one resource's operations to a copy of its overrides.
fn apply_ops(
    shard: &Shard,
    current: &BTreeMap<String, String>,
    ops: &[(String, i8, Option<String>)],
) -> Result<BTreeMap<String, String>, (ErrorCode, String)> {
    let mut overrides = current.clone();
    for (name, op, value) in ops {
        if !TopicConfig::is_known_key(name) {
            return Err((
                ErrorCode::InvalidConfig,
                format!("Unknown topic config name: {name}"),
            ));
        }
        let is_list = LIST_CONFIGS.contains(&name.as_str());
        match *op {
            OP_SET => {
                let Some(value) = value else {
                    return Err((
                        ErrorCode::InvalidRequest,
                        format!("Null value not supported for: {name}"),
                    ));
                };
                overrides.insert(name.clone(), value.clone());
            }
            OP_DELETE => {
                overrides.remove(name);
            }
            OP_APPEND | OP_SUBTRACT if is_list => {
                let base = overrides
                    .get(name)
                    .cloned()
                    .or_else(|| shard.config.topic_defaults.get(name))
                    .unwrap_or_default();
                let mut items: Vec<String> = base
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                for item in value
                    .as_deref()
                    .unwrap_or("")
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                {
                    if *op == OP_APPEND {
                        if !items.iter().any(|i| i == item) {
                            items.push(item.to_string());
                        }
                    } else {
                        items.retain(|i| i != item);
                    }
                }
                overrides.insert(name.clone(), items.join(","));
            }
            OP_APPEND | OP_SUBTRACT => {
                return Err((
                    ErrorCode::InvalidConfig,
                    format!("Config value append/subtract is not allowed for config key {name}"),
                ))
            }
            other => {
                return Err((
                    ErrorCode::InvalidRequest,
                    format!("Unknown config operation {other}"),
                ))
            }
        }
    }
    validate_topic_configs(shard, &overrides).map_err(|m| (ErrorCode::InvalidConfig, m))?;
    Ok(overrides)
}

/// Handles IncrementalAlterConfigs.
pub async fn handle(
    shard: &Rc<Shard>,
    ctx: &Context,
    request: IncrementalAlterConfigsRequest,
) -> Result<Response, DispatchError> {
    let catalog = shard.catalog();
    let mut outcomes: Vec<Result<(), (ErrorCode, String)>> = Vec::new();
    let mut changes = Vec::new();
    let mut change_slots = Vec::new();
    for resource in &request.resources {
        let name = resource.resource_name.to_string();
        let ops: Vec<(String, i8, Option<String>)> = resource
            .configs
            .iter()
            .map(|c| {
                (
                    c.name.to_string(),
                    c.config_operation,
                    c.value.as_ref().map(|v| v.to_string()),
                )
            })
            .collect();
        let outcome = match resource.resource_type {
            RESOURCE_TOPIC => match catalog.topics.get(&name) {
                None => Err((ErrorCode::UnknownTopicOrPartition, format!("Topic '{name}' does not exist."))),
                Some(meta) => {
                    let mut seen = std::collections::HashSet::new();
                    if ops.iter().any(|(k, _, _)| !seen.insert(k.clone())) {
                        Err((ErrorCode::InvalidRequest, "Duplicate config keys in request.".to_string()))
                    } else {
                        apply_ops(shard, &meta.configs, &ops).map(|overrides| {
                            if !request.validate_only {
                                change_slots.push(outcomes.len());
                                changes.push((name.clone(), overrides));
                            }
                        })
                    }
                }
            },
            RESOURCE_BROKER => Err((
                ErrorCode::InvalidRequest,
                "Broker configs are static in ringbroker: set them in server.properties and restart.".to_string(),
            )),
            other => Err((ErrorCode::InvalidRequest, format!("Unsupported resource type {other}"))),
        };
        outcomes.push(outcome);
    }
    if !changes.is_empty() {
        let results = shard.admin(AdminRequest::SetTopicConfigs(changes)).await;
        for (slot, result) in change_slots.into_iter().zip(results) {
            if result.error_code != 0 {
                let code = if result.error_code == ErrorCode::UnknownTopicOrPartition.code() {
                    ErrorCode::UnknownTopicOrPartition
                } else {
                    ErrorCode::UnknownServerError
                };
                outcomes[slot] = Err((code, result.message.unwrap_or_default()));
            }
        }
    }
    let responses = request
        .resources
        .iter()
        .zip(outcomes)
        .map(|(resource, outcome)| {
            let base = AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            match outcome {
                Ok(()) => base,
                Err((code, message)) => base
                    .with_error_code(code.code())
                    .with_error_message(Some(str_bytes(&message))),
            }
        })
        .collect();
    ctx.respond(&IncrementalAlterConfigsResponse::default().with_responses(responses))
}
