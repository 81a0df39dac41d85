// @module-tag full
// The solved consumer run as a service (METRICS_PORT), on Bun, Deno and Node; Deno with
// exactly the permissions its header gives (deno.json's task, which drift.test.ts keeps
// equal to the header), so the listener needs nothing more than a reader is told.
//   - Under load, /metrics scraped every 250 ms: every scrape read by Prometheus's own
//     parser, linted by promtool; counters never fall, lag never rises; at the end the
//     processed counter equals the API's 201s, and per partition the lag is 0 and the
//     committed offset is the broker's (read after the stop), the end of the partition.
//   - /readyz: 503 while the broker holds the group in a rebalance (another member does
//     not answer), 200 once the consumer has joined.
//   - /healthz and /readyz answer within 50 ms while the consumer is paused with its
//     queue full behind a slow API; then, stopping, /readyz says 503 and /healthz 200.
import { totalmem } from "node:os";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { freePort } from "../../scripts/kafka-jvm.ts";
import { runtimes } from "../../scripts/runtimes.ts";
import { type RunningScript, until } from "../support/child.ts";
import {
  committedOffsets,
  committedToEnd,
  endOffsets,
  kafkaClient,
  uniqueName,
  withAdmin,
} from "../support/kafka.ts";
import {
  byPartition,
  type Family,
  httpGet,
  parseExpositions,
  promtoolProblems,
  sampleValue,
  scrapeEvery,
  skipWithoutPrometheusTools,
} from "../support/prometheus.ts";
import {
  type Backlog,
  consumerEnv,
  type MockApi,
  produce,
  startMockApi,
} from "../support/services.ts";
import { startSolvedAsUser } from "../support/solved.ts";

const brokers = inject("kafkaBrokers");
const skip = skipWithoutPrometheusTools("metrics.test");
const partitions = 6;
const highWatermark = 2_000; // the solved consumer's default HIGH_WATERMARK
const metric = (name: string) => `consumer_solved_${name}`;

let work: Backlog;
let fastApi: MockApi;
let slowApi: MockApi;
beforeAll(async () => {
  [work, fastApi, slowApi] = await Promise.all([
    produce(brokers, uniqueName("metrics"), { messages: 6_000, payloadBytes: 1_024, partitions }),
    startMockApi({ LATENCY_MS: "20", JITTER_MS: "5" }),
    startMockApi({ LATENCY_MS: "5000", JITTER_MS: "0" }),
  ]);
});
afterAll(async () => {
  await Promise.all([fastApi?.stop(), slowApi?.stop()]);
});

/** A sample's value read straight from the text, for deciding when to stop only. */
function quick(text: string, name: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const [, labels, value] of text.matchAll(
    new RegExp(`^${name}(\\{[^}]*\\})? (\\S+)$`, "gm"),
  )) {
    values.set(labels?.match(/partition="(\d+)"/)?.[1] ?? "", Number(value));
  }
  return values;
}

function stopped(consumer: RunningScript) {
  if (consumer.child.exitCode === null && consumer.child.signalCode === null) {
    consumer.child.kill("SIGKILL");
  }
}

const counters = (families: Family[]) => families.filter((family) => family.type === "counter");

