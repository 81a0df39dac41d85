/**
 * producer.ts: fills a Kafka topic with a backlog of "create user" events.
 *
 * Each event is JSON: a unique id, an email, a username, a timestamp and padding up to
 * PAYLOAD_BYTES. The topic is created if missing; batches go out concurrently; the exit
 * code is 0 only when the broker acknowledged every event (acks from all replicas).
 *
 * Run this one file alone (settings: --help):
 *   bun:  bun run producer.ts
 *   deno: deno add npm:kafkajs && deno run --allow-net --allow-env=KAFKA_BROKERS,KAFKA_TOPIC,MESSAGES,PAYLOAD_BYTES,PARTITIONS,BATCH_SIZE,BATCH_BYTES,SEND_CONCURRENCY,KEYS,MALFORMED_EVERY,ID_PREFIX,NODE_ENV,KAFKAJS_LOG_LEVEL,KAFKAJS_DEBUG_PROTOCOL_BUFFERS,KAFKAJS_DEBUG_EXTENDED_PROTOCOL_BUFFERS producer.ts
 *   node: npm i kafkajs && npm pkg set type=module && node producer.ts        (Node 22.18+)
 */
import { randomBytes } from "node:crypto";
import { type Admin, Kafka, logLevel, type Message, Partitioners } from "kafkajs";

const settings = readSettings(
  {
    KAFKA_BROKERS: text("localhost:9092", "comma-separated bootstrap servers"),
    KAFKA_TOPIC: text("CREATE_USER", "topic to fill"),
    MESSAGES: number(10_000, "events to send", 1, 100_000_000),
    PAYLOAD_BYTES: number(16_384, "size events are padded to (0: none, ~130 bytes)", 0, 1e6),
    PARTITIONS: number(3, "partitions of the topic, when this creates it", 1, 10_000),
    BATCH_SIZE: number(500, "events per produce request, at most", 1, 100_000),
    BATCH_BYTES: number(262_144, "bytes per request, at most (broker's cap: 1 MB)", 1_024, 1e8),
    SEND_CONCURRENCY: number(8, "produce requests in flight at once", 1, 1_000),
    KEYS: number(0, "distinct message keys, cycled (0: the key is the event's id)", 0, 1e8),
    MALFORMED_EVERY: number(0, "every Nth event malformed, for dead-lettering (0: none)", 0, 1e8),
    ID_PREFIX: text("", "ids are <ID_PREFIX>-<n>, n from 0 (empty: random per run)"),
  },
  "0 every event acknowledged, 1 Kafka failed or refused events, 2 bad setting",
);

async function main() {
  const { KAFKA_TOPIC: topic, MESSAGES: total } = settings;
  hideTimeoutNegativeWarning();
  const brokers = settings.KAFKA_BROKERS.split(",");
  const kafka = new Kafka({ brokers, logLevel: logLevel.WARN, connectionTimeout: 3_000 });
  // The default partitioner, named so KafkaJS does not warn that its default changed in 2.0.
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  const admin = kafka.admin();

  // 1. Connect, and create the topic unless it exists.
  const unreachable = (e: Error) => fail(`Kafka is unreachable at ${brokers}: ${e.message}`);
  for (const client of [admin, producer]) await client.connect().catch(unreachable);
  const created = await ensureTopic(admin, topic, settings.PARTITIONS);
  console.log(`${created ? "created" : "using existing"} topic ${topic}; sending ${total} events`);

  // 2. Send batches, SEND_CONCURRENCY requests at once, each one under BATCH_BYTES so
  //    that it stays below the broker's message.max.bytes.
  const idPrefix = settings.ID_PREFIX || randomBytes(4).toString("hex");
  const fitting = Math.floor(settings.BATCH_BYTES / Math.max(1, settings.PAYLOAD_BYTES));
  const batchSize = Math.max(1, Math.min(settings.BATCH_SIZE, fitting));
  const started = performance.now();
  let [sent, errors, nextEvent] = [0, 0, 0];
  const sendBatches = async () => {
    while (nextEvent < total) {
      const first = nextEvent; // shared by the senders: each batch goes out once
      const size = Math.min(batchSize, total - first);
      nextEvent += size;
      const messages = Array.from({ length: size }, (_, i) => makeEvent(first + i, idPrefix));
      try {
        await producer.send({ topic, messages, acks: -1 });
        sent += size;
      } catch (error) {
        errors += size;
        console.error(`batch at ${first} failed: ${(error as Error).message}`);
      }
    }
  };
  const progress = setInterval(() => console.log(`sent ${sent}`), 1_000);
  await Promise.all(Array.from({ length: settings.SEND_CONCURRENCY }, sendBatches));
  clearInterval(progress);

  // 3. Report, and exit 0 only if the broker acknowledged every event.
  printSummary(topic, sent, errors, idPrefix, performance.now() - started);
  await Promise.all([producer.disconnect(), admin.disconnect()]);
  process.exit(sent === total ? 0 : 1);
}

