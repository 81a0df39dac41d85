/**
 * consumer-solved.ts: Kafka consumer back pressure, solved: only bounded work gets in.
 *
 * The job of consumer-backpressure.ts (one slow HTTP call per message), bounded: at most
 * CONCURRENCY calls run; fetching pauses when the queue holds HIGH_WATERMARK messages
 * (or MAX_BUFFERED_BYTES, or MAX_UNCOMMITTED, or memory runs short) and resumes at
 * LOW_WATERMARK; an offset is committed only once every message before it is done, so a
 * crash loses nothing. Failed calls are retried, then dead-lettered. Start mock-api.ts,
 * fill the topic with producer.ts, then run this; SIGINT/SIGTERM finish, commit, exit 0.
 * In a pod, METRICS_PORT serves /metrics (Prometheus), /healthz and /readyz (probes).
 *
 * Run this one file alone (settings: --help):
 *   bun:  bun run consumer-solved.ts
 *   deno: deno add npm:kafkajs && deno run --allow-net --allow-sys=systemMemoryInfo --allow-env=KAFKA_BROKERS,KAFKA_SECURITY_PROTOCOL,KAFKA_SASL_MECHANISM,KAFKA_SASL_USERNAME,KAFKA_SASL_PASSWORD,KAFKA_SSL_CA_LOCATION,KAFKA_SSL_CA_PEM,KAFKA_SSL_CERTIFICATE_LOCATION,KAFKA_SSL_CERTIFICATE_PEM,KAFKA_SSL_KEY_LOCATION,KAFKA_SSL_KEY_PEM,KAFKA_SSL_KEY_PASSWORD,KAFKA_TOPIC,KAFKA_GROUP_ID,API_URL,CONCURRENCY,HIGH_WATERMARK,LOW_WATERMARK,MAX_BUFFERED_BYTES,MAX_UNCOMMITTED,COMMIT_INTERVAL_MS,COMMIT_METADATA,FETCH_MAX_WAIT_MS,SESSION_TIMEOUT_MS,REQUEST_TIMEOUT_MS,MAX_RETRIES,RETRY_BASE_MS,RETRY_MAX_MS,API_UNREACHABLE_MS,KAFKA_UNREACHABLE_MS,DLQ_TOPIC,KEY_ORDERING,SHUTDOWN_TIMEOUT_MS,FROM_BEGINNING,MEMORY_LIMIT_MB,STATUS_INTERVAL_MS,STATUS_FORMAT,METRICS_PORT,METRICS_HOST,NODE_ENV,KAFKAJS_LOG_LEVEL,KAFKAJS_DEBUG_PROTOCOL_BUFFERS,KAFKAJS_DEBUG_EXTENDED_PROTOCOL_BUFFERS consumer-solved.ts
 *         (TLS files in KAFKA_SSL_*_LOCATION: add --allow-read=<those files>, or give their PEM text in KAFKA_SSL_*_PEM)
 *   node: npm i kafkajs && npm pkg set type=module && node consumer-solved.ts        (Node 22.18 or later)
 */

import { Buffer } from "node:buffer";
import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import http, { createServer } from "node:http";
import https from "node:https";
import net, { isIP } from "node:net";
import { totalmem } from "node:os";
import tls from "node:tls";
import v8 from "node:v8";
import vm from "node:vm";
import {
  type EachBatchPayload,
  type ISocketFactory,
  Kafka,
  type KafkaMessage,
  type LogEntry,
  logLevel,
  Partitioners,
} from "kafkajs";

const settings = readSettings(
  {
    KAFKA_BROKERS: text("localhost:9092", "comma-separated bootstrap servers"),
    ...kafkaSecuritySettings(), // TLS and SASL: KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_*
    KAFKA_TOPIC: text("CREATE_USER", "topic to consume"),
    KAFKA_GROUP_ID: text("consumer-solved", "consumer group"),
    API_URL: text("http://127.0.0.1:3000/users", "where messages go", /^https?:\/\/\S+$/, "a URL"),
    CONCURRENCY: number(200, "HTTP calls in flight at most", 1, 10_000),
    HIGH_WATERMARK: number(2_000, "queued messages at which fetching pauses", 1, 1e7),
    LOW_WATERMARK: number(1e3, "resume here; the byte and uncommitted caps at LOW/HIGH", 0, 1e7),
    MAX_BUFFERED_BYTES: number(16 * 2 ** 20, "bytes held at which fetching pauses", 1, 2 ** 40),
    MAX_UNCOMMITTED: number(10_000, "held, not committable, at which fetching pauses", 1, 1e8),
    COMMIT_INTERVAL_MS: number(1_000, "how often processed offsets are committed", 10, 36e5),
    COMMIT_METADATA: flag(true, "list the offsets done above each commit, to skip after a crash"),
    FETCH_MAX_WAIT_MS: number(100, "KafkaJS maxWaitTimeInMs: how late a resume can be", 1, 60_000),
    SESSION_TIMEOUT_MS: number(30_000, "a crashed member's partitions move after this", 1e3, 36e5),
    REQUEST_TIMEOUT_MS: number(10_000, "a call not answered by then has failed", 1, 36e5),
    MAX_RETRIES: number(5, "retries of a failed call before it is dead-lettered", 0, 1_000),
    RETRY_BASE_MS: number(200, "first retry delay; doubles each retry, with jitter", 1, 36e5),
    RETRY_MAX_MS: number(10_000, "longest retry delay, Retry-After included", 1, 36e5),
    API_UNREACHABLE_MS: number(15_000, "exit 4 when the API is silent this long", 100, 36e5),
    KAFKA_UNREACHABLE_MS: number(60_000, "exit 1 when no broker has answered this long", 1e3, 36e5),
    DLQ_TOPIC: text("", "dead-letter topic (empty: <KAFKA_TOPIC>.dlq)"),
    KEY_ORDERING: flag(false, "one message per key at a time, in offset order"),
    SHUTDOWN_TIMEOUT_MS: number(10_000, "on SIGINT/SIGTERM, time to finish the queue", 0, 36e5),
    FROM_BEGINNING: flag(true, "start at the oldest message if the group has no offset"),
    MEMORY_LIMIT_MB: number(containerLimitMb() ?? 256, "exit 3 past this RSS (0: off)", 0, 1e6),
    STATUS_INTERVAL_MS: number(500, "how often to print the status line", 50, 36e5),
    STATUS_FORMAT: text("text", "status lines as text or json", /^(text|json)$/, "text or json"),
    METRICS_PORT: number(0, "serve /metrics, /healthz, /readyz on this port (0: off)", 0, 65_535),
    METRICS_HOST: text("127.0.0.1", "address they listen on (0.0.0.0: in a pod)"),
  },
  "0 done or stopped, 1 Kafka failed or a bug, 2 bad setting, 3 memory limit exceeded, 4 API unreachable",
);
if (settings.LOW_WATERMARK >= settings.HIGH_WATERMARK) {
  const raw = JSON.stringify(process.env.LOW_WATERMARK ?? String(settings.LOW_WATERMARK));
  const must = `must be below HIGH_WATERMARK (${settings.HIGH_WATERMARK})`;
  console.error(`Bad setting LOW_WATERMARK=${raw}: ${must}\nRun with --help to see every setting.`);
  process.exit(2);
}
const topic = settings.KAFKA_TOPIC;
const dlqTopic = settings.DLQ_TOPIC || `${topic}.dlq`;
const caps = {
  messages: settings.HIGH_WATERMARK,
  bytes: settings.MAX_BUFFERED_BYTES,
  uncommitted: settings.MAX_UNCOMMITTED,
};
const [EXIT_KAFKA, EXIT_MEMORY_LIMIT, EXIT_API_UNREACHABLE] = [1, 3, 4];

async function main() {
  // 1. Connect, with auto commit off: KafkaJS would commit messages that are only queued.
  const { kafka, consumer, dlq } = await connect();

  // 2. Bound what is held: messages, bytes, uncommitted offsets and the process's memory.
  //    Pause at the high watermark, resume at the low one, so the queue never runs dry.
  const stats = newStats();
  const tracker = new OffsetTracker();
  const limit = new AdaptiveLimit(settings.CONCURRENCY);
  const watermarks = new Watermarks(caps, settings.LOW_WATERMARK / settings.HIGH_WATERMARK);
  const guard = new MemoryGuard(settings.MEMORY_LIMIT_MB, residentMb, garbageCollector());
  const shutdown = new AbortController(); // aborted once the shutdown deadline passes
  shutdown.signal.addEventListener("abort", () => abortOpenCalls(shutdown.signal.reason));
  const queue = new WorkQueue<Job>({
    concurrency: () => limit.current,
    keyOrdering: settings.KEY_ORDERING,
    run: (job) => handle(job),
    onSettled: () => applyFlow(),
    onError: (error) => void stop(aBug(error), EXIT_KAFKA), // say so, commit, exit 1
  });
  let assigned = new Set<number>(); // the partitions this member owns
  let stopping = false;
  const load = (): Load => ({
    messages: queue.queued,
    bytes: queue.bytes,
    uncommitted: tracker.uncommitted,
    memoryPressure: guard.pressure,
  });
  const applyFlow = (nextBytes = 0) => {
    const change = stopping ? undefined : watermarks.update(load(), nextBytes);
    if (change === "pause") stats.pauses++;
    if (change) consumer[change]([{ topic }]);
  };
  setInterval(() => {
    guard.check(); // memory is a watermark too
    applyFlow();
  }, 50);

  // 3. Admit: each batch KafkaJS fetched goes into the queue as far as there is room,
  //    then waits for more; the queue, not KafkaJS, decides how much work is open.
  //    One pass per batch, not a promise per message: at a fast API that shows.
  const previousOwners = doneOffsetsLoader(kafka, tracker, stats, () => assigned);
  const admitBatch = async ({ batch, heartbeat, isStale, resolveOffset }: EachBatchPayload) => {
    const { partition, messages } = batch;
    await previousOwners.loaded(partition);
    for (const message of messages) {
      const bytes = (message.value?.length ?? 0) + (message.key?.length ?? 0);
      // A batch may not fit, and the first message of the next may be bigger: wait for
      // room, never overfill.
      while (!watermarks.hasRoom(load(), bytes)) {
        applyFlow(bytes);
        await queue.settled();
        await heartbeat(); // sent only when due: waiting must not cost the membership
      }
      if (stopping || isStale() || !assigned.has(partition)) return; // fetched again if need be
      const offset = Number(message.offset);
      if (tracker.skip(partition, offset)) {
        stats.skipped++; // done before a crash or handover: counts for the commit only
        continue;
      }
      guard.taken(bytes); // may collect garbage, or call for holding less
      const epoch = tracker.track(partition, offset);
      if (epoch === undefined) {
        stats.redelivered++; // already queued, in flight or done: KafkaJS fetched it again
        continue;
      }
      const key = message.key?.toString() ?? null;
      queue.push({ partition, offset, epoch, key, bytes, message: detach(message) });
      stats.peakQueued = Math.max(stats.peakQueued, queue.queued);
      stats.peakBufferedBytes = Math.max(stats.peakBufferedBytes, queue.bytes);
      applyFlow(bytes);
    }
    const last = messages.at(-1);
    if (last) resolveOffset(last.offset); // where KafkaJS fetches on from (commits are ours)
  };

  // 4. Process: at most `limit.current` calls run; each message ends processed or
  //    dead-lettered. A call waiting to be retried gives its slot to the next meanwhile.
  const api = new ApiHealth(settings.API_UNREACHABLE_MS);
  const gate = rebalanceGate();
  const { signal } = shutdown;
  const waitToRetry = (ms: number) => queue.withoutSlot(sleep(ms, signal));
  const handle = async (job: Job) => {
    try {
      if (signal.aborted) return; // past the shutdown deadline: abandoned
      await gate.passed(); // no new call while the group rebalances
      if (!assigned.has(job.partition)) {
        stats.droppedOnRevoke++; // lost meanwhile: its next owner does it
        return;
      }
      const outcome = await processMessage(job, { limit, api, stats, signal, waitToRetry });
      if (outcome.deadLetter) await deadLetter(dlq, job, outcome.deadLetter, signal);
      stats[outcome.deadLetter ? "deadLettered" : "processed"]++;
      if (outcome.malformed) stats.malformed++;
      tracker.complete(job.partition, job.offset, job.epoch);
    } catch (error) {
      if (!signal.aborted) throw error; // a bug: the queue's onError says so
    }
  };

  // 5. Commit, every COMMIT_INTERVAL_MS, the offset after each partition's longest
  //    processed prefix, with the offsets done above it in the metadata.
  const commit = committer(consumer, tracker, stats, () => assigned);
  const commitTimer = setInterval(commit, settings.COMMIT_INTERVAL_MS);

  // 6. Rebalance: commit what is done while we own it; start no call until the group is
  //    back; forget lost partitions (their queued messages are dropped, never committed);
  //    read what the previous owner of each gained one listed as done.
  consumer.on(consumer.events.REBALANCING, () => {
    void commit();
    if (!stopping) gate.close();
  });
  consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
    const now = new Set(payload.memberAssignment[topic] ?? []);
    for (const partition of [...assigned].filter((p) => !now.has(p))) {
      stats.droppedOnRevoke += queue.dropPartition(partition);
      tracker.revoke(partition);
    }
    const gained = [...now].filter((partition) => !assigned.has(partition));
    assigned = now;
    if (settings.COMMIT_METADATA) previousOwners.load(gained);
    if (watermarks.paused) consumer.pause([{ topic }]); // KafkaJS forgets it on a restart
    void commit(); // what a rebalance refused, again in the new generation
    gate.open();
  });
  // KafkaJS restarts itself after most failures; where it gives up because no broker
  // answered (the only one restarting), rejoin for up to KAFKA_UNREACHABLE_MS, then exit 1.
  consumer.on(
    consumer.events.CRASH,
    afterCrash(consumer, consume, () => stopping, stop),
  );

  // 7. Stop on SIGINT/SIGTERM: fetch no more, finish the queue within
  //    SHUTDOWN_TIMEOUT_MS (then abandon the rest), commit, disconnect, exit 0.
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => void stop(`stopped by ${signal}`, 0));
  }
  async function stop(reason: string, exitCode: number, graceMs = settings.SHUTDOWN_TIMEOUT_MS) {
    if (stopping) return;
    stopping = true;
    gate.open();
    pauseIfRunning(consumer);
    const deadline = setTimeout(() => shutdown.abort(), graceMs);
    const openAtStop = queue.queued + queue.inFlight;
    await queue.drained();
    clearTimeout(deadline);
    stats.abandoned = tracker.unfinished; // not processed: whoever comes next does them
    clearInterval(commitTimer);
    await commit();
    await Promise.all([consumer.disconnect(), dlq.disconnect()]).catch(() => {});
    stats.notCommitted = tracker.awaitingCommit; // processed, but the last commit failed
    reportStop(reason, openAtStop, stats);
    report.exit(reason, exitCode);
  }

  // The status line, the memory ceiling (exit 3), the API watchdog (exit 4), and with
  // METRICS_PORT set, /metrics for Prometheus and /healthz, /readyz for Kubernetes.
  const parts = { stats, queue, tracker, limit, watermarks, guard, api, consumer };
  const now = { assigned: () => assigned, stopping: () => stopping };
  const report = startReporting({ ...parts, ...now }, stop);
  await consume();
  function consume() {
    return consumer.run({ autoCommit: false, eachBatchAutoResolve: false, eachBatch: admitBatch });
  }
}

