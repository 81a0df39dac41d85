// scripts/cgroup.ts against the real kernel: a child over its pod-style memory limit is
// OOM-killed, one under it is not, a CPU quota throttles, and no cgroup outlives a test.
// Needs no Kafka; it is an e2e file because it runs real child processes.
import { existsSync, readFileSync } from "node:fs";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import {
  type Cgroup,
  type CgroupOptions,
  createCgroup,
  listCgroups,
  oomKilled,
  removeLeftoverCgroups,
} from "../../scripts/cgroup.ts";
import { runtimeBinary } from "../../scripts/runtimes.ts";
import { requireCgroupSupport, skipUnless } from "../support/cgroups.ts";
import { startCommand } from "../support/child.ts";

// Skipped where cgroups do not work, with the reason; under REQUIRE_CGROUPS=1 (CI), failed.
const support = await requireCgroupSupport("cgroup.test");
const title = support.ok
  ? `a child in a cgroup (v${support.version}, peak from ${support.peak})`
  : `a child in a cgroup (skipped: ${support.reason})`;

const node = runtimeBinary("node");

// Touches every page (fill 1): Buffer.alloc's zeroed memory may never become resident.
const allocate = `
const chunks = [];
for (let mb = 10; mb <= Number(process.env.ALLOC_MB); mb += 10) {
  chunks.push(Buffer.alloc(10 * 1024 * 1024, 1));
  await new Promise((resolve) => setTimeout(resolve, 20));
}
console.log(JSON.stringify({ allocatedMb: chunks.length * 10 }));
`;

// Fixed work, not fixed time: a quota makes it take longer, and the kernel counts that.
const busy = `
let sum = 0;
for (let i = 0; i < 50_000_000; i++) sum = (sum + i) % 1_000_003;
console.log(JSON.stringify({ sum }));
`;

/** Runs `code` on Node, inside `cgroup` when given. */
function runNode(code: string, cgroup?: Cgroup, env: Record<string, string> = {}) {
  const args = ["--input-type=module", "-e", code];
  // startCommand takes the command as is (only startScript applies options.wrap).
  const [command, wrapped] = cgroup ? cgroup.wrap(node, args) : [node, args];
  return startCommand(command, wrapped, { env }).done;
}

const created: Cgroup[] = [];

/** Runs `body` with a fresh cgroup, and removes it even when an assertion fails. */
async function withCgroup<T>(options: CgroupOptions, body: (cgroup: Cgroup) => Promise<T>) {
  const cgroup = await createCgroup(options);
  created.push(cgroup);
  try {
    return await body(cgroup);
  } finally {
    await cgroup.remove();
  }
}

/** This file's cgroups: other files running side by side have theirs. */
const isOurs = (path: string) => path.includes(`/kbp-${process.pid}-`);
const ours = async () => (await listCgroups()).filter(isOurs);

