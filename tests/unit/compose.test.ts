// An unauthenticated broker must not be published on every interface by default.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { expect, it } from "vitest";
import { projectRoot } from "../../scripts/kafka-jvm.ts";

it("compose.yaml publishes the broker on 127.0.0.1 only", async () => {
  const compose = await readFile(join(projectRoot, "compose.yaml"), "utf8");
  const published = [...compose.matchAll(/^\s*-\s*"([^"]+)"\s*$/gm)]
    .map((m) => m[1] as string)
    .filter((entry) => /^[\d.:]+$/.test(entry));
  expect(published.length).toBeGreaterThan(0);
  for (const entry of published) expect(entry).toMatch(/^127\.0\.0\.1:\d+:\d+$/);
});