// ---- 1. Connect ----

/** The clients, connected and subscribed; if they cannot be, exit 1 saying what failed. */
async function connect() {
  hideTimeoutNegativeWarning(); // KafkaJS arms a timer with a negative delay, see below
  const kafka = new Kafka({
    clientId: "consumer-solved",
    ...kafkaConnection(settings), // TLS and SASL as the settings say, for every client below
    logCreator: quietTransientErrors,
    connectionTimeout: 3_000,
    retry: { retries: 5, maxRetryTime: 5_000 },
  });
  const consumer = kafka.consumer({
    groupId: settings.KAFKA_GROUP_ID,
    maxWaitTimeInMs: settings.FETCH_MAX_WAIT_MS, // also how long KafkaJS sleeps while paused
    // A crashed member's partitions wait this long for a new owner; the broker bounds it
    // (group.min.session.timeout.ms, 6 s by default). Heartbeats: three per session.
    sessionTimeout: settings.SESSION_TIMEOUT_MS,
    heartbeatInterval: Math.min(3_000, Math.floor(settings.SESSION_TIMEOUT_MS / 3)),
    // A fetch response is held whole while its messages are handed over: keep it small.
    maxBytes: fetchBytes(),
    maxBytesPerPartition: fetchBytes(),
  });
  const dlq = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  const admin = kafka.admin();
  try {
    await admin.connect();
    await Promise.all([consumer.connect(), dlq.connect()]);
    // Create the dead-letter topic up front; where topics cannot be created, it must exist.
    if (!(await admin.listTopics()).includes(dlqTopic)) {
      await admin
        .createTopics({ topics: [{ topic: dlqTopic }], waitForLeaders: true })
        .catch((error: Error) => console.error(`could not create ${dlqTopic}: ${error.message}`));
    }
    await consumer.subscribe({ topics: [topic], fromBeginning: settings.FROM_BEGINNING });
  } catch (error) {
    console.error(connectFailure(error, settings));
    process.exit(EXIT_KAFKA);
  } finally {
    await admin.disconnect();
  }
  return { kafka, consumer, dlq };
}
type Consumer = Awaited<ReturnType<typeof connect>>["consumer"];
type Producer = Awaited<ReturnType<typeof connect>>["dlq"];

// ---- 2. Bound ----

export type Limits = Record<"messages" | "bytes" | "uncommitted", number>;
/** `memoryPressure`: the process is near its memory budget even after a collection. */
export type Load = Limits & { memoryPressure?: boolean };

/**
 * Pause when any measure reaches its high mark; resume only when every one is back at
 * its low mark (high × lowRatio), so work stays queued while the resume takes effect.
 * Under memory pressure the byte cap shrinks to a quarter: slower, never stopped.
 */
export class Watermarks {
  paused = false;
  readonly high: Limits;
  readonly low: Limits;

  constructor(high: Limits, lowRatio: number) {
    this.high = high;
    const low = (n: number) => Math.floor(n * lowRatio);
    this.low = {
      messages: low(high.messages),
      bytes: low(high.bytes),
      uncommitted: low(high.uncommitted),
    };
  }

  /** The change the load calls for; `nextBytes`: pause already if that would not fit. */
  update(load: Load, nextBytes = 0): "pause" | "resume" | undefined {
    const { high, low } = this;
    const bytesCap = load.memoryPressure ? 4 : 1;
    if (
      !this.paused &&
      (load.messages >= high.messages ||
        load.bytes + nextBytes > high.bytes ||
        load.bytes * bytesCap >= high.bytes ||
        load.uncommitted >= high.uncommitted)
    ) {
      this.paused = true;
      return "pause";
    }
    if (
      this.paused &&
      load.messages <= low.messages &&
      load.bytes * bytesCap <= low.bytes &&
      load.uncommitted <= low.uncommitted
    ) {
      this.paused = false;
      return "resume";
    }
    return undefined;
  }

  /** Whether one more message fits; one bigger than the byte cap gets in alone. */
  hasRoom(load: Load, bytes: number): boolean {
    if (load.messages >= this.high.messages) return false;
    return load.bytes === 0 || load.bytes + bytes <= this.high.bytes;
  }
}

/**
 * Keeps the process under its memory budget. A message is copied several times on its
 * way to the API, and a collector that sees a heap far smaller than the machine runs
 * late: garbage, not the messages held, fills a pod. So past `collectAt` of the budget,
 * collect for every `collectEvery` of it taken in; if resident memory is still past
 * `pauseAt` after one, report pressure, and collect at most every `minGapMs` while it
 * lasts, less often (up to 16×) while collections do not relieve it: memory a runtime
 * keeps after freeing is not garbage, and each futile full collection stalls the calls
 * in flight.
 */
export class MemoryGuard {
  pressure = false;
  collections = 0;
  readonly collectAtMb: number;
  readonly pauseAtMb: number;
  readonly collectEveryBytes: number;
  #bytesSinceCollection = 0;
  #bytesSinceCheck = 0;
  #lastCollection = Number.NEGATIVE_INFINITY;
  #gapMs: number;
  readonly #residentMb: () => number;
  readonly #collect: (() => void) | undefined;
  readonly #minGapMs: number;

  /** Whether the runtime lets it ask for a full collection. */
  get canCollect(): boolean {
    return this.#collect !== undefined;
  }

