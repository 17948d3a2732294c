//! The group APIs: decode, make one request of the group's coordinator
//! (`Shard::group_call` routes it to the shard owning the group's
//! `__consumer_offsets` partition), encode. The coordinator itself is the
//! `ringbroker-groups` state machine behind `crate::coordinator`.

use std::rc::Rc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use ringbroker_groups as rg;
use ringbroker_groups::{
    CommitRequest, FetchOffsetsRequest, FetchOffsetsResponse, FetchedOffset, GroupDescription,
    JoinRequest, JoinResponse, LeaveRequest, LeaveResponse, LeavingMember, OffsetCommit, Protocol,
    Reply, Request, SyncRequest, SyncResponse, TxnCommitRequest, TxnProducer,
};
use ringbroker_protocol::errors::ErrorCode;

use super::{str_bytes, topic_name};
use crate::acl::{authorized_operations_if, ResourceType};
use crate::catalog::BrokerMeta;
use crate::coordinator::OFFSETS_TOPIC;
use crate::dispatch::{Context, DispatchError, Response};
use crate::shard::Shard;
use crate::txn_coordinator::TXN_TOPIC;

fn group_id(g: &GroupId) -> String {
    g.0.to_string()
}

fn opt_string(s: &Option<StrBytes>) -> Option<String> {
    s.as_ref().map(|s| s.to_string())
}

/// The coordinator's answer, or `unavailable` when it does not have the
/// expected shape (it always does; a mismatch is a bug, logged).
fn expect<T>(reply: Reply, pick: impl FnOnce(Reply) -> Option<T>, unavailable: T) -> T {
    pick(reply).unwrap_or_else(|| {
        log::error!("group coordinator answered with the wrong kind of reply");
        unavailable
    })
}

/// FindCoordinator: the coordinator of a group is the leader of the
/// group's `__consumer_offsets` partition, as the catalog records it.
pub async fn find_coordinator(
    shard: &Rc<Shard>,
    ctx: &Context,
    request: FindCoordinatorRequest,
) -> Result<Response, DispatchError> {
    if request.key_type == 0 && !shard.catalog().topics.contains_key(OFFSETS_TOPIC) {
        // In a cluster the offsets topic is created on first use (as
        // Kafka); the client retries COORDINATOR_NOT_AVAILABLE meanwhile.
        shard.create_offsets_topic().await;
    }
    if request.key_type == 1 {
        // `__transaction_state` is created on first use, as Kafka does.
        shard.create_txn_topic().await;
    }
    let catalog = shard.catalog();
    // (error, message, broker) for one key.
    let answer = |key: &str| -> (ErrorCode, Option<&'static str>, Option<&BrokerMeta>) {
        let leader = match request.key_type {
            0 if key.is_empty() => {
                return (ErrorCode::InvalidGroupId, Some("empty group id"), None);
            }
            0 => catalog.topics.get(OFFSETS_TOPIC).and_then(|meta| {
                let index = ringbroker_groups::partition_for(key, meta.partition_count());
                meta.partition(index).map(|p| p.leader)
            }),
            1 if key.is_empty() => {
                return (
                    ErrorCode::InvalidRequest,
                    Some("empty transactional id"),
                    None,
                );
            }
            1 => catalog.topics.get(TXN_TOPIC).and_then(|meta| {
                let index = ringbroker_txn::partition_for(key, meta.partition_count());
                meta.partition(index).map(|p| p.leader)
            }),
            _ => {
                return (
                    ErrorCode::InvalidRequest,
                    Some("unknown coordinator key type"),
                    None,
                );
            }
        };
        match leader.and_then(|id| catalog.brokers.get(&id)) {
            Some(broker) if !broker.fenced => (ErrorCode::None, None, Some(broker)),
            _ => (
                ErrorCode::CoordinatorNotAvailable,
                Some("the key's coordinator partition has no leader"),
                None,
            ),
        }
    };
    let endpoint = |broker: Option<&BrokerMeta>| match broker {
        Some(b) => (BrokerId(b.id), str_bytes(&b.host), i32::from(b.port)),
        None => (BrokerId(-1), str_bytes(""), -1),
    };
    let mut response = FindCoordinatorResponse::default();
    if ctx.version >= 4 {
        response.coordinators = request
            .coordinator_keys
            .iter()
            .map(|key| {
                let (code, message, broker) = answer(key.as_str());
                let (node, host, port) = endpoint(broker);
                Coordinator::default()
                    .with_key(key.clone())
                    .with_node_id(node)
                    .with_host(host)
                    .with_port(port)
                    .with_error_code(code.code())
                    .with_error_message(message.map(str_bytes))
            })
            .collect();
    } else {
        let (code, message, broker) = answer(request.key.as_str());
        let (node, host, port) = endpoint(broker);
        response = response
            .with_error_code(code.code())
            .with_node_id(node)
            .with_host(host)
            .with_port(port);
        if ctx.version >= 1 {
            response = response.with_error_message(message.map(str_bytes));
        }
    }
    ctx.respond(&response)
}

