//! `ringbroker-bench`: a Kafka load generator and latency meter that speaks
//! the protocol itself (no JVM, no librdkafka in the measuring loop), for
//! ringbroker or any Kafka-compatible broker.
//!
//! ringbroker-bench produce|consume|e2e --bootstrap HOST:PORT --topic T
//!   [--partitions P] [--message-size B] [--acks 0|1|all] [--producers N]
//!   [--consumers N] [--batch-bytes B] [--linger-ms L] [--rate MSG/S]
//!   [--duration S] [--warmup S] [--hgrm FILE] [--json FILE] [--plot FILE.svg]
//!
//! Every message carries (producer, partition sequence, send time) and a
//! fill pattern derived from them; consumers verify both, so loss,
//! duplication or corruption is counted and makes the tool exit non-zero.
//! Latencies are measured from the intended send time (no coordinated
//! omission when paced with --rate).

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hdrhistogram::Histogram;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use ringbroker_protocol::batch::{build_batch, parse_header, BATCH_HEADER_LEN};
use ringbroker_tools::Conn;

const HEADER_BYTES: usize = 20; // producer u32, sequence u64, send time ns u64

#[derive(Clone, Debug)]
struct Options {
    mode: String,
    bootstrap: String,
    topic: String,
    partitions: i32,
    message_size: usize,
    acks: i16,
    producers: usize,
    consumers: usize,
    batch_bytes: usize,
    linger: Duration,
    rate: u64,
    duration: Duration,
    warmup: Duration,
    hgrm: Option<String>,
    json: Option<String>,
    plot: Option<String>,
}

fn usage() -> &'static str {
    "usage: ringbroker-bench produce|consume|e2e --bootstrap HOST:PORT --topic T [--partitions P] \
     [--message-size BYTES] [--acks 0|1|all] [--producers N] [--consumers N] [--batch-bytes B] \
     [--linger-ms L] [--rate MSGS_PER_S (0 = flat out)] [--duration S] [--warmup S] \
     [--hgrm FILE] [--json FILE] [--plot FILE.svg]"
}

