//! The requests through the coordinator: InitProducerId (new ids, epoch
//! bumps, exhaustion, KIP-360, fencing), AddPartitionsToTxn and
//! AddOffsetsToTxn, with every error path.

use super::*;
use crate::effects::MarkerOutcome;
use crate::harness::*;
use crate::state::TxnState;
use crate::types::*;

/// Jumps an id's epoch (a long-lived producer).
fn set_epoch(h: &mut Harness, id: &str, epoch: i16) {
    let slot =
        h.c.partitions
            .get_mut(&h.c.partition_of(id))
            .expect("loaded");
    slot.txns.get_mut(id).expect("known").producer_epoch = epoch;
}

#[test]
fn a_new_transactional_id_gets_a_new_producer_id_and_epoch_zero() {
    let mut h = Harness::new(config());
    let p = h.init("t");
    assert_eq!(p, ProducerIdReply::ok(1_000, 0));
    assert_eq!(h.pids_allocated, 1);
    let m = h.meta("t");
    assert_eq!(
        (m.state, m.timeout_ms, m.pending),
        (TxnState::Empty, TIMEOUT_MS, None)
    );
    let records = h.records_of("t");
    assert_eq!(records.len(), 1, "one record");
    let v = records[0].as_ref().expect("a value");
    assert_eq!(
        (v.producer_id, v.producer_epoch, v.state),
        (1_000, 0, TxnState::Empty)
    );
    assert!(v.partitions.is_empty());
    // Again: the epoch is bumped, the producer id kept.
    assert_eq!(h.init("t"), ProducerIdReply::ok(1_000, 1));
    assert_eq!(h.pids_allocated, 1);
}

#[test]
fn init_producer_id_refusals() {
    let mut h = Harness::new(config());
    let refused = |h: &mut Harness, request: InitProducerIdRequest| {
        let r = h.send(Request::InitProducerId(request));
        h.init_reply(r).error
    };
    let base = InitProducerIdRequest {
        transactional_id: "t".into(),
        transaction_timeout_ms: TIMEOUT_MS,
        expected: None,
    };
    let too_long = InitProducerIdRequest {
        transaction_timeout_ms: 900_001,
        ..base.clone()
    };
    assert_eq!(
        refused(&mut h, too_long),
        ErrorCode::InvalidTransactionTimeout
    );
    let zero = InitProducerIdRequest {
        transaction_timeout_ms: 0,
        ..base.clone()
    };
    assert_eq!(refused(&mut h, zero), ErrorCode::InvalidTransactionTimeout);
    let empty = InitProducerIdRequest {
        transactional_id: String::new(),
        ..base.clone()
    };
    assert_eq!(refused(&mut h, empty), ErrorCode::InvalidRequest);
    let half = InitProducerIdRequest {
        expected: Some(ProducerIdAndEpoch {
            producer_id: 5,
            epoch: -1,
        }),
        ..base.clone()
    };
    assert_eq!(refused(&mut h, half), ErrorCode::InvalidRequest);
    let max = InitProducerIdRequest {
        transaction_timeout_ms: 900_000,
        ..base
    };
    assert_eq!(
        refused(&mut h, max),
        ErrorCode::None,
        "the maximum itself is fine"
    );
    assert_eq!(h.c.appends_in_flight(), 0);
}

#[test]
fn a_failing_producer_id_source_is_reported() {
    let mut h = Harness::new(config());
    h.pid_error = Some(ErrorCode::CoordinatorLoadInProgress);
    assert_eq!(h.init("t").error, ErrorCode::CoordinatorLoadInProgress);
    assert!(h.c.metadata("t").is_none(), "nothing created");
    h.pid_error = None;
    assert_eq!(h.init("t").error, ErrorCode::None);
}

#[test]
fn an_exhausted_epoch_moves_to_a_new_producer_id() {
    let mut h = Harness::new(config());
    h.init("t");
    set_epoch(&mut h, "t", i16::MAX - 2);
    assert_eq!(
        h.init("t"),
        ProducerIdReply::ok(1_000, i16::MAX - 1),
        "the last epoch"
    );
    assert!(h.meta("t").epoch_exhausted());
    let p = h.init("t");
    assert_eq!(p, ProducerIdReply::ok(1_001, 0), "a new producer id");
    let m = h.meta("t");
    assert_eq!((m.previous_producer_id, m.last_producer_epoch), (1_000, -1));
    let v = h.records_of("t").pop().flatten().expect("stored");
    assert_eq!(
        (v.producer_id, v.previous_producer_id, v.producer_epoch),
        (1_001, 1_000, 0)
    );
}

