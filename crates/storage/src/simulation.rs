//! Fault simulations of the storage crate on [`FaultyDisk`], on a glommio
//! executor as the broker runs it (tests only).
//!
//! - Power loss at many points of a seeded stream of appends, flusher
//!   rounds, idle-handle closes and clean restarts: after the restart every
//!   batch acknowledged under acks=all (covered by `durable_offset`) is
//!   there byte for byte, and reads return only whole, CRC-valid batches
//!   that were appended at those offsets. Both write modes, both sync
//!   scopes. `RINGBROKER_SIM_SEEDS` runs more seeds.
//! - EIO on fdatasync and syncfs: the partition fails, its durable offset
//!   stays, waiters wake without an acknowledgement.
//! - EIO and ENOSPC on writes, seals and index-file writes: typed errors
//!   with their kind and errno.
//! - Torn writes at every length: recovery cuts them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::error::{Op, StorageError};
use crate::fault::{Fault, FaultyDisk, LossReport, Rng, Tear};
use crate::flusher::{Flusher, SyncScope};
use crate::log::{write_shutdown_files, AppendError, LogConfig, PartitionLog};
use crate::partition::Partition;
use crate::writer::WriteMode;
use ringbroker_protocol::batch::{
    self, build_batch, stamp_base_offset, stamp_leader_epoch, ProducerFields,
};

/// Runs `body` on a glommio executor.
fn on_executor<F, Fut>(body: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(body)
        .expect("executor")
        .join()
        .expect("simulation");
}

/// A directory for simulated files: tmpfs when there is one (syncs are
/// modelled, so a fast filesystem loses nothing).
fn sim_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().expect("tempdir")
}

/// True when O_DIRECT files can be written where [`sim_dir`] puts them.
fn direct_io_works() -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = sim_dir();
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(dir.path().join("probe"))
        .is_ok()
}

/// Lets spawned tasks (syncs) run.
async fn yield_now() {
    let mut yielded = false;
    futures::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}