/// JoinGroup.
pub async fn join_group(
    shard: &Rc<Shard>,
    ctx: &Context,
    r: JoinGroupRequest,
) -> Result<Response, DispatchError> {
    let group = group_id(&r.group_id);
    let member_id = r.member_id.to_string();
    let request = JoinRequest {
        group: group.clone(),
        member_id: member_id.clone(),
        instance_id: opt_string(&r.group_instance_id),
        client_id: opt_string(&ctx.header.client_id).unwrap_or_default(),
        client_host: ctx.client_host.clone(),
        session_timeout_ms: r.session_timeout_ms,
        // JoinGroup v0 has no rebalance timeout: the session timeout.
        rebalance_timeout_ms: if ctx.version >= 1 {
            r.rebalance_timeout_ms
        } else {
            -1
        },
        protocol_type: r.protocol_type.to_string(),
        protocols: r
            .protocols
            .iter()
            .map(|p| Protocol {
                name: p.name.to_string(),
                metadata: p.metadata.clone(),
            })
            .collect(),
        require_known_member_id: ctx.version >= 4,
        supports_skip_assignment: ctx.version >= 9,
    };
    let reply = expect(
        shard.group_call(&group, Request::Join(request)).await,
        |reply| match reply {
            Reply::Join(r) => Some(r),
            _ => None,
        },
        JoinResponse::error(ErrorCode::CoordinatorNotAvailable, &member_id),
    );
    let members = reply
        .members
        .into_iter()
        .map(|m| {
            let member = join_group_response::JoinGroupResponseMember::default()
                .with_member_id(str_bytes(&m.member_id))
                .with_metadata(m.metadata);
            if ctx.version >= 5 {
                member.with_group_instance_id(m.instance_id.as_deref().map(str_bytes))
            } else {
                member
            }
        })
        .collect();
    let protocol_name = match (&reply.protocol, ctx.version >= 7) {
        (Some(p), _) => Some(str_bytes(p)),
        (None, true) => None,
        (None, false) => Some(str_bytes("")),
    };
    let mut response = JoinGroupResponse::default()
        .with_error_code(reply.error.code())
        .with_generation_id(reply.generation)
        .with_protocol_name(protocol_name)
        .with_leader(str_bytes(&reply.leader))
        .with_member_id(str_bytes(&reply.member_id))
        .with_members(members);
    if ctx.version >= 7 {
        response = response.with_protocol_type(reply.protocol_type.as_deref().map(str_bytes));
    }
    if ctx.version >= 9 {
        response = response.with_skip_assignment(reply.skip_assignment);
    }
    ctx.respond(&response)
}

