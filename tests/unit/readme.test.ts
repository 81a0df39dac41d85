// The README shows each script's --help and the TLS and SASL settings they share: what
// it shows must be what the scripts print.
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it, vi } from "vitest";
import { projectRoot } from "../../scripts/kafka-jvm.ts";
import { runtimeBinary } from "../../scripts/runtimes.ts";

// Each case starts Node: on a busy machine that takes seconds.
vi.setConfig({ testTimeout: 60_000 });

const readme = readFileSync(join(projectRoot, "README.md"), "utf8");
const security = /^ {2}KAFKA_(SECURITY|SASL|SSL)_/;
const shared =
  "  … KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_* and KAFKA_SSL_*: see Against a real cluster";
/** The consumer-solved default that follows the container's limit, where there is one. */
const budget = (text: string) => text.replace(/(MEMORY_LIMIT_MB .*\[default: )\d+\]/, "$1…]");

async function help(script: string): Promise<string[]> {
  const { stdout } = await promisify(execFile)(runtimeBinary("node"), [
    join(projectRoot, script),
    "--help",
  ]);
  return budget(stdout).trimEnd().split("\n");
}

describe("README.md", () => {
  it.each([
    "producer.ts",
    "mock-api.ts",
    "consumer-fast.ts",
    "consumer-backpressure.ts",
    "consumer-solved.ts",
  ])("shows %s --help as the script prints it", async (script) => {
    const shown = readme.match(
      new RegExp(
        `<code>${script.replace(".", "\\.")} --help</code></summary>\\n\\n\`\`\`\\n([^\`]*)\`\`\``,
      ),
    )?.[1];
    expect(shown, `no --help block for ${script}`).toBeDefined();
    const lines = await help(script);
    const collapsed = lines.filter(
      (line, i) => !security.test(line) || !security.test(lines[i - 1] ?? ""),
    );
    const expected = collapsed.map((line) => (security.test(line) ? shared : line));
    expect(
      budget(shown as string)
        .trimEnd()
        .split("\n"),
    ).toEqual(expected);
  });

  it("shows the TLS and SASL settings as every Kafka script prints them", async () => {
    const printed = (await help("consumer-fast.ts")).filter((line) => security.test(line));
    expect(printed.length).toBeGreaterThan(5);
    for (const line of printed) expect(readme).toContain(`\n${line}\n`);
  });
});
