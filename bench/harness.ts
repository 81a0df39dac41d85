// What bench/strategies.ts and bench/raw-speed.ts share: options from flags or the
// environment, the machine and runtime versions for the reports, Markdown tables, and
// the mock API's benchmark endpoints (tests/support/services.ts starts it).
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { type Runtime, runtimeBinary, runtimes } from "../scripts/runtimes.ts";

/**
 * An option from `--name=value` (name in lower case, dashes for underscores) or, failing
 * that, the environment variable NAME; `fallback` when neither is given.
 */
export function option(name: string, fallback: string): string {
  const flag = `--${name.toLowerCase().replaceAll("_", "-")}=`;
  const fromFlag = process.argv.find((arg) => arg.startsWith(flag))?.slice(flag.length);
  const value = fromFlag ?? process.env[name];
  return value === undefined || value.trim() === "" ? fallback : value.trim();
}

export function numberOption(name: string, fallback: number): number {
  const text = option(name, String(fallback));
  const value = Number(text.replaceAll("_", ""));
  if (!Number.isFinite(value) || value < 0) {
    console.error(`${name} must be a number of 0 or more, not "${text}"`);
    process.exit(2);
  }
  return value;
}

export function listOption(name: string, fallback: string): string[] {
  return option(name, fallback)
    .split(",")
    .map((item) => item.trim())
    .filter(Boolean);
}

export function runtimeList(values: string[]): Runtime[] {
  for (const value of values) {
    if (!(runtimes as readonly string[]).includes(value)) {
      console.error(`runtime must be one of ${runtimes.join(", ")}, not "${value}"`);
      process.exit(2);
    }
  }
  return values as Runtime[];
}

export interface Machine {
  cpus: number;
  cpuModel: string;
  memoryGb: number;
  kernel: string;
}

export function machine(): Machine {
  let cpuModel = cpus()[0]?.model ?? "unknown";
  try {
    const match = readFileSync("/proc/cpuinfo", "utf8").match(/^model name\s*:\s*(.+)$/m);
    if (match?.[1]) cpuModel = match[1].trim();
  } catch {
    // not Linux: os.cpus() it is
  }
  let kernel: string = process.platform;
  try {
    kernel = readFileSync("/proc/sys/kernel/osrelease", "utf8").trim();
  } catch {
    // not Linux
  }
  return {
    cpus: availableCpus(),
    cpuModel,
    memoryGb: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel,
  };
}

/** What `nproc` says: the CPUs this process may run on. */
function availableCpus(): number {
  try {
    return Number(execFileSync("nproc", { encoding: "utf8" }).trim());
  } catch {
    return cpus().length;
  }
}

/** The exact version (e.g. "24.21.0") of each runtime binary the runs use. */
export function runtimeVersions(): Record<Runtime, string> {
  const version = (runtime: Runtime) => {
    try {
      const out = execFileSync(runtimeBinary(runtime), ["--version"], { encoding: "utf8" });
      return out.match(/\d+\.\d+\.\d+\S*/)?.[0] ?? "?";
    } catch {
      return "not found";
    }
  };
  return { bun: version("bun"), deno: version("deno"), node: version("node") };
}

export function describeMachine(m: Machine): string {
  return `${m.cpus} CPUs (nproc), ${m.cpuModel}, ${m.memoryGb} GB RAM, Linux ${m.kernel}`;
}

/** YYYY-MM-DD in UTC, for file names. */
export function dateStamp(at = new Date()): string {
  return at.toISOString().slice(0, 10);
}

export function markdownTable(header: string[], rows: string[][], align?: ("l" | "r")[]): string {
  const rule = header.map((_, i) => (align?.[i] === "r" ? "---:" : "---"));
  return [header, rule, ...rows].map((cells) => `| ${cells.join(" | ")} |`).join("\n");
}

/** The nearest-rank percentile `p` (0-100) of `values`; null when there are none. */
export function percentile(values: number[], p: number): number | null {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length ? (sorted[Math.ceil((p / 100) * sorted.length) - 1] ?? null) : null;
}

/** The median by nearest rank (the lower middle value of an even count). */
export const median = (values: number[]) => percentile(values, 50);

export function fmt(n: number | null | undefined, digits = 0): string {
  if (n === null || n === undefined || Number.isNaN(n)) return "-";
  return n.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---- The mock API's benchmark endpoints ----

/** GET /latency: answered − the event's createdAt, ms, nearest rank */
export interface LatencyPercentiles {
  count: number;
  p50: number | null;
  p90: number | null;
  p99: number | null;
  max: number | null;
}

/** The mock API's base address from its POST /users address. */
export function apiBase(usersUrl: string): string {
  return usersUrl.replace(/\/users$/, "");
}

async function getJson<T>(url: string): Promise<T> {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return (await response.json()) as T;
}

export async function apiLatency(usersUrl: string): Promise<LatencyPercentiles> {
  return await getJson<LatencyPercentiles>(`${apiBase(usersUrl)}/latency`);
}

/** With --help, prints the file's header comment (its usage) and returns true. */
export function printedHelp(fileUrl: string): boolean {
  if (!process.argv.includes("--help") && !process.argv.includes("-h")) return false;
  const doc = readFileSync(new URL(fileUrl), "utf8");
  console.log(doc.slice(doc.indexOf("/**") + 3, doc.indexOf("*/")).replace(/^ \* ?/gm, ""));
  return true;
}
