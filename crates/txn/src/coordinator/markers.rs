//! Completing a transaction: once its Prepare record is durable, COMMIT
//! or ABORT markers go to every partition in it (WriteTxnMarkers, with
//! the coordinator epoch), partitions leave the transaction as their
//! markers are written, and when none is left the Complete record is
//! written. Meanwhile the id's pending state is CompleteCommit or
//! CompleteAbort, so its producer gets CONCURRENT_TRANSACTIONS.

use ringbroker_protocol::errors::ErrorCode;

use super::{reply, Completing, Coordinator, MarkerJob, PartitionStatus};
use crate::effects::{marker_failure, Effect, MarkerFailure, MarkerOutcome, TxnMarker};
use crate::ops::{EndOrigin, Then};
use crate::state::TxnState;
use crate::types::{MarkerId, ProducerIdReply, Reply, TopicPartition, TxnPartition, TxnResult};

impl Coordinator {
    /// A Prepare record is durable: answer whoever waits, then write the
    /// markers.
    pub(super) fn prepared(
        &mut self,
        partition: TxnPartition,
        transactional_id: &str,
        origin: EndOrigin,
        now_ms: i64,
        out: &mut Vec<Effect>,
    ) {
        let meta = &self.partitions[&partition].txns[transactional_id];
        match origin {
            EndOrigin::Client(id) => {
                let r = ProducerIdReply::ok(meta.producer_id, meta.producer_epoch);
                out.push(reply(id, Reply::EndTxn(r)));
            }
            EndOrigin::Fence(id) => {
                log::info!(
                    "{transactional_id}: open transaction aborted with epoch {} for a new producer",
                    meta.producer_epoch
                );
                let r = ProducerIdReply::error(ErrorCode::ConcurrentTransactions);
                out.push(reply(id, Reply::InitProducerId(r)));
            }
            EndOrigin::Timeout => {}
        }
        self.start_completion(partition, transactional_id, now_ms, out);
    }

    /// Marks a prepared transaction as completing and sends its markers
    /// (or writes its Complete record at once when it has no partition).
    pub(super) fn start_completion(
        &mut self,
        partition: TxnPartition,
        transactional_id: &str,
        now_ms: i64,
        out: &mut Vec<Effect>,
    ) {
        let slot = self.partitions.get_mut(&partition).expect("loaded");
        let meta = slot.txns.get_mut(transactional_id).expect("present");
        let result = match meta.state {
            TxnState::PrepareCommit => TxnResult::Commit,
            TxnState::PrepareAbort => TxnResult::Abort,
            other => panic!("{transactional_id}: markers in state {other}"),
        };
        let marker = TxnMarker {
            producer_id: meta.producer_id,
            producer_epoch: meta.producer_epoch,
            coordinator_epoch: slot.coordinator_epoch,
            result,
            partitions: Vec::new(),
        };
        let transit = meta.prepare_complete(now_ms);
        let partitions: Vec<TopicPartition> = meta.partitions.iter().cloned().collect();
        slot.completing
            .insert(transactional_id.to_string(), Completing { transit, marker });
        if partitions.is_empty() {
            self.write_completion(partition, transactional_id, out);
        } else {
            self.send_markers(partition, transactional_id, partitions, now_ms, out);
        }
    }

    fn send_markers(
        &mut self,
        partition: TxnPartition,
        transactional_id: &str,
        partitions: Vec<TopicPartition>,
        not_before_ms: i64,
        out: &mut Vec<Effect>,
    ) {
        let slot = &self.partitions[&partition];
        let completing = &slot.completing[transactional_id];
        self.next_marker += 1;
        let id = MarkerId(self.next_marker);
        let marker = TxnMarker {
            partitions: partitions.clone(),
            ..completing.marker.clone()
        };
        self.markers.insert(
            id,
            MarkerJob {
                partition,
                generation: slot.generation,
                transactional_id: transactional_id.to_string(),
                outstanding: partitions.into_iter().collect(),
            },
        );
        out.push(Effect::SendMarkers {
            id,
            transactional_id: transactional_id.to_string(),
            marker,
            not_before_ms,
        });
    }

