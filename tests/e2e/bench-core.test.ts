// @module-tag full
// The micro-benchmarks still run: bench/core.bench.ts as a child process on Node at
// tiny sizes, its JSON checked for a result from every benchmark. Nothing about speed:
// that depends on the machine, and this one has other tests running beside it.
import { expect, it } from "vitest";
import { benchmarkNames } from "../../bench/core.bench.ts";
import { runScript } from "../support/child.ts";

/** The part of mitata's JSON report this test reads. */
interface MitataReport {
  benchmarks: {
    alias: string;
    runs: {
      name: string;
      error?: unknown;
      stats?: { avg: number; min: number; max: number; ticks: number };
    }[];
  }[];
}

it("bench/core.bench.ts runs every benchmark and reports each as JSON", async () => {
  const run = await runScript("node", "bench/core.bench.ts", {
    env: { BENCH_QUICK: "1", BENCH_FORMAT: "json", BENCH_FILTER: undefined },
  });
  expect(run.code, run.stderr).toBe(0);

  const report = JSON.parse(run.stdout) as MitataReport;
  const expected = Object.values(benchmarkNames);
  expect(report.benchmarks.map((trial) => trial.alias).sort()).toEqual([...expected].sort());
  for (const trial of report.benchmarks) {
    expect(trial.runs.length, trial.alias).toBeGreaterThan(0);
    for (const result of trial.runs) {
      expect(result.error, result.name).toBeUndefined();
      expect(result.name, trial.alias).not.toContain("$"); // its size was filled in
      expect(result.stats?.ticks, result.name).toBeGreaterThan(0);
      expect(result.stats?.avg, result.name).toBeGreaterThan(0);
      expect(result.stats?.min, result.name).toBeLessThanOrEqual(result.stats?.max ?? 0);
    }
  }
});
