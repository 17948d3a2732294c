//! Fetch: read each partition on its owner shard, long-poll until
//! `min_bytes` are available or `max_wait_ms` passes, and answer with a
//! hand-framed response whose record bytes stay in the segment files (they
//! go to the socket with sendfile).

use std::rc::Rc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::FetchRequest;

use crate::dispatch::{Context, DispatchError, Response};
use crate::messages::{FetchPart, FetchResult};
use crate::shard::Shard;
use ringbroker_protocol::errors::ErrorCode;
use ringbroker_protocol::fetch_response::{self, FetchHeader, PartitionData, TopicData};
use ringbroker_protocol::limits::{FETCH_RESPONSE_BYTES_MAX, FETCH_WAIT_MS_MAX};

/// Where one requested partition is answered from.
enum Slot {
    /// A guard clause answered it.
    Error(i16),
    /// `parts[i]` reads it.
    Part(usize),
}

/// A topic of the response: name, id, and its partitions' slots.
type TopicLayout = (String, [u8; 16], Vec<(i32, Slot)>);

/// Handles Fetch.
pub async fn handle(
    shard: &Rc<Shard>,
    ctx: &Context,
    request: FetchRequest,
) -> Result<Response, DispatchError> {
    let started = Instant::now();
    let wait_ms = u64::try_from(request.max_wait_ms.max(0))
        .unwrap_or(0)
        .min(FETCH_WAIT_MS_MAX);
    let deadline = started + Duration::from_millis(wait_ms);
    let min_bytes = usize::try_from(request.min_bytes.max(0)).unwrap_or(0);
    let max_bytes = if ctx.version >= 3 {
        usize::try_from(request.max_bytes.max(0)).unwrap_or(0)
    } else {
        FETCH_RESPONSE_BYTES_MAX
    }
    .min(FETCH_RESPONSE_BYTES_MAX);

    // Sessions (KIP-227): ringbroker answers every fetch in full and never
    // creates a session (session id 0), which clients accept; an
    // incremental request for a session it does not know is refused.
    if ctx.version >= 7 && request.session_id != 0 {
        let header = FetchHeader {
            correlation_id: ctx.header.correlation_id,
            version: ctx.version,
            error_code: ErrorCode::FetchSessionIdNotFound.code(),
            session_id: 0,
        };
        return Ok(Response::Frame(fetch_response::encode(header, &[])));
    }

    // A broker's follower fetch (replica id >= 0): only from the replicas
    // of the partition, served up to the log end.
    let replica = request.replica_id.0.max(-1);
    let read_committed = replica < 0 && request.isolation_level == 1;
    let catalog = shard.catalog();
    let mut parts = Vec::new();
    let mut layout: Vec<TopicLayout> = Vec::new();
    for topic in &request.topics {
        let name = topic.topic.0.to_string();
        let meta = catalog.topics.get(&name);
        let mut slots = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let slot = match meta.and_then(|m| m.partition(p.partition)) {
                // Followers hold no data for consumers (no fetch from
                // followers): the client goes to the leader.
                Some(partition) if partition.leader != shard.config.node_id => {
                    Slot::Error(ErrorCode::NotLeaderOrFollower.code())
                }
                Some(partition) if replica >= 0 && !partition.replicas.contains(&replica) => {
                    Slot::Error(ErrorCode::NotLeaderOrFollower.code())
                }
                // KIP-320: the fetcher's idea of the leader epoch must be
                // this leader's (a follower acting on an older leadership
                // never moves this one's high watermark).
                Some(partition)
                    if p.current_leader_epoch >= 0
                        && p.current_leader_epoch < partition.leader_epoch =>
                {
                    Slot::Error(ErrorCode::FencedLeaderEpoch.code())
                }
                Some(partition) if p.current_leader_epoch > partition.leader_epoch => {
                    Slot::Error(ErrorCode::UnknownLeaderEpoch.code())
                }
                Some(_) => {
                    parts.push(FetchPart {
                        topic: name.clone(),
                        partition: p.partition,
                        offset: p.fetch_offset,
                        max_bytes: usize::try_from(p.partition_max_bytes.max(0))
                            .unwrap_or(0)
                            .min(max_bytes),
                        replica,
                        read_committed,
                    });
                    Slot::Part(parts.len() - 1)
                }
                _ => Slot::Error(ErrorCode::UnknownTopicOrPartition.code()),
            };
            slots.push((p.partition, slot));
        }
        layout.push((name, meta.map_or([0; 16], |m| m.id), slots));
    }

    let mut results = shard.fetch(parts.clone()).await;
    loop {
        limit_response_size(&mut results, max_bytes);
        let bytes: usize = results
            .iter()
            .filter_map(|r| r.records.as_ref().map(|s| s.len))
            .sum();
        let has_error = results.iter().any(|r| r.error_code != 0)
            || layout
                .iter()
                .any(|(_, _, s)| s.iter().any(|(_, slot)| matches!(slot, Slot::Error(_))));
        if bytes >= min_bytes.max(1)
            || has_error
            || Instant::now() >= deadline
            || parts.is_empty()
            || shard.is_stopping()
        {
            break;
        }
        // Wait for any partition to grow past what was seen, then read again.
        let waits = parts
            .iter()
            .zip(&results)
            .map(|(part, result)| {
                let seen = if replica >= 0 {
                    part.offset
                } else if read_committed {
                    part.offset.max(result.last_stable_offset)
                } else {
                    part.offset.max(result.high_watermark)
                };
                (part.topic.clone(), part.partition, seen)
            })
            .collect();
        let data = shard.wait_for_data(waits, deadline, replica >= 0, read_committed);
        let stopped = shard.stopped();
        futures::pin_mut!(data);
        futures::pin_mut!(stopped);
        futures::future::select(data, stopped).await;
        results = shard.fetch(parts.clone()).await;
    }

    let topics: Vec<TopicData> = layout
        .into_iter()
        .map(|(name, topic_id, slots)| TopicData {
            name,
            topic_id,
            partitions: slots
                .into_iter()
                .map(|(partition, slot)| match slot {
                    Slot::Error(code) => PartitionData {
                        partition,
                        error_code: code,
                        high_watermark: -1,
                        last_stable_offset: -1,
                        log_start_offset: -1,
                        records: None,
                        aborted_transactions: None,
                    },
                    Slot::Part(i) => {
                        let r = std::mem::take(&mut results[i]);
                        PartitionData {
                            partition,
                            error_code: r.error_code,
                            high_watermark: r.high_watermark,
                            last_stable_offset: r.last_stable_offset,
                            log_start_offset: r.log_start_offset,
                            records: r.records,
                            aborted_transactions: r.aborted_transactions,
                        }
                    }
                })
                .collect(),
        })
        .collect();
    let header = FetchHeader {
        correlation_id: ctx.header.correlation_id,
        version: ctx.version,
        error_code: 0,
        session_id: 0,
    };
    Ok(Response::Frame(fetch_response::encode(header, &topics)))
}

