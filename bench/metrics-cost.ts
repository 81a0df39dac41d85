/**
 * bench/metrics-cost.ts: what serving and scraping /metrics costs consumer-solved.ts.
 *
 * The same backlog, consumed by a fresh group each run, with the listener off, on but
 * never scraped, scraped every second, and every 250 ms; runs interleaved, in a fresh random order each round,
 * so that what else the machine does falls on every mode alike. A fast API (5 ms), where
 * the consumer's own CPU is the limit and a scrape's cost would show; the pod's heap
 * settings, as bench/strategies.ts uses. The rate is the API's steady per-second count
 * (a fifth cut at each end); the scrape's own latency is measured by the scraper.
 *
 * Then, apart from the noise of a whole run, the CPU one GET of /metrics (and, for the
 * HTTP server's share, of /healthz) costs an idle consumer, read from /proc.
 *
 *   node bench/metrics-cost.ts [--rounds=4] [--messages=60000] [--runtimes=bun,deno,node] [--requests=2000]
 *
 * KAFKA_BROKERS, or a broker of its own (scripts/broker.ts). Writes
 * bench/results/metrics-cost-<date>.json and bench/results/metrics-cost.md (OUT_DIR).
 */
import { readFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { loadavg } from "node:os";
import { join, resolve } from "node:path";
import { acquireBroker, type Broker } from "../scripts/broker.ts";
import { freePort, projectRoot } from "../scripts/kafka-jvm.ts";
import { podHeapEnv, type Runtime } from "../scripts/runtimes.ts";
import { startScript } from "../tests/support/child.ts";
import { uniqueName } from "../tests/support/kafka.ts";
import { httpGet } from "../tests/support/prometheus.ts";
import { answered, type MockApi, produce, startMockApi } from "../tests/support/services.ts";
import {
  dateStamp,
  describeMachine,
  fmt,
  listOption,
  machine,
  markdownTable,
  median,
  numberOption,
  option,
  printedHelp,
  runtimeList,
  runtimeVersions,
  sleep,
} from "./harness.ts";
import { steadyRate } from "./strategies.ts";

const modes = [
  { id: "off", label: "listener off", listen: false, everyMs: 0 },
  { id: "idle", label: "listening, never scraped", listen: true, everyMs: 0 },
  { id: "1s", label: "scraped every 1 s", listen: true, everyMs: 1_000 },
  { id: "250ms", label: "scraped every 250 ms", listen: true, everyMs: 250 },
] as const;
type Mode = (typeof modes)[number];

interface Run {
  runtime: Runtime;
  mode: Mode["id"];
  round: number;
  steadyPerSec: number | null;
  /** messages ÷ the time from spawn to the API's last answer */
  drainPerSec: number;
  scrapes: number;
  scrapeMs: { p50: number | null; max: number | null };
  loadAverage: { start: number; end: number };
  exitCode: number | null;
}

async function runOnce(
  runtime: Runtime,
  mode: Mode,
  round: number,
  context: { brokers: string; api: MockApi; topic: string; messages: number },
): Promise<Run> {
  const { api, messages } = context;
  await api.reset();
  const port = await freePort();
  const loadStart = loadavg()[0] ?? 0;
  const started = performance.now();
  const consumer = startScript(runtime, "consumer-solved.ts", {
    env: {
      KAFKA_BROKERS: context.brokers,
      KAFKA_TOPIC: context.topic,
      KAFKA_GROUP_ID: uniqueName(`metrics-cost-${runtime}-${mode.id}`),
      API_URL: api.usersUrl,
      CONCURRENCY: "100",
      MEMORY_LIMIT_MB: "256",
      STATUS_INTERVAL_MS: "1000",
      METRICS_PORT: mode.listen ? String(port) : "0",
      ...podHeapEnv(runtime, 256),
    },
    stopWhen: answered(api, messages),
  });
  const scrapeMs: number[] = [];
  let done = false;
  void consumer.done.finally(() => (done = true));
  const scraping = (async () => {
    while (mode.everyMs && !done) {
      const answer = await httpGet(`http://127.0.0.1:${port}/metrics`, 2_000).catch(() => null);
      if (answer?.status === 200) scrapeMs.push(answer.ms);
      await new Promise((wake) => setTimeout(wake, mode.everyMs));
    }
  })();
  const result = await consumer.done;
  await scraping;
  const drainS = (performance.now() - started) / 1_000;
  return {
    runtime,
    mode: mode.id,
    round,
    steadyPerSec: steadyRate(await api.timeline()),
    drainPerSec: messages / drainS,
    scrapes: scrapeMs.length,
    scrapeMs: { p50: median(scrapeMs), max: scrapeMs.length ? Math.max(...scrapeMs) : null },
    loadAverage: { start: loadStart, end: loadavg()[0] ?? 0 },
    exitCode: result.code,
  };
}

/** CPU time the process has used, ms (utime + stime from /proc/<pid>/stat). */
function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
  return ((Number(fields[11]) + Number(fields[12])) * 1_000) / 100; // USER_HZ is 100 on Linux
}