/// SyncGroup.
pub async fn sync_group(
    shard: &Rc<Shard>,
    ctx: &Context,
    r: SyncGroupRequest,
) -> Result<Response, DispatchError> {
    let group = group_id(&r.group_id);
    let request = SyncRequest {
        group: group.clone(),
        generation: r.generation_id,
        member_id: r.member_id.to_string(),
        instance_id: opt_string(&r.group_instance_id),
        protocol_type: opt_string(&r.protocol_type),
        protocol: opt_string(&r.protocol_name),
        assignments: r
            .assignments
            .iter()
            .map(|a| (a.member_id.to_string(), a.assignment.clone()))
            .collect(),
    };
    let reply = expect(
        shard.group_call(&group, Request::Sync(request)).await,
        |reply| match reply {
            Reply::Sync(r) => Some(r),
            _ => None,
        },
        SyncResponse::error(ErrorCode::CoordinatorNotAvailable),
    );
    let mut response = SyncGroupResponse::default()
        .with_error_code(reply.error.code())
        .with_assignment(reply.assignment);
    if ctx.version >= 5 {
        response = response
            .with_protocol_type(reply.protocol_type.as_deref().map(str_bytes))
            .with_protocol_name(reply.protocol.as_deref().map(str_bytes));
    }
    ctx.respond(&response)
}

/// Heartbeat.
pub async fn heartbeat(
    shard: &Rc<Shard>,
    ctx: &Context,
    r: HeartbeatRequest,
) -> Result<Response, DispatchError> {
    let group = group_id(&r.group_id);
    let request = rg::HeartbeatRequest {
        group: group.clone(),
        generation: r.generation_id,
        member_id: r.member_id.to_string(),
        instance_id: opt_string(&r.group_instance_id),
    };
    let code = expect(
        shard.group_call(&group, Request::Heartbeat(request)).await,
        |reply| match reply {
            Reply::Heartbeat(code) => Some(code),
            _ => None,
        },
        ErrorCode::CoordinatorNotAvailable,
    );
    ctx.respond(&HeartbeatResponse::default().with_error_code(code.code()))
}

/// LeaveGroup (one member before v3, a batch from v3).
pub async fn leave_group(
    shard: &Rc<Shard>,
    ctx: &Context,
    r: LeaveGroupRequest,
) -> Result<Response, DispatchError> {
    let group = group_id(&r.group_id);
    let members: Vec<LeavingMember> = if ctx.version >= 3 {
        r.members
            .iter()
            .map(|m| LeavingMember {
                member_id: m.member_id.to_string(),
                instance_id: opt_string(&m.group_instance_id),
            })
            .collect()
    } else {
        vec![LeavingMember {
            member_id: r.member_id.to_string(),
            instance_id: None,
        }]
    };
    let request = LeaveRequest {
        group: group.clone(),
        members: members.clone(),
    };
    let reply = expect(
        shard.group_call(&group, Request::Leave(request)).await,
        |reply| match reply {
            Reply::Leave(r) => Some(r),
            _ => None,
        },
        LeaveResponse {
            error: ErrorCode::CoordinatorNotAvailable,
            members: Vec::new(),
        },
    );
    if ctx.version < 3 {
        // One member: its error is the request's.
        let code = match (reply.error, reply.members.first()) {
            (ErrorCode::None, Some(code)) => *code,
            (error, _) => error,
        };
        return ctx.respond(&LeaveGroupResponse::default().with_error_code(code.code()));
    }
    let response = LeaveGroupResponse::default()
        .with_error_code(reply.error.code())
        .with_members(
            members
                .iter()
                .zip(reply.members)
                .map(|(m, code)| {
                    leave_group_response::MemberResponse::default()
                        .with_member_id(str_bytes(&m.member_id))
                        .with_group_instance_id(m.instance_id.as_deref().map(str_bytes))
                        .with_error_code(code.code())
                })
                .collect(),
        );
    ctx.respond(&response)
}

