/**
 * consumer-solved.ts: Kafka consumer back pressure, solved.
 *
 * The same job as consumer-backpressure.ts (one slow HTTP call per message), but only
 * a bounded amount of work is ever let into the process:
 *   - a queue that holds at most HIGH_WATERMARK messages, and at most MAX_BUFFERED_BYTES
 *     of messages taken in and not yet done, queued or in flight;
 *   - at most CONCURRENCY calls in flight, lowered while the API answers 429/503;
 *   - fetching from Kafka pauses when the queue is full and resumes at LOW_WATERMARK,
 *     not only when it is empty, so the queue never runs dry while a resume takes effect;
 *   - the process's own memory is a watermark too: past half of MEMORY_LIMIT_MB (by
 *     default the container's limit) it asks the runtime to collect garbage, and past
 *     70% after a collection it holds a quarter of MAX_BUFFERED_BYTES at most; each
 *     message is copied out of the fetch response, and its bytes are posted as they came;
 *   - an offset is committed only once it and every offset before it in its partition
 *     are processed (auto commit is off), so a crash never skips a message;
 *   - each commit lists in its metadata the offsets done above it (COMMIT_METADATA), and
 *     whoever owns the partition next skips them: after a crash only unfinished work is
 *     redone, and each call's Idempotency-Key lets the API answer that without redoing it;
 *   - failed calls are retried with backoff and then, like malformed messages, sent to
 *     a dead-letter topic with the reason, so nothing is dropped silently;
 *   - SIGINT/SIGTERM stop fetching, finish the queue within SHUTDOWN_TIMEOUT_MS,
 *     commit and exit 0.
 *
 *   bun run consumer-solved.ts   deno run -A consumer-solved.ts   node consumer-solved.ts
 *   CONCURRENCY=50 HIGH_WATERMARK=5000 bun run consumer-solved.ts     (settings: --help)
 *
 * Start mock-api.ts first and fill the topic with producer.ts. Every 500 ms it prints
 * a status line; at exit, one line of JSON with the summary. The core (watermarks,
 * offset tracking, the work queue, the adaptive limit) is exported for unit tests;
 * the consumer itself runs only when this file is the program.
 */

import { Buffer } from "node:buffer";
import { readFileSync } from "node:fs";
import { totalmem } from "node:os";
import v8 from "node:v8";
import vm from "node:vm";
import { Kafka, type KafkaMessage, logLevel, Partitioners } from "kafkajs";
import { z } from "zod";

// ---- Settings (environment variables; --help lists them) ----
const settingsShape = {
  KAFKA_BROKERS: text("localhost:9092", "comma-separated bootstrap servers"),
  KAFKA_TOPIC: text("CREATE_USER", "topic to consume"),
  KAFKA_GROUP_ID: text("consumer-solved", "consumer group"),
  API_URL: z
    .url({ protocol: /^https?$/, error: "expected an http(s) URL" })
    .default("http://127.0.0.1:3000/users")
    .describe("where each message is POSTed (mock-api.ts)"),
  CONCURRENCY: wholeNumber(
    200,
    1,
    10_000,
    "HTTP calls in flight at most (with a 1 s API: 200 msg/s)",
  ),
  HIGH_WATERMARK: wholeNumber(2_000, 1, 10_000_000, "queued messages at which fetching pauses"),
  LOW_WATERMARK: wholeNumber(
    1_000,
    0,
    10_000_000,
    "queued messages at which fetching resumes (below HIGH_WATERMARK)",
  ),
  MAX_BUFFERED_BYTES: wholeNumber(
    16 * 2 ** 20,
    1,
    2 ** 40,
    "bytes of messages taken in and not yet done (queued or in flight) at which fetching pauses, whatever the count",
  ),
  MAX_UNCOMMITTED: wholeNumber(
    10_000,
    1,
    100_000_000,
    "messages taken but not yet committable (behind an unfinished one) at which fetching pauses: bounds redelivery after a crash",
  ),
  COMMIT_INTERVAL_MS: wholeNumber(
    1_000,
    10,
    3_600_000,
    "how often processed offsets are committed",
  ),
  COMMIT_METADATA: flag(
    true,
    "list in each commit's metadata the offsets done above it, and skip those the partition's previous owner listed: less redone after a crash or rebalance",
  ),
  FETCH_MAX_WAIT_MS: wholeNumber(
    100,
    1,
    60_000,
    "KafkaJS maxWaitTimeInMs: how long a fetch waits for data, and how long KafkaJS sleeps while paused, so how late a resume can take effect",
  ),
  REQUEST_TIMEOUT_MS: wholeNumber(
    10_000,
    1,
    3_600_000,
    "a call that has not answered by then counts as failed",
  ),
  MAX_RETRIES: wholeNumber(
    5,
    0,
    1_000,
    "retries of a failed call before the message is dead-lettered",
  ),
  RETRY_BASE_MS: wholeNumber(
    200,
    1,
    3_600_000,
    "first retry delay; doubles each retry, with jitter",
  ),
  RETRY_MAX_MS: wholeNumber(10_000, 1, 3_600_000, "longest retry delay, Retry-After included"),
  API_UNREACHABLE_MS: wholeNumber(
    15_000,
    100,
    3_600_000,
    "exit 4 when the API has given no answer at all (refused, timed out) for this long",
  ),
  DLQ_TOPIC: z.string().trim().default("").describe("dead-letter topic (empty: <KAFKA_TOPIC>.dlq)"),
  KEY_ORDERING: flag(false, "process messages with the same key one at a time, in offset order"),
  SHUTDOWN_TIMEOUT_MS: wholeNumber(
    10_000,
    0,
    3_600_000,
    "on SIGINT/SIGTERM, time to finish queued work before abandoning it",
  ),
  FROM_BEGINNING: flag(true, "start at the oldest message when the group has no committed offset"),
  STOP_AT_END: flag(
    false,
    "exit 0 once everything that was in the topic at start is processed and committed",
  ),
  MEMORY_LIMIT_MB: wholeNumber(
    containerMemoryLimitMb() ?? 256,
    0,
    1_000_000,
    "memory budget (default: the container's limit, else 256): garbage is collected and fetching paused as RSS nears it; exit 3 past it, as a pod is killed (0: off)",
  ),
  STATUS_INTERVAL_MS: wholeNumber(500, 50, 3_600_000, "how often to print the status line"),
  STATUS_FORMAT: choice(
    ["text", "json"],
    "text",
    "status lines as text for people or JSON for tools",
  ),
};

type Settings = z.infer<z.ZodObject<typeof settingsShape>>;

const checkSettings = (s: Settings): [keyof Settings, string] | undefined =>
  s.LOW_WATERMARK >= s.HIGH_WATERMARK
    ? ["LOW_WATERMARK", `must be below HIGH_WATERMARK (${s.HIGH_WATERMARK})`]
    : undefined;

const EXIT_MEMORY_LIMIT = 3; // the same code in every consumer: "killed" at the memory ceiling
const EXIT_API_UNREACHABLE = 4;

