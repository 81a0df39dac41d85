// @module-tag full
// Scaling out as the KEDA ScaledObject in deploy/ would: more members of one consumer
// group, each in its own 256 MB pod (a memory cgroup), sharing a 12-partition backlog.
// One member per runtime (Bun, Deno, Node), each joining once the one before is in the
// group, so the group rebalances as it grows, while the backlog is still there (an API
// at 50 ms, 10 calls at once each: one member alone would take 30 s). Each is scraped every 250 ms. It must show: every id answered
// 201 exactly once and the commits at the end (the API's and the broker's word); each
// member did a share, and their processed counters add up to the API's evidence; each
// member under its bound (the kernel's charged peak, no OOM kill); the partitions split
// between them; and the sum of their lag metrics, above 0 while the backlog waits,
// falling to 0.
import { afterAll, describe, expect, inject, it } from "vitest";
import { type Cgroup, type CgroupStats, createCgroup, listCgroups } from "../../scripts/cgroup.ts";
import { freePort } from "../../scripts/kafka-jvm.ts";
import { type Runtime, runtimes } from "../../scripts/runtimes.ts";
import { requireCgroupSupport } from "../support/cgroups.ts";
import { type RunningScript, type RunResult, startScript, until } from "../support/child.ts";
import { expectExactlyOnce } from "../support/evidence.ts";
import { recordFigure, runFigures } from "../support/figures.ts";
import { committedToEnd, endOffsets, uniqueName, withAdmin } from "../support/kafka.ts";
import {
  byPartition,
  type Family,
  httpGet,
  parseExpositions,
  sampleValue,
  scrapeEvery,
  skipWithoutPrometheusTools,
} from "../support/prometheus.ts";
import { consumerEnv, produce, startMockApi } from "../support/services.ts";

const brokers = inject("kafkaBrokers");
const limitMb = 256;
const partitions = 12;
const messages = 6_000;
const support = await requireCgroupSupport("scale-out.test");
const skip = !support.ok || skipWithoutPrometheusTools("scale-out.test");
const metric = (name: string) => `consumer_solved_${name}`;

interface Member {
  runtime: Runtime;
  cgroup: Cgroup;
  consumer: RunningScript;
  scraper: ReturnType<typeof scrapeEvery>;
}

const sum = (values: Iterable<number>) => [...values].reduce((a, b) => a + b, 0);