fn parse_args() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().ok_or_else(|| usage().to_string())?;
    if !["produce", "consume", "e2e"].contains(&mode.as_str()) {
        return Err(if mode == "--help" || mode == "-h" {
            usage().to_string()
        } else {
            format!("unknown mode '{mode}'\n{}", usage())
        });
    }
    let mut o = Options {
        mode,
        bootstrap: "127.0.0.1:9092".into(),
        topic: "ringbroker-bench".into(),
        partitions: 1,
        message_size: 1024,
        acks: -1,
        producers: 1,
        consumers: 1,
        batch_bytes: 64 * 1024,
        linger: Duration::from_millis(1),
        rate: 0,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(2),
        hgrm: None,
        json: None,
        plot: None,
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: '{v}' is not a number"))
        };
        match flag.as_str() {
            "--bootstrap" => o.bootstrap = value()?,
            "--topic" => o.topic = value()?,
            "--partitions" => o.partitions = num(value()?)?.clamp(1, 100_000) as i32,
            "--message-size" => o.message_size = (num(value()?)? as usize).max(HEADER_BYTES),
            "--acks" => {
                o.acks = match value()?.as_str() {
                    "0" => 0,
                    "1" => 1,
                    "all" | "-1" => -1,
                    v => return Err(format!("--acks: '{v}' is not 0, 1 or all")),
                }
            }
            "--producers" => o.producers = num(value()?)? as usize,
            "--consumers" => o.consumers = num(value()?)? as usize,
            "--batch-bytes" => o.batch_bytes = (num(value()?)? as usize).max(1),
            "--linger-ms" => o.linger = Duration::from_millis(num(value()?)?),
            "--rate" => o.rate = num(value()?)?,
            "--duration" => o.duration = Duration::from_secs(num(value()?)?),
            "--warmup" => o.warmup = Duration::from_secs(num(value()?)?),
            "--hgrm" => o.hgrm = Some(value()?),
            "--json" => o.json = Some(value()?),
            "--plot" => o.plot = Some(value()?),
            other => return Err(format!("unknown flag '{other}'\n{}", usage())),
        }
    }
    Ok(o)
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// Partition → leader address, creating the topic when it does not exist.
fn leaders(o: &Options) -> Result<Vec<String>, String> {
    let mut conn = Conn::open(&o.bootstrap)?;
    for attempt in 0..2 {
        let req = MetadataRequest::default()
            .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
            )
            .with_name(Some(name(&o.topic)))]))
            .with_allow_auto_topic_creation(false);
        let md: MetadataResponse = conn.call(ApiKey::Metadata, 4, &req)?;
        let brokers: HashMap<i32, String> = md
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
            .collect();
        let topic = md.topics.first().ok_or("empty metadata response")?;
        if topic.error_code == 0 && !topic.partitions.is_empty() {
            let mut parts: Vec<_> = topic
                .partitions
                .iter()
                .map(|p| (p.partition_index, p.leader_id.0))
                .collect();
            parts.sort();
            return parts
                .into_iter()
                .map(|(p, leader)| {
                    brokers
                        .get(&leader)
                        .cloned()
                        .ok_or(format!("no leader for partition {p}"))
                })
                .collect();
        }
        if attempt == 0 {
            let create = CreateTopicsRequest::default()
                .with_topics(vec![create_topics_request::CreatableTopic::default()
                    .with_name(name(&o.topic))
                    .with_num_partitions(o.partitions)
                    .with_replication_factor(-1)])
                .with_timeout_ms(30_000);
            let created: CreateTopicsResponse = conn.call(ApiKey::CreateTopics, 4, &create)?;
            if let Some(t) = created.topics.first() {
                if t.error_code != 0 && t.error_code != 36 {
                    return Err(format!("creating {}: error {}", o.topic, t.error_code));
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Err(format!("topic {} has no partitions", o.topic))
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The deterministic payload of a message.
fn payload(size: usize, producer: u32, seq: u64, sent_ns: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(size);
    v.extend_from_slice(&producer.to_be_bytes());
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&sent_ns.to_be_bytes());
    let fill = (seq as u8) ^ (producer as u8);
    v.resize(size, fill);
    v
}

/// Checks a payload; returns (producer, seq, sent_ns) when intact.
fn verify(v: &[u8], size: usize) -> Option<(u32, u64, u64)> {
    if v.len() != size || v.len() < HEADER_BYTES {
        return None;
    }
    let producer = u32::from_be_bytes(v[0..4].try_into().ok()?);
    let seq = u64::from_be_bytes(v[4..12].try_into().ok()?);
    let sent = u64::from_be_bytes(v[12..20].try_into().ok()?);
    let fill = (seq as u8) ^ (producer as u8);
    v[HEADER_BYTES..]
        .iter()
        .all(|b| *b == fill)
        .then_some((producer, seq, sent))
}

#[derive(Default)]
struct Counters {
    produced: AtomicU64,
    produced_bytes: AtomicU64,
    consumed: AtomicU64,
    consumed_bytes: AtomicU64,
    errors: AtomicU64,
    corrupt: AtomicU64,
    out_of_order: AtomicU64,
}

struct Shared {
    counters: Counters,
    stop: AtomicBool,
    producers_done: AtomicBool,
    measuring: AtomicBool,
    ack: Mutex<Histogram<u64>>,
    e2e: Mutex<Histogram<u64>>,
    error_codes: Mutex<HashMap<i16, u64>>,
    /// (producer, partition) → highest acknowledged sequence + 1.
    acked: Mutex<HashMap<(u32, i32), u64>>,
    /// (producer, partition) → next expected sequence at consumers.
    seen: Mutex<HashMap<(u32, i32), u64>>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds")
}

fn record_error(shared: &Shared, code: i16) {
    shared.counters.errors.fetch_add(1, Ordering::Relaxed);
    *shared
        .error_codes
        .lock()
        .expect("lock")
        .entry(code)
        .or_default() += 1;
}

/// A connection to one partition leader, the channel to its response reader
/// (request correlation, per-partition sends), and that reader's thread.
type LeaderConn = (
    Conn,
    mpsc::SyncSender<(i32, Vec<(i32, u64, u64, usize)>)>,
    std::thread::JoinHandle<()>,
);

/// One producer: builds a batch per partition round-robin, keeps up to 5
/// requests in flight, measures ack latency per message.
fn producer(o: Options, id: u32, leaders: Vec<String>, shared: Arc<Shared>) -> Result<(), String> {
    let mut conns: HashMap<String, LeaderConn> = HashMap::new();
    let partitions = leaders.len() as i32;
    let per_batch = (o.batch_bytes / o.message_size).max(1);
    let rate_per_producer = if o.rate > 0 {
        (o.rate as f64 / o.producers as f64).max(1.0)
    } else {
        0.0
    };
    let started = Instant::now();
    let started_ns = now_ns();
    let mut sent_total: u64 = 0;
    let mut seqs = vec![0u64; partitions as usize];
    let mut partition = ((id & 0xff) as i32) % partitions;
    while !shared.stop.load(Ordering::Relaxed) {
        let addr = &leaders[partition as usize];
        if !conns.contains_key(addr) {
            let conn = Conn::open(addr)?;
            let mut reader = conn.stream.try_clone().map_err(|e| e.to_string())?;
            let (tx, rx) = mpsc::sync_channel::<(i32, Vec<(i32, u64, u64, usize)>)>(5);
            let shared2 = shared.clone();
            let acks = o.acks;
            let handle = std::thread::spawn(move || {
                while let Ok((_corr, msgs)) = rx.recv() {
                    if acks == 0 {
                        let now = now_ns();
                        record_acks(&shared2, id, &msgs, now, 0);
                        continue;
                    }
                    match Conn::recv::<ProduceResponse>(&mut reader, 7) {
                        Ok((_, resp)) => {
                            let now = now_ns();
                            let code = resp
                                .responses
                                .iter()
                                .flat_map(|t| t.partition_responses.iter())
                                .map(|p| p.error_code)
                                .find(|c| *c != 0)
                                .unwrap_or(0);
                            record_acks(&shared2, id, &msgs, now, code);
                        }
                        Err(e) => {
                            eprintln!("producer {id}: {e}");
                            record_error(&shared2, -1);
                            return;
                        }
                    }
                }
            });
            conns.insert(addr.clone(), (conn, tx, handle));
        }
        // Build one batch for this partition, paced when a rate is set.
        let mut records = Vec::with_capacity(per_batch);
        let mut meta = Vec::with_capacity(per_batch);
        let linger_deadline = Instant::now() + o.linger;
        while records.len() < per_batch {
            let intended_ns = if rate_per_producer > 0.0 {
                // Paced: every message has a due time; messages already due
                // go out at once, and a batch is sent as soon as the next
                // message is not due yet (sleeping only with nothing to send).
                let offset = Duration::from_secs_f64(sent_total as f64 / rate_per_producer);
                let due = started + offset;
                let now = Instant::now();
                if due > now {
                    if !records.is_empty() {
                        break;
                    }
                    std::thread::sleep(due - now);
                }
                started_ns + offset.as_nanos() as u64
            } else {
                if !records.is_empty() && Instant::now() >= linger_deadline {
                    break;
                }
                now_ns()
            };
            let seq = seqs[partition as usize];
            seqs[partition as usize] += 1;
            records.push(payload(o.message_size, id, seq, intended_ns));
            meta.push((partition, seq, intended_ns, o.message_size));
            sent_total += 1;
            if shared.stop.load(Ordering::Relaxed) {
                break;
            }
        }
        let refs: Vec<(Option<&[u8]>, &[u8])> =
            records.iter().map(|r| (None, r.as_slice())).collect();
        let batch = build_batch(now_ns() as i64 / 1_000_000, None, &refs);
        let req = ProduceRequest::default()
            .with_acks(o.acks)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![produce_request::TopicProduceData::default()
                .with_name(name(&o.topic))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(Bytes::from(batch))),
                ])]);
        let (conn, tx, _) = conns.get_mut(addr).expect("connection");
        let corr = conn.send(ApiKey::Produce, 7, &req)?;
        if tx.send((corr, meta)).is_err() {
            return Err(format!("producer {id}: connection to {addr} lost"));
        }
        partition = (partition + 1) % partitions;
    }
    for (_, (_, tx, handle)) in conns {
        drop(tx);
        let _ = handle.join();
    }
    Ok(())
}

