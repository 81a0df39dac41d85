// consumer-solved.ts as a child process watched through its JSON status lines: wait for
// a condition on them (processed so far, queue full, …) and keep them for assertions.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect } from "vitest";
import { projectRoot } from "../../scripts/kafka-jvm.ts";
import { type Runtime, runtimeBinary } from "../../scripts/runtimes.ts";
import {
  type RunningScript,
  type RunResult,
  type StartOptions,
  type StopCondition,
  startCommand,
  startScript,
} from "./child.ts";
import { type MockApi, startMockApi } from "./services.ts";

/** One status line of consumer-solved.ts (STATUS_FORMAT=json). */
export interface SolvedStatus {
  type: "status";
  elapsedS: number;
  processed: number;
  queued: number;
  inFlight: number;
  limit: number;
  paused: boolean;
  /** the partitions this member holds */
  partitions: number[];
  /** taken but not committable: queued, in flight, or done behind an unfinished one */
  uncommitted: number;
  /** done and committable, waiting for the next commit */
  awaitingCommit: number;
  /** done by the partition's previous owner (its commit metadata said so): not processed */
  skipped: number;
  /** commits made without their list of done offsets, which did not fit */
  metadataTooLarge: number;
  deadLettered: number;
  malformed: number;
  retries: number;
  throttled: number;
}

export interface SolvedRun extends RunningScript {
  /** every status line so far, oldest first */
  statuses: SolvedStatus[];
  /**
   * Resolves with the first status line that satisfies `test`: among those seen already
   * too, unless `newOnly`. Rejects on timeout or if the consumer exits first.
   */
  waitForStatus(
    test: (status: SolvedStatus) => boolean,
    options?: { timeoutMs?: number; newOnly?: boolean },
  ): Promise<SolvedStatus>;
}

function parseStatus(line: string): SolvedStatus | undefined {
  if (!line.startsWith('{"type":"status"')) return undefined;
  try {
    return JSON.parse(line) as SolvedStatus;
  } catch {
    return undefined;
  }
}

/** The status lines in a finished run's stdout. */
export function statusesOf(run: Pick<RunResult, "stdout">): SolvedStatus[] {
  return run.stdout
    .split("\n")
    .map(parseStatus)
    .filter((status) => status !== undefined);
}

/**
 * consumer-solved.ts as a user runs it: Deno with its header's permissions only
 * (deno.json's task, which tests/unit/drift.test.ts keeps equal to the header), not the
 * -A the harness gives scripts otherwise.
 */
export function startSolvedAsUser(runtime: Runtime, options: StartOptions): RunningScript {
  if (runtime !== "deno") return startScript(runtime, "consumer-solved.ts", options);
  // A task is its command, or an object with the command and a description.
  type Task = string | { command: string };
  const deno = JSON.parse(readFileSync(join(projectRoot, "deno.json"), "utf8")) as {
    tasks: Record<string, Task>;
  };
  const task = deno.tasks["consumer-solved"] as Task;
  const words = (typeof task === "string" ? task : task.command).split(" ");
  const script = join(projectRoot, words.at(-1) as string);
  return startCommand(runtimeBinary("deno"), [...words.slice(1, -1), script], options);
}

/** Starts consumer-solved.ts with JSON status lines. */
export function startSolved(
  runtime: Runtime,
  env: Record<string, string>,
  stopWhen?: StopCondition,
): SolvedRun {
  const statuses: SolvedStatus[] = [];
  const waiters = new Set<{ test: (status: SolvedStatus) => boolean; resolve: () => void }>();
  const run = startScript(runtime, "consumer-solved.ts", {
    env: { ...env, STATUS_FORMAT: "json" },
    stopWhen,
    onLine: (line, stream) => {
      const status = stream === "stdout" ? parseStatus(line) : undefined;
      if (!status) return;
      statuses.push(status);
      for (const waiter of waiters) if (waiter.test(status)) waiter.resolve();
    },
  });
  const waitForStatus: SolvedRun["waitForStatus"] = (test, { timeoutMs = 60_000, newOnly } = {}) =>
    new Promise<SolvedStatus>((resolve, reject) => {
      const seen = newOnly ? undefined : statuses.find(test);
      if (seen) return resolve(seen);
      const waiter = {
        test,
        resolve: () => {
          finish();
          resolve(statuses.at(-1) as SolvedStatus);
        },
      };
      const timer = setTimeout(() => {
        finish();
        const recent = statuses.slice(-3).map((status) => JSON.stringify(status));
        reject(
          new Error(
            `no status line met the condition within ${timeoutMs} ms; the last ones:\n${recent.join("\n")}`,
          ),
        );
      }, timeoutMs);
      const finish = () => {
        waiters.delete(waiter);
        clearTimeout(timer);
      };
      waiters.add(waiter);
      void run.done.then((result) => {
        if (!waiters.has(waiter)) return;
        finish();
        reject(
          new Error(
            `exited (code ${result.code}, signal ${result.signal}) before the status condition\n${result.stderr.slice(-2_000)}`,
          ),
        );
      });
    });
  return { ...run, statuses, waitForStatus };
}

/**
 * The consumers and mock APIs a test file starts, stopped after each case whatever
 * happened: consumers first (a failed wait can leave one running), then the APIs.
 */
export function stoppedAfterEach() {
  const consumers: SolvedRun[] = [];
  const apis: MockApi[] = [];
  afterEach(async () => {
    for (const run of consumers.splice(0)) {
      if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill("SIGKILL");
      await run.done;
    }
    await Promise.all(apis.splice(0).map((api) => api.stop()));
  });
  return {
    /** Starts consumer-solved.ts (JSON status lines), to be stopped after the case. */
    solved(runtime: Runtime, env: Record<string, string>, stopWhen?: StopCondition): SolvedRun {
      const run = startSolved(runtime, env, stopWhen);
      consumers.push(run);
      return run;
    },
    /** Starts mock-api.ts with `env`, to be stopped after the case. */
    async mockApi(env: Record<string, string>): Promise<MockApi> {
      const api = await startMockApi(env);
      apis.push(api);
      return api;
    },
  };
}

/** Bounds a wait, so a case fails with a reason instead of hanging. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export function expectExit(run: RunResult, code: number) {
  expect(run.code, `${run.stderr.slice(-3_000)}\n${run.stdout.slice(-1_000)}`).toBe(code);
}
