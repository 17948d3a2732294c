//! The requests brokers send the controller quorum over the CONTROLLER
//! listener, and the answers (JSON bodies of `REQUEST`/`RESPONSE` frames).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::catalog::{BrokerMeta, Catalog};
use crate::messages::{AdminRequest, AdminResult};

/// A request to a controller.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ControllerRequest {
    /// A starting node checks that it agrees with the quorum: its voter
    /// list and cluster id (any voter answers).
    Hello {
        /// The caller's `node.id`.
        node_id: i32,
        /// The caller's `controller.quorum.voters`, normalised.
        voters: String,
    },
    /// A broker joins (at start, or after the controller forgot it).
    Register {
        /// How clients reach it.
        broker: BrokerMeta,
        /// The cluster its data directory belongs to, when formatted.
        cluster_id: Option<String>,
    },
    /// A broker is shutting down: it leads nothing from now on (its
    /// partitions move at once rather than after its session times out).
    ControlledShutdown {
        /// Its `node.id`.
        broker_id: i32,
    },
    /// A registered broker is alive.
    Heartbeat {
        /// Its `node.id`.
        broker_id: i32,
        /// The epoch its registration got.
        epoch: i64,
    },
    /// The metadata image if newer than `known_version`, waiting up to
    /// `wait_ms` for a change (any voter answers with what it has applied).
    FetchMetadata {
        /// The caller's version.
        known_version: u64,
        /// How long to wait for something newer.
        wait_ms: u64,
    },
    /// The leader of a partition changes its ISR (Kafka's AlterPartition):
    /// valid only for the leader epoch and partition epoch it last saw.
    AlterIsr {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The requesting leader.
        leader: i32,
        /// Its leader epoch.
        leader_epoch: i32,
        /// The partition epoch the change is based on.
        partition_epoch: i32,
        /// The new ISR (the leader included).
        isr: Vec<i32>,
    },
    /// A metadata change from a client's admin request.
    Admin(AdminRequest),
    /// Creates `__consumer_offsets` if it does not exist yet.
    CreateOffsetsTopic {
        /// Its partition count (`offsets.topic.num.partitions`).
        partitions: i32,
        /// Its configs.
        configs: BTreeMap<String, String>,
    },
    /// A block of producer ids for one broker.
    AllocateProducerIds {
        /// How many.
        count: i64,
    },
}

/// A controller's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ControllerResponse {
    /// Only the active controller takes this request; the leader, when
    /// known.
    NotController {
        /// The active controller's node id, when known.
        leader: Option<i32>,
    },
    /// The request failed with a Kafka error code.
    Failed {
        /// Kafka error code.
        code: i16,
        /// Why.
        message: String,
    },
    /// The answer to `Hello`.
    Hello {
        /// The voter's `controller.quorum.voters`, normalised.
        voters: String,
        /// The cluster id the voter knows ("" before it is agreed).
        cluster_id: String,
    },
    /// The broker is registered and unfenced, with a new broker epoch.
    Registered {
        /// Its broker epoch (heartbeats carry it).
        epoch: i64,
        /// The metadata version that holds the registration.
        #[serde(default)]
        version: u64,
    },
    /// The answer to a heartbeat.
    Heartbeat {
        /// False when the controller does not know the broker or knows a
        /// newer incarnation of it (it must register again).
        registered: bool,
    },
    /// The answer to `FetchMetadata`: the image when newer, and the
    /// active controller.
    Metadata {
        /// The whole image, when newer than the caller's.
        image: Option<Box<Catalog>>,
        /// The active controller's node id, when known.
        leader: Option<i32>,
    },
    /// The outcome of an admin change and the metadata version that holds
    /// it.
    Admin {
        /// Per-item results, in request order.
        results: Vec<AdminResult>,
        /// The metadata version to wait for.
        version: u64,
    },
    /// A change without results took effect at `version`.
    Done {
        /// The metadata version to wait for.
        version: u64,
    },
    /// A block of producer ids starting at `first`.
    ProducerIds {
        /// The first id of the block.
        first: i64,
        /// How many ids.
        count: i64,
    },
}

impl ControllerRequest {
    /// The request's bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a controller request encodes")
    }
    /// A request read from a peer; bad bytes are an error.
    pub fn decode(bytes: &[u8]) -> Result<ControllerRequest, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

impl ControllerResponse {
    /// The response's bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a controller response encodes")
    }
    /// A response read from a peer; bad bytes are an error.
    pub fn decode(bytes: &[u8]) -> Result<ControllerResponse, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_responses_round_trip_and_garbage_is_an_error() {
        let r = ControllerRequest::Heartbeat {
            broker_id: 3,
            epoch: 7,
        };
        assert!(matches!(
            ControllerRequest::decode(&r.encode()),
            Ok(ControllerRequest::Heartbeat {
                broker_id: 3,
                epoch: 7
            })
        ));
        let a = ControllerResponse::NotController { leader: Some(2) };
        assert!(matches!(
            ControllerResponse::decode(&a.encode()),
            Ok(ControllerResponse::NotController { leader: Some(2) })
        ));
        assert!(ControllerRequest::decode(b"\x00\xffgarbage").is_err());
        assert!(ControllerResponse::decode(b"{}").is_err());
    }
}
