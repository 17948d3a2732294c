//! Followers: each shard fetches the partitions it owns and follows from
//! their leaders, with Kafka's Fetch (replica id = this broker), one
//! connection per leader broker per shard carrying all of the shard's
//! partitions led there. Fetched batches are appended byte for byte
//! (`PartitionLog::append_replica`: the leader's offsets, epochs, CRCs)
//! and made durable before the next fetch, whose offsets tell the leader
//! what this replica holds durably: that is what moves the leader's high
//! watermark and answers acks=all.
//!
//! A follower whose log runs past the leader's (OFFSET_OUT_OF_RANGE above
//! the leader's end) cuts its log to the leader's high watermark.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use ringbroker_protocol::errors::ErrorCode;
use ringbroker_storage::partition::Partition;

use crate::shard::{now_ms, Shard};

/// The Fetch version followers send.
const FETCH_VERSION: i16 = 12;
/// The OffsetForLeaderEpoch version followers send.
const EPOCH_VERSION: i16 = 3;
/// How long the leader may hold a follower's fetch without new data.
const FETCH_MAX_WAIT_MS: i32 = 500;
/// Bytes per partition and per response a follower asks for.
const PARTITION_MAX_BYTES: i32 = 1 << 20;
const RESPONSE_MAX_BYTES: i32 = 16 << 20;
/// How often the shard looks for leaders to fetch from.
const SCAN_EVERY: Duration = Duration::from_millis(100);
/// Pause after a failed connection or fetch.
const BACKOFF: Duration = Duration::from_millis(200);
/// How long a fetched batch may take to become durable here.
const SYNC_TIMEOUT: Duration = Duration::from_secs(10);

/// A local partition's metadata.
fn meta_of<'a>(
    catalog: &'a crate::catalog::Catalog,
    partition: &Partition,
) -> Option<&'a crate::catalog::PartitionMeta> {
    catalog
        .topics
        .get(&partition.topic)
        .and_then(|t| t.partition(partition.index))
}

/// True while this replica still follows `partition` from `leader` at
/// leader epoch `epoch`. Checked after every wait on the network and
/// before anything is appended or cut: the metadata may have moved on
/// while a request was out (this broker may lead the partition now), and
/// an answer meant for an older leadership must change nothing.
fn still_following(shard: &Shard, partition: &Partition, leader: i32, epoch: i32) -> bool {
    partition.is_follower()
        && !partition.deleted.get()
        && meta_of(&shard.catalog(), partition).is_some_and(|m| {
            m.leader == leader
                && m.leader_epoch == epoch
                && m.replicas.contains(&shard.config.node_id)
        })
}

/// The partitions this shard follows, by leader broker id.
fn followed(shard: &Shard) -> HashMap<i32, Vec<Rc<Partition>>> {
    let catalog = shard.catalog();
    let me = shard.config.node_id;
    let mut by_leader: HashMap<i32, Vec<Rc<Partition>>> = HashMap::new();
    for partition in shard.partitions.borrow().values() {
        let Some(meta) = meta_of(&catalog, partition) else {
            continue;
        };
        if meta.replicas.len() > 1
            && meta.leader >= 0
            && meta.leader != me
            && meta.replicas.contains(&me)
        {
            by_leader
                .entry(meta.leader)
                .or_default()
                .push(partition.clone());
        }
    }
    by_leader
}

/// Runs this shard's replica fetchers until the shard stops: one task per
/// leader broker with partitions here.
pub async fn run(shard: Rc<Shard>) {
    let running: Rc<std::cell::RefCell<HashSet<i32>>> = Rc::default();
    while !shard.is_stopping() {
        for leader in followed(&shard).into_keys() {
            if running.borrow_mut().insert(leader) {
                let shard = shard.clone();
                let running = running.clone();
                glommio::spawn_local(async move {
                    fetch_from(&shard, leader).await;
                    running.borrow_mut().remove(&leader);
                })
                .detach();
            }
        }
        glommio::timer::sleep(SCAN_EVERY).await;
    }
}

