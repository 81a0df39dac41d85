// The Prometheus text format judged by Prometheus's own code, not ours: the official
// Python client's parser (Debian's python3-prometheus-client) reads every scrape, and
// promtool (Debian's prometheus) lints names, units, HELP and TYPE. .ci/run installs
// both; where they are missing a test skips with the reason, or fails under
// REQUIRE_CGROUPS=1 or CI=true, so CI cannot pass without them.
import { execFile, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { get } from "node:http";
import { promisify } from "node:util";
import { cgroupsRequired } from "./cgroups.ts";

const run = promisify(execFile);
/** Debian's Python: the one python3-prometheus-client installs into. */
const python = existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
const install = "apt-get install -y python3-prometheus-client prometheus";

/** Why the tools cannot be used here, or undefined when both answer. */
export function prometheusToolsMissing(): string | undefined {
  const parser = spawnSync(python, ["-c", "import prometheus_client.parser"]);
  if (parser.status !== 0) return `no prometheus_client for ${python} (${install})`;
  const promtool = spawnSync("promtool", ["--version"]);
  if (promtool.status !== 0) return `no promtool on PATH (${install})`;
  return undefined;
}

/** Skip (with the reason) where the tools are missing; under CI or REQUIRE_CGROUPS=1, throw. */
export function skipWithoutPrometheusTools(what: string): boolean {
  const missing = prometheusToolsMissing();
  if (!missing) return false;
  if (cgroupsRequired() || process.env.CI === "true") {
    throw new Error(`${what} cannot run: ${missing}, and CI forbids skipping it`);
  }
  console.warn(`[${what}] skipped: ${missing}`);
  return true;
}

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** A metric family as prometheus_client's parser returns it (counters lose `_total`). */
export interface Family {
  name: string;
  type: string;
  help: string;
  samples: Sample[];
}

const parseAll = `
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for text in json.load(sys.stdin):
    out.append([
        {"name": f.name, "type": f.type, "help": f.documentation,
         "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples]}
        for f in text_string_to_metric_families(text)
    ])
json.dump(out, sys.stdout)
`;

/** Parses each exposition with prometheus_client; rejects if any one is malformed. */
export async function parseExpositions(texts: string[]): Promise<Family[][]> {
  const child = execFile(python, ["-c", parseAll], { maxBuffer: 256 * 2 ** 20 });
  const output = new Promise<string>((resolve, reject) => {
    let stdout = "";
    let stderr = "";
    child.stdout?.on("data", (chunk: string) => (stdout += chunk));
    child.stderr?.on("data", (chunk: string) => (stderr += chunk));
    child.once("error", reject);
    child.once("close", (code) =>
      code === 0 ? resolve(stdout) : reject(new Error(`prometheus_client: ${stderr}`)),
    );
  });
  child.stdin?.end(JSON.stringify(texts));
  return JSON.parse(await output) as Family[][];
}

/** promtool check metrics: its complaints (names, units, HELP/TYPE), empty if none. */
export async function promtoolProblems(text: string): Promise<string> {
  const child = execFile("promtool", ["check", "metrics"]);
  const said = new Promise<string>((resolve) => {
    let output = "";
    child.stdout?.on("data", (chunk: string) => (output += chunk));
    child.stderr?.on("data", (chunk: string) => (output += chunk));
    child.once("close", (code) => resolve(code === 0 ? output : `exit ${code}: ${output}`));
  });
  child.stdin?.end(text);
  return (await said).trim();
}

/** promtool's own check of a rules file (PromQL syntax, labels, durations). */
export async function promtoolCheckRules(file: string): Promise<void> {
  await run("promtool", ["check", "rules", file]);
}

/** The value of `name`'s sample with these labels, if the family has one. */
export function sampleValue(
  families: Family[],
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  for (const family of families) {
    for (const sample of family.samples) {
      if (sample.name !== name) continue;
      if (Object.entries(labels).every(([key, value]) => sample.labels[key] === value)) {
        return sample.value;
      }
    }
  }
  return undefined;
}

/** Every sample of `name`, by its `partition` label. */
export function byPartition(families: Family[], name: string): Map<number, number> {
  const found = new Map<number, number>();
  for (const family of families) {
    for (const sample of family.samples) {
      if (sample.name === name) found.set(Number(sample.labels.partition), sample.value);
    }
  }
  return found;
}

export interface Answer {
  status: number;
  body: string;
  /** from the request to the whole answer, measured here */
  ms: number;
}

/**
 * One GET on a fresh connection, as the kubelet probes and Prometheus scrapes; rejects
 * if nothing answers within `timeoutMs`.
 */
export function httpGet(url: string, timeoutMs = 5_000): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const request = get(url, { agent: false, timeout: timeoutMs }, (response) => {
      let body = "";
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => (body += chunk));
      response.on("end", () =>
        resolve({ status: response.statusCode ?? 0, body, ms: performance.now() - started }),
      );
    });
    request.on("timeout", () => request.destroy(new Error(`${url}: no answer in ${timeoutMs} ms`)));
    request.on("error", reject);
  });
}

export interface Scrape {
  /** ms since the scraper started */
  atMs: number;
  text: string;
}

/**
 * Scrapes `url` every `everyMs` until stopped, keeping each answer; a refused connection
 * (the listener not up yet, or gone) is not kept.
 */
export function scrapeEvery(url: string, everyMs: number) {
  const scrapes: Scrape[] = [];
  const started = performance.now();
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const answer = await httpGet(url, 2_000).catch(() => undefined);
      if (answer?.status === 200) {
        scrapes.push({ atMs: performance.now() - started, text: answer.body });
      }
      await new Promise((resolve) => setTimeout(resolve, everyMs));
    }
  })();
  return {
    scrapes,
    /** the latest answer, scraped now (kept with the others) */
    async now(): Promise<string | undefined> {
      const answer = await httpGet(url, 2_000).catch(() => undefined);
      if (answer?.status !== 200) return undefined;
      scrapes.push({ atMs: performance.now() - started, text: answer.body });
      return answer.body;
    },
    async stop() {
      stopped = true;
      await loop;
    },
  };
}
