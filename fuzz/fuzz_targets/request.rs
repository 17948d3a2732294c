//! Request frames as the broker decodes them: the size prefix check
//! (`frame_len`) on the first four bytes, then the whole input as a frame
//! body through `dispatch::decode_request`, the function the broker's
//! dispatch runs: fixed header start, API and version against the
//! advertised table, request header, and the body decoder of every
//! advertised API at every advertised version.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use ringbroker_protocol::alloc::BrokerAllocator;
use ringbroker_protocol::frame::{frame_len, peek_header};
use ringbroker_protocol::limits::REQUEST_BYTES_MAX_DEFAULT;
use ringbroker_server::dispatch::{decode_request, supported_range, Refusal};

#[global_allocator]
static ALLOCATOR: BrokerAllocator = BrokerAllocator;

fuzz_target!(|data: &[u8]| {
    if let Some(prefix) = data.first_chunk::<4>() {
        if let Ok(len) = frame_len(*prefix, REQUEST_BYTES_MAX_DEFAULT) {
            assert!(len > 0 && len <= REQUEST_BYTES_MAX_DEFAULT);
        }
    }
    match decode_request(Bytes::copy_from_slice(data)) {
        Ok(decoded) => {
            let raw = peek_header(data).expect("a decoded request has a header");
            assert_eq!(raw.api_version, decoded.version);
            assert_eq!(raw.correlation_id, decoded.header.correlation_id);
            let (min, max) = supported_range(decoded.api_key).expect("only advertised APIs decode");
            assert!((min..=max).contains(&decoded.version));
        }
        Err(refusal) => {
            // The broker logs the refusal.
            let _ = refusal.to_string();
            if let Refusal::UnsupportedVersion { api, version, .. } = refusal {
                assert!(
                    supported_range(api).is_none_or(|(min, max)| !(min..=max).contains(&version))
                );
            }
        }
    }
});
