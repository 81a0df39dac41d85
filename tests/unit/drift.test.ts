// Each top-level script carries its own copy of a few blocks (the settings reader, the
// memory figures, KafkaJS's quieting) so that it stands alone in a blog post. Copies
// drift; this keeps them byte-identical, and the scripts' imports to what a reader
// installs, and deno.json's tasks to the permissions the headers give.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { projectRoot } from "../../scripts/kafka-jvm.ts";

const consumers = ["consumer-fast.ts", "consumer-backpressure.ts", "consumer-solved.ts"];
const scripts = ["producer.ts", "mock-api.ts", ...consumers];

/** The blocks every listed script carries on purpose, by the names they declare. */
const kafkaScripts = ["producer.ts", ...consumers];
const sharedBlocks: [names: string[], carriers: string[]][] = [
  [["Setting", "text", "number", "flag", "readSettings", "runtimeName"], scripts],
  [["watchMemory", "quietTransientErrors"], consumers],
  [
    [
      "kafkaSecuritySettings",
      "secret",
      "KafkaSettings",
      "kafkaConnection",
      "readPem",
      "badSetting",
      "watchedSockets",
      "connectFailure",
    ],
    kafkaScripts,
  ],
  [["hideTimeoutNegativeWarning"], kafkaScripts],
];

const source = (script: string) => readFileSync(join(projectRoot, script), "utf8");

/** A top-level `interface` or `function` declaration, from its doc comment to its `}`. */
function declaration(text: string, name: string): string | undefined {
  const start = text.search(new RegExp(`^(?:export )?(?:interface|function) ${name}\\b`, "m"));
  if (start < 0) return undefined;
  const end = text.indexOf("\n}\n", start);
  const before = text.slice(0, start);
  const doc = before.match(/\/\*\*(?:(?!\*\/)[\s\S])*\*\/\n$/)?.[0] ?? "";
  return text.slice(start - doc.length, end + 2);
}

describe("deliberate copies stay identical", () => {
  for (const [names, carriers] of sharedBlocks) {
    for (const name of names) {
      it(`${name} is the same in ${carriers.join(", ")}`, () => {
        const copies = carriers.map((script) => [script, declaration(source(script), name)]);
        for (const [script, copy] of copies) expect(copy, `${name} in ${script}`).toBeDefined();
        const [firstScript, first] = copies[0] as [string, string];
        for (const [script, copy] of copies) {
          expect(copy, `${name}: ${script} differs from ${firstScript}`).toBe(first);
        }
      });
    }
  }

  it("finds a declaration and notices a changed copy", () => {
    const text = "/** doc */\nfunction readSettings() {\n  return 1;\n}\n";
    expect(declaration(text, "readSettings")).toBe(text.trimEnd());
    expect(declaration(text.replace("1", "2"), "readSettings")).not.toBe(text);
  });
});

describe("each script stands alone", () => {
  const allowed: Record<string, string[]> = {
    "mock-api.ts": ["hono", "@hono/node-server"],
  };
  it.each(scripts)("%s imports only node: modules and what its header installs", (script) => {
    const text = source(script);
    const specifiers = [...text.matchAll(/^import[^;]*?from\s+["']([^"']+)["']/gm)].map(
      (m) => m[1] as string,
    );
    const packages = specifiers
      .filter((specifier) => !specifier.startsWith("node:"))
      .map((specifier) =>
        specifier
          .split("/")
          .slice(0, specifier.startsWith("@") ? 2 : 1)
          .join("/"),
      );
    const expected = allowed[script] ?? ["kafkajs"];
    expect([...new Set(packages)].sort()).toEqual([...expected].sort());
  });
});

describe("deno.json's tasks", () => {
  it.each(scripts)("%s's task runs it with its header's permissions", (script) => {
    const header = source(script).slice(0, source(script).indexOf("*/"));
    const line = header.match(/^ \*\s+deno:\s+(.+?)\s*$/m)?.[1] ?? "";
    const run = line.split("&&").at(-1)?.trim();
    type Task = string | { command: string; description?: string };
    const tasks = (JSON.parse(source("deno.json")) as { tasks: Record<string, Task> }).tasks;
    const task = tasks[script.replace(".ts", "")];
    expect(typeof task === "string" ? task : task?.command).toBe(run);
    // A script that reads TLS files says, in its header and its task, how Deno may read them.
    if (!source(script).includes("KAFKA_SSL_CA_LOCATION")) return;
    expect(header).toMatch(/--allow-read=<those files>.*KAFKA_SSL_\*_PEM/);
    expect(typeof task === "object" && task.description).toMatch(/--allow-read=<those files>/);
  });
});
