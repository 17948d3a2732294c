//! DescribeLogDirs: the one log directory of this broker (`log.dirs`), the
//! size on disk of each partition replica in it (asked from the partitions'
//! owner shards), offset lag 0 and no future replicas (ringbroker does not
//! move replicas between directories), and the directory's filesystem
//! total and usable bytes (statvfs).

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};

use super::{str_bytes, topic_name};
use crate::dispatch::{Context, DispatchError, Response};
use crate::messages::PartitionKey;
use crate::shard::Shard;
use ringbroker_protocol::errors::ErrorCode;

/// (total, usable) bytes of the filesystem holding `dir`.
fn filesystem_bytes(dir: &std::path::Path) -> std::io::Result<(i64, i64)> {
    let stats = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
    let block = stats.fragment_size() as u128;
    let bytes = |blocks: u64| i64::try_from(u128::from(blocks) * block).unwrap_or(i64::MAX);
    Ok((bytes(stats.blocks()), bytes(stats.blocks_available())))
}

/// The partitions asked about that have a replica on this broker (all of
/// them when the request names none), in topic and partition order.
fn wanted_partitions(shard: &Shard, request: &DescribeLogDirsRequest) -> Vec<PartitionKey> {
    let catalog = shard.catalog();
    let node = shard.config.node_id;
    let here = |topic: &str, p: i32| {
        catalog
            .topics
            .get(topic)
            .and_then(|meta| meta.partition(p))
            .is_some_and(|meta| meta.replicas.contains(&node))
    };
    let mut parts: Vec<PartitionKey> = match &request.topics {
        None => catalog
            .topics
            .values()
            .flat_map(|meta| (0..meta.partition_count()).map(|p| (meta.name.clone(), p)))
            .filter(|(t, p)| here(t, *p))
            .collect(),
        Some(topics) => topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.to_string(), *p)))
            .filter(|(t, p)| here(t, *p))
            .collect(),
    };
    parts.sort();
    parts.dedup();
    parts
}

/// Handles DescribeLogDirs.
pub async fn handle(
    shard: &Rc<Shard>,
    ctx: &Context,
    request: DescribeLogDirsRequest,
) -> Result<Response, DispatchError> {
    let parts = wanted_partitions(shard, &request);
    let sizes = shard.partition_sizes(parts.clone()).await;
    let dir = std::path::absolute(&shard.config.data_dir)
        .unwrap_or_else(|_| shard.config.data_dir.clone());
    let stat_dir = dir.clone();
    let space = glommio::executor()
        .spawn_blocking(move || filesystem_bytes(&stat_dir))
        .await;
    let base = DescribeLogDirsResult::default().with_log_dir(str_bytes(&dir.display().to_string()));
    let result = match space {
        Err(e) => {
            log::warn!("describe log dirs: statvfs {}: {e}", dir.display());
            base.with_error_code(ErrorCode::KafkaStorageError.code())
        }
        Ok((total, usable)) => {
            let mut topics: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
            for ((topic, index), size) in parts.into_iter().zip(sizes) {
                let Some(size) = size else { continue };
                topics.entry(topic).or_default().push(
                    DescribeLogDirsPartition::default()
                        .with_partition_index(index)
                        .with_partition_size(i64::try_from(size).unwrap_or(i64::MAX))
                        .with_offset_lag(0)
                        .with_is_future_key(false),
                );
            }
            let topics = topics
                .into_iter()
                .map(|(name, partitions)| {
                    DescribeLogDirsTopic::default()
                        .with_name(topic_name(&name))
                        .with_partitions(partitions)
                })
                .collect();
            base.with_topics(topics)
                .with_total_bytes(total)
                .with_usable_bytes(usable)
        }
    };
    ctx.respond(&DescribeLogDirsResponse::default().with_results(vec![result]))
}