fn record_acks(
    shared: &Shared,
    producer: u32,
    msgs: &[(i32, u64, u64, usize)],
    now: u64,
    code: i16,
) {
    if code != 0 {
        record_error(shared, code);
        return;
    }
    let measuring = shared.measuring.load(Ordering::Relaxed);
    let mut hist = shared.ack.lock().expect("lock");
    let mut acked = shared.acked.lock().expect("lock");
    for (partition, seq, sent, size) in msgs {
        if measuring {
            let _ = hist.record((now.saturating_sub(*sent) / 1000).max(1));
            shared.counters.produced.fetch_add(1, Ordering::Relaxed);
            shared
                .counters
                .produced_bytes
                .fetch_add(*size as u64, Ordering::Relaxed);
        }
        let e = acked.entry((producer, *partition)).or_default();
        *e = (*e).max(seq + 1);
    }
}

/// One consumer: fetches its partitions (p % consumers == id) from the
/// start offset, verifies and times every message.
fn consumer(
    o: Options,
    id: usize,
    leaders: Vec<String>,
    start_latest: bool,
    shared: Arc<Shared>,
) -> Result<(), String> {
    let mine: Vec<i32> = (0..leaders.len() as i32)
        .filter(|p| (*p as usize) % o.consumers.max(1) == id)
        .collect();
    if mine.is_empty() {
        return Ok(());
    }
    let mut by_leader: HashMap<String, Vec<i32>> = HashMap::new();
    for p in &mine {
        by_leader
            .entry(leaders[*p as usize].clone())
            .or_default()
            .push(*p);
    }
    let mut handles = Vec::new();
    for (addr, parts) in by_leader {
        let o = o.clone();
        let shared = shared.clone();
        handles.push(std::thread::spawn(move || {
            fetch_loop(o, addr, parts, start_latest, shared)
        }));
    }
    for h in handles {
        h.join()
            .map_err(|_| "consumer thread panicked".to_string())??;
    }
    Ok(())
}

