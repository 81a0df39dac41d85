/**
 * producer.ts: fills a Kafka topic with a backlog of "create user" events.
 *
 * Each event is a JSON object with a unique id, an email at example.com, a username,
 * a timestamp and, if PAYLOAD_BYTES asks for it, padding up to that size. Batches go
 * out concurrently; the topic is created with PARTITIONS partitions if it is missing.
 * It exits 0 only when the broker acknowledged every message (acks from all replicas).
 *
 *   bun run producer.ts          deno run -A producer.ts          node producer.ts
 *   MESSAGES=100000 PAYLOAD_BYTES=4096 bun run producer.ts        (settings: --help)
 */
import { randomBytes } from "node:crypto";
import { Kafka, logLevel, type Message, Partitioners } from "kafkajs";
import { z } from "zod";

// ---- Settings (environment variables; --help lists them) ----
const settingsShape = {
  KAFKA_BROKERS: text("localhost:9092", "comma-separated bootstrap servers"),
  KAFKA_TOPIC: text("CREATE_USER", "topic to fill"),
  MESSAGES: wholeNumber(10_000, 1, 100_000_000, "events to send"),
  PAYLOAD_BYTES: wholeNumber(
    16_384,
    0,
    1_000_000,
    "size each JSON event is padded to (0: no padding, about 130 bytes)",
  ),
  PARTITIONS: wholeNumber(3, 1, 10_000, "partitions of the topic, when this creates it"),
  BATCH_SIZE: wholeNumber(500, 1, 100_000, "events per produce request, at most"),
  BATCH_BYTES: wholeNumber(
    256 * 1024,
    1_024,
    100_000_000,
    "bytes per produce request, at most: keeps each batch under the broker's message.max.bytes (1 MB by default)",
  ),
  SEND_CONCURRENCY: wholeNumber(8, 1, 1_000, "produce requests in flight at once"),
  KEYS: wholeNumber(
    0,
    0,
    100_000_000,
    "distinct message keys, cycled (0: the key is the event's id)",
  ),
  MALFORMED_EVERY: wholeNumber(
    0,
    0,
    100_000_000,
    "make every Nth event malformed (bad JSON, missing fields, null value, in turn) to exercise dead-lettering (0: none)",
  ),
  ID_PREFIX: z
    .string()
    .trim()
    .default("")
    .describe("ids are <ID_PREFIX>-<n>, n from 0 (empty: random per run)"),
};

