//! The coordinator over time: marker failures, completion retries,
//! transaction timeouts, transactional id expiry, loading and unloading,
//! DescribeTransactions and ListTransactions, and a seeded simulation.

use super::*;
use crate::effects::MarkerOutcome;
use crate::harness::*;
use crate::state::TxnState;
use crate::types::*;

#[test]
fn retriable_marker_failures_are_resent_after_the_backoff() {
    let mut h = Harness::new(config());
    let (pid, epoch) = h.ongoing("t", &[tp("a", 0), tp("b", 0), tp("c", 0), tp("d", 0)]);
    h.auto_markers = false;
    assert_eq!(h.end("t", pid, epoch, true).error, ErrorCode::None);
    h.report_markers(|p| match p.topic.as_str() {
        "a" => MarkerOutcome::Written,
        "b" => MarkerOutcome::Failed(ErrorCode::NotLeaderOrFollower),
        "c" => MarkerOutcome::PartitionDeleted,
        _ => MarkerOutcome::Failed(ErrorCode::UnsupportedForMessageFormat),
    });
    // Only b-0 is sent again, after the backoff.
    let (_, _, marker, not_before) = h.markers.front().cloned().expect("a retry");
    assert_eq!(marker.partitions, vec![tp("b", 0)]);
    assert_eq!(not_before, h.now + h.c.config().retry_backoff_ms);
    assert_eq!(h.meta("t").partitions.len(), 1);
    assert_eq!(h.state("t"), Some(TxnState::PrepareCommit));
    h.report_markers(|_| MarkerOutcome::Failed(ErrorCode::NetworkException));
    h.report_markers(|_| MarkerOutcome::Written);
    assert_eq!(h.state("t"), Some(TxnState::CompleteCommit));
    let written: Vec<&str> = h.written.iter().map(|(p, _)| p.topic.as_str()).collect();
    assert_eq!(written, vec!["a", "b"]);
    assert_eq!(h.c.markers_in_flight(), 0);
}

#[test]
fn a_fenced_marker_stops_the_completion() {
    let mut h = Harness::new(config());
    let (pid, epoch) = h.ongoing("t", &[tp("a", 0), tp("b", 0)]);
    h.auto_markers = false;
    assert_eq!(h.end("t", pid, epoch, true).error, ErrorCode::None);
    let (id, ..) = h.markers.pop_front().expect("markers");
    h.step(Event::MarkersWritten {
        id,
        results: vec![(
            tp("a", 0),
            MarkerOutcome::Failed(ErrorCode::TransactionCoordinatorFenced),
        )],
    });
    // Kafka's behaviour: left prepared and pending until the next load.
    let m = h.meta("t");
    assert_eq!(
        (m.state, m.pending),
        (TxnState::PrepareCommit, Some(TxnState::CompleteCommit))
    );
    assert_eq!(h.c.markers_in_flight(), 0);
    // The rest of that round is ignored; so are outcomes never asked for.
    h.step(Event::MarkersWritten {
        id,
        results: vec![(tp("b", 0), MarkerOutcome::Written)],
    });
    h.step(Event::MarkersWritten {
        id: MarkerId(999),
        results: vec![(tp("b", 0), MarkerOutcome::Written)],
    });
    assert_eq!(h.meta("t").partitions.len(), 2);
    let last = h.records_of("t").pop().flatten().expect("stored");
    assert_eq!(last.state, TxnState::PrepareCommit, "no Complete record");
    // The next coordinator (a reload) completes it.
    let mut next = h.reloaded(10);
    assert_eq!(next.state("t"), Some(TxnState::CompleteCommit));
    assert_eq!(next.written.len(), 2);
    assert_eq!(next.end("t", pid, epoch, true).error, ErrorCode::None);
}

#[test]
fn outcomes_for_partitions_not_sent_are_ignored() {
    let mut h = Harness::new(config());
    let (pid, epoch) = h.ongoing("t", &[tp("a", 0)]);
    h.auto_markers = false;
    assert_eq!(h.end("t", pid, epoch, true).error, ErrorCode::None);
    let (id, ..) = h.markers.pop_front().expect("markers");
    h.step(Event::MarkersWritten {
        id,
        results: vec![(tp("zz", 9), MarkerOutcome::Written)],
    });
    assert_eq!(h.state("t"), Some(TxnState::PrepareCommit));
    h.step(Event::MarkersWritten {
        id,
        results: vec![
            (tp("a", 0), MarkerOutcome::Written),
            (tp("a", 0), MarkerOutcome::Written),
        ],
    });
    assert_eq!(h.state("t"), Some(TxnState::CompleteCommit));
}