describe.skipIf(skip).each(runtimes)("consumer-solved.ts as a service, on %s", (runtime) => {
  it("under load, scraped every 250 ms: Prometheus parses every scrape, and at the end the counters are the API's and the lag the broker's", async () => {
    await fastApi.reset();
    const groupId = `${work.topic}-load-${runtime}`;
    const port = await freePort();
    const ends = await endOffsets(brokers, work.topic);
    const scraper = scrapeEvery(`http://127.0.0.1:${port}/metrics`, 250);
    const caughtUp = committedToEnd(brokers, groupId, work.topic);
    const consumer = startSolvedAsUser(runtime, {
      env: consumerEnv(brokers, work.topic, groupId, {
        API_URL: fastApi.usersUrl,
        CONCURRENCY: "50",
        METRICS_PORT: String(port),
        // Outside a pod Node's RSS passes the default 256 MB budget at this pace (exit 3,
        // with or without metrics, 2026-12-06): memory is pod.test.ts's and issue 20's.
        MEMORY_LIMIT_MB: "1024",
      }),
      // Stop once the API has answered every id, the broker holds the commits at the end,
      // and a scrape taken after that says so too: that scrape is the last one checked.
      stopWhen: {
        async met() {
          if ((await fastApi.stats()).distinctSucceeded < work.messages) return false;
          if (!(await caughtUp.met())) return false;
          const text = (await scraper.now()) ?? "";
          const committed = quick(text, metric("partition_committed_offset"));
          return Object.entries(ends).every(([p, end]) => committed.get(p) === Number(end));
        },
        close: () => caughtUp.close?.() ?? Promise.resolve(),
      },
    });
    let result: Awaited<RunningScript["done"]>;
    try {
      result = await consumer.done;
    } finally {
      stopped(consumer);
      await scraper.stop();
    }
    expect(result.code, result.stderr.slice(-2_000)).toBe(0);
    expect(result.stoppedWhenMet).toBe(true);
    expect(result.stdout).toContain(`metrics on http://127.0.0.1:${port}/metrics`);

    // Prometheus's parser reads every scrape; promtool finds nothing to say about the
    // first, the one with the most samples, and the last.
    const texts = scraper.scrapes.map((scrape) => scrape.text);
    expect(texts.length, "scrapes while it worked").toBeGreaterThanOrEqual(5);
    const parsed = await parseExpositions(texts);
    const richest = texts.reduce((a, b) => (b.split("\n").length > a.split("\n").length ? b : a));
    for (const text of [texts[0] as string, richest, texts.at(-1) as string]) {
      expect(await promtoolProblems(text)).toBe("");
    }
    // What an operator relies on: counters never fall, and with nothing produced
    // meanwhile a partition's lag never rises; some scrape saw the backlog not yet taken.
    for (let i = 1; i < parsed.length; i++) {
      for (const family of counters(parsed[i - 1] as Family[])) {
        for (const sample of family.samples) {
          const later = sampleValue(parsed[i] as Family[], sample.name, sample.labels);
          expect(later, `${sample.name} in scrape ${i}`).toBeGreaterThanOrEqual(sample.value);
        }
      }
      const before = byPartition(parsed[i - 1] as Family[], metric("partition_lag"));
      for (const [partition, lag] of byPartition(parsed[i] as Family[], metric("partition_lag"))) {
        expect(lag, `lag of ${partition} in scrape ${i}`).toBeLessThanOrEqual(
          before.get(partition) ?? Number.POSITIVE_INFINITY,
        );
      }
    }
    const lagSeen = parsed.map((families) =>
      [...byPartition(families, metric("partition_lag")).values()].reduce((a, b) => a + b, 0),
    );
    expect(Math.max(...lagSeen), "a backlog not yet taken, seen in the lag").toBeGreaterThan(0);

    // At the end: the counter is the API's count, the lag 0, the commits the broker's.
    const last = parsed.at(-1) as Family[];
    // As Prometheus reads them: every family documented, every _total a counter, and
    // the counters and gauges an operator looks for there, by their full names.
    for (const family of last) {
      expect(family.help, family.name).not.toBe("");
      const totals = family.samples.some((sample) => sample.name.endsWith("_total"));
      expect(family.type, family.name).toBe(totals ? "counter" : "gauge");
    }
    const names = last.flatMap((family) => family.samples.map((sample) => sample.name));
    for (const name of [
      "messages_processed_total",
      "messages_dead_lettered_total",
      "retries_total",
      "throttled_total",
      "messages_skipped_total",
      "messages_redelivered_total",
      "queued_messages",
      "calls_in_flight",
      "held_bytes",
      "uncommitted_messages",
      "concurrency_limit",
      "paused",
      "memory_pressure",
      "resident_memory_bytes",
      "partition_lag",
      "partition_committed_offset",
    ]) {
      expect(names, name).toContain(metric(name));
    }
    const apiStats = await fastApi.stats();
    expect(apiStats.distinctSucceeded).toBe(work.messages);
    expect(sampleValue(last, metric("messages_processed_total"))).toBe(apiStats.succeeded);
    expect(sampleValue(last, metric("messages_dead_lettered_total"))).toBe(0);
    const committed = await committedOffsets(brokers, groupId, work.topic);
    expect(committed).toEqual(ends);
    const asNumbers = (offsets: Record<number, string>) =>
      new Map(Object.entries(offsets).map(([p, o]) => [Number(p), Number(o)]));
    expect(byPartition(last, metric("partition_committed_offset"))).toEqual(asNumbers(committed));
    expect(byPartition(last, metric("partition_high_watermark"))).toEqual(asNumbers(ends));
    const zero = new Map(Object.keys(ends).map((p) => [Number(p), 0]));
    expect(byPartition(last, metric("partition_lag"))).toEqual(zero);
    expect(sampleValue(last, metric("assigned_partitions"))).toBe(partitions);
    expect(sampleValue(last, metric("queued_messages"))).toBe(0);
    // Charged memory: outside a container (no memory limit below the machine's) the
    // cgroup files count a session or the whole machine, so the gauge is left out, not
    // made up; scale-out.test.ts reads it inside a pod. Deno may read /proc and /sys
    // only with --allow-all, which its header never gives.
    const charged = sampleValue(last, metric("cgroup_memory_bytes"));
    const inContainer = process.constrainedMemory() > 0 && process.constrainedMemory() < totalmem();
    if (runtime === "deno" || !inContainer) expect(charged).toBeUndefined();
    else expect(charged).toBeGreaterThan(0);
  });

  it("/readyz: not ready while the group cannot be joined, ready once joined", async () => {
    await fastApi.reset();
    const groupId = `${work.topic}-ready-${runtime}`;
    const port = await freePort();
    const readyz = `http://127.0.0.1:${port}/readyz`;
    // Another member takes the partitions, then sits in its handler without answering
    // the broker: a newcomer's join waits until it leaves (or its session expires, 30 s).
    const blocker = kafkaClient(brokers, "tests-blocker").consumer({
      groupId,
      maxWaitTimeInMs: 100,
    });
    let release = () => {};
    const released = new Promise<void>((resolve) => (release = resolve));
    await blocker.connect();
    await blocker.subscribe({ topics: [work.topic], fromBeginning: true });
    const holding = new Promise<void>((resolve) => {
      void blocker.run({
        autoCommit: false,
        eachMessage: async () => {
          resolve();
          await released;
        },
      });
    });
    await holding;
    const groupState = async () =>
      (await withAdmin(brokers, (admin) => admin.describeGroups([groupId]))).groups[0];
    const consumer = startSolvedAsUser(runtime, {
      env: consumerEnv(brokers, work.topic, groupId, {
        API_URL: fastApi.usersUrl,
        METRICS_PORT: String(port),
      }),
    });
    try {
      const first = await until(() => httpGet(readyz), "/readyz answering");
      expect(first.status, first.body).toBe(503);
      expect(first.body).toMatch(/not ready: joining the group/);
      // The broker's word: it is rebalancing, waiting for the member that does not answer.
      await until(
        async () => ((await groupState())?.state === "PreparingRebalance" ? true : undefined),
        "the group rebalancing",
        { timeoutMs: 20_000 },
      );
      for (let i = 0; i < 5; i++) {
        const answer = await httpGet(readyz);
        expect(answer.status, answer.body).toBe(503);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect((await groupState())?.state).toBe("PreparingRebalance");

      release();
      await blocker.disconnect();
      const ready = await until(async () => {
        const answer = await httpGet(readyz);
        return answer.status === 200 ? answer : undefined;
      }, "/readyz ready");
      expect(ready.body).toMatch(/^ready: partitions [\d,]+$/m);
      // Once the other member has left, the broker's word: the group is stable with this
      // consumer its only member, and /readyz names all six partitions as its own.
      await until(async () => {
        const group = await groupState();
        const members = group?.members.map((member) => member.clientId);
        if (group?.state !== "Stable" || members?.join() !== "consumer-solved") return undefined;
        const answer = await httpGet(readyz);
        return /^ready: partitions 0,1,2,3,4,5$/m.test(answer.body) || undefined;
      }, "the whole group, stable, in this consumer");
      consumer.child.kill("SIGTERM"); // (not ready while stopping: the next case, where it lasts)
      const result = await consumer.done;
      expect(result.code, result.stderr.slice(-2_000)).toBe(0);
    } finally {
      release();
      stopped(consumer);
      await blocker.disconnect().catch(() => {});
    }
  });

  it("/healthz and /readyz answer within 50 ms while it is paused with its queue full; stopping, not ready", async () => {
    await slowApi.reset();
    const groupId = `${work.topic}-paused-${runtime}`;
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const concurrency = 20;
    const consumer = startSolvedAsUser(runtime, {
      env: consumerEnv(brokers, work.topic, groupId, {
        API_URL: slowApi.usersUrl,
        CONCURRENCY: String(concurrency),
        METRICS_PORT: String(port),
        SHUTDOWN_TIMEOUT_MS: "3000",
      }),
    });
    try {
      // Fully loaded: the API holds CONCURRENCY calls (its word), the queue is at the
      // high watermark and fetching is paused (the consumer's).
      await until(async () => {
        if ((await slowApi.stats()).inFlight < concurrency) return undefined;
        const text = (await httpGet(`${base}/metrics`)).body;
        const paused = quick(text, metric("paused")).get("") === 1;
        const queued = quick(text, metric("queued_messages")).get("") ?? 0;
        return paused && queued >= highWatermark ? true : undefined;
      }, "paused with a full queue");
      const answers = [];
      for (let i = 0; i < 20; i++) {
        answers.push(await httpGet(`${base}/healthz`), await httpGet(`${base}/readyz`));
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(answers.map((answer) => answer.status)).toEqual(answers.map(() => 200));
      // Within 50 ms, nine probes in ten, measured from this process on a machine other
      // test runs share (a few land behind the scheduler, not behind the consumer); and
      // every one well within the kubelet's timeout (1 s by default).
      const ms = answers.map((answer) => answer.ms).sort((a, b) => a - b);
      const p90 = ms[Math.ceil(0.9 * ms.length) - 1] as number;
      expect(
        p90,
        `the 90th percentile of ${ms.length} probes, ms: ${ms.map(Math.round)}`,
      ).toBeLessThan(50);
      expect(ms.at(-1), "the slowest probe, ms").toBeLessThan(1_000);
      // Still paused and full while it was probed: the probes were measured under load.
      const after = (await httpGet(`${base}/metrics`)).body;
      expect(quick(after, metric("paused")).get("")).toBe(1);
      // The lag is what is not taken yet: the calls the API holds (its word) were taken
      // from the partitions fetched so far, so their summed lag is below what the broker
      // says the group has not committed there.
      const [ends, committed, apiStats] = await Promise.all([
        endOffsets(brokers, work.topic),
        committedOffsets(brokers, groupId, work.topic),
        slowApi.stats(),
      ]);
      const lags = quick(after, metric("partition_lag"));
      const uncommitted = [...lags.keys()].reduce(
        (sum, p) => sum + Number(ends[Number(p)]) - Math.max(0, Number(committed[Number(p)])),
        0,
      );
      const lag = [...lags.values()].reduce((a, b) => a + b, 0);
      expect(lag).toBeLessThanOrEqual(uncommitted - apiStats.inFlight);

      consumer.child.kill("SIGTERM");
      const stopping = await until(async () => {
        const answer = await httpGet(`${base}/readyz`);
        return answer.status === 503 ? answer : undefined;
      }, "/readyz while stopping");
      expect(stopping.body).toMatch(/not ready: stopping/);
      expect((await httpGet(`${base}/healthz`)).status).toBe(200);
      const result = await consumer.done;
      expect(result.code, result.stderr.slice(-2_000)).toBe(0);
    } finally {
      stopped(consumer);
    }
  });
});
