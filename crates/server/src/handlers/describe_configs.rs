//! DescribeConfigs: topic configs (overrides over the broker defaults),
//! this broker's configuration (static and dynamic, resource name = node
//! id), the cluster-wide dynamic defaults (resource name "") and group
//! configs, each with its source and synonyms.

use std::rc::Rc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::str_bytes;
use crate::config_resources::{describe, Described};
use crate::dispatch::{Context, DispatchError, Response};
use crate::shard::Shard;

/// Handles DescribeConfigs.
pub fn handle(
    shard: &Rc<Shard>,
    ctx: &Context,
    request: DescribeConfigsRequest,
) -> Result<Response, DispatchError> {
    let results = request
        .resources
        .iter()
        .map(|resource| {
            let base = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let wanted = |name: &str| {
                resource
                    .configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.is_empty() || keys.iter().any(|k| k.as_str() == name))
            };
            match describe(
                shard,
                resource.resource_type,
                resource.resource_name.as_str(),
            ) {
                Ok(entries) => base.with_configs(
                    entries
                        .into_iter()
                        .filter(|(e, _)| wanted(&e.name))
                        .map(|d| encode(d, &request))
                        .collect(),
                ),
                Err((code, message)) => base
                    .with_error_code(code.code())
                    .with_error_message(Some(str_bytes(&message))),
            }
        })
        .collect();
    ctx.respond(&DescribeConfigsResponse::default().with_results(results))
}

fn encode(
    (e, chain): Described,
    request: &DescribeConfigsRequest,
) -> DescribeConfigsResourceResult {
    let synonyms = if request.include_synonyms {
        chain
            .into_iter()
            .map(|(name, value, source)| {
                DescribeConfigsSynonym::default()
                    .with_name(str_bytes(&name))
                    .with_value(value.as_deref().map(str_bytes))
                    .with_source(source.code())
            })
            .collect()
    } else {
        Vec::new()
    };
    DescribeConfigsResourceResult::default()
        .with_name(str_bytes(&e.name))
        .with_value(if e.sensitive {
            None
        } else {
            e.value.as_deref().map(str_bytes)
        })
        .with_read_only(e.read_only)
        .with_config_source(e.source.code())
        .with_is_sensitive(e.sensitive)
        .with_synonyms(synonyms)
        .with_config_type(e.config_type.code())
        .with_documentation(if request.include_documentation {
            e.documentation.as_deref().map(str_bytes)
        } else {
            None
        })
}
