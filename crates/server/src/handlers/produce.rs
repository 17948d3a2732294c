//! Produce: validate each partition's batches, append on the owner shard,
//! wait for the acks level (acks=all: fdatasync), answer per partition.
//! Batches for compacted topics are also walked for records without a key,
//! which Kafka refuses with INVALID_RECORD and per-record errors (KIP-467);
//! no other batch is looked into.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse,
    TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse};

use super::{str_bytes, topic_name};
use crate::dispatch::{Context, DispatchError, Response};
use crate::messages::{ProducePart, ProduceResult};
use crate::shard::Shard;
use ringbroker_protocol::batch;
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
                Some(ErrorCode::InvalidRequiredAcks)
            } else if meta.is_none_or(|m| m.partition(data.index).is_none()) {
                Some(ErrorCode::UnknownTopicOrPartition)
            } else if meta
                .and_then(|m| m.partition(data.index))
                .is_some_and(|p| p.leader != shard.config.node_id)
            {
                Some(ErrorCode::NotLeaderOrFollower)
            } else if meta.is_some_and(|m| m.is_internal()) {
                // Only the coordinator writes __consumer_offsets (as Kafka).
                Some(ErrorCode::InvalidTopicException)
            } else if acks == -1
                && meta
                    .and_then(|m| m.partition(data.index))
                    .is_some_and(|p| (p.isr.len() as i32) < shard.min_insync_replicas(name))
            {
                // Kafka refuses before appending when the ISR is smaller
                // than min.insync.replicas.
                Some(ErrorCode::NotEnoughReplicas)
            } else if data.records.as_ref().is_none_or(|r| r.is_empty()) {
                Some(ErrorCode::CorruptMessage)
            } else {
                None
            };
            let records = data.records.clone().unwrap_or_default();
            let refused = match error {
                Some(code) => Some(failed(code)),
                None if shard.is_compacted(name) => {
                    keyless_records_error(name, data.index, &records)
                }
                None => None,
            };
            match refused {
                Some(result) => row.push(Some(result)),
                None => {
                    row.push(None);
                    positions.push((t, p));
                    parts.push(ProducePart {
                        topic: name.to_string(),
                        partition: data.index,
                        records,
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
    // KIP-951: with NOT_LEADER_OR_FOLLOWER, the current leader and its
    // endpoint, so the client re-routes without a metadata round trip.
    let mut leaders = std::collections::BTreeSet::new();
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
                    let current_leader = (r.error_code == ErrorCode::NotLeaderOrFollower.code())
                        .then(|| {
                            catalog
                                .topics
                                .get(topic.name.0.as_str())
                                .and_then(|m| m.partition(data.index))
                        })
                        .flatten()
                        .filter(|p| p.leader >= 0)
                        .map_or_else(LeaderIdAndEpoch::default, |p| {
                            leaders.insert(p.leader);
                            LeaderIdAndEpoch::default()
                                .with_leader_id(BrokerId(p.leader))
                                .with_leader_epoch(p.leader_epoch)
                        });
                    PartitionProduceResponse::default()
                        .with_current_leader(current_leader)
                        .with_index(data.index)
                        .with_error_code(r.error_code)
                        .with_base_offset(r.base_offset)
                        .with_log_append_time_ms(r.log_append_time_ms)
                        .with_log_start_offset(r.log_start_offset)
                        .with_record_errors(
                            r.record_errors
                                .iter()
                                .map(|(index, message)| {
                                    BatchIndexAndErrorMessage::default()
                                        .with_batch_index(*index)
                                        .with_batch_index_error_message(Some(str_bytes(message)))
                                })
                                .collect(),
                        )
                        .with_error_message(r.error_message.as_deref().map(str_bytes))
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(topic_name(topic.name.0.as_str()))
                .with_partition_responses(partitions)
        })
        .collect();
    let node_endpoints = leaders
        .into_iter()
        .filter_map(|id| catalog.brokers.get(&id).filter(|b| !b.fenced))
        .map(|b| {
            NodeEndpoint::default()
                .with_node_id(BrokerId(b.id))
                .with_host(str_bytes(&b.host))
                .with_port(i32::from(b.port))
                .with_rack(b.rack.as_deref().map(str_bytes))
        })
        .collect();
    ctx.respond(
        &ProduceResponse::default()
            .with_responses(responses)
            .with_node_endpoints(node_endpoints),
    )
}

fn failed(code: ErrorCode) -> ProduceResult {
    ProduceResult {
        error_code: code.code(),
        error_message: None,
        base_offset: -1,
        log_append_time_ms: -1,
        log_start_offset: -1,
        record_errors: Vec::new(),
    }
}

/// Kafka's answer when a compacted topic gets records without a key:
/// INVALID_RECORD, one record error per keyless record of the first batch
/// holding any, and Kafka's summary message; nothing of the request is
/// appended. None when every record has a key, or when a batch is
/// malformed (the append answers that with CORRUPT_MESSAGE).
fn keyless_records_error(topic: &str, partition: i32, records: &Bytes) -> Option<ProduceResult> {
    for item in batch::batches(records) {
        let (_, range) = item.ok()?;
        let keyless = match batch::keyless_records(&records[range]) {
            Ok(keyless) => keyless,
            Err(e) => {
                let mut result = failed(ErrorCode::CorruptMessage);
                result.error_message = Some(format!("corrupt record batch: {e}"));
                return Some(result);
            }
        };
        if keyless.is_empty() {
            continue;
        }
        let message = format!(
            "Compacted topic cannot accept message without key in topic partition {topic}-{partition}"
        );
        let shown: Vec<String> = keyless
            .iter()
            .take(3)
            .map(|i| format!("RecordError(batchIndex={i}, message='{message}')"))
            .collect();
        let mut result = failed(ErrorCode::InvalidRecord);
        result.error_message = Some(format!(
            "One or more records have been rejected due to {} record errors in total, and only showing the first three errors at most: [{}]",
            keyless.len(),
            shown.join(", ")
        ));
        result.record_errors = keyless.into_iter().map(|i| (i, message.clone())).collect();
        return Some(result);
    }
    None
}