interface RequestCost {
  runtime: Runtime;
  /** CPU µs the consumer spent per request, idle otherwise, over `requests` in a row */
  metricsUs: number;
  healthzUs: number;
  requests: number;
  metricsBytes: number;
}

/**
 * The scrape's own price: an idle consumer (caught up, six partitions) answers `requests`
 * GETs of /metrics, then as many of /healthz (the HTTP server's share alone), one after
 * another; its CPU time is read from /proc before and after each series.
 */
async function requestCost(
  runtime: Runtime,
  context: { brokers: string; api: MockApi },
  requests: number,
): Promise<RequestCost> {
  const topic = uniqueName("metrics-cost-idle");
  await produce(context.brokers, topic, { messages: 600, payloadBytes: 1_024, partitions: 6 });
  await context.api.reset();
  const port = await freePort();
  const consumer = startScript(runtime, "consumer-solved.ts", {
    env: {
      KAFKA_BROKERS: context.brokers,
      KAFKA_TOPIC: topic,
      KAFKA_GROUP_ID: `${topic}-group`,
      API_URL: context.api.usersUrl,
      METRICS_PORT: String(port),
      STATUS_INTERVAL_MS: "60000",
    },
  });
  try {
    while ((await context.api.stats()).distinctSucceeded < 600) await sleep(200);
    await sleep(2_000); // the last commit, then idle
    const series = async (path: string) => {
      const before = cpuMs(consumer.pid);
      let bytes = 0;
      for (let i = 0; i < requests; i++) {
        bytes = (await httpGet(`http://127.0.0.1:${port}${path}`)).body.length;
      }
      return { us: ((cpuMs(consumer.pid) - before) * 1_000) / requests, bytes };
    };
    const metrics = await series("/metrics");
    const healthz = await series("/healthz");
    return {
      runtime,
      metricsUs: metrics.us,
      healthzUs: healthz.us,
      requests,
      metricsBytes: metrics.bytes,
    };
  } finally {
    consumer.child.kill("SIGTERM");
    await consumer.done;
  }
}

function report(runs: Run[], runtimes: Runtime[], header: string): string {
  const rows = runtimes.flatMap((runtime) => {
    const base = median(
      runs.flatMap((r) => (r.runtime === runtime && r.mode === "off" && r.steadyPerSec) || []),
    );
    return modes.map((mode) => {
      const mine = runs.filter((r) => r.runtime === runtime && r.mode === mode.id);
      // null: the run was over too soon to have a steady middle (raise --messages)
      const steady = mine.map((r) => r.steadyPerSec);
      const mid = median(steady.filter((n) => n !== null));
      const scrape = mine.flatMap((r) => (r.scrapeMs.p50 === null ? [] : [r.scrapeMs.p50]));
      const scrapeMax = Math.max(0, ...mine.map((r) => r.scrapeMs.max ?? 0));
      return [
        runtime,
        mode.label,
        steady.map((n) => (n === null ? "too short" : fmt(n))).join(", "),
        fmt(mid),
        base && mid ? `${((mid / base) * 100).toFixed(0)} %` : "-",
        scrape.length ? `${fmt(median(scrape), 1)} / ${fmt(scrapeMax, 1)}` : "-",
      ];
    });
  });
  const table = markdownTable(
    ["runtime", "/metrics", "steady msg/s, each run", "median", "of off", "scrape ms p50 / max"],
    rows,
    ["l", "l", "r", "r", "r", "r"],
  );
  return `${header}\n\n${table}\n`;
}

