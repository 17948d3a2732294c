//! A partition directory of arbitrary files opened as the broker opens it
//! at startup (`PartitionLog::open`): a sealed segment whose `.index` and
//! `.timeindex` files are trusted when they decode, and an active segment
//! that is recovered batch by batch. The opened log is then read the ways
//! clients read it (Fetch by offset, ListOffsets by timestamp) and must
//! accept a new append.
//!
//! Input: a steering byte (bit 0: rewrite batch CRCs first; bits 1-3: the
//! active segment's base offset; bit 4: no sealed segment), three
//! big-endian u16 lengths (sealed segment, its .index, its .timeindex),
//! then those files' bytes and the active segment's bytes.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use ringbroker_fuzz::{fix_crcs, steer, Scratch};
use ringbroker_protocol::alloc::BrokerAllocator;
use ringbroker_protocol::batch::build_batch;
use ringbroker_storage::log::{LogConfig, PartitionLog};
use ringbroker_storage::segment::file_name;
use ringbroker_storage::writer::WriteMode;

#[global_allocator]
static ALLOCATOR: BrokerAllocator = BrokerAllocator;

const NOW_MS: i64 = 1_700_000_000_000;
/// Base offsets of the active segment (the sealed one starts at 0).
const ACTIVE_BASES: [i64; 8] = [1, 2, 10, 100, 1000, 1 << 20, 1 << 32, i64::MAX - 1];

thread_local! {
    static SCRATCH: Scratch = Scratch::new("open");
}

fuzz_target!(|data: &[u8]| {
    SCRATCH.with(|scratch| run(scratch, data));
});

fn take<'a>(rest: &mut &'a [u8], len: usize) -> &'a [u8] {
    let (head, tail) = rest.split_at(len.min(rest.len()));
    *rest = tail;
    head
}

fn run(scratch: &Scratch, data: &[u8]) {
    let (steering, rest) = steer(data);
    let Some((lengths, mut rest)) = rest.split_first_chunk::<6>() else {
        return;
    };
    let length = |i: usize| usize::from(u16::from_be_bytes([lengths[i], lengths[i + 1]]));
    let mut sealed = take(&mut rest, length(0)).to_vec();
    let index = take(&mut rest, length(2));
    let time_index = take(&mut rest, length(4));
    let mut active = rest.to_vec();
    if steering & 1 == 1 {
        fix_crcs(&mut sealed);
        fix_crcs(&mut active);
    }
    let with_sealed = steering & 16 == 0;
    let active_base = if with_sealed {
        ACTIVE_BASES[usize::from(steering >> 1) % ACTIVE_BASES.len()]
    } else {
        0
    };

    let dir = scratch.fresh();
    std::fs::create_dir_all(dir).expect("scratch directory");
    if with_sealed {
        std::fs::write(dir.join(file_name(0, "log")), &sealed).expect("sealed segment");
        std::fs::write(dir.join(file_name(0, "index")), index).expect("index");
        std::fs::write(dir.join(file_name(0, "timeindex")), time_index).expect("time index");
    }
    std::fs::write(dir.join(file_name(active_base, "log")), &active).expect("active segment");

    let config = LogConfig {
        preallocate: false,
        write_mode: WriteMode::Direct,
        ..LogConfig::default()
    };
    let Ok(mut log) = PartitionLog::open(dir, config, NOW_MS) else {
        // An I/O error reading the files; bad bytes alone are truncated.
        scratch.clear();
        return;
    };
    let start = log.log_start_offset();
    let end = log.log_end_offset();
    assert!(start <= end && end == log.next_offset());
    let mut offset = start;
    for _ in 0..64 {
        if offset >= end {
            break;
        }
        match log.read(offset, 1 << 16) {
            Ok(Some(slice)) => {
                let bytes = slice.read_to_vec().expect("a located slice reads");
                assert!(!bytes.is_empty());
            }
            Ok(None) | Err(_) => {}
        }
        offset = offset.saturating_add(1 + (end - offset) / 16);
    }
    for timestamp in [i64::MIN, -1, 0, 1_000, NOW_MS, i64::MAX] {
        let _ = log.offset_for_timestamp(timestamp);
    }
    let _ = log.max_timestamp_offset();

    let batch = Bytes::from(build_batch(NOW_MS, None, &[(None, b"after recovery")]));
    if end < i64::MAX - 1 {
        let appended = log
            .append(&batch, NOW_MS, 0)
            .expect("a recovered log takes appends");
        assert_eq!(appended.base_offset, end);
    }
    drop(log);
    scratch.clear();
}
