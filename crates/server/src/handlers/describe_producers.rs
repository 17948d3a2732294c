//! DescribeProducers: the idempotent producers each asked partition
//! remembers (id, epoch, last sequence), read on the partition's owner
//! shard. ringbroker has no transactions, so the coordinator epoch and
//! the transaction start offset are -1; it keeps no per-producer
//! timestamp, so the last timestamp is -1 as well.

use std::rc::Rc;

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use super::topic_name;
use crate::dispatch::{Context, DispatchError, Response};
use crate::messages::ProducersResult;
use crate::shard::Shard;
use ringbroker_protocol::errors::ErrorCode;

/// Handles DescribeProducers.
pub async fn handle(
    shard: &Rc<Shard>,
    ctx: &Context,
    request: DescribeProducersRequest,
) -> Result<Response, DispatchError> {
    let catalog = shard.catalog();
    let node = shard.config.node_id;
    // Guard clauses first; the partitions this broker holds are asked of
    // their owner shards in one scatter.
    let mut asked = Vec::new();
    let mut answers: Vec<Result<usize, ErrorCode>> = Vec::new();
    for topic in &request.topics {
        let meta = catalog.topics.get(topic.name.0.as_str());
        for p in &topic.partition_indexes {
            answers.push(match meta.and_then(|m| m.partition(*p)) {
                None => Err(ErrorCode::UnknownTopicOrPartition),
                Some(partition) if !partition.replicas.contains(&node) => {
                    Err(ErrorCode::NotLeaderOrFollower)
                }
                Some(_) => {
                    asked.push((topic.name.0.to_string(), *p));
                    Ok(asked.len() - 1)
                }
            });
        }
    }
    let found = shard.producers(asked).await;
    let mut answers = answers.into_iter();
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partition_indexes
                .iter()
                .map(|p| {
                    let result = match answers.next() {
                        Some(Ok(i)) => found.get(i).cloned().unwrap_or_default(),
                        Some(Err(code)) => ProducersResult {
                            error_code: code.code(),
                            producers: Vec::new(),
                        },
                        None => ProducersResult {
                            error_code: ErrorCode::UnknownServerError.code(),
                            producers: Vec::new(),
                        },
                    };
                    PartitionResponse::default()
                        .with_partition_index(*p)
                        .with_error_code(result.error_code)
                        .with_active_producers(
                            result
                                .producers
                                .into_iter()
                                .map(|p| {
                                    ProducerState::default()
                                        .with_producer_id(ProducerId(p.producer_id))
                                        .with_producer_epoch(i32::from(p.epoch))
                                        .with_last_sequence(p.last_sequence)
                                        .with_last_timestamp(-1)
                                        .with_coordinator_epoch(p.coordinator_epoch)
                                        .with_current_txn_start_offset(p.txn_start_offset)
                                })
                                .collect(),
                        )
                })
                .collect();
            TopicResponse::default()
                .with_name(topic_name(topic.name.0.as_str()))
                .with_partitions(partitions)
        })
        .collect();
    ctx.respond(&DescribeProducersResponse::default().with_topics(topics))
}
