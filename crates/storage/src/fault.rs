//! A fault-injecting [`Disk`] for tests: it wraps another disk (normally
//! [`OsDisk`], so the real buffered and O_DIRECT writers run underneath)
//! and can
//!
//! - fail the next operation of a kind with an errno (EIO, ENOSPC, ...),
//!   optionally after letting a prefix of a write reach the file (a torn
//!   write, as a full disk leaves it) — [`FaultyDisk::inject`];
//! - lose power at the n-th operation ([`FaultyDisk::crash_at`]): that
//!   operation and every later one fail and change nothing more (a write
//!   at the crash point may leave a prefix of its bytes);
//! - then rewrite the files into a state a power loss may have left
//!   ([`FaultyDisk::power_loss`]), which `kill -9` cannot simulate because
//!   the page cache survives it.
//!
//! The model of durability: per file the disk keeps the content that is
//! durable — what the file held when an fdatasync/fsync of it *started*
//! and then succeeded, or when a syncfs started — and whether its directory
//! entry is durable (a directory fsync or a syncfs after its creation).
//! After a power loss, a file whose entry is not durable may be gone; every
//! other file is its durable content with some of the newer bytes mixed in
//! page by page: each 4 KiB page that differs keeps the old bytes, takes
//! the new ones, takes only their first sectors (torn), or, past the
//! durable end, holds garbage; the length is the durable one, the current
//! one, or in between. Bytes a sync covered never change.
//!
//! Syncs are modelled, not performed, unless [`FaultyDisk::real_syncs`]
//! asks for them: the model alone decides what survives, and the tests run
//! fast. Runs repeat exactly: all choices come from one seeded generator,
//! the asynchronous operations (segment writes, syncs, seals, syncfs) take
//! turns behind one lock, and the seal's small files are written inline
//! rather than on the blocking pool, so a seed and a crash point name a
//! run ([`FaultyDisk::trace_hash`] checks it).

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::LocalBoxFuture;

use crate::disk::{write_then_sync_dir, Disk, OsDisk, SegmentFile};
use crate::error::Op;
use crate::writer::WriteMode;

/// Page granularity of the power-loss model.
const PAGE_BYTES: usize = 4096;
/// Sector granularity of torn pages.
const SECTOR_BYTES: usize = 512;

/// A fault to inject once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The kind of operation that fails.
    pub op: Op,
    /// How many operations of that kind succeed first.
    pub skip: u32,
    /// The errno it fails with (`libc::EIO`, `libc::ENOSPC`, ...).
    pub errno: i32,
    /// For writes (segments and small files): what reaches the file first.
    pub tear: Tear,
}

/// How much of a failing write reaches the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tear {
    /// Nothing.
    Nothing,
    /// A prefix of random length, shorter than the write.
    Random,
    /// The first this many bytes (at most all but one).
    Prefix(usize),
}

impl Fault {
    /// The next `op` fails with `errno`.
    pub fn next(op: Op, errno: i32) -> Fault {
        Fault {
            op,
            skip: 0,
            errno,
            tear: Tear::Nothing,
        }
    }

    /// The next segment write leaves a prefix of its bytes, then fails
    /// with `errno` (ENOSPC: a full disk takes what fits).
    pub fn torn_write(errno: i32, tear: Tear) -> Fault {
        Fault {
            op: Op::Write,
            skip: 0,
            errno,
            tear,
        }
    }
}

/// The error every operation returns once the power is gone.
pub fn power_lost() -> io::Error {
    io::Error::other("simulated power loss")
}

/// A [`Disk`] that injects faults and simulates power loss. Clones share
/// their state.
#[derive(Clone)]
pub struct FaultyDisk {
    inner: Arc<dyn Disk>,
    state: Arc<Mutex<State>>,
    /// Held across every asynchronous operation: one at a time, in the
    /// order the shard's tasks ask.
    turn: Arc<futures::lock::Mutex<()>>,
}

