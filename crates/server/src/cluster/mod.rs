//! The cluster side of a broker: controller traffic on the CONTROLLER
//! listener (raft messages between voters, requests from brokers) and,
//! above it, the controller quorum and broker membership.

pub mod driver;
pub mod transport;
