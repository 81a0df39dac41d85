import { mkdir, writeFile } from "node:fs/promises";
import { loadavg } from "node:os";
import { basename, join, resolve } from "node:path";
import { acquireBroker, type Broker } from "../scripts/broker.ts";
import { memoryChart, throughputChart, writeChart } from "../scripts/charts.ts";
import { projectRoot } from "../scripts/kafka-jvm.ts";
import { podHeapEnv, type Runtime } from "../scripts/runtimes.ts";
import { type MemorySample, type RunningScript, startScript } from "../tests/support/child.ts";
import { committedToEnd, uniqueName, withAdmin } from "../tests/support/kafka.ts";
import { type ApiStats, type MockApi, produce, startMockApi } from "../tests/support/services.ts";
import {
  apiLatency,
  dateStamp,
  describeMachine,
  fmt,
  type LatencyPercentiles,
  listOption,
  type Machine,
  machine,
  markdownTable,
  numberOption,
  option,
  printedHelp,
  runtimeList,
  runtimeVersions,
  sleep,
} from "./harness.ts";

/** What bounds a strategy's throughput, whatever the backlog. */
type Bound = "one call" | "partitions" | "concurrency" | "none";

export interface StrategySpec {
  id: string;
  label: string;
  /** for the charts' legends, which do not wrap */
  short: string;
  script: string;
  bound: Bound;
  /** slow by nature: stopped after CAP_S, its rate taken over that window */
  capped: boolean;
}

export const strategies: StrategySpec[] = [
  {
    id: "fetch-loop",
    short: "0 fetch loop",
    label: "0. bare fetch loop, no Kafka (the HTTP ceiling)",
    script: "bench/fetch-loop.ts",
    bound: "concurrency",
    capped: false,
  },
  {
    id: "each-message",
    short: "1 eachMessage",
    label: "1. eachMessage, awaited (KafkaJS default)",
    script: "bench/strategies/each-message.ts",
    bound: "one call",
    capped: true,
  },
  {
    id: "partitions-concurrently",
    short: "2 partitions",
    label: "2. partitionsConsumedConcurrently = partitions",
    script: "bench/strategies/partitions-concurrently.ts",
    bound: "partitions",
    capped: true,
  },
  {
    id: "original-queue",
    short: "3 original",
    label: "3. original: queue, pause at 2,000, resume when empty",
    script: "bench/strategies/original-queue.ts",
    bound: "concurrency",
    capped: false,
  },
  {
    id: "each-batch",
    short: "4 eachBatch",
    label: "4. eachBatch, CONCURRENCY at once, barrier per batch",
    script: "bench/strategies/each-batch.ts",
    bound: "concurrency",
    capped: false,
  },
  {
    id: "solved",
    short: "5 solved",
    label: "5. consumer-solved.ts",
    script: "consumer-solved.ts",
    bound: "concurrency",
    capped: false,
  },
  {
    id: "unbounded",
    short: "6 unbounded",
    label: "6. consumer-backpressure.ts (unbounded)",
    script: "consumer-backpressure.ts",
    bound: "none",
    capped: false,
  },
  {
    id: "platformatic",
    short: "7 platformatic",
    label: "7. @platformatic/kafka stream, CONCURRENCY at once",
    script: "bench/strategies/platformatic.ts",
    bound: "concurrency",
    capped: false,
  },
];

interface Regime {
  latencyMs: number;
  jitterMs: number;
  concurrency: number;
  payloadBytes: number;
  /** the mock API's share of 500s, and the calls it takes at once before answering 429 */
  errorRate?: number;
  capacity?: number;
  /** the strategies that make sense here, unless STRATEGIES says otherwise */
  strategies?: string;
}

/**
 * The regimes the tables compare, as defaults for the options below: a slow healthy
 * API (where every good strategy ties), a fast one (where the consumer's own costs
 * show), large messages (where memory does), and a failing API with a capacity (where
 * retries and 429s do; only the solved consumer retries, so only it runs by default).
 */
