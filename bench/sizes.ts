/**
 * bench/sizes.ts: memory and throughput by message size, per runtime.
 *
 * For each message size and runtime, on one backlog per size (20 times the solved
 * consumer's byte cap, or 20,000 messages, whichever is less), an API at LATENCY_MS:
 *   - solved, in a POD_MB memory cgroup on its defaults (it takes its budget from the
 *     cgroup): the kernel's peak charge, peak RSS, msg/s and MB/s;
 *   - solved with no memory limit at all (MEMORY_LIMIT_MB=0, no cgroup): msg/s and MB/s,
 *     what the budget costs in speed;
 *   - the bare fetch loop (bench/fetch-loop.ts), no Kafka and no limit: CONCURRENCY
 *     POSTs of bodies of the same size to the same API, what this machine can move at
 *     best on that runtime (the best runtime's figure is the machine's bare limit);
 *   - unbounded (consumer-backpressure.ts) with no limit: how high memory goes without
 *     bounds.
 * Modes run one after another for each size and runtime, so each ratio compares runs
 * minutes apart at most. Writes bench/results/sizes.md, sizes-<date>.json and
 * memory-by-size.svg.
 *
 *   node bench/sizes.ts
 *   RUNTIMES=bun SIZES_KB=1,64 MODES=pod,free node bench/sizes.ts
 *
 * Options (flag --name=value or environment variable):
 *   RUNTIMES       bun,deno,node                            [bun,deno,node]
 *   SIZES_KB       message sizes in KB                      [1,16,64,256,900]
 *   MODES          pod, free (no limit), bare, unbounded    [pod,free,bare,unbounded]
 *   LATENCY_MS     the API's latency                        [100]
 *   POD_MB         the memory cgroup's limit                [256]
 *   MAX_MESSAGES   the backlog's cap in messages            [20000]
 *   OUT_DIR        where results go                         [bench/results]
 */
import { mkdir, writeFile } from "node:fs/promises";
import { loadavg } from "node:os";
import { join, resolve } from "node:path";
import { acquireBroker } from "../scripts/broker.ts";
import { cgroupSupport, createCgroup } from "../scripts/cgroup.ts";
import { sizeChart, writeChart } from "../scripts/charts.ts";
import { projectRoot } from "../scripts/kafka-jvm.ts";
import type { Runtime } from "../scripts/runtimes.ts";
import { type RunResult, runScript } from "../tests/support/child.ts";
import { uniqueName } from "../tests/support/kafka.ts";
import {
  answered,
  type Backlog,
  busyMedianRate,
  consumerEnv,
  type MockApi,
  produce,
  startMockApi,
} from "../tests/support/services.ts";
import {
  dateStamp,
  describeMachine,
  fmt,
  listOption,
  machine,
  markdownTable,
  numberOption,
  option,
  printedHelp,
  runtimeList,
  runtimeVersions,
} from "./harness.ts";

/** the solved consumer's defaults */
const byteCap = 16 * 2 ** 20;
const concurrency = 200;

const modes = {
  pod: "solved in pod",
  free: "solved, no limit",
  bare: "bare fetch loop, no limit",
  unbounded: "unbounded, no limit",
} as const;
type Mode = (typeof modes)[keyof typeof modes];

/** A run with no new answer for this long is stopped and marked stalled. */
const stallMs = 60_000;

/** Met once the API has answered every id, or once no new id was answered for `ms`. */
function answeredOrStalled(api: MockApi, count: number, ms: number) {
  const done = answered(api, count);
  let [last, lastChangeAt] = [-1, Date.now()];
  const condition = {
    stalled: false,
    met: async () => {
      if (await done.met()) return true;
      const now = (await api.stats()).distinctSucceeded;
      if (now !== last) [last, lastChangeAt] = [now, Date.now()];
      condition.stalled = Date.now() - lastChangeAt > ms;
      return condition.stalled;
    },
  };
  return condition;
}

interface Cell {
  runtime: Runtime;
  sizeKb: number;
  mode: Mode;
  messages: number;
  exit: string;
  processed: number;
  seconds: number;
  msgPerSec: number;
  mbPerSec: number;
  /** the busiest-second median of the API's successes, from its timeline */
  steadyPerSec: number;
  /** 1-minute load average when the run started (the machine is shared) */
  loadAtStart: number;
  peakRssMb: number;
  peakChargedMb?: number;
  oomKills?: number;
}

