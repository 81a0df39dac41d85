// @module-tag full
// Each top-level script is meant to be copied alone into a blog post or an empty folder.
// Here each one is, on each runtime: an empty folder, the file, then exactly the lines
// its header gives for that runtime (the install, then the run), with `--help` and with
// a short real run against the suite's broker. Deno runs with the header's permissions
// only, so a script that needs more than it says fails here.

import { execFile } from "node:child_process";
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { beforeAll, describe, expect, inject, it } from "vitest";
import { projectRoot } from "../../scripts/kafka-jvm.ts";
import { type Runtime, runtimeBinary, runtimes } from "../../scripts/runtimes.ts";
import { type StartOptions, type StopCondition, startCommand } from "../support/child.ts";
import { committedOffsets, committedToEnd, endOffsets, uniqueName } from "../support/kafka.ts";
import { PasswordWatch, securedAdmin, securedBroker, securedEnv } from "../support/secured.ts";
import { type ApiStats, answered, total } from "../support/services.ts";

const run = promisify(execFile);
const brokers = inject("kafkaBrokers");
const scripts = [
  "producer.ts",
  "mock-api.ts",
  "consumer-fast.ts",
  "consumer-backpressure.ts",
  "consumer-solved.ts",
] as const;
type Script = (typeof scripts)[number];

interface HeaderLines {
  /** shell commands to run once in the empty folder */
  install: string[];
  /** the run command, split into words; its last word is the script */
  command: string[];
}

