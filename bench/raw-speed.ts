/**
 * bench/raw-speed.ts: how fast KafkaJS moves messages on each runtime, against kcat
 * (librdkafka's command-line client, in C) on the same broker and topic, as ratios:
 * messages/s of each runtime ÷ kcat's. No API calls: producer.ts and consumer-fast.ts,
 * and for consuming also @platformatic/kafka (bench/platformatic-count.ts) on each runtime.
 *
 *   node bench/raw-speed.ts                          (Bun, Deno and Node; about 2 minutes)
 *   node bench/raw-speed.ts --runtimes=node --messages=20000
 *   QUICK=1 RUNTIMES=node OUT_DIR=/tmp/x node bench/raw-speed.ts    (a CI smoke test)
 *
 * Options, as flags (--messages=…) or environment variables (MESSAGES=…):
 *   MESSAGES       each producer sends this many            [200000; QUICK: 2000]
 *   PAYLOAD_BYTES  size of each event                       [1024]
 *   PARTITIONS     of the topic                             [3]
 *   RUNTIMES       comma-separated                          [bun,deno,node]
 *   OUT_DIR        where results go                         [bench/results]
 *
 * Produce: producer.ts on each runtime, then kcat -P, each MESSAGES events of the same
 * shape into one topic. Consume: consumer-fast.ts on each runtime, then kcat -C, each
 * reading the whole topic from the beginning to its end. Every rate is messages ÷ the
 * wall time from process start until done, start-up and connecting included for all
 * alike (the scripts' own figures, which leave some of that out, are in the JSON).
 * Writes OUT_DIR/raw-speed.md and OUT_DIR/raw-speed-<date>.json. Needs kcat
 * (`apt-get install -y kcat`); without it, says so and exits 1.
 */
import { spawnSync } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { acquireBroker, type Broker } from "../scripts/broker.ts";
import { projectRoot } from "../scripts/kafka-jvm.ts";
import type { Runtime } from "../scripts/runtimes.ts";
import {
  type RunningScript,
  type RunResult,
  startCommand,
  startScript,
} from "../tests/support/child.ts";
import { committedToEnd, createTopic, endOffsets, uniqueName } from "../tests/support/kafka.ts";
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

const platformaticVersion: string = (
  JSON.parse(
    readFileSync(join(projectRoot, "node_modules/@platformatic/kafka/package.json"), "utf8"),
  ) as { version: string }
).version;

const INSTALL_KCAT =
  "kcat is not installed. Install it: apt-get install -y kcat (Debian, Ubuntu), brew install kcat (macOS).";

interface Measurement {
  tool: string;
  messages: number;
  /** from process start until done: the final line (scripts), the exit (kcat) */
  wallMs: number;
  exitMs: number;
  ratePerSec: number;
  /** the script's own rate from its summary (it times less than the whole process) */
  reportedRatePerSec: number | null;
  peakRssMb: number;
  exitCode: number | null;
}