// ---- Main flow ----
async function main() {
  const settings = loadSettings(settingsShape, checkSettings);
  const topic = settings.KAFKA_TOPIC;
  const dlqTopic = settings.DLQ_TOPIC || `${topic}.dlq`;
  const kafka = new Kafka({
    clientId: "consumer-solved",
    brokers: settings.KAFKA_BROKERS.split(","),
    logLevel: logLevel.WARN,
    connectionTimeout: 3_000,
    retry: { retries: 5, maxRetryTime: 5_000 },
  });
  const consumer = kafka.consumer({
    groupId: settings.KAFKA_GROUP_ID,
    maxWaitTimeInMs: settings.FETCH_MAX_WAIT_MS,
    // One fetch response is held whole in memory while its messages are handed over
    // (KafkaJS's defaults: 10 MB, 1 MB per partition): keep it a slice of the byte cap.
    // A bigger message still comes, alone: Kafka always returns at least one.
    maxBytes: fetchBytes(settings.MAX_BUFFERED_BYTES),
    maxBytesPerPartition: fetchBytes(settings.MAX_BUFFERED_BYTES),
  });
  // The default partitioner, named so KafkaJS does not warn that its default changed in 2.0.
  const dlqProducer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  const endAtStart = await connect(kafka, consumer, dlqProducer, settings, dlqTopic);

  const stats = newStats();
  const memory = watchMemory(settings.MEMORY_LIMIT_MB);
  // Memory: past half the budget, ask for collections; past 70% after one, hold less.
  const collect = garbageCollector();
  const guard = new MemoryGuard(settings.MEMORY_LIMIT_MB, residentMb, collect);
  const guardTimer = setInterval(() => {
    const before = guard.pressure;
    if (guard.check() !== before) applyFlow();
  }, 50);
  if (!collect) adviseOnHeap(settings.MEMORY_LIMIT_MB);
  adviseOnBunConnections(settings.CONCURRENCY);
  const tracker = new OffsetTracker();
  const limit = new AdaptiveLimit(settings.CONCURRENCY);
  const api = new ApiHealth(settings.API_UNREACHABLE_MS);
  const shutdown = new AbortController(); // aborts waits and calls once the deadline passes
  shutdown.signal.addEventListener("abort", () => abortOpenCalls(shutdown.signal.reason));
  const watermarks = new Watermarks(
    {
      messages: settings.HIGH_WATERMARK,
      bytes: settings.MAX_BUFFERED_BYTES,
      uncommitted: settings.MAX_UNCOMMITTED,
    },
    settings.LOW_WATERMARK / settings.HIGH_WATERMARK,
  );
  const queue = new WorkQueue<Job>({
    concurrency: () => limit.current,
    keyOrdering: settings.KEY_ORDERING,
    run: (job) => handle(job),
    onSettled: (job) => {
      applyFlow();
      // STOP_AT_END: only a partition at its end can complete the set; check the set
      // then, not after every message.
      if (atEnd(job.partition)) checkEnd();
    },
  });
  let assigned = new Set<number>(); // partitions this member owns now
  let startAt: Map<number, number> | undefined; // STOP_AT_END: where each started
  let stopping = false;

  // 1. Admit: eachMessage only puts the message in the queue and returns, so KafkaJS
  //    keeps heartbeating; the queue, not KafkaJS, decides how much work is open.
  const admit = async (partition: number, message: KafkaMessage) => {
    const loading = doneLoading.get(partition); // the previous owner's done offsets
    if (loading) await loading;
    if (assigned.has(partition) && tracker.skip(partition, Number(message.offset))) {
      stats.skipped++; // done before a crash or handover: counts for the commit only
      return;
    }
    const bytes = (message.value?.length ?? 0) + (message.key?.length ?? 0);
    guard.taken(bytes); // may collect garbage, or call for a pause
    // Rare: we pause as soon as the next message might not fit. But KafkaJS hands over
    // the first message of each further batch of the same fetch before it looks at the
    // pause, and a message can be bigger than the last: wait for room (paused, so
    // KafkaJS fetches nothing meanwhile) rather than go over the cap.
    while (!watermarks.hasRoom(load(), bytes)) {
      applyFlow(bytes);
      await queue.settled();
    }
    if (stopping || !assigned.has(partition)) return; // revoked while waiting
    const offset = Number(message.offset);
    const epoch = tracker.track(partition, offset);
    if (epoch === undefined) {
      stats.redelivered++; // already queued, in flight or done: KafkaJS re-fetched it
      return;
    }
    queue.push({
      partition,
      offset,
      epoch,
      key: message.key?.toString() ?? null,
      bytes,
      message: detach(message),
    });
    stats.peakQueued = Math.max(stats.peakQueued, queue.queued);
    stats.peakBufferedBytes = Math.max(stats.peakBufferedBytes, queue.bytes);
    applyFlow(bytes);
  };

  // 2. Process: at most `limit.current` calls run; each ends processed or dead-lettered.
  const processing: ProcessContext = {
    settings,
    limit,
    api,
    stats,
    signal: shutdown.signal,
    // A call waiting to be retried gives its slot to the next message meanwhile.
    waitToRetry: (ms) => queue.withoutSlot(sleep(ms, shutdown.signal)),
  };
  const handle = async (job: Job) => {
    if (shutdown.signal.aborted) throw shutdown.signal.reason; // past the shutdown deadline
    if (rebalanced) await rebalanced.done; // no new call while the group rebalances
    if (!assigned.has(job.partition)) {
      stats.droppedOnRevoke++; // lost meanwhile: its next owner does it
      return;
    }
    const outcome = await processMessage(job, processing);
    if (outcome.deadLetter) {
      await deadLetter(
        dlqProducer,
        dlqTopic,
        topic,
        settings.KAFKA_GROUP_ID,
        job,
        outcome.deadLetter,
        shutdown.signal,
      );
      stats.deadLettered++;
      if (outcome.malformed) stats.malformed++;
    } else {
      stats.processed++;
    }
    tracker.complete(job.partition, job.offset, job.epoch);
  };

  // 3. Pause at the high watermark, resume at the low one (hysteresis).
  const load = (): Load => ({
    messages: queue.queued,
    bytes: queue.bytes,
    uncommitted: tracker.uncommitted,
    memoryPressure: guard.pressure,
  });
  /** `nextBytes`: the size the next message is likely to have (the last one's). */
  const applyFlow = (nextBytes = 0) => {
    if (stopping) return;
    const change = watermarks.update(load(), nextBytes);
    if (change === "pause") {
      consumer.pause([{ topic }]);
      stats.pauses++;
    } else if (change === "resume") {
      consumer.resume([{ topic }]);
    }
  };

  // 4. Commit, per partition, the offset after the longest processed prefix.
  let committing: Promise<void> = Promise.resolve();
  const commit = () => {
    committing = committing.then(async () => {
      const offsets = tracker
        .committable(settings.COMMIT_METADATA)
        .filter(({ partition }) => assigned.has(partition));
      if (offsets.length === 0) return;
      // The offsets done above each commit travel with it, when they fit the broker's limit.
      const entries = offsets.map(({ partition, offset, done }) => {
        const metadata = done ? encodeDone(offset, done) : null;
        if (metadata === undefined) stats.metadataTooLarge++; // still correct, only more replay
        return { topic, partition, offset: String(offset), metadata: metadata ?? null };
      });
      try {
        const confirmedBefore = confirmedCommits;
        await consumer.commitOffsets(entries).catch((error: { type?: string }) => {
          // A broker with a lower offset.metadata.max.bytes: commit without the lists.
          if (error.type !== "OFFSET_METADATA_TOO_LARGE") throw error;
          stats.metadataTooLarge += entries.length;
          return consumer.commitOffsets(entries.map((entry) => ({ ...entry, metadata: null })));
        });
        // KafkaJS resolves without committing while it is not running: the broker's answer counts.
        if (confirmedCommits === confirmedBefore) return;
        for (const { partition, version } of offsets) {
          if (version !== undefined) tracker.markSent(partition, version);
        }
      } catch (error) {
        // A rebalance or a broker restart: keep the offsets and try again next time.
        stats.commitErrors++;
        stats.lastCommitError = (error as Error).message;
      }
    });
    return committing;
  };
  const commitTimer = setInterval(commit, settings.COMMIT_INTERVAL_MS);
  // Only the broker's answer counts: while KafkaJS restarts after a crash (a broker
  // restart, say), commitOffsets resolves without committing anything.
  let confirmedCommits = 0;
  consumer.on(consumer.events.COMMIT_OFFSETS, ({ payload }) => {
    confirmedCommits++;
    for (const committed of payload.topics) {
      if (committed.topic !== topic) continue;
      for (const { partition, offset } of committed.partitions) {
        tracker.markCommitted(partition, Number(offset));
      }
    }
    checkEnd();
  });

  // 5. Rebalances: commit what is done while we still own it, then forget the
  //    partitions we lost: their queued messages are dropped, never committed.
  // While the group rebalances (KafkaJS stops fetching; a rebalance waits for every member,
  // a dead one up to its session timeout), start no call: what finished then could not be
  // committed for the partitions about to move, and their next owner would redo it.
  let rebalanced: { done: Promise<void>; open: () => void } | undefined;
  const openGate = () => {
    rebalanced?.open();
    rebalanced = undefined;
  };
  consumer.on(consumer.events.REBALANCING, () => {
    void commit();
    if (rebalanced || stopping) return;
    let open = () => {};
    const done = new Promise<void>((resolve) => (open = resolve));
    rebalanced = { done, open };
    setTimeout(() => rebalanced?.done === done && openGate(), 60_000); // KafkaJS's rebalance timeout
  });
  consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
    const now = new Set(payload.memberAssignment[topic] ?? []);
    for (const partition of assigned) {
      if (now.has(partition)) continue;
      stats.droppedOnRevoke += queue.dropPartition(partition);
      tracker.revoke(partition);
    }
    const gained = [...now].filter((partition) => !assigned.has(partition));
    if (settings.COMMIT_METADATA && gained.length > 0) loadDone(gained);
    assigned = now;
    // KafkaJS forgets pauses when it restarts the consumer after a crash.
    if (watermarks.paused) consumer.pause([{ topic }]);
    if (endAtStart) {
      startAt = undefined; // until the new partitions' starts are known, not caught up
      findStarts(now);
    }
    void commit(); // what a rebalance refused, again in the new generation, for what we kept
    openGate();
  });
  // COMMIT_METADATA: before a gained partition's messages are admitted, read the offsets
  // its previous owner listed as done above its commit, to skip them.
  const doneLoading = new Map<number, Promise<void>>();
  const loadDone = (partitions: number[]) => {
    const loaded = readDone(kafka, settings.KAFKA_GROUP_ID, topic, partitions).then(
      (found) => {
        for (const [partition, decoded] of found) {
          if (!assigned.has(partition)) continue;
          if (decoded.kind === "done") tracker.preload(partition, decoded.runs);
          if (decoded.kind === "ignored") {
            stats.metadataIgnored++;
            console.error(
              `warning: ignoring the commit metadata of ${topic}/${partition} (${decoded.reason}); its messages after the committed offset are all processed`,
            );
          }
        }
      },
      (error: Error) => {
        console.error(
          `warning: could not read the committed metadata (${error.message}); processing everything after the committed offsets`,
        );
      },
    );
    for (const partition of partitions) doneLoading.set(partition, loaded);
    void loaded.then(() => {
      for (const partition of partitions) {
        if (doneLoading.get(partition) === loaded) doneLoading.delete(partition);
      }
    });
  };
  // STOP_AT_END: where each assigned partition started. Right after a (re)join the
  // broker may still be away: try again rather than crash on the rejection.
  const findStarts = (partitions: Set<number>) => {
    startOffsets(kafka, settings.KAFKA_GROUP_ID, topic, settings.FROM_BEGINNING).then(
      (starts) => {
        if (partitions !== assigned) return; // a later join has its own
        startAt = new Map([...partitions].map((p) => [p, starts.get(p) ?? 0]));
        checkEnd();
      },
      (error: Error) => {
        console.error(`reading the start offsets failed (${error.message}); trying again`);
        setTimeout(() => partitions === assigned && !stopping && findStarts(partitions), 1_000);
      },
    );
  };
  consumer.on(consumer.events.CRASH, ({ payload }) => {
    if (!payload.restart) void stop(`Kafka consumer crashed: ${payload.error.message}`, 1);
  });

  // STOP_AT_END: done when every assigned partition is processed and committed up to
  // where the topic ended when we started. Processed there: commit now, not at the next
  // tick; committed there (the broker said so): stop.
  const reached = (offsetOf: (partition: number) => number | undefined) =>
    endAtStart !== undefined &&
    startAt !== undefined &&
    [...startAt].every(
      ([partition, start]) =>
        Math.max(start, offsetOf(partition) ?? 0) >= (endAtStart.get(partition) ?? 0),
    );
  const atEnd = (partition: number) =>
    endAtStart !== undefined &&
    (tracker.position(partition) ?? 0) >= (endAtStart.get(partition) ?? 0);
  const checkEnd = () => {
    if (stopping) return;
    if (reached((partition) => tracker.committed(partition))) {
      void stop("caught up with the end of the topic", 0);
    } else if (reached((partition) => tracker.position(partition))) {
      void commit();
    }
  };

  // Status every STATUS_INTERVAL_MS; the memory ceiling and the API watchdog.
  const status = () => ({
    type: "status",
    ...stats.rates(),
    queued: queue.queued,
    bufferedMb: round(queue.bytes / 2 ** 20, 1),
    inFlight: queue.inFlight,
    limit: limit.current,
    paused: watermarks.paused,
    partitions: [...assigned].sort((a, b) => a - b), // this member's share of the group
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
    ...memory.figures(),
  });
  const printStatus = () => {
    const s = status();
    console.log(
      settings.STATUS_FORMAT === "json"
        ? JSON.stringify(s)
        : `[solved] ${s.elapsedS.toFixed(1)}s processed ${fmt(s.processed)} (${fmt(s.ratePerSec)}/s, ${s.msPerMessage ?? "-"} ms/msg) queued ${fmt(s.queued)} in flight ${s.inFlight}/${s.limit} (${s.bufferedMb} MB) paused ${s.paused ? "yes" : "no"} uncommitted ${fmt(s.uncommitted)} (+${fmt(s.awaitingCommit)} awaiting commit) dlq ${s.deadLettered} (malformed ${s.malformed}) retries ${s.retries} throttled ${s.throttled}${s.skipped ? ` skipped ${fmt(s.skipped)}` : ""}${s.metadataTooLarge ? ` (done list too large ${s.metadataTooLarge}x)` : ""} | ${memory.describe()}`,
    );
  };
  const statusTimer = setInterval(() => {
    printStatus();
    const silence = api.unreachableFor();
    if (silence !== undefined) {
      console.error(
        `The API at ${settings.API_URL} has not answered for ${Math.round(silence / 1_000)} s (last error: ${api.lastError}). Giving up: what is processed gets committed, the rest will be redelivered.`,
      );
      // No grace period: the calls in flight go to an API that does not answer, and
      // would only keep retrying until SHUTDOWN_TIMEOUT_MS.
      void stop("API unreachable", EXIT_API_UNREACHABLE, 0);
    }
  }, settings.STATUS_INTERVAL_MS);
  memory.onExceeded((figures) => {
    console.log(
      `MEMORY LIMIT EXCEEDED: rss ${figures.rssMb} MB > ${settings.MEMORY_LIMIT_MB} MB (heap ${figures.heapMb} MB); exiting with code ${EXIT_MEMORY_LIMIT}, as a pod would be killed`,
    );
    exitNow("memory limit exceeded", EXIT_MEMORY_LIMIT);
  });
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => void stop(`stopped by ${signal}`, 0));
  }

  await consumer.run({
    autoCommit: false, // KafkaJS would commit messages that are only queued
    eachMessage: async ({ partition, message }) => admit(partition, message),
  });

  // ---- Shutdown ----

  /** Stop fetching, finish the queue within the deadline, commit, disconnect, exit. */
  async function stop(reason: string, exitCode: number, graceMs = settings.SHUTDOWN_TIMEOUT_MS) {
    if (stopping) return;
    stopping = true;
    openGate();
    try {
      consumer.pause([{ topic }]);
    } catch {
      // not running yet: nothing to pause
    }
    const deadline = setTimeout(() => shutdown.abort(), graceMs);
    const unfinishedBefore = queue.queued + queue.inFlight;
    await queue.drained();
    clearTimeout(deadline);
    stats.abandoned = shutdown.signal.aborted ? tracker.uncommitted : 0;
    clearInterval(commitTimer);
    await commit();
    await consumer.disconnect().catch(() => {});
    await dlqProducer.disconnect().catch(() => {});
    const notCommitted = tracker.awaitingCommit; // the last commit failed: say so
    console.error(
      `${reason}: ${unfinishedBefore} messages were queued or in flight; ${stats.abandoned} left unfinished${notCommitted ? `; ${notCommitted} processed but not committed (${stats.lastCommitError || "the broker did not confirm"}), to be delivered again` : ""}`,
    );
    exitNow(reason, exitCode);
  }

  function exitNow(exitReason: string, exitCode: number) {
    clearInterval(statusTimer);
    clearInterval(guardTimer);
    memory.stop();
    printStatus();
    console.log(
      JSON.stringify({
        type: "summary",
        script: "consumer-solved",
        runtime: runtime(),
        ...stats.rates(),
        deadLettered: stats.deadLettered,
        malformed: stats.malformed,
        retries: stats.retries,
        throttled: stats.throttled,
        limit: limit.current, // the concurrency limit at the end, after AIMD
        redelivered: stats.redelivered,
        droppedOnRevoke: stats.droppedOnRevoke,
        abandoned: stats.abandoned,
        pauses: stats.pauses,
        peakQueued: stats.peakQueued,
        peakBufferedMb: round(stats.peakBufferedBytes / 2 ** 20, 1),
        commitErrors: stats.commitErrors,
        skipped: stats.skipped,
        metadataTooLarge: stats.metadataTooLarge,
        metadataIgnored: stats.metadataIgnored,
        committed: Object.fromEntries(tracker.committedOffsets()),
        collections: guard.collections, // asked of the runtime by the memory guard
        peakRssMb: memory.peakRssMb(),
        peakHeapMb: memory.peakHeapMb(),
        memoryLimitMb: settings.MEMORY_LIMIT_MB,
        memoryLimitExceeded: exitCode === EXIT_MEMORY_LIMIT,
        exitReason,
        exitCode,
      }),
    );
    process.exit(exitCode);
  }
}

