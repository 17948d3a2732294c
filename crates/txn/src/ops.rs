//! What each request does to its transactional id, as Kafka's
//! TransactionCoordinator decides it: answer at once, or prepare a
//! transition whose record must be written first. Pure functions of the
//! metadata; the coordinator performs the decisions.

use std::collections::BTreeMap;

use ringbroker_protocol::errors::ErrorCode;

use crate::config::TxnConfig;
use crate::effects::ProducerIdSource;
use crate::metadata::{epoch_exhausted, Transit, TxnMetadata};
use crate::state::TxnState;
use crate::types::{
    AddPartitionsRequest, EndTxnRequest, InitProducerIdRequest, ListRequest, ListResponse,
    ListedTxn, ProducerIdAndEpoch, ProducerIdReply, Reply, RequestId, TopicPartition,
    TxnDescription, TxnResult,
};

/// The topic AddOffsetsToTxn adds a partition of.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Who is waiting for a Prepare record, and what they are told once it is
/// durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EndOrigin {
    /// EndTxn: NONE with the producer id and epoch.
    Client(RequestId),
    /// InitProducerId found a transaction open and fences it: the client is
    /// told CONCURRENT_TRANSACTIONS, to retry once the abort completes.
    Fence(RequestId),
    /// The transaction timed out; nobody waits.
    Timeout,
}

/// What to do once a transition's record is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Then {
    /// Answer InitProducerId with the new producer id and epoch.
    InitProducerId(RequestId),
    /// Answer AddPartitionsToTxn (or AddOffsetsToTxn) with NONE.
    Added {
        /// The request.
        id: RequestId,
        /// AddOffsetsToTxn.
        offsets: bool,
    },
    /// A Prepare record: write the markers, answer the origin.
    Markers {
        /// Who waits.
        origin: EndOrigin,
        /// The record carries a fencing bump.
        fence: bool,
    },
    /// A Complete record: the transaction is over.
    Completed,
}

impl Then {
    /// The answer to whoever waits when the record failed (`error` is
    /// already mapped for clients).
    pub fn failed_reply(self, error: ErrorCode) -> Option<(RequestId, Reply)> {
        match self {
            Then::InitProducerId(id)
            | Then::Markers {
                origin: EndOrigin::Fence(id),
                ..
            } => Some((id, Reply::InitProducerId(ProducerIdReply::error(error)))),
            Then::Added { id, offsets: false } => Some((id, Reply::AddPartitions(error))),
            Then::Added { id, offsets: true } => Some((id, Reply::AddOffsets(error))),
            Then::Markers {
                origin: EndOrigin::Client(id),
                ..
            } => Some((id, Reply::EndTxn(ProducerIdReply::error(error)))),
            Then::Markers {
                origin: EndOrigin::Timeout,
                ..
            }
            | Then::Completed => None,
        }
    }
}

/// A request's outcome.
#[derive(Debug)]
pub(crate) enum Decision {
    /// Answer now.
    Reply(Reply),
    /// Write this transition's record, then act as `then` says.
    Append(Transit, Then),
}

/// Whether an expected producer id may continue with this metadata
/// (KIP-360): the metadata was just created, the id is the current one,
/// or the producer retries after a rotation it never heard of.
fn expected_id_valid(meta: &TxnMetadata, expected: &ProducerIdAndEpoch) -> bool {
    meta.producer_epoch < 0
        || expected.producer_id == meta.producer_id
        || (expected.producer_id == meta.previous_producer_id && epoch_exhausted(expected.epoch))
}

