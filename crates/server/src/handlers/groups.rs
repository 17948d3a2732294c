//! The group APIs: decode, route each group to its coordinator shard,
//! encode. The coordinator itself is `crate::coordinator`.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::*;

use super::{str_bytes, topic_name};
use crate::coordinator::codes::{COORDINATOR_NOT_AVAILABLE, INVALID_GROUP_ID};
use crate::coordinator::{GroupCall, GroupReply, SyncArgs};
use crate::dispatch::{Context, DispatchError, Response};
use crate::shard::Shard;
use ringbroker_protocol::errors::ErrorCode;

fn group_id(g: &GroupId) -> String {
    g.0.to_string()
}

fn opt_string(s: &Option<kafka_protocol::protocol::StrBytes>) -> Option<String> {
    s.as_ref().map(|s| s.to_string())
}

/// FindCoordinator: this broker coordinates every group.
pub fn find_coordinator(
    shard: &Rc<Shard>,
    ctx: &Context,
    request: FindCoordinatorRequest,
) -> Result<Response, DispatchError> {
    let config = &shard.config;
    let answer = |key: &str| -> (i16, Option<&'static str>) {
        if request.key_type != 0 {
            (
                COORDINATOR_NOT_AVAILABLE,
                Some("only group coordinators are available"),
            )
        } else if key.is_empty() {
            (INVALID_GROUP_ID, Some("empty group id"))
        } else {
            (0, None)
        }
    };
    let mut response = FindCoordinatorResponse::default();
    if ctx.version >= 4 {
        response.coordinators = request
            .coordinator_keys
            .iter()
            .map(|key| {
                let (code, message) = answer(key.as_str());
                Coordinator::default()
                    .with_key(key.clone())
                    .with_node_id(BrokerId(if code == 0 { config.node_id } else { -1 }))
                    .with_host(str_bytes(if code == 0 {
                        &config.advertised_host
                    } else {
                        ""
                    }))
                    .with_port(if code == 0 {
                        i32::from(config.advertised_port)
                    } else {
                        -1
                    })
                    .with_error_code(code)
                    .with_error_message(message.map(str_bytes))
            })
            .collect();
    } else {
        let (code, message) = answer(request.key.as_str());
        response = response
            .with_error_code(code)
            .with_node_id(BrokerId(if code == 0 { config.node_id } else { -1 }))
            .with_host(str_bytes(if code == 0 {
                &config.advertised_host
            } else {
                ""
            }))
            .with_port(if code == 0 {
                i32::from(config.advertised_port)
            } else {
                -1
            });
        if ctx.version >= 1 {
            response = response.with_error_message(message.map(str_bytes));
        }
    }
    ctx.respond(&response)
}

async fn call(shard: &Rc<Shard>, group: &str, request: GroupCall) -> Option<GroupReply> {
    shard.group_call(group, request).await
}

