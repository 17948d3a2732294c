//! InitProducerId: producer ids for idempotent producers; with a
//! transactional id, the transaction coordinator's answer (epoch bumps,
//! fencing, KIP-360 recovery).

use std::rc::Rc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::dispatch::{Context, DispatchError, Response};
use crate::shard::Shard;
use ringbroker_protocol::errors::ErrorCode;
use ringbroker_txn::{
    error_for_version, ProducerIdAndEpoch, ProducerIdReply, Reply, Request, TxnApi,
};

/// Handles InitProducerId.
pub async fn handle(
    shard: &Rc<Shard>,
    ctx: &Context,
    request: InitProducerIdRequest,
) -> Result<Response, DispatchError> {
    let response = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if let Some(transactional_id) = &request.transactional_id {
        let transactional_id = transactional_id.0.to_string();
        let expected = (request.producer_id.0 >= 0 && request.producer_epoch >= 0).then_some(
            ProducerIdAndEpoch {
                producer_id: request.producer_id.0,
                epoch: request.producer_epoch,
            },
        );
        let call = Request::InitProducerId(ringbroker_txn::InitProducerIdRequest {
            transactional_id: transactional_id.clone(),
            transaction_timeout_ms: request.transaction_timeout_ms,
            expected,
        });
        let reply = match shard.txn_call(&transactional_id, call).await {
            Reply::InitProducerId(reply) => reply,
            _ => ProducerIdReply::error(ErrorCode::UnknownServerError),
        };
        let error = error_for_version(TxnApi::InitProducerId, ctx.version, reply.error);
        return ctx.respond(
            &response
                .with_error_code(error.code())
                .with_producer_id(ProducerId(reply.producer_id))
                .with_producer_epoch(reply.producer_epoch),
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
