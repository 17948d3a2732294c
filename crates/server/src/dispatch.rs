//! The API registry and request dispatch: one line per supported API
//! version range, one handler module per API.
//!
//! Decoding is separate from handling and free of I/O: [`decode_request`]
//! turns a frame body into a typed [`Request`] (or a [`Refusal`]) and
//! [`dispatch`] hands it to its handler. The fuzz target
//! `fuzz/fuzz_targets/request.rs` drives `decode_request` itself, so the
//! fuzzer exercises exactly the decoding the broker runs.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::handlers;
use crate::shard::Shard;
use ringbroker_protocol::frame::{encode_response, peek_header, FrameError, ResponseFrame};

/// Declares the registry: [`SUPPORTED_APIS`], the [`Request`] enum with one
/// variant per API, and [`decode_body`], all from one table, so an API
/// cannot be advertised without a decoder (nor decoded without being
/// advertised).
macro_rules! api_registry {
    ($( $api:ident($request:ty), $min:literal, $max:literal; )*) => {
        /// Every API ringbroker implements, with the versions it implements.
        /// ApiVersions advertises exactly this table.
        pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
            $( (ApiKey::$api, $min, $max), )*
        ];

        /// A decoded request body, one variant per entry of [`SUPPORTED_APIS`].
        #[derive(Debug)]
        pub enum Request {
            $(
                #[doc = concat!("A ", stringify!($api), " request.")]
                $api($request),
            )*
        }

        /// Decodes the body of a `key` request of `version` (which the
        /// caller has checked against [`SUPPORTED_APIS`]). `None` for an
        /// API that is not in the registry.
        pub fn decode_body(
            key: ApiKey,
            version: i16,
            body: &mut Bytes,
        ) -> Option<Result<Request, String>> {
            match key {
                $(
                    ApiKey::$api => Some(
                        <$request>::decode(body, version)
                            .map(Request::$api)
                            .map_err(|e| e.to_string()),
                    ),
                )*
                _ => None,
            }
        }
    };
}

api_registry! {
    Produce(ProduceRequest), 3, 11;
    Fetch(FetchRequest), 4, 12;
    ListOffsets(ListOffsetsRequest), 1, 8;
    Metadata(MetadataRequest), 0, 12;
    ApiVersions(ApiVersionsRequest), 0, 4;
    CreateTopics(CreateTopicsRequest), 2, 7;
    DeleteTopics(DeleteTopicsRequest), 1, 6;
    InitProducerId(InitProducerIdRequest), 0, 5;
    DescribeConfigs(DescribeConfigsRequest), 1, 4;
    CreatePartitions(CreatePartitionsRequest), 0, 3;
    IncrementalAlterConfigs(IncrementalAlterConfigsRequest), 0, 1;
    DescribeCluster(DescribeClusterRequest), 0, 1;
    FindCoordinator(FindCoordinatorRequest), 0, 4;
    JoinGroup(JoinGroupRequest), 0, 9;
    SyncGroup(SyncGroupRequest), 0, 5;
    Heartbeat(HeartbeatRequest), 0, 4;
    LeaveGroup(LeaveGroupRequest), 0, 5;
    OffsetCommit(OffsetCommitRequest), 2, 8;
    OffsetFetch(OffsetFetchRequest), 1, 8;
    ListGroups(ListGroupsRequest), 0, 5;
    DescribeGroups(DescribeGroupsRequest), 0, 5;
    DeleteGroups(DeleteGroupsRequest), 0, 2;
    OffsetDelete(OffsetDeleteRequest), 0, 0;
    // Not v5: that is transaction version 2 (KIP-890), not advertised.
    TxnOffsetCommit(TxnOffsetCommitRequest), 0, 4;
    AlterConfigs(AlterConfigsRequest), 0, 2;
    DescribeLogDirs(DescribeLogDirsRequest), 1, 4;
    DescribeProducers(DescribeProducersRequest), 0, 0;
    DeleteRecords(DeleteRecordsRequest), 0, 2;
    OffsetForLeaderEpoch(OffsetForLeaderEpochRequest), 2, 4;
    ElectLeaders(ElectLeadersRequest), 0, 2;
    AlterPartitionReassignments(AlterPartitionReassignmentsRequest), 0, 1;
    ListPartitionReassignments(ListPartitionReassignmentsRequest), 0, 0;
    AddPartitionsToTxn(AddPartitionsToTxnRequest), 0, 3;
    AddOffsetsToTxn(AddOffsetsToTxnRequest), 0, 4;
    EndTxn(EndTxnRequest), 0, 4;
    WriteTxnMarkers(WriteTxnMarkersRequest), 1, 1;
    DescribeTransactions(DescribeTransactionsRequest), 0, 0;
    ListTransactions(ListTransactionsRequest), 0, 1;
}

