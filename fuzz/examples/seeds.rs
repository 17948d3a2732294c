//! Writes the seed corpus of every fuzz target: well-formed inputs (a
//! request of every advertised API and version, record batches in every
//! compression, `__consumer_offsets` records, segments with their indexes)
//! for the fuzzer to mutate. Run by scripts/fuzz.sh:
//! `cargo run --manifest-path fuzz/Cargo.toml --example seeds -- fuzz/corpus`.

use std::path::{Path, PathBuf};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use ringbroker_groups::records::{
    batch as offsets_batch, group_key, group_value, offset_key, offset_value, CommittedOffset,
    StoredGroup, StoredMember,
};
use ringbroker_protocol::batch::{build_batch, stamp_base_offset, ProducerFields};
use ringbroker_server::dispatch::SUPPORTED_APIS;
use ringbroker_storage::index::{OffsetIndex, TimeIndex};

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).expect("corpus directory");
    std::fs::write(dir.join(name), bytes).expect("seed file");
}

fn with_steering(steering: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![steering];
    out.extend_from_slice(bytes);
    out
}

/// A v2 batch from the reference encoder, with headers and keys.
fn encoded_batch(compression: Compression, count: i64, producer: bool) -> Vec<u8> {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: if producer { 9 } else { -1 },
            producer_epoch: if producer { 0 } else { -1 },
            timestamp_type: TimestampType::Creation,
            offset: i,
            sequence: if producer { i as i32 } else { -1 },
            timestamp: 1_700_000_000_000 + i,
            key: (i % 2 == 0).then(|| Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(vec![b'v'; 20 + i as usize])),
            headers: [(
                StrBytes::from_static_str("h"),
                Some(Bytes::from_static(b"header")),
            )]
            .into_iter()
            .collect(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encode");
    buf.to_vec()
}

const COMPRESSIONS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

fn request_frame(key: ApiKey, version: i16, body: &[u8]) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("seed")));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, key.request_header_version(version))
        .expect("header");
    buf.put_slice(body);
    buf.to_vec()
}

fn encode<T: Encodable>(message: &T, version: i16) -> Vec<u8> {
    let mut buf = BytesMut::new();
    message.encode(&mut buf, version).expect("encode");
    buf.to_vec()
}

fn default_body(key: ApiKey, version: i16) -> Vec<u8> {
    macro_rules! default {
        ($t:ty) => {
            encode(&<$t>::default(), version)
        };
    }
    match key {
        ApiKey::Produce => {
            let data = PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Bytes::from(encoded_batch(Compression::None, 2, true))));
            let topic = TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partition_data(vec![data]);
            encode(
                &ProduceRequest::default()
                    .with_acks(-1)
                    .with_timeout_ms(1000)
                    .with_topic_data(vec![topic]),
                version,
            )
        }
        ApiKey::Fetch => default!(FetchRequest),
        ApiKey::ListOffsets => default!(ListOffsetsRequest),
        ApiKey::Metadata => default!(MetadataRequest),
        ApiKey::ApiVersions => default!(ApiVersionsRequest),
        ApiKey::CreateTopics => default!(CreateTopicsRequest),
        ApiKey::DeleteTopics => default!(DeleteTopicsRequest),
        ApiKey::InitProducerId => default!(InitProducerIdRequest),
        ApiKey::DescribeConfigs => default!(DescribeConfigsRequest),
        ApiKey::CreatePartitions => default!(CreatePartitionsRequest),
        ApiKey::IncrementalAlterConfigs => default!(IncrementalAlterConfigsRequest),
        ApiKey::DescribeCluster => default!(DescribeClusterRequest),
        ApiKey::FindCoordinator => default!(FindCoordinatorRequest),
        ApiKey::JoinGroup => default!(JoinGroupRequest),
        ApiKey::SyncGroup => default!(SyncGroupRequest),
        ApiKey::Heartbeat => default!(HeartbeatRequest),
        ApiKey::LeaveGroup => default!(LeaveGroupRequest),
        ApiKey::OffsetCommit => default!(OffsetCommitRequest),
        ApiKey::OffsetFetch => default!(OffsetFetchRequest),
        ApiKey::ListGroups => default!(ListGroupsRequest),
        ApiKey::DescribeGroups => default!(DescribeGroupsRequest),
        ApiKey::DeleteGroups => default!(DeleteGroupsRequest),
        ApiKey::OffsetDelete => default!(OffsetDeleteRequest),
        ApiKey::AlterConfigs => default!(AlterConfigsRequest),
        ApiKey::DescribeLogDirs => default!(DescribeLogDirsRequest),
        ApiKey::DescribeProducers => default!(DescribeProducersRequest),
        ApiKey::DeleteRecords => default!(DeleteRecordsRequest),
        other => panic!("{other:?} has no seed"),
    }
}

/// `(key, value)` records as one batch in `compression`.
fn records_batch(records: &[(Bytes, Option<Bytes>)], compression: Compression) -> Vec<u8> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: 1_700_000_000_000,
            key: Some(key.clone()),
            value: value.clone(),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encode");
    buf.to_vec()
}

