//! Leading and losing `__transaction_state` partitions (load, replay,
//! unload), and the coordinator's periodic work: aborting transactions
//! past their timeout and expiring idle transactional ids.

use std::collections::BTreeMap;

use ringbroker_protocol::errors::ErrorCode;

use super::{reply, Coordinator, PartitionStatus, Purpose, Slot};
use crate::config::{TIMEOUT_ABORTS_PER_EVENT_MAX, TOMBSTONES_PER_APPEND_MAX};
use crate::effects::Effect;
use crate::loading;
use crate::ops::{EndOrigin, Then};
use crate::records::{self, partition_for, Entry};
use crate::state::TxnState;
use crate::types::TxnPartition;

impl Coordinator {
    pub(super) fn load_started(
        &mut self,
        partition: TxnPartition,
        coordinator_epoch: i32,
        out: &mut Vec<Effect>,
    ) {
        self.replace_slot(partition, PartitionStatus::Loading, coordinator_epoch, out);
    }

    pub(super) fn load_failed(
        &mut self,
        partition: TxnPartition,
        reason: String,
        out: &mut Vec<Effect>,
    ) {
        log::error!(
            "__transaction_state partition {} cannot be loaded: {reason}; its transactional ids are unavailable",
            partition.0
        );
        let epoch = self
            .partitions
            .get(&partition)
            .map_or(-1, |s| s.coordinator_epoch);
        self.replace_slot(partition, PartitionStatus::Failed(reason), epoch, out);
    }

    fn replace_slot(
        &mut self,
        partition: TxnPartition,
        status: PartitionStatus,
        coordinator_epoch: i32,
        out: &mut Vec<Effect>,
    ) {
        if self.partitions.contains_key(&partition) {
            self.unload(partition, out);
        }
        self.next_generation += 1;
        self.partitions.insert(
            partition,
            Slot {
                status,
                generation: self.next_generation,
                coordinator_epoch,
                txns: BTreeMap::new(),
                completing: BTreeMap::new(),
            },
        );
    }

    pub(super) fn replay(&mut self, partition: TxnPartition, entries: Vec<Entry>) {
        let count = self.config.state_partitions;
        let Some(slot) = self
            .partitions
            .get_mut(&partition)
            .filter(|s| s.status == PartitionStatus::Loading)
        else {
            log::warn!(
                "replay into __transaction_state partition {} which is not loading",
                partition.0
            );
            return;
        };
        let mut misplaced = 0usize;
        for entry in entries {
            if partition_for(&entry.transactional_id, count) != partition.0 {
                misplaced += 1;
                continue;
            }
            loading::replay(&mut slot.txns, entry);
        }
        if misplaced > 0 {
            log::warn!(
                "__transaction_state partition {}: skipped {misplaced} record(s) of ids placed in other partitions (transaction.state.log.num.partitions changed?)",
                partition.0
            );
        }
    }

    /// Serves the partition; transactions found prepared get their
    /// markers (the previous coordinator may not have written them all).
    pub(super) fn load_completed(
        &mut self,
        partition: TxnPartition,
        now_ms: i64,
        out: &mut Vec<Effect>,
    ) {
        let Some(slot) = self
            .partitions
            .get_mut(&partition)
            .filter(|s| s.status == PartitionStatus::Loading)
        else {
            log::warn!(
                "__transaction_state partition {} completed a load it did not start",
                partition.0
            );
            return;
        };
        slot.status = PartitionStatus::Loaded;
        let prepared: Vec<String> = slot
            .txns
            .values()
            .filter(|m| matches!(m.state, TxnState::PrepareCommit | TxnState::PrepareAbort))
            .map(|m| m.transactional_id.clone())
            .collect();
        if !slot.txns.is_empty() {
            log::info!(
                "__transaction_state partition {} (coordinator epoch {}): loaded {} transactional id(s), {} to complete",
                partition.0,
                slot.coordinator_epoch,
                slot.txns.len(),
                prepared.len()
            );
        }
        for id in prepared {
            self.start_completion(partition, &id, now_ms, out);
        }
        if self.next_abort_check_ms.is_none() {
            self.next_abort_check_ms =
                Some(now_ms.saturating_add(self.config.abort_timed_out_interval_ms));
        }
        if self.next_expiry_check_ms.is_none() {
            self.next_expiry_check_ms =
                Some(now_ms.saturating_add(self.config.remove_expired_interval_ms));
        }
    }

    /// Forgets the partition: requests waiting for its appends are
    /// answered NOT_COORDINATOR now, and outcomes reported later are
    /// ignored.
    pub(super) fn unload(&mut self, partition: TxnPartition, out: &mut Vec<Effect>) {
        let Some(slot) = self.partitions.remove(&partition) else {
            return;
        };
        let mut waiting: Vec<_> = self
            .appends
            .iter()
            .filter(|(_, p)| p.partition == partition)
            .map(|(id, _)| *id)
            .collect();
        waiting.sort();
        for id in waiting {
            let pending = self.appends.remove(&id).expect("listed above");
            if let Purpose::Transition { then, .. } = pending.purpose {
                if let Some((request, r)) = then.failed_reply(ErrorCode::NotCoordinator) {
                    out.push(reply(request, r));
                }
            }
        }
        self.markers.retain(|_, job| job.partition != partition);
        self.retries.retain(|r| r.partition != partition);
        if !slot.txns.is_empty() {
            log::info!(
                "__transaction_state partition {}: unloaded {} transactional id(s)",
                partition.0,
                slot.txns.len()
            );
        }
    }

