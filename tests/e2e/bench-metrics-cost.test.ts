// @module-tag full
// bench/metrics-cost.ts still runs: one short round on Bun against the suite's broker,
// writing into a temporary folder. Only that it finishes and writes a row per mode and
// the CPU per request is checked; never a speed.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, inject, it } from "vitest";
import { runScript } from "../support/child.ts";

const brokers = inject("kafkaBrokers");
const outDir = mkdtempSync(join(tmpdir(), "bench-metrics-cost-"));
afterAll(() => rmSync(outDir, { recursive: true, force: true }));

it("bench/metrics-cost.ts (one short round) measures every mode and the CPU per request", async () => {
  const run = await runScript("node", "bench/metrics-cost.ts", {
    args: ["--rounds=1", "--messages=400", "--runtimes=bun", "--requests=20"],
    env: { KAFKA_BROKERS: brokers, OUT_DIR: outDir, ROUNDS: undefined, MESSAGES: undefined },
  });
  expect(run.code, `${run.stdout.slice(-2_000)}\n${run.stderr.slice(-3_000)}`).toBe(0);
  const json = readdirSync(outDir).find((file) =>
    /^metrics-cost-\d{4}-\d{2}-\d{2}\.json$/.test(file),
  );
  const report = JSON.parse(readFileSync(join(outDir, json as string), "utf8")) as {
    runs: { mode: string; exitCode: number }[];
    costs: { runtime: string; metricsUs: number; healthzUs: number }[];
  };
  expect(report.runs.map((r) => r.mode).sort()).toEqual(["1s", "250ms", "idle", "off"]);
  expect(report.runs.every((r) => r.exitCode === 0)).toBe(true);
  expect(report.costs).toEqual([expect.objectContaining({ runtime: "bun" })]);
  expect(readFileSync(join(outDir, "metrics-cost.md"), "utf8")).toContain("| bun | listener off |");
}, 240_000);
