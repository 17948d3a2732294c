//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), earliest
//! local (-4), or the first offset at or after a timestamp (time index).

use std::rc::Rc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::topic_name;
use crate::dispatch::{Context, DispatchError, Response};
use crate::messages::{ListOffsetsPart, ListOffsetsResult};
use crate::shard::Shard;
use ringbroker_protocol::errors::ErrorCode;

/// Handles ListOffsets.
pub async fn handle(
    shard: &Rc<Shard>,
    ctx: &Context,
    request: ListOffsetsRequest,
) -> Result<Response, DispatchError> {
    let catalog = shard.catalog();
    let mut parts = Vec::new();
    let mut rows: Vec<Vec<Result<(usize, i32), i16>>> = Vec::new();
    let node_id = shard.config.node_id;
    for topic in &request.topics {
        let name = topic.name.0.as_str();
        let meta = catalog.topics.get(name);
        let mut seen = std::collections::HashSet::new();
        let row = topic
            .partitions
            .iter()
            .map(|p| {
                if !seen.insert(p.partition_index) {
                    return Err(ErrorCode::InvalidRequest.code());
                }
                match meta.and_then(|m| m.partition(p.partition_index)) {
                    Some(partition) if partition.leader != node_id => {
                        Err(ErrorCode::NotLeaderOrFollower.code())
                    }
                    Some(partition) => {
                        // -3 needs v7, -4 needs v8: older clients never send them.
                        let supported = p.timestamp >= -2
                            || (p.timestamp == -3 && ctx.version >= 7)
                            || (p.timestamp == -4 && ctx.version >= 8);
                        if !supported {
                            return Err(ErrorCode::InvalidRequest.code());
                        }
                        parts.push(ListOffsetsPart {
                            topic: name.to_string(),
                            partition: p.partition_index,
                            timestamp: p.timestamp,
                            read_committed: request.isolation_level == 1,
                        });
                        Ok((parts.len() - 1, partition.leader_epoch))
                    }
                    _ => Err(ErrorCode::UnknownTopicOrPartition.code()),
                }
            })
            .collect();
        rows.push(row);
    }
    let results = shard.list_offsets(parts).await;
    let topics = request
        .topics
        .iter()
        .zip(rows)
        .map(|(topic, row)| {
            let partitions = topic
                .partitions
                .iter()
                .zip(row)
                .map(|(p, slot)| {
                    let (r, epoch) = match slot {
                        Ok((i, epoch)) => (
                            results.get(i).cloned().unwrap_or(ListOffsetsResult {
                                error_code: ErrorCode::UnknownServerError.code(),
                                timestamp: -1,
                                offset: -1,
                            }),
                            epoch,
                        ),
                        Err(code) => (
                            ListOffsetsResult {
                                error_code: code,
                                timestamp: -1,
                                offset: -1,
                            },
                            -1,
                        ),
                    };
                    // The leader epoch field exists from v4.
                    let leader_epoch = if ctx.version >= 4 && r.error_code == 0 && r.offset >= 0 {
                        epoch
                    } else {
                        -1
                    };
                    ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(r.error_code)
                        .with_timestamp(r.timestamp)
                        .with_offset(r.offset)
                        .with_leader_epoch(leader_epoch)
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic_name(topic.name.0.as_str()))
                .with_partitions(partitions)
        })
        .collect();
    ctx.respond(&ListOffsetsResponse::default().with_topics(topics))
}
