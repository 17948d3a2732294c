//! Every request against every state Kafka's coordinator can hold an id
//! in, with and without a pending transition: the table of answers.

use super::*;
use crate::types::TopicPartition;

const PID: i64 = 10;
const EPOCH: i16 = 3;

fn meta(state: TxnState, pending: Option<TxnState>) -> TxnMetadata {
    let mut m = TxnMetadata::new("t", PID, 1000, 0);
    m.producer_epoch = EPOCH;
    m.state = state;
    m.pending = pending;
    if state.has_pending_transaction() {
        m.partitions.insert(TopicPartition::new("a", 0));
        m.start_ms = 5;
    }
    m
}

fn no_ids() -> impl FnMut() -> Result<i64, ErrorCode> {
    || panic!("no producer id is needed")
}

/// What a request led to: an error code, or the state of the record it
/// asked for.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Code(ErrorCode),
    Writes(TxnState),
}

fn outcome(d: Decision) -> Outcome {
    match d {
        Decision::Append(t, _) => Outcome::Writes(t.state),
        Decision::Reply(Reply::InitProducerId(p) | Reply::EndTxn(p)) => Outcome::Code(p.error),
        Decision::Reply(Reply::AddPartitions(e) | Reply::AddOffsets(e)) => Outcome::Code(e),
        Decision::Reply(other) => panic!("{other:?}"),
    }
}

fn init(m: &mut TxnMetadata) -> Outcome {
    let r = InitProducerIdRequest {
        transactional_id: "t".into(),
        transaction_timeout_ms: 1000,
        expected: None,
    };
    outcome(init_producer_id(m, RequestId(1), &r, 50, &mut no_ids()))
}

fn add(m: &mut TxnMetadata, partition: i32) -> Outcome {
    let r = AddPartitionsRequest {
        transactional_id: "t".into(),
        producer_id: PID,
        producer_epoch: EPOCH,
        partitions: vec![TopicPartition::new("a", partition)],
    };
    outcome(add_partitions(
        Some(m),
        RequestId(1),
        &r,
        false,
        &TxnConfig::default(),
        50,
    ))
}

fn end(m: &mut TxnMetadata, result: TxnResult) -> Outcome {
    let r = EndTxnRequest {
        transactional_id: "t".into(),
        producer_id: PID,
        producer_epoch: EPOCH,
        result,
    };
    outcome(end_txn(Some(m), RequestId(1), &r, 50))
}

#[test]
fn the_answer_table_is_kafkas() {
    use ErrorCode::{ConcurrentTransactions as Concurrent, InvalidTxnState as Invalid};
    use Outcome::*;
    use TxnState::*;
    let none = ErrorCode::None;
    // (state, InitProducerId, AddPartitions(new), AddPartitions(known),
    //  EndTxn(commit), EndTxn(abort)) with nothing pending.
    let table = [
        (
            Empty,
            Writes(Empty),
            Writes(Ongoing),
            Writes(Ongoing),
            Code(Invalid),
            Code(Invalid),
        ),
        (
            Ongoing,
            Writes(PrepareAbort),
            Writes(Ongoing),
            Code(none),
            Writes(PrepareCommit),
            Writes(PrepareAbort),
        ),
        (
            PrepareCommit,
            Code(Concurrent),
            Code(Concurrent),
            Code(Concurrent),
            Code(Concurrent),
            Code(Invalid),
        ),
        (
            PrepareAbort,
            Code(Concurrent),
            Code(Concurrent),
            Code(Concurrent),
            Code(Invalid),
            Code(Concurrent),
        ),
        (
            CompleteCommit,
            Writes(Empty),
            Writes(Ongoing),
            Writes(Ongoing),
            Code(none),
            Code(Invalid),
        ),
        (
            CompleteAbort,
            Writes(Empty),
            Writes(Ongoing),
            Writes(Ongoing),
            Code(Invalid),
            Code(none),
        ),
    ];
    for (state, i, add_new, add_known, commit, abort) in table {
        assert_eq!(init(&mut meta(state, None)), i, "InitProducerId in {state}");
        assert_eq!(
            add(&mut meta(state, None), 1),
            add_new,
            "add new in {state}"
        );
        assert_eq!(
            add(&mut meta(state, None), 0),
            add_known,
            "add known in {state}"
        );
        assert_eq!(
            end(&mut meta(state, None), TxnResult::Commit),
            commit,
            "commit in {state}"
        );
        assert_eq!(
            end(&mut meta(state, None), TxnResult::Abort),
            abort,
            "abort in {state}"
        );
    }
    // With a transition pending, everything is told to retry.
    for (state, pending) in [
        (Empty, Empty),
        (Empty, Ongoing),
        (Ongoing, PrepareCommit),
        (PrepareCommit, CompleteCommit),
        (PrepareAbort, CompleteAbort),
        (CompleteCommit, Dead),
    ] {
        let p = Some(pending);
        assert_eq!(
            init(&mut meta(state, p)),
            Code(Concurrent),
            "{state}/{pending}"
        );
        assert_eq!(
            add(&mut meta(state, p), 1),
            Code(Concurrent),
            "{state}/{pending}"
        );
        for result in [TxnResult::Commit, TxnResult::Abort] {
            assert_eq!(
                end(&mut meta(state, p), result),
                Code(Concurrent),
                "{state}/{pending}"
            );
        }
    }
}