/// KIP-101/KIP-279: after a leader change, cuts what this follower holds
/// past the point where its latest leader epoch ends in the new leader's
/// log, so it never keeps a record the leader does not have. Returns false
/// when the leader could not answer (try again before fetching).
async fn truncate_to_leader(
    shard: &Shard,
    conn: &mut crate::peer::Connection,
    partition: &Rc<Partition>,
    leader: i32,
    current_epoch: i32,
) -> bool {
    let (latest, end) = {
        let log = partition.log.borrow();
        (log.epochs().latest_epoch(), log.next_offset())
    };
    let Some(latest) = latest else {
        return true;
    };
    let request = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(shard.config.node_id))
        .with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(TopicName(StrBytes::from_string(partition.topic.clone())))
            .with_partitions(vec![OffsetForLeaderPartition::default()
                .with_partition(partition.index)
                .with_current_leader_epoch(current_epoch)
                .with_leader_epoch(latest)])]);
    let response: OffsetForLeaderEpochResponse = match conn
        .call(
            ApiKey::OffsetForLeaderEpoch,
            EPOCH_VERSION,
            &request,
            Duration::ZERO,
        )
        .await
    {
        Ok(r) => r,
        Err(e) => {
            log::debug!(
                "{}-{}: OffsetForLeaderEpoch: {e}",
                partition.topic,
                partition.index
            );
            return false;
        }
    };
    let Some(answer) = response
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .find(|p| p.partition == partition.index)
    else {
        return false;
    };
    if answer.error_code != 0 {
        log::debug!(
            "{}-{}: OffsetForLeaderEpoch error {}",
            partition.topic,
            partition.index,
            answer.error_code
        );
        return false;
    }
    if !still_following(shard, partition, leader, current_epoch) {
        return false;
    }
    // The leader's end of the latest epoch both logs share; where that
    // epoch ends here too (KIP-279).
    let mut cut = end;
    if answer.end_offset >= 0 {
        cut = cut.min(answer.end_offset);
        if answer.leader_epoch >= 0 && answer.leader_epoch < latest {
            let here = partition
                .log
                .borrow()
                .epochs()
                .end_offset_for(answer.leader_epoch, end)
                .1;
            if here >= 0 {
                cut = cut.min(here);
            }
        }
    }
    if cut < end {
        return truncate(shard, partition, cut, leader, current_epoch).await;
    }
    true
}

/// Makes everything a follower partition holds durable before its next
/// fetch reports it (bounded; group commit through the shard's flusher).
async fn sync_all(shard: &Shard, partitions: &[Rc<Partition>]) {
    let deadline = Instant::now() + SYNC_TIMEOUT;
    for partition in partitions {
        let behind = {
            let mut log = partition.log.borrow_mut();
            let behind = log.durable_offset() < log.next_offset();
            if behind {
                log.request_sync();
            }
            behind
        };
        if behind {
            shard.flusher.schedule(partition, 0);
        }
    }
    for partition in partitions {
        partition
            .wait_until(deadline, |p| {
                let log = p.log.borrow();
                log.durable_offset() >= log.next_offset()
            })
            .await;
    }
}

