/**
 * bench/core.bench.ts: micro-benchmarks of the solved consumer's hot path, so a change
 * that makes it slower shows up. Every message goes through parseEvent, the work
 * queue, the offset tracker and a watermark check; every commit lists the offsets done
 * above it in its metadata, and each new owner of a partition decodes that list.
 * Nothing here touches Kafka or HTTP.
 *
 *   bun run bench/core.bench.ts   deno run -A bench/core.bench.ts   node bench/core.bench.ts
 *
 *   BENCH_FORMAT=json   one JSON document on stdout (mitata's, without samples)
 *   BENCH_QUICK=1       tiny sizes: proves every benchmark still runs (a CI smoke test)
 *   BENCH_FILTER=regex  only the benchmarks whose name matches
 *
 * Times are per iteration, and an iteration is a whole workload (a million offsets, a
 * hundred thousand jobs): compare runs on the same machine and runtime, not absolutes.
 */

import { Buffer } from "node:buffer";
import { bench, do_not_optimize, group, run, summary } from "mitata";
import {
  decodeDone,
  encodeDone,
  type Load,
  OffsetTracker,
  parseEvent,
  Watermarks,
  WorkQueue,
} from "../consumer-solved.ts";

/** The benchmarks' names, as mitata reports them in `alias` (sizes go in `$` args). */
export const benchmarkNames = {
  offsetsInOrder: "OffsetTracker: $offsets offsets, completed in order",
  offsetsWindowed: "OffsetTracker: $offsets offsets, out of order, 200 in flight",
  offsetsScrambled: "OffsetTracker: $offsets offsets, completed fully scrambled",
  queue: "WorkQueue: $jobs jobs, concurrency 200",
  queueKeyed: "WorkQueue: $jobs jobs, concurrency 200, key ordering over 1,000 keys",
  watermarks: "Watermarks.update: $loads loads, pausing and resuming",
  parseEvent: "parseEvent: $messages messages, 1 in 100 malformed",
  metadataEncodeScattered: "commit metadata: list and encode $pending done offsets, scattered",
  metadataEncodeRuns: "commit metadata: list and encode $pending done offsets, 1 in 50 unfinished",
  metadataDecodeScattered: "commit metadata: decode $pending done offsets, scattered",
  metadataDecodeRuns: "commit metadata: decode $pending done offsets, 1 in 50 unfinished",
} as const;

const quick = process.env.BENCH_QUICK === "1";
const sizes = quick
  ? { offsets: 10_000, jobs: 2_000, loads: 10_000, messages: 200, pending: 1_000 }
  : { offsets: 1_000_000, jobs: 100_000, loads: 100_000, messages: 10_000, pending: 10_000 };

/** What mitata passes a generator benchmark: its `$` args. */
interface BenchState {
  get(name: string): unknown;
}

const CONCURRENCY = 200; // the consumer's default: calls in flight, so completions out of order
const KEYS = 1_000;
const HIGH = { messages: 2_000, bytes: 8 * 2 ** 20, uncommitted: 10_000 }; // the defaults
const LOW_RATIO = 0.5;