  constructor(
    budgetMb: number,
    residentMb: () => number,
    collect: (() => void) | undefined,
    { collectAt = 0.5, pauseAt = 0.7, collectEvery = 1 / 16, minGapMs = 200 } = {},
  ) {
    const budget = budgetMb > 0 ? budgetMb : Number.POSITIVE_INFINITY; // 0: off
    [this.collectAtMb, this.pauseAtMb] = [budget * collectAt, budget * pauseAt];
    this.collectEveryBytes = Math.max(2 ** 20, budgetMb * 2 ** 20 * collectEvery);
    [this.#residentMb, this.#collect, this.#minGapMs] = [residentMb, collect, minGapMs];
    this.#gapMs = minGapMs;
  }

  /** Counts bytes taken in; checks memory every quarter of `collectEvery`. */
  taken(bytes: number, now = performance.now()): void {
    this.#bytesSinceCollection += bytes;
    this.#bytesSinceCheck += bytes;
    if (this.#bytesSinceCheck >= this.collectEveryBytes / 4) this.check(now);
  }

  /** Samples resident memory, collects if it is due, and returns whether there is pressure. */
  check(now = performance.now()): boolean {
    this.#bytesSinceCheck = 0;
    let rssMb = this.#residentMb();
    const due =
      this.#bytesSinceCollection >= this.collectEveryBytes ||
      (this.pressure && now - this.#lastCollection >= this.#gapMs);
    if (rssMb >= this.collectAtMb && due && this.#collect) {
      this.#collect();
      [this.#lastCollection, this.#bytesSinceCollection] = [now, 0];
      this.collections++;
      rssMb = this.#residentMb();
      const relieved = rssMb < this.pauseAtMb;
      this.#gapMs = relieved ? this.#minGapMs : Math.min(this.#gapMs * 2, this.#minGapMs * 16);
    }
    this.pressure = rssMb >= this.pauseAtMb;
    return this.pressure;
  }
}

// ---- 3. Admit ----

interface PartitionOffsets {
  epoch: number;
  taken: number[]; // offsets taken, ascending, from `head` on
  head: number;
  finished: Set<number>; // finished, but behind an unfinished one
  first: number; // the first offset taken: safe to commit before anything is done
  position?: number; // the next offset to commit: all below are done
  committed?: number;
  version: number; // bumped on each completion
  sentVersion: number; // the version whose done offsets were last committed
}

/**
 * Which offset may be committed per partition when messages finish out of order: the
 * lowest unfinished one. Each partition gets an epoch when first seen; completions
 * carrying an older epoch (from before a revoke) are ignored.
 */
export class OffsetTracker {
  #partitions = new Map<number, PartitionOffsets>();
  #nextEpoch = 1;
  #skips = new Map<number, OffsetRun[]>(); // done by the previous owner above its commit
  /** taken and not yet committable, over all partitions */
  uncommitted = 0;

  /** Registers a message; returns its epoch, or undefined if this offset is already known. */
  track(partition: number, offset: number): number | undefined {
    let state = this.#partitions.get(partition);
    if (!state) {
      const [epoch, taken, finished] = [this.#nextEpoch++, [], new Set<number>()];
      state = { epoch, taken, head: 0, finished, first: offset, version: 0, sentVersion: 0 };
      this.#partitions.set(partition, state);
    }
    const last = state.head < state.taken.length ? state.taken.at(-1) : undefined;
    if ((last !== undefined && offset <= last) || offset < (state.position ?? -1)) return undefined;
    state.taken.push(offset);
    this.uncommitted++;
    return state.epoch;
  }

  complete(partition: number, offset: number, epoch: number): void {
    const state = this.#partitions.get(partition);
    if (!state || state.epoch !== epoch) return;
    // Only an offset still held counts: a stray one would be taken as done, unprocessed.
    const [head, last] = [state.taken[state.head], state.taken.at(-1)];
    if (head === undefined || last === undefined || offset < head || offset > last) return;
    state.version++;
    state.finished.add(offset);
    // Advance over the finished prefix; compaction keeps `taken` from growing forever.
    for (let next = head; state.finished.delete(next); next = state.taken[state.head] ?? -1) {
      state.position = next + 1;
      state.head++;
      this.uncommitted--;
    }
    if (state.head > 1024 && state.head * 2 > state.taken.length) {
      state.taken = state.taken.slice(state.head);
      state.head = 0;
    }
  }

  /**
   * Offsets to commit: partitions whose processed prefix moved. `withDone`: also those
   * where more finished behind an unfinished one, each with the offsets `done` at or
   * above it (as runs) and the `version` to pass to `markSent` once committed.
   */
  committable(withDone = false) {
    const result: { partition: number; offset: number; done?: OffsetRun[]; version?: number }[] =
      [];
    for (const [partition, state] of this.#partitions) {
      const moved = state.position !== undefined && state.position !== state.committed;
      if (withDone && (moved || state.version !== state.sentVersion)) {
        const offset = state.position ?? state.first;
        const finished = toRuns([...state.finished].sort((a, b) => a - b));
        const skips = this.#skips.get(partition) ?? [];
        if ((skips.at(-1)?.[1] ?? 0) <= offset) this.#skips.delete(partition);
        const done = mergeRuns(finished, skips, offset);
        result.push({ partition, offset, done, version: state.version });
      } else if (moved) {
        result.push({ partition, offset: state.position as number });
      }
    }
    return result;
  }

  markSent(partition: number, version: number): void {
    const state = this.#partitions.get(partition);
    if (state) state.sentVersion = version;
  }

  /** Offsets the partition's previous owner had done above its commit, to `skip`. */
  preload(partition: number, runs: OffsetRun[]): void {
    if (runs.length > 0) this.#skips.set(partition, runs);
    else this.#skips.delete(partition);
  }

  /** Whether the previous owner did this offset; if so, it is taken and done at once. */
  skip(partition: number, offset: number): boolean {
    const runs = this.#skips.get(partition) ?? [];
    let [low, high] = [0, runs.length]; // the first run that ends after `offset`
    while (low < high) {
      const middle = (low + high) >> 1;
      if ((runs[middle] as OffsetRun)[1] <= offset) low = middle + 1;
      else high = middle;
    }
    const run = runs[low];
    if (!run || offset < run[0]) return false;
    const epoch = this.track(partition, offset);
    if (epoch !== undefined) this.complete(partition, offset, epoch);
    return epoch !== undefined;
  }

  /** Taken and not processed: queued, in flight, or abandoned at shutdown. */
  get unfinished(): number {
    let count = this.uncommitted;
    for (const state of this.#partitions.values()) count -= state.finished.size;
    return count;
  }

  /** Processed but not yet committed: with `uncommitted`, what a crash would redeliver. */
  get awaitingCommit(): number {
    let count = 0;
    for (const { position, committed, first } of this.#partitions.values()) {
      if (position !== undefined) count += position - (committed ?? first);
    }
    return count;
  }

  markCommitted(partition: number, offset: number): void {
    const state = this.#partitions.get(partition);
    if (state) state.committed = offset;
  }

  position(partition: number): number | undefined {
    return this.#partitions.get(partition)?.position;
  }

  committed(partition: number): number | undefined {
    return this.#partitions.get(partition)?.committed;
  }

  /** The highest offset taken: KafkaJS's high watermark minus it, minus 1, is the lag. */
  lastTaken(partition: number): number | undefined {
    const state = this.#partitions.get(partition);
    if (!state) return undefined;
    if (state.head < state.taken.length) return state.taken.at(-1);
    return state.position === undefined ? undefined : state.position - 1; // all taken are done
  }

  committedOffsets(): Map<number, number> {
    const entries = [...this.#partitions].map(([p, { committed }]) => [p, committed] as const);
    return new Map(entries.filter((entry): entry is [number, number] => entry[1] !== undefined));
  }

  /** Forgets a partition we no longer own; its later completions are ignored. */
  revoke(partition: number): void {
    this.#skips.delete(partition);
    const state = this.#partitions.get(partition);
    if (state) this.uncommitted -= state.taken.length - state.head;
    this.#partitions.delete(partition);
  }
}

type QueueItem = { partition: number; key: string | null; bytes: number };

export interface WorkQueueOptions<T> {
  concurrency: () => number;
  keyOrdering: boolean;
  run: (job: T) => Promise<void>;
  onSettled?: (job: T) => void;
  onError?: (error: unknown, job: T) => void;
}

/**
 * A FIFO that runs at most `concurrency()` jobs at once (read before each start). With
 * key ordering, jobs that share a partition and key form a lane and run one after
 * another, in order. `bytes` counts every job from push until it settles. A running job
 * may wait without its slot (`withoutSlot`, for a retry's backoff), then come back first.
 * A job whose `run` throws settles, and `onError` gets the error (by default it is
 * thrown again, uncaught): a bug must not stall the commits silently.
 */
export class WorkQueue<T extends QueueItem> {
  #ready: T[] = [];
  #readyHead = 0;
  #lanes = new Map<string, { running: boolean; waiting: T[] }>();
  #waiting = 0; // jobs waiting in lanes
  /** bytes of the jobs held, queued or running */
  bytes = 0;
  inFlight = 0;
  /** running jobs waiting without a slot, or for one back */
  retrying = 0;
  #returning: (() => void)[] = []; // of those, the ones whose wait is over
  #settledWaiters: (() => void)[] = [];
  readonly #options: WorkQueueOptions<T>;

  constructor(options: WorkQueueOptions<T>) {
    this.#options = options;
  }

  /** jobs waiting for a slot: not started yet, or started and waiting to be retried */
  get queued(): number {
    return this.#ready.length - this.#readyHead + this.#waiting + this.retrying;
  }

  push(job: T): void {
    this.bytes += job.bytes;
    const lane = this.#laneOf(job);
    const busy = lane === undefined ? undefined : this.#lanes.get(lane);
    if (busy) {
      busy.waiting.push(job); // its key is taken: wait behind it
      this.#waiting++;
      return;
    }
    if (lane !== undefined) this.#lanes.set(lane, { running: false, waiting: [] });
    this.#ready.push(job);
    this.#pump();
  }

  /** Drops the queued (not started) jobs of a partition; returns how many. */
  dropPartition(partition: number): number {
    const before = this.queued;
    const keep = (job: T) => {
      if (job.partition === partition) this.bytes -= job.bytes;
      return job.partition !== partition;
    };
    this.#ready = this.#ready.slice(this.#readyHead).filter(keep);
    this.#readyHead = 0;
    for (const [key, lane] of this.#lanes) {
      if (!key.startsWith(`${partition}\u0000`)) continue;
      this.#waiting -= lane.waiting.length;
      lane.waiting = lane.waiting.filter(keep);
      if (!lane.running) this.#lanes.delete(key); // a running head stays until it settles
    }
    return before - this.queued;
  }

  /**
   * Called by a running job: gives its slot to the next job while `wait` runs, then
   * waits for a slot again, ahead of jobs not started. Meanwhile the job is still held
   * (queued, bytes, its lane). If `wait` rejects (shutdown), that is rethrown at once.
   */
  async withoutSlot(wait: Promise<void>): Promise<void> {
    this.inFlight--;
    this.retrying++;
    this.#pump();
    try {
      await wait;
    } catch (error) {
      this.retrying--;
      this.inFlight++;
      throw error;
    }
    await new Promise<void>((resolve) => {
      this.#returning.push(resolve);
      this.#pump();
    });
  }

  /** Resolves the next time a job settles. */
  settled(): Promise<void> {
    return new Promise((resolve) => this.#settledWaiters.push(resolve));
  }

  /** Resolves once nothing is queued or in flight. */
  async drained(): Promise<void> {
    while (this.queued > 0 || this.inFlight > 0) await this.settled();
  }

  #laneOf(job: T): string | undefined {
    if (!this.#options.keyOrdering || job.key === null) return undefined;
    return `${job.partition}\u0000${job.key}`;
  }

  #pump(): void {
    while (this.inFlight < this.#options.concurrency()) {
      const back = this.#returning.shift(); // a job back from its wait goes first
      if (back) {
        this.retrying--;
        this.inFlight++;
        back();
        continue;
      }
      if (this.#readyHead >= this.#ready.length) return;
      const job = this.#ready[this.#readyHead] as T;
      // Let go of the started job: the array would keep it alive, unseen by the byte cap.
      this.#ready[this.#readyHead++] = undefined as unknown as T;
      if (this.#readyHead > 1024 && this.#readyHead * 2 > this.#ready.length) {
        this.#ready = this.#ready.slice(this.#readyHead);
        this.#readyHead = 0;
      }
      const lane = this.#laneOf(job);
      if (lane !== undefined) (this.#lanes.get(lane) as { running: boolean }).running = true;
      this.inFlight++;
      const { run, onError = (error: unknown) => Promise.reject(error) } = this.#options;
      run(job).then(
        () => this.#settle(job),
        (error: unknown) => {
          this.#settle(job);
          return onError(error, job);
        },
      );
    }
  }

  #settle(job: T): void {
    this.inFlight--;
    this.bytes -= job.bytes;
    const key = this.#laneOf(job);
    const lane = key === undefined ? undefined : this.#lanes.get(key);
    const next = lane?.waiting.shift();
    if (lane && next) {
      this.#waiting--;
      lane.running = false;
      this.#ready.push(next);
    } else if (key !== undefined) {
      this.#lanes.delete(key);
    }
    this.#pump();
    const waiters = this.#settledWaiters;
    this.#settledWaiters = [];
    for (const resolve of waiters) resolve();
    this.#options.onSettled?.(job);
  }
}

// ---- 4. Process ----

type Job = QueueItem & { offset: number; epoch: number; message: KafkaMessage };

type DeadLetter = { reason: string; attempts: number };
type Outcome = { deadLetter?: DeadLetter; malformed?: boolean };

interface ProcessContext {
  limit: AdaptiveLimit;
  api: ApiHealth;
  stats: Stats;
  signal: AbortSignal;
  /** waits `ms` before the next attempt, without holding a concurrency slot */
  waitToRetry: (ms: number) => Promise<void>;
}

/**
 * Validates the message and POSTs it until the API takes it. 429/503 and refused
 * connections are the API asking us to slow down (or being down): wait and retry
 * without using up retries. 5xx, 408 and timeouts use up retries, then dead-letter.
 * Other 4xx mean this message will never be accepted: dead-letter at once.
 */
async function processMessage(job: Job, context: ProcessContext): Promise<Outcome> {
  const { limit, api, stats, signal, waitToRetry } = context;
  const { API_URL, REQUEST_TIMEOUT_MS, RETRY_BASE_MS, RETRY_MAX_MS } = settings;
  const parsed = parseEvent(job.message.value);
  if ("problem" in parsed)
    return { deadLetter: { reason: parsed.problem, attempts: 0 }, malformed: true };
  const body = job.message.value as Buffer<ArrayBuffer>; // the bytes as they came, checked
  const key = `${topic}/${job.partition}/${job.offset}`; // the same on redelivery
  for (let attempt = 1, failures = 0; ; attempt++) {
    const startedAt = performance.now();
    const answer = await callApi(API_URL, body, REQUEST_TIMEOUT_MS, signal, key);
    api.record(answer);
    if (answer.kind === "ok") {
      limit.onSuccess();
      return {};
    }
    if (answer.kind === "overloaded" || answer.kind === "unreachable") {
      if (answer.kind === "overloaded") {
        limit.onOverload(startedAt);
        stats.throttled++;
      }
      await waitToRetry(
        throttledDelayMs(attempt, answer.retryAfterMs, RETRY_BASE_MS, RETRY_MAX_MS),
      );
      continue;
    }
    const last = answer.kind === "rejected" || ++failures > settings.MAX_RETRIES;
    const reason =
      answer.kind === "rejected" ? answer.reason : `${answer.reason} (${failures} failed attempts)`;
    if (last) return { deadLetter: { reason, attempts: attempt } };
    stats.retries++;
    await waitToRetry(backoffMs(failures, RETRY_BASE_MS, RETRY_MAX_MS));
  }
}

type UserEvent = Record<"id" | "email" | "username", string>;

/** The event in a message, or what is wrong with it. */
export function parseEvent(value: Buffer | null): { event: UserEvent } | { problem: string } {
  if (value === null) return { problem: "null value (a tombstone or an empty message)" };
  let event: unknown;
  try {
    event = JSON.parse(value.toString("utf8"));
  } catch (error) {
    return { problem: `invalid JSON: ${(error as Error).message}` };
  }
  if (typeof event !== "object" || event === null || Array.isArray(event)) {
    return { problem: "not a JSON object" };
  }
  const fields = event as Record<string, unknown>;
  const { id, email, username } = fields; // checked without building a list: once per message
  if (typeof id === "string" && typeof email === "string" && typeof username === "string") {
    return { event: event as UserEvent };
  }
  const missing = ["id", "email", "username"].filter((name) => typeof fields[name] !== "string");
  return { problem: `missing or non-string fields: ${missing.join(", ")}` };
}

type Answer =
  | { kind: "ok" }
  | { kind: "overloaded"; reason: string; retryAfterMs?: number } // 429, 503
  | { kind: "failed"; reason: string } // 5xx, 408
  | { kind: "timeout"; reason: string } // no answer within REQUEST_TIMEOUT_MS
  | { kind: "rejected"; reason: string } // other 4xx: this message is the problem
  | { kind: "unreachable"; reason: string; retryAfterMs?: undefined }; // no HTTP answer

/** The calls in flight, each with its own controller: a shutdown aborts them all. */
const openCalls = new Set<AbortController>();

export function abortOpenCalls(reason: unknown) {
  for (const call of openCalls) call.abort(reason);
}

/** POSTs one message; the Idempotency-Key lets the API answer a redelivery without redoing it. */
export async function callApi(
  url: string,
  body: Uint8Array<ArrayBuffer>,
  timeoutMs: number,
  shutdown: AbortSignal,
  idempotencyKey: string,
): Promise<Answer> {
  if (shutdown.aborted) throw shutdown.reason;
  // One controller and timer per call, cleared when it ends, or they would pile up.
  const call = new AbortController();
  const timer = setTimeout(
    () => call.abort(new DOMException("timeout", "TimeoutError")),
    timeoutMs,
  );
  openCalls.add(call);
  let answer: HttpAnswer;
  try {
    const headers = { "content-type": "application/json", "idempotency-key": idempotencyKey };
    answer = await post(url, body, headers, call.signal); // the whole answer, in the timeout
  } catch (error) {
    if (shutdown.aborted) throw error;
    if (call.signal.aborted) return { kind: "timeout", reason: `no answer within ${timeoutMs} ms` };
    const { message, code } = error as NodeJS.ErrnoException;
    const why = code && !message.includes(code) ? ` (${code})` : "";
    return { kind: "unreachable", reason: `${message}${why}` };
  } finally {
    clearTimeout(timer);
    openCalls.delete(call);
  }
  const { status, retryAfter, text } = answer;
  if (status >= 200 && status < 300) return { kind: "ok" };
  const reason = `HTTP ${status}${text ? `: ${text.slice(0, 200)}` : ""}`;
  if (status === 429 || status === 503) {
    return { kind: "overloaded", reason, retryAfterMs: retryAfterMs(retryAfter) };
  }
  if (status >= 500 || status === 408) return { kind: "failed", reason };
  return { kind: "rejected", reason };
}

type HttpAnswer = { status: number; retryAfter: string | null; text: string };

/**
 * One POST: the status, Retry-After and the answer's text. Rejects if the connection
 * fails or the answer is cut short; `signal` aborts it. Node: node:http(s), not fetch,
 * which there kept far more memory per call in flight. 200 calls of 64 KB at a time,
 * 2026-12-07: Node's fetch (undici) peaked at 273 MB RSS and 1,304 calls/s, node:http at
 * 167 MB and 1,669/s; in a 256 MB pod the solved consumer went from 439 to 870 msg/s.
 * Bun and Deno: their own fetch. Bun's node:http was slower (550 against 750 msg/s in
 * the pod); Deno's, on kept-alive connections, answered "ok" for calls that an abort
 * should have ended as timeouts (1 timeout for 48 calls the API held past it), kept
 * their sockets open, and sent them twice (denoland/deno#36786).
 */
const post = "Bun" in globalThis || "Deno" in globalThis ? postWithFetch : postWithHttp;

async function postWithFetch(
  url: string,
  body: Uint8Array<ArrayBuffer>,
  headers: Record<string, string>,
  signal: AbortSignal,
): Promise<HttpAnswer> {
  const response = await fetch(url, { method: "POST", headers, body, signal });
  const text = await response.text();
  return { status: response.status, retryAfter: response.headers.get("retry-after"), text };
}

/** Kept-alive connections, one pool per scheme, reused call after call as fetch's are. */
const [httpAgent, httpsAgent] = [
  new http.Agent({ keepAlive: true }),
  new https.Agent({ keepAlive: true }),
];

function postWithHttp(
  url: string,
  body: Uint8Array,
  headers: Record<string, string>,
  signal: AbortSignal,
): Promise<HttpAnswer> {
  const target = new URL(url);
  const [client, agent] = target.protocol === "https:" ? [https, httpsAgent] : [http, httpAgent];
  const length = String(body.byteLength);
  return new Promise((resolve, reject) => {
    const options = {
      method: "POST",
      agent,
      signal,
      headers: { ...headers, "content-length": length },
    };
    const request = client.request(target, options, (response) => {
      const chunks: Buffer[] = [];
      response.on("data", (chunk: Buffer) => chunks.push(chunk));
      response.on("error", reject);
      response.on("end", () => {
        const retryAfter = response.headers["retry-after"] ?? null;
        const text = Buffer.concat(chunks).toString("utf8");
        resolve({ status: response.statusCode ?? 0, retryAfter, text });
      });
      // Closed before its end: the connection dropped mid-answer (after "end": a no-op).
      response.on("close", () => reject(new Error("the answer was cut short")));
    });
    request.on("error", reject);
    request.end(body);
  });
}

/**
 * Additive increase, multiplicative decrease, as TCP does: each success adds 1/limit
 * (about +1 per round of calls), an overload cuts it to 0.7× (TCP CUBIC's factor), once
 * per round: signals from calls that started before the last cut are ignored. Not half:
 * a 429 costs one quick answer and a wait without a slot, an idle slot costs throughput.
 */
export class AdaptiveLimit {
  #limit: number;
  #lastCutAt = Number.NEGATIVE_INFINITY;
  readonly max: number;

  constructor(max: number) {
    this.max = max;
    this.#limit = max;
  }

  get current(): number {
    return Math.max(1, Math.floor(this.#limit));
  }

  onSuccess(): void {
    this.#limit = Math.min(this.max, this.#limit + 1 / this.#limit);
  }

  /** `startedAt`: when the overloaded call started (performance.now()). */
  onOverload(startedAt: number, now = performance.now()): void {
    if (startedAt < this.#lastCutAt) return;
    this.#limit = Math.max(1, this.#limit * 0.7);
    this.#lastCutAt = now;
  }
}

/** Delay before retry number `attempt` (1, 2, …): doubling, capped, with "equal jitter". */
export function backoffMs(attempt: number, baseMs: number, maxMs: number, random = Math.random) {
  const ceiling = Math.min(maxMs, baseMs * 2 ** (attempt - 1));
  return ceiling / 2 + random() * (ceiling / 2);
}

/** After a 429/503: Retry-After, never less than our backoff (no storm), at most maxMs. */
export function throttledDelayMs(
  attempt: number,
  retryAfter: number | undefined,
  baseMs: number,
  maxMs: number,
  random = Math.random,
): number {
  const backoff = backoffMs(Math.min(attempt, 30), baseMs, maxMs, random);
  return Math.min(maxMs, Math.max(retryAfter ?? 0, backoff));
}

/** Retry-After as milliseconds: delta-seconds or an HTTP date; undefined if absent or bad. */
export function retryAfterMs(header: string | null, now = Date.now()): number | undefined {
  if (header === null || header.trim() === "") return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1_000);
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** Notices an API that gives no answer at all (refused or timed out) for too long. */
export class ApiHealth {
  #silentSince: number | undefined;
  lastError = "";
  readonly #limitMs: number;

  constructor(limitMs: number) {
    this.#limitMs = limitMs;
  }

  record(answer: Answer, now = performance.now()): void {
    if (answer.kind !== "unreachable" && answer.kind !== "timeout") {
      this.#silentSince = undefined;
      return;
    }
    this.lastError = answer.reason;
    this.#silentSince ??= now;
  }

  /** How long the API has been silent, once that is longer than the limit. */
  unreachableFor(now = performance.now()): number | undefined {
    const silence = now - (this.#silentSince ?? now);
    return silence > this.#limitMs ? silence : undefined;
  }
}

/** Publishes the message to the dead-letter topic with why and where it came from. */
async function deadLetter(producer: Producer, job: Job, why: DeadLetter, signal: AbortSignal) {
  const headers = {
    ...job.message.headers,
    "dlq.reason": why.reason,
    "dlq.source.topic": topic,
    "dlq.source.partition": String(job.partition),
    "dlq.source.offset": String(job.offset),
    "dlq.attempts": String(why.attempts),
    "dlq.consumer.group": settings.KAFKA_GROUP_ID,
    "dlq.failed.at": new Date().toISOString(),
  };
  const { key, value } = job.message;
  // The offset counts as processed only once the dead letter is safely written.
  for (let attempt = 1; ; attempt++) {
    try {
      await producer.send({ topic: dlqTopic, acks: -1, messages: [{ key, value, headers }] });
      return;
    } catch (error) {
      const where = `${topic}/${job.partition}@${job.offset}`;
      console.error(`dead-lettering ${where} failed: ${(error as Error).message}`);
      await sleep(backoffMs(Math.min(attempt, 10), 200, 10_000), signal);
    }
  }
}

/** While the group rebalances no call starts: what finished then could not be committed. */
function rebalanceGate() {
  let closed: { done: Promise<void>; open: () => void } | undefined;
  const open = () => {
    closed?.open();
    closed = undefined;
  };
  const close = () => {
    if (closed) return;
    const mine = { done: Promise.resolve(), open: () => {} };
    mine.done = new Promise((resolve) => (mine.open = resolve));
    closed = mine;
    setTimeout(() => closed === mine && open(), 60_000).unref(); // KafkaJS's rebalance timeout
  };
  return { open, close, passed: () => closed?.done };
}

// ---- 5. Commit ----

/**
 * Commits the offsets the tracker allows for the partitions we own, with the offsets done
 * above each in its metadata. Only the broker's answer counts: while KafkaJS restarts
 * after a crash, commitOffsets resolves without committing anything.
 */
function committer(
  consumer: Consumer,
  tracker: OffsetTracker,
  stats: Stats,
  owned: () => Set<number>,
) {
  let confirmed = 0;
  consumer.on(consumer.events.COMMIT_OFFSETS, ({ payload }) => {
    confirmed++;
    for (const { partitions } of payload.topics.filter((t) => t.topic === topic)) {
      for (const { partition, offset } of partitions)
        tracker.markCommitted(partition, Number(offset));
    }
  });
  let chain = Promise.resolve();
  const commitOnce = async () => {
    const offsets = tracker
      .committable(settings.COMMIT_METADATA)
      .filter((o) => owned().has(o.partition));
    if (offsets.length === 0) return;
    const entries = offsets.map(({ partition, offset, done }) => {
      const metadata = done ? encodeDone(offset, done) : null;
      if (metadata === undefined) stats.metadataTooLarge++; // still correct, only more replay
      return { topic, partition, offset: String(offset), metadata: metadata ?? null };
    });
    try {
      const before = confirmed;
      await consumer.commitOffsets(entries).catch((error: { type?: string }) => {
        // A broker with a lower offset.metadata.max.bytes: commit without the lists.
        if (error.type !== "OFFSET_METADATA_TOO_LARGE") throw error;
        stats.metadataTooLarge += entries.length;
        return consumer.commitOffsets(entries.map((entry) => ({ ...entry, metadata: null })));
      });
      if (confirmed === before) return;
      for (const { partition, version } of offsets) {
        if (version !== undefined) tracker.markSent(partition, version);
      }
    } catch (error) {
      stats.commitErrors++; // a rebalance or a broker restart: try again next time
      stats.lastCommitError = (error as Error).message;
    }
  };
  return () => {
    chain = chain.then(commitOnce);
    return chain;
  };
}

/** Offsets from `start` up to, not including, `end`. */
export type OffsetRun = [start: number, end: number];

/** The broker's default offset.metadata.max.bytes: it refuses longer commit metadata. */
export const OFFSET_METADATA_MAX_BYTES = 4_096;
const DONE_PREFIX = "kbp:v1:"; // ours, then the format version

/**
 * Commit metadata listing the offsets at or above `base` (the committed offset) already
 * done: "kbp:v1:<base>:r:<gap>,<length>,…" (runs, base 36, each gap from the end of the
 * run before) or "kbp:v1:<base>:b:<bitmap>" (bit i for offset base + i, base64url),
 * whichever is shorter. Null when nothing is listed, undefined when over `maxBytes`.
 */
export function encodeDone(
  base: number,
  runs: readonly OffsetRun[],
  maxBytes = OFFSET_METADATA_MAX_BYTES,
) {
  if (runs.length === 0) return null;
  const head = `${DONE_PREFIX}${base.toString(36)}:`;
  const bits = (runs.at(-1) as OffsetRun)[1] - base;
  const bitmapLength = head.length + 2 + Math.ceil((Math.ceil(bits / 8) * 4) / 3);
  const budget = Math.min(maxBytes, bitmapLength - 1); // runs, unless longer than the bitmap
  let encoded = `${head}r:`;
  let cursor = base;
  for (const [start, end] of runs) {
    encoded += `${cursor === base ? "" : ","}${(start - cursor).toString(36)},${(end - start).toString(36)}`;
    cursor = end;
    if (encoded.length > budget) break;
  }
  if (encoded.length <= budget) return encoded;
  if (bitmapLength > maxBytes) return undefined;
  const bitmap = Buffer.alloc(Math.ceil(bits / 8));
  for (const [start, end] of runs) {
    for (let i = start - base; i < end - base; i++)
      bitmap[i >> 3] = (bitmap[i >> 3] as number) | (1 << (i & 7));
  }
  return `${head}b:${bitmap.toString("base64url")}`;
}

/** Sorted distinct offsets as runs. */
export function toRuns(sorted: readonly number[]): OffsetRun[] {
  const runs: OffsetRun[] = [];
  for (const offset of sorted) {
    const last = runs.at(-1);
    if (last && last[1] === offset) last[1] = offset + 1;
    else runs.push([offset, offset + 1]);
  }
  return runs;
}

/** The union of two lists of sorted, disjoint runs, from `from` on. */
export function mergeRuns(a: readonly OffsetRun[], b: readonly OffsetRun[], from = 0): OffsetRun[] {
  const merged: OffsetRun[] = [];
  for (const [start, end] of [...a, ...b].sort((x, y) => x[0] - y[0])) {
    const clipped = Math.max(start, from);
    const last = merged.at(-1);
    if (clipped >= end) continue;
    if (last && clipped <= last[1]) last[1] = Math.max(last[1], end);
    else merged.push([clipped, end]);
  }
  return merged;
}

// ---- 6. Rebalance ----

/**
 * Reads, for gained partitions, the offsets their previous owner listed as done, for the
 * tracker to skip; `loaded(partition)` resolves once that partition's are known.
 */
function doneOffsetsLoader(
  kafka: Kafka,
  tracker: OffsetTracker,
  stats: Stats,
  owned: () => Set<number>,
) {
  const loading = new Map<number, Promise<void>>();
  const read = async (partitions: number[]) => {
    try {
      for (const [partition, decoded] of await readDone(kafka, partitions)) {
        if (!owned().has(partition)) continue;
        if (decoded.kind === "done") tracker.preload(partition, decoded.runs);
        if (decoded.kind !== "ignored") continue;
        stats.metadataIgnored++;
        console.error(
          `warning: ignoring the commit metadata of ${topic}/${partition} (${decoded.reason}); its messages after the committed offset are all processed`,
        );
      }
    } catch (error) {
      console.error(
        `warning: could not read the committed metadata (${(error as Error).message}); processing everything after the committed offsets`,
      );
    }
  };
  return {
    load(partitions: number[]) {
      if (partitions.length === 0) return;
      const done = read(partitions).then(() => {
        for (const p of partitions) if (loading.get(p) === done) loading.delete(p);
      });
      for (const p of partitions) loading.set(p, done);
    },
    loaded: (partition: number) => loading.get(partition),
  };
}

/** The done offsets in the commit metadata of `partitions`; retried, then given up. */
async function readDone(kafka: Kafka, partitions: number[]): Promise<Map<number, DecodedDone>> {
  for (let attempt = 1; ; attempt++) {
    const admin = kafka.admin();
    try {
      await admin.connect();
      const [found] = await admin.fetchOffsets({
        groupId: settings.KAFKA_GROUP_ID,
        topics: [topic],
      });
      const decoded = (found?.partitions ?? [])
        .filter(({ partition }) => partitions.includes(partition))
        .map(({ partition, offset, metadata }): [number, DecodedDone] => [
          partition,
          Number(offset) < 0 ? { kind: "none" } : decodeDone(metadata, Number(offset)),
        ]);
      return new Map(decoded);
    } catch (error) {
      if (attempt >= 3) throw error;
      await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
    } finally {
      await admin.disconnect().catch(() => {});
    }
  }
}

export type DecodedDone =
  | { kind: "none" }
  | { kind: "done"; runs: OffsetRun[] }
  | { kind: "ignored"; reason: string };

/**
 * The done offsets listed in commit metadata. Anything we did not write (another tool,
 * format version or committed offset, a malformed list) is "ignored", with the reason.
 */
export function decodeDone(metadata: string | null | undefined, committed: number): DecodedDone {
  if (!metadata) return { kind: "none" };
  const ignored = (reason: string) => ({ kind: "ignored", reason }) as const;
  if (!metadata.startsWith("kbp:v")) return ignored("not written by us");
  const version = metadata.slice(5).match(/^(\d+):/)?.[1];
  if (version !== "1") return ignored(`format version ${version ?? "unknown"}; this reads v1`);
  const parts = metadata.match(/^kbp:v1:([0-9a-z]{1,11}):(?:r:([0-9a-z,]*)|b:([\w-]*))$/);
  if (!parts) return ignored("malformed");
  const base = Number.parseInt(parts[1] as string, 36);
  if (base !== committed) {
    return ignored(`written for offset ${base}, but the committed offset is ${committed}`);
  }
  const runs: OffsetRun[] = [];
  if (parts[2] !== undefined) {
    const numbers = parts[2]
      .split(",")
      .map((n) => (n === "" ? Number.NaN : Number.parseInt(n, 36)));
    if (numbers.length % 2 !== 0) return ignored("malformed runs");
    let cursor = base;
    for (let i = 0; i < numbers.length; i += 2) {
      const [gap, length] = [numbers[i] as number, numbers[i + 1] as number];
      const start = cursor + gap;
      if (!(gap >= (i === 0 ? 0 : 1) && length >= 1 && start + length <= Number.MAX_SAFE_INTEGER)) {
        return ignored("malformed runs");
      }
      runs.push([start, start + length]);
      cursor = start + length;
    }
    return { kind: "done", runs };
  }
  const bitmap = Buffer.from(parts[3] as string, "base64url");
  for (let i = 0; i < bitmap.length * 8; i++) {
    if (((bitmap[i >> 3] as number) & (1 << (i & 7))) === 0) continue;
    const last = runs.at(-1);
    if (last && last[1] === base + i) last[1]++;
    else runs.push([base + i, base + i + 1]);
  }
  return { kind: "done", runs };
}

/**
 * The consumer's CRASH handler. KafkaJS restarts the consumer after most failures, but
 * not when no broker answered at all (KafkaJSGroupCoordinatorNotFound while the only
 * broker restarts): then rejoin, 2 s later. Either way an outage (crashes because no
 * broker could be reached, with no join in between) that has lasted KAFKA_UNREACHABLE_MS
 * stops the consumer with exit 1, as does any other crash KafkaJS does not restart from,
 * or no coordinator for the group from a broker that answered the rejoin: that broker
 * refuses the group (an ACL), and waiting would not change it.
 */
function afterCrash(
  consumer: Consumer,
  consume: () => Promise<void>,
  stopping: () => boolean,
  stop: (reason: string, exitCode: number) => Promise<void>,
) {
  let awaySince: number | undefined;
  // The broker took our last connection: at the start (connect() just did), or a rejoin.
  let answered = true;
  consumer.on(consumer.events.GROUP_JOIN, () => {
    awaySince = undefined;
    answered = false; // a crash from now on proves it again, with a rejoin
  });
  const rejoin = async () => {
    if (stopping()) return;
    // run() crashes again if it still cannot
    answered = await consumer.connect().then(
      () => true,
      () => false,
    );
    if (!stopping()) await consume();
  };
  return ({ payload }: { payload: { error: Error; restart: boolean } }) => {
    if (stopping()) return;
    const { message } = payload.error;
    // A broker that answers yet names no coordinator for the group refuses it (an ACL).
    const refused = answered && payload.error.name === "KafkaJSGroupCoordinatorNotFound";
    answered = false;
    if (!brokerAway(payload.error) || refused) {
      if (!payload.restart || refused) void stop(connectFailure(payload.error, settings), 1);
      return;
    }
    awaySince ??= performance.now();
    const awayMs = performance.now() - awaySince;
    if (awayMs >= settings.KAFKA_UNREACHABLE_MS) {
      const seconds = Math.round(awayMs / 1_000);
      void stop(
        `Kafka is unreachable at ${settings.KAFKA_BROKERS} for ${seconds} s: ${message}`,
        1,
      );
    } else if (!payload.restart) {
      setTimeout(rejoin, 2_000);
    }
  };
}

/** Whether an error, or one it was caused by, says that no broker could be reached. */
export function brokerAway(error: unknown): boolean {
  type Cause = { name?: string; message?: string; cause?: Cause } | undefined;
  for (let e = error as Cause, depth = 0; e && depth < 5; e = e.cause, depth++) {
    const away = /GroupCoordinatorNotFound|NoBrokerAvailable|BrokerNotFound|Connection/;
    if (away.test(e.name ?? "") || /ECONNREFUSED|ECONNRESET|ETIMEDOUT/.test(e.message ?? "")) {
      return true;
    }
  }
  return false;
}

// ==== Instrumentation and plumbing: a reader may skip from here on ====

function newStats() {
  const counts = { processed: 0, deadLettered: 0, malformed: 0, retries: 0, throttled: 0 };
  const rebalances = { redelivered: 0, droppedOnRevoke: 0, skipped: 0, metadataIgnored: 0 };
  const stop = { abandoned: 0, notCommitted: 0, commitErrors: 0, metadataTooLarge: 0 };
  const peaks = { pauses: 0, peakQueued: 0, peakBufferedBytes: 0 };
  return {
    started: performance.now(),
    lastCommitError: "",
    ...counts,
    ...rebalances,
    ...stop,
    ...peaks,
  };
}

type Stats = ReturnType<typeof newStats>;

interface Parts {
  api: ApiHealth;
  stats: Stats;
  queue: WorkQueue<Job>;
  tracker: OffsetTracker;
  limit: AdaptiveLimit;
  watermarks: Watermarks;
  guard: MemoryGuard;
  consumer: Consumer;
  assigned: () => Set<number>;
  stopping: () => boolean;
}
type MemoryFigures = ReturnType<typeof watchMemory>["figures"];

/** Elapsed, processed, rate and ms per message (dead-lettered ones count as done). */
function rates(stats: Stats) {
  const ms = performance.now() - stats.started;
  const done = stats.processed + stats.deadLettered;
  return {
    elapsedS: round(ms / 1_000, 1),
    durationMs: Math.round(ms),
    processed: stats.processed,
    ratePerSec: Math.round((done * 1_000) / ms),
    msPerMessage: done ? round(ms / done, 3) : null,
  };
}

function statusOf(
  { stats, queue, tracker, limit, watermarks, guard, assigned }: Parts,
  memory: MemoryFigures,
) {
  return {
    type: "status",
    ...rates(stats),
    queued: queue.queued,
    bufferedMb: round(queue.bytes / 2 ** 20, 1),
    inFlight: queue.inFlight,
    limit: limit.current,
    paused: watermarks.paused,
    partitions: [...assigned()].sort((a, b) => a - b), // this member's share of the group
    uncommitted: tracker.uncommitted,
    awaitingCommit: tracker.awaitingCommit,
    skipped: stats.skipped,
    metadataTooLarge: stats.metadataTooLarge,
    deadLettered: stats.deadLettered,
    malformed: stats.malformed,
    retries: stats.retries,
    throttled: stats.throttled,
    collections: guard.collections,
    memoryPressure: guard.pressure,
    ...memory,
  };
}

/** The status line for people: short enough to paste; STATUS_FORMAT=json has it all. */
type Shown = "elapsedS" | "processed" | "ratePerSec" | "queued" | "inFlight" | "limit";
export function statusText(
  s: Record<Shown | "uncommitted" | "deadLettered" | "rssMb", number> & { paused: boolean },
): string {
  const flow = `queued ${fmt(s.queued)} calls ${s.inFlight}/${s.limit}${s.paused ? " paused" : ""}`;
  const rest = `uncommitted ${fmt(s.uncommitted)} dlq ${fmt(s.deadLettered)} rss ${s.rssMb} MB`;
  return `[solved] ${s.elapsedS.toFixed(1)}s processed ${fmt(s.processed)} (${fmt(s.ratePerSec)}/s) ${flow} ${rest}`;
}

/**
 * Prints the status line every STATUS_INTERVAL_MS; exits 4 through `stop` once the API
 * has been silent API_UNREACHABLE_MS; exits 3 past MEMORY_LIMIT_MB, as a pod is killed.
 * `exit` prints the last status line and the summary, and exits.
 */
function startReporting(
  parts: Parts,
  stop: (reason: string, exitCode: number, graceMs?: number) => Promise<void>,
) {
  adviseOnMemory(parts.guard.canCollect);
  const memory = watchMemory(settings.MEMORY_LIMIT_MB, (rssMb) => {
    console.log(
      `MEMORY LIMIT EXCEEDED: rss ${rssMb} MB > ${settings.MEMORY_LIMIT_MB} MB; exiting with code ${EXIT_MEMORY_LIMIT}, as a pod would be killed`,
    );
    queueMicrotask(() => exit("memory limit exceeded", EXIT_MEMORY_LIMIT));
  });
  if (settings.METRICS_PORT > 0) serveMetrics(parts);
  setInterval(() => {
    printStatus(statusOf(parts, memory.figures));
    const silence = parts.api.unreachableFor();
    if (silence === undefined) return;
    console.error(
      `The API at ${settings.API_URL} has not answered for ${Math.round(silence / 1_000)} s (last error: ${parts.api.lastError}). Giving up: what is processed gets committed, the rest will be redelivered.`,
    );
    void stop("API unreachable", EXIT_API_UNREACHABLE, 0); // its calls would only retry
  }, settings.STATUS_INTERVAL_MS);
  const exit = (reason: string, exitCode: number) => {
    printStatus(statusOf(parts, memory.figures));
    console.log(JSON.stringify(summaryOf(parts, memory.figures, reason, exitCode)));
    process.exit(exitCode);
  };
  return { exit };
}

function reportStop(reason: string, openAtStop: number, stats: Stats) {
  const lost = stats.notCommitted
    ? `; ${stats.notCommitted} processed but not committed (${stats.lastCommitError || "the broker did not confirm"}), to be delivered again`
    : "";
  console.error(
    `${reason}: ${openAtStop} messages were queued or in flight; ${stats.abandoned} left unfinished${lost}`,
  );
}

/** A handler that throws is a bug: its stack, then a short reason for the summary. */
function aBug(error: unknown): string {
  console.error("Handling a message failed, a bug:", error);
  return `handling a message failed: ${(error as Error)?.message ?? error}`;
}

function pauseIfRunning(consumer: Consumer) {
  try {
    consumer.pause([{ topic }]);
  } catch {
    // not running yet: nothing to pause
  }
}

function printStatus(status: ReturnType<typeof statusOf>) {
  console.log(settings.STATUS_FORMAT === "json" ? JSON.stringify(status) : statusText(status));
}

function summaryOf(parts: Parts, memory: MemoryFigures, exitReason: string, exitCode: number) {
  const { started, lastCommitError, peakBufferedBytes, ...counts } = parts.stats;
  return {
    type: "summary",
    script: "consumer-solved",
    runtime: runtimeName(),
    ...rates(parts.stats),
    ...counts,
    limit: parts.limit.current, // the concurrency limit at the end, after AIMD
    peakBufferedMb: round(peakBufferedBytes / 2 ** 20, 1),
    committed: Object.fromEntries(parts.tracker.committedOffsets()),
    collections: parts.guard.collections, // asked of the runtime by the memory guard
    peakRssMb: memory.peakRssMb,
    peakHeapMb: memory.peakHeapMb,
    memoryLimitMb: settings.MEMORY_LIMIT_MB,
    memoryLimitExceeded: exitCode === EXIT_MEMORY_LIMIT,
    exitReason,
    exitCode,
  };
}

// ---- /metrics, /healthz and /readyz, with METRICS_PORT set ----

/**
 * Serves Prometheus's text format and the two probes on node:http (Bun, Deno and Node
 * all have it). Every figure is read when scraped from what main() keeps anyway, so a
 * scrape costs one pass over a few counters and the assigned partitions.
 */
function serveMetrics(parts: Parts) {
  const { consumer } = parts;
  const group = { joined: false, crashed: "" };
  // Each batch says where the partition ends (its high watermark) and where it started.
  const ends = new Map<number, PartitionEnd>();
  consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
    [group.joined, group.crashed] = [true, ""]; // rejoined after an outage: alive again
    const owned = new Set(payload.memberAssignment[topic] ?? []);
    for (const partition of ends.keys()) if (!owned.has(partition)) ends.delete(partition); // stale
  });
  consumer.on(consumer.events.REBALANCING, () => (group.joined = false));
  consumer.on(consumer.events.CRASH, ({ payload }) => {
    group.joined = false;
    if (!payload.restart) group.crashed = payload.error.message; // until a rejoin, if any
  });
  consumer.on(consumer.events.START_BATCH_PROCESS, ({ payload }) => {
    if (payload.topic !== topic) return;
    const [highWatermark, firstOffset] = [
      Number(payload.highWatermark),
      Number(payload.firstOffset),
    ];
    ends.set(payload.partition, { highWatermark, firstOffset });
  });
  const probes: Record<string, () => [number, string]> = {
    "/metrics": () => [200, exposition(parts, ends)],
    "/healthz": () => (group.crashed ? [503, `crashed: ${group.crashed}`] : [200, "alive"]),
    "/readyz": () => {
      if (parts.stopping()) return [503, "not ready: stopping"];
      if (!group.joined) return [503, "not ready: joining the group"];
      const owned = [...parts.assigned()].sort((a, b) => a - b);
      return [
        200,
        `ready: ${owned.length ? `partitions ${owned.join(",")}` : "idle, no partition to own"}`,
      ];
    },
  };
  const server = createServer((request, response) => {
    const path = request.url?.split("?")[0] ?? "";
    const probe = request.method === "GET" || request.method === "HEAD" ? probes[path] : undefined;
    const [status, body] = probe ? probe() : [404, "not found: /metrics, /healthz or /readyz"];
    const type = path === "/metrics" ? "text/plain; version=0.0.4" : "text/plain";
    response.writeHead(status, { "content-type": `${type}; charset=utf-8` });
    response.end(request.method === "HEAD" ? undefined : `${body}\n`);
  });
  const { METRICS_HOST: host, METRICS_PORT: port } = settings;
  server.on("error", (error) => {
    console.error(`Could not serve metrics on ${host}:${port}: ${error.message}`);
    process.exit(2); // METRICS_PORT or METRICS_HOST is wrong for this machine
  });
  server.listen(port, host, () => console.log(`metrics on http://${host}:${port}/metrics`));
}

type PartitionEnd = { highWatermark: number; firstOffset: number };

/**
 * The text format, version 0.0.4: HELP and TYPE, then the samples. A name ending in
 * _total is a counter, any other a gauge; sizes are in bytes; a figure not known here
 * (no cgroup, a partition with no batch yet) is left out rather than made up.
 */
function exposition(parts: Parts, ends: Map<number, PartitionEnd>): string {
  const { stats: s, queue, tracker, watermarks, guard } = parts;
  const owned = [...parts.assigned()].sort((a, b) => a - b);
  const lastTaken = (p: number) => tracker.lastTaken(p) ?? (ends.get(p)?.firstOffset ?? 0) - 1;
  const lag = (p: number) => Math.max(0, (ends.get(p)?.highWatermark ?? 0) - lastTaken(p) - 1);
  const metrics: [string, string, number | boolean | undefined][] = [
    ["messages_processed_total", "Messages the API accepted.", s.processed],
    ["messages_dead_lettered_total", "Messages written to the dead-letter topic.", s.deadLettered],
    ["messages_malformed_total", "Of those, messages that were not a valid event.", s.malformed],
    ["retries_total", "Failed calls (5xx, 408, timeouts) tried again.", s.retries],
    ["throttled_total", "Calls answered 429 or 503: the concurrency limit was cut.", s.throttled],
    ["messages_skipped_total", "Messages done by a previous owner (commit metadata).", s.skipped],
    ["messages_redelivered_total", "Messages fetched again while still held.", s.redelivered],
    ["messages_dropped_on_revoke_total", "Queued messages of lost partitions.", s.droppedOnRevoke],
    ["pauses_total", "Times fetching paused at a watermark.", s.pauses],
    ["commit_errors_total", "Commits the broker refused or did not answer.", s.commitErrors],
    ["memory_collections_total", "Full collections the memory guard asked for.", guard.collections],
    ["queued_messages", "Messages waiting for a call slot, retries included.", queue.queued],
    ["calls_in_flight", "API calls running now.", queue.inFlight],
    ["held_bytes", "Bytes of the messages held, queued or in flight.", queue.bytes],
    ["uncommitted_messages", "Messages taken and not yet committable.", tracker.uncommitted],
    ["concurrency_limit", "Calls allowed at once now (cut on 429/503).", parts.limit.current],
    ["paused", "1 while fetching from Kafka is paused.", watermarks.paused],
    ["memory_pressure", "1 while memory is past 70% of the budget.", guard.pressure],
    ["memory_budget_bytes", "MEMORY_LIMIT_MB, in bytes.", settings.MEMORY_LIMIT_MB * 2 ** 20],
    ["resident_memory_bytes", "Resident set size (RSS).", process.memoryUsage.rss()],
    ["cgroup_memory_bytes", "Memory charged to the cgroup (a pod's limit).", cgroupMemoryBytes()],
    ["assigned_partitions", "Partitions of the topic this member owns.", owned.length],
  ];
  const partitions: [string, string, (p: number) => number | undefined][] = [
    [
      "high_watermark",
      "The end offset, as of the last batch fetched.",
      (p) => ends.get(p)?.highWatermark,
    ],
    [
      "lag",
      "Messages not taken yet: high watermark - (last taken + 1).",
      (p) => (ends.has(p) ? lag(p) : undefined),
    ],
    [
      "committed_offset",
      "The offset committed, as the broker confirmed.",
      (p) => tracker.committed(p),
    ],
  ];
  const family = (name: string, help: string, samples: string[]) => {
    const type = name.endsWith("_total") ? "counter" : "gauge";
    return [`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...samples].join("\n");
  };
  const labels = (p: number) => `{topic="${topic}",partition="${p}"}`; // [a-zA-Z0-9._-] only
  return [
    ...metrics.map(([name, help, value]) => {
      const samples = value === undefined ? [] : [`consumer_solved_${name} ${Number(value)}`];
      return family(`consumer_solved_${name}`, help, samples);
    }),
    ...partitions.map(([name, help, value]) => {
      const known = owned.filter((p) => value(p) !== undefined);
      const samples = known.map((p) => `consumer_solved_partition_${name}${labels(p)} ${value(p)}`);
      return family(`consumer_solved_partition_${name}`, help, samples);
    }),
  ].join("\n");
}

/**
 * Bytes the kernel charges to this process's memory cgroup, what a pod's limit counts
 * (cgroup v2 memory.current, v1 memory.usage_in_bytes); undefined outside a container
 * (no memory limit below the machine's: the files there count a whole login session or
 * machine, not this process), or where reading is not allowed. Deno lets a program read
 * /proc and /sys only with --allow-all, and would ask on a terminal without
 * --allow-read: it is not tried there without it.
 */
function cgroupMemoryBytes(): number | undefined {
  if (containerLimitMb() === undefined) return undefined;
  type Deno = { permissions: { querySync(p: { name: "read"; path: string }): { state: string } } };
  const deno = (globalThis as { Deno?: Deno }).Deno;
  const own = "/proc/self/cgroup";
  if (deno && deno.permissions.querySync({ name: "read", path: own }).state !== "granted") return;
  try {
    const cgroups = readFileSync(own, "utf8"); // v1: "4:memory:/path"; v2: "0::/path"
    const v1 = cgroups.match(/^\d+:(?:[^:\n]*,)?memory(?:,[^:\n]*)?:(.*)$/m)?.[1];
    const v2 = cgroups.match(/^0::(.*)$/m)?.[1] ?? "/";
    const [mount, file, path] =
      v1 === undefined
        ? ["/sys/fs/cgroup", "memory.current", v2]
        : ["/sys/fs/cgroup/memory", "memory.usage_in_bytes", v1];
    // A container often sees its own cgroup at the mount point, under another path.
    for (const dir of [`${mount}${path}`, mount]) {
      try {
        const bytes = Number(readFileSync(`${dir}/${file}`, "utf8"));
        if (Number.isFinite(bytes)) return bytes;
      } catch {} // not there: the next place
    }
  } catch {} // no cgroup, not Linux, or not allowed
  return undefined;
}

/** Bytes one fetch may bring: a quarter of the byte cap, at most KafkaJS's 10 MB. */
function fetchBytes(): number {
  return Math.max(1_024, Math.min(10 * 2 ** 20, Math.floor(settings.MAX_BUFFERED_BYTES / 4)));
}

/** A message's buffers are views into the whole fetch response: copy its own bytes out. */
function detach(message: KafkaMessage): KafkaMessage {
  const copy = (bytes: Buffer) => Buffer.from(new Uint8Array(bytes).buffer);
  if (message.key) message.key = copy(message.key);
  if (message.value) message.value = copy(message.value);
  for (const [name, value] of Object.entries(message.headers ?? {})) {
    if (Buffer.isBuffer(value) && message.headers) message.headers[name] = copy(value);
  }
  return message;
}

/**
 * Memory the kernel cannot take back, in MB: resident anonymous and shared pages, not the
 * binary and libraries mapped from disk, which RSS counts (56 MB on Node, 40 on Bun) but
 * a pod under pressure drops and reads again. Judged by RSS, the guard collected for every
 * 16 MB taken in while the pod's charge was 80 MB. RSS where /proc is not there, and on
 * Deno: its header grants no read of it, and its fetch keeps garbage that the margin
 * covers (judged this way, its pod peaked at 196-209 MB, over the tests' 192).
 */
function residentMb(): number {
  if (procStatusReadable) {
    try {
      const status = readFileSync("/proc/self/status", "latin1");
      let kb = 0;
      for (const [, value] of status.matchAll(/^Rss(?:Anon|Shmem):\s+(\d+) kB$/gm)) {
        kb += Number(value);
      }
      if (kb > 0) return kb / 1024;
    } catch {}
    procStatusReadable = false; // no such file or fields: RSS from now on, without retrying
  }
  return process.memoryUsage.rss() / 2 ** 20;
}
let procStatusReadable = process.platform === "linux" && !("Deno" in globalThis);

/** A full collection on demand: Bun.gc, or V8's gc, which a program can expose to itself. */
function garbageCollector(): (() => void) | undefined {
  const bun = (globalThis as { Bun?: { gc(force: boolean): void } }).Bun;
  if (bun) return () => bun.gc(true);
  try {
    v8.setFlagsFromString("--expose-gc");
    return vm.runInNewContext("gc") as () => void;
  } catch {
    return undefined;
  }
}

/**
 * The container's memory limit in MB, if it is below the machine's memory. Each runtime
 * reads it from the cgroup itself; Deno lets it only with --allow-sys=systemMemoryInfo.
 */
function containerLimitMb(): number | undefined {
  try {
    const limit = process.constrainedMemory?.() ?? 0;
    return limit > 0 && limit < totalmem() ? Math.floor(limit / 2 ** 20) : undefined;
  } catch {
    return undefined; // not allowed to know: MEMORY_LIMIT_MB or 256 it is
  }
}

/** Notes on runtime limits that would defeat the bounds, with the flag that lifts each. */
function adviseOnMemory(canCollect: boolean) {
  const limitMb = settings.MEMORY_LIMIT_MB;
  // V8 sizes its heap from the machine, not the budget; the guard's collections make up.
  const heapMb = Math.round(v8.getHeapStatistics().heap_size_limit / 2 ** 20);
  if (!canCollect && !("Bun" in globalThis) && limitMb > 0 && heapMb > 2 * limitMb) {
    const flags = [`--max-old-space-size=${limitMb}`, "--max-semi-space-size=1"];
    console.error(
      `note: the heap may grow to ${heapMb} MB here, far above MEMORY_LIMIT_MB=${limitMb}. To behave as in a pod with that limit, start with NODE_OPTIONS="${flags.join(" ")}" (Node) or DENO_V8_FLAGS=${flags.join(",")} (Deno).`,
    );
  }
  // Bun's fetch opens at most 256 connections and queues further calls, timers running.
  const connections =
    "Bun" in globalThis && Number(process.env.BUN_CONFIG_MAX_HTTP_REQUESTS || 256);
  if (connections && settings.CONCURRENCY > connections) {
    console.error(
      `note: CONCURRENCY=${settings.CONCURRENCY} but Bun's fetch opens at most ${connections} connections; the rest would wait inside Bun and time out. Start with BUN_CONFIG_MAX_HTTP_REQUESTS=${settings.CONCURRENCY}.`,
    );
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

function fmt(n: number): string {
  return n.toLocaleString("en-US");
}

function round(n: number, digits: number): number {
  return Number(n.toFixed(digits));
}

// ---- Connecting to a real cluster: the same copy in every script that talks to Kafka
// (tests/unit/drift.test.ts keeps the copies identical) ----

/** TLS and SASL settings, named after the Java client's and librdkafka's. */
function kafkaSecuritySettings() {
  const protocols = "PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL";
  const mechanisms = "PLAIN|SCRAM-SHA-256|SCRAM-SHA-512";
  const oneOf = (names: string) => new RegExp(`^\\s*(${names})\\s*$`, "i");
  const pemText = (what: string) => secret(`${what} as PEM text, instead of a file`);
  return {
    KAFKA_SECURITY_PROTOCOL: text("PLAINTEXT", protocols, oneOf(protocols), protocols),
    KAFKA_SASL_MECHANISM: text("", `${mechanisms} (SASL_*)`, oneOf(mechanisms), mechanisms),
    KAFKA_SASL_USERNAME: text("", "user name for SASL"),
    KAFKA_SASL_PASSWORD: secret("password for SASL (never printed)"),
    KAFKA_SSL_CA_LOCATION: text("", "PEM file of the CAs to trust (unset: public CAs)"),
    KAFKA_SSL_CA_PEM: pemText("the CAs"),
    KAFKA_SSL_CERTIFICATE_LOCATION: text("", "PEM file of a client certificate, for mutual TLS"),
    KAFKA_SSL_CERTIFICATE_PEM: pemText("the client certificate"),
    KAFKA_SSL_KEY_LOCATION: text("", "PEM file of the client certificate's private key"),
    KAFKA_SSL_KEY_PEM: pemText("the private key"),
    KAFKA_SSL_KEY_PASSWORD: secret("passphrase of the private key, if encrypted (never printed)"),
  };
}

/** A setting taken as it is, spaces and all; --help shows its doc, never its value. */
function secret(doc: string): Setting<string> {
  return { fallback: "", doc, expected: "text", parse: (raw) => raw };
}

/** What kafkaConnection and connectFailure read of a script's settings. */
interface KafkaSettings extends Record<keyof ReturnType<typeof kafkaSecuritySettings>, string> {
  KAFKA_BROKERS: string;
  KAFKA_TOPIC: string;
  KAFKA_GROUP_ID?: string;
}

/**
 * KafkaJS's `brokers`, `ssl`, `sasl` and `socketFactory` from the settings, checked
 * before any connection: a combination that contradicts itself or is incomplete, or a
 * certificate or key that cannot be read or used, exits 2 naming the setting.
 */
function kafkaConnection(s: KafkaSettings) {
  const protocol = s.KAFKA_SECURITY_PROTOCOL.toUpperCase();
  const [withSasl, withTls] = [protocol.startsWith("SASL_"), protocol.endsWith("SSL")];
  const names = Object.keys(s) as (keyof KafkaSettings)[];
  for (const name of names.filter((name) => /^KAFKA_(SASL|SSL)_/.test(name))) {
    const needed = name.startsWith("KAFKA_SASL_") ? withSasl : undefined; // TLS: each optional
    const allowed = name.startsWith("KAFKA_SASL_") ? withSasl : withTls;
    const has = `KAFKA_SECURITY_PROTOCOL=${protocol} has`;
    if (needed && !s[name]) badSetting(name, `needed: ${has} SASL`);
    if (!allowed && s[name]) badSetting(name, `set, but ${has} no ${name.split("_")[1]}`);
  }
  const [ca, certificate, key] = (["CA", "CERTIFICATE", "KEY"] as const).map((what) =>
    readPem(s, what),
  );
  if (!certificate !== !key) {
    const missing = certificate ? "KAFKA_SSL_KEY_LOCATION" : "KAFKA_SSL_CERTIFICATE_LOCATION";
    badSetting(missing, "a client certificate needs its key, and the key its certificate");
  }
  const passphrase = s.KAFKA_SSL_KEY_PASSWORD || undefined;
  if (passphrase && !key) badSetting("KAFKA_SSL_KEY_PASSWORD", "set, but there is no key");
  if (key && certificate) {
    if (/ENCRYPTED/.test(key.pem) && !passphrase) {
      badSetting("KAFKA_SSL_KEY_PASSWORD", `needed: the key in ${key.from} is encrypted`);
    }
    let privateKey: KeyObject | undefined;
    try {
      privateKey = createPrivateKey({ key: key.pem, passphrase });
    } catch (error) {
      const which = passphrase ? "KAFKA_SSL_KEY_PASSWORD" : key.from;
      badSetting(which, `the key in ${key.from} cannot be read with it: ${String(error)}`);
    }
    if (privateKey && !new X509Certificate(certificate.pem).checkPrivateKey(privateKey)) {
      badSetting(key.from, `not the key of the certificate in ${certificate.from}`);
    }
  }
  const clientCertificate = key && { cert: certificate?.pem, key: key.pem };
  const ssl = withTls
    ? { ...(ca && { ca: ca.pem }), ...clientCertificate, ...(passphrase && { passphrase }) }
    : undefined;
  const mechanism = s.KAFKA_SASL_MECHANISM.toLowerCase() as "plain";
  const [username, password] = [s.KAFKA_SASL_USERNAME, s.KAFKA_SASL_PASSWORD];
  return {
    brokers: s.KAFKA_BROKERS.split(",").map((broker) => broker.trim()),
    ssl,
    sasl: withSasl ? { mechanism, username, password } : undefined,
    socketFactory: watchedSockets((error) => {
      console.error(connectFailure(error, s));
      process.exit(1);
    }),
  };
}

/**
 * The CA, client certificate or key: from a file (on Deno: --allow-read=<the file>) or
 * as PEM text. Exits 2 if both are set, or it cannot be read, or it is not PEM.
 */
function readPem(s: KafkaSettings, what: "CA" | "CERTIFICATE" | "KEY") {
  const [file, text] = [`KAFKA_SSL_${what}_LOCATION`, `KAFKA_SSL_${what}_PEM`] as const;
  if (s[file] && s[text]) badSetting(text, `set, and so is ${file}: give one of them`);
  let pem = s[text];
  if (s[file]) {
    try {
      pem = readFileSync(s[file], "utf8");
    } catch (error) {
      const { name, message } = error as Error;
      const deno = name === "NotCapable" ? `; allow it with --allow-read=${s[file]}` : "";
      badSetting(file, `cannot read ${s[file]}: ${message}${deno}`);
    }
  }
  if (!pem) return undefined;
  const from = s[file] ? file : text;
  const kind = what === "KEY" ? "[A-Z ]*PRIVATE KEY" : "CERTIFICATE";
  const blocks = pem.match(
    new RegExp(`-----BEGIN ${kind}-----[\\s\\S]+?-----END ${kind}-----`, "g"),
  );
  if (!blocks) return badSetting(from, `not PEM: no "-----BEGIN ${kind}-----" in it`);
  if (what !== "KEY") {
    for (const block of blocks) {
      try {
        new X509Certificate(block);
      } catch (error) {
        badSetting(from, `a certificate in it does not parse: ${String(error)}`);
      }
    }
  }
  return { from, pem: blocks.join("\n") };
}

function badSetting(name: string, why: string): never {
  console.error(`Bad setting ${name}: ${why}\nRun with --help to see every setting.`);
  process.exit(2);
}

/**
 * KafkaJS's own way of opening a connection (TLS or not), watched. Until a broker has
 * answered once, a certificate refused (ours or the broker's), an answer in TLS to plain
 * text, or a connection the broker dropped unanswered twice means the settings do not
 * fit the listener; KafkaJS would retry that for 10 s and more, so `onMismatch` hears of
 * it at once. What happens after KafkaJS itself ended a socket (its connection timeout)
 * does not count; from the first answer on, KafkaJS's retries decide, as always.
 */
function watchedSockets(onMismatch: (error: Error) => void): ISocketFactory {
  let answered = false;
  let droppedUnanswered = 0;
  return ({ host, port, ssl, onConnect }) => {
    const socket = ssl
      ? tls.connect({ host, port, ...(!isIP(host) && { servername: host }), ...ssl }, onConnect)
      : net.connect({ host, port }, onConnect);
    socket.setKeepAlive(true, 60_000);
    const broker = `${host}:${port}`;
    const mismatch = (message: string) =>
      onMismatch(Object.assign(new Error(message), { broker, unanswered: true }));
    // Whether the broker ended it, not KafkaJS: judged at the first sign of the end.
    let byBroker: boolean | undefined;
    const theirs = () => {
      byBroker ??= !socket.writableEnded;
      return !answered && byBroker;
    };
    let [connected, heard, lastError] = [false, false, ""];
    socket.once("connect", () => (connected = true));
    socket.once("data", (chunk: Buffer) => {
      // A TLS record (an alert) where a Kafka response should be: a TLS listener.
      const tlsRecord = !ssl && (chunk[0] === 0x15 || chunk[0] === 0x16) && chunk[1] === 3;
      if (tlsRecord && theirs()) mismatch("it answered in TLS");
      answered = heard = true;
    });
    socket.once("error", (error: Error & { code?: string }) => {
      lastError = `: ${error.message}`;
      const refused = /CERT|SIGNATURE|ISSUER|SELF.SIGNED|ALERT|UNKNOWN_CA/.test(`${error.code}`);
      if (refused && theirs()) onMismatch(Object.assign(error, { broker }));
    });
    socket.once("close", () => {
      if (!theirs() || heard || !connected || ++droppedUnanswered < 2) return;
      mismatch(`the connection was closed unanswered${lastError}`);
    });
    return socket;
  };
}

/**
 * What a failure to connect means, in words that say what to change: no broker; a
 * protocol, certificate, mechanism or password that does not fit; an ACL; no topic; or
 * what Kafka said. It names the broker, mechanism, user, topic or group; never a password.
 */
export function connectFailure(
  error: unknown,
  s: Pick<KafkaSettings, "KAFKA_BROKERS" | "KAFKA_TOPIC"> & Partial<KafkaSettings>,
): string {
  type Cause = { name?: string; type?: string; code?: string; message?: string };
  type Link = Cause & { broker?: string; unanswered?: boolean; cause?: Link; errors?: Link[] };
  const chain: Link[] = []; // the error, its causes, and the errors it gathers (one per topic)
  const walk = (e: Link | undefined) => {
    if (!e || chain.length >= 9) return;
    chain.push(e);
    walk(e.cause);
    for (const each of e.errors ?? []) walk(each);
  };
  walk(error as Link);
  const said = `: ${(chain.find((e) => e.type) ?? chain[0])?.message?.trim() ?? String(error)}`;
  const found = (pattern: RegExp) =>
    chain.some((e) => pattern.test(`${e.type} ${e.name} ${e.code}`));
  const at = chain.find((e) => e.broker)?.broker ?? s.KAFKA_BROKERS;
  const protocol = (s.KAFKA_SECURITY_PROTOCOL || "PLAINTEXT").toUpperCase();
  const who = s.KAFKA_SASL_USERNAME ? `user ${s.KAFKA_SASL_USERNAME}` : "this client";
  const mechanism = s.KAFKA_SASL_MECHANISM?.toUpperCase();
  const mismatch = `KAFKA_SECURITY_PROTOCOL=${protocol} does not match the listener at ${at}`;
  if (found(/UNKNOWN_TOPIC_OR_PARTITION/)) {
    return `Topic ${s.KAFKA_TOPIC} does not exist at ${at} (producer.ts creates it)${said}`;
  }
  if (found(/TOPIC_AUTHORIZATION/)) {
    return `Kafka at ${at} refused ${who} access to topic ${s.KAFKA_TOPIC} (an ACL)${said}`;
  }
  if (found(/GROUP_AUTHORIZATION/)) {
    return `Kafka at ${at} refused ${who} access to consumer group ${s.KAFKA_GROUP_ID} (an ACL)${said}`;
  }
  if (found(/GroupCoordinatorNotFound/)) {
    // KafkaJS drops the broker's reason here (its ERROR line above has it); a broker that
    // answers but names no coordinator for a group refuses the group: an ACL, most likely.
    return `Kafka at ${at} refused ${who} access to consumer group ${s.KAFKA_GROUP_ID} (an ACL, most likely: it names no coordinator for it)${said}`;
  }
  if (found(/AUTHORIZATION_FAILED/)) return `Kafka at ${at} refused ${who} (an ACL)${said}`;
  if (found(/UNSUPPORTED_SASL_MECHANISM/)) {
    return `Kafka at ${at} does not enable SASL mechanism ${mechanism} on this listener (KafkaJS does not pass on the ones it offers; these scripts know PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512)${said}`;
  }
  if (found(/SASLAuthentication/)) {
    return `Kafka at ${at}: authentication failed for ${who} with ${mechanism} (check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD, KAFKA_SASL_MECHANISM)${said}`;
  }
  if (found(/ILLEGAL_SASL_STATE/))
    return `${mismatch}: it takes no SASL (SSL or PLAINTEXT?)${said}`;
  if (found(/ALERT.*(CERTIFICATE|UNKNOWN_CA)/)) {
    const ours = s.KAFKA_SSL_CERTIFICATE_LOCATION || s.KAFKA_SSL_CERTIFICATE_PEM;
    return ours
      ? `Kafka at ${at} refused our client certificate: it must be signed by a CA the broker trusts${said}`
      : `Kafka at ${at} wants a client certificate (mutual TLS: KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION)${said}`;
  }
  if (found(/CERT|SIGNATURE|ISSUER|SELF.SIGNED/)) {
    return `Certificate verification failed for Kafka at ${at}: its certificate is not signed by a CA we trust, or not for that name (KAFKA_SSL_CA_LOCATION names the CA to trust)${said}`;
  }
  if (chain.some((e) => e.unanswered) || found(/ConnectionClosed/)) {
    return protocol.endsWith("SSL")
      ? `${mismatch}: it does not answer TLS (PLAINTEXT or SASL_PLAINTEXT?)${said}`
      : `${mismatch}: it closed the connection, so it wants TLS or SASL (SSL, SASL_SSL or SASL_PLAINTEXT?)${said}`;
  }
  if (found(/ERR_SSL|ERR_TLS/)) return `TLS with Kafka at ${at} failed${said}`;
  if (found(/Connection|BrokerNotFound|NoBrokerAvailable/) || /ECONN|ENOTFOUND/.test(said)) {
    return `Kafka is unreachable at ${at}${said}`;
  }
  return `Kafka at ${at} failed while we connected for topic ${s.KAFKA_TOPIC}${said}`;
}

// ---- KafkaJS on today's runtimes: the same copy in every consumer (tests/unit/drift.test.ts)
// stays quiet about states that are normal ----

/**
 * KafkaJS's warnings and errors, minus the states a fresh broker or a leader election
 * passes through, which KafkaJS retries by itself: a normal start, not a fault. A crash
 * of the consumer for one of them, and the restart KafkaJS announces after it, included.
 */
export function quietTransientErrors() {
  const transient = /coordinator is (not available|loading)|not the correct coordinator|leader/i;
  let lastCrashTransient = false;
  return ({ level, label, namespace, log }: LogEntry) => {
    if (level > logLevel.WARN) return;
    if (log.message.startsWith("Crash: ")) lastCrashTransient = transient.test(log.message);
    const quiet = log.message.startsWith("Restarting the consumer")
      ? lastCrashTransient
      : transient.test(`${log.message} ${log.error ?? ""}`);
    if (quiet) return;
    console.error(
      JSON.stringify({ level: label, ...log, message: `[${namespace}] ${log.message}` }),
    );
  };
}

/**
 * KafkaJS 2.2.4 arms a timer with a negative delay when nothing is throttled; the runtime
 * warns (TimeoutNegativeWarning) and waits 1 ms, as KafkaJS meant. Hide only that warning.
 */
export function hideTimeoutNegativeWarning() {
  for (const print of process.listeners("warning")) {
    process.off("warning", print);
    process.on("warning", (warning) => warning.name === "TimeoutNegativeWarning" || print(warning));
  }
}

// ---- Settings reader: each script of this project carries the same copy, so that it
// stands alone (tests/unit/drift.test.ts keeps the copies identical) ----

interface Setting<T> {
  fallback: T;
  doc: string;
  expected: string;
  parse: (raw: string) => T | undefined; // undefined: not a valid value
}

function text(fallback: string, doc: string, pattern = /\S/, expected = "text"): Setting<string> {
  return { fallback, doc, expected, parse: (raw) => (pattern.test(raw) ? raw.trim() : undefined) };
}

function number(fallback: number, doc: string, min: number, max: number, whole = true) {
  const expected = `${whole ? "a whole number" : "a number"} from ${min} to ${max}`;
  const parse = (raw: string) => {
    const n = Number(raw);
    return n >= min && n <= max && (!whole || Number.isInteger(n)) ? n : undefined;
  };
  return { fallback, doc, expected, parse } satisfies Setting<number>;
}

function flag(fallback: boolean, doc: string): Setting<boolean> {
  const parse = (raw: string) => ({ true: true, false: false })[raw.trim() as "true" | "false"];
  return { fallback, doc, expected: "true or false", parse };
}

/** Reads settings from the environment (unset or empty: the default); a bad one exits 2. */
function readSettings<S extends Record<string, Setting<unknown>>>(spec: S, exitCodes: string) {
  const help = process.argv.includes("--help");
  if (help) console.log(`Settings of ${process.argv[1]?.split("/").pop()}, from the environment:`);
  const values: Record<string, unknown> = {};
  let bad = false;
  for (const [name, { fallback, doc, expected, parse }] of Object.entries(spec)) {
    if (help) console.log(`  ${name.padEnd(20)} ${doc} [default: ${fallback}]`);
    const raw = process.env[name];
    values[name] = raw === undefined || raw === "" ? fallback : parse(raw);
    if (values[name] !== undefined) continue;
    console.error(`Bad setting ${name}=${JSON.stringify(raw)}: expected ${expected}`);
    bad = true;
  }
  if (help) console.log(`Exit codes: ${exitCodes}.`);
  if (help || bad) process.exit(help ? 0 : 2);
  return values as { [K in keyof S]: S[K]["fallback"] };
}
// ---- Memory figures: every consumer of this project carries the same copy
// (tests/unit/drift.test.ts keeps the copies identical) ----

/**
 * Samples resident memory (RSS: what a container's limit counts) and the JS heap every
 * 100 ms, keeps the peaks, and calls `onExceeded` once when RSS passes `limitMb`
 * (0: never), as a pod is killed at its limit.
 */
function watchMemory(limitMb: number, onExceeded: (rssMb: number) => void) {
  const figures = { rssMb: 0, heapMb: 0, peakRssMb: 0, peakHeapMb: 0 };
  const sample = () => {
    const { rss, heapUsed } = process.memoryUsage();
    figures.rssMb = Math.round(rss / 2 ** 20);
    figures.heapMb = Math.round(heapUsed / 2 ** 20);
    figures.peakRssMb = Math.max(figures.peakRssMb, figures.rssMb);
    figures.peakHeapMb = Math.max(figures.peakHeapMb, figures.heapMb);
    if (limitMb > 0 && figures.rssMb > limitMb) {
      clearInterval(timer);
      onExceeded(figures.rssMb);
    }
  };
  const timer = setInterval(sample, 100);
  sample();
  return { figures, stop: () => clearInterval(timer) };
}

function runtimeName(): string {
  const name = ["bun", "deno", "node"].find((r) => process.versions[r]) ?? "node";
  return `${name} ${process.versions[name]}`;
}

if (import.meta.main) await main();
