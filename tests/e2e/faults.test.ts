// @module-tag full
// What consumer-solved.ts owes when what it talks to misbehaves, end to end: a real
// broker, the mock API (or a small local one) and the consumer as real processes, and
// one fault per case: failing, hanging and overloaded calls, 4xx refusals, poison
// messages, nothing to connect to; and per-key ordering. Every case
// has its own topic and group; each runtime runs at least one case. Delivery is read
// from what the API answered 201, the DLQ topic and the broker's commits
// (support/evidence.ts). Crashes and stops are tests/e2e/reliability.test.ts; a broker
// that goes away, tests/e2e/outage.test.ts.
import { serve } from "@hono/node-server";
import { Hono } from "hono";
import { describe, expect, inject, it } from "vitest";
import { freePort } from "../../scripts/kafka-jvm.ts";
import { expectExactlyOnce, idOf } from "../support/evidence.ts";
import { committedOffsets, readTopic, type StoredMessage, uniqueName } from "../support/kafka.ts";
import {
  caughtUp,
  committedCount,
  expectAllCommitted,
  faultCases,
  record,
} from "../support/redelivery.ts";
import { consumerEnv, produce } from "../support/services.ts";
import { expectExit, statusesOf, within } from "../support/solved.ts";

const brokers = inject("kafkaBrokers");

const { solved, mockApi, runSolved } = faultCases();

