// The same regression cases as memory.test.ts, but the verdict comes from the kernel,
// as in a Kubernetes pod: each consumer runs in its own memory cgroup with the scripts'
// own ceiling check turned off. The unbounded consumer must be OOM-killed, the solved
// one must finish with no OOM kill, on Bun, Deno and Node. Where this machine cannot
// make cgroups, these cases are skipped with the reason, never passed.
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import {
  type Cgroup,
  cgroupSupport,
  createCgroup,
  listCgroups,
  oomKilled,
} from "../../scripts/cgroup.ts";
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

const { ceilingMb: limitMb, latencyMs, messages, payloadBytes } = conditions;
const support = await cgroupSupport();
if (!support.ok) console.warn(`[pod.test] kernel-limit cases not run: ${support.reason}`);

/**
 * The scripts' own check off; the heap settings a runtime gets in a pod. Node reads the
 * cgroup's limit and sizes its heap by itself; Deno does not, so a Deno user has to pass
 * the flags, as here.
 */
const inPod = (runtime: Runtime): Record<string, string> => ({
  MEMORY_LIMIT_MB: "0",
  ...(runtime === "deno" ? podHeapEnv("deno", limitMb) : {}),
});

/** Runs `body` with a fresh cgroup and always removes the cgroup afterwards. */
async function withCgroup<T>(
  options: { memoryLimitMb: number; cpuQuota?: number; name: string },
  body: (cgroup: Cgroup) => Promise<T>,
): Promise<T> {
  const cgroup = await createCgroup(options);
  try {
    return await body(cgroup);
  } finally {
    await cgroup.remove();
  }
}

function note(stats: { peakMb: number; oomKills: number }) {
  return `cgroup peak ${stats.peakMb.toFixed(0)} MB, OOM kills ${stats.oomKills}`;
}

describe.skipIf(!support.ok)(
  `under the kernel's limit (${support.ok ? `cgroup v${support.version}` : "n/a"}, 320 MB)`,
  () => {
    let api: MockApi;
    beforeAll(async () => {
      api = await startMockApi({ LATENCY_MS: String(latencyMs), JITTER_MS: "100" });
    });
    afterAll(async () => {
      await api?.stop();
      // Nothing of this run left behind, passed or failed.
      expect((await listCgroups()).filter((path) => path.includes(`/kbp-${process.pid}-`))).toEqual(
        [],
      );
    });

    describe.each(runtimes)("on %s", (runtime) => {
      it("the unbounded consumer is OOM-killed", async () => {
        const backlog = await produce(brokers, uniqueName(`pod-unbounded-${runtime}`), {
          messages,
          payloadBytes,
        });
        await withCgroup(
          { memoryLimitMb: limitMb, name: `unbounded-${runtime}` },
          async (cgroup) => {
            const run = await runUnbounded({
              runtime,
              brokers,
              backlog,
              api,
              env: inPod(runtime),
              wrap: cgroup.wrap,
            });
            const stats = await cgroup.stats();
            recordRun("kernel limit", runtime, "unbounded", backlog, run, {
              ceilingMb: limitMb,
              note: note(stats),
            });
            expect(oomKilled(run, stats), `exit ${run.code}/${run.signal}, ${note(stats)}`).toBe(
              true,
            );
            expect(run.signal).toBe("SIGKILL");
          },
        );
      });

      it("the solved consumer finishes the backlog with no OOM kill", async () => {
        const backlog = await produce(brokers, uniqueName(`pod-solved-${runtime}`), {
          messages,
          payloadBytes,
        });
        await withCgroup({ memoryLimitMb: limitMb, name: `solved-${runtime}` }, async (cgroup) => {
          const solved: ConsumerRun = {
            runtime,
            brokers,
            backlog,
            api,
            env: inPod(runtime),
            wrap: cgroup.wrap,
          };
          const run = await runSolved(solved);
          const stats = await cgroup.stats();
          recordRun("kernel limit", runtime, "solved", backlog, run, {
            ceilingMb: limitMb,
            note: note(stats),
          });
          expect(stats.oomKills).toBe(0);
          await expectProcessedEverything(run, solved);
        });
      });
    });

    it("node: a deliberately broken solved consumer (high watermark a million) is OOM-killed", async () => {
      // Proves the check can fail: the same script with its bounds lifted takes the whole
      // backlog into memory, and 24,000 messages of 16 KB (375 MB) do not fit in 320 MB.
      // (The regular 8,000 fit: their cgroup peak was 262 MB.)
      const backlog = await produce(brokers, uniqueName("pod-broken"), {
        messages: 24_000,
        payloadBytes,
      });
      await withCgroup({ memoryLimitMb: limitMb, name: "broken" }, async (cgroup) => {
        const run = await runSolved({
          runtime: "node",
          brokers,
          backlog,
          api,
          wrap: cgroup.wrap,
          env: {
            ...inPod("node"),
            HIGH_WATERMARK: "1000000",
            LOW_WATERMARK: "500000",
            MAX_BUFFERED_BYTES: String(2 ** 40),
            MAX_UNCOMMITTED: "100000000",
          },
        });
        const stats = await cgroup.stats();
        recordRun("kernel limit", "node", "solved, bounds lifted", backlog, run, {
          ceilingMb: limitMb,
          note: note(stats),
        });
        expect(oomKilled(run, stats), `exit ${run.code}/${run.signal}, ${note(stats)}`).toBe(true);
      });
    });

    it.skipIf(!support.ok || !support.cpu)(
      "node: with half a CPU core the solved consumer still finishes under the memory limit",
      async () => {
        // A fast API, so the consumer's own CPU is what limits its rate; the rate with and
        // without the quota is reported, not asserted.
        const fastApi = await startMockApi({ LATENCY_MS: "20", JITTER_MS: "5" });
        try {
          const rates: string[] = [];
          for (const cpuQuota of [undefined, 0.5]) {
            const backlog = await produce(brokers, uniqueName("pod-cpu"), {
              messages: 6_000,
              payloadBytes,
            });
            const label = cpuQuota ? "half a core" : "no CPU limit";
            await withCgroup({ memoryLimitMb: limitMb, cpuQuota, name: "cpu" }, async (cgroup) => {
              const solved: ConsumerRun = {
                runtime: "node",
                brokers,
                backlog,
                api: fastApi,
                env: inPod("node"),
                wrap: cgroup.wrap,
              };
              const run: RunResult = await runSolved(solved);
              const stats = await cgroup.stats();
              const rate = `${run.summary?.ratePerSec} msg/s`;
              rates.push(`${label}: ${rate}`);
              recordRun("kernel limit", "node", `solved, ${label}`, backlog, run, {
                ceilingMb: limitMb,
                note: `${rate}, ${note(stats)}`,
              });
              expect(stats.oomKills).toBe(0);
              await expectProcessedEverything(run, solved);
              if (cpuQuota) expect((await cgroup.cpuStats()).throttled).toBeGreaterThan(0);
            });
          }
          console.log(`[pod.test] solved consumer rate, ${rates.join("; ")}`);
        } finally {
          await fastApi.stop();
        }
      },
    );
  },
);
