//! Tests of the `__transaction_state` formats: hand-checked bytes, round
//! trips, and Java's hash.

use super::*;
use proptest::prelude::*;

fn ongoing() -> TxnLogValue {
    let mut v = TxnLogValue::new(1000, 2, 60_000, TxnState::Ongoing);
    v.partitions.insert(TopicPartition::new("t", 1));
    v.partitions.insert(TopicPartition::new("t", 0));
    v.last_update_ms = 5;
    v.start_ms = 3;
    v
}

#[test]
fn key_bytes_are_kafkas() {
    // int16 version 0, int16 length 5, "txn-1".
    let expected = [0x00, 0x00, 0x00, 0x05, b't', b'x', b'n', b'-', b'1'];
    assert_eq!(&key("txn-1")[..], &expected);
    assert_eq!(decode_key(&expected), Ok("txn-1".to_string()));
    assert_eq!(
        decode_key(&[0x00, 0x01, 0x00, 0x00]),
        Err(RecordError::UnknownKeyVersion(1))
    );
    assert!(matches!(
        decode_key(&[0x00, 0x00, 0x00, 0x09, b'a']),
        Err(RecordError::Malformed(_))
    ));
}

#[test]
fn value_v0_bytes_are_kafkas() {
    #[rustfmt::skip]
    let expected: &[u8] = &[
        0x00, 0x00,                                     // version 0
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xe8, // producer id 1000
        0x00, 0x02,                                     // epoch 2
        0x00, 0x00, 0xea, 0x60,                         // timeout 60000
        0x01,                                           // Ongoing
        0x00, 0x00, 0x00, 0x01,                         // one topic
        0x00, 0x01, b't',                               //   "t"
        0x00, 0x00, 0x00, 0x02,                         //   two partitions
        0x00, 0x00, 0x00, 0x00,                         //     0
        0x00, 0x00, 0x00, 0x01,                         //     1
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, // last update 5
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, // start 3
    ];
    let mut v = ongoing();
    assert_eq!(&value(&v, 0)[..], expected);
    assert_eq!(decode_value(expected), Ok(v.clone()));
    // v0 has no tagged fields: they are lost, and read back as defaults.
    v.previous_producer_id = 999;
    assert_eq!(&value(&v, 0)[..], expected);
}

#[test]
fn value_v1_bytes_are_kafkas() {
    #[rustfmt::skip]
    let expected: &[u8] = &[
        0x00, 0x01,                                     // version 1
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xe8, // producer id 1000
        0x00, 0x02,                                     // epoch 2
        0x00, 0x00, 0xea, 0x60,                         // timeout 60000
        0x01,                                           // Ongoing
        0x02,                                           // compact array: one topic
        0x02, b't',                                     //   compact string "t"
        0x03,                                           //   compact array: two ids
        0x00, 0x00, 0x00, 0x00,                         //     0
        0x00, 0x00, 0x00, 0x01,                         //     1
        0x00,                                           //   no tagged fields
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, // last update 5
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, // start 3
        0x01,                                           // one tagged field:
        0x00, 0x08,                                     //   tag 0, 8 bytes
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xe7, //   previous producer id 999
    ];
    let mut v = ongoing();
    v.previous_producer_id = 999;
    assert_eq!(&value(&v, 1)[..], expected);
    assert_eq!(decode_value(expected), Ok(v));
}

#[test]
fn empty_transactions_write_null_partitions() {
    let mut v = TxnLogValue::new(7, 0, 1000, TxnState::Empty);
    v.last_update_ms = 1;
    let v0 = value(&v, 0);
    assert_eq!(&v0[17..21], &[0xff, 0xff, 0xff, 0xff], "null array");
    let v1 = value(&v, 1);
    assert_eq!(v1[17], 0x00, "compact null array");
    assert_eq!(*v1.last().expect("bytes"), 0x00, "no tagged fields");
    assert_eq!(decode_value(&v0), Ok(v.clone()));
    assert_eq!(decode_value(&v1), Ok(v));
}

#[test]
fn every_tag_round_trips_and_unknown_tags_are_skipped() {
    let mut v = ongoing();
    v.previous_producer_id = 1;
    v.next_producer_id = 2;
    v.client_transaction_version = 2;
    v.next_producer_epoch = 4;
    let bytes = value(&v, 1);
    assert_eq!(decode_value(&bytes), Ok(v.clone()));
    // The same value with a tag 9 from a later Kafka inserted.
    let mut with_unknown = bytes[..bytes.len()].to_vec();
    let tags_at = value(&ongoing(), 1).len() - 1; // where the tag count is
    with_unknown[tags_at] = 5;
    with_unknown.extend_from_slice(&[0x09, 0x02, 0xab, 0xcd]);
    assert_eq!(decode_value(&with_unknown), Ok(v));
    // A known tag with the wrong size is refused.
    let mut bad = value(&ongoing(), 1).to_vec();
    let last = bad.len() - 1;
    bad[last] = 1;
    bad.extend_from_slice(&[0x00, 0x02, 0x00, 0x01]);
    assert_eq!(
        decode_value(&bad),
        Err(RecordError::Malformed("tagged field size"))
    );
}

