//! DescribeCluster: the registered brokers and the controller, from the
//! catalog, and the cluster's authorized operations when asked for.

use std::rc::Rc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::str_bytes;
use crate::acl::{authorized_operations_if, ResourceType};
use crate::dispatch::{Context, DispatchError, Response};
use crate::shard::Shard;

/// Handles DescribeCluster.
pub fn handle(
    shard: &Rc<Shard>,
    ctx: &Context,
    request: DescribeClusterRequest,
) -> Result<Response, DispatchError> {
    let catalog = shard.catalog();
    let brokers = catalog
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.id))
                .with_host(str_bytes(&b.host))
                .with_port(i32::from(b.port))
                .with_rack(b.rack.as_deref().map(str_bytes))
        })
        .collect();
    let response = DescribeClusterResponse::default()
        .with_endpoint_type(request.endpoint_type.max(1))
        .with_cluster_id(str_bytes(&catalog.cluster_id))
        .with_controller_id(BrokerId(catalog.controller_id))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(authorized_operations_if(
            request.include_cluster_authorized_operations,
            ResourceType::Cluster,
        ));
    ctx.respond(&response)
}
