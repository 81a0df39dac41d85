// The no-silent-skip switch: without REQUIRE_CGROUPS a kernel-limit case that cannot run
// is skipped with its reason; with REQUIRE_CGROUPS=1 (as .ci/run sets it) it fails.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { projectRoot } from "../../scripts/kafka-jvm.ts";
import { skipUnless } from "../support/cgroups.ts";

afterEach(() => {
  vi.unstubAllEnvs();
  vi.restoreAllMocks();
});

describe("skipUnless", () => {
  it("runs a case that can run, whatever the switch", () => {
    vi.stubEnv("REQUIRE_CGROUPS", "1");
    expect(skipUnless(true, "", "case")).toBe(false);
  });

  it("skips with the reason when cgroups are not required", () => {
    vi.stubEnv("REQUIRE_CGROUPS", "");
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    expect(skipUnless(false, "no memory controller", "pod")).toBe(true);
    expect(warn).toHaveBeenCalledWith("[pod] skipped: no memory controller");
  });

  it("fails instead of skipping under REQUIRE_CGROUPS=1", () => {
    vi.stubEnv("REQUIRE_CGROUPS", "1");
    expect(() => skipUnless(false, "no memory controller", "pod")).toThrow(
      /pod cannot run \(no memory controller\), and REQUIRE_CGROUPS=1 forbids skipping it/,
    );
  });

  it("is switched on by CI before the tests run", () => {
    const ci = readFileSync(join(projectRoot, ".ci/run"), "utf8");
    expect(ci.indexOf("export REQUIRE_CGROUPS=1")).toBeGreaterThan(0);
    expect(ci.indexOf("export REQUIRE_CGROUPS=1")).toBeLessThan(ci.indexOf("npm test"));
  });
});