#[test]
fn kip_360_a_producer_keeps_its_id_after_an_error() {
    let mut h = Harness::new(config());
    let p = h.init("t");
    // The producer had an error and asks to continue with its id/epoch.
    assert_eq!(
        h.init_expected("t", p.producer_id, 0),
        ProducerIdReply::ok(1_000, 1)
    );
    // The answer was lost; the same request again gets the same answer.
    assert_eq!(
        h.init_expected("t", p.producer_id, 0),
        ProducerIdReply::ok(1_000, 1)
    );
    // An epoch that is neither current nor last, or another producer id.
    assert_eq!(
        h.init_expected("t", 1_000, 7).error,
        ErrorCode::ProducerFenced
    );
    assert_eq!(
        h.init_expected("t", 4_242, 1).error,
        ErrorCode::ProducerFenced
    );
    // A new instance (no expected id) forgets the last epoch.
    assert_eq!(h.init("t"), ProducerIdReply::ok(1_000, 2));
    assert_eq!(
        h.init_expected("t", 1_000, 1).error,
        ErrorCode::ProducerFenced
    );
    // An id the coordinator does not know (expired): a new producer id.
    assert_eq!(h.init_expected("u", 77, 3), ProducerIdReply::ok(1_001, 0));
}

#[test]
fn kip_360_retry_after_a_rotation_it_never_heard_of() {
    let mut h = Harness::new(config());
    h.init("t");
    set_epoch(&mut h, "t", i16::MAX - 1);
    // Continue with the exhausted epoch: rotation, the old epoch remembered.
    let rotated = h.init_expected("t", 1_000, i16::MAX - 1);
    assert_eq!(rotated, ProducerIdReply::ok(1_001, 0));
    assert_eq!(h.meta("t").last_producer_epoch, i16::MAX - 1);
    // The answer was lost: the retry names the old id and epoch and gets
    // the new id, without another bump.
    assert_eq!(h.init_expected("t", 1_000, i16::MAX - 1), rotated);
    // The old id with an epoch that is not exhausted is fenced.
    assert_eq!(
        h.init_expected("t", 1_000, 5).error,
        ErrorCode::ProducerFenced
    );
}

#[test]
fn init_producer_id_fences_an_open_transaction_by_aborting_it() {
    let mut h = Harness::new(config());
    let (pid, epoch) = h.ongoing("t", &[tp("a", 0), tp("b", 1)]);
    h.auto_markers = false;
    // A new instance of the producer starts.
    let p = h.init("t");
    assert_eq!(
        p.error,
        ErrorCode::ConcurrentTransactions,
        "retry after the abort"
    );
    let m = h.meta("t");
    assert_eq!(
        (m.state, m.producer_epoch),
        (TxnState::PrepareAbort, epoch + 1)
    );
    assert_eq!(m.pending, Some(TxnState::CompleteAbort));
    // The zombie (old epoch) is fenced everywhere.
    assert_eq!(
        h.add("t", pid, epoch, &[tp("c", 0)]),
        ErrorCode::ProducerFenced
    );
    assert_eq!(
        h.end("t", pid, epoch, true).error,
        ErrorCode::ProducerFenced
    );
    // Markers abort the transaction with the bumped epoch.
    let (_, _, marker, _) = h.markers.front().cloned().expect("markers");
    assert_eq!(marker.result, TxnResult::Abort);
    assert_eq!(
        (marker.producer_id, marker.producer_epoch),
        (pid, epoch + 1)
    );
    assert_eq!(marker.coordinator_epoch, COORDINATOR_EPOCH);
    assert_eq!(marker.partitions, vec![tp("a", 0), tp("b", 1)]);
    // Still completing: the new producer is told to retry.
    assert_eq!(h.init("t").error, ErrorCode::ConcurrentTransactions);
    h.report_markers(|_| MarkerOutcome::Written);
    assert_eq!(h.state("t"), Some(TxnState::CompleteAbort));
    // The retry bumps again.
    assert_eq!(h.init("t"), ProducerIdReply::ok(pid, epoch + 2));
    let states: Vec<TxnState> = h
        .records_of("t")
        .into_iter()
        .map(|v| v.expect("values").state)
        .collect();
    use TxnState::*;
    assert_eq!(
        states,
        vec![Empty, Ongoing, PrepareAbort, CompleteAbort, Empty]
    );
}