/// OffsetCommit.
pub async fn offset_commit(
    shard: &Rc<Shard>,
    ctx: &Context,
    r: OffsetCommitRequest,
) -> Result<Response, DispatchError> {
    let group = group_id(&r.group_id);
    let catalog = shard.catalog();
    let mut offsets = Vec::new();
    for t in &r.topics {
        let name = t.name.0.to_string();
        let meta = catalog.topics.get(&name);
        for p in &t.partitions {
            let known = meta.is_some_and(|m| m.partition(p.partition_index).is_some());
            offsets.push(OffsetCommit {
                topic: name.clone(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: if ctx.version >= 6 {
                    p.committed_leader_epoch
                } else {
                    -1
                },
                metadata: opt_string(&p.committed_metadata),
                rejected: (!known).then_some(ErrorCode::UnknownTopicOrPartition),
            });
        }
    }
    let count = offsets.len();
    let request = CommitRequest {
        group: group.clone(),
        generation: r.generation_id_or_member_epoch,
        member_id: r.member_id.to_string(),
        instance_id: opt_string(&r.group_instance_id),
        offsets,
    };
    let codes = expect(
        shard.group_call(&group, Request::Commit(request)).await,
        |reply| match reply {
            Reply::Commit(codes) if codes.len() == count => Some(codes),
            _ => None,
        },
        vec![ErrorCode::CoordinatorNotAvailable; count],
    );
    let mut codes = codes.into_iter();
    let topics = r
        .topics
        .iter()
        .map(|t| {
            offset_commit_response::OffsetCommitResponseTopic::default()
                .with_name(topic_name(t.name.0.as_str()))
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            let code = codes.next().unwrap_or(ErrorCode::CoordinatorNotAvailable);
                            offset_commit_response::OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code.code())
                        })
                        .collect(),
                )
        })
        .collect();
    ctx.respond(&OffsetCommitResponse::default().with_topics(topics))
}

/// The TxnOffsetCommit error a client of `version` understands: before
/// v2 a loading coordinator is COORDINATOR_NOT_AVAILABLE (Kafka's rule:
/// clients before 2.0 may crash on COORDINATOR_LOAD_IN_PROGRESS, KAFKA-7296).
fn txn_commit_error(version: i16, error: ErrorCode) -> ErrorCode {
    match error {
        ErrorCode::CoordinatorLoadInProgress if version < 2 => ErrorCode::CoordinatorNotAvailable,
        other => other,
    }
}

/// TxnOffsetCommit: offsets committed inside a transaction, routed to the
/// group's coordinator as OffsetCommit is. They stay pending (invisible
/// to OffsetFetch) until the transaction's marker.
pub async fn txn_offset_commit(
    shard: &Rc<Shard>,
    ctx: &Context,
    r: TxnOffsetCommitRequest,
) -> Result<Response, DispatchError> {
    let group = group_id(&r.group_id);
    let catalog = shard.catalog();
    let mut offsets = Vec::new();
    for t in &r.topics {
        let name = t.name.0.to_string();
        let meta = catalog.topics.get(&name);
        for p in &t.partitions {
            let known = meta.is_some_and(|m| m.partition(p.partition_index).is_some());
            offsets.push(OffsetCommit {
                topic: name.clone(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: if ctx.version >= 2 {
                    p.committed_leader_epoch
                } else {
                    -1
                },
                metadata: opt_string(&p.committed_metadata),
                rejected: (!known).then_some(ErrorCode::UnknownTopicOrPartition),
            });
        }
    }
    let count = offsets.len();
    let request = TxnCommitRequest {
        group: group.clone(),
        transactional_id: r.transactional_id.0.to_string(),
        producer: TxnProducer {
            producer_id: r.producer_id.0,
            producer_epoch: r.producer_epoch,
        },
        generation: r.generation_id,
        member_id: r.member_id.to_string(),
        instance_id: opt_string(&r.group_instance_id),
        offsets,
    };
    let codes = if r.producer_id.0 < 0 {
        // No producer, no transaction to hold the offsets.
        vec![ErrorCode::InvalidProducerIdMapping; count]
    } else {
        expect(
            shard.group_call(&group, Request::TxnCommit(request)).await,
            |reply| match reply {
                Reply::TxnCommit(codes) if codes.len() == count => Some(codes),
                _ => None,
            },
            vec![ErrorCode::CoordinatorNotAvailable; count],
        )
    };
    let mut codes = codes.into_iter();
    let topics = r
        .topics
        .iter()
        .map(|t| {
            txn_offset_commit_response::TxnOffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            let code = codes.next().unwrap_or(ErrorCode::CoordinatorNotAvailable);
                            txn_offset_commit_response::TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(txn_commit_error(ctx.version, code).code())
                        })
                        .collect(),
                )
        })
        .collect();
    ctx.respond(&TxnOffsetCommitResponse::default().with_topics(topics))
}