describe.skipIf(!support.ok)(title, () => {
  afterEach(() => {
    for (const cgroup of created.splice(0)) {
      for (const path of cgroup.paths) expect(existsSync(path), path).toBe(false);
    }
  });

  afterAll(async () => {
    const left = await ours();
    if (left.length > 0) await removeLeftoverCgroups(isOurs); // a leak is a failure, but clean it
    expect(left).toEqual([]);
  });

  it("is OOM-killed by the kernel when it touches 300 MB under a 100 MB limit", async () => {
    await withCgroup({ name: "oom", memoryLimitMb: 100 }, async (cgroup) => {
      const result = await runNode(allocate, cgroup, { ALLOC_MB: "300" });
      const stats = await cgroup.stats();
      console.info("[cgroup.test] 300 MB in 100 MB:", result.signal, result.code, stats);
      expect(result.signal, result.stderr).toBe("SIGKILL");
      expect(result.summary).toBeUndefined();
      expect(stats.oomKills).toBeGreaterThanOrEqual(1);
      expect(oomKilled(result, stats)).toBe(true);
      expect(stats.limitMb).toBe(100);
      expect(stats.peakMb).toBeGreaterThan(95);
      expect(stats.peakMb).toBeLessThanOrEqual(101);
    });
  });

  it("runs to the end when it touches 30 MB under a 100 MB limit", async () => {
    await withCgroup({ name: "fits", memoryLimitMb: 100 }, async (cgroup) => {
      const result = await runNode(allocate, cgroup, { ALLOC_MB: "30" });
      const stats = await cgroup.stats();
      console.info("[cgroup.test] 30 MB in 100 MB:", result.signal, result.code, stats);
      expect(result.code, result.stderr).toBe(0);
      expect(result.summary).toEqual({ allocatedMb: 30 });
      expect(stats.oomKills).toBe(0);
      expect(oomKilled(result, stats)).toBe(false);
      expect(stats.peakMb).toBeGreaterThan(25);
      expect(stats.peakMb).toBeLessThan(100);
    });
  });

  it("samples the usage for the peak where the kernel keeps no high-water mark", async () => {
    // Forced here, so the fallback that a v2 kernel before 5.19 needs runs on every machine.
    await withCgroup({ name: "sampled", memoryLimitMb: 100, samplePeak: true }, async (cgroup) => {
      const result = await runNode(allocate, cgroup, { ALLOC_MB: "40" });
      const stats = await cgroup.stats();
      console.info("[cgroup.test] 40 MB in 100 MB, sampled:", result.code, stats);
      expect(result.code, result.stderr).toBe(0);
      expect(stats.peakSource).toBe("sampled usage");
      expect(stats.peakMb).toBeGreaterThan(35);
      expect(stats.peakMb).toBeLessThan(100);
    });
    await withCgroup(
      { name: "sampled-oom", memoryLimitMb: 100, samplePeak: true },
      async (cgroup) => {
        const result = await runNode(allocate, cgroup, { ALLOC_MB: "300" });
        const stats = await cgroup.stats();
        expect(oomKilled(result, stats)).toBe(true);
        // Sampled every 5 ms while it climbs 10 MB every 20 ms: close to the limit.
        expect(stats.peakMb).toBeGreaterThan(80);
        expect(stats.peakMb).toBeLessThanOrEqual(101);
      },
    );
  });

  const noCpu =
    support.ok && skipUnless(support.cpu, "no writable cpu controller", "cgroup.test CPU quota");
  const cpuTitle = `is throttled by a CPU quota of a tenth of a core${noCpu ? " (skipped: no cpu controller)" : ""}`;
  it.skipIf(noCpu)(cpuTitle, async () => {
    // Unthrottled run of the same work, for the log only: speed is never asserted.
    const free = await runNode(busy);
    // The kernel counts a throttle only when the child used its whole quota in a period.
    // With the other test files busy on two cores, a child got less than half a core in
    // every period (CI, 2026-12-07: none throttled at a half; beside 12 busy loops, 0 of
    // 51). Now a cgroup with a quota also gets a high weight (see createCgroup), and a
    // tenth leaves a margin even where the weight would not help.
    await withCgroup({ name: "cpu", memoryLimitMb: 200, cpuQuota: 0.1 }, async (cgroup) => {
      const result = await runNode(busy, cgroup);
      const cpu = await cgroup.cpuStats();
      console.info(
        `[cgroup.test] busy loop: ${free.durationMs} ms free, ${result.durationMs} ms at 0.1 core`,
        cpu,
      );
      expect(result.code, result.stderr).toBe(0);
      expect(result.summary).toEqual(free.summary);
      expect(cpu.periods).toBeGreaterThan(0);
      expect(cpu.throttled).toBeGreaterThan(0);
      expect(cpu.throttledMs).toBeGreaterThan(0);
    });
  });

  it("remove() kills what is still running and leaves no cgroup behind", async () => {
    await withCgroup({ name: "remove", memoryLimitMb: 50 }, async (cgroup) => {
      const running = startCommand(...cgroup.wrap("sleep", ["60"]));
      // The pid the caller holds becomes the command itself once the shell has joined the
      // cgroup and exec'd.
      await expect
        .poll(() => readFileSync(`/proc/${running.pid}/comm`, "utf8").trim())
        .toBe("sleep");
      expect(readFileSync(`/proc/${running.pid}/cgroup`, "utf8")).toContain(cgroup.name);
      await cgroup.remove();
      await cgroup.remove();
      const result = await running.done;
      expect(result.signal).toBe("SIGKILL");
      for (const path of cgroup.paths) expect(existsSync(path), path).toBe(false);
    });
  });
});