/// JoinGroup.
pub async fn join_group(
    shard: &Rc<Shard>,
    ctx: &Context,
    r: JoinGroupRequest,
) -> Result<Response, DispatchError> {
    let group = group_id(&r.group_id);
    let request = GroupCall::Join(crate::coordinator::JoinArgs {
        version: ctx.version,
        group: group.clone(),
        member_id: r.member_id.to_string(),
        instance_id: opt_string(&r.group_instance_id),
        client_id: opt_string(&ctx.header.client_id).unwrap_or_default(),
        client_host: ctx.client_host.clone(),
        session_timeout_ms: r.session_timeout_ms,
        rebalance_timeout_ms: r.rebalance_timeout_ms,
        protocol_type: r.protocol_type.to_string(),
        protocols: r
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
    });
    let reply = match call(shard, &group, request).await {
        Some(GroupReply::Join(reply)) => reply,
        _ => crate::coordinator::JoinReply {
            error_code: COORDINATOR_NOT_AVAILABLE,
            generation: -1,
            member_id: r.member_id.to_string(),
            ..Default::default()
        },
    };
    let members = reply
        .members
        .into_iter()
        .map(|(id, instance, metadata)| {
            let m = join_group_response::JoinGroupResponseMember::default()
                .with_member_id(str_bytes(&id))
                .with_metadata(metadata);
            if ctx.version >= 5 {
                m.with_group_instance_id(instance.as_deref().map(str_bytes))
            } else {
                m
            }
        })
        .collect();
    let mut response = JoinGroupResponse::default()
        .with_error_code(reply.error_code)
        .with_generation_id(reply.generation)
        .with_protocol_name(Some(str_bytes(reply.protocol.as_deref().unwrap_or(""))))
        .with_leader(str_bytes(&reply.leader))
        .with_member_id(str_bytes(&reply.member_id))
        .with_members(members);
    if ctx.version >= 7 {
        response = response.with_protocol_type(reply.protocol_type.as_deref().map(str_bytes));
    }
    if ctx.version >= 7 && reply.protocol.is_none() {
        response = response.with_protocol_name(None);
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
    let request = GroupCall::Sync(SyncArgs {
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
    });
    let (code, assignment, protocol_type, protocol) = match call(shard, &group, request).await {
        Some(GroupReply::Sync(code, assignment, t, p)) => (code, assignment, t, p),
        _ => (COORDINATOR_NOT_AVAILABLE, Bytes::new(), None, None),
    };
    let mut response = SyncGroupResponse::default()
        .with_error_code(code)
        .with_assignment(assignment);
    if ctx.version >= 5 {
        response = response
            .with_protocol_type(protocol_type.as_deref().map(str_bytes))
            .with_protocol_name(protocol.as_deref().map(str_bytes));
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
    let request = GroupCall::Heartbeat {
        group: group.clone(),
        generation: r.generation_id,
        member_id: r.member_id.to_string(),
        instance_id: opt_string(&r.group_instance_id),
    };
    let code = match call(shard, &group, request).await {
        Some(GroupReply::Code(code)) => code,
        _ => COORDINATOR_NOT_AVAILABLE,
    };
    ctx.respond(&HeartbeatResponse::default().with_error_code(code))
}

/// LeaveGroup (one member before v3, a batch from v3).
pub async fn leave_group(
    shard: &Rc<Shard>,
    ctx: &Context,
    r: LeaveGroupRequest,
) -> Result<Response, DispatchError> {
    let group = group_id(&r.group_id);
    let members: Vec<(String, Option<String>)> = if ctx.version >= 3 {
        r.members
            .iter()
            .map(|m| (m.member_id.to_string(), opt_string(&m.group_instance_id)))
            .collect()
    } else {
        vec![(r.member_id.to_string(), None)]
    };
    let count = members.len();
    let (top, codes) = match call(
        shard,
        &group,
        GroupCall::Leave {
            group: group.clone(),
            members: members.clone(),
        },
    )
    .await
    {
        Some(GroupReply::Leave(top, codes)) => (top, codes),
        _ => (
            COORDINATOR_NOT_AVAILABLE,
            vec![COORDINATOR_NOT_AVAILABLE; count],
        ),
    };
    let mut response = LeaveGroupResponse::default().with_error_code(top);
    if ctx.version >= 3 {
        response = response.with_error_code(0).with_members(
            members
                .iter()
                .zip(codes)
                .map(|((id, instance), code)| {
                    leave_group_response::MemberResponse::default()
                        .with_member_id(str_bytes(id))
                        .with_group_instance_id(instance.as_deref().map(str_bytes))
                        .with_error_code(code)
                })
                .collect(),
        );
    }
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
            let known =
                meta.is_some_and(|m| p.partition_index >= 0 && p.partition_index < m.partitions);
            offsets.push((
                name.clone(),
                p.partition_index,
                p.committed_offset,
                if ctx.version >= 6 {
                    p.committed_leader_epoch
                } else {
                    -1
                },
                opt_string(&p.committed_metadata),
                if known {
                    0
                } else {
                    ErrorCode::UnknownTopicOrPartition.code()
                },
            ));
        }
    }
    let count = offsets.len();
    let codes = if group.is_empty() {
        vec![INVALID_GROUP_ID; count]
    } else {
        let request = GroupCall::Commit {
            group: group.clone(),
            generation: r.generation_id_or_member_epoch,
            member_id: r.member_id.to_string(),
            instance_id: opt_string(&r.group_instance_id),
            offsets,
        };
        match call(shard, &group, request).await {
            Some(GroupReply::Commit(codes)) => codes,
            _ => vec![COORDINATOR_NOT_AVAILABLE; count],
        }
    };
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
                            offset_commit_response::OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(codes.next().unwrap_or(COORDINATOR_NOT_AVAILABLE))
                        })
                        .collect(),
                )
        })
        .collect();
    ctx.respond(&OffsetCommitResponse::default().with_topics(topics))
}

type FetchRows = Vec<(String, i32, i64, i32, Option<String>)>;