#[test]
fn init_producer_id_waits_for_a_pending_transition() {
    let mut h = Harness::new(config());
    let (pid, epoch) = h.ongoing("t", &[tp("a", 0)]);
    h.auto_ack = false;
    let add = h.add_request("t", pid, epoch, &[tp("a", 1)]);
    assert_eq!(h.init("t").error, ErrorCode::ConcurrentTransactions);
    h.complete_all();
    assert_eq!(h.add_reply(add), ErrorCode::None);
    // Prepared and completing: CONCURRENT_TRANSACTIONS too.
    h.auto_ack = true;
    h.auto_markers = false;
    assert_eq!(h.end("t", pid, epoch, true).error, ErrorCode::None);
    assert_eq!(h.init("t").error, ErrorCode::ConcurrentTransactions);
    assert_eq!(h.unanswered(), 0);
}

#[test]
fn requests_for_partitions_not_served_are_refused() {
    let mut h = Harness::bare(config());
    let p = h.c.partition_of("t");
    assert_eq!(h.init("t").error, ErrorCode::NotCoordinator);
    h.step(Event::LoadStarted {
        partition: p,
        coordinator_epoch: 1,
    });
    assert_eq!(h.init("t").error, ErrorCode::CoordinatorLoadInProgress);
    assert_eq!(
        h.add("t", 1, 0, &[tp("a", 0)]),
        ErrorCode::CoordinatorLoadInProgress
    );
    assert_eq!(h.describe("t").error, ErrorCode::CoordinatorLoadInProgress);
    h.step(Event::LoadFailed {
        partition: p,
        reason: "read error".into(),
    });
    assert_eq!(
        h.end("t", 1, 0, true).error,
        ErrorCode::CoordinatorNotAvailable
    );
    assert_eq!(
        h.c.partitions(),
        vec![(p, PartitionStatus::Failed("read error".into()))]
    );
    h.load(p, Vec::new());
    assert_eq!(h.init("t").error, ErrorCode::None, "served again");
    assert_eq!(h.unanswered(), 0);
}

#[test]
fn add_partitions_opens_and_extends_the_transaction() {
    let mut h = Harness::new(config());
    let p = h.init("t");
    h.now = 5_000;
    assert_eq!(
        h.add("t", p.producer_id, 0, &[tp("a", 1), tp("a", 0)]),
        ErrorCode::None
    );
    let m = h.meta("t");
    assert_eq!(
        (m.state, m.start_ms, m.last_update_ms),
        (TxnState::Ongoing, 5_000, 5_000)
    );
    let v = h.records_of("t").pop().flatten().expect("stored");
    assert_eq!(v.partitions.len(), 2);
    // Partitions already in: answered without a record.
    let records = h.records_of("t").len();
    assert_eq!(h.add("t", p.producer_id, 0, &[tp("a", 0)]), ErrorCode::None);
    assert_eq!(h.records_of("t").len(), records);
    // New ones: a record; the start time stays.
    h.now = 6_000;
    assert_eq!(
        h.add("t", p.producer_id, 0, &[tp("b", 0), tp("a", 0)]),
        ErrorCode::None
    );
    let m = h.meta("t");
    assert_eq!((m.partitions.len(), m.start_ms), (3, 5_000));
    assert_eq!(
        h.describe("t").topics,
        vec![("a".into(), vec![0, 1]), ("b".into(), vec![0])]
    );
}