// ---- Processing one message ----

interface Job {
  partition: number;
  offset: number;
  epoch: number;
  key: string | null;
  bytes: number;
  message: KafkaMessage;
}

interface Outcome {
  deadLetter?: { reason: string; attempts: number };
  malformed?: boolean;
}

interface ProcessContext {
  settings: Settings;
  limit: AdaptiveLimit;
  api: ApiHealth;
  stats: Stats;
  signal: AbortSignal;
  /** waits `ms` before the next attempt, without holding a concurrency slot */
  waitToRetry: (ms: number) => Promise<void>;
}

/**
 * Validates the message and POSTs it until the API takes it. 429/503 and refused
 * connections are the API asking us to slow down (or being down): wait and retry,
 * without using up retries. 5xx, 408 and timeouts use up retries, then dead-letter. Other 4xx mean
 * this message will never be accepted: dead-letter at once.
 */
async function processMessage(job: Job, context: ProcessContext): Promise<Outcome> {
  const { settings, limit, api, stats, signal, waitToRetry } = context;
  const parsed = parseEvent(job.message.value);
  if ("problem" in parsed)
    return { deadLetter: { reason: parsed.problem, attempts: 0 }, malformed: true };
  // Post the bytes we were given, checked, rather than a re-serialised copy of them.
  const body = job.message.value as Buffer<ArrayBuffer>;

  for (let attempt = 1, failures = 0; ; attempt++) {
    const startedAt = performance.now();
    const key = `${settings.KAFKA_TOPIC}/${job.partition}/${job.offset}`; // the same on redelivery
    const answer = await callApi(settings.API_URL, body, settings.REQUEST_TIMEOUT_MS, signal, key);
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
      const wait = throttledDelayMs(
        attempt,
        answer.retryAfterMs,
        settings.RETRY_BASE_MS,
        settings.RETRY_MAX_MS,
      );
      await waitToRetry(wait);
      continue;
    }
    if (answer.kind === "rejected") {
      return { deadLetter: { reason: answer.reason, attempts: attempt } };
    }
    failures++;
    if (failures > settings.MAX_RETRIES) {
      return {
        deadLetter: { reason: `${answer.reason} (${failures} failed attempts)`, attempts: attempt },
      };
    }
    stats.retries++;
    await waitToRetry(backoffMs(failures, settings.RETRY_BASE_MS, settings.RETRY_MAX_MS));
  }
}

