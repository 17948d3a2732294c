//! The cluster metadata as a replicated state machine.
//!
//! The metadata image is the [`Catalog`] every node already serves from.
//! The active controller computes each change with a pure function of the
//! image (admin changes with `admin::apply`, broker registration, fencing
//! and leader moves below), turns the difference into a [`MetadataDelta`]
//! record and proposes it to the quorum; every node applies committed
//! deltas in log order, so every image is a projection of the log. Changes
//! are computed one at a time from an image that has applied everything
//! committed, so deltas never conflict.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use ringbroker_protocol::errors::ErrorCode;

use crate::catalog::{BrokerMeta, Catalog, PartitionMeta, TopicMeta};

/// One record of the metadata log: what changed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MetadataDelta {
    /// The cluster id, when it is first agreed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// Topics created or changed (whole records).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<TopicMeta>,
    /// Topics deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics_removed: Vec<String>,
    /// Brokers registered or changed (fenced, unfenced, new endpoint).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub brokers: Vec<BrokerMeta>,
    /// Dynamic broker configs by resource (`None` removes it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub broker_configs: Vec<(String, Option<BTreeMap<String, String>>)>,
    /// Group configs by group (`None` removes it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_configs: Vec<(String, Option<BTreeMap<String, String>>)>,
    /// The next producer id not handed out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_producer_id: Option<i64>,
}

impl MetadataDelta {
    /// True when it changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == MetadataDelta::default()
    }

    /// The record's bytes in the log.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a metadata delta encodes")
    }

    /// A record read back from the log; bad bytes are an error.
    pub fn decode(bytes: &[u8]) -> Result<MetadataDelta, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

fn map_diff<K: Ord + Clone, V: PartialEq + Clone>(
    old: &BTreeMap<K, V>,
    new: &BTreeMap<K, V>,
) -> Vec<(K, Option<V>)> {
    let mut out: Vec<(K, Option<V>)> = new
        .iter()
        .filter(|(k, v)| old.get(k) != Some(v))
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    out.extend(
        old.keys()
            .filter(|k| !new.contains_key(k))
            .map(|k| (k.clone(), None)),
    );
    out
}

/// The record that turns `old` into `new` (the image's volatile parts,
/// version and controller id, are not recorded).
pub fn diff(old: &Catalog, new: &Catalog) -> MetadataDelta {
    MetadataDelta {
        cluster_id: (old.cluster_id != new.cluster_id).then(|| new.cluster_id.clone()),
        topics: new
            .topics
            .values()
            .filter(|t| old.topics.get(&t.name) != Some(t))
            .cloned()
            .collect(),
        topics_removed: old
            .topics
            .keys()
            .filter(|name| !new.topics.contains_key(*name))
            .cloned()
            .collect(),
        brokers: new
            .brokers
            .values()
            .filter(|b| old.brokers.get(&b.id) != Some(b))
            .cloned()
            .collect(),
        broker_configs: map_diff(&old.broker_configs, &new.broker_configs),
        group_configs: map_diff(&old.group_configs, &new.group_configs),
        next_producer_id: (old.next_producer_id != new.next_producer_id)
            .then_some(new.next_producer_id),
    }
}

/// Applies a committed record; `index` is its log index (the image's
/// version).
pub fn apply(image: &mut Catalog, delta: &MetadataDelta, index: u64) {
    // The cluster id is agreed once and never changes.
    if let Some(id) = delta
        .cluster_id
        .as_ref()
        .filter(|_| image.cluster_id.is_empty())
    {
        image.cluster_id = id.clone();
    }
    for topic in &delta.topics {
        image.topics.insert(topic.name.clone(), topic.clone());
    }
    for name in &delta.topics_removed {
        image.topics.remove(name);
    }
    for broker in &delta.brokers {
        image.brokers.insert(broker.id, broker.clone());
    }
    for (resource, configs) in &delta.broker_configs {
        match configs {
            Some(c) => image.broker_configs.insert(resource.clone(), c.clone()),
            None => image.broker_configs.remove(resource),
        };
    }
    for (group, configs) in &delta.group_configs {
        match configs {
            Some(c) => image.group_configs.insert(group.clone(), c.clone()),
            None => image.group_configs.remove(group),
        };
    }
    if let Some(next) = delta.next_producer_id {
        image.next_producer_id = next;
    }
    image.version = index;
}

