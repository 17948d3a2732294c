//! ApiVersions: advertises exactly the registry's version ranges and, from
//! v3, the feature flags (KIP-584) that Admin.describeFeatures reads:
//! supported and finalized features and the finalized-features epoch.

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use kafka_protocol::messages::ApiVersionsResponse;

use super::str_bytes;
use crate::shard::Shard;

use crate::dispatch::{Context, DispatchError, Response, SUPPORTED_APIS};
use ringbroker_protocol::errors::ErrorCode;
use ringbroker_protocol::frame::{Chunk, ResponseFrame};

fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .map(|(key, min, max)| {
            ApiVersion::default()
                .with_api_key(*key as i16)
                .with_min_version(*min)
                .with_max_version(*max)
        })
        .collect()
}

/// Kafka's `metadata.version` feature name.
const METADATA_VERSION: &str = "metadata.version";
/// The metadata.version level ringbroker supports and finalizes: 7
/// (3.3-IV3), the lowest level Kafka 4.x runs at. The later levels gate
/// inter-broker and controller changes ringbroker does not implement.
/// Other features (kraft.version, group.version, ...) stay at level 0 and
/// are not listed, as Kafka lists none at 0.
const METADATA_VERSION_LEVEL: i16 = 7;
/// Kafka's `transaction.version` feature name.
const TRANSACTION_VERSION: &str = "transaction.version";
/// transaction.version 1: the flexible `__transaction_state` records.
/// Level 2 (KIP-890's server-side defence, with epoch bumps per
/// transaction) is not implemented; clients seeing 1 use the classic
/// protocol (AddPartitionsToTxn, EndTxn v4 and below).
const TRANSACTION_VERSION_LEVEL: i16 = 1;

/// Answers a supported ApiVersions request.
pub fn handle(shard: &Shard, ctx: &Context) -> Result<Response, DispatchError> {
    let supported = vec![
        SupportedFeatureKey::default()
            .with_name(str_bytes(METADATA_VERSION))
            .with_min_version(METADATA_VERSION_LEVEL)
            .with_max_version(METADATA_VERSION_LEVEL),
        SupportedFeatureKey::default()
            .with_name(str_bytes(TRANSACTION_VERSION))
            .with_min_version(0)
            .with_max_version(TRANSACTION_VERSION_LEVEL),
    ];
    let finalized = vec![
        FinalizedFeatureKey::default()
            .with_name(str_bytes(METADATA_VERSION))
            .with_min_version_level(METADATA_VERSION_LEVEL)
            .with_max_version_level(METADATA_VERSION_LEVEL),
        FinalizedFeatureKey::default()
            .with_name(str_bytes(TRANSACTION_VERSION))
            .with_min_version_level(TRANSACTION_VERSION_LEVEL)
            .with_max_version_level(TRANSACTION_VERSION_LEVEL),
    ];
    // Kafka's epoch is the offset of the metadata image the features come
    // from; the catalog version is ringbroker's counterpart.
    let epoch = i64::try_from(shard.catalog().version).unwrap_or(i64::MAX);
    ctx.respond(
        &ApiVersionsResponse::default()
            .with_api_keys(api_keys())
            .with_supported_features(supported)
            .with_finalized_features_epoch(epoch)
            .with_finalized_features(finalized),
    )
}

/// The answer to an ApiVersions request of a version newer than ours: a v0
/// response with UNSUPPORTED_VERSION and our ranges, so the client can
/// retry with a version we speak.
pub fn unsupported_version(correlation_id: i32) -> Response {
    let body = ApiVersionsResponse::default()
        .with_error_code(ErrorCode::UnsupportedVersion.code())
        .with_api_keys(api_keys());
    match ringbroker_protocol::frame::encode_response(correlation_id, 0, &body, 0) {
        Ok(frame) => Response::Frame(frame),
        Err(_) => Response::Close(None),
    }
}

/// A minimal UNSUPPORTED_VERSION answer (correlation id, error code) sent
/// before closing a connection that used a version we do not speak.
pub fn bare_error(correlation_id: i32) -> ResponseFrame {
    let mut buf = BytesMut::with_capacity(10);
    buf.put_i32(6);
    buf.put_i32(correlation_id);
    buf.put_i16(ErrorCode::UnsupportedVersion.code());
    ResponseFrame {
        chunks: vec![Chunk::Bytes(buf.freeze())],
    }
}