/// Trims record data to the response's `max_bytes`, in request order. The
/// first non-empty partition keeps at least its first whole batch (KIP-74);
/// later partitions are cut at the limit (clients drop a partial trailing
/// batch and fetch it again) or sent without records.
fn limit_response_size(results: &mut [FetchResult], max_bytes: usize) {
    let mut total = 0usize;
    for result in results.iter_mut() {
        let Some(slice) = result.records.as_mut() else {
            continue;
        };
        if total == 0 {
            // Bounded by partition_max_bytes already, with a whole first
            // batch that alone may exceed max_bytes.
            total = slice.len;
            continue;
        }
        let room = max_bytes.saturating_sub(total);
        if room == 0 {
            result.records = None;
            continue;
        }
        slice.len = slice.len.min(room);
        total += slice.len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringbroker_protocol::frame::FileSlice;
    use std::sync::Arc;

    fn result(len: usize, file: &Arc<std::fs::File>) -> FetchResult {
        FetchResult {
            records: Some(FileSlice {
                file: file.clone(),
                position: 0,
                len,
            }),
            ..FetchResult::default()
        }
    }

    #[test]
    fn response_limit_keeps_first_batch_and_cuts_the_rest() {
        let file = Arc::new(tempfile::tempfile().expect("tempfile"));
        let mut results = vec![result(100, &file), result(50, &file), result(50, &file)];
        limit_response_size(&mut results, 120);
        let lens: Vec<Option<usize>> = results
            .iter()
            .map(|r| r.records.as_ref().map(|s| s.len))
            .collect();
        assert_eq!(lens, vec![Some(100), Some(20), None]);

        let mut big = vec![result(500, &file), result(10, &file)];
        limit_response_size(&mut big, 100);
        assert_eq!(big[0].records.as_ref().map(|s| s.len), Some(500));
        assert!(big[1].records.is_none());
    }
}