#[test]
fn decisions_leave_the_metadata_pending_only_when_they_write() {
    let mut m = meta(TxnState::Ongoing, None);
    assert_eq!(
        end(&mut m, TxnResult::Commit),
        Outcome::Writes(TxnState::PrepareCommit)
    );
    assert_eq!(m.pending, Some(TxnState::PrepareCommit));
    let mut m = meta(TxnState::Ongoing, None);
    assert_eq!(add(&mut m, 0), Outcome::Code(ErrorCode::None));
    assert_eq!(m.pending, None);
    // InitProducerId on an open transaction fences it at once.
    let mut m = meta(TxnState::Ongoing, None);
    assert_eq!(init(&mut m), Outcome::Writes(TxnState::PrepareAbort));
    assert_eq!(
        (m.producer_epoch, m.pending),
        (EPOCH + 1, Some(TxnState::PrepareAbort))
    );
}

#[test]
fn identity_checks_come_before_state_checks() {
    let mut m = meta(TxnState::PrepareCommit, Some(TxnState::CompleteCommit));
    let r = EndTxnRequest {
        transactional_id: "t".into(),
        producer_id: PID + 1,
        producer_epoch: EPOCH,
        result: TxnResult::Commit,
    };
    assert_eq!(
        outcome(end_txn(Some(&mut m), RequestId(1), &r, 0)),
        Outcome::Code(ErrorCode::InvalidProducerIdMapping)
    );
    let r = EndTxnRequest {
        producer_id: PID,
        producer_epoch: EPOCH - 1,
        ..r
    };
    assert_eq!(
        outcome(end_txn(Some(&mut m), RequestId(1), &r, 0)),
        Outcome::Code(ErrorCode::ProducerFenced)
    );
    assert_eq!(
        outcome(end_txn(None, RequestId(1), &r, 0)),
        Outcome::Code(ErrorCode::InvalidProducerIdMapping)
    );
    // KIP-360: a fenced expected id is refused before the pending check.
    let mut m = meta(TxnState::Empty, Some(TxnState::Ongoing));
    let r = InitProducerIdRequest {
        transactional_id: "t".into(),
        transaction_timeout_ms: 1000,
        expected: Some(ProducerIdAndEpoch {
            producer_id: 99,
            epoch: 0,
        }),
    };
    assert_eq!(
        outcome(init_producer_id(&mut m, RequestId(1), &r, 0, &mut no_ids())),
        Outcome::Code(ErrorCode::ConcurrentTransactions),
        "pending first, as Kafka"
    );
    m.pending = None;
    assert_eq!(
        outcome(init_producer_id(&mut m, RequestId(1), &r, 0, &mut no_ids())),
        Outcome::Code(ErrorCode::ProducerFenced)
    );
}

#[test]
fn failed_records_answer_whoever_waits() {
    let e = ErrorCode::NotCoordinator;
    let id = RequestId(7);
    assert_eq!(
        Then::InitProducerId(id).failed_reply(e),
        Some((id, Reply::InitProducerId(ProducerIdReply::error(e))))
    );
    assert_eq!(
        Then::Added { id, offsets: true }.failed_reply(e),
        Some((id, Reply::AddOffsets(e)))
    );
    assert_eq!(
        Then::Markers {
            origin: EndOrigin::Fence(id),
            fence: true
        }
        .failed_reply(e),
        Some((id, Reply::InitProducerId(ProducerIdReply::error(e))))
    );
    assert_eq!(
        Then::Markers {
            origin: EndOrigin::Client(id),
            fence: false
        }
        .failed_reply(e),
        Some((id, Reply::EndTxn(ProducerIdReply::error(e))))
    );
    assert_eq!(
        Then::Markers {
            origin: EndOrigin::Timeout,
            fence: true
        }
        .failed_reply(e),
        None
    );
    assert_eq!(Then::Completed.failed_reply(e), None);
}
