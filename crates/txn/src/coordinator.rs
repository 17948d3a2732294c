//! The transaction coordinator: every transactional id of the
//! `__transaction_state` partitions it leads, as a synchronous state
//! machine. [`Coordinator::handle`] takes an [`Event`] with the time and a
//! producer id source, changes state, and returns the [`Effect`]s the
//! shell must perform. It does no I/O and reads no clock.
//!
//! One transactional id has at most one record in flight (its pending
//! state), so appends need no ordering among themselves: each completes
//! its own transition.

mod markers;
mod partitions;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use ringbroker_protocol::errors::ErrorCode;

use crate::config::{TxnConfig, TOPIC_NAME_BYTES_MAX, TRANSACTIONAL_ID_BYTES_MAX};
use crate::effects::{Effect, Event, ProducerIdSource, TxnMarker};
use crate::metadata::{Transit, TxnMetadata};
use crate::ops::{self, Decision, Then};
use crate::records::{self, partition_for};
use crate::types::{
    append_error, AddPartitionsRequest, AppendId, ListRequest, ListResponse, MarkerId,
    ProducerIdReply, Reply, Request, RequestId, TopicPartition, TxnPartition,
};

/// Where a `__transaction_state` partition stands on this coordinator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartitionStatus {
    /// Records are being replayed.
    Loading,
    /// Its transactional ids are served.
    Loaded,
    /// Its log could not be read.
    Failed(String),
}

/// A transaction whose markers are being written: the Complete record to
/// write once every partition has its marker.
#[derive(Debug)]
struct Completing {
    transit: Transit,
    marker: TxnMarker,
}

#[derive(Debug)]
struct Slot {
    status: PartitionStatus,
    /// Distinguishes successive loads of the partition, so outcomes of
    /// work started before an unload do not touch a later load.
    generation: u64,
    /// The partition's leader epoch, which markers carry.
    coordinator_epoch: i32,
    txns: BTreeMap<String, TxnMetadata>,
    completing: BTreeMap<String, Completing>,
}

/// What an append stands for.
#[derive(Debug)]
enum Purpose {
    /// One transactional id's transition.
    Transition {
        transactional_id: String,
        transit: Transit,
        then: Then,
    },
    /// Tombstones of expired ids, with the epoch each had.
    Expire { ids: Vec<(String, i16)> },
}

#[derive(Debug)]
struct PendingAppend {
    partition: TxnPartition,
    generation: u64,
    purpose: Purpose,
}

/// One WriteTxnMarkers round in flight.
#[derive(Debug)]
struct MarkerJob {
    partition: TxnPartition,
    generation: u64,
    transactional_id: String,
    /// Partitions not reported yet.
    outstanding: BTreeSet<TopicPartition>,
}

/// A Complete record to append again once the log is available.
#[derive(Debug)]
struct Retry {
    due_ms: i64,
    partition: TxnPartition,
    generation: u64,
    transactional_id: String,
    transit: Transit,
}

/// The transaction coordinator state machine.
#[derive(Debug)]
pub struct Coordinator {
    config: TxnConfig,
    partitions: BTreeMap<TxnPartition, Slot>,
    appends: HashMap<AppendId, PendingAppend>,
    markers: HashMap<MarkerId, MarkerJob>,
    retries: Vec<Retry>,
    next_append: u64,
    next_marker: u64,
    next_generation: u64,
    next_abort_check_ms: Option<i64>,
    next_expiry_check_ms: Option<i64>,
    /// The deadline the shell was last asked to deliver a Timer at.
    armed_at: Option<i64>,
}

impl Coordinator {
    /// A coordinator leading no partition yet.
    pub fn new(config: TxnConfig) -> Result<Coordinator, String> {
        config.validate()?;
        Ok(Coordinator {
            config,
            partitions: BTreeMap::new(),
            appends: HashMap::new(),
            markers: HashMap::new(),
            retries: Vec::new(),
            next_append: 0,
            next_marker: 0,
            next_generation: 0,
            next_abort_check_ms: None,
            next_expiry_check_ms: None,
            armed_at: None,
        })
    }

    /// The settings.
    pub fn config(&self) -> &TxnConfig {
        &self.config
    }

