import { defineConfig } from "vitest/config";

// Two tiers (tests/README.md):
//   npm test          the quick tier, after each change: every case not tagged `full`
//   npm run test:all  everything
// Three projects. `unit` is pure logic. `e2e` runs its files side by side: they mostly
// wait (on slow mock APIs, on the broker, on the kernel's verdict), each with its own
// topics, groups, APIs and cgroups. `e2e-alone` holds the few files whose assertions
// compare rates of runs made one after another: they run afterwards, one at a time, on
// a quiet machine. Both e2e projects share one real Kafka broker
// (tests/global-setup.ts).
const alone = ["tests/e2e/goodput.test.ts", "tests/e2e/pod-rate.test.ts"];
const sideBySide = 3; // e2e files at once on this 2-core machine (unit shares the group)
const casesAtOnce = 3; // within a file, cases marked concurrent

export default defineConfig({
  test: {
    tags: [
      {
        name: "full",
        description: "only in `npm run test:all`: the slower cases the quick tier leaves out",
      },
    ],
    projects: [
      {
        test: {
          name: "unit",
          include: ["tests/unit/**/*.test.ts"],
          maxWorkers: sideBySide,
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          name: "e2e",
          include: ["tests/e2e/**/*.test.ts"],
          exclude: alone,
          globalSetup: ["tests/global-setup.ts"],
          maxWorkers: sideBySide,
          maxConcurrency: casesAtOnce,
          sequence: { groupOrder: 0 },
          testTimeout: 180_000,
          hookTimeout: 180_000,
        },
      },
      {
        test: {
          name: "e2e-alone",
          include: alone,
          globalSetup: ["tests/global-setup.ts"],
          fileParallelism: false,
          sequence: { groupOrder: 1 },
          testTimeout: 420_000,
          hookTimeout: 180_000,
        },
      },
    ],
  },
});
