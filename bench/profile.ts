/**
 * bench/profile.ts: where the solved consumer's CPU goes, on Node, in a pod. Runs
 * SCRIPT under V8's sampling profiler (--cpu-prof) in a POD_MB memory cgroup until the
 * API has answered a backlog of SIZE_KB messages (20 times the byte cap, at most 20,000),
 * then sums the profile's self time by part: garbage collection, KafkaJS, the HTTP
 * client (undici for fetch, node:http), the script itself, the rest of Node's own code,
 * built-ins and V8 outside JavaScript ("program"); then the functions with the most
 * self time. Prints Markdown tables; idle time is left out.
 *
 *   node bench/profile.ts
 *   git show 2e46ab7:consumer-solved.ts > before.ts && SCRIPT=before.ts node bench/profile.ts
 *   (an older version, copied into the project so that it finds kafkajs)
 *
 * Options (flag --name=value or environment variable):
 *   SCRIPT       the consumer to profile                 [consumer-solved.ts]
 *   SIZE_KB      message size in KB                      [64]
 *   POD_MB       the memory cgroup's limit (0: no limit)  [256]
 *   LATENCY_MS   the API's latency                       [100]
 */
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join, resolve } from "node:path";
import { acquireBroker } from "../scripts/broker.ts";
import { createCgroup } from "../scripts/cgroup.ts";
import { projectRoot } from "../scripts/kafka-jvm.ts";
import { runtimeBinary } from "../scripts/runtimes.ts";
import { startCommand } from "../tests/support/child.ts";
import { uniqueName } from "../tests/support/kafka.ts";
import { backlogOf } from "../tests/support/pod.ts";
import {
  answered,
  busyMedianRate,
  consumerEnv,
  produce,
  startMockApi,
} from "../tests/support/services.ts";
import { fmt, markdownTable, numberOption, option, printedHelp } from "./harness.ts";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** The part of the program a sampled frame belongs to. */
function partOf({ functionName, url }: ProfileNode["callFrame"], script: string): string {
  if (functionName === "(garbage collector)") return "garbage collection";
  if (functionName === "(idle)") return "idle";
  if (functionName === "(program)") return "V8 and native code outside JavaScript";
  if (url.includes("/kafkajs/")) return "KafkaJS";
  if (/undici|_http_|node:http|node:https|node:net|node:_tls|node:tls/.test(url)) {
    return "HTTP client (undici or node:http, sockets)";
  }
  if (url.endsWith(script)) return `${script} itself`;
  if (url.startsWith("node:")) return "Node's own JavaScript (streams, timers, buffers...)";
  if (url === "") return "built-ins (JSON, typed arrays, promises)";
  return "other";
}

/** Self time in ms by part and by function, from the samples and the time between them. */
function selfTime(profile: CpuProfile, script: string) {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const [parts, functions] = [new Map<string, number>(), new Map<string, number>()];
  const add = (map: Map<string, number>, key: string, ms: number) =>
    map.set(key, (map.get(key) ?? 0) + ms);
  profile.samples.forEach((id, i) => {
    const node = byId.get(id);
    if (!node) return;
    const ms = (profile.timeDeltas[i] ?? 0) / 1_000;
    const part = partOf(node.callFrame, script);
    const { functionName, url } = node.callFrame;
    add(parts, part, ms);
    add(functions, `${functionName || "(anonymous)"} ${basename(url) || "(built-in)"}`, ms);
  });
  return { parts, functions };
}

async function main() {
  if (printedHelp(import.meta.url)) return;
  const script = resolve(projectRoot, option("SCRIPT", "consumer-solved.ts"));
  const sizeKb = numberOption("SIZE_KB", 64);
  const podMb = numberOption("POD_MB", 256);
  const latencyMs = numberOption("LATENCY_MS", 100);
  const broker = await acquireBroker();
  const api = await startMockApi({ LATENCY_MS: String(latencyMs), JITTER_MS: "10" });
  const dir = await mkdtemp(join(tmpdir(), "kbp-profile-"));
  const cgroup =
    podMb > 0 ? await createCgroup({ memoryLimitMb: podMb, name: "profile" }) : undefined;
  try {
    const messages = backlogOf(sizeKb * 1_024);
    const topic = uniqueName(`profile-${sizeKb}k`);
    await produce(broker.brokers, topic, { messages, payloadBytes: sizeKb * 1_024 });
    const run = await startCommand(runtimeBinary("node"), [script], {
      env: consumerEnv(broker.brokers, topic, `${topic}-profile`, {
        API_URL: api.usersUrl,
        NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${dir}`,
        ...(podMb > 0 ? {} : { MEMORY_LIMIT_MB: "0" }), // no pod: no limit at all
      }),
      wrap: cgroup?.wrap,
      stopWhen: answered(api, messages),
    }).done;
    if (run.code !== 0) {
      throw new Error(`exit ${run.code}: ${run.stdout.slice(-500)}${run.stderr.slice(-1_000)}`);
    }
    const [file] = (await readdir(dir)).filter((name) => name.endsWith(".cpuprofile"));
    if (!file) throw new Error(`no profile written in ${dir}`);
    const profile = JSON.parse(await readFile(join(dir, file), "utf8")) as CpuProfile;
    const { parts, functions } = selfTime(profile, basename(script));
    parts.delete("idle");
    functions.delete("(idle) (built-in)");
    const busyMs = [...parts.values()].reduce((sum, ms) => sum + ms, 0);
    const rows = [...parts.entries()]
      .sort(([, a], [, b]) => b - a)
      .map(([part, ms]) => [part, fmt(ms), `${fmt((100 * ms) / busyMs)} %`, fmt(ms / messages, 2)]);
    const rate = busyMedianRate(await api.timeline());
    const where = podMb > 0 ? `a ${podMb} MB pod` : "no pod";
    console.log(
      `${basename(script)} on Node, ${fmt(messages)} messages of ${sizeKb} KB, API ${latencyMs} ms, in ${where}: steady ${fmt(rate)} msg/s, ${fmt(busyMs)} ms of CPU on the main thread (${fmt(busyMs / messages, 2)} ms per message).\n`,
    );
    console.log(
      markdownTable(
        ["part", "CPU ms", "share", "ms per message"],
        [...rows, ["all", fmt(busyMs), "100 %", fmt(busyMs / messages, 2)]],
        ["l", "r", "r", "r"],
      ),
    );
    const top = [...functions.entries()].sort(([, a], [, b]) => b - a).slice(0, 12);
    console.log(`\nThe ${top.length} functions with the most self time:\n`);
    console.log(
      markdownTable(
        ["function, file", "CPU ms", "share"],
        top.map(([name, ms]) => [name, fmt(ms), `${fmt((100 * ms) / busyMs)} %`]),
        ["l", "r", "r"],
      ),
    );
  } finally {
    await cgroup?.remove();
    await api.stop();
    await broker.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) await main();
