//! `ringbroker-logdump`: prints the record batches of segment files (and
//! the entries of `.index` / `.timeindex` files) for operators checking a
//! data directory, e.g. after a crash.
//!
//! Usage: `ringbroker-logdump [--records] PATH...` where PATH is a `.log`,
//! `.index` or `.timeindex` file or a partition directory.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ringbroker_protocol::batch::{parse_header, validate_batch, BATCH_HEADER_LEN};
use ringbroker_storage::index::{OffsetIndex, TimeIndex};

fn main() -> ExitCode {
    let mut records = false;
    let mut paths = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--records" => records = true,
            "-h" | "--help" => {
                println!("usage: ringbroker-logdump [--records] PATH...\n  PATH: a .log, .index or .timeindex file, or a partition directory");
                return ExitCode::SUCCESS;
            }
            _ => paths.push(PathBuf::from(arg)),
        }
    }
    if paths.is_empty() {
        eprintln!("usage: ringbroker-logdump [--records] PATH...");
        return ExitCode::from(2);
    }
    let mut ok = true;
    for path in expand(&paths) {
        let result = match path.extension().and_then(|e| e.to_str()) {
            Some("log") => dump_log(&path, records),
            Some("index") | Some("timeindex") => dump_index(&path),
            _ => continue,
        };
        if let Err(e) = result {
            eprintln!("{}: {e}", path.display());
            ok = false;
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn expand(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            entries.sort();
            out.extend(entries);
        } else {
            out.push(path.clone());
        }
    }
    out
}

fn base_offset_of(path: &Path) -> i64 {
    path.file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn dump_log(path: &Path, records: bool) -> std::io::Result<()> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    println!("Dumping {} ({len} bytes)", path.display());
    let mut position = 0u64;
    while position < len {
        let mut header = [0u8; BATCH_HEADER_LEN];
        if position + BATCH_HEADER_LEN as u64 > len {
            println!(
                "position {position}: {} trailing bytes (torn header)",
                len - position
            );
            break;
        }
        file.read_exact_at(&mut header, position)?;
        let h = match parse_header(&header) {
            Ok(h) => h,
            Err(e) => {
                println!("position {position}: invalid batch header: {e}; stopping");
                break;
            }
        };
        let total = h.total_len() as u64;
        if position + total > len {
            println!("position {position}: batch of {total} bytes runs past the end (torn)");
            break;
        }
        let mut buf = vec![0u8; h.total_len()];
        file.read_exact_at(&mut buf, position)?;
        let verdict = match validate_batch(&buf) {
            Ok(_) => "valid".to_string(),
            Err(e) => format!("INVALID: {e}"),
        };
        println!(
            "baseOffset: {} lastOffset: {} count: {} position: {position} size: {total} compression: {} createTime/maxTimestamp: {} producerId: {} producerEpoch: {} baseSequence: {} isTransactional: {} isControl: {} crc: {:#010x} {verdict}",
            h.base_offset,
            h.last_offset(),
            h.record_count,
            ["none", "gzip", "snappy", "lz4", "zstd"].get(usize::from(h.compression_code())).copied().unwrap_or("unknown"),
            h.max_timestamp,
            h.producer_id,
            h.producer_epoch,
            h.base_sequence,
            h.is_transactional(),
            h.is_control(),
            h.crc,
        );
        if records {
            let mut bytes = bytes::Bytes::from(buf);
            match kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes) {
                Ok(decoded) => {
                    for r in decoded.records {
                        println!(
                            "| offset: {} timestamp: {} keySize: {} valueSize: {} headers: {}",
                            r.offset,
                            r.timestamp,
                            r.key.as_ref().map_or(-1, |k| k.len() as i64),
                            r.value.as_ref().map_or(-1, |v| v.len() as i64),
                            r.headers.len()
                        );
                    }
                }
                Err(e) => println!("| cannot decode records: {e}"),
            }
        }
        position += total;
    }
    Ok(())
}

fn dump_index(path: &Path) -> std::io::Result<()> {
    let bytes = std::fs::read(path)?;
    let base = base_offset_of(path);
    let invalid = |e: &dyn std::fmt::Display| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
    };
    println!("Dumping {}", path.display());
    if path.extension().and_then(|e| e.to_str()) == Some("index") {
        let index = OffsetIndex::decode(base, &bytes).map_err(|e| invalid(&e))?;
        println!("{} entries, last {:?}", index.len(), index.last_entry());
    } else {
        let index = TimeIndex::decode(base, &bytes).map_err(|e| invalid(&e))?;
        println!(
            "{} entries, max timestamp {:?}",
            index.len(),
            index.max_timestamp()
        );
    }
    Ok(())
}
