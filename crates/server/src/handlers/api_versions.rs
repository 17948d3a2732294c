//! ApiVersions: advertises exactly the registry's version ranges.

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::ApiVersionsResponse;

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

/// Answers a supported ApiVersions request.
pub fn handle(ctx: &Context) -> Result<Response, DispatchError> {
    ctx.respond(&ApiVersionsResponse::default().with_api_keys(api_keys()))
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