    pub(super) fn markers_written(
        &mut self,
        id: MarkerId,
        results: Vec<(TopicPartition, MarkerOutcome)>,
        now_ms: i64,
        out: &mut Vec<Effect>,
    ) {
        let Some(job) = self.markers.get_mut(&id) else {
            // Abandoned, or its partition was unloaded.
            log::debug!("outcome of unknown markers {}", id.0);
            return;
        };
        let partition = job.partition;
        let transactional_id = job.transactional_id.clone();
        let slot = self
            .partitions
            .get_mut(&partition)
            .expect("jobs go with their partition");
        assert!(slot.generation == job.generation && slot.status == PartitionStatus::Loaded);
        let meta = slot
            .txns
            .get_mut(&transactional_id)
            .expect("completing ids stay");
        assert!(
            matches!(
                meta.pending,
                Some(TxnState::CompleteCommit | TxnState::CompleteAbort)
            ),
            "{transactional_id}: markers while {:?} is pending",
            meta.pending
        );
        let mut retry = Vec::new();
        let mut abandon = None;
        for (tp, outcome) in results {
            if !job.outstanding.remove(&tp) {
                log::warn!(
                    "{transactional_id}: marker outcome for {}-{} which markers {} do not wait for",
                    tp.topic,
                    tp.partition,
                    id.0
                );
                continue;
            }
            let failure = match outcome {
                MarkerOutcome::Written | MarkerOutcome::PartitionDeleted => MarkerFailure::Skip,
                MarkerOutcome::Failed(e) => {
                    let failure = marker_failure(e);
                    if failure != MarkerFailure::Skip {
                        log::info!(
                            "{transactional_id}: marker for {}-{} failed with {e:?}: {failure:?}",
                            tp.topic,
                            tp.partition
                        );
                    }
                    if failure == MarkerFailure::Abandon {
                        abandon = Some(e);
                    }
                    failure
                }
            };
            match failure {
                MarkerFailure::Skip => {
                    meta.partitions.remove(&tp);
                }
                MarkerFailure::Retry => retry.push(tp),
                MarkerFailure::Abandon => {}
            }
        }
        if job.outstanding.is_empty() {
            self.markers.remove(&id);
        }
        if let Some(error) = abandon {
            // Kafka's behaviour: the transaction stays prepared with its
            // completion pending until the partition is loaded again, by
            // the coordinator that fenced this one.
            log::warn!(
                "{transactional_id}: stopped writing markers ({error:?}); the next coordinator completes the transaction"
            );
            self.markers.retain(|_, j| {
                !(j.partition == partition && j.transactional_id == transactional_id)
            });
            slot.completing.remove(&transactional_id);
            return;
        }
        let done = meta.partitions.is_empty();
        if !retry.is_empty() {
            let at = now_ms.saturating_add(self.config.retry_backoff_ms);
            self.send_markers(partition, &transactional_id, retry, at, out);
        } else if done {
            self.write_completion(partition, &transactional_id, out);
        }
    }

    /// Every marker is written: append the Complete record.
    fn write_completion(
        &mut self,
        partition: TxnPartition,
        transactional_id: &str,
        out: &mut Vec<Effect>,
    ) {
        let slot = self.partitions.get_mut(&partition).expect("loaded");
        let completing = slot
            .completing
            .remove(transactional_id)
            .expect("a completing transaction");
        assert!(slot.txns[transactional_id].partitions.is_empty());
        self.append_transition(
            partition,
            transactional_id,
            completing.transit,
            Then::Completed,
            out,
        );
    }

    /// Complete records whose append found the log unavailable are
    /// appended again once their backoff has passed.
    pub(super) fn retry_completions(&mut self, now_ms: i64, out: &mut Vec<Effect>) {
        let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.retries)
            .into_iter()
            .partition(|r| r.due_ms <= now_ms);
        self.retries = waiting;
        for r in due {
            let pending = self
                .partitions
                .get(&r.partition)
                .filter(|s| s.generation == r.generation)
                .and_then(|s| s.txns.get(&r.transactional_id))
                .and_then(|m| m.pending);
            assert_eq!(
                pending,
                Some(r.transit.state),
                "retries go with their partition"
            );
            self.append_transition(
                r.partition,
                &r.transactional_id,
                r.transit,
                Then::Completed,
                out,
            );
        }
    }
}
