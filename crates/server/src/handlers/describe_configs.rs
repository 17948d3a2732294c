//! DescribeConfigs: topic configs (overrides over broker defaults, with
//! their sources and synonyms) and the broker's static configuration.

use std::rc::Rc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::str_bytes;
use crate::catalog::validate_topic_name;
use crate::config::{ConfigEntry, ConfigSource, TopicConfig};
use crate::dispatch::{Context, DispatchError, Response};
use crate::shard::Shard;
use ringbroker_protocol::errors::ErrorCode;

/// A described config and its synonyms.
type EntryWithSynonyms = (ConfigEntry, Vec<DescribeConfigsSynonym>);

/// Kafka's resource type code for topics.
pub const RESOURCE_TOPIC: i8 = 2;
/// Kafka's resource type code for brokers.
pub const RESOURCE_BROKER: i8 = 4;

/// Handles DescribeConfigs.
pub fn handle(
    shard: &Rc<Shard>,
    ctx: &Context,
    request: DescribeConfigsRequest,
) -> Result<Response, DispatchError> {
    let catalog = shard.catalog();
    let config = &shard.config;
    let results = request
        .resources
        .iter()
        .map(|resource| {
            let name = resource.resource_name.as_str();
            let entries: Result<Vec<EntryWithSynonyms>, (ErrorCode, String)> =
                match resource.resource_type {
                    RESOURCE_TOPIC => match catalog.topics.get(name) {
                        Some(meta) => Ok(TopicConfig::describe(
                            &config.topic_defaults,
                            &meta.configs,
                            &config.explicit,
                        )
                        .into_iter()
                        .map(|entry| {
                            let synonyms = topic_synonyms(shard, &entry, &meta.configs);
                            (entry, synonyms)
                        })
                        .collect()),
                        None if validate_topic_name(name).is_err() => Err((
                            ErrorCode::InvalidTopicException,
                            format!("Invalid topic name '{name}'"),
                        )),
                        None => Err((
                            ErrorCode::UnknownTopicOrPartition,
                            format!("Topic '{name}' does not exist."),
                        )),
                    },
                    RESOURCE_BROKER if name.is_empty() || name == config.node_id.to_string() => {
                        Ok(config
                            .describe()
                            .into_iter()
                            .map(|entry| {
                                let synonym =
                                    synonym(&entry.name, entry.value.as_deref(), entry.source);
                                (entry, vec![synonym])
                            })
                            .collect())
                    }
                    RESOURCE_BROKER => Err((
                        ErrorCode::InvalidRequest,
                        format!(
                            "Unexpected broker id, expected {} but received {name}",
                            config.node_id
                        ),
                    )),
                    other => Err((
                        ErrorCode::InvalidRequest,
                        format!("Unsupported resource type {other}"),
                    )),
                };
            let base = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            match entries {
                Ok(entries) => {
                    let configs = entries
                        .into_iter()
                        .filter(|(e, _)| {
                            resource
                                .configuration_keys
                                .as_ref()
                                .is_none_or(|keys| keys.iter().any(|k| k.as_str() == e.name))
                        })
                        .map(|(e, synonyms)| {
                            DescribeConfigsResourceResult::default()
                                .with_name(str_bytes(&e.name))
                                .with_value(if e.sensitive {
                                    None
                                } else {
                                    e.value.as_deref().map(str_bytes)
                                })
                                .with_read_only(e.read_only)
                                .with_config_source(e.source.code())
                                .with_is_sensitive(e.sensitive)
                                .with_synonyms(if request.include_synonyms {
                                    synonyms
                                } else {
                                    Vec::new()
                                })
                                .with_config_type(e.config_type.code())
                                .with_documentation(if request.include_documentation {
                                    e.documentation.as_deref().map(str_bytes)
                                } else {
                                    None
                                })
                        })
                        .collect();
                    base.with_configs(configs)
                }
                Err((code, message)) => base
                    .with_error_code(code.code())
                    .with_error_message(Some(str_bytes(&message))),
            }
        })
        .collect();
    ctx.respond(&DescribeConfigsResponse::default().with_results(results))
}

fn synonym(name: &str, value: Option<&str>, source: ConfigSource) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default()
        .with_name(str_bytes(name))
        .with_value(value.map(str_bytes))
        .with_source(source.code())
}

/// The precedence chain of a topic config, highest first: the topic
/// override, the broker's static setting, the built-in default.
fn topic_synonyms(
    shard: &Shard,
    entry: &ConfigEntry,
    overrides: &std::collections::BTreeMap<String, String>,
) -> Vec<DescribeConfigsSynonym> {
    let mut chain = Vec::new();
    if let Some(value) = overrides.get(&entry.name) {
        chain.push(synonym(
            &entry.name,
            Some(value),
            ConfigSource::DynamicTopic,
        ));
    }
    if let Some(broker_key) = TopicConfig::broker_synonym(&entry.name) {
        let value = shard.config.topic_defaults.get(&entry.name);
        let source = if shard.config.explicit.contains_key(broker_key) {
            ConfigSource::StaticBroker
        } else {
            ConfigSource::Default
        };
        chain.push(synonym(broker_key, value.as_deref(), source));
    }
    chain
}