/// InitProducerId for an id whose metadata exists (created with a fresh
/// producer id if it did not).
pub(crate) fn init_producer_id(
    meta: &mut TxnMetadata,
    id: RequestId,
    r: &InitProducerIdRequest,
    now_ms: i64,
    ids: &mut dyn ProducerIdSource,
) -> Decision {
    let refuse = |e| Decision::Reply(Reply::InitProducerId(ProducerIdReply::error(e)));
    if meta.pending.is_some() {
        return refuse(ErrorCode::ConcurrentTransactions);
    }
    if r.expected
        .as_ref()
        .is_some_and(|e| !expected_id_valid(meta, e))
    {
        return refuse(ErrorCode::ProducerFenced);
    }
    match meta.state {
        TxnState::PrepareCommit | TxnState::PrepareAbort => {
            refuse(ErrorCode::ConcurrentTransactions)
        }
        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
            let rotate =
                meta.epoch_exhausted() && r.expected.is_none_or(|e| e.epoch == meta.producer_epoch);
            let transit = if rotate {
                match ids.next_producer_id() {
                    Ok(producer_id) => {
                        log::info!(
                            "{}: epochs of producer id {} exhausted; moving to {producer_id}",
                            meta.transactional_id,
                            meta.producer_id
                        );
                        meta.prepare_rotation(
                            producer_id,
                            r.transaction_timeout_ms,
                            now_ms,
                            r.expected.is_some(),
                        )
                    }
                    Err(e) => return refuse(e),
                }
            } else {
                let expected_epoch = r.expected.map(|e| e.epoch);
                match meta.prepare_epoch_bump(r.transaction_timeout_ms, expected_epoch, now_ms) {
                    Ok(t) => t,
                    Err(e) => return refuse(e),
                }
            };
            Decision::Append(transit, Then::InitProducerId(id))
        }
        // Abort the open transaction with a bumped epoch first; the client
        // retries and then gets a second bump.
        TxnState::Ongoing => Decision::Append(
            meta.prepare_fence_and_abort(now_ms),
            Then::Markers {
                origin: EndOrigin::Fence(id),
                fence: true,
            },
        ),
        TxnState::Dead | TxnState::PrepareEpochFence => unreachable!(
            "{}: {} is only ever pending",
            meta.transactional_id, meta.state
        ),
    }
}

/// AddPartitionsToTxn and AddOffsetsToTxn (`offsets`): the partitions join
/// the transaction once the record is durable.
pub(crate) fn add_partitions(
    meta: Option<&mut TxnMetadata>,
    id: RequestId,
    r: &AddPartitionsRequest,
    offsets: bool,
    config: &TxnConfig,
    now_ms: i64,
) -> Decision {
    let reply = |e| {
        Decision::Reply(if offsets {
            Reply::AddOffsets(e)
        } else {
            Reply::AddPartitions(e)
        })
    };
    let Some(meta) = meta else {
        return reply(ErrorCode::InvalidProducerIdMapping);
    };
    if meta.producer_id != r.producer_id {
        return reply(ErrorCode::InvalidProducerIdMapping);
    }
    if meta.producer_epoch != r.producer_epoch {
        return reply(ErrorCode::ProducerFenced);
    }
    if meta.pending.is_some()
        || matches!(meta.state, TxnState::PrepareCommit | TxnState::PrepareAbort)
    {
        return reply(ErrorCode::ConcurrentTransactions);
    }
    if meta.state == TxnState::Ongoing && r.partitions.iter().all(|p| meta.partitions.contains(p)) {
        return reply(ErrorCode::None);
    }
    if meta.producer_epoch < 0 {
        // No InitProducerId has completed for this id: no producer owns it
        // (Kafka fails the transition itself here).
        return reply(ErrorCode::InvalidProducerIdMapping);
    }
    let added = r
        .partitions
        .iter()
        .filter(|p| !meta.partitions.contains(*p))
        .count();
    if meta.partitions.len() + added > config.transaction_partitions_max {
        log::warn!(
            "{}: a transaction of more than {} partitions refused",
            meta.transactional_id,
            config.transaction_partitions_max
        );
        return reply(ErrorCode::UnknownServerError);
    }
    Decision::Append(
        meta.prepare_add_partitions(&r.partitions, now_ms),
        Then::Added { id, offsets },
    )
}

/// The verify-only AddPartitionsToTxn of KIP-890 part 1: which partitions
/// are in the open transaction. Pending transitions are not checked (the
/// partition's append is validated again).
pub(crate) fn verify_partitions(meta: Option<&TxnMetadata>, r: &AddPartitionsRequest) -> Reply {
    let all = |e: ErrorCode| r.partitions.iter().map(|p| (p.clone(), e)).collect();
    let error = match meta {
        None => Some(ErrorCode::InvalidProducerIdMapping),
        Some(m) if m.producer_id != r.producer_id => Some(ErrorCode::InvalidProducerIdMapping),
        Some(m) if m.producer_epoch != r.producer_epoch => Some(ErrorCode::ProducerFenced),
        Some(m) if matches!(m.state, TxnState::PrepareCommit | TxnState::PrepareAbort) => {
            Some(ErrorCode::ConcurrentTransactions)
        }
        Some(_) => None,
    };
    match (error, meta) {
        (Some(e), _) => Reply::VerifyPartitions(all(e)),
        (None, Some(m)) => Reply::VerifyPartitions(
            r.partitions
                .iter()
                .map(|p| {
                    let e = if m.partitions.contains(p) {
                        ErrorCode::None
                    } else {
                        ErrorCode::TransactionAbortable
                    };
                    (p.clone(), e)
                })
                .collect(),
        ),
        (None, None) => unreachable!("no metadata is an error"),
    }
}

