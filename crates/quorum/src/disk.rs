//! The quorum's durable state under `<data>/__cluster_metadata-0/`:
//!
//! - `quorum.log`: an append-only sequence of frames, each
//!   `[length u32][crc32c u32][kind u8][payload]` (big-endian; the CRC
//!   covers kind and payload), where the payload is a protobuf `Entry` or
//!   `HardState`. Raft may overwrite a suffix of its log after a leader
//!   change; here that is one more append: an entry whose index is not past
//!   the last one replaces everything from that index on when the file is
//!   replayed. A torn or corrupt tail (a crash mid-write) is cut at the
//!   first bad frame.
//! - `quorum.snapshot`: the latest snapshot (`[crc32c u32][protobuf
//!   Snapshot]`), replaced atomically (temporary file, fsync, rename, fsync
//!   of the directory). When a snapshot is taken or installed, the log is
//!   rewritten the same way to hold only what follows it.
//!
//! All writes are done by jobs ([`AppendJob`], [`RewriteJob`]) that own
//! their bytes and a file handle, so the caller can run them on a blocking
//! thread and keep its executor free.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use protobuf::Message as _;
use raft::eraftpb::{Entry, HardState, Snapshot};

/// Directory of the metadata log inside the data directory (Kafka's name).
pub const METADATA_LOG_DIR: &str = "__cluster_metadata-0";
const LOG_FILE: &str = "quorum.log";
const SNAPSHOT_FILE: &str = "quorum.snapshot";
const FRAME_HEADER_BYTES: usize = 9;
/// Largest frame accepted when reading (bounds what a damaged length can
/// make the reader allocate).
const FRAME_BYTES_MAX: usize = 256 * 1024 * 1024;

const KIND_ENTRY: u8 = 1;
const KIND_HARD_STATE: u8 = 2;

/// What the files held at open.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The latest snapshot, if one was taken or installed.
    pub snapshot: Option<Snapshot>,
    /// The latest hard state (term, vote, commit).
    pub hard_state: Option<HardState>,
    /// Entries after the snapshot, contiguous by index.
    pub entries: Vec<Entry>,
}

/// The open log file.
pub struct DiskLog {
    dir: PathBuf,
    file: Arc<File>,
    /// Bytes in the log file (where the next append goes).
    len: u64,
}

fn invalid(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

fn frame(kind: u8, payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len() + 1).expect("a metadata log frame fits in u32");
    let mut crc = crc32c::crc32c(&[kind]);
    crc = crc32c::crc32c_append(crc, payload);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&crc.to_be_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
}

/// Encodes entries and a hard state as frames, in that order.
pub fn encode_frames(entries: &[Entry], hard_state: Option<&HardState>) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in entries {
        let bytes = entry.write_to_bytes().expect("encoding a raft entry");
        frame(KIND_ENTRY, &bytes, &mut out);
    }
    if let Some(hs) = hard_state {
        let bytes = hs.write_to_bytes().expect("encoding a raft hard state");
        frame(KIND_HARD_STATE, &bytes, &mut out);
    }
    out
}

/// Decodes frames from `bytes`: (kind, payload) pairs and the length of
/// the valid prefix (where a torn or corrupt frame starts).
fn decode_frames(bytes: &[u8]) -> (Vec<(u8, &[u8])>, usize) {
    let mut frames = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= FRAME_HEADER_BYTES {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_be_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
        if len == 0 || len > FRAME_BYTES_MAX || bytes.len() - at - 8 < len {
            break;
        }
        let body = &bytes[at + 8..at + 8 + len];
        if crc32c::crc32c(body) != crc {
            break;
        }
        frames.push((body[0], &body[1..]));
        at += 8 + len;
    }
    (frames, at)
}

