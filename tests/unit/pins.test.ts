// Both ways of getting a broker must run the same Kafka release.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { expect, it } from "vitest";
import { kafkaVersion, projectRoot } from "../../scripts/kafka-jvm.ts";

it("pins the same Kafka release in compose.yaml and the Maven file", async () => {
  const compose = await readFile(join(projectRoot, "compose.yaml"), "utf8");
  const imageTag = compose.match(/image:\s*apache\/kafka:(\S+)/)?.[1];
  expect(imageTag).toBe(await kafkaVersion());
});
