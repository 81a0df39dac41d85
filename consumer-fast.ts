/**
 * consumer-fast.ts: the baseline. It consumes the topic and only counts; no HTTP call.
 *
 * This is how fast KafkaJS hands messages over on this runtime when nothing slow
 * happens per message, and how little memory that takes. Compare it with
 * consumer-backpressure.ts (the same loop plus one slow call per message) and
 * consumer-solved.ts.
 *
 *   bun run consumer-fast.ts     deno run -A consumer-fast.ts     node consumer-fast.ts
 *   STOP_AT_END=true bun run consumer-fast.ts                       (settings: --help)
 *
 * Every 500 ms it prints a status line; at exit, one line of JSON with the summary.
 */

import v8 from "node:v8";
import { Kafka, logLevel } from "kafkajs";
import { z } from "zod";

// ---- Settings (environment variables; --help lists them) ----
const settingsShape = {
  KAFKA_BROKERS: text("localhost:9092", "comma-separated bootstrap servers"),
  KAFKA_TOPIC: text("CREATE_USER", "topic to consume"),
  KAFKA_GROUP_ID: text("consumer-fast", "consumer group"),
  FROM_BEGINNING: flag(true, "start at the oldest message when the group has no committed offset"),
  STOP_AT_END: flag(false, "exit 0 once everything that was in the topic at start is consumed"),
  MEMORY_LIMIT_MB: wholeNumber(
    256,
    0,
    1_000_000,
    "exit 3 when resident memory (RSS) passes this, as a pod is killed at its limit (0: off)",
  ),
  STATUS_INTERVAL_MS: wholeNumber(500, 50, 3_600_000, "how often to print the status line"),
  STATUS_FORMAT: choice(
    ["text", "json"],
    "text",
    "status lines as text for people or JSON for tools",
  ),
};

const EXIT_MEMORY_LIMIT = 3; // the same code in every consumer: "killed" at the memory ceiling

// ---- Main flow ----
async function main() {
  const settings = loadSettings(settingsShape);
  const topic = settings.KAFKA_TOPIC;
  const kafka = new Kafka({
    clientId: "consumer-fast",
    brokers: settings.KAFKA_BROKERS.split(","),
    logLevel: logLevel.WARN,
    connectionTimeout: 3_000,
    retry: { retries: 5, maxRetryTime: 5_000 },
  });
  const consumer = kafka.consumer({ groupId: settings.KAFKA_GROUP_ID });
  const stats = { started: performance.now(), processed: 0 };
  const memory = watchMemory(settings.MEMORY_LIMIT_MB);
  adviseOnHeap(settings.MEMORY_LIMIT_MB);

  const endAtStart = await connectAndReadEnds(kafka, consumer, settings);
  const position = new Map<number, number>(); // partition → next offset to consume
  let stopping = false;

  const printStatus = () => {
    const seconds = (performance.now() - stats.started) / 1_000;
    const rate = stats.processed / seconds;
    const status = {
      type: "status",
      elapsedS: round(seconds, 1),
      processed: stats.processed,
      ratePerSec: Math.round(rate),
      msPerMessage: stats.processed ? round((seconds * 1_000) / stats.processed, 3) : null,
      ...memory.figures(),
    };
    console.log(
      settings.STATUS_FORMAT === "json"
        ? JSON.stringify(status)
        : `[fast] ${status.elapsedS.toFixed(1)}s processed ${fmt(status.processed)} (${fmt(status.ratePerSec)}/s, ${status.msPerMessage ?? "-"} ms/msg) | ${memory.describe()}`,
    );
  };

  const finish = async (exitReason: string, exitCode: number) => {
    if (stopping) return;
    stopping = true;
    clearInterval(statusTimer);
    memory.stop();
    printStatus();
    const seconds = (performance.now() - stats.started) / 1_000; // leaving the group not included
    if (exitCode !== EXIT_MEMORY_LIMIT) await consumer.disconnect().catch(() => {});
    console.log(
      JSON.stringify({
        type: "summary",
        script: "consumer-fast",
        runtime: runtime(),
        processed: stats.processed,
        durationMs: Math.round(seconds * 1_000),
        ratePerSec: Math.round(stats.processed / seconds),
        peakRssMb: memory.peakRssMb(),
        peakHeapMb: memory.peakHeapMb(),
        memoryLimitMb: settings.MEMORY_LIMIT_MB,
        memoryLimitExceeded: exitCode === EXIT_MEMORY_LIMIT,
        exitReason,
        exitCode,
      }),
    );
    process.exit(exitCode);
  };

  // STOP_AT_END: done when every assigned partition has reached where it ended at start.
  const caughtUp = () =>
    endAtStart !== undefined &&
    startAt !== undefined &&
    [...startAt].every(
      ([partition, start]) =>
        Math.max(start, position.get(partition) ?? 0) >= (endAtStart.get(partition) ?? 0),
    );
  let startAt: Map<number, number> | undefined; // assigned partition → where it started
  consumer.on(consumer.events.GROUP_JOIN, async ({ payload }) => {
    if (!endAtStart) return;
    const assigned = payload.memberAssignment[topic] ?? [];
    const starts = await startOffsets(
      kafka,
      settings.KAFKA_GROUP_ID,
      topic,
      settings.FROM_BEGINNING,
    );
    startAt = new Map(assigned.map((partition) => [partition, starts.get(partition) ?? 0]));
    if (caughtUp()) void finish("caught up with the end of the topic", 0);
  });

  const statusTimer = setInterval(printStatus, settings.STATUS_INTERVAL_MS);
  memory.onExceeded((figures) => {
    console.log(
      `MEMORY LIMIT EXCEEDED: rss ${figures.rssMb} MB > ${settings.MEMORY_LIMIT_MB} MB (heap ${figures.heapMb} MB); exiting with code ${EXIT_MEMORY_LIMIT}, as a pod would be killed`,
    );
    void finish("memory limit exceeded", EXIT_MEMORY_LIMIT);
  });
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => void finish(`stopped by ${signal}`, 0));
  }

  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      stats.processed++;
      position.set(partition, Number(message.offset) + 1);
      if (caughtUp()) void finish("caught up with the end of the topic", 0);
    },
  });
}

