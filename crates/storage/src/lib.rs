//! Kafka-layout storage: `<data-dir>/<topic>-<partition>/` with `.log`
//! segments, sparse `.index` and `.timeindex` files.
//!
//! Nouns: [`segment::Segment`] (one file), [`log::PartitionLog`] (a
//! partition's segments and offsets), [`partition::Partition`] (a log plus
//! its wake-ups, owned by one shard), [`flusher::Flusher`] (the shard's
//! write-behind and group commit), [`writer::SegmentWriter`] (buffered or
//! O_DIRECT appends), [`disk::Disk`] (the seam every write, sync and cut
//! goes through), [`read`] (locating fetch reads off the shard thread),
//! [`error::StorageError`] (the one error type), `index`, `recovery`,
//! `producer`; `fault` (feature `faults`) injects disk faults in tests.
//!
//! Depends on `ringbroker-protocol` only (batch validation, limits).

pub mod checkpoint;
pub mod disk;
pub mod epoch;
pub mod error;
#[cfg(any(test, feature = "faults"))]
pub mod fault;
pub mod flusher;
pub mod index;
pub mod log;
pub mod partition;
pub mod producer;
pub mod read;
pub mod recovery;
pub mod segment;
#[cfg(test)]
mod simulation;
pub mod txn;
pub mod writer;

pub use error::{Result, StorageError};