/// The implemented version range of an API.
pub fn supported_range(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED_APIS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, min, max)| (*min, *max))
}

/// What the connection does after a request.
pub enum Response {
    /// Send this frame.
    Frame(ResponseFrame),
    /// Send nothing (produce with acks=0).
    Nothing,
    /// Send this frame if any, then close the connection.
    Close(Option<ResponseFrame>),
}

/// A handler failure; the connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// The response could not be encoded.
    #[error("{0}")]
    Encode(String),
}

/// Why a request frame was not decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The frame is shorter than the fixed header start.
    #[error("{0}")]
    Frame(#[from] FrameError),
    /// An API key Kafka does not define.
    #[error("unknown api key {0}")]
    UnknownApi(i16),
    /// An API or version not in [`SUPPORTED_APIS`].
    #[error("{api:?} v{version} is not supported")]
    UnsupportedVersion {
        /// API of the request.
        api: ApiKey,
        /// Version of the request.
        version: i16,
        /// Correlation id, for the error answer.
        correlation_id: i32,
    },
    /// The request header does not decode.
    #[error("bad request header: {0}")]
    Header(String),
    /// The request body does not decode.
    #[error("malformed {api:?} v{version} request: {reason}")]
    Body {
        /// API of the request.
        api: ApiKey,
        /// Version of the request.
        version: i16,
        /// Decoder message.
        reason: String,
    },
}

/// A request decoded from its frame.
#[derive(Debug)]
pub struct Decoded {
    /// The API.
    pub api_key: ApiKey,
    /// The request (and response) version.
    pub version: i16,
    /// Parsed request header.
    pub header: RequestHeader,
    /// The body.
    pub request: Request,
}

/// Decodes one request frame (without its size prefix): the fixed header
/// start, the API and version against [`SUPPORTED_APIS`], the request
/// header and the body. Bad bytes are a [`Refusal`], never a panic.
pub fn decode_request(mut body: Bytes) -> Result<Decoded, Refusal> {
    let raw = peek_header(&body)?;
    let api_key = ApiKey::try_from(raw.api_key).map_err(|_| Refusal::UnknownApi(raw.api_key))?;
    let supported = supported_range(api_key);
    if !supported.is_some_and(|(min, max)| (min..=max).contains(&raw.api_version)) {
        return Err(Refusal::UnsupportedVersion {
            api: api_key,
            version: raw.api_version,
            correlation_id: raw.correlation_id,
        });
    }
    let header_version = api_key.request_header_version(raw.api_version);
    let header = RequestHeader::decode(&mut body, header_version)
        .map_err(|e| Refusal::Header(e.to_string()))?;
    let request = match decode_body(api_key, raw.api_version, &mut body) {
        Some(Ok(request)) => request,
        Some(Err(reason)) => {
            return Err(Refusal::Body {
                api: api_key,
                version: raw.api_version,
                reason,
            })
        }
        // Unreachable: the version check above found the API in the
        // registry, and the registry decodes every API it lists.
        None => {
            return Err(Refusal::UnsupportedVersion {
                api: api_key,
                version: raw.api_version,
                correlation_id: raw.correlation_id,
            })
        }
    };
    Ok(Decoded {
        api_key,
        version: raw.api_version,
        header,
        request,
    })
}

/// What a handler knows about its request.
pub struct Context {
    /// The API.
    pub api_key: ApiKey,
    /// The request (and response) version.
    pub version: i16,
    /// Parsed request header.
    pub header: RequestHeader,
    /// The client's address as Kafka prints it ("/127.0.0.1").
    pub client_host: String,
}

impl Context {
    /// Encodes `body` as the response to this request.
    pub fn respond<T: Encodable>(&self, body: &T) -> Result<Response, DispatchError> {
        let header_version = self.api_key.response_header_version(self.version);
        encode_response(
            self.header.correlation_id,
            header_version,
            body,
            self.version,
        )
        .map(Response::Frame)
        .map_err(|e| DispatchError::Encode(format!("{:?} v{}: {e}", self.api_key, self.version)))
    }
}

/// Counts a request as in flight until dropped (graceful shutdown waits
/// for the count to reach zero).
struct InflightGuard<'a>(&'a Shard);

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        let stats = &self.0.stats;
        stats.inflight.set(stats.inflight.get().saturating_sub(1));
    }
}

