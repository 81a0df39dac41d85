// Each top-level script is meant to be copied alone into a blog post or an empty
// folder. Here each one is: a fresh folder holding only that file and a minimal
// package.json listing the npm packages it imports, `npm install`, then a real run.

import { execFile } from "node:child_process";
import { copyFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { projectRoot } from "../../scripts/kafka-jvm.ts";
import { type Runtime, runtimeCommand, runtimes } from "../../scripts/runtimes.ts";
import { startCommand } from "../support/child.ts";
import { committedOffsets, endOffsets, uniqueName } from "../support/kafka.ts";

const run = promisify(execFile);
const brokers = inject("kafkaBrokers");
const scripts = [
  "producer.ts",
  "mock-api.ts",
  "consumer-fast.ts",
  "consumer-backpressure.ts",
  "consumer-solved.ts",
];
const folders = new Map<string, string>();

/** The packages a script imports (bare specifiers, not node: built-ins). */
function importedPackages(source: string): string[] {
  const specifiers = [...source.matchAll(/^import[^;]*?from\s+["']([^"']+)["']/gm)].map(
    (m) => m[1] as string,
  );
  return [
    ...new Set(
      specifiers
        .filter((specifier) => !specifier.startsWith("node:"))
        .map((specifier) =>
          specifier
            .split("/")
            .slice(0, specifier.startsWith("@") ? 2 : 1)
            .join("/"),
        ),
    ),
  ];
}

/** Runs a copied script from its own folder, the way its header says. */
function runCopy(
  runtime: Runtime,
  script: string,
  env: Record<string, string>,
  args: string[] = [],
) {
  const folder = folders.get(script) as string;
  const { command, args: runtimeArgs } = runtimeCommand(runtime, script, args);
  return startCommand(command, runtimeArgs, { cwd: folder, env });
}

beforeAll(async () => {
  const project = JSON.parse(await readFile(join(projectRoot, "package.json"), "utf8")) as {
    dependencies: Record<string, string>;
  };
  for (const script of scripts) {
    const source = await readFile(join(projectRoot, script), "utf8");
    // Self-contained means no local imports at all.
    expect(source, script).not.toMatch(/^import[^;]*from\s+["']\.{1,2}\//m);
    const dependencies = Object.fromEntries(
      importedPackages(source).map((name) => {
        const version = project.dependencies[name];
        expect(
          version,
          `${script} imports ${name}, which package.json does not list`,
        ).toBeDefined();
        return [name, version as string];
      }),
    );
    const folder = await mkdtemp(join(tmpdir(), `standalone-${script.replace(".ts", "")}-`));
    folders.set(script, folder);
    await copyFile(join(projectRoot, script), join(folder, script));
    await writeFile(
      join(folder, "package.json"),
      `${JSON.stringify({ type: "module", dependencies }, null, 2)}\n`,
    );
    // The machine's npm; --prefer-offline takes the packages from npm's cache when it can.
    await run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund"], {
      cwd: folder,
      timeout: 180_000,
    });
  }
}, 600_000);

afterAll(async () => {
  for (const folder of folders.values()) await rm(folder, { recursive: true, force: true });
});

describe("each script copied alone next to a minimal package.json", () => {
  it.each(runtimes)("every script starts and lists its settings on %s", async (runtime) => {
    for (const script of scripts) {
      const result = await runCopy(runtime, script, {}, ["--help"]).done;
      expect(result.code, `${script} on ${runtime}: ${result.stderr}`).toBe(0);
      expect(result.stdout).toContain(`Settings of ${script}`);
    }
  });

  it("they work together: producer on node, mock API on bun, consumers on deno, bun and node", async () => {
    const topic = uniqueName("standalone");
    const api = runCopy("bun", "mock-api.ts", { PORT: "0", LATENCY_MS: "10", JITTER_MS: "0" });
    try {
      const base = (await api.waitForLine(/mock-api listening on/)).match(/(http:\/\/\S+)/)?.[1];
      const apiUrl = `${base}/users`;
      const answered = async () =>
        ((await (await fetch(`${base}/succeeded`)).json()) as { ids: string[] }).ids;
      const common = { KAFKA_BROKERS: brokers, KAFKA_TOPIC: topic, STOP_AT_END: "true" };
      const produced = await runCopy("node", "producer.ts", {
        ...common,
        MESSAGES: "200",
        PAYLOAD_BYTES: "512",
        ID_PREFIX: topic,
      }).done;
      expect(produced.code, produced.stderr).toBe(0);
      const ids = Array.from({ length: 200 }, (_, n) => `${topic}-${n}`);
      const consumers: [Runtime, string][] = [
        ["deno", "consumer-solved.ts"],
        ["bun", "consumer-fast.ts"],
        ["node", "consumer-backpressure.ts"],
      ];
      for (const [runtime, script] of consumers) {
        await fetch(`${base}/reset`, { method: "POST" });
        const groupId = `${topic}-${script}`;
        const result = await runCopy(runtime, script, {
          ...common,
          API_URL: apiUrl,
          KAFKA_GROUP_ID: groupId,
        }).done;
        expect(result.code, `${script} on ${runtime}: ${result.stderr}`).toBe(0);
        expect(result.summary?.processed, script).toBe(200); // its own word, beside
        if (script === "consumer-fast.ts") continue; // it calls no API
        // What the API answered 201: each id exactly once.
        expect((await answered()).sort(), script).toEqual([...ids].sort());
        if (script === "consumer-solved.ts") {
          expect(await committedOffsets(brokers, groupId, topic)).toEqual(
            await endOffsets(brokers, topic),
          );
        }
      }
    } finally {
      api.child.kill("SIGTERM");
      await api.done;
    }
  });
});