/// The leader a partition gets from its in-sync replicas: the first of its
/// replicas (preferred order) that is in the ISR and on a live broker.
fn elect(partition: &PartitionMeta, live: &[i32]) -> Option<i32> {
    partition
        .replicas
        .iter()
        .copied()
        .find(|r| partition.isr.contains(r) && live.contains(r))
}

/// Moves `partition` to `leader` (or none), bumping the epochs when
/// anything changes.
fn set_leader(partition: &mut PartitionMeta, leader: i32) {
    if partition.leader != leader {
        partition.leader = leader;
        partition.leader_epoch += 1;
        partition.partition_epoch += 1;
    }
}

/// Fences broker `id` (it missed its session): it leads nothing. Each
/// partition it led moves to another live in-sync replica, and it leaves
/// the ISR of every partition where others remain in sync; where it is the
/// last in-sync replica the partition goes offline (leader -1) and keeps
/// it in the ISR, so no acknowledged write is lost: no unclean election
/// unless `unclean` (the topic's unclean.leader.election.enable), which
/// elects any live replica.
pub fn fence(image: &mut Catalog, id: i32, unclean: impl Fn(&str) -> bool) {
    let Some(broker) = image.brokers.get_mut(&id) else {
        return;
    };
    broker.fenced = true;
    let live = image.live_brokers();
    for topic in image.topics.values_mut() {
        let allow_unclean = unclean(&topic.name);
        for partition in &mut topic.partitions {
            if !partition.replicas.contains(&id) {
                continue;
            }
            if partition.isr.len() > 1 && partition.isr.contains(&id) {
                partition.isr.retain(|r| *r != id);
                partition.partition_epoch += 1;
            }
            if partition.leader == id || partition.leader == -1 {
                let leader = elect(partition, &live).or_else(|| {
                    allow_unclean
                        .then(|| {
                            partition
                                .replicas
                                .iter()
                                .copied()
                                .find(|r| live.contains(r))
                        })
                        .flatten()
                });
                if let Some(leader) = leader {
                    if !partition.isr.contains(&leader) {
                        // An unclean election: the new leader's log is the
                        // truth from now on.
                        partition.isr = vec![leader];
                    }
                }
                set_leader(partition, leader.unwrap_or(-1));
            }
        }
    }
}

/// Changes a partition's ISR at its leader's request (Kafka's
/// AlterPartition): refused unless the request comes from the current
/// leader, for the current leader and partition epochs, with an ISR of
/// live replicas that keeps the leader. Bumps the partition epoch.
pub fn alter_isr(
    image: &mut Catalog,
    topic: &str,
    partition: i32,
    leader: i32,
    leader_epoch: i32,
    partition_epoch: i32,
    isr: Vec<i32>,
) -> Result<(), ErrorCode> {
    let live = image.live_brokers();
    let meta = image
        .topics
        .get_mut(topic)
        .and_then(|t| {
            usize::try_from(partition)
                .ok()
                .and_then(|i| t.partitions.get_mut(i))
        })
        .ok_or(ErrorCode::UnknownTopicOrPartition)?;
    if meta.leader != leader || meta.leader_epoch != leader_epoch {
        return Err(ErrorCode::FencedLeaderEpoch);
    }
    if meta.partition_epoch != partition_epoch {
        return Err(ErrorCode::InvalidUpdateVersion);
    }
    let valid = isr.contains(&leader)
        && isr
            .iter()
            .all(|r| meta.replicas.contains(r) && (live.contains(r) || *r == leader));
    if !valid {
        return Err(ErrorCode::InvalidRequest);
    }
    // Replica order, as Kafka keeps it.
    let isr: Vec<i32> = meta
        .replicas
        .iter()
        .copied()
        .filter(|r| isr.contains(r))
        .collect();
    if meta.isr != isr {
        meta.isr = isr;
        meta.partition_epoch += 1;
    }
    complete_reassignment(meta, &live);
    Ok(())
}

