//! Per-core runtime for ringbroker.
//!
//! One glommio `LocalExecutor` per shard, pinned to a core; a deterministic
//! placement of partitions onto shards; and a bounded all-to-all mesh of
//! channels whose requests carry their own reply handle. This crate knows
//! nothing about Kafka: the broker crate supplies the message types.

use std::fmt;
use std::future::Future;
use std::time::Duration;

pub mod mesh;

pub use mesh::{envelope, Envelope, Mesh, MeshEndpoint, ReplyHandle, ReplyReceiver, SendError};

/// Index of a shard: `0..shard_count`. Shard 0 is the metadata owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(pub usize);

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shard-{}", self.0)
    }
}

/// Errors starting the per-core runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The executor for a shard could not be created (io_uring setup, memlock).
    #[error("could not start executor for {shard}: {source}")]
    Executor {
        /// The shard that failed to start.
        shard: ShardId,
        /// glommio's error.
        source: std::io::Error,
    },
    /// A shard thread panicked or could not be joined.
    #[error("{shard} stopped abnormally: {reason}")]
    Join {
        /// The shard whose thread failed.
        shard: ShardId,
        /// What the join reported.
        reason: String,
    },
}

/// The cores this process may run on, in ascending order.
pub fn available_cores() -> Vec<core_affinity::CoreId> {
    let mut cores = core_affinity::get_core_ids().unwrap_or_default();
    cores.sort_by_key(|c| c.id);
    cores
}

/// A stable 64-bit FNV-1a hash: placement must not change between runs or
/// builds, so `std`'s randomized hasher is not usable here.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The owner shard of partition `partition` of the topic whose name hashes to
/// `topic_hash`. Consecutive partitions of a topic go to consecutive shards,
/// so a topic with at least `shard_count` partitions spans every shard.
pub fn placement(topic_hash: u64, partition: u32, shard_count: usize) -> ShardId {
    assert!(shard_count > 0, "shard_count must be positive");
    let start = topic_hash % shard_count as u64;
    ShardId(((start + u64::from(partition)) % shard_count as u64) as usize)
}

/// How each shard's executor is built.
#[derive(Clone, Debug)]
pub struct RuntimeOptions {
    /// Number of shards (executors) to start.
    pub shard_count: usize,
    /// Thread name prefix; the shard index is appended.
    pub name: String,
    /// Memory glommio registers with each io_uring for DMA buffers.
    pub io_memory_bytes: usize,
    /// Preemption timer: how long a task queue may run before yielding.
    pub preempt_timer: Duration,
    /// Threads in each shard's blocking pool (sendfile, directory syncs).
    pub blocking_threads: usize,
    /// How long an idle executor spins before parking its thread: cross-core
    /// messages arriving within it skip the wake-up (zero = park at once).
    pub spin_before_park: Duration,
}

/// Starts one pinned executor per shard, each running `body(shard)`, and
/// waits for all of them to finish. Shards are pinned to the available cores
/// in order when there are enough cores; otherwise they float.
pub fn run_shards<F, Fut>(options: &RuntimeOptions, body: F) -> Result<(), RuntimeError>
where
    F: Fn(ShardId) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = ()> + 'static,
{
    assert!(options.shard_count > 0);
    let cores = available_cores();
    let pin = cores.len() >= options.shard_count;
    let mut handles = Vec::with_capacity(options.shard_count);
    for index in 0..options.shard_count {
        let shard = ShardId(index);
        let placement = if let (true, Some(core)) = (pin, cores.get(index)) {
            glommio::Placement::Fixed(core.id)
        } else {
            glommio::Placement::Unbound
        };
        let body = body.clone();
        let handle = glommio::LocalExecutorBuilder::new(placement)
            .name(&format!("{}-{}", options.name, index))
            .io_memory(options.io_memory_bytes)
            .preempt_timer(options.preempt_timer)
            .spin_before_park(options.spin_before_park)
            .blocking_thread_pool_placement(glommio::PoolPlacement::Unbound(
                options.blocking_threads.max(1),
            ))
            .spawn(move || body(shard))
            .map_err(|e| RuntimeError::Executor {
                shard,
                source: std::io::Error::other(e.to_string()),
            })?;
        handles.push((shard, handle));
    }
    let mut first_error = None;
    for (shard, handle) in handles {
        if let Err(e) = handle.join() {
            log::error!("{shard} failed: {e}");
            first_error.get_or_insert(RuntimeError::Join {
                shard,
                reason: e.to_string(),
            });
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_spreads_consecutive_partitions() {
        let hash = stable_hash(b"orders");
        let owners: Vec<usize> = (0..8).map(|p| placement(hash, p, 2).0).collect();
        assert_eq!(owners.iter().filter(|&&s| s == 0).count(), 4);
        assert_eq!(owners.iter().filter(|&&s| s == 1).count(), 4);
        assert_ne!(owners[0], owners[1]);
    }

    #[test]
    fn placement_is_stable_and_in_range() {
        for shards in 1..9 {
            for p in 0..100 {
                let s = placement(stable_hash(b"t"), p, shards);
                assert!(s.0 < shards);
                assert_eq!(s, placement(stable_hash(b"t"), p, shards));
            }
        }
        assert_eq!(stable_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_ne!(stable_hash(b"a"), stable_hash(b"b"));
    }

    #[test]
    fn shards_run_and_exchange_messages() {
        let mesh = Mesh::<u64>::new(2, 4);
        let endpoints = std::sync::Arc::new(std::sync::Mutex::new(mesh.into_endpoints()));
        let options = RuntimeOptions {
            shard_count: 2,
            name: "test".into(),
            io_memory_bytes: 1 << 20,
            preempt_timer: Duration::from_millis(100),
            blocking_threads: 1,
            spin_before_park: Duration::ZERO,
        };
        let body = move |shard: ShardId| {
            let endpoint = endpoints.lock().unwrap()[shard.0].take().unwrap();
            async move {
                let peer = ShardId(1 - shard.0);
                endpoint.send_to(peer, shard.0 as u64 + 10).await.unwrap();
                let got = endpoint.recv().await.unwrap();
                assert_eq!(got, peer.0 as u64 + 10);
            }
        };
        run_shards(&options, body).unwrap();
    }
}
