/**
 * consumer-fast.ts: the baseline. It consumes the topic and only counts; no HTTP call.
 *
 * How fast KafkaJS hands messages over on this runtime when nothing slow happens per
 * message, and how little memory that takes. Compare consumer-backpressure.ts (the same
 * loop plus one slow call per message) and consumer-solved.ts. It runs until stopped
 * (Ctrl-C or SIGTERM), with a status line every 500 ms and one line of JSON at the end.
 *
 * Run this one file alone (settings: --help):
 *   bun:  bun run consumer-fast.ts
 *   deno: deno add npm:kafkajs && deno run --allow-net --allow-env=KAFKA_BROKERS,KAFKA_TOPIC,KAFKA_GROUP_ID,FROM_BEGINNING,MEMORY_LIMIT_MB,STATUS_INTERVAL_MS,STATUS_FORMAT,NODE_ENV,KAFKAJS_LOG_LEVEL,KAFKAJS_DEBUG_PROTOCOL_BUFFERS,KAFKAJS_DEBUG_EXTENDED_PROTOCOL_BUFFERS consumer-fast.ts
 *   node: npm i kafkajs && npm pkg set type=module && node consumer-fast.ts        (Node 22.18 or later)
 */

import { type Consumer, Kafka, type LogEntry, logLevel } from "kafkajs";

const settings = readSettings(
  {
    KAFKA_BROKERS: text("localhost:9092", "comma-separated bootstrap servers"),
    KAFKA_TOPIC: text("CREATE_USER", "topic to consume"),
    KAFKA_GROUP_ID: text("consumer-fast", "consumer group"),
    FROM_BEGINNING: flag(true, "start at the oldest message when the group has no offset yet"),
    MEMORY_LIMIT_MB: number(256, "exit 3 when RSS passes this, as a pod dies (0: off)", 0, 1e6),
    STATUS_INTERVAL_MS: number(500, "how often to print the status line", 50, 3_600_000),
    STATUS_FORMAT: text("text", "status lines as text or json", /^\s*(text|json)\s*$/, "text|json"),
  },
  "0 stopped by Ctrl-C or SIGTERM, 1 Kafka failed, 2 bad setting, 3 memory limit exceeded",
);

const counts = { processed: 0 };

async function main() {
  hideTimeoutNegativeWarning();
  // 1. A consumer in a group. It reads the topic; it must not create it.
  const brokers = settings.KAFKA_BROKERS.split(",");
  const kafka = new Kafka({ clientId: "consumer-fast", brokers, logCreator: quietTransientErrors });
  const consumer = kafka.consumer({
    groupId: settings.KAFKA_GROUP_ID,
    allowAutoTopicCreation: false,
  });

  report(consumer); // status lines from now on; Ctrl-C or SIGTERM ends with the summary

  // 2. Join the group and subscribe, or say what failed.
  try {
    await consumer.connect();
    await consumer.subscribe({
      topic: settings.KAFKA_TOPIC,
      fromBeginning: settings.FROM_BEGINNING,
    });
  } catch (error) {
    console.error(connectFailure(error, settings.KAFKA_BROKERS, settings.KAFKA_TOPIC));
    process.exit(1);
  }

  // 3. Count each message KafkaJS hands over. Nothing else happens per message.
  await consumer.run({
    eachMessage: async () => {
      counts.processed++;
    },
  });
  // 4. It runs until Ctrl-C or SIGTERM: then the last status line, the summary, exit 0.
}

// ==== Instrumentation and plumbing: a reader may skip from here on ====

/** A status line now and then; at a signal or the memory limit, the summary and exit. */
function report(consumer: Consumer) {
  const started = performance.now();
  const memory = watchMemory(settings.MEMORY_LIMIT_MB, (rssMb) => {
    console.log(`MEMORY LIMIT EXCEEDED: rss ${rssMb} MB > ${settings.MEMORY_LIMIT_MB} MB; exit 3`);
    void stop("memory limit exceeded", 3);
  });
  const status = () => {
    const elapsedS = (performance.now() - started) / 1_000;
    const ratePerSec = Math.round(counts.processed / elapsedS);
    return { elapsedS, ...counts, ratePerSec, ...memory.figures };
  };
  const print = (s = status()) =>
    console.log(
      settings.STATUS_FORMAT === "json" ? JSON.stringify({ type: "status", ...s }) : statusLine(s),
    );
  const timer = setInterval(print, settings.STATUS_INTERVAL_MS);
  let stopping = false;
  const stop = async (exitReason: string, exitCode: number) => {
    if (stopping) return; // a second signal changes nothing
    stopping = true;
    clearInterval(timer);
    memory.stop();
    const last = status(); // the time it takes to leave the group is not counted
    print(last);
    if (exitCode === 0) await consumer.disconnect().catch(() => {});
    const { elapsedS, rssMb, heapMb, ...figures } = last;
    const durationMs = Math.round(elapsedS * 1_000);
    const limit = { memoryLimitMb: settings.MEMORY_LIMIT_MB, memoryLimitExceeded: exitCode === 3 };
    const about = { type: "summary", script: "consumer-fast", runtime: runtimeName() };
    console.log(
      JSON.stringify({ ...about, ...figures, durationMs, ...limit, exitReason, exitCode }),
    );
    process.exit(exitCode);
  };
  process.on("SIGINT", () => void stop("stopped by SIGINT", 0));
  process.on("SIGTERM", () => void stop("stopped by SIGTERM", 0));
}

