//! CreatePartitions: grow topics; partitions are never removed.

use std::rc::Rc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::{str_bytes, topic_name};
use crate::dispatch::{Context, DispatchError, Response};
use crate::messages::{AdminRequest, NewPartitions};
use crate::shard::Shard;
use ringbroker_protocol::errors::ErrorCode;

/// Handles CreatePartitions.
pub async fn handle(
    shard: &Rc<Shard>,
    ctx: &Context,
    request: CreatePartitionsRequest,
) -> Result<Response, DispatchError> {
    let guards: Vec<Option<(i16, String)>> = request
        .topics
        .iter()
        .map(|t| {
            let name = t.name.0.as_str();
            let duplicates = request
                .topics
                .iter()
                .filter(|o| o.name.0.as_str() == name)
                .count();
            if duplicates > 1 {
                return Some((
                    ErrorCode::InvalidRequest.code(),
                    "Duplicate topic in request.".into(),
                ));
            }
            // Unknown topics, counts and assignments are judged by the
            // metadata change itself.
            None
        })
        .collect();
    let items: Vec<NewPartitions> = request
        .topics
        .iter()
        .zip(&guards)
        .filter(|(_, g)| g.is_none())
        .map(|(t, _)| NewPartitions {
            topic: t.name.0.to_string(),
            count: t.count,
            assignments: t
                .assignments
                .iter()
                .flatten()
                .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                .collect(),
        })
        .collect();
    let mut results = if items.is_empty() {
        Vec::new()
    } else {
        shard
            .admin(AdminRequest::CreatePartitions {
                topics: items,
                validate_only: request.validate_only,
            })
            .await
    }
    .into_iter();
    let responses = request
        .topics
        .iter()
        .zip(guards)
        .map(|(t, guard)| {
            let (code, message) = match guard {
                Some((code, message)) => (code, Some(message)),
                None => results
                    .next()
                    .map_or((ErrorCode::UnknownServerError.code(), None), |r| {
                        (r.error_code, r.message)
                    }),
            };
            CreatePartitionsTopicResult::default()
                .with_name(topic_name(t.name.0.as_str()))
                .with_error_code(code)
                .with_error_message(if code == 0 {
                    None
                } else {
                    message.as_deref().map(str_bytes)
                })
        })
        .collect();
    ctx.respond(&CreatePartitionsResponse::default().with_results(responses))
}
