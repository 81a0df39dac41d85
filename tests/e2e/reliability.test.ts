// What consumer-solved.ts owes when things go wrong, end to end: a real broker, the
// mock API (or a small local one) and the consumer as real processes, and one fault per
// case: a crash, a crash while calls behind done ones never answer, a broker restart,
// failing, hanging and overloaded calls, 4xx refusals, poison messages, a dead group
// member, SIGTERM, nothing to connect to; and per-key ordering. Every case has its own
// topic and group; each runtime runs at least one case. Delivery is read from what the
// API answered 201, the DLQ topic and the broker's commits (support/evidence.ts).
import { serve } from "@hono/node-server";
import { Hono } from "hono";
import { describe, expect, inject, it } from "vitest";
import { freePort, startJvmBroker, stopJvmBroker } from "../../scripts/kafka-jvm.ts";
import type { Runtime } from "../../scripts/runtimes.ts";
import type { RunResult } from "../support/child.ts";
import {
  answeredTwice,
  belowCommitted,
  expectAnsweredAtLeastOnce,
  expectExactlyOnce,
  idOf,
} from "../support/evidence.ts";
import { recordFigure } from "../support/figures.ts";
import {
  committedOffsets,
  committedToEnd,
  endOffsets,
  type OffsetsByPartition,
  readTopic,
  type StoredMessage,
  uniqueName,
} from "../support/kafka.ts";
import { type Backlog, consumerEnv, type MockApi, produce } from "../support/services.ts";
import { expectExit, statusesOf, stoppedAfterEach, within } from "../support/solved.ts";

const brokers = inject("kafkaBrokers");

const { solved, mockApi: startApi } = stoppedAfterEach();
const mockApi = (env: Record<string, string>) =>
  startApi({ LATENCY_MS: "30", JITTER_MS: "20", ...env });

/** Met once the group `env` names has committed its topic to the end, on the broker's word. */
const caughtUp = (env: Record<string, string>) =>
  committedToEnd(
    env.KAFKA_BROKERS as string,
    env.KAFKA_GROUP_ID as string,
    env.KAFKA_TOPIC as string,
  );

/** Runs consumer-solved.ts until it exits, or until it has caught up and then SIGTERM. */
async function runSolved(
  runtime: Runtime,
  env: Record<string, string>,
  timeoutMs = 150_000,
): Promise<RunResult> {
  return await within(
    solved(runtime, env, caughtUp(env)).done,
    timeoutMs,
    `consumer-solved.ts on ${runtime}`,
  );
}