const regimes: Record<string, Regime> = {
  slow: { latencyMs: 190, jitterMs: 20, concurrency: 200, payloadBytes: 1_024 },
  fast: { latencyMs: 5, jitterMs: 0, concurrency: 100, payloadBytes: 1_024 },
  large: { latencyMs: 190, jitterMs: 20, concurrency: 200, payloadBytes: 65_536 },
  failing: {
    latencyMs: 100,
    jitterMs: 0,
    concurrency: 200,
    payloadBytes: 1_024,
    errorRate: 0.3,
    capacity: 10,
    strategies: "solved",
  },
};

interface Settings {
  regime: string;
  backlogs: number[];
  runtime: Runtime;
  latencyMs: number;
  jitterMs: number;
  concurrency: number;
  /** the mock API's ERROR_RATE and CAPACITY (0: none); a 429 asks for RETRY_AFTER_S 1 */
  errorRate: number;
  capacity: number;
  partitions: number;
  payloadBytes: number;
  memoryLimitMb: number;
  capS: number;
  strategies: string[];
  outDir: string;
  quick: boolean;
}

type ExitKind = "drained" | "capped" | "memory limit" | "crashed" | "timed out" | "incomplete";

interface Run {
  strategy: string;
  label: string;
  script: string;
  backlog: number;
  topic: string;
  groupId: string;
  bound: Bound;
  /** msg/s this strategy can reach at best with this API latency */
  limitPerSec: number;
  startedAt: string;
  /** the machine's 1-minute load average as the run started and ended: others share it */
  loadAverage: { start: number; end: number };
  /** how old the backlog was when this run started: subtracted from the latencies */
  backlogAgeAtStartMs: number;
  exit: {
    kind: ExitKind;
    code: number | null;
    signal: string | null;
    reason: string;
    /** ms from spawn to exit */
    atMs: number;
  };
  /** messages the API answered within the measured window (consumer's own count) */
  processed: number;
  /** messages on the dead-letter topic after the run, read from the broker */
  deadLettered: number;
  /** ms since spawn: the first success, and the end of the measured window */
  firstSuccessMs: number | null;
  windowEndMs: number | null;
  ratePerSec: number | null;
  shareOfLimit: number | null;
  steadyPerSec: number | null;
  steadyShareOfLimit: number | null;
  /** spawn → exit, for runs that drained the backlog */
  drainS: number | null;
  peakRssMb: number;
  reportedPeakRssMb: number | null;
  latencyMs: LatencyPercentiles;
  /** latencyMs minus backlogAgeAtStartMs: as if the run had started as the backlog was written */
  latencyFromStartMs: { p50: number | null; p90: number | null; p99: number | null };
  apiStats: ApiStats;
  summary: Record<string, unknown> | null;
  /** successes per second since the run started (the API's /timeline) */
  timeline: number[];
  /** the API's success count, polled */
  progress: { atMs: number; succeeded: number }[];
  rssSamples: MemorySample[];
  stderrTail: string;
}

interface BacklogResult {
  messages: number;
  topic: string;
  producedInMs: number;
  runs: Run[];
  /** consumer-solved.ts's steady rate over its limit, and solved ÷ original */
  solvedSteadyShare: number | null;
  solvedOverOriginal: { rate: number | null; steady: number | null; drain: number | null };
  /** steady rates: solved ÷ the bare fetch loop, and @platformatic/kafka ÷ solved */
  solvedOverFetchLoop: number | null;
  platformaticOverSolved: number | null;
}