    /// The `__transaction_state` partition of a transactional id.
    pub fn partition_of(&self, transactional_id: &str) -> TxnPartition {
        TxnPartition(partition_for(
            transactional_id,
            self.config.state_partitions,
        ))
    }

    /// The partitions this coordinator knows, with their status.
    pub fn partitions(&self) -> Vec<(TxnPartition, PartitionStatus)> {
        self.partitions
            .iter()
            .map(|(p, slot)| (*p, slot.status.clone()))
            .collect()
    }

    /// A transactional id's metadata, if its partition is loaded.
    pub fn metadata(&self, transactional_id: &str) -> Option<&TxnMetadata> {
        self.partitions
            .get(&self.partition_of(transactional_id))
            .filter(|slot| slot.status == PartitionStatus::Loaded)
            .and_then(|slot| slot.txns.get(transactional_id))
    }

    /// Appends asked for and not completed yet.
    pub fn appends_in_flight(&self) -> usize {
        self.appends.len()
    }

    /// Marker rounds asked for and not fully reported yet.
    pub fn markers_in_flight(&self) -> usize {
        self.markers.len()
    }

    /// Takes one event at `now_ms` and returns what the shell must do.
    /// `ids` is asked for a producer id only when one is needed.
    pub fn handle(
        &mut self,
        now_ms: i64,
        event: Event,
        ids: &mut dyn ProducerIdSource,
    ) -> Vec<Effect> {
        let mut out = Vec::new();
        match event {
            Event::Request { id, request } => self.request(now_ms, id, request, ids, &mut out),
            Event::Timer => {
                self.armed_at = None;
                self.timer(now_ms, &mut out);
            }
            Event::LoadStarted {
                partition,
                coordinator_epoch,
            } => self.load_started(partition, coordinator_epoch, &mut out),
            Event::Replay { partition, entries } => self.replay(partition, entries),
            Event::LoadCompleted { partition } => self.load_completed(partition, now_ms, &mut out),
            Event::LoadFailed { partition, reason } => {
                self.load_failed(partition, reason, &mut out)
            }
            Event::Unload { partition } => self.unload(partition, &mut out),
            Event::AppendCompleted { id, result } => {
                self.append_completed(id, result, now_ms, &mut out)
            }
            Event::MarkersWritten { id, results } => {
                self.markers_written(id, results, now_ms, &mut out)
            }
        }
        self.arm_timer(&mut out);
        out
    }

    fn arm_timer(&mut self, out: &mut Vec<Effect>) {
        let earliest = [self.next_abort_check_ms, self.next_expiry_check_ms]
            .into_iter()
            .flatten()
            .chain(self.retries.iter().map(|r| r.due_ms))
            .min();
        if let Some(earliest) = earliest {
            if self.armed_at.is_none_or(|armed| earliest < armed) {
                self.armed_at = Some(earliest);
                out.push(Effect::ArmTimer { at_ms: earliest });
            }
        }
    }

    /// Refusals Kafka gives before looking the id up.
    fn precheck(&self, request: &Request) -> Option<ErrorCode> {
        if let Some(id) = request.transactional_id() {
            if id.is_empty() || id.len() > TRANSACTIONAL_ID_BYTES_MAX {
                return Some(ErrorCode::InvalidRequest);
            }
        }
        match request {
            Request::InitProducerId(r) if !self.config.timeout_valid(r.transaction_timeout_ms) => {
                Some(ErrorCode::InvalidTransactionTimeout)
            }
            Request::InitProducerId(r)
                if r.expected.is_some_and(|e| e.producer_id < 0 || e.epoch < 0) =>
            {
                Some(ErrorCode::InvalidRequest)
            }
            Request::AddPartitions(r) | Request::VerifyPartitions(r)
                if r.partitions
                    .iter()
                    .any(|p| p.topic.len() > TOPIC_NAME_BYTES_MAX) =>
            {
                Some(ErrorCode::InvalidRequest)
            }
            _ => None,
        }
    }