type Answer =
  | { kind: "ok" }
  | { kind: "overloaded"; reason: string; retryAfterMs?: number } // 429, 503
  | { kind: "failed"; reason: string } // 5xx, 408
  | { kind: "timeout"; reason: string } // no answer within REQUEST_TIMEOUT_MS
  | { kind: "rejected"; reason: string } // other 4xx: this message is the problem
  | { kind: "unreachable"; reason: string; retryAfterMs?: undefined }; // no HTTP answer at all

/** The calls in flight, each with its own controller: a shutdown aborts them all. */
const openCalls = new Set<AbortController>();

export function abortOpenCalls(reason: unknown) {
  for (const call of openCalls) call.abort(reason);
}

export async function callApi(
  url: string,
  body: Uint8Array<ArrayBuffer>,
  timeoutMs: number,
  shutdown: AbortSignal,
  idempotencyKey: string,
): Promise<Answer> {
  // One controller per call, cleaned up when the call ends: a timer left behind per
  // call would pile up with the calls. Shutdown aborts the open ones (openCalls): one
  // listener in all is cheaper than one added and removed per call.
  if (shutdown.aborted) throw shutdown.reason;
  const call = new AbortController();
  const timer = setTimeout(
    () => call.abort(new DOMException("timeout", "TimeoutError")),
    timeoutMs,
  );
  openCalls.add(call);
  let response: Response;
  let text: string;
  try {
    response = await fetch(url, {
      method: "POST",
      // Lets the API answer a message it has already done without doing it twice.
      headers: { "content-type": "application/json", "idempotency-key": idempotencyKey },
      body,
      signal: call.signal,
    });
    text = await response.text(); // the whole answer, within the same timeout
  } catch (error) {
    if (shutdown.aborted) throw error;
    if (call.signal.aborted) return { kind: "timeout", reason: `no answer within ${timeoutMs} ms` };
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    return {
      kind: "unreachable",
      reason: `${(error as Error).message}${cause ? ` (${cause.code ?? cause.message})` : ""}`,
    };
  } finally {
    clearTimeout(timer);
    openCalls.delete(call);
  }
  const status = response.status;
  if (response.ok) return { kind: "ok" };
  const reason = `HTTP ${status}${text ? `: ${text.slice(0, 200)}` : ""}`;
  if (status === 429 || status === 503) {
    return {
      kind: "overloaded",
      reason,
      retryAfterMs: retryAfterMs(response.headers.get("retry-after")),
    };
  }
  if (status >= 500 || status === 408) return { kind: "failed", reason };
  return { kind: "rejected", reason };
}

interface UserEvent {
  id: string;
  email: string;
  username: string;
}

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
  const { id, email, username } = event as Record<string, unknown>;
  if (typeof id === "string" && typeof email === "string" && typeof username === "string") {
    return { event: event as UserEvent }; // checked without building a list: once per message
  }
  const missing = ["id", "email", "username"].filter(
    (field) => typeof (event as Record<string, unknown>)[field] !== "string",
  );
  return { problem: `missing or non-string fields: ${missing.join(", ")}` };
}

/** Publishes the message to the dead-letter topic with why and where it came from. */
async function deadLetter(
  producer: ReturnType<Kafka["producer"]>,
  dlqTopic: string,
  sourceTopic: string,
  groupId: string,
  job: Job,
  why: { reason: string; attempts: number },
  signal: AbortSignal,
) {
  const headers = {
    ...job.message.headers,
    "dlq.reason": why.reason,
    "dlq.source.topic": sourceTopic,
    "dlq.source.partition": String(job.partition),
    "dlq.source.offset": String(job.offset),
    "dlq.attempts": String(why.attempts),
    "dlq.consumer.group": groupId,
    "dlq.failed.at": new Date().toISOString(),
  };
  // The offset counts as processed only once the dead letter is safely written.
  for (let attempt = 1; ; attempt++) {
    try {
      await producer.send({
        topic: dlqTopic,
        acks: -1,
        messages: [{ key: job.message.key, value: job.message.value, headers }],
      });
      return;
    } catch (error) {
      console.error(
        `dead-lettering ${sourceTopic}/${job.partition}@${job.offset} failed: ${(error as Error).message}`,
      );
      await sleep(backoffMs(Math.min(attempt, 10), 200, 10_000), signal);
    }
  }
}

// ---- The core: pure logic, exported and unit-tested without a broker ----

export interface Limits {
  messages: number;
  bytes: number;
  uncommitted: number;
}

export interface Load extends Limits {
  /** the process is near its memory budget even after a collection */
  memoryPressure?: boolean;
}

/**
 * Pause/resume with hysteresis: pause when any measure reaches its high mark; resume
 * only when every measure is back at its low mark (high × lowRatio). Resuming at a low
 * mark rather than at empty keeps work queued while Kafka's resume takes effect. Under
 * memory pressure the byte cap shrinks to a quarter: less is held while the collector
 * catches up, but enough to keep calls going, so pressure slows the consumer without
 * stopping it.
 */
export class Watermarks {
  paused = false;
  readonly high: Limits;
  readonly low: Limits;

  constructor(high: Limits, lowRatio: number) {
    this.high = high;
    this.low = {
      messages: Math.floor(high.messages * lowRatio),
      bytes: Math.floor(high.bytes * lowRatio),
      uncommitted: Math.floor(high.uncommitted * lowRatio),
    };
  }

  /**
   * The change the load calls for, if any. `nextBytes` is the expected size of the next
   * message: pause already when it would not fit under the byte cap, so the cap is
   * kept by pausing rather than by holding KafkaJS up in eachMessage.
   */
  update(load: Load, nextBytes = 0): "pause" | "resume" | undefined {
    const { high, low } = this;
    if (!this.paused) {
      if (
        load.messages >= high.messages ||
        load.bytes >= high.bytes ||
        load.bytes + nextBytes > high.bytes ||
        load.uncommitted >= high.uncommitted ||
        (load.memoryPressure && load.bytes >= high.bytes / 4)
      ) {
        this.paused = true;
        return "pause";
      }
    } else if (
      load.messages <= low.messages &&
      load.bytes <= low.bytes &&
      load.uncommitted <= low.uncommitted &&
      (!load.memoryPressure || load.bytes <= low.bytes / 4)
    ) {
      this.paused = false;
      return "resume";
    }
    return undefined;
  }

