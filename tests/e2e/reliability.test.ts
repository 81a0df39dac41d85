// What consumer-solved.ts owes when it stops, end to end: a real broker, the mock API
// (or a small local one) and the consumer as real processes. A crash, a crash while
// calls behind done ones never answer, a dead group member, SIGTERM with and without
// time to finish: after each, a restart (or the survivor) delivers every id, and only
// what was not committed may be answered twice. Delivery is read from what the API
// answered 201, the DLQ topic and the broker's commits (support/evidence.ts). The
// quick tier runs the held-calls crash (it caught both commit bugs of the mutation
// check), the dead member and SIGTERM with time to finish; faults of the API and the
// broker are tests/e2e/faults.test.ts.
import { serve } from "@hono/node-server";
import { Hono } from "hono";
import { describe, expect, inject, it } from "vitest";
import {
  answeredTwice,
  belowCommitted,
  expectAnsweredAtLeastOnce,
  idOf,
} from "../support/evidence.ts";
import {
  committedOffsets,
  endOffsets,
  type OffsetsByPartition,
  readTopic,
  uniqueName,
} from "../support/kafka.ts";
import {
  committedCount,
  eventually,
  expectAllCommitted,
  expectRedeliveryBounded,
  fastFailover,
  faultCases,
  record,
  settledAnswers,
} from "../support/redelivery.ts";
import { consumerEnv, produce } from "../support/services.ts";
import { expectExit, statusesOf, within } from "../support/solved.ts";

const brokers = inject("kafkaBrokers");

const { solved, mockApi, runSolved } = faultCases();

