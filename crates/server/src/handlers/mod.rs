//! One module per Kafka API. Each handler takes its request decoded by
//! `dispatch::decode_request`, answers guard clauses with error codes,
//! makes one call into the shard, encodes.

pub mod alter_configs;
pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod elect_leaders;
pub mod fetch;
pub mod groups;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod list_offsets;
pub mod metadata;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod reassignments;
pub mod transactions;

use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;

/// A `StrBytes` from a `&str`.
pub fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// A `TopicName` from a `&str`.
pub fn topic_name(s: &str) -> TopicName {
    TopicName(str_bytes(s))
}