  /**
   * Whether one more message of `bytes` fits under the caps. A message bigger than the
   * byte cap still gets in when nothing else is held, or it could never be processed.
   */
  hasRoom(load: Load, bytes: number): boolean {
    if (load.messages >= this.high.messages) return false;
    return load.bytes === 0 || load.bytes + bytes <= this.high.bytes;
  }
}

/**
 * Keeps the process under its memory budget. Each message is copied several times on
 * its way to the API (socket chunks, the fetch response, a string, the parsed object,
 * the request body), and a collector that sees a heap far smaller than the machine runs
 * late, so garbage, not the messages held, is what fills a pod. So: once resident
 * memory passes `collectAt` of the budget, ask for a full collection for
 * every `collectEvery` of the budget taken in (the garbage comes with the bytes); if it
 * is still past `pauseAt` after one, report pressure, which shrinks the byte cap (see
 * Watermarks), and while it lasts collect at most every `minGapMs`.
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
  readonly #residentMb: () => number;
  readonly #collect: (() => void) | undefined;
  readonly #minGapMs: number;

  constructor(
    budgetMb: number,
    residentMb: () => number,
    collect: (() => void) | undefined,
    { collectAt = 0.5, pauseAt = 0.7, collectEvery = 1 / 16, minGapMs = 200 } = {},
  ) {
    const off = budgetMb <= 0;
    this.collectAtMb = off ? Number.POSITIVE_INFINITY : budgetMb * collectAt;
    this.pauseAtMb = off ? Number.POSITIVE_INFINITY : budgetMb * pauseAt;
    this.collectEveryBytes = Math.max(2 ** 20, budgetMb * 2 ** 20 * collectEvery);
    this.#residentMb = residentMb;
    this.#collect = collect;
    this.#minGapMs = minGapMs;
  }

  /** Counts bytes taken in; checks memory every quarter of `collectEvery`. */
  taken(bytes: number, now = performance.now()): void {
    this.#bytesSinceCollection += bytes;
    this.#bytesSinceCheck += bytes;
    if (this.#bytesSinceCheck >= this.collectEveryBytes / 4) this.check(now);
  }

  /** Samples RSS, collects if it is due, and returns whether there is pressure. */
  check(now = performance.now()): boolean {
    this.#bytesSinceCheck = 0;
    let rssMb = this.#residentMb();
    const due =
      this.#bytesSinceCollection >= this.collectEveryBytes ||
      (this.pressure && now - this.#lastCollection >= this.#minGapMs);
    if (rssMb >= this.collectAtMb && due && this.#collect) {
      this.#collect();
      this.#lastCollection = now;
      this.#bytesSinceCollection = 0;
      this.collections++;
      rssMb = this.#residentMb();
    }
    this.pressure = rssMb >= this.pauseAtMb;
    return this.pressure;
  }
}

interface PartitionOffsets {
  epoch: number;
  /** offsets taken, in the order Kafka gave them (ascending), from `head` on */
  taken: number[];
  head: number;
  /** offsets finished but behind an unfinished one */
  finished: Set<number>;
  /** the first offset taken: where a crash before any commit would start again */
  first: number;
  /** the next offset to commit: everything below it is processed */
  position: number | undefined;
  committed: number | undefined;
  /** bumped on each completion; `sentVersion`: the one whose done offsets were last committed */
  version: number;
  sentVersion: number;
}

/**
 * Which offset may be committed per partition when messages finish out of order: the
 * lowest unfinished one (Kafka's committed offset means "everything before this is
 * done"). Each partition gets an epoch when first seen; completions carrying an older
 * epoch (from before a revoke) are ignored.
 */
export class OffsetTracker {
  #partitions = new Map<number, PartitionOffsets>();
  #nextEpoch = 1;
  /** offsets the previous owner had done above its commit (from the commit metadata) */
  #skips = new Map<number, OffsetRun[]>();
  /** taken and not yet committable, over all partitions */
  uncommitted = 0;

  /** Registers a message; returns its epoch, or undefined if this offset is already known. */
  track(partition: number, offset: number): number | undefined {
    let state = this.#partitions.get(partition);
    if (!state) {
      state = {
        epoch: this.#nextEpoch++,
        taken: [],
        head: 0,
        finished: new Set(),
        first: offset,
        position: undefined,
        committed: undefined,
        version: 0,
        sentVersion: 0,
      };
      this.#partitions.set(partition, state);
    }
    const last = state.head < state.taken.length ? state.taken[state.taken.length - 1] : undefined;
    if (
      (last !== undefined && offset <= last) ||
      (state.position !== undefined && offset < state.position)
    ) {
      return undefined;
    }
    state.taken.push(offset);
    this.uncommitted++;
    return state.epoch;
  }

  complete(partition: number, offset: number, epoch: number): void {
    const state = this.#partitions.get(partition);
    if (!state || state.epoch !== epoch) return;
    // Only an offset still held counts: a stray one parked in `finished` would mark that
    // offset done, unprocessed, the day Kafka hands it over.
    const [head, last] = [state.taken[state.head], state.taken[state.taken.length - 1]];
    if (head === undefined || last === undefined || offset < head || offset > last) return;
    state.version++;
    if (offset === state.taken[state.head]) {
      // The oldest unfinished one, the common case: no need to park it in the set.
      state.position = offset + 1;
      state.head++;
      this.uncommitted--;
    } else {
      state.finished.add(offset);
    }
    // Advance over the finished prefix; compaction keeps `taken` from growing forever.
    while (
      state.head < state.taken.length &&
      state.finished.has(state.taken[state.head] as number)
    ) {
      const done = state.taken[state.head] as number;
      state.finished.delete(done);
      state.position = done + 1;
      state.head++;
      this.uncommitted--;
    }
    if (state.head > 1024 && state.head * 2 > state.taken.length) {
      state.taken = state.taken.slice(state.head);
      state.head = 0;
    }
  }

  /**
   * Offsets to commit now: partitions whose processed prefix moved past the last commit.
   * `withDone`: also those where more finished behind an unfinished one, each with the
   * offsets done at or above the one to commit (`done`, as runs) and the `version` to
   * pass to `markSent` once committed.
   */
  committable(withDone = false): {
    partition: number;
    offset: number;
    done?: OffsetRun[];
    version?: number;
  }[] {
    const result: { partition: number; offset: number; done?: OffsetRun[]; version?: number }[] =
      [];
    for (const [partition, state] of this.#partitions) {
      const moved = state.position !== undefined && state.position !== state.committed;
      if (withDone && (moved || state.version !== state.sentVersion)) {
        // Nothing processed in order yet: the first offset taken is still safe to commit.
        const offset = state.position ?? state.first;
        const finished = toRuns([...state.finished].sort((a, b) => a - b));
        const skips = this.#skips.get(partition) ?? [];
        const done = mergeRuns(finished, skips, offset);
        if ((skips.at(-1)?.[1] ?? 0) <= offset) this.#skips.delete(partition);
        result.push({ partition, offset, done, version: state.version });
      } else if (moved) {
        result.push({ partition, offset: state.position as number });
      }
    }
    return result;
  }

  /** The done offsets of `version` (from `committable(true)`) are committed. */
  markSent(partition: number, version: number): void {
    const state = this.#partitions.get(partition);
    if (state) state.sentVersion = version;
  }

  /** Offsets the partition's previous owner had done above its commit, to `skip`. */
  preload(partition: number, runs: OffsetRun[]): void {
    if (runs.length > 0) this.#skips.set(partition, runs);
    else this.#skips.delete(partition);
  }

  /**
   * Whether the previous owner had done this offset. If so it is taken and completed at
   * once: it counts for the contiguous commit without being processed again.
   */
  skip(partition: number, offset: number): boolean {
    const runs = this.#skips.get(partition);
    if (!runs) return false;
    let low = 0;
    let high = runs.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if ((runs[middle] as OffsetRun)[1] <= offset) low = middle + 1;
      else high = middle;
    }
    const run = runs[low];
    if (!run || offset < run[0]) return false;
    const epoch = this.track(partition, offset);
    if (epoch === undefined) return false;
    this.complete(partition, offset, epoch);
    return true;
  }

  /**
   * Processed, but behind the last commit: with `uncommitted`, what a crash now would
   * deliver again. Counts offsets, so gaps (compacted topics) make it an over-estimate.
   */
  get awaitingCommit(): number {
    let count = 0;
    for (const state of this.#partitions.values()) {
      if (state.position !== undefined) count += state.position - (state.committed ?? state.first);
    }
    return count;
  }

  markCommitted(partition: number, offset: number): void {
    const state = this.#partitions.get(partition);
    if (state) state.committed = offset;
  }

  /** The next offset to commit in a partition: everything before it is processed. */
  position(partition: number): number | undefined {
    return this.#partitions.get(partition)?.position;
  }

  /** The last offset the broker confirmed committed in a partition. */
  committed(partition: number): number | undefined {
    return this.#partitions.get(partition)?.committed;
  }

  committedOffsets(): Map<number, number> {
    const result = new Map<number, number>();
    for (const [partition, state] of this.#partitions) {
      if (state.committed !== undefined) result.set(partition, state.committed);
    }
    return result;
  }

  /** Forgets a partition we no longer own; its later completions are ignored. */
  revoke(partition: number): void {
    this.#skips.delete(partition);
    const state = this.#partitions.get(partition);
    if (!state) return;
    this.uncommitted -= state.taken.length - state.head;
    this.#partitions.delete(partition);
  }
}

