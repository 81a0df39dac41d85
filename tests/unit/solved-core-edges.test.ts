// Edge cases of the solved consumer's core that the main unit file leaves out: the
// offset tracker after compaction, completions it should ignore, commits confirmed out
// of order, revokes with done work waiting; the work queue's lanes across a revoke,
// null keys, a raised limit, and a message bigger than the byte cap.
import { describe, expect, it } from "vitest";
import { brokerAway, OffsetTracker, Watermarks, WorkQueue } from "../../consumer-solved.ts";

describe("OffsetTracker, edges", () => {
  it("tracks and completes correctly across the compaction of its list", () => {
    const tracker = new OffsetTracker();
    let epoch = 0;
    for (let offset = 0; offset < 3_000; offset++) epoch = tracker.track(0, offset) as number;
    // Completing 0..1999 in order moves the head past 1024 and over half: compaction.
    for (let offset = 0; offset < 2_000; offset++) tracker.complete(0, offset, epoch);
    expect(tracker.position(0)).toBe(2_000);
    // Interleave new offsets with out-of-order completions after the compaction.
    for (let offset = 3_000; offset < 3_010; offset++) {
      expect(tracker.track(0, offset)).toBe(epoch);
      tracker.complete(0, offset, epoch); // done, but behind 2000..2999
    }
    expect(tracker.track(0, 2_500)).toBeUndefined(); // already held, compacted or not
    expect(tracker.track(0, 1_500)).toBeUndefined(); // already done
    expect(tracker.position(0)).toBe(2_000);
    expect(tracker.uncommitted).toBe(1_010);
    for (let offset = 2_999; offset >= 2_001; offset--) tracker.complete(0, offset, epoch);
    expect(tracker.position(0)).toBe(2_000); // 2000 still unfinished
    tracker.complete(0, 2_000, epoch);
    expect(tracker.position(0)).toBe(3_010);
    expect(tracker.uncommitted).toBe(0);
    expect(tracker.track(0, 3_010)).toBe(epoch);
    tracker.complete(0, 3_010, epoch);
    expect(tracker.committable()).toEqual([{ partition: 0, offset: 3_011 }]);
  });

  it("ignores a completion it already had", () => {
    const tracker = new OffsetTracker();
    const epoch = tracker.track(0, 0) as number;
    tracker.track(0, 1);
    tracker.track(0, 2);
    tracker.complete(0, 0, epoch);
    tracker.complete(0, 0, epoch); // the head moved on: a second word for 0 changes nothing
    tracker.complete(0, 2, epoch);
    tracker.complete(0, 2, epoch);
    expect(tracker.position(0)).toBe(1);
    expect(tracker.uncommitted).toBe(2);
    tracker.complete(0, 1, epoch);
    expect(tracker.position(0)).toBe(3);
    expect(tracker.uncommitted).toBe(0);
  });

  it("ignores a completion for an offset never tracked, even once that offset arrives", () => {
    const tracker = new OffsetTracker();
    const epoch = tracker.track(0, 0) as number;
    tracker.complete(0, 5, epoch); // no such message taken
    tracker.complete(0, 0, epoch);
    expect(tracker.position(0)).toBe(1);
    expect(tracker.uncommitted).toBe(0);
    // Offsets 1..5 arrive later: 5 was never processed, so it must not count as done.
    for (let offset = 1; offset <= 5; offset++) tracker.track(0, offset);
    for (let offset = 1; offset <= 4; offset++) tracker.complete(0, offset, epoch);
    expect(tracker.position(0)).toBe(5);
    expect(tracker.uncommitted).toBe(1);
    tracker.complete(0, 5, epoch);
    expect(tracker.position(0)).toBe(6);
  });

  it("ignores a completion for an unknown partition", () => {
    const tracker = new OffsetTracker();
    tracker.complete(3, 0, 1);
    expect(tracker.committable()).toEqual([]);
    expect(tracker.uncommitted).toBe(0);
  });

  it("takes the broker's last word when a confirmation goes backwards, and offers the position again", () => {
    const tracker = new OffsetTracker();
    const epoch = tracker.track(0, 0) as number;
    for (let offset = 1; offset < 10; offset++) tracker.track(0, offset);
    for (let offset = 0; offset < 10; offset++) tracker.complete(0, offset, epoch);
    tracker.markCommitted(0, 10);
    expect(tracker.committable()).toEqual([]);
    // Commits are sent one after another, so the last confirmation is what the broker
    // holds: if it says 5, offsets 5..9 are not safe and 10 must be committed again.
    tracker.markCommitted(0, 5);
    expect(tracker.committed(0)).toBe(5);
    expect(tracker.committable()).toEqual([{ partition: 0, offset: 10 }]);
    expect(tracker.awaitingCommit).toBe(5);
  });

  it("on a revoke, forgets done offsets waiting behind an unfinished one: the next owner redoes them", () => {
    const tracker = new OffsetTracker();
    const old = tracker.track(0, 0) as number;
    for (let offset = 1; offset < 5; offset++) tracker.track(0, offset);
    for (const offset of [1, 2, 3]) tracker.complete(0, offset, old);
    expect(tracker.uncommitted).toBe(5);
    expect(tracker.committable()).toEqual([]);
    tracker.revoke(0);
    expect(tracker.uncommitted).toBe(0);
    expect(tracker.committable()).toEqual([]);
    tracker.complete(0, 0, old); // the unfinished one ends after the revoke: ignored
    expect(tracker.committable()).toEqual([]);
    // Assigned again from the committed offset (none: 0): 1..3 are not done any more.
    const fresh = tracker.track(0, 0) as number;
    for (let offset = 1; offset < 5; offset++) expect(tracker.track(0, offset)).toBe(fresh);
    tracker.complete(0, 0, fresh);
    expect(tracker.position(0)).toBe(1);
    expect(tracker.uncommitted).toBe(4);
  });
});

