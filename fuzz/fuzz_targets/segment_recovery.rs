//! Segment recovery and index decoding on arbitrary file bytes:
//! `recovery::recover_segment` scans a segment file batch by batch (the
//! startup path of every partition's active segment), and
//! `OffsetIndex::decode` / `TimeIndex::decode` read `.index` and
//! `.timeindex` bytes. The valid prefix recovery reports must be exactly
//! the batches a reader accepts, and the rebuilt indexes must point at
//! batch starts.
//!
//! Input: a steering byte (bit 0: rewrite batch CRCs first; bits 1-3: the
//! segment's base offset; bits 4-7: index interval), then the bytes.

#![no_main]

use std::fs::File;
use std::io::Write;

use libfuzzer_sys::fuzz_target;
use ringbroker_fuzz::{fix_crcs, steer, Scratch};
use ringbroker_protocol::alloc::BrokerAllocator;
use ringbroker_protocol::batch::batches;
use ringbroker_storage::index::{OffsetIndex, TimeIndex};
use ringbroker_storage::recovery::recover_segment;

#[global_allocator]
static ALLOCATOR: BrokerAllocator = BrokerAllocator;

/// Base offsets a segment file name can carry (20 decimal digits).
const BASES: [i64; 8] = [0, 1, 7, 1000, 1 << 31, 1 << 33, i64::MAX - 1000, i64::MAX];

thread_local! {
    static SCRATCH: Scratch = Scratch::new("recovery");
}

fuzz_target!(|data: &[u8]| {
    SCRATCH.with(|scratch| run(scratch, data));
});

fn run(scratch: &Scratch, data: &[u8]) {
    let (steering, rest) = steer(data);
    let mut bytes = rest.to_vec();
    if steering & 1 == 1 {
        fix_crcs(&mut bytes);
    }
    let base = BASES[usize::from(steering >> 1) % BASES.len()];
    let interval = 1u32 << (steering >> 4);
    indexes(base, rest);

    let dir = scratch.fresh();
    std::fs::create_dir_all(dir).expect("scratch directory");
    let path = dir.join("segment.log");
    File::create(&path)
        .and_then(|mut f| f.write_all(&bytes))
        .expect("segment file");
    let file = File::open(&path).expect("segment file");
    let recovered = recover_segment(&file, base, interval).expect("a readable file scans");
    drop(file);
    scratch.clear();

    let len = bytes.len() as u64;
    assert!(recovered.valid_len <= len);
    assert_eq!(recovered.valid_len + recovered.truncated_bytes, len);
    assert_eq!(recovered.stop_reason.is_none(), recovered.valid_len == len);
    let valid = &bytes[..recovered.valid_len as usize];
    let mut starts = Vec::new();
    let mut next = base;
    for item in batches(valid) {
        let (header, range) = item.expect("the valid prefix holds only valid batches");
        assert!(header.base_offset >= next, "offsets never go back");
        starts.push((header.base_offset, range.start as u32));
        next = header.last_offset() + 1;
    }
    assert_eq!(starts.len() as u64, recovered.batch_count);
    assert_eq!(recovered.next_offset, next);

    let index = &recovered.index;
    assert_eq!(
        OffsetIndex::decode(base, &index.encode()).as_ref(),
        Ok(index)
    );
    for chunk in index.encode().chunks_exact(8) {
        let relative = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        let position = u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
        let offset = base
            .checked_add(i64::from(relative))
            .expect("entries fit the base");
        let entry = (offset, position);
        assert!(
            starts.contains(&entry),
            "index entries point at batch starts"
        );
    }
    let time_index = &recovered.time_index;
    let encoded = time_index.encode();
    // A lone entry (timestamp 0, relative offset 0) reads as zero padding:
    // the segment is then rescanned at start instead of trusting the file.
    if encoded.iter().any(|b| *b != 0) {
        assert_eq!(TimeIndex::decode(base, &encoded).as_ref(), Ok(time_index));
    }
    if let Some((newest, _)) = time_index.max_timestamp() {
        assert!(recovered.max_timestamp.is_some_and(|(ts, _)| ts >= newest));
    }
}

/// Decodes `bytes` as both index formats; what decodes must look up
/// without panicking and encode back to the same index.
fn indexes(base: i64, bytes: &[u8]) {
    if let Ok(index) = OffsetIndex::decode(base, bytes) {
        let probes = [
            i64::MIN,
            base.saturating_sub(1),
            base,
            base.saturating_add(1),
            base.saturating_add(1000),
            i64::MAX,
        ];
        for probe in probes {
            let (offset, _) = index.lookup(probe);
            assert!(offset <= probe.max(base));
        }
        let _ = index.last_entry();
        assert_eq!(OffsetIndex::decode(base, &index.encode()), Ok(index));
    }
    if let Ok(index) = TimeIndex::decode(base, bytes) {
        for probe in [i64::MIN, -1, 0, 1, 1_700_000_000_000, i64::MAX] {
            let _ = index.lookup(probe);
        }
        let _ = index.max_timestamp();
        assert_eq!(TimeIndex::decode(base, &index.encode()), Ok(index));
    }
}