#[test]
fn a_complete_record_is_retried_while_the_log_is_unavailable() {
    let mut h = Harness::new(config());
    let (pid, epoch) = h.ongoing("t", &[tp("a", 0)]);
    h.auto_ack = false;
    let r = h.end_request("t", pid, epoch, true);
    h.complete_append(Ok(()));
    assert_eq!(h.end_reply(r).error, ErrorCode::None);
    // Markers written; the Complete record meets an unavailable log.
    h.complete_append(Err(ErrorCode::NotEnoughReplicas));
    assert_eq!(
        h.meta("t").pending,
        Some(TxnState::CompleteCommit),
        "still completing"
    );
    assert!(h.appends.is_empty());
    let backoff = h.c.config().retry_backoff_ms;
    h.advance(backoff - 1);
    assert!(h.appends.is_empty(), "not before the backoff");
    h.advance(1);
    assert_eq!(h.appends.len(), 1, "appended again");
    h.complete_append(Ok(()));
    assert_eq!(h.state("t"), Some(TxnState::CompleteCommit));
}

#[test]
fn a_timed_out_transaction_is_aborted_and_its_producer_fenced() {
    let mut h = Harness::new(config());
    let (pid, epoch) = h.ongoing("t", &[tp("a", 0)]);
    let (other_pid, other_epoch) = h.ongoing("u", &[tp("b", 0)]);
    let interval = h.c.config().abort_timed_out_interval_ms;
    // Checked every interval; both transactions started at 1 000, so at
    // 51 000 and 61 000 neither is past its 60 s (Kafka: start + timeout <
    // now).
    h.advance(i64::from(TIMEOUT_MS) - interval);
    assert_eq!(h.state("t"), Some(TxnState::Ongoing));
    // u commits in time; t does not.
    assert_eq!(
        h.end("u", other_pid, other_epoch, true).error,
        ErrorCode::None
    );
    h.advance(interval);
    assert_eq!(
        h.state("t"),
        Some(TxnState::Ongoing),
        "61 000 is not past 61 000"
    );
    h.advance(interval);
    let m = h.meta("t");
    assert_eq!(
        (m.state, m.producer_epoch),
        (TxnState::CompleteAbort, epoch + 1)
    );
    assert_eq!(
        h.written
            .last()
            .map(|(p, m)| (p.clone(), m.result, m.producer_epoch)),
        Some((tp("a", 0), TxnResult::Abort, epoch + 1))
    );
    assert_eq!(
        h.state("u"),
        Some(TxnState::CompleteCommit),
        "u was not touched"
    );
    // The producer learns it was fenced.
    assert_eq!(
        h.end("t", pid, epoch, true).error,
        ErrorCode::ProducerFenced
    );
    assert_eq!(
        h.add("t", pid, epoch, &[tp("a", 0)]),
        ErrorCode::ProducerFenced
    );
    assert_eq!(
        h.init_expected("t", pid, epoch).error,
        ErrorCode::ProducerFenced
    );
    assert_eq!(h.init("t"), ProducerIdReply::ok(pid, epoch + 2));
    assert_eq!(h.unanswered(), 0);
}

#[test]
fn a_failed_timeout_abort_does_not_bump_twice() {
    let mut h = Harness::new(config());
    let (pid, epoch) = h.ongoing("t", &[tp("a", 0)]);
    h.auto_ack = false;
    let interval = h.c.config().abort_timed_out_interval_ms;
    h.advance(i64::from(TIMEOUT_MS) + interval);
    assert_eq!(h.appends.len(), 1, "PrepareAbort asked for");
    assert_eq!(
        h.meta("t").producer_epoch,
        epoch + 1,
        "fenced before the write"
    );
    h.complete_append(Err(ErrorCode::RequestTimedOut));
    let m = h.meta("t");
    assert_eq!(
        (m.state, m.pending, m.has_failed_epoch_fence),
        (TxnState::Ongoing, None, true)
    );
    assert_eq!(
        h.end("t", pid, epoch, false).error,
        ErrorCode::ProducerFenced
    );
    // The next check tries again with the same bumped epoch.
    h.auto_ack = true;
    h.advance(interval);
    let m = h.meta("t");
    assert_eq!(
        (m.state, m.producer_epoch),
        (TxnState::CompleteAbort, epoch + 1)
    );
    assert!(!m.has_failed_epoch_fence);
}

