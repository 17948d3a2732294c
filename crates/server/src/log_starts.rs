//! Log start offsets moved by DeleteRecords, persisted in Kafka's
//! `log-start-offset-checkpoint` file of the log directory (entries
//! `topic partition offset`). Retention moves the log start by deleting
//! whole segments, which the files themselves record; DeleteRecords can move
//! it inside a segment, which only this file records, so it is written
//! (atomically, durably) before DeleteRecords is answered.
//!
//! Shard 0 owns the file: shards holding the partitions advance their logs,
//! then send the new offsets to shard 0, which merges them into its map and
//! rewrites the file. At start every shard applies the entries to the
//! partitions it opens; entries of deleted topics are dropped with them.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use ringbroker_storage::checkpoint;

/// The file's name in the data directory (Kafka's).
pub const LOG_START_CHECKPOINT_FILE: &str = "log-start-offset-checkpoint";

/// Log start offsets by (topic, partition).
pub type LogStarts = BTreeMap<(String, i32), i64>;

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(LOG_START_CHECKPOINT_FILE)
}

/// Reads the file (empty when it does not exist).
pub fn load(data_dir: &Path) -> io::Result<LogStarts> {
    let entries = checkpoint::read(&path(data_dir), |fields| match fields {
        [topic, partition, offset] => Some((
            (topic.to_string(), partition.parse().ok()?),
            offset.parse::<i64>().ok().filter(|o| *o >= 0)?,
        )),
        _ => None,
    })?;
    Ok(entries.unwrap_or_default().into_iter().collect())
}

/// Replaces the file with `starts` (blocking).
pub fn save(data_dir: &Path, starts: &LogStarts) -> io::Result<()> {
    let lines: Vec<String> = starts
        .iter()
        .map(|((topic, partition), offset)| format!("{topic} {partition} {offset}"))
        .collect();
    checkpoint::write(&path(data_dir), &lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_kafka_format() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(load(dir.path()).expect("load").is_empty());
        let mut starts = LogStarts::new();
        starts.insert(("orders".into(), 3), 120);
        starts.insert(("a.b-c".into(), 0), 7);
        save(dir.path(), &starts).expect("save");
        assert_eq!(
            std::fs::read_to_string(path(dir.path())).expect("file"),
            "0\n2\na.b-c 0 7\norders 3 120\n"
        );
        assert_eq!(load(dir.path()).expect("load"), starts);
        std::fs::write(path(dir.path()), "0\n1\norders x 1\n").expect("write");
        assert!(load(dir.path()).is_err());
    }
}
