//! Broker start and stop: preflight checks with one-line errors, one shard
//! per core, signal handling and graceful shutdown.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use glommio::{Latency, Shares};
use ringbroker_shards::{run_shards, Mesh, MeshEndpoint, RuntimeOptions, ShardId};

use crate::catalog::Catalog;
use crate::config::BrokerConfig;
use crate::connection::run_listener;
use crate::messages::ShardMessage;
use crate::shard::Shard;
use ringbroker_protocol::limits::{
    BLOCKING_THREADS_PER_SHARD, IO_MEMORY_BYTES_PER_SHARD, MESH_INBOX_CAPACITY, SHUTDOWN_GRACE_MS,
};

/// Locked memory each shard needs beyond its DMA buffers (io_uring rings).
const RING_MEMORY_BYTES_PER_SHARD: u64 = 1024 * 1024;
/// After a stop signal, the process exits by force if shards have not
/// finished within this long.
const FORCED_EXIT_AFTER: Duration = Duration::from_secs(15);
/// Longest the final write and sync of a graceful shutdown may take before
/// partitions still writing are left to recovery (within FORCED_EXIT_AFTER).
const SHUTDOWN_FLUSH_MAX: Duration = Duration::from_secs(8);
/// How often the periodic sync rereads log.flush.interval.ms (which
/// dynamic broker configs may change) when it is longer or unset.
const PERIODIC_SYNC_CHECK: Duration = Duration::from_secs(1);
/// How often idle partitions are checked for write handles to close.
const IDLE_WRITER_CHECK: Duration = Duration::from_secs(10);
/// A partition not appended to for this long closes its write handle.
const IDLE_WRITER_MS: i64 = 60_000;
/// Name of the lock file that keeps two brokers off one data directory.
const LOCK_FILE: &str = ".lock";

/// A reason the broker cannot start; printed as one line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartupError(pub String);

fn fail(message: impl Into<String>) -> StartupError {
    StartupError(message.into())
}

/// Checks that the data directory exists (creating it) and is writable, and
/// takes its lock. The returned file holds the lock until the process ends.
pub fn prepare_data_dir(dir: &Path) -> Result<File, StartupError> {
    std::fs::create_dir_all(dir).map_err(|e| {
        fail(format!(
            "cannot create data directory {}: {e}",
            dir.display()
        ))
    })?;
    let probe = dir.join(".ringbroker-write-test");
    File::create(&probe)
        .and_then(|f| f.sync_all())
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| {
            fail(format!(
                "data directory {} is not writable: {e}",
                dir.display()
            ))
        })?;
    let lock_path = dir.join(LOCK_FILE);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| fail(format!("cannot open {}: {e}", lock_path.display())))?;
    // SAFETY: flock on a file descriptor this function owns.
    let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(fail(format!(
            "data directory {} is in use by another ringbroker process (lock {})",
            dir.display(),
            lock_path.display()
        )));
    }
    Ok(lock)
}

/// With `ringbroker.log.write.mode=direct`, checks that the data
/// directory's filesystem takes aligned O_DIRECT writes (tmpfs before Linux
/// 6.6 and some network filesystems do not), so the broker fails at start
/// with one line rather than failing every append.
pub fn check_direct_io(dir: &Path) -> Result<(), StartupError> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let probe = dir.join(".ringbroker-direct-test");
    let result = (|| {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(&probe)?;
        let layout =
            std::alloc::Layout::from_size_align(4096, 4096).map_err(std::io::Error::other)?;
        // SAFETY: a 4 KiB, 4 KiB-aligned zeroed allocation, freed below with
        // the same layout.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            return Err(std::io::Error::other("out of memory"));
        }
        // SAFETY: ptr points at 4096 initialised bytes owned here.
        let written = file.write_at(unsafe { std::slice::from_raw_parts(ptr, 4096) }, 0);
        // SAFETY: allocated above with this layout.
        unsafe { std::alloc::dealloc(ptr, layout) };
        written.map(drop)
    })();
    let _ignored = std::fs::remove_file(&probe);
    result.map_err(|e| {
        fail(format!(
            "ringbroker.log.write.mode=direct: the filesystem of {} does not take O_DIRECT writes ({e}); use ringbroker.log.write.mode=buffered",
            dir.display()
        ))
    })
}

