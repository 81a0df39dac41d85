// @module-tag full
// Goodput under a failing API, end to end: a message that keeps failing must not slow
// the others down. While it waits out its backoff it holds no concurrency slot, so
// with CONCURRENCY 2 the other messages flow on two slots, not one. The evidence is
// the mock API's: how many other ids it answered while the failing one kept coming.
import { afterEach, expect, inject, it } from "vitest";
import { committedOffsets, readTopic, uniqueName } from "../support/kafka.ts";
import { consumerEnv, type MockApi, produce, startMockApi } from "../support/services.ts";
import { type SolvedRun, startSolved } from "../support/solved.ts";

const brokers = inject("kafkaBrokers");

let api: MockApi | undefined;
let run: SolvedRun | undefined;
afterEach(async () => {
  if (run && run.child.exitCode === null && run.child.signalCode === null) {
    run.child.kill("SIGKILL");
  }
  await run?.done;
  await api?.stop();
});

interface FailingAnswer {
  id: string;
  at: number;
  succeededBefore: number;
}

it("bun: with CONCURRENCY 2 and one message that keeps failing, the others still flow on both slots", async () => {
  const latencyMs = 50;
  const others = 400;
  const backlog = await produce(brokers, uniqueName("goodput-poison"), {
    messages: others + 1,
    partitions: 1,
  });
  const poison = backlog.ids[0] as string;
  api = await startMockApi({ LATENCY_MS: String(latencyMs), JITTER_MS: "0", FAIL_IDS: poison });
  const usersUrl = api.usersUrl;
  const groupId = `${backlog.topic}-solved`;
  run = startSolved(
    "bun",
    consumerEnv(brokers, backlog.topic, groupId, {
      API_URL: usersUrl,
      CONCURRENCY: "2",
      MAX_RETRIES: "1000", // it keeps failing for the whole run
      RETRY_BASE_MS: "300", // backoff 150-300 ms: most of the time it is waiting
      RETRY_MAX_MS: "300",
      SHUTDOWN_TIMEOUT_MS: "500",
    }),
  );
  const deadline = Date.now() + 120_000;
  while ((await api.stats()).succeeded < others) {
    if (Date.now() > deadline) throw new Error(`not all ${others} others answered in 120 s`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  const base = usersUrl.replace(/\/users$/, "");
  const { answers } = (await (await fetch(`${base}/failing`)).json()) as {
    answers: FailingAnswer[];
  };
  run.child.kill("SIGTERM");
  const result = await run.done;
  expect(result.code, result.stderr.slice(-2_000)).toBe(0);

  // While the failing id kept coming back (its first to its last answer), count the
  // other ids answered. One call takes at least latencyMs at the API, so a single slot
  // answers at most window / latency + 1 of them: the failing message holding its slot
  // through its backoff would leave exactly one. Two slots, minus the time the failing
  // message really spends at the API, is the full rate.
  expect(answers.every((answer) => answer.id === poison)).toBe(true);
  expect(answers.length).toBeGreaterThanOrEqual(5);
  const first = answers[0] as FailingAnswer;
  const last = answers.at(-1) as FailingAnswer;
  const windowMs = last.at - first.at;
  const answeredMeanwhile = last.succeededBefore - first.succeededBefore;
  const oneSlotAtMost = windowMs / latencyMs + 1;
  const fullRate = (2 * windowMs - (answers.length - 1) * latencyMs) / latencyMs;
  console.log(
    `[goodput] failing id answered ${answers.length} times over ${windowMs} ms; meanwhile ${answeredMeanwhile} others answered (one slot: at most ${Math.floor(oneSlotAtMost)}, full rate: ${Math.round(fullRate)})`,
  );
  expect(answeredMeanwhile).toBeGreaterThan(others / 2); // the window spans most of the run
  expect(answeredMeanwhile).toBeGreaterThan(1.3 * oneSlotAtMost);
  expect(answeredMeanwhile).toBeGreaterThanOrEqual(0.75 * fullRate);

  // Every other id answered once; the failing one was never committed past: the
  // group's offset stops at it, so a restart tries it again.
  expect((await api.succeeded()).sort()).toEqual(backlog.ids.slice(1).sort());
  const stored = await readTopic(brokers, backlog.topic);
  const poisonOffset = stored.find((m) => JSON.parse(String(m.value)).id === poison)?.offset;
  expect(poisonOffset).toBeDefined();
  const committed = Number((await committedOffsets(brokers, groupId, backlog.topic))[0]);
  expect(Math.max(0, committed)).toBe(poisonOffset); // "-1": nothing committed, at offset 0
});