/// EndTxn from the client (transaction version 1: the epoch must be the
/// current one). A retry of a completed commit or abort is answered NONE.
pub(crate) fn end_txn(
    meta: Option<&mut TxnMetadata>,
    id: RequestId,
    r: &EndTxnRequest,
    now_ms: i64,
) -> Decision {
    let refuse = |e| Decision::Reply(Reply::EndTxn(ProducerIdReply::error(e)));
    let Some(meta) = meta else {
        return refuse(ErrorCode::InvalidProducerIdMapping);
    };
    if meta.producer_id != r.producer_id {
        return refuse(ErrorCode::InvalidProducerIdMapping);
    }
    if meta.producer_epoch != r.producer_epoch {
        return refuse(ErrorCode::ProducerFenced);
    }
    if meta.pending.is_some() {
        return refuse(ErrorCode::ConcurrentTransactions);
    }
    let commit = r.result == TxnResult::Commit;
    let error = match meta.state {
        TxnState::Ongoing => {
            return Decision::Append(
                meta.prepare_end(r.result, now_ms),
                Then::Markers {
                    origin: EndOrigin::Client(id),
                    fence: false,
                },
            )
        }
        TxnState::CompleteCommit if commit => ErrorCode::None,
        TxnState::CompleteAbort if !commit => ErrorCode::None,
        TxnState::PrepareCommit if commit => ErrorCode::ConcurrentTransactions,
        TxnState::PrepareAbort if !commit => ErrorCode::ConcurrentTransactions,
        TxnState::Dead | TxnState::PrepareEpochFence => unreachable!(
            "{}: {} is only ever pending",
            meta.transactional_id, meta.state
        ),
        state => {
            log::debug!(
                "{}: EndTxn({:?}) in state {state}",
                meta.transactional_id,
                r.result
            );
            ErrorCode::InvalidTxnState
        }
    };
    if error == ErrorCode::None {
        Decision::Reply(Reply::EndTxn(ProducerIdReply::ok(
            meta.producer_id,
            meta.producer_epoch,
        )))
    } else {
        refuse(error)
    }
}

/// DescribeTransactions for one id.
pub(crate) fn describe(transactional_id: &str, meta: Option<&TxnMetadata>) -> TxnDescription {
    let Some(meta) = meta.filter(|m| m.state != TxnState::Dead) else {
        return TxnDescription::error(transactional_id, ErrorCode::TransactionalIdNotFound);
    };
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in &meta.partitions {
        topics.entry(&tp.topic).or_default().push(tp.partition);
    }
    TxnDescription {
        error: ErrorCode::None,
        transactional_id: transactional_id.to_string(),
        state: meta.state.name().to_string(),
        timeout_ms: meta.timeout_ms,
        start_ms: meta.start_ms,
        producer_id: meta.producer_id,
        producer_epoch: meta.producer_epoch,
        topics: topics
            .into_iter()
            .map(|(t, p)| (t.to_string(), p))
            .collect(),
    }
}

/// ListTransactions over the given ids (every loaded partition's).
pub(crate) fn list<'a>(
    r: &ListRequest,
    txns: impl Iterator<Item = &'a TxnMetadata>,
    now_ms: i64,
) -> ListResponse {
    let mut states = Vec::new();
    let mut unknown_state_filters = Vec::new();
    for name in &r.states {
        match TxnState::from_name(name) {
            Some(s) => states.push(s),
            None => unknown_state_filters.push(name.clone()),
        }
    }
    let included = |m: &TxnMetadata| {
        m.state != TxnState::Dead
            && (r.producer_ids.is_empty() || r.producer_ids.contains(&m.producer_id))
            && (r.states.is_empty() || states.contains(&m.state))
            && !(r.duration_filter_ms >= 0
                && now_ms.saturating_sub(m.start_ms) <= r.duration_filter_ms)
    };
    let mut transactions: Vec<ListedTxn> = txns
        .filter(|m| included(m))
        .map(|m| ListedTxn {
            transactional_id: m.transactional_id.clone(),
            producer_id: m.producer_id,
            state: m.state.name(),
        })
        .collect();
    transactions.sort();
    ListResponse {
        error: ErrorCode::None,
        unknown_state_filters,
        transactions,
    }
}

/// The partition AddOffsetsToTxn adds for `group`.
pub(crate) fn offsets_partition(config: &TxnConfig, group: &str) -> TopicPartition {
    TopicPartition::new(
        OFFSETS_TOPIC,
        (config.offsets_partition_for)(group, config.offsets_partitions),
    )
}

#[cfg(test)]
#[path = "ops_tests.rs"]
mod tests;
