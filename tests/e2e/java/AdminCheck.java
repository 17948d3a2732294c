import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.ElectionType;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionReplica;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.quota.ClientQuotaFilter;

/**
 * The Java Admin client against a broker: one sub-command per check, each
 * printing lines the e2e tests parse; "survey" tries every Admin call and
 * prints OK or the error it got.
 */
public class AdminCheck {
    static final long TIMEOUT_S = 40;

    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", args[0]);
        boolean survey = args[1].equals("survey");
        // The survey meets calls whose coordinator lookups never succeed:
        // shorter timeouts keep it quick.
        props.put("request.timeout.ms", survey ? "4000" : "15000");
        props.put("default.api.timeout.ms", survey ? "8000" : "30000");
        try (Admin admin = Admin.create(props)) {
            if (args[1].equals("script")) {
                // Several commands in one JVM, in order: "cmd a b;cmd c".
                for (String command : args[2].split(";")) {
                    String[] words = command.trim().split("\\s+");
                    String[] full = new String[words.length + 1];
                    full[0] = args[0];
                    System.arraycopy(words, 0, full, 1, words.length);
                    run(admin, full);
                }
            } else {
                run(admin, args);
            }
        }
    }

    static void run(Admin admin, String[] args) throws Exception {
        switch (args[1]) {
            case "features": features(admin); break;
            case "cluster-ops": clusterOps(admin, args[2]); break;
            case "set-broker": setBroker(admin, args[2], args[3], args[4]); break;
            case "delete-broker": deleteBroker(admin, args[2], args[3]); break;
            case "describe-broker": describeBroker(admin, args[2], args.length > 3 ? args[3] : null); break;
            case "group-configs": groupConfigs(admin, args[2], args[3], args[4]); break;
            case "log-dirs": logDirs(admin, args[2]); break;
            case "producers": producers(admin, args[2], Integer.parseInt(args[3])); break;
            case "max-timestamp": maxTimestamp(admin, args[2]); break;
            case "delete-records": deleteRecords(admin, args[2], Integer.parseInt(args[3]), Long.parseLong(args[4])); break;
            case "reassign": reassign(admin, args[2], Integer.parseInt(args[3]), args[4]); break;
            case "reassignments": reassignments(admin); break;
            case "elect": elect(admin, args[2], args[3], Integer.parseInt(args[4])); break;
            case "survey": survey(admin, args[2]); break;
            default: throw new IllegalArgumentException(args[1]);
        }
    }

    static String error(Throwable t) {
        Throwable cause = t instanceof ExecutionException && t.getCause() != null ? t.getCause() : t;
        String message = cause.getMessage() == null ? "" : cause.getMessage().replace('\n', ' ');
        return cause.getClass().getSimpleName() + ": " + message;
    }

    static void features(Admin admin) throws Exception {
        FeatureMetadata f = admin.describeFeatures().featureMetadata().get(TIMEOUT_S, TimeUnit.SECONDS);
        f.supportedFeatures().forEach((name, range) ->
            System.out.println("SUPPORTED " + name + " " + range.minVersion() + " " + range.maxVersion()));
        f.finalizedFeatures().forEach((name, range) ->
            System.out.println("FINALIZED " + name + " " + range.minVersionLevel() + " " + range.maxVersionLevel()));
        System.out.println("EPOCH " + f.finalizedFeaturesEpoch().map(String::valueOf).orElse("none"));
    }

    static void clusterOps(Admin admin, String topic) throws Exception {
        DescribeClusterResult c = admin.describeCluster(new DescribeClusterOptions().includeAuthorizedOperations(true));
        List<String> ops = new ArrayList<>();
        c.authorizedOperations().get(TIMEOUT_S, TimeUnit.SECONDS).forEach(op -> ops.add(op.name()));
        Collections.sort(ops);
        System.out.println("CLUSTER " + String.join(",", ops));
        TopicDescription t = admin.describeTopics(List.of(topic), new DescribeTopicsOptions().includeAuthorizedOperations(true))
            .allTopicNames().get(TIMEOUT_S, TimeUnit.SECONDS).get(topic);
        List<String> topicOps = new ArrayList<>();
        t.authorizedOperations().forEach(op -> topicOps.add(op.name()));
        Collections.sort(topicOps);
        System.out.println("TOPIC " + String.join(",", topicOps));
    }

    static void setBroker(Admin admin, String broker, String key, String value) throws Exception {
        ConfigResource r = new ConfigResource(ConfigResource.Type.BROKER, broker);
        try {
            admin.incrementalAlterConfigs(Map.of(r, List.of(new AlterConfigOp(new ConfigEntry(key, value), AlterConfigOp.OpType.SET))))
                .all().get(TIMEOUT_S, TimeUnit.SECONDS);
            System.out.println("SET OK");
        } catch (ExecutionException e) {
            System.out.println("SET ERROR " + error(e));
        }
    }

    static void deleteBroker(Admin admin, String broker, String key) throws Exception {
        ConfigResource r = new ConfigResource(ConfigResource.Type.BROKER, broker);
        admin.incrementalAlterConfigs(Map.of(r, List.of(new AlterConfigOp(new ConfigEntry(key, null), AlterConfigOp.OpType.DELETE))))
            .all().get(TIMEOUT_S, TimeUnit.SECONDS);
        System.out.println("DELETE OK");
    }

    static void describeBroker(Admin admin, String broker, String key) throws Exception {
        ConfigResource r = new ConfigResource(ConfigResource.Type.BROKER, broker);
        Config config = admin.describeConfigs(List.of(r), new DescribeConfigsOptions().includeSynonyms(true))
            .all().get(TIMEOUT_S, TimeUnit.SECONDS).get(r);
        for (ConfigEntry e : config.entries()) {
            if (key != null && !e.name().equals(key)) continue;
            StringBuilder synonyms = new StringBuilder();
            for (ConfigEntry.ConfigSynonym s : e.synonyms()) {
                synonyms.append(" ").append(s.name()).append("=").append(s.value()).append("@").append(s.source());
            }
            System.out.println("CONFIG " + e.name() + " " + e.value() + " " + e.source() + " readOnly=" + e.isReadOnly() + synonyms);
        }
    }

    static void groupConfigs(Admin admin, String group, String key, String value) throws Exception {
        ConfigResource r = new ConfigResource(ConfigResource.Type.GROUP, group);
        try {
            admin.incrementalAlterConfigs(Map.of(r, List.of(new AlterConfigOp(new ConfigEntry(key, value), AlterConfigOp.OpType.SET))))
                .all().get(TIMEOUT_S, TimeUnit.SECONDS);
            System.out.println("SET OK");
        } catch (ExecutionException e) {
            System.out.println("SET ERROR " + error(e));
        }
        Config config = admin.describeConfigs(List.of(r)).all().get(TIMEOUT_S, TimeUnit.SECONDS).get(r);
        for (ConfigEntry e : config.entries()) {
            System.out.println("CONFIG " + e.name() + " " + e.value() + " " + e.source());
        }
    }

    static void logDirs(Admin admin, String broker) throws Exception {
        Map<Integer, Map<String, LogDirDescription>> all = admin.describeLogDirs(List.of(Integer.parseInt(broker)))
            .allDescriptions().get(TIMEOUT_S, TimeUnit.SECONDS);
        for (Map.Entry<Integer, Map<String, LogDirDescription>> b : all.entrySet()) {
            for (Map.Entry<String, LogDirDescription> d : b.getValue().entrySet()) {
                LogDirDescription dir = d.getValue();
                System.out.println("DIR " + d.getKey() + " total=" + dir.totalBytes().orElse(-1) + " usable=" + dir.usableBytes().orElse(-1)
                    + " error=" + (dir.error() == null ? "none" : dir.error().getClass().getSimpleName()));
                dir.replicaInfos().forEach((tp, info) ->
                    System.out.println("REPLICA " + tp.topic() + " " + tp.partition() + " " + info.size() + " " + info.offsetLag() + " " + info.isFuture()));
            }
        }
    }

    static void producers(Admin admin, String topic, int partitions) throws Exception {
        List<TopicPartition> parts = new ArrayList<>();
        for (int p = 0; p < partitions; p++) parts.add(new TopicPartition(topic, p));
        Map<TopicPartition, DescribeProducersResult.PartitionProducerState> all =
            admin.describeProducers(parts).all().get(TIMEOUT_S, TimeUnit.SECONDS);
        all.forEach((tp, state) -> state.activeProducers().forEach(p ->
            System.out.println("PRODUCER " + tp.partition() + " " + p.producerId() + " " + p.producerEpoch() + " " + p.lastSequence()
                + " " + p.lastTimestamp() + " " + p.coordinatorEpoch().orElse(-1) + " " + p.currentTransactionStartOffset().orElse(-1))));
        System.out.println("PARTITIONS " + all.size());
    }

    static void maxTimestamp(Admin admin, String topic) throws Exception {
        TopicPartition tp = new TopicPartition(topic, 0);
        ListOffsetsResult.ListOffsetsResultInfo info = admin.listOffsets(Map.of(tp, OffsetSpec.maxTimestamp()))
            .partitionResult(tp).get(TIMEOUT_S, TimeUnit.SECONDS);
        System.out.println("MAXTS " + info.offset() + " " + info.timestamp());
    }

    static void deleteRecords(Admin admin, String topic, int partition, long offset) {
        TopicPartition tp = new TopicPartition(topic, partition);
        try {
            DeletedRecords deleted = admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(offset)))
                .lowWatermarks().get(tp).get(TIMEOUT_S, TimeUnit.SECONDS);
            System.out.println("LOW " + deleted.lowWatermark());
        } catch (Exception e) {
            System.out.println("ERROR " + error(e));
        }
    }

    /** Moves a partition to the comma-separated brokers, or "cancel". */
    static void reassign(Admin admin, String topic, int partition, String target) {
        TopicPartition tp = new TopicPartition(topic, partition);
        Optional<NewPartitionReassignment> move = target.equals("cancel") ? Optional.empty()
            : Optional.of(new NewPartitionReassignment(
                java.util.Arrays.stream(target.split(",")).map(Integer::valueOf).collect(java.util.stream.Collectors.toList())));
        try {
            admin.alterPartitionReassignments(Map.of(tp, move)).values().get(tp).get(TIMEOUT_S, TimeUnit.SECONDS);
            System.out.println("REASSIGN OK");
        } catch (Exception e) {
            System.out.println("REASSIGN ERROR " + error(e));
        }
    }

    /** Every running reassignment: topic-partition replicas adding removing. */
    static void reassignments(Admin admin) throws Exception {
        Map<TopicPartition, PartitionReassignment> running = get(admin.listPartitionReassignments().reassignments());
        for (Map.Entry<TopicPartition, PartitionReassignment> e : running.entrySet()) {
            PartitionReassignment r = e.getValue();
            System.out.println("RUNNING " + e.getKey() + " " + r.replicas() + " " + r.addingReplicas() + " " + r.removingReplicas());
        }
        System.out.println("LISTED " + running.size());
    }

    /** A preferred or unclean election of one partition. */
    static void elect(Admin admin, String type, String topic, int partition) {
        TopicPartition tp = new TopicPartition(topic, partition);
        ElectionType election = type.equals("unclean") ? ElectionType.UNCLEAN : ElectionType.PREFERRED;
        try {
            Optional<Throwable> failure = get(admin.electLeaders(election, Set.of(tp)).partitions()).get(tp);
            System.out.println(failure.isPresent() ? "ELECT ERROR " + error(failure.get()) : "ELECT OK");
        } catch (Exception e) {
            System.out.println("ELECT ERROR " + error(e));
        }
    }

    interface Call { Object run() throws Exception; }

    static void attempt(String name, Call call) {
        try {
            Object result = call.run();
            System.out.println("SURVEY " + name + " OK" + (result == null ? "" : " " + String.valueOf(result).replace('\n', ' ')));
        } catch (Throwable t) {
            System.out.println("SURVEY " + name + " ERROR " + error(t));
        }
    }

    static <T> T get(org.apache.kafka.common.KafkaFuture<T> f) throws Exception {
        return f.get(TIMEOUT_S, TimeUnit.SECONDS);
    }

    /** Tries every Admin call once against topic `topic` (which exists, 1 partition). */
    static void survey(Admin admin, String topic) {
        TopicPartition tp = new TopicPartition(topic, 0);
        ConfigResource topicResource = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        attempt("createTopics", () -> { get(admin.createTopics(List.of(new NewTopic(topic + "-new", 1, (short) 1))).all()); return null; });
        attempt("listTopics", () -> get(admin.listTopics().names()).size());
        attempt("describeTopics", () -> get(admin.describeTopics(List.of(topic)).allTopicNames()).size());
        attempt("describeCluster", () -> get(admin.describeCluster().clusterId()));
        attempt("describeConfigs", () -> get(admin.describeConfigs(List.of(topicResource)).all()).get(topicResource).entries().size());
        attempt("incrementalAlterConfigs", () -> { get(admin.incrementalAlterConfigs(Map.of(topicResource,
            List.of(new AlterConfigOp(new ConfigEntry("retention.ms", "86400000"), AlterConfigOp.OpType.SET)))).all()); return null; });
        attempt("createPartitions", () -> { get(admin.createPartitions(Map.of(topic + "-new", NewPartitions.increaseTo(2))).all()); return null; });
        attempt("deleteTopics", () -> { get(admin.deleteTopics(List.of(topic + "-new")).all()); return null; });
        attempt("listOffsets", () -> get(admin.listOffsets(Map.of(tp, OffsetSpec.latest())).partitionResult(tp)).offset());
        attempt("deleteRecords", () -> get(admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(0))).all()));
        attempt("describeLogDirs", () -> get(admin.describeLogDirs(List.of(0)).allDescriptions()).size());
        attempt("describeReplicaLogDirs", () -> get(admin.describeReplicaLogDirs(List.of(new TopicPartitionReplica(topic, 0, 0))).all()).size());
        attempt("alterReplicaLogDirs", () -> { get(admin.alterReplicaLogDirs(Map.of(new TopicPartitionReplica(topic, 0, 0), "/tmp/x")).all()); return null; });
        attempt("describeAcls", () -> get(admin.describeAcls(AclBindingFilter.ANY).values()).size());
        attempt("createAcls", () -> { get(admin.createAcls(List.of(new org.apache.kafka.common.acl.AclBinding(
            new org.apache.kafka.common.resource.ResourcePattern(org.apache.kafka.common.resource.ResourceType.TOPIC, topic,
                org.apache.kafka.common.resource.PatternType.LITERAL),
            new org.apache.kafka.common.acl.AccessControlEntry("User:alice", "*",
                org.apache.kafka.common.acl.AclOperation.READ, org.apache.kafka.common.acl.AclPermissionType.ALLOW)))).all()); return null; });
        attempt("deleteAcls", () -> get(admin.deleteAcls(List.of(AclBindingFilter.ANY)).all()).size());
        attempt("createDelegationToken", () -> get(admin.createDelegationToken().delegationToken()));
        attempt("describeDelegationToken", () -> get(admin.describeDelegationToken().delegationTokens()).size());
        attempt("listConsumerGroups", () -> get(admin.listConsumerGroups().all()).size());
        attempt("listGroups", () -> get(admin.listGroups().all()).size());
        attempt("alterConsumerGroupOffsets", () -> { get(admin.alterConsumerGroupOffsets("survey-group", Map.of(tp, new OffsetAndMetadata(0))).all()); return null; });
        attempt("listConsumerGroupOffsets", () -> get(admin.listConsumerGroupOffsets("survey-group").partitionsToOffsetAndMetadata()).size());
        attempt("describeConsumerGroups", () -> get(admin.describeConsumerGroups(List.of("survey-group")).all()).size());
        attempt("describeClassicGroups", () -> get(admin.describeClassicGroups(List.of("survey-group")).all()).size());
        attempt("deleteConsumerGroupOffsets", () -> { get(admin.deleteConsumerGroupOffsets("survey-group", Set.of(tp)).all()); return null; });
        attempt("removeMembersFromConsumerGroup", () -> { get(admin.removeMembersFromConsumerGroup("survey-group",
            new RemoveMembersFromConsumerGroupOptions(List.of(new MemberToRemove("nobody")))).all()); return null; });
        attempt("deleteConsumerGroups", () -> {
            get(admin.alterConsumerGroupOffsets("survey-group-2", Map.of(tp, new OffsetAndMetadata(0))).all());
            get(admin.deleteConsumerGroups(List.of("survey-group-2")).all()); return null; });
        attempt("electLeaders", () -> get(admin.electLeaders(ElectionType.PREFERRED, Set.of(tp)).partitions()).size());
        attempt("alterPartitionReassignments", () -> { get(admin.alterPartitionReassignments(Map.of(tp, Optional.empty())).all()); return null; });
        attempt("listPartitionReassignments", () -> get(admin.listPartitionReassignments().reassignments()).size());
        attempt("describeClientQuotas", () -> get(admin.describeClientQuotas(ClientQuotaFilter.all()).entities()).size());
        attempt("alterClientQuotas", () -> { get(admin.alterClientQuotas(List.of(new org.apache.kafka.common.quota.ClientQuotaAlteration(
            new org.apache.kafka.common.quota.ClientQuotaEntity(Map.of("client-id", "survey")),
            List.of(new org.apache.kafka.common.quota.ClientQuotaAlteration.Op("producer_byte_rate", 1024.0))))).all()); return null; });
        attempt("describeUserScramCredentials", () -> get(admin.describeUserScramCredentials().all()).size());
        attempt("alterUserScramCredentials", () -> { get(admin.alterUserScramCredentials(List.of(
            new UserScramCredentialDeletion("alice", ScramMechanism.SCRAM_SHA_256))).all()); return null; });
        attempt("describeMetadataQuorum", () -> get(admin.describeMetadataQuorum().quorumInfo()).leaderId());
        attempt("describeFeatures", () -> get(admin.describeFeatures().featureMetadata()).finalizedFeatures().keySet());
        attempt("updateFeatures", () -> { get(admin.updateFeatures(Map.of("metadata.version",
            new FeatureUpdate((short) 7, FeatureUpdate.UpgradeType.UPGRADE)), new UpdateFeaturesOptions().validateOnly(true)).all()); return null; });
        attempt("unregisterBroker", () -> { get(admin.unregisterBroker(5).all()); return null; });
        attempt("describeProducers", () -> get(admin.describeProducers(List.of(tp)).all()).size());
        attempt("describeTransactions", () -> get(admin.describeTransactions(List.of("tx")).all()).size());
        attempt("abortTransaction", () -> { get(admin.abortTransaction(new AbortTransactionSpec(tp, 1L, (short) 0, 0)).all()); return null; });
        attempt("listTransactions", () -> get(admin.listTransactions().all()).size());
        attempt("fenceProducers", () -> { get(admin.fenceProducers(List.of("tx")).all()); return null; });
        attempt("listConfigResources", () -> get(admin.listConfigResources().all()).size());
        attempt("listClientMetricsResources", () -> get(admin.listClientMetricsResources().all()).size());
        attempt("describeShareGroups", () -> get(admin.describeShareGroups(List.of("share")).all()).size());
        attempt("describeStreamsGroups", () -> get(admin.describeStreamsGroups(List.of("streams")).all()).size());
        attempt("clientInstanceId", () -> admin.clientInstanceId(java.time.Duration.ofSeconds(5)));
    }
}
