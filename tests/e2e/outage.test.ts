// @module-tag full
// A broker that goes away under consumer-solved.ts, end to end: each case starts a
// broker of its own on the JVM (stopping the suite's would disturb every other file),
// stops it partway and brings it back. A short outage is ridden out: each consumer
// reconnects by itself and finishes. One longer than KAFKA_UNREACHABLE_MS ends the
// consumer with exit 1, saying so, and a restart delivers the rest. Delivery is read
// from what the API answered 201 and the broker's commits (support/evidence.ts).
import { describe, expect, it } from "vitest";
import { startJvmBroker, stopJvmBroker } from "../../scripts/kafka-jvm.ts";
import { answeredTwice, expectAnsweredAtLeastOnce } from "../support/evidence.ts";
import { uniqueName } from "../support/kafka.ts";
import { caughtUp, expectAllCommitted, faultCases, record } from "../support/redelivery.ts";
import { type Backlog, consumerEnv, produce } from "../support/services.ts";
import { expectExit, within } from "../support/solved.ts";

const { solved, mockApi, runSolved } = faultCases();

describe("consumer-solved.ts when the broker goes away", () => {
  it("bun and node: the broker restarts partway; each consumer reconnects by itself and finishes", async () => {
    // Its own broker, so stopping it disturbs no other case; `broker` follows the restart.
    let broker = await startJvmBroker();
    try {
      const api = await mockApi({});
      const env = (backlog: Backlog, extra: Record<string, string>) =>
        consumerEnv(broker.brokers, backlog.topic, `${backlog.topic}-solved`, {
          API_URL: api.usersUrl,
          // The broker stays away until the holding consumer has finished, however long
          // a busy machine makes that: this case rides an outage out; the next one
          // ends at KAFKA_UNREACHABLE_MS.
          KAFKA_UNREACHABLE_MS: "600000",
          ...extra,
        });
      // One consumer still has to fetch after the restart; the other holds its whole
      // backlog before the broker goes and finishes it while the broker is away, so
      // only its commits wait for the broker.
      const [fetching, holding] = await Promise.all([
        produce(broker.brokers, uniqueName("restart-fetching"), { messages: 1_200 }),
        produce(broker.brokers, uniqueName("restart-holding"), { messages: 300 }),
      ]);
      const envA = env(fetching, { CONCURRENCY: "10", HIGH_WATERMARK: "100", LOW_WATERMARK: "50" });
      const envB = env(holding, { CONCURRENCY: "1", HIGH_WATERMARK: "1000", LOW_WATERMARK: "500" });
      const a = solved("bun", envA, caughtUp(envA));
      const b = solved("node", envB, caughtUp(envB));
      const down = (await a.waitForStatus((s) => s.processed >= 200)).processed;
      await b.waitForStatus((s) => s.processed + s.queued + s.inFlight >= holding.messages);
      await stopJvmBroker(broker, { keepData: true });
      // What it processes from the next line on, it processes with the broker away.
      const held = await b.waitForStatus(() => true, { newOnly: true });
      await b.waitForStatus((s) => s.processed >= holding.messages, { timeoutMs: 90_000 });
      broker = await startJvmBroker({ dir: broker.dir });

      const results = await within(
        Promise.all([a.done, b.done]),
        150_000,
        "both finishing after the restart",
      );
      for (const [backlog, result] of [
        [fetching, results[0]],
        [holding, results[1]],
      ] as const) {
        expectExit(result, 0);
        expect(result.summary).toMatchObject({
          processed: backlog.messages,
          deadLettered: 0,
          exitReason: "stopped by SIGTERM",
        });
        await expectAllCommitted(`${backlog.topic}-solved`, backlog.topic, {
          via: broker.brokers,
          run: result,
        });
      }
      expect(down).toBeLessThan(fetching.messages); // the broker went away partway
      expect(held.processed).toBeLessThan(holding.messages);
      // At least once, on the API's word: every id answered 201 (duplicates reported).
      const counts = await expectAnsweredAtLeastOnce(api, [...fetching.ids, ...holding.ids]);
      const stats = await api.stats();
      console.log(
        `[broker restart] fetching (bun): processed ${down} when the broker stopped, commit errors ${results[0].summary?.commitErrors}, redelivered ${results[0].summary?.redelivered}; holding (node): processed ${held.processed} of ${holding.messages} once it had stopped, commit errors ${results[1].summary?.commitErrors}; ids answered twice ${answeredTwice(counts).length}, calls received twice ${stats.duplicates}`,
      );
      record(
        "broker restart",
        "bun",
        fetching,
        results[0],
        `commit errors ${results[0].summary?.commitErrors}`,
      );
      record(
        "broker restart, done while away",
        "node",
        holding,
        results[1],
        `commit errors ${results[1].summary?.commitErrors}`,
      );
    } finally {
      await stopJvmBroker(broker);
    }
  });

  it("deno: Kafka away for longer than KAFKA_UNREACHABLE_MS: exit 1 naming the address; a restart delivers the rest", async () => {
    // Its own broker, stopped and kept away until the consumer gives up.
    let broker = await startJvmBroker();
    try {
      const api = await mockApi({});
      const backlog = await produce(broker.brokers, uniqueName("outage"), { messages: 1_200 });
      const env = consumerEnv(broker.brokers, backlog.topic, `${backlog.topic}-solved`, {
        API_URL: api.usersUrl,
        CONCURRENCY: "10",
        HIGH_WATERMARK: "100",
        LOW_WATERMARK: "50",
        KAFKA_UNREACHABLE_MS: "5000",
      });
      const first = solved("deno", env);
      await first.waitForStatus((s) => s.processed >= 200);
      await stopJvmBroker(broker, { keepData: true });
      const gaveUp = await within(first.done, 120_000, "giving up on the broker");
      expectExit(gaveUp, 1);
      const said = new RegExp(`^Kafka is unreachable at ${broker.brokers} for \\d+ s: `);
      expect(gaveUp.summary?.exitReason).toMatch(said);
      expect(gaveUp.stderr).not.toMatch(/^\s+at /m); // no bare stack trace
      const answeredBefore = (await api.succeeded()).length;
      expect(answeredBefore).toBeLessThan(backlog.messages); // it gave up partway

      broker = await startJvmBroker({ dir: broker.dir });
      const second = await runSolved("deno", { ...env, KAFKA_BROKERS: broker.brokers });
      expectExit(second, 0);
      const counts = await expectAnsweredAtLeastOnce(api, backlog.ids); // nothing lost
      console.log(
        `[outage] gave up after ${(gaveUp.durationMs / 1_000).toFixed(1)} s: ${gaveUp.summary?.exitReason}; ${answeredBefore} answered before, ${answeredTwice(counts).length} answered twice after the restart`,
      );
      record("broker away past the limit", "deno", backlog, gaveUp, "exit 1");
    } finally {
      await stopJvmBroker(broker);
    }
  });
});