async function main() {
  if (printedHelp(import.meta.url)) return;
  const runtimes = runtimeList(listOption("RUNTIMES", "bun,deno,node"));
  const sizesKb = listOption("SIZES_KB", "1,16,64,256,900").map(Number);
  const chosen = listOption("MODES", Object.keys(modes).join(",")).map((id) => {
    if (!(id in modes)) {
      console.error(`MODES: unknown "${id}"; known: ${Object.keys(modes).join(", ")}`);
      process.exit(2);
    }
    return modes[id as keyof typeof modes];
  });
  const latencyMs = numberOption("LATENCY_MS", 100);
  const podMb = numberOption("POD_MB", 256);
  const maxMessages = numberOption("MAX_MESSAGES", 20_000);
  const outDir = resolve(projectRoot, option("OUT_DIR", "bench/results"));
  const support = await cgroupSupport();
  if (!support.ok) {
    console.error(`bench/sizes.ts needs memory cgroups: ${support.reason}`);
    process.exit(1);
  }
  const startedAt = new Date();
  const broker = await acquireBroker();
  const api = await startMockApi({ LATENCY_MS: String(latencyMs), JITTER_MS: "10" });
  const cells: Cell[] = [];
  try {
    for (const sizeKb of sizesKb) {
      const size = sizeKb * 1_024;
      const messages = Math.min(maxMessages, Math.ceil((20 * byteCap) / size));
      const backlog = await produce(broker.brokers, uniqueName(`sizes-${sizeKb}k`), {
        messages,
        payloadBytes: size,
      });
      for (const runtime of runtimes) {
        for (const mode of chosen) {
          const cell = await measure(runtime, mode, backlog, sizeKb);
          cells.push(cell);
          console.log(
            `[sizes] ${sizeKb} KB ${runtime} ${mode}: exit ${cell.exit}, ${fmt(cell.msgPerSec)} msg/s, ${fmt(cell.mbPerSec, 1)} MB/s, peak RSS ${fmt(cell.peakRssMb)} MB${cell.peakChargedMb === undefined ? "" : `, charged ${fmt(cell.peakChargedMb)} MB`}`,
          );
        }
      }
    }
  } finally {
    await api.stop();
    await broker.stop();
  }

  async function measure(runtime: Runtime, mode: Mode, backlog: Backlog, sizeKb: number) {
    await api.reset();
    const loadAtStart = loadavg()[0] ?? 0;
    const env = consumerEnv(broker.brokers, backlog.topic, uniqueName(`sizes-${runtime}`), {
      API_URL: api.usersUrl,
      ...(mode === modes.pod ? {} : { MEMORY_LIMIT_MB: "0" }),
      // for the bare loop, which has no topic: as many bodies of the same size
      ...(mode === modes.bare
        ? {
            CONCURRENCY: String(concurrency),
            MESSAGES: String(backlog.messages),
            PAYLOAD_BYTES: String(sizeKb * 1_024),
          }
        : {}),
    });
    const script = {
      [modes.pod]: "consumer-solved.ts",
      [modes.free]: "consumer-solved.ts",
      [modes.bare]: "bench/fetch-loop.ts",
      [modes.unbounded]: "consumer-backpressure.ts",
    }[mode];
    const cgroup =
      mode === modes.pod
        ? await createCgroup({ memoryLimitMb: podMb, name: `sizes-${runtime}` })
        : undefined;
    let run: RunResult;
    let stalled = false;
    let pod: { peakMb: number; oomKills: number } | undefined;
    try {
      // Once the API has answered every id, SIGTERM: its summary then covers the run.
      // (The bare loop stops by itself.)
      const stopWhen =
        mode === modes.bare ? undefined : answeredOrStalled(api, backlog.messages, stallMs);
      run = await runScript(runtime, script, { env, wrap: cgroup?.wrap, stopWhen });
      stalled = stopWhen?.stalled ?? false;
      pod = await cgroup?.stats();
    } finally {
      await cgroup?.remove();
    }
    const timeline = await api.timeline();
    const processed = Number(run.summary?.processed ?? 0);
    const seconds = Number(run.summary?.durationMs ?? run.durationMs) / 1_000;
    const msgPerSec = processed / seconds;
    return {
      runtime,
      sizeKb,
      mode,
      messages: backlog.messages,
      exit: stalled
        ? `stalled (no answer for ${stallMs / 1_000} s)`
        : (run.signal ?? String(run.code)),
      processed,
      seconds,
      msgPerSec,
      mbPerSec: (msgPerSec * sizeKb) / 1_024,
      steadyPerSec: busyMedianRate(timeline),
      loadAtStart,
      peakRssMb: run.observedPeakRssMb,
      peakChargedMb: pod?.peakMb,
      oomKills: pod?.oomKills,
    } satisfies Cell;
  }

  const limitPerSec = concurrency / (latencyMs / 1_000);
  const rows = cells.map((c) => [
    `${c.sizeKb} KB`,
    c.runtime,
    c.mode,
    `${fmt(c.processed)}/${fmt(c.messages)}`,
    c.exit,
    fmt(c.msgPerSec),
    `${fmt(c.steadyPerSec)} (${fmt((100 * c.steadyPerSec) / limitPerSec)}%)`,
    fmt(c.mbPerSec, 1),
    fmt(c.peakRssMb),
    c.peakChargedMb === undefined ? "-" : fmt(c.peakChargedMb),
    fmt(c.loadAtStart, 1),
  ]);
  const m = machine();
  const versions = runtimeVersions();
  const markdown = [
    `# Memory and throughput by message size (${dateStamp(startedAt)})`,
    "",
    `Measured ${startedAt.toISOString()} on ${describeMachine(m)}; ${runtimes.map((r) => `${r} ${versions[r]}`).join(", ")}.`,
    `API ${latencyMs} ms; the solved consumer on its defaults (CONCURRENCY ${concurrency}, byte cap 16 MB): at most ${fmt(limitPerSec)} msg/s, or byte cap ÷ size × 1 s ÷ latency for large messages. "In pod": a ${podMb} MB memory cgroup. "Steady": the median of the API's busiest seconds, share of CONCURRENCY ÷ latency.`,
    "",
    ...ratios(cells, podMb),
    "",
    "Every run:",
    "",
    markdownTable(
      [
        "size",
        "runtime",
        "consumer",
        "processed",
        "exit",
        "msg/s",
        "steady msg/s",
        "MB/s",
        "peak RSS (MB)",
        "peak charged (MB)",
        "load at start",
      ],
      rows,
      ["l", "l", "l", "r", "l", "r", "r", "r", "r", "r", "r"],
    ),
    "",
  ].join("\n");
  await mkdir(outDir, { recursive: true });
  await writeFile(join(outDir, "sizes.md"), markdown);
  await writeFile(
    join(outDir, `sizes-${dateStamp(startedAt)}.json`),
    `${JSON.stringify({ startedAt, machine: m, versions, latencyMs, podMb, cells }, null, 2)}\n`,
  );
  const svg = await sizeChart(
    cells
      .filter((c) => c.mode === modes.pod || c.mode === modes.unbounded)
      .map((c) => ({
        series: `${c.mode === modes.pod ? "solved (charged, in pod)" : "unbounded (RSS)"} ${c.runtime}`,
        size: `${c.sizeKb} KB`,
        value: c.peakChargedMb ?? c.peakRssMb,
      })),
    {
      ceilingMb: podMb,
      title: `Peak memory by message size, API ${latencyMs} ms (${dateStamp(startedAt)})`,
    },
  );
  await writeChart(join(outDir, "memory-by-size.svg"), svg);
  console.log(markdown);
}

