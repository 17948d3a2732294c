//! The coordinator's settings (Kafka's `transaction.*` and
//! `transactional.id.*` broker configs) and its named bounds.

use crate::records::partition_for;

/// Largest transactional id, in bytes (the record key's string length is
/// an int16).
pub const TRANSACTIONAL_ID_BYTES_MAX: usize = i16::MAX as usize;
/// Largest topic name a transaction may name, in bytes (the record's
/// string length is an int16; Kafka's own topic names stop at 249).
pub const TOPIC_NAME_BYTES_MAX: usize = i16::MAX as usize;
/// Partitions one transaction may hold. Kafka has no such bound, but its
/// record must fit in one `__transaction_state` batch; past it the answer
/// is what Kafka gives when that record is too large (UNKNOWN_SERVER_ERROR).
pub const TRANSACTION_PARTITIONS_MAX: usize = 100_000;
/// Tombstones of expired transactional ids written in one append.
pub const TOMBSTONES_PER_APPEND_MAX: usize = 1_000;
/// Transactions one timer event aborts for timing out; the rest wait for
/// the next check.
pub const TIMEOUT_ABORTS_PER_EVENT_MAX: usize = 10_000;

/// Settings of a transaction coordinator.
#[derive(Clone, Debug)]
pub struct TxnConfig {
    /// transaction.state.log.num.partitions: a transactional id lives in
    /// partition `partition_for(id, this)`.
    pub state_partitions: i32,
    /// transaction.max.timeout.ms: InitProducerId with a larger timeout is
    /// refused with INVALID_TRANSACTION_TIMEOUT.
    pub max_timeout_ms: i32,
    /// transactional.id.expiration.ms: an id without a transaction and not
    /// updated for this long is deleted (a tombstone).
    pub id_expiration_ms: i64,
    /// transaction.abort.timed.out.transaction.cleanup.interval.ms: how
    /// often transactions past their timeout are looked for and aborted.
    pub abort_timed_out_interval_ms: i64,
    /// transaction.remove.expired.transaction.cleanup.interval.ms: how
    /// often expired transactional ids are looked for.
    pub remove_expired_interval_ms: i64,
    /// offsets.topic.num.partitions (AddOffsetsToTxn).
    pub offsets_partitions: i32,
    /// The `__consumer_offsets` partition of a group, given the group and
    /// `offsets_partitions`: it must be the group coordinator's own rule,
    /// since the markers of a transaction must reach the partition its
    /// TxnOffsetCommit records went to.
    pub offsets_partition_for: fn(&str, i32) -> i32,
    /// The `__transaction_state` value version written: 0 (Kafka's
    /// transaction.version 0) or 1 (transaction.version 1 and later, the
    /// flexible format with tagged fields). Both are always read.
    pub value_version: i16,
    /// How long a WriteTxnMarkers that failed with a retriable error waits
    /// before it is sent again, and a completion record whose append found
    /// the log unavailable before it is appended again.
    pub retry_backoff_ms: i64,
    /// See [`TRANSACTION_PARTITIONS_MAX`].
    pub transaction_partitions_max: usize,
}

impl Default for TxnConfig {
    /// Kafka's defaults.
    fn default() -> Self {
        TxnConfig {
            state_partitions: 50,
            max_timeout_ms: 900_000,
            id_expiration_ms: 7 * 24 * 60 * 60 * 1000,
            abort_timed_out_interval_ms: 10_000,
            remove_expired_interval_ms: 3_600_000,
            offsets_partitions: 50,
            offsets_partition_for: partition_for,
            value_version: 1,
            retry_backoff_ms: 100,
            transaction_partitions_max: TRANSACTION_PARTITIONS_MAX,
        }
    }
}

impl TxnConfig {
    /// Checks the settings; a coordinator is only built from a config that
    /// passes.
    pub fn validate(&self) -> Result<(), String> {
        if self.state_partitions < 1 {
            return Err(format!(
                "transaction.state.log.num.partitions must be at least 1, not {}",
                self.state_partitions
            ));
        }
        if self.offsets_partitions < 1 {
            return Err(format!(
                "offsets.topic.num.partitions must be at least 1, not {}",
                self.offsets_partitions
            ));
        }
        if self.max_timeout_ms < 1 {
            return Err(format!(
                "transaction.max.timeout.ms must be at least 1, not {}",
                self.max_timeout_ms
            ));
        }
        if self.id_expiration_ms < 1
            || self.abort_timed_out_interval_ms < 1
            || self.remove_expired_interval_ms < 1
            || self.retry_backoff_ms < 0
        {
            return Err("transaction coordinator intervals must be positive".to_string());
        }
        if !(0..=1).contains(&self.value_version) {
            return Err(format!(
                "__transaction_state value version must be 0 or 1, not {}",
                self.value_version
            ));
        }
        if self.transaction_partitions_max == 0 {
            return Err("transaction_partitions_max must be positive".to_string());
        }
        Ok(())
    }

    /// Whether InitProducerId may use `timeout_ms` (Kafka:
    /// `0 < timeout <= transaction.max.timeout.ms`).
    pub fn timeout_valid(&self, timeout_ms: i32) -> bool {
        timeout_ms > 0 && timeout_ms <= self.max_timeout_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_kafkas_and_valid() {
        let c = TxnConfig::default();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(
            (c.state_partitions, c.max_timeout_ms, c.id_expiration_ms),
            (50, 900_000, 604_800_000)
        );
        assert_eq!(
            (c.abort_timed_out_interval_ms, c.remove_expired_interval_ms),
            (10_000, 3_600_000)
        );
        assert!(c.timeout_valid(900_000));
        assert!(c.timeout_valid(1));
        assert!(!c.timeout_valid(900_001));
        assert!(!c.timeout_valid(0));
        assert!(!c.timeout_valid(-1));
    }

    #[test]
    fn bad_settings_are_refused() {
        let bad = [
            TxnConfig {
                state_partitions: 0,
                ..TxnConfig::default()
            },
            TxnConfig {
                offsets_partitions: 0,
                ..TxnConfig::default()
            },
            TxnConfig {
                max_timeout_ms: 0,
                ..TxnConfig::default()
            },
            TxnConfig {
                abort_timed_out_interval_ms: 0,
                ..TxnConfig::default()
            },
            TxnConfig {
                value_version: 2,
                ..TxnConfig::default()
            },
            TxnConfig {
                transaction_partitions_max: 0,
                ..TxnConfig::default()
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
    }
}