function register(): void {
  group("OffsetTracker", () => {
    summary(() => {
      bench(benchmarkNames.offsetsInOrder, function* (state: BenchState) {
        const n = state.get("offsets") as number;
        yield () => {
          const tracker = new OffsetTracker();
          const epoch = trackAll(tracker, n);
          for (let offset = 0; offset < n; offset++) tracker.complete(0, offset, epoch);
          return checkCommittable(tracker, n);
        };
      }).args("offsets", [sizes.offsets]);

      // As in the consumer: offsets are taken as calls finish, and whichever of the
      // CONCURRENCY calls in flight finishes next is random, so the tracker always
      // holds a window of unfinished offsets and a few finished ones behind them.
      bench(benchmarkNames.offsetsWindowed, function* (state: BenchState) {
        const n = state.get("offsets") as number;
        const order = windowedOrder(n, CONCURRENCY, 0x5eed);
        yield () => {
          const tracker = new OffsetTracker();
          let epoch = 0;
          let taken = 0;
          for (let i = 0; i < n; i++) {
            // order[i] < i + CONCURRENCY, so it has been taken by now
            for (; taken < n && taken < i + CONCURRENCY; taken++) {
              epoch = tracker.track(0, taken) as number;
            }
            tracker.complete(0, order[i] as number, epoch);
          }
          return checkCommittable(tracker, n);
        };
      }).args("offsets", [sizes.offsets]);

      // The worst case: everything taken, then finished in a random order, so most
      // completions wait behind an unfinished offset.
      bench(benchmarkNames.offsetsScrambled, function* (state: BenchState) {
        const n = state.get("offsets") as number;
        const order = shuffled(n, 0xc0ffee);
        yield () => {
          const tracker = new OffsetTracker();
          const epoch = trackAll(tracker, n);
          for (let i = 0; i < n; i++) tracker.complete(0, order[i] as number, epoch);
          return checkCommittable(tracker, n);
        };
      }).args("offsets", [sizes.offsets]);
    });
  });

  group("WorkQueue", () => {
    summary(() => {
      for (const [name, keyOrdering] of [
        [benchmarkNames.queue, false],
        [benchmarkNames.queueKeyed, true],
      ] as const) {
        bench(name, function* (state: BenchState) {
          const n = state.get("jobs") as number;
          const jobs = Array.from(
            { length: n },
            (_, i): BenchJob => ({
              partition: 0,
              key: `user-${i % KEYS}`,
              bytes: 200,
            }),
          );
          yield () => drainThroughQueue(jobs, keyOrdering);
        }).args("jobs", [sizes.jobs]);
      }
    });
  });

  group("per-message checks", () => {
    bench(benchmarkNames.watermarks, function* (state: BenchState) {
      const n = state.get("loads") as number;
      const loads = sawtooth(n);
      yield () => {
        const marks = new Watermarks(HIGH, LOW_RATIO);
        let changes = 0;
        for (const load of loads) if (marks.update(load) !== undefined) changes++;
        if (changes === 0) throw new Error("the loads never crossed a watermark");
        return changes;
      };
    }).args("loads", [sizes.loads]);

    bench(benchmarkNames.parseEvent, function* (state: BenchState) {
      const n = state.get("messages") as number;
      const messages = Array.from({ length: n }, (_, i) =>
        Buffer.from(
          i % 100 === 99
            ? `{"id":"${i}","email":`
            : JSON.stringify({ id: String(i), email: `user${i}@example.com`, username: `u${i}` }),
        ),
      );
      yield () => {
        let malformed = 0;
        for (const message of messages) if ("problem" in parseEvent(message)) malformed++;
        do_not_optimize(malformed);
      };
    }).args("messages", [sizes.messages]);
  });

  // A straggler at offset 0 holds the commit back while `pending` offsets above it are
  // done: scattered (half of twice as many, the bitmap form) or in long runs (the runs
  // form). Listing them and encoding is the cost of each commit, decoding that of each
  // partition gained.
  group("commit metadata", () => {
    for (const [encodeName, decodeName, pattern] of [
      [benchmarkNames.metadataEncodeScattered, benchmarkNames.metadataDecodeScattered, "scattered"],
      [benchmarkNames.metadataEncodeRuns, benchmarkNames.metadataDecodeRuns, "runs"],
    ] as const) {
      bench(encodeName, function* (state: BenchState) {
        const tracker = pendingTracker(state.get("pending") as number, pattern);
        yield () => {
          const [entry] = tracker.committable(true);
          const metadata = entry?.done && encodeDone(entry.offset, entry.done);
          if (!metadata) throw new Error(`nothing encoded: ${JSON.stringify(entry)}`);
          return metadata;
        };
      }).args("pending", [sizes.pending]);

      bench(decodeName, function* (state: BenchState) {
        const n = state.get("pending") as number;
        const [entry] = pendingTracker(n, pattern).committable(true);
        const metadata = entry?.done && encodeDone(entry.offset, entry.done);
        if (!metadata) throw new Error("nothing encoded");
        yield () => {
          const decoded = decodeDone(metadata, 0);
          if (decoded.kind !== "done") throw new Error(`not decoded: ${decoded.kind}`);
          return decoded.runs;
        };
      }).args("pending", [sizes.pending]);
    }
  });
}

