//! EndTxn through the coordinator: commit and abort with their markers,
//! idempotent retries, mismatches, failures of the Prepare and Complete
//! records, and the verify-only AddPartitionsToTxn.

use super::*;
use crate::effects::MarkerOutcome;
use crate::harness::*;
use crate::state::TxnState;
use crate::types::*;

#[test]
fn commit_writes_markers_then_completes() {
    let mut h = Harness::new(config());
    let (pid, epoch) = h.ongoing("t", &[tp("a", 0), tp("b", 0)]);
    h.auto_markers = false;
    h.now = 9_000;
    let r = h.end("t", pid, epoch, true);
    assert_eq!(
        r,
        ProducerIdReply::ok(pid, epoch),
        "answered once PrepareCommit is durable"
    );
    assert_eq!(h.state("t"), Some(TxnState::PrepareCommit));
    let (_, id, marker, not_before) = h.markers.front().cloned().expect("markers");
    assert_eq!((id.as_str(), not_before), ("t", 9_000));
    assert_eq!(
        marker,
        TxnMarker {
            producer_id: pid,
            producer_epoch: epoch,
            coordinator_epoch: COORDINATOR_EPOCH,
            result: TxnResult::Commit,
            partitions: vec![tp("a", 0), tp("b", 0)],
        }
    );
    // One leader answers first: a-0 leaves the transaction.
    let (id, ..) = h.markers.pop_front().expect("markers");
    h.step(Event::MarkersWritten {
        id,
        results: vec![(tp("a", 0), MarkerOutcome::Written)],
    });
    assert_eq!(h.meta("t").partitions.len(), 1);
    assert_eq!(h.describe("t").state, "PrepareCommit");
    h.step(Event::MarkersWritten {
        id,
        results: vec![(tp("b", 0), MarkerOutcome::Written)],
    });
    let m = h.meta("t");
    assert_eq!(
        (m.state, m.pending, m.partitions.len()),
        (TxnState::CompleteCommit, None, 0)
    );
    let v = h.records_of("t").pop().flatten().expect("stored");
    assert_eq!(
        (v.state, v.start_ms, v.producer_epoch),
        (TxnState::CompleteCommit, 1_000, epoch)
    );
    assert!(v.partitions.is_empty());
    assert_eq!(h.c.markers_in_flight(), 0);
    // The next transaction starts from CompleteCommit.
    h.auto_markers = true;
    assert_eq!(h.add("t", pid, epoch, &[tp("c", 0)]), ErrorCode::None);
    assert_eq!(h.meta("t").start_ms, 9_000);
}

#[test]
fn abort_writes_abort_markers() {
    let mut h = Harness::new(config());
    let (pid, epoch) = h.ongoing("t", &[tp("a", 0)]);
    assert_eq!(h.end("t", pid, epoch, false).error, ErrorCode::None);
    assert_eq!(h.state("t"), Some(TxnState::CompleteAbort));
    assert_eq!(h.written.len(), 1);
    assert_eq!(h.written[0].1.result, TxnResult::Abort);
}

#[test]
fn end_txn_retries_and_mismatches() {
    let mut h = Harness::new(config());
    let (pid, epoch) = h.ongoing("t", &[tp("a", 0)]);
    assert_eq!(h.end("t", pid, epoch, true).error, ErrorCode::None);
    // A retried commit of a completed commit: NONE; an abort: refused.
    assert_eq!(
        h.end("t", pid, epoch, true),
        ProducerIdReply::ok(pid, epoch)
    );
    assert_eq!(
        h.end("t", pid, epoch, false).error,
        ErrorCode::InvalidTxnState
    );
    assert_eq!(h.add("t", pid, epoch, &[tp("a", 0)]), ErrorCode::None);
    assert_eq!(h.end("t", pid, epoch, false).error, ErrorCode::None);
    assert_eq!(
        h.end("t", pid, epoch, false),
        ProducerIdReply::ok(pid, epoch)
    );
    assert_eq!(
        h.end("t", pid, epoch, true).error,
        ErrorCode::InvalidTxnState
    );
    // Identity errors come first.
    assert_eq!(
        h.end("t", pid + 1, epoch, true).error,
        ErrorCode::InvalidProducerIdMapping
    );
    assert_eq!(
        h.end("t", pid, epoch + 1, true).error,
        ErrorCode::ProducerFenced
    );
    assert_eq!(
        h.end("u", pid, epoch, true).error,
        ErrorCode::InvalidProducerIdMapping
    );
    assert_eq!(h.end("", pid, epoch, true).error, ErrorCode::InvalidRequest);
    // Nothing to end.
    h.init("v");
    let v = h.meta("v").producer_id;
    assert_eq!(h.end("v", v, 0, true).error, ErrorCode::InvalidTxnState);
    assert_eq!(h.end("v", v, 0, false).error, ErrorCode::InvalidTxnState);
}