/// Preferred leader election (ElectLeaders type 0, and
/// `auto.leader.rebalance.enable`): the first replica leads again when it
/// is live and in sync.
pub fn elect_preferred(partition: &mut PartitionMeta, live: &[i32]) -> Result<(), ErrorCode> {
    let preferred = partition.replicas.first().copied().unwrap_or(-1);
    if partition.leader == preferred {
        return Err(ErrorCode::ElectionNotNeeded);
    }
    if !partition.isr.contains(&preferred) || !live.contains(&preferred) {
        return Err(ErrorCode::PreferredLeaderNotAvailable);
    }
    set_leader(partition, preferred);
    Ok(())
}

/// Unclean leader election (ElectLeaders type 1) of a partition without a
/// leader: an in-sync live replica if there is one, else any live replica,
/// whose log becomes the truth (the ISR is just that replica).
pub fn elect_unclean(partition: &mut PartitionMeta, live: &[i32]) -> Result<(), ErrorCode> {
    if partition.leader != -1 {
        return Err(ErrorCode::ElectionNotNeeded);
    }
    let leader = elect(partition, live)
        .or_else(|| {
            partition
                .replicas
                .iter()
                .copied()
                .find(|r| live.contains(r))
        })
        .ok_or(ErrorCode::EligibleLeadersNotAvailable)?;
    if !partition.isr.contains(&leader) {
        partition.isr = vec![leader];
    }
    set_leader(partition, leader);
    Ok(())
}

/// Starts moving a partition to `target` (AlterPartitionReassignments, as
/// Kafka's controller does it): the replicas become the target followed by
/// the ones leaving; new replicas fetch until they are in sync, then
/// [`complete_reassignment`] drops the leaving ones (at once when nothing
/// is added). A running reassignment is replaced. `brokers`: the
/// registered broker ids.
pub fn reassign(
    partition: &mut PartitionMeta,
    target: &[i32],
    brokers: &[i32],
    live: &[i32],
) -> Result<(), (ErrorCode, String)> {
    let invalid = |why: String| Err((ErrorCode::InvalidReplicaAssignment, why));
    if target.is_empty() {
        return invalid("the replica list is empty".into());
    }
    if let Some(r) = target.iter().find(|r| !brokers.contains(r)) {
        return invalid(format!("broker {r} is not registered"));
    }
    if target
        .iter()
        .enumerate()
        .any(|(i, r)| target[..i].contains(r))
    {
        return invalid(format!("duplicate broker in {target:?}"));
    }
    let removing: Vec<i32> = partition
        .replicas
        .iter()
        .copied()
        .filter(|r| !target.contains(r))
        .collect();
    let adding: Vec<i32> = target
        .iter()
        .copied()
        .filter(|r| !partition.replicas.contains(r))
        .collect();
    let mut replicas = target.to_vec();
    replicas.extend(&removing);
    partition.replicas = replicas;
    partition.adding_replicas = adding;
    partition.removing_replicas = removing;
    partition.partition_epoch += 1;
    complete_reassignment(partition, live);
    Ok(())
}

