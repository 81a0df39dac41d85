/**
 * bench/strategies/common.ts: what the benchmark's strategy consumers share, so each
 * strategy file shows only how it hands messages to the API.
 *
 * The per-message work is the solved consumer's (parse the JSON event, POST
 * JSON.stringify(event) to API_URL, read the answer), without its retries or dead
 * letters: the benchmark's API does not fail. Settings come from environment variables
 * as in the top-level consumers; STOP_AT_END exits 0 once as many messages have been
 * handled as the topic held (past the group's start) when the consumer started. A
 * status line every STATUS_INTERVAL_MS; at exit one JSON summary line; exit 3 when RSS
 * passes MEMORY_LIMIT_MB, as every consumer of this project does.
 */

import { type Consumer, type ConsumerConfig, Kafka, logLevel } from "kafkajs";
import { z } from "zod";
import { hideTimeoutNegativeWarning } from "../../scripts/quiet-kafkajs.ts";

// Settings as environment variables, read with zod: tooling, unlike the blog scripts,
// may take a library for this.
const text = (fallback: string, doc: string) =>
  z.string().trim().min(1).default(fallback).describe(doc);
const wholeNumber = (fallback: number, min: number, max: number, doc: string) =>
  z.coerce.number().int().min(min).max(max).default(fallback).describe(doc);
const flag = (fallback: boolean, doc: string) => z.stringbool().default(fallback).describe(doc);

/** Reads the settings; --help lists them; a bad one exits 2 with its name and why. */
export function loadFromEnv<S extends z.ZodRawShape>(shape: S): z.infer<z.ZodObject<S>> {
  if (process.argv.includes("--help")) {
    for (const [name, field] of Object.entries(shape) as [string, z.ZodDefault][]) {
      console.log(`  ${name.padEnd(20)} ${field.description} [default: ${field.def.defaultValue}]`);
    }
    process.exit(0);
  }
  const result = z.object(shape).safeParse(process.env);
  if (result.success) return result.data;
  for (const issue of result.error.issues) {
    const name = String(issue.path[0]);
    console.error(`Bad setting ${name}=${JSON.stringify(process.env[name])}: ${issue.message}`);
  }
  process.exit(2);
}

/** The event in a message, as the solved consumer checks it, or what is wrong with it. */
function parseEvent(value: Buffer | null): { event: object } | { problem: string } {
  try {
    const event: unknown = JSON.parse(value?.toString("utf8") ?? "null");
    const id = (event as { id?: unknown } | null)?.id;
    return typeof id === "string" ? { event: event as object } : { problem: "no string id" };
  } catch (error) {
    return { problem: `invalid JSON: ${(error as Error).message}` };
  }
}

export const settingsShape = {
  KAFKA_BROKERS: text("localhost:9092", "comma-separated bootstrap servers"),
  KAFKA_TOPIC: text("CREATE_USER", "topic to consume"),
  KAFKA_GROUP_ID: z
    .string()
    .trim()
    .default("")
    .describe("consumer group (empty: bench-<strategy>)"),
  API_URL: text("http://127.0.0.1:3000/users", "where each message is POSTed (mock-api.ts)"),
  CONCURRENCY: wholeNumber(
    200,
    1,
    10_000,
    "calls in flight at most, where the strategy has a bound",
  ),
  FETCH_MAX_WAIT_MS: wholeNumber(
    100,
    1,
    60_000,
    "KafkaJS maxWaitTimeInMs, as in consumer-solved.ts (kafka-node's fetchMaxWaitMs was 100 too)",
  ),
  FROM_BEGINNING: flag(true, "start at the oldest message when the group has no committed offset"),
  STOP_AT_END: flag(false, "exit 0 once everything in the topic at start is handled"),
  MEMORY_LIMIT_MB: wholeNumber(256, 0, 1_000_000, "exit 3 when RSS passes this (0: off)"),
  STATUS_INTERVAL_MS: wholeNumber(500, 50, 3_600_000, "how often to print the status line"),
};

export type Settings = z.infer<z.ZodObject<typeof settingsShape>>;

export const EXIT_MEMORY_LIMIT = 3;

