//! The cluster side of a broker: controller traffic on the CONTROLLER
//! listener (raft messages between voters, requests from brokers) and,
//! above it, the controller quorum and broker membership.

pub mod api;
pub mod controller;
pub mod driver;
pub mod metadata;
pub mod node;
pub mod transport;
