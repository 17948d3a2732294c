//! ringbroker's transaction coordinator (Kafka's exactly-once protocol,
//! transaction version 1) as a synchronous state machine, and the
//! `__transaction_state` record formats.
//!
//! [`Coordinator::handle`] takes an [`Event`] (a transaction API request,
//! a timer, the load or unload of a `__transaction_state` partition, the
//! outcome of an append or of transaction markers) with the time and a
//! [`ProducerIdSource`], and returns [`Effect`]s: records to append, replies
//! (some only once an append is durable), WriteTxnMarkers to send, and the
//! next deadline. It performs no I/O and reads no clock; the server's shell
//! does both.
//!
//! Depends on `ringbroker-protocol` only; the server depends on it.

pub mod config;
pub mod coordinator;
pub mod effects;
pub mod loading;
pub mod metadata;
mod ops;
pub mod records;
pub mod state;
pub mod types;

#[cfg(test)]
mod harness;

pub use config::TxnConfig;
pub use coordinator::{Coordinator, PartitionStatus};
pub use effects::{
    marker_failure, Effect, Event, MarkerFailure, MarkerOutcome, ProducerIdSource, TxnMarker,
};
pub use metadata::TxnMetadata;
pub use ops::OFFSETS_TOPIC;
pub use records::{java_hash, partition_for};
pub use state::TxnState;
pub use types::*;
