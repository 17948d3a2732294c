//! ringbroker's wire level, below everything else: request framing and
//! response frames (with file ranges for zero-copy fetch), v2 record-batch
//! validation, bounded decoding of a batch's records, the hand-framed
//! Fetch response, the one Kafka error-code table, and every named bound
//! of the broker.
//!
//! Message codecs themselves come from the `kafka-protocol` crate.

pub mod alloc;
pub mod batch;
pub mod errors;
pub mod fetch_response;
pub mod frame;
pub mod limits;
pub mod records;

pub use errors::ErrorCode;

/// Unit tests run with the broker's allocator too (see [`alloc`]).
#[cfg(test)]
#[global_allocator]
static TEST_ALLOCATOR: alloc::BrokerAllocator = alloc::BrokerAllocator;