impl DiskLog {
    /// Opens (creating) the metadata log in `dir`, cutting a torn tail.
    pub fn open(dir: &Path) -> io::Result<(DiskLog, Loaded)> {
        fs::create_dir_all(dir)?;
        let snapshot = read_snapshot(&dir.join(SNAPSHOT_FILE))?;
        let path = dir.join(LOG_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let bytes = fs::read(&path)?;
        let (frames, valid) = decode_frames(&bytes);
        if valid < bytes.len() {
            log::warn!(
                "{}: cutting {} bytes of torn or corrupt tail at byte {valid}",
                path.display(),
                bytes.len() - valid
            );
            file.set_len(valid as u64)?;
            file.sync_all()?;
        }
        let snapshot_index = snapshot.as_ref().map_or(0, |s| s.get_metadata().index);
        let mut loaded = Loaded {
            snapshot,
            ..Loaded::default()
        };
        for (kind, payload) in frames {
            match kind {
                KIND_ENTRY => {
                    let entry = Entry::parse_from_bytes(payload)
                        .map_err(|e| invalid(format!("{}: bad entry: {e}", path.display())))?;
                    push_entry(&mut loaded.entries, entry, snapshot_index, &path)?;
                }
                KIND_HARD_STATE => {
                    let hs = HardState::parse_from_bytes(payload)
                        .map_err(|e| invalid(format!("{}: bad hard state: {e}", path.display())))?;
                    loaded.hard_state = Some(hs);
                }
                other => {
                    return Err(invalid(format!(
                        "{}: unknown frame kind {other}",
                        path.display()
                    )))
                }
            }
        }
        // The commit index is at least the snapshot's (everything in it was
        // committed) and at most the last entry kept (a cut tail takes its
        // commit with it; the leader sends those entries again).
        if let Some(hs) = loaded.hard_state.as_mut() {
            let last = loaded.entries.last().map_or(snapshot_index, |e| e.index);
            hs.commit = hs.commit.max(snapshot_index).min(last);
        }
        Ok((
            DiskLog {
                dir: dir.to_path_buf(),
                file: Arc::new(file),
                len: valid as u64,
            },
            loaded,
        ))
    }

    /// A job appending `entries` and `hard_state` (made durable with
    /// fdatasync when `sync`). Jobs must run one at a time, in order.
    pub fn append(
        &mut self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
        sync: bool,
    ) -> AppendJob {
        let bytes = encode_frames(entries, hard_state);
        let job = AppendJob {
            file: self.file.clone(),
            position: self.len,
            bytes,
            sync,
        };
        self.len += job.bytes.len() as u64;
        job
    }

    /// A job replacing the snapshot with `snapshot` and the log with
    /// `hard_state` followed by `entries` (those after the snapshot).
    /// After it ran, hand its result to [`DiskLog::rewritten`].
    pub fn rewrite(
        &self,
        snapshot: &Snapshot,
        hard_state: &HardState,
        entries: &[Entry],
    ) -> RewriteJob {
        let snapshot_bytes = snapshot.write_to_bytes().expect("encoding a raft snapshot");
        RewriteJob {
            dir: self.dir.clone(),
            snapshot: snapshot_bytes,
            log: encode_frames(entries, Some(hard_state)),
        }
    }

    /// Adopts the log file a [`RewriteJob`] wrote.
    pub fn rewritten(&mut self, file: File, len: u64) {
        self.file = Arc::new(file);
        self.len = len;
    }
}

/// Adds a replayed entry: an index not past the last one overwrites the
/// suffix from there (raft's log replacement); a gap is corruption.
fn push_entry(
    entries: &mut Vec<Entry>,
    entry: Entry,
    snapshot_index: u64,
    path: &Path,
) -> io::Result<()> {
    if entry.index <= snapshot_index {
        return Ok(());
    }
    let expected = entries.last().map_or(snapshot_index + 1, |e| e.index + 1);
    if entry.index > expected {
        return Err(invalid(format!(
            "{}: entry {} follows entry {}",
            path.display(),
            entry.index,
            expected - 1
        )));
    }
    let keep = entries.partition_point(|e| e.index < entry.index);
    entries.truncate(keep);
    entries.push(entry);
    Ok(())
}

fn read_snapshot(path: &Path) -> io::Result<Option<Snapshot>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if bytes.len() < 4 {
        return Err(invalid(format!("{}: truncated", path.display())));
    }
    let crc = u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes"));
    if crc32c::crc32c(&bytes[4..]) != crc {
        return Err(invalid(format!("{}: CRC mismatch", path.display())));
    }
    Snapshot::parse_from_bytes(&bytes[4..])
        .map(Some)
        .map_err(|e| invalid(format!("{}: {e}", path.display())))
}

/// Appends frames at the end of the log file.
pub struct AppendJob {
    file: Arc<File>,
    position: u64,
    bytes: Vec<u8>,
    sync: bool,
}

