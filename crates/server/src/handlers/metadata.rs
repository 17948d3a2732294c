//! Metadata: brokers, topics and partitions, creating requested topics on
//! first use when auto.create.topics.enable is set; authorized operations
//! (KIP-430) of topics and the cluster when asked for.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};

use super::{str_bytes, topic_name};
use crate::acl::{authorized_operations_if, ResourceType};
use crate::catalog::{validate_topic_name, Catalog, TopicMeta};
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
            replication_factor: -1,
            assignments: Vec::new(),
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

/// The metadata entry of one topic: per partition the leader, leader
/// epoch, replicas, ISR and the replicas on brokers that are not live.
pub fn topic_entry(catalog: &Catalog, meta: &TopicMeta) -> MetadataResponseTopic {
    let live = catalog.live_brokers();
    let ids = |brokers: &[i32]| brokers.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
    let partitions = meta
        .partitions
        .iter()
        .enumerate()
        .map(|(index, p)| {
            let offline: Vec<i32> = p
                .replicas
                .iter()
                .copied()
                .filter(|b| !live.contains(b))
                .collect();
            let led = p.leader >= 0 && live.contains(&p.leader);
            MetadataResponsePartition::default()
                .with_error_code(if led {
                    0
                } else {
                    ErrorCode::LeaderNotAvailable.code()
                })
                .with_partition_index(index as i32)
                .with_leader_id(BrokerId(if led { p.leader } else { -1 }))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(ids(&p.replicas))
                .with_isr_nodes(ids(&p.isr))
                .with_offline_replicas(ids(&offline))
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
    let mut catalog = shard.catalog();
    // v0: an empty list means all topics; v1+: null means all topics.
    let wanted = match &request.topics {
        None => None,
        Some(t) if t.is_empty() && ctx.version == 0 => None,
        Some(t) => Some(t.clone()),
    };
    let topic_operations = authorized_operations_if(
        request.include_topic_authorized_operations,
        ResourceType::Topic,
    );
    let topics: Vec<MetadataResponseTopic> = match wanted {
        None => catalog
            .topics
            .values()
            .map(|meta| topic_entry(&catalog, meta))
            .collect(),
        Some(requested) => {
            let allow_create = ctx.version < 4 || request.allow_auto_topic_creation;
            if allow_create {
                let names: Vec<String> = requested
                    .iter()
                    .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
                    .collect();
                auto_create(shard, &names).await;
                catalog = shard.catalog();
            }
            requested
                .iter()
                .map(|t| match &t.name {
                    Some(name) => {
                        let name = name.0.as_str();
                        match catalog.topics.get(name) {
                            Some(meta) => topic_entry(&catalog, meta),
                            None if validate_topic_name(name).is_err() => {
                                error_entry(Some(name), ErrorCode::InvalidTopicException)
                            }
                            None => error_entry(Some(name), ErrorCode::UnknownTopicOrPartition),
                        }
                    }
                    None => match catalog.by_id(t.topic_id.as_bytes()) {
                        Some(meta) => topic_entry(&catalog, meta),
                        None => {
                            error_entry(None, ErrorCode::UnknownTopicId).with_topic_id(t.topic_id)
                        }
                    },
                })
                .collect()
        }
    };
    let brokers = catalog
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.id))
                .with_host(str_bytes(&b.host))
                .with_port(i32::from(b.port))
                .with_rack(b.rack.as_deref().map(str_bytes))
        })
        .collect();
    let topics = topics
        .into_iter()
        .map(|t| t.with_topic_authorized_operations(topic_operations))
        .collect();
    let response = MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(str_bytes(&catalog.cluster_id)))
        // Every broker forwards admin requests to the active controller,
        // so clients are pointed at this broker (as Kafka in KRaft mode
        // points them at a live broker): a controller failover never
        // leaves them waiting on a dead node. DescribeCluster names the
        // active controller.
        .with_controller_id(BrokerId(if shard.config.cluster.is_some() {
            shard.config.node_id
        } else {
            catalog.controller_id
        }))
        .with_topics(topics)
        .with_cluster_authorized_operations(authorized_operations_if(
            request.include_cluster_authorized_operations,
            ResourceType::Cluster,
        ));
    ctx.respond(&response)
}
