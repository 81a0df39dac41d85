// The three runtimes the examples run on, as the exact binaries `npm ci` installed.
// Tests and the demo spawn these binaries directly (not the npm wrappers), so the pid
// they watch and signal is the runtime itself.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { projectRoot } from "./kafka-jvm.ts";

export const runtimes = ["bun", "deno", "node"] as const;
export type Runtime = (typeof runtimes)[number];

const require = createRequire(join(projectRoot, "package.json"));

function packageDir(name: string): string | undefined {
  try {
    return dirname(require.resolve(`${name}/package.json`));
  } catch {
    return undefined;
  }
}

function denoPlatformPackage(): string {
  const cpu = process.arch === "arm64" ? "arm64" : "x64";
  if (process.platform === "linux") return `@deno/linux-${cpu}-glibc`;
  if (process.platform === "darwin") return `@deno/darwin-${cpu}`;
  return `@deno/win32-${cpu}`;
}

/** The runtime's executable: the npm-installed one, else whatever PATH has. */
export function runtimeBinary(runtime: Runtime): string {
  const candidates: Record<Runtime, () => string | undefined> = {
    bun: () => {
      const dir = packageDir("bun");
      return dir && join(dir, "bin", "bun.exe");
    },
    deno: () => {
      const dir = packageDir(denoPlatformPackage());
      return dir && join(dir, process.platform === "win32" ? "deno.exe" : "deno");
    },
    node: () => {
      const dir = packageDir(`node-${process.platform}-${process.arch}`);
      return dir ? join(dir, "bin", "node") : process.execPath;
    },
  };
  const found = candidates[runtime]();
  return found && existsSync(found) ? found : runtime;
}

/** Command and arguments that run a .ts file on a runtime, as the README shows. */
export function runtimeCommand(runtime: Runtime, script: string, scriptArgs: string[] = []) {
  const command = runtimeBinary(runtime);
  const args: Record<Runtime, string[]> = {
    bun: ["run", script, ...scriptArgs],
    deno: ["run", "-A", script, ...scriptArgs],
    node: [script, ...scriptArgs],
  };
  return { command, args: args[runtime] };
}

export function parseRuntime(value: string | undefined, fallback: Runtime): Runtime {
  if (value === undefined || value === "") return fallback;
  if ((runtimes as readonly string[]).includes(value)) return value as Runtime;
  throw new Error(`runtime must be one of ${runtimes.join(", ")}, not "${value}"`);
}

/**
 * The heap settings a pod with a `limitMb` memory limit gives V8, as environment for
 * the runtime. Inside a container Node reads the limit and picks a young generation of
 * about 1 MB per semi-space and a heap limit near the container's (measured here: a
 * 200 MB cgroup gave a 259 MB heap limit and 2 MB of new space); on a large machine
 * without a limit it picks 32 MB and 4 GB, so RSS grows far past what the program
 * holds. Deno does not read the limit at all. Bun (JavaScriptCore) needs nothing.
 */
export function podHeapEnv(runtime: Runtime, limitMb: number): Record<string, string> {
  if (limitMb <= 0) return {};
  const flags = [`--max-old-space-size=${limitMb}`, "--max-semi-space-size=1"];
  if (runtime === "node") return { NODE_OPTIONS: flags.join(" ") };
  if (runtime === "deno") return { DENO_V8_FLAGS: flags.join(",") };
  return {};
}
