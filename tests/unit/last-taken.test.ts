// OffsetTracker.lastTaken: what /metrics subtracts from KafkaJS's high watermark to give
// a partition's lag. It must follow the highest offset taken whatever is done, pending,
// compacted away or revoked.
import { describe, expect, it } from "vitest";
import { OffsetTracker } from "../../consumer-solved.ts";

describe("OffsetTracker.lastTaken", () => {
  it("is unknown for a partition never taken from", () => {
    expect(new OffsetTracker().lastTaken(0)).toBeUndefined();
  });

  it("is the highest offset taken, done or not", () => {
    const tracker = new OffsetTracker();
    const epoch = tracker.track(0, 10) as number;
    tracker.track(0, 11);
    tracker.track(0, 14); // a gap: offsets 12 and 13 were compacted away or filtered
    expect(tracker.lastTaken(0)).toBe(14);
    tracker.complete(0, 10, epoch);
    tracker.complete(0, 14, epoch); // done behind an unfinished one
    expect(tracker.lastTaken(0)).toBe(14);
    tracker.complete(0, 11, epoch); // now every one taken is done
    expect(tracker.position(0)).toBe(15);
    expect(tracker.lastTaken(0)).toBe(14);
  });

  it("ignores a redelivered offset and follows skipped ones", () => {
    const tracker = new OffsetTracker();
    tracker.track(3, 5);
    expect(tracker.track(3, 4)).toBeUndefined(); // fetched again: not taken again
    expect(tracker.lastTaken(3)).toBe(5);
    tracker.preload(3, [[6, 8]]);
    expect(tracker.skip(3, 6)).toBe(true);
    expect(tracker.skip(3, 7)).toBe(true);
    expect(tracker.lastTaken(3)).toBe(7);
  });

  it("survives the compaction of a long run of done offsets", () => {
    const tracker = new OffsetTracker();
    for (let offset = 0; offset < 3_000; offset++) {
      const epoch = tracker.track(1, offset) as number;
      tracker.complete(1, offset, epoch);
    }
    expect(tracker.lastTaken(1)).toBe(2_999);
    tracker.track(1, 3_000);
    expect(tracker.lastTaken(1)).toBe(3_000);
  });

  it("forgets a revoked partition", () => {
    const tracker = new OffsetTracker();
    tracker.track(2, 7);
    tracker.revoke(2);
    expect(tracker.lastTaken(2)).toBeUndefined();
  });
});
