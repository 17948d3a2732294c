//! The network side: listener and connections, the API registry and one
//! handler per Kafka API, the shard state and cross-shard routing.

pub mod admin;
pub mod catalog;
pub mod connection;
pub mod dispatch;
pub mod errors;
pub mod handlers;
pub mod messages;
pub mod runtime;
pub mod shard;
