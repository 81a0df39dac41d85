// What a bad setup gets, on Bun, Deno and Node, against a broker that demands TLS and
// SASL: each mistake a user makes connecting to a real cluster exits 1 within 15 s
// (not a hang) with a last line that says what it is, and each contradictory or
// incomplete combination of settings exits 2 naming the setting before any connection
// is made (a listener that counts connections says none was). No output of any of these
// runs holds a password, the wrong ones included.
import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { connect, createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { projectRoot } from "../../scripts/kafka-jvm.ts";
import { type Runtime, runtimeBinary, runtimes } from "../../scripts/runtimes.ts";
import { runScript, startCommand } from "../support/child.ts";
import { recordFigure, runFigures } from "../support/figures.ts";
import { createTopic, endOffsets, uniqueName } from "../support/kafka.ts";
import {
  denyAlice,
  PasswordWatch,
  securedAdmin,
  securedBroker,
  securedEnv,
} from "../support/secured.ts";
import { total } from "../support/services.ts";

const secured = securedBroker();
const plaintext = inject("kafkaSecuredPlaintext");
const admin = securedAdmin(secured);
const passwords = new PasswordWatch(secured);
const wrongPassword = passwords.secret(`wrong-${uniqueName("pw")}`);
/** The bound: a mistake is reported within this, never a hang. */
const withinMs = 15_000;

const scram512 = securedEnv(secured, "SASL_SSL SCRAM-SHA-512");
const scram256 = securedEnv(secured, "SASL_SSL SCRAM-SHA-256");
const { KAFKA_SSL_CA_LOCATION: _ca, ...scramWithoutCa } = scram512;

interface Mistake {
  row: string;
  script: string;
  /** settings; the topic and group are the case's own unless given */
  env: (names: { topic: string; group: string }) => Record<string, string>;
  /** made before the run: the case's topic, an ACL */
  prepare?: (names: { topic: string; group: string }) => Promise<void>;
  /** what the last line of stderr must say */
  says: (names: { topic: string; group: string }) => RegExp;
}

const at = (address: string) => address.replaceAll(".", "\\.");
const mistakes: Mistake[] = [
  {
    row: "wrong password",
    script: "consumer-solved.ts",
    env: () => ({ ...scram512, KAFKA_SASL_PASSWORD: wrongPassword }),
    says: () =>
      new RegExp(
        `^Kafka at ${at(secured.addresses.SASL_SSL)}: authentication failed for user alice with SCRAM-SHA-512`,
      ),
  },
  {
    row: "a broker certificate the client does not trust",
    script: "producer.ts",
    env: () => scramWithoutCa,
    says: () =>
      new RegExp(`^Certificate verification failed for Kafka at ${at(secured.addresses.SASL_SSL)}`),
  },
  {
    row: "plain text against a TLS listener",
    script: "consumer-fast.ts",
    env: () => ({ KAFKA_BROKERS: secured.addresses.SASL_SSL }),
    says: () =>
      new RegExp(
        `^KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not match the listener at ${at(secured.addresses.SASL_SSL)}`,
      ),
  },
  {
    row: "TLS against a plain-text listener",
    script: "consumer-backpressure.ts",
    env: () => ({
      KAFKA_BROKERS: plaintext,
      KAFKA_SECURITY_PROTOCOL: "SSL",
      KAFKA_SSL_CA_LOCATION: secured.caFile,
    }),
    says: () =>
      new RegExp(`^KAFKA_SECURITY_PROTOCOL=SSL does not match the listener at ${at(plaintext)}`),
  },
  {
    row: "a SASL mechanism the broker does not enable",
    script: "consumer-solved.ts",
    // That listener enables SCRAM-SHA-256 only.
    env: () => ({
      KAFKA_BROKERS: secured.addresses.SASL_PLAINTEXT,
      KAFKA_SECURITY_PROTOCOL: "SASL_PLAINTEXT",
      KAFKA_SASL_MECHANISM: "PLAIN",
      KAFKA_SASL_USERNAME: secured.alice.username,
      KAFKA_SASL_PASSWORD: secured.alice.password,
    }),
    says: () => /^Kafka at \S+ does not enable SASL mechanism PLAIN on this listener/,
  },
  {
    row: "an ACL refusing the topic (consumer)",
    script: "consumer-solved.ts",
    env: () => scram256,
    // Refused whether the topic exists or not: the broker checks the ACL first.
    prepare: async ({ topic }) => denyAlice(secured, { topic }),
    says: ({ topic }) => new RegExp(`refused user alice access to topic ${topic} \\(an ACL\\)`),
  },
  {
    row: "an ACL refusing the topic (producer)",
    script: "producer.ts",
    env: () => scram256,
    prepare: async ({ topic }) => denyAlice(secured, { topic }),
    says: ({ topic }) => new RegExp(`refused user alice access to topic ${topic} \\(an ACL\\)`),
  },
  // The group is refused to consumer-fast.ts and consumer-solved.ts alike.
  ...(["fast", "solved"] as const).map(
    (consumer): Mistake => ({
      row: `an ACL refusing the group (${consumer})`,
      script: `consumer-${consumer}.ts`,
      env: () => scram256,
      prepare: async ({ topic, group }) => {
        await topicFor(topic);
        await denyAlice(secured, { group });
      },
      says: ({ group }) =>
        new RegExp(`refused user alice access to consumer group ${group} \\(an ACL`),
    }),
  ),
  {
    row: "mutual TLS without a client certificate",
    script: "consumer-solved.ts",
    env: () => ({
      KAFKA_BROKERS: secured.addresses.SSL,
      KAFKA_SECURITY_PROTOCOL: "SSL",
      KAFKA_SSL_CA_LOCATION: secured.caFile,
    }),
    says: () => new RegExp(`^Kafka at ${at(secured.addresses.SSL)} wants a client certificate`),
  },
];

/** A topic alice may read, made by admin (again if the first answer came before its leader). */
async function topicFor(topic: string, tries = 3): Promise<void> {
  try {
    await createTopic(admin, topic, 3);
  } catch (error) {
    if (tries <= 1) throw error;
    await topicFor(topic, tries - 1);
  }
}

const timings: { row: string; runtime: Runtime; seconds: number; code: number | null }[] = [];

describe.concurrent.each(runtimes)(
  "on %s, a mistake in connecting exits 1 saying what it is",
  (runtime) => {
    it.each(mistakes)("$row ($script)", async (mistake) => {
      const names = { topic: uniqueName(`tls-bad-${runtime}`), group: uniqueName("tls-bad-group") };
      await mistake.prepare?.(names);
      const run = await runScript(runtime, mistake.script, {
        env: {
          KAFKA_TOPIC: names.topic,
          KAFKA_GROUP_ID: names.group,
          API_URL: "http://127.0.0.1:9/users", // never reached
          MESSAGES: "10",
          ...mistake.env(names),
        },
      });
      passwords.watch(`${mistake.row}, ${mistake.script} on ${runtime}`, run);
      timings.push({ row: mistake.row, runtime, seconds: run.durationMs / 1_000, code: run.code });
      recordFigure({
        case: `secured, ${mistake.row}`,
        runtime,
        consumer: mistake.script,
        messages: 0,
        ...runFigures(run),
      });
      expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(1);
      expect(run.durationMs).toBeLessThan(withinMs);
      // The last line says it (consumer-solved.ts, stopped by a refused group, adds to it
      // what it held at the stop).
      const said = run.stderr.trimEnd().split("\n").at(-1);
      expect(said, run.stderr).toMatch(mistake.says(names));
      expect(run.stderr).not.toMatch(/^\s+at /m); // no bare stack trace
    });
  },
);

// ---- what is not a mistake is not reported as one ----

/**
 * A TCP relay to `target` that holds back the broker's first bytes by `delayMs` on the
 * first `slow` connections: a broker far away, or a machine too busy to finish a TLS
 * handshake within KafkaJS's connection timeout.
 */
async function slowRelay(target: string, delayMs: number, slow: number) {
  const [host, port] = target.split(":") as [string, string];
  let connections = 0;
  const relay = createServer((client) => {
    const delay = connections++ < slow ? delayMs : 0;
    const broker = connect(Number(port), host);
    client.on("data", (chunk) => broker.write(chunk));
    broker.on("data", (chunk) => setTimeout(() => client.writable && client.write(chunk), delay));
    const close = () => {
      client.destroy();
      broker.destroy();
    };
    for (const socket of [client, broker]) socket.on("close", close).on("error", close);
  });
  await new Promise<void>((resolve) => relay.listen(0, "127.0.0.1", resolve));
  const address = relay.address();
  const at = typeof address === "object" && address ? `127.0.0.1:${address.port}` : "";
  return { at, connections: () => connections, close: () => relay.close() };
}

describe.concurrent.each(runtimes)("on %s, what is not a mistake is not called one", (runtime) => {
  it("TLS handshakes KafkaJS gave up on (its connection timeout) are retried, and the run succeeds", {
    tags: ["full"],
  }, async () => {
    // producer.ts waits 3 s for a connection: the first two take longer.
    const relay = await slowRelay(secured.addresses.SASL_SSL, 3_500, 2);
    try {
      const topic = uniqueName(`tls-slow-${runtime}`);
      const run = await runScript(runtime, "producer.ts", {
        env: { ...scram512, KAFKA_BROKERS: relay.at, KAFKA_TOPIC: topic, MESSAGES: "10" },
      });
      passwords.watch(`slow handshakes, producer.ts on ${runtime}`, run);
      expect(run.code, run.stderr).toBe(0);
      expect(relay.connections()).toBeGreaterThan(2); // it did time out, and tried again
      expect(total(await endOffsets(admin, topic))).toBe(10);
    } finally {
      relay.close();
    }
  });
});

// ---- settings that contradict themselves or are incomplete: exit 2, no connection ----

let listener: Server;
let connections = 0;
let listening = "";
let notPem = "";

beforeAll(async () => {
  // Where KAFKA_BROKERS points for these: it counts the connections it is offered.
  listener = createServer((socket) => {
    connections++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve));
  const address = listener.address();
  listening = typeof address === "object" && address ? `127.0.0.1:${address.port}` : "";
  notPem = join(tmpdir(), `${uniqueName("not-pem")}.pem`);
  await writeFile(notPem, "this is not a certificate\n");
});

interface BadCombination {
  what: string;
  script: string;
  env: () => Record<string, string>;
  names: string;
}

const sasl = () => ({
  KAFKA_SECURITY_PROTOCOL: "SASL_SSL",
  KAFKA_SASL_MECHANISM: "SCRAM-SHA-512",
  KAFKA_SASL_USERNAME: "alice",
  KAFKA_SASL_PASSWORD: secured.alice.password,
});
const combinations: BadCombination[] = [
  {
    what: "a SASL mechanism without a user name",
    script: "consumer-solved.ts",
    env: () => ({ ...sasl(), KAFKA_SASL_USERNAME: "" }),
    names: "KAFKA_SASL_USERNAME",
  },
  {
    what: "an unknown mechanism",
    script: "producer.ts",
    env: () => ({ ...sasl(), KAFKA_SASL_MECHANISM: "GSSAPI" }),
    names: "KAFKA_SASL_MECHANISM",
  },
  {
    what: "SASL settings with a protocol that has no SASL",
    script: "consumer-fast.ts",
    env: () => ({ ...sasl(), KAFKA_SECURITY_PROTOCOL: "SSL" }),
    names: "KAFKA_SASL_MECHANISM",
  },
  {
    what: "a CA file that does not exist",
    script: "consumer-backpressure.ts",
    env: () => ({ ...sasl(), KAFKA_SSL_CA_LOCATION: "/nonexistent/ca.pem" }),
    names: "KAFKA_SSL_CA_LOCATION",
  },
  {
    what: "a CA file that is not PEM",
    script: "consumer-solved.ts",
    env: () => ({ ...sasl(), KAFKA_SSL_CA_LOCATION: notPem }),
    names: "KAFKA_SSL_CA_LOCATION",
  },
  {
    what: "a client certificate without its key",
    script: "producer.ts",
    env: () => ({
      KAFKA_SECURITY_PROTOCOL: "SSL",
      KAFKA_SSL_CERTIFICATE_LOCATION: secured.certificateFile,
    }),
    names: "KAFKA_SSL_KEY_LOCATION",
  },
  {
    what: "an encrypted key with the wrong passphrase",
    script: "consumer-fast.ts",
    env: () => ({
      KAFKA_SECURITY_PROTOCOL: "SSL",
      KAFKA_SSL_CERTIFICATE_LOCATION: secured.certificateFile,
      KAFKA_SSL_KEY_LOCATION: secured.encryptedKeyFile,
      KAFKA_SSL_KEY_PASSWORD: wrongPassword,
    }),
    names: "KAFKA_SSL_KEY_PASSWORD",
  },
  {
    what: "a file and PEM text for the same CA",
    script: "consumer-backpressure.ts",
    env: () => ({
      KAFKA_SECURITY_PROTOCOL: "SSL",
      KAFKA_SSL_CA_LOCATION: secured.caFile,
      KAFKA_SSL_CA_PEM: "-----BEGIN CERTIFICATE-----",
    }),
    names: "KAFKA_SSL_CA_PEM",
  },
];

describe.concurrent.each(runtimes)("on %s, a bad combination of settings exits 2", (runtime) => {
  // The checks are one copy in every script: the quick tier runs them on Node only.
  const tier = { tags: runtime === "node" ? [] : ["full"] };
  it.each(combinations)("$what ($script)", tier, async ({ script, env, names }) => {
    const run = await runScript(runtime, script, {
      env: { KAFKA_BROKERS: listening, KAFKA_TOPIC: uniqueName("never"), ...env() },
    });
    passwords.watch(`${names}, ${script} on ${runtime}`, run);
    expect(run.code, run.stderr).toBe(2);
    expect(run.stderr).toMatch(new RegExp(`^Bad setting ${names}\\b`, "m"));
  });
});

// Deno alone has permissions: a case of its own, not one skipped on the other runtimes.
describe("on deno, with exactly the header's permissions", () => {
  it("a CA file it may not read names the flag that allows it", async () => {
    const [command, args] = headerCommand("consumer-solved.ts");
    const run = await startCommand(command, args, {
      env: { KAFKA_BROKERS: listening, ...sasl(), KAFKA_SSL_CA_LOCATION: secured.caFile },
    }).done;
    passwords.watch("--allow-read, consumer-solved.ts on deno", run);
    expect(run.code, run.stderr).toBe(2);
    expect(run.stderr).toContain(
      `Bad setting KAFKA_SSL_CA_LOCATION: cannot read ${secured.caFile}`,
    );
    expect(run.stderr).toContain(`--allow-read=${secured.caFile}`);
  });
});

/** The Deno run command of a script's header, its file name made whole. */
function headerCommand(script: string): [string, string[]] {
  const source = readFileSync(join(projectRoot, script), "utf8");
  const line = source.match(/^ \*\s+deno:\s+(.+?)\s*$/m)?.[1] ?? "";
  const words = (line.split("&&").at(-1)?.trim() ?? "").split(/\s+/);
  return [runtimeBinary("deno"), [...words.slice(1, -1), join(projectRoot, script)]];
}

afterAll(async () => {
  await new Promise((resolve) => listener?.close(resolve));
  // None of the bad combinations opened a connection: they stopped before it.
  expect(connections).toBe(0);
  const table = timings
    .sort((a, b) => a.row.localeCompare(b.row) || a.runtime.localeCompare(b.runtime))
    .map(
      (t) =>
        `  ${t.row.padEnd(48)} ${t.runtime.padEnd(5)} exit ${t.code}  ${t.seconds.toFixed(1)} s`,
    );
  console.log(
    `What a bad setup gets, seconds to exit (${new Date().toISOString()}):\n${table.join("\n")}`,
  );
  // At least these (the slow relay's runs, and the bad combinations but on Node, are in
  // the full tier only).
  passwords.expectNoneLeaked(runtimes.length * mistakes.length + combinations.length + 1);
});