describe("consumer-solved.ts under faults", () => {
  it("deno: failing and hanging calls are retried, then dead-lettered with where they came from", async () => {
    const maxRetries = 1;
    const api = await mockApi({ ERROR_RATE: "0.1", HANG_RATE: "0.06", HANG_MS: "2000" });
    const backlog = await produce(brokers, uniqueName("faults"), { messages: 1_200 });
    const groupId = `${backlog.topic}-solved`;
    const run = await runSolved(
      "deno",
      consumerEnv(brokers, backlog.topic, groupId, {
        API_URL: api.usersUrl,
        CONCURRENCY: "20",
        // Far above the latency (30-50 ms), so only the hanging calls time out: a call
        // answered 201 that its caller gave up on while busy would be delivered twice.
        REQUEST_TIMEOUT_MS: "1000",
        MAX_RETRIES: String(maxRetries),
        RETRY_BASE_MS: "20",
      }),
    );
    expectExit(run, 0);
    // Exactly once, on evidence from outside: each message answered 201 once or
    // dead-lettered (matched back to it), never both, none left out; all committed.
    const { letters } = await expectExactlyOnce(brokers, api, groupId, backlog.topic);
    const answered = (await api.stats()).distinctSucceeded;
    const timeouts = letters.filter(({ letter }) =>
      letter.headers["dlq.reason"]?.startsWith("no answer"),
    );
    console.log(
      `[faults] answered 201 ${answered}, dead-lettered ${letters.length} (${timeouts.length} after timeouts); the consumer's own count: processed ${run.summary?.processed}, dead-lettered ${run.summary?.deadLettered}, retries ${run.summary?.retries}`,
    );
    record("500s and hangs", "deno", backlog, run, `${answered} + ${letters.length} dlq`);
    expect(answered + letters.length).toBe(backlog.messages);
    // 15% of attempts fail (6% hang, then 10% of the rest answer 500), so about 2.4% of
    // messages fail twice: some 28 dead letters, 39% of them timeouts. A run with none,
    // or with no timeout among them, comes once in 50,000.
    expect(timeouts.length).toBeGreaterThan(0);
    expect(letters.length - timeouts.length).toBeGreaterThan(0);
    for (const { letter } of letters) {
      expect(letter.headers["dlq.reason"]).toMatch(/^(HTTP 500\b|no answer within 1000 ms)/);
      expect(letter.headers["dlq.attempts"]).toBe(String(maxRetries + 1));
    }
    // Retried: more calls reached the API than there are messages.
    expect((await api.stats()).accepted).toBeGreaterThan(backlog.messages);
    expect((await api.stats()).distinctIds).toBe(backlog.messages); // every one was tried
    expect(run.summary).toMatchObject({ malformed: 0, deadLettered: letters.length });
    await expectAllCommitted(groupId, backlog.topic, { run });
  });

  it("bun: an API over capacity brings the concurrency limit down near its capacity, and nothing is lost", async () => {
    const capacity = 10;
    // "Retry-After: 0": the consumer's own backoff must still space its retries.
    const api = await mockApi({ CAPACITY: String(capacity), RETRY_AFTER_S: "0" });
    const backlog = await produce(brokers, uniqueName("overload"), { messages: 1_500 });
    const groupId = `${backlog.topic}-solved`;
    const overloadEnv = consumerEnv(brokers, backlog.topic, groupId, {
      API_URL: api.usersUrl,
      CONCURRENCY: "40",
    });
    const run = solved("bun", overloadEnv, caughtUp(overloadEnv));
    // Adapted by halfway through: from there on, count 429s against accepted calls.
    await run.waitForStatus((s) => s.processed >= backlog.messages / 2);
    const before = await api.stats();
    const result = await within(run.done, 150_000, "the overloaded run");
    const after = await api.stats();
    expectExit(result, 0);
    const { letters } = await expectExactlyOnce(brokers, api, groupId, backlog.topic);
    expect(letters).toEqual([]);
    await expectAllCommitted(groupId, backlog.topic, { run: result });

    const limits = statusesOf(result)
      .filter((s) => s.processed >= backlog.messages / 2)
      .map((s) => s.limit);
    const median = [...limits].sort((a, b) => a - b)[Math.floor(limits.length / 2)] ?? 0;
    const finalLimit = Number(result.summary?.limit);
    const rejected = after.rejected - before.rejected;
    const accepted = after.accepted - before.accepted;
    console.log(
      `[overload] capacity ${capacity}, CONCURRENCY 40: limit ${finalLimit} at the end; in the second half ${Math.min(...limits)}..${Math.max(...limits)}, median ${median}, 429s ${rejected} per ${accepted} accepted; ${after.rejected} 429s in all; peak concurrent ${after.peakConcurrent}`,
    );
    record("API capacity 10", "bun", backlog, result, `limit ${finalLimit}, median ${median}`);
    expect(after.rejected).toBeGreaterThan(0); // 40 calls at once did overload it
    // AIMD cuts the limit to 0.7× on a 429 (once per round) and adds about one per
    // round, so once adapted it saws between 0.7 × capacity and a little above it.
    expect(median).toBeGreaterThanOrEqual(capacity / 2);
    expect(median).toBeLessThanOrEqual(capacity + 1);
    for (const limit of [...limits, finalLimit]) {
      expect(limit).toBeGreaterThanOrEqual(capacity / 4);
      expect(limit).toBeLessThanOrEqual(capacity * 1.5);
    }
    expect(rejected / accepted).toBeLessThan(0.1);
    // No retry storm: throttled calls back off even when told they may retry at once.
    expect(after.rejected).toBeLessThan(backlog.messages / 10);
  });

  it("node: other 4xx answers (400, 422) are dead-lettered at once, without a retry", async () => {
    // A local API that refuses some messages for good: event n with n % 10 == 3 gets
    // 400, n % 10 == 7 gets 422, the rest 201. It records every call and every 201.
    const calls = new Map<string, number>();
    const succeeded: string[] = [];
    const app = new Hono();
    app.post("/users", async (c) => {
      const { id } = (await c.req.json()) as { id: string };
      calls.set(id, (calls.get(id) ?? 0) + 1);
      const n = Number(id.split("-").at(-1));
      if (n % 10 === 3) return c.json({ error: "bad request" }, 400);
      if (n % 10 === 7) return c.json({ error: "unprocessable" }, 422);
      succeeded.push(id);
      return c.json({ ok: true }, 201);
    });
    const server = await new Promise<{ port: number; close: () => void }>((resolve) => {
      const listening = serve({ fetch: app.fetch, hostname: "127.0.0.1", port: 0 }, (info) =>
        resolve({ port: info.port, close: () => listening.close() }),
      );
    });
    try {
      const backlog = await produce(brokers, uniqueName("refused"), { messages: 300 });
      const groupId = `${backlog.topic}-solved`;
      const run = await runSolved(
        "node",
        consumerEnv(brokers, backlog.topic, groupId, {
          API_URL: `http://127.0.0.1:${server.port}/users`,
          MAX_RETRIES: "3",
          RETRY_BASE_MS: "20",
        }),
      );
      expectExit(run, 0);
      const api = { succeeded: async () => succeeded };
      const { letters } = await expectExactlyOnce(brokers, api, groupId, backlog.topic);
      const refused = backlog.ids.filter((id) =>
        [3, 7].includes(Number(id.split("-").at(-1)) % 10),
      );
      expect(letters.map(({ origin }) => idOf(origin)).sort()).toEqual([...refused].sort());
      for (const { letter, origin } of letters) {
        const status = Number(idOf(origin)?.split("-").at(-1)) % 10 === 3 ? 400 : 422;
        expect(letter.headers["dlq.reason"]).toMatch(new RegExp(`^HTTP ${status}\\b`));
        expect(letter.headers["dlq.attempts"]).toBe("1");
      }
      // At once: each refused message was sent once, never retried.
      for (const id of refused) expect(calls.get(id), id).toBe(1);
      expect(calls.size).toBe(backlog.messages);
      console.log(
        `[4xx] ${letters.length} dead-lettered at once, ${succeeded.length} answered 201; the consumer's own count: retries ${run.summary?.retries}`,
      );
      record("400 and 422", "node", backlog, run, `${letters.length} dlq`);
      await expectAllCommitted(groupId, backlog.topic, { run });
    } finally {
      server.close();
    }
  });

  it("deno: poison messages of each kind are dead-lettered with their reason; the rest are processed", async () => {
    const every = 25;
    const api = await mockApi({});
    const backlog = await produce(brokers, uniqueName("poison"), {
      messages: 1_000,
      env: { MALFORMED_EVERY: String(every) },
    });
    const groupId = `${backlog.topic}-solved`;
    const poisonEnv = consumerEnv(brokers, backlog.topic, groupId, { API_URL: api.usersUrl });
    const run = solved("deno", poisonEnv, caughtUp(poisonEnv));
    const result = await within(run.done, 120_000, "the poison run");
    expectExit(result, 0);
    // What the producer actually wrote, read back and judged here on its own terms.
    const kindOf = (message: StoredMessage): number | undefined => {
      if (message.value === null) return 2;
      let event: unknown;
      try {
        event = JSON.parse(message.value.toString());
      } catch {
        return 0;
      }
      const { id, email, username } = (event ?? {}) as Record<string, unknown>;
      const fine = [id, email, username].every((field) => typeof field === "string");
      return fine ? undefined : 1;
    };
    const expected = [
      /^invalid JSON/,
      /^missing or non-string fields: email, username$/,
      /^null value/,
    ];
    const { source, letters } = await expectExactlyOnce(brokers, api, groupId, backlog.topic);
    const poison = source.filter((m) => kindOf(m) !== undefined);
    const written = [0, 0, 0];
    for (const m of poison) written[kindOf(m) as number] = (written[kindOf(m) as number] ?? 0) + 1;
    // Exactly the malformed ones were dead-lettered, each with its kind's reason.
    expect(letters.map(({ origin }) => `${origin.partition}@${origin.offset}`).sort()).toEqual(
      poison.map((m) => `${m.partition}@${m.offset}`).sort(),
    );
    for (const { letter, origin } of letters) {
      expect(letter.headers["dlq.reason"]).toMatch(expected[kindOf(origin) as number] as RegExp);
      expect(letter.headers["dlq.attempts"]).toBe("0");
    }
    expect((await api.stats()).invalid).toBe(0); // none of them reached the API
    console.log(
      `[poison] written malformed by kind (bad JSON, missing fields, null): ${written}; the consumer's own count: processed ${result.summary?.processed}, malformed ${result.summary?.malformed}`,
    );
    record("poison messages", "deno", backlog, result, `${poison.length} malformed`);
    expect(written.every((count) => count > 0)).toBe(true);
    expect(poison.length).toBe(Math.floor(backlog.messages / every)); // MALFORMED_EVERY held
    expect(result.summary).toMatchObject({ deadLettered: poison.length, malformed: poison.length });
    expect(run.statuses.at(-1)?.malformed).toBe(poison.length); // the status line says so too
    await expectAllCommitted(groupId, backlog.topic, { run: result });
  });
});