/// The answer to a refused request: an UNSUPPORTED_VERSION answer where
/// Kafka gives one, else a closed connection.
fn refuse(refusal: Refusal) -> Response {
    match refusal {
        Refusal::UnsupportedVersion {
            api: ApiKey::ApiVersions,
            correlation_id,
            ..
        } => handlers::api_versions::unsupported_version(correlation_id),
        Refusal::UnsupportedVersion { correlation_id, .. } => {
            log::debug!("closing connection: {refusal}");
            Response::Close(Some(handlers::api_versions::bare_error(correlation_id)))
        }
        Refusal::Body { .. } => {
            log::warn!("closing connection: {refusal}");
            Response::Close(None)
        }
        Refusal::Frame(_) | Refusal::UnknownApi(_) | Refusal::Header(_) => {
            log::debug!("closing connection: {refusal}");
            Response::Close(None)
        }
    }
}

/// Handles one request frame (without its size prefix).
pub async fn dispatch(shard: &Rc<Shard>, body: Bytes, client_host: &str) -> Response {
    let decoded = match decode_request(body) {
        Ok(decoded) => decoded,
        Err(refusal) => return refuse(refusal),
    };
    let ctx = Context {
        api_key: decoded.api_key,
        version: decoded.version,
        header: decoded.header,
        client_host: client_host.to_string(),
    };
    shard.stats.requests.set(shard.stats.requests.get() + 1);
    shard.stats.inflight.set(shard.stats.inflight.get() + 1);
    let _inflight = InflightGuard(shard);
    let result = match decoded.request {
        Request::ApiVersions(_) => handlers::api_versions::handle(shard, &ctx),
        Request::Metadata(r) => handlers::metadata::handle(shard, &ctx, r).await,
        Request::Produce(r) => handlers::produce::handle(shard, &ctx, r).await,
        Request::Fetch(r) => handlers::fetch::handle(shard, &ctx, r).await,
        Request::ListOffsets(r) => handlers::list_offsets::handle(shard, &ctx, r).await,
        Request::CreateTopics(r) => handlers::create_topics::handle(shard, &ctx, r).await,
        Request::DeleteTopics(r) => handlers::delete_topics::handle(shard, &ctx, r).await,
        Request::CreatePartitions(r) => handlers::create_partitions::handle(shard, &ctx, r).await,
        Request::DescribeConfigs(r) => handlers::describe_configs::handle(shard, &ctx, r),
        Request::IncrementalAlterConfigs(r) => {
            handlers::incremental_alter_configs::handle(shard, &ctx, r).await
        }
        Request::DescribeCluster(r) => handlers::describe_cluster::handle(shard, &ctx, r),
        Request::InitProducerId(r) => handlers::init_producer_id::handle(shard, &ctx, r).await,
        Request::FindCoordinator(r) => handlers::groups::find_coordinator(shard, &ctx, r).await,
        Request::JoinGroup(r) => handlers::groups::join_group(shard, &ctx, r).await,
        Request::SyncGroup(r) => handlers::groups::sync_group(shard, &ctx, r).await,
        Request::Heartbeat(r) => handlers::groups::heartbeat(shard, &ctx, r).await,
        Request::LeaveGroup(r) => handlers::groups::leave_group(shard, &ctx, r).await,
        Request::OffsetCommit(r) => handlers::groups::offset_commit(shard, &ctx, r).await,
        Request::OffsetFetch(r) => handlers::groups::offset_fetch(shard, &ctx, r).await,
        Request::ListGroups(r) => handlers::groups::list_groups(shard, &ctx, r).await,
        Request::DescribeGroups(r) => handlers::groups::describe_groups(shard, &ctx, r).await,
        Request::DeleteGroups(r) => handlers::groups::delete_groups(shard, &ctx, r).await,
        Request::OffsetDelete(r) => handlers::groups::offset_delete(shard, &ctx, r).await,
        Request::TxnOffsetCommit(r) => handlers::groups::txn_offset_commit(shard, &ctx, r).await,
        Request::AlterConfigs(r) => handlers::alter_configs::handle(shard, &ctx, r).await,
        Request::DescribeLogDirs(r) => handlers::describe_log_dirs::handle(shard, &ctx, r).await,
        Request::DescribeProducers(r) => handlers::describe_producers::handle(shard, &ctx, r).await,
        Request::DeleteRecords(r) => handlers::delete_records::handle(shard, &ctx, r).await,
        Request::OffsetForLeaderEpoch(r) => {
            handlers::offset_for_leader_epoch::handle(shard, &ctx, r).await
        }
        Request::ElectLeaders(r) => handlers::elect_leaders::handle(shard, &ctx, r).await,
        Request::AlterPartitionReassignments(r) => {
            handlers::reassignments::alter(shard, &ctx, r).await
        }
        Request::ListPartitionReassignments(r) => handlers::reassignments::list(shard, &ctx, r),
        Request::AddPartitionsToTxn(r) => {
            handlers::transactions::add_partitions(shard, &ctx, r).await
        }
        Request::AddOffsetsToTxn(r) => handlers::transactions::add_offsets(shard, &ctx, r).await,
        Request::EndTxn(r) => handlers::transactions::end_txn(shard, &ctx, r).await,
        Request::WriteTxnMarkers(r) => handlers::transactions::write_markers(shard, &ctx, r).await,
        Request::DescribeTransactions(r) => handlers::transactions::describe(shard, &ctx, r).await,
        Request::ListTransactions(r) => handlers::transactions::list(shard, &ctx, r).await,
    };
    match result {
        Ok(response) => response,
        Err(e) => {
            log::warn!("closing connection: {e}");
            Response::Close(None)
        }
    }
}

