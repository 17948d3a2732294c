//! Criterion benches for the broker's CPU paths: request framing and
//! decoding, record-batch validation (CRC32C), sparse index lookup, and a
//! cross-shard request/reply round trip over the mesh.
//!
//! Run: `cargo bench --bench cpu`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kafka_protocol::messages::{ProduceRequest, RequestHeader, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use ringbroker_protocol::batch::{batches, build_batch};
use ringbroker_protocol::frame::{frame_len, peek_header};
use ringbroker_storage::index::OffsetIndex;

fn produce_frame(batch: &[u8]) -> Bytes {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("bench")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Bytes::copy_from_slice(batch)))])]);
    let header = RequestHeader::default()
        .with_request_api_key(0)
        .with_request_api_version(7)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("bench")));
    let mut buf = BytesMut::new();
    header.encode(&mut buf, 1).expect("header");
    request.encode(&mut buf, 7).expect("request");
    buf.freeze()
}

fn sample_batch(records: usize, value: usize) -> Vec<u8> {
    let v = vec![b'x'; value];
    let recs: Vec<(Option<&[u8]>, &[u8])> =
        (0..records).map(|_| (Some(&b"key"[..]), &v[..])).collect();
    build_batch(1_700_000_000_000, None, &recs)
}

fn framing(c: &mut Criterion) {
    let batch = sample_batch(64, 1024);
    let body = produce_frame(&batch);
    let prefix = (body.len() as i32).to_be_bytes();
    let mut g = c.benchmark_group("framing");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function(
        "produce 64 KiB: size prefix, header peek, full decode",
        |b| {
            b.iter(|| {
                let len = frame_len(black_box(prefix), 100 << 20).expect("len");
                let raw = peek_header(&body[..len]).expect("peek");
                let mut rest = body.clone();
                let header = RequestHeader::decode(&mut rest, 1).expect("header");
                let request = ProduceRequest::decode(&mut rest, raw.api_version).expect("decode");
                black_box((header, request))
            })
        },
    );
    g.finish();
}

fn validation(c: &mut Criterion) {
    let mut g = c.benchmark_group("batch validation");
    for (records, value) in [(64usize, 1024usize), (640, 100), (1, 100)] {
        let batch = sample_batch(records, value);
        g.throughput(Throughput::Bytes(batch.len() as u64));
        g.bench_function(format!("{records} x {value} B"), |b| {
            b.iter(|| batches(black_box(&batch)).filter(|r| r.is_ok()).count())
        });
    }
    g.finish();
}

fn index_lookup(c: &mut Criterion) {
    let mut index = OffsetIndex::new(0);
    for i in 1..100_000i64 {
        index.append(i * 10, (i * 4096) as u32);
    }
    let mut x = 12345u64;
    c.bench_function("offset index lookup (100k entries)", |b| {
        b.iter(|| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            black_box(index.lookup((x % 1_000_000) as i64))
        })
    });
}

/// Two pinned shards for the round-trip benches.
fn two_shards(spin_before_park: Duration) -> ringbroker_shards::RuntimeOptions {
    ringbroker_shards::RuntimeOptions {
        shard_count: 2,
        name: "bench".into(),
        io_memory_bytes: 1 << 20,
        preempt_timer: Duration::from_millis(5),
        blocking_threads: 1,
        spin_before_park,
    }
}

fn cross_shard(c: &mut Criterion) {
    use ringbroker_shards::{envelope, run_shards, Envelope, Mesh, ShardId};
    type Msg = Envelope<u64, u64>;
    for spin_us in [0u64, 50] {
        c.bench_function(
            &format!("cross-shard request/reply round trip, spin before park {spin_us} us"),
            |b| {
                b.iter_custom(|iters| {
                    let endpoints = std::sync::Arc::new(std::sync::Mutex::new(
                        Mesh::<Msg>::new(2, 1024).into_endpoints(),
                    ));
                    let elapsed = std::sync::Arc::new(std::sync::Mutex::new(Duration::ZERO));
                    let options = two_shards(Duration::from_micros(spin_us));
                    let (e, out) = (endpoints.clone(), elapsed.clone());
                    run_shards(&options, move |shard: ShardId| {
                        let endpoint = e.lock().expect("lock")[shard.0].take().expect("endpoint");
                        let out = out.clone();
                        async move {
                            if shard.0 == 1 {
                                for _ in 0..iters {
                                    match endpoint.recv().await {
                                        Some(Envelope { request, reply }) => {
                                            reply.send(request + 1)
                                        }
                                        None => return,
                                    }
                                }
                            } else {
                                let start = Instant::now();
                                for i in 0..iters {
                                    let (message, reply) = envelope(i);
                                    endpoint.send_to(ShardId(1), message).await.expect("send");
                                    black_box(reply.recv().await);
                                }
                                *out.lock().expect("lock") = start.elapsed();
                            }
                        }
                    })
                    .expect("shards");
                    let d = *elapsed.lock().expect("lock");
                    d
                })
            },
        );
    }
}

/// The same round trip over glommio's shared channels (a request channel
/// and a reply channel between two pinned executors), for comparison with
/// the flume mesh the broker uses.
fn cross_shard_glommio(c: &mut Criterion) {
    use glommio::channels::shared_channel;
    use ringbroker_shards::{run_shards, ShardId};
    c.bench_function("cross-shard round trip over glommio shared channels", |b| {
        b.iter_custom(|iters| {
            let (req_tx, req_rx) = shared_channel::new_bounded::<u64>(1024);
            let (rep_tx, rep_rx) = shared_channel::new_bounded::<u64>(1024);
            let halves = std::sync::Arc::new(std::sync::Mutex::new((
                Some((req_tx, rep_rx)),
                Some((req_rx, rep_tx)),
            )));
            let elapsed = std::sync::Arc::new(std::sync::Mutex::new(Duration::ZERO));
            let options = two_shards(Duration::ZERO);
            let out = elapsed.clone();
            run_shards(&options, move |shard: ShardId| {
                let mine = {
                    let mut h = halves.lock().expect("lock");
                    if shard.0 == 0 {
                        (h.0.take(), None)
                    } else {
                        (None, h.1.take())
                    }
                };
                let out = out.clone();
                async move {
                    match mine {
                        (Some((tx, rx)), _) => {
                            let (tx, rx) = (tx.connect().await, rx.connect().await);
                            let start = Instant::now();
                            for i in 0..iters {
                                tx.send(i).await.expect("send");
                                black_box(rx.recv().await);
                            }
                            *out.lock().expect("lock") = start.elapsed();
                        }
                        (_, Some((rx, tx))) => {
                            let (rx, tx) = (rx.connect().await, tx.connect().await);
                            for _ in 0..iters {
                                match rx.recv().await {
                                    Some(v) => tx.send(v + 1).await.expect("reply"),
                                    None => return,
                                }
                            }
                        }
                        _ => {}
                    }
                }
            })
            .expect("shards");
            let d = *elapsed.lock().expect("lock");
            d
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = framing, validation, index_lookup, cross_shard, cross_shard_glommio
}
criterion_main!(benches);