describe("consumer-solved.ts with nothing to connect to", () => {
  it("node: an unreachable broker: exit 1, naming the address", async () => {
    const address = `127.0.0.1:${await freePort()}`;
    const run = await runSolved(
      "node",
      consumerEnv(address, uniqueName("nobroker"), "nobroker"),
      60_000,
    );
    console.log(
      `[unreachable] broker: exit ${run.code} after ${(run.durationMs / 1_000).toFixed(1)} s`,
    );
    record("broker unreachable", "node", 0, run, "exit 1");
    expectExit(run, 1);
    const lastLine = run.stderr.trimEnd().split("\n").at(-1);
    expect(lastLine).toMatch(new RegExp(`^Kafka is unreachable at ${address}: .*ECONNREFUSED`));
    expect(run.stderr).not.toMatch(/^\s+at /m); // no bare stack trace
  });

  it("deno: an unreachable API: exit 4, naming the URL", async () => {
    const backlog = await produce(brokers, uniqueName("noapi"), { messages: 50 });
    const url = `http://127.0.0.1:${await freePort()}/users`;
    const groupId = `${backlog.topic}-solved`;
    const run = await runSolved(
      "deno",
      consumerEnv(brokers, backlog.topic, groupId, { API_URL: url, API_UNREACHABLE_MS: "2000" }),
      60_000,
    );
    console.log(
      `[unreachable] API: exit ${run.code} after ${(run.durationMs / 1_000).toFixed(1)} s`,
    );
    record("API unreachable", "deno", backlog, run, "exit 4");
    expectExit(run, 4);
    expect(run.stderr).toMatch(
      new RegExp(`The API at ${url} has not answered for \\d+ s \\(last error: .+\\)`),
    );
    expect(run.summary).toMatchObject({ exitReason: "API unreachable", exitCode: 4, processed: 0 });
    expect(run.stderr).not.toMatch(/^\s+at /m);
    // Nothing was processed, so nothing was committed: all of it is still there.
    expect(committedCount(await committedOffsets(brokers, groupId, backlog.topic))).toBe(0);
  });
});

