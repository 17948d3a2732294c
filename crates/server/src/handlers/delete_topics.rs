//! DeleteTopics: by name (v1-5) or by name or topic id (v6).

use std::rc::Rc;

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::{str_bytes, topic_name};
use crate::dispatch::{Context, DispatchError, Response};
use crate::messages::AdminRequest;
use crate::shard::Shard;
use ringbroker_protocol::errors::ErrorCode;

/// Kafka's TOPIC_DELETION_DISABLED.
const TOPIC_DELETION_DISABLED: i16 = 73;

/// A topic to delete: name if resolved, id as asked, error if any.
type Wanted = (Option<String>, Uuid, Option<(i16, String)>);

/// Handles DeleteTopics.
pub async fn handle(
    shard: &Rc<Shard>,
    ctx: &Context,
    request: DeleteTopicsRequest,
) -> Result<Response, DispatchError> {
    let catalog = shard.catalog();
    // (name if resolved, id as asked, error if any)
    let wanted: Vec<Wanted> = if ctx.version >= 6 {
        request
            .topics
            .iter()
            .map(|t| match &t.name {
                Some(name) => (Some(name.0.to_string()), t.topic_id, None),
                None => match catalog.by_id(t.topic_id.as_bytes()) {
                    Some(meta) => (Some(meta.name.clone()), t.topic_id, None),
                    None => (
                        None,
                        t.topic_id,
                        Some((
                            ErrorCode::UnknownTopicId.code(),
                            "This server does not host this topic ID.".into(),
                        )),
                    ),
                },
            })
            .collect()
    } else {
        request
            .topic_names
            .iter()
            .map(|n| (Some(n.0.to_string()), Uuid::nil(), None))
            .collect()
    };
    let mut wanted: Vec<_> = wanted
        .into_iter()
        .map(|(name, id, error)| {
            let error = error.or_else(|| {
                (!shard.config.delete_topic_enable).then(|| {
                    (
                        TOPIC_DELETION_DISABLED,
                        "Topic deletion is disabled.".to_string(),
                    )
                })
            });
            (name, id, error)
        })
        .collect();
    let names: Vec<String> = wanted
        .iter()
        .filter(|(_, _, e)| e.is_none())
        .filter_map(|(n, _, _)| n.clone())
        .collect();
    let mut results = if names.is_empty() {
        Vec::new()
    } else {
        shard.admin(AdminRequest::DeleteTopics(names)).await
    }
    .into_iter();
    let responses = wanted
        .iter_mut()
        .map(|(name, id, error)| {
            let (code, message, topic_id) = match error.take() {
                Some((code, message)) => (code, Some(message), *id),
                None => match results.next() {
                    Some(r) => (
                        r.error_code,
                        r.message,
                        r.topic.as_ref().map_or(*id, |m| m.uuid()),
                    ),
                    None => (ErrorCode::UnknownServerError.code(), None, *id),
                },
            };
            DeletableTopicResult::default()
                .with_name(name.as_deref().map(topic_name))
                .with_topic_id(topic_id)
                .with_error_code(code)
                .with_error_message(
                    message
                        .as_deref()
                        .map(str_bytes)
                        .or_else(|| (code != 0).then(StrBytes::default)),
                )
        })
        .collect();
    ctx.respond(&DeleteTopicsResponse::default().with_responses(responses))
}
