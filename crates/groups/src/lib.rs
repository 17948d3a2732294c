//! The group coordinator's logic, free of I/O: the `__consumer_offsets`
//! record formats and group placement.
//!
//! Depends on `ringbroker-protocol` only.

pub mod records;

pub use records::{java_hash, partition_for};