// ---- Helpers ----

type FastSettings = z.infer<z.ZodObject<typeof settingsShape>>;

/** Connects and subscribes; with STOP_AT_END, returns where each partition ended at start. */
async function connectAndReadEnds(
  kafka: Kafka,
  consumer: ReturnType<Kafka["consumer"]>,
  settings: FastSettings,
): Promise<Map<number, number> | undefined> {
  const admin = kafka.admin();
  try {
    await admin.connect();
    await consumer.connect();
    await consumer.subscribe({
      topics: [settings.KAFKA_TOPIC],
      fromBeginning: settings.FROM_BEGINNING,
    });
    if (!settings.STOP_AT_END) return undefined;
    const offsets = await admin.fetchTopicOffsets(settings.KAFKA_TOPIC);
    return new Map(offsets.map((p) => [p.partition, Number(p.high)]));
  } catch (error) {
    console.error(`Kafka is unreachable at ${settings.KAFKA_BROKERS}: ${(error as Error).message}`);
    process.exit(1);
  } finally {
    await admin.disconnect();
  }
}

/** The offset each partition starts from: committed, else the oldest (or newest). */
async function startOffsets(
  kafka: Kafka,
  groupId: string,
  topic: string,
  fromBeginning: boolean,
): Promise<Map<number, number>> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
    const bounds = await admin.fetchTopicOffsets(topic);
    return new Map(
      bounds.map((p) => {
        const offset = Number(
          committed?.partitions.find((c) => c.partition === p.partition)?.offset ?? -1,
        );
        return [p.partition, offset >= 0 ? offset : Number(fromBeginning ? p.low : p.high)];
      }),
    );
  } finally {
    await admin.disconnect();
  }
}

interface MemoryFigures {
  rssMb: number;
  heapMb: number;
  maxRssMb: number;
  maxHeapMb: number;
}

/**
 * Watches resident memory (RSS: what a container's limit counts) and heap every
 * 100 ms, keeps the peaks, and calls back once when RSS passes the ceiling.
 */
function watchMemory(limitMb: number) {
  let current = { rssMb: 0, heapMb: 0 };
  let maxRssMb = 0;
  let maxHeapMb = 0;
  let exceeded: ((figures: MemoryFigures) => void) | undefined;
  const sample = () => {
    const { rss, heapUsed } = process.memoryUsage();
    current = { rssMb: Math.round(rss / 2 ** 20), heapMb: Math.round(heapUsed / 2 ** 20) };
    maxRssMb = Math.max(maxRssMb, current.rssMb);
    maxHeapMb = Math.max(maxHeapMb, current.heapMb);
    if (limitMb > 0 && current.rssMb > limitMb && exceeded) {
      const callback = exceeded;
      exceeded = undefined;
      callback(figures());
    }
  };
  const figures = (): MemoryFigures => ({ ...current, maxRssMb, maxHeapMb });
  sample();
  const timer = setInterval(sample, 100);
  return {
    figures,
    peakRssMb: () => maxRssMb,
    peakHeapMb: () => maxHeapMb,
    onExceeded: (callback: (figures: MemoryFigures) => void) => {
      exceeded = callback;
    },
    describe: () =>
      `rss ${current.rssMb} MB (max ${maxRssMb}${limitMb ? ` / limit ${limitMb}` : ""}) heap ${current.heapMb} MB (max ${maxHeapMb})`,
    stop: () => clearInterval(timer),
  };
}

/**
 * V8 (Node, Deno) sizes its heap from the machine, not from MEMORY_LIMIT_MB, and on a
 * large machine grows it far beyond what it needs. In a container Node sizes it from
 * the limit itself (Deno does not); elsewhere it has to be told.
 */
function adviseOnHeap(limitMb: number) {
  if (limitMb === 0 || "Bun" in globalThis) return;
  const heapLimitMb = Math.round(v8.getHeapStatistics().heap_size_limit / 2 ** 20);
  if (heapLimitMb <= 2 * limitMb) return;
  const flags = [`--max-old-space-size=${limitMb}`, "--max-semi-space-size=1"];
  console.error(
    `note: the heap may grow to ${heapLimitMb} MB here, far above MEMORY_LIMIT_MB=${limitMb}. To behave as in a pod with that limit, start with NODE_OPTIONS="${flags.join(" ")}" (Node) or DENO_V8_FLAGS=${flags.join(",")} (Deno).`,
  );
}

function runtime(): string {
  if ("Bun" in globalThis) return `bun ${process.versions.bun}`;
  if ("Deno" in globalThis) return `deno ${process.versions.deno}`;
  return `node ${process.versions.node}`;
}

function fmt(n: number): string {
  return n.toLocaleString("en-US");
}

function round(n: number, digits: number): number {
  return Number(n.toFixed(digits));
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

function flag(fallback: boolean, doc: string) {
  return z.stringbool({ error: "expected true or false" }).default(fallback).describe(doc);
}

function choice<const T extends readonly [string, ...string[]]>(
  values: T,
  fallback: T[number],
  doc: string,
) {
  return z
    .enum(values, { error: `expected one of ${values.join(", ")}` })
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
    console.log(
      `Exit codes: 0 done, 1 Kafka unreachable, 2 bad setting, ${EXIT_MEMORY_LIMIT} memory limit exceeded.`,
    );
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
