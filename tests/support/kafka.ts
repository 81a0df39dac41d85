// Small KafkaJS helpers for tests: unique names, topics, end and committed offsets, and
// reading a whole topic back (a dead-letter topic, with its headers), and the broker's
// word that a consumer group has caught up.
import { randomBytes } from "node:crypto";
import { type Admin, Kafka, type KafkaConfig, logLevel } from "kafkajs";
import { hideTimeoutNegativeWarning } from "../../scripts/quiet-kafkajs.ts";
import type { StopCondition } from "./child.ts";

export function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(3).toString("hex")}`;
}

/**
 * Where the tests' own clients connect: a plain-text address list, or KafkaJS's options
 * for a secured listener (brokers, ssl, sasl: see support/secured.ts).
 */
export type KafkaTarget = string | Pick<KafkaConfig, "brokers" | "ssl" | "sasl">;

export function kafkaClient(brokers: KafkaTarget, clientId = "tests"): Kafka {
  hideTimeoutNegativeWarning();
  const options = typeof brokers === "string" ? { brokers: brokers.split(",") } : brokers;
  return new Kafka({ clientId, ...options, logLevel: logLevel.NOTHING });
}

export async function withAdmin<T>(
  brokers: KafkaTarget,
  use: (admin: Admin) => Promise<T>,
): Promise<T> {
  const admin = kafkaClient(brokers, "tests-admin").admin();
  await admin.connect();
  try {
    return await use(admin);
  } finally {
    await admin.disconnect();
  }
}

/**
 * Met once the group's committed offset reaches the end of every partition of `topic`:
 * a consumer has caught up, on the broker's word. Holds one admin client until closed.
 */
export function committedToEnd(
  brokers: KafkaTarget,
  groupId: string,
  topic: string,
): StopCondition {
  let admin: Admin | undefined;
  return {
    async met() {
      if (!admin) {
        admin = kafkaClient(brokers, "tests-stop").admin();
        await admin.connect();
      }
      const [ends, [committed]] = await Promise.all([
        admin.fetchTopicOffsets(topic),
        admin.fetchOffsets({ groupId, topics: [topic] }),
      ]).catch(async (error: unknown) => {
        // The broker may have gone (a test restarts it): connect afresh next time.
        await admin?.disconnect().catch(() => {});
        admin = undefined;
        throw error;
      });
      const at = (partition: number) =>
        Number(committed?.partitions.find((c) => c.partition === partition)?.offset ?? -1);
      // A partition that holds nothing has nothing to commit.
      return ends.every((end) => end.high === end.low || at(end.partition) >= Number(end.high));
    },
    async close() {
      await admin?.disconnect();
    },
  };
}

export type OffsetsByPartition = Record<number, string>;

/** The next offset to be written in each partition (the high watermark). */
export async function endOffsets(brokers: KafkaTarget, topic: string): Promise<OffsetsByPartition> {
  return await withAdmin(brokers, async (admin) => {
    const offsets = await admin.fetchTopicOffsets(topic);
    return Object.fromEntries(offsets.map((p) => [p.partition, p.high]));
  });
}

/** The group's committed offsets for the topic ("-1" where nothing was committed). */
export async function committedOffsets(
  brokers: KafkaTarget,
  groupId: string,
  topic: string,
): Promise<OffsetsByPartition> {
  return await withAdmin(brokers, async (admin) => {
    const [found] = await admin.fetchOffsets({ groupId, topics: [topic] });
    return Object.fromEntries((found?.partitions ?? []).map((p) => [p.partition, p.offset]));
  });
}

export async function createTopic(brokers: KafkaTarget, topic: string, numPartitions = 1) {
  await withAdmin(brokers, async (admin) => {
    await admin.createTopics({ topics: [{ topic, numPartitions }], waitForLeaders: true });
  });
}

export interface StoredMessage {
  partition: number;
  offset: number;
  key: string | null;
  value: Buffer | null;
  headers: Record<string, string>;
}

/**
 * Every message a topic holds now, with headers as strings, ordered by partition and
 * offset. Reads with a throwaway group up to the end offsets taken at the start.
 */
export async function readTopic(
  brokers: KafkaTarget,
  topic: string,
  timeoutMs = 60_000,
): Promise<StoredMessage[]> {
  const bounds = await withAdmin(brokers, (admin) => admin.fetchTopicOffsets(topic));
  const pending = new Map(
    bounds.filter((p) => Number(p.high) > Number(p.low)).map((p) => [p.partition, Number(p.high)]),
  );
  const messages: StoredMessage[] = [];
  if (pending.size === 0) return messages;
  const consumer = kafkaClient(brokers, "tests-reader").consumer({
    groupId: uniqueName("tests-reader"),
    maxWaitTimeInMs: 200,
  });
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${topic}: not read to its end within ${timeoutMs} ms`)),
        timeoutMs,
      );
      consumer
        .run({
          autoCommit: false,
          eachMessage: async ({ partition, message }) => {
            const offset = Number(message.offset);
            const end = pending.get(partition);
            if (end === undefined || offset >= end) return; // written after we started
            const headers: Record<string, string> = {};
            for (const [name, value] of Object.entries(message.headers ?? {})) {
              if (value !== undefined) headers[name] = String(value);
            }
            messages.push({
              partition,
              offset,
              key: message.key?.toString() ?? null,
              value: message.value,
              headers,
            });
            if (offset + 1 >= end) pending.delete(partition);
            if (pending.size === 0) {
              clearTimeout(timer);
              resolve();
            }
          },
        })
        .catch(reject);
    });
  } finally {
    await consumer.disconnect();
  }
  return messages.sort((a, b) => a.partition - b.partition || a.offset - b.offset);
}

/**
 * Commits offsets with metadata for a group, as another tool would: joins the group
 * with a plain KafkaJS consumer that processes nothing, commits, and leaves.
 */
export async function commitWithMetadata(
  brokers: KafkaTarget,
  groupId: string,
  topic: string,
  partitions: { partition: number; offset: string; metadata: string | null }[],
): Promise<void> {
  const consumer = kafkaClient(brokers, "tests-committer").consumer({
    groupId,
    maxWaitTimeInMs: 100,
  });
  await consumer.connect();
  try {
    // KafkaJS drops a commit made before it runs (at GROUP_JOIN it does not yet): wait
    // for its first fetch.
    const joined = new Promise<void>((resolve) => {
      consumer.on(consumer.events.FETCH_START, () => resolve());
    });
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({ autoCommit: false, eachMessage: async () => {} });
    await joined;
    consumer.pause([{ topic }]);
    await consumer.commitOffsets(partitions.map((p) => ({ topic, ...p })));
  } finally {
    await consumer.disconnect();
  }
}

/** The group's committed offsets for the topic, each with its metadata. */
export async function committedWithMetadata(
  brokers: KafkaTarget,
  groupId: string,
  topic: string,
): Promise<Record<number, { offset: string; metadata: string | null }>> {
  return await withAdmin(brokers, async (admin) => {
    const [found] = await admin.fetchOffsets({ groupId, topics: [topic] });
    return Object.fromEntries(
      (found?.partitions ?? []).map((p) => [
        p.partition,
        { offset: p.offset, metadata: p.metadata },
      ]),
    );
  });
}