describe("consumer-solved.ts stopped partway", () => {
  it("node: SIGKILL partway; a restart delivers every id, with duplicates only from what had reached the API uncommitted", {
    tags: ["full"],
  }, async () => {
    const api = await mockApi({});
    const backlog = await produce(brokers, uniqueName("crash"), { messages: 1_500 });
    const groupId = `${backlog.topic}-solved`;
    const env = consumerEnv(brokers, backlog.topic, groupId, {
      API_URL: api.usersUrl,
      CONCURRENCY: "20",
      HIGH_WATERMARK: "200",
      LOW_WATERMARK: "100",
      // Calls to the frozen API must not time out and finish before the kill.
      REQUEST_TIMEOUT_MS: "120000",
      ...fastFailover,
    });

    const first = solved("node", env);
    await first.waitForStatus((s) => s.processed >= backlog.messages / 3);
    // A status line is up to 500 ms old when the kill lands; work admitted and done in
    // between would count in no line. So freeze the API first (SIGSTOP): no call can
    // finish, the queue fills, fetching pauses, and once two lines in a row are the same,
    // paused with every call hanging, the last one describes the process as it is killed.
    process.kill(api.pid, "SIGSTOP");
    let previous: string | undefined;
    try {
      await first.waitForStatus(
        (s) => {
          const state = JSON.stringify([s.processed, s.queued, s.inFlight, s.uncommitted]);
          const steady = state === previous && s.paused && s.inFlight === s.limit;
          previous = state;
          return steady;
        },
        { newOnly: true, timeoutMs: 30_000 },
      );
      first.child.kill("SIGKILL");
      // Resume the API only once the consumer is gone and its sockets closed: the calls
      // it had open then end unanswered (the mock counts no 201 to a caller gone).
      await first.done;
    } finally {
      process.kill(api.pid, "SIGCONT");
    }
    const killed = await first.done;
    expect(killed.signal).toBe("SIGKILL");
    const last = first.statuses.at(-1);
    if (!last) throw new Error("no status line before the kill");
    const offsetsAtKill = await committedOffsets(brokers, groupId, backlog.topic);
    const committedAtKill = committedCount(offsetsAtKill);
    expect(committedAtKill).toBeGreaterThan(0); // so the restart has something to skip
    // Calls the kill cut off are not answers: the mock counts a 201 only to a live caller.
    const answeredAtKill = await settledAnswers(api);

    const second = await runSolved("node", env);
    expectExit(second, 0);
    const source = await readTopic(brokers, backlog.topic);
    // The bound on duplicates comes from the API and the broker, not from the consumer:
    // only ids answered before the kill and not committed by then may be answered again.
    const { bound, duplicates } = await expectRedeliveryBounded(
      api,
      source,
      offsetsAtKill,
      answeredAtKill,
    );
    expect(await readTopic(brokers, `${backlog.topic}.dlq`)).toEqual([]);
    await expectAllCommitted(groupId, backlog.topic);
    console.log(
      `[crash] ids answered twice ${duplicates} <= ${bound} answered before the kill and not committed; committed at the kill ${committedAtKill}, answered ${answeredAtKill.length}; the consumer's last status: in flight ${last.inFlight}, queued ${last.queued}, uncommitted ${last.uncommitted}, awaiting commit ${last.awaitingCommit}; it reprocessed ${second.summary?.processed} (its own count)`,
    );
    record("crash + restart", "node", backlog, second, `dup ${duplicates} <= ${bound}`);
  });

  it("node: SIGKILL while calls behind done ones never answer; the restart answers them (no commit past an unfinished offset)", async () => {
    // A local API that holds every 50th event (n % 50 == 10) without an answer and
    // answers the rest 201 at once: done offsets certainly wait behind unfinished ones.
    const succeeded: string[] = [];
    let holding = true;
    let release = () => {};
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const app = new Hono();
    app.post("/users", async (c) => {
      const { id } = (await c.req.json()) as { id: string };
      if (holding && Number(id.split("-").at(-1)) % 50 === 10) {
        await released;
        return c.json({ error: "released after the kill" }, 503);
      }
      succeeded.push(id);
      return c.json({ ok: true }, 201);
    });
    const server = await new Promise<{ port: number; close: () => void }>((resolve) => {
      const listening = serve({ fetch: app.fetch, hostname: "127.0.0.1", port: 0 }, (info) =>
        resolve({ port: info.port, close: () => listening.close() }),
      );
    });
    try {
      const backlog = await produce(brokers, uniqueName("held"), { messages: 600 });
      const held = backlog.ids.filter((id) => Number(id.split("-").at(-1)) % 50 === 10);
      const groupId = `${backlog.topic}-solved`;
      const env = consumerEnv(brokers, backlog.topic, groupId, {
        API_URL: `http://127.0.0.1:${server.port}/users`,
        CONCURRENCY: "20",
        COMMIT_INTERVAL_MS: "200",
        ...fastFailover,
      });
      const first = solved("node", env);
      // Every other event answered, then the commits settle (three equal readings).
      await eventually(
        async () => succeeded.length === backlog.messages - held.length,
        60_000,
        "answers",
      );
      let readings: string[] = [];
      await eventually(
        async () => {
          readings = [
            ...readings,
            JSON.stringify(await committedOffsets(brokers, groupId, backlog.topic)),
          ].slice(-3);
          return readings.length === 3 && new Set(readings).size === 1;
        },
        30_000,
        "the commits settling",
      );
      first.child.kill("SIGKILL");
      await first.done;
      const atKill = await committedOffsets(brokers, groupId, backlog.topic);
      const answeredAtKill = [...succeeded];
      holding = false;
      release();

      const second = await runSolved("node", env);
      expectExit(second, 0);
      const source = await readTopic(brokers, backlog.topic);
      const { bound, duplicates } = await expectRedeliveryBounded(
        { succeeded: async () => succeeded },
        source,
        atKill,
        answeredAtKill,
      );
      for (const id of held)
        expect(
          succeeded.filter((x) => x === id),
          id,
        ).toHaveLength(1);
      await expectAllCommitted(groupId, backlog.topic);
      console.log(
        `[held] ${held.length} held; committed at the kill ${committedCount(atKill)} of ${backlog.messages}, ${answeredAtKill.length} answered; ids answered twice ${duplicates} <= ${bound}`,
      );
      record("held calls + SIGKILL", "node", backlog, second, `dup ${duplicates} <= ${bound}`);
      expect(committedCount(atKill)).toBeLessThan(answeredAtKill.length); // done work waited
    } finally {
      release();
      server.close();
    }
  });

  it("node: two consumers in a group, one SIGKILLed partway; the other takes over its partitions", async () => {
    const api = await mockApi({});
    const backlog = await produce(brokers, uniqueName("group"), {
      messages: 1_800,
      partitions: 6,
    });
    const groupId = `${backlog.topic}-solved`;
    // Stopped from outside once the whole group is done: a member cannot tell that by
    // itself before the group has noticed the dead one (the session timeout).
    const env = consumerEnv(brokers, backlog.topic, groupId, {
      API_URL: api.usersUrl,
      CONCURRENCY: "10",
      HIGH_WATERMARK: "100",
      LOW_WATERMARK: "50",
      ...fastFailover,
    });
    const victim = solved("node", env);
    let atKill: OffsetsByPartition = {};
    let answeredAtKill: string[] = [];
    await victim.waitForStatus((s) => s.processed > 0);
    const survivor = solved("node", env);
    try {
      // Both hold partitions once the survivor has processed some.
      await survivor.waitForStatus((s) => s.processed > 0);
      await eventually(
        async () => (await api.stats()).distinctIds >= backlog.messages / 3,
        60_000,
        "a third of the backlog processed",
      );
      victim.child.kill("SIGKILL");
      const killed = await victim.done;
      expect(killed.signal).toBe("SIGKILL");
      atKill = await committedOffsets(brokers, groupId, backlog.topic);
      answeredAtKill = await settledAnswers(api);
      // The group has it all once every partition's commit reaches its end (the dead
      // member's partitions move after the session timeout).
      const ends = JSON.stringify(await endOffsets(brokers, backlog.topic));
      let committed = "";
      await eventually(
        async () => {
          committed = JSON.stringify(await committedOffsets(brokers, groupId, backlog.topic));
          return committed === ends;
        },
        120_000,
        "the group committing every partition to its end",
        async () =>
          `committed ${committed}, ends ${ends}; the survivor's last status lines:\n${survivor.statuses
            .slice(-3)
            .map((status) => JSON.stringify(status))
            .join("\n")}`,
      );
    } finally {
      survivor.child.kill("SIGTERM");
    }
    const result = await within(survivor.done, 30_000, "the survivor stopping");
    expectExit(result, 0);
    expect(result.summary?.exitReason).toBe("stopped by SIGTERM");
    // At least once, on the API's word. A handover repeats only unfinished work: after
    // the kill, no id is answered twice, and an id answered before it again only if the
    // broker had not committed it. (The join's handover, before the kill, may repeat
    // what was in flight then: those are reported, bounded by no figure of the run.)
    const counts = await expectAnsweredAtLeastOnce(api, backlog.ids);
    const source = await readTopic(brokers, backlog.topic);
    const done = new Set(belowCommitted(source, atKill).map((m) => idOf(m) as string));
    const before = new Set(answeredAtKill);
    const afterKill = (await api.succeeded()).slice(answeredAtKill.length);
    expect(new Set(afterKill).size).toBe(afterKill.length);
    const again = afterKill.filter((id) => before.has(id));
    for (const id of again)
      expect(done.has(id), `${id} committed at the kill, answered again`).toBe(false);
    const mayRepeat = [...before].filter((id) => !done.has(id)).length;
    console.log(
      `[group] after the kill ${again.length} ids answered again <= ${mayRepeat} answered before it and not committed; before the kill ${answeredAtKill.length - before.size} answered twice (the join's handover)`,
    );
    expect(await readTopic(brokers, `${backlog.topic}.dlq`)).toEqual([]);
    await expectAllCommitted(groupId, backlog.topic);
    const twice = answeredTwice(counts).length;
    console.log(
      `[group] ids answered twice ${twice}; committed at the kill ${committedCount(atKill)}; the survivor's own count: processed ${result.summary?.processed}, dropped on revoke ${result.summary?.droppedOnRevoke}`,
    );
    record("group member killed", "node", backlog, result, `dup ${twice}`);
    // It holds all six in the end, and itself committed to the end each partition the
    // dead member held unfinished.
    const ends = await endOffsets(brokers, backlog.topic);
    const orphans = (victim.statuses.at(-1)?.partitions ?? []).filter(
      (p) => Number(atKill[p]) < Number(ends[p]),
    );
    console.log(`[group] the dead member left partitions ${orphans} unfinished`);
    expect(orphans.length).toBeGreaterThan(0);
    expect(statusesOf(result).at(-1)?.partitions).toEqual([0, 1, 2, 3, 4, 5]);
    for (const p of orphans)
      expect(result.summary?.committed).toHaveProperty(String(p), Number(ends[p]));
  });

  describe.each([
    { label: "finishes the queue", shutdownMs: 10_000, tags: [] },
    { label: "abandons what is left at the deadline", shutdownMs: 300, tags: ["full"] },
  ])("bun: SIGTERM during a busy run $label", ({ shutdownMs, tags }) => {
    it("exits 0 and a restart reprocesses only what was unfinished", { tags }, async () => {
      const api = await mockApi({ LATENCY_MS: "100", JITTER_MS: "20" });
      const backlog = await produce(brokers, uniqueName("sigterm"), { messages: 1_200 });
      const groupId = `${backlog.topic}-solved`;
      const env = consumerEnv(brokers, backlog.topic, groupId, {
        API_URL: api.usersUrl,
        CONCURRENCY: "10",
        HIGH_WATERMARK: "200",
        LOW_WATERMARK: "100",
        SHUTDOWN_TIMEOUT_MS: String(shutdownMs),
      });
      const first = solved("bun", env);
      await first.waitForStatus((s) => s.processed >= 200 && s.queued >= 100);
      first.child.kill("SIGTERM");
      const stopped = await within(first.done, 30_000, "exit after SIGTERM");
      expectExit(stopped, 0);
      expect(stopped.summary?.exitReason).toBe("stopped by SIGTERM");
      const line = stopped.stderr.match(
        /stopped by SIGTERM: (\d+) messages were queued or in flight; (\d+) left unfinished/,
      );
      expect(line, stopped.stderr).not.toBeNull();
      const abandoned = Number(stopped.summary?.abandoned);
      expect(Number(line?.[2])).toBe(abandoned);
      expect(Number(line?.[1])).toBeGreaterThan(0); // it was busy
      const offsetsAtStop = await committedOffsets(brokers, groupId, backlog.topic);
      const committed = committedCount(offsetsAtStop);
      const answeredBefore = await settledAnswers(api);
      expect(new Set(answeredBefore).size).toBe(answeredBefore.length); // none twice yet

      const second = await runSolved("bun", env);
      expectExit(second, 0);
      const source = await readTopic(brokers, backlog.topic);
      const { bound, duplicates } = await expectRedeliveryBounded(
        api,
        source,
        offsetsAtStop,
        answeredBefore,
      );
      expect(await readTopic(brokers, `${backlog.topic}.dlq`)).toEqual([]);
      await expectAllCommitted(groupId, backlog.topic);
      console.log(
        `[sigterm, ${shutdownMs} ms to drain] committed ${committed} and answered ${answeredBefore.length} at the stop; ids answered twice ${duplicates} <= ${bound}; the consumer's own count: ${line?.[1]} queued or in flight at SIGTERM, ${abandoned} abandoned`,
      );
      record(
        `SIGTERM, ${shutdownMs} ms`,
        "bun",
        backlog,
        stopped,
        `abandoned ${abandoned}, again ${duplicates}`,
      );
      expect(committed).toBeLessThan(backlog.messages); // stopped partway
      if (shutdownMs < 1_000) {
        expect(abandoned).toBeGreaterThan(0);
      } else {
        // Given time, it finishes what it took and commits it all: exactly once.
        expect(bound).toBe(0);
        expect(abandoned).toBe(0);
      }
    });
  });
});
