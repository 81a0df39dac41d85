// Against a broker that demands TLS and SASL, as every managed Kafka does: each script,
// configured only by its settings, on Bun, Deno and Node (their node:tls are three
// implementations). producer.ts fills a topic; consumer-solved.ts delivers every id
// once, dead-letters poison messages over the same secured connection and commits to the
// end; consumer-fast.ts reads to the end; consumer-backpressure.ts still fails the way it
// fails in plain text. SCRAM-SHA-512 and PLAIN over TLS, and mutual TLS (a client
// certificate with an encrypted key from files, and the same as PEM text). Every piece
// of evidence is read over the secured listener by the tests' own admin client; no
// output of any run holds a password.
import { afterAll, describe, expect, it } from "vitest";
import { type Runtime, runtimes } from "../../scripts/runtimes.ts";
import { type RunResult, runScript, type StopCondition } from "../support/child.ts";
import { expectCommittedToEnd, expectExactlyOnce } from "../support/evidence.ts";
import { committedToEnd, endOffsets, uniqueName } from "../support/kafka.ts";
import {
  PasswordWatch,
  securedAdmin,
  securedBroker,
  securedEnv,
  type Way,
} from "../support/secured.ts";
import { type MockApi, startMockApi, total } from "../support/services.ts";

const secured = securedBroker();
const admin = securedAdmin(secured);
const passwords = new PasswordWatch(secured);
const messages = 300;
/** every 100th event malformed: three poison messages for the dead-letter topic */
const malformedEvery = 100;

/** producer.ts on `runtime`, over `way`: every event acknowledged. */
async function fill(runtime: Runtime, way: Way, topic: string, env: Record<string, string> = {}) {
  const run = await runScript(runtime, "producer.ts", {
    env: {
      ...securedEnv(secured, way),
      KAFKA_TOPIC: topic,
      MESSAGES: String(messages),
      PAYLOAD_BYTES: "1024",
      ID_PREFIX: topic,
      ...env,
    },
  });
  passwords.watch(`producer.ts over ${way} on ${runtime}`, run);
  expect(run.code, run.stderr).toBe(0);
  expect(total(await endOffsets(admin, topic)), run.stderr).toBe(messages);
}

/** A consumer on `runtime` over `way`, until `caughtUp`; then SIGTERM, exit 0. */
async function consume(
  runtime: Runtime,
  script: string,
  way: Way,
  env: Record<string, string>,
  caughtUp: StopCondition,
): Promise<RunResult> {
  const run = await runScript(runtime, script, {
    env: { ...securedEnv(secured, way), STATUS_INTERVAL_MS: "500", ...env },
    stopWhen: caughtUp,
  });
  passwords.watch(`${script} over ${way} on ${runtime}`, run);
  expect(run.stoppedWhenMet, `${script}: ${run.stderr}`).toBe(true);
  expect(run.code, `${script} on ${runtime}: ${run.stderr}`).toBe(0);
  return run;
}

async function withApi<T>(env: Record<string, string>, use: (api: MockApi) => Promise<T>) {
  const api = await startMockApi(env);
  try {
    return await use(api);
  } finally {
    await api.stop();
  }
}

