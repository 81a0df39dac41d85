// The demo: the problem and the fix, side by side, in one command.
//
//   npm run demo                      (Bun)
//   npm run demo -- --runtime node    (or deno)
//   npm run demo -- --quick           (a small backlog: proves the pieces work)
//
// It gets a broker (scripts/broker.ts), starts mock-api.ts, fills a topic with
// producer.ts, runs consumer-backpressure.ts until memory kills it, runs
// consumer-solved.ts over the same backlog until the API has answered every id, prints both side by side and
// draws their memory over time. Each consumer runs under the kernel's memory limit
// (a cgroup, as in a pod) where this machine allows it, else under its own ceiling
// check. Everything it starts is stopped at the end, and on Ctrl-C.
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import {
  type RunResult,
  runScript,
  type StopCondition,
  startScript,
} from "../tests/support/child.ts";
import { acquireBroker } from "./broker.ts";
import { type Cgroup, cgroupSupport, createCgroup } from "./cgroup.ts";
import { memoryChart, writeChart } from "./charts.ts";
import { projectRoot } from "./kafka-jvm.ts";
import { parseRuntime, podHeapEnv } from "./runtimes.ts";

const { values: flags } = parseArgs({
  options: {
    runtime: { type: "string", default: "bun" },
    messages: { type: "string" },
    quick: { type: "boolean", default: false },
    out: { type: "string", default: join(projectRoot, "demo-output") },
  },
});
const runtime = parseRuntime(flags.runtime, "bun");
const quick = flags.quick;
// The scripts' defaults: 10,000 events of 16 KB, a 1 s API, a 256 MB pod.
const messages = Number(flags.messages ?? (quick ? 500 : 10_000));
const limitMb = 256;
const latencyMs = quick ? 50 : 1_000;
const tty = process.stdout.isTTY === true;

interface ConsumerOutcome {
  name: string;
  run: RunResult;
  limit: string;
  verdict: string;
  /** what the cgroup charged at most, when it ran in one */
  cgroupPeakMb?: number;
  /** processed per the last status line, for a run killed before its summary */
  lastProcessed: number;
}

const cleanups: (() => Promise<unknown>)[] = [];
let stopping = false;
async function cleanUp() {
  while (cleanups.length > 0)
    await cleanups
      .pop()?.()
      .catch(() => {});
}
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, async () => {
    stopping = true;
    console.log(`\n${signal}: stopping everything the demo started…`);
    await cleanUp();
    process.exit(130);
  });
}

async function main() {
  const say = (text: string) => console.log(`\n== ${text}`);
  say(
    `Kafka consumer back pressure on ${runtime}: ${messages.toLocaleString("en-US")} events of 16 KB, an API that takes ${latencyMs} ms a call, ${limitMb} MB of memory`,
  );

  const broker = await acquireBroker();
  cleanups.push(() => broker.stop());
  console.log(`Kafka via ${broker.source} at ${broker.brokers}`);

  const api = startScript("bun", "mock-api.ts", {
    env: { PORT: "0", LATENCY_MS: String(latencyMs), JITTER_MS: String(latencyMs / 10) },
  });
  cleanups.push(async () => {
    api.child.kill("SIGTERM");
    await api.done;
  });
  const apiBase = (await api.waitForLine(/mock-api listening on/)).match(/(http:\/\/\S+)/)?.[1];
  const apiUrl = `${apiBase}/users`;
  // A consumer has caught up once the API has answered every id: then it gets SIGTERM,
  // as a pod being stopped would.
  const answeredAll: StopCondition = {
    met: async () => {
      const stats = (await (await fetch(`${apiBase}/stats`)).json()) as {
        distinctSucceeded: number;
      };
      return stats.distinctSucceeded >= messages;
    },
  };
  console.log(`mock API at ${apiUrl}`);

  const topic = `demo-${Date.now().toString(36)}`;
  say(`Producing the backlog to ${topic}`);
  const produced = await runScript(runtime, "producer.ts", {
    env: { KAFKA_BROKERS: broker.brokers, KAFKA_TOPIC: topic, MESSAGES: String(messages) },
    onLine: (line) => console.log(`  ${line}`),
  });
  if (produced.code !== 0) throw new Error(`producer.ts failed:\n${produced.stderr}`);

  const pod = await cgroupSupport();
  const mode = pod.ok
    ? `the kernel's limit (cgroup v${pod.version})`
    : "the scripts' own ceiling check";
  if (!pod.ok) console.log(`No cgroup can be made here (${pod.reason}); using ${mode}.`);
  else console.log(`Each consumer runs under ${mode}, ${limitMb} MB, as in a pod.`);

  const runConsumer = async (name: string, script: string): Promise<ConsumerOutcome> => {
    say(`${name}: ${script}`);
    const cgroup: Cgroup | undefined = pod.ok
      ? await createCgroup({ memoryLimitMb: limitMb, name })
      : undefined;
    if (cgroup) cleanups.push(() => cgroup.remove());
    let lastProcessed = 0;
    const solved = script === "consumer-solved.ts";
    await fetch(`${apiBase}/reset`, { method: "POST" });
    try {
      const run = await runScript(runtime, script, {
        env: {
          KAFKA_BROKERS: broker.brokers,
          KAFKA_TOPIC: topic,
          KAFKA_GROUP_ID: `${topic}-${name}`,
          API_URL: apiUrl,
          STATUS_FORMAT: tty ? "json" : "text",
          // The solved consumer runs on its defaults: in a cgroup it takes the limit as
          // its budget, elsewhere it is told. The unbounded one, which has no budget,
          // gets the kernel as its judge, or its own check, with the heap a pod would
          // give V8 (Node reads a cgroup's limit; Deno never does).
          ...(solved
            ? cgroup
              ? {}
              : { MEMORY_LIMIT_MB: String(limitMb) }
            : {
                MEMORY_LIMIT_MB: cgroup ? "0" : String(limitMb),
                ...(cgroup && runtime === "node" ? {} : podHeapEnv(runtime, limitMb)),
              }),
        },
        wrap: cgroup?.wrap,
        stopWhen: answeredAll,
        onLine: (line, stream) => {
          lastProcessed = processedIn(line) ?? lastProcessed;
          showProgress(name, line, stream);
        },
      });
      if (tty) process.stdout.write("\n");
      const stats = await cgroup?.stats();
      const killed = run.signal === "SIGKILL" && (stats?.oomKills ?? 0) > 0;
      const verdict = killed
        ? "OOMKilled by the kernel (exit 137)"
        : run.code === 3
          ? "passed its memory ceiling (exit 3)"
          : `exit ${run.code ?? run.signal}`;
      return {
        name,
        run,
        limit: cgroup ? `${limitMb} MB (kernel)` : `${limitMb} MB (own check)`,
        verdict,
        cgroupPeakMb: stats?.peakMb,
        lastProcessed,
      };
    } finally {
      await cgroup?.remove();
    }
  };

  const unbounded = await runConsumer("unbounded", "consumer-backpressure.ts");
  const solved = await runConsumer("solved", "consumer-solved.ts");
  if (stopping) return;

  say("Side by side");
  const table = summaryTable([unbounded, solved]);
  console.log(table);

  await mkdir(flags.out, { recursive: true });
  const chartPath = join(flags.out, "memory.svg");
  await writeChart(
    chartPath,
    await memoryChart(
      [unbounded, solved].map((outcome) => ({
        label: `${outcome.name}: ${outcome.verdict}`,
        samples: outcome.run.samples,
      })),
      { ceilingMb: limitMb, title: `RSS over time on ${runtime}: unbounded vs solved consumer` },
    ),
  );
  const resultPath = join(flags.out, "demo.json");
  await writeFile(
    resultPath,
    `${JSON.stringify(
      {
        date: new Date().toISOString(),
        runtime,
        messages,
        latencyMs,
        limitMb,
        mode,
        consumers: [unbounded, solved].map((o) => ({
          name: o.name,
          verdict: o.verdict,
          peakRssMb: o.run.observedPeakRssMb,
          cgroupPeakMb: o.cgroupPeakMb,
          seconds: o.run.durationMs / 1_000,
          summary: o.run.summary,
          samples: o.run.samples,
        })),
      },
      null,
      2,
    )}\n`,
  );
  await writeFile(join(flags.out, "demo.md"), `${table}\n`);
  console.log(`\nWrote ${chartPath}, ${resultPath} and demo.md.`);
}