/** What every strategy shares, whatever its Kafka client: the per-message work and the report. */
export interface Counting {
  settings: Settings;
  /** Parses the event, POSTs it and reads the answer; counts it; stops at the end. */
  handle(value: Buffer | null): Promise<void>;
  /** Figures the strategy adds to its status lines and summary (queued, paused…). */
  describe: () => Record<string, unknown>;
  finish(reason: string, exitCode: number): Promise<void>;
}

export interface Strategy extends Counting {
  kafka: Kafka;
  consumer: Consumer;
  topic: string;
  /** partitions of the topic */
  partitions: number;
}

/** Settings, Kafka connection, counters, memory ceiling and signals for one strategy. */
export async function startStrategy(
  name: string,
  consumerConfig: Partial<ConsumerConfig> = {},
): Promise<Strategy> {
  const started = performance.now();
  const settings = loadFromEnv(settingsShape);
  const topic = settings.KAFKA_TOPIC;
  hideTimeoutNegativeWarning();
  const kafka = new Kafka({
    clientId: `bench-${name}`,
    brokers: settings.KAFKA_BROKERS.split(","),
    logLevel: logLevel.WARN,
    connectionTimeout: 3_000,
    retry: { retries: 5, maxRetryTime: 5_000 },
  });
  const groupId = settings.KAFKA_GROUP_ID || `bench-${name}`;
  const consumer = kafka.consumer({
    groupId,
    maxWaitTimeInMs: settings.FETCH_MAX_WAIT_MS,
    ...consumerConfig,
  });
  const { expected, partitions } = await connect(kafka, consumer, groupId, settings);
  const counting = startCounting(name, settings, expected, () => consumer.disconnect(), started);
  consumer.on(consumer.events.CRASH, ({ payload }) => {
    if (!payload.restart)
      void counting.finish(`Kafka consumer crashed: ${payload.error.message}`, 1);
  });
  return Object.assign(counting, { kafka, consumer, topic, partitions });
}

/**
 * Counts, status lines, the summary, the memory ceiling and signals, for a strategy
 * that has `expected` messages to handle (STOP_AT_END) and leaves Kafka with `disconnect`.
 */
