//! Helpers shared by ringbroker's fuzz targets (`fuzz_targets/`): steering
//! bytes that make a CRC-protected format reachable past its checksum, and
//! a scratch directory for the targets that open real files.
//!
//! Every target installs the broker's global allocator itself
//! (`ringbroker_protocol::alloc::BrokerAllocator`), as `src/main.rs` does.

use std::path::{Path, PathBuf};

use ringbroker_protocol::batch::BATCH_HEADER_LEN;

/// Rewrites the CRC32C of every batch found back to back from the start
/// of `buf` (as far as the batch lengths chain), so that mutated batches
/// reach the checks behind the CRC. Stops at the first span that is not a
/// v2 batch header with a length that fits.
pub fn fix_crcs(buf: &mut [u8]) {
    let mut position = 0usize;
    while buf.len() - position >= BATCH_HEADER_LEN {
        let at = &buf[position..];
        let length = i32::from_be_bytes([at[8], at[9], at[10], at[11]]);
        if at[16] != 2 || length < (BATCH_HEADER_LEN - 12) as i32 {
            return;
        }
        let total = length as usize + 12;
        if total > at.len() {
            return;
        }
        let crc = crc32c::crc32c(&at[21..total]);
        buf[position + 17..position + 21].copy_from_slice(&crc.to_be_bytes());
        position += total;
    }
}

/// Splits `data` into a steering byte and the rest (an empty input
/// steers with 0).
pub fn steer(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((first, rest)) => (*first, rest),
        None => (0, data),
    }
}

/// A directory of this process for the targets that need files: under
/// /dev/shm when there is one (no disk I/O, fsync is free), else under
/// the temporary directory. Emptied by [`Scratch::fresh`].
pub struct Scratch {
    root: PathBuf,
}

impl Scratch {
    /// The scratch directory of this process (not created yet).
    pub fn new(name: &str) -> Scratch {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        Scratch {
            root: base.join(format!("ringbroker-fuzz-{name}-{}", std::process::id())),
        }
    }

    /// Removes whatever the last run left and returns the (absent)
    /// directory path, for code that creates it.
    pub fn fresh(&self) -> &Path {
        if self.root.exists() {
            std::fs::remove_dir_all(&self.root).expect("scratch directory is removable");
        }
        &self.root
    }

    /// Removes the directory (end of a run).
    pub fn clear(&self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