/** Offsets from `start` up to, not including, `end`. */
export type OffsetRun = [start: number, end: number];

/** The broker's default offset.metadata.max.bytes: it refuses longer commit metadata. */
export const OFFSET_METADATA_MAX_BYTES = 4_096;
const DONE_PREFIX = "kbp:v"; // ours, then the format version
const DONE_VERSION = 1;

/**
 * The commit metadata that lists which offsets at or above `base` (the committed
 * offset) are already done, so whoever owns the partition next can skip them:
 * "kbp:v1:<base>:r:<gap>,<length>,…" (runs, base 36, each gap from the end of the run
 * before) or "kbp:v1:<base>:b:<bitmap>" (bit i for offset base + i, base64url),
 * whichever is shorter. `runs` are sorted, disjoint and at or above `base`. Returns
 * null when nothing is listed, undefined when even the shorter one is over `maxBytes`.
 */
export function encodeDone(
  base: number,
  runs: readonly OffsetRun[],
  maxBytes = OFFSET_METADATA_MAX_BYTES,
): string | null | undefined {
  if (runs.length === 0) return null;
  const head = `${DONE_PREFIX}${DONE_VERSION}:${base.toString(36)}:`;
  const bits = (runs.at(-1) as OffsetRun)[1] - base;
  const bitmapLength = head.length + 2 + Math.ceil((Math.ceil(bits / 8) * 4) / 3);
  // Runs first, given up as soon as they are longer than the bitmap or the limit.
  const budget = Math.min(maxBytes, bitmapLength - 1);
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
    for (let offset = start; offset < end; offset++) {
      const i = offset - base;
      bitmap[i >> 3] = (bitmap[i >> 3] as number) | (1 << (i & 7));
    }
  }
  return `${head}b:${bitmap.toString("base64url")}`;
}

export type DecodedDone =
  | { kind: "none" }
  | { kind: "done"; runs: OffsetRun[] }
  | { kind: "ignored"; reason: string };

/**
 * The done offsets listed in commit metadata read back with the committed offset.
 * Anything this consumer did not write (another tool, another format version, a
 * committed offset that is not the one it was written for, a malformed list) is
 * "ignored", with the reason, never an exception.
 */
export function decodeDone(metadata: string | null | undefined, committed: number): DecodedDone {
  if (!metadata) return { kind: "none" };
  if (!metadata.startsWith(DONE_PREFIX)) return { kind: "ignored", reason: "not written by us" };
  const version = metadata.slice(DONE_PREFIX.length).match(/^(\d+):/)?.[1];
  if (version !== String(DONE_VERSION)) {
    return {
      kind: "ignored",
      reason: `format version ${version ?? "unknown"}; this consumer reads v${DONE_VERSION}`,
    };
  }
  const parts = metadata.match(/^kbp:v1:([0-9a-z]{1,11}):(?:r:([0-9a-z,]*)|b:([\w-]*))$/);
  if (!parts) return { kind: "ignored", reason: "malformed" };
  const base = Number.parseInt(parts[1] as string, 36);
  if (base !== committed) {
    return {
      kind: "ignored",
      reason: `written for offset ${base}, but the committed offset is ${committed}`,
    };
  }
  const runs: OffsetRun[] = [];
  if (parts[2] !== undefined) {
    const numbers = parts[2]
      .split(",")
      .map((n) => (n === "" ? Number.NaN : Number.parseInt(n, 36)));
    if (numbers.length % 2 !== 0) return { kind: "ignored", reason: "malformed runs" };
    let cursor = base;
    for (let i = 0; i < numbers.length; i += 2) {
      const gap = numbers[i] as number;
      const length = numbers[i + 1] as number;
      const start = cursor + gap;
      if (!(gap >= (i === 0 ? 0 : 1) && length >= 1 && start + length <= Number.MAX_SAFE_INTEGER)) {
        return { kind: "ignored", reason: "malformed runs" };
      }
      runs.push([start, start + length]);
      cursor = start + length;
    }
  } else {
    const bitmap = Buffer.from(parts[3] as string, "base64url");
    let open: number | undefined;
    for (let i = 0; i < bitmap.length * 8; i++) {
      const set = ((bitmap[i >> 3] as number) & (1 << (i & 7))) !== 0;
      if (set && open === undefined) open = base + i;
      if (!set && open !== undefined) {
        runs.push([open, base + i]);
        open = undefined;
      }
    }
    if (open !== undefined) runs.push([open, base + bitmap.length * 8]);
  }
  return { kind: "done", runs };
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
  const all = [...a, ...b].sort((x, y) => x[0] - y[0]);
  const merged: OffsetRun[] = [];
  for (const [start, end] of all) {
    const clipped = Math.max(start, from);
    if (clipped >= end) continue;
    const last = merged.at(-1);
    if (last && clipped <= last[1]) last[1] = Math.max(last[1], end);
    else merged.push([clipped, end]);
  }
  return merged;
}

interface QueueItem {
  partition: number;
  key: string | null;
  bytes: number;
}

export interface WorkQueueOptions<T> {
  /** how many jobs may run at once; read before each start, so it may change */
  concurrency: () => number;
  keyOrdering: boolean;
  run: (job: T) => Promise<void>;
  onSettled?: (job: T) => void;
}

/**
 * A FIFO of jobs that runs at most `concurrency()` of them at once. With key ordering,
 * jobs that share a partition and key form a lane: one of them is ready or running,
 * the others wait behind it and run one after another, in the order they came; other
 * keys keep running concurrently. `bytes` counts every job from push until it settles,
 * so a cap on it bounds the messages held in memory, running ones included. A running
 * job may wait without its slot (`withoutSlot`, for a retry's backoff), then come back.
 */
export class WorkQueue<T extends QueueItem> {
  #ready: T[] = [];
  #readyHead = 0;
  #lanes = new Map<string, { running: boolean; waiting: T[] }>();
  #waiting = 0; // jobs waiting in lanes
  #bytes = 0;
  #inFlight = 0;
  #retrying = 0; // running jobs waiting without a slot, or for one back
  #returning: (() => void)[] = []; // of those, the ones whose wait is over
  #settledWaiters: (() => void)[] = [];
  readonly #options: WorkQueueOptions<T>;

  constructor(options: WorkQueueOptions<T>) {
    this.#options = options;
  }

  /** jobs waiting for a slot: not started yet, or started and waiting to be retried */
  get queued(): number {
    return this.#ready.length - this.#readyHead + this.#waiting + this.#retrying;
  }

  /** started jobs waiting, without a slot, to be retried */
  get retrying(): number {
    return this.#retrying;
  }

  /** bytes of the jobs queued or running */
  get bytes(): number {
    return this.#bytes;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  push(job: T): void {
    this.#bytes += job.bytes;
    const lane = this.#laneOf(job);
    if (lane !== undefined) {
      const busy = this.#lanes.get(lane);
      if (busy) {
        busy.waiting.push(job); // its key is taken: wait behind it
        this.#waiting++;
        return;
      }
      this.#lanes.set(lane, { running: false, waiting: [] });
    }
    this.#ready.push(job);
    this.#pump();
  }

  /** Drops the queued (not started) jobs of a partition; returns how many. */
  dropPartition(partition: number): number {
    const before = this.queued;
    const keep = (job: T) => {
      if (job.partition !== partition) return true;
      this.#bytes -= job.bytes;
      return false;
    };
    this.#ready = this.#ready.slice(this.#readyHead).filter(keep);
    this.#readyHead = 0;
    for (const [key, lane] of this.#lanes) {
      if (!key.startsWith(`${partition}\u0000`)) continue;
      this.#waiting -= lane.waiting.length;
      for (const job of lane.waiting) this.#bytes -= job.bytes;
      lane.waiting = [];
      // A lane whose head was only ready has just lost it; one whose head is running
      // stays until that job settles.
      if (!lane.running) this.#lanes.delete(key);
    }
    return before - this.queued;
  }