type Figures = Record<"elapsedS" | "processed" | "ratePerSec" | "rssMb", number>;

/** One short status line, to read or to paste; STATUS_FORMAT=json has every figure. */
export function statusLine({ elapsedS, processed, ratePerSec, rssMb }: Figures) {
  const [done, rate] = [processed, ratePerSec].map((n) => n.toLocaleString("en-US"));
  return `[fast] ${elapsedS.toFixed(1)}s processed ${done} (${rate}/s) | rss ${rssMb} MB`;
}

// ---- KafkaJS on today's runtimes: the same copy in every consumer (tests/unit/drift.test.ts)
// says what failed, and stays quiet about states that are normal ----

/** What a failure to connect and subscribe means: no broker, no topic, no access, or else. */
export function connectFailure(error: unknown, brokers: string, topic: string): string {
  type Cause = { name?: string; type?: string; message?: string; cause?: Cause } | undefined;
  const chain: Cause[] = [];
  for (let e = error as Cause; e && chain.length < 5; e = e.cause) chain.push(e);
  const message = chain[0]?.message ?? String(error);
  const found = (pattern: RegExp) => chain.some((e) => pattern.test(`${e?.type} ${e?.name}`));
  if (found(/UNKNOWN_TOPIC_OR_PARTITION/)) {
    return `Topic ${topic} does not exist at ${brokers} (producer.ts creates it): ${message}`;
  }
  if (found(/AUTHORIZATION_FAILED|SASL/)) return `Kafka at ${brokers} refused us: ${message}`;
  if (found(/Connection|BrokerNotFound|NoBrokerAvailable/) || /ECONN|ENOTFOUND/.test(message)) {
    return `Kafka is unreachable at ${brokers}: ${message}`;
  }
  return `Kafka at ${brokers} failed while we subscribed to ${topic}: ${message}`;
}

/**
 * KafkaJS's warnings and errors, minus the states a fresh broker or a leader election
 * passes through, which KafkaJS retries by itself: a normal start, not a fault.
 */
export function quietTransientErrors() {
  const transient = /coordinator is (not available|loading)|not the correct coordinator|leader/i;
  return ({ level, label, namespace, log }: LogEntry) => {
    if (level > logLevel.WARN || transient.test(log.error ?? "")) return;
    console.error(
      JSON.stringify({ level: label, ...log, message: `[${namespace}] ${log.message}` }),
    );
  };
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

// ---- Memory figures: every consumer of this project carries the same copy
// (tests/unit/drift.test.ts keeps the copies identical) ----

/**
 * Samples resident memory (RSS: what a container's limit counts) and the JS heap every
 * 100 ms, keeps the peaks, and calls `onExceeded` once when RSS passes `limitMb`
 * (0: never), as a pod is killed at its limit.
 */
function watchMemory(limitMb: number, onExceeded: (rssMb: number) => void) {
  const figures = { rssMb: 0, heapMb: 0, peakRssMb: 0, peakHeapMb: 0 };
  const sample = () => {
    const { rss, heapUsed } = process.memoryUsage();
    figures.rssMb = Math.round(rss / 2 ** 20);
    figures.heapMb = Math.round(heapUsed / 2 ** 20);
    figures.peakRssMb = Math.max(figures.peakRssMb, figures.rssMb);
    figures.peakHeapMb = Math.max(figures.peakHeapMb, figures.heapMb);
    if (limitMb > 0 && figures.rssMb > limitMb) {
      clearInterval(timer);
      onExceeded(figures.rssMb);
    }
  };
  const timer = setInterval(sample, 100);
  sample();
  return { figures, stop: () => clearInterval(timer) };
}

function runtimeName(): string {
  const name = ["bun", "deno", "node"].find((r) => process.versions[r]) ?? "node";
  return `${name} ${process.versions[name]}`;
}

if (import.meta.main) await main();
