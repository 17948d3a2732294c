//! Tests of one transactional id's transitions.

use super::*;

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

/// Metadata initialised once: producer 100, epoch 0, Empty.
fn initialised() -> TxnMetadata {
    let mut m = TxnMetadata::new("t", 100, 60_000, 1);
    let t = m.prepare_epoch_bump(60_000, None, 2).expect("bumps");
    m.complete_transition(t);
    m
}

/// Metadata with an Ongoing transaction on a-0 started at 10.
fn ongoing() -> TxnMetadata {
    let mut m = initialised();
    let t = m.prepare_add_partitions(&[tp("a", 0)], 10);
    m.complete_transition(t);
    m
}

#[test]
fn a_new_id_gets_epoch_zero() {
    let mut m = TxnMetadata::new("t", 100, 60_000, 1);
    assert_eq!((m.state, m.producer_epoch), (TxnState::Empty, -1));
    let t = m.prepare_epoch_bump(30_000, None, 2).expect("bumps");
    assert_eq!(m.pending, Some(TxnState::Empty));
    assert_eq!(
        (t.producer_id, t.producer_epoch, t.last_producer_epoch),
        (100, 0, -1)
    );
    assert_eq!(
        (t.previous_producer_id, t.timeout_ms, t.start_ms),
        (100, 30_000, -1)
    );
    m.complete_transition(t);
    assert_eq!(
        (m.producer_epoch, m.timeout_ms, m.pending),
        (0, 30_000, None)
    );
    assert_eq!(m.last_update_ms, 2);
}

#[test]
fn kip_360_epoch_rules() {
    // No expected epoch: bump, forget the last epoch.
    let mut m = initialised();
    let t = m.prepare_epoch_bump(1, None, 3).expect("bumps");
    assert_eq!((t.producer_epoch, t.last_producer_epoch), (1, -1));
    m.complete_transition(t);
    // The expected epoch is the current one: bump and remember it.
    let t = m.prepare_epoch_bump(1, Some(1), 4).expect("bumps");
    assert_eq!((t.producer_epoch, t.last_producer_epoch), (2, 1));
    m.complete_transition(t);
    // A retry of that call (expects the last epoch): the same answer.
    let t = m.prepare_epoch_bump(1, Some(1), 5).expect("retry");
    assert_eq!((t.producer_epoch, t.last_producer_epoch), (2, 1));
    m.complete_transition(t);
    // Anything else is a fenced producer; nothing is pending.
    assert_eq!(
        m.prepare_epoch_bump(1, Some(0), 6),
        Err(ErrorCode::ProducerFenced)
    );
    assert_eq!(m.pending, None);
    // Metadata just created (epoch -1) accepts any expected epoch.
    let mut fresh = TxnMetadata::new("t", 7, 1, 1);
    let t = fresh.prepare_epoch_bump(1, Some(41), 2).expect("recovers");
    assert_eq!((t.producer_id, t.producer_epoch), (7, 0));
}

#[test]
fn rotation_starts_a_new_producer_id_at_epoch_zero() {
    let mut m = initialised();
    m.producer_epoch = i16::MAX - 1;
    assert!(m.epoch_exhausted());
    let t = m.prepare_rotation(200, 5_000, 9, true);
    assert_eq!((t.producer_id, t.producer_epoch), (200, 0));
    assert_eq!(
        (t.previous_producer_id, t.last_producer_epoch),
        (100, i16::MAX - 1)
    );
    m.complete_transition(t);
    assert_eq!((m.producer_id, m.previous_producer_id), (200, 100));
    let mut m = initialised();
    m.producer_epoch = i16::MAX - 1;
    let t = m.prepare_rotation(201, 5_000, 9, false);
    assert_eq!(
        t.last_producer_epoch, -1,
        "a new instance forgets the epoch"
    );
}

#[test]
#[should_panic(expected = "bumped past the last")]
fn an_exhausted_epoch_is_never_bumped() {
    let mut m = initialised();
    m.producer_epoch = i16::MAX - 1;
    let _ = m.prepare_epoch_bump(1, None, 2);
}

#[test]
fn adding_partitions_opens_and_extends_a_transaction() {
    let mut m = initialised();
    let t = m.prepare_add_partitions(&[tp("a", 1), tp("a", 0)], 10);
    assert_eq!(
        (t.state, t.start_ms, t.last_update_ms),
        (TxnState::Ongoing, 10, 10)
    );
    m.complete_transition(t);
    let t = m.prepare_add_partitions(&[tp("b", 0), tp("a", 0)], 20);
    assert_eq!(t.start_ms, 10, "the transaction started at the first add");
    m.complete_transition(t);
    let expected: BTreeSet<_> = [tp("a", 0), tp("a", 1), tp("b", 0)].into();
    assert_eq!(m.partitions, expected);
    assert_eq!((m.state, m.last_update_ms), (TxnState::Ongoing, 20));
}

