// A consumer in a pod, for end-to-end tests: a fresh memory cgroup (and a CPU quota if
// asked), the consumer started in it on its defaults, and its own mock API.
import { expect } from "vitest";
import { type Cgroup, type CgroupStats, createCgroup } from "../../scripts/cgroup.ts";
import type { Runtime } from "../../scripts/runtimes.ts";
import { type RunningScript, type RunResult, startScript } from "./child.ts";
import { uniqueName } from "./kafka.ts";
import {
  answered,
  type Backlog,
  consumerEnv,
  type MockApi,
  produce,
  startMockApi,
} from "./services.ts";

/** The pod's memory limit, as a small Kubernetes pod has. */
export const podLimitMb = 256;
/** The solved consumer's default byte cap and concurrency. */
export const [byteCap, concurrency] = [16 * 2 ** 20, 200];
/** At least 20 times the byte cap, or 20,000 messages, whichever is less. */
export const backlogOf = (size: number) => Math.min(20_000, Math.ceil((20 * byteCap) / size));
/** Each run's limit; a case's timeout should be a little longer. */
export const runLimitMs = 280_000;

export interface PodRun {
  run: RunResult;
  /** the kernel's figures for the pod */
  stats: CgroupStats;
  groupId: string;
  /** scheduler periods in which the CPU quota held the process back, if it had one */
  throttled?: number;
}

/** A mock API of its own for one case, so cases side by side do not share its counts. */
export async function withApi<T>(latencyMs: number, use: (api: MockApi) => Promise<T>): Promise<T> {
  const jitter = latencyMs >= 1_000 ? 100 : 10;
  const api = await startMockApi({ LATENCY_MS: String(latencyMs), JITTER_MS: String(jitter) });
  try {
    return await use(api);
  } finally {
    await api.stop();
  }
}

export interface PodOptions {
  env?: Record<string, string>;
  /** called while it runs, e.g. to stop it */
  during?: (running: RunningScript) => Promise<void>;
  cpuQuota?: number;
}

/**
 * Runs a consumer script in a fresh pod on its defaults plus `env` until the API has
 * answered every id (then SIGTERM), and always removes the cgroup afterwards.
 */
export async function inPod(
  brokers: string,
  api: MockApi,
  runtime: Runtime,
  script: "consumer-solved.ts" | "consumer-backpressure.ts",
  work: Backlog,
  name: string,
  { env = {}, during, cpuQuota }: PodOptions = {},
): Promise<PodRun> {
  const groupId = `${work.topic}-${name}-${runtime}`;
  const cgroup: Cgroup = await createCgroup({
    memoryLimitMb: podLimitMb,
    name: `${name}-${runtime}`,
    cpuQuota,
  });
  try {
    const running = startScript(runtime, script, {
      env: consumerEnv(brokers, work.topic, groupId, { API_URL: api.usersUrl, ...env }),
      wrap: cgroup.wrap,
      stopWhen: answered(api, work.messages),
    });
    // A run that outlives its case is stopped, whatever the case is waiting for.
    const watchdog = setTimeout(() => running.child.kill("SIGKILL"), runLimitMs);
    try {
      await during?.(running);
    } finally {
      void running.done.finally(() => clearTimeout(watchdog));
    }
    const run = await running.done;
    const throttled = cpuQuota === undefined ? undefined : (await cgroup.cpuStats()).throttled;
    return { run, stats: await cgroup.stats(), groupId, throttled };
  } finally {
    await cgroup.remove();
  }
}

/** One backlog per message size, made on first use and shared by the file's cases. */
export function backlogsBySize(
  brokers: string,
  prefix: string,
): (size: number) => Promise<Backlog> {
  const made = new Map<number, Promise<Backlog>>();
  return (size) => {
    let backlog = made.get(size);
    if (!backlog) {
      const topic = uniqueName(`${prefix}-${size / 1_024}k`);
      backlog = produce(brokers, topic, { messages: backlogOf(size), payloadBytes: size });
      made.set(size, backlog);
    }
    return backlog;
  };
}

/** The kernel's word first: no OOM kill, the peak charge 25% under the limit, exit 0. */
export function expectWellUnder({ run, stats }: PodRun) {
  expect(stats.oomKills, `exit ${run.code}/${run.signal}`).toBe(0);
  expect(stats.peakMb).toBeLessThanOrEqual(0.75 * podLimitMb);
  expect(run.code, run.stderr.slice(-2_000)).toBe(0);
  // On its defaults it took its budget from the cgroup, and never passed it.
  expect(run.summary).toMatchObject({ memoryLimitMb: podLimitMb, memoryLimitExceeded: false });
}