describe.concurrent.each(runtimes)(
  "on %s, against a broker that demands TLS and SASL",
  (runtime) => {
    it("SASL_SSL, SCRAM-SHA-512: producer.ts fills, consumer-solved.ts delivers each id once, dead-letters the poison, commits to the end", async () => {
      const way: Way = "SASL_SSL SCRAM-SHA-512";
      const topic = uniqueName(`tls-scram-${runtime}`);
      const groupId = `${topic}-solved`;
      await fill(runtime, way, topic, { MALFORMED_EVERY: String(malformedEvery) });
      await withApi({ LATENCY_MS: "20", JITTER_MS: "10" }, async (api) => {
        const run = await consume(
          runtime,
          "consumer-solved.ts",
          way,
          { KAFKA_TOPIC: topic, KAFKA_GROUP_ID: groupId, API_URL: api.usersUrl },
          committedToEnd(admin, groupId, topic),
        );
        // Read back over SASL_SSL: each valid id answered 201 once, each poison message in
        // the dead-letter topic (matched to its original), every partition committed.
        const { letters } = await expectExactlyOnce(admin, api, groupId, topic);
        expect(letters).toHaveLength(messages / malformedEvery);
        expect(run.summary).toMatchObject({ deadLettered: messages / malformedEvery });
      });
    });

    it("SASL_SSL, PLAIN: consumer-fast.ts reads the topic to its end", {
      tags: ["full"],
    }, async () => {
      const way: Way = "SASL_SSL PLAIN";
      const topic = uniqueName(`tls-plain-fast-${runtime}`);
      const groupId = `${topic}-fast`;
      await fill(runtime, way, topic);
      const run = await consume(
        runtime,
        "consumer-fast.ts",
        way,
        { KAFKA_TOPIC: topic, KAFKA_GROUP_ID: groupId },
        committedToEnd(admin, groupId, topic),
      );
      await expectCommittedToEnd(admin, groupId, topic);
      expect(run.summary?.processed).toBe(messages); // its own word, beside
    });

    it("SASL_SSL, PLAIN: consumer-backpressure.ts still takes the whole backlog at once and commits calls it never finished", {
      tags: ["full"],
    }, async () => {
      const way: Way = "SASL_SSL PLAIN";
      const topic = uniqueName(`tls-plain-bp-${runtime}`);
      const groupId = `${topic}-backpressure`;
      await fill(runtime, way, topic);
      // An API of 20 s: the failure shows long before any call is answered.
      await withApi({ LATENCY_MS: "20000", JITTER_MS: "0" }, async (api) => {
        // Bun's fetch opens 256 sockets and queues the rest inside Bun: that many arrive.
        const arriving = runtime === "bun" ? Math.min(256, messages) : messages;
        let answeredAtStop: number | undefined;
        const committed = committedToEnd(admin, groupId, topic);
        await consume(
          runtime,
          "consumer-backpressure.ts",
          way,
          { KAFKA_TOPIC: topic, KAFKA_GROUP_ID: groupId, API_URL: api.usersUrl },
          {
            // Stopped once the broker holds commits at the end and the calls have all
            // arrived: how many had the API answered by then?
            met: async () => {
              if (!(await committed.met())) return false;
              const stats = await api.stats();
              if (stats.requests < arriving) return false;
              answeredAtStop = stats.distinctSucceeded;
              return true;
            },
            close: committed.close,
          },
        );
        // It committed every offset while the API had answered none of those calls, and
        // held every call open at once, where consumer-solved.ts holds CONCURRENCY.
        expect(answeredAtStop).toBe(0);
        expect((await api.stats()).peakConcurrent).toBeGreaterThanOrEqual(arriving);
      });
    });

    it("mutual TLS: producer.ts with a certificate and an encrypted key from files, consumer-solved.ts with them as PEM text", async () => {
      const topic = uniqueName(`tls-mutual-${runtime}`);
      const groupId = `${topic}-solved`;
      await fill(runtime, "mutual TLS, files", topic);
      await withApi({ LATENCY_MS: "20", JITTER_MS: "10" }, async (api) => {
        await consume(
          runtime,
          "consumer-solved.ts",
          "mutual TLS, PEM text",
          { KAFKA_TOPIC: topic, KAFKA_GROUP_ID: groupId, API_URL: api.usersUrl },
          committedToEnd(admin, groupId, topic),
        );
        const { letters } = await expectExactlyOnce(admin, api, groupId, topic);
        expect(letters).toEqual([]);
      });
    });
  },
);

afterAll(() => {
  // Every run of this file, succeeding (and any that failed): no password anywhere. At
  // least those of the quick tier's cases (two runs each).
  passwords.expectNoneLeaked(runtimes.length * 4);
});