impl AppendJob {
    /// Writes (and fdatasyncs when required). Blocking.
    pub fn run(self) -> io::Result<()> {
        if !self.bytes.is_empty() {
            self.file.write_all_at(&self.bytes, self.position)?;
        }
        if self.sync {
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// True when nothing is written and no sync is needed.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty() && !self.sync
    }
}

/// Replaces the snapshot and the log file atomically, each durable.
pub struct RewriteJob {
    dir: PathBuf,
    snapshot: Vec<u8>,
    log: Vec<u8>,
}

impl RewriteJob {
    /// Writes both files. Blocking. Returns the new log file and its length.
    pub fn run(self) -> io::Result<(File, u64)> {
        let mut snapshot = crc32c::crc32c(&self.snapshot).to_be_bytes().to_vec();
        snapshot.extend_from_slice(&self.snapshot);
        replace(&self.dir.join(SNAPSHOT_FILE), &snapshot)?;
        let path = self.dir.join(LOG_FILE);
        replace(&path, &self.log)?;
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        Ok((file, self.log.len() as u64))
    }
}

/// Atomically replaces `path` with `bytes`, durably.
fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
        Entry {
            index,
            term,
            data: data.to_vec().into(),
            ..Default::default()
        }
    }

    fn indexes(entries: &[Entry]) -> Vec<(u64, u64)> {
        entries.iter().map(|e| (e.index, e.term)).collect()
    }

    #[test]
    fn appends_replay_with_overwrites_and_torn_tails_are_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, loaded) = DiskLog::open(dir.path()).expect("open");
        assert!(loaded.entries.is_empty() && loaded.hard_state.is_none());
        let hs = HardState {
            term: 2,
            vote: 1,
            commit: 1,
            ..Default::default()
        };
        log.append(
            &[entry(1, 1, b"a"), entry(2, 1, b"b"), entry(3, 1, b"c")],
            Some(&hs),
            true,
        )
        .run()
        .expect("append");
        // A new leader replaces entries 2.. with its own.
        log.append(&[entry(2, 2, b"B")], None, true)
            .run()
            .expect("append");
        drop(log);
        let path = dir.path().join(LOG_FILE);
        let good_len = fs::metadata(&path).expect("meta").len();
        // A torn frame at the end (crash mid-write).
        let mut torn = encode_frames(&[entry(3, 2, b"never whole")], None);
        torn.truncate(torn.len() - 3);
        let mut f = OpenOptions::new().append(true).open(&path).expect("open");
        f.write_all(&torn).expect("torn write");
        drop(f);
        let (_log, loaded) = DiskLog::open(dir.path()).expect("reopen");
        assert_eq!(indexes(&loaded.entries), vec![(1, 1), (2, 2)]);
        assert_eq!(loaded.entries[1].data.as_ref(), b"B");
        assert_eq!(loaded.hard_state.expect("hs").term, 2);
        assert_eq!(
            fs::metadata(&path).expect("meta").len(),
            good_len,
            "tail cut"
        );
    }

    #[test]
    fn rewrite_keeps_the_snapshot_and_what_follows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) = DiskLog::open(dir.path()).expect("open");
        log.append(
            &(1..=5).map(|i| entry(i, 1, b"x")).collect::<Vec<_>>(),
            None,
            true,
        )
        .run()
        .expect("append");
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().index = 3;
        snapshot.mut_metadata().term = 1;
        snapshot.data = b"state at 3".to_vec().into();
        let hs = HardState {
            term: 1,
            commit: 2, // raised to the snapshot index on load
            ..Default::default()
        };
        let after: Vec<Entry> = (4..=5).map(|i| entry(i, 1, b"x")).collect();
        let (file, len) = log.rewrite(&snapshot, &hs, &after).run().expect("rewrite");
        log.rewritten(file, len);
        log.append(&[entry(6, 1, b"y")], None, true)
            .run()
            .expect("append");
        drop(log);
        let (_, loaded) = DiskLog::open(dir.path()).expect("reopen");
        let snap = loaded.snapshot.expect("snapshot");
        assert_eq!(snap.get_metadata().index, 3);
        assert_eq!(snap.data.as_ref(), b"state at 3");
        assert_eq!(indexes(&loaded.entries), vec![(4, 1), (5, 1), (6, 1)]);
        assert_eq!(loaded.hard_state.expect("hs").commit, 3);
    }

    #[test]
    fn damaged_files_are_errors_not_panics() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(SNAPSHOT_FILE), b"\x00\x00\x00\x01garbage").expect("write");
        assert!(DiskLog::open(dir.path()).is_err());
        fs::remove_file(dir.path().join(SNAPSHOT_FILE)).expect("rm");
        // A gap in indexes.
        let bytes = encode_frames(&[entry(1, 1, b""), entry(3, 1, b"")], None);
        fs::write(dir.path().join(LOG_FILE), bytes).expect("write");
        assert!(DiskLog::open(dir.path()).is_err());
        // Garbage only: cut to nothing.
        fs::write(dir.path().join(LOG_FILE), [0xffu8; 100]).expect("write");
        let (_, loaded) = DiskLog::open(dir.path()).expect("garbage is a torn tail");
        assert!(loaded.entries.is_empty());
    }
}