/** On a terminal, one live line per consumer; in a log, the consumers' own status lines. */
function showProgress(name: string, line: string, stream: "stdout" | "stderr") {
  if (!tty || stream === "stderr" || !line.startsWith('{"type":"status"')) {
    if (line.trim() !== "") console.log(`  ${line}`);
    return;
  }
  const s = JSON.parse(line) as Record<string, number | boolean | null>;
  const done = Number(s.processed ?? 0);
  const width = 24;
  const filled = Math.min(width, Math.round((done / messages) * width));
  const bar = `${"█".repeat(filled)}${"░".repeat(width - filled)}`;
  const queue = s.queued === undefined ? "" : ` queued ${s.queued}`;
  const open = s.inFlight === undefined ? "" : ` in flight ${s.inFlight}`;
  process.stdout.write(
    `\r\x1b[2K  ${name.padEnd(9)} ${bar} ${done.toLocaleString("en-US")}/${messages.toLocaleString("en-US")} ${s.ratePerSec}/s${queue}${open} rss ${s.rssMb}/${limitMb} MB`,
  );
}

/** "processed N" from a status line, JSON or text. */
function processedIn(line: string): number | undefined {
  const match = line.match(/"processed":(\d+)|processed ([\d,]+)/);
  const digits = match?.[1] ?? match?.[2]?.replaceAll(",", "");
  return digits === undefined ? undefined : Number(digits);
}

function summaryTable(outcomes: ConsumerOutcome[]): string {
  const rows = outcomes.map((o) => {
    const summary = o.run.summary ?? {};
    const processed = Number(summary.processed ?? o.lastProcessed);
    const seconds = o.run.durationMs / 1_000;
    const rate = summary.ratePerSec ?? Math.round(processed / seconds);
    const cgroupPeak = o.cgroupPeakMb === undefined ? "-" : o.cgroupPeakMb.toFixed(0);
    return `| ${o.name} | ${processed.toLocaleString("en-US")} of ${messages.toLocaleString("en-US")} | ${seconds.toFixed(1)} | ${rate} | ${o.run.observedPeakRssMb.toFixed(0)} | ${cgroupPeak} | ${o.limit} | ${o.verdict} |`;
  });
  return [
    "| consumer | processed | seconds | msg/s | peak RSS (MB) | cgroup peak (MB) | limit | exit |",
    "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ...rows,
  ].join("\n");
}

try {
  await main();
} catch (error) {
  console.error(`demo failed: ${(error as Error).message}`);
  process.exitCode = 1;
} finally {
  await cleanUp();
}
