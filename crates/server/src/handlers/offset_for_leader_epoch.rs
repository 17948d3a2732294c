//! OffsetForLeaderEpoch: where a leader epoch ends in this leader's log
//! (KIP-101/KIP-279). Followers ask it after a leader change and truncate
//! what they hold past that point; consumers ask it to detect truncation
//! (KIP-320).

use std::rc::Rc;

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use crate::dispatch::{Context, DispatchError, Response};
use crate::shard::Shard;
use ringbroker_protocol::errors::ErrorCode;

/// Handles OffsetForLeaderEpoch.
pub async fn handle(
    shard: &Rc<Shard>,
    ctx: &Context,
    request: OffsetForLeaderEpochRequest,
) -> Result<Response, DispatchError> {
    let catalog = shard.catalog();
    let me = shard.config.node_id;
    let mut parts = Vec::new();
    // Per topic and partition: a guard error, or the index of its part.
    let mut rows: Vec<Vec<Result<usize, i16>>> = Vec::new();
    for topic in &request.topics {
        let name = topic.topic.0.as_str();
        let meta = catalog.topics.get(name);
        rows.push(
            topic
                .partitions
                .iter()
                .map(|p| match meta.and_then(|m| m.partition(p.partition)) {
                    None => Err(ErrorCode::UnknownTopicOrPartition.code()),
                    Some(m) if m.leader != me => Err(ErrorCode::NotLeaderOrFollower.code()),
                    Some(m)
                        if p.current_leader_epoch >= 0
                            && p.current_leader_epoch < m.leader_epoch =>
                    {
                        Err(ErrorCode::FencedLeaderEpoch.code())
                    }
                    Some(m) if p.current_leader_epoch > m.leader_epoch => {
                        Err(ErrorCode::UnknownLeaderEpoch.code())
                    }
                    Some(_) => {
                        parts.push((name.to_string(), p.partition, p.leader_epoch));
                        Ok(parts.len() - 1)
                    }
                })
                .collect(),
        );
    }
    let ends = shard.epoch_ends(parts).await;
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
                    let (code, epoch, end) = match slot {
                        Ok(i) => ends[i],
                        Err(code) => (code, -1, -1),
                    };
                    EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_error_code(code)
                        .with_leader_epoch(epoch)
                        .with_end_offset(end)
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    ctx.respond(&OffsetForLeaderEpochResponse::default().with_topics(topics))
}
