// Running the two consumers the regression suite compares, under the same conditions,
// and checking what a finished solved run owes: every id delivered, offsets committed.
import { expect } from "vitest";
import type { Runtime } from "../../scripts/runtimes.ts";
import { type RunResult, runScript, type StartOptions } from "./child.ts";
import { expectAnsweredOnce, expectCommittedToEnd } from "./evidence.ts";
import { recordFigure, runFigures } from "./figures.ts";
import { readTopic } from "./kafka.ts";
import { answered, type Backlog, consumerEnv, type MockApi } from "./services.ts";

/**
 * The conditions both consumers get, with their own ceiling check and under the
 * kernel's limit alike. The API is slow: a consumer that does not wait keeps every call
 * it can start open, and on Node that is as many as its CPU can start before the first
 * answers (at 2 s, Node's stayed near 240-320 MB on a 2-core machine; at 5 s it passed).
 * The unbounded one gets 20 s: beside other test files its CPU starts fewer calls, and
 * what piles up must not depend on how busy the machine is. The solved one, which must
 * finish, gets 5 s and keeps `concurrency` calls open.
 */
export const conditions = {
  ceilingMb: 320,
  latencyMs: 5_000,
  unboundedLatencyMs: 20_000,
  messages: 8_000,
  payloadBytes: 16_384,
  concurrency: 400, // the solved consumer's; the unbounded one has no such setting
} as const;

/**
 * Settings both consumers get on a runtime. Bun's fetch opens at most 256 connections
 * and queues the rest inside the runtime, their timeouts running; 400 calls in flight
 * need more.
 */
export function runtimeSettings(runtime: Runtime): Record<string, string> {
  return runtime === "bun" ? { BUN_CONFIG_MAX_HTTP_REQUESTS: "512" } : {};
}

export interface ConsumerRun {
  runtime: Runtime;
  brokers: string;
  backlog: Backlog;
  api: MockApi;
  /** settings on top of the conditions above (MEMORY_LIMIT_MB, heap flags, …) */
  env?: Record<string, string>;
  wrap?: StartOptions["wrap"];
}

export function groupOf(backlog: Backlog, consumer: string): string {
  return `${backlog.topic}-${consumer}`;
}

export async function runUnbounded({ runtime, brokers, backlog, api, env, wrap }: ConsumerRun) {
  await api.reset();
  return await runScript(runtime, "consumer-backpressure.ts", {
    env: consumerEnv(brokers, backlog.topic, groupOf(backlog, "unbounded"), {
      API_URL: api.usersUrl,
      ...runtimeSettings(runtime),
      ...env,
    }),
    wrap,
    // If it survives, it is done once the API has answered every id.
    stopWhen: answered(api, backlog.messages),
    // Its own check samples every 100 ms and exits at once: sampled this often from
    // outside, the last sample sees almost all of the rise that made it exit.
    sampleEveryMs: unboundedSampleMs,
  });
}

/** How often runUnbounded reads the child's /proc status. */
export const unboundedSampleMs = 10;

export async function runSolved({ runtime, brokers, backlog, api, env, wrap }: ConsumerRun) {
  await api.reset();
  return await runScript(runtime, "consumer-solved.ts", {
    env: consumerEnv(brokers, backlog.topic, groupOf(backlog, "solved"), {
      API_URL: api.usersUrl,
      CONCURRENCY: String(conditions.concurrency),
      ...runtimeSettings(runtime),
      ...env,
    }),
    wrap,
    // Stopped once the API has answered every id: the commits checked afterwards are
    // then the graceful shutdown's doing.
    stopWhen: answered(api, backlog.messages),
  });
}

/**
 * A solved run that ended by itself owes this, on evidence from outside it: exit 0,
 * each id answered 201 by the API exactly once, nothing dead-lettered, every partition
 * committed to its end. The script's own summary is checked beside, not instead.
 */
export async function expectProcessedEverything(
  run: RunResult,
  { brokers, backlog, api }: ConsumerRun,
) {
  expect(run.code, run.stderr.slice(-2_000)).toBe(0);
  // The ids the producer wrote, not the topic read back: some backlogs hold 200,000.
  await expectAnsweredOnce(api, backlog.ids);
  expect(await readTopic(brokers, `${backlog.topic}.dlq`)).toEqual([]);
  await expectCommittedToEnd(brokers, groupOf(backlog, "solved"), backlog.topic);
  expect(run.summary).toMatchObject({ processed: backlog.messages, deadLettered: 0 });
}

export function recordRun(
  caseName: string,
  runtime: Runtime,
  consumer: string,
  backlog: Backlog,
  run: RunResult,
  extra: { ceilingMb?: number; note?: string } = {},
) {
  recordFigure({
    case: caseName,
    runtime,
    consumer,
    messages: backlog.messages,
    ...runFigures(run),
    ceilingMb: extra.ceilingMb ?? Number(run.summary?.memoryLimitMb),
    note: extra.note,
  });
}