function readSettings(): Settings {
  const quick = option("QUICK", "0") === "1";
  const regime = option("REGIME", "slow");
  const preset = regimes[regime];
  if (!preset) {
    console.error(`REGIME: unknown "${regime}"; known: ${Object.keys(regimes).join(", ")}`);
    process.exit(2);
  }
  const known = strategies.map((s) => s.id);
  const chosen = listOption("STRATEGIES", preset.strategies ?? known.join(","));
  for (const id of chosen) {
    if (!known.includes(id)) {
      console.error(`STRATEGIES: unknown "${id}"; known: ${known.join(", ")}`);
      process.exit(2);
    }
  }
  const backlogs = listOption("BACKLOGS", quick ? "300" : "10000,100000").map((text) => {
    const n = Number(text.replaceAll("_", ""));
    if (!Number.isInteger(n) || n < 1) {
      console.error(`BACKLOGS: "${text}" is not a whole number of messages`);
      process.exit(2);
    }
    return n;
  });
  const [runtime] = runtimeList([option("RUNTIME", "bun")]);
  return {
    regime,
    backlogs,
    runtime: runtime ?? "bun",
    latencyMs: numberOption("LATENCY_MS", quick ? 20 : preset.latencyMs),
    jitterMs: numberOption("JITTER_MS", quick ? 5 : preset.jitterMs),
    concurrency: numberOption("CONCURRENCY", quick ? 20 : preset.concurrency),
    errorRate: numberOption("ERROR_RATE", preset.errorRate ?? 0),
    capacity: numberOption("CAPACITY", preset.capacity ?? 0),
    partitions: numberOption("PARTITIONS", 3),
    payloadBytes: numberOption("PAYLOAD_BYTES", preset.payloadBytes),
    memoryLimitMb: numberOption("MEMORY_LIMIT_MB", 256),
    capS: numberOption("CAP_S", quick ? 3 : 20),
    strategies: chosen,
    outDir: resolve(projectRoot, option("OUT_DIR", "bench/results")),
    quick,
  };
}

/** The API's mean latency (LATENCY_MS plus half the jitter), in seconds. */
const meanLatencyS = (s: Settings) => (s.latencyMs + s.jitterMs / 2) / 1_000;

/**
 * The best a strategy can do: its calls in flight at most (no more than the API's
 * capacity), over the mean latency, times the share of calls that succeed.
 */
function limitPerSec(bound: Bound, s: Settings): number {
  let inFlight = bound === "one call" ? 1 : bound === "partitions" ? s.partitions : s.concurrency;
  if (s.capacity > 0) inFlight = Math.min(inFlight, s.capacity);
  return (inFlight / meanLatencyS(s)) * (1 - s.errorRate);
}

async function main() {
  if (printedHelp(import.meta.url)) return;
  const settings = readSettings();
  const started = Date.now();
  const specs = strategies.filter((s) => settings.strategies.includes(s.id));
  let broker: Broker | undefined;
  let api: MockApi | undefined;
  let current: RunningScript | undefined;
  const cleanUp = async () => {
    current?.child.kill("SIGKILL");
    await api?.stop().catch(() => {});
    await broker?.stop().catch(() => {});
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      void cleanUp().finally(() => process.exit(130));
    });
  }

  try {
    broker = await acquireBroker();
    log(`Kafka via ${broker.source} at ${broker.brokers}`);
    api = await startMockApi({
      LATENCY_MS: String(settings.latencyMs),
      JITTER_MS: String(settings.jitterMs),
      ERROR_RATE: String(settings.errorRate),
      CAPACITY: String(settings.capacity),
      RETRY_AFTER_S: "1",
    });
    const results: BacklogResult[] = [];
    for (const messages of settings.backlogs) {
      const topic = uniqueName(`bench-${messages}`);
      log(`producing ${fmt(messages)} messages to ${topic}`);
      const produced = await produce(broker.brokers, topic, {
        messages,
        payloadBytes: settings.payloadBytes,
        partitions: settings.partitions,
      });
      const producedAt = Date.now();
      const runs: Run[] = [];
      for (const spec of specs) {
        const run = await runStrategy(spec, {
          settings,
          brokers: broker.brokers,
          api,
          topic,
          messages,
          producedAt,
          onStart: (script) => {
            current = script;
          },
        });
        current = undefined;
        runs.push(run);
        log(`  ${spec.id}: ${describeExit(run)}; ${fmt(run.ratePerSec)} msg/s`);
      }
      results.push(summarise(messages, topic, produced.produced.durationMs, runs));
      // After each backlog, so a run cut short keeps what it measured.
      await writeResults(settings, results, (Date.now() - started) / 1_000);
    }
    const totalS = (Date.now() - started) / 1_000;
    log(`done in ${totalS.toFixed(0)} s; results in ${settings.outDir}`);
    const unexpected = results
      .flatMap((r) => r.runs)
      .filter(
        (run) =>
          ["crashed", "timed out", "incomplete"].includes(run.exit.kind) &&
          run.strategy !== "unbounded", // dying is what the unbounded one shows
      );
    if (unexpected.length > 0) {
      for (const run of unexpected) {
        console.error(`${run.strategy} (${run.backlog}): ${describeExit(run)}\n${run.stderrTail}`);
      }
      process.exitCode = 1;
    }
  } finally {
    await cleanUp();
  }
}

