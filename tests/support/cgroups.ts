// Kernel-limit cases and this machine: run them where memory cgroups work, and where
// they do not, skip with the reason, except under REQUIRE_CGROUPS=1 (set by .ci/run),
// where a case that would skip fails its file instead, so CI cannot pass by skipping.
import { type CgroupSupport, cgroupSupport } from "../../scripts/cgroup.ts";

/** REQUIRE_CGROUPS=1: a kernel-limit case that would be skipped fails instead. */
export function cgroupsRequired(): boolean {
  return process.env.REQUIRE_CGROUPS === "1";
}

/**
 * Whether to skip a kernel-limit case: `false` when `ok`; otherwise logs why and
 * returns `true`, or, under REQUIRE_CGROUPS=1, throws with the reason (a throw while a
 * test file is collected fails that file). Use it as `it.skipIf(skipUnless(…))(…)`.
 */
export function skipUnless(ok: boolean, reason: string, what: string): boolean {
  if (ok) return false;
  if (cgroupsRequired()) {
    throw new Error(`${what} cannot run (${reason}), and REQUIRE_CGROUPS=1 forbids skipping it`);
  }
  console.warn(`[${what}] skipped: ${reason}`);
  return true;
}

/**
 * Probes memory cgroups once for a test file. Where they do not work, it logs why, or
 * under REQUIRE_CGROUPS=1 throws: `describe.skipIf(!support.ok)` then never skips in CI.
 */
export async function requireCgroupSupport(what: string): Promise<CgroupSupport> {
  const support = await cgroupSupport();
  skipUnless(support.ok, support.ok ? "" : support.reason, what);
  return support;
}
