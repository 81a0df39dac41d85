// @module-tag full
// bench/sizes.ts still runs: one small size on one runtime, as a child process on the
// suite's broker, writing into a temporary folder. Only that it finishes and writes
// every file with a row per consumer is checked; never a speed or a memory figure.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, inject, it } from "vitest";
import { requireCgroupSupport } from "../support/cgroups.ts";
import { runScript } from "../support/child.ts";

const brokers = inject("kafkaBrokers");
const outDir = mkdtempSync(join(tmpdir(), "bench-sizes-"));
afterAll(() => rmSync(outDir, { recursive: true, force: true }));
const support = await requireCgroupSupport("bench-sizes.test");

it.skipIf(!support.ok)(
  "bench/sizes.ts runs the three consumers and the bare loop, and writes JSON, Markdown and an SVG chart",
  async () => {
    const run = await runScript("node", "bench/sizes.ts", {
      env: {
        KAFKA_BROKERS: brokers,
        RUNTIMES: "bun",
        SIZES_KB: "16",
        MAX_MESSAGES: "300",
        LATENCY_MS: "20",
        OUT_DIR: outDir,
      },
    });
    expect(run.code, `${run.stdout.slice(-2_000)}\n${run.stderr.slice(-3_000)}`).toBe(0);
    const files = readdirSync(outDir);
    expect(files).toEqual(
      expect.arrayContaining([
        "sizes.md",
        "memory-by-size.svg",
        expect.stringMatching(/^sizes-\d{4}-\d{2}-\d{2}\.json$/),
      ]),
    );
    const markdown = readFileSync(join(outDir, "sizes.md"), "utf8");
    for (const consumer of ["solved in pod", "solved, no limit", "bare fetch loop, no limit"]) {
      expect(markdown).toContain(`| 16 KB | bun | ${consumer} | 300/300 |`);
    }
    // The unbounded consumer does not wait for its calls when stopped: the answers still
    // on their way are not in its count.
    expect(markdown).toMatch(/^\| 16 KB \| bun \| unbounded, no limit \| \d+\/300 \|/m);
    // The ratios: one row for the size and runtime, every figure filled in.
    expect(markdown).toMatch(/^\| +16 KB \| bun +\|(?: +[\d.,]+(?: \([\d,]+\))? +\|){6}$/m);
    expect(readFileSync(join(outDir, "memory-by-size.svg"), "utf8")).toMatch(
      /^<svg[\s\S]*<\/svg>\s*$/,
    );
  },
  180_000,
);