interface RunContext {
  settings: Settings;
  brokers: string;
  api: MockApi;
  topic: string;
  messages: number;
  producedAt: number;
  onStart: (script: RunningScript) => void;
}

/** Runs one strategy on the backlog as a child process and measures it from outside. */
async function runStrategy(spec: StrategySpec, context: RunContext): Promise<Run> {
  const { settings, api, topic, messages } = context;
  await api.reset();
  const groupId = `${topic}-${spec.id}`;
  const limit = limitPerSec(spec.bound, settings);
  const dlqTopic = `${topic}.dlq`; // the solved consumer's default
  const deadLetteredBefore = await topicSize(context.brokers, dlqTopic);
  // Where calls fail, some messages end on the DLQ, not at the API: a consumer has
  // caught up once the broker holds its commits at the end of every partition.
  const committed = committedToEnd(context.brokers, groupId, topic);
  const loadAtStart = loadavg()[0] ?? 0;
  const startedAt = Date.now();
  const script = startScript(settings.runtime, spec.script, {
    sampleEveryMs: 100,
    env: {
      KAFKA_BROKERS: context.brokers,
      KAFKA_TOPIC: topic,
      KAFKA_GROUP_ID: groupId,
      API_URL: api.usersUrl,
      CONCURRENCY: String(settings.concurrency),
      MESSAGES: String(messages), // for the fetch loop, which has no topic
      MEMORY_LIMIT_MB: String(settings.memoryLimitMb),
      STOP_AT_END: "true",
      STATUS_INTERVAL_MS: "1000",
      ...podHeapEnv(settings.runtime, settings.memoryLimitMb),
    },
  });
  context.onStart(script);
  let exited = false;
  void script.done.then(
    () => {
      exited = true;
    },
    () => {
      exited = true;
    },
  );

  // Poll the API's success count: when the first call succeeded, when to cap, progress.
  const progress: Run["progress"] = [];
  let firstSuccessMs: number | null = null;
  let capped: { atMs: number; succeeded: number } | undefined;
  let timedOut = false;
  const timeoutMs = spec.capped
    ? (settings.capS + 90) * 1_000
    : Math.max(120_000, (5 * messages * 1_000) / limitPerSec("concurrency", settings) + 60_000);
  let lastReport = 0;
  let stopSent = false;
  const caughtUp = async (stats: ApiStats, polls: number) =>
    settings.errorRate > 0
      ? polls % 10 === 0 && (await committed.met().catch(() => false))
      : stats.distinctSucceeded >= messages;
  for (let polls = 0; !exited; polls++) {
    await sleep(100);
    const stats = await api.stats().catch(() => undefined);
    const atMs = Date.now() - startedAt;
    if (stats) {
      progress.push({ atMs, succeeded: stats.succeeded });
      if (firstSuccessMs === null && stats.succeeded > 0) firstSuccessMs = atMs;
      if (
        spec.capped &&
        !capped &&
        firstSuccessMs !== null &&
        atMs - firstSuccessMs >= settings.capS * 1_000
      ) {
        capped = { atMs, succeeded: stats.succeeded };
        script.child.kill("SIGTERM");
      }
      // The project's own consumers end when stopped, as a pod is: once the API has
      // answered every id. The benchmark's strategy consumers stop by themselves.
      if (!stopSent && !spec.script.startsWith("bench/") && (await caughtUp(stats, polls))) {
        stopSent = true;
        script.child.kill("SIGTERM");
      }
      if (atMs - lastReport >= 10_000) {
        lastReport = atMs;
        log(`    ${spec.id} ${(atMs / 1_000).toFixed(0)} s: ${fmt(stats.succeeded)} processed`);
      }
    }
    if (!timedOut && atMs > timeoutMs) {
      timedOut = true;
      script.child.kill("SIGKILL");
    }
  }
  const result = await script.done;
  const exitAtMs = result.durationMs;

  const { timeline, latency, apiStats } = await readApi(api).catch((error: Error) => {
    throw new Error(
      `the mock API at ${api.usersUrl} stopped answering (${error.message}) during ${spec.id}: was it killed from outside?`,
    );
  });

  await committed.close?.();
  const deadLettered = (await topicSize(context.brokers, dlqTopic)) - deadLetteredBefore;
  const summary = result.summary ?? null;
  const reported = Number(summary?.processed);
  const answered = Number.isFinite(reported) ? reported : apiStats.succeeded;
  const finalCount = answered + deadLettered; // every message ends one way or the other
  let kind: ExitKind;
  if (timedOut) kind = "timed out";
  else if (capped) kind = "capped";
  else if (result.code === 3) kind = "memory limit";
  else if (result.code !== 0) kind = "crashed";
  else if (finalCount < messages) kind = "incomplete";
  else kind = "drained";

  // The measured window: from the first success to the cap, to the moment the API had
  // answered the last message (drained), or to the exit.
  let processed = answered;
  let windowEndMs: number | null = exitAtMs;
  if (capped) {
    processed = capped.succeeded;
    windowEndMs = capped.atMs;
  } else if (kind === "drained") {
    windowEndMs = progress.find((p) => p.succeeded >= apiStats.succeeded)?.atMs ?? exitAtMs;
  }
  const windowS =
    firstSuccessMs !== null && windowEndMs !== null ? (windowEndMs - firstSuccessMs) / 1_000 : 0;
  const ratePerSec = windowS > 0 ? processed / windowS : null;
  const steadyPerSec = steadyRate(timeline);
  const age = startedAt - context.producedAt;
  const shift = (value: number | null) => (value === null ? null : value - age);

  return {
    strategy: spec.id,
    label: spec.label,
    script: spec.script,
    backlog: messages,
    topic,
    groupId,
    bound: spec.bound,
    limitPerSec: limit,
    startedAt: new Date(startedAt).toISOString(),
    loadAverage: { start: loadAtStart, end: loadavg()[0] ?? 0 },
    backlogAgeAtStartMs: age,
    exit: {
      kind,
      code: result.code,
      signal: result.signal,
      reason: String(summary?.exitReason ?? result.signal ?? `exit code ${result.code}`),
      atMs: exitAtMs,
    },
    processed,
    deadLettered,
    firstSuccessMs,
    windowEndMs,
    ratePerSec,
    shareOfLimit: ratePerSec === null ? null : ratePerSec / limit,
    steadyPerSec,
    steadyShareOfLimit: steadyPerSec === null ? null : steadyPerSec / limit,
    // When the API had answered the last message: what follows (commit, leaving the
    // group; up to maxWaitTimeInMs for a fetch in progress) is not draining.
    drainS: kind === "drained" && windowEndMs !== null ? windowEndMs / 1_000 : null,
    peakRssMb: result.observedPeakRssMb,
    reportedPeakRssMb: Number.isFinite(Number(summary?.peakRssMb))
      ? Number(summary?.peakRssMb)
      : null,
    latencyMs: latency,
    latencyFromStartMs: {
      p50: shift(latency.p50),
      p90: shift(latency.p90),
      p99: shift(latency.p99),
    },
    apiStats,
    summary,
    timeline,
    progress,
    rssSamples: result.samples,
    stderrTail: result.stderr.slice(-2_000),
  };
}

