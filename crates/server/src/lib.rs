//! The broker itself: configuration (Kafka property names), the listener
//! and connections, the API registry and one handler per Kafka API, the
//! shard state and cross-shard routing, the topic catalog and metadata
//! changes, and the runtime that starts and stops shards.
//!
//! Depends on `ringbroker-protocol`, `ringbroker-storage`,
//! `ringbroker-groups` and `ringbroker-shards`; nothing depends on it but
//! the `ringbroker` binary.

pub mod acl;
pub mod admin;
pub mod catalog;
pub mod cluster;
pub mod config;
pub mod config_resources;
pub mod connection;
pub mod coordinator;
pub mod dispatch;
pub mod group_config;
pub mod handlers;
pub mod log_starts;
pub mod messages;
pub mod peer;
pub mod replica_fetcher;
pub mod runtime;
pub mod shard;
pub mod storage_error;
pub mod txn_coordinator;

/// Unit tests run with the broker's allocator too (see
/// [`ringbroker_protocol::alloc`]).
#[cfg(test)]
#[global_allocator]
static TEST_ALLOCATOR: ringbroker_protocol::alloc::BrokerAllocator =
    ringbroker_protocol::alloc::BrokerAllocator;
