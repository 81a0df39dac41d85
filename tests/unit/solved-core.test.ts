// The solved consumer's core, without a broker: watermarks, offset tracking, the work
// queue, the adaptive limit and the small pure helpers.
import { describe, expect, it } from "vitest";
import {
  AdaptiveLimit,
  ApiHealth,
  backoffMs,
  OffsetTracker,
  parseEvent,
  retryAfterMs,
  throttledDelayMs,
  Watermarks,
  WorkQueue,
} from "../../consumer-solved.ts";

const high = { messages: 100, bytes: 10_000, uncommitted: 1_000 };
const idle = { messages: 0, bytes: 0, uncommitted: 0 };

describe("Watermarks", () => {
  it("pauses when the queue reaches the high watermark", () => {
    const marks = new Watermarks(high, 0.5);
    expect(marks.update({ ...idle, messages: 99 })).toBeUndefined();
    expect(marks.update({ ...idle, messages: 100 })).toBe("pause");
    expect(marks.paused).toBe(true);
  });

  it("pauses at the byte cap whatever the message count", () => {
    const marks = new Watermarks(high, 0.5);
    expect(marks.update({ ...idle, messages: 3, bytes: 9_999 })).toBeUndefined();
    expect(marks.update({ ...idle, messages: 3, bytes: 10_000 })).toBe("pause");
  });

  it("pauses as soon as a next message of the same size would not fit under the byte cap", () => {
    const marks = new Watermarks(high, 0.5);
    expect(marks.update({ ...idle, messages: 3, bytes: 9_000 }, 1_000)).toBeUndefined();
    expect(marks.update({ ...idle, messages: 3, bytes: 9_001 }, 1_000)).toBe("pause");
  });

  it("pauses when too much is taken but not committable", () => {
    const marks = new Watermarks(high, 0.5);
    expect(marks.update({ ...idle, messages: 1, uncommitted: 1_000 })).toBe("pause");
  });

  it("resumes at the low watermark and not before", () => {
    const marks = new Watermarks(high, 0.5);
    marks.update({ ...idle, messages: 100 });
    for (const messages of [99, 80, 51]) {
      expect(marks.update({ ...idle, messages })).toBeUndefined();
      expect(marks.paused).toBe(true);
    }
    expect(marks.update({ ...idle, messages: 50 })).toBe("resume");
    expect(marks.paused).toBe(false);
  });

  it("stays paused while any measure is above its low mark", () => {
    const marks = new Watermarks(high, 0.5);
    marks.update({ ...idle, bytes: 10_000 });
    expect(marks.update({ messages: 10, bytes: 5_001, uncommitted: 0 })).toBeUndefined();
    expect(marks.update({ messages: 10, bytes: 5_000, uncommitted: 0 })).toBe("resume");
  });

  it("has room for one more message only under both caps, and always when empty", () => {
    const marks = new Watermarks(high, 0.5);
    expect(marks.hasRoom({ ...idle, messages: 99, bytes: 100 }, 10)).toBe(true);
    expect(marks.hasRoom({ ...idle, messages: 100, bytes: 100 }, 10)).toBe(false);
    expect(marks.hasRoom({ ...idle, messages: 5, bytes: 9_995 }, 10)).toBe(false);
    // bytes still held by running jobs count: nothing queued, yet no room
    expect(marks.hasRoom({ ...idle, messages: 0, bytes: 9_995 }, 10)).toBe(false);
    expect(marks.hasRoom(idle, 50_000)).toBe(true); // bigger than the cap, but nothing else is held
    expect(marks.hasRoom({ ...idle, messages: 100 }, 0)).toBe(false); // empty values count as messages
  });
});

