// The done offsets that travel in the commit metadata, without a broker: the pure
// encoder and decoder, and the offset tracker that lists and skips them.
import { describe, expect, it } from "vitest";
import {
  decodeDone,
  encodeDone,
  mergeRuns,
  OFFSET_METADATA_MAX_BYTES,
  type OffsetRun,
  OffsetTracker,
  toRuns,
} from "../../consumer-solved.ts";

/** A deterministic pseudo-random sequence, so a failing case can be replayed. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
    return state / 2 ** 31;
  };
}

function offsetsOf(runs: readonly OffsetRun[]): number[] {
  return runs.flatMap(([start, end]) => Array.from({ length: end - start }, (_, i) => start + i));
}

describe("encodeDone and decodeDone", () => {
  it("round-trips sparse sets as runs", () => {
    const runs: OffsetRun[] = [
      [1_001, 1_004],
      [1_500, 1_501],
      [90_000, 90_010],
    ];
    const encoded = encodeDone(1_000, runs);
    expect(encoded).toMatch(/^kbp:v1:rs:r:/);
    expect(decodeDone(encoded, 1_000)).toEqual({ kind: "done", runs });
  });

  it("round-trips dense, scattered sets as a bitmap, the shorter form there", () => {
    const base = 123_456_789;
    const next = random(7);
    const offsets = Array.from({ length: 4_000 }, (_, i) => base + 1 + i).filter(
      () => next() < 0.5,
    );
    const runs = toRuns(offsets);
    const encoded = encodeDone(base, runs);
    expect(encoded).toMatch(/^kbp:v1:[0-9a-z]+:b:/);
    expect(encoded?.length).toBeLessThanOrEqual(OFFSET_METADATA_MAX_BYTES);
    const decoded = decodeDone(encoded, base);
    expect(decoded.kind).toBe("done");
    if (decoded.kind === "done") expect(offsetsOf(decoded.runs)).toEqual(offsets);
  });

  // 200 sets of up to 20,000 offsets: under 1 s alone, but past vitest's 5 s default on
  // a machine busy with the e2e files beside it (the quick tier runs both at once).
  it("round-trips random sets of every density, choosing whichever form is shorter", {
    timeout: 30_000,
  }, () => {
    const next = random(42);
    for (let trial = 0; trial < 200; trial++) {
      const base = Math.floor(next() * 1e12);
      const density = next();
      const span = 1 + Math.floor(next() * 20_000);
      const offsets: number[] = [];
      for (let offset = base; offset < base + span; offset++) {
        if (next() < density) offsets.push(offset);
      }
      const encoded = encodeDone(base, toRuns(offsets));
      if (offsets.length === 0) {
        expect(encoded).toBeNull();
        continue;
      }
      if (encoded === undefined) continue; // too large: checked below
      expect(encoded?.length).toBeLessThanOrEqual(OFFSET_METADATA_MAX_BYTES);
      const decoded = decodeDone(encoded, base);
      expect(decoded.kind, encoded ?? "").toBe("done");
      if (decoded.kind === "done") expect(offsetsOf(decoded.runs)).toEqual(offsets);
    }
  });

  it("is always under the limit, or omitted (undefined) when nothing fits", () => {
    // Every other offset over 40,000: runs need ~4 bytes each, a bitmap 5,000 bytes.
    const offsets = Array.from({ length: 20_000 }, (_, i) => 10 + 2 * i);
    expect(encodeDone(9, toRuns(offsets))).toBeUndefined();
    for (const limit of [20, 64, 300, 1_000, 4_096]) {
      const encoded = encodeDone(9, toRuns(offsets.slice(0, 1_000)), limit);
      if (encoded !== undefined) expect(encoded?.length).toBeLessThanOrEqual(limit);
      else expect(limit).toBeLessThan(350); // 1,000 of every other offset: a 250-byte bitmap, 334 in base64
    }
    // One long run costs a few bytes, however long.
    expect(encodeDone(0, [[1, 5_000_000]])?.length).toBeLessThan(30);
  });

  it("lists nothing for no metadata", () => {
    expect(decodeDone(null, 5)).toEqual({ kind: "none" });
    expect(decodeDone("", 5)).toEqual({ kind: "none" });
    expect(encodeDone(5, [])).toBeNull();
  });

  it("ignores, with a reason, what another tool or another version wrote", () => {
    const foreign = [
      "some-other-tool:offsets=1,2,3",
      "v1:1,2",
      "kbp:v2:5:r:1,1",
      "kbp:vx:5:r:1,1",
      "kbp:v1:5:x:1,1",
      "kbp:v1:5:r:1", // odd count
      "kbp:v1:5:r:1,0", // a run of length 0
      "kbp:v1:5:r:0,1,0,1", // overlapping runs
      "kbp:v1:5:r:,1",
      "kbp:v1:5:r:zzzzzzzzzzzzzz,1", // past the largest safe offset
      "kbp:v1:5:b:not base64!",
      `kbp:v1:5:r:${"1,1,".repeat(1_300)}`, // oversized and malformed
      "x".repeat(4_096),
    ];
    for (const metadata of foreign) {
      const decoded = decodeDone(metadata, 5);
      expect(decoded.kind, metadata.slice(0, 40)).toBe("ignored");
    }
    expect(decodeDone("kbp:v2:5:r:1,1", 5)).toMatchObject({
      reason: expect.stringMatching(/version 2/),
    });
  });

  it("ignores a list written for another committed offset (offsets reset since)", () => {
    const encoded = encodeDone(100, [[102, 105]]);
    expect(decodeDone(encoded, 100).kind).toBe("done");
    expect(decodeDone(encoded, 0)).toMatchObject({
      kind: "ignored",
      reason: "written for offset 100, but the committed offset is 0",
    });
  });
});

describe("mergeRuns", () => {
  it("unites, joins touching runs and clips below `from`", () => {
    expect(
      mergeRuns(
        [
          [1, 3],
          [10, 12],
        ],
        [
          [3, 5],
          [11, 20],
        ],
        2,
      ),
    ).toEqual([
      [2, 5],
      [10, 20],
    ]);
  });
});

describe("OffsetTracker with done offsets", () => {
  it("lists the offsets finished behind an unfinished one, with the offset to commit", () => {
    const tracker = new OffsetTracker();
    const epoch = tracker.track(0, 10) as number;
    for (let offset = 11; offset < 20; offset++) tracker.track(0, offset);
    for (const offset of [12, 13, 14, 17]) tracker.complete(0, offset, epoch);
    // Nothing processed in order yet: commit where it started, with the list.
    expect(tracker.committable()).toEqual([]);
    expect(tracker.committable(true)).toEqual([
      {
        partition: 0,
        offset: 10,
        version: 4,
        done: [
          [12, 15],
          [17, 18],
        ],
      },
    ]);
    tracker.complete(0, 10, epoch);
    const [entry] = tracker.committable(true);
    expect(entry).toEqual({
      partition: 0,
      offset: 11,
      version: 5,
      done: [
        [12, 15],
        [17, 18],
      ],
    });
    tracker.markCommitted(0, 11);
    tracker.markSent(0, 5);
    expect(tracker.committable(true)).toEqual([]); // nothing new
    tracker.complete(0, 18, epoch);
    expect(tracker.committable(true)).toEqual([
      {
        partition: 0,
        offset: 11,
        version: 6,
        done: [
          [12, 15],
          [17, 19],
        ],
      },
    ]);
  });

  it("skips the offsets the previous owner listed: done for the commit, not processed", () => {
    const tracker = new OffsetTracker();
    tracker.preload(0, [
      [12, 15],
      [17, 18],
    ]);
    const redo: number[] = [];
    let epoch = 0;
    for (let offset = 10; offset < 20; offset++) {
      if (tracker.skip(0, offset)) continue;
      epoch = tracker.track(0, offset) as number;
      redo.push(offset);
    }
    expect(redo).toEqual([10, 11, 15, 16, 18, 19]);
    // Skipped ones behind an unfinished one are not committable yet either.
    expect(tracker.uncommitted).toBe(10);
    // A skipped offset delivered again is no longer "skipped": it is a redelivery.
    expect(tracker.skip(0, 12)).toBe(false);
    expect(tracker.track(0, 12)).toBeUndefined();
    for (const offset of [10, 11, 15, 16]) tracker.complete(0, offset, epoch);
    expect(tracker.committable()).toEqual([{ partition: 0, offset: 18 }]);
    for (const offset of [18, 19]) tracker.complete(0, offset, epoch);
    expect(tracker.committable()).toEqual([{ partition: 0, offset: 20 }]);
    expect(tracker.uncommitted).toBe(0);
  });

  it("keeps listing preloaded offsets not delivered yet, and forgets them on revoke", () => {
    const tracker = new OffsetTracker();
    tracker.preload(3, [[105, 110]]);
    const epoch = tracker.track(3, 100) as number;
    tracker.track(3, 101);
    tracker.complete(3, 101, epoch);
    // 105..109 have not come back from Kafka yet: a crash now must not lose them.
    expect(tracker.committable(true)).toEqual([
      {
        partition: 3,
        offset: 100,
        version: 1,
        done: [
          [101, 102],
          [105, 110],
        ],
      },
    ]);
    tracker.revoke(3);
    expect(tracker.skip(3, 106)).toBe(false);
    expect(tracker.committable(true)).toEqual([]);
  });

  it("survives a round trip: what one owner lists, the next one skips", () => {
    const first = new OffsetTracker();
    const epoch = first.track(1, 0) as number;
    for (let offset = 1; offset < 1_000; offset++) first.track(1, offset);
    const next = random(3);
    const done = new Set<number>();
    for (let offset = 1; offset < 1_000; offset++) {
      if (next() < 0.7) {
        first.complete(1, offset, epoch);
        done.add(offset);
      }
    }
    const [entry] = first.committable(true);
    if (!entry?.done) throw new Error("nothing to commit");
    const metadata = encodeDone(entry.offset, entry.done);
    const decoded = decodeDone(metadata, entry.offset);
    if (decoded.kind !== "done") throw new Error(`not decoded: ${JSON.stringify(decoded)}`);
    const second = new OffsetTracker();
    second.preload(1, decoded.runs);
    const processedAgain: number[] = [];
    for (let offset = entry.offset; offset < 1_000; offset++) {
      if (!second.skip(1, offset)) processedAgain.push(offset);
    }
    expect(processedAgain).toEqual(
      Array.from({ length: 1_000 - entry.offset }, (_, i) => entry.offset + i).filter(
        (offset) => !done.has(offset),
      ),
    );
  });
});