export function startCounting(
  name: string,
  settings: Settings,
  expected: number | undefined,
  disconnect: () => Promise<void>,
  started = performance.now(),
): Counting {
  const counts = { processed: 0, failed: 0, malformed: 0, inFlight: 0 };
  let firstError: string | undefined;
  let finishing = false;
  const memory = { rssMb: 0, heapMb: 0, peakRssMb: 0, peakHeapMb: 0 };

  const rates = () => {
    const seconds = (performance.now() - started) / 1_000;
    return {
      elapsedS: round(seconds, 1),
      durationMs: Math.round(seconds * 1_000),
      ratePerSec: Math.round(counts.processed / seconds),
    };
  };
  const printStatus = () => {
    const { elapsedS, ratePerSec } = rates();
    const extra = Object.entries(strategy.describe())
      .map(([key, value]) => ` ${key} ${value}`)
      .join("");
    console.log(
      `[${name}] ${elapsedS.toFixed(1)}s processed ${counts.processed} (${ratePerSec}/s) in flight ${counts.inFlight} failed ${counts.failed}${extra} | rss ${memory.rssMb} MB (max ${memory.peakRssMb}) heap ${memory.heapMb} MB`,
    );
  };
  const sampleMemory = () => {
    const { rss, heapUsed } = process.memoryUsage();
    memory.rssMb = Math.round(rss / 2 ** 20);
    memory.heapMb = Math.round(heapUsed / 2 ** 20);
    memory.peakRssMb = Math.max(memory.peakRssMb, memory.rssMb);
    memory.peakHeapMb = Math.max(memory.peakHeapMb, memory.heapMb);
    const limit = settings.MEMORY_LIMIT_MB;
    if (limit > 0 && memory.rssMb > limit && !finishing) {
      console.log(`MEMORY LIMIT EXCEEDED: rss ${memory.rssMb} MB > ${limit} MB`);
      void strategy.finish("memory limit exceeded", EXIT_MEMORY_LIMIT);
    }
  };

  const caughtUp = () =>
    expected !== undefined && counts.processed + counts.failed + counts.malformed >= expected;

  const strategy: Counting = {
    settings,
    describe: () => ({}),
    async handle(value) {
      const parsed = parseEvent(value);
      if ("problem" in parsed) {
        counts.malformed++;
      } else {
        counts.inFlight++;
        try {
          const response = await fetch(settings.API_URL, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify(parsed.event),
          });
          await response.text(); // the whole answer, as the solved consumer reads it
          if (response.ok) counts.processed++;
          else {
            counts.failed++;
            firstError ??= `HTTP ${response.status}`;
          }
        } catch (error) {
          counts.failed++;
          firstError ??= (error as Error).message;
        } finally {
          counts.inFlight--;
        }
      }
      if (caughtUp()) void strategy.finish("caught up with the end of the topic", 0);
    },
    async finish(exitReason, exitCode) {
      if (finishing) return;
      finishing = true;
      clearInterval(statusTimer);
      clearInterval(memoryTimer);
      printStatus();
      console.log(
        JSON.stringify({
          type: "summary",
          script: `bench/strategies/${name}`,
          runtime: runtime(),
          ...counts,
          expected,
          firstError,
          ...rates(),
          peakRssMb: memory.peakRssMb,
          peakHeapMb: memory.peakHeapMb,
          memoryLimitMb: settings.MEMORY_LIMIT_MB,
          memoryLimitExceeded: exitCode === EXIT_MEMORY_LIMIT,
          ...strategy.describe(),
          exitReason,
          exitCode,
        }),
      );
      // At the ceiling a pod is killed, not asked to leave its group.
      if (exitCode !== EXIT_MEMORY_LIMIT) {
        await Promise.race([disconnect().catch(() => {}), sleep(5_000)]);
      }
      process.exit(exitCode);
    },
  };

  sampleMemory();
  const memoryTimer = setInterval(sampleMemory, 100);
  const statusTimer = setInterval(printStatus, settings.STATUS_INTERVAL_MS);
  if (expected === 0) void strategy.finish("caught up with the end of the topic", 0);
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => void strategy.finish(`stopped by ${signal}`, 0));
  }
  return strategy;
}

/**
 * Connects and subscribes; returns the topic's partition count and, with STOP_AT_END,
 * how many messages lie between where the group starts and where the topic ends now.
 */
async function connect(kafka: Kafka, consumer: Consumer, groupId: string, settings: Settings) {
  const topic = settings.KAFKA_TOPIC;
  const admin = kafka.admin();
  try {
    await admin.connect();
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: settings.FROM_BEGINNING });
    const bounds = await admin.fetchTopicOffsets(topic);
    let expected: number | undefined;
    if (settings.STOP_AT_END) {
      const [committed] = await retrying(() => admin.fetchOffsets({ groupId, topics: [topic] }));
      expected = 0;
      for (const p of bounds) {
        const done = Number(
          committed?.partitions.find((c) => c.partition === p.partition)?.offset ?? -1,
        );
        const start = done >= 0 ? done : Number(settings.FROM_BEGINNING ? p.low : p.high);
        expected += Number(p.high) - start;
      }
    }
    return { expected, partitions: bounds.length };
  } catch (error) {
    console.error(`Kafka is unreachable at ${settings.KAFKA_BROKERS}: ${(error as Error).message}`);
    process.exit(1);
  } finally {
    await admin.disconnect();
  }
}

/**
 * Retries what Kafka calls retriable: on a broker that has just started, the group
 * coordinator is still loading until the first group joins, and this asks before that.
 */
async function retrying<T>(call: () => Promise<T>, attempts = 40): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      if (attempt >= attempts || !(error as { retriable?: boolean }).retriable) throw error;
      await sleep(250);
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref?.());
}

function runtime(): string {
  if ("Bun" in globalThis) return `bun ${process.versions.bun}`;
  if ("Deno" in globalThis) return `deno ${process.versions.deno}`;
  return `node ${process.versions.node}`;
}

function round(n: number, digits: number): number {
  return Number(n.toFixed(digits));
}