#[test]
fn bad_values_are_errors_not_panics() {
    let good = value(&ongoing(), 1);
    for cut in 0..good.len() {
        assert!(decode_value(&good[..cut]).is_err(), "cut at {cut}");
    }
    let good0 = value(&ongoing(), 0);
    for cut in 0..good0.len() {
        assert!(decode_value(&good0[..cut]).is_err(), "v0 cut at {cut}");
    }
    assert_eq!(
        decode_value(&[0x00, 0x02]),
        Err(RecordError::UnknownValueVersion(2))
    );
    let mut bad_status = good.to_vec();
    bad_status[16] = 9;
    assert_eq!(
        decode_value(&bad_status),
        Err(RecordError::Malformed("status"))
    );
    // A varint longer than five bytes.
    let mut long_varint = good[..17].to_vec();
    long_varint.extend_from_slice(&[0xff; 6]);
    assert!(decode_value(&long_varint).is_err());
    // A tombstone decodes to no value; a bad key fails the record.
    assert_eq!(
        decode(&key("x"), None),
        Ok(Entry {
            transactional_id: "x".into(),
            value: None
        })
    );
    assert!(decode(&[0x00], None).is_err());
    // A compact string longer than an int16 length allows (v1 could say
    // so): refused, so it never has to be written back.
    let mut long_topic = good[..17].to_vec();
    long_topic.push(0x02); // one topic
    long_topic.extend_from_slice(&[0x81, 0x80, 0x02]); // length 32768 + 1
    long_topic.extend_from_slice(&[b'x'; 32_768]);
    assert_eq!(
        decode_value(&long_topic),
        Err(RecordError::Malformed("topic"))
    );
}

#[test]
fn records_round_trip_through_a_batch() {
    let v = ongoing();
    let records = vec![
        (key("a"), Some(value(&v, 1))),
        (key("b"), Some(value(&v, 0))),
        (key("a"), None),
    ];
    let stored = batch(&records, 42);
    let header = ringbroker_protocol::batch::validate_batch(&stored).expect("one whole batch");
    assert_eq!((header.base_offset, header.last_offset()), (0, 2));
    assert_eq!(
        (
            header.producer_id,
            header.base_sequence,
            header.record_count
        ),
        (-1, -1, 3)
    );
    assert_eq!(
        ringbroker_protocol::batch::whole_batches_len(&stored),
        stored.len()
    );
    let decoded = ringbroker_protocol::records::decode_records(&stored).expect("a valid v2 batch");
    let entries: Vec<Entry> = decoded
        .iter()
        .map(|r| decode(r.key.as_deref().expect("keyed"), r.value.as_deref()).expect("decodes"))
        .collect();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0].value.as_ref(), Some(&v));
    assert_eq!(entries[1].value.as_ref(), Some(&v));
    assert_eq!(
        entries[2],
        Entry {
            transactional_id: "a".into(),
            value: None
        }
    );
    assert!(decoded.iter().all(|r| r.timestamp == 42 && !r.control));
}

#[test]
fn java_hash_and_partitions_match_kafka() {
    // Values of String.hashCode() in Java.
    assert_eq!(java_hash(""), 0);
    assert_eq!(java_hash("a"), 97);
    assert_eq!(java_hash("hello"), 99_162_322);
    assert_eq!(java_hash("Hello World"), -862_545_276);
    assert_eq!(java_hash("my-txn"), -1_061_187_895);
    assert_eq!(java_hash("polygenelubricants"), i32::MIN);
    assert_eq!(java_hash("é"), 233, "one UTF-16 unit");
    assert_eq!(java_hash("😀"), 1_772_899, "a surrogate pair");
    // Utils.abs(hashCode) % 50.
    assert_eq!(partition_for("hello", 50), 22);
    assert_eq!(partition_for("Hello World", 50), 26, "abs, not a mask");
    assert_eq!(partition_for("my-txn", 50), 45);
    assert_eq!(partition_for("polygenelubricants", 50), 0, "abs(MIN) is 0");
    assert_eq!(partition_for("txn-1", 50), 10);
    assert_eq!(kafka_abs(-5), 5);
    assert_eq!(kafka_abs(i32::MIN), 0);
    assert_eq!(partition_for("anything", 1), 0);
}

fn arb_value() -> impl Strategy<Value = TxnLogValue> {
    let fixed = (
        0i64..i64::MAX,
        -1i16..i16::MAX,
        1i32..i32::MAX,
        0usize..8,
        proptest::collection::btree_set(("[a-z._-]{1,12}", 0i32..1000), 0..20),
        (-1i64..i64::MAX, -1i64..i64::MAX),
    );
    let tags = (-1i64..1000, -1i64..1000, 0i16..3, -1i16..5);
    (fixed, tags).prop_map(
        |((pid, epoch, timeout, state, parts, (last, start)), (prev, next, ctv, next_epoch))| {
            let state = TxnState::ALL[state];
            let mut v = TxnLogValue::new(pid, epoch, timeout, state);
            if state != TxnState::Empty {
                v.partitions = parts
                    .into_iter()
                    .map(|(t, p)| TopicPartition {
                        topic: t,
                        partition: p,
                    })
                    .collect();
            }
            v.last_update_ms = last;
            v.start_ms = start;
            v.previous_producer_id = prev;
            v.next_producer_id = next;
            v.client_transaction_version = ctv;
            v.next_producer_epoch = next_epoch;
            v
        },
    )
}

proptest! {
    #[test]
    fn values_round_trip(v in arb_value()) {
        prop_assert_eq!(decode_value(&value(&v, 1)), Ok(v.clone()));
        let v0 = decode_value(&value(&v, 0)).expect("v0 decodes");
        let mut defaults = v.clone();
        defaults.previous_producer_id = NO_PRODUCER_ID;
        defaults.next_producer_id = NO_PRODUCER_ID;
        defaults.client_transaction_version = 0;
        defaults.next_producer_epoch = NO_PRODUCER_EPOCH;
        prop_assert_eq!(v0, defaults);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
        let _ = decode_value(&bytes);
        let _ = decode_key(&bytes);
    }
}
