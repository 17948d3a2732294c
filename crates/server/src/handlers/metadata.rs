//! Metadata: brokers, topics and partitions, creating requested topics on
//! first use when auto.create.topics.enable is set.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};

use super::{str_bytes, topic_name};
use crate::catalog::{validate_topic_name, TopicMeta};
use crate::dispatch::{Context, DispatchError, Response};
use crate::messages::{AdminRequest, NewTopic};
use crate::shard::Shard;
use ringbroker_protocol::errors::ErrorCode;

/// Creates the topics in `names` that do not exist yet (auto-creation).
/// Names that are invalid are skipped; the caller reports them.
pub async fn auto_create(shard: &Rc<Shard>, names: &[String]) {
    if !shard.config.auto_create_topics {
        return;
    }
    let catalog = shard.catalog();
    let missing: Vec<NewTopic> = names
        .iter()
        .filter(|n| !catalog.topics.contains_key(*n) && validate_topic_name(n).is_ok())
        .map(|n| NewTopic {
            name: n.clone(),
            partitions: -1,
            configs: BTreeMap::new(),
        })
        .collect();
    if missing.is_empty() {
        return;
    }
    for result in shard
        .admin(AdminRequest::CreateTopics {
            topics: missing,
            validate_only: false,
        })
        .await
    {
        if result.error_code != 0 && result.error_code != ErrorCode::TopicAlreadyExists.code() {
            log::warn!("auto-creating topic failed: {:?}", result.message);
        }
    }
}

/// The metadata entry of one topic.
pub fn topic_entry(shard: &Shard, meta: &TopicMeta) -> MetadataResponseTopic {
    let node = BrokerId(shard.config.node_id);
    let partitions = (0..meta.partitions)
        .map(|p| {
            MetadataResponsePartition::default()
                .with_partition_index(p)
                .with_leader_id(node)
                .with_leader_epoch(0)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&meta.name)))
        .with_topic_id(meta.uuid())
        .with_is_internal(meta.is_internal())
        .with_partitions(partitions)
        .with_topic_authorized_operations(i32::MIN)
}

fn error_entry(name: Option<&str>, code: ErrorCode) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(code.code())
        .with_name(name.map(topic_name))
        .with_topic_authorized_operations(i32::MIN)
}

/// Handles Metadata.
pub async fn handle(
    shard: &Rc<Shard>,
    ctx: &Context,
    request: MetadataRequest,
) -> Result<Response, DispatchError> {
    // v0: an empty list means all topics; v1+: null means all topics.
    let wanted = match &request.topics {
        None => None,
        Some(t) if t.is_empty() && ctx.version == 0 => None,
        Some(t) => Some(t.clone()),
    };
    let topics = match wanted {
        None => shard
            .catalog()
            .topics
            .values()
            .map(|meta| topic_entry(shard, meta))
            .collect(),
        Some(requested) => {
            let allow_create = ctx.version < 4 || request.allow_auto_topic_creation;
            if allow_create {
                let names: Vec<String> = requested
                    .iter()
                    .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
                    .collect();
                auto_create(shard, &names).await;
            }
            let catalog = shard.catalog();
            requested
                .iter()
                .map(|t| match &t.name {
                    Some(name) => {
                        let name = name.0.as_str();
                        match catalog.topics.get(name) {
                            Some(meta) => topic_entry(shard, meta),
                            None if validate_topic_name(name).is_err() => {
                                error_entry(Some(name), ErrorCode::InvalidTopicException)
                            }
                            None => error_entry(Some(name), ErrorCode::UnknownTopicOrPartition),
                        }
                    }
                    None => match catalog.by_id(t.topic_id.as_bytes()) {
                        Some(meta) => topic_entry(shard, meta),
                        None => {
                            error_entry(None, ErrorCode::UnknownTopicId).with_topic_id(t.topic_id)
                        }
                    },
                })
                .collect()
        }
    };
    let config = &shard.config;
    let broker = MetadataResponseBroker::default()
        .with_node_id(BrokerId(config.node_id))
        .with_host(str_bytes(&config.advertised_host))
        .with_port(i32::from(config.advertised_port));
    let response = MetadataResponse::default()
        .with_brokers(vec![broker])
        .with_cluster_id(Some(str_bytes(&shard.catalog().cluster_id)))
        .with_controller_id(BrokerId(config.node_id))
        .with_topics(topics)
        .with_cluster_authorized_operations(i32::MIN);
    ctx.respond(&response)
}
