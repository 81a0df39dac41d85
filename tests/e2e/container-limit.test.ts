// The solved consumer takes its memory budget from the container's limit, on each runtime,
// with no flag, and on Deno with only the permissions its header gives (the kernel's
// cgroup files need -A there; process.constrainedMemory() needs only systemMemoryInfo).
// The limit is set on a real memory cgroup; what the script reads shows in --help's
// default for MEMORY_LIMIT_MB.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createCgroup } from "../../scripts/cgroup.ts";
import { projectRoot } from "../../scripts/kafka-jvm.ts";
import { type Runtime, runtimeBinary, runtimes } from "../../scripts/runtimes.ts";
import { requireCgroupSupport } from "../support/cgroups.ts";
import { startCommand } from "../support/child.ts";

const support = await requireCgroupSupport("container-limit.test");
const limitMb = 200;

/** The run command of the script's header for a runtime, the script's path made whole. */
function headerCommand(runtime: Runtime): [string, string[]] {
  const source = readFileSync(join(projectRoot, "consumer-solved.ts"), "utf8");
  const line = source.match(new RegExp(`^ \\*\\s+${runtime}:\\s+(.+?)\\s*$`, "m"))?.[1] ?? "";
  const words = (
    line
      .split(/\s{2,}\(/)[0]
      ?.split("&&")
      .at(-1)
      ?.trim() ?? ""
  ).split(/\s+/);
  const args = words.slice(1, -1);
  return [runtimeBinary(runtime), [...args, join(projectRoot, "consumer-solved.ts"), "--help"]];
}

describe.skipIf(!support.ok)(`in a ${limitMb} MB memory cgroup`, () => {
  it.each(runtimes)("%s: the budget's default is the cgroup's limit", async (runtime) => {
    const cgroup = await createCgroup({ memoryLimitMb: limitMb, name: `limit-${runtime}` });
    try {
      const [command, args] = headerCommand(runtime);
      const run = await startCommand(command, args, { wrap: cgroup.wrap }).done;
      expect(run.code, run.stderr).toBe(0);
      expect(run.stdout).toMatch(
        new RegExp(`^\\s+MEMORY_LIMIT_MB\\s.*\\[default: ${limitMb}\\]$`, "m"),
      );
    } finally {
      await cgroup.remove();
    }
  });
});
