//! InitProducerId: producer ids for idempotent producers. Transactions are
//! not implemented, so a transactional id is refused.

use std::rc::Rc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::dispatch::{Context, DispatchError, Response};
use crate::shard::Shard;
use ringbroker_protocol::errors::ErrorCode;

/// Handles InitProducerId.
pub async fn handle(
    shard: &Rc<Shard>,
    ctx: &Context,
    request: InitProducerIdRequest,
) -> Result<Response, DispatchError> {
    let response = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if request.transactional_id.is_some() {
        return ctx.respond(
            &response.with_error_code(ErrorCode::TransactionalIdAuthorizationFailed.code()),
        );
    }
    // KIP-360: a known idempotent producer bumps its epoch and keeps its id.
    let (id, epoch) = if request.producer_id.0 >= 0
        && request.producer_epoch >= 0
        && request.producer_epoch < i16::MAX - 1
    {
        (request.producer_id.0, request.producer_epoch + 1)
    } else {
        match shard.producer_id().await {
            Ok(id) => (id, 0),
            // Clients retry (the controller may be electing).
            Err(code) => return ctx.respond(&response.with_error_code(code.code())),
        }
    };
    ctx.respond(
        &response
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch),
    )
}
