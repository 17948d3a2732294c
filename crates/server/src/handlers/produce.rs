//! Produce: validate each partition's batches, append on the owner shard,
//! wait for the acks level (acks=all: fdatasync), answer per partition.

use std::rc::Rc;

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use super::{str_bytes, topic_name};
use crate::dispatch::{Context, DispatchError, Response};
use crate::messages::{ProducePart, ProduceResult};
use crate::shard::Shard;
use ringbroker_protocol::errors::ErrorCode;
use ringbroker_protocol::limits::PRODUCE_TIMEOUT_MS_MAX;

/// Handles Produce.
pub async fn handle(
    shard: &Rc<Shard>,
    ctx: &Context,
    request: ProduceRequest,
) -> Result<Response, DispatchError> {
    let acks = request.acks;
    let names: Vec<String> = request
        .topic_data
        .iter()
        .map(|t| t.name.0.to_string())
        .collect();
    super::metadata::auto_create(shard, &names).await;
    let catalog = shard.catalog();

    // Guard clauses per partition; the rest go to their owner shards.
    let mut results: Vec<Vec<Option<ProduceResult>>> = Vec::new();
    let mut parts = Vec::new();
    let mut positions = Vec::new();
    for (t, topic) in request.topic_data.iter().enumerate() {
        let name = topic.name.0.as_str();
        let meta = catalog.topics.get(name);
        let mut row = Vec::with_capacity(topic.partition_data.len());
        for (p, data) in topic.partition_data.iter().enumerate() {
            let error = if !(acks == 0 || acks == 1 || acks == -1) {
                Some(ErrorCode::InvalidRequest) // Kafka: INVALID_REQUIRED_ACKS is 21
            } else if request.transactional_id.is_some() {
                Some(ErrorCode::TransactionalIdAuthorizationFailed)
            } else if meta.is_none_or(|m| data.index < 0 || data.index >= m.partitions) {
                Some(ErrorCode::UnknownTopicOrPartition)
            } else if meta.is_some_and(|m| m.is_internal()) {
                // Only the coordinator writes __consumer_offsets (as Kafka).
                Some(ErrorCode::InvalidTopicException)
            } else if data.records.as_ref().is_none_or(|r| r.is_empty()) {
                Some(ErrorCode::CorruptMessage)
            } else {
                None
            };
            match error {
                Some(code) => row.push(Some(failed(code))),
                None => {
                    row.push(None);
                    positions.push((t, p));
                    parts.push(ProducePart {
                        topic: name.to_string(),
                        partition: data.index,
                        records: data.records.clone().unwrap_or_default(),
                    });
                }
            }
        }
        results.push(row);
    }
    let timeout_ms = u64::try_from(request.timeout_ms.max(0))
        .unwrap_or(0)
        .min(PRODUCE_TIMEOUT_MS_MAX);
    let produced = shard.produce(acks, timeout_ms, parts).await;
    for ((t, p), result) in positions.into_iter().zip(produced) {
        results[t][p] = Some(result);
    }
    if acks == 0 {
        return Ok(Response::Nothing);
    }
    let responses = request
        .topic_data
        .iter()
        .zip(results)
        .map(|(topic, row)| {
            let partitions = topic
                .partition_data
                .iter()
                .zip(row)
                .map(|(data, result)| {
                    let r = result.unwrap_or_else(|| failed(ErrorCode::UnknownServerError));
                    PartitionProduceResponse::default()
                        .with_index(data.index)
                        .with_error_code(r.error_code)
                        .with_base_offset(r.base_offset)
                        .with_log_append_time_ms(r.log_append_time_ms)
                        .with_log_start_offset(r.log_start_offset)
                        .with_error_message(r.error_message.as_deref().map(str_bytes))
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(topic_name(topic.name.0.as_str()))
                .with_partition_responses(partitions)
        })
        .collect();
    ctx.respond(&ProduceResponse::default().with_responses(responses))
}

fn failed(code: ErrorCode) -> ProduceResult {
    ProduceResult {
        error_code: code.code(),
        error_message: None,
        base_offset: -1,
        log_append_time_ms: -1,
        log_start_offset: -1,
    }
}