  /**
   * Called by a running job: gives its slot to the next job while `wait` runs, then
   * waits for a slot again, ahead of the jobs not started yet. Meanwhile the job is
   * still held: counted in `queued` and `bytes`, its key's lane still blocked, and it
   * settles only when its `run` ends. If `wait` rejects (shutdown), it is rethrown at
   * once, and the job settles as a running one would.
   */
  async withoutSlot(wait: Promise<void>): Promise<void> {
    this.#inFlight--;
    this.#retrying++;
    this.#pump();
    try {
      await wait;
    } catch (error) {
      this.#retrying--;
      this.#inFlight++;
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
    while (this.queued > 0 || this.#inFlight > 0) await this.settled();
  }

  #laneOf(job: T): string | undefined {
    return this.#options.keyOrdering && job.key !== null
      ? `${job.partition}\u0000${job.key}`
      : undefined;
  }

  #pump(): void {
    while (this.#inFlight < this.#options.concurrency()) {
      const back = this.#returning.shift(); // a job back from its wait goes first
      if (back) {
        this.#retrying--;
        this.#inFlight++;
        back();
        continue;
      }
      if (this.#readyHead >= this.#ready.length) return;
      const job = this.#ready[this.#readyHead] as T;
      // Let go of the started job here: until compaction, the array would keep every
      // started message (and its bytes) alive, unseen by the byte cap.
      this.#ready[this.#readyHead++] = undefined as unknown as T;
      if (this.#readyHead > 1024 && this.#readyHead * 2 > this.#ready.length) {
        this.#ready = this.#ready.slice(this.#readyHead);
        this.#readyHead = 0;
      }
      const lane = this.#laneOf(job);
      if (lane !== undefined) (this.#lanes.get(lane) as { running: boolean }).running = true;
      this.#inFlight++;
      // Rejected: abandoned at shutdown, its offset stays uncommitted.
      const settle = () => this.#settle(job);
      this.#options.run(job).then(settle, settle);
    }
  }

  #settle(job: T): void {
    this.#inFlight--;
    this.#bytes -= job.bytes;
    const key = this.#laneOf(job);
    const lane = key === undefined ? undefined : this.#lanes.get(key);
    if (key !== undefined && lane) {
      const next = lane.waiting.shift();
      if (next) {
        this.#waiting--;
        lane.running = false;
        this.#ready.push(next);
      } else {
        this.#lanes.delete(key);
      }
    }
    this.#pump();
    const waiters = this.#settledWaiters;
    this.#settledWaiters = [];
    for (const resolve of waiters) resolve();
    this.#options.onSettled?.(job);
  }
}

/**
 * Additive increase, multiplicative decrease, as TCP does: each success adds 1/limit
 * (so about +1 per round of calls), each overload signal halves the limit, once per
 * round: signals from calls that started before the last cut are ignored.
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
    this.#limit = Math.max(1, this.#limit / 2);
    this.#lastCutAt = now;
  }
}

/** Delay before retry number `attempt` (1, 2, …): doubling, capped, with "equal jitter". */
export function backoffMs(
  attempt: number,
  baseMs: number,
  maxMs: number,
  random = Math.random,
): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** (attempt - 1));
  return ceiling / 2 + random() * (ceiling / 2);
}

/**
 * Wait before calling again after a 429/503 or a refused connection: Retry-After, but
 * never less than our own backoff (a "Retry-After: 0" taken at its word makes every
 * throttled call retry at once, a storm of 429s), and never more than maxMs.
 */
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
    const silent = answer.kind === "unreachable" || answer.kind === "timeout";
    if (!silent) {
      this.#silentSince = undefined;
      return;
    }
    this.lastError = answer.reason;
    this.#silentSince ??= now;
  }

  /** How long the API has been silent, once that is longer than the limit. */
  unreachableFor(now = performance.now()): number | undefined {
    if (this.#silentSince === undefined) return undefined;
    const silence = now - this.#silentSince;
    return silence > this.#limitMs ? silence : undefined;
  }
}

// ---- Helpers ----

/**
 * A message's key, value and headers are views into the whole fetch response (up to
 * megabytes): copy them out, so a message that waits holds its own bytes only.
 */
function detach(message: KafkaMessage): KafkaMessage {
  const copy = (bytes: Buffer) => Buffer.from(new Uint8Array(bytes).buffer);
  if (message.key) message.key = copy(message.key);
  if (message.value) message.value = copy(message.value);
  for (const [name, value] of Object.entries(message.headers ?? {})) {
    if (Buffer.isBuffer(value) && message.headers) message.headers[name] = copy(value);
  }
  return message;
}

/** Bytes one fetch may bring: a quarter of the byte cap, at most KafkaJS's 10 MB. */
function fetchBytes(maxBufferedBytes: number): number {
  return Math.max(1_024, Math.min(10 * 2 ** 20, Math.floor(maxBufferedBytes / 4)));
}

/**
 * Resident memory (RSS), in MB: what the scripts' own ceiling measures. It also counts
 * the runtime's binary mapped from disk, which a cgroup may not charge: the guard errs
 * on the safe side.
 */
function residentMb(): number {
  return process.memoryUsage.rss() / 2 ** 20;
}

/**
 * A full garbage collection on demand: Bun.gc on Bun; on V8 (Node, Deno) the gc
 * function, which a running program can expose to itself without a start flag.
 */
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
 * The memory limit of the container (cgroup) this process runs in, in MB, if it has
 * one below the machine's memory: cgroup v2's memory.max, or v1's memory.limit_in_bytes,
 * the lowest on the way up from this process's cgroup.
 */
function containerMemoryLimitMb(): number | undefined {
  let membership: string;
  try {
    membership = readFileSync("/proc/self/cgroup", "utf8");
  } catch {
    return undefined; // not Linux, or not allowed to look
  }
  const v1 = membership.match(/^\d+:(?:[^:]*,)?memory(?:,[^:]*)?:(.*)$/m)?.[1];
  const v2 = membership.match(/^0::(.*)$/m)?.[1];
  const [base, file, path] =
    v1 !== undefined
      ? ["/sys/fs/cgroup/memory", "memory.limit_in_bytes", v1]
      : ["/sys/fs/cgroup", "memory.max", v2 ?? "/"];
  let lowest = totalmem();
  // In a container the cgroup's own folder is usually mounted as the root: look there too.
  const parts = path.split("/").filter(Boolean);
  const dirs = [base, ...parts.map((_, i) => `${base}/${parts.slice(0, i + 1).join("/")}`)];
  for (const dir of dirs) {
    try {
      const limit = Number(readFileSync(`${dir}/${file}`, "utf8").trim()); // "max": NaN
      if (Number.isFinite(limit) && limit > 0) lowest = Math.min(lowest, limit);
    } catch {
      // not there (or not ours to read): look further
    }
  }
  return lowest < totalmem() ? Math.floor(lowest / 2 ** 20) : undefined;
}

function newStats() {
  const started = performance.now();
  const stats = {
    processed: 0,
    deadLettered: 0,
    malformed: 0,
    retries: 0,
    throttled: 0,
    redelivered: 0,
    droppedOnRevoke: 0,
    abandoned: 0,
    pauses: 0,
    peakQueued: 0,
    peakBufferedBytes: 0,
    commitErrors: 0,
    lastCommitError: "",
    skipped: 0, // done by the partition's previous owner, listed in its commit metadata
    metadataTooLarge: 0, // commits made without their list of done offsets: it did not fit
    metadataIgnored: 0, // partitions whose commit metadata was not ours to read
    /** elapsed, processed (incl. dead-lettered), rate and ms per message so far */
    rates: () => {
      const seconds = (performance.now() - started) / 1_000;
      const done = stats.processed + stats.deadLettered;
      return {
        elapsedS: round(seconds, 1),
        durationMs: Math.round(seconds * 1_000),
        processed: stats.processed,
        ratePerSec: Math.round(done / seconds),
        msPerMessage: done ? round((seconds * 1_000) / done, 3) : null,
      };
    },
  };
  return stats;
}

type Stats = ReturnType<typeof newStats>;