struct State {
    rng: Rng,
    /// Operations counted so far (every kind of [`Op`]).
    ops: u64,
    crash_at: Option<u64>,
    crashed: bool,
    real_syncs: bool,
    faults: Vec<Fault>,
    files: BTreeMap<PathBuf, FileModel>,
    /// FNV-1a over (op, path) of every operation: equal for equal runs.
    trace: u64,
}

struct FileModel {
    /// What survives a power loss for sure.
    durable: Vec<u8>,
    /// Whether the directory entry survives.
    entry_durable: bool,
}

/// What an operation may do.
enum Enter {
    Proceed,
    Fail(io::Error, Tear),
    /// The power goes at this operation.
    Crash,
}

/// What [`FaultyDisk::power_loss`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LossReport {
    /// Files whose directory entry was lost.
    pub vanished: usize,
    /// Files left different from what was last written.
    pub changed: usize,
}

impl FaultyDisk {
    /// A faulty disk over the real filesystem, its choices seeded by `seed`.
    pub fn new(seed: u64) -> FaultyDisk {
        Self::wrap(Arc::new(OsDisk), seed)
    }

    /// A faulty disk over `inner`.
    pub fn wrap(inner: Arc<dyn Disk>, seed: u64) -> FaultyDisk {
        FaultyDisk {
            inner,
            state: Arc::new(Mutex::new(State {
                rng: Rng(seed ^ 0x005e_ed0f_d15c),
                ops: 0,
                crash_at: None,
                crashed: false,
                real_syncs: false,
                faults: Vec::new(),
                files: BTreeMap::new(),
                trace: 0xcbf2_9ce4_8422_2325,
            })),
            turn: Arc::new(futures::lock::Mutex::new(())),
        }
    }

    /// This disk as the storage crate takes it.
    pub fn shared(&self) -> Arc<dyn Disk> {
        Arc::new(self.clone())
    }

    /// Performs syncs on the inner disk too (default: modelled only).
    pub fn real_syncs(&self, on: bool) {
        self.lock().real_syncs = on;
    }

    /// Queues a one-shot fault.
    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// Loses power at the `op`-th operation from now (1 = the next one).
    pub fn crash_at(&self, op: u64) {
        let mut state = self.lock();
        let at = state.ops + op.max(1);
        state.crash_at = Some(at);
    }

    /// Loses power now: every later operation fails.
    pub fn crash_now(&self) {
        self.lock().crashed = true;
    }

    /// True once the power is gone.
    pub fn crashed(&self) -> bool {
        self.lock().crashed
    }

    /// Operations counted so far.
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// A hash of every operation so far, kind and file name: two runs with
    /// the same hash made the same calls in the same order.
    pub fn trace_hash(&self) -> u64 {
        self.lock().trace
    }

    /// A number from the disk's generator, below `n` (for test drivers that
    /// want one seed for everything).
    pub fn random_below(&self, n: u64) -> u64 {
        self.lock().rng.below(n)
    }

