//! AlterPartitionReassignments and ListPartitionReassignments: moving
//! partitions between brokers. The active controller adds the new
//! replicas, which fetch until they are in sync, then drops the leaving
//! ones (see `cluster::metadata::reassign`); running reassignments are
//! read from this broker's metadata image.

use std::rc::Rc;

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};

use super::{str_bytes, topic_name};
use crate::catalog::PartitionMeta;
use crate::dispatch::{Context, DispatchError, Response};
use crate::messages::{AdminRequest, PartitionKey};
use crate::shard::Shard;
use ringbroker_protocol::errors::ErrorCode;

/// Handles AlterPartitionReassignments.
pub async fn alter(
    shard: &Rc<Shard>,
    ctx: &Context,
    request: AlterPartitionReassignmentsRequest,
) -> Result<Response, DispatchError> {
    let catalog = shard.catalog();
    // Guards: a replication factor change when the client forbids it
    // (KIP-860), a partition named twice.
    let mut seen: Vec<(&str, i32)> = Vec::new();
    let mut guards: Vec<Option<(ErrorCode, String)>> = Vec::new();
    let mut items: Vec<(PartitionKey, Option<Vec<i32>>)> = Vec::new();
    for topic in &request.topics {
        for p in &topic.partitions {
            let name = topic.name.0.as_str();
            let target: Option<Vec<i32>> =
                p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect());
            let factor_changes = |meta: &PartitionMeta, target: &[i32]| {
                meta.replicas.len() - meta.adding_replicas.len() != target.len()
            };
            let guard = if seen.contains(&(name, p.partition_index)) {
                Some((
                    ErrorCode::InvalidRequest,
                    "partition named twice".to_string(),
                ))
            } else {
                match (
                    &target,
                    catalog
                        .topics
                        .get(name)
                        .and_then(|t| t.partition(p.partition_index)),
                ) {
                    (Some(target), Some(meta))
                        if !request.allow_replication_factor_change
                            && factor_changes(meta, target) =>
                    {
                        Some((
                            ErrorCode::InvalidReplicationFactor,
                            "the reassignment changes the replication factor".to_string(),
                        ))
                    }
                    _ => None,
                }
            };
            seen.push((name, p.partition_index));
            if guard.is_none() {
                items.push(((name.to_string(), p.partition_index), target));
            }
            guards.push(guard);
        }
    }
    let mut results = if items.is_empty() {
        Vec::new()
    } else {
        shard.admin(AdminRequest::Reassign(items)).await
    }
    .into_iter();
    let mut guards = guards.into_iter();
    let responses = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let (code, message) = match guards.next().flatten() {
                        Some((code, message)) => (code.code(), Some(message)),
                        None => results
                            .next()
                            .map_or((ErrorCode::UnknownServerError.code(), None), |r| {
                                (r.error_code, r.message)
                            }),
                    };
                    ReassignablePartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                        .with_error_message(message.filter(|_| code != 0).as_deref().map(str_bytes))
                })
                .collect();
            ReassignableTopicResponse::default()
                .with_name(topic_name(topic.name.0.as_str()))
                .with_partitions(partitions)
        })
        .collect();
    ctx.respond(
        &AlterPartitionReassignmentsResponse::default()
            .with_allow_replication_factor_change(request.allow_replication_factor_change)
            .with_responses(responses),
    )
}

/// Handles ListPartitionReassignments.
pub fn list(
    shard: &Rc<Shard>,
    ctx: &Context,
    request: ListPartitionReassignmentsRequest,
) -> Result<Response, DispatchError> {
    let catalog = shard.catalog();
    let ongoing = |meta: &PartitionMeta, index: i32| {
        meta.reassigning().then(|| {
            let ids = |v: &[i32]| v.iter().copied().map(BrokerId).collect::<Vec<_>>();
            OngoingPartitionReassignment::default()
                .with_partition_index(index)
                .with_replicas(ids(&meta.replicas))
                .with_adding_replicas(ids(&meta.adding_replicas))
                .with_removing_replicas(ids(&meta.removing_replicas))
        })
    };
    let asked: Vec<(String, Vec<i32>)> = match &request.topics {
        Some(topics) => topics
            .iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
            .collect(),
        None => catalog
            .topics
            .values()
            .map(|t| (t.name.clone(), (0..t.partition_count()).collect()))
            .collect(),
    };
    let topics = asked
        .into_iter()
        .filter_map(|(name, indexes)| {
            let meta = catalog.topics.get(&name)?;
            let partitions: Vec<_> = indexes
                .iter()
                .filter_map(|p| meta.partition(*p).and_then(|m| ongoing(m, *p)))
                .collect();
            (!partitions.is_empty()).then(|| {
                OngoingTopicReassignment::default()
                    .with_name(topic_name(&name))
                    .with_partitions(partitions)
            })
        })
        .collect();
    ctx.respond(&ListPartitionReassignmentsResponse::default().with_topics(topics))
}