/** Messages a topic holds (0 if it does not exist), from the broker. */
async function topicSize(brokers: string, topic: string): Promise<number> {
  return withAdmin(brokers, async (admin) => {
    if (!(await admin.listTopics()).includes(topic)) return 0;
    const offsets = await admin.fetchTopicOffsets(topic);
    return offsets.reduce((sum, p) => sum + Number(p.high) - Number(p.low), 0);
  });
}

/** What the API measured, once the calls a dead consumer left open have finished. */
async function readApi(api: MockApi) {
  for (let i = 0; i < 50 && (await api.stats()).inFlight > 0; i++) await sleep(100);
  const [timeline, latency, apiStats] = await Promise.all([
    api.timeline(),
    apiLatency(api.usersUrl),
    api.stats(),
  ]);
  return { timeline, latency, apiStats };
}

/**
 * The rate in the middle of a run: the seconds from the first to the last with a
 * success, less a fifth at each end (ramp-up, the drain's tail, partial seconds).
 */
export function steadyRate(perSecond: number[]): number | null {
  const first = perSecond.findIndex((n) => n > 0);
  let last = -1;
  for (let i = perSecond.length - 1; i >= 0; i--) {
    if ((perSecond[i] ?? 0) > 0) {
      last = i;
      break;
    }
  }
  if (first < 0) return null;
  const span = last - first + 1;
  const trim = Math.max(1, Math.floor(span / 5));
  const middle = perSecond.slice(first + trim, last + 1 - trim);
  if (middle.length < 2) return null;
  return middle.reduce((sum, n) => sum + n, 0) / middle.length;
}