interface Job {
  id: number;
  partition: number;
  key: string | null;
  bytes: number;
}

/** A queue whose jobs finish only when the test says so. */
function controlled(concurrency: number, keyOrdering: boolean) {
  const running = new Map<number, () => void>();
  const started: number[] = [];
  let limit = concurrency;
  const queue = new WorkQueue<Job>({
    concurrency: () => limit,
    keyOrdering,
    run: (job) =>
      new Promise<void>((resolve) => {
        started.push(job.id);
        running.set(job.id, resolve);
      }),
  });
  const finish = async (id: number) => {
    const resolve = running.get(id);
    if (!resolve) throw new Error(`job ${id} is not running`);
    running.delete(id);
    resolve();
    await queue.settled();
  };
  const setLimit = (n: number) => {
    limit = n;
  };
  return { queue, started, running, finish, setLimit };
}

const job = (id: number, partition = 0, key: string | null = null, bytes = 10): Job => ({
  id,
  partition,
  key,
  bytes,
});

describe("WorkQueue, edges", () => {
  it("a revoke while a keyed head runs: the same key, assigned again, waits for that head, then runs", async () => {
    const q = controlled(5, true);
    q.queue.push(job(0, 0, "k")); // running
    q.queue.push(job(1, 0, "k")); // waiting behind it
    expect(q.queue.dropPartition(0)).toBe(1);
    expect(q.queue.queued).toBe(0);
    q.queue.push(job(2, 0, "k")); // the partition comes back; same key
    expect(q.started).toEqual([0]); // still one per key: 0 runs
    await q.finish(0);
    expect(q.started).toEqual([0, 2]); // 1 was dropped, never run
    await q.finish(2);
    await q.queue.drained();
    expect(q.queue.bytes).toBe(0);
    q.queue.push(job(3, 0, "k")); // the lane is free again
    expect(q.started).toEqual([0, 2, 3]);
    await q.finish(3);
  });

  it("with key ordering, messages without a key run concurrently, not in one lane", async () => {
    const q = controlled(10, true);
    for (let id = 0; id < 4; id++) q.queue.push(job(id, 0, null));
    q.queue.push(job(4, 0, "k"));
    q.queue.push(job(5, 0, "k"));
    expect(q.started).toEqual([0, 1, 2, 3, 4]);
    expect(q.queue.queued).toBe(1);
    await q.finish(4);
    expect(q.started).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it("a raised limit starts more jobs at the next push or settle, up to the new limit", async () => {
    const q = controlled(2, false);
    for (let id = 0; id < 10; id++) q.queue.push(job(id));
    expect(q.queue.inFlight).toBe(2);
    q.setLimit(5); // nothing settles
    q.queue.push(job(10));
    expect(q.queue.inFlight).toBe(5);
    expect(q.started).toEqual([0, 1, 2, 3, 4]);
    q.setLimit(7);
    await q.finish(0);
    expect(q.queue.inFlight).toBe(7);
    expect(q.queue.queued).toBe(3);
  });

  it("one message larger than the byte cap gets into an empty queue, runs, and pauses fetching until it settles", async () => {
    const cap = 1_000;
    const marks = new Watermarks({ messages: 100, bytes: cap, uncommitted: 1_000 }, 0.5);
    const q = controlled(4, false);
    const load = () => ({ messages: q.queue.queued, bytes: q.queue.bytes, uncommitted: 0 });
    const big = job(0, 0, null, 5 * cap);
    expect(marks.hasRoom(load(), big.bytes)).toBe(true); // empty: it must get in
    q.queue.push(big);
    expect(q.started).toEqual([0]);
    expect(marks.update(load())).toBe("pause");
    expect(marks.hasRoom(load(), 1)).toBe(false); // nothing else while it is held
    await q.finish(0);
    expect(q.queue.bytes).toBe(0);
    expect(marks.update(load())).toBe("resume");
    expect(marks.hasRoom(load(), 10)).toBe(true);
  });
});

describe("brokerAway tells an outage from other crashes", () => {
  it("finds a broker outage in the error or its causes, as KafkaJS wraps them", () => {
    const refused = {
      name: "KafkaJSConnectionError",
      message: "connect ECONNREFUSED 127.0.0.1:9092",
    };
    const coordinator = {
      name: "KafkaJSGroupCoordinatorNotFound",
      message: "Failed to find group coordinator",
    };
    expect(brokerAway(coordinator)).toBe(true);
    expect(
      brokerAway({ name: "KafkaJSNoBrokerAvailableError", message: "No broker available" }),
    ).toBe(true);
    const retries = {
      name: "KafkaJSNumberOfRetriesExceeded",
      message: "retries exceeded",
      cause: refused,
    };
    expect(brokerAway(retries)).toBe(true);
    expect(brokerAway(new Error("read ECONNRESET"))).toBe(true);
  });

  it("does not take a refusal, a bug or a protocol error for an outage", () => {
    const denied = {
      name: "KafkaJSProtocolError",
      type: "GROUP_AUTHORIZATION_FAILED",
      message: "Not authorized to access group",
    };
    expect(brokerAway(denied)).toBe(false);
    expect(brokerAway(new TypeError("cannot read properties of undefined"))).toBe(false);
    expect(brokerAway(undefined)).toBe(false);
  });
});