async function main() {
  if (printedHelp(import.meta.url)) return;
  const kcatVersion = kcatAvailable();
  if (!kcatVersion) {
    console.error(INSTALL_KCAT);
    process.exit(1);
  }
  const quick = option("QUICK", "0") === "1";
  const messages = numberOption("MESSAGES", quick ? 2_000 : 200_000);
  const payloadBytes = numberOption("PAYLOAD_BYTES", 1_024);
  const partitions = numberOption("PARTITIONS", 3);
  const runtimes = runtimeList(listOption("RUNTIMES", "bun,deno,node"));
  const outDir = resolve(projectRoot, option("OUT_DIR", "bench/results"));
  const started = Date.now();
  let broker: Broker | undefined;
  const inputFile = join(tmpdir(), `raw-speed-${process.pid}.txt`);
  const failures: string[] = [];
  try {
    broker = await acquireBroker();
    const brokers = broker.brokers;
    log(`Kafka via ${broker.source} at ${brokers}; ${kcatVersion}`);
    const topic = uniqueName("raw-speed");
    await createTopic(brokers, topic, partitions);

    // Produce: MESSAGES from each runtime's producer.ts, then from kcat.
    const produced: Measurement[] = [];
    for (const runtime of runtimes) {
      const run = await timed(
        startScript(runtime, "producer.ts", {
          env: {
            KAFKA_BROKERS: brokers,
            KAFKA_TOPIC: topic,
            MESSAGES: String(messages),
            PAYLOAD_BYTES: String(payloadBytes),
            PARTITIONS: String(partitions),
            ID_PREFIX: `raw-${runtime}`,
            KAFKAJS_NO_PARTITIONER_WARNING: "1",
          },
        }),
        /"type":"summary"/,
      );
      if (run.code !== 0 || run.summary?.sent !== messages) {
        failures.push(`producer.ts on ${runtime}: exit ${run.code}\n${run.stderr.slice(-1_000)}`);
      }
      produced.push(measurement(runtime, messages, run));
      log(`  produce ${runtime}: ${fmt(produced.at(-1)?.ratePerSec)} msg/s`);
    }
    writeFileSync(inputFile, kcatInput(messages, payloadBytes));
    const kcatProduce = await timed(
      startCommand("kcat", ["-b", brokers, "-P", "-t", topic, "-K", "\t", "-l", inputFile]),
    );
    if (kcatProduce.code !== 0) failures.push(`kcat -P: exit ${kcatProduce.code}`);
    produced.push(measurement("kcat", messages, kcatProduce));
    log(`  produce kcat: ${fmt(produced.at(-1)?.ratePerSec)} msg/s`);

    const total = Object.values(await endOffsets(brokers, topic)).reduce(
      (sum, offset) => sum + Number(offset),
      0,
    );
    const expected = messages * (runtimes.length + 1);
    if (total !== expected) failures.push(`the topic holds ${total} messages, not ${expected}`);

    // Consume: the whole topic, from each runtime's consumer-fast.ts, then from kcat.
    const consumed: Measurement[] = [];
    for (const runtime of runtimes) {
      const run = await timed(
        startScript(runtime, "consumer-fast.ts", {
          env: {
            KAFKA_BROKERS: brokers,
            KAFKA_TOPIC: topic,
            KAFKA_GROUP_ID: `${topic}-fast-${runtime}`,
            MEMORY_LIMIT_MB: "0", // speed only: no ceiling
            STATUS_INTERVAL_MS: "200",
          },
          // Stopped once the broker has its commits to the end of the topic.
          stopWhen: committedToEnd(brokers, `${topic}-fast-${runtime}`, topic),
        }),
        // The first status line that counts the whole topic, before it leaves the group.
        new RegExp(`processed\\W{1,3}${fmt(total).replaceAll(",", ",?")}\\b`),
      );
      if (run.code !== 0 || run.summary?.processed !== total) {
        failures.push(
          `consumer-fast.ts on ${runtime}: exit ${run.code}, processed ${String(run.summary?.processed)} of ${total}\n${run.stderr.slice(-1_000)}`,
        );
      }
      consumed.push(measurement(runtime, total, run));
      log(`  consume ${runtime}: ${fmt(consumed.at(-1)?.ratePerSec)} msg/s`);
    }
    // The same, counting only, with @platformatic/kafka instead of KafkaJS.
    for (const runtime of runtimes) {
      const run = await timed(
        startScript(runtime, "bench/platformatic-count.ts", {
          env: {
            KAFKA_BROKERS: brokers,
            KAFKA_TOPIC: topic,
            KAFKA_GROUP_ID: `${topic}-platformatic-${runtime}`,
            EXPECTED: String(total),
          },
        }),
        new RegExp(`"type":"status".*"processed":${total}[,}]`),
      );
      if (run.code !== 0 || run.summary?.processed !== total) {
        failures.push(
          `bench/platformatic-count.ts on ${runtime}: exit ${run.code}, processed ${String(run.summary?.processed)} of ${total}\n${run.stderr.slice(-1_000)}`,
        );
      }
      consumed.push(measurement(`platformatic-${runtime}`, total, run));
      log(`  consume platformatic on ${runtime}: ${fmt(consumed.at(-1)?.ratePerSec)} msg/s`);
    }
    // Only offsets are printed, so the pipe carries little; kcat still fetches every message.
    const kcatConsume = await timed(
      startCommand("kcat", [
        "-b",
        brokers,
        "-C",
        "-t",
        topic,
        "-o",
        "beginning",
        "-e",
        "-q",
        "-f",
        "%o\\n",
      ]),
    );
    const counted = kcatConsume.stdout.split("\n").filter(Boolean).length;
    if (kcatConsume.code !== 0 || counted !== total) {
      failures.push(`kcat -C: exit ${kcatConsume.code}, ${counted} of ${total} messages`);
    }
    consumed.push(measurement("kcat", counted, kcatConsume));
    log(`  consume kcat: ${fmt(consumed.at(-1)?.ratePerSec)} msg/s`);

    await mkdir(outDir, { recursive: true });
    const at = new Date();
    const host = machine();
    const versions = runtimeVersions();
    const report = {
      date: at.toISOString(),
      machine: host,
      runtimes: versions,
      kcat: kcatVersion,
      settings: { messages, payloadBytes, partitions, runtimes, quick },
      broker: broker.source,
      topic,
      produced,
      consumed,
      failures,
      totalS: (Date.now() - started) / 1_000,
    };
    await writeFile(
      join(outDir, `raw-speed-${dateStamp(at)}.json`),
      `${JSON.stringify(report, null, 1)}\n`,
    );
    const kcatRate = (rows: Measurement[]) => rows.find((m) => m.tool === "kcat")?.ratePerSec ?? 0;
    const ratio = (rate: number, reference: number) =>
      reference > 0 ? `${fmt(rate / reference, 2)}` : "-";
    const row = (tool: string) => {
      const p = produced.find((m) => m.tool === tool);
      const c = consumed.find((m) => m.tool === tool);
      const runtime = tool.replace(/^platformatic-/, "") as Runtime;
      const name =
        tool === "kcat"
          ? kcatVersion
          : tool.startsWith("platformatic-")
            ? `@platformatic/kafka ${platformaticVersion} on ${runtime} ${versions[runtime]}`
            : `${tool} ${versions[runtime]}`;
      return [
        name,
        p ? fmt(p.ratePerSec) : "-",
        p ? ratio(p.ratePerSec, kcatRate(produced)) : "-",
        fmt(c?.ratePerSec),
        ratio(c?.ratePerSec ?? 0, kcatRate(consumed)),
        fmt(c?.peakRssMb),
      ];
    };
    const markdown = [
      "# Raw speed: KafkaJS on each runtime against kcat",
      "",
      `Written by \`node bench/raw-speed.ts\`${quick ? " (QUICK mode: a smoke test, not a measurement)" : ""} on ${at.toISOString()}, in ${fmt(report.totalS)} s.`,
      "",
      `- Machine: ${describeMachine(host)}; the broker (${broker.source}) runs on it too.`,
      `- One topic, ${partitions} partitions, events of ${fmt(payloadBytes)} bytes. Produce: ${fmt(messages)} events each from producer.ts (KafkaJS, acks all, batches of up to 500 events or 256 KB, 8 requests in flight) and from \`kcat -P -K '\\t' -l <file>\` (librdkafka defaults, acks all). Consume: the whole topic (${fmt(total)} messages) with consumer-fast.ts (KafkaJS consumer group, counting only), with bench/platformatic-count.ts (@platformatic/kafka consumer group, counting only; consume only, its producer is not measured) and with \`kcat -C -o beginning -e -q -f '%o\\n'\` (no group).`,
      "- Rates are messages ÷ wall time from process start until done, start-up and connecting included for every tool alike: for kcat until it exits; for the scripts until the line that says they are done (the producer's summary, consumer-fast's status line at the end of the topic), so a KafkaJS consumer's leaving the group, which waits out a fetch in progress (maxWaitTimeInMs, 5 s by default), is left out. The ratio is the runtime's rate ÷ kcat's (1 = as fast as kcat).",
      "",
      markdownTable(
        ["client", "produce msg/s", "÷ kcat", "consume msg/s", "÷ kcat", "consumer peak RSS MB"],
        [...runtimes, ...runtimes.map((r) => `platformatic-${r}`), "kcat"].map(row),
        ["l", "r", "r", "r", "r", "r"],
      ),
      "",
      ...(failures.length > 0 ? ["**Problems:**", "", ...failures.map((f) => `- ${f}`), ""] : []),
    ].join("\n");
    await writeFile(join(outDir, "raw-speed.md"), markdown);
    log(`done in ${fmt(report.totalS)} s; results in ${outDir}`);
  } finally {
    rmSync(inputFile, { force: true });
    await broker?.stop();
  }
  if (failures.length > 0) {
    console.error(failures.join("\n"));
    process.exit(1);
  }
}

