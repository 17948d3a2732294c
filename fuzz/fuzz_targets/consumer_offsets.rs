//! `__consumer_offsets` records on arbitrary bytes: `records::entries`
//! (the coordinator's replay at startup: batch validation, record decoding,
//! key/value decoding) and `records::decode` on a raw key and value. What
//! decodes must encode back to bytes that decode to the same entry.
//!
//! Input: a steering byte (bit 0: rewrite batch CRCs first; bit 1: a null
//! value; bits 2-7 with the next byte: where the key ends), then the bytes.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use ringbroker_fuzz::{fix_crcs, steer};
use ringbroker_groups::records::{
    decode, entries, group_key, group_value, offset_key, offset_value, Entry,
};
use ringbroker_protocol::alloc::BrokerAllocator;

#[global_allocator]
static ALLOCATOR: BrokerAllocator = BrokerAllocator;

fuzz_target!(|data: &[u8]| {
    let (steering, rest) = steer(data);
    let mut batches = rest.to_vec();
    if steering & 1 == 1 {
        fix_crcs(&mut batches);
    }
    for entry in entries(&batches) {
        round_trip(&entry);
    }

    let Some((low, rest)) = rest.split_first() else {
        return;
    };
    let key_len = (usize::from(steering >> 2) << 8 | usize::from(*low)) % (rest.len() + 1);
    let key = Bytes::copy_from_slice(&rest[..key_len]);
    let value = Bytes::copy_from_slice(&rest[key_len..]);
    let value = (steering & 2 == 0).then_some(&value);
    if let Some(entry) = decode(&key, value) {
        round_trip(&entry);
    }
});

/// Encodes `entry` as the coordinator stores it and decodes it again.
fn round_trip(entry: &Entry) {
    let (key, value) = match entry {
        Entry::Offset {
            group,
            topic,
            partition,
            value,
        } => (
            offset_key(group, topic, *partition),
            value.as_ref().map(offset_value),
        ),
        Entry::Group { group, value } => (group_key(group), value.as_ref().map(group_value)),
    };
    assert_eq!(decode(&key, value.as_ref()).as_ref(), Some(entry));
}