/// `n` uncompressed idempotent batches stamped from `base`, with the
/// offset and time indexes the append path builds (an entry per batch).
fn segment(base: i64, n: i32) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut bytes = Vec::new();
    let mut index = OffsetIndex::new(base);
    let mut time_index = TimeIndex::new(base);
    for i in 0..n {
        let producer = ProducerFields {
            producer_id: 3,
            producer_epoch: 0,
            base_sequence: 2 * i,
        };
        let mut batch = build_batch(
            1_700_000_000_000 + i64::from(i),
            Some(producer),
            &[(None, b"a"), (Some(b"k"), b"bb")],
        );
        let offset = base + 2 * i64::from(i);
        stamp_base_offset(&mut batch, offset);
        index.append(offset, bytes.len() as u32);
        time_index.append(1_700_000_000_001 + i64::from(i), offset + 1);
        bytes.extend_from_slice(&batch);
    }
    (bytes, index.encode(), time_index.encode())
}

fn main() {
    let root = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "corpus".into()));

    let dir = root.join("request");
    for (key, min, max) in SUPPORTED_APIS {
        for version in *min..=*max {
            let frame = request_frame(*key, version, &default_body(*key, version));
            write(&dir, &format!("{key:?}-v{version}"), &frame);
        }
    }

    let dir = root.join("record_batch");
    for (i, compression) in COMPRESSIONS.into_iter().enumerate() {
        let batch = encoded_batch(compression, 3, i % 2 == 0);
        write(&dir, &format!("encoded-{i}"), &with_steering(1, &batch));
    }
    let plain = build_batch(5, None, &[(Some(b"k"), b"v"), (None, b"")]);
    let mut two = plain.clone();
    two.extend_from_slice(&encoded_batch(Compression::None, 2, true));
    write(&dir, "plain", &with_steering(0, &plain));
    write(&dir, "two", &with_steering(1, &two));

    let dir = root.join("produce_append");
    for (i, compression) in COMPRESSIONS.into_iter().enumerate() {
        let first = encoded_batch(compression, 2, true);
        let split = (first.len() as u16).to_be_bytes();
        let mut input = vec![(i as u8) << 2 | 1, split[0], split[1]];
        input.extend_from_slice(&first);
        input.extend_from_slice(&encoded_batch(Compression::None, 3, false));
        write(&dir, &format!("two-requests-{i}"), &input);
    }

    let dir = root.join("consumer_offsets");
    let offset = CommittedOffset {
        offset: 42,
        leader_epoch: 3,
        metadata: "meta".into(),
        commit_ms: 1_700_000_000_000,
    };
    let group = StoredGroup {
        protocol_type: "consumer".into(),
        generation: 4,
        protocol: Some("range".into()),
        leader: Some("m-1".into()),
        state_ms: 1_700_000_000_000,
        members: vec![StoredMember {
            member_id: "m-1".into(),
            instance_id: Some("i-1".into()),
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            rebalance_timeout_ms: 300_000,
            session_timeout_ms: 45_000,
            subscription: Bytes::from_static(b"\x00\x01\x00\x00\x00\x01\x00\x01t"),
            assignment: Bytes::from_static(b"\x00\x01\x00\x00\x00\x01\x00\x01t"),
        }],
    };
    let records = vec![
        (offset_key("g", "t", 0), Some(offset_value(&offset))),
        (group_key("g"), Some(group_value(&group))),
        (offset_key("g", "t", 0), None),
        (group_key("g"), None),
    ];
    write(
        &dir,
        "batch",
        &with_steering(1, &offsets_batch(&records, 1)),
    );
    for (i, compression) in COMPRESSIONS.into_iter().enumerate().skip(1) {
        let batch = records_batch(&records, compression);
        write(&dir, &format!("batch-{i}"), &with_steering(1, &batch));
    }
    for (i, (key, value)) in records.iter().enumerate() {
        let mut raw = vec![if value.is_some() { 0 } else { 2 }, key.len() as u8];
        raw.extend_from_slice(key);
        raw.extend_from_slice(value.as_deref().unwrap_or_default());
        write(&dir, &format!("record-{i}"), &raw);
    }

    let dir = root.join("segment_recovery");
    let (bytes, _, _) = segment(0, 6);
    write(&dir, "segment", &with_steering(0x31, &bytes));
    let (bytes, _, _) = segment(1000, 3);
    write(&dir, "segment-1000", &with_steering(0x07, &bytes));
    let (_, index, time_index) = segment(0, 6);
    write(&dir, "index", &with_steering(0, &index));
    write(&dir, "timeindex", &with_steering(0, &time_index));

    let dir = root.join("log_open");
    let (sealed, index, time_index) = segment(0, 5);
    let (active, _, _) = segment(10, 4);
    let mut input = vec![0x05];
    for len in [sealed.len(), index.len(), time_index.len()] {
        input.extend_from_slice(&(len as u16).to_be_bytes());
    }
    for part in [&sealed, &index, &time_index, &active] {
        input.extend_from_slice(part);
    }
    write(&dir, "two-segments", &input);
    let mut only_active = vec![0x11, 0, 0, 0, 0, 0, 0];
    only_active.extend_from_slice(&segment(0, 4).0);
    write(&dir, "active-only", &only_active);
    for (i, compression) in COMPRESSIONS.into_iter().enumerate().skip(1) {
        let mut input = vec![0x11, 0, 0, 0, 0, 0, 0];
        input.extend_from_slice(&encoded_batch(compression, 4, false));
        write(&dir, &format!("active-compressed-{i}"), &input);
    }
}
