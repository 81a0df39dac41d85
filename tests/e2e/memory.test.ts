// The regression suite the project exists for: on a real broker, with the same
// backlog, message size, API latency and memory ceiling, the unbounded consumer passes
// the ceiling and the solved one stays well under it while it processes everything,
// on Bun, Deno and Node. Memory is measured from outside (/proc/<pid>/status).
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { podHeapEnv, type Runtime, runtimes } from "../../scripts/runtimes.ts";
import { type RunResult, runScript } from "../support/child.ts";
import { recordFigure } from "../support/figures.ts";
import { committedOffsets, endOffsets, uniqueName } from "../support/kafka.ts";
import {
  type Backlog,
  consumerEnv,
  type MockApi,
  produce,
  startMockApi,
} from "../support/services.ts";

const brokers = inject("kafkaBrokers");

// One set of conditions for both consumers. The API is slow (2 s a call), so a consumer
// that does not wait keeps thousands of calls open; the solved one keeps CONCURRENCY.
const ceilingMb = 320;
const latencyMs = 2_000;
const messages = 6_000;
const payloadBytes = 16_384;
const concurrency = 300; // the solved consumer's; the unbounded one has no such setting

let api: MockApi;
beforeAll(async () => {
  api = await startMockApi({ LATENCY_MS: String(latencyMs), JITTER_MS: "100" });
});
afterAll(async () => {
  await api?.stop();
});

/** The largest rise of RSS between two samples: how much one sampling interval can miss. */
function largestStepMb(run: RunResult): number {
  let step = 0;
  for (let i = 1; i < run.samples.length; i++) {
    step = Math.max(step, (run.samples[i]?.rssMb ?? 0) - (run.samples[i - 1]?.rssMb ?? 0));
  }
  return step;
}

function record(
  caseName: string,
  runtime: Runtime,
  consumer: string,
  backlog: Backlog,
  run: RunResult,
  note?: string,
) {
  recordFigure({
    case: caseName,
    runtime,
    consumer,
    messages: backlog.messages,
    observedPeakRssMb: run.observedPeakRssMb,
    reportedPeakRssMb: Number(run.summary?.peakRssMb),
    ceilingMb: Number(run.summary?.memoryLimitMb),
    seconds: run.durationMs / 1_000,
    exit: run.signal ?? String(run.code),
    note,
  });
}

/** Runs consumer-solved.ts to the end of the topic and checks it processed everything. */
async function runSolvedToEnd(
  runtime: Runtime,
  backlog: Backlog,
  extra: Record<string, string> = {},
  target: MockApi = api,
) {
  await target.reset();
  const groupId = `${backlog.topic}-solved`;
  const run = await runScript(runtime, "consumer-solved.ts", {
    env: consumerEnv(brokers, backlog.topic, groupId, {
      API_URL: target.usersUrl,
      CONCURRENCY: String(concurrency),
      MEMORY_LIMIT_MB: String(ceilingMb),
      STOP_AT_END: "true",
      ...podHeapEnv(runtime, ceilingMb),
      ...extra,
    }),
  });
  expect(run.code, run.stderr.slice(-2_000)).toBe(0);
  expect(run.summary).toMatchObject({
    processed: backlog.messages,
    deadLettered: 0,
    memoryLimitExceeded: false,
  });
  const stats = await target.stats();
  expect(stats.distinctIds).toBe(backlog.messages);
  expect((await target.ids()).sort()).toEqual([...backlog.ids].sort());
  expect(await committedOffsets(brokers, groupId, backlog.topic)).toEqual(
    await endOffsets(brokers, backlog.topic),
  );
  return run;
}

/** The script's own figure and the one seen from outside describe the same process. */
function expectReportAgrees(run: RunResult) {
  const reported = Number(run.summary?.peakRssMb);
  expect(reported).toBeGreaterThan(0);
  expect(Math.abs(reported - run.observedPeakRssMb)).toBeLessThanOrEqual(
    Math.max(16, 0.15 * run.observedPeakRssMb),
  );
}

describe.each(runtimes)("on %s, ceiling %i MB", (runtime) => {
  it("the unbounded consumer passes the ceiling and exits with code 3", async () => {
    const backlog = await produce(brokers, uniqueName(`unbounded-${runtime}`), {
      messages,
      payloadBytes,
    });
    const run = await runScript(runtime, "consumer-backpressure.ts", {
      env: consumerEnv(brokers, backlog.topic, `${backlog.topic}-group`, {
        API_URL: api.usersUrl,
        MEMORY_LIMIT_MB: String(ceilingMb),
        STOP_AT_END: "true",
        ...podHeapEnv(runtime, ceilingMb),
      }),
    });
    record("same backlog", runtime, "unbounded", backlog, run);
    expect(run.code, run.stderr.slice(-2_000)).toBe(3);
    expect(run.stdout).toMatch(/MEMORY LIMIT EXCEEDED: rss \d+ MB > 320 MB/);
    expect(run.summary).toMatchObject({ memoryLimitExceeded: true, exitCode: 3 });
    // Seen from outside: over the ceiling, or within one sampling step of it at exit.
    expect(run.observedPeakRssMb).toBeGreaterThanOrEqual(ceilingMb - largestStepMb(run) - 1);
    expectReportAgrees(run);
  });

  it("the solved consumer processes the whole backlog at least 25% under the ceiling", async () => {
    const backlog = await produce(brokers, uniqueName(`solved-${runtime}`), {
      messages,
      payloadBytes,
    });
    const run = await runSolvedToEnd(runtime, backlog);
    record("same backlog", runtime, "solved", backlog, run);
    expect(run.observedPeakRssMb).toBeLessThan(0.75 * ceilingMb);
    expectReportAgrees(run);
  });
});

describe("bounded, whatever the backlog and the message size", () => {
  it("bun: the solved consumer's peak RSS for a 5x larger backlog differs by less than 15%", async () => {
    // A fast API, so both runs reach their steady state and the long one stays long.
    const fastApi = await startMockApi({ LATENCY_MS: "100", JITTER_MS: "20" });
    try {
      const run = async (count: number, label: string) => {
        const backlog = await produce(brokers, uniqueName(`backlog-${label}`), {
          messages: count,
          payloadBytes: 4_096,
        });
        const result = await runSolvedToEnd("bun", backlog, {}, fastApi);
        record(`backlog ${label}`, "bun", "solved", backlog, result);
        return result;
      };
      const small = await run(10_000, "1x");
      const large = await run(50_000, "5x");
      const difference = Math.abs(large.observedPeakRssMb - small.observedPeakRssMb);
      expect(difference / small.observedPeakRssMb).toBeLessThan(0.15);
    } finally {
      await fastApi.stop();
    }
  });

  it("node: with messages ten times larger the byte cap pauses fetching and RSS stays under the ceiling", async () => {
    // 600 messages of 160 KB: a 94 MB backlog, six times the 16 MB byte cap.
    const backlog = await produce(brokers, uniqueName("large-messages"), {
      messages: 600,
      payloadBytes: payloadBytes * 10,
    });
    const run = await runSolvedToEnd("node", backlog);
    record("10x message size", "node", "solved", backlog, run);
    expect(run.observedPeakRssMb).toBeLessThan(ceilingMb);
    // The byte cap, not the message count, is what paused it: 600 messages never
    // reach HIGH_WATERMARK (2,000), yet it paused.
    expect(Number(run.summary?.pauses)).toBeGreaterThan(0);
    expect(Number(run.summary?.peakQueuedMb)).toBeLessThanOrEqual(
      8 + (payloadBytes * 10) / 2 ** 20,
    );
  });
});
