// Runs a project script as a real child process on a chosen runtime and watches it
// from outside: stdout/stderr lines, and resident memory read from /proc/<pid>/status
// (VmRSS now, VmHWM the kernel's own high-water mark), so a script cannot pass a
// memory test by misreporting itself.
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { projectRoot } from "../../scripts/kafka-jvm.ts";
import { type Runtime, runtimeCommand } from "../../scripts/runtimes.ts";

export interface MemorySample {
  /** ms since the child started */
  atMs: number;
  rssMb: number;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** highest resident set size seen from outside (VmHWM at the last sample), MB */
  observedPeakRssMb: number;
  samples: MemorySample[];
  durationMs: number;
  /** the script's last stdout line that parses as a JSON object, if any */
  summary: Record<string, unknown> | undefined;
  /** the harness sent SIGTERM because `stopWhen` was met */
  stoppedWhenMet: boolean;
}

export interface StartOptions {
  env?: Record<string, string | undefined>;
  args?: string[];
  cwd?: string;
  sampleEveryMs?: number;
  /** wraps the command, e.g. to run it inside a cgroup: (cmd, args) => [cmd2, args2] */
  wrap?: (command: string, args: string[]) => [string, string[]];
  /** called with every complete line the child writes */
  onLine?: (line: string, stream: "stdout" | "stderr") => void;
  /**
   * Ends the run from outside: polled every 250 ms while the child runs; once it is met
   * (judged by evidence outside the script, such as the broker's committed offsets), the
   * child gets SIGTERM, so every such run also exercises the graceful shutdown.
   */
  stopWhen?: StopCondition;
}

/** Something outside a consumer that says it has caught up. */
export interface StopCondition {
  met(): Promise<boolean>;
  /** releases what `met` holds open (a Kafka admin client, …) */
  close?(): Promise<void>;
}

export interface RunningScript {
  child: ChildProcess;
  pid: number;
  /** resolves with the first stdout/stderr line matching, rejects if the child ends first */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** resolves when the child has exited */
  done: Promise<RunResult>;
}

const mb = 1024 * 1024;

/** Resident memory of a live process from /proc, in MB; undefined once it is gone. */
export function readProcMemory(pid: number): { rssMb: number; hwmMb: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (field: string) =>
      Number(status.match(new RegExp(`^${field}:\\s+(\\d+) kB`, "m"))?.[1]);
    const rss = kb("VmRSS");
    const hwm = kb("VmHWM");
    if (Number.isNaN(rss) || Number.isNaN(hwm)) return undefined; // a zombie has no memory lines
    return { rssMb: (rss * 1024) / mb, hwmMb: (hwm * 1024) / mb };
  } catch {
    return undefined;
  }
}

export function lastJsonLine(text: string): Record<string, unknown> | undefined {
  const lines = text.trimEnd().split("\n").reverse();
  for (const line of lines) {
    const trimmed = line.trim();
    if (!trimmed.startsWith("{")) continue;
    try {
      const value = JSON.parse(trimmed) as unknown;
      if (value && typeof value === "object" && !Array.isArray(value)) {
        return value as Record<string, unknown>;
      }
    } catch {
      // a status line that happens to start with "{": keep looking
    }
  }
  return undefined;
}

/**
 * Children still running when this process ends (a test run cut short by `--bail`, an
 * abort, a crash) are killed with it, so no mock API or consumer outlives the run.
 * Vitest ends its workers with SIGTERM, which skips "exit" handlers: on SIGTERM, unless
 * the program has its own handler (the demo and the benchmarks stop theirs gracefully),
 * kill them and end as SIGTERM would have.
 */
const shared = globalThis as { runningChildren?: Set<ChildProcess> };
// One set per process, however often a test runner loads this module.
shared.runningChildren ??= killedOnExit(new Set<ChildProcess>());
const running = shared.runningChildren;

function killedOnExit(children: Set<ChildProcess>): Set<ChildProcess> {
  const killAll = () => {
    for (const child of children) child.kill("SIGKILL");
  };
  process.once("exit", killAll);
  process.once("SIGTERM", () => {
    if (process.listenerCount("SIGTERM") > 0) return;
    killAll();
    process.kill(process.pid, "SIGTERM");
  });
  return children;
}

/** Starts `script` (a path relative to the project root) on `runtime`. */
export function startScript(runtime: Runtime, script: string, options: StartOptions = {}) {
  const { command, args } = runtimeCommand(runtime, join(projectRoot, script), options.args ?? []);
  return startCommand(command, args, options);
}

