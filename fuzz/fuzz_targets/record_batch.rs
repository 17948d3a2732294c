//! Record-batch validation on arbitrary bytes, as the produce path runs it:
//! `parse_header`, `validate_batch` and the `batches` iterator (CRC32C,
//! lengths, record framing), then the two in-place edits the broker makes
//! on what validation accepted (`stamp_base_offset`, `set_log_append_time`),
//! which must leave the batch valid.
//!
//! The first byte steers: with its low bit set, the CRCs of the batches in
//! the rest are rewritten first, so that mutations reach the checks behind
//! the CRC.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringbroker_fuzz::{fix_crcs, steer};
use ringbroker_protocol::alloc::BrokerAllocator;
use ringbroker_protocol::batch::{
    batches, parse_header, set_log_append_time, stamp_base_offset, validate_batch,
};

#[global_allocator]
static ALLOCATOR: BrokerAllocator = BrokerAllocator;

fuzz_target!(|data: &[u8]| {
    let (steering, rest) = steer(data);
    let mut buf = rest.to_vec();
    if steering & 1 == 1 {
        fix_crcs(&mut buf);
    }
    let _ = parse_header(&buf);
    let whole = validate_batch(&buf);

    let mut accepted = Vec::new();
    let mut end = 0usize;
    let mut failed = false;
    for item in batches(&buf) {
        assert!(!failed, "the iterator ends at its first error");
        match item {
            Ok((header, range)) => {
                assert_eq!(range.start, end, "batches are consecutive");
                end = range.end;
                assert_eq!(header.total_len(), range.len());
                assert_eq!(validate_batch(&buf[range.clone()]), Ok(header));
                assert!(header.record_count >= 1);
                assert_eq!(
                    i64::from(header.last_offset_delta) + 1,
                    i64::from(header.record_count)
                );
                accepted.push((header, range));
            }
            Err(_) => failed = true,
        }
    }
    assert!(failed || end == buf.len(), "trailing bytes are an error");
    if let Ok(header) = whole {
        assert_eq!(accepted.len(), 1);
        assert_eq!(accepted[0].0, header);
    }

    for (i, (header, range)) in accepted.into_iter().enumerate() {
        let mut stored = buf[range.clone()].to_vec();
        let base_offset = i64::from(steering) << 40 | i as i64;
        stamp_base_offset(&mut stored, base_offset);
        assert_eq!(
            &stored[8..],
            &buf[range][8..],
            "stamping writes the base offset only"
        );
        let stamped = validate_batch(&stored).expect("a stamped batch stays valid");
        assert_eq!(
            stamped,
            ringbroker_protocol::batch::BatchHeader {
                base_offset,
                ..header
            }
        );
        set_log_append_time(&mut stored, 1_700_000_000_000 + i as i64);
        let timed = validate_batch(&stored).expect("LogAppendTime keeps the batch valid");
        assert!(timed.is_log_append_time());
        assert_eq!(timed.max_timestamp, 1_700_000_000_000 + i as i64);
        assert_eq!(timed.base_offset, base_offset);
    }
});