function summarise(
  messages: number,
  topic: string,
  producedInMs: number,
  runs: Run[],
): BacklogResult {
  const solved = runs.find((r) => r.strategy === "solved");
  const original = runs.find((r) => r.strategy === "original-queue");
  const loop = runs.find((r) => r.strategy === "fetch-loop");
  const platformatic = runs.find((r) => r.strategy === "platformatic");
  const ratio = (a: number | null | undefined, b: number | null | undefined) =>
    a === null || a === undefined || b === null || b === undefined || b === 0 ? null : a / b;
  return {
    messages,
    topic,
    producedInMs,
    runs,
    solvedSteadyShare: solved?.steadyShareOfLimit ?? null,
    solvedOverOriginal: {
      rate: ratio(solved?.ratePerSec, original?.ratePerSec),
      steady: ratio(solved?.steadyPerSec, original?.steadyPerSec),
      // time to drain: original ÷ solved, so above 1 means the solved one is faster
      drain: ratio(original?.drainS, solved?.drainS),
    },
    solvedOverFetchLoop: ratio(solved?.steadyPerSec, loop?.steadyPerSec),
    platformaticOverSolved: ratio(platformatic?.steadyPerSec, solved?.steadyPerSec),
  };
}

function describeExit(run: Run): string {
  const at = (run.exit.atMs / 1_000).toFixed(1);
  switch (run.exit.kind) {
    case "drained":
      return "drained, exit 0";
    case "capped":
      return `capped: stopped (SIGTERM) ${fmt((run.windowEndMs ?? 0) / 1_000 - (run.firstSuccessMs ?? 0) / 1_000, 0)} s after its first success`;
    case "memory limit":
      return `died at ${at} s, RSS ${fmt(run.peakRssMb)} MB (exit 3, memory limit), ${fmt(run.processed)} processed`;
    case "timed out":
      return `timed out, killed at ${at} s`;
    case "incomplete":
      return `exit 0 with only ${fmt(run.processed)} processed`;
    default:
      return `crashed at ${at} s (${run.exit.signal ?? `exit ${run.exit.code}`}, RSS ${fmt(run.peakRssMb)} MB): ${run.exit.reason}`;
  }
}

// ---- Output ----

async function writeResults(settings: Settings, results: BacklogResult[], totalS: number) {
  await mkdir(settings.outDir, { recursive: true });
  const at = new Date();
  const host = machine();
  const versions = runtimeVersions();
  const jsonFile = join(settings.outDir, `strategies-${dateStamp(at)}.json`);
  await writeFile(
    jsonFile,
    `${JSON.stringify(
      {
        date: at.toISOString(),
        machine: host,
        runtimes: versions,
        settings: { ...settings, outDir: undefined, meanLatencyMs: meanLatencyS(settings) * 1_000 },
        totalS,
        backlogs: results,
      },
      null,
      1,
    )}\n`,
  );
  await writeFile(
    join(settings.outDir, "strategies.md"),
    markdown(settings, results, { at, host, versions, totalS, jsonFile }),
  );

  // The charts show the largest backlog: the longest runs, where the differences last.
  const largest = results.at(-1);
  if (!largest) return;
  const limit = limitPerSec("concurrency", settings);
  await writeChart(
    join(settings.outDir, "throughput.svg"),
    await throughputChart(
      largest.runs.map((run) => ({
        label: short(run.strategy),
        points: run.timeline.map((perSec, second) => ({ atS: second + 0.5, perSec })),
      })),
      {
        title: `Throughput, ${fmt(largest.messages)}-message backlog, ${settings.runtime}: ${settings.concurrency} calls × ${fmt(meanLatencyS(settings) * 1_000)} ms`,
        theoreticalPerSec: Math.round(limit),
      },
    ),
  );
  const memoryRuns = largest.runs.filter((r) => ["unbounded", "solved"].includes(r.strategy));
  await writeChart(
    join(settings.outDir, "memory.svg"),
    await memoryChart(
      memoryRuns.map((run) => ({ label: short(run.strategy), samples: run.rssSamples })),
      {
        ceilingMb: settings.memoryLimitMb,
        title: `Resident memory (from /proc), ${fmt(largest.messages)}-message backlog, ${settings.runtime}`,
      },
    ),
  );
}