    fn request(
        &mut self,
        now_ms: i64,
        id: RequestId,
        request: Request,
        ids: &mut dyn ProducerIdSource,
        out: &mut Vec<Effect>,
    ) {
        if let Some(error) = self.precheck(&request) {
            out.push(reply(id, request.error_reply(error)));
            return;
        }
        let Some(transactional_id) = request.transactional_id().map(str::to_string) else {
            let Request::List(r) = &request else {
                unreachable!("only ListTransactions names no id")
            };
            out.push(reply(id, Reply::List(self.list(r, now_ms))));
            return;
        };
        let partition = self.partition_of(&transactional_id);
        let refusal = match self.partitions.get(&partition).map(|s| &s.status) {
            None => Some(ErrorCode::NotCoordinator),
            Some(PartitionStatus::Loading) => Some(ErrorCode::CoordinatorLoadInProgress),
            Some(PartitionStatus::Failed(_)) => Some(ErrorCode::CoordinatorNotAvailable),
            Some(PartitionStatus::Loaded) => None,
        };
        if let Some(error) = refusal {
            out.push(reply(id, request.error_reply(error)));
            return;
        }
        let config = &self.config;
        let slot = self.partitions.get_mut(&partition).expect("loaded");
        let decision = match &request {
            Request::InitProducerId(r) => {
                if !slot.txns.contains_key(&transactional_id) {
                    match ids.next_producer_id() {
                        Ok(producer_id) => {
                            let meta = TxnMetadata::new(
                                &transactional_id,
                                producer_id,
                                r.transaction_timeout_ms,
                                now_ms,
                            );
                            slot.txns.insert(transactional_id.clone(), meta);
                        }
                        Err(e) => {
                            out.push(reply(id, request.error_reply(e)));
                            return;
                        }
                    }
                }
                let meta = slot.txns.get_mut(&transactional_id).expect("present");
                ops::init_producer_id(meta, id, r, now_ms, ids)
            }
            Request::AddPartitions(r) => {
                let meta = slot.txns.get_mut(&transactional_id);
                ops::add_partitions(meta, id, r, false, config, now_ms)
            }
            Request::AddOffsets(r) => {
                let add = AddPartitionsRequest {
                    transactional_id: r.transactional_id.clone(),
                    producer_id: r.producer_id,
                    producer_epoch: r.producer_epoch,
                    partitions: vec![ops::offsets_partition(config, &r.group_id)],
                };
                let meta = slot.txns.get_mut(&transactional_id);
                ops::add_partitions(meta, id, &add, true, config, now_ms)
            }
            Request::VerifyPartitions(r) => {
                Decision::Reply(ops::verify_partitions(slot.txns.get(&transactional_id), r))
            }
            Request::EndTxn(r) => {
                let meta = slot.txns.get_mut(&transactional_id);
                ops::end_txn(meta, id, r, now_ms)
            }
            Request::Describe { .. } => Decision::Reply(Reply::Describe(ops::describe(
                &transactional_id,
                slot.txns.get(&transactional_id),
            ))),
            Request::List(_) => unreachable!("answered above"),
        };
        match decision {
            Decision::Reply(r) => out.push(reply(id, r)),
            Decision::Append(transit, then) => {
                self.append_transition(partition, &transactional_id, transit, then, out)
            }
        }
    }

    fn list(&self, r: &ListRequest, now_ms: i64) -> ListResponse {
        let statuses: Vec<&PartitionStatus> = self.partitions.values().map(|s| &s.status).collect();
        let error = if statuses.contains(&&PartitionStatus::Loading) {
            ErrorCode::CoordinatorLoadInProgress
        } else if statuses
            .iter()
            .any(|s| matches!(s, PartitionStatus::Failed(_)))
        {
            ErrorCode::CoordinatorNotAvailable
        } else {
            ErrorCode::None
        };
        if error != ErrorCode::None {
            return ListResponse {
                error,
                unknown_state_filters: Vec::new(),
                transactions: Vec::new(),
            };
        }
        let txns = self.partitions.values().flat_map(|s| s.txns.values());
        ops::list(r, txns, now_ms)
    }

