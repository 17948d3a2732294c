//! The transaction APIs: AddPartitionsToTxn, AddOffsetsToTxn, EndTxn (to
//! the transactional id's coordinator, [`Shard::txn_call`]),
//! WriteTxnMarkers (from coordinators to partition leaders),
//! DescribeTransactions and ListTransactions (admin). InitProducerId with
//! a transactional id is in `init_producer_id`.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_transactions_response::{
    TopicData, TransactionState as DescribedState,
};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedState;
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, DescribeTransactionsRequest, DescribeTransactionsResponse,
    EndTxnRequest, EndTxnResponse, ListTransactionsRequest, ListTransactionsResponse, ProducerId,
    TransactionalId, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use ringbroker_protocol::errors::ErrorCode;
use ringbroker_txn::{
    error_for_version, AddOffsetsRequest, AddPartitionsRequest, EndTxnRequest as TxnEnd,
    ListRequest, Reply, Request, TopicPartition, TxnApi, TxnResult,
};

use super::{str_bytes, topic_name};
use crate::dispatch::{Context, DispatchError, Response};
use crate::messages::MarkerWrite;
use crate::shard::Shard;

/// AddPartitionsToTxn (v0-3: one transaction per request). Partitions of
/// unknown topics are answered UNKNOWN_TOPIC_OR_PARTITION and the others
/// OPERATION_NOT_ATTEMPTED, as Kafka; otherwise the coordinator's answer
/// holds for every partition.
pub async fn add_partitions(
    shard: &Rc<Shard>,
    ctx: &Context,
    r: AddPartitionsToTxnRequest,
) -> Result<Response, DispatchError> {
    let transactional_id = r.v3_and_below_transactional_id.0.to_string();
    let catalog = shard.catalog();
    let mut partitions = Vec::new();
    let mut unknown = Vec::new();
    for topic in &r.v3_and_below_topics {
        let name = topic.name.0.as_str();
        let meta = catalog.topics.get(name);
        for &index in &topic.partitions {
            let tp = TopicPartition::new(name, index);
            if meta.is_some_and(|m| m.partition(index).is_some()) {
                partitions.push(tp);
            } else {
                unknown.push(tp);
            }
        }
    }
    drop(catalog);
    let mut codes: Vec<(TopicPartition, ErrorCode)> = Vec::new();
    if !unknown.is_empty() {
        codes.extend(
            unknown
                .into_iter()
                .map(|tp| (tp, ErrorCode::UnknownTopicOrPartition)),
        );
        codes.extend(
            partitions
                .into_iter()
                .map(|tp| (tp, ErrorCode::OperationNotAttempted)),
        );
    } else {
        let request = Request::AddPartitions(AddPartitionsRequest {
            transactional_id: transactional_id.clone(),
            producer_id: r.v3_and_below_producer_id.0,
            producer_epoch: r.v3_and_below_producer_epoch,
            partitions: partitions.clone(),
        });
        let error = match shard.txn_call(&transactional_id, request).await {
            Reply::AddPartitions(error) => error,
            _ => ErrorCode::UnknownServerError,
        };
        let error = error_for_version(TxnApi::AddPartitionsToTxn, ctx.version, error);
        codes.extend(partitions.into_iter().map(|tp| (tp, error)));
    }
    let mut by_topic: BTreeMap<String, Vec<(i32, ErrorCode)>> = BTreeMap::new();
    for (tp, code) in codes {
        by_topic
            .entry(tp.topic)
            .or_default()
            .push((tp.partition, code));
    }
    let results = by_topic
        .into_iter()
        .map(|(name, parts)| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(topic_name(&name))
                .with_results_by_partition(
                    parts
                        .into_iter()
                        .map(|(index, code)| {
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(index)
                                .with_partition_error_code(code.code())
                        })
                        .collect(),
                )
        })
        .collect();
    ctx.respond(&AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results))
}

/// AddOffsetsToTxn.
pub async fn add_offsets(
    shard: &Rc<Shard>,
    ctx: &Context,
    r: AddOffsetsToTxnRequest,
) -> Result<Response, DispatchError> {
    let transactional_id = r.transactional_id.0.to_string();
    let request = Request::AddOffsets(AddOffsetsRequest {
        transactional_id: transactional_id.clone(),
        producer_id: r.producer_id.0,
        producer_epoch: r.producer_epoch,
        group_id: r.group_id.0.to_string(),
    });
    let error = match shard.txn_call(&transactional_id, request).await {
        Reply::AddOffsets(error) => error,
        _ => ErrorCode::UnknownServerError,
    };
    let error = error_for_version(TxnApi::AddOffsetsToTxn, ctx.version, error);
    ctx.respond(&AddOffsetsToTxnResponse::default().with_error_code(error.code()))
}