/// Cancels a running reassignment: back to the replicas it started from.
/// Refused when none of those is in sync (that would need an unclean
/// election).
pub fn cancel_reassignment(
    partition: &mut PartitionMeta,
    live: &[i32],
) -> Result<(), (ErrorCode, String)> {
    if !partition.reassigning() {
        return Err((
            ErrorCode::NoReassignmentInProgress,
            "no reassignment of this partition is in progress".into(),
        ));
    }
    let original: Vec<i32> = partition
        .replicas
        .iter()
        .copied()
        .filter(|r| !partition.adding_replicas.contains(r))
        .collect();
    if !partition.isr.iter().any(|r| original.contains(r)) {
        return Err((
            ErrorCode::InvalidReplicaAssignment,
            "none of the original replicas is in sync: cancelling would need an unclean election"
                .into(),
        ));
    }
    partition.removing_replicas = partition.adding_replicas.clone();
    partition.adding_replicas.clear();
    partition.replicas = original
        .iter()
        .chain(&partition.removing_replicas)
        .copied()
        .collect();
    partition.partition_epoch += 1;
    finish_reassignment(partition, live);
    Ok(())
}

/// Completes a reassignment once every added replica is in sync and a
/// target replica is: the leaving replicas go, and leadership moves into
/// the target when its leader leaves. Returns whether it completed.
pub fn complete_reassignment(partition: &mut PartitionMeta, live: &[i32]) -> bool {
    if !partition.reassigning() {
        return false;
    }
    let target = partition.target_replicas();
    let ready = partition
        .adding_replicas
        .iter()
        .all(|r| partition.isr.contains(r))
        && partition.isr.iter().any(|r| target.contains(r));
    if ready {
        finish_reassignment(partition, live);
    }
    ready
}

fn finish_reassignment(partition: &mut PartitionMeta, live: &[i32]) {
    let target = partition.target_replicas();
    partition.isr = target
        .iter()
        .copied()
        .filter(|r| partition.isr.contains(r))
        .collect();
    partition.replicas = target;
    partition.adding_replicas.clear();
    partition.removing_replicas.clear();
    partition.partition_epoch += 1;
    if !partition.replicas.contains(&partition.leader) {
        let leader = elect(partition, live).unwrap_or(-1);
        set_leader(partition, leader);
    }
}