    /// Asks for `records` to be appended to `partition` for `purpose`.
    fn append(
        &mut self,
        partition: TxnPartition,
        records: Vec<(Bytes, Option<Bytes>)>,
        purpose: Purpose,
        out: &mut Vec<Effect>,
    ) {
        assert!(!records.is_empty(), "an append carries records");
        let generation = self.partitions.get(&partition).expect("loaded").generation;
        self.next_append += 1;
        let id = AppendId(self.next_append);
        self.appends.insert(
            id,
            PendingAppend {
                partition,
                generation,
                purpose,
            },
        );
        out.push(Effect::Append {
            id,
            partition,
            records,
        });
    }

    /// Asks for the record of one id's transition.
    fn append_transition(
        &mut self,
        partition: TxnPartition,
        transactional_id: &str,
        transit: Transit,
        then: Then,
        out: &mut Vec<Effect>,
    ) {
        let record = (
            records::key(transactional_id),
            Some(records::value(
                &transit.to_value(),
                self.config.value_version,
            )),
        );
        let purpose = Purpose::Transition {
            transactional_id: transactional_id.to_string(),
            transit,
            then,
        };
        self.append(partition, vec![record], purpose, out);
    }

    fn append_completed(
        &mut self,
        id: AppendId,
        result: Result<(), ErrorCode>,
        now_ms: i64,
        out: &mut Vec<Effect>,
    ) {
        let Some(pending) = self.appends.remove(&id) else {
            // Answered when its partition was unloaded, or never asked for.
            log::debug!("completion of unknown append {}", id.0);
            return;
        };
        let live = self.partitions.get(&pending.partition).is_some_and(|s| {
            s.generation == pending.generation && s.status == PartitionStatus::Loaded
        });
        assert!(live, "appends of an unloaded partition are dropped with it");
        match pending.purpose {
            Purpose::Transition {
                transactional_id,
                transit,
                then,
            } => self.transition_completed(
                pending.partition,
                &transactional_id,
                transit,
                then,
                result,
                now_ms,
                out,
            ),
            Purpose::Expire { ids } => self.expiry_completed(pending.partition, ids, result),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn transition_completed(
        &mut self,
        partition: TxnPartition,
        transactional_id: &str,
        transit: Transit,
        then: Then,
        result: Result<(), ErrorCode>,
        now_ms: i64,
        out: &mut Vec<Effect>,
    ) {
        let slot = self.partitions.get_mut(&partition).expect("live");
        let meta = slot
            .txns
            .get_mut(transactional_id)
            .expect("an id with a pending transition stays");
        if let Err(log_error) = result {
            let error = append_error(log_error);
            log::info!(
                "{transactional_id}: writing {} failed ({log_error:?}); answering {error:?}",
                transit.state
            );
            if then == Then::Completed && error == ErrorCode::CoordinatorNotAvailable {
                // The markers are written: keep the pending state and
                // append again after the backoff.
                self.retries.push(Retry {
                    due_ms: now_ms.saturating_add(self.config.retry_backoff_ms),
                    partition,
                    generation: slot.generation,
                    transactional_id: transactional_id.to_string(),
                    transit,
                });
                return;
            }
            meta.abort_transition();
            if matches!(then, Then::Markers { fence: true, .. }) {
                meta.has_failed_epoch_fence = true;
            }
            if let Some((id, r)) = then.failed_reply(error) {
                out.push(reply(id, r));
            }
            return;
        }
        meta.complete_transition(transit);
        match then {
            Then::InitProducerId(id) => {
                log::info!(
                    "{transactional_id}: producer id {} epoch {}",
                    meta.producer_id,
                    meta.producer_epoch
                );
                let r = ProducerIdReply::ok(meta.producer_id, meta.producer_epoch);
                out.push(reply(id, Reply::InitProducerId(r)));
            }
            Then::Added { id, offsets } => out.push(reply(
                id,
                if offsets {
                    Reply::AddOffsets(ErrorCode::None)
                } else {
                    Reply::AddPartitions(ErrorCode::None)
                },
            )),
            Then::Markers { origin, .. } => {
                self.prepared(partition, transactional_id, origin, now_ms, out)
            }
            Then::Completed => {
                log::debug!("{transactional_id}: {}", meta.state);
            }
        }
    }
}

fn reply(id: RequestId, reply: Reply) -> Effect {
    Effect::Reply { id, reply }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_end;
#[cfg(test)]
mod tests_lifecycle;
