// @module-tag full
// A smoke run of `npm run demo`: a small backlog, to prove the pieces still fit
// together and that it cleans up after itself. It asserts nothing about speed or
// memory; tests/e2e/memory.test.ts and pod.test.ts do.
import { randomUUID } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, inject, it } from "vitest";
import { startCommand } from "../support/child.ts";

const brokers = inject("kafkaBrokers");

/**
 * Pids of live processes whose environment holds `marker`: the demo's, and whatever it
 * started, which inherit its environment (other files' processes run side by side).
 */
function markedPids(marker: string): string[] {
  return readdirSync("/proc").filter((pid) => {
    if (!/^\d+$/.test(pid)) return false;
    try {
      return readFileSync(`/proc/${pid}/environ`, "latin1").split("\0").includes(marker);
    } catch {
      return false; // gone meanwhile, or not ours to read
    }
  });
}

it("npm run demo --quick runs both consumers, writes its summary and chart, and leaves nothing running", async () => {
  const out = await mkdtemp(join(tmpdir(), "demo-"));
  const marker = `DEMO_TEST_RUN=${randomUUID()}`;
  try {
    // The README's command, through npm.
    const run = await startCommand("npm", ["run", "demo", "--", "--quick", "--out", out], {
      env: { KAFKA_BROKERS: brokers, DEMO_TEST_RUN: marker.split("=")[1] },
    }).done;
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
    expect(run.stdout).toMatch(/\| unbounded \|/);
    expect(run.stdout).toMatch(/\| solved \| 500 of 500 \|/);
    const result = JSON.parse(await readFile(join(out, "demo.json"), "utf8")) as {
      consumers: { name: string; samples: unknown[] }[];
    };
    expect(result.consumers.map((c) => c.name)).toEqual(["unbounded", "solved"]);
    for (const consumer of result.consumers) expect(consumer.samples.length).toBeGreaterThan(0);
    expect((await readFile(join(out, "memory.svg"), "utf8")).startsWith("<svg")).toBe(true);
    expect(existsSync(join(out, "demo.md"))).toBe(true);
    expect(markedPids(marker), "processes the demo left behind").toEqual([]);
  } finally {
    await rm(out, { recursive: true, force: true });
  }
});
