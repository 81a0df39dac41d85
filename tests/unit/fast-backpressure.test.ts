// consumer-fast.ts and consumer-backpressure.ts without a broker: the fixes of issue 14
// (short status line, what a failed start says, no noise on a normal run, no async
// event listener, a header whose defaults are the scripts' own).
import { readFileSync } from "node:fs";
import kafkajs, { type LogEntry, logLevel } from "kafkajs";
import { afterEach, describe, expect, it, vi } from "vitest";
import * as backpressure from "../../consumer-backpressure.ts";
import * as fast from "../../consumer-fast.ts";
import * as solved from "../../consumer-solved.ts";

const { KafkaJSConnectionError, KafkaJSNumberOfRetriesExceeded, KafkaJSProtocolError } = kafkajs;
const root = new URL("../../", import.meta.url);
const source = (file: string) => readFileSync(new URL(file, root), "utf8");

afterEach(() => {
  vi.restoreAllMocks();
});

describe("the status line fits a post (about 120 characters)", () => {
  it("consumer-fast.ts, a run of 100 million messages", () => {
    const line = fast.statusLine({
      elapsedS: 3_599.9,
      processed: 100_000_000,
      ratePerSec: 123_456,
      rssMb: 1_024,
    });
    expect(line).toBe("[fast] 3599.9s processed 100,000,000 (123,456/s) | rss 1024 MB");
    expect(line.length).toBeLessThanOrEqual(120);
  });

  it("consumer-backpressure.ts, a long run with failed calls (malformed ones: in the JSON)", () => {
    const figures = { elapsedS: 3_599.9, ratePerSec: 10_000, rssMb: 10_240 };
    const counts = { received: 1_000_000, processed: 880_000, failed: 10_000, malformed: 100 };
    const line = backpressure.statusLine({ ...figures, ...counts, inFlight: 109_900 });
    expect(line).toBe(
      "[backpressure] 3599.9s received 1,000,000 processed 880,000 (10,000/s) failed 10,000 in flight 109,900 | rss 10240 MB",
    );
    expect(line.length).toBeLessThanOrEqual(120);
  });

  it("consumer-backpressure.ts names failed calls only when there are some", () => {
    const figures = { elapsedS: 0.8, ratePerSec: 0, rssMb: 288 };
    const counts = { received: 4_530, processed: 0, failed: 0, malformed: 0, inFlight: 4_530 };
    expect(backpressure.statusLine({ ...figures, ...counts })).toBe(
      "[backpressure] 0.8s received 4,530 processed 0 (0/s) in flight 4,530 | rss 288 MB",
    );
  });
});

// The three failures as KafkaJS 2.2.4 reports them from connect() and subscribe()
// (seen on a real broker: a missing topic with allowAutoTopicCreation off, a closed port).
const protocolError = (message: string, type: string, code: number, retriable: boolean) =>
  new KafkaJSProtocolError(Object.assign(new Error(message), { type, code, retriable }));
const missingTopic = protocolError(
  "This server does not host this topic-partition",
  "UNKNOWN_TOPIC_OR_PARTITION",
  3,
  true,
);
const refused = new KafkaJSNumberOfRetriesExceeded(
  new KafkaJSConnectionError("Connection error: connect ECONNREFUSED 127.0.0.1:1"),
  { retryCount: 5, retryTime: 5_000 },
);
const invalidTopic = protocolError(
  "The request attempted to perform an operation on an invalid topic",
  "INVALID_TOPIC_EXCEPTION",
  17,
  false,
);

const target = (brokers: string, topic: string) => ({ KAFKA_BROKERS: brokers, KAFKA_TOPIC: topic });