export function startCommand(program: string, programArgs: string[], options: StartOptions = {}) {
  const [command, args] = options.wrap
    ? options.wrap(program, programArgs)
    : [program, programArgs];
  const started = Date.now();
  const child = spawn(command, args, {
    cwd: options.cwd ?? projectRoot,
    env: childEnv(options.env),
    stdio: ["ignore", "pipe", "pipe"],
  });
  if (child.pid === undefined) throw new Error(`could not start ${command}`);
  const pid = child.pid;
  running.add(child);
  child.once("exit", () => running.delete(child));
  let stdout = "";
  let stderr = "";
  const waiters = new Set<{ pattern: RegExp; resolve: (line: string) => void }>();
  const partial = { stdout: "", stderr: "" };
  const onText = (chunk: Buffer, into: "stdout" | "stderr") => {
    const text = chunk.toString("utf8");
    if (into === "stdout") stdout += text;
    else stderr += text;
    // Match whole lines only: a chunk may end in the middle of one.
    const lines = (partial[into] + text).split("\n");
    partial[into] = lines.pop() ?? "";
    for (const line of lines) {
      options.onLine?.(line, into);
      for (const waiter of waiters) {
        if (waiter.pattern.test(line)) {
          waiters.delete(waiter);
          waiter.resolve(line);
        }
      }
    }
  };
  child.stdout?.on("data", (chunk: Buffer) => onText(chunk, "stdout"));
  child.stderr?.on("data", (chunk: Buffer) => onText(chunk, "stderr"));

  const samples: MemorySample[] = [];
  let observedPeakRssMb = 0;
  const sample = () => {
    const memory = readProcMemory(pid);
    if (!memory) return;
    samples.push({ atMs: Date.now() - started, rssMb: memory.rssMb });
    observedPeakRssMb = Math.max(observedPeakRssMb, memory.hwmMb, memory.rssMb);
  };
  sample();
  const sampler = setInterval(sample, options.sampleEveryMs ?? 50);

  let stoppedWhenMet = false;
  const done = new Promise<RunResult>((resolve, reject) => {
    child.once("error", (error) => {
      clearInterval(sampler);
      reject(error);
    });
    child.once("close", (code, signal) => {
      clearInterval(sampler);
      resolve({
        code,
        signal,
        stdout,
        stderr,
        observedPeakRssMb,
        samples,
        durationMs: Date.now() - started,
        summary: lastJsonLine(stdout),
        stoppedWhenMet,
      });
    });
  });
  if (options.stopWhen) {
    const condition = options.stopWhen;
    void (async () => {
      const running = () => child.exitCode === null && child.signalCode === null;
      while (running()) {
        await new Promise((resolve) => setTimeout(resolve, 250)); // polling, not readiness
        // A failed check (the broker busy, the API frozen by a test) counts as not met yet.
        if (running() && (await condition.met().catch(() => false)) && running()) {
          stoppedWhenMet = true;
          child.kill("SIGTERM");
          break;
        }
      }
      await condition.close?.().catch(() => {});
    })();
  }

  const waitForLine = (pattern: RegExp, timeoutMs = 60_000) =>
    new Promise<string>((resolve, reject) => {
      const seen = `${stdout}\n${stderr}`.split("\n").find((line) => pattern.test(line));
      if (seen !== undefined) return resolve(seen);
      const timer = setTimeout(() => {
        waiters.delete(waiter);
        reject(
          new Error(`no line matching ${pattern} within ${timeoutMs} ms\n${stdout}\n${stderr}`),
        );
      }, timeoutMs);
      const waiter = {
        pattern,
        resolve: (line: string) => {
          clearTimeout(timer);
          resolve(line);
        },
      };
      waiters.add(waiter);
      void done.then((result) => {
        if (!waiters.has(waiter)) return;
        waiters.delete(waiter);
        clearTimeout(timer);
        reject(
          new Error(
            `exited (code ${result.code}, signal ${result.signal}) before a line matching ${pattern}\n${result.stdout}\n${result.stderr}`,
          ),
        );
      });
    });

  return { child, pid, waitForLine, done } satisfies RunningScript;
}

/**
 * The child's environment: ours, without what vitest adds (NODE_ENV=test makes KafkaJS
 * shorten its retries, so a script would behave unlike its users' runs), plus `extra`.
 */
function childEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: "1", FORCE_COLOR: "0" };
  delete env.NODE_ENV;
  delete env.VITEST;
  delete env.VITEST_POOL_ID;
  delete env.VITEST_WORKER_ID;
  for (const [name, value] of Object.entries(extra)) {
    if (value === undefined) delete env[name];
    else env[name] = value;
  }
  return env;
}

/** Runs a script to its end. */
export async function runScript(runtime: Runtime, script: string, options: StartOptions = {}) {
  return await startScript(runtime, script, options).done;
}

/**
 * Polls `check` every `everyMs` until it returns something other than undefined (a
 * rejection counts as not yet), and resolves with it; rejects after `timeoutMs`,
 * saying what was awaited.
 */
export async function until<T>(
  check: () => Promise<T | undefined>,
  what: string,
  { timeoutMs = 60_000, everyMs = 100 } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = await check().catch(() => undefined);
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