/// Runs rounds until `partition` has nothing to write and no sync in
/// flight, or `rounds` passed.
async fn settle(flusher: &Rc<Flusher>, partitions: &[Rc<Partition>], rounds: usize) {
    for _ in 0..rounds {
        let busy = partitions.iter().any(|p| {
            let log = p.log.borrow();
            p.syncing.get() || (log.needs_flush() && log.failure().is_none())
        });
        if !busy {
            return;
        }
        for p in partitions {
            if p.log.borrow().needs_flush() && !p.queued.get() {
                flusher.schedule(p, 0);
            }
        }
        flusher.round().await;
        for _ in 0..4 {
            yield_now().await;
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Setup {
    mode: WriteMode,
    filesystem_scope: bool,
    partitions: usize,
}

/// What a run appended and what was acknowledged, per partition.
#[derive(Default, PartialEq)]
struct Ledger {
    /// Base offset → the batch as stored (offset stamped).
    appended: Vec<BTreeMap<i64, Vec<u8>>>,
    /// The durable offset when the power went: everything below was
    /// acknowledged to an acks=all producer.
    acked: Vec<i64>,
    /// Steps the workload ran.
    steps: usize,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let appended: Vec<(usize, Option<i64>)> = self
            .appended
            .iter()
            .map(|m| (m.len(), m.keys().next_back().copied()))
            .collect();
        write!(
            f,
            "Ledger {{ steps: {}, acked: {:?}, appended (count, last base): {:?} }}",
            self.steps, self.acked, appended
        )
    }
}

/// The segments of `log`, for failure messages.
fn describe(log: &PartitionLog) -> String {
    log.segments
        .iter()
        .map(|s| {
            let (index, time) = s.index_paths();
            format!(
                "[base {} size {} next {} files {}{}]",
                s.base_offset,
                s.size,
                s.next_offset,
                if index.exists() { "i" } else { "-" },
                if time.exists() { "t" } else { "-" }
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn config(rng: &mut Rng, mode: WriteMode) -> LogConfig {
    LogConfig {
        segment_bytes: [1_500, 4_000, 20_000][rng.below(3) as usize],
        index_interval_bytes: [64, 512, 4096][rng.below(3) as usize],
        preallocate: rng.below(2) == 0,
        write_mode: mode,
        ..LogConfig::default()
    }
}

fn open_all(
    disk: &FaultyDisk,
    dirs: &[PathBuf],
    configs: &[LogConfig],
) -> Result<Vec<Rc<Partition>>, StorageError> {
    let mut partitions = Vec::with_capacity(dirs.len());
    for (i, (dir, config)) in dirs.iter().zip(configs).enumerate() {
        let log = PartitionLog::open_on(disk.shared(), dir, config.clone(), 0)?;
        partitions.push(Rc::new(Partition::new("sim".into(), i as i32, log)));
    }
    Ok(partitions)
}

fn flusher_for(disk: &FaultyDisk, root: &Path, setup: Setup) -> Rc<Flusher> {
    let scope = if setup.filesystem_scope {
        SyncScope::Filesystem(root.to_path_buf())
    } else {
        SyncScope::Partition
    };
    Rc::new(Flusher::on(disk.shared(), scope).expect("flusher"))
}

/// A batch of 1–4 records of random sizes (timestamps `timestamp` and
/// up), every other one from an idempotent producer when `sequence` is
/// given.
fn random_batch(rng: &mut Rng, timestamp: i64, sequence: Option<&mut i32>) -> Vec<u8> {
    let count = 1 + rng.below(4) as usize;
    let values: Vec<Vec<u8>> = (0..count)
        .map(|_| {
            let len = 20 + rng.below(380) as usize;
            let byte = rng.below(256) as u8;
            vec![byte; len]
        })
        .collect();
    let records: Vec<(Option<&[u8]>, &[u8])> =
        values.iter().map(|v| (None, v.as_slice())).collect();
    let producer = match sequence {
        Some(sequence) if rng.below(2) == 0 => {
            let fields = ProducerFields {
                producer_id: 7,
                producer_epoch: 0,
                base_sequence: *sequence,
            };
            *sequence += count as i32;
            Some(fields)
        }
        _ => None,
    };
    build_batch(timestamp, producer, &records)
}

/// Runs a seeded workload on `disk` until `steps` steps are done or the
/// power goes, then cuts the power (if it is still on) and returns what was
/// appended and acknowledged. Nothing holds the files afterwards.
async fn workload(disk: &FaultyDisk, root: &Path, setup: Setup, seed: u64, steps: usize) -> Ledger {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xfeed);
    let dirs: Vec<PathBuf> = (0..setup.partitions)
        .map(|i| root.join(format!("sim-{i}")))
        .collect();
    let configs: Vec<LogConfig> = (0..setup.partitions)
        .map(|_| config(&mut rng, setup.mode))
        .collect();
    let mut ledger = Ledger {
        appended: vec![BTreeMap::new(); setup.partitions],
        acked: vec![0; setup.partitions],
        steps: 0,
    };
    let mut sequences = vec![0i32; setup.partitions];
    let mut partitions = match open_all(disk, &dirs, &configs) {
        Ok(partitions) => partitions,
        Err(_) if disk.crashed() => return finish(disk, ledger, Vec::new()).await,
        Err(e) => panic!("seed {seed}: open: {e}"),
    };
    let mut flusher = flusher_for(disk, root, setup);
    let mut now_ms = 1_000i64;
    for step in 0..steps {
        if disk.crashed() {
            break;
        }
        ledger.steps = step + 1;
        // Apart by more than a batch's records: newest timestamps grow.
        now_ms += 10;
        let action = rng.below(100);
        match action {
            0..=54 => {
                let p = rng.below(setup.partitions as u64) as usize;
                let all = rng.below(2) == 0;
                let bytes = random_batch(&mut rng, now_ms, Some(&mut sequences[p]));
                let partition = &partitions[p];
                let appended =
                    partition
                        .log
                        .borrow_mut()
                        .append(&Bytes::from(bytes.clone()), now_ms, 0);
                match appended {
                    Ok(appended) => {
                        assert!(!appended.duplicate);
                        let mut stored = bytes;
                        stamp_base_offset(&mut stored, appended.base_offset);
                        stamp_leader_epoch(&mut stored, 0);
                        ledger.appended[p].insert(appended.base_offset, stored);
                        if all {
                            partition.log.borrow_mut().request_sync();
                        }
                        flusher.schedule(partition, 0);
                    }
                    // The power went while opening a write handle.
                    Err(AppendError::Storage(_)) if disk.crashed() => break,
                    Err(e) => panic!("seed {seed} step {step}: append failed: {e}"),
                }
            }
            55..=79 => flusher.round().await,
            80..=92 => {
                for _ in 0..=rng.below(4) {
                    yield_now().await;
                }
            }
            93..=95 => {
                let p = rng.below(setup.partitions as u64) as usize;
                partitions[p]
                    .log
                    .borrow_mut()
                    .close_idle_writer(now_ms + 1_000_000, 0);
            }
            _ => {
                // A clean restart: drain, write the shutdown files, reopen.
                let deadline = Instant::now() + Duration::from_secs(5);
                flusher.close_and_drain(&partitions, deadline).await;
                if disk.crashed() {
                    break;
                }
                let mut files = Vec::new();
                let mut trims = Vec::new();
                for partition in &partitions {
                    let log = partition.log.borrow();
                    assert!(log.failure().is_none(), "seed {seed}: {:?}", log.failure());
                    let shutdown = log.shutdown_files();
                    files.extend(shutdown.files);
                    trims.extend(shutdown.trim);
                }
                if write_shutdown_files(disk, &files, &trims, root).is_err() {
                    assert!(disk.crashed(), "seed {seed}: shutdown files failed");
                    break;
                }
                drop(files);
                drop(trims);
                for (p, partition) in partitions.iter().enumerate() {
                    let log = partition.log.borrow();
                    assert_eq!(log.durable_offset(), log.next_offset());
                    ledger.acked[p] = log.durable_offset();
                }
                partitions.clear();
                match open_all(disk, &dirs, &configs) {
                    Ok(reopened) => partitions = reopened,
                    Err(_) if disk.crashed() => return finish(disk, ledger, Vec::new()).await,
                    Err(e) => panic!("seed {seed}: reopening after a clean stop: {e}"),
                }
                flusher = flusher_for(disk, root, setup);
            }
        }
    }
    if !disk.crashed() {
        // Let what is in flight finish, then lose power anyway.
        settle(&flusher, &partitions, 1000).await;
        disk.crash_now();
    }
    finish(disk, ledger, partitions).await
}

/// After the power went: lets failing tasks end, records the durable
/// offsets, drops every handle.
async fn finish(disk: &FaultyDisk, mut ledger: Ledger, partitions: Vec<Rc<Partition>>) -> Ledger {
    assert!(disk.crashed());
    for _ in 0..1000 {
        if partitions.iter().all(|p| !p.syncing.get()) {
            break;
        }
        yield_now().await;
    }
    for (p, partition) in partitions.iter().enumerate() {
        let log = partition.log.borrow();
        assert!(!partition.syncing.get(), "a sync outlived the power");
        assert!(log.durable_offset() <= log.log_end_offset());
        assert!(log.log_end_offset() <= log.next_offset());
        ledger.acked[p] = ledger.acked[p].max(log.durable_offset());
    }
    ledger
}

/// Reads the whole log back: every batch whole, CRC-valid, at increasing
/// offsets, exactly as appended; every acknowledged batch present. Returns
/// the batches found.
fn verify(
    log: &PartitionLog,
    appended: &BTreeMap<i64, Vec<u8>>,
    acked: i64,
    context: &str,
) -> BTreeMap<i64, Vec<u8>> {
    let context = &format!("{context} {}", describe(log));
    assert_eq!(log.log_end_offset(), log.next_offset(), "{context}");
    assert_eq!(log.durable_offset(), log.next_offset(), "{context}");
    assert!(
        log.next_offset() >= acked,
        "{context}: acknowledged data lost: next offset {} < acked {acked}",
        log.next_offset()
    );
    let mut found = BTreeMap::new();
    let mut offset = log.log_start_offset();
    let mut max_timestamp: Option<(i64, i64)> = None;
    while offset < log.log_end_offset() {
        let slice = match log.read(offset, 1 << 30) {
            Ok(Some(slice)) => slice,
            Ok(None) => break,
            Err(e) => panic!("{context}: read at {offset}: {e}"),
        };
        let bytes = slice.read_to_vec().expect("slice");
        let mut at = 0usize;
        while at < bytes.len() {
            let whole = batch::parse_header(&bytes[at..])
                .ok()
                .and_then(|h| bytes.get(at..at + h.total_len()))
                .unwrap_or_else(|| panic!("{context}: a partial batch is served at {offset}"));
            let header = batch::validate_batch(whole).unwrap_or_else(|e| {
                panic!("{context}: a corrupt batch is served at {offset}: {e}")
            });
            assert!(header.base_offset >= offset, "{context}: offsets go back");
            let expected = appended.get(&header.base_offset).unwrap_or_else(|| {
                panic!(
                    "{context}: a batch at {} that was never appended",
                    header.base_offset
                )
            });
            assert_eq!(
                whole,
                &expected[..],
                "{context}: batch at {} differs",
                header.base_offset
            );
            if max_timestamp.is_none_or(|(ts, _)| header.max_timestamp > ts) {
                max_timestamp = Some((header.max_timestamp, header.last_offset()));
            }
            found.insert(header.base_offset, whole.to_vec());
            offset = header.last_offset() + 1;
            at += header.total_len();
        }
    }
    for (&base, bytes) in appended.range(..acked) {
        let last = batch::parse_header(bytes).expect("ours").last_offset();
        if last < acked {
            assert!(
                found.contains_key(&base),
                "{context}: acknowledged batch at {base} lost"
            );
        }
    }
    // The indexes describe the data: the time index's newest entry, and
    // every segment's newest timestamp.
    assert_eq!(
        log.max_timestamp_entry(),
        max_timestamp,
        "{context}: time index"
    );
    if let Some((ts, last)) = max_timestamp {
        let (at, _) = log
            .offset_for_timestamp(ts)
            .expect("lookup")
            .unwrap_or_else(|| panic!("{context}: newest timestamp not found"));
        assert!(at <= last, "{context}: timestamp lookup past the batch");
    }
    found
}

/// One crash run: workload, power loss, restart, checks, more appends,
/// another restart, checks. Returns the ledger, the operations and trace
/// of the workload, and what the power loss did.
async fn crash_run(
    setup: Setup,
    seed: u64,
    crash_at: Option<u64>,
    steps: usize,
) -> (Ledger, u64, u64, LossReport) {
    let root = sim_dir();
    let disk = FaultyDisk::new(seed);
    if let Some(at) = crash_at {
        disk.crash_at(at);
    }
    let ledger = workload(&disk, root.path(), setup, seed, steps).await;
    let ops = disk.ops();
    let trace = disk.trace_hash();
    let loss = disk.power_loss().expect("power loss");
    let context = |p: usize, phase: &str| {
        format!("{setup:?} seed {seed} crash at {crash_at:?} partition {p} {phase}")
    };
    let dirs: Vec<PathBuf> = (0..setup.partitions)
        .map(|i| root.path().join(format!("sim-{i}")))
        .collect();
    let config = LogConfig {
        segment_bytes: 4_000,
        index_interval_bytes: 512,
        write_mode: setup.mode,
        ..LogConfig::default()
    };
    let configs = vec![config; setup.partitions];
    let partitions = open_all(&disk, &dirs, &configs).expect("recovery");
    // What survived; lost unacknowledged offsets are assigned again.
    let mut appended: Vec<BTreeMap<i64, Vec<u8>>> = partitions
        .iter()
        .enumerate()
        .map(|(p, partition)| {
            verify(
                &partition.log.borrow(),
                &ledger.appended[p],
                ledger.acked[p],
                &context(p, "after the power loss"),
            )
        })
        .collect();
    // The recovered log takes appends and keeps them across a restart.
    let flusher = flusher_for(&disk, root.path(), setup);
    let mut rng = Rng(seed);
    for partition in &partitions {
        let p = partition.index as usize;
        for i in 0..3 {
            let bytes = random_batch(&mut rng, 5_000 + 10 * i, None);
            let done = partition
                .log
                .borrow_mut()
                .append(&Bytes::from(bytes.clone()), 10_000, 0)
                .expect("append after recovery");
            let mut stored = bytes;
            stamp_base_offset(&mut stored, done.base_offset);
            stamp_leader_epoch(&mut stored, 0);
            appended[p].insert(done.base_offset, stored);
        }
        partition.log.borrow_mut().request_sync();
        flusher.schedule(partition, 0);
    }
    settle(&flusher, &partitions, 1000).await;
    let acked: Vec<i64> = partitions
        .iter()
        .map(|p| p.log.borrow().durable_offset())
        .collect();
    for partition in &partitions {
        let log = partition.log.borrow();
        assert!(
            log.failure().is_none(),
            "{}",
            context(partition.index as usize, "appending after recovery")
        );
        assert_eq!(log.durable_offset(), log.next_offset());
    }
    drop(partitions);
    drop(flusher);
    disk.crash_now();
    disk.power_loss().expect("power loss");
    let partitions = open_all(&disk, &dirs, &configs).expect("second recovery");
    for (p, partition) in partitions.iter().enumerate() {
        verify(
            &partition.log.borrow(),
            &appended[p],
            acked[p],
            &context(p, "after appends and a second power loss"),
        );
    }
    (ledger, ops, trace, loss)
}

/// Seeds to run: `RINGBROKER_SIM_SEEDS` or `default`.
fn seeds(default: u64) -> u64 {
    std::env::var("RINGBROKER_SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Crash points per seed (besides the end of the run).
const CRASH_POINTS_PER_SEED: u64 = 12;
/// Steps of each workload.
const WORKLOAD_STEPS: usize = 200;

fn power_loss_everywhere(setup: Setup) {
    let seeds = seeds(16);
    if let Ok(only) = std::env::var("RINGBROKER_SIM_ONLY") {
        // "seed,crash point": one run, to look at a failure.
        let mut parts = only.split(',').map(|p| p.trim().parse::<u64>().ok());
        let (Some(Some(seed)), at) = (parts.next(), parts.next().flatten()) else {
            panic!("RINGBROKER_SIM_ONLY=seed[,crash point]");
        };
        on_executor(move || async move {
            let (ledger, ops, trace, loss) = crash_run(setup, seed, at, WORKLOAD_STEPS).await;
            eprintln!("{ledger:?} ops {ops} trace {trace:x} {loss:?}");
        });
        return;
    }
    on_executor(move || async move {
        let mut runs = 0u64;
        let mut acked = 0i64;
        let mut unacked = 0usize;
        let mut losses = LossReport::default();
        let mut record = |ledger: &Ledger, loss: LossReport| {
            runs += 1;
            acked += ledger.acked.iter().sum::<i64>();
            unacked += ledger
                .appended
                .iter()
                .zip(&ledger.acked)
                .map(|(appended, acked)| appended.range(*acked..).count())
                .sum::<usize>();
            losses.vanished += loss.vanished;
            losses.changed += loss.changed;
        };
        for seed in 0..seeds {
            // A run without a crash point counts the operations; it ends
            // with a power loss too.
            let (ledger, ops, _, loss) = crash_run(setup, seed, None, WORKLOAD_STEPS).await;
            record(&ledger, loss);
            let mut point_rng = Rng(seed ^ 0xc4a5);
            for i in 0..CRASH_POINTS_PER_SEED {
                // Spread over the run, jittered.
                let span = ops.max(1);
                let at = 1
                    + (span * i / CRASH_POINTS_PER_SEED
                        + point_rng.below(span / CRASH_POINTS_PER_SEED + 1))
                    .min(span - 1);
                let (ledger, _, _, loss) = crash_run(setup, seed, Some(at), WORKLOAD_STEPS).await;
                record(&ledger, loss);
            }
        }
        eprintln!(
            "{setup:?}: {runs} power-loss runs over {seeds} seeds; {acked} acknowledged \
             offsets kept; {unacked} unacknowledged batches at risk; {} files lost, {} \
             rewritten by the losses",
            losses.vanished, losses.changed
        );
        assert!(
            acked > 0 && unacked > 0 && losses.changed > 0,
            "the runs test something"
        );
    });
}

#[test]
fn power_loss_keeps_acknowledged_batches_buffered() {
    power_loss_everywhere(Setup {
        mode: WriteMode::Buffered,
        filesystem_scope: false,
        partitions: 2,
    });
}

#[test]
fn power_loss_keeps_acknowledged_batches_direct() {
    if !direct_io_works() {
        eprintln!("O_DIRECT unavailable here; skipped");
        return;
    }
    power_loss_everywhere(Setup {
        mode: WriteMode::Direct,
        filesystem_scope: false,
        partitions: 2,
    });
}

#[test]
fn power_loss_keeps_acknowledged_batches_filesystem_scope() {
    power_loss_everywhere(Setup {
        mode: WriteMode::Buffered,
        filesystem_scope: true,
        partitions: 3,
    });
}

#[test]
fn power_loss_keeps_acknowledged_batches_direct_filesystem_scope() {
    if !direct_io_works() {
        eprintln!("O_DIRECT unavailable here; skipped");
        return;
    }
    power_loss_everywhere(Setup {
        mode: WriteMode::Direct,
        filesystem_scope: true,
        partitions: 2,
    });
}

#[test]
fn a_seed_and_crash_point_replay_the_same_run() {
    let direct = direct_io_works();
    on_executor(move || async move {
        for (mode, filesystem_scope) in [
            (WriteMode::Buffered, false),
            (WriteMode::Buffered, true),
            (WriteMode::Direct, false),
            (WriteMode::Direct, true),
        ] {
            if mode == WriteMode::Direct && !direct {
                continue;
            }
            let setup = Setup {
                mode,
                filesystem_scope,
                partitions: 3,
            };
            for seed in 0..4u64 {
                let (_, ops, _, _) = crash_run(setup, seed, None, WORKLOAD_STEPS).await;
                for at in [ops / 3, ops / 2, ops - 1] {
                    let first = crash_run(setup, seed, Some(at.max(1)), WORKLOAD_STEPS).await;
                    let second = crash_run(setup, seed, Some(at.max(1)), WORKLOAD_STEPS).await;
                    assert_eq!(first, second, "{setup:?} seed {seed} crash at {at}: replay");
                }
            }
        }
    });
}

/// A single-partition log on a faulty disk, its flusher, and a batch.
fn one_partition(
    disk: &FaultyDisk,
    dir: &Path,
    mode: WriteMode,
    filesystem_scope: bool,
) -> (Rc<Partition>, Rc<Flusher>) {
    let config = LogConfig {
        segment_bytes: 2_000,
        index_interval_bytes: 256,
        write_mode: mode,
        ..LogConfig::default()
    };
    let log = PartitionLog::open_on(disk.shared(), &dir.join("t-0"), config, 0).expect("open");
    let scope = if filesystem_scope {
        SyncScope::Filesystem(dir.to_path_buf())
    } else {
        SyncScope::Partition
    };
    let flusher = Rc::new(Flusher::on(disk.shared(), scope).expect("flusher"));
    (Rc::new(Partition::new("t".into(), 0, log)), flusher)
}

fn small_batch(i: i64) -> Bytes {
    Bytes::from(build_batch(
        1_000 + i,
        None,
        &[(None, b"value-value-value"), (None, b"two")],
    ))
}

/// Appends with acks=all semantics; returns the last offset.
fn append_all(partition: &Rc<Partition>, flusher: &Rc<Flusher>, i: i64) -> i64 {
    let appended = partition
        .log
        .borrow_mut()
        .append(&small_batch(i), 1, 0)
        .expect("append");
    partition.log.borrow_mut().request_sync();
    flusher.schedule(partition, 0);
    appended.last_offset
}

fn fdatasync_eio_fails_the_partition(filesystem_scope: bool) {
    on_executor(move || async move {
        let dir = sim_dir();
        let disk = FaultyDisk::new(1);
        let (partition, flusher) =
            one_partition(&disk, dir.path(), WriteMode::Buffered, filesystem_scope);
        let first = append_all(&partition, &flusher, 0);
        settle(&flusher, std::slice::from_ref(&partition), 100).await;
        assert_eq!(partition.log.borrow().durable_offset(), first + 1);

        let sync_op = if filesystem_scope {
            Op::Syncfs
        } else {
            Op::Fdatasync
        };
        disk.inject(Fault::next(sync_op, libc::EIO));
        let last = append_all(&partition, &flusher, 1);
        // A producer waiting for acks=all, as the shard waits.
        let waiter = {
            let partition = partition.clone();
            glommio::spawn_local(async move {
                let deadline = Instant::now() + Duration::from_secs(60);
                let started = Instant::now();
                let acked = partition
                    .wait_until(deadline, |p| p.log.borrow().durable_offset() > last)
                    .await;
                (acked, started.elapsed())
            })
        };
        settle(&flusher, std::slice::from_ref(&partition), 100).await;
        let (acked, waited) = waiter.await;
        assert!(
            !acked,
            "no acknowledgement for data the failed sync covered"
        );
        assert!(
            waited < Duration::from_secs(10),
            "the waiter was woken, not timed out"
        );
        {
            let log = partition.log.borrow();
            let failure = log.failure().expect("failed").clone();
            assert_eq!(failure.op(), Some(sync_op));
            assert_eq!(failure.raw_os_error(), Some(libc::EIO));
            assert_eq!(log.durable_offset(), first + 1, "durable offset stays");
            assert_eq!(
                log.log_end_offset(),
                last + 1,
                "written data stays readable"
            );
        }
        // Later appends are refused with the same error; nothing retries
        // the sync and marks the data durable.
        match partition.log.borrow_mut().append(&small_batch(2), 2, 0) {
            Err(AppendError::Storage(e)) => {
                assert!(e.is_earlier_failure());
                assert_eq!(e.raw_os_error(), Some(libc::EIO));
            }
            other => panic!("append after a failed sync: {other:?}"),
        }
        // A later round (the periodic sync asks for one) syncs nothing.
        partition.log.borrow_mut().request_sync();
        flusher.schedule(&partition, 0);
        flusher.round().await;
        for _ in 0..10 {
            yield_now().await;
        }
        assert!(!partition.syncing.get());
        assert_eq!(partition.log.borrow().durable_offset(), first + 1);
        // What the power loss keeps is at least what was acknowledged.
        drop(partition);
        drop(flusher);
        disk.crash_now();
        disk.power_loss().expect("loss");
        let log = PartitionLog::open_on(
            disk.shared(),
            &dir.path().join("t-0"),
            LogConfig::default(),
            0,
        )
        .expect("reopen");
        assert!(log.next_offset() > first);
    });
}

#[test]
fn eio_on_fdatasync_fails_the_partition_without_acknowledging() {
    fdatasync_eio_fails_the_partition(false);
}

#[test]
fn eio_on_syncfs_fails_the_partition_without_acknowledging() {
    fdatasync_eio_fails_the_partition(true);
}

#[test]
fn eio_on_syncfs_fails_every_partition_it_covered() {
    on_executor(|| async {
        let dir = sim_dir();
        let disk = FaultyDisk::new(2);
        let config = LogConfig::default();
        let partitions: Vec<Rc<Partition>> = (0..3)
            .map(|i| {
                let log = PartitionLog::open_on(
                    disk.shared(),
                    &dir.path().join(format!("t-{i}")),
                    config.clone(),
                    0,
                )
                .expect("open");
                Rc::new(Partition::new("t".into(), i, log))
            })
            .collect();
        let flusher = Rc::new(
            Flusher::on(
                disk.shared(),
                SyncScope::Filesystem(dir.path().to_path_buf()),
            )
            .expect("flusher"),
        );
        disk.inject(Fault::next(Op::Syncfs, libc::EIO));
        for partition in &partitions {
            append_all(partition, &flusher, 0);
        }
        settle(&flusher, &partitions, 100).await;
        // The partitions whose writes were done when it started rode on the
        // failed syncfs; the others on the next one.
        let mut failed = 0;
        for partition in &partitions {
            let log = partition.log.borrow();
            match log.failure() {
                Some(failure) => {
                    assert_eq!(failure.op(), Some(Op::Syncfs));
                    assert_eq!(log.durable_offset(), 0);
                    failed += 1;
                }
                None => assert_eq!(log.durable_offset(), 2),
            }
        }
        assert!(failed >= 1);
    });
}

/// `kind` is `None` for EIO, whose kind has no stable name.
fn write_fault_fails_the_partition(
    mode: WriteMode,
    fault: Fault,
    kind: Option<std::io::ErrorKind>,
    errno: i32,
) {
    on_executor(move || async move {
        let dir = sim_dir();
        let disk = FaultyDisk::new(3);
        let (partition, flusher) = one_partition(&disk, dir.path(), mode, false);
        let first = append_all(&partition, &flusher, 0);
        settle(&flusher, std::slice::from_ref(&partition), 100).await;
        let op = fault.op;
        disk.inject(fault);
        // Enough to roll a segment (seals and index files).
        let mut last = first;
        for i in 1..40 {
            match partition.log.borrow_mut().append(&small_batch(i), 1, 0) {
                Ok(a) => last = a.last_offset,
                Err(AppendError::Storage(_)) => break,
                Err(e) => panic!("{e}"),
            }
            partition.log.borrow_mut().request_sync();
            flusher.schedule(&partition, 0);
            settle(&flusher, std::slice::from_ref(&partition), 100).await;
        }
        let log = partition.log.borrow();
        let failure = log.failure().expect("failed").clone();
        assert_eq!(failure.op(), Some(op), "{failure}");
        if let Some(kind) = kind {
            assert_eq!(failure.kind(), kind, "{failure}");
        }
        assert_eq!(failure.raw_os_error(), Some(errno), "{failure}");
        assert!(log.durable_offset() <= last && log.durable_offset() > first);
        drop(log);
        match partition.log.borrow_mut().append(&small_batch(99), 2, 0) {
            Err(AppendError::Storage(e)) => {
                assert!(kind.is_none_or(|k| e.kind() == k));
                assert_eq!(e.raw_os_error(), Some(errno));
            }
            other => panic!("append after a failed write: {other:?}"),
        }
        // Whatever reached the file, recovery serves only whole batches
        // and keeps what was acknowledged.
        let acked = partition.log.borrow().durable_offset();
        drop(partition);
        drop(flusher);
        disk.crash_now();
        disk.power_loss().expect("loss");
        let log = PartitionLog::open_on(
            disk.shared(),
            &dir.path().join("t-0"),
            LogConfig::default(),
            0,
        )
        .expect("reopen");
        assert!(log.next_offset() >= acked);
        let bytes = log
            .read(0, 1 << 30)
            .expect("read")
            .expect("data")
            .read_to_vec()
            .expect("bytes");
        for item in batch::batches(&bytes) {
            let (_, range) = item.expect("whole batches");
            batch::validate_batch(&bytes[range]).expect("valid");
        }
    });
}

#[test]
fn eio_on_write_fails_the_partition_with_eio() {
    write_fault_fails_the_partition(
        WriteMode::Buffered,
        Fault {
            skip: 3,
            ..Fault::next(Op::Write, libc::EIO)
        },
        None,
        libc::EIO,
    );
}

#[test]
fn enospc_on_a_torn_write_fails_the_partition_with_storage_full() {
    for mode in [WriteMode::Buffered, WriteMode::Direct] {
        if mode == WriteMode::Direct && !direct_io_works() {
            continue;
        }
        write_fault_fails_the_partition(
            mode,
            Fault {
                skip: 2,
                ..Fault::torn_write(libc::ENOSPC, Tear::Random)
            },
            Some(std::io::ErrorKind::StorageFull),
            libc::ENOSPC,
        );
    }
}

#[test]
fn eio_on_seal_and_enospc_on_index_files_fail_the_partition() {
    write_fault_fails_the_partition(
        WriteMode::Buffered,
        Fault::next(Op::Seal, libc::EIO),
        None,
        libc::EIO,
    );
    write_fault_fails_the_partition(
        WriteMode::Buffered,
        Fault::next(Op::WriteFiles, libc::ENOSPC),
        Some(std::io::ErrorKind::StorageFull),
        libc::ENOSPC,
    );
}

#[test]
fn a_failed_write_handle_open_refuses_the_append_only() {
    on_executor(|| async {
        let dir = sim_dir();
        let disk = FaultyDisk::new(4);
        let (partition, flusher) = one_partition(&disk, dir.path(), WriteMode::Buffered, false);
        disk.inject(Fault::next(Op::OpenWriter, libc::EMFILE));
        match partition.log.borrow_mut().append(&small_batch(0), 1, 0) {
            Err(AppendError::Storage(e)) => {
                assert_eq!(e.op(), Some(Op::OpenWriter));
                assert_eq!(e.raw_os_error(), Some(libc::EMFILE));
                assert!(!e.is_earlier_failure());
            }
            other => panic!("{other:?}"),
        }
        assert!(
            partition.log.borrow().failure().is_none(),
            "not a partition failure"
        );
        assert_eq!(append_all(&partition, &flusher, 1), 1);
    });
}

/// A write torn at every length, in both modes: recovery keeps exactly the
/// whole batches before the tear, and the log goes on from there.
#[test]
fn torn_writes_are_cut_by_recovery_at_every_length() {
    for mode in [WriteMode::Buffered, WriteMode::Direct] {
        if mode == WriteMode::Direct && !direct_io_works() {
            continue;
        }
        on_executor(move || async move {
            let tail: Vec<u8> = (0..3).flat_map(|i| small_batch(10 + i).to_vec()).collect();
            let batch_len = small_batch(0).len();
            for cut in 0..tail.len() {
                let dir = sim_dir();
                let disk = FaultyDisk::new(cut as u64);
                let (partition, flusher) = one_partition(&disk, dir.path(), mode, false);
                for i in 0..2 {
                    append_all(&partition, &flusher, i);
                }
                settle(&flusher, std::slice::from_ref(&partition), 100).await;
                let acked = partition.log.borrow().durable_offset();
                assert_eq!(acked, 4);
                // Three batches in one coalesced write, torn after `cut` bytes.
                disk.inject(Fault::torn_write(libc::EIO, Tear::Prefix(cut)));
                for i in 0..3 {
                    partition
                        .log
                        .borrow_mut()
                        .append(&small_batch(10 + i), 1, 0)
                        .expect("append");
                }
                flusher.schedule(&partition, 0);
                settle(&flusher, std::slice::from_ref(&partition), 100).await;
                assert!(partition.log.borrow().failure().is_some());
                drop(partition);
                drop(flusher);
                // Restart without losing the page cache: the torn bytes are
                // in the file.
                let log = PartitionLog::open_on(
                    disk.shared(),
                    &dir.path().join("t-0"),
                    LogConfig::default(),
                    0,
                )
                .expect("reopen");
                // Direct mode pads the tear with zeros, and a batch's last
                // byte may be a zero: count what matches on disk.
                let mut on_disk = tail[..cut].to_vec();
                if mode == WriteMode::Direct {
                    on_disk.resize(tail.len(), 0);
                }
                let whole = (1..=3)
                    .take_while(|k| on_disk.get(..k * batch_len) == Some(&tail[..k * batch_len]))
                    .count() as i64;
                assert_eq!(
                    log.next_offset(),
                    acked + 2 * whole,
                    "{mode:?} cut at {cut}"
                );
                let bytes = log
                    .read(0, 1 << 30)
                    .expect("read")
                    .expect("data")
                    .read_to_vec()
                    .expect("bytes");
                assert_eq!(bytes.len(), (2 + whole as usize) * batch_len);
                for item in batch::batches(&bytes) {
                    let (_, range) = item.expect("whole");
                    batch::validate_batch(&bytes[range]).expect("valid");
                }
            }
        });
    }
}

#[test]
fn stale_index_files_from_a_clean_stop_are_not_trusted() {
    // A clean stop writes the active segment's indexes; more appends, a
    // roll, and a power loss before the seal rewrote them leave them
    // stale. The sealed segment's tail must be checked, not served.
    on_executor(|| async {
        let dir = sim_dir();
        let disk = FaultyDisk::new(5);
        let path = dir.path().join("t-0");
        let config = LogConfig {
            segment_bytes: 100_000,
            index_interval_bytes: 256,
            ..LogConfig::default()
        };
        {
            let log = PartitionLog::open_on(disk.shared(), &path, config.clone(), 0).expect("open");
            let partition = Rc::new(Partition::new("t".into(), 0, log));
            let flusher =
                Rc::new(Flusher::on(disk.shared(), SyncScope::Partition).expect("flusher"));
            for i in 0..10 {
                append_all(&partition, &flusher, i);
            }
            settle(&flusher, std::slice::from_ref(&partition), 100).await;
            let deadline = Instant::now() + Duration::from_secs(5);
            assert!(
                flusher
                    .close_and_drain(std::slice::from_ref(&partition), deadline)
                    .await
            );
            let shutdown = partition.log.borrow().shutdown_files();
            let trims: Vec<_> = shutdown.trim.into_iter().collect();
            write_shutdown_files(&disk, &shutdown.files, &trims, dir.path()).expect("shutdown");
        }
        let log = PartitionLog::open_on(disk.shared(), &path, config.clone(), 0).expect("reopen");
        let partition = Rc::new(Partition::new("t".into(), 0, log));
        let flusher = Rc::new(Flusher::on(disk.shared(), SyncScope::Partition).expect("flusher"));
        // Unsynced appends, then a roll whose seal never happens.
        for i in 10..20 {
            partition
                .log
                .borrow_mut()
                .append(&small_batch(i), 2, 0)
                .expect("append");
        }
        flusher.schedule(&partition, 0);
        flusher.round().await;
        partition.log.borrow_mut().set_config(LogConfig {
            segment_bytes: 100,
            ..config.clone()
        });
        disk.inject(Fault::next(Op::Seal, libc::EIO));
        partition
            .log
            .borrow_mut()
            .append(&small_batch(20), 3, 0)
            .expect("append rolls");
        assert_eq!(partition.log.borrow().segment_count(), 2);
        flusher.schedule(&partition, 0);
        flusher.round().await;
        assert_eq!(
            partition.log.borrow().failure().and_then(|f| f.op()),
            Some(Op::Seal)
        );
        drop(partition);
        drop(flusher);
        // What a power loss may leave of the unsynced tail: damage in the
        // first batch after the synced ones.
        let old = path.join(crate::segment::file_name(0, "log"));
        let mut bytes = std::fs::read(&old).expect("old segment");
        let synced = 10 * small_batch(0).len();
        assert_eq!(bytes.len(), 2 * synced, "the unsynced batches were written");
        bytes[synced + 65] ^= 0xff;
        std::fs::write(&old, &bytes).expect("damage");
        assert!(path.join(crate::segment::file_name(40, "log")).exists());
        let log = PartitionLog::open_on(disk.shared(), &path, config, 0).expect("recover");
        let bytes = log
            .read(0, 1 << 30)
            .expect("read")
            .expect("data")
            .read_to_vec()
            .expect("bytes");
        let mut count = 0;
        for item in batch::batches(&bytes) {
            let (_, range) = item.expect("whole batches only");
            batch::validate_batch(&bytes[range]).expect("valid batches only");
            count += 1;
        }
        assert_eq!(count, 10, "the synced batches, and nothing damaged");
    });
}