async fn fetch_group(
    shard: &Rc<Shard>,
    group: String,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> (i16, FetchRows) {
    if group.is_empty() {
        return (INVALID_GROUP_ID, Vec::new());
    }
    match call(
        shard,
        &group,
        GroupCall::Fetch {
            group: group.clone(),
            topics,
        },
    )
    .await
    {
        Some(GroupReply::Fetch(code, rows)) => (code, rows),
        _ => (COORDINATOR_NOT_AVAILABLE, Vec::new()),
    }
}

/// (partition, offset, leader epoch, metadata) rows of each topic.
type TopicRows = Vec<(String, Vec<(i32, i64, i32, Option<String>)>)>;

/// Groups rows by topic, keeping first-seen order.
fn by_topic(rows: FetchRows) -> TopicRows {
    let mut out: TopicRows = Vec::new();
    for (t, p, o, e, m) in rows {
        match out.iter_mut().find(|(name, _)| *name == t) {
            Some((_, parts)) => parts.push((p, o, e, m)),
            None => out.push((t, vec![(p, o, e, m)])),
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
    if ctx.version >= 8 {
        let mut groups = Vec::with_capacity(r.groups.len());
        for g in &r.groups {
            let topics = g.topics.as_ref().map(|ts| {
                ts.iter()
                    .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                    .collect()
            });
            let (code, rows) = fetch_group(shard, group_id(&g.group_id), topics).await;
            let topics = by_topic(rows)
                .into_iter()
                .map(|(t, parts)| {
                    offset_fetch_response::OffsetFetchResponseTopics::default()
                        .with_name(topic_name(&t))
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|(p, o, e, m)| {
                                    offset_fetch_response::OffsetFetchResponsePartitions::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(o)
                                        .with_committed_leader_epoch(e)
                                        .with_metadata(m.as_deref().map(str_bytes))
                                })
                                .collect(),
                        )
                })
                .collect();
            groups.push(
                offset_fetch_response::OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id.clone())
                    .with_topics(topics)
                    .with_error_code(code),
            );
        }
        return ctx.respond(&OffsetFetchResponse::default().with_groups(groups));
    }
    let topics = r.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    let (code, rows) = fetch_group(shard, group_id(&r.group_id), topics).await;
    let topics = by_topic(rows)
        .into_iter()
        .map(|(t, parts)| {
            offset_fetch_response::OffsetFetchResponseTopic::default()
                .with_name(topic_name(&t))
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|(p, o, e, m)| {
                            offset_fetch_response::OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(o)
                                .with_committed_leader_epoch(epoch(e))
                                .with_metadata(m.as_deref().map(str_bytes))
                                .with_error_code(if ctx.version < 2 && code != 0 {
                                    code
                                } else {
                                    0
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

/// ListGroups: every shard's groups, filtered by state (v4).
pub async fn list_groups(
    shard: &Rc<Shard>,
    ctx: &Context,
    r: ListGroupsRequest,
) -> Result<Response, DispatchError> {
    let states: Vec<String> = r
        .states_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let all = shard.list_all_groups().await;
    let groups = all
        .into_iter()
        .filter(|(_, _, state)| states.is_empty() || states.contains(&state.to_ascii_lowercase()))
        .map(|(id, protocol_type, state)| {
            let g = list_groups_response::ListedGroup::default()
                .with_group_id(GroupId(str_bytes(&id)))
                .with_protocol_type(str_bytes(&protocol_type));
            if ctx.version >= 4 {
                g.with_group_state(str_bytes(&state))
            } else {
                g
            }
        })
        .collect();
    ctx.respond(&ListGroupsResponse::default().with_groups(groups))
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
        let d = if name.is_empty() {
            crate::coordinator::GroupDescription {
                error_code: INVALID_GROUP_ID,
                state: "Dead".into(),
                ..Default::default()
            }
        } else {
            match call(shard, &name, GroupCall::Describe(name.clone())).await {
                Some(GroupReply::Describe(d)) => d,
                _ => crate::coordinator::GroupDescription {
                    error_code: COORDINATOR_NOT_AVAILABLE,
                    ..Default::default()
                },
            }
        };
        // Before v6 an unknown group is described as Dead without an error.
        let error_code =
            if d.error_code == crate::coordinator::codes::GROUP_ID_NOT_FOUND && ctx.version < 6 {
                0
            } else {
                d.error_code
            };
        let members = d
            .members
            .into_iter()
            .map(|(id, instance, client_id, host, metadata, assignment)| {
                let m = describe_groups_response::DescribedGroupMember::default()
                    .with_member_id(str_bytes(&id))
                    .with_client_id(str_bytes(&client_id))
                    .with_client_host(str_bytes(&host))
                    .with_member_metadata(metadata)
                    .with_member_assignment(assignment);
                if ctx.version >= 4 {
                    m.with_group_instance_id(instance.as_deref().map(str_bytes))
                } else {
                    m
                }
            })
            .collect();
        groups.push(
            describe_groups_response::DescribedGroup::default()
                .with_error_code(error_code)
                .with_group_id(g.clone())
                .with_group_state(str_bytes(&d.state))
                .with_protocol_type(str_bytes(&d.protocol_type))
                .with_protocol_data(str_bytes(&d.protocol))
                .with_members(members),
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
        let code = if name.is_empty() {
            INVALID_GROUP_ID
        } else {
            match call(shard, &name, GroupCall::Delete(name.clone())).await {
                Some(GroupReply::Code(code)) => code,
                _ => COORDINATOR_NOT_AVAILABLE,
            }
        };
        results.push(
            delete_groups_response::DeletableGroupResult::default()
                .with_group_id(g.clone())
                .with_error_code(code),
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
    let (top, codes) = if group.is_empty() {
        (INVALID_GROUP_ID, Vec::new())
    } else {
        match call(
            shard,
            &group,
            GroupCall::OffsetDelete {
                group: group.clone(),
                partitions,
            },
        )
        .await
        {
            Some(GroupReply::OffsetDelete(top, codes)) => (top, codes),
            _ => (COORDINATOR_NOT_AVAILABLE, Vec::new()),
        }
    };
    let mut codes = codes.into_iter();
    let topics = if top != 0 {
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
                                offset_delete_response::OffsetDeleteResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(codes.next().unwrap_or(0))
                            })
                            .collect(),
                    )
            })
            .collect()
    };
    ctx.respond(
        &OffsetDeleteResponse::default()
            .with_error_code(top)
            .with_topics(topics),
    )
}
