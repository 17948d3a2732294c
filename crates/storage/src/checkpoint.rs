//! Kafka's checkpoint files: small text files of the form
//!
//! ```text
//! <version>
//! <entry count>
//! <entry>
//! ...
//! ```
//!
//! used for `leader-epoch-checkpoint` (entries `epoch start_offset`) and
//! `log-start-offset-checkpoint` (entries `topic partition offset`). Written
//! atomically: a temporary file is written and fsynced, renamed over the old
//! one, and the directory fsynced, so a crash leaves the old or the new file,
//! never a mix. Reading is strict: a malformed file is an error (the caller
//! decides whether to rebuild), never a panic.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// The only checkpoint format version Kafka writes.
pub const CHECKPOINT_VERSION: u32 = 0;

/// Entries a checkpoint file may hold before it is refused as corrupt (a
/// bound on what a damaged file can make the broker allocate).
const ENTRIES_MAX: usize = 10_000_000;

fn corrupt(path: &Path, why: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("checkpoint {} is malformed: {why}", path.display()),
    )
}

/// Reads a checkpoint file; each entry line is split on whitespace and
/// handed to `parse`, which returns `None` for a malformed entry.
/// `Ok(None)` when the file does not exist.
pub fn read<T>(path: &Path, parse: impl Fn(&[&str]) -> Option<T>) -> io::Result<Option<Vec<T>>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut lines = text.lines();
    let version: u32 = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| corrupt(path, "no version line"))?;
    if version != CHECKPOINT_VERSION {
        return Err(corrupt(path, format!("unknown version {version}")));
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| corrupt(path, "no entry count"))?;
    if count > ENTRIES_MAX {
        return Err(corrupt(path, format!("{count} entries")));
    }
    let mut entries = Vec::with_capacity(count);
    for i in 0..count {
        let line = lines
            .next()
            .ok_or_else(|| corrupt(path, format!("{count} entries announced, {i} found")))?;
        let fields: Vec<&str> = line.split_whitespace().collect();
        let entry = parse(&fields).ok_or_else(|| corrupt(path, format!("entry {i}: {line:?}")))?;
        entries.push(entry);
    }
    if lines.any(|l| !l.trim().is_empty()) {
        return Err(corrupt(path, "more lines than announced"));
    }
    Ok(Some(entries))
}

/// Writes a checkpoint file atomically and durably (temporary file, fsync,
/// rename, fsync of the directory). `entries` are the entry lines without
/// line ends.
pub fn write(path: &Path, entries: &[String]) -> io::Result<()> {
    let mut text = format!("{CHECKPOINT_VERSION}\n{}\n", entries.len());
    for entry in entries {
        debug_assert!(!entry.contains('\n'));
        text.push_str(entry);
        text.push('\n');
    }
    let tmp = path.with_extension("tmp");
    {
        let mut file = File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(fields: &[&str]) -> Option<(i32, i64)> {
        match fields {
            [a, b] => Some((a.parse().ok()?, b.parse().ok()?)),
            _ => None,
        }
    }

    #[test]
    fn round_trip_and_kafka_layout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("leader-epoch-checkpoint");
        assert_eq!(read(&path, pair).expect("read"), None);
        write(&path, &["0 0".into(), "3 120".into()]).expect("write");
        assert_eq!(
            std::fs::read_to_string(&path).expect("text"),
            "0\n2\n0 0\n3 120\n"
        );
        assert_eq!(
            read(&path, pair).expect("read"),
            Some(vec![(0, 0), (3, 120)])
        );
        write(&path, &[]).expect("empty");
        assert_eq!(read(&path, pair).expect("read"), Some(vec![]));
        assert!(!path.with_extension("tmp").exists());
    }

    #[test]
    fn malformed_files_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cp");
        for bad in [
            "",
            "1\n0\n",
            "0\n2\n1 1\n",
            "0\n1\nx 1\n",
            "0\n1\n1 1\n2 2\n",
            "0\n99999999999\n",
        ] {
            std::fs::write(&path, bad).expect("write");
            let err = read(&path, pair).expect_err(bad);
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{bad:?}");
        }
    }
}
