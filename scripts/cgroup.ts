// Runs a child process inside a fresh Linux memory cgroup (and optionally a CPU quota),
// the way a Kubernetes pod limit does, so a test sees what the kernel does at the limit:
// the OOM killer, not a polite heap error. Supports a pure cgroup v2 hierarchy at
// /sys/fs/cgroup and the v1 per-controller mounts (/sys/fs/cgroup/memory, .../cpu).
import { createHash } from "node:crypto";
import { closeSync, existsSync, openSync, readFileSync, readSync } from "node:fs";
import { mkdir, readdir, readFile, rmdir, writeFile } from "node:fs/promises";
import { dirname, isAbsolute, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

/** `cpu`: a CPU quota can be set too; `peak`: where the peak comes from (see PeakSource). */
export type CgroupSupport =
  | { ok: true; version: 1 | 2; cpu: boolean; peak: PeakSource }
  | { ok: false; reason: string };

export interface CgroupOptions {
  /** a label appended to the unique name, e.g. the test's */
  name?: string;
  memoryLimitMb: number;
  /** CPU cores, e.g. 0.5 for half of one */
  cpuQuota?: number;
  /** sample the usage for the peak even where the kernel keeps one (to test the fallback) */
  samplePeak?: boolean;
}

/**
 * The kernel's own high-water mark (memory.peak on v2, Linux 5.19+;
 * memory.max_usage_in_bytes on v1), or, where there is none, the highest of
 * memory.current readings taken every few milliseconds while the cgroup lives.
 */
export type PeakSource = "memory.peak" | "memory.max_usage_in_bytes" | "sampled usage";

/** `peakMb`: the high-water mark, from `peakSource`; `oomKills` counts the OOM killer's kills. */
export type CgroupStats = {
  peakMb: number;
  peakSource: PeakSource;
  oomKills: number;
  limitMb: number;
};

/** From cpu.stat: scheduler periods, how many of them hit the quota, time held back. */
export type CpuStats = { periods: number; throttled: number; throttledMs: number };

export interface Cgroup {
  name: string;
  version: 1 | 2;
  /** the cgroup's directories: one on v2; memory (and cpu) on v1 */
  paths: string[];
  /** (command, args) → a shell that joins the cgroup, then execs the command in place */
  wrap(command: string, args: string[]): [string, string[]];
  /** read before remove(): the files go with the cgroup */
  stats(): Promise<CgroupStats>;
  cpuStats(): Promise<CpuStats>;
  /** kills whatever is still inside and removes the cgroup; safe to call again */
  remove(): Promise<void>;
}

const root = "/sys/fs/cgroup";
/**
 * One parent per checkout: `cleanup` (and a leak found by a test) removes what this
 * checkout made, never the cgroups of another checkout's run on the same machine.
 */
const checkout = new URL("..", import.meta.url).pathname;
export const parentName = `kafka-backpressure-${createHash("sha256").update(checkout).digest("hex").slice(0, 8)}`;
const mb = 1024 * 1024;
const periodUs = 100_000;
let counter = 0;

/** A file in a cgroup and what to write to it. */
type Knob = [file: string, value: string];

// The same knobs under their v1 and v2 names.
const files = {
  1: {
    limit: "memory.limit_in_bytes",
    peak: "memory.max_usage_in_bytes",
    usage: "memory.usage_in_bytes",
    events: "memory.oom_control",
    swap: (bytes: number): Knob => ["memory.memsw.limit_in_bytes", String(bytes)],
    cpu: (quotaUs: number): Knob => ["cpu.cfs_quota_us", String(quotaUs)],
    weight: ["cpu.shares", String(8 * 1024)] as Knob, // the default is 1024
    throttledMs: (stat: string) => field(stat, "throttled_time") / 1e6,
  },
  2: {
    limit: "memory.max",
    peak: "memory.peak", // Linux 5.19+; else createCgroup samples `usage`
    usage: "memory.current",
    events: "memory.events",
    swap: (): Knob => ["memory.swap.max", "0"],
    cpu: (quotaUs: number): Knob => ["cpu.max", `${quotaUs} ${periodUs}`],
    weight: ["cpu.weight", "800"] as Knob, // the default is 100
    throttledMs: (stat: string) => field(stat, "throttled_usec") / 1e3,
  },
} as const;

type Layout = { version: 1 | 2; memory: string; cpu: string };

function detect(): Layout | string {
  if (process.platform !== "linux") return `cgroups are Linux only (this is ${process.platform})`;
  const v2 = join(root, "cgroup.controllers");
  if (existsSync(v2) && /\bmemory\b/.test(readFileSync(v2, "utf8"))) {
    return { version: 2, memory: root, cpu: root };
  }
  if (existsSync(join(root, "memory", "memory.limit_in_bytes"))) {
    return { version: 1, memory: join(root, "memory"), cpu: join(root, "cpu") };
  }
  return `no memory controller: neither cgroup v2 with "memory" at ${root} nor v1 at ${root}/memory`;
}

function field(text: string, key: string): number {
  const value = text.match(new RegExp(`^${key} (\\d+)$`, "m"))?.[1];
  if (value === undefined) throw new Error(`no "${key}" in:\n${text}`);
  return Number(value);
}

/**
 * Reads a file through once, from outside any test cgroup, so that its pages are in the
 * page cache before a process in a cgroup maps them. The kernel charges a clean file page
 * to the cgroup that first faults it in, and this machine drops cold pages on its own
 * (DAMON reclaim). `consumer-solved.ts --help` in a fresh cgroup after the cache was
 * dropped peaked 99 MB higher on Deno and Bun, 27 MB on Node, than warm: pages the kernel
 * would drop again before any OOM kill, not the consumer's memory (a Deno pod in
 * bench/sizes.ts peaked at 191 MB of the 192 the tests allow). With this read first:
 * 12, 2 and 3 MB. On a node that runs an image, its binary is in the cache likewise.
 * Only for an absolute path (the runtimes' binaries).
 */
function readIntoPageCache(path: string): void {
  if (!isAbsolute(path) || !existsSync(path)) return;
  const chunk = Buffer.allocUnsafe(2 ** 20);
  const fd = openSync(path, "r");
  try {
    while (readSync(fd, chunk, 0, chunk.length, null) > 0) {}
  } finally {
    closeSync(fd);
  }
}

export async function createCgroup(options: CgroupOptions): Promise<Cgroup> {
  const layout = detect();
  if (typeof layout === "string") throw new Error(layout);
  const { version } = layout;
  const knobs = files[version];
  const label = options.name ? `-${options.name.replace(/[^\w.-]/g, "-")}` : "";
  const name = `kbp-${process.pid}-${++counter}${label}`;
  const withCpu = options.cpuQuota !== undefined;
  const memory = join(layout.memory, parentName, name);
  const cpu = join(layout.cpu, parentName, name);
  const paths = [...new Set(withCpu ? [memory, cpu] : [memory])];
  const parents = [...new Set(paths.map((path) => dirname(path)))];
  for (const parent of parents) await mkdir(parent, { recursive: true });
  if (version === 2) {
    // A v2 cgroup gets a controller only if every ancestor enabled it for its subtree.
    for (const dir of [root, ...parents]) {
      const control = join(dir, "cgroup.subtree_control");
      await writeFile(control, "+memory");
      if (withCpu) await writeFile(control, "+cpu");
    }
  }
  for (const path of paths) await mkdir(path);

  const read = (dir: string, file: string) => readFile(join(dir, file), "utf8");
  // No high-water mark kept by this kernel (v2 before 5.19): sample the usage instead,
  // often, from creation to removal, rather than give up on the cgroup.
  const sampled = options.samplePeak === true || !existsSync(join(memory, knobs.peak));
  const peakSource: PeakSource = sampled ? "sampled usage" : knobs.peak;
  let sampledPeak = 0;
  const sampleUsage = () => {
    try {
      sampledPeak = Math.max(sampledPeak, Number(readFileSync(join(memory, knobs.usage), "utf8")));
    } catch {} // removed under us: the last reading stands
  };
  const sampler = sampled ? setInterval(sampleUsage, 5) : undefined;
  sampler?.unref();
  let removed: Promise<void> | undefined;
  const cgroup: Cgroup = {
    name,
    version,
    paths,
    wrap(command, args) {
      readIntoPageCache(command);
      const enter = paths.map((path) => `echo $$ > '${path}/cgroup.procs'`).join(" && ");
      return ["/bin/sh", ["-c", `${enter} && exec "$0" "$@"`, command, ...args]];
    },
    async stats() {
      if (sampled) sampleUsage();
      const peak = sampled ? sampledPeak : Number(await read(memory, knobs.peak));
      return {
        peakMb: peak / mb,
        peakSource,
        oomKills: field(await read(memory, knobs.events), "oom_kill"),
        limitMb: Number(await read(memory, knobs.limit)) / mb,
      };
    },
    async cpuStats() {
      if (!withCpu) throw new Error(`cgroup ${name} has no CPU quota`);
      const stat = await read(cpu, "cpu.stat");
      const [periods, throttled] = [field(stat, "nr_periods"), field(stat, "nr_throttled")];
      return { periods, throttled, throttledMs: knobs.throttledMs(stat) };
    },
    remove() {
      clearInterval(sampler);
      removed ??= Promise.all(paths.map((path) => removeCgroupDir(path))).then(() => {});
      return removed;
    },
  };
  try {
    const bytes = Math.round(options.memoryLimitMb * mb);
    await writeFile(join(memory, knobs.limit), String(bytes));
    // No swap, like a pod: else the kernel swaps at the limit instead of killing. Best
    // effort: the file is missing where swap accounting is off.
    const [swapFile, swapValue] = knobs.swap(bytes);
    await writeFile(join(memory, swapFile), swapValue).catch(() => {});
    if (options.cpuQuota !== undefined) {
      const [file, value] = knobs.cpu(Math.round(options.cpuQuota * periodUs));
      await writeFile(join(cpu, file), value);
      // A weight 8 times the default, here and on the parent, as a pod's CPU request gives
      // it: on a busy machine (every child its own session, each weighed alike) it still
      // gets its quota, so the quota, not the neighbours, is what holds it back.
      for (const dir of [dirname(cpu), cpu])
        await writeFile(join(dir, knobs.weight[0]), knobs.weight[1]);
    }
  } catch (error) {
    await cgroup.remove();
    throw error;
  }
  return cgroup;
}

const errorCode = (error: unknown) => (error as NodeJS.ErrnoException).code;

/** SIGKILLs everything in the cgroup until it is empty, then removes it. */
async function removeCgroupDir(path: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const procs = await readFile(join(path, "cgroup.procs"), "utf8").catch((error: unknown) => {
      if (errorCode(error) === "ENOENT") return undefined; // already removed
      throw error;
    });
    if (procs === undefined) return;
    for (const pid of procs.split("\n").filter(Boolean)) {
      try {
        process.kill(Number(pid), "SIGKILL");
      } catch {} // exited between the read and the kill
    }
    try {
      return await rmdir(path);
    } catch (error) {
      // EBUSY: a killed process is still on its way out.
      if (errorCode(error) === "ENOENT") return;
      if (errorCode(error) !== "EBUSY" || Date.now() > deadline) {
        throw new Error(`could not remove cgroup ${path}: ${String(error)}; procs: ${procs}`);
      }
    }
    await sleep(20);
  }
}

