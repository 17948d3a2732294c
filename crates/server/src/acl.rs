//! Authorized operations (KIP-430): the bitfield Metadata, DescribeCluster
//! and DescribeGroups return when a client asks for
//! `include_*_authorized_operations`.
//!
//! ringbroker has no authorizer, so, as Kafka without an authorizer, every
//! operation a resource type supports is allowed. The bit of an operation is
//! `1 << code` with Kafka's `AclOperation` codes; a response field that was
//! not asked for holds `i32::MIN` (Kafka's "not requested").

/// Kafka's `AclOperation` codes (the concrete ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum AclOperation {
    /// Read records or offsets.
    Read = 3,
    /// Write records.
    Write = 4,
    /// Create topics.
    Create = 5,
    /// Delete topics, groups, records.
    Delete = 6,
    /// Alter partitions and replicas.
    Alter = 7,
    /// Describe metadata.
    Describe = 8,
    /// Inter-broker actions.
    ClusterAction = 9,
    /// Describe configs.
    DescribeConfigs = 10,
    /// Alter configs.
    AlterConfigs = 11,
    /// Idempotent produce.
    IdempotentWrite = 12,
}

/// The resource types that report authorized operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceType {
    /// A topic (Metadata).
    Topic,
    /// The cluster (Metadata v8-10, DescribeCluster).
    Cluster,
    /// A consumer group (DescribeGroups).
    Group,
}

/// The operations Kafka defines for a resource type (its
/// `AclEntry.supportedOperations`).
pub fn supported_operations(resource: ResourceType) -> &'static [AclOperation] {
    use AclOperation::*;
    match resource {
        ResourceType::Topic => &[
            Read,
            Write,
            Create,
            Describe,
            Delete,
            Alter,
            DescribeConfigs,
            AlterConfigs,
        ],
        ResourceType::Cluster => &[
            Create,
            ClusterAction,
            DescribeConfigs,
            AlterConfigs,
            IdempotentWrite,
            Alter,
            Describe,
        ],
        ResourceType::Group => &[Read, Describe, Delete, DescribeConfigs, AlterConfigs],
    }
}

/// The bitfield of operations the client may perform on a resource of this
/// type: all supported ones, since ringbroker has no authorizer.
pub fn authorized_operations(resource: ResourceType) -> i32 {
    supported_operations(resource)
        .iter()
        .fold(0i32, |bits, op| bits | (1i32 << (*op as u8)))
}

/// The value of an `*_authorized_operations` response field: the bitfield
/// when the client asked for it, Kafka's `i32::MIN` otherwise.
pub fn authorized_operations_if(requested: bool, resource: ResourceType) -> i32 {
    if requested {
        authorized_operations(resource)
    } else {
        i32::MIN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values a Kafka broker without an authorizer returns.
    #[test]
    fn bitfields_match_kafka() {
        assert_eq!(authorized_operations(ResourceType::Topic), 3576);
        assert_eq!(authorized_operations(ResourceType::Cluster), 8096);
        assert_eq!(authorized_operations(ResourceType::Group), 3400);
        assert_eq!(
            authorized_operations_if(false, ResourceType::Topic),
            i32::MIN
        );
        for resource in [
            ResourceType::Topic,
            ResourceType::Cluster,
            ResourceType::Group,
        ] {
            let bits = authorized_operations(resource);
            // UNKNOWN (0), ANY (1) and ALL (2) are never reported.
            assert_eq!(bits & 0b111, 0);
            assert_eq!(
                bits.count_ones() as usize,
                supported_operations(resource).len()
            );
        }
    }
}