fn fetch_loop(
    o: Options,
    addr: String,
    parts: Vec<i32>,
    start_latest: bool,
    shared: Arc<Shared>,
) -> Result<(), String> {
    let mut conn = Conn::open(&addr)?;
    let list = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
            .with_name(name(&o.topic))
            .with_partitions(
                parts
                    .iter()
                    .map(|p| {
                        list_offsets_request::ListOffsetsPartition::default()
                            .with_partition_index(*p)
                            .with_timestamp(if start_latest { -1 } else { -2 })
                    })
                    .collect(),
            )]);
    let offsets: ListOffsetsResponse = conn.call(ApiKey::ListOffsets, 1, &list)?;
    let mut next: HashMap<i32, i64> = HashMap::new();
    for t in offsets.topics {
        for p in t.partitions {
            next.insert(p.partition_index, p.offset.max(0));
        }
    }
    let drain_until = Arc::new(Mutex::new(None::<Instant>));
    loop {
        if shared.producers_done.load(Ordering::Relaxed)
            || (shared.stop.load(Ordering::Relaxed) && o.mode == "consume")
        {
            let mut d = drain_until.lock().expect("lock");
            let deadline = *d.get_or_insert_with(|| Instant::now() + Duration::from_secs(10));
            if Instant::now() >= deadline || caught_up(&shared, &parts) {
                return Ok(());
            }
        }
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(100)
            .with_min_bytes(1)
            .with_max_bytes(32 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(name(&o.topic))
                .with_partitions(
                    parts
                        .iter()
                        .map(|p| {
                            fetch_request::FetchPartition::default()
                                .with_partition(*p)
                                .with_fetch_offset(next[p])
                                .with_partition_max_bytes(8 << 20)
                        })
                        .collect(),
                )]);
        let resp: FetchResponse = conn.call(ApiKey::Fetch, 11, &req)?;
        if resp.error_code != 0 {
            record_error(&shared, resp.error_code);
            continue;
        }
        let now = now_ns();
        let measuring = shared.measuring.load(Ordering::Relaxed);
        for t in resp.responses {
            for p in t.partitions {
                if p.error_code != 0 {
                    record_error(&shared, p.error_code);
                    continue;
                }
                let Some(records) = p.records else { continue };
                let mut pos = 0usize;
                while records.len() >= pos + BATCH_HEADER_LEN {
                    let Ok(header) = parse_header(&records[pos..]) else {
                        break;
                    };
                    let total = header.total_len();
                    if records.len() < pos + total {
                        break; // partial trailing batch: fetch it again
                    }
                    let mut one = records.slice(pos..pos + total);
                    pos += total;
                    let Ok(set) = kafka_protocol::records::RecordBatchDecoder::decode(&mut one)
                    else {
                        shared.counters.corrupt.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let mut e2e = shared.e2e.lock().expect("lock");
                    let mut seen = shared.seen.lock().expect("lock");
                    for r in set.records {
                        if r.offset < next[&p.partition_index] {
                            continue;
                        }
                        next.insert(p.partition_index, r.offset + 1);
                        let value = r.value.unwrap_or_default();
                        match verify(&value, o.message_size) {
                            None => {
                                shared.counters.corrupt.fetch_add(1, Ordering::Relaxed);
                            }
                            Some((producer, seq, sent)) => {
                                let expected =
                                    seen.entry((producer, p.partition_index)).or_insert(seq);
                                if seq != *expected {
                                    shared.counters.out_of_order.fetch_add(1, Ordering::Relaxed);
                                }
                                *expected = seq + 1;
                                if measuring {
                                    let _ = e2e.record((now.saturating_sub(sent) / 1000).max(1));
                                    shared.counters.consumed.fetch_add(1, Ordering::Relaxed);
                                    shared
                                        .counters
                                        .consumed_bytes
                                        .fetch_add(value.len() as u64, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn caught_up(shared: &Shared, parts: &[i32]) -> bool {
    let acked = shared.acked.lock().expect("lock");
    let seen = shared.seen.lock().expect("lock");
    acked
        .iter()
        .filter(|((_, p), _)| parts.contains(p))
        .all(|(k, v)| seen.get(k).copied().unwrap_or(0) >= *v)
}

fn percentiles(h: &Histogram<u64>) -> Vec<(String, f64)> {
    let ms = |v: u64| v as f64 / 1000.0;
    vec![
        ("p50".into(), ms(h.value_at_quantile(0.50))),
        ("p90".into(), ms(h.value_at_quantile(0.90))),
        ("p99".into(), ms(h.value_at_quantile(0.99))),
        ("p99.9".into(), ms(h.value_at_quantile(0.999))),
        ("p99.99".into(), ms(h.value_at_quantile(0.9999))),
        ("max".into(), ms(h.max())),
    ]
}

/// HdrHistogram's percentile-distribution text (.hgrm), values in ms.
fn hgrm(h: &Histogram<u64>) -> String {
    let mut out = String::from("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
    for v in h.iter_quantiles(5) {
        let q = v.quantile_iterated_to();
        let inv = if q < 1.0 {
            format!("{:.2}", 1.0 / (1.0 - q))
        } else {
            "inf".into()
        };
        out.push_str(&format!(
            "{:12.3} {:14.12} {:10} {:>14}\n",
            v.value_iterated_to() as f64 / 1000.0,
            q,
            v.count_since_last_iteration(),
            inv
        ));
    }
    out.push_str(&format!(
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]\n#[Max     = {:12.3}, Total count    = {:12}]\n",
        h.mean() / 1000.0,
        h.stdev() / 1000.0,
        h.max() as f64 / 1000.0,
        h.len()
    ));
    out
}

/// A latency-by-percentile chart with a log-scaled percentile axis.
fn svg(series: &[(&str, &Histogram<u64>, &str)], title: &str) -> String {
    let (w, h, left, bottom, top, right) = (900.0, 500.0, 70.0, 60.0, 40.0, 30.0);
    let max_x = 6.0; // up to 99.9999 %
    let max_ms = series
        .iter()
        .filter(|(_, hist, _)| !hist.is_empty())
        .map(|(_, hist, _)| hist.value_at_quantile(0.999999) as f64 / 1000.0)
        .fold(0.001, f64::max)
        * 1.1;
    let x = |q: f64| left + (-(1.0 - q).max(1e-6).log10()).min(max_x) / max_x * (w - left - right);
    let y = |ms: f64| h - bottom - ms / max_ms * (h - bottom - top);
    let mut s = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-family='sans-serif' font-size='12'>\
         <rect width='100%' height='100%' fill='white'/><text x='{}' y='24' font-size='16' text-anchor='middle'>{title}</text>",
        w / 2.0
    );
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"]
        .iter()
        .enumerate()
    {
        let q = 1.0 - 10f64.powi(-(i as i32));
        let xi = x(if i == 0 { 0.0 } else { q });
        s.push_str(&format!(
            "<line x1='{xi}' y1='{top}' x2='{xi}' y2='{}' stroke='#ddd'/><text x='{xi}' y='{}' text-anchor='middle'>{label}</text>",
            h - bottom,
            h - bottom + 18.0
        ));
    }
    for i in 0..=5 {
        let ms = max_ms * i as f64 / 5.0;
        let yi = y(ms);
        s.push_str(&format!(
            "<line x1='{left}' y1='{yi}' x2='{}' y2='{yi}' stroke='#eee'/><text x='{}' y='{}' text-anchor='end'>{ms:.2}</text>",
            w - right,
            left - 6.0,
            yi + 4.0
        ));
    }
    s.push_str(&format!(
        "<text x='{}' y='{}' text-anchor='middle'>percentile</text><text x='16' y='{}' transform='rotate(-90 16 {})' text-anchor='middle'>latency (ms)</text>",
        w / 2.0,
        h - 16.0,
        h / 2.0,
        h / 2.0
    ));
    for (n, (label, hist, color)) in series.iter().enumerate() {
        if hist.is_empty() {
            continue;
        }
        let points: Vec<String> = hist
            .iter_quantiles(10)
            .map(|v| {
                format!(
                    "{:.1},{:.1}",
                    x(v.quantile_iterated_to()),
                    y(v.value_iterated_to() as f64 / 1000.0)
                )
            })
            .collect();
        s.push_str(&format!(
            "<polyline fill='none' stroke='{color}' stroke-width='2' points='{}'/>",
            points.join(" ")
        ));
        s.push_str(&format!(
            "<rect x='{}' y='{}' width='12' height='12' fill='{color}'/><text x='{}' y='{}'>{label}</text>",
            left + 10.0,
            top + 10.0 + n as f64 * 18.0,
            left + 28.0,
            top + 20.0 + n as f64 * 18.0
        ));
    }
    s.push_str("</svg>\n");
    s
}

fn run(o: Options) -> Result<bool, String> {
    let leaders = leaders(&o)?;
    let shared = Arc::new(Shared {
        counters: Counters::default(),
        stop: AtomicBool::new(false),
        producers_done: AtomicBool::new(false),
        measuring: AtomicBool::new(o.warmup.is_zero()),
        ack: Mutex::new(histogram()),
        e2e: Mutex::new(histogram()),
        error_codes: Mutex::new(HashMap::new()),
        acked: Mutex::new(HashMap::new()),
        seen: Mutex::new(HashMap::new()),
    });
    let produce = o.mode != "consume";
    let consume = o.mode != "produce";
    let mut workers = Vec::new();
    let mut producers = Vec::new();
    if consume {
        for id in 0..o.consumers.max(1) {
            let (o, l, s) = (o.clone(), leaders.clone(), shared.clone());
            let latest = o.mode == "e2e";
            workers.push(std::thread::spawn(move || consumer(o, id, l, latest, s)));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    if produce {
        for id in 0..o.producers.max(1) {
            let (o, l, s) = (o.clone(), leaders.clone(), shared.clone());
            // Producer ids are unique per run, so runs on the same topic
            // never mix sequences.
            let producer_id = (std::process::id() & 0x00ff_ffff) << 8 | (id as u32 & 0xff);
            producers.push(std::thread::spawn(move || producer(o, producer_id, l, s)));
        }
    }
    println!(
        "{} against {} topic {} ({} partitions), {} B messages, acks={}, rate {}",
        o.mode,
        o.bootstrap,
        o.topic,
        leaders.len(),
        o.message_size,
        o.acks,
        if o.rate == 0 {
            "flat out".to_string()
        } else {
            format!("{}/s", o.rate)
        }
    );
    println!(
        "{:>6} {:>12} {:>10} {:>12} {:>10} {:>8}",
        "sec", "prod msg/s", "MB/s", "cons msg/s", "MB/s", "errors"
    );
    let start = Instant::now();
    let end = start + o.warmup + o.duration;
    let mut last = (0u64, 0u64, 0u64, 0u64);
    let mut second = 0;
    let mut measured_from = if o.warmup.is_zero() {
        Some(Instant::now())
    } else {
        None
    };
    while Instant::now() < end {
        std::thread::sleep(Duration::from_secs(1));
        second += 1;
        if measured_from.is_none() && start.elapsed() >= o.warmup {
            shared.measuring.store(true, Ordering::Relaxed);
            measured_from = Some(Instant::now());
        }
        let c = &shared.counters;
        let now = (
            c.produced.load(Ordering::Relaxed),
            c.produced_bytes.load(Ordering::Relaxed),
            c.consumed.load(Ordering::Relaxed),
            c.consumed_bytes.load(Ordering::Relaxed),
        );
        println!(
            "{:>6} {:>12} {:>10.1} {:>12} {:>10.1} {:>8}{}",
            second,
            now.0 - last.0,
            (now.1 - last.1) as f64 / 1e6,
            now.2 - last.2,
            (now.3 - last.3) as f64 / 1e6,
            c.errors.load(Ordering::Relaxed),
            if shared.measuring.load(Ordering::Relaxed) {
                ""
            } else {
                "  (warmup)"
            }
        );
        last = now;
    }
    let elapsed = measured_from
        .map_or(o.duration, |t| t.elapsed())
        .as_secs_f64();
    shared.stop.store(true, Ordering::Relaxed);
    // Producers first: their last acknowledgements decide what consumers
    // must still read before they stop.
    for w in producers {
        match w.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("producer: {e}"),
            Err(_) => eprintln!("producer panicked"),
        }
    }
    shared.producers_done.store(true, Ordering::Relaxed);
    for w in workers {
        match w.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("worker: {e}"),
            Err(_) => eprintln!("worker panicked"),
        }
    }
    let c = &shared.counters;
    let ack = shared.ack.lock().expect("lock").clone();
    let e2e = shared.e2e.lock().expect("lock").clone();
    let produced = c.produced.load(Ordering::Relaxed);
    let consumed = c.consumed.load(Ordering::Relaxed);
    println!();
    if produce {
        println!(
            "produced {produced} msgs in {elapsed:.1} s: {:.0} msg/s, {:.1} MB/s",
            produced as f64 / elapsed,
            c.produced_bytes.load(Ordering::Relaxed) as f64 / elapsed / 1e6
        );
    }
    if consume {
        println!(
            "consumed {consumed} msgs in {elapsed:.1} s: {:.0} msg/s, {:.1} MB/s",
            consumed as f64 / elapsed,
            c.consumed_bytes.load(Ordering::Relaxed) as f64 / elapsed / 1e6
        );
    }
    println!(
        "{:<22} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "latency (ms)", "p50", "p90", "p99", "p99.9", "p99.99", "max"
    );
    for (label, h, on) in [
        ("produce ack", &ack, produce),
        ("end to end", &e2e, o.mode == "e2e"),
    ] {
        if on && !h.is_empty() {
            let p = percentiles(h);
            println!(
                "{:<22} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
                label, p[0].1, p[1].1, p[2].1, p[3].1, p[4].1, p[5].1
            );
        }
    }
    // Loss: every acknowledged message must have been consumed (e2e).
    let mut lost = 0u64;
    if o.mode == "e2e" {
        let acked = shared.acked.lock().expect("lock");
        let seen = shared.seen.lock().expect("lock");
        for (k, v) in acked.iter() {
            lost += v.saturating_sub(seen.get(k).copied().unwrap_or(0));
        }
    }
    let errors = c.errors.load(Ordering::Relaxed);
    let corrupt = c.corrupt.load(Ordering::Relaxed);
    let disorder = c.out_of_order.load(Ordering::Relaxed);
    println!(
        "errors {errors} {:?}, corrupt {corrupt}, out of order {disorder}, lost {lost}",
        shared.error_codes.lock().expect("lock")
    );
    if let Some(path) = &o.hgrm {
        let mut text = String::new();
        if produce && !ack.is_empty() {
            text.push_str("# produce ack latency (ms)\n");
            text.push_str(&hgrm(&ack));
        }
        if o.mode == "e2e" && !e2e.is_empty() {
            text.push_str("# end-to-end latency (ms)\n");
            text.push_str(&hgrm(&e2e));
        }
        std::fs::write(path, text).map_err(|e| format!("{path}: {e}"))?;
    }
    if let Some(path) = &o.json {
        let summary = serde_json::json!({
            "mode": o.mode, "bootstrap": o.bootstrap, "topic": o.topic, "partitions": leaders.len(),
            "message_size": o.message_size, "acks": o.acks, "rate": o.rate, "producers": o.producers,
            "consumers": o.consumers, "seconds": elapsed,
            "produced": produced, "produce_msgs_per_s": produced as f64 / elapsed,
            "produce_mb_per_s": c.produced_bytes.load(Ordering::Relaxed) as f64 / elapsed / 1e6,
            "consumed": consumed, "consume_msgs_per_s": consumed as f64 / elapsed,
            "consume_mb_per_s": c.consumed_bytes.load(Ordering::Relaxed) as f64 / elapsed / 1e6,
            "produce_ack_ms": percentiles(&ack).into_iter().collect::<HashMap<_, _>>(),
            "e2e_ms": percentiles(&e2e).into_iter().collect::<HashMap<_, _>>(),
            "errors": errors, "corrupt": corrupt, "out_of_order": disorder, "lost": lost,
        });
        std::fs::write(
            path,
            serde_json::to_string_pretty(&summary).unwrap_or_default(),
        )
        .map_err(|e| format!("{path}: {e}"))?;
    }
    if let Some(path) = &o.plot {
        let mut series = Vec::new();
        if produce {
            series.push(("produce ack", &ack, "#1f77b4"));
        }
        if o.mode == "e2e" {
            series.push(("end to end", &e2e, "#d62728"));
        }
        let title = format!(
            "{} B, acks={}, {} partitions, {}",
            o.message_size,
            o.acks,
            leaders.len(),
            if o.rate == 0 {
                "flat out".to_string()
            } else {
                format!("{} msg/s", o.rate)
            }
        );
        std::fs::write(path, svg(&series, &title)).map_err(|e| format!("{path}: {e}"))?;
    }
    Ok(errors == 0 && corrupt == 0 && lost == 0 && disorder == 0)
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(options) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("ringbroker-bench: errors, corruption or loss detected");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("ringbroker-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