describe.each([
  ["consumer-fast.ts", fast],
  ["consumer-backpressure.ts", backpressure],
  ["consumer-solved.ts", solved],
])("%s", (_file, script) => {
  it("says the topic is missing when it is, not that Kafka is unreachable", () => {
    const message = script.connectFailure(missingTopic, target("kafka:9092", "ORDERS"));
    expect(message).toMatch(/^Topic ORDERS does not exist at kafka:9092/);
    expect(message).not.toMatch(/unreachable/);
  });

  it("says Kafka is unreachable when the connection failed", () => {
    expect(script.connectFailure(refused, target("127.0.0.1:1", "ORDERS"))).toBe(
      "Kafka is unreachable at 127.0.0.1:1: Connection error: connect ECONNREFUSED 127.0.0.1:1",
    );
  });

  it("passes any other failure on as Kafka said it", () => {
    const message = script.connectFailure(invalidTopic, target("kafka:9092", "bad name!"));
    expect(message).toMatch(/invalid topic/);
    expect(message).not.toMatch(/unreachable|does not exist/);
  });

  it("hides the coordinator's transient errors of a fresh broker, shows real ones", () => {
    const printed = vi.spyOn(console, "error").mockImplementation(() => {});
    const log = script.quietTransientErrors();
    const entry = (level: logLevel, label: string, error: string): LogEntry => ({
      namespace: "Connection",
      level,
      label,
      log: { timestamp: "2026-11-30T13:09:11.551Z", message: "Response", error },
    });
    log(entry(logLevel.ERROR, "ERROR", "The group coordinator is not available"));
    log(entry(logLevel.ERROR, "ERROR", "The coordinator is loading and hence can't process"));
    log(entry(logLevel.ERROR, "ERROR", "This is not the correct coordinator for this group"));
    log(entry(logLevel.INFO, "INFO", "Consumer has joined the group"));
    expect(printed).not.toHaveBeenCalled();

    // A crash for one of them, as a consumer in a fresh broker's first group meets it,
    // and the restart KafkaJS announces after it.
    const crash =
      "Crash: KafkaJSProtocolError: The coordinator is loading and hence can't process requests for this group";
    log({
      ...entry(logLevel.ERROR, "ERROR", ""),
      namespace: "Consumer",
      log: { timestamp: "t", message: crash },
    });
    log({
      ...entry(logLevel.ERROR, "ERROR", ""),
      namespace: "Consumer",
      log: { timestamp: "t", message: "Restarting the consumer in 300ms" },
    });
    expect(printed).not.toHaveBeenCalled();

    log(entry(logLevel.ERROR, "ERROR", "This server does not host this topic-partition"));
    expect(printed).toHaveBeenCalledTimes(1);
    // A crash for anything else is shown, and so is the restart after it.
    log({
      ...entry(logLevel.ERROR, "ERROR", ""),
      namespace: "Consumer",
      log: { timestamp: "t", message: "Crash: KafkaJSConnectionError: Connection timeout" },
    });
    log({
      ...entry(logLevel.ERROR, "ERROR", ""),
      namespace: "Consumer",
      log: { timestamp: "t", message: "Restarting the consumer in 300ms" },
    });
    expect(printed).toHaveBeenCalledTimes(3);
    printed.mockClear();
    log(entry(logLevel.ERROR, "ERROR", "This server does not host this topic-partition"));
    expect(printed).toHaveBeenCalledTimes(1);
    expect(JSON.parse(String(printed.mock.calls[0]?.[0]))).toMatchObject({
      level: "ERROR",
      message: "[Connection] Response",
      error: "This server does not host this topic-partition",
    });
  });

  it("hides the runtime's TimeoutNegativeWarning and no other warning", async () => {
    const before = process.listeners("warning");
    process.removeAllListeners("warning");
    const printer = vi.fn();
    process.on("warning", printer);
    try {
      script.hideTimeoutNegativeWarning();
      // What the runtime emits for KafkaJS's negative timer (once per process, so emitted
      // here by hand rather than by a setTimeout), then any other warning.
      const negative = "-1796044133920 is a negative number.\nTimeout duration was set to 1.";
      process.emitWarning(negative, "TimeoutNegativeWarning");
      process.emitWarning("something else", "OtherWarning");
      await new Promise((resolve) => setTimeout(resolve, 10));
      expect(printer.mock.calls.map(([warning]) => (warning as Error).name)).toEqual([
        "OtherWarning",
      ]);
    } finally {
      process.removeAllListeners("warning");
      for (const listener of before) process.on("warning", listener);
    }
  });
});

describe("no async event listener (a rejection in one would crash the process)", () => {
  it.each(["consumer-fast.ts", "consumer-backpressure.ts"])("%s", (file) => {
    expect(source(file)).not.toMatch(/\.on\([^)]*?,\s*async\b/);
  });
});

describe("consumer-backpressure.ts's header gives today's defaults", () => {
  /** A setting's default in the script that owns it, read from its settings line. */
  const defaultOf = (name: string): number => {
    for (const file of ["consumer-backpressure.ts", "producer.ts", "mock-api.ts"]) {
      const match = source(file).match(new RegExp(`\\b${name}: \\w+\\(\\s*([\\d_]+)`));
      if (match?.[1]) return Number(match[1].replaceAll("_", ""));
    }
    throw new Error(`no script has a setting ${name}`);
  };
  const header = source("consumer-backpressure.ts").split("*/")[0] ?? "";
  const claims = [...header.matchAll(/\b([A-Z][A-Z_]+)=(\d+)\b/g)];

  it("names the defaults the failure depends on", () => {
    expect(claims.map(([, name]) => name).sort()).toEqual(
      ["LATENCY_MS", "MEMORY_LIMIT_MB", "MESSAGES", "PAYLOAD_BYTES"].sort(),
    );
  });

  it.each(claims.map(([, name = "", value]) => [name, Number(value)] as const))(
    "%s=%d is the default",
    (name, value) => {
      expect(value).toBe(defaultOf(name));
    },
  );
});