#[test]
fn commit_and_abort_run_through_prepare_and_complete() {
    for (result, prepared, completed) in [
        (
            TxnResult::Commit,
            TxnState::PrepareCommit,
            TxnState::CompleteCommit,
        ),
        (
            TxnResult::Abort,
            TxnState::PrepareAbort,
            TxnState::CompleteAbort,
        ),
    ] {
        let mut m = ongoing();
        let t = m.prepare_end(result, 30);
        assert_eq!((t.state, t.producer_epoch), (prepared, 0), "same epoch");
        assert_eq!(t.partitions.len(), 1);
        m.complete_transition(t);
        assert_eq!(m.state, prepared);
        let t = m.prepare_complete(40);
        assert!(t.partitions.is_empty());
        assert_eq!((t.start_ms, t.last_update_ms), (10, 40));
        m.complete_transition(t);
        assert_eq!((m.state, m.partitions.len()), (completed, 0));
        // A new transaction may start from a completed one.
        let t = m.prepare_add_partitions(&[tp("c", 0)], 50);
        assert_eq!(t.start_ms, 50);
        m.complete_transition(t);
    }
}

#[test]
fn fencing_bumps_the_epoch_at_once_and_only_once() {
    let mut m = ongoing();
    let t = m.prepare_fence_and_abort(30);
    assert_eq!(
        m.producer_epoch, 1,
        "the old producer is fenced before the write"
    );
    assert_eq!(
        (t.state, t.producer_epoch, t.last_producer_epoch),
        (TxnState::PrepareAbort, 1, -1)
    );
    // The write fails: the next fence does not bump again.
    m.abort_transition();
    m.has_failed_epoch_fence = true;
    assert_eq!((m.state, m.producer_epoch), (TxnState::Ongoing, 1));
    let t = m.prepare_fence_and_abort(31);
    assert_eq!(t.producer_epoch, 1);
    m.complete_transition(t);
    let t = m.prepare_complete(32);
    assert!(
        !m.has_failed_epoch_fence,
        "cleared once the abort is durable"
    );
    m.complete_transition(t);
    // The epoch never passes i16::MAX.
    let mut m = ongoing();
    m.producer_epoch = i16::MAX;
    let t = m.prepare_fence_and_abort(30);
    assert_eq!(t.producer_epoch, i16::MAX);
}

#[test]
fn expiry_keeps_the_update_time() {
    let mut m = initialised();
    let t = m.prepare_dead();
    assert_eq!((t.state, t.last_update_ms), (TxnState::Dead, 2));
    assert_eq!(m.pending, Some(TxnState::Dead));
    m.abort_transition();
    assert_eq!((m.state, m.pending), (TxnState::Empty, None));
}

#[test]
#[should_panic(expected = "while Some(Ongoing) is pending")]
fn a_pending_transition_blocks_another() {
    let mut m = initialised();
    let _ = m.prepare_add_partitions(&[tp("a", 0)], 10);
    let _ = m.prepare_add_partitions(&[tp("a", 1)], 11);
}

#[test]
#[should_panic(expected = "illegal transition Empty -> PrepareCommit")]
fn illegal_transitions_are_programmer_errors() {
    let mut m = initialised();
    let _ = m.prepare_end(TxnResult::Commit, 10);
}

#[test]
#[should_panic(expected = "not pending")]
fn only_the_pending_transition_completes() {
    let mut m = ongoing();
    let mut other = ongoing();
    let t = other.prepare_end(TxnResult::Commit, 30);
    m.complete_transition(t);
}

#[test]
fn stored_values_become_metadata_or_are_refused() {
    let mut v = TxnLogValue::new(5, 3, 1000, TxnState::PrepareCommit);
    v.partitions.insert(tp("a", 0));
    v.previous_producer_id = 4;
    v.start_ms = 7;
    v.last_update_ms = 8;
    let m = TxnMetadata::from_value("t", v.clone()).expect("valid");
    assert_eq!(
        (m.producer_id, m.producer_epoch, m.last_producer_epoch),
        (5, 3, -1)
    );
    assert_eq!(
        (m.previous_producer_id, m.start_ms, m.last_update_ms),
        (4, 7, 8)
    );
    assert_eq!(
        (m.state, m.pending, m.partitions.len()),
        (TxnState::PrepareCommit, None, 1)
    );
    for bad in [
        TxnLogValue {
            producer_id: -1,
            ..v.clone()
        },
        TxnLogValue {
            producer_epoch: -1,
            ..v.clone()
        },
        TxnLogValue {
            state: TxnState::Dead,
            ..v.clone()
        },
        TxnLogValue {
            state: TxnState::PrepareEpochFence,
            ..v.clone()
        },
    ] {
        assert!(TxnMetadata::from_value("t", bad).is_err());
    }
}

#[test]
fn transits_store_what_they_apply() {
    let mut m = ongoing();
    let t = m.prepare_end(TxnResult::Commit, 30);
    let v = t.to_value();
    assert_eq!(
        (v.producer_id, v.previous_producer_id, v.producer_epoch),
        (100, 100, 0)
    );
    assert_eq!(
        (v.state, v.start_ms, v.last_update_ms),
        (TxnState::PrepareCommit, 10, 30)
    );
    assert_eq!(v.partitions, m.partitions);
    assert_eq!((v.next_producer_id, v.next_producer_epoch), (-1, -1));
}