/// Follows every partition of this shard led by `leader` until none is.
async fn fetch_from(shard: &Rc<Shard>, leader: i32) {
    let me = shard.config.node_id;
    let mut connection: Option<(String, u16, crate::peer::Connection)> = None;
    // The leader epoch each partition was last reconciled with.
    let mut reconciled: HashMap<(String, i32), i32> = HashMap::new();
    loop {
        if shard.is_stopping() {
            return;
        }
        let Some(partitions) = followed(shard).remove(&leader) else {
            return;
        };
        let catalog = shard.catalog();
        let Some(broker) = catalog.brokers.get(&leader).filter(|b| !b.fenced).cloned() else {
            glommio::timer::sleep(BACKOFF).await;
            continue;
        };
        if connection
            .as_ref()
            .is_some_and(|(h, p, _)| *h != broker.host || *p != broker.port)
        {
            connection = None;
        }
        if connection.is_none() {
            match crate::peer::connect(&broker.host, broker.port, "ringbroker-replica").await {
                Ok(c) => connection = Some((broker.host.clone(), broker.port, c)),
                Err(e) => {
                    log::debug!("replica fetcher to broker {leader}: {e}");
                    glommio::timer::sleep(BACKOFF).await;
                    continue;
                }
            }
        }
        sync_all(shard, &partitions).await;
        // A new leader epoch: reconcile the log with the leader first.
        let mut unreconciled = false;
        for partition in &partitions {
            let epoch = meta_of(&catalog, partition).map_or(-1, |m| m.leader_epoch);
            let key = (partition.topic.clone(), partition.index);
            if reconciled.get(&key) == Some(&epoch) {
                continue;
            }
            let Some((_, _, conn)) = connection.as_mut() else {
                break;
            };
            if truncate_to_leader(shard, conn, partition, leader, epoch).await {
                reconciled.insert(key, epoch);
            } else {
                unreconciled = true;
            }
        }
        if unreconciled {
            connection = None;
            glommio::timer::sleep(BACKOFF).await;
            continue;
        }
        // The request: every partition still followed from this leader
        // (the metadata as it is now, after the waits above), from its
        // durable end.
        let catalog = shard.catalog();
        let mut topics: BTreeMap<String, Vec<FetchPartition>> = BTreeMap::new();
        let mut asked_epochs: HashMap<(String, i32), i32> = HashMap::new();
        for partition in &partitions {
            let epoch = meta_of(&catalog, partition).map_or(-1, |m| m.leader_epoch);
            if !still_following(shard, partition, leader, epoch) {
                continue;
            }
            asked_epochs.insert((partition.topic.clone(), partition.index), epoch);
            let log = partition.log.borrow();
            topics.entry(partition.topic.clone()).or_default().push(
                FetchPartition::default()
                    .with_partition(partition.index)
                    .with_current_leader_epoch(epoch)
                    .with_fetch_offset(log.next_offset())
                    .with_log_start_offset(log.log_start_offset())
                    .with_partition_max_bytes(PARTITION_MAX_BYTES),
            );
        }
        if topics.is_empty() {
            glommio::timer::sleep(SCAN_EVERY).await;
            continue;
        }
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(me))
            .with_max_wait_ms(FETCH_MAX_WAIT_MS)
            .with_min_bytes(1)
            .with_max_bytes(RESPONSE_MAX_BYTES)
            .with_session_epoch(-1)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(name, partitions)| {
                        FetchTopic::default()
                            .with_topic(TopicName(StrBytes::from_string(name)))
                            .with_partitions(partitions)
                    })
                    .collect(),
            );
        let Some((_, _, conn)) = connection.as_mut() else {
            continue;
        };
        let wait = Duration::from_millis(FETCH_MAX_WAIT_MS as u64);
        let response: FetchResponse = match conn
            .call(ApiKey::Fetch, FETCH_VERSION, &request, wait)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                log::debug!("replica fetch from broker {leader}: {e}");
                connection = None;
                glommio::timer::sleep(BACKOFF).await;
                continue;
            }
        };
        let mut appended = false;
        let mut backoff = false;
        for topic in &response.responses {
            for data in &topic.partitions {
                let Some(partition) = partitions
                    .iter()
                    .find(|p| p.topic == topic.topic.0.as_str() && p.index == data.partition_index)
                else {
                    continue;
                };
                let epoch = asked_epochs
                    .get(&(partition.topic.clone(), partition.index))
                    .copied()
                    .unwrap_or(-1);
                if !still_following(shard, partition, leader, epoch) {
                    continue;
                }
                match ErrorCode::from_code(data.error_code) {
                    Some(ErrorCode::None) => {
                        if let Some(records) = data.records.as_ref().filter(|r| !r.is_empty()) {
                            let result =
                                partition.log.borrow_mut().append_replica(records, now_ms());
                            match result {
                                Ok(Some(_)) => {
                                    appended = true;
                                    shard.flusher.schedule(partition, records.len());
                                }
                                Ok(None) => {}
                                Err(e) => {
                                    log::warn!(
                                        "{}-{}: replicated append from broker {leader}: {e}",
                                        partition.topic,
                                        partition.index
                                    );
                                    backoff = true;
                                }
                            }
                        }
                        partition.set_high_watermark(data.high_watermark);
                    }
                    Some(ErrorCode::OffsetOutOfRange) => {
                        // This log runs past the leader's: keep only what
                        // the leader had committed.
                        let end = partition.log.borrow().next_offset();
                        if end > data.high_watermark && data.high_watermark >= 0 {
                            truncate(shard, partition, data.high_watermark, leader, epoch).await;
                        } else {
                            log::warn!(
                                "{}-{}: offset {end} out of the leader's range (start {}); waiting",
                                partition.topic,
                                partition.index,
                                data.log_start_offset
                            );
                            backoff = true;
                        }
                    }
                    other => {
                        log::debug!(
                            "{}-{}: fetch from broker {leader}: {other:?}",
                            partition.topic,
                            partition.index
                        );
                        backoff = true;
                    }
                }
            }
        }
        if backoff && !appended {
            glommio::timer::sleep(BACKOFF).await;
        }
    }
}

