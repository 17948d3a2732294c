//! The coordinator's settings (Kafka's `group.*` and `offsets.*` broker
//! configs) and its named bounds.

/// Largest offset metadata string (Kafka's offset.metadata.max.bytes).
pub const OFFSET_METADATA_MAX_BYTES: usize = 4096;
/// Largest protocol metadata a member may send in JoinGroup.
pub const PROTOCOL_METADATA_MAX_BYTES: usize = 1024 * 1024;
/// Protocols one JoinGroup may list (clients list one to three; the
/// bound keeps protocol selection cheap).
pub const PROTOCOLS_PER_MEMBER_MAX: usize = 64;
/// Members one group may have (Kafka's group.max.size, which is unbounded
/// by default there).
pub const GROUP_MEMBERS_MAX: usize = 10_000;
/// Member ids one group may have handed out with MEMBER_ID_REQUIRED and
/// not seen join yet (each expires after its session timeout).
pub const GROUP_PENDING_MEMBERS_MAX: usize = 10_000;
/// How long a new member may wait in its first JoinGroup before it is
/// dropped (Kafka's group.classic.new.member.join.timeout.ms): a client
/// that disconnected while waiting is not left in the group forever.
pub const NEW_MEMBER_JOIN_TIMEOUT_MS: i64 = 5 * 60 * 1000;
/// Timers one [`crate::Event::Timer`] handles at most; the rest are left
/// due and the shell is asked again at once.
pub const TIMERS_PER_EVENT_MAX: usize = 10_000;
/// Characters of a client or instance id kept in a generated member id.
pub const MEMBER_ID_PREFIX_CHARS_MAX: usize = 100;

/// Settings of a coordinator.
#[derive(Clone, Debug)]
pub struct CoordinatorConfig {
    /// Partitions of `__consumer_offsets` (offsets.topic.num.partitions):
    /// a group lives in partition `partition_for(group, this)`.
    pub offsets_partitions: i32,
    /// group.min.session.timeout.ms.
    pub session_timeout_min_ms: i32,
    /// group.max.session.timeout.ms.
    pub session_timeout_max_ms: i32,
    /// group.initial.rebalance.delay.ms: how long the first rebalance of
    /// an empty group waits for more members.
    pub initial_rebalance_delay_ms: i64,
    /// See [`NEW_MEMBER_JOIN_TIMEOUT_MS`].
    pub new_member_join_timeout_ms: i64,
    /// See [`GROUP_MEMBERS_MAX`].
    pub group_members_max: usize,
    /// See [`GROUP_PENDING_MEMBERS_MAX`].
    pub pending_members_max: usize,
    /// See [`OFFSET_METADATA_MAX_BYTES`].
    pub offset_metadata_max_bytes: usize,
    /// See [`PROTOCOL_METADATA_MAX_BYTES`].
    pub protocol_metadata_max_bytes: usize,
    /// offsets.retention.minutes, in ms.
    pub offsets_retention_ms: i64,
    /// offsets.retention.check.interval.ms.
    pub offsets_retention_check_interval_ms: i64,
}

impl Default for CoordinatorConfig {
    /// Kafka's defaults (and ringbroker's bounds).
    fn default() -> Self {
        CoordinatorConfig {
            offsets_partitions: 50,
            session_timeout_min_ms: 6_000,
            session_timeout_max_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            new_member_join_timeout_ms: NEW_MEMBER_JOIN_TIMEOUT_MS,
            group_members_max: GROUP_MEMBERS_MAX,
            pending_members_max: GROUP_PENDING_MEMBERS_MAX,
            offset_metadata_max_bytes: OFFSET_METADATA_MAX_BYTES,
            protocol_metadata_max_bytes: PROTOCOL_METADATA_MAX_BYTES,
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
            offsets_retention_check_interval_ms: 600_000,
        }
    }
}

impl CoordinatorConfig {
    /// Checks the relations between settings; a coordinator is only built
    /// from a config that passes.
    pub fn validate(&self) -> Result<(), String> {
        if self.offsets_partitions < 1 {
            return Err(format!(
                "offsets.topic.num.partitions must be at least 1, not {}",
                self.offsets_partitions
            ));
        }
        if self.session_timeout_min_ms < 1
            || self.session_timeout_min_ms > self.session_timeout_max_ms
        {
            return Err(format!(
                "group.min.session.timeout.ms ({}) must be at least 1 and at most group.max.session.timeout.ms ({})",
                self.session_timeout_min_ms, self.session_timeout_max_ms
            ));
        }
        if self.initial_rebalance_delay_ms < 0
            || self.new_member_join_timeout_ms < 1
            || self.offsets_retention_ms < 1
            || self.offsets_retention_check_interval_ms < 1
        {
            return Err("group timeouts must be positive".to_string());
        }
        if self.group_members_max == 0 || self.pending_members_max == 0 {
            return Err("group size bounds must be positive".to_string());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_relations_are_refused() {
        assert_eq!(CoordinatorConfig::default().validate(), Ok(()));
        let inverted = CoordinatorConfig {
            session_timeout_min_ms: 10_000,
            session_timeout_max_ms: 5_000,
            ..CoordinatorConfig::default()
        };
        assert!(inverted.validate().is_err());
        let no_partitions = CoordinatorConfig {
            offsets_partitions: 0,
            ..CoordinatorConfig::default()
        };
        assert!(no_partitions.validate().is_err());
    }
}