describe("OffsetTracker", () => {
  it("commits only the contiguous processed prefix when completions come out of order", () => {
    const tracker = new OffsetTracker();
    const epoch = tracker.track(0, 10);
    for (const offset of [11, 12, 13]) tracker.track(0, offset);
    if (epoch === undefined) throw new Error("not tracked");
    tracker.complete(0, 12, epoch);
    tracker.complete(0, 13, epoch);
    expect(tracker.committable()).toEqual([]); // 10 and 11 still unfinished
    tracker.complete(0, 10, epoch);
    expect(tracker.committable()).toEqual([{ partition: 0, offset: 11 }]);
    tracker.complete(0, 11, epoch);
    expect(tracker.committable()).toEqual([{ partition: 0, offset: 14 }]);
    expect(tracker.uncommitted).toBe(0);
  });

  it("keeps partitions apart", () => {
    const tracker = new OffsetTracker();
    const a = tracker.track(0, 5) as number;
    const b = tracker.track(1, 7) as number;
    tracker.track(1, 8);
    tracker.complete(1, 8, b);
    tracker.complete(0, 5, a);
    expect(tracker.committable()).toEqual([{ partition: 0, offset: 6 }]);
    tracker.complete(1, 7, b);
    expect(tracker.committable()).toContainEqual({ partition: 1, offset: 9 });
  });

  it("steps over gaps in the offsets (compacted topics, transaction markers)", () => {
    const tracker = new OffsetTracker();
    const epoch = tracker.track(0, 3) as number;
    tracker.track(0, 7);
    tracker.complete(0, 7, epoch);
    tracker.complete(0, 3, epoch);
    expect(tracker.position(0)).toBe(8);
  });

  it("offers an offset once; after markCommitted it is not offered again", () => {
    const tracker = new OffsetTracker();
    const epoch = tracker.track(2, 0) as number;
    tracker.complete(2, 0, epoch);
    expect(tracker.committable()).toEqual([{ partition: 2, offset: 1 }]);
    tracker.markCommitted(2, 1);
    expect(tracker.committable()).toEqual([]);
    expect(tracker.committedOffsets()).toEqual(new Map([[2, 1]]));
  });

  it("refuses an offset it already has, queued or done (a redelivery)", () => {
    const tracker = new OffsetTracker();
    const epoch = tracker.track(0, 1) as number;
    tracker.track(0, 2);
    expect(tracker.track(0, 2)).toBeUndefined();
    tracker.complete(0, 1, epoch);
    tracker.complete(0, 2, epoch);
    expect(tracker.track(0, 1)).toBeUndefined();
    expect(tracker.track(0, 3)).toBe(epoch);
  });

  it("ignores completions from before a revoke, and forgets the revoked partition", () => {
    const tracker = new OffsetTracker();
    const old = tracker.track(0, 0) as number;
    tracker.track(0, 1);
    tracker.revoke(0);
    expect(tracker.uncommitted).toBe(0);
    const fresh = tracker.track(0, 0) as number;
    expect(fresh).not.toBe(old);
    tracker.complete(0, 0, old); // the call that was in flight when we lost the partition
    expect(tracker.committable()).toEqual([]);
    tracker.complete(0, 0, fresh);
    expect(tracker.committable()).toEqual([{ partition: 0, offset: 1 }]);
  });

  it("counts what is taken but not yet committable", () => {
    const tracker = new OffsetTracker();
    const epoch = tracker.track(0, 0) as number;
    for (let offset = 1; offset < 10; offset++) tracker.track(0, offset);
    for (let offset = 1; offset < 10; offset++) tracker.complete(0, offset, epoch);
    expect(tracker.uncommitted).toBe(10); // all behind offset 0
    tracker.complete(0, 0, epoch);
    expect(tracker.uncommitted).toBe(0);
  });

  it("counts what is done but waits for the commit, so a crash's redelivery is known", () => {
    const tracker = new OffsetTracker();
    const epoch = tracker.track(0, 40) as number; // the group's committed offset was 40
    for (let offset = 41; offset < 50; offset++) tracker.track(0, offset);
    for (let offset = 40; offset < 45; offset++) tracker.complete(0, offset, epoch);
    tracker.complete(0, 47, epoch);
    expect(tracker.awaitingCommit).toBe(5); // 40..44: committable, not committed yet
    expect(tracker.uncommitted).toBe(5); // 45..49, 47 among them though done
    tracker.markCommitted(0, 43); // a commit that started before 43 and 44 were done
    expect(tracker.awaitingCommit).toBe(2);
    tracker.markCommitted(0, 45);
    expect(tracker.awaitingCommit).toBe(0);
    expect(tracker.committed(0)).toBe(45);
    const other = tracker.track(1, 0) as number;
    tracker.complete(1, 0, other);
    expect(tracker.awaitingCommit).toBe(1);
  });

  it("keeps the right answer over many out-of-order completions", () => {
    const tracker = new OffsetTracker();
    const count = 50_000;
    let epoch = 0;
    for (let offset = 0; offset < count; offset++) epoch = tracker.track(0, offset) as number;
    // Complete in a scrambled order; after each, the position is the lowest unfinished.
    const order = Array.from({ length: count }, (_, i) => (i * 7_919) % count);
    const finished = new Uint8Array(count);
    let lowest = 0;
    for (const [index, offset] of order.entries()) {
      tracker.complete(0, offset, epoch);
      finished[offset] = 1;
      while (lowest < count && finished[lowest]) lowest++;
      if (index % 997 === 0 || index === count - 1) {
        expect(tracker.position(0) ?? 0).toBe(lowest);
      }
    }
    expect(tracker.position(0)).toBe(count);
  });
});