/// Cuts a follower's log back to `offset` once its writes have settled,
/// if it still follows `leader` at `epoch` then. Returns whether it did.
async fn truncate(
    shard: &Shard,
    partition: &Rc<Partition>,
    offset: i64,
    leader: i32,
    epoch: i32,
) -> bool {
    sync_all(shard, std::slice::from_ref(partition)).await;
    if !still_following(shard, partition, leader, epoch) {
        return false;
    }
    let result = partition.log.borrow_mut().truncate_to(offset);
    match result {
        Ok(end) => log::warn!(
            "{}-{}: truncated to offset {end} (the leader's log ends before this one's)",
            partition.topic,
            partition.index
        ),
        Err(e) => log::error!(
            "{}-{}: truncating to {offset}: {e}",
            partition.topic,
            partition.index
        ),
    }
    partition.notify();
    true
}

/// The leader's side of the ISR (Kafka's AlterPartition), for the
/// partitions this shard leads: a follower not caught up to the log end for
/// `replica.lag.time.max.ms` leaves the ISR; one that reaches the high
/// watermark joins it again. The controller decides; the change comes back
/// with the metadata.
pub async fn maintain_isr(shard: Rc<Shard>, lag_ms: u64) {
    let every = Duration::from_millis((lag_ms / 2).clamp(50, 1_000));
    while !shard.is_stopping() {
        glommio::timer::sleep(every).await;
        let catalog = shard.catalog();
        let me = shard.config.node_id;
        let now = now_ms();
        let partitions: Vec<Rc<Partition>> = shard.partitions.borrow().values().cloned().collect();
        for partition in partitions {
            let Some(state) = partition.leader_state() else {
                continue;
            };
            let Some(meta) = meta_of(&catalog, &partition) else {
                continue;
            };
            if meta.leader != me {
                continue;
            }
            let high_watermark = partition.high_watermark();
            let live = catalog.live_brokers();
            let isr: Vec<i32> = meta
                .replicas
                .iter()
                .copied()
                .filter(|r| {
                    if *r == me {
                        return true;
                    }
                    let follower = state.followers.get(r);
                    if meta.isr.contains(r) {
                        let caught_up =
                            follower.map_or(state.since_ms, |f| f.caught_up_ms.max(state.since_ms));
                        now - caught_up <= lag_ms as i64
                    } else {
                        live.contains(r) && follower.is_some_and(|f| f.offset >= high_watermark)
                    }
                })
                .collect();
            if isr == meta.isr {
                continue;
            }
            log::info!(
                "{}-{}: ISR {:?} -> {:?}",
                partition.topic,
                partition.index,
                meta.isr,
                isr
            );
            shard
                .alter_isr(crate::cluster::api::ControllerRequest::AlterIsr {
                    topic: partition.topic.clone(),
                    partition: partition.index,
                    leader: me,
                    leader_epoch: meta.leader_epoch,
                    partition_epoch: meta.partition_epoch,
                    isr,
                })
                .await;
        }
    }
}