#[test]
fn a_transaction_completing_is_not_timed_out() {
    let mut h = Harness::new(config());
    let (pid, epoch) = h.ongoing("t", &[tp("a", 0)]);
    h.auto_markers = false;
    assert_eq!(h.end("t", pid, epoch, true).error, ErrorCode::None);
    h.advance(i64::from(TIMEOUT_MS) * 2);
    let m = h.meta("t");
    assert_eq!(
        (m.state, m.producer_epoch),
        (TxnState::PrepareCommit, epoch)
    );
    h.report_markers(|_| MarkerOutcome::Written);
    assert_eq!(h.state("t"), Some(TxnState::CompleteCommit));
}

#[test]
fn idle_transactional_ids_expire() {
    let mut h = Harness::new(TxnConfig {
        id_expiration_ms: 100_000,
        remove_expired_interval_ms: 50_000,
        ..config()
    });
    h.init("idle");
    let (pid, epoch) = h.ongoing("open", &[tp("a", 0)]);
    h.init("busy");
    h.advance(50_000);
    assert!(h.c.metadata("idle").is_some(), "not yet");
    let busy = h.meta("busy").producer_id;
    h.init("busy"); // busy is updated at 51 000
    h.advance(50_000);
    // idle: a tombstone. open: its transaction timed out at this same
    // check, so it was aborted (an update) rather than expired.
    assert!(h.c.metadata("idle").is_none());
    assert_eq!(h.describe("idle").error, ErrorCode::TransactionalIdNotFound);
    assert_eq!(h.records_of("idle").last(), Some(&None), "a tombstone");
    assert!(h.c.metadata("busy").is_some());
    assert_eq!(h.meta("open").state, TxnState::CompleteAbort);
    assert!(h.end("open", pid, epoch, true).error == ErrorCode::ProducerFenced);
    h.advance(50_000);
    assert!(h.c.metadata("busy").is_none());
    // An expired id starts over with a new producer id.
    assert_ne!(h.init("busy").producer_id, busy);
    // A failed tombstone leaves the id.
    h.auto_ack = false;
    h.advance(150_000);
    assert!(!h.appends.is_empty());
    assert!(h
        .c
        .metadata("busy")
        .is_some_and(|m| m.pending == Some(TxnState::Dead)));
    assert_eq!(h.init("busy").error, ErrorCode::ConcurrentTransactions);
    while !h.appends.is_empty() {
        h.complete_append(Err(ErrorCode::NotEnoughReplicas));
    }
    assert!(h.c.metadata("busy").is_some_and(|m| m.pending.is_none()));
}

#[test]
fn replay_rebuilds_ids_and_completes_prepared_transactions() {
    let mut h = Harness::new(config());
    let (open_pid, open_epoch) = h.ongoing("open", &[tp("a", 0)]);
    let (pid, epoch) = h.ongoing("prepared", &[tp("a", 1), tp("b", 0)]);
    h.auto_markers = false;
    assert_eq!(h.end("prepared", pid, epoch, true).error, ErrorCode::None);
    h.init("empty");
    let (gone_pid, gone_epoch) = h.ongoing("gone", &[tp("a", 2)]);
    assert_eq!(
        h.end("gone", gone_pid, gone_epoch, false).error,
        ErrorCode::None
    );
    // Another coordinator takes over: the prepared transaction's markers
    // are sent again with its coordinator epoch, and it completes.
    let mut next = h.reloaded(1_000);
    assert_eq!(next.state("open"), Some(TxnState::Ongoing));
    assert_eq!(next.meta("open").partitions.len(), 1);
    assert_eq!(next.state("prepared"), Some(TxnState::CompleteCommit));
    assert_eq!(next.state("gone"), Some(TxnState::CompleteAbort));
    assert_eq!(next.state("empty"), Some(TxnState::Empty));
    let commits: Vec<_> = next
        .written
        .iter()
        .filter(|(_, m)| m.producer_id == pid)
        .map(|(p, m)| (p.clone(), m.result, m.coordinator_epoch))
        .collect();
    assert_eq!(
        commits,
        vec![
            (tp("a", 1), TxnResult::Commit, COORDINATOR_EPOCH),
            (tp("b", 0), TxnResult::Commit, COORDINATOR_EPOCH),
        ]
    );
    // The open transaction continues with its producer.
    assert_eq!(
        next.end("open", open_pid, open_epoch, true).error,
        ErrorCode::None
    );
    // A loaded id remembers no last epoch: a KIP-360 retry spanning the
    // move is fenced (as in Kafka).
    assert_eq!(next.meta("empty").last_producer_epoch, -1);
}