interface TestJob {
  id: number;
  partition: number;
  key: string | null;
  bytes: number;
}

/** A queue whose jobs finish only when the test says so. */
function controlledQueue(concurrency: number, keyOrdering = false) {
  const running = new Map<number, () => void>();
  const started: number[] = [];
  let maxInFlight = 0;
  let limit = concurrency;
  const queue = new WorkQueue<TestJob>({
    concurrency: () => limit,
    keyOrdering,
    run: (job) =>
      new Promise<void>((resolve) => {
        started.push(job.id);
        running.set(job.id, resolve);
        maxInFlight = Math.max(maxInFlight, queue.inFlight);
      }),
  });
  const finish = async (id: number) => {
    running.get(id)?.();
    running.delete(id);
    await queue.settled();
  };
  return {
    queue,
    started,
    running,
    finish,
    maxInFlight: () => maxInFlight,
    setLimit: (n: number) => {
      limit = n;
    },
  };
}

const job = (id: number, partition = 0, key: string | null = null, bytes = 10): TestJob => ({
  id,
  partition,
  key,
  bytes,
});

describe("WorkQueue", () => {
  it("never runs more than the concurrency limit at once", async () => {
    const q = controlledQueue(3);
    for (let id = 0; id < 20; id++) q.queue.push(job(id));
    expect(q.queue.inFlight).toBe(3);
    expect(q.queue.queued).toBe(17);
    while (q.running.size > 0) {
      await q.finish([...q.running.keys()][0] as number);
      expect(q.queue.inFlight).toBeLessThanOrEqual(3);
    }
    expect(q.started).toHaveLength(20);
    expect(q.maxInFlight()).toBe(3);
  });

  it("runs jobs in the order they came and counts bytes until each job settles", async () => {
    const q = controlledQueue(1);
    for (let id = 0; id < 4; id++) q.queue.push(job(id, 0, null, 100));
    expect(q.queue.bytes).toBe(400); // the running one still holds its message
    await q.finish(0);
    await q.finish(1);
    expect(q.started).toEqual([0, 1, 2]);
    expect(q.queue.bytes).toBe(200);
  });

  it("follows a lowered limit: no new start until in flight is below it", async () => {
    const q = controlledQueue(4);
    for (let id = 0; id < 10; id++) q.queue.push(job(id));
    q.setLimit(2);
    await q.finish(0);
    await q.finish(1);
    expect(q.queue.inFlight).toBe(2); // 2 and 3 still running, nothing new started
    expect(q.started).toEqual([0, 1, 2, 3]);
    await q.finish(2);
    expect(q.started).toEqual([0, 1, 2, 3, 4]);
  });

  it("with key ordering, runs one job per key at a time, in order, other keys alongside", async () => {
    const q = controlledQueue(10, true);
    q.queue.push(job(0, 0, "a"));
    q.queue.push(job(1, 0, "a"));
    q.queue.push(job(2, 0, "b"));
    q.queue.push(job(3, 0, "a"));
    q.queue.push(job(4, 1, "a")); // same key, other partition: its own lane
    expect(q.started).toEqual([0, 2, 4]);
    expect(q.queue.queued).toBe(2);
    await q.finish(0);
    expect(q.started).toEqual([0, 2, 4, 1]);
    await q.finish(1);
    expect(q.started).toEqual([0, 2, 4, 1, 3]);
  });

  it("drops the queued jobs of a revoked partition and keeps the others", async () => {
    const q = controlledQueue(1, true);
    q.queue.push(job(0, 0));
    q.queue.push(job(1, 1));
    q.queue.push(job(2, 0, "k"));
    q.queue.push(job(3, 0, "k"));
    q.queue.push(job(4, 1));
    expect(q.queue.dropPartition(0)).toBe(2);
    expect(q.queue.queued).toBe(2);
    expect(q.queue.bytes).toBe(30); // job 0 is still running
    await q.finish(0);
    await q.finish(1);
    await q.finish(4);
    expect(q.started).toEqual([0, 1, 4]);
  });

  it("does not leave a key stuck when its ready head is dropped with its partition", async () => {
    const q = controlledQueue(1, true);
    q.queue.push(job(0, 1, "busy")); // takes the only slot
    q.queue.push(job(1, 0, "k")); // ready, holding lane k, not started
    q.queue.dropPartition(0);
    q.queue.push(job(2, 0, "k")); // partition 0 assigned again, same key
    await q.finish(0);
    expect(q.started).toEqual([0, 2]);
    await q.finish(2);
    await q.queue.drained();
  });

  it("drains: drained() resolves only once everything queued and in flight is done", async () => {
    const q = controlledQueue(2);
    for (let id = 0; id < 5; id++) q.queue.push(job(id));
    let drained = false;
    const done = q.queue.drained().then(() => {
      drained = true;
    });
    for (let id = 0; id < 4; id++) {
      await q.finish(id);
      expect(drained).toBe(false);
    }
    await q.finish(4);
    await done;
    expect(drained).toBe(true);
    expect(q.queue.queued + q.queue.inFlight).toBe(0);
  });

  it("settles a job that throws and hands the error to onError, never swallows it", async () => {
    // Issue 14: a bug in `run` used to vanish, and commits stalled behind that offset.
    const errors: unknown[] = [];
    const queue = new WorkQueue<TestJob>({
      concurrency: () => 1,
      keyOrdering: false,
      run: async (j) => {
        throw new Error(`bug in job ${j.id}`);
      },
      onError: (error, j) => errors.push([(error as Error).message, j.id]),
    });
    queue.push(job(0));
    queue.push(job(1));
    await queue.drained();
    expect(queue.inFlight).toBe(0);
    expect(errors).toEqual([
      ["bug in job 0", 0],
      ["bug in job 1", 1],
    ]);
  });
});