/** kcat's version line, or undefined when it is not installed. */
function kcatAvailable(): string | undefined {
  const probe = spawnSync("kcat", ["-V"], { encoding: "utf8" });
  if (probe.error || probe.status !== 0) return undefined;
  const kcat = probe.stdout.match(/Version (\S+)/)?.[1] ?? "?";
  const librdkafka = probe.stdout.match(/librdkafka (\d\S*)/)?.[1];
  return `kcat ${kcat}${librdkafka ? ` (librdkafka ${librdkafka})` : ""}`;
}

/** The same events producer.ts makes, as `key<TAB>value` lines for kcat -K '\t'. */
function kcatInput(messages: number, payloadBytes: number): string {
  const createdAt = new Date().toISOString();
  const lines: string[] = [];
  for (let n = 0; n < messages; n++) {
    const id = `raw-kcat-${n}`;
    const username = `user_${n}`;
    const event = { id, email: `${username}@example.com`, username, createdAt };
    const bare = JSON.stringify(event);
    const padding = Math.max(0, payloadBytes - bare.length - 13);
    lines.push(
      `${id}\t${padding > 0 ? JSON.stringify({ ...event, padding: "x".repeat(padding) }) : bare}`,
    );
  }
  return `${lines.join("\n")}\n`;
}