describe.skipIf(skip)("scaling out: more members of one consumer group", () => {
  afterAll(async () => {
    // Nothing of this run left behind, passed or failed.
    const ours = (await listCgroups()).filter((path) => path.includes(`/kbp-${process.pid}-`));
    expect(ours).toEqual([]);
  });

  it(`share a ${partitions}-partition backlog: every id once, each under its bound, the summed lag falls to 0`, async () => {
    const topic = uniqueName("scale-out");
    const [, api] = await Promise.all([
      produce(brokers, topic, { messages, payloadBytes: 1_024, partitions }),
      startMockApi({ LATENCY_MS: "50", JITTER_MS: "5" }),
    ]);
    const groupId = `${topic}-group`;
    const members: Member[] = [];
    try {
      for (const runtime of runtimes) {
        const cgroup = await createCgroup({ memoryLimitMb: limitMb, name: `scale-${runtime}` });
        const port = await freePort();
        const consumer = startScript(runtime, "consumer-solved.ts", {
          env: consumerEnv(brokers, topic, groupId, {
            API_URL: api.usersUrl,
            // At most 200 messages a second each: one member alone would take 30 s, so
            // the backlog outlasts the joins and rebalances even on a loaded machine
            // (at 20, the first two members had drained it before the third joined).
            CONCURRENCY: "10",
            METRICS_PORT: String(port),
          }),
          wrap: cgroup.wrap,
        });
        const scraper = scrapeEvery(`http://127.0.0.1:${port}/metrics`, 250);
        members.push({ runtime, cgroup, consumer, scraper });
        // The next member joins once this one is in the group (ready), as KEDA adds one.
        await until(
          async () =>
            (await httpGet(`http://127.0.0.1:${port}/readyz`)).status === 200 || undefined,
          `${runtime} ready`,
        );
      }

      // Caught up: the API answered every id, the broker holds the commits at the end,
      // and every member's own scrape says its lag is 0 and its commits are the ends.
      const ends = await endOffsets(brokers, topic);
      const caughtUp = committedToEnd(brokers, groupId, topic);
      await until(
        async () => {
          if ((await api.stats()).distinctSucceeded < messages) return undefined;
          if (!(await caughtUp.met())) return undefined;
          const texts = await Promise.all(members.map(({ scraper }) => scraper.now()));
          if (texts.some((text) => text === undefined)) return undefined;
          const parsed = await parseExpositions(texts as string[]);
          const done = parsed.every((families) => {
            const committed = byPartition(families, metric("partition_committed_offset"));
            const lag = byPartition(families, metric("partition_lag"));
            return [...lag].every(
              ([p, value]) => value === 0 && committed.get(p) === Number(ends[p]),
            );
          });
          return done || undefined;
        },
        "every member caught up",
        { timeoutMs: 120_000, everyMs: 250 },
      );
      await caughtUp.close?.();
      for (const { consumer } of members) consumer.child.kill("SIGTERM");
      const results: RunResult[] = await Promise.all(members.map(({ consumer }) => consumer.done));
      const stats: CgroupStats[] = await Promise.all(members.map(({ cgroup }) => cgroup.stats()));
      await Promise.all(members.map(({ scraper }) => scraper.stop()));

      // The API's and the broker's word: every id answered 201 once, commits at the end.
      await expectExactlyOnce(brokers, api, groupId, topic);

      const perMember = await Promise.all(
        members.map(({ scraper }) => parseExpositions(scraper.scrapes.map((s) => s.text))),
      );
      const finals: Family[][] = perMember.map((scrapes) => scrapes.at(-1) as Family[]);
      members.forEach(({ runtime }, i) => {
        const [run, pod, last] = [results[i] as RunResult, stats[i] as CgroupStats, finals[i]];
        // Each under its bound: the kernel's charged peak, with no OOM kill, and exit 0.
        expect(pod.oomKills, `${runtime}: exit ${run.code}/${run.signal}`).toBe(0);
        expect(pod.peakMb, runtime).toBeLessThanOrEqual(0.75 * limitMb);
        expect(run.code, `${runtime}: ${run.stderr.slice(-2_000)}`).toBe(0);
        // The charged-memory gauge reads this pod's own counter: never above its peak.
        const charged = sampleValue(last as Family[], metric("cgroup_memory_bytes"));
        expect(charged, runtime).toBeGreaterThan(8 * 2 ** 20);
        expect(charged, runtime).toBeLessThanOrEqual(pod.peakMb * 2 ** 20);
        recordFigure({
          case: "scale-out: 3 members, 12 partitions",
          runtime,
          consumer: "consumer-solved.ts",
          messages,
          ...runFigures(run),
          ceilingMb: limitMb,
          note: `charged peak ${pod.peakMb.toFixed(0)} MB, processed ${run.summary?.processed}`,
        });
      });
      // The group's partitions, split between the members at the end.
      const owned = finals.map((last) => sampleValue(last, metric("assigned_partitions")) ?? 0);
      expect(sum(owned)).toBe(partitions);
      expect(
        owned.every((count) => count > 0),
        `shares ${owned.join(", ")}`,
      ).toBe(true);
      // Each did a share; together every message at least once, and each count beyond
      // the first is a call the API saw again for an id it already had (a redelivery
      // after a rebalance, answered from its idempotency key).
      const processed = finals.map(
        (last) => sampleValue(last, metric("messages_processed_total")) ?? 0,
      );
      expect(
        processed.every((count) => count > 0),
        `processed ${processed.join(", ")}`,
      ).toBe(true);
      const apiStats = await api.stats();
      expect(sum(processed)).toBeGreaterThanOrEqual(messages);
      expect(sum(processed) - apiStats.distinctSucceeded).toBeLessThanOrEqual(apiStats.duplicates);
      // The summed lag: above 0 while the backlog waited, 0 at the end.
      const lagOf = (families: Family[]) =>
        sum(byPartition(families, metric("partition_lag")).values());
      expect(Math.max(...perMember.flat().map(lagOf)), "the backlog, seen as lag").toBeGreaterThan(
        0,
      );
      expect(sum(finals.map(lagOf))).toBe(0);
    } finally {
      for (const { consumer } of members) {
        if (consumer.child.exitCode === null && consumer.child.signalCode === null) {
          consumer.child.kill("SIGKILL");
        }
      }
      await Promise.all(members.map(({ scraper }) => scraper.stop()));
      await Promise.all(members.map(({ consumer }) => consumer.done.catch(() => undefined)));
      await Promise.all(members.map(({ cgroup }) => cgroup.remove()));
      await api.stop();
    }
  });

  it("past the partition count, a member owns nothing and is still ready: idle, not broken", async () => {
    const topic = uniqueName("scale-idle");
    const [, api] = await Promise.all([
      produce(brokers, topic, { messages: 100, payloadBytes: 1_024, partitions: 1 }),
      startMockApi({ LATENCY_MS: "20", JITTER_MS: "0" }),
    ]);
    const groupId = `${topic}-group`;
    const started: RunningScript[] = [];
    try {
      const readyz: string[] = [];
      for (const runtime of ["bun", "node"] as const) {
        const port = await freePort();
        readyz.push(`http://127.0.0.1:${port}/readyz`);
        started.push(
          startScript(runtime, "consumer-solved.ts", {
            env: consumerEnv(brokers, topic, groupId, {
              API_URL: api.usersUrl,
              METRICS_PORT: String(port),
            }),
          }),
        );
      }
      // The broker's word: one group, stable, with both as members.
      const group = await until(async () => {
        const [found] = (await withAdmin(brokers, (admin) => admin.describeGroups([groupId])))
          .groups;
        return found?.state === "Stable" && found.members.length === 2 ? found : undefined;
      }, "a stable group of two");
      expect(group.members).toHaveLength(2);
      const answers = await until(async () => {
        const all = await Promise.all(readyz.map((url) => httpGet(url)));
        return all.every((answer) => answer.status === 200) ? all : undefined;
      }, "both ready");
      expect(answers.map((answer) => answer.body.trim()).sort()).toEqual([
        "ready: idle, no partition to own",
        "ready: partitions 0",
      ]);
      for (const consumer of started) consumer.child.kill("SIGTERM");
      for (const consumer of started) expect((await consumer.done).code).toBe(0);
    } finally {
      for (const consumer of started) {
        if (consumer.child.exitCode === null) consumer.child.kill("SIGKILL");
      }
      await Promise.all(started.map((consumer) => consumer.done.catch(() => undefined)));
      await api.stop();
    }
  });
});