/**
 * A queue whose jobs the test steers: `wait(id)` makes a running job wait without its
 * slot until `waitOver(id)`; `finish(id)` ends it; `attempts` lists starts and
 * returns, in order ("0", then "0 again" after its wait).
 */
function retryingQueue(concurrency: number, keyOrdering = false) {
  const attempts: string[] = [];
  const errors: unknown[] = [];
  const steps = new Map<number, (step: "wait" | "finish") => void>();
  const waits = new Map<number, { resolve: () => void; reject: (error: Error) => void }>();
  let limit = concurrency;
  const queue = new WorkQueue<TestJob>({
    concurrency: () => limit,
    keyOrdering,
    run: async (job) => {
      attempts.push(String(job.id));
      for (;;) {
        const step = await new Promise<"wait" | "finish">((resolve) => steps.set(job.id, resolve));
        if (step === "finish") return;
        const wait = new Promise<void>((resolve, reject) => waits.set(job.id, { resolve, reject }));
        await queue.withoutSlot(wait);
        attempts.push(`${job.id} again`);
      }
    },
    onError: (error) => errors.push(error), // an aborted wait, as the consumer's shutdown
  });
  const tick = () => new Promise((resolve) => setTimeout(resolve, 0));
  const step = async (id: number, what: "wait" | "finish") => {
    const next = steps.get(id);
    if (!next) throw new Error(`job ${id} is not running`);
    steps.delete(id);
    next(what);
    await tick();
  };
  return {
    queue,
    attempts,
    wait: (id: number) => step(id, "wait"),
    finish: (id: number) => step(id, "finish"),
    waitOver: async (id: number) => {
      waits.get(id)?.resolve();
      waits.delete(id);
      await tick();
    },
    abortWait: async (id: number) => {
      waits.get(id)?.reject(new Error("shutdown"));
      waits.delete(id);
      await tick();
    },
    setLimit: (n: number) => {
      limit = n;
    },
  };
}