/** The `bun:`, `deno:` and `node:` lines of a script's header. */
function headerLines(source: string, script: string): Record<Runtime, HeaderLines> {
  const header = source.slice(0, source.indexOf("*/"));
  const lines = {} as Record<Runtime, HeaderLines>;
  for (const runtime of runtimes) {
    const line = header.match(new RegExp(`^ \\*\\s+${runtime}:\\s+(.+?)\\s*$`, "m"))?.[1];
    expect(line, `${script}'s header has no "${runtime}:" line`).toBeDefined();
    // A note after two spaces, such as "(Node 22.18 or later)", is not part of it.
    const parts = (line as string)
      .split(/\s{2,}\(/)[0]
      ?.split("&&")
      .map((part) => part.trim()) as string[];
    const command = (parts.pop() as string).split(/\s+/);
    expect(command[0], `${script}: ${line}`).toBe(runtime);
    expect(command.at(-1), `${script}: ${line}`).toBe(script);
    if (runtime === "deno") expect(command, `${script}: Deno without -A`).not.toContain("-A");
    lines[runtime] = { install: parts, command };
  }
  return lines;
}

let bin: string;
const work = new Map<string, { folder: string; command: string[] }>();
const key = (runtime: Runtime, script: string) => `${runtime}/${script}`;
/** PATH with the project's own bun, deno and node first, as a reader's would have them. */
const path = () => `${bin}:${process.env.PATH}`;

/**
 * Runs a copied script from its own folder, exactly as its header says; `allowRead`: the
 * files its header's Deno note says to add with --allow-read (TLS files).
 */
function start(
  runtime: Runtime,
  script: Script,
  options: StartOptions & { help?: boolean; allowRead?: string[] } = {},
) {
  const found = work.get(key(runtime, script));
  if (!found) throw new Error(`no folder for ${key(runtime, script)}`);
  const [program, run, ...rest] = found.command as [string, ...string[]];
  const reading =
    runtime === "deno" && options.allowRead ? [`--allow-read=${options.allowRead.join(",")}`] : [];
  const args = [run, ...reading, ...rest].filter((word) => word !== undefined) as string[];
  return startCommand(program, options.help ? [...args, "--help"] : args, {
    ...options,
    cwd: found.folder,
    env: { PATH: path(), ...options.env },
  });
}

beforeAll(async () => {
  const root = await mkdtemp(join(tmpdir(), "standalone-"));
  bin = join(root, "bin");
  await mkdir(bin);
  for (const runtime of runtimes) await symlink(runtimeBinary(runtime), join(bin, runtime));
  for (const script of scripts) {
    const source = await readFile(join(projectRoot, script), "utf8");
    const lines = headerLines(source, script);
    for (const runtime of runtimes) {
      const folder = join(root, `${runtime}-${script.replace(".ts", "")}`);
      await mkdir(folder);
      await copyFile(join(projectRoot, script), join(folder, script));
      for (const install of lines[runtime].install) {
        // npm may take packages from its cache: the same packages, fetched less often.
        await run("sh", ["-c", install], {
          cwd: folder,
          env: { ...process.env, PATH: path(), npm_config_prefer_offline: "true" },
          timeout: 180_000,
        });
      }
      work.set(key(runtime, script), { folder, command: lines[runtime].command });
    }
  }
  return async () => {
    await rm(root, { recursive: true, force: true });
  };
}, 900_000);

describe.each(runtimes)("each script copied alone, on %s", (runtime) => {
  it("needs nothing but what its header installs, and lists its settings", async () => {
    for (const script of scripts) {
      const { folder } = work.get(key(runtime, script)) as { folder: string };
      // Besides the script: only what the install line made (package.json, deno.json…).
      const made = (await readdir(folder)).filter((name) => name !== script);
      expect(
        made.every((name) => /^(package(-lock)?\.json|deno\.(json|lock)|node_modules)$/.test(name)),
        `${script}: ${made.join(", ")}`,
      ).toBe(true);
      const result = await start(runtime, script, { help: true }).done;
      expect(result.code, `${script} --help on ${runtime}: ${result.stderr}`).toBe(0);
      expect(result.stdout).toContain(`Settings of ${script}`);
    }
  });

  it("all five work together: produce, serve, consume three ways", async () => {
    const topic = uniqueName(`standalone-${runtime}`);
    const messages = 200;
    const api = start(runtime, "mock-api.ts", {
      env: { PORT: "0", LATENCY_MS: "10", JITTER_MS: "0" },
    });
    try {
      const base = (await api.waitForLine(/mock-api listening on/)).match(/(http:\/\/\S+)/)?.[1];
      const get = async <T>(what: string) => (await (await fetch(`${base}${what}`)).json()) as T;
      const stats = { stats: () => get<ApiStats>("/stats") };
      const produced = await start(runtime, "producer.ts", {
        env: {
          KAFKA_BROKERS: brokers,
          KAFKA_TOPIC: topic,
          MESSAGES: String(messages),
          PAYLOAD_BYTES: "512",
          ID_PREFIX: topic,
        },
      }).done;
      expect(produced.code, produced.stderr).toBe(0);
      expect(produced.stderr).toBe("");
      expect(total(await endOffsets(brokers, topic))).toBe(messages);
      const ids = Array.from({ length: messages }, (_, n) => `${topic}-${n}`).sort();

      const consumers: [Script, (groupId: string) => StopCondition][] = [
        // It calls no API: KafkaJS commits what it counted, and the broker says when.
        ["consumer-fast.ts", (groupId) => committedToEnd(brokers, groupId, topic)],
        ["consumer-backpressure.ts", () => answered(stats, messages)],
        ["consumer-solved.ts", () => answered(stats, messages)],
      ];
      for (const [script, caughtUp] of consumers) {
        await fetch(`${base}/reset`, { method: "POST" });
        const groupId = `${topic}-${script}`;
        const result = await start(runtime, script, {
          env: {
            KAFKA_BROKERS: brokers,
            KAFKA_TOPIC: topic,
            KAFKA_GROUP_ID: groupId,
            API_URL: `${base}/users`,
          },
          stopWhen: caughtUp(groupId),
        }).done;
        // It ran until caught up, took SIGTERM, and left cleanly.
        expect(result.stoppedWhenMet, `${script}: ${result.stderr}`).toBe(true);
        expect(result.code, `${script} on ${runtime}: ${result.stderr}`).toBe(0);
        // Its own word, beside. The unbounded consumer does not wait for its calls when
        // told to stop: an answer the API sent but that had not reached it yet counts
        // as in flight.
        const inFlight = script === "consumer-backpressure.ts" ? result.summary?.inFlightAtExit : 0;
        expect(Number(result.summary?.processed) + Number(inFlight), script).toBe(messages);
        // A normal run says nothing on stderr but how it stopped: no KafkaJS ERROR for a
        // coordinator that is still loading, no runtime warning about KafkaJS's timers.
        const said = result.stderr.split("\n").filter((line) => !/^(stopped by SIG|$)/.test(line));
        expect(said, `${script} on ${runtime}`).toEqual([]);
        if (script === "consumer-fast.ts") continue;
        // What the API answered 201: each id, and exactly once.
        const succeeded = (await get<{ ids: string[] }>("/succeeded")).ids;
        expect([...succeeded].sort(), script).toEqual(ids);
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

  it("against a broker that demands TLS and SASL: a CA file (Deno: --allow-read, as the header says) and PEM text", async () => {
    const secured = securedBroker();
    const passwords = new PasswordWatch(secured);
    const admin = securedAdmin(secured);
    const scram = securedEnv(secured, "SASL_SSL SCRAM-SHA-512");
    const topic = uniqueName(`standalone-tls-${runtime}`);
    const messages = 100;
    const api = start(runtime, "mock-api.ts", {
      env: { PORT: "0", LATENCY_MS: "10", JITTER_MS: "0" },
    });
    try {
      const base = (await api.waitForLine(/mock-api listening on/)).match(/(http:\/\/\S+)/)?.[1];
      // The producer reads the CA from its file: on Deno only with --allow-read for it.
      const produced = await start(runtime, "producer.ts", {
        env: { ...scram, KAFKA_TOPIC: topic, MESSAGES: String(messages), ID_PREFIX: topic },
        allowRead: [secured.caFile],
      }).done;
      passwords.watch(`producer.ts on ${runtime}`, produced);
      expect(produced.code, produced.stderr).toBe(0);
      // The consumer gets the CA as PEM text: the header's permissions as they are.
      const { KAFKA_SSL_CA_LOCATION: caFile = "", ...withoutFile } = scram;
      const groupId = `${topic}-solved`;
      const consumed = await start(runtime, "consumer-solved.ts", {
        env: {
          ...withoutFile,
          KAFKA_SSL_CA_PEM: await readFile(caFile, "utf8"),
          KAFKA_TOPIC: topic,
          KAFKA_GROUP_ID: groupId,
          API_URL: `${base}/users`,
        },
        stopWhen: committedToEnd(admin, groupId, topic),
      }).done;
      passwords.watch(`consumer-solved.ts on ${runtime}`, consumed);
      expect(consumed.stoppedWhenMet, consumed.stderr).toBe(true);
      expect(consumed.code, consumed.stderr).toBe(0);
      const succeeded = (await (await fetch(`${base}/succeeded`)).json()) as { ids: string[] };
      expect(new Set(succeeded.ids).size).toBe(messages);
      expect(await committedOffsets(admin, groupId, topic)).toEqual(await endOffsets(admin, topic));
      passwords.expectNoneLeaked(2);
    } finally {
      api.child.kill("SIGTERM");
      await api.done;
    }
  });
});
