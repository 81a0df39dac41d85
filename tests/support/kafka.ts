// Small KafkaJS helpers for tests: unique names, topics, end and committed offsets.
import { randomBytes } from "node:crypto";
import { type Admin, Kafka, logLevel } from "kafkajs";

export function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(3).toString("hex")}`;
}

export function kafkaClient(brokers: string, clientId = "tests"): Kafka {
  return new Kafka({ clientId, brokers: brokers.split(","), logLevel: logLevel.NOTHING });
}

export async function withAdmin<T>(brokers: string, use: (admin: Admin) => Promise<T>): Promise<T> {
  const admin = kafkaClient(brokers, "tests-admin").admin();
  await admin.connect();
  try {
    return await use(admin);
  } finally {
    await admin.disconnect();
  }
}

export type OffsetsByPartition = Record<number, string>;

/** The next offset to be written in each partition (the high watermark). */
export async function endOffsets(brokers: string, topic: string): Promise<OffsetsByPartition> {
  return await withAdmin(brokers, async (admin) => {
    const offsets = await admin.fetchTopicOffsets(topic);
    return Object.fromEntries(offsets.map((p) => [p.partition, p.high]));
  });
}

/** The group's committed offsets for the topic ("-1" where nothing was committed). */
export async function committedOffsets(
  brokers: string,
  groupId: string,
  topic: string,
): Promise<OffsetsByPartition> {
  return await withAdmin(brokers, async (admin) => {
    const [found] = await admin.fetchOffsets({ groupId, topics: [topic] });
    return Object.fromEntries((found?.partitions ?? []).map((p) => [p.partition, p.offset]));
  });
}

export async function createTopic(brokers: string, topic: string, numPartitions = 1) {
  await withAdmin(brokers, async (admin) => {
    await admin.createTopics({ topics: [{ topic, numPartitions }], waitForLeaders: true });
  });
}