/** A tracker whose offset 0 is unfinished, with `pending` offsets done above it. */
function pendingTracker(pending: number, pattern: "scattered" | "runs"): OffsetTracker {
  const tracker = new OffsetTracker();
  const random = prng(0xd0e);
  const epoch = tracker.track(0, 0) as number;
  let done = 0;
  for (let offset = 1; done < pending; offset++) {
    tracker.track(0, offset);
    const finished = pattern === "scattered" ? random() < 0.5 : offset % 50 !== 0;
    if (finished) {
      tracker.complete(0, offset, epoch);
      done++;
    }
  }
  return tracker;
}

function trackAll(tracker: OffsetTracker, n: number): number {
  let epoch = 0;
  for (let offset = 0; offset < n; offset++) epoch = tracker.track(0, offset) as number;
  return epoch;
}

/** Calls committable() and checks it: a wrong answer must not pass for a fast one. */
function checkCommittable(tracker: OffsetTracker, n: number) {
  const offsets = tracker.committable();
  if (offsets[0]?.offset !== n || tracker.uncommitted !== 0) {
    throw new Error(`expected offset ${n} committable, got ${JSON.stringify(offsets)}`);
  }
  return offsets;
}

interface BenchJob {
  partition: number;
  key: string;
  bytes: number;
}

/**
 * Pushes every job, then lets the queue run them with a run function that resolves at
 * once, so what is timed is the queue's own bookkeeping (lanes, pumping, settling).
 */
function drainThroughQueue(jobs: BenchJob[], keyOrdering: boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    let settled = 0;
    const queue = new WorkQueue<BenchJob>({
      concurrency: () => CONCURRENCY,
      keyOrdering,
      run: () => Promise.resolve(),
      onSettled: () => {
        settled++;
        if (settled < jobs.length) return;
        if (queue.queued + queue.inFlight + queue.bytes === 0) resolve();
        else reject(new Error("every job settled but the queue is not empty"));
      },
    });
    for (const job of jobs) queue.push(job);
  });
}

/**
 * The order in which n offsets finish when `window` calls are in flight and a random
 * one of them finishes next, its slot going to the next offset: offset i + window is
 * started only after i completions, so order[i] < i + window.
 */
function windowedOrder(n: number, window: number, seed: number): Uint32Array {
  const random = prng(seed);
  const inFlight = Array.from({ length: Math.min(window, n) }, (_, i) => i);
  let next = inFlight.length;
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const slot = Math.floor(random() * inFlight.length);
    order[i] = inFlight[slot] as number;
    if (next < n) inFlight[slot] = next++;
    else inFlight.splice(slot, 1);
  }
  return order;
}

/** 0 … n-1 in a random (Fisher–Yates) but repeatable order. */
function shuffled(n: number, seed: number): Uint32Array {
  const random = prng(seed);
  const order = Uint32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j] as number, order[i] as number];
  }
  return order;
}

/** mulberry32: the same sequence on every runtime, unlike Math.random. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** Queue loads rising past the high watermark and falling below the low one, repeatedly. */
function sawtooth(n: number): Load[] {
  const period = 2 * (HIGH.messages + 200);
  return Array.from({ length: n }, (_, i) => {
    const phase = i % period;
    const messages = phase < period / 2 ? phase : period - phase;
    return { messages, bytes: messages * 200, uncommitted: messages * 2 };
  });
}

if (import.meta.main) {
  register();
  const filter = process.env.BENCH_FILTER ? new RegExp(process.env.BENCH_FILTER) : undefined;
  const { benchmarks } = await run({
    // Samples would make the JSON megabytes long; the percentiles are kept.
    format:
      process.env.BENCH_FORMAT === "json" ? { json: { debug: false, samples: false } } : "mitata",
    ...(filter && { filter }),
  });
  // mitata reports a benchmark that threw and carries on; CI should see it fail.
  const failed = benchmarks.flatMap((trial) => trial.runs).filter((r) => r.error !== undefined);
  for (const { name, error } of failed) console.error(`${name} failed: ${String(error)}`);
  if (failed.length > 0) process.exitCode = 1;
}
