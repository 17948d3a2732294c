//! AlterConfigs (the legacy, whole-set form): the configs given for a
//! resource replace all of its configs (topic overrides, dynamic broker
//! configs, group configs); what is not given returns to its default.
//! validate_only checks without storing.

use std::rc::Rc;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};

use super::str_bytes;
use crate::config_resources::{alter, Change};
use crate::dispatch::{Context, DispatchError, Response};
use crate::shard::Shard;

/// Handles AlterConfigs.
pub async fn handle(
    shard: &Rc<Shard>,
    ctx: &Context,
    request: AlterConfigsRequest,
) -> Result<Response, DispatchError> {
    let resources = request
        .resources
        .iter()
        .map(|r| {
            let items = r
                .configs
                .iter()
                .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                .collect();
            (
                r.resource_type,
                r.resource_name.to_string(),
                Change::Replace(items),
            )
        })
        .collect();
    let outcomes = alter(shard, resources, request.validate_only).await;
    let responses = request
        .resources
        .iter()
        .zip(outcomes)
        .map(|(resource, outcome)| {
            let base = AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            match outcome {
                Ok(()) => base,
                Err((code, message)) => base
                    .with_error_code(code.code())
                    .with_error_message(Some(str_bytes(&message))),
            }
        })
        .collect();
    ctx.respond(&AlterConfigsResponse::default().with_responses(responses))
}
