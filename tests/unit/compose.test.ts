// An unauthenticated broker must not be published on every interface by default, and
// the profile "secured" must read what `npm run broker:up -- --secured` writes for it:
// its listeners on the ports compose publishes, its files where compose mounts them,
// and nothing secret in compose.yaml itself. (No Docker engine here: read, not run.)
import { readFileSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, it } from "vitest";
import { writeComposeSecured } from "../../scripts/broker.ts";
import { projectRoot } from "../../scripts/kafka-jvm.ts";

const compose = readFileSync(join(projectRoot, "compose.yaml"), "utf8");
/** The text of one service, up to the next one. */
const service = (name: string) =>
  compose.match(new RegExp(`^  ${name}:\\n((?:(?:    .*)?\\n)*)`, "m"))?.[1] ?? "";
const published = (text: string) =>
  [...text.matchAll(/^\s*-\s*"([^"]+)"\s*(?:#.*)?$/gm)]
    .map((m) => m[1] as string)
    .filter((entry) => /^[\d.:]+$/.test(entry));

it("compose.yaml publishes every broker on 127.0.0.1 only", () => {
  const entries = published(compose);
  expect(entries.length).toBeGreaterThan(1);
  for (const entry of entries) expect(entry).toMatch(/^127\.0\.0\.1:\d+:\d+$/);
});

it("the profile 'secured' runs the same image, from files outside git, with no secret inline", () => {
  const secured = service("kafka-secured");
  expect(secured).toMatch(/profiles: \[secured\]/);
  const image = (text: string) => text.match(/image: (\S+)/)?.[1];
  expect(image(secured)).toBe(image(service("kafka")));
  const mounts = [...secured.matchAll(/^\s*-\s*(\.\/[^:\s]+):(\S+?)(?::ro)?$/gm)];
  expect(mounts.map((m) => m[1])).toEqual(["./.kafka/compose-secured"]);
  expect(readFileSync(join(projectRoot, ".gitignore"), "utf8")).toMatch(/^\.kafka$/m);
  expect(secured).not.toMatch(/password=|user_\w+=|jaas\.config/i);
});

// openssl makes the certificates: on a busy machine that takes seconds.
it("the profile 'secured' reads what broker:up --secured writes for it", {
  timeout: 60_000,
}, async () => {
  const secured = service("kafka-secured");
  const target = secured.match(/\.\/\.kafka\/compose-secured:(\S+?):ro/)?.[1] as string;
  const dir = await mkdtemp(join(tmpdir(), "compose-secured-"));
  try {
    const broker = await writeComposeSecured(dir);
    const properties = await readFile(join(dir, "server.properties"), "utf8");
    // Each secured listener is advertised on a port compose publishes as itself.
    const ports = published(secured).map((entry) => entry.split(":").slice(1).join(":"));
    for (const address of Object.values(broker.addresses)) {
      const port = address.split(":")[1];
      expect(ports).toContain(`${port}:${port}`);
      expect(properties).toMatch(new RegExp(`advertised\\.listeners=.*//${address}\\b`));
    }
    // Every file server.properties and the command name is in the folder compose mounts.
    const made = await readdir(dir);
    const used = [...`${properties}\n${secured}`.matchAll(new RegExp(`${target}/([\\w.-]+)`, "g"))];
    expect(used.length).toBeGreaterThan(3);
    for (const [, file] of used) expect(made).toContain(file);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
