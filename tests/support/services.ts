// The project's own programs as real child processes, for end-to-end tests: the mock
// API, the producer, and helpers to read what they report.
import { expect } from "vitest";
import type { Runtime } from "../../scripts/runtimes.ts";
import { type RunResult, runScript, type StopCondition, startScript } from "./child.ts";

export interface ApiStats {
  requests: number;
  accepted: number;
  succeeded: number;
  failed: number;
  hung: number;
  /** the caller had gone before the answer (so it is not a success) */
  abandoned: number;
  rejected: number;
  invalid: number;
  inFlight: number;
  peakConcurrent: number;
  duplicates: number;
  /** answered from an earlier call with the same Idempotency-Key */
  deduplicated: number;
  /** calls that did the work (answered 201 without deduplication) */
  sideEffects: number;
  /** side effects for an id that already had one */
  repeatedSideEffects: number;
  distinctIds: number;
  distinctSucceeded: number;
}

export interface MockApi {
  /** POST target for the consumers' API_URL */
  usersUrl: string;
  /** the server process, e.g. to freeze it with SIGSTOP */
  pid: number;
  stats(): Promise<ApiStats>;
  /** ids received, answered or not: not evidence of delivery */
  ids(): Promise<string[]>;
  /** ids in the order the API answered them 201: the evidence of delivery */
  succeeded(): Promise<string[]>;
  /** successes in each second since the last reset */
  timeline(): Promise<number[]>;
  reset(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A run's steady rate from the API's timeline: the median of the seconds with at least
 * half the busiest second's successes (not the start, not the last stragglers). Short
 * runs (pods, sizes) use it; bench/strategies.ts's steadyRate averages the middle
 * three fifths of longer ones.
 */
export function busyMedianRate(perSecond: number[]): number {
  const peak = Math.max(0, ...perSecond);
  const busy = perSecond.filter((n) => n >= peak / 2).sort((a, b) => a - b);
  return busy.length === 0 ? 0 : (busy[Math.floor(busy.length / 2)] ?? 0);
}

/** Met once the API has answered 201 for `count` distinct ids since its last reset. */
export function answered(api: Pick<MockApi, "stats">, count: number): StopCondition {
  return { met: async () => (await api.stats()).distinctSucceeded >= count };
}

/** Starts mock-api.ts on a free port and waits for its "listening" line. */
export async function startMockApi(
  env: Record<string, string> = {},
  runtime: Runtime = "bun",
): Promise<MockApi> {
  const api = startScript(runtime, "mock-api.ts", { env: { PORT: "0", ...env } });
  const line = await api.waitForLine(/mock-api listening on/, 30_000);
  const base = line.match(/(http:\/\/[^\s]+)/)?.[1];
  if (!base) throw new Error(`no address in "${line}"`);
  const get = async <T>(path: string, init?: RequestInit) => {
    const response = await fetch(`${base}${path}`, init);
    if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
    return (await response.json()) as T;
  };
  return {
    usersUrl: `${base}/users`,
    pid: api.pid,
    stats: () => get<ApiStats>("/stats"),
    ids: async () => (await get<{ ids: string[] }>("/ids")).ids,
    succeeded: async () => (await get<{ ids: string[] }>("/succeeded")).ids,
    timeline: async () => (await get<{ perSecond: number[] }>("/timeline")).perSecond,
    reset: async () => {
      await get("/reset", { method: "POST" });
    },
    stop: async () => {
      api.child.kill("SIGTERM");
      await api.done;
    },
  };
}

export interface Backlog {
  topic: string;
  messages: number;
  idPrefix: string;
  /** every id the producer wrote, in order */
  ids: string[];
  produced: RunResult;
}

/** Fills a topic with producer.ts and checks that every message was acknowledged. */
export async function produce(
  brokers: string,
  topic: string,
  options: {
    messages: number;
    payloadBytes?: number;
    partitions?: number;
    env?: Record<string, string>;
  },
  runtime: Runtime = "node",
): Promise<Backlog> {
  const idPrefix = topic;
  const produced = await runScript(runtime, "producer.ts", {
    env: {
      KAFKA_BROKERS: brokers,
      KAFKA_TOPIC: topic,
      MESSAGES: String(options.messages),
      PAYLOAD_BYTES: String(options.payloadBytes ?? 1_024),
      PARTITIONS: String(options.partitions ?? 3),
      ID_PREFIX: idPrefix,
      ...options.env,
    },
  });
  expect(produced.code, produced.stderr).toBe(0);
  expect(produced.summary).toMatchObject({ sent: options.messages, errors: 0 });
  const ids = Array.from({ length: options.messages }, (_, n) => `${idPrefix}-${n}`);
  return { topic, messages: options.messages, idPrefix, ids, produced };
}

/** The environment every consumer run starts from. */
export function consumerEnv(
  brokers: string,
  topic: string,
  groupId: string,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    KAFKA_BROKERS: brokers,
    KAFKA_TOPIC: topic,
    KAFKA_GROUP_ID: groupId,
    STATUS_INTERVAL_MS: "500",
    ...extra,
  };
}

/** Sum of per-partition offsets. */
export function total(offsets: Record<number, string | number>): number {
  return Object.values(offsets).reduce<number>((sum, offset) => sum + Number(offset), 0);
}
