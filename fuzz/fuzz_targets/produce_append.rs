//! The produce path's append on arbitrary bytes: `PartitionLog::append`
//! validates every batch of a request (CRC32C, lengths, record framing,
//! max.message.bytes), applies the idempotent-producer rules and stamps
//! base offsets on what it accepted. The queued writes are then written to
//! the segment files as the flusher would, and the log is reopened
//! (recovery): every stored batch must be valid, offsets contiguous, and
//! recovery must find exactly the appended offsets.
//!
//! Input: a steering byte (bit 0: rewrite batch CRCs first so mutations
//! reach the checks behind them; bit 1: LogAppendTime; bits 2-7: segment
//! size), two bytes choosing a split point, then the payload. The log
//! receives the first part, the second, and the first again (a retry).

#![no_main]

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use ringbroker_fuzz::{fix_crcs, steer, Scratch};
use ringbroker_protocol::alloc::BrokerAllocator;
use ringbroker_protocol::batch::batches;
use ringbroker_storage::log::{LogConfig, PartitionLog, PendingOp};
use ringbroker_storage::segment::file_name;
use ringbroker_storage::writer::WriteMode;

#[global_allocator]
static ALLOCATOR: BrokerAllocator = BrokerAllocator;

const NOW_MS: i64 = 1_700_000_000_000;

thread_local! {
    static SCRATCH: Scratch = Scratch::new("produce");
}

fuzz_target!(|data: &[u8]| {
    SCRATCH.with(|scratch| run(scratch, data));
});

fn run(scratch: &Scratch, data: &[u8]) {
    let (steering, rest) = steer(data);
    let Some((split, payload)) = rest.split_first_chunk::<2>() else {
        return;
    };
    let mut payload = payload.to_vec();
    if steering & 1 == 1 {
        fix_crcs(&mut payload);
    }
    let split = usize::from(u16::from_be_bytes(*split)) % (payload.len() + 1);
    let first = Bytes::copy_from_slice(&payload[..split]);
    let second = Bytes::copy_from_slice(&payload[split..]);

    let config = LogConfig {
        segment_bytes: 256 * u64::from(steering >> 2).max(1),
        index_interval_bytes: 128,
        log_append_time: steering & 2 == 2,
        preallocate: false,
        // Direct mode opens its file on the first write: appends need no
        // io_uring executor, and the target writes the queued bytes itself.
        write_mode: WriteMode::Direct,
        ..LogConfig::default()
    };
    let dir = scratch.fresh();
    let mut log = PartitionLog::open(dir, config.clone(), NOW_MS).expect("a new log opens");
    let mut expected_next = 0i64;
    for part in [&first, &second, &first] {
        match log.append(part, NOW_MS, 0) {
            Ok(appended) if appended.duplicate => {
                assert!(appended.last_offset < expected_next);
            }
            Ok(appended) => {
                assert_eq!(appended.base_offset, expected_next);
                assert!(appended.last_offset >= appended.base_offset);
                expected_next = appended.last_offset + 1;
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
        assert_eq!(log.next_offset(), expected_next);
        assert!(
            log.failure().is_none(),
            "bad input must not fail the partition"
        );
    }

    // Write what the flusher would write, then check the stored bytes.
    let mut next = 0i64;
    for op in log.take_flush_work().ops {
        match op {
            PendingOp::Write {
                segment_base,
                position,
                data,
                end_offset,
                ..
            } => {
                for item in batches(&data) {
                    let (header, _) = item.expect("stored bytes are valid batches");
                    assert_eq!(header.base_offset, next, "offsets are contiguous");
                    // A client's own LogAppendTime bit is kept on a
                    // CreateTime topic; the broker only ever sets it.
                    assert!(header.is_log_append_time() || !config.log_append_time);
                    next = header.last_offset() + 1;
                }
                assert_eq!(next, end_offset);
                let path = dir.join(file_name(segment_base, "log"));
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .expect("segment exists");
                file.write_all_at(&data, position).expect("segment write");
                log.mark_written(segment_base, position + data.len() as u64, end_offset);
            }
            PendingOp::Seal { files, disk, .. } => {
                disk.write_files(&files, true).expect("seal files");
            }
            PendingOp::EpochCheckpoint { path, lines } => {
                ringbroker_storage::checkpoint::write(&path, &lines).expect("epoch checkpoint");
            }
        }
    }
    assert_eq!(next, expected_next);
    assert_eq!(log.log_end_offset(), expected_next);
    for offset in 0..expected_next.min(64) {
        let slice = log.read(offset, 1 << 20).expect("a written offset reads");
        assert!(slice.is_some());
    }
    drop(log);

    let reopened = PartitionLog::open(dir, config, NOW_MS).expect("the log reopens");
    assert_eq!(
        reopened.next_offset(),
        expected_next,
        "recovery keeps every appended offset"
    );
    assert_eq!(reopened.log_start_offset(), 0);
    drop(reopened);
    scratch.clear();
}