#[cfg(test)]
mod fuzz {
    //! Property tests beside the fuzz targets (`fuzz/`): framing and every
    //! request decoder ringbroker advertises must reject arbitrary bytes
    //! without panicking (the broker's allocator keeps absurd declared
    //! counts from aborting; the lib test binary uses it too).

    use super::*;
    use bytes::{BufMut, BytesMut};
    use proptest::prelude::*;
    use ringbroker_protocol::frame::frame_len;

    /// Decodes `body` as the request of `key`/`version` with the broker's
    /// decoder table; true when it decodes. Never panics.
    fn decode_any(key: ApiKey, version: i16, body: &[u8]) -> bool {
        let mut b = Bytes::copy_from_slice(body);
        match decode_body(key, version, &mut b) {
            Some(result) => result.is_ok(),
            None => panic!("{key:?} is advertised but has no decoder here"),
        }
    }

    fn every_api_version() -> Vec<(ApiKey, i16)> {
        SUPPORTED_APIS
            .iter()
            .flat_map(|(k, lo, hi)| (*lo..=*hi).map(move |v| (*k, v)))
            .collect()
    }

    /// A request frame body: the header of `key`/`version` and `body`.
    fn frame(key: ApiKey, version: i16, correlation_id: i32, body: &[u8]) -> Bytes {
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id);
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, key.request_header_version(version))
            .expect("header encodes");
        buf.put_slice(body);
        buf.freeze()
    }

    /// The default request of `key`, encoded at `version`.
    fn default_body(key: ApiKey, version: i16) -> Vec<u8> {
        macro_rules! encode {
            ($t:ty) => {{
                let mut buf = BytesMut::new();
                <$t>::default()
                    .encode(&mut buf, version)
                    .expect("default request encodes");
                buf.to_vec()
            }};
        }
        match key {
            ApiKey::Produce => encode!(ProduceRequest),
            ApiKey::Fetch => encode!(FetchRequest),
            ApiKey::ListOffsets => encode!(ListOffsetsRequest),
            ApiKey::Metadata => encode!(MetadataRequest),
            ApiKey::ApiVersions => encode!(ApiVersionsRequest),
            ApiKey::CreateTopics => encode!(CreateTopicsRequest),
            ApiKey::DeleteTopics => encode!(DeleteTopicsRequest),
            ApiKey::InitProducerId => encode!(InitProducerIdRequest),
            ApiKey::DescribeConfigs => encode!(DescribeConfigsRequest),
            ApiKey::CreatePartitions => encode!(CreatePartitionsRequest),
            ApiKey::IncrementalAlterConfigs => encode!(IncrementalAlterConfigsRequest),
            ApiKey::DescribeCluster => encode!(DescribeClusterRequest),
            ApiKey::FindCoordinator => encode!(FindCoordinatorRequest),
            ApiKey::JoinGroup => encode!(JoinGroupRequest),
            ApiKey::SyncGroup => encode!(SyncGroupRequest),
            ApiKey::Heartbeat => encode!(HeartbeatRequest),
            ApiKey::LeaveGroup => encode!(LeaveGroupRequest),
            ApiKey::OffsetCommit => encode!(OffsetCommitRequest),
            ApiKey::OffsetFetch => encode!(OffsetFetchRequest),
            ApiKey::ListGroups => encode!(ListGroupsRequest),
            ApiKey::DescribeGroups => encode!(DescribeGroupsRequest),
            ApiKey::DeleteGroups => encode!(DeleteGroupsRequest),
            ApiKey::OffsetDelete => encode!(OffsetDeleteRequest),
            ApiKey::TxnOffsetCommit => encode!(TxnOffsetCommitRequest),
            ApiKey::AlterConfigs => encode!(AlterConfigsRequest),
            ApiKey::DescribeLogDirs => encode!(DescribeLogDirsRequest),
            ApiKey::DescribeProducers => encode!(DescribeProducersRequest),
            ApiKey::DeleteRecords => encode!(DeleteRecordsRequest),
            ApiKey::OffsetForLeaderEpoch => encode!(OffsetForLeaderEpochRequest),
            ApiKey::ElectLeaders => encode!(ElectLeadersRequest),
            ApiKey::AlterPartitionReassignments => encode!(AlterPartitionReassignmentsRequest),
            ApiKey::ListPartitionReassignments => encode!(ListPartitionReassignmentsRequest),
            ApiKey::AddPartitionsToTxn => encode!(AddPartitionsToTxnRequest),
            ApiKey::AddOffsetsToTxn => encode!(AddOffsetsToTxnRequest),
            ApiKey::EndTxn => encode!(EndTxnRequest),
            ApiKey::WriteTxnMarkers => encode!(WriteTxnMarkersRequest),
            ApiKey::DescribeTransactions => encode!(DescribeTransactionsRequest),
            ApiKey::ListTransactions => encode!(ListTransactionsRequest),
            other => panic!("{other:?} is not in the registry"),
        }
    }

    #[test]
    fn every_advertised_version_decodes_through_the_broker_path() {
        for (key, version) in every_api_version() {
            let body = frame(key, version, 77, &default_body(key, version));
            let decoded = decode_request(body).expect("a well-formed request decodes");
            assert_eq!((decoded.api_key, decoded.version), (key, version));
            assert_eq!(decoded.header.correlation_id, 77);
        }
    }

    #[test]
    fn refusals() {
        assert!(matches!(
            decode_request(Bytes::from_static(&[0, 3, 0])),
            Err(Refusal::Frame(FrameError::TooShort(3)))
        ));
        assert_eq!(
            decode_request(Bytes::from_static(&[3, 231, 0, 0, 0, 0, 0, 1])).err(),
            Some(Refusal::UnknownApi(999))
        );
        assert_eq!(
            decode_request(frame(ApiKey::Produce, 99, 5, &[])).err(),
            Some(Refusal::UnsupportedVersion {
                api: ApiKey::Produce,
                version: 99,
                correlation_id: 5
            })
        );
        // A client id length past the end of the frame.
        assert!(matches!(
            decode_request(Bytes::from_static(&[0, 3, 0, 1, 0, 0, 0, 1, 0, 9])),
            Err(Refusal::Header(_))
        ));
        assert!(matches!(
            decode_request(frame(ApiKey::Metadata, 1, 1, &[0x7f, 0xff, 0xff, 0xff])),
            Err(Refusal::Body {
                api: ApiKey::Metadata,
                version: 1,
                ..
            })
        ));
    }

    #[test]
    fn huge_declared_counts_are_rejected() {
        // An array or byte count of 2^31-1 right at the start of the body.
        for (key, version) in every_api_version() {
            for prefix in [
                &[0x7f, 0xff, 0xff, 0xff][..],
                &[0xff, 0xff, 0xff, 0xf0],
                &[0x7f, 0xff],
            ] {
                let mut body = prefix.to_vec();
                body.extend_from_slice(&[1, 2, 3]);
                // The property is that this returns at all (no abort);
                // some bodies (ApiVersions v0) legitimately ignore bytes.
                let _ = decode_any(key, version, &body);
                let _ = decode_request(frame(key, version, 1, &body));
            }
        }
        // Where the count comes first, the request is refused.
        assert!(!decode_any(
            ApiKey::Metadata,
            1,
            &[0x7f, 0xff, 0xff, 0xff, 0, 1, b'a']
        ));
        assert!(!decode_any(
            ApiKey::CreateTopics,
            2,
            &[0x7f, 0xff, 0xff, 0xfe]
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn arbitrary_bodies_never_panic(
            api in 0usize..1000,
            body in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let all = every_api_version();
            let (key, version) = all[api % all.len()];
            let _ = decode_any(key, version, &body);
            let _ = decode_request(frame(key, version, 1, &body));
        }

        #[test]
        fn framing_never_panics(prefix in any::<[u8; 4]>(), body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = frame_len(prefix, 1 << 20);
            let _ = decode_request(Bytes::from(body));
        }
    }
}
