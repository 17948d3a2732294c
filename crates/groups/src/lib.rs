//! ringbroker's group coordinator (Kafka's classic group protocol) as a
//! synchronous state machine, and the `__consumer_offsets` record formats.
//!
//! [`Coordinator::handle`] takes an [`Event`] (a group API request, a
//! timer, the load or unload of an offsets partition, the outcome of an
//! append) with the time, and returns [`Effect`]s: records to append to an
//! offsets partition, replies (some only once an append is durable or a
//! rebalance has completed), and the next deadline. It performs no I/O and
//! reads no clock; the server's shell does both.
//!
//! Depends on `ringbroker-protocol` only; the server depends on it.

pub mod config;
pub mod coordinator;
pub mod effects;
pub mod group;
pub mod loading;
mod membership;
mod offsets;
pub mod records;
pub mod timers;
pub mod types;

#[cfg(test)]
mod harness;

pub use config::CoordinatorConfig;
pub use coordinator::{Coordinator, PartitionStatus};
pub use effects::{Effect, Event};
pub use records::{java_hash, partition_for};
pub use types::*;