/** Creates the topic unless it exists; true if this call created it. */
async function ensureTopic(admin: Admin, topic: string, numPartitions: number, tries = 10) {
  try {
    // Asked first: creating a topic that exists makes KafkaJS log an ERROR line.
    if ((await admin.listTopics()).includes(topic)) return false;
    const topics = [{ topic, numPartitions }];
    const created = await admin.createTopics({ topics, waitForLeaders: true });
    // A new partition's leader can refuse writes for a moment after the metadata names it,
    // and KafkaJS sends a refused request again whole: the partitions it had written would
    // get those events twice. Wait until every leader answers (KafkaJS retries this read).
    await admin.fetchTopicOffsets(topic);
    return created;
  } catch (error) {
    // A broker that has just started may refuse for a moment: retry what Kafka calls retriable.
    const { retriable, message } = error as { retriable?: boolean; message: string };
    if (!retriable || tries === 1) fail(`Could not create topic ${topic}: ${message}`);
    await new Promise((resolve) => setTimeout(resolve, 500));
    return await ensureTopic(admin, topic, numPartitions, tries - 1);
  }
}

/** Event n: JSON padded to PAYLOAD_BYTES or, every MALFORMED_EVERY, a bad one. */
export function makeEvent(n: number, idPrefix: string, options = settings): Message {
  const id = `${idPrefix}-${n}`;
  const key = options.KEYS > 0 ? `key-${n % options.KEYS}` : id;
  const every = options.MALFORMED_EVERY;
  if (every > 0 && n % every === every - 1) {
    // In turn: not JSON, JSON without the fields a consumer needs, no value at all.
    const kind = Math.floor(n / every) % 3;
    if (kind === 0) return { key, value: `{"id":"${id}", this is not JSON` };
    if (kind === 1) return { key, value: JSON.stringify({ id, note: "no email or username" }) };
    return { key, value: null };
  }
  const username = `user_${n}`;
  const event = { id, email: `${username}@example.com`, username, createdAt: new Date() };
  const bare = JSON.stringify(event);
  // `,"padding":""` adds 13 bytes before the padding characters themselves.
  const padding = Math.max(0, options.PAYLOAD_BYTES - bare.length - 13);
  if (padding === 0) return { key, value: bare };
  return { key, value: JSON.stringify({ ...event, padding: "x".repeat(padding) }) };
}

// ==== Instrumentation and plumbing: a reader may skip from here on ====

function printSummary(topic: string, sent: number, errors: number, idPrefix: string, ms: number) {
  const ratePerSec = Math.round((sent * 1_000) / ms);
  console.log(`sent ${sent} of ${settings.MESSAGES}, errors ${errors}, ${ratePerSec} msg/s`);
  const about = { type: "summary", script: "producer", runtime: runtimeName() };
  const summary = { ...about, topic, sent, errors };
  console.log(JSON.stringify({ ...summary, durationMs: Math.round(ms), ratePerSec, idPrefix }));
}

function runtimeName(): string {
  const name = ["bun", "deno", "node"].find((r) => process.versions[r]) ?? "node";
  return `${name} ${process.versions[name]}`;
}

/**
 * KafkaJS 2.2.4 arms a timer with a negative delay when nothing is throttled; the runtime
 * warns (TimeoutNegativeWarning) and waits 1 ms, as KafkaJS meant. Hide only that warning.
 */
export function hideTimeoutNegativeWarning() {
  for (const print of process.listeners("warning")) {
    process.off("warning", print);
    process.on("warning", (warning) => warning.name === "TimeoutNegativeWarning" || print(warning));
  }
}

function fail(message: string): never {
  console.error(message);
  process.exit(1);
}

// biome-ignore-start lint/correctness/noUnusedVariables: flag() is for scripts with a switch
// ---- Settings reader: each script of this project carries the same copy, so that it
// stands alone (tests/unit/drift.test.ts keeps the copies identical) ----

interface Setting<T> {
  fallback: T;
  doc: string;
  expected: string;
  parse: (raw: string) => T | undefined; // undefined: not a valid value
}

function text(fallback: string, doc: string, pattern = /\S/, expected = "text"): Setting<string> {
  return { fallback, doc, expected, parse: (raw) => (pattern.test(raw) ? raw.trim() : undefined) };
}

function number(fallback: number, doc: string, min: number, max: number, whole = true) {
  const expected = `${whole ? "a whole number" : "a number"} from ${min} to ${max}`;
  const parse = (raw: string) => {
    const n = Number(raw);
    return n >= min && n <= max && (!whole || Number.isInteger(n)) ? n : undefined;
  };
  return { fallback, doc, expected, parse } satisfies Setting<number>;
}

function flag(fallback: boolean, doc: string): Setting<boolean> {
  const parse = (raw: string) => ({ true: true, false: false })[raw.trim() as "true" | "false"];
  return { fallback, doc, expected: "true or false", parse };
}

/** Reads settings from the environment (unset or empty: the default); a bad one exits 2. */
function readSettings<S extends Record<string, Setting<unknown>>>(spec: S, exitCodes: string) {
  const help = process.argv.includes("--help");
  if (help) console.log(`Settings of ${process.argv[1]?.split("/").pop()}, from the environment:`);
  const values: Record<string, unknown> = {};
  let bad = false;
  for (const [name, { fallback, doc, expected, parse }] of Object.entries(spec)) {
    if (help) console.log(`  ${name.padEnd(20)} ${doc} [default: ${fallback}]`);
    const raw = process.env[name];
    values[name] = raw === undefined || raw === "" ? fallback : parse(raw);
    if (values[name] !== undefined) continue;
    console.error(`Bad setting ${name}=${JSON.stringify(raw)}: expected ${expected}`);
    bad = true;
  }
  if (help) console.log(`Exit codes: ${exitCodes}.`);
  if (help || bad) process.exit(help ? 0 : 2);
  return values as { [K in keyof S]: S[K]["fallback"] };
}
// biome-ignore-end lint/correctness/noUnusedVariables: -

if (import.meta.main) await main();
