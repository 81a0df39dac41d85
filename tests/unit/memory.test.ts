// How the solved consumer keeps its own memory bounded, without a broker: the memory
// guard (collect, then pause), the watermarks' memory rule, and a work queue that lets
// go of what it has started.
import v8 from "node:v8";
import vm from "node:vm";
import { describe, expect, it } from "vitest";
import { MemoryGuard, Watermarks, WorkQueue } from "../../consumer-solved.ts";

/** A guard over a scripted RSS; `rss` is what the next reading returns. */
function scripted(budgetMb: number, options?: ConstructorParameters<typeof MemoryGuard>[3]) {
  const state = { rss: 0, collections: 0, afterCollection: undefined as number | undefined };
  const guard = new MemoryGuard(
    budgetMb,
    () => state.rss,
    () => {
      state.collections++;
      if (state.afterCollection !== undefined) state.rss = state.afterCollection;
    },
    options,
  );
  return { guard, state };
}

const MiB = 2 ** 20;

describe("MemoryGuard", () => {
  it("does nothing below half the budget, however much comes in", () => {
    const { guard, state } = scripted(256);
    state.rss = 127;
    for (let i = 0; i < 100; i++) guard.taken(MiB);
    expect(state.collections).toBe(0);
    expect(guard.pressure).toBe(false);
  });

  it("above half the budget, collects once per sixteenth of the budget taken in", () => {
    const { guard, state } = scripted(256); // 16 MiB per collection
    state.rss = 140;
    for (let i = 0; i < 15; i++) guard.taken(MiB);
    expect(state.collections).toBe(0);
    guard.taken(MiB);
    expect(state.collections).toBe(1);
    for (let i = 0; i < 16; i++) guard.taken(MiB);
    expect(state.collections).toBe(2);
    expect(guard.pressure).toBe(false);
  });

  it("reports pressure when a collection leaves RSS past 70% of the budget", () => {
    const { guard, state } = scripted(256);
    state.rss = 200;
    state.afterCollection = 190; // 179.2 is 70%
    for (let i = 0; i < 16; i++) guard.taken(MiB);
    expect(state.collections).toBe(1);
    expect(guard.pressure).toBe(true);
  });

  it("under pressure, collects at most every minGapMs, and clears when RSS is back", () => {
    const { guard, state } = scripted(256, { minGapMs: 100 });
    state.rss = 180; // past 70% (179.2), nothing taken in: no collection due yet
    expect(guard.check(0)).toBe(true);
    expect(state.collections).toBe(0);
    // Under pressure nothing more comes in, so collections are timed instead.
    state.afterCollection = 150;
    expect(guard.check(10)).toBe(false);
    expect(state.collections).toBe(1);
    state.rss = 185;
    state.afterCollection = 182;
    expect(guard.check(20)).toBe(true);
    expect(guard.check(100)).toBe(true);
    expect(state.collections).toBe(1);
    expect(guard.check(110)).toBe(true);
    expect(state.collections).toBe(2);
  });

  it("collects less and less often while collections do not relieve the pressure", () => {
    const { guard, state } = scripted(256, { minGapMs: 100 });
    state.rss = 200;
    state.afterCollection = 190; // past 70% (179.2) even after a collection
    const collectedAt: number[] = [];
    for (let now = 0; now <= 6_000; now += 10) {
      const before = state.collections;
      guard.check(now);
      if (state.collections > before) collectedAt.push(now);
    }
    // 100, 200, 400, 800, then 1,600 ms (16 × 100 at most) apart.
    const gaps = collectedAt.slice(1).map((at, i) => at - (collectedAt[i] as number));
    expect(gaps.slice(0, 5)).toEqual([200, 400, 800, 1_600, 1_600]);
    // Relieved once: back to every 100 ms.
    state.afterCollection = 150;
    const last = collectedAt.at(-1) as number;
    expect(guard.check(last + 1_600)).toBe(false);
    state.rss = 185;
    state.afterCollection = 182;
    expect(guard.check(last + 1_610)).toBe(true); // pressure again, no collection due yet
    const count = state.collections;
    guard.check(last + 1_700);
    expect(state.collections).toBe(count + 1);
  });

  it("is off with a budget of 0", () => {
    const { guard, state } = scripted(0);
    state.rss = 10_000;
    for (let i = 0; i < 100; i++) guard.taken(64 * MiB);
    expect(state.collections).toBe(0);
    expect(guard.check()).toBe(false);
  });

  it("works without a collector (pressure alone)", () => {
    const guard = new MemoryGuard(100, () => 80, undefined);
    guard.taken(100 * MiB);
    expect(guard.pressure).toBe(true);
    expect(guard.collections).toBe(0);
  });
});

describe("Watermarks under memory pressure", () => {
  const high = { messages: 100, bytes: 10_000, uncommitted: 1_000 };
  const idle = { messages: 0, bytes: 0, uncommitted: 0 };

  it("pauses under pressure once it holds a quarter of the byte cap", () => {
    const marks = new Watermarks(high, 0.5);
    const load = { ...idle, messages: 1, memoryPressure: true };
    expect(marks.update({ ...load, bytes: 2_499 })).toBeUndefined();
    expect(marks.update({ ...load, bytes: 2_500 })).toBe("pause");
  });

  it("never pauses under pressure while it holds less: calls keep going", () => {
    const marks = new Watermarks(high, 0.5);
    expect(marks.update({ ...idle, memoryPressure: true })).toBeUndefined();
    expect(
      marks.update({ ...idle, messages: 5, bytes: 100, memoryPressure: true }),
    ).toBeUndefined();
  });

  it("resumes under pressure at a quarter of the low mark, without pressure at the low mark", () => {
    const marks = new Watermarks(high, 0.5); // low: 5,000 bytes
    marks.update({ ...idle, messages: 100 });
    const load = { ...idle, messages: 10, memoryPressure: true };
    expect(marks.update({ ...load, bytes: 1_251 })).toBeUndefined();
    expect(marks.update({ ...load, bytes: 1_250 })).toBe("resume");
    marks.update({ ...idle, messages: 100 });
    expect(marks.update({ ...idle, messages: 10, bytes: 5_000, memoryPressure: false })).toBe(
      "resume",
    );
  });
});

describe("WorkQueue and memory", () => {
  it("keeps no reference to a job once it has settled", async () => {
    v8.setFlagsFromString("--expose-gc");
    const gc = vm.runInNewContext("gc") as () => void;
    const queue = new WorkQueue<{ partition: number; key: null; bytes: number; body: Uint8Array }>({
      concurrency: () => 4,
      keyOrdering: false,
      run: async () => {},
    });
    const refs: WeakRef<object>[] = [];
    (() => {
      for (let i = 0; i < 10; i++) {
        const job = { partition: 0, key: null, bytes: 1, body: new Uint8Array(1_024) };
        refs.push(new WeakRef(job));
        queue.push(job);
      }
    })();
    await queue.drained();
    await new Promise((resolve) => setImmediate(resolve));
    gc();
    // Before the fix, the ready list kept up to 1,024 started jobs, bytes and all.
    expect(refs.filter((ref) => ref.deref() !== undefined)).toHaveLength(0);
  });
});