function parentDirs(): string[] {
  const layout = detect();
  if (typeof layout === "string") return [];
  return [...new Set([layout.memory, layout.cpu])].map((base) => join(base, parentName));
}

/** Every cgroup this project made, e.g. ones a crashed test run left behind. */
export async function listCgroups(): Promise<string[]> {
  const listed = await Promise.all(
    parentDirs().map(async (dir) => {
      const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
      return entries.filter((entry) => entry.isDirectory()).map((entry) => join(dir, entry.name));
    }),
  );
  return listed.flat();
}

/**
 * Removes the cgroups under this checkout's parent that `only` picks (all by default),
 * killing what runs there, then the parent if it is empty.
 */
export async function removeLeftoverCgroups(only = (_path: string) => true): Promise<string[]> {
  const leftovers = (await listCgroups()).filter(only);
  for (const path of leftovers) await removeCgroupDir(path);
  for (const dir of parentDirs()) await rmdir(dir).catch(() => {});
  return leftovers;
}

/** Whether cgroups work here, by creating and removing a probe; says plainly why not. */
export async function cgroupSupport(): Promise<CgroupSupport> {
  const layout = detect();
  if (typeof layout === "string") return { ok: false, reason: layout };
  const probe = async (cpuQuota?: number) => {
    const cgroup = await createCgroup({ name: "probe", memoryLimitMb: 64, cpuQuota });
    try {
      const { peakSource } = await cgroup.stats();
      if (cpuQuota !== undefined) await cgroup.cpuStats();
      return peakSource;
    } finally {
      await cgroup.remove();
    }
  };
  let peak: PeakSource;
  try {
    peak = await probe();
  } catch (error) {
    const denied = `not permitted to create cgroups (uid ${process.getuid?.()}; needs root or delegation)`;
    const reasons: Record<string, string> = {
      EACCES: denied,
      EPERM: denied,
      EROFS: `${root} is read-only (a container without a writable cgroup mount)`,
      // cgroup v2's no-internal-processes rule: a cgroup with processes cannot delegate.
      EBUSY: `cannot enable the memory controller below ${root}: it has processes of its own`,
    };
    const reason = reasons[errorCode(error) ?? ""] ?? `no usable memory cgroup: ${String(error)}`;
    return { ok: false, reason };
  }
  const cpu = await probe(0.5)
    .then(() => true)
    .catch(() => false);
  return { ok: true, version: layout.version, cpu, peak };
}

/** True when the kernel's OOM killer ended the run: the kill count rose and it died by SIGKILL. */
export function oomKilled(
  result: { signal: string | null; code: number | null },
  stats: { oomKills: number },
  oomKillsBefore = 0,
): boolean {
  const sigkill = result.signal === "SIGKILL" || result.code === 137; // 128 + 9, via a shell
  return stats.oomKills > oomKillsBefore && sigkill;
}

if (import.meta.main) {
  const command = process.argv[2];
  if (command === "check") console.log(JSON.stringify(await cgroupSupport()));
  else if (command === "cleanup") {
    const removed = await removeLeftoverCgroups();
    console.log(removed.length ? `removed ${removed.join(", ")}` : "nothing to remove");
  } else {
    console.error("usage: node scripts/cgroup.ts check | cleanup");
    process.exitCode = 2;
  }
}