/// Unfences broker `id` (registered again, heartbeating): partitions
/// without a leader whose ISR holds it get it as leader.
pub fn unfence(image: &mut Catalog, broker: BrokerMeta) {
    let id = broker.id;
    image.brokers.insert(
        id,
        BrokerMeta {
            fenced: false,
            ..broker
        },
    );
    let live = image.live_brokers();
    for topic in image.topics.values_mut() {
        for partition in &mut topic.partitions {
            if partition.leader == -1 && partition.isr.contains(&id) {
                if let Some(leader) = elect(partition, &live) {
                    set_leader(partition, leader);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(id: i32) -> BrokerMeta {
        BrokerMeta {
            id,
            host: "127.0.0.1".into(),
            port: 9000 + id as u16,
            rack: None,
            fenced: false,
            epoch: 0,
        }
    }

    fn image() -> Catalog {
        let mut c = Catalog::default();
        for id in [1, 2, 3] {
            c.brokers.insert(id, broker(id));
        }
        c.topics.insert(
            "t".into(),
            TopicMeta {
                name: "t".into(),
                id: [1; 16],
                partitions: vec![
                    PartitionMeta::new(vec![1, 2, 3]),
                    PartitionMeta::new(vec![2, 3, 1]),
                    PartitionMeta::new(vec![1]),
                ],
                configs: BTreeMap::new(),
            },
        );
        c
    }

    #[test]
    fn deltas_round_trip_and_reproduce_the_image() {
        let old = image();
        let mut new = old.clone();
        new.cluster_id = "abc".into();
        new.topics.remove("t");
        new.topics.insert(
            "u".into(),
            TopicMeta {
                name: "u".into(),
                id: [2; 16],
                partitions: vec![PartitionMeta::new(vec![3])],
                configs: BTreeMap::from([("retention.ms".into(), "1".into())]),
            },
        );
        new.brokers.get_mut(&2).expect("b2").fenced = true;
        new.broker_configs.insert(
            "".into(),
            BTreeMap::from([("log.retention.ms".into(), "5".into())]),
        );
        new.next_producer_id = 1000;
        let delta = diff(&old, &new);
        let decoded = MetadataDelta::decode(&delta.encode()).expect("decodes");
        assert_eq!(decoded, delta);
        let mut replayed = old.clone();
        apply(&mut replayed, &decoded, 7);
        new.version = 7;
        assert_eq!(replayed, new);
        assert!(diff(&new, &new).is_empty());
        // The cluster id never changes once agreed.
        let other = MetadataDelta {
            cluster_id: Some("zzz".into()),
            ..MetadataDelta::default()
        };
        apply(&mut replayed, &other, 8);
        assert_eq!(replayed.cluster_id, "abc");
        assert!(MetadataDelta::decode(b"{not json").is_err());
    }

    #[test]
    fn fencing_moves_leaders_within_the_isr_and_never_elects_uncleanly() {
        let mut c = image();
        fence(&mut c, 1, |_| false);
        let t = &c.topics["t"];
        assert!(c.brokers[&1].fenced);
        assert_eq!(
            (t.partitions[0].leader, t.partitions[0].leader_epoch),
            (2, 1)
        );
        assert_eq!(t.partitions[0].isr, vec![2, 3]);
        assert_eq!(
            (t.partitions[1].leader, t.partitions[1].leader_epoch),
            (2, 0),
            "not led by 1"
        );
        assert_eq!(t.partitions[1].isr, vec![2, 3]);
        // The only in-sync replica is gone: offline, still in the ISR.
        assert_eq!(
            (t.partitions[2].leader, &t.partitions[2].isr),
            (-1, &vec![1])
        );
        assert_eq!(c.live_brokers(), vec![2, 3]);
        // Back: it leads what waited for it, and rejoins nothing else yet
        // (catching up is replication's job).
        unfence(&mut c, broker(1));
        let t = &c.topics["t"];
        assert_eq!(
            (t.partitions[2].leader, t.partitions[2].leader_epoch),
            (1, 2)
        );
        assert_eq!(t.partitions[0].leader, 2);
    }

    #[test]
    fn an_unclean_election_only_when_the_topic_allows_it() {
        let mut c = image();
        c.topics.get_mut("t").expect("t").partitions[0].isr = vec![1];
        fence(&mut c, 1, |_| true);
        let p = &c.topics["t"].partitions[0];
        assert_eq!((p.leader, &p.isr), (2, &vec![2]));
    }

    #[test]
    fn preferred_and_unclean_elections() {
        let live = [1, 2, 3];
        let mut p = PartitionMeta::new(vec![1, 2, 3]);
        assert_eq!(
            elect_preferred(&mut p, &live),
            Err(ErrorCode::ElectionNotNeeded)
        );
        set_leader(&mut p, 2);
        p.isr = vec![2, 3];
        assert_eq!(
            elect_preferred(&mut p, &live),
            Err(ErrorCode::PreferredLeaderNotAvailable),
            "the preferred replica is out of sync"
        );
        p.isr = vec![1, 2, 3];
        assert_eq!(
            elect_preferred(&mut p, &[2, 3]),
            Err(ErrorCode::PreferredLeaderNotAvailable),
            "the preferred replica is fenced"
        );
        let epoch = p.leader_epoch;
        assert_eq!(elect_preferred(&mut p, &live), Ok(()));
        assert_eq!((p.leader, p.leader_epoch), (1, epoch + 1));

        assert_eq!(
            elect_unclean(&mut p, &live),
            Err(ErrorCode::ElectionNotNeeded)
        );
        set_leader(&mut p, -1);
        p.isr = vec![1];
        assert_eq!(elect_unclean(&mut p, &[2, 3]), Ok(()), "any live replica");
        assert_eq!((p.leader, p.isr.clone()), (2, vec![2]));
        set_leader(&mut p, -1);
        assert_eq!(
            elect_unclean(&mut p, &[]),
            Err(ErrorCode::EligibleLeadersNotAvailable)
        );
    }

    #[test]
    fn a_reassignment_adds_then_removes_and_moves_the_leader() {
        let brokers = [1, 2, 3, 4];
        let live = [1, 2, 3, 4];
        let mut p = PartitionMeta::new(vec![1, 2]);
        for bad in [vec![], vec![2, 2], vec![5]] {
            let before = p.clone();
            assert_eq!(
                reassign(&mut p, &bad, &brokers, &live).map_err(|e| e.0),
                Err(ErrorCode::InvalidReplicaAssignment)
            );
            assert_eq!(p, before, "a refused reassignment changes nothing");
        }
        assert_eq!(reassign(&mut p, &[3, 4], &brokers, &live), Ok(()));
        assert_eq!(p.replicas, vec![3, 4, 1, 2]);
        assert_eq!(p.adding_replicas, vec![3, 4]);
        assert_eq!(p.removing_replicas, vec![1, 2]);
        assert_eq!(
            (p.leader, p.isr.clone()),
            (1, vec![1, 2]),
            "nothing moves yet"
        );
        // One new replica in sync: not done.
        p.isr = vec![1, 2, 3];
        assert!(!complete_reassignment(&mut p, &live));
        p.isr = vec![1, 2, 3, 4];
        let epoch = p.leader_epoch;
        assert!(complete_reassignment(&mut p, &live));
        assert_eq!(p.replicas, vec![3, 4]);
        assert_eq!(p.isr, vec![3, 4]);
        assert!(!p.reassigning());
        assert_eq!(
            (p.leader, p.leader_epoch),
            (3, epoch + 1),
            "the leader left: moved"
        );

        // Shrinking needs no catch-up: done at once, the leader stays.
        let mut q = PartitionMeta::new(vec![1, 2, 3]);
        assert_eq!(reassign(&mut q, &[1], &brokers, &live), Ok(()));
        assert_eq!(
            (q.replicas.clone(), q.isr.clone(), q.leader),
            (vec![1], vec![1], 1)
        );
        assert!(!q.reassigning());
    }

    #[test]
    fn a_reassignment_completes_through_the_isr_change_and_cancels_back() {
        let mut c = image();
        let live = c.live_brokers();
        c.brokers.insert(4, broker(4));
        let brokers: Vec<i32> = c.brokers.keys().copied().collect();
        let p = &mut c.topics.get_mut("t").expect("t").partitions[2];
        assert_eq!(reassign(p, &[4], &brokers, &live), Ok(()));
        assert_eq!(p.replicas, vec![4, 1]);
        // The leader adds the caught-up replica: the reassignment completes
        // in the same change.
        let (epoch, part_epoch) = (p.leader_epoch, p.partition_epoch);
        assert_eq!(
            alter_isr(&mut c, "t", 2, 1, epoch, part_epoch, vec![1, 4]),
            Ok(())
        );
        let p = &c.topics["t"].partitions[2];
        assert_eq!(
            (p.replicas.clone(), p.isr.clone(), p.leader),
            (vec![4], vec![4], 4)
        );

        let mut q = PartitionMeta::new(vec![1, 2]);
        assert_eq!(
            cancel_reassignment(&mut q, &live).map_err(|e| e.0),
            Err(ErrorCode::NoReassignmentInProgress)
        );
        assert_eq!(reassign(&mut q, &[3, 2], &[1, 2, 3], &live), Ok(()));
        assert_eq!(q.replicas, vec![3, 2, 1]);
        assert_eq!(cancel_reassignment(&mut q, &live), Ok(()));
        // Back to the replicas it had, in the order they stood (as Kafka).
        assert_eq!(
            (q.replicas.clone(), q.isr.clone(), q.leader),
            (vec![2, 1], vec![2, 1], 1)
        );
        assert!(!q.reassigning());
    }
}
