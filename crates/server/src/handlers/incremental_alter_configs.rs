//! IncrementalAlterConfigs: SET, DELETE, APPEND and SUBTRACT on topic
//! configs, dynamic broker configs (cluster-wide defaults under "", this
//! broker under its node id) and group configs; validate_only checks
//! without storing.

use std::rc::Rc;

use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};

use super::str_bytes;
use crate::config_resources::{alter, Change};
use crate::dispatch::{Context, DispatchError, Response};
use crate::shard::Shard;

/// Handles IncrementalAlterConfigs.
pub async fn handle(
    shard: &Rc<Shard>,
    ctx: &Context,
    request: IncrementalAlterConfigsRequest,
) -> Result<Response, DispatchError> {
    let resources = request
        .resources
        .iter()
        .map(|r| {
            let ops = r
                .configs
                .iter()
                .map(|c| {
                    let value = c.value.as_ref().map(|v| v.to_string());
                    (c.name.to_string(), c.config_operation, value)
                })
                .collect();
            (
                r.resource_type,
                r.resource_name.to_string(),
                Change::Ops(ops),
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
    ctx.respond(&IncrementalAlterConfigsResponse::default().with_responses(responses))
}
