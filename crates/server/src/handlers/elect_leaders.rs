//! ElectLeaders: preferred or unclean leader elections, changed by the
//! active controller (forwarded like every metadata change). Asked for
//! every partition (null topics), it answers only the partitions whose
//! election did something or failed, as Kafka does.

use std::rc::Rc;

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse};

use super::{str_bytes, topic_name};
use crate::dispatch::{Context, DispatchError, Response};
use crate::messages::{AdminRequest, PartitionKey};
use crate::shard::Shard;
use ringbroker_protocol::errors::ErrorCode;

/// Handles ElectLeaders.
pub async fn handle(
    shard: &Rc<Shard>,
    ctx: &Context,
    request: ElectLeadersRequest,
) -> Result<Response, DispatchError> {
    let unclean = match request.election_type {
        0 => false,
        1 => true,
        _ => {
            return ctx.respond(
                &ElectLeadersResponse::default().with_error_code(ErrorCode::InvalidRequest.code()),
            )
        }
    };
    let every_partition = request.topic_partitions.is_none();
    let partitions: Vec<PartitionKey> = match &request.topic_partitions {
        Some(topics) => topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.to_string(), *p)))
            .collect(),
        None => shard
            .catalog()
            .topics
            .values()
            .flat_map(|t| (0..t.partition_count()).map(|p| (t.name.clone(), p)))
            .collect(),
    };
    let results = if partitions.is_empty() {
        Vec::new()
    } else {
        shard
            .admin(AdminRequest::ElectLeaders {
                unclean,
                partitions: partitions.clone(),
            })
            .await
    };
    let mut topics: Vec<ReplicaElectionResult> = Vec::new();
    for (i, (topic, partition)) in partitions.iter().enumerate() {
        let (code, message) = results.get(i).map_or(
            (
                ErrorCode::UnknownServerError.code(),
                Some("metadata shard unavailable".to_string()),
            ),
            |r| (r.error_code, r.message.clone()),
        );
        if every_partition && code == ErrorCode::ElectionNotNeeded.code() {
            continue;
        }
        let result = PartitionResult::default()
            .with_partition_id(*partition)
            .with_error_code(code)
            .with_error_message(message.filter(|_| code != 0).as_deref().map(str_bytes));
        match topics.iter_mut().find(|t| t.topic.0.as_str() == topic) {
            Some(t) => t.partition_result.push(result),
            None => topics.push(
                ReplicaElectionResult::default()
                    .with_topic(topic_name(topic))
                    .with_partition_result(vec![result]),
            ),
        }
    }
    ctx.respond(&ElectLeadersResponse::default().with_replica_election_results(topics))
}