describe("WorkQueue: a job waiting to be retried", () => {
  it("gives its slot to the next job while it waits, and stays held meanwhile", async () => {
    const q = retryingQueue(1);
    for (let id = 0; id < 3; id++) q.queue.push(job(id, 0, null, 100));
    await q.wait(0);
    expect(q.attempts).toEqual(["0", "1"]); // job 1 took the slot at once
    expect(q.queue.inFlight).toBe(1);
    expect(q.queue.retrying).toBe(1);
    expect(q.queue.queued).toBe(2); // job 2, and job 0 waiting: counted for the watermarks
    expect(q.queue.bytes).toBe(300); // and for the byte cap
  });

  it("comes back ahead of the jobs not started yet, once a slot is free", async () => {
    const q = retryingQueue(1);
    for (let id = 0; id < 3; id++) q.queue.push(job(id));
    await q.wait(0);
    await q.waitOver(0);
    expect(q.attempts).toEqual(["0", "1"]); // its wait is over, but the slot is job 1's
    expect(q.queue.inFlight).toBe(1);
    await q.finish(1);
    expect(q.attempts).toEqual(["0", "1", "0 again"]);
    expect(q.queue.retrying).toBe(0);
    await q.finish(0);
    expect(q.attempts).toEqual(["0", "1", "0 again", "2"]);
  });

  it("comes back only under the current limit", async () => {
    const q = retryingQueue(2);
    for (let id = 0; id < 4; id++) q.queue.push(job(id));
    await q.wait(0); // job 2 starts
    q.setLimit(1);
    await q.waitOver(0);
    await q.finish(1);
    expect(q.queue.inFlight).toBe(1); // job 2 alone: still at the limit
    expect(q.attempts).toEqual(["0", "1", "2"]);
    await q.finish(2);
    expect(q.attempts).toEqual(["0", "1", "2", "0 again"]);
  });

  it("keeps its key's lane blocked: the next job of that key waits, other keys run", async () => {
    const q = retryingQueue(2, true);
    q.queue.push(job(0, 0, "a"));
    q.queue.push(job(1, 0, "a"));
    q.queue.push(job(2, 0, "b"));
    q.queue.push(job(3, 0, "c"));
    await q.wait(0);
    expect(q.attempts).toEqual(["0", "2", "3"]); // not job 1: it stays behind job 0
    await q.waitOver(0);
    await q.finish(2);
    await q.finish(0);
    expect(q.attempts).toEqual(["0", "2", "3", "0 again", "1"]);
  });

  it("settles only when its run ends: drained() waits for it, its bytes are held until then", async () => {
    const q = retryingQueue(1);
    q.queue.push(job(0, 0, null, 100));
    let drained = false;
    const done = q.queue.drained().then(() => {
      drained = true;
    });
    await q.wait(0);
    expect(q.queue.inFlight).toBe(0);
    expect(drained).toBe(false);
    await q.waitOver(0);
    expect(drained).toBe(false);
    expect(q.queue.bytes).toBe(100);
    await q.finish(0);
    await done;
    expect(q.queue.bytes).toBe(0);
  });

  it("settles at once when its wait is aborted (shutdown), and the counts come back to zero", async () => {
    const q = retryingQueue(1);
    q.queue.push(job(0));
    q.queue.push(job(1));
    await q.wait(0);
    await q.abortWait(0);
    expect(q.queue.retrying).toBe(0);
    expect(q.queue.inFlight).toBe(1); // job 1 only
    expect(q.queue.queued).toBe(0);
    await q.finish(1);
    expect(q.queue.inFlight + q.queue.queued + q.queue.bytes).toBe(0);
  });
});

