// A KafkaJS round trip: create a topic, produce, consume in a group with manual
// commits, read the committed offsets back. Imported by the in-process test and run as
// a child process on Bun, Deno and Node to prove the client works on each runtime.
//   KAFKA_BROKERS=… ROUNDTRIP_TOPIC=… <runtime> tests/support/roundtrip.ts
import { Kafka, logLevel } from "kafkajs";
import { hideTimeoutNegativeWarning } from "../../scripts/quiet-kafkajs.ts";

export interface RoundTripResult {
  topic: string;
  groupId: string;
  produced: number;
  consumed: number;
  committed: Record<number, string>;
  runtime: string;
}

export async function roundTrip(
  brokers: string,
  topic: string,
  messages = 20,
  partitions = 2,
): Promise<RoundTripResult> {
  hideTimeoutNegativeWarning();
  const kafka = new Kafka({
    clientId: "roundtrip",
    brokers: brokers.split(","),
    logLevel: logLevel.NOTHING,
  });
  const groupId = `${topic}-group`;
  const admin = kafka.admin();
  const producer = kafka.producer();
  const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 500 });
  await Promise.all([admin.connect(), producer.connect(), consumer.connect()]);
  try {
    await admin.createTopics({
      topics: [{ topic, numPartitions: partitions }],
      waitForLeaders: true,
    });
    await producer.send({
      topic,
      messages: Array.from({ length: messages }, (_, i) => ({ key: `k${i}`, value: `m${i}` })),
    });
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    let consumed = 0;
    await new Promise<void>((resolve, reject) => {
      consumer
        .run({
          autoCommit: false,
          eachMessage: async ({ partition, message }) => {
            consumed++;
            const next = (BigInt(message.offset) + 1n).toString();
            await consumer.commitOffsets([{ topic, partition, offset: next }]);
            if (consumed === messages) resolve();
          },
        })
        .catch(reject);
    });
    await consumer.stop();
    const [offsets] = await admin.fetchOffsets({ groupId, topics: [topic] });
    const committed = Object.fromEntries(
      (offsets?.partitions ?? []).map((p) => [p.partition, p.offset]),
    );
    const runtime = "Bun" in globalThis ? "bun" : "Deno" in globalThis ? "deno" : `node`;
    return { topic, groupId, produced: messages, consumed, committed, runtime };
  } finally {
    await Promise.allSettled([consumer.disconnect(), producer.disconnect(), admin.disconnect()]);
  }
}

if (import.meta.main) {
  const brokers = process.env.KAFKA_BROKERS ?? "localhost:9092";
  const topic = process.env.ROUNDTRIP_TOPIC ?? `roundtrip-${Date.now()}`;
  console.log(JSON.stringify(await roundTrip(brokers, topic)));
}