async fn fetch_group(
    shard: &Rc<Shard>,
    group: String,
    topics: Option<Vec<rg::TopicPartitions>>,
    require_stable: bool,
) -> FetchOffsetsResponse {
    let request = FetchOffsetsRequest {
        group: group.clone(),
        topics,
        require_stable,
    };
    expect(
        shard
            .group_call(&group, Request::FetchOffsets(request))
            .await,
        |reply| match reply {
            Reply::FetchOffsets(r) => Some(r),
            _ => None,
        },
        FetchOffsetsResponse {
            error: ErrorCode::CoordinatorNotAvailable,
            offsets: Vec::new(),
        },
    )
}

/// Offsets grouped by topic, keeping first-seen order.
fn by_topic(offsets: Vec<FetchedOffset>) -> Vec<(String, Vec<FetchedOffset>)> {
    let mut out: Vec<(String, Vec<FetchedOffset>)> = Vec::new();
    for o in offsets {
        match out.iter_mut().find(|(name, _)| *name == o.topic) {
            Some((_, parts)) => parts.push(o),
            None => out.push((o.topic.clone(), vec![o])),
        }
    }
    out
}

/// OffsetFetch (one group before v8, several from v8).
pub async fn offset_fetch(
    shard: &Rc<Shard>,
    ctx: &Context,
    r: OffsetFetchRequest,
) -> Result<Response, DispatchError> {
    let epoch = |e: i32| if ctx.version >= 5 { e } else { -1 };
    // KIP-447: offsets pending in a transaction answer
    // UNSTABLE_OFFSET_COMMIT when the consumer asks for stable ones.
    let require_stable = ctx.version >= 7 && r.require_stable;
    if ctx.version >= 8 {
        let mut groups = Vec::with_capacity(r.groups.len());
        for g in &r.groups {
            let topics = g.topics.as_ref().map(|ts| {
                ts.iter()
                    .map(|t| rg::TopicPartitions {
                        topic: t.name.0.to_string(),
                        partitions: t.partition_indexes.clone(),
                    })
                    .collect()
            });
            let fetched = fetch_group(shard, group_id(&g.group_id), topics, require_stable).await;
            let topics = by_topic(fetched.offsets)
                .into_iter()
                .map(|(t, parts)| {
                    offset_fetch_response::OffsetFetchResponseTopics::default()
                        .with_name(topic_name(&t))
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|o| {
                                    offset_fetch_response::OffsetFetchResponsePartitions::default()
                                        .with_partition_index(o.partition)
                                        .with_committed_offset(o.offset)
                                        .with_committed_leader_epoch(o.leader_epoch)
                                        .with_metadata(o.metadata.as_deref().map(str_bytes))
                                        .with_error_code(o.error.code())
                                })
                                .collect(),
                        )
                })
                .collect();
            groups.push(
                offset_fetch_response::OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id.clone())
                    .with_topics(topics)
                    .with_error_code(fetched.error.code()),
            );
        }
        return ctx.respond(&OffsetFetchResponse::default().with_groups(groups));
    }
    let topics = r.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| rg::TopicPartitions {
                topic: t.name.0.to_string(),
                partitions: t.partition_indexes.clone(),
            })
            .collect()
    });
    let fetched = fetch_group(shard, group_id(&r.group_id), topics, require_stable).await;
    let code = fetched.error.code();
    let topics = by_topic(fetched.offsets)
        .into_iter()
        .map(|(t, parts)| {
            offset_fetch_response::OffsetFetchResponseTopic::default()
                .with_name(topic_name(&t))
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|o| {
                            offset_fetch_response::OffsetFetchResponsePartition::default()
                                .with_partition_index(o.partition)
                                .with_committed_offset(o.offset)
                                .with_committed_leader_epoch(epoch(o.leader_epoch))
                                .with_metadata(o.metadata.as_deref().map(str_bytes))
                                .with_error_code(match o.error {
                                    ErrorCode::None if ctx.version < 2 => code,
                                    error => error.code(),
                                })
                        })
                        .collect(),
                )
        })
        .collect();
    let mut response = OffsetFetchResponse::default().with_topics(topics);
    if ctx.version >= 2 {
        response = response.with_error_code(code);
    }
    ctx.respond(&response)
}