/// Creates a listening socket with SO_REUSEADDR (so connections left over
/// from a previous run do not block a restart) and, when `share` is set,
/// SO_REUSEPORT (so every shard listens on the same port).
pub fn bind_listener(
    addr: std::net::SocketAddr,
    share: bool,
) -> std::io::Result<std::os::fd::OwnedFd> {
    use nix::sys::socket::{
        bind, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType,
        SockaddrStorage,
    };
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    if share {
        setsockopt(&fd, sockopt::ReusePort, &true)?;
    }
    bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    listen(&fd, Backlog::new(1024).unwrap_or(Backlog::MAXCONN))?;
    Ok(fd)
}

/// Fails when something listens on the address. The probe binds without
/// SO_REUSEPORT, so another broker on the same port is detected too.
/// After a crash the kernel may keep the dead process's listening sockets
/// for a moment (io_uring teardown is asynchronous), so a busy port is
/// retried for up to `ringbroker.startup.port.wait.ms` before giving up.
pub fn check_port(config: &BrokerConfig) -> Result<(), StartupError> {
    let port_wait = Duration::from_millis(config.port_wait_ms);
    let started = Instant::now();
    let mut logged = false;
    loop {
        match bind_listener(config.listen, false) {
            Ok(_probe) => return Ok(()),
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse && started.elapsed() < port_wait =>
            {
                if !logged {
                    log::info!(
                        "{} is busy; waiting up to {port_wait:?} for it to be released",
                        config.listen
                    );
                    logged = true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(fail(format!("cannot listen on {}: {e}", config.listen))),
        }
    }
}

/// Fails when io_uring cannot be used.
pub fn check_io_uring() -> Result<(), StartupError> {
    io_uring::IoUring::new(8).map(drop).map_err(|e| {
        fail(format!(
            "io_uring is unavailable: {e} (needs Linux 5.8 or later; check /proc/sys/kernel/io_uring_disabled and any seccomp profile of the container)"
        ))
    })
}

/// Raises RLIMIT_MEMLOCK and RLIMIT_NOFILE soft limits to their hard limits
/// and fails when locked memory is still too small for `shards` shards.
pub fn check_limits(shards: usize) -> Result<(), StartupError> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};
    // Every partition keeps its active segment open (twice: a read handle
    // for sendfile and an io_uring write handle). Root may raise the hard
    // limit up to fs.nr_open; others get their hard limit.
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(hard);
        let wanted = nr_open.max(hard);
        if setrlimit(Resource::RLIMIT_NOFILE, wanted, wanted).is_err() && soft < hard {
            let _ignored = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
        if let Ok((now, _)) = getrlimit(Resource::RLIMIT_NOFILE) {
            log::debug!("open-file limit {now}");
        }
    }
    let needed = shards as u64 * (IO_MEMORY_BYTES_PER_SHARD as u64 + RING_MEMORY_BYTES_PER_SHARD);
    let (soft, hard) = getrlimit(Resource::RLIMIT_MEMLOCK)
        .map_err(|e| fail(format!("cannot read RLIMIT_MEMLOCK: {e}")))?;
    if soft != RLIM_INFINITY && soft < needed {
        let raised = if hard == RLIM_INFINITY || hard >= needed {
            hard
        } else {
            soft
        };
        if raised != soft {
            let _ignored = setrlimit(Resource::RLIMIT_MEMLOCK, raised, hard);
        }
        let (now, _) = getrlimit(Resource::RLIMIT_MEMLOCK).unwrap_or((soft, hard));
        if now != RLIM_INFINITY && now < needed {
            let kib = needed.div_ceil(1024);
            return Err(fail(format!(
                "RLIMIT_MEMLOCK (locked memory) is {} KiB but {shards} shard(s) need {kib} KiB for io_uring: raise it with `ulimit -l {kib}` (systemd: LimitMEMLOCK={kib}K; /etc/security/limits.conf: memlock) or run fewer --shards",
                now / 1024
            )));
        }
    }
    Ok(())
}

/// Blocks SIGTERM and SIGINT in this thread (and every thread started after)
/// and returns a receiver that yields once per signal.
fn watch_signals() -> Result<mpsc::Receiver<i32>, StartupError> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.thread_block()
        .map_err(|e| fail(format!("cannot block signals: {e}")))?;
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("ringbroker-signals".into())
        .spawn(move || loop {
            match set.wait() {
                Ok(signal) => {
                    if tx.send(signal as i32).is_err() {
                        return;
                    }
                }
                Err(e) => log::error!("waiting for signals: {e}"),
            }
        })
        .map_err(|e| fail(format!("cannot start the signal thread: {e}")))?;
    Ok(rx)
}

