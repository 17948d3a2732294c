//! `ringbroker-groups`: lists consumer groups and shows per-partition lag,
//! like Kafka's `kafka-consumer-groups.sh --describe`. Speaks the Kafka
//! protocol to any broker (ringbroker's coordinator is the broker itself).
//!
//! Usage:
//!   ringbroker-groups [--bootstrap HOST:PORT] list
//!   ringbroker-groups [--bootstrap HOST:PORT] describe GROUP...

use std::collections::BTreeMap;
use std::process::ExitCode;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use ringbroker_tools::Conn;

/// Topic → partitions of a consumer-protocol assignment.
fn parse_assignment(bytes: &[u8]) -> BTreeMap<String, Vec<i32>> {
    let mut out = BTreeMap::new();
    let mut b = Bytes::copy_from_slice(bytes);
    if b.remaining() < 6 {
        return out;
    }
    b.get_i16();
    let topics = b.get_i32();
    for _ in 0..topics.max(0) {
        if b.remaining() < 2 {
            break;
        }
        let len = b.get_i16().max(0) as usize;
        if b.remaining() < len + 4 {
            break;
        }
        let topic = String::from_utf8_lossy(&b.split_to(len)).into_owned();
        let count = b.get_i32().max(0) as usize;
        if b.remaining() < count * 4 {
            break;
        }
        out.insert(topic, (0..count).map(|_| b.get_i32()).collect());
    }
    out
}

fn list(client: &mut Conn) -> Result<(), String> {
    let response: ListGroupsResponse =
        client.call(ApiKey::ListGroups, 4, &ListGroupsRequest::default())?;
    if response.error_code != 0 {
        return Err(format!(
            "ListGroups failed with error {}",
            response.error_code
        ));
    }
    println!("{:<40} {:<20} PROTOCOL-TYPE", "GROUP", "STATE");
    for g in response.groups {
        println!(
            "{:<40} {:<20} {}",
            g.group_id.0.as_str(),
            g.group_state.as_str(),
            g.protocol_type.as_str()
        );
    }
    Ok(())
}

fn describe(client: &mut Conn, group: &str) -> Result<(), String> {
    let request = DescribeGroupsRequest::default()
        .with_groups(vec![GroupId(StrBytes::from_string(group.to_string()))]);
    let described: DescribeGroupsResponse = client.call(ApiKey::DescribeGroups, 5, &request)?;
    let Some(d) = described.groups.into_iter().next() else {
        return Err("empty DescribeGroups response".into());
    };
    if d.error_code != 0 {
        return Err(format!("group {group}: error {}", d.error_code));
    }
    // (topic, partition) → (member, host, client id)
    let mut owners: BTreeMap<(String, i32), (String, String, String)> = BTreeMap::new();
    for m in &d.members {
        for (topic, partitions) in parse_assignment(&m.member_assignment) {
            for p in partitions {
                owners.insert(
                    (topic.clone(), p),
                    (
                        m.member_id.to_string(),
                        m.client_host.to_string(),
                        m.client_id.to_string(),
                    ),
                );
            }
        }
    }
    let fetch = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_topics(None);
    let committed: OffsetFetchResponse = client.call(ApiKey::OffsetFetch, 7, &fetch)?;
    let mut rows: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for t in &committed.topics {
        for p in &t.partitions {
            rows.insert(
                (t.name.0.to_string(), p.partition_index),
                p.committed_offset,
            );
        }
    }
    for key in owners.keys() {
        rows.entry(key.clone()).or_insert(-1);
    }
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (t, p) in rows.keys() {
        by_topic.entry(t.clone()).or_default().push(*p);
    }
    let list = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(
            by_topic
                .iter()
                .map(|(t, ps)| {
                    list_offsets_request::ListOffsetsTopic::default()
                        .with_name(TopicName(StrBytes::from_string(t.clone())))
                        .with_partitions(
                            ps.iter()
                                .map(|p| {
                                    list_offsets_request::ListOffsetsPartition::default()
                                        .with_partition_index(*p)
                                        .with_timestamp(-1)
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    let ends: ListOffsetsResponse = client.call(ApiKey::ListOffsets, 5, &list)?;
    let mut end_of: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for t in &ends.topics {
        for p in &t.partitions {
            end_of.insert(
                (t.name.0.to_string(), p.partition_index),
                if p.error_code == 0 { p.offset } else { -1 },
            );
        }
    }
    println!(
        "Group {group}: state {}, protocol {}, {} member(s)",
        d.group_state.as_str(),
        d.protocol_data.as_str(),
        d.members.len()
    );
    println!(
        "{:<30} {:<30} {:>9} {:>15} {:>15} {:>10}  {:<45} {:<16} CLIENT-ID",
        "GROUP",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "CONSUMER-ID",
        "HOST",
    );
    let mut total = 0i64;
    for ((topic, partition), current) in &rows {
        let end = end_of
            .get(&(topic.clone(), *partition))
            .copied()
            .unwrap_or(-1);
        let lag = if *current >= 0 && end >= 0 {
            (end - current).max(0)
        } else {
            -1
        };
        if lag > 0 {
            total += lag;
        }
        let (member, host, client) = owners
            .get(&(topic.clone(), *partition))
            .cloned()
            .unwrap_or(("-".into(), "-".into(), "-".into()));
        let show = |v: i64| if v >= 0 { v.to_string() } else { "-".into() };
        println!(
            "{:<30} {:<30} {:>9} {:>15} {:>15} {:>10}  {:<45} {:<16} {}",
            group,
            topic,
            partition,
            show(*current),
            show(end),
            show(lag),
            member,
            host,
            client
        );
    }
    println!("Total lag: {total}");
    Ok(())
}

fn main() -> ExitCode {
    let mut bootstrap = "127.0.0.1:9092".to_string();
    let mut args: Vec<String> = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--bootstrap" | "-b" => match it.next() {
                Some(v) => bootstrap = v,
                None => {
                    eprintln!("--bootstrap needs HOST:PORT");
                    return ExitCode::from(2);
                }
            },
            "-h" | "--help" => {
                println!(
                    "usage: ringbroker-groups [--bootstrap HOST:PORT] list | describe GROUP..."
                );
                return ExitCode::SUCCESS;
            }
            _ => args.push(arg),
        }
    }
    let mut client = match Conn::open(&bootstrap) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringbroker-groups: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match args.first().map(String::as_str) {
        Some("list") => list(&mut client),
        Some("describe") if args.len() > 1 => {
            args[1..].iter().try_for_each(|g| describe(&mut client, g))
        }
        _ => {
            eprintln!("usage: ringbroker-groups [--bootstrap HOST:PORT] list | describe GROUP...");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringbroker-groups: {e}");
            ExitCode::FAILURE
        }
    }
}