/**
 * One row per size and runtime: the pod's steady rate against the same consumer's with
 * no limit, and against the bare fetch loop's at that size (the best runtime's: what
 * this machine can move; each runtime's own beside it).
 */
function ratios(cells: Cell[], podMb: number): string[] {
  const steadyMb = (c: Cell | undefined) =>
    c === undefined ? undefined : (c.steadyPerSec * c.sizeKb) / 1_024;
  const find = (sizeKb: number, runtime: Runtime, mode: Mode) =>
    cells.find((c) => c.sizeKb === sizeKb && c.runtime === runtime && c.mode === mode);
  const share = (a: number | undefined, b: number | undefined) =>
    a === undefined || !b ? "-" : fmt(a / b, 2);
  const rows: string[][] = [];
  for (const sizeKb of [...new Set(cells.map((c) => c.sizeKb))]) {
    const here = cells.filter((c) => c.sizeKb === sizeKb);
    const bareLimit = Math.max(
      0,
      ...here.filter((c) => c.mode === modes.bare).map((c) => steadyMb(c) ?? 0),
    );
    for (const runtime of [...new Set(here.map((c) => c.runtime))]) {
      const [pod, free, bare] = [modes.pod, modes.free, modes.bare].map((m) =>
        find(sizeKb, runtime, m),
      );
      const rate = (c: Cell | undefined) =>
        c === undefined ? "-" : `${fmt(steadyMb(c), 1)} (${fmt(c.steadyPerSec)})`;
      rows.push([
        `${sizeKb} KB`,
        runtime,
        rate(pod),
        pod?.peakChargedMb === undefined ? "-" : fmt(pod.peakChargedMb),
        rate(free),
        share(steadyMb(pod), steadyMb(free)),
        rate(bare),
        share(steadyMb(pod), bareLimit),
      ]);
    }
  }
  return [
    `Steady rates, MB/s (msg/s). "pod ÷ no limit": the same consumer, same backlog, same API; "÷ bare limit": the pod's MB/s over the best bare fetch loop at that size (no Kafka, no limit), what this machine moves.`,
    "",
    markdownTable(
      [
        "size",
        "runtime",
        `in a ${podMb} MB pod`,
        "charged peak (MB)",
        "no limit",
        "pod ÷ no limit",
        "bare fetch loop",
        "pod ÷ bare limit",
      ],
      rows,
      ["r", "l", "r", "r", "r", "r", "r", "r"],
    ),
  ];
}

if (import.meta.main) await main();
