/**
 * Strategy 7: @platformatic/kafka instead of KafkaJS, the same work per message. Its
 * consumer is a Node Readable stream of messages, with the stream's own back pressure:
 * at most CONCURRENCY calls in flight, the stream paused while they are, and the
 * stream's buffer (highWaterMark: 2,000 messages, consumer-solved.ts's HIGH_WATERMARK)
 * holds what was fetched meanwhile; the library stops fetching while it is full.
 * Offsets: the library's autocommit, every second, of what the stream handed over (as
 * KafkaJS's autoCommit does), so a message counts as consumed once it is taken.
 */
import { Consumer, type Message } from "@platformatic/kafka";
import { loadFromEnv, settingsShape, startCounting } from "./common.ts";

const started = performance.now();
const settings = loadFromEnv(settingsShape);
const topic = settings.KAFKA_TOPIC;
const consumer = new Consumer({
  clientId: "bench-platformatic",
  groupId: settings.KAFKA_GROUP_ID || "bench-platformatic",
  bootstrapBrokers: settings.KAFKA_BROKERS.split(","),
  maxWaitTime: settings.FETCH_MAX_WAIT_MS,
  highWaterMark: 2_000,
});

let stream: Awaited<ReturnType<typeof consumer.consume>>;
let expected: number | undefined;
try {
  stream = await consumer.consume({
    topics: [topic],
    mode: "committed",
    fallbackMode: settings.FROM_BEGINNING ? "earliest" : "latest",
    autocommit: 1_000,
  });
  if (settings.STOP_AT_END) expected = await backlog(consumer, topic, settings.FROM_BEGINNING);
} catch (error) {
  console.error(`Kafka is unreachable at ${settings.KAFKA_BROKERS}: ${(error as Error).message}`);
  process.exit(1);
}
const strategy = startCounting(
  "platformatic",
  settings,
  expected,
  () => consumer.close(true),
  started,
);

// At most CONCURRENCY calls: pause the stream at the limit, resume when one ends.
let inFlight = 0;
stream.on("data", (message: Message) => {
  inFlight++;
  if (inFlight >= settings.CONCURRENCY) stream.pause();
  void strategy.handle(message.value).finally(() => {
    inFlight--;
    if (stream.isPaused()) stream.resume();
  });
});
stream.on("error", (error: Error) => void strategy.finish(`stream failed: ${error.message}`, 1));

/** Messages between the group's committed offsets (or the start) and the end now. */
async function backlog(
  client: typeof consumer,
  name: string,
  fromBeginning: boolean,
): Promise<number> {
  const ends = (await client.listOffsets({ topics: [name], timestamp: -1n })).get(name) ?? []; // -1: latest
  const starts = (await client.listOffsets({ topics: [name], timestamp: -2n })) // -2: earliest
    .get(name);
  const partitions = ends.map((_, partition) => partition);
  const committed = (
    await client.listCommittedOffsets({ topics: [{ topic: name, partitions }] })
  ).get(name);
  let total = 0;
  for (const partition of partitions) {
    const done = committed?.[partition] ?? -1n;
    const end = ends[partition] ?? 0n;
    const start = done >= 0n ? done : fromBeginning ? (starts?.[partition] ?? 0n) : end;
    total += Number(end - start);
  }
  return total;
}
