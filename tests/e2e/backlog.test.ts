// @module-tag full
// Memory must not grow with the backlog: the same consumer over a backlog five times
// longer peaks within 15% of the shorter one. It runs beside other files: the heap a
// runtime keeps is set by what it allocates, not by how fast it runs, so a machine busy
// during one run and not the other does not move the peaks apart.
import { expect, inject, it } from "vitest";
import { podHeapEnv } from "../../scripts/runtimes.ts";
import {
  type ConsumerRun,
  conditions,
  expectProcessedEverything,
  recordRun,
  runSolved,
} from "../support/consumers.ts";
import { uniqueName } from "../support/kafka.ts";
import { produce, startMockApi } from "../support/services.ts";

const brokers = inject("kafkaBrokers");

it("deno: the solved consumer's peak RSS for a 5x larger backlog differs by less than 15%", async () => {
  // A fast API (about 1,700 msg/s here), so both runs are long: a peak is the
  // highest of many garbage-collection cycles, and the 1x run needs enough of them
  // (over 20 s) to reach the steady state's peak, or the comparison measures how
  // many cycles each run sampled rather than growth. Small events: the backlog's
  // length is what is under test. Deno, because with the V8 budget the tests give
  // it its peak repeats within 3 MB from run to run (147-150 MB in five runs);
  // Bun's varied more (140-149 MB for 1x, 150-166 MB for 5x, in three runs).
  const fastApi = await startMockApi({ LATENCY_MS: "100", JITTER_MS: "20" });
  try {
    const run = async (count: number, label: string) => {
      const backlog = await produce(brokers, uniqueName(`backlog-${label}`), {
        messages: count,
        payloadBytes: 1_024,
      });
      const env = {
        MEMORY_LIMIT_MB: String(conditions.ceilingMb),
        ...podHeapEnv("deno", conditions.ceilingMb),
        CONCURRENCY: "200",
      };
      const solved: ConsumerRun = { runtime: "deno", brokers, backlog, api: fastApi, env };
      const result = await runSolved(solved);
      recordRun(`backlog ${label}`, "deno", "solved", backlog, result);
      await expectProcessedEverything(result, solved);
      return result;
    };
    const small = await run(40_000, "1x");
    const large = await run(200_000, "5x");
    const difference = Math.abs(large.observedPeakRssMb - small.observedPeakRssMb);
    expect(difference / small.observedPeakRssMb).toBeLessThan(0.15);
  } finally {
    await fastApi.stop();
  }
}, 420_000); // about 2½ minutes: 240,000 messages at the API's pace