async function main() {
  if (printedHelp(import.meta.url)) return;
  const rounds = numberOption("ROUNDS", 4);
  const messages = numberOption("MESSAGES", 60_000); // Bun takes 20,000 in 3 s: too short to have a steady middle
  const runtimes = runtimeList(listOption("RUNTIMES", "bun,deno,node"));
  const outDir = resolve(projectRoot, option("OUT_DIR", "bench/results"));
  let broker: Broker | undefined;
  let api: MockApi | undefined;
  try {
    broker = await acquireBroker();
    api = await startMockApi({ LATENCY_MS: "5", JITTER_MS: "0" });
    const topic = uniqueName("metrics-cost");
    await produce(broker.brokers, topic, { messages, payloadBytes: 1_024, partitions: 3 });
    const context = { brokers: broker.brokers, api, topic, messages };
    const costs: RequestCost[] = [];
    for (const runtime of runtimes) {
      const cost = await requestCost(runtime, context, numberOption("REQUESTS", 2_000));
      costs.push(cost);
      console.log(`[metrics-cost] ${runtime}: ${JSON.stringify(cost)}`);
    }
    const runs: Run[] = [];
    for (let round = 1; round <= rounds; round++) {
      for (const runtime of runtimes) {
        // A fresh order each round: a mode that always ran second would share its slot's luck.
        for (const mode of [...modes].sort(() => Math.random() - 0.5)) {
          const run = await runOnce(runtime, mode, round, context);
          runs.push(run);
          console.log(
            `[metrics-cost] round ${round} ${runtime} ${mode.id}: ${fmt(run.steadyPerSec)} msg/s steady, exit ${run.exitCode}, ${run.scrapes} scrapes`,
          );
        }
      }
    }
    const when = new Date();
    const header = [
      `# The cost of /metrics: ${when.toISOString().slice(0, 16).replace("T", " ")} UTC`,
      "",
      `${describeMachine(machine())}; runtimes ${JSON.stringify(runtimeVersions())}. The machine was shared with other work (load averages per run in the JSON).`,
      `${fmt(messages)} messages of 1 KB on 3 partitions, a 5 ms API, CONCURRENCY 100, MEMORY_LIMIT_MB 256 with the pod's heap flags; ${rounds} rounds, modes interleaved. *Steady* is the mean of the API's per-second successes with a fifth cut at each end; *scrape ms* is one GET of /metrics on a fresh connection, measured by the scraper.`,
    ].join("\n");
    await mkdir(outDir, { recursive: true });
    await writeFile(
      join(outDir, `metrics-cost-${dateStamp(when)}.json`),
      `${JSON.stringify({ date: when.toISOString(), machine: machine(), messages, rounds, costs, runs }, null, 2)}\n`,
    );
    const costTable = markdownTable(
      ["runtime", "CPU per /metrics", "CPU per /healthz", "/metrics size", "1 scrape/s costs"],
      costs.map((c) => [
        c.runtime,
        `${fmt(c.metricsUs)} µs`,
        `${fmt(c.healthzUs)} µs`,
        `${fmt(c.metricsBytes)} B`,
        `${((c.metricsUs / 1e6) * 100).toFixed(3)} % of a core`,
      ]),
      ["l", "r", "r", "r", "r"],
    );
    const markdown = `${report(runs, runtimes, header)}\nWhat one request costs the consumer itself, idle (six partitions assigned), ${fmt(costs[0]?.requests)} requests in a row, CPU read from /proc:\n\n${costTable}\n`;
    await writeFile(join(outDir, "metrics-cost.md"), markdown);
    console.log(markdown);
    if (runs.some((run) => run.exitCode !== 0)) process.exitCode = 1;
  } finally {
    await api?.stop().catch(() => {});
    await broker?.stop().catch(() => {});
  }
}

if (import.meta.main) await main();