/// EndTxn.
pub async fn end_txn(
    shard: &Rc<Shard>,
    ctx: &Context,
    r: EndTxnRequest,
) -> Result<Response, DispatchError> {
    let transactional_id = r.transactional_id.0.to_string();
    let request = Request::EndTxn(TxnEnd {
        transactional_id: transactional_id.clone(),
        producer_id: r.producer_id.0,
        producer_epoch: r.producer_epoch,
        result: if r.committed {
            TxnResult::Commit
        } else {
            TxnResult::Abort
        },
    });
    let error = match shard.txn_call(&transactional_id, request).await {
        Reply::EndTxn(reply) => reply.error,
        _ => ErrorCode::UnknownServerError,
    };
    let error = error_for_version(TxnApi::EndTxn, ctx.version, error);
    ctx.respond(&EndTxnResponse::default().with_error_code(error.code()))
}

/// WriteTxnMarkers: a coordinator's markers for partitions this broker
/// leads, each appended and acknowledged by the in-sync replicas before
/// the answer.
pub async fn write_markers(
    shard: &Rc<Shard>,
    ctx: &Context,
    r: WriteTxnMarkersRequest,
) -> Result<Response, DispatchError> {
    let mut writes = Vec::new();
    for marker in &r.markers {
        for topic in &marker.topics {
            for &partition in &topic.partition_indexes {
                writes.push(MarkerWrite {
                    topic: topic.name.0.to_string(),
                    partition,
                    producer_id: marker.producer_id.0,
                    producer_epoch: marker.producer_epoch,
                    coordinator_epoch: marker.coordinator_epoch,
                    commit: marker.transaction_result,
                });
            }
        }
    }
    let mut codes = shard.write_markers(writes).await.into_iter();
    let markers = r
        .markers
        .iter()
        .map(|marker| {
            WritableTxnMarkerResult::default()
                .with_producer_id(marker.producer_id)
                .with_topics(
                    marker
                        .topics
                        .iter()
                        .map(|topic| {
                            WritableTxnMarkerTopicResult::default()
                                .with_name(topic.name.clone())
                                .with_partitions(
                                    topic
                                        .partition_indexes
                                        .iter()
                                        .map(|&index| {
                                            WritableTxnMarkerPartitionResult::default()
                                                .with_partition_index(index)
                                                .with_error_code(codes.next().unwrap_or(
                                                    ErrorCode::UnknownServerError.code(),
                                                ))
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                )
        })
        .collect();
    ctx.respond(&WriteTxnMarkersResponse::default().with_markers(markers))
}

/// DescribeTransactions: each id asked of its coordinator (an id this
/// broker does not coordinate is answered NOT_COORDINATOR).
pub async fn describe(
    shard: &Rc<Shard>,
    ctx: &Context,
    r: DescribeTransactionsRequest,
) -> Result<Response, DispatchError> {
    let calls = r.transactional_ids.iter().map(|id| {
        let id = id.0.to_string();
        async move {
            let request = Request::Describe {
                transactional_id: id.clone(),
            };
            match shard.txn_call(&id, request).await {
                Reply::Describe(d) => d,
                _ => ringbroker_txn::TxnDescription::error(&id, ErrorCode::UnknownServerError),
            }
        }
    });
    let states = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|d| {
            DescribedState::default()
                .with_error_code(d.error.code())
                .with_transactional_id(TransactionalId(str_bytes(&d.transactional_id)))
                .with_transaction_state(str_bytes(&d.state))
                .with_transaction_timeout_ms(d.timeout_ms)
                .with_transaction_start_time_ms(d.start_ms)
                .with_producer_id(ProducerId(d.producer_id))
                .with_producer_epoch(d.producer_epoch)
                .with_topics(
                    d.topics
                        .into_iter()
                        .map(|(topic, partitions)| {
                            TopicData::default()
                                .with_topic(topic_name(&topic))
                                .with_partitions(partitions)
                        })
                        .collect(),
                )
        })
        .collect();
    ctx.respond(&DescribeTransactionsResponse::default().with_transaction_states(states))
}

/// ListTransactions: the transactional ids this broker coordinates.
pub async fn list(
    shard: &Rc<Shard>,
    ctx: &Context,
    r: ListTransactionsRequest,
) -> Result<Response, DispatchError> {
    let request = ListRequest {
        producer_ids: r.producer_id_filters.iter().map(|p| p.0).collect(),
        states: r.state_filters.iter().map(|s| s.to_string()).collect(),
        duration_filter_ms: if ctx.version >= 1 {
            r.duration_filter
        } else {
            -1
        },
    };
    let listed = shard.list_all_transactions(request).await;
    ctx.respond(
        &ListTransactionsResponse::default()
            .with_error_code(listed.error.code())
            .with_unknown_state_filters(
                listed
                    .unknown_state_filters
                    .iter()
                    .map(|s| str_bytes(s))
                    .collect(),
            )
            .with_transaction_states(
                listed
                    .transactions
                    .into_iter()
                    .map(|t| {
                        ListedState::default()
                            .with_transactional_id(TransactionalId(str_bytes(&t.transactional_id)))
                            .with_producer_id(ProducerId(t.producer_id))
                            .with_transaction_state(str_bytes(t.state))
                    })
                    .collect(),
            ),
    )
}