#[test]
fn unload_answers_waiting_requests_and_ignores_late_outcomes() {
    let mut h = Harness::new(config());
    let (pid, epoch) = h.ongoing("t", &[tp("a", 0)]);
    h.auto_ack = false;
    let end = h.end_request("t", pid, epoch, true);
    let init = h.init_request("u", None);
    let partition = h.c.partition_of("t");
    h.step(Event::Unload { partition });
    assert_eq!(h.end_reply(end).error, ErrorCode::NotCoordinator);
    let u_partition = h.c.partition_of("u");
    if u_partition != partition {
        h.step(Event::Unload {
            partition: u_partition,
        });
    }
    assert_eq!(h.init_reply(init).error, ErrorCode::NotCoordinator);
    assert_eq!(h.c.appends_in_flight(), 0);
    // The appends complete later: ignored.
    h.complete_all();
    assert_eq!(h.unanswered(), 0);
    assert_eq!(h.init("t").error, ErrorCode::NotCoordinator);
    // Loaded again from the log (where PrepareCommit did land).
    let entries = h.entries(partition);
    h.auto_ack = true;
    h.load(partition, entries);
    assert_eq!(h.state("t"), Some(TxnState::CompleteCommit));
}

#[test]
fn records_of_other_partitions_are_skipped_on_load() {
    let mut h = Harness::new(config());
    h.init("t");
    let p = h.c.partition_of("t");
    let entries = h.entries(p);
    let mut fresh = Harness::bare(config());
    let other = TxnPartition((p.0 + 1) % 4);
    fresh.load(other, entries);
    assert!(fresh.c.metadata("t").is_none());
    fresh.step(Event::Replay {
        partition: other,
        entries: Vec::new(),
    }); // not loading: ignored
}

#[test]
fn describe_and_list() {
    let mut h = Harness::new(config());
    h.now = 10_000;
    let (pid, epoch) = h.ongoing("b-open", &[tp("x", 1), tp("x", 0), tp("y", 3)]);
    h.now = 20_000;
    h.init("a-idle");
    let d = h.describe("b-open");
    assert_eq!(
        d,
        TxnDescription {
            error: ErrorCode::None,
            transactional_id: "b-open".into(),
            state: "Ongoing".into(),
            timeout_ms: TIMEOUT_MS,
            start_ms: 10_000,
            producer_id: pid,
            producer_epoch: epoch,
            topics: vec![("x".into(), vec![0, 1]), ("y".into(), vec![3])],
        }
    );
    assert_eq!(
        h.describe("nobody").error,
        ErrorCode::TransactionalIdNotFound
    );
    assert_eq!(h.describe("").error, ErrorCode::InvalidRequest);
    let all = h.list(ListRequest {
        duration_filter_ms: -1,
        ..ListRequest::default()
    });
    assert_eq!(all.error, ErrorCode::None);
    let names: Vec<(&str, &str)> = all
        .transactions
        .iter()
        .map(|t| (t.transactional_id.as_str(), t.state))
        .collect();
    assert_eq!(names, vec![("a-idle", "Empty"), ("b-open", "Ongoing")]);
    let ongoing = h.list(ListRequest {
        states: vec!["Ongoing".into(), "Bogus".into()],
        duration_filter_ms: -1,
        ..ListRequest::default()
    });
    assert_eq!(ongoing.transactions.len(), 1);
    assert_eq!(ongoing.unknown_state_filters, vec!["Bogus".to_string()]);
    let by_pid = h.list(ListRequest {
        producer_ids: vec![pid],
        duration_filter_ms: -1,
        ..ListRequest::default()
    });
    assert_eq!(by_pid.transactions[0].transactional_id, "b-open");
    // Running longer than 10 s: b-open (started 10 s ago) is not.
    let long = h.list(ListRequest {
        states: vec!["Ongoing".into()],
        duration_filter_ms: 10_000,
        ..ListRequest::default()
    });
    assert!(long.transactions.is_empty());
    let long = h.list(ListRequest {
        states: vec!["Ongoing".into()],
        duration_filter_ms: 9_999,
        ..ListRequest::default()
    });
    assert_eq!(long.transactions.len(), 1);
    // A partition loading: the whole list waits.
    h.step(Event::LoadStarted {
        partition: TxnPartition(0),
        coordinator_epoch: 9,
    });
    let loading = h.list(ListRequest::default());
    assert_eq!(loading.error, ErrorCode::CoordinatorLoadInProgress);
}

