//! DeleteRecords: moves partitions' log start offsets forward (Kafka
//! Streams purges repartition topics with it; operators truncate topics
//! with `kafka-delete-records`). Records below the new start are no longer
//! served (fetches there get OFFSET_OUT_OF_RANGE), whole segments below it
//! are deleted, and the new start is written to the log start checkpoint
//! before the answer. An offset past the high watermark is
//! OFFSET_OUT_OF_RANGE; -1 means the high watermark.

use std::rc::Rc;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::topic_name;
use crate::dispatch::{Context, DispatchError, Response};
use crate::messages::DeleteRecordsResult;
use crate::shard::Shard;
use ringbroker_protocol::errors::ErrorCode;

/// Handles DeleteRecords.
pub async fn handle(
    shard: &Rc<Shard>,
    ctx: &Context,
    request: DeleteRecordsRequest,
) -> Result<Response, DispatchError> {
    let catalog = shard.catalog();
    let node = shard.config.node_id;
    // Guard clauses; the partitions this broker leads go to their owners
    // in one scatter.
    let mut asked = Vec::new();
    let mut answers: Vec<Result<usize, ErrorCode>> = Vec::new();
    for topic in &request.topics {
        let meta = catalog.topics.get(topic.name.0.as_str());
        for p in &topic.partitions {
            answers.push(match meta.and_then(|m| m.partition(p.partition_index)) {
                None => Err(ErrorCode::UnknownTopicOrPartition),
                Some(partition) if partition.leader != node => Err(ErrorCode::NotLeaderOrFollower),
                Some(_) if p.offset < -1 => Err(ErrorCode::OffsetOutOfRange),
                Some(_) => {
                    asked.push((topic.name.0.to_string(), p.partition_index, p.offset));
                    Ok(asked.len() - 1)
                }
            });
        }
    }
    let done = shard.delete_records(asked).await;
    let mut answers = answers.into_iter();
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let result = match answers.next() {
                        Some(Ok(i)) => done.get(i).cloned().unwrap_or(DeleteRecordsResult {
                            error_code: ErrorCode::UnknownServerError.code(),
                            low_watermark: -1,
                        }),
                        Some(Err(code)) => DeleteRecordsResult {
                            error_code: code.code(),
                            low_watermark: -1,
                        },
                        None => DeleteRecordsResult {
                            error_code: ErrorCode::UnknownServerError.code(),
                            low_watermark: -1,
                        },
                    };
                    DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(result.low_watermark)
                        .with_error_code(result.error_code)
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(topic_name(topic.name.0.as_str()))
                .with_partitions(partitions)
        })
        .collect();
    ctx.respond(&DeleteRecordsResponse::default().with_topics(topics))
}