#[test]
fn add_partitions_refusals() {
    let mut h = Harness::new(config());
    assert_eq!(
        h.add("t", 1_000, 0, &[tp("a", 0)]),
        ErrorCode::InvalidProducerIdMapping
    );
    let p = h.init("t");
    let pid = p.producer_id;
    assert_eq!(
        h.add("t", pid + 1, 0, &[tp("a", 0)]),
        ErrorCode::InvalidProducerIdMapping
    );
    assert_eq!(h.add("t", pid, 1, &[tp("a", 0)]), ErrorCode::ProducerFenced);
    assert_eq!(h.add("", pid, 0, &[tp("a", 0)]), ErrorCode::InvalidRequest);
    let long_topic = "x".repeat(40_000);
    assert_eq!(
        h.add("t", pid, 0, &[tp(&long_topic, 0)]),
        ErrorCode::InvalidRequest
    );
    // While a record is in flight.
    h.auto_ack = false;
    let first = h.add_request("t", pid, 0, &[tp("a", 0)]);
    assert_eq!(
        h.add("t", pid, 0, &[tp("a", 1)]),
        ErrorCode::ConcurrentTransactions
    );
    // The record fails: the log's error is mapped, nothing changed.
    h.complete_append(Err(ErrorCode::NotEnoughReplicas));
    assert_eq!(h.add_reply(first), ErrorCode::CoordinatorNotAvailable);
    assert_eq!(
        (h.state("t"), h.meta("t").pending),
        (Some(TxnState::Empty), None)
    );
    let again = h.add_request("t", pid, 0, &[tp("a", 0)]);
    h.complete_append(Err(ErrorCode::NotLeaderOrFollower));
    assert_eq!(h.add_reply(again), ErrorCode::NotCoordinator);
    h.auto_ack = true;
    assert_eq!(h.add("t", pid, 0, &[tp("a", 0)]), ErrorCode::None);
    // While the transaction completes.
    h.auto_markers = false;
    assert_eq!(h.end("t", pid, 0, false).error, ErrorCode::None);
    assert_eq!(
        h.add("t", pid, 0, &[tp("a", 2)]),
        ErrorCode::ConcurrentTransactions
    );
    assert_eq!(h.unanswered(), 0);
}

#[test]
fn add_partitions_before_any_epoch_is_refused() {
    let mut h = Harness::new(config());
    // The first InitProducerId's record fails: the id exists with no epoch.
    h.auto_ack = false;
    let r = h.init_request("t", None);
    h.complete_append(Err(ErrorCode::RequestTimedOut));
    assert_eq!(h.init_reply(r).error, ErrorCode::CoordinatorNotAvailable);
    assert_eq!(h.meta("t").producer_epoch, -1);
    assert_eq!(
        h.add("t", 1_000, -1, &[tp("a", 0)]),
        ErrorCode::InvalidProducerIdMapping
    );
    assert_eq!(
        h.end("t", 1_000, -1, true).error,
        ErrorCode::InvalidTxnState
    );
    // The retry reuses the producer id.
    h.auto_ack = true;
    assert_eq!(h.init("t"), ProducerIdReply::ok(1_000, 0));
    assert_eq!(h.pids_allocated, 1);
}

#[test]
fn a_transaction_is_bounded() {
    let mut h = Harness::new(TxnConfig {
        transaction_partitions_max: 3,
        ..config()
    });
    let p = h.init("t");
    let three = [tp("a", 0), tp("a", 1), tp("a", 2)];
    assert_eq!(h.add("t", p.producer_id, 0, &three), ErrorCode::None);
    assert_eq!(
        h.add("t", p.producer_id, 0, &three),
        ErrorCode::None,
        "already in"
    );
    assert_eq!(
        h.add("t", p.producer_id, 0, &[tp("b", 0)]),
        ErrorCode::UnknownServerError
    );
    assert_eq!(h.meta("t").partitions.len(), 3);
}

#[test]
fn add_offsets_adds_the_groups_offsets_partition() {
    fn every_group_in_partition_3(_group: &str, partitions: i32) -> i32 {
        assert_eq!(partitions, 4);
        3
    }
    let mut h = Harness::new(TxnConfig {
        offsets_partition_for: every_group_in_partition_3,
        ..config()
    });
    let p = h.init("t");
    assert_eq!(h.add_offsets("t", p.producer_id, 0, "g"), ErrorCode::None);
    assert!(h
        .meta("t")
        .partitions
        .contains(&tp(crate::OFFSETS_TOPIC, 3)));
    assert_eq!(
        h.add_offsets("t", p.producer_id, 1, "g"),
        ErrorCode::ProducerFenced
    );
    assert_eq!(
        h.add_offsets("u", 1, 0, "g"),
        ErrorCode::InvalidProducerIdMapping
    );
    // By default Kafka's rule: abs(hashCode) % offsets.topic.num.partitions.
    let mut h = Harness::new(config());
    let p = h.init("t");
    assert_eq!(
        h.add_offsets("t", p.producer_id, 0, "Hello World"),
        ErrorCode::None
    );
    let expected = crate::records::partition_for("Hello World", 4);
    assert!(h
        .meta("t")
        .partitions
        .contains(&tp("__consumer_offsets", expected)));
}