/// ListGroups: every shard's groups, filtered by state (v4) and type (v5).
pub async fn list_groups(
    shard: &Rc<Shard>,
    ctx: &Context,
    r: ListGroupsRequest,
) -> Result<Response, DispatchError> {
    let lower = |filter: &[StrBytes]| -> Vec<String> {
        filter.iter().map(|s| s.to_ascii_lowercase()).collect()
    };
    let states = lower(&r.states_filter);
    let types = lower(&r.types_filter);
    let listed = shard.list_all_groups().await;
    let groups = listed
        .groups
        .into_iter()
        .filter(|g| states.is_empty() || states.contains(&g.state.to_ascii_lowercase()))
        .filter(|g| types.is_empty() || types.contains(&g.group_type.to_ascii_lowercase()))
        .map(|g| {
            let mut listed = list_groups_response::ListedGroup::default()
                .with_group_id(GroupId(str_bytes(&g.group)))
                .with_protocol_type(str_bytes(&g.protocol_type));
            if ctx.version >= 4 {
                listed = listed.with_group_state(str_bytes(g.state));
            }
            if ctx.version >= 5 {
                listed = listed.with_group_type(str_bytes(g.group_type));
            }
            listed
        })
        .collect();
    ctx.respond(
        &ListGroupsResponse::default()
            .with_error_code(listed.error.code())
            .with_groups(groups),
    )
}

/// DescribeGroups.
pub async fn describe_groups(
    shard: &Rc<Shard>,
    ctx: &Context,
    r: DescribeGroupsRequest,
) -> Result<Response, DispatchError> {
    let mut groups = Vec::with_capacity(r.groups.len());
    for g in &r.groups {
        let name = group_id(g);
        let d = expect(
            shard
                .group_call(&name, Request::Describe(name.clone()))
                .await,
            |reply| match reply {
                Reply::Describe(d) => Some(d),
                _ => None,
            },
            GroupDescription {
                error: ErrorCode::CoordinatorNotAvailable,
                state: None,
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            },
        );
        // Before v6 an unknown group is described as Dead without an error.
        let error = if d.error == ErrorCode::GroupIdNotFound && ctx.version < 6 {
            ErrorCode::None
        } else {
            d.error
        };
        let members = d
            .members
            .into_iter()
            .map(|m| {
                let member = describe_groups_response::DescribedGroupMember::default()
                    .with_member_id(str_bytes(&m.member_id))
                    .with_client_id(str_bytes(&m.client_id))
                    .with_client_host(str_bytes(&m.client_host))
                    .with_member_metadata(m.metadata)
                    .with_member_assignment(m.assignment);
                if ctx.version >= 4 {
                    member.with_group_instance_id(m.instance_id.as_deref().map(str_bytes))
                } else {
                    member
                }
            })
            .collect();
        groups.push(
            describe_groups_response::DescribedGroup::default()
                .with_error_code(error.code())
                .with_group_id(g.clone())
                .with_group_state(str_bytes(d.state.map_or("", |s| s.name())))
                .with_protocol_type(str_bytes(&d.protocol_type))
                .with_protocol_data(str_bytes(&d.protocol))
                .with_members(members)
                .with_authorized_operations(authorized_operations_if(
                    // The field exists from v3 (KIP-430).
                    ctx.version >= 3 && r.include_authorized_operations,
                    ResourceType::Group,
                )),
        );
    }
    ctx.respond(&DescribeGroupsResponse::default().with_groups(groups))
}