/// A seeded run of many producers against failing appends and markers:
/// every request is answered exactly once, nothing is left in flight once
/// the faults stop, and a reload agrees with memory.
#[test]
fn simulation_answers_everything_and_reloads_the_same() {
    for seed in 1..=20u64 {
        simulate(seed);
    }
}

fn simulate(seed: u64) {
    let mut rng = seed;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let mut h = Harness::new(config());
    h.auto_ack = false;
    h.auto_markers = false;
    let ids = ["p0", "p1", "p2", "p3", "p4"];
    let mut producers: Vec<Option<(i64, i16)>> = vec![None; ids.len()];
    let mut pending_inits: Vec<(usize, RequestId)> = Vec::new();
    for _ in 0..400 {
        let i = next(ids.len() as u64) as usize;
        let id = ids[i];
        match next(10) {
            0 | 1 => pending_inits.push((i, h.init_request(id, None))),
            2 | 3 => {
                if let Some((pid, epoch)) = producers[i] {
                    h.add_request(id, pid, epoch, &[tp("t", next(3) as i32)]);
                }
            }
            4 => {
                if let Some((pid, epoch)) = producers[i] {
                    h.end_request(id, pid, epoch, next(2) == 0);
                }
            }
            5 | 6 if !h.appends.is_empty() => {
                let result = if next(4) == 0 {
                    Err(ErrorCode::NotEnoughReplicas)
                } else {
                    Ok(())
                };
                h.complete_append(result);
            }
            7 if !h.markers.is_empty() => {
                let fail = next(3) == 0;
                h.report_markers(|_| {
                    if fail {
                        MarkerOutcome::Failed(ErrorCode::NotLeaderOrFollower)
                    } else {
                        MarkerOutcome::Written
                    }
                });
            }
            8 => h.advance(next(20_000) as i64),
            _ => {}
        }
        pending_inits.retain(|(i, r)| match h.replies.get(r) {
            Some(Reply::InitProducerId(p)) if p.error == ErrorCode::None => {
                producers[*i] = Some((p.producer_id, p.producer_epoch));
                false
            }
            Some(_) => false,
            None => true,
        });
    }
    // Faults stop: everything settles.
    h.auto_ack = true;
    h.auto_markers = true;
    h.complete_all();
    while !h.markers.is_empty() {
        h.report_markers(|_| MarkerOutcome::Written);
    }
    h.advance(1_000_000);
    assert_eq!(h.unanswered(), 0, "seed {seed}");
    assert_eq!(
        (h.c.appends_in_flight(), h.c.markers_in_flight()),
        (0, 0),
        "seed {seed}"
    );
    let reloaded = h.reloaded(0);
    for id in ids {
        // An id whose first InitProducerId record failed exists only in
        // memory (as in Kafka).
        let a = h.c.metadata(id).filter(|m| m.producer_epoch >= 0);
        let b = reloaded.c.metadata(id);
        assert_eq!(a.is_some(), b.is_some(), "seed {seed} {id}");
        if let (Some(a), Some(b)) = (a, b) {
            assert_eq!(a.pending, None, "seed {seed} {id}");
            assert_eq!(
                (a.producer_id, a.producer_epoch, a.state, &a.partitions),
                (b.producer_id, b.producer_epoch, b.state, &b.partitions),
                "seed {seed} {id}"
            );
        }
    }
}