// ---- Main flow ----
async function main() {
  const settings = loadSettings(settingsShape);
  const { KAFKA_TOPIC: topic, MESSAGES: total } = settings;
  const batchSize = Math.max(
    1,
    Math.min(
      settings.BATCH_SIZE,
      Math.floor(settings.BATCH_BYTES / Math.max(1, settings.PAYLOAD_BYTES)),
    ),
  );
  const idPrefix = settings.ID_PREFIX || randomBytes(4).toString("hex");
  const kafka = new Kafka({
    clientId: "producer",
    brokers: settings.KAFKA_BROKERS.split(","),
    logLevel: logLevel.WARN,
    connectionTimeout: 3_000,
    retry: { retries: 5, maxRetryTime: 5_000 },
  });
  const admin = kafka.admin();
  // The default partitioner, named so KafkaJS does not warn that its default changed in 2.0.
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  try {
    await admin.connect();
    await producer.connect();
  } catch (error) {
    fail(`Kafka is unreachable at ${settings.KAFKA_BROKERS}: ${(error as Error).message}`);
  }

  // A broker that has just started may answer "unknown topic" about one it has just
  // created: retry what Kafka calls retriable, a while, rather than die on a stack trace.
  let created = false;
  let partitions: number | undefined;
  for (let attempt = 1; ; attempt++) {
    let problem = "no metadata for it yet";
    try {
      const topics = [{ topic, numPartitions: settings.PARTITIONS }];
      created = (await admin.createTopics({ topics, waitForLeaders: true })) || created;
      const [metadata] = (await admin.fetchTopicMetadata({ topics: [topic] })).topics;
      partitions = metadata?.partitions.length;
    } catch (error) {
      problem = (error as Error).message;
      if (!(error as { retriable?: boolean }).retriable) attempt = 10;
    }
    if (partitions !== undefined) break;
    if (attempt >= 10) fail(`Could not create or read topic ${topic}: ${problem}`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  console.log(
    `${created ? "created" : "using existing"} topic ${topic} with ${partitions} partitions; sending ${total.toLocaleString("en-US")} events of ~${settings.PAYLOAD_BYTES} bytes`,
  );

  const started = performance.now();
  let sent = 0;
  let errors = 0;
  let nextBatch = 0;
  const batches = Math.ceil(total / batchSize);
  // A few senders share one batch counter: SEND_CONCURRENCY requests in flight at once.
  const sender = async () => {
    while (nextBatch < batches) {
      const first = nextBatch++ * batchSize;
      const count = Math.min(batchSize, total - first);
      const messages = Array.from({ length: count }, (_, i) =>
        makeEvent(first + i, idPrefix, settings),
      );
      try {
        await producer.send({ topic, messages, acks: -1 });
        sent += count;
      } catch (error) {
        errors += count;
        console.error(`batch at ${first} failed: ${(error as Error).message}`);
      }
    }
  };
  const progress = setInterval(() => console.log(`sent ${sent.toLocaleString("en-US")}`), 1_000);
  await Promise.all(Array.from({ length: settings.SEND_CONCURRENCY }, sender));
  clearInterval(progress);

  const seconds = (performance.now() - started) / 1_000;
  const rate = Math.round(sent / seconds);
  console.log(
    `sent ${sent.toLocaleString("en-US")} of ${total.toLocaleString("en-US")}, errors ${errors}, ${seconds.toFixed(2)} s, ${rate.toLocaleString("en-US")} msg/s`,
  );
  console.log(
    JSON.stringify({
      type: "summary",
      script: "producer",
      runtime: runtime(),
      topic,
      sent,
      errors,
      durationMs: Math.round(seconds * 1_000),
      ratePerSec: rate,
      idPrefix,
    }),
  );
  await producer.disconnect();
  await admin.disconnect();
  process.exit(sent === total ? 0 : 1);
}

// ---- Helpers ----

type ProducerSettings = z.infer<z.ZodObject<typeof settingsShape>>;

/** Event n: valid JSON padded to PAYLOAD_BYTES, or a malformed one when asked for. */
function makeEvent(n: number, idPrefix: string, settings: ProducerSettings): Message {
  const id = `${idPrefix}-${n}`;
  const key = settings.KEYS > 0 ? `key-${n % settings.KEYS}` : id;
  const every = settings.MALFORMED_EVERY;
  if (every > 0 && n % every === every - 1) {
    const kind = Math.floor(n / every) % 3;
    if (kind === 0) return { key, value: `{"id":"${id}", this is not JSON` };
    if (kind === 1) return { key, value: JSON.stringify({ id, note: "no email or username" }) };
    return { key, value: null };
  }
  const username = `user_${n}`;
  const event = {
    id,
    email: `${username}@example.com`,
    username,
    createdAt: new Date().toISOString(),
  };
  const bare = JSON.stringify(event);
  // `,"padding":""` adds 13 bytes before the padding characters themselves.
  const padding = Math.max(0, settings.PAYLOAD_BYTES - bare.length - 13);
  return {
    key,
    value: padding > 0 ? JSON.stringify({ ...event, padding: "x".repeat(padding) }) : bare,
  };
}

function runtime(): string {
  if ("Bun" in globalThis) return `bun ${process.versions.bun}`;
  if ("Deno" in globalThis) return `deno ${process.versions.deno}`;
  return `node ${process.versions.node}`;
}

function fail(message: string): never {
  console.error(message);
  process.exit(1);
}

// ---- Settings helpers (each script of this project carries its own, to stand alone) ----

function text(fallback: string, doc: string) {
  return z.string().trim().min(1, { error: "must not be empty" }).default(fallback).describe(doc);
}

function wholeNumber(fallback: number, min: number, max: number, doc: string) {
  const error = `expected a whole number from ${min} to ${max}`;
  return z.coerce
    .number({ error })
    .int({ error })
    .min(min, { error })
    .max(max, { error })
    .default(fallback)
    .describe(doc);
}

/** Reads the settings from the environment; --help lists them; a bad one exits 2. */
function loadSettings<S extends z.ZodRawShape>(shape: S): z.infer<z.ZodObject<S>> {
  if (process.argv.includes("--help") || process.argv.includes("-h")) {
    console.log(`Settings of ${process.argv[1]?.split("/").pop()}, from environment variables:`);
    for (const [name, field] of Object.entries(shape) as [string, z.ZodDefault][]) {
      const fallback = field.def.defaultValue;
      const shown = fallback === "" ? "" : ` [default: ${fallback}]`;
      console.log(`  ${name.padEnd(18)} ${field.description}${shown}`);
    }
    process.exit(0);
  }
  const result = z.object(shape).safeParse(process.env);
  if (result.success) return result.data;
  for (const issue of result.error.issues) {
    const name = String(issue.path[0]);
    console.error(`Bad setting ${name}=${JSON.stringify(process.env[name])}: ${issue.message}`);
  }
  console.error("Run with --help to see every setting.");
  process.exit(2);
}

if (import.meta.main) await main();