/// DeleteGroups.
pub async fn delete_groups(
    shard: &Rc<Shard>,
    ctx: &Context,
    r: DeleteGroupsRequest,
) -> Result<Response, DispatchError> {
    let mut results = Vec::with_capacity(r.groups_names.len());
    for g in &r.groups_names {
        let name = group_id(g);
        let code = expect(
            shard.group_call(&name, Request::Delete(name.clone())).await,
            |reply| match reply {
                Reply::Delete(code) => Some(code),
                _ => None,
            },
            ErrorCode::CoordinatorNotAvailable,
        );
        results.push(
            delete_groups_response::DeletableGroupResult::default()
                .with_group_id(g.clone())
                .with_error_code(code.code()),
        );
    }
    ctx.respond(&DeleteGroupsResponse::default().with_results(results))
}

/// OffsetDelete.
pub async fn offset_delete(
    shard: &Rc<Shard>,
    ctx: &Context,
    r: OffsetDeleteRequest,
) -> Result<Response, DispatchError> {
    let group = group_id(&r.group_id);
    let partitions: Vec<(String, i32)> = r
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.0.to_string(), p.partition_index))
        })
        .collect();
    let request = rg::OffsetDeleteRequest {
        group: group.clone(),
        partitions,
    };
    let reply = expect(
        shard
            .group_call(&group, Request::OffsetDelete(request))
            .await,
        |reply| match reply {
            Reply::OffsetDelete(r) => Some(r),
            _ => None,
        },
        rg::OffsetDeleteResponse {
            error: ErrorCode::CoordinatorNotAvailable,
            partitions: Vec::new(),
        },
    );
    let mut codes = reply.partitions.into_iter();
    let topics = if reply.error != ErrorCode::None {
        Vec::new()
    } else {
        r.topics
            .iter()
            .map(|t| {
                offset_delete_response::OffsetDeleteResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                let code = codes.next().unwrap_or(ErrorCode::None);
                                offset_delete_response::OffsetDeleteResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(code.code())
                            })
                            .collect(),
                    )
            })
            .collect()
    };
    ctx.respond(
        &OffsetDeleteResponse::default()
            .with_error_code(reply.error.code())
            .with_topics(topics),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_txn_offset_commit_clients_never_see_load_in_progress() {
        for version in 0..=1 {
            assert_eq!(
                txn_commit_error(version, ErrorCode::CoordinatorLoadInProgress),
                ErrorCode::CoordinatorNotAvailable
            );
        }
        assert_eq!(
            txn_commit_error(2, ErrorCode::CoordinatorLoadInProgress),
            ErrorCode::CoordinatorLoadInProgress
        );
        assert_eq!(
            txn_commit_error(0, ErrorCode::NotCoordinator),
            ErrorCode::NotCoordinator
        );
    }

    #[test]
    fn txn_offset_commit_is_advertised_without_transaction_version_2() {
        use kafka_protocol::messages::ApiKey;
        assert_eq!(
            crate::dispatch::supported_range(ApiKey::TxnOffsetCommit),
            Some((0, 4))
        );
    }
}