    pub(super) fn timer(&mut self, now_ms: i64, out: &mut Vec<Effect>) {
        if self.next_abort_check_ms.is_some_and(|at| at <= now_ms) {
            self.abort_timed_out(now_ms, out);
            self.next_abort_check_ms =
                Some(now_ms.saturating_add(self.config.abort_timed_out_interval_ms));
        }
        if self.next_expiry_check_ms.is_some_and(|at| at <= now_ms) {
            self.expire_ids(now_ms, out);
            self.next_expiry_check_ms =
                Some(now_ms.saturating_add(self.config.remove_expired_interval_ms));
        }
        self.retry_completions(now_ms, out);
    }

    /// Kafka's abortTimedOutTransactions: an Ongoing transaction older than
    /// its timeout is aborted with a bumped epoch, which fences its
    /// producer (the producer must InitProducerId again).
    fn abort_timed_out(&mut self, now_ms: i64, out: &mut Vec<Effect>) {
        let mut timed_out = Vec::new();
        for (partition, slot) in &self.partitions {
            if slot.status != PartitionStatus::Loaded {
                continue;
            }
            timed_out.extend(
                slot.txns
                    .values()
                    .filter(|m| {
                        m.pending.is_none()
                            && m.state == TxnState::Ongoing
                            && m.start_ms.saturating_add(i64::from(m.timeout_ms)) < now_ms
                    })
                    .map(|m| (*partition, m.transactional_id.clone())),
            );
        }
        if timed_out.len() > TIMEOUT_ABORTS_PER_EVENT_MAX {
            log::warn!(
                "{} transactions timed out; aborting {} now, the rest at the next check",
                timed_out.len(),
                TIMEOUT_ABORTS_PER_EVENT_MAX
            );
            timed_out.truncate(TIMEOUT_ABORTS_PER_EVENT_MAX);
        }
        for (partition, id) in timed_out {
            let slot = self.partitions.get_mut(&partition).expect("listed above");
            let meta = slot.txns.get_mut(&id).expect("listed above");
            log::info!(
                "{id}: transaction of producer id {} epoch {} timed out after {} ms; aborting it",
                meta.producer_id,
                meta.producer_epoch,
                meta.timeout_ms
            );
            let transit = meta.prepare_fence_and_abort(now_ms);
            let then = Then::Markers {
                origin: EndOrigin::Timeout,
                fence: true,
            };
            self.append_transition(partition, &id, transit, then, out);
        }
    }

    /// Kafka's removeExpiredTransactionalIds: ids without a transaction
    /// that have not changed for transactional.id.expiration.ms are
    /// deleted with tombstones, in batches per partition.
    fn expire_ids(&mut self, now_ms: i64, out: &mut Vec<Effect>) {
        let horizon = now_ms.saturating_sub(self.config.id_expiration_ms);
        let mut batches = Vec::new();
        for (partition, slot) in self.partitions.iter_mut() {
            if slot.status != PartitionStatus::Loaded {
                continue;
            }
            let mut expired = Vec::new();
            for meta in slot.txns.values_mut() {
                if meta.pending.is_none()
                    && meta.state.expiration_allowed()
                    && meta.last_update_ms <= horizon
                {
                    let _dead = meta.prepare_dead();
                    expired.push((meta.transactional_id.clone(), meta.producer_epoch));
                }
            }
            for chunk in expired.chunks(TOMBSTONES_PER_APPEND_MAX) {
                batches.push((*partition, chunk.to_vec()));
            }
        }
        for (partition, ids) in batches {
            log::info!(
                "__transaction_state partition {}: expiring {} transactional id(s)",
                partition.0,
                ids.len()
            );
            let records = ids.iter().map(|(id, _)| (records::key(id), None)).collect();
            self.append(partition, records, Purpose::Expire { ids }, out);
        }
    }

    /// The tombstones are durable (the ids go) or failed (they stay).
    pub(super) fn expiry_completed(
        &mut self,
        partition: TxnPartition,
        ids: Vec<(String, i16)>,
        result: Result<(), ErrorCode>,
    ) {
        let slot = self.partitions.get_mut(&partition).expect("live");
        if let Err(e) = result {
            log::warn!(
                "__transaction_state partition {}: tombstones of {} expired id(s) failed ({e:?}); they stay",
                partition.0,
                ids.len()
            );
        }
        for (id, epoch) in ids {
            let meta = slot.txns.get_mut(&id).expect("a Dead id stays until now");
            assert_eq!(meta.pending, Some(TxnState::Dead));
            assert_eq!(meta.producer_epoch, epoch, "nothing moves a Dead id");
            if result.is_ok() {
                slot.txns.remove(&id);
            } else {
                meta.abort_transition();
            }
        }
    }
}
