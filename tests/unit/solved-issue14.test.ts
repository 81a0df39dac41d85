// The bugs issue 14's read of consumer-solved.ts found, each pinned by a case that fails
// on the code before the fix: connect errors that all said "Kafka is unreachable", the
// LOW_WATERMARK help, `abandoned` counting processed messages, the 445-character status
// line. (WorkQueue's swallowed errors: solved-core.test.ts, "settles a job that throws";
// KafkaJS's ERROR for a coordinator still loading and Node's TimeoutNegativeWarning, in
// every consumer alike: fast-backpressure.test.ts.)
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { connectFailure, OffsetTracker, statusText } from "../../consumer-solved.ts";
import { projectRoot } from "../../scripts/kafka-jvm.ts";
import { runtimeBinary } from "../../scripts/runtimes.ts";

describe("connectFailure says what failed", () => {
  const target = (topic: string) => ({ KAFKA_BROKERS: "127.0.0.1:9092", KAFKA_TOPIC: topic });
  it("a missing topic is a missing topic, not an unreachable Kafka", () => {
    // As KafkaJS throws it after its retries: the protocol error as the cause.
    const protocol = {
      name: "KafkaJSProtocolError",
      type: "UNKNOWN_TOPIC_OR_PARTITION",
      message: "This server does not host this topic-partition",
    };
    const error = { name: "KafkaJSNumberOfRetriesExceeded", message: protocol.message };
    const said = connectFailure({ ...error, cause: protocol }, target("CREATE_USER"));
    expect(said).toMatch(/^Topic CREATE_USER does not exist at 127\.0\.0\.1:9092/);
    expect(said).not.toMatch(/unreachable/);
  });

  it("a refused connection is an unreachable Kafka, naming the address", () => {
    const cause = {
      name: "KafkaJSConnectionError",
      message: "connect ECONNREFUSED 127.0.0.1:9092",
    };
    const error = { name: "KafkaJSNonRetriableError", message: cause.message, cause };
    expect(connectFailure(error, target("t"))).toBe(
      "Kafka is unreachable at 127.0.0.1:9092: connect ECONNREFUSED 127.0.0.1:9092",
    );
  });

  it("a refusal of access, and anything else, say so rather than 'unreachable'", () => {
    const denied = {
      name: "KafkaJSProtocolError",
      type: "TOPIC_AUTHORIZATION_FAILED",
      message: "no",
    };
    expect(connectFailure(denied, target("t"))).toMatch(/refused this client access to topic t/);
    expect(connectFailure(new Error("odd"), target("t"))).not.toMatch(/unreachable/);
  });
});

describe("--help", () => {
  it("says LOW_WATERMARK also sets where the byte and uncommitted caps resume", async () => {
    const { stdout } = await promisify(execFile)(runtimeBinary("node"), [
      join(projectRoot, "consumer-solved.ts"),
      "--help",
    ]);
    const line = stdout.split("\n").find((l) => l.trim().startsWith("LOW_WATERMARK"));
    expect(line).toMatch(/byte/);
    expect(line).toMatch(/uncommitted/);
  });
});

describe("abandoned counts only what was not processed", () => {
  it("leaves out messages done behind an unfinished one", () => {
    // At a shutdown deadline: 0, 2 and 4 unfinished; 1 and 3 processed but, behind 0,
    // not committable. `uncommitted` (5) was what the summary called abandoned.
    const tracker = new OffsetTracker();
    const epoch = tracker.track(0, 0) as number;
    for (let offset = 1; offset < 5; offset++) tracker.track(0, offset);
    tracker.complete(0, 1, epoch);
    tracker.complete(0, 3, epoch);
    expect(tracker.uncommitted).toBe(5);
    expect(tracker.unfinished).toBe(3);
    tracker.complete(0, 0, epoch); // 0 and 1 committable now, 3 still behind 2
    expect(tracker.unfinished).toBe(2);
  });
});

describe("the status line", () => {
  it("fits in 120 characters on a long, busy, paused run at the default bounds", () => {
    const line = statusText({
      elapsedS: 3_599.9,
      processed: 1_234_567,
      ratePerSec: 2_345,
      queued: 2_000,
      inFlight: 200,
      limit: 200,
      paused: true,
      uncommitted: 10_000,
      deadLettered: 1_234,
      rssMb: 512,
    });
    expect(line).toMatch(/^\[solved\] 3599\.9s processed 1,234,567 /);
    expect(line.length).toBeLessThanOrEqual(120);
  });
});