interface Timed extends RunResult {
  /** ms from start to the line saying the work is done, or to the exit */
  doneMs: number;
}

/**
 * Waits for a child, killing it after ten minutes; times it to the first line matching
 * `doneLine`, else to its exit. A KafkaJS consumer leaving its group waits out a fetch
 * in progress (maxWaitTimeInMs, 5 s by default): that is not consuming.
 */
async function timed(script: RunningScript, doneLine?: RegExp): Promise<Timed> {
  const startedAt = Date.now();
  const watchdog = setTimeout(() => script.child.kill("SIGKILL"), 10 * 60_000);
  try {
    const doneAt = doneLine
      ? await script.waitForLine(doneLine, 10 * 60_000).then(
          () => Date.now(),
          () => undefined,
        )
      : undefined;
    const result = await script.done;
    return { ...result, doneMs: doneAt === undefined ? result.durationMs : doneAt - startedAt };
  } finally {
    clearTimeout(watchdog);
  }
}

function measurement(tool: string, messages: number, run: Timed): Measurement {
  const reported = Number(run.summary?.ratePerSec);
  return {
    tool,
    messages,
    wallMs: run.doneMs,
    exitMs: run.durationMs,
    ratePerSec: Math.round((messages * 1_000) / run.doneMs),
    reportedRatePerSec: Number.isFinite(reported) ? reported : null,
    peakRssMb: Math.round(run.observedPeakRssMb),
    exitCode: run.code,
  };
}

function log(message: string) {
  console.log(`[raw-speed ${new Date().toISOString().slice(11, 19)}] ${message}`);
}

if (import.meta.main) await main();
