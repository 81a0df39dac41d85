// @module-tag full
// The regression suite the project exists for: on a real broker, with the same
// backlog, message size and memory ceiling and a slow API, the unbounded consumer passes
// the ceiling and the solved one stays well under it while it processes everything,
// on Bun, Deno and Node (the API: 20 s for the unbounded one, 5 s for the solved one,
// which must finish; support/consumers.ts says why). Memory is measured from outside
// (/proc/<pid>/status) and compared with what each script reports.
// tests/e2e/pod.test.ts runs the same cases under the kernel's limit instead of the
// scripts' own check. The cases run side by side (each with its own backlog, group and
// mock API): they mostly wait on the slow API.
// Whether memory grows with the backlog is tests/e2e/backlog.test.ts, run alone.
import { describe, expect, inject, it } from "vitest";
import { podHeapEnv, type Runtime, runtimes } from "../../scripts/runtimes.ts";
import type { RunResult } from "../support/child.ts";
import {
  type ConsumerRun,
  conditions,
  expectProcessedEverything,
  recordRun,
  runSolved,
  runUnbounded,
} from "../support/consumers.ts";
import { uniqueName } from "../support/kafka.ts";
import { type MockApi, produce, startMockApi } from "../support/services.ts";

const brokers = inject("kafkaBrokers");
const { ceilingMb, latencyMs, unboundedLatencyMs, messages, payloadBytes } = conditions;

/** A slow API, one per case: cases side by side must not share its counts. */
async function withSlowApi<T>(
  use: (api: MockApi) => Promise<T>,
  latency: number = latencyMs,
): Promise<T> {
  const api = await startMockApi({ LATENCY_MS: String(latency), JITTER_MS: "100" });
  try {
    return await use(api);
  } finally {
    await api.stop();
  }
}

/** The scripts' own ceiling, and the heap settings a pod with that limit gives V8. */
const ownCeiling = (runtime: Runtime) => ({
  MEMORY_LIMIT_MB: String(ceilingMb),
  ...podHeapEnv(runtime, ceilingMb),
});

/** The script's own figure and the one seen from outside describe the same process. */
function expectReportAgrees(run: RunResult) {
  const reported = Number(run.summary?.peakRssMb);
  expect(reported).toBeGreaterThan(0);
  expect(Math.abs(reported - run.observedPeakRssMb)).toBeLessThanOrEqual(
    Math.max(16, 0.15 * run.observedPeakRssMb),
  );
}

describe.concurrent.each(runtimes)("on %s, ceiling 320 MB", (runtime) => {
  it("the unbounded consumer passes the ceiling and exits with code 3", () =>
    withSlowApi(async (api) => {
      const backlog = await produce(brokers, uniqueName(`unbounded-${runtime}`), {
        messages,
        payloadBytes,
      });
      const run = await runUnbounded({ runtime, brokers, backlog, api, env: ownCeiling(runtime) });
      recordRun("own ceiling", runtime, "unbounded", backlog, run);
      expect(run.code, run.stderr.slice(-2_000)).toBe(3);
      expect(run.stdout).toMatch(/MEMORY LIMIT EXCEEDED: rss \d+ MB > 320 MB/);
      expect(run.summary).toMatchObject({ memoryLimitExceeded: true, exitCode: 3 });
      // Seen from outside (the kernel's VmHWM, read every 10 ms): near the ceiling at exit,
      // by a margin fixed in advance rather than taken from this run. The script checks
      // every 100 ms; even Node's pile-up (about 100 MB/s here) rises under 32 MB in that.
      expect(run.observedPeakRssMb).toBeGreaterThanOrEqual(0.9 * ceilingMb);
      expectReportAgrees(run);
    }, unboundedLatencyMs));

  it("the solved consumer processes the whole backlog at least 25% under the ceiling", () =>
    withSlowApi(async (api) => {
      const backlog = await produce(brokers, uniqueName(`solved-${runtime}`), {
        messages,
        payloadBytes,
      });
      const solved: ConsumerRun = { runtime, brokers, backlog, api, env: ownCeiling(runtime) };
      const run = await runSolved(solved);
      recordRun("own ceiling", runtime, "solved", backlog, run);
      await expectProcessedEverything(run, solved);
      expect(run.summary).toMatchObject({ memoryLimitExceeded: false });
      expect(run.observedPeakRssMb).toBeLessThan(0.75 * ceilingMb);
      expectReportAgrees(run);
    }));
});

describe.concurrent("bounded, whatever the message size", () => {
  it("node: with messages ten times larger the byte cap pauses fetching and RSS stays under the ceiling", () =>
    withSlowApi(async (api) => {
      // 600 messages of 160 KB: a 94 MB backlog, six times the 16 MB byte cap.
      const backlog = await produce(brokers, uniqueName("large-messages"), {
        messages: 600,
        payloadBytes: payloadBytes * 10,
      });
      const solved: ConsumerRun = {
        runtime: "node",
        brokers,
        backlog,
        api,
        env: ownCeiling("node"),
      };
      const run = await runSolved(solved);
      recordRun("10x message size", "node", "solved", backlog, run);
      await expectProcessedEverything(run, solved);
      expect(run.observedPeakRssMb).toBeLessThan(ceilingMb);
      // The byte cap, not the message count, is what paused it: 600 messages never
      // reach HIGH_WATERMARK (2,000), yet it paused.
      expect(Number(run.summary?.pauses)).toBeGreaterThan(0);
      // Queued and running messages together stayed within MAX_BUFFERED_BYTES (16 MB by
      // default) plus at most one message.
      expect(Number(run.summary?.peakBufferedMb)).toBeLessThanOrEqual(
        16 + (payloadBytes * 10) / 2 ** 20,
      );
    }));
});