/** Connects everything; with STOP_AT_END, returns where each partition ended at start. */
async function connect(
  kafka: Kafka,
  consumer: ReturnType<Kafka["consumer"]>,
  producer: ReturnType<Kafka["producer"]>,
  settings: Settings,
  dlqTopic: string,
): Promise<Map<number, number> | undefined> {
  const admin = kafka.admin();
  try {
    await admin.connect();
    await Promise.all([consumer.connect(), producer.connect()]);
    // Create the dead-letter topic up front; where topics cannot be created, it must exist.
    await admin
      .createTopics({ topics: [{ topic: dlqTopic }], waitForLeaders: true })
      .catch((error: Error) => {
        console.error(`could not create ${dlqTopic} (${error.message}); it must exist already`);
      });
    await consumer.subscribe({
      topics: [settings.KAFKA_TOPIC],
      fromBeginning: settings.FROM_BEGINNING,
    });
    if (!settings.STOP_AT_END) return undefined;
    const offsets = await admin.fetchTopicOffsets(settings.KAFKA_TOPIC);
    return new Map(offsets.map((p) => [p.partition, Number(p.high)]));
  } catch (error) {
    console.error(`Kafka is unreachable at ${settings.KAFKA_BROKERS}: ${(error as Error).message}`);
    process.exit(1);
  } finally {
    await admin.disconnect();
  }
}

/** The offset each partition starts from: committed, else the oldest (or newest). */
async function startOffsets(
  kafka: Kafka,
  groupId: string,
  topic: string,
  fromBeginning: boolean,
): Promise<Map<number, number>> {
  const admin = kafka.admin();
  try {
    await admin.connect();
    const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
    const bounds = await admin.fetchTopicOffsets(topic);
    return new Map(
      bounds.map((p) => {
        const offset = Number(
          committed?.partitions.find((c) => c.partition === p.partition)?.offset ?? -1,
        );
        return [p.partition, offset >= 0 ? offset : Number(fromBeginning ? p.low : p.high)];
      }),
    );
  } finally {
    await admin.disconnect();
  }
}

/** The done offsets listed in the commit metadata of `partitions`; retried, then given up. */
async function readDone(
  kafka: Kafka,
  groupId: string,
  topic: string,
  partitions: number[],
): Promise<Map<number, DecodedDone>> {
  for (let attempt = 1; ; attempt++) {
    const admin = kafka.admin();
    try {
      await admin.connect();
      const [found] = await admin.fetchOffsets({ groupId, topics: [topic] });
      const wanted = new Set(partitions);
      return new Map(
        (found?.partitions ?? [])
          .filter(({ partition }) => wanted.has(partition))
          .map(({ partition, offset, metadata }) => [
            partition,
            Number(offset) < 0 ? { kind: "none" } : decodeDone(metadata, Number(offset)),
          ]),
      );
    } catch (error) {
      if (attempt >= 3) throw error;
      await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
    } finally {
      await admin.disconnect().catch(() => {});
    }
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

interface MemoryFigures {
  rssMb: number;
  heapMb: number;
  maxRssMb: number;
  maxHeapMb: number;
}

/**
 * Watches resident memory (RSS: what a container's limit counts) and heap every
 * 100 ms, keeps the peaks, and calls back once when RSS passes the ceiling.
 */
function watchMemory(limitMb: number) {
  let current = { rssMb: 0, heapMb: 0 };
  let maxRssMb = 0;
  let maxHeapMb = 0;
  let exceeded: ((figures: MemoryFigures) => void) | undefined;
  const sample = () => {
    const { rss, heapUsed } = process.memoryUsage();
    current = { rssMb: Math.round(rss / 2 ** 20), heapMb: Math.round(heapUsed / 2 ** 20) };
    maxRssMb = Math.max(maxRssMb, current.rssMb);
    maxHeapMb = Math.max(maxHeapMb, current.heapMb);
    if (limitMb > 0 && current.rssMb > limitMb && exceeded) {
      const callback = exceeded;
      exceeded = undefined;
      callback(figures());
    }
  };
  const figures = (): MemoryFigures => ({ ...current, maxRssMb, maxHeapMb });
  sample();
  const timer = setInterval(sample, 100);
  return {
    figures,
    peakRssMb: () => maxRssMb,
    peakHeapMb: () => maxHeapMb,
    onExceeded: (callback: (figures: MemoryFigures) => void) => {
      exceeded = callback;
    },
    describe: () =>
      `rss ${current.rssMb} MB (max ${maxRssMb}${limitMb ? ` / limit ${limitMb}` : ""}) heap ${current.heapMb} MB (max ${maxHeapMb})`,
    stop: () => clearInterval(timer),
  };
}

/**
 * V8 (Node, Deno) sizes its heap from the machine, not from MEMORY_LIMIT_MB, and on a
 * large machine lets garbage grow far beyond what it holds. In a container Node sizes
 * it from the limit itself (Deno does not). The memory guard's collections make up for
 * it; where the runtime would not let us collect, it has to be told.
 */
function adviseOnHeap(limitMb: number) {
  if (limitMb === 0 || "Bun" in globalThis) return;
  const heapLimitMb = Math.round(v8.getHeapStatistics().heap_size_limit / 2 ** 20);
  if (heapLimitMb <= 2 * limitMb) return;
  const flags = [`--max-old-space-size=${limitMb}`, "--max-semi-space-size=1"];
  console.error(
    `note: the heap may grow to ${heapLimitMb} MB here, far above MEMORY_LIMIT_MB=${limitMb}. To behave as in a pod with that limit, start with NODE_OPTIONS="${flags.join(" ")}" (Node) or DENO_V8_FLAGS=${flags.join(",")} (Deno).`,
  );
}

/**
 * Bun's fetch opens at most 256 connections (BUN_CONFIG_MAX_HTTP_REQUESTS) and queues
 * further calls inside the runtime, where their timeout is already running.
 */
function adviseOnBunConnections(concurrency: number) {
  if (!("Bun" in globalThis)) return;
  const connections = Number(process.env.BUN_CONFIG_MAX_HTTP_REQUESTS || 256);
  if (concurrency <= connections) return;
  console.error(
    `note: CONCURRENCY=${concurrency} but Bun's fetch opens at most ${connections} connections; the rest would wait inside Bun and time out. Start with BUN_CONFIG_MAX_HTTP_REQUESTS=${concurrency}.`,
  );
}

function runtime(): string {
  if ("Bun" in globalThis) return `bun ${process.versions.bun}`;
  if ("Deno" in globalThis) return `deno ${process.versions.deno}`;
  return `node ${process.versions.node}`;
}

function fmt(n: number): string {
  return n.toLocaleString("en-US");
}

function round(n: number, digits: number): number {
  return Number(n.toFixed(digits));
}

// ---- Settings helpers (each script of this project carries its own, to stand alone;
// exported here for the benchmark's strategy consumers) ----

export function text(fallback: string, doc: string) {
  return z.string().trim().min(1, { error: "must not be empty" }).default(fallback).describe(doc);
}

export function wholeNumber(fallback: number, min: number, max: number, doc: string) {
  const error = `expected a whole number from ${min} to ${max}`;
  return z.coerce
    .number({ error })
    .int({ error })
    .min(min, { error })
    .max(max, { error })
    .default(fallback)
    .describe(doc);
}

export function flag(fallback: boolean, doc: string) {
  return z.stringbool({ error: "expected true or false" }).default(fallback).describe(doc);
}

function choice<const T extends readonly [string, ...string[]]>(
  values: T,
  fallback: T[number],
  doc: string,
) {
  return z
    .enum(values, { error: `expected one of ${values.join(", ")}` })
    .default(fallback)
    .describe(doc);
}

/** Reads the settings from the environment; --help lists them; a bad one exits 2. */
export function loadSettings<S extends z.ZodRawShape>(
  shape: S,
  check?: (settings: z.infer<z.ZodObject<S>>) => [string, string] | undefined,
): z.infer<z.ZodObject<S>> {
  if (process.argv.includes("--help") || process.argv.includes("-h")) {
    console.log(`Settings of ${process.argv[1]?.split("/").pop()}, from environment variables:`);
    for (const [name, field] of Object.entries(shape) as [string, z.ZodDefault][]) {
      const fallback = field.def.defaultValue;
      const shown = fallback === "" ? "" : ` [default: ${fallback}]`;
      console.log(`  ${name.padEnd(20)} ${field.description}${shown}`);
    }
    console.log(
      `Exit codes: 0 done or stopped cleanly, 1 Kafka unreachable or failed, 2 bad setting, ${EXIT_MEMORY_LIMIT} memory limit exceeded, ${EXIT_API_UNREACHABLE} API unreachable.`,
    );
    process.exit(0);
  }
  const result = z.object(shape).safeParse(process.env);
  const problems = result.success
    ? [check?.(result.data)].filter((problem) => problem !== undefined)
    : result.error.issues.map((issue): [string, string] => [String(issue.path[0]), issue.message]);
  if (result.success && problems.length === 0) return result.data;
  for (const [name, message] of problems) {
    console.error(`Bad setting ${name}=${JSON.stringify(process.env[name])}: ${message}`);
  }
  console.error("Run with --help to see every setting.");
  process.exit(2);
}

if (import.meta.main) await main();