#[test]
fn end_txn_while_completing() {
    let mut h = Harness::new(config());
    let (pid, epoch) = h.ongoing("t", &[tp("a", 0)]);
    h.auto_markers = false;
    assert_eq!(h.end("t", pid, epoch, true).error, ErrorCode::None);
    // Markers in flight (a pending completion): both are told to retry.
    assert_eq!(
        h.end("t", pid, epoch, true).error,
        ErrorCode::ConcurrentTransactions
    );
    assert_eq!(
        h.end("t", pid, epoch, false).error,
        ErrorCode::ConcurrentTransactions
    );
    // The Complete record fails for good: prepared with nothing pending
    // (Kafka leaves it to the next load).
    h.auto_ack = false;
    h.report_markers(|_| MarkerOutcome::Written);
    h.complete_append(Err(ErrorCode::NotLeaderOrFollower));
    let m = h.meta("t");
    assert_eq!((m.state, m.pending), (TxnState::PrepareCommit, None));
    assert_eq!(
        h.end("t", pid, epoch, true).error,
        ErrorCode::ConcurrentTransactions
    );
    assert_eq!(
        h.end("t", pid, epoch, false).error,
        ErrorCode::InvalidTxnState
    );
    assert_eq!(h.unanswered(), 0);
}

#[test]
fn a_failed_prepare_record_leaves_the_transaction_open() {
    let mut h = Harness::new(config());
    let (pid, epoch) = h.ongoing("t", &[tp("a", 0)]);
    h.auto_ack = false;
    let r = h.end_request("t", pid, epoch, true);
    assert_eq!(h.meta("t").pending, Some(TxnState::PrepareCommit));
    h.complete_append(Err(ErrorCode::KafkaStorageError));
    assert_eq!(
        h.end_reply(r),
        ProducerIdReply::error(ErrorCode::NotCoordinator)
    );
    assert_eq!(
        (h.state("t"), h.meta("t").pending),
        (Some(TxnState::Ongoing), None)
    );
    assert!(h.markers.is_empty() && h.written.is_empty(), "no markers");
    h.auto_ack = true;
    assert_eq!(h.end("t", pid, epoch, true).error, ErrorCode::None);
    assert_eq!(h.state("t"), Some(TxnState::CompleteCommit));
}

#[test]
fn an_empty_transaction_completes_without_markers() {
    let mut h = Harness::new(config());
    let p = h.init("t");
    // Kafka accepts AddPartitionsToTxn with no partition: Ongoing.
    assert_eq!(h.add("t", p.producer_id, 0, &[]), ErrorCode::None);
    assert_eq!(h.state("t"), Some(TxnState::Ongoing));
    assert_eq!(
        h.add("t", p.producer_id, 0, &[]),
        ErrorCode::None,
        "a subset"
    );
    assert_eq!(h.end("t", p.producer_id, 0, true).error, ErrorCode::None);
    assert_eq!(h.state("t"), Some(TxnState::CompleteCommit));
    assert!(h.written.is_empty());
}

#[test]
fn verify_partitions_reports_membership() {
    let mut h = Harness::new(config());
    let (pid, epoch) = h.ongoing("t", &[tp("a", 0)]);
    let verify = |h: &mut Harness, pid: i64, epoch: i16| {
        let r = h.send(Request::VerifyPartitions(AddPartitionsRequest {
            transactional_id: "t".into(),
            producer_id: pid,
            producer_epoch: epoch,
            partitions: vec![tp("a", 0), tp("a", 1)],
        }));
        match h.take(r) {
            Some(Reply::VerifyPartitions(v)) => v.into_iter().map(|(_, e)| e).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        }
    };
    use ErrorCode::*;
    assert_eq!(verify(&mut h, pid, epoch), vec![None, TransactionAbortable]);
    assert_eq!(
        verify(&mut h, pid + 1, epoch),
        vec![InvalidProducerIdMapping; 2]
    );
    assert_eq!(verify(&mut h, pid, epoch + 1), vec![ProducerFenced; 2]);
    h.auto_markers = false;
    assert_eq!(h.end("t", pid, epoch, true).error, None);
    assert_eq!(verify(&mut h, pid, epoch), vec![ConcurrentTransactions; 2]);
    assert_eq!(h.c.appends_in_flight(), 0, "verifying writes nothing");
}
