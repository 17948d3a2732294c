//! ringbroker: a Kafka-compatible, thread-per-core streaming broker.
//!
//! Layout: `protocol` (framing, record batches, hand-framed fetch response),
//! `storage` (segments, indexes, partition logs, recovery, retention),
//! `server` (listener, connections, dispatch, one handler per Kafka API),
//! `config` (Kafka property names), `limits` (every named bound).

pub mod alloc;
pub mod config;
pub mod groups;
pub mod limits;
pub mod protocol;
pub mod server;
pub mod storage;

/// Unit tests run with the broker's allocator too (see [`alloc`]).
#[cfg(test)]
#[global_allocator]
static TEST_ALLOCATOR: alloc::BrokerAllocator = alloc::BrokerAllocator;
