//! Kafka-layout storage: `<data-dir>/<topic>-<partition>/` with `.log`
//! segments, sparse `.index` and `.timeindex` files.
//!
//! Nouns: [`segment::Segment`] (one file), [`log::PartitionLog`] (a
//! partition's segments and offsets), [`partition::Partition`] (a log plus
//! its wake-ups, owned by one shard), [`flusher::Flusher`] (the shard's
//! write-behind and group commit), [`writer::SegmentWriter`] (buffered or
//! O_DIRECT appends), `index`, `recovery`, `producer`.
//!
//! Depends on `ringbroker-protocol` only (batch validation, limits).

pub mod checkpoint;
pub mod epoch;
pub mod flusher;
pub mod index;
pub mod log;
pub mod partition;
pub mod producer;
pub mod recovery;
pub mod segment;
pub mod writer;