/// Makes this node the single broker of its catalog (see
/// `Catalog::adopt_single_node`) and creates the internal
/// `__consumer_offsets` topic on first start; persists what changed.
fn prepare_catalog(catalog: &mut Catalog, config: &BrokerConfig) -> Result<(), StartupError> {
    use crate::coordinator::OFFSETS_TOPIC;
    let me = crate::catalog::BrokerMeta {
        id: config.node_id,
        host: config.advertised_host.clone(),
        port: config.advertised_port,
        rack: None,
        fenced: false,
        epoch: 0,
    };
    let mut changed = catalog.adopt_single_node(me);
    if catalog.drop_removed_topic_configs() {
        log::warn!(
            "dropped topic configs Kafka 4.x removed ({:?})",
            crate::config::REMOVED_TOPIC_KEYS
        );
        changed = true;
    }
    if !catalog.topics.contains_key(OFFSETS_TOPIC) {
        insert_offsets_topic(catalog, config);
        changed = true;
    }
    if !changed {
        return Ok(());
    }
    catalog.version += 1;
    catalog.save(&config.data_dir).map_err(|e| {
        fail(format!(
            "cannot write topic metadata in {}: {e}",
            config.data_dir.display()
        ))
    })
}

fn insert_offsets_topic(catalog: &mut Catalog, config: &BrokerConfig) {
    use crate::coordinator::OFFSETS_TOPIC;
    let mut configs = std::collections::BTreeMap::new();
    configs.insert("cleanup.policy".to_string(), "compact".to_string());
    configs.insert("segment.bytes".to_string(), (100 * 1024 * 1024).to_string());
    catalog.topics.insert(
        OFFSETS_TOPIC.to_string(),
        crate::catalog::TopicMeta {
            name: OFFSETS_TOPIC.to_string(),
            id: *uuid::Uuid::new_v4().as_bytes(),
            partitions: (0..config.offsets_topic_num_partitions)
                .map(|_| crate::catalog::PartitionMeta::new(vec![config.node_id]))
                .collect(),
            configs,
        },
    );
}