    /// Rewrites every file this disk touched into a state a power loss
    /// may have left, then forgets them and restores power: reopening the
    /// logs on this disk is the restart. Only call it once nothing holds
    /// the files for writing (drop the logs first).
    pub fn power_loss(&self) -> io::Result<LossReport> {
        let mut state = self.lock();
        let files = std::mem::take(&mut state.files);
        let mut report = LossReport::default();
        for (path, model) in files {
            let current = match std::fs::read(&path) {
                Ok(bytes) => Some(bytes),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(e),
            };
            if !model.entry_durable && state.rng.below(2) == 0 {
                if current.is_some() {
                    std::fs::remove_file(&path)?;
                    report.vanished += 1;
                }
                continue;
            }
            let current = current.unwrap_or_default();
            let after = mix(&model.durable, &current, &mut state.rng);
            if after != current {
                report.changed += 1;
                std::fs::write(&path, &after)?;
            }
        }
        state.crashed = false;
        state.crash_at = None;
        state.faults.clear();
        Ok(report)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A test that panicked with the lock held already failed.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts an operation and decides its fate.
    fn enter(&self, op: Op, path: &Path) -> Enter {
        let mut state = self.lock();
        if state.crashed {
            return Enter::Fail(power_lost(), Tear::Nothing);
        }
        state.ops += 1;
        // The file's name, not its path: runs in different temporary
        // directories trace alike.
        let mut trace = state.trace;
        let name = path.file_name().map_or(&[][..], |n| n.as_encoded_bytes());
        for byte in std::iter::once(&(op as u8)).chain(name) {
            trace = (trace ^ u64::from(*byte)).wrapping_mul(0x100_0000_01b3);
        }
        state.trace = trace;
        if state.crash_at == Some(state.ops) {
            state.crashed = true;
            return Enter::Crash;
        }
        let Some(i) = state.faults.iter().position(|f| f.op == op) else {
            return Enter::Proceed;
        };
        if state.faults[i].skip > 0 {
            state.faults[i].skip -= 1;
            return Enter::Proceed;
        }
        let fault = state.faults.remove(i);
        Enter::Fail(io::Error::from_raw_os_error(fault.errno), fault.tear)
    }

    /// Starts tracking `path` if new: what is there now is durable (it was
    /// there before this disk touched it).
    fn track(&self, path: &Path) {
        let mut state = self.lock();
        if state.files.contains_key(path) {
            return;
        }
        let model = match std::fs::read(path) {
            Ok(durable) => FileModel {
                durable,
                entry_durable: true,
            },
            Err(_) => FileModel {
                durable: Vec::new(),
                entry_durable: false,
            },
        };
        state.files.insert(path.to_path_buf(), model);
    }

    /// Records that `path`'s content `synced` is durable, unless the power
    /// went meanwhile.
    fn synced(&self, path: &Path, synced: Vec<u8>) -> io::Result<()> {
        let mut state = self.lock();
        if state.crashed {
            return Err(power_lost());
        }
        if let Some(model) = state.files.get_mut(path) {
            model.durable = synced;
        }
        Ok(())
    }

    /// Fails with the power loss when it happened meanwhile.
    fn still_powered(&self) -> io::Result<()> {
        if self.lock().crashed {
            return Err(power_lost());
        }
        Ok(())
    }

    fn syncs_for_real(&self) -> bool {
        self.lock().real_syncs
    }

    /// How many of `len` bytes a tear leaves (always fewer than `len`).
    fn torn_len(&self, tear: Tear, len: usize) -> usize {
        match tear {
            Tear::Nothing => 0,
            Tear::Random => self.lock().rng.below(len as u64) as usize,
            Tear::Prefix(n) => n.min(len.saturating_sub(1)),
        }
    }

    /// The content of every tracked file now (what a syncfs starting now
    /// covers).
    fn snapshot_all(&self) -> io::Result<Vec<(PathBuf, Vec<u8>)>> {
        let paths: Vec<PathBuf> = self.lock().files.keys().cloned().collect();
        let mut out = Vec::with_capacity(paths.len());
        for path in paths {
            match std::fs::read(&path) {
                Ok(bytes) => out.push((path, bytes)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Makes the snapshot durable, entries included.
    fn apply_syncfs(&self, snapshot: Vec<(PathBuf, Vec<u8>)>) -> io::Result<()> {
        let mut state = self.lock();
        if state.crashed {
            return Err(power_lost());
        }
        for (path, bytes) in snapshot {
            if let Some(model) = state.files.get_mut(&path) {
                model.durable = bytes;
                model.entry_durable = true;
            }
        }
        Ok(())
    }
}

impl Disk for FaultyDisk {
    fn create_segment(&self, path: &Path) -> io::Result<File> {
        match self.enter(Op::Create, path) {
            Enter::Proceed => {}
            Enter::Fail(e, _) => return Err(e),
            Enter::Crash => return Err(power_lost()),
        }
        self.track(path);
        self.inner.create_segment(path)
    }

    fn open_segment(&self, path: &Path) -> io::Result<File> {
        match self.enter(Op::Open, path) {
            Enter::Proceed => {}
            Enter::Fail(e, _) => return Err(e),
            Enter::Crash => return Err(power_lost()),
        }
        self.track(path);
        self.inner.open_segment(path)
    }

    fn segment_writer(
        &self,
        path: &Path,
        file: &File,
        size: u64,
        mode: WriteMode,
        preallocate_step: u64,
    ) -> io::Result<Rc<dyn SegmentFile>> {
        match self.enter(Op::OpenWriter, path) {
            Enter::Proceed => {}
            Enter::Fail(e, _) => return Err(e),
            Enter::Crash => return Err(power_lost()),
        }
        self.track(path);
        let inner = self
            .inner
            .segment_writer(path, file, size, mode, preallocate_step)?;
        Ok(Rc::new(FaultySegment {
            inner,
            path: path.to_path_buf(),
            disk: self.clone(),
        }))
    }

    fn set_len(&self, path: &Path, file: &File, len: u64) -> io::Result<()> {
        match self.enter(Op::Truncate, path) {
            Enter::Proceed => {}
            Enter::Fail(e, _) => return Err(e),
            Enter::Crash => return Err(power_lost()),
        }
        self.track(path);
        self.inner.set_len(path, file, len)
    }

    fn sync_file(&self, path: &Path, file: &File) -> io::Result<()> {
        match self.enter(Op::SyncFile, path) {
            Enter::Proceed => {}
            Enter::Fail(e, _) => return Err(e),
            Enter::Crash => return Err(power_lost()),
        }
        self.track(path);
        let content = std::fs::read(path)?;
        if self.syncs_for_real() {
            self.inner.sync_file(path, file)?;
        }
        self.synced(path, content)
    }

    fn write_files(&self, files: &[(PathBuf, Vec<u8>)], sync_each: bool) -> io::Result<()> {
        for (path, bytes) in files {
            self.track(path);
            match self.enter(Op::WriteFiles, path) {
                Enter::Proceed => {}
                Enter::Fail(e, tear) => {
                    if tear != Tear::Nothing {
                        let cut = self.torn_len(tear, bytes.len());
                        self.inner
                            .write_files(&[(path.clone(), bytes[..cut].to_vec())], false)?;
                    }
                    return Err(e);
                }
                Enter::Crash => {
                    let cut = self.torn_len(Tear::Random, bytes.len() + 1);
                    self.inner
                        .write_files(&[(path.clone(), bytes[..cut].to_vec())], false)?;
                    return Err(power_lost());
                }
            }
            let real = sync_each && self.syncs_for_real();
            self.inner
                .write_files(&[(path.clone(), bytes.clone())], real)?;
            if sync_each {
                self.synced(path, bytes.clone())?;
            }
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        match self.enter(Op::SyncDir, dir) {
            Enter::Proceed => {}
            Enter::Fail(e, _) => return Err(e),
            Enter::Crash => return Err(power_lost()),
        }
        if self.syncs_for_real() {
            self.inner.sync_dir(dir)?;
        }
        let mut state = self.lock();
        if state.crashed {
            return Err(power_lost());
        }
        for (path, model) in state.files.iter_mut() {
            if path.parent() == Some(dir) {
                model.entry_durable = true;
            }
        }
        Ok(())
    }

    fn syncfs(&self, fs: &File) -> io::Result<()> {
        match self.enter(Op::Syncfs, Path::new("")) {
            Enter::Proceed => {}
            Enter::Fail(e, _) => return Err(e),
            Enter::Crash => return Err(power_lost()),
        }
        let snapshot = self.snapshot_all()?;
        if self.syncs_for_real() {
            self.inner.syncfs(fs)?;
        }
        self.apply_syncfs(snapshot)
    }

    fn syncfs_async(self: Arc<Self>, fs: Arc<File>) -> LocalBoxFuture<'static, io::Result<()>> {
        Box::pin(async move {
            let _turn = self.turn.lock().await;
            match self.enter(Op::Syncfs, Path::new("")) {
                Enter::Proceed => {}
                Enter::Fail(e, _) => return Err(e),
                Enter::Crash => return Err(power_lost()),
            }
            // Taken on the shard before the sync starts: writes made while
            // it runs are not covered.
            let snapshot = self.snapshot_all()?;
            if self.syncs_for_real() {
                let inner = self.inner.clone();
                glommio::executor()
                    .spawn_blocking(move || inner.syncfs(&fs))
                    .await?;
            }
            self.apply_syncfs(snapshot)
        })
    }

    fn seal_files(
        self: Arc<Self>,
        files: Vec<(PathBuf, Vec<u8>)>,
        dir: PathBuf,
    ) -> LocalBoxFuture<'static, crate::Result<()>> {
        // Inline on the shard (small files on a test filesystem): no other
        // thread's timing decides the order of operations.
        Box::pin(async move {
            let _turn = self.turn.lock().await;
            write_then_sync_dir(&*self, &files, &dir)
        })
    }
}

/// A segment write handle behind a [`FaultyDisk`].
struct FaultySegment {
    inner: Rc<dyn SegmentFile>,
    path: PathBuf,
    disk: FaultyDisk,
}

impl SegmentFile for FaultySegment {
    fn path(&self) -> &Path {
        &self.path
    }

    fn write_at(&self, data: Vec<u8>, position: u64) -> LocalBoxFuture<'_, io::Result<()>> {
        Box::pin(async move {
            let _turn = self.disk.turn.lock().await;
            let (error, cut) = match self.disk.enter(Op::Write, &self.path) {
                Enter::Proceed => return self.inner.write_at(data, position).await,
                Enter::Fail(e, tear) => (e, self.disk.torn_len(tear, data.len())),
                Enter::Crash => (
                    power_lost(),
                    self.disk.torn_len(Tear::Random, data.len() + 1),
                ),
            };
            if cut > 0 {
                // The prefix reaches the file; what the inner writer says
                // about it no longer matters.
                let _ = self.inner.write_at(data[..cut].to_vec(), position).await;
            }
            Err(error)
        })
    }

    fn fdatasync(&self) -> LocalBoxFuture<'_, io::Result<()>> {
        Box::pin(async move {
            let _turn = self.disk.turn.lock().await;
            match self.disk.enter(Op::Fdatasync, &self.path) {
                Enter::Proceed => {}
                Enter::Fail(e, _) => return Err(e),
                Enter::Crash => return Err(power_lost()),
            }
            // What the sync covers is what the file holds when it starts.
            let content = std::fs::read(&self.path)?;
            if self.disk.syncs_for_real() {
                self.inner.fdatasync().await?;
            }
            self.disk.synced(&self.path, content)
        })
    }

    fn seal(&self, size: u64) -> LocalBoxFuture<'_, io::Result<()>> {
        Box::pin(async move {
            let _turn = self.disk.turn.lock().await;
            match self.disk.enter(Op::Seal, &self.path) {
                Enter::Proceed => {}
                Enter::Fail(e, _) => return Err(e),
                Enter::Crash => return Err(power_lost()),
            }
            // The cut is real (the inner seal also syncs); nobody writes a
            // sealed segment, so its content after the seal is what the
            // sync covered.
            self.inner.seal(size).await?;
            self.disk.still_powered()?;
            let content = std::fs::read(&self.path)?;
            self.disk.synced(&self.path, content)
        })
    }

    fn may_extend_past_data(&self) -> bool {
        self.inner.may_extend_past_data()
    }
}

/// What a power loss leaves of a file whose durable content is `durable`
/// and whose current content is `current`.
fn mix(durable: &[u8], current: &[u8], rng: &mut Rng) -> Vec<u8> {
    if durable == current {
        return current.to_vec();
    }
    let (short, long) = if durable.len() <= current.len() {
        (durable.len(), current.len())
    } else {
        (current.len(), durable.len())
    };
    let len = match rng.below(3) {
        0 => durable.len(),
        1 => current.len(),
        _ => short + rng.below((long - short) as u64 + 1) as usize,
    };
    let mut out = durable.to_vec();
    out.resize(len, 0);
    let newer = |i: usize| current.get(i).copied().unwrap_or(0);
    for page in (0..len).step_by(PAGE_BYTES) {
        let end = (page + PAGE_BYTES).min(len);
        if (page..end).all(|i| out[i] == newer(i)) {
            continue;
        }
        match rng.below(10) {
            // The page never reached the disk.
            0..=3 => {}
            // Only its first sectors did.
            4 => {
                let sectors = rng.below((PAGE_BYTES / SECTOR_BYTES) as u64) as usize;
                let torn_end = (page + sectors * SECTOR_BYTES).min(end);
                for (i, byte) in out.iter_mut().enumerate().take(torn_end).skip(page) {
                    *byte = newer(i);
                }
            }
            // Past the durable end, blocks the file was given may hold
            // anything (another file's old data).
            5 if page >= durable.len() => {
                for byte in &mut out[page..end] {
                    *byte = rng.below(256) as u8;
                }
            }
            // It did.
            _ => {
                for (i, byte) in out.iter_mut().enumerate().take(end).skip(page) {
                    *byte = newer(i);
                }
            }
        }
    }
    out
}

/// SplitMix64: small, seeded, good enough to pick faults.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform below `n` (0 when `n` is 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        self.next() % n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixing_never_changes_synced_bytes_below_the_newer_end() {
        let mut rng = Rng(7);
        let durable: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let mut current = durable.clone();
        current.extend((0..9_000u32).map(|i| (i % 13) as u8 + 1));
        let mut seen_lengths = std::collections::BTreeSet::new();
        for _ in 0..500 {
            let after = mix(&durable, &current, &mut rng);
            seen_lengths.insert(after.len());
            assert!(after.len() >= durable.len() && after.len() <= current.len());
            assert_eq!(&after[..durable.len()], &durable[..]);
        }
        assert!(seen_lengths.len() > 3, "lengths vary");
        assert_eq!(mix(&durable, &durable, &mut rng), durable);
    }

    #[test]
    fn faults_fire_once_in_order_and_power_loss_stops_everything() {
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = FaultyDisk::new(1);
        let files = vec![(dir.path().join("a"), vec![1u8; 10])];
        disk.inject(Fault {
            op: Op::WriteFiles,
            skip: 1,
            errno: libc::ENOSPC,
            tear: Tear::Nothing,
        });
        disk.write_files(&files, true).expect("skipped");
        let error = disk.write_files(&files, true).expect_err("injected");
        assert_eq!(error.kind(), io::ErrorKind::StorageFull);
        disk.write_files(&files, true).expect("once only");
        disk.crash_at(2);
        disk.write_files(&files, true).expect("before the crash");
        assert!(disk.write_files(&files, true).is_err());
        assert!(disk.crashed());
        assert!(
            disk.sync_dir(dir.path()).is_err(),
            "nothing after the crash"
        );
        disk.power_loss().expect("loss");
        assert!(!disk.crashed());
        // Never synced into the directory: gone, or what was written (the
        // crash tore the last rewrite, which held the same bytes).
        if let Ok(after) = std::fs::read(dir.path().join("a")) {
            assert!(
                after.len() <= 10 && after.iter().all(|b| *b <= 1),
                "{after:?}"
            );
        }
    }
}