/** Polls `check` until it holds, or fails after `ms` with what `explain` says. */
async function until(
  check: () => Promise<boolean>,
  ms: number,
  what: string,
  explain: () => Promise<string> = async () => "",
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms\n${await explain()}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** Messages before the committed offsets ("-1": none committed, so none). */
function committedCount(offsets: OffsetsByPartition): number {
  return Object.values(offsets).reduce((sum, offset) => sum + Math.max(0, Number(offset)), 0);
}

/**
 * Every partition committed to its end offset; with a run's summary, the consumer's own
 * account of its commits says the same (it counts a commit only once the broker took it).
 */
async function expectAllCommitted(
  groupId: string,
  topic: string,
  { via = brokers, run }: { via?: string; run?: RunResult } = {},
) {
  const ends = await endOffsets(via, topic);
  expect(await committedOffsets(via, groupId, topic)).toEqual(ends);
  if (run) {
    const asNumbers = Object.entries(ends).map(([partition, end]) => [partition, Number(end)]);
    expect(run.summary?.committed).toEqual(Object.fromEntries(asNumbers));
  }
}

/** Waits until no call is open at the API, so what it has answered stops changing. */
async function settledAnswers(api: MockApi): Promise<string[]> {
  await until(async () => (await api.stats()).inFlight === 0, 30_000, "the API settling");
  return await api.succeeded();
}

/**
 * At least once after a stop (crash or SIGTERM) and a restart, on evidence from the API
 * and the broker only: every id answered 201; ids below the offsets committed at the
 * stop were answered before it and never again; the restart answered exactly the ids
 * at or above those offsets; and an id answered twice is one answered before the stop
 * and not committed. Returns that bound and the duplicates.
 */
async function expectRedeliveryBounded(
  api: Pick<MockApi, "succeeded">,
  source: StoredMessage[],
  committedAtStop: OffsetsByPartition,
  answeredBeforeRestart: string[],
) {
  const ids = source.map((m) => idOf(m) as string);
  const counts = await expectAnsweredAtLeastOnce(api, ids);
  const done = new Set(belowCommitted(source, committedAtStop).map((m) => idOf(m) as string));
  const before = new Set(answeredBeforeRestart);
  for (const id of done) {
    expect(before.has(id), `${id} committed at the stop, never answered before it`).toBe(true);
    expect(counts.get(id), `${id} committed at the stop, answered again`).toBe(1);
  }
  const afterRestart = new Set((await api.succeeded()).slice(answeredBeforeRestart.length));
  // After the restart only what the commit did not cover is answered. What the commit's
  // metadata listed as done may be skipped, but only if it was answered before.
  for (const id of afterRestart)
    expect(done.has(id), `${id} below the commit, answered again`).toBe(false);
  for (const id of ids.filter((id) => !done.has(id))) {
    expect(afterRestart.has(id) || before.has(id), `${id} never answered`).toBe(true);
  }
  const mayRepeat = new Set([...before].filter((id) => !done.has(id)));
  const twice = answeredTwice(counts);
  for (const id of twice) expect(mayRepeat.has(id), `${id} answered twice`).toBe(true);
  return { bound: mayRepeat.size, duplicates: twice.length };
}

function record(
  name: string,
  runtime: Runtime,
  backlog: Backlog | number,
  run: RunResult,
  note: string,
) {
  recordFigure({
    case: name,
    runtime,
    consumer: "solved",
    messages: typeof backlog === "number" ? backlog : backlog.messages,
    observedPeakRssMb: run.observedPeakRssMb,
    reportedPeakRssMb: Number(run.summary?.peakRssMb) || undefined,
    seconds: run.durationMs / 1_000,
    exit: run.signal ?? String(run.code),
    note,
  });
}

describe("consumer-solved.ts under faults", () => {
  it("node: SIGKILL partway; a restart delivers every id, with duplicates only from what had reached the API uncommitted", async () => {
    const api = await mockApi({});
    const backlog = await produce(brokers, uniqueName("crash"), { messages: 1_500 });
    const groupId = `${backlog.topic}-solved`;
    const env = consumerEnv(brokers, backlog.topic, groupId, {
      API_URL: api.usersUrl,
      CONCURRENCY: "20",
      HIGH_WATERMARK: "200",
      LOW_WATERMARK: "100",
      // Calls to the frozen API must not time out and finish before the kill.
      REQUEST_TIMEOUT_MS: "120000",
    });

    const first = solved("node", env);
    await first.waitForStatus((s) => s.processed >= backlog.messages / 3);
    // A status line is up to 500 ms old when the kill lands; work admitted and done in
    // between would count in no line. So freeze the API first (SIGSTOP): no call can
    // finish, the queue fills, fetching pauses, and once two lines in a row are the same,
    // paused with every call hanging, the last one describes the process as it is killed.
    process.kill(api.pid, "SIGSTOP");
    let previous: string | undefined;
    try {
      await first.waitForStatus(
        (s) => {
          const state = JSON.stringify([s.processed, s.queued, s.inFlight, s.uncommitted]);
          const steady = state === previous && s.paused && s.inFlight === s.limit;
          previous = state;
          return steady;
        },
        { newOnly: true, timeoutMs: 30_000 },
      );
      first.child.kill("SIGKILL");
      // Resume the API only once the consumer is gone and its sockets closed: the calls
      // it had open then end unanswered (the mock counts no 201 to a caller gone).
      await first.done;
    } finally {
      process.kill(api.pid, "SIGCONT");
    }
    const killed = await first.done;
    expect(killed.signal).toBe("SIGKILL");
    const last = first.statuses.at(-1);
    if (!last) throw new Error("no status line before the kill");
    const offsetsAtKill = await committedOffsets(brokers, groupId, backlog.topic);
    const committedAtKill = committedCount(offsetsAtKill);
    expect(committedAtKill).toBeGreaterThan(0); // so the restart has something to skip
    // Calls the kill cut off are not answers: the mock counts a 201 only to a live caller.
    const answeredAtKill = await settledAnswers(api);

    const second = await runSolved("node", env);
    expectExit(second, 0);
    const source = await readTopic(brokers, backlog.topic);
    // The bound on duplicates comes from the API and the broker, not from the consumer:
    // only ids answered before the kill and not committed by then may be answered again.
    const { bound, duplicates } = await expectRedeliveryBounded(
      api,
      source,
      offsetsAtKill,
      answeredAtKill,
    );
    expect(await readTopic(brokers, `${backlog.topic}.dlq`)).toEqual([]);
    await expectAllCommitted(groupId, backlog.topic);
    console.log(
      `[crash] ids answered twice ${duplicates} <= ${bound} answered before the kill and not committed; committed at the kill ${committedAtKill}, answered ${answeredAtKill.length}; the consumer's last status: in flight ${last.inFlight}, queued ${last.queued}, uncommitted ${last.uncommitted}, awaiting commit ${last.awaitingCommit}; it reprocessed ${second.summary?.processed} (its own count)`,
    );
    record("crash + restart", "node", backlog, second, `dup ${duplicates} <= ${bound}`);
  });

  it("node: SIGKILL while calls behind done ones never answer; the restart answers them (no commit past an unfinished offset)", async () => {
    // A local API that holds every 50th event (n % 50 == 10) without an answer and
    // answers the rest 201 at once: done offsets certainly wait behind unfinished ones.
    const succeeded: string[] = [];
    let holding = true;
    let release = () => {};
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const app = new Hono();
    app.post("/users", async (c) => {
      const { id } = (await c.req.json()) as { id: string };
      if (holding && Number(id.split("-").at(-1)) % 50 === 10) {
        await released;
        return c.json({ error: "released after the kill" }, 503);
      }
      succeeded.push(id);
      return c.json({ ok: true }, 201);
    });
    const server = await new Promise<{ port: number; close: () => void }>((resolve) => {
      const listening = serve({ fetch: app.fetch, hostname: "127.0.0.1", port: 0 }, (info) =>
        resolve({ port: info.port, close: () => listening.close() }),
      );
    });
    try {
      const backlog = await produce(brokers, uniqueName("held"), { messages: 600 });
      const held = backlog.ids.filter((id) => Number(id.split("-").at(-1)) % 50 === 10);
      const groupId = `${backlog.topic}-solved`;
      const env = consumerEnv(brokers, backlog.topic, groupId, {
        API_URL: `http://127.0.0.1:${server.port}/users`,
        CONCURRENCY: "20",
        COMMIT_INTERVAL_MS: "200",
      });
      const first = solved("node", env);
      // Every other event answered, then the commits settle (three equal readings).
      await until(
        async () => succeeded.length === backlog.messages - held.length,
        60_000,
        "answers",
      );
      let readings: string[] = [];
      await until(
        async () => {
          readings = [
            ...readings,
            JSON.stringify(await committedOffsets(brokers, groupId, backlog.topic)),
          ].slice(-3);
          return readings.length === 3 && new Set(readings).size === 1;
        },
        30_000,
        "the commits settling",
      );
      first.child.kill("SIGKILL");
      await first.done;
      const atKill = await committedOffsets(brokers, groupId, backlog.topic);
      const answeredAtKill = [...succeeded];
      holding = false;
      release();

      const second = await runSolved("node", env);
      expectExit(second, 0);
      const source = await readTopic(brokers, backlog.topic);
      const { bound, duplicates } = await expectRedeliveryBounded(
        { succeeded: async () => succeeded },
        source,
        atKill,
        answeredAtKill,
      );
      for (const id of held)
        expect(
          succeeded.filter((x) => x === id),
          id,
        ).toHaveLength(1);
      await expectAllCommitted(groupId, backlog.topic);
      console.log(
        `[held] ${held.length} held; committed at the kill ${committedCount(atKill)} of ${backlog.messages}, ${answeredAtKill.length} answered; ids answered twice ${duplicates} <= ${bound}`,
      );
      record("held calls + SIGKILL", "node", backlog, second, `dup ${duplicates} <= ${bound}`);
      expect(committedCount(atKill)).toBeLessThan(answeredAtKill.length); // done work waited
    } finally {
      release();
      server.close();
    }
  });

  it("bun and node: the broker restarts partway; each consumer reconnects by itself and finishes", async () => {
    // Its own broker, so stopping it disturbs no other case; `broker` follows the restart.
    let broker = await startJvmBroker();
    try {
      const api = await mockApi({});
      const env = (backlog: Backlog, extra: Record<string, string>) =>
        consumerEnv(broker.brokers, backlog.topic, `${backlog.topic}-solved`, {
          API_URL: api.usersUrl,
          ...extra,
        });
      // One consumer still has to fetch after the restart; the other holds its whole
      // backlog before the broker goes and finishes it while the broker is away, so
      // only its commits wait for the broker.
      const [fetching, holding] = await Promise.all([
        produce(broker.brokers, uniqueName("restart-fetching"), { messages: 1_200 }),
        produce(broker.brokers, uniqueName("restart-holding"), { messages: 300 }),
      ]);
      const envA = env(fetching, { CONCURRENCY: "10", HIGH_WATERMARK: "100", LOW_WATERMARK: "50" });
      const envB = env(holding, { CONCURRENCY: "1", HIGH_WATERMARK: "1000", LOW_WATERMARK: "500" });
      const a = solved("bun", envA, caughtUp(envA));
      const b = solved("node", envB, caughtUp(envB));
      const down = (await a.waitForStatus((s) => s.processed >= 200)).processed;
      await b.waitForStatus((s) => s.processed + s.queued + s.inFlight >= holding.messages);
      await stopJvmBroker(broker, { keepData: true });
      // What it processes from the next line on, it processes with the broker away.
      const held = await b.waitForStatus(() => true, { newOnly: true });
      await b.waitForStatus((s) => s.processed >= holding.messages, { timeoutMs: 90_000 });
      broker = await startJvmBroker({ dir: broker.dir });

      const results = await within(
        Promise.all([a.done, b.done]),
        150_000,
        "both finishing after the restart",
      );
      for (const [backlog, result] of [
        [fetching, results[0]],
        [holding, results[1]],
      ] as const) {
        expectExit(result, 0);
        expect(result.summary).toMatchObject({
          processed: backlog.messages,
          deadLettered: 0,
          exitReason: "stopped by SIGTERM",
        });
        await expectAllCommitted(`${backlog.topic}-solved`, backlog.topic, {
          via: broker.brokers,
          run: result,
        });
      }
      expect(down).toBeLessThan(fetching.messages); // the broker went away partway
      expect(held.processed).toBeLessThan(holding.messages);
      // At least once, on the API's word: every id answered 201 (duplicates reported).
      const counts = await expectAnsweredAtLeastOnce(api, [...fetching.ids, ...holding.ids]);
      const stats = await api.stats();
      console.log(
        `[broker restart] fetching (bun): processed ${down} when the broker stopped, commit errors ${results[0].summary?.commitErrors}, redelivered ${results[0].summary?.redelivered}; holding (node): processed ${held.processed} of ${holding.messages} once it had stopped, commit errors ${results[1].summary?.commitErrors}; ids answered twice ${answeredTwice(counts).length}, calls received twice ${stats.duplicates}`,
      );
      record(
        "broker restart",
        "bun",
        fetching,
        results[0],
        `commit errors ${results[0].summary?.commitErrors}`,
      );
      record(
        "broker restart, done while away",
        "node",
        holding,
        results[1],
        `commit errors ${results[1].summary?.commitErrors}`,
      );
    } finally {
      await stopJvmBroker(broker);
    }
  });

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

  it("node: two consumers in a group, one SIGKILLed partway; the other takes over its partitions", async () => {
    const api = await mockApi({});
    const backlog = await produce(brokers, uniqueName("group"), {
      messages: 1_800,
      partitions: 6,
    });
    const groupId = `${backlog.topic}-solved`;
    // Stopped from outside once the whole group is done: a member cannot tell that by
    // itself before the group has noticed the dead one (session timeout, 30 s).
    const env = consumerEnv(brokers, backlog.topic, groupId, {
      API_URL: api.usersUrl,
      CONCURRENCY: "10",
      HIGH_WATERMARK: "100",
      LOW_WATERMARK: "50",
    });
    const victim = solved("node", env);
    let atKill: OffsetsByPartition = {};
    let answeredAtKill: string[] = [];
    await victim.waitForStatus((s) => s.processed > 0);
    const survivor = solved("node", env);
    try {
      // Both hold partitions once the survivor has processed some.
      await survivor.waitForStatus((s) => s.processed > 0);
      await until(
        async () => (await api.stats()).distinctIds >= backlog.messages / 3,
        60_000,
        "a third of the backlog processed",
      );
      victim.child.kill("SIGKILL");
      const killed = await victim.done;
      expect(killed.signal).toBe("SIGKILL");
      atKill = await committedOffsets(brokers, groupId, backlog.topic);
      answeredAtKill = await settledAnswers(api);
      // The group has it all once every partition's commit reaches its end (the dead
      // member's partitions move after the session timeout, 30 s).
      const ends = JSON.stringify(await endOffsets(brokers, backlog.topic));
      let committed = "";
      await until(
        async () => {
          committed = JSON.stringify(await committedOffsets(brokers, groupId, backlog.topic));
          return committed === ends;
        },
        120_000,
        "the group committing every partition to its end",
        async () =>
          `committed ${committed}, ends ${ends}; the survivor's last status lines:\n${survivor.statuses
            .slice(-3)
            .map((status) => JSON.stringify(status))
            .join("\n")}`,
      );
    } finally {
      survivor.child.kill("SIGTERM");
    }
    const result = await within(survivor.done, 30_000, "the survivor stopping");
    expectExit(result, 0);
    expect(result.summary?.exitReason).toBe("stopped by SIGTERM");
    // At least once, on the API's word. A handover repeats only unfinished work: after
    // the kill, no id is answered twice, and an id answered before it again only if the
    // broker had not committed it. (The join's handover, before the kill, may repeat
    // what was in flight then: those are reported, bounded by no figure of the run.)
    const counts = await expectAnsweredAtLeastOnce(api, backlog.ids);
    const source = await readTopic(brokers, backlog.topic);
    const done = new Set(belowCommitted(source, atKill).map((m) => idOf(m) as string));
    const before = new Set(answeredAtKill);
    const afterKill = (await api.succeeded()).slice(answeredAtKill.length);
    expect(new Set(afterKill).size).toBe(afterKill.length);
    const again = afterKill.filter((id) => before.has(id));
    for (const id of again)
      expect(done.has(id), `${id} committed at the kill, answered again`).toBe(false);
    const mayRepeat = [...before].filter((id) => !done.has(id)).length;
    console.log(
      `[group] after the kill ${again.length} ids answered again <= ${mayRepeat} answered before it and not committed; before the kill ${answeredAtKill.length - before.size} answered twice (the join's handover)`,
    );
    expect(await readTopic(brokers, `${backlog.topic}.dlq`)).toEqual([]);
    await expectAllCommitted(groupId, backlog.topic);
    const twice = answeredTwice(counts).length;
    console.log(
      `[group] ids answered twice ${twice}; committed at the kill ${committedCount(atKill)}; the survivor's own count: processed ${result.summary?.processed}, dropped on revoke ${result.summary?.droppedOnRevoke}`,
    );
    record("group member killed", "node", backlog, result, `dup ${twice}`);
    // It holds all six in the end, and itself committed to the end each partition the
    // dead member held unfinished.
    const ends = await endOffsets(brokers, backlog.topic);
    const orphans = (victim.statuses.at(-1)?.partitions ?? []).filter(
      (p) => Number(atKill[p]) < Number(ends[p]),
    );
    console.log(`[group] the dead member left partitions ${orphans} unfinished`);
    expect(orphans.length).toBeGreaterThan(0);
    expect(statusesOf(result).at(-1)?.partitions).toEqual([0, 1, 2, 3, 4, 5]);
    for (const p of orphans)
      expect(result.summary?.committed).toHaveProperty(String(p), Number(ends[p]));
  });

  describe.each([
    { label: "finishes the queue", shutdownMs: 10_000 },
    { label: "abandons what is left at the deadline", shutdownMs: 300 },
  ])("bun: SIGTERM during a busy run $label", ({ shutdownMs }) => {
    it("exits 0 and a restart reprocesses only what was unfinished", async () => {
      const api = await mockApi({ LATENCY_MS: "100", JITTER_MS: "20" });
      const backlog = await produce(brokers, uniqueName("sigterm"), { messages: 1_200 });
      const groupId = `${backlog.topic}-solved`;
      const env = consumerEnv(brokers, backlog.topic, groupId, {
        API_URL: api.usersUrl,
        CONCURRENCY: "10",
        HIGH_WATERMARK: "200",
        LOW_WATERMARK: "100",
        SHUTDOWN_TIMEOUT_MS: String(shutdownMs),
      });
      const first = solved("bun", env);
      await first.waitForStatus((s) => s.processed >= 200 && s.queued >= 100);
      first.child.kill("SIGTERM");
      const stopped = await within(first.done, 30_000, "exit after SIGTERM");
      expectExit(stopped, 0);
      expect(stopped.summary?.exitReason).toBe("stopped by SIGTERM");
      const line = stopped.stderr.match(
        /stopped by SIGTERM: (\d+) messages were queued or in flight; (\d+) left unfinished/,
      );
      expect(line, stopped.stderr).not.toBeNull();
      const abandoned = Number(stopped.summary?.abandoned);
      expect(Number(line?.[2])).toBe(abandoned);
      expect(Number(line?.[1])).toBeGreaterThan(0); // it was busy
      const offsetsAtStop = await committedOffsets(brokers, groupId, backlog.topic);
      const committed = committedCount(offsetsAtStop);
      const answeredBefore = await settledAnswers(api);
      expect(new Set(answeredBefore).size).toBe(answeredBefore.length); // none twice yet

      const second = await runSolved("bun", env);
      expectExit(second, 0);
      const source = await readTopic(brokers, backlog.topic);
      const { bound, duplicates } = await expectRedeliveryBounded(
        api,
        source,
        offsetsAtStop,
        answeredBefore,
      );
      expect(await readTopic(brokers, `${backlog.topic}.dlq`)).toEqual([]);
      await expectAllCommitted(groupId, backlog.topic);
      console.log(
        `[sigterm, ${shutdownMs} ms to drain] committed ${committed} and answered ${answeredBefore.length} at the stop; ids answered twice ${duplicates} <= ${bound}; the consumer's own count: ${line?.[1]} queued or in flight at SIGTERM, ${abandoned} abandoned`,
      );
      record(
        `SIGTERM, ${shutdownMs} ms`,
        "bun",
        backlog,
        stopped,
        `abandoned ${abandoned}, again ${duplicates}`,
      );
      expect(committed).toBeLessThan(backlog.messages); // stopped partway
      if (shutdownMs < 1_000) {
        expect(abandoned).toBeGreaterThan(0);
      } else {
        // Given time, it finishes what it took and commits it all: exactly once.
        expect(bound).toBe(0);
        expect(abandoned).toBe(0);
      }
    });
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
