// @module-tag full
// The broker entry point's failure paths and its jar cache, as real child processes.
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, expect, it } from "vitest";
import { freePort, kafkaHome, kafkaVersion, projectRoot } from "../../scripts/kafka-jvm.ts";
import { runtimeBinary } from "../../scripts/runtimes.ts";
import { startCommand } from "../support/child.ts";

const node = runtimeBinary("node");
// A PATH holding only the runtime: no java, no mvn, no docker.
const nodeOnlyPath = dirname(node);

describe("scripts/broker.ts", () => {
  it("says no broker can be had, and names the three fixes, when there is no way to one", async () => {
    const run = await startCommand(node, ["scripts/broker.ts", "up"], {
      env: { PATH: nodeOnlyPath, KAFKA_BROKERS: "", JAVA_HOME: "", KAFKA_LAUNCHER: "" },
    }).done;
    expect(run.code).toBe(1);
    expect(run.stderr).toContain("No Kafka broker can be had here");
    expect(run.stderr).toContain("KAFKA_BROKERS");
    expect(run.stderr).toContain("Docker");
    expect(run.stderr).toContain("Java");
  });

  it("fails with the address when KAFKA_BROKERS points where nothing answers", async () => {
    const address = `127.0.0.1:${await freePort()}`;
    const run = await startCommand(node, ["scripts/broker.ts", "up"], {
      env: { KAFKA_BROKERS: address },
    }).done;
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`KAFKA_BROKERS=${address}`);
    expect(run.stderr).toContain("No Kafka broker answered");
  });

  it("makes the e2e tests fail with that address instead of hanging", async () => {
    const address = `127.0.0.1:${await freePort()}`;
    const vitest = join(projectRoot, "node_modules/vitest/vitest.mjs");
    const run = await startCommand(
      node,
      [vitest, "run", "--project", "e2e", "tests/e2e/broker.test.ts"],
      {
        env: { KAFKA_BROKERS: address },
      },
    ).done;
    expect(run.code).not.toBe(0);
    expect(`${run.stdout}${run.stderr}`).toContain(`KAFKA_BROKERS=${address}`);
  });

  it("reuses the downloaded jars: with no Maven on PATH the broker's jars are still found", async () => {
    const script =
      "const m = await import('./scripts/kafka-jvm.ts'); console.log(await m.ensureJars());";
    const run = await startCommand(node, ["--input-type=module", "-e", script], {
      env: { PATH: nodeOnlyPath },
    }).done;
    expect(run.code, run.stderr).toBe(0);
    const libDir = run.stdout.trim();
    expect(libDir).toBe(join(kafkaHome, "lib", await kafkaVersion()));
    expect(existsSync(join(libDir, `kafka_2.13-${await kafkaVersion()}.jar`))).toBe(true);
    expect(run.stderr).not.toContain("Downloading");
  });
});