/// Runs the broker until SIGTERM/SIGINT. Returns after a graceful shutdown.
pub fn run(config: BrokerConfig) -> Result<(), StartupError> {
    let config = Arc::new(config);
    let _lock = prepare_data_dir(&config.data_dir)?;
    let serves_clients = config.cluster.as_ref().is_none_or(|c| c.broker);
    if serves_clients {
        check_port(&config)?;
    }
    check_io_uring()?;
    check_limits(config.shards)?;
    if config.log_write_mode == ringbroker_storage::writer::WriteMode::Direct {
        check_direct_io(&config.data_dir)?;
    }
    if config.log_flush_interval_messages.is_some() {
        log::warn!(
            "log.flush.interval.messages is not enforced; ringbroker syncs on acks=all (group commit) and every log.flush.interval.ms"
        );
    }
    // A cluster node's metadata comes from the quorum's log; a single node
    // keeps its own catalog.
    let (catalog, meta) = match &config.cluster {
        Some(cluster) => {
            let meta = crate::cluster::node::preflight(&config, cluster).map_err(fail)?;
            let catalog = Catalog {
                cluster_id: meta.cluster_id.clone().unwrap_or_default(),
                controller_id: -1,
                ..Catalog::default()
            };
            (catalog, Some(meta))
        }
        None => {
            let mut catalog = Catalog::load_or_create(&config.data_dir).map_err(|e| {
                fail(format!(
                    "cannot load topic metadata from {}: {e}",
                    config.data_dir.display()
                ))
            })?;
            prepare_catalog(&mut catalog, &config)?;
            (catalog, None)
        }
    };
    let catalog = Arc::new(catalog);
    let log_starts = Arc::new(
        crate::log_starts::load(&config.data_dir).unwrap_or_else(|e| {
            log::warn!(
                "{e}; records removed by DeleteRecords before this start may be served again"
            );
            crate::log_starts::LogStarts::new()
        }),
    );
    let signals = watch_signals()?;

    let shard_count = config.shards;
    let endpoints: Vec<Option<MeshEndpoint<ShardMessage>>> =
        Mesh::new(shard_count, MESH_INBOX_CAPACITY).into_endpoints();
    let endpoints = Arc::new(Mutex::new(endpoints));
    // Each shard's stop channel carries two messages: the first stops
    // accepting and reading requests (drain), the second, sent once every
    // shard has drained, closes the partitions and flushes them.
    let (stop_senders, stop_receivers): (Vec<_>, Vec<_>) =
        (0..shard_count).map(|_| flume::bounded::<()>(2)).unzip();
    let (drained_tx, drained_rx) = mpsc::channel::<ShardId>();
    let stop_receivers = Arc::new(Mutex::new(
        stop_receivers.into_iter().map(Some).collect::<Vec<_>>(),
    ));
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();

    let options = RuntimeOptions {
        shard_count,
        name: "ringbroker-shard".into(),
        io_memory_bytes: IO_MEMORY_BYTES_PER_SHARD,
        preempt_timer: Duration::from_millis(5),
        blocking_threads: BLOCKING_THREADS_PER_SHARD,
        spin_before_park: Duration::from_micros(config.spin_before_park_us),
    };
    let body = {
        let config = config.clone();
        let catalog = catalog.clone();
        let log_starts = log_starts.clone();
        move |id: ShardId| {
            let endpoint = endpoints
                .lock()
                .ok()
                .and_then(|mut e| e.get_mut(id.0).and_then(Option::take));
            let stop = stop_receivers
                .lock()
                .ok()
                .and_then(|mut s| s.get_mut(id.0).and_then(Option::take));
            let config = config.clone();
            let catalog = catalog.clone();
            let log_starts = (*log_starts).clone();
            let ready = ready_tx.clone();
            let drained = drained_tx.clone();
            let meta = meta.clone();
            async move {
                let (Some(endpoint), Some(stop)) = (endpoint, stop) else {
                    let _ignored = ready.send(Err(format!("{id}: started twice")));
                    return;
                };
                let control = StopControl { stop, drained };
                let start = ShardStart {
                    id,
                    config,
                    catalog,
                    endpoint,
                    log_starts,
                    meta,
                };
                shard_main(start, control, ready).await;
            }
        }
    };
    let runtime = std::thread::Builder::new()
        .name("ringbroker-main".into())
        .spawn(move || run_shards(&options, body))
        .map_err(|e| fail(format!("cannot start shards: {e}")))?;

    for _ in 0..shard_count {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(message)) => return Err(fail(message)),
            Err(_) => {
                return Err(fail(match runtime.join() {
                    Ok(Err(e)) => format!("cannot start shards: {e}"),
                    _ => "shards stopped during startup".to_string(),
                }))
            }
        }
    }
    log::info!(
        "ringbroker {} {} {} ({} shard(s), data dir {}, advertised as {}:{})",
        env!("CARGO_PKG_VERSION"),
        if serves_clients {
            "listening on"
        } else {
            "controller only, no client listener; not"
        },
        config.listen,
        shard_count,
        config.data_dir.display(),
        config.advertised_host,
        config.advertised_port
    );

    // Wait for a stop signal or for the shards to end on their own.
    loop {
        match signals.recv_timeout(Duration::from_millis(200)) {
            Ok(signal) => {
                log::info!("signal {signal}: shutting down");
                break;
            }
            Err(mpsc::RecvTimeoutError::Timeout) if runtime.is_finished() => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    for stop in &stop_senders {
        let _ignored = stop.try_send(());
    }
    // A second signal, or a shutdown that hangs, ends the process at once.
    std::thread::spawn(move || {
        let started = Instant::now();
        while started.elapsed() < FORCED_EXIT_AFTER {
            if signals.recv_timeout(Duration::from_millis(100)).is_ok() {
                log::warn!("second signal: exiting without a clean shutdown");
                std::process::exit(130);
            }
        }
        log::error!("shutdown did not finish in {FORCED_EXIT_AFTER:?}; exiting");
        std::process::exit(1);
    });
    // Partitions close only when no shard has a request in flight: a
    // request on one shard may still append to another shard's partition.
    let deadline = Instant::now() + Duration::from_millis(SHUTDOWN_GRACE_MS + 1000);
    let mut drained = 0;
    while drained < shard_count {
        let left = deadline.saturating_duration_since(Instant::now());
        match drained_rx.recv_timeout(left) {
            Ok(_) => drained += 1,
            Err(_) => break,
        }
    }
    if drained < shard_count && !runtime.is_finished() {
        log::warn!(
            "{} shard(s) still had requests in flight after {SHUTDOWN_GRACE_MS} ms; closing partitions anyway",
            shard_count - drained
        );
    }
    for stop in &stop_senders {
        let _ignored = stop.try_send(());
    }
    match runtime.join() {
        Ok(Ok(())) => {
            log::info!("ringbroker stopped cleanly");
            Ok(())
        }
        Ok(Err(e)) => Err(fail(format!("a shard failed: {e}"))),
        Err(_) => Err(fail("a shard panicked")),
    }
}

/// How the runtime thread stops a shard, in two steps.
struct StopControl {
    /// First message: stop accepting and reading requests. Second: close
    /// the partitions and flush (every shard has drained by then).
    stop: flume::Receiver<()>,
    /// Told once this shard has no request in flight.
    drained: mpsc::Sender<ShardId>,
}

/// What a shard starts from.
struct ShardStart {
    id: ShardId,
    config: Arc<BrokerConfig>,
    catalog: Arc<Catalog>,
    endpoint: MeshEndpoint<ShardMessage>,
    log_starts: crate::log_starts::LogStarts,
    /// A cluster node's `meta.properties` (None on a single node).
    meta: Option<crate::cluster::node::MetaProperties>,
}

/// The life of one shard: open its partitions, serve, shut down.
async fn shard_main(
    start: ShardStart,
    control: StopControl,
    ready: mpsc::Sender<Result<(), String>>,
) {
    let ShardStart {
        id,
        config,
        catalog,
        endpoint,
        log_starts,
        meta,
    } = start;
    let shard = match Shard::new(id, config.clone(), catalog, endpoint, log_starts) {
        Ok(shard) => shard,
        Err(e) => {
            let _ignored = ready.send(Err(format!(
                "{id}: cannot open partitions in {}: {e}",
                config.data_dir.display()
            )));
            return;
        }
    };
    shard.groups.load(&shard);
    shard.txns.sync_leadership(&shard);
    let group_timers = glommio::spawn_local(crate::coordinator::run_timers(shard.clone())).detach();
    let txn_timers =
        glommio::spawn_local(crate::txn_coordinator::run_timers(shard.clone())).detach();
    let executor = glommio::executor();
    let background =
        executor.create_task_queue(Shares::Static(100), Latency::NotImportant, "background");
    let flush_queue = executor.create_task_queue(
        Shares::Static(1000),
        Latency::Matters(Duration::from_millis(1)),
        "flusher",
    );

    // Cross-shard requests.
    let inbox = {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            while let Some(envelope) = shard.mesh.recv().await {
                let shard = shard.clone();
                glommio::spawn_local(async move {
                    let response = shard.handle_shard_request(envelope.request).await;
                    envelope.reply.send(response);
                })
                .detach();
            }
        })
        .detach()
    };
    let flusher = glommio::spawn_local_into(shard.flusher.clone().run(), flush_queue)
        .map(|t| t.detach())
        .ok();
    let retention = {
        let shard = shard.clone();
        let every = Duration::from_millis(config.log_retention_check_interval_ms.max(1000));
        glommio::spawn_local_into(
            async move {
                loop {
                    glommio::timer::sleep(every).await;
                    shard.enforce_retention().await;
                }
            },
            background,
        )
        .map(|t| t.detach())
        .ok()
    };
    // Partitions not written for a while give back their write handle, so
    // an idle partition holds one file descriptor.
    let idle_writers = {
        let shard = shard.clone();
        glommio::spawn_local_into(
            async move {
                loop {
                    glommio::timer::sleep(IDLE_WRITER_CHECK).await;
                    let now = crate::shard::now_ms();
                    let partitions: Vec<_> = shard.partitions.borrow().values().cloned().collect();
                    for partition in partitions {
                        partition
                            .log
                            .borrow_mut()
                            .close_idle_writer(now, IDLE_WRITER_MS);
                    }
                }
            },
            background,
        )
        .map(|t| t.detach())
        .ok()
    };
    // log.flush.interval.ms can change at run time (dynamic broker
    // config), so the loop rereads it every round.
    let periodic_sync = {
        let shard = shard.clone();
        glommio::spawn_local_into(
            async move {
                let mut last_sync = Instant::now();
                loop {
                    let tick = shard.flush_interval_ms().map_or(PERIODIC_SYNC_CHECK, |ms| {
                        Duration::from_millis(ms.max(1)).min(PERIODIC_SYNC_CHECK)
                    });
                    glommio::timer::sleep(tick).await;
                    let Some(ms) = shard.flush_interval_ms() else {
                        continue;
                    };
                    if last_sync.elapsed() < Duration::from_millis(ms.max(1)) {
                        continue;
                    }
                    last_sync = Instant::now();
                    let partitions: Vec<_> = shard.partitions.borrow().values().cloned().collect();
                    for partition in &partitions {
                        let mut log = partition.log.borrow_mut();
                        if log.next_offset() > log.durable_offset() {
                            log.request_sync();
                            drop(log);
                            shard.flusher.schedule(partition, 0);
                        }
                    }
                }
            },
            background,
        )
        .map(|t| t.detach())
        .ok()
    };

    if let (Some(cluster), Some(meta), ShardId(0)) = (&config.cluster, meta, id) {
        match crate::cluster::node::ClusterNode::start(&shard, cluster.clone(), meta) {
            Ok(node) => *shard.cluster.borrow_mut() = Some(node),
            Err(e) => {
                let _ignored = ready.send(Err(e));
                return;
            }
        }
    }
    let replication = config.cluster.as_ref().filter(|c| c.broker).map(|c| {
        (
            glommio::spawn_local(crate::replica_fetcher::run(shard.clone())).detach(),
            glommio::spawn_local(crate::replica_fetcher::maintain_isr(
                shard.clone(),
                c.replica_lag_time_max_ms,
            ))
            .detach(),
        )
    });
    if config.cluster.as_ref().is_some_and(|c| !c.broker) {
        // A controller-only node serves no clients.
        let _ignored = ready.send(Ok(()));
        let _ignored = control.stop.recv_async().await;
    } else {
        let listener = match bind_listener(config.listen, true) {
            Ok(fd) => {
                use std::os::fd::{FromRawFd, IntoRawFd};
                // SAFETY: the descriptor is a listening TCP socket owned by nobody else.
                unsafe { glommio::net::TcpListener::from_raw_fd(fd.into_raw_fd()) }
            }
            Err(e) => {
                let _ignored = ready.send(Err(format!("cannot listen on {}: {e}", config.listen)));
                return;
            }
        };
        let _ignored = ready.send(Ok(()));
        run_listener(shard.clone(), listener, control.stop.clone()).await;
    }
    let cluster = shard.cluster.borrow().clone();
    if let Some(cluster) = cluster {
        cluster.controlled_shutdown().await;
    }
    shard.begin_stop();
    // Requests waiting in the coordinator (JoinGroup, SyncGroup) are
    // answered NOT_COORDINATOR; clients find the coordinator again after
    // the restart.
    shard.groups.unload_all(&shard);
    shard.txns.unload_all(&shard);

    // Graceful stop. 1: no new connections, no new requests; requests in
    // flight finish and their answers go out (bounded).
    let deadline = Instant::now() + Duration::from_millis(SHUTDOWN_GRACE_MS);
    while (shard.stats.inflight.get() > 0 || shard.stats.open_connections.get() > 0)
        && Instant::now() < deadline
    {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    let _ignored = control.drained.send(id);
    // 2: once every shard is there, close the partitions to appends, write
    // and sync what they hold, then write index files and snapshots.
    let _ignored = control.stop.recv_async().await;
    shard
        .close_and_flush(Instant::now() + SHUTDOWN_FLUSH_MAX)
        .await;
    let (rounds, syncs) = shard.flusher.stats();
    log::info!(
        "{id}: stopped ({} requests, {} connections, {} flush rounds, {} fdatasyncs, {} bytes sent zero-copy; follower fetch partitions: {} on their shard, {} across the mesh)",
        shard.stats.requests.get(),
        shard.stats.connections.get(),
        rounds,
        syncs,
        shard.stats.zero_copy_bytes.get(),
        shard.stats.replica_parts_local.get(),
        shard.stats.replica_parts_remote.get()
    );
    drop((
        replication,
        inbox,
        flusher,
        retention,
        periodic_sync,
        group_timers,
        txn_timers,
        idle_writers,
    ));
}
