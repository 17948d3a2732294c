//! DescribeCluster: this broker is the whole cluster and its controller.

use std::rc::Rc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::str_bytes;
use crate::dispatch::{Context, DispatchError, Response};
use crate::shard::Shard;

/// Handles DescribeCluster.
pub fn handle(
    shard: &Rc<Shard>,
    ctx: &Context,
    request: DescribeClusterRequest,
) -> Result<Response, DispatchError> {
    let config = &shard.config;
    let broker = DescribeClusterBroker::default()
        .with_broker_id(BrokerId(config.node_id))
        .with_host(str_bytes(&config.advertised_host))
        .with_port(i32::from(config.advertised_port));
    let response = DescribeClusterResponse::default()
        .with_endpoint_type(request.endpoint_type.max(1))
        .with_cluster_id(str_bytes(&shard.catalog().cluster_id))
        .with_controller_id(BrokerId(config.node_id))
        .with_brokers(vec![broker])
        .with_cluster_authorized_operations(i32::MIN);
    ctx.respond(&response)
}
