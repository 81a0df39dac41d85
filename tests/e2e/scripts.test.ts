// The five scripts end to end, on each runtime: a real broker, mock-api.ts as a real
// HTTP server, every script as a child process.
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { runtimes } from "../../scripts/runtimes.ts";
import { runScript } from "../support/child.ts";
import { expectExactlyOnce } from "../support/evidence.ts";
import { committedToEnd, endOffsets, uniqueName, withAdmin } from "../support/kafka.ts";
import {
  answered,
  consumerEnv,
  type MockApi,
  produce,
  startMockApi,
  total,
} from "../support/services.ts";

const brokers = inject("kafkaBrokers");
const messages = 600;
let api: MockApi;

beforeAll(async () => {
  api = await startMockApi({ LATENCY_MS: "20", JITTER_MS: "10" });
});
afterAll(async () => {
  await api?.stop();
});

describe.each(runtimes)("on %s", (runtime) => {
  it("producer.ts fills a topic and consumer-fast.ts counts exactly that many, then stops", async () => {
    const topic = uniqueName(`fast-${runtime}`);
    await produce(brokers, topic, { messages }, runtime);
    const groupId = `${topic}-fast`;
    const run = await runScript(runtime, "consumer-fast.ts", {
      env: consumerEnv(brokers, topic, groupId),
      // KafkaJS commits each batch for it once handled: the broker says when it is done.
      stopWhen: committedToEnd(brokers, groupId, topic),
    });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stoppedWhenMet).toBe(true);
    expect(run.summary).toMatchObject({
      script: "consumer-fast",
      processed: messages,
      exitReason: "stopped by SIGTERM",
    });
    expect(run.stdout).toMatch(/\[fast\] [\d.]+s processed/); // the status line
  });

  it("consumer-fast.ts and consumer-backpressure.ts name a missing topic, exit 1, create none", async () => {
    const topic = uniqueName(`missing-${runtime}`);
    for (const script of ["consumer-fast.ts", "consumer-backpressure.ts"]) {
      const run = await runScript(runtime, script, {
        env: consumerEnv(brokers, topic, `${topic}-group`),
      });
      expect(run.code, `${script}: ${run.stderr}`).toBe(1);
      expect(run.stderr).toMatch(`Topic ${topic} does not exist at ${brokers}`);
      expect(run.stderr).not.toMatch(/unreachable/);
    }
    // The broker's word: the topic is still missing (a consumer must not create it).
    expect(await withAdmin(brokers, (admin) => admin.listTopics())).not.toContain(topic);
  });

  it("consumer-solved.ts delivers every id exactly once and commits the end offsets", async () => {
    const topic = uniqueName(`solved-${runtime}`);
    const backlog = await produce(brokers, topic, { messages }, "node");
    await api.reset();
    const groupId = `${topic}-solved`;
    const run = await runScript(runtime, "consumer-solved.ts", {
      env: consumerEnv(brokers, topic, groupId, {
        API_URL: api.usersUrl,
        CONCURRENCY: "30",
        HIGH_WATERMARK: "100", // small, so this run pauses and resumes many times
        LOW_WATERMARK: "50",
      }),
      // Stopped once the API has answered every id: what is committed then is the
      // graceful shutdown's doing, checked below.
      stopWhen: answered(api, messages),
    });
    expect(run.code, run.stderr).toBe(0);
    expect(run.summary, JSON.stringify(run.summary)).toMatchObject({
      processed: messages,
      deadLettered: 0,
      exitCode: 0,
    });
    expect(Number(run.summary?.pauses)).toBeGreaterThan(0);
    expect(Number(run.summary?.peakQueued)).toBeLessThanOrEqual(100);

    // Exactly once on the API's 201s, nothing dead-lettered, committed to the end.
    const { letters } = await expectExactlyOnce(brokers, api, groupId, topic);
    expect(letters).toEqual([]);
    expect(await api.succeeded()).toHaveLength(backlog.ids.length);
    const stats = await api.stats();
    expect(stats).toMatchObject({ accepted: messages, duplicates: 0 }); // no call sent twice
    expect(stats.peakConcurrent).toBeLessThanOrEqual(30); // no capacity set: the consumer's bound
    expect(total(await endOffsets(brokers, topic))).toBe(messages);
  });

  it("each script refuses a bad setting with exit 2 and names it", async () => {
    const cases: [string, Record<string, string>, RegExp][] = [
      ["consumer-solved.ts", { CONCURRENCY: "abc" }, /Bad setting CONCURRENCY="abc"/],
      [
        "consumer-solved.ts",
        { HIGH_WATERMARK: "2000", LOW_WATERMARK: "3000" },
        /Bad setting LOW_WATERMARK="3000": must be below HIGH_WATERMARK/,
      ],
      ["consumer-solved.ts", { API_URL: "not a url" }, /Bad setting API_URL/],
      ["consumer-backpressure.ts", { MEMORY_LIMIT_MB: "lots" }, /Bad setting MEMORY_LIMIT_MB/],
      [
        "consumer-fast.ts",
        { FROM_BEGINNING: "maybe" },
        /Bad setting FROM_BEGINNING="maybe": expected true or false/,
      ],
      ["producer.ts", { MESSAGES: "-5" }, /Bad setting MESSAGES="-5"/],
      [
        "mock-api.ts",
        { ERROR_RATE: "2" },
        /Bad setting ERROR_RATE="2": expected a number from 0 to 1/,
      ],
    ];
    for (const [script, env, message] of cases) {
      const run = await runScript(runtime, script, { env: { KAFKA_BROKERS: brokers, ...env } });
      expect(run.code, `${script} ${JSON.stringify(env)}`).toBe(2);
      expect(run.stderr).toMatch(message);
    }
  });
});

describe("--help", () => {
  it.each([
    ["producer.ts", "PAYLOAD_BYTES"],
    ["consumer-fast.ts", "FROM_BEGINNING"],
    ["consumer-backpressure.ts", "MEMORY_LIMIT_MB"],
    ["consumer-solved.ts", "LOW_WATERMARK"],
    ["mock-api.ts", "CAPACITY"],
  ])("%s lists its settings with their defaults", async (script, setting) => {
    const run = await runScript("bun", script, { args: ["--help"] });
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(new RegExp(`^\\s+${setting}\\s+.+\\[default: .+\\]$`, "m"));
  });
});
