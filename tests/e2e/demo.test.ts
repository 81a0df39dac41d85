// @module-tag full
// A smoke run of `npm run demo`: a small backlog, to prove the pieces still fit
// together and that it cleans up after itself. It asserts nothing about speed or
// memory; tests/e2e/memory.test.ts and pod.test.ts do.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, inject, it } from "vitest";
import { startCommand } from "../support/child.ts";

const brokers = inject("kafkaBrokers");

/** Pids of the project's example scripts running now. */
function scriptPids(): Set<string> {
  try {
    const out = execFileSync("pgrep", ["-f", "(mock-api|producer|consumer-[a-z]+)\\.ts"], {
      encoding: "utf8",
    });
    return new Set(out.split("\n").filter(Boolean));
  } catch {
    return new Set(); // pgrep exits 1 when nothing matches
  }
}

it("npm run demo --quick runs both consumers, writes its summary and chart, and leaves nothing running", async () => {
  const out = await mkdtemp(join(tmpdir(), "demo-"));
  const before = scriptPids();
  try {
    // The README's command, through npm.
    const run = await startCommand("npm", ["run", "demo", "--", "--quick", "--out", out], {
      env: { KAFKA_BROKERS: brokers },
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
    const left = [...scriptPids()].filter((pid) => !before.has(pid));
    expect(left, "processes the demo left behind").toEqual([]);
  } finally {
    await rm(out, { recursive: true, force: true });
  }
});