describe("AdaptiveLimit", () => {
  it("cuts to 0.7× on overload, once per round, and climbs back by about one per round", () => {
    const limit = new AdaptiveLimit(32);
    limit.onOverload(0, 100);
    expect(limit.current).toBe(22); // 22.4
    limit.onOverload(50, 101); // started before the cut: the same episode
    expect(limit.current).toBe(22);
    limit.onOverload(150, 200);
    expect(limit.current).toBe(15); // 15.68
    for (let i = 0; i < 5; i++) limit.onSuccess();
    expect(limit.current).toBe(15); // 15.68 + 1/15.68 + … just short of 16
    limit.onSuccess();
    expect(limit.current).toBe(16);
  });

  it("stays within 1 and the maximum", () => {
    const limit = new AdaptiveLimit(4);
    for (let i = 0; i < 10; i++) limit.onOverload(i * 10, i * 10 + 1);
    expect(limit.current).toBe(1);
    for (let i = 0; i < 1_000; i++) limit.onSuccess();
    expect(limit.current).toBe(4);
  });
});

describe("helpers", () => {
  it("backs off exponentially with jitter, capped", () => {
    expect(backoffMs(1, 100, 10_000, () => 0)).toBe(50);
    expect(backoffMs(1, 100, 10_000, () => 1)).toBe(100);
    expect(backoffMs(4, 100, 10_000, () => 1)).toBe(800);
    expect(backoffMs(20, 100, 10_000, () => 1)).toBe(10_000);
  });

  it("waits after a 429 for Retry-After, but never less than the backoff nor more than the cap", () => {
    const top = () => 1; // backoff at its ceiling: 100, 200, 400 … ms
    expect(throttledDelayMs(1, 0, 100, 10_000, top)).toBe(100); // "Retry-After: 0" is no hot loop
    expect(throttledDelayMs(3, 0, 100, 10_000, top)).toBe(400);
    expect(throttledDelayMs(1, 2_000, 100, 10_000, top)).toBe(2_000);
    expect(throttledDelayMs(1, undefined, 100, 10_000, top)).toBe(100);
    expect(throttledDelayMs(1, 60_000, 100, 10_000, top)).toBe(10_000);
    expect(throttledDelayMs(1_000, undefined, 100, 10_000, top)).toBe(10_000);
  });

  it("reads Retry-After as seconds or as an HTTP date", () => {
    const now = Date.parse("2026-11-28T10:00:00Z");
    expect(retryAfterMs("2", now)).toBe(2_000);
    expect(retryAfterMs("Sat, 28 Nov 2026 10:00:05 GMT", now)).toBe(5_000);
    expect(retryAfterMs("soon", now)).toBeUndefined();
    expect(retryAfterMs(null, now)).toBeUndefined();
  });

  it("says what is wrong with a malformed message", () => {
    const event = { id: "1", email: "a@example.com", username: "a" };
    expect(parseEvent(Buffer.from(JSON.stringify(event)))).toEqual({ event });
    expect(parseEvent(null)).toEqual({ problem: expect.stringMatching(/null value/) });
    expect(parseEvent(Buffer.from("{not json"))).toEqual({
      problem: expect.stringMatching(/invalid JSON/),
    });
    expect(parseEvent(Buffer.from("[1,2]"))).toEqual({ problem: "not a JSON object" });
    expect(parseEvent(Buffer.from(JSON.stringify({ id: "1" })))).toEqual({
      problem: "missing or non-string fields: email, username",
    });
  });

  it("notices an API that has not answered for longer than the limit", () => {
    const health = new ApiHealth(1_000);
    health.record({ kind: "unreachable", reason: "ECONNREFUSED" }, 0);
    expect(health.unreachableFor(900)).toBeUndefined();
    expect(health.unreachableFor(1_500)).toBe(1_500);
    health.record({ kind: "failed", reason: "HTTP 500" }, 1_600); // an answer, even a bad one
    expect(health.unreachableFor(5_000)).toBeUndefined();
    health.record({ kind: "timeout", reason: "no answer" }, 6_000);
    expect(health.unreachableFor(7_100)).toBe(1_100);
    expect(health.lastError).toBe("no answer");
  });
});
