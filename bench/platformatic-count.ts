/**
 * bench/platformatic-count.ts: consumer-fast.ts's job with @platformatic/kafka instead
 * of KafkaJS, for bench/raw-speed.ts: read KAFKA_TOPIC from the beginning in a new
 * consumer group and count, until EXPECTED messages have come. Then one JSON status
 * line (the moment raw-speed.ts times), leave the group, and one JSON summary line.
 *
 *   KAFKA_BROKERS=127.0.0.1:9092 KAFKA_TOPIC=t EXPECTED=10000 bun run bench/platformatic-count.ts
 */
import { Consumer, type Message } from "@platformatic/kafka";
import { numberOption, option } from "./harness.ts";

const topic = option("KAFKA_TOPIC", "CREATE_USER");
const expected = numberOption("EXPECTED", 10_000);
const started = performance.now();
const consumer = new Consumer({
  clientId: "bench-platformatic-count",
  groupId: option("KAFKA_GROUP_ID", `platformatic-count-${process.pid}`),
  bootstrapBrokers: option("KAFKA_BROKERS", "localhost:9092").split(","),
});
const stream = await consumer.consume({
  topics: [topic],
  mode: "earliest",
  autocommit: false,
});

let processed = 0;
let bytes = 0;
stream.on("data", (message: Message) => {
  processed++;
  bytes += message.value?.length ?? 0;
  if (processed === expected) void finish();
});

async function finish() {
  const durationMs = Math.round(performance.now() - started);
  const rssMb = Math.round(process.memoryUsage().rss / 2 ** 20);
  console.log(JSON.stringify({ type: "status", processed, durationMs, rssMb }));
  await Promise.race([consumer.close(true), new Promise((resolve) => setTimeout(resolve, 5_000))]);
  console.log(
    JSON.stringify({
      type: "summary",
      script: "bench/platformatic-count",
      processed,
      bytes,
      durationMs,
      ratePerSec: Math.round((processed * 1_000) / durationMs),
    }),
  );
  process.exit(0);
}
