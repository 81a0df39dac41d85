// @module-tag full
// The end-to-end benchmarks still run: bench/strategies.ts and bench/raw-speed.ts in
// QUICK mode, as child processes on the suite's broker, writing into a temporary
// folder. Only that they finish and write every file, with an entry per strategy or
// client, is checked; never a speed: that depends on the machine and on what runs
// beside it.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, inject, it } from "vitest";
import { strategies } from "../../bench/strategies.ts";
import { runScript } from "../support/child.ts";

const brokers = inject("kafkaBrokers");
const outDir = mkdtempSync(join(tmpdir(), "bench-smoke-"));
afterAll(() => rmSync(outDir, { recursive: true, force: true }));

// Options the benchmarks read from the environment: none may leak in from outside.
const unset = Object.fromEntries(
  [
    "BACKLOGS",
    "LATENCY_MS",
    "JITTER_MS",
    "CONCURRENCY",
    "PARTITIONS",
    "PAYLOAD_BYTES",
    "MEMORY_LIMIT_MB",
    "CAP_S",
    "STRATEGIES",
    "MESSAGES",
  ].map((name) => [name, undefined]),
);

function jsonReport<T>(dir: string, prefix: string): T {
  const name = readdirSync(dir).find((file) =>
    new RegExp(`^${prefix}-\\d{4}-\\d{2}-\\d{2}\\.json$`).test(file),
  );
  expect(name, `no ${prefix}-<date>.json in ${readdirSync(dir).join(", ")}`).toBeDefined();
  return JSON.parse(readFileSync(join(dir, name as string), "utf8")) as T;
}

it("bench/strategies.ts (QUICK) runs every strategy and writes JSON, Markdown and SVG charts", async () => {
  const dir = join(outDir, "strategies");
  const run = await runScript("node", "bench/strategies.ts", {
    env: { ...unset, QUICK: "1", RUNTIME: "node", KAFKA_BROKERS: brokers, OUT_DIR: dir },
  });
  expect(run.code, `${run.stdout.slice(-2_000)}\n${run.stderr.slice(-3_000)}`).toBe(0);

  const report = jsonReport<{ backlogs: { runs: { strategy: string }[] }[] }>(dir, "strategies");
  expect(report.backlogs).toHaveLength(1);
  expect(report.backlogs[0]?.runs.map((r) => r.strategy)).toEqual(strategies.map((s) => s.id));
  const markdown = readFileSync(join(dir, "strategies.md"), "utf8");
  for (const strategy of strategies) expect(markdown).toContain(`| ${strategy.label} |`);
  for (const chart of ["throughput.svg", "memory.svg"]) {
    expect(readFileSync(join(dir, chart), "utf8"), chart).toMatch(/^<svg[\s\S]*<\/svg>\s*$/);
  }
}, 300_000);

it("bench/raw-speed.ts (QUICK) compares a runtime, KafkaJS and @platformatic/kafka, with kcat and writes JSON and Markdown", async () => {
  const kcat = spawnSync("kcat", ["-V"]);
  if (kcat.error || kcat.status !== 0) {
    throw new Error(
      "kcat is not installed; bench/raw-speed.ts needs it. Install it: apt-get install -y kcat",
    );
  }
  const dir = join(outDir, "raw-speed");
  const run = await runScript("node", "bench/raw-speed.ts", {
    env: { ...unset, QUICK: "1", RUNTIMES: "node", KAFKA_BROKERS: brokers, OUT_DIR: dir },
  });
  expect(run.code, `${run.stdout.slice(-2_000)}\n${run.stderr.slice(-3_000)}`).toBe(0);

  const report = jsonReport<{ produced: { tool: string }[]; consumed: { tool: string }[] }>(
    dir,
    "raw-speed",
  );
  expect(report.produced.map((m) => m.tool)).toEqual(["node", "kcat"]);
  expect(report.consumed.map((m) => m.tool)).toEqual(["node", "platformatic-node", "kcat"]);
  const markdown = readFileSync(join(dir, "raw-speed.md"), "utf8");
  expect(markdown).toMatch(/^\| node \S+ \|/m);
  expect(markdown).toMatch(/^\| @platformatic\/kafka \S+ on node \S+ \|/m);
  expect(markdown).toMatch(/^\| kcat \S+/m);
}, 180_000);

it("bench/raw-speed.ts without kcat says how to install it and exits 1", async () => {
  const run = await runScript("node", "bench/raw-speed.ts", {
    env: { PATH: "/nonexistent", KAFKA_BROKERS: brokers },
  });
  expect(run.code).toBe(1);
  expect(run.stderr).toContain("apt-get install -y kcat");
});
