//! The controller quorum's replicated log: the cluster metadata log stored
//! under `<data>/__cluster_metadata-0/`, replicated by raft-rs (tikv's Raft,
//! not a home-made consensus).
//!
//! This crate performs no network I/O and no waiting: the server drives a
//! [`QuorumNode`] (messages in, ticks, proposals; ready cycles out) and runs
//! its [`PersistJob`]s, which own their bytes and a file handle, on a
//! blocking thread so the executor never waits on fdatasync. Records are
//! opaque bytes here; the metadata state machine lives above.

pub mod disk;
pub mod node;

pub use disk::METADATA_LOG_DIR;
pub use node::{
    decode_message, encode_message, node_id, raft_id, Applied, EndStep, PersistJob, Persisted,
    QuorumConfig, QuorumError, QuorumNode, ReadyStep,
};
pub use raft::eraftpb::Message;

#[cfg(test)]
mod sim;
