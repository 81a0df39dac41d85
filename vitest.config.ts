import { defineConfig } from "vitest/config";

// Two projects: `unit` is pure logic and needs nothing; `e2e` gets one real Kafka
// broker for the whole run from tests/global-setup.ts and runs its files one at a
// time, because they measure memory and rates of child processes on a 2-core machine.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: ["tests/unit/**/*.test.ts"],
        },
      },
      {
        test: {
          name: "e2e",
          include: ["tests/e2e/**/*.test.ts"],
          globalSetup: ["tests/global-setup.ts"],
          fileParallelism: false,
          testTimeout: 180_000,
          hookTimeout: 180_000,
        },
      },
    ],
  },
});