describe("consumer-solved.ts with KEY_ORDERING", () => {
  it("node: the API answers each key's messages in offset order; without it, not", async () => {
    // Errors make some calls retry: a retried message must still hold back its key.
    const api = await mockApi({ LATENCY_MS: "10", JITTER_MS: "40", ERROR_RATE: "0.05" });
    const backlog = await produce(brokers, uniqueName("ordering"), {
      messages: 800,
      env: { KEYS: "8" },
    });
    // Each key's ids in offset order: a key lives in one partition.
    const byKey = new Map<string, string[]>();
    const keyOf = new Map<string, string>();
    for (const message of await readTopic(brokers, backlog.topic)) {
      const id = idOf(message);
      if (!id || message.key === null) throw new Error("a message without id or key");
      byKey.set(message.key, [...(byKey.get(message.key) ?? []), id]);
      keyOf.set(id, message.key);
    }
    expect(byKey.size).toBe(8);

    const outOfOrderKeys = async (keyOrdering: boolean) => {
      await api.reset();
      const groupId = `${backlog.topic}-${keyOrdering ? "ordered" : "unordered"}`;
      const run = await runSolved(
        "node",
        consumerEnv(brokers, backlog.topic, groupId, {
          API_URL: api.usersUrl,
          CONCURRENCY: "20",
          RETRY_BASE_MS: "20",
          KEY_ORDERING: String(keyOrdering),
        }),
      );
      expectExit(run, 0);
      // Exactly once (the retried calls answered 500 first), nothing dead-lettered.
      const { letters } = await expectExactlyOnce(brokers, api, groupId, backlog.topic);
      expect(letters).toEqual([]);
      await expectAllCommitted(groupId, backlog.topic, { run });
      const answered = new Map<string, string[]>();
      for (const id of await api.succeeded()) {
        const key = keyOf.get(id) as string;
        answered.set(key, [...(answered.get(key) ?? []), id]);
      }
      const wrong = [...byKey].filter(
        ([key, ids]) => JSON.stringify(answered.get(key)) !== JSON.stringify(ids),
      );
      console.log(
        `[ordering] KEY_ORDERING=${keyOrdering}: ${wrong.length} of ${byKey.size} keys out of offset order; retries ${run.summary?.retries}`,
      );
      return { run, wrong: wrong.length };
    };
    const ordered = await outOfOrderKeys(true);
    record("KEY_ORDERING", "node", backlog, ordered.run, `${ordered.wrong} keys out of order`);
    expect(Number(ordered.run.summary?.retries)).toBeGreaterThan(0);
    expect(ordered.wrong).toBe(0);
    // The same check on the same backlog without key ordering: it can fail.
    expect((await outOfOrderKeys(false)).wrong).toBeGreaterThan(0);
  });
});