function markdown(
  settings: Settings,
  results: BacklogResult[],
  meta: {
    at: Date;
    host: Machine;
    versions: Record<Runtime, string>;
    totalS: number;
    jsonFile: string;
  },
): string {
  const pct = (share: number | null) => (share === null ? "-" : `${fmt(share * 100)} %`);
  const seconds = (ms: number | null) => (ms === null ? "-" : fmt(ms / 1_000, 1));
  const lines = [
    "# End-to-end strategy benchmark",
    "",
    `Written by \`node bench/strategies.ts\`${settings.quick ? " (QUICK mode: a smoke test, not a measurement)" : ""} on ${meta.at.toISOString()}, in ${fmt(meta.totalS)} s.`,
    "",
    `- Machine: ${describeMachine(meta.host)}; the broker, the mock API and the consumer share it.`,
    `- Runtimes: consumers on **${settings.runtime}** (bun ${meta.versions.bun}, deno ${meta.versions.deno}, node ${meta.versions.node}); mock API on bun; producer on node; KafkaJS 2.2.4; Apache Kafka on the JVM (one node) unless KAFKA_BROKERS said otherwise.`,
    `- Regime **${settings.regime}** (REGIME: ${Object.keys(regimes).join(", ")}): API latency ${settings.latencyMs} ms + 0..${settings.jitterMs} ms jitter (mean ${fmt(meanLatencyS(settings) * 1_000)} ms)${settings.errorRate > 0 ? `; ${fmt(settings.errorRate * 100)} % of calls answered 500` : ""}${settings.capacity > 0 ? `; at most ${settings.capacity} calls at once, then 429 with Retry-After 1 s` : ""}; CONCURRENCY ${settings.concurrency}; ${settings.partitions} partitions; events of ${fmt(settings.payloadBytes)} bytes; MEMORY_LIMIT_MB ${settings.memoryLimitMb} for every consumer${settings.runtime === "bun" ? "" : " (with the V8 heap flags a pod of that size gives: scripts/runtimes.ts podHeapEnv)"}.`,
    `- Theoretical limit: calls in flight at most (capped by the API's capacity) ÷ mean latency × the share of calls that succeed = ${fmt(limitPerSec("concurrency", settings))} msg/s for strategies 0 and 3 to 7 (6 has no bound of its own; its share is against the same figure). Strategy 0 is no consumer: CONCURRENCY fetch calls in a loop, no Kafka, the most HTTP allows on this runtime; strategy 7 is @platformatic/kafka's stream consumer (autocommit of what it handed over, like 3), the same work per message. Strategy 2 is bound by its ${settings.partitions} partitions (${fmt(limitPerSec("partitions", settings), 1)} msg/s) and strategy 1 by one call at a time (${fmt(limitPerSec("one call", settings), 1)} msg/s): KafkaJS runs one fetcher per broker and hands the batches of a fetch to partitionsConsumedConcurrently workers (1 by default), so on one broker strategy 1 has one call in flight in all, not one per partition.`,
    `- **Strategies 1 and 2 are capped**: stopped (SIGTERM) ${settings.capS} s after their first success; their rate is over that window, and they do not drain the backlog.`,
    "",
    "Columns: *msg/s* is messages processed ÷ the time from the first API success to the last (or to the cap, or to the death); *steady* is the mean of the API's per-second successes in the middle of the run (a fifth cut at each end); *peak RSS* is read from /proc/<pid>/status from outside (VmHWM); *time to drain* is from process start until the API had answered the last message (start-up and group join included; the exit that follows is not); *latency* is the API's end-to-end latency (answered − the event's createdAt) minus the backlog's age when the run started, i.e. as if the consumer had started the moment the backlog was written; it still includes each event's age when production ended (up to the production time given under each backlog's title; raw figures in the JSON). For capped runs, *time to drain* is the backlog ÷ their rate, an estimate.",
    "",
  ];
  for (const result of results) {
    lines.push(
      `## Backlog of ${fmt(result.messages)} messages`,
      "",
      `Topic \`${result.topic}\`, produced in ${seconds(result.producedInMs)} s; each strategy in its own consumer group, one after another.`,
      "",
      markdownTable(
        [
          "strategy",
          "processed",
          "msg/s",
          "limit msg/s",
          "share of limit",
          "steady msg/s (share)",
          "peak RSS MB",
          "time to drain s",
          "latency p50 / p90 / p99 s",
          "exit",
        ],
        result.runs.map((run) => [
          run.label,
          fmt(run.processed),
          fmt(run.ratePerSec, run.ratePerSec !== null && run.ratePerSec < 100 ? 1 : 0),
          fmt(run.limitPerSec, run.limitPerSec < 100 ? 1 : 0),
          pct(run.shareOfLimit),
          run.steadyPerSec === null
            ? "-"
            : `${fmt(run.steadyPerSec, run.steadyPerSec < 100 ? 1 : 0)} (${pct(run.steadyShareOfLimit)})`,
          fmt(run.peakRssMb),
          drainText(run),
          `${seconds(run.latencyFromStartMs.p50)} / ${seconds(run.latencyFromStartMs.p90)} / ${seconds(run.latencyFromStartMs.p99)}`,
          describeExit(run),
        ]),
        ["l", "r", "r", "r", "r", "r", "r", "r", "r", "l"],
      ),
      "",
      ...(settings.errorRate > 0
        ? [
            ...result.runs.map(
              (run) =>
                `- ${run.label}: ${fmt(run.processed)} processed + ${fmt(run.deadLettered)} dead-lettered (the DLQ topic, read from the broker) = ${fmt(run.processed + run.deadLettered)} of ${fmt(result.messages)}; ${fmt(Number(run.summary?.retries ?? Number.NaN))} retries and ${fmt(Number(run.summary?.throttled ?? Number.NaN))} calls answered 429 (its summary).`,
            ),
            "",
          ]
        : []),
      `consumer-solved.ts in steady state: ${pct(result.solvedSteadyShare)} of its limit. Solved ÷ original: ${ratioText(result.solvedOverOriginal.rate)} the throughput over the run, ${ratioText(result.solvedOverOriginal.steady)} in steady state, ${ratioText(result.solvedOverOriginal.drain)} as fast to drain. In steady state, solved ÷ the bare fetch loop: ${ratioText(result.solvedOverFetchLoop)}; @platformatic/kafka ÷ solved: ${ratioText(result.platformaticOverSolved)}.`,
      "",
    );
  }
  lines.push(
    "## Charts (the largest backlog)",
    "",
    "![Throughput over time](throughput.svg)",
    "",
    "![Resident memory over time](memory.svg)",
    "",
    `Raw data: [${basename(meta.jsonFile)}](${basename(meta.jsonFile)}) (per run: the API's per-second timeline, the polled success count, the RSS samples, the consumer's own summary, the load average).`,
    "",
  );
  return lines.join("\n");
}

function short(id: string): string {
  return strategies.find((s) => s.id === id)?.short ?? id;
}

/** Time to drain; for a capped run, what its rate would take, marked as an estimate. */
function drainText(run: Run): string {
  if (run.drainS !== null) return fmt(run.drainS, 1);
  if (run.exit.kind !== "capped" || !run.ratePerSec) return "-";
  const seconds = run.backlog / run.ratePerSec;
  return seconds >= 3_600 ? `≈ ${fmt(seconds / 3_600, 1)} h (est.)` : `≈ ${fmt(seconds)} (est.)`;
}

function ratioText(ratio: number | null): string {
  return ratio === null ? "-" : `${fmt(ratio, 2)}×`;
}

function log(message: string) {
  console.log(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}`);
}

if (import.meta.main) await main();
