// What the crash, stop and fault cases share (tests/e2e/reliability.test.ts and
// faults.test.ts): running the solved consumer to the end, waiting on outside
// evidence, and the bound on redelivery after a stop, from the API and the broker only.
import { expect, inject } from "vitest";
import type { Runtime } from "../../scripts/runtimes.ts";
import type { RunResult, StopCondition } from "./child.ts";
import { answeredTwice, belowCommitted, expectAnsweredAtLeastOnce, idOf } from "./evidence.ts";
import { recordFigure, runFigures } from "./figures.ts";
import {
  committedOffsets,
  committedToEnd,
  endOffsets,
  type OffsetsByPartition,
  type StoredMessage,
} from "./kafka.ts";
import type { Backlog, MockApi } from "./services.ts";
import { type SolvedRun, stoppedAfterEach, within } from "./solved.ts";

const brokers = inject("kafkaBrokers");

/**
 * Settings for cases that kill a group member: the group gives its partitions away
 * after 6 s (the broker's smallest allowed session), not KafkaJS's default 30 s.
 */
export const fastFailover = { SESSION_TIMEOUT_MS: "6000" } as const;

/** Met once the group `env` names has committed its topic to the end, on the broker's word. */
export const caughtUp = (env: Record<string, string>) =>
  committedToEnd(
    env.KAFKA_BROKERS as string,
    env.KAFKA_GROUP_ID as string,
    env.KAFKA_TOPIC as string,
  );

/**
 * Runs consumer-solved.ts (started by `start`, e.g. stoppedAfterEach's `solved`) until
 * it exits, or until it has caught up and then SIGTERM.
 */
export async function runToEnd(
  start: (runtime: Runtime, env: Record<string, string>, stopWhen?: StopCondition) => SolvedRun,
  runtime: Runtime,
  env: Record<string, string>,
  timeoutMs = 150_000,
): Promise<RunResult> {
  return await within(
    start(runtime, env, caughtUp(env)).done,
    timeoutMs,
    `consumer-solved.ts on ${runtime}`,
  );
}

/**
 * What a file of these cases starts, stopped after each case (stoppedAfterEach): the
 * solved consumer, the mock API at 30 ms (±20) unless told otherwise, and runSolved,
 * which runs the consumer to the end (runToEnd).
 */
export function faultCases() {
  const { solved, mockApi } = stoppedAfterEach();
  return {
    solved,
    mockApi: (env: Record<string, string>) =>
      mockApi({ LATENCY_MS: "30", JITTER_MS: "20", ...env }),
    runSolved: (runtime: Runtime, env: Record<string, string>, timeoutMs?: number) =>
      runToEnd(solved, runtime, env, timeoutMs),
  };
}

/** Polls `check` until it holds, or fails after `ms` with what `explain` says. */
export async function eventually(
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
export function committedCount(offsets: OffsetsByPartition): number {
  return Object.values(offsets).reduce((sum, offset) => sum + Math.max(0, Number(offset)), 0);
}

/**
 * Every partition committed to its end offset; with a run's summary, the consumer's own
 * account of its commits says the same (it counts a commit only once the broker took it).
 */
export async function expectAllCommitted(
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
export async function settledAnswers(api: MockApi): Promise<string[]> {
  await eventually(async () => (await api.stats()).inFlight === 0, 30_000, "the API settling");
  return await api.succeeded();
}

/**
 * At least once after a stop (crash or SIGTERM) and a restart, on evidence from the API
 * and the broker only: every id answered 201; ids below the offsets committed at the
 * stop were answered before it and never again; the restart answered exactly the ids
 * at or above those offsets; and an id answered twice is one answered before the stop
 * and not committed. Returns that bound and the duplicates.
 */
export async function expectRedeliveryBounded(
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

export function record(
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
    ...runFigures(run),
    note,
  });
}
