//! Storage hot paths, measured without a network: record-batch validation
//! (every produced byte goes through it) and the startup recovery scan.
//!
//! Run: `cargo bench --bench storage` (prints MB/s; compare figures from
//! one run only, the machines are shared).

use std::hint::black_box;
use std::io::Write;
use std::time::Instant;

use ringbroker_protocol::batch::{batches, build_batch, stamp_base_offset};
use ringbroker_storage::recovery::recover_segment;

fn payload(batch_count: usize, records_per_batch: usize, value_len: usize) -> Vec<u8> {
    let value = vec![b'x'; value_len];
    let records: Vec<(Option<&[u8]>, &[u8])> = (0..records_per_batch)
        .map(|_| (Some(&b"key"[..]), &value[..]))
        .collect();
    let mut out = Vec::new();
    let mut offset = 0i64;
    for _ in 0..batch_count {
        let mut batch = build_batch(1_700_000_000_000, None, &records);
        stamp_base_offset(&mut batch, offset);
        offset += records_per_batch as i64;
        out.extend_from_slice(&batch);
    }
    out
}

fn report(name: &str, bytes: usize, rounds: usize, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{name:<40} {:>10.1} MB/s  ({rounds} rounds of {bytes} bytes in {secs:.3} s)",
        (bytes * rounds) as f64 / secs / 1e6
    );
}

fn main() {
    for (batches_n, records, value) in [(64, 100, 100), (16, 10, 10_000), (1024, 1, 100)] {
        let data = payload(batches_n, records, value);
        let rounds = (256 << 20) / data.len() + 1;
        let started = Instant::now();
        for _ in 0..rounds {
            let n = batches(black_box(&data)).filter(|r| r.is_ok()).count();
            assert_eq!(n, batches_n);
        }
        report(
            &format!("validate {records} x {value} B per batch"),
            data.len(),
            rounds,
            started,
        );
    }

    let data = payload(4096, 100, 100);
    let mut file = tempfile::tempfile().expect("tempfile");
    file.write_all(&data).expect("write");
    let rounds = 8;
    let started = Instant::now();
    for _ in 0..rounds {
        let r = recover_segment(black_box(&file), 0, 4096).expect("scan");
        assert_eq!(r.batch_count, 4096);
    }
    report("recovery scan (page cache)", data.len(), rounds, started);
}
